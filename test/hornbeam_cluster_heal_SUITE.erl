%% A cluster that heals, on real Erlang nodes (OTP `peer'): `join' keeps
%% reconnecting after a partition (erlang:disconnect_node/1) and after a
%% peer is killed and started again; `join_dns' finds peers by DNS name;
%% presences of a killed node leave at once (distribution saw it go), those
%% of a gracefully stopped node too (goodbye), long before `down_period'.
%%
%% The peers run with `-connect_all false' and are driven over their stdio
%% (peer:call), so nothing but hornbeam_cluster connects them to each other:
%% neither global's mesh nor the CT node's own connections. WebSocket
%% clients connect from the CT node over TCP.
-module(hornbeam_cluster_heal_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(PERIOD, 200).
%% Long on purpose: every leave these cases wait for must come from the
%% node-down / goodbye paths, never from the heartbeat timeout.
-define(DOWN, 30000).
-define(RETRY, 300).

suite() -> [{timetrap, {minutes, 3}}].

all() ->
    [join_reconnects_after_a_partition,
     presence_removed_during_a_partition_never_comes_back,
     killed_peer_presences_leave_at_once_and_its_restart_rejoins,
     graceful_stop_presences_leave_at_once,
     hornbeam_stop_presences_leave_at_once,
     join_dns_resolves_peers,
     bad_join_options_are_errors].

init_per_suite(Config) ->
    case node() of
        nonode@nohost -> {skip, needs_a_distributed_ct_node};
        _ -> Config
    end.

end_per_suite(_Config) ->
    ok.

end_per_testcase(_Case, _Config) ->
    [catch peer:stop(Pid) || {{peer, _}, Pid} <- get()],
    ok.

%% --- peers ------------------------------------------------------------------

%% Start a peer named Name@127.0.0.1 serving hornbeam with Opts (join...).
start_peer(Name, Opts) ->
    Dirs = lists:usort([filename:dirname(code:which(M))
                        || M <- [hornbeam, hornbeam_test_channel, hornbeam_ws_client, ?MODULE]]),
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()), "-connect_all", "false",
            "-kernel", "prevent_overlapping_partitions", "false"]
           ++ lists:append([["-pa", D] || D <- Dirs]),
    {ok, Pid, Node} = peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                                   args => Args, connection => standard_io,
                                   shutdown => 15000}),
    put({peer, Node}, Pid),
    Port = peer:call(Pid, ?MODULE, serve, [Opts], 60000),
    {Pid, Node, Port}.

%% Runs on the peer.
serve(Opts) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    ok = hornbeam:start(none, maps:merge(#{bind => "127.0.0.1:0", broadcast_period => ?PERIOD,
                                           down_period => ?DOWN, permdown_period => 60000,
                                           channels => [{<<"room:*">>, hornbeam_test_channel}]},
                                         Opts)),
    hornbeam:port().

call(Pid, M, F, A) -> peer:call(Pid, M, F, A, 30000).

connected(Pid, Node) -> lists:member(Node, call(Pid, erlang, nodes, [])).

keys(Pid, Topic) ->
    lists:sort(maps:keys(call(Pid, hornbeam_presence, list, [Topic]))).

name(Base) -> list_to_atom(peer:random_name(Base)).

%% --- clients ------------------------------------------------------------------

track_client(Port, Topic, Key) ->
    {ok, C} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>,
                 #{<<"mode">> => <<"track">>, <<"key">> => Key, <<"meta">> => #{}}),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(C, 10000),
    [<<"1">>, null, Topic, <<"presence_state">>, State] = ?C:recv_all_json(C, 10000),
    {C, State}.

%% The first presence_diff on C where Key is in Kind (joins | leaves), and
%% how long it took from T0.
until_diff(C, Kind, Key, T0) ->
    case ?C:recv_json(C, 15000) of
        [_, _, _, <<"presence_diff">>, #{Kind := #{Key := _}}] ->
            erlang:monotonic_time(millisecond) - T0;
        timeout ->
            ct:fail({no_presence_diff, Kind, Key});
        _ ->
            until_diff(C, Kind, Key, T0)
    end.

%% --- cases ------------------------------------------------------------------

join_reconnects_after_a_partition(_Config) ->
    {PA, A, PortA} = start_peer(name(heal_a), #{}),
    {PB, B, PortB} = start_peer(name(heal_b), #{join => [A], join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PA, B) end, 10000),
    {_CA, _} = track_client(PortA, <<"room:p">>, <<"user:a">>),
    {CB, _} = track_client(PortB, <<"room:p">>, <<"user:b">>),
    ok = wait_until(fun() -> keys(PA, <<"room:p">>) =:= [<<"user:a">>, <<"user:b">>] andalso
                                 keys(PB, <<"room:p">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000),

    %% Cut the connection (from A's side: A has no join of its own).
    T0 = erlang:monotonic_time(millisecond),
    true = call(PA, erlang, disconnect_node, [B]),
    Left = until_diff(CB, <<"leaves">>, <<"user:a">>, T0),
    ok = wait_until(fun() -> connected(PA, B) end, 10000),
    Healed = erlang:monotonic_time(millisecond) - T0,
    Back = until_diff(CB, <<"joins">>, <<"user:a">>, T0),
    ct:pal("partition: A's presence left B after ~b ms, nodes reconnected after ~b ms, "
           "presence back after ~b ms (retry interval ~b ms)", [Left, Healed, Back, ?RETRY]),
    ?assert(Left < 2000),

    %% Broadcasts cross again, and presence is the same on both sides.
    ok = wait_until(fun() -> length(call(PA, pg, get_members, [hornbeam, {topic, <<"room:p">>}])) =:= 2 end,
                    10000),
    ok = call(PA, hornbeam, broadcast, [<<"room:p">>, <<"news">>, #{<<"n">> => 1}]),
    ?assertEqual([null, null, <<"room:p">>, <<"news">>, #{<<"n">> => 1}], next_broadcast(CB)),
    ok = wait_until(fun() -> keys(PB, <<"room:p">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000).

%% While A and B are cut apart (repeatedly), A's client leaves. After the
%% heal B's clients must not see that presence join again, not even for a
%% moment: A's replica stays down at B until B has caught up with it.
presence_removed_during_a_partition_never_comes_back(_Config) ->
    {PA, A, PortA} = start_peer(name(heal_r), #{}),
    {PB, B, PortB} = start_peer(name(heal_q), #{join => [A], join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PA, B) end, 10000),
    {CA, _} = track_client(PortA, <<"room:r">>, <<"user:a">>),
    {CB, _} = track_client(PortB, <<"room:r">>, <<"user:b">>),
    ok = wait_until(fun() -> keys(PB, <<"room:r">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000),
    T0 = erlang:monotonic_time(millisecond),
    Cutter = spawn_link(fun() -> cut(PA, B, 20) end),
    timer:sleep(120),
    ok = ?C:close(CA),
    _ = until_diff(CB, <<"leaves">>, <<"user:a">>, T0),
    Ref = monitor(process, Cutter),
    receive {'DOWN', Ref, _, _, _} -> ok after 30000 -> ct:fail(cutter_stuck) end,
    ok = wait_until(fun() -> connected(PA, B) end, 10000),
    ok = wait_until(fun() -> keys(PB, <<"room:r">>) =:= [<<"user:b">>] end, 10000),
    ok = wait_until(fun() -> keys(PA, <<"room:r">>) =:= [<<"user:b">>] end, 10000),
    %% Nothing of user:a arrives any more (two seconds of diffs).
    ?assertEqual([], joins_of(CB, <<"user:a">>, erlang:monotonic_time(millisecond) + 2000)).

cut(_PA, _B, 0) -> ok;
cut(PA, B, N) ->
    _ = call(PA, erlang, disconnect_node, [B]),
    timer:sleep(50),
    cut(PA, B, N - 1).

%% presence_diff joins of Key received on C until Deadline.
joins_of(C, Key, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case ?C:recv_json(C, Left) of
        timeout -> [];
        [_, _, _, <<"presence_diff">>, #{<<"joins">> := #{Key := J}}] -> [J | joins_of(C, Key, Deadline)];
        _ -> joins_of(C, Key, Deadline)
    end.

killed_peer_presences_leave_at_once_and_its_restart_rejoins(_Config) ->
    AName = name(heal_k),
    {PA, A, PortA} = start_peer(AName, #{}),
    {PB, _B, PortB} = start_peer(name(heal_j), #{join => [A], join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PB, A) end, 10000),
    {_CA, _} = track_client(PortA, <<"room:k">>, <<"user:a">>),
    {CB, _} = track_client(PortB, <<"room:k">>, <<"user:b">>),
    ok = wait_until(fun() -> keys(PB, <<"room:k">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000),

    %% Killed: no terminate, no goodbye; distribution reports it down.
    T0 = erlang:monotonic_time(millisecond),
    OsPid = call(PA, os, getpid, []),
    _ = os:cmd("kill -9 " ++ OsPid),
    Left = until_diff(CB, <<"leaves">>, <<"user:a">>, T0),
    ct:pal("a killed node's presence left after ~b ms (down_period ~b ms)", [Left, ?DOWN]),
    ?assert(Left < 2000),
    catch peer:stop(PA),

    %% Started again under the same name, with no join of its own: B's
    %% hornbeam_cluster finds it again.
    T1 = erlang:monotonic_time(millisecond),
    {PA2, A, PortA2} = start_peer(AName, #{}),
    ok = wait_until(fun() -> connected(PB, A) end, 15000),
    ct:pal("the restarted node was re-joined ~b ms after its start began",
           [erlang:monotonic_time(millisecond) - T1]),
    {_CA2, StateA} = track_client(PortA2, <<"room:k">>, <<"user:a2">>),
    _ = until_diff(CB, <<"joins">>, <<"user:a2">>, T1),
    ok = wait_until(fun() -> keys(PA2, <<"room:k">>) =:= [<<"user:a2">>, <<"user:b">>] end, 10000),
    ?assertEqual([<<"user:a2">>, <<"user:b">>], keys(PB, <<"room:k">>)),
    %% The old incarnation's presence is gone everywhere, never back.
    ?assertNot(maps:is_key(<<"user:a">>, StateA)).

graceful_stop_presences_leave_at_once(_Config) ->
    {PA, A, PortA} = start_peer(name(heal_g), #{}),
    {PB, _B, PortB} = start_peer(name(heal_h), #{join => [A], join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PB, A) end, 10000),
    {_CA, _} = track_client(PortA, <<"room:g">>, <<"user:a">>),
    {CB, _} = track_client(PortB, <<"room:g">>, <<"user:b">>),
    ok = wait_until(fun() -> keys(PB, <<"room:g">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000),
    %% init:stop/0 is what SIGTERM and the release's `stop' do.
    T0 = erlang:monotonic_time(millisecond),
    ok = call(PA, init, stop, []),
    Left = until_diff(CB, <<"leaves">>, <<"user:a">>, T0),
    ct:pal("a gracefully stopped node's presence left after ~b ms", [Left]),
    ?assert(Left < 2000),
    ?assertEqual([<<"user:b">>], keys(PB, <<"room:g">>)),
    %% Forgotten, not merely down: no replica of A is kept.
    ?assertEqual([], [R || R = {{N, _}, _, _} <- replicas(PB), N =:= atom_to_binary(A)]).

hornbeam_stop_presences_leave_at_once(_Config) ->
    {PA, A, PortA} = start_peer(name(heal_s), #{}),
    {PB, _B, PortB} = start_peer(name(heal_t), #{join => [A], join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PB, A) end, 10000),
    {_CA, _} = track_client(PortA, <<"room:s">>, <<"user:a">>),
    {CB, _} = track_client(PortB, <<"room:s">>, <<"user:b">>),
    ok = wait_until(fun() -> keys(PB, <<"room:s">>) =:= [<<"user:a">>, <<"user:b">>] end, 10000),
    T0 = erlang:monotonic_time(millisecond),
    ok = call(PA, hornbeam, stop, []),
    Left = until_diff(CB, <<"leaves">>, <<"user:a">>, T0),
    ?assert(Left < 2000),
    %% The node stays in the cluster; serving again, its presences come back.
    true = connected(PB, A),
    ok = call(PA, hornbeam, start, [none, #{bind => "127.0.0.1:0", broadcast_period => ?PERIOD,
                                           channels => [{<<"room:*">>, hornbeam_test_channel}]}]),
    {_CA2, _} = track_client(call(PA, hornbeam, port, []), <<"room:s">>, <<"user:a2">>),
    _ = until_diff(CB, <<"joins">>, <<"user:a2">>, T0).

join_dns_resolves_peers(_Config) ->
    %% "base@localhost": the resolver (here /etc/hosts) says 127.0.0.1, so
    %% the target is base@127.0.0.1.
    AName = name(heal_d),
    {PA, A, _} = start_peer(AName, #{}),
    ?assertEqual([A], hornbeam_cluster:resolve(atom_to_list(AName) ++ "@localhost", "ignored")),
    ?assertEqual([], hornbeam_cluster:resolve("no-such-host.invalid", "x")),
    {PB, B, _} = start_peer(name(heal_e), #{join_dns => [atom_to_list(AName) ++ "@localhost"],
                                            join_retry_interval => ?RETRY}),
    ok = wait_until(fun() -> connected(PA, B) end, 10000),
    #{join_dns := [_], connected := Connected} = call(PB, hornbeam_cluster, targets, []),
    ?assert(lists:member(A, Connected)),
    %% And again after a cut.
    true = call(PA, erlang, disconnect_node, [B]),
    ok = wait_until(fun() -> connected(PA, B) end, 10000).

bad_join_options_are_errors(_Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    ?assertMatch({error, {bad_option, join, _}}, hornbeam_cluster:join(#{join => ["no_host"]})),
    ?assertMatch({error, {bad_option, join, _}}, hornbeam_cluster:join(#{join => "a@b"})),
    ?assertMatch({error, {bad_option, join_dns, _}}, hornbeam_cluster:join(#{join_dns => [42]})),
    ?assertMatch({error, {bad_option, join_retry_interval, 0}},
                 hornbeam_cluster:join(#{join_retry_interval => 0})),
    ?assertMatch({error, {cluster, {bad_option, join, _}}}, hornbeam:start(none, #{join => [x]})),
    ?assertEqual(ok, hornbeam_cluster:join(#{})),
    ?assertMatch(#{join := [], join_dns := []}, hornbeam_cluster:targets()).

%% --- helpers ----------------------------------------------------------------------

%% Every presence replica the shards of a peer know.
replicas(Pid) -> call(Pid, ?MODULE, local_replicas, []).

%% Runs on the peer.
local_replicas() ->
    lists:append([hornbeam_nif:presence_replicas(T)
                  || Ix <- lists:seq(0, 255), T <- [hornbeam_presence_shard:state(Ix)], T =/= undefined]).

next_broadcast(C) ->
    case ?C:recv_json(C, 10000) of
        [null, null, _, <<"presence_diff">>, _] -> next_broadcast(C);
        Other -> Other
    end.

wait_until(Fun, Within) ->
    Deadline = erlang:monotonic_time(millisecond) + Within,
    wait_loop(Fun, Deadline).

wait_loop(Fun, Deadline) ->
    case Fun() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> {error, timeout};
                false -> timer:sleep(50), wait_loop(Fun, Deadline)
            end
    end.
