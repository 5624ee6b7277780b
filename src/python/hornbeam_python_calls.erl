%% @doc Erlang functions that Python code can call synchronously with
%% `hornbeam_channels.call(Name, Args)' (`_hornbeam.call'): the worker sends
%% `{erl_call, CallId, Name, ArgsJson}' and gets back what `handle/2' returns.
%% Each call runs in its own process, so a slow one blocks only its caller.
%%
%% Presence (`hornbeam_presence.Presence'): `presence_track',
%% `presence_update', `presence_untrack' bind to the channel process named by
%% the socket's channel token; `presence_list', `presence_get' read.
-module(hornbeam_python_calls).

-export([handle/2]).

%% @doc `Name' and `ArgsJson' are binaries; answer `{ok, JsonText}' or
%% `{error, Message}' (raised as `ErlangError(Message)' in Python).
-spec handle(binary(), binary()) -> {ok, binary()} | {error, binary()}.
handle(<<"echo">>, ArgsJson) ->
    {ok, ArgsJson};
handle(<<"presence_", Op/binary>>, ArgsJson) ->
    case hornbeam_nif:json_decode(ArgsJson, 64) of
        {ok, Args} when is_map(Args) -> presence(Op, Args);
        _ -> {error, <<"presence arguments must be a JSON object">>}
    end;
handle(Name, _ArgsJson) ->
    {error, <<"unknown erl_call ", Name/binary>>}.

presence(<<"list">>, #{<<"topic">> := Topic}) when is_binary(Topic) ->
    {ok, hornbeam_presence:list_json(Topic)};
presence(<<"get">>, #{<<"topic">> := Topic, <<"key">> := Key}) when is_binary(Topic), is_binary(Key) ->
    case hornbeam_presence:get_json(Topic, Key) of
        null -> {ok, <<"null">>};
        Json -> {ok, Json}
    end;
presence(Op, Args = #{<<"channel">> := Token, <<"topic">> := Topic, <<"key">> := Key})
  when is_binary(Topic), is_binary(Key) ->
    case channel_pid(Token) of
        {ok, Pid} -> presence_write(Op, Pid, Topic, Key, Args);
        error -> {error, <<"the socket does not belong to a live channel">>}
    end;
presence(Op, _Args) ->
    {error, <<"bad arguments for presence_", Op/binary>>}.

presence_write(Op, Pid, Topic, Key, Args) ->
    Meta = maps:get(<<"meta">>, Args, #{}),
    Result = case Op of
                 <<"track">> -> hornbeam_presence:track(Pid, Topic, Key, Meta);
                 <<"update">> -> hornbeam_presence:update(Pid, Topic, Key, Meta);
                 <<"untrack">> -> hornbeam_presence:untrack(Pid, Topic, Key);
                 _ -> {error, unknown_op}
             end,
    case Result of
        ok -> {ok, <<"null">>};
        {error, already_tracked} ->
            {error, iolist_to_binary(["key ", Key, " is already tracked on ", Topic,
                                      " by this channel (use update to change its meta)"])};
        {error, not_tracked} ->
            {error, iolist_to_binary(["key ", Key, " is not tracked on ", Topic, " by this channel"])};
        {error, meta_too_large} ->
            {error, <<"presence meta is too large (over max_presence_meta_size bytes of JSON)">>};
        {error, too_many_presences_per_socket} ->
            {error, <<"this channel tracks too many presences (max_presences_per_socket)">>};
        {error, too_many_presences_per_topic} ->
            {error, iolist_to_binary(["topic ", Topic, " has too many presences on this node "
                                      "(max_presences_per_topic)"])};
        {error, Why} ->
            {error, iolist_to_binary(io_lib:format("presence_~s failed: ~0p", [Op, Why]))}
    end.

channel_pid(Token) when is_binary(Token) ->
    try binary_to_term(base64:decode(Token), [safe]) of
        #{channel_pid := Pid} when is_pid(Pid) -> {ok, Pid};
        _ -> error
    catch error:_ -> error
    end;
channel_pid(_) ->
    error.
