//! Presence CRDT glue: one resource per tracker shard holding the
//! `hornbeam_core::presence::State`; only that shard process writes it,
//! readers (list/get) share it through the mutex. Diffs come back as
//! `[{Topic, DiffJson}]`, DiffJson being the `presence_diff` payload.

use std::sync::{Mutex, MutexGuard};

use hornbeam_core::presence::{Clock, Delta, Diff, FullState, Meta, ReplicaId, State};
use rustler::{Atom, Encoder, Env, NifResult, Resource, ResourceArc, Term};

use super::{atoms, bin};

pub struct Tracker(Mutex<State>);

#[rustler::resource_impl]
impl Resource for Tracker {}

fn lock(t: &ResourceArc<Tracker>) -> NifResult<MutexGuard<'_, State>> {
    t.0.lock().map_err(|_| rustler::Error::BadArg)
}

fn diff_term<'a>(env: Env<'a>, diff: &Diff) -> Term<'a> {
    let items: Vec<Term<'a>> = diff
        .topics
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(topic, d)| {
            (bin(env, topic.as_bytes()), bin(env, d.to_json().as_bytes())).encode(env)
        })
        .collect();
    items.encode(env)
}

fn replica_term<'a>(env: Env<'a>, id: &ReplicaId) -> Term<'a> {
    (bin(env, id.node.as_bytes()), id.incarnation).encode(env)
}

fn error<'a>(env: Env<'a>, reason: &str) -> NifResult<Term<'a>> {
    Ok((atoms::error(), Atom::from_str(env, reason)?).encode(env))
}

fn find<'m>(metas: &'m [Meta], phx_ref: &str) -> Option<&'m Meta> {
    metas.iter().find(|m| &*m.phx_ref == phx_ref)
}

#[rustler::nif]
fn presence_new(node: String, incarnation: u64) -> ResourceArc<Tracker> {
    ResourceArc::new(Tracker(Mutex::new(State::new(ReplicaId::new(
        node,
        incarnation,
    )))))
}

#[rustler::nif]
fn presence_track<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    topic: String,
    owner: u64,
    key: String,
    meta: String,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    match s.track(&topic, owner, &key, &meta) {
        Ok(phx_ref) => {
            let mut diff = Diff::default();
            let metas = s.get(&topic, &key);
            if let Some(m) = find(&metas, &phx_ref) {
                diff.join(&topic.as_str().into(), &key.as_str().into(), m);
            }
            Ok((atoms::ok(), diff_term(env, &diff)).encode(env))
        }
        Err(e) => error(env, e.as_str()),
    }
}

#[rustler::nif]
fn presence_update<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    topic: String,
    owner: u64,
    key: String,
    meta: String,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let before = s.get(&topic, &key);
    match s.update(&topic, owner, &key, &meta) {
        Ok((new_ref, prev_ref)) => {
            let mut diff = Diff::default();
            let (topic_a, key_a) = (topic.as_str().into(), key.as_str().into());
            if let Some(old) = find(&before, &prev_ref) {
                diff.leave(&topic_a, &key_a, old);
            }
            let after = s.get(&topic, &key);
            if let Some(m) = find(&after, &new_ref) {
                diff.join(&topic_a, &key_a, m);
            }
            Ok((atoms::ok(), diff_term(env, &diff)).encode(env))
        }
        Err(e) => error(env, e.as_str()),
    }
}

#[rustler::nif]
fn presence_untrack<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    topic: String,
    owner: u64,
    key: String,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    match s.untrack(&topic, owner, &key) {
        Ok(meta) => {
            let mut diff = Diff::default();
            diff.leave(&topic.as_str().into(), &key.as_str().into(), &meta);
            Ok((atoms::ok(), diff_term(env, &diff)).encode(env))
        }
        Err(e) => error(env, e.as_str()),
    }
}

#[rustler::nif]
fn presence_untrack_owner<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    owner: u64,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let mut diff = Diff::default();
    for (topic, key, meta) in s.untrack_owner(owner) {
        diff.leave(&topic, &key, &meta);
    }
    Ok(diff_term(env, &diff))
}

#[rustler::nif]
fn presence_extract_delta<'a>(env: Env<'a>, t: ResourceArc<Tracker>) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let delta = s.extract_delta();
    Ok(if delta.is_empty() {
        atoms::none().encode(env)
    } else {
        bin(env, &delta.encode())
    })
}

#[rustler::nif]
fn presence_clock<'a>(env: Env<'a>, t: ResourceArc<Tracker>) -> NifResult<Term<'a>> {
    let s = lock(&t)?;
    Ok(bin(env, &s.clock().encode()))
}

/// A peer's heartbeat: introduces its replica or marks it heard from (a down
/// one comes back up once nothing it did is missing here) and says whether
/// its clock shows state we miss (then the shard asks a transfer).
#[rustler::nif]
fn presence_heartbeat<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    clock: rustler::Binary<'a>,
    now_ms: u64,
) -> NifResult<Term<'a>> {
    let clock = match Clock::decode(clock.as_slice()) {
        Ok(c) => c,
        Err(e) => return error(env, e.as_str()),
    };
    let mut s = lock(&t)?;
    if clock.replica() == s.replica() {
        let me = replica_term(env, clock.replica());
        return Ok((atoms::ok(), Vec::<Term>::new(), false, me).encode(env));
    }
    let diff = s.heartbeat(&clock, now_ms);
    let behind = !s.dominates(&clock);
    Ok((
        atoms::ok(),
        diff_term(env, &diff),
        behind,
        replica_term(env, clock.replica()),
    )
        .encode(env))
}

/// Distribution lost the replica's node: its presences leave now, kept
/// for its return (until permdown).
#[rustler::nif]
fn presence_replica_down<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    node: String,
    incarnation: u64,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let diff = s.replica_down(&ReplicaId::new(node, incarnation));
    Ok(diff_term(env, &diff))
}

/// The replica said goodbye (its node stopped for good): its presences
/// leave (if still shown) and it is forgotten.
#[rustler::nif]
fn presence_permdown<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    node: String,
    incarnation: u64,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let diff = s.permdown(&ReplicaId::new(node, incarnation));
    Ok(diff_term(env, &diff))
}

#[rustler::nif]
fn presence_merge_delta<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    delta: rustler::Binary<'a>,
    now_ms: u64,
) -> NifResult<Term<'a>> {
    let delta = match Delta::decode(delta.as_slice()) {
        Ok(d) => d,
        Err(e) => return error(env, e.as_str()),
    };
    let mut s = lock(&t)?;
    let diff = s.merge_delta(&delta, now_ms);
    Ok((atoms::ok(), diff_term(env, &diff)).encode(env))
}

#[rustler::nif]
fn presence_dominates(t: ResourceArc<Tracker>, clock: rustler::Binary) -> NifResult<bool> {
    // An undecodable clock asks for nothing.
    let Ok(clock) = Clock::decode(clock.as_slice()) else {
        return Ok(true);
    };
    let s = lock(&t)?;
    Ok(s.dominates(&clock))
}

/// Full state for a requester: on a dirty scheduler, as 100,000 entries take ~60 ms.
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_state_for<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    clock: rustler::Binary<'a>,
) -> NifResult<Term<'a>> {
    let clock = match Clock::decode(clock.as_slice()) {
        Ok(c) => c,
        Err(e) => return error(env, e.as_str()),
    };
    let s = lock(&t)?;
    Ok((atoms::ok(), bin(env, &s.full_state_for(&clock).encode())).encode(env))
}

/// Merge of a full state: on a dirty scheduler, as 100,000 entries take ~0.5 s.
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_merge_state<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    state: rustler::Binary<'a>,
    now_ms: u64,
) -> NifResult<Term<'a>> {
    let state = match FullState::decode(state.as_slice()) {
        Ok(st) => st,
        Err(e) => return error(env, e.as_str()),
    };
    let mut s = lock(&t)?;
    let diff = s.merge_state(&state, now_ms);
    Ok((atoms::ok(), diff_term(env, &diff)).encode(env))
}

#[rustler::nif]
fn presence_expire<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    now_ms: u64,
    down_ms: u64,
    permdown_ms: u64,
) -> NifResult<Term<'a>> {
    let mut s = lock(&t)?;
    let e = s.expire(now_ms, down_ms, permdown_ms);
    let downed: Vec<Term> = e.downed.iter().map(|r| replica_term(env, r)).collect();
    let gone: Vec<Term> = e.permdowned.iter().map(|r| replica_term(env, r)).collect();
    Ok((diff_term(env, &e.diff), downed, gone).encode(env))
}

#[rustler::nif]
fn presence_list<'a>(env: Env<'a>, t: ResourceArc<Tracker>, topic: String) -> NifResult<Term<'a>> {
    let s = lock(&t)?;
    Ok(bin(env, s.list_json(&topic).as_bytes()))
}

#[rustler::nif]
fn presence_get<'a>(
    env: Env<'a>,
    t: ResourceArc<Tracker>,
    topic: String,
    key: String,
) -> NifResult<Term<'a>> {
    let s = lock(&t)?;
    let metas = s.get(&topic, &key);
    if metas.is_empty() {
        return Ok(atoms::null().encode(env));
    }
    let parts: Vec<String> = metas.iter().map(Meta::to_json).collect();
    Ok(bin(
        env,
        format!("{{\"metas\":[{}]}}", parts.join(",")).as_bytes(),
    ))
}

#[rustler::nif]
fn presence_replicas<'a>(env: Env<'a>, t: ResourceArc<Tracker>) -> NifResult<Term<'a>> {
    let s = lock(&t)?;
    let items: Vec<Term> = s
        .replicas()
        .iter()
        .map(|r| {
            let status = match r.status {
                hornbeam_core::presence::ReplicaStatus::Up => atoms::up(),
                hornbeam_core::presence::ReplicaStatus::Down => atoms::down(),
            };
            (replica_term(env, &r.id), status, r.entries).encode(env)
        })
        .collect();
    Ok(items.encode(env))
}
