//! Property tests of the channel message codec.

use hornbeam_core::json::{self, DEFAULT_MAX_DEPTH};
use hornbeam_core::message::{decode, encode, encode_reply, fuzz_decode, MessageError, Ref};
use proptest::prelude::*;
use serde_json::Value;

fn arb_ref() -> impl Strategy<Value = Ref> {
    prop_oneof![
        Just(Ref::Null),
        any::<i64>().prop_map(Ref::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Ref::Int),
        arb_text().prop_map(Ref::Str),
    ]
}

/// Strings rich in characters that need escaping, plus arbitrary unicode.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z:_0-9]{0,20}",
        "[\"\\\\/\\x00-\\x1f\\x7f é€😀\u{2028}\u{2029}a]{0,24}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(arb_text(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_payload() -> impl Strategy<Value = String> {
    (arb_json(), any::<bool>()).prop_map(|(v, pretty)| {
        let s = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        };
        s.unwrap_or_else(|_| "null".to_owned())
    })
}

fn nested(open: &str, close: &str, n: usize) -> Vec<u8> {
    let mut s = open.repeat(n);
    s.push('1');
    s.push_str(&close.repeat(n));
    s.into_bytes()
}

/// 512 cases by default; `PROPTEST_CASES=N` runs more (or fewer).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_round_trip(
        join_ref in arb_ref(),
        r in arb_ref(),
        topic in arb_text(),
        event in arb_text(),
        payload in arb_payload(),
    ) {
        let bytes = encode(&join_ref, &r, &topic, &event, payload.as_bytes());
        // the output is plain JSON, readable by serde_json
        let as_value: Value = serde_json::from_slice(&bytes).expect("encode output is JSON");
        prop_assert_eq!(as_value.as_array().map(Vec::len), Some(5));
        let m = decode(&bytes, DEFAULT_MAX_DEPTH).expect("round trip decodes");
        prop_assert_eq!(&m.join_ref, &join_ref);
        prop_assert_eq!(&m.r#ref, &r);
        prop_assert_eq!(&*m.topic, topic.as_str());
        prop_assert_eq!(&*m.event, event.as_str());
        prop_assert_eq!(m.payload, payload.as_bytes());
        fuzz_decode(&bytes);
    }

    #[test]
    fn reply_round_trip(
        join_ref in arb_ref(),
        r in arb_ref(),
        topic in arb_text(),
        status in prop_oneof![Just("ok".to_owned()), Just("error".to_owned()), arb_text()],
        response in arb_json(),
    ) {
        let raw = serde_json::to_string(&response).expect("serializable");
        let bytes = encode_reply(&join_ref, &r, &topic, &status, raw.as_bytes());
        let m = decode(&bytes, DEFAULT_MAX_DEPTH).expect("reply decodes");
        prop_assert_eq!(&m.join_ref, &join_ref);
        prop_assert_eq!(&m.r#ref, &r);
        prop_assert_eq!(&*m.topic, topic.as_str());
        prop_assert_eq!(&*m.event, "phx_reply");
        let payload: Value = serde_json::from_slice(m.payload).expect("payload is JSON");
        // compare with `raw` re-parsed: serde_json's default float parsing is not exact
        let response: Value = serde_json::from_str(&raw).expect("raw is JSON");
        prop_assert_eq!(payload, serde_json::json!({"status": status, "response": response}));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&data, DEFAULT_MAX_DEPTH);
        let _ = decode(&data, 0);
        let _ = json::parse(&data, DEFAULT_MAX_DEPTH);
        fuzz_decode(&data);
    }

    #[test]
    fn json_like_text_never_panics(data in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,64}") {
        fuzz_decode(data.as_bytes());
    }

    /// Valid messages with one byte changed, removed or inserted: exercises
    /// every error path against the oracle inside `fuzz_decode`.
    #[test]
    fn mutated_messages_agree_with_oracle(
        join_ref in arb_ref(),
        r in arb_ref(),
        topic in "[a-z:\"\\\\]{0,8}",
        payload in arb_payload(),
        pos in any::<prop::sample::Index>(),
        byte in prop_oneof![any::<u8>(), prop::sample::select(b"[]{}\",:0-9.e\\ ntf".to_vec())],
        op in 0..3u8,
    ) {
        let mut bytes = encode(&join_ref, &r, &topic, "ev", payload.as_bytes());
        let i = pos.index(bytes.len() + 1);
        match op {
            0 if i < bytes.len() => bytes[i] = byte,
            1 if i < bytes.len() => { bytes.remove(i); }
            _ => bytes.insert(i, byte),
        }
        fuzz_decode(&bytes);
    }

    #[test]
    fn depth_limit_is_exact(d in 0usize..200, limit in 0usize..200) {
        let payload = nested("[", "]", d);
        let bytes = encode(&Ref::Null, &Ref::Null, "t", "e", &payload);
        let got = decode(&bytes, limit);
        if d <= limit {
            prop_assert!(got.is_ok(), "{:?}", got);
        } else {
            prop_assert_eq!(got.unwrap_err(), MessageError::TooDeep { max_depth: limit });
        }
    }
}

#[test]
fn ten_thousand_brackets_are_too_deep() {
    let deep = vec![b'['; 10_000];
    assert_eq!(
        decode(&deep, DEFAULT_MAX_DEPTH).unwrap_err(),
        MessageError::TooDeep { max_depth: 64 }
    );
    fuzz_decode(&deep);
}

#[test]
fn deep_payloads_do_not_overflow_a_small_stack() {
    // Run on a 128 KiB stack: any recursion proportional to depth would crash.
    let handle = std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(|| {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let payload = nested(open, close, 100_000);
                let bytes = encode(&Ref::Int(1), &Ref::Int(2), "t", "e", &payload);
                assert_eq!(
                    decode(&bytes, DEFAULT_MAX_DEPTH).unwrap_err(),
                    MessageError::TooDeep {
                        max_depth: DEFAULT_MAX_DEPTH
                    }
                );
                assert_eq!(
                    json::parse(&payload, DEFAULT_MAX_DEPTH).unwrap_err(),
                    json::JsonError::TooDeep {
                        max_depth: DEFAULT_MAX_DEPTH
                    }
                );
                // unterminated too
                let open_only = open.repeat(100_000);
                assert_eq!(
                    decode(open_only.as_bytes(), DEFAULT_MAX_DEPTH)
                        .unwrap_err()
                        .as_str(),
                    "too_deep"
                );
                fuzz_decode(&bytes);
            }
        })
        .expect("spawn");
    handle.join().expect("no stack overflow");
}
