%% @doc Supervisor of the Python worker pool.
%%
%% `start_link(Opts)' starts `workers' `hornbeam_py_worker' processes (one
%% `hornbeam_worker' port each), waits until every one has imported the
%% Python modules, and only then returns `{ok, Pid}'. Options:
%%
%% <ul>
%% <li>`app' — `"module:attr"' (or `undefined'), imported first;</li>
%% <li>`channel_modules' — Python modules that register channels;</li>
%% <li>`pythonpath' — extra `sys.path' entries (`priv/python' always comes first);</li>
%% <li>`workers' — default `erlang:system_info(schedulers_online)';</li>
%% <li>`threads' — threads per worker that run `def' handlers and WSGI
%%     apps, default 16 (see README: measured);</li>
%% <li>`max_queued_calls' — calls a worker lets wait for a free thread
%%     before it answers `{error, overloaded}', default 1024;</li>
%% <li>`timeout' — default call timeout in ms, 30000;</li>
%% <li>`init_timeout' — how long a worker may take to import, 60000;</li>
%% <li>`worker_path' — default `priv/hornbeam_worker';</li>
%% <li>`emit_handler' — module with `handle_emit/1', default `hornbeam_python_emit';</li>
%% <li>`env' — extra OS environment for the worker, `[{Name, Value}]';</li>
%% <li>`python' — the interpreter or virtualenv the workers import from
%%     (default: the activated one, `VIRTUAL_ENV'); it must be of the
%%     Python version the worker was built for (`hornbeam_python_env');</li>
%% <li>`worker_class' — how `app' serves HTTP: `asgi' (default) or `wsgi';</li>
%% <li>`lifespan' — the ASGI lifespan protocol: `auto' (default; an app that
%%     raises on it does not support it), `on' (required) or `off';</li>
%% <li>`root_path' — the ASGI `root_path' / WSGI `SCRIPT_NAME', default `""';</li>
%% <li>`shutdown_timeout' — how long a stopping worker may take (lifespan
%%     shutdown) before it is killed, 5000 ms.</li>
%% </ul>
%%
%% Errors: `{error, {worker_binary_missing, Path, Hint}}',
%% `{error, {python_import, Module, Message, Traceback}}' (logged once),
%% `{error, {bad_app, Spec, Message}}' (`module:attr' is not callable, or
%% is missing and no channels are registered),
%% `{error, hornbeam_python_env:error()}' (the `python' option),
%% `{error, {lifespan_startup_failed, Message}}',
%% `{error, {bad_option, Name, Value}}',
%% `{error, {worker_start_failed, Reason}}'.
-module(hornbeam_python_sup).
-behaviour(supervisor).

-export([start_link/0, start_link/1, stop/0, priv_dir/0, normalize_opts/1]).
-export([init/1]).

-include_lib("kernel/include/logger.hrl").

-define(POOL_KEY, {hornbeam_python, pool}).
-define(INFO_KEY, {hornbeam_python, info}).
%% Handler threads per worker: see "Choosing `threads'" in README.md.
-define(DEFAULT_THREADS, 16).
-define(MAX_THREADS, 1024).
-define(DEFAULT_MAX_QUEUED_CALLS, 1024).

-type opts() :: #{app => binary() | string() | undefined,
                  channel_modules => [binary() | string() | atom()],
                  pythonpath => [binary() | string()],
                  workers => pos_integer(),
                  threads => pos_integer(),
                  max_queued_calls => non_neg_integer(),
                  timeout => timeout(),
                  init_timeout => timeout(),
                  worker_path => file:filename_all(),
                  emit_handler => module(),
                  env => [{string(), string() | false}],
                  python => string() | binary() | undefined,
                  worker_class => asgi | wsgi,
                  lifespan => auto | on | off,
                  root_path => binary() | string(),
                  shutdown_timeout => timeout()}.
-export_type([opts/0]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    start_link(#{}).

-spec start_link(opts()) -> {ok, pid()} | {error, term()}.
start_link(Opts0) ->
    show_hornbeam_logs(),
    Opts = normalize_opts(Opts0),
    Path = maps:get(worker_path, Opts),
    case {bad_option(Opts), filelib:is_regular(Path)} of
        {{Name, Value}, _} ->
            {error, {bad_option, Name, Value}};
        {ok, false} ->
            ?LOG_ERROR("python worker binary ~ts not found; run `make build`", [Path],
                       #{domain => [hornbeam, python]}),
            {error, {worker_binary_missing, Path, "run `make build`"}};
        {ok, true} ->
            case hornbeam_python_env:resolve(maps:get(python, Opts), Path) of
                {ok, Python} -> start_pool(Opts#{env := python_env(Python, maps:get(env, Opts))});
                {error, _} = Error -> Error
            end
    end.

start_pool(Opts) ->
    %% After a kill of the supervisor above, the old pool may still
    %% be stopping its workers (each within shutdown_timeout).
    ok = hornbeam_names:await_free(
           [?MODULE | [hornbeam_py_worker:name(Ix) || Ix <- lists:seq(1, maps:get(workers, Opts))]],
           await_timeout(Opts)),
    case supervisor:start_link({local, ?MODULE}, ?MODULE, Opts) of
        {ok, Sup} -> await_workers(Sup, Opts);
        {error, Reason} -> {error, {worker_start_failed, Reason}}
    end.

%% The checked interpreter goes to the workers as HORNBEAM_PYTHON; without
%% one, an inherited HORNBEAM_PYTHON is removed (it was not checked).
python_env(undefined, Env) -> [{"HORNBEAM_PYTHON", false} | Env];
python_env(Exe, Env) -> [{"HORNBEAM_PYTHON", Exe} | Env].

%% @doc Stop a pool started with start_link/1 (tests, shutdown).
-spec stop() -> ok.
stop() ->
    case whereis(?MODULE) of
        undefined -> ok;
        Sup -> stop_sup(Sup)
    end.

stop_sup(Sup) ->
    Ref = monitor(process, Sup),
    unlink(Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    _ = persistent_term:erase(?POOL_KEY),
    ok.

await_workers(Sup, #{workers := N, init_timeout := InitTimeout}) ->
    Names = [hornbeam_py_worker:name(Ix) || Ix <- lists:seq(1, N)],
    Wait = case InitTimeout of infinity -> infinity; T -> T + 5000 end,
    Results = [catch hornbeam_py_worker:await_ready(Name, Wait) || Name <- Names],
    case [R || R <- Results, not is_ok(R)] of
        [] ->
            {ok, Info} = hd(Results),
            case persistent_term:get(?INFO_KEY, undefined) of
                Info -> ok;
                _ -> persistent_term:put(?INFO_KEY, Info)
            end,
            {ok, Sup};
        [Error | _] ->
            stop_sup(Sup),
            Reason = case Error of
                         {error, R} -> R;
                         Other -> {worker_start_failed, Other}
                     end,
            log_start_error(Reason),
            {error, Reason}
    end.

%% Every worker fails the same way: the pool logs the first error once.
log_start_error({python_import, Module, Message, Trace}) ->
    ?LOG_ERROR("cannot import Python module ~ts: ~ts~n~ts", [Module, Message, Trace],
               #{domain => [hornbeam, python]});
log_start_error({bad_app, Spec, Message}) ->
    ?LOG_ERROR("cannot serve ~ts: ~ts", [Spec, Message], #{domain => [hornbeam, python]});
log_start_error({lifespan_startup_failed, Message}) ->
    ?LOG_ERROR("the app's lifespan startup failed: ~ts", [Message], #{domain => [hornbeam, python]});
log_start_error(Reason) ->
    ?LOG_ERROR("the python worker pool did not start: ~0p", [Reason],
               #{domain => [hornbeam, python]}).

%% OTP's default handler only lets through events without a domain or in
%% [otp|_]: let the pool's log lines and Python tracebacks (domain
%% [hornbeam, python]) through too. Idempotent; no default handler, no-op.
show_hornbeam_logs() ->
    _ = logger:add_handler_filter(default, hornbeam,
                                  {fun logger_filters:domain/2, {log, sub, [hornbeam]}}),
    ok.

await_timeout(#{shutdown_timeout := T}) when is_integer(T) -> T + 5000;
await_timeout(_) -> 10000.

is_ok({ok, _}) -> true;
is_ok(_) -> false.

bad_option(#{workers := W}) when not is_integer(W); W < 1 -> {workers, W};
bad_option(#{threads := T}) when not is_integer(T); T < 1; T > ?MAX_THREADS -> {threads, T};
bad_option(#{max_queued_calls := Q}) when not is_integer(Q); Q < 0 -> {max_queued_calls, Q};
bad_option(#{worker_class := WC}) when WC =/= asgi, WC =/= wsgi -> {worker_class, WC};
bad_option(#{lifespan := L}) when L =/= auto, L =/= on, L =/= off -> {lifespan, L};
bad_option(#{root_path := R}) when R =/= <<>>, binary_part(R, 0, 1) =/= <<"/">> -> {root_path, R};
bad_option(_) -> ok.

%% @doc Options with every default filled in and paths as binaries.
-spec normalize_opts(opts()) -> map().
normalize_opts(Opts) ->
    Priv = priv_dir(),
    Paths = [bin(P) || P <- maps:get(pythonpath, Opts, [])],
    App = case maps:get(app, Opts, undefined) of
              undefined -> undefined;
              A -> bin(A)
          end,
    #{app => App,
      channel_modules => [bin(M) || M <- maps:get(channel_modules, Opts, [])],
      pythonpath => [bin(filename:join(Priv, "python")) | Paths],
      workers => maps:get(workers, Opts, erlang:system_info(schedulers_online)),
      threads => maps:get(threads, Opts, ?DEFAULT_THREADS),
      max_queued_calls => maps:get(max_queued_calls, Opts, ?DEFAULT_MAX_QUEUED_CALLS),
      timeout => maps:get(timeout, Opts, 30000),
      init_timeout => maps:get(init_timeout, Opts, 60000),
      worker_path => maps:get(worker_path, Opts, filename:join(Priv, "hornbeam_worker")),
      emit_handler => maps:get(emit_handler, Opts, hornbeam_python_emit),
      env => maps:get(env, Opts, []),
      python => maps:get(python, Opts, undefined),
      worker_class => maps:get(worker_class, Opts, asgi),
      lifespan => maps:get(lifespan, Opts, auto),
      root_path => bin(maps:get(root_path, Opts, <<>>)),
      shutdown_timeout => maps:get(shutdown_timeout, Opts, 5000)}.

bin(B) when is_binary(B) -> B;
bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
bin(L) when is_list(L) -> unicode:characters_to_binary(L).

%% @doc The `priv' directory of the hornbeam application (also when the app
%% is not installed as such, e.g. from a bare code path).
-spec priv_dir() -> file:filename().
priv_dir() ->
    case code:priv_dir(hornbeam) of
        {error, bad_name} ->
            Ebin = filename:dirname(code:which(?MODULE)),
            filename:join(filename:dirname(Ebin), "priv");
        Dir ->
            Dir
    end.

-spec init(map()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(#{workers := N, timeout := Timeout, app := App, shutdown_timeout := Stop,
       emit_handler := EmitHandler} = Opts) ->
    Names = [hornbeam_py_worker:name(Ix) || Ix <- lists:seq(1, N)],
    %% N in-flight counters + the round-robin cursor
    Load = atomics:new(N + 1, [{signed, true}]),
    [atomics:put(Load, Ix, hornbeam_python:unavailable()) || Ix <- lists:seq(1, N)],
    persistent_term:put(?POOL_KEY, #{size => N, names => list_to_tuple(Names),
                                      load => Load, timeout => Timeout,
                                      http => App =/= undefined,
                                      emit_handler => EmitHandler}),
    Children = [#{id => {hornbeam_py_worker, Ix},
                  start => {hornbeam_py_worker, start_link, [Ix, Load, Opts]},
                  restart => permanent,
                  shutdown => case Stop of infinity -> infinity; _ -> Stop + 2000 end,
                  type => worker,
                  modules => [hornbeam_py_worker]}
                || Ix <- lists:seq(1, N)],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Children}}.
