%% @doc Calls into the Python worker pool.
%%
%% `call(Kind, Args)' sends `{call, Id, Kind, Args}' to the least-busy worker
%% port and returns its `{result, Id, Result}' as `{ok, Result}'. The choice
%% reads per-worker in-flight counters (one `atomics' array, no process in
%% the way); ties are broken round-robin. See `src/python/README.md' for the
%% call kinds and their results.
-module(hornbeam_python).

-export([call/2, call/3, channel_call/2, worker_down/1, channels/0, has_on_connect/0, workers/0, default_timeout/0]).
-export([stream/2, stream/3, notify/2, cancel/1, has_http_app/0]).
%% internal, for hornbeam_python_sup / hornbeam_py_worker
-export([pool/0, unavailable/0]).

-define(POOL_KEY, {hornbeam_python, pool}).
-define(INFO_KEY, {hornbeam_python, info}).
%% Added to a worker's counter while it cannot take calls (starting,
%% restarting), so the picker only chooses it when every worker is down.
-define(UNAVAILABLE, (1 bsl 40)).

-type kind() :: join | event | leave | connect | http | out | info.
-type result() :: term().
%% A map (see src/python/README.md for each kind's keys), or for `event'
%% the compact tuple hornbeam_py_channel sends.
-type args() :: map() | tuple().
-type error() :: timeout | worker_crashed | not_started | overloaded.
-type pool() :: #{size := pos_integer(),
                  names := tuple(),
                  load := atomics:atomics_ref(),
                  timeout := timeout(),
                  http := boolean(),
                  emit_handler := module()}.
-type channel_info() :: #{pattern := binary(), events := [binary()], intercepts := [binary()]}.
%% A running stream call: its messages are `{hornbeam_py, Ref, Event}'
%% (see stream/3), and `Ref' is also the monitor of the worker process.
-opaque stream() :: {hornbeam_py_stream, pid(), reference()}.
-export_type([kind/0, args/0, result/0, error/0, pool/0, channel_info/0, stream/0]).

%% @doc `call(Kind, Args, Timeout)' with the pool's default timeout.
-spec call(kind(), args()) -> {ok, result()} | {error, error()}.
call(Kind, Args) ->
    call(Kind, Args, default).

%% @doc `call/2' for a channel process, which calls the pool all its life:
%% the worker process is monitored once and the monitor kept (in the
%% process dictionary) instead of one monitor per call. Two signals less to
%% the worker process per call: 0.5-0.75 us of the VM's time per Python
%% round trip (src/python/README.md). When that worker process goes while no
%% call is running, the caller gets its `'DOWN'' message, and must pass it
%% to worker_down/1.
-spec channel_call(kind(), args()) -> {ok, result()} | {error, error()}.
channel_call(Kind, Args) ->
    call(Kind, Args, default, watched).

%% @doc Whether Msg is the `'DOWN'' of a worker process that channel_call/2
%% monitored (and if so, forget that monitor).
-spec worker_down(term()) -> boolean().
worker_down({'DOWN', Mon, process, _Pid, _Reason}) when is_reference(Mon) ->
    Keys = [Key || {Key = {?MODULE, watch, _}, {_, M}} <- get(), M =:= Mon],
    _ = [erase(Key) || Key <- Keys],
    Keys =/= [];
worker_down(_Msg) ->
    false.

%% @doc Run one call on the least-busy worker. On `{error, timeout}' that
%% worker was killed and is being replaced; every other call in flight on it
%% got `{error, worker_crashed}'. `Timeout' bounds the call's execution, not
%% the time it waits for a free handler thread; `{error, overloaded}' means
%% that `max_queued_calls' calls were already waiting on that worker. The
%% call's emits (broadcast, broadcast_from, push) are applied here, in the
%% calling process, before the result is returned.
-spec call(kind(), args(), timeout() | default) -> {ok, result()} | {error, error()}.
call(Kind, Args, Timeout) ->
    call(Kind, Args, Timeout, monitored).

call(Kind, Args, Timeout0, How) ->
    case pool() of
        undefined ->
            {error, not_started};
        #{size := N, names := Names, load := Load, timeout := Default, emit_handler := Emits} ->
            Timeout = case Timeout0 of default -> Default; _ -> Timeout0 end,
            Ix = pick(Load, N),
            atomics:add(Load, Ix, 1),
            Request = {call, Kind, encode_args(Args), Timeout},
            Result = case hornbeam_metrics:enabled() of
                         true -> measured_call(How, element(Ix, Names), Ix, Load, Request, Kind, Args);
                         false -> call_worker(How, element(Ix, Names), Ix, Load, Request)
                     end,
            %% the worker sent this call's emits before its reply
            apply_emits(Emits, Ix),
            Result
    end.

%% call_worker/4, counted and timed for hornbeam_metrics (only when metrics
%% are on: the label and the clock reads are a measurable part of a call).
measured_call(How, Name, Ix, Load, Request, Kind, Args) ->
    T0 = erlang:monotonic_time(microsecond),
    Result = call_worker(How, Name, Ix, Load, Request),
    ok = hornbeam_metrics:python_call(hornbeam_metrics:handler_label(Kind, Args),
                                      erlang:monotonic_time(microsecond) - T0,
                                      outcome(Result)),
    Result.

%% A call's arguments go to the worker process already encoded: a large
%% binary travels in a message by reference, where the map would be copied
%% into the worker process and encoded there (both measurable per call).
encode_args(Args) ->
    term_to_binary(Args).

%% How a call ended, for hornbeam_metrics.
outcome({error, overloaded}) -> refused;
outcome({error, _}) -> error;
outcome({ok, {crash, _}}) -> error;
outcome({ok, _}) -> ok.

call_worker(watched, Name, Ix, Load, Request) ->
    %% gen_server:call's protocol, with the caller's kept monitor
    case watch(Name) of
        undefined ->
            atomics:sub(Load, Ix, 1),
            {error, worker_crashed};
        {Pid, Mon} ->
            Tag = make_ref(),
            Pid ! {'$gen_call', {self(), Tag}, Request},
            receive
                {Tag, Reply} ->
                    Reply;
                {'DOWN', Mon, process, Pid, _} ->
                    erase({?MODULE, watch, Name}),
                    {error, worker_crashed}
            end
    end;
call_worker(monitored, Name, Ix, Load, Request) ->
    %% No deadline here: the worker answers every call it took (a result,
    %% its execution timer, overloaded, or the port's death), and a call may
    %% first wait for a handler thread for a while. gen_server:call still
    %% returns if the worker process dies.
    try
        gen_server:call(Name, Request, infinity)
    catch
        exit:{noproc, _} ->
            %% never reached the worker: it did not count it
            atomics:sub(Load, Ix, 1),
            {error, worker_crashed};
        exit:_ ->
            {error, worker_crashed}
    end.

%% The worker process registered as Name and this process's monitor of it
%% (made once per worker process; see channel_call/2).
watch(Name) ->
    Key = {?MODULE, watch, Name},
    case {whereis(Name), get(Key)} of
        {undefined, _} ->
            undefined;
        {Pid, {Pid, _} = Watch} ->
            Watch;
        {Pid, Old} ->
            %% a new worker process: the old one's 'DOWN' must not linger
            _ = is_tuple(Old) andalso demonitor(element(2, Old), [flush]),
            Watch = {Pid, monitor(process, Pid)},
            _ = put(Key, Watch),
            Watch
    end.

apply_emits(Handler, Ix) ->
    receive
        {hornbeam_py_emit, Emit} ->
            hornbeam_py_worker:apply_emit(Handler, Emit, Ix),
            apply_emits(Handler, Ix)
    after 0 ->
        ok
    end.

%% @doc `stream(Kind, Args, Timeout)' with the pool's default timeout.
-spec stream(kind(), map()) -> {ok, reference(), stream()} | {error, not_started | worker_crashed}.
stream(Kind, Args) ->
    stream(Kind, Args, default).

%% @doc Start a call whose answer comes as messages to the calling process,
%% on the least-busy worker (used for HTTP, whose responses may stream):
%% <ul>
%% <li>`{hornbeam_py, Ref, Event}' for every `{http, Id, Event}' frame of the
%%     call until its response is complete: `{start, Status, Headers}',
%%     `{body, Data, More}', `{response, Status, Headers, Body}';</li>
%% <li>then, if the call ended before its response was complete,
%%     `{hornbeam_py, Ref, {response, Status, Headers, Body}}' (the result
%%     carried the whole response) or `{hornbeam_py, Ref, {result, Result}}';</li>
%% <li>or `{hornbeam_py, Ref, {error, timeout | worker_crashed}}'.</li>
%% </ul>
%% `Ref' also monitors the worker process: `{'DOWN', Ref, process, _, _}'
%% means worker_crashed. The timeout runs until the first event and again
%% from every event (an idle timeout); when it fires the worker is killed
%% and replaced, as for call/3.
-spec stream(kind(), map(), timeout() | default) ->
          {ok, reference(), stream()} | {error, not_started | worker_crashed}.
stream(Kind, Args, Timeout0) ->
    case pool() of
        undefined ->
            {error, not_started};
        #{size := N, names := Names, load := Load, timeout := Default} ->
            Timeout = case Timeout0 of default -> Default; _ -> Timeout0 end,
            Ix = pick(Load, N),
            case whereis(element(Ix, Names)) of
                undefined ->
                    {error, worker_crashed};
                Pid ->
                    atomics:add(Load, Ix, 1),
                    Ref = monitor(process, Pid),
                    gen_server:cast(Pid, {stream, self(), Ref, Kind, encode_args(Args), Timeout}),
                    {ok, Ref, {hornbeam_py_stream, Pid, Ref}}
            end
    end.

%% @doc Send `{notify, Id, Msg}' to the worker running the stream's call
%% (dropped once the call is over).
-spec notify(stream(), term()) -> ok.
notify({hornbeam_py_stream, Pid, Ref}, Msg) ->
    gen_server:cast(Pid, {notify, Ref, Msg}).

%% @doc The caller has lost interest (e.g. its HTTP client went away):
%% Python is told `disconnect', and no more messages of this stream are
%% sent; the ones already sent are flushed from the mailbox.
-spec cancel(stream()) -> ok.
cancel({hornbeam_py_stream, Pid, Ref}) ->
    gen_server:cast(Pid, {cancel, Ref}),
    demonitor(Ref, [flush]),
    flush_stream(Ref).

flush_stream(Ref) ->
    receive {hornbeam_py, Ref, _} -> flush_stream(Ref)
    after 0 -> ok
    end.

%% @doc Whether the pool serves an HTTP app: `hornbeam:start/2' was given
%% one and the module has it (a module without it serves channels only).
-spec has_http_app() -> boolean().
has_http_app() ->
    case pool() of
        #{http := true} ->
            maps:get(http, persistent_term:get(?INFO_KEY, #{}), false) =:= true
                andalso whereis(hornbeam_python_sup) =/= undefined;
        _ -> false
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
