%% Supervision that heals. Group `kills': every long-lived process of a
%% serving node is killed in turn (exit(Pid, kill)) while real WebSocket
%% clients are connected and joined to an Erlang channel and a Python
%% channel, both tracking presence. After each kill: the existing clients
%% get their replies, or are told to rejoin (phx_error), or are disconnected
%% and reconnect, and never more than the supervision design allows
%% (src/channels/README.md, "Supervision"); a new client connects and joins;
%% broadcasts reach every subscriber; presence lists hold exactly the live
%% clients; and a client that leaves afterwards leaves presence.
%%
%% Group `bad_arguments': the public Erlang API answers bad arguments with
%% `{error, Reason}' in the caller, and the relay and the presence shards
%% log and drop malformed messages, also from another node.
-module(hornbeam_heal_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(ROOM, <<"room:heal">>).      %% Erlang channel: hornbeam_test_channel, tracks in join
-define(LOBBY, <<"lobby:heal">>).    %% Python channel: e2e_presence.py, tracks from Python
-define(HEAL_MS, 20000).             %% generous: a loaded 2-core machine, Python re-imports

all() ->
    [{group, kills}, {group, bad_arguments}].

groups() ->
    [{kills, [], [pubsub_relay_killed, pg_scope_killed, channel_sup_killed, node_sup_killed,
                  endpoint_sup_killed, listener_sup_killed, listener_killed, acceptors_killed,
                  acceptor_sup_killed, conn_limiter_killed, conn_sup_killed,
                  python_pool_sup_killed, python_worker_killed, presence_shard_killed,
                  presence_sup_killed, channel_process_killed, connection_process_killed,
                  join_while_channel_sup_is_down_is_an_error_reply]},
     {bad_arguments, [], [broadcast_bad_arguments_are_errors_in_the_caller,
                          presence_bad_arguments_are_errors_in_the_caller,
                          relay_drops_malformed_messages, shard_drops_malformed_messages,
                          bad_broadcast_on_one_node_crashes_no_relay_in_the_cluster]}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    application:stop(hornbeam).

fixtures() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "python", "fixtures"]).

init_per_testcase(TC, Config) ->
    %% The test process outlives clients that crash while the server restarts.
    process_flag(trap_exit, true),
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", workers => 2,
                                channels => [{<<"room:*">>, hornbeam_test_channel}],
                                channel_modules => ["e2e_presence"],
                                pythonpath => [fixtures()]}),
    ct:log("~p on port ~b", [TC, hornbeam:port()]),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

%% --- the kills ---------------------------------------------------------------------
%% kill(Config, Find, MostDisruption): Find() gives the pid(s) to kill;
%% MostDisruption is what the design allows existing clients to see:
%% kept (replies go on) < rejoin (phx_error, then a rejoin) < reconnect.

pubsub_relay_killed(Config) ->
    kill(Config, named(hornbeam_pubsub), kept).

pg_scope_killed(Config) ->
    %% Its groups (subscriptions) are gone: the endpoint restarts, clients reconnect.
    kill(Config, named(hornbeam), reconnect).

channel_sup_killed(Config) ->
    kill(Config, named(hornbeam_channel_sup), rejoin).

node_sup_killed(Config) ->
    kill(Config, named(hornbeam_node_sup), reconnect).

endpoint_sup_killed(Config) ->
    kill(Config, fun() -> child(hornbeam_sup, endpoint) end, reconnect).

listener_sup_killed(Config) ->
    kill(Config, named(hornbeam_http_listener_sup), reconnect).

listener_killed(Config) ->
    %% Live connections sit before the listener in its rest_for_one supervisor.
    kill(Config, named(hornbeam_http_listener), kept).

acceptors_killed(Config) ->
    kill(Config, fun() -> children(hornbeam_http_acceptor_sup) end, kept).

acceptor_sup_killed(Config) ->
    kill(Config, named(hornbeam_http_acceptor_sup), kept).

conn_limiter_killed(Config) ->
    %% The count of live connections is lost: they all go (rest_for_one).
    kill(Config, named(hornbeam_http_limiter), reconnect).

conn_sup_killed(Config) ->
    kill(Config, named(hornbeam_http_conn_sup), reconnect).

python_pool_sup_killed(Config) ->
    %% Python channel processes keep their assigns; their next events run
    %% on the new pool (meanwhile they get an error reply).
    kill(Config, named(hornbeam_python_sup), kept).

python_worker_killed(Config) ->
    kill(Config, named(hornbeam_py_worker:name(1)), kept).

presence_shard_killed(Config) ->
    %% The new shard adopts its predecessor's state: nobody notices.
    kill(Config, fun() -> hornbeam_presence_shard:whereis_shard(0) end, kept).

presence_sup_killed(Config) ->
    kill(Config, fun() -> child(child(hornbeam_sup, endpoint), presence) end, kept).

channel_process_killed(Config) ->
    kill(Config, {client, fun() -> channel_pid(?ROOM, <<"c1">>) end}, rejoin).

connection_process_killed(Config) ->
    kill(Config, {client, fun() -> connection_pid(<<"c1">>) end}, reconnect).

%% The window between a channel supervisor's death and its restart, held
%% open: a join in it is refused with a reply, and the connection lives on.
join_while_channel_sup_is_down_is_an_error_reply(Config) ->
    S = session(?config(port, Config), <<"c1">>),
    ok = supervisor:terminate_child(hornbeam_node_sup, hornbeam_channel_sup),
    C = maps:get(conn, S),
    ok = ?C:push(C, <<"9">>, <<"9">>, <<"room:other">>, <<"phx_join">>, #{}),
    ?assertMatch({reply, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"join crashed">>}}, _},
                 await(C, <<"room:other">>, <<"9">>, <<"9">>, 5000)),
    {ok, _} = supervisor:restart_child(hornbeam_node_sup, hornbeam_channel_sup),
    ok = ?C:push(C, <<"10">>, <<"10">>, <<"room:other">>, <<"phx_join">>, #{}),
    ?assertMatch({reply, #{<<"status">> := <<"ok">>}, _}, await(C, <<"room:other">>, <<"10">>, <<"10">>, 5000)).

kill(Config, Find, Allowed) ->
    Port = ?config(port, Config),
    Sessions0 = [session(Port, Name) || Name <- [<<"c1">>, <<"c2">>]],
    ok = wait_presence([<<"c1">>, <<"c2">>]),
    Traffic = traffic_start(Port),
    ok = wait_until(fun() -> traffic_answered(Traffic) >= 20 end),
    Old = pids(find(Find)),
    ct:log("killing ~p", [Old]),
    T0 = erlang:monotonic_time(millisecond),
    [exit(Pid, kill) || Pid <- Old],
    %% Supervised processes are restarted; a client's own channel or
    %% connection process is replaced by the client (heal/2 below).
    ok = case Find of
             {client, _} -> wait_until(fun() -> not lists:any(fun is_process_alive/1, Old) end);
             _ -> wait_until(fun() -> replaced(Old, Find) end)
         end,
    {Sessions, Outcomes} = lists:unzip([heal(Port, S) || S <- Sessions0]),
    ct:log("outcomes: ~p (allowed at most ~p); serving again after ~b ms",
           [Outcomes, Allowed, erlang:monotonic_time(millisecond) - T0]),
    [?assert(level(O) =< level(Allowed), {O, more_than, Allowed}) || O <- Outcomes],
    %% The client that was sending all along lost no reply, unless its
    %% channel or connection went (which the design allows here).
    Load = #{sent := Sent} = traffic_stop(Traffic),
    ct:log("traffic during the kill: ~p", [Load]),
    ?assert(Sent > 10, Load),
    case Load of
        #{disrupted := false, lost := Lost} -> ?assertEqual(0, Lost, Load);
        #{disrupted := How} -> ?assert(level(How) =< level(Allowed), {How, more_than, Allowed})
    end,
    ?assertEqual(Port, hornbeam:port()),
    %% A new client connects, joins, and sees everyone in presence_state.
    ok = wait_presence([<<"c1">>, <<"c2">>]),
    New = session(Port, <<"c3">>),
    ct:log("a new client joined"),
    ?assertEqual([<<"user:c1">>, <<"user:c2">>, <<"user:c3">>],
                 lists:sort(maps:keys(maps:get(?ROOM, maps:get(presence_state, New))))),
    All = [New | Sessions],
    ok = wait_presence([<<"c1">>, <<"c2">>, <<"c3">>]),
    %% Broadcasts reach every subscriber, on both channels.
    [begin
         Id = erlang:unique_integer([positive]),
         ok = hornbeam:broadcast(Topic, <<"after_kill">>, #{<<"id">> => Id}),
         [ok = expect_broadcast(S, Topic, Id) || S <- All]
     end || Topic <- [?ROOM, ?LOBBY]],
    %% The shards still watch their owners: a client that goes, leaves.
    ct:log("broadcasts received"),
    [_, C2 | _] = Sessions,
    ok = ?C:close(maps:get(conn, C2)),
    ok = wait_presence([<<"c1">>, <<"c3">>]),
    ct:log("the client that left is gone from presence").

%% --- traffic: a client that sends events all along ------------------------------------
%% It joins ?ROOM without tracking presence and the Python channel on its
%% own topic, then sends an event every few ms (at most 20 unanswered) and
%% counts the replies, until it is stopped or its channel or connection ends
%% (disrupted: rejoin | reconnect).

-define(TRAFFIC_LOBBY, <<"lobby:traffic">>).

traffic_start(Port) ->
    Owner = self(),
    Pid = spawn_link(fun() ->
                             C = connect_retry(Port),
                             Joins = maps:from_list(
                                       [{T, traffic_join(C, T, P)}
                                        || {T, P} <- [{?ROOM, #{}}, {?TRAFFIC_LOBBY, #{<<"name">> => <<"t0">>}}]]),
                             Owner ! {self(), traffic_ready},
                             traffic_loop(#{conn => C, joins => Joins, outstanding => #{}, sent => 0,
                                            answered => 0, disrupted => false, stop => undefined})
                     end),
    receive {Pid, traffic_ready} -> Pid after ?HEAL_MS -> ct:fail(traffic_did_not_start) end.

traffic_join(C, Topic, Payload) ->
    JoinRef = ref(),
    ok = ?C:push(C, JoinRef, JoinRef, Topic, <<"phx_join">>, Payload),
    {reply, #{<<"status">> := <<"ok">>}, _} = await(C, Topic, JoinRef, JoinRef, 10000),
    JoinRef.

traffic_answered(Pid) ->
    Pid ! {answered, self()},
    receive {Pid, answered, N} -> N after 5000 -> 0 end.

traffic_stop(Pid) ->
    Pid ! {stop, self()},
    receive {Pid, traffic, Result} -> Result after 2 * ?HEAL_MS -> ct:fail(traffic_did_not_stop) end.

traffic_loop(S = #{stop := From, outstanding := Out}) when From =/= undefined, map_size(Out) =:= 0 ->
    traffic_done(S);
traffic_loop(S = #{conn := C, joins := Joins}) ->
    S1 = traffic_send(S),
    receive
        {stop, From} ->
            erlang:send_after(10000, self(), give_up),
            traffic_loop(S1#{stop := From});
        give_up ->
            traffic_done(S1);
        {answered, From} ->
            From ! {self(), answered, maps:get(answered, S1)},
            traffic_loop(S1);
        {ws, C, {text, Text}} ->
            {ok, Msg} = hornbeam_nif:json_decode(Text),
            traffic_loop(traffic_frame(Msg, S1, Joins));
        {ws, C, _Closed} ->
            traffic_done(S1#{disrupted := reconnect})
    after 5 ->
        traffic_loop(S1)
    end.

traffic_send(S = #{disrupted := false, stop := undefined, outstanding := Out, sent := Sent,
                   conn := C, joins := Joins}) when map_size(Out) < 20 ->
    Ref = ref(),
    {Topic, Event} = case Sent rem 2 of
                         0 -> {?ROOM, <<"echo">>};
                         1 -> {?TRAFFIC_LOBBY, <<"read">>}
                     end,
    ok = ?C:push(C, maps:get(Topic, Joins), Ref, Topic, Event, #{}),
    S#{outstanding := Out#{Ref => Topic}, sent := Sent + 1};
traffic_send(S) ->
    S.

traffic_frame([_, Ref, _, <<"phx_reply">>, _], S = #{outstanding := Out, answered := N}, _Joins)
  when is_map_key(Ref, Out) ->
    S#{outstanding := maps:remove(Ref, Out), answered := N + 1};
traffic_frame([JoinRef, _, Topic, Down, _], S, Joins)
  when Down =:= <<"phx_error">>; Down =:= <<"phx_close">> ->
    case Joins of
        #{Topic := JoinRef} -> traffic_done(S#{disrupted := rejoin});
        _ -> S
    end;
traffic_frame(_, S, _Joins) ->
    S.

%% Stopped (or disrupted): answer the test process once it asks.
traffic_done(S = #{conn := C, outstanding := Out}) ->
    ?C:close(C),
    Result = (maps:with([sent, answered, disrupted], S))#{lost => map_size(Out)},
    From = case S of
               #{stop := undefined} -> receive {stop, F} -> F end;
               #{stop := F} -> F
           end,
    From ! {self(), traffic, Result},
    exit(normal).

%% --- sessions: a client joined to both channels -----------------------------------------

%% Connect and join both topics, from scratch again if the connection
%% closes meanwhile (a part of the server is still restarting).
session(Port, Name) ->
    retry(fun() ->
                  S = #{name => Name, port => Port, conn => connect_retry(Port), joins => #{},
                        presence_state => #{}},
                  case join_all(S, [?ROOM, ?LOBBY]) of
                      {ok, S1} -> {ok, S1};
                      closed -> ?C:close(maps:get(conn, S)), {error, closed}
                  end
          end).

join_all(S, []) -> {ok, S};
join_all(S, [Topic | Rest]) ->
    case join_retry(S, Topic) of
        {ok, S1} -> join_all(S1, Rest);
        closed -> closed
    end.

join_payload(?ROOM, Name) ->
    #{<<"mode">> => <<"track">>, <<"key">> => <<"user:", Name/binary>>,
      <<"meta">> => #{<<"name">> => Name}};
join_payload(?LOBBY, Name) ->
    #{<<"name">> => Name}.

connect_retry(Port) ->
    retry(fun() ->
                  case gen_tcp:connect({127, 0, 0, 1}, Port, [], 1000) of
                      {ok, Probe} ->
                          gen_tcp:close(Probe),
                          case ?C:connect(Port, "/ws?vsn=2.0.0") of
                              {ok, C} -> {ok, C};
                              Error -> Error
                          end;
                      Error ->
                          Error
                  end
          end).

%% Join Topic until the join is answered ok (while a part restarts, a join
%% can be refused, e.g. "join crashed" when presence is not back yet):
%% {ok, Session}, or closed when the connection ends.
join_retry(S = #{name := Name}, Topic) ->
    retry(fun() ->
                  JoinRef = ref(),
                  C = maps:get(conn, S),
                  ok = ?C:push(C, JoinRef, JoinRef, Topic, <<"phx_join">>, join_payload(Topic, Name)),
                  case await(C, Topic, JoinRef, JoinRef, 10000) of
                      {reply, #{<<"status">> := <<"ok">>}, Presence} ->
                          {ok, {ok, S#{joins := (maps:get(joins, S))#{Topic => JoinRef},
                                       presence_state := (maps:get(presence_state, S))#{Topic => Presence}}}};
                      closed ->
                          {ok, closed};
                      Other ->
                          {error, Other}
                  end
          end).

%% Bring a session back to serving; returns it with the most disruptive
%% thing it needed: kept, rejoin or reconnect.
heal(Port, S) ->
    heal(Port, S, kept, erlang:monotonic_time(millisecond) + ?HEAL_MS).

heal(Port, S, Outcome, Deadline) ->
    case erlang:monotonic_time(millisecond) > Deadline of
        true -> ct:fail({did_not_heal, maps:get(name, S), Outcome});
        false -> ok
    end,
    case probe_all(S, [?ROOM, ?LOBBY]) of
        ok ->
            {S, Outcome};
        {rejoin, Topic} ->
            case join_retry(S, Topic) of
                {ok, S1} -> heal(Port, S1, worst(Outcome, rejoin), Deadline);
                closed -> heal(Port, S, worst(Outcome, rejoin), Deadline)   %% the probe sees it closed
            end;
        retry ->
            timer:sleep(100),
            heal(Port, S, Outcome, Deadline);
        reconnect ->
            ?C:close(maps:get(conn, S)),
            Fresh = session(Port, maps:get(name, S)),
            heal(Port, Fresh, reconnect, Deadline)
    end.

probe_all(_S, []) -> ok;
probe_all(S, [Topic | Rest]) ->
    case probe(S, Topic) of
        ok -> probe_all(S, Rest);
        Other -> Other
    end.

%% One event on Topic that must be answered: ok, or what the client must do.
probe(S = #{conn := C}, Topic) ->
    JoinRef = maps:get(Topic, maps:get(joins, S)),
    Ref = ref(),
    {Event, Payload} = case Topic of
                           ?ROOM -> {<<"echo">>, #{<<"n">> => Ref}};
                           ?LOBBY -> {<<"read">>, #{}}
                       end,
    ok = ?C:push(C, JoinRef, Ref, Topic, Event, Payload),
    case await(C, Topic, JoinRef, Ref, 10000) of
        {reply, #{<<"status">> := <<"ok">>}, _} -> ok;
        %% the channel is gone (its phx_error was read while waiting on another topic)
        {reply, #{<<"status">> := <<"error">>, <<"response">> := #{<<"reason">> := <<"unmatched topic">>}}, _} ->
            {rejoin, Topic};
        %% e.g. the Python pool was restarting: "worker_crashed"; ask again
        {reply, #{<<"status">> := <<"error">>} = Reply, _} -> ct:log("error reply ~p", [Reply]), retry;
        channel_down -> {rejoin, Topic};
        closed -> reconnect;
        timeout -> ct:fail({no_answer, maps:get(name, S), Topic, Event})
    end.

%% Wait for the reply to Ref (with the presence_state after a join reply),
%% the end of the channel JoinRef, or the end of the connection.
await(C, Topic, JoinRef, Ref, Timeout) ->
    case ?C:recv_all_json(C, Timeout) of
        [JoinRef, Ref, Topic, <<"phx_reply">>, Payload] when Ref =:= JoinRef ->
            case Payload of
                #{<<"status">> := <<"ok">>} ->
                    case ?C:recv_all_json(C, Timeout) of
                        [JoinRef, null, Topic, <<"presence_state">>, P] -> {reply, Payload, P};
                        {close, _, _} -> closed;
                        closed -> closed;
                        Other -> ct:fail({expected_presence_state, Other})
                    end;
                _ ->
                    {reply, Payload, #{}}
            end;
        [_, Ref, Topic, <<"phx_reply">>, Payload] ->
            {reply, Payload, #{}};
        [JoinRef, _, Topic, Down, _] when Down =:= <<"phx_error">>; Down =:= <<"phx_close">> ->
            channel_down;
        {close, _, _} -> closed;
        closed -> closed;
        timeout -> timeout;
        _Other -> await(C, Topic, JoinRef, Ref, Timeout)
    end.

expect_broadcast(S = #{conn := C}, Topic, Id) ->
    case ?C:recv_all_json(C, 5000) of
        [null, null, Topic, <<"after_kill">>, #{<<"id">> := Id}] -> ok;
        timeout -> ct:fail({broadcast_not_received, maps:get(name, S), Topic});
        {close, _, _} = Close -> ct:fail({closed, maps:get(name, S), Close});
        closed -> ct:fail({closed, maps:get(name, S)});
        _ -> expect_broadcast(S, Topic, Id)
    end.

%% Presence on both topics is exactly one meta for each of Names.
wait_presence(Names) ->
    Keys = lists:sort([<<"user:", N/binary>> || N <- Names]),
    case wait_presence_keys(Keys) of
        ok -> ok;
        Timeout ->
            ct:log("presence ~p, wanted ~p", [[hornbeam_presence:list(T) || T <- [?ROOM, ?LOBBY]], Keys]),
            Timeout
    end.

wait_presence_keys(Keys) ->
    wait_until(fun() ->
                       lists:all(fun(Topic) ->
                                         List = hornbeam_presence:list(Topic),
                                         lists:sort(maps:keys(List)) =:= Keys andalso
                                             lists:all(fun(#{<<"metas">> := M}) -> length(M) =:= 1 end,
                                                       maps:values(List))
                                 end, [?ROOM, ?LOBBY])
               end).

worst(A, B) ->
    case level(A) >= level(B) of true -> A; false -> B end.

level(kept) -> 0;
level(rejoin) -> 1;
level(reconnect) -> 2.

ref() ->
    integer_to_binary(erlang:unique_integer([positive])).

%% --- finding processes ----------------------------------------------------------------

named(Name) -> fun() -> whereis(Name) end.

child(Sup, Id) when is_pid(Sup); is_atom(Sup) ->
    case lists:keyfind(Id, 1, supervisor:which_children(Sup)) of
        {Id, Pid, _, _} when is_pid(Pid) -> Pid;
        _ -> undefined
    end;
child(undefined, _Id) ->
    undefined.

children(Sup) ->
    [Pid || {_, Pid, _, _} <- supervisor:which_children(Sup), is_pid(Pid)].

%% The channel process of the client Name on Topic (its assigns hold its key).
channel_pid(Topic, Name) ->
    Key = <<"user:", Name/binary>>,
    hd([Pid || {_, Pid, _, _} <- supervisor:which_children(hornbeam_channel_sup), is_pid(Pid),
               #{topic := T, assigns := #{<<"key">> := K}} <- [catch socket_of(Pid)],
               T =:= Topic, K =:= Key]).

socket_of(Pid) ->
    gen_server:call(Pid, socket).

%% The connection process of the client Name.
connection_pid(Name) ->
    maps:get(transport_pid, socket_of(channel_pid(?ROOM, Name))).

find({client, Find}) -> Find();
find(Find) -> Find().

pids(Pid) when is_pid(Pid) -> [Pid];
pids(Pids) when is_list(Pids), Pids =/= [] -> Pids.

%% Every killed process has a successor (for a list: as many new ones).
replaced(Old, Find) ->
    case catch Find() of
        Pid when is_pid(Pid) -> not lists:member(Pid, Old);
        Pids when is_list(Pids) -> length(Pids) =:= length(Old) andalso Pids -- Old =:= Pids;
        _ -> false
    end.

%% --- bad arguments ------------------------------------------------------------------

broadcast_bad_arguments_are_errors_in_the_caller(Config) ->
    S = session(?config(port, Config), <<"c1">>),
    Relay = whereis(hornbeam_pubsub),
    Bad = [{room_atom, <<"e">>, #{}}, {?ROOM, new_msg, #{}}, {?ROOM, <<"e">>, #{a => self()}},
           {<<255, 0>>, <<"e">>, #{}}, {?ROOM, <<255>>, #{}}, {?ROOM, <<"e">>, {json, 42}},
           {?ROOM, <<"e">>, {json, [<<"{">>, foo]}}, {?ROOM, "e", #{}}],
    [begin
         ?assertMatch({error, _}, hornbeam:broadcast(T, E, P), {T, E, P}),
         ?assertMatch({error, _}, hornbeam:local_broadcast(T, E, P), {T, E, P}),
         ?assertMatch({error, _}, hornbeam:broadcast_from(self(), T, E, P), {T, E, P})
     end || {T, E, P} <- Bad],
    ?assertEqual({error, {bad_event, new_msg}}, hornbeam:broadcast(?ROOM, new_msg, #{})),
    ?assertEqual({error, {bad_topic, room}}, hornbeam:broadcast(room, <<"e">>, #{})),
    ?assertEqual({error, {bad_from, not_a_pid}}, hornbeam:broadcast_from(not_a_pid, ?ROOM, <<"e">>, #{})),
    ?assertEqual({error, {not_json, {json, 42}}}, hornbeam:broadcast(?ROOM, <<"e">>, {json, 42})),
    ?assertEqual({error, {bad_options, [{bind, "127.0.0.1:0"}]}}, hornbeam:start(none, [{bind, "127.0.0.1:0"}])),
    %% nothing reached the relay or the client, and a good broadcast still does
    ?assertEqual(Relay, whereis(hornbeam_pubsub)),
    ok = hornbeam:broadcast(?ROOM, <<"after_kill">>, #{<<"id">> => 1}),
    ok = expect_broadcast(S, ?ROOM, 1),
    ok = hornbeam:broadcast(?ROOM, <<"after_kill">>, {json, [<<"{\"id\":">>, "2}"]}),
    ok = expect_broadcast(S, ?ROOM, 2).

presence_bad_arguments_are_errors_in_the_caller(_Config) ->
    Shard = hornbeam_presence_shard:whereis_shard(0),
    T = <<"room:args">>,
    Me = self(),
    ?assertEqual({error, {bad_owner, me}}, hornbeam_presence:track(me, T, <<"k">>, #{})),
    ?assertEqual({error, {bad_topic, room}}, hornbeam_presence:track(Me, room, <<"k">>, #{})),
    ?assertEqual({error, {bad_topic, <<255>>}}, hornbeam_presence:track(Me, <<255>>, <<"k">>, #{})),
    ?assertEqual({error, {bad_key, k}}, hornbeam_presence:track(Me, T, k, #{})),
    ?assertEqual({error, meta_must_be_a_map}, hornbeam_presence:track(Me, T, <<"k">>, online)),
    ?assertEqual({error, meta_not_json}, hornbeam_presence:track(Me, T, <<"k">>, #{a => Me})),
    ?assertEqual({error, meta_not_json}, hornbeam_presence:track(Me, T, <<"k">>, {json, 42})),
    ?assertEqual({error, {bad_topic, room}}, hornbeam_presence:update(Me, room, <<"k">>, #{})),
    ?assertEqual({error, meta_must_be_a_map}, hornbeam_presence:update(Me, T, <<"k">>, [])),
    ?assertEqual({error, {bad_owner, "me"}}, hornbeam_presence:untrack("me", T, <<"k">>)),
    ?assertEqual({error, {bad_key, 1}}, hornbeam_presence:untrack(Me, T, 1)),
    ?assertEqual({error, {bad_topic, room}}, hornbeam_presence:list(room)),
    ?assertEqual({error, {bad_topic, <<255>>}}, hornbeam_presence:list(<<255>>)),
    ?assertEqual({error, {bad_key, k}}, hornbeam_presence:get(T, k)),
    ?assertEqual({error, {bad_topic, 1}}, hornbeam_presence:get(1, <<"k">>)),
    %% the shard saw none of it and still works
    ?assertEqual(Shard, hornbeam_presence_shard:whereis_shard(0)),
    Owner = spawn(fun() -> receive stop -> ok end end),
    ok = hornbeam_presence:track(Owner, T, <<"k">>, #{<<"a">> => 1}),
    ?assertMatch(#{<<"k">> := #{<<"metas">> := [#{<<"a">> := 1}]}}, hornbeam_presence:list(T)),
    Owner ! stop,
    ok = wait_until(fun() -> hornbeam_presence:list(T) =:= #{} end).

relay_drops_malformed_messages(Config) ->
    S = session(?config(port, Config), <<"c1">>),
    Relay = whereis(hornbeam_pubsub),
    [Relay ! Msg || Msg <- [{'$hb_remote_broadcast', ?ROOM, new_msg, <<"{}">>, none},
                            {'$hb_remote_broadcast', room, <<"e">>, <<"{}">>, none},
                            {'$hb_remote_broadcast', ?ROOM, <<"e">>, 42, none},
                            {'$hb_remote_broadcast', ?ROOM, <<"e">>, [<<"{">>, foo], none},
                            {'$hb_remote_broadcast', ?ROOM, <<"e">>, <<"{}">>, not_a_pid},
                            {'$hb_remote_broadcast', <<255>>, <<"e">>, <<"{}">>, none},
                            {'$hb_remote_broadcast', ?ROOM},
                            garbage]],
    gen_server:call(Relay, sync),   %% answered after the messages above
    ?assertEqual(Relay, whereis(hornbeam_pubsub)),
    Relay ! {'$hb_remote_broadcast', ?ROOM, <<"after_kill">>, <<"{\"id\":7}">>, none},
    ok = expect_broadcast(S, ?ROOM, 7).

shard_drops_malformed_messages(_Config) ->
    Shard = hornbeam_presence_shard:whereis_shard(0),
    Clock = hornbeam_nif:presence_clock(hornbeam_nif:presence_new(<<"other@node">>, 1)),
    [Shard ! Msg || Msg <- [{'$hb_presence', heartbeat, not_a_pid, Clock, none},
                            {'$hb_presence', heartbeat, self(), not_a_clock, none},
                            {'$hb_presence', heartbeat, self(), <<"garbage">>, <<"garbage">>},
                            {'$hb_presence', heartbeat, self(), Clock, <<"garbage delta">>},
                            {'$hb_presence', heartbeat, self(), Clock, [no, a, delta]},
                            {'$hb_presence', transfer_req, self(), <<"garbage">>},
                            {'$hb_presence', transfer_req, "me", Clock},
                            {'$hb_presence', transfer, self(), <<"garbage state">>},
                            {'$hb_presence', transfer, self(), not_a_binary},
                            {'$hb_presence', what},
                            garbage]],
    %% a caller that skips hornbeam_presence gets an error, not a crash
    ?assertEqual({error, bad_request}, gen_server:call(Shard, {track, me, room, k, #{}})),
    ?assertMatch({error, _}, gen_server:call(Shard, {track, self(), <<255>>, <<"k">>, {json, <<"{}">>}})),
    ?assertMatch({error, _}, gen_server:call(Shard, {track, self(), <<"t">>, <<"k">>, {json, [1 | 2]}})),
    ?assertEqual(Shard, hornbeam_presence_shard:whereis_shard(0)),
    Owner = spawn(fun() -> receive stop -> ok end end),
    ok = hornbeam_presence:track(Owner, <<"room:s">>, <<"k">>, #{}),
    ?assertMatch(#{<<"k">> := _}, hornbeam_presence:list(<<"room:s">>)),
    Owner ! stop.

%% An atom event used to crash the relay of every node with subscribers.
bad_broadcast_on_one_node_crashes_no_relay_in_the_cluster(Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_heal_ct) of
        {skip, _} = Skip ->
            Skip;
        ok ->
            {Peer, Node} = start_peer(),
            try
                S = session(?config(port, Config), <<"c1">>),
                ok = wait_until(fun() ->
                                        length(pg:get_members(hornbeam, relays)) =:= 2 andalso
                                            erpc:call(Node, pg, get_members, [hornbeam, {topic, ?ROOM}]) =/= []
                                end),
                Relays = {whereis(hornbeam_pubsub), erpc:call(Node, erlang, whereis, [hornbeam_pubsub])},
                ?assertMatch({error, {bad_event, _}},
                             erpc:call(Node, hornbeam, broadcast, [?ROOM, new_msg, #{}])),
                %% a peer running other code sends a malformed message: dropped
                RemoteRelay = erpc:call(Node, erlang, whereis, [hornbeam_pubsub]),
                RemoteRelay ! {'$hb_remote_broadcast', ?ROOM, new_msg, <<"{}">>, none},
                whereis(hornbeam_pubsub) ! {'$hb_remote_broadcast', ?ROOM, new_msg, <<"{}">>, none},
                ok = erpc:call(Node, hornbeam, broadcast, [?ROOM, <<"after_kill">>, #{<<"id">> => 3}]),
                ok = expect_broadcast(S, ?ROOM, 3),
                ?assertEqual(Relays, {whereis(hornbeam_pubsub),
                                      erpc:call(Node, erlang, whereis, [hornbeam_pubsub])})
            after
                peer:stop(Peer)
            end
    end.

%% A peer node running hornbeam (its relay joins ours through pg) with one
%% subscriber to ?ROOM so that broadcasts from here reach its relay.
start_peer() ->
    Dirs = lists:usort([filename:dirname(code:which(M))
                        || M <- [hornbeam, hornbeam_test_channel, hornbeam_ws_client]]),
    Args = ["-setcookie", atom_to_list(erlang:get_cookie())] ++ lists:append([["-pa", D] || D <- Dirs]),
    {ok, Pid, Node} = peer:start_link(#{name => peer:random_name(heal), host => "127.0.0.1",
                                        longnames => true, args => Args}),
    ok = erpc:call(Node, fun() ->
        {ok, _} = application:ensure_all_started(hornbeam),
        ok = hornbeam:start(none, #{bind => "127.0.0.1:0",
                                    channels => [{<<"room:*">>, hornbeam_test_channel}]}),
        Me = self(),
        spawn(fun() ->
                      ok = hornbeam_pubsub:subscribe(?ROOM),
                      Me ! subscribed,
                      receive never -> ok end
              end),
        receive subscribed -> ok end
    end),
    true = net_kernel:connect_node(Node),
    {Pid, Node}.

%% --- helpers ----------------------------------------------------------------------

retry(Fun) ->
    retry(Fun, erlang:monotonic_time(millisecond) + ?HEAL_MS, undefined).

retry(Fun, Deadline, Last) ->
    case erlang:monotonic_time(millisecond) > Deadline of
        true -> ct:fail({gave_up, Last});
        false ->
            case Fun() of
                {ok, Result} -> Result;
                Other -> timer:sleep(50), retry(Fun, Deadline, Other)
            end
    end.

wait_until(Fun) -> wait_until(Fun, ?HEAL_MS div 20).

wait_until(Fun, 0) ->
    case Fun() of true -> ok; _ -> {error, timeout} end;
wait_until(Fun, N) ->
    case catch Fun() of
        true -> ok;
        _ -> timer:sleep(20), wait_until(Fun, N - 1)
    end.
