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
//! The tree's key is a copy of the item's key (`Arc<[u8]>`: cloning it
//! when the tree copies a node bumps a count), because the item itself is
//! the value and must be writable in place (`get_mut`), which a set of
//! items keyed by their own bytes could not offer. That copy, and the
//! tree's own nodes, cost ~2x the memory of a key stored in a trie node;
//! only keys whose full hash collides pay it.
//!
//! This file holds no `unsafe` code.

use std::sync::Arc;

use imbl::OrdMap;

use super::TrieItem;

/// Two or more items with one hash, ordered by key bytes (see the module
/// docs). Cloning is O(1): it shares the tree.
#[derive(Clone)]
pub(super) struct Bucket<T> {
    /// The hash every item has.
    hash: u64,
    items: OrdMap<Arc<[u8]>, T>,
}

impl<T> Bucket<T> {
    /// The hash every item has.
    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The items in key order.
    pub(super) fn iter(&self) -> Iter<'_, T> {
        Iter {
            values: self.items.values(),
        }
    }
}

impl<T: TrieItem> Bucket<T> {
    /// The bucket of `a` and `b`: equal hashes, different keys.
    pub(super) fn pair(a: T, b: T) -> Bucket<T> {
        let hash = a.trie_hash();
        debug_assert_eq!(hash, b.trie_hash());
        debug_assert_ne!(a.trie_key(), b.trie_key());
        let mut items = OrdMap::new();
        for item in [a, b] {
            items.insert(item.trie_key().into(), item);
        }
        Bucket { hash, items }
    }

    /// The item with this key. O(log k).
    pub(super) fn get(&self, key: &[u8]) -> Option<&T> {
        self.items.get(key)
    }

    /// The item with this key, writable (its key must not change). Looks
    /// first, so that a miss copies no node this bucket shares with a
    /// clone. O(log k).
    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        self.items.get(key)?;
        self.items.get_mut(key)
    }

    /// Stores `item` (of this bucket's hash), replacing and returning the
    /// item with its key if there is one. O(log k); a replacement does
    /// not copy the key again.
    pub(super) fn insert(&mut self, item: T) -> Option<T> {
        debug_assert_eq!(item.trie_hash(), self.hash);
        if let Some(stored) = self.get_mut(item.trie_key()) {
            return Some(std::mem::replace(stored, item));
        }
        self.items.insert(item.trie_key().into(), item);
        None
    }

    /// Removes and returns the item with this key. Looks first, as
    /// [`Bucket::get_mut`] does. O(log k).
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<T> {
        self.items.get(key)?;
        self.items.remove(key)
    }

    /// The last item of a bucket that holds one (a removal left it alone:
    /// the trie moves it up into its parent), moved out.
    pub(super) fn take_lone(&mut self) -> Option<T> {
        if self.items.len() != 1 {
            return None;
        }
        let key = self.items.get_min().map(|(key, _)| key.clone())?;
        self.items.remove(&*key)
    }

    /// Checks the bucket's own invariants: two items or more, each of
    /// the bucket's hash and stored under its own key (so in key order).
    pub(super) fn check(&self) -> Result<(), String> {
        if self.items.len() < 2 {
            return Err(format!("a bucket of {} items", self.items.len()));
        }
        for (key, item) in self.items.iter() {
            if item.trie_hash() != self.hash {
                return Err("a bucket item with another hash".into());
            }
            if **key != *item.trie_key() {
                return Err("a bucket item under another key".into());
            }
        }
        Ok(())
    }
}

/// A bucket's items in key order.
pub(super) struct Iter<'a, T> {
    values: imbl::ordmap::Values<'a, Arc<[u8]>, T, imbl::shared_ptr::DefaultSharedPtr>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        self.values.next()
    }
}
