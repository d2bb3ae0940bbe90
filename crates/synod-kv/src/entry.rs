//! One stored key, as the keyspace's trie holds it: its order hash, name,
//! value and expiry, in as few bytes and heap allocations as we can.
//!
//! A key is what most of a node's memory is spent on (a million small
//! strings are most datasets), so the common case gets a layout of its own:
//!
//! - **Inline**: a string of at most [`INLINE_VALUE_BYTES_MAX`] bytes lives
//!   with its key in **one** reference-counted allocation (a
//!   [`ThinBytes`]: an 8-byte count-and-length header, then)
//!   `flags u8 | expire_at_ms u64 LE (only if flags says so) |
//!   stamp instance (LEB128) | stamp sequence (LEB128) |
//!   key length (LEB128) | key | value`. No `Bytes` header per key or value,
//!   and no expiry field for the keys without one.
//! - **Boxed**: a larger string (kept as the `Bytes` the command brought, so
//!   a `GET` shares it instead of copying it) or a collection.
//!
//! Either way an [`Entry`] is 16 bytes in a trie node (the hash, to compare
//! without touching the heap, and one pointer whose low bit says which kind
//! it is, see [`ThinOrArc`]), and cloning it (which a
//! keyspace view does for a whole node when the node is written under the
//! view) bumps one reference count and copies nothing. The representation
//! is a cache-friendly detail: which one a key has never changes what any
//! command answers, its accounted size, or a snapshot's bytes.
//!
//! Every entry also carries its [`Stamp`]: the point of the log that last
//! changed it (see [`crate::watch`]; WATCH compares it).

use std::sync::Arc;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::thin_bytes::{ThinBytes, ThinOrArc, ThinOrArcMut, ThinOrArcRef};
use crate::trie::TrieItem;
use crate::value::{HashFields, ListItems, SetMembers, Value};
use crate::watch::Stamp;
use crate::zset::ZSetMembers;

/// Largest string value stored inline with its key. Larger ones keep their
/// own buffer, so that a `GET` hands it out without a copy (an inline value
/// is copied into the reply, which for this size costs less than the reply's
/// other work).
pub(crate) const INLINE_VALUE_BYTES_MAX: usize = 1024;

/// `flags` bit: an expiry follows.
const HAS_EXPIRY: u8 = 1;
/// Longest LEB128 encoding of a `usize` key length.
const LENGTH_BYTES_MAX: usize = 10;
/// Longest inline header: flags, expiry, stamp (two numbers), key length.
const HEADER_BYTES_MAX: usize = 1 + 8 + 3 * LENGTH_BYTES_MAX;

/// The position of a key in iteration order.
pub(crate) fn order_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A stored key. The keyspace orders and finds entries by
/// `(order hash, key bytes)`, its one iteration order (see
/// [`crate::keyspace`]).
#[derive(Clone)]
pub(crate) struct Entry {
    hash: u64,
    body: Body,
}

/// An inline record (see the module docs for its layout; always well
/// formed: we wrote it) or a boxed value, in one tagged word.
type Body = ThinOrArc<Boxed>;

#[derive(Clone)]
struct Boxed {
    key: Box<[u8]>,
    expire_at_ms: Option<u64>,
    stamp: Stamp,
    value: Value,
}

/// A borrowed view of a key's value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueRef<'a> {
    Str(StrRef<'a>),
    Hash(&'a HashFields),
    List(&'a ListItems),
    Set(&'a SetMembers),
    ZSet(&'a ZSetMembers),
}

/// A borrowed string value: inline bytes, or a shared buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StrRef<'a> {
    Inline(&'a [u8]),
    Shared(&'a Bytes),
}

impl StrRef<'_> {
    /// The value as `Bytes` for a reply: a copy of an inline value, a
    /// shared handle on a larger one.
    pub(crate) fn to_bytes(self) -> Bytes {
        match self {
            StrRef::Inline(bytes) => Bytes::copy_from_slice(bytes),
            StrRef::Shared(bytes) => bytes.clone(),
        }
    }
}

impl std::ops::Deref for StrRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StrRef::Inline(bytes) => bytes,
            StrRef::Shared(bytes) => bytes,
        }
    }
}

impl<'a> ValueRef<'a> {
    /// The name `TYPE` reports.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::List(_) => "list",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
        }
    }

    /// The value's accounted bytes (see [`crate::value`]); O(1).
    pub(crate) fn bytes(self) -> u64 {
        match self {
            ValueRef::Str(value) => value.len() as u64,
            ValueRef::Hash(fields) => fields.bytes(),
            ValueRef::List(items) => items.bytes(),
            ValueRef::Set(members) => members.bytes(),
            ValueRef::ZSet(members) => members.bytes(),
        }
    }

    pub(crate) fn is_empty_collection(self) -> bool {
        match self {
            ValueRef::Str(_) => false,
            ValueRef::Hash(fields) => fields.is_empty(),
            ValueRef::List(items) => items.is_empty(),
            ValueRef::Set(members) => members.is_empty(),
            ValueRef::ZSet(members) => members.is_empty(),
        }
    }
}

pub(crate) fn value_ref(value: &Value) -> ValueRef<'_> {
    match value {
        Value::Str(bytes) => ValueRef::Str(StrRef::Shared(bytes)),
        Value::Hash(fields) => ValueRef::Hash(fields),
        Value::List(items) => ValueRef::List(items),
        Value::Set(members) => ValueRef::Set(members),
        Value::ZSet(members) => ValueRef::ZSet(members),
    }
}

/// Appends `len` as LEB128; returns the bytes written.
fn write_length(mut len: u64, out: &mut [u8; LENGTH_BYTES_MAX]) -> usize {
    let mut written = 0;
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out[written] = low;
            return written + 1;
        }
        out[written] = low | 0x80;
        written += 1;
    }
}

/// Reads a LEB128 number from the front of `rest`.
fn read_length(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let (&byte, after) = rest.split_first()?;
        *rest = after;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

/// The parts of an inline record.
struct InlineParts<'a> {
    expire_at_ms: Option<u64>,
    stamp: Stamp,
    key: &'a [u8],
    value: &'a [u8],
}

/// The parts of an inline record. The record was built by
/// [`inline_record`], so it is well formed; a malformed one (a bug) reads
/// as an empty key and value rather than panicking in release.
fn inline_parts(record: &[u8]) -> InlineParts<'_> {
    let parsed = (|| {
        let (&flags, mut rest) = record.split_first()?;
        let mut expire_at_ms = None;
        if flags & HAS_EXPIRY != 0 {
            let (at, after) = rest.split_first_chunk::<8>()?;
            expire_at_ms = Some(u64::from_le_bytes(*at));
            rest = after;
        }
        let instance = read_length(&mut rest)?;
        let sequence = read_length(&mut rest)?;
        let key_len = usize::try_from(read_length(&mut rest)?).ok()?;
        let (key, value) = rest.split_at_checked(key_len)?;
        Some(InlineParts {
            expire_at_ms,
            stamp: Stamp { instance, sequence },
            key,
            value,
        })
    })();
    debug_assert!(parsed.is_some(), "malformed inline entry");
    parsed.unwrap_or(InlineParts {
        expire_at_ms: None,
        stamp: Stamp::default(),
        key: &[],
        value: &[],
    })
}

impl Entry {
    /// A stored key holding `value`, expiring at `expire_at_ms`, with the
    /// zero stamp (for tests).
    #[cfg(test)]
    pub(crate) fn new(key: &[u8], value: Value, expire_at_ms: Option<u64>) -> Entry {
        Entry::stamped(key, value, expire_at_ms, Stamp::default())
    }

    /// As [`Entry::stamped`] for a string value the caller keeps: a short
    /// one is copied into the inline record straight from `value`, and only
    /// a long one (kept as it is) is cloned. A clone of a `Bytes` decoded
    /// from a command is not free: its first clone allocates a shared header.
    pub(crate) fn stamped_string(
        key: &[u8],
        value: &Bytes,
        expire_at_ms: Option<u64>,
        stamp: Stamp,
    ) -> Entry {
        if value.len() <= INLINE_VALUE_BYTES_MAX {
            if let Some(record) = inline_record(key, value, expire_at_ms, stamp) {
                return Entry {
                    hash: order_hash(key),
                    body: Body::thin(record),
                };
            }
            // A record past `u32::MAX` bytes (a key that long): the short
            // value is copied, never kept as it is, because it may be a
            // slice of a whole log value (`KvCommand::decode_shared`).
            let value = Bytes::copy_from_slice(value);
            return Entry::stamped(key, Value::Str(value), expire_at_ms, stamp);
        }
        Entry::stamped(key, Value::Str(value.clone()), expire_at_ms, stamp)
    }

    /// A stored key holding `value`, expiring at `expire_at_ms`, last
    /// changed at `stamp`.
    pub(crate) fn stamped(
        key: &[u8],
        value: Value,
        expire_at_ms: Option<u64>,
        stamp: Stamp,
    ) -> Entry {
        Entry::with_hash(order_hash(key), key, value, expire_at_ms, stamp)
    }

    fn with_hash(
        hash: u64,
        key: &[u8],
        value: Value,
        expire_at_ms: Option<u64>,
        stamp: Stamp,
    ) -> Entry {
        debug_assert_eq!(hash, order_hash(key));
        if let Value::Str(bytes) = &value {
            if bytes.len() <= INLINE_VALUE_BYTES_MAX {
                if let Some(record) = inline_record(key, bytes, expire_at_ms, stamp) {
                    let body = Body::thin(record);
                    return Entry { hash, body };
                }
            }
        }
        let body = Body::arc(Arc::new(Boxed {
            key: key.into(),
            expire_at_ms,
            stamp,
            value,
        }));
        Entry { hash, body }
    }

    /// Its position in iteration order.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn key(&self) -> &[u8] {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => inline_parts(record).key,
            ThinOrArcRef::Arc(boxed) => &boxed.key,
        }
    }

    pub(crate) fn value(&self) -> ValueRef<'_> {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => ValueRef::Str(StrRef::Inline(inline_parts(record).value)),
            ThinOrArcRef::Arc(boxed) => value_ref(&boxed.value),
        }
    }

    /// Unix time in ms at which the key stops existing.
    pub(crate) fn expire_at_ms(&self) -> Option<u64> {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => inline_parts(record).expire_at_ms,
            ThinOrArcRef::Arc(boxed) => boxed.expire_at_ms,
        }
    }

    /// The point of the log that last changed the key (see
    /// [`crate::watch`]).
    pub(crate) fn stamp(&self) -> Stamp {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => inline_parts(record).stamp,
            ThinOrArcRef::Arc(boxed) => boxed.stamp,
        }
    }

    /// The value as an owned [`Value`] (RENAME, COPY): a copy of an inline
    /// string, a shared handle on anything larger (a collection is then
    /// copied on its first change, see `Arc::make_mut`).
    pub(crate) fn value_owned(&self) -> Value {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => {
                Value::Str(Bytes::copy_from_slice(inline_parts(record).value))
            }
            ThinOrArcRef::Arc(boxed) => boxed.value.clone(),
        }
    }

    /// Whether the key still exists at `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expire_at_ms().is_none_or(|at| at > now_ms)
    }

    /// Whether the value lives inline with the key (see the module docs).
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self.body.get(), ThinOrArcRef::Thin(_))
    }

    /// The same key and value with another expiry, changed at `stamp`.
    pub(crate) fn with_expiry(&self, expire_at_ms: Option<u64>, stamp: Stamp) -> Entry {
        match self.body.get() {
            ThinOrArcRef::Thin(record) => {
                let parts = inline_parts(record);
                match inline_record(parts.key, parts.value, expire_at_ms, stamp) {
                    Some(record) => Entry {
                        hash: self.hash,
                        body: Body::thin(record),
                    },
                    // Only a record past 4 GiB (the expiry made it longer).
                    None => {
                        let value = Value::Str(Bytes::copy_from_slice(parts.value));
                        Entry::with_hash(self.hash, parts.key, value, expire_at_ms, stamp)
                    }
                }
            }
            ThinOrArcRef::Arc(boxed) => Entry {
                hash: self.hash,
                body: Body::arc(Arc::new(Boxed {
                    key: boxed.key.clone(),
                    expire_at_ms,
                    stamp,
                    value: boxed.value.clone(),
                })),
            },
        }
    }

    /// Changes the value with `change`, in place when nothing else (a view)
    /// shares it, and stamps the entry with `stamp`. The value `change` sees
    /// is the stored one; a collection in it is copied by the caller's
    /// `Arc::make_mut` only when shared.
    pub(crate) fn change_value<R>(
        &mut self,
        stamp: Stamp,
        change: impl FnOnce(&mut Value) -> R,
    ) -> R {
        match self.body.get_mut() {
            ThinOrArcMut::Arc(boxed) => {
                boxed.stamp = stamp;
                change(&mut boxed.value)
            }
            ThinOrArcMut::Thin(record) => {
                let parts = inline_parts(record);
                let mut value = Value::Str(Bytes::copy_from_slice(parts.value));
                let result = change(&mut value);
                *self = Entry::with_hash(self.hash, parts.key, value, parts.expire_at_ms, stamp);
                result
            }
        }
    }
}

/// Builds an inline record in one allocation, or `None` if it would be
/// longer than a [`ThinBytes`] holds (4 GiB: only a key that long, which
/// the caller then boxes).
fn inline_record(
    key: &[u8],
    value: &[u8],
    expire_at_ms: Option<u64>,
    stamp: Stamp,
) -> Option<ThinBytes> {
    let mut header = [0u8; HEADER_BYTES_MAX];
    let mut header_len = 1;
    if let Some(at) = expire_at_ms {
        header[0] = HAS_EXPIRY;
        header[1..9].copy_from_slice(&at.to_le_bytes());
        header_len += 8;
    }
    for number in [stamp.instance, stamp.sequence, key.len() as u64] {
        let mut length = [0u8; LENGTH_BYTES_MAX];
        let length_len = write_length(number, &mut length);
        header[header_len..header_len + length_len].copy_from_slice(&length[..length_len]);
        header_len += length_len;
    }
    ThinBytes::concat(&[&header[..header_len], key, value])
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &Bytes::copy_from_slice(self.key()))
            .field("value", &self.value())
            .field("expire_at_ms", &self.expire_at_ms())
            .field("stamp", &self.stamp())
            .finish()
    }
}

/// The keyspace's trie finds an entry by its order hash, then its key
/// (see [`crate::trie`]): the same `(hash, key)` order the keyspace
/// iterates in.
impl TrieItem for Entry {
    fn trie_hash(&self) -> u64 {
        self.hash
    }

    fn trie_key(&self) -> &[u8] {
        self.key()
    }

    fn prefetch(&self) {
        self.body.prefetch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_two_words() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn inline_parts_round_trip() {
        for key_len in [0usize, 1, 127, 128, 300, 20_000] {
            for value_len in [0usize, 1, INLINE_VALUE_BYTES_MAX] {
                for expiry in [None, Some(1), Some(u64::MAX)] {
                    let key = vec![b'k'; key_len];
                    let value = vec![b'v'; value_len];
                    let stamp = Stamp {
                        instance: key_len as u64 * 1_000_003,
                        sequence: u64::MAX - value_len as u64,
                    };
                    let value_bytes = Bytes::from(value.clone());
                    let entry = Entry::stamped(&key, Value::Str(value_bytes), expiry, stamp);
                    assert!(entry.is_inline());
                    assert_eq!(entry.key(), &key[..]);
                    assert_eq!(entry.expire_at_ms(), expiry);
                    assert_eq!(entry.stamp(), stamp);
                    match entry.value() {
                        ValueRef::Str(stored) => assert_eq!(&stored[..], &value[..]),
                        other => panic!("not a string: {other:?}"),
                    }
                }
            }
        }
    }

    /// A string stored from a borrowed value is the entry an owned one
    /// makes, on both sides of the inline limit.
    #[test]
    fn borrowed_strings_make_the_same_entries() {
        let stamp = Stamp {
            instance: 7,
            sequence: 3,
        };
        for len in [0, 1, INLINE_VALUE_BYTES_MAX, INLINE_VALUE_BYTES_MAX + 1] {
            for expiry in [None, Some(42)] {
                let value = Bytes::from(vec![b'v'; len]);
                let owned = Entry::stamped(b"key", Value::Str(value.clone()), expiry, stamp);
                let borrowed = Entry::stamped_string(b"key", &value, expiry, stamp);
                assert_eq!(borrowed.hash(), owned.hash());
                assert_eq!(borrowed.key(), owned.key());
                assert_eq!(borrowed.is_inline(), owned.is_inline());
                assert_eq!(borrowed.is_inline(), len <= INLINE_VALUE_BYTES_MAX);
                assert_eq!(borrowed.expire_at_ms(), owned.expire_at_ms());
                assert_eq!(borrowed.stamp(), owned.stamp());
                match (borrowed.value(), owned.value()) {
                    (ValueRef::Str(a), ValueRef::Str(b)) => assert_eq!(&a[..], &b[..]),
                    other => panic!("not strings: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn larger_strings_and_collections_are_boxed() {
        let big = Value::Str(Bytes::from(vec![0u8; INLINE_VALUE_BYTES_MAX + 1]));
        assert!(!Entry::new(b"k", big, None).is_inline());
        assert!(!Entry::new(b"k", Value::empty_hash(), Some(3)).is_inline());
    }
}
