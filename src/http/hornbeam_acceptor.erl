%% @doc One acceptor: a loop that takes a connection slot, blocks in
%% `gen_tcp:accept/2', and hands the new socket to a fresh
%% `hornbeam_http_conn' process (`gen_tcp:controlling_process/2').
%%
%% When `max_connections' slots are taken, `hornbeam_conn_limiter:acquire/1'
%% does not return: the acceptor pauses and new clients wait in the kernel's
%% backlog until a connection ends.
-module(hornbeam_acceptor).

-export([start_link/3]).
-export([init/3]).

-spec start_link(hornbeam_http_opts:config(), gen_tcp:socket(), pos_integer()) -> {ok, pid()}.
start_link(Config, LSock, Id) ->
    {ok, proc_lib:spawn_link(?MODULE, init, [Config, LSock, Id])}.

-spec init(hornbeam_http_opts:config(), gen_tcp:socket(), pos_integer()) -> no_return() | ok.
init(#{ref := Ref}, LSock, Id) ->
    logger:set_process_metadata(#{ref => Ref, acceptor => Id}),
    loop(Ref, LSock).

%% --- internals ----------------------------------------------------------------

loop(Ref, LSock) ->
    Slot = hornbeam_conn_limiter:acquire(Ref),
    accept(Ref, LSock, Slot).

accept(Ref, LSock, Slot) ->
    case gen_tcp:accept(LSock, infinity) of
        {ok, Sock} ->
            hand_off(Ref, Sock, Slot),
            loop(Ref, LSock);
        {error, closed} ->
            %% The listener closed the socket: it is stopping or restarting,
            %% and rest_for_one restarts this acceptor's supervisor after it.
            hornbeam_conn_limiter:release(Ref, Slot),
            ok;
        {error, Reason} when Reason =:= emfile; Reason =:= enfile; Reason =:= system_limit ->
            logger:error("accept failed: ~s; retrying in 100 ms", [inet:format_error(Reason)]),
            receive after 100 -> ok end,
            accept(Ref, LSock, Slot);
        {error, Reason} when Reason =:= econnaborted; Reason =:= eproto ->
            %% The client gave up between SYN and accept: nothing to do.
            accept(Ref, LSock, Slot);
        {error, Reason} ->
            hornbeam_conn_limiter:release(Ref, Slot),
            exit({accept_failed, Reason})
    end.

hand_off(Ref, Sock, Slot) ->
    case hornbeam_conn_sup:start_connection(Ref, Sock) of
        {ok, Pid} ->
            %% From here the slot belongs to Pid and is freed when Pid ends.
            hornbeam_conn_limiter:handoff(Ref, Slot, Pid),
            case gen_tcp:controlling_process(Sock, Pid) of
                ok ->
                    hornbeam_http_conn:go(Pid, Sock);
                {error, Reason} ->
                    logger:debug("socket lost before hand-off: ~0p", [Reason]),
                    _ = gen_tcp:close(Sock),
                    exit(Pid, kill),
                    ok
            end;
        {error, Reason} ->
            logger:error("cannot start a connection process: ~0p", [Reason]),
            _ = gen_tcp:close(Sock),
            hornbeam_conn_limiter:release(Ref, Slot)
    end.
