%% @doc `hornbeam run MODULE:APP [options]': the command line, run inside the
%% node that `bin/hornbeam' boots. Parses the options, starts serving, and
%% waits; SIGTERM (sent by bin/hornbeam on SIGINT too) stops the node
%% gracefully through init:stop/0.
-module(hornbeam_cli).

-export([main/1, parse/1, usage/0, run_usage/0, explain/2]).

-type parsed() :: {run, string(), map(), map()} | help | run_help | {error, string()}.

-spec usage() -> string().
usage() ->
    "usage: hornbeam run MODULE:APP [options]\n"
    "       hornbeam --help | hornbeam run --help\n\n"
    "Serves a Python ASGI/WSGI app and its channel modules over HTTP and WebSocket.\n".

-spec run_usage() -> string().
run_usage() ->
    "usage: hornbeam run MODULE:APP [options]\n\n"
    "options:\n"
    "  --bind HOST:PORT        address to serve (default 127.0.0.1:8000; [::]:8000 for IPv6)\n"
    "  --workers N             Python worker processes (default: number of schedulers)\n"
    "  --threads N             threads per worker for def handlers and WSGI apps (default 16)\n"
    "  --max-queued-calls N    calls a worker lets wait for a thread before answering\n"
    "                          overloaded (default 1024)\n"
    "  --worker-class CLASS    asgi or wsgi (default asgi)\n"
    "  --channel-module M      Python module with channel handlers (repeatable)\n"
    "  --pythonpath DIR        added to sys.path (repeatable; default the current directory)\n"
    "  --python PATH           interpreter or virtualenv to import from (default: the activated\n"
    "                          virtualenv); must be the Python version the worker was built for\n"
    "  --ws-path PATH          WebSocket endpoint (default /ws)\n"
    "  --max-connections N     live connections before acceptors pause (default 16384)\n"
    "  --public-host HOST      host (or host:port) browsers reach this server by, for the\n"
    "                          WebSocket Origin check (repeatable; default: the --bind host)\n"
    "  --compress on|off       permessage-deflate for clients that offer it (default off)\n"
    "  --name NODE             Erlang node name, e.g. a@127.0.0.1 (enables clustering)\n"
    "  --cookie-file PATH      file holding the distribution cookie (mode 600); default:\n"
    "                          $HORNBEAM_COOKIE, else ~/.erlang.cookie (random, made once)\n"
    "  --dist-interface IP     address distribution listens on (default: the --name host\n"
    "                          if it is an IP address, else loopback)\n"
    "  --join NODE[,NODE]      cluster with these nodes, reconnecting for ever (repeatable)\n"
    "  --join-dns NAME         cluster with the nodes BASE@IP for each address of DNS NAME\n"
    "                          (BASE: this node's name; BASE@NAME to choose; repeatable)\n"
    "  --join-retry-interval MS  reconnection period of --join/--join-dns (default 2000)\n"
    "  --api-key-file PATH     file holding the key of the HTTP publishing API (mode 600;\n"
    "                          default: $HORNBEAM_API_KEY; neither: no API)\n"
    "  --drain-batch-size N    on SIGTERM, WebSockets closed at once (default 10000)\n"
    "  --drain-interval MS     ms between two such batches (default 2000)\n"
    "  --drain-timeout MS      ms the whole drain may take (default 30000)\n"
    "  --log-level LEVEL       debug | info | notice | warning | error (default notice)\n"
    "  --log-format FORMAT     text | json (one JSON object per line) (default text)\n"
    "  --metrics-bind HOST:PORT  serve Prometheus /metrics and the dashboard / there\n"
    "                          (default: off; never the --bind port)\n".

%% @doc Entry point; Args are the words after `hornbeam'. Halts the node on
%% errors (exit status 1 for a failure, 2 for a usage error).
-spec main([string()]) -> ok | no_return().
main(Args) ->
    case parse(Args) of
        help -> io:put_chars(usage() ++ "\n" ++ run_usage()), halt(0);
        run_help -> io:put_chars(run_usage()), halt(0);
        {error, Message} -> fail(2, Message ++ "\n\n" ++ usage());
        {run, AppSpec, Opts, Node} -> run(AppSpec, Opts, Node)
    end.

%% @doc Pure argument parsing (tested on its own).
-spec parse([string()]) -> parsed().
parse([]) -> help;
parse(["--help" | _]) -> help;
parse(["-h" | _]) -> help;
parse(["run" | Rest]) ->
    case lists:member("--help", Rest) orelse lists:member("-h", Rest) of
        true -> run_help;
        false -> parse_run(Rest)
    end;
parse([Other | _]) -> {error, "unknown command: " ++ Other}.

parse_run([]) -> {error, "missing MODULE:APP"};
parse_run([[$- | _] = Flag | _]) -> {error, "missing MODULE:APP before " ++ Flag};
parse_run([AppSpec | Rest]) ->
    case re:run(AppSpec, "^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$") of
        nomatch -> {error, "malformed MODULE:APP '" ++ AppSpec ++ "' (expected e.g. chat:app)"};
        {match, _} -> options(Rest, AppSpec, #{}, #{})
    end.

options([], AppSpec, Opts, Node) ->
    Defaults = #{pythonpath => ["."]},
    Opts1 = maps:merge(Defaults, Opts),
    Opts2 = maps:map(fun(K, V) when K =:= join; K =:= join_dns; K =:= public_hosts -> lists:reverse(V);
                        (_, V) -> V
                     end, Opts1),
    {run, AppSpec, Opts2#{pythonpath := lists:reverse(maps:get(pythonpath, Opts1)),
                          channel_modules => lists:reverse(maps:get(channel_modules, Opts1, []))},
     Node};
options([Flag], _AppSpec, _Opts, _Node) when hd(Flag) =:= $- ->
    {error, "option " ++ Flag ++ " needs a value"};
options([Flag, Value | Rest], AppSpec, Opts, Node) ->
    case option(Flag, Value, Opts, Node) of
        {ok, Opts1, Node1} -> options(Rest, AppSpec, Opts1, Node1);
        {error, _} = Error -> Error
    end;
options([Stray | _], _, _, _) ->
    {error, "unexpected argument: " ++ Stray}.

option("--bind", V, O, N) -> {ok, O#{bind => V}, N};
option("--workers", V, O, N) ->
    case string:to_integer(V) of
        {W, ""} when W > 0 -> {ok, O#{workers => W}, N};
        _ -> {error, "--workers needs a positive integer, got " ++ V}
    end;
option("--threads", V, O, N) ->
    case string:to_integer(V) of
        {T, ""} when T > 0 -> {ok, O#{threads => T}, N};
        _ -> {error, "--threads needs a positive integer, got " ++ V}
    end;
option("--max-queued-calls", V, O, N) ->
    case string:to_integer(V) of
        {Q, ""} when Q >= 0 -> {ok, O#{max_queued_calls => Q}, N};
        _ -> {error, "--max-queued-calls needs a non-negative integer, got " ++ V}
    end;
option("--worker-class", V, O, N) when V =:= "asgi"; V =:= "wsgi" ->
    {ok, O#{worker_class => list_to_atom(V)}, N};
option("--worker-class", V, _, _) -> {error, "--worker-class must be asgi or wsgi, got " ++ V};
option("--channel-module", V, O, N) ->
    {ok, O#{channel_modules => [V | maps:get(channel_modules, O, [])]}, N};
option("--pythonpath", V, O, N) ->
    {ok, O#{pythonpath => [V | maps:get(pythonpath, O, [])]}, N};
option("--python", V, O, N) -> {ok, O#{python => V}, N};
option("--max-connections", V, O, N) ->
    case string:to_integer(V) of
        {M, ""} when M > 0 -> {ok, O#{max_connections => M}, N};
        _ -> {error, "--max-connections needs a positive integer, got " ++ V}
    end;
option("--ws-path", V = [$/ | _], O, N) -> {ok, O#{ws_path => V}, N};
option("--ws-path", V, _, _) -> {error, "--ws-path must start with /, got " ++ V};
option("--public-host", V, O, N) -> {ok, O#{public_hosts => [V | maps:get(public_hosts, O, [])]}, N};
option("--compress", "on", O, N) -> {ok, O#{compress => true}, N};
option("--compress", "off", O, N) -> {ok, O#{compress => false}, N};
option("--compress", V, _, _) -> {error, "--compress must be on or off, got " ++ V};
option("--name", V, O, N) -> {ok, O, N#{name => V}};
option("--cookie", _, _, _) ->
    {error, "--cookie would show the cookie in `ps`: set HORNBEAM_COOKIE, or use --cookie-file PATH"};
option("--cookie-file", V, O, N) -> {ok, O, N#{cookie_file => V}};
option("--api-key", _, _, _) ->
    {error, "--api-key would show the key in `ps`: set HORNBEAM_API_KEY, or use --api-key-file PATH"};
option("--api-key-file", V, O, N) -> {ok, O, N#{api_key_file => V}};
option("--dist-interface", V, O, N) ->
    case inet:parse_address(V) of
        {ok, _} -> {ok, O, N#{dist_interface => V}};
        {error, _} -> {error, "--dist-interface needs an IP address, got " ++ V}
    end;
option("--join", V, O, N) ->
    Nodes = string:lexemes(V, ","),
    case Nodes =/= [] andalso lists:all(fun is_node_name/1, Nodes) of
        true -> {ok, O#{join => lists:reverse(Nodes) ++ maps:get(join, O, [])}, N};
        false -> {error, "--join needs NAME@HOST nodes (comma-separated), got " ++ V}
    end;
option("--join-dns", V, O, N) -> {ok, O#{join_dns => [V | maps:get(join_dns, O, [])]}, N};
option("--join-retry-interval", V, O, N) ->
    case string:to_integer(V) of
        {Ms, ""} when Ms > 0 -> {ok, O#{join_retry_interval => Ms}, N};
        _ -> {error, "--join-retry-interval needs a positive integer (ms), got " ++ V}
    end;
option("--drain-batch-size", V, O, N) -> integer_option(V, 1, drain_batch_size, "--drain-batch-size", O, N);
option("--drain-interval", V, O, N) -> integer_option(V, 0, drain_interval, "--drain-interval", O, N);
option("--drain-timeout", V, O, N) -> integer_option(V, 1, drain_timeout, "--drain-timeout", O, N);
option("--metrics-bind", V, O, N) -> {ok, O#{metrics_bind => V}, N};
option("--log-format", V, O, N) when V =:= "text"; V =:= "json" ->
    {ok, O#{log_format => list_to_atom(V)}, N};
option("--log-format", V, _, _) -> {error, "--log-format must be text or json, got " ++ V};
option("--log-level", V, O, N) ->
    case lists:member(V, ["debug", "info", "notice", "warning", "error"]) of
        true -> {ok, O, N#{log_level => list_to_atom(V)}};
        false -> {error, "--log-level must be debug|info|notice|warning|error, got " ++ V}
    end;
option(Flag, _, _, _) -> {error, "unknown option: " ++ Flag}.

integer_option(V, Min, Key, Flag, O, N) ->
    case string:to_integer(V) of
        {I, ""} when I >= Min -> {ok, O#{Key => I}, N};
        _ when Min =:= 0 -> {error, Flag ++ " needs a non-negative integer, got " ++ V};
        _ -> {error, Flag ++ " needs a positive integer, got " ++ V}
    end.

is_node_name(S) ->
    case string:split(S, "@") of
        [[_ | _], [_ | _]] -> true;
        _ -> false
    end.

run(AppSpec, Opts, Node) ->
    ok = logger:set_primary_config(level, maps:get(log_level, Node, notice)),
    one_line_logs(),
    ok = distribution(Node, Opts),
    Bind = maps:get(bind, Opts, "127.0.0.1:8000"),
    case hornbeam_startup:start(AppSpec, api_key(Node, maps:merge(#{log_format => text}, Opts))) of
        ok ->
            io:format("hornbeam: serving ~s on ~s (WebSocket at ~s); Ctrl-C to stop~n",
                      [AppSpec, url(Bind), maps:get(ws_path, Opts, "/ws")]),
            ok;
        {error, Reason} ->
            fail(1, explain(Reason, Bind))
    end.

%% The HTTP API key: --api-key-file or $HORNBEAM_API_KEY, never argv.
api_key(Node, Opts) ->
    case hornbeam_api:read_key(maps:get(api_key_file, Node, undefined)) of
        {ok, undefined} -> Opts;
        {ok, Key} -> Opts#{api_key => Key};
        {error, Message} -> fail(1, Message)
    end.

%% A terminal reads one line per event ("2026-12-04T19:16:01.5+00:00 notice:
%% ..."), not OTP's "=NOTICE REPORT====" header above each message.
one_line_logs() ->
    ok = hornbeam_log_format:install(text),
    ok.

%% The URL actually served (the port may have been 0).
url(Bind) ->
    Host = case hornbeam_http_bind:parse(Bind) of
               {ok, {IP, _}} when tuple_size(IP) =:= 8 -> "[" ++ inet:ntoa(IP) ++ "]";
               {ok, {IP, _}} -> inet:ntoa(IP);
               _ -> "127.0.0.1"
           end,
    io_lib:format("http://~s:~b", [Host, hornbeam:port()]).

%% Distribution (hornbeam_distribution: cookie from a file or the
%% environment, never argv; loopback unless told); joining is
%% hornbeam:start/2's join options (hornbeam_cluster).
distribution(#{name := _} = Node, _Opts) ->
    ensure_epmd(),
    case hornbeam_distribution:start(Node) of
        ok -> ok;
        {error, Message} -> fail(1, Message)
    end;
distribution(Node, Opts) ->
    case [F || {K, F} <- [{join, "--join"}, {join_dns, "--join-dns"}], maps:is_key(K, Opts)]
         ++ [F || {K, F} <- [{cookie_file, "--cookie-file"}, {dist_interface, "--dist-interface"}],
                  maps:is_key(K, Node)] of
        [] -> ok;
        [Flag | _] -> fail(2, Flag ++ " needs --name (a distributed node)")
    end.

%% `erl -name' starts epmd when none runs; net_kernel:start/1 does not, so
%% on a machine that never ran a distributed node --name would fail.
ensure_epmd() ->
    Epmd = case os:find_executable("epmd") of
               false -> os:find_executable("epmd", filename:join(code:root_dir(), "bin"));
               Path -> Path
           end,
    case erl_epmd:names() of
        {ok, _} -> ok;
        _ when is_list(Epmd) -> _ = os:cmd(Epmd ++ " -daemon"), await_epmd(50);
        _ -> ok
    end.

%% `epmd -daemon' returns before the daemon listens.
await_epmd(0) -> ok;
await_epmd(Tries) ->
    case erl_epmd:names() of
        {ok, _} -> ok;
        _ -> timer:sleep(100), await_epmd(Tries - 1)
    end.

%% @doc One line saying why hornbeam:start/2 failed (shared by the CLI,
%% `mix hornbeam.run' and the release's autostart).
-spec explain(term(), string() | binary()) -> iolist().
explain({python_import, Module, Message, Traceback}, _) ->
    case string:trim(Traceback, trailing) of
        <<>> -> io_lib:format("cannot import Python module ~ts: ~ts", [Module, Message]);
        Trace -> io_lib:format("cannot import Python module ~ts: ~ts~n~ts", [Module, Message, Trace])
    end;
explain({bad_app, Spec, Message}, _) ->
    io_lib:format("cannot serve ~ts: ~ts", [Spec, Message]);
explain({python_not_found, Python}, _) ->
    io_lib:format("--python ~ts: no such interpreter or virtualenv (expected a python "
                  "executable, a command on PATH, or a directory with bin/python3)", [Python]);
explain({python_not_runnable, Exe, Output}, _) ->
    io_lib:format("--python ~ts does not run as a Python interpreter: ~ts",
                  [Exe, string:trim(Output)]);
explain({python_version, Exe, Found, Built}, _) ->
    io_lib:format("~ts is Python ~ts, but the worker was built for Python ~ts; use a ~ts "
                  "interpreter or virtualenv, or rebuild for ~ts with "
                  "`PYO3_PYTHON=~ts make build`", [Exe, Found, Built, Built, Found, Exe]);
explain({python_base, Exe, Base, BuiltBase, BuiltExe}, _) ->
    io_lib:format("~ts is Python from ~ts, but the worker embeds the libpython of ~ts; make the "
                  "virtualenv with `~ts -m venv`, or rebuild for this one with "
                  "`PYO3_PYTHON=~ts make build`", [Exe, Base, BuiltBase, BuiltExe, Exe]);
explain({worker_version_unknown, Output}, _) ->
    io_lib:format("the Python worker binary does not say which Python it embeds (~ts): "
                  "run `make build`", [string:trim(Output)]);
explain({bad_option, metrics_bind, B}, _) ->
    io_lib:format("malformed --metrics-bind ~p (expected HOST:PORT)", [B]);
explain({bad_option, Name, Value}, _) ->
    io_lib:format("bad option ~ts: ~0tp", [Name, Value]);
explain({worker_binary_missing, Path, _}, _) ->
    io_lib:format("the Python worker binary is missing (~ts): run `make build`", [Path]);
explain({metrics_bind, B, same_port_as_bind}, Bind) ->
    io_lib:format("--metrics-bind ~ts is the app's own port (--bind ~ts): give the metrics "
                  "another port", [B, Bind]);
explain({metrics_bind, B, Why}, _) ->
    io_lib:format("cannot serve metrics on ~ts: ~ts", [B, inet:format_error(Why)]);
explain({bad_bind, B, _}, _) ->
    io_lib:format("malformed --bind ~p (expected HOST:PORT)", [B]);
explain({cluster, not_distributed}, _) ->
    "--join needs --name (a distributed node)";
explain({cluster, {bad_option, Key, Value}}, _) ->
    io_lib:format("bad cluster option ~ts: ~0p", [Key, Value]);
explain({lifespan_startup_failed, Message}, _) ->
    io_lib:format("the app's lifespan startup failed: ~ts", [Message]);
explain(Reason, Bind) ->
    case find_in(eaddrinuse, Reason) of
        true -> io_lib:format("~ts is already in use (another server is listening there)", [Bind]);
        false -> io_lib:format("cannot start: ~0p", [Reason])
    end.

find_in(X, X) -> true;
find_in(X, T) when is_tuple(T) -> find_in(X, tuple_to_list(T));
find_in(X, [H | T]) -> find_in(X, H) orelse find_in(X, T);
find_in(_, _) -> false.

-spec fail(non_neg_integer(), iodata()) -> no_return().
fail(Status, Message) ->
    io:format(standard_error, "hornbeam: error: ~ts~n", [Message]),
    halt(Status).
