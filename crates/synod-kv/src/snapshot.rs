//! The snapshot format: every key with its type, value and expiry.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "SYNODKV\0" | version u8 | key count u64 | entry* | xxh3_64 u64
//! entry:  key (u32 len + bytes) | has expiry u8 | expire_at_ms u64 if so
//!         | (version 3) stamp instance u64 | stamp sequence u64
//!         | type u8 | value
//! value:  string: u32 len + bytes
//!         hash:   u32 count + (field, value)* in ascending field order
//!         list:   u32 count + item*, head first
//!         set:    intset u8 (0 or 1: the encoding Redis would report)
//!                 | u32 count + member* in ascending byte order
//!         zset:   u32 count + (member, score f64)* in ascending member order
//! versions 2 and 3, after the last entry: maxmemory u64
//! version 3, then: stamp_now (instance u64, sequence u64)
//!         | tombstone floor (instance u64, sequence u64)
//!         | tombstone count u32 | (key (u32 len + bytes), instance u64,
//!           sequence u64)* in ascending key order
//! ```
//! Version 3 adds what WATCH needs (see [`crate::watch`]): each key's stamp,
//! the stamp of the last apply, and the tombstones. It is what this build
//! writes. Versions 1 (no `maxmemory` limit) and 2 (with one), written by
//! earlier builds, are still read: their keys get the zero stamp, as if
//! written before the log began (a WATCH of them still sees every later
//! change, which stamps them anew).
//!
//! Entries are written in the keyspace's (hash, key) order, so equal states
//! give byte-identical snapshots. The trailing checksum covers everything
//! before it; restore verifies it first and rejects anything malformed
//! without touching the current state.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::io::{self, Write};

use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::command::ListEnd;
use crate::keyspace::{Entry, Keyspace, KeyspaceView, Lookup, Value, ValueRef};
use crate::value::{HashFields, ListItems, SetMembers};
use crate::watch::{Stamp, Tombstones};
use crate::wire::{DecodeError, Reader, Writer};
use crate::zset::ZSetMembers;

const MAGIC: &[u8; 8] = b"SYNODKV\0";
/// The newest snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;
/// The version earlier builds wrote when no `maxmemory` limit was set
/// (still read).
const VERSION_WITHOUT_SETTINGS: u8 = 1;
/// The version earlier builds wrote with a `maxmemory` limit (still read).
const VERSION_WITHOUT_STAMPS: u8 = 2;
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
    let mut out = Vec::new();
    write_to(keyspace, &mut out).expect("a Vec takes every write");
    Bytes::from(out)
}

/// Bytes encoded before they are passed on to the writer (and hashed).
const SPILL_BYTES: usize = 256 << 10;

/// Encodes a view of the keyspace into `out` as [`write`] would, a piece at
/// a time: memory stays at one piece whatever the keyspace's size (the
/// snapshot streams into its file; `StateMachine::snapshot_stream`).
pub(crate) fn write_to(keyspace: &KeyspaceView, out: &mut dyn Write) -> io::Result<()> {
    let maxmemory_bytes = keyspace.maxmemory_bytes();
    let version = SNAPSHOT_FORMAT_VERSION;
    let mut hasher = Xxh3Default::new();
    let mut writer = Writer::new();
    let mut spill = |writer: &mut Writer| -> io::Result<()> {
        hasher.update(writer.as_slice());
        out.write_all(writer.as_slice())?;
        writer.clear();
        Ok(())
    };
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
        write_stamp(&mut writer, entry.stamp());
        write_value(&mut writer, entry.value());
        if writer.as_slice().len() >= SPILL_BYTES {
            spill(&mut writer)?;
        }
    }
    debug_assert_eq!(written, keyspace.len());
    writer.u64(maxmemory_bytes);
    write_stamp(&mut writer, keyspace.stamp_now());
    let tombstones = keyspace.tombstones();
    write_stamp(&mut writer, tombstones.floor());
    writer.len(tombstones.len());
    for (key, stamp) in tombstones.iter() {
        writer.bytes(key);
        write_stamp(&mut writer, stamp);
        if writer.as_slice().len() >= SPILL_BYTES {
            spill(&mut writer)?;
        }
    }
    spill(&mut writer)?;
    // The checksum covers everything before it, as `read` checks it.
    out.write_all(&hasher.digest().to_le_bytes())
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
    if !matches!(
        version,
        VERSION_WITHOUT_SETTINGS | VERSION_WITHOUT_STAMPS | SNAPSHOT_FORMAT_VERSION
    ) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let stamped = version >= SNAPSHOT_FORMAT_VERSION;
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
        let stamp = if stamped {
            read_stamp(&mut reader)?
        } else {
            Stamp::default()
        };
        let value = read_value(&mut reader)?;
        entries.push(Entry::stamped(key, value, expire_at_ms, stamp));
    }
    let maxmemory_bytes = if version == VERSION_WITHOUT_SETTINGS {
        0
    } else {
        reader.u64()?
    };
    let (stamp_now, tombstones) = if stamped {
        let stamp_now = read_stamp(&mut reader)?;
        let floor = read_stamp(&mut reader)?;
        // Key length and a stamp each.
        let count = reader.len(4 + 16)?;
        let mut tombstones = Vec::with_capacity(count);
        let mut previous: Option<Bytes> = None;
        for _ in 0..count {
            let key = reader.bytes()?;
            let stamp = read_stamp(&mut reader)?;
            if previous.as_ref().is_some_and(|previous| *previous >= key) || stamp > stamp_now {
                return Err(DecodeError::Invalid("tombstones out of order"));
            }
            previous = Some(key.clone());
            tombstones.push((key, stamp));
        }
        let tombstones = Tombstones::from_parts(floor, tombstones)
            .ok_or(DecodeError::Invalid("tombstones out of bounds"))?;
        (stamp_now, tombstones)
    } else {
        (Stamp::default(), Tombstones::default())
    };
    reader.finish()?;
    let mut keyspace = Keyspace::from_entries(entries, maxmemory_bytes)
        .ok_or(DecodeError::Invalid("duplicate key"))?;
    keyspace.restore_watch_state(stamp_now, tombstones);
    Ok(keyspace)
}

/// Writes a value as the snapshot stores it: its type byte, then the value
/// (see the module docs). [`crate::dump`] reuses it for `DUMP` payloads.
pub(crate) fn write_value(writer: &mut Writer, value: ValueRef<'_>) {
    match value {
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

fn write_stamp(writer: &mut Writer, stamp: Stamp) {
    writer.u64(stamp.instance);
    writer.u64(stamp.sequence);
}

fn read_stamp(reader: &mut Reader<'_>) -> Result<Stamp, DecodeError> {
    Ok(Stamp {
        instance: reader.u64()?,
        sequence: reader.u64()?,
    })
}

/// Reads what [`write_value`] wrote, checking every length against the
/// remaining input before allocating, and that collections are non-empty and
/// in order (so a decoded value is one a command could have built).
pub(crate) fn read_value(reader: &mut Reader<'_>) -> Result<Value, DecodeError> {
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
