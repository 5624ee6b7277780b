%% @doc Pure response serialisation: status line, reason phrases, header
%% block, the `date' header value (RFC 9110 IMF-fixdate).
-module(hornbeam_http_response).

-export([build/3, status_line/1, reason/1, date/0, date/1]).

%% @doc `HTTP/1.1 Status Reason\r\n', the headers, the blank line, the body.
-spec build(100..599, [{binary(), iodata()}], iodata()) -> iodata().
build(Status, Headers, Body) ->
    [status_line(Status), [[N, <<": ">>, V, <<"\r\n">>] || {N, V} <- Headers], <<"\r\n">>, Body].

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
