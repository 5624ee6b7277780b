// Hornbeam JS client type declarations. GENERATED from hornbeam.src.mjs by scripts/build_js.mjs: edit the source, not this file.
/**
 * One WebSocket connection multiplexing channels. It reconnects with
 * jittered backoff after every close that `disconnect()` did not ask for, answers
 * for its heartbeat, and buffers sends while it is not connected.
 */
export class Socket {
    /**
     * @param {string} endPoint `/ws`, `//host/ws` or `ws://host:port/ws`; `/websocket` is appended.
     * @param {SocketOptions} [opts]
     */
    constructor(endPoint: string, opts?: SocketOptions);
    endPoint: string;
    /** @type {() => Record<string, any>} */
    params: () => Record<string, any>;
    logger: Logger | null;
    timeout: number;
    heartbeatIntervalMs: number;
    reconnectAfterMs: Backoff;
    rejoinAfterMs: Backoff;
    transport: Transport | null;
    /** @type {number | null} */
    longPollFallbackMs: number | null;
    /** @private @type {any} */
    private fallbackTimer;
    /** @private whether the current connection has opened */
    private connOpened;
    vsn: string;
    /** @type {(() => string) | null} */
    authToken: (() => string) | null;
    /** @type {Channel[]} */
    channels: Channel[];
    /** @type {TransportConnection | null} */
    conn: TransportConnection | null;
    /** @private @type {{ owner: Channel | null, data: string | ArrayBuffer }[]} */
    private sendBuffer;
    /** @private */
    private refCounter;
    /** @private @type {Record<'open' | 'close' | 'error' | 'message', [string, Function][]>} */
    private callbacks;
    /** @private @type {string | null} */
    private pendingHeartbeatRef;
    /** @private @type {any} */
    private heartbeatTimer;
    /** @private */
    private closeRequested;
    reconnectJitter: number;
    reconnectTimer: RetryTimer;
    /** The URL `connect()` opens: endpoint + `/websocket?` + params + `&vsn=2.0.0`. */
    endPointURL(): string;
    /** Open the connection (nothing happens if it is open or opening). */
    connect(): void;
    /**
     * Close the connection and stay closed (no reconnect). Close callbacks
     * run at once, then `callback`.
     * @param {() => void} [callback]
     * @param {number} [code]
     * @param {string} [reason]
     */
    disconnect(callback?: () => void, code?: number, reason?: string): void;
    /** @returns {boolean} */
    isConnected(): boolean;
    /** @returns {ConnectionState} */
    connectionState(): ConnectionState;
    /**
     * A channel on `topic`; call `join()` on it.
     * @param {string} topic
     * @param {Record<string, any> | (() => Record<string, any>)} [params] join payload
     * @returns {Channel}
     */
    channel(topic: string, params?: Record<string, any> | (() => Record<string, any>)): Channel;
    /** @param {() => void} callback @returns {string} a ref for `off()` */
    onOpen(callback: () => void): string;
    /** @param {(event: any) => void} callback @returns {string} */
    onClose(callback: (event: any) => void): string;
    /** @param {(error: any) => void} callback @returns {string} */
    onError(callback: (error: any) => void): string;
    /** @param {(message: Message) => void} callback @returns {string} */
    onMessage(callback: (message: Message) => void): string;
    /**
     * Remove the callbacks registered under `refs`.
     * @param {string[]} refs
     */
    off(refs: string[]): void;
    /** A new unique message ref. @returns {string} */
    makeRef(): string;
    /** @param {string} kind @param {string} msg @param {any} [data] */
    log(kind: string, msg: string, data?: any): void;
    /**
     * Send `message` now, or when the connection opens.
     * @param {Message} message
     * @param {Channel | null} [owner] the channel it belongs to
     */
    push({ join_ref, ref, topic, event, payload }: Message, owner?: Channel | null): void;
    /** @param {Channel} channel */
    remove(channel: Channel): void;
    /** Forget what `channel` queued for sending (it will join again, or is gone). @param {Channel} channel */
    dropBuffered(channel: Channel): void;
    /** @private @param {'open' | 'close' | 'error' | 'message'} kind @param {Function} callback */
    private addCallback;
    /** @private @param {'open' | 'close' | 'error' | 'message'} kind @param {any} [arg] */
    private trigger;
    /**
     * The WebSocket did not open in time, or failed before it opened: use
     * LongPoll from now on (longPollFallbackMs). @private
     * @param {TransportConnection} conn @param {any} reason
     */
    private fallBack;
    /** @private */
    private onConnOpen;
    /** @private @param {any} error */
    private onConnError;
    /** The connection is gone (closed by the peer, the network, or us). @private @param {any} event */
    private onConnLost;
    /** Close the current connection and treat it as gone now, without
     * waiting for the transport's close event. @private @param {number} code @param {string} reason */
    private dropConnection;
    /** @private @param {{ data: any }} event */
    private onConnMessage;
    /** @private */
    private scheduleHeartbeat;
    /** @private */
    private heartbeat;
}
/**
 * phoenix.js's long-poll protocol (`<endpoint>/longpoll`) behind the
 * WebSocket API, so `Socket` uses it as it uses a WebSocket: a GET without
 * a token opens a session (`{status: 410, token}`), each GET with it waits
 * for messages (200, or 204 for none), sends are batched into ndjson POSTs
 * (an ArrayBuffer as its binary frame in base64). The session's end (410),
 * a refusal (403) or a failed request closes it, and `Socket` reconnects.
 * The server sends no binary message over long-poll. `authToken` goes in the
 * `X-Phoenix-AuthToken` header, so over long-poll it must be Latin-1 text.
 * Needs `fetch` and `AbortController` (browsers, Node 18+).
 */
export class LongPoll {
    /** @param {string} url a `ws(s)://host/path/websocket?...` URL @param {string[]} [protocols] */
    constructor(url: string, protocols?: string[]);
    /** @private */
    private url;
    /** @private @type {string | null} */
    private authToken;
    /** @type {string | null} the session's token, once the server gave one */
    token: string | null;
    readyState: number;
    binaryType: string;
    /** Milliseconds a request may take (a poll waits up to the server's longpoll_poll_timeout). */
    timeout: number;
    /** @type {((event: any) => void) | null} */
    onopen: ((event: any) => void) | null;
    /** @type {((event: any) => void) | null} */
    onclose: ((event: any) => void) | null;
    /** @type {((event: any) => void) | null} */
    onerror: ((event: any) => void) | null;
    /** @type {((event: { data: any }) => void) | null} */
    onmessage: ((event: {
        data: any;
    }) => void) | null;
    /** @private @type {string[]} */
    private outbox;
    /** @private */
    private posting;
    /** @private @type {Set<AbortController>} */
    private requests;
    /** @param {string | ArrayBuffer} data */
    send(data: string | ArrayBuffer): void;
    /** @param {number} [code] @param {string} [reason] */
    close(code?: number, reason?: string): void;
    /** @private @param {number} code @param {string} reason @param {boolean} wasClean */
    private end;
    /** @private @param {any} error @param {number} code @param {string} reason */
    private fail;
    /** @private */
    private poll;
    /** @private */
    private post;
    /**
     * One request; its JSON answer, or null when it failed or timed out.
     * @private @param {string} method @param {Record<string, string>} headers @param {string} [body]
     * @returns {Promise<any>}
     */
    private request;
}
/**
 * A message sent on a channel, and what came back: `receive(status, cb)`
 * for 'ok' and 'error' replies and for 'timeout'.
 */
export class Push {
    /**
     * @param {Channel} channel
     * @param {string} event
     * @param {() => any} payload
     * @param {number} timeout ms
     */
    constructor(channel: Channel, event: string, payload: () => any, timeout: number);
    channel: Channel;
    event: string;
    payload: () => any;
    timeout: number;
    /** @type {string | null} */
    ref: string | null;
    /** @type {{ status: PushStatus, response: any } | null} */
    received: {
        status: PushStatus;
        response: any;
    } | null;
    /** @private @type {{ status: PushStatus, callback: (response: any) => void }[]} */
    private hooks;
    /** @private @type {any} */
    private timer;
    /**
     * Call `callback` with the response when `status` arrives (at once if it
     * already has). Chainable.
     * @param {PushStatus} status
     * @param {(response: any) => void} callback
     * @returns {Push}
     */
    receive(status: PushStatus, callback: (response: any) => void): Push;
    /** Send, starting the timeout unless it already runs (a buffered push). */
    send(): void;
    /** Forget the last try and send again with a new ref. @param {number} timeout */
    resend(timeout: number): void;
    /** Forget the ref, the timeout and any response. */
    reset(): void;
    /** Take a new ref and start waiting for its reply. */
    startTimeout(): void;
    /** Stop waiting (a late reply is then ignored). */
    cancel(): void;
    /** Record the outcome and run its callbacks. @param {PushStatus} status @param {any} response */
    settle(status: PushStatus, response: any): void;
}
/**
 * A topic joined over a socket. Create it with `socket.channel(topic, params)`.
 */
export class Channel {
    /**
     * @param {string} topic
     * @param {Record<string, any> | (() => Record<string, any>)} params join payload
     * @param {Socket} socket
     */
    constructor(topic: string, params: Record<string, any> | (() => Record<string, any>), socket: Socket);
    topic: string;
    /** @type {() => Record<string, any>} */
    params: () => Record<string, any>;
    socket: Socket;
    /** @type {ChannelState} */
    state: ChannelState;
    timeout: number;
    joinedOnce: boolean;
    /** Pushes waiting for their reply, by ref. @type {Map<string, Push>} */
    pending: Map<string, Push>;
    /** @private @type {{ event: string, ref: number, callback: (payload: any, ref: string | null, joinRef: string | null) => void }[]} */
    private bindings;
    /** @private */
    private bindingRef;
    /** @private @type {Push[]} */
    private pushBuffer;
    /** @private */
    private rejoinTimer;
    joinPush: Push;
    /**
     * Join the topic (once per channel object). The returned push receives
     * 'ok', 'error' or 'timeout' for this join and every automatic rejoin.
     * @param {number} [timeout] ms
     * @returns {Push}
     */
    join(timeout?: number): Push;
    /**
     * Leave the topic. The channel is closed when the server answers 'ok', on
     * timeout, or at once when there is nothing joined to leave.
     * @param {number} [timeout] ms
     * @returns {Push}
     */
    leave(timeout?: number): Push;
    /**
     * Send `event` to the server. Before the join completes the push waits
     * in a buffer (its timeout runs meanwhile).
     * @param {string} event
     * @param {any} [payload]
     * @param {number} [timeout] ms
     * @returns {Push}
     */
    push(event: string, payload?: any, timeout?: number): Push;
    /**
     * Call `callback(payload, ref, joinRef)` for each `event` from the server.
     * @param {string} event
     * @param {(payload: any, ref: string | null, joinRef: string | null) => void} callback
     * @returns {number} a ref for `off(event, ref)`
     */
    on(event: string, callback: (payload: any, ref: string | null, joinRef: string | null) => void): number;
    /**
     * Remove the callback `ref` of `event`, or all callbacks of `event`.
     * @param {string} event
     * @param {number} [ref]
     */
    off(event: string, ref?: number): void;
    /** Called once the channel is closed (left, or closed by the server). @param {(reason: any) => void} callback */
    onClose(callback: (reason: any) => void): number;
    /** Called when the channel crashed on the server or the connection dropped; it rejoins. @param {(reason: any) => void} callback */
    onError(callback: (reason: any) => void): number;
    /** The ref of the current join: messages carrying another join_ref are stale. @returns {string | null} */
    joinRef(): string | null;
    /** @returns {boolean} */
    canPush(): boolean;
    /** A message from the socket for this topic. @param {Message} message */
    handle(message: Message): void;
    /** The socket (re)opened. */
    socketOpened(): void;
    /** The socket's connection is gone. */
    socketLost(): void;
    /** @private */
    private rejoin;
    /** Closed for good: no rejoin. @private @param {any} reason */
    private closed;
    /** Crashed or cut off: rejoin (now, with backoff, or when the socket reopens). @private @param {any} reason */
    private errored;
    /** @private @param {string} event @param {any} payload @param {string | null} [ref] @param {string | null} [joinRef] */
    private trigger;
    /** @private @param {string} msg @param {any} [data] */
    private log;
}
/**
 * Who is on a channel, kept in sync from the server's `presence_state`
 * (the full list) and `presence_diff` (`{joins, leaves}`) events. Each key
 * (a user) has `metas`, one per connection (tab, device), told apart by
 * `phx_ref`.
 */
export class Presence {
    /**
     * The new state after a full `presence_state`: joins and leaves are worked
     * out against `state` meta by meta. `state` itself is not changed.
     * @param {PresenceState} state
     * @param {PresenceState} newState
     * @param {PresenceOnJoin} [onJoin]
     * @param {PresenceOnLeave} [onLeave]
     * @returns {PresenceState}
     */
    static syncState(state: PresenceState, newState: PresenceState, onJoin?: PresenceOnJoin, onLeave?: PresenceOnLeave): PresenceState;
    /**
     * The new state after a `presence_diff`: joined metas are added (replacing
     * one with the same `phx_ref`), left metas removed, and a key goes away
     * with its last meta. `state` itself is not changed (the new state shares
     * the entries that the diff does not touch).
     * @param {PresenceState} state
     * @param {Partial<PresenceDiff>} diff
     * @param {PresenceOnJoin} [onJoin]
     * @param {PresenceOnLeave} [onLeave]
     * @returns {PresenceState}
     */
    static syncDiff(state: PresenceState, diff: Partial<PresenceDiff>, onJoin?: PresenceOnJoin, onLeave?: PresenceOnLeave): PresenceState;
    /**
     * @template [T=PresenceEntry]
     * @param {PresenceState} state
     * @param {(key: string, presence: PresenceEntry) => T} [chooser]
     * @returns {T[]}
     */
    static list<T = PresenceEntry>(state: PresenceState, chooser?: (key: string, presence: PresenceEntry) => T): T[];
    /**
     * @param {Channel} channel
     * @param {PresenceOptions} [opts] `events: {state, diff}` renames the two events.
     */
    constructor(channel: Channel, opts?: PresenceOptions);
    channel: Channel;
    /** @type {PresenceState} */
    state: PresenceState;
    /** @private @type {PresenceDiff[]} */
    private pendingDiffs;
    /** @private @type {string | null} */
    private joinRef;
    /** @private @type {{ join: PresenceOnJoin, leave: PresenceOnLeave, sync: () => void }} */
    private callers;
    /** @param {PresenceOnJoin} callback */
    onJoin(callback: PresenceOnJoin): void;
    /** @param {PresenceOnLeave} callback */
    onLeave(callback: PresenceOnLeave): void;
    /** Called after each state or diff has been applied. @param {() => void} callback */
    onSync(callback: () => void): void;
    /**
     * Map every key's presence through `chooser` (default: the presence itself).
     * @template [T=PresenceEntry]
     * @param {(key: string, presence: PresenceEntry) => T} [chooser]
     * @returns {T[]}
     */
    list<T = PresenceEntry>(chooser?: (key: string, presence: PresenceEntry) => T): T[];
    /** True until the state of the current join has arrived (diffs wait meanwhile). */
    inPendingSyncState(): boolean;
}
/**
 * Called for every transport, push, receive and channel event.
 */
export type Logger = (kind: string, msg: string, data?: any) => void;
/**
 * Milliseconds to wait before try number `tries` (1, 2, ...).
 */
export type Backoff = (tries: number) => number;
export type Message = {
    join_ref: string | null;
    ref: string | null;
    topic: string;
    event: string;
    payload: any;
};
export type PushStatus = "ok" | "error" | "timeout";
export type ChannelState = "closed" | "errored" | "joined" | "joining" | "leaving";
export type ConnectionState = "connecting" | "open" | "closing" | "closed";
/**
 * What `transport` must construct: the browser `WebSocket` API, or what
 * `ws` (Node) builds, is enough.
 */
export type TransportConnection = {
    /**
     * 0 connecting, 1 open, 2 closing, 3 closed
     */
    readyState: number;
    send: (data: string | ArrayBuffer) => void;
    /**
     * set to `"arraybuffer"`, so binary messages arrive as ArrayBuffer
     */
    binaryType?: string | undefined;
    close: (code?: number, reason?: string) => void;
    onopen: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
    onmessage: ((event: {
        data: any;
    }) => void) | null;
};
/**
 * What `transport` must construct: the browser `WebSocket` API, or what
 * `ws` (Node) builds, is enough.
 */
export type Transport = new (url: string, protocols?: string[]) => TransportConnection;
export type SocketOptions = {
    /**
     * Connect params, sent in the URL query string (a function is called at each connect).
     */
    params?: Record<string, any> | (() => Record<string, any>) | undefined;
    logger?: Logger | undefined;
    /**
     * Default timeout of joins and pushes, ms (10 000).
     */
    timeout?: number | undefined;
    /**
     * Heartbeat period, ms (30 000). A heartbeat
     * still unanswered one period later closes the connection, which then reconnects.
     */
    heartbeatIntervalMs?: number | undefined;
    /**
     * Delay before reconnect try n.
     */
    reconnectAfterMs?: Backoff | undefined;
    /**
     * Each reconnect delay is drawn uniformly from
     * ±this fraction of it (0.5: 50–150 %), so the clients of a server that closed them
     * all (a deploy, a restart) do not come back in the same instant; 0 turns it off.
     */
    reconnectJitter?: number | undefined;
    /**
     * Delay before rejoin try n of a channel.
     */
    rejoinAfterMs?: Backoff | undefined;
    /**
     * WebSocket constructor (default `globalThis.WebSocket`,
     * or `LongPoll` where there is none); `LongPoll` always long-polls.
     */
    transport?: Transport | undefined;
    /**
     * As phoenix.js 1.8: when the WebSocket has not
     * opened within this many ms, or fails before it opened, switch to `LongPoll` (for
     * this socket's reconnects too). Off by default.
     */
    longPollFallbackMs?: number | undefined;
    /**
     * Protocol version sent as `vsn` (`"2.0.0"`).
     */
    vsn?: string | undefined;
    /**
     * A token for the server's connect
     * handler (`connect_info["auth_token"]`), sent as phoenix.js does: in the
     * WebSocket subprotocols `phoenix` and `base64url.bearer.phx.<base64url(token)>`,
     * not in the URL, so it stays out of access logs.
     */
    authToken?: string | (() => string) | undefined;
};
export type PresenceMeta = {
    phx_ref: string;
    phx_ref_prev?: string;
    [field: string]: any;
};
export type PresenceEntry = {
    metas: PresenceMeta[];
    [field: string]: any;
};
export type PresenceState = Record<string, PresenceEntry>;
export type PresenceDiff = {
    joins: PresenceState;
    leaves: PresenceState;
};
export type PresenceOnJoin = (key: string, currentPresence: PresenceEntry | undefined, newPresence: PresenceEntry) => void;
export type PresenceOnLeave = (key: string, currentPresence: PresenceEntry, leftPresence: PresenceEntry) => void;
export type PresenceOptions = {
    events?: {
        state?: string;
        diff?: string;
    };
};
/** Calls `callback` after `delayFor(tries)` ms (± `jitter` of it); `tries` counts since the last reset. */
declare class RetryTimer {
    /** @param {() => void} callback @param {Backoff} delayFor @param {number} [jitter] */
    constructor(callback: () => void, delayFor: Backoff, jitter?: number);
    callback: () => void;
    delayFor: Backoff;
    jitter: number;
    tries: number;
    /** @type {any} */
    timer: any;
    reset(): void;
    schedule(): void;
}
export {};

export as namespace Hornbeam;
