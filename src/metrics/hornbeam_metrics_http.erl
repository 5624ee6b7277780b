%% @doc The `hornbeam_http_handler' of the metrics listener (`metrics_bind'):
%%
%% | path | answer |
%% |---|---|
%% | `GET /metrics' | Prometheus text (`hornbeam_metrics_format:prometheus/1') |
%% | `GET /metrics.json' | the dashboard's JSON |
%% | `GET /' | the dashboard page, `priv/dashboard/index.html' |
%% | `GET /dashboard.js' | its script |
%%
%% Anything else is a 404, another method a 405, and a WebSocket upgrade is
%% refused (404): this port serves nothing of the app.
-module(hornbeam_metrics_http).
-behaviour(hornbeam_http_handler).

-export([handle_http/2, websocket_upgrade/2, websocket_enter/3, dir/0]).

-spec handle_http(hornbeam_http_req:req(), term()) ->
          {hornbeam_http_handler:status(), hornbeam_http_handler:headers(), iodata()}.
handle_http(#{method := Method}, _Opts) when Method =/= <<"GET">>, Method =/= <<"HEAD">> ->
    {405, [{<<"allow">>, <<"GET, HEAD">>}, {<<"content-type">>, <<"text/plain">>}],
     <<"method not allowed\n">>};
handle_http(#{path := <<"/metrics">>}, _Opts) ->
    {200, [{<<"content-type">>, <<"text/plain; version=0.0.4; charset=utf-8">>},
           {<<"cache-control">>, <<"no-store">>}],
     hornbeam_metrics_format:prometheus(hornbeam_metrics:snapshot())};
handle_http(#{path := <<"/metrics.json">>}, _Opts) ->
    {200, [{<<"content-type">>, <<"application/json">>}, {<<"cache-control">>, <<"no-store">>}],
     hornbeam_metrics_format:json(hornbeam_metrics:snapshot())};
handle_http(#{path := <<"/">>}, _Opts) ->
    file(<<"index.html">>, <<"text/html; charset=utf-8">>);
handle_http(#{path := <<"/dashboard.js">>}, _Opts) ->
    file(<<"dashboard.js">>, <<"application/javascript; charset=utf-8">>);
handle_http(_Req, _Opts) ->
    hornbeam_static:not_found().

-spec websocket_upgrade(hornbeam_http_req:req(), term()) ->
          {refuse, hornbeam_http_handler:status(), hornbeam_http_handler:headers(), iodata()}.
websocket_upgrade(_Req, _Opts) ->
    {refuse, 404, [{<<"content-type">>, <<"text/plain">>}],
     <<"the metrics port serves no WebSocket\n">>}.

-spec websocket_enter(gen_tcp:socket(), binary(), term()) -> no_return().
websocket_enter(_Sock, _Buffered, _State) ->
    exit(no_websocket_on_the_metrics_port).

%% @doc Where the dashboard's files are: `priv/dashboard'.
-spec dir() -> file:filename().
dir() ->
    filename:join(filename:dirname(hornbeam_static:dir()), "dashboard").

file(Name, Type) ->
    case file:read_file(filename:join(dir(), Name)) of
        {ok, Bin} -> {200, [{<<"content-type">>, Type}, {<<"cache-control">>, <<"no-cache">>}], Bin};
        {error, _} -> hornbeam_static:not_found()
    end.
