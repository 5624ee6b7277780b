%% @doc The presence tracker of this node: `pool_size' shard processes, each
%% a replica of its slice of topics, gossiping with the same shard on every
%% other node. Started per endpoint by `hornbeam:start/2'.
%%
%% one_for_one: shards share nothing; a restarted shard adopts the state of
%% the one before it, so no other shard (and no channel) is disturbed.
-module(hornbeam_presence_sup).
-behaviour(supervisor).

-export([start_link/1, pool_size/0, defaults/0, init/1]).

-define(POOL_KEY, {?MODULE, pool_size}).

%% @doc Presence options and their defaults (README "Presence").
-spec defaults() -> map().
defaults() ->
    #{pool_size => 1,                    %% shards per node (same on every node)
      broadcast_period => 1500,          %% ms between gossip rounds (deltas, heartbeats)
      down_period => 30000,              %% ms without heartbeat: the replica's presences leave
      permdown_period => 1200000,        %% ms without heartbeat: the replica is forgotten
      presence_diff_interval => 100,     %% ms: at most one diff per topic per interval (0: one per change)
      max_presence_meta_size => 8192,    %% bytes of a meta's JSON → {error, meta_too_large}
      max_presences_per_socket => 100,   %% presences one owner (channel) tracks → {error, too_many_presences_per_socket}
      max_presences_per_topic => 100000}. %% this node's presences on one topic → {error, too_many_presences_per_topic}

%% The shards' keep table (hornbeam_presence_shard:keep_table/0) is created
%% here, in the calling process (the endpoint supervisor), so that it
%% outlives this supervisor: a restarted shard, or a restarted presence
%% supervisor, adopts the state its predecessor left.
-spec start_link(map()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Opts) ->
    Config = maps:merge(defaults(), maps:with(maps:keys(defaults()), Opts)),
    ok = hornbeam_presence_shard:keep_table(),
    %% After a kill of the supervisor above, the old shards may still be stopping.
    ok = hornbeam_names:await_free([hornbeam_presence_shard:name(Ix)
                                    || Ix <- lists:seq(0, maps:get(pool_size, Config) - 1)], 10000),
    supervisor:start_link(?MODULE, Config).

-spec pool_size() -> pos_integer().
pool_size() ->
    persistent_term:get(?POOL_KEY, 1).

-spec init(map()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Config = #{pool_size := N}) ->
    persistent_term:put(?POOL_KEY, N),
    Shards = [#{id => {shard, Ix}, start => {hornbeam_presence_shard, start_link, [Ix, Config]}}
              || Ix <- lists:seq(0, N - 1)],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Shards}}.
