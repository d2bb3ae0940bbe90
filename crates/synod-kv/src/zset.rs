//! A sorted set's members: member -> score, and the (score, member) order
//! every range, rank and pop reads.
//!
//! Scores are never NaN (the commands refuse a NaN result before storing
//! it), so [`Score`]'s order is total and matches Redis's skiplist: IEEE
//! `<` on the scores (`-inf` first, `+inf` last, `-0` equal to `0`), then
//! the members' bytes. Both indexes are ordered trees, so every reply that
//! lists members lists them identically on every replica.
//!
//! Accounted size (see [`crate::value`]): per member
//! [`ZSET_MEMBER_OVERHEAD_BYTES`] plus its bytes (the member's buffer is
//! shared by both indexes).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;

/// Accounted per sorted-set member, besides its bytes: two tree slots and
/// the score twice.
pub const ZSET_MEMBER_OVERHEAD_BYTES: u64 = 64;

/// Accounted bytes of one member.
pub(crate) fn member_bytes(member: &[u8]) -> u64 {
    ZSET_MEMBER_OVERHEAD_BYTES + member.len() as u64
}

/// A score in the set's order: never NaN, compared as IEEE numbers (so `-0`
/// and `0` are equal, as Redis compares them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Score(pub(crate) f64);

impl PartialEq for Score {
    fn eq(&self, other: &Score) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Score) -> Ordering {
        debug_assert!(!self.0.is_nan() && !other.0.is_nan(), "a NaN score");
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A sorted set's members with their accounted size kept up to date.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZSetMembers {
    scores: BTreeMap<Bytes, f64>,
    order: BTreeSet<(Score, Bytes)>,
    bytes: u64,
}

impl PartialEq for ZSetMembers {
    fn eq(&self, other: &ZSetMembers) -> bool {
        // Bit-exact scores: `-0` and `0` are different stored values.
        self.scores.len() == other.scores.len()
            && self
                .scores
                .iter()
                .zip(other.scores.iter())
                .all(|((a, x), (b, y))| a == b && x.to_bits() == y.to_bits())
    }
}

impl Eq for ZSetMembers {}

impl ZSetMembers {
    /// Sets `member`'s score (never NaN); returns the previous one.
    pub(crate) fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        debug_assert!(!score.is_nan());
        let previous = self.scores.insert(member.clone(), score);
        match previous {
            Some(old) => {
                let removed = self.order.remove(&(Score(old), member.clone()));
                debug_assert!(removed);
            }
            None => self.bytes += member_bytes(&member),
        }
        self.order.insert((Score(score), member));
        debug_assert_eq!(self.scores.len(), self.order.len());
        previous
    }

    /// Removes `member`; returns its score.
    pub(crate) fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (member, score) = self.scores.remove_entry(member)?;
        let removed = self.order.remove(&(Score(score), member.clone()));
        debug_assert!(removed);
        self.bytes -= member_bytes(&member);
        Some(score)
    }

    pub(crate) fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Accounted bytes of every member (see the module docs).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Members in (score, member) order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> + '_ {
        self.order.iter().map(|(score, member)| (member, score.0))
    }

    /// Members in byte order, with their scores (`ZSCAN`'s order).
    pub(crate) fn iter_members_from<'a>(
        &'a self,
        from: &[u8],
    ) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
        self.scores
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .map(|(member, score)| (member, *score))
    }

    /// Members from the first whose score is `>= min` (or `> min` when
    /// `exclusive`), in order.
    pub(crate) fn iter_from_score(
        &self,
        min: f64,
        exclusive: bool,
    ) -> impl Iterator<Item = (&Bytes, f64)> + '_ {
        self.order
            .range((Score(min), Bytes::new())..)
            .map(|(score, member)| (member, score.0))
            .skip_while(move |(_, score)| exclusive && *score <= min)
    }

    /// Members from the last whose score is `<= max` (or `< max` when
    /// `exclusive`), in reverse order.
    pub(crate) fn iter_back_from_score(
        &self,
        max: f64,
        exclusive: bool,
    ) -> impl Iterator<Item = (&Bytes, f64)> + '_ {
        // All members with score <= max are those before the first member
        // with score > max: find it by a range on the score alone.
        let upper = self
            .order
            .range((
                Bound::Excluded((Score(max), Bytes::new())),
                Bound::Unbounded,
            ))
            .find(|(score, _)| score.0 > max)
            .cloned();
        let range: Box<dyn DoubleEndedIterator<Item = &(Score, Bytes)>> = match upper {
            Some(first_above) => Box::new(self.order.range(..first_above)),
            None => Box::new(self.order.iter()),
        };
        range
            .rev()
            .map(|(score, member)| (member, score.0))
            .skip_while(move |(_, score)| exclusive && *score >= max || *score > max)
    }

    /// The 0-based position of `member` in (score, member) order; O(rank).
    pub(crate) fn rank(&self, member: &[u8]) -> Option<usize> {
        let (member, score) = self.scores.get_key_value(member)?;
        Some(self.order.range(..(Score(*score), member.clone())).count())
    }
}
