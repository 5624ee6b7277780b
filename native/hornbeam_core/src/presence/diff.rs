//! Presence metas, join/leave diffs and their Phoenix JSON shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One presence's meta as clients see it: the user's JSON object (without
/// the reserved keys) plus `phx_ref` and, after an update, `phx_ref_prev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Compact JSON text of an object, never containing `phx_ref` /
    /// `phx_ref_prev` keys (they are added by [`Meta::to_json`]).
    pub meta: Arc<str>,
    /// Unique id of this presence (of its dot), cluster-wide.
    pub phx_ref: Arc<str>,
    /// `phx_ref` of the presence this one replaced by an update.
    pub phx_ref_prev: Option<Arc<str>>,
}

impl Meta {
    /// The meta object with `phx_ref` (and `phx_ref_prev`) spliced in, as
    /// Phoenix sends it: `{"phx_ref":"…","phx_ref_prev":"…",<meta fields>}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.meta.len() + 48);
        self.write_json(&mut out);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        out.push_str("{\"phx_ref\":");
        push_json_str(out, &self.phx_ref);
        if let Some(prev) = &self.phx_ref_prev {
            out.push_str(",\"phx_ref_prev\":");
            push_json_str(out, prev);
        }
        // `meta` is a validated object text: `{` fields `}`.
        let t = self.meta.trim();
        let inner = t
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or("");
        if !inner.trim().is_empty() {
            out.push(',');
            out.push_str(inner);
        }
        out.push('}');
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = c as usize;
                out.push_str("\\u00");
                out.push(HEX[n >> 4] as char);
                out.push(HEX[n & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Metas of one key, keyed (and ordered) by `phx_ref`.
pub type Metas = BTreeMap<Arc<str>, Meta>;

/// Joins and leaves of one topic: `key → phx_ref → meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicDiff {
    pub joins: BTreeMap<Arc<str>, Metas>,
    pub leaves: BTreeMap<Arc<str>, Metas>,
}

impl TopicDiff {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// The `presence_diff` payload:
    /// `{"joins":{"k":{"metas":[…]}},"leaves":{"k":{"metas":[…]}}}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str("{\"joins\":");
        write_presences(&mut out, self.joins.iter().map(|(k, m)| (k, m.values())));
        out.push_str(",\"leaves\":");
        write_presences(&mut out, self.leaves.iter().map(|(k, m)| (k, m.values())));
        out.push('}');
        out
    }
}

/// Writes `{"key":{"metas":[meta,…]},…}` (the `presence_state` shape).
pub(crate) fn write_presences<'a, K, I, M>(out: &mut String, presences: I)
where
    K: AsRef<str> + 'a,
    I: Iterator<Item = (K, M)>,
    M: Iterator<Item = &'a Meta>,
{
    out.push('{');
    let mut first = true;
    for (key, metas) in presences {
        if !first {
            out.push(',');
        }
        first = false;
        push_json_str(out, key.as_ref());
        out.push_str(":{\"metas\":[");
        for (i, m) in metas.enumerate() {
            if i > 0 {
                out.push(',');
            }
            m.write_json(out);
        }
        out.push_str("]}");
    }
    out.push('}');
}

/// Presence changes as seen by one replica's readers, per topic.
///
/// A join and a leave of the same `phx_ref` cancel each other, so a diff
/// accumulated over several merges (see [`Diff::absorb`]) still equals the
/// change between the `list` views before and after, and clients that apply
/// joins before leaves (phoenix.js `syncDiff`) end in the right state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub topics: BTreeMap<Arc<str>, TopicDiff>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn join_count(&self) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.joins.values())
            .map(|m| m.len())
            .sum()
    }

    pub fn leave_count(&self) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.leaves.values())
            .map(|m| m.len())
            .sum()
    }

    /// Records that `meta` became visible under `topic`/`key`.
    pub fn join(&mut self, topic: &Arc<str>, key: &Arc<str>, meta: &Meta) {
        self.add(topic, key, meta, true);
    }

    /// Records that `meta` disappeared from `topic`/`key`.
    pub fn leave(&mut self, topic: &Arc<str>, key: &Arc<str>, meta: &Meta) {
        self.add(topic, key, meta, false);
    }

    /// Appends the changes of `later` (which happened after those of `self`),
    /// cancelling a join and a leave of the same `phx_ref`: the way to
    /// coalesce the diffs of one broadcast interval per topic.
    pub fn absorb(&mut self, later: Diff) {
        for (topic, td) in later.topics {
            for (key, metas) in td.leaves {
                for meta in metas.values() {
                    self.leave(&topic, &key, meta);
                }
            }
            for (key, metas) in td.joins {
                for meta in metas.values() {
                    self.join(&topic, &key, meta);
                }
            }
        }
    }

    fn add(&mut self, topic: &Arc<str>, key: &Arc<str>, meta: &Meta, join: bool) {
        let td = self.topics.entry(topic.clone()).or_default();
        let (same, other) = if join {
            (&mut td.joins, &mut td.leaves)
        } else {
            (&mut td.leaves, &mut td.joins)
        };
        let cancelled = match other.get_mut(&**key) {
            Some(metas) => {
                let hit = metas.remove(&meta.phx_ref).is_some();
                if metas.is_empty() {
                    other.remove(&**key);
                }
                hit
            }
            None => false,
        };
        if !cancelled {
            same.entry(key.clone())
                .or_default()
                .insert(meta.phx_ref.clone(), meta.clone());
        }
        if td.is_empty() {
            self.topics.remove(&**topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(r: &str, m: &str) -> Meta {
        Meta {
            meta: m.into(),
            phx_ref: r.into(),
            phx_ref_prev: None,
        }
    }

    #[test]
    fn presence_meta_json_splices_refs() {
        assert_eq!(meta("a", "{}").to_json(), r#"{"phx_ref":"a"}"#);
        let mut m = meta("a\"b", r#"{"x":1}"#);
        m.phx_ref_prev = Some("p".into());
        assert_eq!(
            m.to_json(),
            r#"{"phx_ref":"a\"b","phx_ref_prev":"p","x":1}"#
        );
        let mut s = String::new();
        push_json_str(&mut s, "\u{1}\n");
        assert_eq!(s, r#""\u0001\n""#);
    }

    #[test]
    fn presence_diff_cancels_by_ref() {
        let (t, k): (Arc<str>, Arc<str>) = ("t".into(), "k".into());
        let mut d = Diff::default();
        d.join(&t, &k, &meta("1", "{}"));
        d.leave(&t, &k, &meta("2", "{}"));
        let mut later = Diff::default();
        later.leave(&t, &k, &meta("1", "{}"));
        later.join(&t, &k, &meta("2", "{}"));
        d.absorb(later);
        assert!(d.is_empty(), "{d:?}");
        d.join(&t, &k, &meta("3", r#"{"a":true}"#));
        assert_eq!(
            d.topics[&t].to_json(),
            r#"{"joins":{"k":{"metas":[{"phx_ref":"3","a":true}]}},"leaves":{}}"#
        );
    }
}
