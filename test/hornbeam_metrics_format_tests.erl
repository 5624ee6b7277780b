%% EUnit: the Prometheus text and dashboard JSON of a metrics snapshot, the
%% JSON log formatter, and the log limiter's keys (pure parts of src/metrics).
-module(hornbeam_metrics_format_tests).
-include_lib("eunit/include/eunit.hrl").

snapshot() ->
    Counters = maps:from_list([{K, 0} || K <- [joins, join_errors, messages_in, bytes_in, messages_out,
                                                bytes_out, broadcasts, deliveries, slow_consumer_closes,
                                                python_calls_refused, python_calls, python_call_errors,
                                                python_call_micros]]),
    #{counters => Counters#{joins => 7, python_call_micros => 1500000},
      python_latency => #{bounds => [1000, 10000], counts => [2, 1, 1]},
      python_calls_by_handler => #{<<"event room:* say \"hi\"\n">> => 3},
      python_call_errors_by_handler => #{},
      http_responses => #{101 => 4, 200 => 2},
      connections => 5,
      channels_joined => #{<<"room:*">> => 2},
      presence_entries => 1, presence_by_topic => #{<<"room:a">> => 1},
      subscribers_by_topic => #{<<"room:a">> => 2, <<"room:b">> => 9},
      cluster_nodes => 1,
      python_workers => [#{ix => 1, status => ready, restarts => 2, in_flight => 0, queued => 0},
                         #{ix => 2, status => backoff, restarts => 1, in_flight => 0, queued => 0}],
      node => 'n@h', enabled => true}.

text() -> iolist_to_binary(hornbeam_metrics_format:prometheus(snapshot())).

has(Part) -> ?assertNotEqual(nomatch, binary:match(text(), Part)).

every_metric_has_help_and_type_test() ->
    Lines = binary:split(text(), <<"\n">>, [global, trim_all]),
    Names = lists:usort([hd(binary:split(hd(binary:split(L, <<" ">>)), <<"{">>)) || L <- Lines,
                                                                                   binary:first(L) =/= $#]),
    Typed = [N || <<"# TYPE ", Rest/binary>> <- Lines, N <- [hd(binary:split(Rest, <<" ">>))]],
    [?assert(lists:any(fun(T) -> binary:longest_common_prefix([T, N]) =:= byte_size(T) end, Typed))
     || N <- Names].

gauges_counters_and_labels_test() ->
    has(<<"\nhornbeam_connections 5\n">>),
    has(<<"hornbeam_joins_total 7\n">>),
    has(<<"hornbeam_channels_joined{pattern=\"room:*\"} 2\n">>),
    has(<<"hornbeam_http_responses_total{status=\"101\"} 4\n">>),
    has(<<"hornbeam_python_workers{status=\"backoff\"} 1\n">>),
    has(<<"hornbeam_python_worker_restarts_total 3\n">>).

label_values_are_escaped_test() ->
    has(<<"hornbeam_python_calls_total{handler=\"event room:* say \\\"hi\\\"\\n\"} 3\n">>).

histogram_is_cumulative_with_sum_in_seconds_test() ->
    has(<<"hornbeam_python_call_duration_seconds_bucket{le=\"0.001\"} 2\n">>),
    has(<<"hornbeam_python_call_duration_seconds_bucket{le=\"0.01\"} 3\n">>),
    has(<<"hornbeam_python_call_duration_seconds_bucket{le=\"+Inf\"} 4\n">>),
    has(<<"hornbeam_python_call_duration_seconds_sum 1.5\n">>),
    has(<<"hornbeam_python_call_duration_seconds_count 4\n">>).

quantile_is_the_bound_of_the_bucket_holding_it_test() ->
    ?assertEqual(undefined, hornbeam_metrics_format:quantile(0.5, [1, 2], [0, 0, 0])),
    ?assertEqual(1, hornbeam_metrics_format:quantile(0.5, [1, 2], [2, 1, 1])),
    ?assertEqual(2, hornbeam_metrics_format:quantile(0.75, [1, 2], [2, 1, 1])),
    ?assertEqual(infinity, hornbeam_metrics_format:quantile(0.99, [1, 2], [2, 1, 1])).

dashboard_json_lists_busiest_topics_first_test() ->
    {ok, Doc} = hornbeam_nif:json_decode(hornbeam_metrics_format:json(snapshot())),
    ?assertMatch(#{<<"connections">> := 5, <<"node">> := <<"n@h">>,
                   <<"topics">> := [#{<<"topic">> := <<"room:b">>, <<"subscribers">> := 9,
                                      <<"presences">> := 0},
                                    #{<<"topic">> := <<"room:a">>, <<"subscribers">> := 2,
                                      <<"presences">> := 1}],
                   <<"python_latency">> := #{<<"p50_us">> := 1000, <<"p99_us">> := null}}, Doc).

json_log_line_has_metadata_and_escapes_test() ->
    Event = #{level => error, msg => {"bad \"~s\"~n", ["x"]},
              meta => #{time => 1796420860582000, conn_id => <<"c1">>, topic => <<"room:a">>,
                        handler => <<"room:*">>, pid => self(), mfa => {m, f, 2}, line => 10,
                        gl => self(), report => #{not_scalar => 1}}},
    Line = iolist_to_binary(hornbeam_log_format:format(Event, #{format => json})),
    ?assertEqual($\n, binary:last(Line)),
    ?assertEqual(nomatch, binary:match(binary:part(Line, 0, byte_size(Line) - 1), <<"\n">>)),
    {ok, J} = hornbeam_nif:json_decode(Line),
    ?assertMatch(#{<<"level">> := <<"error">>, <<"msg">> := <<"bad \"x\"", _/binary>>,
                   <<"conn_id">> := <<"c1">>, <<"topic">> := <<"room:a">>, <<"handler">> := <<"room:*">>,
                   <<"mfa">> := <<"m:f/2">>, <<"line">> := 10, <<"time">> := <<"2026-", _/binary>>}, J),
    ?assertEqual(atom_to_binary(node()), maps:get(<<"node">>, J)),
    ?assertNot(maps:is_key(<<"gl">>, J)),
    ?assertNot(maps:is_key(<<"report">>, J)).

json_log_line_survives_invalid_utf8_test() ->
    Line = hornbeam_log_format:json_line([{msg, <<"a", 255, "b">>}, {ctl, <<1>>}]),
    ?assertEqual({ok, #{<<"msg">> => <<"a", 16#FFFD/utf8, "b">>, <<"ctl">> => <<1>>}},
                 hornbeam_nif:json_decode(Line)).

text_format_appends_the_metadata_present_test() ->
    Event = #{level => info, msg => {string, "joined"}, meta => #{time => 0, node => 'n@h',
                                                                    conn_id => <<"c9">>, topic => <<"t">>}},
    Line = iolist_to_binary(hornbeam_log_format:format(Event, #{format => text})),
    ?assertNotEqual(nomatch, binary:match(Line, <<"info: joined node=n@h conn_id=c9 topic=t\n">>)),
    ?assertEqual(nomatch, binary:match(Line, <<"handler=">>)).

python_traceback_lines_are_keyed_by_handler_test() ->
    ?assertEqual({handler, <<"chat.on_msg">>},
                 hornbeam_log_limiter:python_log_key(<<"handler chat.on_msg raised KeyError: 'x'\nTrace">>)),
    ?assertEqual(none, hornbeam_log_limiter:python_log_key(<<"app: something else">>)),
    ?assertEqual(none, hornbeam_log_limiter:python_log_key(<<"handler without the word">>)).

handler_labels_test() ->
    ?assertEqual(<<"event room:* say">>,
                 hornbeam_metrics:handler_label(event, #{pattern => <<"room:*">>, event => <<"say">>})),
    ?assertEqual(<<"join room:*">>, hornbeam_metrics:handler_label(join, #{pattern => <<"room:*">>})),
    ?assertEqual(<<"connect">>, hornbeam_metrics:handler_label(connect, #{})).
