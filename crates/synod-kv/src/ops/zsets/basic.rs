//! Member-at-a-time sorted-set commands: `ZADD`, `ZINCRBY`, `ZREM`,
//! `ZSCORE`, `ZMSCORE`, `ZCARD`, `ZCOUNT`, `ZLEXCOUNT`, `ZRANK`, and the
//! pops (`ZPOPMIN`/`ZPOPMAX`, `ZMPOP`).

use bytes::Bytes;
use synod_resp::Reply;

use super::{change_zset, scored, zset_at};
use crate::command_zset::{LexRange, ScoreRange, ZAddFlags};
use crate::keyspace::{Keyspace, Lookup};
use crate::zset::ZSetMembers;

const NAN_RESULT: &str = "ERR resulting score is not a number (NaN)";

/// What one `ZADD` pair did.
enum Outcome {
    /// Skipped by NX/XX/GT/LT.
    Skipped,
    Added(f64),
    Updated(f64),
    /// Matched, score unchanged.
    Unchanged(f64),
}

/// Stores `-0` as `0`, as Redis' compact encoding of small sets does.
fn normalized(score: f64) -> f64 {
    score + 0.0
}

/// One pair of `ZADD` (Redis' `zsetAdd`); `Err` for a NaN result, with
/// nothing changed.
fn add_one(
    members: &mut ZSetMembers,
    member: &Bytes,
    score: f64,
    flags: ZAddFlags,
) -> Result<Outcome, Reply> {
    match members.score(member) {
        Some(current) => {
            if flags.only_new {
                return Ok(Outcome::Skipped);
            }
            let mut score = score;
            if flags.increment {
                score += current;
                if score.is_nan() {
                    return Err(Reply::error(NAN_RESULT));
                }
            }
            if (flags.only_less && score >= current) || (flags.only_greater && score <= current) {
                return Ok(Outcome::Skipped);
            }
            if score != current {
                let score = normalized(score);
                members.insert(member.clone(), score);
                Ok(Outcome::Updated(score))
            } else {
                Ok(Outcome::Unchanged(current))
            }
        }
        None if flags.only_existing => Ok(Outcome::Skipped),
        None => {
            let score = normalized(score);
            members.insert(member.clone(), score);
            Ok(Outcome::Added(score))
        }
    }
}

pub(super) fn zadd(
    keyspace: &mut Keyspace,
    key: &Bytes,
    flags: ZAddFlags,
    pairs: &[(f64, Bytes)],
    now: u64,
) -> Reply {
    let absent_reply = || {
        if flags.increment {
            Reply::Null
        } else {
            Reply::Integer(0)
        }
    };
    match zset_at(keyspace, key, now) {
        Err(error) => return error,
        Ok(None) if flags.only_existing => return absent_reply(),
        Ok(_) => {}
    }
    if pairs.is_empty() {
        // Only a hand-built command gets here; the parser demands a pair.
        return crate::parse::wrong_arity("zadd");
    }
    let result = change_zset(keyspace, key, now, |members| {
        let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
        let mut last = 0.0;
        for (score, member) in pairs {
            match add_one(members, member, *score, flags)? {
                Outcome::Skipped => continue,
                Outcome::Added(score) => {
                    added += 1;
                    last = score;
                }
                Outcome::Updated(score) => {
                    updated += 1;
                    last = score;
                }
                Outcome::Unchanged(score) => last = score,
            }
            processed += 1;
        }
        Ok((added, updated, processed, last))
    });
    match result {
        Ok(Ok((added, updated, processed, last))) => {
            if flags.increment {
                if processed > 0 {
                    Reply::Double(last)
                } else {
                    Reply::Null
                }
            } else if flags.changed {
                Reply::Integer(added + updated)
            } else {
                Reply::Integer(added)
            }
        }
        Ok(Err(error)) | Err(error) => error,
    }
}

pub(super) fn zincrby(
    keyspace: &mut Keyspace,
    key: &Bytes,
    increment: f64,
    member: &Bytes,
    now: u64,
) -> Reply {
    let flags = ZAddFlags {
        increment: true,
        ..ZAddFlags::default()
    };
    zadd(keyspace, key, flags, &[(increment, member.clone())], now)
}

pub(super) fn zrem(keyspace: &mut Keyspace, key: &Bytes, members: &[Bytes], now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Err(error) => return error,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(_)) => {}
    }
    match change_zset(keyspace, key, now, |stored| {
        members
            .iter()
            .filter(|member| stored.remove(member).is_some())
            .count()
    }) {
        Ok(removed) => Reply::Integer(removed as i64),
        Err(error) => error,
    }
}

pub(super) fn zscore(keyspace: &impl Lookup, key: &[u8], member: &[u8], now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => set
            .and_then(|set| set.score(member))
            .map_or(Reply::Null, Reply::Double),
        Err(error) => error,
    }
}

pub(super) fn zmscore(keyspace: &impl Lookup, key: &[u8], members: &[Bytes], now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => Reply::Array(
            members
                .iter()
                .map(|member| {
                    set.and_then(|set| set.score(member))
                        .map_or(Reply::Null, Reply::Double)
                })
                .collect(),
        ),
        Err(error) => error,
    }
}

pub(super) fn zcard(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => Reply::Integer(set.map_or(0, |set| set.len() as i64)),
        Err(error) => error,
    }
}

/// The members in a score range, in order; nothing when the range is empty.
pub(super) fn in_score_range<'a>(
    set: &'a ZSetMembers,
    range: &'a ScoreRange,
) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
    let empty = range.is_empty();
    set.iter_from_score(range.min, range.min_exclusive)
        .take_while(move |(_, score)| !empty && range.below_max(*score))
}

/// The members in a lex range, in (score, member) order (meaningful when
/// all scores are equal, as in Redis).
pub(super) fn in_lex_range<'a>(
    set: &'a ZSetMembers,
    range: &'a LexRange,
) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
    let empty = range.is_empty();
    set.iter()
        .skip_while(move |(member, _)| !empty && !range.above_min(member))
        .take_while(move |(member, _)| !empty && range.below_max(member))
}

pub(super) fn zcount(keyspace: &impl Lookup, key: &[u8], range: &ScoreRange, now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => Reply::Integer(set.map_or(0, |set| in_score_range(set, range).count() as i64)),
        Err(error) => error,
    }
}

pub(super) fn zlexcount(keyspace: &impl Lookup, key: &[u8], range: &LexRange, now: u64) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => Reply::Integer(set.map_or(0, |set| in_lex_range(set, range).count() as i64)),
        Err(error) => error,
    }
}

pub(super) fn zrank(
    keyspace: &impl Lookup,
    key: &[u8],
    member: &[u8],
    reverse: bool,
    now: u64,
) -> Reply {
    match zset_at(keyspace, key, now) {
        Ok(set) => set
            .and_then(|set| {
                let rank = set.rank(member)?;
                Some(if reverse { set.len() - 1 - rank } else { rank })
            })
            .map_or(Reply::Null, |rank| Reply::Integer(rank as i64)),
        Err(error) => error,
    }
}

/// Removes up to `count` members from the low (or high, when `max`) end.
fn pop_members(set: &mut ZSetMembers, max: bool, count: u64) -> Vec<(Bytes, f64)> {
    let take = usize::try_from(count).unwrap_or(usize::MAX).min(set.len());
    let picked: Vec<(Bytes, f64)> = if max {
        set.iter()
            .rev()
            .take(take)
            .map(|(member, score)| (member.clone(), score))
            .collect()
    } else {
        set.iter()
            .take(take)
            .map(|(member, score)| (member.clone(), score))
            .collect()
    };
    for (member, _) in &picked {
        set.remove(member);
    }
    picked
}

/// `ZPOPMIN`/`ZPOPMAX`: without a count one member, replied flat (member,
/// score); with one, pairs (nested in RESP3).
pub(super) fn zpop(
    keyspace: &mut Keyspace,
    key: &Bytes,
    max: bool,
    count: Option<u64>,
    now: u64,
) -> Reply {
    match zset_at(keyspace, key, now) {
        Err(error) => return error,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(_)) => {}
    }
    if count == Some(0) {
        return Reply::Array(Vec::new());
    }
    let popped = match change_zset(keyspace, key, now, |set| {
        pop_members(set, max, count.unwrap_or(1))
    }) {
        Ok(popped) => popped,
        Err(error) => return error,
    };
    match count {
        None => Reply::Array(
            popped
                .iter()
                .flat_map(|(member, score)| {
                    let (member, score) = scored(member, *score);
                    [member, score]
                })
                .collect(),
        ),
        Some(_) => Reply::Pairs(
            popped
                .iter()
                .map(|(member, score)| scored(member, *score))
                .collect(),
        ),
    }
}

/// `ZMPOP`: pops from the first key holding a sorted set; a key of another
/// type before it is an error (as Redis checks each key it reaches).
pub(super) fn zmpop(
    keyspace: &mut Keyspace,
    keys: &[Bytes],
    max: bool,
    count: u64,
    now: u64,
) -> Reply {
    for key in keys {
        match zset_at(keyspace, key, now) {
            Err(error) => return error,
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let popped = match change_zset(keyspace, key, now, |set| pop_members(set, max, count)) {
            Ok(popped) => popped,
            Err(error) => return error,
        };
        return Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(
                popped
                    .iter()
                    .map(|(member, score)| {
                        let (member, score) = scored(member, *score);
                        Reply::Array(vec![member, score])
                    })
                    .collect(),
            ),
        ]);
    }
    Reply::NullArray
}
