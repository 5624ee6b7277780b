%% A channel with intercepts and server messages, for hornbeam_intercept_SUITE.
%%
%% Joined with `{"role": R}'; "secret" broadcasts reach only admins (with
%% who saw them), "counted" ones carry a per-subscriber count kept in the
%% assigns; other events keep their broadcast form. The client can ask it
%% to broadcast, to subscribe to / unsubscribe from other topics (what
%% arrives there is pushed as "relayed"), and anything sent to the process
%% as `{tell, Payload}' is pushed as "told".
-module(hornbeam_test_intercept_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3, handle_out/3, handle_info/2, intercept/0]).

intercept() -> [<<"secret">>, <<"counted">>, <<"crash_out">>].

join(_Topic, Payload, Socket) ->
    Role = maps:get(<<"role">>, Payload, <<"guest">>),
    {ok, #{<<"pid">> => list_to_binary(pid_to_list(self()))},
     hornbeam_channel:assign(hornbeam_channel:assign(Socket, role, Role), count, 0)}.

handle_in(<<"broadcast">>, #{<<"event">> := E, <<"payload">> := P}, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, E, P),
    {reply, ok, Socket};
handle_in(<<"broadcast_from">>, #{<<"event">> := E, <<"payload">> := P}, Socket) ->
    ok = hornbeam_channel:broadcast_from(Socket, E, P),
    {reply, ok, Socket};
handle_in(<<"subscribe">>, #{<<"topic">> := T}, Socket) ->
    {reply, result(hornbeam_channel:subscribe(Socket, T)), Socket};
handle_in(<<"unsubscribe">>, #{<<"topic">> := T}, Socket) ->
    {reply, result(hornbeam_channel:unsubscribe(Socket, T)), Socket};
handle_in(<<"count">>, _, Socket = #{assigns := #{count := N}}) ->
    {reply, {ok, #{<<"count">> => N}}, Socket}.

handle_out(<<"secret">>, Payload, Socket = #{assigns := #{role := <<"admin">>}}) ->
    ok = hornbeam_channel:push(Socket, <<"secret">>, Payload#{<<"seen_by">> => <<"admin">>}),
    {noreply, Socket};
handle_out(<<"secret">>, _Payload, Socket) ->
    {noreply, Socket};
handle_out(<<"counted">>, Payload, Socket = #{assigns := #{count := N}}) ->
    ok = hornbeam_channel:push(Socket, <<"counted">>, Payload#{<<"count">> => N + 1}),
    {noreply, hornbeam_channel:assign(Socket, count, N + 1)};
handle_out(<<"crash_out">>, _Payload, _Socket) ->
    error(handle_out_boom).

handle_info({hornbeam_broadcast, Topic, Event, Payload}, Socket) ->
    ok = hornbeam_channel:push(Socket, <<"relayed">>,
                               #{<<"topic">> => Topic, <<"event">> => Event, <<"payload">> => Payload}),
    {noreply, Socket};
handle_info({tell, Payload}, Socket) ->
    ok = hornbeam_channel:push(Socket, <<"told">>, Payload),
    {noreply, Socket}.

result(ok) -> ok;
result({error, {bad_topic, _}}) -> {error, #{<<"reason">> => <<"bad_topic">>}};
result({error, Why}) -> {error, #{<<"reason">> => atom_to_binary(Why)}}.
