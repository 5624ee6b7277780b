%% @doc EUnit tests of hornbeam_binary_msg (Phoenix V2 binary messages).
%% The frames on a real connection are checked in hornbeam_channels_SUITE
%% and, against phoenix.js's serializer, in test/js/wire.test.mjs.
-module(hornbeam_binary_msg_tests).

-include_lib("eunit/include/eunit.hrl").

%% The message inside a short server frame: FIN, opcode 2 (binary), no mask.
message(<<1:1, 0:3, 2:4, 0:1, Len:7, Message:Len/binary>>) when Len < 126 ->
    Message.

client_push_is_decoded_with_empty_refs_as_null_test() ->
    ?assertEqual({ok, {<<"3">>, <<"4">>, <<"room:1">>, <<"ev">>, <<1, 2>>}},
                 hornbeam_binary_msg:decode_push(<<0, 1, 1, 6, 2, "34room:1ev", 1, 2>>)),
    ?assertEqual({ok, {null, null, <<"t">>, <<"e">>, <<>>}},
                 hornbeam_binary_msg:decode_push(<<0, 0, 0, 1, 1, "te">>)).

malformed_pushes_are_errors_test() ->
    ?assertEqual({error, not_a_push}, hornbeam_binary_msg:decode_push(<<2, 1, 1, "te">>)),
    ?assertEqual({error, not_a_push}, hornbeam_binary_msg:decode_push(<<>>)),
    ?assertEqual({error, truncated}, hornbeam_binary_msg:decode_push(<<0, 1>>)),
    ?assertEqual({error, truncated}, hornbeam_binary_msg:decode_push(<<0, 0, 0, 5, 1, "ab">>)),
    ?assertEqual({error, bad_utf8}, hornbeam_binary_msg:decode_push(<<0, 0, 0, 1, 1, 255, "e">>)).

integer_and_null_refs_are_written_as_text_test() ->
    {ok, F} = hornbeam_binary_msg:reply_frame(12, null, <<"t">>, ok, <<9>>),
    ?assertEqual(<<1, 2, 0, 1, 2, "12", "t", "ok", 9>>, message(F)),
    {ok, P} = hornbeam_binary_msg:push_frame(null, <<"t">>, <<"e">>, [<<1>>, <<2>>]),
    ?assertEqual(<<0, 0, 1, 1, "t", "e", 1, 2>>, message(P)).

fields_over_255_bytes_are_refused_test() ->
    Long = binary:copy(<<"x">>, 256),
    ?assertEqual({error, {field_too_long, event}}, hornbeam_binary_msg:broadcast_frame(<<"t">>, Long, <<>>)),
    ?assertEqual({error, {field_too_long, topic}}, hornbeam_binary_msg:push_frame(null, Long, <<"e">>, <<>>)),
    ?assertMatch({ok, _}, hornbeam_binary_msg:broadcast_frame(binary:copy(<<"x">>, 255), <<"e">>, <<>>)).

broadcast_of_binary_with_a_long_event_is_an_error_for_the_caller_test() ->
    ?assertEqual({error, {field_too_long, event}},
                 hornbeam_pubsub:local_broadcast(<<"t">>, binary:copy(<<"x">>, 256), {binary, <<1>>})).
