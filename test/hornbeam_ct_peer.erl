%% @doc Real peer nodes for the cluster suites (OTP `peer'): this node made
%% distributed, and peers started with hornbeam's code and a running
%% endpoint. A suite with a peer of another shape (linked, stdio control
%% over a partition, its own start function) starts it itself.
-module(hornbeam_ct_peer).

-export([ensure_distributed/1, start/3, start/4]).

%% This node as Name@127.0.0.1 with cookie hornbeam_ct, unless it already is
%% distributed (`rebar3 ct --name ...'). For init_per_suite/group: ok, or
%% the `{skip, _}' to return.
-spec ensure_distributed(atom()) -> ok | {skip, term()}.
ensure_distributed(Name) ->
    case node() of
        nonode@nohost ->
            case net_kernel:start([list_to_atom(atom_to_list(Name) ++ "@127.0.0.1"), longnames]) of
                {ok, _} -> erlang:set_cookie(hornbeam_ct), ok;
                {error, Reason} -> {skip, {no_distribution, Reason}}
            end;
        _ -> ok
    end.

-spec start(atom(), [module()], map()) -> {pid(), node(), inet:port_number()}.
start(Name, Modules, Opts) ->
    start(Name, Modules, Opts, #{}).

%% A peer named after Name, with the code of hornbeam, hornbeam_ws_client
%% and Modules, running `hornbeam:start(none, Opts)'; returns its pid, node
%% and HTTP port. Not linked: the init_per_* process that starts it ends
%% before the test cases run. Extra: more `erl' arguments (`args') and any
%% other peer option (`connection', ...).
-spec start(atom(), [module()], map(), map()) -> {pid(), node(), inet:port_number()}.
start(Name, Modules, Opts, Extra) ->
    Dirs = lists:usort([filename:dirname(code:which(M)) || M <- [hornbeam, hornbeam_ws_client | Modules]]),
    Args = ["-setcookie", atom_to_list(erlang:get_cookie())] ++ maps:get(args, Extra, [])
           ++ lists:append([["-pa", D] || D <- Dirs]),
    {ok, Pid, Node} = peer:start((maps:remove(args, Extra))#{name => peer:random_name(Name),
                                                            host => "127.0.0.1", longnames => true,
                                                            args => Args}),
    ok = erpc:call(Node, fun() ->
        {ok, _} = application:ensure_all_started(hornbeam),
        hornbeam:start(none, Opts)
    end),
    {Pid, Node, erpc:call(Node, hornbeam, port, [])}.
