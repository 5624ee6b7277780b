%% EUnit tests of the CLI's argument parsing.
-module(hornbeam_cli_tests).
-include_lib("eunit/include/eunit.hrl").

help_test_() ->
    [?_assertEqual(help, hornbeam_cli:parse([])),
     ?_assertEqual(help, hornbeam_cli:parse(["--help"])),
     ?_assertEqual(run_help, hornbeam_cli:parse(["run", "--help"])),
     ?_assertEqual(run_help, hornbeam_cli:parse(["run", "app:app", "-h"]))].

defaults_test() ->
    ?assertEqual({run, "chat:app", #{pythonpath => ["."], channel_modules => []}, #{}},
                 hornbeam_cli:parse(["run", "chat:app"])).

every_option_test() ->
    {run, "pkg.mod:application", Opts, Node} =
        hornbeam_cli:parse(["run", "pkg.mod:application", "--bind", "[::]:9000", "--workers", "3",
                            "--worker-class", "wsgi", "--channel-module", "a", "--channel-module", "b",
                            "--pythonpath", "x", "--pythonpath", "y", "--python", "/srv/venv", "--ws-path", "/socket",
                            "--max-connections", "50000", "--public-host", "chat.example.com",
                            "--public-host", "*.example.org", "--name", "n@127.0.0.1",
                            "--cookie-file", "/run/cookie", "--dist-interface", "10.0.0.5",
                            "--join", "m@127.0.0.1", "--join", "o@127.0.0.1,p@127.0.0.1",
                            "--join-dns", "peers.svc", "--join-dns", "hb@other.svc",
                            "--join-retry-interval", "500", "--log-level", "debug"]),
    ?assertEqual(#{bind => "[::]:9000", workers => 3, worker_class => wsgi,
                   channel_modules => ["a", "b"], pythonpath => ["x", "y"], python => "/srv/venv", ws_path => "/socket",
                   max_connections => 50000, public_hosts => ["chat.example.com", "*.example.org"],
                   join => ["m@127.0.0.1", "o@127.0.0.1", "p@127.0.0.1"],
                   join_dns => ["peers.svc", "hb@other.svc"], join_retry_interval => 500}, Opts),
    ?assertEqual(#{name => "n@127.0.0.1", cookie_file => "/run/cookie", dist_interface => "10.0.0.5",
                   log_level => debug}, Node).

compress_flag_test_() ->
    [?_assertMatch({run, _, #{compress := false}, _}, hornbeam_cli:parse(["run", "a:b", "--compress", "off"])),
     ?_assertMatch({run, _, #{compress := true}, _}, hornbeam_cli:parse(["run", "a:b", "--compress", "on"])),
     ?_assertMatch({error, "--compress must be on or off" ++ _}, hornbeam_cli:parse(["run", "a:b", "--compress", "yes"]))].

%% The cookie never goes on a command line (`ps' shows it to every user).
cookie_on_the_command_line_is_refused_test() ->
    ?assertMatch({error, "--cookie would show the cookie in `ps`" ++ _},
                 hornbeam_cli:parse(["run", "a:b", "--name", "n@127.0.0.1", "--cookie", "secret"])).

errors_test_() ->
    [?_assertMatch({error, "missing MODULE:APP"}, hornbeam_cli:parse(["run"])),
     ?_assertMatch({error, "malformed MODULE:APP" ++ _}, hornbeam_cli:parse(["run", "nocolon"])),
     ?_assertMatch({error, "malformed MODULE:APP" ++ _}, hornbeam_cli:parse(["run", "a:b:c"])),
     ?_assertMatch({error, "missing MODULE:APP before --bind"}, hornbeam_cli:parse(["run", "--bind", "x"])),
     ?_assertMatch({error, "unknown command: serve"}, hornbeam_cli:parse(["serve"])),
     ?_assertMatch({error, "unknown option: --nope"}, hornbeam_cli:parse(["run", "a:b", "--nope", "1"])),
     ?_assertMatch({error, "option --bind needs a value"}, hornbeam_cli:parse(["run", "a:b", "--bind"])),
     ?_assertMatch({error, "--workers needs" ++ _}, hornbeam_cli:parse(["run", "a:b", "--workers", "0"])),
     ?_assertMatch({error, "--max-connections needs" ++ _}, hornbeam_cli:parse(["run", "a:b", "--max-connections", "many"])),
     ?_assertMatch({error, "--worker-class" ++ _}, hornbeam_cli:parse(["run", "a:b", "--worker-class", "x"])),
     ?_assertMatch({error, "--ws-path" ++ _}, hornbeam_cli:parse(["run", "a:b", "--ws-path", "ws"])),
     ?_assertMatch({error, "--log-level" ++ _}, hornbeam_cli:parse(["run", "a:b", "--log-level", "loud"])),
     ?_assertMatch({error, "--join needs NAME@HOST" ++ _}, hornbeam_cli:parse(["run", "a:b", "--join", "nohost"])),
     ?_assertMatch({error, "--join needs NAME@HOST" ++ _}, hornbeam_cli:parse(["run", "a:b", "--join", "a@h,,@h"])),
     ?_assertMatch({error, "--join-retry-interval needs" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--join-retry-interval", "0"])),
     ?_assertMatch({error, "--dist-interface needs an IP" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--dist-interface", "eth0"]))].

%% explain/2: every start-up failure is one clear block.
explain_test_() ->
    E = fun(Reason) -> unicode:characters_to_list(hornbeam_cli:explain(Reason, "127.0.0.1:8000")) end,
    [?_assertEqual("cannot import Python module m: ModuleNotFoundError: No module named 'm'",
                   E({python_import, <<"m">>, <<"ModuleNotFoundError: No module named 'm'">>, <<>>})),
     ?_assertEqual("cannot import Python module m: NameError: x\nTraceback (most recent call last):\n"
                   "  File \"m.py\", line 1\nNameError: x",
                   E({python_import, <<"m">>, <<"NameError: x">>,
                      <<"Traceback (most recent call last):\n  File \"m.py\", line 1\nNameError: x\n">>})),
     ?_assertEqual("cannot serve m:app: why", E({bad_app, <<"m:app">>, <<"why">>})),
     ?_assertEqual("/v/bin/python3 is Python 3.12, but the worker was built for Python 3.11; use a 3.11 "
                   "interpreter or virtualenv, or rebuild for 3.12 with "
                   "`PYO3_PYTHON=/v/bin/python3 make build`",
                   E({python_version, "/v/bin/python3", "3.12", "3.11"})),
     ?_assertEqual("127.0.0.1:8000 is already in use (another server is listening there)",
                   E({shutdown, {failed_to_start_child, listener, {listen, eaddrinuse}}})),
     ?_assertEqual("/v/bin/python3 is Python from /usr, but the worker embeds the libpython of /p; "
                   "make the virtualenv with `/p/bin/python -m venv`, or rebuild for this one with "
                   "`PYO3_PYTHON=/v/bin/python3 make build`",
                   E({python_base, "/v/bin/python3", "/usr", "/p", "/p/bin/python"})),
     ?_assertEqual("bad option worker_class: foo", E({bad_option, worker_class, foo}))].

thread_pool_options_test_() ->
    {run, _, Opts, _} = hornbeam_cli:parse(["run", "a:b", "--threads", "32", "--max-queued-calls", "0"]),
    [?_assertMatch(#{threads := 32, max_queued_calls := 0}, Opts),
     ?_assertMatch({error, "--threads needs" ++ _}, hornbeam_cli:parse(["run", "a:b", "--threads", "0"])),
     ?_assertMatch({error, "--max-queued-calls needs" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--max-queued-calls", "-1"]))].

drain_options_test_() ->
    {run, _, Opts, _} = hornbeam_cli:parse(["run", "a:b", "--drain-batch-size", "500",
                                            "--drain-interval", "0", "--drain-timeout", "9000"]),
    [?_assertMatch(#{drain_batch_size := 500, drain_interval := 0, drain_timeout := 9000}, Opts),
     ?_assertMatch({error, "--drain-batch-size needs a positive integer" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--drain-batch-size", "0"])),
     ?_assertMatch({error, "--drain-interval needs a non-negative integer" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--drain-interval", "-5"])),
     ?_assertMatch({error, "--drain-timeout needs a positive integer" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--drain-timeout", "soon"]))].

%% The API key never goes on a command line either; the file is for the node.
api_key_on_the_command_line_is_refused_test() ->
    ?assertMatch({error, "--api-key would show the key in `ps`" ++ _},
                 hornbeam_cli:parse(["run", "a:b", "--api-key", "secret"])),
    ?assertMatch({run, "a:b", _, #{api_key_file := "/run/key"}},
                 hornbeam_cli:parse(["run", "a:b", "--api-key-file", "/run/key"])).

api_key_file_readable_by_others_is_refused_test() ->
    Path = filename:join(os:getenv("TMPDIR", "/tmp"), "hornbeam_api_key_test"),
    ok = file:write_file(Path, <<"k3y\n">>),
    ok = file:change_mode(Path, 8#644),
    ?assertMatch({error, _}, hornbeam_api:read_key(Path)),
    ok = file:change_mode(Path, 8#600),
    ?assertEqual({ok, <<"k3y">>}, hornbeam_api:read_key(Path)),
    ok = file:write_file(Path, <<"\n">>),
    ?assertMatch({error, _}, hornbeam_api:read_key(Path)),
    ok = file:delete(Path).

api_key_from_the_environment_is_read_once_test() ->
    true = os:putenv("HORNBEAM_API_KEY", "envkey"),
    ?assertEqual({ok, <<"envkey">>}, hornbeam_api:read_key(undefined)),
    ?assertEqual(false, os:getenv("HORNBEAM_API_KEY")),
    ?assertEqual({ok, undefined}, hornbeam_api:read_key(undefined)).
