%% bin/hornbeam as a user runs it: a real OS process serving the chat
%% example, its errors, and a graceful stop on SIGINT.
-module(hornbeam_cli_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [help_exits_zero, malformed_app_is_a_usage_error, import_error_is_one_line,
     port_in_use_is_one_line, missing_build_says_how_to_build,
     serves_the_chat_example_and_stops_on_sigint,
     distributed_node_keeps_the_cookie_out_of_ps_and_listens_on_loopback,
     cookie_file_readable_by_others_is_refused, join_without_name_is_a_usage_error].

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
