%% @doc One presence tracker shard: the only process that writes its slice
%% of the CRDT (a NIF resource; readers use it directly). It owns the
%% timers and messages; the CRDT itself is pure data in hornbeam_core.
%%
%% Every `broadcast_period' it sends `{'$hb_presence', heartbeat, Self,
%% Clock, Delta | none}' to the same shard on every other node (pg group
%% `{presence, Ix}'), then expires replicas silent for `down_period' (their
%% presences leave) or `permdown_period' (forgotten). A peer whose clock it
%% does not dominate is asked for a transfer of the state it misses.
%%
%% Faster than the heartbeat timeouts (beyond Phoenix.Tracker): the shard
%% monitors every peer shard it hears from. When distribution reports the
%% peer's node gone (`noconnection'), that replica is marked down at once
%% (its presences leave, kept for its return until `permdown_period'); a
%% peer shard that exits otherwise, or says `goodbye' from its terminate/2
%% (graceful stop: hornbeam:stop/0, application stop, SIGTERM), is
%% permdowned at once. Its next incarnation is a new replica anyway.
%% Every change becomes a `presence_diff' broadcast to this node's
%% subscribers of the topic, computed here from our own merges, so each
%% client sees each change once.
-module(hornbeam_presence_shard).
-behaviour(gen_server).

-export([start_link/2, whereis_shard/1, state/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-record(state, {
    ix :: non_neg_integer(),
    crdt :: reference(),
    incarnation :: non_neg_integer(),
    config :: map(),
    owners = #{} :: #{pid() => {non_neg_integer(), reference()}},
    %% peer shards heard from: their monitor and the replica they speak for
    peers = #{} :: #{pid() => {reference(), hornbeam_nif:replica()}},
    next_owner = 1 :: pos_integer(),
    %% peer shard pid => now_ms() of our last transfer request to it
    asked = #{} :: #{pid() => integer()},
    %% presence_diff_interval > 0: topics inside their throttle window, with
    %% the diffs waiting for its end (newest first)
    throttled = #{} :: #{binary() => [binary()]}
}).

-spec start_link(non_neg_integer(), map()) -> {ok, pid()} | {error, term()}.
start_link(Ix, Config) ->
    gen_server:start_link({local, name(Ix)}, ?MODULE, {Ix, Config}, []).

-spec whereis_shard(non_neg_integer()) -> pid() | undefined.
whereis_shard(Ix) -> whereis(name(Ix)).

%% @doc The CRDT resource of shard Ix, for reads (or undefined when not running).
-spec state(non_neg_integer()) -> reference() | undefined.
state(Ix) -> persistent_term:get({?MODULE, Ix}, undefined).

name(Ix) -> list_to_atom("hornbeam_presence_shard_" ++ integer_to_list(Ix)).

-spec init({non_neg_integer(), map()}) -> {ok, #state{}}.
init({Ix, Config}) ->
    process_flag(trap_exit, true),
    %% A fresh incarnation per start: peers see a restarted node as a new
    %% replica and drop the old one's presences at once.
    Incarnation = erlang:system_time(microsecond),
    Crdt = hornbeam_nif:presence_new(atom_to_binary(node()), Incarnation),
    persistent_term:put({?MODULE, Ix}, Crdt),
    ok = pg:join(hornbeam_pubsub:scope(), {presence, Ix}, self()),
    logger:set_process_metadata(#{presence_shard => Ix}),
    State = #state{ix = Ix, crdt = Crdt, incarnation = Incarnation, config = Config},
    gossip(State),
    schedule(tick, Config),
    {ok, State}.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call({track, Owner, Topic, Key, Meta}, _From, State) ->
    write(Owner, State, fun(Crdt, Id, Json) -> hornbeam_nif:presence_track(Crdt, Topic, Id, Key, Json) end, Meta);
handle_call({update, Owner, Topic, Key, Meta}, _From, State) ->
    write(Owner, State, fun(Crdt, Id, Json) -> hornbeam_nif:presence_update(Crdt, Topic, Id, Key, Json) end, Meta);
handle_call({untrack, Owner, Topic, Key}, _From, State = #state{owners = Owners, crdt = Crdt}) ->
    case Owners of
        #{Owner := {Id, _}} ->
            case hornbeam_nif:presence_untrack(Crdt, Topic, Id, Key) of
                {ok, Diffs} -> {reply, ok, publish(Diffs, State)};
                {error, Why} -> {reply, {error, Why}, State}
            end;
        _ ->
            {reply, {error, not_tracked}, State}
    end;
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info({'DOWN', Mon, process, Pid, Reason}, State = #state{owners = Owners, peers = Peers, crdt = Crdt}) ->
    case {Owners, Peers} of
        {#{Pid := {Id, Mon}}, _} ->
            Diffs = hornbeam_nif:presence_untrack_owner(Crdt, Id),
            {noreply, publish(Diffs, State#state{owners = maps:remove(Pid, Owners)})};
        {_, #{Pid := {Mon, Replica}}} ->
            {noreply, peer_gone(Replica, Reason, State#state{peers = maps:remove(Pid, Peers)})};
        _ ->
            {noreply, State}
    end;
handle_info(tick, State = #state{crdt = Crdt, config = Config}) ->
    gossip(State),
    #{down_period := Down, permdown_period := Permdown} = Config,
    {Diffs, Downed, Permdowned} = hornbeam_nif:presence_expire(Crdt, now_ms(), Down, Permdown),
    [logger:notice("presence replica ~ts (incarnation ~b) is down", [N, I]) || {N, I} <- Downed],
    [logger:notice("presence replica ~ts (incarnation ~b) is gone", [N, I]) || {N, I} <- Permdowned],
    schedule(tick, Config),
    {noreply, publish(Diffs, State)};
handle_info({'$hb_presence', heartbeat, From, Clock, Delta}, State = #state{crdt = Crdt}) ->
    Now = now_ms(),
    case hornbeam_nif:presence_heartbeat(Crdt, Clock, Now) of
        {ok, UpDiffs, _, Replica} ->
            State1 = publish(UpDiffs, watch_peer(From, Replica, State)),
            State2 = case Delta of
                         none -> State1;
                         _ -> merged(hornbeam_nif:presence_merge_delta(Crdt, Delta, Now), From, State1)
                     end,
            {noreply, maybe_ask_transfer(From, Clock, State2)};
        {error, Why} ->
            logger:warning("ignoring a presence heartbeat from ~p: ~p", [From, Why]),
            {noreply, State}
    end;
handle_info({'$hb_presence', transfer_req, From, Clock}, State = #state{crdt = Crdt}) ->
    _ = case hornbeam_nif:presence_state_for(Crdt, Clock) of
            {ok, Bin} -> From ! {'$hb_presence', transfer, self(), Bin};
            {error, Why} -> logger:warning("presence transfer request from ~p refused: ~p", [From, Why])
        end,
    {noreply, State};
handle_info({'$hb_presence', transfer, From, Bin}, State = #state{crdt = Crdt, asked = Asked}) ->
    State1 = merged(hornbeam_nif:presence_merge_state(Crdt, Bin, now_ms()), From, State),
    {noreply, State1#state{asked = maps:remove(From, Asked)}};
handle_info({'$hb_presence', goodbye, From, Replica = {Node, _}}, State = #state{peers = Peers})
  when is_pid(From), is_binary(Node) ->
    case atom_to_binary(node(From)) of
        Node ->
            State1 = case Peers of
                         #{From := {Mon, _}} ->
                             erlang:demonitor(Mon, [flush]),
                             State#state{peers = maps:remove(From, Peers)};
                         _ ->
                             State
                     end,
            {noreply, peer_gone(Replica, goodbye, State1)};
        _ ->
            logger:warning("ignoring a presence goodbye from ~p for replica ~0p", [From, Replica]),
            {noreply, State}
    end;
handle_info({window_end, Topic}, State = #state{throttled = Throttled, config = Config}) ->
    case Throttled of
        #{Topic := []} ->
            %% a quiet window: the next diff of Topic goes out at once again
            {noreply, State#state{throttled = maps:remove(Topic, Throttled)}};
        #{Topic := Diffs} ->
            send_diff(Topic, coalesce(lists:reverse(Diffs))),
            open_window(Topic, Config),
            {noreply, State#state{throttled = Throttled#{Topic := []}}};
        _ ->
            {noreply, State}
    end;
handle_info({'EXIT', _, _}, State) ->
    {noreply, State};
handle_info(Msg, State) ->
    logger:warning("unexpected message ~0p", [Msg]),
    {noreply, State}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, #state{ix = Ix, incarnation = Incarnation}) ->
    %% Tell the peers that this incarnation is over, so that its presences
    %% leave on their nodes now rather than after down_period.
    %% (Best effort: the pg scope may be the thing that went down.)
    Goodbye = {'$hb_presence', goodbye, self(), {atom_to_binary(node()), Incarnation}},
    _ = catch [Peer ! Goodbye || Peer <- peer_shards(Ix)],
    _ = persistent_term:erase({?MODULE, Ix}),
    ok.

%% --- internals ------------------------------------------------------------------

write(Owner, State = #state{crdt = Crdt}, Op, Meta) ->
    case meta_json(Meta) of
        {ok, Json} ->
            {Id, State1} = owner_id(Owner, State),
            case Op(Crdt, Id, Json) of
                {ok, Diffs} -> {reply, ok, publish(Diffs, State1)};
                {error, Why} -> {reply, {error, Why}, State1}
            end;
        {error, _} = Error ->
            {reply, Error, State}
    end.

meta_json({json, Json}) -> {ok, iolist_to_binary(Json)};
meta_json(Meta) when is_map(Meta) ->
    case hornbeam_nif:json_encode(Meta) of
        {ok, Json} -> {ok, Json};
        {error, _} -> {error, meta_not_json}
    end;
meta_json(_) -> {error, meta_must_be_a_map}.

owner_id(Pid, State = #state{owners = Owners, next_owner = Next}) ->
    case Owners of
        #{Pid := {Id, _}} -> {Id, State};
        _ ->
            Mon = erlang:monitor(process, Pid),
            {Next, State#state{owners = Owners#{Pid => {Next, Mon}}, next_owner = Next + 1}}
    end.

%% Monitor a peer shard from its first heartbeat on (again after a
%% reconnection: the monitor fired when the connection went).
watch_peer(From, Replica, State = #state{peers = Peers}) ->
    case Peers of
        #{From := _} -> State;
        _ -> State#state{peers = Peers#{From => {erlang:monitor(process, From), Replica}}}
    end.

%% A peer replica is unreachable (its node disconnected: it may come back,
%% so down) or over (its shard exited or said goodbye: permdown).
peer_gone({Node, Incarnation}, Why, State = #state{crdt = Crdt}) ->
    Diffs = case Why of
                noconnection ->
                    logger:notice("presence replica ~ts (incarnation ~b) is down: its node disconnected",
                                  [Node, Incarnation]),
                    hornbeam_nif:presence_replica_down(Crdt, Node, Incarnation);
                _ ->
                    logger:info("presence replica ~ts (incarnation ~b) is gone: ~0p",
                                [Node, Incarnation, Why]),
                    hornbeam_nif:presence_permdown(Crdt, Node, Incarnation)
            end,
    publish(Diffs, State).

merged({ok, Diffs}, _From, State) -> publish(Diffs, State);
merged({error, Why}, From, State) ->
    logger:warning("presence data from ~p could not be merged: ~p", [From, Why]),
    State.

%% Ask a peer for the state we miss, at most once per broadcast period.
maybe_ask_transfer(From, Clock, State = #state{crdt = Crdt, asked = Asked, config = Config}) ->
    case hornbeam_nif:presence_dominates(Crdt, Clock) of
        true -> State;
        false ->
            Now = now_ms(),
            Period = maps:get(broadcast_period, Config),
            case Asked of
                #{From := At} when Now - At < Period -> State;
                _ ->
                    From ! {'$hb_presence', transfer_req, self(), hornbeam_nif:presence_clock(Crdt)},
                    State#state{asked = Asked#{From => Now}}
            end
    end.

gossip(#state{ix = Ix, crdt = Crdt}) ->
    Delta = hornbeam_nif:presence_extract_delta(Crdt),
    Msg = {'$hb_presence', heartbeat, self(), hornbeam_nif:presence_clock(Crdt), Delta},
    _ = [Peer ! Msg || Peer <- peer_shards(Ix)],
    ok.

%% The same shard on every other node.
peer_shards(Ix) ->
    Self = self(),
    [Peer || Peer <- pg:get_members(hornbeam_pubsub:scope(), {presence, Ix}), Peer =/= Self].

publish([], State) -> State;
publish(Diffs, State = #state{config = #{presence_diff_interval := 0}}) ->
    [send_diff(Topic, Json) || {Topic, Json} <- Diffs],
    State;
publish(Diffs, State = #state{config = Config}) ->
    %% A throttle with a leading edge: a topic's first diff goes out at once
    %% and opens a window of presence_diff_interval; diffs inside the window
    %% go out merged when it ends. A lone change costs no latency, while a
    %% flood of N joins costs each member one diff per window instead of N
    %% (N joiners: N^2 frames otherwise).
    lists:foldl(fun({Topic, Json}, S = #state{throttled = T}) ->
                        case T of
                            #{Topic := Waiting} -> S#state{throttled = T#{Topic := [Json | Waiting]}};
                            _ ->
                                send_diff(Topic, Json),
                                open_window(Topic, Config),
                                S#state{throttled = T#{Topic => []}}
                        end
                end, State, Diffs).

open_window(Topic, #{presence_diff_interval := Interval}) ->
    erlang:send_after(Interval, self(), {window_end, Topic}).

send_diff(Topic, Json) ->
    _ = hornbeam_pubsub:local_broadcast(Topic, <<"presence_diff">>, {json, Json}),
    ok.

%% Diffs of one interval as one: joins and leaves concatenated per key.
%% Correct because metas are told apart by their unique phx_ref: a meta
%% that joined and left inside the interval is in both, and clients apply
%% joins before leaves.
coalesce([One]) -> One;
coalesce(Diffs) ->
    Merged = lists:foldl(
               fun(Json, {J0, L0}) ->
                       {ok, #{<<"joins">> := J, <<"leaves">> := L}} = hornbeam_nif:json_decode(Json, 128),
                       {merge_metas(J0, J), merge_metas(L0, L)}
               end, {#{}, #{}}, Diffs),
    {Joins, Leaves} = Merged,
    {ok, Out} = hornbeam_nif:json_encode(#{<<"joins">> => Joins, <<"leaves">> => Leaves}),
    Out.

merge_metas(Acc, New) ->
    maps:fold(fun(Key, #{<<"metas">> := Metas}, A) ->
                      maps:update_with(Key, fun(#{<<"metas">> := Old}) -> #{<<"metas">> => Old ++ Metas} end,
                                       #{<<"metas">> => Metas}, A)
              end, Acc, New).

schedule(tick, #{broadcast_period := Period}) ->
    erlang:send_after(Period, self(), tick).

%% Milliseconds since the VM started: monotonic and never negative (the
%% CRDT takes unsigned times).
now_ms() ->
    Start = erlang:convert_time_unit(erlang:system_info(start_time), native, millisecond),
    erlang:monotonic_time(millisecond) - Start.
