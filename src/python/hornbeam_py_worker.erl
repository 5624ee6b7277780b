%% @doc One Python worker: a gen_server owning one `hornbeam_worker' port.
%%
%% Many calls are in flight on the port at once (the worker runs sync
%% handlers on a pool of `threads' threads and async ones on its event
%% loop). Each running call has its own deadline: when it passes the
%% caller gets `{error, timeout}', the port is killed (a running CPython
%% cannot be interrupted), every other call in flight on it gets
%% `{error, worker_crashed}', and a fresh port is started. A port that exits
%% by itself is handled the same way. Restarts back off exponentially
%% (100 ms doubling to 5 s; reset once a port has stayed up for 10 s) and
%% re-run init. Calls that arrive while the port is (re)starting wait in a
%% queue, under their own deadlines.
%%
%% Deadlines are not one timer each: one timer is armed for the earliest
%% deadline, and when it fires every call past its deadline times out and
%% the timer is armed for the next. (A BIF timer per call cost 0.7 us of
%% this process's time per call, a fifth of the whole Erlang side of a
%% Python call; a deadline costs a clock read.)
%%
%% The deadline bounds execution, not waiting: a call that has waited for a
%% handler thread longer than `queued_report_ms' (a quarter of the timeout,
%% at most 100 ms; sent with init) is reported `{queued, Id}' (it has no
%% deadline then) and `{started, Id}' when a thread takes it (a fresh
%% deadline starts),
%% so a burst cannot get a healthy worker killed, and quick calls that wait
%% microseconds cost no extra frames. The worker
%% queues at most `max_queued_calls' calls and answers the excess at once
%% with the result `overloaded', which the caller gets as
%% `{error, overloaded}'; so do calls beyond `max_queued_calls' waiting
%% here for a restart.
%%
%% Frames from the port are handled in order. Emits (broadcast,
%% broadcast_from, push) of a plain call go to its caller as
%% `{hornbeam_py_emit, Emit}' messages before the reply, and the caller
%% (`hornbeam_python:call/3', in the channel process) applies them through
%% the `emit_handler' before it returns the result: a handler's pushes
%% reach the client before its reply by construction, and the fan-out runs
%% in the channel process, not here. Emits of HTTP calls and of code
%% running outside any call (a background task) are applied here.
%%
%% Stream calls (`hornbeam_python:stream/3', used for HTTP) answer with
%% messages instead of a reply: the `{http, Id, Event}' frames of the call
%% go to the caller as `{hornbeam_py, Ref, Event}' until the response is
%% complete, then `{hornbeam_py, Ref, {result, R}}' if the call ended before
%% that (`{response, ...}' when the result carries the whole response), or
%% `{hornbeam_py, Ref, {error, timeout | worker_crashed}}'. Their deadline
%% restarts with every event (an idle timeout once the response started).
%% The caller is monitored: when it goes away (or cancels) Python is told
%% `disconnect' and the call runs on unobserved.
%%
%% Stopping (terminate/2) sends `{stop}' and waits up to `shutdown_timeout'
%% for the worker to run the app's lifespan shutdown and exit, then kills it.
-module(hornbeam_py_worker).
-behaviour(gen_server).

-export([start_link/3, name/1, await_ready/2, info/1, frame_atoms/0, apply_emit/3]).
-export([init/1, handle_continue/2, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(BACKOFF_MIN, 100).
-define(BACKOFF_MAX, 5000).
-define(STABLE_AFTER, 10000).
%% Longest wait for a handler thread before the worker reports a call queued.
-define(QUEUED_REPORT_MS, 100).
%% Calls waiting here for a (re)start have reached max_queued_calls.
-define(RESTART_QUEUE_FULL(St),
        (St#st.status =/= ready andalso
         length(St#st.queued) >= map_get(max_queued_calls, St#st.opts))).

%% The first byte of a packet that carries several frames (see the
%% worker's bundle.rs); an encoded term starts with 131.
-define(BUNDLE, 0).

-record(call, {from :: gen_server:from() | {stream, pid(), reference()},
               %% monotonic milliseconds; undefined while the worker has it
               %% queued for a thread
               deadline :: integer() | infinity | undefined,
               timeout :: timeout(),
               kind :: atom(),
               sent :: boolean(),
               %% streams: the monitor of the caller; whether it has had
               %% its whole response (or went away), after which nothing
               %% more is sent to it
               mon :: reference() | undefined,
               complete = false :: boolean()}).

-record(st, {ix :: pos_integer(),
             load :: atomics:atomics_ref(),
             opts :: map(),
             port :: port() | undefined,
             os_pid :: non_neg_integer() | undefined,
             status = starting :: starting | ready | backoff | failed,
             %% true until the first successful init: failures then stop
             %% the pool's start instead of being retried
             first = true :: boolean(),
             penalized = true :: boolean(),
             init_timer :: reference() | undefined,
             %% the timer armed for the earliest deadline, and that deadline
             sweep :: {reference(), integer()} | undefined,
             started_at = 0 :: integer(),
             backoff = ?BACKOFF_MIN :: pos_integer(),
             calls = #{} :: #{pos_integer() => #call{}},
             streams = #{} :: #{reference() => pos_integer()},
             queued = [] :: [{pos_integer(), atom(), encoded_args()}],
             %% calls of a burst not yet written to the port (newest first):
             %% written as one `{calls, [...]}' frame once the mailbox is
             %% empty (or before anything else goes to the port)
             out = [] :: [{pos_integer(), atom(), encoded_args()}],
             next_id = 1 :: pos_integer(),
             waiters = [] :: [gen_server:from()],
             info = #{} :: map(),
             error :: term(),
             restarts = 0 :: non_neg_integer()}).

-type state() :: #st{}.
%% A call's arguments as term_to_binary/1 made them (see
%% hornbeam_python:encode_args/1).
-type encoded_args() :: binary().

%% ---------------------------------------------------------------------------
%% API
%% ---------------------------------------------------------------------------

-spec start_link(pos_integer(), atomics:atomics_ref(), map()) -> {ok, pid()} | {error, term()}.
start_link(Ix, Load, Opts) ->
    gen_server:start_link({local, name(Ix)}, ?MODULE, {Ix, Load, Opts}, []).

-spec name(pos_integer()) -> atom().
name(Ix) ->
    list_to_atom("hornbeam_py_worker_" ++ integer_to_list(Ix)).

%% @doc Wait for this worker's first init: `{ok, Info}' (the channels and
%% on_connect it reported) or `{error, Reason}'.
-spec await_ready(atom() | pid(), timeout()) -> {ok, map()} | {error, term()}.
await_ready(Worker, Timeout) ->
    gen_server:call(Worker, await_ready, Timeout).

-spec info(atom() | pid()) -> map().
info(Worker) ->
    try gen_server:call(Worker, info, 5000)
    catch exit:Reason -> #{name => Worker, status => down, reason => Reason}
    end.

%% @doc Every atom the worker may put in a frame. Frames are decoded with
%% `binary_to_term(Bin, [safe])', which only accepts existing atoms; naming
%% them here guarantees they exist once this module is loaded.
-spec frame_atoms() -> [atom()].
frame_atoms() ->
    [init_ok, init_error, channels, pattern, events, on_connect, true, false, undefined,
     result, ok, error, reply, noreply, stop, crash, invalid, no_handler,
     emit, broadcast, broadcast_from, push, disconnect, erl_call, log, warning, info, debug,
     http, start, body, response, startup_failed, app_error, queued, started, overloaded, binary,
     intercepts, subscribe, unsubscribe, send].

%% ---------------------------------------------------------------------------
%% gen_server
%% ---------------------------------------------------------------------------

-spec init({pos_integer(), atomics:atomics_ref(), map()}) -> {ok, state(), {continue, start}}.
init({Ix, Load, Opts}) ->
    process_flag(trap_exit, true),
    logger:update_process_metadata(#{domain => [hornbeam, python], worker => Ix}),
    atomics:put(Load, Ix, hornbeam_python:unavailable()),
    {ok, #st{ix = Ix, load = Load, opts = Opts}, {continue, start}}.

-spec handle_continue(start, state()) -> {noreply, state()}.
handle_continue(start, St) ->
    {noreply, start_port(St)}.

-spec handle_call(term(), gen_server:from(), state()) ->
          {reply, term(), state()} | {reply, term(), state(), 0}
          | {noreply, state()} | {noreply, state(), 0}.
handle_call(Request, From, St) ->
    burst(call1(Request, From, St)).

call1({call, _Kind, _Args, _Timeout}, _From, #st{status = failed} = St) ->
    done(St),
    {reply, {error, worker_crashed}, St};
call1({call, _Kind, _Args, _Timeout}, _From, St) when ?RESTART_QUEUE_FULL(St) ->
    done(St),
    {reply, {error, overloaded}, St};
call1({call, Kind, Args, Timeout}, From, St) ->
    {noreply, new_call(From, undefined, Kind, Args, Timeout, St)};
call1(await_ready, From, #st{status = Status} = St) ->
    case {Status, St#st.first} of
        {ready, _} -> {reply, {ok, St#st.info}, St};
        {failed, _} -> {reply, {error, St#st.error}, St};
        {_, false} -> {reply, {ok, St#st.info}, St};
        {_, true} -> {noreply, St#st{waiters = [From | St#st.waiters]}}
    end;
call1(info, _From, St) ->
    Waiting = maps:fold(fun(_, #call{sent = true, deadline = undefined}, N) -> N + 1;
                           (_, _, N) -> N
                        end, 0, St#st.calls),
    {reply, #{ix => St#st.ix, pid => self(), os_pid => St#st.os_pid,
              status => St#st.status, in_flight => maps:size(St#st.calls),
              waiting_for_thread => Waiting,
              queued => length(St#st.queued), restarts => St#st.restarts,
              backoff => St#st.backoff}, St};
call1(_Other, _From, St) ->
    {reply, {error, unknown_call}, St}.

-spec handle_cast(term(), state()) -> {noreply, state()} | {noreply, state(), 0}.
handle_cast(Msg, St) ->
    burst(cast1(Msg, St)).

cast1({stream, Pid, Ref, _Kind, _Args, _Timeout}, #st{status = failed} = St) ->
    done(St),
    Pid ! {hornbeam_py, Ref, {error, worker_crashed}},
    {noreply, St};
cast1({stream, Pid, Ref, _Kind, _Args, _Timeout}, St) when ?RESTART_QUEUE_FULL(St) ->
    done(St),
    Pid ! {hornbeam_py, Ref, {error, overloaded}},
    {noreply, St};
cast1({stream, Pid, Ref, Kind, Args, Timeout}, #st{next_id = Id} = St) ->
    Mon = monitor(process, Pid),
    St1 = new_call({stream, Pid, Ref}, Mon, Kind, Args, Timeout, St),
    {noreply, St1#st{streams = maps:put(Ref, Id, St1#st.streams)}};
cast1({notify, Ref, Msg}, St) ->
    case stream_call(Ref, St) of
        {Id, #call{sent = true, complete = false}} ->
            St1 = flush_out(St),
            send(St1#st.port, {notify, Id, Msg}),
            {noreply, St1};
        _ ->
            {noreply, St}
    end;
cast1({cancel, Ref}, St) ->
    {noreply, cancel_stream(Ref, St)};
cast1(_Msg, St) ->
    {noreply, St}.

-spec handle_info(term(), state()) -> {noreply, state()} | {noreply, state(), 0}.
handle_info(timeout, St) ->
    %% the mailbox emptied while calls were held back (see burst/1)
    {noreply, flush_out(St)};
handle_info(Info, St) ->
    burst(info1(Info, St)).

info1({Port, {data, <<?BUNDLE, Frames/binary>>}}, #st{port = Port} = St) ->
    {noreply, bundle(Frames, St)};
info1({Port, {data, Bin}}, #st{port = Port} = St) ->
    {noreply, packet(Bin, St)};
info1({Port, {exit_status, Status}}, #st{port = Port} = St) ->
    ?LOG_WARNING("python worker ~b (os pid ~p) exited with status ~b",
                 [St#st.ix, St#st.os_pid, Status]),
    {noreply, port_down(St#st{port = undefined}, {worker_exited, Status})};
info1({timeout, Timer, sweep}, #st{sweep = {Timer, _}} = St) ->
    {noreply, expire(erlang:monotonic_time(millisecond), St#st{sweep = undefined})};
info1({timeout, Timer, init_timeout}, #st{init_timer = Timer, status = starting} = St) ->
    ?LOG_ERROR("python worker ~b did not finish init in time", [St#st.ix]),
    {noreply, port_down(kill_port(St#st{init_timer = undefined}), init_timeout)};
info1(restart, #st{status = backoff} = St) ->
    {noreply, start_port(St)};
info1({erl_reply, Port, CallId, Reply}, #st{port = Port} = St) when Port =/= undefined ->
    send(Port, {erl_reply, CallId, Reply}),
    {noreply, St};
info1({'DOWN', Mon, process, _Pid, _Reason}, St) ->
    %% a stream's caller went away (e.g. its client disconnected)
    Refs = [Ref || {_, #call{from = {stream, _, Ref}, mon = M}} <- maps:to_list(St#st.calls),
                   M =:= Mon],
    {noreply, lists:foldl(fun cancel_stream/2, St, Refs)};
info1({'EXIT', Port, Reason}, #st{port = Port} = St) when is_port(Port) ->
    %% The port of the running worker closed without an exit_status: a
    %% worker killed while we wrote to it can end its port with epipe and no
    %% exit_status at all (found by the soak). Handle it as the worker's exit,
    %% or the worker stays dead and its calls hang.
    ?LOG_WARNING("python worker ~b (os pid ~p): its port closed (~0p)",
                 [St#st.ix, St#st.os_pid, Reason]),
    {noreply, port_down(kill_port(St), {worker_exited, Reason})};
info1({'EXIT', Port, _Reason}, St) when is_port(Port) ->
    %% a port we already replaced: exit_status (or our own kill) handled it
    {noreply, St};
info1({'EXIT', _Pid, Reason}, St) ->
    %% the parent supervisor is handled by gen_server itself
    {noreply, St#st{error = Reason}};
info1(_Stale, St) ->
    %% frames of a port we already replaced, stale timers, late erl_replies
    {noreply, St}.

-spec terminate(term(), state()) -> ok.
terminate(_Reason, St0) ->
    St = flush_out(St0),
    _ = kill_port(graceful_stop(St)),
    _ = fail_sent(St, worker_crashed),
    ok.

%% Ask the worker to stop (it runs the app's lifespan shutdown) and wait
%% for it to exit, logging what it says meanwhile.
graceful_stop(#st{port = undefined} = St) ->
    St;
graceful_stop(#st{port = Port, opts = Opts} = St) ->
    send(Port, {stop}),
    Deadline = erlang:monotonic_time(millisecond) + maps:get(shutdown_timeout, Opts, 5000),
    await_exit(St, Deadline).

await_exit(#st{port = Port} = St, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {exit_status, _}} ->
            St#st{port = undefined};
        {Port, {data, <<?BUNDLE, Frames/binary>>}} ->
            _ = [log_frame(F, St) || <<Len:32, F:Len/binary>> <= Frames],
            await_exit(St, Deadline);
        {Port, {data, Bin}} ->
            _ = log_frame(Bin, St),
            await_exit(St, Deadline)
    after Left ->
        ?LOG_WARNING("python worker ~b did not stop within shutdown_timeout; killing it",
                     [St#st.ix]),
        St
    end.

%% ---------------------------------------------------------------------------
%% Frames from the worker
%% ---------------------------------------------------------------------------

%% What a stopping worker still says: only its logs matter now.
log_frame(Bin, St) ->
    try binary_to_term(Bin, [safe]) of
        {log, _, _} = Log -> frame(Log, St);
        _ -> St
    catch error:badarg -> St
    end.

frame({result, Id, overloaded}, St) ->
    %% the worker's queue for handler threads was full
    case maps:find(Id, St#st.calls) of
        {ok, Call} -> end_call(Id, Call, {error, overloaded}, St);
        error -> St
    end;
frame({queued, Id}, St) ->
    %% every handler thread is busy: waiting does not count as running
    case maps:find(Id, St#st.calls) of
        {ok, #call{deadline = D} = Call} when D =/= undefined ->
            St#st{calls = maps:put(Id, Call#call{deadline = undefined}, St#st.calls)};
        _ ->
            St
    end;
frame({started, Id}, St) ->
    case maps:find(Id, St#st.calls) of
        {ok, #call{deadline = undefined, timeout = Timeout} = Call} ->
            Deadline = deadline(Timeout),
            arm(Deadline, St#st{calls = maps:put(Id, Call#call{deadline = Deadline}, St#st.calls)});
        _ ->
            St
    end;
frame({result, Id, Result}, St) ->
    case maps:find(Id, St#st.calls) of
        {ok, #call{from = {stream, _, _}} = Call} ->
            Msg = case Result of
                      {response, _, _, _} -> Result;
                      _ -> {result, Result}
                  end,
            end_call(Id, Call, Msg, St);
        {ok, Call} ->
            end_call(Id, Call, {ok, Result}, St);
        error ->
            St
    end;
frame({http, Id, Event}, St) ->
    case maps:find(Id, St#st.calls) of
        {ok, #call{from = {stream, Pid, Ref}, complete = false, timeout = Timeout} = Call} ->
            Pid ! {hornbeam_py, Ref, Event},
            Complete = case Event of
                           {response, _, _, _} -> true;
                           {body, _, false} -> true;
                           _ -> false
                       end,
            Deadline = deadline(Timeout),
            Call1 = Call#call{complete = Complete, deadline = Deadline},
            arm(Deadline, St#st{calls = maps:put(Id, Call1, St#st.calls)});
        _ ->
            St
    end;
frame({emit, Id, Emit}, St) ->
    _ = case maps:find(Id, St#st.calls) of
            {ok, #call{from = {Caller, _Tag}}} when is_pid(Caller) ->
                Caller ! {hornbeam_py_emit, Emit};
            _ ->
                apply_emit(maps:get(emit_handler, St#st.opts), Emit, St#st.ix)
        end,
    St;
frame({erl_call, CallId, Name, ArgsJson}, #st{port = Port} = St) ->
    Self = self(),
    Meta = logger:get_process_metadata(),
    _ = spawn(fun() ->
                      logger:set_process_metadata(Meta),
                      Self ! {erl_reply, Port, CallId, run_erl_call(Name, ArgsJson)}
              end),
    St;
frame({log, Level, Message}, St) when is_binary(Message) ->
    Lvl = case Level of
              error -> error;
              warning -> warning;
              info -> info;
              _ -> debug
          end,
    %% a handler's traceback: at most traceback_log_limit per handler and minute
    _ = case hornbeam_log_limiter:python_log_key(Message) of
            none -> ?LOG(Lvl, "python worker ~b: ~ts", [St#st.ix, Message]);
            Key -> hornbeam_log_limiter:allow(Key)
                       andalso ?LOG(Lvl, "python worker ~b: ~ts", [St#st.ix, Message])
        end,
    St;
frame({init_ok, Info}, #st{status = starting} = St) ->
    cancel(St#st.init_timer),
    Info1 = normalize_info(Info),
    [gen_server:reply(W, {ok, Info1}) || W <- St#st.waiters],
    ?LOG_INFO("python worker ~b ready (os pid ~p)", [St#st.ix, St#st.os_pid]),
    flush_queue(unpenalize(St#st{status = ready, first = false, init_timer = undefined,
                                 info = Info1, waiters = [],
                                 started_at = erlang:monotonic_time(millisecond)}));
frame({init_error, Module, Message, Trace}, #st{status = starting} = St) ->
    %% A first start reports the error to the pool, which logs it once for
    %% all workers; a restart has nobody waiting, so it logs here.
    _ = St#st.first orelse ?LOG_ERROR("python worker ~b cannot import ~ts: ~ts~n~ts",
                                      [St#st.ix, Module, Message, Trace]),
    port_down(kill_port(St), {python_import, Module, Message, Trace});
frame({app_error, Spec, Message}, #st{status = starting} = St) ->
    _ = St#st.first orelse ?LOG_ERROR("python worker ~b cannot serve ~ts: ~ts",
                                      [St#st.ix, Spec, Message]),
    port_down(kill_port(St), {bad_app, Spec, Message});
frame({startup_failed, Message}, #st{status = starting} = St) ->
    _ = St#st.first orelse ?LOG_ERROR("python worker ~b: the app's lifespan startup failed: ~ts",
                                      [St#st.ix, Message]),
    port_down(kill_port(St), {lifespan_startup_failed, Message});
frame(Other, St) ->
    ?LOG_WARNING("unexpected frame from python worker ~b: ~0P", [St#st.ix, Other, 20]),
    St.

%% One frame: an encoded term.
packet(Bin, St) ->
    try binary_to_term(Bin, [safe]) of
        Frame -> frame(Frame, St)
    catch
        error:badarg -> undecodable(Bin, St)
    end.

%% The frames of one writer round, each with its length (see the worker's
%% bundle.rs): handled in order, each as if it had come alone.
bundle(<<Len:32, Frame:Len/binary, Rest/binary>>, St) ->
    bundle(Rest, packet(Frame, St));
bundle(<<>>, St) ->
    St;
bundle(Torn, St) ->
    ?LOG_ERROR("python worker ~b sent a torn bundle (~b bytes left)", [St#st.ix, byte_size(Torn)]),
    St.

%% A frame `binary_to_term(_, [safe])' refused: an atom missing from
%% frame_atoms/0, or garbage. Never dropped silently: it is logged, and if
%% it is the result (or an HTTP event) of a call, that call is answered at
%% once as a crash instead of waiting for its timeout.
undecodable(Bin, St) ->
    case frame_head(Bin) of
        {Tag, Id} when Tag =:= <<"result">>; Tag =:= <<"http">> ->
            ?LOG_ERROR("python worker ~b sent an undecodable ~ts frame for call ~b (an atom "
                       "missing from hornbeam_py_worker:frame_atoms/0?): ~0P",
                       [St#st.ix, Tag, Id, Bin, 30]),
            frame({result, Id, {crash, <<"the worker sent an undecodable result (see the log)">>}},
                  St);
        _ ->
            ?LOG_ERROR("python worker ~b sent an undecodable frame (an atom missing from "
                       "hornbeam_py_worker:frame_atoms/0?): ~0P", [St#st.ix, Bin, 30]),
            St
    end.

%% `{Tag, Id, ...}' read from the first bytes of an encoded frame (the
%% encodings hornbeam_core's etf writes), without creating atoms.
frame_head(<<131, 104, Arity, Rest/binary>>) when Arity >= 2 ->
    case atom_text(Rest) of
        {ok, Tag, AfterTag} ->
            case int(AfterTag) of
                {ok, Id} -> {Tag, Id};
                error -> error
            end;
        error ->
            error
    end;
frame_head(_) ->
    error.

atom_text(<<119, Len, Name:Len/binary, Rest/binary>>) -> {ok, Name, Rest};
atom_text(<<118, Len:16, Name:Len/binary, Rest/binary>>) -> {ok, Name, Rest};
atom_text(_) -> error.

int(<<97, I, _/binary>>) -> {ok, I};
int(<<98, I:32/signed, _/binary>>) -> {ok, I};
int(<<110, N, Sign, Digits:N/binary, _/binary>>) ->
    Abs = binary:decode_unsigned(Digits, little),
    {ok, case Sign of 0 -> Abs; _ -> -Abs end};
int(_) -> error.

normalize_info(Info) when is_map(Info) ->
    Channels = [#{pattern => P, events => Es, intercepts => maps:get(intercepts, C, [])}
                || C = #{pattern := P, events := Es} <- maps:get(channels, Info, [])],
    #{channels => Channels, on_connect => maps:get(on_connect, Info, false) =:= true,
      http => maps:get(http, Info, false) =:= true};
normalize_info(_) ->
    #{channels => [], on_connect => false, http => false}.

%% A reply that is not `{ok, Json}' / `{error, Message}' reaches Python as
%% ErlangError("malformed erl_reply").
run_erl_call(Name, ArgsJson) ->
    try hornbeam_python_calls:handle(Name, ArgsJson)
    catch
        Class:Reason:Stack ->
            ?LOG_ERROR("erl_call ~ts crashed: ~p:~0P~n~0P",
                       [Name, Class, Reason, 20, Stack, 30]),
            {error, <<"erl_call ", Name/binary, " crashed">>}
    end.

%% @doc Apply one emit frame of worker `Ix' through `Handler' (in the
%% worker process, or in the caller of the call that made it).
-spec apply_emit(module(), term(), pos_integer()) -> ok.
apply_emit(Handler, Emit, Ix) ->
    case decode_emit(Emit) of
        {ok, E} ->
            try Handler:handle_emit(E)
            catch Class:Reason:Stack ->
                    ?LOG_ERROR("emit handler ~p crashed on ~0P: ~p:~0P~n~0P",
                               [Handler, E, 10, Class, Reason, 20, Stack, 30])
            end;
        error ->
            ?LOG_WARNING("python worker ~b sent a malformed emit: ~0P", [Ix, Emit, 10])
    end,
    ok.

%% A payload is JSON text, or {binary, Bytes} for a Python `bytes' payload.
-define(IS_PAYLOAD(P), (is_binary(P) orelse (is_tuple(P) andalso tuple_size(P) =:= 2
                                            andalso element(1, P) =:= binary
                                            andalso is_binary(element(2, P))))).

decode_emit({broadcast, Topic, Event, Json} = E)
  when is_binary(Topic), is_binary(Event), ?IS_PAYLOAD(Json) ->
    {ok, E};
decode_emit({broadcast_from, Token, Topic, Event, Json})
  when is_binary(Topic), is_binary(Event), ?IS_PAYLOAD(Json) ->
    case token(Token) of
        {ok, From} -> {ok, {broadcast_from, From, Topic, Event, Json}};
        error -> error
    end;
decode_emit({push, Token, Event, Json}) when is_binary(Event), ?IS_PAYLOAD(Json) ->
    case token(Token) of
        {ok, Channel} -> {ok, {push, Channel, Event, Json}};
        error -> error
    end;
decode_emit({Op, Token, Topic}) when (Op =:= subscribe orelse Op =:= unsubscribe), is_binary(Topic) ->
    case token(Token) of
        {ok, Channel} -> {ok, {Op, Channel, Topic}};
        error -> error
    end;
decode_emit({send, Token, Json}) when is_binary(Json) ->
    case token(Token) of
        {ok, Channel} -> {ok, {send, Channel, Json}};
        error -> error
    end;
decode_emit({disconnect, SocketId} = E) when is_binary(SocketId) ->
    {ok, E};
decode_emit(_) ->
    error.

token(Bin) when is_binary(Bin) ->
    try {ok, binary_to_term(Bin, [safe])}
    catch error:badarg -> error
    end;
token(_) ->
    error.

%% ---------------------------------------------------------------------------
%% Port lifecycle
%% ---------------------------------------------------------------------------

start_port(#st{opts = Opts, ix = Ix} = St) ->
    Path = maps:get(worker_path, Opts),
    Env = [{"PYTHONUNBUFFERED", "1"}, {"HORNBEAM_WORKER_ID", integer_to_list(Ix)}
           | maps:get(env, Opts, [])],
    try open_port({spawn_executable, Path},
                  [{packet, 4}, binary, exit_status, use_stdio, {env, Env}]) of
        Port ->
            OsPid = case erlang:port_info(Port, os_pid) of
                        {os_pid, P} -> P;
                        undefined -> undefined
                    end,
            send(Port, {init, #{app => maps:get(app, Opts),
                                channel_modules => maps:get(channel_modules, Opts),
                                pythonpath => maps:get(pythonpath, Opts),
                                worker_class => maps:get(worker_class, Opts, asgi),
                                lifespan => maps:get(lifespan, Opts, auto),
                                root_path => maps:get(root_path, Opts, <<>>),
                                threads => maps:get(threads, Opts),
                                max_queued_calls => maps:get(max_queued_calls, Opts),
                                queued_report_ms => queued_report_ms(Opts),
                                worker_id => Ix}}),
            InitTimer = case maps:get(init_timeout, Opts) of
                            infinity -> undefined;
                            T -> erlang:start_timer(T, self(), init_timeout)
                        end,
            St#st{port = Port, os_pid = OsPid, status = starting, init_timer = InitTimer}
    catch
        error:Reason ->
            ?LOG_ERROR("cannot start python worker ~ts: ~p", [Path, Reason]),
            port_down(St#st{port = undefined, status = starting}, {open_port, Reason})
    end.

%% How long a call may wait for a handler thread before the worker reports
%% it `{queued, Id}' (and its deadline is lifted): a quarter of the
%% call timeout, at most 100 ms, so a wait can never use up a timeout while
%% quick calls that wait microseconds cost no frames.
-spec queued_report_ms(map()) -> pos_integer().
queued_report_ms(Opts) ->
    case maps:get(timeout, Opts, infinity) of
        infinity -> ?QUEUED_REPORT_MS;
        T -> max(1, min(?QUEUED_REPORT_MS, T div 4))
    end.

%% Kill the OS process (it may be stuck in Python code) and close the port.
kill_port(#st{port = undefined} = St) ->
    St;
kill_port(#st{port = Port, os_pid = OsPid} = St) ->
    case OsPid of
        undefined -> ok;
        _ -> _ = os:cmd("kill -9 " ++ integer_to_list(OsPid) ++ " 2>/dev/null"), ok
    end,
    catch port_close(Port),
    St#st{port = undefined}.

%% The port is gone (or never came up): fail what was sent on it, then
%% either stop trying (first start) or schedule a restart.
port_down(St0, Reason) ->
    %% held calls count as sent: they fail with the rest
    St = fail_sent(penalize(St0#st{port = undefined, out = []}), worker_crashed),
    cancel(St#st.init_timer),
    Calls = maps:filter(fun(_, #call{sent = Sent}) -> not Sent end, St#st.calls),
    St1 = St#st{calls = Calls, init_timer = undefined},
    case St1#st.first of
        true ->
            Error = first_start_error(Reason),
            [gen_server:reply(W, {error, Error}) || W <- St1#st.waiters],
            %% fail the queued calls too: this pool never started
            maps:foreach(fun(_, Call) ->
                                 answer(Call, {error, worker_crashed}), done(St1)
                         end, Calls),
            St1#st{status = failed, error = Error, waiters = [], calls = #{}, queued = [],
                   streams = #{}};
        false ->
            Now = erlang:monotonic_time(millisecond),
            Backoff = case Now - St1#st.started_at >= ?STABLE_AFTER of
                          true -> ?BACKOFF_MIN;
                          false -> St1#st.backoff
                      end,
            ?LOG_INFO("restarting python worker ~b in ~b ms (~0p)", [St1#st.ix, Backoff, Reason]),
            erlang:send_after(Backoff, self(), restart),
            St1#st{status = backoff, os_pid = undefined,
                   backoff = min(Backoff * 2, ?BACKOFF_MAX),
                   restarts = St1#st.restarts + 1}
    end.

first_start_error({python_import, _, _, _} = Error) -> Error;
first_start_error({bad_app, _, _} = Error) -> Error;
first_start_error({lifespan_startup_failed, Message}) -> {lifespan_startup_failed, Message};
first_start_error(init_timeout) -> init_timeout;
first_start_error(Other) -> {worker_start_failed, Other}.

fail_sent(St, Error) ->
    maps:foreach(fun(_, #call{sent = true} = Call) ->
                         answer(Call, {error, Error}),
                         done(St);
                    (_, _) ->
                         ok
                 end, St#st.calls),
    St#st{streams = maps:filter(fun(_, Id) ->
                                        case maps:find(Id, St#st.calls) of
                                            {ok, #call{sent = Sent}} -> not Sent;
                                            error -> false
                                        end
                                end, St#st.streams)}.

flush_queue(#st{queued = []} = St) ->
    St;
flush_queue(#st{queued = Queued, port = Port, calls = Calls0} = St) ->
    Calls = lists:foldl(fun({Id, Kind, Args}, Acc) ->
                                send_encoded(Port, call_frame(Id, Kind, Args)),
                                maps:update_with(Id, fun(C) -> C#call{sent = true} end, Acc)
                        end, Calls0, lists:reverse(Queued)),
    St#st{queued = [], calls = Calls}.

%% --- calls and streams ---------------------------------------------------

new_call(From, Mon, Kind, Args, Timeout, #st{next_id = Id} = St) ->
    Deadline = deadline(Timeout),
    Call = #call{from = From, mon = Mon, deadline = Deadline, timeout = Timeout,
                 kind = Kind, sent = false},
    St1 = arm(Deadline, St#st{next_id = Id + 1}),
    case St#st.status of
        ready ->
            %% written by burst/1 (with the other calls of the burst)
            St1#st{calls = maps:put(Id, Call#call{sent = true}, St#st.calls),
                   out = [{Id, Kind, Args} | St#st.out]};
        _ ->
            St1#st{calls = maps:put(Id, Call, St#st.calls),
                   queued = [{Id, Kind, Args} | St#st.queued]}
    end.

%% The call is over: answer its caller (Msg is the reply of a plain call,
%% the last message of a stream) and forget it.
end_call(Id, Call, Msg, St) ->
    answer(Call, Msg),
    done(St),
    Streams = case Call#call.from of
                  {stream, _, Ref} -> maps:remove(Ref, St#st.streams);
                  _ -> St#st.streams
              end,
    St#st{calls = maps:remove(Id, St#st.calls), streams = Streams}.

answer(#call{from = {stream, Pid, Ref}, mon = Mon, complete = Complete}, Msg) ->
    demonitor(Mon, [flush]),
    case Complete of
        false -> Pid ! {hornbeam_py, Ref, Msg}, ok;
        true -> ok
    end;
answer(#call{from = From}, Msg) ->
    gen_server:reply(From, Msg).

stream_call(Ref, St) ->
    case maps:find(Ref, St#st.streams) of
        {ok, Id} ->
            case maps:find(Id, St#st.calls) of
                {ok, Call} -> {Id, Call};
                error -> error
            end;
        error ->
            error
    end.

%% The caller of a stream is gone or lost interest: tell Python (its
%% receive() returns http.disconnect), send nothing more to the caller.
cancel_stream(Ref, St) ->
    case stream_call(Ref, St) of
        {Id, #call{sent = Sent, complete = Complete, mon = Mon} = Call} ->
            demonitor(Mon, [flush]),
            St1 = flush_out(St),
            _ = Sent andalso not Complete andalso send(St1#st.port, {notify, Id, disconnect}),
            St1#st{calls = maps:put(Id, Call#call{complete = true}, St1#st.calls)};
        error ->
            St
    end.

%% After every callback: calls held back in `out' are written once the
%% mailbox is empty, as one frame; while more messages wait (more calls of
%% the burst, most likely) they stay held and a zero timeout guarantees the
%% write when the mailbox empties.
burst({reply, Reply, #st{out = []} = St}) -> {reply, Reply, St};
burst({noreply, #st{out = []} = St}) -> {noreply, St};
burst({reply, Reply, St}) ->
    case mailbox_empty() of
        true -> {reply, Reply, flush_out(St)};
        false -> {reply, Reply, St, 0}
    end;
burst({noreply, St}) ->
    case mailbox_empty() of
        true -> {noreply, flush_out(St)};
        false -> {noreply, St, 0}
    end.

mailbox_empty() ->
    {message_queue_len, N} = process_info(self(), message_queue_len),
    N =:= 0.

%% Write the held calls: `{call, Id, Kind, Args}' for one, `{calls, [...]}'
%% (in order) for more.
flush_out(#st{out = []} = St) ->
    St;
flush_out(#st{out = [{Id, Kind, Args}], port = Port} = St) ->
    send_encoded(Port, call_frame(Id, Kind, Args)),
    St#st{out = []};
flush_out(#st{out = Out, port = Port} = St) ->
    Calls = lists:foldl(fun({Id, Kind, Args}, Acc) -> [<<104, 3>>, call_etf(Id, Kind, Args) | Acc] end,
                        [], Out),
    send_encoded(Port, [<<131, 104, 2, 119, 5, "calls", 108, (length(Out)):32>>, Calls, <<106>>]),
    St#st{out = []}.

%% `{call, Id, Kind, Args}' in the external term format (see call_etf/3).
call_frame(Id, Kind, Args) ->
    [<<131, 104, 4, 119, 4, "call">>, call_etf(Id, Kind, Args)].

%% `Id, Kind, Args' in the external term format (the elements of a call
%% tuple), around the caller's encoding of Args (see
%% hornbeam_python:encode_args/1): the args were encoded in the calling
%% process, so this process neither copies nor encodes them.
call_etf(Id, Kind, <<131, Args/binary>>) ->
    <<131, IdEtf/binary>> = term_to_binary(Id),
    KindText = atom_to_binary(Kind),
    [IdEtf, <<119, (byte_size(KindText))>>, KindText, Args].

send(Port, Term) ->
    send_encoded(Port, term_to_binary(Term)).

send_encoded(undefined, _Data) ->
    ok;
send_encoded(Port, Data) ->
    try port_command(Port, Data)
    catch error:badarg -> ok   % port already closed; exit_status follows
    end.

deadline(infinity) -> infinity;
deadline(Timeout) -> erlang:monotonic_time(millisecond) + Timeout.

%% Make sure a timer fires by Deadline: one timer serves every call, armed
%% for the earliest deadline.
arm(infinity, St) ->
    St;
arm(Deadline, #st{sweep = {_, At}} = St) when At =< Deadline ->
    St;
arm(Deadline, #st{sweep = Armed} = St) ->
    _ = case Armed of
            {Old, _} -> cancel(Old);
            undefined -> ok
        end,
    Timer = erlang:start_timer(Deadline, self(), sweep, [{abs, true}]),
    St#st{sweep = {Timer, Deadline}}.

%% Every call past its deadline at Now times out (the earliest first); then
%% the timer is armed for the next deadline.
expire(Now, St) ->
    Due = lists:sort([{D, Id} || {Id, #call{deadline = D}} <- maps:to_list(St#st.calls),
                                 is_integer(D), D =< Now]),
    St1 = lists:foldl(fun({_, Id}, Acc) -> time_out(Id, Acc) end, St, Due),
    case [D || #call{deadline = D} <- maps:values(St1#st.calls), is_integer(D)] of
        [] -> St1;
        Ds -> arm(lists:min(Ds), St1)
    end.

%% A call past its deadline (it may have been failed already by an earlier
%% one of the same sweep, which killed the port).
time_out(Id, St) ->
    case maps:find(Id, St#st.calls) of
        {ok, #call{sent = true, kind = Kind} = Call} ->
            ?LOG_ERROR("python ~p call timed out on worker ~b; killing os pid ~p",
                       [Kind, St#st.ix, St#st.os_pid]),
            St1 = end_call(Id, Call, {error, timeout}, St),
            port_down(kill_port(St1), call_timeout);
        {ok, #call{sent = false} = Call} ->
            St1 = end_call(Id, Call, {error, timeout}, St),
            St1#st{queued = lists:keydelete(Id, 1, St1#st.queued)};
        error ->
            St
    end.

cancel(undefined) -> ok;
cancel(Timer) -> _ = erlang:cancel_timer(Timer, [{async, true}, {info, false}]), ok.

%% One call finished (replied to): it no longer counts as load.
done(#st{load = Load, ix = Ix}) ->
    atomics:sub(Load, Ix, 1).

penalize(#st{penalized = true} = St) -> St;
penalize(#st{load = Load, ix = Ix} = St) ->
    atomics:add(Load, Ix, hornbeam_python:unavailable()),
    St#st{penalized = true}.

unpenalize(#st{penalized = false} = St) -> St;
unpenalize(#st{load = Load, ix = Ix} = St) ->
    atomics:sub(Load, Ix, hornbeam_python:unavailable()),
    St#st{penalized = false}.
