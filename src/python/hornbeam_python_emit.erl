%% @doc Default `emit_handler' of the Python pool: applies the side effects
%% that handlers request with `broadcast', `broadcast_from', `push',
%% `subscribe', `unsubscribe', `send' and `disconnect'.
%%
%% Emits arrive as `{broadcast, Topic, Event, Json}',
%% `{broadcast_from, Channel, Topic, Event, Json}',
%% `{push, Channel, Event, Json}', `{subscribe | unsubscribe, Channel, Topic}',
%% `{send, Channel, Json}' (to the channel process, for its
%% `@room.on_info', as `{'$hb_py_message', Json}') and `{disconnect, SocketId}', where Channel is the decoded token of
%% `hornbeam_py_channel:channel_token/1' and Json the payload's JSON text
%% (forwarded without decoding). The emits of a channel call run in the
%% calling process (`hornbeam_python:call/3', i.e. the channel process)
%% before it gets the handler's result, so a client sees a handler's pushes
%% before its reply; emits of HTTP calls and of background code run in the
%% worker's process.
-module(hornbeam_python_emit).

-export([handle_emit/1]).

-include_lib("kernel/include/logger.hrl").

-type channel() :: #{transport_pid := pid(), channel_pid := pid(), topic := binary(),
                     join_ref := hornbeam_nif:msg_ref()}.
-type payload() :: binary() | {binary, binary()}.   %% JSON text, or bytes
-type emit() :: {broadcast, binary(), binary(), payload()}
              | {broadcast_from, channel() | term(), binary(), binary(), payload()}
              | {push, channel() | term(), binary(), payload()}
              | {subscribe | unsubscribe, channel() | term(), binary()}
              | {send, channel() | term(), binary()}
              | {disconnect, binary()}.                 %% a socket id
-export_type([emit/0]).

-spec handle_emit(emit()) -> ok.
handle_emit({broadcast, Topic, Event, Payload}) ->
    logged(hornbeam_pubsub:broadcast(Topic, Event, payload(Payload)));
handle_emit({broadcast_from, #{channel_pid := From}, Topic, Event, Payload}) when is_pid(From) ->
    logged(hornbeam_pubsub:broadcast_from(From, Topic, Event, payload(Payload)));
handle_emit({push, Channel = #{transport_pid := T, topic := _, join_ref := _}, Event, Payload})
  when is_pid(T) ->
    logged(hornbeam_channel:push(Channel, Event, payload(Payload)));
handle_emit({subscribe, Channel = #{channel_pid := C, topic := _}, Topic}) when is_pid(C) ->
    logged(hornbeam_channel:subscribe(Channel, Topic));
handle_emit({unsubscribe, Channel = #{channel_pid := C, topic := _}, Topic}) when is_pid(C) ->
    logged(hornbeam_channel:unsubscribe(Channel, Topic));
handle_emit({send, #{channel_pid := C}, Json}) when is_pid(C) ->
    C ! {'$hb_py_message', Json},
    ok;
handle_emit({disconnect, SocketId}) ->
    logged(hornbeam:disconnect(SocketId));
handle_emit(Other) ->
    ?LOG_WARNING("dropping a Python emit with an unknown shape: ~0P", [Other, 10],
                 #{domain => [hornbeam, python]}),
    ok.

%% JSON text, or the bytes of a Python `bytes' payload (a binary frame).
payload({binary, Bytes}) -> {binary, Bytes};
payload(Json) -> {json, Json}.

logged(ok) -> ok;
logged({error, Reason}) ->
    ?LOG_WARNING("Python emit failed: ~0p", [Reason], #{domain => [hornbeam, python]}),
    ok.
