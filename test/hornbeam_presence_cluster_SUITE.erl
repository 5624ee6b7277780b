%% Presence replicated across real Erlang nodes (OTP `peer'), each running
%% hornbeam with real WebSocket clients. Periods are short here
%% (broadcast 200 ms, down 1500 ms) so failures show quickly.
-module(hornbeam_presence_cluster_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(PERIOD, 200).
-define(DOWN, 1500).

all() ->
    [tracked_on_a_reaches_a_joiner_on_c_within_two_periods,
     updates_and_leaves_reach_every_node,
     stopped_node_presences_leave_before_down_period,
     partition_and_heal_converge,
     late_node_receives_existing_presences].

init_per_suite(Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_ct) of
        ok ->
            {ok, _} = application:ensure_all_started(hornbeam),
            ok = application:set_env(kernel, prevent_overlapping_partitions, false),
            Peers = [start_peer(N) || N <- [a, b, c]],
            mesh([Node || {_, Node, _} <- Peers]),
            [{peers, Peers} | Config];
        Skip -> Skip
    end.

end_per_suite(Config) ->
    [peer:stop(Pid) || {Pid, _, _} <- ?config(peers, Config)],
    ok.

start_peer(Name) ->
    %% The partition test cuts connections on purpose: keep global from
    %% cutting more, and keep the peer's control channel off distribution
    %% (over stdio) so a cut does not stop the node.
    hornbeam_ct_peer:start(Name, [hornbeam_test_channel, ?MODULE],
                           #{bind => "127.0.0.1:0", broadcast_period => ?PERIOD,
                             down_period => ?DOWN, permdown_period => 60000,
                             channels => [{<<"room:*">>, hornbeam_test_channel}]},
                           #{args => ["-kernel", "prevent_overlapping_partitions", "false"],
                             connection => standard_io}).

mesh(Nodes) ->
    [true = erpc:call(N1, net_kernel, connect_node, [N2]) || N1 <- Nodes, N2 <- Nodes, N1 =/= N2],
    ok.

port_of(Node, Config) ->
    hd([P || {_, N, P} <- ?config(peers, Config), N =:= Node]).

nodes_of(Config) -> [N || {_, N, _} <- ?config(peers, Config)].

%% A client on Node joined to Topic and tracking Key.
track_client(Port, Topic, Key, Meta) ->
    {ok, C} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>,
                 #{<<"mode">> => <<"track">>, <<"key">> => Key, <<"meta">> => Meta}),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_all_json(C, 5000),
    [<<"1">>, null, Topic, <<"presence_state">>, State] = ?C:recv_all_json(C, 5000),
    {C, State}.

keys(Node, Topic) ->
    lists:sort(maps:keys(erpc:call(Node, hornbeam_presence, list, [Topic]))).

%% Wait until every node lists exactly Keys on Topic; the time it took.
converge(Nodes, Topic, Keys, Within) ->
    T0 = erlang:monotonic_time(millisecond),
    Want = lists:sort(Keys),
    ok = wait_until(fun() -> lists:all(fun(N) -> keys(N, Topic) =:= Want end, Nodes) end, Within),
    erlang:monotonic_time(millisecond) - T0.

%% Next presence_diff on C (other frames skipped).
next_diff(C) ->
    case ?C:recv_json(C, 5000) of
        [_, _, _, <<"presence_diff">>, D] -> D;
        timeout -> ct:fail(no_presence_diff);
        _ -> next_diff(C)
    end.

tracked_on_a_reaches_a_joiner_on_c_within_two_periods(Config) ->
    [A, _B, C | _] = nodes_of(Config),
    {_CA, _} = track_client(port_of(A, Config), <<"room:x">>, <<"user:a">>, #{}),
    timer:sleep(2 * ?PERIOD + 100),
    {_CC, State} = track_client(port_of(C, Config), <<"room:x">>, <<"user:c">>, #{}),
    ?assert(maps:is_key(<<"user:a">>, State)).

updates_and_leaves_reach_every_node(Config) ->
    [A, B, C | _] = nodes_of(Config),
    {WA, _} = track_client(port_of(A, Config), <<"room:u">>, <<"user:wa">>, #{}),
    {WC, _} = track_client(port_of(C, Config), <<"room:u">>, <<"user:wc">>, #{}),
    _ = converge([A, B, C], <<"room:u">>, [<<"user:wa">>, <<"user:wc">>], 3000),
    {CB, _} = track_client(port_of(B, Config), <<"room:u">>, <<"user:b">>, #{<<"s">> => 1}),
    [?assertMatch(#{<<"joins">> := #{<<"user:b">> := _}}, until_diff_with(W, <<"user:b">>)) || W <- [WA, WC]],
    ok = ?C:push(CB, <<"1">>, <<"2">>, <<"room:u">>, <<"presence_update">>, #{<<"s">> => 2}),
    [?assertMatch(#{<<"joins">> := #{<<"user:b">> := #{<<"metas">> := [#{<<"s">> := 2, <<"phx_ref_prev">> := _}]}}},
                  until_diff_with(W, <<"user:b">>)) || W <- [WA, WC]],
    ok = ?C:close(CB),
    [?assertMatch(#{<<"leaves">> := #{<<"user:b">> := _}}, until_diff_with(W, <<"user:b">>)) || W <- [WA, WC]],
    _ = converge([A, B, C], <<"room:u">>, [<<"user:wa">>, <<"user:wc">>], 3000).

until_leave(C, Key) ->
    D = next_diff(C),
    case maps:is_key(Key, maps:get(<<"leaves">>, D)) of
        true -> D;
        false -> until_leave(C, Key)
    end.

until_diff_with(C, Key) ->
    D = next_diff(C),
    case maps:is_key(Key, maps:get(<<"joins">>, D)) orelse maps:is_key(Key, maps:get(<<"leaves">>, D)) of
        true -> D;
        false -> until_diff_with(C, Key)
    end.

%% peer:stop/1 halts the node: distribution reports it down and its
%% replica is marked down at once, well before down_period.
stopped_node_presences_leave_before_down_period(Config) ->
    [A, _B, C | _] = nodes_of(Config),
    {DPid, D, DPort} = start_peer(d),
    mesh(nodes_of(Config) ++ [D]),
    {_CD, _} = track_client(DPort, <<"room:d">>, <<"user:d">>, #{}),
    {WA, _} = track_client(port_of(A, Config), <<"room:d">>, <<"user:wa">>, #{}),
    _ = converge([A, C, D], <<"room:d">>, [<<"user:d">>, <<"user:wa">>], 3000),
    T0 = erlang:monotonic_time(millisecond),
    peer:stop(DPid),
    ?assertMatch(#{<<"leaves">> := #{<<"user:d">> := _}}, until_leave(WA, <<"user:d">>)),
    Took = erlang:monotonic_time(millisecond) - T0,
    ct:pal("stopped node's presence left after ~b ms (down_period ~b)", [Took, ?DOWN]),
    ?assert(Took < ?DOWN),
    _ = converge([A, C], <<"room:d">>, [<<"user:wa">>], 3000).

partition_and_heal_converge(Config) ->
    [A, B, C | _] = nodes_of(Config),
    {_CA, _} = track_client(port_of(A, Config), <<"room:p">>, <<"user:pa">>, #{}),
    {CB, _} = track_client(port_of(B, Config), <<"room:p">>, <<"user:pb">>, #{}),
    _ = converge([A, B, C], <<"room:p">>, [<<"user:pa">>, <<"user:pb">>], 3000),
    %% cut A from B (each side may reconnect on its own; keep cutting for a while)
    Cutter = spawn(fun() -> cut(A, B, 10) end),
    {_CB2, _} = track_client(port_of(B, Config), <<"room:p">>, <<"user:pb2">>, #{}),
    ok = ?C:close(CB),
    timer:sleep(600),
    exit(Cutter, kill),
    true = erpc:call(A, net_kernel, connect_node, [B]),
    Took = converge([A, B, C], <<"room:p">>, [<<"user:pa">>, <<"user:pb2">>], 5000),
    ct:pal("converged ~b ms after the heal", [Took]).

cut(_A, _B, 0) -> ok;
cut(A, B, N) ->
    _ = erpc:call(A, erlang, disconnect_node, [B]),
    timer:sleep(50),
    cut(A, B, N - 1).

late_node_receives_existing_presences(Config) ->
    [A, B | _] = nodes_of(Config),
    {_C1, _} = track_client(port_of(A, Config), <<"room:late">>, <<"user:1">>, #{}),
    {_C2, _} = track_client(port_of(B, Config), <<"room:late">>, <<"user:2">>, #{}),
    _ = converge([A, B], <<"room:late">>, [<<"user:1">>, <<"user:2">>], 3000),
    {EPid, E, EPort} = start_peer(e),
    mesh(nodes_of(Config) ++ [E]),
    Took = converge([E], <<"room:late">>, [<<"user:1">>, <<"user:2">>], 5000),
    ct:pal("a late node had every presence after ~b ms", [Took]),
    {_CE, State} = track_client(EPort, <<"room:late">>, <<"user:e">>, #{}),
    ?assert(maps:is_key(<<"user:1">>, State) andalso maps:is_key(<<"user:2">>, State)),
    peer:stop(EPid).

wait_until(Fun, Within) -> wait_until(Fun, Within div 20 + 1, Fun).
wait_until(_Fun, 0, _) -> {error, timeout};
wait_until(Fun, N, F) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1, F)
    end.
