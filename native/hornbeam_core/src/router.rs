//! Topic router: compiled channel topic patterns.
//!
//! A pattern is a `:`-separated list of segments. Each segment is one of
//!
//! * a **literal** (`room`, `lobby`) — matches exactly itself;
//! * `*` — a wildcard that matches exactly one **non-empty** segment and is
//!   captured under an automatic name (table below);
//! * `{name}` — a wildcard that matches exactly one non-empty segment and is
//!   captured under `name`.
//!
//! So `room:*` matches `room:lobby` but neither `room:` nor `room:a:b`.
//!
//! Patterns are refused at compile time when they are empty
//! ([`RouterError::EmptyPattern`]), contain an empty segment such as `room:`
//! or `a::b` ([`RouterError::EmptySegment`]), contain a segment mixing `{`,
//! `}` or `*` with other text such as `{`, `{}`, `a{b}`, `{a}b`, `a*`
//! ([`RouterError::BadSegment`]), or capture the same name twice such as
//! `{x}:{x}` or `room:*:{room_id}` ([`RouterError::DuplicateCapture`]).
//!
//! ## Names of `*` captures
//!
//! | the `*` at segment position N (0-based) … | is named | example |
//! |---|---|---|
//! | is the first segment (N = 0) | `id` | `*:x` → `id` |
//! | follows a literal segment `L` | `L_id` | `room:*` → `room_id` |
//! | follows a `*` that was named `L_id` by the row above | `channel_id` | `chat:*:*` → `chat_id`, `channel_id` |
//! | anything else: follows a `channel_id` `*`, a `{name}` capture, or a leading `*` | `param_N` | `a:*:*:*` → `a_id`, `channel_id`, `param_3`; `{x}:*` → `x`, `param_1`; `*:*` → `id`, `param_1` |
//!
//! Captures are returned in segment order as `(name, value)` pairs.
//!
//! ## Precedence
//!
//! 1. An exact (all-literal) pattern beats any wildcard pattern.
//! 2. Between wildcard patterns (which can only both match when they have the
//!    same number of segments) the one with a literal at the first segment
//!    where their kinds differ wins: kind vectors are compared
//!    lexicographically with literal < wildcard (`*` and `{name}` are the same
//!    kind). `room:*:x` beats `room:*:*` beats `*:lobby:*`.
//! 3. Remaining ties go to the pattern given first.
//!
//! Topics longer than `max_topic_len` bytes return [`Match::TopicTooLong`],
//! distinct from [`Match::NoMatch`].
//!
//! ## Speed
//!
//! Exact patterns live in a `HashMap`. Wildcard patterns are grouped by
//! segment count and each group is pre-sorted by precedence, so a lookup
//! splits the topic once and returns the first pattern of its group whose
//! literal segments agree.

use std::collections::HashMap;
use std::fmt;

/// Default limit on topic length, in bytes.
pub const DEFAULT_MAX_TOPIC_LEN: usize = 255;

/// Why a pattern list could not be compiled. Every variant names the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterError {
    EmptyPattern { pattern: String },
    EmptySegment { pattern: String },
    BadSegment { pattern: String, segment: String },
    DuplicateCapture { pattern: String, name: String },
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterError::EmptyPattern { pattern } => {
                write!(f, "topic pattern {pattern:?} is empty")
            }
            RouterError::EmptySegment { pattern } => {
                write!(f, "topic pattern {pattern:?} has an empty segment (leading, trailing or doubled ':')")
            }
            RouterError::BadSegment { pattern, segment } => write!(
                f,
                "topic pattern {pattern:?} has a bad segment {segment:?}: a segment is a literal, '*' or '{{name}}'"
            ),
            RouterError::DuplicateCapture { pattern, name } => {
                write!(f, "topic pattern {pattern:?} captures {name:?} more than once")
            }
        }
    }
}

impl std::error::Error for RouterError {}

/// Result of [`Router::match_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `pattern_id` is the index of the pattern in the list given to
    /// [`Router::compile`]; `params` are `(name, value)` in segment order.
    Matched {
        pattern_id: usize,
        params: Vec<(String, String)>,
    },
    NoMatch,
    TopicTooLong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<Segment>,
    /// One name per `Capture` segment, in order.
    names: Vec<String>,
}

impl Pattern {
    fn is_exact(&self) -> bool {
        self.names.is_empty()
    }

    /// Precedence key: literal (false) sorts before wildcard (true).
    fn kinds(&self) -> impl Iterator<Item = bool> + '_ {
        self.segments.iter().map(|s| matches!(s, Segment::Capture))
    }
}

/// A compiled, immutable set of topic patterns.
#[derive(Debug, Clone)]
pub struct Router {
    patterns: Vec<Pattern>,
    /// All-literal patterns; the first given wins for duplicates.
    exact: HashMap<String, usize>,
    /// Wildcard pattern ids by segment count, sorted by precedence.
    by_len: HashMap<usize, Vec<usize>>,
    max_topic_len: usize,
}

impl Router {
    /// Compile `patterns`; pattern ids are indexes into this slice.
    pub fn compile<S: AsRef<str>>(
        patterns: &[S],
        max_topic_len: usize,
    ) -> Result<Router, RouterError> {
        let compiled = patterns
            .iter()
            .map(|p| parse_pattern(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;

        let mut exact = HashMap::new();
        let mut by_len: HashMap<usize, Vec<usize>> = HashMap::new();
        for (id, (source, pattern)) in patterns.iter().zip(&compiled).enumerate() {
            if pattern.is_exact() {
                exact.entry(source.as_ref().to_owned()).or_insert(id);
            } else {
                by_len.entry(pattern.segments.len()).or_default().push(id);
            }
        }
        for ids in by_len.values_mut() {
            // Stable sort keeps ties in the order given.
            ids.sort_by(|&a, &b| match (compiled.get(a), compiled.get(b)) {
                (Some(pa), Some(pb)) => pa.kinds().cmp(pb.kinds()),
                _ => std::cmp::Ordering::Equal,
            });
        }
        Ok(Router {
            patterns: compiled,
            exact,
            by_len,
            max_topic_len,
        })
    }

    /// Find the highest-precedence pattern matching `topic`.
    pub fn match_topic(&self, topic: &str) -> Match {
        if topic.len() > self.max_topic_len {
            return Match::TopicTooLong;
        }
        if let Some(&pattern_id) = self.exact.get(topic) {
            return Match::Matched {
                pattern_id,
                params: Vec::new(),
            };
        }
        if self.by_len.is_empty() {
            return Match::NoMatch;
        }
        let parts: Vec<&str> = topic.split(':').collect();
        if parts.iter().any(|p| p.is_empty()) {
            // Literals and wildcards both need non-empty segments.
            return Match::NoMatch;
        }
        let Some(ids) = self.by_len.get(&parts.len()) else {
            return Match::NoMatch;
        };
        for &id in ids {
            let Some(pattern) = self.patterns.get(id) else {
                continue;
            };
            let agrees = pattern
                .segments
                .iter()
                .zip(&parts)
                .all(|(seg, part)| match seg {
                    Segment::Literal(lit) => lit == part,
                    Segment::Capture => true,
                });
            if agrees {
                let values = pattern
                    .segments
                    .iter()
                    .zip(&parts)
                    .filter(|(seg, _)| matches!(seg, Segment::Capture))
                    .map(|(_, part)| (*part).to_owned());
                let params = pattern.names.iter().cloned().zip(values).collect();
                return Match::Matched {
                    pattern_id: id,
                    params,
                };
            }
        }
        Match::NoMatch
    }

    /// Number of patterns compiled (duplicates included).
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Capture names of a pattern in segment order (empty for exact
    /// patterns); `None` for an unknown id.
    pub fn capture_names(&self, pattern_id: usize) -> Option<&[String]> {
        self.patterns.get(pattern_id).map(|p| p.names.as_slice())
    }

    /// The topic length limit this router was compiled with.
    pub fn max_topic_len(&self) -> usize {
        self.max_topic_len
    }
}

/// How the `*` at the previous segment was named (drives the next name).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    Literal,
    /// `*` named `L_id` after a literal.
    LiteralId,
    /// Leading `*`, `channel_id` `*`, `param_N` `*` or `{name}`.
    OtherCapture,
}

fn parse_pattern(pattern: &str) -> Result<Pattern, RouterError> {
    if pattern.is_empty() {
        return Err(RouterError::EmptyPattern {
            pattern: pattern.to_owned(),
        });
    }
    let mut segments = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut prev = Prev::Start;
    let mut prev_literal: &str = "";
    for (pos, seg) in pattern.split(':').enumerate() {
        if seg.is_empty() {
            return Err(RouterError::EmptySegment {
                pattern: pattern.to_owned(),
            });
        }
        let bad = || RouterError::BadSegment {
            pattern: pattern.to_owned(),
            segment: seg.to_owned(),
        };
        let name = if seg == "*" {
            let (name, next) = match prev {
                Prev::Start => ("id".to_owned(), Prev::OtherCapture),
                Prev::Literal => (format!("{prev_literal}_id"), Prev::LiteralId),
                Prev::LiteralId => ("channel_id".to_owned(), Prev::OtherCapture),
                Prev::OtherCapture => (format!("param_{pos}"), Prev::OtherCapture),
            };
            prev = next;
            Some(name)
        } else if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if inner.is_empty() || inner.contains(['{', '}', '*']) {
                return Err(bad());
            }
            prev = Prev::OtherCapture;
            Some(inner.to_owned())
        } else if seg.contains(['{', '}', '*']) {
            return Err(bad());
        } else {
            prev = Prev::Literal;
            prev_literal = seg;
            None
        };
        match name {
            Some(name) => {
                if names.contains(&name) {
                    return Err(RouterError::DuplicateCapture {
                        pattern: pattern.to_owned(),
                        name,
                    });
                }
                names.push(name);
                segments.push(Segment::Capture);
            }
            None => segments.push(Segment::Literal(seg.to_owned())),
        }
    }
    Ok(Pattern { segments, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(patterns: &[&str]) -> Router {
        match Router::compile(patterns, DEFAULT_MAX_TOPIC_LEN) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn names(pattern: &str) -> Vec<String> {
        router(&[pattern])
            .capture_names(0)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    fn matched(id: usize, params: &[(&str, &str)]) -> Match {
        Match::Matched {
            pattern_id: id,
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn compile_err(pattern: &str) -> RouterError {
        match Router::compile(&[pattern], DEFAULT_MAX_TOPIC_LEN) {
            Ok(_) => panic!("{pattern} compiled"),
            Err(e) => e,
        }
    }

    // --- segments

    #[test]
    fn segments_are_separated_by_colon() {
        let r = router(&["a:b:c"]);
        assert_eq!(r.match_topic("a:b:c"), matched(0, &[]));
        assert_eq!(r.match_topic("a:b"), Match::NoMatch);
        assert_eq!(r.match_topic("a:b:c:d"), Match::NoMatch);
        assert_eq!(r.match_topic("a:bc"), Match::NoMatch);
    }

    #[test]
    fn literal_segment_matches_itself() {
        let r = router(&["room:*"]);
        assert_eq!(r.match_topic("room:x"), matched(0, &[("room_id", "x")]));
        assert_eq!(r.match_topic("Room:x"), Match::NoMatch);
        assert_eq!(r.match_topic("rooms:x"), Match::NoMatch);
    }

    #[test]
    fn wildcard_matches_exactly_one_non_empty_segment() {
        let r = router(&["room:*"]);
        assert_eq!(
            r.match_topic("room:lobby"),
            matched(0, &[("room_id", "lobby")])
        );
        assert_eq!(r.match_topic("room:"), Match::NoMatch);
        assert_eq!(r.match_topic("room:a:b"), Match::NoMatch);
        assert_eq!(r.match_topic("room"), Match::NoMatch);
        let r = router(&["*:x"]);
        assert_eq!(r.match_topic(":x"), Match::NoMatch);
    }

    #[test]
    fn named_capture_matches_exactly_one_non_empty_segment() {
        let r = router(&["chat:{id}"]);
        assert_eq!(r.match_topic("chat:42"), matched(0, &[("id", "42")]));
        assert_eq!(r.match_topic("chat:"), Match::NoMatch);
        assert_eq!(r.match_topic("chat:4:2"), Match::NoMatch);
    }

    #[test]
    fn capture_values_keep_unicode_and_spaces() {
        let r = router(&["room:{name}"]);
        assert_eq!(
            r.match_topic("room:café au lait"),
            matched(0, &[("name", "café au lait")])
        );
    }

    // --- naming

    #[test]
    fn named_capture_uses_its_name() {
        assert_eq!(names("chat:{room}:{user}"), ["room", "user"]);
    }

    #[test]
    fn wildcard_after_literal_is_literal_id() {
        assert_eq!(names("room:*"), ["room_id"]);
        assert_eq!(names("a:b:*"), ["b_id"]);
        assert_eq!(names("x:{y}:z:*"), ["y", "z_id"]);
    }

    #[test]
    fn wildcard_after_literal_id_is_channel_id() {
        assert_eq!(names("chat:*:*"), ["chat_id", "channel_id"]);
    }

    #[test]
    fn further_wildcards_in_run_are_param_n() {
        assert_eq!(names("a:*:*:*"), ["a_id", "channel_id", "param_3"]);
        assert_eq!(
            names("a:*:*:*:*"),
            ["a_id", "channel_id", "param_3", "param_4"]
        );
        // a literal restarts the run
        assert_eq!(names("a:*:*:b:*"), ["a_id", "channel_id", "b_id"]);
    }

    #[test]
    fn leading_wildcard_is_id() {
        assert_eq!(names("*"), ["id"]);
        assert_eq!(names("*:lobby"), ["id"]);
    }

    #[test]
    fn wildcard_after_capture_or_leading_wildcard_is_param_n() {
        assert_eq!(names("{x}:*"), ["x", "param_1"]);
        assert_eq!(names("*:*"), ["id", "param_1"]);
        assert_eq!(names("room:{r}:*"), ["r", "param_2"]);
    }

    #[test]
    fn exact_pattern_has_no_captures() {
        let r = router(&["room:lobby"]);
        assert_eq!(r.capture_names(0), Some(&[][..]));
        assert_eq!(r.capture_names(1), None);
    }

    // --- compile errors

    #[test]
    fn duplicate_capture_is_rejected() {
        assert_eq!(
            compile_err("{x}:{x}"),
            RouterError::DuplicateCapture {
                pattern: "{x}:{x}".into(),
                name: "x".into()
            }
        );
        assert_eq!(
            compile_err("room:*:{room_id}"),
            RouterError::DuplicateCapture {
                pattern: "room:*:{room_id}".into(),
                name: "room_id".into()
            }
        );
        assert_eq!(
            compile_err("{param_1}:*:x"),
            RouterError::DuplicateCapture {
                pattern: "{param_1}:*:x".into(),
                name: "param_1".into()
            }
        );
        // repeated automatic names: channel_id twice
        assert_eq!(
            compile_err("a:*:*:b:*:*"),
            RouterError::DuplicateCapture {
                pattern: "a:*:*:b:*:*".into(),
                name: "channel_id".into()
            }
        );
        assert!(compile_err("{x}:{x}").to_string().contains("{x}:{x}"));
    }

    #[test]
    fn empty_pattern_is_rejected() {
        assert_eq!(
            compile_err(""),
            RouterError::EmptyPattern {
                pattern: String::new()
            }
        );
    }

    #[test]
    fn empty_segment_is_rejected() {
        for p in ["room:", ":room", "a::b", ":"] {
            assert_eq!(
                compile_err(p),
                RouterError::EmptySegment { pattern: p.into() },
                "{p}"
            );
            assert!(compile_err(p).to_string().contains(p));
        }
    }

    #[test]
    fn bad_segment_is_rejected() {
        for seg in [
            "{", "}", "{}", "a{b}", "{a}b", "{a", "a}", "{{a}}", "{a*}", "a*", "**", "*a",
        ] {
            let p = format!("room:{seg}");
            assert_eq!(
                compile_err(&p),
                RouterError::BadSegment {
                    pattern: p.clone(),
                    segment: seg.into()
                },
                "{p}"
            );
            assert!(compile_err(&p).to_string().contains(&p));
        }
    }

    #[test]
    fn first_bad_pattern_fails_whole_compile() {
        let e = Router::compile(&["ok:*", "bad::x"], 10).unwrap_err();
        assert_eq!(
            e,
            RouterError::EmptySegment {
                pattern: "bad::x".into()
            }
        );
    }

    // --- precedence

    #[test]
    fn exact_beats_wildcard() {
        let r = router(&["room:*", "room:lobby", "*:*"]);
        assert_eq!(r.match_topic("room:lobby"), matched(1, &[]));
        assert_eq!(
            r.match_topic("room:other"),
            matched(0, &[("room_id", "other")])
        );
    }

    #[test]
    fn literal_at_first_differing_segment_wins() {
        let r = router(&["*:lobby:*", "room:*:*", "room:*:x", "{a}:{b}:{c}"]);
        assert_eq!(
            r.match_topic("room:lobby:x"),
            matched(2, &[("room_id", "lobby")])
        );
        assert_eq!(
            r.match_topic("room:lobby:y"),
            matched(1, &[("room_id", "lobby"), ("channel_id", "y")])
        );
        assert_eq!(
            r.match_topic("hall:lobby:y"),
            matched(0, &[("id", "hall"), ("lobby_id", "y")])
        );
        assert_eq!(
            r.match_topic("hall:other:y"),
            matched(3, &[("a", "hall"), ("b", "other"), ("c", "y")])
        );
    }

    #[test]
    fn ties_go_to_pattern_given_first() {
        let r = router(&["room:{x}", "room:*", "room:lobby", "room:lobby"]);
        assert_eq!(r.match_topic("room:a"), matched(0, &[("x", "a")]));
        assert_eq!(r.match_topic("room:lobby"), matched(2, &[]));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn star_and_named_capture_have_equal_precedence() {
        let r = router(&["room:*", "room:{x}"]);
        assert_eq!(r.match_topic("room:a"), matched(0, &[("room_id", "a")]));
        let r = router(&["room:{x}", "room:*"]);
        assert_eq!(r.match_topic("room:a"), matched(0, &[("x", "a")]));
    }

    // --- limits

    #[test]
    fn topic_longer_than_max_is_too_long() {
        let r = Router::compile(&["*"], 5).unwrap();
        assert_eq!(r.match_topic("abcde"), matched(0, &[("id", "abcde")]));
        assert_eq!(r.match_topic("abcdef"), Match::TopicTooLong);
        // bytes, not chars: "ééé" is 6 bytes
        assert_eq!(r.match_topic("ééé"), Match::TopicTooLong);
        let empty = Router::compile::<&str>(&[], 5).unwrap();
        assert_eq!(empty.match_topic("abcdef"), Match::TopicTooLong);
        assert_eq!(empty.match_topic("abc"), Match::NoMatch);
        assert_eq!(r.max_topic_len(), 5);
    }

    #[test]
    fn empty_router() {
        let r = Router::compile::<String>(&[], DEFAULT_MAX_TOPIC_LEN).unwrap();
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        assert_eq!(r.match_topic(""), Match::NoMatch);
        assert_eq!(r.match_topic("x"), Match::NoMatch);
    }

    #[test]
    fn empty_topic_matches_nothing() {
        let r = router(&["*", "a"]);
        assert_eq!(r.match_topic(""), Match::NoMatch);
        assert_eq!(r.match_topic(":"), Match::NoMatch);
    }
}
