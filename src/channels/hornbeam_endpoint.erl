%% @doc The endpoint: what the HTTP layer calls for each request. WebSocket
%% upgrades on `ws_path' (and `ws_path ++ "/websocket"', for phoenix.js)
%% become `hornbeam_socket' processes; `ws_path ++ "/longpoll"' is the
%% long-poll transport (`hornbeam_longpoll'); other paths answer 404 until an app
%% serves HTTP. Holds the endpoint's configuration (limits, routes) in one
%% map, built once by `config/1' and stored in `persistent_term'.
-module(hornbeam_endpoint).
-behaviour(hornbeam_http_handler).

-export([config/1, defaults/0, route/2, check_socket_id/1, vsn_ok/1, connect_conn/5]).
-export([handle_http/2, websocket_upgrade/2, websocket_enter/3]).

-type config() :: #{
    ws_path := binary(),
    check_origin := false | [binary()],       %% resolved: public_hosts_policy or the given list
    max_frame_size := pos_integer(),
    max_send_queue := pos_integer(),
    max_json_depth := pos_integer(),
    max_channels_per_connection := pos_integer(),
    max_topic_length := pos_integer(),
    heartbeat_timeout := pos_integer(),
    fragment_timeout := pos_integer(),
    max_pending_events := pos_integer(),
    hibernate_after := timeout(),
    write_batch_frames := pos_integer(),
    write_batch_bytes := pos_integer(),
    longpoll_timeout := pos_integer(),
    longpoll_poll_timeout := pos_integer(),
    longpoll_max_sessions := non_neg_integer(),
    compress := boolean(),
    compress_threshold := non_neg_integer(),
    compress_level := 0..9,
    compress_window_bits := 9..15,
    compress_server_context_takeover := boolean(),
    compress_client_context_takeover := boolean(),
    router := hornbeam_nif:router(),
    handlers := tuple(),                      %% {{Module, Pattern}, ...} by router pattern id
    %% {ok, Assigns, SocketId}: the socket id (hornbeam:disconnect/1), binary or undefined
    connect := undefined | fun((map(), map()) -> {ok, map()} | {ok, map(), socket_id()} | {error, term()}),
    api_key := undefined | hornbeam_api:secret()  %% sealed digest; undefined: no HTTP API
}.
-type socket_id() :: binary() | undefined.
-export_type([config/0, socket_id/0]).

%% @doc Every endpoint limit and default, in one place (see README "Limits").
-spec defaults() -> map().
defaults() ->
    #{ws_path => <<"/ws">>,
      check_origin => default,                 %% Origin must be a public host → else 403; a list, or false
      public_hosts => default,                 %% [Host]: hosts browsers reach us by; default: the bind host
      max_frame_size => 1048576,               %% bytes; bigger frame/message → close 1009
      max_send_queue => 1048576,               %% bytes queued to a client that does not read → close 1008
      max_json_depth => 64,                    %% nesting of a message payload → close 1007
      max_channels_per_connection => 100,      %% → join error "too many channels joined"
      max_topic_length => 255,                 %% bytes → join error "unmatched topic"
      heartbeat_timeout => 60000,              %% ms without any message → close 1000
      fragment_timeout => 30000,               %% ms for a partly arrived (fragmented) message → close 1008
      max_pending_events => 100,               %% events one channel has not handled yet → socket stops reading
      hibernate_after => 5000,                 %% ms idle before a socket/channel process hibernates
      write_batch_frames => 64,                %% frames already waiting that one socket write takes
      write_batch_bytes => 65536,              %% bytes one socket write takes (stops after the frame past it)
      longpoll_timeout => 20000,               %% ms a long-poll session lives without a poll → it ends
      longpoll_poll_timeout => 10000,          %% ms a poll waits for messages → answered 204 (none)
      longpoll_max_sessions => 100000,         %% long-poll sessions on this node → new ones refused
      %% permessage-deflate (RFC 7692; README "Compression", hornbeam_ws_deflate)
      compress => false,                       %% accept a client's permessage-deflate offer (README "Compression": why off)
      compress_threshold => 32,                %% payload bytes under which a frame goes uncompressed
      compress_level => 1,                     %% zlib level 0-9
      compress_window_bits => 15,              %% our window, and the client's when it lets us choose (9-15)
      compress_server_context_takeover => true,   %% false: server_no_context_takeover
      compress_client_context_takeover => false,  %% false: client_no_context_takeover (no inflate context kept)
      channels => [],                          %% [{Pattern, Module}] Erlang channels
      connect => undefined,
      api_key => undefined}.                   %% HTTP publishing API key (hornbeam_api); none: no API

%% @doc Build the endpoint configuration from user options (a map with the
%% keys of defaults/0; unknown keys are ignored here).
-spec config(map()) -> {ok, config()} | {error, term()}.
config(Opts) ->
    Merged0 = maps:merge(defaults(), maps:with(maps:keys(defaults()), Opts)),
    case bad_compress_option(Merged0) of
        none -> config_checked(Opts, Merged0);
        {Key, Value} -> {error, {bad_option, Key, Value}}
    end.

bad_compress_option(Merged) ->
    Checks = [{compress, fun is_boolean/1},
              {compress_threshold, fun(V) -> is_integer(V) andalso V >= 0 end},
              {compress_level, fun(V) -> is_integer(V) andalso V >= 0 andalso V =< 9 end},
              {compress_window_bits, fun(V) -> is_integer(V) andalso V >= 9 andalso V =< 15 end},
              {compress_server_context_takeover, fun is_boolean/1},
              {compress_client_context_takeover, fun is_boolean/1}],
    case [{K, maps:get(K, Merged)} || {K, Valid} <- Checks, not Valid(maps:get(K, Merged))] of
        [] -> none;
        [Bad | _] -> Bad
    end.

config_checked(Opts, Merged0) ->
    case {valid_hosts(maps:get(public_hosts, Merged0)), hornbeam_api:seal(maps:get(api_key, Merged0))} of
        {_, error} ->
            %% never the key itself in an error (it is logged)
            {error, {bad_option, api_key, <<"(hidden: expected a non-empty string)">>}};
        {true, {ok, Secret}} ->
            Policy = origin_policy(Merged0, maps:get(bind, Opts, "127.0.0.1:8000")),
            config_routes(maps:remove(public_hosts, Merged0#{check_origin := Policy, api_key := Secret}));
        {false, _} ->
            {error, {bad_option, public_hosts, maps:get(public_hosts, Merged0)}}
    end.

valid_hosts(default) -> true;
valid_hosts(Hosts) when is_list(Hosts) ->
    lists:all(fun(H) -> is_binary(H) orelse io_lib:printable_unicode_list(H) end, Hosts);
valid_hosts(_) -> false.

config_routes(Merged) ->
    #{channels := Channels, max_topic_length := MaxTopic} = Merged,
    Patterns = [to_binary(P) || {P, _} <- Channels],
    case hornbeam_nif:router_new(Patterns, MaxTopic) of
        {ok, Router} ->
            Handlers = list_to_tuple([{M, to_binary(P)} || {P, M} <- Channels]),
            Config = maps:remove(channels, Merged#{ws_path := to_binary(maps:get(ws_path, Merged)),
                                                   router => Router, handlers => Handlers}),
            {ok, Config};
        {error, Reason} ->
            {error, {bad_channel_pattern, Reason}}
    end.

%% The origin policy: `default' allows the public hosts (`public_hosts', or
%% the bind host: loopback and wildcard binds allow localhost, 127.0.0.1 and
%% [::1]), never "whatever the Host header says" (DNS rebinding).
origin_policy(#{check_origin := default, public_hosts := default}, Bind) ->
    Hosts = case hornbeam_http_bind:parse(Bind) of
                {ok, {IP, _}} -> bind_hosts(IP);
                {error, _} -> bind_hosts({127, 0, 0, 1})
            end,
    hornbeam_ws_handshake:public_hosts_policy(Hosts);
origin_policy(#{check_origin := default, public_hosts := Hosts}, _Bind) ->
    hornbeam_ws_handshake:public_hosts_policy(Hosts);
origin_policy(#{check_origin := Policy}, _Bind) ->
    Policy.

bind_hosts(IP) ->
    Local = [<<"localhost">>, <<"127.0.0.1">>, <<"::1">>],
    case IP of
        {127, _, _, _} -> Local;
        {0, 0, 0, 0, 0, 0, 0, 1} -> Local;
        Any when Any =:= {0, 0, 0, 0}; Any =:= {0, 0, 0, 0, 0, 0, 0, 0} ->
            logger:warning("serving on every interface with no public_hosts (--public-host): "
                           "browsers are refused (403) unless they reach this server as "
                           "localhost; set the host names clients use"),
            Local;
        _ -> [list_to_binary(inet:ntoa(IP))]
    end.

%% @doc The channel module for Topic.
-spec route(config(), binary()) ->
    {ok, module(), binary(), #{binary() => binary()}} | {error, unmatched_topic | topic_too_long}.
route(#{router := Router, handlers := Handlers}, Topic) ->
    case hornbeam_nif:router_match(Router, Topic) of
        {ok, Id, Params} ->
            {Module, Pattern} = element(Id + 1, Handlers),
            {ok, Module, Pattern, Params};
        nomatch -> {error, unmatched_topic};
        {error, topic_too_long} -> {error, topic_too_long}
    end.

%% --- hornbeam_http_handler ------------------------------------------------------

%% Requests off the WebSocket path go to the HTTP API (`hornbeam_api', only
%% with an api_key), then the Python app, if there is one (`hornbeam_py_http'),
%% else get the static JS client or a 404.
-spec handle_http(hornbeam_http_req:req(), config()) ->
    {100..599, [{binary(), iodata()}], iodata()} | {loop, module(), term()}.
handle_http(Req = #{path := Path}, Config) ->
    case hornbeam_longpoll:is_longpoll_path(Path, Config) of
        true -> hornbeam_longpoll:handle(Req, Config);
        false -> handle_other_http(Req, Path, Config)
    end.

handle_other_http(Req, Path, Config) ->
    case is_ws_path(Path, Config) of
        true -> {400, [{<<"content-type">>, <<"text/plain">>}],
                 <<"this endpoint speaks WebSocket only\n">>};
        false ->
            case hornbeam_api:handle(Req, Config) of
                pass -> hornbeam_py_http:handle(Req);
                Response -> Response
            end
    end.

-spec websocket_upgrade(hornbeam_http_req:req(), config()) ->
    {ok, hornbeam_socket:conn_info(), [{binary(), iodata()}]}
    | {refuse, 100..599, [{binary(), iodata()}], iodata()}.
websocket_upgrade(Req = #{path := Path}, Config = #{check_origin := Policy}) ->
    Params = maps:from_list(hornbeam_http_req:query_params(Req)),
    case {is_ws_path(Path, Config), vsn_ok(Params), hornbeam_ws_handshake:check_origin(Req, Policy)} of
        {false, _, _} ->
            refuse(404, <<"not found\n">>);
        {true, false, _} ->
            logger:info("WebSocket refused: unsupported vsn ~0p", [maps:get(<<"vsn">>, Params)]),
            refuse(403, <<"unsupported protocol version; this server speaks vsn 2.x "
                          "(Phoenix V2 JSON)\n">>);
        {true, true, {error, _}} ->
            logger:info("WebSocket refused: origin ~0p not allowed (allowed: ~0p; see public_hosts)",
                        [hornbeam_http_req:header(<<"origin">>, Req), Policy]),
            refuse(403, <<"origin not allowed\n">>);
        {true, true, ok} ->
            case hornbeam_ws_handshake:subprotocols(Req) of
                {ok, Echo, AuthToken} ->
                    connect_upgrade(Req, Params, Echo, AuthToken, Config);
                {error, Why} ->
                    logger:info("WebSocket refused: ~s", [hornbeam_ws_handshake:format_error(Why)]),
                    refuse(400, <<(hornbeam_ws_handshake:format_error(Why))/binary, "\n">>)
            end
    end.

connect_upgrade(Req, Params, Echo, AuthToken, Config) ->
    case connect_conn(Req, Params, AuthToken, websocket, Config) of
        {ok, Conn0} ->
            {Deflate, DeflateHeaders} = negotiate_deflate(Req, Config),
            Conn = Conn0#{deflate => Deflate},
            %% The client offered `phoenix' (and its token): name the one we
            %% speak, or `ws' and browsers abort the handshake.
            Headers = case Echo of
                          none -> [];
                          _ -> [{<<"sec-websocket-protocol">>, Echo}]
                      end,
            {ok, Conn, Headers ++ DeflateHeaders};
        {error, overloaded} ->
            refuse(503, <<"server overloaded, try again later\n">>);
        {error, _} ->
            refuse(403, <<"connection refused\n">>)
    end.

%% @doc Run the endpoint's `connect' for a new connection over Transport and
%% build its conn_info (`connect_info' carries `transport').
-spec connect_conn(hornbeam_http_req:req(), map(), binary() | undefined,
                   websocket | longpoll, config()) ->
    {ok, hornbeam_socket:conn_info()} | {error, term()}.
connect_conn(Req, Params, AuthToken, Transport, Config) ->
    ConnectInfo = (connect_info(Req))#{auth_token => AuthToken, transport => Transport},
    case connect(Config, Params, ConnectInfo) of
        {ok, Assigns, SocketId} ->
            {ok, #{id => new_id(), socket_id => SocketId, params => Params, assigns => Assigns,
                   connect_info => ConnectInfo, endpoint => Config}};
        {error, overloaded} ->
            {error, overloaded};
        {error, Reason} ->
            logger:info("~s refused by connect: ~0p",
                        [case Transport of websocket -> "WebSocket"; longpoll -> "long-poll" end,
                         Reason]),
            {error, Reason}
    end.

%% permessage-deflate, when the client offers it and `compress' allows it.
negotiate_deflate(_Req, #{compress := false}) ->
    {none, []};
negotiate_deflate(Req, Config) ->
    Opts = #{window_bits => maps:get(compress_window_bits, Config),
             server_context_takeover => maps:get(compress_server_context_takeover, Config),
             client_context_takeover => maps:get(compress_client_context_takeover, Config)},
    case hornbeam_ws_deflate:negotiate(Req, Opts) of
        {ok, Agreed, Response} -> {Agreed, [{<<"sec-websocket-extensions">>, Response}]};
        none -> {none, []}
    end.

-spec websocket_enter(gen_tcp:socket(), binary(), hornbeam_socket:conn_info()) -> no_return().
websocket_enter(Sock, Buffered, Conn) ->
    hornbeam_socket:enter(Sock, Buffered, Conn).

%% --- internals ----------------------------------------------------------------

is_ws_path(Path, #{ws_path := WsPath}) ->
    Trimmed = trim_slash(Path),
    Trimmed =:= trim_slash(WsPath) orelse Trimmed =:= <<(trim_slash(WsPath))/binary, "/websocket">>.

trim_slash(<<>>) -> <<"/">>;
trim_slash(<<"/">>) -> <<"/">>;
trim_slash(Path) ->
    case binary:last(Path) of
        $/ -> binary:part(Path, 0, byte_size(Path) - 1);
        _ -> Path
    end.

%% @doc Whether the client's `vsn' param (if any) is one we speak (2.x).
-spec vsn_ok(map()) -> boolean().
vsn_ok(#{<<"vsn">> := <<"2.", _/binary>>}) -> true;
vsn_ok(#{<<"vsn">> := <<"2">>}) -> true;
vsn_ok(#{<<"vsn">> := _}) -> false;
vsn_ok(_) -> true.

connect_info(Req) ->
    #{peer => maps:get(peer, Req, undefined),
      origin => hornbeam_http_req:header(<<"origin">>, Req),
      headers => maps:get(headers, Req, [])}.

connect(#{connect := undefined}, _Params, _Info) -> {ok, #{}, undefined};
connect(#{connect := Fun}, Params, Info) ->
    try Fun(Params, Info) of
        {ok, Assigns} when is_map(Assigns) -> {ok, Assigns, undefined};
        {ok, Assigns, SocketId} when is_map(Assigns) ->
            case check_socket_id(SocketId) of
                {ok, Id} -> {ok, Assigns, Id};
                error -> {error, {invalid_socket_id, SocketId}}
            end;
        {error, Reason} -> {error, Reason};
        Other -> {error, {invalid_connect_result, Other}}
    catch Class:Reason:Stack ->
        logger:error("connect handler crashed: ~0p:~0p~n~p", [Class, Reason, Stack]),
        {error, crashed}
    end.

%% A socket id is a non-empty UTF-8 binary of at most 255 bytes, or
%% none (undefined; `nil' from Elixir).
check_socket_id(undefined) -> {ok, undefined};
check_socket_id(nil) -> {ok, undefined};
check_socket_id(Id) when is_binary(Id), byte_size(Id) > 0, byte_size(Id) =< 255 ->
    case unicode:characters_to_binary(Id) of
        Id -> {ok, Id};
        _ -> error
    end;
check_socket_id(_) -> error.

refuse(Status, Body) ->
    {refuse, Status, [{<<"content-type">>, <<"text/plain">>}], Body}.

new_id() ->
    binary:encode_hex(crypto:strong_rand_bytes(8)).

to_binary(B) when is_binary(B) -> B;
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L);
to_binary(A) when is_atom(A) -> atom_to_binary(A).
