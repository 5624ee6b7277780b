//! **roundtrip**: C clients, each with one request in flight: push `ping`
//! (the server's handler answers with a reply carrying the payload), wait for
//! the reply, repeat. Replies/s and latency over the measured window (after
//! a warm-up).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{stamped_payload, Common, Report};
use crate::args::Args;
use crate::conn::{open_many, request, Ws};
use crate::procfs::{rss_kib, CpuMeter};
use crate::stats::{round, summary};

pub async fn run(a: &Args) -> Result<Report, String> {
    let c = Common::from_args(a)?;
    let clients = a.num_or("clients", 10usize)?;
    let duration = Duration::from_millis(a.num_or("duration-ms", 5_000u64)?);
    let warmup = Duration::from_millis(a.num_or("warmup-ms", 1_000u64)?);
    let size = a.num_or("size", 32usize)?;
    let event = a.str_or("event", "ping");
    let reply_timeout = Duration::from_millis(a.num_or("reply-timeout-ms", 10_000u64)?);
    a.finish()?;
    if warmup >= duration {
        return Err("--warmup-ms must be below --duration-ms".into());
    }

    let mut params = c.params();
    params.insert("clients".into(), json!(clients));
    params.insert("duration_ms".into(), json!(duration.as_millis() as u64));
    params.insert("warmup_ms".into(), json!(warmup.as_millis() as u64));
    params.insert("event".into(), json!(event));
    params.insert("payload_pad_bytes".into(), json!(size));
    let mut report = Report::new("roundtrip", &c, params);

    let opened = open_many(
        &c.target,
        &c.srcs,
        clients,
        c.concurrency,
        Some(&c.topic),
        c.connect_timeout,
    )
    .await;
    report.fig("clients_connected", opened.conns.len());
    report.fig("connect_failures", opened.failures);
    if let Some(e) = &opened.first_error {
        report.fig("first_connect_error", e.as_str());
    }
    if opened.conns.is_empty() {
        let why = opened.first_error.unwrap_or_default();
        return Ok(report.fail("error", format!("no client could join: {why}")));
    }

    let start = Instant::now() + Duration::from_millis(100);
    let (from, until) = (start + warmup, start + duration);
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .map(|ws| {
            let (topic, event, proto) = (c.topic.clone(), event.clone(), c.target.proto);
            tokio::spawn(client(
                ws,
                proto,
                topic,
                event,
                size,
                start,
                from,
                until,
                reply_timeout,
            ))
        })
        .collect();
    tokio::time::sleep_until(from).await;
    let meter = CpuMeter::start(&c.server_pids);
    tokio::time::sleep_until(until).await;
    let (loadgen_cpu, server_cpu) = meter.stop();
    let rss = (!c.server_pids.is_empty()).then(|| rss_kib(&c.server_pids));

    let (mut lats, mut errors, mut first_error) = (Vec::new(), 0u64, None);
    for t in tasks {
        match t.await {
            Ok((mut l, err)) => {
                lats.append(&mut l);
                if let Some(e) = err {
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
    let measured = (duration - warmup).as_secs_f64();
    report.fig("replies", lats.len());
    report.fig("replies_per_s", round(lats.len() as f64 / measured, 1));
    report.fig("latency", summary(lats));
    report.fig("client_errors", errors);
    if let Some(e) = first_error {
        report.fig("first_client_error", e);
    }
    report.fig("loadgen_cpu_pct", loadgen_cpu);
    if let Some(cpu) = server_cpu {
        report.fig("server_cpu_pct", cpu);
    }
    if let Some(rss) = rss {
        report.fig("server_rss_kib", rss);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn client(
    mut ws: Ws,
    proto: crate::proto::Proto,
    topic: String,
    event: String,
    size: usize,
    start: Instant,
    from: Instant,
    until: Instant,
    reply_timeout: Duration,
) -> (Vec<u32>, Option<String>) {
    tokio::time::sleep_until(start).await;
    let mut lats = Vec::new();
    let mut r = 10u64;
    while Instant::now() < until {
        r += 1;
        let frame = proto.push(&topic, 1, r, &event, &stamped_payload(r, size));
        let t0 = Instant::now();
        match tokio::time::timeout(reply_timeout, request(&mut ws, proto, frame, r, |_, _| {}))
            .await
        {
            Err(_) => return (lats, Some(format!("no reply within {reply_timeout:?}"))),
            Ok(Err(e)) => return (lats, Some(e)),
            Ok(Ok((false, payload))) => return (lats, Some(format!("error reply: {payload}"))),
            Ok(Ok((true, _))) => {}
        }
        let t1 = Instant::now();
        if t1 >= from && t1 <= until {
            lats.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
        }
    }
    (lats, None)
}
