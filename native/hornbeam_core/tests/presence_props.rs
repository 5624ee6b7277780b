//! Convergence and regression tests of the presence CRDT.
//!
//! The main property simulates 3–5 replicas under random local operations,
//! gossip with lost / duplicated / reordered deltas, partitions, restarts
//! (new incarnations), down / permdown / expiry, heartbeats and stale full-state
//! transfers. After every step the diff a replica reports must equal the
//! change of its `list` views; after healing and anti-entropy all replicas
//! must hold the same view, equal to the plain model (the live tracks of
//! the running replicas).
//!
//! `presence_measure` (ignored) prints merge and track throughput:
//! `cargo test --release -p hornbeam_core presence_measure -- --ignored --nocapture`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use hornbeam_core::presence::{
    Clock, Delta, Diff, FullState, Meta, PresenceError, ReplicaId, ReplicaStatus, State,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------
// Views and diff checking
// ---------------------------------------------------------------------

/// (topic, key, phx_ref) → meta, as a reader of one replica sees it.
type View = BTreeMap<(String, String, String), Meta>;

fn view(s: &State) -> View {
    let mut v = View::new();
    for t in s.topics() {
        let list = s.list(&t);
        assert!(!list.is_empty(), "topics() lists an empty topic {t}");
        assert_eq!(s.key_count(&t), list.len());
        for (k, metas) in list {
            assert_eq!(s.get(&t, &k), metas);
            for m in metas {
                let id = (t.to_string(), k.to_string(), m.phx_ref.to_string());
                assert!(v.insert(id, m).is_none(), "duplicate phx_ref");
            }
        }
    }
    assert_eq!(s.len(), v.len());
    v
}

/// Asserts that `diff` is exactly the change from `before` to `after`.
fn check_diff(before: &View, diff: &Diff, after: &View) {
    let mut expect = before.clone();
    for (t, td) in &diff.topics {
        assert!(!td.is_empty(), "empty topic diff");
        for (k, metas) in &td.leaves {
            for (r, m) in metas {
                let id = (t.to_string(), k.to_string(), r.to_string());
                assert_eq!(
                    expect.remove(&id).as_ref(),
                    Some(m),
                    "leave of an absent presence"
                );
            }
        }
        for (k, metas) in &td.joins {
            for (r, m) in metas {
                let id = (t.to_string(), k.to_string(), r.to_string());
                assert!(
                    expect.insert(id, m.clone()).is_none(),
                    "join of a present presence"
                );
            }
        }
    }
    assert_eq!(&expect, after, "diff does not match the list views");
}

/// Runs `f` on `s` and checks the diff it returns against the views.
fn checked(s: &mut State, f: impl FnOnce(&mut State) -> Diff) -> Diff {
    let before = view(s);
    let diff = f(s);
    check_diff(&before, &diff, &view(s));
    diff
}

// ---------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------

const TOPICS: [&str; 2] = ["room:a", "room:b"];
const KEYS: [&str; 3] = ["alice", "bob", "carol"];
const DOWN_MS: u64 = 3_000;
const PERMDOWN_MS: u64 = 9_000;

#[derive(Debug, Clone)]
enum Op {
    Track(usize, u64, usize, usize),
    Update(usize, u64, usize, usize),
    Untrack(usize, u64, usize, usize),
    OwnerExit(usize, u64),
    Gossip(usize),
    Deliver(usize),
    Drop(usize),
    Duplicate(usize),
    Partition(Vec<u8>),
    Heal,
    Restart(usize),
    Down(usize, usize),
    Permdown(usize, usize),
    AntiEntropy(usize, usize),
    /// b's heartbeat (its clock) reaches a.
    Heartbeat(usize, usize),
    Expire(usize),
    Tick(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let n = 0usize..5;
    prop_oneof![
        8 => (n.clone(), 0u64..3, 0usize..2, 0usize..3).prop_map(|(a, o, t, k)| Op::Track(a, o, t, k)),
        3 => (n.clone(), 0u64..3, 0usize..2, 0usize..3).prop_map(|(a, o, t, k)| Op::Update(a, o, t, k)),
        3 => (n.clone(), 0u64..3, 0usize..2, 0usize..3).prop_map(|(a, o, t, k)| Op::Untrack(a, o, t, k)),
        2 => (n.clone(), 0u64..3).prop_map(|(a, o)| Op::OwnerExit(a, o)),
        6 => n.clone().prop_map(Op::Gossip),
        8 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Drop),
        2 => any::<usize>().prop_map(Op::Duplicate),
        1 => prop::collection::vec(0u8..2, 5).prop_map(Op::Partition),
        1 => Just(Op::Heal),
        1 => n.clone().prop_map(Op::Restart),
        1 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::Down(a, b)),
        1 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::Permdown(a, b)),
        3 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::AntiEntropy(a, b)),
        2 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::Heartbeat(a, b)),
        1 => n.clone().prop_map(Op::Expire),
        2 => (100u64..4_000).prop_map(Op::Tick),
    ]
}

#[derive(Debug, Clone)]
enum Payload {
    Delta(Vec<u8>),
    State(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Msg {
    from: usize,
    to: usize,
    payload: Payload,
}

struct Node {
    state: State,
    incarnation: u64,
    /// The model: live tracks (topic, owner, key) → normalized meta.
    tracks: BTreeMap<(usize, u64, usize), String>,
}

struct Sim {
    nodes: Vec<Node>,
    net: Vec<Msg>,
    groups: Vec<u8>,
    now: u64,
    seq: u64,
    /// Per (node, incarnation): counter → its live metas after that op.
    history: HashMap<(usize, u64), BTreeMap<u64, BTreeSet<String>>>,
    /// Per node: the context it last had of each replica it knew.
    contexts: Vec<HashMap<ReplicaId, u64>>,
}

fn node_name(i: usize) -> String {
    format!("n{i}@host")
}

impl Sim {
    fn new(n: usize) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                state: State::new(ReplicaId::new(node_name(i), 1)),
                incarnation: 1,
                tracks: BTreeMap::new(),
            })
            .collect();
        Sim {
            nodes,
            net: Vec::new(),
            groups: vec![0; n],
            now: 0,
            seq: 0,
            history: (0..n)
                .map(|i| ((i, 1), BTreeMap::from([(0, BTreeSet::new())])))
                .collect(),
            contexts: vec![HashMap::new(); n],
        }
    }

    /// After a local op on node `i`: its counter moved iff its tracks did.
    fn record(&mut self, i: usize) {
        let node = &self.nodes[i];
        let counter = node
            .state
            .clock()
            .get(node.state.replica())
            .expect("own clock entry");
        let live: BTreeSet<String> = node.tracks.values().cloned().collect();
        let h = self.history.entry((i, node.incarnation)).or_default();
        if let Some(prev) = h.get(&counter) {
            assert_eq!(prev, &live, "node {i} changed without taking a counter");
        }
        h.insert(counter, live);
    }

    /// Whatever a replica knows of another is exactly a prefix of that
    /// one's history (no ghost, nothing missing, at every moment), and it
    /// never goes back.
    fn check_prefixes(&mut self) {
        for x in 0..self.nodes.len() {
            let state = &self.nodes[x].state;
            let v = view(state);
            let mut now = HashMap::new();
            for r in state.replicas() {
                let j: usize = r.id.node[1..r.id.node.find('@').unwrap()].parse().unwrap();
                let snapshot = self
                    .history
                    .get(&(j, r.id.incarnation))
                    .and_then(|h| h.get(&r.context))
                    .unwrap_or_else(|| {
                        panic!("node {x} knows {} at a counter never reached", r.id)
                    });
                assert_eq!(r.entries, snapshot.len(), "node {x}'s entries of {}", r.id);
                if r.status == ReplicaStatus::Up {
                    let prefix = format!(r#"{{"n":{j},"#);
                    let shown: BTreeSet<String> = v
                        .values()
                        .filter(|m| m.meta.starts_with(&prefix))
                        .map(|m| m.meta.to_string())
                        .collect();
                    assert_eq!(&shown, snapshot, "node {x}'s view of {}", r.id);
                }
                if let Some(&before) = self.contexts[x].get(&r.id) {
                    assert!(
                        r.context >= before,
                        "node {x}'s context of {} went back",
                        r.id
                    );
                }
                now.insert(r.id, r.context);
            }
            self.contexts[x] = now;
        }
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b]
    }

    fn meta(&mut self, i: usize, owner: u64) -> String {
        self.seq += 1;
        format!(r#"{{"n":{i},"o":{owner},"s":{}}}"#, self.seq)
    }

    /// A node's own presences in its view are exactly its model tracks.
    fn check_local(&self, i: usize) {
        let node = &self.nodes[i];
        let prefix = format!(r#"{{"n":{i},"#);
        let own: BTreeSet<(String, String, String)> = view(&node.state)
            .into_iter()
            .filter(|(_, m)| m.meta.starts_with(&prefix))
            .map(|((t, k, _), m)| (t, k, m.meta.to_string()))
            .collect();
        let model: BTreeSet<(String, String, String)> = node
            .tracks
            .iter()
            .map(|(&(t, _, k), m)| (TOPICS[t].to_owned(), KEYS[k].to_owned(), m.clone()))
            .collect();
        assert_eq!(
            own, model,
            "node {i}'s own presences differ from its tracks"
        );
        assert_eq!(node.state.local_count(), node.tracks.len());
    }

    fn deliver(&mut self, msg: Msg) {
        let now = self.now;
        let node = &mut self.nodes[msg.to];
        match msg.payload {
            Payload::Delta(bytes) => {
                let d = Delta::decode(&bytes).expect("own encoding decodes");
                checked(&mut node.state, |s| s.merge_delta(&d, now));
            }
            Payload::State(bytes) => {
                let fs = FullState::decode(&bytes).expect("own encoding decodes");
                checked(&mut node.state, |s| s.merge_state(&fs, now));
            }
        }
        self.check_local(msg.to);
    }

    fn known_id(&self, observer: usize, target: usize) -> Option<ReplicaId> {
        let name = node_name(target);
        self.nodes[observer]
            .state
            .replicas()
            .into_iter()
            .find(|r| r.id.node == name)
            .map(|r| r.id)
    }

    fn step(&mut self, op: Op) {
        let n = self.nodes.len();
        match op {
            Op::Track(i, owner, t, k) => {
                let i = i % n;
                let meta = self.meta(i, owner);
                let node = &mut self.nodes[i];
                let before = view(&node.state);
                let res = node.state.track(TOPICS[t], owner, KEYS[k], &meta);
                let after = view(&node.state);
                let already = node.tracks.contains_key(&(t, owner, k));
                if already {
                    assert_eq!(res, Err(PresenceError::AlreadyTracked));
                    assert_eq!(before, after);
                } else {
                    let r = res.expect("track");
                    let mut d = Diff::default();
                    d.join(
                        &Arc::from(TOPICS[t]),
                        &Arc::from(KEYS[k]),
                        &Meta {
                            meta: Arc::from(meta.as_str()),
                            phx_ref: r,
                            phx_ref_prev: None,
                        },
                    );
                    check_diff(&before, &d, &after);
                    node.tracks.insert((t, owner, k), meta);
                }
                self.record(i);
                self.check_local(i);
            }
            Op::Update(i, owner, t, k) => {
                let i = i % n;
                let meta = self.meta(i, owner);
                let node = &mut self.nodes[i];
                let before = view(&node.state);
                let old = node.state.get(TOPICS[t], KEYS[k]);
                let res = node.state.update(TOPICS[t], owner, KEYS[k], &meta);
                let after = view(&node.state);
                match node.tracks.get_mut(&(t, owner, k)) {
                    None => {
                        assert_eq!(res, Err(PresenceError::NotTracked));
                        assert_eq!(before, after);
                    }
                    Some(m) => {
                        let (new, prev) = res.expect("update");
                        let old = old
                            .into_iter()
                            .find(|o| o.phx_ref == prev)
                            .expect("prev listed");
                        let (topic, key) = (Arc::from(TOPICS[t]), Arc::from(KEYS[k]));
                        let mut d = Diff::default();
                        d.leave(&topic, &key, &old);
                        d.join(
                            &topic,
                            &key,
                            &Meta {
                                meta: Arc::from(meta.as_str()),
                                phx_ref: new,
                                phx_ref_prev: Some(prev),
                            },
                        );
                        check_diff(&before, &d, &after);
                        *m = meta;
                    }
                }
                self.record(i);
                self.check_local(i);
            }
            Op::Untrack(i, owner, t, k) => {
                let i = i % n;
                let node = &mut self.nodes[i];
                let before = view(&node.state);
                let res = node.state.untrack(TOPICS[t], owner, KEYS[k]);
                let after = view(&node.state);
                match node.tracks.remove(&(t, owner, k)) {
                    None => {
                        assert_eq!(res, Err(PresenceError::NotTracked));
                        assert_eq!(before, after);
                    }
                    Some(m) => {
                        let meta = res.expect("untrack");
                        assert_eq!(&*meta.meta, m);
                        let mut d = Diff::default();
                        d.leave(&Arc::from(TOPICS[t]), &Arc::from(KEYS[k]), &meta);
                        check_diff(&before, &d, &after);
                    }
                }
                self.record(i);
                self.check_local(i);
            }
            Op::OwnerExit(i, owner) => {
                let i = i % n;
                let node = &mut self.nodes[i];
                let before = view(&node.state);
                let removed = node.state.untrack_owner(owner);
                let after = view(&node.state);
                let mut d = Diff::default();
                for (t, k, m) in &removed {
                    d.leave(t, k, m);
                }
                check_diff(&before, &d, &after);
                let expected: BTreeSet<String> = node
                    .tracks
                    .iter()
                    .filter(|((_, o, _), _)| *o == owner)
                    .map(|(_, m)| m.clone())
                    .collect();
                let got: BTreeSet<String> =
                    removed.iter().map(|(_, _, m)| m.meta.to_string()).collect();
                assert_eq!(got, expected);
                node.tracks.retain(|(_, o, _), _| *o != owner);
                self.record(i);
                self.check_local(i);
            }
            Op::Gossip(i) => {
                let i = i % n;
                let bytes = self.nodes[i].state.extract_delta().encode();
                for j in 0..n {
                    if j != i && self.connected(i, j) {
                        self.net.push(Msg {
                            from: i,
                            to: j,
                            payload: Payload::Delta(bytes.clone()),
                        });
                    }
                }
            }
            Op::Deliver(k) => {
                if !self.net.is_empty() {
                    let msg = self.net.remove(k % self.net.len());
                    if self.connected(msg.from, msg.to) {
                        self.deliver(msg);
                    }
                }
            }
            Op::Drop(k) => {
                if !self.net.is_empty() {
                    let len = self.net.len();
                    self.net.remove(k % len);
                }
            }
            Op::Duplicate(k) => {
                if !self.net.is_empty() {
                    let msg = self.net[k % self.net.len()].clone();
                    self.net.push(msg);
                }
            }
            Op::Partition(g) => {
                for (i, slot) in self.groups.iter_mut().enumerate() {
                    *slot = g[i % g.len()];
                }
            }
            Op::Heal => self.groups.iter_mut().for_each(|g| *g = 0),
            Op::Restart(i) => {
                let i = i % n;
                let node = &mut self.nodes[i];
                node.incarnation += 1;
                node.state = State::new(ReplicaId::new(node_name(i), node.incarnation));
                node.tracks.clear();
                self.history.insert(
                    (i, node.incarnation),
                    BTreeMap::from([(0, BTreeSet::new())]),
                );
            }
            Op::Down(a, b) | Op::Permdown(a, b) if a % n == b % n => {}
            Op::Down(a, b) => {
                let (a, b) = (a % n, b % n);
                if let Some(id) = self.known_id(a, b) {
                    checked(&mut self.nodes[a].state, |s| s.replica_down(&id));
                }
            }
            Op::Permdown(a, b) => {
                let (a, b) = (a % n, b % n);
                if let Some(id) = self.known_id(a, b) {
                    checked(&mut self.nodes[a].state, |s| s.permdown(&id));
                    assert!(self.known_id(a, b).is_none());
                }
            }
            Op::AntiEntropy(a, b) => {
                let (a, b) = (a % n, b % n);
                if a != b && self.connected(a, b) {
                    let requester = self.nodes[a].state.clock();
                    let requester = Clock::decode(&requester.encode()).expect("clock decodes");
                    if !self.nodes[a].state.dominates(&self.nodes[b].state.clock()) {
                        let fs = self.nodes[b].state.full_state_for(&requester);
                        // Travels like any message: may arrive late, twice, or never.
                        self.net.push(Msg {
                            from: b,
                            to: a,
                            payload: Payload::State(fs.encode()),
                        });
                    }
                }
            }
            Op::Heartbeat(a, b) => {
                let (a, b) = (a % n, b % n);
                if a != b && self.connected(a, b) {
                    let clock = Clock::decode(&self.nodes[b].state.clock().encode())
                        .expect("clock decodes");
                    let now = self.now;
                    checked(&mut self.nodes[a].state, |s| s.heartbeat(&clock, now));
                    self.check_local(a);
                }
            }
            Op::Expire(i) => {
                let i = i % n;
                let now = self.now;
                checked(&mut self.nodes[i].state, |s| {
                    s.expire(now, DOWN_MS, PERMDOWN_MS).diff
                });
                self.check_local(i);
            }
            Op::Tick(ms) => self.now += ms,
        }
    }

    /// Heals the network, exchanges heartbeats and runs anti-entropy until
    /// every replica's clock dominates every other's.
    fn heal(&mut self, deliver_in_flight: bool) {
        self.groups.iter_mut().for_each(|g| *g = 0);
        let in_flight = std::mem::take(&mut self.net);
        if deliver_in_flight {
            for msg in in_flight {
                self.deliver(msg);
            }
        }
        self.now += 1;
        let n = self.nodes.len();
        for i in 0..n {
            let bytes = self.nodes[i].state.extract_delta().encode();
            for j in (0..n).filter(|&j| j != i) {
                self.deliver(Msg {
                    from: i,
                    to: j,
                    payload: Payload::Delta(bytes.clone()),
                });
            }
        }
        let mut rounds = 0;
        loop {
            let mut transfers = 0;
            for a in 0..n {
                for b in (0..n).filter(|&b| b != a) {
                    if !self.nodes[a].state.dominates(&self.nodes[b].state.clock()) {
                        let fs = self.nodes[b]
                            .state
                            .full_state_for(&self.nodes[a].state.clock());
                        self.deliver(Msg {
                            from: b,
                            to: a,
                            payload: Payload::State(fs.encode()),
                        });
                        transfers += 1;
                    }
                }
            }
            if transfers == 0 {
                break;
            }
            rounds += 1;
            assert!(rounds <= 2, "anti-entropy did not settle");
        }
    }

    fn check_converged(&self) {
        let n = self.nodes.len();
        let model: BTreeSet<(String, String, String)> = self
            .nodes
            .iter()
            .flat_map(|node| {
                node.tracks
                    .iter()
                    .map(|(&(t, _, k), m)| (TOPICS[t].to_owned(), KEYS[k].to_owned(), m.clone()))
            })
            .collect();
        let first = view(&self.nodes[0].state);
        for (i, node) in self.nodes.iter().enumerate() {
            let v = view(&node.state);
            assert_eq!(v, first, "replica {i} differs from replica 0");
            let projected: BTreeSet<(String, String, String)> = v
                .into_iter()
                .map(|((t, k, _), m)| (t, k, m.meta.to_string()))
                .collect();
            assert_eq!(
                projected, model,
                "replica {i} differs from the model (ghost or lost presence)"
            );
            // Exactly the current incarnations, all up, nothing hidden left.
            let reps = node.state.replicas();
            let ids: BTreeSet<ReplicaId> = reps.iter().map(|r| r.id.clone()).collect();
            let expect: BTreeSet<ReplicaId> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ReplicaId::new(node_name(j), self.nodes[j].incarnation))
                .collect();
            assert_eq!(ids, expect);
            assert!(reps.iter().all(|r| r.status == ReplicaStatus::Up));
            assert_eq!(node.state.entry_count(), node.state.len());
            for other in &self.nodes {
                assert!(node.state.dominates(&other.state.clock()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn presence_replicas_converge_to_the_model(
        n in 3usize..=5,
        ops in prop::collection::vec(arb_op(), 1..150),
        deliver_in_flight in any::<bool>(),
    ) {
        let mut sim = Sim::new(n);
        for op in ops {
            sim.step(op);
            sim.check_prefixes();
        }
        sim.heal(deliver_in_flight);
        sim.check_converged();
    }

    #[test]
    fn presence_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Delta::decode(&bytes);
        let _ = FullState::decode(&bytes);
        let _ = Clock::decode(&bytes);
        let mut framed = b"HBPR\x01D".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = Delta::decode(&framed);
        framed[5] = b'S';
        let _ = FullState::decode(&framed);
        framed[5] = b'C';
        let _ = Clock::decode(&framed);
    }

    /// Mutated valid messages decode to an error or to something that
    /// merges without panicking and leaves a consistent state.
    #[test]
    fn presence_mutated_messages_merge_safely(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let (mut a, mut b) = two_with_history();
        let delta = a.extract_delta().encode();
        let state = a.full_state_for(&b.clock()).encode();
        for bytes in [delta, state] {
            let mut m = bytes.clone();
            for &(at, x) in &flips {
                let len = m.len();
                m[at % len] ^= x;
            }
            let cut_at = cut % (m.len() + 1);
            for input in [&m[..], &m[..cut_at]] {
                // Corrupt input may even duplicate a phx_ref, so only
                // "no panic, reads consistent" is checked here.
                if let Ok(d) = Delta::decode(input) {
                    b.merge_delta(&d, 5);
                }
                if let Ok(fs) = FullState::decode(input) {
                    b.merge_state(&fs, 5);
                }
                if let Ok(c) = Clock::decode(input) {
                    let _ = b.dominates(&c);
                    let _ = b.full_state_for(&c);
                }
                let listed: usize = b
                    .topics()
                    .iter()
                    .map(|t| b.list(t).iter().map(|(_, m)| m.len()).sum::<usize>())
                    .sum();
                prop_assert_eq!(listed, b.len());
            }
        }
        prop_assert!(b.entry_count() >= b.len());
    }
}

fn two_with_history() -> (State, State) {
    let mut a = State::new(ReplicaId::new("a", 1));
    let mut b = State::new(ReplicaId::new("b", 1));
    a.track("t", 1, "k", r#"{"x":1}"#).unwrap();
    a.track("t", 2, "k", r#"{"x":2}"#).unwrap();
    a.track("u", 1, "j", r#"{"x":3}"#).unwrap();
    b.track("t", 9, "k", r#"{"b":1}"#).unwrap();
    b.merge_delta(&a.extract_delta(), 1);
    a.merge_delta(&b.extract_delta(), 1);
    a.update("t", 1, "k", r#"{"x":4}"#).unwrap();
    a.untrack("t", 2, "k").unwrap();
    a.track("v", 3, "k", "{}").unwrap();
    (a, b)
}

// ---------------------------------------------------------------------
// Helpers for the regression tests
// ---------------------------------------------------------------------

fn replica(node: &str, incarnation: u64) -> State {
    State::new(ReplicaId::new(node, incarnation))
}

/// (topic, key, meta) of a replica's view: what clients would show.
fn shown(s: &State) -> BTreeSet<(String, String, String)> {
    view(s)
        .into_values()
        .zip(view(s).into_keys())
        .map(|(m, (t, k, _))| (t, k, m.meta.to_string()))
        .collect()
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(t, k, m)| (t.to_string(), k.to_string(), m.to_string()))
        .collect()
}

/// Transfers `from`'s state to `to` as the tracker does (through bytes).
fn transfer(from: &State, to: &mut State, now: u64) -> Diff {
    let clock = Clock::decode(&to.clock().encode()).unwrap();
    let fs = FullState::decode(&from.full_state_for(&clock).encode()).unwrap();
    checked(to, |s| s.merge_state(&fs, now))
}

fn merge(to: &mut State, d: &Delta, now: u64) -> Diff {
    let d = Delta::decode(&d.encode()).unwrap();
    checked(to, |s| s.merge_delta(&d, now))
}

// ---------------------------------------------------------------------
// Regression tests, one per Phoenix bug class of PRESENCE.md
// ---------------------------------------------------------------------

/// Deltas merged out of order or with one lost must keep removals: the
/// removal's dots wait in the cloud, and a gap shows in the clock.
#[test]
fn presence_non_contiguous_deltas_keep_removals() {
    let mut a = replica("a", 1);
    a.track("t", 1, "x", r#"{"v":"x"}"#).unwrap(); // dot 1
    let d1 = a.extract_delta();
    a.untrack("t", 1, "x").unwrap(); // removes dot 1, takes dot 2
    let d2 = a.extract_delta();
    a.track("t", 2, "y", r#"{"v":"y"}"#).unwrap(); // dot 3
    let d3 = a.extract_delta();
    assert_eq!(
        (d1.range(), d2.range(), d3.range()),
        ((0, 1), (1, 2), (2, 3))
    );

    // Reordered: d3, d2, d1. Early deltas wait; nothing is merged out of
    // order, and the gap shows.
    let mut b = replica("b", 1);
    assert!(merge(&mut b, &d3, 1).is_empty());
    assert!(!b.dominates(&a.clock()), "a gap must show in the clock");
    assert_eq!(b.missing(), vec![a.replica().clone()]);
    assert!(merge(&mut b, &d2, 2).is_empty());
    let diff = merge(&mut b, &d1, 3);
    // x joined and left within this merge: only y is reported.
    assert_eq!((diff.join_count(), diff.leave_count()), (1, 0));
    assert_eq!(shown(&b), set(&[("t", "y", r#"{"v":"y"}"#)]));
    assert!(b.dominates(&a.clock()) && b.missing().is_empty());

    // Lost: d1 and d3 arrive, d2 never does. x is held and y waits until
    // anti-entropy, which the clock asks for.
    let mut c = replica("c", 1);
    merge(&mut c, &d1, 1);
    merge(&mut c, &d3, 2);
    assert_eq!(shown(&c), set(&[("t", "x", r#"{"v":"x"}"#)]));
    assert!(!c.dominates(&a.clock()));
    let diff = transfer(&a, &mut c, 3);
    assert_eq!((diff.join_count(), diff.leave_count()), (1, 1));
    assert_eq!(shown(&c), shown(&b));
    assert!(c.dominates(&a.clock()) && c.missing().is_empty());

    // Duplicates and stale deltas are harmless.
    for d in [&d1, &d2, &d3, &d3, &d1] {
        assert!(merge(&mut c, d, 4).is_empty());
    }
    assert_eq!(shown(&c), shown(&b));

    // The counter-example to merging early deltas ("clouds"): an update
    // whose delta is lost, then an untrack. The untrack's delta names only
    // the new dot as removed; had it been merged, the clock would reach
    // a's and the old dot would stay forever.
    let mut a = replica("a", 1);
    let mut e = replica("e", 1);
    a.track("t", 1, "k", "{}").unwrap();
    merge(&mut e, &a.extract_delta(), 1);
    a.update("t", 1, "k", r#"{"v":2}"#).unwrap();
    let _lost = a.extract_delta();
    a.untrack("t", 1, "k").unwrap();
    merge(&mut e, &a.extract_delta(), 2);
    assert!(
        !e.dominates(&a.clock()),
        "the lost update must keep the clock behind"
    );
    transfer(&a, &mut e, 3);
    assert!(e.is_empty());
}

/// A full state built against a stale clock (or simply old), received by a
/// replica that has a gap (an early delta waiting), neither removes nor
/// resurrects wrongly: older sections are ignored, newer ones replace.
#[test]
fn presence_stale_full_state_into_receiver_with_gap() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    let mut c = replica("c", 1);
    b.replica_up(c.replica(), 0);
    c.replica_up(b.replica(), 0);
    c.replica_up(a.replica(), 0);
    let c_clock0 = c.clock(); // taken before c heard anything of a
    a.track("t", 1, "x1", "{}").unwrap(); // 1
    a.track("t", 2, "x2", "{}").unwrap(); // 2
    let d1 = a.extract_delta();
    merge(&mut b, &d1, 1);
    merge(&mut c, &d1, 1);
    // A transfer built by b for c's old clock, delivered much later.
    let stale1 = FullState::decode(&b.full_state_for(&c_clock0).encode()).unwrap();

    a.untrack("t", 1, "x1").unwrap(); // -1, 3
    a.track("t", 3, "x3", "{}").unwrap(); // 4
    let d2 = a.extract_delta();
    a.untrack("t", 2, "x2").unwrap(); // -2, 5
    a.track("t", 4, "x4", "{}").unwrap(); // 6
    let d3 = a.extract_delta();
    merge(&mut b, &d2, 2);
    let stale2 = FullState::decode(&b.full_state_for(&c_clock0).encode()).unwrap();
    merge(&mut c, &d3, 2); // d2 lost to c: d3 waits
    assert_eq!(c.missing(), vec![a.replica().clone()]);
    let keys = |s: &State| {
        s.list("t")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&c), ["x1", "x2"]);

    // Older than what c holds: nothing changes.
    assert!(checked(&mut c, |s| s.merge_state(&stale1, 3)).is_empty());
    assert_eq!(keys(&c), ["x1", "x2"]);
    // Newer than c but older than a: replaces, then the waiting d3 applies.
    let diff = checked(&mut c, |s| s.merge_state(&stale2, 4));
    assert_eq!((diff.join_count(), diff.leave_count()), (2, 2));
    assert_eq!(keys(&c), ["x3", "x4"]);
    assert!(c.dominates(&a.clock()) && c.missing().is_empty());
    // Both again, in any order: nothing.
    assert!(checked(&mut c, |s| s.merge_state(&stale2, 5)).is_empty());
    assert!(checked(&mut c, |s| s.merge_state(&stale1, 5)).is_empty());
    merge(&mut b, &d3, 5);
    assert_eq!(shown(&c), shown(&b));
}

/// A transfer carries neither replicas the requester never heard of nor
/// the requester's own entries; a receiver ignores both anyway.
#[test]
fn presence_full_state_excludes_unknown_replicas_and_requesters_own() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    let mut c = replica("c", 1);
    a.track("t", 1, "a1", "{}").unwrap();
    b.track("t", 1, "b1", "{}").unwrap();
    c.track("t", 1, "c1", "{}").unwrap();
    merge(&mut b, &a.extract_delta(), 1);
    merge(&mut b, &c.extract_delta(), 1);
    // a removes a1; b has not heard yet.
    a.untrack("t", 1, "a1").unwrap();
    a.track("t", 2, "a2", "{}").unwrap();

    let fs = b.full_state_for(&a.clock());
    assert_eq!(
        fs.replicas(),
        vec![b.replica()],
        "only the sender's own section"
    );
    let diff = transfer(&b, &mut a, 2);
    assert_eq!(diff.join_count(), 1);
    let keys = |s: &State| {
        s.list("t")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&a),
        ["a2", "b1"],
        "no c1 (unknown), no resurrected a1 (own)"
    );

    // Even an unfiltered transfer (built for a clock that knows everyone,
    // with b's stale copy of a's entries) changes nothing of the sort.
    let mut d = replica("d", 1);
    for s in [&a, &b, &c] {
        d.replica_up(s.replica(), 1);
    }
    let all = b.full_state_for(&d.clock());
    assert_eq!(all.replicas().len(), 3);
    checked(&mut a, |s| s.merge_state(&all, 3));
    assert_eq!(keys(&a), ["a2", "b1"]);

    // Once c introduces itself (a heartbeat), anti-entropy brings c1.
    assert!(merge(&mut a, &c.extract_delta(), 4).is_empty());
    assert!(!a.dominates(&b.clock()));
    transfer(&b, &mut a, 5);
    assert_eq!(keys(&a), ["a2", "b1", "c1"]);
}

/// A node restarting within the down period: its old entries leave exactly
/// once, and nothing of the old incarnation comes back.
#[test]
fn presence_restart_within_down_period() {
    let mut a1 = replica("a", 1);
    let mut b = replica("b", 1);
    let mut c = replica("c", 1);
    a1.track("t", 1, "old", "{}").unwrap();
    let d_old = a1.extract_delta();
    merge(&mut b, &d_old, 1);
    merge(&mut c, &d_old, 1);
    merge(&mut c, &b.extract_delta(), 1);
    merge(&mut b, &c.extract_delta(), 1);
    // c's view of a1, for a requester that knows a1 but nothing of it yet.
    let mut b0 = replica("b", 1);
    b0.replica_up(a1.replica(), 0);
    b0.replica_up(c.replica(), 0);
    let stale_from_c = c.full_state_for(&b0.clock());
    assert_eq!(stale_from_c.replicas(), vec![a1.replica()]);

    // a restarts before anyone marked it down.
    let mut a2 = replica("a", 2);
    a2.track("t", 1, "new", "{}").unwrap();
    let diff = merge(&mut b, &a2.extract_delta(), 2);
    assert_eq!((diff.join_count(), diff.leave_count()), (1, 1));
    assert_eq!(b.replicas().iter().filter(|r| r.id.node == "a").count(), 1);

    // Nothing removes it twice, nothing brings it back.
    let old_id = ReplicaId::new("a", 1);
    assert!(checked(&mut b, |s| s.permdown(&old_id)).is_empty());
    assert!(checked(&mut b, |s| s.replica_down(&old_id)).is_empty());
    assert!(
        merge(&mut b, &d_old, 3).is_empty(),
        "stale delta of the old incarnation"
    );
    assert!(checked(&mut b, |s| s.replica_up(&old_id, 3)).is_empty());
    assert!(checked(&mut b, |s| s.merge_state(&stale_from_c, 3)).is_empty());
    let keys = |s: &State| {
        s.list("t")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&b), ["new"]);

    // Restart after a down: the leave was at the down, none at the permdown.
    let mut b2 = replica("b", 1);
    merge(&mut b2, &d_old, 1);
    let down = b2.expire(40_000, 30_000, 1_200_000);
    assert_eq!(down.diff.leave_count(), 1);
    let diff = merge(&mut b2, &a2.extract_delta(), 40_001);
    assert!(
        diff.is_empty(),
        "the down old incarnation goes silently; a2 says nothing yet"
    );
    assert_eq!(b2.replicas().len(), 1);
    assert!(!b2.dominates(&a2.clock()));
    transfer(&a2, &mut b2, 40_002);
    assert_eq!(keys(&b2), ["new"]);
    // And permdown by timeout forgets the replica for good.
    let gone = b2.expire(40_002 + 1_200_000, 30_000, 1_200_000);
    assert_eq!(gone.permdowned, vec![ReplicaId::new("a", 2)]);
    assert_eq!(gone.diff.leave_count(), 1);
    assert!(b2.is_empty() && b2.entry_count() == 0);
}

/// An update immediately followed by the owner's exit: remote replicas end
/// with nothing, whatever the delivery order, and see no stuck join.
#[test]
fn presence_update_just_before_owner_exit() {
    let setup = || {
        let mut a = replica("a", 1);
        a.track("t", 7, "k", r#"{"v":1}"#).unwrap();
        let d0 = a.extract_delta();
        let mut b = replica("b", 1);
        merge(&mut b, &d0, 1);
        (a, b)
    };
    // Same period.
    let (mut a, mut b) = setup();
    a.update("t", 7, "k", r#"{"v":2}"#).unwrap();
    a.untrack_owner(7);
    let diff = merge(&mut b, &a.extract_delta(), 2);
    assert_eq!((diff.join_count(), diff.leave_count()), (0, 1));
    assert!(b.is_empty());

    // Two periods, in order and reversed, and with the update lost.
    for order in [[0, 1], [1, 0], [1, 1]] {
        let (mut a, mut b) = setup();
        a.update("t", 7, "k", r#"{"v":2}"#).unwrap();
        let du = a.extract_delta();
        a.untrack_owner(7);
        let dx = a.extract_delta();
        let ds = [du, dx];
        let mut total = Diff::default();
        for i in order {
            total.absorb(merge(&mut b, &ds[i], 2));
        }
        if order == [1, 1] {
            assert_eq!(
                b.len(),
                1,
                "update lost: the old presence waits for anti-entropy"
            );
            assert!(!b.dominates(&a.clock()));
            total.absorb(transfer(&a, &mut b, 3));
        }
        assert!(b.is_empty(), "order {order:?}");
        assert_eq!(
            (total.join_count(), total.leave_count()),
            (0, 1),
            "order {order:?}"
        );
    }
}

/// phoenix.js `syncDiff`: joins first, then leaves matched by `phx_ref`.
fn sync_diff(state: &mut BTreeMap<String, Vec<Meta>>, diff: &Diff, topic: &str) {
    let Some(td) = diff.topics.get(topic) else {
        return;
    };
    for (k, metas) in &td.joins {
        let cur = state.entry(k.to_string()).or_default();
        let joined: Vec<Meta> = metas.values().cloned().collect();
        cur.retain(|m| !joined.iter().any(|j| j.phx_ref == m.phx_ref));
        cur.extend(joined);
    }
    for (k, metas) in &td.leaves {
        if let Some(cur) = state.get_mut(&**k) {
            cur.retain(|m| !metas.contains_key(&m.phx_ref));
            if cur.is_empty() {
                state.remove(&**k);
            }
        }
    }
}

/// One key leaving on one tab and joining on another within one period:
/// both arrive together, distinct by `phx_ref`, and a client matching by
/// `phx_ref` ends right (one matching by key would drop the user).
#[test]
fn presence_same_key_join_and_leave_in_one_period() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    a.track("room", 1, "u", r#"{"tab":1}"#).unwrap();
    merge(&mut b, &a.extract_delta(), 1);
    let mut client: BTreeMap<String, Vec<Meta>> = b
        .list("room")
        .into_iter()
        .map(|(k, m)| (k.to_string(), m))
        .collect();

    a.untrack_owner(1);
    a.track("room", 2, "u", r#"{"tab":2}"#).unwrap();
    let diff = merge(&mut b, &a.extract_delta(), 2);
    let td = &diff.topics["room"];
    let (joined, left) = (&td.joins["u"], &td.leaves["u"]);
    assert_eq!((joined.len(), left.len()), (1, 1));
    assert!(joined.keys().all(|r| !left.contains_key(r)));
    sync_diff(&mut client, &diff, "room");
    let listed: BTreeMap<String, Vec<Meta>> = b
        .list("room")
        .into_iter()
        .map(|(k, m)| (k.to_string(), m))
        .collect();
    assert_eq!(client, listed);
    assert_eq!(client["u"].len(), 1);
    assert!(td.to_json().contains(r#""tab":2"#));

    // Coalescing a period's diffs on the Erlang side: a presence that came
    // and went inside the interval is not sent at all.
    let mut period = Diff::default();
    a.track("room", 3, "u", r#"{"tab":3}"#).unwrap();
    period.absorb(merge(&mut b, &a.extract_delta(), 3));
    a.untrack("room", 3, "u").unwrap();
    period.absorb(merge(&mut b, &a.extract_delta(), 4));
    assert!(period.is_empty(), "{period:?}");
}

/// Down hides a replica's entries (leaves) and keeps them; hearing from it
/// again shows them (joins); permdown deletes them without a second leave.
#[test]
fn presence_down_up_permdown() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    a.track("t", 1, "k", "{}").unwrap();
    a.track("t", 2, "j", "{}").unwrap();
    merge(&mut b, &a.extract_delta(), 0);
    let e = b.expire(29_999, 30_000, 1_200_000);
    assert!(e.diff.is_empty() && e.downed.is_empty());
    let e = b.expire(30_000, 30_000, 1_200_000);
    assert_eq!(e.downed, vec![a.replica().clone()]);
    assert_eq!(e.diff.leave_count(), 2);
    assert!(b.is_empty() && b.entry_count() == 2 && b.topics().is_empty());
    // Heartbeat with the same incarnation: up again.
    let diff = merge(&mut b, &a.extract_delta(), 31_000);
    assert_eq!(diff.join_count(), 2);
    checked(&mut b, |s| s.replica_down(a.replica()));
    assert!(checked(&mut b, |s| s.permdown(a.replica())).is_empty());
    assert_eq!(b.entry_count(), 0);
    assert!(b.replicas().is_empty());
}

/// Merge of a delta does not scan all remote entries (phoenix_pubsub #126):
/// a heartbeat into a large state stays cheap. Timing-free check: the state
/// held is large while a delta only names its own dots.
#[test]
fn presence_delta_names_only_its_dots() {
    let mut big = replica("big", 1);
    let mut r = replica("r", 1);
    for i in 0..5_000u64 {
        r.track("t", i, &format!("k{i}"), "{}").unwrap();
    }
    merge(&mut big, &r.extract_delta(), 0);
    r.untrack("t", 17, "k17").unwrap();
    let d = r.extract_delta();
    assert_eq!((d.entry_count(), d.range()), (0, (5_000, 5_001)));
    assert!(d.encode().len() < 64);
    let diff = merge(&mut big, &d, 1);
    assert_eq!(diff.leave_count(), 1);
    let hb = r.extract_delta();
    assert!(hb.is_empty());
    assert!(merge(&mut big, &hb, 2).is_empty());
}

/// Early deltas wait in a bounded buffer; whatever overflows is repaired
/// by the transfer the clock asks for.
#[test]
fn presence_early_delta_buffer_is_bounded() {
    use hornbeam_core::presence::MAX_PENDING_DELTAS;
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    a.track("t", 0, "first", "{}").unwrap();
    let lost = a.extract_delta();
    for i in 1..=(MAX_PENDING_DELTAS as u64 * 2) {
        a.track("t", i, &format!("k{i}"), "{}").unwrap();
        if i % 3 == 0 {
            a.untrack("t", i - 1, &format!("k{}", i - 1)).unwrap();
        }
        assert!(merge(&mut b, &a.extract_delta(), i).is_empty());
    }
    assert!(b.is_empty() && !b.dominates(&a.clock()));
    // The lost delta arrives late: the buffered prefix applies at once.
    let diff = merge(&mut b, &lost, 1_000);
    assert!(diff.join_count() > MAX_PENDING_DELTAS / 2);
    assert!(!b.dominates(&a.clock()), "the overflow is still missing");
    transfer(&a, &mut b, 1_001);
    assert_eq!(shown(&b), shown(&a));
    assert!(b.dominates(&a.clock()) && b.missing().is_empty());
}

#[test]
fn presence_state_can_live_in_a_nif_resource() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<State>();
    send_sync::<Delta>();
    send_sync::<FullState>();
    send_sync::<Clock>();
    send_sync::<Diff>();
}

// ---------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------

fn rate(n: usize, secs: f64) -> String {
    format!("{:>12.0}/s", n as f64 / secs.max(1e-9))
}

#[test]
#[ignore]
fn presence_measure() {
    let meta = r#"{"online_at":1700000000,"device":"browser"}"#;
    // Track ops/s.
    let mut s = replica("local", 1);
    let t0 = Instant::now();
    for i in 0..100_000u64 {
        s.track(&format!("room:{}", i % 1000), i, &format!("user{i}"), meta)
            .unwrap();
    }
    let track = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..100_000u64 {
        s.update(&format!("room:{}", i % 1000), i, &format!("user{i}"), meta)
            .unwrap();
    }
    let update = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..100_000u64 {
        s.untrack_owner(i);
    }
    let exit = t0.elapsed().as_secs_f64();
    println!("track         100000 ops: {}", rate(100_000, track));
    println!("update        100000 ops: {}", rate(100_000, update));
    println!("untrack_owner 100000 ops: {}", rate(100_000, exit));

    // A state of 100,000 remote entries (10 replicas × 10,000).
    let mut main = replica("main", 1);
    let mut build = 0.0;
    for r in 0..10 {
        let mut rep = replica(&format!("r{r}"), 1);
        for i in 0..10_000u64 {
            rep.track(&format!("room:{}", i % 1000), i, &format!("u{r}-{i}"), meta)
                .unwrap();
        }
        let d = rep.extract_delta();
        let t0 = Instant::now();
        main.merge_delta(&d, 0);
        build += t0.elapsed().as_secs_f64();
    }
    assert_eq!(main.len(), 100_000);
    println!(
        "built a state of 100000 entries by 10 deltas of 10000: {}",
        rate(100_000, build)
    );

    let mut src = replica("src", 1);
    let mut owner = 0u64;
    for (size, rounds) in [(10usize, 1000usize), (1_000, 20), (10_000, 3)] {
        let (mut join_t, mut leave_t, mut codec_t, mut n) = (0.0, 0.0, 0.0, 0usize);
        for _ in 0..rounds {
            let first = owner;
            for _ in 0..size {
                src.track(
                    &format!("room:{}", owner % 1000),
                    owner,
                    &format!("s{owner}"),
                    meta,
                )
                .unwrap();
                owner += 1;
            }
            let d = src.extract_delta();
            let t0 = Instant::now();
            let bytes = d.encode();
            let d = Delta::decode(&bytes).unwrap();
            codec_t += t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let diff = main.merge_delta(&d, 1);
            join_t += t0.elapsed().as_secs_f64();
            assert_eq!(diff.join_count(), size);
            for o in first..owner {
                src.untrack_owner(o);
            }
            let d = src.extract_delta();
            let t0 = Instant::now();
            let diff = main.merge_delta(&d, 2);
            leave_t += t0.elapsed().as_secs_f64();
            assert_eq!(diff.leave_count(), size);
            n += size;
        }
        println!(
            "delta of {size:>5} into 100000: joins {} leaves {}  (encode+decode {}), {:.1} µs/delta",
            rate(n, join_t),
            rate(n, leave_t),
            rate(n, codec_t),
            join_t * 1e6 / rounds as f64
        );
    }
    let hb = src.extract_delta();
    let t0 = Instant::now();
    for _ in 0..10_000 {
        main.merge_delta(&hb, 3);
    }
    println!(
        "heartbeat (empty delta) into 100000: {:.2} µs",
        t0.elapsed().as_secs_f64() * 1e6 / 10_000.0
    );
    let fresh = replica("fresh", 1);
    let t0 = Instant::now();
    let fs = main.full_state_for(&{
        let mut f = fresh.clone();
        for r in main.replicas() {
            f.replica_up(&r.id, 0);
        }
        f.replica_up(main.replica(), 0);
        f.clock()
    });
    let bytes = fs.encode();
    let extract = t0.elapsed().as_secs_f64();
    let mut f = fresh.clone();
    for r in main.replicas() {
        f.replica_up(&r.id, 0);
    }
    let t0 = Instant::now();
    let fs = FullState::decode(&bytes).unwrap();
    let diff = f.merge_state(&fs, 4);
    let merge_t = t0.elapsed().as_secs_f64();
    println!(
        "full state of {} entries: {} bytes; extract+encode {:.1} ms, decode+merge {:.1} ms ({} joins)",
        fs.entry_count(),
        bytes.len(),
        extract * 1e3,
        merge_t * 1e3,
        diff.join_count()
    );
}

// ---------------------------------------------------------------------
// Node down (distribution reports the node gone): the tracker marks the
// replica down at once instead of waiting for down_period. It must come
// back without duplicate joins and without losing what its owner removed
// meanwhile, or be removed for good by permdown or a restart.
// ---------------------------------------------------------------------

/// What happens on the owner while the observer has it marked down.
#[derive(Debug, Clone)]
enum AwayOp {
    Track(u64, usize, usize),
    Update(u64, usize, usize),
    Untrack(u64, usize, usize),
    OwnerExit(u64),
    /// A delta is extracted; while connected it reaches the observer only
    /// if true (lost otherwise); while the node is down it is always lost
    /// (what was in flight arrived before the nodedown: Erlang's ordering).
    Gossip(bool),
}

fn arb_away_op() -> impl Strategy<Value = AwayOp> {
    prop_oneof![
        4 => (0u64..3, 0usize..2, 0usize..3).prop_map(|(o, t, k)| AwayOp::Track(o, t, k)),
        2 => (0u64..3, 0usize..2, 0usize..3).prop_map(|(o, t, k)| AwayOp::Update(o, t, k)),
        3 => (0u64..3, 0usize..2, 0usize..3).prop_map(|(o, t, k)| AwayOp::Untrack(o, t, k)),
        1 => (0u64..3).prop_map(AwayOp::OwnerExit),
        3 => any::<bool>().prop_map(AwayOp::Gossip),
    ]
}

/// How the down replica's story ends.
#[derive(Debug, Clone, Copy)]
enum Return {
    /// Its node reconnects within down_period: heartbeat, delta, transfer.
    Reconnect,
    /// It never comes back: permdown_period passes.
    Permdown,
    /// Its node restarts: a new incarnation is heard from.
    Restart,
}

/// The owner's own entries as (topic, key, meta).
fn own(s: &State) -> BTreeSet<(String, String, String)> {
    shown(s)
}

fn apply_away(a: &mut State, b: &mut State, op: &AwayOp, seq: &mut u64, now: u64, connected: bool) {
    let meta = |seq: &mut u64| {
        *seq += 1;
        format!(r#"{{"s":{seq}}}"#)
    };
    match *op {
        AwayOp::Track(o, t, k) => {
            let _ = a.track(TOPICS[t], o, KEYS[k], &meta(seq));
        }
        AwayOp::Update(o, t, k) => {
            let _ = a.update(TOPICS[t], o, KEYS[k], &meta(seq));
        }
        AwayOp::Untrack(o, t, k) => {
            let _ = a.untrack(TOPICS[t], o, KEYS[k]);
        }
        AwayOp::OwnerExit(o) => {
            let _ = a.untrack_owner(o);
        }
        AwayOp::Gossip(delivered) => {
            let d = a.extract_delta();
            if delivered && connected {
                merge(b, &d, now);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// nodedown → the replica's presences leave at once (exactly those
    /// shown); then, whatever its owner did meanwhile and whichever
    /// messages were lost: a return restores exactly the owner's live
    /// entries (no duplicate join, no lost removal, every diff matching the
    /// views); a permdown removes it without a second leave; a restart
    /// replaces it.
    #[test]
    fn presence_nodedown_then_return_permdown_or_restart(
        before in prop::collection::vec(arb_away_op(), 0..12),
        away in prop::collection::vec(arb_away_op(), 0..20),
        ending in prop_oneof![Just(Return::Reconnect), Just(Return::Permdown), Just(Return::Restart)],
    ) {
        const DOWN: u64 = 30_000;
        const PERMDOWN: u64 = 1_200_000;
        let mut a = replica("a", 1);
        let mut b = replica("b", 1);
        b.track("room:a", 7, "bob", r#"{"b":1}"#).unwrap();
        let mut seq = 0;
        // Connected: b follows a exactly.
        for op in &before {
            apply_away(&mut a, &mut b, op, &mut seq, 1, true);
        }
        merge(&mut b, &a.extract_delta(), 1);
        if !b.dominates(&a.clock()) {
            transfer(&a, &mut b, 1);
        }
        // (a never hears from b here, so a's view is its own entries.)
        let b_own = set(&[("room:a", "bob", r#"{"b":1}"#)]);
        let mut expect = own(&a);
        expect.extend(b_own.iter().cloned());
        prop_assert_eq!(shown(&b), expect);

        // nodedown at t = 1000: a's presences leave at once, only them.
        let shown_of_a = own(&a).len();
        let diff = checked(&mut b, |s| s.replica_down(a.replica()));
        prop_assert_eq!(diff.leave_count(), shown_of_a);
        prop_assert_eq!(diff.join_count(), 0);
        prop_assert_eq!(shown(&b), b_own.clone());

        for op in &away {
            apply_away(&mut a, &mut b, op, &mut seq, 1_000, false);
        }
        // Still down and hidden.
        prop_assert_eq!(shown(&b), b_own.clone());
        let now = 1_000 + DOWN - 1;
        // The down period passing changes nothing more (already down).
        prop_assert!(checked(&mut b, |s| s.expire(now, DOWN, PERMDOWN).diff).is_empty());

        match ending {
            Return::Reconnect => {
                // Heartbeat (clock), then the next delta, then a transfer
                // if the clock shows a gap: the tracker's order. At every
                // step b shows either none of a's entries or exactly a's
                // live ones: never a stale one removed while away.
                let mut current = own(&a);
                current.extend(b_own.iter().cloned());
                let clock = Clock::decode(&a.clock().encode()).unwrap();
                checked(&mut b, |s| s.heartbeat(&clock, now));
                prop_assert!(shown(&b) == b_own || shown(&b) == current, "stale after heartbeat");
                merge(&mut b, &a.extract_delta(), now);
                prop_assert!(shown(&b) == b_own || shown(&b) == current, "stale after delta");
                if !b.dominates(&a.clock()) {
                    transfer(&a, &mut b, now);
                }
                prop_assert!(b.dominates(&a.clock()));
                prop_assert_eq!(shown(&b), current);
                prop_assert_eq!(b.replicas()[0].status, ReplicaStatus::Up);
            }
            Return::Permdown => {
                let e = checked(&mut b, |s| s.expire(1_000 + PERMDOWN, DOWN, PERMDOWN).diff);
                prop_assert!(e.is_empty(), "a second leave at permdown: {:?}", e);
                prop_assert!(b.replicas().is_empty());
                prop_assert_eq!(b.entry_count(), 1);
                prop_assert_eq!(shown(&b), b_own.clone());
            }
            Return::Restart => {
                let mut a2 = replica("a", 2);
                a2.track("room:a", 1, "alice", r#"{"new":1}"#).unwrap();
                let diff = merge(&mut b, &a2.extract_delta(), now);
                // Only the new incarnation's join: the old one was already gone.
                prop_assert_eq!(diff.leave_count(), 0);
                prop_assert_eq!(diff.join_count(), 1);
                prop_assert_eq!(b.replicas().len(), 1);
                let mut expect = b_own.clone();
                expect.insert(("room:a".into(), "alice".into(), r#"{"new":1}"#.into()));
                prop_assert_eq!(shown(&b), expect);
            }
        }
    }
}

/// Nodedown then back within down_period with nothing changed: the same
/// presences come back (same phx_refs), each joined once.
#[test]
fn presence_nodedown_then_quick_return_restores_the_same_presences() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    a.track("t", 1, "k", r#"{"x":1}"#).unwrap();
    a.track("t", 2, "j", r#"{"x":2}"#).unwrap();
    merge(&mut b, &a.extract_delta(), 0);
    let before = view(&b);
    let left = checked(&mut b, |s| s.replica_down(a.replica()));
    assert_eq!(left.leave_count(), 2);
    // A second nodedown report (pg and the monitor both) changes nothing.
    assert!(checked(&mut b, |s| s.replica_down(a.replica())).is_empty());
    let back = checked(&mut b, |s| s.heartbeat(&a.clock(), 500));
    assert_eq!(back.join_count(), 2);
    assert_eq!(view(&b), before);
    // Its next (empty) heartbeat delta joins nothing twice.
    assert!(merge(&mut b, &a.extract_delta(), 600).is_empty());
}

/// Nodedown, the owner untracks while away and the delta carrying it is
/// lost: on return the removal still happens (the clock shows the gap and
/// the transfer carries it); the removed presence is never shown for good.
#[test]
fn presence_nodedown_keeps_removals_made_while_away() {
    let mut a = replica("a", 1);
    let mut b = replica("b", 1);
    a.track("t", 1, "gone", r#"{"x":1}"#).unwrap();
    a.track("t", 2, "stays", r#"{"x":2}"#).unwrap();
    merge(&mut b, &a.extract_delta(), 0);
    checked(&mut b, |s| s.replica_down(a.replica()));
    a.untrack("t", 1, "gone").unwrap();
    let _lost = a.extract_delta();
    // Back: its heartbeat's clock is ahead, so it stays down (no flash of
    // "gone"), and the gap asks for a transfer.
    assert!(checked(&mut b, |s| s.heartbeat(&a.clock(), 100)).is_empty());
    assert!(merge(&mut b, &a.extract_delta(), 100).is_empty());
    assert!(!b.dominates(&a.clock()));
    let back = transfer(&a, &mut b, 100);
    assert_eq!(back.join_count(), 1);
    assert_eq!(back.leave_count(), 0);
    assert_eq!(shown(&b), set(&[("t", "stays", r#"{"x":2}"#)]));
}
