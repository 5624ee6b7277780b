//! One simulated user: connects to its node, joins its room with presence
//! tracked, pushes a message every few seconds (a `ping` the server answers
//! with the payload, or a `publish` it broadcasts to the room), checks every
//! reply and the broadcast copy of its own publishes, keeps a presence view,
//! now and then disconnects and comes back, and reconnects whenever the
//! server drops it. Every outcome goes to the [`Tally`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::tally::{now_ms, Echo, Outcome, Tally};
use super::view::View;
use crate::conn::{connect, SrcIps, Target, Ws};

/// The run's phases, in order. Users send and churn only in `Load`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Load = 0,
    Drain = 1,
    Hold = 2,
    Stop = 3,
}

/// What every user needs to know, fixed for the run.
pub struct Plan {
    pub targets: Vec<Target>,
    pub srcs: Arc<SrcIps>,
    pub users: usize,
    pub room_size: usize,
    pub topic_prefix: String,
    pub interval: Duration,
    pub publish_pct: u64,
    /// Chance, in tenths of a percent per message, that the user leaves and comes back instead.
    pub churn_permille: u64,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
    pub ramp: Duration,
    pub seed: u64,
}

impl Plan {
    pub fn node_of(&self, user: usize) -> usize {
        user % self.targets.len()
    }

    pub fn room_of(&self, user: usize) -> usize {
        user / self.room_size
    }

    pub fn rooms(&self) -> usize {
        self.users.div_ceil(self.room_size)
    }

    pub fn topic(&self, room: usize) -> String {
        format!("{}{room}", self.topic_prefix)
    }

    pub fn members(&self, room: usize) -> std::ops::Range<usize> {
        room * self.room_size..((room + 1) * self.room_size).min(self.users)
    }
}

/// State shared by all users and the scenario.
pub struct Shared {
    pub plan: Plan,
    pub tally: Tally,
    /// Whether each user's channel is joined right now (the truth presence must converge to).
    pub joined: Vec<AtomicBool>,
    /// Each joined user's presence view (its keys), for the convergence check.
    pub views: Mutex<Vec<Option<Vec<String>>>>,
    phase: AtomicU8,
}

impl Shared {
    pub fn new(plan: Plan) -> Shared {
        let nodes = plan.targets.len();
        let users = plan.users;
        Shared {
            plan,
            tally: Tally::new(nodes, 100),
            joined: (0..users).map(|_| AtomicBool::new(false)).collect(),
            views: Mutex::new(vec![None; users]),
            phase: AtomicU8::new(Phase::Load as u8),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Load,
            1 => Phase::Drain,
            2 => Phase::Hold,
            _ => Phase::Stop,
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    fn set_view(&self, user: usize, keys: Option<Vec<String>>) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = views.get_mut(user) {
            *slot = keys;
        }
    }
}

/// xorshift64*: enough randomness for jitter, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// `d` scaled by a factor drawn from [0.5, 1.5).
    fn jitter(&mut self, d: Duration) -> Duration {
        d / 2 + Duration::from_micros(self.below(d.as_micros() as u64 + 1))
    }
}

/// How a session (one connection) ended.
enum End {
    Stop,
    Churn,
    Dropped,
    ConnectFailed(String),
    JoinFailed,
}

#[derive(Clone, Copy)]
enum Kind {
    Ping,
    Publish,
}

struct Pending {
    sent_ms: u64,
    sent_at: Instant,
    kind: Kind,
    seq: u64,
}

struct Session<'a> {
    sh: &'a Shared,
    user: usize,
    node: usize,
    topic: String,
    ws: Ws,
    next_ref: u64,
    /// The join in flight: (ref, sent at).
    joining: Option<(u64, Instant)>,
    join_ref: Option<u64>,
    pending: HashMap<u64, Pending>,
    /// Publishes whose broadcast copy has not come back yet: seq -> (sent_ms, sent_at).
    echoes: HashMap<u64, (u64, Instant)>,
    view: View,
}

/// The life of user `user` until the run stops.
pub async fn run(sh: Arc<Shared>, user: usize, mut stop: watch::Receiver<bool>) {
    let mut rng = Rng::new(sh.plan.seed ^ (user as u64 + 1));
    let mut seq = 0u64;
    let ramp_ms = sh.plan.ramp.as_millis() as u64;
    if sleep_or_stop(Duration::from_millis(rng.below(ramp_ms + 1)), &mut stop).await {
        return;
    }
    loop {
        if sh.phase() == Phase::Stop {
            return;
        }
        let pause = match session(&sh, user, &mut rng, &mut seq, &mut stop).await {
            End::Stop => return,
            End::Churn => Duration::from_millis(100 + rng.below(900)),
            End::Dropped | End::JoinFailed => Duration::from_millis(500 + rng.below(1_000)),
            End::ConnectFailed(why) => {
                sh.tally
                    .at(now_ms(), sh.plan.node_of(user), |b| b.connect_failures += 1);
                sh.tally.error_reason(&format!("connect: {}", short(&why)));
                Duration::from_millis(500 + rng.below(1_000))
            }
        };
        if sleep_or_stop(pause, &mut stop).await {
            return;
        }
    }
}

/// Sleeps `d`; true if the run stopped meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// The first words of an error (connection errors carry OS detail that
/// would make every reason unique).
fn short(why: &str) -> String {
    why.chars().take(60).collect()
}

async fn session(
    sh: &Shared,
    user: usize,
    rng: &mut Rng,
    seq: &mut u64,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let plan = &sh.plan;
    let node = plan.node_of(user);
    let ws = match tokio::time::timeout(
        plan.connect_timeout,
        connect(&plan.targets[node], plan.srcs.next()),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return End::ConnectFailed(e),
        Err(_) => return End::ConnectFailed("timed out".into()),
    };
    let mut s = Session {
        sh,
        user,
        node,
        topic: plan.topic(plan.room_of(user)),
        ws,
        next_ref: 0,
        joining: None,
        join_ref: None,
        pending: HashMap::new(),
        echoes: HashMap::new(),
        view: View::default(),
    };
    if s.join().await.is_err() {
        return s.dropped();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // The first message soon after joining, as a client resending what a drop
    // interrupted would: "first round trip after a fault" then measures the
    // server, not this user's interval.
    let mut next_msg = Instant::now() + Duration::from_millis(rng.below(1_000));
    let mut next_heartbeat = Instant::now() + plan.heartbeat;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                s.interrupt_all();
                let _ = s.ws.close(None).await;
                return End::Stop;
            }
            frame = s.ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Err(end) = s.handle(&text).await {
                        return end;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return s.dropped(),
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                let now = Instant::now();
                s.expire(now);
                if let Some((_, at)) = s.joining {
                    if now.duration_since(at) > plan.call_timeout {
                        sh.tally.at(now_ms(), node, |b| b.join_failures += 1);
                        sh.tally.error_reason("join: no reply within the call timeout");
                        s.leave_state();
                        let _ = s.ws.close(None).await;
                        return End::JoinFailed;
                    }
                }
                if now >= next_heartbeat {
                    next_heartbeat = now + plan.heartbeat;
                    let r = s.take_ref();
                    let hb = format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#);
                    if s.ws.send(Message::Text(hb)).await.is_err() {
                        return s.dropped();
                    }
                }
                if sh.phase() == Phase::Load && s.join_ref.is_some() && now >= next_msg {
                    next_msg = now + rng.jitter(plan.interval);
                    let idle = s.pending.is_empty() && s.echoes.is_empty();
                    if idle && rng.below(1_000) < plan.churn_permille {
                        s.leave_state();
                        let _ = s.ws.close(None).await;
                        return End::Churn;
                    }
                    *seq += 1;
                    let kind = if rng.below(100) < plan.publish_pct { Kind::Publish } else { Kind::Ping };
                    if s.push(kind, *seq).await.is_err() {
                        return s.dropped();
                    }
                }
            }
        }
    }
}

impl Session<'_> {
    fn take_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    async fn join(&mut self) -> Result<(), ()> {
        let r = self.take_ref();
        let key = format!("u{}", self.user);
        let frame =
            json!([r.to_string(), r.to_string(), self.topic, "phx_join", {"presence_key": key}]);
        self.joining = Some((r, Instant::now()));
        self.view = View::default();
        self.ws
            .send(Message::Text(frame.to_string()))
            .await
            .map_err(|_| ())
    }

    async fn push(&mut self, kind: Kind, seq: u64) -> Result<(), ()> {
        let Some(jr) = self.join_ref else {
            return Ok(());
        };
        let r = self.take_ref();
        let sent_ms = now_ms();
        let (event, payload) = match kind {
            Kind::Ping => ("ping", json!({"u": self.user, "s": seq})),
            Kind::Publish => (
                "publish",
                json!({"u": self.user, "s": seq, "o": self.node, "t": sent_ms}),
            ),
        };
        let frame = json!([jr.to_string(), r.to_string(), self.topic, event, payload]);
        let sh = self.sh;
        sh.tally.at(sent_ms, self.node, |b| {
            b.sent += 1;
            if let Kind::Publish = kind {
                b.publishes += 1;
            }
        });
        if let Kind::Publish = kind {
            // Copies expected on the other nodes: the room's members joined there now.
            let plan = &sh.plan;
            for m in plan.members(plan.room_of(self.user)) {
                let n = plan.node_of(m);
                if n != self.node && sh.joined[m].load(Ordering::Relaxed) {
                    sh.tally.at(sent_ms, n, |b| b.cross_expected += 1);
                }
            }
            self.echoes.insert(seq, (sent_ms, Instant::now()));
        }
        self.pending.insert(
            r,
            Pending {
                sent_ms,
                sent_at: Instant::now(),
                kind,
                seq,
            },
        );
        self.ws
            .send(Message::Text(frame.to_string()))
            .await
            .map_err(|_| ())
    }

    /// Handles one frame; `Err` ends the session.
    async fn handle(&mut self, text: &str) -> Result<(), End> {
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text) else {
            return Ok(());
        };
        if parts.len() != 5 {
            return Ok(());
        }
        let ref_of = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
        let (jr, r) = (ref_of(&parts[0]), ref_of(&parts[1]));
        let (topic, event, payload) = (
            parts[2].as_str().unwrap_or(""),
            parts[3].as_str().unwrap_or(""),
            &parts[4],
        );
        if topic != self.topic {
            return Ok(()); // heartbeat replies
        }
        let sh = self.sh;
        match event {
            "phx_reply" => {
                let Some(r) = r else { return Ok(()) };
                let ok = payload.get("status").and_then(Value::as_str) == Some("ok");
                let response = payload.get("response").cloned().unwrap_or(Value::Null);
                if self.joining.is_some_and(|(jr, _)| jr == r) {
                    self.joining = None;
                    let tracked = response.get("presence") == Some(&Value::Bool(true));
                    if ok && tracked {
                        self.join_ref = Some(r);
                        sh.joined[self.user].store(true, Ordering::Relaxed);
                        sh.tally.at(now_ms(), self.node, |b| b.joins += 1);
                        self.publish_view();
                    } else {
                        sh.tally.at(now_ms(), self.node, |b| b.join_failures += 1);
                        let why = if ok {
                            "presence not tracked".to_string()
                        } else {
                            reason(&response)
                        };
                        sh.tally.error_reason(&format!("join: {why}"));
                        let _ = self.ws.close(None).await;
                        return Err(End::JoinFailed);
                    }
                } else if let Some(p) = self.pending.remove(&r) {
                    let done = now_ms();
                    let outcome = match (ok, p.kind) {
                        (false, kind) => {
                            sh.tally.error_reason(&reason(&response));
                            if let Kind::Publish = kind {
                                // Refused (a crashed worker, say): no broadcast is owed.
                                self.echoes.remove(&p.seq);
                            }
                            Outcome::Error
                        }
                        (true, Kind::Ping)
                            if response.get("s").and_then(Value::as_u64) != Some(p.seq)
                                || response.get("u").and_then(Value::as_u64)
                                    != Some(self.user as u64) =>
                        {
                            Outcome::Wrong
                        }
                        (true, _) => {
                            let us = p.sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            sh.tally.latency(self.node, us);
                            Outcome::Ok
                        }
                    };
                    sh.tally.outcome(p.sent_ms, self.node, outcome, done);
                }
            }
            "msg" => {
                let u = payload.get("u").and_then(Value::as_u64);
                let o = payload.get("o").and_then(Value::as_u64);
                let t = payload.get("t").and_then(Value::as_u64);
                let s = payload.get("s").and_then(Value::as_u64);
                if u == Some(self.user as u64) {
                    if let Some((sent_ms, _)) = s.and_then(|s| self.echoes.remove(&s)) {
                        sh.tally.echo(sent_ms, self.node, Echo::Ok);
                    }
                } else if let (Some(o), Some(t)) = (o, t) {
                    if o as usize != self.node && self.join_ref.is_some() {
                        sh.tally.cross_in(t, self.node, now_ms());
                    }
                }
            }
            "presence_state" => {
                self.view.set_state(payload);
                self.publish_view();
            }
            "presence_diff" => {
                self.view.apply_diff(payload);
                self.publish_view();
            }
            "phx_error" | "phx_close" if jr.is_some() && jr == self.join_ref => {
                // The server ended this channel: what was in flight will not
                // be answered, and the client knows it. Rejoin, as phoenix.js does.
                sh.tally.at(now_ms(), self.node, |b| b.channel_errors += 1);
                sh.tally.error_reason(&format!("channel {event}"));
                self.interrupt_all();
                self.leave_state();
                if self.join().await.is_err() {
                    return Err(self.dropped());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn publish_view(&self) {
        if self.join_ref.is_some() {
            self.sh
                .set_view(self.user, self.view.keys().map(|k| k.into_iter().collect()));
        }
    }

    /// Requests and echoes older than the call timeout on a live, joined
    /// channel: lost.
    fn expire(&mut self, now: Instant) {
        let timeout = self.sh.plan.call_timeout;
        let (sh, node) = (self.sh, self.node);
        self.pending.retain(|_, p| {
            let keep = now.duration_since(p.sent_at) <= timeout;
            if !keep {
                sh.tally.outcome(p.sent_ms, node, Outcome::Lost, 0);
            }
            keep
        });
        self.echoes.retain(|_, (sent_ms, at)| {
            let keep = now.duration_since(*at) <= timeout;
            if !keep {
                sh.tally.echo(*sent_ms, node, Echo::Lost);
            }
            keep
        });
    }

    fn interrupt_all(&mut self) {
        for (_, p) in self.pending.drain() {
            self.sh
                .tally
                .outcome(p.sent_ms, self.node, Outcome::Interrupted, 0);
        }
        for (_, (sent_ms, _)) in self.echoes.drain() {
            self.sh.tally.echo(sent_ms, self.node, Echo::Interrupted);
        }
    }

    /// No longer joined: out of the truth and the views.
    fn leave_state(&mut self) {
        self.join_ref = None;
        self.sh.joined[self.user].store(false, Ordering::Relaxed);
        self.sh.set_view(self.user, None);
    }

    /// The socket broke or the server closed it.
    fn dropped(&mut self) -> End {
        self.sh.tally.at(now_ms(), self.node, |b| b.drops += 1);
        self.interrupt_all();
        self.leave_state();
        End::Dropped
    }
}

fn reason(response: &Value) -> String {
    match response.get("reason") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => response.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        let mut rng = Rng::new(7);
        for _ in 0..1_000 {
            let d = rng.jitter(Duration::from_millis(1_000));
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1_500),
                "{d:?}"
            );
        }
    }

    #[test]
    fn users_alternate_nodes_within_a_room() {
        let plan = Plan {
            targets: vec![
                Target::new(crate::proto::Proto::Phoenix, "ws://127.0.0.1:1", None).unwrap(),
                Target::new(crate::proto::Proto::Phoenix, "ws://127.0.0.1:2", None).unwrap(),
            ],
            srcs: Arc::new(SrcIps::parse("none").unwrap()),
            users: 25,
            room_size: 10,
            topic_prefix: "room:soak-".into(),
            interval: Duration::from_secs(1),
            publish_pct: 50,
            churn_permille: 0,
            call_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            ramp: Duration::ZERO,
            seed: 1,
        };
        assert_eq!(plan.rooms(), 3);
        assert_eq!(plan.members(2), 20..25);
        assert_eq!(plan.topic(plan.room_of(13)), "room:soak-1");
        let nodes: Vec<usize> = plan.members(0).map(|u| plan.node_of(u)).collect();
        assert_eq!(nodes.iter().filter(|&&n| n == 0).count(), 5);
    }
}
