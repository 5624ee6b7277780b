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
%% peer shard that says `goodbye' from its terminate/2 (the node stops for
%% good: hornbeam:stop/0, application stop, SIGTERM) is permdowned at once.
%% A peer shard that exits while its node stays connected is left to the
%% heartbeats: it is restarted and adopts the same replica (below).
%% Every change becomes a `presence_diff' broadcast to this node's
%% subscribers of the topic, computed here from our own merges, so each
%% client sees each change once.
%%
%% A restarted shard adopts the state of the one before it: the CRDT
%% resource and the owners (pid => owner id) live on in the ETS table
%% `hornbeam_presence_keep' (see keep_table/0), so the new shard monitors
%% the same owners and its replica (name, incarnation) is unchanged for the
%% peers. Messages from other nodes are checked before they reach the NIF;
%% a malformed one is logged and dropped.
%%
%% Limits, checked before a local write (each in its own function below):
%% a meta's JSON is at most `max_presence_meta_size' bytes
%% (`{error, meta_too_large}'); one owner tracks at most
%% `max_presences_per_socket' presences on this shard's topics
%% (`{error, too_many_presences_per_socket}'); one topic holds at most
%% `max_presences_per_topic' presences tracked on this node
%% (`{error, too_many_presences_per_topic}'). The shard counts its own
%% tracks for that; presences of other nodes are bounded by their limits.
-module(hornbeam_presence_shard).
-behaviour(gen_server).

-export([start_link/2, whereis_shard/1, state/1, keep_table/0, name/1, set_retiring/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-record(state, {
    ix :: non_neg_integer(),
    crdt :: reference(),
    incarnation :: non_neg_integer(),
    config :: map(),
    owners = #{} :: #{pid() => {non_neg_integer(), reference()}},
    %% presences tracked here: per owner and topic, and per topic
    owner_counts = #{} :: #{pid() => #{binary() => pos_integer()}},
    topic_counts = #{} :: #{binary() => pos_integer()},
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

%% @doc The registered name of shard Ix.
-spec name(non_neg_integer()) -> atom().
name(Ix) -> list_to_atom("hornbeam_presence_shard_" ++ integer_to_list(Ix)).

-define(KEEP, hornbeam_presence_keep).

%% @doc Create the table that carries shard state across shard restarts,
%% owned by the calling process, unless it exists. `hornbeam_presence_sup'
%% calls it in the process that starts it (the endpoint supervisor), so the
%% table outlives the presence supervisor and its shards, and goes with the
%% endpoint. Rows: `{{crdt, Ix}, Crdt}', `{{incarnation, Ix}, I}',
%% `{{next_owner, Ix}, N}', `{{owner, Ix, Pid}, Id}' and the limit counts
%% `{{counts, Ix}, {PerOwner, PerTopic}}'.
-spec keep_table() -> ok.
keep_table() ->
    case ets:whereis(?KEEP) of
        undefined -> _ = ets:new(?KEEP, [named_table, public, set]), ok;
        _ -> ok
    end.

-spec init({non_neg_integer(), map()}) -> {ok, #state{}}.
init({Ix, Config}) ->
    process_flag(trap_exit, true),
    ok = keep_table(),
    {Crdt, Incarnation, Owners, Next} = adopt_or_new(Ix),
    persistent_term:put({?MODULE, Ix}, Crdt),
    ok = pg:join(hornbeam_pubsub:scope(), {presence, Ix}, self()),
    logger:set_process_metadata(#{presence_shard => Ix}),
    {OwnerCounts, TopicCounts} = case ets:lookup(?KEEP, {counts, Ix}) of
                                     [{_, Counts}] -> Counts;
                                     [] -> {#{}, #{}}
                                 end,
    State = #state{ix = Ix, crdt = Crdt, incarnation = Incarnation, config = Config,
                   owners = Owners, next_owner = Next,
                   owner_counts = OwnerCounts, topic_counts = TopicCounts},
    gossip(State),
    schedule(tick, Config),
    {ok, State}.

%% The state a shard of this index left behind (it was killed or crashed),
%% or a new replica. Owners are monitored again: one that died meanwhile
%% gives an immediate 'DOWN' and its presences leave.
adopt_or_new(Ix) ->
    case ets:lookup(?KEEP, {crdt, Ix}) of
        [{_, Crdt}] ->
            Owners = maps:from_list(
                       [{Pid, {Id, erlang:monitor(process, Pid)}}
                        || [Pid, Id] <- ets:match(?KEEP, {{owner, Ix, '$1'}, '$2'})]),
            [{_, Next}] = ets:lookup(?KEEP, {next_owner, Ix}),
            [{_, Incarnation}] = ets:lookup(?KEEP, {incarnation, Ix}),
            logger:notice("presence shard ~b restarted: adopted its state (~b owners)",
                          [Ix, map_size(Owners)]),
            {Crdt, Incarnation, Owners, Next};
        [] ->
            %% A fresh incarnation per new replica: peers see a restarted
            %% node as a new replica and drop the old one's presences at once.
            Incarnation = erlang:system_time(microsecond),
            Crdt = hornbeam_nif:presence_new(atom_to_binary(node()), Incarnation),
            true = ets:insert(?KEEP, [{{crdt, Ix}, Crdt}, {{next_owner, Ix}, 1},
                                      {{incarnation, Ix}, Incarnation}]),
            {Crdt, Incarnation, #{}, 1}
    end.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call({track, Owner, Topic, Key, Meta}, _From, State)
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    case track_allowed(Owner, Topic, State) of
        ok ->
            case write(Owner, State, fun(Crdt, Id, Json) ->
                                            hornbeam_nif:presence_track(Crdt, Topic, Id, Key, Json)
                                    end, Meta) of
                {reply, ok, State1} -> {reply, ok, count_track(Owner, Topic, 1, State1)};
                Refused -> Refused
            end;
        {error, _} = Error ->
            {reply, Error, State}
    end;
handle_call({update, Owner, Topic, Key, Meta}, _From, State)
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    write(Owner, State, fun(Crdt, Id, Json) -> hornbeam_nif:presence_update(Crdt, Topic, Id, Key, Json) end, Meta);
handle_call({untrack, Owner, Topic, Key}, _From, State = #state{owners = Owners, crdt = Crdt})
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    case Owners of
        #{Owner := {Id, _}} ->
            case guarded(fun() -> hornbeam_nif:presence_untrack(Crdt, Topic, Id, Key) end) of
                {ok, Diffs} -> {reply, ok, publish(Diffs, count_track(Owner, Topic, -1, State))};
                {error, Why} -> {reply, {error, Why}, State}
            end;
        _ ->
            {reply, {error, not_tracked}, State}
    end;
handle_call(Request, _From, State) ->
    logger:warning("presence shard: bad request ~0P", [Request, 20]),
    {reply, {error, bad_request}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info({'DOWN', Mon, process, Pid, Reason}, State = #state{owners = Owners, peers = Peers, crdt = Crdt}) ->
    case {Owners, Peers} of
        {#{Pid := {Id, Mon}}, _} ->
            Diffs = hornbeam_nif:presence_untrack_owner(Crdt, Id),
            true = ets:delete(?KEEP, {owner, State#state.ix, Pid}),
            State1 = forget_counts(Pid, State#state{owners = maps:remove(Pid, Owners)}),
            {noreply, publish(Diffs, State1)};
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
handle_info({'$hb_presence', heartbeat, From, Clock, Delta}, State = #state{crdt = Crdt})
  when is_pid(From), is_binary(Clock), (is_binary(Delta) orelse Delta =:= none) ->
    Now = now_ms(),
    case guarded(fun() -> hornbeam_nif:presence_heartbeat(Crdt, Clock, Now) end) of
        {ok, UpDiffs, _, Replica} ->
            State1 = publish(UpDiffs, watch_peer(From, Replica, State)),
            State2 = case Delta of
                         none -> State1;
                         _ -> merged(guarded(fun() -> hornbeam_nif:presence_merge_delta(Crdt, Delta, Now) end),
                                     From, State1)
                     end,
            {noreply, maybe_ask_transfer(From, Clock, State2)};
        {error, Why} ->
            logger:warning("ignoring a presence heartbeat from ~p: ~p", [From, Why]),
            {noreply, State}
    end;
handle_info({'$hb_presence', transfer_req, From, Clock}, State = #state{crdt = Crdt})
  when is_pid(From), is_binary(Clock) ->
    _ = case guarded(fun() -> hornbeam_nif:presence_state_for(Crdt, Clock) end) of
            {ok, Bin} -> From ! {'$hb_presence', transfer, self(), Bin};
            {error, Why} -> logger:warning("presence transfer request from ~p refused: ~p", [From, Why])
        end,
    {noreply, State};
handle_info({'$hb_presence', transfer, From, Bin}, State = #state{crdt = Crdt, asked = Asked})
  when is_pid(From), is_binary(Bin) ->
    State1 = merged(guarded(fun() -> hornbeam_nif:presence_merge_state(Crdt, Bin, now_ms()) end), From, State),
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
    logger:warning("unexpected or malformed message dropped: ~0P", [Msg, 20]),
    {noreply, State}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, #state{ix = Ix, incarnation = Incarnation}) ->
    %% When the endpoint stops for good (hornbeam:stop/0, application stop),
    %% tell the peers that this incarnation is over, so that its presences
    %% leave on their nodes now rather than after down_period. A shard that
    %% is only restarted keeps its replica (adopt_or_new/1): no goodbye then.
    %% (Best effort: the pg scope may be the thing that went down.)
    _ = retiring() andalso begin
            Goodbye = {'$hb_presence', goodbye, self(), {atom_to_binary(node()), Incarnation}},
            catch [Peer ! Goodbye || Peer <- peer_shards(Ix)]
        end,
    _ = persistent_term:erase({?MODULE, Ix}),
    ok.

%% @doc Mark (true) or unmark (false) this node's presence as stopping for
%% good: shards that terminate meanwhile say goodbye to their peers.
-spec set_retiring(boolean()) -> ok.
set_retiring(true) -> persistent_term:put({?MODULE, retiring}, true);
set_retiring(false) -> _ = persistent_term:erase({?MODULE, retiring}), ok.

retiring() -> persistent_term:get({?MODULE, retiring}, false).

%% --- internals ------------------------------------------------------------------

write(Owner, State = #state{crdt = Crdt, config = Config}, Op, Meta) ->
    case meta_within_limit(meta_json(Meta), Config) of
        {ok, Json} ->
            {Id, State1} = owner_id(Owner, State),
            case guarded(fun() -> Op(Crdt, Id, Json) end) of
                {ok, Diffs} -> {reply, ok, publish(Diffs, State1)};
                {error, Why} -> {reply, {error, Why}, State1}
            end;
        {error, _} = Error ->
            {reply, Error, State}
    end.

%% hornbeam_presence sends JSON text; a map still works for older callers.
meta_json({json, Json}) when is_binary(Json) -> {ok, Json};
meta_json(Meta) when is_map(Meta) ->
    case hornbeam_nif:json_encode(Meta) of
        {ok, Json} -> {ok, iolist_to_binary(Json)};
        {error, _} -> {error, meta_not_json}
    end;
meta_json(_) -> {error, meta_must_be_a_map}.

%% A NIF call on data that may come from another node (or a caller that
%% skipped hornbeam_presence): an exception is an error answer, never a
%% crash of the shard.
guarded(Fun) ->
    try Fun()
    catch error:Reason -> {error, {nif_error, Reason}}
    end.

%% --- limits ----------------------------------------------------------------

meta_within_limit({ok, Json}, #{max_presence_meta_size := Max}) when byte_size(Json) > Max ->
    {error, meta_too_large};
meta_within_limit(Result, _Config) ->
    Result.

track_allowed(Owner, Topic, #state{config = Config, owner_counts = Owners, topic_counts = Topics}) ->
    #{max_presences_per_socket := MaxOwner, max_presences_per_topic := MaxTopic} = Config,
    OwnerCount = lists:sum(maps:values(maps:get(Owner, Owners, #{}))),
    TopicCount = maps:get(Topic, Topics, 0),
    if
        OwnerCount >= MaxOwner -> {error, too_many_presences_per_socket};
        TopicCount >= MaxTopic -> {error, too_many_presences_per_topic};
        true -> ok
    end.

%% Delta (+1 or -1) to the counts of Owner on Topic.
count_track(Owner, Topic, Delta, State = #state{owner_counts = Owners, topic_counts = Topics}) ->
    OfOwner = bump(Topic, Delta, maps:get(Owner, Owners, #{})),
    Owners1 = case map_size(OfOwner) of
                  0 -> maps:remove(Owner, Owners);
                  _ -> Owners#{Owner => OfOwner}
              end,
    keep_counts(State#state{owner_counts = Owners1, topic_counts = bump(Topic, Delta, Topics)}).

%% The owner exited: all its presences left.
forget_counts(Owner, State = #state{owner_counts = Owners, topic_counts = Topics}) ->
    Topics1 = maps:fold(fun(Topic, N, Acc) -> bump(Topic, -N, Acc) end,
                        Topics, maps:get(Owner, Owners, #{})),
    keep_counts(State#state{owner_counts = maps:remove(Owner, Owners), topic_counts = Topics1}).

%% The counts outlive a shard restart with the rest of its state (see adopt_or_new/1).
keep_counts(State = #state{ix = Ix, owner_counts = Owners, topic_counts = Topics}) ->
    true = ets:insert(?KEEP, {{counts, Ix}, {Owners, Topics}}),
    State.

bump(Key, Delta, Map) ->
    case maps:get(Key, Map, 0) + Delta of
        N when N > 0 -> Map#{Key => N};
        _ -> maps:remove(Key, Map)
    end.

owner_id(Pid, State = #state{ix = Ix, owners = Owners, next_owner = Next}) ->
    case Owners of
        #{Pid := {Id, _}} -> {Id, State};
        _ ->
            Mon = erlang:monitor(process, Pid),
            true = ets:insert(?KEEP, [{{owner, Ix, Pid}, Next}, {{next_owner, Ix}, Next + 1}]),
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
%% so down at once, restored if it does) or over (it said goodbye:
%% permdown). A peer shard that exits while its node stays connected is
%% being restarted by its supervisor and adopts the same replica, so it is
%% left to the heartbeats (down after down_period if it never returns).
peer_gone({Node, Incarnation}, noconnection, State = #state{crdt = Crdt}) ->
    logger:notice("presence replica ~ts (incarnation ~b) is down: its node disconnected",
                  [Node, Incarnation]),
    publish(hornbeam_nif:presence_replica_down(Crdt, Node, Incarnation), State);
peer_gone({Node, Incarnation}, goodbye, State = #state{crdt = Crdt}) ->
    logger:info("presence replica ~ts (incarnation ~b) is gone: it said goodbye", [Node, Incarnation]),
    publish(hornbeam_nif:presence_permdown(Crdt, Node, Incarnation), State);
peer_gone({Node, Incarnation}, Why, State) ->
    logger:info("presence shard of replica ~ts (incarnation ~b) exited (~0p); waiting for its restart",
                [Node, Incarnation, Why]),
    State.

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
