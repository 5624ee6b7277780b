%% @doc The public Erlang API of Hornbeam Channels & Presence.
%%
%% ```
%% hornbeam:start("chat:app", #{channel_modules => ["chat"], bind => "127.0.0.1:8000"}).
%% hornbeam:start(none, #{channels => [{<<"room:*">>, my_room_channel}]}).
%% hornbeam:broadcast(<<"room:lobby">>, <<"new_msg">>, #{<<"body">> => <<"hi">>}).
%% hornbeam:disconnect(<<"user:42">>).
%% hornbeam:stop().
%% '''
%% Options and their defaults are listed in README.md ("Options").
%%
%% Bad arguments are `{error, Reason}' for the caller, checked before
%% anything reaches a shared process: `{bad_topic, T}', `{bad_event, E}'
%% (topics and events are UTF-8 binaries), `{bad_from, F}',
%% `{not_json, Payload}', `{bad_options, Opts}'.
-module(hornbeam).

-export([start/1, start/2, stop/0, port/0, metrics_port/0,
         broadcast/3, broadcast_from/4, local_broadcast/3, disconnect/1]).

-define(LISTENER_REF, hornbeam_http).
-define(METRICS_REF, hornbeam_metrics_http).

-type app_spec() :: none | string() | binary().
-type options() :: map().
-export_type([app_spec/0, options/0]).

-spec start(app_spec()) -> ok | {error, term()}.
start(AppSpec) ->
    start(AppSpec, #{}).

%% @doc Start serving. `AppSpec' is `"module:attribute"' of a Python ASGI/WSGI
%% app, or `none' to serve only channels.
-spec start(app_spec(), options()) -> ok | {error, term()}.
start(AppSpec, Opts) when is_map(Opts) ->
    case application:ensure_all_started(hornbeam) of
        {ok, _} ->
            %% join / join_dns / join_retry_interval: see hornbeam_cluster
            case hornbeam_cluster:join(Opts) of
                ok -> start_endpoint(AppSpec, Opts);
                {error, Reason} -> {error, {cluster, Reason}}
            end;
        {error, _} = Error -> Error
    end;
start(_AppSpec, Opts) ->
    {error, {bad_options, Opts}}.

%% @doc Stop serving: the listener, its connections and the Python workers.
-spec stop() -> ok | {error, not_started}.
stop() ->
    ok = hornbeam_presence_shard:set_retiring(true),
    _ = stop_metrics(),
    try supervisor:terminate_child(hornbeam_sup, endpoint) of
        ok ->
            _ = supervisor:delete_child(hornbeam_sup, endpoint),
            ok;
        _ ->
            {error, not_started}
    catch
        _:_ -> {error, not_started}
    after
        hornbeam_presence_shard:set_retiring(false)
    end.

%% @doc The TCP port the endpoint listens on (useful with `bind => "127.0.0.1:0"').
-spec port() -> inet:port_number().
port() ->
    hornbeam_listener:port(?LISTENER_REF).

%% @doc The TCP port of the metrics listener (`metrics_bind').
-spec metrics_port() -> inet:port_number().
metrics_port() ->
    hornbeam_listener:port(?METRICS_REF).

-spec broadcast(binary(), binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
broadcast(Topic, Event, Payload) ->
    hornbeam_pubsub:broadcast(Topic, Event, Payload).

%% @doc Broadcast to everyone on Topic except the client of channel FromPid.
-spec broadcast_from(pid(), binary(), binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
broadcast_from(FromPid, Topic, Event, Payload) ->
    hornbeam_pubsub:broadcast_from(FromPid, Topic, Event, Payload).

-spec local_broadcast(binary(), binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
local_broadcast(Topic, Event, Payload) ->
    hornbeam_pubsub:local_broadcast(Topic, Event, Payload).

%% @doc Close every WebSocket whose connect returned this socket id
%% (`{ok, Assigns, Id}'; Python `('ok', assigns, id)'), on every node of the
%% cluster, as Phoenix's "disconnect" broadcast does. Each closes with 4000
%% and its channels terminate as on any close; clients reconnect and their
%% next connect decides. `ok' also when no socket has the id.
-spec disconnect(binary()) -> ok | {error, {bad_socket_id, term()}}.
disconnect(SocketId) ->
    case hornbeam_endpoint:check_socket_id(SocketId) of
        {ok, Id} when is_binary(Id) ->
            _ = [Pid ! {'$hb_disconnect', Id}
                 || Pid <- pg:get_members(hornbeam_pubsub:scope(), {socket_id, Id})],
            ok;
        _ ->
            {error, {bad_socket_id, SocketId}}
    end.

%% --- internals -----------------------------------------------------------------

start_endpoint(AppSpec, Opts) ->
    Bind = maps:get(bind, Opts, "127.0.0.1:8000"),
    case hornbeam_http_bind:parse(Bind) of
        {ok, {IP, Port}} ->
            case hornbeam_drainer:options(Opts) of
                {ok, Drain} ->
                    %% options first, then already_started, and only then anything
                    %% that changes the running node (the logger, the metrics child)
                    case {check_observability(Port, Opts), running()} of
                        {{error, _} = Error, _} ->
                            Error;
                        {{ok, MetricsBind}, false} ->
                            ok = hornbeam_log_format:setup(Opts),
                            case start_metrics(MetricsBind) of
                                ok -> start_endpoint(AppSpec, IP, Port, Opts#{drain => Drain});
                                {error, _} = Error -> Error
                            end;
                        {{ok, _}, true} ->
                            {error, already_started}
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, Reason} ->
            {error, {bad_bind, Bind, Reason}}
    end.

running() ->
    lists:keymember(endpoint, 1, supervisor:which_children(hornbeam_sup)).

start_endpoint(AppSpec, IP, Port, Opts) ->
    Spec = hornbeam_endpoint_sup:child_spec(endpoint_opts(AppSpec, IP, Port, Opts)),
    case supervisor:start_child(hornbeam_sup, Spec) of
        {ok, _Sup} ->
            channels_only_notice(python_app(AppSpec)),
            logger:notice("hornbeam serving on http://~s (WebSocket at ~s)",
                          [format_bind(IP, port()), ws_path(Opts)]),
            ok;
        {error, _} = Error ->
            _ = stop_metrics(),
            start_error(Error)
    end.

%% Logs (log_format, traceback_log_limit) and the metrics listener
%% (metrics_bind): checked before anything starts. The metrics child is
%% started before the endpoint, so it sits before it in hornbeam_sup's
%% rest_for_one order and an endpoint restart leaves it alone.
check_observability(AppPort, Opts) ->
    case hornbeam_log_format:check(Opts) of
        ok -> check_metrics_bind(AppPort, maps:get(metrics_bind, Opts, undefined));
        {error, _} = Error -> Error
    end.

check_metrics_bind(_AppPort, undefined) ->
    {ok, undefined};
check_metrics_bind(AppPort, Bind) ->
    case hornbeam_http_bind:parse(Bind) of
        {ok, {_IP, AppPort}} when AppPort =/= 0 ->
            %% never the app's own port: /metrics must not be public by accident
            {error, {metrics_bind, Bind, same_port_as_bind}};
        {ok, {IP, Port}} ->
            {ok, {Bind, IP, Port}};
        {error, _} ->
            {error, {bad_option, metrics_bind, Bind}}
    end.

start_metrics(undefined) ->
    ok;
start_metrics({Bind, IP, Port}) ->
    ok = hornbeam_metrics:enable(),
    Listener = #{ref => ?METRICS_REF, ip => IP, port => Port, acceptors => 2,
                 max_connections => 64, handler => hornbeam_metrics_http},
    Spec = #{id => metrics, start => {hornbeam_listener_sup, start_link, [Listener]},
             type => supervisor, shutdown => infinity},
    case supervisor:start_child(hornbeam_sup, Spec) of
        {ok, _} ->
            Url = format_bind(IP, metrics_port()),
            logger:notice("metrics on http://~s/metrics, dashboard on http://~s/", [Url, Url]),
            ok;
        {error, {already_started, _}} ->
            {error, already_started};
        {error, {{shutdown, {failed_to_start_child, listener, {listen, Why}}}, _}} ->
            _ = stop_metrics(),
            {error, {metrics_bind, Bind, Why}};
        {error, _} = Error ->
            _ = stop_metrics(),
            start_error(Error)
    end.

stop_metrics() ->
    _ = supervisor:terminate_child(hornbeam_sup, metrics),
    supervisor:delete_child(hornbeam_sup, metrics).

%% Everything the endpoint needs, decided once here: the endpoint's child
%% spec keeps it, so a restart rebuilds the same endpoint.
endpoint_opts(AppSpec, IP, Port, Opts) ->
    ListenerOpts = maps:with([acceptors, max_connections, max_request_line_length,
                              max_header_line_length, max_headers, max_body_length,
                              request_timeout, header_timeout], Opts),
    #{presence => maps:with(maps:keys(hornbeam_presence_sup:defaults()), Opts),
      python => python_opts(AppSpec, Opts),
      listener => ListenerOpts#{ref => ?LISTENER_REF, ip => IP, port => Port},
      endpoint => seal_api_key(maps:remove(drain, Opts)),
      drain => maps:get(drain, Opts)}.

%% The child spec (printed in supervisor reports) holds the API key sealed,
%% never as text (see hornbeam_api).
seal_api_key(Opts) ->
    case hornbeam_api:seal(maps:get(api_key, Opts, undefined)) of
        {ok, Sealed} -> Opts#{api_key => Sealed};
        error -> Opts
    end.

python_app(none) -> undefined;
python_app(undefined) -> undefined;
python_app(AppSpec) -> to_binary(AppSpec).

%% The pool's options, or none: Python runs when there is an app or a
%% channel module to import.
python_opts(AppSpec, Opts) ->
    Modules = [to_binary(M) || M <- maps:get(channel_modules, Opts, [])],
    App = python_app(AppSpec),
    case App =:= undefined andalso Modules =:= [] of
        true ->
            none;
        false ->
            PyOpts = maps:with([workers, timeout, init_timeout, worker_path, env, python, threads, max_queued_calls,
                                worker_class, lifespan, root_path, shutdown_timeout], Opts),
            PyOpts#{app => App, channel_modules => Modules,
                    pythonpath => [to_binary(P) || P <- maps:get(pythonpath, Opts, ["."])]}
    end.

%% The reason of the part that failed, as the parts report it (e.g.
%% `{python_import, Module, Message}', `{bad_option, Name, Value}').
start_error({error, {already_started, _}}) -> {error, already_started};
start_error({error, already_present}) -> {error, already_started};
start_error({error, {{shutdown, {failed_to_start_child, _Part, Reason}}, _Child}}) -> {error, Reason};
start_error({error, {shutdown, {failed_to_start_child, _Part, Reason}}}) -> {error, Reason};
start_error({error, {Reason, Child}}) when element(1, Child) =:= child -> {error, Reason};
start_error({error, _} = Error) -> Error.

ws_path(Opts) ->
    case maps:get(ws_path, Opts, maps:get(ws_path, hornbeam_endpoint:defaults())) of
        Path when is_binary(Path); is_list(Path) -> Path;
        Other -> io_lib:format("~0p", [Other])
    end.

%% `module:app' whose module has no `app' but registers channels is served
%% as channels only, the shape the channel docs show (the worker checked).
channels_only_notice(undefined) ->
    ok;
channels_only_notice(App) ->
    case hornbeam_python:has_http_app() of
        true -> ok;
        false -> logger:notice("~ts: no such attribute; serving channels only "
                               "(HTTP answers 404 except /hornbeam.js)", [App])
    end.

to_binary(B) when is_binary(B) -> B;
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L);
to_binary(A) when is_atom(A) -> atom_to_binary(A).

format_bind(IP, Port) when tuple_size(IP) =:= 8 ->
    io_lib:format("[~s]:~b", [inet:ntoa(IP), Port]);
format_bind(IP, Port) ->
    io_lib:format("~s:~b", [inet:ntoa(IP), Port]).
