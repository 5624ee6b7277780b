%% @doc Keeps this node joined to its cluster: the peers named by `join'
%% (node names) and `join_dns' (DNS names resolved to nodes) are connected
%% to, and reconnected to every `join_retry_interval' ms for as long as the
%% node runs, so a cluster re-forms after a peer restarts or a partition
%% heals. One process per node, a child of `hornbeam_sup'.
%%
%% Targets come from the application environment (`{hornbeam, [{join,
%% [...]}, {join_dns, [...]}, {join_retry_interval, Ms}]}', e.g. the
%% release's sys.config) and from `join/1' (`hornbeam:start/2' options,
%% `--join'/`--join-dns' of the CLI). `join/1' writes what it adds back to
%% the application environment, so a restarted cluster process keeps every
%% target.
%%
%% A `join_dns' entry `"NAME"' resolves NAME's A records (AAAA too when the
%% distribution runs over IPv6, `-proto_dist inet6_tcp') to `Base@IP' on
%% every attempt, Base being this node's own name before the `@'; write
%% `"base@NAME"' to give another Base. This is the usual set-up of a
%% container platform: a headless service whose DNS name lists every pod.
%%
%% Each attempt runs in a short-lived process (a connection to an unreachable
%% host can take seconds), one at a time; the next one starts
%% `join_retry_interval' after it ends, and at once (after 100 ms) when a
%% target's connection drops. Connections made and lost are logged once
%% (notice), as is the first failure to reach a target (warning).
-module(hornbeam_cluster).
-behaviour(gen_server).

-export([start_link/0, join/1, targets/0, defaults/0, resolve/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(RETRY_SOON, 100).

-type options() :: #{join => [node() | string() | binary()],
                     join_dns => [string() | binary()],
                     join_retry_interval => pos_integer()}.
-export_type([options/0]).

-record(state, {
    join = [] :: [node()],
    join_dns = [] :: [string()],
    interval :: pos_integer(),
    timer :: reference() | undefined,
    %% the attempt in progress: its process and monitor
    attempt :: {pid(), reference()} | undefined,
    %% targets connected (true) or last found unreachable (false): for
    %% logging transitions only
    seen = #{} :: #{node() => boolean()}
}).

%% @doc Every option and its default (see README "Options").
-spec defaults() -> #{join := [], join_dns := [], join_retry_interval := pos_integer()}.
defaults() ->
    #{join => [], join_dns => [], join_retry_interval => 2000}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Add targets (and/or set the retry interval) and try them now. The
%% node must be distributed when there is any target.
-spec join(map()) -> ok | {error, term()}.
join(Opts) when is_map(Opts) ->
    case validate(maps:with([join, join_dns, join_retry_interval], Opts)) of
        {ok, Valid} when map_size(Valid) =:= 0 -> ok;
        {ok, Valid} -> gen_server:call(?MODULE, {join, Valid}, 30000);
        {error, _} = Error -> Error
    end;
join(Other) ->
    {error, {bad_join_options, Other}}.

%% @doc What the process keeps joined to, and the nodes connected now.
-spec targets() -> #{join := [node()], join_dns := [string()], join_retry_interval := pos_integer(),
                     connected := [node()]}.
targets() ->
    gen_server:call(?MODULE, targets).

%% @doc The nodes a `join_dns' entry stands for now ([] when it does not
%% resolve). `Base' is the node name part used when the entry has none.
-spec resolve(string(), string()) -> [node()].
resolve(Entry, Base) ->
    {Name, Host} = case string:split(Entry, "@") of
                       [B, H] -> {B, H};
                       [H] -> {Base, H}
                   end,
    Families = case init:get_argument(proto_dist) of
                   {ok, [["inet6_tcp" | _] | _]} -> [inet6, inet];
                   _ -> [inet]
               end,
    Ips = lists:append([case inet:getaddrs(Host, F) of
                            {ok, Found} -> Found;
                            {error, _} -> []
                        end || F <- Families]),
    lists:usort([list_to_atom(Name ++ "@" ++ inet:ntoa(Ip)) || Ip <- Ips]).

%% --- gen_server ----------------------------------------------------------------

-spec init([]) -> {ok, #state{}}.
init([]) ->
    Env = maps:from_list([{K, V} || K <- [join, join_dns, join_retry_interval],
                                    {ok, V} <- [application:get_env(hornbeam, K)]]),
    #{join_retry_interval := Default} = defaults(),
    State0 = #state{interval = Default},
    State = case validate(Env) of
                {ok, Valid} ->
                    add(Valid, State0);
                {error, Reason} ->
                    logger:error("ignoring the hornbeam cluster configuration: ~0p", [Reason]),
                    State0
            end,
    ok = net_kernel:monitor_nodes(true),
    {ok, schedule(0, State)}.

-spec handle_call(term(), gen_server:from(), #state{}) -> {reply, term(), #state{}}.
handle_call({join, Valid}, _From, State) ->
    case maps:is_key(join, Valid) orelse maps:is_key(join_dns, Valid) of
        true when node() =:= nonode@nohost ->
            {reply, {error, not_distributed}, State};
        _ ->
            remember(Valid),
            {reply, ok, schedule(0, add(Valid, State))}
    end;
handle_call(targets, _From, State = #state{join = Join, join_dns = Dns, interval = Interval}) ->
    {reply, #{join => Join, join_dns => Dns, join_retry_interval => Interval,
              connected => nodes()}, State};
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info(attempt, State = #state{attempt = undefined}) ->
    {noreply, start_attempt(State#state{timer = undefined})};
handle_info(attempt, State) ->
    %% one at a time: the running attempt schedules the next
    {noreply, State#state{timer = undefined}};
handle_info({attempt_done, Pid, Results}, State = #state{attempt = {Pid, Ref}, interval = Interval}) ->
    erlang:demonitor(Ref, [flush]),
    State1 = report(Results, State#state{attempt = undefined}),
    {noreply, schedule(Interval, State1)};
handle_info({'DOWN', Ref, process, _, Reason}, State = #state{attempt = {_, Ref}, interval = Interval}) ->
    logger:warning("a cluster connection attempt failed: ~0p", [Reason]),
    {noreply, schedule(Interval, State#state{attempt = undefined})};
handle_info({nodeup, _Node}, State) ->
    {noreply, State};
handle_info({nodedown, Node}, State = #state{seen = Seen}) ->
    case Seen of
        #{Node := true} ->
            logger:notice("lost cluster node ~ts; reconnecting every ~b ms",
                          [Node, State#state.interval]),
            {noreply, schedule(?RETRY_SOON, State#state{seen = Seen#{Node := false}})};
        _ ->
            {noreply, State}
    end;
handle_info(Msg, State) ->
    logger:warning("unexpected message ~0p", [Msg]),
    {noreply, State}.

%% --- internals -------------------------------------------------------------------

validate(Opts) ->
    maps:fold(fun(K, V, {ok, Acc}) ->
                      case validate(K, V) of
                          {ok, V1} -> {ok, Acc#{K => V1}};
                          error -> {error, {bad_option, K, V}}
                      end;
                 (_, _, Error) -> Error
              end, {ok, #{}}, Opts).

validate(join_retry_interval, Ms) when is_integer(Ms), Ms > 0 -> {ok, Ms};
validate(join, Nodes) when is_list(Nodes) -> all(fun node_name/1, Nodes);
validate(join_dns, Names) when is_list(Names) -> all(fun dns_name/1, Names);
validate(_, _) -> error.

all(F, List) ->
    Mapped = [F(X) || X <- List],
    case lists:member(error, Mapped) of
        true -> error;
        false -> {ok, Mapped}
    end.

node_name(A) when is_atom(A) -> node_name(atom_to_list(A));
node_name(B) when is_binary(B) -> node_name(unicode:characters_to_list(B));
node_name(L) when is_list(L) ->
    case io_lib:printable_unicode_list(L) andalso string:split(L, "@") of
        [[_ | _], [_ | _]] -> list_to_atom(L);
        _ -> error
    end;
node_name(_) -> error.

dns_name(B) when is_binary(B) -> dns_name(unicode:characters_to_list(B));
dns_name(L) when is_list(L) ->
    case io_lib:printable_unicode_list(L) andalso string:split(L, "@") of
        [[_ | _]] -> L;
        [[_ | _], [_ | _]] -> L;
        _ -> error
    end;
dns_name(_) -> error.

add(Valid, State = #state{join = Join, join_dns = Dns, interval = Interval}) ->
    State#state{join = union(Join, maps:get(join, Valid, [])),
                join_dns = union(Dns, maps:get(join_dns, Valid, [])),
                interval = maps:get(join_retry_interval, Valid, Interval)}.

union(Old, New) -> Old ++ [X || X <- lists:usort(New), not lists:member(X, Old)].

%% What join/1 added survives a restart of this process.
remember(Valid) ->
    maps:foreach(fun(join_retry_interval, Ms) ->
                         application:set_env(hornbeam, join_retry_interval, Ms);
                    (K, New) ->
                         Old = case application:get_env(hornbeam, K) of
                                   {ok, L} when is_list(L) -> L;
                                   _ -> []
                               end,
                         application:set_env(hornbeam, K, union(Old, New))
                 end, Valid).

schedule(After, State = #state{timer = Timer}) ->
    _ = is_reference(Timer) andalso erlang:cancel_timer(Timer),
    State#state{timer = erlang:send_after(After, self(), attempt)}.

start_attempt(State = #state{join = [], join_dns = []}) ->
    State;
start_attempt(State) when node() =:= nonode@nohost ->
    State;
start_attempt(State = #state{join = Join, join_dns = Dns}) ->
    [Base | _] = string:split(atom_to_list(node()), "@"),
    Self = self(),
    Attempt = spawn_monitor(fun() -> Self ! {attempt_done, self(), connect(Join, Dns, Base)} end),
    State#state{attempt = Attempt}.

%% [{Node, Connected}] for every target, in its own process.
connect(Join, Dns, Base) ->
    Targets = lists:usort(Join ++ lists:append([resolve(D, Base) || D <- Dns])) -- [node()],
    [{Node, lists:member(Node, nodes()) orelse net_kernel:connect_node(Node) =:= true}
     || Node <- Targets].

report(Results, State = #state{seen = Seen, interval = Interval}) ->
    Seen1 = lists:foldl(
              fun({Node, Up}, Acc) ->
                      case {maps:get(Node, Acc, undefined), Up} of
                          {true, true} -> Acc;
                          {_, true} ->
                              logger:notice("joined cluster node ~ts", [Node]),
                              Acc#{Node => true};
                          {undefined, false} ->
                              logger:warning("could not reach cluster node ~ts; retrying every ~b ms",
                                             [Node, Interval]),
                              Acc#{Node => false};
                          {_, false} ->
                              Acc#{Node => false}
                      end
              end, Seen, Results),
    State#state{seen = Seen1}.
