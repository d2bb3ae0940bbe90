//! The keyspace: every key's value and expiry, with two ordered indexes.
//!
//! - `order`, keys sorted by `(xxh3_64(key), key)`: the one iteration order
//!   for `KEYS`, `SCAN`, `RANDOMKEY` and snapshots. It depends only on the
//!   keys, never on insertion history or a process-random hasher, so every
//!   replica iterates identically, and a `SCAN` cursor (a hash to resume
//!   from) stays meaningful while keys come and go.
//! - `expiry`, keys with a time to live sorted by `(expire_at_ms, key)`:
//!   `apply` purges its front up to the log time, deterministically.
//!
//! `entries` is a `HashMap` for lookups only; its iteration order is never
//! observed. A key is *live* at time `now` when it has no expiry or
//! `expire_at_ms > now`; an expired key that was not purged yet is invisible
//! to every read.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

/// A key's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Str(Bytes),
    /// Fields in byte order, so `HGETALL` is deterministic. Never empty.
    Hash(BTreeMap<Bytes, Bytes>),
    /// Never empty.
    List(VecDeque<Bytes>),
}

impl Value {
    /// The name `TYPE` reports.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
        }
    }

    fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(fields) => fields.is_empty(),
            Value::List(items) => items.is_empty(),
        }
    }
}

/// A key's value and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    /// Unix time in ms at which the key stops existing.
    pub(crate) expire_at_ms: Option<u64>,
}

impl Entry {
    /// Whether the key still exists at `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// The position of a key in iteration order.
pub(crate) fn order_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

#[derive(Debug, Default)]
pub(crate) struct Keyspace {
    entries: HashMap<Bytes, Entry>,
    order: BTreeSet<(u64, Bytes)>,
    expiry: BTreeSet<(u64, Bytes)>,
}

impl Keyspace {
    /// Number of stored keys, counting expired ones not yet purged.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of stored keys with an expiry, counting expired ones.
    pub(crate) fn expires_len(&self) -> usize {
        self.expiry.len()
    }

    /// Number of live keys at `now_ms`; costs O(expired but not purged).
    pub(crate) fn live_len(&self, now_ms: u64) -> usize {
        let expired = self
            .expiry
            .range(..(now_ms.saturating_add(1), Bytes::new()))
            .count();
        debug_assert!(expired <= self.entries.len());
        self.entries.len() - expired
    }

    /// The key's entry if it is live at `now_ms`.
    pub(crate) fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| entry.is_live(now_ms))
    }

    /// Removes the key if it exists but has expired at `now_ms`. Every write
    /// path calls this before touching a key, so a write never resurrects or
    /// extends a dead key.
    pub(crate) fn remove_if_expired(&mut self, key: &[u8], now_ms: u64) {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| !entry.is_live(now_ms))
        {
            self.remove(key);
        }
    }

    /// The live value of the key, for in-place changes. The caller must not
    /// leave a collection empty: call [`Keyspace::remove_if_empty`] after.
    pub(crate) fn value_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Value> {
        self.remove_if_expired(key, now_ms);
        self.entries.get_mut(key).map(|entry| &mut entry.value)
    }

    /// Removes the key if its value is an empty hash or list (Redis deletes
    /// a collection when its last element goes).
    pub(crate) fn remove_if_empty(&mut self, key: &[u8]) {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.value.is_empty_collection())
        {
            self.remove(key);
        }
    }

    /// The live value at `key`, first inserting `make()` without expiry when
    /// the key is absent. `make` may build an empty collection: the caller
    /// fills it (or calls [`Keyspace::remove_if_empty`]) before returning.
    pub(crate) fn value_or_insert(
        &mut self,
        key: &Bytes,
        now_ms: u64,
        make: impl FnOnce() -> Value,
    ) -> &mut Value {
        self.remove_if_expired(key, now_ms);
        if !self.entries.contains_key(&key[..]) {
            self.insert_unchecked(key.clone(), make(), None);
        }
        match self.entries.get_mut(&key[..]) {
            Some(entry) => &mut entry.value,
            None => unreachable!("the key was just inserted"),
        }
    }

    /// Stores `value` under `key`, replacing whatever was there, with the
    /// given expiry.
    pub(crate) fn insert(&mut self, key: Bytes, value: Value, expire_at_ms: Option<u64>) {
        debug_assert!(!value.is_empty_collection());
        self.insert_unchecked(key, value, expire_at_ms);
    }

    fn insert_unchecked(&mut self, key: Bytes, value: Value, expire_at_ms: Option<u64>) {
        let previous_expiry = match self.entries.get_mut(&key[..]) {
            Some(entry) => {
                let previous = entry.expire_at_ms;
                entry.value = value;
                entry.expire_at_ms = expire_at_ms;
                previous
            }
            None => {
                self.order.insert((order_hash(&key), key.clone()));
                self.entries.insert(
                    key.clone(),
                    Entry {
                        value,
                        expire_at_ms,
                    },
                );
                None
            }
        };
        self.reindex_expiry(&key, previous_expiry, expire_at_ms);
    }

    /// Changes the expiry of an existing key.
    pub(crate) fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<u64>) {
        let Some((stored_key, entry)) = self.entries.get_key_value(key) else {
            debug_assert!(false, "set_expiry on a missing key");
            return;
        };
        let stored_key = stored_key.clone();
        let previous = entry.expire_at_ms;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.expire_at_ms = expire_at_ms;
        }
        self.reindex_expiry(&stored_key, previous, expire_at_ms);
    }

    fn reindex_expiry(&mut self, key: &Bytes, previous: Option<u64>, next: Option<u64>) {
        if previous == next {
            return;
        }
        if let Some(at) = previous {
            let removed = self.expiry.remove(&(at, key.clone()));
            debug_assert!(removed, "expiry index lost a key");
        }
        if let Some(at) = next {
            self.expiry.insert((at, key.clone()));
        }
    }

    /// Removes the key (live or not) and returns its entry.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (stored_key, entry) = self.entries.remove_entry(key)?;
        let removed = self
            .order
            .remove(&(order_hash(&stored_key), stored_key.clone()));
        debug_assert!(removed, "order index lost a key");
        if let Some(at) = entry.expire_at_ms {
            let removed = self.expiry.remove(&(at, stored_key));
            debug_assert!(removed, "expiry index lost a key");
        }
        Some(entry)
    }

    /// Removes up to `limit` keys whose expiry is at or before `now_ms`,
    /// earliest first; returns how many it removed.
    pub(crate) fn purge_expired(&mut self, now_ms: u64, limit: usize) -> usize {
        let mut purged = 0;
        while purged < limit {
            let Some((at, key)) = self.expiry.first().cloned() else {
                break;
            };
            if at > now_ms {
                break;
            }
            self.remove(&key);
            purged += 1;
        }
        purged
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.expiry.clear();
    }

    /// Every stored key (live or not) from order position `hash` on
    /// (inclusive), in iteration order.
    pub(crate) fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_ {
        self.order
            .range((Bound::Included((hash, Bytes::new())), Bound::Unbounded))
            .map(move |(hash, key)| {
                let entry = self.entries.get(&key[..]);
                debug_assert!(entry.is_some(), "order index has a key entries lacks");
                (*hash, key, entry)
            })
            .filter_map(|(hash, key, entry)| entry.map(|entry| (hash, key, entry)))
    }

    /// Whether the key is stored with an expiry, live or not: its
    /// visibility depends on the time.
    pub(crate) fn has_expiry(&self, key: &[u8]) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| entry.expire_at_ms.is_some())
    }

    /// Whether the key is stored, live or not.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// Checks that the three structures agree and no collection is empty.
    /// Costs O(keys); for tests and the simulator.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.entries.len() != self.order.len() {
            return Err(format!(
                "{} entries but {} keys in the order index",
                self.entries.len(),
                self.order.len()
            ));
        }
        for (hash, key) in &self.order {
            if *hash != order_hash(key) || !self.entries.contains_key(&key[..]) {
                return Err(format!("order index entry for {key:?} is wrong"));
            }
        }
        let mut with_expiry = 0;
        for (key, entry) in &self.entries {
            if entry.value.is_empty_collection() {
                return Err(format!("key {key:?} holds an empty collection"));
            }
            if let Some(at) = entry.expire_at_ms {
                with_expiry += 1;
                if !self.expiry.contains(&(at, key.clone())) {
                    return Err(format!("key {key:?} is missing from the expiry index"));
                }
            }
        }
        if with_expiry != self.expiry.len() {
            return Err(format!(
                "{with_expiry} keys with expiry but {} in the expiry index",
                self.expiry.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn insert_expire_purge() {
        let mut keyspace = Keyspace::default();
        keyspace.insert(Bytes::from("a"), string("1"), Some(100));
        keyspace.insert(Bytes::from("b"), string("2"), None);
        keyspace.insert(Bytes::from("c"), string("3"), Some(50));
        keyspace.check_invariants().unwrap();
        assert_eq!(keyspace.live_len(49), 3);
        assert_eq!(keyspace.live_len(50), 2);
        assert!(keyspace.live(b"c", 49).is_some());
        assert!(keyspace.live(b"c", 50).is_none());
        assert_eq!(keyspace.purge_expired(100, 1), 1);
        assert!(!keyspace.contains(b"c"));
        assert_eq!(keyspace.purge_expired(100, 10), 1);
        assert_eq!(keyspace.len(), 1);
        keyspace.check_invariants().unwrap();
    }

    #[test]
    fn overwrite_and_set_expiry_keep_indexes_right() {
        let mut keyspace = Keyspace::default();
        keyspace.insert(Bytes::from("a"), string("1"), Some(100));
        keyspace.insert(Bytes::from("a"), string("2"), Some(200));
        keyspace.check_invariants().unwrap();
        keyspace.set_expiry(b"a", None);
        keyspace.check_invariants().unwrap();
        assert_eq!(keyspace.expires_len(), 0);
        keyspace.set_expiry(b"a", Some(5));
        keyspace.check_invariants().unwrap();
        keyspace.remove_if_expired(b"a", 5);
        assert_eq!(keyspace.len(), 0);
        keyspace.check_invariants().unwrap();
    }

    #[test]
    fn iteration_follows_hash_order() {
        let mut keyspace = Keyspace::default();
        for index in 0..100 {
            keyspace.insert(Bytes::from(format!("k{index}")), string("v"), None);
        }
        let hashes: Vec<u64> = keyspace.iter_from(0).map(|(hash, _, _)| hash).collect();
        assert_eq!(hashes.len(), 100);
        assert!(hashes.windows(2).all(|pair| pair[0] <= pair[1]));
        let middle = hashes[50];
        assert_eq!(keyspace.iter_from(middle).count(), 50);
    }
}
