%% @doc Supervises this node's long-poll sessions (`hornbeam_socket'
%% processes with the long-poll transport; temporary children: a session
%% that ends is gone, its client gets 410 and starts a new one) and owns
%% the session table (`hornbeam_longpoll:table/0', SHA-256 of the token's
%% secret → session pid), so the table lives exactly as long as the
%% sessions it finds. A child of the endpoint supervisor, started before
%% the listener.
-module(hornbeam_longpoll_sup).
-behaviour(supervisor).

-export([start_link/0, start_session/2, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    hornbeam_names:await_free([?MODULE], 10000),
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% @doc Start the session for Conn (connected: params, assigns, connect_info),
%% registered under Key.
-spec start_session(hornbeam_socket:conn_info(), binary()) -> {ok, pid()} | {error, term()}.
start_session(Conn, Key) ->
    try supervisor:start_child(?MODULE, [Conn, Key])
    catch exit:{Reason, _} when Reason =:= noproc; Reason =:= killed; Reason =:= shutdown ->
        {error, restarting}
    end.

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    _ = ets:new(hornbeam_longpoll:table(), [named_table, public, set, {read_concurrency, true}]),
    Child = #{id => session, start => {hornbeam_socket, start_longpoll, []},
              restart => temporary, shutdown => 5000},
    {ok, {#{strategy => simple_one_for_one, intensity => 0, period => 1}, [Child]}}.
