%% @doc The Rust NIF: WebSocket frame codec, channel message codec, JSON,
%% topic router. All logic lives in `native/hornbeam_core'; this module only
%% declares the functions and loads `priv/hornbeam_nif.so'.
%%
%% Dirty schedulers: `ws_decode/2', `msg_decode/2' and `json_decode/2' run
%% on a dirty CPU scheduler when their input is over 64 KiB (chosen here, in
%% Erlang, by size). Measured with `make bench-nif': a 64 KiB message decodes
%% in about 135 us, so a 1 MiB one (the default max_frame_size) takes about
%% 2 ms, over the 1 ms a NIF should run. Everything smaller, and every
%% encoder (about 8 GB/s for a raw payload), stays on normal schedulers.
%% `ws_deflate/2' (permessage-deflate) goes dirty for frames over 64 KiB too;
%% inflating happens inside `ws_decode/2', bounded by the decoder's
%% max_frame_size.
-module(hornbeam_nif).

-export([ws_decoder_new/1, ws_decode/2, ws_buffered/1, ws_pending/1,
         ws_decoder_new_deflate/3, ws_deflater_new/4, ws_deflate/2, ws_deflater_release/1, ws_deflate_contexts/0,
         nif_ws_deflate/2, nif_ws_deflate_dirty/2,
         nif_ws_decode/2, nif_ws_decode_dirty/2, nif_msg_decode/2, nif_msg_decode_dirty/2,
         ws_encode/2, ws_encode_close/2,
         msg_decode/2, msg_encode/5, msg_encode_frame/5,
         json_decode/1, json_decode/2, json_encode/1,
         nif_json_decode/2, nif_json_decode_dirty/2,
         router_new/2, router_match/2,
         presence_new/2, presence_track/5, presence_update/5, presence_untrack/4,
         presence_untrack_owner/2, presence_extract_delta/1, presence_clock/1,
         presence_heartbeat/3, presence_replica_down/3, presence_permdown/3,
         presence_merge_delta/3, presence_dominates/2,
         presence_state_for/2, presence_merge_state/3, presence_expire/4,
         presence_list/2, presence_get/3, presence_replicas/1]).

-on_load(init/0).

-type ws_decoder() :: reference().
-type ws_deflater() :: reference().
-type router() :: reference().
-type tracker() :: reference().
%% [{Topic, DiffJson}]: DiffJson is a ready `presence_diff' payload.
-type presence_diffs() :: [{binary(), binary()}].
-type replica() :: {binary(), non_neg_integer()}.
-type ws_message() :: {text, binary()} | {binary, binary()} | {ping, binary()} | {pong, binary()}
                    | {close, none | {1000..4999, binary()}}.
-type ws_error() :: unmasked_frame | reserved_bits | unknown_opcode | control_frame_too_long
                  | fragmented_control_frame | frame_too_large | invalid_utf8
                  | unexpected_continuation | expected_continuation | invalid_close_payload
                  | invalid_compressed_data.
-type opcode() :: text | binary | ping | pong.
-type msg_ref() :: null | integer() | binary().
-type json() :: null | true | false | number() | binary() | [json()] | #{binary() => json()}.
-export_type([ws_deflater/0]).
-export_type([tracker/0, presence_diffs/0, replica/0, ws_decoder/0, router/0, ws_message/0, ws_error/0, opcode/0, msg_ref/0, json/0]).

-define(NOT_LOADED, erlang:nif_error({not_loaded, ?MODULE})).
%% Inputs above this size go to a dirty CPU scheduler (see the module doc).
-define(DIRTY_BYTES, 65536).

init() ->
    Path = filename:join(priv_dir(), "hornbeam_nif"),
    case erlang:load_nif(Path, 0) of
        ok -> ok;
        {error, {reload, _}} -> ok;
        {error, Reason} ->
            logger:error("hornbeam: cannot load the NIF from ~ts.so: ~p. "
                         "Build it with `make build` (or `bash scripts/build_native.sh`, "
                         "which needs cargo).", [Path, Reason]),
            {error, Reason}
    end.

%% priv/ next to the ebin/ this module was loaded from; code:priv_dir/1 only
%% as a fallback, since any code path entry named hornbeam-* can shadow it.
priv_dir() ->
    Ebin = filename:dirname(code:which(?MODULE)),
    Local = filename:join(filename:dirname(Ebin), "priv"),
    case filelib:is_regular(filename:join(Local, "hornbeam_nif.so")) of
        true -> Local;
        false ->
            case code:priv_dir(hornbeam) of
                {error, bad_name} -> Local;
                Dir -> Dir
            end
    end.

%% --- WebSocket frames ---------------------------------------------------

%% @doc A new incremental decoder for client frames of at most MaxFrameSize
%% bytes (also the limit for a reassembled message).
-spec ws_decoder_new(pos_integer()) -> ws_decoder().
ws_decoder_new(_MaxFrameSize) -> ?NOT_LOADED.

%% @doc A decoder for a connection that negotiated permessage-deflate: a
%% message with RSV1 is inflated (the client compresses with at most
%% WindowBits, 9-15; with NoContextTakeover the context is dropped after each
%% message), and its inflated size counts against MaxFrameSize (1009).
-spec ws_decoder_new_deflate(pos_integer(), 9..15, boolean()) -> ws_decoder().
ws_decoder_new_deflate(_MaxFrameSize, _WindowBits, _NoContextTakeover) -> ?NOT_LOADED.

%% @doc The outgoing half of permessage-deflate: window bits 9-15, zlib
%% level 0-9, context takeover or not, and the payload size under which a
%% frame goes uncompressed. No zlib context until the first message.
-spec ws_deflater_new(9..15, 0..9, boolean(), non_neg_integer()) -> ws_deflater().
ws_deflater_new(_WindowBits, _Level, _NoContextTakeover, _Threshold) -> ?NOT_LOADED.

%% @doc Frame (one complete server frame, as encoded for any client) with
%% its payload compressed and RSV1 set; control frames and payloads under
%% the threshold come back as they are.
-spec ws_deflate(ws_deflater(), iodata()) -> binary().
ws_deflate(Deflater, Frame) when is_binary(Frame), byte_size(Frame) > ?DIRTY_BYTES ->
    nif_ws_deflate_dirty(Deflater, Frame);
ws_deflate(Deflater, Frame) ->
    nif_ws_deflate(Deflater, Frame).

-spec nif_ws_deflate(ws_deflater(), iodata()) -> binary().
nif_ws_deflate(_Deflater, _Frame) -> ?NOT_LOADED.

-spec nif_ws_deflate_dirty(ws_deflater(), iodata()) -> binary().
nif_ws_deflate_dirty(_Deflater, _Frame) -> ?NOT_LOADED.

%% @doc Drop the deflate context of an idle connection (the next message
%% starts a fresh stream; valid whatever was negotiated).
-spec ws_deflater_release(ws_deflater()) -> ok.
ws_deflater_release(_Deflater) -> ?NOT_LOADED.

%% @doc `{Deflate, Inflate}': zlib contexts allocated now in this VM, over
%% all connections (each deflate context ~262 KiB at 15 window bits, each
%% inflate context ~39 KiB; README "Compression").
-spec ws_deflate_contexts() -> {non_neg_integer(), non_neg_integer()}.
ws_deflate_contexts() -> ?NOT_LOADED.

%% @doc Feed bytes; get every complete message, and the protocol error that
%% stopped decoding, if any (with its RFC 6455 close code).
-spec ws_decode(ws_decoder(), binary()) ->
    {ok, [ws_message()]} | {error, [ws_message()], ws_error(), 1002 | 1007 | 1009}.
ws_decode(Decoder, Bytes) when byte_size(Bytes) > ?DIRTY_BYTES ->
    nif_ws_decode_dirty(Decoder, Bytes);
ws_decode(Decoder, Bytes) ->
    nif_ws_decode(Decoder, Bytes).

-spec nif_ws_decode(ws_decoder(), binary()) ->
    {ok, [ws_message()]} | {error, [ws_message()], ws_error(), 1002 | 1007 | 1009}.
nif_ws_decode(_Decoder, _Bytes) -> ?NOT_LOADED.

-spec nif_ws_decode_dirty(ws_decoder(), binary()) ->
    {ok, [ws_message()]} | {error, [ws_message()], ws_error(), 1002 | 1007 | 1009}.
nif_ws_decode_dirty(_Decoder, _Bytes) -> ?NOT_LOADED.

-spec ws_buffered(ws_decoder()) -> non_neg_integer().
ws_buffered(_Decoder) -> ?NOT_LOADED.

%% @doc What the decoder holds of a message not fully arrived: `nothing',
%% part of one `frame', or open `fragments' (a fragment without FIN came).
-spec ws_pending(ws_decoder()) -> nothing | frame | fragments.
ws_pending(_Decoder) -> ?NOT_LOADED.

%% @doc An unmasked server frame, FIN set.
-spec ws_encode(opcode(), iodata()) -> binary().
ws_encode(_Opcode, _Payload) -> ?NOT_LOADED.

-spec ws_encode_close(1000..4999, iodata()) -> binary().
ws_encode_close(_Code, _Reason) -> ?NOT_LOADED.

%% --- Channel messages ---------------------------------------------------

%% @doc Decode `[join_ref, ref, topic, event, payload]'. The payload stays raw
%% JSON text so it can be forwarded without decoding.
-spec msg_decode(binary(), pos_integer()) ->
    {ok, {msg_ref(), msg_ref(), binary(), binary(), binary()}} | {error, atom(), binary()}.
msg_decode(Bin, MaxDepth) when byte_size(Bin) > ?DIRTY_BYTES ->
    nif_msg_decode_dirty(Bin, MaxDepth);
msg_decode(Bin, MaxDepth) ->
    nif_msg_decode(Bin, MaxDepth).

-spec nif_msg_decode(binary(), pos_integer()) ->
    {ok, {msg_ref(), msg_ref(), binary(), binary(), binary()}} | {error, atom(), binary()}.
nif_msg_decode(_Bin, _MaxDepth) -> ?NOT_LOADED.

-spec nif_msg_decode_dirty(binary(), pos_integer()) ->
    {ok, {msg_ref(), msg_ref(), binary(), binary(), binary()}} | {error, atom(), binary()}.
nif_msg_decode_dirty(_Bin, _MaxDepth) -> ?NOT_LOADED.

%% @doc Encode a message, splicing the raw JSON payload in as it is.
-spec msg_encode(msg_ref(), msg_ref(), iodata(), iodata(), iodata()) -> binary().
msg_encode(_JoinRef, _Ref, _Topic, _Event, _Payload) -> ?NOT_LOADED.

%% @doc `msg_encode/5' wrapped in a WebSocket text frame: the bytes a
%% connection writes as they are (the broadcast fastlane).
-spec msg_encode_frame(msg_ref(), msg_ref(), iodata(), iodata(), iodata()) -> binary().
msg_encode_frame(_JoinRef, _Ref, _Topic, _Event, _Payload) -> ?NOT_LOADED.

%% --- JSON ---------------------------------------------------------------

-define(DEFAULT_JSON_DEPTH, 64).

-spec json_decode(iodata()) -> {ok, json()} | {error, atom(), binary()}.
json_decode(Input) -> json_decode(Input, ?DEFAULT_JSON_DEPTH).

-spec json_decode(iodata(), pos_integer()) -> {ok, json()} | {error, atom(), binary()}.
json_decode(Input, MaxDepth) ->
    case iolist_size(Input) > ?DIRTY_BYTES of
        true -> nif_json_decode_dirty(Input, MaxDepth);
        false -> nif_json_decode(Input, MaxDepth)
    end.

-spec nif_json_decode(iodata(), pos_integer()) -> {ok, json()} | {error, atom(), binary()}.
nif_json_decode(_Input, _MaxDepth) -> ?NOT_LOADED.

-spec nif_json_decode_dirty(iodata(), pos_integer()) -> {ok, json()} | {error, atom(), binary()}.
nif_json_decode_dirty(_Input, _MaxDepth) -> ?NOT_LOADED.

%% @doc Maps with binary, atom or integer keys become objects; lists arrays;
%% binaries strings; atoms other than null/true/false strings.
-spec json_encode(term()) -> {ok, binary()} | {error, {not_json, term()}}.
json_encode(_Term) -> ?NOT_LOADED.

%% --- Topic router -------------------------------------------------------

-spec router_new([binary()], pos_integer()) ->
    {ok, router()} | {error, {atom(), binary(), binary()}}.
router_new(_Patterns, _MaxTopicLength) -> ?NOT_LOADED.

-spec router_match(router(), binary()) ->
    {ok, non_neg_integer(), #{binary() => binary()}} | nomatch | {error, topic_too_long}.
router_match(_Router, _Topic) -> ?NOT_LOADED.

%% --- Presence CRDT (hornbeam_core::presence; one tracker per shard) -----------

-spec presence_new(binary(), non_neg_integer()) -> tracker().
presence_new(_Node, _Incarnation) -> ?NOT_LOADED.

-spec presence_track(tracker(), binary(), non_neg_integer(), binary(), binary()) ->
    {ok, presence_diffs()} | {error, atom()}.
presence_track(_T, _Topic, _Owner, _Key, _MetaJson) -> ?NOT_LOADED.

-spec presence_update(tracker(), binary(), non_neg_integer(), binary(), binary()) ->
    {ok, presence_diffs()} | {error, atom()}.
presence_update(_T, _Topic, _Owner, _Key, _MetaJson) -> ?NOT_LOADED.

-spec presence_untrack(tracker(), binary(), non_neg_integer(), binary()) ->
    {ok, presence_diffs()} | {error, atom()}.
presence_untrack(_T, _Topic, _Owner, _Key) -> ?NOT_LOADED.

-spec presence_untrack_owner(tracker(), non_neg_integer()) -> presence_diffs().
presence_untrack_owner(_T, _Owner) -> ?NOT_LOADED.

%% @doc The changes since the last call (for gossip), or none.
-spec presence_extract_delta(tracker()) -> binary() | none.
presence_extract_delta(_T) -> ?NOT_LOADED.

-spec presence_clock(tracker()) -> binary().
presence_clock(_T) -> ?NOT_LOADED.

%% @doc A peer's clock arrived: mark it up; `true' when it has state we miss.
-spec presence_heartbeat(tracker(), binary(), non_neg_integer()) ->
    {ok, presence_diffs(), boolean(), replica()} | {error, atom()}.
presence_heartbeat(_T, _Clock, _NowMs) -> ?NOT_LOADED.

%% @doc The replica's node or shard is unreachable: its presences leave now
%% and come back if it does (same incarnation) before permdown.
-spec presence_replica_down(tracker(), binary(), non_neg_integer()) -> presence_diffs().
presence_replica_down(_T, _Node, _Incarnation) -> ?NOT_LOADED.

%% @doc The replica is gone for good (it said goodbye): its presences leave
%% (if shown) and it is forgotten.
-spec presence_permdown(tracker(), binary(), non_neg_integer()) -> presence_diffs().
presence_permdown(_T, _Node, _Incarnation) -> ?NOT_LOADED.

-spec presence_merge_delta(tracker(), binary(), non_neg_integer()) ->
    {ok, presence_diffs()} | {error, atom()}.
presence_merge_delta(_T, _Delta, _NowMs) -> ?NOT_LOADED.

-spec presence_dominates(tracker(), binary()) -> boolean().
presence_dominates(_T, _Clock) -> ?NOT_LOADED.

%% @doc Full state for a peer with clock Clock (dirty CPU scheduler).
-spec presence_state_for(tracker(), binary()) -> {ok, binary()} | {error, atom()}.
presence_state_for(_T, _Clock) -> ?NOT_LOADED.

%% @doc Merge a full state (dirty CPU scheduler).
-spec presence_merge_state(tracker(), binary(), non_neg_integer()) ->
    {ok, presence_diffs()} | {error, atom()}.
presence_merge_state(_T, _State, _NowMs) -> ?NOT_LOADED.

-spec presence_expire(tracker(), non_neg_integer(), non_neg_integer(), non_neg_integer()) ->
    {presence_diffs(), [replica()], [replica()]}.
presence_expire(_T, _NowMs, _DownMs, _PermdownMs) -> ?NOT_LOADED.

%% @doc `{"Key": {"metas": [...]}, ...}' of Topic (the `presence_state' payload).
-spec presence_list(tracker(), binary()) -> binary().
presence_list(_T, _Topic) -> ?NOT_LOADED.

-spec presence_get(tracker(), binary(), binary()) -> binary() | null.
presence_get(_T, _Topic, _Key) -> ?NOT_LOADED.

-spec presence_replicas(tracker()) -> [{replica(), up | down, non_neg_integer()}].
presence_replicas(_T) -> ?NOT_LOADED.
