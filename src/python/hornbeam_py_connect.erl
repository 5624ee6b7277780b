%% @doc The endpoint's `connect' function when Python registered an
%% `@on_connect' handler: runs it in the pool before the WebSocket upgrade.
%% `('ok', assigns)' or `('ok', assigns, socket_id)' seeds every channel of
%% the connection (the id: `hornbeam:disconnect/1'); anything else refuses
%% it with 403.
-module(hornbeam_py_connect).

-export([connect/2]).

-spec connect(map(), map()) -> {ok, map(), hornbeam_endpoint:socket_id()} | {error, term()}.
connect(Params, Info) ->
    Args = #{params => json(Params), connect_info => json(connect_info(Info))},
    case hornbeam_python:call(connect, Args) of
        {ok, {ok, AssignsJson}} ->
            assigns(AssignsJson, undefined);
        {ok, {ok, AssignsJson, SocketId}} ->
            %% ('ok', assigns, socket_id): bytes or None (undefined)
            assigns(AssignsJson, SocketId);
        {ok, no_handler} -> {ok, #{}};
        {ok, {error, Reason}} -> {error, {refused, Reason}};
        {ok, {crash, Message}} -> {error, {crash, Message}};
        {ok, Other} -> {error, {invalid, Other}};
        {error, Why} -> {error, Why}
    end.

assigns(AssignsJson, SocketId) ->
    case hornbeam_nif:json_decode(AssignsJson) of
        {ok, Assigns} when is_map(Assigns) -> {ok, Assigns, SocketId};
        _ -> {error, {invalid_assigns, AssignsJson}}
    end.

%% Peer address, origin, request headers and the decoded authToken (or
%% null), as JSON.
connect_info(Info) ->
    Peer = case maps:get(peer, Info, undefined) of
               {IP, Port} -> #{<<"address">> => list_to_binary(inet:ntoa(IP)), <<"port">> => Port};
               _ -> null
           end,
    Origin = case maps:get(origin, Info, undefined) of
                 undefined -> null;
                 O -> O
             end,
    Headers = lists:foldl(fun({K, V}, Acc) ->
                                  maps:update_with(K, fun(Old) -> <<Old/binary, ", ", V/binary>> end, V, Acc)
                          end, #{}, maps:get(headers, Info, [])),
    AuthToken = case maps:get(auth_token, Info, undefined) of
                    undefined -> null;
                    T -> T
                end,
    #{<<"peer">> => Peer, <<"origin">> => Origin, <<"headers">> => Headers,
      <<"auth_token">> => AuthToken,
      <<"transport">> => atom_to_binary(maps:get(transport, Info, websocket))}.

json(Term) ->
    case hornbeam_nif:json_encode(Term) of
        {ok, J} -> J;
        {error, _} -> <<"{}">>
    end.
