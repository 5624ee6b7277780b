%% @doc Owns one listener's listen socket (and so its lifetime) and knows
%% the port it is bound to, which matters when `port' is 0.
%%
%% Socket options: binary, passive, `{packet, raw}', `{reuseaddr, true}',
%% `{backlog, 1024}', `{nodelay, true}', plus `inet6' for an IPv6 `ip'.
%% Accepted sockets inherit them. Acceptors fetch the socket with
%% `socket/1' and call `gen_tcp:accept/2' on it themselves.
%%
%% A restarted listener binds the port its predecessor had, also when
%% `port' is 0: the first bound port of each `{Ref, IP}' is remembered in
%% `persistent_term' (written once per new port), so clients reconnect to
%% the same address after any restart in the tree.
-module(hornbeam_listener).
-behaviour(gen_server).

-export([start_link/1, port/1, socket/1, address/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

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

%% Port 0: the port an earlier listener of the same ref and address got,
%% if it is free, else a new one (remembered for the next restart).
listen(Ref, IP, 0, Opts) ->
    Key = {?MODULE, Ref, IP},
    Earlier = persistent_term:get(Key, 0),
    Result = case Earlier of
                 0 -> gen_tcp:listen(0, Opts);
                 _ ->
                     case gen_tcp:listen(Earlier, Opts) of
                         {ok, _} = Ok -> Ok;
                         {error, _} -> gen_tcp:listen(0, Opts)
                     end
             end,
    _ = case Result of
            {ok, Sock} ->
                case inet:port(Sock) of
                    {ok, Earlier} -> ok;
                    {ok, New} -> persistent_term:put(Key, New);
                    _ -> ok
                end;
            _ -> ok
        end,
    Result;
listen(_Ref, _IP, Port, Opts) ->
    gen_tcp:listen(Port, Opts).

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
