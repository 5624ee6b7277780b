%% @doc Supervises every channel process of this node (temporary children:
%% a crashed channel is reported to its client as `phx_error' and rejoined by
%% the client, never restarted here).
-module(hornbeam_channel_sup).
-behaviour(supervisor).

-export([start_link/0, start_channel/1, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% While this supervisor is being restarted (after a crash or a kill) the
%% join gets `{error, restarting}' (the client sees "join crashed" and
%% rejoins) instead of an exit that would end its whole connection.
-spec start_channel(hornbeam_channel_server:start_args()) -> {ok, pid()} | {error, term()}.
start_channel(Args) ->
    try supervisor:start_child(?MODULE, [Args])
    catch exit:{Reason, _} when Reason =:= noproc; Reason =:= killed; Reason =:= shutdown ->
        {error, restarting}
    end.

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Child = #{id => channel, start => {hornbeam_channel_server, start_link, []},
              restart => temporary, shutdown => 5000},
    {ok, {#{strategy => simple_one_for_one, intensity => 0, period => 1}, [Child]}}.
