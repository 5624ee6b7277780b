%% @doc The channel behaviour, and the functions a channel uses on its socket.
%%
%% One channel process runs per joined topic per connection
%% (`hornbeam_channel_server'). A module implementing this behaviour is
%% mounted on a topic pattern (`{<<"room:*">>, my_room}' in the `channels'
%% option of `hornbeam:start/2'):
%%
%% ```
%% -module(my_room).
%% -behaviour(hornbeam_channel).
%% -export([join/3, handle_in/3]).
%%
%% join(<<"room:", _/binary>>, #{<<"name">> := Name}, Socket) ->
%%     {ok, #{<<"hello">> => Name}, hornbeam_channel:assign(Socket, name, Name)};
%% join(_Topic, _Params, _Socket) ->
%%     {error, #{<<"reason">> => <<"name required">>}}.
%%
%% handle_in(<<"shout">>, Payload, Socket) ->
%%     ok = hornbeam_channel:broadcast(Socket, <<"shout">>, Payload),
%%     {reply, {ok, #{}}, Socket}.
%% '''
%%
%% Payloads arrive decoded (maps with binary keys) unless the module's
%% optional `payload_format/0' returns `raw', in which case they arrive as
%% `{json, Binary}' untouched. Replies and pushes take a JSON term or
%% `{json, iodata()}'.
%%
%% Binary payloads (a client's ArrayBuffer push, a Phoenix V2 binary frame)
%% arrive as `{binary, Bytes}' whatever the format, so a channel tells them
%% from JSON by that tag. Replies, pushes and broadcasts of `{binary, Bytes}'
%% go out as binary frames; the client gets an ArrayBuffer.
%%
%% Intercepts (Phoenix `intercept' + `handle_out'): events listed by the
%% optional `intercept/0' are not written to the client as broadcast; for
%% each local subscriber the channel process runs `handle_out(Event,
%% Payload, Socket)', which pushes what the client should see (or nothing).
%% Such a channel gets every broadcast of its topic through its own process
%% (the ones it does not intercept are forwarded as encoded), so the order
%% of broadcasts holds, at the price of one message and one decode per
%% subscriber of the topic.
%%
%% Server messages: `subscribe(Socket, Topic)' makes the channel process
%% receive the broadcasts of another topic in `handle_info/2' as
%% `{hornbeam_broadcast, Topic, Event, Payload}' (nothing reaches the
%% client unless the channel pushes); anything sent to the channel process
%% (`Pid ! Msg', `socket.channel_pid') arrives in `handle_info/2' too.
-module(hornbeam_channel).

-export([assign/3, assign/2, assigns/1, topic/1, id/1, params/1, join_ref/1,
         push/3, broadcast/3, broadcast_from/3, subscribe/2, unsubscribe/2]).

-type socket() :: #{
    id := binary() | undefined,     %% socket id (connect's third element), or undefined
    conn_id := binary(),            %% connection id (one per WebSocket)
    topic := binary(),
    topic_params := #{binary() => binary()},
    pattern := binary(),            %% the route pattern that matched
    join_ref := hornbeam_nif:msg_ref(),
    params := map(),                %% connect params (query string)
    assigns := map(),
    transport_pid := pid(),         %% the connection process
    channel_pid := pid(),
    handler := module(),
    dialect := hornbeam_protocol:dialect(),
    py_assigns => binary(),         %% Python channels keep assigns as JSON text
    %% Python channels: the socket's fixed fields as the worker gets them,
    %% encoded once at join (hornbeam_py_channel)
    py_wire => {map(), pos_integer(), binary()},
    intercepts => [binary()]        %% Python channels: the events of @room.intercept
}.
-type reply() :: ok | error | {ok | error, hornbeam_pubsub:payload()}.
-export_type([socket/0, reply/0]).

-callback join(Topic :: binary(), Payload :: term(), Socket :: socket()) ->
    {ok, socket()} | {ok, Reply :: hornbeam_pubsub:payload(), socket()}
    | {error, Reply :: hornbeam_pubsub:payload()}.
-callback handle_in(Event :: binary(), Payload :: term(), Socket :: socket()) ->
    {noreply, socket()} | {reply, reply(), socket()}
    | {stop, Reason :: term(), socket()} | {stop, Reason :: term(), reply(), socket()}.
-callback handle_info(Msg :: term(), Socket :: socket()) ->
    {noreply, socket()} | {stop, Reason :: term(), socket()}.
-callback handle_out(Event :: binary(), Payload :: term(), Socket :: socket()) ->
    {noreply, socket()} | {stop, Reason :: term(), socket()}.
-callback intercept() -> [Event :: binary()].
-callback terminate(Reason :: term(), Socket :: socket()) -> term().
-callback payload_format() -> decoded | raw.
-optional_callbacks([handle_in/3, handle_info/2, handle_out/3, intercept/0, terminate/2,
                     payload_format/0]).

-spec assign(socket(), term(), term()) -> socket().
assign(Socket = #{assigns := Assigns}, Key, Value) ->
    Socket#{assigns := Assigns#{Key => Value}}.

-spec assign(socket(), map()) -> socket().
assign(Socket = #{assigns := Assigns}, New) when is_map(New) ->
    Socket#{assigns := maps:merge(Assigns, New)}.

-spec assigns(socket()) -> map().
assigns(#{assigns := A}) -> A.

-spec topic(socket()) -> binary().
topic(#{topic := T}) -> T.

%% @doc The socket id that connect returned (`{ok, Assigns, Id}'), or
%% `undefined'; `hornbeam:disconnect(Id)' closes every socket with it.
-spec id(socket()) -> binary() | undefined.
id(#{id := Id}) -> Id.

-spec params(socket()) -> map().
params(#{params := P}) -> P.

-spec join_ref(socket()) -> hornbeam_nif:msg_ref().
join_ref(#{join_ref := R}) -> R.

%% @doc Send Event to this channel's client only.
-spec push(#{transport_pid := pid(), topic := binary(), join_ref := hornbeam_nif:msg_ref(),
             atom() => term()}, binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
push(#{transport_pid := Transport, topic := Topic, join_ref := JoinRef}, Event, {binary, Bytes})
  when is_binary(Bytes) ->
    case hornbeam_binary_msg:push_frame(JoinRef, Topic, Event, Bytes) of
        {ok, Frame} ->
            Transport ! {'$hb_out', Frame},
            ok;
        Error ->
            Error
    end;
push(#{transport_pid := Transport, topic := Topic, join_ref := JoinRef}, Event, Payload) ->
    case hornbeam_pubsub:encode_payload(Payload) of
        {ok, Json} ->
            Frame = hornbeam_nif:msg_encode_frame(JoinRef, null, Topic, Event, Json),
            Transport ! {'$hb_out', Frame},
            ok;
        Error ->
            Error
    end.

%% @doc Send Event to every subscriber of this channel's topic, cluster-wide.
-spec broadcast(socket(), binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
broadcast(#{topic := Topic}, Event, Payload) ->
    hornbeam_pubsub:broadcast(Topic, Event, Payload).

%% @doc Make this channel's process receive the broadcasts to Topic (another
%% topic than its own) in `handle_info/2' as
%% `{hornbeam_broadcast, Topic, Event, Payload}', until unsubscribe/2 or
%% the channel's end. Subscribing twice is subscribing once.
-spec subscribe(#{channel_pid := pid(), topic := binary(), atom() => term()}, binary()) ->
    ok | {error, term()}.
subscribe(#{channel_pid := Pid, topic := Own}, Topic) ->
    hornbeam_channel_server:subscribe(Pid, Own, Topic).

-spec unsubscribe(#{channel_pid := pid(), topic := binary(), atom() => term()}, binary()) ->
    ok | {error, term()}.
unsubscribe(#{channel_pid := Pid, topic := Own}, Topic) ->
    hornbeam_channel_server:unsubscribe(Pid, Own, Topic).

%% @doc Like broadcast/3, except to this channel's own client.
-spec broadcast_from(socket(), binary(), hornbeam_pubsub:payload()) -> ok | {error, term()}.
broadcast_from(#{topic := Topic, channel_pid := Self}, Event, Payload) ->
    hornbeam_pubsub:broadcast_from(Self, Topic, Event, Payload).
