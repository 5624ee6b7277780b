%% @doc Drains an endpoint's connections when it stops (SIGTERM, which is
%% `init:stop/0', an application stop, `hornbeam:stop/0'), so a fleet of
%% clients does not reconnect to the next node all in one instant: as
%% Phoenix's socket drainer, 10,000 connections per 2 s by default.
%%
%% It is the last child of the endpoint supervisor, so it terminates first.
%% Its `terminate/2' stops the listener accepting (the acceptors, then the
%% listen socket: new clients are refused at once and go to another node),
%% then sends `'$hb_drain'' to the connection processes in batches of
%% `drain_batch_size', `drain_interval' ms apart; a WebSocket closes with
%% 1001 (going away), on which phoenix.js (every version) and `hornbeam.js'
%% reconnect. Other connection processes (an HTTP request in progress) may
%% ignore the message: the listener's own shutdown, right after the drain,
%% closes whatever is left. `drain_timeout' (the child's shutdown time)
%% bounds the whole drain; past it the supervisor kills the drainer and the
%% shutdown goes on.
-module(hornbeam_drainer).
-behaviour(gen_server).

-export([defaults/0, options/1, child_spec/2, start_link/2, drain/3]).
-export([init/1, handle_call/3, handle_cast/2, terminate/2]).

-type options() :: #{drain_batch_size := pos_integer(),
                     drain_interval := non_neg_integer(),
                     drain_timeout := pos_integer()}.
-export_type([options/0]).

%% @doc The drain options and their defaults (README "Limits").
-spec defaults() -> options().
defaults() ->
    #{drain_batch_size => 10000,   %% connections closed at once
      drain_interval => 2000,      %% ms between two batches
      drain_timeout => 30000}.     %% ms the whole drain may take (then the rest close at once)

%% @doc The drain options of `hornbeam:start/2''s options, checked.
-spec options(map()) -> {ok, options()} | {error, {bad_option, atom(), term()}}.
options(Opts) ->
    Merged = maps:merge(defaults(), maps:with(maps:keys(defaults()), Opts)),
    case [K || {K, V} <- lists:sort(maps:to_list(Merged)), not valid(K, V)] of
        [] -> {ok, Merged};
        [Bad | _] -> {error, {bad_option, Bad, maps:get(Bad, Merged)}}
    end.

valid(drain_interval, V) -> is_integer(V) andalso V >= 0;
valid(_, V) -> is_integer(V) andalso V > 0.

%% @doc The endpoint supervisor's child for the listener `Ref'.
-spec child_spec(hornbeam_http_opts:ref(), options()) -> supervisor:child_spec().
child_spec(Ref, Opts = #{drain_timeout := Timeout}) ->
    #{id => drainer, start => {?MODULE, start_link, [Ref, Opts]}, shutdown => Timeout}.

-spec start_link(hornbeam_http_opts:ref(), options()) -> {ok, pid()}.
start_link(Ref, Opts) ->
    gen_server:start_link(?MODULE, {Ref, Opts}, []).

%% --- gen_server: nothing happens until terminate/2 --------------------------------

-spec init({hornbeam_http_opts:ref(), options()}) -> {ok, {hornbeam_http_opts:ref(), options()}}.
init(State) ->
    process_flag(trap_exit, true),   %% so the supervisor's shutdown runs terminate/2
    {ok, State}.

-spec handle_call(term(), gen_server:from(), State) -> {reply, {error, unknown_call}, State}.
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), State) -> {noreply, State}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec terminate(term(), {hornbeam_http_opts:ref(), options()}) -> ok.
terminate(_Reason, {Ref, #{drain_batch_size := Size, drain_interval := Interval}}) ->
    drain(Ref, Size, Interval).

%% @doc Stop accepting on listener `Ref', then send `'$hb_drain'' to its
%% connections, `Size' at a time, `Interval' ms apart (no wait after the
%% last batch). A listener that is already gone has nothing to drain.
-spec drain(hornbeam_http_opts:ref(), pos_integer(), non_neg_integer()) -> ok.
drain(Ref, Size, Interval) ->
    Conns = try
                ok = hornbeam_listener_sup:stop_accepting(Ref),
                hornbeam_conn_sup:connections(Ref)
            catch exit:_ -> []   %% the listener tree is down already (a restart)
            end,
    case Conns of
        [] -> ok;
        _ ->
            logger:notice("draining ~b connections: ~b every ~b ms (drain_batch_size, drain_interval)",
                          [length(Conns), Size, Interval]),
            send_batches(Conns, Size, Interval)
    end.

send_batches(Conns, Size, _Interval) when length(Conns) =< Size ->
    [Pid ! '$hb_drain' || Pid <- Conns],
    ok;
send_batches(Conns, Size, Interval) ->
    {Batch, Rest} = lists:split(Size, Conns),
    [Pid ! '$hb_drain' || Pid <- Batch],
    timer:sleep(Interval),
    send_batches(Rest, Size, Interval).
