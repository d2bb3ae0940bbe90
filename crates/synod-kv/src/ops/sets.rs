//! The set commands (issue 16): SADD, SREM, SMEMBERS, SISMEMBER,
//! SMISMEMBER, SCARD, SPOP, SRANDMEMBER, SMOVE, SINTER/SUNION/SDIFF (and
//! their STORE forms), SINTERCARD and SSCAN.
//!
//! Members are kept in byte order ([`SetMembers`]), so every reply that
//! lists members (SMEMBERS, SINTER, ...) lists them in the same order on
//! every replica; Redis leaves that order unspecified. SPOP and
//! SRANDMEMBER draw from [`super::random::generator`], seeded by the
//! command's place in the log, and shuffle what they draw, so the order of
//! their replies carries no bias either.
//!
//! Work bounds: a read whose cost grows with the sets (SMEMBERS, SINTER,
//! SSCAN, ...) is sent alone and answered off the event loop when large
//! (see `ops::read_off_loop`); a STORE form runs on every replica's apply
//! path, so it is refused past [`SET_STORE_WORK_MAX`] members visited,
//! from replicated state only (every replica refuses alike).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::hashes::scan_page;
use super::random::{
    distinct_positions, generator, shuffle, uniform_below, RANDOM_REPLY_BYTES_MAX,
    RANDOM_REPLY_ENTRY_BYTES,
};
use super::{memory, wrong_type};
use crate::command::SetOperation;
use crate::keyspace::{Keyspace, Lookup, Value, ValueRef};
use crate::value::{entry_bytes, SetMembers};

/// Most members (the sum of the source sets' sizes) one SINTERSTORE,
/// SUNIONSTORE or SDIFFSTORE may visit: it runs on every replica's apply
/// path (and again on replay), where a combination of two sets of millions
/// would stall consensus. The same bound as SORT's output.
pub(crate) const SET_STORE_WORK_MAX: usize = super::keys_more::SORT_OUTPUT_MAX;

/// The live set at `key`: `None` when absent, WRONGTYPE for another type.
pub(crate) fn set_at<'a>(
    keyspace: &'a impl Lookup,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a SetMembers>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::Set(members)) => Ok(Some(members)),
        Some(_) => Err(wrong_type()),
    }
}

/// Changes the live set at `key`, created empty when absent (and removed
/// again if `change` leaves it empty). A set shared with a keyspace view is
/// copied first.
fn change_set<R>(
    keyspace: &mut Keyspace,
    key: &Bytes,
    now: u64,
    change: impl FnOnce(&mut SetMembers) -> R,
) -> Result<R, Reply> {
    keyspace.modify_or_insert(key, now, Value::empty_set, |value| match value {
        Value::Set(members) => Ok(change(Arc::make_mut(members))),
        _ => Err(wrong_type()),
    })
}

/// Changes the existing live set at `key` (removed if left empty); `None`
/// when there is none. The caller checked the type.
fn change_existing_set<R>(
    keyspace: &mut Keyspace,
    key: &[u8],
    now: u64,
    change: impl FnOnce(&mut SetMembers) -> R,
) -> Option<R> {
    keyspace
        .modify(key, now, |value| match value {
            Value::Set(members) => Some(change(Arc::make_mut(members))),
            _ => None,
        })
        .flatten()
}

fn bulk(member: &Bytes) -> Reply {
    Reply::Bulk(member.clone())
}

pub(crate) fn sadd(keyspace: &mut Keyspace, key: &Bytes, members: &[Bytes], now: u64) -> Reply {
    if members.is_empty() {
        // Only a hand-built command can get here; the parser demands one.
        return crate::parse::wrong_arity("sadd");
    }
    match change_set(keyspace, key, now, |set| {
        members
            .iter()
            .filter(|member| set.insert((*member).clone()))
            .count()
    }) {
        Ok(added) => Reply::Integer(added as i64),
        Err(error) => error,
    }
}

pub(crate) fn srem(keyspace: &mut Keyspace, key: &Bytes, members: &[Bytes], now: u64) -> Reply {
    match set_at(keyspace, key, now) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    }
    let removed = change_existing_set(keyspace, key, now, |set| {
        members.iter().filter(|member| set.remove(member)).count()
    });
    Reply::Integer(removed.unwrap_or(0) as i64)
}

pub(crate) fn smembers(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match set_at(keyspace, key, now) {
        Ok(set) => Reply::Set(
            set.into_iter()
                .flat_map(SetMembers::iter)
                .map(bulk)
                .collect(),
        ),
        Err(error) => error,
    }
}

pub(crate) fn sismember(keyspace: &Keyspace, key: &[u8], member: &[u8], now: u64) -> Reply {
    match set_at(keyspace, key, now) {
        Ok(set) => Reply::Integer(i64::from(set.is_some_and(|set| set.contains(member)))),
        Err(error) => error,
    }
}

pub(crate) fn smismember(keyspace: &Keyspace, key: &[u8], members: &[Bytes], now: u64) -> Reply {
    match set_at(keyspace, key, now) {
        Ok(set) => Reply::Array(
            members
                .iter()
                .map(|member| {
                    Reply::Integer(i64::from(set.is_some_and(|set| set.contains(member))))
                })
                .collect(),
        ),
        Err(error) => error,
    }
}

pub(crate) fn scard(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match set_at(keyspace, key, now) {
        Ok(set) => Reply::Integer(set.map_or(0, |set| set.len() as i64)),
        Err(error) => error,
    }
}

/// `SPOP`: removes one uniformly drawn member (its reply a bulk string, nil
/// for no set), or `count` distinct members, every subset equally likely,
/// in a shuffled order (a RESP3 set; the whole set when `count` reaches its
/// size, which deletes the key). A write, so its draw is seeded by its
/// place in the log. O(size) for the walk to the drawn members.
pub(crate) fn spop(
    keyspace: &mut Keyspace,
    key: &Bytes,
    count: Option<u64>,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let now = ctx.time_ms;
    let set = match set_at(keyspace, key, now) {
        Ok(Some(set)) => set,
        Ok(None) if count.is_some() => return Reply::Set(Vec::new()),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let len = set.len();
    debug_assert!(len > 0, "a stored set is never empty");
    let mut rng = generator(ctx, position, key);
    let popped: Vec<Bytes> = match count {
        None => {
            let at = uniform_below(&mut rng, len as u64) as usize;
            set.at_positions(&[at]).into_iter().cloned().collect()
        }
        Some(0) => return Reply::Set(Vec::new()),
        Some(count) if count >= len as u64 => {
            let all: Vec<Reply> = set.iter().map(bulk).collect();
            keyspace.remove(key);
            return Reply::Set(all);
        }
        Some(count) => {
            let positions = distinct_positions(&mut rng, len, count as usize);
            let mut popped: Vec<Bytes> =
                set.at_positions(&positions).into_iter().cloned().collect();
            shuffle(&mut rng, &mut popped);
            popped
        }
    };
    change_existing_set(keyspace, key, now, |set| {
        for member in &popped {
            set.remove(member);
        }
    });
    match count {
        None => popped.into_iter().next().map_or(Reply::Null, Reply::Bulk),
        Some(_) => Reply::Set(popped.into_iter().map(Reply::Bulk).collect()),
    }
}

/// `SRANDMEMBER`. A read whose answer depends on its place in the log (the
/// seed of [`generator`]); it is therefore always answered through the log
/// (see `read_depends_on_time`), as HRANDFIELD is. A positive count draws
/// distinct members (every subset equally likely, shuffled; the whole set
/// when it reaches the size); a negative one draws `-count` members
/// independently, refused past [`RANDOM_REPLY_BYTES_MAX`] of reply before
/// the draws are allocated. O(size + draws).
pub(crate) fn srandmember(
    keyspace: &impl Lookup,
    key: &[u8],
    count: Option<i64>,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let set = match set_at(keyspace, key, ctx.time_ms) {
        Ok(Some(set)) => set,
        Ok(None) if count.is_some() => return Reply::Array(Vec::new()),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let len = set.len();
    debug_assert!(len > 0, "a stored set is never empty");
    let mut rng = generator(ctx, position, key);
    let Some(count) = count else {
        let at = uniform_below(&mut rng, len as u64) as usize;
        return set
            .at_positions(&[at])
            .into_iter()
            .next()
            .map_or(Reply::Null, bulk);
    };
    if count >= 0 {
        if count as u64 >= len as u64 {
            return Reply::Array(set.iter().map(bulk).collect());
        }
        let positions = distinct_positions(&mut rng, len, count as usize);
        let mut picked = set.at_positions(&positions);
        shuffle(&mut rng, &mut picked);
        return Reply::Array(picked.into_iter().map(bulk).collect());
    }
    let too_big = || {
        Reply::error(format!(
            "ERR SRANDMEMBER reply of more than {RANDOM_REPLY_BYTES_MAX} bytes refused; ask for fewer members"
        ))
    };
    let draws = count.unsigned_abs();
    // Every drawn member costs at least its entry overhead: a count past
    // this is refused before anything is drawn or allocated.
    if draws.saturating_mul(RANDOM_REPLY_ENTRY_BYTES) > RANDOM_REPLY_BYTES_MAX {
        return too_big();
    }
    let draws = draws as usize;
    // (position in the set, slot in the reply), walked in set order.
    let mut wanted: Vec<(usize, usize)> = (0..draws)
        .map(|slot| (uniform_below(&mut rng, len as u64) as usize, slot))
        .collect();
    wanted.sort_unstable();
    let positions: Vec<usize> = wanted.iter().map(|&(at, _)| at).collect();
    let members = set.at_positions(&positions);
    let mut reply_bytes = 0u64;
    let mut slots: Vec<Option<&Bytes>> = vec![None; draws];
    for (&(_, slot), member) in wanted.iter().zip(members) {
        reply_bytes = reply_bytes
            .saturating_add(RANDOM_REPLY_ENTRY_BYTES)
            .saturating_add(member.len() as u64);
        if reply_bytes > RANDOM_REPLY_BYTES_MAX {
            return too_big();
        }
        slots[slot] = Some(member);
    }
    Reply::Array(slots.into_iter().flatten().map(bulk).collect())
}

/// `SMOVE`: 0 when the source set lacks the member (or is missing, whatever
/// the destination holds), WRONGTYPE when either key holds another type.
pub(crate) fn smove(
    keyspace: &mut Keyspace,
    source: &Bytes,
    destination: &Bytes,
    member: &Bytes,
    now: u64,
) -> Reply {
    let contains = match set_at(keyspace, source, now) {
        Ok(Some(set)) => set.contains(member),
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    };
    let in_destination = match set_at(keyspace, destination, now) {
        Ok(set) => set.is_some_and(|set| set.contains(member)),
        Err(error) => return error,
    };
    if source == destination || !contains {
        return Reply::Integer(i64::from(contains));
    }
    change_existing_set(keyspace, source, now, |set| set.remove(member));
    if in_destination {
        // The destination is unchanged: as in Redis, it is not written (a
        // WATCH of it does not abort, it gets no event).
        return Reply::Integer(1);
    }
    match change_set(keyspace, destination, now, |set| set.insert(member.clone())) {
        Ok(_) => Reply::Integer(1),
        Err(error) => error,
    }
}

/// The live sets at `keys` (`None` for a missing key), or WRONGTYPE when any
/// holds another type: every key is checked before anything is computed,
/// as Redis does.
fn sets_at<'a>(
    keyspace: &'a impl Lookup,
    keys: &[Bytes],
    now: u64,
) -> Result<Vec<Option<&'a SetMembers>>, Reply> {
    keys.iter().map(|key| set_at(keyspace, key, now)).collect()
}

/// Members the combination of `keys` visits at most: the sum of the live
/// sets' sizes (0 for missing keys and other types). O(keys).
pub(crate) fn read_work(keyspace: &impl Lookup, keys: &[Bytes], now: u64) -> usize {
    keys.iter()
        .filter_map(|key| set_at(keyspace, key, now).ok().flatten())
        .fold(0usize, |work, set| work.saturating_add(set.len()))
}

/// Members in every set (a missing key is an empty set), visiting the
/// smallest and looking each member up in the others; stops after `limit`
/// members when it is not 0. Byte order.
fn intersection<'a>(sets: &[Option<&'a SetMembers>], limit: usize) -> Vec<&'a Bytes> {
    let Some(mut sets) = sets.iter().copied().collect::<Option<Vec<&SetMembers>>>() else {
        return Vec::new();
    };
    sets.sort_by_key(|set| set.len());
    let Some((smallest, others)) = sets.split_first() else {
        return Vec::new();
    };
    let found = smallest
        .iter()
        .filter(|member| others.iter().all(|set| set.contains(member)));
    if limit == 0 {
        found.collect()
    } else {
        found.take(limit).collect()
    }
}

/// The members `operation` combines `sets` into, in byte order, each once.
fn combination<'a>(operation: SetOperation, sets: &[Option<&'a SetMembers>]) -> Vec<&'a Bytes> {
    match operation {
        SetOperation::Inter => intersection(sets, 0),
        SetOperation::Union => {
            let mut union: BTreeSet<&Bytes> = BTreeSet::new();
            for set in sets.iter().flatten() {
                union.extend(set.iter());
            }
            union.into_iter().collect()
        }
        SetOperation::Diff => match sets.split_first() {
            Some((Some(first), others)) => first
                .iter()
                .filter(|member| !others.iter().flatten().any(|set| set.contains(member)))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// `SINTER`, `SUNION`, `SDIFF`: a RESP3 set in byte order.
pub(crate) fn combine_read(
    keyspace: &impl Lookup,
    operation: SetOperation,
    keys: &[Bytes],
    now: u64,
) -> Reply {
    match sets_at(keyspace, keys, now) {
        Ok(sets) => Reply::Set(
            combination(operation, &sets)
                .into_iter()
                .map(bulk)
                .collect(),
        ),
        Err(error) => error,
    }
}

/// `SINTERSTORE`, `SUNIONSTORE`, `SDIFFSTORE`: the result replaces the
/// destination (its expiry goes; an empty result deletes it), encoded as
/// Redis would encode a set built from these members. Refused past
/// [`SET_STORE_WORK_MAX`] members visited, and with `-OOM` when the result
/// does not fit under the replicated limit (checked before it is stored).
pub(crate) fn combine_store(
    keyspace: &mut Keyspace,
    operation: SetOperation,
    keys: &[Bytes],
    destination: &Bytes,
    now: u64,
) -> Reply {
    let sets = match sets_at(keyspace, keys, now) {
        Ok(sets) => sets,
        Err(error) => return error,
    };
    let work = sets
        .iter()
        .flatten()
        .fold(0usize, |work, set| work.saturating_add(set.len()));
    if work > SET_STORE_WORK_MAX {
        return Reply::error(format!(
            "ERR {} would visit {work} members, more than {SET_STORE_WORK_MAX}: a store runs on every replica; combine fewer or smaller sets",
            operation.name(true).to_ascii_uppercase()
        ));
    }
    let mut result = SetMembers::default();
    for member in combination(operation, &sets) {
        result.insert(member.clone());
    }
    keyspace.remove_if_expired(destination, now);
    if result.is_empty() {
        keyspace.remove(destination);
        return Reply::Integer(0);
    }
    let current = keyspace.live(destination, now).map_or(0, |entry| {
        entry_bytes(destination.len(), entry.value().bytes())
    });
    let growth = entry_bytes(destination.len(), result.bytes()).saturating_sub(current);
    if !memory::fits(keyspace, growth) {
        return Reply::error(memory::OOM);
    }
    let len = result.len();
    keyspace.insert(destination, Value::Set(Arc::new(result)), None);
    Reply::Integer(len as i64)
}

/// `SINTERCARD`: the intersection's size, counting at most `limit` (0: no
/// limit).
pub(crate) fn sintercard(keyspace: &impl Lookup, keys: &[Bytes], limit: u64, now: u64) -> Reply {
    match sets_at(keyspace, keys, now) {
        Ok(sets) => {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            Reply::Integer(intersection(&sets, limit).len() as i64)
        }
        Err(error) => error,
    }
}

/// `SSCAN`, with `HSCAN`'s cursors and guarantees (see `hashes::hscan`).
pub(crate) fn sscan(
    keyspace: &impl Lookup,
    key: &[u8],
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    now: u64,
) -> Reply {
    let set = match set_at(keyspace, key, now) {
        Ok(Some(set)) => set,
        Ok(None) => return super::hashes::scan_reply(0, Vec::new()),
        Err(error) => return error,
    };
    scan_page(
        |start| set.iter_from(start).map(|member| (member, ())),
        cursor,
        pattern,
        count,
        |member, (), found| found.push(bulk(member)),
    )
}

/// Members a single-key set read visits, for the transaction budget and
/// the off-loop decision: the whole set (plus `draws` for SRANDMEMBER).
pub(crate) fn set_read_work(keyspace: &impl Lookup, key: &[u8], draws: u64, now: u64) -> usize {
    match set_at(keyspace, key, now) {
        Ok(Some(set)) => set
            .len()
            .saturating_add(usize::try_from(draws).unwrap_or(usize::MAX)),
        _ => 0,
    }
}
