%% Is the NIF worth its call? Decode+unmask and encode of typical channel
%% messages (100 B, 1 KiB, 64 KiB payloads) through the NIF, next to the same
%% work in Erlang: pure-Erlang header parse + unmasking, and jiffy (Debian's
%% erlang-jiffy, itself a C NIF) for the JSON. Run: `make bench-nif`.
-module(nif_vs_erlang).
-export([main/0]).

-define(MIN_TIME_US, 400000).

main() ->
    io:format("~-40s ~6s ~14s ~10s~n", ["work", "size", "msgs/s", "MB/s"]),
    [run_size(Size) || Size <- [100, 1024, 65536]],
    ok.

run_size(Size) ->
    Payload = payload(Size),
    {ok, PayloadJson} = hornbeam_nif:json_encode(Payload),
    Msg = hornbeam_nif:msg_encode(<<"3">>, <<"17">>, <<"room:lobby">>, <<"new_msg">>, PayloadJson),
    Frame = client_frame(Msg),
    Bytes = byte_size(Frame),
    Decoder = hornbeam_nif:ws_decoder_new(1 bsl 20),
    report("decode+unmask+parse  NIF", Size, Bytes, fun() ->
        {ok, [{text, T}]} = hornbeam_nif:ws_decode(Decoder, Frame),
        {ok, _} = hornbeam_nif:msg_decode(T, 64)
    end),
    report("decode+unmask+parse  Erlang+jiffy", Size, Bytes, fun() ->
        {text, T} = erl_decode(Frame),
        [_, _, _, _, _] = jiffy:decode(T)
    end),
    report("encode frame         NIF (raw payload)", Size, Bytes, fun() ->
        hornbeam_nif:msg_encode_frame(null, null, <<"room:lobby">>, <<"new_msg">>, PayloadJson)
    end),
    report("encode frame         NIF (term payload)", Size, Bytes, fun() ->
        {ok, J} = hornbeam_nif:json_encode(Payload),
        hornbeam_nif:msg_encode_frame(null, null, <<"room:lobby">>, <<"new_msg">>, J)
    end),
    report("encode frame         Erlang+jiffy", Size, Bytes, fun() ->
        J = jiffy:encode([null, null, <<"room:lobby">>, <<"new_msg">>, Payload]),
        erl_frame(J)
    end),
    io:format("~n").

payload(Size) ->
    Body = binary:copy(<<"a">>, max(1, Size - 40)),
    #{<<"user">> => <<"ana">>, <<"n">> => 1, <<"body">> => Body}.

report(Name, Size, Bytes, Fun) ->
    _ = Fun(),
    {Count, Micros} = loop(Fun, 0, erlang:monotonic_time(microsecond), 64),
    PerSec = Count * 1000000 / Micros,
    io:format("~-40s ~6b ~14b ~10.1f~n", [Name, Size, round(PerSec), PerSec * Bytes / 1048576]).

loop(Fun, Count, Start, Batch) ->
    [Fun() || _ <- lists:seq(1, Batch)],
    Elapsed = erlang:monotonic_time(microsecond) - Start,
    case Elapsed >= ?MIN_TIME_US of
        true -> {Count + Batch, Elapsed};
        false -> loop(Fun, Count + Batch, Start, Batch)
    end.

%% --- the pure-Erlang side ------------------------------------------------------

client_frame(Payload) ->
    Mask = <<16#37, 16#fa, 16#21, 16#3d>>,
    Len = byte_size(Payload),
    LenBits = if Len < 126 -> <<1:1, Len:7>>;
                 Len < 65536 -> <<1:1, 126:7, Len:16>>;
                 true -> <<1:1, 127:7, Len:64>>
              end,
    <<1:1, 0:3, 1:4, LenBits/bits, Mask/binary, (unmask(Payload, Mask))/binary>>.

erl_decode(<<1:1, 0:3, 1:4, 1:1, Len7:7, Rest/binary>>) ->
    {Len, Rest1} = case Len7 of
                       126 -> <<L:16, R/binary>> = Rest, {L, R};
                       127 -> <<L:64, R/binary>> = Rest, {L, R};
                       N -> {N, Rest}
                   end,
    <<Mask:4/binary, Masked:Len/binary>> = Rest1,
    Text = unmask(Masked, Mask),
    true = unicode:characters_to_binary(Text) =:= Text,
    {text, Text}.

%% The fastest pure-Erlang unmasking we know: 32 bits at a time.
unmask(Data, <<M:32>> = Mask) ->
    Words = byte_size(Data) div 4,
    <<Body:Words/binary-unit:32, Tail/binary>> = Data,
    Unmasked = << <<(W bxor M):32>> || <<W:32>> <= Body >>,
    <<Unmasked/binary, (unmask_tail(Tail, Mask))/binary>>.

unmask_tail(Tail, Mask) ->
    N = byte_size(Tail),
    <<MT:N/binary, _/binary>> = Mask,
    crypto:exor(Tail, MT).

erl_frame(Payload) ->
    Len = iolist_size(Payload),
    Header = if Len < 126 -> <<1:1, 0:3, 1:4, 0:1, Len:7>>;
                Len < 65536 -> <<1:1, 0:3, 1:4, 0:1, 126:7, Len:16>>;
                true -> <<1:1, 0:3, 1:4, 0:1, 127:7, Len:64>>
             end,
    iolist_to_binary([Header, Payload]).
