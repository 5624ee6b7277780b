%% @doc The node's metrics: the calls the hot paths make, and the snapshot
%% a scrape reads.
%%
%% Counting is off until `enable/0' (called by `hornbeam:start/2' when the
%% `metrics_bind' option is set); once on it stays on in this VM. Every
%% hot-path call is one `persistent_term:get/2' (off: return) and one or two
%% `counters:add/3' on a write-concurrent counters array: no process is asked
%% anything per event. Labelled counters (Python calls per handler, HTTP
%% responses per status) are `ets:update_counter/4' on a public table of
%% `hornbeam_metrics_store', with at most `?MAX_LABEL_ROWS' (600) label
%% rows in all: new label values past that count under the label `other',
%% so client-chosen names (an event name) cannot grow the table.
%%
%% Gauges are not counted but read when scraped: open connections and joined
%% channels from the live table (one row per connection / joined channel
%% process, written when it starts and deleted when it ends; rows of
%% processes that were killed are swept), presence entries from the presence
%% shards' kept counts, subscribers per topic from pg, cluster nodes from
%% `nodes()', Python workers from the pool.
%%
%% There is no Erlang `telemetry' library here (hex.pm is not a dependency
%% source of this project): these functions are the event API.
-module(hornbeam_metrics).

-export([enable/0, enabled/0]).
-export([inc/1, add/2, broadcast/1, message_in/1, messages_out/2, python_call/3, http_response/2,
         connection_opened/0, channel_joined/1, forget/0]).
-export([snapshot/0, buckets/0, handler_label/2]).

-define(KEY, {?MODULE, counters}).
-define(LABELS, hornbeam_metrics_labels).
-define(LIVE, hornbeam_metrics_live).
%% label rows in all (python_calls, python_call_errors, http_responses)
-define(MAX_LABEL_ROWS, 600).
%% Python call latency bucket bounds, microseconds (Prometheus `le' in seconds).
-define(BUCKETS, [500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
                  500000, 1000000, 2500000, 5000000, 10000000]).
-define(FIRST_BUCKET, 14).

-type counter() :: joins | join_errors | messages_in | bytes_in | messages_out | bytes_out
                 | broadcasts | deliveries | slow_consumer_closes
                 | python_calls_refused | python_calls | python_call_errors
                 | python_call_micros.
-type snapshot() :: #{atom() => term()}.
-export_type([counter/0, snapshot/0]).

%% --- switching on -----------------------------------------------------------------

%% @doc Start counting (idempotent). The counters live as long as the VM.
-spec enable() -> ok.
enable() ->
    case persistent_term:get(?KEY, undefined) of
        undefined ->
            Ref = counters:new(?FIRST_BUCKET + length(?BUCKETS), [write_concurrency]),
            persistent_term:put(?KEY, Ref);
        _ ->
            ok
    end.

-spec enabled() -> boolean().
enabled() ->
    persistent_term:get(?KEY, undefined) =/= undefined.

%% --- the hot paths ------------------------------------------------------------------

-spec inc(counter()) -> ok.
inc(Name) ->
    add(Name, 1).

-spec add(counter(), integer()) -> ok.
add(Name, N) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        Ref -> counters:add(Ref, index(Name), N)
    end.

%% @doc One local broadcast delivered to the processes in `Recipients'
%% (lists of pids): counted only when enabled, so the hot path does not walk
%% a 5,000-subscriber list for nothing.
-spec broadcast([[pid()]]) -> ok.
broadcast(Recipients) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        Ref ->
            counters:add(Ref, index(broadcasts), 1),
            counters:add(Ref, index(deliveries), lists:sum([length(L) || L <- Recipients]))
    end.

%% @doc One data message (text or binary frame) read from a client.
-spec message_in(non_neg_integer()) -> ok.
message_in(Bytes) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        Ref -> counters:add(Ref, index(messages_in), 1), counters:add(Ref, index(bytes_in), Bytes)
    end.

%% @doc Frames written to a client in one write.
-spec messages_out(pos_integer(), iodata()) -> ok.
messages_out(N, Data) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        Ref ->
            counters:add(Ref, index(messages_out), N),
            counters:add(Ref, index(bytes_out), iolist_size(Data))
    end.

%% @doc One Python call: its handler label (`handler_label/2'), how long
%% the caller waited for it (queueing included), and how it ended.
-spec python_call(binary(), non_neg_integer(), ok | error | refused) -> ok.
python_call(Label, Micros, Outcome) ->
    case persistent_term:get(?KEY, undefined) of
        undefined ->
            ok;
        Ref ->
            counters:add(Ref, index(python_calls), 1),
            counters:add(Ref, index(python_call_micros), Micros),
            counters:add(Ref, bucket(Micros, ?BUCKETS, ?FIRST_BUCKET), 1),
            label_add({python_calls, Label}),
            case Outcome of
                ok -> ok;
                error -> counters:add(Ref, index(python_call_errors), 1),
                         label_add({python_call_errors, Label});
                refused -> counters:add(Ref, index(python_calls_refused), 1)
            end
    end.

%% @doc A response the app's listener wrote (other listeners, such as the
%% metrics one, are not counted).
-spec http_response(atom(), 100..599) -> ok.
http_response(hornbeam_http, Status) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        _ -> label_add({http_responses, Status})
    end;
http_response(_Ref, _Status) ->
    ok.

%% @doc The calling process is an open client connection (WebSocket or
%% long-poll session) until it ends or calls `forget/0'.
-spec connection_opened() -> ok.
connection_opened() ->
    live({self(), connection}).

%% @doc The calling process is a channel joined under Pattern.
-spec channel_joined(binary()) -> ok.
channel_joined(Pattern) ->
    live({self(), {channel, Pattern}}).

%% @doc The calling process no longer counts in the gauges.
-spec forget() -> ok.
forget() ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        _ -> _ = catch ets:delete(?LIVE, self()), ok
    end.

%% The Python call label: `"join room:*"', `"event room:* new_msg"'.
-spec handler_label(atom(), map() | tuple()) -> binary().
handler_label(event, #{pattern := P, event := E}) when is_binary(P), is_binary(E) ->
    <<"event ", P/binary, " ", E/binary>>;
handler_label(event, {P, E, _Payload, _Assigns, _Key, _Fixed}) when is_binary(P), is_binary(E) ->
    %% the compact form of an event call (hornbeam_py_channel)
    <<"event ", P/binary, " ", E/binary>>;
handler_label(Kind, #{pattern := P}) when is_binary(P) ->
    <<(atom_to_binary(Kind))/binary, " ", P/binary>>;
handler_label(Kind, _) ->
    atom_to_binary(Kind).

%% --- scraping -----------------------------------------------------------------------

%% @doc Everything a scrape shows, read now.
-spec snapshot() -> snapshot().
snapshot() ->
    Ref = persistent_term:get(?KEY, undefined),
    Get = fun(Name) -> case Ref of undefined -> 0; _ -> counters:get(Ref, index(Name)) end end,
    Counters = maps:from_list([{N, Get(N)} || N <- counter_names()]),
    BucketCounts = [case Ref of undefined -> 0; _ -> counters:get(Ref, ?FIRST_BUCKET + I) end
                    || I <- lists:seq(0, length(?BUCKETS))],
    {Connections, Channels} = live_counts(),
    Presence = presence_counts(),
    #{counters => Counters,
      python_latency => #{bounds => ?BUCKETS, counts => BucketCounts},
      python_calls_by_handler => labels(python_calls),
      python_call_errors_by_handler => labels(python_call_errors),
      http_responses => labels(http_responses),
      connections => Connections,
      channels_joined => Channels,
      presence_entries => lists:sum(maps:values(Presence)),
      presence_by_topic => Presence,
      subscribers_by_topic => subscribers(),
      cluster_nodes => length(nodes()) + 1,
      python_workers => python_workers(),
      node => node(),
      enabled => Ref =/= undefined}.

%% @doc The latency bucket bounds, microseconds.
-spec buckets() -> [pos_integer()].
buckets() -> ?BUCKETS.

%% --- internals ------------------------------------------------------------------------

counter_names() ->
    [joins, join_errors, messages_in, bytes_in, messages_out, bytes_out, broadcasts, deliveries,
     slow_consumer_closes, python_calls_refused, python_calls,
     python_call_errors, python_call_micros].

index(joins) -> 1;
index(join_errors) -> 2;
index(messages_in) -> 3;
index(bytes_in) -> 4;
index(messages_out) -> 5;
index(bytes_out) -> 6;
index(broadcasts) -> 7;
index(deliveries) -> 8;
index(slow_consumer_closes) -> 9;
index(python_calls_refused) -> 10;
index(python_calls) -> 11;
index(python_call_errors) -> 12;
index(python_call_micros) -> 13.

%% The first bucket whose bound holds Micros; past the last, +Inf.
bucket(Micros, [Bound | _], Ix) when Micros =< Bound -> Ix;
bucket(Micros, [_ | Rest], Ix) -> bucket(Micros, Rest, Ix + 1);
bucket(_Micros, [], Ix) -> Ix.

label_add(Key = {Metric, _}) ->
    try ets:update_counter(?LABELS, Key, 1) of
        _ -> ok
    catch error:badarg ->
            %% a new label value (or no table: the store is restarting)
            Key1 = case catch ets:info(?LABELS, size) of
                       N when is_integer(N), N < ?MAX_LABEL_ROWS -> Key;
                       _ -> {Metric, other}
                   end,
            _ = (catch ets:update_counter(?LABELS, Key1, 1, {Key1, 0})),
            ok
    end.

labels(Metric) ->
    case ets:whereis(?LABELS) of
        undefined -> #{};
        _ -> maps:from_list([{L, C} || [L, C] <- ets:match(?LABELS, {{Metric, '$1'}, '$2'})])
    end.

live(Row) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        _ -> _ = catch ets:insert(?LIVE, Row), ok
    end.

live_counts() ->
    case ets:whereis(?LIVE) of
        undefined ->
            {0, #{}};
        _ ->
            ets:foldl(fun({Pid, What}, {Conns, Chans}) ->
                              case is_process_alive(Pid) of
                                  false -> {Conns, Chans};
                                  true when What =:= connection -> {Conns + 1, Chans};
                                  true -> {channel, P} = What,
                                          {Conns, maps:update_with(P, fun(X) -> X + 1 end, 1, Chans)}
                              end
                      end, {0, #{}}, ?LIVE)
    end.

%% This node's presences per topic, from the shards' kept counts.
presence_counts() ->
    case ets:whereis(hornbeam_presence_keep) of
        undefined ->
            #{};
        _ ->
            lists:foldl(fun([{_Owners, Topics}], Acc) when is_map(Topics) ->
                                maps:fold(fun(T, N, A) when N > 0 ->
                                                  maps:update_with(T, fun(X) -> X + N end, N, A);
                                             (_, _, A) -> A
                                          end, Acc, Topics);
                           (_, Acc) -> Acc
                        end, #{}, ets:match(hornbeam_presence_keep, {{counts, '_'}, '$1'}))
    end.

%% Local subscribers per topic (pg groups of this node).
subscribers() ->
    Scope = hornbeam_pubsub:scope(),
    try
        maps:from_list([{T, length(pg:get_local_members(Scope, G))}
                        || G = {topic, T} <- pg:which_groups(Scope)])
    catch _:_ -> #{}
    end.

%% Each worker's status, calls in flight and restarts (its own count:
%% the sum restarts from 0 when the pool itself restarts).
python_workers() ->
    [maps:with([ix, status, in_flight, queued, restarts], Info)
     || Info <- hornbeam_python:workers()].
