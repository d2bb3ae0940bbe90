//! Collision buckets: the items of a trie whose whole 64-bit hashes are
//! equal, in key order.
//!
//! Equal hashes are free to make for the keyspace's hash (unseeded xxh3
//! gives 2^128 32-byte keys with any one hash, see the review's
//! `colliding_key`), so a client decides how large a bucket grows. A flat
//! array copied on every write made k such keys cost O(k^2); here a bucket
//! is a persistent B+ tree (`imbl::OrdMap`) keyed by the key bytes, so a
//! lookup, an insertion, a removal and a write in place cost O(log k), a
//! clone of the bucket is O(1), and a write after a clone copies only the
//! O(log k) tree nodes on its path (never the whole bucket).
//!
//! A bucket of a few items is a sorted array instead (up to
//! [`SMALL_MAX`]): an `OrdMap`'s first leaf is a full node of 16 slots, so a
//! client making buckets of two (any number of them: each family of
//! colliding keys is as cheap as one) made each key cost ~4x its accounted
//! size; an array of two items costs their 32 bytes. Writing a small bucket
//! copies it (at most `SMALL_MAX` items, a constant). It becomes a tree when
//! an insertion would pass `SMALL_MAX` and an array again when a removal
//! leaves [`SMALL_MIN`] items, so a client that inserts and removes at one
//! size pays the O(k) change at most once per `SMALL_MAX - SMALL_MIN`
//! operations.
//!
//! In the tree form the key is a copy of the item's key (`Arc<[u8]>`:
//! cloning it when the tree copies a node bumps a count), because the item
//! itself is the value and must be writable in place (`get_mut`), which a
//! set of items keyed by their own bytes could not offer. That copy, and
//! the tree's own nodes, cost ~1.5x the memory of a key stored in a trie
//! node; only keys in buckets larger than `SMALL_MAX` pay it.
//!
//! Panics: the array form moves items (it clones only the whole array,
//! when it is shared, before changing anything), so a panicking clone
//! leaves it whole. The tree form does not promise that: imbl may
//! rebalance after a removal has taken the key out, cloning a sibling's
//! items, and a clone that panics there leaves the key gone but counted.
//! The keyspace's items cannot panic when cloned (an `Entry` clone bumps a
//! count and aborts on overflow); a generic user of the trie whose clone
//! can must not rely on a bucket surviving it. [`Bucket::check`] compares
//! the count with the items, so the invariant checks catch it.
//!
//! This file holds no `unsafe` code.

use std::sync::Arc;

use imbl::OrdMap;

use super::TrieItem;

/// Most items a bucket keeps in a sorted array.
pub(super) const SMALL_MAX: usize = 8;
/// A tree bucket left with this many items becomes an array again.
pub(super) const SMALL_MIN: usize = 4;

/// Two or more items with one hash, ordered by key bytes (see the module
/// docs). Cloning is O(1) for a tree and O(`SMALL_MAX`) for an array.
#[derive(Clone)]
pub(super) struct Bucket<T> {
    /// The hash every item has.
    hash: u64,
    items: Items<T>,
}

#[derive(Clone)]
enum Items<T> {
    /// Sorted by key; at most `SMALL_MAX`.
    Small(Vec<T>),
    Tree(OrdMap<Arc<[u8]>, T>),
}

impl<T> Bucket<T> {
    /// The hash every item has.
    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    pub(super) fn len(&self) -> usize {
        match &self.items {
            Items::Small(items) => items.len(),
            Items::Tree(items) => items.len(),
        }
    }

    /// The items in key order.
    pub(super) fn iter(&self) -> Iter<'_, T> {
        match &self.items {
            Items::Small(items) => Iter::Small(items.iter()),
            Items::Tree(items) => Iter::Tree(items.values()),
        }
    }

    /// Whether its items are in a tree (not an array); for tests.
    #[cfg(test)]
    pub(super) fn is_tree(&self) -> bool {
        matches!(self.items, Items::Tree(_))
    }

    /// The bytes an array bucket's array holds on the heap (its capacity);
    /// `None` for a tree. For tests.
    #[cfg(test)]
    pub(super) fn array_bytes(&self) -> Option<usize> {
        match &self.items {
            Items::Small(items) => Some(items.capacity() * size_of::<T>()),
            Items::Tree(_) => None,
        }
    }
}

/// Position of `key` in a sorted array of items.
fn search<T: TrieItem>(items: &[T], key: &[u8]) -> Result<usize, usize> {
    items.binary_search_by(|item| item.trie_key().cmp(key))
}

impl<T: TrieItem> Bucket<T> {
    /// The bucket of `a` and `b`: equal hashes, different keys.
    pub(super) fn pair(a: T, b: T) -> Bucket<T> {
        let hash = a.trie_hash();
        debug_assert_eq!(hash, b.trie_hash());
        debug_assert_ne!(a.trie_key(), b.trie_key());
        let items = if a.trie_key() < b.trie_key() {
            vec![a, b]
        } else {
            vec![b, a]
        };
        Bucket {
            hash,
            items: Items::Small(items),
        }
    }

    /// The item with this key. O(log k).
    pub(super) fn get(&self, key: &[u8]) -> Option<&T> {
        match &self.items {
            Items::Small(items) => search(items, key).ok().map(|at| &items[at]),
            Items::Tree(items) => items.get(key),
        }
    }

    /// The item with this key, writable (its key must not change). Looks
    /// first, so that a miss copies no node this bucket shares with a
    /// clone. O(log k).
    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        match &mut self.items {
            Items::Small(items) => {
                let at = search(items, key).ok()?;
                Some(&mut items[at])
            }
            Items::Tree(items) => {
                items.get(key)?;
                items.get_mut(key)
            }
        }
    }

    /// Stores `item` (of this bucket's hash), replacing and returning the
    /// item with its key if there is one. O(log k); a replacement does
    /// not copy the key again.
    pub(super) fn insert(&mut self, item: T) -> Option<T> {
        debug_assert_eq!(item.trie_hash(), self.hash);
        match &mut self.items {
            Items::Small(items) => match search(items, item.trie_key()) {
                Ok(at) => return Some(std::mem::replace(&mut items[at], item)),
                Err(at) if items.len() < SMALL_MAX => items.insert(at, item),
                Err(_) => {
                    // Past `SMALL_MAX`: a tree from here on (the array's
                    // items move into it; nothing is cloned).
                    let mut tree = OrdMap::new();
                    for old in std::mem::take(items).into_iter().chain([item]) {
                        tree.insert(old.trie_key().into(), old);
                    }
                    self.items = Items::Tree(tree);
                }
            },
            Items::Tree(items) => {
                // Looks first: a replacement keeps the stored key copy, and
                // a hit writes in place (copying the path only if shared).
                if items.contains_key(item.trie_key()) {
                    if let Some(stored) = items.get_mut(item.trie_key()) {
                        return Some(std::mem::replace(stored, item));
                    }
                }
                items.insert(item.trie_key().into(), item);
            }
        }
        None
    }

    /// Removes and returns the item with this key. Looks first, as
    /// [`Bucket::get_mut`] does. O(log k).
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<T> {
        match &mut self.items {
            Items::Small(items) => {
                let at = search(items, key).ok()?;
                Some(items.remove(at))
            }
            Items::Tree(items) => {
                items.get(key)?;
                let removed = items.remove(key);
                if items.len() <= SMALL_MIN {
                    // Cloned (a shared tree would clone them anyway), so
                    // a panicking clone leaves the whole tree in place.
                    let small = items.values().cloned().collect();
                    self.items = Items::Small(small);
                }
                removed
            }
        }
    }

    /// The last item of a bucket that holds one (a removal left it alone:
    /// the trie moves it up into its parent), moved out.
    pub(super) fn take_lone(&mut self) -> Option<T> {
        if self.len() != 1 {
            return None;
        }
        match &mut self.items {
            Items::Small(items) => items.pop(),
            Items::Tree(items) => {
                let key = items.get_min().map(|(key, _)| key.clone())?;
                items.remove(&*key)
            }
        }
    }

    /// Checks the bucket's own invariants: two items or more (as many as
    /// its length says), each of the bucket's hash and in key order; an
    /// array of at most `SMALL_MAX`, a tree of more than `SMALL_MIN`, whose
    /// items are stored under their own keys.
    pub(super) fn check(&self) -> Result<(), String> {
        let len = self.len();
        if len < 2 {
            return Err(format!("a bucket of {len} items"));
        }
        if self.iter().count() != len {
            return Err("a bucket whose length is not its item count".into());
        }
        match &self.items {
            Items::Small(items) if items.len() > SMALL_MAX => {
                return Err(format!("an array bucket of {} items", items.len()));
            }
            Items::Tree(items) if items.len() <= SMALL_MIN => {
                return Err(format!("a tree bucket of {} items", items.len()));
            }
            Items::Tree(items) => {
                if items.iter().any(|(key, item)| **key != *item.trie_key()) {
                    return Err("a bucket item under another key".into());
                }
            }
            Items::Small(_) => {}
        }
        let mut previous: Option<&[u8]> = None;
        for item in self.iter() {
            if item.trie_hash() != self.hash {
                return Err("a bucket item with another hash".into());
            }
            if previous.is_some_and(|key| key >= item.trie_key()) {
                return Err("a bucket out of key order".into());
            }
            previous = Some(item.trie_key());
        }
        Ok(())
    }
}

/// A bucket's items in key order.
pub(super) enum Iter<'a, T> {
    Small(std::slice::Iter<'a, T>),
    Tree(imbl::ordmap::Values<'a, Arc<[u8]>, T, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            Iter::Small(items) => items.next(),
            Iter::Tree(values) => values.next(),
        }
    }
}
