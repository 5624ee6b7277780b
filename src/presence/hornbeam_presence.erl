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
%%
%% Arguments are checked here, in the caller, before anything reaches a
%% shard: a bad one is `{error, Reason}' for the caller and nothing for the
%% shard (`{bad_owner, _}', `{bad_topic, _}', `{bad_key, _}',
%% `meta_must_be_a_map', `meta_not_json'). Topics and keys are UTF-8
%% binaries; a meta is a JSON-encodable map or `{json, iodata()}'.
-module(hornbeam_presence).

-export([track/4, update/4, untrack/3, list/1, get/2, list_json/1, get_json/2, shard/1]).

-type key() :: binary().
-type meta() :: #{binary() => term()} | {json, iodata()}.
-type arg_error() :: {bad_owner, term()} | {bad_topic, term()} | {bad_key, term()}
                   | meta_must_be_a_map | meta_not_json.
-export_type([key/0, meta/0, arg_error/0]).

%% @doc Track Key on Topic for the process Owner (usually a channel process).
%% Tracking the same (Owner, Topic, Key) twice is `{error, already_tracked}'.
-spec track(pid(), binary(), key(), meta()) -> ok | {error, term()}.
track(Owner, Topic, Key, Meta) ->
    with_meta(Owner, Topic, Key, Meta, fun(Json) -> write(Topic, {track, Owner, Topic, Key, {json, Json}}) end).

%% @doc Replace the meta of a tracked presence (clients see it with
%% `phx_ref_prev' set to the old `phx_ref').
-spec update(pid(), binary(), key(), meta()) -> ok | {error, term()}.
update(Owner, Topic, Key, Meta) ->
    with_meta(Owner, Topic, Key, Meta, fun(Json) -> write(Topic, {update, Owner, Topic, Key, {json, Json}}) end).

-spec untrack(pid(), binary(), key()) -> ok | {error, term()}.
untrack(Owner, Topic, Key) ->
    case check_write(Owner, Topic, Key) of
        ok -> write(Topic, {untrack, Owner, Topic, Key});
        Error -> Error
    end.

%% @doc Everyone on Topic, Phoenix's shape: `#{Key => #{<<"metas">> => [Meta]}}'.
-spec list(binary()) -> #{key() => #{binary() => [map()]}} | {error, {bad_topic, term()}}.
list(Topic) ->
    case check_topic(Topic) of
        ok ->
            {ok, Map} = hornbeam_nif:json_decode(list_json(Topic), 128),
            Map;
        Error ->
            Error
    end.

-spec get(binary(), key()) -> #{binary() => [map()]} | undefined | {error, arg_error()}.
get(Topic, Key) ->
    case check_read(Topic, Key) of
        ok ->
            case get_json(Topic, Key) of
                null -> undefined;
                Json -> {ok, Map} = hornbeam_nif:json_decode(Json, 128), Map
            end;
        Error ->
            Error
    end.

%% @doc list/1 as JSON text (what `presence_state' carries). Topic must be
%% a UTF-8 binary (callers inside hornbeam pass checked topics).
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

%% --- argument checks (in the caller) ----------------------------------------------

with_meta(Owner, Topic, Key, Meta, Write) ->
    case check_write(Owner, Topic, Key) of
        ok ->
            case meta_json(Meta) of
                {ok, Json} -> Write(Json);
                Error -> Error
            end;
        Error ->
            Error
    end.

check_write(Owner, _Topic, _Key) when not is_pid(Owner) -> {error, {bad_owner, Owner}};
check_write(_Owner, Topic, Key) -> check_read(Topic, Key).

check_read(Topic, Key) ->
    case check_topic(Topic) of
        ok -> check_text(Key, bad_key);
        Error -> Error
    end.

check_topic(Topic) -> check_text(Topic, bad_topic).

check_text(Bin, Tag) ->
    case is_binary(Bin) andalso unicode:characters_to_binary(Bin) =:= Bin of
        true -> ok;
        false -> {error, {Tag, Bin}}
    end.

%% The meta as JSON text: the shard only stores it.
meta_json({json, Json}) ->
    try iolist_to_binary(Json) of
        Bin -> {ok, Bin}
    catch error:badarg -> {error, meta_not_json}
    end;
meta_json(Meta) when is_map(Meta) ->
    case hornbeam_nif:json_encode(Meta) of
        {ok, Json} -> {ok, iolist_to_binary(Json)};
        {error, _} -> {error, meta_not_json}
    end;
meta_json(_) ->
    {error, meta_must_be_a_map}.

write(Topic, Request) ->
    case hornbeam_presence_shard:whereis_shard(shard(Topic)) of
        undefined -> {error, presence_not_started};
        Pid ->
            try gen_server:call(Pid, Request)
            catch
                %% the shard died or is restarting: this write did not happen
                exit:{noproc, _} -> {error, presence_not_started};
                exit:{{shutdown, _}, _} -> {error, presence_not_started};
                exit:{shutdown, _} -> {error, presence_not_started};
                exit:{killed, _} -> {error, presence_not_started}
            end
    end.
