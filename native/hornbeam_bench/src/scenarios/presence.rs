//! **presence**: N clients join one topic at once, each tracked by the
//! server under its own key (join payload `{"presence_key": "u<i>"}`).
//! Every client keeps its own view with Phoenix semantics: `presence_state`
//! replaces the view, `presence_diff` adds `joins` and removes `leaves`,
//! metas matched by `phx_ref` (never by key); diffs that arrive before the
//! state wait for it. Reports the time until every client's view holds all
//! N keys and the bytes the server sent (WebSocket frames, headers included).
//!
//! Only the Phoenix protocol has presence here; a server whose join reply
//! says `"presence": false`, or that sends no presence at all, is reported
//! as `not_supported`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Common, Report};
use crate::args::Args;
use crate::conn::{open_many, recv_text, send, Ws};
use crate::procfs::{rss_kib, CpuMeter};
use crate::proto::{Incoming, Proto};
use crate::stats::{round, summary};

// The views are the load generator's hot path: with N joiners every client
// receives about N entries, N^2 in all (300 MB and 4 M entries for 2,000).
// Frames are parsed into borrowed, typed structs that skip what the view
// does not need; a key is held as a small id shared by all views and a meta
// as the hash of its phx_ref, so 2,000 views fit in ~100 MB and the figure
// measures the server rather than this client's allocator and page faults.

/// FxHash (rustc's): the keys are ours, so no DoS-resistant hasher is needed.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fx = BuildHasherDefault<FxHasher>;

/// The id of a presence key, the same for every view of this process.
fn key_id(key: &str) -> u32 {
    static IDS: OnceLock<Mutex<HashMap<Box<str>, u32, Fx>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&id) = ids.get(key) {
        return id;
    }
    let id = ids.len() as u32;
    ids.insert(key.into(), id);
    id
}

/// The metas of one key in a view; nearly always one.
#[derive(Debug)]
enum Refs {
    One(u64),
    Many(Vec<u64>),
}

impl Refs {
    fn add(&mut self, r: u64) {
        match self {
            Refs::One(old) if *old == r => {}
            Refs::One(old) => *self = Refs::Many(vec![*old, r]),
            Refs::Many(v) if v.contains(&r) => {}
            Refs::Many(v) => v.push(r),
        }
    }

    /// Removes r; true when no meta is left.
    fn remove(&mut self, r: u64) -> bool {
        match self {
            Refs::One(old) if *old == r => {
                *self = Refs::Many(Vec::new());
                true
            }
            Refs::One(_) => false,
            Refs::Many(v) => {
                v.retain(|x| *x != r);
                v.is_empty()
            }
        }
    }
}

/// The presences of a key: only the metas' `phx_ref`s matter here.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    metas: Vec<MetaRef<'a>>,
}

#[derive(Deserialize)]
struct MetaRef<'a> {
    #[serde(borrow)]
    phx_ref: Option<&'a RawValue>,
}

/// Walks a `{key: {"metas": [...]}}` object, calling `f(key, entry)` for
/// each entry as it is parsed, without building a map of them.
struct Walk<F>(F);

impl<'de, F: FnMut(&str, &Entry)> Visitor<'de> for Walk<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of presences")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some((key, entry)) = map.next_entry::<Cow<'de, str>, Entry<'de>>()? {
            (self.0)(&key, &entry);
        }
        Ok(())
    }
}

impl<'de, F: FnMut(&str, &Entry)> DeserializeSeed<'de> for Walk<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

fn for_each_entry(json: &str, f: impl FnMut(&str, &Entry)) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Walk(f))
}

/// Applies a `presence_diff` payload to a view in one pass: joins first,
/// then leaves (leaves written before joins wait, raw, until the joins).
struct DiffSeed<'v>(&'v mut View);

impl<'de> Visitor<'de> for DiffSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a presence diff")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let view = self.0;
        let mut joined = false;
        let mut early_leaves: Option<&'de RawValue> = None;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            match field.as_ref() {
                "joins" => {
                    map.next_value_seed(Walk(|k: &str, e: &Entry| view.join(k, e)))?;
                    joined = true;
                }
                "leaves" if joined => {
                    map.next_value_seed(Walk(|k: &str, e: &Entry| view.leave(k, e)))?
                }
                "leaves" => early_leaves = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(raw) = early_leaves {
            for_each_entry(raw.get(), |k, e| view.leave(k, e)).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for DiffSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Reads `[join_ref, ref, topic, event, payload]` and hands a presence
/// payload to the view while it is parsed; true if it was a presence event.
struct FrameVisitor<'v>(&'v mut View);

impl<'de> Visitor<'de> for FrameVisitor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Phoenix V2 message")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        for _ in 0..3 {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(false);
            }
        }
        let event: Option<Cow<'de, str>> = seq.next_element()?;
        let view = self.0;
        let presence = match event.as_deref() {
            Some("presence_state") => {
                view.keys.clear();
                seq.next_element_seed(Walk(|k: &str, e: &Entry| view.join(k, e)))?;
                view.state_seen = true;
                for diff in std::mem::take(&mut view.pending) {
                    view.apply_diff(&diff);
                }
                true
            }
            Some("presence_diff") if view.state_seen => {
                seq.next_element_seed(DiffSeed(view))?;
                true
            }
            Some("presence_diff") => {
                if let Some(raw) = seq.next_element::<&RawValue>()? {
                    view.pending.push(raw.get().to_string());
                }
                true
            }
            _ => false,
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(presence)
    }
}

fn ref_hashes<'a>(entry: &'a Entry<'a>) -> impl Iterator<Item = u64> + 'a {
    entry.metas.iter().filter_map(|m| {
        m.phx_ref.map(|r| {
            let mut h = FxHasher::default();
            h.write(r.get().as_bytes());
            h.finish()
        })
    })
}

/// One client's view of the presences on the topic.
#[derive(Default, Debug)]
pub struct View {
    state_seen: bool,
    /// raw diffs that arrived before the state
    pending: Vec<String>,
    keys: HashMap<u32, Refs, Fx>,
}

impl View {
    /// A view sized for `n` keys up front (no rehashing while it fills).
    pub fn with_capacity(n: usize) -> View {
        View {
            keys: HashMap::with_capacity_and_hasher(n, Fx::default()),
            ..View::default()
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_state(&self) -> bool {
        self.state_seen
    }

    /// Applies a `presence_state` or `presence_diff` frame (the whole
    /// Phoenix array as text); true if it was one.
    pub fn on_frame(&mut self, text: &str) -> bool {
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_seq(FrameVisitor(self)).unwrap_or(false)
    }

    fn apply_diff(&mut self, payload: &str) {
        let mut de = serde_json::Deserializer::from_str(payload);
        let _ = DiffSeed(self).deserialize(&mut de);
    }

    fn leave(&mut self, key: &str, entry: &Entry) {
        let id = key_id(key);
        if let Some(refs) = self.keys.get_mut(&id) {
            if ref_hashes(entry).fold(false, |_, r| refs.remove(r)) {
                self.keys.remove(&id);
            }
        }
    }

    fn join(&mut self, key: &str, entry: &Entry) {
        let id = key_id(key);
        for r in ref_hashes(entry) {
            match self.keys.get_mut(&id) {
                Some(refs) => refs.add(r),
                None => {
                    self.keys.insert(id, Refs::One(r));
                }
            }
        }
    }
}

#[derive(Default)]
struct Shared {
    bytes: AtomicU64,
    frames: AtomicU64,
    converged: AtomicUsize,
    saw_presence: AtomicBool,
    refused: AtomicBool,
}

fn frame_bytes(len: usize) -> u64 {
    let header = if len < 126 {
        2
    } else if len < 65_536 {
        4
    } else {
        10
    };
    (len + header) as u64
}

pub async fn run(a: &Args) -> Result<Report, String> {
    let c = Common::from_args(a)?;
    let clients = a.num_or("clients", 100usize)?;
    let timeout = Duration::from_millis(a.num_or("timeout-ms", 30_000u64)?);
    a.finish()?;
    let mut params = c.params();
    params.insert("clients".into(), json!(clients));
    params.insert("timeout_ms".into(), json!(timeout.as_millis() as u64));
    let report = Report::new("presence", &c, params);
    if c.target.proto != Proto::Phoenix {
        return Ok(report.fail(
            "not_supported",
            format!(
                "no presence on the {} protocol peers",
                c.target.proto.name()
            ),
        ));
    }
    run_phoenix(c, clients, timeout, report).await
}

async fn run_phoenix(
    c: Common,
    clients: usize,
    timeout: Duration,
    mut report: Report,
) -> Result<Report, String> {
    let opened = open_many(
        &c.target,
        &c.srcs,
        clients,
        c.concurrency,
        None,
        c.connect_timeout,
    )
    .await;
    report.fig("clients_connected", opened.conns.len());
    report.fig("connect_failures", opened.failures);
    if opened.conns.is_empty() {
        let why = opened.first_error.unwrap_or_default();
        return Ok(report.fail("error", format!("no client could connect: {why}")));
    }
    let n = opened.conns.len();
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let t0 = Instant::now() + Duration::from_millis(100);
    let rss_before = rss_kib(&c.server_pids);
    let meter = CpuMeter::start(&c.server_pids);
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(client(
                ws,
                i,
                n,
                c.topic.clone(),
                t0,
                shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    let deadline = t0 + timeout;
    let mut all_at = None;
    while Instant::now() < deadline {
        if shared.converged.load(Ordering::Relaxed) >= n {
            all_at = Some(Instant::now());
            break;
        }
        if shared.refused.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A little longer, to count the tail of the bytes the server sends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (loadgen_cpu, server_cpu) = meter.stop();
    let rss_after = rss_kib(&c.server_pids);
    let _ = stop_tx.send(true);
    let (mut conv, mut joins, mut errors, mut first_error) = (Vec::new(), Vec::new(), 0usize, None);
    for t in tasks {
        match t.await {
            Ok(out) => {
                conv.extend(out.converged_us);
                joins.extend(out.join_us);
                if let Some(e) = out.error {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if shared.refused.load(Ordering::Relaxed) {
        return Ok(report.fail(
            "not_supported",
            "the server's join reply says presence is not available",
        ));
    }
    if !shared.saw_presence.load(Ordering::Relaxed) {
        // Joins that failed are the server's error; joins that worked without
        // any presence frame mean the server has no presence.
        return Ok(match first_error {
            Some(e) => report.fail("error", format!("{errors} client(s) failed: {e}")),
            None => report.fail(
                "not_supported",
                "no presence_state or presence_diff received",
            ),
        });
    }
    let converged = conv.len();
    let bytes = shared.bytes.load(Ordering::Relaxed);
    report.fig("converged_clients", converged);
    report.fig("all_converged", converged == n);
    if let Some(at) = all_at {
        report.fig("convergence_ms", round((at - t0).as_secs_f64() * 1000.0, 1));
    }
    report.fig("client_convergence", summary(conv));
    report.fig("join_latency", summary(joins));
    report.fig("bytes_from_server", bytes);
    report.fig("frames_from_server", shared.frames.load(Ordering::Relaxed));
    report.fig("bytes_per_client", round(bytes as f64 / n as f64, 1));
    report.fig("client_errors", errors);
    if let Some(e) = first_error {
        report.fig("first_client_error", e);
    }
    report.fig("loadgen_cpu_pct", loadgen_cpu);
    if let Some(cpu) = server_cpu {
        report.fig("server_cpu_pct", cpu);
        report.fig("server_rss_delta_kib", rss_after as i64 - rss_before as i64);
    }
    if converged < n {
        report = report.fail(
            "error",
            format!("{converged} of {n} clients converged within {timeout:?}"),
        );
    }
    Ok(report)
}

struct ClientOut {
    converged_us: Option<u32>,
    join_us: Option<u32>,
    error: Option<String>,
}

async fn client(
    mut ws: Ws,
    i: usize,
    n: usize,
    topic: String,
    t0: Instant,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ClientOut {
    let mut out = ClientOut {
        converged_us: None,
        join_us: None,
        error: None,
    };
    let mut view = View::with_capacity(n);
    tokio::time::sleep_until(t0).await;
    let on_frame = |text: &str, view: &mut View, out: &mut ClientOut| {
        sh.bytes
            .fetch_add(frame_bytes(text.len()), Ordering::Relaxed);
        sh.frames.fetch_add(1, Ordering::Relaxed);
        if view.on_frame(text) {
            sh.saw_presence.store(true, Ordering::Relaxed);
        }
        if out.converged_us.is_none() && view.len() >= n {
            out.converged_us = Some((Instant::now() - t0).as_micros() as u32);
            sh.converged.fetch_add(1, Ordering::Relaxed);
        }
    };
    let frame = Proto::Phoenix.join(&topic, 1, &format!(r#"{{"presence_key":"u{i}"}}"#));
    let joined = async {
        send(&mut ws, frame).await?;
        loop {
            let text = recv_text(&mut ws).await?.ok_or("closed while joining")?;
            on_frame(&text, &mut view, &mut out);
            if let Incoming::Reply { r: 1, ok, payload } = Proto::Phoenix.decode_light(&text) {
                return Ok::<_, String>((ok, payload));
            }
        }
    }
    .await;
    match joined {
        Ok((true, reply)) => {
            out.join_us = Some((Instant::now() - t0).as_micros() as u32);
            if reply.get("presence") == Some(&Value::Bool(false)) {
                sh.refused.store(true, Ordering::Relaxed);
                return out;
            }
        }
        Ok((false, reply)) => {
            out.error = Some(format!("join refused: {reply}"));
            return out;
        }
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => on_frame(&t, &mut view, &mut out),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    if out.converged_us.is_none() {
                        out.error = Some("closed before converging".into());
                    }
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a presence payload as the frame a server would send.
    fn ev(v: &mut View, event: &str, payload: Value) -> bool {
        v.on_frame(&json!([null, null, "t", event, payload]).to_string())
    }

    #[test]
    fn view_follows_phoenix_semantics() {
        let mut v = View::default();
        // A diff before the state waits for it.
        assert!(ev(
            &mut v,
            "presence_diff",
            json!({"joins": {"b": {"metas": [{"phx_ref": "2"}]}}, "leaves": {}})
        ));
        assert_eq!(v.len(), 0);
        ev(
            &mut v,
            "presence_state",
            json!({"a": {"metas": [{"phx_ref": "1"}]}}),
        );
        assert_eq!(v.len(), 2);
        // Two tabs under one key; a leave removes only the matching phx_ref.
        ev(
            &mut v,
            "presence_diff",
            json!({"joins": {"a": {"metas": [{"phx_ref": "3"}]}}, "leaves": {}}),
        );
        ev(
            &mut v,
            "presence_diff",
            json!({"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "1"}]}}}),
        );
        assert_eq!(v.len(), 2);
        ev(
            &mut v,
            "presence_diff",
            json!({"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "3"}]}}}),
        );
        assert_eq!(v.len(), 1);
        assert!(!ev(&mut v, "msg", json!({})));
    }

    #[test]
    fn whole_frames_with_escapes_and_other_meta_fields() {
        let mut v = View::default();
        let state = r#"["1",null,"room:x","presence_state",{"u\"1":{"metas":[{"online_at":1,"phx_ref":"A"}]},"u2":{"metas":[{"phx_ref":"B","nested":{"k":[1,2]}}]}}]"#;
        assert!(v.on_frame(state));
        assert_eq!(v.len(), 2);
        let diff = r#"["1",null,"room:x","presence_diff",{"joins":{"u3":{"metas":[{"phx_ref":"C"}]}},"leaves":{"u\"1":{"metas":[{"phx_ref":"A"}]}}}]"#;
        assert!(v.on_frame(diff));
        assert_eq!(v.len(), 2);
        assert!(!v.on_frame(r#"["1","1","room:x","phx_reply",{"status":"ok","response":{}}]"#));
        assert!(!v.on_frame("not json"));
        // leaves written before joins still apply after them
        let diff = r#"["1",null,"room:x","presence_diff",{"leaves":{"u4":{"metas":[{"phx_ref":"D"}]}},"joins":{"u4":{"metas":[{"phx_ref":"D"}]}}}]"#;
        assert!(v.on_frame(diff));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn one_diff_leaving_two_tabs_of_a_key() {
        let mut v = View::default();
        ev(
            &mut v,
            "presence_state",
            json!({"k": {"metas": [{"phx_ref": "1"}, {"phx_ref": "2"}]}, "j": {"metas": [{"phx_ref": "3"}]}}),
        );
        assert_eq!(v.len(), 2);
        ev(
            &mut v,
            "presence_diff",
            json!({"joins": {}, "leaves": {"k": {"metas": [{"phx_ref": "2"}, {"phx_ref": "1"}]}, "j": {"metas": [{"phx_ref": "3"}, {"phx_ref": "9"}]}}}),
        );
        assert_eq!(v.len(), 0);
    }
}
