%% @doc permessage-deflate negotiation (RFC 7692 §5, §7.1), as pure functions.
%%
%% `negotiate/2' reads the client's `Sec-WebSocket-Extensions' offers in
%% order and accepts the first `permessage-deflate' offer it can honour,
%% giving the agreed parameters and the response header value; `none' when
%% nothing was offered or every offer was declined (the connection then runs
%% uncompressed, and a frame with RSV1 is a protocol error, 1002).
%%
%% An offer is declined (§5.1, §7.1) when it carries an unknown parameter, a
%% parameter twice, or a bad value (window bits outside 8-15; a value on a
%% `*_no_context_takeover'); and when it asks `server_max_window_bits=8',
%% since zlib cannot deflate raw streams with a 256-byte window.
%%
%% What the server says beyond what was asked, as §7.1 allows:
%% `server_no_context_takeover' when `server_context_takeover' is false;
%% `client_no_context_takeover' when `client_context_takeover' is false
%% (the client must then compress each message on its own, so no inflate
%% context is kept between messages); `server_max_window_bits' when
%% `window_bits' is under 15; `client_max_window_bits' only when the client
%% offered it (without it the client may not be limited).
-module(hornbeam_ws_deflate).

-export([negotiate/2, parse_offers/1]).

-type opts() :: #{window_bits := 9..15,
                  server_context_takeover := boolean(),
                  client_context_takeover := boolean()}.
-type agreed() :: #{server_window_bits := 9..15,
                    client_window_bits := 9..15,      %% what our inflater needs
                    server_no_context_takeover := boolean(),
                    client_no_context_takeover := boolean()}.
-type param() :: {binary(), binary() | true}.
-export_type([opts/0, agreed/0]).

%% @doc The first acceptable offer: the agreed parameters and the value of
%% the `Sec-WebSocket-Extensions' response header.
-spec negotiate(hornbeam_http_req:req() | map(), opts()) -> {ok, agreed(), binary()} | none.
negotiate(Req, Opts) ->
    Values = hornbeam_http_req:headers(<<"sec-websocket-extensions">>, Req),
    first_accepted([Params || {<<"permessage-deflate">>, Params} <- parse_offers(Values)], Opts).

first_accepted([], _Opts) ->
    none;
first_accepted([Params | Rest], Opts) ->
    case accept(Params, Opts) of
        {ok, _, _} = Ok -> Ok;
        decline -> first_accepted(Rest, Opts)
    end.

accept(Params, Opts) ->
    Names = [N || {N, _} <- Params],
    case length(lists:usort(Names)) =:= length(Names) andalso lists:all(fun valid/1, Params) of
        false -> decline;
        true -> accept_valid(maps:from_list(Params), Opts)
    end.

valid({<<"server_no_context_takeover">>, true}) -> true;
valid({<<"client_no_context_takeover">>, true}) -> true;
valid({<<"server_max_window_bits">>, V}) -> window_bits(V) =/= error;
valid({<<"client_max_window_bits">>, true}) -> true;
valid({<<"client_max_window_bits">>, V}) -> window_bits(V) =/= error;
valid(_) -> false.

window_bits(true) -> error;
window_bits(V) ->
    case string:to_integer(V) of
        {N, <<>>} when N >= 8, N =< 15 -> N;
        _ -> error
    end.

accept_valid(Offer, #{window_bits := Bits, server_context_takeover := ServerTakeover,
                      client_context_takeover := ClientTakeover}) ->
    ServerBits = case Offer of
                     #{<<"server_max_window_bits">> := V} -> min(window_bits(V), Bits);
                     _ -> Bits
                 end,
    case ServerBits < 9 of
        true ->
            decline;
        false ->
            ServerNoTakeover = maps:is_key(<<"server_no_context_takeover">>, Offer) orelse not ServerTakeover,
            ClientNoTakeover = maps:is_key(<<"client_no_context_takeover">>, Offer) orelse not ClientTakeover,
            {ClientBits, ClientParam} =
                case Offer of
                    #{<<"client_max_window_bits">> := true} when Bits < 15 -> {Bits, [{client_max_window_bits, Bits}]};
                    #{<<"client_max_window_bits">> := true} -> {15, []};
                    #{<<"client_max_window_bits">> := V2} ->
                        B = min(window_bits(V2), Bits),
                        {max(9, B), [{client_max_window_bits, B}]};
                    _ -> {15, []}
                end,
            ServerParam = case maps:is_key(<<"server_max_window_bits">>, Offer) orelse ServerBits < 15 of
                              true -> [{server_max_window_bits, ServerBits}];
                              false -> []
                          end,
            Response = [<<"permessage-deflate">>]
                ++ [<<"server_no_context_takeover">> || ServerNoTakeover]
                ++ [<<"client_no_context_takeover">> || ClientNoTakeover]
                ++ [<<(atom_to_binary(K))/binary, "=", (integer_to_binary(N))/binary>>
                    || {K, N} <- ServerParam ++ ClientParam],
            {ok, #{server_window_bits => ServerBits, client_window_bits => ClientBits,
                   server_no_context_takeover => ServerNoTakeover,
                   client_no_context_takeover => ClientNoTakeover},
             iolist_to_binary(lists:join(<<"; ">>, Response))}
    end.

%% @doc `Sec-WebSocket-Extensions' values as `[{Name, [{Param, Value | true}]}]'
%% (names and parameter names lowercased, quoted values unquoted), in order.
%% A malformed element is dropped (it cannot be an offer we accept).
-spec parse_offers([binary()]) -> [{binary(), [param()]}].
parse_offers(Values) ->
    [Offer || V <- Values, Element <- split_outside_quotes(V, $,),
              {ok, Offer} <- [parse_element(Element)]].

parse_element(Element) ->
    case [hornbeam_http_req:trim(P) || P <- split_outside_quotes(Element, $;)] of
        [Name | Params] when Name =/= <<>> ->
            try {ok, {hornbeam_http_req:lowercase(Name), [param(P) || P <- Params]}}
            catch throw:bad_param -> error
            end;
        _ ->
            error
    end.

param(P) ->
    case binary:split(P, <<"=">>) of
        [<<>>] -> throw(bad_param);
        [Name] -> {hornbeam_http_req:lowercase(Name), true};
        [Name, Value] ->
            {hornbeam_http_req:lowercase(hornbeam_http_req:trim(Name)),
             unquote(hornbeam_http_req:trim(Value))}
    end.

unquote(<<"\"", Rest/binary>>) when byte_size(Rest) >= 1 ->
    case binary:last(Rest) of
        $" -> binary:part(Rest, 0, byte_size(Rest) - 1);
        _ -> throw(bad_param)
    end;
unquote(<<>>) -> throw(bad_param);
unquote(V) -> V.

split_outside_quotes(Bin, Sep) ->
    split_outside_quotes(Bin, Sep, false, <<>>, []).

split_outside_quotes(<<>>, _Sep, _InQuote, Cur, Acc) ->
    lists:reverse([Cur | Acc]);
split_outside_quotes(<<$", Rest/binary>>, Sep, InQuote, Cur, Acc) ->
    split_outside_quotes(Rest, Sep, not InQuote, <<Cur/binary, $">>, Acc);
split_outside_quotes(<<Sep, Rest/binary>>, Sep, false, Cur, Acc) ->
    split_outside_quotes(Rest, Sep, false, <<>>, [Cur | Acc]);
split_outside_quotes(<<C, Rest/binary>>, Sep, InQuote, Cur, Acc) ->
    split_outside_quotes(Rest, Sep, InQuote, <<Cur/binary, C>>, Acc).
