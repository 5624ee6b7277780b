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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
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

/// One client's view of the presences on the topic.
#[derive(Default, Debug)]
pub struct View {
    state_seen: bool,
    pending: Vec<Value>,
    keys: HashMap<String, HashSet<String>>,
}

impl View {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_state(&self) -> bool {
        self.state_seen
    }

    /// Applies a `presence_state` or `presence_diff`; true if it was one.
    pub fn on_event(&mut self, event: &str, payload: Value) -> bool {
        match event {
            "presence_state" => {
                self.keys.clear();
                if let Value::Object(entries) = payload {
                    for (key, entry) in entries {
                        let refs = refs_of(&entry);
                        if !refs.is_empty() {
                            self.keys.insert(key, refs);
                        }
                    }
                }
                self.state_seen = true;
                for diff in std::mem::take(&mut self.pending) {
                    self.apply_diff(&diff);
                }
                true
            }
            "presence_diff" => {
                if self.state_seen {
                    self.apply_diff(&payload);
                } else {
                    self.pending.push(payload);
                }
                true
            }
            _ => false,
        }
    }

    fn apply_diff(&mut self, diff: &Value) {
        if let Some(Value::Object(joins)) = diff.get("joins") {
            for (key, entry) in joins {
                self.keys
                    .entry(key.clone())
                    .or_default()
                    .extend(refs_of(entry));
            }
        }
        if let Some(Value::Object(leaves)) = diff.get("leaves") {
            for (key, entry) in leaves {
                if let Some(refs) = self.keys.get_mut(key) {
                    for r in refs_of(entry) {
                        refs.remove(&r);
                    }
                    if refs.is_empty() {
                        self.keys.remove(key);
                    }
                }
            }
        }
    }
}

fn refs_of(entry: &Value) -> HashSet<String> {
    entry
        .get("metas")
        .and_then(Value::as_array)
        .map(|metas| {
            metas
                .iter()
                .filter_map(|m| {
                    m.get("phx_ref").map(|r| {
                        r.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| r.to_string())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
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
    let mut view = View::default();
    tokio::time::sleep_until(t0).await;
    let on_frame = |text: &str, msg: Incoming, view: &mut View, out: &mut ClientOut| {
        sh.bytes
            .fetch_add(frame_bytes(text.len()), Ordering::Relaxed);
        sh.frames.fetch_add(1, Ordering::Relaxed);
        if let Incoming::Event { event, payload, .. } = msg {
            if view.on_event(&event, payload) {
                sh.saw_presence.store(true, Ordering::Relaxed);
            }
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
            match Proto::Phoenix.decode(&text) {
                Incoming::Reply { r: 1, ok, payload } => {
                    on_frame(&text, Incoming::Other, &mut view, &mut out);
                    return Ok::<_, String>((ok, payload));
                }
                msg => on_frame(&text, msg, &mut view, &mut out),
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
                Some(Ok(Message::Text(t))) => {
                    let msg = Proto::Phoenix.decode(&t);
                    on_frame(&t, msg, &mut view, &mut out);
                }
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

    #[test]
    fn view_follows_phoenix_semantics() {
        let mut v = View::default();
        // A diff before the state waits for it.
        assert!(v.on_event(
            "presence_diff",
            json!({"joins": {"b": {"metas": [{"phx_ref": "2"}]}}, "leaves": {}})
        ));
        assert_eq!(v.len(), 0);
        v.on_event(
            "presence_state",
            json!({"a": {"metas": [{"phx_ref": "1"}]}}),
        );
        assert_eq!(v.len(), 2);
        // Two tabs under one key; a leave removes only the matching phx_ref.
        v.on_event(
            "presence_diff",
            json!({"joins": {"a": {"metas": [{"phx_ref": "3"}]}}, "leaves": {}}),
        );
        v.on_event(
            "presence_diff",
            json!({"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "1"}]}}}),
        );
        assert_eq!(v.len(), 2);
        v.on_event(
            "presence_diff",
            json!({"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "3"}]}}}),
        );
        assert_eq!(v.len(), 1);
        assert!(!v.on_event("msg", json!({})));
    }
}
