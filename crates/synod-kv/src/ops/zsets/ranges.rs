//! The range commands: `ZRANGE` (and its older forms), `ZRANGESTORE` and
//! `ZREMRANGEBY{RANK,SCORE,LEX}`.
//!
//! A rank range costs O(distance from the nearer end + selected); a score
//! range O(log n + selected + LIMIT's offset); a lex range walks the set
//! from one end (lex order is only meaningful when all scores are equal,
//! which Redis assumes too).

use bytes::Bytes;
use synod_resp::Reply;

use super::basic::{in_lex_range, in_score_range};
use super::{change_zset, rank_range, scored, store, zset_at};
use crate::command_zset::ZRangeSpec;
use crate::keyspace::{Keyspace, Lookup};
use crate::zset::ZSetMembers;

/// `count` members from position `first` in order (`reverse`: counting and
/// listing from the highest), walking from whichever end is nearer.
fn by_position(set: &ZSetMembers, first: usize, count: usize, reverse: bool) -> Vec<(Bytes, f64)> {
    let len = set.len();
    debug_assert!(first + count <= len);
    let clone = |(member, score): (&Bytes, f64)| (member.clone(), score);
    // Position `first` from the chosen end is `len - first - count` from
    // the other: walk from the nearer one.
    let from_other_end = len - first - count;
    if first <= from_other_end {
        if reverse {
            set.iter()
                .rev()
                .skip(first)
                .take(count)
                .map(clone)
                .collect()
        } else {
            set.iter().skip(first).take(count).map(clone).collect()
        }
    } else {
        let mut picked: Vec<(Bytes, f64)> = if reverse {
            set.iter()
                .skip(from_other_end)
                .take(count)
                .map(clone)
                .collect()
        } else {
            set.iter()
                .rev()
                .skip(from_other_end)
                .take(count)
                .map(clone)
                .collect()
        };
        picked.reverse();
        picked
    }
}

/// Redis' `LIMIT offset count` over an ordered selection: a negative offset
/// selects nothing, a negative count everything after the offset.
fn limited<'a>(
    members: impl Iterator<Item = (&'a Bytes, f64)>,
    limit: Option<(i64, i64)>,
) -> Vec<(Bytes, f64)> {
    let (offset, count) = limit.unwrap_or((0, -1));
    if offset < 0 {
        return Vec::new();
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    members
        .skip(offset)
        .take(count)
        .map(|(member, score)| (member.clone(), score))
        .collect()
}

/// What `range` selects from `set`, in reply order.
pub(super) fn select(
    set: &ZSetMembers,
    range: &ZRangeSpec,
    reverse: bool,
    limit: Option<(i64, i64)>,
) -> Vec<(Bytes, f64)> {
    match range {
        ZRangeSpec::Rank { start, stop } => match rank_range(set.len(), *start, *stop) {
            Some((first, last)) => by_position(set, first, last - first + 1, reverse),
            None => Vec::new(),
        },
        ZRangeSpec::Score(range) if range.is_empty() => Vec::new(),
        ZRangeSpec::Score(range) if reverse => limited(
            set.iter_back_from_score(range.max, range.max_exclusive)
                .take_while(|(_, score)| range.above_min(*score)),
            limit,
        ),
        ZRangeSpec::Score(range) => limited(in_score_range(set, range), limit),
        ZRangeSpec::Lex(range) if range.is_empty() => Vec::new(),
        ZRangeSpec::Lex(range) if reverse => limited(
            set.iter()
                .rev()
                .skip_while(|(member, _)| !range.below_max(member))
                .take_while(|(member, _)| range.above_min(member)),
            limit,
        ),
        ZRangeSpec::Lex(range) => limited(in_lex_range(set, range), limit),
    }
}

pub(super) fn zrange(
    keyspace: &impl Lookup,
    key: &[u8],
    range: &ZRangeSpec,
    reverse: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
    now: u64,
) -> Reply {
    let set = match zset_at(keyspace, key, now) {
        Ok(Some(set)) => set,
        Ok(None) => return Reply::Array(Vec::new()),
        Err(error) => return error,
    };
    let picked = select(set, range, reverse, limit);
    if with_scores {
        Reply::Pairs(
            picked
                .iter()
                .map(|(member, score)| scored(member, *score))
                .collect(),
        )
    } else {
        Reply::Array(
            picked
                .into_iter()
                .map(|(member, _)| Reply::Bulk(member))
                .collect(),
        )
    }
}

pub(super) fn zrangestore(
    keyspace: &mut Keyspace,
    destination: &Bytes,
    key: &[u8],
    range: &ZRangeSpec,
    reverse: bool,
    limit: Option<(i64, i64)>,
    now: u64,
) -> Reply {
    let picked = match zset_at(keyspace, key, now) {
        Ok(Some(set)) => select(set, range, reverse, limit),
        Ok(None) => Vec::new(),
        Err(error) => return error,
    };
    let mut members = ZSetMembers::default();
    for (member, score) in picked {
        members.insert(member, score);
    }
    store(keyspace, destination, members, now)
}

pub(super) fn zremrange(
    keyspace: &mut Keyspace,
    key: &Bytes,
    range: &ZRangeSpec,
    now: u64,
) -> Reply {
    let doomed = match zset_at(keyspace, key, now) {
        Ok(Some(set)) => select(set, range, false, None),
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    };
    if doomed.is_empty() {
        return Reply::Integer(0);
    }
    match change_zset(keyspace, key, now, |set| {
        for (member, _) in &doomed {
            set.remove(member);
        }
    }) {
        Ok(()) => Reply::Integer(doomed.len() as i64),
        Err(error) => error,
    }
}
