%% @doc This node's broadcast relay and channel supervisor, one_for_one:
%% neither depends on the other, and nothing else depends on either being
%% the same process as before.
%%
%% <ul>
%% <li>`hornbeam_pubsub' (the relay) only forwards broadcasts from other
%%     nodes; a new one rejoins the `relays' group and the others find it
%%     there. Broadcasts sent to the old one while it was down are lost, as
%%     on a network partition.</li>
%% <li>`hornbeam_channel_sup': its channel processes die with it; every
%%     socket monitors its channels and tells its client `phx_error', and
%%     the client rejoins under the new supervisor.</li>
%% </ul>
%% Under `rest_for_one' in `hornbeam_sup' they would restart the endpoint
%% (and drop every connection) on each of these deaths for nothing.
-module(hornbeam_node_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    %% After a kill of this supervisor, wait for its old children to go.
    ok = hornbeam_names:await_free([hornbeam_metrics_store, hornbeam_pubsub, hornbeam_channel_sup,
                                     hornbeam_cluster], 10000),
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Children = [
        %% the metrics' and log limiter's tables (src/metrics); its restart
        %% only resets label counts
        #{id => hornbeam_metrics_store, start => {hornbeam_metrics_store, start_link, []}},
        #{id => hornbeam_pubsub, start => {hornbeam_pubsub, start_link, []}},
        #{id => hornbeam_channel_sup, start => {hornbeam_channel_sup, start_link, []},
          type => supervisor, shutdown => infinity},
        %% keeps the node joined to its peers (join, join_dns); one_for_one,
        %% so its restart touches no connection
        #{id => hornbeam_cluster, start => {hornbeam_cluster, start_link, []}}
    ],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Children}}.
