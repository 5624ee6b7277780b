%% @doc A metrics snapshot (`hornbeam_metrics:snapshot/0') as Prometheus
%% text (exposition format 0.0.4) and as the JSON the dashboard polls.
%% Pure functions: tested in `test/hornbeam_metrics_format_tests.erl'.
-module(hornbeam_metrics_format).

-export([prometheus/1, json/1, quantile/3, escape_label/1]).

%% Topics listed in the JSON, busiest (most local subscribers) first.
-define(TOP_TOPICS, 20).

%% @doc The Prometheus text of a snapshot.
-spec prometheus(hornbeam_metrics:snapshot()) -> iodata().
prometheus(S = #{counters := C}) ->
    Workers = maps:get(python_workers, S),
    [gauge(hornbeam_connections, "Open client connections (WebSocket and long-poll sessions).",
           maps:get(connections, S)),
     labelled(hornbeam_channels_joined, gauge, "Channels joined now, by channel pattern.",
              pattern, maps:get(channels_joined, S)),
     counter(hornbeam_joins_total, "Channel joins accepted.", maps:get(joins, C)),
     counter(hornbeam_join_errors_total,
             "Channel joins refused (handler error, crash, unmatched topic, channel limit).",
             maps:get(join_errors, C)),
     counter(hornbeam_messages_in_total, "Data messages (text or binary frames) read from clients.",
             maps:get(messages_in, C)),
     counter(hornbeam_message_bytes_in_total, "Bytes of those messages (frame payloads).",
             maps:get(bytes_in, C)),
     counter(hornbeam_messages_out_total,
             "WebSocket frames written to clients (replies, pushes, broadcasts).",
             maps:get(messages_out, C)),
     counter(hornbeam_message_bytes_out_total, "Bytes written to clients in those frames.",
             maps:get(bytes_out, C)),
     counter(hornbeam_broadcasts_total,
             "Broadcasts fanned out on this node (sent here or relayed from a peer).",
             maps:get(broadcasts, C)),
     counter(hornbeam_deliveries_total, "Broadcast frames handed to local subscribers.",
             maps:get(deliveries, C)),
     counter(hornbeam_slow_consumer_closes_total,
             "Clients closed with 1008 because their send queue passed max_send_queue.",
             maps:get(slow_consumer_closes, C)),
     labelled(hornbeam_python_calls_total, counter, "Python handler calls, by handler.",
              handler, maps:get(python_calls_by_handler, S)),
     labelled(hornbeam_python_call_errors_total, counter,
              "Python handler calls that raised, timed out or lost their worker, by handler.",
              handler, maps:get(python_call_errors_by_handler, S)),
     counter(hornbeam_python_calls_refused_total,
             "Python calls refused at once because the worker was overloaded (max_queued_calls).",
             maps:get(python_calls_refused, C)),
     histogram(hornbeam_python_call_duration_seconds,
               "Time a channel process waited for a Python call (queueing included).",
               maps:get(python_latency, S), maps:get(python_call_micros, C)),
     labelled(hornbeam_python_workers, gauge, "Python workers, by status.", status,
              count_by(status, Workers)),
     counter(hornbeam_python_worker_restarts_total,
             "Python worker port restarts (a crash or a timed-out call); 0 again after a pool restart.",
             lists:sum([maps:get(restarts, W, 0) || W <- Workers])),
     gauge(hornbeam_presence_entries, "Presences tracked by channels on this node.",
           maps:get(presence_entries, S)),
     gauge(hornbeam_cluster_nodes, "Erlang nodes connected, this one included.",
           maps:get(cluster_nodes, S)),
     labelled(hornbeam_http_responses_total, counter,
              "HTTP responses written by the app's listener, by status.", status,
              maps:get(http_responses, S))].

%% @doc The dashboard's JSON (binary).
-spec json(hornbeam_metrics:snapshot()) -> binary().
json(S = #{counters := C, python_latency := Lat = #{bounds := Bounds, counts := Counts}}) ->
    Subs = maps:get(subscribers_by_topic, S),
    Presence = maps:get(presence_by_topic, S),
    Topics = lists:sublist(lists:reverse(lists:keysort(2, maps:to_list(Subs))), ?TOP_TOPICS),
    Doc = #{<<"node">> => atom_to_binary(maps:get(node, S)),
            <<"enabled">> => maps:get(enabled, S),
            <<"time_ms">> => erlang:system_time(millisecond),
            <<"connections">> => maps:get(connections, S),
            <<"channels_joined">> => maps:get(channels_joined, S),
            <<"presence_entries">> => maps:get(presence_entries, S),
            <<"cluster_nodes">> => maps:get(cluster_nodes, S),
            <<"counters">> => C,
            <<"python_latency">> =>
                #{<<"bounds_us">> => Bounds, <<"counts">> => Counts,
                  <<"p50_us">> => null_if_undefined(quantile(0.5, Bounds, Counts)),
                  <<"p99_us">> => null_if_undefined(quantile(0.99, Bounds, Counts)),
                  <<"count">> => lists:sum(maps:get(counts, Lat))},
            <<"python_workers">> => [maps:map(fun(_, V) when is_atom(V) -> atom_to_binary(V);
                                                 (_, V) -> V
                                              end, W) || W <- maps:get(python_workers, S)],
            <<"http_responses">> => maps:get(http_responses, S),
            <<"topics">> => [#{<<"topic">> => T, <<"subscribers">> => N,
                               <<"presences">> => maps:get(T, Presence, 0)} || {T, N} <- Topics]},
    {ok, Json} = hornbeam_nif:json_encode(Doc),
    Json.

%% @doc The Q-quantile (0..1) of a histogram given as per-bucket counts
%% (the last one past the last bound): the bound of the bucket that holds
%% it, `undefined' for an empty histogram, `infinity' past the last bound.
-spec quantile(float(), [number()], [non_neg_integer()]) -> number() | undefined | infinity.
quantile(Q, Bounds, Counts) ->
    case lists:sum(Counts) of
        0 -> undefined;
        Total -> walk(max(1, ceil(Q * Total)), Bounds, Counts, 0)
    end.

walk(Rank, [Bound | Bounds], [N | Counts], Seen) ->
    case Seen + N >= Rank of
        true -> Bound;
        false -> walk(Rank, Bounds, Counts, Seen + N)
    end;
walk(_Rank, [], _Counts, _Seen) ->
    infinity.

%% @doc A label value escaped for the text format (backslash, quote, newline).
-spec escape_label(iodata() | atom() | integer()) -> binary().
escape_label(V) when is_atom(V) -> escape_label(atom_to_binary(V));
escape_label(V) when is_integer(V) -> integer_to_binary(V);
escape_label(V) ->
    B = unicode:characters_to_binary(V),
    << <<(case C of $\\ -> <<"\\\\">>; $" -> <<"\\\"">>; $\n -> <<"\\n">>; _ -> <<C>> end)/binary>>
       || <<C>> <= B >>.

%% --- internals ---------------------------------------------------------------------

head(Name, Type, Help) ->
    ["# HELP ", atom_to_list(Name), " ", Help, "\n# TYPE ", atom_to_list(Name), " ", Type, "\n"].

gauge(Name, Help, Value) ->
    [head(Name, "gauge", Help), atom_to_list(Name), " ", number(Value), "\n"].

counter(Name, Help, Value) ->
    [head(Name, "counter", Help), atom_to_list(Name), " ", number(Value), "\n"].

labelled(Name, Type, Help, Label, Values) ->
    [head(Name, atom_to_list(Type), Help)
     | [[atom_to_list(Name), "{", atom_to_list(Label), "=\"", escape_label(K), "\"} ",
         number(V), "\n"] || {K, V} <- lists:sort(maps:to_list(Values))]].

histogram(Name, Help, #{bounds := Bounds, counts := Counts}, SumMicros) ->
    N = atom_to_list(Name),
    {Lines, Total} = lists:foldl(
                       fun({Le, C}, {Acc, Cum}) ->
                               Cum1 = Cum + C,
                               {[[N, "_bucket{le=\"", Le, "\"} ", integer_to_list(Cum1), "\n"] | Acc],
                                Cum1}
                       end, {[], 0},
                       lists:zip([seconds(B) || B <- Bounds] ++ ["+Inf"], Counts)),
    [head(Name, "histogram", Help), lists:reverse(Lines),
     N, "_sum ", seconds(SumMicros), "\n", N, "_count ", integer_to_list(Total), "\n"].

seconds(Micros) ->
    float_to_list(Micros / 1000000, [{decimals, 6}, compact]).

number(V) when is_integer(V) -> integer_to_list(V);
number(V) when is_float(V) -> float_to_list(V, [short]).

count_by(Key, Maps) ->
    lists:foldl(fun(M, Acc) ->
                        maps:update_with(maps:get(Key, M, unknown), fun(X) -> X + 1 end, 1, Acc)
                end, #{}, Maps).

null_if_undefined(undefined) -> null;
null_if_undefined(infinity) -> null;
null_if_undefined(V) -> V.
