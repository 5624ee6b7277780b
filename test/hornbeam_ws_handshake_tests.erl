%% @doc EUnit tests of hornbeam_ws_handshake: handshake validation and the
%% origin policies (`default', `false', allow-lists with scheme, host-only
%% and wildcard entries). Also run from hornbeam_http_SUITE.
-module(hornbeam_ws_handshake_tests).

-include_lib("eunit/include/eunit.hrl").

-define(KEY, <<"dGhlIHNhbXBsZSBub25jZQ==">>).

req(Headers) ->
    req(<<"GET">>, {1, 1}, Headers).

req(Method, Version, Headers) ->
    #{method => Method, path => <<"/ws">>, raw_path => <<"/ws">>, query => <<>>,
      version => Version, headers => Headers, body => <<>>,
      peer => {{127, 0, 0, 1}, 1}, sock => {{127, 0, 0, 1}, 8000}, scheme => <<"http">>}.

good_headers() ->
    [{<<"host">>, <<"example.com">>}, {<<"upgrade">>, <<"websocket">>},
     {<<"connection">>, <<"Upgrade">>}, {<<"sec-websocket-key">>, ?KEY},
     {<<"sec-websocket-version">>, <<"13">>}].

replace(Name, Value, Headers) ->
    lists:keystore(Name, 1, Headers, {Name, Value}).

%% --- validate -------------------------------------------------------------------------

rfc_example_key_gives_the_rfc_accept_test() ->
    ?assertEqual({ok, <<"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=">>},
                 hornbeam_ws_handshake:validate(req(good_headers()))),
    ?assertEqual(<<"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=">>, hornbeam_ws_handshake:accept_key(?KEY)).

tokens_are_case_insensitive_and_listed_test() ->
    H = replace(<<"connection">>, <<"keep-alive, UPGRADE">>,
                replace(<<"upgrade">>, <<"WebSocket">>, good_headers())),
    ?assertMatch({ok, _}, hornbeam_ws_handshake:validate(req(H))).

bad_handshakes_test_() ->
    G = good_headers(),
    Cases = [{method_not_get, req(<<"POST">>, {1, 1}, G)},
             {http_version, req(<<"GET">>, {1, 0}, G)},
             {no_upgrade_websocket, req(replace(<<"upgrade">>, <<"h2c">>, G))},
             {no_upgrade_websocket, req(lists:keydelete(<<"upgrade">>, 1, G))},
             {no_connection_upgrade, req(replace(<<"connection">>, <<"keep-alive">>, G))},
             {unsupported_version, req(replace(<<"sec-websocket-version">>, <<"8">>, G))},
             {unsupported_version, req(lists:keydelete(<<"sec-websocket-version">>, 1, G))},
             {missing_key, req(lists:keydelete(<<"sec-websocket-key">>, 1, G))},
             {bad_key, req(replace(<<"sec-websocket-key">>, <<"not base64">>, G))},
             {bad_key, req(replace(<<"sec-websocket-key">>, base64:encode(<<"15 bytes only..">>), G))},
             {bad_key, req(replace(<<"sec-websocket-key">>, base64:encode(<<"seventeen bytes!!">>), G))},
             {bad_key, req(G ++ [{<<"sec-websocket-key">>, ?KEY}])}],
    [{atom_to_list(Why), ?_assertEqual({error, Why}, hornbeam_ws_handshake:validate(Req))}
     || {Why, Req} <- Cases].

every_error_has_a_message_test() ->
    [?assert(is_binary(hornbeam_ws_handshake:format_error(E)))
     || E <- [method_not_get, http_version, no_upgrade_websocket, no_connection_upgrade,
              missing_key, bad_key, unsupported_version]].

%% --- check_origin -----------------------------------------------------------------------

origin(Host, Origin) ->
    req([{<<"host">>, Host} | [{<<"origin">>, Origin} || Origin =/= none]]).

check(Host, Origin, Policy) ->
    hornbeam_ws_handshake:check_origin(origin(Host, Origin), Policy).

default_policy_test_() ->
    Ok = [{<<"example.com">>, none},
          {<<"example.com">>, <<"http://example.com">>},
          {<<"example.com">>, <<"https://example.com">>},
          {<<"Example.COM">>, <<"https://example.com">>},
          {<<"example.com:8000">>, <<"http://example.com:8000">>},
          {<<"example.com:80">>, <<"http://example.com">>},
          {<<"example.com">>, <<"http://example.com:80">>},
          {<<"example.com:443">>, <<"https://example.com">>},
          {<<"[::1]:4000">>, <<"http://[::1]:4000">>}],
    Forbidden = [{<<"example.com">>, <<"http://evil.com">>},
                 {<<"example.com">>, <<"http://example.com.evil.com">>},
                 {<<"example.com:8000">>, <<"http://example.com:9000">>},
                 {<<"example.com:8000">>, <<"http://example.com">>},
                 {<<"example.com">>, <<"http://example.com:8000">>},
                 {<<"example.com">>, <<"null">>},
                 {<<"example.com">>, <<"example.com">>}],
    [?_assertEqual(ok, check(H, O, default)) || {H, O} <- Ok] ++
    [?_assertEqual({error, forbidden}, check(H, O, default)) || {H, O} <- Forbidden].

default_policy_needs_a_host_header_test() ->
    Req = req([{<<"origin">>, <<"http://example.com">>}]),
    ?assertEqual({error, forbidden}, hornbeam_ws_handshake:check_origin(Req, default)).

several_origin_headers_are_forbidden_test() ->
    Req = req([{<<"host">>, <<"a.com">>}, {<<"origin">>, <<"http://a.com">>},
               {<<"origin">>, <<"http://a.com">>}]),
    ?assertEqual({error, forbidden}, hornbeam_ws_handshake:check_origin(Req, default)).

false_policy_allows_everything_test_() ->
    [?_assertEqual(ok, check(<<"example.com">>, O, false))
     || O <- [none, <<"http://evil.com">>, <<"null">>, <<"garbage">>]].

list_policy_test_() ->
    List = [<<"https://example.com">>, <<"//other.org">>, <<"//*.wild.net">>,
            <<"http://localhost:4000">>, <<"//pinned.io:8443">>],
    Ok = [none,
          <<"https://example.com">>,
          <<"https://EXAMPLE.com:443">>,
          <<"http://other.org">>, <<"https://other.org:1234">>,
          <<"https://a.wild.net">>, <<"http://a.b.wild.net:81">>,
          <<"http://localhost:4000">>,
          <<"https://pinned.io:8443">>, <<"http://pinned.io:8443">>],
    Forbidden = [<<"http://example.com">>,          %% wrong scheme
                 <<"https://example.com:8443">>,    %% wrong port
                 <<"https://sub.example.com">>,     %% no wildcard for it
                 <<"https://wild.net">>,            %% wildcard needs a subdomain
                 <<"https://evilwild.net">>,
                 <<"http://localhost">>,
                 <<"http://localhost:4001">>,
                 <<"https://pinned.io">>,
                 <<"null">>,
                 <<"https://other.org.evil.com">>],
    [?_assertEqual(ok, check(<<"ignored.host">>, O, List)) || O <- Ok] ++
    [?_assertEqual({error, forbidden}, check(<<"ignored.host">>, O, List)) || O <- Forbidden].

empty_list_forbids_every_origin_test() ->
    ?assertEqual({error, forbidden}, check(<<"a.com">>, <<"http://a.com">>, [])),
    ?assertEqual(ok, check(<<"a.com">>, none, [])).

scheme_wildcard_entry_test() ->
    ?assertEqual(ok, check(<<"h">>, <<"https://x.wild.net">>, [<<"https://*.wild.net">>])),
    ?assertEqual({error, forbidden},
                 check(<<"h">>, <<"http://x.wild.net">>, [<<"https://*.wild.net">>])).
