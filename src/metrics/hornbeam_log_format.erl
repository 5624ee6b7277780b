%% @doc One log line per event, with its metadata: the `log_format' option.
%%
%% <ul>
%% <li>`text': OTP's `logger_formatter' on one line, then the metadata that
%%     says where the event happened: `node=', `conn_id=' (the socket id),
%%     `topic=', `handler=' (channel pattern or module), `worker=' (Python
%%     worker).</li>
%% <li>`json': this module is the default handler's formatter and writes one
%%     JSON object per line: `time' (RFC 3339), `level', `msg' (the message
%%     on one line), `node', `pid', `mfa' and every other scalar metadata
%%     value (`conn_id', `topic', `handler', `worker', ...).</li>
%% </ul>
%% `hornbeam:start/2' installs the format only when `log_format' is given
%% (an application embedding hornbeam keeps its own logger otherwise); the
%% CLI always gives it (`--log-format', default text). The JSON encoder is
%% a small one here, not the NIF's: a formatter must not fail, whatever the
%% message holds (invalid UTF-8 is written as U+FFFD).
-module(hornbeam_log_format).

-export([check/1, setup/1, install/1, format/2, check_config/1, json_line/1]).

%% Metadata keys the text format appends, in this order.
-define(TEXT_META, [node, conn_id, topic, handler, worker]).

%% @doc Check `log_format' and `traceback_log_limit' in the start options.
-spec check(map()) -> ok | {error, {bad_option, atom(), term()}}.
check(Opts) ->
    case {maps:get(log_format, Opts, undefined), maps:get(traceback_log_limit, Opts, undefined)} of
        {F, _} when F =/= undefined, F =/= text, F =/= json ->
            {error, {bad_option, log_format, F}};
        {_, L} when L =/= undefined, not (is_integer(L) andalso L >= 0) ->
            {error, {bad_option, traceback_log_limit, L}};
        _ ->
            ok
    end.

%% @doc Apply `log_format' and `traceback_log_limit' (checked options).
-spec setup(map()) -> ok.
setup(Opts) ->
    ok = hornbeam_log_limiter:set_limit(maps:get(traceback_log_limit, Opts,
                                                 hornbeam_log_limiter:default_limit())),
    install(maps:get(log_format, Opts, undefined)).

%% @doc Make `text' or `json' the default handler's format.
-spec install(text | json | undefined) -> ok.
install(undefined) ->
    ok;
install(Format) ->
    %% every event carries the node it happened on (set after distribution started)
    Primary = maps:get(metadata, logger:get_primary_config(), #{}),
    ok = logger:set_primary_config(metadata, Primary#{node => node()}),
    install_formatter(Format).

install_formatter(Format) ->
    _ = logger:set_handler_config(default, formatter, {?MODULE, #{format => Format}}),
    ok.

%% @doc The `logger' formatter callback (config `#{format => text | json}').
-spec format(logger:log_event(), logger:formatter_config()) -> unicode:chardata().
format(Event = #{meta := Meta}, #{format := text}) ->
    Head = logger_formatter:format(Event, #{single_line => true,
                                            template => [time, " ", level, ": ", msg]}),
    [Head, [[" ", atom_to_list(K), "=", text_value(V)] || K <- ?TEXT_META,
                                                         V <- [maps:get(K, Meta, undefined)],
                                                         V =/= undefined],
     "\n"];
format(Event = #{level := Level, meta := Meta}, _Config) ->
    Msg = try logger_formatter:format(Event#{meta := #{}},
                                       #{single_line => true, template => [msg]})
          catch _:_ -> io_lib:format("~0p", [maps:get(msg, Event)])
          end,
    Time = calendar:system_time_to_rfc3339(maps:get(time, Meta, logger:timestamp()),
                                           [{unit, microsecond}, {offset, "Z"}]),
    Fields = [{time, Time}, {level, Level}, {msg, Msg}, {node, node()}]
             ++ [{K, V} || {K, V} <- lists:sort(maps:to_list(Meta)),
                           not lists:member(K, [time, gl, report_cb, error_logger, domain, node]),
                           scalar(V)],
    [json_line(Fields), $\n];
format(Event, Config) ->
    logger_formatter:format(Event, Config).

-spec check_config(term()) -> ok.
check_config(_) -> ok.

%% @doc A JSON object of `[{Key, Value}]' (values: strings as chardata,
%% atoms, numbers, pids, `{M, F, A}'), without a newline.
-spec json_line([{atom(), term()}]) -> binary().
json_line(Fields) ->
    Pairs = [[string(atom_to_binary(K)), $:, value(V)] || {K, V} <- Fields],
    iolist_to_binary([${, lists:join($,, Pairs), $}]).

%% --- internals ------------------------------------------------------------------

text_value(V) when is_binary(V) -> V;
text_value(V) when is_atom(V) -> atom_to_list(V);
text_value(V) when is_integer(V) -> integer_to_list(V);
text_value(V) -> io_lib:format("~0tp", [V]).

scalar(V) -> is_atom(V) orelse is_number(V) orelse is_binary(V) orelse is_pid(V)
                 orelse is_mfa(V) orelse io_lib:printable_unicode_list(V).

is_mfa({M, F, A}) -> is_atom(M) andalso is_atom(F) andalso is_integer(A);
is_mfa(_) -> false.

value(true) -> <<"true">>;
value(false) -> <<"false">>;
value(V) when is_atom(V) -> string(atom_to_binary(V));
value(V) when is_integer(V) -> integer_to_binary(V);
value(V) when is_float(V) -> float_to_binary(V, [short]);
value(V) when is_pid(V) -> string(list_to_binary(pid_to_list(V)));
value({M, F, A}) -> string(iolist_to_binary(io_lib:format("~s:~s/~b", [M, F, A])));
value(V) -> string(V).

string(Chars) ->
    Bin = case unicode:characters_to_binary(Chars) of
              B when is_binary(B) -> B;
              {_, Good, Rest} -> <<Good/binary, (replace_invalid(Rest))/binary>>
          end,
    [$", escape(Bin, <<>>), $"].

%% The rest of a binary that is not valid UTF-8: U+FFFD for each bad byte.
replace_invalid(<<>>) -> <<>>;
replace_invalid(<<_, Rest/binary>>) ->
    case unicode:characters_to_binary(Rest) of
        B when is_binary(B) -> <<"\x{FFFD}"/utf8, B/binary>>;
        {_, Good, Rest1} -> <<"\x{FFFD}"/utf8, Good/binary, (replace_invalid(Rest1))/binary>>
    end.

escape(<<>>, Acc) -> Acc;
escape(<<$", R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\\"">>);
escape(<<$\\, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\\\">>);
escape(<<$\n, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\n">>);
escape(<<$\r, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\r">>);
escape(<<$\t, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\t">>);
escape(<<C, R/binary>>, Acc) when C < 16#20 ->
    escape(R, <<Acc/binary, (iolist_to_binary(io_lib:format("\\u~4.16.0b", [C])))/binary>>);
escape(<<C, R/binary>>, Acc) -> escape(R, <<Acc/binary, C>>).
