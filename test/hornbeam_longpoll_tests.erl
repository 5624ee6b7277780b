%% The pure parts of the long-poll transport: the outgoing buffer
%% (hornbeam_longpoll_buffer), session tokens, and what a POST's lines become.
-module(hornbeam_longpoll_tests).
-include_lib("eunit/include/eunit.hrl").

text(Payload) -> hornbeam_nif:ws_encode(text, Payload).

frame_payload_strips_the_header_at_every_length_encoding_test() ->
    %% 7-bit, 16-bit and 64-bit lengths
    [?assertEqual({text, P}, hornbeam_longpoll_buffer:frame_payload(text(P)))
     || P <- [<<>>, <<"[1]">>, binary:copy(<<"a">>, 125), binary:copy(<<"b">>, 126),
              binary:copy(<<"c">>, 65535), binary:copy(<<"d">>, 70000)]],
    ?assertEqual({binary, <<1, 2>>},
                 hornbeam_longpoll_buffer:frame_payload(hornbeam_nif:ws_encode(binary, <<1, 2>>))),
    ?assertMatch({control, _}, hornbeam_longpoll_buffer:frame_payload(hornbeam_nif:ws_encode_close(1000, <<>>))),
    %% what a channel sends (msg_encode_frame) is a text frame of the message
    Msg = hornbeam_nif:msg_encode_frame(<<"1">>, null, <<"t">>, <<"e">>, <<"{}">>),
    ?assertEqual({text, <<"[\"1\",null,\"t\",\"e\",{}]">>}, hornbeam_longpoll_buffer:frame_payload(Msg)).

buffer_takes_payloads_in_order_and_empties_test() ->
    B0 = hornbeam_longpoll_buffer:new(),
    {ok, B1} = hornbeam_longpoll_buffer:add(text(<<"a">>), 100, B0),
    {ok, B2} = hornbeam_longpoll_buffer:add([text(<<"b">>), text(<<"cc">>)], 100, B1),
    ?assertEqual(4, hornbeam_longpoll_buffer:bytes(B2)),
    {Msgs, B3} = hornbeam_longpoll_buffer:take(B2),
    ?assertEqual([<<"a">>, <<"b">>, <<"cc">>], Msgs),
    ?assertEqual({[], B3}, hornbeam_longpoll_buffer:take(B3)),
    ?assertEqual(0, hornbeam_longpoll_buffer:bytes(B3)).

buffer_over_its_bound_overflows_test() ->
    B0 = hornbeam_longpoll_buffer:new(),
    {ok, B1} = hornbeam_longpoll_buffer:add(text(<<"12345">>), 10, B0),
    {ok, B2} = hornbeam_longpoll_buffer:add(text(<<"12345">>), 10, B1),
    ?assertMatch({overflow, _}, hornbeam_longpoll_buffer:add(text(<<"1">>), 10, B2)),
    ?assertMatch({overflow, _}, hornbeam_longpoll_buffer:add([text(<<"1">>)], 10, B2)).

binary_frames_are_dropped_and_reported_control_frames_skipped_test() ->
    B0 = hornbeam_longpoll_buffer:new(),
    {{dropped, binary}, B1} = hornbeam_longpoll_buffer:add(
                                [text(<<"a">>), hornbeam_nif:ws_encode(binary, <<0>>), text(<<"b">>)], 100, B0),
    {ok, B2} = hornbeam_longpoll_buffer:add(hornbeam_nif:ws_encode(ping, <<>>), 100, B1),
    ?assertMatch({[<<"a">>, <<"b">>], _}, hornbeam_longpoll_buffer:take(B2)).

flush_is_needed_once_when_a_poll_waits_for_buffered_messages_test() ->
    B0 = hornbeam_longpoll_buffer:new(),
    ?assertNot(hornbeam_longpoll_buffer:needs_flush(B0)),
    B1 = hornbeam_longpoll_buffer:set_poll({self(), make_ref(), make_ref()}, B0),
    ?assertNot(hornbeam_longpoll_buffer:needs_flush(B1)),
    {ok, B2} = hornbeam_longpoll_buffer:add(text(<<"x">>), 100, B1),
    ?assert(hornbeam_longpoll_buffer:needs_flush(B2)),
    ?assertNot(hornbeam_longpoll_buffer:needs_flush(hornbeam_longpoll_buffer:set_flush(true, B2))).

tokens_name_this_node_and_are_unguessable_test() ->
    {T1, K1} = hornbeam_longpoll:new_token(),
    {T2, K2} = hornbeam_longpoll:new_token(),
    ?assertNotEqual(T1, T2),
    ?assertEqual({ok, node(), K1}, hornbeam_longpoll:decode_token(T1)),
    ?assertEqual({ok, node(), K2}, hornbeam_longpoll:decode_token(T2)),
    %% query-string safe, and the key (what the table holds) is not the secret in it
    ?assertEqual(nomatch, re:run(T1, "[^A-Za-z0-9_-]")),
    ?assertEqual(32, byte_size(K1)),
    ?assertEqual(nomatch, binary:match(base64:decode(pad(T1)), K1)).

malformed_tokens_are_not_session_tokens_test() ->
    [?assertEqual(error, hornbeam_longpoll:decode_token(T))
     || T <- [<<>>, <<"garbage">>, <<"%%%">>, <<"a+b/">>, <<"AQ">>, binary:copy(<<"A">>, 300)]],
    %% a well-formed token naming a node that is no atom here
    Unknown = b64url(<<1, 13, "never@created", (crypto:strong_rand_bytes(24))/binary>>),
    ?assertMatch({ok, unknown, _}, hornbeam_longpoll:decode_token(Unknown)),
    %% and decoding it created no atom
    ?assertError(badarg, binary_to_existing_atom(<<"never@created">>)).

post_lines_become_text_or_binary_frames_test() ->
    ?assertEqual([{text, <<"[1]">>}, {binary, <<0, 1, 255>>}],
                 hornbeam_longpoll:post_frames([<<"[1]">>, base64:encode(<<0, 1, 255>>)], 100)),
    ?assertEqual([{text, <<"[1]">>}, {protocol_error, invalid_base64, 1007}],
                 hornbeam_longpoll:post_frames([<<"[1]">>, <<"not base64!">>, <<"[2]">>], 100)),
    ?assertEqual([{protocol_error, message_too_big, 1009}],
                 hornbeam_longpoll:post_frames([binary:copy(<<"[">>, 101)], 100)).

pad(T) ->
    Std = << <<(case C of $- -> $+; $_ -> $/; _ -> C end)>> || <<C>> <= T >>,
    <<Std/binary, (binary:copy(<<"=">>, (4 - byte_size(Std) rem 4) rem 4))/binary>>.

b64url(Bin) ->
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= base64:encode(Bin), C =/= $= >>.
