%% @doc Calls into the Python worker pool.
%%
%% `call(Kind, Args)' sends `{call, Id, Kind, Args}' to the least-busy worker
%% port and returns its `{result, Id, Result}' as `{ok, Result}'. The choice
%% reads per-worker in-flight counters (one `atomics' array, no process in
%% the way); ties are broken round-robin. See `src/python/README.md' for the
%% call kinds and their results.
-module(hornbeam_python).

-export([call/2, call/3, channels/0, has_on_connect/0, workers/0, default_timeout/0]).
%% internal, for hornbeam_python_sup / hornbeam_py_worker
-export([pool/0, unavailable/0]).

-define(POOL_KEY, {hornbeam_python, pool}).
-define(INFO_KEY, {hornbeam_python, info}).
%% Added to a worker's counter while it cannot take calls (starting,
%% restarting), so the picker only chooses it when every worker is down.
-define(UNAVAILABLE, (1 bsl 40)).
%% Extra time the caller waits beyond the call's own timeout (the worker
%% enforces the timeout; this only guards against a stuck worker process).
-define(MARGIN, 5000).

-type kind() :: join | event | leave | connect.
-type result() :: term().
-type error() :: timeout | worker_crashed | not_started.
-type pool() :: #{size := pos_integer(),
                  names := tuple(),
                  load := atomics:atomics_ref(),
                  timeout := timeout()}.
-type channel_info() :: #{pattern := binary(), events := [binary()]}.
-export_type([kind/0, result/0, error/0, pool/0, channel_info/0]).

%% @doc `call(Kind, Args, Timeout)' with the pool's default timeout.
-spec call(kind(), map()) -> {ok, result()} | {error, error()}.
call(Kind, Args) ->
    call(Kind, Args, default).

%% @doc Run one call on the least-busy worker. On `{error, timeout}' that
%% worker was killed and is being replaced; every other call in flight on it
%% got `{error, worker_crashed}'.
-spec call(kind(), map(), timeout() | default) -> {ok, result()} | {error, error()}.
call(Kind, Args, Timeout0) ->
    case pool() of
        undefined ->
            {error, not_started};
        #{size := N, names := Names, load := Load, timeout := Default} ->
            Timeout = case Timeout0 of default -> Default; _ -> Timeout0 end,
            Ix = pick(Load, N),
            atomics:add(Load, Ix, 1),
            Name = element(Ix, Names),
            CallTimeout = case Timeout of infinity -> infinity; _ -> Timeout + ?MARGIN end,
            try
                gen_server:call(Name, {call, Kind, Args, Timeout}, CallTimeout)
            catch
                exit:{timeout, _} ->
                    {error, timeout};
                exit:{noproc, _} ->
                    %% never reached the worker: it did not count it
                    atomics:sub(Load, Ix, 1),
                    {error, worker_crashed};
                exit:_ ->
                    {error, worker_crashed}
            end
    end.

%% @doc The channels the Python modules registered.
-spec channels() -> [channel_info()].
channels() ->
    maps:get(channels, persistent_term:get(?INFO_KEY, #{}), []).

%% @doc Whether an `@on_connect' handler is registered.
-spec has_on_connect() -> boolean().
has_on_connect() ->
    maps:get(on_connect, persistent_term:get(?INFO_KEY, #{}), false) =:= true.

%% @doc State of every worker (for tests and operators).
-spec workers() -> [map()].
workers() ->
    case pool() of
        undefined -> [];
        #{names := Names} ->
            [hornbeam_py_worker:info(Name) || Name <- tuple_to_list(Names)]
    end.

-spec default_timeout() -> timeout().
default_timeout() ->
    case pool() of
        #{timeout := T} -> T;
        undefined -> 30000
    end.

%% @private
-spec pool() -> pool() | undefined.
pool() ->
    persistent_term:get(?POOL_KEY, undefined).

%% @private
-spec unavailable() -> pos_integer().
unavailable() -> ?UNAVAILABLE.

%% The slot after the N worker counters is the round-robin cursor.
-spec pick(atomics:atomics_ref(), pos_integer()) -> pos_integer().
pick(_Load, 1) ->
    1;
pick(Load, N) ->
    Start = (atomics:add_get(Load, N + 1, 1) band 16#7ffffff) rem N,
    First = Start + 1,
    scan(Load, N, First, 1, First, atomics:get(Load, First)).

scan(_Load, N, _First, N, Best, _BestLoad) ->
    Best;
scan(Load, N, First, Seen, Best, BestLoad) ->
    Ix = ((First - 1 + Seen) rem N) + 1,
    case atomics:get(Load, Ix) of
        L when L < BestLoad -> scan(Load, N, First, Seen + 1, Ix, L);
        _ -> scan(Load, N, First, Seen + 1, Best, BestLoad)
    end.
