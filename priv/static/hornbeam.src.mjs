/**
 * Hornbeam JS client: Phoenix V2 channels and presence over one WebSocket.
 *
 *   const socket = new Socket('/ws', { params: { token } })
 *   socket.connect()
 *   const channel = socket.channel('room:lobby', { username: 'Alice' })
 *   channel.join().receive('ok', resp => {}).receive('error', resp => {})
 *   channel.on('new_msg', payload => {})
 *   channel.push('new_msg', { body: 'Hello!' }).receive('ok', reply => {})
 *
 * Wire format: text frames holding JSON arrays
 * `[join_ref, ref, topic, event, payload]`, refs are strings.
 * Works with the Hornbeam server and with any Phoenix server (vsn 2.0.0).
 */

/**
 * @typedef {(kind: string, msg: string, data?: any) => void} Logger
 *   Called for every transport, push, receive and channel event.
 * @typedef {(tries: number) => number} Backoff
 *   Milliseconds to wait before try number `tries` (1, 2, ...).
 * @typedef {{ join_ref: string | null, ref: string | null, topic: string, event: string, payload: any }} Message
 * @typedef {'ok' | 'error' | 'timeout'} PushStatus
 * @typedef {'closed' | 'errored' | 'joined' | 'joining' | 'leaving'} ChannelState
 * @typedef {'connecting' | 'open' | 'closing' | 'closed'} ConnectionState
 */

/**
 * What `transport` must construct: the browser `WebSocket` API, or what
 * `ws` (Node) builds, is enough.
 * @typedef {object} TransportConnection
 * @property {number} readyState 0 connecting, 1 open, 2 closing, 3 closed
 * @property {(data: string | ArrayBuffer) => void} send
 * @property {string} [binaryType] set to `"arraybuffer"`, so binary messages arrive as ArrayBuffer
 * @property {(code?: number, reason?: string) => void} close
 * @property {((event: any) => void) | null} onopen
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 * @property {((event: { data: any }) => void) | null} onmessage
 * @typedef {new (url: string, protocols?: string[]) => TransportConnection} Transport
 */

/**
 * @typedef {object} SocketOptions
 * @property {Record<string, any> | (() => Record<string, any>)} [params]
 *   Connect params, sent in the URL query string (a function is called at each connect).
 * @property {Logger} [logger]
 * @property {number} [timeout] Default timeout of joins and pushes, ms (10 000).
 * @property {number} [heartbeatIntervalMs] Heartbeat period, ms (30 000). A heartbeat
 *   still unanswered one period later closes the connection, which then reconnects.
 * @property {Backoff} [reconnectAfterMs] Delay before reconnect try n.
 * @property {number} [reconnectJitter] Each reconnect delay is drawn uniformly from
 *   ±this fraction of it (0.5: 50–150 %), so the clients of a server that closed them
 *   all (a deploy, a restart) do not come back in the same instant; 0 turns it off.
 * @property {Backoff} [rejoinAfterMs] Delay before rejoin try n of a channel.
 * @property {Transport} [transport] WebSocket constructor (default `globalThis.WebSocket`,
 *   or `LongPoll` where there is none); `LongPoll` always long-polls.
 * @property {number} [longPollFallbackMs] As phoenix.js 1.8: when the WebSocket has not
 *   opened within this many ms, or fails before it opened, switch to `LongPoll` (for
 *   this socket's reconnects too). Off by default.
 * @property {string} [vsn] Protocol version sent as `vsn` (`"2.0.0"`).
 * @property {string | (() => string)} [authToken] A token for the server's connect
 *   handler (`connect_info["auth_token"]`), sent as phoenix.js does: in the
 *   WebSocket subprotocols `phoenix` and `base64url.bearer.phx.<base64url(token)>`,
 *   not in the URL, so it stays out of access logs.
 */

/**
 * @typedef {{ phx_ref: string, phx_ref_prev?: string, [field: string]: any }} PresenceMeta
 * @typedef {{ metas: PresenceMeta[], [field: string]: any }} PresenceEntry
 * @typedef {Record<string, PresenceEntry>} PresenceState
 * @typedef {{ joins: PresenceState, leaves: PresenceState }} PresenceDiff
 * @typedef {(key: string, currentPresence: PresenceEntry | undefined, newPresence: PresenceEntry) => void} PresenceOnJoin
 * @typedef {(key: string, currentPresence: PresenceEntry, leftPresence: PresenceEntry) => void} PresenceOnLeave
 * @typedef {{ events?: { state?: string, diff?: string } }} PresenceOptions
 */

const DEFAULT_VSN = '2.0.0'
const AUTH_TOKEN_PREFIX = 'base64url.bearer.phx.'
/** Phoenix V2 binary frames: the first byte says which kind (phoenix.js's serializer). */
const BINARY_KINDS = { push: 0, reply: 1, broadcast: 2 }
const WS_OPEN = 1
const WS_CLOSE_NORMAL = 1000
const READY_STATES = ['connecting', 'open', 'closing', 'closed']
const EVENTS = {
  join: 'phx_join',
  leave: 'phx_leave',
  reply: 'phx_reply',
  close: 'phx_close',
  error: 'phx_error',
}

/**
 * A backoff from a list of delays, then `last` for every later try.
 * @param {number[]} steps
 * @param {number} last
 * @returns {Backoff}
 */
const stepsThen = (steps, last) => (tries) => steps[tries - 1] ?? last

/** @param {any} value @returns {() => any} */
const asFunction = (value) => (typeof value === 'function' ? value : () => value)

/**
 * `delay` moved by a uniform random amount within ±`jitter` of it (full spread at 1).
 * @param {number} delay @param {number} jitter a fraction in [0, 1]
 */
const withJitter = (delay, jitter) =>
  jitter > 0 ? Math.round(delay * (1 - jitter + 2 * jitter * Math.random())) : delay

/** Calls `callback` after `delayFor(tries)` ms (± `jitter` of it); `tries` counts since the last reset. */
class RetryTimer {
  /** @param {() => void} callback @param {Backoff} delayFor @param {number} [jitter] */
  constructor(callback, delayFor, jitter = 0) {
    this.callback = callback
    this.delayFor = delayFor
    this.jitter = jitter
    this.tries = 0
    /** @type {any} */
    this.timer = null
  }

  reset() {
    this.tries = 0
    clearTimeout(this.timer)
    this.timer = null
  }

  schedule() {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = null
      this.tries += 1
      this.callback()
    }, withJitter(this.delayFor(this.tries + 1), this.jitter))
  }
}

/**
 * `{a: 1, b: {c: 2}}` → `a=1&b[c]=2` (the nesting Phoenix servers understand).
 * @param {Record<string, any>} params
 * @param {string} [prefix]
 * @returns {string[]}
 */
function queryPairs(params, prefix) {
  const pairs = []
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue
    const name = prefix ? `${prefix}[${key}]` : key
    if (typeof value === 'object') pairs.push(...queryPairs(value, name))
    else pairs.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
  }
  return pairs
}

/**
 * A ws:// or wss:// URL for `endPoint`: absolute ws URLs are kept; anything
 * else ("/ws", "//host/ws", "http://...") is resolved against `location`,
 * with wss: when the page is https:.
 * @param {string} endPoint
 * @returns {string}
 */
function webSocketURL(endPoint) {
  if (/^wss?:\/\//i.test(endPoint)) return endPoint
  const location = /** @type {any} */ (globalThis).location
  if (!location && !/^https?:\/\//i.test(endPoint)) {
    throw new Error(`Hornbeam: endpoint "${endPoint}" is relative and there is no location; use ws://host:port${endPoint}`)
  }
  const url = new URL(endPoint, location && location.href)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.href
}

/** Unpadded base64url of the UTF-8 bytes of `text`. @param {string} text */
function base64url(text) {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/**
 * A push with an ArrayBuffer payload as a Phoenix V2 binary frame: kind 0,
 * the byte lengths of join_ref, ref, topic and event (at most 255 each), the
 * four strings, then the payload.
 * @param {string | null} joinRef @param {string | null} ref @param {string} topic
 * @param {string} event @param {ArrayBuffer} payload
 */
function encodeBinaryPush(joinRef, ref, topic, event, payload) {
  const encoder = new TextEncoder()
  const fields = [joinRef ?? '', ref ?? '', topic, event].map((f) => encoder.encode(String(f)))
  for (const [i, name] of ['join_ref', 'ref', 'topic', 'event'].entries()) {
    if (fields[i].byteLength > 255) throw new Error(`Hornbeam: ${name} of a binary push is over 255 bytes`)
  }
  const headerLength = 5 + fields.reduce((n, f) => n + f.byteLength, 0)
  const out = new Uint8Array(headerLength + payload.byteLength)
  out.set([BINARY_KINDS.push, ...fields.map((f) => f.byteLength)], 0)
  let offset = 5
  for (const f of fields) { out.set(f, offset); offset += f.byteLength }
  out.set(new Uint8Array(payload), offset)
  return out.buffer
}

/**
 * A Phoenix V2 binary frame from the server as a Message: a push (kind 0:
 * join_ref, topic, event), a reply (kind 1: join_ref, ref, topic, status; the
 * payload is `{ status, response: ArrayBuffer }`) or a broadcast (kind 2:
 * topic, event). The payload is an ArrayBuffer.
 * @param {ArrayBuffer} buffer @returns {Message}
 */
function decodeBinary(buffer) {
  const bytes = new Uint8Array(buffer)
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const kind = bytes[0]
  const sizes = { [BINARY_KINDS.push]: 3, [BINARY_KINDS.reply]: 4, [BINARY_KINDS.broadcast]: 2 }[kind]
  if (!sizes || bytes.length < 1 + sizes) throw new Error(`not a Phoenix binary frame (kind ${kind})`)
  let offset = 1 + sizes
  const strings = []
  for (let i = 1; i <= sizes; i++) {
    if (offset + bytes[i] > bytes.length) throw new Error('truncated Phoenix binary frame')
    strings.push(decoder.decode(bytes.subarray(offset, offset + bytes[i])))
    offset += bytes[i]
  }
  const data = buffer.slice(offset)
  if (kind === BINARY_KINDS.push) {
    const [joinRef, topic, event] = strings
    return { join_ref: joinRef || null, ref: null, topic, event, payload: data }
  }
  if (kind === BINARY_KINDS.reply) {
    const [joinRef, ref, topic, status] = strings
    return { join_ref: joinRef || null, ref, topic, event: EVENTS.reply, payload: { status, response: data } }
  }
  const [topic, event] = strings
  return { join_ref: null, ref: null, topic, event, payload: data }
}

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
  constructor(endPoint, opts = {}) {
    this.endPoint = `${endPoint.replace(/\/+$/, '')}/websocket`
    /** @type {() => Record<string, any>} */
    this.params = asFunction(opts.params || {})
    this.logger = opts.logger || null
    this.timeout = opts.timeout ?? 10000
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 30000
    this.reconnectAfterMs = opts.reconnectAfterMs || stepsThen([10, 50, 100, 150, 200, 250, 500, 1000, 2000], 5000)
    this.rejoinAfterMs = opts.rejoinAfterMs || stepsThen([1000, 2000, 5000], 10000)
    this.transport = opts.transport || null
    /** @type {number | null} */
    this.longPollFallbackMs = opts.longPollFallbackMs ?? null
    /** @private @type {any} */
    this.fallbackTimer = null
    /** @private whether the current connection has opened */
    this.connOpened = false
    this.vsn = opts.vsn || DEFAULT_VSN
    /** @type {(() => string) | null} */
    this.authToken = opts.authToken ? asFunction(opts.authToken) : null
    /** @type {Channel[]} */
    this.channels = []
    /** @type {TransportConnection | null} */
    this.conn = null
    /** @private @type {{ owner: Channel | null, data: string | ArrayBuffer }[]} */
    this.sendBuffer = []
    /** @private */
    this.refCounter = 0
    /** @private @type {Record<'open' | 'close' | 'error' | 'message', [string, Function][]>} */
    this.callbacks = { open: [], close: [], error: [], message: [] }
    /** @private @type {string | null} */
    this.pendingHeartbeatRef = null
    /** @private @type {any} */
    this.heartbeatTimer = null
    /** @private */
    this.closeRequested = false
    /** @private */
    const jitter = opts.reconnectJitter ?? 0.5
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
      throw new RangeError(`Hornbeam: reconnectJitter must be a number from 0 to 1, got ${jitter}`)
    }
    this.reconnectJitter = jitter
    this.reconnectTimer = new RetryTimer(() => this.connect(), this.reconnectAfterMs, jitter)
  }

  /** The URL `connect()` opens: endpoint + `/websocket?` + params + `&vsn=2.0.0`. */
  endPointURL() {
    const query = queryPairs({ ...this.params(), vsn: this.vsn }).join('&')
    return `${webSocketURL(this.endPoint)}?${query}`
  }

  /** Open the connection (nothing happens if it is open or opening). */
  connect() {
    this.closeRequested = false
    if (this.conn) return
    const Transport = this.transport || /** @type {any} */ (globalThis).WebSocket || LongPoll
    const url = this.endPointURL()
    this.log('transport', `connecting to ${url}`)
    const conn = /** @type {TransportConnection} */ (this.authToken
      ? new Transport(url, ['phoenix', `${AUTH_TOKEN_PREFIX}${base64url(this.authToken())}`])
      : new Transport(url))
    conn.binaryType = 'arraybuffer'
    this.conn = conn
    this.connOpened = false
    const fallbackMs = Transport === LongPoll ? null : this.longPollFallbackMs
    if (fallbackMs !== null) this.fallbackTimer = setTimeout(() => this.fallBack(conn, 'timeout'), fallbackMs)
    // Before it opened, a failing WebSocket means: long-poll (with longPollFallbackMs).
    const failsOver = () => fallbackMs !== null && !this.connOpened
    conn.onopen = () => conn === this.conn && this.onConnOpen()
    conn.onclose = (event) => conn === this.conn && (failsOver() ? this.fallBack(conn, event) : this.onConnLost(event))
    conn.onerror = (error) => conn === this.conn && (failsOver() ? this.fallBack(conn, error) : this.onConnError(error))
    conn.onmessage = (event) => conn === this.conn && this.onConnMessage(event)
  }

  /**
   * Close the connection and stay closed (no reconnect). Close callbacks
   * run at once, then `callback`.
   * @param {() => void} [callback]
   * @param {number} [code]
   * @param {string} [reason]
   */
  disconnect(callback, code = WS_CLOSE_NORMAL, reason = '') {
    this.closeRequested = true
    this.reconnectTimer.reset()
    if (this.conn) this.dropConnection(code, reason)
    if (callback) callback()
  }

  /** @returns {boolean} */
  isConnected() {
    return this.conn !== null && this.conn.readyState === WS_OPEN
  }

  /** @returns {ConnectionState} */
  connectionState() {
    return this.conn ? /** @type {ConnectionState} */ (READY_STATES[this.conn.readyState]) : 'closed'
  }

  /**
   * A channel on `topic`; call `join()` on it.
   * @param {string} topic
   * @param {Record<string, any> | (() => Record<string, any>)} [params] join payload
   * @returns {Channel}
   */
  channel(topic, params = {}) {
    const channel = new Channel(topic, params, this)
    this.channels.push(channel)
    return channel
  }

  /** @param {() => void} callback @returns {string} a ref for `off()` */
  onOpen(callback) { return this.addCallback('open', callback) }
  /** @param {(event: any) => void} callback @returns {string} */
  onClose(callback) { return this.addCallback('close', callback) }
  /** @param {(error: any) => void} callback @returns {string} */
  onError(callback) { return this.addCallback('error', callback) }
  /** @param {(message: Message) => void} callback @returns {string} */
  onMessage(callback) { return this.addCallback('message', callback) }

  /**
   * Remove the callbacks registered under `refs`.
   * @param {string[]} refs
   */
  off(refs) {
    for (const kind of Object.keys(this.callbacks)) {
      const k = /** @type {'open' | 'close' | 'error' | 'message'} */ (kind)
      this.callbacks[k] = this.callbacks[k].filter(([ref]) => !refs.includes(ref))
    }
  }

  /** A new unique message ref. @returns {string} */
  makeRef() {
    this.refCounter += 1
    return String(this.refCounter)
  }

  /** @param {string} kind @param {string} msg @param {any} [data] */
  log(kind, msg, data) {
    if (this.logger) this.logger(kind, msg, data)
  }

  /**
   * Send `message` now, or when the connection opens.
   * @param {Message} message
   * @param {Channel | null} [owner] the channel it belongs to
   */
  push({ join_ref, ref, topic, event, payload }, owner = null) {
    this.log('push', `${topic} ${event} (${join_ref}, ${ref})`, payload)
    const data = payload instanceof ArrayBuffer
      ? encodeBinaryPush(join_ref, ref, topic, event, payload)
      : JSON.stringify([join_ref, ref, topic, event, payload])
    if (this.isConnected()) /** @type {TransportConnection} */ (this.conn).send(data)
    else this.sendBuffer.push({ owner, data })
  }

  /** @param {Channel} channel */
  remove(channel) {
    this.channels = this.channels.filter((c) => c !== channel)
    this.dropBuffered(channel)
  }

  /** Forget what `channel` queued for sending (it will join again, or is gone). @param {Channel} channel */
  dropBuffered(channel) {
    this.sendBuffer = this.sendBuffer.filter((m) => m.owner !== channel)
  }

  /** @private @param {'open' | 'close' | 'error' | 'message'} kind @param {Function} callback */
  addCallback(kind, callback) {
    const ref = this.makeRef()
    this.callbacks[kind].push([ref, callback])
    return ref
  }

  /** @private @param {'open' | 'close' | 'error' | 'message'} kind @param {any} [arg] */
  trigger(kind, arg) {
    for (const [, callback] of this.callbacks[kind]) callback(arg)
  }

  /**
   * The WebSocket did not open in time, or failed before it opened: use
   * LongPoll from now on (longPollFallbackMs). @private
   * @param {TransportConnection} conn @param {any} reason
   */
  fallBack(conn, reason) {
    if (conn !== this.conn) return
    this.log('transport', 'falling back to LongPoll', reason)
    clearTimeout(this.fallbackTimer)
    this.conn = null // its events are ignored from now on
    try { conn.close() } catch (_) { /* not open */ }
    this.transport = LongPoll
    this.trigger('error', reason)
    this.connect()
  }

  /** @private */
  onConnOpen() {
    clearTimeout(this.fallbackTimer)
    this.connOpened = true
    this.log('transport', 'connected')
    this.reconnectTimer.reset()
    const buffered = this.sendBuffer
    this.sendBuffer = []
    for (const { data } of buffered) /** @type {TransportConnection} */ (this.conn).send(data)
    this.pendingHeartbeatRef = null
    this.scheduleHeartbeat()
    for (const channel of [...this.channels]) channel.socketOpened()
    this.trigger('open')
  }

  /** @private @param {any} error */
  onConnError(error) {
    this.log('transport', 'error', error)
    this.trigger('error', error)
  }

  /** The connection is gone (closed by the peer, the network, or us). @private @param {any} event */
  onConnLost(event) {
    this.log('transport', 'closed', event)
    this.conn = null // its handlers now ignore it (see connect)
    clearTimeout(this.heartbeatTimer)
    this.pendingHeartbeatRef = null
    for (const channel of [...this.channels]) channel.socketLost()
    if (!this.closeRequested) this.reconnectTimer.schedule()
    this.trigger('close', event)
  }

  /** Close the current connection and treat it as gone now, without
   * waiting for the transport's close event. @private @param {number} code @param {string} reason */
  dropConnection(code, reason) {
    const conn = /** @type {TransportConnection} */ (this.conn)
    try { conn.close(code, reason) } catch (_) { /* already closed */ }
    this.onConnLost({ code, reason, wasClean: this.closeRequested })
  }

  /** @private @param {{ data: any }} event */
  onConnMessage(event) {
    let message
    try {
      if (event.data instanceof ArrayBuffer) {
        message = decodeBinary(event.data)
      } else {
        const [join_ref, ref, topic, name, payload] = JSON.parse(event.data)
        message = { join_ref, ref, topic, event: name, payload }
      }
    } catch (_) {
      this.log('transport', 'dropping a message that is neither a [join_ref, ref, topic, event, payload] array nor a Phoenix binary frame', event.data)
      return
    }
    const { ref, topic, payload } = message
    this.log('receive', `${topic} ${message.event}${ref ? ` (${ref})` : ''}`, payload)
    if (ref !== null && ref === this.pendingHeartbeatRef) this.pendingHeartbeatRef = null
    for (const channel of [...this.channels]) {
      if (channel.topic === topic) channel.handle(message)
    }
    this.trigger('message', message)
  }

  /** @private */
  scheduleHeartbeat() {
    clearTimeout(this.heartbeatTimer)
    this.heartbeatTimer = setTimeout(() => this.heartbeat(), this.heartbeatIntervalMs)
  }

  /** @private */
  heartbeat() {
    if (!this.isConnected()) return
    if (this.pendingHeartbeatRef) {
      this.log('transport', 'heartbeat timeout: no reply within heartbeatIntervalMs; reconnecting')
      this.dropConnection(WS_CLOSE_NORMAL, 'heartbeat timeout')
      return
    }
    this.pendingHeartbeatRef = this.makeRef()
    this.push({ join_ref: null, ref: this.pendingHeartbeatRef, topic: 'phoenix', event: 'heartbeat', payload: {} })
    this.scheduleHeartbeat()
  }
}

const MAX_LONGPOLL_BATCH = 100 // messages per POST, as phoenix.js

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
  constructor(url, protocols) {
    const target = new URL(url)
    target.protocol = target.protocol === 'wss:' ? 'https:' : 'http:'
    target.pathname = target.pathname.replace(/\/websocket$/, '/longpoll')
    /** @private */
    this.url = target
    /** @private @type {string | null} */
    this.authToken = null
    const offered = protocols && protocols[1]
    if (offered && offered.startsWith(AUTH_TOKEN_PREFIX)) this.authToken = fromBase64url(offered.slice(AUTH_TOKEN_PREFIX.length))
    /** @type {string | null} the session's token, once the server gave one */
    this.token = null
    this.readyState = 0
    this.binaryType = 'arraybuffer'
    /** Milliseconds a request may take (a poll waits up to the server's longpoll_poll_timeout). */
    this.timeout = 20000
    /** @type {((event: any) => void) | null} */
    this.onopen = null
    /** @type {((event: any) => void) | null} */
    this.onclose = null
    /** @type {((event: any) => void) | null} */
    this.onerror = null
    /** @type {((event: { data: any }) => void) | null} */
    this.onmessage = null
    /** @private @type {string[]} */
    this.outbox = []
    /** @private */
    this.posting = false
    /** @private @type {Set<AbortController>} */
    this.requests = new Set()
    setTimeout(() => this.poll(), 0)
  }

  /** @param {string | ArrayBuffer} data */
  send(data) {
    this.outbox.push(typeof data === 'string' ? data : toBase64(data))
    if (!this.posting) {
      this.posting = true
      setTimeout(() => this.post(), 0) // one POST for what this tick sends
    }
  }

  /** @param {number} [code] @param {string} [reason] */
  close(code = WS_CLOSE_NORMAL, reason = '') {
    this.end(code, reason, true)
  }

  /** @private @param {number} code @param {string} reason @param {boolean} wasClean */
  end(code, reason, wasClean) {
    if (this.readyState === 3) return
    this.readyState = 3
    for (const controller of this.requests) controller.abort()
    this.requests.clear()
    this.outbox = []
    // asynchronous, like a WebSocket's close event
    setTimeout(() => this.onclose && this.onclose({ code, reason, wasClean }), 0)
  }

  /** @private @param {any} error @param {number} code @param {string} reason */
  fail(error, code, reason) {
    if (this.readyState === 3) return
    if (this.onerror) this.onerror(error)
    this.end(code, reason, false)
  }

  /** @private */
  async poll() {
    if (this.readyState > 1) return
    const resp = await this.request('GET', { Accept: 'application/json' })
    if (this.readyState > 1) return
    const status = resp ? resp.status : 0
    if (status === 410 && this.token !== null) return this.fail('session gone', 3410, 'session_gone')
    if (resp && resp.token) this.token = resp.token
    if (status === 410) {
      this.readyState = 1
      if (this.onopen) this.onopen({})
    } else if (status === 200) {
      for (const data of resp.messages) {
        if (this.readyState !== 1) return
        if (this.onmessage) this.onmessage({ data })
      }
    } else if (status === 403) {
      return this.fail(403, 1008, 'forbidden')
    } else if (status !== 204) {
      return this.fail(status || 'network error', 1011, 'internal server error')
    }
    this.poll()
  }

  /** @private */
  async post() {
    while (this.outbox.length > 0 && this.readyState === 1) {
      const batch = this.outbox.splice(0, MAX_LONGPOLL_BATCH)
      const resp = await this.request('POST', { 'Content-Type': 'application/x-ndjson' }, batch.join('\n'))
      if (!resp || resp.status !== 200) return this.fail(resp ? resp.status : 'network error', 1011, 'internal server error')
    }
    this.posting = false
  }

  /**
   * One request; its JSON answer, or null when it failed or timed out.
   * @private @param {string} method @param {Record<string, string>} headers @param {string} [body]
   * @returns {Promise<any>}
   */
  async request(method, headers, body) {
    const url = new URL(this.url.href)
    if (this.token) url.searchParams.set('token', this.token)
    if (this.authToken) headers['X-Phoenix-AuthToken'] = this.authToken
    const controller = new AbortController()
    this.requests.add(controller)
    const timer = setTimeout(() => controller.abort(), this.timeout)
    try {
      const response = await fetch(url.href, { method, headers, body, signal: controller.signal })
      return JSON.parse(await response.text())
    } catch (_) {
      return null
    } finally {
      clearTimeout(timer)
      this.requests.delete(controller)
    }
  }
}

/** @param {string} text unpadded base64url of UTF-8 bytes @returns {string} */
function fromBase64url(text) {
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))
}

/** @param {ArrayBuffer} buffer @returns {string} */
function toBase64(buffer) {
  let binary = ''
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte)
  return btoa(binary)
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
  constructor(channel, event, payload, timeout) {
    this.channel = channel
    this.event = event
    this.payload = payload
    this.timeout = timeout
    /** @type {string | null} */
    this.ref = null
    /** @type {{ status: PushStatus, response: any } | null} */
    this.received = null
    /** @private @type {{ status: PushStatus, callback: (response: any) => void }[]} */
    this.hooks = []
    /** @private @type {any} */
    this.timer = null
  }

  /**
   * Call `callback` with the response when `status` arrives (at once if it
   * already has). Chainable.
   * @param {PushStatus} status
   * @param {(response: any) => void} callback
   * @returns {Push}
   */
  receive(status, callback) {
    if (this.received && this.received.status === status) callback(this.received.response)
    this.hooks.push({ status, callback })
    return this
  }

  /** Send, starting the timeout unless it already runs (a buffered push). */
  send() {
    if (this.received && this.received.status === 'timeout') return
    if (!this.timer) this.startTimeout()
    this.channel.socket.push({
      join_ref: this.channel.joinRef(),
      ref: this.ref,
      topic: this.channel.topic,
      event: this.event,
      payload: this.payload(),
    }, this.channel)
  }

  /** Forget the last try and send again with a new ref. @param {number} timeout */
  resend(timeout) {
    this.timeout = timeout
    this.reset()
    this.send()
  }

  /** Forget the ref, the timeout and any response. */
  reset() {
    this.cancel()
    this.ref = null
    this.received = null
  }

  /** Take a new ref and start waiting for its reply. */
  startTimeout() {
    this.cancel()
    this.ref = this.channel.socket.makeRef()
    this.channel.pending.set(this.ref, this)
    this.timer = setTimeout(() => this.settle('timeout', {}), this.timeout)
  }

  /** Stop waiting (a late reply is then ignored). */
  cancel() {
    clearTimeout(this.timer)
    this.timer = null
    if (this.ref !== null) this.channel.pending.delete(this.ref)
  }

  /** Record the outcome and run its callbacks. @param {PushStatus} status @param {any} response */
  settle(status, response) {
    this.cancel()
    this.received = { status, response }
    for (const hook of [...this.hooks]) {
      if (hook.status === status) hook.callback(response)
    }
  }
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
  constructor(topic, params, socket) {
    this.topic = topic
    /** @type {() => Record<string, any>} */
    this.params = asFunction(params || {})
    this.socket = socket
    /** @type {ChannelState} */
    this.state = 'closed'
    this.timeout = socket.timeout
    this.joinedOnce = false
    /** Pushes waiting for their reply, by ref. @type {Map<string, Push>} */
    this.pending = new Map()
    /** @private @type {{ event: string, ref: number, callback: (payload: any, ref: string | null, joinRef: string | null) => void }[]} */
    this.bindings = []
    /** @private */
    this.bindingRef = 0
    /** @private @type {Push[]} */
    this.pushBuffer = []
    /** @private */
    this.rejoinTimer = new RetryTimer(() => this.socket.isConnected() && this.rejoin(), socket.rejoinAfterMs)
    this.joinPush = new Push(this, EVENTS.join, () => this.params(), this.timeout)
    this.joinPush
      .receive('ok', () => {
        this.state = 'joined'
        this.rejoinTimer.reset()
        const buffered = this.pushBuffer
        this.pushBuffer = []
        for (const push of buffered) push.send()
      })
      .receive('error', () => {
        this.state = 'errored'
        if (this.socket.isConnected()) this.rejoinTimer.schedule()
      })
      .receive('timeout', () => {
        this.log(`join timed out after ${this.joinPush.timeout} ms; will rejoin`)
        // Tell the server to drop the join it may still be working on.
        if (this.socket.isConnected()) new Push(this, EVENTS.leave, () => ({}), this.timeout).send()
        this.state = 'errored'
        this.joinPush.reset()
        if (this.socket.isConnected()) this.rejoinTimer.schedule()
      })
  }

  /**
   * Join the topic (once per channel object). The returned push receives
   * 'ok', 'error' or 'timeout' for this join and every automatic rejoin.
   * @param {number} [timeout] ms
   * @returns {Push}
   */
  join(timeout = this.timeout) {
    if (this.joinedOnce) {
      throw new Error(`Hornbeam: join() called twice on the channel ${this.topic}; create a new channel to join again`)
    }
    this.joinedOnce = true
    this.timeout = timeout
    this.rejoin()
    return this.joinPush
  }

  /**
   * Leave the topic. The channel is closed when the server answers 'ok', on
   * timeout, or at once when there is nothing joined to leave.
   * @param {number} [timeout] ms
   * @returns {Push}
   */
  leave(timeout = this.timeout) {
    const live = this.socket.isConnected() && (this.state === 'joined' || this.state === 'joining')
    this.rejoinTimer.reset()
    this.joinPush.cancel()
    this.state = 'leaving'
    const close = () => {
      this.log('left')
      this.closed('leave')
    }
    const push = new Push(this, EVENTS.leave, () => ({}), timeout)
    push.receive('ok', close).receive('timeout', close)
    if (live) push.send()
    else push.settle('ok', {})
    return push
  }

  /**
   * Send `event` to the server. Before the join completes the push waits
   * in a buffer (its timeout runs meanwhile).
   * @param {string} event
   * @param {any} [payload]
   * @param {number} [timeout] ms
   * @returns {Push}
   */
  push(event, payload = {}, timeout = this.timeout) {
    if (!this.joinedOnce) {
      throw new Error(`Hornbeam: push("${event}") on ${this.topic} before join(); call channel.join() first`)
    }
    const push = new Push(this, event, () => payload, timeout)
    if (this.canPush()) {
      push.send()
    } else {
      push.startTimeout()
      this.pushBuffer.push(push)
    }
    return push
  }

  /**
   * Call `callback(payload, ref, joinRef)` for each `event` from the server.
   * @param {string} event
   * @param {(payload: any, ref: string | null, joinRef: string | null) => void} callback
   * @returns {number} a ref for `off(event, ref)`
   */
  on(event, callback) {
    this.bindingRef += 1
    this.bindings.push({ event, ref: this.bindingRef, callback })
    return this.bindingRef
  }

  /**
   * Remove the callback `ref` of `event`, or all callbacks of `event`.
   * @param {string} event
   * @param {number} [ref]
   */
  off(event, ref) {
    this.bindings = this.bindings.filter((b) => !(b.event === event && (ref === undefined || b.ref === ref)))
  }

  /** Called once the channel is closed (left, or closed by the server). @param {(reason: any) => void} callback */
  onClose(callback) { return this.on(EVENTS.close, callback) }

  /** Called when the channel crashed on the server or the connection dropped; it rejoins. @param {(reason: any) => void} callback */
  onError(callback) { return this.on(EVENTS.error, callback) }

  /** The ref of the current join: messages carrying another join_ref are stale. @returns {string | null} */
  joinRef() {
    return this.joinPush.ref
  }

  /** @returns {boolean} */
  canPush() {
    return this.socket.isConnected() && this.state === 'joined'
  }

  /** A message from the socket for this topic. @param {Message} message */
  handle(message) {
    const { join_ref, ref, event, payload } = message
    if (join_ref !== null && join_ref !== undefined && join_ref !== this.joinRef()) {
      this.log(`dropping ${event}: join_ref ${join_ref} is not the current join (${this.joinRef()})`, payload)
      return
    }
    if (event === EVENTS.reply) {
      const push = ref !== null ? this.pending.get(ref) : undefined
      if (push && payload) push.settle(payload.status, payload.response)
    } else if (event === EVENTS.close) {
      this.closed(payload)
      return
    } else if (event === EVENTS.error) {
      this.errored(payload)
      return
    }
    this.trigger(event, payload, ref, join_ref)
  }

  /** The socket (re)opened. */
  socketOpened() {
    this.rejoinTimer.reset()
    if (this.state === 'errored') this.rejoin()
  }

  /** The socket's connection is gone. */
  socketLost() {
    this.rejoinTimer.reset()
    if (this.state === 'joined' || this.state === 'joining') this.errored('connection lost')
  }

  /** @private */
  rejoin() {
    if (this.state === 'leaving') return
    for (const other of this.socket.channels) {
      if (other !== this && other.topic === this.topic && (other.state === 'joined' || other.state === 'joining')) {
        other.log('leaving: another channel object joins the same topic')
        other.leave()
      }
    }
    this.state = 'joining'
    this.joinPush.resend(this.timeout)
  }

  /** Closed for good: no rejoin. @private @param {any} reason */
  closed(reason) {
    this.rejoinTimer.reset()
    this.joinPush.cancel()
    this.state = 'closed'
    this.socket.remove(this)
    this.trigger(EVENTS.close, reason)
  }

  /** Crashed or cut off: rejoin (now, with backoff, or when the socket reopens). @private @param {any} reason */
  errored(reason) {
    this.log('error', reason)
    if (this.state === 'joining') this.joinPush.reset()
    this.state = 'errored'
    this.socket.dropBuffered(this)
    if (this.socket.isConnected()) this.rejoinTimer.schedule()
    this.trigger(EVENTS.error, reason)
  }

  /** @private @param {string} event @param {any} payload @param {string | null} [ref] @param {string | null} [joinRef] */
  trigger(event, payload, ref = null, joinRef = null) {
    for (const binding of this.bindings.filter((b) => b.event === event)) {
      binding.callback(payload, ref, joinRef || this.joinRef())
    }
  }

  /** @private @param {string} msg @param {any} [data] */
  log(msg, data) {
    this.socket.log('channel', `${this.topic}: ${msg}`, data)
  }
}

/**
 * A presence map with a null prototype, so that keys like `__proto__` or
 * `constructor` are plain keys. Entries are shared, never changed in place.
 * @param {PresenceState} [state]
 * @returns {PresenceState}
 */
const presenceMap = (state) => Object.assign(Object.create(null), state)

/** @param {any} value */
const deepCopy = (value) => JSON.parse(JSON.stringify(value))

/** @param {PresenceEntry} presence @returns {Set<string>} */
const refsOf = (presence) => new Set(presence.metas.map((meta) => meta.phx_ref))

/**
 * Who is on a channel, kept in sync from the server's `presence_state`
 * (the full list) and `presence_diff` (`{joins, leaves}`) events. Each key
 * (a user) has `metas`, one per connection (tab, device), told apart by
 * `phx_ref`.
 */
export class Presence {
  /**
   * @param {Channel} channel
   * @param {PresenceOptions} [opts] `events: {state, diff}` renames the two events.
   */
  constructor(channel, opts = {}) {
    const events = { state: 'presence_state', diff: 'presence_diff', ...(opts.events || {}) }
    this.channel = channel
    /** @type {PresenceState} */
    this.state = Object.create(null)
    /** @private @type {PresenceDiff[]} */
    this.pendingDiffs = []
    /** @private @type {string | null} */
    this.joinRef = null
    /** @private @type {{ join: PresenceOnJoin, leave: PresenceOnLeave, sync: () => void }} */
    this.callers = { join: () => {}, leave: () => {}, sync: () => {} }

    channel.on(events.state, (newState) => {
      const { join, leave, sync } = this.callers
      this.joinRef = channel.joinRef()
      this.state = Presence.syncState(this.state, newState, join, leave)
      for (const diff of this.pendingDiffs) this.state = Presence.syncDiff(this.state, diff, join, leave)
      this.pendingDiffs = []
      sync()
    })
    channel.on(events.diff, (diff) => {
      const { join, leave, sync } = this.callers
      if (this.inPendingSyncState()) {
        this.pendingDiffs.push(diff)
      } else {
        this.state = Presence.syncDiff(this.state, diff, join, leave)
        sync()
      }
    })
  }

  /** @param {PresenceOnJoin} callback */
  onJoin(callback) { this.callers.join = callback }
  /** @param {PresenceOnLeave} callback */
  onLeave(callback) { this.callers.leave = callback }
  /** Called after each state or diff has been applied. @param {() => void} callback */
  onSync(callback) { this.callers.sync = callback }

  /**
   * Map every key's presence through `chooser` (default: the presence itself).
   * @template [T=PresenceEntry]
   * @param {(key: string, presence: PresenceEntry) => T} [chooser]
   * @returns {T[]}
   */
  list(chooser) {
    return Presence.list(this.state, chooser)
  }

  /** True until the state of the current join has arrived (diffs wait meanwhile). */
  inPendingSyncState() {
    return this.joinRef === null || this.joinRef !== this.channel.joinRef()
  }

  /**
   * The new state after a full `presence_state`: joins and leaves are worked
   * out against `state` meta by meta. `state` itself is not changed.
   * @param {PresenceState} state
   * @param {PresenceState} newState
   * @param {PresenceOnJoin} [onJoin]
   * @param {PresenceOnLeave} [onLeave]
   * @returns {PresenceState}
   */
  static syncState(state, newState, onJoin, onLeave) {
    const current = presenceMap(state)
    const incoming = presenceMap(newState)
    const joins = presenceMap()
    const leaves = presenceMap()
    for (const key of Object.keys(current)) {
      if (!(key in incoming)) leaves[key] = current[key]
    }
    for (const key of Object.keys(incoming)) {
      const presence = incoming[key]
      const before = current[key]
      if (!before) {
        joins[key] = presence
        continue
      }
      const newRefs = refsOf(presence)
      const oldRefs = refsOf(before)
      const joined = presence.metas.filter((meta) => !oldRefs.has(meta.phx_ref))
      const left = before.metas.filter((meta) => !newRefs.has(meta.phx_ref))
      if (joined.length > 0) joins[key] = { ...presence, metas: joined }
      if (left.length > 0) leaves[key] = { ...before, metas: left }
    }
    return Presence.syncDiff(current, { joins, leaves }, onJoin, onLeave)
  }

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
  static syncDiff(state, diff, onJoin = () => {}, onLeave = () => {}) {
    const next = presenceMap(state)
    const joins = presenceMap(diff.joins)
    const leaves = presenceMap(diff.leaves)
    for (const key of Object.keys(joins)) {
      const presence = deepCopy(joins[key])
      const before = next[key]
      const joinedRefs = refsOf(presence)
      const kept = before ? before.metas.filter((meta) => !joinedRefs.has(meta.phx_ref)) : []
      next[key] = { ...presence, metas: [...kept, ...presence.metas] }
      onJoin(key, before, presence)
    }
    for (const key of Object.keys(leaves)) {
      const before = next[key]
      if (!before) continue
      const left = deepCopy(leaves[key])
      const leftRefs = refsOf(left)
      const current = { ...before, metas: before.metas.filter((meta) => !leftRefs.has(meta.phx_ref)) }
      next[key] = current
      onLeave(key, current, left)
      if (current.metas.length === 0) delete next[key]
    }
    return next
  }

  /**
   * @template [T=PresenceEntry]
   * @param {PresenceState} state
   * @param {(key: string, presence: PresenceEntry) => T} [chooser]
   * @returns {T[]}
   */
  static list(state, chooser) {
    const choose = chooser || ((_key, presence) => /** @type {any} */ (presence))
    return Object.keys(state).map((key) => choose(key, state[key]))
  }
}
