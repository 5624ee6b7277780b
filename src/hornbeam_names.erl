%% @doc Registered names across a restart.
%%
%% A supervisor that is killed does not stop its children itself: they get
%% its exit signal and stop on their own, a supervisor child only after it
%% has shut down its own children (a Python pool waits for its workers).
%% Meanwhile the killed supervisor's parent restarts it at once, and the new
%% children would find their names still taken (`already_started'), burning
%% the parent's restart intensity. The start functions of the supervisors
%% with registered children call await_free/2 first: it waits, bounded, for
%% the processes still holding those names to exit.
-module(hornbeam_names).

-export([await_free/2]).

%% @doc Wait until none of Names is registered to a process that is going
%% away (a supervisor above it is dead), at most Timeout ms in all. A name
%% held by a process of a live tree is not waited for. Returns `ok' either way:
%% a name still taken afterwards makes the start fail as it would have.
-spec await_free([atom()], non_neg_integer()) -> ok.
await_free(Names, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    lists:foreach(fun(Name) -> await_one(Name, Deadline) end, Names).

await_one(Name, Deadline) ->
    case whereis(Name) of
        undefined ->
            ok;
        Pid ->
            case orphan(Pid) of
                true -> await_exit(Name, Pid, Deadline);
                false -> ok
            end
    end.

%% Going away: some supervisor above it (its parent, or theirs) is dead.
orphan(Pid) -> orphan(Pid, 16).

orphan(_Pid, 0) -> false;
orphan(Pid, Depth) ->
    case erlang:process_info(Pid, parent) of
        {parent, Parent} when is_pid(Parent) ->
            (not is_process_alive(Parent)) orelse orphan(Parent, Depth - 1);
        _ -> false
    end.

await_exit(Name, Pid, Deadline) ->
    Mon = erlang:monitor(process, Pid),
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {'DOWN', Mon, process, Pid, _} -> ok
    after Left ->
        erlang:demonitor(Mon, [flush]),
        logger:warning("~s is still taken by ~p, whose supervisor is gone", [Name, Pid]),
        ok
    end.
