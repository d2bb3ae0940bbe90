//! A set's members ([`SetMembers`]): kept in byte order, so every reply that
//! lists members lists them in the same order on every replica, with their
//! accounted size (see [`crate::value`]) and the encoding Redis 7.0 would
//! give the set.
//!
//! Accounted size of a set: the sum over members of
//! [`MEMBER_OVERHEAD_BYTES`] + the member's length.

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::Bytes;

use crate::number::parse_i64;

/// Accounted per set member, besides its bytes (a `Bytes` handle and its
/// share of the B-tree node).
pub const MEMBER_OVERHEAD_BYTES: u64 = 40;
/// Redis' default `set-max-intset-entries`: past this many members an
/// intset becomes a hash table.
pub(crate) const INTSET_ENTRIES_MAX: usize = 512;

/// Accounted bytes of one set member.
pub(crate) fn member_bytes(member: &[u8]) -> u64 {
    MEMBER_OVERHEAD_BYTES + member.len() as u64
}

/// A set's members in byte order, their accounted size, and whether Redis
/// would still hold the set as an `intset`.
///
/// The encoding is replicated state, not derived from the members: Redis
/// turns an intset into a hash table when a non-integer member or the
/// 513th member arrives, and never back, so `OBJECT ENCODING` depends on
/// the set's history. It changes only through [`SetMembers::insert`], so
/// every replica that applies the same commands holds the same flag, and
/// snapshots carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetMembers {
    members: BTreeSet<Bytes>,
    bytes: u64,
    intset: bool,
}

impl Default for SetMembers {
    /// An empty set, encoded as its first member will decide (as Redis'
    /// `setTypeCreate`).
    fn default() -> SetMembers {
        SetMembers {
            members: BTreeSet::new(),
            bytes: 0,
            intset: true,
        }
    }
}

impl SetMembers {
    /// A set restored from a snapshot, with the encoding it was saved with.
    /// `None` when `intset` is claimed for members Redis could not hold so.
    pub(crate) fn restored(members: BTreeSet<Bytes>, intset: bool) -> Option<SetMembers> {
        if intset
            && (members.len() > INTSET_ENTRIES_MAX
                || members.iter().any(|member| parse_i64(member).is_none()))
        {
            return None;
        }
        let bytes = members
            .iter()
            .map(|member| member_bytes(member))
            .fold(0u64, u64::saturating_add);
        Some(SetMembers {
            members,
            bytes,
            intset,
        })
    }

    /// Adds a member; true when it is new.
    pub(crate) fn insert(&mut self, member: Bytes) -> bool {
        if self.intset && parse_i64(&member).is_none() {
            self.intset = false;
        }
        let added = member_bytes(&member);
        if !self.members.insert(member) {
            return false;
        }
        self.bytes += added;
        if self.members.len() > INTSET_ENTRIES_MAX {
            self.intset = false;
        }
        true
    }

    /// Removes a member; true when it was there.
    pub(crate) fn remove(&mut self, member: &[u8]) -> bool {
        if self.members.remove(member) {
            self.bytes -= member_bytes(member);
            true
        } else {
            false
        }
    }

    /// Accounted bytes of every member (see the module docs).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether Redis would report this set as an `intset` (else
    /// `hashtable`).
    pub(crate) fn is_intset(&self) -> bool {
        self.intset
    }

    pub(crate) fn contains(&self, member: &[u8]) -> bool {
        self.members.contains(member)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in byte order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.members.iter()
    }

    /// The members at or after `from` in byte order.
    pub(crate) fn iter_from<'a>(&'a self, from: &[u8]) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.members
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
    }

    /// The members at the given positions in byte order. `positions` must
    /// be ascending (repeats allowed) and below [`SetMembers::len`]; one
    /// walk over the set, O(len).
    pub(crate) fn at_positions(&self, positions: &[usize]) -> Vec<&Bytes> {
        debug_assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
        let mut found = Vec::with_capacity(positions.len());
        let mut wanted = positions.iter().peekable();
        for (position, member) in self.members.iter().enumerate() {
            while wanted.next_if(|&&at| at == position).is_some() {
                found.push(member);
            }
            if wanted.peek().is_none() {
                break;
            }
        }
        debug_assert_eq!(found.len(), positions.len());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recount(set: &SetMembers) -> u64 {
        set.iter().map(|member| member_bytes(member)).sum()
    }

    #[test]
    fn bytes_follow_the_formula() {
        let mut set = SetMembers::default();
        assert!(set.insert(Bytes::from("ab")));
        assert!(!set.insert(Bytes::from("ab")));
        assert!(set.insert(Bytes::from("cde")));
        assert_eq!(set.bytes(), 2 * MEMBER_OVERHEAD_BYTES + 5);
        assert!(set.remove(b"ab"));
        assert!(!set.remove(b"ab"));
        assert_eq!(set.bytes(), recount(&set));
        assert!(set.remove(b"cde"));
        assert_eq!(set.bytes(), 0);
        assert!(set.is_empty());
    }

    #[test]
    fn the_encoding_turns_to_hashtable_and_stays() {
        let mut set = SetMembers::default();
        set.insert(Bytes::from("1"));
        set.insert(Bytes::from("-20"));
        assert!(set.is_intset());
        set.insert(Bytes::from("01"));
        assert!(!set.is_intset(), "not a canonical integer");
        set.remove(b"01");
        assert!(!set.is_intset(), "never back to an intset");

        let mut set = SetMembers::default();
        for number in 0..INTSET_ENTRIES_MAX {
            set.insert(Bytes::from(number.to_string()));
        }
        assert!(set.is_intset());
        set.insert(Bytes::from("0"));
        assert!(set.is_intset(), "an existing member adds nothing");
        set.insert(Bytes::from("100000"));
        assert!(!set.is_intset());
    }

    #[test]
    fn restored_sets_are_checked() {
        let members: BTreeSet<Bytes> = [Bytes::from("a"), Bytes::from("1")].into();
        assert!(SetMembers::restored(members.clone(), true).is_none());
        let set = SetMembers::restored(members, false).unwrap();
        assert_eq!(set.bytes(), recount(&set));
    }

    #[test]
    fn positions_pick_in_one_walk() {
        let mut set = SetMembers::default();
        for member in ["a", "b", "c", "d"] {
            set.insert(Bytes::from(member));
        }
        let picked: Vec<&[u8]> = set
            .at_positions(&[0, 0, 2, 3])
            .into_iter()
            .map(|member| &member[..])
            .collect();
        assert_eq!(picked, [&b"a"[..], b"a", b"c", b"d"]);
        assert!(set.at_positions(&[]).is_empty());
        let from: Vec<&Bytes> = set.iter_from(b"bb").collect();
        assert_eq!(from, [&Bytes::from("c"), &Bytes::from("d")]);
    }
}
