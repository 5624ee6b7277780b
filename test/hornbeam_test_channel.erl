%% A channel used by the test suites; its behaviour is driven by payloads.
-module(hornbeam_test_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3, handle_info/2, terminate/2]).

join(_Topic, #{<<"mode">> := <<"error">>}, _Socket) ->
    {error, #{<<"reason">> => <<"denied">>}};
join(_Topic, #{<<"mode">> := <<"crash">>}, _Socket) ->
    error(join_boom);
join(_Topic, #{<<"mode">> := <<"slow">>, <<"ms">> := Ms}, Socket) ->
    timer:sleep(Ms),
    {ok, Socket};
join(Topic, #{<<"mode">> := <<"track">>, <<"key">> := Key} = Payload, Socket) ->
    Meta = maps:get(<<"meta">>, Payload, #{}),
    ok = hornbeam_presence:track(self(), Topic, Key, Meta),
    {ok, hornbeam_channel:assign(Socket, <<"key">>, Key)};
join(Topic, Payload, Socket = #{topic_params := TopicParams}) ->
    notify({joined, Topic, self()}),
    {ok, #{<<"topic">> => Topic, <<"params">> => TopicParams},
     hornbeam_channel:assign(Socket, <<"joined_with">>, Payload)}.

handle_in(<<"echo">>, Payload, Socket) ->
    {reply, {ok, Payload}, Socket};
handle_in(<<"error_reply">>, Payload, Socket) ->
    {reply, {error, Payload}, Socket};
handle_in(<<"noreply">>, _Payload, Socket) ->
    {noreply, Socket};
handle_in(<<"assign">>, #{<<"key">> := K, <<"value">> := V}, Socket) ->
    {reply, ok, hornbeam_channel:assign(Socket, K, V)};
handle_in(<<"assigns">>, _Payload, Socket) ->
    {reply, {ok, hornbeam_channel:assigns(Socket)}, Socket};
handle_in(<<"push">>, Payload, Socket) ->
    ok = hornbeam_channel:push(Socket, <<"pushed">>, Payload),
    {noreply, Socket};
handle_in(<<"broadcast">>, Payload, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, <<"shout">>, Payload),
    {reply, ok, Socket};
handle_in(<<"broadcast_from">>, Payload, Socket) ->
    ok = hornbeam_channel:broadcast_from(Socket, <<"shout">>, Payload),
    {reply, ok, Socket};
handle_in(<<"sleep">>, #{<<"ms">> := Ms}, Socket) ->
    timer:sleep(Ms),
    {reply, ok, Socket};
handle_in(<<"presence_update">>, Meta, Socket = #{topic := Topic, assigns := #{<<"key">> := Key}}) ->
    {reply, result(hornbeam_presence:update(self(), Topic, Key, Meta)), Socket};
handle_in(<<"presence_untrack">>, _Payload, Socket = #{topic := Topic, assigns := #{<<"key">> := Key}}) ->
    {reply, result(hornbeam_presence:untrack(self(), Topic, Key)), Socket};
handle_in(<<"presence_track_again">>, _Payload, Socket = #{topic := Topic, assigns := #{<<"key">> := Key}}) ->
    {reply, result(hornbeam_presence:track(self(), Topic, Key, #{})), Socket};
handle_in(<<"crash">>, _Payload, _Socket) ->
    error(event_boom);
handle_in(<<"stop">>, _Payload, Socket) ->
    {stop, normal, Socket};
handle_in(<<"stop_reply">>, _Payload, Socket) ->
    {stop, done, {ok, #{<<"bye">> => true}}, Socket};
handle_in(<<"bad_return">>, _Payload, _Socket) ->
    what_is_this;
handle_in(<<"self">>, _Payload, Socket) ->
    {reply, {ok, #{<<"pid">> => list_to_binary(pid_to_list(self()))}}, Socket}.

handle_info({push, Event, Payload}, Socket) ->
    ok = hornbeam_channel:push(Socket, Event, Payload),
    {noreply, Socket};
handle_info(_Msg, Socket) ->
    {noreply, Socket}.

terminate(Reason, #{topic := Topic}) ->
    notify({terminated, Topic, self(), Reason}).

result(ok) -> ok;
result({error, Why}) -> {error, #{<<"reason">> => atom_to_binary(Why)}}.

notify(Msg) ->
    case whereis(hornbeam_test_observer) of
        undefined -> ok;
        Pid -> Pid ! Msg
    end.
