%% @doc Supervisor of one listener's `acceptors' acceptor processes
%% (`hornbeam_acceptor'), all accepting on the same listen socket.
-module(hornbeam_acceptor_sup).
-behaviour(supervisor).

-export([start_link/1]).
-export([init/1]).

-spec start_link(hornbeam_http_opts:config()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Config = #{ref := Ref}) ->
    supervisor:start_link({local, hornbeam_http_opts:name(Ref, acceptor_sup)}, ?MODULE, Config).

-spec init(hornbeam_http_opts:config()) ->
    {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Config = #{ref := Ref, acceptors := N}) ->
    LSock = hornbeam_listener:socket(Ref),
    Children = [#{id => {acceptor, I},
                  start => {hornbeam_acceptor, start_link, [Config, LSock, I]},
                  %% transient: an acceptor exits normally only when the listen
                  %% socket is closed, i.e. the listener is going away and
                  %% rest_for_one is about to restart this supervisor anyway.
                  restart => transient,
                  shutdown => brutal_kill}
                || I <- lists:seq(1, N)],
    {ok, {#{strategy => one_for_one, intensity => N, period => 10}, Children}}.
