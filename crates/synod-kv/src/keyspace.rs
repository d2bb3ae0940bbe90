//! The keyspace: every key's value and expiry, with two ordered indexes.
//!
//! - `entries`, keys sorted by `(xxh3_64(key), key)`: the one iteration
//!   order for `KEYS`, `SCAN`, `RANDOMKEY` and snapshots. It depends only on
//!   the keys, never on insertion history or a process-random hasher, so
//!   every replica iterates identically, and a `SCAN` cursor (a hash to
//!   resume from) stays meaningful while keys come and go. Lookups hash the
//!   key and search by `(hash, key)`.
//! - `expiry`, keys with a time to live sorted by `(expire_at_ms, key)`:
//!   `apply` purges its front up to the log time, deterministically.
//!
//! `entries` is a persistent B+ tree (`imbl::OrdMap`): [`Keyspace::view`]
//! takes an immutable copy of the whole keyspace in O(1) on the event loop
//! (it shares every node), and a snapshot or a `KEYS` reads that copy on
//! another thread while `apply` goes on: a write under a live view copies
//! only the tree nodes on its path (and, once, a collection it changes).
//!
//! A key is *live* at time `now` when it has no expiry or
//! `expire_at_ms > now`; an expired key that was not purged yet is
//! invisible to every read.
//!
//! The keyspace also keeps the dataset's accounted size (see
//! [`crate::value`] for the formula) and the replicated `maxmemory` limit.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::RangeFrom;

use bytes::Bytes;
use equivalent::{Comparable, Equivalent};
use imbl::OrdMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::value::entry_bytes;
pub(crate) use crate::value::Value;

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

/// A key in `entries`: its order hash (computed once) and its bytes.
/// Ordered by `(hash, key)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OrderKey {
    hash: u64,
    key: Bytes,
}

impl OrderKey {
    fn new(key: Bytes) -> OrderKey {
        OrderKey {
            hash: order_hash(&key),
            key,
        }
    }
}

/// A borrowed `(hash, key)` to search `entries` without allocating.
/// Compares exactly as [`OrderKey`]'s derived order does.
struct Probe<'a> {
    hash: u64,
    key: &'a [u8],
}

impl<'a> Probe<'a> {
    fn of(key: &'a [u8]) -> Probe<'a> {
        Probe {
            hash: order_hash(key),
            key,
        }
    }
}

impl Equivalent<OrderKey> for Probe<'_> {
    fn equivalent(&self, other: &OrderKey) -> bool {
        self.hash == other.hash && self.key == &other.key[..]
    }
}

impl Comparable<OrderKey> for Probe<'_> {
    fn compare(&self, other: &OrderKey) -> Ordering {
        (self.hash, self.key).cmp(&(other.hash, &other.key[..]))
    }
}

type Entries = OrdMap<OrderKey, Entry>;

/// Keys from which `clear` frees the old keyspace on another thread.
const FREE_ELSEWHERE_MIN: usize = 4096;

/// Every stored key (live or not) from order position `hash` on
/// (inclusive), in iteration order.
fn entries_from(entries: &Entries, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_ {
    let from: RangeFrom<Probe<'static>> = Probe { hash, key: &[] }..;
    entries
        .range(from)
        .map(|(order, entry)| (order.hash, &order.key, entry))
}

/// What a read of keys needs, from the keyspace itself (on the event loop)
/// or from a [`KeyspaceView`] (off it): the same functions answer both.
pub(crate) trait Lookup {
    /// The key's entry if it is live at `now_ms`.
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry>;
    /// Every stored key (live or not) from order position `hash` on
    /// (inclusive), in iteration order.
    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_;
}

impl Lookup for Keyspace {
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        Keyspace::live(self, key, now_ms)
    }

    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }
}

impl Lookup for KeyspaceView {
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.entries
            .get(&Probe::of(key))
            .filter(|entry| entry.is_live(now_ms))
    }

    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }
}

/// An immutable copy of the keyspace at one point of the log, taken in
/// O(1) by [`Keyspace::view`]; `Send`, so it can be read on another thread.
#[derive(Clone, Debug)]
pub(crate) struct KeyspaceView {
    entries: Entries,
    maxmemory_bytes: u64,
}

impl KeyspaceView {
    /// Number of stored keys, counting expired ones not yet purged.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The replicated `maxmemory` limit at the view's point (0: none).
    pub(crate) fn maxmemory_bytes(&self) -> u64 {
        self.maxmemory_bytes
    }
}

#[derive(Debug, Default)]
pub(crate) struct Keyspace {
    entries: Entries,
    expiry: BTreeSet<(u64, Bytes)>,
    /// Sum of [`entry_bytes`] over `entries`.
    used_bytes: u64,
    /// The replicated `maxmemory` limit (0: none). Set only by a log
    /// command or a snapshot, never by a node's own flag (see
    /// `KvCommand::SetMaxMemory`).
    maxmemory_bytes: u64,
}

fn accounted(key: &Bytes, entry: &Entry) -> u64 {
    entry_bytes(key.len(), entry.value.bytes())
}

impl Keyspace {
    /// An O(1) immutable copy for reading off the event loop.
    pub(crate) fn view(&self) -> KeyspaceView {
        KeyspaceView {
            entries: self.entries.clone(),
            maxmemory_bytes: self.maxmemory_bytes,
        }
    }

    /// Number of stored keys, counting expired ones not yet purged.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The dataset's accounted size in bytes (see [`crate::value`]).
    pub(crate) fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// The replicated `maxmemory` limit (0: none).
    pub(crate) fn maxmemory_bytes(&self) -> u64 {
        self.maxmemory_bytes
    }

    /// Sets the replicated `maxmemory` limit (apply of a log command, or a
    /// snapshot being read).
    pub(crate) fn set_maxmemory_bytes(&mut self, bytes: u64) {
        self.maxmemory_bytes = bytes;
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

    /// The key's entry, live or not.
    pub(crate) fn stored(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(&Probe::of(key))
    }

    /// The key's entry if it is live at `now_ms`.
    pub(crate) fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.stored(key).filter(|entry| entry.is_live(now_ms))
    }

    /// Removes the key if it exists but has expired at `now_ms`. Every write
    /// path calls this before touching a key, so a write never resurrects or
    /// extends a dead key.
    pub(crate) fn remove_if_expired(&mut self, key: &[u8], now_ms: u64) {
        if self.stored(key).is_some_and(|entry| !entry.is_live(now_ms)) {
            self.remove(key);
        }
    }

    /// Changes the live value at `key` in place with `change`, keeping the
    /// accounted size right; a collection `change` leaves empty is removed
    /// (Redis deletes a collection when its last element goes). `None` when
    /// the key is absent.
    pub(crate) fn modify<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        change: impl FnOnce(&mut Value) -> R,
    ) -> Option<R> {
        self.remove_if_expired(key, now_ms);
        let entry = self.entries.get_mut(&Probe::of(key))?;
        let before = entry.value.bytes();
        let result = change(&mut entry.value);
        let after = entry.value.bytes();
        let empty = entry.value.is_empty_collection();
        self.used_bytes = self.used_bytes - before + after;
        if empty {
            self.remove(key);
        }
        Some(result)
    }

    /// As [`Keyspace::modify`], first inserting `make()` without expiry
    /// when the key is absent. `make` may build an empty collection for
    /// `change` to fill (an empty one is removed again).
    pub(crate) fn modify_or_insert<R>(
        &mut self,
        key: &Bytes,
        now_ms: u64,
        make: impl FnOnce() -> Value,
        change: impl FnOnce(&mut Value) -> R,
    ) -> R {
        self.remove_if_expired(key, now_ms);
        if self.stored(key).is_none() {
            self.insert_unchecked(key.clone(), make(), None);
        }
        match self.modify(key, now_ms, change) {
            Some(result) => result,
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
        let entry = Entry {
            value,
            expire_at_ms,
        };
        let added = accounted(&key, &entry);
        let previous = self.entries.insert(OrderKey::new(key.clone()), entry);
        let previous_expiry = match previous {
            Some(previous) => {
                self.used_bytes -= accounted(&key, &previous);
                previous.expire_at_ms
            }
            None => None,
        };
        self.used_bytes += added;
        self.reindex_expiry(&key, previous_expiry, expire_at_ms);
    }

    /// Changes the expiry of an existing key.
    pub(crate) fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<u64>) {
        let probe = Probe::of(key);
        let Some((order, entry)) = self.entries.get_key_value(&probe) else {
            debug_assert!(false, "set_expiry on a missing key");
            return;
        };
        // The stored key, so the expiry index shares its bytes.
        let stored_key = order.key.clone();
        let previous = entry.expire_at_ms;
        if let Some(entry) = self.entries.get_mut(&probe) {
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
        let (stored_key, entry) = self.entries.remove_with_key(&Probe::of(key))?;
        self.used_bytes -= accounted(&stored_key.key, &entry);
        if let Some(at) = entry.expire_at_ms {
            let removed = self.expiry.remove(&(at, stored_key.key));
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

    /// Removes every key (FLUSHALL); the `maxmemory` limit stays. O(1) on
    /// the caller's thread when a view shares the tree (the nodes are
    /// freed when the last view goes), O(keys) otherwise.
    pub(crate) fn clear(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        let expiry = std::mem::take(&mut self.expiry);
        self.used_bytes = 0;
        if entries.len() < FREE_ELSEWHERE_MIN {
            return;
        }
        // Freeing millions of keys takes hundreds of milliseconds: a thread
        // does it, so FLUSHALL is O(1) on the event loop. Nothing is shared
        // with the new state, so when it runs changes nothing replicated. If
        // no thread can start, the closure (and the keys) is dropped here.
        let _ = std::thread::Builder::new()
            .name("synod-kv-free".into())
            .spawn(move || drop((entries, expiry)));
    }

    /// Every stored key (live or not) from order position `hash` on
    /// (inclusive), in iteration order.
    pub(crate) fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &Bytes, &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }

    /// Whether the key is stored with an expiry, live or not: its
    /// visibility depends on the time.
    pub(crate) fn has_expiry(&self, key: &[u8]) -> bool {
        self.stored(key)
            .is_some_and(|entry| entry.expire_at_ms.is_some())
    }

    /// Whether the key is stored, live or not.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.stored(key).is_some()
    }

    /// Checks that the indexes and the accounted size agree and no
    /// collection is empty. Costs O(keys); for tests and the simulator.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut with_expiry = 0;
        let mut used = 0u64;
        for (order, entry) in self.entries.iter() {
            let key = &order.key;
            if order.hash != order_hash(key) {
                return Err(format!("order hash of {key:?} is wrong"));
            }
            if entry.value.is_empty_collection() {
                return Err(format!("key {key:?} holds an empty collection"));
            }
            used += accounted(key, entry);
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
        if used != self.used_bytes {
            return Err(format!(
                "accounted {} bytes but the keys add up to {used}",
                self.used_bytes
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
