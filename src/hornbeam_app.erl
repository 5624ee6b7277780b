%% @doc The `hornbeam' OTP application: starts the top supervisor. Serving
%% starts with `hornbeam:start/2', which adds an endpoint under it.
-module(hornbeam_app).
-behaviour(application).

-export([start/2, prep_stop/1, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    ok = hornbeam_presence_shard:set_retiring(false),
    hornbeam_sup:start_link().

%% The application stops for good: its presence shards say goodbye to their
%% peers as they terminate (see hornbeam_presence_shard:set_retiring/1).
-spec prep_stop(term()) -> term().
prep_stop(State) ->
    ok = hornbeam_presence_shard:set_retiring(true),
    State.

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
