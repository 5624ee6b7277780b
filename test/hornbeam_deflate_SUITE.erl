%% permessage-deflate (RFC 7692) on real sockets: the negotiation answers for
%% the offers of RFC 7692 §5 and §7, compressed messages both ways (the
%% client side is OTP's zlib, an independent implementation), fragments, the
%% bounds (a "zip bomb" closes 1009), and RSV1 without negotiation (1002).
-module(hornbeam_deflate_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(TIMEOUT, 10000).
-define(TAIL, <<0, 0, 255, 255>>).

all() ->
    [negotiation_answers_follow_rfc7692, compress_false_never_negotiates,
     compressed_round_trip_both_ways, server_context_takeover_makes_repeats_smaller,
     server_no_context_takeover_offer_is_honoured, frames_under_compress_threshold_go_uncompressed,
     uncompressed_client_frames_still_work, fragmented_compressed_message_is_inflated,
     compressed_bomb_closes_1009, corrupt_compressed_data_closes_1007,
     rsv1_without_negotiation_closes_1002, rsv1_on_a_control_frame_closes_1002,
     broadcasts_reach_compressed_and_plain_clients, quiet_connection_holds_no_zlib_context,
     compress_is_off_by_default,
     client_context_takeover_keeps_one_inflate_context].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    ok = application:stop(hornbeam).

init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    Opts = maps:merge(#{bind => "127.0.0.1:0", channels => [{<<"room:*">>, hornbeam_test_channel}],
                        compress => true},
                      testcase_opts(TC)),
    ok = hornbeam:start(none, Opts),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

testcase_opts(compress_false_never_negotiates) -> #{compress => false};
testcase_opts(frames_under_compress_threshold_go_uncompressed) -> #{compress_threshold => 1000};
testcase_opts(compressed_bomb_closes_1009) -> #{max_frame_size => 100000};
testcase_opts(negotiation_answers_follow_rfc7692) -> #{compress_window_bits => 12};
testcase_opts(client_context_takeover_keeps_one_inflate_context) ->
    #{compress_client_context_takeover => true};
testcase_opts(_) -> #{}.

%% Off unless asked for (README "Compression" gives the measured reasons).
compress_is_off_by_default(Config) ->
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", channels => [{<<"room:*">>, hornbeam_test_channel}]}),
    ?assertEqual(none, answer([{port, hornbeam:port()} | Config], "permessage-deflate; client_max_window_bits")),
    ?assertEqual(false, maps:get(compress, hornbeam_endpoint:defaults())).

%% --- a raw client: upgrade, masked frames out, frames with their RSV1 in ------

open(Config, Extensions) ->
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                                 [binary, {active, false}, {packet, raw}]),
    Headers = [{"Sec-WebSocket-Extensions", E} || E <- Extensions],
    {_Key, Request} = hornbeam_ws_client:upgrade_request("/ws?vsn=2.0.0", Headers),
    ok = gen_tcp:send(Sock, Request),
    {Status, RespHeaders, Rest} = read_head(Sock, <<>>),
    ?assertEqual(101, Status),
    {Sock, proplists:get_value(<<"sec-websocket-extensions">>, RespHeaders, none), Rest}.

read_head(Sock, Acc) ->
    case binary:split(Acc, <<"\r\n\r\n">>) of
        [Head, Rest] ->
            [StatusLine | Lines] = binary:split(Head, <<"\r\n">>, [global]),
            [_, Code | _] = binary:split(StatusLine, <<" ">>, [global]),
            Hs = [{string:lowercase(N), string:trim(V)} || L <- Lines, [N, V] <- [binary:split(L, <<":">>)]],
            {binary_to_integer(Code), Hs, Rest};
        [_] ->
            {ok, More} = gen_tcp:recv(Sock, 0, ?TIMEOUT),
            read_head(Sock, <<Acc/binary, More/binary>>)
    end.

%% The response header for one offer (or none).
answer(Config, Offer) ->
    {Sock, Answer, _} = open(Config, [Offer]),
    gen_tcp:close(Sock),
    Answer.

%% {Rsv1, Opcode, Payload, Buffer}
recv_frame(Sock, Buf) ->
    case Buf of
        <<_Fin:1, Rsv1:1, _:2, Op:4, 0:1, Len7:7, Rest/binary>> ->
            case {Len7, Rest} of
                {126, <<L:16, R/binary>>} -> take(Sock, Buf, Rsv1, Op, L, R);
                {127, <<L:64, R/binary>>} -> take(Sock, Buf, Rsv1, Op, L, R);
                {N, R} when N < 126 -> take(Sock, Buf, Rsv1, Op, N, R);
                _ -> more(Sock, Buf)
            end;
        _ -> more(Sock, Buf)
    end.

take(Sock, Buf, Rsv1, Op, Len, R) when byte_size(R) >= Len ->
    <<P:Len/binary, Tail/binary>> = R,
    _ = Sock, _ = Buf,
    {Rsv1, Op, P, Tail};
take(Sock, Buf, _Rsv1, _Op, _Len, _R) ->
    more(Sock, Buf).

more(Sock, Buf) ->
    case gen_tcp:recv(Sock, 0, ?TIMEOUT) of
        {ok, Data} -> recv_frame(Sock, <<Buf/binary, Data/binary>>);
        {error, closed} -> {closed, Buf}
    end.

%% The close code the server sends next (after any data frames).
expect_close(Sock, Buf) ->
    case recv_frame(Sock, Buf) of
        {_, 8, <<Code:16, _/binary>>, _} -> Code;
        {_, _Op, _P, Rest} -> expect_close(Sock, Rest);
        {closed, _} -> closed
    end.

send_frame(Sock, Op, Payload, Fin, Rsv) ->
    ok = gen_tcp:send(Sock, hornbeam_ws_client:client_frame(Op, Payload, Fin, Rsv)).

msg(JoinRef, Ref, Topic, Event, Payload) ->
    {ok, Json} = hornbeam_nif:json_encode([JoinRef, Ref, Topic, Event, Payload]),
    iolist_to_binary(Json).

%% A zlib raw deflate context, as a client keeps it.
deflater() ->
    Z = zlib:open(),
    ok = zlib:deflateInit(Z, default, deflated, -15, 8, default),
    Z.

deflate(Z, Data) ->
    Out = iolist_to_binary(zlib:deflate(Z, Data, sync)),
    Size = byte_size(Out) - 4,
    <<Body:Size/binary, 0, 0, 255, 255>> = Out,
    Body.

inflater() ->
    Z = zlib:open(),
    ok = zlib:inflateInit(Z, -15),
    Z.

inflate(Z, Data) ->
    iolist_to_binary(zlib:inflate(Z, [Data, ?TAIL])).

json(Bin) ->
    {ok, T} = hornbeam_nif:json_decode(Bin),
    T.

%% Join room:1 with a compressed phx_join; the reply comes compressed.
join_compressed(Sock, Buf, Def, Inf) ->
    send_frame(Sock, 1, deflate(Def, msg(<<"1">>, <<"1">>, <<"room:1">>, <<"phx_join">>, #{})), true, 4),
    {1, 1, Reply, Buf1} = recv_frame(Sock, Buf),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                 json(inflate(Inf, Reply))),
    %% then presence_state
    {_, 1, _, Buf2} = recv_any(Sock, Buf1, Inf),
    {ok, Buf2}.

recv_any(Sock, Buf, Inf) ->
    case recv_frame(Sock, Buf) of
        {1, Op, P, Rest} -> {1, Op, inflate(Inf, P), Rest};
        {0, Op, P, Rest} -> {0, Op, P, Rest}
    end.

%% --- cases ------------------------------------------------------------------

%% RFC 7692 §5 and §7.1, with compress_window_bits 12.
negotiation_answers_follow_rfc7692(Config) ->
    A = fun(Offer) -> answer(Config, Offer) end,
    ?assertEqual(none, A("x-webkit-deflate-frame")),
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover; server_max_window_bits=12">>,
                 A("permessage-deflate")),
    %% §7.1.1.1: asked not to take over the server's context
    ?assertEqual(<<"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                   "server_max_window_bits=12">>,
                 A("permessage-deflate; server_no_context_takeover")),
    %% §7.1.2.2: client_max_window_bits lets us choose the client's window
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
                   "client_max_window_bits=12">>,
                 A("permessage-deflate; client_max_window_bits")),
    %% §7.1.2.1: a smaller server window asked for is used
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover; server_max_window_bits=10">>,
                 A("permessage-deflate; server_max_window_bits=10")),
    %% §5.2: the first acceptable offer wins; 8 bits is declined (zlib)
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover; server_max_window_bits=11">>,
                 A("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=11")),
    %% §7.1: unknown, duplicate or invalid parameters decline the offer
    ?assertEqual(none, A("permessage-deflate; foo=1")),
    ?assertEqual(none, A("permessage-deflate; client_no_context_takeover; client_no_context_takeover")),
    ?assertEqual(none, A("permessage-deflate; server_max_window_bits=16")),
    ?assertEqual(none, A("permessage-deflate; server_max_window_bits")).

compress_false_never_negotiates(Config) ->
    {Sock, Answer, Buf} = open(Config, ["permessage-deflate; client_max_window_bits"]),
    ?assertEqual(none, Answer),
    %% and so RSV1 is a protocol error
    send_frame(Sock, 1, <<"x">>, true, 4),
    ?assertEqual(1002, expect_close(Sock, Buf)).

compressed_round_trip_both_ways(Config) ->
    {Sock, Answer, Buf0} = open(Config, ["permessage-deflate; client_max_window_bits"]),
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover">>, Answer),
    Inf = inflater(),
    {ok, Buf1} = join_compressed(Sock, Buf0, deflater(), Inf),
    Body = binary:copy(<<"hello compressed world ">>, 50),
    %% client_no_context_takeover: a fresh client context per message
    send_frame(Sock, 1, deflate(deflater(), msg(<<"1">>, <<"2">>, <<"room:1">>, <<"echo">>,
                                                 #{<<"body">> => Body})), true, 4),
    {1, 1, Wire, _} = recv_frame(Sock, Buf1),
    ?assert(byte_size(Wire) < byte_size(Body) div 4),
    ?assertEqual([<<"1">>, <<"2">>, <<"room:1">>, <<"phx_reply">>,
                  #{<<"status">> => <<"ok">>, <<"response">> => #{<<"body">> => Body}}],
                 json(inflate(Inf, Wire))).

server_context_takeover_makes_repeats_smaller(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    Inf = inflater(),
    {ok, Buf1} = join_compressed(Sock, Buf0, deflater(), Inf),
    Echo = fun(Ref, Buf) ->
                   send_frame(Sock, 1, deflate(deflater(), msg(<<"1">>, Ref, <<"room:1">>, <<"echo">>,
                                                                #{<<"text">> => <<"the same chat line again">>})),
                              true, 4),
                   {1, 1, W, Rest} = recv_frame(Sock, Buf),
                   ?assertMatch([<<"1">>, Ref, _, _, #{<<"status">> := <<"ok">>}], json(inflate(Inf, W))),
                   {byte_size(W), Rest}
           end,
    {First, Buf2} = Echo(<<"10">>, Buf1),
    {Second, _} = Echo(<<"11">>, Buf2),
    %% the second refers back into the first (one inflater across both)
    ?assert(Second * 2 < First).

server_no_context_takeover_offer_is_honoured(Config) ->
    {Sock, Answer, Buf0} = open(Config, ["permessage-deflate; server_no_context_takeover"]),
    ?assertEqual(<<"permessage-deflate; server_no_context_takeover; client_no_context_takeover">>, Answer),
    {ok, Buf1} = join_compressed(Sock, Buf0, deflater(), inflater()),
    %% each reply inflates with a fresh context
    lists:foldl(fun(N, Buf) ->
                        Ref = integer_to_binary(N),
                        send_frame(Sock, 1, deflate(deflater(), msg(<<"1">>, Ref, <<"room:1">>, <<"echo">>,
                                                                     #{<<"n">> => <<"same same same">>})),
                                   true, 4),
                        {1, 1, W, Rest} = recv_frame(Sock, Buf),
                        ?assertMatch([_, Ref, _, _, _], json(inflate(inflater(), W))),
                        Rest
                end, Buf1, [20, 21, 22]).

frames_under_compress_threshold_go_uncompressed(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    send_frame(Sock, 1, msg(null, <<"1">>, <<"phoenix">>, <<"heartbeat">>, #{}), true, 0),
    {Rsv1, 1, P, _} = recv_frame(Sock, Buf0),
    ?assertEqual(0, Rsv1),
    ?assertMatch([null, <<"1">>, <<"phoenix">>, <<"phx_reply">>, _], json(P)).

uncompressed_client_frames_still_work(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    send_frame(Sock, 1, msg(null, <<"1">>, <<"phoenix">>, <<"heartbeat">>, #{}), true, 0),
    {1, 1, P, _} = recv_frame(Sock, Buf0),
    ?assertMatch([null, <<"1">>, <<"phoenix">>, <<"phx_reply">>, _], json(inflate(inflater(), P))).

%% RSV1 on the first fragment only (RFC 7692 §6.1), a ping in between.
fragmented_compressed_message_is_inflated(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    Inf = inflater(),
    {ok, Buf1} = join_compressed(Sock, Buf0, deflater(), Inf),
    Body = binary:copy(<<"fragment ">>, 100),
    C = deflate(deflater(), msg(<<"1">>, <<"5">>, <<"room:1">>, <<"echo">>, #{<<"b">> => Body})),
    Half = byte_size(C) div 2,
    <<A:Half/binary, B/binary>> = C,
    send_frame(Sock, 1, A, false, 4),
    send_frame(Sock, 9, <<"p">>, true, 0),
    send_frame(Sock, 0, B, true, 0),
    {0, 10, <<"p">>, Buf2} = recv_frame(Sock, Buf1),
    {1, 1, W, _} = recv_frame(Sock, Buf2),
    ?assertMatch([_, <<"5">>, _, _, #{<<"response">> := #{<<"b">> := Body}}], json(inflate(Inf, W))),
    %% RSV1 on a continuation is a protocol error
    send_frame(Sock, 1, A, false, 4),
    send_frame(Sock, 0, B, true, 4),
    ?assertEqual(1002, expect_close(Sock, <<>>)).

%% max_frame_size 100 000: 10 MB of zeros in ~10 KB on the wire is refused
%% while inflating, with 1009, and the socket process never held it.
compressed_bomb_closes_1009(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    Bomb = deflate(deflater(), binary:copy(<<"0">>, 10000000)),
    ?assert(byte_size(Bomb) < 100000),
    send_frame(Sock, 1, Bomb, true, 4),
    ?assertEqual(1009, expect_close(Sock, Buf0)).

corrupt_compressed_data_closes_1007(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    send_frame(Sock, 1, <<255, 255, 255, 255>>, true, 4),
    ?assertEqual(1007, expect_close(Sock, Buf0)).

rsv1_without_negotiation_closes_1002(Config) ->
    {Sock, none, Buf0} = open(Config, []),
    send_frame(Sock, 1, deflate(deflater(), <<"[null,\"1\",\"phoenix\",\"heartbeat\",{}]">>), true, 4),
    ?assertEqual(1002, expect_close(Sock, Buf0)).

rsv1_on_a_control_frame_closes_1002(Config) ->
    {Sock, _, Buf0} = open(Config, ["permessage-deflate"]),
    send_frame(Sock, 9, <<"p">>, true, 4),
    ?assertEqual(1002, expect_close(Sock, Buf0)).

%% One shared broadcast frame: compressed for the deflate client, as it is
%% for the plain one.
broadcasts_reach_compressed_and_plain_clients(Config) ->
    {Z, _, ZBuf0} = open(Config, ["permessage-deflate"]),
    Inf = inflater(),
    {ok, ZBuf1} = join_compressed(Z, ZBuf0, deflater(), Inf),
    {P, none, PBuf0} = open(Config, []),
    send_frame(P, 1, msg(<<"1">>, <<"1">>, <<"room:1">>, <<"phx_join">>, #{}), true, 0),
    {0, 1, _Reply, PBuf1} = recv_frame(P, PBuf0),
    {0, 1, _State, PBuf2} = recv_frame(P, PBuf1),
    Text = binary:copy(<<"everyone ">>, 20),
    send_frame(P, 1, msg(<<"1">>, <<"2">>, <<"room:1">>, <<"broadcast">>, #{<<"t">> => Text}), true, 0),
    Shout = [null, null, <<"room:1">>, <<"shout">>, #{<<"t">> => Text}],
    {0, 1, PShout, _} = recv_until_shout(P, PBuf2, none),
    ?assertEqual(Shout, json(PShout)),
    {1, 1, ZShout, _} = recv_until_shout(Z, ZBuf1, Inf),
    ?assertEqual(Shout, json(ZShout)).

recv_until_shout(Sock, Buf, Inf) ->
    Frame = case Inf of
                none -> recv_frame(Sock, Buf);
                _ -> recv_any(Sock, Buf, Inf)
            end,
    {_, _, Payload, Rest} = Frame,
    case binary:match(Payload, <<"shout">>) of
        nomatch -> recv_until_shout(Sock, Rest, Inf);
        _ -> Frame
    end.

%% The deflate context is allocated at the first compressed message and
%% dropped when the socket goes quiet (it hibernates after answering a
%% heartbeat); with client_no_context_takeover (the default) no inflate
%% context outlives a message.
quiet_connection_holds_no_zlib_context(Config) ->
    {D0, I0} = hornbeam_nif:ws_deflate_contexts(),
    {Sock, _, Buf0} = open(Config, ["permessage-deflate; client_max_window_bits"]),
    Inf = inflater(),
    {ok, Buf1} = join_compressed(Sock, Buf0, deflater(), Inf),
    send_frame(Sock, 1, deflate(deflater(), msg(<<"1">>, <<"2">>, <<"room:1">>, <<"echo">>, #{<<"a">> => 1})),
               true, 4),
    {1, 1, Echo, Buf2} = recv_frame(Sock, Buf1),
    ?assertMatch([_, <<"2">>, _, _, _], json(inflate(Inf, Echo))),
    ?assertEqual({D0 + 1, I0}, hornbeam_nif:ws_deflate_contexts()),
    send_frame(Sock, 1, deflate(deflater(), msg(null, <<"3">>, <<"phoenix">>, <<"heartbeat">>, #{})), true, 4),
    {1, 1, Reply, _} = recv_frame(Sock, Buf2),
    ?assertMatch([null, <<"3">>, <<"phoenix">>, <<"phx_reply">>, _], json(inflate(Inf, Reply))),
    wait_until(fun() -> hornbeam_nif:ws_deflate_contexts() =:= {D0, I0} end, 5000).

client_context_takeover_keeps_one_inflate_context(Config) ->
    {D0, I0} = hornbeam_nif:ws_deflate_contexts(),
    {Sock, Answer, Buf0} = open(Config, ["permessage-deflate"]),
    ?assertEqual(<<"permessage-deflate">>, Answer),
    Def = deflater(),
    Inf = inflater(),
    {ok, Buf1} = join_compressed(Sock, Buf0, Def, Inf),
    %% the client's context carries over: the second message refers back
    Line = #{<<"text">> => <<"a line that repeats, a line that repeats">>},
    lists:foldl(fun(Ref, Buf) ->
                        send_frame(Sock, 1, deflate(Def, msg(<<"1">>, Ref, <<"room:1">>, <<"echo">>, Line)), true, 4),
                        {1, 1, W, Rest} = recv_frame(Sock, Buf),
                        ?assertMatch([_, Ref, _, _, #{<<"response">> := Line}], json(inflate(Inf, W))),
                        Rest
                end, Buf1, [<<"7">>, <<"8">>]),
    {_, I1} = hornbeam_nif:ws_deflate_contexts(),
    ?assertEqual(I0 + 1, I1),
    _ = D0,
    gen_tcp:close(Sock),
    %% the connection's end frees it (the resource is garbage collected)
    wait_until(fun() -> element(2, hornbeam_nif:ws_deflate_contexts()) =:= I0 end, 5000).

wait_until(Check, Ms) when Ms =< 0 ->
    ?assert(Check());
wait_until(Check, Ms) ->
    case Check() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Check, Ms - 20)
    end.
