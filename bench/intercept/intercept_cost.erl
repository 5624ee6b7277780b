%% What an intercept costs: deliveries/s of broadcasts to N subscribers of
%% one topic over real loopback WebSockets, with the fastlane and with the
%% channel process in the way, for Erlang and Python channels, in one run
%% (so the ratios hold on a shared machine even when the absolute figures
%% do not). Run: `bash bench/intercept/run.sh [Subscribers]` (after `make build`).
%%
%% This module is also the plain Erlang channel (no intercept: the fastlane);
%% intercept_cost_channel intercepts "msg"; intercept_cost_py.py has both
%% kinds as Python channels.
-module(intercept_cost).
-behaviour(hornbeam_channel).
-export([main/1, join/3]).

join(_Topic, _Payload, Socket) -> {ok, Socket}.

main([SubsArg, PyPath]) ->
    N = list_to_integer(SubsArg),
    {ok, _} = application:ensure_all_started(hornbeam),
    ok = hornbeam:start(none, #{bind => "127.0.0.1:0",
                                channels => [{<<"plain:*">>, intercept_cost},
                                             {<<"icpt:*">>, intercept_cost_channel}],
                                channel_modules => ["intercept_cost_py"], pythonpath => [PyPath],
                                max_connections => N * 2 + 100}),
    Port = hornbeam:port(),
    io:format("~b subscribers on one topic, payload ~~60 B; deliveries/s (ratio to the better fastlane row)~n", [N]),
    Variants = [{"Erlang channel, no intercept (fastlane)", <<"plain:1">>, <<"msg">>, 200},
                {"Erlang channel, event not intercepted (forwarded)", <<"icpt:1">>, <<"other">>, 200},
                {"Erlang channel, intercepted (handle_out/3)", <<"icpt:2">>, <<"msg">>, 100},
                {"Python channel, no intercept (fastlane)", <<"pyplain:1">>, <<"msg">>, 200},
                {"Python channel, intercepted (@room.intercept)", <<"pyicpt:1">>, <<"msg">>, 5}],
    %% a warm-up (code loading, first allocations), then each variant
    %% three times, in turn, keeping its best run. The two fastlane rows
    %% take the same path (a Python channel without intercepts is never
    %% called for a broadcast): their gap is the noise of the machine.
    _ = run(Port, N, hd(Variants)),
    Runs = [run(Port, N, V) || _ <- [1, 2, 3], V <- Variants],
    Results = [{Name, lists:max([R || {Nm, R} <- Runs, Nm =:= Name])} || {Name, _, _, _} <- Variants],
    Base = max(element(2, lists:nth(1, Results)), element(2, lists:nth(4, Results))),
    [io:format("~-52s ~12.1f/s  ~6.3f~n", [Name, Rate, Rate / Base]) || {Name, Rate} <- Results],
    erlang:halt(0).

run(Port, N, {Name, Topic, Event, K}) ->
    Self = self(),
    Clients = [spawn_link(fun() -> client(Self, Port, Topic, K) end) || _ <- lists:seq(1, N)],
    [receive {joined, C} -> ok after 60000 -> error({join_timeout, Name}) end || C <- Clients],
    timer:sleep(200),
    T0 = erlang:monotonic_time(microsecond),
    [ok = hornbeam:broadcast(Topic, Event, #{<<"seq">> => I, <<"pad">> => binary:copy(<<"x">>, 40)})
     || I <- lists:seq(1, K)],
    [receive {done, C} -> ok after 120000 -> error({delivery_timeout, Name}) end || C <- Clients],
    Us = erlang:monotonic_time(microsecond) - T0,
    [C ! stop || C <- Clients],
    {Name, N * K / (Us / 1.0e6)}.

%% A bare WebSocket client: joins Topic, then counts the data frames of
%% that topic until it has K of them (frames from the server are unmasked).
client(Parent, Port, Topic, K) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {packet, raw}]),
    ok = gen_tcp:send(S, ["GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n"]),
    Rest = handshake(S, <<>>),
    Join = iolist_to_binary(["[\"1\",\"1\",\"", Topic, "\",\"phx_join\",{}]"]),
    ok = gen_tcp:send(S, masked(Join)),
    ok = inet:setopts(S, [{active, 100}]),
    %% the join reply and presence_state come first
    count(Parent, S, Rest, -2, K).

handshake(S, Acc) ->
    {ok, Data} = gen_tcp:recv(S, 0, 30000),
    All = <<Acc/binary, Data/binary>>,
    case binary:split(All, <<"\r\n\r\n">>) of
        [_Head, Rest] -> Rest;
        [_] -> handshake(S, All)
    end.

count(Parent, S, Buf, Seen, K) ->
    {Frames, Rest} = frames(Buf, 0),
    Seen1 = Seen + Frames,
    _ = Seen < 0 andalso Seen1 >= 0 andalso (Parent ! {joined, self()}),
    case Seen1 >= K of
        true -> Parent ! {done, self()}, receive stop -> gen_tcp:close(S) end;
        false ->
            receive
                {tcp, S, Data} -> count(Parent, S, <<Rest/binary, Data/binary>>, Seen1, K);
                {tcp_passive, S} -> ok = inet:setopts(S, [{active, 100}]), count(Parent, S, Rest, Seen1, K);
                {tcp_closed, S} -> error(closed)
            end
    end.

frames(<<_:4, Op:4, 0:1, 126:7, Len:16, P:Len/binary, R/binary>>, N) -> frames(R, N + data(Op, P));
frames(<<_:4, Op:4, 0:1, 127:7, Len:64, P:Len/binary, R/binary>>, N) -> frames(R, N + data(Op, P));
frames(<<_:4, Op:4, 0:1, Len:7, P:Len/binary, R/binary>>, N) when Len < 126 -> frames(R, N + data(Op, P));
frames(Rest, N) -> {N, Rest}.

data(1, _) -> 1;
data(_, _) -> 0.

masked(Payload) ->
    Len = byte_size(Payload),
    Mask = <<1, 2, 3, 4>>,
    Header = if Len < 126 -> <<1:1, 0:3, 1:4, 1:1, Len:7>>;
                true -> <<1:1, 0:3, 1:4, 1:1, 126:7, Len:16>>
             end,
    <<Header/binary, Mask/binary, (mask(Payload, Mask))/binary>>.

mask(P, <<M:32>>) ->
    Pad = (4 - byte_size(P) rem 4) rem 4,
    Whole = <<P/binary, 0:(Pad * 8)>>,
    Masked = << <<(W bxor M):32>> || <<W:32>> <= Whole >>,
    binary:part(Masked, 0, byte_size(P)).
