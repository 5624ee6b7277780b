%% @doc One serving endpoint: the presence tracker, the Python worker pool
%% (when there is Python to run) and then the HTTP listener, rest_for_one:
%% the listener's routes come from what the workers registered, so a new
%% pool means a new listener. Children are added in order by
%% `hornbeam:start/2' (start_presence/2, start_python/2, start_listener/2),
%% because the listener's options depend on the pool's answer.
-module(hornbeam_endpoint_sup).
-behaviour(supervisor).

-export([start_link/0, start_presence/2, start_python/2, start_listener/2, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link(?MODULE, []).

-spec start_presence(pid(), map()) -> ok | {error, term()}.
start_presence(Sup, PresenceOpts) ->
    Spec = #{id => presence, start => {hornbeam_presence_sup, start_link, [PresenceOpts]},
             type => supervisor, shutdown => infinity},
    started(supervisor:start_child(Sup, Spec)).

-spec start_python(pid(), map()) -> ok | {error, term()}.
start_python(Sup, PythonOpts) ->
    Spec = #{id => python, start => {hornbeam_python_sup, start_link, [PythonOpts]},
             type => supervisor, shutdown => infinity},
    started(supervisor:start_child(Sup, Spec)).

-spec start_listener(pid(), map()) -> ok | {error, term()}.
start_listener(Sup, ListenerOpts) ->
    Spec = #{id => listener, start => {hornbeam_listener_sup, start_link, [ListenerOpts]},
             type => supervisor, shutdown => infinity},
    started(supervisor:start_child(Sup, Spec)).

started({ok, _}) -> ok;
started({ok, _, _}) -> ok;
started({error, {{python_import, _, _, _} = Reason, _}}) -> {error, Reason};
started({error, {{bad_app, _, _} = Reason, _}}) -> {error, Reason};
started({error, {{worker_binary_missing, _, _} = Reason, _}}) -> {error, Reason};
started({error, {shutdown, {failed_to_start_child, _, Reason}}}) -> {error, Reason};
started({error, {Reason, Child}}) when element(1, Child) =:= child -> {error, Reason};
started({error, Reason}) -> {error, Reason}.

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    {ok, {#{strategy => rest_for_one, intensity => 5, period => 30}, []}}.
