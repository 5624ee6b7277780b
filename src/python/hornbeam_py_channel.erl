%% @doc The channel module for every Python channel: runs `@room.on_join',
%% `@room.on(event)' and `@room.on_leave' in the worker pool.
%%
%% The channel process (`hornbeam_channel_server') owns the socket; the
%% assigns live here as JSON text (`py_assigns'), so any worker can run any
%% event and a worker crash loses nothing. Payloads stay raw JSON end to end:
%% the worker turns them into Python objects in Rust. A binary frame's
%% payload travels as `{binary, Bytes}' (the handler gets `bytes'), and a
%% handler's `bytes' response comes back the same way (a binary reply).
%%
%% `@room.intercept' handlers run as `handle_out/3' (the channel carries
%% their events in the socket's `intercepts', read at join from what the
%% worker reported at init), `@room.on_info' as `handle_info/2': for a
%% broadcast on a subscribed topic, a `send(socket, message)' from Python
%% (`{'$hb_py_message', Json}') or any JSON-encodable term sent with `!'.
-module(hornbeam_py_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3, handle_out/3, handle_info/2, terminate/2, payload_format/0,
         channel_token/1]).
-export([intercepts/1]).

-define(INVALID, #{<<"reason">> => <<"handler returned an invalid value">>}).

-spec payload_format() -> raw.
payload_format() -> raw.

-spec join(binary(), {json, binary()} | {binary, binary()}, hornbeam_channel:socket()) ->
    {ok, hornbeam_pubsub:payload(), hornbeam_channel:socket()} | {error, hornbeam_pubsub:payload()}.
join(Topic, {_, _} = Payload, Socket0) ->
    Socket = Socket0#{py_assigns => assigns_json(Socket0), py_wire => socket_wire(Socket0)},
    #{pattern := Pattern, topic_params := TopicParams} = Socket,
    Args = #{pattern => Pattern, topic => Topic, topic_params => TopicParams,
             payload => wire_payload(Payload), socket => py_socket(Socket)},
    case hornbeam_python:channel_call(join, Args) of
        {ok, {ok, Resp, Assigns}} ->
            {ok, response(Resp), Socket#{py_assigns := Assigns, intercepts => intercepts(Pattern)}};
        {ok, {error, Reason}} ->
            {error, response(Reason)};
        {ok, {invalid, Message}} ->
            logger:error("~ts", [Message]),
            {error, ?INVALID};
        {ok, {no_handler, Message}} ->
            logger:error("no Python join handler for ~ts: ~ts", [Pattern, Message]),
            {error, #{<<"reason">> => <<"join crashed">>}};
        {ok, {crash, Message}} ->
            %% the traceback was logged by the worker
            logger:info("Python join of ~ts crashed: ~ts", [Topic, Message]),
            {error, #{<<"reason">> => <<"join crashed">>}};
        {error, overloaded} ->
            logger:warning("Python join of ~ts refused: its worker is overloaded", [Topic]),
            {error, #{<<"reason">> => <<"overloaded">>}};
        {error, Why} ->
            logger:error("Python join of ~ts failed: ~0p", [Topic, Why]),
            {error, #{<<"reason">> => <<"join crashed">>}}
    end.

-spec handle_in(binary(), {json, binary()} | {binary, binary()}, hornbeam_channel:socket()) ->
    {noreply, hornbeam_channel:socket()}
    | {reply, hornbeam_channel:reply(), hornbeam_channel:socket()}
    | {stop, term(), hornbeam_channel:socket()}.
handle_in(Event, {_, _} = Payload, Socket = #{pattern := Pattern}) ->
    %% the compact form of an event call (the hot path; see the README's
    %% "The worker protocol"): the socket's fixed fields go as one binary
    %% encoded once per channel, named by a key the worker caches them under
    {Key, Fixed} = socket_fixed(Socket),
    Args = {Pattern, Event, wire_payload(Payload), maps:get(py_assigns, Socket, <<"{}">>), Key, Fixed},
    case hornbeam_python:channel_call(event, Args) of
        {ok, {reply, Status, Resp, Assigns}} ->
            {reply, {Status, response(Resp)}, Socket#{py_assigns := Assigns}};
        {ok, {noreply, Assigns}} ->
            {noreply, Socket#{py_assigns := Assigns}};
        {ok, {stop, Reason, Assigns}} ->
            logger:info("Python channel stopped on purpose: ~ts", [Reason]),
            {stop, {python_stop, Reason}, Socket#{py_assigns := Assigns}};
        {ok, {invalid, Message}} ->
            logger:error("~ts", [Message]),
            {reply, {error, ?INVALID}, Socket};
        {ok, {no_handler, _}} ->
            {reply, {error, #{<<"reason">> => <<"unhandled event">>}}, Socket};
        {ok, {crash, Message}} ->
            %% An exception in an event handler: phx_error, the client rejoins.
            exit({python_exception, Event, Message});
        {error, timeout} ->
            logger:error("Python handler for ~ts timed out; its worker was replaced", [Event]),
            {reply, {error, #{<<"reason">> => <<"timeout">>}}, Socket};
        {error, overloaded} ->
            %% already logged by the worker; the client may retry
            {reply, {error, #{<<"reason">> => <<"overloaded">>}}, Socket};
        {error, Why} ->
            logger:error("Python handler for ~ts failed: ~0p", [Event, Why]),
            {reply, {error, #{<<"reason">> => atom_to_binary(Why)}}, Socket}
    end.

%% @doc An intercepted broadcast: `@room.intercept' decides what this
%% client gets.
-spec handle_out(binary(), {json, binary()} | {binary, binary()}, hornbeam_channel:socket()) ->
    {noreply, hornbeam_channel:socket()}.
handle_out(Event, {_, _} = Payload, Socket = #{pattern := Pattern}) ->
    Args = #{pattern => Pattern, event => Event, payload => wire_payload(Payload), socket => py_socket(Socket)},
    case hornbeam_python:channel_call(out, Args) of
        {ok, {push, Resp, Assigns}} ->
            _ = hornbeam_channel:push(Socket, Event, response(Resp)),
            {noreply, Socket#{py_assigns := Assigns}};
        {ok, {noreply, Assigns}} ->
            {noreply, Socket#{py_assigns := Assigns}};
        Other ->
            not_handled(intercept, Event, Other),
            {noreply, Socket}
    end.

%% @doc A message to the channel process: `@room.on_info' gets it.
-spec handle_info(term(), hornbeam_channel:socket()) ->
    {noreply, hornbeam_channel:socket()} | {stop, term(), hornbeam_channel:socket()}.
handle_info(Msg = {'DOWN', _, process, _, _}, Socket) ->
    case hornbeam_python:worker_down(Msg) of
        true -> {noreply, Socket};   %% our monitor of a worker process (channel_call/2)
        false -> python_info(Msg, Socket)
    end;
handle_info(Msg, Socket) ->
    python_info(Msg, Socket).

python_info(Msg, Socket = #{pattern := Pattern}) ->
    case info_args(Msg) of
        {ok, What} ->
            Args = What#{pattern => Pattern, socket => py_socket(Socket)},
            case hornbeam_python:channel_call(info, Args) of
                {ok, {noreply, Assigns}} ->
                    {noreply, Socket#{py_assigns := Assigns}};
                {ok, {stop, Reason, Assigns}} ->
                    logger:info("Python channel stopped on purpose: ~ts", [Reason]),
                    {stop, {python_stop, Reason}, Socket#{py_assigns := Assigns}};
                {ok, {no_handler, _}} ->
                    logger:debug("Python channel ~ts has no on_info; message dropped", [Pattern]),
                    {noreply, Socket};
                Other ->
                    not_handled(on_info, <<"info">>, Other),
                    {noreply, Socket}
            end;
        error ->
            logger:warning("message to Python channel ~ts dropped: it is not JSON-encodable: ~0P",
                           [Pattern, Msg, 20]),
            {noreply, Socket}
    end.

info_args({hornbeam_broadcast, Topic, Event, Payload}) ->
    {ok, #{broadcast => {Topic, Event, wire_payload(Payload)}}};
info_args({'$hb_py_message', Json}) ->
    {ok, #{message => Json}};
info_args(Msg) ->
    case hornbeam_nif:json_encode(Msg) of
        {ok, Json} -> {ok, #{message => iolist_to_binary(Json)}};
        {error, _} -> error
    end.

%% What is left of a call to an intercept or on_info handler: a crash
%% errors the channel (as in handle_in/3); anything else is logged and the
%% message dropped.
not_handled(What, Event, {ok, {crash, Message}}) ->
    exit({python_exception, What, Event, Message});
not_handled(What, Event, {ok, {invalid, Message}}) ->
    logger:error("Python ~s handler for ~ts: ~ts", [What, Event, Message]);
not_handled(What, Event, {error, Why}) ->
    logger:error("Python ~s handler for ~ts failed: ~0p; nothing was pushed", [What, Event, Why]);
not_handled(What, Event, Other) ->
    logger:error("Python ~s handler for ~ts answered ~0p", [What, Event, Other]).

%% @doc The events the Python channel on Pattern intercepts (as the workers
%% reported them at init).
-spec intercepts(binary()) -> [binary()].
intercepts(Pattern) ->
    case [I || #{pattern := P, intercepts := I} <- hornbeam_python:channels(), P =:= Pattern] of
        [Events | _] when is_list(Events) -> [E || E <- Events, is_binary(E)];
        _ -> []
    end.

-spec terminate(term(), hornbeam_channel:socket()) -> ok.
terminate(Reason, Socket = #{pattern := Pattern, topic := Topic}) ->
    Args = #{pattern => Pattern, topic => Topic, reason => reason_text(Reason),
             socket => py_socket(Socket)},
    case hornbeam_python:channel_call(leave, Args) of
        {ok, ok} -> ok;
        {ok, {crash, Message}} -> logger:info("Python on_leave crashed: ~ts", [Message]);
        {ok, _} -> ok;
        {error, Why} -> logger:error("Python on_leave failed: ~0p", [Why])
    end.

%% @doc The opaque token a Python socket carries so that `push' and
%% `broadcast_from' find their way back: the connection, the channel, the
%% topic and the join_ref.
%% The payload as the worker takes it: JSON text (a binary; the runtime
%% decodes it) or `{binary, Bytes}' (the handler gets `bytes').
wire_payload({json, Json}) -> Json;
wire_payload({binary, _} = Bytes) -> Bytes.

%% A handler's response: JSON text, or `{binary, Bytes}' for `bytes'.
response({binary, Bytes}) when is_binary(Bytes) -> {binary, Bytes};
response(Json) -> {json, Json}.

-spec channel_token(hornbeam_channel:socket()) -> binary().
channel_token(#{transport_pid := T, channel_pid := C, topic := Topic, join_ref := JoinRef}) ->
    term_to_binary(#{transport_pid => T, channel_pid => C, topic => Topic, join_ref => JoinRef}).

%% The parts that do not change while the channel lives (the join_ref and
%% params as JSON, the channel token) are encoded once, at join, and kept in
%% the channel's socket as `py_wire'.
py_socket(Socket) ->
    Assigns = maps:get(py_assigns, Socket, <<"{}">>),
    {Wire, _Key, _Fixed} = wire(Socket),
    Wire#{assigns => Assigns}.

%% The fixed fields as the compact event call carries them: a key unique
%% in this VM and their encoding.
socket_fixed(Socket) ->
    {_Wire, Key, Fixed} = wire(Socket),
    {Key, Fixed}.

wire(#{py_wire := Cached}) -> Cached;
wire(Socket) -> socket_wire(Socket).

socket_wire(Socket = #{topic := Topic, join_ref := JoinRef, id := Id, params := Params}) ->
    {ok, RefJson} = hornbeam_nif:json_encode(JoinRef),
    Wire0 = #{topic => Topic, join_ref => RefJson,
              params => json(Params), channel => channel_token(Socket)},
    %% id: the socket id; absent is None in Python
    Wire = case Id of
               undefined -> Wire0;
               _ -> Wire0#{id => Id}
           end,
    {Wire, erlang:unique_integer([positive]), term_to_binary(Wire)}.

assigns_json(#{assigns := Assigns}) -> json(Assigns).

json(Term) ->
    case hornbeam_nif:json_encode(Term) of
        {ok, J} -> J;
        {error, _} -> <<"{}">>
    end.

reason_text({shutdown, Reason}) -> reason_text(Reason);
reason_text({python_stop, _}) -> <<"stop">>;
reason_text(left) -> <<"leave">>;
reason_text(closed) -> <<"disconnect">>;
reason_text(duplicate_join) -> <<"duplicate_join">>;
reason_text(Other) when is_atom(Other) -> atom_to_binary(Other);
reason_text(_) -> <<"crash">>.
