//! Property tests of `hornbeam_core::ws_frame`.
//!
//! (a) random message sequences, encoded by a masking client encoder written
//!     here (and by tungstenite's), decode to themselves whatever the chunking;
//! (b) arbitrary and mutated bytes never panic and decode the same whole or
//!     chunked (this includes the fuzz target's body, `fuzz_decode`);
//! (c) server frames parse back with an unmasked-frame parser written here and
//!     with tungstenite's header parser.
//!
//! 256 cases each by default; `PROPTEST_CASES=20000` for a longer run.

use hornbeam_core::ws_frame::{
    encode, encode_close, encode_header, fuzz_decode, Decoder, FrameError, Message, OpCode,
};
use proptest::prelude::*;
use proptest::sample::Index;

// --- test-side client encoder ------------------------------------------------

/// How a frame writes its payload length.
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Minimal,
    /// Always the 16-bit form when the length fits (non-minimal for < 126).
    Ext16,
    /// Always the 64-bit form (non-minimal for < 65536).
    Ext64,
}

fn client_frame(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
    form: LenForm,
    out: &mut Vec<u8>,
) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    let form = match form {
        LenForm::Ext16 if len > 0xFFFF => LenForm::Ext64,
        f => f,
    };
    match form {
        LenForm::Minimal if len < 126 => out.push(0x80 | len as u8),
        LenForm::Minimal if len <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        LenForm::Ext16 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        LenForm::Minimal | LenForm::Ext64 => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[derive(Debug, Clone)]
enum Ctrl {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Ctrl {
    fn frame(&self) -> (u8, Vec<u8>) {
        match self {
            Ctrl::Ping(p) => (0x9, p.clone()),
            Ctrl::Pong(p) => (0xA, p.clone()),
            Ctrl::Close(None) => (0x8, Vec::new()),
            Ctrl::Close(Some((code, reason))) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (0x8, p)
            }
        }
    }

    fn message(&self) -> Message {
        match self {
            Ctrl::Ping(p) => Message::Ping(p.clone()),
            Ctrl::Pong(p) => Message::Pong(p.clone()),
            Ctrl::Close(c) => Message::Close(c.clone().map(|(code, r)| (code, r.into_bytes()))),
        }
    }
}

#[derive(Debug, Clone)]
enum Item {
    /// A data message cut into fragments at `cuts`, with control frames
    /// after some fragments (`(fragment index, frame)`).
    Data {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<Index>,
        between: Vec<(Index, Ctrl)>,
    },
    Ctrl(Ctrl),
}

fn ctrl() -> impl Strategy<Value = Ctrl> {
    let close_code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Ctrl::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Ctrl::Pong),
        Just(Ctrl::Close(None)),
        (close_code, "\\PC{0,30}").prop_map(|(c, r)| Ctrl::Close(Some((c, r)))),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let payload = prop_oneof![
        4 => "\\PC{0,60}".prop_map(|s| (true, s.into_bytes())),
        1 => "[a-zé€😀]{100,400}".prop_map(|s| (true, s.into_bytes())),
        4 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (false, b)),
        1 => (126usize..70_000, any::<u8>())
            .prop_map(|(n, s)| (false, (0..n).map(|i| (i as u8).wrapping_mul(s)).collect())),
    ];
    prop_oneof![
        3 => (
            payload,
            prop::collection::vec(any::<Index>(), 0..4),
            prop::collection::vec((any::<Index>(), ctrl()), 0..3),
        )
            .prop_map(|((text, payload), cuts, between)| Item::Data { text, payload, cuts, between }),
        1 => ctrl().prop_map(Item::Ctrl),
    ]
}

struct Masks(u64);

impl Masks {
    fn next(&mut self) -> ([u8; 4], LenForm) {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let [a, b, c, d, f, ..] = self.0.to_le_bytes();
        let form = match f % 8 {
            0 => LenForm::Ext16,
            1 => LenForm::Ext64,
            _ => LenForm::Minimal,
        };
        // Mostly random masks, sometimes the all-zero one.
        let mask = if f / 8 % 16 == 15 {
            [0; 4]
        } else {
            [a, b, c, d]
        };
        (mask, form)
    }
}

/// Client bytes for `items` and the messages they must decode to.
fn encode_items(items: &[Item], seed: u64) -> (Vec<u8>, Vec<Message>) {
    let mut masks = Masks(seed | 1);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    let mut put = |bytes: &mut Vec<u8>, fin: bool, op: u8, p: &[u8]| {
        let (mask, form) = masks.next();
        client_frame(fin, op, p, mask, form, bytes);
    };
    for item in items {
        match item {
            Item::Ctrl(c) => {
                let (op, p) = c.frame();
                put(&mut bytes, true, op, &p);
                want.push(c.message());
            }
            Item::Data {
                text,
                payload,
                cuts,
                between,
            } => {
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.push(payload.len());
                let n = cuts.len();
                let mut start = 0;
                for (k, end) in cuts.into_iter().enumerate() {
                    let op = if k == 0 {
                        if *text {
                            0x1
                        } else {
                            0x2
                        }
                    } else {
                        0x0
                    };
                    put(&mut bytes, k + 1 == n, op, &payload[start..end]);
                    start = end;
                    if k + 1 < n {
                        for (at, c) in between {
                            if at.index(n - 1) == k {
                                let (op, p) = c.frame();
                                put(&mut bytes, true, op, &p);
                                want.push(c.message());
                            }
                        }
                    }
                }
                want.push(if *text {
                    Message::Text(payload.clone())
                } else {
                    Message::Binary(payload.clone())
                });
            }
        }
    }
    (bytes, want)
}

/// Feeds `bytes` cut at `cuts`; checks poisoning on the way. Returns all
/// messages, the error and the final `buffered_len`.
fn feed_chunked(
    max: usize,
    bytes: &[u8],
    cuts: &[Index],
) -> (Vec<Message>, Option<FrameError>, usize) {
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut d = Decoder::new(max);
    let (mut msgs, mut err) = (Vec::new(), None);
    let mut start = 0;
    for end in cuts {
        let (m, e) = d.decode(&bytes[start..end]);
        start = end;
        match err {
            Some(prev) => {
                assert!(m.is_empty());
                assert_eq!(e, Some(prev));
            }
            None => {
                msgs.extend(m);
                err = e;
            }
        }
    }
    (msgs, err, d.buffered_len())
}

fn feed_whole(max: usize, bytes: &[u8]) -> (Vec<Message>, Option<FrameError>, usize) {
    let mut d = Decoder::new(max);
    let (m, e) = d.decode(bytes);
    (m, e, d.buffered_len())
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(125),
        0usize..300,
        Just(65_536),
        Just(usize::MAX)
    ]
}

proptest! {
    // (a)
    #[test]
    fn client_messages_roundtrip_in_any_chunking(
        items in prop::collection::vec(item(), 0..8),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (bytes, want) = encode_items(&items, seed);
        let whole = feed_whole(usize::MAX, &bytes);
        prop_assert_eq!(&whole, &(want.clone(), None, 0));
        prop_assert_eq!(feed_chunked(usize::MAX, &bytes, &cuts), whole);
        // One byte at a time.
        if bytes.len() < 4096 {
            let mut d = Decoder::new(usize::MAX);
            let mut got = Vec::new();
            for b in &bytes {
                let (m, e) = d.decode(std::slice::from_ref(b));
                prop_assert_eq!(e, None);
                got.extend(m);
            }
            prop_assert_eq!(got, want);
        }
    }

    // (a) against an independent encoder: tungstenite's masked client frames.
    #[test]
    fn tungstenite_client_frames_decode(
        payloads in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                (60_000usize..70_000).prop_map(|n| vec![0xA5; n]),
            ],
            1..5,
        ),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        use tungstenite::protocol::frame::{coding::{Data, OpCode as TOp}, Frame};
        let mut bytes = Vec::new();
        for p in &payloads {
            let mut f = Frame::message(p.clone(), TOp::Data(Data::Binary), true);
            f.header_mut().mask = Some(mask);
            f.format(&mut bytes).unwrap();
        }
        let want: Vec<Message> = payloads.into_iter().map(Message::Binary).collect();
        prop_assert_eq!(feed_chunked(usize::MAX, &bytes, &cuts), (want, None, 0));
    }

    // (a) limits: a message exactly at the limit passes, one byte more fails.
    #[test]
    fn reassembled_limit(
        len in 0usize..2000,
        cuts in prop::collection::vec(any::<Index>(), 0..4),
        seed in any::<u64>(),
    ) {
        let item = Item::Data { text: false, payload: vec![1; len], cuts, between: vec![] };
        let (bytes, want) = encode_items(&[item], seed);
        prop_assert_eq!(feed_whole(len, &bytes), (want, None, 0));
        if len > 0 {
            let (m, e, _) = feed_whole(len - 1, &bytes);
            prop_assert!(m.is_empty());
            prop_assert_eq!(e, Some(FrameError::TooLarge));
        }
    }

    // (b) garbage
    #[test]
    fn garbage_never_panics_and_chunking_is_irrelevant(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
        max in limit(),
    ) {
        prop_assert_eq!(feed_chunked(max, &bytes, &cuts), feed_whole(max, &bytes));
        fuzz_decode(&bytes);
    }

    // (b) mostly-valid streams with a few bytes flipped
    #[test]
    fn mutated_streams_never_panic_and_chunking_is_irrelevant(
        items in prop::collection::vec(item(), 1..5),
        seed in any::<u64>(),
        flips in prop::collection::vec((any::<Index>(), 1u8..=255), 0..4),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        max in limit(),
        cfg in any::<[u8; 5]>(),
    ) {
        let (mut bytes, _) = encode_items(&items, seed);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        prop_assert_eq!(feed_chunked(max, &bytes, &cuts), feed_whole(max, &bytes));
        let mut data = cfg.to_vec();
        data.extend_from_slice(&bytes);
        fuzz_decode(&data);
    }

    // (c) server frames
    #[test]
    fn server_frames_roundtrip(
        op in prop::sample::select(vec![OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong, OpCode::Close]),
        small in prop::collection::vec(any::<u8>(), 0..300),
        big in prop_oneof![Just(None), (65_530usize..65_545).prop_map(Some), Just(Some(200_000))],
    ) {
        let payload = match (op, big) {
            (OpCode::Ping | OpCode::Pong | OpCode::Close, _) => small[..small.len().min(125)].to_vec(),
            (_, Some(n)) => (0..n).map(|i| i as u8).collect(),
            (_, None) => small,
        };
        let bytes = encode(op, &payload);
        let (fin, opcode, body, used) = parse_server_frame(&bytes).expect("parsable");
        prop_assert!(fin);
        prop_assert_eq!(opcode, opcode_bits(op));
        prop_assert_eq!(body, &payload[..]);
        prop_assert_eq!(used, bytes.len());

        let mut header = Vec::new();
        encode_header(op, payload.len(), &mut header);
        prop_assert_eq!(&bytes[..header.len()], &header[..]);

        // tungstenite agrees on the header.
        let mut cur = std::io::Cursor::new(&header);
        let (h, len) = tungstenite::protocol::frame::FrameHeader::parse(&mut cur).unwrap().unwrap();
        prop_assert!(h.is_final && !h.rsv1 && !h.rsv2 && !h.rsv3 && h.mask.is_none());
        prop_assert_eq!(u8::from(h.opcode), opcode_bits(op));
        prop_assert_eq!(len, payload.len() as u64);
        prop_assert_eq!(cur.position(), header.len() as u64);
    }

    #[test]
    fn close_frames_roundtrip(code in any::<u16>(), reason in "\\PC{0,80}") {
        let bytes = encode_close(code, &reason);
        let (fin, opcode, body, used) = parse_server_frame(&bytes).expect("parsable");
        prop_assert!(fin);
        prop_assert_eq!(opcode, 0x8);
        prop_assert_eq!(used, bytes.len());
        prop_assert!(body.len() <= 125);
        prop_assert_eq!(&body[..2], &code.to_be_bytes());
        let kept = std::str::from_utf8(&body[2..]).expect("utf-8 reason");
        prop_assert!(reason.starts_with(kept));
        // The longest prefix that fits: one more char would not.
        if kept.len() < reason.len() {
            let next = reason[kept.len()..].chars().next().unwrap();
            prop_assert!(kept.len() + next.len_utf8() > 123);
        }
    }
}

fn opcode_bits(op: OpCode) -> u8 {
    match op {
        OpCode::Text => 1,
        OpCode::Binary => 2,
        OpCode::Close => 8,
        OpCode::Ping => 9,
        OpCode::Pong => 10,
    }
}

/// Test-side parser of one unmasked server frame: (fin, opcode, payload, bytes used).
/// Insists on RSV = 0, no mask and the minimal length encoding.
fn parse_server_frame(b: &[u8]) -> Option<(bool, u8, &[u8], usize)> {
    let (&b0, rest) = b.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 {
        return None;
    }
    let (len, rest) = match b1 & 0x7F {
        126 => {
            let (l, rest) = rest.split_first_chunk::<2>()?;
            let len = u16::from_be_bytes(*l) as usize;
            (len >= 126).then_some((len, rest))?
        }
        127 => {
            let (l, rest) = rest.split_first_chunk::<8>()?;
            let len = u64::from_be_bytes(*l);
            (len > 0xFFFF && len >> 63 == 0).then_some((len as usize, rest))?
        }
        n => (n as usize, rest),
    };
    let body = rest.get(..len)?;
    Some((b0 & 0x80 != 0, b0 & 0x0F, body, b.len() - rest.len() + len))
}

#[test]
fn fuzz_decode_handles_tiny_inputs() {
    for a in 0..=255u8 {
        fuzz_decode(&[a]);
        fuzz_decode(&[a, 0, 0, 0, 0, 0x81]);
        fuzz_decode(&[a, 1, 2, 3, 4, 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    }
}

// --- permessage-deflate ---------------------------------------------------------

proptest! {
    // Messages compressed by our Deflater (with and without context
    // takeover), sent as masked client frames with RSV1 on the first
    // fragment, decode to themselves whatever the chunking, mixed with
    // uncompressed messages.
    #[test]
    fn compressed_client_messages_decode(
        msgs in prop::collection::vec(
            (any::<bool>(), prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                "[a-z ]{0,400}".prop_map(String::into_bytes),
            ], 1usize..4),
            1..6,
        ),
        takeover in any::<bool>(),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        use hornbeam_core::permessage_deflate::{Deflater, Inflater};
        let mut deflater = Deflater::new(15, 1, !takeover, 0);
        let mut bytes = Vec::new();
        for (compress, payload, fragments) in &msgs {
            let body = if *compress {
                let mut c = Vec::new();
                deflater.compress(payload, &mut c);
                c
            } else {
                payload.clone()
            };
            let n = *fragments;
            let step = body.len().div_ceil(n).max(1);
            let parts: Vec<&[u8]> = if body.is_empty() { vec![&body[..]] } else { body.chunks(step).collect() };
            for (i, part) in parts.iter().enumerate() {
                let fin = i + 1 == parts.len();
                let opcode = if i == 0 { 0x2 } else { 0x0 };
                let start = bytes.len();
                client_frame(fin, opcode, part, mask, LenForm::Minimal, &mut bytes);
                if i == 0 && *compress {
                    bytes[start] |= 0x40;
                }
            }
        }
        let mut cut_at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cut_at.sort_unstable();
        cut_at.push(bytes.len());
        let mut d = Decoder::with_inflater(1 << 20, Inflater::new(15, !takeover));
        let mut got = Vec::new();
        let mut start = 0;
        for end in cut_at {
            let (m, e) = d.decode(&bytes[start..end]);
            prop_assert_eq!(e, None);
            got.extend(m);
            start = end;
        }
        let want: Vec<Message> = msgs.into_iter().map(|(_, p, _)| Message::Binary(p)).collect();
        prop_assert_eq!(got, want);
    }
}
