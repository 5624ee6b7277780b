%% The channel server on real sockets: the Phoenix V2 protocol rules, the
%% older hornbeam dialect, limits and bad input, origin/vsn checks.
-module(hornbeam_channels_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [heartbeat_is_answered, heartbeat_timeout_closes_with_1008_so_every_phoenix_js_reconnects,
     join_replies_ok_with_the_response, join_error_is_replied, join_crash_replies_join_crashed,
     unmatched_topic_on_join, event_on_unjoined_topic_is_unmatched,
     duplicate_join_replaces_the_old_channel, stale_join_ref_is_ignored,
     leave_replies_ok_then_closes, leave_of_unjoined_topic_replies_ok,
     channel_stop_sends_phx_close, stop_with_reply_replies_then_closes,
     channel_crash_sends_phx_error_and_others_live_on, invalid_return_is_an_error_reply,
     assigns_flow_across_events, push_reaches_only_this_client,
     max_channels_per_connection_is_enforced, legacy_dialect_is_answered_in_kind,
     broadcast_reaches_every_subscriber_once, broadcast_from_skips_the_sender,
     erlang_api_broadcast_and_local_broadcast, terminate_runs_on_disconnect,
     frame_over_max_frame_size_closes_1009, invalid_utf8_closes_1007,
     protocol_error_closes_1002, invalid_channel_message_closes_1007,
     binary_push_gets_a_binary_reply, binary_push_and_broadcast_reach_clients_as_binary_frames,
     binary_payload_reaches_the_channel_tagged, invalid_binary_message_closes_1007,
     binary_frame_over_max_frame_size_closes_1009, ping_gets_pong, close_handshake_is_echoed,
     client_that_stops_reading_is_closed, vanished_peer_is_noticed,
     websocket_suffix_path_and_vsn, unsupported_vsn_is_403,
     origin_policy_default, origin_policy_public_hosts, origin_policy_list_and_false,
     non_websocket_paths_are_404, connect_params_reach_the_channel,
     stop_closes_websockets_with_1001, garbage_never_crashes_the_server,
     idle_socket_hibernates_after_join_and_heartbeat,
     unfinished_fragmented_message_closes_1008, partial_frame_closes_1008,
     slow_channel_pauses_reading_and_answers_everything_in_order,
     busy_socket_reads_counted_with_a_bounded_mailbox_and_quiet_goes_back_to_once,
     waiting_broadcasts_are_written_in_order_in_batches_of_write_batch_frames,
     write_batch_bytes_bounds_a_batch].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    ok = application:stop(hornbeam).

init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    Opts = maps:merge(#{bind => "127.0.0.1:0",
                        channels => [{<<"room:*">>, hornbeam_test_channel},
                                     {<<"room:lobby">>, hornbeam_test_channel},
                                     {<<"chat:{id}:*">>, hornbeam_test_channel}]},
                      testcase_opts(TC)),
    ok = hornbeam:start(none, Opts),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

testcase_opts(heartbeat_timeout_closes_with_1008_so_every_phoenix_js_reconnects) -> #{heartbeat_timeout => 300};
testcase_opts(max_channels_per_connection_is_enforced) -> #{max_channels_per_connection => 2};
testcase_opts(frame_over_max_frame_size_closes_1009) -> #{max_frame_size => 1000};
testcase_opts(binary_frame_over_max_frame_size_closes_1009) -> #{max_frame_size => 1000};
testcase_opts(client_that_stops_reading_is_closed) -> #{max_send_queue => 65536};
testcase_opts(origin_policy_public_hosts) -> #{public_hosts => ["chat.example.com", <<"*.example.org">>]};
testcase_opts(origin_policy_list_and_false) -> #{check_origin => [<<"https://good.example">>]};
testcase_opts(idle_socket_hibernates_after_join_and_heartbeat) -> #{hibernate_after => 60000};
testcase_opts(unfinished_fragmented_message_closes_1008) -> #{fragment_timeout => 500};
testcase_opts(partial_frame_closes_1008) -> #{fragment_timeout => 500};
testcase_opts(slow_channel_pauses_reading_and_answers_everything_in_order) ->
    #{max_pending_events => 4};
testcase_opts(waiting_broadcasts_are_written_in_order_in_batches_of_write_batch_frames) ->
    #{write_batch_frames => 3};
testcase_opts(write_batch_bytes_bounds_a_batch) -> #{write_batch_bytes => 1};
testcase_opts(_) -> #{}.

connect(Config) -> connect(Config, "/ws?vsn=2.0.0").
connect(Config, Path) ->
    {ok, C} = ?C:connect(?config(port, Config), Path),
    C.

join(C, JoinRef, Topic) -> join(C, JoinRef, Topic, #{}).
join(C, JoinRef, Topic, Payload) ->
    ok = ?C:push(C, JoinRef, JoinRef, Topic, <<"phx_join">>, Payload),
    ?C:recv_json(C).

ok_reply(JoinRef, Ref, Topic) ->
    [JoinRef, Ref, Topic, <<"phx_reply">>, #{<<"status">> => <<"ok">>, <<"response">> => #{}}].

%% --- protocol ---------------------------------------------------------------

heartbeat_is_answered(Config) ->
    C = connect(Config),
    ok = ?C:push(C, null, <<"1">>, <<"phoenix">>, <<"heartbeat">>, #{}),
    ?assertEqual(ok_reply(null, <<"1">>, <<"phoenix">>), ?C:recv_json(C)).

heartbeat_timeout_closes_with_1008_so_every_phoenix_js_reconnects(Config) ->
    %% phoenix.js 1.6/1.7 never reconnect after a 1000 close (test/js/wire.test.mjs
    %% checks each version against the server).
    C = connect(Config),
    ?assertEqual(1008, ?C:expect_closed(C, 5000)).

join_replies_ok_with_the_response(Config) ->
    C = connect(Config),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:42">>, <<"phx_reply">>,
                  #{<<"status">> => <<"ok">>,
                    <<"response">> => #{<<"topic">> => <<"room:42">>,
                                        <<"params">> => #{<<"room_id">> => <<"42">>}}}],
                 join(C, <<"1">>, <<"room:42">>)),
    %% integer refs are echoed as integers
    ?assertMatch([7, 7, <<"room:lobby">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                 join(C, 7, <<"room:lobby">>)).

join_error_is_replied(Config) ->
    C = connect(Config),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_reply">>,
                  #{<<"status">> => <<"error">>, <<"response">> => #{<<"reason">> => <<"denied">>}}],
                 join(C, <<"1">>, <<"room:1">>, #{<<"mode">> => <<"error">>})),
    %% not joined: events are unmatched
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertMatch([null, <<"2">>, <<"room:1">>, <<"phx_reply">>,
                  #{<<"response">> := #{<<"reason">> := <<"unmatched topic">>}}], ?C:recv_json(C)).

join_crash_replies_join_crashed(Config) ->
    C = connect(Config),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_reply">>,
                  #{<<"status">> => <<"error">>, <<"response">> => #{<<"reason">> => <<"join crashed">>}}],
                 join(C, <<"1">>, <<"room:1">>, #{<<"mode">> => <<"crash">>})),
    %% the connection lives on
    ?assertMatch([<<"2">>, <<"2">>, _, _, #{<<"status">> := <<"ok">>}], join(C, <<"2">>, <<"room:1">>)).

unmatched_topic_on_join(Config) ->
    C = connect(Config),
    ?assertEqual([null, <<"1">>, <<"nope:1">>, <<"phx_reply">>,
                  #{<<"status">> => <<"error">>, <<"response">> => #{<<"reason">> => <<"unmatched topic">>}}],
                 join(C, <<"1">>, <<"nope:1">>)),
    Long = <<"room:", (binary:copy(<<"x">>, 300))/binary>>,
    ?assertMatch([null, <<"2">>, Long, <<"phx_reply">>,
                  #{<<"response">> := #{<<"reason">> := <<"unmatched topic">>}}], join(C, <<"2">>, Long)).

event_on_unjoined_topic_is_unmatched(Config) ->
    C = connect(Config),
    ok = ?C:push(C, <<"9">>, <<"3">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertEqual([null, <<"3">>, <<"room:1">>, <<"phx_reply">>,
                  #{<<"status">> => <<"error">>, <<"response">> => #{<<"reason">> => <<"unmatched topic">>}}],
                 ?C:recv_json(C)).

duplicate_join_replaces_the_old_channel(Config) ->
    register(hornbeam_test_observer, self()),
    C = connect(Config),
    [<<"1">> | _] = join(C, <<"1">>, <<"room:1">>),
    Old = receive {joined, _, P0} -> P0 end,
    [<<"2">>, <<"2">>, <<"room:1">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = join(C, <<"2">>, <<"room:1">>),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_close">>, #{}], ?C:recv_json(C)),
    receive {terminated, _, Old, Reason} -> ?assertEqual({shutdown, duplicate_join}, Reason)
    after 2000 -> ct:fail(old_channel_not_terminated)
    end,
    %% the new channel answers
    ok = ?C:push(C, <<"2">>, <<"3">>, <<"room:1">>, <<"echo">>, #{<<"a">> => 1}),
    ?assertMatch([<<"2">>, <<"3">>, _, <<"phx_reply">>, #{<<"response">> := #{<<"a">> := 1}}], ?C:recv_json(C)).

stale_join_ref_is_ignored(Config) ->
    C = connect(Config),
    _ = join(C, <<"5">>, <<"room:1">>),
    ok = ?C:push(C, <<"4">>, <<"6">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertEqual(timeout, ?C:recv_json(C, 300)),
    ok = ?C:push(C, <<"5">>, <<"7">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertMatch([<<"5">>, <<"7">> | _], ?C:recv_json(C)).

leave_replies_ok_then_closes(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"phx_leave">>, #{}),
    ?assertEqual(ok_reply(<<"1">>, <<"2">>, <<"room:1">>), ?C:recv_json(C)),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_close">>, #{}], ?C:recv_json(C)),
    ok = ?C:push(C, <<"1">>, <<"3">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertMatch([null, <<"3">>, _, _, #{<<"status">> := <<"error">>}], ?C:recv_json(C)).

leave_of_unjoined_topic_replies_ok(Config) ->
    C = connect(Config),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:9">>, <<"phx_leave">>, #{}),
    ?assertEqual(ok_reply(<<"1">>, <<"2">>, <<"room:9">>), ?C:recv_json(C)).

channel_stop_sends_phx_close(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"stop">>, #{}),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_close">>, #{}], ?C:recv_json(C)).

stop_with_reply_replies_then_closes(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"stop_reply">>, #{}),
    ?assertMatch([<<"1">>, <<"2">>, _, <<"phx_reply">>, #{<<"response">> := #{<<"bye">> := true}}],
                 ?C:recv_json(C)),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_close">>, _], ?C:recv_json(C)).

channel_crash_sends_phx_error_and_others_live_on(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    _ = join(C, <<"2">>, <<"room:2">>),
    Other = connect(Config),
    _ = join(Other, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"3">>, <<"room:1">>, <<"crash">>, #{}),
    ?assertEqual([<<"1">>, <<"1">>, <<"room:1">>, <<"phx_error">>, #{<<"reason">> => <<"channel_crash">>}],
                 ?C:recv_json(C)),
    ok = ?C:push(C, <<"2">>, <<"4">>, <<"room:2">>, <<"echo">>, #{}),
    ?assertMatch([<<"2">>, <<"4">>, _, _, #{<<"status">> := <<"ok">>}], ?C:recv_json(C)),
    ok = ?C:push(Other, <<"1">>, <<"5">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertMatch([<<"1">>, <<"5">>, _, _, #{<<"status">> := <<"ok">>}], ?C:recv_json(Other)),
    %% a killed channel is a crash too
    ok = ?C:push(C, <<"2">>, <<"6">>, <<"room:2">>, <<"self">>, #{}),
    [_, _, _, _, #{<<"response">> := #{<<"pid">> := PidText}}] = ?C:recv_json(C),
    exit(list_to_pid(binary_to_list(PidText)), kill),
    ?assertMatch([<<"2">>, <<"2">>, <<"room:2">>, <<"phx_error">>, _], ?C:recv_json(C)).

invalid_return_is_an_error_reply(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"bad_return">>, #{}),
    ?assertMatch([<<"1">>, <<"2">>, _, <<"phx_reply">>,
                  #{<<"status">> := <<"error">>,
                    <<"response">> := #{<<"reason">> := <<"handler returned an invalid value">>}}],
                 ?C:recv_json(C)).

assigns_flow_across_events(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>, #{<<"user">> => <<"ana">>}),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"assign">>, #{<<"key">> => <<"n">>, <<"value">> => 5}),
    ?assertMatch([_, <<"2">> | _], ?C:recv_json(C)),
    ok = ?C:push(C, <<"1">>, <<"3">>, <<"room:1">>, <<"assigns">>, #{}),
    ?assertMatch([_, <<"3">>, _, _, #{<<"response">> := #{<<"n">> := 5,
                                                          <<"joined_with">> := #{<<"user">> := <<"ana">>}}}],
                 ?C:recv_json(C)).

push_reaches_only_this_client(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:1">>), _ = join(B, <<"1">>, <<"room:1">>),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:1">>, <<"push">>, #{<<"x">> => 1}),
    ?assertEqual([<<"1">>, null, <<"room:1">>, <<"pushed">>, #{<<"x">> => 1}], ?C:recv_json(A)),
    ?assertEqual(timeout, ?C:recv_json(B, 200)).

max_channels_per_connection_is_enforced(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    _ = join(C, <<"2">>, <<"room:2">>),
    ?assertMatch([<<"3">>, <<"3">>, <<"room:3">>, <<"phx_reply">>,
                  #{<<"status">> := <<"error">>,
                    <<"response">> := #{<<"reason">> := <<"too many channels joined">>}}],
                 join(C, <<"3">>, <<"room:3">>)).

legacy_dialect_is_answered_in_kind(Config) ->
    C = connect(Config),
    ok = ?C:push(C, null, <<"1">>, <<"hornbeam">>, <<"heartbeat">>, #{}),
    ?assertMatch([null, <<"1">>, <<"hornbeam">>, <<"hb_reply">>, #{<<"status">> := <<"ok">>}], ?C:recv_json(C)),
    ok = ?C:push(C, <<"2">>, <<"2">>, <<"room:1">>, <<"hb_join">>, #{}),
    ?assertMatch([<<"2">>, <<"2">>, <<"room:1">>, <<"hb_reply">>, #{<<"status">> := <<"ok">>}], ?C:recv_json(C)),
    ok = ?C:push(C, <<"2">>, <<"3">>, <<"room:1">>, <<"echo">>, #{}),
    ?assertMatch([<<"2">>, <<"3">>, _, <<"hb_reply">>, _], ?C:recv_json(C)),
    ok = ?C:push(C, <<"2">>, <<"4">>, <<"room:1">>, <<"hb_leave">>, #{}),
    ?assertMatch([<<"2">>, <<"4">>, _, <<"hb_reply">>, _], ?C:recv_json(C)),
    ?assertMatch([<<"2">>, <<"2">>, _, <<"hb_close">>, _], ?C:recv_json(C)),
    ok = ?C:push(C, <<"5">>, <<"5">>, <<"room:1">>, <<"hb_join">>, #{}),
    _ = ?C:recv_json(C),
    ok = ?C:push(C, <<"5">>, <<"6">>, <<"room:1">>, <<"crash">>, #{}),
    ?assertMatch([<<"5">>, <<"5">>, _, <<"hb_error">>, _], ?C:recv_json(C)).

broadcast_reaches_every_subscriber_once(Config) ->
    Clients = [connect(Config) || _ <- lists:seq(1, 5)],
    [_ = join(C, <<"1">>, <<"room:b">>) || C <- Clients],
    Outsider = connect(Config),
    _ = join(Outsider, <<"1">>, <<"room:other">>),
    [S | _] = Clients,
    ok = ?C:push(S, <<"1">>, <<"2">>, <<"room:b">>, <<"broadcast">>, #{<<"n">> => 1}),
    Expected = [null, null, <<"room:b">>, <<"shout">>, #{<<"n">> => 1}],
    %% the sender's channel broadcasts before it replies
    ?assertEqual(Expected, ?C:recv_json(S)),
    ?assertMatch([<<"1">>, <<"2">>, _, <<"phx_reply">>, _], ?C:recv_json(S)),
    [?assertEqual(Expected, ?C:recv_json(C)) || C <- tl(Clients)],
    [?assertEqual(timeout, ?C:recv_json(C, 200)) || C <- Clients],
    ?assertEqual(timeout, ?C:recv_json(Outsider, 100)).

broadcast_from_skips_the_sender(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:b">>), _ = join(B, <<"1">>, <<"room:b">>),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:b">>, <<"broadcast_from">>, #{<<"n">> => 2}),
    ?assertMatch([_, <<"2">>, _, <<"phx_reply">>, _], ?C:recv_json(A)),
    ?assertEqual([null, null, <<"room:b">>, <<"shout">>, #{<<"n">> => 2}], ?C:recv_json(B)),
    ?assertEqual(timeout, ?C:recv_json(A, 300)).

erlang_api_broadcast_and_local_broadcast(Config) ->
    A = connect(Config),
    _ = join(A, <<"1">>, <<"room:e">>),
    ok = hornbeam:broadcast(<<"room:e">>, <<"news">>, #{<<"k">> => [1, 2]}),
    ?assertEqual([null, null, <<"room:e">>, <<"news">>, #{<<"k">> => [1, 2]}], ?C:recv_json(A)),
    ok = hornbeam:local_broadcast(<<"room:e">>, <<"raw">>, {json, <<"[true]">>}),
    ?assertEqual([null, null, <<"room:e">>, <<"raw">>, [true]], ?C:recv_json(A)),
    ?assertMatch({error, {not_json, _}}, hornbeam:broadcast(<<"room:e">>, <<"x">>, #{a => self()})).

terminate_runs_on_disconnect(Config) ->
    register(hornbeam_test_observer, self()),
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:t">>),
    Pid = receive {joined, _, P0} -> P0 end,
    ok = ?C:close(C),
    receive {terminated, <<"room:t">>, Pid, Reason} -> ?assertEqual({shutdown, closed}, Reason)
    after 2000 -> ct:fail(terminate_not_called)
    end.

%% --- limits and bad input ------------------------------------------------------

frame_over_max_frame_size_closes_1009(Config) ->
    C = connect(Config),
    ok = ?C:send(C, binary:copy(<<"x">>, 1001)),
    ?assertEqual(1009, ?C:expect_closed(C, 2000)).

invalid_utf8_closes_1007(Config) ->
    C = connect(Config),
    ok = ?C:send_frame(C, 1, <<"[null,null,\"", 255, "\",\"e\",{}]">>),
    ?assertEqual(1007, ?C:expect_closed(C, 2000)).

protocol_error_closes_1002(Config) ->
    C = connect(Config),
    ok = ?C:send_raw(C, <<16#81, 2, "hi">>),   %% unmasked
    ?assertEqual(1002, ?C:expect_closed(C, 2000)),
    D = connect(Config),
    ok = ?C:send_frame(D, 1, <<"x">>, #{rsv => 4}),
    ?assertEqual(1002, ?C:expect_closed(D, 2000)).

invalid_channel_message_closes_1007(Config) ->
    C = connect(Config),
    ok = ?C:send(C, <<"{\"not\":\"an array\"}">>),
    ?assertEqual(1007, ?C:expect_closed(C, 2000)).

%% Phoenix V2 binary frames (phoenix.js's serializer): a push is kind 0 with
%% the lengths of join_ref, ref, topic and event, the strings, then the bytes.
binary_push(JoinRef, Ref, Topic, Event, Payload) ->
    <<0, (byte_size(JoinRef)), (byte_size(Ref)), (byte_size(Topic)), (byte_size(Event)),
      JoinRef/binary, Ref/binary, Topic/binary, Event/binary, Payload/binary>>.

%% The next binary frame, skipping text frames (presence_state, JSON replies).
recv_binary(C) ->
    case ?C:recv(C, 5000) of
        {binary, Bin} -> Bin;
        {text, _} -> recv_binary(C);
        Other -> ct:fail({no_binary_frame, Other})
    end.

binary_push_gets_a_binary_reply(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:bin">>),
    Bytes = <<0, 255, 1, 2, "not json">>,
    ok = ?C:send_frame(C, 2, binary_push(<<"1">>, <<"2">>, <<"room:bin">>, <<"echo">>, Bytes)),
    %% reply: kind 1, lengths of join_ref, ref, topic, status, then the bytes
    ?assertEqual(<<1, 1, 1, 8, 2, "1", "2", "room:bin", "ok", Bytes/binary>>, recv_binary(C)),
    ok = ?C:send_frame(C, 2, binary_push(<<"1">>, <<"3">>, <<"room:bin">>, <<"error_reply">>, <<7>>)),
    ?assertEqual(<<1, 1, 1, 8, 5, "1", "3", "room:bin", "error", 7>>, recv_binary(C)),
    %% JSON still works on the same connection
    ok = ?C:push(C, <<"1">>, <<"4">>, <<"room:bin">>, <<"echo">>, #{<<"a">> => 1}),
    ?assertMatch([<<"1">>, <<"4">>, _, <<"phx_reply">>, #{<<"response">> := #{<<"a">> := 1}}],
                 ?C:recv_json(C)).

binary_push_and_broadcast_reach_clients_as_binary_frames(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:bin">>),
    _ = join(B, <<"1">>, <<"room:bin">>),
    ok = ?C:send_frame(A, 2, binary_push(<<"1">>, <<"2">>, <<"room:bin">>, <<"push">>, <<1, 2, 3>>)),
    %% server push: kind 0 with join_ref, topic, event (no ref)
    ?assertEqual(<<0, 1, 8, 6, "1", "room:bin", "pushed", 1, 2, 3>>, recv_binary(A)),
    ok = ?C:send_frame(A, 2, binary_push(<<"1">>, <<"3">>, <<"room:bin">>, <<"broadcast">>, <<9, 8>>)),
    %% broadcast: kind 2 with topic and event
    ?assertEqual(<<2, 8, 5, "room:bin", "shout", 9, 8>>, recv_binary(B)).

binary_payload_reaches_the_channel_tagged(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:bin">>),
    %% JSON text sent in a binary frame is bytes, not JSON: echoed as bytes,
    %% and the "assign" clause (which wants a decoded map) does not match it.
    Json = <<"{\"key\":\"k\",\"value\":1}">>,
    ok = ?C:send_frame(C, 2, binary_push(<<"1">>, <<"2">>, <<"room:bin">>, <<"echo">>, Json)),
    ?assertEqual(<<1, 1, 1, 8, 2, "1", "2", "room:bin", "ok", Json/binary>>, recv_binary(C)),
    ok = ?C:send_frame(C, 2, binary_push(<<"1">>, <<"3">>, <<"room:bin">>, <<"assign">>, Json)),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:bin">>, <<"phx_error">>, _], ?C:recv_json(C)).

invalid_binary_message_closes_1007(Config) ->
    C = connect(Config),
    %% kind 1 (a reply) is not something a client sends
    ok = ?C:send_frame(C, 2, <<1, 2, 3>>),
    ?assertEqual(1007, ?C:expect_closed(C, 2000)),
    D = connect(Config),
    %% lengths longer than the frame
    ok = ?C:send_frame(D, 2, <<0, 9, 9, 9, 9, "1">>),
    ?assertEqual(1007, ?C:expect_closed(D, 2000)).

binary_frame_over_max_frame_size_closes_1009(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:bin">>),
    ok = ?C:send_frame(C, 2, binary_push(<<"1">>, <<"2">>, <<"room:bin">>, <<"echo">>,
                                         binary:copy(<<0>>, 1001))),
    ?assertEqual(1009, ?C:expect_closed(C, 2000)).

ping_gets_pong(Config) ->
    C = connect(Config),
    ok = ?C:send_frame(C, 9, <<"abc">>),
    ?assertEqual({pong, <<"abc">>}, ?C:recv(C)).

close_handshake_is_echoed(Config) ->
    C = connect(Config),
    ok = ?C:send_frame(C, 8, <<1000:16, "bye">>),
    ?assertEqual(1000, ?C:expect_closed(C, 2000)).

client_that_stops_reading_is_closed(Config) ->
    %% A raw client that joins, then never reads again.
    Port = ?config(port, Config),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {recbuf, 4096}]),
    {_, Req} = ?C:upgrade_request("/ws", []),
    ok = gen_tcp:send(S, Req),
    {ok, _} = gen_tcp:recv(S, 0, 2000),
    Join = hornbeam_nif:msg_encode(<<"1">>, <<"1">>, <<"room:flood">>, <<"phx_join">>, <<"{}">>),
    ok = gen_tcp:send(S, ?C:client_frame(1, Join, true, 0)),
    ok = wait_until(fun() -> hornbeam_pubsub:subscribers(<<"room:flood">>) =/= [] end),
    [Conn] = hornbeam_pubsub:subscribers(<<"room:flood">>),
    Mon = erlang:monitor(process, Conn),
    Big = binary:copy(<<"x">>, 60000),
    flood(Mon, Big, 2000),
    gen_tcp:close(S).

flood(_Mon, _Big, 0) -> ct:fail(connection_not_closed);
flood(Mon, Big, N) ->
    ok = hornbeam:broadcast(<<"room:flood">>, <<"big">>, Big),
    receive {'DOWN', Mon, process, _, _} -> ok
    after 5 -> flood(Mon, Big, N - 1)
    end.

vanished_peer_is_noticed(Config) ->
    register(hornbeam_test_observer, self()),
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:v">>),
    Pid = receive {joined, _, P0} -> P0 end,
    unlink(C),
    exit(C, kill),   %% the client process dies; its socket closes without a close frame
    receive {terminated, <<"room:v">>, Pid, _} -> ok
    after 2000 -> ct:fail(not_noticed)
    end,
    ok = wait_until(fun() -> hornbeam_pubsub:subscribers(<<"room:v">>) =:= [] end).

websocket_suffix_path_and_vsn(Config) ->
    C = connect(Config, "/ws/websocket?vsn=2.0.0&token=abc"),
    ?assertMatch([<<"1">>, <<"1">>, _, _, #{<<"status">> := <<"ok">>}], join(C, <<"1">>, <<"room:1">>)),
    D = connect(Config, "/ws"),
    ?assertMatch([<<"1">> | _], join(D, <<"1">>, <<"room:1">>)).

unsupported_vsn_is_403(Config) ->
    {error, {status, 403, Body}} = ?C:connect(?config(port, Config), "/ws?vsn=1.0.0"),
    ?assertMatch({match, _}, re:run(Body, "vsn 2")).

%% Bound to 127.0.0.1: pages of localhost, 127.0.0.1 and [::1] (any port)
%% may connect; a DNS-rebinding page, whose Origin and Host header name the
%% same hostile host, may not.
origin_policy_default(Config) ->
    Port = ?config(port, Config),
    P = integer_to_list(Port),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "http://127.0.0.1"}]),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "http://localhost:" ++ P}]),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "http://[::1]:3000"}]),
    {error, {status, 403, _}} = ?C:connect(Port, "/ws", [{"Origin", "http://evil.example"}]),
    {error, {status, 403, _}} = ?C:connect(Port, "/ws", [{"Host", "evil.example:" ++ P},
                                                       {"Origin", "http://evil.example:" ++ P}]),
    {ok, _} = ?C:connect(Port, "/ws", []).

origin_policy_public_hosts(Config) ->
    Port = ?config(port, Config),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "https://chat.example.com"}]),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "https://a.example.org"}]),
    %% Given public hosts replace the bind host's.
    {error, {status, 403, _}} = ?C:connect(Port, "/ws", [{"Origin", "http://127.0.0.1"}]),
    {error, {status, 403, _}} = ?C:connect(Port, "/ws", [{"Origin", "https://example.org"}]),
    ok = hornbeam:stop(),
    ?assertEqual({error, {bad_option, public_hosts, [42]}},
                 hornbeam:start(none, #{bind => "127.0.0.1:0", public_hosts => [42]})).

origin_policy_list_and_false(Config) ->
    Port = ?config(port, Config),
    {ok, _} = ?C:connect(Port, "/ws", [{"Origin", "https://good.example"}]),
    {error, {status, 403, _}} = ?C:connect(Port, "/ws", [{"Origin", "https://bad.example"}]),
    ok = hornbeam:stop(),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", check_origin => false}),
    {ok, _} = ?C:connect(hornbeam:port(), "/ws", [{"Origin", "https://anything.example"}]).

non_websocket_paths_are_404(Config) ->
    Port = ?config(port, Config),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(S, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, <<"HTTP/1.1 404", _/binary>>} = gen_tcp:recv(S, 0, 2000).

connect_params_reach_the_channel(Config) ->
    ok = hornbeam:stop(),
    Connect = fun(#{<<"token">> := <<"good">>}, _Info) -> {ok, #{<<"user">> => <<"u1">>}};
                 (_, _) -> {error, bad_token}
              end,
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", connect => Connect,
                                channels => [{<<"room:*">>, hornbeam_test_channel}]}),
    Port = hornbeam:port(),
    {error, {status, 403, _}} = ?C:connect(Port, "/ws?token=bad"),
    {ok, C} = ?C:connect(Port, "/ws?token=good&vsn=2.0.0"),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:1">>, <<"assigns">>, #{}),
    ?assertMatch([_, _, _, _, #{<<"response">> := #{<<"user">> := <<"u1">>}}], ?C:recv_json(C)),
    _ = Config.

%% Random sequences of joins, leaves, events, heartbeats and garbage against
%% one connection: the server never crashes and every ref gets at most one reply.
garbage_never_crashes_the_server(Config) ->
    Port = ?config(port, Config),
    Prop = proper:forall(proper_types:list(action()),
                         fun(Actions) -> run_actions(Port, Actions) end),
    true = proper:quickcheck(Prop, [{numtests, 60}, {to_file, user}]),
    %% and the server still serves
    C = connect(Config),
    ?assertMatch([<<"1">> | _], join(C, <<"1">>, <<"room:1">>)).

action() ->
    Topic = proper_types:oneof([<<"room:1">>, <<"room:2">>, <<"nope">>, <<"room:lobby">>]),
    proper_types:oneof([
        {join, Topic},
        {leave, Topic},
        {event, Topic, proper_types:oneof([<<"echo">>, <<"noreply">>, <<"crash">>, <<"stop">>,
                                           <<"push">>, <<"unknown">>, <<"broadcast">>])},
        heartbeat,
        {garbage_text, proper_types:binary()},
        {json_text, proper_types:oneof([<<"[]">>, <<"[1,2,3,4,5]">>, <<"null">>,
                                        <<"[null,null,\"room:1\",\"echo\"]">>])}
    ]).

run_actions(Port, Actions) ->
    {ok, C} = ?C:connect(Port, "/ws"),
    {Refs, _} = lists:foldl(fun(A, {Acc, N}) -> {send_action(C, A, N, Acc), N + 1} end,
                            {[], 1}, Actions),
    Replies = collect_replies(C, #{}),
    ?C:close(C),
    Alive = is_pid(whereis(hornbeam_channel_sup)) andalso is_pid(whereis(hornbeam_pubsub)),
    AtMostOnce = lists:all(fun(N) -> N =< 1 end, maps:values(Replies)),
    Known = lists:all(fun(R) -> lists:member(R, Refs) end, maps:keys(Replies)),
    Alive andalso AtMostOnce andalso Known.

send_action(C, {join, T}, N, Acc) ->
    R = integer_to_binary(N), ok = ?C:push(C, R, R, T, <<"phx_join">>, #{}), [R | Acc];
send_action(C, {leave, T}, N, Acc) ->
    R = integer_to_binary(N), ok = ?C:push(C, R, R, T, <<"phx_leave">>, #{}), [R | Acc];
send_action(C, {event, T, E}, N, Acc) ->
    R = integer_to_binary(N), ok = ?C:push(C, null, R, T, E, #{}), [R | Acc];
send_action(C, heartbeat, N, Acc) ->
    R = integer_to_binary(N), ok = ?C:push(C, null, R, <<"phoenix">>, <<"heartbeat">>, #{}), [R | Acc];
send_action(C, {garbage_text, B}, _N, Acc) ->
    ok = ?C:send_frame(C, 1, B), Acc;
send_action(C, {json_text, B}, _N, Acc) ->
    ok = ?C:send(C, B), Acc.

collect_replies(C, Seen) ->
    case ?C:recv(C, 300) of
        {text, T} ->
            case hornbeam_nif:json_decode(T) of
                {ok, [_, Ref, _, <<"phx_reply">>, _]} ->
                    collect_replies(C, maps:update_with(Ref, fun(X) -> X + 1 end, 1, Seen));
                _ -> collect_replies(C, Seen)
            end;
        _ -> Seen
    end.

%% A join and a heartbeat are followed by quiet, so the connection process
%% hibernates as soon as their answers are written (hibernate_after is a
%% minute here); an ordinary event does not make it hibernate.
idle_socket_hibernates_after_join_and_heartbeat(Config) ->
    C = connect(Config),
    [<<"1">>, <<"1">>, <<"room:hib">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = join(C, <<"1">>, <<"room:hib">>),
    [Sock] = hornbeam_pubsub:subscribers(<<"room:hib">>),
    Hibernated = fun() -> erlang:process_info(Sock, current_function) =:= {current_function, {erlang, hibernate, 3}} end,
    ?assertEqual(ok, wait_until(Hibernated)),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:hib">>, <<"echo">>, #{<<"n">> => 1}),
    [_, <<"2">>, _, <<"phx_reply">>, _] = ?C:recv_json(C),
    timer:sleep(300),
    ?assertNot(Hibernated()),
    ok = ?C:push(C, null, <<"3">>, <<"phoenix">>, <<"heartbeat">>, #{}),
    ?assertEqual(ok_reply(null, <<"3">>, <<"phoenix">>), ?C:recv_json(C)),
    ?assertEqual(ok, wait_until(Hibernated)),
    %% and it still works after waking up
    ok = ?C:push(C, <<"1">>, <<"4">>, <<"room:hib">>, <<"echo">>, #{<<"n">> => 2}),
    ?assertMatch([_, <<"4">>, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], ?C:recv_json(C)).

wait_until(Fun) -> wait_until(Fun, 100).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.

%% hornbeam:stop() closes WebSockets with 1001 (going away).
stop_closes_websockets_with_1001(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>),
    ok = hornbeam:stop(),
    ?assertEqual(1001, ?C:expect_closed(C, 2000)).

%% --- reading limits: fragment_timeout, max_pending_events -------------------

%% fragment_timeout (500 ms here): a fragmented message completed in time is
%% handled; one left open is closed with 1008 although pings keep coming
%% between its fragments.
unfinished_fragmented_message_closes_1008(Config) ->
    C = connect(Config),
    Heartbeat = hornbeam_nif:msg_encode(null, <<"1">>, <<"phoenix">>, <<"heartbeat">>, <<"{}">>),
    <<First:10/binary, Last/binary>> = Heartbeat,
    ok = ?C:send_frame(C, 1, First, #{fin => false}),
    timer:sleep(100),
    ok = ?C:send_frame(C, 0, Last),
    ?assertEqual(ok_reply(null, <<"1">>, <<"phoenix">>), ?C:recv_json(C)),
    T0 = erlang:monotonic_time(millisecond),
    ok = ?C:send_frame(C, 1, First, #{fin => false}),
    Pinger = spawn_link(fun() -> ping_every(C, 100, 30) end),
    ?assertEqual(1008, close_code_skipping_pongs(C, 10000)),
    Took = erlang:monotonic_time(millisecond) - T0,
    unlink(Pinger),
    exit(Pinger, kill),
    ?assert(Took >= 400 andalso Took < 2900, {took, Took}).

%% The same clock for one frame of which only a part arrived.
partial_frame_closes_1008(Config) ->
    C = connect(Config),
    Frame = hornbeam_ws_client:client_frame(1, binary:copy(<<"x">>, 200), true, 0),
    ok = ?C:send_raw(C, binary:part(Frame, 0, 100)),
    ?assertEqual(1008, close_code_skipping_pongs(C, 10000)).

ping_every(_C, _Ms, 0) ->
    ok;
ping_every(C, Ms, N) ->
    timer:sleep(Ms),
    ok = ?C:send_frame(C, 9, <<"p">>),
    ping_every(C, Ms, N - 1).

close_code_skipping_pongs(C, Timeout) ->
    case ?C:recv(C, Timeout) of
        {pong, _} -> close_code_skipping_pongs(C, Timeout);
        {close, Code, _} -> Code;
        Other -> Other
    end.

%% max_pending_events (4 here): a client floods a channel whose handler
%% sleeps 5 ms per event. The socket stops handing it events (and stops
%% reading) at 4 pending, so the channel's mailbox never grows past that,
%% and every event is still answered, in order.
slow_channel_pauses_reading_and_answers_everything_in_order(Config) ->
    C = connect(Config),
    Topic = <<"room:bp">>,
    [_, _, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = join(C, <<"1">>, Topic),
    ok = ?C:push(C, <<"1">>, <<"self">>, Topic, <<"self">>, #{}),
    [_, <<"self">>, _, _, #{<<"response">> := #{<<"pid">> := PidText}}] = ?C:recv_json(C),
    Channel = list_to_pid(binary_to_list(PidText)),
    Self = self(),
    Sampler = spawn_link(fun() -> sample_queue(Channel, 0, Self) end),
    N = 300,
    Frames = [hornbeam_ws_client:client_frame(
                1, hornbeam_nif:msg_encode(<<"1">>, integer_to_binary(I), Topic, <<"sleep">>,
                                           <<"{\"ms\":5}">>), true, 0)
              || I <- lists:seq(1, N)],
    ok = ?C:send_raw(C, iolist_to_binary(Frames)),
    Refs = [begin
                [_, Ref, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C, 20000),
                Ref
            end || _ <- lists:seq(1, N)],
    ?assertEqual([integer_to_binary(I) || I <- lists:seq(1, N)], Refs),
    Sampler ! stop,
    MaxQueue = receive {max_queue, Sampler, M} -> M after 5000 -> ct:fail(no_sampler_answer) end,
    ct:pal("slow channel flooded with ~b events: max message_queue_len ~b (max_pending_events 4)",
           [N, MaxQueue]),
    ?assert(MaxQueue =< 4, {max_queue, MaxQueue}),
    %% The connection is alive and reads again.
    ok = ?C:push(C, null, <<"hb">>, <<"phoenix">>, <<"heartbeat">>, #{}),
    ?assertEqual(ok_reply(null, <<"hb">>, <<"phoenix">>), ?C:recv_json(C)).

sample_queue(Pid, Max, Parent) ->
    receive
        stop -> Parent ! {max_queue, self(), Max}
    after 1 ->
        case erlang:process_info(Pid, message_queue_len) of
            {message_queue_len, L} -> sample_queue(Pid, max(Max, L), Parent);
            undefined -> sample_queue(Pid, Max, Parent)
        end
    end.


%% Reads (hornbeam_socket, ?BUSY_READS): a socket starts in {active, once};
%% one that reads 64 or more times a second switches to a topped-up
%% {active, N}. A client sending faster than the socket handles its frames
%% (here: the socket is suspended) runs that count down, so at most
%% 2 * 32 reads wait in the mailbox; with {active, true} every read of the
%% flood would. A heartbeat's answer (a quiet spell) puts it back on once.
busy_socket_reads_counted_with_a_bounded_mailbox_and_quiet_goes_back_to_once(Config) ->
    C = connect(Config),
    Topic = <<"room:reads">>,
    _ = join(C, <<"1">>, Topic),
    [Socket] = pg:get_local_members(hornbeam, {topic, Topic}),
    {links, Links} = erlang:process_info(Socket, links),
    [Port] = [P || P <- Links, is_port(P)],
    ?assertEqual({ok, [{active, once}]}, inet:getopts(Port, [active])),
    %% 100 events one at a time: 100 reads within a second
    [begin
         Ref = integer_to_binary(I),
         ok = ?C:push(C, <<"1">>, Ref, Topic, <<"echo">>, #{}),
         [_, Ref, Topic, <<"phx_reply">>, _] = ?C:recv_json(C)
     end || I <- lists:seq(1, 100)],
    {ok, [{active, Count}]} = inet:getopts(Port, [active]),
    ?assert(is_integer(Count) andalso Count > 32 andalso Count =< 64, {active, Count}),
    %% a flood while the socket cannot keep up
    ok = sys:suspend(Socket),
    Frame = hornbeam_ws_client:client_frame(
              1, hornbeam_nif:msg_encode(<<"1">>, <<"f">>, Topic, <<"noreply">>,
                                         iolist_to_binary([<<"{\"x\":\"">>, binary:copy(<<"x">>, 1300), <<"\"}">>])),
              true, 0),
    %% (the test client writes what send_raw gives it from its own process)
    [ok = ?C:send_raw(C, Frame) || _ <- lists:seq(1, 400)],
    timer:sleep(1000),
    {message_queue_len, Queued} = erlang:process_info(Socket, message_queue_len),
    ct:pal("suspended busy socket flooded with 400 frames of ~b bytes: ~b messages queued",
           [byte_size(Frame), Queued]),
    ?assert(Queued =< 2 * 32 + 2, {queued, Queued}),
    ?assertEqual({ok, [{active, false}]}, inet:getopts(Port, [active])),  %% the count ran out
    ok = sys:resume(Socket),
    %% everything arrives and is handled: the answer to a heartbeat after the flood
    ok = ?C:push(C, null, <<"hb">>, <<"phoenix">>, <<"heartbeat">>, #{}),
    ?assertEqual(ok_reply(null, <<"hb">>, <<"phoenix">>), ?C:recv_json(C, 10000)),
    %% the heartbeat's answer is a quiet spell: one-shot reads again
    timer:sleep(200),
    ?assertEqual({ok, [{active, once}]}, inet:getopts(Port, [active])).


%% --- write batching: write_batch_frames, write_batch_bytes ---------------------

%% Frames already waiting in a socket's mailbox go out with one port_command
%% each batch (write_batch_frames = 3 here): 20 broadcasts queued while the
%% socket is suspended take 7 writes, and reach the client in order.
waiting_broadcasts_are_written_in_order_in_batches_of_write_batch_frames(Config) ->
    Writes = broadcasts_while_suspended(Config, 20),
    ?assertEqual([3, 3, 3, 3, 3, 3, 2], Writes).

%% write_batch_bytes = 1: every frame is over it, so each one is its own write.
write_batch_bytes_bounds_a_batch(Config) ->
    Writes = broadcasts_while_suspended(Config, 20),
    ?assertEqual(lists:duplicate(20, 1), Writes).

%% Queue N broadcasts for a suspended socket, resume it; check the client
%% gets them in order and return the number of frames in each port_command.
broadcasts_while_suspended(Config, N) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:batch">>),
    [Socket] = pg:get_local_members(hornbeam, {topic, <<"room:batch">>}),
    ok = sys:suspend(Socket),
    [ok = hornbeam:broadcast(<<"room:batch">>, <<"n">>, #{<<"i">> => I}) || I <- lists:seq(1, N)],
    1 = erlang:trace_pattern({erlang, port_command, 3}, true, [global]),
    1 = erlang:trace(Socket, true, [call]),
    ok = sys:resume(Socket),
    [?assertEqual([null, null, <<"room:batch">>, <<"n">>, #{<<"i">> => I}], ?C:recv_json(C))
     || I <- lists:seq(1, N)],
    _ = erlang:trace(Socket, false, [call]),
    _ = erlang:trace_pattern({erlang, port_command, 3}, false, [global]),
    frames_per_write(Socket, []).

frames_per_write(Socket, Acc) ->
    receive
        {trace, Socket, call, {erlang, port_command, [_Port, Data, _Opts]}} ->
            frames_per_write(Socket, [frame_count(iolist_to_binary(Data), 0) | Acc])
    after 1000 ->
        lists:reverse(Acc)
    end.

%% Server frames are unmasked; the broadcasts here are short (< 126 bytes).
frame_count(<<>>, N) -> N;
frame_count(<<_:8, Len:8, _:Len/binary, Rest/binary>>, N) when Len < 126 -> frame_count(Rest, N + 1).

