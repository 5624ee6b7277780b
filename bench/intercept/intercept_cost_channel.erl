%% The intercepting Erlang channel of intercept_cost: "msg" runs
%% handle_out/3, which pushes the payload as it came (the least an
%% intercept can do: the cost measured is the path, not the handler).
-module(intercept_cost_channel).
-behaviour(hornbeam_channel).
-export([join/3, intercept/0, handle_out/3, payload_format/0]).

intercept() -> [<<"msg">>].

%% as the bench's Erlang peer: payloads forwarded as raw JSON
payload_format() -> raw.

join(_Topic, _Payload, Socket) -> {ok, Socket}.

handle_out(Event, Payload, Socket) ->
    ok = hornbeam_channel:push(Socket, Event, Payload),
    {noreply, Socket}.
