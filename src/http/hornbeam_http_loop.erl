%% @doc The behaviour of a late or streamed HTTP response: what a handler's
%% `handle_http/2' names in `{loop, Module, State}'.
%%
%% The connection process, with its socket in `{active, once}' mode, hands
%% every message it receives (other than its own socket's) to
%% `Module:info(Msg, State)' and acts on the answer:
%% <ul>
%% <li>`{noreply, State}' — nothing to write yet;</li>
%% <li>`{reply, Status, Headers, Body}' — the whole response, written as a
%%     `handle_http/2' answer would be (only before `stream');</li>
%% <li>`{stream, Status, Headers, State}' — the response head (only once).
%%     The body is framed by the handler's `content-length' if it gave a valid
%%     one (extra bytes are dropped; a body that ends short closes the
%%     connection), else chunked on HTTP/1.1, else (HTTP/1.0) written as is
%%     and the connection closes after it. HEAD, 204 and 304 responses send no
%%     body whatever the pieces are;</li>
%% <li>`{chunk, Data, State}' — a piece of the body (after `stream'; empty
%%     pieces are not written);</li>
%% <li>`{done, Data}' — the last piece: the response is complete, the
%%     connection goes on with the next request (keep-alive rules apply);</li>
%% <li>anything else (`{error, Reason}', a crash) — before the head, a 500
%%     and the connection closes; after it, the connection closes at once
%%     (the client sees an incomplete body).</li>
%% </ul>
%% When the client closes the connection, or a write fails, the connection
%% calls `Module:info({hornbeam_http_conn, closed}, State)' (its answer is
%% ignored) and ends. There is no timeout of the connection's own while it
%% waits: the module enforces its own (the Python pool does, for apps).
-module(hornbeam_http_loop).

-callback info(Msg :: term(), State :: term()) ->
    {noreply, State :: term()}
    | {reply, hornbeam_http_handler:status(), hornbeam_http_handler:headers(), iodata()}
    | {stream, hornbeam_http_handler:status(), hornbeam_http_handler:headers(), State :: term()}
    | {chunk, iodata(), State :: term()}
    | {done, iodata()}
    | {error, term()}.
