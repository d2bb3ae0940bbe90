//! The keyspace: every key's value and expiry, with two ordered indexes.
//!
//! - `entries`, keys in `(xxh3_64(key), key)` order: the one iteration
//!   order for `KEYS`, `SCAN`, `RANDOMKEY` and snapshots. It depends only on
//!   the keys, never on insertion history or a process-random hasher, so
//!   every replica iterates identically, and a `SCAN` cursor (a hash to
//!   resume from) stays meaningful while keys come and go. Lookups hash the
//!   key and look for `(hash, key)`.
//! - `expiry`, keys with a time to live sorted by `(expire_at_ms, key)`:
//!   `apply` purges its front up to the log time, deterministically.
//!
//! Each key is one [`Entry`] (see [`crate::entry`] for its compact layout).
//! `entries` is a persistent hash array mapped trie keyed by the order hash,
//! most significant bits first ([`crate::trie`]), so that walking it in
//! slot order *is* `(hash, key)` order; a lookup reads ~log64(keys) nodes.
//! [`Keyspace::view`] takes an immutable copy of the whole keyspace in O(1)
//! on the event loop (it shares every node), and a snapshot or a `KEYS`
//! reads that copy on another thread while `apply` goes on: a write under
//! a live view copies only the trie nodes on its path (and, once, a
//! collection it changes).
//!
//! A key is *live* at time `now` when it has no expiry or
//! `expire_at_ms > now`; an expired key that was not purged yet is
//! invisible to every read.
//!
//! The keyspace also keeps the dataset's accounted size (see
//! [`crate::value`] for the formula), the replicated `maxmemory` limit, and
//! what WATCH needs ([`crate::watch`]): every change of an entry stamps it
//! with [`Keyspace::stamp_now`], and every removal leaves a bounded
//! tombstone. Those happen only in `put`'s callers, `modify`, `set_expiry`,
//! `remove`, `purge_expired` and `clear`, the only functions that change
//! `entries`, so no command can change a key without WATCH seeing it.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::blocking::BlockedClients;
pub(crate) use crate::entry::{order_hash, Entry, StrRef, ValueRef};
use crate::pubsub::keyspace_events::{EXPIRED, GENERIC, NEW};
use crate::pubsub::PubSub;
use crate::trie::{Trie, PREFETCH_GROUP_MAX};
use crate::value::entry_bytes;
pub(crate) use crate::value::Value;
use crate::watch::{Stamp, Tombstones, WatchedKey, FLUSH_TOMBSTONES_MAX};

/// The trie: every stored key, in `(hash, key)` order. An [`Entry`] holds
/// the key, value and expiry together (one tagged pointer besides the
/// hash), so an item slot is 16 bytes.
type Entries = Trie<Entry>;

/// Keys from which `clear` frees the old keyspace on another thread.
const FREE_ELSEWHERE_MIN: usize = 4096;

/// Every stored key (live or not) from order position `hash` on
/// (inclusive), in iteration order.
fn entries_from(entries: &Entries, hash: u64) -> impl Iterator<Item = (u64, &[u8], &Entry)> + '_ {
    entries
        .iter_from(hash)
        .map(|entry| (entry.hash(), entry.key(), entry))
}

/// What a read of keys needs, from the keyspace itself (on the event loop)
/// or from a [`KeyspaceView`] (off it): the same functions answer both.
pub(crate) trait Lookup {
    /// The key's entry if it is live at `now_ms`.
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry>;
    /// Every stored key (live or not) from order position `hash` on
    /// (inclusive), in iteration order.
    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &[u8], &Entry)> + '_;
}

impl Lookup for Keyspace {
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        Keyspace::live(self, key, now_ms)
    }

    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &[u8], &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }
}

impl Lookup for KeyspaceView {
    fn live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.entries
            .get(order_hash(key), key)
            .filter(|entry| entry.is_live(now_ms))
    }

    fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &[u8], &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }
}

/// An immutable copy of the keyspace at one point of the log, taken in
/// O(1) by [`Keyspace::view`]; `Send`, so it can be read on another thread.
#[derive(Clone, Debug)]
pub(crate) struct KeyspaceView {
    entries: Entries,
    maxmemory_bytes: u64,
    stamp_now: Stamp,
    tombstones: Tombstones,
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

    /// The stamp of the last apply at the view's point.
    pub(crate) fn stamp_now(&self) -> Stamp {
        self.stamp_now
    }

    /// The tombstones at the view's point.
    pub(crate) fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }
}

#[derive(Debug, Default)]
pub(crate) struct Keyspace {
    entries: Entries,
    /// `(expire_at_ms, key)` of every key with an expiry, and of no other
    /// key: a key without one costs nothing here.
    expiry: BTreeSet<(u64, Box<[u8]>)>,
    /// Sum of [`entry_bytes`] over `entries`.
    used_bytes: u64,
    /// The replicated `maxmemory` limit (0: none). Set only by a log
    /// command or a snapshot, never by a node's own flag (see
    /// `KvCommand::SetMaxMemory`).
    maxmemory_bytes: u64,
    /// The stamp of the apply in progress, or of the last one (see
    /// [`crate::watch`]): every change is stamped with it.
    stamp_now: Stamp,
    /// The last-write stamps of removed keys, bounded.
    tombstones: Tombstones,
    /// This node's blocked clients (not replicated state): every key given
    /// a value, or a changed one, wakes its first waiter (see
    /// [`crate::blocking`]). Called from `put` and `modify` only, the two
    /// places that leave a key holding a value, so no write can forget it.
    blocked_clients: BlockedClients,
    /// Where this node's keyspace events go (not replicated state; `None`
    /// for a keyspace outside a store). The events of the keyspace itself
    /// (`new`, `expired`, and `del` of an emptied collection) are emitted
    /// here; the commands' own in [`crate::ops::events`].
    events: Option<PubSub>,
    /// The node's `notify-keyspace-events`, read once per apply (0: off,
    /// and then every event site costs one branch).
    event_flags: u32,
    /// Keys of the collections the running command emptied: their `del`
    /// events follow the command's own (as in Redis), emitted by
    /// [`crate::ops::events`]. Empty unless events are on.
    emptied: Vec<Box<[u8]>>,
    /// The replicated ACL users (a handle on the store's; not part of the
    /// keyspace's own state): scripts check their user's rules against
    /// them (see `EvalCommand::user`).
    acl: crate::acl_auth::Acl,
}

fn accounted(entry: &Entry) -> u64 {
    entry_bytes(entry.key().len(), entry.value().bytes())
}

impl Keyspace {
    /// An O(1) immutable copy for reading off the event loop.
    pub(crate) fn view(&self) -> KeyspaceView {
        KeyspaceView {
            entries: self.entries.clone(),
            maxmemory_bytes: self.maxmemory_bytes,
            stamp_now: self.stamp_now,
            tombstones: self.tombstones.clone(),
        }
    }

    /// This node's blocked clients, woken by the changes of keys.
    pub(crate) fn blocked_clients(&self) -> &BlockedClients {
        &self.blocked_clients
    }

    /// The replicated ACL users, as the store holds them.
    pub(crate) fn acl(&self) -> &crate::acl_auth::Acl {
        &self.acl
    }

    /// Makes the keyspace see the store's users (at construction, and for a
    /// keyspace read from a snapshot).
    pub(crate) fn set_acl(&mut self, acl: crate::acl_auth::Acl) {
        self.acl = acl;
    }

    /// Replaces the blocked-client handle (a keyspace read from a snapshot
    /// takes over the one of the keyspace it replaces).
    pub(crate) fn set_blocked_clients(&mut self, blocked_clients: BlockedClients) {
        self.blocked_clients = blocked_clients;
    }

    /// Starts the apply of a command at `instance`: every change it makes
    /// is stamped with the next stamp (see [`crate::watch`]). Reads the
    /// node's `notify-keyspace-events` for the apply, and gives the apply
    /// its own pattern budget for its messages and events (see
    /// [`PubSub::begin_apply`]).
    pub(crate) fn begin_apply(&mut self, instance: u64) {
        self.stamp_now = self.stamp_now.next(instance);
        if let Some(events) = &self.events {
            events.begin_apply();
        }
        self.event_flags = self.events.as_ref().map_or(0, PubSub::keyspace_events);
        debug_assert!(self.emptied.is_empty());
    }

    /// Sets where keyspace events go (the store's registry; a keyspace
    /// read from a snapshot takes over the one it replaces).
    pub(crate) fn set_events(&mut self, events: PubSub) {
        self.events = Some(events);
    }

    /// The `notify-keyspace-events` classes of the running apply (0: off).
    pub(crate) fn event_flags(&self) -> u32 {
        self.event_flags
    }

    /// Emits a keyspace event of `class` on `key` (see
    /// [`crate::pubsub::keyspace_events`]); one branch when events are off.
    pub(crate) fn event(&self, class: u32, event: &str, key: &[u8]) {
        if self.event_flags & class != 0 {
            if let Some(events) = &self.events {
                events.keyspace_event(self.event_flags, class, event, key);
            }
        }
    }

    /// Emits the `del` events of the collections the command just run
    /// emptied (after its own events, as Redis orders them).
    pub(crate) fn flush_emptied(&mut self) {
        for key in std::mem::take(&mut self.emptied) {
            self.event(GENERIC, "del", &key);
        }
    }

    /// The earliest expiry time of any stored key (`None`: none has one).
    pub(crate) fn next_expiry_ms(&self) -> Option<u64> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// What WATCH records for `key` at `now_ms` (see [`crate::watch`]).
    pub(crate) fn watch_token(&self, key: &[u8], now_ms: u64) -> WatchedKey {
        let live = self.live(key, now_ms);
        WatchedKey {
            key: bytes::Bytes::copy_from_slice(key),
            live: live.is_some(),
            stamp: live.map_or(self.stamp_now, Entry::stamp),
        }
    }

    /// Whether `watched` changed since it was read, at `now_ms`: the
    /// check EXEC makes (the argument is in [`crate::watch`]). O(log n).
    pub(crate) fn watch_changed(&self, watched: &WatchedKey, now_ms: u64) -> bool {
        match (self.live(&watched.key, now_ms), watched.live) {
            (Some(entry), true) => entry.stamp() != watched.stamp,
            // Deleted, expired or flushed since.
            (None, true) => true,
            // Written since: a dead entry never comes back to life.
            (Some(_), false) => true,
            (None, false) => self.tombstones.written_since(&watched.key, watched.stamp),
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
            .range(..(now_ms.saturating_add(1), Box::default()))
            .count();
        debug_assert!(expired <= self.entries.len());
        self.entries.len() - expired
    }

    /// Asks the CPU to fetch what looking up each of `keys` reads (see
    /// [`Trie::prefetch`]): a hint that changes nothing. At most
    /// [`PREFETCH_GROUP_MAX`] keys count.
    pub(crate) fn prefetch<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut hashes = [0u64; PREFETCH_GROUP_MAX];
        let mut n = 0;
        for (hash, key) in hashes.iter_mut().zip(keys) {
            *hash = order_hash(key);
            n += 1;
        }
        self.entries.prefetch(&hashes[..n]);
    }

    /// The key's entry, live or not.
    pub(crate) fn stored(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(order_hash(key), key)
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
            self.event(EXPIRED, "expired", key);
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
        let hash = order_hash(key);
        // Changed where it lies (in place when no view shares it; its
        // hash and key stay, as `Trie::get_mut` requires).
        let entry = self.entries.get_mut(hash, key)?;
        let before = accounted(entry);
        let result = entry.change_value(self.stamp_now, change);
        self.used_bytes -= before;
        if !entry.value().is_empty_collection() {
            self.used_bytes += accounted(entry);
            self.blocked_clients.touched(key);
            return Some(result);
        }
        // Emptied: the key goes (a second walk, only for this case).
        let Some(entry) = self.entries.remove(hash, key) else {
            unreachable!("the entry was just changed in place")
        };
        if let Some(at) = entry.expire_at_ms() {
            self.unindex_expiry(at, key);
        }
        self.tombstones.record(key, entry.stamp());
        if self.event_flags & GENERIC != 0 {
            self.emptied.push(key.into());
        }
        Some(result)
    }

    /// As [`Keyspace::modify`], first inserting `make()` without expiry
    /// when the key is absent. `make` may build an empty collection for
    /// `change` to fill (an empty one is removed again).
    pub(crate) fn modify_or_insert<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        make: impl FnOnce() -> Value,
        change: impl FnOnce(&mut Value) -> R,
    ) -> R {
        self.remove_if_expired(key, now_ms);
        if self.stored(key).is_none() {
            self.insert_unchecked(key, make(), None);
        }
        match self.modify(key, now_ms, change) {
            Some(result) => result,
            None => unreachable!("the key was just inserted"),
        }
    }

    /// Stores `value` under `key`, replacing whatever was there, with the
    /// given expiry.
    pub(crate) fn insert(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>) {
        debug_assert!(!value.is_empty_collection());
        self.insert_unchecked(key, value, expire_at_ms);
    }

    /// As [`Keyspace::insert`] of `Value::Str(value.clone())`, without the
    /// clone for a value stored inline (see [`Entry::stamped_string`]).
    pub(crate) fn insert_string(&mut self, key: &[u8], value: &Bytes, expire_at_ms: Option<u64>) {
        self.put(
            key,
            Entry::stamped_string(key, value, expire_at_ms, self.stamp_now),
        );
    }

    fn insert_unchecked(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>) {
        self.put(
            key,
            Entry::stamped(key, value, expire_at_ms, self.stamp_now),
        );
    }

    /// Stores `entry` (whose key is `key`: the caller's copy, to index it
    /// after the entry moved in), replacing the entry of its key if any,
    /// and keeps the accounted size and the expiry index right. One walk
    /// of the trie: the insertion hands back the entry it replaced.
    fn put(&mut self, key: &[u8], entry: Entry) {
        debug_assert_eq!(entry.key(), key);
        let bytes = accounted(&entry);
        let next_expiry = entry.expire_at_ms();
        let previous = self.entries.insert(entry);
        let previous_bytes = previous.as_ref().map_or(0, accounted);
        let previous_expiry = previous.as_ref().and_then(Entry::expire_at_ms);
        self.used_bytes = self.used_bytes - previous_bytes + bytes;
        if previous_expiry != next_expiry {
            if let Some(at) = previous_expiry {
                self.unindex_expiry(at, key);
            }
            if let Some(at) = next_expiry {
                self.expiry.insert((at, key.into()));
            }
        }
        self.blocked_clients.touched(key);
        if previous.is_none() {
            self.event(NEW, "new", key);
        }
    }

    fn unindex_expiry(&mut self, at: u64, key: &[u8]) {
        let removed = self.expiry.remove(&(at, key.into()));
        debug_assert!(removed, "expiry index lost a key");
    }

    /// Changes the expiry of an existing key.
    pub(crate) fn set_expiry(&mut self, key: &[u8], expire_at_ms: Option<u64>) {
        let Some(entry) = self.stored(key) else {
            debug_assert!(false, "set_expiry on a missing key");
            return;
        };
        if entry.expire_at_ms() != expire_at_ms {
            let changed = entry.with_expiry(expire_at_ms, self.stamp_now);
            self.put(key, changed);
        }
    }

    /// Removes the key (live or not) and returns its entry.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(order_hash(key), key)?;
        self.used_bytes -= accounted(&entry);
        if let Some(at) = entry.expire_at_ms() {
            self.unindex_expiry(at, entry.key());
        }
        self.tombstones.record(entry.key(), entry.stamp());
        Some(entry)
    }

    /// Removes up to `limit` keys whose expiry is at or before `now_ms`,
    /// earliest first; returns how many it removed.
    pub(crate) fn purge_expired(&mut self, now_ms: u64, limit: usize) -> usize {
        let mut purged = 0;
        while purged < limit {
            match self.expiry.first() {
                Some((at, _)) if *at <= now_ms => {}
                _ => break,
            }
            let Some((_, key)) = self.expiry.pop_first() else {
                break;
            };
            match self.entries.remove(order_hash(&key), &key) {
                Some(entry) => {
                    self.used_bytes -= accounted(&entry);
                    self.tombstones.record(entry.key(), entry.stamp());
                    self.event(EXPIRED, "expired", entry.key());
                }
                None => debug_assert!(false, "expiry index names a missing key"),
            }
            purged += 1;
        }
        purged
    }

    /// Removes every key (FLUSHALL); the `maxmemory` limit stays. O(1) on
    /// the caller's thread when a view shares the trie (the nodes are
    /// freed when the last view goes), O(keys) otherwise.
    pub(crate) fn clear(&mut self) {
        // WATCH: a tombstone per key while that is cheap, else the floor
        // (conservative, see `crate::watch`).
        if self.entries.len() <= FLUSH_TOMBSTONES_MAX {
            for entry in self.entries.iter() {
                self.tombstones.record(entry.key(), entry.stamp());
            }
        } else {
            self.tombstones.raise_floor(self.stamp_now);
        }
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

    /// Sets what WATCH needs from a snapshot being read: the stamp of the
    /// last apply and the tombstones.
    pub(crate) fn restore_watch_state(&mut self, stamp_now: Stamp, tombstones: Tombstones) {
        self.stamp_now = stamp_now;
        self.tombstones = tombstones;
    }

    /// Builds a keyspace from entries in any order (a snapshot being read);
    /// `None` when two entries have the same key.
    ///
    /// The entries go in in the given order: the trie's shape depends only
    /// on the set of keys, not on the order they came in (see
    /// [`crate::trie`]), so the keyspace is the one a replica that applied
    /// the same writes one by one holds, node for node.
    pub(crate) fn from_entries(entries: Vec<Entry>, maxmemory_bytes: u64) -> Option<Keyspace> {
        let mut keyspace = Keyspace {
            maxmemory_bytes,
            ..Keyspace::default()
        };
        for entry in entries {
            // What `put` keeps, without its events and wake-ups (nothing
            // listens to a keyspace being built).
            let bytes = accounted(&entry);
            if let Some(at) = entry.expire_at_ms() {
                keyspace.expiry.insert((at, entry.key().into()));
            }
            if keyspace.entries.insert(entry).is_some() {
                return None;
            }
            keyspace.used_bytes += bytes;
        }
        Some(keyspace)
    }

    /// Every stored key (live or not) from order position `hash` on
    /// (inclusive), in iteration order.
    pub(crate) fn iter_from(&self, hash: u64) -> impl Iterator<Item = (u64, &[u8], &Entry)> + '_ {
        entries_from(&self.entries, hash)
    }

    /// Whether the key is stored with an expiry, live or not: its
    /// visibility depends on the time.
    pub(crate) fn has_expiry(&self, key: &[u8]) -> bool {
        // `expiry` holds every key with an expiry (its field's contract,
        // checked by `check_invariants`): when it is empty, no key has one
        // and the lookup is spared.
        debug_assert!(
            !self.expiry.is_empty()
                || self
                    .stored(key)
                    .is_none_or(|entry| entry.expire_at_ms().is_none()),
            "a key with an expiry is missing from the expiry index"
        );
        !self.expiry.is_empty()
            && self
                .stored(key)
                .is_some_and(|entry| entry.expire_at_ms().is_some())
    }

    /// Whether the key is stored, live or not.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.stored(key).is_some()
    }

    /// Checks that the indexes and the accounted size agree and no
    /// collection is empty. Costs O(keys); for tests and the simulator.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut with_expiry = 0;
        let mut used = 0u64;
        for entry in self.entries.iter() {
            let key = entry.key();
            if entry.hash() != order_hash(key) {
                return Err(format!("order hash of {key:?} is wrong"));
            }
            if entry.value().is_empty_collection() {
                return Err(format!("key {key:?} holds an empty collection"));
            }
            used += accounted(entry);
            if let Some(at) = entry.expire_at_ms() {
                with_expiry += 1;
                if !self.expiry.contains(&(at, key.into())) {
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
        self.entries.check_invariants()?;
        self.tombstones.check_invariants()
    }
}

#[cfg(test)]
#[path = "keyspace_model_tests.rs"]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn string(text: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn insert_expire_purge() {
        let mut keyspace = Keyspace::default();
        keyspace.insert(b"a", string("1"), Some(100));
        keyspace.insert(b"b", string("2"), None);
        keyspace.insert(b"c", string("3"), Some(50));
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
        keyspace.insert(b"a", string("1"), Some(100));
        keyspace.insert(b"a", string("2"), Some(200));
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
            keyspace.insert(format!("k{index}").as_bytes(), string("v"), None);
        }
        let hashes: Vec<u64> = keyspace.iter_from(0).map(|(hash, _, _)| hash).collect();
        assert_eq!(hashes.len(), 100);
        assert!(hashes.windows(2).all(|pair| pair[0] <= pair[1]));
        let middle = hashes[50];
        assert_eq!(keyspace.iter_from(middle).count(), 50);
    }
}
