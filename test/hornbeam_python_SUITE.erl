%% @doc The Python worker pool against the real `priv/hornbeam_worker' and
%% the fixture modules in `test/python/fixtures/'.
-module(hornbeam_python_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
%% test emit handler and logger handler
-export([handle_emit/1, log/2]).
-export([join_ok/1, join_ok_without_socket/1, join_error/1, join_crash/1, join_invalid/1,
         join_no_handler/1, join_async/1, socket_fields/1,
         event_reply/1, event_reply_without_socket/1, event_reply_error/1, event_noreply/1,
         event_none/1, event_stop/1, event_crash/1, event_invalid/1, event_bad_json/1,
         event_no_handler/1, event_async/1, event_async_crash/1,
         leave_ok/1, leave_crash/1, leave_no_handler/1,
         connect_ok/1, connect_error/1, connect_crash/1, connect_invalid/1, connect_no_handler/1,
         channels_info/1, emits_before_result/1, erl_call_echo/1, erl_call_async/1,
         erl_call_unknown/1, python_logging/1, crash_traceback_logged/1,
         async_calls_overlap/1, sync_calls_overlap_on_two_workers/1,
         os_exit_then_restart/1, a_port_closed_without_exit_status_is_a_worker_exit/1, all_in_flight_fail_together/1, timeout_replaces_worker/1,
         import_error/1, missing_binary/1, throughput/1,
         sync_handlers_run_on_a_pool_thread_off_the_loop/1,
         sync_handlers_overlap_on_one_worker/1,
         a_sleeping_sync_handler_does_not_delay_another_call_with_one_worker/1,
         blocking_forms_refuse_to_run_on_the_loop/1,
         a_full_queue_answers_overloaded_at_once/1,
         time_waiting_for_a_thread_does_not_count_toward_the_timeout/1,
         a_waiting_call_is_timed_once_it_runs/1,
         bad_pool_options_are_refused/1,
         a_held_reply_is_not_kept_back_by_a_blocking_job_after_it/1,
         an_undecodable_result_answers_its_call_at_once/1,
         a_bundle_with_an_undecodable_frame_still_delivers_the_others/1,
         event_socket_fields/1]).

-define(ROOM, <<"room:*">>).

all() ->
    [join_ok, join_ok_without_socket, join_error, join_crash, join_invalid, join_no_handler,
     join_async, socket_fields,
     event_reply, event_reply_without_socket, event_reply_error, event_noreply, event_none,
     event_stop, event_crash, event_invalid, event_bad_json, event_no_handler, event_async,
     event_async_crash,
     leave_ok, leave_crash, leave_no_handler,
     connect_ok, connect_error, connect_crash, connect_invalid, connect_no_handler,
     channels_info, emits_before_result, erl_call_echo, erl_call_async, erl_call_unknown,
     python_logging, crash_traceback_logged,
     async_calls_overlap, sync_calls_overlap_on_two_workers,
     os_exit_then_restart, a_port_closed_without_exit_status_is_a_worker_exit,
     all_in_flight_fail_together, timeout_replaces_worker,
     import_error, missing_binary, throughput,
     sync_handlers_run_on_a_pool_thread_off_the_loop, sync_handlers_overlap_on_one_worker,
     a_sleeping_sync_handler_does_not_delay_another_call_with_one_worker,
     blocking_forms_refuse_to_run_on_the_loop, a_full_queue_answers_overloaded_at_once,
     time_waiting_for_a_thread_does_not_count_toward_the_timeout,
     a_waiting_call_is_timed_once_it_runs, bad_pool_options_are_refused,
     a_held_reply_is_not_kept_back_by_a_blocking_job_after_it,
     an_undecodable_result_answers_its_call_at_once,
     a_bundle_with_an_undecodable_frame_still_delivers_the_others,
     event_socket_fields].

%% ---------------------------------------------------------------------------
%% setup
%% ---------------------------------------------------------------------------

init_per_suite(Config) ->
    Worker = filename:join(hornbeam_python_sup:priv_dir(), "hornbeam_worker"),
    case filelib:is_regular(Worker) of
        true -> Config;
        false -> {fail, {no_worker_binary, Worker, "run scripts/build_native.sh"}}
    end.

end_per_suite(_Config) ->
    ok.

fixtures() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "python", "fixtures"]).

base_opts() ->
    #{channel_modules => [<<"fx_room">>, <<"fx_connect">>],
      pythonpath => [fixtures()],
      workers => 1,
      emit_handler => ?MODULE}.

pool_opts(sync_calls_overlap_on_two_workers) -> #{workers => 2};
pool_opts(connect_no_handler) -> #{channel_modules => [<<"fx_room">>]};
pool_opts(throughput) -> #{workers => 2};
pool_opts(a_full_queue_answers_overloaded_at_once) -> #{threads => 1, max_queued_calls => 1};
pool_opts(time_waiting_for_a_thread_does_not_count_toward_the_timeout) ->
    #{threads => 1, timeout => 1500};
pool_opts(a_waiting_call_is_timed_once_it_runs) -> #{threads => 1};
pool_opts(a_held_reply_is_not_kept_back_by_a_blocking_job_after_it) -> #{threads => 1};
pool_opts(_) -> #{}.

no_pool(import_error) -> true;
no_pool(missing_binary) -> true;
no_pool(bad_pool_options_are_refused) -> true;
no_pool(_) -> false.

init_per_testcase(Case, Config) ->
    case no_pool(Case) of
        true ->
            Config;
        false ->
            {ok, Sup} = hornbeam_python_sup:start_link(maps:merge(base_opts(), pool_opts(Case))),
            unlink(Sup),
            Config
    end.

end_per_testcase(_Case, _Config) ->
    catch unregister(hb_emit_sink),
    _ = logger:remove_handler(hb_test_capture),
    hornbeam_python_sup:stop().

%% test emit handler: forward to the process registered as hb_emit_sink
handle_emit(Emit) ->
    case whereis(hb_emit_sink) of
        undefined -> ok;
        Pid -> Pid ! {emit, Emit}, Pid ! {emit_applied_by, self()}, ok
    end.

%% logger handler callback: forward python-domain events to the test process
log(#{msg := Msg, meta := Meta}, #{config := #{pid := Pid}}) ->
    Text = case Msg of
               {string, S} -> unicode:characters_to_binary(S);
               {report, R} -> iolist_to_binary(io_lib:format("~p", [R]));
               {Format, Args} -> unicode:characters_to_binary(io_lib:format(Format, Args))
           end,
    Pid ! {logged, maps:get(domain, Meta, []), Text},
    ok.

capture_logs() ->
    ok = logger:add_handler(hb_test_capture, ?MODULE, #{config => #{pid => self()}, level => all}).

await_log(Pattern) ->
    receive
        {logged, [hornbeam, python], Text} ->
            case binary:match(Text, Pattern) of
                nomatch -> await_log(Pattern);
                _ -> Text
            end
    after 5000 ->
        ct:fail({log_not_seen, Pattern})
    end.

%% ---------------------------------------------------------------------------
%% helpers
%% ---------------------------------------------------------------------------

sock() -> sock(<<"{}">>).

sock(Assigns) ->
    #{id => <<"conn-1">>, topic => <<"room:1">>, join_ref => <<"\"1\"">>,
      assigns => Assigns, params => <<"{\"token\":\"t\"}">>,
      channel => term_to_binary(self())}.

join(Payload) ->
    join(?ROOM, <<"room:1">>, Payload).

join(Pattern, Topic, Payload) ->
    hornbeam_python:call(join, #{pattern => Pattern, topic => Topic,
                                 topic_params => #{<<"id">> => <<"1">>},
                                 payload => Payload, socket => sock()}).

event(Event) -> event(Event, <<"{}">>).

event(Event, Payload) -> event(Event, Payload, <<"{}">>).

event(Event, Payload, Assigns) ->
    hornbeam_python:call(event, event_args(Event, Payload, Assigns)).

event_args(Event, Payload, Assigns) ->
    #{pattern => ?ROOM, event => Event, payload => Payload, socket => sock(Assigns)}.

leave(Assigns) ->
    hornbeam_python:call(leave, #{pattern => ?ROOM, topic => <<"room:1">>,
                                  reason => <<"leave">>, socket => sock(Assigns)}).

connect(Params) ->
    hornbeam_python:call(connect, #{params => Params,
                                    connect_info => <<"{\"peer\":\"127.0.0.1\"}">>}).

par(Funs) ->
    Parent = self(),
    Refs = [begin
                Ref = make_ref(),
                _ = spawn_link(fun() -> Parent ! {Ref, F()} end),
                Ref
            end || F <- Funs],
    [receive {Ref, V} -> V after 30000 -> ct:fail(par_timeout) end || Ref <- Refs].

elapsed_ms(Fun) ->
    T0 = erlang:monotonic_time(millisecond),
    V = Fun(),
    {erlang:monotonic_time(millisecond) - T0, V}.

os_pid() ->
    [#{os_pid := P}] = hornbeam_python:workers(),
    P.

%% ---------------------------------------------------------------------------
%% join
%% ---------------------------------------------------------------------------

join_ok(_) ->
    {ok, {ok, Resp, Assigns}} = join(<<"{\"mode\":\"ok\",\"user\":\"bob\"}">>),
    ?assertEqual(<<"{\"topic\":\"room:1\",\"topic_params\":{\"id\":\"1\"}}">>, Resp),
    ?assertEqual(<<"{\"user\":\"bob\"}">>, Assigns).

join_ok_without_socket(_) ->
    ?assertEqual({ok, {ok, <<"{\"short\":true}">>, <<"{}">>}},
                 join(<<"{\"mode\":\"ok_no_socket\"}">>)).

join_error(_) ->
    ?assertEqual({ok, {error, <<"{\"reason\":\"unauthorized\"}">>}},
                 join(<<"{\"mode\":\"error\"}">>)),
    %% a str reason becomes {"reason": str}
    ?assertEqual({ok, {error, <<"{\"reason\":\"unauthorized\"}">>}},
                 join(<<"{\"mode\":\"error_str\"}">>)).

join_crash(_) ->
    {ok, {crash, Msg}} = join(<<"{\"mode\":\"crash\"}">>),
    ?assertEqual(<<"handler fx_room.join raised ValueError: join exploded">>, Msg).

join_invalid(_) ->
    {ok, {invalid, Msg}} = join(<<"{\"mode\":\"invalid\"}">>),
    ?assertMatch({0, _}, binary:match(Msg, <<"handler fx_room.join returned an invalid value: 'yes please'">>)).

join_no_handler(_) ->
    ?assertMatch({ok, {no_handler, _}}, join(<<"nope:*">>, <<"nope:1">>, <<"{}">>)).

join_async(_) ->
    ?assertEqual({ok, {ok, <<"{\"async_join\":{\"id\":\"1\"}}">>, <<"{\"joined\":true}">>}},
                 join(<<"async:*">>, <<"async:1">>, <<"{}">>)).

socket_fields(_) ->
    {ok, {ok, Resp, _}} = join(<<"{\"mode\":\"socket_info\"}">>),
    ?assertEqual(<<"{\"id\":\"conn-1\",\"topic\":\"room:1\",\"join_ref\":\"1\","
                   "\"params\":{\"token\":\"t\"},\"assigns\":{}}">>, Resp).

%% ---------------------------------------------------------------------------
%% events
%% ---------------------------------------------------------------------------

event_socket_fields(_) ->
    %% the same fields as join's (socket_fields/1), from the Socket the
    %% worker builds itself for a def event handler; an empty payload is {},
    %% a binary one is bytes
    Fields = <<"\"id\":\"conn-1\",\"topic\":\"room:1\",\"join_ref\":\"1\","
               "\"params\":{\"token\":\"t\"},\"assigns\":{\"n\":1},">>,
    ?assertEqual({ok, {reply, ok, <<"{", Fields/binary, "\"payload\":{}}">>, <<"{\"n\":1}">>}},
                 event(<<"socket_info">>, <<>>, <<"{\"n\":1}">>)),
    ?assertEqual({ok, {reply, ok, <<"{", Fields/binary, "\"payload\":\"0001ff\"}">>, <<"{\"n\":1}">>}},
                 event(<<"socket_info">>, {binary, <<0, 1, 255>>}, <<"{\"n\":1}">>)),
    %% an id-less socket (no on_connect id) is None
    Args = event_args(<<"socket_info">>, <<"{}">>, <<"{}">>),
    #{socket := Sock} = Args,
    {ok, {reply, ok, Resp, _}} = hornbeam_python:call(event, Args#{socket := maps:remove(id, Sock)}),
    ?assertMatch({match, _}, re:run(Resp, "^\\{\"id\":null,")).

event_reply(_) ->
    ?assertEqual({ok, {reply, ok, <<"{\"got\":{\"a\":[1,2.5,null,\"é\"]},\"n\":3}"/utf8>>,
                       <<"{\"n\":3,\"keep\":true}">>}},
                 event(<<"reply">>, <<"{\"a\":[1,2.5,null,\"é\"]}"/utf8>>,
                       <<"{\"n\":2,\"keep\":true}">>)).

event_reply_without_socket(_) ->
    %% the assigns come back unchanged, byte for byte
    Assigns = <<"{\"z\": 1, \"a\": [ ]}">>,
    ?assertEqual({ok, {reply, ok, <<"{\"x\":1}">>, Assigns}},
                 event(<<"reply_no_socket">>, <<"{}">>, Assigns)).

event_reply_error(_) ->
    ?assertEqual({ok, {reply, error, <<"{\"why\":\"nope\"}">>, <<"{}">>}},
                 event(<<"reply_error">>)).

event_noreply(_) ->
    ?assertEqual({ok, {noreply, <<"{\"seen\":true}">>}}, event(<<"noreply">>)).

event_none(_) ->
    ?assertEqual({ok, {noreply, <<"{\"k\":1}">>}}, event(<<"none">>, <<"{}">>, <<"{\"k\":1}">>)).

event_stop(_) ->
    ?assertEqual({ok, {stop, <<"\"normal\"">>, <<"{\"stopping\":true}">>}}, event(<<"stop">>)).

event_crash(_) ->
    ?assertEqual({ok, {crash, <<"handler fx_room.crash raised ZeroDivisionError: division by zero">>}},
                 event(<<"crash">>)).

event_invalid(_) ->
    {ok, {invalid, Msg}} = event(<<"invalid">>),
    ?assertMatch({0, _}, binary:match(Msg, <<"handler fx_room.invalid returned an invalid value: 42">>)).

event_bad_json(_) ->
    {ok, {invalid, Msg}} = event(<<"bad_json">>),
    ?assertNotEqual(nomatch, binary:match(Msg, <<"set">>)).

event_no_handler(_) ->
    ?assertMatch({ok, {no_handler, _}}, event(<<"nope">>)).

event_async(_) ->
    ?assertEqual({ok, {reply, ok, <<"{\"async\":true,\"got\":{\"q\":1}}">>, <<"{}">>}},
                 event(<<"async_reply">>, <<"{\"q\":1}">>)).

event_async_crash(_) ->
    {ok, {crash, Msg}} = event(<<"async_crash">>),
    ?assertEqual(<<"handler fx_room.async_crash raised KeyError: 'async exploded'">>, Msg).

%% ---------------------------------------------------------------------------
%% leave / connect
%% ---------------------------------------------------------------------------

leave_ok(_) ->
    ?assertEqual({ok, ok}, leave(<<"{}">>)).

leave_crash(_) ->
    ?assertEqual({ok, {crash, <<"handler fx_room.leave raised RuntimeError: leave exploded">>}},
                 leave(<<"{\"crash_on_leave\":true}">>)).

leave_no_handler(_) ->
    ?assertEqual({ok, ok},
                 hornbeam_python:call(leave, #{pattern => <<"async:*">>, topic => <<"async:1">>,
                                               reason => <<"leave">>, socket => sock()})).

connect_ok(_) ->
    ?assertEqual({ok, {ok, <<"{\"user_id\":7,\"peer\":\"127.0.0.1\"}">>}},
                 connect(<<"{\"token\":\"good\"}">>)).

connect_error(_) ->
    ?assertEqual({ok, {error, <<"{\"reason\":\"bad token\"}">>}}, connect(<<"{\"token\":\"bad\"}">>)).

connect_crash(_) ->
    ?assertMatch({ok, {crash, _}}, connect(<<"{\"token\":\"crash\"}">>)).

connect_invalid(_) ->
    ?assertMatch({ok, {invalid, _}}, connect(<<"{\"token\":\"invalid\"}">>)).

connect_no_handler(_) ->
    ?assertEqual(false, hornbeam_python:has_on_connect()),
    ?assertEqual({ok, no_handler}, connect(<<"{}">>)).

channels_info(_) ->
    ?assert(hornbeam_python:has_on_connect()),
    Channels = lists:sort(hornbeam_python:channels()),
    [#{pattern := <<"async:*">>, events := []},
     #{pattern := <<"room:*">>, events := Events}] = Channels,
    ?assert(lists:member(<<"reply">>, Events)),
    ?assert(lists:member(<<"sleep_async">>, Events)).

%% ---------------------------------------------------------------------------
%% side effects and erl_call
%% ---------------------------------------------------------------------------

emits_before_result(_) ->
    true = register(hb_emit_sink, self()),
    Me = self(),
    {ok, {reply, ok, _, _}} = event(<<"shout">>, <<"{\"a\":1}">>),
    %% already delivered when the result came back
    Got = [receive {emit, E} -> E after 0 -> missing end || _ <- [1, 2, 3]],
    ?assertEqual([{broadcast, <<"room:1">>, <<"shout">>, <<"{\"a\":1}">>},
                  {broadcast_from, Me, <<"room:1">>, <<"shout_from">>, <<"{\"a\":1}">>},
                  {push, Me, <<"pushed">>, <<"{\"a\":1}">>}], Got),
    %% by the calling process itself, not the worker's
    ?assertEqual([Me, Me, Me],
                 [receive {emit_applied_by, P} -> P after 0 -> missing end || _ <- [1, 2, 3]]).

erl_call_echo(_) ->
    ?assertEqual({ok, {reply, ok, <<"{\"echo\":{\"a\":[1,{\"b\":null}]}}">>, <<"{}">>}},
                 event(<<"echo_call">>, <<"{\"a\":[1,{\"b\":null}]}">>)).

erl_call_async(_) ->
    ?assertEqual({ok, {reply, ok, <<"{\"echo\":[1,2]}">>, <<"{}">>}},
                 event(<<"echo_call_async">>, <<"[1,2]">>)).

erl_call_unknown(_) ->
    ?assertEqual({ok, {reply, ok, <<"{\"error\":\"unknown erl_call no_such_call\"}">>, <<"{}">>}},
                 event(<<"unknown_call">>)).

python_logging(_) ->
    capture_logs(),
    {ok, {noreply, _}} = event(<<"log">>, <<"{\"n\":42}">>),
    await_log(<<"hello from python 42">>).

crash_traceback_logged(_) ->
    capture_logs(),
    {ok, {crash, _}} = event(<<"crash">>),
    Text = await_log(<<"handler fx_room.crash raised ZeroDivisionError">>),
    ?assertNotEqual(nomatch, binary:match(Text, <<"Traceback">>)).

%% ---------------------------------------------------------------------------
%% concurrency, crashes, timeouts
%% ---------------------------------------------------------------------------

async_calls_overlap(_) ->
    %% serially this would take at least 2000 ms
    Sleep = fun() -> event(<<"sleep_async">>, <<"{\"ms\":1000}">>) end,
    {Ms, Results} = elapsed_ms(fun() -> par([Sleep, Sleep]) end),
    ct:pal("two 1000 ms async calls on one worker took ~b ms", [Ms]),
    [{ok, {reply, ok, _, _}}, {ok, {reply, ok, _, _}}] = Results,
    ?assert(Ms < 1800).

sync_calls_overlap_on_two_workers(_) ->
    %% a sync handler blocks its worker's loop: serially at least 2000 ms
    Sleep = fun() -> event(<<"sleep_sync">>, <<"{\"ms\":1000}">>) end,
    {Ms, Results} = elapsed_ms(fun() -> par([Sleep, Sleep]) end),
    ct:pal("two 1000 ms sync calls on two workers took ~b ms", [Ms]),
    [{ok, {reply, ok, _, _}}, {ok, {reply, ok, _, _}}] = Results,
    ?assert(Ms < 1800).

os_exit_then_restart(_) ->
    Before = os_pid(),
    ?assertEqual({error, worker_crashed}, event(<<"exit">>)),
    %% queued until the replacement has run init
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)),
    ?assertNotEqual(Before, os_pid()),
    [#{restarts := 1, status := ready}] = hornbeam_python:workers().

%% A worker killed while we write to it can end its port with epipe and no
%% exit_status (the soak found it): that too must replace the worker, or it
%% stays dead and its calls hang.
a_port_closed_without_exit_status_is_a_worker_exit(_) ->
    Before = os_pid(),
    Worker = whereis(hornbeam_py_worker:name(1)),
    {links, Links} = process_info(Worker, links),
    [Port] = [P || P <- Links, is_port(P)],
    true = exit(Port, epipe),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)),
    ?assertNotEqual(Before, os_pid()),
    [#{restarts := 1, status := ready}] = hornbeam_python:workers(),
    %% the old OS process is gone too
    ?assertEqual("", os:cmd("kill -0 " ++ integer_to_list(Before) ++ " 2>/dev/null && echo alive")).

all_in_flight_fail_together(_) ->
    Slow = fun() -> event(<<"sleep_async">>, <<"{\"ms\":5000}">>) end,
    Exit = fun() -> timer:sleep(200), event(<<"exit">>) end,
    {Ms, Results} = elapsed_ms(fun() -> par([Slow, Slow, Exit]) end),
    ?assertEqual([{error, worker_crashed}, {error, worker_crashed}, {error, worker_crashed}],
                 Results),
    ?assert(Ms < 2000).

timeout_replaces_worker(_) ->
    Before = os_pid(),
    Slow = fun() -> event(<<"sleep_async">>, <<"{\"ms\":5000}">>) end,
    Spin = fun() ->
                   timer:sleep(200),
                   hornbeam_python:call(event, event_args(<<"spin">>, <<"{}">>, <<"{}">>), 300)
           end,
    {Ms, Results} = elapsed_ms(fun() -> par([Slow, Spin]) end),
    ?assertEqual([{error, worker_crashed}, {error, timeout}], Results),
    ?assert(Ms < 2000),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)),
    After = os_pid(),
    ?assertNotEqual(Before, After),
    %% the spinning process is gone
    ?assertEqual([], os:cmd("kill -0 " ++ integer_to_list(Before) ++ " 2>/dev/null && echo alive")).

import_error(_) ->
    Opts = maps:merge(base_opts(), #{channel_modules => [<<"fx_room">>, <<"fx_broken">>]}),
    {error, {python_import, <<"fx_broken">>, Message, Trace}} = hornbeam_python_sup:start_link(Opts),
    ?assertEqual(<<"ModuleNotFoundError: No module named 'does_not_exist_xyz'">>, Message),
    ?assertMatch({match, _}, re:run(Trace, "fx_broken.py")),
    ?assertEqual(undefined, whereis(hornbeam_python_sup)),
    ?assertEqual({error, not_started}, event(<<"reply">>)).

missing_binary(_) ->
    Path = "/nonexistent/hornbeam_worker",
    ?assertEqual({error, {worker_binary_missing, Path, "run `make build`"}},
                 hornbeam_python_sup:start_link(maps:merge(base_opts(), #{worker_path => Path}))).

%% Not a pass/fail benchmark: logs calls/s through the pool.
throughput(_) ->
    N = 4000,
    Args = event_args(<<"none">>, <<"{\"a\":1}">>, <<"{\"n\":1}">>),
    One = fun() -> {ok, {noreply, _}} = hornbeam_python:call(event, Args) end,
    _ = [One() || _ <- lists:seq(1, 200)],                       % warm up
    {SeqMs, _} = elapsed_ms(fun() -> [One() || _ <- lists:seq(1, N)] end),
    Callers = 16,
    {ParMs, _} = elapsed_ms(fun() ->
                                    par([fun() -> [One() || _ <- lists:seq(1, N div Callers)] end
                                         || _ <- lists:seq(1, Callers)])
                            end),
    Seq = N * 1000 div max(SeqMs, 1),
    Par = N * 1000 div max(ParMs, 1),
    ct:pal("sequential: ~b calls in ~b ms (~b calls/s, ~b us/call round trip); "
           "~b concurrent callers over 2 workers: ~b calls/s", [N, SeqMs, Seq, SeqMs * 1000 div N, Callers, Par]),
    ?assert(Seq > 100).

%% ---------------------------------------------------------------------------
%% the handler thread pool
%% ---------------------------------------------------------------------------

reply_json(Event) ->
    {ok, {reply, ok, Json, _}} = event(Event),
    {ok, Map} = hornbeam_nif:json_decode(Json),
    Map.

sync_handlers_run_on_a_pool_thread_off_the_loop(_) ->
    #{<<"thread">> := Thread, <<"loop_running">> := Running} = reply_json(<<"where">>),
    ?assertMatch(<<"hornbeam-handler-", _/binary>>, Thread),
    ?assertEqual(false, Running),
    #{<<"thread">> := LoopThread, <<"loop_running">> := true} = reply_json(<<"where_async">>),
    ?assertNotMatch(<<"hornbeam-handler-", _/binary>>, LoopThread).

sync_handlers_overlap_on_one_worker(_) ->
    %% workers => 1: before the thread pool this took 2000 ms or more
    Sleep = fun() -> event(<<"sleep_sync">>, <<"{\"ms\":1000}">>) end,
    {Ms, Results} = elapsed_ms(fun() -> par([Sleep, Sleep]) end),
    ct:pal("two 1000 ms sync calls on one worker took ~b ms", [Ms]),
    [{ok, {reply, ok, _, _}}, {ok, {reply, ok, _, _}}] = Results,
    ?assert(Ms < 1900).

a_sleeping_sync_handler_does_not_delay_another_call_with_one_worker(_) ->
    Parent = self(),
    _ = spawn_link(fun() -> Parent ! {slow, event(<<"sleep_sync">>, <<"{\"ms\":1500}">>)} end),
    timer:sleep(100),
    {Ms, Fast} = elapsed_ms(fun() -> event(<<"reply">>) end),
    ct:pal("a call next to a 1500 ms sync handler took ~b ms", [Ms]),
    ?assertMatch({ok, {reply, ok, _, _}}, Fast),
    %% answered while the sleeper still sleeps
    receive {slow, _} -> ct:fail(slow_call_finished_first) after 0 -> ok end,
    receive {slow, Slow} -> ?assertMatch({ok, {reply, ok, _, _}}, Slow)
    after 10000 -> ct:fail(slow_call_lost)
    end.

blocking_forms_refuse_to_run_on_the_loop(_) ->
    Errors = reply_json(<<"blocking_forms_in_async">>),
    ?assertEqual([<<"call">>, <<"presence_list">>, <<"presence_track">>],
                 lists:sort(maps:keys(Errors))),
    #{<<"call">> := CallError} = Errors,
    ?assertNotEqual(nomatch, binary:match(CallError, <<"await call_async('echo', ...)">>)),
    %% the worker still answers (nothing blocked the loop)
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"async_reply">>)).

a_full_queue_answers_overloaded_at_once(_) ->
    %% threads => 1, max_queued_calls => 1: one runs, one waits, the rest
    %% are refused at once
    Parent = self(),
    [spawn_link(fun() -> Parent ! {slow, event(<<"sleep_sync">>, <<"{\"ms\":800}">>)} end)
     || _ <- [1, 2]],
    timer:sleep(300),
    {Ms, Refused} = elapsed_ms(fun() -> event(<<"reply">>) end),
    ?assertEqual({error, overloaded}, Refused),
    ?assert(Ms < 700),
    [#{waiting_for_thread := 1}] = hornbeam_python:workers(),
    [receive {slow, R} -> ?assertMatch({ok, {reply, ok, _, _}}, R) after 10000 -> ct:fail(lost) end
     || _ <- [1, 2]],
    %% the worker was never replaced, and takes calls again
    [#{restarts := 0, waiting_for_thread := 0}] = hornbeam_python:workers(),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)).

time_waiting_for_a_thread_does_not_count_toward_the_timeout(_) ->
    %% threads => 1, timeout => 1500: three 700 ms calls run one after the
    %% other; the last finishes ~2100 ms after it was sent, which is fine
    %% because it ran for 700 ms only
    Before = os_pid(),
    Sleep = fun() -> event(<<"sleep_sync">>, <<"{\"ms\":700}">>) end,
    {Ms, Results} = elapsed_ms(fun() -> par([Sleep, Sleep, Sleep]) end),
    ct:pal("three 700 ms calls on one thread took ~b ms", [Ms]),
    ?assertEqual(3, length([ok || {ok, {reply, ok, _, _}} <- Results])),
    ?assert(Ms >= 2000),
    ?assertEqual(Before, os_pid()),
    [#{restarts := 0}] = hornbeam_python:workers().

a_waiting_call_is_timed_once_it_runs(_) ->
    %% threads => 1: a spinning call that had to wait is still timed out
    %% (from when it started), and its worker replaced
    Before = os_pid(),
    Slow = fun() -> event(<<"sleep_sync">>, <<"{\"ms\":500}">>) end,
    Spin = fun() ->
                   timer:sleep(100),
                   hornbeam_python:call(event, event_args(<<"spin">>, <<"{}">>, <<"{}">>), 700)
           end,
    {Ms, Results} = elapsed_ms(fun() -> par([Slow, Spin]) end),
    ct:pal("a 700 ms timeout after 400 ms of waiting fired after ~b ms", [Ms]),
    ?assertMatch([{ok, {reply, ok, _, _}}, {error, timeout}], Results),
    ?assert(Ms >= 1100),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)),
    ?assertNotEqual(Before, os_pid()).

bad_pool_options_are_refused(_) ->
    [?assertEqual({error, {bad_option, Name, Value}},
                  hornbeam_python_sup:start_link(maps:merge(base_opts(), #{Name => Value})))
     || {Name, Value} <- [{threads, 0}, {threads, many}, {max_queued_calls, -1},
                          {workers, 0}]],
    ?assertEqual(undefined, whereis(hornbeam_python_sup)).

a_held_reply_is_not_kept_back_by_a_blocking_job_after_it(_) ->
    %% threads => 1: while a first call sleeps, a quick one and a 1500 ms one
    %% queue up; the thread then runs them as a burst, holding the quick
    %% one's result, and blocks in the slow one: the held result still goes
    %% out (the worker writes frames held over 1 ms itself)
    Parent = self(),
    Run = fun(Tag, Event, Payload) ->
                  spawn_link(fun() -> Parent ! {Tag, event(Event, Payload)} end)
          end,
    Run(first, <<"sleep_sync">>, <<"{\"ms\":300}">>),
    timer:sleep(100),
    Run(quick, <<"reply">>, <<"{}">>),
    timer:sleep(20),
    Run(slow, <<"sleep_sync">>, <<"{\"ms\":1500}">>),
    receive {first, F} -> ?assertMatch({ok, {reply, ok, _, _}}, F) after 10000 -> ct:fail(lost_first) end,
    receive {quick, Q} -> ?assertMatch({ok, {reply, ok, _, _}}, Q) after 10000 -> ct:fail(lost_quick) end,
    %% the quick reply came while the slow call still runs
    receive {slow, _} -> ct:fail(quick_reply_waited_for_the_slow_call) after 0 -> ok end,
    receive {slow, S} -> ?assertMatch({ok, {reply, ok, _, _}}, S) after 10000 -> ct:fail(lost_slow) end.

an_undecodable_result_answers_its_call_at_once(_) ->
    %% a result frame with an atom this VM does not know: the call gets a
    %% crash at once (not a timeout that kills the worker), and it is logged
    capture_logs(),
    Suffix = integer_to_binary(erlang:unique_integer([positive])),
    Before = os_pid(),
    {Ms, Result} = elapsed_ms(fun() ->
                                      event(<<"unknown_atom_result">>,
                                            <<"{\"suffix\":\"", Suffix/binary, "\"}">>)
                              end),
    ?assertEqual({ok, {crash, <<"the worker sent an undecodable result (see the log)">>}}, Result),
    ?assert(Ms < 5000),
    _ = await_log(<<"undecodable result frame for call">>),
    ?assertEqual(Before, os_pid()),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)).

a_bundle_with_an_undecodable_frame_still_delivers_the_others(_) ->
    %% the worker writes a round's frames as one packet (bundle.rs); each
    %% frame of it is decoded on its own, so a bad one in the middle answers
    %% its call and the frames around it still arrive
    capture_logs(),
    Suffix = integer_to_binary(erlang:unique_integer([positive])),
    Before = os_pid(),
    Result = event(<<"bad_frame_in_a_bundle">>, <<"{\"suffix\":\"", Suffix/binary, "\"}">>),
    ?assertEqual({ok, {crash, <<"the worker sent an undecodable result (see the log)">>}}, Result),
    _ = await_log(<<"bundle-before-", Suffix/binary>>),
    _ = await_log(<<"bundle-after-", Suffix/binary>>),
    ?assertEqual(Before, os_pid()),
    ?assertMatch({ok, {reply, ok, _, _}}, event(<<"reply">>)).
