%% Intercepts and channel subscriptions across a real 2-node cluster (OTP
%% `peer'): a broadcast published on one node runs handle_out/3 in the
%% channels of the other, and reaches the handle_info/2 of a channel there
%% that subscribed to its topic. hornbeam_test_intercept_channel on "sec:*".
-module(hornbeam_intercept_cluster_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [remote_broadcast_runs_handle_out_per_subscriber_on_each_node,
     remote_broadcast_to_a_subscribed_topic_reaches_handle_info].

init_per_suite(Config) ->
    case node() of
        nonode@nohost -> {skip, "needs a distributed node (rebar3 ct --name ...)"};
        _ ->
            Peers = [start_peer(N) || N <- [a, b]],
            [{_, A, _}, {_, B, _}] = Peers,
            ok = erpc:call(A, fun() -> true = net_kernel:connect_node(B), ok end),
            ok = wait_until(fun() -> length(erpc:call(A, pg, get_members, [hornbeam, relays])) >= 2 end),
            [{peers, Peers} | Config]
    end.

end_per_suite(Config) ->
    [peer:stop(Pid) || {Pid, _, _} <- ?config(peers, Config)],
    ok.

start_peer(Name) ->
    hornbeam_ct_peer:start(Name, [hornbeam_test_intercept_channel],
                           #{bind => "127.0.0.1:0", channels => [{<<"sec:*">>, hornbeam_test_intercept_channel}]}).

join(Port, Topic, Role) ->
    {ok, C} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, #{<<"role">> => Role}),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C),
    C.

wait_until(Fun) -> wait_until(Fun, 200).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(50), wait_until(Fun, N - 1)
    end.

remote_broadcast_runs_handle_out_per_subscriber_on_each_node(Config) ->
    [{_, A, APort}, {_, _B, BPort}] = ?config(peers, Config),
    GuestA = join(APort, <<"sec:c">>, <<"guest">>),
    AdminB = join(BPort, <<"sec:c">>, <<"admin">>),
    GuestB = join(BPort, <<"sec:c">>, <<"guest">>),
    ok = wait_until(fun() -> length(erpc:call(A, pg, get_members, [hornbeam, {channel, <<"sec:c">>}])) =:= 3 end),
    ok = erpc:call(A, hornbeam, broadcast, [<<"sec:c">>, <<"secret">>, #{<<"n">> => 1}]),
    ok = erpc:call(A, hornbeam, broadcast, [<<"sec:c">>, <<"plain">>, #{<<"n">> => 2}]),
    ?assertMatch([_, null, _, <<"secret">>, #{<<"n">> := 1, <<"seen_by">> := <<"admin">>}], ?C:recv_json(AdminB)),
    ?assertMatch([null, null, _, <<"plain">>, #{<<"n">> := 2}], ?C:recv_json(AdminB)),
    %% the guests' first message is the plain one: the secret was filtered out
    [?assertMatch([null, null, _, <<"plain">>, #{<<"n">> := 2}], ?C:recv_json(C)) || C <- [GuestA, GuestB]].

remote_broadcast_to_a_subscribed_topic_reaches_handle_info(Config) ->
    [{_, A, _}, {_, B, BPort}] = ?config(peers, Config),
    C = join(BPort, <<"sec:s">>, <<"guest">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"sec:s">>, <<"subscribe">>, #{<<"topic">> => <<"user:1">>}),
    [_, <<"2">>, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C),
    ok = wait_until(fun() -> erpc:call(A, pg, get_members, [hornbeam, {channel, <<"user:1">>}]) =/= [] end),
    [_] = erpc:call(B, hornbeam_pubsub, channel_subscribers, [<<"user:1">>]),
    ok = erpc:call(A, hornbeam, broadcast, [<<"user:1">>, <<"note">>, #{<<"t">> => 1}]),
    ?assertEqual([<<"1">>, null, <<"sec:s">>, <<"relayed">>,
                  #{<<"topic">> => <<"user:1">>, <<"event">> => <<"note">>, <<"payload">> => #{<<"t">> => 1}}],
                 ?C:recv_json(C)).
