%% The channel test/js/intercept.test.mjs joins on "sec:*": it intercepts
%% "secret" (admins get it marked with who saw it, others nothing) and lets
%% every other broadcast through as it is.
-module(js_intercept_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3, handle_out/3, intercept/0]).

intercept() -> [<<"secret">>].

join(_Topic, Payload, Socket) ->
    {ok, hornbeam_channel:assign(Socket, role, maps:get(<<"role">>, Payload, <<"guest">>))}.

handle_in(<<"broadcast">>, #{<<"event">> := Event, <<"payload">> := Payload}, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, Event, Payload),
    {reply, ok, Socket}.

handle_out(<<"secret">>, Payload, Socket = #{assigns := #{role := <<"admin">>}}) ->
    ok = hornbeam_channel:push(Socket, <<"secret">>, Payload#{<<"seen_by">> => <<"admin">>}),
    {noreply, Socket};
handle_out(<<"secret">>, _Payload, Socket) ->
    {noreply, Socket}.
