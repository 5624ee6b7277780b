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
    case supervisor:terminate_child(hornbeam_sup, endpoint) of
        ok ->
            _ = supervisor:delete_child(hornbeam_sup, endpoint),
            ok;
        {error, not_found} ->
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

start_endpoint(_AppSpec, Opts) ->
    Bind = maps:get(bind, Opts, "127.0.0.1:8000"),
    case hornbeam_http_bind:parse(Bind) of
        {ok, {IP, Port}} ->
            case hornbeam_endpoint:config(Opts) of
                {ok, Config} -> start_listener(IP, Port, Config, Opts);
                {error, _} = Error -> Error
            end;
        {error, Reason} ->
            {error, {bad_bind, Bind, Reason}}
    end.

start_listener(IP, Port, Config, Opts) ->
    ListenerOpts0 = maps:with([acceptors, max_connections, max_request_line_length,
                               max_header_line_length, max_headers, max_body_length,
                               request_timeout], Opts),
    ListenerOpts = ListenerOpts0#{ref => ?LISTENER_REF, ip => IP, port => Port,
                                  handler => hornbeam_endpoint, handler_opts => Config},
    Spec = #{id => endpoint,
             start => {hornbeam_listener_sup, start_link, [ListenerOpts]},
             type => supervisor, shutdown => infinity},
    case supervisor:start_child(hornbeam_sup, Spec) of
        {ok, _} ->
            logger:notice("hornbeam serving on http://~s (WebSocket at ~s)",
                          [format_bind(IP, port()), maps:get(ws_path, Config)]),
            ok;
        {error, {already_started, _}} -> {error, already_started};
        {error, already_present} -> {error, already_started};
        {error, {Reason, _Child}} -> {error, Reason};
        {error, Reason} -> {error, Reason}
    end.

format_bind(IP, Port) when tuple_size(IP) =:= 8 ->
    io_lib:format("[~s]:~b", [inet:ntoa(IP), Port]);
format_bind(IP, Port) ->
    io_lib:format("~s:~b", [inet:ntoa(IP), Port]).
