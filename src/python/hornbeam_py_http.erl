%% @doc HTTP requests served by the Python app (ASGI or WSGI) of the worker
%% pool. `hornbeam_endpoint:handle_http/2' calls handle/1 for every request
%% that is not on the WebSocket path.
%%
%% With an app, the request becomes a stream call (`hornbeam_python:stream/3',
%% kind `http', arguments from args/1) and the connection process waits in
%% `{loop, ?MODULE, State}' (see `hornbeam_http_loop'), turning the worker's
%% events into the response:
%% <ul>
%% <li>`{response, S, H, B}' → the whole response (content-length);</li>
%% <li>`{start, S, H}', `{body, Data, true}'..., `{body, Data, false}' → a
%%     streamed response (chunked unless the app gave a content-length);</li>
%% <li>the app raised or broke the protocol → 500 (traceback in the log);
%%     the call timed out → 504 (the worker is replaced); the worker died →
%%     502; `max_queued_calls' requests already wait for a thread of the
%%     worker → 503; once the head is out, any of these closes the
%%     connection.</li>
%% </ul>
%% Every ?ACK_CHUNKS body pieces or ?ACK_BYTES bytes taken, the worker is
%% told `{ack, N}' (flow control: the app's send() waits when it is more
%% than a window ahead, see `priv/python/hornbeam_asgi.py'). A client that
%% goes away cancels the stream: the app's receive() returns
%% `http.disconnect'.
%%
%% `/hornbeam.js' and `/hornbeam.mjs' (`hornbeam_static') are asked of the app
%% first; only its 404 is replaced by the file. Without an app every request
%% gets the static file or a 404.
-module(hornbeam_py_http).
-behaviour(hornbeam_http_loop).

-export([handle/1, info/2, args/1]).

-define(ACK_CHUNKS, 16).
-define(ACK_BYTES, 65536).

-record(st, {ref :: reference(),
             stream :: hornbeam_python:stream(),
             req :: hornbeam_http_req:req(),
             %% head: no response yet; body: streaming it; drain: the app's
             %% 404 to a static path is read and dropped, the file follows
             phase = head :: head | body | drain,
             static :: undefined | {200 | 304, hornbeam_http_handler:headers(), binary()},
             chunks = 0 :: non_neg_integer(),
             acked = 0 :: non_neg_integer(),
             bytes = 0 :: non_neg_integer()}).

-type state() :: #st{}.
-type response() :: {100..599, hornbeam_http_handler:headers(), iodata()}.

%% @doc The answer to a request that is not on the WebSocket path.
-spec handle(hornbeam_http_req:req()) -> response() | {loop, ?MODULE, state()}.
handle(Req) ->
    case hornbeam_python:has_http_app() of
        false ->
            hornbeam_static:serve(Req);
        true ->
            case hornbeam_python:stream(http, args(Req)) of
                {ok, Ref, Stream} ->
                    {loop, ?MODULE, #st{ref = Ref, stream = Stream, req = Req}};
                {error, Reason} ->
                    logger:warning("python pool unavailable for ~s ~s: ~p",
                                   [maps:get(method, Req), maps:get(raw_path, Req), Reason]),
                    plain(503)
            end
    end.

%% @doc What the worker gets for a request: every field of the ASGI scope
%% (and WSGI environ) it needs, and the whole body.
-spec args(hornbeam_http_req:req()) -> map().
args(#{method := Method, path := Path, raw_path := RawPath, query := Query,
       version := {Major, Minor}, headers := Headers, body := Body, peer := Peer,
       sock := Sock} = Req) ->
    #{method => Method,
      scheme => maps:get(scheme, Req, <<"http">>),
      path => Path,
      raw_path => RawPath,
      query => Query,
      http_version => case {Major, Minor} of
                          {1, 1} -> <<"1.1">>;
                          {1, 0} -> <<"1.0">>;
                          _ -> <<(integer_to_binary(Major))/binary, ".",
                                 (integer_to_binary(Minor))/binary>>
                      end,
      headers => Headers,
      body => Body,
      client => addr(Peer),
      server => addr(Sock)}.

addr({IP, Port}) ->
    {list_to_binary(inet:ntoa(IP)), Port};
addr(_) ->
    undefined.

%% --- hornbeam_http_loop ----------------------------------------------------------

-spec info(term(), state()) ->
          {noreply, state()} | {reply, 100..599, hornbeam_http_handler:headers(), iodata()}
          | {stream, 100..599, hornbeam_http_handler:headers(), state()}
          | {chunk, iodata(), state()} | {done, iodata()} | {error, term()}.
info({hornbeam_py, Ref, Event}, St = #st{ref = Ref}) ->
    event(Event, St);
info({'DOWN', Ref, process, _, _}, St = #st{ref = Ref}) ->
    failed({error, worker_crashed}, St);
info({hornbeam_http_conn, closed}, St = #st{stream = Stream}) ->
    hornbeam_python:cancel(Stream),
    {noreply, St};
info(_Other, St) ->
    {noreply, St}.

event({response, Status, Headers, Body}, St = #st{phase = head}) ->
    finish(St),
    case static_instead(Status, St) of
        {ok, {S, H, B}} -> {reply, S, H, B};
        no -> {reply, Status, Headers, Body}
    end;
event({start, Status, Headers}, St = #st{phase = head}) ->
    case static_instead(Status, St) of
        {ok, Static} -> {noreply, St#st{phase = drain, static = Static}};
        no -> {stream, Status, Headers, St#st{phase = body}}
    end;
event({body, Data, true}, St = #st{phase = body}) ->
    {chunk, Data, ack(Data, St)};
event({body, Data, false}, St = #st{phase = body}) ->
    finish(St),
    {done, Data};
event({body, Data, true}, St = #st{phase = drain}) ->
    {noreply, ack(Data, St)};
event({body, _, false}, St = #st{phase = drain, static = {S, H, B}}) ->
    finish(St),
    {reply, S, H, B};
event(Other, St) ->
    failed(Other, St).

%% The call ended without (completing) a response, or failed.
failed(Why, St = #st{phase = Phase, req = Req}) ->
    finish(St),
    logger:info("python app gave no complete response to ~s ~s: ~0P",
                [maps:get(method, Req), maps:get(raw_path, Req), Why, 12]),
    case {Phase, St#st.static} of
        {drain, {S, H, B}} -> {reply, S, H, B};
        {body, _} -> {error, Why};
        {head, _} -> {S, H, B} = plain(status(Why)), {reply, S, H, B}
    end.

status({error, timeout}) -> 504;
status({error, overloaded}) -> 503;
status({error, worker_crashed}) -> 502;
status(_) -> 500.

plain(Status) ->
    {Status, [{<<"content-type">>, <<"text/plain">>}],
     [hornbeam_http_response:reason(Status), <<"\n">>]}.

%% The app's 404 to /hornbeam.js or /hornbeam.mjs: the file, if there is one.
static_instead(404, #st{req = Req}) ->
    case hornbeam_static:lookup(Req) of
        {ok, Static} -> {ok, Static};
        not_found -> no
    end;
static_instead(_, _) ->
    no.

ack(Data, St = #st{chunks = Chunks0, acked = Acked, bytes = Bytes0, stream = Stream}) ->
    Chunks = Chunks0 + 1,
    Bytes = Bytes0 + iolist_size(Data),
    case Chunks - Acked >= ?ACK_CHUNKS orelse Bytes >= ?ACK_BYTES of
        true ->
            hornbeam_python:notify(Stream, {ack, Chunks}),
            St#st{chunks = Chunks, acked = Chunks, bytes = 0};
        false ->
            St#st{chunks = Chunks, bytes = Bytes}
    end.

%% No more messages of this stream will come (the worker forwards nothing
%% after a complete response or the end of the call); drop the monitor.
finish(#st{ref = Ref}) ->
    demonitor(Ref, [flush]),
    ok.
