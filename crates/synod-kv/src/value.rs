//! A key's value, and the deterministic size every replica accounts for it
//! (the `--maxmemory` figure).
//!
//! # The size formula
//!
//! `used_memory_dataset` is the sum over stored keys (expired ones not yet
//! purged included) of
//!
//! ```text
//! KEY_OVERHEAD_BYTES + len(key) + value bytes
//!   string: len(value)
//!   hash:   sum over fields of FIELD_OVERHEAD_BYTES + len(field) + len(value)
//!   list:   sum over items  of ITEM_OVERHEAD_BYTES + len(item)
//!   set:    sum over members of MEMBER_OVERHEAD_BYTES + len(member)
//!   zset:   sum over members of ZSET_MEMBER_OVERHEAD_BYTES + len(member)
//! ```
//!
//! It is a pure function of the replicated state, never the allocator's
//! figure, so every replica computes the same number at the same point of
//! the log and refuses the same writes. The overheads approximate what the
//! indexes and allocations cost per key/field/item. Measured for a key of
//! 16 B holding 100 B (`examples/memory_per_key.rs`): the keyspace's heap
//! is ~150 B per key (the inline record of 131 B and its share of the
//! trie); a node of a loaded 3-node cluster holds ~300 B per key, most of
//! the rest outside the dataset (the log tail the core keeps until the
//! next snapshot, and the allocator's free space).
//! Changing a constant changes which writes are refused: every replica of a
//! cluster must run the same formula, like the same command set.
//!
//! Collections sit behind an `Arc` so that cloning a [`Value`] (which a
//! keyspace view does for a whole trie node when it is written under a live
//! view) never copies a collection; the first write to a collection shared
//! with a view copies it once (`Arc::make_mut`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::command::ListEnd;
pub(crate) use crate::value_set::SetMembers;

/// Accounted per key, besides its name and value.
pub const KEY_OVERHEAD_BYTES: u64 = 64;
/// Accounted per hash field, besides the field's name and value.
pub const FIELD_OVERHEAD_BYTES: u64 = 48;
/// Accounted per list item, besides its bytes.
pub const ITEM_OVERHEAD_BYTES: u64 = 24;

/// A key's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Str(Bytes),
    /// Never empty once a command returns.
    Hash(Arc<HashFields>),
    /// Never empty once a command returns.
    List(Arc<ListItems>),
    /// Never empty once a command returns.
    Set(Arc<SetMembers>),
    /// A sorted set; never empty once a command returns.
    ZSet(Arc<crate::zset::ZSetMembers>),
}

impl Value {
    pub(crate) fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(fields) => fields.is_empty(),
            Value::List(items) => items.is_empty(),
            Value::Set(members) => members.is_empty(),
            Value::ZSet(members) => members.is_empty(),
        }
    }

    pub(crate) fn empty_set() -> Value {
        Value::Set(Arc::new(SetMembers::default()))
    }

    pub(crate) fn empty_zset() -> Value {
        Value::ZSet(Arc::default())
    }

    pub(crate) fn empty_hash() -> Value {
        Value::Hash(Arc::new(HashFields::default()))
    }

    pub(crate) fn empty_list() -> Value {
        Value::List(Arc::new(ListItems::default()))
    }
}

/// Accounted bytes of a key holding a value of `value_bytes`.
pub(crate) fn entry_bytes(key_len: usize, value_bytes: u64) -> u64 {
    KEY_OVERHEAD_BYTES
        .saturating_add(key_len as u64)
        .saturating_add(value_bytes)
}

/// Accounted bytes of one hash field.
pub(crate) fn field_bytes(field: &[u8], value: &[u8]) -> u64 {
    FIELD_OVERHEAD_BYTES + field.len() as u64 + value.len() as u64
}

/// Accounted bytes of one list item.
pub(crate) fn item_bytes(item: &[u8]) -> u64 {
    ITEM_OVERHEAD_BYTES + item.len() as u64
}

/// A hash's fields in byte order (so `HGETALL` is deterministic), with
/// their accounted size kept up to date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HashFields {
    fields: BTreeMap<Bytes, Bytes>,
    bytes: u64,
}

impl HashFields {
    /// Sets a field; true when it is new.
    pub(crate) fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        let added = field_bytes(&field, &value);
        let key_len = field.len() as u64;
        match self.fields.insert(field, value) {
            Some(old) => {
                self.bytes =
                    self.bytes - (FIELD_OVERHEAD_BYTES + key_len + old.len() as u64) + added;
                false
            }
            None => {
                self.bytes += added;
                true
            }
        }
    }

    /// Removes a field; true when it was there.
    pub(crate) fn remove(&mut self, field: &[u8]) -> bool {
        match self.fields.remove(field) {
            Some(value) => {
                self.bytes -= field_bytes(field, &value);
                true
            }
            None => false,
        }
    }

    /// Accounted bytes of every field (see the module docs).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn get(&self, field: &[u8]) -> Option<&Bytes> {
        self.fields.get(field)
    }

    pub(crate) fn contains_key(&self, field: &[u8]) -> bool {
        self.fields.contains_key(field)
    }

    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> + '_ {
        self.fields.iter()
    }
}

/// A list's items, with their accounted size kept up to date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListItems {
    items: VecDeque<Bytes>,
    bytes: u64,
}

impl ListItems {
    pub(crate) fn with_capacity(len: usize) -> ListItems {
        ListItems {
            items: VecDeque::with_capacity(len),
            bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, end: ListEnd, item: Bytes) {
        self.bytes += item_bytes(&item);
        match end {
            ListEnd::Left => self.items.push_front(item),
            ListEnd::Right => self.items.push_back(item),
        }
    }

    pub(crate) fn pop(&mut self, end: ListEnd) -> Option<Bytes> {
        let item = match end {
            ListEnd::Left => self.items.pop_front(),
            ListEnd::Right => self.items.pop_back(),
        }?;
        self.bytes -= item_bytes(&item);
        Some(item)
    }

    /// Accounted bytes of every item (see the module docs).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.items.iter()
    }

    pub(crate) fn range(
        &self,
        range: std::ops::RangeInclusive<usize>,
    ) -> impl Iterator<Item = &Bytes> + '_ {
        self.items.range(range)
    }
}

// ---- Issue 16: positional list changes and ordered hash reads ----

impl ListItems {
    /// The item at `index` from the head.
    pub(crate) fn get(&self, index: usize) -> Option<&Bytes> {
        self.items.get(index)
    }

    /// Replaces the item at `index`; false when there is none.
    pub(crate) fn replace(&mut self, index: usize, item: Bytes) -> bool {
        let added = item_bytes(&item);
        let Some(slot) = self.items.get_mut(index) else {
            return false;
        };
        let old = std::mem::replace(slot, item);
        self.bytes = self.bytes - item_bytes(&old) + added;
        true
    }

    /// Inserts `item` so that it ends up at `index` (at most `len`).
    pub(crate) fn insert(&mut self, index: usize, item: Bytes) {
        debug_assert!(index <= self.items.len());
        self.bytes += item_bytes(&item);
        self.items.insert(index, item);
    }

    /// Keeps only the items at indexes `first..first + len` (clamped to the
    /// list).
    pub(crate) fn keep_range(&mut self, first: usize, len: usize) {
        let first = first.min(self.items.len());
        for item in self.items.drain(..first) {
            self.bytes -= item_bytes(&item);
        }
        let len = len.min(self.items.len());
        for item in self.items.drain(len..) {
            self.bytes -= item_bytes(&item);
        }
    }

    /// Removes up to `limit` items equal to `value`, scanning from the head
    /// (or from the tail when `from_tail`); returns how many it removed.
    /// O(len) whatever the number removed.
    pub(crate) fn remove_matching(&mut self, value: &[u8], limit: usize, from_tail: bool) -> usize {
        let len = self.items.len();
        let mut doomed = vec![false; len];
        let mut found = 0;
        let order: Box<dyn Iterator<Item = usize>> = if from_tail {
            Box::new((0..len).rev())
        } else {
            Box::new(0..len)
        };
        for index in order {
            if found == limit {
                break;
            }
            if self.items[index] == value {
                doomed[index] = true;
                found += 1;
            }
        }
        if found > 0 {
            let mut index = 0;
            let mut removed_bytes = 0;
            self.items.retain(|item| {
                let keep = !doomed[index];
                if !keep {
                    removed_bytes += item_bytes(item);
                }
                index += 1;
                keep
            });
            self.bytes -= removed_bytes;
        }
        found
    }
}

impl HashFields {
    /// The fields at or after `from` in byte order, with their values.
    pub(crate) fn iter_from<'a>(
        &'a self,
        from: &[u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> + 'a {
        self.fields
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_bytes_follow_the_formula() {
        let mut fields = HashFields::default();
        assert!(fields.insert(Bytes::from("f"), Bytes::from("12345")));
        assert_eq!(fields.bytes, FIELD_OVERHEAD_BYTES + 1 + 5);
        assert!(!fields.insert(Bytes::from("f"), Bytes::from("1")));
        assert_eq!(fields.bytes, FIELD_OVERHEAD_BYTES + 1 + 1);
        assert!(fields.remove(b"f"));
        assert_eq!(fields.bytes, 0);
    }

    #[test]
    fn list_bytes_follow_the_formula() {
        let mut items = ListItems::default();
        items.push(ListEnd::Left, Bytes::from("ab"));
        items.push(ListEnd::Right, Bytes::from("cde"));
        assert_eq!(items.bytes, 2 * ITEM_OVERHEAD_BYTES + 5);
        assert_eq!(items.pop(ListEnd::Left), Some(Bytes::from("ab")));
        assert_eq!(items.bytes, ITEM_OVERHEAD_BYTES + 3);
    }

    fn list_of(items: &[&str]) -> ListItems {
        let mut list = ListItems::default();
        for item in items {
            list.push(ListEnd::Right, Bytes::copy_from_slice(item.as_bytes()));
        }
        list
    }

    fn recount(list: &ListItems) -> u64 {
        list.iter().map(|item| item_bytes(item)).sum()
    }

    #[test]
    fn positional_changes_keep_the_bytes_right() {
        let mut list = list_of(&["a", "bb", "a", "ccc", "a"]);
        assert!(list.replace(1, Bytes::from("dddd")));
        assert!(!list.replace(5, Bytes::from("x")));
        assert_eq!(list.bytes, recount(&list));
        list.insert(5, Bytes::from("e"));
        list.insert(0, Bytes::from("f"));
        assert_eq!(list.bytes, recount(&list));
        assert_eq!(list.pop(ListEnd::Left), Some(Bytes::from("f")));
        assert_eq!(list.remove_matching(b"a", 2, true), 2);
        let left: Vec<_> = list.iter().cloned().collect();
        assert_eq!(left, ["a", "dddd", "ccc", "e"]);
        assert_eq!(list.bytes, recount(&list));
        list.keep_range(1, 2);
        let left: Vec<_> = list.iter().cloned().collect();
        assert_eq!(left, ["dddd", "ccc"]);
        assert_eq!(list.bytes, recount(&list));
        list.keep_range(5, 1);
        assert!(list.is_empty());
        assert_eq!(list.bytes, 0);
    }
}
