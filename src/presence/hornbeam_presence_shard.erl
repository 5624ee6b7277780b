%% @doc One presence tracker shard: the only process that writes its slice
%% of the CRDT (a NIF resource; readers use it directly). It owns the
%% timers and messages; the CRDT itself is pure data in hornbeam_core.
%%
%% Every `broadcast_period' it sends `{'$hb_presence', heartbeat, Self,
%% Clock, Delta | none}' to the same shard on every other node (pg group
%% `{presence, Ix}'), then expires replicas silent for `down_period' (their
%% presences leave) or `permdown_period' (forgotten). A peer whose clock it
%% does not dominate is asked for a transfer of the state it misses.
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
-module(hornbeam_presence_shard).
-behaviour(gen_server).

-export([start_link/2, whereis_shard/1, state/1, keep_table/0, name/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-record(state, {
    ix :: non_neg_integer(),
    crdt :: reference(),
    config :: map(),
    owners = #{} :: #{pid() => {non_neg_integer(), reference()}},
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
%% endpoint. Rows: `{{crdt, Ix}, Crdt}', `{{next_owner, Ix}, N}',
%% `{{owner, Ix, Pid}, Id}'.
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
    {Crdt, Owners, Next} = adopt_or_new(Ix),
    persistent_term:put({?MODULE, Ix}, Crdt),
    ok = pg:join(hornbeam_pubsub:scope(), {presence, Ix}, self()),
    logger:set_process_metadata(#{presence_shard => Ix}),
    State = #state{ix = Ix, crdt = Crdt, config = Config, owners = Owners, next_owner = Next},
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
            logger:notice("presence shard ~b restarted: adopted its state (~b owners)",
                          [Ix, map_size(Owners)]),
            {Crdt, Owners, Next};
        [] ->
            %% A fresh incarnation per new replica: peers see a restarted
            %% node as a new replica and drop the old one's presences at once.
            Incarnation = erlang:system_time(microsecond),
            Crdt = hornbeam_nif:presence_new(atom_to_binary(node()), Incarnation),
            true = ets:insert(?KEEP, [{{crdt, Ix}, Crdt}, {{next_owner, Ix}, 1}]),
            {Crdt, #{}, 1}
    end.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call({track, Owner, Topic, Key, Meta}, _From, State)
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    write(Owner, State, fun(Crdt, Id, Json) -> hornbeam_nif:presence_track(Crdt, Topic, Id, Key, Json) end, Meta);
handle_call({update, Owner, Topic, Key, Meta}, _From, State)
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    write(Owner, State, fun(Crdt, Id, Json) -> hornbeam_nif:presence_update(Crdt, Topic, Id, Key, Json) end, Meta);
handle_call({untrack, Owner, Topic, Key}, _From, State = #state{owners = Owners, crdt = Crdt})
  when is_pid(Owner), is_binary(Topic), is_binary(Key) ->
    case Owners of
        #{Owner := {Id, _}} ->
            case guarded(fun() -> hornbeam_nif:presence_untrack(Crdt, Topic, Id, Key) end) of
                {ok, Diffs} -> {reply, ok, publish(Diffs, State)};
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
handle_info({'DOWN', Mon, process, Pid, _}, State = #state{owners = Owners, crdt = Crdt}) ->
    case Owners of
        #{Pid := {Id, Mon}} ->
            Diffs = hornbeam_nif:presence_untrack_owner(Crdt, Id),
            true = ets:delete(?KEEP, {owner, State#state.ix, Pid}),
            {noreply, publish(Diffs, State#state{owners = maps:remove(Pid, Owners)})};
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
        {ok, UpDiffs, _} ->
            State1 = publish(UpDiffs, State),
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
terminate(_Reason, #state{ix = Ix}) ->
    _ = persistent_term:erase({?MODULE, Ix}),
    ok.

%% --- internals ------------------------------------------------------------------

write(Owner, State = #state{crdt = Crdt}, Op, Meta) ->
    case meta_json(Meta) of
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

owner_id(Pid, State = #state{ix = Ix, owners = Owners, next_owner = Next}) ->
    case Owners of
        #{Pid := {Id, _}} -> {Id, State};
        _ ->
            Mon = erlang:monitor(process, Pid),
            true = ets:insert(?KEEP, [{{owner, Ix, Pid}, Next}, {{next_owner, Ix}, Next + 1}]),
            {Next, State#state{owners = Owners#{Pid => {Next, Mon}}, next_owner = Next + 1}}
    end.

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
    Self = self(),
    _ = [Peer ! Msg || Peer <- pg:get_members(hornbeam_pubsub:scope(), {presence, Ix}), Peer =/= Self],
    ok.

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
