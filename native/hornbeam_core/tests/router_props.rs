//! Property tests of the topic router.

use std::collections::HashSet;

use hornbeam_core::router::{Match, Router, RouterError, DEFAULT_MAX_TOPIC_LEN};
use proptest::prelude::*;

fn arb_literal() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,3}", "[a-zA-Z0-9_.é€ -]{1,10}",]
}

fn arb_topic() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_literal(), 1..6).prop_map(|segs| segs.join(":"))
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Star,
    Named(String),
}

fn arb_pattern(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Seg>> {
    prop::collection::vec(
        prop_oneof![
            3 => "[a-c]{1,2}".prop_map(Seg::Lit),
            2 => Just(Seg::Star),
            1 => "[a-z_]{1,6}".prop_map(Seg::Named),
        ],
        len,
    )
}

fn pattern_text(p: &[Seg]) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Lit(l) => l.clone(),
            Seg::Star => "*".to_owned(),
            Seg::Named(n) => format!("{{{n}}}"),
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Independent restatement of the naming table in the router docs.
fn expected_names(p: &[Seg]) -> Vec<String> {
    let mut names = Vec::new();
    let mut prev_was_literal_id = false;
    for (i, seg) in p.iter().enumerate() {
        match seg {
            Seg::Lit(_) => prev_was_literal_id = false,
            Seg::Named(n) => {
                names.push(n.clone());
                prev_was_literal_id = false;
            }
            Seg::Star => {
                let name = match (i.checked_sub(1).and_then(|j| p.get(j)), prev_was_literal_id) {
                    (None, _) => "id".to_owned(),
                    (Some(Seg::Lit(l)), _) => format!("{l}_id"),
                    (Some(Seg::Star), true) => "channel_id".to_owned(),
                    _ => format!("param_{i}"),
                };
                prev_was_literal_id =
                    matches!(i.checked_sub(1).and_then(|j| p.get(j)), Some(Seg::Lit(_)));
                names.push(name);
            }
        }
    }
    names
}

fn has_duplicates(names: &[String]) -> bool {
    let mut seen = HashSet::new();
    names.iter().any(|n| !seen.insert(n))
}

/// A topic with the pattern's segment count, its literals, and random
/// non-empty values at the wildcard positions.
fn topic_for(p: &[Seg], values: &[String]) -> (String, Vec<String>) {
    let mut captured = Vec::new();
    let segs: Vec<String> = p
        .iter()
        .zip(values)
        .map(|(s, v)| match s {
            Seg::Lit(l) => l.clone(),
            _ => {
                captured.push(v.clone());
                v.clone()
            }
        })
        .collect();
    (segs.join(":"), captured)
}

fn is_wild(s: &Seg) -> bool {
    !matches!(s, Seg::Lit(_))
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
    fn literal_topics_hit_their_own_exact_pattern(
        topics in prop::collection::vec(arb_topic(), 1..20),
        extra in prop::collection::vec(arb_pattern(1..6), 0..10),
    ) {
        let mut patterns: Vec<String> = topics.clone();
        patterns.extend(extra.iter().map(|p| pattern_text(p)));
        let router = match Router::compile(&patterns, DEFAULT_MAX_TOPIC_LEN) {
            Ok(r) => r,
            Err(RouterError::DuplicateCapture { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        for t in &topics {
            let first = patterns.iter().position(|p| p == t).expect("present");
            prop_assert_eq!(router.match_topic(t), Match::Matched { pattern_id: first, params: vec![] });
        }
    }

    #[test]
    fn wildcard_pattern_matches_topics_that_agree_on_literals(
        p in arb_pattern(1..7),
        values in prop::collection::vec(arb_literal(), 7),
    ) {
        let text = pattern_text(&p);
        let names = expected_names(&p);
        let compiled = Router::compile(&[&text], DEFAULT_MAX_TOPIC_LEN);
        if has_duplicates(&names) {
            let is_dup = matches!(compiled, Err(RouterError::DuplicateCapture { .. }));
            prop_assert!(is_dup, "{}: {:?}", text, compiled.map(|_| ()));
            return Ok(());
        }
        let router = compiled.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(router.capture_names(0), Some(names.as_slice()));

        let (topic, captured) = topic_for(&p, &values);
        let expected = Match::Matched {
            pattern_id: 0,
            params: names.iter().cloned().zip(captured).collect(),
        };
        prop_assert_eq!(router.match_topic(&topic), expected);

        // one segment more or less never matches
        prop_assert_eq!(router.match_topic(&format!("{topic}:x")), Match::NoMatch);
        if p.len() > 1 {
            let shorter = topic_for(&p[..p.len() - 1], &values).0;
            prop_assert_eq!(router.match_topic(&shorter), Match::NoMatch);
        }
        // an empty segment at a wildcard position never matches
        if let Some(i) = p.iter().position(is_wild) {
            let mut vals = values.clone();
            vals[i] = String::new();
            let mut segs: Vec<String> = p.iter().zip(&vals).map(|(s, v)| match s {
                Seg::Lit(l) => l.clone(),
                _ => v.clone(),
            }).collect();
            prop_assert_eq!(router.match_topic(&segs.join(":")), Match::NoMatch);
            // a changed literal never matches
            if let Some(j) = p.iter().position(|s| !is_wild(s)) {
                segs[i] = "v".to_owned();
                segs[j].push('Z');
                prop_assert_eq!(router.match_topic(&segs.join(":")), Match::NoMatch);
            }
        }
    }

    /// The compiled router agrees with a brute-force reading of the
    /// precedence rules.
    #[test]
    fn precedence_matches_brute_force(
        pats in prop::collection::vec(arb_pattern(1..4), 1..12),
        topic_segs in prop::collection::vec(prop_oneof!["[a-c]{1,2}", "[x-z]"], 1..4),
    ) {
        let texts: Vec<String> = pats.iter().map(|p| pattern_text(p)).collect();
        let router = match Router::compile(&texts, DEFAULT_MAX_TOPIC_LEN) {
            Ok(r) => r,
            Err(RouterError::DuplicateCapture { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let topic = topic_segs.join(":");
        let matching = pats.iter().enumerate().filter(|(_, p)| {
            p.len() == topic_segs.len()
                && p.iter().zip(&topic_segs).all(|(s, t)| match s {
                    Seg::Lit(l) => l == t,
                    _ => true,
                })
        });
        let best = matching
            .min_by_key(|(id, p)| (p.iter().map(is_wild).collect::<Vec<_>>(), *id))
            .map(|(id, _)| id);
        match (best, router.match_topic(&topic)) {
            (None, Match::NoMatch) => {}
            (Some(id), Match::Matched { pattern_id, .. }) => prop_assert_eq!(id, pattern_id),
            (want, got) => prop_assert!(false, "want {:?}, got {:?}", want, got),
        }
    }

    #[test]
    fn too_long_topics_are_reported(topic in arb_topic(), max in 0usize..40) {
        let router = Router::compile(&[topic.as_str(), "*"], max).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = router.match_topic(&topic);
        if topic.len() > max {
            prop_assert_eq!(got, Match::TopicTooLong);
        } else {
            prop_assert_eq!(got, Match::Matched { pattern_id: 0, params: vec![] });
        }
    }

    #[test]
    fn arbitrary_patterns_and_topics_never_panic(
        pats in prop::collection::vec("[a{}*:]{0,8}", 0..6),
        topic in any::<String>(),
    ) {
        if let Ok(router) = Router::compile(&pats, DEFAULT_MAX_TOPIC_LEN) {
            let _ = router.match_topic(&topic);
            for id in 0..=router.len() {
                let _ = router.capture_names(id);
            }
        }
    }
}
