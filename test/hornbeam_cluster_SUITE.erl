%% Pub/sub across a real 3-node cluster started with OTP `peer': each node
%% runs hornbeam with its own listener; WebSocket clients connect to each.
-module(hornbeam_cluster_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [broadcast_reaches_every_node_exactly_once, broadcast_from_excludes_only_the_sender,
     remote_node_gets_one_message_per_broadcast, binary_broadcast_reaches_every_node_as_a_binary_frame].

init_per_suite(Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_ct) of
        ok ->
            {ok, _} = application:ensure_all_started(hornbeam),
            Peers = [start_peer(N) || N <- [a, b, c]],
            Nodes = [Node || {_, Node, _} <- Peers],
            [ok = erpc:call(N1, fun() -> true = net_kernel:connect_node(N2), ok end)
             || N1 <- Nodes, N2 <- Nodes, N1 =/= N2],
            ok = wait_until(fun() ->
                                    lists:all(fun(N) ->
                                                      length(erpc:call(N, pg, get_members, [hornbeam, relays])) >= 3
                                              end, Nodes)
                            end),
            [{peers, Peers} | Config];
        {skip, _} = Skip ->
            Skip
    end.

end_per_suite(Config) ->
    [peer:stop(Pid) || {Pid, _, _} <- ?config(peers, Config)],
    ok.

start_peer(Name) ->
    hornbeam_ct_peer:start(Name, [hornbeam_test_channel],
                           #{bind => "127.0.0.1:0", channels => [{<<"room:*">>, hornbeam_test_channel}]}).

join_everywhere(Config, Topic) ->
    Clients = [begin
                   {ok, C} = ?C:connect(Port, "/ws?vsn=2.0.0"),
                   ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, #{}),
                   [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C),
                   {Node, C}
               end || {_, Node, Port} <- ?config(peers, Config)],
    Nodes = [N || {N, _} <- Clients],
    ok = wait_until(fun() ->
                            lists:all(fun(N) ->
                                              length(erpc:call(N, pg, get_members, [hornbeam, {topic, Topic}])) =:= 3
                                      end, Nodes)
                    end),
    Clients.

broadcast_reaches_every_node_exactly_once(Config) ->
    Clients = join_everywhere(Config, <<"room:all">>),
    [{A, _} | _] = Clients,
    ok = erpc:call(A, hornbeam, broadcast, [<<"room:all">>, <<"news">>, #{<<"n">> => 1}]),
    [?assertEqual([null, null, <<"room:all">>, <<"news">>, #{<<"n">> => 1}], ?C:recv_json(C))
     || {_, C} <- Clients],
    [?assertEqual(timeout, ?C:recv_json(C, 300)) || {_, C} <- Clients].

broadcast_from_excludes_only_the_sender(Config) ->
    Clients = [{_, Sender} | Others] = join_everywhere(Config, <<"room:from">>),
    ok = ?C:push(Sender, <<"1">>, <<"2">>, <<"room:from">>, <<"broadcast_from">>, #{<<"n">> => 2}),
    ?assertMatch([<<"1">>, <<"2">>, _, <<"phx_reply">>, _], ?C:recv_json(Sender)),
    [?assertEqual([null, null, <<"room:from">>, <<"shout">>, #{<<"n">> => 2}], ?C:recv_json(C))
     || {_, C} <- Others],
    [?assertEqual(timeout, ?C:recv_json(C, 300)) || {_, C} <- Clients].

%% {binary, Bytes} crosses the relays as bytes and every node writes the
%% Phoenix binary broadcast (kind 2: topic, event, bytes).
binary_broadcast_reaches_every_node_as_a_binary_frame(Config) ->
    Clients = join_everywhere(Config, <<"room:bin">>),
    [{A, _} | _] = Clients,
    ok = erpc:call(A, hornbeam, broadcast, [<<"room:bin">>, <<"b">>, {binary, <<0, 255>>}]),
    [?assertEqual(<<2, 8, 1, "room:bin", "b", 0, 255>>, recv_binary(C)) || {_, C} <- Clients].

recv_binary(C) ->
    case ?C:recv(C, 5000) of
        {binary, Bin} -> Bin;
        {text, _} -> recv_binary(C);   %% presence_state after the join
        Other -> ct:fail({no_binary_frame, Other})
    end.

%% The remote relay receives one message per broadcast, however many
%% subscribers that node has.
remote_node_gets_one_message_per_broadcast(Config) ->
    [{_, A, _}, {_, B, BPort} | _] = ?config(peers, Config),
    Clients = [begin
                   {ok, C} = ?C:connect(BPort, "/ws"),
                   ok = ?C:push(C, <<"1">>, <<"1">>, <<"room:many">>, <<"phx_join">>, #{}),
                   _ = ?C:recv_json(C),
                   C
               end || _ <- lists:seq(1, 20)],
    ok = wait_until(fun() -> length(erpc:call(A, pg, get_members, [hornbeam, {topic, <<"room:many">>}])) =:= 20 end),
    Counter = erpc:call(B, fun() ->
        Relay = whereis(hornbeam_pubsub),
        C = spawn(fun() -> count_broadcasts(0) end),
        1 = erlang:trace(Relay, true, ['receive', {tracer, C}]),
        C
    end),
    ok = erpc:call(A, hornbeam, broadcast, [<<"room:many">>, <<"x">>, #{}]),
    [?assertMatch([null, null, <<"room:many">>, <<"x">>, _], ?C:recv_json(C)) || C <- Clients],
    Counter ! {count, self()},
    receive {broadcasts, N} -> ?assertEqual(1, N) after 2000 -> ct:fail(no_count) end.

count_broadcasts(N) ->
    receive
        {trace, _, 'receive', {'$hb_remote_broadcast', _, _, _, _}} -> count_broadcasts(N + 1);
        {trace, _, _, _} -> count_broadcasts(N);
        {count, From} -> From ! {broadcasts, N}
    end.

wait_until(Fun) -> wait_until(Fun, 250).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.
