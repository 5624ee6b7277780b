%% @doc One process per WebSocket connection (the HTTP connection process
%% becomes this one after the upgrade; see `hornbeam_endpoint').
%%
%% It owns the TCP socket: decodes frames and channel messages with the NIF,
%% routes `phx_join' to a new `hornbeam_channel_server' per topic, forwards
%% events to joined channels, writes what channels and broadcasts send back,
%% answers heartbeats, and enforces the connection's limits. A broadcast
%% arrives already encoded (`{'$hb_broadcast', Topic, Frame, Exclude}') and is
%% written as it is; on a connection that negotiated permessage-deflate each
%% frame is rewritten compressed just before the write (`ws_deflate/2'), and
%% the decoder inflates what the client compressed (README "Compression").
%%
%% Writes use `port_command/3' with `nosuspend': when the kernel buffer and
%% the port queue (`max_send_queue' bytes, the socket's high watermark) are
%% full, the client is not reading, and it is closed with 1008 instead of
%% letting this process's memory grow. Frames already waiting in the
%% mailbox behind the first go out with it in one `port_command'
%% (`write_batch_frames', `write_batch_bytes'; see write_batch/2).
%%
%% Reads are bounded the same way, in the other direction:
%% <ul>
%% <li>Backpressure: each channel acknowledges every event it handled
%%     (`{'$hb_done', Pid}'). When one channel has `max_pending_events'
%%     events sent and not yet handled, this process stops handling frames
%%     and stops reading the socket (`{active, false}'), so the client's
%%     sends wait in TCP instead of in the channel's mailbox. The frames of
%%     the reads already delivered are held, in order, and handled once the channel
%%     is below its bound again (or gone). The heartbeat and fragment timers
%%     do not count that time against the client.</li>
%% <li>`fragment_timeout': a message that has partly arrived (an open
%%     fragmented message, or part of a frame) must be complete within it,
%%     else the client is closed with 1008. The clock restarts when a message
%%     completes, not when a ping arrives between fragments.</li>
%% </ul>
%%
%% A long-poll session (`hornbeam_longpoll') is this same process with
%% another transport: no TCP socket (`sock = longpoll'), started by
%% `start_longpoll/2' under `hornbeam_longpoll_sup'. Its writes go to a
%% `hornbeam_longpoll_buffer' that the client's GETs drain, its frames come
%% from the client's POSTs (`{'$hb_lp_post', ...}'), and the session ends
%% when nobody polled for `longpoll_timeout'. Everything between (joins,
%% events, broadcasts, limits) is the code below, shared.
-module(hornbeam_socket).
-behaviour(gen_server).

-export([enter/3, start_longpoll/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-type conn_info() :: #{
    id := binary(),
    socket_id => hornbeam_endpoint:socket_id(),  %% from connect; hornbeam:disconnect/1
    params := map(),
    assigns := map(),
    connect_info := map(),
    endpoint := hornbeam_endpoint:config(),
    deflate => none | hornbeam_ws_deflate:agreed()   %% permessage-deflate, if negotiated
}.
-export_type([conn_info/0]).

%% Reads: a socket starts in `{active, once}' and, once it reads at
%% ?BUSY_READS or more a second, switches to `{active, N}' whose count it
%% tops up before it runs out (?ACTIVE_TOPUP more each time at most
%% ?ACTIVE_TOPUP are left), so a busy socket is never switched off. Only
%% then does the runtime move its fd to the schedulers' own pollset (after
%% ten reads without a deselect): no ONESHOT re-arm and no poll-thread
%% wake-up per read, which halved the CPU of an Erlang round trip. Quieter
%% sockets stay on one-shot reads: with thousands of idle sockets armed for
%% good, fan-out to 5,000 subscribers ran at 60-70 % of its deliveries/s,
%% and a publisher at 30 reads/s in the schedulers' pollset (checked
%% between longer runs) is read later and pipelines less, -10 %
%% (bench/README.md, "Reads"). A quiet spell (the hibernation after a
%% heartbeat's answer) puts a socket back on `{active, once}'.
%% A client sending faster than this process handles its frames runs the
%% count down and the socket goes passive by itself: at most
%% 2 * ?ACTIVE_TOPUP reads wait in the mailbox. A pause
%% (max_pending_events) switches reading off at once with `{active, false}'.
%% inet_drv allocates a receive buffer of `buffer' bytes while the socket is
%% armed, so an idle connection holds one: it starts small and grows to the
%% OTP default the first time a read fills it.
-define(BUSY_READS, 64).
-define(ACTIVE_TOPUP, 32).
-define(SMALL_RECV_BUFFER, 256).
-define(MIN_HEAP, 987).
-define(RECV_BUFFER, 1460).

-record(channel, {
    pid :: pid(),
    monitor :: reference(),
    join_ref :: hornbeam_nif:msg_ref(),
    join_msg_ref :: hornbeam_nif:msg_ref(),  %% ref of the phx_join, for a crash during join
    dialect :: hornbeam_protocol:dialect(),
    joined = false :: boolean(),
    %% events sent to the channel and not yet acknowledged with '$hb_done'
    in_flight = 0 :: non_neg_integer(),
    close_after_join = [] :: [{hornbeam_nif:msg_ref(), hornbeam_protocol:dialect()}]
}).

-record(state, {
    %% the transport: a TCP socket, or a long-poll session's buffer in `lp'
    sock :: gen_tcp:socket() | longpoll,
    decoder :: hornbeam_nif:ws_decoder() | undefined,
    %% permessage-deflate's outgoing half; none: frames go as encoded
    deflater = none :: none | hornbeam_nif:ws_deflater(),
    id :: binary(),
    socket_id :: hornbeam_endpoint:socket_id(),
    params :: map(),
    assigns :: map(),
    config :: hornbeam_endpoint:config(),
    channels = #{} :: #{binary() => #channel{}},
    by_pid = #{} :: #{pid() => binary()},
    last_recv :: integer(),
    closing = false :: boolean(),
    %% set by a join or a heartbeat, after which a quiet spell usually
    %% follows: hibernate once the writes of the answer are acknowledged
    hibernate_now = false :: boolean(),
    %% decoded frames not handled yet (held while paused), in order; a
    %% protocol error ends the list
    held = [] :: [hornbeam_nif:ws_message() | {protocol_error, atom(), 1002 | 1007 | 1009}],
    %% the channel at max_pending_events: frames and reads wait for it
    paused_on = undefined :: pid() | undefined,
    %% runs while a message has partly arrived (fragment_timeout)
    fragment_timer = undefined :: reference() | undefined,
    %% the receive buffer is still ?SMALL_RECV_BUFFER
    small_buffer = true :: boolean(),
    %% reads inet_drv may still deliver before it makes the socket passive
    %% (our copy of its count: 1 in {active, once}; see ?ACTIVE_TOPUP)
    active_left = 0 :: non_neg_integer(),
    %% once: {active, once}; counted: {active, N} topped up (?BUSY_READS)
    read_mode = once :: once | counted,
    %% reads in the second that started at reads_since (erlang:monotonic_time ms)
    reads = 0 :: non_neg_integer(),
    reads_since = 0 :: integer(),
    %% port_commands whose inet_reply has not arrived yet
    unacked = 0 :: non_neg_integer(),
    %% long-poll only: what the next poll takes, the POSTs waiting for their
    %% answer (after their messages are handled), the session's registry key
    lp = undefined :: hornbeam_longpoll_buffer:buf() | undefined,
    lp_posts = [] :: [{pid(), reference()}],
    lp_key = undefined :: binary() | undefined
}).

%% @doc Become the WebSocket process for Sock (already upgraded). Never returns.
-spec enter(gen_tcp:socket(), binary(), conn_info()) -> no_return().
enter(Sock, Buffered, Conn = #{id := Id, endpoint := Config}) ->
    #{max_frame_size := MaxFrame, max_send_queue := MaxQueue} = Config,
    logger:update_process_metadata(#{conn_id => Id}),
    ok = hornbeam_metrics:connection_opened(),
    %% So a supervisor shutdown runs terminate/2 and the client gets 1001.
    process_flag(trap_exit, true),
    %% A busy socket keeps a heap of at least ?MIN_HEAP words between
    %% collections (a hibernating one still shrinks to its live data, so idle
    %% memory is unchanged). Left to the default, where this process's live
    %% data falls between the runtime's heap sizes decided whether fan-out
    %% to 10,000 subscribers ran at 160 k or 90-110 k deliveries/s
    %% (bench/README.md, "Reads").
    process_flag(min_heap_size, ?MIN_HEAP),
    ok = inet:setopts(Sock, [{buffer, ?SMALL_RECV_BUFFER},
                             {high_watermark, MaxQueue}, {low_watermark, MaxQueue div 2},
                             {send_timeout, 30000}, {send_timeout_close, true}]),
    SocketId = maps:get(socket_id, Conn, undefined),
    %% Every socket with this id, on every node, is one pg group:
    %% hornbeam:disconnect/1 reaches them all (pg leaves it when we exit).
    _ = is_binary(SocketId) andalso pg:join(hornbeam_pubsub:scope(), {socket_id, SocketId}, self()),
    {Decoder, Deflater} = codec(MaxFrame, maps:get(deflate, Conn, none), Config),
    State = #state{sock = Sock, decoder = Decoder, deflater = Deflater,
                   id = Id, socket_id = SocketId, params = maps:get(params, Conn), assigns = maps:get(assigns, Conn),
                   config = Config, last_recv = now_ms(), reads_since = now_ms()},
    schedule_heartbeat_check(State),
    self() ! {'$hb_data', Buffered},
    %% Drop what the HTTP request left on the heap; idle connections
    %% hibernate (most of a socket's life is waiting for a heartbeat).
    erlang:garbage_collect(),
    gen_server:enter_loop(?MODULE, [{hibernate_after, maps:get(hibernate_after, Config)}], State).

%% The frame decoder, and the deflater when permessage-deflate was agreed.
codec(MaxFrame, none, _Config) ->
    {hornbeam_nif:ws_decoder_new(MaxFrame), none};
codec(MaxFrame, #{server_window_bits := ServerBits, client_window_bits := ClientBits,
                  server_no_context_takeover := ServerNoTakeover,
                  client_no_context_takeover := ClientNoTakeover}, Config) ->
    #{compress_level := Level, compress_threshold := Threshold} = Config,
    {hornbeam_nif:ws_decoder_new_deflate(MaxFrame, ClientBits, ClientNoTakeover),
     hornbeam_nif:ws_deflater_new(ServerBits, Level, ServerNoTakeover, Threshold)}.


%% @doc Start a long-poll session (from `hornbeam_longpoll_sup'); Key is its
%% registry key (`hornbeam_longpoll:register/2').
-spec start_longpoll(conn_info(), binary()) -> {ok, pid()} | {error, term()}.
start_longpoll(Conn = #{endpoint := Config}, Key) ->
    gen_server:start_link(?MODULE, {longpoll, Conn, Key},
                          [{hibernate_after, maps:get(hibernate_after, Config)}]).

-spec init(term()) -> {ok, #state{}} | {stop, not_started_this_way}.
init({longpoll, Conn = #{id := Id, endpoint := Config}, Key}) ->
    logger:update_process_metadata(#{conn_id => Id, transport => longpoll}),
    process_flag(trap_exit, true),
    ok = hornbeam_longpoll:register(Key, self()),
    ok = hornbeam_metrics:connection_opened(),
    SocketId = maps:get(socket_id, Conn, undefined),
    _ = is_binary(SocketId) andalso pg:join(hornbeam_pubsub:scope(), {socket_id, SocketId}, self()),
    State = #state{sock = longpoll, decoder = undefined, id = Id, socket_id = SocketId,
                   params = maps:get(params, Conn), assigns = maps:get(assigns, Conn),
                   config = Config, last_recv = now_ms(),
                   lp = hornbeam_longpoll_buffer:new(), lp_key = Key},
    schedule_heartbeat_check(State),
    {ok, State};
init(_) -> {stop, not_started_this_way}.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call(channels, _From, State = #state{channels = Channels}) ->
    {reply, maps:keys(Channels), State};
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) ->
    {noreply, #state{}} | {noreply, #state{}, hibernate} | {stop, term(), #state{}}.
handle_info({tcp, Sock, Data}, State = #state{sock = Sock, small_buffer = true})
  when byte_size(Data) >= ?SMALL_RECV_BUFFER ->
    %% a read filled the small buffer: this client sends more than a heartbeat
    _ = inet:setopts(Sock, [{buffer, ?RECV_BUFFER}]),
    received(Data, read_one(State#state{last_recv = now_ms(), small_buffer = false}));
handle_info({tcp, Sock, Data}, State = #state{sock = Sock}) ->
    received(Data, read_one(State#state{last_recv = now_ms()}));
handle_info({tcp_passive, Sock}, State = #state{sock = Sock}) ->
    %% The count ran out before we topped it up (this process fell behind):
    %% active_left is already 0, and handle_held arms it again once the held
    %% frames are handled.
    {noreply, State};
handle_info({'$hb_data', <<>>}, State) ->
    handle_held(State);
handle_info({'$hb_data', Data}, State) ->
    received(Data, State);
handle_info({tcp_closed, Sock}, State = #state{sock = Sock}) ->
    logger:debug("client closed the connection"),
    {stop, normal, State};
handle_info({tcp_error, Sock, Reason}, State = #state{sock = Sock}) ->
    logger:info("connection error: ~0p", [Reason]),
    {stop, normal, State};
handle_info({inet_reply, _Sock, ok}, State = #state{unacked = 1, hibernate_now = true}) ->
    %% Idle connections only join and then heartbeat (every 30 s with
    %% phoenix.js). Hibernating when the last write of the answer is
    %% acknowledged, instead of hibernate_after later, keeps 10,000 of them
    %% at their hibernated size. (Hibernating before the inet_reply would
    %% only be woken up by it; an answer of several writes, such as a join's
    %% reply and presence_state, waits for the last one.)
    case erlang:process_info(self(), message_queue_len) of
        {message_queue_len, 0} ->
            %% A quiet spell: the deflate context (~260 KiB of zlib state)
            %% goes too; the next message starts a fresh DEFLATE stream.
            _ = State#state.deflater =:= none orelse hornbeam_nif:ws_deflater_release(State#state.deflater),
            {noreply, quiet_reads(State#state{unacked = 0, hibernate_now = false}), hibernate};
        _ -> {noreply, State#state{unacked = 0}}
    end;
handle_info({inet_reply, _Sock, ok}, State = #state{unacked = N}) ->
    {noreply, State#state{unacked = max(0, N - 1)}};
handle_info({inet_reply, _Sock, {error, Reason}}, State) ->
    logger:info("write failed: ~0p", [Reason]),
    {stop, normal, State};
handle_info({'$hb_out', Frame}, State) ->
    write_batch(Frame, State);
handle_info({'$hb_broadcast', Topic, Frame, Exclude}, State) ->
    case wants_broadcast(Topic, Exclude, State) of
        true -> write_batch(Frame, State);
        false -> {noreply, State}
    end;
handle_info({'$hb_joined', Pid, Outcome, Frame}, State) ->
    join_answered(Pid, Outcome, Frame, State);
handle_info({'$hb_done', Pid}, State) ->
    event_done(Pid, State);
handle_info({'$hb_crashed', Pid}, State) ->
    resume_if_paused_on(Pid, channel_gone(Pid, crashed, State));
handle_info({'DOWN', _Mon, process, Pid, Reason}, State) ->
    resume_if_paused_on(Pid, channel_gone(Pid, Reason, State));
handle_info({timeout, Timer, fragment_timeout}, State = #state{fragment_timer = Timer}) ->
    case is_pid(State#state.paused_on) of
        true ->
            %% We stopped reading, not the client: give it another period.
            {noreply, start_fragment_timer(State)};
        false ->
            #{fragment_timeout := Timeout} = State#state.config,
            logger:info("a message not complete within ~b ms (fragment_timeout); closing with 1008",
                        [Timeout]),
            close(1008, <<"message not complete within fragment_timeout">>,
                  State#state{fragment_timer = undefined})
    end;
handle_info({timeout, _Stale, fragment_timeout}, State) ->
    {noreply, State};
handle_info({'$hb_lp_poll', From, Ref}, State = #state{sock = longpoll}) ->
    {noreply, lp_poll(From, Ref, State#state{last_recv = now_ms()})};
handle_info({'$hb_lp_post', From, Ref, Lines}, State = #state{sock = longpoll, held = Held,
                                                               lp_posts = Posts, config = Config}) ->
    %% The lines enter as text (or binary) frames would; the POST is answered
    %% once they are handled (after a max_pending_events pause too). Where a
    %% WebSocket client's sends wait in TCP, a long-poll client's wait in
    %% unanswered POSTs: at most max_pending_events of them (phoenix.js 1.7+
    %% has one at a time, 1.6 one per message).
    #{max_frame_size := MaxFrame, max_pending_events := MaxPending} = Config,
    case length(Posts) >= MaxPending of
        true ->
            logger:warning("long-poll client has ~b POSTs waiting (max_pending_events); "
                           "ending the session", [length(Posts) + 1]),
            {stop, normal, State#state{closing = true}};
        false ->
            Frames = hornbeam_longpoll:post_frames(Lines, MaxFrame),
            handle_held(State#state{held = Held ++ Frames, last_recv = now_ms(),
                                    lp_posts = Posts ++ [{From, Ref}]})
    end;
handle_info('$hb_lp_flush', State = #state{sock = longpoll, lp = Buf}) ->
    {noreply, lp_flush(State#state{lp = hornbeam_longpoll_buffer:set_flush(false, Buf)})};
handle_info({timeout, _Timer, {lp_poll_timeout, Ref}}, State = #state{sock = longpoll, lp = Buf}) ->
    case hornbeam_longpoll_buffer:poll(Buf) of
        {From, Ref, _} ->
            From ! {'$hb_lp_messages', Ref, []},
            {noreply, State#state{lp = hornbeam_longpoll_buffer:set_poll(undefined, Buf),
                                  last_recv = now_ms()}};
        _ ->
            {noreply, State}
    end;
handle_info({'$hb_lp_cancel', Ref}, State = #state{sock = longpoll, lp = Buf}) ->
    %% The client went away from its poll: from now on the idle clock runs.
    case hornbeam_longpoll_buffer:poll(Buf) of
        {_From, Ref, Timer} ->
            cancel_timer(Timer),
            {noreply, State#state{lp = hornbeam_longpoll_buffer:set_poll(undefined, Buf),
                                  last_recv = now_ms()}};
        _ ->
            {noreply, State}
    end;
handle_info({timeout, _, heartbeat_check}, State = #state{sock = longpoll, config = Config,
                                                          last_recv = Last, lp = Buf}) ->
    %% phoenix.js sends no heartbeat over long-poll: the polls are the sign
    %% of life. A session nobody polled for longpoll_timeout ends (its
    %% channels leave, as on a closed WebSocket).
    #{longpoll_timeout := Timeout} = Config,
    Polling = hornbeam_longpoll_buffer:poll(Buf) =/= undefined,
    case not Polling andalso now_ms() - Last >= Timeout andalso State#state.paused_on =:= undefined of
        true ->
            logger:info("long-poll session not polled for ~b ms (longpoll_timeout); ending", [Timeout]),
            {stop, normal, State#state{closing = true}};
        false ->
            schedule_heartbeat_check(State),
            {noreply, State}
    end;
handle_info({timeout, _, heartbeat_check}, State = #state{config = Config, last_recv = Last}) ->
    #{heartbeat_timeout := Timeout} = Config,
    %% While paused on a channel the client's messages wait unread: not its silence.
    case now_ms() - Last >= Timeout andalso State#state.paused_on =:= undefined of
        true ->
            %% Not 1000: phoenix.js 1.6 and 1.7 treat a 1000 close as final and
            %% never reconnect; 1008 (as fragment_timeout) makes every version
            %% reconnect, and a background tab whose timers were throttled is
            %% exactly the client that must.
            logger:info("no message for ~b ms (heartbeat_timeout); closing with 1008", [Timeout]),
            close(1008, <<"heartbeat timeout">>, State);
        false ->
            schedule_heartbeat_check(State),
            {noreply, State}
    end;
handle_info({'$hb_disconnect', SocketId}, State = #state{socket_id = SocketId}) ->
    %% hornbeam:disconnect/1 (Phoenix's "disconnect" broadcast). 4000, not
    %% 1000: phoenix.js 1.6 and 1.7 never reconnect after a 1000 close, and
    %% the client must come back through connect, which decides anew.
    logger:info("disconnected by the server (socket id ~ts); closing with 4000", [SocketId]),
    close(4000, <<"disconnected">>, State);
handle_info('$hb_drain', State) ->
    %% The endpoint is draining (hornbeam_drainer): as a shutdown, 1001.
    going_away(State),
    {stop, normal, State#state{closing = true}};
handle_info({'EXIT', _Pid, normal}, State) ->
    {noreply, State};
handle_info(Msg, State) ->
    logger:warning("unexpected message ~0p", [Msg]),
    {noreply, State}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, #state{sock = longpoll, lp_key = Key}) ->
    %% A waiting GET sees this process go (its monitor): 410, the client's
    %% sign that the session is gone, after which it reconnects and rejoins.
    hornbeam_metrics:forget(),
    hornbeam_longpoll:unregister(Key);
terminate(Reason, State = #state{sock = Sock, closing = Closing}) ->
    case {Closing, Reason} of
        {false, shutdown} -> going_away(State);
        {false, {shutdown, _}} -> going_away(State);
        _ -> ok
    end,
    _ = gen_tcp:close(Sock),
    hornbeam_metrics:forget().

going_away(State) ->
    _ = send_now(hornbeam_nif:ws_encode_close(1001, <<"server shutting down">>), State),
    ok.

%% --- receiving -----------------------------------------------------------------

received(Data, State = #state{decoder = Decoder, held = Held}) ->
    case hornbeam_nif:ws_decode(Decoder, Data) of
        {ok, Messages} ->
            handle_held(watch_fragments(Messages, State#state{held = Held ++ Messages}));
        {error, Messages, Why, Code} ->
            handle_held(State#state{held = Held ++ Messages ++ [{protocol_error, Why, Code}]})
    end.

%% Paused: no more reads until the channel catches up. Reads already in the
%% mailbox still arrive (and are held); the count starts again from zero.
stop_reading(State = #state{sock = longpoll}) ->
    State;
stop_reading(State = #state{sock = Sock}) ->
    ok = setopts_active(Sock, false),
    State#state{active_left = 0}.

read_one(State = #state{active_left = Left, reads = Reads, reads_since = Since, last_recv = Now}) ->
    case Now - Since >= 1000 of
        true -> State#state{active_left = max(0, Left - 1), reads = 1, reads_since = Now};
        false -> State#state{active_left = max(0, Left - 1), reads = Reads + 1}
    end.

%% A quiet spell: a socket in counted reads goes back to one-shot reads (see
%% ?BUSY_READS); {active, once} replaces the count.
quiet_reads(State = #state{sock = longpoll}) ->
    State;
quiet_reads(State = #state{read_mode = once}) ->
    State;
quiet_reads(State = #state{sock = Sock}) ->
    ok = setopts_active(Sock, once),
    State#state{read_mode = once, reads = 0, active_left = 1}.

%% Handle the held frames in order, until none is left (then read again) or
%% a channel reached max_pending_events (then wait for its '$hb_done').
handle_held(State = #state{paused_on = Pid}) when is_pid(Pid) ->
    {noreply, State};
handle_held(State = #state{held = [], sock = longpoll, lp_posts = Posts}) ->
    _ = [From ! {'$hb_lp_posted', Ref} || {From, Ref} <- Posts],
    {noreply, State#state{lp_posts = []}};
handle_held(State = #state{held = [], read_mode = counted, sock = Sock, active_left = Left}) ->
    case Left =< ?ACTIVE_TOPUP of
        true ->
            ok = setopts_active(Sock, ?ACTIVE_TOPUP),
            {noreply, State#state{active_left = Left + ?ACTIVE_TOPUP}};
        false ->
            {noreply, State}
    end;
handle_held(State = #state{held = [], sock = Sock, reads = Reads}) when Reads >= ?BUSY_READS ->
    %% {active, N} replaces a pending {active, once}
    ok = setopts_active(Sock, 2 * ?ACTIVE_TOPUP),
    {noreply, State#state{read_mode = counted, active_left = 2 * ?ACTIVE_TOPUP}};
handle_held(State = #state{held = [], sock = Sock, active_left = 0}) ->
    ok = setopts_active(Sock, once),
    {noreply, State#state{active_left = 1}};
handle_held(State = #state{held = []}) ->
    {noreply, State};  %% still armed
handle_held(State = #state{held = [Frame | Rest]}) ->
    case handle_frame(Frame, State#state{held = Rest}) of
        {noreply, State1} -> handle_held(State1);
        Stop -> Stop
    end.

setopts_active(Sock, Active) ->
    case inet:setopts(Sock, [{active, Active}]) of
        ok -> ok;
        {error, _} -> self() ! {tcp_closed, Sock}, ok
    end.

%% A channel acknowledged an event: below the bound again, reading resumes.
event_done(Pid, State = #state{by_pid = ByPid, channels = Channels}) ->
    case ByPid of
        #{Pid := Topic} ->
            #{Topic := C = #channel{in_flight = N}} = Channels,
            State1 = State#state{channels = Channels#{Topic := C#channel{in_flight = max(0, N - 1)}}},
            resume_if_paused_on(Pid, {noreply, State1});
        _ ->
            {noreply, State}
    end.

%% After Pid handled an event, or went away: if the socket waits for it,
%% handle the held frames and read again. The client's silence meanwhile was
%% ours, so its heartbeat clock restarts.
resume_if_paused_on(Pid, {noreply, State = #state{paused_on = Pid}}) ->
    handle_held(State#state{paused_on = undefined, last_recv = now_ms()});
resume_if_paused_on(_Pid, Result) ->
    Result.

%% fragment_timeout: runs while a message has partly arrived; restarts when
%% a data message (or, for a partial frame, any frame) completed.
watch_fragments(Messages, State = #state{decoder = Decoder, fragment_timer = Timer}) ->
    case hornbeam_nif:ws_pending(Decoder) of
        nothing ->
            cancel_timer(Timer),
            State#state{fragment_timer = undefined};
        Pending ->
            case Timer =:= undefined orelse lists:any(fun(M) -> progressed(Pending, M) end, Messages) of
                true -> cancel_timer(Timer), start_fragment_timer(State);
                false -> State
            end
    end.

progressed(_, {text, _}) -> true;
progressed(_, {binary, _}) -> true;
progressed(frame, _) -> true;
progressed(fragments, _) -> false.

start_fragment_timer(State = #state{config = #{fragment_timeout := Timeout}}) ->
    State#state{fragment_timer = erlang:start_timer(Timeout, self(), fragment_timeout)}.

cancel_timer(undefined) -> ok;
cancel_timer(Ref) -> _ = erlang:cancel_timer(Ref), ok.

handle_frame({text, Text}, State = #state{config = #{max_json_depth := Depth}}) ->
    ok = hornbeam_metrics:message_in(byte_size(Text)),
    case hornbeam_nif:msg_decode(Text, Depth) of
        {ok, {JoinRef, Ref, Topic, Event, Payload}} ->
            handle_message(JoinRef, Ref, Topic, Event, Payload, State);
        {error, Why, Text1} ->
            logger:info("invalid channel message (~s): ~s; closing with 1007", [Why, Text1]),
            close(1007, <<"invalid message: ", Text1/binary>>, State)
    end;
handle_frame({binary, Bin}, State) ->
    ok = hornbeam_metrics:message_in(byte_size(Bin)),
    %% A Phoenix V2 binary push (phoenix.js sends one for an ArrayBuffer
    %% payload); the channel gets the payload as {binary, Bytes}.
    case hornbeam_binary_msg:decode_push(Bin) of
        {ok, {JoinRef, Ref, Topic, Event, Payload}} ->
            handle_message(JoinRef, Ref, Topic, Event, {binary, Payload}, State);
        {error, Why} ->
            logger:info("invalid binary message (~s); closing with 1007", [Why]),
            close(1007, <<"invalid binary message: ", (atom_to_binary(Why))/binary>>, State)
    end;
handle_frame({ping, Payload}, State) ->
    write(hornbeam_nif:ws_encode(pong, Payload), State);
handle_frame({pong, _}, State) ->
    {noreply, State};
handle_frame({protocol_error, Why, Code}, State) ->
    logger:info("WebSocket protocol error ~s; closing with ~b", [Why, Code]),
    close(Code, atom_to_binary(Why), State);
handle_frame({close, Close}, State) ->
    %% Echo the close (RFC 6455 5.5.1), then end.
    Code = case Close of {C, _} -> C; none -> 1000 end,
    logger:debug("client sent close ~p", [Close]),
    _ = send_now(hornbeam_nif:ws_encode_close(Code, <<>>), State),
    {stop, normal, State#state{closing = true}}.

handle_message(_JoinRef, Ref, Topic, Event, Payload, State) ->
    case hornbeam_protocol:classify(Topic, Event) of
        {heartbeat, Dialect} ->
            write(hornbeam_protocol:reply_frame(Dialect, null, Ref, Topic, {ok, <<"{}">>}),
                  State#state{hibernate_now = true});
        {join, Dialect} ->
            join(_JoinRef, Ref, Topic, Payload, Dialect, State);
        {leave, Dialect} ->
            leave(_JoinRef, Ref, Topic, Dialect, State);
        {{event, Name}, _} ->
            event(_JoinRef, Ref, Topic, Name, Payload, State)
    end.

%% --- join / leave / events ------------------------------------------------------

join(JoinRef, Ref, Topic, Payload, Dialect, State0) ->
    %% A duplicate join replaces the joined channel: shut it down now, answer
    %% the new join, then tell the client the old join_ref is closed.
    {CloseAfter, State} =
        case State0#state.channels of
            #{Topic := Old} ->
                {[{Old#channel.join_ref, Old#channel.dialect}],
                 drop_channel(Topic, Old, duplicate_join, State0)};
            _ ->
                {[], State0}
        end,
    #state{channels = Channels, config = Config} = State,
    #{max_channels_per_connection := MaxChannels} = Config,
    case map_size(Channels) >= MaxChannels of
        true ->
            logger:info("join of ~s refused: max_channels_per_connection (~b) reached", [Topic, MaxChannels]),
            ok = hornbeam_metrics:inc(join_errors),
            State1 = do_write(hornbeam_protocol:reply_frame(Dialect, JoinRef, Ref, Topic,
                                 {error, <<"{\"reason\":\"too many channels joined\"}">>}), State),
            write_closes(CloseAfter, Topic, State1);
        false ->
            case hornbeam_endpoint:route(Config, Topic) of
                {ok, Handler, Pattern, TopicParams} ->
                    start_channel(JoinRef, Ref, Topic, Payload, Dialect, Handler, Pattern,
                                  TopicParams, CloseAfter, State);
                {error, Why} ->
                    logger:info("join of ~s refused: ~s", [Topic, Why]),
                    ok = hornbeam_metrics:inc(join_errors),
                    State1 = do_write(hornbeam_protocol:reply_frame(Dialect, null, Ref, Topic,
                                         {error, <<"{\"reason\":\"unmatched topic\"}">>}), State),
                    write_closes(CloseAfter, Topic, State1)
            end
    end.

start_channel(JoinRef, Ref, Topic, Payload, Dialect, Handler, Pattern, TopicParams, CloseAfter,
              State = #state{channels = Channels, by_pid = ByPid, config = Config}) ->
    Socket = #{id => State#state.socket_id, conn_id => State#state.id, topic => Topic, topic_params => TopicParams,
               pattern => Pattern, join_ref => JoinRef, params => State#state.params,
               assigns => State#state.assigns, transport_pid => self(), channel_pid => self(),
               handler => Handler, dialect => Dialect},
    Args = #{socket => Socket, join_ref => JoinRef, ref => Ref, payload => Payload,
             max_json_depth => maps:get(max_json_depth, Config),
             hibernate_after => maps:get(hibernate_after, Config)},
    case hornbeam_channel_sup:start_channel(Args) of
        {ok, Pid} ->
            Mon = erlang:monitor(process, Pid),
            Channel = #channel{pid = Pid, monitor = Mon, join_ref = JoinRef, join_msg_ref = Ref,
                               dialect = Dialect, close_after_join = CloseAfter},
            {noreply, State#state{channels = Channels#{Topic => Channel},
                                  by_pid = ByPid#{Pid => Topic}}};
        {error, Reason} ->
            logger:error("could not start a channel for ~s: ~0p", [Topic, Reason]),
            ok = hornbeam_metrics:inc(join_errors),
            State1 = do_write(hornbeam_protocol:reply_frame(Dialect, JoinRef, Ref, Topic,
                                 {error, <<"{\"reason\":\"join crashed\"}">>}), State),
            write_closes(CloseAfter, Topic, State1)
    end.

join_answered(Pid, ok_via_channel, Frame, State) ->
    %% The channel intercepts broadcasts: it subscribed itself and forwards
    %% them (hornbeam_channel_server), so this connection does not subscribe.
    join_answered(Pid, ok, false, Frame, State);
join_answered(Pid, Outcome, Frame, State) ->
    join_answered(Pid, Outcome, Outcome =:= ok, Frame, State).

join_answered(Pid, Outcome, Subscribe, Frame, State = #state{by_pid = ByPid, channels = Channels}) ->
    case ByPid of
        #{Pid := Topic} ->
            #{Topic := Channel} = Channels,
            %% Subscribe before the client learns it joined, so a broadcast
            %% sent right after the reply reaches it.
            _ = Subscribe andalso hornbeam_pubsub:subscribe(Topic),
            ok = hornbeam_metrics:inc(case Outcome of error -> join_errors; _ -> joins end),
            State1 = do_write(Frame, State),
            State2 = emit_closes(Channel#channel.close_after_join, Topic, State1),
            case Outcome of
                ok ->
                    %% Phoenix clients sync presence from this state, then diffs.
                    PresenceState = hornbeam_nif:msg_encode_frame(
                                      Channel#channel.join_ref, null, Topic, <<"presence_state">>,
                                      hornbeam_presence:list_json(Topic)),
                    State3 = do_write(PresenceState, State2),
                    C = Channel#channel{joined = true, close_after_join = []},
                    after_write(State3#state{channels = Channels#{Topic := C}, hibernate_now = true});
                error ->
                    erlang:demonitor(Channel#channel.monitor, [flush]),
                    after_write(forget(Topic, Pid, State2))
            end;
        _ ->
            %% The channel was dropped (duplicate join, leave) before it answered.
            {noreply, State}
    end.

leave(JoinRef, Ref, Topic, Dialect, State = #state{channels = Channels}) ->
    case Channels of
        #{Topic := Channel = #channel{join_ref = JoinRef}} ->
            State1 = drop_channel(Topic, Channel, left, State),
            State2 = do_write(hornbeam_protocol:reply_frame(Dialect, JoinRef, Ref, Topic, {ok, <<"{}">>}), State1),
            write_closes([{JoinRef, Channel#channel.dialect}], Topic, State2);
        #{Topic := _Stale} ->
            logger:debug("leave of ~s with a stale join_ref ignored", [Topic]),
            {noreply, State};
        _ ->
            write_reply(Dialect, JoinRef, Ref, Topic, ok, <<"{}">>, State)
    end.

event(JoinRef, Ref, Topic, Event, Payload, State = #state{channels = Channels, config = Config}) ->
    case Channels of
        #{Topic := C = #channel{join_ref = JoinRef, pid = Pid, in_flight = N}} ->
            Pid ! {'$hb_in', Event, Ref, Payload},
            State1 = State#state{channels = Channels#{Topic := C#channel{in_flight = N + 1}}},
            case N + 1 >= maps:get(max_pending_events, Config) of
                true ->
                    logger:debug("channel ~s has ~b events pending (max_pending_events); "
                                 "reading paused", [Topic, N + 1]),
                    {noreply, stop_reading(State1#state{paused_on = Pid})};
                false ->
                    {noreply, State1}
            end;
        #{Topic := _Stale} ->
            logger:debug("event ~s on ~s with a stale join_ref ignored", [Event, Topic]),
            {noreply, State};
        _ ->
            write_reply(phoenix, null, Ref, Topic, error, <<"{\"reason\":\"unmatched topic\"}">>, State)
    end.

%% Stop a channel that the client no longer wants: no phx_close/phx_error
%% comes from its exit any more.
drop_channel(Topic, #channel{pid = Pid, monitor = Mon, joined = Joined}, Reason, State) ->
    erlang:demonitor(Mon, [flush]),
    Pid ! {'$hb_leave', Reason},
    _ = Joined andalso hornbeam_pubsub:unsubscribe(Topic),
    forget(Topic, Pid, State).

forget(Topic, Pid, State = #state{channels = Channels, by_pid = ByPid}) ->
    State#state{channels = maps:remove(Topic, Channels), by_pid = maps:remove(Pid, ByPid)}.

channel_gone(Pid, Reason, State = #state{by_pid = ByPid, channels = Channels}) ->
    case ByPid of
        #{Pid := Topic} ->
            #{Topic := Channel = #channel{monitor = Mon, joined = Joined, dialect = Dialect,
                                          join_ref = JoinRef}} = Channels,
            erlang:demonitor(Mon, [flush]),
            _ = Joined andalso hornbeam_pubsub:unsubscribe(Topic),
            State1 = forget(Topic, Pid, State),
            case {Joined, clean_exit(Reason)} of
                {false, _} ->
                    %% Died before answering its join.
                    logger:error("channel for ~s died during join: ~0p", [Topic, Reason]),
                    ok = hornbeam_metrics:inc(join_errors),
                    write_reply(Dialect, JoinRef, Channel#channel.join_msg_ref, Topic, error,
                                <<"{\"reason\":\"join crashed\"}">>, State1);
                {true, true} ->
                    write(hornbeam_protocol:close_frame(Dialect, JoinRef, Topic), State1);
                {true, false} ->
                    case Reason of
                        crashed -> ok;
                        _ -> logger:error("channel for ~s exited: ~0p", [Topic, Reason])
                    end,
                    write(hornbeam_protocol:error_frame(Dialect, JoinRef, Topic,
                                                        <<"{\"reason\":\"channel_crash\"}">>), State1)
            end;
        _ ->
            {noreply, State}
    end.

clean_exit(normal) -> true;
clean_exit(shutdown) -> true;
clean_exit({shutdown, crashed}) -> false;
clean_exit({shutdown, _}) -> true;
clean_exit(_) -> false.

%% --- writing --------------------------------------------------------------------

write_reply(Dialect, JoinRef, Ref, Topic, Status, Json, State) ->
    write(hornbeam_protocol:reply_frame(Dialect, JoinRef, Ref, Topic, {Status, Json}), State).

write_closes(Closes, Topic, State) ->
    after_write(emit_closes(Closes, Topic, State)).

emit_closes(Closes, Topic, State) ->
    lists:foldl(fun({JoinRef, Dialect}, S) ->
                        do_write(hornbeam_protocol:close_frame(Dialect, JoinRef, Topic), S)
                end, State, Closes).

write(Frame, State) ->
    after_write(do_write(Frame, State)).

wants_broadcast(Topic, Exclude, #state{channels = Channels}) ->
    case Channels of
        #{Topic := #channel{pid = Exclude}} -> false;
        #{Topic := #channel{joined = true}} -> true;
        _ -> false
    end.

%% Write First and the frames already waiting in the mailbox behind it with
%% one port_command (one writev, one inet_reply). Only '$hb_out' and
%% '$hb_broadcast' are taken, in mailbox order, so frames keep their order
%% (a channel's pushes and broadcasts, then its reply, come from the one
%% process). Messages that write frames or change what this socket is
%% subscribed to ('$hb_joined', '$hb_crashed', 'DOWN') end the batch and
%% are handled right after it, so nothing overtakes them. Bounded by
%% write_batch_frames and write_batch_bytes.
write_batch(First, State = #state{config = Config}) ->
    #{write_batch_frames := MaxFrames, write_batch_bytes := MaxBytes} = Config,
    {Frames, Next} = collect_frames([First], 1, iolist_size(First), MaxFrames, MaxBytes, State),
    case {after_write(write_frames(Frames, State)), Next} of
        {{noreply, State1}, none} -> {noreply, State1};
        {{noreply, State1}, Msg} -> handle_info(Msg, State1);
        {Stop, _} -> Stop
    end.

collect_frames(Acc, N, Bytes, MaxFrames, MaxBytes, _State) when N >= MaxFrames; Bytes >= MaxBytes ->
    {lists:reverse(Acc), none};
collect_frames(Acc, N, Bytes, MaxFrames, MaxBytes, State) ->
    receive
        {'$hb_out', Frame} ->
            collect_frames([Frame | Acc], N + 1, Bytes + iolist_size(Frame), MaxFrames, MaxBytes, State);
        {'$hb_broadcast', Topic, Frame, Exclude} ->
            case wants_broadcast(Topic, Exclude, State) of
                true ->
                    collect_frames([Frame | Acc], N + 1, Bytes + iolist_size(Frame), MaxFrames, MaxBytes,
                                   State);
                false ->
                    collect_frames(Acc, N, Bytes, MaxFrames, MaxBytes, State)
            end;
        Msg = {'$hb_joined', _, _, _} -> {lists:reverse(Acc), Msg};
        Msg = {'$hb_crashed', _} -> {lists:reverse(Acc), Msg};
        Msg = {'DOWN', _, process, _, _} -> {lists:reverse(Acc), Msg}
    after 0 ->
        {lists:reverse(Acc), none}
    end.

%% Queue Frame on the socket without blocking (compressed first where
%% permessage-deflate was agreed); a full queue marks the connection for
%% closing (checked by after_write/1).
do_write(Frame, State) ->
    do_write(Frame, 1, State).

%% N: how many frames Frame holds (hornbeam_messages_out_total).
do_write(_Frame, _N, State = #state{closing = true}) ->
    State;
do_write(Frames, _N, State = #state{sock = longpoll}) ->
    lp_write(Frames, State);
do_write(Frame, N, State = #state{deflater = none}) ->
    queue_bytes(Frame, N, State);
do_write(Frame, N, State = #state{deflater = Deflater}) ->
    queue_bytes(hornbeam_nif:ws_deflate(Deflater, Frame), N, State).

%% A batch (write_batch/2): on a deflate connection each frame is
%% compressed on its own (a message per frame, RFC 7692).
write_frames(Frames, State = #state{sock = longpoll}) ->
    do_write(Frames, length(Frames), State);
write_frames(Frames, State = #state{deflater = none}) ->
    do_write(Frames, length(Frames), State);
write_frames(_Frames, State = #state{closing = true}) ->
    State;
write_frames(Frames, State = #state{deflater = Deflater}) ->
    queue_bytes([hornbeam_nif:ws_deflate(Deflater, F) || F <- Frames], length(Frames), State).

queue_bytes(Bytes, N, State = #state{sock = Sock}) ->
    case send_now(Bytes, State) of
        true ->
            hornbeam_metrics:messages_out(N, Bytes),
            State#state{unacked = State#state.unacked + 1};
        false ->
            ok = hornbeam_metrics:inc(slow_consumer_closes),
            #{max_send_queue := Max} = State#state.config,
            logger:warning("client is not reading: send queue over max_send_queue (~b bytes); "
                           "closing with 1008", [Max]),
            _ = gen_tcp:close(Sock),
            State#state{closing = true}
    end.

send_now(_Frame, #state{sock = longpoll}) ->
    true;   %% close frames: a session that ends answers its waiting GET with 410
send_now(Frame, #state{sock = Sock}) ->
    try erlang:port_command(Sock, Frame, [nosuspend])
    catch error:badarg -> true   %% socket already closed; tcp_closed follows
    end.

after_write(State = #state{closing = true}) -> {stop, normal, State};
after_write(State) -> {noreply, State}.

close(Code, Reason, State) ->
    Short = binary:part(Reason, 0, min(byte_size(Reason), 120)),
    _ = send_now(hornbeam_nif:ws_encode_close(Code, valid_utf8_prefix(Short)), State),
    {stop, normal, State#state{closing = true}}.

valid_utf8_prefix(Bin) ->
    case unicode:characters_to_binary(Bin) of
        B when is_binary(B) -> B;
        {_, Good, _} -> Good
    end.

schedule_heartbeat_check(#state{sock = longpoll, config = #{longpoll_timeout := Timeout}}) ->
    erlang:start_timer(max(100, Timeout div 2), self(), heartbeat_check);
schedule_heartbeat_check(#state{config = #{heartbeat_timeout := Timeout}}) ->
    erlang:start_timer(max(100, Timeout div 2), self(), heartbeat_check).

%% --- the long-poll transport ------------------------------------------------------

%% A poll: answer it with what waits, or keep it until something comes or
%% longpoll_poll_timeout (then it gets no messages: 204). A second poll
%% while one waits answers the first with nothing.
lp_poll(From, Ref, State = #state{lp = Buf0, config = Config}) ->
    Buf = case hornbeam_longpoll_buffer:poll(Buf0) of
              undefined -> Buf0;
              {OldFrom, OldRef, OldTimer} ->
                  cancel_timer(OldTimer),
                  OldFrom ! {'$hb_lp_messages', OldRef, []},
                  hornbeam_longpoll_buffer:set_poll(undefined, Buf0)
          end,
    case hornbeam_longpoll_buffer:take(Buf) of
        {[], _} ->
            #{longpoll_poll_timeout := PollTimeout} = Config,
            Timer = erlang:start_timer(PollTimeout, self(), {lp_poll_timeout, Ref}),
            State#state{lp = hornbeam_longpoll_buffer:set_poll({From, Ref, Timer}, Buf)};
        {Messages, Buf1} ->
            From ! {'$hb_lp_messages', Ref, Messages},
            State#state{lp = Buf1}
    end.

%% The waiting poll takes everything buffered. Called through a message to
%% self: the frames already in the mailbox are buffered first and go with it.
lp_flush(State = #state{lp = Buf}) ->
    case hornbeam_longpoll_buffer:poll(Buf) of
        {From, Ref, Timer} ->
            case hornbeam_longpoll_buffer:take(Buf) of
                {[], _} -> State;
                {Messages, Buf1} ->
                    cancel_timer(Timer),
                    From ! {'$hb_lp_messages', Ref, Messages},
                    State#state{lp = hornbeam_longpoll_buffer:set_poll(undefined, Buf1),
                                last_recv = now_ms()}
            end;
        undefined ->
            State
    end.

lp_write(Frames, State = #state{lp = Buf, config = #{max_send_queue := Max}}) ->
    case hornbeam_longpoll_buffer:add(Frames, Max, Buf) of
        {overflow, Buf1} ->
            logger:warning("long-poll client is not polling: buffer over max_send_queue (~b bytes); "
                           "ending the session", [Max]),
            State#state{lp = Buf1, closing = true};
        {Outcome, Buf1} ->
            _ = Outcome =:= ok orelse
                logger:info("a binary frame cannot travel over long-poll (phoenix.js parses every "
                            "polled message as JSON); dropped"),
            case hornbeam_longpoll_buffer:needs_flush(Buf1) of
                true ->
                    self() ! '$hb_lp_flush',
                    State#state{lp = hornbeam_longpoll_buffer:set_flush(true, Buf1)};
                false ->
                    State#state{lp = Buf1}
            end
    end.

now_ms() -> erlang:monotonic_time(millisecond).
