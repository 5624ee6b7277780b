%% @doc One HTTP listener: the root of its supervision tree.
%%
%% ```
%% hornbeam_listener_sup (rest_for_one)      <Ref>_listener_sup
%% ├── hornbeam_conn_limiter (worker)        <Ref>_limiter     max_connections slots
%% ├── hornbeam_conn_sup (simple_one_for_one) <Ref>_conn_sup   one hornbeam_http_conn per socket
%% ├── hornbeam_listener (worker)            <Ref>_listener    owns the listen socket
%% └── hornbeam_acceptor_sup (one_for_one)   <Ref>_acceptor_sup
%%     └── hornbeam_acceptor × acceptors
%% '''
%%
%% Why rest_for_one, in this order: each child depends only on the ones
%% started before it.
%% <ul>
%% <li>The limiter holds the count of live connections by monitoring them. If
%%     it dies that count is gone, so every connection (and every acceptor that
%%     holds a slot) must go too, or the count would no longer be exact.</li>
%% <li>If the connection supervisor dies, its connections are already dead;
%%     the listener and acceptors restart with it (cheap).</li>
%% <li>If the listener dies, the listen socket is closed: the acceptors blocked
%%     in accept on it restart, but live connections (and upgraded WebSockets)
%%     keep running, because they sit before it.</li>
%% <li>An acceptor crash is handled inside the acceptor supervisor.</li>
%% </ul>
%% `one_for_all' would also be correct but would drop every live connection
%% when only the listen socket needed reopening.
-module(hornbeam_listener_sup).
-behaviour(supervisor).

-export([start_link/1, stop_accepting/1]).
-export([init/1]).

%% @doc Start a listener. `Opts' is described in `hornbeam_http_opts' (only
%% `handler' is required). Registered as `<Ref>_listener_sup'.
-spec start_link(hornbeam_http_opts:opts()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Opts) ->
    case hornbeam_http_opts:validate(Opts) of
        {ok, Config = #{ref := Ref}} ->
            %% After a kill of the supervisor above this one, the old tree
            %% may still be closing its connections: wait for its names.
            ok = hornbeam_names:await_free([hornbeam_http_opts:name(Ref, R)
                                            || R <- [listener_sup, limiter, conn_sup, listener,
                                                     acceptor_sup]], 10000),
            supervisor:start_link({local, hornbeam_http_opts:name(Ref, listener_sup)},
                                  ?MODULE, Config);
        {error, _} = Error ->
            Error
    end.

%% @doc Stop accepting: the acceptors, then the listen socket, so new
%% clients are refused at once; live connections stay (hornbeam_drainer
%% closes them next). Neither is restarted: the listener is stopping.
-spec stop_accepting(hornbeam_http_opts:ref()) -> ok.
stop_accepting(Ref) ->
    Sup = hornbeam_http_opts:name(Ref, listener_sup),
    _ = supervisor:terminate_child(Sup, acceptor_sup),
    _ = supervisor:terminate_child(Sup, listener),
    ok.

-spec init(hornbeam_http_opts:config()) ->
    {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Config) ->
    Children = [
        #{id => limiter,
          start => {hornbeam_conn_limiter, start_link, [Config]}},
        #{id => conn_sup,
          start => {hornbeam_conn_sup, start_link, [Config]},
          type => supervisor, shutdown => infinity},
        #{id => listener,
          start => {hornbeam_listener, start_link, [Config]}},
        #{id => acceptor_sup,
          start => {hornbeam_acceptor_sup, start_link, [Config]},
          type => supervisor, shutdown => infinity}
    ],
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 10}, Children}}.
