%% @doc The public Erlang API of Hornbeam Channels & Presence.
%%
%% ```
%% hornbeam:start("chat:app", #{channel_modules => ["chat"], bind => "127.0.0.1:8000"}).
%% hornbeam:start(none, #{channels => [{<<"room:*">>, my_room_channel}]}).
%% hornbeam:broadcast(<<"room:lobby">>, <<"new_msg">>, #{<<"body">> => <<"hi">>}).
%% hornbeam:stop().
%% '''
%% Options and their defaults are listed in README.md ("Options").
-module(hornbeam).

-export([start/1, start/2, stop/0, port/0,
         broadcast/3, broadcast_from/4, local_broadcast/3]).

-define(LISTENER_REF, hornbeam_http).

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
        {ok, _} -> start_endpoint(AppSpec, Opts);
        {error, _} = Error -> Error
    end.

%% @doc Stop serving: the listener, its connections and the Python workers.
-spec stop() -> ok | {error, not_started}.
stop() ->
    case catch supervisor:terminate_child(hornbeam_sup, endpoint) of
        ok ->
            _ = supervisor:delete_child(hornbeam_sup, endpoint),
            ok;
        _ ->
            {error, not_started}
    end.

%% @doc The TCP port the endpoint listens on (useful with `bind => "127.0.0.1:0"').
-spec port() -> inet:port_number().
port() ->
    hornbeam_listener:port(?LISTENER_REF).

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

%% --- internals -----------------------------------------------------------------

start_endpoint(AppSpec, Opts) ->
    Bind = maps:get(bind, Opts, "127.0.0.1:8000"),
    case hornbeam_http_bind:parse(Bind) of
        {ok, {IP, Port}} ->
            Spec = #{id => endpoint, start => {hornbeam_endpoint_sup, start_link, []},
                     type => supervisor, shutdown => infinity},
            case supervisor:start_child(hornbeam_sup, Spec) of
                {ok, Sup} ->
                    case start_parts(Sup, AppSpec, IP, Port, Opts) of
                        ok -> ok;
                        {error, _} = Error -> _ = stop(), Error
                    end;
                {error, {already_started, _}} -> {error, already_started};
                {error, already_present} -> {error, already_started};
                {error, Reason} -> {error, Reason}
            end;
        {error, Reason} ->
            {error, {bad_bind, Bind, Reason}}
    end.

start_parts(Sup, AppSpec, IP, Port, Opts) ->
    PresenceOpts = maps:with(maps:keys(hornbeam_presence_sup:defaults()), Opts),
    case hornbeam_endpoint_sup:start_presence(Sup, PresenceOpts) of
        ok -> start_parts_python(Sup, AppSpec, IP, Port, Opts);
        {error, _} = Error -> Error
    end.

start_parts_python(Sup, AppSpec, IP, Port, Opts) ->
    case start_python(Sup, AppSpec, Opts) of
        {ok, PyChannels, PyConnect} ->
            ErlChannels = maps:get(channels, Opts, []),
            Connect = case maps:get(connect, Opts, undefined) of
                          undefined -> PyConnect;
                          Fun -> Fun
                      end,
            EndpointOpts = Opts#{channels => ErlChannels ++ PyChannels, connect => Connect},
            case hornbeam_endpoint:config(EndpointOpts) of
                {ok, Config} -> start_listener(Sup, IP, Port, Config, Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% Python runs when there is an app or a channel module to import.
start_python(Sup, AppSpec, Opts) ->
    Modules = [to_binary(M) || M <- maps:get(channel_modules, Opts, [])],
    App = case AppSpec of
              none -> undefined;
              undefined -> undefined;
              _ -> to_binary(AppSpec)
          end,
    case App =:= undefined andalso Modules =:= [] of
        true ->
            {ok, [], undefined};
        false ->
            PyOpts0 = maps:with([workers, threads, max_queued_calls, timeout, init_timeout,
                                 worker_path, env,
                                 worker_class, lifespan, root_path, shutdown_timeout], Opts),
            PyOpts = PyOpts0#{app => App, channel_modules => Modules,
                              pythonpath => [to_binary(P) || P <- maps:get(pythonpath, Opts, ["."])]},
            case hornbeam_endpoint_sup:start_python(Sup, PyOpts) of
                ok ->
                    Channels = [{P, hornbeam_py_channel} || #{pattern := P} <- hornbeam_python:channels()],
                    Connect = case hornbeam_python:has_on_connect() of
                                  true -> fun hornbeam_py_connect:connect/2;
                                  false -> undefined
                              end,
                    {ok, Channels, Connect};
                {error, _} = Error ->
                    Error
            end
    end.

start_listener(Sup, IP, Port, Config, Opts) ->
    ListenerOpts0 = maps:with([acceptors, max_connections, max_request_line_length,
                               max_header_line_length, max_headers, max_body_length,
                               request_timeout], Opts),
    ListenerOpts = ListenerOpts0#{ref => ?LISTENER_REF, ip => IP, port => Port,
                                  handler => hornbeam_endpoint, handler_opts => Config},
    case hornbeam_endpoint_sup:start_listener(Sup, ListenerOpts) of
        ok ->
            logger:notice("hornbeam serving on http://~s (WebSocket at ~s)",
                          [format_bind(IP, port()), maps:get(ws_path, Config)]),
            ok;
        {error, _} = Error ->
            Error
    end.

to_binary(B) when is_binary(B) -> B;
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L);
to_binary(A) when is_atom(A) -> atom_to_binary(A).

format_bind(IP, Port) when tuple_size(IP) =:= 8 ->
    io_lib:format("[~s]:~b", [inet:ntoa(IP), Port]);
format_bind(IP, Port) ->
    io_lib:format("~s:~b", [inet:ntoa(IP), Port]).
