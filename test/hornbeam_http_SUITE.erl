%% @doc The HTTP layer (src/http) over real sockets on 127.0.0.1, port 0.
%%
%% Each test case gets its own listener (ref `t_<testcase>', options from
%% opts/1) serving `hornbeam_http_test_handler'; several listeners run side
%% by side. Cases follow a request's life: serving, keep-alive, bodies,
%% limits, WebSocket upgrade, failures, connection limits, binding.
-module(hornbeam_http_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).

-export([
    %% serving
    get_is_200_with_content_length/1,
    unknown_path_is_404/1,
    head_has_content_length_but_no_body/1,
    request_is_parsed_into_the_documented_map/1,
    keep_alive_serves_two_requests_on_one_socket/1,
    pipelined_requests_are_answered_in_order/1,
    connection_close_closes_after_the_response/1,
    handler_connection_close_closes/1,
    http10_closes_unless_keep_alive/1,
    http10_keep_alive_is_honoured/1,
    %% bodies
    post_body_by_content_length/1,
    post_chunked_body/1,
    expect_100_continue_is_answered/1,
    %% limits and bad input
    content_length_over_max_is_413/1,
    chunked_body_over_max_is_413/1,
    one_byte_chunks_cost_bounded_memory/1,
    long_chunk_extension_is_400_and_long_trailer_431/1,
    long_request_line_is_414/1,
    long_header_line_is_431/1,
    too_many_headers_is_431/1,
    garbage_is_400/1,
    malformed_requests_are_400/1,
    http2_preface_is_rejected/1,
    idle_keep_alive_connection_is_closed/1,
    slow_request_is_408/1,
    trickled_headers_are_408_after_header_timeout/1,
    %% websocket
    websocket_upgrade_is_101_with_the_rfc_accept/1,
    websocket_refused_upgrade_is_403_and_keeps_alive/1,
    bad_handshakes_are_400/1,
    websocket_upgrade_crash_is_500/1,
    handshake_eunit_tests_pass/1,
    %% failures
    handler_crash_is_500_and_listener_keeps_serving/1,
    handler_bad_return_is_500/1,
    handler_header_with_cr_lf_is_500/1,
    silent_clients_do_not_hurt_the_listener/1,
    listener_restart_keeps_live_connections/1,
    two_listeners_run_side_by_side/1,
    bad_options_are_refused/1,
    %% max_connections
    third_client_waits_until_one_closes/1,
    killed_connection_frees_its_slot/1,
    websocket_holds_its_slot_until_it_ends/1,
    %% binding
    ipv6_loopback/1,
    bind_parse/1,
    %% pure helpers
    query_string_parsing/1,
    percent_decoding/1,
    chunked_decoder_accepts_any_split/1,
    date_header_format/1
]).

-define(HANDLER, hornbeam_http_test_handler).
-define(RFC_KEY, <<"dGhlIHNhbXBsZSBub25jZQ==">>).
-define(RFC_ACCEPT, <<"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=">>).

all() ->
    [{group, serving}, {group, bodies}, {group, limits}, {group, websocket},
     {group, failures}, {group, max_connections}, {group, binding}, {group, helpers}].

groups() ->
    [{serving, [], [get_is_200_with_content_length, unknown_path_is_404,
                    head_has_content_length_but_no_body, request_is_parsed_into_the_documented_map,
                    keep_alive_serves_two_requests_on_one_socket,
                    pipelined_requests_are_answered_in_order,
                    connection_close_closes_after_the_response, handler_connection_close_closes,
                    http10_closes_unless_keep_alive, http10_keep_alive_is_honoured]},
     {bodies, [], [post_body_by_content_length, post_chunked_body,
                   expect_100_continue_is_answered]},
     {limits, [], [content_length_over_max_is_413, chunked_body_over_max_is_413,
                   one_byte_chunks_cost_bounded_memory,
                   long_chunk_extension_is_400_and_long_trailer_431,
                   long_request_line_is_414, long_header_line_is_431, too_many_headers_is_431,
                   garbage_is_400, malformed_requests_are_400, http2_preface_is_rejected,
                   idle_keep_alive_connection_is_closed, slow_request_is_408,
                   trickled_headers_are_408_after_header_timeout]},
     {websocket, [], [websocket_upgrade_is_101_with_the_rfc_accept,
                      websocket_refused_upgrade_is_403_and_keeps_alive, bad_handshakes_are_400,
                      websocket_upgrade_crash_is_500, handshake_eunit_tests_pass]},
     {failures, [], [handler_crash_is_500_and_listener_keeps_serving, handler_bad_return_is_500,
                     handler_header_with_cr_lf_is_500,
                     silent_clients_do_not_hurt_the_listener,
                     listener_restart_keeps_live_connections, two_listeners_run_side_by_side,
                     bad_options_are_refused]},
     {max_connections, [], [third_client_waits_until_one_closes, killed_connection_frees_its_slot,
                            websocket_holds_its_slot_until_it_ends]},
     {binding, [], [ipv6_loopback, bind_parse]},
     {helpers, [], [query_string_parsing, percent_decoding, chunked_decoder_accepts_any_split,
                    date_header_format]}].

%% Listener options per test case (merged over ref/port/handler).
opts(chunked_body_over_max_is_413) -> #{max_body_length => 1000};
opts(idle_keep_alive_connection_is_closed) -> #{request_timeout => 300};
opts(slow_request_is_408) -> #{request_timeout => 300};
opts(one_byte_chunks_cost_bounded_memory) -> #{max_body_length => 512 * 1024};
opts(long_chunk_extension_is_400_and_long_trailer_431) -> #{max_header_line_length => 100};
opts(trickled_headers_are_408_after_header_timeout) -> #{header_timeout => 500,
                                                         request_timeout => 20000};
opts(third_client_waits_until_one_closes) -> #{max_connections => 2};
opts(killed_connection_frees_its_slot) -> #{max_connections => 1};
opts(websocket_holds_its_slot_until_it_ends) -> #{max_connections => 1};
opts(_) -> #{}.

%% Test cases that need no listener of their own.
no_listener(T) ->
    lists:member(T, [ipv6_loopback, bind_parse, query_string_parsing, percent_decoding,
                     chunked_decoder_accepts_any_split, date_header_format, bad_options_are_refused,
                     handshake_eunit_tests_pass]).

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(crypto),
    Config.

end_per_suite(_Config) ->
    ok.

init_per_testcase(T, Config) ->
    case no_listener(T) of
        true ->
            Config;
        false ->
            Ref = list_to_atom("t_" ++ atom_to_list(T)),
            {Sup, Port} = start_listener(maps:merge(#{ref => Ref}, opts(T))),
            [{ref, Ref}, {sup, Sup}, {port, Port} | Config]
    end.

end_per_testcase(_T, Config) ->
    case ?config(sup, Config) of
        undefined -> ok;
        Sup -> stop_listener(Sup)
    end.

start_listener(Opts) ->
    Defaults = #{port => 0, handler => ?HANDLER, handler_opts => #{}},
    {ok, Sup} = hornbeam_listener_sup:start_link(maps:merge(Defaults, Opts)),
    unlink(Sup),
    {Sup, hornbeam_listener:port(maps:get(ref, Opts))}.

stop_listener(Sup) ->
    Mon = erlang:monitor(process, Sup),
    catch sys:terminate(Sup, shutdown, 10000),
    receive {'DOWN', Mon, process, Sup, _} -> ok after 10000 -> error(listener_did_not_stop) end.

%% =============================================================================
%% serving
%% =============================================================================

get_is_200_with_content_length(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/">>)),
    {200, Headers, Body} = recv_response(S),
    ?assertEqual(<<"hello">>, Body),
    ?assertEqual(<<"5">>, header(<<"content-length">>, Headers)),
    ?assertEqual(<<"hornbeam">>, header(<<"server">>, Headers)),
    ?assertEqual(<<"keep-alive">>, header(<<"connection">>, Headers)),
    ?assertMatch(<<_:3/binary, ", ", _/binary>>, header(<<"date">>, Headers)),
    ?assertEqual(<<"text/plain">>, header(<<"content-type">>, Headers)).

unknown_path_is_404(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/nope">>)),
    {404, _, <<"not found\n">>} = recv_response(S).

head_has_content_length_but_no_body(Config) ->
    S = connect(Config),
    send(S, <<"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n">>),
    {200, Headers, <<>>, Rest} = recv_response(S, <<>>, head),
    ?assertEqual(<<"5">>, header(<<"content-length">>, Headers)),
    ?assertEqual(<<>>, Rest),
    %% No body bytes were sent: the next response on the socket is intact.
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S).

request_is_parsed_into_the_documented_map(Config) ->
    S = connect(Config),
    send(S, <<"GET /echo/a%20b%2Fc?x=1&y=a+b%21 HTTP/1.1\r\nHost: Example.com\r\n"
              "X-Dup: one\r\nX-DUP: two  \r\nUser-Agent: ct\r\n\r\n">>),
    {200, _, Body} = recv_response(S),
    Lines = binary:split(Body, <<"\n">>, [global]),
    [?assert(lists:member(L, Lines), L) ||
        L <- [<<"method=GET">>, <<"path=/echo/a b/c">>, <<"raw_path=/echo/a%20b%2Fc">>,
              <<"query=x=1&y=a+b%21">>, <<"version=1.1">>, <<"scheme=http">>,
              <<"peer=127.0.0.1">>, <<"header host=Example.com">>, <<"body=">>]],
    %% Names lowercase, in order, duplicates kept, values trimmed.
    Headers = [L || <<"header ", _/binary>> = L <- Lines],
    ?assertEqual([<<"header host=Example.com">>, <<"header x-dup=one">>,
                  <<"header x-dup=two">>, <<"header user-agent=ct">>], Headers).

keep_alive_serves_two_requests_on_one_socket(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S),
    send(S, get_req(<<"/echo/second">>)),
    {200, _, Body} = recv_response(S),
    ?assertMatch({_, _}, binary:match(Body, <<"path=/echo/second">>)).

pipelined_requests_are_answered_in_order(Config) ->
    S = connect(Config),
    Reqs = [get_req(<<"/echo/", (integer_to_binary(I))/binary>>) || I <- lists:seq(1, 5)],
    Post = <<"POST /echo/6 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc">>,
    send(S, [Reqs, Post, get_req(<<"/">>)]),
    Rest = lists:foldl(
             fun(I, Buf) ->
                     {{200, _, Body}, Buf1} = recv_response_buf(S, Buf),
                     Want = <<"path=/echo/", (integer_to_binary(I))/binary, "\n">>,
                     ?assertMatch({_, _}, binary:match(Body, Want)),
                     Buf1
             end, <<>>, lists:seq(1, 6)),
    {{200, _, <<"hello">>}, <<>>} = recv_response_buf(S, Rest).

connection_close_closes_after_the_response(Config) ->
    S = connect(Config),
    send(S, <<"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", (get_req(<<"/">>))/binary>>),
    {{200, Headers, <<"hello">>}, Rest} = recv_response_buf(S, <<>>),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    %% The pipelined request after `close' is not answered.
    ?assertEqual(<<>>, Rest),
    assert_closed(S).

handler_connection_close_closes(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/close">>)),
    {200, Headers, <<"bye">>} = recv_response(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    assert_closed(S).

http10_closes_unless_keep_alive(Config) ->
    S = connect(Config),
    send(S, <<"GET / HTTP/1.0\r\n\r\n">>),
    {200, Headers, <<"hello">>} = recv_response(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    assert_closed(S).

http10_keep_alive_is_honoured(Config) ->
    S = connect(Config),
    send(S, <<"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n">>),
    {200, Headers, <<"hello">>} = recv_response(S),
    ?assertEqual(<<"keep-alive">>, header(<<"connection">>, Headers)),
    send(S, <<"GET / HTTP/1.0\r\n\r\n">>),
    {200, _, <<"hello">>} = recv_response(S),
    assert_closed(S).

%% =============================================================================
%% bodies
%% =============================================================================

post_body_by_content_length(Config) ->
    S = connect(Config),
    Payload = binary:copy(<<"0123456789">>, 10000),
    send(S, [<<"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n">>]),
    %% The body arrives in pieces.
    <<A:30000/binary, B/binary>> = Payload,
    send(S, A),
    timer:sleep(50),
    send(S, B),
    {200, _, Body} = recv_response(S),
    ?assertMatch({_, _}, binary:match(Body, <<"method=POST">>)),
    [_, Echoed] = binary:split(Body, <<"body=">>),
    ?assertEqual(Payload, Echoed),
    %% The connection is still usable.
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S).

post_chunked_body(Config) ->
    S = connect(Config),
    send(S, <<"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n">>),
    timer:sleep(50),
    send(S, <<"1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n">>),
    {200, _, Body} = recv_response(S),
    [_, Echoed] = binary:split(Body, <<"body=">>),
    ?assertEqual(<<"hello 0123456789">>, Echoed),
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S).

expect_100_continue_is_answered(Config) ->
    S = connect(Config),
    send(S, <<"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              "Expect: 100-continue\r\n\r\n">>),
    {{100, _, <<>>}, <<>>} = recv_response_buf(S, <<>>),
    send(S, <<"body">>),
    {200, _, Body} = recv_response(S),
    [_, <<"body">>] = binary:split(Body, <<"body=">>).

%% =============================================================================
%% limits and bad input
%% =============================================================================

content_length_over_max_is_413(Config) ->
    S = connect(Config),
    send(S, <<"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8388609\r\n\r\n">>),
    {413, Headers, _} = recv_response(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    assert_closed(S),
    %% Exactly max_body_length (8 MiB) is accepted.
    S2 = connect(Config),
    Big = binary:copy(<<"x">>, 8388608),
    send(S2, [<<"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n">>, Big]),
    {200, _, Body} = recv_response(S2),
    ?assert(byte_size(Body) > 8388608).

chunked_body_over_max_is_413(Config) ->
    S = connect(Config),
    Chunk = binary:copy(<<"x">>, 600),
    send(S, <<"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "258\r\n", Chunk/binary, "\r\n258\r\n", Chunk/binary, "\r\n0\r\n\r\n">>),
    {413, _, _} = recv_response(S),
    assert_closed(S).

%% Issue 13: one-byte chunks once cost a list cell and a sub-binary per body
%% byte (a 12 MB request took the VM from 44 to 370 MB). Now the connection
%% process holds at most a small multiple of max_body_length (512 KiB here),
%% measured on its heap plus the binaries it references and on the whole
%% VM's growth (a binary grown by appending is under-reported by
%% process_info/2), and a body over the limit still gets 413.
one_byte_chunks_cost_bounded_memory(Config) ->
    Max = 512 * 1024,
    Chunks = fun(N) -> binary:copy(<<"1\r\nx\r\n">>, N) end,
    Head = <<"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n">>,
    S = connect(Config),
    Conn = conn_pid(Config),
    Sampler = memory_sampler(Conn),
    send(S, Head),
    %% 400,000 one-byte chunks (2.4 MB on the wire), in 40 pieces.
    [send(S, Chunks(10000)) || _ <- lists:seq(1, 40)],
    send(S, <<"0\r\n\r\n">>),
    {200, _, <<"hello">>} = recv_response(S),
    {Peak, VmGrowth} = stop_sampler(Sampler),
    ct:pal("one-byte chunks, 400,000-byte body: connection peak ~b bytes (heap + binaries), "
           "VM peak growth ~b bytes", [Peak, VmGrowth]),
    ?assert(Peak < 8 * Max, {peak_bytes, Peak}),
    ?assert(VmGrowth < 8 * Max, {vm_growth_bytes, VmGrowth}),
    %% Over max_body_length: 413, however it is chunked.
    S2 = connect(Config),
    send(S2, Head),
    Sender = spawn_link(fun() -> [gen_tcp:send(S2, Chunks(10000)) || _ <- lists:seq(1, 60)] end),
    {413, _, _} = recv_response(S2),
    unlink(Sender),
    exit(Sender, kill).

%% A chunk size line (extensions included) and each trailer line are bounded
%% by max_header_line_length (100 here).
long_chunk_extension_is_400_and_long_trailer_431(Config) ->
    Head = <<"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n">>,
    S = connect(Config),
    send(S, [Head, <<"1;ext=">>, binary:copy(<<"e">>, 200)]),
    {400, _, _} = recv_response(S),
    assert_closed(S),
    S2 = connect(Config),
    send(S2, [Head, <<"1\r\nx\r\n0\r\nX-Trailer: ">>, binary:copy(<<"t">>, 200)]),
    {431, _, _} = recv_response(S2),
    assert_closed(S2).

long_request_line_is_414(Config) ->
    S = connect(Config),
    Long = binary:copy(<<"a">>, 9000),
    send(S, <<"GET /", Long/binary, " HTTP/1.1\r\nHost: x\r\n\r\n">>),
    {414, _, _} = recv_response(S),
    assert_closed(S),
    %% Also when the line has not ended yet.
    S2 = connect(Config),
    send(S2, <<"GET /", Long/binary>>),
    {414, _, _} = recv_response(S2),
    assert_closed(S2).

long_header_line_is_431(Config) ->
    S = connect(Config),
    Long = binary:copy(<<"v">>, 9000),
    send(S, <<"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ", Long/binary, "\r\n\r\n">>),
    {431, _, _} = recv_response(S),
    assert_closed(S),
    S2 = connect(Config),
    send(S2, <<"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ", Long/binary>>),
    {431, _, _} = recv_response(S2),
    assert_closed(S2).

too_many_headers_is_431(Config) ->
    Headers = fun(N) -> [[<<"X-H">>, integer_to_binary(I), <<": v\r\n">>] || I <- lists:seq(1, N)] end,
    S = connect(Config),
    send(S, [<<"GET / HTTP/1.1\r\n">>, Headers(101), <<"\r\n">>]),
    {431, _, _} = recv_response(S),
    assert_closed(S),
    %% 100 headers (Host included) are fine.
    S2 = connect(Config),
    send(S2, [<<"GET / HTTP/1.1\r\nHost: x\r\n">>, Headers(99), <<"\r\n">>]),
    {200, _, _} = recv_response(S2).

garbage_is_400(Config) ->
    S = connect(Config),
    send(S, <<"THIS IS NOT HTTP\r\n\r\n">>),
    {400, Headers, Body} = recv_response(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    ?assertMatch({_, _}, binary:match(Body, <<"malformed request line">>)),
    assert_closed(S),
    S2 = connect(Config),
    send(S2, <<0, 1, 2, 3, 255, 254, "\r\n\r\n">>),
    {400, _, _} = recv_response(S2),
    assert_closed(S2).

malformed_requests_are_400(Config) ->
    Bad = [<<"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n">>,
           <<"GET / HTTP/1.1\r\nHost: x\r\nX-Sp ace: v\r\n\r\n">>,
           <<"GET / HTTP/1.1\r\nHost : x\r\n\r\n">>,
           <<"GET / HTTP/1.1\r\n\r\n">>,                                    %% no Host
           <<"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n">>,              %% two Hosts
           <<"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n">>,                       %% bad escape
           <<"GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n  b\r\n\r\n">>,     %% obs-fold
           <<"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n">>,
           <<"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n">>,
           <<"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n">>,
           <<"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n">>,
           <<"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "2\r\nabc\r\n0\r\n\r\n">>,
           <<"GET /x\r\n">>],                                               %% HTTP/0.9
    lists:foreach(
      fun(Req) ->
              S = connect(Config),
              send(S, Req),
              case recv_response(S) of
                  {400, _, _} -> assert_closed(S);
                  Other -> ct:fail({expected_400, Req, Other})
              end
      end, Bad),
    S = connect(Config),
    send(S, <<"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n">>),
    {501, _, _} = recv_response(S),
    S2 = connect(Config),
    send(S2, <<"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\n">>),
    {417, _, _} = recv_response(S2).

http2_preface_is_rejected(Config) ->
    S = connect(Config),
    send(S, <<"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n">>),
    {505, _, _} = recv_response(S),
    assert_closed(S).

idle_keep_alive_connection_is_closed(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/">>)),
    {200, _, _} = recv_response(S),
    T0 = erlang:monotonic_time(millisecond),
    {error, closed} = gen_tcp:recv(S, 0, 5000),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 3000),
    %% A client that never sends anything is closed too.
    S2 = connect(Config),
    {error, closed} = gen_tcp:recv(S2, 0, 5000).

%% A body that stops coming: request_timeout counts from the end of the headers.
slow_request_is_408(Config) ->
    S = connect(Config),
    send(S, <<"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc">>),
    {408, _, Body} = recv_response(S),
    ?assertMatch({_, _}, binary:match(Body, <<"request_timeout">>)),
    assert_closed(S).

%% Slowloris: every byte arrives well inside request_timeout, but the
%% request line and headers are not complete within header_timeout (500 ms).
trickled_headers_are_408_after_header_timeout(Config) ->
    S = connect(Config),
    T0 = erlang:monotonic_time(millisecond),
    Trickler = spawn_link(fun() -> trickle(S, <<"GET / HTTP/1.1\r\nHost: x\r\n",
                                               (binary:copy(<<"X-Slow: 1\r\n">>, 100))/binary>>) end),
    {408, _, Body} = recv_response(S),
    Took = erlang:monotonic_time(millisecond) - T0,
    unlink(Trickler),
    exit(Trickler, kill),
    ?assertMatch({_, _}, binary:match(Body, <<"header_timeout">>)),
    %% Cut off near header_timeout, long before the 20 s request_timeout.
    ?assert(Took >= 400 andalso Took < 10000, {took, Took}),
    assert_closed(S),
    %% A request sent at once is still served.
    S2 = connect(Config),
    send(S2, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S2).

trickle(S, <<Byte:1/binary, Rest/binary>>) ->
    case gen_tcp:send(S, Byte) of
        ok -> timer:sleep(50), trickle(S, Rest);
        {error, _} -> ok
    end;
trickle(_S, <<>>) ->
    ok.

%% =============================================================================
%% websocket
%% =============================================================================

websocket_upgrade_is_101_with_the_rfc_accept(Config) ->
    S = connect(Config),
    %% Bytes sent right after the handshake must reach the WebSocket process.
    send(S, [ws_request(<<"/ws">>, []), <<"early">>]),
    {{101, Headers, <<>>}, Rest} = recv_response_buf(S, <<>>),
    ?assertEqual(?RFC_ACCEPT, header(<<"sec-websocket-accept">>, Headers)),
    ?assertEqual(<<"websocket">>, header(<<"upgrade">>, Headers)),
    ?assertEqual(<<"upgrade">>, lower(header(<<"connection">>, Headers))),
    ?assertEqual(<<"ws">>, header(<<"x-hornbeam-test">>, Headers)),
    ?assertEqual(undefined, header(<<"content-length">>, Headers)),
    %% The hand-off worked: the handler's frame, then the buffered bytes echoed.
    Want = <<16#81, 5, "hello", "early">>,
    ?assertEqual(Want, recv_exactly(S, Rest, byte_size(Want))),
    send(S, <<"raw bytes">>),
    ?assertEqual(<<"raw bytes">>, recv_exactly(S, <<>>, 9)),
    %% The connection process became the WebSocket process.
    [Pid] = hornbeam_conn_sup:connections(?config(ref, Config)),
    {current_stacktrace, Stack} = erlang:process_info(Pid, current_stacktrace),
    ?assert(lists:keymember(hornbeam_http_test_handler, 1, Stack), Stack).

websocket_refused_upgrade_is_403_and_keeps_alive(Config) ->
    S = connect(Config),
    send(S, ws_request(<<"/elsewhere">>, [])),
    {403, _, <<"forbidden\n">>} = recv_response(S),
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S).

bad_handshakes_are_400(Config) ->
    Cases =
        [{<<"Sec-WebSocket-Version">>, ws_request(<<"/ws">>, [{version, <<"8">>}])},
         {<<"missing Sec-WebSocket-Key">>, ws_request(<<"/ws">>, [{key, none}])},
         {<<"base64 encoding of 16 bytes">>, ws_request(<<"/ws">>, [{key, <<"not-base64!!">>}])},
         {<<"base64 encoding of 16 bytes">>, ws_request(<<"/ws">>, [{key, base64:encode(<<"short">>)}])},
         {<<"must be a GET">>, ws_request(<<"/ws">>, [{method, <<"POST">>}])},
         {<<"HTTP/1.1 or later">>, ws_request(<<"/ws">>, [{http, <<"HTTP/1.0">>}])},
         {<<"Connection header">>, ws_request(<<"/ws">>, [{connection, <<"keep-alive">>}])}],
    lists:foreach(
      fun({Why, Req}) ->
              S = connect(Config),
              send(S, Req),
              case recv_response(S) of
                  {400, Headers, Body} ->
                      ?assertMatch({_, _}, binary:match(Body, Why), Body),
                      case Why of
                          <<"Sec-WebSocket-Version">> ->
                              ?assertEqual(<<"13">>, header(<<"sec-websocket-version">>, Headers));
                          _ -> ok
                      end;
                  Other ->
                      ct:fail({expected_400, Req, Other})
              end,
              gen_tcp:close(S)
      end, Cases),
    %% `Connection: keep-alive, Upgrade' (Firefox) and a lowercase upgrade token are fine.
    S = connect(Config),
    send(S, ws_request(<<"/ws">>, [{connection, <<"keep-alive, Upgrade">>},
                                    {upgrade, <<"WebSocket">>}])),
    {{101, _, _}, _} = recv_response_buf(S, <<>>).

websocket_upgrade_crash_is_500(Config) ->
    S = connect(Config),
    send(S, ws_request(<<"/ws_crash">>, [])),
    {500, _, _} = recv_response(S),
    assert_closed(S).

handshake_eunit_tests_pass(_Config) ->
    ok = eunit:test(hornbeam_ws_handshake_tests, []).

%% =============================================================================
%% failures
%% =============================================================================

handler_crash_is_500_and_listener_keeps_serving(Config) ->
    Ref = ?config(ref, Config),
    Listener = whereis(hornbeam_http_opts:name(Ref, listener)),
    Other = connect(Config),
    send(Other, get_req(<<"/">>)),
    {200, _, _} = recv_response(Other),
    S = connect(Config),
    send(S, get_req(<<"/crash">>)),
    {500, Headers, <<"internal server error\n">>} = recv_response(S),
    ?assertEqual(<<"close">>, header(<<"connection">>, Headers)),
    assert_closed(S),
    %% Only that connection was affected.
    send(Other, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(Other),
    S2 = connect(Config),
    send(S2, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S2),
    ?assertEqual(Listener, whereis(hornbeam_http_opts:name(Ref, listener))).

handler_bad_return_is_500(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/bad_return">>)),
    {500, _, _} = recv_response(S),
    assert_closed(S).

%% A handler's header value with CR LF (or a 101's extra header with LF)
%% never reaches the wire: 500, then close.
handler_header_with_cr_lf_is_500(Config) ->
    S = connect(Config),
    send(S, get_req(<<"/bad_header">>)),
    {500, Headers, _} = recv_response(S),
    ?assertEqual(undefined, header(<<"x-injected">>, Headers)),
    ?assertEqual(undefined, header(<<"location">>, Headers)),
    assert_closed(S),
    S2 = connect(Config),
    send(S2, ws_request(<<"/ws_bad_header">>, [])),
    {500, _, _} = recv_response(S2),
    assert_closed(S2),
    ?assertEqual(ok, hornbeam_http_response:check_headers([{<<"x-a">>, [<<"1">>, "2"]}])),
    ?assertEqual({error, {bad_header_value, <<"x-a">>}},
                 hornbeam_http_response:check_headers([{<<"x-a">>, <<"1\r\n">>}])),
    ?assertEqual({error, {bad_header_name, <<"x\\0a">>}},
                 hornbeam_http_response:check_headers([{<<"x", 0, "a">>, <<"1">>}])),
    ?assertEqual({error, {not_iodata, <<"x-a">>}},
                 hornbeam_http_response:check_headers([{<<"x-a">>, an_atom}])).

silent_clients_do_not_hurt_the_listener(Config) ->
    Ref = ?config(ref, Config),
    [begin S = connect(Config), gen_tcp:close(S) end || _ <- lists:seq(1, 50)],
    %% Half-close without a request, and a partial request then close.
    S1 = connect(Config),
    ok = gen_tcp:shutdown(S1, write),
    {error, closed} = gen_tcp:recv(S1, 0, 5000),
    S2 = connect(Config),
    send(S2, <<"GET / HT">>),
    gen_tcp:close(S2),
    S3 = connect(Config),
    send(S3, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S3),
    gen_tcp:close(S3),
    ok = wait_until(fun() -> hornbeam_conn_limiter:count(Ref) =:= 0 end).

listener_restart_keeps_live_connections(Config) ->
    Ref = ?config(ref, Config),
    Live = connect(Config),
    send(Live, get_req(<<"/">>)),
    {200, _, _} = recv_response(Live),
    Listener = whereis(hornbeam_http_opts:name(Ref, listener)),
    exit(Listener, kill),
    ok = wait_until(fun() ->
                            New = whereis(hornbeam_http_opts:name(Ref, listener)),
                            is_pid(New) andalso New =/= Listener
                    end),
    %% The live connection was not touched...
    send(Live, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(Live),
    %% ...and the new listen socket serves on the same port (also with port 0).
    Port = hornbeam_listener:port(Ref),
    ?assertEqual(?config(port, Config), Port),
    S = connect([{port, Port}]),
    send(S, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(S).

two_listeners_run_side_by_side(Config) ->
    {Sup2, Port2} = start_listener(#{ref => t_second_listener}),
    try
        ?assertNotEqual(Port2, ?config(port, Config)),
        [begin
             S = connect([{port, P}]),
             send(S, get_req(<<"/">>)),
             {200, _, <<"hello">>} = recv_response(S)
         end || P <- [Port2, ?config(port, Config)]]
    after
        stop_listener(Sup2)
    end.

bad_options_are_refused(_Config) ->
    ?assertEqual({error, {missing_option, handler}}, hornbeam_listener_sup:start_link(#{})),
    ?assertEqual({error, {bad_option, port, -1}},
                 hornbeam_listener_sup:start_link(#{handler => ?HANDLER, port => -1})),
    ?assertEqual({error, {unknown_option, colour}},
                 hornbeam_listener_sup:start_link(#{handler => ?HANDLER, colour => blue})),
    ?assertEqual({error, {bad_option, ip, {1, 2, 3}}},
                 hornbeam_listener_sup:start_link(#{handler => ?HANDLER, ip => {1, 2, 3}})),
    ?assertEqual({error, {bad_option, header_timeout, 0}},
                 hornbeam_listener_sup:start_link(#{handler => ?HANDLER, header_timeout => 0})),
    ?assertEqual(10000, maps:get(header_timeout, hornbeam_http_opts:defaults())).

%% =============================================================================
%% max_connections
%% =============================================================================

third_client_waits_until_one_closes(Config) ->
    Ref = ?config(ref, Config),
    [A, B] = [begin
                  S = connect(Config),
                  send(S, get_req(<<"/">>)),
                  {200, _, _} = recv_response(S),
                  S
              end || _ <- [1, 2]],
    ?assertEqual(2, hornbeam_conn_limiter:count(Ref)),
    C = connect(Config),                           %% the kernel completes the handshake...
    send(C, get_req(<<"/">>)),
    ?assertEqual({error, timeout}, gen_tcp:recv(C, 0, 500)),   %% ...but nobody serves it
    gen_tcp:close(A),
    {200, _, <<"hello">>} = recv_response(C),
    ?assertEqual(2, hornbeam_conn_limiter:count(Ref)),
    send(B, get_req(<<"/">>)),
    {200, _, <<"hello">>} = recv_response(B).

killed_connection_frees_its_slot(Config) ->
    Ref = ?config(ref, Config),
    A = connect(Config),
    send(A, get_req(<<"/">>)),
    {200, _, _} = recv_response(A),
    [Pid] = hornbeam_conn_sup:connections(Ref),
    B = connect(Config),
    send(B, get_req(<<"/">>)),
    ?assertEqual({error, timeout}, gen_tcp:recv(B, 0, 500)),
    exit(Pid, kill),
    {200, _, <<"hello">>} = recv_response(B),
    {error, closed} = gen_tcp:recv(A, 0, 5000),
    ?assertEqual(1, hornbeam_conn_limiter:count(Ref)).

websocket_holds_its_slot_until_it_ends(Config) ->
    Ref = ?config(ref, Config),
    Ws = connect(Config),
    send(Ws, ws_request(<<"/ws">>, [])),
    {{101, _, _}, _} = recv_response_buf(Ws, <<>>),
    B = connect(Config),
    send(B, get_req(<<"/">>)),
    ?assertEqual({error, timeout}, gen_tcp:recv(B, 0, 500)),
    ?assertEqual(1, hornbeam_conn_limiter:count(Ref)),
    gen_tcp:close(Ws),
    {200, _, <<"hello">>} = recv_response(B).

%% =============================================================================
%% binding
%% =============================================================================

ipv6_loopback(_Config) ->
    case gen_tcp:listen(0, [inet6, {ip, {0, 0, 0, 0, 0, 0, 0, 1}}]) of
        {ok, Probe} ->
            gen_tcp:close(Probe),
            {Sup, Port} = start_listener(#{ref => t_ipv6, ip => {0, 0, 0, 0, 0, 0, 0, 1}}),
            try
                {ok, S} = gen_tcp:connect({0, 0, 0, 0, 0, 0, 0, 1}, Port,
                                          [binary, {active, false}, inet6], 5000),
                send(S, get_req(<<"/echo">>)),
                {200, _, Body} = recv_response(S),
                ?assertMatch({_, _}, binary:match(Body, <<"peer=::1">>))
            after
                stop_listener(Sup)
            end;
        {error, Reason} ->
            {skip, {no_ipv6_loopback, Reason}}
    end.

bind_parse(_Config) ->
    Cases = [{"127.0.0.1:8000", {ok, {{127, 0, 0, 1}, 8000}}},
             {<<"0.0.0.0:80">>, {ok, {{0, 0, 0, 0}, 80}}},
             {"[::]:4000", {ok, {{0, 0, 0, 0, 0, 0, 0, 0}, 4000}}},
             {"[::1]", {ok, {{0, 0, 0, 0, 0, 0, 0, 1}, 8000}}},
             {"::1", {ok, {{0, 0, 0, 0, 0, 0, 0, 1}, 8000}}},
             {"localhost:80", {ok, {{127, 0, 0, 1}, 80}}},
             {<<"localhost">>, {ok, {{127, 0, 0, 1}, 8000}}},
             {":9000", {ok, {{127, 0, 0, 1}, 9000}}},
             {"9000", {ok, {{127, 0, 0, 1}, 9000}}},
             {"", {ok, {{127, 0, 0, 1}, 8000}}},
             {"  10.1.2.3:0  ", {ok, {{10, 1, 2, 3}, 0}}},
             {"127.0.0.1:65536", {error, {bad_port, "65536"}}},
             {"127.0.0.1:http", {error, {bad_port, "http"}}},
             {"[::1]:x", {error, {bad_port, "x"}}},
             {"[::1", {error, {bad_host, "[::1"}}},
             {"300.1.1.1:80", {error, {bad_host, "300.1.1.1"}}},
             {"bad host!:80", {error, {bad_host, "bad host!"}}},
             {"unix:/tmp/sock", {error, unix_socket_unsupported}}],
    [?assertEqual(Want, hornbeam_http_bind:parse(In), In) || {In, Want} <- Cases],
    ?assertEqual({{127, 0, 0, 1}, 8000}, hornbeam_http_bind:default()).

%% =============================================================================
%% pure helpers
%% =============================================================================

query_string_parsing(_Config) ->
    P = fun hornbeam_http_req:parse_query/1,
    ?assertEqual([], P(<<>>)),
    ?assertEqual([{<<"a">>, <<"1">>}, {<<"b">>, <<"x y">>}, {<<"c">>, <<>>},
                  {<<"d">>, <<"A=">>}, {<<"a">>, <<"2">>}],
                 P(<<"a=1&b=x+y&c&&d=%41%3D&a=2">>)),
    ?assertEqual([{<<"k y">>, <<"100%">>}, {<<"z">>, <<"%zz">>}], P(<<"k+y=100%&z=%zz">>)),
    ?assertEqual([{<<"vsn">>, <<"2.0.0">>}],
                 hornbeam_http_req:query_params(#{query => <<"vsn=2.0.0">>})),
    Req = #{headers => [{<<"connection">>, <<"keep-alive, Upgrade">>},
                        {<<"x">>, <<"1">>}, {<<"x">>, <<"2">>}]},
    ?assertEqual(<<"1">>, hornbeam_http_req:header(<<"x">>, Req)),
    ?assertEqual(undefined, hornbeam_http_req:header(<<"y">>, Req)),
    ?assertEqual(none, hornbeam_http_req:header(<<"y">>, Req, none)),
    ?assertEqual([<<"1">>, <<"2">>], hornbeam_http_req:headers(<<"x">>, Req)),
    ?assertEqual([<<"keep-alive">>, <<"upgrade">>],
                 hornbeam_http_req:header_tokens(<<"connection">>, Req)),
    ?assert(hornbeam_http_req:has_token(<<"connection">>, <<"UPGRADE">>, Req)).

percent_decoding(_Config) ->
    D = fun hornbeam_http_req:percent_decode/1,
    ?assertEqual({ok, <<"/a b/c+d">>}, D(<<"/a%20b%2fc+d">>)),
    ?assertEqual({ok, <<"/plain">>}, D(<<"/plain">>)),
    ?assertEqual({ok, <<"é"/utf8>>}, D(<<"%C3%A9">>)),
    ?assertEqual(error, D(<<"/%zz">>)),
    ?assertEqual(error, D(<<"/%4">>)),
    ?assertEqual({<<"/p">>, <<"q=1">>}, hornbeam_http_req:split_target(<<"/p?q=1#frag">>)),
    ?assertEqual({<<"/p">>, <<>>}, hornbeam_http_req:split_target(<<"/p">>)).

chunked_decoder_accepts_any_split(_Config) ->
    Wire = <<"4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\nNEXT">>,
    Want = <<"Wikipedia in\r\n\r\nchunks.">>,
    New = fun() -> hornbeam_http_chunked:new(1000, 100, 10) end,
    %% Fed in one piece, and split at every possible point.
    {done, Want, <<"NEXT">>} = hornbeam_http_chunked:decode(Wire, New()),
    [begin
         <<A:I/binary, B/binary>> = Wire,
         {more, Unused, St} = hornbeam_http_chunked:decode(A, New()),
         {done, Want, <<"NEXT">>} = hornbeam_http_chunked:decode(<<Unused/binary, B/binary>>, St)
     end || I <- lists:seq(0, byte_size(Wire) - 5)],
    ?assertEqual({error, too_large},
                 hornbeam_http_chunked:decode(Wire, hornbeam_http_chunked:new(10, 100, 10))),
    ?assertEqual({error, bad_chunk}, hornbeam_http_chunked:decode(<<"x\r\n">>, New())),
    ?assertEqual({error, bad_chunk}, hornbeam_http_chunked:decode(<<"1\r\nab\r\n">>, New())),
    ?assertEqual({error, line_too_long},
                 hornbeam_http_chunked:decode(binary:copy(<<"0">>, 200), New())),
    ?assertEqual({error, too_many_trailers},
                 hornbeam_http_chunked:decode(<<"0\r\nA: 1\r\nB: 2\r\n\r\n">>,
                                              hornbeam_http_chunked:new(10, 100, 1))).

date_header_format(_Config) ->
    ?assertEqual(<<"Sun, 06 Nov 1994 08:49:37 GMT">>,
                 hornbeam_http_response:date({{1994, 11, 6}, {8, 49, 37}})),
    ?assertMatch(<<_:3/binary, ", ", _:2/binary, " ", _:3/binary, " ", _:4/binary, " ",
                   _:8/binary, " GMT">>, hornbeam_http_response:date()).

%% =============================================================================
%% client helpers
%% =============================================================================

connect(Config) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                              [binary, {active, false}, {packet, raw}, {nodelay, true}], 5000),
    S.

send(S, Data) ->
    ok = gen_tcp:send(S, Data).

get_req(Path) ->
    <<"GET ", Path/binary, " HTTP/1.1\r\nHost: localhost\r\n\r\n">>.

ws_request(Path, Opts) ->
    Method = proplists:get_value(method, Opts, <<"GET">>),
    Http = proplists:get_value(http, Opts, <<"HTTP/1.1">>),
    Key = proplists:get_value(key, Opts, ?RFC_KEY),
    Version = proplists:get_value(version, Opts, <<"13">>),
    Connection = proplists:get_value(connection, Opts, <<"Upgrade">>),
    Upgrade = proplists:get_value(upgrade, Opts, <<"websocket">>),
    [Method, <<" ">>, Path, <<" ">>, Http, <<"\r\nHost: localhost\r\n">>,
     <<"Upgrade: ">>, Upgrade, <<"\r\nConnection: ">>, Connection, <<"\r\n">>,
     case Key of none -> []; _ -> [<<"Sec-WebSocket-Key: ">>, Key, <<"\r\n">>] end,
     <<"Sec-WebSocket-Version: ">>, Version, <<"\r\n">>,
     case Method of <<"POST">> -> <<"Content-Length: 0\r\n">>; _ -> [] end,
     <<"\r\n">>].

%% One response (anything after it is dropped).
recv_response(S) ->
    {Response, _Rest} = recv_response_buf(S, <<>>),
    Response.

recv_response_buf(S, Buf) ->
    {Status, Headers, Body, Rest} = recv_response(S, Buf, get),
    {{Status, Headers, Body}, Rest}.

recv_response(S, Buf, Method) ->
    case erlang:decode_packet(http_bin, Buf, []) of
        {more, _} ->
            recv_response(S, <<Buf/binary, (recv(S))/binary>>, Method);
        {ok, {http_response, _Version, Status, _Reason}, Rest} ->
            {Headers, Rest1} = recv_headers(S, Rest, []),
            Length = case header(<<"content-length">>, Headers) of
                         undefined -> 0;
                         L -> binary_to_integer(L)
                     end,
            case Method =:= head orelse Status < 200 of
                true ->
                    {Status, Headers, <<>>, Rest1};
                false ->
                    <<Body:Length/binary, Rest2/binary>> = recv_at_least(S, Rest1, Length),
                    {Status, Headers, Body, Rest2}
            end
    end.

recv_headers(S, Buf, Acc) ->
    case erlang:decode_packet(httph_bin, Buf, []) of
        {more, _} ->
            recv_headers(S, <<Buf/binary, (recv(S))/binary>>, Acc);
        {ok, {http_header, _, Field, _, Value}, Rest} ->
            recv_headers(S, Rest, [{lower(field(Field)), Value} | Acc]);
        {ok, http_eoh, Rest} ->
            {lists:reverse(Acc), Rest}
    end.

field(F) when is_atom(F) -> atom_to_binary(F);
field(F) -> F.

%% Buf, with more read until it holds at least N bytes.
recv_at_least(_S, Buf, N) when byte_size(Buf) >= N ->
    Buf;
recv_at_least(S, Buf, N) ->
    recv_at_least(S, <<Buf/binary, (recv(S))/binary>>, N).

%% Exactly the first N bytes (reading more when needed).
recv_exactly(S, Buf, N) ->
    binary:part(recv_at_least(S, Buf, N), 0, N).

recv(S) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, Data} -> Data;
        {error, Reason} -> ct:fail({recv, Reason})
    end.

assert_closed(S) ->
    case gen_tcp:recv(S, 0, 5000) of
        {error, closed} -> ok;
        {error, econnreset} -> ok;
        Other -> ct:fail({expected_close, Other})
    end.

header(Name, Headers) ->
    proplists:get_value(Name, Headers).

lower(undefined) -> undefined;
lower(B) -> hornbeam_http_req:lowercase(B).

%% The connection process serving the one client of this test's listener.
conn_pid(Config) ->
    Ref = ?config(ref, Config),
    ok = wait_until(fun() -> length(hornbeam_conn_sup:connections(Ref)) =:= 1 end),
    [Pid] = hornbeam_conn_sup:connections(Ref),
    Pid.

%% Samples Pid's heap plus the binaries it references, and the VM's total
%% memory, every few ms; stop_sampler/1 gives {PeakOfPid, PeakVmGrowth}.
memory_sampler(Pid) ->
    erlang:garbage_collect(),
    spawn_link(fun() -> sample(Pid, erlang:memory(total), {0, 0}) end).

sample(Pid, Base, {Peak, VmPeak}) ->
    receive
        {stop, From} -> From ! {peak, self(), {Peak, VmPeak}}
    after 2 ->
        Vm = max(VmPeak, erlang:memory(total) - Base),
        case erlang:process_info(Pid, [memory, binary]) of
            [{memory, Heap}, {binary, Bins}] ->
                Bytes = Heap + lists:sum([Size || {_, Size, _} <- Bins]),
                sample(Pid, Base, {max(Peak, Bytes), Vm});
            undefined ->
                sample(Pid, Base, {Peak, Vm})
        end
    end.

stop_sampler(Sampler) ->
    Sampler ! {stop, self()},
    receive {peak, Sampler, Peak} -> Peak after 10000 -> ct:fail(sampler_did_not_answer) end.

wait_until(Fun) ->
    wait_until(Fun, 100).

wait_until(_Fun, 0) ->
    timeout;
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(50), wait_until(Fun, N - 1)
    end.
