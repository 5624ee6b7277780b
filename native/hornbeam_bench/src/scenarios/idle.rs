//! **idle**: N connections (each joined to one topic by default) that only
//! heartbeat (or answer engine.io pings). Reports the opening rate and the
//! server's resident memory per connection (VmRSS of the server's process
//! tree after the hold, minus before the first connection, divided by the
//! connections still open).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::{interval_at, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::{Common, Report};
use crate::args::Args;
use crate::clock::now_us;
use crate::conn::{connect, connect_and_join, fd_limit, send, Ws};
use crate::procfs::{rss_kib, CpuMeter};
use crate::proto::Proto;
use crate::stats::round;

#[derive(Default)]
struct Counters {
    opened: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    last_open_us: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

pub async fn run(a: &Args) -> Result<Report, String> {
    let c = Common::from_args(a)?;
    let requested = a.num_or("conns", 1_000usize)?;
    let hold = Duration::from_millis(a.num_or("hold-ms", 10_000u64)?);
    let settle = Duration::from_millis(a.num_or("settle-ms", 2_000u64)?);
    let join = a.bool_or("join", true)?;
    a.finish()?;

    // Leave room for stdio, the runtime and the odd extra socket.
    let fds = fd_limit().unwrap_or(1024) as usize;
    let conns = requested.min(fds.saturating_sub(64));
    let mut params = c.params();
    params.insert("conns_requested".into(), json!(requested));
    params.insert("conns".into(), json!(conns));
    params.insert("loadgen_fd_limit".into(), json!(fds));
    params.insert("hold_ms".into(), json!(hold.as_millis() as u64));
    params.insert("heartbeat_ms".into(), json!(c.heartbeat.as_millis() as u64));
    params.insert("join".into(), json!(join));
    let mut report = Report::new("idle", &c, params);

    let rss_before = rss_kib(&c.server_pids);
    let counters = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(c.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let meter = CpuMeter::start(&c.server_pids);
    let t0 = now_us();
    for i in 0..conns {
        let (target, src) = (c.target.clone(), c.srcs.next());
        let (sem, counters, stop) = (sem.clone(), counters.clone(), stop_rx.clone());
        let topic = join.then(|| c.topic.clone());
        // Spread the heartbeats over the period.
        let offset = c.heartbeat.mul_f64(i as f64 / conns.max(1) as f64);
        let (hb, timeout) = (c.heartbeat, c.connect_timeout);
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let fut = async {
                match &topic {
                    Some(t) => connect_and_join(&target, src, t, "{}")
                        .await
                        .map(|(ws, _)| ws),
                    None => connect(&target, src).await,
                }
            };
            let res = tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| "timed out opening".to_string())
                .and_then(|r| r);
            drop(permit);
            match res {
                Ok(ws) => {
                    counters.last_open_us.fetch_max(now_us(), Ordering::Relaxed);
                    counters.opened.fetch_add(1, Ordering::Relaxed);
                    idle(ws, target.proto, stop, hb, offset, &counters).await;
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = counters
                        .first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert(e);
                }
            }
        });
    }
    while counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed) < conns
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = counters.opened.load(Ordering::Relaxed);
    let open_s = (counters
        .last_open_us
        .load(Ordering::Relaxed)
        .saturating_sub(t0)) as f64
        / 1e6;
    let (open_cpu_loadgen, open_cpu_server) = meter.stop();

    tokio::time::sleep(settle).await;
    let rss_open = rss_kib(&c.server_pids);
    let hold_end = Instant::now() + hold.saturating_sub(settle);
    tokio::time::sleep_until(hold_end).await;
    let rss_hold = rss_kib(&c.server_pids);
    let closed = counters.closed.load(Ordering::Relaxed);
    let alive = opened.saturating_sub(closed);
    let _ = stop_tx.send(true);

    report.fig("opened", opened);
    report.fig("connect_failures", counters.failed.load(Ordering::Relaxed));
    if let Some(e) = counters
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        report.fig("first_connect_error", e);
    }
    report.fig("open_s", round(open_s, 3));
    report.fig(
        "connections_per_s",
        if open_s > 0.0 {
            (opened as f64 / open_s).round()
        } else {
            0.0
        },
    );
    report.fig("closed_during_hold", closed);
    report.fig("alive_at_end", alive);
    report.fig("loadgen_cpu_pct_opening", open_cpu_loadgen);
    if let Some(cpu) = open_cpu_server {
        report.fig("server_cpu_pct_opening", cpu);
    }
    if !c.server_pids.is_empty() {
        report.fig("server_rss_before_kib", rss_before);
        report.fig("server_rss_open_kib", rss_open);
        report.fig("server_rss_hold_kib", rss_hold);
        if alive > 0 {
            let per = rss_hold.saturating_sub(rss_before) as f64 / alive as f64;
            report.fig("server_kib_per_conn", round(per, 2));
        }
    }
    if opened == 0 {
        report = report.fail("error", "no connection could be opened");
    }
    Ok(report)
}

async fn idle(
    mut ws: Ws,
    proto: Proto,
    mut stop: watch::Receiver<bool>,
    hb: Duration,
    offset: Duration,
    counters: &Counters,
) {
    let mut heartbeat = interval_at(Instant::now() + offset.max(Duration::from_millis(1)), hb);
    let mut r = 100u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = heartbeat.tick() => {
                if let Some(frame) = proto.heartbeat(r) {
                    r += 1;
                    if send(&mut ws, frame).await.is_err() {
                        counters.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) if t == "2" => {
                    let _ = send(&mut ws, proto.pong().to_string()).await;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}
