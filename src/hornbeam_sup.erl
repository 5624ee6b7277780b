%% @doc Top supervisor, rest_for_one. Children, in start order:
%%   pg scope `hornbeam'      — cluster-wide groups: subscriptions, relays, presence shards
%%   hornbeam_node_sup        — this node's broadcast relay, channel supervisor and cluster keeper (hornbeam_cluster)
%%   endpoint                 — presence, Python pool, listener; added by hornbeam:start/2
%%
%% Why rest_for_one: every child after the pg scope lives in its groups (a
%% socket's subscriptions, the relay's membership of `relays', a presence
%% shard's `{presence, Ix}'). A scope that dies takes all its groups with it,
%% so everything after it restarts: the sockets are closed (1001) and their
%% clients reconnect and rejoin, which rebuilds every subscription. The
%% endpoint child spec carries its options (`hornbeam_endpoint_sup:start_link/1'),
%% so a restart rebuilds it whole. See src/channels/README.md ("Supervision").
-module(hornbeam_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Children = [
        #{id => pg, start => {pg, start_link, [hornbeam_pubsub:scope()]}},
        #{id => hornbeam_node_sup, start => {hornbeam_node_sup, start_link, []},
          type => supervisor, shutdown => infinity}
    ],
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 10}, Children}}.
