%% A real Django project (test/django: Django 5 from PyPI, SQLite) served as
%% a user serves it: `bin/hornbeam run mysite.asgi:application
%% --channel-module chat.channels` from the project's directory. Its views
%% answer over HTTP, its sync channel handlers use the ORM, the session cookie
%% of a Django login authenticates the WebSocket, and the worker holds no DB
%% connection once the handlers are done (counted as open SQLite files in
%% /proc/<worker>/fd).
-module(hornbeam_django_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(CLIENTS, 4).
-define(EVENTS, 1000).

suite() -> [{timetrap, {minutes, 10}}].

all() ->
    [django_view_reads_the_orm_over_http, join_without_a_session_is_refused,
     session_cookie_authenticates_the_socket, sync_handler_writes_with_the_orm_and_broadcasts,
     db_connections_stay_flat_over_1000_events].

root() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Src)).

project() -> filename:join([root(), "test", "django"]).

%% --- the server, one for the suite ---------------------------------------------

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(inets),
    Db = filename:join(?config(priv_dir, Config), "db.sqlite3"),
    Env = [{"HORNBEAM_DJANGO_DB", Db}],
    ok = manage(Env, ["migrate", "--verbosity", "0"]),
    ok = manage([{"DJANGO_SUPERUSER_PASSWORD", "s3cret"} | Env],
                ["createsuperuser", "--noinput", "--username", "ana", "--email", "ana@example.com"]),
    Log = filename:join(?config(priv_dir, Config), "server.log"),
    {Server, Port, OsPid} = start_server(Env, Log),
    ct:pal("Django project served on port ~p (bin/hornbeam pid ~p), log ~s", [Port, OsPid, Log]),
    [{db, Db}, {server, Server}, {port, Port}, {os_pid, OsPid} | Config].

end_per_suite(Config) ->
    Server = ?config(server, Config),
    Server ! {stop, self()},
    receive {Server, stopped, Status} -> ?assertEqual(0, Status)
    after 60000 -> ct:fail(server_did_not_stop)
    end.

%% python3 manage.py Args in the project; ok or the failure with its output.
manage(Env, Args) ->
    Python = os:find_executable("python3"),
    P = open_port({spawn_executable, Python},
                  [{args, ["manage.py" | Args]}, {env, Env}, {cd, project()},
                   exit_status, stderr_to_stdout, binary]),
    case collect(P, <<>>) of
        {0, _} -> ok;
        {S, Out} -> ct:fail({manage, Args, S, Out})
    end.

collect(P, Acc) ->
    receive
        {P, {data, D}} -> collect(P, <<Acc/binary, D/binary>>);
        {P, {exit_status, S}} -> {S, Acc}
    after 120000 -> ct:fail(manage_timeout)
    end.

%% bin/hornbeam is owned by a process of its own, so that it outlives
%% init_per_suite; its output goes to Log.
start_server(Env, Log) ->
    Self = self(),
    Server = spawn(fun() -> serve(Self, Env, Log) end),
    receive
        {Server, serving, Port, OsPid} -> {Server, Port, OsPid};
        {Server, failed, Why} -> ct:fail({server_did_not_start, Why})
    after 120000 -> ct:fail(server_start_timeout)
    end.

serve(Parent, Env, Log) ->
    {ok, F} = file:open(Log, [write]),
    Exe = filename:join([root(), "bin", "hornbeam"]),
    P = open_port({spawn_executable, Exe},
                  [{args, ["run", "mysite.asgi:application", "--channel-module", "chat.channels",
                           "--bind", "127.0.0.1:0", "--workers", "1"]},
                   {env, Env}, {cd, project()}, exit_status, stderr_to_stdout, binary, {line, 4096}]),
    {os_pid, OsPid} = erlang:port_info(P, os_pid),
    serve_loop(Parent, P, OsPid, F, starting).

serve_loop(Parent, P, OsPid, F, State) ->
    receive
        {P, {data, {_, Line}}} ->
            ok = file:write(F, [Line, $\n]),
            case {State, re:run(Line, "serving .* on http://127.0.0.1:([0-9]+)",
                                [{capture, all_but_first, list}])} of
                {starting, {match, [Port]}} ->
                    Parent ! {self(), serving, list_to_integer(Port), OsPid},
                    serve_loop(Parent, P, OsPid, F, serving);
                _ -> serve_loop(Parent, P, OsPid, F, State)
            end;
        {P, {exit_status, S}} when State =:= starting ->
            Parent ! {self(), failed, {exit_status, S}};
        {P, {exit_status, S}} ->
            receive {stop, From} -> From ! {self(), stopped, S} end;
        {stop, From} ->
            _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
            stop_wait(From, P, F)
    end.

stop_wait(From, P, F) ->
    receive
        {P, {data, {_, Line}}} -> ok = file:write(F, [Line, $\n]), stop_wait(From, P, F);
        {P, {exit_status, S}} -> From ! {self(), stopped, S}
    end.

%% --- HTTP and WebSocket helpers ------------------------------------------------

url(Config, Path) -> "http://127.0.0.1:" ++ integer_to_list(?config(port, Config)) ++ Path.

get_json(Config, Path) ->
    {ok, {{_, 200, _}, _, Body}} = httpc:request(get, {url(Config, Path), []},
                                                 [{timeout, 30000}], [{body_format, binary}]),
    {ok, Json} = hornbeam_nif:json_decode(Body),
    Json.

%% Log in through the Django view; the session cookie ("sessionid=...").
login(Config) ->
    {ok, {{_, 200, _}, Headers, Body}} =
        httpc:request(post, {url(Config, "/login/"), [], "application/json",
                             <<"{\"username\": \"ana\", \"password\": \"s3cret\"}">>},
                      [{timeout, 30000}], [{body_format, binary}]),
    ?assertEqual({ok, #{<<"username">> => <<"ana">>}}, hornbeam_nif:json_decode(Body)),
    [Cookie] = [hd(string:split(V, ";")) || {"set-cookie", V} <- Headers,
                                            lists:prefix("sessionid=", V)],
    Cookie.

connect(Config, Headers) ->
    {ok, C} = ?C:connect(?config(port, Config), "/ws?vsn=2.0.0", Headers),
    C.

join(C, Topic) ->
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, #{}),
    reply(C, <<"1">>).

%% The phx_reply to Ref, skipping broadcasts.
reply(C, Ref) ->
    case ?C:recv_json(C, 30000) of
        [_, Ref, _, <<"phx_reply">>, Payload] -> Payload;
        [_, _, _, <<"new_msg">>, _] -> reply(C, Ref);
        Other -> ct:fail({unexpected, Other})
    end.

%% --- tests ---------------------------------------------------------------------

django_view_reads_the_orm_over_http(Config) ->
    ?assertMatch(#{<<"users">> := 1, <<"messages">> := _}, get_json(Config, "/stats/")).

join_without_a_session_is_refused(Config) ->
    C = connect(Config, []),
    ?assertEqual(#{<<"status">> => <<"error">>, <<"response">> => #{<<"reason">> => <<"login required">>}},
                 join(C, <<"room:anon">>)),
    ?C:close(C).

session_cookie_authenticates_the_socket(Config) ->
    C = connect(Config, [{"Cookie", login(Config)}]),
    ?assertEqual(#{<<"status">> => <<"ok">>, <<"response">> => #{<<"messages">> => 0}},
                 join(C, <<"room:auth">>)),
    ?C:close(C).

sync_handler_writes_with_the_orm_and_broadcasts(Config) ->
    Cookie = login(Config),
    A = connect(Config, [{"Cookie", Cookie}]),
    B = connect(Config, [{"Cookie", Cookie}]),
    #{<<"status">> := <<"ok">>} = join(A, <<"room:lobby">>),
    #{<<"status">> := <<"ok">>} = join(B, <<"room:lobby">>),
    ok = ?C:push(A, <<"1">>, <<"2">>, <<"room:lobby">>, <<"new_msg">>, #{<<"body">> => <<"hello">>}),
    #{<<"status">> := <<"ok">>, <<"response">> := #{<<"id">> := Id}} = reply(A, <<"2">>),
    ?assertEqual([null, null, <<"room:lobby">>, <<"new_msg">>,
                  #{<<"id">> => Id, <<"username">> => <<"ana">>, <<"body">> => <<"hello">>}],
                 ?C:recv_json(B, 30000)),
    #{<<"rooms">> := Rooms} = get_json(Config, "/stats/"),
    ?assertEqual(1, maps:get(<<"room:lobby">>, Rooms)),
    %% A second join sees the row through the ORM too.
    C = connect(Config, [{"Cookie", Cookie}]),
    ?assertEqual(#{<<"status">> => <<"ok">>, <<"response">> => #{<<"messages">> => 1}},
                 join(C, <<"room:lobby">>)),
    [?C:close(X) || X <- [A, B, C]].

%% ?CLIENTS sockets send ?EVENTS new_msg events between them (each waits for
%% its reply before the next). Every 100 replies the test counts the worker's
%% open SQLite files; once all are answered, no connection may be left.
db_connections_stay_flat_over_1000_events(Config) ->
    Db = ?config(db, Config),
    Worker = worker_pid(?config(os_pid, Config)),
    Cookie = login(Config),
    %% Django closes a view's connection just after its response (request_finished).
    Before = wait_db_files(Worker, Db, 0, 100),
    Self = self(),
    PerClient = ?EVENTS div ?CLIENTS,
    Clients = [spawn_link(fun() -> send_events(Self, Config, Cookie, N, PerClient) end)
               || N <- lists:seq(1, ?CLIENTS)],
    Samples = collect_replies(Worker, Db, ?EVENTS, []),
    [receive {Pid, finished} -> ok after 60000 -> ct:fail(client_did_not_finish) end || Pid <- Clients],
    %% A handler's reply can leave just before its hook closes the connection.
    After = wait_db_files(Worker, Db, 0, 100),
    ct:pal("open DB files of worker ~p: before ~p, every 100 replies ~p, after ~p",
           [Worker, Before, Samples, After]),
    ?assertEqual(0, Before),
    ?assertEqual(0, After),
    %% In flight, at most one connection per handler that runs at once.
    ?assert(lists:max(Samples) =< ?CLIENTS),
    #{<<"rooms">> := Rooms} = get_json(Config, "/stats/"),
    ?assertEqual([PerClient || _ <- lists:seq(1, ?CLIENTS)],
                 [maps:get(load_topic(N), Rooms, 0) || N <- lists:seq(1, ?CLIENTS)]),
    ?assertEqual(0, wait_db_files(Worker, Db, 0, 100)).

load_topic(N) -> <<"room:load", (integer_to_binary(N))/binary>>.

send_events(Parent, Config, Cookie, N, Count) ->
    C = connect(Config, [{"Cookie", Cookie}]),
    Topic = load_topic(N),
    #{<<"status">> := <<"ok">>} = join(C, Topic),
    lists:foreach(
      fun(I) ->
              Ref = integer_to_binary(I + 1),
              ok = ?C:push(C, <<"1">>, Ref, Topic, <<"new_msg">>, #{<<"body">> => Ref}),
              #{<<"status">> := <<"ok">>} = reply(C, Ref),
              Parent ! replied
      end, lists:seq(1, Count)),
    ?C:close(C),
    Parent ! {self(), finished}.

collect_replies(_Worker, _Db, 0, Samples) ->
    lists:reverse(Samples);
collect_replies(Worker, Db, Left, Samples) ->
    receive
        replied when (Left - 1) rem 100 =:= 0 ->
            collect_replies(Worker, Db, Left - 1, [db_files(Worker, Db) | Samples]);
        replied ->
            collect_replies(Worker, Db, Left - 1, Samples)
    after 60000 -> ct:fail({replies_missing, Left})
    end.

%% The Python worker: the descendant of bin/hornbeam named hornbeam_worker.
worker_pid(OsPid) ->
    Parents = [{Pid, PPid, Comm} || {Pid, PPid, Comm} <- os_processes()],
    Descendants = descendants([OsPid], Parents, []),
    case [Pid || {Pid, _, "hornbeam_worker"} <- Parents, lists:member(Pid, Descendants)] of
        [Pid] -> Pid;
        Other -> ct:fail({worker_pids, Other})
    end.

descendants([], _All, Acc) -> Acc;
descendants([P | Rest], All, Acc) ->
    Children = [Pid || {Pid, PPid, _} <- All, PPid =:= P],
    descendants(Children ++ Rest, All, Children ++ Acc).

os_processes() ->
    {ok, Names} = file:list_dir("/proc"),
    lists:filtermap(fun stat/1, Names).

stat(Name) ->
    case string:to_integer(Name) of
        {Pid, ""} ->
            case file:read_file("/proc/" ++ Name ++ "/stat") of
                {ok, Stat} ->
                    %% "pid (comm) state ppid ..."; comm may hold spaces.
                    [Head, Tail] = string:split(Stat, ")", trailing),
                    [_, Comm] = string:split(Head, "("),
                    [_State, PPid | _] = string:lexemes(Tail, " "),
                    {true, {Pid, binary_to_integer(PPid), binary_to_list(Comm)}};
                {error, _} -> false
            end;
        _ -> false
    end.

%% db_files/2 once it is Want, polling every 100 ms; its last value after Tries.
wait_db_files(Worker, Db, Want, Tries) ->
    case db_files(Worker, Db) of
        Want -> Want;
        N when Tries =< 1 -> N;
        _ -> timer:sleep(100), wait_db_files(Worker, Db, Want, Tries - 1)
    end.

%% Open files of the worker that are the database: one per SQLite
%% connection (a writing connection also has the -journal file open, which
%% is not counted).
db_files(Worker, Db) ->
    Dir = "/proc/" ++ integer_to_list(Worker) ++ "/fd",
    {ok, Fds} = file:list_dir(Dir),
    length([Fd || Fd <- Fds,
                  case file:read_link(filename:join(Dir, Fd)) of
                      {ok, Target} -> Target =:= Db;
                      {error, _} -> false
                  end]).
