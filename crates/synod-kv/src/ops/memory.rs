//! The `maxmemory` decision: which writes are refused with `-OOM`.
//!
//! Made at apply time, from the replicated state only (the accounted size
//! of [`crate::value`] and the limit the log set), so every replica refuses
//! exactly the same commands and the states never diverge, whatever each
//! node's allocator or flags say.
//!
//! A command is refused when the limit is set (non-zero) and the dataset
//! plus the command's *growth bound* would exceed it. The bound is computed
//! before anything is allocated, in O(arguments) with O(1) lookups: exact for
//! string writes (`SET`, `APPEND`, `SETRANGE`, ...: the new size minus what
//! the key holds now), and an upper bound for collections (every field and
//! item counted as new). A command that cannot grow the dataset (`DEL`,
//! `EXPIRE`, pops, `FLUSHALL`, reads, a `SET` that shrinks a value) is
//! never refused, so a full dataset can always be emptied. A transaction is
//! refused as a whole when the sum of its bounds does not fit.
//!
//! This is stricter than Redis, which refuses only once used memory is
//! already above the limit: here the write that would cross it is refused,
//! which is what keeps `SETRANGE k 536870911 x` from allocating 512 MB on
//! every replica under a 100 MB limit.

use bytes::Bytes;
use synod_resp::Reply;

use super::strings::STRING_LEN_MAX;
use crate::command::KvCommand;
use crate::keyspace::{Keyspace, ValueRef};
use crate::value::{entry_bytes, field_bytes, item_bytes};
use crate::value_set::member_bytes;

/// Redis's error text for a refused write.
pub(crate) const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Longest text `INCRBY` can store (`-9223372036854775808`).
const INTEGER_TEXT_MAX: u64 = 20;
/// Longest text `INCRBYFLOAT` can store (a finite f64 written out in full
/// has at most 309 integer digits, a sign, a point and 17 decimals).
const FLOAT_TEXT_MAX: u64 = 330;

/// The `-OOM` reply when `command` would take the dataset past the
/// replicated limit; `None` when it may run.
pub(crate) fn refusal(keyspace: &Keyspace, command: &KvCommand, now: u64) -> Option<Reply> {
    let limit = keyspace.maxmemory_bytes();
    if limit == 0 {
        return None;
    }
    let growth = growth_bound(keyspace, command, now);
    if growth > 0 && keyspace.used_bytes().saturating_add(growth) > limit {
        Some(Reply::error(OOM))
    } else {
        None
    }
}

/// Whether `growth` more accounted bytes fit under the replicated limit:
/// for a write whose growth is known only once it has run its reads (SORT
/// with STORE), checked before it allocates its result.
pub(crate) fn fits(keyspace: &Keyspace, growth: u64) -> bool {
    let limit = keyspace.maxmemory_bytes();
    limit == 0 || growth == 0 || keyspace.used_bytes().saturating_add(growth) <= limit
}

/// What the key's live value accounts for now (0 when absent or expired:
/// the write removes an expired key first).
fn current_entry(keyspace: &Keyspace, key: &[u8], now: u64) -> u64 {
    keyspace
        .live(key, now)
        .map_or(0, |entry| entry_bytes(key.len(), entry.value().bytes()))
}

/// Growth of replacing the key's value with a string of `len` bytes.
fn string_growth(keyspace: &Keyspace, key: &Bytes, len: u64, now: u64) -> u64 {
    entry_bytes(key.len(), len).saturating_sub(current_entry(keyspace, key, now))
}

/// Length of the live string at `key` (0 when absent, or not a string: the
/// command then fails with WRONGTYPE and grows nothing, but counting it as
/// absent only overestimates).
fn string_len(keyspace: &Keyspace, key: &[u8], now: u64) -> u64 {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        Some(ValueRef::Str(value)) => value.len() as u64,
        _ => 0,
    }
}

/// Key overhead if the key must be created.
fn creation(keyspace: &Keyspace, key: &[u8], now: u64) -> u64 {
    if keyspace.live(key, now).is_some() {
        0
    } else {
        entry_bytes(key.len(), 0)
    }
}

/// An upper bound of how many accounted bytes `command` adds (see the
/// module docs); 0 for a command that cannot grow the dataset.
pub(crate) fn growth_bound(keyspace: &Keyspace, command: &KvCommand, now: u64) -> u64 {
    match command {
        KvCommand::Blocking { pop, .. } => growth_bound(keyspace, pop, now),
        KvCommand::AsUser(run) => growth_bound(keyspace, &run.command, now),
        KvCommand::Set { key, value, .. }
        | KvCommand::SetNx { key, value }
        | KvCommand::SetEx { key, value, .. }
        | KvCommand::GetSet { key, value } => string_growth(keyspace, key, value.len() as u64, now),
        KvCommand::MSet { pairs } | KvCommand::MSetNx { pairs } => pairs
            .iter()
            .map(|(key, value)| string_growth(keyspace, key, value.len() as u64, now))
            .fold(0u64, u64::saturating_add),
        KvCommand::IncrBy { key, .. } => string_growth(keyspace, key, INTEGER_TEXT_MAX, now),
        KvCommand::IncrByFloat { key, .. } => string_growth(keyspace, key, FLOAT_TEXT_MAX, now),
        KvCommand::Append { key, value } => {
            let current = string_len(keyspace, key, now);
            let next = current.saturating_add(value.len() as u64);
            if next > STRING_LEN_MAX {
                // Refused by the string limit, allocating nothing.
                return 0;
            }
            string_growth(keyspace, key, next, now)
        }
        KvCommand::SetRange { key, offset, value } => {
            if value.is_empty() {
                return 0;
            }
            let Some(end) = offset.checked_add(value.len() as u64) else {
                return 0;
            };
            if end > STRING_LEN_MAX {
                // Refused by the string limit, allocating nothing.
                return 0;
            }
            let next = string_len(keyspace, key, now).max(end);
            string_growth(keyspace, key, next, now)
        }
        KvCommand::HSet { key, pairs } => pairs
            .iter()
            .map(|(field, value)| field_bytes(field, value))
            .fold(creation(keyspace, key, now), u64::saturating_add),
        KvCommand::HIncrBy { key, field, .. } => creation(keyspace, key, now)
            .saturating_add(field_bytes(field, &[]))
            .saturating_add(INTEGER_TEXT_MAX),
        KvCommand::Push { key, values, .. } => values
            .iter()
            .map(|value| item_bytes(value))
            .fold(creation(keyspace, key, now), u64::saturating_add),
        KvCommand::Exec(commands) => commands
            .iter()
            .map(|command| growth_bound(keyspace, command, now))
            .fold(0u64, u64::saturating_add),
        // Keys and strings of issue 16.
        KvCommand::Rename { key, new_key, .. } => {
            // The value moves; only a longer name grows the dataset.
            (new_key.len() as u64).saturating_sub(key.len() as u64)
        }
        KvCommand::Copy {
            source,
            destination,
            ..
        } => keyspace.live(source, now).map_or(0, |entry| {
            entry_bytes(destination.len(), entry.value().bytes())
        }),
        KvCommand::SetBit { key, offset, .. } => {
            if *offset >= super::bits::BIT_OFFSET_END {
                // Refused by the offset limit, allocating nothing.
                return 0;
            }
            let next = string_len(keyspace, key, now).max(offset / 8 + 1);
            string_growth(keyspace, key, next, now)
        }
        KvCommand::BitOp {
            destination, keys, ..
        } => {
            let longest = keys
                .iter()
                .map(|key| string_len(keyspace, key, now))
                .max()
                .unwrap_or(0);
            string_growth(keyspace, destination, longest, now)
        }
        // Checked by the command itself once sorted (`memory::fits`).
        KvCommand::Sort(_) => 0,
        // Checked by the command itself once the payload is decoded (its
        // exact size is known then, not before).
        KvCommand::Restore(_) => 0,
        KvCommand::Dump { .. } | KvCommand::MemoryUsage { .. } => 0,
        // Sets (issue 16): every member counted as new.
        KvCommand::SAdd { key, members } => members
            .iter()
            .map(|member| member_bytes(member))
            .fold(creation(keyspace, key, now), u64::saturating_add),
        // The member moves; only the destination's key may be new.
        KvCommand::SMove { destination, .. } => creation(keyspace, destination, now),
        // Checked by the command itself once combined (`memory::fits`).
        KvCommand::SetCombine { .. } => 0,
        KvCommand::SRem { .. }
        | KvCommand::SPop { .. }
        | KvCommand::SMembers { .. }
        | KvCommand::SIsMember { .. }
        | KvCommand::SMIsMember { .. }
        | KvCommand::SCard { .. }
        | KvCommand::SRandMember { .. }
        | KvCommand::SInterCard { .. }
        | KvCommand::SScan { .. } => 0,
        KvCommand::RandomKey { .. }
        | KvCommand::Touch { .. }
        | KvCommand::ExpireTime { .. }
        | KvCommand::Object { .. }
        | KvCommand::GetBit { .. }
        | KvCommand::BitCount { .. }
        | KvCommand::BitPos { .. }
        | KvCommand::Lcs { .. } => 0,
        list_or_hash @ (KvCommand::LIndex { .. }
        | KvCommand::LSet { .. }
        | KvCommand::LInsert { .. }
        | KvCommand::LRem { .. }
        | KvCommand::LTrim { .. }
        | KvCommand::LPos { .. }
        | KvCommand::PushX { .. }
        | KvCommand::LMove { .. }
        | KvCommand::LMPop { .. }
        | KvCommand::HMSet { .. }
        | KvCommand::HMGet { .. }
        | KvCommand::HSetNx { .. }
        | KvCommand::HIncrByFloat { .. }
        | KvCommand::HStrLen { .. }
        | KvCommand::HKeys { .. }
        | KvCommand::HVals { .. }
        | KvCommand::HRandField { .. }
        | KvCommand::HScan { .. }) => list_or_hash_growth_bound(keyspace, list_or_hash, now),
        KvCommand::GetDel { .. }
        | KvCommand::GetEx { .. }
        | KvCommand::Del { .. }
        | KvCommand::Expire { .. }
        | KvCommand::Persist { .. }
        | KvCommand::FlushAll
        | KvCommand::HDel { .. }
        | KvCommand::Pop { .. }
        | KvCommand::SetMaxMemory { .. }
        | KvCommand::Watch { .. }
        | KvCommand::WatchCheck { .. } => 0,
        // Users are not part of the accounted dataset (they are few and only
        // an @admin user can add them).
        KvCommand::Acl(_) => 0,
        KvCommand::ZSet(zset) => super::zsets::growth_bound(keyspace, zset, now),
        KvCommand::Get { .. }
        | KvCommand::MGet { .. }
        | KvCommand::Exists { .. }
        | KvCommand::StrLen { .. }
        | KvCommand::GetRange { .. }
        | KvCommand::Ttl { .. }
        | KvCommand::Type { .. }
        | KvCommand::Keys { .. }
        | KvCommand::Scan { .. }
        | KvCommand::DbSize
        | KvCommand::HGet { .. }
        | KvCommand::HGetAll { .. }
        | KvCommand::HLen { .. }
        | KvCommand::HExists { .. }
        | KvCommand::LRange { .. }
        | KvCommand::LLen { .. }
        | KvCommand::MemoryInfo
        | KvCommand::ExpireSweep
        | KvCommand::Publish { .. } => 0,
        // Each command the script runs is checked on its own (see
        // `crate::scripting`), as Redis checks them.
        KvCommand::Eval(_) => 0,
    }
}

/// [`growth_bound`] of the issue-16 list and hash commands: an item or
/// field counted in full whenever one may be added or replaced.
fn list_or_hash_growth_bound(keyspace: &Keyspace, command: &KvCommand, now: u64) -> u64 {
    match command {
        KvCommand::LSet { value, .. } | KvCommand::LInsert { value, .. } => item_bytes(value),
        KvCommand::PushX { values, .. } => values
            .iter()
            .map(|value| item_bytes(value))
            .fold(0u64, u64::saturating_add),
        // The item moves; only the destination's key may be new.
        KvCommand::LMove { destination, .. } => creation(keyspace, destination, now),
        KvCommand::HMSet { key, pairs } => pairs
            .iter()
            .map(|(field, value)| field_bytes(field, value))
            .fold(creation(keyspace, key, now), u64::saturating_add),
        KvCommand::HSetNx { key, field, value } => {
            creation(keyspace, key, now).saturating_add(field_bytes(field, value))
        }
        KvCommand::HIncrByFloat { key, field, .. } => creation(keyspace, key, now)
            .saturating_add(field_bytes(field, &[]))
            .saturating_add(crate::decimal::DECIMAL_TEXT_MAX),
        // Removals and reads.
        _ => 0,
    }
}
