%% @doc Supervisor of one listener's connection processes
%% (`hornbeam_http_conn', one per accepted socket). Children are temporary:
%% a connection that ends, crashes or is killed is never restarted; its slot
%% is freed by `hornbeam_conn_limiter', which monitors it.
-module(hornbeam_conn_sup).
-behaviour(supervisor).

-export([start_link/1, start_connection/2, connections/1]).
-export([init/1]).

-spec start_link(hornbeam_http_opts:config()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Config = #{ref := Ref}) ->
    supervisor:start_link({local, hornbeam_http_opts:name(Ref, conn_sup)}, ?MODULE, Config).

%% @doc Start a connection process for Sock. The caller (an acceptor) still
%% owns Sock and must hand it over with `hornbeam_http_conn:go/2'.
-spec start_connection(hornbeam_http_opts:ref(), gen_tcp:socket()) ->
    {ok, pid()} | {error, term()}.
start_connection(Ref, Sock) ->
    case supervisor:start_child(hornbeam_http_opts:name(Ref, conn_sup), [Sock]) of
        {ok, Pid} -> {ok, Pid};
        {ok, Pid, _} -> {ok, Pid};
        {error, _} = Error -> Error
    end.

%% @doc The live connection processes (for tests and introspection; not
%% used on any hot path).
-spec connections(hornbeam_http_opts:ref()) -> [pid()].
connections(Ref) ->
    [Pid || {_, Pid, _, _} <- supervisor:which_children(hornbeam_http_opts:name(Ref, conn_sup)),
            is_pid(Pid)].

-spec init(hornbeam_http_opts:config()) ->
    {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Config) ->
    Child = #{id => hornbeam_http_conn,
              start => {hornbeam_http_conn, start_link, [Config]},
              restart => temporary,
              shutdown => 5000},
    {ok, {#{strategy => simple_one_for_one, intensity => 0, period => 1}, [Child]}}.
