//! Presence: a delta-state CRDT in the style of Phoenix.Tracker.
//!
//! Each replica (one tracker shard of one node incarnation, [`ReplicaId`])
//! holds entries `{topic, owner, key} → (meta, dot)`; a *dot* is
//! `(replica, counter)`. Only the owning replica creates or removes its own
//! entries ([`State::track`], [`State::untrack`], [`State::update`],
//! [`State::untrack_owner`]); every other replica learns of them through
//! [`Delta`]s ([`State::extract_delta`] / [`State::merge_delta`]) and, when it
//! fell behind, through a [`FullState`] transfer ([`State::full_state_for`] /
//! [`State::merge_state`]). Merges return a [`Diff`] of joins and leaves per
//! topic, ready to become `presence_diff` pushes.
//!
//! ## Causality
//!
//! Only the owner changes its entries, each change takes the owner's next
//! counter (a removal takes one too, so that every change moves the
//! owner's clock), and what another replica knows of a replica `r` is
//! always a *prefix* of `r`'s history: `r`'s entries as they were when its
//! counter was `ctx`. The context is this `ctx` per known replica.
//!
//! * A delta `(start, end]` (the entries of that range still alive, and the
//!   older dots removed in the period) applies only when it is contiguous
//!   with the context (`start ≤ ctx < end`): removals leave, entries above
//!   `ctx` join, the context becomes `end`. A duplicate or stale delta
//!   (`end ≤ ctx`) is ignored; one that comes early (`start > ctx`) waits
//!   in a small per-replica buffer ([`MAX_PENDING_DELTAS`]) until the gap is
//!   filled, and meanwhile the clock shows the gap ([`State::dominates`],
//!   [`State::missing`]) so the tracker asks for a transfer.
//! * A full-state section of `r` with a higher context replaces what is
//!   known of `r` (leaves and joins computed against the entries held);
//!   one with a lower or equal context is ignored. So any transfer, however
//!   stale, merges right.
//!
//! This is stricter than the "clouds" of PRESENCE.md on purpose: merging a
//! non-contiguous delta and marking its dots seen lets the context reach
//! the owner's counter while a removal carried only by the lost delta is
//! missing, after which clocks compare equal and the ghost is never
//! repaired (`update` whose delta is lost, then `untrack`: the second delta
//! names the new dot as removed but not the old one). Phoenix's
//! `merge_deltas` likewise refuses non-contiguous ranges.
//!
//! ## Replicas
//!
//! `{node, incarnation}`. The incarnation must be fresh and *increasing* at
//! every start of the node (e.g. system time in µs at boot). A replica is
//! introduced (context 0, up) the first time it is heard of directly: a
//! delta, full state or heartbeat ([`State::heartbeat`]) it sends, or
//! [`State::replica_up`]. Entries of replicas not (yet) introduced are
//! ignored. [`State::replica_down`] (its node is gone, or it fell silent)
//! hides its entries (leaves) but keeps them; hearing from it again shows
//! them (joins) once nothing it did meanwhile is missing — a heartbeat
//! whose clock is ahead, or an early delta, leave it down until the
//! transfer or the missing deltas arrive, so a replica back from a
//! partition never shows, even briefly, entries removed while it was away;
//! [`State::permdown`] deletes and forgets it. A replica heard
//! of with the same node and a newer incarnation permdowns the old one at
//! once; anything from an older incarnation than the newest seen of that
//! node is ignored. [`State::expire`] applies `down_period` /
//! `permdown_period` with a time the caller supplies (no clocks inside).
//!
//! ## Reads
//!
//! [`State::list`] (the `presence_state` shape: by key, metas in dot order,
//! identical on converged replicas), [`State::get`], [`State::topics`],
//! counts, [`State::clock`] for heartbeats and [`State::dominates`] to decide
//! on transfer requests. Visible are the local entries and those of *up*
//! replicas.
//!
//! ## Cost
//!
//! Entries are indexed per replica (`counter → entry`, ordered) and per
//! topic (`key → dot → meta`): merging a delta costs O(delta · log n) — it
//! only looks at the dots the delta names and at the sender's entries in the
//! delta's counter range, never at all remote entries (phoenix_pubsub #126);
//! `list(topic)` is proportional to that topic.
//!
//! Owners are opaque `u64`s (the Erlang side maps channel pids to ids).
//! Metas are JSON object texts. See `codec` for the wire format of
//! [`Delta`], [`FullState`] and [`Clock`].

mod codec;
mod diff;

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

pub use codec::DecodeError;
pub use diff::{Diff, Meta, Metas, TopicDiff};

/// Early deltas kept per replica while waiting for a gap to be filled;
/// beyond that the furthest one is dropped (a transfer repairs the gap).
pub const MAX_PENDING_DELTAS: usize = 64;

/// Owner of local entries: an opaque id (one per channel process).
pub type Owner = u64;

/// A presence's `phx_ref`.
pub type PhxRef = Arc<str>;

/// One incarnation of one node's tracker shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId {
    pub node: String,
    pub incarnation: u64,
}

impl ReplicaId {
    pub fn new(node: impl Into<String>, incarnation: u64) -> Self {
        ReplicaId {
            node: node.into(),
            incarnation,
        }
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.incarnation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaStatus {
    Up,
    Down,
}

/// A remote replica as this state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub id: ReplicaId,
    pub status: ReplicaStatus,
    /// `now_ms` of the last time it was heard from.
    pub last_seen_ms: u64,
    /// Highest contiguous counter of it seen here.
    pub context: u64,
    /// Its entries held here (visible or not).
    pub entries: usize,
}

/// Why a local operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceError {
    /// `track` of a `(topic, owner, key)` that is already tracked.
    AlreadyTracked,
    /// `untrack` / `update` of a `(topic, owner, key)` that is not tracked.
    NotTracked,
    /// The meta is not a JSON object text (or is too deep); the reason.
    InvalidMeta(String),
}

impl PresenceError {
    /// Stable name: `"already_tracked"`, `"not_tracked"`, `"invalid_meta"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PresenceError::AlreadyTracked => "already_tracked",
            PresenceError::NotTracked => "not_tracked",
            PresenceError::InvalidMeta(_) => "invalid_meta",
        }
    }
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresenceError::AlreadyTracked => f.write_str("already tracked"),
            PresenceError::NotTracked => f.write_str("not tracked"),
            PresenceError::InvalidMeta(why) => write!(f, "invalid meta: {why}"),
        }
    }
}

impl std::error::Error for PresenceError {}

/// An entry as stored (and as carried by deltas and full states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) owner: Owner,
    pub(crate) meta: Meta,
}

/// What one replica knows of one replica (itself included).
#[derive(Debug, Clone)]
struct Rep {
    id: ReplicaId,
    status: ReplicaStatus,
    last_seen_ms: u64,
    ctx: u64,
    entries: BTreeMap<u64, Entry>,
    /// Early deltas by `start`, each with `start > ctx`.
    pending: BTreeMap<u64, Delta>,
    /// Down, and since heard from: it comes back up once the context
    /// reaches this counter (whoever brings it there).
    awaiting: Option<u64>,
}

impl Rep {
    fn new(id: ReplicaId, now_ms: u64) -> Self {
        Rep {
            id,
            status: ReplicaStatus::Up,
            last_seen_ms: now_ms,
            ctx: 0,
            entries: BTreeMap::new(),
            pending: BTreeMap::new(),
            awaiting: None,
        }
    }
}

/// Changes of one replica since the last [`State::extract_delta`]: the dots
/// it created in `(start, end]`, older dots it removed, and the entries of
/// that range still alive. Also the heartbeat (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub(crate) origin: ReplicaId,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Ascending, each ≤ `start`, > 0.
    pub(crate) removed: Vec<u64>,
    /// Counters in `(start, end]`.
    pub(crate) entries: BTreeMap<u64, Entry>,
}

impl Delta {
    pub fn origin(&self) -> &ReplicaId {
        &self.origin
    }
    /// The counter range `(start, end]` it covers.
    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
    /// Nothing changed: a pure heartbeat.
    pub fn is_empty(&self) -> bool {
        self.start == self.end && self.removed.is_empty()
    }
}

/// One replica's section of a [`FullState`]: its entries as of its
/// counter `ctx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) id: ReplicaId,
    pub(crate) ctx: u64,
    /// Every counter is ≤ `ctx`.
    pub(crate) entries: BTreeMap<u64, Entry>,
}

/// A replica's state, filtered for one requester (see
/// [`State::full_state_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullState {
    pub(crate) sender: ReplicaId,
    pub(crate) sections: Vec<Section>,
}

impl FullState {
    pub fn sender(&self) -> &ReplicaId {
        &self.sender
    }
    /// The replicas whose entries it carries.
    pub fn replicas(&self) -> Vec<&ReplicaId> {
        self.sections.iter().map(|s| &s.id).collect()
    }
    pub fn entry_count(&self) -> usize {
        self.sections.iter().map(|s| s.entries.len()).sum()
    }
}

/// A replica's causal context: for itself and every replica it knows, the
/// highest contiguous counter it has seen. Sent with heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub(crate) replica: ReplicaId,
    pub(crate) entries: BTreeMap<ReplicaId, u64>,
}

impl Clock {
    /// Whose clock it is.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }
    /// The counter seen of `id`, when `id` is known to the clock's owner.
    pub fn get(&self, id: &ReplicaId) -> Option<u64> {
        self.entries.get(id).copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaId, u64)> {
        self.entries.iter().map(|(id, &c)| (id, c))
    }
}

/// What [`State::expire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub diff: Diff,
    pub downed: Vec<ReplicaId>,
    pub permdowned: Vec<ReplicaId>,
}

/// Local dot of an entry: (replica slot, counter). Slots are local numbers,
/// never sent.
type LDot = (u32, u64);
/// Slot of the local replica.
const ME: u32 = 0;

/// owner → topic → key → counter.
type OwnerIndex = HashMap<Owner, HashMap<Arc<str>, HashMap<Arc<str>, u64>>>;

type TopicIndex = HashMap<Arc<str>, BTreeMap<Arc<str>, BTreeMap<LDot, Meta>>>;

/// One replica's presence state. See the module documentation.
#[derive(Debug, Clone)]
pub struct State {
    me: Rep,
    others: HashMap<u32, Rep>,
    by_node: HashMap<String, u32>,
    /// Newest incarnation ever heard of per node (kept after permdown).
    node_hw: HashMap<String, u64>,
    next_slot: u32,
    topics: TopicIndex,
    /// owner → topic → key → counter, local entries only.
    owners: OwnerIndex,
    /// Counter at the last `extract_delta`.
    delta_start: u64,
    /// Local dots ≤ `delta_start` removed since then.
    delta_removed: BTreeSet<u64>,
}

impl State {
    pub fn new(replica: ReplicaId) -> Self {
        State {
            me: Rep::new(replica, 0),
            others: HashMap::new(),
            by_node: HashMap::new(),
            node_hw: HashMap::new(),
            next_slot: ME + 1,
            topics: HashMap::new(),
            owners: HashMap::new(),
            delta_start: 0,
            delta_removed: BTreeSet::new(),
        }
    }

    /// This replica.
    pub fn replica(&self) -> &ReplicaId {
        &self.me.id
    }

    // ------------------------------------------------------------------
    // Local operations
    // ------------------------------------------------------------------

    /// Tracks `key` under `topic` for `owner` with `meta_json` (a JSON
    /// object; `phx_ref`/`phx_ref_prev` keys in it are dropped). Returns the
    /// new presence's `phx_ref`.
    pub fn track(
        &mut self,
        topic: &str,
        owner: Owner,
        key: &str,
        meta_json: &str,
    ) -> Result<PhxRef, PresenceError> {
        if self.local_counter(topic, owner, key).is_some() {
            return Err(PresenceError::AlreadyTracked);
        }
        let meta = normalize_meta(meta_json)?;
        let topic = self.intern_topic(topic);
        Ok(self.insert_local(topic, Arc::from(key), owner, meta, None))
    }

    /// Untracks one presence; returns the meta it had.
    pub fn untrack(&mut self, topic: &str, owner: Owner, key: &str) -> Result<Meta, PresenceError> {
        let c = self
            .local_counter(topic, owner, key)
            .ok_or(PresenceError::NotTracked)?;
        let e = self.remove_local(c).ok_or(PresenceError::NotTracked)?;
        self.next_counter();
        Ok(e.meta)
    }

    /// Replaces the meta of one presence: its old dot is removed and a new
    /// one created in a single step, the new meta carrying
    /// `phx_ref_prev`. Returns `(new phx_ref, previous phx_ref)`.
    pub fn update(
        &mut self,
        topic: &str,
        owner: Owner,
        key: &str,
        meta_json: &str,
    ) -> Result<(PhxRef, PhxRef), PresenceError> {
        let c = self
            .local_counter(topic, owner, key)
            .ok_or(PresenceError::NotTracked)?;
        let meta = normalize_meta(meta_json)?;
        let old = self.remove_local(c).ok_or(PresenceError::NotTracked)?;
        let prev = old.meta.phx_ref.clone();
        let new = self.insert_local(old.topic, old.key, owner, meta, Some(prev.clone()));
        Ok((new, prev))
    }

    /// Untracks every presence of `owner` (its process exited). Returns the
    /// removed `(topic, key, meta)`, oldest first.
    pub fn untrack_owner(&mut self, owner: Owner) -> Vec<(Arc<str>, Arc<str>, Meta)> {
        let mut counters: Vec<u64> = match self.owners.get(&owner) {
            Some(topics) => topics
                .values()
                .flat_map(|keys| keys.values().copied())
                .collect(),
            None => return Vec::new(),
        };
        counters.sort_unstable();
        let removed: Vec<_> = counters
            .into_iter()
            .filter_map(|c| self.remove_local(c))
            .map(|e| (e.topic, e.key, e.meta))
            .collect();
        if !removed.is_empty() {
            self.next_counter();
        }
        removed
    }

    fn local_counter(&self, topic: &str, owner: Owner, key: &str) -> Option<u64> {
        self.owners.get(&owner)?.get(topic)?.get(key).copied()
    }

    fn intern_topic(&self, topic: &str) -> Arc<str> {
        match self.topics.get_key_value(topic) {
            Some((t, _)) => t.clone(),
            None => Arc::from(topic),
        }
    }

    fn next_counter(&mut self) -> u64 {
        self.me.ctx = self.me.ctx.saturating_add(1);
        self.me.ctx
    }

    fn insert_local(
        &mut self,
        topic: Arc<str>,
        key: Arc<str>,
        owner: Owner,
        meta: Arc<str>,
        phx_ref_prev: Option<PhxRef>,
    ) -> PhxRef {
        let c = self.next_counter();
        let phx_ref = make_ref(&self.me.id, c);
        let entry = Entry {
            topic,
            key,
            owner,
            meta: Meta {
                meta,
                phx_ref: phx_ref.clone(),
                phx_ref_prev,
            },
        };
        self.owners
            .entry(owner)
            .or_default()
            .entry(entry.topic.clone())
            .or_default()
            .insert(entry.key.clone(), c);
        index_insert(&mut self.topics, (ME, c), &entry);
        self.me.entries.insert(c, entry);
        phx_ref
    }

    fn remove_local(&mut self, c: u64) -> Option<Entry> {
        let e = self.me.entries.remove(&c)?;
        index_remove(&mut self.topics, (ME, c), &e);
        if let Some(topics) = self.owners.get_mut(&e.owner) {
            if let Some(keys) = topics.get_mut(&e.topic) {
                keys.remove(&e.key);
                if keys.is_empty() {
                    topics.remove(&e.topic);
                }
            }
            if topics.is_empty() {
                self.owners.remove(&e.owner);
            }
        }
        if c <= self.delta_start {
            self.delta_removed.insert(c);
        }
        Some(e)
    }

    // ------------------------------------------------------------------
    // Gossip
    // ------------------------------------------------------------------

    /// The changes since the last call (possibly none: then it is a plain
    /// heartbeat), and starts a new period.
    pub fn extract_delta(&mut self) -> Delta {
        let start = self.delta_start;
        let end = self.me.ctx;
        let entries = if start < end {
            self.me
                .entries
                .range(start + 1..)
                .map(|(&c, e)| (c, e.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        let removed = std::mem::take(&mut self.delta_removed)
            .into_iter()
            .collect();
        self.delta_start = end;
        Delta {
            origin: self.me.id.clone(),
            start,
            end,
            removed,
            entries,
        }
    }

    /// Merges a delta received from its origin replica (which is thereby
    /// heard from: introduced or marked up at `now_ms`). Deltas of this
    /// node or of an outdated incarnation are ignored; duplicates and stale
    /// ones change nothing; early ones wait for the gap to be filled.
    pub fn merge_delta(&mut self, delta: &Delta, now_ms: u64) -> Diff {
        let mut diff = Diff::default();
        let Some(slot) = self.observe(&delta.origin, now_ms, &mut diff) else {
            return diff;
        };
        let Some(rep) = self.others.get_mut(&slot) else {
            return diff;
        };
        if delta.start > rep.ctx {
            // Early (a down replica stays down: it is not current). A
            // heartbeat (empty range) has nothing to wait with.
            let keep = delta.start < delta.end
                && rep
                    .pending
                    .get(&delta.start)
                    .is_none_or(|d| d.end < delta.end);
            if keep {
                rep.pending.insert(delta.start, delta.clone());
                if rep.pending.len() > MAX_PENDING_DELTAS {
                    rep.pending.pop_last();
                }
            }
            self.revive_if_current(slot, delta.end, &mut diff);
            return diff;
        }
        apply_delta(rep, slot, delta, &mut self.topics, &mut diff);
        drain_pending(rep, slot, &mut self.topics, &mut diff);
        self.revive_if_current(slot, delta.end, &mut diff);
        diff
    }

    /// Replicas from which an early delta waits for a missing one: ask them
    /// (or any replica whose clock is ahead) for a transfer.
    pub fn missing(&self) -> Vec<ReplicaId> {
        let mut v: Vec<ReplicaId> = self
            .others
            .values()
            .filter(|r| !r.pending.is_empty())
            .map(|r| r.id.clone())
            .collect();
        v.sort();
        v
    }

    /// This replica's causal context, for heartbeats.
    pub fn clock(&self) -> Clock {
        let mut entries = BTreeMap::new();
        entries.insert(self.me.id.clone(), self.me.ctx);
        for rep in self.others.values() {
            entries.insert(rep.id.clone(), rep.ctx);
        }
        Clock {
            replica: self.me.id.clone(),
            entries,
        }
    }

    /// Whether this replica has seen, contiguously, everything `other`
    /// has of the replicas both know. When not, ask `other` for a transfer.
    /// Replicas this one does not know are not counted (they are
    /// introduced by their own heartbeat first).
    pub fn dominates(&self, other: &Clock) -> bool {
        other.entries.iter().all(|(id, &c)| {
            if id.node == self.me.id.node {
                return true;
            }
            match self.known(id) {
                Some(slot) => self.others.get(&slot).is_none_or(|r| r.ctx >= c),
                None => true,
            }
        })
    }

    /// The state to send to a replica whose clock is `requester`: only
    /// sections of replicas it knows (and this sender's own), only those it
    /// has not fully seen, never the requester's own entries.
    pub fn full_state_for(&self, requester: &Clock) -> FullState {
        let mut sections = Vec::new();
        for rep in std::iter::once(&self.me).chain(self.others.values()) {
            if rep.id.node == requester.replica.node {
                continue;
            }
            let theirs = match requester.get(&rep.id) {
                Some(c) => c,
                None if rep.id == self.me.id => 0,
                None => continue,
            };
            if rep.ctx <= theirs {
                continue;
            }
            sections.push(Section {
                id: rep.id.clone(),
                ctx: rep.ctx,
                entries: rep.entries.clone(),
            });
        }
        sections.sort_by(|a, b| a.id.cmp(&b.id));
        FullState {
            sender: self.me.id.clone(),
            sections,
        }
    }

    /// Merges a full state (however stale) received from its sender, which
    /// is thereby heard from. Sections of replicas not known here, of this
    /// node, or of another incarnation than the known one are ignored.
    pub fn merge_state(&mut self, state: &FullState, now_ms: u64) -> Diff {
        let mut diff = Diff::default();
        let Some(sender) = self.observe(&state.sender, now_ms, &mut diff) else {
            return diff;
        };
        for section in &state.sections {
            let Some(slot) = self.known(&section.id) else {
                continue;
            };
            let Some(rep) = self.others.get_mut(&slot) else {
                continue;
            };
            merge_section(rep, slot, section, &mut self.topics, &mut diff);
            drain_pending(rep, slot, &mut self.topics, &mut diff);
            // A down replica heard from meanwhile may be current now.
            if rep.awaiting.is_some() {
                self.revive_if_current(slot, 0, &mut diff);
            }
        }
        // The sender's own section, if any, was its whole state: current.
        let theirs = state
            .sections
            .iter()
            .find(|s| s.id == state.sender)
            .map_or(0, |s| s.ctx);
        self.revive_if_current(sender, theirs, &mut diff);
        diff
    }

    // ------------------------------------------------------------------
    // Replicas
    // ------------------------------------------------------------------

    /// Slot of exactly this replica, if known (never the local one).
    fn known(&self, id: &ReplicaId) -> Option<u32> {
        let slot = *self.by_node.get(&id.node)?;
        let rep = self.others.get(&slot)?;
        (rep.id.incarnation == id.incarnation).then_some(slot)
    }

    /// Heard from `id` at `now_ms`: introduce it or refresh its last-seen
    /// time (a down replica stays down: see [`State::revive_if_current`]);
    /// a newer incarnation permdowns the older one. `None` when it must be
    /// ignored.
    fn observe(&mut self, id: &ReplicaId, now_ms: u64, diff: &mut Diff) -> Option<u32> {
        if id.node == self.me.id.node {
            return None;
        }
        if self
            .node_hw
            .get(&id.node)
            .is_some_and(|&hw| id.incarnation < hw)
        {
            return None;
        }
        self.node_hw.insert(id.node.clone(), id.incarnation);
        if let Some(&slot) = self.by_node.get(&id.node) {
            match self.others.get_mut(&slot) {
                Some(rep) if rep.id.incarnation == id.incarnation => {
                    rep.last_seen_ms = rep.last_seen_ms.max(now_ms);
                    return Some(slot);
                }
                _ => self.permdown_slot(slot, diff),
            }
        }
        let slot = self.next_slot;
        self.next_slot = self.next_slot.saturating_add(1);
        self.others.insert(slot, Rep::new(id.clone(), now_ms));
        self.by_node.insert(id.node.clone(), slot);
        Some(slot)
    }

    /// A down replica heard from comes back up — its entries join — only
    /// once nothing it did up to its counter `theirs` is missing here, so
    /// that a replica returning from a partition never shows entries its
    /// owner removed meanwhile. Until then its clock shows the gap and the
    /// tracker asks for a transfer, whose merge (or the contiguous deltas)
    /// brings it up.
    fn revive_if_current(&mut self, slot: u32, theirs: u64, diff: &mut Diff) {
        if let Some(rep) = self.others.get_mut(&slot) {
            if rep.status != ReplicaStatus::Down {
                return;
            }
            let want = rep.awaiting.map_or(theirs, |w| w.max(theirs));
            if rep.ctx >= want && rep.pending.is_empty() {
                rep.status = ReplicaStatus::Up;
                rep.awaiting = None;
                for e in rep.entries.values() {
                    diff.join(&e.topic, &e.key, &e.meta);
                }
            } else {
                rep.awaiting = Some(want);
            }
        }
    }

    fn permdown_slot(&mut self, slot: u32, diff: &mut Diff) {
        let Some(rep) = self.others.remove(&slot) else {
            return;
        };
        if self.by_node.get(&rep.id.node) == Some(&slot) {
            self.by_node.remove(&rep.id.node);
        }
        let visible = rep.status == ReplicaStatus::Up;
        for (c, e) in &rep.entries {
            index_remove(&mut self.topics, (slot, *c), e);
            if visible {
                diff.leave(&e.topic, &e.key, &e.meta);
            }
        }
    }

    /// Heard from `id` (a heartbeat): introduces it, or marks it up again
    /// (its entries join). A newer incarnation of a known node permdowns
    /// the old one (its entries leave).
    pub fn replica_up(&mut self, id: &ReplicaId, now_ms: u64) -> Diff {
        let mut diff = Diff::default();
        if let Some(slot) = self.observe(id, now_ms, &mut diff) {
            self.revive_if_current(slot, 0, &mut diff);
        }
        diff
    }

    /// A heartbeat carrying `clock`, from `clock.replica()`: introduces it,
    /// or marks it heard from; a down one comes back up only if this
    /// replica has seen everything the clock says it did (otherwise
    /// [`State::dominates`] is false: ask it for a transfer).
    pub fn heartbeat(&mut self, clock: &Clock, now_ms: u64) -> Diff {
        let mut diff = Diff::default();
        if let Some(slot) = self.observe(&clock.replica, now_ms, &mut diff) {
            let theirs = clock.get(&clock.replica).unwrap_or(0);
            self.revive_if_current(slot, theirs, &mut diff);
        }
        diff
    }

    /// Marks `id` down: its entries leave but are kept.
    pub fn replica_down(&mut self, id: &ReplicaId) -> Diff {
        let mut diff = Diff::default();
        if let Some(slot) = self.known(id) {
            self.down_slot(slot, &mut diff);
        }
        diff
    }

    fn down_slot(&mut self, slot: u32, diff: &mut Diff) {
        if let Some(rep) = self.others.get_mut(&slot) {
            rep.awaiting = None;
            if rep.status == ReplicaStatus::Up {
                rep.status = ReplicaStatus::Down;
                for e in rep.entries.values() {
                    diff.leave(&e.topic, &e.key, &e.meta);
                }
            }
        }
    }

    /// Deletes `id`'s entries and forgets it (leaves if it was up).
    pub fn permdown(&mut self, id: &ReplicaId) -> Diff {
        let mut diff = Diff::default();
        if let Some(slot) = self.known(id) {
            self.permdown_slot(slot, &mut diff);
        }
        diff
    }

    /// Marks down the replicas not heard from for `down_after_ms` and
    /// permdowns those not heard from for `permdown_after_ms`.
    pub fn expire(&mut self, now_ms: u64, down_after_ms: u64, permdown_after_ms: u64) -> Expired {
        let mut out = Expired::default();
        let mut slots: Vec<(ReplicaId, u32)> = self
            .others
            .iter()
            .map(|(&s, r)| (r.id.clone(), s))
            .collect();
        slots.sort();
        for (id, slot) in slots {
            let Some(rep) = self.others.get(&slot) else {
                continue;
            };
            let quiet = now_ms.saturating_sub(rep.last_seen_ms);
            if quiet >= permdown_after_ms {
                self.permdown_slot(slot, &mut out.diff);
                out.permdowned.push(id);
            } else if quiet >= down_after_ms && rep.status == ReplicaStatus::Up {
                self.down_slot(slot, &mut out.diff);
                out.downed.push(id);
            }
        }
        out
    }

    /// The remote replicas known here, by id.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let mut v: Vec<ReplicaInfo> = self
            .others
            .values()
            .map(|r| ReplicaInfo {
                id: r.id.clone(),
                status: r.status,
                last_seen_ms: r.last_seen_ms,
                context: r.ctx,
                entries: r.entries.len(),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    // ------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------

    fn visible(&self, slot: u32) -> bool {
        slot == ME
            || self
                .others
                .get(&slot)
                .is_some_and(|r| r.status == ReplicaStatus::Up)
    }

    fn id_of(&self, slot: u32) -> Option<&ReplicaId> {
        if slot == ME {
            Some(&self.me.id)
        } else {
            self.others.get(&slot).map(|r| &r.id)
        }
    }

    fn visible_metas<'a>(&'a self, dots: &'a BTreeMap<LDot, Meta>) -> Vec<Meta> {
        let mut v: Vec<(&ReplicaId, u64, &Meta)> = dots
            .iter()
            .filter(|((s, _), _)| self.visible(*s))
            .filter_map(|(&(s, c), m)| Some((self.id_of(s)?, c, m)))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.into_iter().map(|(_, _, m)| m.clone()).collect()
    }

    /// Visible presences of `topic`: by key (sorted), each key's metas in
    /// dot order (the same on every converged replica).
    pub fn list(&self, topic: &str) -> Vec<(Arc<str>, Vec<Meta>)> {
        let Some(keys) = self.topics.get(topic) else {
            return Vec::new();
        };
        keys.iter()
            .map(|(k, dots)| (k.clone(), self.visible_metas(dots)))
            .filter(|(_, metas)| !metas.is_empty())
            .collect()
    }

    /// [`State::list`] as the `presence_state` payload:
    /// `{"key":{"metas":[{"phx_ref":…,…}]}}`.
    pub fn list_json(&self, topic: &str) -> String {
        let list = self.list(topic);
        let mut out = String::with_capacity(64);
        diff::write_presences(&mut out, list.iter().map(|(k, m)| (k, m.iter())));
        out
    }

    /// Visible metas of one key.
    pub fn get(&self, topic: &str, key: &str) -> Vec<Meta> {
        match self.topics.get(topic).and_then(|keys| keys.get(key)) {
            Some(dots) => self.visible_metas(dots),
            None => Vec::new(),
        }
    }

    /// Topics with at least one visible presence, sorted.
    pub fn topics(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .topics
            .iter()
            .filter(|(_, keys)| {
                keys.values()
                    .any(|dots| dots.keys().any(|&(s, _)| self.visible(s)))
            })
            .map(|(t, _)| t.clone())
            .collect();
        v.sort();
        v
    }

    /// Number of keys with a visible presence in `topic`.
    pub fn key_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |keys| {
            keys.values()
                .filter(|dots| dots.keys().any(|&(s, _)| self.visible(s)))
                .count()
        })
    }

    /// Number of visible presences (metas) in all topics.
    pub fn len(&self) -> usize {
        self.me.entries.len()
            + self
                .others
                .values()
                .filter(|r| r.status == ReplicaStatus::Up)
                .map(|r| r.entries.len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entries held, visible or not.
    pub fn entry_count(&self) -> usize {
        self.me.entries.len() + self.others.values().map(|r| r.entries.len()).sum::<usize>()
    }

    /// Number of local presences.
    pub fn local_count(&self) -> usize {
        self.me.entries.len()
    }
}

/// Applies a delta contiguous with what is known (`start ≤ ctx`); does
/// nothing to a stale one (`end ≤ ctx`).
fn apply_delta(rep: &mut Rep, slot: u32, delta: &Delta, topics: &mut TopicIndex, diff: &mut Diff) {
    if delta.end <= rep.ctx || delta.start > rep.ctx {
        return;
    }
    let visible = rep.status == ReplicaStatus::Up;
    // Leaves: entries held whose dot the delta covers without carrying it.
    let mut gone: Vec<u64> = delta
        .removed
        .iter()
        .copied()
        .filter(|c| rep.entries.contains_key(c))
        .collect();
    gone.extend(
        rep.entries
            .range(delta.start.saturating_add(1)..=delta.end)
            .map(|(&c, _)| c)
            .filter(|c| !delta.entries.contains_key(c)),
    );
    for c in gone {
        if let Some(e) = rep.entries.remove(&c) {
            index_remove(topics, (slot, c), &e);
            if visible {
                diff.leave(&e.topic, &e.key, &e.meta);
            }
        }
    }
    // Joins: carried entries above the context.
    for (&c, e) in delta.entries.range(rep.ctx.saturating_add(1)..) {
        if let btree_map::Entry::Vacant(v) = rep.entries.entry(c) {
            index_insert(topics, (slot, c), e);
            if visible {
                diff.join(&e.topic, &e.key, &e.meta);
            }
            v.insert(e.clone());
        }
    }
    rep.ctx = delta.end;
}

/// Applies the buffered deltas that the context has reached.
fn drain_pending(rep: &mut Rep, slot: u32, topics: &mut TopicIndex, diff: &mut Diff) {
    while let Some(entry) = rep.pending.first_entry() {
        if *entry.key() > rep.ctx {
            break;
        }
        let delta = entry.remove();
        apply_delta(rep, slot, &delta, topics, diff);
    }
}

/// Merges one section of a full state: a newer prefix of the replica's
/// history replaces the one held; an older or equal one changes nothing.
fn merge_section(
    rep: &mut Rep,
    slot: u32,
    section: &Section,
    topics: &mut TopicIndex,
    diff: &mut Diff,
) {
    if section.ctx <= rep.ctx {
        return;
    }
    let visible = rep.status == ReplicaStatus::Up;
    let gone: Vec<u64> = rep
        .entries
        .keys()
        .copied()
        .filter(|c| !section.entries.contains_key(c))
        .collect();
    for c in gone {
        if let Some(e) = rep.entries.remove(&c) {
            index_remove(topics, (slot, c), &e);
            if visible {
                diff.leave(&e.topic, &e.key, &e.meta);
            }
        }
    }
    for (&c, e) in &section.entries {
        if let btree_map::Entry::Vacant(v) = rep.entries.entry(c) {
            index_insert(topics, (slot, c), e);
            if visible {
                diff.join(&e.topic, &e.key, &e.meta);
            }
            v.insert(e.clone());
        }
    }
    rep.ctx = section.ctx;
}

fn index_insert(topics: &mut TopicIndex, dot: LDot, e: &Entry) {
    topics
        .entry(e.topic.clone())
        .or_default()
        .entry(e.key.clone())
        .or_default()
        .insert(dot, e.meta.clone());
}

fn index_remove(topics: &mut TopicIndex, dot: LDot, e: &Entry) {
    if let Some(keys) = topics.get_mut(&*e.topic) {
        if let Some(dots) = keys.get_mut(&*e.key) {
            dots.remove(&dot);
            if dots.is_empty() {
                keys.remove(&*e.key);
            }
        }
        if keys.is_empty() {
            topics.remove(&*e.topic);
        }
    }
}

/// Parses a meta, requires an object, drops the reserved keys (then
/// returns it re-serialized compact; without them, as given).
fn normalize_meta(text: &str) -> Result<Arc<str>, PresenceError> {
    // Fast path: no reserved key to drop, so a valid object is kept as
    // given (validated without building a value).
    let t = text.trim();
    if !t.contains("phx_ref")
        && t.starts_with('{')
        && crate::json::depth(t.as_bytes()) <= crate::json::DEFAULT_MAX_DEPTH
        && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
    {
        return Ok(Arc::from(t));
    }
    let value = crate::json::parse(text.as_bytes(), crate::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| PresenceError::InvalidMeta(e.to_string()))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(PresenceError::InvalidMeta(
            "meta must be a JSON object".to_owned(),
        ));
    };
    map.remove("phx_ref");
    map.remove("phx_ref_prev");
    serde_json::to_string(&map)
        .map(Arc::from)
        .map_err(|e| PresenceError::InvalidMeta(e.to_string()))
}

/// `phx_ref` of the dot `(id, counter)`: 11 URL-safe base64 characters of
/// a 64-bit mix. Distinct for every counter of one replica (the mix is a
/// bijection), and across replicas but with probability ~2⁻⁶⁴ per pair.
fn make_ref(id: &ReplicaId, counter: u64) -> PhxRef {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in id.node.bytes().chain(id.incarnation.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(11);
    for i in 0..11 {
        s.push(ALPHABET[((z >> (6 * i)) & 63) as usize] as char);
    }
    Arc::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(node: &str) -> State {
        State::new(ReplicaId::new(node, 1))
    }

    #[test]
    fn presence_refs_are_distinct_per_replica() {
        let id = ReplicaId::new("a@host", 7);
        let refs: BTreeSet<PhxRef> = (1..=10_000).map(|c| make_ref(&id, c)).collect();
        assert_eq!(refs.len(), 10_000);
        assert!(refs.iter().all(|r| r.len() == 11));
        assert_ne!(make_ref(&ReplicaId::new("a@host", 8), 1), make_ref(&id, 1));
    }

    #[test]
    fn presence_track_untrack_update_locally() {
        let mut s = st("a");
        let r1 = s
            .track("room", 1, "u", r#"{"x":1,"phx_ref":"evil"}"#)
            .unwrap();
        assert_eq!(
            s.track("room", 1, "u", "{}"),
            Err(PresenceError::AlreadyTracked)
        );
        assert!(matches!(
            s.track("room", 2, "u", "[1]"),
            Err(PresenceError::InvalidMeta(_))
        ));
        assert!(matches!(
            s.track("room", 2, "u", "{"),
            Err(PresenceError::InvalidMeta(_))
        ));
        let l = s.get("room", "u");
        assert_eq!(l.len(), 1);
        assert_eq!(&*l[0].meta, r#"{"x":1}"#);
        assert_eq!(l[0].phx_ref, r1);
        let (r2, prev) = s.update("room", 1, "u", r#"{"x":2}"#).unwrap();
        assert_eq!(prev, r1);
        let l = s.get("room", "u");
        assert_eq!(l[0].phx_ref_prev.as_deref(), Some(&*r1));
        assert_eq!(l[0].phx_ref, r2);
        assert_eq!(
            s.list_json("room"),
            format!(r#"{{"u":{{"metas":[{{"phx_ref":"{r2}","phx_ref_prev":"{r1}","x":2}}]}}}}"#)
        );
        assert_eq!(s.untrack("room", 9, "u"), Err(PresenceError::NotTracked));
        s.track("lobby", 1, "u", "{}").unwrap();
        assert_eq!(s.untrack_owner(1).len(), 2);
        assert!(s.is_empty() && s.topics().is_empty());
        assert!(s.untrack_owner(1).is_empty());
    }
}
