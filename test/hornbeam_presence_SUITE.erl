%% Presence on one node, through real WebSocket clients: presence_state on
%% join, presence_diff for track/update/untrack/exit, two tabs under one key,
%% the Erlang API, diff coalescing.
-module(hornbeam_presence_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [join_gets_presence_state_with_everyone, track_is_a_join_diff_for_others,
     update_carries_phx_ref_prev, untrack_and_channel_exit_are_leave_diffs,
     two_tabs_under_one_key_are_two_metas, erlang_api_list_get_and_errors,
     diff_interval_coalesces_a_flood, diff_interval_sends_a_lone_change_at_once,
     presence_limits_give_clear_errors].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    application:stop(hornbeam).

init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    Extra = case TC of
                diff_interval_coalesces_a_flood -> #{presence_diff_interval => 300};
                diff_interval_sends_a_lone_change_at_once -> #{presence_diff_interval => 300};
                presence_limits_give_clear_errors -> #{max_presence_meta_size => 64,
                                                       max_presences_per_socket => 3,
                                                       max_presences_per_topic => 5};
                _ -> #{}
            end,
    ok = hornbeam:start(none, Extra#{bind => "127.0.0.1:0",
                                     channels => [{<<"room:*">>, hornbeam_test_channel}]}),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

connect(Config) ->
    {ok, C} = ?C:connect(?config(port, Config), "/ws?vsn=2.0.0"),
    C.

%% Join tracking Key; returns the presence_state the server pushed.
join_tracking(C, Topic, Key, Meta) ->
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>,
                 #{<<"mode">> => <<"track">>, <<"key">> => Key, <<"meta">> => Meta}),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(C, 5000),
    [<<"1">>, null, Topic, <<"presence_state">>, State] = ?C:recv_all_json(C, 5000),
    State.

next_diff(C) ->
    case ?C:recv_json(C) of
        [_, _, _, <<"presence_diff">>, Diff] -> Diff;
        Other -> ct:fail({expected_presence_diff, Other})
    end.

join_gets_presence_state_with_everyone(Config) ->
    A = connect(Config),
    StateA = join_tracking(A, <<"room:p">>, <<"user:ana">>, #{<<"status">> => <<"online">>}),
    ?assertMatch(#{<<"user:ana">> := #{<<"metas">> := [#{<<"status">> := <<"online">>, <<"phx_ref">> := _}]}}, StateA),
    B = connect(Config),
    StateB = join_tracking(B, <<"room:p">>, <<"user:ben">>, #{}),
    ?assertEqual([<<"user:ana">>, <<"user:ben">>], lists:sort(maps:keys(StateB))).

track_is_a_join_diff_for_others(Config) ->
    A = connect(Config),
    _ = join_tracking(A, <<"room:d">>, <<"user:ana">>, #{}),
    B = connect(Config),
    _ = join_tracking(B, <<"room:d">>, <<"user:ben">>, #{<<"n">> => 1}),
    ?assertMatch(#{<<"joins">> := #{<<"user:ben">> := #{<<"metas">> := [#{<<"n">> := 1}]}},
                   <<"leaves">> := L} when map_size(L) =:= 0, next_diff(A)).

update_carries_phx_ref_prev(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join_tracking(A, <<"room:u">>, <<"user:ana">>, #{}),
    StateB = join_tracking(B, <<"room:u">>, <<"user:ben">>, #{<<"status">> => <<"online">>}),
    #{<<"user:ben">> := #{<<"metas">> := [#{<<"phx_ref">> := Ref0}]}} = StateB,
    _ = next_diff(A),   %% ben's join
    ok = ?C:push(B, <<"1">>, <<"2">>, <<"room:u">>, <<"presence_update">>, #{<<"status">> => <<"away">>}),
    Diff = next_diff(A),
    ?assertMatch(#{<<"joins">> := #{<<"user:ben">> := #{<<"metas">> := [#{<<"status">> := <<"away">>,
                                                                          <<"phx_ref_prev">> := Ref0}]}},
                   <<"leaves">> := #{<<"user:ben">> := #{<<"metas">> := [#{<<"phx_ref">> := Ref0}]}}}, Diff),
    ?assertMatch(#{<<"metas">> := [#{<<"status">> := <<"away">>}]},
                 hornbeam_presence:get(<<"room:u">>, <<"user:ben">>)).

untrack_and_channel_exit_are_leave_diffs(Config) ->
    A = connect(Config), B = connect(Config), C = connect(Config),
    _ = join_tracking(A, <<"room:l">>, <<"user:ana">>, #{}),
    _ = join_tracking(B, <<"room:l">>, <<"user:ben">>, #{}),
    _ = next_diff(A),
    _ = join_tracking(C, <<"room:l">>, <<"user:cy">>, #{}),
    _ = next_diff(A),
    ok = ?C:push(B, <<"1">>, <<"2">>, <<"room:l">>, <<"presence_untrack">>, #{}),
    ?assertMatch(#{<<"leaves">> := #{<<"user:ben">> := _}}, next_diff(A)),
    ok = ?C:close(C),
    ?assertMatch(#{<<"leaves">> := #{<<"user:cy">> := _}}, next_diff(A)),
    ?assertEqual([<<"user:ana">>], maps:keys(hornbeam_presence:list(<<"room:l">>))).

two_tabs_under_one_key_are_two_metas(Config) ->
    W = connect(Config),
    _ = join_tracking(W, <<"room:t">>, <<"user:watcher">>, #{}),
    Tab1 = connect(Config), Tab2 = connect(Config),
    _ = join_tracking(Tab1, <<"room:t">>, <<"user:ana">>, #{<<"tab">> => 1}),
    _ = next_diff(W),
    _ = join_tracking(Tab2, <<"room:t">>, <<"user:ana">>, #{<<"tab">> => 2}),
    _ = next_diff(W),
    #{<<"metas">> := Metas} = hornbeam_presence:get(<<"room:t">>, <<"user:ana">>),
    ?assertEqual(2, length(Metas)),
    ok = ?C:close(Tab1),
    #{<<"leaves">> := #{<<"user:ana">> := #{<<"metas">> := [Left]}}} = next_diff(W),
    ?assertMatch(#{<<"tab">> := 1}, Left),
    ?assertMatch(#{<<"metas">> := [#{<<"tab">> := 2}]}, hornbeam_presence:get(<<"room:t">>, <<"user:ana">>)).

erlang_api_list_get_and_errors(Config) ->
    Owner = spawn(fun() -> receive stop -> ok end end),
    ok = hornbeam_presence:track(Owner, <<"room:api">>, <<"k">>, #{<<"a">> => 1}),
    ?assertEqual({error, already_tracked}, hornbeam_presence:track(Owner, <<"room:api">>, <<"k">>, #{})),
    ?assertEqual({error, not_tracked}, hornbeam_presence:update(Owner, <<"room:api">>, <<"nope">>, #{})),
    ?assertMatch({error, _}, hornbeam_presence:track(Owner, <<"room:api">>, <<"bad">>, [not_a_map])),
    ?assertMatch(#{<<"k">> := #{<<"metas">> := [#{<<"a">> := 1}]}}, hornbeam_presence:list(<<"room:api">>)),
    ?assertEqual(undefined, hornbeam_presence:get(<<"room:api">>, <<"other">>)),
    ok = hornbeam_presence:untrack(Owner, <<"room:api">>, <<"k">>),
    ?assertEqual(#{}, hornbeam_presence:list(<<"room:api">>)),
    ok = hornbeam_presence:track(Owner, <<"room:api">>, <<"k2">>, {json, <<"{\"b\":2}">>}),
    Owner ! stop,
    ok = wait_until(fun() -> hornbeam_presence:list(<<"room:api">>) =:= #{} end),
    C = connect(Config),
    _ = join_tracking(C, <<"room:api2">>, <<"k">>, #{}),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:api2">>, <<"presence_track_again">>, #{}),
    ?assertMatch([_, <<"2">>, _, <<"phx_reply">>, #{<<"status">> := <<"error">>,
                                                    <<"response">> := #{<<"reason">> := <<"already_tracked">>}}],
                 ?C:recv_json(C)).

%% max_presence_meta_size (64 bytes here), max_presences_per_socket (3) and
%% max_presences_per_topic (5): each refusal is its own {error, Reason}, the
%% presence is not tracked, and the room frees up when presences leave.
presence_limits_give_clear_errors(_Config) ->
    Owner = fun() -> spawn(fun() -> receive stop -> ok end end) end,
    T = <<"room:lim">>,
    A = Owner(),
    Big = #{<<"bio">> => binary:copy(<<"x">>, 100)},
    ?assertEqual({error, meta_too_large}, hornbeam_presence:track(A, T, <<"a1">>, Big)),
    ?assertEqual({error, meta_too_large},
                 hornbeam_presence:track(A, T, <<"a1">>, {json, json_meta_of_size(100)})),
    ?assertEqual(undefined, hornbeam_presence:get(T, <<"a1">>)),
    ok = hornbeam_presence:track(A, T, <<"a1">>, #{<<"n">> => 1}),
    ?assertEqual({error, meta_too_large}, hornbeam_presence:update(A, T, <<"a1">>, Big)),
    ?assertMatch(#{<<"metas">> := [#{<<"n">> := 1}]}, hornbeam_presence:get(T, <<"a1">>)),
    %% Per socket (owner): the 4th is refused, on any topic; an untrack frees a slot.
    ok = hornbeam_presence:track(A, T, <<"a2">>, #{}),
    ok = hornbeam_presence:track(A, <<"room:other">>, <<"a3">>, #{}),
    ?assertEqual({error, too_many_presences_per_socket}, hornbeam_presence:track(A, T, <<"a4">>, #{})),
    ok = hornbeam_presence:untrack(A, <<"room:other">>, <<"a3">>),
    ok = hornbeam_presence:track(A, T, <<"a3">>, #{}),
    %% Per topic: A has 3 on T, B adds 2, C is refused there but not elsewhere.
    B = Owner(),
    ok = hornbeam_presence:track(B, T, <<"b1">>, #{}),
    ok = hornbeam_presence:track(B, T, <<"b2">>, #{}),
    C = Owner(),
    ?assertEqual({error, too_many_presences_per_topic}, hornbeam_presence:track(C, T, <<"c1">>, #{})),
    ok = hornbeam_presence:track(C, <<"room:other">>, <<"c1">>, #{}),
    ?assertEqual(5, map_size(hornbeam_presence:list(T))),
    %% B's exit frees two places on T.
    B ! stop,
    ok = wait_until(fun() -> map_size(hornbeam_presence:list(T)) =:= 3 end),
    ok = hornbeam_presence:track(C, T, <<"c2">>, #{}),
    [P ! stop || P <- [A, C]].

%% A JSON object of about N bytes.
json_meta_of_size(N) ->
    <<"{\"pad\":\"", (binary:copy(<<"p">>, N))/binary, "\"}">>.

%% presence_diff_interval: a flood of joins inside one interval reaches a
%% watcher as one merged diff instead of one per join.
diff_interval_coalesces_a_flood(Config) ->
    W = connect(Config),
    _ = join_tracking(W, <<"room:f">>, <<"user:watcher">>, #{}),
    Owners = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 20)],
    [ok = hornbeam_presence:track(O, <<"room:f">>, integer_to_binary(I), #{})
     || {I, O} <- lists:zip(lists:seq(1, 20), Owners)],
    #{<<"joins">> := Joins} = next_diff(W),
    %% the 20 joins (and the watcher's own, still inside the interval) in one diff
    [?assert(maps:is_key(integer_to_binary(I), Joins)) || I <- lists:seq(1, 20)],
    ?assertEqual(timeout, ?C:recv_json(W, 500)).

%% The interval is a throttle with a leading edge: the first change of a
%% quiet topic goes out at once, changes inside the window that opens then
%% go out merged when it ends, and a quiet window re-arms the leading edge.
diff_interval_sends_a_lone_change_at_once(Config) ->
    W = connect(Config),
    _ = join_tracking(W, <<"room:t">>, <<"user:watcher">>, #{}),
    timer:sleep(400),                  % the watcher's own window ends quietly
    Owners = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 4)],
    Track = fun(I) -> ok = hornbeam_presence:track(lists:nth(I, Owners), <<"room:t">>, integer_to_binary(I), #{}) end,
    T0 = erlang:monotonic_time(millisecond),
    Track(1),
    ?assertEqual([<<"1">>], maps:keys(maps:get(<<"joins">>, next_diff(W)))),
    Lead = erlang:monotonic_time(millisecond) - T0,
    ?assert(Lead < 200),               % not held for the 300 ms window
    Track(2), Track(3),
    ?assertEqual([<<"2">>, <<"3">>], lists:sort(maps:keys(maps:get(<<"joins">>, next_diff(W))))),
    Trail = erlang:monotonic_time(millisecond) - T0,
    ?assert(Trail >= 250),             % sent when the window ended
    timer:sleep(700),                  % a quiet window after the merged one
    T1 = erlang:monotonic_time(millisecond),
    Track(4),
    ?assertEqual([<<"4">>], maps:keys(maps:get(<<"joins">>, next_diff(W)))),
    ?assert(erlang:monotonic_time(millisecond) - T1 < 200),
    [O ! stop || O <- Owners],
    ok.

wait_until(Fun) -> wait_until(Fun, 100).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.
