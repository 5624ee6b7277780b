%% @doc Cluster-wide pub/sub over OTP `pg'.
%%
%% Subscribers are connection (socket) processes: each joins the pg group
%% `{topic, Topic}' once per joined topic. A broadcast is encoded into a
%% WebSocket frame once per node and that same binary is sent to every local
%% subscriber (the fastlane: join_ref and ref are null). Every other node gets
%% one message, to its relay (this module's gen_server, a member of the group
%% `relays'), which encodes once and fans out to its own local subscribers.
%%
%% Arguments are checked in the caller, before any message leaves it: a bad
%% one is `{error, Reason}' (`{bad_topic, _}', `{bad_event, _}',
%% `{bad_from, _}', `{not_json, _}', `{field_too_long, topic | event}' for
%% a binary payload whose topic or event is over 255 bytes) and reaches no
%% relay. A `{binary, Bytes}' payload goes out as a Phoenix V2 binary
%% broadcast (kind 2). Topics and
%% events are UTF-8 binaries. The relay itself checks what other nodes send
%% and logs and drops a malformed message, so no node can crash it.
-module(hornbeam_pubsub).
-behaviour(gen_server).

-export([scope/0, start_link/0,
         subscribe/1, unsubscribe/1, subscribers/1,
         subscribe_channel/1, unsubscribe_channel/1, channel_subscribers/1,
         broadcast/3, broadcast_from/4, local_broadcast/3, local_broadcast_from/4,
         encode_payload/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SCOPE, hornbeam).
-define(RELAYS, relays).

%% A JSON payload: a term `hornbeam_nif:json_encode/1' accepts, or raw JSON
%% text as `{json, iodata()}' (forwarded without decoding).
-type payload() :: {json, iodata()} | {binary, binary()} | hornbeam_nif:json() | map().
%% What travels between nodes: JSON text, or the bytes of a binary payload.
-type wire() :: iodata() | {binary, binary()}.
%% `none', or the channel process whose own connection must not get it.
-type exclude() :: none | pid().
%% What a channel subscriber gets as the payload: JSON text, or the bytes
%% of a binary broadcast.
-type channel_payload() :: binary() | {binary, binary()}.
-export_type([payload/0, exclude/0, channel_payload/0]).

-spec scope() -> atom().
scope() -> ?SCOPE.

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Subscribe the calling process (a connection) to Topic. It will receive
%% `{'$hb_broadcast', Topic, Frame :: binary(), Exclude :: exclude()}'.
-spec subscribe(binary()) -> ok.
subscribe(Topic) ->
    pg:join(?SCOPE, {topic, Topic}, self()).

-spec unsubscribe(binary()) -> ok | not_joined.
unsubscribe(Topic) ->
    pg:leave(?SCOPE, {topic, Topic}, self()).

%% @doc Local subscriber processes of Topic.
-spec subscribers(binary()) -> [pid()].
subscribers(Topic) ->
    pg:get_local_members(?SCOPE, {topic, Topic}).

%% @doc Subscribe the calling process (a channel) to Topic. It will receive
%% `{'$hb_channel_broadcast', Topic, Event, channel_payload(), Frame, Exclude}'.
-spec subscribe_channel(binary()) -> ok.
subscribe_channel(Topic) ->
    pg:join(?SCOPE, {channel, Topic}, self()).

-spec unsubscribe_channel(binary()) -> ok | not_joined.
unsubscribe_channel(Topic) ->
    pg:leave(?SCOPE, {channel, Topic}, self()).

%% @doc Local channel processes subscribed to Topic.
-spec channel_subscribers(binary()) -> [pid()].
channel_subscribers(Topic) ->
    pg:get_local_members(?SCOPE, {channel, Topic}).

%% @doc Send Event with Payload to every subscriber of Topic in the cluster.
-spec broadcast(binary(), binary(), payload()) -> ok | {error, term()}.
broadcast(Topic, Event, Payload) ->
    cluster_broadcast(Topic, Event, Payload, none).

%% @doc Like broadcast/3, but the connection of channel FromPid does not get it.
-spec broadcast_from(pid(), binary(), binary(), payload()) -> ok | {error, term()}.
broadcast_from(FromPid, Topic, Event, Payload) when is_pid(FromPid) ->
    cluster_broadcast(Topic, Event, Payload, FromPid);
broadcast_from(FromPid, _Topic, _Event, _Payload) ->
    {error, {bad_from, FromPid}}.

%% @doc Broadcast to this node's subscribers only.
-spec local_broadcast(binary(), binary(), payload()) -> ok | {error, term()}.
local_broadcast(Topic, Event, Payload) ->
    local_broadcast_from(none, Topic, Event, Payload).

-spec local_broadcast_from(exclude(), binary(), binary(), payload()) -> ok | {error, term()}.
local_broadcast_from(Exclude, Topic, Event, Payload) ->
    case checked(Topic, Event, Payload, Exclude) of
        {ok, Json} -> deliver_local(Topic, Event, Json, Exclude);
        Error -> Error
    end.

%% @doc Payload as JSON text.
-spec encode_payload(payload()) -> {ok, iodata()} | {error, {not_json, term()}}.
encode_payload({json, Json} = Payload) ->
    case is_iodata(Json) of
        true -> {ok, Json};
        false -> {error, {not_json, Payload}}
    end;
encode_payload(Term) -> hornbeam_nif:json_encode(Term).

cluster_broadcast(Topic, Event, Payload, Exclude) ->
    case checked(Topic, Event, Payload, Exclude) of
        {ok, Json} ->
            Msg = {'$hb_remote_broadcast', Topic, Event, Json, Exclude},
            Self = node(),
            _ = [Relay ! Msg || Relay <- pg:get_members(?SCOPE, ?RELAYS), node(Relay) =/= Self],
            deliver_local(Topic, Event, Json, Exclude);
        Error ->
            Error
    end.

%% --- argument checks (in the caller) ------------------------------------------

%% The payload as JSON text (or its bytes), once Topic, Event and Exclude
%% are known good.
-spec checked(term(), term(), payload(), term()) -> {ok, wire()} | {error, term()}.
checked(Topic, Event, {binary, Bytes}, Exclude) when is_binary(Bytes) ->
    case check_args(Topic, Event, Exclude) of
        ok when byte_size(Topic) > 255 -> {error, {field_too_long, topic}};
        ok when byte_size(Event) > 255 -> {error, {field_too_long, event}};
        ok -> {ok, {binary, Bytes}};
        Error -> Error
    end;
checked(Topic, Event, Payload, Exclude) ->
    case check_args(Topic, Event, Exclude) of
        ok -> encode_payload(Payload);
        Error -> Error
    end.

check_args(Topic, _Event, _Exclude) when not is_binary(Topic) -> {error, {bad_topic, Topic}};
check_args(_Topic, Event, _Exclude) when not is_binary(Event) -> {error, {bad_event, Event}};
check_args(_Topic, _Event, Exclude) when Exclude =/= none, not is_pid(Exclude) -> {error, {bad_from, Exclude}};
check_args(Topic, Event, _Exclude) ->
    case {is_utf8(Topic), is_utf8(Event)} of
        {true, true} -> ok;
        {false, _} -> {error, {bad_topic, Topic}};
        {_, false} -> {error, {bad_event, Event}}
    end.

is_utf8(Bin) -> unicode:characters_to_binary(Bin) =:= Bin.

is_wire(Topic, Event, {binary, Bytes}) ->
    is_binary(Bytes) andalso byte_size(Topic) =< 255 andalso byte_size(Event) =< 255;
is_wire(_Topic, _Event, Json) ->
    is_iodata(Json).

is_iodata(Bin) when is_binary(Bin) -> true;
is_iodata(List) when is_list(List) ->
    try iolist_size(List) of _ -> true
    catch error:badarg -> false
    end;
is_iodata(_) -> false.

deliver_local(Topic, Event, Json, Exclude) ->
    case {pg:get_local_members(?SCOPE, {topic, Topic}), pg:get_local_members(?SCOPE, {channel, Topic})} of
        {[], []} ->
            ok;
        {Subscribers, []} ->
            ok = hornbeam_metrics:broadcast([Subscribers]),
            Frame = broadcast_frame(Topic, Event, Json),
            send_all(Subscribers, {'$hb_broadcast', Topic, Frame, Exclude});
        {Subscribers, Channels} ->
            ok = hornbeam_metrics:broadcast([Subscribers, Channels]),
            Frame = broadcast_frame(Topic, Event, Json),
            send_all(Subscribers, {'$hb_broadcast', Topic, Frame, Exclude}),
            send_all(Channels, {'$hb_channel_broadcast', Topic, Event, channel_payload(Json), Frame,
                                Exclude})
    end.

channel_payload({binary, Bytes}) -> {binary, Bytes};
channel_payload(Json) -> iolist_to_binary(Json).

%% The sender runs at high priority for the loop only, so the sockets it
%% wakes do not run (and preempt it) before every subscriber has the
%% message. A socket then finds the frames of several broadcasts waiting and
%% writes them with one port_command (hornbeam_socket: write_batch_frames),
%% instead of one write per frame: 1.7x the deliveries per CPU-second at
%% 5,000 subscribers (bench/README.md, "Write batching").
send_all(Subscribers, Msg) ->
    case process_info(self(), priority) of
        {priority, P} when P =:= normal; P =:= low ->
            _ = process_flag(priority, high),
            try lists:foreach(fun(Pid) -> Pid ! Msg end, Subscribers)
            after _ = process_flag(priority, P)
            end;
        _ ->
            lists:foreach(fun(Pid) -> Pid ! Msg end, Subscribers)
    end.

broadcast_frame(Topic, Event, {binary, Bytes}) ->
    %% sizes were checked by checked/4 or is_wire/3
    {ok, Frame} = hornbeam_binary_msg:broadcast_frame(Topic, Event, Bytes),
    Frame;
broadcast_frame(Topic, Event, Json) ->
    hornbeam_nif:msg_encode_frame(null, null, Topic, Event, Json).

%% --- relay -----------------------------------------------------------------

-spec init([]) -> {ok, #{}}.
init([]) ->
    ok = pg:join(?SCOPE, ?RELAYS, self()),
    {ok, #{}}.

-spec handle_call(term(), gen_server:from(), map()) -> {reply, {error, unknown_call}, map()}.
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info({'$hb_remote_broadcast', Topic, Event, Json, Exclude} = Msg, State) ->
    %% From another node, which may run other code: check like a caller
    %% would, and never let its message crash this relay.
    try check_args(Topic, Event, Exclude) =:= ok andalso is_wire(Topic, Event, Json) of
        true -> _ = deliver_local(Topic, Event, Json, Exclude);
        false -> logger:warning("hornbeam_pubsub: malformed broadcast dropped: ~0P", [Msg, 20])
    catch Class:Reason ->
        logger:warning("hornbeam_pubsub: broadcast dropped (~0p:~0p): ~0P", [Class, Reason, Msg, 20])
    end,
    {noreply, State};
handle_info(Msg, State) ->
    logger:warning("hornbeam_pubsub: unexpected message ~0P", [Msg, 20]),
    {noreply, State}.
