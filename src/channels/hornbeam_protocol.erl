%% @doc The two wire dialects a client may speak. Phoenix V2 (`phx_join',
%% `phx_reply', heartbeat on topic `phoenix') is the default; clients of the
%% older hornbeam dialect (`hb_join', `hb_reply', heartbeat on `hornbeam') get
%% their answers in their own words. Everything else is identical.
-module(hornbeam_protocol).

-export([classify/2, event/2, reply_frame/5, close_frame/3, error_frame/4]).

-type dialect() :: phoenix | hornbeam.
-type control() :: join | leave | heartbeat | {event, binary()}.
-export_type([dialect/0, control/0]).

%% @doc What an incoming (topic, event) asks for, and in which dialect.
-spec classify(binary(), binary()) -> {control(), dialect()}.
classify(<<"phoenix">>, <<"heartbeat">>) -> {heartbeat, phoenix};
classify(<<"hornbeam">>, <<"heartbeat">>) -> {heartbeat, hornbeam};
classify(_Topic, <<"phx_join">>) -> {join, phoenix};
classify(_Topic, <<"hb_join">>) -> {join, hornbeam};
classify(_Topic, <<"phx_leave">>) -> {leave, phoenix};
classify(_Topic, <<"hb_leave">>) -> {leave, hornbeam};
classify(_Topic, Event) -> {{event, Event}, phoenix}.

%% @doc The reserved event name for Kind in Dialect.
-spec event(reply | close | error, dialect()) -> binary().
event(reply, phoenix) -> <<"phx_reply">>;
event(close, phoenix) -> <<"phx_close">>;
event(error, phoenix) -> <<"phx_error">>;
event(reply, hornbeam) -> <<"hb_reply">>;
event(close, hornbeam) -> <<"hb_close">>;
event(error, hornbeam) -> <<"hb_error">>.

%% @doc A reply frame `[join_ref, ref, topic, "phx_reply", {"status", "response"}]'.
-spec reply_frame(dialect(), hornbeam_nif:msg_ref(), hornbeam_nif:msg_ref(), binary(),
                  {ok | error, iodata()}) -> binary().
reply_frame(Dialect, JoinRef, Ref, Topic, {Status, ResponseJson}) ->
    Payload = [<<"{\"status\":\"">>, atom_to_binary(Status), <<"\",\"response\":">>,
               ResponseJson, $}],
    hornbeam_nif:msg_encode_frame(JoinRef, Ref, Topic, event(reply, Dialect), Payload).

%% @doc `phx_close' for the channel joined with JoinRef (ref = join_ref, as Phoenix).
-spec close_frame(dialect(), hornbeam_nif:msg_ref(), binary()) -> binary().
close_frame(Dialect, JoinRef, Topic) ->
    hornbeam_nif:msg_encode_frame(JoinRef, JoinRef, Topic, event(close, Dialect), <<"{}">>).

-spec error_frame(dialect(), hornbeam_nif:msg_ref(), binary(), iodata()) -> binary().
error_frame(Dialect, JoinRef, Topic, PayloadJson) ->
    hornbeam_nif:msg_encode_frame(JoinRef, JoinRef, Topic, event(error, Dialect), PayloadJson).
