%% @doc Top supervisor. Children, in start order:
%%   pg scope `hornbeam'          — cluster-wide groups (pub/sub, relays)
%%   hornbeam_pubsub              — this node's broadcast relay
%%   hornbeam_channel_sup         — every channel process on this node
%%   hornbeam_cluster             — keeps the node joined to its peers (join, join_dns)
%%   endpoint (dynamic)           — listener + Python pool, added by hornbeam:start/2
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
        #{id => hornbeam_pubsub, start => {hornbeam_pubsub, start_link, []}},
        #{id => hornbeam_channel_sup, start => {hornbeam_channel_sup, start_link, []},
          type => supervisor, shutdown => infinity},
        #{id => hornbeam_cluster, start => {hornbeam_cluster, start_link, []}}
    ],
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 10}, Children}}.
