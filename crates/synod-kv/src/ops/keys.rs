//! Commands on keys regardless of type: deletion, expiry, iteration.

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::{now_signed, time_to_live};
use crate::command::{ExpireCondition, ExpireForm, TimeUnit};
use crate::glob::glob_match;
use crate::keyspace::{Keyspace, Lookup};
use crate::parse::invalid_expire_time;

/// Most keys one `SCAN` call examines, whatever `COUNT` says (it is a hint).
pub(crate) const SCAN_COUNT_MAX: u64 = 100_000;

pub(crate) fn del(keyspace: &mut Keyspace, keys: &[Bytes], now: u64) -> Reply {
    let mut deleted = 0;
    for key in keys {
        keyspace.remove_if_expired(key, now);
        if keyspace.remove(key).is_some() {
            deleted += 1;
        }
    }
    Reply::Integer(deleted)
}

pub(crate) fn exists(keyspace: &Keyspace, keys: &[Bytes], now: u64) -> Reply {
    let count = keys
        .iter()
        .filter(|key| keyspace.live(key, now).is_some())
        .count();
    Reply::Integer(count as i64)
}

pub(crate) fn expire(
    keyspace: &mut Keyspace,
    key: &Bytes,
    form: ExpireForm,
    when_ms: i64,
    condition: ExpireCondition,
    ctx: &ApplyContext,
) -> Reply {
    let now = ctx.time_ms;
    let when = if form.is_relative() {
        match when_ms.checked_add(now_signed(ctx)) {
            Some(when) => when,
            None => return invalid_expire_time(form.name()),
        }
    } else {
        when_ms
    };
    keyspace.remove_if_expired(key, now);
    let Some(entry) = keyspace.live(key, now) else {
        return Reply::Integer(0);
    };
    // Compare as i128 so a negative `when` and a u64 expiry order correctly.
    let current = entry.expire_at_ms().map(i128::from);
    let when_wide = i128::from(when);
    let refused = (condition.if_no_expiry && current.is_some())
        || (condition.if_has_expiry && current.is_none())
        // GT: no expiry counts as infinite, so nothing is greater.
        || (condition.if_greater && current.is_none_or(|current| when_wide <= current))
        // LT: no expiry counts as infinite, so anything is less.
        || (condition.if_less && current.is_some_and(|current| when_wide >= current));
    if refused {
        return Reply::Integer(0);
    }
    match u64::try_from(when) {
        Ok(at) if at > now => keyspace.set_expiry(key, Some(at)),
        _ => {
            keyspace.remove(key);
        }
    }
    Reply::Integer(1)
}

pub(crate) fn ttl(keyspace: &Keyspace, key: &[u8], unit: TimeUnit, now: u64) -> Reply {
    match keyspace.live(key, now) {
        None => Reply::Integer(-2),
        Some(entry) => Reply::Integer(time_to_live(entry, unit, now)),
    }
}

pub(crate) fn persist(keyspace: &mut Keyspace, key: &[u8], now: u64) -> Reply {
    match keyspace.live(key, now) {
        Some(entry) if entry.expire_at_ms().is_some() => {
            keyspace.set_expiry(key, None);
            Reply::Integer(1)
        }
        _ => Reply::Integer(0),
    }
}

pub(crate) fn type_of(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    let name = keyspace
        .live(key, now)
        .map_or("none", |entry| entry.value().type_name());
    Reply::simple(name.to_string())
}

fn matches(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || glob_match(pattern, key)
}

pub(crate) fn keys(keyspace: &impl Lookup, pattern: &[u8], now: u64) -> Reply {
    Reply::Array(
        keyspace
            .iter_from(0)
            .filter(|(_, key, entry)| entry.is_live(now) && matches(pattern, key))
            .map(|(_, key, _)| Reply::Bulk(Bytes::copy_from_slice(key)))
            .collect(),
    )
}

/// How many stored entries one `SCAN` call may visit per unit of its
/// budget. Expired keys not yet purged are skipped without using budget
/// (so `query` and `apply` return the same page), but they still cost
/// work, so they are capped.
const SCAN_VISITS_PER_COUNT: u64 = 16;

/// `SCAN`: the cursor is the order hash to resume from (inclusive); 0 starts
/// and ends a scan.
///
/// Guarantee (Redis'): a key present for the whole scan is returned at least
/// once. Keys are visited in (hash, key) order, and a call never stops
/// inside a run of keys sharing one hash, so every key whose hash is below
/// the returned cursor has been examined; a key present throughout keeps its
/// hash, so it is examined by the call whose range covers that hash.
pub(crate) fn scan(
    keyspace: &impl Lookup,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    type_name: Option<&[u8]>,
    now: u64,
) -> Reply {
    let budget = count.clamp(1, SCAN_COUNT_MAX);
    let visits_max = budget * SCAN_VISITS_PER_COUNT;
    let mut examined = 0u64;
    let mut last_hash = None;
    let mut next_cursor = 0u64;
    let mut found = Vec::new();
    for (visited, (hash, key, entry)) in (0u64..).zip(keyspace.iter_from(cursor)) {
        let live = entry.is_live(now);
        // Stop only at a live key (or at the visit cap), so the cursor does
        // not depend on whether expired keys were purged yet.
        if last_hash != Some(hash) && (visited >= visits_max || (examined >= budget && live)) {
            // Every key so far had a smaller hash, and the first key has a
            // hash >= 0 that was visited, so a resume point is never 0.
            debug_assert!(hash > 0);
            next_cursor = hash;
            break;
        }
        last_hash = Some(hash);
        if !live {
            continue;
        }
        examined += 1;
        let type_ok = type_name
            .is_none_or(|name| name.eq_ignore_ascii_case(entry.value().type_name().as_bytes()));
        if type_ok && pattern.is_none_or(|pattern| matches(pattern, key)) {
            found.push(Reply::Bulk(Bytes::copy_from_slice(key)));
        }
    }
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next_cursor.to_string())),
        Reply::Array(found),
    ])
}

pub(crate) fn dbsize(keyspace: &Keyspace, now: u64) -> Reply {
    Reply::Integer(keyspace.live_len(now) as i64)
}
