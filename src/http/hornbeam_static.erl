%% @doc The JavaScript client files served from `priv/static':
%% `/hornbeam.js' and `/hornbeam.mjs' (`application/javascript'). The file is
%% read on every request (so a rebuilt client is served at once), with a
%% strong `etag' from its contents and `If-None-Match' answered with 304.
%% A missing file is a 404. Only GET and HEAD are served.
-module(hornbeam_static).

-export([is_static/1, lookup/1, serve/1, not_found/0, dir/0]).

-spec files() -> #{binary() => file:filename()}.
files() ->
    #{<<"/hornbeam.js">> => "hornbeam.js",
      <<"/hornbeam.mjs">> => "hornbeam.mjs"}.

%% @doc Whether Req asks for one of the static files (the file may be missing).
-spec is_static(hornbeam_http_req:req() | map()) -> boolean().
is_static(#{method := Method, path := Path}) when Method =:= <<"GET">>; Method =:= <<"HEAD">> ->
    maps:is_key(Path, files());
is_static(_) ->
    false.

%% @doc The static response for Req, or `not_found'.
-spec lookup(hornbeam_http_req:req() | map()) ->
          {ok, {200 | 304, hornbeam_http_handler:headers(), binary()}} | not_found.
lookup(Req = #{path := Path}) ->
    case is_static(Req) of
        false ->
            not_found;
        true ->
            File = filename:join(dir(), maps:get(Path, files())),
            case file:read_file(File) of
                {ok, Bin} ->
                    ETag = etag(Bin),
                    Headers = [{<<"content-type">>, <<"application/javascript; charset=utf-8">>},
                               {<<"cache-control">>, <<"no-cache">>},
                               {<<"etag">>, ETag}],
                    case lists:member(ETag, if_none_match(Req)) of
                        true -> {ok, {304, Headers, <<>>}};
                        false -> {ok, {200, Headers, Bin}}
                    end;
                {error, _} ->
                    not_found
            end
    end.

%% @doc The static response for Req, or a 404.
-spec serve(hornbeam_http_req:req() | map()) ->
          {200 | 304 | 404, hornbeam_http_handler:headers(), binary()}.
serve(Req) ->
    case lookup(Req) of
        {ok, Response} -> Response;
        not_found -> not_found()
    end.

-spec not_found() -> {404, hornbeam_http_handler:headers(), binary()}.
not_found() ->
    {404, [{<<"content-type">>, <<"text/plain">>}], <<"not found\n">>}.

%% @doc Where the files are: the application environment's `static_dir'
%% if set (tests), else `priv/static' of the hornbeam application.
-spec dir() -> file:filename().
dir() ->
    case application:get_env(hornbeam, static_dir) of
        {ok, Dir} ->
            Dir;
        undefined ->
            Priv = case code:priv_dir(hornbeam) of
                       {error, bad_name} ->
                           filename:join(filename:dirname(filename:dirname(code:which(?MODULE))),
                                         "priv");
                       D ->
                           D
                   end,
            filename:join(Priv, "static")
    end.

etag(Bin) ->
    Hash = string:lowercase(binary:encode_hex(binary:part(crypto:hash(sha256, Bin), 0, 12))),
    <<$", Hash/binary, $">>.

if_none_match(Req) ->
    [hornbeam_http_req:trim(T) || V <- hornbeam_http_req:headers(<<"if-none-match">>, Req),
                                  T <- binary:split(V, <<",">>, [global])].
