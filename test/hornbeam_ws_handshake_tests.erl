%% @doc EUnit tests of hornbeam_ws_handshake: handshake validation and the
%% origin policies (public hosts, `false', allow-lists with scheme, host-only
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

public_hosts_policy_test_() ->
    Policy = hornbeam_ws_handshake:public_hosts_policy(["example.com", <<"pinned.io:8443">>,
                                                        "*.wild.net", "::1", "10.0.0.5"]),
    Ok = [{<<"example.com">>, none},
          {<<"example.com">>, <<"http://example.com">>},
          {<<"example.com">>, <<"https://example.com">>},
          {<<"example.com:8000">>, <<"http://Example.COM:8000">>},
          {<<"x">>, <<"https://pinned.io:8443">>},
          {<<"x">>, <<"https://a.wild.net">>},
          {<<"x">>, <<"http://[::1]:4000">>},
          {<<"x">>, <<"http://10.0.0.5:8000">>}],
    Forbidden = [{<<"example.com">>, <<"http://evil.com">>},
                 {<<"example.com">>, <<"http://example.com.evil.com">>},
                 {<<"x">>, <<"https://pinned.io">>},
                 {<<"x">>, <<"https://wild.net">>},
                 {<<"x">>, <<"http://10.0.0.6">>},
                 {<<"example.com">>, <<"null">>},
                 {<<"example.com">>, <<"example.com">>}],
    [?_assertEqual(ok, check(H, O, Policy)) || {H, O} <- Ok] ++
    [?_assertEqual({error, forbidden}, check(H, O, Policy)) || {H, O} <- Forbidden].

%% DNS rebinding: a hostile page at http://evil.example:8000 whose name now
%% resolves to this server sends Origin and Host with the same name. The
%% Origin is compared with the configured public hosts, never the Host header.
origin_equal_to_the_host_header_is_not_enough_test() ->
    Policy = hornbeam_ws_handshake:public_hosts_policy([<<"localhost">>, <<"127.0.0.1">>]),
    ?assertEqual({error, forbidden},
                 check(<<"evil.example:8000">>, <<"http://evil.example:8000">>, Policy)),
    ?assertEqual(ok, check(<<"evil.example:8000">>, <<"http://localhost:8000">>, Policy)).

several_origin_headers_are_forbidden_test() ->
    Req = req([{<<"host">>, <<"a.com">>}, {<<"origin">>, <<"http://a.com">>},
               {<<"origin">>, <<"http://a.com">>}]),
    ?assertEqual({error, forbidden},
                 hornbeam_ws_handshake:check_origin(Req, hornbeam_ws_handshake:public_hosts_policy(["a.com"]))).

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

%% --- subprotocols (phoenix, authToken) --------------------------------------------------

subprotocol_phoenix_is_echoed_and_the_bearer_token_decoded_test() ->
    %% phoenix.js: ["phoenix", "base64url.bearer.phx." ++ btoa(token) without "="]
    H = [{<<"sec-websocket-protocol">>, <<"phoenix, base64url.bearer.phx.czNjcmV0LXRva2Vu">>}],
    ?assertEqual({ok, <<"phoenix">>, <<"s3cret-token">>}, hornbeam_ws_handshake:subprotocols(req(H))).

subprotocol_token_in_either_base64_alphabet_test() ->
    %% "??>" is "Pz8+" in standard base64, "Pz8-" in base64url
    Std = [{<<"sec-websocket-protocol">>, <<"phoenix">>},
           {<<"sec-websocket-protocol">>, <<"base64url.bearer.phx.Pz8+">>}],
    Url = [{<<"sec-websocket-protocol">>, <<"base64url.bearer.phx.Pz8-,phoenix">>}],
    ?assertEqual({ok, <<"phoenix">>, <<"??>">>}, hornbeam_ws_handshake:subprotocols(req(Std))),
    ?assertEqual({ok, <<"phoenix">>, <<"??>">>}, hornbeam_ws_handshake:subprotocols(req(Url))).

no_subprotocol_offered_echoes_none_test() ->
    ?assertEqual({ok, none, undefined}, hornbeam_ws_handshake:subprotocols(req(good_headers()))),
    Other = [{<<"sec-websocket-protocol">>, <<"mqtt">>}],
    ?assertEqual({ok, none, undefined}, hornbeam_ws_handshake:subprotocols(req(Other))).

bad_bearer_tokens_are_refused_test_() ->
    Bad = [<<"base64url.bearer.phx.a">>,          %% impossible length
           <<"base64url.bearer.phx.@@@@">>,       %% not base64
           <<"base64url.bearer.phx./w">>,         %% decodes to 0xFF: not UTF-8
           <<"base64url.bearer.phx.YQ, base64url.bearer.phx.Yg">>],  %% two tokens
    [?_assertEqual({error, bad_auth_token},
                   hornbeam_ws_handshake:subprotocols(
                     req([{<<"sec-websocket-protocol">>, <<"phoenix, ", B/binary>>}]))) || B <- Bad].
