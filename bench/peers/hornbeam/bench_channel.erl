%% The benchmark's application logic as an Erlang channel ("hornbeam-erlang").
%% The same logic as every peer in bench/peers:
%%
%%   join "room:*"               -> ok; the reply says whether presence is available
%%   "ping" / "new_msg"           -> reply with the payload
%%   "publish"                    -> broadcast "msg" with the payload to the topic, reply ok
%%   join payload {"presence_key": K} -> track K on the topic with
%%                                   hornbeam_presence (Phoenix semantics:
%%                                   presence_state to the joiner, presence_diff
%%                                   to the topic)
%%
%% Payloads are forwarded as raw JSON (payload_format/0 = raw): Erlang never
%% decodes what it only passes on.
-module(bench_channel).
-behaviour(hornbeam_channel).

-export([join/3, handle_in/3, payload_format/0, presence_available/0]).

payload_format() -> raw.

join(Topic, {json, Raw}, Socket) ->
    case presence_key(Raw) of
        undefined ->
            {ok, #{<<"presence">> => presence_available()}, Socket};
        Key ->
            case presence_available() of
                true ->
                    %% The channel process owns the presence; the socket sends
                    %% presence_state after the join reply, diffs follow.
                    Meta = #{<<"online_at">> => erlang:system_time(millisecond)},
                    case hornbeam_presence:track(self(), Topic, Key, Meta) of
                        ok ->
                            {ok, #{<<"presence">> => true}, Socket};
                        {error, presence_not_started} ->
                            %% Built but not wired into the application yet.
                            {ok, #{<<"presence">> => false}, Socket}
                    end;
                false ->
                    {ok, #{<<"presence">> => false}, Socket}
            end
    end.

handle_in(<<"ping">>, Payload, Socket) ->
    {reply, {ok, Payload}, Socket};
handle_in(<<"new_msg">>, Payload, Socket) ->
    {reply, {ok, Payload}, Socket};
handle_in(<<"publish">>, Payload, Socket) ->
    ok = hornbeam_channel:broadcast(Socket, <<"msg">>, Payload),
    {reply, ok, Socket};
handle_in(_Event, _Payload, Socket) ->
    {reply, {error, #{<<"reason">> => <<"unknown event">>}}, Socket}.

%% Looked up once per node: a code path search on every join would cost more
%% than the join itself.
presence_available() ->
    case persistent_term:get({?MODULE, presence}, undefined) of
        undefined ->
            _ = code:ensure_loaded(hornbeam_presence),
            Available = erlang:function_exported(hornbeam_presence, track, 4),
            persistent_term:put({?MODULE, presence}, Available),
            Available;
        Available ->
            Available
    end.

%% The presence key of a join payload, read without a full decode when absent.
presence_key(Raw) ->
    case binary:match(Raw, <<"presence_key">>) of
        nomatch -> undefined;
        _ ->
            case hornbeam_nif:json_decode(Raw) of
                {ok, #{<<"presence_key">> := Key}} when is_binary(Key) -> Key;
                _ -> undefined
            end
    end.
