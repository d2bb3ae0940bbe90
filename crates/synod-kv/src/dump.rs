//! `DUMP` and `RESTORE` payloads: Synod's own serialization of one value.
//!
//! Layout (integers little-endian):
//! ```text
//! magic "SK" | format version u8 (= 1) | value | crc32c u32
//! value:  type u8 | the value exactly as the snapshot stores it
//!         (see `crate::snapshot`: strings, hashes, lists, sets with their
//!         intset flag, sorted sets with their scores)
//! ```
//! The CRC-32C (Castagnoli) covers every byte before it.
//!
//! This is not Redis' RDB serialization: a payload from a real Redis (or
//! any other bytes) fails the magic, the version or the checksum, and
//! `RESTORE` answers Redis' own `ERR DUMP payload version or checksum are
//! wrong`. Payloads move between Synod clusters of any version that reads
//! format 1.
//!
//! Decoding never trusts the payload: the checksum is verified first, every
//! length is checked against the bytes that remain before anything is
//! allocated, the value holds no nested values (a collection holds only
//! byte strings, and scores), collections must be non-empty with their
//! members in order (so the value is one a command could have built), and
//! nothing may follow the value. `RESTORE` decodes the payload on the node
//! that receives it, before proposing it, and again when every replica
//! applies it (see `crate::ops::keys_more::restore`).

use bytes::Bytes;

use crate::entry::ValueRef;
use crate::ops::strings::STRING_LEN_MAX;
use crate::value::Value;
use crate::wire::{Reader, Writer};

/// The error `RESTORE` answers for a payload it cannot read (Redis' text).
pub(crate) const PAYLOAD_ERROR: &str = "ERR DUMP payload version or checksum are wrong";

const MAGIC: &[u8; 2] = b"SK";
/// The payload format this build writes and reads.
pub const DUMP_FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1;
const CHECKSUM_LEN: usize = 4;
/// Smallest payload: header, type byte, a u32 length, checksum.
const PAYLOAD_LEN_MIN: usize = HEADER_LEN + 1 + 4 + CHECKSUM_LEN;
/// Largest payload read: no value Synod stores (a string is at most
/// `STRING_LEN_MAX` bytes, and a request is far smaller) needs more.
const PAYLOAD_LEN_MAX: u64 = STRING_LEN_MAX + (1 << 20);

/// Why a payload was refused (for tests and logs; clients get
/// [`PAYLOAD_ERROR`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// Shorter than any payload, or longer than any value.
    Length,
    /// Not "SK" followed by a version this build reads.
    Version,
    /// The CRC does not match.
    Checksum,
    /// Checksum right, contents malformed (a bug of the writer).
    Malformed(crate::wire::DecodeError),
}

/// The payload of `value` (what `DUMP` answers).
pub(crate) fn encode(value: ValueRef<'_>) -> Bytes {
    let mut writer = Writer::new();
    writer.raw(MAGIC);
    writer.u8(DUMP_FORMAT_VERSION);
    crate::snapshot::write_value(&mut writer, value);
    let checksum = crc32c::crc32c(writer.as_slice());
    writer.raw(&checksum.to_le_bytes());
    writer.finish()
}

/// The value a payload holds, every byte of it checked.
pub(crate) fn decode(payload: &[u8]) -> Result<Value, PayloadError> {
    if payload.len() < PAYLOAD_LEN_MIN || payload.len() as u64 > PAYLOAD_LEN_MAX {
        return Err(PayloadError::Length);
    }
    if &payload[..MAGIC.len()] != MAGIC || payload[MAGIC.len()] != DUMP_FORMAT_VERSION {
        return Err(PayloadError::Version);
    }
    let (contents, checksum) = payload.split_at(payload.len() - CHECKSUM_LEN);
    let mut expected = [0u8; CHECKSUM_LEN];
    expected.copy_from_slice(checksum);
    if crc32c::crc32c(contents) != u32::from_le_bytes(expected) {
        return Err(PayloadError::Checksum);
    }
    let mut reader = Reader::new(&contents[HEADER_LEN..]);
    let value = crate::snapshot::read_value(&mut reader).map_err(PayloadError::Malformed)?;
    reader.finish().map_err(PayloadError::Malformed)?;
    if let Value::Str(bytes) = &value {
        if bytes.len() as u64 > STRING_LEN_MAX {
            return Err(PayloadError::Length);
        }
    }
    debug_assert!(!value.is_empty_collection());
    Ok(value)
}

/// Whether `payload` would decode (what the proposer checks).
pub(crate) fn is_valid(payload: &[u8]) -> bool {
    decode(payload).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use proptest::prelude::*;

    fn payload_of(value: Value) -> Bytes {
        let entry = Entry::new(b"k", value, None);
        encode(entry.value())
    }

    fn string(text: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn a_string_round_trips() {
        let payload = payload_of(string("bar"));
        assert_eq!(&payload[..3], b"SK\x01");
        assert_eq!(decode(&payload), Ok(string("bar")));
    }

    #[test]
    fn a_redis_payload_is_refused() {
        // `DUMP` of "bar" in Redis 7.0: type 0, "bar", RDB version 10, CRC64.
        let redis = b"\x00\x03bar\x0a\x00\x85\x9a\x9b\x9f\xa8\x1c\x7b\x9c";
        assert!(decode(redis).is_err());
        assert_eq!(decode(b"..."), Err(PayloadError::Length));
    }

    #[test]
    fn flipped_bits_and_truncations_are_refused() {
        let payload = payload_of(string("some value"));
        for at in 0..payload.len() {
            for bit in 0..8 {
                let mut bad = payload.to_vec();
                bad[at] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "bit {bit} of byte {at}");
            }
            assert!(decode(&payload[..at]).is_err(), "cut at {at}");
        }
    }

    /// A payload with a correct checksum around hostile contents.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut payload = b"SK\x01".to_vec();
        payload.extend_from_slice(body);
        let checksum = crc32c::crc32c(&payload);
        payload.extend_from_slice(&checksum.to_le_bytes());
        payload
    }

    #[test]
    fn hostile_contents_behind_a_good_checksum_are_refused() {
        let huge = u32::MAX.to_le_bytes();
        let cases: Vec<Vec<u8>> = vec![
            // A string claiming 4 GiB.
            [&[0u8][..], &huge].concat(),
            // A list, hash, set, zset claiming 4 G elements.
            [&[2u8][..], &huge].concat(),
            [&[1u8][..], &huge].concat(),
            [&[3u8, 0][..], &huge].concat(),
            [&[4u8][..], &huge].concat(),
            // Unknown type byte.
            vec![9, 0, 0, 0, 0],
            // Empty collections.
            vec![2, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 0],
            // A set's intset flag that is not a boolean.
            vec![3, 7, 1, 0, 0, 0, 1, 0, 0, 0, b'1'],
            // An intset holding a non-integer.
            vec![3, 1, 1, 0, 0, 0, 1, 0, 0, 0, b'x'],
            // Hash fields out of order.
            [
                &[1u8, 2, 0, 0, 0][..],
                &[1, 0, 0, 0, b'b', 0, 0, 0, 0],
                &[1, 0, 0, 0, b'a', 0, 0, 0, 0],
            ]
            .concat(),
            // A NaN score.
            [
                &[4u8, 1, 0, 0, 0, 1, 0, 0, 0, b'm'][..],
                &f64::NAN.to_bits().to_le_bytes(),
            ]
            .concat(),
            // Trailing bytes after a valid string.
            vec![0, 1, 0, 0, 0, b'x', 0],
        ];
        for body in cases {
            let payload = sealed(&body);
            assert!(
                matches!(decode(&payload), Err(PayloadError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let item = proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from);
        prop_oneof![
            item.clone().prop_map(Value::Str),
            proptest::collection::vec(item.clone(), 1..8).prop_map(|items| {
                let mut list = crate::value::ListItems::default();
                for item in items {
                    list.push(crate::command::ListEnd::Right, item);
                }
                Value::List(std::sync::Arc::new(list))
            }),
            proptest::collection::btree_map(item.clone(), item.clone(), 1..8).prop_map(|map| {
                let mut fields = crate::value::HashFields::default();
                for (field, value) in map {
                    fields.insert(field, value);
                }
                Value::Hash(std::sync::Arc::new(fields))
            }),
            proptest::collection::btree_set(item.clone(), 1..8).prop_map(|members| {
                let mut set = crate::value::SetMembers::default();
                for member in members {
                    set.insert(member);
                }
                Value::Set(std::sync::Arc::new(set))
            }),
            proptest::collection::btree_map(item, -1e9f64..1e9, 1..8).prop_map(|map| {
                let mut zset = crate::zset::ZSetMembers::default();
                for (member, score) in map {
                    zset.insert(member, score);
                }
                Value::ZSet(std::sync::Arc::new(zset))
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_value_round_trips(value in any_value()) {
            let payload = payload_of(value.clone());
            prop_assert_eq!(decode(&payload), Ok(value));
        }

        /// Mutated payloads never panic; any change is caught (CRC-32C
        /// detects every burst of up to 32 bits, so a change of 1 to 4
        /// nearby bytes always fails).
        #[test]
        fn mutated_payloads_are_refused(
            value in any_value(),
            at in any::<prop::sample::Index>(),
            mask in 1u32..,
        ) {
            let payload = payload_of(value);
            let mut bad = payload.to_vec();
            let start = at.index(bad.len());
            for (offset, byte) in mask.to_le_bytes().into_iter().enumerate() {
                if let Some(target) = bad.get_mut(start + offset) {
                    *target ^= byte;
                }
            }
            if bad != payload.to_vec() {
                prop_assert!(decode(&bad).is_err());
            }
        }

        /// Arbitrary bytes, sealed with a correct checksum, never panic the
        /// decoder (it may accept some: they are then a valid value).
        #[test]
        fn arbitrary_sealed_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let payload = sealed(&body);
            if let Ok(value) = decode(&payload) {
                prop_assert!(!value.is_empty_collection());
                // And it re-encodes to the same bytes (one encoding per value).
                prop_assert_eq!(payload_of(value).to_vec(), payload);
            }
        }
    }
}
