%% @doc Presence: who is on a topic, replicated across the cluster with a
%% delta-state CRDT (see src/presence/README.md).
%%
%% ```
%% ok = hornbeam_presence:track(ChannelPid, <<"room:lobby">>, <<"user:ana">>, #{<<"status">> => <<"online">>}),
%% #{<<"user:ana">> := #{<<"metas">> := [_]}} = hornbeam_presence:list(<<"room:lobby">>).
%% '''
%% A presence belongs to the process that tracked it (a channel process):
%% when that process exits, its presences leave. Topics are spread over
%% `pool_size' shards by hash; reads go straight to the shard's CRDT state
%% (a NIF resource), writes through the shard process.
-module(hornbeam_presence).

-export([track/4, update/4, untrack/3, list/1, get/2, list_json/1, get_json/2, shard/1]).

-type key() :: binary().
-type meta() :: #{binary() => term()} | {json, iodata()}.
-export_type([key/0, meta/0]).

%% @doc Track Key on Topic for the process Owner (usually a channel process).
%% Tracking the same (Owner, Topic, Key) twice is `{error, already_tracked}'.
-spec track(pid(), binary(), key(), meta()) -> ok | {error, term()}.
track(Owner, Topic, Key, Meta) ->
    write(Topic, {track, Owner, Topic, Key, Meta}).

%% @doc Replace the meta of a tracked presence (clients see it with
%% `phx_ref_prev' set to the old `phx_ref').
-spec update(pid(), binary(), key(), meta()) -> ok | {error, term()}.
update(Owner, Topic, Key, Meta) ->
    write(Topic, {update, Owner, Topic, Key, Meta}).

-spec untrack(pid(), binary(), key()) -> ok | {error, term()}.
untrack(Owner, Topic, Key) ->
    write(Topic, {untrack, Owner, Topic, Key}).

%% @doc Everyone on Topic, Phoenix's shape: `#{Key => #{<<"metas">> => [Meta]}}'.
-spec list(binary()) -> #{key() => #{binary() => [map()]}}.
list(Topic) ->
    {ok, Map} = hornbeam_nif:json_decode(list_json(Topic), 128),
    Map.

-spec get(binary(), key()) -> #{binary() => [map()]} | undefined.
get(Topic, Key) ->
    case get_json(Topic, Key) of
        null -> undefined;
        Json -> {ok, Map} = hornbeam_nif:json_decode(Json, 128), Map
    end.

%% @doc list/1 as JSON text (what `presence_state' carries).
-spec list_json(binary()) -> binary().
list_json(Topic) ->
    case hornbeam_presence_shard:state(shard(Topic)) of
        undefined -> <<"{}">>;
        State -> hornbeam_nif:presence_list(State, Topic)
    end.

-spec get_json(binary(), key()) -> binary() | null.
get_json(Topic, Key) ->
    case hornbeam_presence_shard:state(shard(Topic)) of
        undefined -> null;
        State -> hornbeam_nif:presence_get(State, Topic, Key)
    end.

%% @doc The shard index of Topic.
-spec shard(binary()) -> non_neg_integer().
shard(Topic) ->
    erlang:phash2(Topic, hornbeam_presence_sup:pool_size()).

write(Topic, Request) ->
    case hornbeam_presence_shard:whereis_shard(shard(Topic)) of
        undefined -> {error, presence_not_started};
        Pid -> gen_server:call(Pid, Request)
    end.
