%% The rebar3 release as an operator runs it: `rebar3 release' builds
%% _build/default/rel/hornbeam carrying the native parts; `bin/hornbeam daemon'
%% of the release serves the chat example (HTTP page and a channel join),
%% `eval' reaches the node, `stop' stops it. The release's node name and
%% cookie are the suite's own (HORNBEAM_NODE, HORNBEAM_COOKIE), distinct from
%% the CT node and from the other suites' nodes.
-module(hornbeam_release_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(NODE, "hornbeam_rel_ct@127.0.0.1").
-define(COOKIE, "hornbeam_rel_ct_9f3c1e7a2b").

suite() -> [{timetrap, {minutes, 4}}].

all() ->
    [release_carries_the_native_parts, default_config_serves_the_bundled_chat,
     daemon_serves_the_chat_example_and_stops, bad_serve_config_is_one_line_and_exit_1,
     module_with_channels_and_no_app_is_served_channels_only,
     module_with_nothing_to_serve_is_one_line_and_exit_1,
     missing_or_guessable_cookie_is_refused].

root() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Src)).

rel() -> filename:join([root(), "_build", "default", "rel", "hornbeam"]).

script() -> filename:join([rel(), "bin", "hornbeam"]).

init_per_suite(Config) ->
    %% A release left running by an interrupted run would hold the node name.
    _ = filelib:is_file(script()) andalso run(script(), ["stop"], env(), 30000),
    {Status, Out} = run(os:find_executable("rebar3"), ["release"], [], 300000, root()),
    case Status of
        0 -> Config;
        _ -> ct:fail({rebar3_release_failed, Status, Out})
    end.

end_per_suite(_Config) ->
    ok.

end_per_testcase(_Case, _Config) ->
    case run(script(), ["ping"], env(), 30000) of
        {0, _} -> _ = run(script(), ["stop"], env(), 60000), ok;
        _ -> ok
    end.

%% --- cases ------------------------------------------------------------------

release_carries_the_native_parts(_Config) ->
    [Lib] = filelib:wildcard(filename:join([rel(), "lib", "hornbeam-*"])),
    Priv = filename:join(Lib, "priv"),
    %% relx followed the priv symlink of _build/default/lib/hornbeam: real files.
    {ok, #{type := directory}} = file_info(Priv),
    {ok, #{type := regular, size := NifSize}} = file_info(filename:join(Priv, "hornbeam_nif.so")),
    ?assert(NifSize > 0),
    {ok, #{type := regular, mode := Mode}} = file_info(filename:join(Priv, "hornbeam_worker")),
    ?assert(Mode band 8#111 =/= 0),
    {ok, #{type := regular}} = file_info(filename:join([Priv, "python", "hornbeam_channels", "__init__.py"])),
    {ok, #{type := regular}} = file_info(filename:join([Priv, "python", "hornbeam_presence.py"])),
    {ok, #{type := regular}} = file_info(filename:join([Priv, "static", "hornbeam.js"])),
    %% Self-contained: its own ERTS, and the example it serves by default.
    ?assertMatch([_], filelib:wildcard(filename:join(rel(), "erts-*/bin/beam.smp"))),
    {ok, #{type := regular}} = file_info(filename:join([rel(), "examples", "channels_chat", "app.py"])),
    {ok, #{type := regular}} = file_info(filename:join([rel(), "examples", "channels_chat", "index.html"])),
    %% The NIF in the release is the one the build produced.
    {ok, Built} = file:read_file(filename:join([root(), "priv", "hornbeam_nif.so"])),
    {ok, Shipped} = file:read_file(filename:join(Priv, "hornbeam_nif.so")),
    ?assertEqual(erlang:md5(Built), erlang:md5(Shipped)).

default_config_serves_the_bundled_chat(_Config) ->
    {ok, [SysConfig]} = file:consult(filename:join([rel(), "releases", "0.1.0", "sys.config"])),
    Words = proplists:get_value(serve, proplists:get_value(hornbeam, SysConfig)),
    {run, "app:app", Opts, _} = hornbeam_cli:parse(["run" | Words]),
    ?assertEqual(["app"], maps:get(channel_modules, Opts)),
    ?assertEqual(["examples/channels_chat"], maps:get(pythonpath, Opts)),
    ?assertEqual("127.0.0.1:8000", maps:get(bind, Opts)).

daemon_serves_the_chat_example_and_stops(_Config) ->
    Env = env(#{"HORNBEAM_SERVE" => "app:app --channel-module app --pythonpath examples/channels_chat "
                                    "--bind 127.0.0.1:0 --workers 1"}),
    ?assertMatch({0, _}, run(script(), ["daemon"], Env, 60000)),
    Port = wait_for_port(60),
    {ok, PidOut} = ok_output(run(script(), ["pid"], env(), 30000)),
    %% The vm.args the start script filled in holds the cookie: owner only.
    {ok, #{mode := VmArgsMode}} = file_info(filename:join([rel(), "releases", "0.1.0", "vm.args"])),
    ?assertEqual(8#600, VmArgsMode band 8#777),
    OsPid = string:trim(PidOut),

    %% The ASGI app answers at /.
    {Status, Body} = http_get(Port, "/"),
    ?assertEqual(200, Status),
    ?assertMatch({match, _}, re:run(Body, "<title>Hornbeam chat</title>")),

    %% The Python channel room:* answers a join and an event.
    {ok, C} = hornbeam_ws_client:connect(Port, "/ws?vsn=2.0.0"),
    ok = hornbeam_ws_client:push(C, <<"1">>, <<"1">>, <<"room:lobby">>, <<"phx_join">>,
                                 #{<<"username">> => <<"ana">>}),
    ?assertMatch([<<"1">>, <<"1">>, <<"room:lobby">>, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>, <<"response">> := #{<<"room_id">> := <<"lobby">>}}],
                 hornbeam_ws_client:recv_json(C, 15000)),
    ok = hornbeam_ws_client:push(C, <<"1">>, <<"2">>, <<"room:lobby">>, <<"new_msg">>,
                                 #{<<"body">> => <<"hi">>}),
    ?assertMatch([<<"1">>, <<"2">>, <<"room:lobby">>, <<"phx_reply">>,
                  #{<<"status">> := <<"ok">>}], recv_reply(C)),

    %% stop: the node goes, the client is closed, the port no longer answers.
    ?assertMatch({0, _}, run(script(), ["stop"], env(), 60000)),
    ?assertMatch({1, _}, run(script(), ["ping"], env(), 30000)),
    ?assertNotEqual(timeout, hornbeam_ws_client:expect_closed(C, 10000)),
    ?assertEqual("", os:cmd("ps -o pid= -p " ++ OsPid)),
    ?assertEqual({error, econnrefused}, gen_tcp:connect({127, 0, 0, 1}, Port, [], 5000)).

%% A serve configuration that cannot start stops the node with one line
%% (foreground: `daemon' would wait for a node that halted).
bad_serve_config_is_one_line_and_exit_1(_Config) ->
    Env = env(#{"HORNBEAM_SERVE" => "no_such_mod_xyz:app --workers 1 --bind 127.0.0.1:0",
                "HORNBEAM_NODE" => "hornbeam_rel_ct2@127.0.0.1"}),
    {Status, Out} = run(script(), ["foreground"], Env, 60000),
    ?assertEqual(1, Status),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: cannot import Python module "
                                         "no_such_mod_xyz: ModuleNotFoundError", [multiline])).

fixtures() -> filename:join([root(), "test", "python", "fixtures"]).

%% HORNBEAM_SERVE of a module written as the channel docs show (no `app').
module_with_channels_and_no_app_is_served_channels_only(_Config) ->
    Env = env(#{"HORNBEAM_SERVE" => "e2e_chat:app --pythonpath " ++ fixtures() ++
                                    " --bind 127.0.0.1:0 --workers 1"}),
    ?assertMatch({0, _}, run(script(), ["daemon"], Env, 60000)),
    Port = wait_for_port(60),
    ?assertMatch({404, _}, http_get(Port, "/")),
    ?assertMatch({200, _}, http_get(Port, "/hornbeam.js")),
    {ok, C} = hornbeam_ws_client:connect(Port, "/ws?vsn=2.0.0"),
    ok = hornbeam_ws_client:push(C, <<"1">>, <<"1">>, <<"chat:lobby">>, <<"phx_join">>,
                                 #{<<"username">> => <<"ana">>}),
    ?assertMatch([<<"1">>, <<"1">>, <<"chat:lobby">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                 hornbeam_ws_client:recv_json(C, 15000)),
    ?assertMatch({0, _}, run(script(), ["stop"], env(), 60000)).

module_with_nothing_to_serve_is_one_line_and_exit_1(_Config) ->
    Env = env(#{"HORNBEAM_SERVE" => "fx_connect:app --pythonpath " ++ fixtures() ++
                                    " --bind 127.0.0.1:0 --workers 2",
                "HORNBEAM_NODE" => "hornbeam_rel_ct2@127.0.0.1"}),
    {Status, Out} = run(script(), ["foreground"], Env, 60000),
    ct:log("~ts", [Out]),
    ?assertEqual(1, Status),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: cannot serve fx_connect:app: module "
                                         "'fx_connect' has no attribute 'app'", [multiline])),
    ?assertEqual(nomatch, re:run(Out, "REPORT|supervisor|Traceback")).

%% No default cookie: without HORNBEAM_COOKIE, or with a guessable one,
%% the start commands stop before the node starts, with one line.
missing_or_guessable_cookie_is_refused(_Config) ->
    Node = "hornbeam_rel_ct3@127.0.0.1",
    {1, Out} = run(script(), ["foreground"], env(#{"HORNBEAM_COOKIE" => false, "HORNBEAM_NODE" => Node}), 60000),
    ?assertMatch({match, _}, re:run(Out, "^hornbeam: error: HORNBEAM_COOKIE is not set", [multiline])),
    {1, Out2} = run(script(), ["daemon"], env(#{"HORNBEAM_COOKIE" => "hornbeam", "HORNBEAM_NODE" => Node}), 60000),
    ?assertMatch({match, _}, re:run(Out2, "^hornbeam: error: HORNBEAM_COOKIE is a guessable word", [multiline])),
    {1, Out3} = run(script(), ["foreground"], env(#{"HORNBEAM_COOKIE" => "short1", "HORNBEAM_NODE" => Node}), 60000),
    ?assertMatch({match, _}, re:run(Out3, "^hornbeam: error: HORNBEAM_COOKIE is shorter than 16", [multiline])),
    %% Nothing started under that name.
    ?assertMatch({1, _}, run(script(), ["ping"], env(#{"HORNBEAM_NODE" => Node}), 30000)).

%% --- helpers ----------------------------------------------------------------

%% The release's environment: the suite's node name and cookie, and no
%% HORNBEAM_SERVE (the sys.config default) unless Overrides sets one.
env() -> env(#{}).
env(Overrides) ->
    maps:to_list(maps:merge(#{"HORNBEAM_NODE" => ?NODE, "HORNBEAM_COOKIE" => ?COOKIE,
                              "HORNBEAM_SERVE" => false}, Overrides)).

file_info(Path) ->
    case file:read_link_info(Path) of
        {ok, Info} ->
            {ok, #{type => element(3, Info), size => element(2, Info), mode => element(8, Info)}};
        Error ->
            Error
    end.

run(Exe, Args, Env, Timeout) -> run(Exe, Args, Env, Timeout, root()).

%% Run Exe to completion: {ExitStatus, Output}, or {timeout, Output} after
%% killing it.
run(Exe, Args, Env, Timeout, Cd) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, {env, Env}, {cd, Cd}, exit_status, stderr_to_stdout,
                      binary, hide]),
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    collect(Port, Deadline, <<>>).

collect(Port, Deadline, Acc) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {data, D}} -> collect(Port, Deadline, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, Acc}
    after Left ->
        case erlang:port_info(Port, os_pid) of
            {os_pid, OsPid} -> _ = os:cmd("kill " ++ integer_to_list(OsPid));
            undefined -> ok
        end,
        catch port_close(Port),
        {timeout, Acc}
    end.

ok_output({0, Out}) -> {ok, binary_to_list(Out)};
ok_output(Other) -> ct:fail({command_failed, Other}).

%% The release node serves once hornbeam_autostart has run; ask it for the port.
wait_for_port(0) ->
    Log = file:read_file(filename:join([rel(), "log", "erlang.log.1"])),
    ct:fail({not_serving, Log});
wait_for_port(Tries) ->
    case run(script(), ["eval", "hornbeam:port()."], env(), 30000) of
        {0, Out} ->
            case string:to_integer(string:trim(binary_to_list(Out))) of
                {P, ""} when P > 0 -> P;
                _ -> timer:sleep(1000), wait_for_port(Tries - 1)
            end;
        _ ->
            timer:sleep(1000), wait_for_port(Tries - 1)
    end.

http_get(Port, Path) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000),
    ok = gen_tcp:send(S, ["GET ", Path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"]),
    Response = recv_all(S, <<>>),
    ok = gen_tcp:close(S),
    [Head, Body] = binary:split(Response, <<"\r\n\r\n">>),
    [<<"HTTP/1.1">>, Code | _] = binary:split(Head, <<" ">>, [global]),
    {binary_to_integer(Code), Body}.

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 15000) of
        {ok, D} -> recv_all(S, <<Acc/binary, D/binary>>);
        {error, closed} -> Acc
    end.

%% The next reply, skipping the presence messages the chat's join sends.
recv_reply(C) ->
    case hornbeam_ws_client:recv_json(C, 15000) of
        [_, _, _, <<"presence_diff">>, _] -> recv_reply(C);
        Other -> Other
    end.
