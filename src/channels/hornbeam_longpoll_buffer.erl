%% @doc The outgoing side of a long-poll session, as pure functions: the
%% messages waiting for the client's next poll, their byte count, and the
%% poll waiting for messages (if any).
%%
%% What `hornbeam_socket' writes is a WebSocket frame (a reply, a push, a
%% broadcast's shared frame); a poll answers the frames' payloads, so
%% `add/3' strips the header. Only text frames can travel: phoenix.js's
%% LongPoll hands every message of a poll to `JSON.parse', so a binary frame
%% (a `{binary, Bytes}' reply, push or broadcast) is dropped and reported
%% (`{dropped, binary}'). Control frames (close, ping, pong) have no meaning
%% here and are skipped.
-module(hornbeam_longpoll_buffer).

-export([new/0, add/3, take/1, bytes/1, frame_payload/1,
         poll/1, set_poll/2, needs_flush/1, set_flush/2]).

-record(buf, {
    %% payloads, newest first
    queue = [] :: [binary()],
    bytes = 0 :: non_neg_integer(),
    %% the GET waiting for messages: who asked, its ref, its poll timeout timer
    poll = undefined :: undefined | {pid(), reference(), reference()},
    %% a '$hb_lp_flush' is on its way to the session
    flush_sent = false :: boolean()
}).
-opaque buf() :: #buf{}.
-export_type([buf/0]).

-spec new() -> buf().
new() -> #buf{}.

%% @doc Queue the payload of Frame (a binary, or a list of binaries as a
%% write batch holds them). Past MaxBytes waiting the client is not polling
%% fast enough: `overflow' (the session ends, as a WebSocket client over
%% `max_send_queue' is closed).
-spec add(binary() | [binary()], pos_integer(), buf()) ->
    {ok | overflow | {dropped, binary}, buf()}.
add(Frames, MaxBytes, Buf) when is_list(Frames) ->
    lists:foldl(fun(F, {ok, B}) -> add(F, MaxBytes, B);
                   (F, {{dropped, binary}, B}) ->
                        case add(F, MaxBytes, B) of
                            {ok, B1} -> {{dropped, binary}, B1};
                            Other -> Other
                        end;
                   (_F, Acc = {overflow, _}) -> Acc
                end, {ok, Buf}, Frames);
add(Frame, MaxBytes, Buf = #buf{queue = Q, bytes = N}) ->
    case frame_payload(Frame) of
        {text, Payload} when N + byte_size(Payload) > MaxBytes ->
            {overflow, Buf};
        {text, Payload} ->
            {ok, Buf#buf{queue = [Payload | Q], bytes = N + byte_size(Payload)}};
        {binary, _} ->
            {{dropped, binary}, Buf};
        _Control ->
            {ok, Buf}
    end.

%% @doc Every waiting message, oldest first, and the buffer emptied.
-spec take(buf()) -> {[binary()], buf()}.
take(Buf = #buf{queue = Q}) ->
    {lists:reverse(Q), Buf#buf{queue = [], bytes = 0}}.

-spec bytes(buf()) -> non_neg_integer().
bytes(#buf{bytes = N}) -> N.

-spec poll(buf()) -> undefined | {pid(), reference(), reference()}.
poll(#buf{poll = P}) -> P.

-spec set_poll(undefined | {pid(), reference(), reference()}, buf()) -> buf().
set_poll(P, Buf) -> Buf#buf{poll = P}.

%% @doc A poll waits and messages too, and no flush is on its way.
-spec needs_flush(buf()) -> boolean().
needs_flush(#buf{poll = P, queue = Q, flush_sent = F}) ->
    P =/= undefined andalso Q =/= [] andalso not F.

-spec set_flush(boolean(), buf()) -> buf().
set_flush(F, Buf) -> Buf#buf{flush_sent = F}.

%% @doc The opcode and payload of one server-to-client WebSocket frame
%% (unmasked, as `hornbeam_nif:ws_encode/2' and `msg_encode_frame/5' write them).
-spec frame_payload(binary()) -> {text | binary | control, binary()} | invalid.
frame_payload(<<_Fin:1, _Rsv:3, Op:4, 0:1, Len7:7, Rest/binary>>) ->
    Payload = case Len7 of
                  126 -> <<_:16, P/binary>> = Rest, P;
                  127 -> <<_:64, P/binary>> = Rest, P;
                  _ -> Rest
              end,
    case Op of
        1 -> {text, Payload};
        2 -> {binary, Payload};
        _ -> {control, Payload}
    end;
frame_payload(_) ->
    invalid.
