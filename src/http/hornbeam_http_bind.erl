%% @doc Parse a gunicorn-style bind address into `{IP, Port}'.
%%
%% ```
%% "127.0.0.1:8000"  → {ok, {{127,0,0,1}, 8000}}
%% "0.0.0.0:80"      → {ok, {{0,0,0,0}, 80}}
%% "[::]:4000"       → {ok, {{0,0,0,0,0,0,0,0}, 4000}}
%% "[::1]"           → {ok, {{0,0,0,0,0,0,0,1}, 8000}}
%% "::1"             → {ok, {{0,0,0,0,0,0,0,1}, 8000}}   (bare IPv6: no port)
%% "localhost:80"    → {ok, {{127,0,0,1}, 80}}
%% ":9000"           → {ok, {{127,0,0,1}, 9000}}
%% "8080"            → {ok, {{127,0,0,1}, 8080}}
%% ""                → {ok, {{127,0,0,1}, 8000}}         (the default, "127.0.0.1:8000")
%% "example.org:80"  → resolved with inet:getaddr/2 (IPv4 first, then IPv6)
%% '''
%% Errors: `{error, {bad_port, Port}}', `{error, {bad_host, Host}}',
%% `{error, unix_socket_unsupported}'. Every case but a host name other than
%% `localhost' is a pure function of its argument.
-module(hornbeam_http_bind).

-export([parse/1, default/0]).

-define(DEFAULT_IP, {127, 0, 0, 1}).
-define(DEFAULT_PORT, 8000).

-type error() :: {bad_port, string()} | {bad_host, string()} | unix_socket_unsupported.
-export_type([error/0]).

%% @doc `{{127,0,0,1}, 8000}'.
-spec default() -> {inet:ip_address(), inet:port_number()}.
default() ->
    {?DEFAULT_IP, ?DEFAULT_PORT}.

-spec parse(string() | binary()) -> {ok, {inet:ip_address(), inet:port_number()}} | {error, error()}.
parse(Bin) when is_binary(Bin) ->
    case unicode:characters_to_list(Bin) of
        String when is_list(String) -> parse(String);
        _ -> {error, {bad_host, binary_to_list(Bin)}}
    end;
parse(String) when is_list(String) ->
    split(string:trim(String)).

%% --- internals ----------------------------------------------------------------

split("") ->
    {ok, default()};
split("unix:" ++ _) ->
    {error, unix_socket_unsupported};
split("[" ++ Rest) ->
    case string:split(Rest, "]") of
        [Host, ""] -> address(Host, "");
        [Host, ":" ++ Port] -> address(Host, Port);
        _ -> {error, {bad_host, "[" ++ Rest}}
    end;
split(String) ->
    case string:split(String, ":", all) of
        [Port] ->
            case is_digits(Port) of
                true -> address("", Port);
                false -> address(Port, "")
            end;
        [Host, Port] ->
            address(Host, Port);
        _Many ->
            %% A bare IPv6 address ("::1"): no port.
            address(String, "")
    end.

address(Host, PortString) ->
    case port(PortString) of
        {ok, Port} ->
            case ip(Host) of
                {ok, IP} -> {ok, {IP, Port}};
                error -> {error, {bad_host, Host}}
            end;
        error ->
            {error, {bad_port, PortString}}
    end.

port("") -> {ok, ?DEFAULT_PORT};
port(String) ->
    case is_digits(String) andalso list_to_integer(String) of
        N when is_integer(N), N =< 65535 -> {ok, N};
        _ -> error
    end.

ip("") -> {ok, ?DEFAULT_IP};
ip("localhost") -> {ok, ?DEFAULT_IP};
ip("*") -> {ok, {0, 0, 0, 0}};
ip(Host) ->
    case inet:parse_strict_address(Host) of
        {ok, IP} -> {ok, IP};
        {error, _} -> resolve(Host)
    end.

resolve(Host) ->
    case lists:all(fun is_hostname_char/1, Host) of
        false -> error;
        true ->
            case inet:getaddr(Host, inet) of
                {ok, IP} -> {ok, IP};
                {error, _} ->
                    case inet:getaddr(Host, inet6) of
                        {ok, IP} -> {ok, IP};
                        {error, _} -> error
                    end
            end
    end.

is_digits("") -> false;
is_digits(S) -> lists:all(fun(C) -> C >= $0 andalso C =< $9 end, S).

is_hostname_char(C) ->
    (C >= $a andalso C =< $z) orelse (C >= $A andalso C =< $Z)
        orelse (C >= $0 andalso C =< $9) orelse C =:= $- orelse C =:= $. .
