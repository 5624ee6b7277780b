%% Metrics, dashboard and logs over real sockets: a real server with an
%% Erlang channel (erl:*) and a Python one (room:*, fx_room in real CPython),
%% real WebSocket clients, and /metrics scraped from the metrics port.
-module(hornbeam_metrics_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).

all() ->
    [traffic_moves_the_connection_join_message_and_http_metrics,
     python_calls_are_counted_by_handler_and_timed,
     a_client_that_stops_reading_is_counted_as_a_slow_consumer,
     presence_and_topics_show_in_the_dashboard_json,
     the_dashboard_page_and_script_are_served_and_nothing_else,
     metrics_bind_on_the_app_port_is_refused_at_start,
     the_metrics_listener_survives_an_endpoint_restart,
     python_tracebacks_are_rate_limited_per_handler_with_a_suppressed_line,
     log_lines_carry_the_socket_id_topic_and_handler].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    _ = hornbeam:stop(),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0", metrics_bind => "127.0.0.1:0",
                                workers => 1, channel_modules => ["fx_room"],
                                pythonpath => [fixtures()],
                                channels => [{<<"erl:*">>, hornbeam_test_channel}],
                                max_send_queue => 65536, traceback_log_limit => 2}),
    [{port, hornbeam:port()}, {metrics_port, hornbeam:metrics_port()} | Config].

end_per_suite(_Config) ->
    _ = hornbeam:stop(),
    application:stop(hornbeam).

fixtures() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "python", "fixtures"]).

%% --- cases -------------------------------------------------------------------------

traffic_moves_the_connection_join_message_and_http_metrics(Config) ->
    M0 = scrape(Config),
    C1 = connect(Config),
    C2 = connect(Config),
    ok = wait_until(fun() -> metric(scrape(Config), "hornbeam_connections") >= 2 end),
    ok = join_ok(C1, <<"erl:a">>),
    ok = join_ok(C2, <<"erl:a">>),
    %% refused by the handler, and a topic nothing routes
    ok = ?C:push(C1, <<"2">>, <<"2">>, <<"erl:b">>, <<"phx_join">>, #{<<"mode">> => <<"error">>}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"error">>}] = ?C:recv_json(C1),
    ok = ?C:push(C1, <<"3">>, <<"3">>, <<"nowhere:x">>, <<"phx_join">>, #{}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"error">>}] = ?C:recv_json(C1),
    ok = ?C:push(C1, <<"1">>, <<"4">>, <<"erl:a">>, <<"echo">>, #{<<"n">> => 1}),
    [_, _, _, <<"phx_reply">>, _] = ?C:recv_json(C1),
    ok = ?C:push(C1, <<"1">>, <<"5">>, <<"erl:a">>, <<"broadcast">>, #{<<"x">> => 1}),
    [_, _, _, <<"shout">>, _] = ?C:recv_json(C2),
    M1 = scrape(Config),
    ct:pal("after traffic:~n~p", [M1]),
    ?assert(metric(M1, "hornbeam_connections") >= 2),
    ?assertEqual(2, metric(M1, "hornbeam_channels_joined{pattern=\"erl:*\"}")),
    ?assert(grew(M0, M1, "hornbeam_joins_total") >= 2),
    ?assert(grew(M0, M1, "hornbeam_join_errors_total") >= 2),
    ?assert(grew(M0, M1, "hornbeam_messages_in_total") >= 6),
    ?assert(grew(M0, M1, "hornbeam_message_bytes_in_total") > 100),
    ?assert(grew(M0, M1, "hornbeam_messages_out_total") >= 6),
    ?assert(grew(M0, M1, "hornbeam_message_bytes_out_total") > 100),
    ?assert(grew(M0, M1, "hornbeam_broadcasts_total") >= 1),
    ?assert(grew(M0, M1, "hornbeam_deliveries_total") >= 2),
    ?assert(grew(M0, M1, "hornbeam_http_responses_total{status=\"101\"}") >= 2),
    ?assertEqual(1, metric(M1, "hornbeam_cluster_nodes")),
    ?C:close(C1),
    ?C:close(C2),
    ok = wait_until(fun() ->
                            M = scrape(Config),
                            metric(M, "hornbeam_connections") =:= 0 andalso
                                metric(M, "hornbeam_channels_joined{pattern=\"erl:*\"}") =:= 0
                    end).

python_calls_are_counted_by_handler_and_timed(Config) ->
    M0 = scrape(Config),
    C = connect(Config),
    ok = join_ok(C, <<"room:py">>),
    ok = ?C:push(C, <<"1">>, <<"2">>, <<"room:py">>, <<"reply">>, #{<<"a">> => 1}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C),
    ok = ?C:push(C, <<"1">>, <<"3">>, <<"room:py">>, <<"crash">>, #{}),
    [_, _, _, <<"phx_error">>, _] = ?C:recv_json(C),
    M1 = scrape(Config),
    ?assert(grew(M0, M1, "hornbeam_python_calls_total{handler=\"join room:*\"}") >= 1),
    ?assert(grew(M0, M1, "hornbeam_python_calls_total{handler=\"event room:* reply\"}") >= 1),
    ?assert(grew(M0, M1, "hornbeam_python_call_errors_total{handler=\"event room:* crash\"}") >= 1),
    ?assert(grew(M0, M1, "hornbeam_python_call_duration_seconds_count") >= 3),
    ?assert(grew(M0, M1, "hornbeam_python_call_duration_seconds_sum") > 0),
    ?assertEqual(metric(M1, "hornbeam_python_call_duration_seconds_count"),
                 metric(M1, "hornbeam_python_call_duration_seconds_bucket{le=\"+Inf\"}")),
    ?assertEqual(1, metric(M1, "hornbeam_python_workers{status=\"ready\"}")),
    ?assert(is_number(metric(M1, "hornbeam_python_worker_restarts_total"))),
    ?C:close(C).

a_client_that_stops_reading_is_counted_as_a_slow_consumer(Config) ->
    M0 = scrape(Config),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                              [binary, {active, false}, {recbuf, 4096}]),
    {_, Req} = ?C:upgrade_request("/ws", []),
    ok = gen_tcp:send(S, Req),
    {ok, _} = gen_tcp:recv(S, 0, 5000),
    Join = hornbeam_nif:msg_encode(<<"1">>, <<"1">>, <<"erl:flood">>, <<"phx_join">>, <<"{}">>),
    ok = gen_tcp:send(S, ?C:client_frame(1, Join, true, 0)),
    ok = wait_until(fun() -> hornbeam_pubsub:subscribers(<<"erl:flood">>) =/= [] end),
    [Conn] = hornbeam_pubsub:subscribers(<<"erl:flood">>),
    Mon = erlang:monitor(process, Conn),
    flood(Mon, binary:copy(<<"x">>, 60000), 4000),
    gen_tcp:close(S),
    ?assert(grew(M0, scrape(Config), "hornbeam_slow_consumer_closes_total") >= 1).

presence_and_topics_show_in_the_dashboard_json(Config) ->
    C = connect(Config),
    ok = ?C:push(C, <<"1">>, <<"1">>, <<"erl:present">>, <<"phx_join">>,
                 #{<<"mode">> => <<"track">>, <<"key">> => <<"ada">>}),
    [_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] = ?C:recv_json(C),
    ok = wait_until(fun() -> metric(scrape(Config), "hornbeam_presence_entries") >= 1 end),
    {200, _, Body} = get(Config, "/metrics.json"),
    {ok, Doc} = hornbeam_nif:json_decode(Body),
    ct:pal("~s", [Body]),
    #{<<"connections">> := Conns, <<"topics">> := Topics, <<"node">> := Node} = Doc,
    ?assert(Conns >= 1),
    ?assertEqual(atom_to_binary(node()), Node),
    ?assertMatch([#{<<"subscribers">> := 1, <<"presences">> := 1}],
                 [T || T = #{<<"topic">> := <<"erl:present">>} <- Topics]),
    ?C:close(C),
    ok = wait_until(fun() -> metric(scrape(Config), "hornbeam_presence_entries") =:= 0 end).

the_dashboard_page_and_script_are_served_and_nothing_else(Config) ->
    {200, H1, Page} = get(Config, "/"),
    ?assertMatch(<<"text/html", _/binary>>, proplists:get_value(<<"content-type">>, H1)),
    ?assertNotEqual(nomatch, binary:match(Page, <<"dashboard.js">>)),
    {200, H2, Js} = get(Config, "/dashboard.js"),
    ?assertMatch(<<"application/javascript", _/binary>>, proplists:get_value(<<"content-type">>, H2)),
    ?assertNotEqual(nomatch, binary:match(Js, <<"/metrics.json">>)),
    {200, H3, _} = get(Config, "/metrics"),
    ?assertMatch(<<"text/plain; version=0.0.4", _/binary>>, proplists:get_value(<<"content-type">>, H3)),
    {404, _, _} = get(Config, "/ws"),
    {404, _, _} = get(Config, "/hornbeam.js"),
    {405, _, _} = request(Config, "POST", "/metrics"),
    %% and the app's port does not serve them
    {404, _, _} = request(?config(port, Config), "GET", "/metrics").

metrics_bind_on_the_app_port_is_refused_at_start(_Config) ->
    ?assertEqual({error, {metrics_bind, "127.0.0.1:8123", same_port_as_bind}},
                 hornbeam:start(none, #{bind => "127.0.0.1:8123", metrics_bind => "127.0.0.1:8123"})),
    ?assertEqual({error, {metrics_bind, "0.0.0.0:8123", same_port_as_bind}},
                 hornbeam:start(none, #{bind => "127.0.0.1:8123", metrics_bind => "0.0.0.0:8123"})),
    ?assertEqual({error, {bad_option, metrics_bind, "nonsense"}},
                 hornbeam:start(none, #{bind => "127.0.0.1:8123", metrics_bind => "nonsense"})),
    ?assertEqual({error, {bad_option, log_format, xml}},
                 hornbeam:start(none, #{bind => "127.0.0.1:8123", log_format => xml})),
    %% the running node still serves its metrics
    {200, _, _} = request(hornbeam:metrics_port(), "GET", "/metrics").

the_metrics_listener_survives_an_endpoint_restart(Config) ->
    Children = supervisor:which_children(hornbeam_sup),
    {metrics, Metrics, _, _} = lists:keyfind(metrics, 1, Children),
    {endpoint, Endpoint, _, _} = lists:keyfind(endpoint, 1, Children),
    exit(Endpoint, kill),
    ok = wait_until(fun() ->
                            case lists:keyfind(endpoint, 1, supervisor:which_children(hornbeam_sup)) of
                                {endpoint, P, _, _} when is_pid(P), P =/= Endpoint -> true;
                                _ -> false
                            end
                    end),
    {metrics, Metrics, _, _} = lists:keyfind(metrics, 1, supervisor:which_children(hornbeam_sup)),
    ?assertEqual(?config(metrics_port, Config), hornbeam:metrics_port()),
    {200, _, _} = get(Config, "/metrics"),
    ok = wait_until(fun() -> catch hornbeam:port() =:= ?config(port, Config) end),
    C = connect(Config),
    ok = join_ok(C, <<"room:after">>),
    ?C:close(C).

python_tracebacks_are_rate_limited_per_handler_with_a_suppressed_line(Config) ->
    ok = hornbeam_log_limiter:new_window(),
    ok = logger:add_handler(metrics_capture, ?MODULE, #{config => #{pid => self()}, level => all}),
    try
        C = connect(Config),
        [begin
             ok = join_ok(C, <<"room:tb">>, integer_to_binary(I)),
             ok = ?C:push(C, integer_to_binary(I), <<"9">>, <<"room:tb">>, <<"crash">>, #{}),
             [_, _, _, <<"phx_error">>, _] = ?C:recv_json(C)
         end || I <- lists:seq(1, 5)],
        ?C:close(C),
        timer:sleep(500),
        Captured = captured(),
        Tracebacks = [M || {_, M, _} <- Captured, has(M, <<"python worker 1: handler fx_room.crash raised">>)],
        ?assertEqual(2, length(Tracebacks)),
        ?assertNotEqual(nomatch, binary:match(hd(Tracebacks), <<"ZeroDivisionError">>)),
        CrashLines = [M || {_, M, _} <- Captured, has(M, <<"handle_in/3 for crash crashed">>)],
        ?assertEqual(2, length(CrashLines)),
        ok = hornbeam_log_limiter:new_window(),
        Suppressed = [M || {_, M, _} <- captured(), has(M, <<"suppressed">>)],
        ct:pal("~p", [Suppressed]),
        ?assert(lists:any(fun(M) -> has(M, <<"suppressed 3 more log line(s) of Python handler fx_room.crash">>) end,
                          Suppressed)),
        ?assert(lists:any(fun(M) -> has(M, <<"suppressed 3 more log line(s) of channel room:* event crash">>) end,
                          Suppressed))
    after
        logger:remove_handler(metrics_capture)
    end.

log_lines_carry_the_socket_id_topic_and_handler(Config) ->
    ok = hornbeam_log_limiter:new_window(),
    ok = logger:add_handler(metrics_capture, ?MODULE, #{config => #{pid => self()}, level => all}),
    try
        C = connect(Config),
        ok = join_ok(C, <<"erl:logs">>),
        ok = ?C:push(C, <<"1">>, <<"2">>, <<"erl:logs">>, <<"crash">>, #{}),
        [_, _, _, <<"phx_error">>, _] = ?C:recv_json(C),
        ?C:close(C),
        [Meta | _] = [Meta || {_, M, Meta} <- captured(), has(M, <<"handle_in/3 for crash crashed">>)],
        ?assertMatch(#{topic := <<"erl:logs">>, handler := <<"erl:*">>, conn_id := _}, Meta),
        %% the JSON format writes that line with the same metadata
        Line = iolist_to_binary(hornbeam_log_format:format(
                                  #{level => error, msg => {string, "boom"}, meta => Meta}, #{format => json})),
        {ok, Json} = hornbeam_nif:json_decode(Line),
        ?assertMatch(#{<<"topic">> := <<"erl:logs">>, <<"handler">> := <<"erl:*">>,
                       <<"conn_id">> := _, <<"msg">> := <<"boom">>, <<"level">> := <<"error">>}, Json)
    after
        logger:remove_handler(metrics_capture)
    end.

%% --- logger handler capturing events for this process --------------------------------

log(#{msg := Msg, meta := Meta} = Event, #{config := #{pid := Pid}}) ->
    Text = try iolist_to_binary(logger_formatter:format(Event#{meta := #{}},
                                                        #{single_line => true, template => [msg]}))
           catch _:_ -> iolist_to_binary(io_lib:format("~0p", [Msg]))
           end,
    Pid ! {captured, Text, Meta},
    ok.

captured() ->
    receive {captured, M, Meta} -> [{captured, M, Meta} | captured()]
    after 0 -> []
    end.

has(Bin, Part) -> binary:match(Bin, Part) =/= nomatch.

%% --- helpers ----------------------------------------------------------------------------

connect(Config) ->
    {ok, C} = ?C:connect(?config(port, Config), "/ws/websocket?vsn=2.0.0"),
    C.

join_ok(C, Topic) -> join_ok(C, Topic, <<"1">>).
join_ok(C, Topic, JoinRef) ->
    ok = ?C:push(C, JoinRef, JoinRef, Topic, <<"phx_join">>, #{}),
    case ?C:recv_json(C, 10000) of
        [_, _, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}] -> ok;
        Other -> {unexpected, Other}
    end.

flood(_Mon, _Big, 0) -> ct:fail(connection_not_closed);
flood(Mon, Big, N) ->
    ok = hornbeam:broadcast(<<"erl:flood">>, <<"big">>, Big),
    receive {'DOWN', Mon, process, _, _} -> ok
    after 5 -> flood(Mon, Big, N - 1)
    end.

scrape(Config) ->
    {200, _, Body} = get(Config, "/metrics"),
    parse(Body).

%% `"name{labels}"' => value, from the text format.
parse(Body) ->
    maps:from_list(
      [begin
           [Name, Value] = string:split(Line, " ", trailing),
           {binary_to_list(Name), number(Value)}
       end || Line <- binary:split(Body, <<"\n">>, [global, trim_all]),
              binary:first(Line) =/= $#]).

number(Bin) ->
    try binary_to_integer(Bin) catch error:badarg -> binary_to_float(Bin) end.

metric(M, Name) -> maps:get(Name, M, 0).

grew(M0, M1, Name) -> metric(M1, Name) - metric(M0, Name).

get(Config, Path) -> request(Config, "GET", Path).

request(Config, Method, Path) when is_list(Config) ->
    request(?config(metrics_port, Config), Method, Path);
request(Port, Method, Path) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(S, [Method, " ", Path, " HTTP/1.1\r\nhost: 127.0.0.1\r\n",
                          "content-length: 0\r\nconnection: close\r\n\r\n"]),
    Raw = recv_all(S, <<>>),
    [Head, Body] = binary:split(Raw, <<"\r\n\r\n">>),
    [Status | Lines] = binary:split(Head, <<"\r\n">>, [global]),
    <<"HTTP/1.1 ", Code:3/binary, _/binary>> = Status,
    Headers = [begin [K, V] = binary:split(L, <<": ">>), {string:lowercase(K), V} end || L <- Lines],
    {binary_to_integer(Code), Headers, Body}.

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, B} -> recv_all(S, <<Acc/binary, B/binary>>);
        {error, closed} -> gen_tcp:close(S), Acc
    end.

wait_until(F) -> wait_until(F, 200).
wait_until(_F, 0) -> {error, timeout};
wait_until(F, N) ->
    case F() of
        true -> ok;
        _ -> timer:sleep(50), wait_until(F, N - 1)
    end.
