%% @doc Keeps a client from flooding the log: the lines a client can cause
%% again and again (a handler's traceback, a channel crash) are written at
%% most `traceback_log_limit' times per key and minute; the rest of the
%% minute they are counted, and when the minute ends one line says how many
%% of each key were suppressed.
%%
%% A key names the handler (`"handler chat.on_new_msg"', `{crash, Pattern,
%% Event}'). At most `?MAX_KEYS' keys are counted per minute; past that,
%% new keys share one (`other'), so the table stays small whatever the
%% clients send. The counts live in a public ETS table of
%% `hornbeam_metrics_store', which starts a new window every minute; without
%% that table (the store is restarting) every line is written.
-module(hornbeam_log_limiter).

-export([allow/1, python_log_key/1, new_window/0, window_ms/0, set_limit/1, limit/0,
         default_limit/0]).

-define(TABLE, hornbeam_log_limiter).
-define(LIMIT_KEY, {?MODULE, limit}).
-define(DEFAULT_LIMIT, 5).
-define(MAX_KEYS, 1000).
-define(WINDOW_MS, 60000).

%% @doc Whether a line of Key may be written now.
-spec allow(term()) -> boolean().
allow(Key) ->
    Limit = limit(),
    try ets:update_counter(?TABLE, Key, 1) of
        N -> N =< Limit
    catch error:badarg ->
            Key1 = case catch ets:info(?TABLE, size) of
                       Size when is_integer(Size), Size < ?MAX_KEYS -> Key;
                       _ -> other
                   end,
            try ets:update_counter(?TABLE, Key1, 1, {Key1, 0}) of
                N -> N =< Limit
            catch error:badarg -> true
            end
    end.

%% @doc The limiter key of a log line from a Python worker, or `none' for
%% a line that is not a handler's traceback (`hornbeam_runtime' writes
%% those as "handler NAME raised ...").
-spec python_log_key(binary()) -> {handler, binary()} | none.
python_log_key(<<"handler ", Rest/binary>>) ->
    case binary:split(Rest, <<" raised ">>) of
        [Name, _] when byte_size(Name) =< 200 -> {handler, Name};
        _ -> none
    end;
python_log_key(_) ->
    none.

%% @doc End the window: one warning per key that went over the limit,
%% then every count starts from 0.
-spec new_window() -> ok.
new_window() ->
    Limit = limit(),
    case ets:whereis(?TABLE) of
        undefined ->
            ok;
        _ ->
            Over = [{Key, N - Limit} || {Key, N} <- ets:tab2list(?TABLE), N > Limit],
            true = ets:delete_all_objects(?TABLE),
            lists:foreach(
              fun({Key, K}) ->
                      logger:warning("suppressed ~b more log line(s) of ~ts in the last minute "
                                     "(traceback_log_limit is ~b)", [K, describe(Key), Limit],
                                     #{limited => describe(Key)})
              end, lists:sort(Over))
    end.

-spec window_ms() -> pos_integer().
window_ms() -> ?WINDOW_MS.

%% @doc Set `traceback_log_limit' (lines per key and minute).
-spec set_limit(non_neg_integer()) -> ok.
set_limit(N) when is_integer(N), N >= 0 ->
    case persistent_term:get(?LIMIT_KEY, undefined) of
        N -> ok;
        _ -> persistent_term:put(?LIMIT_KEY, N)
    end.

-spec limit() -> non_neg_integer().
limit() ->
    persistent_term:get(?LIMIT_KEY, ?DEFAULT_LIMIT).

-spec default_limit() -> non_neg_integer().
default_limit() -> ?DEFAULT_LIMIT.

describe({handler, Name}) -> ["Python handler ", Name];
describe({crash, Pattern, Event}) -> io_lib:format("channel ~ts event ~ts", [Pattern, Event]);
describe(other) -> "other keys (over the key limit)";
describe(Key) -> io_lib:format("~0p", [Key]).
