%% Intercepts (handle_out/3) and server messages to a channel (subscribe/2,
%% handle_info/2), on real sockets with hornbeam_test_intercept_channel
%% mounted on "sec:*" and the plain hornbeam_test_channel on "room:*".
-module(hornbeam_intercept_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [intercepted_event_is_filtered_and_rewritten_per_subscriber,
     events_not_intercepted_keep_their_broadcast_form_and_order,
     handle_out_updates_the_assigns_of_its_subscriber,
     broadcast_from_still_skips_the_sender_of_an_intercepted_event,
     intercepting_channel_is_subscribed_and_its_connection_is_not,
     handle_out_crash_errors_only_that_channel,
     subscribed_topic_reaches_handle_info_not_the_client,
     unsubscribe_stops_the_messages,
     subscribe_refuses_the_own_topic_and_bad_topics,
     message_sent_to_the_channel_process_reaches_handle_info,
     subscriptions_end_with_the_channel,
     erlang_message_to_a_python_channel_reaches_on_info_as_json,
     python_intercept_exception_errors_only_that_channel].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    ok = application:stop(hornbeam).

%% The Python cases serve test/python/fixtures/fx_channel_out.py on "sec:*".
init_per_testcase(TC, Config) when TC =:= erlang_message_to_a_python_channel_reaches_on_info_as_json;
                                   TC =:= python_intercept_exception_errors_only_that_channel ->
    _ = hornbeam:stop(),
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    Fixtures = filename:join([filename:dirname(Src), "python", "fixtures"]),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", workers => 1, channel_modules => ["fx_channel_out"],
                                pythonpath => [Fixtures],
                                channels => [{<<"room:*">>, hornbeam_test_channel}]}),
    [{port, hornbeam:port()} | Config];
init_per_testcase(_TC, Config) ->
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0",
                                channels => [{<<"sec:*">>, hornbeam_test_intercept_channel},
                                             {<<"room:*">>, hornbeam_test_channel}]}),
    [{port, hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

connect(Config) ->
    {ok, C} = ?C:connect(?config(port, Config), "/ws?vsn=2.0.0"),
    C.

%% Joins Topic; returns the channel's pid (from the join response).
join(C, Topic, Payload) ->
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, Payload),
    [<<"1">>, <<"1">>, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>, <<"response">> := R}] =
        ?C:recv_json(C),
    case R of
        #{<<"pid">> := Pid} -> list_to_pid(binary_to_list(Pid));
        _ -> undefined
    end.

call(C, Topic, Ref, Event, Payload) ->
    ok = ?C:push(C, <<"1">>, Ref, Topic, Event, Payload),
    reply(C, Ref).

reply(C, Ref) ->
    case ?C:recv_json(C) of
        [_, Ref, _, <<"phx_reply">>, #{<<"status">> := S, <<"response">> := R}] -> {S, R};
        Other -> ct:fail({expected_reply, Ref, Other})
    end.

%% --- intercepts -----------------------------------------------------------

intercepted_event_is_filtered_and_rewritten_per_subscriber(Config) ->
    Admin = connect(Config), Guest = connect(Config),
    _ = join(Admin, <<"sec:a">>, #{<<"role">> => <<"admin">>}),
    _ = join(Guest, <<"sec:a">>, #{<<"role">> => <<"guest">>}),
    ok = hornbeam:broadcast(<<"sec:a">>, <<"secret">>, #{<<"code">> => 42}),
    %% a push (with the channel's join_ref), rewritten by handle_out
    ?assertEqual([<<"1">>, null, <<"sec:a">>, <<"secret">>,
                  #{<<"code">> => 42, <<"seen_by">> => <<"admin">>}], ?C:recv_json(Admin)),
    ?assertEqual(timeout, ?C:recv_json(Guest, 500)).

events_not_intercepted_keep_their_broadcast_form_and_order(Config) ->
    Admin = connect(Config),
    _ = join(Admin, <<"sec:o">>, #{<<"role">> => <<"admin">>}),
    Events = lists:append([[{<<"plain">>, N}, {<<"secret">>, N}] || N <- lists:seq(1, 20)]),
    [ok = hornbeam:broadcast(<<"sec:o">>, E, #{<<"n">> => N}) || {E, N} <- Events],
    Got = [?C:recv_json(Admin) || _ <- Events],
    ?assertEqual([{E, N} || {E, N} <- Events],
                 [{E, N} || [_, _, <<"sec:o">>, E, #{<<"n">> := N}] <- Got]),
    %% the plain ones are the broadcast frames, untouched (join_ref null)
    ?assertEqual([null || _ <- lists:seq(1, 20)],
                 [JR || [JR, _, _, <<"plain">>, _] <- Got]).

handle_out_updates_the_assigns_of_its_subscriber(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"sec:c">>, #{}), _ = join(B, <<"sec:c">>, #{}),
    ok = hornbeam:broadcast(<<"sec:c">>, <<"counted">>, #{}),
    ok = hornbeam:broadcast(<<"sec:c">>, <<"counted">>, #{}),
    ?assertMatch([_, _, _, <<"counted">>, #{<<"count">> := 1}], ?C:recv_json(A)),
    ?assertMatch([_, _, _, <<"counted">>, #{<<"count">> := 2}], ?C:recv_json(A)),
    ?assertMatch([_, _, _, <<"counted">>, #{<<"count">> := 1}], ?C:recv_json(B)),
    ?assertEqual({<<"ok">>, #{<<"count">> => 2}}, call(A, <<"sec:c">>, <<"5">>, <<"count">>, #{})).

broadcast_from_still_skips_the_sender_of_an_intercepted_event(Config) ->
    A = connect(Config), B = connect(Config),
    _ = join(A, <<"sec:f">>, #{<<"role">> => <<"admin">>}),
    _ = join(B, <<"sec:f">>, #{<<"role">> => <<"admin">>}),
    ?assertEqual({<<"ok">>, #{}}, call(A, <<"sec:f">>, <<"2">>, <<"broadcast_from">>,
                                       #{<<"event">> => <<"secret">>, <<"payload">> => #{<<"x">> => 1}})),
    ?assertMatch([_, null, _, <<"secret">>, #{<<"x">> := 1, <<"seen_by">> := <<"admin">>}], ?C:recv_json(B)),
    ?assertEqual({<<"ok">>, #{}}, call(A, <<"sec:f">>, <<"3">>, <<"broadcast_from">>,
                                       #{<<"event">> => <<"plain">>, <<"payload">> => #{}})),
    ?assertMatch([null, null, _, <<"plain">>, _], ?C:recv_json(B)),
    ?assertEqual(timeout, ?C:recv_json(A, 300)).

intercepting_channel_is_subscribed_and_its_connection_is_not(Config) ->
    A = connect(Config),
    Pid = join(A, <<"sec:s">>, #{}),
    _ = join(A, <<"room:s">>, #{}),
    ?assertEqual([Pid], hornbeam_pubsub:channel_subscribers(<<"sec:s">>)),
    ?assertEqual([], hornbeam_pubsub:subscribers(<<"sec:s">>)),
    %% a channel without intercepts keeps the fastlane
    ?assertEqual([], hornbeam_pubsub:channel_subscribers(<<"room:s">>)),
    ?assertMatch([_], hornbeam_pubsub:subscribers(<<"room:s">>)).

handle_out_crash_errors_only_that_channel(Config) ->
    A = connect(Config),
    _ = join(A, <<"sec:x">>, #{}),
    _ = join(A, <<"room:x">>, #{}),
    ok = hornbeam:broadcast(<<"sec:x">>, <<"crash_out">>, #{}),
    ?assertMatch([<<"1">>, _, <<"sec:x">>, <<"phx_error">>, #{<<"reason">> := <<"channel_crash">>}],
                 ?C:recv_json(A)),
    ok = hornbeam:broadcast(<<"room:x">>, <<"still">>, #{}),
    ?assertMatch([null, null, <<"room:x">>, <<"still">>, _], ?C:recv_json(A)).

%% --- server messages -----------------------------------------------------------

subscribed_topic_reaches_handle_info_not_the_client(Config) ->
    A = connect(Config),
    _ = join(A, <<"sec:m">>, #{}),
    ?assertEqual({<<"ok">>, #{}}, call(A, <<"sec:m">>, <<"2">>, <<"subscribe">>, #{<<"topic">> => <<"user:7">>})),
    %% twice is once
    ?assertEqual({<<"ok">>, #{}}, call(A, <<"sec:m">>, <<"3">>, <<"subscribe">>, #{<<"topic">> => <<"user:7">>})),
    ok = hornbeam:broadcast(<<"user:7">>, <<"note">>, #{<<"t">> => <<"hi">>}),
    ?assertEqual([<<"1">>, null, <<"sec:m">>, <<"relayed">>,
                  #{<<"topic">> => <<"user:7">>, <<"event">> => <<"note">>,
                    <<"payload">> => #{<<"t">> => <<"hi">>}}], ?C:recv_json(A)),
    ?assertEqual(timeout, ?C:recv_json(A, 300)).

unsubscribe_stops_the_messages(Config) ->
    A = connect(Config),
    _ = join(A, <<"sec:u">>, #{}),
    {<<"ok">>, _} = call(A, <<"sec:u">>, <<"2">>, <<"subscribe">>, #{<<"topic">> => <<"user:8">>}),
    {<<"ok">>, _} = call(A, <<"sec:u">>, <<"3">>, <<"unsubscribe">>, #{<<"topic">> => <<"user:8">>}),
    ?assertEqual([], hornbeam_pubsub:channel_subscribers(<<"user:8">>)),
    ok = hornbeam:broadcast(<<"user:8">>, <<"note">>, #{}),
    ?assertEqual(timeout, ?C:recv_json(A, 300)).

subscribe_refuses_the_own_topic_and_bad_topics(Config) ->
    A = connect(Config),
    _ = join(A, <<"sec:r">>, #{}),
    ?assertEqual({<<"error">>, #{<<"reason">> => <<"own_topic">>}},
                 call(A, <<"sec:r">>, <<"2">>, <<"subscribe">>, #{<<"topic">> => <<"sec:r">>})),
    ?assertEqual({<<"error">>, #{<<"reason">> => <<"bad_topic">>}},
                 call(A, <<"sec:r">>, <<"3">>, <<"subscribe">>, #{<<"topic">> => 5})).

message_sent_to_the_channel_process_reaches_handle_info(Config) ->
    A = connect(Config),
    Pid = join(A, <<"sec:i">>, #{}),
    Pid ! {tell, #{<<"hello">> => <<"from erlang">>}},
    ?assertEqual([<<"1">>, null, <<"sec:i">>, <<"told">>, #{<<"hello">> => <<"from erlang">>}],
                 ?C:recv_json(A)).

subscriptions_end_with_the_channel(Config) ->
    A = connect(Config),
    Pid = join(A, <<"sec:e">>, #{}),
    {<<"ok">>, _} = call(A, <<"sec:e">>, <<"2">>, <<"subscribe">>, #{<<"topic">> => <<"user:9">>}),
    ?assertEqual([Pid], hornbeam_pubsub:channel_subscribers(<<"user:9">>)),
    Mon = erlang:monitor(process, Pid),
    ok = ?C:push(A, <<"1">>, <<"4">>, <<"sec:e">>, <<"phx_leave">>, #{}),
    receive {'DOWN', Mon, process, Pid, _} -> ok after 5000 -> ct:fail(channel_did_not_end) end,
    %% pg's scope process removes a dead member when it sees the DOWN itself,
    %% a moment after ours
    ?assertEqual(ok, until_empty(<<"user:9">>, 250)),
    ?assertEqual(ok, until_empty(<<"sec:e">>, 250)).

until_empty(_Topic, 0) -> {error, still_subscribed};
until_empty(Topic, N) ->
    case hornbeam_pubsub:channel_subscribers(Topic) of
        [] -> ok;
        _ -> timer:sleep(20), until_empty(Topic, N - 1)
    end.

%% --- Python channels (fx_channel_out) ----------------------------------------------

erlang_message_to_a_python_channel_reaches_on_info_as_json(Config) ->
    A = connect(Config),
    undefined = join(A, <<"sec:p">>, #{}),
    [{_, Pid, _, _}] = supervisor:which_children(hornbeam_channel_sup),
    Pid ! {not_json, self()},        %% logged and dropped; the channel lives on
    Pid ! #{<<"from">> => <<"erlang">>},
    ?assertEqual([<<"1">>, null, <<"sec:p">>, <<"told">>, #{<<"message">> => #{<<"from">> => <<"erlang">>}}],
                 ?C:recv_json(A)),
    ?assertMatch({<<"ok">>, #{<<"infos">> := 1}}, call(A, <<"sec:p">>, <<"2">>, <<"seen">>, #{})).

python_intercept_exception_errors_only_that_channel(Config) ->
    A = connect(Config),
    undefined = join(A, <<"sec:q">>, #{}),
    undefined = join(A, <<"room:q">>, #{}),
    ok = hornbeam:broadcast(<<"sec:q">>, <<"crash_out">>, #{}),
    ?assertMatch([<<"1">>, _, <<"sec:q">>, <<"phx_error">>, #{<<"reason">> := <<"channel_crash">>}],
                 ?C:recv_json(A, 10000)),
    ok = hornbeam:broadcast(<<"room:q">>, <<"still">>, #{}),
    ?assertMatch([null, null, <<"room:q">>, <<"still">>, _], ?C:recv_json(A)).
