//! Depth-limited JSON parsing.
//!
//! Untrusted JSON is checked in two steps:
//!
//! 1. [`depth`] — a linear, non-recursive scan that counts `[` and `{`
//!    outside string literals. It runs before any recursive parser sees
//!    the input, so a 10,000-deep `[[[[…` cannot blow the stack and is
//!    refused in O(n) time.
//! 2. `serde_json` parses the text, now known to be shallow.
//!
//! serde_json refuses nesting of 128 levels or more on its own (its
//! recursion limit); [`parse`] therefore clamps the caller's limit to
//! [`MAX_SUPPORTED_DEPTH`] so that every over-deep input reports
//! [`JsonError::TooDeep`] rather than a serde syntax error.

use std::fmt;

/// Default nesting limit for payloads received from clients.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// The deepest nesting [`parse`] can return as a `serde_json::Value`
/// (serde_json's built-in recursion limit is 128 levels, exclusive).
/// Larger `max_depth` arguments are clamped to this value.
pub const MAX_SUPPORTED_DEPTH: usize = 127;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON; the serde_json message, including line and column.
    Invalid(String),
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// Arrays/objects are nested deeper than `max_depth`.
    TooDeep { max_depth: usize },
}

impl JsonError {
    /// Stable machine-readable name: `"invalid_json"`, `"invalid_utf8"` or `"too_deep"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JsonError::Invalid(_) => "invalid_json",
            JsonError::InvalidUtf8 => "invalid_utf8",
            JsonError::TooDeep { .. } => "too_deep",
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Invalid(msg) => write!(f, "invalid JSON: {msg}"),
            JsonError::InvalidUtf8 => f.write_str("JSON text is not valid UTF-8"),
            JsonError::TooDeep { max_depth } => {
                write!(f, "JSON nesting exceeds the maximum depth of {max_depth}")
            }
        }
    }
}

impl std::error::Error for JsonError {}

/// Nesting depth of a syntactically valid JSON text: the maximum number of
/// simultaneously open `[` / `{` outside string literals (escapes inside
/// strings are respected). Scalars have depth 0, `[]` 1, `[[1]]` 2,
/// `{"a":[1]}` 2.
///
/// Linear time, constant memory, never recursive. For invalid JSON the
/// result is some number (unbalanced closers are ignored) and the function
/// never panics.
pub fn depth(valid_json: &[u8]) -> usize {
    let mut depth: usize = 0;
    let mut max: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in valid_json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    max = depth;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parse `bytes` as a JSON value whose nesting is at most `max_depth`
/// (clamped to [`MAX_SUPPORTED_DEPTH`]).
///
/// Order of checks: UTF-8 ([`JsonError::InvalidUtf8`]), then the linear
/// depth scan ([`JsonError::TooDeep`], reported before the syntax is
/// validated), then serde_json ([`JsonError::Invalid`]).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<serde_json::Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::InvalidUtf8)?;
    let limit = max_depth.min(MAX_SUPPORTED_DEPTH);
    if depth(bytes) > limit {
        return Err(JsonError::TooDeep { max_depth: limit });
    }
    serde_json::from_str(text).map_err(|e| JsonError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(n: usize) -> Vec<u8> {
        let mut v = vec![b'['; n];
        v.extend(std::iter::repeat_n(b']', n));
        v
    }

    #[test]
    fn depth_of_scalars_is_zero() {
        for s in ["1", "\"x\"", "null", "true", "-1.5e3", ""] {
            assert_eq!(depth(s.as_bytes()), 0, "{s}");
        }
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(depth(b"[]"), 1);
        assert_eq!(depth(b"{}"), 1);
        assert_eq!(depth(b"[[1]]"), 2);
        assert_eq!(depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(depth(b"[[],[],[[]]]"), 3);
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(br#"["[[[{{{"]"#), 1);
        assert_eq!(depth(br#"{"[": "]]]"}"#), 1);
    }

    #[test]
    fn depth_respects_escapes() {
        // the escaped quote does not end the string; the escaped backslash does not escape the quote
        assert_eq!(depth(br#"["\"[[[", "\\", [1]]"#), 2);
        assert_eq!(depth(br#"["\\\"[["]"#), 1);
    }

    #[test]
    fn depth_never_panics_on_garbage() {
        assert_eq!(depth(b"]]]]}}}"), 0);
        assert_eq!(depth(b"[\"unterminated [[["), 1);
        assert_eq!(depth(&[0xff, b'[', 0xfe]), 1);
    }

    #[test]
    fn parse_accepts_valid_json() {
        assert_eq!(parse(br#"{"a":[1,2]}"#, 64), Ok(json!({"a":[1,2]})));
        assert_eq!(parse(b" 5 ", 0), Ok(json!(5)));
    }

    #[test]
    fn parse_depth_limit_is_inclusive() {
        assert!(parse(&nested(3), 3).is_ok());
        assert_eq!(
            parse(&nested(4), 3),
            Err(JsonError::TooDeep { max_depth: 3 })
        );
        assert_eq!(parse(b"[]", 0), Err(JsonError::TooDeep { max_depth: 0 }));
    }

    #[test]
    fn parse_deep_input_does_not_overflow_stack() {
        let deep = vec![b'['; 10_000];
        assert_eq!(
            parse(&deep, DEFAULT_MAX_DEPTH),
            Err(JsonError::TooDeep { max_depth: 64 })
        );
        let deep = nested(100_000);
        assert_eq!(
            parse(&deep, usize::MAX),
            Err(JsonError::TooDeep {
                max_depth: MAX_SUPPORTED_DEPTH
            })
        );
    }

    #[test]
    fn parse_clamps_to_serde_limit() {
        assert!(parse(&nested(MAX_SUPPORTED_DEPTH), 1000).is_ok());
        assert_eq!(
            parse(&nested(MAX_SUPPORTED_DEPTH + 1), 1000),
            Err(JsonError::TooDeep {
                max_depth: MAX_SUPPORTED_DEPTH
            })
        );
    }

    #[test]
    fn parse_reports_serde_error_with_position() {
        let err = parse(b"[1,\n 2,", 64).unwrap_err();
        assert_eq!(err.as_str(), "invalid_json");
        match err {
            JsonError::Invalid(msg) => assert!(msg.contains("line 2"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse(b"[1] x", 64).unwrap_err().as_str(), "invalid_json");
        assert_eq!(parse(b"", 64).unwrap_err().as_str(), "invalid_json");
    }

    #[test]
    fn parse_invalid_utf8() {
        assert_eq!(parse(b"\"\xff\"", 64), Err(JsonError::InvalidUtf8));
        assert_eq!(parse(b"\xc3", 64), Err(JsonError::InvalidUtf8));
    }

    #[test]
    fn error_names_and_display() {
        assert_eq!(JsonError::InvalidUtf8.as_str(), "invalid_utf8");
        assert_eq!(JsonError::TooDeep { max_depth: 2 }.as_str(), "too_deep");
        assert_eq!(JsonError::Invalid("x".into()).as_str(), "invalid_json");
        assert!(JsonError::TooDeep { max_depth: 2 }
            .to_string()
            .contains('2'));
        assert!(JsonError::Invalid("boom at line 1 column 2".into())
            .to_string()
            .contains("boom"));
    }
}
