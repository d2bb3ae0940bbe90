//! The sorted-set commands (issue 16).
//!
//! Members live in a [`ZSetMembers`]: (score, member) order for ranges,
//! ranks and pops, member order for `ZSCAN`. Every reply that lists members
//! lists them in one of those orders, identical on every replica; scores
//! are replied as doubles (`Reply::Double`: Redis 7.0's `%.17g` text in
//! RESP2, a RESP3 double otherwise). A write that fails leaves the keyspace
//! as it was, except `ZADD` of several pairs where a later pair's NaN
//! result keeps the earlier pairs (as Redis does); a set a command empties
//! is deleted.
//!
//! Work is bounded by what is stored (a read visits at most the set, or
//! the inputs of `ZUNION`/`ZINTER`/`ZDIFF`) except where a command could
//! repeat work: the set operations bound the elements they visit over all
//! inputs ([`COMBINE_WORK_MAX`]), `ZRANDMEMBER` with a negative count the
//! bytes it replies (as `HRANDFIELD`).

mod basic;
mod combine;
mod random;
mod ranges;

use std::sync::Arc;

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::wrong_type;
use crate::command_zset::{LexBound, ZRangeSpec, ZSetCommand};
use crate::keyspace::{Keyspace, Lookup, Value, ValueRef};
use crate::value::entry_bytes;
use crate::zset::{member_bytes, ZSetMembers};

/// The live sorted set at `key`: `None` when absent, WRONGTYPE when the key
/// holds something else.
fn zset_at<'a>(
    keyspace: &'a impl Lookup,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a ZSetMembers>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::ZSet(members)) => Ok(Some(members)),
        Some(_) => Err(wrong_type()),
    }
}

/// Changes the live sorted set at `key`, created empty when absent (and
/// removed again if `change` leaves it empty). A set shared with a
/// keyspace view is copied first.
fn change_zset<R>(
    keyspace: &mut Keyspace,
    key: &[u8],
    now: u64,
    change: impl FnOnce(&mut ZSetMembers) -> R,
) -> Result<R, Reply> {
    keyspace.modify_or_insert(key, now, Value::empty_zset, |value| match value {
        Value::ZSet(members) => Ok(change(Arc::make_mut(members))),
        _ => Err(wrong_type()),
    })
}

/// Replaces whatever `destination` holds with `members` (deleting it when
/// empty); the reply of the `STORE` commands is the count. Refused with
/// `-OOM` when the new set would take the dataset past the replicated
/// limit (known only once computed).
fn store(keyspace: &mut Keyspace, destination: &[u8], members: ZSetMembers, now: u64) -> Reply {
    keyspace.remove_if_expired(destination, now);
    if members.is_empty() {
        keyspace.remove(destination);
        return Reply::Integer(0);
    }
    let current = keyspace.live(destination, now).map_or(0, |entry| {
        entry_bytes(destination.len(), entry.value().bytes())
    });
    let growth = entry_bytes(destination.len(), members.bytes()).saturating_sub(current);
    if !super::memory::fits(keyspace, growth) {
        return Reply::error(super::memory::OOM);
    }
    let count = members.len();
    keyspace.insert(destination, Value::ZSet(Arc::new(members)), None);
    Reply::Integer(count as i64)
}

/// A member with its score, as the range replies carry it.
fn scored(member: &Bytes, score: f64) -> (Reply, Reply) {
    (Reply::Bulk(member.clone()), Reply::Double(score))
}

/// Answers a sorted-set read (from the keyspace or a view); `position` is
/// the command's place in its batch, which seeds `ZRANDMEMBER`.
pub(crate) fn read(
    keyspace: &impl Lookup,
    command: &ZSetCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let now = ctx.time_ms;
    match command {
        ZSetCommand::Score { key, member } => basic::zscore(keyspace, key, member, now),
        ZSetCommand::MScore { key, members } => basic::zmscore(keyspace, key, members, now),
        ZSetCommand::Card { key } => basic::zcard(keyspace, key, now),
        ZSetCommand::Count { key, range } => basic::zcount(keyspace, key, range, now),
        ZSetCommand::LexCount { key, range } => basic::zlexcount(keyspace, key, range, now),
        ZSetCommand::Rank {
            key,
            member,
            reverse,
        } => basic::zrank(keyspace, key, member, *reverse, now),
        ZSetCommand::Range {
            key,
            range,
            reverse,
            limit,
            with_scores,
        } => ranges::zrange(keyspace, key, range, *reverse, *limit, *with_scores, now),
        ZSetCommand::Combine {
            operation,
            destination: None,
            keys,
            weights,
            aggregate,
            with_scores,
        } => combine::combine_read(
            keyspace,
            *operation,
            keys,
            weights,
            *aggregate,
            *with_scores,
            now,
        ),
        ZSetCommand::InterCard { keys, limit } => combine::zintercard(keyspace, keys, *limit, now),
        ZSetCommand::RandMember {
            key,
            count,
            with_scores,
        } => random::zrandmember(keyspace, key, *count, *with_scores, ctx, position),
        ZSetCommand::Scan {
            key,
            cursor,
            pattern,
            count,
        } => random::zscan(keyspace, key, *cursor, pattern.as_deref(), *count, now),
        write => {
            debug_assert!(!write.is_read());
            Reply::error(format!(
                "ERR '{}' changes data and cannot be answered as a read",
                write.name()
            ))
        }
    }
}

/// Runs a sorted-set command against the keyspace (the apply path).
pub(crate) fn write(
    keyspace: &mut Keyspace,
    command: &ZSetCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let now = ctx.time_ms;
    match command {
        ZSetCommand::Add { key, flags, pairs } => basic::zadd(keyspace, key, *flags, pairs, now),
        ZSetCommand::IncrBy {
            key,
            increment,
            member,
        } => basic::zincrby(keyspace, key, *increment, member, now),
        ZSetCommand::Rem { key, members } => basic::zrem(keyspace, key, members, now),
        ZSetCommand::Pop { key, max, count } => basic::zpop(keyspace, key, *max, *count, now),
        ZSetCommand::MPop { keys, max, count } => basic::zmpop(keyspace, keys, *max, *count, now),
        ZSetCommand::RangeStore {
            destination,
            key,
            range,
            reverse,
            limit,
        } => ranges::zrangestore(keyspace, destination, key, range, *reverse, *limit, now),
        ZSetCommand::RemRange { key, range } => ranges::zremrange(keyspace, key, range, now),
        ZSetCommand::Combine {
            operation,
            destination: Some(destination),
            keys,
            weights,
            aggregate,
            ..
        } => combine::combine_store(
            keyspace,
            *operation,
            destination,
            keys,
            weights,
            *aggregate,
            now,
        ),
        read_only => {
            debug_assert!(read_only.is_read());
            read(keyspace, read_only, ctx, position)
        }
    }
}

/// Elements of sorted sets (and of plain sets, as set-operation inputs) a
/// command visits at most, for the transaction budget and the off-loop
/// decision: never less than the implementation walks (the budget exists
/// to bound that walk), from the command and the stored sets only (every
/// replica computes the same). A command whose cost its own size bounds (a
/// lookup or change of each member it names, O(log n) each) is charged 0,
/// as HSET or SADD are. O(keys).
pub(crate) fn read_work(keyspace: &impl Lookup, command: &ZSetCommand, now: u64) -> usize {
    let set = |key: &[u8]| zset_at(keyspace, key, now).ok().flatten();
    let len = |key: &[u8]| set(key).map_or(0, ZSetMembers::len);
    let count = |count: u64| usize::try_from(count).unwrap_or(usize::MAX);
    match command {
        ZSetCommand::Add { .. }
        | ZSetCommand::IncrBy { .. }
        | ZSetCommand::Rem { .. }
        | ZSetCommand::Score { .. }
        | ZSetCommand::MScore { .. }
        | ZSetCommand::Card { .. }
        | ZSetCommand::Pop { count: None, .. } => 0,
        // A pop takes its members from one end (`basic::pop_members`).
        ZSetCommand::Pop {
            key,
            count: Some(n),
            ..
        } => count(*n).min(len(key)),
        // From the first key holding a set (an error before it: nothing).
        ZSetCommand::MPop { keys, count: n, .. } => keys
            .iter()
            .find_map(|key| match zset_at(keyspace, key, now) {
                Ok(None) => None,
                Ok(Some(set)) => Some(set.len()),
                Err(_) => Some(0),
            })
            .map_or(0, |len| count(*n).min(len)),
        ZSetCommand::Range {
            key,
            range,
            reverse,
            limit,
            ..
        }
        | ZSetCommand::RangeStore {
            key,
            range,
            reverse,
            limit,
            ..
        } => range_work(len(key), range, *reverse, *limit),
        ZSetCommand::RemRange { key, range } => range_work(len(key), range, false, None),
        // Counting walks the whole range, whose size is known only by
        // walking it; a rank counts the members before it
        // (`ZSetMembers::rank` is O(rank)): up to the whole set.
        ZSetCommand::Count { key, .. }
        | ZSetCommand::LexCount { key, .. }
        | ZSetCommand::Rank { key, .. } => len(key),
        ZSetCommand::RandMember { key, count, .. } => len(key).saturating_add(
            usize::try_from(count.map_or(1, i64::unsigned_abs)).unwrap_or(usize::MAX),
        ),
        // Conservatively: a page may hold a long run of members sharing a
        // cursor (as HSCAN).
        ZSetCommand::Scan { key, .. } => len(key),
        // Plain sets are inputs too.
        ZSetCommand::Combine { keys, .. } | ZSetCommand::InterCard { keys, .. } => keys
            .iter()
            .map(|key| combine::input_len(keyspace, key, now))
            .fold(0usize, usize::saturating_add),
    }
}

/// Members `ranges::select` walks at most for `range` over a set of `len`,
/// known without walking it. A rank range walks from the nearer end to its
/// far edge (`ranges::by_position`). A score range found by a tree lookup
/// (forward, from an inclusive minimum) or a lex range that starts at an
/// end of the set (forward from `-`, reversed from `+`) walks LIMIT's
/// offset and count. Any other walks first past members it cannot bound
/// beforehand (those tied at an exclusive or a reversed score end, those
/// before a lex end): the whole set.
fn range_work(len: usize, range: &ZRangeSpec, reverse: bool, limit: Option<(i64, i64)>) -> usize {
    let limited = || match limit {
        Some((offset, _)) if offset < 0 => 0,
        Some((offset, count)) if count >= 0 => {
            usize::try_from(offset.saturating_add(count)).map_or(len, |walk| walk.min(len))
        }
        _ => len,
    };
    match range {
        ZRangeSpec::Rank { start, stop } => match rank_range(len, *start, *stop) {
            Some((first, last)) => (last + 1).min(len - first),
            None => 0,
        },
        ZRangeSpec::Score(range) if range.is_empty() => 0,
        ZRangeSpec::Score(range) if !reverse && !range.min_exclusive => limited(),
        ZRangeSpec::Lex(range) if range.is_empty() => 0,
        ZRangeSpec::Lex(range) if !reverse && range.min == LexBound::Lowest => limited(),
        ZRangeSpec::Lex(range) if reverse && range.max == LexBound::Highest => limited(),
        ZRangeSpec::Score(_) | ZRangeSpec::Lex(_) => len,
    }
}

/// Whether [`read_work`] may charge `command` anything, whatever the
/// state (see `ops::charged_in_transaction`).
pub(crate) fn charged(command: &ZSetCommand) -> bool {
    !matches!(
        command,
        ZSetCommand::Add { .. }
            | ZSetCommand::IncrBy { .. }
            | ZSetCommand::Rem { .. }
            | ZSetCommand::Score { .. }
            | ZSetCommand::MScore { .. }
            | ZSetCommand::Card { .. }
            | ZSetCommand::Pop { count: None, .. }
    )
}

/// An upper bound of the accounted bytes `command` adds (see
/// `ops::memory`): every member counted as new. The `STORE` commands check
/// their result once computed instead (`memory::fits`).
pub(crate) fn growth_bound(keyspace: &Keyspace, command: &ZSetCommand, now: u64) -> u64 {
    let creation = |key: &[u8]| {
        if keyspace.live(key, now).is_some() {
            0
        } else {
            entry_bytes(key.len(), 0)
        }
    };
    match command {
        ZSetCommand::Add { key, pairs, .. } => pairs
            .iter()
            .map(|(_, member)| member_bytes(member))
            .fold(creation(key), u64::saturating_add),
        ZSetCommand::IncrBy { key, member, .. } => {
            creation(key).saturating_add(member_bytes(member))
        }
        _ => 0,
    }
}

/// The positions `start..=stop` (negative: from the end) select in a set of
/// `len`, as Redis resolves them; `None` when empty.
fn rank_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    }
    .max(0);
    let stop = if stop < 0 {
        len.saturating_add(stop)
    } else {
        stop
    };
    if start > stop || start >= len {
        return None;
    }
    let stop = stop.min(len - 1);
    Some((start as usize, stop as usize))
}

#[cfg(test)]
mod tests;
