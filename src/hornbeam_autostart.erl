%% @doc What a release serves when it boots. The release's vm.args
%% (config/vm.args.src) runs `-s hornbeam_autostart run' once the boot script
%% has started every application, so `bin/hornbeam foreground | console |
%% daemon' of the release serve; nothing else calls this module.
%%
%% What to serve comes from the first of:
%% <ul>
%% <li>the OS environment variable `HORNBEAM_SERVE': the words `bin/hornbeam
%%     run' takes (the same parser, `hornbeam_cli:parse/1'), e.g.
%%     `HORNBEAM_SERVE="app:app --channel-module app --pythonpath /srv/chat --bind 0.0.0.0:8000"';
%%     `none' serves nothing;</li>
%% <li>the application environment `{hornbeam, [{serve, Serve}]}' (sys.config):
%%     either that list of words, or a map of `hornbeam:start/2' options
%%     with the app under `app' (`#{app => "app:app", channel_modules =>
%%     ["app"], pythonpath => ["/srv/chat"], bind => "0.0.0.0:8000"}';
%%     no `app' or `app => none' serves channels only).</li>
%% </ul>
%% With neither nothing is served (`bin/hornbeam eval "hornbeam:start(...)."'
%% still can). Relative `--pythonpath' entries are relative to the release
%% root (the start script runs there). `--join'/`--join-dns' keep the node
%% joined to the given peers (hornbeam_cluster; `{hornbeam, [{join, ...}]}'
%% in sys.config works too); the release's own node name, cookie and
%% distribution address come from vm.args (`HORNBEAM_NODE',
%% `HORNBEAM_COOKIE'), so `--name', `--cookie-file' and `--dist-interface'
%% are refused. `HORNBEAM_COOKIE' is removed from the VM's environment here,
%% so that the Python workers do not inherit the cookie.
%%
%% A failure prints one line `hornbeam: error: ...' and halts the node with
%% exit status 1.
-module(hornbeam_autostart).

-export([run/0, config/0]).

-type config() :: none | {ok, hornbeam:app_spec(), map(), map()} | {error, string()}.

%% @doc Serve what the configuration says; returns ok or halts the node.
-spec run() -> ok.
run() ->
    _ = os:unsetenv("HORNBEAM_COOKIE"),
    case catch serve(config()) of
        ok -> ok;
        {error, Message} -> fail(Message);
        Other -> fail(io_lib:format("cannot start: ~0p", [Other]))
    end.

%% @doc The configuration `run/0' acts on (no side effects).
-spec config() -> config().
config() ->
    case os:getenv("HORNBEAM_SERVE") of
        Env when is_list(Env), Env =/= "" ->
            from_words(string:lexemes(Env, " \t\n"));
        _ ->
            case application:get_env(hornbeam, serve) of
                undefined -> none;
                {ok, none} -> none;
                {ok, Serve} when is_map(Serve) ->
                    {ok, maps:get(app, Serve, none), maps:remove(app, Serve), #{}};
                {ok, Words} when is_list(Words) ->
                    from_words(Words);
                {ok, Other} ->
                    {error, io_lib:format("hornbeam serve: expected a map or a list of words, got ~0p",
                                          [Other])}
            end
    end.

from_words(["none"]) ->
    none;
from_words(Words) ->
    case hornbeam_cli:parse(["run" | [to_list(W) || W <- Words]]) of
        {run, AppSpec, Opts, Node} -> {ok, AppSpec, Opts, Node};
        {error, Message} -> {error, Message};
        _Help -> {error, "hornbeam serve: --help is not a configuration"}
    end.

serve(none) ->
    ok;
serve({error, _} = Error) ->
    Error;
serve({ok, _, _, #{name := _}}) ->
    {error, "--name is set by the release's vm.args (HORNBEAM_NODE), not by the serve options"};
serve({ok, _, _, #{cookie_file := _}}) ->
    {error, "the cookie is set by the release's vm.args (HORNBEAM_COOKIE), not by the serve options"};
serve({ok, _, _, #{dist_interface := _}}) ->
    {error, "--dist-interface is set by the release's vm.args (inet_dist_use_interface), "
            "not by the serve options"};
serve({ok, AppSpec, Opts, Node}) ->
    _ = maps:is_key(log_level, Node)
        andalso logger:set_primary_config(level, maps:get(log_level, Node)),
    case hornbeam_startup:start(AppSpec, Opts) of
        ok ->
            io:format("hornbeam: serving ~ts on port ~b (WebSocket at ~ts)~n",
                      [app_name(AppSpec), hornbeam:port(), maps:get(ws_path, Opts, "/ws")]),
            ok;
        {error, Reason} ->
            {error, hornbeam_cli:explain(Reason, maps:get(bind, Opts, "127.0.0.1:8000"))}
    end.

app_name(none) -> "channels";
app_name(App) -> App.

to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L.

-spec fail(iodata()) -> no_return().
fail(Message) ->
    %% A daemon's stderr goes to the run_erl log (log/erlang.log.N).
    io:put_chars(standard_error, ["hornbeam: error: ", Message, "\n"]),
    erlang:halt(1, [{flush, true}]).
