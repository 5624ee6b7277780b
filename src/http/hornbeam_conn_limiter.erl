%% @doc The `max_connections' slots of one listener.
%%
%% An acceptor takes a slot (`acquire/1') *before* it blocks in accept, and
%% hands it to the connection process it starts (`handoff/3'), or gives it
%% back if accept failed (`release/2'). When every slot is taken, `acquire/1'
%% does not answer until one is freed: that is how acceptors pause.
%%
%% Every slot is owned by a monitored process, first the acceptor, then the
%% connection. A slot is freed only by a `DOWN' (or an explicit release), so
%% the count stays exact however its owner ends: normal exit, crash,
%% `exit(Pid, kill)', or a WebSocket that lives for days in the same process.
%% The supervisor is never asked to count its children.
-module(hornbeam_conn_limiter).
-behaviour(gen_server).

-export([start_link/1, acquire/1, handoff/3, release/2, count/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-type slot() :: reference().
-export_type([slot/0]).

-record(state, {
    ref :: hornbeam_http_opts:ref(),
    max :: pos_integer() | infinity,
    count = 0 :: non_neg_integer(),            %% slots taken (connections + holding acceptors)
    conns = 0 :: non_neg_integer(),            %% of which live connections
    %% monitor ref => who holds (or waits for) what
    owners = #{} :: #{reference() => holding | conn | {waiting, gen_server:from()}},
    waiting = queue:new() :: queue:queue(reference())
}).

-spec start_link(hornbeam_http_opts:config()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Config = #{ref := Ref}) ->
    gen_server:start_link({local, hornbeam_http_opts:name(Ref, limiter)}, ?MODULE, Config, []).

%% @doc Take a slot for the calling acceptor; blocks while all slots are taken.
-spec acquire(hornbeam_http_opts:ref()) -> slot().
acquire(Ref) ->
    gen_server:call(hornbeam_http_opts:name(Ref, limiter), acquire, infinity).

%% @doc The slot now belongs to the connection process `Pid'.
-spec handoff(hornbeam_http_opts:ref(), slot(), pid()) -> ok.
handoff(Ref, Slot, Pid) ->
    gen_server:cast(hornbeam_http_opts:name(Ref, limiter), {handoff, Slot, Pid}).

%% @doc Give back a slot that was not handed to a connection.
-spec release(hornbeam_http_opts:ref(), slot()) -> ok.
release(Ref, Slot) ->
    gen_server:cast(hornbeam_http_opts:name(Ref, limiter), {release, Slot}).

%% @doc Live connections (slots owned by connection processes; the acceptors
%% blocked in accept hold the others).
-spec count(hornbeam_http_opts:ref()) -> non_neg_integer().
count(Ref) ->
    gen_server:call(hornbeam_http_opts:name(Ref, limiter), count).

%% --- gen_server -----------------------------------------------------------------

-spec init(hornbeam_http_opts:config()) -> {ok, #state{}}.
init(#{ref := Ref, max_connections := Max}) ->
    logger:set_process_metadata(#{ref => Ref}),
    {ok, #state{ref = Ref, max = Max}}.

-spec handle_call(term(), gen_server:from(), #state{}) ->
    {reply, term(), #state{}} | {noreply, #state{}}.
handle_call(acquire, From = {Pid, _}, State = #state{count = Count, max = Max, owners = Owners}) ->
    Mon = erlang:monitor(process, Pid),
    case Count < Max of
        true ->
            {reply, Mon, State#state{count = Count + 1, owners = Owners#{Mon => holding}}};
        false ->
            logger:debug("max_connections (~p) reached; acceptor ~p paused", [Max, Pid]),
            {noreply, State#state{owners = Owners#{Mon => {waiting, From}},
                                  waiting = queue:in(Mon, State#state.waiting)}}
    end;
handle_call(count, _From, State = #state{conns = Conns}) ->
    {reply, Conns, State};
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({handoff, Slot, Pid}, State = #state{owners = Owners}) ->
    case Owners of
        #{Slot := holding} ->
            true = erlang:demonitor(Slot, [flush]),
            %% A connection that already died gives an immediate 'DOWN' (noproc).
            Mon = erlang:monitor(process, Pid),
            {noreply, State#state{owners = maps:put(Mon, conn, maps:remove(Slot, Owners)),
                                  conns = State#state.conns + 1}};
        _ ->
            {noreply, State}
    end;
handle_cast({release, Slot}, State = #state{owners = Owners}) ->
    case Owners of
        #{Slot := holding} ->
            true = erlang:demonitor(Slot, [flush]),
            {noreply, free(State#state{owners = maps:remove(Slot, Owners)})};
        _ ->
            {noreply, State}
    end;
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info({'DOWN', Mon, process, _Pid, _Reason}, State = #state{owners = Owners}) ->
    case maps:take(Mon, Owners) of
        {{waiting, _From}, Owners1} ->
            %% A paused acceptor went away; its queue entry is skipped in grant/1.
            {noreply, State#state{owners = Owners1}};
        {conn, Owners1} ->
            {noreply, free(State#state{owners = Owners1, conns = State#state.conns - 1})};
        {holding, Owners1} ->
            {noreply, free(State#state{owners = Owners1})};
        error ->
            {noreply, State}
    end;
handle_info(_Info, State) ->
    {noreply, State}.

%% --- internals ----------------------------------------------------------------

%% One slot was freed: give it to the first paused acceptor still alive.
free(State = #state{count = Count}) ->
    grant(State#state{count = Count - 1}).

grant(State = #state{count = Count, max = Max, waiting = Waiting, owners = Owners})
  when Count < Max ->
    case queue:out(Waiting) of
        {empty, _} ->
            State;
        {{value, Mon}, Waiting1} ->
            case Owners of
                #{Mon := {waiting, From}} ->
                    gen_server:reply(From, Mon),
                    State#state{count = Count + 1, owners = Owners#{Mon := holding},
                                waiting = Waiting1};
                _ ->
                    grant(State#state{waiting = Waiting1})
            end
    end;
grant(State) ->
    State.
