%% @doc One process per TCP connection: reads HTTP/1.x requests, calls the
%% listener's handler, writes responses; on a WebSocket upgrade it writes the
%% 101 and *becomes* the WebSocket process (`Handler:websocket_enter/3').
%%
%% A `proc_lib' process running a plain loop over a passive socket. The bytes
%% read so far live in a buffer that `erlang:decode_packet/3' (`http_bin',
%% then `httph_bin') parses one line at a time, which is what lets the limits
%% be checked on lines that have not ended yet, lets pipelined requests be
%% served in order from the same buffer, and gives the WebSocket the exact
%% bytes the client sent after its handshake.
%%
%% What the client gets for each bad input (then the connection closes):
%% <ul>
%% <li>400: malformed request line or header line, header value with CR, LF or
%%     NUL (obsolete line folding), missing or repeated Host on HTTP/1.1, bad
%%     percent-encoding in the path, bad or conflicting Content-Length, both
%%     Content-Length and Transfer-Encoding, Transfer-Encoding on HTTP/1.0,
%%     malformed chunked body, HTTP/0.9;</li>
%% <li>408: a request line and headers not complete within `header_timeout'
%%     of the request's first byte (however steadily they trickle in), or a
%%     body not complete within `request_timeout' of the end of the headers;</li>
%% <li>413: body over `max_body_length' (checked on Content-Length before
%%     reading, and while de-chunking);</li>
%% <li>414: request line over `max_request_line_length';</li>
%% <li>417: an `Expect' other than `100-continue';</li>
%% <li>431: a header (or trailer) line over `max_header_line_length', or more
%%     than `max_headers' of them;</li>
%% <li>500: the handler crashed or returned something else than documented,
%%     or gave a header whose name is not a token or whose value holds CR,
%%     LF or NUL (`hornbeam_http_response:check_headers/1'; an error log
%%     line names the header);</li>
%% <li>501: a transfer coding other than chunked;</li>
%% <li>505: HTTP major version other than 1.</li>
%% </ul>
%% A keep-alive connection with no request for `request_timeout' is closed
%% without a response.
%%
%% A handler may answer later, or stream its response, by returning
%% `{loop, Module, State}' (see `hornbeam_http_handler'): the connection then
%% waits for messages, hands each one to `Module:info(Msg, State)', and
%% writes what it answers (a whole response, or a head and then body
%% pieces: chunked on HTTP/1.1 without a `content-length', as given with
%% one, until close on HTTP/1.0). Meanwhile the socket is in `{active, once}'
%% mode, so a client that goes away is noticed (`Module:info' gets
%% `{hornbeam_http_conn, closed}') and pipelined bytes are kept.
-module(hornbeam_http_conn).

-export([start_link/2, go/2]).
-export([init/2]).

-record(s, {
    ref :: hornbeam_http_opts:ref(),
    handler :: module(),
    handler_opts :: term(),
    sock :: gen_tcp:socket(),
    peer :: {inet:ip_address(), inet:port_number()},
    local :: {inet:ip_address(), inet:port_number()},
    buf = <<>> :: binary(),
    deadline = infinity :: integer() | infinity,
    timeout :: pos_integer() | infinity,
    header_timeout :: pos_integer() | infinity,
    max_line :: pos_integer(),
    max_header_line :: pos_integer(),
    max_headers :: pos_integer(),
    max_body :: non_neg_integer()
}).

-define(LINGER_MS, 2000).       %% how long to drain input after our last response
-define(GO_TIMEOUT, 10000).     %% the acceptor hands the socket over well within this
-define(RECV_CHUNK, 1048576).   %% largest single recv of a Content-Length body
-define(READ_AHEAD, 65536).     %% bytes of a next request read while a loop handler works

%% A `{loop, Module, State}' exchange in progress.
-record(loop, {module :: module(),
               state :: term(),
               req :: hornbeam_http_req:req(),
               %% head: no response yet; else how body pieces are framed
               framing = head :: head | none | chunked | close
                               | {length, non_neg_integer()},
               close = false :: boolean()}).

%% @doc Started by `hornbeam_conn_sup' for a socket still owned by the acceptor.
-spec start_link(hornbeam_http_opts:config(), gen_tcp:socket()) -> {ok, pid()}.
start_link(Config, Sock) ->
    {ok, proc_lib:spawn_link(?MODULE, init, [Config, Sock])}.

%% @doc Called by the acceptor once `Pid' owns `Sock'.
-spec go(pid(), gen_tcp:socket()) -> ok.
go(Pid, Sock) ->
    Pid ! {?MODULE, go, Sock},
    ok.

-spec init(hornbeam_http_opts:config(), gen_tcp:socket()) -> ok.
init(Config, Sock) ->
    receive
        {?MODULE, go, Sock} -> start(Config, Sock)
    after ?GO_TIMEOUT ->
        ok
    end.

start(Config, Sock) ->
    #{ref := Ref, handler := Handler, handler_opts := HandlerOpts,
      request_timeout := Timeout, header_timeout := HeaderTimeout,
      max_request_line_length := MaxLine,
      max_header_line_length := MaxHeaderLine, max_headers := MaxHeaders,
      max_body_length := MaxBody} = Config,
    case {inet:peername(Sock), inet:sockname(Sock)} of
        {{ok, Peer}, {ok, Local}} ->
            logger:set_process_metadata(#{ref => Ref, peer => Peer}),
            wait_request(#s{ref = Ref, handler = Handler, handler_opts = HandlerOpts,
                            sock = Sock, peer = Peer, local = Local, timeout = Timeout,
                            header_timeout = HeaderTimeout,
                            max_line = MaxLine, max_header_line = MaxHeaderLine,
                            max_headers = MaxHeaders, max_body = MaxBody});
        _ ->
            %% The client is already gone.
            _ = gen_tcp:close(Sock),
            ok
    end.

%% --- the request loop --------------------------------------------------------------

%% Between requests: wait up to request_timeout for a first byte.
wait_request(S = #s{buf = <<>>, sock = Sock, timeout = Timeout}) ->
    case gen_tcp:recv(Sock, 0, Timeout) of
        {ok, Data} ->
            next_request(S#s{buf = Data});
        {error, timeout} ->
            logger:debug("idle for ~p ms; closing", [Timeout]),
            close(S);
        {error, _} ->
            _ = gen_tcp:close(Sock),
            ok
    end;
wait_request(S) ->
    next_request(S).

next_request(S) ->
    case read_request(S) of
        {ok, Req, S1} ->
            dispatch(Req, S1);
        {reject, Status, Why} ->
            logger:info("rejected request: ~b ~s", [Status, Why]),
            reject(Status, Why, S);
        {timeout, header_timeout} ->
            logger:info("request line and headers not complete within ~p ms (header_timeout)",
                        [S#s.header_timeout]),
            reject(408, <<"request headers not complete within header_timeout">>, S);
        {timeout, request_timeout} ->
            logger:info("request body not complete within ~p ms (request_timeout)", [S#s.timeout]),
            reject(408, <<"request body not complete within request_timeout">>, S);
        closed ->
            _ = gen_tcp:close(S#s.sock),
            ok
    end.

dispatch(Req, S) ->
    case hornbeam_http_req:has_token(<<"upgrade">>, <<"websocket">>, Req) of
        true -> upgrade(Req, S);
        false ->
            case call_handler(Req, S) of
                {loop, Module, State} -> loop_start(#loop{module = Module, state = State, req = Req}, S);
                Response -> respond(Response, Req, S)
            end
    end.

call_handler(Req, #s{handler = Handler, handler_opts = Opts}) ->
    try Handler:handle_http(Req, Opts) of
        {Status, Headers, Body} when is_integer(Status), Status >= 200, Status =< 599,
                                     is_list(Headers) ->
            {Status, Headers, Body};
        {loop, Module, _State} = Loop when is_atom(Module) ->
            Loop;
        Other ->
            logger:error("~s:handle_http/2 returned ~0p for ~s ~s; expected "
                         "{Status, Headers, Body} or {loop, Module, State}",
                         [Handler, Other, method(Req), path(Req)]),
            error
    catch Class:Reason:Stack ->
        logger:error("~s:handle_http/2 crashed on ~s ~s: ~0p:~0p~n~p",
                     [Handler, method(Req), path(Req), Class, Reason, Stack]),
        error
    end.

%% --- WebSocket upgrade ---------------------------------------------------------------

upgrade(Req, S = #s{handler = Handler, handler_opts = Opts}) ->
    case hornbeam_ws_handshake:validate(Req) of
        {error, Why} ->
            logger:info("bad WebSocket handshake: ~s", [hornbeam_ws_handshake:format_error(Why)]),
            Extra = case Why of
                        unsupported_version -> [{<<"sec-websocket-version">>, <<"13">>}];
                        _ -> []
                    end,
            respond({400, [{<<"content-type">>, <<"text/plain">>} | Extra],
                     [<<"bad WebSocket handshake: ">>, hornbeam_ws_handshake:format_error(Why),
                      <<"\n">>]}, Req, S);
        {ok, Accept} ->
            Answer = try Handler:websocket_upgrade(Req, Opts) of
                         {ok, WsState, Extra} when is_list(Extra) ->
                             {switch, WsState, Extra};
                         {refuse, Status, Headers, Body} when is_integer(Status), Status >= 200,
                                                              Status =< 599, is_list(Headers) ->
                             {Status, Headers, Body};
                         Other ->
                             logger:error("~s:websocket_upgrade/2 returned ~0p; expected {ok, "
                                          "WsState, Headers} or {refuse, Status, Headers, Body}",
                                          [Handler, Other]),
                             error
                     catch Class:Reason:Stack ->
                         logger:error("~s:websocket_upgrade/2 crashed on ~s: ~0p:~0p~n~p",
                                      [Handler, path(Req), Class, Reason, Stack]),
                         error
                     end,
            case Answer of
                {switch, WsState1, Extra1} -> switch(Accept, WsState1, Extra1, Req, S);
                Response -> respond(Response, Req, S)
            end
    end.

switch(Accept, WsState, Extra, Req, S) ->
    case checked_headers(Extra, Req) of
        ok -> switch(Accept, WsState, Extra, S);
        error -> respond(error, Req, S)
    end.

switch(Accept, WsState, Extra, S = #s{sock = Sock, handler = Handler, buf = Buffered}) ->
    Headers = [{<<"upgrade">>, <<"websocket">>}, {<<"connection">>, <<"Upgrade">>},
               {<<"sec-websocket-accept">>, Accept} | Extra],
    ok = hornbeam_metrics:http_response(S#s.ref, 101),
    case send(S, hornbeam_http_response:build(101, Headers, <<>>)) of
        ok ->
            %% From here on this process is the WebSocket process; the handler
            %% owns the socket (passive, binary, raw) and never returns.
            Handler:websocket_enter(Sock, Buffered, WsState);
        {error, _} ->
            _ = gen_tcp:close(Sock),
            ok
    end.

%% --- loop handlers: late and streamed responses -------------------------------------

loop_start(L, S) ->
    case inet:setopts(S#s.sock, [{active, once}]) of
        ok -> loop(L, S);
        {error, _} -> client_gone(L, S)
    end.

loop(L = #loop{module = Module, state = State}, S = #s{sock = Sock}) ->
    receive
        {tcp, Sock, Data} ->
            Buf = <<(S#s.buf)/binary, Data/binary>>,
            _ = byte_size(Buf) < ?READ_AHEAD andalso inet:setopts(Sock, [{active, once}]),
            loop(L, S#s{buf = Buf});
        {tcp_closed, Sock} ->
            client_gone(L, S);
        {tcp_error, Sock, _} ->
            client_gone(L, S);
        Msg ->
            Answer = try Module:info(Msg, State)
                     catch Class:Reason:Stack ->
                         logger:error("~s:info/2 crashed on ~0P: ~0p:~0p~n~p",
                                      [Module, Msg, 10, Class, Reason, Stack]),
                         {error, crashed}
                     end,
            loop_answer(Answer, L, S)
    end.

loop_answer({noreply, State}, L, S) ->
    loop(L#loop{state = State}, S);
loop_answer({reply, Status, Headers, Body}, L = #loop{framing = head}, S)
  when is_integer(Status), Status >= 200, Status =< 599, is_list(Headers) ->
    S1 = passive(S),
    respond({Status, Headers, Body}, L#loop.req, S1);
loop_answer({stream, Status, Headers, State}, L = #loop{framing = head}, S)
  when is_integer(Status), Status >= 200, Status =< 599, is_list(Headers) ->
    case stream_head(Status, Headers, L#loop.req) of
        {ok, Framing, Close, Head} ->
            ok = hornbeam_metrics:http_response(S#s.ref, Status),
            case send(S, Head) of
                ok -> loop(L#loop{state = State, framing = Framing, close = Close}, S);
                {error, _} -> client_gone(L#loop{state = State}, S)
            end;
        error ->
            %% Nothing was written: tell the module the exchange is over (a
            %% Python stream is cancelled) and answer 500.
            _ = (catch (L#loop.module):info({?MODULE, closed}, State)),
            respond(error, L#loop.req, passive(S))
    end;
loop_answer({chunk, Data, State}, L = #loop{framing = Framing}, S) when Framing =/= head ->
    {Framing1, Out} = frame_body(Framing, Data),
    case send(S, Out) of
        ok -> loop(L#loop{state = State, framing = Framing1}, S);
        {error, _} -> client_gone(L#loop{state = State}, S)
    end;
loop_answer({done, Data}, L = #loop{framing = Framing, close = Close0}, S) when Framing =/= head ->
    {Framing1, Out} = frame_body(Framing, Data),
    {Last, Close} = case Framing1 of
                        chunked -> {<<"0\r\n\r\n">>, Close0};
                        {length, 0} -> {<<>>, Close0};
                        {length, Short} ->
                            logger:error("~s ~s: the response ended ~b bytes short of its "
                                         "content-length; closing", [method(L#loop.req),
                                                                     path(L#loop.req), Short]),
                            {<<>>, true};
                        close -> {<<>>, true};
                        none -> {<<>>, Close0}
                    end,
    case send(S, [Out, Last]) of
        ok when Close -> close(S);
        ok -> wait_request(passive(S));
        {error, _} -> _ = gen_tcp:close(S#s.sock), ok
    end;
loop_answer(Other, #loop{module = Module, framing = head, req = Req}, S) ->
    case Other of
        {error, _} -> ok;
        _ -> logger:error("~s:info/2 returned ~0P before a response", [Module, Other, 10])
    end,
    respond(error, Req, passive(S));
loop_answer(Other, #loop{module = Module, req = Req}, S) ->
    %% The head went out: the only way left to signal the failure is to
    %% close without finishing the body.
    case Other of
        {error, _} -> ok;
        _ -> logger:error("~s:info/2 returned ~0P during a response", [Module, Other, 10])
    end,
    logger:info("aborting the response to ~s ~s", [method(Req), path(Req)]),
    _ = gen_tcp:close(S#s.sock),
    ok.

%% The client went away (or a write failed): tell the loop module, close.
client_gone(#loop{module = Module, state = State}, S) ->
    _ = (catch Module:info({?MODULE, closed}, State)),
    _ = gen_tcp:close(S#s.sock),
    ok.

%% Back to passive mode, with the bytes that arrived meanwhile in the buffer.
passive(S = #s{sock = Sock}) ->
    _ = inet:setopts(Sock, [{active, false}]),
    passive_flush(S).

passive_flush(S = #s{sock = Sock, buf = Buf}) ->
    receive
        {tcp, Sock, Data} -> passive_flush(S#s{buf = <<Buf/binary, Data/binary>>});
        {tcp_closed, Sock} -> passive_flush(S);
        {tcp_error, Sock, _} -> passive_flush(S)
    after 0 -> S
    end.

%% The head of a streamed response and how its body is framed: as the
%% handler's content-length says, else chunked (HTTP/1.1) or until close.
stream_head(Status, Headers0, Req) ->
    case checked_headers(Headers0, Req) of
        ok -> stream_head_checked(Status, Headers0, Req);
        error -> error
    end.

stream_head_checked(Status, Headers0, Req) ->
    try
        IsHead = maps:get(method, Req) =:= <<"HEAD">>,
        NoBody = Status =:= 204 orelse Status =:= 304 orelse IsHead,
        Length = [V || {N, V} <- Headers0,
                       hornbeam_http_req:lowercase(iolist_to_binary(N)) =:= <<"content-length">>],
        {Headers1, HandlerClose} = drop_framing(Headers0, Req),
        {Framing, FramingHeaders} =
            case {NoBody, content_length([iolist_to_binary(V) || V <- Length]), Req} of
                {true, _, _} -> {none, []};
                {false, N, _} when is_integer(N) ->
                    {{length, N}, [{<<"content-length">>, integer_to_binary(N)}]};
                {false, _, #{version := {1, 0}}} -> {close, []};
                {false, _, _} -> {chunked, [{<<"transfer-encoding">>, <<"chunked">>}]}
            end,
        Close = not keep_alive(Req) orelse HandlerClose orelse Framing =:= close,
        Defaults = [{N, V} || {N, V} <- [{<<"date">>, hornbeam_http_response:date()},
                                         {<<"server">>, <<"hornbeam">>}],
                              not lists:keymember(N, 1, Headers1)],
        Connection = [{<<"connection">>, case Close of true -> <<"close">>; false -> <<"keep-alive">> end}],
        Head = hornbeam_http_response:build(Status, Headers1 ++ FramingHeaders ++ Defaults ++ Connection,
                                            <<>>),
        {ok, Framing, Close, iolist_to_binary(Head)}
    catch Class:Reason ->
        logger:error("cannot encode the response head ~0p (~0p:~0p)",
                     [{Status, Headers0}, Class, Reason]),
        error
    end.

%% One body piece in the response's framing.
frame_body(none, _Data) ->
    {none, <<>>};
frame_body(close, Data) ->
    {close, Data};
frame_body(chunked, Data) ->
    case iolist_size(Data) of
        0 -> {chunked, <<>>};
        Size -> {chunked, [integer_to_binary(Size, 16), <<"\r\n">>, Data, <<"\r\n">>]}
    end;
frame_body({length, Left}, Data) ->
    Size = iolist_size(Data),
    case Size =< Left of
        true ->
            {{length, Left - Size}, Data};
        false ->
            logger:error("a streamed response is longer than its content-length; "
                         "dropping ~b bytes", [Size - Left]),
            <<Part:Left/binary, _/binary>> = iolist_to_binary(Data),
            {{length, 0}, Part}
    end.

%% --- responses -------------------------------------------------------------------------

respond(error, Req, S) ->
    %% Handler crashed or answered nonsense: 500, and this connection ends.
    write(500, [{<<"content-type">>, <<"text/plain">>}], <<"internal server error\n">>,
          Req, true, S);
respond({Status, Headers, Body}, Req, S) ->
    write(Status, Headers, Body, Req, not keep_alive(Req), S).

%% Write one response and go on with the next request, or close.
write(Status, Headers0, Body, Req, Close0, S) ->
    case checked_headers(Headers0, Req) of
        ok -> write_checked(Status, Headers0, Body, Req, Close0, S);
        error -> respond(error, Req, S)
    end.

%% A handler's headers, checked before anything is written; the log line
%% says which one was refused.
checked_headers(Headers, Req) ->
    case hornbeam_http_response:check_headers(Headers) of
        ok ->
            ok;
        {error, {Why, Name}} ->
            logger:error("refusing the response to ~s ~s: ~s ~s (a header name must be a "
                         "token, a value must not hold CR, LF or NUL); answering 500",
                         [method(Req), path(Req), Why, Name]),
            error
    end.

write_checked(Status, Headers0, Body, Req, Close0, S) ->
    Encoded = try
                  {Headers, HandlerClose} = drop_framing(Headers0, Req),
                  Close1 = Close0 orelse HandlerClose,
                  {ok, Close1, encode(Status, Headers, Body, Req, Close1)}
              catch Class:Reason ->
                  logger:error("cannot encode the response ~0p (~0p:~0p)",
                               [{Status, Headers0}, Class, Reason]),
                  error
              end,
    case Encoded of
        {ok, Close, Data} ->
            ok = hornbeam_metrics:http_response(S#s.ref, Status),
            case send(S, Data) of
                ok when Close -> close(S);
                ok -> wait_request(S);
                {error, _} -> _ = gen_tcp:close(S#s.sock), ok
            end;
        error ->
            respond(error, Req, S)
    end.

%% A rejected request: the error response, then close.
reject(Status, Why, S) ->
    Body = [hornbeam_http_response:reason(Status), <<": ">>, Why, <<"\n">>],
    Data = encode(Status, [{<<"content-type">>, <<"text/plain">>}], Body, #{}, true),
    ok = hornbeam_metrics:http_response(S#s.ref, Status),
    _ = send(S, Data),
    close(S).

%% The handler's own framing headers are replaced by ours (on HEAD its
%% content-length is kept: the body it describes is not sent).
drop_framing(Headers, Req) ->
    IsHead = maps:get(method, Req, undefined) =:= <<"HEAD">>,
    lists:foldr(
      fun({Name, Value}, {Acc, Close}) ->
              case hornbeam_http_req:lowercase(iolist_to_binary(Name)) of
                  <<"content-length">> when IsHead -> {[{<<"content-length">>, Value} | Acc], Close};
                  <<"content-length">> -> {Acc, Close};
                  <<"transfer-encoding">> -> {Acc, Close};
                  <<"connection">> ->
                      {Acc, Close orelse hornbeam_http_req:has_token(
                                           <<"connection">>, <<"close">>,
                                           #{headers => [{<<"connection">>, iolist_to_binary(Value)}]})};
                  Lower -> {[{Lower, Value} | Acc], Close}
              end
      end, {[], false}, Headers).

encode(Status, Headers, Body, Req, Close) ->
    NoBody = Status < 200 orelse Status =:= 204 orelse Status =:= 304,
    IsHead = maps:get(method, Req, undefined) =:= <<"HEAD">>,
    Length = case NoBody orelse lists:keymember(<<"content-length">>, 1, Headers) of
                 true -> [];
                 false -> [{<<"content-length">>, integer_to_binary(iolist_size(Body))}]
             end,
    Defaults = [{N, V} || {N, V} <- [{<<"date">>, hornbeam_http_response:date()},
                                     {<<"server">>, <<"hornbeam">>}],
                          not lists:keymember(N, 1, Headers)],
    Connection = [{<<"connection">>, case Close of true -> <<"close">>; false -> <<"keep-alive">> end}],
    SentBody = case NoBody orelse IsHead of true -> <<>>; false -> Body end,
    hornbeam_http_response:build(Status, Headers ++ Length ++ Defaults ++ Connection, SentBody).

keep_alive(Req = #{version := {1, 0}}) ->
    hornbeam_http_req:has_token(<<"connection">>, <<"keep-alive">>, Req)
        andalso not hornbeam_http_req:has_token(<<"connection">>, <<"close">>, Req);
keep_alive(Req) ->
    not hornbeam_http_req:has_token(<<"connection">>, <<"close">>, Req).

send(#s{sock = Sock}, Data) ->
    gen_tcp:send(Sock, Data).

%% Close after our last response: stop writing, read and drop what the client
%% still sends for a moment (so it gets our response, not a reset), close.
close(#s{sock = Sock}) ->
    _ = gen_tcp:shutdown(Sock, write),
    drain(Sock, deadline(?LINGER_MS)),
    _ = gen_tcp:close(Sock),
    ok.

drain(Sock, Deadline) ->
    case gen_tcp:recv(Sock, 0, remaining(Deadline)) of
        {ok, _} -> drain(Sock, Deadline);
        {error, _} -> ok
    end.

%% --- reading one request -----------------------------------------------------------

%% Two clocks: the request line and headers must be complete within
%% header_timeout of the request's first byte (a slowloris client trickling
%% bytes just inside any idle timeout is cut off there), the body within
%% request_timeout of the end of the headers.
-spec read_request(#s{}) -> {ok, hornbeam_http_req:req(), #s{}}
                          | {reject, 400..599, binary()}
                          | {timeout, header_timeout | request_timeout} | closed.
read_request(S0 = #s{header_timeout = HeaderTimeout, timeout = Timeout}) ->
    try
        {Method, Target, Version, S1} = request_line(S0#s{deadline = deadline(HeaderTimeout)}, 0),
        ok = check_version(Version),
        {Headers, S2} = header_lines(S1, [], 0),
        Req = request(Method, Target, Version, Headers, S2),
        try body(Req, S2#s{deadline = deadline(Timeout)}) of
            {Body, S3} -> {ok, Req#{body := Body}, S3}
        catch
            throw:timeout -> {timeout, request_timeout}
        end
    catch
        throw:{reject, Status, Why} -> {reject, Status, Why};
        throw:timeout -> {timeout, header_timeout};
        throw:closed -> closed
    end.

request_line(S = #s{buf = Buf, max_line = Max}, Skipped) ->
    case erlang:decode_packet(http_bin, Buf, []) of
        {more, _} when byte_size(Buf) > Max + 2 ->
            throw({reject, 414, <<"request line longer than max_request_line_length">>});
        {more, _} ->
            request_line(more(S), Skipped);
        {ok, {http_request, Method, Target, Version}, Rest} ->
            case byte_size(Buf) - byte_size(Rest) > Max + 2 of
                true -> throw({reject, 414, <<"request line longer than max_request_line_length">>});
                false -> {Method, Target, Version, S#s{buf = Rest}}
            end;
        {ok, {http_error, Empty}, Rest} when (Empty =:= <<"\r\n">> orelse Empty =:= <<"\n">>),
                                             Skipped < 4 ->
            %% RFC 9112 §2.2: ignore empty lines before a request line.
            request_line(S#s{buf = Rest}, Skipped + 1);
        _ ->
            throw({reject, 400, <<"malformed request line">>})
    end.

header_lines(S = #s{buf = Buf, max_header_line = Max, max_headers = MaxN}, Acc, N) ->
    case erlang:decode_packet(httph_bin, Buf, []) of
        {more, _} when byte_size(Buf) > Max + 2 ->
            throw({reject, 431, <<"header line longer than max_header_line_length">>});
        {more, _} ->
            header_lines(more(S), Acc, N);
        {ok, http_eoh, Rest} ->
            {lists:reverse(Acc), S#s{buf = Rest}};
        {ok, {http_header, _, Field, Unmodified, Value}, Rest} ->
            if
                byte_size(Buf) - byte_size(Rest) > Max + 2 ->
                    throw({reject, 431, <<"header line longer than max_header_line_length">>});
                N >= MaxN ->
                    throw({reject, 431, <<"more headers than max_headers">>});
                true ->
                    Name = field_name(Field, Unmodified),
                    valid_field(Name, Value),
                    header_lines(S#s{buf = Rest},
                                 [{Name, hornbeam_http_req:trim(Value)} | Acc], N + 1)
            end;
        _ ->
            throw({reject, 400, <<"malformed header line">>})
    end.

field_name(_Field, Unmodified) when is_binary(Unmodified), Unmodified =/= <<>> ->
    hornbeam_http_req:lowercase(Unmodified);
field_name(Field, _) when is_atom(Field) ->
    hornbeam_http_req:lowercase(atom_to_binary(Field));
field_name(Field, _) when is_binary(Field) ->
    hornbeam_http_req:lowercase(Field);
field_name(_, _) ->
    <<>>.

valid_field(<<>>, _) ->
    throw({reject, 400, <<"empty header name">>});
valid_field(_Name, Value) ->
    case binary:match(Value, [<<"\r">>, <<"\n">>, <<0>>]) of
        nomatch -> ok;
        _ -> throw({reject, 400, <<"header value with CR, LF or NUL (line folding is not accepted)">>})
    end.

check_version({1, _}) -> ok;
check_version({0, _}) -> throw({reject, 400, <<"HTTP/0.9 is not supported">>});
check_version(_) -> throw({reject, 505, <<"only HTTP/1.x is supported">>}).

request(Method, Target, Version, Headers, #s{peer = Peer, local = Local}) ->
    RawTarget = case Target of
                    {abs_path, P} -> P;
                    {absoluteURI, _Scheme, _Host, _Port, P} -> P;
                    '*' -> <<"*">>;
                    _ -> throw({reject, 400, <<"unsupported request target">>})
                end,
    {RawPath, Query} = hornbeam_http_req:split_target(RawTarget),
    Path = case hornbeam_http_req:percent_decode(RawPath) of
               {ok, Decoded} -> Decoded;
               error -> throw({reject, 400, <<"bad percent-encoding in the path">>})
           end,
    Req = #{method => method_name(Method), path => Path, raw_path => RawPath, query => Query,
            version => Version, headers => Headers, body => <<>>, peer => Peer, sock => Local,
            scheme => <<"http">>},
    case Version >= {1, 1} andalso length(hornbeam_http_req:headers(<<"host">>, Req)) =/= 1 of
        true -> throw({reject, 400, <<"HTTP/1.1 requests need exactly one Host header">>});
        false -> Req
    end.

method_name(M) when is_atom(M) -> atom_to_binary(M);
method_name(M) when is_binary(M) -> M.

%% --- request body ---------------------------------------------------------------------

body(Req = #{version := Version}, S = #s{max_body = Max}) ->
    TE = hornbeam_http_req:header_tokens(<<"transfer-encoding">>, Req),
    CL = hornbeam_http_req:headers(<<"content-length">>, Req),
    case {TE, CL} of
        {[], []} ->
            {<<>>, S};
        {[], _} ->
            case content_length(CL) of
                error -> throw({reject, 400, <<"bad Content-Length">>});
                N when N > Max -> throw({reject, 413, <<"body larger than max_body_length">>});
                N ->
                    S1 = expect(Req, N > byte_size(S#s.buf), S),
                    read_exact(N, S1)
            end;
        {_, [_ | _]} ->
            throw({reject, 400, <<"both Content-Length and Transfer-Encoding">>});
        {_, []} when Version < {1, 1} ->
            throw({reject, 400, <<"Transfer-Encoding in an HTTP/1.0 request">>});
        {[<<"chunked">>], []} ->
            S1 = expect(Req, S#s.buf =:= <<>>, S),
            chunked(hornbeam_http_chunked:new(Max, S#s.max_header_line, S#s.max_headers), S1);
        {_, []} ->
            case lists:last(TE) of
                <<"chunked">> -> throw({reject, 501, <<"unsupported transfer coding">>});
                _ -> throw({reject, 400, <<"the last transfer coding must be chunked">>})
            end
    end.

%% All Content-Length values (several headers, or a comma list) must agree.
content_length(Values) ->
    Parts = [hornbeam_http_req:trim(P) || V <- Values, P <- binary:split(V, <<",">>, [global])],
    case lists:usort(Parts) of
        [One] when byte_size(One) > 0, byte_size(One) =< 18 ->
            case lists:all(fun(C) -> C >= $0 andalso C =< $9 end, binary_to_list(One)) of
                true -> binary_to_integer(One);
                false -> error
            end;
        _ ->
            error
    end.

%% Answer `Expect: 100-continue' when the body is still to come.
expect(Req = #{version := Version}, BodyPending, S) ->
    case hornbeam_http_req:header_tokens(<<"expect">>, Req) of
        [] ->
            S;
        [<<"100-continue">>] when BodyPending, Version >= {1, 1} ->
            case send(S, <<"HTTP/1.1 100 Continue\r\n\r\n">>) of
                ok -> S;
                {error, _} -> throw(closed)
            end;
        [<<"100-continue">>] ->
            S;
        _ ->
            throw({reject, 417, <<"only Expect: 100-continue is supported">>})
    end.

read_exact(N, S = #s{buf = Buf}) when byte_size(Buf) >= N ->
    <<Body:N/binary, Rest/binary>> = Buf,
    {Body, S#s{buf = Rest}};
read_exact(N, S = #s{sock = Sock, buf = Buf, deadline = Deadline}) ->
    Want = min(N - byte_size(Buf), ?RECV_CHUNK),
    case gen_tcp:recv(Sock, Want, remaining(Deadline)) of
        {ok, Data} -> read_exact(N, S#s{buf = <<Buf/binary, Data/binary>>});
        {error, timeout} -> throw(timeout);
        {error, _} -> throw(closed)
    end.

chunked(St, S = #s{buf = Buf}) ->
    case hornbeam_http_chunked:decode(Buf, St) of
        {done, Body, Rest} ->
            {Body, S#s{buf = Rest}};
        {more, Unused, St1} ->
            chunked(St1, more(S#s{buf = Unused}));
        {error, too_large} ->
            throw({reject, 413, <<"body larger than max_body_length">>});
        {error, Trailer} when Trailer =:= trailer_too_long; Trailer =:= too_many_trailers ->
            throw({reject, 431, <<"trailer section over the header limits">>});
        {error, _} ->
            throw({reject, 400, <<"malformed chunked body">>})
    end.

%% --- socket reads and time ------------------------------------------------------------

%% Read whatever arrives next into the buffer, within the request's deadline.
more(S = #s{sock = Sock, buf = Buf, deadline = Deadline}) ->
    case gen_tcp:recv(Sock, 0, remaining(Deadline)) of
        {ok, Data} -> S#s{buf = <<Buf/binary, Data/binary>>};
        {error, timeout} -> throw(timeout);
        {error, _} -> throw(closed)
    end.

deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

remaining(infinity) -> infinity;
remaining(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

method(#{method := M}) -> M.

path(#{raw_path := P}) -> P.
