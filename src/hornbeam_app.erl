%% @doc The `hornbeam' OTP application: starts the top supervisor. Serving
%% starts with `hornbeam:start/2', which adds an endpoint under it.
-module(hornbeam_app).
-behaviour(application).

-export([start/2, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    hornbeam_sup:start_link().

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
