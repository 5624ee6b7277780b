%% @doc The HTTP publishing API, for processes outside the cluster (Celery
%% tasks, cron jobs, other services): `POST /hornbeam/api/broadcast',
%% `/hornbeam/api/presence' and `/hornbeam/api/disconnect' with
%% `Authorization: Bearer KEY'. It exists
%% only when an `api_key' is configured; the endpoint asks it first, before
%% the Python app sees the request.
%%
%% The key never sits in the endpoint configuration as text: `seal/1' keeps
%% its SHA-256 inside a closure, which crash reports and `sys:get_status'
%% print as `#Fun<...>'. Keys are compared as digests with
%% `crypto:hash_equals/2' (constant time, equal lengths by construction).
-module(hornbeam_api).

-export([seal/1, handle/2, read_key/1]).

-type secret() :: fun(() -> binary()).
-type response() :: {100..599, [{binary(), iodata()}], iodata()}.
-export_type([secret/0]).

-define(BROADCAST, <<"/hornbeam/api/broadcast">>).
-define(PRESENCE, <<"/hornbeam/api/presence">>).
-define(DISCONNECT, <<"/hornbeam/api/disconnect">>).
-define(KEY_ENV, "HORNBEAM_API_KEY").

%% @doc The `api_key' option as the endpoint keeps it: `undefined' (no
%% API), or the sealed digest of a non-empty key.
-spec seal(term()) -> {ok, undefined | secret()} | error.
seal(undefined) -> {ok, undefined};
seal(Sealed) when is_function(Sealed, 0) -> {ok, Sealed};
seal(Key) when is_list(Key) ->
    case unicode:characters_to_binary(Key) of
        Bin when is_binary(Bin) -> seal(Bin);
        _ -> error
    end;
seal(<<>>) -> error;
seal(Key) when is_binary(Key) ->
    Digest = crypto:hash(sha256, Key),
    {ok, fun() -> Digest end};
seal(_) -> error.

%% @doc The CLI's key: from `--api-key-file PATH' (which must not be
%% readable by other users, like the cookie file), else from
%% `$HORNBEAM_API_KEY' (unset once read, so child processes do not inherit
%% it), else none. Never from argv: `ps' shows argv.
-spec read_key(undefined | string()) -> {ok, undefined | binary()} | {error, iolist()}.
read_key(undefined) ->
    case os:getenv(?KEY_ENV) of
        false -> {ok, undefined};
        "" -> {ok, undefined};
        Value ->
            true = os:unsetenv(?KEY_ENV),
            {ok, unicode:characters_to_binary(Value)}
    end;
read_key(Path) ->
    case file:read_file_info(Path) of
        {ok, Info} when element(8, Info) band 8#077 =/= 0 ->
            {error, io_lib:format("the API key file ~ts is readable by other users (mode ~.8b); "
                                  "run chmod 600 ~ts", [Path, element(8, Info) band 8#777, Path])};
        {ok, _} ->
            case file:read_file(Path) of
                {ok, Bin} ->
                    case string:trim(Bin) of
                        <<>> -> {error, io_lib:format("the API key file ~ts is empty", [Path])};
                        Key -> {ok, Key}
                    end;
                {error, Why} ->
                    {error, io_lib:format("cannot read the API key file ~ts: ~ts",
                                          [Path, file:format_error(Why)])}
            end;
        {error, Why} ->
            {error, io_lib:format("cannot read the API key file ~ts: ~ts", [Path, file:format_error(Why)])}
    end.

%% @doc Answer Req if it is an API request; `pass' when there is no API
%% (no key configured) or the path is not one of the API's.
-spec handle(hornbeam_http_req:req(), map()) -> pass | response().
handle(#{path := Path} = Req, #{api_key := Secret} = Config) when is_function(Secret, 0) ->
    case api_call(Path) of
        none -> pass;
        Call -> call(Call, Req, Secret, Config)
    end;
handle(_Req, _Config) ->
    pass.

api_call(?BROADCAST) -> broadcast;
api_call(?PRESENCE) -> presence;
api_call(?DISCONNECT) -> disconnect;
api_call(<<"/hornbeam/api/", _/binary>>) -> unknown;
api_call(_) -> none.

call(unknown, _Req, _Secret, _Config) ->
    error_reply(404, <<"no such API call (broadcast, presence, disconnect)">>);
call(Call, #{method := Method} = Req, Secret, Config) ->
    case {Method, authorized(Req, Secret)} of
        {<<"POST">>, true} ->
            case hornbeam_nif:json_decode(maps:get(body, Req, <<>>), maps:get(max_json_depth, Config, 64)) of
                {ok, Body} when is_map(Body) -> run(Call, Body);
                {ok, _} -> error_reply(400, <<"the body must be a JSON object">>);
                {error, _, Why} -> error_reply(400, <<"the body is not JSON: ", Why/binary>>)
            end;
        {<<"POST">>, false} ->
            logger:info("API ~s refused: wrong or missing key (peer ~0p)",
                        [Call, maps:get(peer, Req, undefined)]),
            {401, [{<<"content-type">>, <<"application/json">>},
                   {<<"www-authenticate">>, <<"Bearer">>}],
             <<"{\"error\":\"unauthorized\"}">>};
        {_, _} ->
            {405, [{<<"content-type">>, <<"application/json">>}, {<<"allow">>, <<"POST">>}],
             <<"{\"error\":\"method not allowed (POST)\"}">>}
    end.

%% Digests of equal length, compared in constant time.
authorized(Req, Secret) ->
    case hornbeam_http_req:header(<<"authorization">>, Req) of
        <<Scheme:7/binary, Given/binary>> when Given =/= <<>> ->
            hornbeam_http_req:lowercase(Scheme) =:= <<"bearer ">>
                andalso crypto:hash_equals(crypto:hash(sha256, Given), Secret());
        _ ->
            false
    end.

run(broadcast, #{<<"topic">> := Topic, <<"event">> := Event, <<"payload">> := Payload})
  when is_binary(Topic), Topic =/= <<>>, is_binary(Event), Event =/= <<>>, is_map(Payload) ->
    case hornbeam:broadcast(Topic, Event, Payload) of
        ok -> json_reply(200, #{<<"ok">> => true});
        {error, Reason} ->
            logger:warning("API broadcast on ~ts failed: ~0p", [Topic, Reason]),
            error_reply(500, <<"broadcast failed">>)
    end;
run(broadcast, _) ->
    error_reply(400, <<"expected {\"topic\": non-empty string, \"event\": non-empty string, "
                       "\"payload\": object}">>);
run(presence, #{<<"topic">> := Topic}) when is_binary(Topic), Topic =/= <<>> ->
    case hornbeam_presence:list(Topic) of
        {error, _} -> error_reply(400, <<"bad topic">>);
        List -> json_reply(200, #{<<"presences">> => List})
    end;
run(disconnect, #{<<"id">> := Id}) ->
    %% every socket with this id on every node (hornbeam:disconnect/1)
    case hornbeam:disconnect(Id) of
        ok -> json_reply(200, #{<<"ok">> => true});
        {error, _} -> error_reply(400, <<"bad socket id">>)
    end;
run(disconnect, _) ->
    error_reply(400, <<"expected {\"id\": non-empty string of at most 255 bytes}">>);
run(presence, _) ->
    error_reply(400, <<"expected {\"topic\": non-empty string}">>).

error_reply(Status, Message) ->
    json_reply(Status, #{<<"error">> => Message}).

json_reply(Status, Term) ->
    {ok, Json} = hornbeam_nif:json_encode(Term),
    {Status, [{<<"content-type">>, <<"application/json">>}], Json}.
