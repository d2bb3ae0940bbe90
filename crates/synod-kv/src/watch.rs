//! WATCH: when a key last changed, and the check `EXEC` makes at apply time.
//!
//! `WATCH k` reads (linearizably, through the normal read path) what the
//! replicated state says about `k` now, a [`WatchedKey`]; the connection keeps
//! it; `EXEC` sends the queued commands and those tokens as **one** log
//! command, and every replica, when it applies it, answers nil and runs
//! nothing if any watched key changed since its token was read. The check and
//! the transaction are one step of the log, so nothing can come in between.
//!
//! # The stamps
//!
//! Each apply gets a [`Stamp`]: `(instance + 1, sequence within the
//! instance)`, strictly increasing along the log and the same on every
//! replica (a pure function of the log position: the runtime applies the
//! commands of an instance in order and skips the same duplicates
//! everywhere). Every change of a key (a new value, a changed value, a new
//! expiry) writes the current stamp into its entry; `crate::keyspace` does
//! it in the few functions that change entries, so no command can forget.
//! `Keyspace::stamp_now` is the stamp of the last apply:
//! every change visible at a read has a stamp `<=` it, every later change a
//! stamp `>` it. (A read through the log is answered between two commands of
//! an instance; that is why the sequence is part of the stamp.)
//!
//! # Exactness: what "changed since WATCH" means, and why the check finds it
//!
//! Redis 7.0 aborts `EXEC` when a watched key was written (even with the same
//! value), deleted, or expired since `WATCH`; it does not when a key that was
//! already logically expired at `WATCH` time is then deleted. A watched key
//! is one of two things at WATCH time `C` (the read's `stamp_now`):
//! - **live** with stamp `S`: it changed iff at EXEC it is not live (deleted,
//!   expired, flushed) or its stamp is not `S` (every write gives a new,
//!   larger stamp, so a delete and re-create, or a write of the same value,
//!   shows too);
//! - **absent** (missing, or stored but expired): it changed iff at EXEC it
//!   is live (a dead entry never becomes live again: the log clock only
//!   moves forward, so it was written after `C`), or it was written after
//!   `C` and is gone again. For the last case the keyspace keeps, for each
//!   removed entry, the stamp of its last write (a *tombstone*): the key was
//!   written after `C` iff that stamp is `> C`. An entry that was already
//!   dead at `C` has a stamp `<= C`, so deleting it later does not count, as
//!   in Redis.
//!
//! # Bounded memory
//!
//! Live keys pay for their stamp inside their entry (two LEB128 numbers).
//! Tombstones are bounded ([`TOMBSTONES_MAX`], [`TOMBSTONE_KEY_BYTES_MAX`]):
//! past the bound the oldest (lowest stamp) goes, and `floor` rises to its
//! stamp. The check then treats any absent key watched before `floor` as
//! changed: it may abort a transaction that Redis would run (after more than
//! [`TOMBSTONES_MAX`] deletions during one WATCH), never run one that Redis
//! would abort. FLUSHALL of more than [`FLUSH_TOMBSTONES_MAX`] keys raises
//! the floor to `stamp_now` instead of writing a tombstone per key, so it
//! stays O(1). Tombstones are replicated state: written in snapshots and
//! evicted by the same rule on every replica.

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use synod_resp::Reply;

/// Most tombstones kept (see the module docs).
pub const TOMBSTONES_MAX: usize = 65_536;
/// Most key bytes the tombstones hold together.
pub const TOMBSTONE_KEY_BYTES_MAX: usize = 8 << 20;
/// FLUSHALL of at most this many keys leaves a tombstone per key; of more,
/// raises the floor (O(1)).
pub const FLUSH_TOMBSTONES_MAX: usize = 1024;

/// A point of the log: `(instance + 1, sequence of the apply within the
/// instance)`. `Stamp::default()` is "before any apply" (and what entries
/// restored from a snapshot older than stamps carry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The instance plus one (0: before the log).
    pub instance: u64,
    /// The apply's position within its instance.
    pub sequence: u64,
}

impl Stamp {
    /// The stamp of the apply after `self`, at `instance`: the first of that
    /// instance, or the next of the same one. Always larger than `self`, even
    /// if `instance` is not (tests apply at arbitrary instances; the runtime
    /// applies in instance order).
    pub(crate) fn next(self, instance: u64) -> Stamp {
        let instance = instance.saturating_add(1);
        if instance > self.instance {
            Stamp {
                instance,
                sequence: 0,
            }
        } else {
            Stamp {
                instance: self.instance,
                sequence: self.sequence.saturating_add(1),
            }
        }
    }
}

/// What `WATCH` read about one key: whether it was live, and its stamp if so
/// (else the read's `stamp_now`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedKey {
    /// The watched key.
    pub key: Bytes,
    /// Whether the key was live when it was read.
    pub live: bool,
    /// Its stamp when live; the read's point of the log when not.
    pub stamp: Stamp,
}

impl WatchedKey {
    /// What a WATCH read of `keys` says (the store's reply to a
    /// [`crate::KvCommand::Watch`]: one `[live, stamp instance, stamp
    /// sequence]` per key), or the reply to give the client instead (the
    /// store's error, or an internal error for a reply of another shape).
    pub fn read_all(keys: &[Bytes], reply: Reply) -> Result<Vec<WatchedKey>, Reply> {
        let bad = || Reply::error("ERR internal error: bad WATCH reply");
        let tokens = match reply {
            Reply::Array(tokens) if tokens.len() == keys.len() => tokens,
            error @ Reply::Error(_) => return Err(error),
            _ => return Err(bad()),
        };
        keys.iter()
            .zip(tokens)
            .map(|(key, token)| match token {
                Reply::Array(fields) => match fields.as_slice() {
                    [Reply::Integer(live), Reply::Integer(instance), Reply::Integer(sequence)] => {
                        Ok(WatchedKey {
                            key: key.clone(),
                            live: *live != 0,
                            // The store sent all 64 bits with `as`.
                            stamp: Stamp {
                                instance: *instance as u64,
                                sequence: *sequence as u64,
                            },
                        })
                    }
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect()
    }
}

/// The stamps of removed entries (see the module docs), bounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tombstones {
    by_key: OrdMap<Bytes, Stamp>,
    by_stamp: OrdSet<(Stamp, Bytes)>,
    key_bytes: usize,
    /// Every evicted tombstone had a stamp `<=` this.
    floor: Stamp,
}

impl Tombstones {
    /// Records that `key`, last written at `stamp`, was removed.
    pub(crate) fn record(&mut self, key: &[u8], stamp: Stamp) {
        // Useless when the floor already answers "changed" for every WATCH
        // this one would (those from before `stamp` are before `floor`).
        if stamp <= self.floor {
            return;
        }
        let key = Bytes::copy_from_slice(key);
        if let Some(previous) = self.by_key.insert(key.clone(), stamp) {
            let removed = self.by_stamp.remove(&(previous, key.clone()));
            debug_assert!(removed.is_some(), "tombstone indexes disagree");
            self.key_bytes -= key.len();
        }
        self.key_bytes += key.len();
        self.by_stamp.insert((stamp, key));
        // Past a bound the oldest goes and the floor rises to its stamp;
        // then every other tombstone at or below the floor (one command can
        // remove many keys written at one stamp) says nothing more than the
        // floor does, and goes too.
        loop {
            let over =
                self.by_key.len() > TOMBSTONES_MAX || self.key_bytes > TOMBSTONE_KEY_BYTES_MAX;
            let redundant = self
                .by_stamp
                .get_min()
                .is_some_and(|(oldest, _)| *oldest <= self.floor);
            if !over && !redundant {
                break;
            }
            let Some((oldest, key)) = self.by_stamp.remove_min() else {
                break;
            };
            self.by_key.remove(&key);
            self.key_bytes -= key.len();
            self.floor = self.floor.max(oldest);
        }
    }

    /// Forgets every tombstone, treating everything up to `stamp` as
    /// possibly changed.
    pub(crate) fn raise_floor(&mut self, stamp: Stamp) {
        self.floor = self.floor.max(stamp);
        self.by_key = OrdMap::new();
        self.by_stamp = OrdSet::new();
        self.key_bytes = 0;
    }

    /// Whether `key`, absent when read at `watched_at`, may have been
    /// written (and removed again) since.
    pub(crate) fn written_since(&self, key: &[u8], watched_at: Stamp) -> bool {
        self.floor > watched_at
            || self
                .by_key
                .get(key)
                .is_some_and(|stamp| *stamp > watched_at)
    }

    pub(crate) fn floor(&self) -> Stamp {
        self.floor
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// `(key, stamp)` in key order (snapshots).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, Stamp)> + '_ {
        self.by_key.iter().map(|(key, stamp)| (key, *stamp))
    }

    /// Rebuilds from a snapshot's fields; `None` when they break the bounds
    /// or a stamp is not above the floor.
    pub(crate) fn from_parts(floor: Stamp, entries: Vec<(Bytes, Stamp)>) -> Option<Tombstones> {
        let mut tombstones = Tombstones {
            floor,
            ..Tombstones::default()
        };
        for (key, stamp) in entries {
            if stamp <= floor || tombstones.by_key.contains_key(&key) {
                return None;
            }
            tombstones.key_bytes += key.len();
            tombstones.by_stamp.insert((stamp, key.clone()));
            tombstones.by_key.insert(key, stamp);
        }
        (tombstones.by_key.len() <= TOMBSTONES_MAX
            && tombstones.key_bytes <= TOMBSTONE_KEY_BYTES_MAX)
            .then_some(tombstones)
    }

    /// Checks the two indexes and the byte count agree.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.by_key.len() != self.by_stamp.len() {
            return Err("tombstone indexes differ in length".into());
        }
        let mut bytes = 0;
        for (key, stamp) in self.by_key.iter() {
            bytes += key.len();
            if !self.by_stamp.contains(&(*stamp, key.clone())) {
                return Err(format!("tombstone of {key:?} missing from the stamp index"));
            }
            if *stamp <= self.floor {
                return Err(format!("tombstone of {key:?} is not above the floor"));
            }
        }
        if bytes != self.key_bytes || self.by_key.len() > TOMBSTONES_MAX {
            return Err("tombstone bounds broken".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(instance: u64, sequence: u64) -> Stamp {
        Stamp { instance, sequence }
    }

    #[test]
    fn stamps_only_grow() {
        let first = Stamp::default().next(0);
        assert_eq!(first, stamp(1, 0));
        assert_eq!(first.next(0), stamp(1, 1));
        assert_eq!(first.next(4), stamp(5, 0));
        // An instance from the past (only tests do that) still moves on.
        assert_eq!(stamp(5, 0).next(1), stamp(5, 1));
        assert_eq!(stamp(5, 0).next(u64::MAX), stamp(u64::MAX, 0));
    }

    #[test]
    fn eviction_raises_the_floor_to_the_oldest() {
        let mut tombstones = Tombstones::default();
        for index in 0..(TOMBSTONES_MAX as u64 + 2) {
            tombstones.record(format!("k{index}").as_bytes(), stamp(index + 1, 0));
        }
        tombstones.check_invariants().unwrap();
        assert_eq!(tombstones.len(), TOMBSTONES_MAX);
        assert_eq!(tombstones.floor(), stamp(2, 0));
        // Many keys removed with one stamp go together at eviction.
        let mut same = Tombstones::default();
        for index in 0..(TOMBSTONES_MAX + 1) {
            same.record(format!("k{index}").as_bytes(), stamp(5, 0));
        }
        same.check_invariants().unwrap();
        assert_eq!(same.len(), 0);
        assert_eq!(same.floor(), stamp(5, 0));
        assert!(tombstones.written_since(b"never", stamp(1, 0)));
        assert!(!tombstones.written_since(b"never", stamp(2, 0)));
        assert!(tombstones.written_since(b"k100", stamp(2, 0)));
        assert!(!tombstones.written_since(b"k100", stamp(101, 0)));
        // Below the floor: nothing to record.
        tombstones.record(b"old", stamp(1, 5));
        assert_eq!(tombstones.len(), TOMBSTONES_MAX);
    }

    #[test]
    fn a_key_removed_again_keeps_one_tombstone() {
        let mut tombstones = Tombstones::default();
        tombstones.record(b"k", stamp(3, 0));
        tombstones.record(b"k", stamp(7, 1));
        tombstones.check_invariants().unwrap();
        assert_eq!(tombstones.len(), 1);
        assert!(tombstones.written_since(b"k", stamp(7, 0)));
        assert!(!tombstones.written_since(b"k", stamp(7, 1)));
    }

    #[test]
    fn a_huge_key_is_evicted_at_once() {
        let mut tombstones = Tombstones::default();
        tombstones.record(&vec![b'x'; TOMBSTONE_KEY_BYTES_MAX + 1], stamp(9, 0));
        tombstones.check_invariants().unwrap();
        assert_eq!(tombstones.len(), 0);
        assert_eq!(tombstones.floor(), stamp(9, 0));
    }
}
