//! `DUMP` and `RESTORE` against the keyspace (the payload format is in
//! [`crate::dump`]).

use synod::ApplyContext;
use synod_resp::Reply;
use tracing::warn;

use super::memory;
use crate::command::{RestoreCommand, RestoreExpiry};
use crate::entry::{value_ref, Entry, ValueRef};
use crate::keyspace::{Keyspace, Lookup};
use crate::value::entry_bytes;

/// Redis' error for a `RESTORE` onto an existing key without `REPLACE`.
pub(crate) const BUSY_KEY: &str = "BUSYKEY Target key name already exists.";

/// `DUMP key`: the value's payload, or nil.
pub(crate) fn dump(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match keyspace.live(key, now) {
        Some(entry) => Reply::Bulk(crate::dump::encode(entry.value())),
        None => Reply::Null,
    }
}

/// `MEMORY USAGE key`: the key's accounted bytes (what `maxmemory` counts:
/// the key, its value and a fixed overhead per key and element), or nil.
/// Not Redis' allocator figure: Synod's replicated accounting, the same on
/// every replica.
pub(crate) fn memory_usage(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match keyspace.live(key, now) {
        Some(entry) => Reply::Integer(
            i64::try_from(entry_bytes(key.len(), entry.value().bytes())).unwrap_or(i64::MAX),
        ),
        None => Reply::Null,
    }
}

/// The elements `DUMP key` visits (1 for a string, 0 for no key), for the
/// read budgets of [`super::read_off_loop`] and transactions.
pub(crate) fn dump_work(keyspace: &impl Lookup, key: &[u8], now: u64) -> usize {
    match keyspace.live(key, now).map(Entry::value) {
        None => 0,
        Some(ValueRef::Str(_)) => 1,
        Some(ValueRef::Hash(fields)) => fields.len(),
        Some(ValueRef::List(items)) => items.len(),
        Some(ValueRef::Set(members)) => members.len(),
        Some(ValueRef::ZSet(members)) => members.len(),
    }
}

/// `RESTORE`, in Redis 7's order: `BUSYKEY` first, then the payload, then
/// the expiry (one already past creates nothing and, with `REPLACE`,
/// deletes the key, answering OK). The payload is decoded again here, on
/// every replica, as hostile input: the proposer checked it, but the log
/// is input too.
pub(crate) fn restore(
    keyspace: &mut Keyspace,
    restore: &RestoreCommand,
    ctx: &ApplyContext,
) -> Reply {
    let now = ctx.time_ms;
    let key = &restore.key;
    keyspace.remove_if_expired(key, now);
    let current_bytes = keyspace
        .live(key, now)
        .map(|entry| entry_bytes(key.len(), entry.value().bytes()));
    if current_bytes.is_some() && !restore.replace {
        return Reply::error(BUSY_KEY);
    }
    let value = match crate::dump::decode(&restore.payload) {
        Ok(value) => value,
        Err(err) => {
            // Empty: the proposer found it unreadable (expected). Anything
            // else passed the proposer's check: a different build's bug, or
            // a damaged log entry. Every replica answers the same either way.
            if !restore.payload.is_empty() {
                warn!(
                    ?err,
                    "RESTORE payload refused at apply although its proposer accepted it"
                );
            }
            return Reply::error(crate::dump::PAYLOAD_ERROR);
        }
    };
    let expire_at_ms = match restore.expiry {
        None => None,
        Some(RestoreExpiry::After { ttl_ms }) => match now.checked_add(ttl_ms) {
            Some(at) => Some(at),
            None => return crate::parse::invalid_expire_time("restore"),
        },
        Some(RestoreExpiry::At { unix_ms }) => Some(unix_ms),
    };
    if expire_at_ms.is_some_and(|at| at <= now) {
        if current_bytes.is_some() {
            keyspace.remove(key);
        }
        return Reply::ok();
    }
    let growth = entry_bytes(key.len(), value_ref(&value).bytes())
        .saturating_sub(current_bytes.unwrap_or(0));
    if !memory::fits(keyspace, growth) {
        return Reply::error(memory::OOM);
    }
    keyspace.insert(key, value, expire_at_ms);
    Reply::ok()
}
