//! **fanout**: S subscribers joined to one topic, one publisher pushing M
//! `publish` events that the server broadcasts to the topic as `msg`.
//!
//! The publisher runs closed-loop by default: message k+W is sent once
//! message k has reached every subscriber (or `--message-timeout-ms` has
//! passed), so queues stay bounded and the figures show what the server
//! sustains; `--rate R` publishes open-loop at R messages/s instead.
//! Payloads carry the send time (one clock: everything is in this process);
//! receivers read it without decoding the JSON.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::time::{interval_at, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::{stamped_payload, Common, Report};
use crate::args::Args;
use crate::clock::now_us;
use crate::conn::{connect_and_join, open_many, send, Ws};
use crate::procfs::{rss_kib, CpuMeter};
use crate::proto::{scan_u64, Incoming, Proto};
use crate::stats::{round, summary};

struct Shared {
    subscribers: u32,
    delivered: Vec<AtomicU32>,
    total: AtomicU64,
    last_recv: AtomicU64,
    closed: AtomicUsize,
    notify: Notify,
}

pub async fn run(a: &Args) -> Result<Report, String> {
    let c = Common::from_args(a)?;
    let subscribers = a.num_or("subscribers", 100usize)?;
    let messages = a.num_or("messages", 100u64)?;
    let window = a.num_or("window", 2u64)?.max(1);
    let rate = a.num_or("rate", 0f64)?;
    let size = a.num_or("size", 32usize)?;
    let drain = Duration::from_millis(a.num_or("drain-ms", 5_000u64)?);
    let msg_timeout = Duration::from_millis(a.num_or("message-timeout-ms", 2_000u64)?);
    let duration = Duration::from_millis(a.num_or("duration-ms", 0u64)?);
    a.finish()?;

    let mut params = c.params();
    params.insert("subscribers".into(), json!(subscribers));
    params.insert("messages".into(), json!(messages));
    params.insert("payload_pad_bytes".into(), json!(size));
    if !duration.is_zero() {
        params.insert(
            "publish_duration_cap_ms".into(),
            json!(duration.as_millis() as u64),
        );
    }
    if rate > 0.0 {
        params.insert("mode".into(), json!("open_loop"));
        params.insert("rate_per_s".into(), json!(rate));
    } else {
        params.insert("mode".into(), json!("closed_loop"));
        params.insert("window".into(), json!(window));
        params.insert(
            "message_timeout_ms".into(),
            json!(msg_timeout.as_millis() as u64),
        );
    }
    let mut report = Report::new("fanout", &c, params);

    let opened = open_many(
        &c.target,
        &c.srcs,
        subscribers,
        c.concurrency,
        Some(&c.topic),
        c.connect_timeout,
    )
    .await;
    report.fig("subscribers_connected", opened.conns.len());
    report.fig("connect_failures", opened.failures);
    report.fig("connect_s", round(opened.elapsed.as_secs_f64(), 3));
    if let Some(e) = &opened.first_error {
        report.fig("first_connect_error", e.as_str());
    }
    if opened.conns.is_empty() {
        let why = opened.first_error.unwrap_or_default();
        return Ok(report.fail("error", format!("no subscriber could join: {why}")));
    }
    let publisher = match connect_and_join(&c.target, c.srcs.next(), &c.topic, "{}").await {
        Ok((ws, _)) => ws,
        Err(e) => return Ok(report.fail("error", format!("publisher could not join: {e}"))),
    };

    let s = opened.conns.len() as u32;
    let shared = Arc::new(Shared {
        subscribers: s,
        delivered: (0..messages).map(|_| AtomicU32::new(0)).collect(),
        total: AtomicU64::new(0),
        last_recv: AtomicU64::new(0),
        closed: AtomicUsize::new(0),
        notify: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .map(|ws| {
            tokio::spawn(subscriber(
                ws,
                c.target.proto,
                shared.clone(),
                stop_rx.clone(),
                c.heartbeat,
            ))
        })
        .collect();
    // Let the last joins settle before the first publish.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let meter = CpuMeter::start(&c.server_pids);
    let first_send = now_us();
    let until = (!duration.is_zero()).then(|| Instant::now() + duration);
    let limits = Limits {
        messages,
        window,
        rate,
        size,
        msg_timeout,
        until,
    };
    let out = publish(publisher, &c, &shared, &limits).await;
    let (sent, window_timeouts, publish_errors, publisher_error, mut publisher) = out;
    let expected = s as u64 * sent;
    let drain_until = Instant::now() + drain;
    while shared.total.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        // Keep reading the publisher's socket (its own copies of the broadcasts).
        let _ = tokio::time::timeout(Duration::from_millis(10), publisher.next()).await;
    }
    let (loadgen_cpu, server_cpu) = meter.stop();
    let rss = (!c.server_pids.is_empty()).then(|| rss_kib(&c.server_pids));
    let _ = stop_tx.send(true);
    let mut lats = Vec::with_capacity(expected as usize);
    for t in tasks {
        if let Ok(mut l) = t.await {
            lats.append(&mut l);
        }
    }

    let delivered = shared.total.load(Ordering::Relaxed);
    let span_s = (shared
        .last_recv
        .load(Ordering::Relaxed)
        .saturating_sub(first_send)) as f64
        / 1e6;
    report.fig("messages_sent", sent);
    report.fig("expected", expected);
    report.fig("delivered", delivered);
    report.fig("lost", expected.saturating_sub(delivered));
    report.fig(
        "delivery_ratio",
        if expected > 0 {
            round(delivered as f64 / expected as f64, 5)
        } else {
            0.0
        },
    );
    report.fig("duration_s", round(span_s, 3));
    report.fig(
        "delivered_per_s",
        if span_s > 0.0 {
            (delivered as f64 / span_s).round()
        } else {
            0.0
        },
    );
    report.fig("latency", summary(lats));
    report.fig("subscribers_closed", shared.closed.load(Ordering::Relaxed));
    report.fig("window_timeouts", window_timeouts);
    report.fig("publish_errors", publish_errors);
    report.fig("loadgen_cpu_pct", loadgen_cpu);
    if let Some(cpu) = server_cpu {
        report.fig("server_cpu_pct", cpu);
    }
    if let Some(rss) = rss {
        report.fig("server_rss_kib", rss);
    }
    if let Some(e) = publisher_error {
        report = report.fail("error", format!("publisher: {e}"));
    }
    Ok(report)
}

async fn subscriber(
    mut ws: Ws,
    proto: Proto,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    hb: Duration,
) -> Vec<u32> {
    let mut lats = Vec::new();
    let mut heartbeat = interval_at(Instant::now() + hb, hb);
    let mut r = 1_000u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = heartbeat.tick() => {
                if let Some(frame) = proto.heartbeat(r) {
                    r += 1;
                    if send(&mut ws, frame).await.is_err() {
                        sh.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t == "2" {
                        let _ = send(&mut ws, proto.pong().to_string()).await;
                    } else if let Some(ts) = scan_u64(&t, "\"bench_t\":") {
                        let now = now_us();
                        lats.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                        if let Some(seq) = scan_u64(&t, "\"seq\":") {
                            if let Some(d) = sh.delivered.get(seq as usize) {
                                if d.fetch_add(1, Ordering::Relaxed) + 1 == sh.subscribers {
                                    sh.notify.notify_one();
                                }
                            }
                        }
                        sh.total.fetch_add(1, Ordering::Relaxed);
                        sh.last_recv.fetch_max(now, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    sh.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    lats
}

type PublishOutcome = (u64, u64, u64, Option<String>, Ws);

#[derive(Clone, Copy)]
struct Limits {
    messages: u64,
    window: u64,
    rate: f64,
    size: usize,
    msg_timeout: Duration,
    /// Stop publishing at this time even if fewer than `messages` went out.
    until: Option<Instant>,
}

async fn publish(mut ws: Ws, c: &Common, sh: &Shared, l: &Limits) -> PublishOutcome {
    let Limits {
        messages,
        window,
        rate,
        size,
        msg_timeout,
        until,
    } = *l;
    let proto = c.target.proto;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(messages as usize);
    let mut ticker = (rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let (mut window_timeouts, mut errors) = (0u64, 0u64);
    let mut seq = 0u64;
    while seq < messages && until.is_none_or(|u| Instant::now() < u) {
        let ready = async {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
                return false;
            }
            if seq < window {
                return false;
            }
            let k = (seq - window) as usize;
            let deadline = sent_at[k] + msg_timeout;
            loop {
                if sh.delivered[k].load(Ordering::Relaxed) >= sh.subscribers {
                    return false;
                }
                let woken = sh.notify.notified();
                if sh.delivered[k].load(Ordering::Relaxed) >= sh.subscribers {
                    return false;
                }
                if tokio::time::timeout_at(deadline, woken).await.is_err() {
                    return true;
                }
            }
        };
        tokio::select! {
            biased;
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match proto.decode_light(&t) {
                    Incoming::EioPing => { let _ = send(&mut ws, proto.pong().to_string()).await; }
                    Incoming::Reply { ok: false, .. } => errors += 1,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    return (seq, window_timeouts, errors, Some("connection closed".into()), ws);
                }
                Some(Ok(_)) => {}
            },
            timed_out = ready => {
                window_timeouts += timed_out as u64;
                let frame = proto.push(&c.topic, 1, 10 + seq, "publish", &stamped_payload(seq, size));
                sent_at.push(Instant::now());
                if let Err(e) = send(&mut ws, frame).await {
                    return (seq, window_timeouts, errors, Some(e), ws);
                }
                seq += 1;
            }
        }
    }
    (seq, window_timeouts, errors, None, ws)
}
