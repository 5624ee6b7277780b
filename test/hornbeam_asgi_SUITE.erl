%% HTTP apps in the Python workers, end to end over real sockets: a plain
%% ASGI callable (test/python/fixtures/asgi_echo.py), a real Starlette app
%% (installed by scripts/bootstrap.sh), a WSGI app, lifespan in every mode,
%% the static JS client, and the failure answers (500, 504, aborted streams).
-module(hornbeam_asgi_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [{group, asgi}, {group, asgi_timeout}, {group, lifespan}, {group, starlette},
     {group, wsgi}, {group, wsgi_overload}, {group, no_app},
     {group, bad_headers}].

groups() ->
    [{asgi, [], [scope_fields, percent_decoded_path_and_root_path_option, big_body_in_pieces,
                 stream_without_length_is_chunked, stream_with_length_is_not_chunked,
                 keep_alive_and_pipelining_across_response_kinds, head_sends_no_body,
                 http10_stream_ends_with_close, app_exception_is_500_and_connection_survives,
                 exception_mid_stream_aborts_the_connection, no_response_is_500,
                 big_streamed_response_with_flow_control, client_disconnect_reaches_the_app,
                 background_work_after_the_response, static_js_only_when_the_app_404s]},
     {asgi_timeout, [], [timeout_is_504_and_worker_is_replaced]},
     {lifespan, [], [lifespan_startup_and_shutdown_in_every_worker,
                     lifespan_startup_failed_fails_start, lifespan_on_requires_support,
                     lifespan_auto_tolerates_unsupported_apps, lifespan_off_never_runs,
                     bad_options_fail_start]},
     {starlette, [], [starlette_routes_state_and_params, starlette_bodies,
                      starlette_streaming_response, starlette_sync_endpoint_and_errors,
                      starlette_background_and_lifespan_shutdown]},
     {wsgi, [], [wsgi_environ, wsgi_streaming_and_close, wsgi_errors]},
     {bad_headers, [], [response_headers_with_cr_lf_nul_are_500_and_logged]},
     {wsgi_overload, [], [wsgi_request_beyond_the_queue_bound_is_503]},
     {no_app, [], [no_app_answers_404_and_static_files]}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Static = filename:join(?config(priv_dir, Config), "static"),
    ok = filelib:ensure_dir(filename:join(Static, "x")),
    ok = file:write_file(filename:join(Static, "hornbeam.js"), <<"window.Hornbeam = {};\n">>),
    ok = application:set_env(hornbeam, static_dir, Static),
    Config.

end_per_suite(_Config) ->
    application:unset_env(hornbeam, static_dir),
    application:stop(hornbeam).

fixtures() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "python", "fixtures"]).

log_file(Config) ->
    filename:join(?config(priv_dir, Config), "hb_test.log").

start(App, Opts, Config) ->
    _ = hornbeam:stop(),
    _ = file:delete(log_file(Config)),
    hornbeam:start(App, maps:merge(#{bind => "127.0.0.1:0", workers => 1,
                                     pythonpath => [fixtures()],
                                     env => [{"HB_TEST_LOG", log_file(Config)}]}, Opts)).

init_per_group(asgi, Config) ->
    ok = start("asgi_echo:app", #{workers => 2}, Config),
    Config;
init_per_group(asgi_timeout, Config) ->
    ok = start("asgi_echo:app", #{timeout => 1000}, Config),
    Config;
init_per_group(starlette, Config) ->
    ok = start("asgi_starlette:app", #{}, Config),
    Config;
init_per_group(wsgi, Config) ->
    ok = start("wsgi_app:app", #{worker_class => wsgi, root_path => "/mount"}, Config),
    Config;
init_per_group(bad_headers, Config) ->
    ok = start("asgi_bad_headers:app", #{}, Config),
    Config;
init_per_group(wsgi_overload, Config) ->
    ok = start("wsgi_app:app", #{worker_class => wsgi, threads => 1, max_queued_calls => 0}, Config),
    Config;
init_per_group(no_app, Config) ->
    ok = start(none, #{}, Config),
    Config;
init_per_group(_, Config) ->
    Config.

end_per_group(_, _Config) ->
    _ = hornbeam:stop(),
    ok.

%% ---------------------------------------------------------------------------
%% a small HTTP/1.1 client over gen_tcp (keeps what it read past a response)
%% ---------------------------------------------------------------------------

connect() ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, hornbeam:port(),
                              [binary, {active, false}, {packet, raw}]),
    put({buf, S}, <<>>),
    S.

request_bytes(Method, Path, Headers, Body) ->
    Length = case Body of
                 <<>> when Method =/= "POST" -> [];
                 _ -> [<<"content-length: ">>, integer_to_binary(iolist_size(Body)), <<"\r\n">>]
             end,
    [Method, " ", Path, " HTTP/1.1\r\nhost: localhost\r\n",
     [[N, ": ", V, "\r\n"] || {N, V} <- Headers], Length, "\r\n", Body].

send(S, Method, Path) -> send(S, Method, Path, [], <<>>).
send(S, Method, Path, Headers, Body) ->
    ok = gen_tcp:send(S, request_bytes(Method, Path, Headers, Body)).

%% {Status, Headers, Body, Framing} with Framing = length | chunked | close | none.
recv(S) -> recv(S, "GET").
recv(S, Method) ->
    {Status, Rest} = status_line(S, erlang:get({buf, S})),
    {Headers, Rest1} = header_lines(S, Rest, []),
    {Body, Rest2, Framing} =
        case {Method, Status, proplists:get_value(<<"transfer-encoding">>, Headers),
              proplists:get_value(<<"content-length">>, Headers)} of
            {"HEAD", _, _, _} -> {<<>>, Rest1, none};
            {_, 204, _, _} -> {<<>>, Rest1, none};
            {_, 304, _, _} -> {<<>>, Rest1, none};
            {_, _, <<"chunked">>, _} -> dechunk(S, Rest1, []);
            {_, _, undefined, undefined} -> {read_all(S, Rest1), <<>>, close};
            {_, _, undefined, L} -> {B, R} = read_n(S, Rest1, binary_to_integer(L)), {B, R, length}
        end,
    put({buf, S}, Rest2),
    {Status, Headers, Body, Framing}.

hget(S, Path) ->
    send(S, "GET", Path),
    recv(S).

hget(Path) ->
    S = connect(),
    R = hget(S, Path),
    gen_tcp:close(S),
    R.

more(S, Buf) ->
    {ok, Data} = gen_tcp:recv(S, 0, 10000),
    <<Buf/binary, Data/binary>>.

status_line(S, Buf) ->
    case erlang:decode_packet(http_bin, Buf, []) of
        {more, _} -> status_line(S, more(S, Buf));
        {ok, {http_response, _, Status, _}, Rest} -> {Status, Rest}
    end.

header_lines(S, Buf, Acc) ->
    case erlang:decode_packet(httph_bin, Buf, []) of
        {more, _} -> header_lines(S, more(S, Buf), Acc);
        {ok, http_eoh, Rest} -> {lists:reverse(Acc), Rest};
        {ok, {http_header, _, Field, _, Value}, Rest} ->
            Name = string:lowercase(if is_atom(Field) -> atom_to_binary(Field); true -> Field end),
            header_lines(S, Rest, [{Name, Value} | Acc])
    end.

read_n(_S, Buf, N) when byte_size(Buf) >= N ->
    <<B:N/binary, Rest/binary>> = Buf,
    {B, Rest};
read_n(S, Buf, N) ->
    read_n(S, more(S, Buf), N).

read_all(S, Buf) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, Data} -> read_all(S, <<Buf/binary, Data/binary>>);
        {error, closed} -> Buf
    end.

dechunk(S, Buf, Acc) ->
    case binary:split(Buf, <<"\r\n">>) of
        [_] -> dechunk(S, more(S, Buf), Acc);
        [SizeHex, Rest] ->
            case binary_to_integer(SizeHex, 16) of
                0 ->
                    {<<"\r\n", After/binary>>, _} = {ensure(S, Rest, 2), x},
                    {iolist_to_binary(lists:reverse(Acc)), After, chunked};
                Size ->
                    {Data, Rest1} = read_n(S, Rest, Size + 2),
                    <<Chunk:Size/binary, "\r\n">> = Data,
                    dechunk(S, Rest1, [Chunk | Acc])
            end
    end.

ensure(_S, Buf, N) when byte_size(Buf) >= N -> Buf;
ensure(S, Buf, N) -> ensure(S, more(S, Buf), N).

json(Body) -> {ok, Term} = hornbeam_nif:json_decode(Body), Term.

header(Name, Headers) -> proplists:get_value(Name, Headers).

%% Lines of the marker file, without the pids.
marks(Config) ->
    case file:read_file(log_file(Config)) of
        {ok, Bin} -> [hd(string:split(L, " ", trailing)) || L <- string:split(Bin, "\n", all), L =/= <<>>];
        {error, enoent} -> []
    end.

wait_for(Fun) -> wait_for(Fun, 100).
wait_for(Fun, 0) -> Fun();
wait_for(Fun, N) ->
    case Fun() of
        true -> true;
        _ -> timer:sleep(50), wait_for(Fun, N - 1)
    end.

%% ---------------------------------------------------------------------------
%% asgi
%% ---------------------------------------------------------------------------

scope_fields(_Config) ->
    S = connect(),
    send(S, "POST", "/echo?x=1&y=%20z", [{"X-Custom", "Value"}, {"content-type", "text/plain"}],
         <<"hello">>),
    {200, Headers, Body, length} = recv(S),
    ?assertEqual(<<"application/json">>, header(<<"content-type">>, Headers)),
    #{<<"type">> := <<"http">>, <<"asgi">> := #{<<"version">> := <<"3.0">>,
                                              <<"spec_version">> := <<"2.3">>},
      <<"http_version">> := <<"1.1">>, <<"method">> := <<"POST">>, <<"scheme">> := <<"http">>,
      <<"path">> := <<"/echo">>, <<"raw_path">> := <<"/echo">>, <<"raw_path_is_bytes">> := true,
      <<"query_string">> := <<"x=1&y=%20z">>, <<"query_is_bytes">> := true,
      <<"root_path">> := <<>>, <<"headers">> := Hs, <<"headers_are_bytes">> := true,
      <<"client">> := [<<"127.0.0.1">>, ClientPort], <<"server">> := [<<"127.0.0.1">>, ServerPort],
      <<"state">> := #{<<"started_by">> := <<"lifespan">>},
      <<"body">> := <<"hello">>, <<"messages">> := 1} = json(Body),
    {ok, {_, LocalPort}} = inet:sockname(S),
    ?assertEqual(LocalPort, ClientPort),
    ?assertEqual(hornbeam:port(), ServerPort),
    ?assert(lists:member([<<"x-custom">>, <<"Value">>], Hs)),
    ?assert(lists:member([<<"host">>, <<"localhost">>], Hs)),
    ?assert(lists:member([<<"content-length">>, <<"5">>], Hs)).

percent_decoded_path_and_root_path_option(Config) ->
    {200, _, Body, _} = hget("/caf%C3%A9%20x?q"),
    #{<<"path">> := Path, <<"raw_path">> := <<"/caf%C3%A9%20x">>} = json(Body),
    ?assertEqual(<<"/café x"/utf8>>, Path),
    %% root_path: prefixed to path and raw_path (uvicorn does the same)
    ok = start("asgi_echo:app", #{root_path => "/api"}, Config),
    {200, _, Body2, _} = hget("/echo"),
    ?assertMatch(#{<<"root_path">> := <<"/api">>, <<"path">> := <<"/api/echo">>,
                   <<"raw_path">> := <<"/api/echo">>}, json(Body2)),
    ok = start("asgi_echo:app", #{workers => 2}, Config).

big_body_in_pieces(_Config) ->
    Body = binary:copy(<<"0123456789abcdef">>, 20000),      % 320000 bytes
    S = connect(),
    send(S, "POST", "/body", [], Body),
    {200, _, Info, _} = recv(S),
    Checksum = lists:sum(binary_to_list(Body)) rem 65521,
    ?assertEqual(#{<<"messages">> => 5, <<"length">> => 320000, <<"max_chunk">> => 65536,
                   <<"checksum">> => Checksum}, json(Info)),
    %% a chunked request body arrives de-chunked, in pieces too
    ok = gen_tcp:send(S, ["POST /body HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
                          [[integer_to_binary(65536 * 2, 16), "\r\n", binary:part(Body, 0, 131072),
                            "\r\n"] || _ <- [1, 2]], "0\r\n\r\n"]),
    {200, _, Info2, _} = recv(S),
    ?assertMatch(#{<<"messages">> := 4, <<"length">> := 262144}, json(Info2)).

stream_without_length_is_chunked(_Config) ->
    {200, Headers, Body, chunked} = hget("/stream"),
    ?assertEqual(<<"part 0\npart 1\npart 2\n">>, Body),
    ?assertEqual(<<"yes">>, header(<<"x-custom">>, Headers)),
    ?assertEqual(<<"keep-alive">>, header(<<"connection">>, Headers)),
    ?assertEqual(undefined, header(<<"content-length">>, Headers)).

stream_with_length_is_not_chunked(_Config) ->
    {200, Headers, <<"hello world!">>, length} = hget("/stream-length"),
    ?assertEqual(undefined, header(<<"transfer-encoding">>, Headers)).

keep_alive_and_pipelining_across_response_kinds(_Config) ->
    S = connect(),
    {200, _, _, length} = hget(S, "/echo"),
    {200, _, <<"part 0\npart 1\npart 2\n">>, chunked} = hget(S, "/stream"),
    {404, _, <<"app: not found\n">>, length} = hget(S, "/nope"),
    %% three pipelined requests in one packet, answered in order
    ok = gen_tcp:send(S, [request_bytes("GET", P, [], <<>>) || P <- ["/stream", "/stream-length", "/echo"]]),
    {200, _, <<"part 0", _/binary>>, chunked} = recv(S),
    {200, _, <<"hello world!">>, length} = recv(S),
    {200, _, Echo, length} = recv(S),
    ?assertMatch(#{<<"path">> := <<"/echo">>}, json(Echo)),
    gen_tcp:close(S).

head_sends_no_body(_Config) ->
    S = connect(),
    send(S, "HEAD", "/head"),
    {200, Headers, <<>>, none} = recv(S, "HEAD"),
    ?assertEqual(<<"10">>, header(<<"content-length">>, Headers)),
    send(S, "HEAD", "/stream"),
    {200, Headers2, <<>>, none} = recv(S, "HEAD"),
    ?assertEqual(undefined, header(<<"transfer-encoding">>, Headers2)),
    %% still in sync: the next response is read correctly
    {200, _, <<"hello world!">>, length} = hget(S, "/stream-length").

http10_stream_ends_with_close(_Config) ->
    S = connect(),
    ok = gen_tcp:send(S, "GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"),
    {200, Headers, Body, close} = recv(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    ?assertEqual(<<"part 0\npart 1\npart 2\n">>, Body).

app_exception_is_500_and_connection_survives(_Config) ->
    S = connect(),
    {500, _, Body, length} = hget(S, "/raise"),
    ?assertEqual(<<"Internal Server Error\n">>, Body),
    {500, _, _, _} = hget(S, "/no-response"),
    {200, _, _, _} = hget(S, "/echo").

exception_mid_stream_aborts_the_connection(_Config) ->
    S = connect(),
    send(S, "GET", "/raise-after-start"),
    {Status, Rest} = status_line(S, <<>>),
    ?assertEqual(200, Status),
    {Headers, Rest1} = header_lines(S, Rest, []),
    ?assertEqual(<<"chunked">>, header(<<"transfer-encoding">>, Headers)),
    %% the first piece, then the connection closes without the last chunk
    All = read_all(S, Rest1),
    ?assertEqual(<<"7\r\npartial\r\n">>, All).

no_response_is_500(_Config) ->
    {500, _, <<"Internal Server Error\n">>, length} = hget("/no-response").

big_streamed_response_with_flow_control(_Config) ->
    S = connect(),
    send(S, "GET", "/big"),
    timer:sleep(300),   % the client does not read: the app must wait for acks
    {200, _, Body, chunked} = recv(S),
    ?assertEqual(4 * 1024 * 1024, byte_size(Body)),
    Piece = list_to_binary([I rem 251 || I <- lists:seq(0, 65535)]),
    ?assertEqual(binary:copy(Piece, 64), Body),
    {200, _, _, _} = hget(S, "/echo").

client_disconnect_reaches_the_app(Config) ->
    S = connect(),
    send(S, "GET", "/disconnect"),
    {200, Rest} = status_line(S, <<>>),
    {_, Rest1} = header_lines(S, Rest, []),
    _ = ensure(S, Rest1, 10),     % "5\r\ntick\n\r\n"
    ok = gen_tcp:close(S),
    ?assert(wait_for(fun() -> lists:member(<<"disconnected http.disconnect">>, marks(Config)) end)).

background_work_after_the_response(Config) ->
    {200, _, <<"done\n">>, length} = hget("/background"),
    ?assert(wait_for(fun() -> lists:member(<<"background">>, marks(Config)) end)).

static_js_only_when_the_app_404s(_Config) ->
    %% the app 404s /hornbeam.js: the client file is served instead
    {200, Headers, <<"window.Hornbeam = {};\n">>, length} = hget("/hornbeam.js"),
    ?assertEqual(<<"application/javascript; charset=utf-8">>, header(<<"content-type">>, Headers)),
    ETag = header(<<"etag">>, Headers),
    S = connect(),
    send(S, "GET", "/hornbeam.js", [{"if-none-match", ETag}], <<>>),
    {304, _, <<>>, none} = recv(S),
    %% the app answers /hornbeam.mjs itself
    {200, _, <<"// the app's own hornbeam.mjs\n">>, length} = hget(S, "/hornbeam.mjs"),
    %% POST is the app's business
    send(S, "POST", "/hornbeam.js", [], <<>>),
    {404, _, <<"app: not found\n">>, length} = recv(S).

%% ---------------------------------------------------------------------------
%% timeout
%% ---------------------------------------------------------------------------

timeout_is_504_and_worker_is_replaced(_Config) ->
    [#{os_pid := Pid1}] = hornbeam_python:workers(),
    {504, _, <<"Gateway Timeout\n">>, length} = hget("/sleep"),
    ?assert(wait_for(fun() ->
                             case hornbeam_python:workers() of
                                 [#{status := ready, os_pid := P}] -> P =/= Pid1;
                                 _ -> false
                             end
                     end)),
    {200, _, _, _} = hget("/echo").

%% ---------------------------------------------------------------------------
%% lifespan
%% ---------------------------------------------------------------------------

pids(Config, Tag) ->
    {ok, Bin} = file:read_file(log_file(Config)),
    lists:sort([P || L <- string:split(Bin, "\n", all), L =/= <<>>,
                     [T, P] <- [string:split(L, " ", trailing)], T =:= Tag]).

lifespan_startup_and_shutdown_in_every_worker(Config) ->
    ok = start("asgi_echo:app", #{workers => 2}, Config),
    Started = pids(Config, <<"startup">>),
    ?assertEqual(2, length(lists:usort(Started))),
    ?assertEqual([], pids(Config, <<"shutdown">>)),
    ok = hornbeam:stop(),
    ?assertEqual(Started, pids(Config, <<"shutdown">>)).

lifespan_startup_failed_fails_start(Config) ->
    ?assertEqual({error, {lifespan_startup_failed, <<"database unreachable">>}},
                 start("asgi_lifespan_fail:app", #{workers => 2}, Config)),
    ?assertEqual({error, not_started}, hornbeam:stop()).

lifespan_on_requires_support(Config) ->
    ?assertEqual({error, {lifespan_startup_failed,
                          <<"ValueError: unsupported scope type lifespan">>}},
                 start("asgi_no_lifespan:app", #{lifespan => on}, Config)).

lifespan_auto_tolerates_unsupported_apps(Config) ->
    ok = start("asgi_no_lifespan:app", #{lifespan => auto}, Config),
    {200, _, <<"no lifespan here\n">>, _} = hget("/"),
    ok = hornbeam:stop().

lifespan_off_never_runs(Config) ->
    ok = start("asgi_lifespan_fail:app", #{lifespan => off}, Config),
    {200, _, <<"never served">>, _} = hget("/"),
    ok = start("asgi_echo:app", #{lifespan => off}, Config),
    {200, _, Body, _} = hget("/echo"),
    ?assertMatch(#{<<"state">> := #{}}, json(Body)),
    ok = hornbeam:stop(),
    ?assertEqual([], marks(Config)).

bad_options_fail_start(Config) ->
    ?assertEqual({error, {bad_option, worker_class, gunicorn}},
                 start("asgi_echo:app", #{worker_class => gunicorn}, Config)),
    ?assertEqual({error, {bad_option, lifespan, maybe}},
                 start("asgi_echo:app", #{lifespan => maybe}, Config)),
    ?assertEqual({error, {bad_option, root_path, <<"api">>}},
                 start("asgi_echo:app", #{root_path => "api"}, Config)).

%% ---------------------------------------------------------------------------
%% starlette
%% ---------------------------------------------------------------------------

starlette_routes_state_and_params(_Config) ->
    {200, _, Body, length} = hget("/?a=1&b=two"),
    ?assertEqual(#{<<"path">> => <<"/">>, <<"root_path">> => <<>>,
                   <<"greeting">> => <<"hello from lifespan">>,
                   <<"query">> => #{<<"a">> => <<"1">>, <<"b">> => <<"two">>},
                   <<"client">> => <<"127.0.0.1">>}, json(Body)),
    {200, _, Item, _} = hget("/items/42"),
    ?assertEqual(#{<<"id">> => 42}, json(Item)),
    {404, _, _, _} = hget("/items/not-a-number"),
    {404, _, _, _} = hget("/nowhere").

starlette_bodies(_Config) ->
    Body = binary:copy(<<"xyz">>, 100000),
    S = connect(),
    send(S, "POST", "/upload", [{"content-type", "application/octet-stream"}], Body),
    {200, _, Info, _} = recv(S),
    ?assertEqual(#{<<"length">> => 300000, <<"content_type">> => <<"application/octet-stream">>,
                   <<"checksum">> => lists:sum(binary_to_list(Body)) rem 65521}, json(Info)),
    send(S, "POST", "/json", [{"content-type", "application/json"}],
         <<"{\"name\": \"hornbeam\", \"kind\": [\"tree\"]}">>),
    {200, _, Got, _} = recv(S),
    ?assertEqual(#{<<"got">> => #{<<"name">> => <<"hornbeam">>, <<"kind">> => [<<"tree">>]}},
                 json(Got)),
    send(S, "GET", "/upload"),
    {405, _, _, _} = recv(S).

starlette_streaming_response(_Config) ->
    {200, Headers, Body, chunked} = hget("/stream"),
    ?assertEqual(<<"n=0\nn=1\nn=2\nn=3\nn=4\n">>, Body),
    ?assertMatch(<<"text/plain", _/binary>>, header(<<"content-type">>, Headers)).

starlette_sync_endpoint_and_errors(_Config) ->
    S = connect(),
    {200, _, <<"sync GET\n">>, _} = hget(S, "/sync"),
    send(S, "POST", "/sync", [], <<"x">>),
    {200, _, <<"sync POST\n">>, _} = recv(S),
    %% Starlette answers the 500 itself and re-raises: logged, connection fine
    {500, _, _, _} = hget(S, "/error"),
    {200, _, _, _} = hget(S, "/items/1").

starlette_background_and_lifespan_shutdown(Config) ->
    ?assert(lists:member(<<"starlette startup">>, marks(Config))),
    {200, _, <<"queued\n">>, _} = hget("/background"),
    ?assert(wait_for(fun() -> lists:member(<<"starlette background">>, marks(Config)) end)),
    ok = hornbeam:stop(),
    ?assert(lists:member(<<"starlette shutdown">>, marks(Config))).

%% ---------------------------------------------------------------------------
%% wsgi
%% ---------------------------------------------------------------------------

wsgi_environ(_Config) ->
    S = connect(),
    send(S, "POST", "/environ?q=1", [{"content-type", "text/plain"}, {"X-Thing", "a"}], <<"body!">>),
    {200, _, Body, length} = recv(S),
    {ok, {_, Port}} = inet:peername(S),
    PortBin = integer_to_binary(Port),
    ?assertMatch(#{<<"REQUEST_METHOD">> := <<"POST">>, <<"SCRIPT_NAME">> := <<"/mount">>,
                   <<"PATH_INFO">> := <<"/environ">>, <<"QUERY_STRING">> := <<"q=1">>,
                   <<"SERVER_NAME">> := <<"127.0.0.1">>, <<"SERVER_PORT">> := PortBin,
                   <<"SERVER_PROTOCOL">> := <<"HTTP/1.1">>, <<"REMOTE_ADDR">> := <<"127.0.0.1">>,
                   <<"CONTENT_TYPE">> := <<"text/plain">>, <<"CONTENT_LENGTH">> := <<"5">>,
                   <<"wsgi.url_scheme">> := <<"http">>, <<"body">> := <<"body!">>,
                   <<"version">> := [1, 0], <<"multithread">> := true,
                   <<"http">> := #{<<"HTTP_HOST">> := <<"localhost">>, <<"HTTP_X_THING">> := <<"a">>}},
                 json(Body)).

wsgi_streaming_and_close(Config) ->
    S = connect(),
    {200, _, <<"line 0\nline 1\nline 2\nline 3\n">>, chunked} = hget(S, "/stream"),
    {200, _, <<"one two">>, chunked} = hget(S, "/closing"),
    ?assert(wait_for(fun() -> lists:member(<<"closed">>, marks(Config)) end)),
    {200, _, <<"written returned">>, chunked} = hget(S, "/write"),
    {404, _, <<"wsgi: not found\n">>, length} = hget(S, "/other").

wsgi_errors(_Config) ->
    S = connect(),
    {500, _, <<"Internal Server Error\n">>, _} = hget(S, "/raise"),
    {500, _, <<"recovered with exc_info\n">>, _} = hget(S, "/exc-info"),
    {200, _, _, _} = hget(S, "/stream").

wsgi_request_beyond_the_queue_bound_is_503(_Config) ->
    %% threads => 1, max_queued_calls => 0: while one request sleeps on the
    %% only thread, the next is answered 503 at once
    Busy = connect(),
    send(Busy, "GET", "/sleep?800"),
    timer:sleep(200),
    {503, _, _, _} = hget("/environ"),
    %% answered while the first one still sleeps
    ?assertEqual({error, timeout}, gen_tcp:recv(Busy, 0, 0)),
    {200, _, <<"slept">>, length} = recv(Busy),
    %% and the worker serves again
    {200, _, _, _} = hget("/environ").

%% ---------------------------------------------------------------------------
%% no app
%% ---------------------------------------------------------------------------

no_app_answers_404_and_static_files(_Config) ->
    {404, _, <<"not found\n">>, length} = hget("/"),
    {404, _, <<"not found\n">>, length} = hget("/anything"),
    {200, Headers, <<"window.Hornbeam = {};\n">>, length} = hget("/hornbeam.js"),
    ?assertEqual(<<"application/javascript; charset=utf-8">>, header(<<"content-type">>, Headers)),
    %% hornbeam.mjs does not exist in the test's static dir
    {404, _, _, _} = hget("/hornbeam.mjs"),
    {400, _, _, _} = hget("/ws").

%% ---------------------------------------------------------------------------
%% bad_headers: test/python/fixtures/asgi_bad_headers.py
%% ---------------------------------------------------------------------------

%% CR, LF or NUL in a header value, or a name that is not a token, from a
%% whole response or from a streamed start: 500 (nothing of the app's head
%% or body on the wire), an error log line naming the header, and the
%% listener keeps serving.
response_headers_with_cr_lf_nul_are_500_and_logged(_Config) ->
    ok = logger:add_handler(hb_bad_headers, ?MODULE, #{config => #{pid => self()}}),
    try
        Paths = ["/cr-lf-in-value", "/lf-in-value", "/nul-in-value", "/space-in-name",
                 "/colon-in-name"],
        lists:foreach(
          fun(Path) ->
                  [begin
                       S = connect(),
                       send(S, "GET", P),
                       Raw = read_all(S, <<>>),
                       gen_tcp:close(S),
                       ?assertMatch(<<"HTTP/1.1 500 ", _/binary>>, Raw, P),
                       ?assertEqual(nomatch, binary:match(Raw, [<<"x-injected">>, <<"piece">>,
                                                                <<"x-note">>, <<"x bad">>]), P),
                       receive
                           {refused_log, Msg} -> ?assertNotEqual(nomatch, string:find(Msg, "answering 500"))
                       after 10000 -> ct:fail({no_log_line, P})
                       end
                   end || P <- [Path, "/stream" ++ Path]]
          end, Paths),
        {200, Headers, <<"ok">>, _} = hget("/ok"),
        ?assertEqual(<<"fine">>, proplists:get_value(<<"x-note">>, Headers))
    after
        logger:remove_handler(hb_bad_headers)
    end.

%% logger handler callback for the case above: forwards the refusal lines.
log(#{msg := {Format, Args}}, #{config := #{pid := Pid}}) when is_list(Format) ->
    Msg = lists:flatten(io_lib:format(Format, Args)),
    case string:find(Msg, "refusing the response") of
        nomatch -> ok;
        _ -> Pid ! {refused_log, Msg}
    end;
log(_, _) ->
    ok.
