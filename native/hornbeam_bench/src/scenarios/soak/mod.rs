//! **soak**: a few thousand users chatting with presence on a cluster while
//! `bench/soak.py` injects faults. Users are spread over the nodes (`--urls`,
//! one per node) and over rooms of `--room-size`, each room having members
//! on every node. The run has phases:
//!
//! 1. *load* (`--duration-ms`, ramp included): every user pushes a message
//!    every `--interval-ms` (jittered ±50 %; the first within a second of
//!    each join): a `ping` answered with its
//!    payload, or (`--publish-pct`) a `publish` broadcast to the room; some
//!    leave and come back (`--churn-permille` per message);
//! 2. *drain*: nothing new is sent; what is in flight gets the call timeout;
//! 3. *settle*: until every joined user's presence view equals the set of
//!    joined users of its room (or `--settle-ms`);
//! 4. *hold* (with `--state-file`): the joined users per room are written to
//!    the file and the users stay connected until stdin closes (or
//!    `--hold-max-ms`), so the driver can compare each node's presence list.
//!
//! Progress goes to stderr as JSON lines (`{"soak": "ramped" | "progress" |
//! "holding", ...}`); the report (totals per node, a timeline of 100 ms
//! buckets, reasons of errors) to stdout. A reply counts as **lost** only
//! when its socket stayed open and its channel was not ended by the server
//! and no reply came within `--call-timeout-ms`.

mod tally;
mod user;
mod view;

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::Report;
use crate::args::Args;
use crate::conn::{SrcIps, Target};
use crate::proto::Proto;
use crate::stats::summary;
use tally::now_ms;
use user::{Phase, Plan, Shared};

pub async fn run(a: &Args) -> Result<Report, String> {
    let urls = a.str_or("urls", "ws://127.0.0.1:4000");
    let targets = urls
        .split(',')
        .filter(|u| !u.is_empty())
        .map(|u| Target::new(Proto::Phoenix, u, a.opt_str("path").as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err("--urls needs at least one ws://HOST:PORT".into());
    }
    let ms = |key: &str, default: u64| -> Result<Duration, String> {
        Ok(Duration::from_millis(a.num_or(key, default)?))
    };
    let plan = Plan {
        targets,
        srcs: Arc::new(SrcIps::parse(&a.str_or("src-ips", "127.0.0.2-127.0.0.9"))?),
        users: a.num_or("users", 2_000usize)?,
        room_size: a.num_or("room-size", 10usize)?.max(1),
        topic_prefix: a.str_or("topic-prefix", "room:soak-"),
        interval: ms("interval-ms", 5_000)?,
        publish_pct: a.num_or("publish-pct", 50u64)?.min(100),
        churn_permille: a.num_or("churn-permille", 10u64)?.min(1_000),
        call_timeout: ms("call-timeout-ms", 10_000)?,
        connect_timeout: ms("connect-timeout-ms", 10_000)?,
        heartbeat: ms("heartbeat-ms", 20_000)?,
        ramp: ms("ramp-ms", 10_000)?,
        seed: a.num_or("seed", 1u64)?,
    };
    let duration = ms("duration-ms", 60_000)?;
    let settle = ms("settle-ms", 30_000)?;
    let hold_max = ms("hold-max-ms", 120_000)?;
    let state_file = a.opt_str("state-file");
    let server = a.str_or("server", "hornbeam-cluster");
    a.finish()?;
    if plan.users == 0 {
        return Err("--users must be at least 1".into());
    }
    if duration <= plan.ramp {
        return Err("--duration-ms must be above --ramp-ms".into());
    }

    let mut params = Map::new();
    params.insert(
        "urls".into(),
        json!(plan
            .targets
            .iter()
            .map(|t| t.url.clone())
            .collect::<Vec<_>>()),
    );
    params.insert("users".into(), json!(plan.users));
    params.insert("room_size".into(), json!(plan.room_size));
    params.insert("rooms".into(), json!(plan.rooms()));
    params.insert("duration_ms".into(), json!(duration.as_millis() as u64));
    params.insert(
        "interval_ms".into(),
        json!(plan.interval.as_millis() as u64),
    );
    params.insert("publish_pct".into(), json!(plan.publish_pct));
    params.insert("churn_permille".into(), json!(plan.churn_permille));
    params.insert(
        "call_timeout_ms".into(),
        json!(plan.call_timeout.as_millis() as u64),
    );
    params.insert("ramp_ms".into(), json!(plan.ramp.as_millis() as u64));
    params.insert("settle_ms".into(), json!(settle.as_millis() as u64));
    params.insert("src_ips".into(), json!(plan.srcs.describe()));

    let call_timeout = plan.call_timeout;
    let ramp = plan.ramp;
    let sh = Arc::new(Shared::new(plan));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start_ms = now_ms();
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..sh.plan.users)
        .map(|u| tokio::spawn(user::run(sh.clone(), u, stop_rx.clone())))
        .collect();

    // Load, with a progress line every 10 s (and one when the ramp is done).
    let load_end = start + duration;
    let mut ramped = false;
    loop {
        let now = tokio::time::Instant::now();
        if now >= load_end {
            break;
        }
        tokio::time::sleep((load_end - now).min(Duration::from_secs(1))).await;
        let elapsed = start.elapsed();
        let joined = joined_count(&sh);
        if !ramped && elapsed >= ramp && (joined * 100 >= sh.plan.users * 99 || elapsed >= ramp * 3)
        {
            ramped = true;
            progress(&sh, "ramped");
        } else if elapsed.as_secs().is_multiple_of(10) {
            progress(&sh, "progress");
        }
    }
    let load_end_ms = now_ms();

    // Drain: what is in flight gets its call timeout (plus a tick).
    sh.set_phase(Phase::Drain);
    tokio::time::sleep(call_timeout + Duration::from_millis(500)).await;

    // Settle: until every joined user sees exactly its room's joined users.
    sh.set_phase(Phase::Hold);
    let settle_start = tokio::time::Instant::now();
    let convergence = loop {
        let (mismatched, joined) = mismatched_views(&sh);
        if mismatched == 0 {
            break json!({"converged": true, "after_ms": settle_start.elapsed().as_millis() as u64,
                         "joined": joined, "mismatched_views": 0});
        }
        if settle_start.elapsed() >= settle {
            break json!({"converged": false, "after_ms": settle_start.elapsed().as_millis() as u64,
                         "joined": joined, "mismatched_views": mismatched});
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Hold: the driver compares each node's presence with the joined users.
    if let Some(path) = &state_file {
        let state = json!({"t_ms": now_ms(), "rooms": truth(&sh), "joined": joined_count(&sh),
                           "client_views": convergence});
        std::fs::write(path, state.to_string()).map_err(|e| format!("cannot write {path}: {e}"))?;
        progress(&sh, "holding");
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        });
        let _ = tokio::time::timeout(hold_max, stdin_closed).await;
    }
    let joined_at_end = joined_count(&sh);
    sh.set_phase(Phase::Stop);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;

    let mut report = Report {
        scenario: "soak",
        server,
        proto: Proto::Phoenix,
        status: "ok",
        params,
        figures: Map::new(),
        error: None,
    };
    let totals = sh.tally.totals();
    let sum = |f: fn(&tally::NodeBucket) -> u32| totals.iter().map(f).map(u64::from).sum::<u64>();
    report.fig("requests_sent", sum(|b| b.sent));
    report.fig("replies_ok", sum(|b| b.ok));
    report.fig("replies_lost", sum(|b| b.lost));
    report.fig("replies_error", sum(|b| b.error));
    report.fig("replies_wrong", sum(|b| b.wrong));
    report.fig("replies_interrupted", sum(|b| b.interrupted));
    report.fig("echoes_lost", sum(|b| b.echo_lost));
    report.fig("cross_node_delivered", sum(|b| b.cross_in));
    report.fig("cross_node_expected", sum(|b| b.cross_expected));
    report.fig("joined_at_end", joined_at_end);
    report.fig("client_presence", convergence);
    report.fig("error_reasons", sh.tally.error_reasons());
    report.fig(
        "latency_per_node",
        Value::Array(sh.tally.latencies().into_iter().map(summary).collect()),
    );
    report.fig("per_node", json!(totals));
    report.fig("start_ms", start_ms);
    report.fig("load_end_ms", load_end_ms);
    report.fig("end_ms", now_ms());
    report.fig("timeline", sh.tally.timeline());
    Ok(report)
}

fn joined_count(sh: &Shared) -> usize {
    sh.joined
        .iter()
        .filter(|j| j.load(Ordering::Relaxed))
        .count()
}

/// The presence keys each room should hold: its joined users.
fn truth(sh: &Shared) -> Map<String, Value> {
    let plan = &sh.plan;
    (0..plan.rooms())
        .map(|room| {
            let keys: BTreeSet<String> = plan
                .members(room)
                .filter(|&m| sh.joined[m].load(Ordering::Relaxed))
                .map(|m| format!("u{m}"))
                .collect();
            (plan.topic(room), json!(keys))
        })
        .collect()
}

/// (joined users whose view differs from their room's joined users, joined users).
fn mismatched_views(sh: &Shared) -> (usize, usize) {
    let plan = &sh.plan;
    let views = sh.views.lock().unwrap_or_else(|p| p.into_inner());
    let (mut bad, mut joined) = (0, 0);
    for room in 0..plan.rooms() {
        let want: Vec<String> = plan
            .members(room)
            .filter(|&m| sh.joined[m].load(Ordering::Relaxed))
            .map(|m| format!("u{m}"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for m in plan.members(room) {
            if sh.joined[m].load(Ordering::Relaxed) {
                joined += 1;
                if views[m].as_ref() != Some(&want) {
                    bad += 1;
                }
            }
        }
    }
    (bad, joined)
}

fn progress(sh: &Shared, what: &str) {
    let totals = sh.tally.totals();
    let line = json!({
        "soak": what,
        "t_ms": now_ms(),
        "joined": joined_count(sh),
        "sent": totals.iter().map(|b| b.sent).sum::<u32>(),
        "ok": totals.iter().map(|b| b.ok).sum::<u32>(),
        "lost": totals.iter().map(|b| b.lost).sum::<u32>(),
        "interrupted": totals.iter().map(|b| b.interrupted).sum::<u32>(),
        "drops": totals.iter().map(|b| b.drops).sum::<u32>(),
    });
    eprintln!("{line}");
}
