%% @doc The WebSocket opening handshake (RFC 6455 §4.2), as pure functions.
%%
%% `validate/1' checks a request and computes `Sec-WebSocket-Accept'.
%% `check_origin/2' decides whether the request's `Origin' is allowed:
%% <ul>
%% <li>`false': every origin is allowed.</li>
%% <li>a list of allowed origins, each one of:
%%     <ul>
%%     <li>`<<"https://example.com">>' — that scheme and host, and that port
%%         (the scheme's default when none is written): `https://example.com'
%%         and `https://example.com:443' match, `http://example.com' does not;</li>
%%     <li>`<<"//example.com">>' — that host with any scheme and any port;
%%         `<<"//example.com:8080">>' — that host and port, any scheme;</li>
%%     <li>`<<"//*.example.com">>' (or `<<"https://*.example.com">>') — any
%%         subdomain, at any depth, of example.com, but not example.com itself
%%         (list both to allow both).</li>
%%     </ul></li>
%% </ul>
%% The endpoint's default policy is the list `public_hosts_policy/1' makes of
%% its configured public hosts (`public_hosts'; by default the bind host). It
%% never compares the `Origin' with the request's own `Host' header: with DNS
%% rebinding a hostile page's origin and the Host header it sends are the
%% same name, so that comparison lets any site in.
%%
%% As in Phoenix, a request without `Origin' is allowed under every policy:
%% browsers always send it on WebSocket handshakes, so its absence means a
%% non-browser client, which an origin check cannot stop anyway. An `Origin'
%% of `null' (opaque origin) never matches.
%%
%% `subprotocols/1' reads what a Phoenix client offers in
%% `Sec-WebSocket-Protocol': `phoenix' (echoed, or `ws' and browsers abort
%% the handshake) and phoenix.js's `authToken' as
%% `base64url.bearer.phx.<token>', decoded.
-module(hornbeam_ws_handshake).

-export([validate/1, accept_key/1, check_origin/2, public_hosts_policy/1, format_error/1,
         subprotocols/1]).

-define(GUID, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").
-define(AUTH_TOKEN_PREFIX, "base64url.bearer.phx.").

-type error() :: method_not_get | http_version | no_upgrade_websocket
               | no_connection_upgrade | missing_key | bad_key | unsupported_version
               | bad_auth_token.
-type policy() :: false | [binary()].
-export_type([error/0, policy/0]).

%% @doc Check the handshake; give the `Sec-WebSocket-Accept' value.
-spec validate(hornbeam_http_req:req() | map()) -> {ok, binary()} | {error, error()}.
validate(Req) ->
    Checks = [fun method/1, fun version/1, fun upgrade/1, fun connection/1,
              fun ws_version/1, fun key/1],
    run(Checks, Req).

%% @doc base64(sha1(Key ++ GUID)).
-spec accept_key(binary()) -> binary().
accept_key(Key) ->
    base64:encode(crypto:hash(sha, [Key, <<?GUID>>])).

-spec check_origin(hornbeam_http_req:req() | map(), policy()) -> ok | {error, forbidden}.
check_origin(_Req, false) ->
    ok;
check_origin(Req, Policy) ->
    case hornbeam_http_req:headers(<<"origin">>, Req) of
        [] -> ok;
        [Origin] -> verdict(origin_allowed(parse_origin(Origin), Req, Policy));
        _Several -> {error, forbidden}
    end.

%% @doc The allow-list policy of public hosts: each of `"example.com"',
%% `"example.com:8443"' (that port only), `"*.example.com"' (subdomains) or an
%% IP address (`"10.0.0.5"', `"::1"' or `"[::1]"') allows that host with any
%% scheme (and any port unless one is given).
-spec public_hosts_policy([binary() | string()]) -> [binary()].
public_hosts_policy(Hosts) ->
    [<<"//", (bracket_ipv6(hornbeam_http_req:lowercase(to_binary(H))))/binary>> || H <- Hosts].

bracket_ipv6(Host) ->
    case inet:parse_ipv6strict_address(binary_to_list(Host)) of
        {ok, _} -> <<"[", Host/binary, "]">>;
        {error, _} -> Host
    end.

to_binary(B) when is_binary(B) -> B;
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L).

%% @doc Human-readable text for an error of `validate/1' (used in the 400 body).
-spec format_error(error()) -> binary().
format_error(method_not_get) -> <<"the WebSocket handshake must be a GET request">>;
format_error(http_version) -> <<"the WebSocket handshake needs HTTP/1.1 or later">>;
format_error(no_upgrade_websocket) -> <<"missing or bad Upgrade header (expected \"websocket\")">>;
format_error(no_connection_upgrade) -> <<"the Connection header must contain \"Upgrade\"">>;
format_error(missing_key) -> <<"missing Sec-WebSocket-Key header">>;
format_error(bad_key) -> <<"Sec-WebSocket-Key must be the base64 encoding of 16 bytes">>;
format_error(unsupported_version) -> <<"unsupported Sec-WebSocket-Version (this server speaks 13)">>;
format_error(bad_auth_token) -> <<"the base64url.bearer.phx. subprotocol must carry unpadded base64 of UTF-8 text">>.

%% @doc The subprotocol to echo (`<<"phoenix">>' when offered, else `none')
%% and the decoded `authToken' (`undefined' when none is offered). The token
%% is unpadded base64 in either alphabet (phoenix.js uses `btoa', our client
%% base64url) and must decode to UTF-8 text; else `{error, bad_auth_token}'.
-spec subprotocols(hornbeam_http_req:req() | map()) ->
    {ok, binary() | none, binary() | undefined} | {error, bad_auth_token}.
subprotocols(Req) ->
    Offered = [T || V <- hornbeam_http_req:headers(<<"sec-websocket-protocol">>, Req),
                    T0 <- binary:split(V, <<",">>, [global]),
                    T <- [hornbeam_http_req:trim(T0)], T =/= <<>>],
    Echo = case lists:member(<<"phoenix">>, Offered) of
               true -> <<"phoenix">>;
               false -> none
           end,
    case [Enc || <<?AUTH_TOKEN_PREFIX, Enc/binary>> <- Offered] of
        [] -> {ok, Echo, undefined};
        [Encoded] ->
            case decode_auth_token(Encoded) of
                {ok, Token} -> {ok, Echo, Token};
                error -> {error, bad_auth_token}
            end;
        _Several -> {error, bad_auth_token}
    end.

decode_auth_token(Encoded) when byte_size(Encoded) rem 4 =:= 1 ->
    error;
decode_auth_token(Encoded) ->
    Standard = << <<(from_url_alphabet(C))>> || <<C>> <= Encoded >>,
    Padding = binary:copy(<<"=">>, (4 - byte_size(Standard) rem 4) rem 4),
    try base64:decode(<<Standard/binary, Padding/binary>>) of
        Token ->
            case unicode:characters_to_binary(Token) =:= Token of
                true -> {ok, Token};
                false -> error
            end
    catch _:_ -> error
    end.

from_url_alphabet($-) -> $+;
from_url_alphabet($_) -> $/;
from_url_alphabet(C) -> C.

%% --- validate ---------------------------------------------------------------------

run([], Req) ->
    [Key] = hornbeam_http_req:headers(<<"sec-websocket-key">>, Req),
    {ok, accept_key(hornbeam_http_req:trim(Key))};
run([Check | Rest], Req) ->
    case Check(Req) of
        ok -> run(Rest, Req);
        {error, _} = Error -> Error
    end.

method(#{method := <<"GET">>}) -> ok;
method(_) -> {error, method_not_get}.

version(#{version := {Major, Minor}}) when {Major, Minor} >= {1, 1} -> ok;
version(_) -> {error, http_version}.

upgrade(Req) ->
    check(hornbeam_http_req:has_token(<<"upgrade">>, <<"websocket">>, Req), no_upgrade_websocket).

connection(Req) ->
    check(hornbeam_http_req:has_token(<<"connection">>, <<"upgrade">>, Req), no_connection_upgrade).

ws_version(Req) ->
    check(hornbeam_http_req:headers(<<"sec-websocket-version">>, Req) =:= [<<"13">>],
          unsupported_version).

key(Req) ->
    case hornbeam_http_req:headers(<<"sec-websocket-key">>, Req) of
        [] -> {error, missing_key};
        [Key] -> check(is_key(hornbeam_http_req:trim(Key)), bad_key);
        _Several -> {error, bad_key}
    end.

is_key(Key) when byte_size(Key) =:= 24 ->
    try base64:decode(Key) of
        Decoded -> byte_size(Decoded) =:= 16 andalso base64:encode(Decoded) =:= Key
    catch _:_ -> false
    end;
is_key(_) ->
    false.

check(true, _Error) -> ok;
check(false, Error) -> {error, Error}.

%% --- check_origin -------------------------------------------------------------------

verdict(true) -> ok;
verdict(false) -> {error, forbidden}.

%% {Scheme | undefined, Host, Port | undefined} of an origin or an allow-list
%% entry; `error' for anything else (including `null').
-type origin() :: {binary() | undefined, binary(), inet:port_number() | undefined} | error.

-spec parse_origin(binary()) -> origin().
parse_origin(Bin) ->
    case binary:split(hornbeam_http_req:lowercase(hornbeam_http_req:trim(Bin)), <<"//">>) of
        [<<>>, Rest] -> authority(undefined, Rest);
        [SchemeColon, Rest] when byte_size(SchemeColon) > 1 ->
            case binary:last(SchemeColon) of
                $: -> authority(binary:part(SchemeColon, 0, byte_size(SchemeColon) - 1), Rest);
                _ -> error
            end;
        _ -> error
    end.

authority(Scheme, Rest) ->
    [Authority | _] = binary:split(Rest, [<<"/">>, <<"?">>, <<"#">>]),
    case host_port(Authority) of
        {ok, Host, Port} -> {Scheme, Host, Port};
        error -> error
    end.

%% "example.com", "example.com:8080", "[::1]:4000", "[::1]"
host_port(<<"[", Rest/binary>>) ->
    case binary:split(Rest, <<"]">>) of
        [Host, <<>>] -> {ok, <<"[", Host/binary, "]">>, undefined};
        [Host, <<":", Port/binary>>] -> with_port(<<"[", Host/binary, "]">>, Port);
        _ -> error
    end;
host_port(<<>>) ->
    error;
host_port(Authority) ->
    case binary:split(Authority, <<":">>) of
        [Host] -> {ok, Host, undefined};
        [<<>>, _] -> error;
        [Host, Port] -> with_port(Host, Port)
    end.

with_port(Host, Port) ->
    try binary_to_integer(Port) of
        N when N >= 0, N =< 65535 -> {ok, Host, N};
        _ -> error
    catch error:badarg -> error
    end.

default_port(<<"http">>) -> 80;
default_port(<<"ws">>) -> 80;
default_port(<<"https">>) -> 443;
default_port(<<"wss">>) -> 443;
default_port(_) -> undefined.

origin_allowed(error, _Req, _Policy) ->
    false;
origin_allowed(Origin, _Req, Allowed) when is_list(Allowed) ->
    lists:any(fun(Entry) -> entry_matches(parse_origin(Entry), Origin) end, Allowed).

entry_matches(error, _Origin) ->
    false;
entry_matches({EScheme, EHost, EPort}, {Scheme, Host, Port}) ->
    scheme_matches(EScheme, Scheme)
        andalso port_matches(EScheme, EPort, Scheme, Port)
        andalso host_matches(EHost, Host).

scheme_matches(undefined, _) -> true;
scheme_matches(Scheme, Scheme) -> true;
scheme_matches(_, _) -> false.

%% A host-only entry without a port accepts any port; an entry with a scheme
%% and no port means that scheme's default port.
port_matches(undefined, undefined, _Scheme, _Port) -> true;
port_matches(EScheme, EPort, Scheme, Port) ->
    Want = case EPort of undefined -> default_port(EScheme); _ -> EPort end,
    Have = case Port of undefined -> default_port(Scheme); _ -> Port end,
    Want =:= Have.

host_matches(<<"*.", Domain/binary>>, Host) ->
    Suffix = <<".", Domain/binary>>,
    byte_size(Host) > byte_size(Suffix)
        andalso binary:longest_common_suffix([Host, Suffix]) =:= byte_size(Suffix);
host_matches(Host, Host) -> true;
host_matches(_, _) -> false.
