%% @doc The long-poll transport at `<ws_path>/longpoll', as phoenix.js's
%% `LongPoll' speaks it (also after its `longPollFallbackMs' fallback).
%%
%% Every answer is HTTP 200 with a JSON body whose `status' is what the
%% client acts on (as Phoenix does):
%% <ul>
%% <li>`GET' without a token: connect (params, `connect', Origin as for a
%%     WebSocket) and start a session: `{"status":410,"token":T,"messages":[]}'
%%     (phoenix.js reads 410 without a token as "open"); refused: 403.</li>
%% <li>`GET ?token=T': the poll. It waits for the session's messages up to
%%     `longpoll_poll_timeout': `{"status":200,"token":T,"messages":[Text...]}',
%%     or 204 with none.</li>
%% <li>`POST ?token=T': messages, one per line (`application/x-ndjson', as
%%     phoenix.js 1.7+ batches them) or the whole body as one (older clients):
%%     `{"status":200}' once the session handled them.</li>
%% <li>A session token whose session is gone (expired, closed, never
%%     existed): 410, and phoenix.js reconnects with a new session and
%%     rejoins. A `token' param that is no session token at all (the app's
%%     own connect param) is a first contact.</li>
%% </ul>
%%
%% A session is a `hornbeam_socket' process with the long-poll transport,
%% under `hornbeam_longpoll_sup'. Its token is `base64url(<<1, NodeLen,
%% Node, Secret:24/bytes>>)': the owner node in clear (so any node of the
%% cluster can route a request to it) and 192 random bits. Each node keeps a
%% table of the SHA-256 of its sessions' secrets (never the secrets, so no
%% crash report or table dump prints a usable token); a request that reaches
%% another node looks the session up there (`erpc') and talks to its pid
%% directly.
-module(hornbeam_longpoll).
-behaviour(hornbeam_http_loop).

-export([is_longpoll_path/2, handle/2, info/2]).
-export([register/2, unregister/1, lookup_local/1, table/0]).
-export([new_token/0, decode_token/1, post_frames/2]).

-define(TABLE, hornbeam_longpoll_sessions).
-define(SECRET_BYTES, 24).
-define(REMOTE_LOOKUP_TIMEOUT, 5000).

-record(wait, {kind :: poll | post,
               session :: pid(),
               monitor :: reference(),
               ref :: reference(),
               timer :: reference(),
               token :: binary()}).

%% --- routing -------------------------------------------------------------------------

%% @doc Whether Path is `<ws_path>/longpoll' (with or without a trailing slash).
-spec is_longpoll_path(binary(), hornbeam_endpoint:config()) -> boolean().
is_longpoll_path(Path, #{ws_path := WsPath}) ->
    trim(Path) =:= <<(trim(WsPath))/binary, "/longpoll">>.

trim(<<>>) -> <<>>;
trim(Path) ->
    case binary:last(Path) of
        $/ -> trim(binary:part(Path, 0, byte_size(Path) - 1));
        _ -> Path
    end.

%% @doc Answer one long-poll request (see the module doc).
-spec handle(hornbeam_http_req:req(), hornbeam_endpoint:config()) ->
    {100..599, [{binary(), iodata()}], iodata()} | {loop, module(), term()}.
handle(Req = #{method := <<"OPTIONS">>}, _Config) ->
    %% CORS preflight (phoenix.js's X-Phoenix-AuthToken and ndjson POSTs from
    %% another origin ask first); the Origin check below still decides.
    Asked = hornbeam_http_req:headers(<<"access-control-request-headers">>, Req),
    {200, cors() ++ [{<<"access-control-allow-headers">>, lists:join(<<", ">>, Asked)},
                     {<<"access-control-allow-methods">>, <<"get, post, options">>},
                     {<<"access-control-max-age">>, <<"3600">>}], <<>>};
handle(Req = #{method := Method}, Config = #{check_origin := Policy}) ->
    Params = maps:from_list(hornbeam_http_req:query_params(Req)),
    case {hornbeam_ws_handshake:check_origin(Req, Policy), hornbeam_endpoint:vsn_ok(Params)} of
        {{error, _}, _} ->
            logger:info("long-poll refused: origin ~0p not allowed (allowed: ~0p; see public_hosts)",
                        [hornbeam_http_req:header(<<"origin">>, Req), Policy]),
            status(403);
        {ok, false} ->
            logger:info("long-poll refused: unsupported vsn ~0p", [maps:get(<<"vsn">>, Params)]),
            status(403);
        {ok, true} ->
            %% `token' is also a common connect param (phoenix.js then sends
            %% `?token=USER&vsn=2.0.0&token=SESSION': the last one wins, as in
            %% Plug). A GET whose token is not a session token at all is a
            %% first contact: a new session. One that is, but whose session is
            %% gone, gets 410: phoenix.js then starts afresh, and its next GET
            %% carries only the user's params.
            case {Method, maps:find(<<"token">>, Params)} of
                {<<"GET">>, error} -> new_session(Req, Params, Config);
                {<<"GET">>, {ok, Token}} ->
                    case decode_token(Token) of
                        {ok, _, _} -> wait(poll, Token, [], Config);
                        error -> new_session(Req, Params, Config)
                    end;
                {<<"POST">>, {ok, Token}} -> wait(post, Token, post_lines(Req), Config);
                {<<"POST">>, error} -> status(410);
                _ -> {405, [{<<"allow">>, <<"GET, POST, OPTIONS">>} | cors()], <<>>}
            end
    end.

new_session(Req, Params, Config = #{longpoll_max_sessions := Max}) ->
    case ets:info(?TABLE, size) of
        N when is_integer(N), N < Max ->
            AuthToken = hornbeam_http_req:header(<<"x-phoenix-authtoken">>, Req),
            case hornbeam_endpoint:connect_conn(Req, Params, AuthToken, longpoll, Config) of
                {ok, Conn} -> start_session(Conn);
                {error, overloaded} -> status(500);
                {error, _} -> status(403)
            end;
        N when is_integer(N) ->
            logger:warning("long-poll session refused: longpoll_max_sessions (~b) reached", [Max]),
            status(500);
        undefined ->
            logger:error("long-poll session refused: no session supervisor on this node"),
            status(500)
    end.

start_session(Conn) ->
    {Token, Key} = new_token(),
    case hornbeam_longpoll_sup:start_session(Conn, Key) of
        {ok, _Pid} ->
            json(#{<<"status">> => 410, <<"token">> => Token, <<"messages">> => []});
        {error, Reason} ->
            logger:error("could not start a long-poll session: ~0p", [Reason]),
            status(500)
    end.

%% A poll or a POST: find the session (on whichever node owns it), hand it
%% the request, wait in the HTTP connection process for its answer.
wait(Kind, Token, Lines, #{longpoll_poll_timeout := PollTimeout, longpoll_timeout := IdleTimeout}) ->
    case find(Token) of
        {ok, Pid} ->
            Mon = erlang:monitor(process, Pid),
            Ref = make_ref(),
            {Msg, Guard} = case Kind of
                               poll -> {{'$hb_lp_poll', self(), Ref}, PollTimeout + 5000};
                               post -> {{'$hb_lp_post', self(), Ref, Lines}, IdleTimeout}
                           end,
            Pid ! Msg,
            %% The session answers a poll itself after longpoll_poll_timeout;
            %% this guard only covers a session that cannot answer (a node
            %% that stopped responding), and a POST waiting on a stuck channel.
            Timer = erlang:start_timer(Guard, self(), '$hb_lp_guard'),
            {loop, ?MODULE, #wait{kind = Kind, session = Pid, monitor = Mon, ref = Ref,
                                  timer = Timer, token = Token}};
        error ->
            status(410)
    end.

%% @doc The hornbeam_http_loop callback: the session's answer to a poll or POST.
-spec info(term(), #wait{}) ->
    {noreply, #wait{}} | {reply, 100..599, [{binary(), iodata()}], iodata()}.
info({'$hb_lp_messages', Ref, Messages}, W = #wait{ref = Ref, token = Token}) ->
    done(W),
    reply(messages_json(Token, Messages));
info({'$hb_lp_posted', Ref}, W = #wait{ref = Ref}) ->
    done(W),
    reply(status(200));
info({'DOWN', Mon, process, _, _}, W = #wait{monitor = Mon}) ->
    done(W),
    reply(status(410));
info({timeout, Timer, '$hb_lp_guard'}, W = #wait{timer = Timer, kind = Kind}) ->
    done(W),
    logger:info("long-poll ~s: no answer from the session in time", [Kind]),
    case Kind of
        poll -> reply(status(410));
        post -> reply(status(500))
    end;
info({hornbeam_http_conn, closed}, W = #wait{kind = poll, session = Pid, ref = Ref}) ->
    %% The client gave up on its poll: the session stops waiting for it, so
    %% its idle clock (longpoll_timeout) runs.
    Pid ! {'$hb_lp_cancel', Ref},
    done(W),
    {noreply, W};
info(_Stale, W) ->
    %% an answer or a DOWN for an earlier request of this connection
    {noreply, W}.

reply({Status, Headers, Body}) -> {reply, Status, Headers, Body}.

done(#wait{monitor = Mon, timer = Timer}) ->
    erlang:demonitor(Mon, [flush]),
    _ = erlang:cancel_timer(Timer),
    receive {timeout, Timer, _} -> ok after 0 -> ok end.

%% POST bodies: ndjson is one message a line (phoenix.js 1.7+), anything
%% else is one message (phoenix.js 1.6 and older send one JSON body each).
post_lines(Req = #{body := Body}) ->
    case hornbeam_http_req:header(<<"content-type">>, Req) of
        <<"application/x-ndjson", _/binary>> ->
            [L || L <- binary:split(Body, [<<"\r\n">>, <<"\n">>], [global]), L =/= <<>>];
        _ ->
            [Body]
    end.

%% @doc The frames a POST's lines are for the socket: a line starting with
%% `[' is a V2 JSON message (a text frame); phoenix.js sends a binary
%% message (an `ArrayBuffer' payload) as its base64, a binary frame. Over
%% MaxFrame bytes, or bad base64: the protocol error a WebSocket gets for
%% it (1009, 1007), which ends the session.
-spec post_frames([binary()], pos_integer()) ->
    [{text | binary, binary()} | {protocol_error, atom(), 1007 | 1009}].
post_frames(Lines, MaxFrame) ->
    post_frames(Lines, MaxFrame, []).

post_frames([], _Max, Acc) ->
    lists:reverse(Acc);
post_frames([Line | _], Max, Acc) when byte_size(Line) > Max ->
    lists:reverse([{protocol_error, message_too_big, 1009} | Acc]);
post_frames([Line = <<"[", _/binary>> | Rest], Max, Acc) ->
    post_frames(Rest, Max, [{text, Line} | Acc]);
post_frames([Line | Rest], Max, Acc) ->
    try base64:decode(Line) of
        Bin -> post_frames(Rest, Max, [{binary, Bin} | Acc])
    catch _:_ ->
        lists:reverse([{protocol_error, invalid_base64, 1007} | Acc])
    end.

%% --- tokens and the session table ---------------------------------------------------

%% @doc A new session token and the key the session registers under.
-spec new_token() -> {Token :: binary(), Key :: binary()}.
new_token() ->
    Node = atom_to_binary(node()),
    Secret = crypto:strong_rand_bytes(?SECRET_BYTES),
    Token = b64url_encode(<<1, (byte_size(Node)):8, Node/binary, Secret/binary>>),
    {Token, key(Secret)}.

%% @doc The owner node and key of a session token (`unknown' for a node
%% name that is no atom here: no such node); `error' for anything that is
%% not a session token. Never creates an atom.
-spec decode_token(binary()) -> {ok, node() | unknown, binary()} | error.
decode_token(Token) ->
    try
        <<1, Len:8, NodeBin:Len/binary, Secret:?SECRET_BYTES/binary>> = b64url_decode(Token),
        Node = try binary_to_existing_atom(NodeBin) catch error:badarg -> unknown end,
        {ok, Node, key(Secret)}
    catch _:_ ->
        error
    end.

key(Secret) -> crypto:hash(sha256, Secret).

%% Unpadded base64url (RFC 4648 §5): a token goes in a query string as it is.
%% (OTP 25's base64 has no urlsafe mode.)
b64url_encode(Bin) ->
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= base64:encode(Bin), C =/= $= >>.

b64url_decode(Text) ->
    Std = << <<(case C of $- -> $+; $_ -> $/; $+ -> error(not_url); $/ -> error(not_url); _ -> C end)>>
             || <<C>> <= Text >>,
    Pad = case byte_size(Std) rem 4 of 0 -> <<>>; 2 -> <<"==">>; 3 -> <<"=">>; 1 -> error(bad_length) end,
    base64:decode(<<Std/binary, Pad/binary>>).

find(Token) ->
    case decode_token(Token) of
        {ok, Node, Key} when Node =:= node() ->
            lookup_local(Key);
        {ok, unknown, _Key} ->
            error;
        {ok, Node, Key} ->
            case lists:member(Node, nodes()) of
                true ->
                    try erpc:call(Node, ?MODULE, lookup_local, [Key], ?REMOTE_LOOKUP_TIMEOUT)
                    catch Class:Reason ->
                        logger:info("long-poll session lookup on ~s failed: ~0p:~0p",
                                    [Node, Class, Reason]),
                        error
                    end;
                false ->
                    error
            end;
        error ->
            error
    end.

%% @doc The session registered under Key on this node.
-spec lookup_local(binary()) -> {ok, pid()} | error.
lookup_local(Key) ->
    try ets:lookup(?TABLE, Key) of
        [{_, Pid}] ->
            case is_process_alive(Pid) of
                true -> {ok, Pid};
                false -> error
            end;
        [] -> error
    catch error:badarg -> error     %% no session supervisor on this node
    end.

-spec register(binary(), pid()) -> ok.
register(Key, Pid) ->
    true = ets:insert(?TABLE, {Key, Pid}),
    ok.

-spec unregister(binary() | undefined) -> ok.
unregister(undefined) -> ok;
unregister(Key) ->
    _ = (catch ets:delete(?TABLE, Key)),
    ok.

%% @doc The name of the session table (owned by `hornbeam_longpoll_sup').
-spec table() -> atom().
table() -> ?TABLE.

%% --- responses -----------------------------------------------------------------------

status(Status) ->
    json(#{<<"status">> => Status}).

%% `{"status":200|204,"token":T,"messages":[...]}', each message (a JSON
%% text) encoded as a JSON string by its own NIF call, so no call works on
%% more than one message (at most max_frame_size bytes).
messages_json(Token, Messages) ->
    Status = case Messages of [] -> <<"204">>; _ -> <<"200">> end,
    Body = [<<"{\"status\":">>, Status, <<",\"token\":">>, string_json(Token),
            <<",\"messages\":[">>, lists:join($,, [string_json(M) || M <- Messages]), <<"]}">>],
    {200, [{<<"content-type">>, <<"application/json; charset=utf-8">>} | cors()], Body}.

string_json(Text) ->
    {ok, Json} = hornbeam_nif:json_encode(Text),
    Json.

json(Map) ->
    {ok, Body} = hornbeam_nif:json_encode(Map),
    {200, [{<<"content-type">>, <<"application/json; charset=utf-8">>} | cors()], Body}.

%% Phoenix allows every origin to read long-poll answers: the Origin check
%% (check_origin) already refused the ones not allowed.
cors() ->
    [{<<"access-control-allow-origin">>, <<"*">>}].
