//! One user's presence view of its room, with Phoenix's client semantics:
//! `presence_state` replaces the view, `presence_diff` adds `joins` then
//! removes `leaves`, metas matched by `phx_ref` (a user who reconnects has
//! a new meta under the same key, and the old one's leave must not remove
//! it); diffs that arrive before the first state wait for it.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

#[derive(Debug, Default)]
pub struct View {
    state: Option<HashMap<String, HashSet<String>>>,
    early_diffs: Vec<Value>,
}

fn metas(entry: &Value) -> impl Iterator<Item = String> + '_ {
    entry
        .get("metas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| match m.get("phx_ref") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
}

impl View {
    pub fn set_state(&mut self, payload: &Value) {
        let mut state: HashMap<String, HashSet<String>> = HashMap::new();
        if let Some(obj) = payload.as_object() {
            for (key, entry) in obj {
                let refs: HashSet<String> = metas(entry).collect();
                if !refs.is_empty() {
                    state.insert(key.clone(), refs);
                }
            }
        }
        self.state = Some(state);
        for diff in std::mem::take(&mut self.early_diffs) {
            self.apply_diff(&diff);
        }
    }

    pub fn apply_diff(&mut self, payload: &Value) {
        let Some(state) = self.state.as_mut() else {
            self.early_diffs.push(payload.clone());
            return;
        };
        if let Some(joins) = payload.get("joins").and_then(Value::as_object) {
            for (key, entry) in joins {
                state.entry(key.clone()).or_default().extend(metas(entry));
            }
        }
        if let Some(leaves) = payload.get("leaves").and_then(Value::as_object) {
            for (key, entry) in leaves {
                if let Some(refs) = state.get_mut(key) {
                    for r in metas(entry) {
                        refs.remove(&r);
                    }
                    if refs.is_empty() {
                        state.remove(key);
                    }
                }
            }
        }
    }

    /// The keys present, once a state has arrived.
    pub fn keys(&self) -> Option<BTreeSet<String>> {
        self.state
            .as_ref()
            .map(|s| s.keys().cloned().collect::<BTreeSet<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: &View) -> Vec<String> {
        v.keys().unwrap_or_default().into_iter().collect()
    }

    #[test]
    fn a_reconnect_under_the_same_key_survives_the_old_metas_leave() {
        let mut v = View::default();
        v.set_state(&json!({"u1": {"metas": [{"phx_ref": "a"}]}}));
        v.apply_diff(&json!({"joins": {"u1": {"metas": [{"phx_ref": "b"}]}}, "leaves": {}}));
        v.apply_diff(&json!({"joins": {}, "leaves": {"u1": {"metas": [{"phx_ref": "a"}]}}}));
        assert_eq!(keys(&v), ["u1"]);
        v.apply_diff(&json!({"joins": {}, "leaves": {"u1": {"metas": [{"phx_ref": "b"}]}}}));
        assert!(keys(&v).is_empty());
    }

    #[test]
    fn diffs_before_the_state_wait_for_it() {
        let mut v = View::default();
        v.apply_diff(&json!({"joins": {"u2": {"metas": [{"phx_ref": "c"}]}}, "leaves": {}}));
        assert!(v.keys().is_none());
        v.set_state(&json!({"u1": {"metas": [{"phx_ref": "a"}]}}));
        assert_eq!(keys(&v), ["u1", "u2"]);
    }
}
