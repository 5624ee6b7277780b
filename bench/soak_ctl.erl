%% @doc The soak driver's hand inside a node (bench/soak.py): runs in a short
%% hidden node (hidden, so that it never links the cluster's nodes to each
%% other and so never heals a partition the soak is measuring) and prints one
%% line of plain text.
%%
%%   erl -noshell -hidden -name ctl@127.0.0.1 -setcookie C -pa DIR \
%%       -run soak_ctl main NODE COMMAND [ARG]
%%
%% Commands: `nodes' ("ok N1 N2 ..."), `whereis NAME' ("ok <pid>" or
%% "ok undefined"), `kill NAME' (exit(Pid, kill); "ok <pid> UNIX_MS" with the
%% time just before the kill, or "ok undefined"),
%% `presence FILE' (FILE lists topics, one a line; prints one line per topic,
%% "TOPIC<tab>KEY,KEY,..."). "down" when NODE cannot be reached, "error ..."
%% when the call failed.
-module(soak_ctl).
-export([main/1]).

-spec main([string()]) -> no_return().
main([NodeName, Command | Args]) ->
    Node = list_to_atom(NodeName),
    Out = case net_adm:ping(Node) of
              pang -> "down";
              pong ->
                  try command(Node, Command, Args)
                  catch Class:Reason -> io_lib:format("error ~0p:~0p", [Class, Reason])
                  end
          end,
    io:put_chars([Out, "\n"]),
    halt(0).

command(Node, "nodes", []) ->
    Nodes = erpc:call(Node, erlang, nodes, [], 5000),
    ["ok" | [[" ", atom_to_list(N)] || N <- Nodes]];
command(Node, "whereis", [Name]) ->
    ["ok ", pid(erpc:call(Node, erlang, whereis, [list_to_atom(Name)], 5000))];
command(Node, "kill", [Name]) ->
    case erpc:call(Node, erlang, whereis, [list_to_atom(Name)], 5000) of
        undefined -> "ok undefined";
        Pid ->
            At = os:system_time(millisecond),
            true = erpc:call(Node, erlang, exit, [Pid, kill], 5000),
            ["ok ", pid(Pid), " ", integer_to_list(At)]
    end;
command(Node, "presence", [File]) ->
    {ok, Text} = file:read_file(File),
    Topics = [T || T <- binary:split(Text, <<"\n">>, [global]), T =/= <<>>],
    [[T, "\t", lists:join(",", lists:sort(maps:keys(list(Node, T)))), "\n"] || T <- Topics].

list(Node, Topic) ->
    case erpc:call(Node, hornbeam_presence, list, [Topic], 5000) of
        M when is_map(M) -> M;
        Other -> error({bad_presence_list, Other})
    end.

pid(undefined) -> "undefined";
pid(Pid) -> pid_to_list(Pid).
