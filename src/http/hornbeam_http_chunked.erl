%% @doc Incremental decoder of a chunked request body (RFC 9112 §7.1), pure.
%%
%% ```
%% St0 = hornbeam_http_chunked:new(MaxBody, MaxLine, MaxTrailers),
%% case hornbeam_http_chunked:decode(Buffer, St0) of
%%     {more, Unused, St1}   -> %% read more, then decode(<<Unused/binary, More/binary>>, St1)
%%     {done, Body, Rest}    -> %% Rest: bytes after the body (a pipelined request)
%%     {error, Reason}       -> ...
%% end.
%% '''
%% Chunk extensions are ignored; trailer fields are read, checked against the
%% line and count limits, and dropped. A size line, extensions included, is
%% at most MaxLine bytes, and so is each trailer line: what the decoder holds
%% besides the body is one line.
%%
%% The body is gathered in one binary that grows by appending (the runtime
%% doubles its capacity), never as a list of pieces: a body of one-byte
%% chunks would otherwise cost a list cell and a sub-binary per byte (tens of
%% bytes each) and keep every received buffer alive. So a body costs at most
%% about twice MaxBody, however it is chunked. Errors: `too_large' (body over
%% MaxBody), `bad_chunk' (malformed size line or missing CRLF after data),
%% `line_too_long' (a size line over MaxLine), `trailer_too_long' and
%% `too_many_trailers'.
-module(hornbeam_http_chunked).

-export([new/3, decode/2]).

-record(chunked, {
    phase = size :: size | {data, non_neg_integer()} | data_end | trailers,
    acc = <<>> :: binary(),
    len = 0 :: non_neg_integer(),
    trailers = 0 :: non_neg_integer(),
    max_body :: non_neg_integer(),
    max_line :: pos_integer(),
    max_trailers :: pos_integer()
}).
-opaque state() :: #chunked{}.
-type error() :: too_large | bad_chunk | line_too_long | trailer_too_long | too_many_trailers.
-export_type([state/0, error/0]).

-spec new(non_neg_integer(), pos_integer(), pos_integer()) -> state().
new(MaxBody, MaxLine, MaxTrailers) ->
    #chunked{max_body = MaxBody, max_line = MaxLine, max_trailers = MaxTrailers}.

-spec decode(binary(), state()) ->
    {more, binary(), state()} | {done, binary(), binary()} | {error, error()}.
decode(Bin, St = #chunked{phase = size, max_line = MaxLine}) ->
    case line(Bin, MaxLine) of
        more -> {more, Bin, St};
        too_long -> {error, line_too_long};
        {Line, Rest} ->
            [SizePart | _] = binary:split(Line, <<";">>),
            case chunk_size(hornbeam_http_req:trim(SizePart)) of
                error -> {error, bad_chunk};
                0 -> decode(Rest, St#chunked{phase = trailers});
                N when St#chunked.len + N > St#chunked.max_body -> {error, too_large};
                N -> decode(Rest, St#chunked{phase = {data, N}, len = St#chunked.len + N})
            end
    end;
decode(Bin, St = #chunked{phase = {data, N}, acc = Acc}) ->
    case Bin of
        <<Data:N/binary, Rest/binary>> ->
            decode(Rest, St#chunked{phase = data_end, acc = <<Acc/binary, Data/binary>>});
        <<>> ->
            {more, <<>>, St};
        _ ->
            {more, <<>>, St#chunked{phase = {data, N - byte_size(Bin)},
                                acc = <<Acc/binary, Bin/binary>>}}
    end;
decode(Bin, St = #chunked{phase = data_end}) ->
    case Bin of
        <<"\r\n", Rest/binary>> -> decode(Rest, St#chunked{phase = size});
        <<"\n", Rest/binary>> -> decode(Rest, St#chunked{phase = size});
        <<"\r">> -> {more, Bin, St};
        <<>> -> {more, Bin, St};
        _ -> {error, bad_chunk}
    end;
decode(Bin, St = #chunked{phase = trailers, max_line = MaxLine, trailers = T}) ->
    case line(Bin, MaxLine) of
        more -> {more, Bin, St};
        too_long -> {error, trailer_too_long};
        {<<>>, Rest} -> {done, St#chunked.acc, Rest};
        {_Trailer, _Rest} when T >= St#chunked.max_trailers -> {error, too_many_trailers};
        {_Trailer, Rest} -> decode(Rest, St#chunked{trailers = T + 1})
    end.

%% A line ended by LF (an optional CR before it is dropped), at most MaxLine
%% bytes without the line end.
line(Bin, MaxLine) ->
    case binary:match(Bin, <<"\n">>) of
        nomatch when byte_size(Bin) > MaxLine + 1 -> too_long;
        nomatch -> more;
        {Pos, 1} when Pos > MaxLine + 1 -> too_long;
        {Pos, 1} ->
            <<Line0:Pos/binary, $\n, Rest/binary>> = Bin,
            Line = case Line0 of
                       <<L:(Pos - 1)/binary, $\r>> -> L;
                       _ -> Line0
                   end,
            case byte_size(Line) > MaxLine of
                true -> too_long;
                false -> {Line, Rest}
            end
    end.

chunk_size(<<>>) -> error;
chunk_size(Hex) when byte_size(Hex) > 15 -> error;
chunk_size(Hex) ->
    case lists:all(fun is_hex/1, binary_to_list(Hex)) of
        true -> binary_to_integer(Hex, 16);
        false -> error
    end.

is_hex(C) -> (C >= $0 andalso C =< $9) orelse (C >= $a andalso C =< $f) orelse (C >= $A andalso C =< $F).
