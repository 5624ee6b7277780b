%% @doc Which Python installation the workers import from, checked before
%% any worker starts.
%%
%% The worker embeds the libpython it was built against (`MAJOR.MINOR' and
%% the build's interpreter, printed by `hornbeam_worker --python-version').
%% A virtualenv or an interpreter of that same installation can lend it its
%% `sys.prefix' and site-packages; one of another version cannot (its
%% packages are built for another ABI, its site-packages has another name),
%% nor one of another installation of the same version (its stdlib does not
%% fit the embedded libpython). So the interpreter is run once here, `Exe -c
%% "...print version and base prefix..."', and a mismatch is one error
%% saying what to do, before a half-started pool exists.
%%
%% The interpreter is the `python' option (a path to an interpreter, a
%% command on `PATH', or a venv/prefix directory with `bin/python3'), else
%% the activated virtualenv (`VIRTUAL_ENV/bin/python'), else none: the
%% worker then finds `python3' on `PATH' itself, as CPython does.
-module(hornbeam_python_env).

-export([resolve/2, built_version/1, interpreter/1]).

-define(RUN_TIMEOUT, 30000).
%% the version, then the installation a venv is made from (its stdlib)
-define(VERSION_CODE, "import os, sys; print('%d.%d' % sys.version_info[:2]); "
                      "print(os.path.realpath(sys.base_prefix))").

-type error() :: {python_not_found, string()}
               | {python_not_runnable, string(), string()}
               | {python_version, Exe :: string(), Found :: string(), Built :: string()}
               | {python_base, Exe :: string(), Base :: string(), BuiltBase :: string(),
                  BuiltExe :: string()}
               | {worker_version_unknown, string()}.
-export_type([error/0]).

%% @doc The interpreter the workers should start as (`undefined': let the
%% worker find it), after checking its version against the worker binary.
-spec resolve(undefined | string() | binary(), file:filename_all()) ->
          {ok, undefined | string()} | {error, error()}.
resolve(Option, WorkerPath) ->
    case interpreter(Option) of
        {ok, undefined} -> {ok, undefined};
        {ok, Exe} -> check(Exe, WorkerPath);
        {error, _} = Error -> Error
    end.

check(Exe, WorkerPath) ->
    case {probe(Exe), built_version(WorkerPath)} of
        {{ok, Built, Base}, {ok, Built, BuiltExe}} ->
            same_base(Exe, Base, BuiltExe);
        {{ok, Found, _}, {ok, Built, _}} ->
            {error, {python_version, Exe, Found, Built}};
        {{error, Out}, {ok, _, _}} ->
            {error, {python_not_runnable, Exe, Out}};
        {_, {error, _} = Error} ->
            Error
    end.

%% Same version is not enough: a venv of another 3.11 installation (say
%% Debian's, whose stdlib has _socket built into its own binary) would lend
%% the embedded libpython a stdlib that does not fit it. When the build's
%% interpreter still runs, the installations must be the same.
same_base(Exe, Base, BuiltExe) ->
    case probe(BuiltExe) of
        {ok, _, Base} -> {ok, Exe};
        {ok, _, BuiltBase} -> {error, {python_base, Exe, Base, BuiltBase, BuiltExe}};
        {error, _} -> {ok, Exe}
    end.

%% {ok, Version, BasePrefix} of an interpreter, or {error, Output}.
probe(Exe) ->
    case run(Exe, ["-c", ?VERSION_CODE]) of
        {0, Out} ->
            case string:split(string:trim(Out), "\n", all) of
                [Version, Base] ->
                    case re:run(Version, "^[0-9]+\\.[0-9]+$") of
                        {match, _} -> {ok, Version, string:trim(Base)};
                        nomatch -> {error, Out}
                    end;
                _ -> {error, Out}
            end;
        {_, Out} -> {error, Out}
    end.

%% @doc `MAJOR.MINOR' of the libpython the worker binary embeds, and the
%% interpreter the build used.
-spec built_version(file:filename_all()) -> {ok, string(), string()} | {error, error()}.
built_version(WorkerPath) ->
    Path = unicode:characters_to_list(WorkerPath),
    case run(Path, ["--python-version"]) of
        {0, Out} ->
            case string:split(Out, "\n", all) of
                [Version, BuiltExe | _] -> {ok, string:trim(Version), string:trim(BuiltExe)};
                _ -> {error, {worker_version_unknown, Out}}
            end;
        {_, Out} -> {error, {worker_version_unknown, Out}}
    end.

%% @doc The interpreter an option names, or the activated virtualenv's.
-spec interpreter(undefined | string() | binary()) ->
          {ok, undefined | string()} | {error, error()}.
interpreter(undefined) ->
    case os:getenv("VIRTUAL_ENV") of
        Venv when is_list(Venv), Venv =/= "" ->
            case in_prefix(Venv) of
                undefined -> {ok, undefined};
                Exe -> {ok, Exe}
            end;
        _ ->
            {ok, undefined}
    end;
interpreter(Option) when is_binary(Option) ->
    interpreter(unicode:characters_to_list(Option));
interpreter(Option) ->
    Found = case filelib:is_dir(Option) of
                true -> in_prefix(Option);
                false ->
                    case lists:member($/, Option) of
                        true -> regular(Option);
                        false -> os:find_executable(Option)
                    end
            end,
    case Found of
        Exe when is_list(Exe) -> {ok, filename:absname(Exe)};
        _ -> {error, {python_not_found, Option}}
    end.

%% bin/python3 (or bin/python) of a venv or an installation prefix
in_prefix(Dir) ->
    Candidates = [filename:join([Dir, "bin", N]) || N <- ["python3", "python"]],
    case [C || C <- Candidates, filelib:is_regular(C)] of
        [Exe | _] -> filename:absname(Exe);
        [] -> undefined
    end.

regular(Path) ->
    case filelib:is_regular(Path) of
        true -> Path;
        false -> false
    end.

%% Runs Exe with Args; {ExitStatus, Output} (stdout and stderr).
run(Exe, Args) ->
    try open_port({spawn_executable, Exe},
                  [{args, Args}, exit_status, stderr_to_stdout, binary, hide]) of
        Port -> collect(Port, <<>>)
    catch
        error:Reason -> {error, io_lib:format("cannot run it: ~0p", [Reason])}
    end.

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, unicode:characters_to_list(Acc)}
    after ?RUN_TIMEOUT ->
            catch port_close(Port),
            {timeout, "no answer within 30 s"}
    end.
