%% Socket ids and hornbeam:disconnect/1 on real sockets: the endpoint's
%% connect names a socket (`{ok, Assigns, Id}'), channels see the id in their
%% socket map, and disconnect closes every socket with that id (close code
%% 4000, channels terminated as on any close) and no other, on one node and
%% across a 3-node `peer' cluster.
%%
%% This module is also the channel (on "room:*") and the connect function
%% the servers use, on this node and on the peers.
-module(hornbeam_socket_id_SUITE).
-behaviour(hornbeam_channel).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(TIMEOUT, 10000).
-define(WATCHER, hornbeam_socket_id_watcher).

all() ->
    [{group, one_node}, {group, cluster}].

groups() ->
    [{one_node, [], [channels_see_the_socket_id_or_undefined,
                     disconnect_closes_every_socket_with_the_id_and_no_other,
                     disconnect_terminates_the_channels_of_the_closed_sockets,
                     bad_socket_ids_are_refused]},
     {cluster, [], [disconnect_on_one_node_closes_the_sockets_with_the_id_on_every_node]}].

%% --- the channel and the connect function ----------------------------------------

connect(#{<<"user">> := <<"bad">>}, _Info) -> {ok, #{}, 42};
connect(#{<<"user">> := <<"empty">>}, _Info) -> {ok, #{}, <<>>};
connect(#{<<"user">> := User}, _Info) -> {ok, #{<<"user">> => User}, <<"user:", User/binary>>};
connect(_Params, _Info) -> {ok, #{}}.

join(_Topic, _Payload, Socket) ->
    Id = case hornbeam_channel:id(Socket) of
             undefined -> null;
             Bin -> Bin
         end,
    {ok, #{<<"id">> => Id}, Socket}.

handle_in(<<"ping">>, _Payload, Socket) ->
    {reply, {ok, #{<<"pong">> => true}}, Socket}.

terminate(Reason, Socket) ->
    catch ?WATCHER ! {terminated, hornbeam_channel:topic(Socket), hornbeam_channel:id(Socket), Reason},
    ok.

%% --- setup ------------------------------------------------------------------------

init_per_group(one_node, Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, server_opts()),
    [{port, hornbeam:port()} | Config];
init_per_group(cluster, Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_socket_id_ct) of
        ok ->
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

end_per_group(one_node, _Config) ->
    _ = hornbeam:stop(),
    ok;
end_per_group(cluster, Config) ->
    [peer:stop(Pid) || {Pid, _, _} <- ?config(peers, Config)],
    ok.

init_per_testcase(_TC, Config) ->
    true = register(?WATCHER, self()),
    Config.

end_per_testcase(_TC, _Config) ->
    catch unregister(?WATCHER),
    ok.

server_opts() ->
    #{bind => "127.0.0.1:0", channels => [{<<"room:*">>, ?MODULE}], connect => fun ?MODULE:connect/2}.

start_peer(Name) ->
    hornbeam_ct_peer:start(Name, [?MODULE], server_opts()).

%% --- one node ---------------------------------------------------------------------

channels_see_the_socket_id_or_undefined(Config) ->
    {_, Ana} = joined(?config(port, Config), "ana", <<"room:a">>),
    ?assertEqual(<<"user:ana">>, Ana),
    {_, None} = joined(?config(port, Config), none, <<"room:a">>),
    ?assertEqual(null, None).

disconnect_closes_every_socket_with_the_id_and_no_other(Config) ->
    Port = ?config(port, Config),
    [{Ana1, _}, {Ana2, _}, {Bob, _}, {Anon, _}] =
        [joined(Port, U, <<"room:", (integer_to_binary(I))/binary>>)
         || {I, U} <- lists:enumerate(["ana", "ana", "bob", none])],
    ?assertEqual(2, length(pg:get_members(hornbeam, {socket_id, <<"user:ana">>}))),
    ok = hornbeam:disconnect(<<"user:ana">>),
    [?assertMatch({close, 4000, <<"disconnected">>}, next_frame(C)) || C <- [Ana1, Ana2]],
    [?assertEqual(closed, ?C:recv(C, ?TIMEOUT)) || C <- [Ana1, Ana2]],
    [?assert(alive(C, <<"room:", I/binary>>)) || {C, I} <- [{Bob, <<"3">>}, {Anon, <<"4">>}]],
    %% the closed sockets left their group; an id nobody has is fine
    ok = wait_until(fun() -> pg:get_members(hornbeam, {socket_id, <<"user:ana">>}) =:= [] end),
    ok = hornbeam:disconnect(<<"user:ana">>),
    ?assert(alive(Bob, <<"room:3">>)).

disconnect_terminates_the_channels_of_the_closed_sockets(Config) ->
    Port = ?config(port, Config),
    {C, _} = joined(Port, "cy", <<"room:x">>),
    ok = ?C:push(C, <<"2">>, <<"2">>, <<"room:y">>, <<"phx_join">>, #{}),
    ?assertMatch([<<"2">>, <<"2">>, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], ?C:recv_json(C)),
    {_, _} = joined(Port, "dee", <<"room:x">>),
    ok = hornbeam:disconnect(<<"user:cy">>),
    ?assertEqual(4000, ?C:expect_closed(C, ?TIMEOUT)),
    Terminated = lists:sort([receive {terminated, T, Id, _Reason} -> {T, Id}
                             after ?TIMEOUT -> ct:fail(no_terminate) end || _ <- [1, 2]]),
    ?assertEqual([{<<"room:x">>, <<"user:cy">>}, {<<"room:y">>, <<"user:cy">>}], Terminated),
    receive {terminated, _, _, _} = Extra -> ct:fail({unexpected, Extra}) after 300 -> ok end.

bad_socket_ids_are_refused(Config) ->
    [?assertEqual({error, {bad_socket_id, Bad}}, hornbeam:disconnect(Bad))
     || Bad <- [42, <<>>, "user:1", undefined, binary:copy(<<"x">>, 256), <<255, 254>>]],
    %% a connect function that answers a bad id refuses the connection (403)
    Port = ?config(port, Config),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?vsn=2.0.0&user=bad")),
    ?assertMatch({error, {status, 403, _}}, ?C:connect(Port, "/ws?vsn=2.0.0&user=empty")).

%% --- cluster ----------------------------------------------------------------------

disconnect_on_one_node_closes_the_sockets_with_the_id_on_every_node(Config) ->
    [{_, A, PortA}, {_, B, PortB}, {_, C, PortC}] = ?config(peers, Config),
    Anas = [element(1, joined(P, "ana", <<"room:c">>)) || P <- [PortA, PortB, PortC, PortC]],
    {Bob, _} = joined(PortB, "bob", <<"room:c">>),
    {Zed, _} = joined(PortC, "zed", <<"room:c">>),
    %% every node sees all four of ana's sockets in the group
    ok = wait_until(fun() ->
                            lists:all(fun(N) ->
                                              length(erpc:call(N, pg, get_members,
                                                               [hornbeam, {socket_id, <<"user:ana">>}])) =:= 4
                                      end, [A, B, C])
                    end),
    ok = erpc:call(A, hornbeam, disconnect, [<<"user:ana">>]),
    [?assertEqual(4000, ?C:expect_closed(S, ?TIMEOUT)) || S <- Anas],
    ?assert(alive(Bob, <<"room:c">>)),
    ?assert(alive(Zed, <<"room:c">>)),
    %% and from another node, the other way round
    ok = erpc:call(C, hornbeam, disconnect, [<<"user:bob">>]),
    ?assertEqual(4000, ?C:expect_closed(Bob, ?TIMEOUT)),
    ?assert(alive(Zed, <<"room:c">>)).

%% --- helpers ----------------------------------------------------------------------

%% A socket connected as User (none: no socket id) and joined to Topic;
%% returns it and the id its channel saw.
joined(Port, User, Topic) ->
    Path = case User of
               none -> "/ws?vsn=2.0.0";
               _ -> "/ws?vsn=2.0.0&user=" ++ User
           end,
    {ok, C} = ?C:connect(Port, Path),
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, #{}),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>, <<"response">> := #{<<"id">> := Id}}] =
        ?C:recv_json(C, ?TIMEOUT),
    {C, Id}.

%% Still open and served: an event gets its reply.
alive(C, Topic) ->
    Ref = integer_to_binary(erlang:unique_integer([positive])),
    ok = ?C:push(C, <<"1">>, Ref, Topic, <<"ping">>, #{}),
    case ?C:recv_json(C, ?TIMEOUT) of
        [<<"1">>, Ref, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] -> true;
        Other -> ct:pal("not alive: ~p", [Other]), false
    end.

%% The next frame other than text (presence_state after the join).
next_frame(C) ->
    case ?C:recv(C, ?TIMEOUT) of
        {text, _} -> next_frame(C);
        Other -> Other
    end.

wait_until(Fun) -> wait_until(Fun, 500).
wait_until(_Fun, 0) -> {error, timeout};
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.
