%% @doc The behaviour a listener's `handler' implements.
%%
%% For each request without `Upgrade: websocket' the connection process calls
%% `handle_http/2' and writes the response, adding `content-length', `date',
%% `server: hornbeam' and `connection' itself (a `content-length',
%% `transfer-encoding' or `connection' header the handler returns is replaced;
%% on HEAD, a handler-given `content-length' is kept and no body is sent).
%% The status must be a final one (200..599). A crash or a bad return value
%% gives the client a 500, a log line, and closes only that connection.
%%
%% `handle_http/2' may instead return `{loop, Module, State}' to answer
%% later or to stream the response (`Module' implements
%% `hornbeam_http_loop'): the connection process then hands every message
%% it receives to `Module:info(Msg, State)' until the response is written.
%% See `hornbeam_http_loop' for the answers.
%%
%% For a request with `Upgrade: websocket', the connection first checks the
%% handshake (`hornbeam_ws_handshake:validate/1'; failure → 400 naming the
%% problem), then calls `websocket_upgrade/2':
%% <ul>
%% <li>`{refuse, Status, Headers, Body}' is written as a normal response
%%     (keep-alive rules apply);</li>
%% <li>`{ok, WsState, ExtraHeaders}' makes the connection write
%%     `101 Switching Protocols' (with `ExtraHeaders') and then call
%%     `websocket_enter(Socket, Buffered, WsState)' in the same process. The
%%     socket is then passive, binary, `{packet, raw}', owned by that process;
%%     `Buffered' holds the bytes the client already sent past the request.
%%     `websocket_enter/3' must not return: it becomes the WebSocket process
%%     (e.g. with `gen_server:enter_loop/3'; the process is a `proc_lib' one).</li>
%% </ul>
%% Origin checks belong to `websocket_upgrade/2' (see
%% `hornbeam_ws_handshake:check_origin/2').
-module(hornbeam_http_handler).

-type status() :: 100..599.
-type headers() :: [{binary(), iodata()}].
-export_type([status/0, headers/0]).

-callback handle_http(Req :: hornbeam_http_req:req(), HandlerOpts :: term()) ->
    {Status :: status(), Headers :: headers(), Body :: iodata()}
    | {loop, Module :: module(), State :: term()}.

-callback websocket_upgrade(Req :: hornbeam_http_req:req(), HandlerOpts :: term()) ->
    {ok, WsState :: term(), ExtraHeaders :: headers()}
    | {refuse, Status :: status(), Headers :: headers(), Body :: iodata()}.

-callback websocket_enter(Socket :: gen_tcp:socket(), Buffered :: binary(), WsState :: term()) ->
    no_return().
