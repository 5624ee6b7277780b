%% @doc One process per joined topic per connection: runs the channel
%% module's callbacks and keeps the socket (and its assigns).
%%
%% Life: started by the connection with the join request; joins in
%% `handle_continue' (so the connection never waits on a slow join) and tells
%% the connection `{'$hb_joined', self(), ok | ok_via_channel | error,
%% ReplyFrame}' (ok_via_channel: it intercepts, and subscribed itself). Events
%% arrive as `{'$hb_in', Event, Ref, Payload}' and run in arrival order;
%% each one handled is acknowledged with `{'$hb_done', self()}' (after its
%% reply), which is how the connection bounds the events waiting here
%% (`max_pending_events', see `hornbeam_socket').
%% Frames for the client go to the connection as `{'$hb_out', Frame}'.
%%
%% Endings, and what the client sees (the connection sends it):
%%   * `{stop, ...}' from a callback, leave, duplicate join, or the
%%     connection closing: a normal/`{shutdown, _}' exit → `phx_close';
%%   * an exception in a callback: logged here, the connection is told with
%%     `{'$hb_crashed', self()}' → `phx_error'; the process then exits with
%%     `{shutdown, crashed}' so no second crash report is written;
%%   * any other exit (a kill, a linked crash) → `phx_error' too.
%%
%% Broadcasts normally skip this process (the fastlane). A channel whose
%% module intercepts events (`intercept/0', or `@room.intercept' in Python)
%% subscribes itself instead of its connection, once joined: it runs
%% `handle_out/3' for an intercepted event and forwards the encoded frame of
%% any other as `{'$hb_out', Frame}', so the topic's broadcasts keep their
%% order. Broadcasts to topics subscribed with `hornbeam_channel:subscribe/2'
%% (kept in this process's dictionary, as pg keeps no per-process index)
%% go to `handle_info/2' as `{hornbeam_broadcast, Topic, Event, Payload}'.
-module(hornbeam_channel_server).
-behaviour(gen_server).

-export([start_link/1, push/3, subscribe/3, unsubscribe/3]).
-export([init/1, handle_continue/2, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-type start_args() :: #{
    socket := hornbeam_channel:socket(),
    join_ref := hornbeam_nif:msg_ref(),
    ref := hornbeam_nif:msg_ref(),
    payload := binary() | {binary, binary()},  %% raw JSON of the join payload, or bytes
    max_json_depth := pos_integer(),
    hibernate_after := timeout()
}.
-export_type([start_args/0]).

-record(state, {
    socket :: hornbeam_channel:socket(),
    joined = false :: boolean(),
    join_ref_msg :: hornbeam_nif:msg_ref(),
    join_payload :: binary() | undefined,
    max_json_depth :: pos_integer(),
    %% the handler's payload_format/0, asked once at start, not per event
    payload_format = decoded :: decoded | raw,
    %% events of its own topic that run handle_out/3 (none: the fastlane)
    intercepts = [] :: [binary()]
}).

-define(SUBSCRIBED(Topic), {'$hb_subscribed', Topic}).

-spec start_link(start_args()) -> {ok, pid()} | {error, term()}.
start_link(Args = #{hibernate_after := HibernateAfter}) ->
    gen_server:start_link(?MODULE, Args, [{hibernate_after, HibernateAfter}]).

%% @doc Push Event to the client of the channel process ChannelPid (used by
%% the Python worker's `push(socket, ...)').
-spec push(pid(), binary(), hornbeam_pubsub:payload()) -> ok.
push(ChannelPid, Event, Payload) ->
    gen_server:cast(ChannelPid, {push, Event, Payload}).

%% @doc Subscribe channel ChannelPid (whose own topic is Own) to Topic; from
%% inside the channel's callbacks it takes effect at once, from elsewhere
%% when the channel process reads the request.
-spec subscribe(pid(), binary(), term()) -> ok | {error, term()}.
subscribe(ChannelPid, Own, Topic) ->
    case check_topic(Own, Topic) of
        ok when ChannelPid =:= self() -> subscribe_self(Topic);
        ok -> ChannelPid ! {'$hb_subscribe', Topic}, ok;
        Error -> Error
    end.

-spec unsubscribe(pid(), binary(), term()) -> ok | {error, term()}.
unsubscribe(ChannelPid, Own, Topic) ->
    case check_topic(Own, Topic) of
        ok when ChannelPid =:= self() -> unsubscribe_self(Topic);
        ok -> ChannelPid ! {'$hb_unsubscribe', Topic}, ok;
        Error -> Error
    end.

-spec init(start_args()) -> {ok, #state{}, {continue, join}}.
init(#{socket := Socket0, ref := Ref, payload := Payload, max_json_depth := Depth}) ->
    Socket = Socket0#{channel_pid => self()},
    #{transport_pid := Transport, topic := Topic, conn_id := ConnId, handler := Handler} = Socket,
    logger:set_process_metadata(#{conn_id => ConnId, topic => Topic,
                                  handler => maps:get(pattern, Socket, Handler)}),
    %% function_exported/3 below is false for a module not loaded yet.
    _ = code:ensure_loaded(Handler),
    _ = erlang:monitor(process, Transport),
    {ok, #state{socket = Socket, join_ref_msg = Ref, join_payload = Payload,
                max_json_depth = Depth, payload_format = payload_format(Handler)},
     {continue, join}}.

-spec handle_continue(join, #state{}) ->
    {noreply, #state{}} | {noreply, #state{}, hibernate} | {stop, term(), #state{}}.
handle_continue(join, State = #state{socket = Socket, join_payload = Raw}) ->
    #{handler := Handler, topic := Topic} = Socket,
    Result =
        case payload_in(Raw, State) of
            {ok, Payload} -> run(fun() -> Handler:join(Topic, Payload, Socket) end);
            {error, _, _} = E -> {bad_payload, E}
        end,
    State1 = State#state{join_payload = undefined},
    case Result of
        {ok, {ok, NewSocket}} when is_map(NewSocket) ->
            joined(ok, {json, <<"{}">>}, NewSocket, State1);
        {ok, {ok, Reply, NewSocket}} when is_map(NewSocket) ->
            joined(ok, Reply, NewSocket, State1);
        {ok, {error, Reply}} ->
            join_refused(Reply, State1);
        {ok, Other} ->
            logger:error("channel ~s join/3 returned an invalid value: ~0p", [Handler, Other]),
            join_refused(#{<<"reason">> => <<"join crashed">>}, State1);
        {bad_payload, {error, Why, Text}} ->
            logger:info("join payload is not usable JSON (~s): ~s", [Why, Text]),
            join_refused(#{<<"reason">> => <<"invalid payload">>}, State1);
        {crashed, Class, Reason, Stack} ->
            logger:error("channel ~s join/3 crashed: ~0p:~0p~n~p",
                         [Handler, Class, Reason, Stack]),
            join_refused(#{<<"reason">> => <<"join crashed">>}, State1)
    end.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call(socket, _From, State = #state{socket = Socket}) ->
    {reply, Socket, State};
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({push, Event, Payload}, State = #state{socket = Socket}) ->
    _ = hornbeam_channel:push(Socket, Event, Payload),
    {noreply, State};
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}} | {stop, term(), #state{}}.
handle_info({'$hb_in', Event, Ref, Raw}, State = #state{socket = Socket}) ->
    #{handler := Handler, transport_pid := Transport} = Socket,
    Answer = case payload_in(Raw, State) of
                 {ok, Payload} ->
                     Result = run(fun() -> call_handle_in(Handler, Event, Payload, Socket) end),
                     handle_in_result(Result, Event, Ref, State);
                 {error, Why, Text} ->
                     logger:info("event ~s payload is not usable JSON (~s): ~s", [Event, Why, Text]),
                     reply(Ref, {error, #{<<"reason">> => <<"invalid payload">>}}, Socket),
                     {noreply, State}
             end,
    Transport ! {'$hb_done', self()},
    Answer;
handle_info({'$hb_channel_broadcast', Topic, Event, Payload, Frame, Exclude},
            State = #state{socket = Socket}) ->
    Self = self(),
    case Socket of
        _ when Exclude =:= Self ->
            {noreply, State};
        #{topic := Topic, transport_pid := Transport} ->
            case lists:member(Event, State#state.intercepts) of
                true -> handle_out(Event, Payload, State);
                false -> Transport ! {'$hb_out', Frame}, {noreply, State}
            end;
        _ ->
            case get(?SUBSCRIBED(Topic)) of
                true -> subscribed_broadcast(Topic, Event, Payload, State);
                _ -> {noreply, State}   %% unsubscribed while it was on its way
            end
    end;
handle_info({'$hb_subscribe', Topic}, State) ->
    _ = subscribe_self(Topic),
    {noreply, State};
handle_info({'$hb_unsubscribe', Topic}, State) ->
    _ = unsubscribe_self(Topic),
    {noreply, State};
handle_info({'$hb_leave', Reason}, State) ->
    {stop, {shutdown, Reason}, State};
handle_info({'DOWN', _, process, Pid, _}, State = #state{socket = #{transport_pid := Pid}}) ->
    {stop, {shutdown, closed}, State};
handle_info(Msg, State) ->
    call_handle_info(Msg, State).

-spec terminate(term(), #state{}) -> ok.
terminate(Reason, #state{joined = true, socket = Socket = #{handler := Handler}}) ->
    ok = hornbeam_metrics:forget(),
    case erlang:function_exported(Handler, terminate, 2) of
        true ->
            case run(fun() -> Handler:terminate(Reason, Socket) end) of
                {crashed, Class, Why, Stack} ->
                    logger:error("channel ~s terminate/2 crashed: ~0p:~0p~n~p", [Handler, Class, Why, Stack]);
                _ -> ok
            end;
        false -> ok
    end;
terminate(_Reason, _State) ->
    ok.

%% --- internals ---------------------------------------------------------------

call_handle_info(Msg, State = #state{socket = Socket = #{handler := Handler}}) ->
    case erlang:function_exported(Handler, handle_info, 2) of
        true ->
            callback_result(handle_info, run(fun() -> Handler:handle_info(Msg, Socket) end), State);
        false ->
            logger:debug("channel ~s ignored message ~0p", [Handler, Msg]),
            {noreply, State}
    end.

%% The result of handle_info/2 or handle_out/3: both are
%% {noreply, Socket} | {stop, Reason, Socket}.
callback_result(_Name, {ok, {noreply, NewSocket}}, State) when is_map(NewSocket) ->
    {noreply, State#state{socket = NewSocket}};
callback_result(_Name, {ok, {stop, Reason, NewSocket}}, State) when is_map(NewSocket) ->
    {stop, stop_reason(Reason), State#state{socket = NewSocket}};
callback_result(Name, {ok, Other}, State = #state{socket = #{handler := Handler}}) ->
    logger:error("channel ~s ~s returned an invalid value: ~0p", [Handler, Name, Other]),
    crashed(State);
callback_result(Name, {crashed, Class, Reason, Stack}, State = #state{socket = #{handler := Handler}}) ->
    logger:error("channel ~s ~s crashed: ~0p:~0p~n~p", [Handler, Name, Class, Reason, Stack]),
    crashed(State).

%% An intercepted broadcast of our own topic: handle_out/3 decides what the
%% client sees (it pushes, or not).
handle_out(Event, Payload, State = #state{socket = Socket = #{handler := Handler}}) ->
    case broadcast_payload(Payload, State) of
        {ok, Term} ->
            callback_result(handle_out, run(fun() -> Handler:handle_out(Event, Term, Socket) end), State);
        error ->
            {noreply, State}
    end.

subscribed_broadcast(Topic, Event, Payload, State) ->
    case broadcast_payload(Payload, State) of
        {ok, Term} -> call_handle_info({hornbeam_broadcast, Topic, Event, Term}, State);
        error -> {noreply, State}
    end.

%% A broadcast's payload as the channel's callbacks take payloads.
broadcast_payload({binary, Bytes}, _State) ->
    {ok, {binary, Bytes}};
broadcast_payload(Json, #state{payload_format = raw}) ->
    {ok, {json, Json}};
broadcast_payload(Json, #state{max_json_depth = Depth}) ->
    case hornbeam_nif:json_decode(Json, Depth) of
        {ok, Term} -> {ok, Term};
        {error, Why, Text} ->
            logger:warning("broadcast payload is not usable JSON (~s): ~s", [Why, Text]),
            error
    end.

check_topic(_Own, Topic) when not is_binary(Topic) -> {error, {bad_topic, Topic}};
check_topic(Topic, Topic) -> {error, own_topic};
check_topic(_Own, Topic) ->
    case unicode:characters_to_binary(Topic) of
        Topic -> ok;
        _ -> {error, {bad_topic, Topic}}
    end.

subscribe_self(Topic) ->
    case put(?SUBSCRIBED(Topic), true) of
        true -> ok;
        undefined -> hornbeam_pubsub:subscribe_channel(Topic)
    end.

unsubscribe_self(Topic) ->
    case erase(?SUBSCRIBED(Topic)) of
        true -> _ = hornbeam_pubsub:unsubscribe_channel(Topic), ok;
        undefined -> ok
    end.

%% The events this channel intercepts: Python channels carry them in the
%% socket, Erlang modules answer intercept/0 (and need handle_out/3).
intercepts(Handler, Socket) ->
    Listed = case Socket of
                 #{intercepts := L} -> L;
                 _ -> erlang:function_exported(Handler, intercept, 0) andalso Handler:intercept()
             end,
    case Listed of
        false -> [];
        [] -> [];
        _ when not is_list(Listed) ->
            logger:error("channel ~s intercept/0 must return a list of event names, not ~0p; "
                         "nothing is intercepted", [Handler, Listed]),
            [];
        _ ->
            case lists:all(fun is_binary/1, Listed) andalso
                 (maps:is_key(intercepts, Socket) orelse erlang:function_exported(Handler, handle_out, 3)) of
                true -> Listed;
                false ->
                    logger:error("channel ~s intercepts ~0p but has no handle_out/3 or names an event "
                                 "that is not a binary; nothing is intercepted", [Handler, Listed]),
                    []
            end
    end.

run(Fun) ->
    try {ok, Fun()}
    catch Class:Reason:Stack -> {crashed, Class, Reason, Stack}
    end.

call_handle_in(Handler, Event, Payload, Socket) ->
    case erlang:function_exported(Handler, handle_in, 3) of
        true -> Handler:handle_in(Event, Payload, Socket);
        false -> {reply, {error, #{<<"reason">> => <<"unhandled event">>}}, Socket}
    end.

payload_format(Handler) ->
    case erlang:function_exported(Handler, payload_format, 0) andalso Handler:payload_format() of
        raw -> raw;
        _ -> decoded
    end.

payload_in({binary, Bytes}, _State) when is_binary(Bytes) ->
    %% A binary frame's payload: bytes, never JSON, whatever the format.
    {ok, {binary, Bytes}};
payload_in(Raw, #state{payload_format = raw}) ->
    {ok, {json, Raw}};
payload_in(Raw, #state{max_json_depth = Depth}) ->
    case hornbeam_nif:json_decode(Raw, Depth) of
        {ok, Term} -> {ok, Term};
        {error, Why, Text} -> {error, Why, Text}
    end.

joined(Status, Reply, NewSocket, State = #state{socket = Socket}) ->
    %% The callback may not change who we are, only assigns.
    Kept = maps:merge(NewSocket, maps:with([id, topic, topic_params, pattern, join_ref, params,
                                            transport_pid, channel_pid, handler, dialect], Socket)),
    Frame = reply_frame(State#state.join_ref_msg, {Status, Reply}, Kept),
    #{handler := Handler, topic := Topic} = Kept,
    %% Subscribed before the client learns it joined (as the connection
    %% does for the fastlane), so a broadcast right after the reply reaches it.
    Intercepts = intercepts(Handler, Kept),
    Outcome = case Intercepts of
                  [] -> ok;
                  _ -> ok = hornbeam_pubsub:subscribe_channel(Topic), ok_via_channel
              end,
    maps:get(transport_pid, Socket) ! {'$hb_joined', self(), Outcome, Frame},
    ok = hornbeam_metrics:channel_joined(maps:get(pattern, Kept, atom_to_binary(maps:get(handler, Kept)))),
    %% A joined channel mostly waits: shed the join's garbage now.
    {noreply, State#state{socket = Kept, joined = true, intercepts = Intercepts}, hibernate}.

join_refused(Reply, State = #state{socket = Socket}) ->
    Frame = reply_frame(State#state.join_ref_msg, {error, Reply}, Socket),
    maps:get(transport_pid, Socket) ! {'$hb_joined', self(), error, Frame},
    {stop, normal, State}.

handle_in_result({ok, {noreply, NewSocket}}, _Event, _Ref, State) when is_map(NewSocket) ->
    {noreply, State#state{socket = NewSocket}};
handle_in_result({ok, {reply, Reply, NewSocket}}, _Event, Ref, State) when is_map(NewSocket) ->
    reply(Ref, Reply, NewSocket),
    {noreply, State#state{socket = NewSocket}};
handle_in_result({ok, {stop, Reason, NewSocket}}, _Event, _Ref, State) when is_map(NewSocket) ->
    {stop, stop_reason(Reason), State#state{socket = NewSocket}};
handle_in_result({ok, {stop, Reason, Reply, NewSocket}}, _Event, Ref, State) when is_map(NewSocket) ->
    reply(Ref, Reply, NewSocket),
    {stop, stop_reason(Reason), State#state{socket = NewSocket}};
handle_in_result({ok, Other}, Event, Ref, State = #state{socket = Socket = #{handler := Handler}}) ->
    logger:error("channel ~s handle_in/3 for ~s returned an invalid value: ~0p", [Handler, Event, Other]),
    reply(Ref, {error, #{<<"reason">> => <<"handler returned an invalid value">>}}, Socket),
    {noreply, State};
handle_in_result({crashed, Class, Reason, Stack}, Event, _Ref,
                 State = #state{socket = Socket = #{handler := Handler}}) ->
    %% a client can send the crashing event again and again: rate-limited
    _ = hornbeam_log_limiter:allow({crash, maps:get(pattern, Socket, Handler), Event})
        andalso logger:error("channel ~s handle_in/3 for ~s crashed: ~0p:~0p~n~p",
                             [Handler, Event, Class, Reason, Stack]),
    crashed(State).

%% A deliberate stop is reported to the client as phx_close: keep it a
%% "normal" exit for the supervisor and the connection.
stop_reason(normal) -> normal;
stop_reason(shutdown) -> shutdown;
stop_reason({shutdown, _} = R) -> R;
stop_reason(Other) -> {shutdown, Other}.

crashed(State = #state{socket = #{transport_pid := Transport}}) ->
    Transport ! {'$hb_crashed', self()},
    {stop, {shutdown, crashed}, State}.

reply(Ref, Reply, Socket) ->
    Frame = reply_frame(Ref, normalize_reply(Reply), Socket),
    maps:get(transport_pid, Socket) ! {'$hb_out', Frame},
    ok.

normalize_reply(ok) -> {ok, {json, <<"{}">>}};
normalize_reply(error) -> {error, {json, <<"{}">>}};
normalize_reply({Status, Payload}) when Status =:= ok; Status =:= error -> {Status, Payload};
normalize_reply(Other) -> {ok, Other}.

reply_frame(Ref, {Status, {binary, Bytes}}, Socket = #{join_ref := JoinRef, topic := Topic})
  when is_binary(Bytes) ->
    %% Bytes go back in a Phoenix binary reply (kind 1).
    case hornbeam_binary_msg:reply_frame(JoinRef, Ref, Topic, Status, Bytes) of
        {ok, Frame} -> Frame;
        {error, Why} ->
            logger:error("binary reply not sent: ~0p", [Why]),
            reply_frame(Ref, {error, #{<<"reason">> => <<"reply could not be encoded">>}}, Socket)
    end;
reply_frame(Ref, {Status, Payload}, #{dialect := Dialect, join_ref := JoinRef, topic := Topic}) ->
    Json = case hornbeam_pubsub:encode_payload(Payload) of
               {ok, J} -> J;
               {error, Bad} ->
                   logger:error("reply is not JSON-encodable: ~0p", [Bad]),
                   <<"{\"reason\":\"reply is not JSON-encodable\"}">>
           end,
    hornbeam_protocol:reply_frame(Dialect, JoinRef, Ref, Topic, {Status, Json}).
