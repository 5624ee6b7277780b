%% Python channel handlers end to end: real WebSocket clients, the real
%% server, real CPython in the worker ports.
-module(hornbeam_python_e2e_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [documented_example_works, join_return_forms, event_return_forms,
     stop_closes_and_runs_on_leave, leave_and_disconnect_run_on_leave,
     assigns_flow_across_events, events_of_one_channel_run_in_order,
     slow_handlers_on_two_channels_overlap_with_two_workers,
     push_arrives_before_the_reply_and_broadcast_from_skips_the_sender,
     python_handlers_take_and_give_bytes_in_binary_frames,
     os_exit_in_a_handler_errors_that_request_only, endless_loop_times_out_and_worker_is_replaced,
     import_error_fails_start, on_connect_accepts_and_refuses, presence_from_python,
     presence_limits_raise_value_error_in_python,
     start_serves_a_module_without_app_as_channels_only, start_refuses_bad_apps_with_a_reason,
     a_sleeping_sync_handler_does_not_delay_another_channel_with_one_worker,
     events_of_one_channel_run_one_at_a_time_on_the_thread_pool,
     an_async_handler_waiting_on_presence_does_not_delay_another_channel,
     overloaded_worker_answers_events_and_joins_with_an_error,
     overloaded_worker_refuses_a_connect_with_503,
     a_channel_outlives_its_worker_process].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    application:stop(hornbeam).

fixtures() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "python", "fixtures"]).

opts(slow_handlers_on_two_channels_overlap_with_two_workers) -> #{workers => 2};
opts(endless_loop_times_out_and_worker_is_replaced) -> #{timeout => 1000};
opts(on_connect_accepts_and_refuses) -> #{channel_modules => ["fx_room", "fx_connect"]};
opts(presence_limits_raise_value_error_in_python) -> #{max_presence_meta_size => 1000,
                                                       max_presences_per_socket => 5};
opts(overloaded_worker_answers_events_and_joins_with_an_error) ->
    #{threads => 1, max_queued_calls => 0};
opts(overloaded_worker_refuses_a_connect_with_503) ->
    #{threads => 1, max_queued_calls => 0, channel_modules => ["fx_room", "fx_connect"]};
opts(_) -> #{}.

init_per_testcase(TC, Config) when TC =:= import_error_fails_start;
                                  TC =:= start_serves_a_module_without_app_as_channels_only;
                                  TC =:= start_refuses_bad_apps_with_a_reason ->
    _ = hornbeam:stop(),
    Config;
init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    Opts = maps:merge(#{bind => "127.0.0.1:0", workers => 1,
                        channel_modules => ["fx_room", "e2e_chat", "e2e_presence"],
                        pythonpath => [fixtures()]}, opts(TC)),
    ok = hornbeam:start(none, Opts),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

connect(Config) -> connect(Config, "/ws?vsn=2.0.0").
connect(Config, Path) ->
    {ok, C} = ?C:connect(?config(port, Config), Path),
    C.

join(C, JoinRef, Topic, Payload) ->
    ok = ?C:push(C, JoinRef, JoinRef, Topic, <<"phx_join">>, Payload),
    ?C:recv_json(C).

push(C, JoinRef, Ref, Topic, Event, Payload) ->
    ok = ?C:push(C, JoinRef, Ref, Topic, Event, Payload),
    ?C:recv_json(C).

documented_example_works(Config) ->
    A = connect(Config), B = connect(Config),
    ?assertMatch([<<"1">>, <<"1">>, <<"chat:lobby">>, <<"phx_reply">>,
                  #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"username required">>}}],
                 join(A, <<"1">>, <<"chat:lobby">>, #{})),
    ?assertMatch([<<"2">>, <<"2">>, <<"chat:lobby">>, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>, <<"response">> := #{<<"room_id">> := <<"lobby">>}}],
                 join(A, <<"2">>, <<"chat:lobby">>, #{<<"username">> => <<"Alice">>})),
    [_, _, _, _, #{<<"status">> := <<"ok">>}] = join(B, <<"1">>, <<"chat:lobby">>, #{<<"username">> => <<"Bob">>}),
    ?assertMatch([<<"2">>, <<"3">>, _, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>, <<"response">> := #{<<"status">> := <<"ok">>}}],
                 push(A, <<"2">>, <<"3">>, <<"chat:lobby">>, <<"new_msg">>, #{<<"body">> => <<"Hello!">>})),
    ?assertEqual([null, null, <<"chat:lobby">>, <<"new_msg">>,
                  #{<<"username">> => <<"Alice">>, <<"body">> => <<"Hello!">>}], ?C:recv_json(B)),
    ?assertEqual(timeout, ?C:recv_json(A, 300)).

join_return_forms(Config) ->
    C = connect(Config),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"ok">>,
                                <<"response">> := #{<<"topic">> := <<"room:1">>,
                                                    <<"topic_params">> := #{<<"room_id">> := <<"1">>}}}],
                 join(C, <<"1">>, <<"room:1">>, #{<<"mode">> => <<"ok">>})),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"short">> := true}}],
                 join(C, <<"2">>, <<"room:2">>, #{<<"mode">> => <<"ok_no_socket">>})),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"unauthorized">>}}],
                 join(C, <<"3">>, <<"room:3">>, #{<<"mode">> => <<"error">>})),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"join crashed">>}}],
                 join(C, <<"4">>, <<"room:4">>, #{<<"mode">> => <<"crash">>})),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"error">>,
                                <<"response">> := #{<<"reason">> := <<"handler returned an invalid value">>}}],
                 join(C, <<"5">>, <<"room:5">>, #{<<"mode">> => <<"invalid">>})).

event_return_forms(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:1">>, #{}),
    T = <<"room:1">>,
    ?assertMatch([_, <<"2">>, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 1}}],
                 push(C, <<"1">>, <<"2">>, T, <<"reply">>, #{})),
    ?assertMatch([_, <<"3">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"x">> := 1}}],
                 push(C, <<"1">>, <<"3">>, T, <<"reply_no_socket">>, #{})),
    ?assertMatch([_, <<"4">>, _, _, #{<<"status">> := <<"error">>, <<"response">> := #{<<"why">> := <<"nope">>}}],
                 push(C, <<"1">>, <<"4">>, T, <<"reply_error">>, #{})),
    ok = ?C:push(C, <<"1">>, <<"5">>, T, <<"noreply">>, #{}),
    ok = ?C:push(C, <<"1">>, <<"6">>, T, <<"none">>, #{}),
    ?assertMatch([_, <<"7">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"async">> := true}}],
                 push(C, <<"1">>, <<"7">>, T, <<"async_reply">>, #{})),
    ?assertMatch([_, <<"8">>, _, _, #{<<"status">> := <<"error">>,
                                      <<"response">> := #{<<"reason">> := <<"handler returned an invalid value">>}}],
                 push(C, <<"1">>, <<"8">>, T, <<"invalid">>, #{})),
    ?assertMatch([_, <<"9">>, _, _, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"unhandled event">>}}],
                 push(C, <<"1">>, <<"9">>, T, <<"no_such_event">>, #{})),
    %% an exception: phx_error (the client rejoins), never a traceback
    ok = ?C:push(C, <<"1">>, <<"10">>, T, <<"crash">>, #{}),
    [<<"1">>, <<"1">>, T, <<"phx_error">>, ErrPayload] = ?C:recv_json(C),
    ?assertEqual(#{<<"reason">> => <<"channel_crash">>}, ErrPayload),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"ok">>}], join(C, <<"11">>, T, #{})),
    ok = ?C:push(C, <<"11">>, <<"12">>, T, <<"async_crash">>, #{}),
    ?assertMatch([<<"11">>, <<"11">>, T, <<"phx_error">>, _], ?C:recv_json(C)).

stop_closes_and_runs_on_leave(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"chat:s">>, #{<<"username">> => <<"Ana">>}),
    _ = join(B, <<"1">>, <<"chat:s">>, #{<<"username">> => <<"Ben">>}),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"chat:s">>, <<"bye">>, #{}),
    %% on_leave runs before the channel is gone, so its own client sees the broadcast too
    ?assertEqual([null, null, <<"chat:s">>, <<"user_left">>, #{<<"username">> => <<"Ana">>}], ?C:recv_json(A)),
    ?assertEqual([<<"1">>, <<"1">>, <<"chat:s">>, <<"phx_close">>, #{}], ?C:recv_json(A)),
    ?assertEqual([null, null, <<"chat:s">>, <<"user_left">>, #{<<"username">> => <<"Ana">>}], ?C:recv_json(B)).

leave_and_disconnect_run_on_leave(Config) ->
    A = connect(Config), B = connect(Config), W = connect(Config),
    _ = join(W, <<"1">>, <<"chat:l">>, #{<<"username">> => <<"Watcher">>}),
    _ = join(A, <<"1">>, <<"chat:l">>, #{<<"username">> => <<"Ana">>}),
    _ = join(B, <<"1">>, <<"chat:l">>, #{<<"username">> => <<"Ben">>}),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"chat:l">>, <<"phx_leave">>, #{}),
    ?assertEqual([null, null, <<"chat:l">>, <<"user_left">>, #{<<"username">> => <<"Ana">>}], ?C:recv_json(W)),
    ok = ?C:close(B),
    ?assertEqual([null, null, <<"chat:l">>, <<"user_left">>, #{<<"username">> => <<"Ben">>}], ?C:recv_json(W)).

assigns_flow_across_events(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:a">>, #{}),
    Ns = [begin
              [_, _, _, _, #{<<"response">> := #{<<"n">> := N}}] =
                  push(C, <<"1">>, integer_to_binary(I), <<"room:a">>, <<"reply">>, #{}),
              N
          end || I <- lists:seq(2, 6)],
    ?assertEqual([1, 2, 3, 4, 5], Ns).

events_of_one_channel_run_in_order(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:o">>, #{}),
    Refs = [integer_to_binary(I) || I <- lists:seq(100, 140)],
    [ok = ?C:push(C, <<"1">>, R, <<"room:o">>, <<"reply">>, #{}) || R <- Refs],
    Got = [begin [_, R, _, _, #{<<"response">> := #{<<"n">> := N}}] = ?C:recv_json(C), {R, N} end
           || _ <- Refs],
    ?assertEqual(lists:zip(Refs, lists:seq(1, length(Refs))), Got).

slow_handlers_on_two_channels_overlap_with_two_workers(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:x">>, #{}),
    _ = join(B, <<"1">>, <<"room:y">>, #{}),
    T0 = erlang:monotonic_time(millisecond),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:x">>, <<"sleep_sync">>, #{<<"ms">> => 600}),
    ok = ?C:push(B, <<"1">>, <<"2">>, <<"room:y">>, <<"sleep_sync">>, #{<<"ms">> => 600}),
    [_, _, _, _, #{<<"status">> := <<"ok">>}] = ?C:recv_json(A),
    [_, _, _, _, #{<<"status">> := <<"ok">>}] = ?C:recv_json(B),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    ct:pal("two 600 ms handlers took ~b ms", [Elapsed]),
    ?assert(Elapsed < 1100).

push_arrives_before_the_reply_and_broadcast_from_skips_the_sender(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:p">>, #{}),
    _ = join(B, <<"1">>, <<"room:p">>, #{}),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:p">>, <<"shout">>, #{<<"v">> => 1}),
    %% to A: the broadcast, the push, then the reply (emits come before the reply)
    ?assertEqual([null, null, <<"room:p">>, <<"shout">>, #{<<"v">> => 1}], ?C:recv_json(A)),
    ?assertEqual([<<"1">>, null, <<"room:p">>, <<"pushed">>, #{<<"v">> => 1}], ?C:recv_json(A)),
    ?assertMatch([<<"1">>, <<"2">>, _, <<"phx_reply">>, _], ?C:recv_json(A)),
    %% to B: the broadcast and the broadcast_from, not the push
    ?assertEqual([null, null, <<"room:p">>, <<"shout">>, #{<<"v">> => 1}], ?C:recv_json(B)),
    ?assertEqual([null, null, <<"room:p">>, <<"shout_from">>, #{<<"v">> => 1}], ?C:recv_json(B)),
    ?assertEqual(timeout, ?C:recv_json(A, 200)),
    ?assertEqual(timeout, ?C:recv_json(B, 100)).

%% Phoenix V2 binary frames (see hornbeam_binary_msg): a client push of
%% bytes reaches the handler as `bytes'; its bytes go back as binary frames.
python_handlers_take_and_give_bytes_in_binary_frames(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:b">>, #{}),
    _ = join(B, <<"1">>, <<"room:b">>, #{}),
    Bytes = <<"ab", 0, 255>>,
    ok = ?C:send_frame(A, 2, <<0, 1, 1, 6, 5, "1", "2", "room:b", "bytes", Bytes/binary>>),
    %% to A: the broadcast (kind 2), the push (kind 0), then the reply (kind 1)
    ?assertEqual(<<2, 6, 9, "room:b", "bytes_out", 255, 0, "ba">>, recv_binary(A)),
    ?assertEqual(<<0, 1, 6, 12, "1", "room:b", "bytes_pushed", Bytes/binary, "!">>, recv_binary(A)),
    ?assertEqual(<<1, 1, 1, 6, 2, "1", "2", "room:b", "ok", "AB", 0, 255>>, recv_binary(A)),
    ?assertEqual(<<2, 6, 9, "room:b", "bytes_out", 255, 0, "ba">>, recv_binary(B)),
    %% the same event with a JSON payload gets a dict, not bytes
    ?assertMatch([_, <<"3">>, _, _, #{<<"status">> := <<"error">>,
                                      <<"response">> := #{<<"reason">> := <<"expected bytes, got dict">>}}],
                 push(A, <<"1">>, <<"3">>, <<"room:b">>, <<"bytes">>, #{})).

%% The next binary frame, skipping text frames (presence_state).
recv_binary(C) ->
    case ?C:recv(C, 10000) of
        {binary, Bin} -> Bin;
        {text, _} -> recv_binary(C);
        Other -> ct:fail({no_binary_frame, Other})
    end.

os_exit_in_a_handler_errors_that_request_only(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:e">>, #{}),
    _ = join(B, <<"1">>, <<"room:f">>, #{}),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"error">>,
                                      <<"response">> := #{<<"reason">> := <<"worker_crashed">>}}],
                 push(A, <<"1">>, <<"2">>, <<"room:e">>, <<"exit">>, #{})),
    %% the channel keeps its state and works once the worker is back
    ?assertMatch([_, <<"3">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 1}}],
                 push(A, <<"1">>, <<"3">>, <<"room:e">>, <<"reply">>, #{}, 10000)),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"ok">>}],
                 push(B, <<"1">>, <<"2">>, <<"room:f">>, <<"reply">>, #{}, 10000)),
    ?assertEqual(timeout, ?C:recv_json(B, 100)).

push(C, JoinRef, Ref, Topic, Event, Payload, Timeout) ->
    ok = ?C:push(C, JoinRef, Ref, Topic, Event, Payload),
    ?C:recv_json(C, Timeout).

endless_loop_times_out_and_worker_is_replaced(Config) ->
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:s">>, #{}),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"timeout">>}}],
                 push(C, <<"1">>, <<"2">>, <<"room:s">>, <<"spin">>, #{}, 5000)),
    ?assertMatch([_, <<"3">>, _, _, #{<<"status">> := <<"ok">>}],
                 push(C, <<"1">>, <<"3">>, <<"room:s">>, <<"reply">>, #{}, 10000)).

import_error_fails_start(_Config) ->
    _ = hornbeam:stop(),
    Result = hornbeam:start(none, #{bind => "127.0.0.1:0", channel_modules => ["fx_broken"],
                                    pythonpath => [fixtures()], workers => 1}),
    ?assertMatch({error, {python_import, <<"fx_broken">>, _, _}}, Result),
    {error, {python_import, _, Message, _}} = Result,
    ?assertMatch({match, _}, re:run(Message, "does_not_exist_xyz")),
    ?assertMatch({error, {python_import, <<"no_such_module_here">>, _, _}},
                 hornbeam:start(none, #{bind => "127.0.0.1:0", channel_modules => ["no_such_module_here"],
                                        pythonpath => [fixtures()], workers => 1})),
    %% and nothing is left running
    ?assertEqual({error, not_started}, hornbeam:stop()).

on_connect_accepts_and_refuses(Config) ->
    Port = ?config(port, Config),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?token=bad")),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?token=crash")),
    {ok, C} = ?C:connect(Port, "/ws?token=good"),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"ok">>,
                                <<"response">> := #{<<"assigns">> := #{<<"user_id">> := 7}}}],
                 join(C, <<"1">>, <<"room:c">>, #{<<"mode">> => <<"socket_info">>})),
    %% phoenix.js's authToken reaches connect_info["auth_token"], decoded
    Bearer = fun(Encoded) -> [{"Sec-WebSocket-Protocol", ["phoenix, base64url.bearer.phx.", Encoded]}] end,
    {ok, D} = ?C:connect(Port, "/ws?token=bearer", Bearer("czNjcmV0LXRva2Vu")),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"ok">>,
                                <<"response">> := #{<<"assigns">> := #{<<"user_id">> := 8}}}],
                 join(D, <<"1">>, <<"room:c">>, #{<<"mode">> => <<"socket_info">>})),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?token=bearer", Bearer("b3RoZXI"))),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?token=bearer")),
    ?assertMatch({error, {status, 400, _}}, ?C:connect(Port, "/ws?token=bearer", Bearer("@@@@"))).

presence_from_python(Config) ->
    A = connect(Config), B = connect(Config),
    ok = ?C:push(A, <<"1">>, <<"1">>, <<"lobby:1">>, <<"phx_join">>, #{<<"name">> => <<"ana">>}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(A, 5000),
    [_, _, _, <<"presence_state">>, StateA] = ?C:recv_all_json(A, 5000),
    ?assertMatch(#{<<"user:ana">> := #{<<"metas">> := [#{<<"status">> := <<"online">>}]}}, StateA),
    ok = ?C:push(B, <<"1">>, <<"1">>, <<"lobby:1">>, <<"phx_join">>, #{<<"name">> => <<"ben">>}),
    [_, _, _, <<"phx_reply">>, _] = ?C:recv_all_json(B, 5000),
    [_, _, _, <<"presence_state">>, StateB] = ?C:recv_all_json(B, 5000),
    ?assertEqual([<<"user:ana">>, <<"user:ben">>], lists:sort(maps:keys(StateB))),
    ?assertMatch([_, _, _, <<"presence_diff">>, #{<<"joins">> := #{<<"user:ben">> := _}}], ?C:recv_json(A)),
    %% update: one diff with the leave of the old ref and the join of the new
    ?assertMatch([_, <<"2">>, _, <<"phx_reply">>, _], reply_of(B, <<"1">>, <<"2">>, <<"lobby:1">>, <<"status">>, #{<<"status">> => <<"away">>})),
    ?assertMatch([_, _, _, <<"presence_diff">>,
                  #{<<"joins">> := #{<<"user:ben">> := #{<<"metas">> := [#{<<"status">> := <<"away">>, <<"phx_ref_prev">> := _}]}},
                    <<"leaves">> := #{<<"user:ben">> := _}}], ?C:recv_json(A)),
    %% errors are ValueErrors with a clear message
    [_, _, _, _, #{<<"response">> := #{<<"error">> := Dup}}] = reply_of(B, <<"1">>, <<"3">>, <<"lobby:1">>, <<"track_again">>, #{}),
    ?assertMatch({match, _}, re:run(Dup, "already tracked")),
    [_, _, _, _, #{<<"response">> := #{<<"error">> := Unknown}}] = reply_of(B, <<"1">>, <<"4">>, <<"lobby:1">>, <<"update_unknown">>, #{}),
    ?assertMatch({match, _}, re:run(Unknown, "not tracked")),
    [_, _, _, _, #{<<"response">> := Read}] = reply_of(B, <<"1">>, <<"5">>, <<"lobby:1">>, <<"read">>, #{}),
    ?assertMatch(#{<<"list">> := #{<<"user:ana">> := _, <<"user:ben">> := _},
                   <<"me">> := #{<<"metas">> := [#{<<"status">> := <<"away">>}]}, <<"nobody">> := null}, Read),
    %% untrack, then a disconnect: leaves
    _ = reply_of(B, <<"1">>, <<"6">>, <<"lobby:1">>, <<"untrack">>, #{}),
    ?assertMatch([_, _, _, <<"presence_diff">>, #{<<"leaves">> := #{<<"user:ben">> := _}}], ?C:recv_json(A)),
    C = connect(Config),
    ok = ?C:push(C, <<"1">>, <<"1">>, <<"lobby:1">>, <<"phx_join">>, #{<<"name">> => <<"cy">>}),
    [_, _, _, <<"phx_reply">>, _] = ?C:recv_json(C),
    ?assertMatch([_, _, _, <<"presence_diff">>, #{<<"joins">> := #{<<"user:cy">> := _}}], ?C:recv_json(A)),
    ok = ?C:close(C),
    ?assertMatch([_, _, _, <<"presence_diff">>, #{<<"leaves">> := #{<<"user:cy">> := _}}], ?C:recv_json(A)).

%% max_presence_meta_size (1000 here) and max_presences_per_socket (5): the
%% handler's Presence calls raise ValueError naming the limit.
presence_limits_raise_value_error_in_python(Config) ->
    A = connect(Config),
    ok = ?C:push(A, <<"1">>, <<"1">>, <<"lobby:lim">>, <<"phx_join">>, #{<<"name">> => <<"ana">>}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(A, 5000),
    [_, _, _, _, #{<<"response">> := Errors}] =
        reply_of(A, <<"1">>, <<"2">>, <<"lobby:lim">>, <<"over_limits">>,
                 #{<<"meta_bytes">> => 2000, <<"keys">> => 10}),
    ?assertMatch(#{<<"meta">> := _, <<"per_socket">> := _}, Errors),
    ?assertMatch({match, _}, re:run(maps:get(<<"meta">>, Errors), "max_presence_meta_size")),
    ?assertMatch({match, _}, re:run(maps:get(<<"per_socket">>, Errors), "max_presences_per_socket")),
    %% the join's own presence and 4 extra: 5 in all
    ?assertEqual(5, map_size(hornbeam_presence:list(<<"lobby:lim">>))).

%% Push and wait for its reply, skipping the presence diffs in between.
reply_of(C, JoinRef, Ref, Topic, Event, Payload) ->
    ok = ?C:push(C, JoinRef, Ref, Topic, Event, Payload),
    skip_to_reply(C, Ref).

skip_to_reply(C, Ref) ->
    case ?C:recv_json(C) of
        [_, Ref, _, <<"phx_reply">>, _] = Reply -> Reply;
        [_, _, _, <<"presence_diff">>, _] -> skip_to_reply(C, Ref);
        Other -> Other
    end.

%% The issue's call as a user types it in a shell started in the app's
%% directory: no pythonpath (it defaults to "."), e2e_chat has no `app'.
start_serves_a_module_without_app_as_channels_only(_Config) ->
    {ok, Cwd} = file:get_cwd(),
    ok = file:set_cwd(fixtures()),
    try
        ok = hornbeam:start("e2e_chat:app", #{worker_class => asgi, channel_modules => ["e2e_chat"],
                                              bind => "127.0.0.1:0", workers => 1}),
        ?assertNot(hornbeam_python:has_http_app()),
        C = connect([{port, hornbeam:port()}]),
        ?assertMatch([_, _, <<"chat:lobby">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                     join(C, <<"1">>, <<"chat:lobby">>, #{<<"username">> => <<"Alice">>})),
        ?assertMatch({404, _}, http_get(hornbeam:port(), "/")),
        ?assertMatch({200, _}, http_get(hornbeam:port(), "/hornbeam.js"))
    after
        ok = file:set_cwd(Cwd)
    end.

start_refuses_bad_apps_with_a_reason(_Config) ->
    Base = #{bind => "127.0.0.1:0", workers => 1, pythonpath => [fixtures()]},
    ?assertEqual({error, {bad_app, <<"asgi_echo:ROUTES">>,
                          <<"asgi_echo:ROUTES is a dict, not a callable ASGI/WSGI app">>}},
                 hornbeam:start("asgi_echo:ROUTES", Base)),
    ?assertMatch({error, {bad_app, <<"fx_connect:app">>, _}}, hornbeam:start("fx_connect:app", Base)),
    ?assertEqual({error, {python_not_found, "/no/such/python3"}},
                 hornbeam:start("e2e_chat:app", Base#{python => "/no/such/python3"})),
    ?assertEqual({error, not_started}, hornbeam:stop()).

http_get(Port, Path) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(S, ["GET ", Path, " HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"]),
    {ok, <<"HTTP/1.1 ", Status:3/binary, _/binary>> = Resp} = gen_tcp:recv(S, 0, 30000),
    gen_tcp:close(S),
    {binary_to_integer(Status), Resp}.

%% ---------------------------------------------------------------------------
%% the handler thread pool (workers => 1 throughout)
%% ---------------------------------------------------------------------------

a_sleeping_sync_handler_does_not_delay_another_channel_with_one_worker(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:slow">>, #{}),
    _ = join(B, <<"1">>, <<"room:fast">>, #{}),
    T0 = erlang:monotonic_time(millisecond),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:slow">>, <<"sleep_sync">>, #{<<"ms">> => 1500}),
    timer:sleep(100),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 1}}],
                 push(B, <<"1">>, <<"2">>, <<"room:fast">>, <<"reply">>, #{})),
    ct:pal("the other channel's reply came after ~b ms", [erlang:monotonic_time(millisecond) - T0]),
    %% the sleeper has not answered yet
    ?assertEqual(timeout, ?C:recv_json(A, 0)),
    ?assertMatch([_, <<"2">>, _, _, #{<<"response">> := #{<<"slept">> := 1500}}], ?C:recv_json(A, 5000)).

events_of_one_channel_run_one_at_a_time_on_the_thread_pool(Config) ->
    %% a slow event then a fast one on the same channel: the fast one waits
    %% for the slow one (the channel process calls one at a time), though
    %% free threads could have run it at once
    C = connect(Config),
    _ = join(C, <<"1">>, <<"room:q">>, #{}),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:q">>, <<"sleep_sync">>, #{<<"ms">> => 400}),
    ok = ?C:push(C, <<"1">>, <<"3">>, <<"room:q">>, <<"reply">>, #{}),
    ok = ?C:push(C, <<"1">>, <<"4">>, <<"room:q">>, <<"sleep_sync">>, #{<<"ms">> => 100}),
    ok = ?C:push(C, <<"1">>, <<"5">>, <<"room:q">>, <<"reply">>, #{}),
    Got = [begin [_, Ref, _, <<"phx_reply">>, _] = ?C:recv_json(C, 5000), Ref end
           || _ <- [1, 2, 3, 4]],
    ?assertEqual([<<"2">>, <<"3">>, <<"4">>, <<"5">>], Got).

an_async_handler_waiting_on_presence_does_not_delay_another_channel(Config) ->
    A = connect(Config), B = connect(Config),
    ok = ?C:push(A, <<"1">>, <<"1">>, <<"lobby:w">>, <<"phx_join">>, #{<<"name">> => <<"ana">>}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(A, 5000),
    [_, _, _, <<"presence_state">>, _] = ?C:recv_all_json(A, 5000),
    _ = join(B, <<"1">>, <<"room:w">>, #{}),
    %% hold the presence shard: the async handler's update_async waits on it
    Shard = hornbeam_presence_shard:whereis_shard(hornbeam_presence:shard(<<"lobby:w">>)),
    ok = sys:suspend(Shard),
    try
        ok = ?C:push(A, <<"1">>, <<"2">>, <<"lobby:w">>, <<"status_async">>, #{<<"status">> => <<"away">>}),
        timer:sleep(200),
        %% another channel on the same (only) worker: answered at once, by a
        %% sync handler and by an async one on the loop
        ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"ok">>}],
                     push(B, <<"1">>, <<"2">>, <<"room:w">>, <<"reply">>, #{})),
        ?assertMatch([_, <<"3">>, _, _, #{<<"response">> := #{<<"async">> := true}}],
                     push(B, <<"1">>, <<"3">>, <<"room:w">>, <<"async_reply">>, #{})),
        ?assertEqual(timeout, ?C:recv_json(A, 0))
    after
        sys:resume(Shard)
    end,
    ?assertMatch([_, <<"2">>, _, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>,
                    <<"response">> := #{<<"me">> := #{<<"metas">> := [#{<<"status">> := <<"away">>}]},
                                        <<"count">> := 1}}],
                 skip_to_reply(A, <<"2">>)).

overloaded_worker_answers_events_and_joins_with_an_error(Config) ->
    %% threads => 1, max_queued_calls => 0
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"1">>, <<"room:busy">>, #{}),
    _ = join(B, <<"1">>, <<"room:other">>, #{}),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:busy">>, <<"sleep_sync">>, #{<<"ms">> => 1000}),
    timer:sleep(200),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"error">>,
                                      <<"response">> := #{<<"reason">> := <<"overloaded">>}}],
                 push(B, <<"1">>, <<"2">>, <<"room:other">>, <<"reply">>, #{})),
    ?assertMatch([_, _, _, _, #{<<"status">> := <<"error">>,
                                <<"response">> := #{<<"reason">> := <<"overloaded">>}}],
                 join(B, <<"3">>, <<"room:new">>, #{})),
    %% async handlers do not wait for a thread: still answered
    ?assertMatch([_, <<"4">>, _, _, #{<<"status">> := <<"ok">>}],
                 push(B, <<"1">>, <<"4">>, <<"room:other">>, <<"async_reply">>, #{})),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"ok">>}], ?C:recv_json(A, 5000)),
    %% the one thread sends the sleeper's result just before it counts itself
    %% free again; with no queue allowed, give it that moment
    timer:sleep(100),
    %% the channel that was refused keeps its state and works again
    ?assertMatch([_, <<"5">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 1}}],
                 push(B, <<"1">>, <<"5">>, <<"room:other">>, <<"reply">>, #{})).

overloaded_worker_refuses_a_connect_with_503(Config) ->
    %% threads => 1, max_queued_calls => 0, a sync @on_connect
    Port = ?config(port, Config),
    {ok, A} = ?C:connect(Port, "/ws?token=good"),
    _ = join(A, <<"1">>, <<"room:busy">>, #{}),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:busy">>, <<"sleep_sync">>, #{<<"ms">> => 1000}),
    timer:sleep(200),
    ?assertMatch({error, {status, 503, _}}, ?C:connect(Port, "/ws?token=good")),
    ?assertMatch([_, <<"2">>, _, _, #{<<"status">> := <<"ok">>}], ?C:recv_json(A, 5000)),
    {ok, _} = ?C:connect(Port, "/ws?token=good").

%% A channel monitors its worker process once, not per call
%% (hornbeam_python:channel_call/2). When that process dies between two
%% events, the channel's 'DOWN' is recognised as the monitor's (never
%% passed to Python's on_info, never logged as a dropped message), and the
%% next event goes to the restarted worker with the channel's state kept.
a_channel_outlives_its_worker_process(Config) ->
    ok = logger:add_handler(hb_dropped_capture, ?MODULE, #{config => #{pid => self()}, level => all}),
    try
        C = connect(Config),
        _ = join(C, <<"1">>, <<"room:w">>, #{}),
        ?assertMatch([_, <<"2">>, _, _, #{<<"response">> := #{<<"n">> := 1}}],
                     push(C, <<"1">>, <<"2">>, <<"room:w">>, <<"reply">>, #{})),
        Old = whereis(hornbeam_py_worker_1),
        exit(Old, kill),
        ok = wait_for_new_worker(Old, 100),
        ?assertMatch([_, <<"3">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 2}}],
                     push(C, <<"1">>, <<"3">>, <<"room:w">>, <<"reply">>, #{}, 10000)),
        %% and once more: the channel now watches the new worker process
        Second = whereis(hornbeam_py_worker_1),
        exit(Second, kill),
        ok = wait_for_new_worker(Second, 100),
        ?assertMatch([_, <<"4">>, _, _, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"n">> := 3}}],
                     push(C, <<"1">>, <<"4">>, <<"room:w">>, <<"reply">>, #{}, 10000)),
        receive {dropped_log, Msg} -> ct:fail({down_reached_python, Msg})
        after 200 -> ok
        end
    after
        logger:remove_handler(hb_dropped_capture)
    end.

wait_for_new_worker(_Old, 0) ->
    {error, no_new_worker};
wait_for_new_worker(Old, N) ->
    case whereis(hornbeam_py_worker_1) of
        Pid when is_pid(Pid), Pid =/= Old ->
            case [W || W = #{status := ready} <- hornbeam_python:workers()] of
                [_] -> ok;
                _ -> timer:sleep(100), wait_for_new_worker(Old, N - 1)
            end;
        _ ->
            timer:sleep(100),
            wait_for_new_worker(Old, N - 1)
    end.

log(#{msg := {Format, Args}}, #{config := #{pid := Pid}}) when is_list(Format) ->
    Msg = lists:flatten(io_lib:format(Format, Args)),
    case string:find(Msg, "dropped") of
        nomatch -> ok;
        _ -> Pid ! {dropped_log, Msg}
    end;
log(_, _) ->
    ok.
