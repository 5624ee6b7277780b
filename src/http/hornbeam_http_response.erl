%% @doc Pure response serialisation: status line, reason phrases, header
%% block, the `date' header value (RFC 9110 IMF-fixdate), and the check of
%% a handler's headers before any of them is written.
-module(hornbeam_http_response).

-export([build/3, status_line/1, reason/1, date/0, date/1, check_headers/1]).

-type header_error() :: {bad_header_name | bad_header_value | not_iodata, binary()}.
-export_type([header_error/0]).

%% @doc `HTTP/1.1 Status Reason\r\n', the headers, the blank line, the body.
-spec build(100..599, [{binary(), iodata()}], iodata()) -> iodata().
build(Status, Headers, Body) ->
    [status_line(Status), [[N, <<": ">>, V, <<"\r\n">>] || {N, V} <- Headers], <<"\r\n">>, Body].

%% @doc Headers an app may send: each name an RFC 9110 token, no value with
%% CR, LF or NUL. Written as they are, such bytes would let the app's input
%% (a redirect target, a cookie) split the response or inject headers; so the
%% connection answers 500 instead (as uvicorn does through h11). The error
%% names the offending header (its name, shortened).
-spec check_headers([{iodata(), iodata()}]) -> ok | {error, header_error()}.
check_headers([]) ->
    ok;
check_headers([{Name0, Value0} | Rest]) ->
    case {to_binary(Name0), to_binary(Value0)} of
        {error, _} -> {error, {not_iodata, <<"(name)">>}};
        {Name, error} -> {error, {not_iodata, shorten(Name)}};
        {Name, Value} ->
            case {is_token(Name), binary:match(Value, [<<"\r">>, <<"\n">>, <<0>>])} of
                {false, _} -> {error, {bad_header_name, shorten(Name)}};
                {true, nomatch} -> check_headers(Rest);
                {true, _} -> {error, {bad_header_value, shorten(Name)}}
            end
    end;
check_headers([_ | _]) ->
    {error, {not_iodata, <<"(not a {Name, Value} pair)">>}}.

to_binary(IoData) ->
    try iolist_to_binary(IoData)
    catch error:badarg -> error
    end.

%% tchar (RFC 9110 §5.6.2), at least one.
is_token(<<>>) -> false;
is_token(Name) -> lists:all(fun is_tchar/1, binary_to_list(Name)).

is_tchar(C) when C >= $a, C =< $z; C >= $A, C =< $Z; C >= $0, C =< $9 -> true;
is_tchar(C) -> lists:member(C, "!#$%&'*+-.^_`|~").

%% For the log: at most 64 bytes, CR/LF/NUL shown escaped.
shorten(Name) ->
    Part = binary:part(Name, 0, min(byte_size(Name), 64)),
    << <<(case C of $\r -> <<"\\r">>; $\n -> <<"\\n">>; 0 -> <<"\\0">>; _ -> <<C>> end)/binary>>
       || <<C>> <= Part >>.

-spec status_line(100..599) -> binary().
status_line(Status) ->
    <<"HTTP/1.1 ", (integer_to_binary(Status))/binary, " ", (reason(Status))/binary, "\r\n">>.

-spec reason(100..599) -> binary().
reason(100) -> <<"Continue">>;
reason(101) -> <<"Switching Protocols">>;
reason(200) -> <<"OK">>;
reason(201) -> <<"Created">>;
reason(202) -> <<"Accepted">>;
reason(204) -> <<"No Content">>;
reason(206) -> <<"Partial Content">>;
reason(301) -> <<"Moved Permanently">>;
reason(302) -> <<"Found">>;
reason(303) -> <<"See Other">>;
reason(304) -> <<"Not Modified">>;
reason(307) -> <<"Temporary Redirect">>;
reason(308) -> <<"Permanent Redirect">>;
reason(400) -> <<"Bad Request">>;
reason(401) -> <<"Unauthorized">>;
reason(403) -> <<"Forbidden">>;
reason(404) -> <<"Not Found">>;
reason(405) -> <<"Method Not Allowed">>;
reason(406) -> <<"Not Acceptable">>;
reason(408) -> <<"Request Timeout">>;
reason(409) -> <<"Conflict">>;
reason(410) -> <<"Gone">>;
reason(411) -> <<"Length Required">>;
reason(413) -> <<"Content Too Large">>;
reason(414) -> <<"URI Too Long">>;
reason(415) -> <<"Unsupported Media Type">>;
reason(417) -> <<"Expectation Failed">>;
reason(422) -> <<"Unprocessable Content">>;
reason(426) -> <<"Upgrade Required">>;
reason(429) -> <<"Too Many Requests">>;
reason(431) -> <<"Request Header Fields Too Large">>;
reason(500) -> <<"Internal Server Error">>;
reason(501) -> <<"Not Implemented">>;
reason(502) -> <<"Bad Gateway">>;
reason(503) -> <<"Service Unavailable">>;
reason(504) -> <<"Gateway Timeout">>;
reason(505) -> <<"HTTP Version Not Supported">>;
reason(S) when S < 200 -> <<"Informational">>;
reason(S) when S < 300 -> <<"Success">>;
reason(S) when S < 400 -> <<"Redirection">>;
reason(S) when S < 500 -> <<"Client Error">>;
reason(_) -> <<"Server Error">>.

%% @doc The current `date' value; formatted at most once per second per process.
-spec date() -> binary().
date() ->
    Now = erlang:system_time(second),
    case get('$hornbeam_http_date') of
        {Now, Date} ->
            Date;
        _ ->
            Date = date(calendar:system_time_to_universal_time(Now, second)),
            put('$hornbeam_http_date', {Now, Date}),
            Date
    end.

%% @doc `Sun, 06 Nov 1994 08:49:37 GMT' for a UTC datetime.
-spec date(calendar:datetime()) -> binary().
date({{Y, Mo, D} = Day, {H, Mi, S}}) ->
    Wd = element(calendar:day_of_the_week(Day),
                 {<<"Mon">>, <<"Tue">>, <<"Wed">>, <<"Thu">>, <<"Fri">>, <<"Sat">>, <<"Sun">>}),
    Mn = element(Mo, {<<"Jan">>, <<"Feb">>, <<"Mar">>, <<"Apr">>, <<"May">>, <<"Jun">>,
                      <<"Jul">>, <<"Aug">>, <<"Sep">>, <<"Oct">>, <<"Nov">>, <<"Dec">>}),
    <<Wd/binary, ", ", (pad2(D))/binary, " ", Mn/binary, " ", (integer_to_binary(Y))/binary, " ",
      (pad2(H))/binary, ":", (pad2(Mi))/binary, ":", (pad2(S))/binary, " GMT">>.

pad2(N) when N < 10 -> <<$0, ($0 + N)>>;
pad2(N) -> integer_to_binary(N).
