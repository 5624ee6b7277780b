%% The channel the JS integration tests (test/js/integration.test.mjs) join on
%% "room:*". Compiled by the test setup (erlc into a temporary directory).
%% Its behaviour is driven by the events the clients push.
%%
%% Presence is real: a join with `"presence": {"key": K, "meta": M}' tracks
%% K for this channel (hornbeam_presence), `presence_update' replaces its
%% meta; leaving or closing untracks it.
-module(js_test_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3]).

join(_Topic, #{<<"mode">> := <<"error">>}, _Socket) ->
    {error, #{<<"reason">> => <<"denied">>}};
join(Topic, #{<<"presence">> := #{<<"key">> := Key} = P} = Payload, Socket) ->
    ok = hornbeam_presence:track(self(), Topic, Key, maps:get(<<"meta">>, P, #{})),
    {ok, #{<<"topic">> => Topic, <<"joined_with">> => Payload},
     hornbeam_channel:assign(Socket, <<"presence_key">>, Key)};
join(Topic, Payload, Socket) ->
    {ok, #{<<"topic">> => Topic, <<"joined_with">> => Payload,
           <<"params">> => hornbeam_channel:params(Socket)}, Socket}.

%% The chat room of the docs: new_msg goes to everyone on the topic.
handle_in(<<"new_msg">>, Payload, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, <<"new_msg">>, Payload),
    {reply, ok, Socket};
handle_in(<<"presence_update">>, Meta, Socket = #{topic := Topic, assigns := #{<<"presence_key">> := Key}}) ->
    ok = hornbeam_presence:update(self(), Topic, Key, Meta),
    {reply, ok, Socket};
%% Replies.
handle_in(<<"echo">>, Payload, Socket) ->
    {reply, {ok, Payload}, Socket};
handle_in(<<"error_reply">>, Payload, Socket) ->
    {reply, {error, Payload}, Socket};
handle_in(<<"noreply">>, _Payload, Socket) ->
    {noreply, Socket};
%% Server → client: to this client only, to every subscriber, or to every
%% subscriber but this client.
handle_in(<<"push">>, #{<<"event">> := Event, <<"payload">> := Payload}, Socket) ->
    ok = hornbeam_channel:push(Socket, Event, Payload),
    {reply, ok, Socket};
handle_in(<<"broadcast">>, #{<<"event">> := Event, <<"payload">> := Payload}, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, Event, Payload),
    {reply, ok, Socket};
handle_in(<<"broadcast_from">>, #{<<"event">> := Event, <<"payload">> := Payload}, Socket) ->
    ok = hornbeam_channel:broadcast_from(Socket, Event, Payload),
    {reply, ok, Socket};
%% Binary payloads ({binary, Bytes}, from an ArrayBuffer push): back to this
%% client as a push, or to every subscriber as a broadcast, as bytes.
handle_in(<<"push_binary">>, {binary, _} = Bytes, Socket) ->
    ok = hornbeam_channel:push(Socket, <<"bin">>, Bytes),
    {reply, ok, Socket};
handle_in(<<"broadcast_binary">>, {binary, _} = Bytes, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, <<"bin">>, Bytes),
    {reply, ok, Socket};
%% What the endpoint's connect function put in the assigns (authToken tests).
handle_in(<<"assigns">>, _Payload, Socket) ->
    {reply, {ok, hornbeam_channel:assigns(Socket)}, Socket};
%% Endings: a deliberate stop (phx_close), a crash (phx_error), and the
%% whole connection killed (the client sees the WebSocket close).
handle_in(<<"stop">>, _Payload, Socket) ->
    {stop, normal, Socket};
handle_in(<<"crash">>, _Payload, _Socket) ->
    error(js_test_crash);
handle_in(<<"kill_connection">>, _Payload, Socket = #{transport_pid := Transport}) ->
    exit(Transport, kill),
    {noreply, Socket}.
