//! Property tests of the ETF codec: arbitrary bytes never panic, random
//! terms round-trip, and truncations of valid encodings are errors.

use hornbeam_core::etf::{decode, decode_with_depth, encode, EtfError, Term};
use proptest::prelude::*;

fn term_strategy() -> impl Strategy<Value = Term> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Term::Int),
        (0i64..=255).prop_map(Term::Int),
        (-1_000_000f64..1_000_000f64).prop_map(Term::Float),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Term::Float),
        "[a-z_]{0,20}".prop_map(Term::Atom),
        "\\PC{0,10}".prop_map(Term::Atom),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Term::Binary),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Term::Tuple),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Term::List),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Term::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_with_depth(&bytes, 3);
    }

    #[test]
    fn arbitrary_bytes_after_version_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = vec![131u8];
        framed.extend_from_slice(&bytes);
        if let Ok(t) = decode(&framed) {
            // whatever decodes re-encodes and decodes to the same term
            let again = encode(&t).expect("decoded terms encode");
            prop_assert_eq!(decode(&again).expect("re-decode"), t);
        }
    }

    #[test]
    fn terms_round_trip(t in term_strategy()) {
        let bytes = encode(&t).expect("encode");
        prop_assert_eq!(decode(&bytes).expect("decode"), t);
    }

    #[test]
    fn truncations_are_errors(t in term_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&t).expect("encode");
        let n = cut.index(bytes.len());
        prop_assert_eq!(decode(&bytes[..n]), Err(EtfError::UnexpectedEof));
    }
}
