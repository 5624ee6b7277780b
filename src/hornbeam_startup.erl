%% @doc `hornbeam:start/2' for the entry points that print their own
%% errors (`bin/hornbeam run', the release's autostart, `mix hornbeam.run').
%%
%% A failed start produces log events on its way down: a supervisor report
%% and a crash report for a port in use, the pool's traceback of an import
%% error, a listener's "cannot listen" line. `hornbeam_cli:explain/2' already
%% says all of that in one block, so while starting, log events are held
%% back: replayed in order when the start succeeds (warnings and notices
%% such as "serving channels only" still show), dropped when it fails.
-module(hornbeam_startup).

-export([start/2]).

-define(FILTER, hornbeam_startup_hold).

-spec start(hornbeam:app_spec(), hornbeam:options()) -> ok | {error, term()}.
start(AppSpec, Opts) ->
    Self = self(),
    Tag = make_ref(),
    Hold = fun(Event, _) -> Self ! {Tag, Event}, stop end,
    _ = logger:remove_primary_filter(?FILTER),
    ok = logger:add_primary_filter(?FILTER, {Hold, []}),
    Result = try hornbeam:start(AppSpec, Opts)
             after _ = logger:remove_primary_filter(?FILTER)
             end,
    %% A local send is in the mailbox when `!' returns: nothing held is
    %% still on its way once the filter is gone.
    Held = drain(Tag, []),
    case Result of
        ok -> lists:foreach(fun replay/1, Held);
        {error, _} -> ok
    end,
    Result.

drain(Tag, Acc) ->
    receive {Tag, Event} -> drain(Tag, [Event | Acc])
    after 0 -> lists:reverse(Acc)
    end.

replay(#{level := Level, msg := {report, Report}, meta := Meta}) ->
    logger:log(Level, Report, Meta);
replay(#{level := Level, msg := {string, String}, meta := Meta}) ->
    logger:log(Level, "~ts", [String], Meta);
replay(#{level := Level, msg := {Format, Args}, meta := Meta}) ->
    logger:log(Level, Format, Args, Meta).
