%% @doc Owns one listener's listen socket (and so its lifetime) and knows
%% the port it is bound to, which matters when `port' is 0.
%%
%% Socket options: binary, passive, `{packet, raw}', `{reuseaddr, true}',
%% `{backlog, 1024}', `{nodelay, true}', plus `inet6' for an IPv6 `ip'.
%% Accepted sockets inherit them. Acceptors fetch the socket with
%% `socket/1' and call `gen_tcp:accept/2' on it themselves.
%%
%% A restarted listener binds the port its predecessor had, also when
%% `port' is 0: the port bound for each `{Ref, IP, Port}' is remembered in
%% `persistent_term' (written once per new port), so clients reconnect to
%% the same address after any restart in the tree. While the old socket is
%% still closing, the port is tried again for up to 2 s.
-module(hornbeam_listener).
-behaviour(gen_server).

-export([start_link/1, port/1, socket/1, address/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

%% A restarted listener tries its old port this many times, this far apart,
%% while the killed one's socket is still closing.
-define(REBIND_TRIES, 40).
-define(REBIND_WAIT, 50).

-record(state, {
    sock :: gen_tcp:socket(),
    ip :: inet:ip_address(),
    port :: inet:port_number()
}).

-spec start_link(hornbeam_http_opts:config()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Config = #{ref := Ref}) ->
    gen_server:start_link({local, hornbeam_http_opts:name(Ref, listener)}, ?MODULE, Config, []).

%% @doc The TCP port the listener `Ref' is bound to.
-spec port(hornbeam_http_opts:ref()) -> inet:port_number().
port(Ref) ->
    {_IP, Port} = address(Ref),
    Port.

%% @doc The address and port the listener `Ref' is bound to.
-spec address(hornbeam_http_opts:ref()) -> {inet:ip_address(), inet:port_number()}.
address(Ref) ->
    gen_server:call(hornbeam_http_opts:name(Ref, listener), address).

%% @doc The listen socket, for acceptors.
-spec socket(hornbeam_http_opts:ref()) -> gen_tcp:socket().
socket(Ref) ->
    gen_server:call(hornbeam_http_opts:name(Ref, listener), socket).

%% --- gen_server -----------------------------------------------------------------

-spec init(hornbeam_http_opts:config()) -> {ok, #state{}} | {stop, term()}.
init(#{ref := Ref, ip := IP, port := Port}) ->
    logger:set_process_metadata(#{ref => Ref}),
    process_flag(trap_exit, true),       %% so terminate/2 closes the socket on shutdown
    Family = case tuple_size(IP) of 8 -> [inet6]; 4 -> [inet] end,
    Opts = Family ++ [binary, {active, false}, {packet, raw}, {ip, IP},
                      {reuseaddr, true}, {backlog, 1024}, {nodelay, true},
                      {send_timeout, 30000}, {send_timeout_close, true}],
    case listen(Ref, IP, Port, Opts) of
        {ok, Sock} ->
            {ok, {BoundIP, BoundPort}} = inet:sockname(Sock),
            logger:info("listening on ~s port ~b", [inet:ntoa(BoundIP), BoundPort]),
            {ok, #state{sock = Sock, ip = BoundIP, port = BoundPort}};
        {error, Reason} ->
            logger:error("cannot listen on ~s port ~b: ~s",
                         [inet:ntoa(IP), Port, inet:format_error(Reason)]),
            {stop, {listen, Reason}}
    end.

%% The port an earlier listener of the same ref, address and `port' option
%% got (a restart: the old socket may still be closing, so a busy port is
%% tried again for a while), else `port' itself. A port that `0' got is
%% remembered for the next restart.
listen(Ref, IP, Port, Opts) ->
    Key = {?MODULE, Ref, IP, Port},
    Result = case persistent_term:get(Key, none) of
                 none ->
                     gen_tcp:listen(Port, Opts);
                 Earlier ->
                     case listen_again(Earlier, Opts, ?REBIND_TRIES) of
                         {error, _} when Port =:= 0 -> gen_tcp:listen(0, Opts);
                         Other -> Other
                     end
             end,
    _ = case Result of
            {ok, Sock} when Port =:= 0 ->
                {ok, Bound} = inet:port(Sock),
                persistent_term:get(Key, none) =:= Bound orelse persistent_term:put(Key, Bound);
            {ok, _} ->
                persistent_term:get(Key, none) =:= Port orelse persistent_term:put(Key, Port);
            _ ->
                ok
        end,
    Result.

listen_again(Port, Opts, Tries) ->
    case gen_tcp:listen(Port, Opts) of
        {error, eaddrinuse} when Tries > 1 ->
            receive after ?REBIND_WAIT -> ok end,
            listen_again(Port, Opts, Tries - 1);
        Other ->
            Other
    end.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call(address, _From, State = #state{ip = IP, port = Port}) ->
    {reply, {IP, Port}, State};
handle_call(socket, _From, State = #state{sock = Sock}) ->
    {reply, Sock, State};
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}} | {stop, term(), #state{}}.
handle_info({'EXIT', Sock, Reason}, State = #state{sock = Sock}) ->
    %% The listen socket went away under us: restart (and so do the acceptors).
    {stop, {listen_socket_closed, Reason}, State};
handle_info(_Info, State) ->
    {noreply, State}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, #state{sock = Sock}) ->
    _ = gen_tcp:close(Sock),
    ok.
