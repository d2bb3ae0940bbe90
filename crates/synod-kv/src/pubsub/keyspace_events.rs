//! Keyspace notifications: Redis' `notify-keyspace-events` classes and the
//! `__keyspace@0__:<key>` / `__keyevent@0__:<event>` messages.
//!
//! The rules this file keeps:
//!
//! 1. **An event is a point of the log, as a PUBLISH is.** Events are
//!    emitted by the apply of the command that causes them (see
//!    `crate::ops::events`), on every node, and each node delivers them to
//!    its own subscribers, in log order. Nothing replicated depends on
//!    them: the apply's output and state are the same whether a node
//!    emits or not.
//! 2. **The setting is node-local**, as in Redis (per instance):
//!    `CONFIG SET notify-keyspace-events` on one node changes what that
//!    node's subscribers get, never another's. It is an atomic read once
//!    per apply; with it off (the default), the apply path pays one branch.
//! 3. **An event costs what a PUBLISH costs**: it goes through the
//!    registry's matching, and all the events and PUBLISHes of one apply
//!    share one pattern budget (an MSET of thousands of keys must not
//!    multiply it).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use bytes::{BufMut, Bytes, BytesMut};

use super::PubSub;

/// `K`: `__keyspace@0__:<key>` messages carrying the event name.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: `__keyevent@0__:<event>` messages carrying the key.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: a key removed because its time to live passed.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: a key evicted for `maxmemory` (synod never evicts: it refuses).
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands (synod has no streams).
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses (not emitted by synod: reads are not applied).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events (synod has no modules).
pub const MODULE: u32 = 1 << 13;
/// `n`: a key created.
pub const NEW: u32 = 1 << 14;
/// `A`: alias for `g$lshzxetd`, as in Redis (not `m` nor `n`).
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The class letters in Redis' order (for [`flags_to_string`]).
const CLASSES: &[(u32, char)] = &[
    (GENERIC, 'g'),
    (STRING, '$'),
    (LIST, 'l'),
    (SET, 's'),
    (HASH, 'h'),
    (ZSET, 'z'),
    (EXPIRED, 'x'),
    (EVICTED, 'e'),
    (STREAM, 't'),
    (MODULE, 'd'),
];

/// Parses a `notify-keyspace-events` value; `None` for an unknown letter.
pub fn flags_from_string(text: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for &letter in text {
        flags |= match letter {
            b'A' => ALL,
            b'g' => GENERIC,
            b'$' => STRING,
            b'l' => LIST,
            b's' => SET,
            b'h' => HASH,
            b'z' => ZSET,
            b'x' => EXPIRED,
            b'e' => EVICTED,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b't' => STREAM,
            b'm' => KEY_MISS,
            b'd' => MODULE,
            b'n' => NEW,
            _ => return None,
        };
    }
    Some(flags)
}

/// The value `CONFIG GET notify-keyspace-events` shows, as Redis writes it:
/// `A` when every class of [`ALL`] is on, else the class letters, then
/// `K`, `E`, `m` and `n`.
pub fn flags_to_string(flags: u32) -> String {
    let mut text = String::new();
    if flags & ALL == ALL {
        text.push('A');
    } else {
        for &(class, letter) in CLASSES {
            if flags & class != 0 {
                text.push(letter);
            }
        }
    }
    for (class, letter) in [
        (KEYSPACE, 'K'),
        (KEYEVENT, 'E'),
        (KEY_MISS, 'm'),
        (NEW, 'n'),
    ] {
        if flags & class != 0 {
            text.push(letter);
        }
    }
    text
}

/// A node's `notify-keyspace-events` setting (0: off, the default).
#[derive(Debug, Default)]
pub(super) struct EventFlags(AtomicU32);

impl EventFlags {
    pub(super) fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }

    pub(super) fn set(&self, flags: u32) {
        self.0.store(flags, Relaxed);
    }
}

/// The channel prefix of keyspace messages (one database: 0).
const KEYSPACE_PREFIX: &[u8] = b"__keyspace@0__:";
/// The channel prefix of keyevent messages.
const KEYEVENT_PREFIX: &[u8] = b"__keyevent@0__:";

fn channel(prefix: &[u8], name: &[u8]) -> Bytes {
    let mut channel = BytesMut::with_capacity(prefix.len() + name.len());
    channel.put_slice(prefix);
    channel.put_slice(name);
    channel.freeze()
}

impl PubSub {
    /// This node's `notify-keyspace-events` classes (see the constants).
    pub fn keyspace_events(&self) -> u32 {
        self.event_flags.get()
    }

    /// Sets this node's `notify-keyspace-events` classes, for the applies
    /// from now on. Not replicated: each node has its own, as each Redis
    /// instance does.
    pub fn set_keyspace_events(&self, flags: u32) {
        self.event_flags.set(flags);
    }

    /// Emits event `event` of class `class` on `key` to this node's
    /// subscribers, if `flags` (the setting read at the start of the apply)
    /// has the class and at least one of `K` and `E`. Called on the apply
    /// path, in log order.
    pub(crate) fn keyspace_event(&self, flags: u32, class: u32, event: &str, key: &[u8]) {
        if flags & class == 0 || flags & (KEYSPACE | KEYEVENT) == 0 {
            return;
        }
        let mut registry = self.registry_for_apply();
        if registry.is_empty() {
            return;
        }
        let event = Bytes::copy_from_slice(event.as_bytes());
        let key = Bytes::copy_from_slice(key);
        if flags & KEYSPACE != 0 {
            registry.publish(&channel(KEYSPACE_PREFIX, &key), &event, false);
        }
        if flags & KEYEVENT != 0 {
            registry.publish(&channel(KEYEVENT_PREFIX, &event), &key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_as_redis_writes_them() {
        let show = |text: &str| flags_to_string(flags_from_string(text.as_bytes()).unwrap());
        assert_eq!(show("gKE"), "gKE");
        assert_eq!(show("$lshzxeKE"), "$lshzxeKE");
        assert_eq!(show("KA"), "AK");
        assert_eq!(show("EA"), "AE");
        assert_eq!(show("g$lshzxetd"), "A");
        assert_eq!(show("En"), "En");
        assert_eq!(show(""), "");
        assert_eq!(flags_from_string(b"KEq"), None);
    }
}

#[cfg(test)]
#[path = "keyspace_events_tests.rs"]
mod apply_tests;
