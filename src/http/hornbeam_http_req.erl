%% @doc The request map handed to a `hornbeam_http_handler', and pure helpers
%% to read it: header lookup, header token lists, query-string parsing and
%% percent-decoding.
%%
%% ```
%% #{method   => <<"GET">>,
%%   path     => <<"/a b">>,              %% percent-decoded
%%   raw_path => <<"/a%20b">>,            %% as sent, without the query
%%   query    => <<"x=1&y=2">>,           %% as sent, without the `?'
%%   version  => {1, 1},
%%   headers  => [{<<"host">>, <<"example.com">>}, ...],  %% names lowercase, in order, duplicates kept
%%   body     => <<>>,                    %% whole body (Content-Length or de-chunked)
%%   peer     => {{127,0,0,1}, 51234},
%%   sock     => {{127,0,0,1}, 8000},
%%   scheme   => <<"http">>}
%% '''
-module(hornbeam_http_req).

-export([header/2, header/3, headers/2, header_tokens/2, has_token/3,
         query_params/1, parse_query/1, percent_decode/1, split_target/1,
         lowercase/1, trim/1]).

-type headers() :: [{binary(), binary()}].
-type req() :: #{
    method := binary(),
    path := binary(),
    raw_path := binary(),
    query := binary(),
    version := {non_neg_integer(), non_neg_integer()},
    headers := headers(),
    body := binary(),
    peer := {inet:ip_address(), inet:port_number()},
    sock := {inet:ip_address(), inet:port_number()},
    scheme := binary()
}.
-export_type([req/0, headers/0]).

%% @doc The first value of header `Name' (lowercase), or `undefined'.
-spec header(binary(), req() | map()) -> binary() | undefined.
header(Name, Req) ->
    header(Name, Req, undefined).

-spec header(binary(), req() | map(), Default) -> binary() | Default.
header(Name, #{headers := Headers}, Default) ->
    case lists:keyfind(Name, 1, Headers) of
        {_, Value} -> Value;
        false -> Default
    end;
header(_Name, _Req, Default) ->
    Default.

%% @doc Every value of header `Name' (lowercase), in order.
-spec headers(binary(), req() | map()) -> [binary()].
headers(Name, #{headers := Headers}) ->
    [V || {N, V} <- Headers, N =:= Name];
headers(_Name, _Req) ->
    [].

%% @doc The comma-separated tokens of every `Name' header, trimmed and
%% lowercased (`Connection: keep-alive, Upgrade' → `[<<"keep-alive">>, <<"upgrade">>]').
-spec header_tokens(binary(), req() | map()) -> [binary()].
header_tokens(Name, Req) ->
    [lowercase(T) || V <- headers(Name, Req),
                     T0 <- binary:split(V, <<",">>, [global]),
                     T <- [trim(T0)], T =/= <<>>].

%% @doc Whether header `Name' lists `Token' (case-insensitive).
-spec has_token(binary(), binary(), req() | map()) -> boolean().
has_token(Name, Token, Req) ->
    lists:member(lowercase(Token), header_tokens(Name, Req)).

%% @doc The query string of Req, parsed.
-spec query_params(req() | map()) -> [{binary(), binary()}].
query_params(#{query := Query}) -> parse_query(Query);
query_params(_) -> [].

%% @doc Parse `a=1&b=x+y&c&d=%41' into `[{<<"a">>,<<"1">>}, {<<"b">>,<<"x y">>},
%% {<<"c">>,<<>>}, {<<"d">>,<<"A">>}]': `+' is a space, `%XX' a byte, a
%% malformed `%' is kept as it is, empty pairs are skipped, order and
%% duplicates are kept.
-spec parse_query(binary()) -> [{binary(), binary()}].
parse_query(Query) ->
    [pair(P) || P <- binary:split(Query, <<"&">>, [global]), P =/= <<>>].

%% @doc Strict percent-decoding (for paths: `+' stays `+').
-spec percent_decode(binary()) -> {ok, binary()} | error.
percent_decode(Bin) ->
    case binary:match(Bin, <<"%">>) of
        nomatch -> {ok, Bin};
        _ -> pct(Bin, <<>>)
    end.

%% @doc Split a request target into raw path and query (`/a?b=1' → `{<<"/a">>, <<"b=1">>}').
%% A fragment (`#...'), which clients should not send, is dropped.
-spec split_target(binary()) -> {binary(), binary()}.
split_target(Target) ->
    [NoFragment | _] = binary:split(Target, <<"#">>),
    case binary:split(NoFragment, <<"?">>) of
        [Path, Query] -> {Path, Query};
        [Path] -> {Path, <<>>}
    end.

%% @doc ASCII lowercase.
-spec lowercase(binary()) -> binary().
lowercase(Bin) ->
    << <<(lower(C))>> || <<C>> <= Bin >>.

%% @doc Strip spaces and tabs at both ends.
-spec trim(binary()) -> binary().
trim(Bin) ->
    trim_trailing(trim_leading(Bin)).

%% --- internals ----------------------------------------------------------------

lower(C) when C >= $A, C =< $Z -> C + 32;
lower(C) -> C.

trim_leading(<<C, Rest/binary>>) when C =:= $\s; C =:= $\t -> trim_leading(Rest);
trim_leading(Bin) -> Bin.

trim_trailing(<<>>) -> <<>>;
trim_trailing(Bin) ->
    case binary:last(Bin) of
        C when C =:= $\s; C =:= $\t -> trim_trailing(binary:part(Bin, 0, byte_size(Bin) - 1));
        _ -> Bin
    end.

pair(P) ->
    case binary:split(P, <<"=">>) of
        [K, V] -> {form_decode(K), form_decode(V)};
        [K] -> {form_decode(K), <<>>}
    end.

form_decode(Bin) ->
    form(binary:replace(Bin, <<"+">>, <<" ">>, [global]), <<>>).

form(<<$%, H, L, Rest/binary>>, Acc) ->
    case {unhex(H), unhex(L)} of
        {Hi, Lo} when is_integer(Hi), is_integer(Lo) -> form(Rest, <<Acc/binary, (Hi * 16 + Lo)>>);
        _ -> form(<<H, L, Rest/binary>>, <<Acc/binary, $%>>)
    end;
form(<<C, Rest/binary>>, Acc) -> form(Rest, <<Acc/binary, C>>);
form(<<>>, Acc) -> Acc.

pct(<<$%, H, L, Rest/binary>>, Acc) ->
    case {unhex(H), unhex(L)} of
        {Hi, Lo} when is_integer(Hi), is_integer(Lo) -> pct(Rest, <<Acc/binary, (Hi * 16 + Lo)>>);
        _ -> error
    end;
pct(<<$%, _/binary>>, _Acc) -> error;
pct(<<C, Rest/binary>>, Acc) -> pct(Rest, <<Acc/binary, C>>);
pct(<<>>, Acc) -> {ok, Acc}.

unhex(C) when C >= $0, C =< $9 -> C - $0;
unhex(C) when C >= $a, C =< $f -> C - $a + 10;
unhex(C) when C >= $A, C =< $F -> C - $A + 10;
unhex(_) -> error.
