%% Draining on shutdown (hornbeam_drainer) on real sockets: hornbeam:stop/0,
%% and a real SIGTERM to a `peer' node, stop accepting at once and close the
%% open WebSockets with 1001 in batches of drain_batch_size, drain_interval
%% apart; drain_timeout bounds it; bad drain options are refused at start.
-module(hornbeam_drain_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(TIMEOUT, 20000).

all() ->
    [stop_closes_sockets_in_waves_of_drain_batch_size_spaced_by_drain_interval,
     under_one_batch_every_socket_closes_at_once_with_1001,
     drain_timeout_bounds_the_drain_and_the_rest_close_with_1001,
     bad_drain_options_are_refused_at_start,
     sigterm_drains_in_batches_and_its_presences_leave_the_other_nodes].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    _ = hornbeam:stop(),
    ok.

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

start(Opts) ->
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, Opts#{bind => "127.0.0.1:0",
                                    channels => [{<<"room:*">>, hornbeam_test_channel}]}),
    hornbeam:port().

%% --- cases ------------------------------------------------------------------------

stop_closes_sockets_in_waves_of_drain_batch_size_spaced_by_drain_interval(_Config) ->
    Interval = 1500,
    Port = start(#{drain_batch_size => 10, drain_interval => Interval}),
    Clients = [joined(Port, <<"room:drain">>) || _ <- lists:seq(1, 30)],
    Self = self(),
    T0 = now_ms(),
    Stopper = spawn_link(fun() -> Self ! {stopped, hornbeam:stop(), now_ms()} end),
    %% the first wave is closing: new clients are refused at once
    Closes0 = closes(Clients, 1, []),
    ?assertEqual({error, econnrefused}, gen_tcp:connect({127, 0, 0, 1}, Port, [], 5000)),
    Closes = lists:sort(closes(Clients, 29, Closes0)),
    ?assertEqual([1001], lists:usort([Code || {_, Code, _} <- Closes])),
    Waves = waves([T || {T, _, _} <- Closes], Interval div 2),
    ct:pal("close times (ms after stop): ~p", [[[T - T0 || T <- W] || W <- Waves]]),
    ?assertEqual([10, 10, 10], [length(W) || W <- Waves]),
    Gaps = [hd(B) - lists:last(A) || {A, B} <- lists:zip(lists:droplast(Waves), tl(Waves))],
    [?assert(G >= Interval div 2 andalso G =< 3 * Interval) || G <- Gaps],
    receive {stopped, ok, _} -> ok after ?TIMEOUT -> ct:fail({stop_hangs, Stopper}) end.

under_one_batch_every_socket_closes_at_once_with_1001(_Config) ->
    %% defaults: 10,000 per batch, so 5 sockets are one batch: no wait
    Port = start(#{}),
    Clients = [joined(Port, <<"room:one">>) || _ <- lists:seq(1, 5)],
    ok = hornbeam:stop(),
    Closes = closes(Clients, 5, []),
    ?assertEqual([1001], lists:usort([Code || {_, Code, _} <- Closes])).

drain_timeout_bounds_the_drain_and_the_rest_close_with_1001(_Config) ->
    %% 6 batches of 1, 1 s apart, would take 5 s; drain_timeout cuts it at 1.5 s
    Port = start(#{drain_batch_size => 1, drain_interval => 1000, drain_timeout => 1500}),
    Clients = [joined(Port, <<"room:timeout">>) || _ <- lists:seq(1, 6)],
    T0 = now_ms(),
    ok = hornbeam:stop(),
    Took = now_ms() - T0,
    ct:pal("stop took ~b ms", [Took]),
    ?assert(Took >= 1400 andalso Took < 4500),
    Closes = closes(Clients, 6, []),
    ?assertEqual([1001], lists:usort([Code || {_, Code, _} <- Closes])).

bad_drain_options_are_refused_at_start(_Config) ->
    _ = hornbeam:stop(),
    [?assertEqual({error, {bad_option, Name, Value}},
                  hornbeam:start(none, #{bind => "127.0.0.1:0", Name => Value}))
     || {Name, Value} <- [{drain_batch_size, 0}, {drain_batch_size, 1.5}, {drain_interval, -1},
                          {drain_interval, fast}, {drain_timeout, 0}, {drain_timeout, infinity}]],
    ?assertEqual({ok, #{drain_batch_size => 10000, drain_interval => 2000, drain_timeout => 30000}},
                 hornbeam_drainer:options(#{})),
    %% drain_interval 0 is allowed: every batch at once
    ?assertMatch({ok, #{drain_interval := 0}}, hornbeam_drainer:options(#{drain_interval => 0})).

%% A real SIGTERM (what a deploy sends) to a peer node: init:stop, the
%% application stops, the drain runs; the presences of its channels leave
%% (a client on another node sees the leaves at once, not after down_period).
sigterm_drains_in_batches_and_its_presences_leave_the_other_nodes(_Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_drain_ct) of
        ok -> sigterm_drains();
        {skip, _} = Skip -> Skip
    end.

sigterm_drains() ->
    Interval = 1000,
    {ok, Peer, Node} = peer:start(#{name => peer:random_name(drain), host => "127.0.0.1",
                                    longnames => true, args => peer_args()}),
    try
        true = net_kernel:connect_node(Node),
        ok = erpc:call(Node, fun() ->
                                     {ok, _} = application:ensure_all_started(hornbeam),
                                     hornbeam:start(none, #{bind => "127.0.0.1:0",
                                                            channels => [{<<"room:*">>, hornbeam_test_channel}],
                                                            drain_batch_size => 5, drain_interval => Interval})
                             end),
        PeerPort = erpc:call(Node, hornbeam, port, []),
        %% a watcher here, on this node's own server
        Port = start(#{}),
        Watcher = joined(Port, <<"room:sig">>),
        Clients = [joined(PeerPort, <<"room:sig">>, #{<<"mode">> => <<"track">>, <<"key">> => integer_to_binary(I)})
                   || I <- lists:seq(1, 10)],
        ok = wait_until(fun() -> map_size(hornbeam_presence:list(<<"room:sig">>)) =:= 10 end),
        OsPid = erpc:call(Node, os, getpid, []),
        _ = os:cmd("kill -TERM " ++ OsPid),
        Closes = lists:sort(closes(Clients, 10, [])),
        ?assertEqual([1001], lists:usort([Code || {_, Code, _} <- Closes])),
        Waves = waves([T || {T, _, _} <- Closes], Interval div 2),
        ?assertEqual([5, 5], [length(W) || W <- Waves]),
        %% every presence of the stopped node left here (goodbye or the
        %% channels' own untrack), long before down_period
        ok = wait_until(fun() -> map_size(hornbeam_presence:list(<<"room:sig">>)) =:= 0 end),
        ?C:close(Watcher)
    after
        catch peer:stop(Peer)
    end.

%% --- helpers ----------------------------------------------------------------------

joined(Port, Topic) ->
    joined(Port, Topic, #{}).

joined(Port, Topic, Payload) ->
    {ok, C} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, Payload),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C, ?TIMEOUT),
    C.

%% The close frames of N of Clients, as {ArrivalMs, Code, Client}, in
%% arrival order (after Acc).
closes(_Clients, 0, Acc) ->
    Acc;
closes(Clients, N, Acc) ->
    receive
        {ws, C, {close, Code, _}} ->
            case lists:member(C, Clients) of
                true -> closes(Clients, N - 1, Acc ++ [{now_ms(), Code, C}]);
                false -> closes(Clients, N, Acc)
            end
    after ?TIMEOUT ->
        ct:fail({closes_missing, N, Acc})
    end.

%% Sorted times cut into waves wherever two are more than Gap apart.
waves([], _Gap) -> [];
waves([T | Ts], Gap) ->
    lists:reverse([lists:reverse(W) || W <- waves(Ts, Gap, [[T]])]).

waves([], _Gap, Acc) -> Acc;
waves([T | Ts], Gap, [[Last | _] = W | Ws]) when T - Last =< Gap -> waves(Ts, Gap, [[T | W] | Ws]);
waves([T | Ts], Gap, Ws) -> waves(Ts, Gap, [[T] | Ws]).

now_ms() -> erlang:monotonic_time(millisecond).

peer_args() ->
    Dirs = lists:usort([filename:dirname(code:which(M))
                        || M <- [hornbeam, hornbeam_test_channel, hornbeam_ws_client]]),
    ["-setcookie", atom_to_list(erlang:get_cookie())] ++ lists:append([["-pa", D] || D <- Dirs]).

wait_until(Fun) -> wait_until(Fun, 500).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.
