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
    "  --ws-path PATH          WebSocket endpoint (default /ws)\n"
    "  --max-connections N     live connections before acceptors pause (default 16384)\n"
    "  --name NODE             Erlang node name, e.g. a@127.0.0.1 (enables clustering)\n"
    "  --cookie C              Erlang distribution cookie\n"
    "  --join NODE             connect to this node and form a cluster (repeatable)\n"
    "  --log-level LEVEL       debug | info | notice | warning | error (default notice)\n".

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
    {run, AppSpec, Opts1#{pythonpath := lists:reverse(maps:get(pythonpath, Opts1)),
                          channel_modules => lists:reverse(maps:get(channel_modules, Opts1, []))},
     Node#{join => lists:reverse(maps:get(join, Node, []))}};
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
option("--max-connections", V, O, N) ->
    case string:to_integer(V) of
        {M, ""} when M > 0 -> {ok, O#{max_connections => M}, N};
        _ -> {error, "--max-connections needs a positive integer, got " ++ V}
    end;
option("--ws-path", V = [$/ | _], O, N) -> {ok, O#{ws_path => V}, N};
option("--ws-path", V, _, _) -> {error, "--ws-path must start with /, got " ++ V};
option("--name", V, O, N) -> {ok, O, N#{name => V}};
option("--cookie", V, O, N) -> {ok, O, N#{cookie => V}};
option("--join", V, O, N) -> {ok, O, N#{join => [V | maps:get(join, N, [])]}};
option("--log-level", V, O, N) ->
    case lists:member(V, ["debug", "info", "notice", "warning", "error"]) of
        true -> {ok, O, N#{log_level => list_to_atom(V)}};
        false -> {error, "--log-level must be debug|info|notice|warning|error, got " ++ V}
    end;
option(Flag, _, _, _) -> {error, "unknown option: " ++ Flag}.

run(AppSpec, Opts, Node) ->
    ok = logger:set_primary_config(level, maps:get(log_level, Node, notice)),
    ok = distribution(Node),
    Bind = maps:get(bind, Opts, "127.0.0.1:8000"),
    case hornbeam:start(AppSpec, Opts) of
        ok ->
            io:format("hornbeam: serving ~s on ~s (WebSocket at ~s); Ctrl-C to stop~n",
                      [AppSpec, url(Bind), maps:get(ws_path, Opts, "/ws")]),
            ok;
        {error, Reason} ->
            fail(1, explain(Reason, Bind))
    end.

%% The URL actually served (the port may have been 0).
url(Bind) ->
    Host = case hornbeam_http_bind:parse(Bind) of
               {ok, {IP, _}} when tuple_size(IP) =:= 8 -> "[" ++ inet:ntoa(IP) ++ "]";
               {ok, {IP, _}} -> inet:ntoa(IP);
               _ -> "127.0.0.1"
           end,
    io_lib:format("http://~s:~b", [Host, hornbeam:port()]).

distribution(#{name := Name} = Node) ->
    Mode = case lists:member($., Name) of true -> longnames; false -> shortnames end,
    case net_kernel:start([list_to_atom(Name), Mode]) of
        {ok, _} -> ok;
        {error, Reason} -> fail(1, io_lib:format("cannot start distribution as ~s: ~0p "
                                                 "(is epmd running?)", [Name, Reason]))
    end,
    _ = maps:is_key(cookie, Node) andalso erlang:set_cookie(list_to_atom(maps:get(cookie, Node))),
    lists:foreach(fun(Peer) ->
                          case net_kernel:connect_node(list_to_atom(Peer)) of
                              true -> logger:notice("joined cluster node ~s", [Peer]);
                              _ -> logger:warning("could not reach cluster node ~s", [Peer])
                          end
                  end, maps:get(join, Node, [])),
    ok;
distribution(#{join := [_ | _]}) ->
    fail(2, "--join needs --name (a distributed node)");
distribution(_) ->
    ok.

%% @doc One line saying why hornbeam:start/2 failed (shared by the CLI,
%% `mix hornbeam.run' and the release's autostart).
-spec explain(term(), string() | binary()) -> iolist().
explain({python_import, Module, Message}, _) ->
    io_lib:format("cannot import Python module ~ts: ~ts", [Module, Message]);
explain({worker_binary_missing, Path, _}, _) ->
    io_lib:format("the Python worker binary is missing (~ts): run `make build`", [Path]);
explain({bad_bind, B, _}, _) ->
    io_lib:format("malformed --bind ~p (expected HOST:PORT)", [B]);
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
