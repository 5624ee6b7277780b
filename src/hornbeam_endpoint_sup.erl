%% @doc One serving endpoint, one_for_one, in start order:
%%   presence   hornbeam_presence_sup   the presence shards
%%   python     hornbeam_python_sup     the worker pool (only when there is Python to run)
%%   longpoll   hornbeam_longpoll_sup   long-poll sessions and their token table
%%   listener   hornbeam_listener_sup   the HTTP listener and its connections
%%   drainer    hornbeam_drainer        on shutdown, first: stops accepting and closes
%%                                      the connections in batches (drain_* options)
%%
%% The child spec knows every option (`start_link(Opts)', built once by
%% `hornbeam:start/2'), so a restart of this supervisor, by `hornbeam_sup''s
%% rest_for_one after a pg scope death or after its own death, rebuilds the
%% whole endpoint, not an empty one.
%%
%% Why one_for_one: no child needs the others to be the same processes as
%% before. They find each other by registered name (presence shards, pool
%% workers) and survive each other's restarts:
%% <ul>
%% <li>presence: a restarted shard adopts the state of the one before
%%     (src/presence/README.md), so no channel or connection must go;</li>
%% <li>python: a restarted pool imports the same modules and registers the
%%     same channels, so the routes the listener was built with still hold;
%%     channel processes keep their assigns, their next events run on the new
%%     workers;</li>
%% <li>listener: its connections die with it (clients reconnect); presence
%%     and Python do not care.</li>
%% </ul>
%% The listener is started last because its routes are the Erlang channels
%% plus the ones the Python modules registered (`start_listener/1').
-module(hornbeam_endpoint_sup).
-behaviour(supervisor).

-export([start_link/1, child_spec/1, start_listener/1, init/1]).

-type opts() :: #{presence := map(),
                  python := map() | none,
                  listener := map(),      %% hornbeam_http_opts without handler/handler_opts
                  endpoint := map(),      %% hornbeam_endpoint:config/1 options (Erlang channels, connect)
                  drain => hornbeam_drainer:options()}.
-export_type([opts/0]).

-spec child_spec(opts()) -> supervisor:child_spec().
child_spec(Opts) ->
    #{id => endpoint, start => {?MODULE, start_link, [Opts]},
      type => supervisor, shutdown => infinity}.

-spec start_link(opts()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Opts) ->
    supervisor:start_link(?MODULE, Opts).

%% @doc Start the listener with the routes of the Erlang channels and of
%% the Python channels the pool registered (the pool, if any, is running:
%% it is the child before).
-spec start_listener(opts()) -> {ok, pid()} | ignore | {error, term()}.
start_listener(#{listener := ListenerOpts, endpoint := EndpointOpts, python := Python}) ->
    {PyChannels, PyConnect} = python_routes(Python),
    Connect = case maps:get(connect, EndpointOpts, undefined) of
                  undefined -> PyConnect;
                  Fun -> Fun
              end,
    Channels = maps:get(channels, EndpointOpts, []) ++ PyChannels,
    case hornbeam_endpoint:config(EndpointOpts#{channels => Channels, connect => Connect}) of
        {ok, Config} ->
            hornbeam_listener_sup:start_link(ListenerOpts#{handler => hornbeam_endpoint,
                                                           handler_opts => Config});
        {error, _} = Error ->
            Error
    end.

python_routes(none) ->
    {[], undefined};
python_routes(_) ->
    Channels = [{P, hornbeam_py_channel} || #{pattern := P} <- hornbeam_python:channels()],
    Connect = case hornbeam_python:has_on_connect() of
                  true -> fun hornbeam_py_connect:connect/2;
                  false -> undefined
              end,
    {Channels, Connect}.

-spec init(opts()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Opts = #{presence := PresenceOpts, python := Python}) ->
    Presence = #{id => presence, start => {hornbeam_presence_sup, start_link, [PresenceOpts]},
                 type => supervisor, shutdown => infinity},
    Pool = [#{id => python, start => {hornbeam_python_sup, start_link, [Python]},
              type => supervisor, shutdown => infinity} || Python =/= none],
    LongPoll = #{id => longpoll, start => {hornbeam_longpoll_sup, start_link, []},
                 type => supervisor, shutdown => infinity},
    Listener = #{id => listener, start => {?MODULE, start_listener, [Opts]},
                 type => supervisor, shutdown => infinity},
    %% Last, so it terminates first: it drains the listener's connections.
    {ok, Drain} = hornbeam_drainer:options(maps:get(drain, Opts, #{})),
    Drainer = hornbeam_drainer:child_spec(maps:get(ref, maps:get(listener, Opts)), Drain),
    {ok, {#{strategy => one_for_one, intensity => 5, period => 30},
          [Presence] ++ Pool ++ [LongPoll, Listener, Drainer]}}.
