%% The HTTP publishing API (hornbeam_api) on real sockets: raw HTTP/1.1 over
%% loopback, and a real WebSocket client joined to an Erlang channel that
%% must (or must not) receive what the API broadcasts.
-module(hornbeam_api_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(C, hornbeam_ws_client).
-define(KEY, <<"s3cret-key">>).
-define(TIMEOUT, 10000).

all() ->
    [broadcast_reaches_a_joined_websocket_client,
     wrong_key_is_401_and_delivers_nothing,
     missing_or_malformed_authorization_is_401_and_delivers_nothing,
     without_a_key_the_api_does_not_exist,
     bad_json_and_wrong_fields_are_400_with_a_json_error,
     other_methods_are_405,
     unknown_api_call_is_404,
     presence_lists_who_is_on_a_topic,
     disconnect_closes_the_sockets_with_that_id,
     body_over_max_body_length_is_413,
     key_is_kept_sealed_in_the_endpoint_config,
     empty_api_key_is_a_bad_option].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(hornbeam),
    Config.

end_per_suite(_Config) ->
    ok = application:stop(hornbeam).

init_per_testcase(TC, Config) ->
    _ = hornbeam:stop(),
    Opts = maps:merge(#{bind => "127.0.0.1:0",
                        channels => [{<<"room:*">>, hornbeam_test_channel}],
                        api_key => ?KEY},
                      testcase_opts(TC)),
    case TC of
        empty_api_key_is_a_bad_option -> ok;
        _ -> ok = hornbeam:start(none, Opts)
    end,
    [{port, catch hornbeam:port()} | Config].

end_per_testcase(_TC, _Config) ->
    _ = hornbeam:stop(),
    ok.

testcase_opts(without_a_key_the_api_does_not_exist) -> #{api_key => undefined};
testcase_opts(body_over_max_body_length_is_413) -> #{max_body_length => 100};
testcase_opts(disconnect_closes_the_sockets_with_that_id) -> #{connect => fun ?MODULE:connect_as_user/2};
testcase_opts(_) -> #{}.

%% The endpoint's connect: the socket id is "user:" ++ the `user' param.
connect_as_user(#{<<"user">> := User}, _Info) -> {ok, #{}, <<"user:", User/binary>>};
connect_as_user(_Params, _Info) -> {ok, #{}}.

%% --- cases ---------------------------------------------------------------------

broadcast_reaches_a_joined_websocket_client(Config) ->
    C = joined(Config, <<"room:1">>),
    {Status, Headers, Body} = post(Config, "/hornbeam/api/broadcast", bearer(?KEY),
                                   #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>,
                                     <<"payload">> => #{<<"n">> => 1, <<"s">> => <<"é"/utf8>>}}),
    ?assertEqual(200, Status),
    ?assertEqual(<<"application/json">>, proplists:get_value(<<"content-type">>, Headers)),
    ?assertEqual({ok, #{<<"ok">> => true}}, hornbeam_nif:json_decode(Body)),
    ?assertEqual([null, null, <<"room:1">>, <<"news">>, #{<<"n">> => 1, <<"s">> => <<"é"/utf8>>}],
                 ?C:recv_json(C)),
    %% the scheme name is case-insensitive (RFC 7235)
    {200, _, _} = post(Config, "/hornbeam/api/broadcast", [{"Authorization", ["BEARER ", ?KEY]}],
                       #{<<"topic">> => <<"room:1">>, <<"event">> => <<"again">>, <<"payload">> => #{}}),
    ?assertMatch([null, null, <<"room:1">>, <<"again">>, #{}], ?C:recv_json(C)).

wrong_key_is_401_and_delivers_nothing(Config) ->
    C = joined(Config, <<"room:1">>),
    Msg = #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>, <<"payload">> => #{}},
    lists:foreach(
      fun(Key) ->
              {Status, Headers, Body} = post(Config, "/hornbeam/api/broadcast", bearer(Key), Msg),
              ?assertEqual(401, Status),
              ?assertEqual(<<"Bearer">>, proplists:get_value(<<"www-authenticate">>, Headers)),
              ?assertEqual({ok, #{<<"error">> => <<"unauthorized">>}}, hornbeam_nif:json_decode(Body))
      end, [<<"wrong">>, <<?KEY/binary, "x">>, binary:part(?KEY, 0, 5), <<"S3CRET-KEY">>]),
    ?assertEqual(timeout, next_event(C, 1000)).

missing_or_malformed_authorization_is_401_and_delivers_nothing(Config) ->
    C = joined(Config, <<"room:1">>),
    Msg = #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>, <<"payload">> => #{}},
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/broadcast", [], Msg)),
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/broadcast", [{"Authorization", "Bearer "}], Msg)),
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/broadcast",
                                   [{"Authorization", ["Basic ", ?KEY]}], Msg)),
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/broadcast", [{"Authorization", ?KEY}], Msg)),
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/presence", [], #{<<"topic">> => <<"room:1">>})),
    ?assertEqual(timeout, next_event(C, 1000)).

without_a_key_the_api_does_not_exist(Config) ->
    C = joined(Config, <<"room:1">>),
    Msg = #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>, <<"payload">> => #{}},
    ?assertMatch({404, _, _}, post(Config, "/hornbeam/api/broadcast", bearer(?KEY), Msg)),
    ?assertMatch({404, _, _}, post(Config, "/hornbeam/api/broadcast", [], Msg)),
    ?assertMatch({404, _, _}, post(Config, "/hornbeam/api/presence", bearer(?KEY), #{<<"topic">> => <<"x">>})),
    ?assertEqual(timeout, next_event(C, 1000)).

bad_json_and_wrong_fields_are_400_with_a_json_error(Config) ->
    C = joined(Config, <<"room:1">>),
    Good = #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>, <<"payload">> => #{}},
    Bad = [<<"{not json">>, <<"[1,2]">>, <<"\"room:1\"">>, <<>>,
           json(maps:remove(<<"topic">>, Good)), json(maps:remove(<<"event">>, Good)),
           json(maps:remove(<<"payload">>, Good)),
           json(Good#{<<"topic">> => 1}), json(Good#{<<"topic">> => <<>>}),
           json(Good#{<<"event">> => null}), json(Good#{<<"event">> => <<>>}),
           json(Good#{<<"payload">> => [1]}), json(Good#{<<"payload">> => <<"text">>}),
           json(Good#{<<"payload">> => null})],
    lists:foreach(
      fun(Body) ->
              {Status, Headers, Reply} = request(Config, "POST", "/hornbeam/api/broadcast", bearer(?KEY), Body),
              ?assertEqual({400, Body}, {Status, Body}),
              ?assertEqual(<<"application/json">>, proplists:get_value(<<"content-type">>, Headers)),
              ?assertMatch({ok, #{<<"error">> := <<_/binary>>}}, hornbeam_nif:json_decode(Reply))
      end, Bad),
    lists:foreach(
      fun(Body) ->
              ?assertMatch({400, _, _}, request(Config, "POST", "/hornbeam/api/presence", bearer(?KEY), Body))
      end, [<<"nope">>, json(#{}), json(#{<<"topic">> => 5}), json(#{<<"topic">> => <<>>})]),
    ?assertEqual(timeout, next_event(C, 1000)),
    %% and the server still serves
    ?assertMatch({200, _, _}, post(Config, "/hornbeam/api/broadcast", bearer(?KEY), Good)),
    ?assertMatch([null, null, <<"room:1">>, <<"news">>, #{}], ?C:recv_json(C)).

other_methods_are_405(Config) ->
    lists:foreach(
      fun({Method, Path}) ->
              {Status, Headers, _} = request(Config, Method, Path, bearer(?KEY), <<>>),
              ?assertEqual({405, Method, Path}, {Status, Method, Path}),
              ?assertEqual(<<"POST">>, proplists:get_value(<<"allow">>, Headers))
      end, [{M, P} || M <- ["GET", "PUT", "DELETE", "PATCH"],
                      P <- ["/hornbeam/api/broadcast", "/hornbeam/api/presence",
                            "/hornbeam/api/disconnect"]]).

unknown_api_call_is_404(Config) ->
    ?assertMatch({404, _, _}, post(Config, "/hornbeam/api/kick", bearer(?KEY), #{})),
    %% paths outside the API are answered as before
    ?assertMatch({404, _, _}, post(Config, "/hornbeam/apix", bearer(?KEY), #{})).

presence_lists_who_is_on_a_topic(Config) ->
    Empty = post(Config, "/hornbeam/api/presence", bearer(?KEY), #{<<"topic">> => <<"room:p">>}),
    ?assertMatch({200, _, _}, Empty),
    ?assertEqual({ok, #{<<"presences">> => #{}}}, hornbeam_nif:json_decode(element(3, Empty))),
    C = connect(Config),
    ?assertMatch([_, _, <<"room:p">>, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                 join(C, <<"room:p">>, #{<<"mode">> => <<"track">>, <<"key">> => <<"alice">>,
                                          <<"meta">> => #{<<"role">> => <<"admin">>}})),
    %% the tracker applies the join asynchronously: ask until alice is there
    Listed = until(fun() ->
                           {200, _, Body} = post(Config, "/hornbeam/api/presence", bearer(?KEY),
                                                 #{<<"topic">> => <<"room:p">>}),
                           {ok, #{<<"presences">> := P}} = hornbeam_nif:json_decode(Body),
                           case maps:size(P) of 0 -> false; _ -> {true, P} end
                   end, 100),
    ?assertMatch(#{<<"alice">> := #{<<"metas">> := [#{<<"role">> := <<"admin">>}]}}, Listed),
    ?assertEqual(hornbeam_presence:list(<<"room:p">>), Listed).

body_over_max_body_length_is_413(Config) ->
    C = joined(Config, <<"room:1">>),
    Big = #{<<"topic">> => <<"room:1">>, <<"event">> => <<"news">>,
            <<"payload">> => #{<<"x">> => binary:copy(<<"a">>, 200)}},
    ?assertMatch({413, _, _}, post(Config, "/hornbeam/api/broadcast", bearer(?KEY), Big)),
    ?assertEqual(timeout, next_event(C, 1000)).

key_is_kept_sealed_in_the_endpoint_config(_Config) ->
    %% What crash reports and sys:get_status print: the endpoint's child spec
    %% and config hold no copy of the key as text.
    Children = supervisor:which_children(hornbeam_sup),
    Specs = [supervisor:get_childspec(hornbeam_sup, Id) || {Id, _, _, _} <- Children],
    Printed = iolist_to_binary(io_lib:format("~p", [Specs])),
    ?assertEqual(nomatch, binary:match(Printed, ?KEY)),
    {ok, Cfg} = hornbeam_endpoint:config(#{api_key => ?KEY}),
    ?assertEqual(nomatch, binary:match(iolist_to_binary(io_lib:format("~p", [Cfg])), ?KEY)).

disconnect_closes_the_sockets_with_that_id(Config) ->
    [Ana1, Ana2, Bob] = [begin
                             {ok, C} = ?C:connect(?config(port, Config), "/ws?vsn=2.0.0&user=" ++ U),
                             ?assertMatch([_, _, _, <<"phx_reply">>, #{<<"status">> := <<"ok">>}],
                                          join(C, <<"room:1">>, #{})),
                             C
                         end || U <- ["ana", "ana", "bob"]],
    ?assertMatch({401, _, _}, post(Config, "/hornbeam/api/disconnect", bearer(<<"wrong">>),
                                   #{<<"id">> => <<"user:ana">>})),
    ?assertEqual(timeout, next_event(Ana1, 500)),
    [?assertMatch({400, _, _}, post(Config, "/hornbeam/api/disconnect", bearer(?KEY), Body))
     || Body <- [#{}, #{<<"id">> => <<>>}, #{<<"id">> => 42}, #{<<"id">> => binary:copy(<<"x">>, 256)}]],
    {200, _, Body} = post(Config, "/hornbeam/api/disconnect", bearer(?KEY), #{<<"id">> => <<"user:ana">>}),
    ?assertEqual({ok, #{<<"ok">> => true}}, hornbeam_nif:json_decode(Body)),
    ?assertEqual(4000, ?C:expect_closed(Ana1, ?TIMEOUT)),
    ?assertEqual(4000, ?C:expect_closed(Ana2, ?TIMEOUT)),
    ?assertEqual(timeout, next_event(Bob, 500)),
    %% an id nobody has is fine
    ?assertMatch({200, _, _}, post(Config, "/hornbeam/api/disconnect", bearer(?KEY), #{<<"id">> => <<"user:zed">>})).

empty_api_key_is_a_bad_option(_Config) ->
    ?assertMatch({error, _}, hornbeam:start(none, #{bind => "127.0.0.1:0", api_key => <<>>})),
    ?assertMatch({error, {bad_option, api_key, _}}, hornbeam_endpoint:config(#{api_key => 42})).

%% --- helpers -------------------------------------------------------------------

connect(Config) ->
    {ok, C} = ?C:connect(?config(port, Config), "/ws?vsn=2.0.0"),
    C.

join(C, Topic, Payload) ->
    ok = ?C:push(C, <<"1">>, <<"1">>, Topic, <<"phx_join">>, Payload),
    ?C:recv_json(C).

joined(Config, Topic) ->
    C = connect(Config),
    ?assertMatch([_, _, Topic, <<"phx_reply">>, #{<<"status">> := <<"ok">>}], join(C, Topic, #{})),
    C.

%% The next frame other than presence_state (which follows every join), or
%% timeout: what the API must not have delivered.
next_event(C, Timeout) ->
    case ?C:recv(C, Timeout) of
        {text, Text} = Frame ->
            case hornbeam_nif:json_decode(Text) of
                {ok, [_, _, _, <<"presence_state">>, _]} -> next_event(C, Timeout);
                _ -> Frame
            end;
        Other -> Other
    end.

bearer(Key) -> [{"Authorization", ["Bearer ", Key]}].

json(Term) ->
    {ok, Json} = hornbeam_nif:json_encode(Term),
    Json.

post(Config, Path, Headers, Term) ->
    request(Config, "POST", Path, Headers, json(Term)).

%% One HTTP/1.1 request on a fresh loopback connection; the server closes it.
request(Config, Method, Path, Headers, Body) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                              [binary, {active, false}, {packet, raw}], ?TIMEOUT),
    Req = [Method, " ", Path, " HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n",
           "content-type: application/json\r\n",
           [[N, ": ", V, "\r\n"] || {N, V} <- Headers],
           "content-length: ", integer_to_list(iolist_size(Body)), "\r\n\r\n", Body],
    ok = gen_tcp:send(S, Req),
    Raw = read_all(S, <<>>),
    ok = gen_tcp:close(S),
    parse_response(Raw).

read_all(S, Acc) ->
    case gen_tcp:recv(S, 0, ?TIMEOUT) of
        {ok, Data} -> read_all(S, <<Acc/binary, Data/binary>>);
        {error, closed} -> Acc
    end.

parse_response(Raw) ->
    [Head, Body] = binary:split(Raw, <<"\r\n\r\n">>),
    [StatusLine | HeaderLines] = binary:split(Head, <<"\r\n">>, [global]),
    [_, Code | _] = binary:split(StatusLine, <<" ">>, [global]),
    Headers = [begin
                   [N, V] = binary:split(L, <<":">>),
                   {string:lowercase(N), string:trim(V)}
               end || L <- HeaderLines],
    {binary_to_integer(Code), Headers, Body}.

until(_Fun, 0) -> ct:fail(condition_never_met);
until(Fun, N) ->
    case Fun() of
        {true, Value} -> Value;
        false -> timer:sleep(100), until(Fun, N - 1)
    end.
