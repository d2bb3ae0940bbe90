//! The snapshot format: every key with its type, value and expiry.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "SYNODKV\0" | version u8 | key count u64 | entry* | xxh3_64 u64
//! entry:  key (u32 len + bytes) | has expiry u8 | expire_at_ms u64 if so
//!         | type u8 | value
//! value:  string: u32 len + bytes
//!         hash:   u32 count + (field, value)* in ascending field order
//!         list:   u32 count + item*, head first
//!         set:    intset u8 (0 or 1: the encoding Redis would report)
//!                 | u32 count + member* in ascending byte order
//!         zset:   u32 count + (member, score f64)* in ascending member order
//! version 2 only, after the last entry: maxmemory u64
//! ```
//! A keyspace with no `maxmemory` limit is written as version 1, byte for
//! byte what earlier builds wrote; one with a limit as version 2, which adds
//! the replicated limit after the entries. Both are read.
//!
//! Entries are written in the keyspace's (hash, key) order, so equal states
//! give byte-identical snapshots. The trailing checksum covers everything
//! before it; restore verifies it first and rejects anything malformed
//! without touching the current state.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::command::ListEnd;
use crate::keyspace::{Entry, Keyspace, KeyspaceView, Lookup, Value, ValueRef};
use crate::value::{HashFields, ListItems, SetMembers};
use crate::wire::{DecodeError, Reader, Writer};
use crate::zset::ZSetMembers;

const MAGIC: &[u8; 8] = b"SYNODKV\0";
/// The newest snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;
/// The version written when no `maxmemory` limit is set (and still read).
const VERSION_WITHOUT_SETTINGS: u8 = 1;
const CHECKSUM_LEN: usize = 8;

mod kind {
    pub const STRING: u8 = 0;
    pub const HASH: u8 = 1;
    pub const LIST: u8 = 2;
    pub const SET: u8 = 3;
    pub const ZSET: u8 = 4;
}

/// Smallest encoded entry: empty key, no expiry, type, empty length.
const ENTRY_LEN_MIN: usize = 4 + 1 + 1 + 4;

/// Encodes a view of the keyspace. Runs off the event loop: O(keys).
pub(crate) fn write(keyspace: &KeyspaceView) -> Bytes {
    let maxmemory_bytes = keyspace.maxmemory_bytes();
    let version = if maxmemory_bytes == 0 {
        VERSION_WITHOUT_SETTINGS
    } else {
        SNAPSHOT_FORMAT_VERSION
    };
    let mut writer = Writer::new();
    writer.raw(MAGIC);
    writer.u8(version);
    writer.u64(keyspace.len() as u64);
    let mut written = 0usize;
    for (_, key, entry) in keyspace.iter_from(0) {
        written += 1;
        writer.bytes(key);
        match entry.expire_at_ms() {
            None => writer.u8(0),
            Some(at) => {
                writer.u8(1);
                writer.u64(at);
            }
        }
        match entry.value() {
            ValueRef::Str(value) => {
                writer.u8(kind::STRING);
                writer.bytes(&value);
            }
            ValueRef::Hash(fields) => {
                writer.u8(kind::HASH);
                writer.len(fields.len());
                for (field, value) in fields.iter() {
                    writer.bytes(field);
                    writer.bytes(value);
                }
            }
            ValueRef::List(items) => {
                writer.u8(kind::LIST);
                writer.len(items.len());
                for item in items.iter() {
                    writer.bytes(item);
                }
            }
            ValueRef::Set(members) => {
                writer.u8(kind::SET);
                writer.bool(members.is_intset());
                writer.len(members.len());
                for member in members.iter() {
                    writer.bytes(member);
                }
            }
            ValueRef::ZSet(members) => {
                writer.u8(kind::ZSET);
                writer.len(members.len());
                for (member, score) in members.iter_members_from(b"") {
                    writer.bytes(member);
                    writer.f64(score);
                }
            }
        }
    }
    debug_assert_eq!(written, keyspace.len());
    if version == SNAPSHOT_FORMAT_VERSION {
        writer.u64(maxmemory_bytes);
    }
    let checksum = xxh3_64(writer.as_slice());
    writer.u64(checksum);
    writer.finish()
}

pub(crate) fn read(snapshot: &[u8]) -> Result<Keyspace, DecodeError> {
    let header_len = MAGIC.len() + 1;
    if snapshot.len() < header_len + 8 + CHECKSUM_LEN {
        return Err(DecodeError::Truncated);
    }
    if &snapshot[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Invalid("not a synod-kv snapshot (bad magic)"));
    }
    let version = snapshot[MAGIC.len()];
    if version != SNAPSHOT_FORMAT_VERSION && version != VERSION_WITHOUT_SETTINGS {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (contents, checksum) = snapshot.split_at(snapshot.len() - CHECKSUM_LEN);
    let mut checksum_reader = Reader::new(checksum);
    if checksum_reader.u64()? != xxh3_64(contents) {
        return Err(DecodeError::Checksum);
    }
    let mut reader = Reader::new(&contents[header_len..]);
    let count = reader.u64()?;
    if count > (reader.remaining() / ENTRY_LEN_MIN) as u64 {
        return Err(DecodeError::Truncated);
    }
    // `count` is bounded by the input's length just above.
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = reader.slice()?;
        let expire_at_ms = if reader.bool()? {
            Some(reader.u64()?)
        } else {
            None
        };
        let value = read_value(&mut reader)?;
        entries.push(Entry::new(key, value, expire_at_ms));
    }
    let maxmemory_bytes = if version == SNAPSHOT_FORMAT_VERSION {
        reader.u64()?
    } else {
        0
    };
    reader.finish()?;
    Keyspace::from_entries(entries, maxmemory_bytes).ok_or(DecodeError::Invalid("duplicate key"))
}

fn read_value(reader: &mut Reader<'_>) -> Result<Value, DecodeError> {
    match reader.u8()? {
        kind::STRING => Ok(Value::Str(reader.bytes()?)),
        kind::HASH => {
            let len = reader.len(8)?;
            if len == 0 {
                return Err(DecodeError::Invalid("empty hash"));
            }
            let mut fields = HashFields::default();
            let mut previous: Option<Bytes> = None;
            for _ in 0..len {
                let field = reader.bytes()?;
                let value = reader.bytes()?;
                if previous.as_ref().is_some_and(|previous| *previous >= field) {
                    return Err(DecodeError::Invalid("hash fields out of order"));
                }
                previous = Some(field.clone());
                fields.insert(field, value);
            }
            Ok(Value::Hash(Arc::new(fields)))
        }
        kind::LIST => {
            let len = reader.len(4)?;
            if len == 0 {
                return Err(DecodeError::Invalid("empty list"));
            }
            let mut items = ListItems::with_capacity(len);
            for _ in 0..len {
                items.push(ListEnd::Right, reader.bytes()?);
            }
            Ok(Value::List(Arc::new(items)))
        }
        kind::SET => {
            let intset = reader.bool()?;
            let len = reader.len(4)?;
            if len == 0 {
                return Err(DecodeError::Invalid("empty set"));
            }
            let mut members = BTreeSet::new();
            let mut previous: Option<Bytes> = None;
            for _ in 0..len {
                let member = reader.bytes()?;
                if previous
                    .as_ref()
                    .is_some_and(|previous| *previous >= member)
                {
                    return Err(DecodeError::Invalid("set members out of order"));
                }
                previous = Some(member.clone());
                members.insert(member);
            }
            let members = SetMembers::restored(members, intset)
                .ok_or(DecodeError::Invalid("intset set with non-integer members"))?;
            Ok(Value::Set(Arc::new(members)))
        }
        kind::ZSET => {
            let len = reader.len(12)?;
            if len == 0 {
                return Err(DecodeError::Invalid("empty sorted set"));
            }
            let mut members = ZSetMembers::default();
            let mut previous: Option<Bytes> = None;
            for _ in 0..len {
                let member = reader.bytes()?;
                let score = reader.f64()?;
                if score.is_nan() {
                    return Err(DecodeError::Invalid("NaN score"));
                }
                if previous
                    .as_ref()
                    .is_some_and(|previous| *previous >= member)
                {
                    return Err(DecodeError::Invalid("sorted set members out of order"));
                }
                previous = Some(member.clone());
                members.insert(member, score);
            }
            Ok(Value::ZSet(Arc::new(members)))
        }
        tag => Err(DecodeError::UnknownTag {
            what: "value type",
            tag,
        }),
    }
}
