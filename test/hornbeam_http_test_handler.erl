%% @doc The `hornbeam_http_handler' used by hornbeam_http_SUITE.
%%
%% HTTP: `/' → 200 "hello"; `/echo...' → 200 with the request as text;
%% `/close' → 200 with `connection: close'; `/crash' → raises;
%% `/bad_return' → returns a non-response; `/bad_header' → a header value
%% with CR LF (must become a 500); anything else → 404.
%% WebSocket: `/ws' is accepted (extra header `x-hornbeam-test: ws'), and
%% `websocket_enter/3' sends the raw text frame "hello" then echoes every byte
%% (starting with the bytes buffered past the handshake); `/ws_crash' crashes
%% in websocket_upgrade; anything else is refused with 403.
-module(hornbeam_http_test_handler).
-behaviour(hornbeam_http_handler).

-export([handle_http/2, websocket_upgrade/2, websocket_enter/3]).
-export([not_a_response/0]).

-spec handle_http(hornbeam_http_req:req(), term()) -> {100..599, [{binary(), iodata()}], iodata()}.
handle_http(#{path := <<"/">>}, _Opts) ->
    {200, [{<<"content-type">>, <<"text/plain">>}], <<"hello">>};
handle_http(Req = #{path := <<"/echo", _/binary>>}, _Opts) ->
    {200, [{<<"content-type">>, <<"text/plain">>}], echo(Req)};
handle_http(#{path := <<"/close">>}, _Opts) ->
    {200, [{<<"Connection">>, <<"close">>}], <<"bye">>};
handle_http(#{path := <<"/crash">>}, _Opts) ->
    error(deliberate_test_crash);
handle_http(#{path := <<"/bad_header">>}, _Opts) ->
    {302, [{<<"location">>, [<<"/next">>, <<"\r\nx-injected: 1">>]}], <<>>};
handle_http(#{path := <<"/bad_return">>}, _Opts) ->
    erlang:apply(?MODULE, not_a_response, []);
handle_http(_Req, _Opts) ->
    {404, [{<<"content-type">>, <<"text/plain">>}], <<"not found\n">>}.

-spec websocket_upgrade(hornbeam_http_req:req(), term()) ->
    {ok, term(), [{binary(), iodata()}]} | {refuse, 100..599, [{binary(), iodata()}], iodata()}.
websocket_upgrade(#{path := <<"/ws">>}, _Opts) ->
    {ok, echo_state, [{<<"x-hornbeam-test">>, <<"ws">>}]};
websocket_upgrade(#{path := <<"/ws_bad_header">>}, _Opts) ->
    {ok, echo_state, [{<<"x-note">>, <<"a\nb">>}]};
websocket_upgrade(#{path := <<"/ws_crash">>}, _Opts) ->
    error(deliberate_upgrade_crash);
websocket_upgrade(_Req, _Opts) ->
    {refuse, 403, [{<<"content-type">>, <<"text/plain">>}], <<"forbidden\n">>}.

-spec websocket_enter(gen_tcp:socket(), binary(), term()) -> no_return().
websocket_enter(Sock, Buffered, echo_state) ->
    ok = gen_tcp:send(Sock, <<16#81, 5, "hello">>),
    case Buffered of
        <<>> -> ok;
        _ -> ok = gen_tcp:send(Sock, Buffered)
    end,
    echo_loop(Sock).

%% Not part of the behaviour: what /bad_return gives back (called through
%% apply so that the compiler and dialyzer see no bad return type).
-spec not_a_response() -> term().
not_a_response() -> {not_a_response}.

echo_loop(Sock) ->
    case gen_tcp:recv(Sock, 0) of
        {ok, Data} ->
            ok = gen_tcp:send(Sock, Data),
            echo_loop(Sock);
        {error, _} ->
            exit(normal)
    end.

echo(#{method := M, path := P, raw_path := RP, query := Q, version := {Maj, Min},
       headers := Hs, body := B, peer := {PeerIP, _}, scheme := Scheme}) ->
    [<<"method=">>, M, <<"\n">>,
     <<"path=">>, P, <<"\n">>,
     <<"raw_path=">>, RP, <<"\n">>,
     <<"query=">>, Q, <<"\n">>,
     <<"version=">>, integer_to_binary(Maj), <<".">>, integer_to_binary(Min), <<"\n">>,
     <<"scheme=">>, Scheme, <<"\n">>,
     <<"peer=">>, inet:ntoa(PeerIP), <<"\n">>,
     [[<<"header ">>, N, <<"=">>, V, <<"\n">>] || {N, V} <- Hs],
     <<"body=">>, B].
