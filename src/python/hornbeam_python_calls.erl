%% @doc Erlang functions that Python code can call synchronously with
%% `hornbeam_channels.call(Name, Args)' (`_hornbeam.call'): the worker sends
%% `{erl_call, CallId, Name, ArgsJson}' and gets back what `handle/2' returns.
%% Each call runs in its own process, so a slow one blocks only its caller.
-module(hornbeam_python_calls).

-export([handle/2]).

%% @doc `Name' and `ArgsJson' are binaries; answer `{ok, JsonText}' or
%% `{error, Message}' (raised as `ErlangError(Message)' in Python).
-spec handle(binary(), binary()) -> {ok, binary()} | {error, binary()}.
handle(<<"echo">>, ArgsJson) ->
    {ok, ArgsJson};
handle(Name, _ArgsJson) ->
    {error, <<"unknown erl_call ", Name/binary>>}.
