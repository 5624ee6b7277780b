%% A small WebSocket client for tests: a process owns the TCP socket, masks
%% what it sends, and forwards each frame it receives to its owner as
%% `{ws, Client, Frame}' with Frame `{text, Bin} | {binary, Bin} |
%% {ping, Bin} | {pong, Bin} | {close, Code, Reason} | closed'.
-module(hornbeam_ws_client).

-export([connect/2, connect/3, send/2, send_raw/2, send_frame/3, send_frame/4,
         push/6, recv/1, recv/2, recv_json/1, recv_json/2, recv_all_json/2, expect_closed/2,
         close/1, client_frame/4, upgrade_request/2]).

-define(TIMEOUT, 5000).

%% @doc Connect to ws://127.0.0.1:Port/Path (Path may hold a query string).
connect(Port, Path) -> connect(Port, Path, []).

connect(Port, Path, Headers) ->
    Owner = self(),
    Ref = make_ref(),
    Pid = spawn_link(fun() -> init(Owner, Ref, Port, Path, Headers) end),
    receive
        {Ref, ok} -> {ok, Pid};
        {Ref, {error, _} = Error} -> Error
    after ?TIMEOUT -> {error, connect_timeout}
    end.

upgrade_request(Path, Headers) ->
    Key = base64:encode(crypto:strong_rand_bytes(16)),
    Base = [{"Host", "127.0.0.1"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"},
            {"Sec-WebSocket-Key", Key}, {"Sec-WebSocket-Version", "13"}],
    Names = [string:lowercase(N) || {N, _} <- Headers],
    All = [H || H = {N, _} <- Base, not lists:member(string:lowercase(N), Names)] ++ Headers,
    {Key, ["GET ", Path, " HTTP/1.1\r\n", [[N, ": ", V, "\r\n"] || {N, V} <- All], "\r\n"]}.

init(Owner, Ref, Port, Path, Headers) ->
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {packet, raw}]),
    {_Key, Request} = upgrade_request(Path, Headers),
    ok = gen_tcp:send(Sock, Request),
    case read_response(Sock, <<>>) of
        {101, Rest} ->
            Owner ! {Ref, ok},
            ok = inet:setopts(Sock, [{active, once}]),
            loop(Owner, Sock, Rest);
        {Status, Body} ->
            Owner ! {Ref, {error, {status, Status, Body}}}
    end.

read_response(Sock, Acc) ->
    case binary:split(Acc, <<"\r\n\r\n">>) of
        [Head, Rest] ->
            [StatusLine | _] = binary:split(Head, <<"\r\n">>),
            [_, Code | _] = binary:split(StatusLine, <<" ">>, [global]),
            Status = binary_to_integer(Code),
            case Status of
                101 -> {101, Rest};
                _ -> {Status, read_body(Sock, Head, Rest)}
            end;
        [_] ->
            case gen_tcp:recv(Sock, 0, ?TIMEOUT) of
                {ok, More} -> read_response(Sock, <<Acc/binary, More/binary>>);
                {error, Reason} -> {0, atom_to_binary(Reason)}
            end
    end.

read_body(Sock, Head, Rest) ->
    case re:run(Head, "(?i)content-length: *([0-9]+)", [{capture, all_but_first, binary}]) of
        {match, [Len]} -> read_exact(Sock, binary_to_integer(Len), Rest);
        nomatch -> Rest
    end.

read_exact(_Sock, Len, Acc) when byte_size(Acc) >= Len -> binary:part(Acc, 0, Len);
read_exact(Sock, Len, Acc) ->
    case gen_tcp:recv(Sock, 0, ?TIMEOUT) of
        {ok, More} -> read_exact(Sock, Len, <<Acc/binary, More/binary>>);
        {error, _} -> Acc
    end.

loop(Owner, Sock, Buffer) ->
    Rest = deliver(Owner, Buffer),
    receive
        {tcp, Sock, Data} ->
            ok = inet:setopts(Sock, [{active, once}]),
            loop(Owner, Sock, <<Rest/binary, Data/binary>>);
        {tcp_closed, Sock} ->
            Owner ! {ws, self(), closed};
        {tcp_error, Sock, _} ->
            Owner ! {ws, self(), closed};
        {send, Bytes} ->
            _ = gen_tcp:send(Sock, Bytes),
            loop(Owner, Sock, Rest);
        close ->
            gen_tcp:close(Sock)
    end.

%% Server frames are unmasked; deliver every complete one.
deliver(Owner, <<_Fin:1, _Rsv:3, Op:4, 0:1, Len7:7, Rest/binary>> = Buffer) ->
    {Len, Rest1} = case Len7 of
                       126 when byte_size(Rest) >= 2 -> <<L:16, R/binary>> = Rest, {L, R};
                       127 when byte_size(Rest) >= 8 -> <<L:64, R/binary>> = Rest, {L, R};
                       N when N < 126 -> {N, Rest};
                       _ -> {more, Rest}
                   end,
    case Len of
        more -> Buffer;
        _ when byte_size(Rest1) >= Len ->
            <<Payload:Len/binary, Tail/binary>> = Rest1,
            Owner ! {ws, self(), frame(Op, Payload)},
            deliver(Owner, Tail);
        _ -> Buffer
    end;
deliver(_Owner, Buffer) ->
    Buffer.

frame(1, P) -> {text, P};
frame(2, P) -> {binary, P};
frame(8, <<Code:16, Reason/binary>>) -> {close, Code, Reason};
frame(8, <<>>) -> {close, none, <<>>};
frame(9, P) -> {ping, P};
frame(10, P) -> {pong, P};
frame(Op, P) -> {unknown, Op, P}.

%% @doc A masked client frame.
client_frame(Opcode, Payload, Fin, Rsv) ->
    Mask = crypto:strong_rand_bytes(4),
    Len = byte_size(Payload),
    LenBits = if Len < 126 -> <<1:1, Len:7>>;
                 Len < 65536 -> <<1:1, 126:7, Len:16>>;
                 true -> <<1:1, 127:7, Len:64>>
              end,
    FinBit = case Fin of true -> 1; false -> 0 end,
    <<FinBit:1, Rsv:3, Opcode:4, LenBits/bits, Mask/binary, (mask(Payload, Mask))/binary>>.

mask(Payload, <<M:32>>) ->
    Words = byte_size(Payload) div 4,
    <<Body:Words/binary-unit:32, Tail/binary>> = Payload,
    Masked = << <<(W bxor M):32>> || <<W:32>> <= Body >>,
    <<MT:(byte_size(Tail) * 8), _/bits>> = <<M:32>>,
    TailBits = byte_size(Tail) * 8,
    <<T:TailBits>> = Tail,
    <<Masked/binary, (T bxor MT):TailBits>>.

send(C, Text) -> send_frame(C, 1, iolist_to_binary(Text)).
send_frame(C, Opcode, Payload) -> send_frame(C, Opcode, Payload, #{}).
send_frame(C, Opcode, Payload, Opts) ->
    C ! {send, client_frame(Opcode, Payload, maps:get(fin, Opts, true), maps:get(rsv, Opts, 0))},
    ok.
send_raw(C, Bytes) -> C ! {send, Bytes}, ok.

%% @doc Send a channel message; Payload is a JSON term.
push(C, JoinRef, Ref, Topic, Event, Payload) ->
    {ok, Json} = hornbeam_nif:json_encode(Payload),
    send(C, hornbeam_nif:msg_encode(JoinRef, Ref, Topic, Event, Json)).

recv(C) -> recv(C, ?TIMEOUT).
recv(C, Timeout) ->
    receive {ws, C, Frame} -> Frame
    after Timeout -> timeout
    end.

%% @doc The next text frame as a decoded list [JoinRef, Ref, Topic, Event,
%% Payload], skipping the `presence_state' the server pushes after every
%% join (recv_all_json/2 keeps it).
recv_json(C) -> recv_json(C, ?TIMEOUT).
recv_json(C, Timeout) ->
    case recv_all_json(C, Timeout) of
        [_, _, _, <<"presence_state">>, _] -> recv_json(C, Timeout);
        Other -> Other
    end.

recv_all_json(C, Timeout) ->
    case recv(C, Timeout) of
        {text, Text} -> {ok, List} = hornbeam_nif:json_decode(Text), List;
        Other -> Other
    end.

%% @doc Wait for the close frame (if any) and the TCP close; returns the close code.
expect_closed(C, Timeout) ->
    case recv(C, Timeout) of
        {close, Code, _} -> _ = recv(C, Timeout), Code;
        closed -> closed;
        {text, _} -> expect_closed(C, Timeout);
        Other -> Other
    end.

close(C) -> C ! close, ok.
