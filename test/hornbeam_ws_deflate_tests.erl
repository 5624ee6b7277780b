%% EUnit: permessage-deflate negotiation (RFC 7692 §5, §7.1) on the offers the
%% RFC shows and on the ones it says to decline.
-module(hornbeam_ws_deflate_tests).
-include_lib("eunit/include/eunit.hrl").

-define(DEFAULTS, #{window_bits => 15, server_context_takeover => true, client_context_takeover => true}).

req(Values) -> #{headers => [{<<"sec-websocket-extensions">>, V} || V <- Values]}.

response(Values) -> response(Values, ?DEFAULTS).
response(Values, Opts) ->
    case hornbeam_ws_deflate:negotiate(req(Values), Opts) of
        {ok, _Agreed, Header} -> Header;
        none -> none
    end.

agreed(Values, Opts) ->
    {ok, Agreed, _} = hornbeam_ws_deflate:negotiate(req(Values), Opts),
    Agreed.

no_offer_is_no_compression_test() ->
    ?assertEqual(none, response([])),
    ?assertEqual(none, response([<<"x-webkit-deflate-frame">>])).

plain_offer_accepted_with_context_takeover_test() ->
    ?assertEqual(<<"permessage-deflate">>, response([<<"permessage-deflate">>])),
    ?assertEqual(#{server_window_bits => 15, client_window_bits => 15,
                   server_no_context_takeover => false, client_no_context_takeover => false},
                 agreed([<<"permessage-deflate">>], ?DEFAULTS)).

%% §7.1.1.1: a server_no_context_takeover offer must be echoed and honoured.
server_no_context_takeover_offer_is_echoed_test() ->
    ?assertEqual(<<"permessage-deflate; server_no_context_takeover">>,
                 response([<<"permessage-deflate; server_no_context_takeover">>])),
    ?assertMatch(#{server_no_context_takeover := true},
                 agreed([<<"permessage-deflate;server_no_context_takeover">>], ?DEFAULTS)).

%% §5.2 example: the first offer (with server_max_window_bits=10) is accepted.
rfc_example_two_offers_first_accepted_test() ->
    ?assertEqual(<<"permessage-deflate; server_max_window_bits=10">>,
                 response([<<"permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
                             "permessage-deflate; client_max_window_bits">>])).

%% server_max_window_bits=8 cannot be honoured with zlib: that offer is
%% declined and the next one taken.
window_bits_8_offer_declined_next_taken_test() ->
    ?assertEqual(<<"permessage-deflate">>,
                 response([<<"permessage-deflate; server_max_window_bits=8, permessage-deflate">>])),
    ?assertEqual(none, response([<<"permessage-deflate; server_max_window_bits=8">>])).

%% §7.1.2.2: client_max_window_bits without a value lets the server choose.
client_max_window_bits_test() ->
    Opts = ?DEFAULTS#{window_bits := 12},
    ?assertEqual(<<"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12">>,
                 response([<<"permessage-deflate; client_max_window_bits">>], Opts)),
    ?assertMatch(#{client_window_bits := 12, server_window_bits := 12},
                 agreed([<<"permessage-deflate; client_max_window_bits">>], Opts)),
    %% not offered: the client's window cannot be limited, the inflater needs 15
    ?assertEqual(<<"permessage-deflate; server_max_window_bits=12">>,
                 response([<<"permessage-deflate">>], Opts)),
    ?assertMatch(#{client_window_bits := 15}, agreed([<<"permessage-deflate">>], Opts)),
    %% a value from the client is kept when smaller; 8 inflates in a 9-bit window
    ?assertEqual(<<"permessage-deflate; client_max_window_bits=8">>,
                 response([<<"permessage-deflate; client_max_window_bits=8">>])),
    ?assertMatch(#{client_window_bits := 9}, agreed([<<"permessage-deflate; client_max_window_bits=8">>], ?DEFAULTS)),
    %% quoted values are values (§7.1 uses the RFC 7230 grammar)
    ?assertEqual(<<"permessage-deflate; server_max_window_bits=10">>,
                 response([<<"permessage-deflate; server_max_window_bits=\"10\"">>])).

%% §7.1.1.2 / §7.1.2.1: the server may add these without being asked.
server_adds_no_context_takeover_and_window_when_configured_test() ->
    Opts = ?DEFAULTS#{server_context_takeover := false, client_context_takeover := false},
    ?assertEqual(<<"permessage-deflate; server_no_context_takeover; client_no_context_takeover">>,
                 response([<<"permessage-deflate">>], Opts)),
    ?assertMatch(#{server_no_context_takeover := true, client_no_context_takeover := true},
                 agreed([<<"permessage-deflate">>], Opts)).

%% Chromium's offer.
chromium_offer_test() ->
    ?assertEqual(<<"permessage-deflate; client_no_context_takeover">>,
                 response([<<"permessage-deflate; client_max_window_bits">>],
                          ?DEFAULTS#{client_context_takeover := false})).

%% §5.1 / §7.1: unknown parameters, duplicates and bad values decline the offer.
invalid_offers_declined_test() ->
    [?assertEqual(none, response([Offer])) || Offer <- [
        <<"permessage-deflate; foo">>,
        <<"permessage-deflate; server_no_context_takeover; server_no_context_takeover">>,
        <<"permessage-deflate; server_max_window_bits">>,
        <<"permessage-deflate; server_max_window_bits=16">>,
        <<"permessage-deflate; server_max_window_bits=010x">>,
        <<"permessage-deflate; client_max_window_bits=7">>,
        <<"permessage-deflate; server_no_context_takeover=1">>,
        <<"permessage-deflate; client_no_context_takeover=\"x\"">>]],
    %% and a valid offer after an invalid one is still taken
    ?assertEqual(<<"permessage-deflate">>, response([<<"permessage-deflate; foo">>, <<"permessage-deflate">>])).

parse_offers_test() ->
    ?assertEqual([{<<"permessage-deflate">>, [{<<"client_max_window_bits">>, true}]},
                  {<<"x-foo">>, [{<<"a">>, <<"b,c">>}]}],
                 hornbeam_ws_deflate:parse_offers([<<"Permessage-Deflate ; Client_Max_Window_Bits, x-foo; a=\"b,c\"">>])).

%% The endpoint refuses a bad compress option by name (hornbeam:start/2 then fails).
bad_compress_options_are_refused_test_() ->
    [?_assertEqual({error, {bad_option, K, V}}, hornbeam_endpoint:config(#{K => V}))
     || {K, V} <- [{compress, yes}, {compress_threshold, -1}, {compress_level, 10},
                   {compress_window_bits, 8}, {compress_window_bits, 16},
                   {compress_server_context_takeover, 1}, {compress_client_context_takeover, "no"}]].
