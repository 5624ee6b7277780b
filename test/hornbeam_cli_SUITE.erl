%% bin/hornbeam as a user runs it: a real OS process serving the chat
%% example, its errors, and a graceful stop on SIGINT.
-module(hornbeam_cli_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [help_exits_zero, malformed_app_is_a_usage_error, import_error_is_one_line,
     import_error_prints_the_traceback_once_without_reports,
     port_in_use_is_one_line, port_in_use_prints_no_supervisor_report,
     missing_build_says_how_to_build,
     serves_the_chat_example_and_stops_on_sigint,
     module_with_channels_and_no_app_is_served_channels_only,
     app_that_is_not_callable_is_one_error_line,
     module_with_neither_app_nor_channels_is_one_error_line,
     python_option_imports_from_a_venv,
     activated_venv_is_what_handlers_import_from,
     venv_of_another_python_version_is_one_error_line,
     venv_of_another_installation_of_the_same_version_is_one_error_line,
     missing_python_is_one_error_line,
     distributed_node_keeps_the_cookie_out_of_ps_and_listens_on_loopback,
     cookie_file_readable_by_others_is_refused, join_without_name_is_a_usage_error].

init_per_testcase(_Case, Config) ->
    Dir = filename:join(?config(priv_dir, Config), "app_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    [{app_dir, Dir} | Config].

end_per_testcase(_Case, _Config) ->
    ok.

root() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Src)).

hornbeam() -> filename:join([root(), "bin", "hornbeam"]).

%% Run bin/hornbeam to completion; {ExitStatus, Output}.
run(Args) -> run(hornbeam(), Args).
run(Exe, Args) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary, {cd, root()}]),
    collect(Port, <<>>).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, Acc}
    after 60000 -> error(timeout)
    end.

help_exits_zero(_Config) ->
    {0, Out} = run(["--help"]),
    ?assertMatch({match, _}, re:run(Out, "--channel-module")),
    {0, Out2} = run(["run", "--help"]),
    ?assertMatch({match, _}, re:run(Out2, "--bind HOST:PORT")).

malformed_app_is_a_usage_error(_Config) ->
    {2, Out} = run(["run", "not-an-app"]),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: malformed MODULE:APP", [multiline])).

import_error_is_one_line(_Config) ->
    {1, Out} = run(["run", "no_such_mod_xyz:app", "--bind", "127.0.0.1:0", "--workers", "1"]),
    ?assertMatch({match, _}, re:run(Out, "hornbeam: error: cannot import Python module no_such_mod_xyz: "
                                         "ModuleNotFoundError")).

%% Two workers fail the same import: one block, one traceback, no OTP report.
import_error_prints_the_traceback_once_without_reports(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "broken_app.py", "import no_such_dependency_xyz\n"),
    {1, Out} = run_in(Dir, ["run", "broken_app:app", "--bind", "127.0.0.1:0", "--workers", "2"], []),
    ct:log("~ts", [Out]),
    Lines = lines(Out),
    ?assertEqual("hornbeam: error: cannot import Python module broken_app: "
                 "ModuleNotFoundError: No module named 'no_such_dependency_xyz'", hd(Lines)),
    ?assertEqual(1, count("Traceback", Out)),
    ?assertMatch({match, _}, re:run(Out, "broken_app.py\", line 1")),
    ?assertEqual(nomatch, re:run(Out, "importlib|hornbeam_runtime|REPORT|supervisor|crasher")),
    ?assert(length(Lines) =< 6).

port_in_use_prints_no_supervisor_report(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "web.py", "async def app(scope, receive, send):\n    pass\n"),
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    Bind = "127.0.0.1:" ++ integer_to_list(P),
    {1, Out} = run_in(Dir, ["run", "web:app", "--bind", Bind, "--workers", "2"], []),
    gen_tcp:close(L),
    ct:log("~ts", [Out]),
    ?assertEqual(["hornbeam: error: " ++ Bind ++ " is already in use (another server is listening there)"],
                 lines(Out)).

port_in_use_is_one_line(_Config) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    Bind = "127.0.0.1:" ++ integer_to_list(P),
    {1, Out} = run(["run", "app:app", "--bind", Bind, "--workers", "1",
                    "--pythonpath", "examples/channels_chat", "--channel-module", "app"]),
    gen_tcp:close(L),
    ?assertMatch({match, _}, re:run(Out, "hornbeam: error: " ++ Bind ++ " is already in use")).

missing_build_says_how_to_build(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "fresh"),
    ok = filelib:ensure_dir(filename:join([Dir, "bin", "x"])),
    Copy = filename:join([Dir, "bin", "hornbeam"]),
    {ok, _} = file:copy(hornbeam(), Copy),
    ok = file:change_mode(Copy, 8#755),
    {1, Out} = run(Copy, ["run", "app:app"]),
    ?assertMatch({match, _}, re:run(Out, "the build is missing; run `make build`")).

serves_the_chat_example_and_stops_on_sigint(_Config) ->
    Port = open_port({spawn_executable, hornbeam()},
                     [{args, ["run", "app:app", "--bind", "127.0.0.1:0", "--workers", "1",
                              "--pythonpath", "examples/channels_chat", "--channel-module", "app"]},
                      exit_status, stderr_to_stdout, binary, {line, 4096}, {cd, root()}]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    HttpPort = wait_for_url(Port),
    {ok, C} = hornbeam_ws_client:connect(HttpPort, "/ws?vsn=2.0.0"),
    ok = hornbeam_ws_client:push(C, <<"1">>, <<"1">>, <<"room:lobby">>, <<"phx_join">>,
                                 #{<<"username">> => <<"ana">>}),
    ?assertMatch([<<"1">>, <<"1">>, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                 hornbeam_ws_client:recv_json(C)),
    _ = os:cmd("kill -INT " ++ integer_to_list(OsPid)),
    ?assertEqual(1001, hornbeam_ws_client:expect_closed(C, 10000)),
    ?assertEqual(0, wait_exit(Port)).

wait_for_url(Port) ->
    receive
        {Port, {data, {eol, Line}}} ->
            case re:run(Line, "serving .* on http://127.0.0.1:([0-9]+)", [{capture, all_but_first, list}]) of
                {match, [P]} -> list_to_integer(P);
                nomatch -> wait_for_url(Port)
            end;
        {Port, {data, _}} -> wait_for_url(Port);
        {Port, {exit_status, S}} -> ct:fail({exited, S})
    after 60000 -> ct:fail(no_url)
    end.

wait_exit(Port) ->
    receive
        {Port, {exit_status, S}} -> S;
        {Port, _} -> wait_exit(Port)
    after 30000 -> ct:fail(did_not_exit)
    end.

%% --- the documented module shape, bad apps ---------------------------------------

chat_module() ->
    "from hornbeam_channels import channel\n"
    "import sys\n"
    "room = channel(\"room:*\")\n\n"
    "@room.on_join\n"
    "def join(topic, topic_params, params, socket):\n"
    "    try:\n"
    "        import venv_only\n"
    "        where = venv_only.WHERE\n"
    "    except ImportError:\n"
    "        where = None\n"
    "    return ('ok', {'venv_only': where, 'prefix': sys.prefix}, socket)\n".

module_with_channels_and_no_app_is_served_channels_only(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "chat.py", chat_module()),
    {Port, HttpPort, Seen} = serve(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--workers", "2"], []),
    try
        ?assertMatch({match, _}, re:run(Seen, "chat:app: no such attribute; serving channels only")),
        ?assertEqual(1, count("serving channels only", Seen)),
        ?assertMatch({404, _}, http_get(HttpPort, "/")),
        ?assertMatch({404, _}, http_get(HttpPort, "/index.html")),
        {200, Js} = http_get(HttpPort, "/hornbeam.js"),
        ?assertMatch({match, _}, re:run(Js, "Hornbeam")),
        ?assertMatch(#{<<"status">> := <<"ok">>}, join(HttpPort))
    after
        stop(Port)
    end.

app_that_is_not_callable_is_one_error_line(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "conf.py", chat_module() ++ "app = {'debug': True}\n"),
    {1, Out} = run_in(Dir, ["run", "conf:app", "--bind", "127.0.0.1:0", "--workers", "2"], []),
    ?assertEqual(["hornbeam: error: cannot serve conf:app: conf:app is a dict, not a callable ASGI/WSGI app"],
                 lines(Out)).

module_with_neither_app_nor_channels_is_one_error_line(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "plain.py", "X = 1\n"),
    {1, Out} = run_in(Dir, ["run", "plain:app", "--bind", "127.0.0.1:0", "--workers", "2"], []),
    ?assertEqual(["hornbeam: error: cannot serve plain:app: module 'plain' has no attribute 'app' "
                  "and no channels are registered: nothing to serve"], lines(Out)).

%% --- the user's Python environment ----------------------------------------------

%% A real venv made by `python3 -m venv' (the worker's own Python), with a
%% package that exists only in its site-packages.
make_venv(Python, Dir) ->
    Venv = filename:join(Dir, "venv"),
    {0, _} = run_cmd(Python, ["-m", "venv", "--without-pip", Venv]),
    {0, Purelib} = run_cmd(filename:join([Venv, "bin", "python"]),
                           ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]),
    write(filename:join(string:trim(Purelib), "venv_only"), "__init__.py", "WHERE = 'venv'\n"),
    Venv.

worker_python() ->
    {0, Out} = run_cmd(filename:join([root(), "priv", "hornbeam_worker"]), ["--python-version"]),
    [Version, Exe | _] = string:split(Out, "\n", all),
    {Version, Exe}.

python_option_imports_from_a_venv(Config) ->
    Dir = ?config(app_dir, Config),
    {_, Python} = worker_python(),
    Venv = make_venv(Python, Dir),
    write(Dir, "chat.py", chat_module()),
    %% without the option (and no venv activated) the package is not there
    Env = [{"VIRTUAL_ENV", false}],
    {Port0, HttpPort0, _} = serve(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--workers", "1"], Env),
    try ?assertMatch(#{<<"response">> := #{<<"venv_only">> := null}}, join(HttpPort0))
    after stop(Port0)
    end,
    {Port, HttpPort, _} = serve(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--workers", "1",
                                      "--python", Venv], Env),
    try
        Reply = join(HttpPort),
        ?assertMatch(#{<<"response">> := #{<<"venv_only">> := <<"venv">>}}, Reply),
        #{<<"response">> := #{<<"prefix">> := Prefix}} = Reply,
        ?assertEqual(Venv, binary_to_list(Prefix))
    after
        stop(Port)
    end.

%% `source venv/bin/activate' sets VIRTUAL_ENV and puts venv/bin first on PATH.
activated_venv_is_what_handlers_import_from(Config) ->
    Dir = ?config(app_dir, Config),
    {_, Python} = worker_python(),
    Venv = make_venv(Python, Dir),
    write(Dir, "chat.py", chat_module()),
    Env = [{"VIRTUAL_ENV", Venv}, {"PATH", filename:join(Venv, "bin") ++ ":" ++ os:getenv("PATH")}],
    {Port, HttpPort, _} = serve(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--workers", "1"], Env),
    try ?assertMatch(#{<<"response">> := #{<<"venv_only">> := <<"venv">>}}, join(HttpPort))
    after stop(Port)
    end.

%% A real interpreter of another minor version when the machine has one
%% (pyenv, or python3.X on PATH); its venv, given by --python and activated.
venv_of_another_python_version_is_one_error_line(Config) ->
    Dir = ?config(app_dir, Config),
    {Built, _} = worker_python(),
    case other_python(Built) of
        none -> {skip, "no Python of another minor version on this machine"};
        {Other, OtherVersion} ->
            ct:log("other Python: ~ts (~ts)", [Other, OtherVersion]),
            Venv = filename:join(Dir, "other"),
            {0, _} = run_cmd(Other, ["-m", "venv", "--without-pip", Venv]),
            write(Dir, "chat.py", chat_module()),
            Exe = filename:join([Venv, "bin", "python3"]),
            Expected = ["hornbeam: error: " ++ Exe ++ " is Python " ++ OtherVersion ++
                        ", but the worker was built for Python " ++ Built ++ "; use a " ++ Built ++
                        " interpreter or virtualenv, or rebuild for " ++ OtherVersion ++
                        " with `PYO3_PYTHON=" ++ Exe ++ " make build`"],
            {1, Out} = run_in(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--python", Venv], []),
            ?assertEqual(Expected, lines(Out)),
            Activated = [{"VIRTUAL_ENV", Venv},
                         {"PATH", filename:join(Venv, "bin") ++ ":" ++ os:getenv("PATH")}],
            {1, Out2} = run_in(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0"], Activated),
            ?assertEqual(Expected, lines(Out2))
    end.

%% Debian's python3.11 beside a pyenv 3.11 build: same version, another
%% stdlib (the worker would not even import _socket from it).
venv_of_another_installation_of_the_same_version_is_one_error_line(Config) ->
    Dir = ?config(app_dir, Config),
    {Built, BuiltExe} = worker_python(),
    {0, BuiltBase} = run_cmd(BuiltExe, ["-c", "import os, sys; print(os.path.realpath(sys.base_prefix))"]),
    Candidates = [P || P <- ["/usr/bin/python" ++ Built, "/usr/local/bin/python" ++ Built],
                       filelib:is_regular(P),
                       {0, B} <- [run_cmd(P, ["-c", "import os, sys; print(os.path.realpath(sys.base_prefix))"])],
                       string:trim(B) =/= string:trim(BuiltBase)],
    case Candidates of
        [] -> {skip, "no other installation of Python " ++ Built ++ " on this machine"};
        [Other | _] ->
            Venv = filename:join(Dir, "same_version"),
            {0, _} = run_cmd(Other, ["-m", "venv", "--without-pip", Venv]),
            write(Dir, "chat.py", chat_module()),
            {1, Out} = run_in(Dir, ["run", "chat:app", "--bind", "127.0.0.1:0", "--python", Venv], []),
            ct:log("~ts", [Out]),
            ?assertMatch([_], lines(Out)),
            ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: " ++ Venv ++ "/bin/python3 is Python from "
                                                 ".* but the worker embeds the libpython of "))
    end.

missing_python_is_one_error_line(Config) ->
    Dir = ?config(app_dir, Config),
    write(Dir, "chat.py", chat_module()),
    {1, Out} = run_in(Dir, ["run", "chat:app", "--python", "/no/such/python3"], []),
    ?assertMatch(["hornbeam: error: --python /no/such/python3: no such interpreter" ++ _], lines(Out)).

other_python(Built) ->
    Home = os:getenv("HOME", "/root"),
    Pyenv = filelib:wildcard(filename:join([Home, ".pyenv", "versions", "3.*", "bin", "python3"])),
    OnPath = [P || N <- lists:seq(8, 14), P <- [os:find_executable("python3." ++ integer_to_list(N))],
                   P =/= false],
    Versions = [{P, V} || P <- Pyenv ++ OnPath,
                          {0, Out} <- [run_cmd(P, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])],
                          V <- [string:trim(Out)], V =/= Built,
                          {match, _} <- [re:run(V, "^3\\.([89]|1[0-9])$")]],
    case Versions of
        [] -> none;
        [First | _] -> First
    end.

%% --- helpers ----------------------------------------------------------------------

write(Dir, Name, Text) ->
    Path = filename:join(Dir, Name),
    ok = filelib:ensure_dir(Path),
    ok = file:write_file(Path, Text).

lines(Out) ->
    [L || L <- string:split(unicode:characters_to_list(Out), "\n", all), string:trim(L) =/= ""].

count(Needle, Out) ->
    length(binary:matches(iolist_to_binary(Out), list_to_binary(Needle))).

run_in(Dir, Args, Env) ->
    Port = open_port({spawn_executable, hornbeam()},
                     [{args, Args}, exit_status, stderr_to_stdout, binary, {cd, Dir}, {env, Env}]),
    collect(Port, <<>>).

run_cmd(Exe, Args) ->
    Port = open_port({spawn_executable, Exe}, [{args, Args}, exit_status, stderr_to_stdout, binary]),
    {S, Out} = collect(Port, <<>>),
    {S, unicode:characters_to_list(Out)}.

%% Starts bin/hornbeam in Dir; {Port, HttpPort, OutputSoFar} once it serves.
serve(Dir, Args, Env) ->
    Port = open_port({spawn_executable, hornbeam()},
                     [{args, Args}, exit_status, stderr_to_stdout, binary, {line, 4096},
                      {cd, Dir}, {env, Env}]),
    {HttpPort, Seen} = wait_serving(Port, []),
    %% the held-back notices are replayed around the serving line
    timer:sleep(300),
    {Port, HttpPort, iolist_to_binary([Seen | drain_lines(Port, [])])}.

wait_serving(Port, Seen) ->
    receive
        {Port, {data, {eol, Line}}} ->
            Seen1 = [Seen, Line, "\n"],
            case re:run(Line, "^hornbeam: serving .* on http://127.0.0.1:([0-9]+)",
                        [{capture, all_but_first, list}]) of
                {match, [P]} -> {list_to_integer(P), Seen1};
                nomatch -> wait_serving(Port, Seen1)
            end;
        {Port, {data, {noeol, Part}}} -> wait_serving(Port, [Seen, Part]);
        {Port, {exit_status, S}} -> ct:fail({exited, S, iolist_to_binary(Seen)})
    after 60000 -> ct:fail({no_url, iolist_to_binary(Seen)})
    end.

drain_lines(Port, Acc) ->
    receive {Port, {data, {_, Line}}} -> drain_lines(Port, [Acc, Line, "\n"])
    after 0 -> Acc
    end.

stop(Port) ->
    case erlang:port_info(Port, os_pid) of
        {os_pid, OsPid} ->
            _ = os:cmd("kill -INT " ++ integer_to_list(OsPid)),
            ?assertEqual(0, wait_exit(Port));
        undefined -> ok
    end.

http_get(HttpPort, Path) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, HttpPort, [binary, {active, false}]),
    ok = gen_tcp:send(S, ["GET ", Path, " HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"]),
    Resp = recv_all(S, <<>>),
    gen_tcp:close(S),
    {match, [Status]} = re:run(Resp, "^HTTP/1.1 ([0-9]+)", [{capture, all_but_first, list}]),
    [_, Body] = binary:split(Resp, <<"\r\n\r\n">>),
    {list_to_integer(Status), Body}.

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 30000) of
        {ok, D} -> recv_all(S, <<Acc/binary, D/binary>>);
        {error, closed} -> Acc
    end.

%% Joins room:lobby; the phx_reply payload.
join(HttpPort) ->
    {ok, C} = hornbeam_ws_client:connect(HttpPort, "/ws?vsn=2.0.0"),
    ok = hornbeam_ws_client:push(C, <<"1">>, <<"1">>, <<"room:lobby">>, <<"phx_join">>, #{}),
    [<<"1">>, <<"1">>, <<"room:lobby">>, <<"phx_reply">>, Reply] = hornbeam_ws_client:recv_json(C),
    Reply.

%% --name with the cookie in HORNBEAM_COOKIE: the cookie is on no command
%% line, not in the VM's environment once read (the Python workers inherit
%% that), and distribution listens on loopback only.
distributed_node_keeps_the_cookie_out_of_ps_and_listens_on_loopback(_Config) ->
    Name = "hbcli_" ++ integer_to_list(erlang:unique_integer([positive])),
    Node = list_to_atom(Name ++ "@127.0.0.1"),
    Cookie = "c" ++ binary_to_list(binary:encode_hex(crypto:strong_rand_bytes(12))),
    Port = open_port({spawn_executable, hornbeam()},
                     [{args, ["run", "app:app", "--bind", "127.0.0.1:0", "--workers", "1",
                              "--pythonpath", "examples/channels_chat", "--channel-module", "app",
                              "--name", atom_to_list(Node)]},
                      {env, [{"HORNBEAM_COOKIE", Cookie}]},
                      exit_status, stderr_to_stdout, binary, {line, 4096}, {cd, root()}]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    _ = wait_for_url(Port),
    Ps = os:cmd("ps -eo args"),
    ?assertMatch({match, _}, re:run(Ps, Name)),
    ?assertEqual(nomatch, re:run(Ps, Cookie)),
    %% The node took the cookie: the CT node reaches it with it.
    true = erlang:set_cookie(Node, list_to_atom(Cookie)),
    ?assertEqual(list_to_atom(Cookie), erpc:call(Node, erlang, get_cookie, [])),
    ?assertEqual(false, erpc:call(Node, os, getenv, ["HORNBEAM_COOKIE"])),
    ?assertEqual({ok, {127, 0, 0, 1}}, erpc:call(Node, application, get_env, [kernel, inet_dist_use_interface])),
    %% Its distribution listen socket is bound to 127.0.0.1, not 0.0.0.0.
    {port, DistPort, _} = erl_epmd:port_please(Name, {127, 0, 0, 1}),
    Bound = [Addr || P <- erpc:call(Node, erlang, ports, []),
                     {ok, {Addr, DP}} <- [catch erpc:call(Node, inet, sockname, [P])], DP =:= DistPort],
    ?assertMatch([_ | _], Bound),
    ?assertEqual([{127, 0, 0, 1}], lists:usort(Bound)),
    _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    ?assertEqual(0, wait_exit(Port)).

cookie_file_readable_by_others_is_refused(Config) ->
    File = filename:join(?config(priv_dir, Config), "cookie"),
    ok = file:write_file(File, "some-long-secret-cookie"),
    ok = file:change_mode(File, 8#644),
    {1, Out} = run(["run", "app:app", "--workers", "1", "--name", "hbcli_refused@127.0.0.1",
                    "--cookie-file", File]),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: the cookie file .* is readable by other "
                                         "users \\(mode 644\\); run chmod 600", [multiline])).

join_without_name_is_a_usage_error(_Config) ->
    {2, Out} = run(["run", "app:app", "--workers", "1", "--join", "a@127.0.0.1"]),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: --join needs --name", [multiline])),
    {2, Out2} = run(["run", "app:app", "--workers", "1", "--cookie-file", "/nonexistent"]),
    ?assertMatch({match, _}, re:run(Out2, "^hornbeam: error: --cookie-file needs --name", [multiline])).
