%% EUnit tests calling every NIF function from Erlang, bad inputs included.
-module(hornbeam_nif_tests).
-include_lib("eunit/include/eunit.hrl").

%% A masked client frame, as a browser sends it.
client_frame(Opcode, Payload) ->
    client_frame(Opcode, Payload, true).
client_frame(Opcode, Payload, Fin) ->
    Mask = <<16#37, 16#fa, 16#21, 16#3d>>,
    Len = byte_size(Payload),
    LenBits = if Len < 126 -> <<1:1, Len:7>>;
                 Len < 65536 -> <<1:1, 126:7, Len:16>>;
                 true -> <<1:1, 127:7, Len:64>>
              end,
    FinBit = case Fin of true -> 1; false -> 0 end,
    <<FinBit:1, 0:3, Opcode:4, LenBits/bits, Mask/binary, (mask(Payload, Mask))/binary>>.

mask(Payload, Mask) ->
    MaskBytes = binary_to_list(Mask),
    list_to_binary([B bxor lists:nth((I rem 4) + 1, MaskBytes)
                    || {I, B} <- lists:zip(lists:seq(0, byte_size(Payload) - 1),
                                          binary_to_list(Payload))]).

ws_decode_text_test() ->
    D = hornbeam_nif:ws_decoder_new(1024),
    ?assertEqual({ok, [{text, <<"Hello">>}]}, hornbeam_nif:ws_decode(D, client_frame(1, <<"Hello">>))).

ws_decode_partial_then_rest_test() ->
    D = hornbeam_nif:ws_decoder_new(1024),
    <<A:3/binary, B/binary>> = client_frame(1, <<"Hello">>),
    ?assertEqual({ok, []}, hornbeam_nif:ws_decode(D, A)),
    ?assertEqual(3, hornbeam_nif:ws_buffered(D)),
    ?assertEqual({ok, [{text, <<"Hello">>}]}, hornbeam_nif:ws_decode(D, B)).

ws_decode_several_frames_test() ->
    D = hornbeam_nif:ws_decoder_new(1024),
    Bytes = <<(client_frame(1, <<"a">>))/binary, (client_frame(9, <<"p">>))/binary,
              (client_frame(2, <<1, 2>>))/binary, (client_frame(8, <<1000:16, "bye">>))/binary>>,
    ?assertEqual({ok, [{text, <<"a">>}, {ping, <<"p">>}, {binary, <<1, 2>>}, {close, {1000, <<"bye">>}}]},
                 hornbeam_nif:ws_decode(D, Bytes)).

ws_decode_fragments_with_ping_between_test() ->
    D = hornbeam_nif:ws_decoder_new(1024),
    Bytes = <<(client_frame(1, <<"Hel">>, false))/binary, (client_frame(9, <<>>))/binary,
              (client_frame(0, <<"lo">>, true))/binary>>,
    ?assertEqual({ok, [{ping, <<>>}, {text, <<"Hello">>}]}, hornbeam_nif:ws_decode(D, Bytes)).

ws_decode_errors_test_() ->
    Cases = [
        {unmasked_frame, 1002, <<16#81, 5, "Hello">>},
        {reserved_bits, 1002, <<16#C1, 16#80, 0, 0, 0, 0>>},
        {unknown_opcode, 1002, client_frame(3, <<>>)},
        {control_frame_too_long, 1002, client_frame(9, binary:copy(<<"x">>, 126))},
        {fragmented_control_frame, 1002, client_frame(9, <<>>, false)},
        {frame_too_large, 1009, client_frame(1, binary:copy(<<"x">>, 2000))},
        {invalid_utf8, 1007, client_frame(1, <<255, 254>>)},
        {unexpected_continuation, 1002, client_frame(0, <<"x">>)},
        {expected_continuation, 1002, <<(client_frame(1, <<"a">>, false))/binary,
                                        (client_frame(1, <<"b">>))/binary>>},
        {invalid_close_payload, 1002, client_frame(8, <<1>>)}
    ],
    [{atom_to_list(Why),
      ?_assertMatch({error, _, Why, Code},
                    hornbeam_nif:ws_decode(hornbeam_nif:ws_decoder_new(1024), Bytes))}
     || {Why, Code, Bytes} <- Cases].

ws_decode_messages_before_error_are_kept_test() ->
    D = hornbeam_nif:ws_decoder_new(1024),
    Bytes = <<(client_frame(1, <<"ok">>))/binary, 16#81, 1, "x">>,
    ?assertEqual({error, [{text, <<"ok">>}], unmasked_frame, 1002}, hornbeam_nif:ws_decode(D, Bytes)).

ws_decode_bad_args_test() ->
    ?assertError(badarg, hornbeam_nif:ws_decode(make_ref(), <<>>)),
    ?assertError(badarg, hornbeam_nif:ws_decode(hornbeam_nif:ws_decoder_new(10), not_a_binary)),
    ?assertError(badarg, hornbeam_nif:ws_decoder_new(-1)).

ws_encode_test() ->
    ?assertEqual(<<16#81, 5, "Hello">>, hornbeam_nif:ws_encode(text, <<"Hello">>)),
    ?assertEqual(<<16#81, 5, "Hello">>, hornbeam_nif:ws_encode(text, [<<"He">>, "llo"])),
    ?assertEqual(<<16#82, 2, 1, 2>>, hornbeam_nif:ws_encode(binary, <<1, 2>>)),
    ?assertEqual(<<16#89, 0>>, hornbeam_nif:ws_encode(ping, <<>>)),
    ?assertEqual(<<16#8A, 1, "p">>, hornbeam_nif:ws_encode(pong, <<"p">>)),
    Big = binary:copy(<<"x">>, 300),
    ?assertEqual(<<16#81, 126, 300:16, Big/binary>>, hornbeam_nif:ws_encode(text, Big)),
    Huge = binary:copy(<<"y">>, 70000),
    ?assertEqual(<<16#82, 127, 70000:64, Huge/binary>>, hornbeam_nif:ws_encode(binary, Huge)),
    ?assertEqual(<<16#88, 5, 1000:16, "bye">>, hornbeam_nif:ws_encode_close(1000, <<"bye">>)),
    ?assertError(badarg, hornbeam_nif:ws_encode(close, <<>>)),
    ?assertError(badarg, hornbeam_nif:ws_encode(ping, binary:copy(<<"x">>, 126))),
    ?assertError(badarg, hornbeam_nif:ws_encode(text, 42)),
    ?assertError(badarg, hornbeam_nif:ws_encode_close(1000, <<255>>)).

msg_decode_test() ->
    ?assertEqual({ok, {<<"1">>, <<"2">>, <<"room:lobby">>, <<"phx_join">>, <<"{\"a\":1}">>}},
                 hornbeam_nif:msg_decode(<<"[\"1\",\"2\",\"room:lobby\",\"phx_join\",{\"a\":1}]">>, 64)),
    ?assertEqual({ok, {null, 7, <<"phoenix">>, <<"heartbeat">>, <<"{}">>}},
                 hornbeam_nif:msg_decode(<<"[null,7,\"phoenix\",\"heartbeat\",{}]">>, 64)),
    ?assertEqual({ok, {null, null, <<"t\"q">>, <<"é"/utf8>>, <<"[1,2]">>}},
                 hornbeam_nif:msg_decode(<<"[null,null,\"t\\\"q\",\"\\u00e9\",[1,2]]">>, 64)).

msg_decode_errors_test_() ->
    Deep = iolist_to_binary([<<"[null,null,\"t\",\"e\",">>, lists:duplicate(100, $[),
                             lists:duplicate(100, $]), $]]),
    Cases = [{invalid_json, <<"nope">>},
             {not_an_array, <<"{}">>},
             {wrong_length, <<"[1,2,3]">>},
             {bad_join_ref, <<"[1.5,null,\"t\",\"e\",{}]">>},
             {bad_ref, <<"[null,true,\"t\",\"e\",{}]">>},
             {bad_topic, <<"[null,null,1,\"e\",{}]">>},
             {bad_event, <<"[null,null,\"t\",null,{}]">>},
             {invalid_utf8, <<"[null,null,\"", 255, "\",\"e\",{}]">>},
             {too_deep, Deep}],
    [{atom_to_list(Why), ?_assertMatch({error, Why, Text} when is_binary(Text),
                                       hornbeam_nif:msg_decode(Bin, 64))}
     || {Why, Bin} <- Cases].

msg_encode_test() ->
    ?assertEqual(<<"[\"1\",2,\"room:a\",\"new_msg\",{\"body\":\"hi\"}]">>,
                 hornbeam_nif:msg_encode(<<"1">>, 2, <<"room:a">>, <<"new_msg">>, <<"{\"body\":\"hi\"}">>)),
    ?assertEqual(<<"[null,null,\"a\\\"b\",\"e\",[1]]">>,
                 hornbeam_nif:msg_encode(null, null, <<"a\"b">>, "e", [$[, <<"1">>, $]])),
    Frame = hornbeam_nif:msg_encode_frame(null, null, <<"t">>, <<"e">>, <<"{}">>),
    ?assertEqual(<<16#81, 22, "[null,null,\"t\",\"e\",{}]">>, Frame),
    ?assertError(badarg, hornbeam_nif:msg_encode(1.5, null, <<"t">>, <<"e">>, <<"{}">>)),
    ?assertError(badarg, hornbeam_nif:msg_encode(null, null, <<255>>, <<"e">>, <<"{}">>)).

json_decode_test() ->
    ?assertEqual({ok, #{<<"a">> => [1, 2.5, true, false, null, <<"x">>], <<"b">> => #{}}},
                 hornbeam_nif:json_decode(<<"{\"a\":[1,2.5,true,false,null,\"x\"],\"b\":{}}">>)),
    ?assertEqual({ok, 18446744073709551615}, hornbeam_nif:json_decode(<<"18446744073709551615">>)),
    ?assertMatch({error, invalid_json, _}, hornbeam_nif:json_decode(<<"{">>)),
    ?assertMatch({error, invalid_utf8, _}, hornbeam_nif:json_decode(<<"\"", 255, "\"">>)),
    ?assertMatch({error, too_deep, _}, hornbeam_nif:json_decode(binary:copy(<<"[">>, 10000), 64)),
    Large = iolist_to_binary([$[, lists:join($,, lists:duplicate(30000, <<"123">>)), $]]),
    {ok, List} = hornbeam_nif:json_decode(Large),
    ?assertEqual(30000, length(List)),
    ?assertError(badarg, hornbeam_nif:json_decode(an_atom)).

json_encode_test() ->
    {ok, J} = hornbeam_nif:json_encode(#{<<"a">> => [1, 2.5, true, null, <<"é"/utf8>>], b => #{}, 3 => x}),
    ?assertEqual({ok, #{<<"a">> => [1, 2.5, true, null, <<"é"/utf8>>], <<"b">> => #{},
                        <<"3">> => <<"x">>}}, hornbeam_nif:json_decode(J)),
    ?assertEqual({ok, <<"\"q\\\"\\n\"">>}, hornbeam_nif:json_encode(<<"q\"\n">>)),
    ?assertEqual({error, {not_json, self()}}, hornbeam_nif:json_encode([1, self()])),
    ?assertMatch({error, {not_json, _}}, hornbeam_nif:json_encode(<<255>>)),
    ?assertMatch({error, {not_json, _}}, hornbeam_nif:json_encode({tuple})),
    ?assertMatch({error, {not_json, _}}, hornbeam_nif:json_encode([1 | 2])),
    ?assertMatch({error, {not_json, _}}, hornbeam_nif:json_encode(1 bsl 70)),
    Deep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 1000)),
    ?assertMatch({error, {not_json, _}}, hornbeam_nif:json_encode(Deep)).

router_test() ->
    {ok, R} = hornbeam_nif:router_new([<<"room:*">>, <<"room:lobby">>, <<"chat:{id}:*">>], 255),
    ?assertEqual({ok, 1, #{}}, hornbeam_nif:router_match(R, <<"room:lobby">>)),
    ?assertEqual({ok, 0, #{<<"room_id">> => <<"42">>}}, hornbeam_nif:router_match(R, <<"room:42">>)),
    ?assertEqual({ok, 2, #{<<"id">> => <<"a">>, <<"param_2">> => <<"b">>}},
                 hornbeam_nif:router_match(R, <<"chat:a:b">>)),
    ?assertEqual(nomatch, hornbeam_nif:router_match(R, <<"room:">>)),
    ?assertEqual(nomatch, hornbeam_nif:router_match(R, <<"other">>)),
    ?assertEqual({error, topic_too_long},
                 hornbeam_nif:router_match(R, <<"room:", (binary:copy(<<"x">>, 300))/binary>>)),
    ?assertMatch({error, {duplicate_capture, <<"{x}:{x}">>, _}},
                 hornbeam_nif:router_new([<<"{x}:{x}">>], 255)),
    ?assertError(badarg, hornbeam_nif:router_new([not_binary], 255)),
    ?assertError(badarg, hornbeam_nif:router_match(make_ref(), <<"a">>)).
