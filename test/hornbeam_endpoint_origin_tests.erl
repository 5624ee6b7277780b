%% @doc EUnit tests of the endpoint's origin policy as `hornbeam_endpoint:config/1'
%% resolves it: the default allows the public hosts, which default to the bind
%% host, never "whatever the Host header says".
-module(hornbeam_endpoint_origin_tests).
-include_lib("eunit/include/eunit.hrl").

policy(Opts) ->
    {ok, #{check_origin := Policy}} = hornbeam_endpoint:config(Opts),
    Policy.

loopback_bind_allows_local_page_hosts_test() ->
    Local = [<<"//localhost">>, <<"//127.0.0.1">>, <<"//[::1]">>],
    ?assertEqual(Local, policy(#{})),
    ?assertEqual(Local, policy(#{bind => "127.0.0.1:0"})),
    ?assertEqual(Local, policy(#{bind => "[::1]:4000"})).

wildcard_bind_allows_only_local_hosts_until_public_hosts_are_set_test() ->
    ?assertEqual([<<"//localhost">>, <<"//127.0.0.1">>, <<"//[::1]">>], policy(#{bind => "0.0.0.0:8000"})),
    ?assertEqual([<<"//chat.example.com">>], policy(#{bind => "0.0.0.0:8000", public_hosts => ["chat.example.com"]})).

specific_address_bind_allows_that_address_test() ->
    ?assertEqual([<<"//10.1.2.3">>], policy(#{bind => "10.1.2.3:80"})),
    ?assertEqual([<<"//[fd00::5]">>], policy(#{bind => "[fd00::5]:80"})).

public_hosts_replace_the_bind_hosts_test() ->
    ?assertEqual([<<"//example.com:8443">>, <<"//*.example.org">>],
                 policy(#{public_hosts => [<<"Example.com:8443">>, "*.example.org"]})).

explicit_policies_are_kept_test() ->
    ?assertEqual(false, policy(#{check_origin => false, public_hosts => ["x.com"]})),
    ?assertEqual([<<"https://a.com">>], policy(#{check_origin => [<<"https://a.com">>]})).

bad_public_hosts_are_an_error_test() ->
    ?assertEqual({error, {bad_option, public_hosts, "x.com"}},
                 hornbeam_endpoint:config(#{public_hosts => "x.com"})),
    ?assertEqual({error, {bad_option, public_hosts, [x]}},
                 hornbeam_endpoint:config(#{public_hosts => [x]})).
