%% @doc Owns the public ETS tables of the metrics and of the log limiter,
%% and does their housekeeping; nothing on a hot path calls it.
%%
%% <ul>
%% <li>`hornbeam_metrics_labels': labelled counters (`hornbeam_metrics').</li>
%% <li>`hornbeam_metrics_live': one row per open connection and joined
%%     channel process. Rows are deleted by their process when it ends; a
%%     process killed before it could delete its row is swept here every
%%     `?SWEEP_MS' (and skipped by every scrape meanwhile).</li>
%% <li>`hornbeam_log_limiter': per-key log counts of the current minute
%%     (`hornbeam_log_limiter'); every minute the keys that were suppressed
%%     get one "suppressed K" line and all counts start again.</li>
%% </ul>
%% A child of `hornbeam_node_sup' (one_for_one): if it restarts, the label
%% counts start again from 0 (Prometheus reads that as a counter reset) and
%% the gauges count the processes that start after it.
-module(hornbeam_metrics_store).
-behaviour(gen_server).

-export([start_link/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SWEEP_MS, 10000).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

-spec init([]) -> {ok, #{}}.
init([]) ->
    Opts = [named_table, public, set, {write_concurrency, true}, {read_concurrency, true}],
    _ = ets:new(hornbeam_metrics_labels, Opts),
    _ = ets:new(hornbeam_metrics_live, Opts),
    _ = ets:new(hornbeam_log_limiter, Opts),
    erlang:send_after(?SWEEP_MS, self(), sweep),
    erlang:send_after(hornbeam_log_limiter:window_ms(), self(), log_window),
    {ok, #{}}.

-spec handle_call(term(), gen_server:from(), map()) -> {reply, term(), map()}.
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info(sweep, State) ->
    Dead = [Pid || {Pid, _} <- ets:tab2list(hornbeam_metrics_live), not is_process_alive(Pid)],
    _ = [ets:delete(hornbeam_metrics_live, Pid) || Pid <- Dead],
    erlang:send_after(?SWEEP_MS, self(), sweep),
    {noreply, State};
handle_info(log_window, State) ->
    ok = hornbeam_log_limiter:new_window(),
    erlang:send_after(hornbeam_log_limiter:window_ms(), self(), log_window),
    {noreply, State};
handle_info(_Info, State) ->
    {noreply, State}.
