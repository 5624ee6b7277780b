%% @doc Phoenix V2 binary messages (phoenix.js's serializer), as pure
%% functions: what a WebSocket binary frame carries when a payload is
%% bytes rather than JSON.
%%
%% Layout: one kind byte, one length byte per string field (each field at
%% most 255 bytes of UTF-8), the fields, then the payload as it is.
%% <ul>
%% <li>push (client → server and server → client), kind 0. From the client:
%%     lengths of join_ref, ref, topic, event. From the server: lengths of
%%     join_ref, topic, event (a server push has no ref).</li>
%% <li>reply, kind 1: lengths of join_ref, ref, topic, status.</li>
%% <li>broadcast, kind 2: lengths of topic, event.</li>
%% </ul>
%% An absent ref (`null') is the empty string; integer refs are written in
%% decimal, as phoenix.js's refs are.
-module(hornbeam_binary_msg).

-export([decode_push/1, push_frame/4, reply_frame/5, broadcast_frame/3]).

-define(PUSH, 0).
-define(REPLY, 1).
-define(BROADCAST, 2).

-type error() :: not_a_push | truncated | bad_utf8 | {field_too_long, atom()}.
-export_type([error/0]).

%% @doc A client's binary push: `{JoinRef, Ref, Topic, Event, Payload}'
%% (empty refs are `null').
-spec decode_push(binary()) ->
    {ok, {hornbeam_nif:msg_ref(), hornbeam_nif:msg_ref(), binary(), binary(), binary()}}
    | {error, not_a_push | truncated | bad_utf8}.
decode_push(<<?PUSH, JL, RL, TL, EL, Rest/binary>>) ->
    case Rest of
        <<JoinRef:JL/binary, Ref:RL/binary, Topic:TL/binary, Event:EL/binary, Payload/binary>> ->
            case lists:all(fun is_utf8/1, [JoinRef, Ref, Topic, Event]) of
                true -> {ok, {null_if_empty(JoinRef), null_if_empty(Ref), Topic, Event, Payload}};
                false -> {error, bad_utf8}
            end;
        _ ->
            {error, truncated}
    end;
decode_push(<<?PUSH, _/binary>>) ->
    {error, truncated};
decode_push(_) ->
    {error, not_a_push}.

%% @doc A server push (kind 0) in a WebSocket binary frame.
-spec push_frame(hornbeam_nif:msg_ref(), binary(), binary(), iodata()) ->
    {ok, binary()} | {error, {field_too_long, atom()}}.
push_frame(JoinRef, Topic, Event, Payload) ->
    frame(?PUSH, [{join_ref, ref_text(JoinRef)}, {topic, Topic}, {event, Event}], Payload).

%% @doc A reply (kind 1) in a WebSocket binary frame.
-spec reply_frame(hornbeam_nif:msg_ref(), hornbeam_nif:msg_ref(), binary(), ok | error, iodata()) ->
    {ok, binary()} | {error, {field_too_long, atom()}}.
reply_frame(JoinRef, Ref, Topic, Status, Payload) ->
    frame(?REPLY, [{join_ref, ref_text(JoinRef)}, {ref, ref_text(Ref)}, {topic, Topic},
                   {status, atom_to_binary(Status)}], Payload).

%% @doc A broadcast (kind 2) in a WebSocket binary frame.
-spec broadcast_frame(binary(), binary(), iodata()) ->
    {ok, binary()} | {error, {field_too_long, atom()}}.
broadcast_frame(Topic, Event, Payload) ->
    frame(?BROADCAST, [{topic, Topic}, {event, Event}], Payload).

%% --- internals -------------------------------------------------------------------

frame(Kind, Fields, Payload) ->
    case [Name || {Name, Value} <- Fields, byte_size(Value) > 255] of
        [] ->
            Message = [Kind, [byte_size(V) || {_, V} <- Fields], [V || {_, V} <- Fields], Payload],
            {ok, hornbeam_nif:ws_encode(binary, Message)};
        [Name | _] ->
            {error, {field_too_long, Name}}
    end.

ref_text(null) -> <<>>;
ref_text(N) when is_integer(N) -> integer_to_binary(N);
ref_text(B) when is_binary(B) -> B.

null_if_empty(<<>>) -> null;
null_if_empty(B) -> B.

is_utf8(Bin) -> unicode:characters_to_binary(Bin) =:= Bin.
