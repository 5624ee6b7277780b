//! The soak's timeline: counters per time bucket and per node, so the
//! driver (`bench/soak.py`) can line them up with the faults it injected.
//!
//! A request's outcome is filed under the bucket of its *send* time (so
//! "requests sent after the fault" is a range of buckets); connections,
//! drops and channel errors under the time they happened. Times are Unix
//! milliseconds: the driver's clock is the same wall clock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a request (a `ping` or a `publish`) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `phx_reply` with status ok and our own payload back.
    Ok,
    /// `phx_reply` with status error (its reason is counted in `error_reasons`).
    Error,
    /// A reply whose payload is not the one we sent.
    Wrong,
    /// The socket stayed open, the channel was not closed or errored by the
    /// server, and no reply came within the call timeout.
    Lost,
    /// The socket closed, or the server errored/closed the channel, before
    /// the reply came: the client knows, and rejoins.
    Interrupted,
}

/// What happened to the echo of a `publish` (the broadcast reaching its own
/// sender, who is subscribed to the room).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    Ok,
    /// Socket open and channel joined the whole time, no copy within the call timeout.
    Lost,
    Interrupted,
}

/// Counters of one node in one bucket.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeBucket {
    pub sent: u32,
    pub ok: u32,
    pub error: u32,
    pub wrong: u32,
    pub lost: u32,
    pub interrupted: u32,
    /// Earliest completion (Unix ms) of an ok reply to a request sent in this bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ok_ms: Option<u64>,
    pub publishes: u32,
    pub echo_ok: u32,
    pub echo_lost: u32,
    pub echo_interrupted: u32,
    /// Broadcast copies received on this node from publishes sent on another
    /// node in this bucket, and how many members were joined here at send time.
    pub cross_in: u32,
    pub cross_expected: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_cross_in_ms: Option<u64>,
    pub joins: u32,
    pub join_failures: u32,
    pub connect_failures: u32,
    /// Sockets the server closed (or that broke) under a client that meant to stay.
    pub drops: u32,
    pub channel_errors: u32,
}

impl NodeBucket {
    fn is_empty(&self) -> bool {
        self.sent == 0
            && self.ok + self.error + self.wrong + self.lost + self.interrupted == 0
            && self.publishes == 0
            && self.cross_in == 0
            && self.cross_expected == 0
            && self.joins == 0
            && self.join_failures == 0
            && self.connect_failures == 0
            && self.drops == 0
            && self.channel_errors == 0
            && self.echo_ok + self.echo_lost + self.echo_interrupted == 0
    }
}

fn min_opt(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

pub struct Tally {
    bucket_ms: u64,
    nodes: usize,
    buckets: Mutex<BTreeMap<u64, Vec<NodeBucket>>>,
    error_reasons: Mutex<BTreeMap<String, u64>>,
    latencies_us: Mutex<Vec<Vec<u32>>>,
}

impl Tally {
    pub fn new(nodes: usize, bucket_ms: u64) -> Tally {
        Tally {
            bucket_ms: bucket_ms.max(1),
            nodes,
            buckets: Mutex::new(BTreeMap::new()),
            error_reasons: Mutex::new(BTreeMap::new()),
            latencies_us: Mutex::new(vec![Vec::new(); nodes]),
        }
    }

    /// Applies `f` to the counters of `node` in the bucket holding time `at_ms`.
    pub fn at(&self, at_ms: u64, node: usize, f: impl FnOnce(&mut NodeBucket)) {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let row = buckets
            .entry(at_ms / self.bucket_ms)
            .or_insert_with(|| vec![NodeBucket::default(); self.nodes]);
        if let Some(b) = row.get_mut(node) {
            f(b);
        }
    }

    pub fn outcome(&self, sent_ms: u64, node: usize, o: Outcome, done_ms: u64) {
        self.at(sent_ms, node, |b| match o {
            Outcome::Ok => {
                b.ok += 1;
                b.first_ok_ms = min_opt(b.first_ok_ms, done_ms);
            }
            Outcome::Error => b.error += 1,
            Outcome::Wrong => b.wrong += 1,
            Outcome::Lost => b.lost += 1,
            Outcome::Interrupted => b.interrupted += 1,
        });
    }

    pub fn echo(&self, sent_ms: u64, node: usize, e: Echo) {
        self.at(sent_ms, node, |b| match e {
            Echo::Ok => b.echo_ok += 1,
            Echo::Lost => b.echo_lost += 1,
            Echo::Interrupted => b.echo_interrupted += 1,
        });
    }

    pub fn cross_in(&self, sent_ms: u64, node: usize, got_ms: u64) {
        self.at(sent_ms, node, |b| {
            b.cross_in += 1;
            b.first_cross_in_ms = min_opt(b.first_cross_in_ms, got_ms);
        });
    }

    pub fn error_reason(&self, reason: &str) {
        let mut m = self
            .error_reasons
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *m.entry(reason.to_string()).or_insert(0) += 1;
    }

    pub fn latency(&self, node: usize, us: u32) {
        let mut l = self
            .latencies_us
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(v) = l.get_mut(node) {
            v.push(us);
        }
    }

    /// Totals per node over the whole run.
    pub fn totals(&self) -> Vec<NodeBucket> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = vec![NodeBucket::default(); self.nodes];
        for row in buckets.values() {
            for (t, b) in out.iter_mut().zip(row) {
                t.sent += b.sent;
                t.ok += b.ok;
                t.error += b.error;
                t.wrong += b.wrong;
                t.lost += b.lost;
                t.interrupted += b.interrupted;
                t.publishes += b.publishes;
                t.echo_ok += b.echo_ok;
                t.echo_lost += b.echo_lost;
                t.echo_interrupted += b.echo_interrupted;
                t.cross_in += b.cross_in;
                t.cross_expected += b.cross_expected;
                t.joins += b.joins;
                t.join_failures += b.join_failures;
                t.connect_failures += b.connect_failures;
                t.drops += b.drops;
                t.channel_errors += b.channel_errors;
            }
        }
        out
    }

    pub fn error_reasons(&self) -> Value {
        json!(*self
            .error_reasons
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn latencies(&self) -> Vec<Vec<u32>> {
        std::mem::take(
            &mut *self
                .latencies_us
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// `[{"t_ms": bucket start, "nodes": [NodeBucket, ...]}, ...]`, empty buckets left out.
    pub fn timeline(&self) -> Value {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Value::Array(
            buckets
                .iter()
                .filter(|(_, row)| row.iter().any(|b| !b.is_empty()))
                .map(|(k, row)| json!({"t_ms": k * self.bucket_ms, "nodes": row}))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_filed_under_the_send_bucket_with_the_first_ok_time() {
        let t = Tally::new(2, 100);
        t.outcome(1_050, 1, Outcome::Ok, 1_300);
        t.outcome(1_099, 1, Outcome::Ok, 1_200);
        t.outcome(1_100, 1, Outcome::Lost, 0);
        t.outcome(1_120, 0, Outcome::Interrupted, 0);
        let tl = t.timeline();
        assert_eq!(tl[0]["t_ms"], 1_000);
        assert_eq!(tl[0]["nodes"][1]["ok"], 2);
        assert_eq!(tl[0]["nodes"][1]["first_ok_ms"], 1_200);
        assert_eq!(tl[1]["nodes"][1]["lost"], 1);
        assert_eq!(tl[1]["nodes"][0]["interrupted"], 1);
        let totals = t.totals();
        assert_eq!(
            (totals[1].ok, totals[1].lost, totals[0].interrupted),
            (2, 1, 1)
        );
    }

    #[test]
    fn cross_node_deliveries_keep_the_earliest_arrival() {
        let t = Tally::new(2, 100);
        t.cross_in(500, 0, 900);
        t.cross_in(510, 0, 700);
        let tl = t.timeline();
        assert_eq!(tl[0]["nodes"][0]["cross_in"], 2);
        assert_eq!(tl[0]["nodes"][0]["first_cross_in_ms"], 700);
        assert!(tl[0]["nodes"][1].get("first_cross_in_ms").is_none());
    }
}
