%% The long-poll transport (hornbeam_longpoll) over real HTTP on loopback,
%% speaking what phoenix.js's LongPoll sends: sessions, polls, ndjson POSTs,
%% the same channels, broadcasts and presence as WebSocket clients (a real
%% WebSocket client alongside), expiry, limits, and a session owned by one
%% node of a two-node `peer' cluster reached through the other.
-module(hornbeam_longpoll_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(TIMEOUT, 15000).

all() ->
    [get_without_token_opens_a_session_with_a_token_naming_this_node,
     join_push_and_reply_travel_over_post_and_poll,
     broadcast_reaches_a_longpoll_client_and_a_websocket_client_alike,
     presence_state_and_diff_arrive_over_longpoll,
     waiting_poll_is_answered_as_soon_as_a_message_arrives,
     poll_without_messages_answers_204_after_longpoll_poll_timeout,
     heartbeat_over_post_is_answered,
     unknown_or_malformed_token_is_410,
     idle_session_expires_and_its_channels_leave,
     a_poll_the_client_abandoned_does_not_keep_the_session_alive,
     buffer_over_max_send_queue_ends_the_session,
     invalid_message_in_a_post_ends_only_that_session,
     slow_channel_holds_posts_and_too_many_waiting_posts_end_the_session,
     binary_push_arrives_base64_and_binary_replies_are_not_polled,
     origin_check_applies_403,
     connect_refusal_is_403_and_connect_info_names_the_transport,
     longpoll_max_sessions_refuses_more_sessions,
     a_token_connect_param_is_not_taken_for_a_session_token,
     python_on_connect_and_channels_serve_longpoll_clients,
     other_methods_are_405_and_options_is_a_cors_preflight,
     killed_session_supervisor_means_410_then_a_new_session_works,
     {group, cluster}].

groups() ->
    [{cluster, [], [session_on_one_node_is_reached_through_another]}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    ok = application:stop(hornbeam).

init_per_group(cluster, Config) ->
    case hornbeam_ct_peer:ensure_distributed(hornbeam_ct_lp) of
        ok ->
            Peers = [{_, A, _}, {_, B, _}] = [start_peer(N) || N <- [lpa, lpb]],
            true = erpc:call(A, net_kernel, connect_node, [B]),
            [{peers, Peers} | Config];
        {skip, _} = Skip -> Skip
    end.

end_per_group(cluster, Config) ->
    [peer:stop(Pid) || {Pid, _, _} <- ?config(peers, Config)],
    ok.

init_per_testcase(session_on_one_node_is_reached_through_another, Config) ->
    Config;
init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    catch unregister(hornbeam_test_observer),
    true = register(hornbeam_test_observer, self()),
    Opts = maps:merge(#{bind => "127.0.0.1:0",
                        channels => [{<<"room:*">>, hornbeam_test_channel}],
                        longpoll_poll_timeout => 1000},
                      testcase_opts(TC)),
    ok = hornbeam:start(none, Opts),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    catch unregister(hornbeam_test_observer),
    _ = hornbeam:stop(),
    ok.

testcase_opts(waiting_poll_is_answered_as_soon_as_a_message_arrives) ->
    #{longpoll_poll_timeout => 30000};
testcase_opts(idle_session_expires_and_its_channels_leave) ->
    #{longpoll_timeout => 1500};
testcase_opts(a_poll_the_client_abandoned_does_not_keep_the_session_alive) ->
    #{longpoll_timeout => 1500, longpoll_poll_timeout => 60000};
testcase_opts(buffer_over_max_send_queue_ends_the_session) ->
    #{max_send_queue => 4096};
testcase_opts(slow_channel_holds_posts_and_too_many_waiting_posts_end_the_session) ->
    #{max_pending_events => 2};
testcase_opts(origin_check_applies_403) ->
    #{public_hosts => [<<"chat.example.com">>]};
testcase_opts(connect_refusal_is_403_and_connect_info_names_the_transport) ->
    Observer = self(),
    #{connect => fun(#{<<"user">> := <<"mallory">>}, _Info) -> {error, banned};
                    (Params, Info) -> Observer ! {connect, Params, Info}, {ok, #{}}
                 end};
testcase_opts(a_token_connect_param_is_not_taken_for_a_session_token) ->
    Observer = self(),
    #{connect => fun(Params, Info) -> Observer ! {connect, Params, Info}, {ok, #{}} end};
testcase_opts(python_on_connect_and_channels_serve_longpoll_clients) ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    #{channels => [], workers => 1, channel_modules => ["fx_room", "fx_connect"],
      pythonpath => [filename:join([filename:dirname(Src), "python", "fixtures"])]};
testcase_opts(longpoll_max_sessions_refuses_more_sessions) ->
    #{longpoll_max_sessions => 1};
testcase_opts(_) ->
    #{}.

%% --- cases ---------------------------------------------------------------------------

get_without_token_opens_a_session_with_a_token_naming_this_node(Config) ->
    {200, Headers, #{<<"status">> := 410, <<"token">> := Token, <<"messages">> := []}} =
        request(port(Config), "GET", "/ws/longpoll?vsn=2.0.0", [], <<>>),
    ?assertEqual(<<"application/json; charset=utf-8">>, proplists:get_value(<<"content-type">>, Headers)),
    {ok, Node, _Key} = hornbeam_longpoll:decode_token(Token),
    ?assertEqual(node(), Node),
    %% 192 random bits: two sessions never share a token
    #{<<"token">> := Token2} = session_body(port(Config)),
    ?assertNotEqual(Token, Token2),
    %% the session answers a poll (none waiting: 204 after longpoll_poll_timeout)
    ?assertMatch(#{<<"status">> := 204, <<"token">> := Token, <<"messages">> := []},
                 poll(port(Config), Token)).

join_push_and_reply_travel_over_post_and_poll(Config) ->
    Port = port(Config),
    Token = session(Port),
    %% one ndjson POST with two messages, as phoenix.js 1.8 batches them
    ?assertEqual(#{<<"status">> => 200},
                 post(Port, Token, [[<<"1">>, <<"1">>, <<"room:1">>, <<"phx_join">>, #{}],
                                    [<<"1">>, <<"2">>, <<"room:1">>, <<"echo">>, #{<<"x">> => 1}]])),
    Msgs = poll_messages(Port, Token, 3),
    ?assertMatch([[<<"1">>, <<"1">>, <<"room:1">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                  [<<"1">>, null, <<"room:1">>, <<"presence_state">>, #{}],
                  [<<"1">>, <<"2">>, <<"room:1">>, <<"phx_reply">>,
                   #{<<"status">> := <<"ok">>, <<"response">> := #{<<"x">> := 1}}]], Msgs),
    %% a single JSON body (not ndjson) is one message, as older clients send
    {200, _, #{<<"status">> := 200}} =
        request(Port, "POST", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Token),
                [{"content-type", "application/json"}],
                json([<<"1">>, <<"3">>, <<"room:1">>, <<"push">>, #{<<"y">> => 2}])),
    ?assertMatch([[<<"1">>, null, <<"room:1">>, <<"pushed">>, #{<<"y">> := 2}]],
                 poll_messages(Port, Token, 1)).

broadcast_reaches_a_longpoll_client_and_a_websocket_client_alike(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:b">>),
    {ok, Ws} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(Ws, <<"9">>, <<"9">>, <<"room:b">>, <<"phx_join">>, #{}),
    ?assertMatch([_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], ?C:recv_json(Ws)),
    ?assertMatch([_, _, _, <<"presence_state">>, _], ?C:recv_all_json(Ws, ?TIMEOUT)),
    %% from the long-poll client
    post(Port, Token, [[<<"1">>, <<"5">>, <<"room:b">>, <<"broadcast">>, #{<<"from">> => <<"lp">>}]]),
    ?assertMatch([null, null, <<"room:b">>, <<"shout">>, #{<<"from">> := <<"lp">>}], ?C:recv_json(Ws)),
    ?assertMatch([[null, null, <<"room:b">>, <<"shout">>, #{<<"from">> := <<"lp">>}],
                  [<<"1">>, <<"5">>, <<"room:b">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}]],
                 poll_messages(Port, Token, 2)),
    %% from the WebSocket client, and from the server API
    ok = ?C:push(Ws, <<"9">>, <<"10">>, <<"room:b">>, <<"broadcast">>, #{<<"from">> => <<"ws">>}),
    ok = hornbeam:broadcast(<<"room:b">>, <<"news">>, #{<<"n">> => 7}),
    %% (two senders: either order)
    ?assertMatch([[null, null, <<"room:b">>, <<"news">>, #{<<"n">> := 7}],
                  [null, null, <<"room:b">>, <<"shout">>, #{<<"from">> := <<"ws">>}]],
                 lists:sort(fun([_, _, _, E1, _], [_, _, _, E2, _]) -> E1 =< E2 end,
                            poll_messages(Port, Token, 2))).

presence_state_and_diff_arrive_over_longpoll(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:p">>),
    {ok, Ws} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(Ws, <<"1">>, <<"1">>, <<"room:p">>, <<"phx_join">>,
                 #{<<"mode">> => <<"track">>, <<"key">> => <<"ana">>}),
    [#{<<"joins">> := Joins}] = [P || [_, _, <<"room:p">>, <<"presence_diff">>, P]
                                          <- poll_messages(Port, Token, 1)],
    ?assertMatch(#{<<"ana">> := #{<<"metas">> := [_]}}, Joins),
    %% and a long-poll client tracking itself is in the next joiner's presence_state
    post(Port, Token, [[<<"2">>, <<"2">>, <<"room:q">>, <<"phx_join">>,
                        #{<<"mode">> => <<"track">>, <<"key">> => <<"bob">>}]]),
    _ = poll_messages(Port, Token, 2),
    {ok, Ws2} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(Ws2, <<"1">>, <<"1">>, <<"room:q">>, <<"phx_join">>, #{}),
    ?assertMatch([_, _, _, <<"phx_reply">>, _], ?C:recv_all_json(Ws2, ?TIMEOUT)),
    ?assertMatch([_, _, _, <<"presence_state">>, #{<<"bob">> := _}], ?C:recv_all_json(Ws2, ?TIMEOUT)).

waiting_poll_is_answered_as_soon_as_a_message_arrives(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:w">>),
    Self = self(),
    %% a poll that waits (longpoll_poll_timeout is 30 s here)...
    spawn_link(fun() -> Self ! {polled, poll(Port, Token)} end),
    timer:sleep(300),
    T0 = erlang:monotonic_time(millisecond),
    ok = hornbeam:broadcast(<<"room:w">>, <<"now">>, #{}),
    receive
        {polled, #{<<"status">> := 200, <<"messages">> := [M]}} ->
            ?assertMatch([null, null, <<"room:w">>, <<"now">>, #{}], decode(M)),
            %% well before the 30 s poll timeout
            ?assert(erlang:monotonic_time(millisecond) - T0 < 10000)
    after ?TIMEOUT -> ct:fail(poll_not_answered)
    end.

poll_without_messages_answers_204_after_longpoll_poll_timeout(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:e">>),
    T0 = erlang:monotonic_time(millisecond),
    ?assertMatch(#{<<"status">> := 204, <<"messages">> := []}, poll(Port, Token)),
    %% longpoll_poll_timeout is 1000 here: not answered before it
    ?assert(erlang:monotonic_time(millisecond) - T0 >= 900).

heartbeat_over_post_is_answered(Config) ->
    Port = port(Config),
    Token = session(Port),
    post(Port, Token, [[null, <<"7">>, <<"phoenix">>, <<"heartbeat">>, #{}]]),
    ?assertMatch([[null, <<"7">>, <<"phoenix">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}]],
                 poll_messages(Port, Token, 1)).

unknown_or_malformed_token_is_410(Config) ->
    Port = port(Config),
    Real = session(Port),
    {ok, _, _} = hornbeam_longpoll:decode_token(Real),
    Raw = b64url_decode(Real),
    %% same node, another secret
    Forged = b64url_encode(<<(binary:part(Raw, 0, byte_size(Raw) - 24))/binary,
                             (crypto:strong_rand_bytes(24))/binary>>),
    NoNode = b64url_encode(<<1, 9, "nobody@xy", (crypto:strong_rand_bytes(24))/binary>>),
    %% a node name that exists as an atom but is no connected node
    Ghost = atom_to_binary(list_to_atom("ghost@127.0.0.1")),
    NotConnected = b64url_encode(<<1, (byte_size(Ghost)), Ghost/binary, (crypto:strong_rand_bytes(24))/binary>>),
    Heartbeat = <<"[null,\"1\",\"phoenix\",\"heartbeat\",{}]">>,
    %% session tokens whose session does not exist: 410, no new session
    lists:foreach(
      fun(Dead) ->
              Q = "/ws/longpoll?vsn=2.0.0&token=" ++ uri_string:quote(Dead),
              ?assertEqual({200, #{<<"status">> => 410}}, strip(request(Port, "GET", Q, [], <<>>))),
              ?assertEqual({200, #{<<"status">> => 410}}, strip(request(Port, "POST", Q, ndjson(), Heartbeat)))
      end, [Forged, NoNode, NotConnected]),
    ?assertEqual(1, ets:info(hornbeam_longpoll:table(), size)),
    %% anything else is no session token: a POST gets 410, a GET is a first
    %% contact (the app's own `token' connect param, as phoenix.js sends it)
    lists:foreach(
      fun(Other) ->
              Q = "/ws/longpoll?vsn=2.0.0&token=" ++ uri_string:quote(Other),
              ?assertEqual({200, #{<<"status">> => 410}}, strip(request(Port, "POST", Q, ndjson(), Heartbeat))),
              ?assertMatch({200, #{<<"status">> := 410, <<"token">> := _}}, strip(request(Port, "GET", Q, [], <<>>)))
      end, [<<"garbage">>, <<>>, <<"%%%">>]),
    %% POST without a token
    ?assertEqual({200, #{<<"status">> => 410}},
                 strip(request(Port, "POST", "/ws/longpoll?vsn=2.0.0", ndjson(), <<"[]">>))),
    %% the real session is untouched
    ?assertMatch(#{<<"status">> := 204}, poll(Port, Real)).

idle_session_expires_and_its_channels_leave(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:idle">>),
    Chan = channel_pid(<<"room:idle">>),
    Mon = monitor(process, Chan),
    %% nobody polls for longpoll_timeout (1500 ms): the session and its channel go
    receive {'DOWN', Mon, process, Chan, _} -> ok after ?TIMEOUT -> ct:fail(channel_still_there) end,
    ?assertMatch(#{<<"status">> := 410}, poll(Port, Token)),
    ?assertEqual(0, ets:info(hornbeam_longpoll:table(), size)).

a_poll_the_client_abandoned_does_not_keep_the_session_alive(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:gone">>),
    Chan = channel_pid(<<"room:gone">>),
    Mon = monitor(process, Chan),
    %% a poll (it would wait 60 s), and the client closes its connection
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], ?TIMEOUT),
    ok = gen_tcp:send(S, ["GET /ws/longpoll?vsn=2.0.0&token=", Token, " HTTP/1.1\r\nhost: x\r\n\r\n"]),
    timer:sleep(500),
    ok = gen_tcp:close(S),
    %% the session stops counting that poll as alive: it expires after longpoll_timeout
    receive {'DOWN', Mon, process, Chan, _} -> ok after ?TIMEOUT -> ct:fail(session_kept_alive) end.

buffer_over_max_send_queue_ends_the_session(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:slow">>),
    Chan = channel_pid(<<"room:slow">>),
    Mon = monitor(process, Chan),
    Big = binary:copy(<<"x">>, 1000),
    %% nobody polls; 5 × ~1 KB is over max_send_queue (4096)
    [ok = hornbeam:broadcast(<<"room:slow">>, <<"big">>, #{<<"b">> => Big}) || _ <- lists:seq(1, 5)],
    receive {'DOWN', Mon, process, Chan, _} -> ok after ?TIMEOUT -> ct:fail(session_still_there) end,
    ?assertMatch(#{<<"status">> := 410}, poll(Port, Token)).

invalid_message_in_a_post_ends_only_that_session(Config) ->
    Port = port(Config),
    Other = joined_session(Port, <<"room:ok">>),
    Bad = session(Port),
    {200, _, #{<<"status">> := Status}} =
        request(Port, "POST", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Bad), ndjson(),
                <<"[\"1\",\"1\",\"room:1\",\"phx_join\",{}\n">>),
    ?assertEqual(410, Status),
    ?assertMatch(#{<<"status">> := 410}, poll(Port, Bad)),
    ?assertMatch(#{<<"status">> := 204}, poll(Port, Other)).

slow_channel_holds_posts_and_too_many_waiting_posts_end_the_session(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:slow">>),
    Self = self(),
    PostAsync = fun(Tag, Msg) ->
                        spawn_link(fun() -> Self ! {Tag, catch post(Port, Token, [Msg])} end),
                        timer:sleep(200)
                end,
    %% the channel sleeps on the first event; the second reaches
    %% max_pending_events (2): its POST waits until the channel catches up
    PostAsync(a, [<<"1">>, <<"2">>, <<"room:slow">>, <<"sleep">>, #{<<"ms">> => 5000}]),
    receive {a, #{<<"status">> := 200}} -> ok after ?TIMEOUT -> ct:fail(first_post_not_answered) end,
    PostAsync(b, [<<"1">>, <<"3">>, <<"room:slow">>, <<"echo">>, #{}]),
    receive {b, _} -> ct:fail(answered_while_the_channel_is_busy) after 500 -> ok end,
    receive {b, #{<<"status">> := 200}} -> ok after ?TIMEOUT -> ct:fail(second_post_not_answered) end,
    ?assertMatch([[_, <<"2">>, _, <<"phx_reply">>, _], [_, <<"3">>, _, <<"phx_reply">>, _]],
                 poll_messages(Port, Token, 2)),
    %% with the channel busy again, a third waiting POST is over the bound: the session ends
    Chan = channel_pid(<<"room:slow">>),
    Mon = monitor(process, Chan),
    PostAsync(c, [<<"1">>, <<"4">>, <<"room:slow">>, <<"sleep">>, #{<<"ms">> => 10000}]),
    PostAsync(d, [<<"1">>, <<"5">>, <<"room:slow">>, <<"echo">>, #{}]),
    PostAsync(e, [<<"1">>, <<"6">>, <<"room:slow">>, <<"echo">>, #{}]),
    PostAsync(f, [<<"1">>, <<"7">>, <<"room:slow">>, <<"echo">>, #{}]),
    receive {'DOWN', Mon, process, Chan, _} -> ok after ?TIMEOUT -> ct:fail(session_not_ended) end,
    [receive {T, R} -> R after ?TIMEOUT -> ct:fail({no_answer, T}) end || T <- [c, d, e, f]],
    ?assertMatch(#{<<"status">> := 410}, poll(Port, Token)).

binary_push_arrives_base64_and_binary_replies_are_not_polled(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:bin">>),
    {ok, Ws} = ?C:connect(Port, "/ws?vsn=2.0.0"),
    ok = ?C:push(Ws, <<"1">>, <<"1">>, <<"room:bin">>, <<"phx_join">>, #{}),
    _ = ?C:recv_all_json(Ws, ?TIMEOUT), _ = ?C:recv_all_json(Ws, ?TIMEOUT),
    %% phoenix.js's LongPoll sends an ArrayBuffer push as the base64 of its
    %% V2 binary frame: <<0, JoinRefLen, RefLen, TopicLen, EventLen, ...>>
    Push = <<0, 1, 1, 8, 9, "1", "5", "room:bin", "broadcast", 1, 2, 255>>,
    {200, _, #{<<"status">> := 200}} =
        request(Port, "POST", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Token), ndjson(),
                base64:encode(Push)),
    %% the WebSocket client gets the binary broadcast...
    ?assertMatch({binary, <<2, 8, 5, "room:bin", "shout", 1, 2, 255>>}, ?C:recv(Ws)),
    %% ...the long-poll client gets the (JSON) reply only: a binary frame
    %% cannot be polled (phoenix.js JSON-parses every polled message)
    ?assertMatch([[<<"1">>, <<"5">>, <<"room:bin">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}]],
                 poll_messages(Port, Token, 1)),
    ?assertMatch(#{<<"status">> := 204}, poll(Port, Token)).

origin_check_applies_403(Config) ->
    Port = port(Config),
    ?assertEqual({200, #{<<"status">> => 403}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=2.0.0",
                               [{"origin", "https://evil.example.org"}], <<>>))),
    ?assertMatch({200, #{<<"status">> := 410, <<"token">> := _}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=2.0.0",
                               [{"origin", "https://chat.example.com"}], <<>>))),
    %% and polls/POSTs carry the Origin too
    Token = session(Port),
    ?assertEqual({200, #{<<"status">> => 403}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Token),
                               [{"origin", "https://evil.example.org"}], <<>>))),
    %% vsn is checked as for WebSocket
    ?assertEqual({200, #{<<"status">> => 403}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=1.0.0", [], <<>>))).

connect_refusal_is_403_and_connect_info_names_the_transport(Config) ->
    Port = port(Config),
    ?assertEqual({200, #{<<"status">> => 403}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=2.0.0&user=mallory", [], <<>>))),
    ?assertEqual(0, ets:info(hornbeam_longpoll:table(), size)),
    {200, _, #{<<"status">> := 410}} =
        request(Port, "GET", "/ws/longpoll?vsn=2.0.0&user=ana",
                [{"x-phoenix-authtoken", "tok-1"}], <<>>),
    receive
        {connect, Params, Info} ->
            ?assertMatch(#{<<"user">> := <<"ana">>, <<"vsn">> := <<"2.0.0">>}, Params),
            ?assertMatch(#{transport := longpoll, auth_token := <<"tok-1">>}, Info)
    after ?TIMEOUT -> ct:fail(no_connect)
    end,
    {ok, _Ws} = ?C:connect(Port, "/ws?vsn=2.0.0&user=bo"),
    receive {connect, _, WsInfo} -> ?assertMatch(#{transport := websocket}, WsInfo)
    after ?TIMEOUT -> ct:fail(no_connect)
    end.

a_token_connect_param_is_not_taken_for_a_session_token(Config) ->
    Port = port(Config),
    %% phoenix.js with params {token: "user-1"}: the first GET, then polls
    %% and POSTs with the session token appended after the user's
    {200, _, #{<<"status">> := 410, <<"token">> := Session}} =
        request(Port, "GET", "/ws/longpoll?token=user-1&vsn=2.0.0&", [], <<>>),
    receive {connect, #{<<"token">> := <<"user-1">>}, _} -> ok after ?TIMEOUT -> ct:fail(no_connect) end,
    Q = "/ws/longpoll?token=user-1&vsn=2.0.0&token=" ++ binary_to_list(Session),
    {200, _, #{<<"status">> := 200}} =
        request(Port, "POST", Q, ndjson(), json([<<"1">>, <<"1">>, <<"room:t">>, <<"phx_join">>, #{}])),
    {200, _, #{<<"status">> := 200, <<"messages">> := [Reply | _]}} = request(Port, "GET", Q, [], <<>>),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:t">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], decode(Reply)),
    %% no second session was started
    ?assertEqual(1, ets:info(hornbeam_longpoll:table(), size)).

python_on_connect_and_channels_serve_longpoll_clients(Config) ->
    Port = port(Config),
    %% @on_connect sees connect_info["transport"]; a Python channel answers
    {200, _, #{<<"status">> := 410, <<"token">> := Token}} =
        request(Port, "GET", "/ws/longpoll?token=transport&vsn=2.0.0&", [], <<>>),
    post(Port, Token, [[<<"1">>, <<"1">>, <<"room:py">>, <<"phx_join">>, #{<<"mode">> => <<"socket_info">>}]]),
    [Reply | _] = poll_messages(Port, Token, 1),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:py">>, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>,
                    <<"response">> := #{<<"assigns">> := #{<<"transport">> := <<"longpoll">>}}}], Reply),
    {ok, Ws} = ?C:connect(Port, "/ws?token=transport&vsn=2.0.0"),
    ok = ?C:push(Ws, <<"1">>, <<"1">>, <<"room:py">>, <<"phx_join">>, #{<<"mode">> => <<"socket_info">>}),
    ?assertMatch([_, _, _, <<"phx_reply">>,
                  #{<<"response">> := #{<<"assigns">> := #{<<"transport">> := <<"websocket">>}}}],
                 ?C:recv_json(Ws)),
    %% refused by @on_connect: 403
    ?assertEqual({200, #{<<"status">> => 403}},
                 strip(request(Port, "GET", "/ws/longpoll?token=bad&vsn=2.0.0", [], <<>>))).

longpoll_max_sessions_refuses_more_sessions(Config) ->
    Port = port(Config),
    Token = session(Port),
    ?assertEqual({200, #{<<"status">> => 500}},
                 strip(request(Port, "GET", "/ws/longpoll?vsn=2.0.0", [], <<>>))),
    ?assertMatch(#{<<"status">> := 204}, poll(Port, Token)).

other_methods_are_405_and_options_is_a_cors_preflight(Config) ->
    Port = port(Config),
    ?assertMatch({405, _, _}, raw_request(Port, "PUT", "/ws/longpoll", [], <<>>)),
    {200, Headers, _} = raw_request(Port, "OPTIONS", "/ws/longpoll",
                                    [{"access-control-request-headers", "x-phoenix-authtoken"}], <<>>),
    ?assertEqual(<<"x-phoenix-authtoken">>,
                 proplists:get_value(<<"access-control-allow-headers">>, Headers)),
    ?assertEqual(<<"*">>, proplists:get_value(<<"access-control-allow-origin">>, Headers)).

killed_session_supervisor_means_410_then_a_new_session_works(Config) ->
    Port = port(Config),
    Token = joined_session(Port, <<"room:k">>),
    Chan = channel_pid(<<"room:k">>),
    Mon = monitor(process, Chan),
    Sup = whereis(hornbeam_longpoll_sup),
    exit(Sup, kill),
    receive {'DOWN', Mon, process, Chan, _} -> ok after ?TIMEOUT -> ct:fail(channel_still_there) end,
    ok = wait_until(fun() -> is_pid(whereis(hornbeam_longpoll_sup)) andalso
                                 whereis(hornbeam_longpoll_sup) =/= Sup end),
    ?assertMatch(#{<<"status">> := 410}, poll(Port, Token)),
    _ = joined_session(Port, <<"room:k">>),
    %% the listener and WebSocket side did not restart
    {ok, _Ws} = ?C:connect(Port, "/ws?vsn=2.0.0").

session_on_one_node_is_reached_through_another(Config) ->
    [{_, A, APort}, {_, B, BPort}] = ?config(peers, Config),
    %% the session starts on A...
    Token = session(APort),
    {ok, A, _} = hornbeam_longpoll:decode_token(Token),
    %% ...and B serves its POSTs and polls
    post(BPort, Token, [[<<"1">>, <<"1">>, <<"room:x">>, <<"phx_join">>, #{}]]),
    ?assertMatch([[<<"1">>, <<"1">>, <<"room:x">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], _],
                 poll_messages(BPort, Token, 2)),
    %% the channel runs on A
    ?assertEqual(1, erpc:call(A, ets, info, [hornbeam_longpoll:table(), size])),
    ?assertEqual(0, erpc:call(B, ets, info, [hornbeam_longpoll:table(), size])),
    ok = wait_until(fun() -> length(erpc:call(B, pg, get_members, [hornbeam, {topic, <<"room:x">>}])) =:= 1 end),
    %% a broadcast from B reaches it, polled through B and through A alike
    ok = erpc:call(B, hornbeam, broadcast, [<<"room:x">>, <<"one">>, #{}]),
    ?assertMatch([[null, null, <<"room:x">>, <<"one">>, #{}]], poll_messages(BPort, Token, 1)),
    ok = erpc:call(B, hornbeam, broadcast, [<<"room:x">>, <<"two">>, #{}]),
    ?assertMatch([[null, null, <<"room:x">>, <<"two">>, #{}]], poll_messages(APort, Token, 1)),
    %% the owner's endpoint stopped: its sessions are gone, 410 through B too
    ok = erpc:call(A, hornbeam, stop, []),
    ?assertMatch(#{<<"status">> := 410}, poll(BPort, Token)).

%% --- helpers ---------------------------------------------------------------------------

port(Config) -> ?config(port, Config).

%% The channel process of Topic (hornbeam_test_channel tells the observer).
channel_pid(Topic) ->
    receive {joined, Topic, Pid} -> Pid
    after ?TIMEOUT -> ct:fail({no_join, Topic})
    end.

session(Port) ->
    #{<<"token">> := Token} = session_body(Port),
    Token.

session_body(Port) ->
    {200, _, Body = #{<<"status">> := 410}} = request(Port, "GET", "/ws/longpoll?vsn=2.0.0", [], <<>>),
    Body.

joined_session(Port, Topic) ->
    Token = session(Port),
    post(Port, Token, [[<<"1">>, <<"1">>, Topic, <<"phx_join">>, #{}]]),
    ?assertMatch([[<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                  [_, _, Topic, <<"presence_state">>, _]], poll_messages(Port, Token, 2)),
    Token.

post(Port, Token, Messages) ->
    Body = lists:join(<<"\n">>, [json(M) || M <- Messages]),
    {200, _, Reply} = request(Port, "POST", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Token),
                              ndjson(), iolist_to_binary(Body)),
    Reply.

poll(Port, Token) ->
    {200, _, Reply} = request(Port, "GET", "/ws/longpoll?vsn=2.0.0&token=" ++ binary_to_list(Token),
                              [{"accept", "application/json"}], <<>>),
    Reply.

%% Poll until N messages came (decoded), as phoenix.js polls again after each answer.
poll_messages(Port, Token, N) -> poll_messages(Port, Token, N, [], 20).

poll_messages(_Port, _Token, N, Acc, _) when length(Acc) >= N -> Acc;
poll_messages(_Port, _Token, _N, Acc, 0) -> ct:fail({too_few_messages, Acc});
poll_messages(Port, Token, N, Acc, Tries) ->
    case poll(Port, Token) of
        #{<<"status">> := 200, <<"token">> := Token, <<"messages">> := Ms} ->
            poll_messages(Port, Token, N, Acc ++ [decode(M) || M <- Ms], Tries - 1);
        #{<<"status">> := 204} ->
            poll_messages(Port, Token, N, Acc, Tries - 1);
        Other ->
            ct:fail({poll, Other, Acc})
    end.

ndjson() -> [{"content-type", "application/x-ndjson"}].

json(Term) ->
    {ok, Json} = hornbeam_nif:json_encode(Term),
    Json.

decode(Text) ->
    {ok, Term} = hornbeam_nif:json_decode(Text),
    Term.

strip({Status, _Headers, Body}) -> {Status, Body}.

b64url_encode(Bin) ->
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= base64:encode(Bin), C =/= $= >>.

b64url_decode(Text) ->
    Std = << <<(case C of $- -> $+; $_ -> $/; _ -> C end)>> || <<C>> <= Text >>,
    base64:decode(<<Std/binary, (binary:copy(<<"=">>, (4 - byte_size(Std) rem 4) rem 4))/binary>>).

%% One request on a fresh loopback connection; the JSON body decoded.
request(Port, Method, Path, Headers, Body) ->
    {Status, RespHeaders, Raw} = raw_request(Port, Method, Path, Headers, Body),
    {Status, RespHeaders, decode(Raw)}.

raw_request(Port, Method, Path, Headers, Body) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {packet, raw}], ?TIMEOUT),
    Req = [Method, " ", Path, " HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n",
           [[N, ": ", V, "\r\n"] || {N, V} <- Headers],
           "content-length: ", integer_to_list(iolist_size(Body)), "\r\n\r\n", Body],
    ok = gen_tcp:send(S, Req),
    Raw = read_all(S, <<>>),
    ok = gen_tcp:close(S),
    [Head, RespBody] = binary:split(Raw, <<"\r\n\r\n">>),
    [StatusLine | HeaderLines] = binary:split(Head, <<"\r\n">>, [global]),
    [_, Code | _] = binary:split(StatusLine, <<" ">>, [global]),
    RespHeaders = [begin
                       [N, V] = binary:split(L, <<":">>),
                       {string:lowercase(N), string:trim(V)}
                   end || L <- HeaderLines],
    {binary_to_integer(Code), RespHeaders, RespBody}.

read_all(S, Acc) ->
    case gen_tcp:recv(S, 0, ?TIMEOUT * 3) of
        {ok, Data} -> read_all(S, <<Acc/binary, Data/binary>>);
        {error, closed} -> Acc
    end.

wait_until(Fun) -> wait_until(Fun, 100).
wait_until(_Fun, 0) -> timeout;
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(100), wait_until(Fun, N - 1)
    end.

start_peer(Name) ->
    hornbeam_ct_peer:start(Name, [hornbeam_test_channel],
                           #{bind => "127.0.0.1:0", longpoll_poll_timeout => 1000,
                             channels => [{<<"room:*">>, hornbeam_test_channel}]}).
