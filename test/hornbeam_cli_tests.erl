%% EUnit tests of the CLI's argument parsing.
-module(hornbeam_cli_tests).
-include_lib("eunit/include/eunit.hrl").

help_test_() ->
    [?_assertEqual(help, hornbeam_cli:parse([])),
     ?_assertEqual(help, hornbeam_cli:parse(["--help"])),
     ?_assertEqual(run_help, hornbeam_cli:parse(["run", "--help"])),
     ?_assertEqual(run_help, hornbeam_cli:parse(["run", "app:app", "-h"]))].

defaults_test() ->
    ?assertEqual({run, "chat:app", #{pythonpath => ["."], channel_modules => []}, #{join => []}},
                 hornbeam_cli:parse(["run", "chat:app"])).

every_option_test() ->
    {run, "pkg.mod:application", Opts, Node} =
        hornbeam_cli:parse(["run", "pkg.mod:application", "--bind", "[::]:9000", "--workers", "3",
                            "--worker-class", "wsgi", "--channel-module", "a", "--channel-module", "b",
                            "--pythonpath", "x", "--pythonpath", "y", "--ws-path", "/socket",
                            "--max-connections", "50000", "--name", "n@127.0.0.1", "--cookie", "c", "--join", "m@127.0.0.1",
                            "--join", "o@127.0.0.1", "--log-level", "debug"]),
    ?assertEqual(#{bind => "[::]:9000", workers => 3, worker_class => wsgi,
                   channel_modules => ["a", "b"], pythonpath => ["x", "y"], ws_path => "/socket",
                   max_connections => 50000}, Opts),
    ?assertEqual(#{name => "n@127.0.0.1", cookie => "c", join => ["m@127.0.0.1", "o@127.0.0.1"],
                   log_level => debug}, Node).

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
     ?_assertMatch({error, "--log-level" ++ _}, hornbeam_cli:parse(["run", "a:b", "--log-level", "loud"]))].

thread_pool_options_test_() ->
    {run, _, Opts, _} = hornbeam_cli:parse(["run", "a:b", "--threads", "32", "--max-queued-calls", "0"]),
    [?_assertMatch(#{threads := 32, max_queued_calls := 0}, Opts),
     ?_assertMatch({error, "--threads needs" ++ _}, hornbeam_cli:parse(["run", "a:b", "--threads", "0"])),
     ?_assertMatch({error, "--max-queued-calls needs" ++ _},
                   hornbeam_cli:parse(["run", "a:b", "--max-queued-calls", "-1"]))].
