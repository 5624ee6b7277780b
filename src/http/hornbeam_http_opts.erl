%% @doc Every option, limit and default of the HTTP layer, in one place, and
%% the registered names derived from a listener's `ref'.
%%
%% `hornbeam_listener_sup:start_link/1' validates the user's map here once;
%% every process of the listener then receives the validated `config()'.
%% The table in `src/http/README.md' mirrors `defaults/0'.
-module(hornbeam_http_opts).

-export([defaults/0, validate/1, name/2]).

-type ref() :: atom().

-type opts() :: #{
    ref => ref(),
    ip => inet:ip_address(),
    port => inet:port_number(),
    acceptors => pos_integer(),
    max_connections => pos_integer() | infinity,
    max_request_line_length => pos_integer(),
    max_header_line_length => pos_integer(),
    max_headers => pos_integer(),
    max_body_length => non_neg_integer(),
    request_timeout => pos_integer() | infinity,
    header_timeout => pos_integer() | infinity,
    handler := module(),
    handler_opts => term()
}.

%% The validated form: every key present.
-type config() :: #{
    ref := ref(),
    ip := inet:ip_address(),
    port := inet:port_number(),
    acceptors := pos_integer(),
    max_connections := pos_integer() | infinity,
    max_request_line_length := pos_integer(),
    max_header_line_length := pos_integer(),
    max_headers := pos_integer(),
    max_body_length := non_neg_integer(),
    request_timeout := pos_integer() | infinity,
    header_timeout := pos_integer() | infinity,
    handler := module(),
    handler_opts := term()
}.

-type role() :: listener_sup | listener | limiter | conn_sup | acceptor_sup.

-export_type([ref/0, opts/0, config/0, role/0]).

%% @doc The defaults (every option but `handler', which is required).
-spec defaults() -> #{atom() => term()}.
defaults() ->
    #{ref => hornbeam_http,
      ip => {127, 0, 0, 1},
      port => 8000,
      acceptors => 10,                          %% processes blocked in gen_tcp:accept/2
      max_connections => 16384,                 %% live connections; acceptors pause at the limit
      max_request_line_length => 8192,          %% bytes, without CRLF → 414
      max_header_line_length => 8192,           %% bytes per header line, without CRLF → 431
      max_headers => 100,                       %% header lines per request → 431
      max_body_length => 8 * 1024 * 1024,       %% bytes, Content-Length or chunked → 413
      request_timeout => 60000,                 %% ms idle keep-alive / to read a body → close / 408
      header_timeout => 10000,                  %% ms from a request's first byte to its blank line → 408
      handler_opts => undefined}.

%% @doc Merge Opts over the defaults and check every value.
-spec validate(map()) -> {ok, config()} | {error, {bad_option, atom(), term()}
                                                 | {unknown_option, term()}
                                                 | {missing_option, handler}}.
validate(Opts) when is_map(Opts) ->
    Defaults = defaults(),
    case [K || K <- maps:keys(Opts), not maps:is_key(K, Defaults), K =/= handler] of
        [Unknown | _] ->
            {error, {unknown_option, Unknown}};
        [] ->
            case maps:is_key(handler, Opts) of
                false -> {error, {missing_option, handler}};
                true -> check(maps:to_list(maps:merge(Defaults, Opts)), maps:merge(Defaults, Opts))
            end
    end.

%% @doc The registered name of one process of the listener `Ref'.
-spec name(ref(), role()) -> atom().
name(Ref, Role) ->
    binary_to_atom(<<(atom_to_binary(Ref))/binary, "_", (atom_to_binary(Role))/binary>>).

%% --- internals ----------------------------------------------------------------

check([], Config) ->
    {ok, Config};
check([{K, V} | Rest], Config) ->
    case valid(K, V) of
        true -> check(Rest, Config);
        false -> {error, {bad_option, K, V}}
    end.

valid(ref, V) -> is_atom(V);
valid(ip, V) -> is_ip(V);
valid(port, V) -> is_integer(V) andalso V >= 0 andalso V =< 65535;
valid(max_connections, infinity) -> true;
valid(request_timeout, infinity) -> true;
valid(header_timeout, infinity) -> true;
valid(max_body_length, V) -> is_integer(V) andalso V >= 0;
valid(handler, V) -> is_atom(V);
valid(handler_opts, _) -> true;
valid(_, V) -> is_integer(V) andalso V > 0.

is_ip(IP) when tuple_size(IP) =:= 4; tuple_size(IP) =:= 8 ->
    Max = case tuple_size(IP) of 4 -> 255; 8 -> 65535 end,
    lists:all(fun(X) -> is_integer(X) andalso X >= 0 andalso X =< Max end, tuple_to_list(IP));
is_ip(_) ->
    false.
