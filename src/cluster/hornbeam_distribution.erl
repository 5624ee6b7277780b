%% @doc Starts Erlang distribution for `bin/hornbeam run --name' and `mix
%% hornbeam.run --name', with safe defaults:
%% <ul>
%% <li>The cookie never appears on a command line (`ps'): it comes from the
%%     file of `--cookie-file PATH' (which must not be readable by group or
%%     others), else from the environment variable `HORNBEAM_COOKIE' (removed
%%     from the VM's environment once read, so the Python workers do not
%%     inherit it), else Erlang's own `~/.erlang.cookie' (created with a
%%     random cookie, mode 0400, the first time).</li>
%% <li>Distribution listens on one address: `--dist-interface IP' when
%%     given; else the node name's host when it is an IP address
%%     (`a@10.0.0.5' says where the node is reachable); else the address
%%     the host name resolves to, which must be a loopback one (a name that
%%     resolves elsewhere is refused with a hint, rather than listening on
%%     every interface as Erlang does by default).</li>
%% </ul>
-module(hornbeam_distribution).

-export([start/1, listen_address/2, cookie/1]).

-define(COOKIE_ENV, "HORNBEAM_COOKIE").

%% @doc Start distribution as `name' (with `cookie_file', `dist_interface'
%% when given). `ok' when it is already started under that name.
-spec start(#{name := string(), cookie_file => string(), dist_interface => string(), _ => _}) ->
    ok | {error, iolist()}.
start(Node = #{name := Name}) ->
    case {cookie(Node), listen_address(Name, maps:get(dist_interface, Node, undefined))} of
        {{error, _} = Error, _} -> Error;
        {_, {error, _} = Error} -> Error;
        {{ok, Cookie}, {ok, Ip}} -> start(Name, Cookie, Ip)
    end.

start(Name, Cookie, Ip) ->
    Mode = case lists:member($., Name) of true -> longnames; false -> shortnames end,
    ok = application:set_env(kernel, inet_dist_use_interface, Ip),
    Started = case net_kernel:start([list_to_atom(Name), Mode]) of
                  {ok, _} -> ok;
                  {error, {already_started, _}} -> ok;
                  {error, Reason} -> {error, io_lib:format("cannot start distribution as ~ts: ~0p "
                                                           "(is epmd running?)", [Name, Reason])}
              end,
    case {Started, Cookie} of
        {ok, default} -> ok;
        {ok, _} -> true = erlang:set_cookie(Cookie), ok;
        _ -> Started
    end.

%% @doc Where the cookie comes from: `{ok, default}' means Erlang's
%% `~/.erlang.cookie'.
-spec cookie(map()) -> {ok, atom()} | {error, iolist()}.
cookie(#{cookie_file := Path}) ->
    case file:read_file_info(Path) of
        {ok, Info} when element(8, Info) band 8#077 =/= 0 ->
            {error, io_lib:format("the cookie file ~ts is readable by other users (mode ~.8b); "
                                  "run chmod 600 ~ts", [Path, element(8, Info) band 8#777, Path])};
        {ok, _} ->
            case file:read_file(Path) of
                {ok, Bin} -> cookie_value(string:trim(Bin), ["the cookie file ", Path]);
                {error, Why} -> {error, io_lib:format("cannot read the cookie file ~ts: ~ts",
                                                      [Path, file:format_error(Why)])}
            end;
        {error, Why} ->
            {error, io_lib:format("cannot read the cookie file ~ts: ~ts", [Path, file:format_error(Why)])}
    end;
cookie(_) ->
    case os:getenv(?COOKIE_ENV) of
        false -> {ok, default};
        "" -> {ok, default};
        Value ->
            true = os:unsetenv(?COOKIE_ENV),
            cookie_value(unicode:characters_to_binary(Value), ?COOKIE_ENV)
    end.

cookie_value(<<>>, Where) -> {error, [Where, " is empty"]};
cookie_value(Bin, _Where) -> {ok, binary_to_atom(Bin)}.

%% @doc The address distribution listens on, for a node name and an
%% optional `--dist-interface' (see the module doc).
-spec listen_address(string(), string() | undefined) -> {ok, inet:ip_address()} | {error, iolist()}.
listen_address(_Name, Interface) when Interface =/= undefined ->
    case inet:parse_address(Interface) of
        {ok, Ip} -> {ok, Ip};
        {error, _} -> {error, ["--dist-interface needs an IP address, got ", Interface]}
    end;
listen_address(Name, undefined) ->
    Host = case string:split(Name, "@") of
               [_, H] -> H;
               [_] -> net_adm:localhost()
           end,
    case inet:parse_address(Host) of
        {ok, Ip} ->
            {ok, Ip};
        {error, _} ->
            case inet:getaddr(Host, inet) of
                {ok, Ip = {127, _, _, _}} ->
                    {ok, Ip};
                {ok, Ip} ->
                    {error, io_lib:format("~ts resolves to ~ts, but distribution listens on a "
                                          "loopback address unless told otherwise: name the node "
                                          "NAME@127.0.0.1 on one host, or add --dist-interface ~ts "
                                          "(and a secret cookie) to cluster across hosts",
                                          [Host, inet:ntoa(Ip), inet:ntoa(Ip)])};
                {error, Why} ->
                    {error, io_lib:format("cannot resolve the host ~ts of --name ~ts: ~0p",
                                          [Host, Name, Why])}
            end
    end.
