//! Bit and subsequence commands on strings: SETBIT, GETBIT, BITCOUNT,
//! BITPOS, BITOP and LCS, with Redis' replies and range rules.

use bytes::{Bytes, BytesMut};
use synod_resp::Reply;

use super::wrong_type;
use crate::command::{BitOperation, BitUnit, LcsOutput};
use crate::keyspace::{Keyspace, Lookup, StrRef, Value, ValueRef};

/// Largest bit offset + 1 that SETBIT/GETBIT accept: Redis' 512 MB string
/// limit in bits (`proto-max-bulk-len` * 8).
pub(crate) const BIT_OFFSET_END: u64 = 512 * 1024 * 1024 * 8;

/// Most cells (`len(a) * len(b)`) one LCS may compare. Redis allocates the
/// whole `(len(a)+1) * (len(b)+1)` table of 32-bit lengths and fills it in
/// O(n*m): on a replica (inside a transaction) or a node's event loop that
/// is a stall we bound to ~64 MB and some tens of milliseconds.
pub(crate) const LCS_CELLS_MAX: u64 = 1 << 24;

/// The live string at `key` (`Ok(None)` when absent), from the keyspace or
/// a view.
fn string_at<'a>(
    keyspace: &'a impl Lookup,
    key: &[u8],
    now: u64,
) -> Result<Option<StrRef<'a>>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::Str(value)) => Ok(Some(value)),
        Some(_) => Err(wrong_type()),
    }
}

fn bit_at(bytes: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    bytes
        .get(byte)
        .is_some_and(|value| value & (0x80 >> (offset & 7)) != 0)
}

/// `SETBIT`: the offset was checked against [`BIT_OFFSET_END`] and the
/// value size limit when parsed; the maxmemory bound is in `memory`.
pub(crate) fn setbit(
    keyspace: &mut Keyspace,
    key: &Bytes,
    offset: u64,
    bit: bool,
    now: u64,
) -> Reply {
    // Checked when parsed; a log entry is checked again (never trusted).
    if offset >= BIT_OFFSET_END {
        return Reply::error("ERR bit offset is not an integer or out of range");
    }
    let current = match string_at(keyspace, key, now) {
        Ok(current) => current,
        Err(error) => return error,
    };
    let current: &[u8] = current.as_deref().unwrap_or(&[]);
    let old = bit_at(current, offset);
    let byte = (offset >> 3) as usize;
    let len = current.len().max(byte + 1);
    if old == bit && keyspace.live(key, now).is_some() && current.len() > byte {
        return Reply::Integer(i64::from(old));
    }
    let mut next = BytesMut::with_capacity(len);
    next.extend_from_slice(current);
    next.resize(len, 0);
    let mask = 0x80u8 >> (offset & 7);
    if bit {
        next[byte] |= mask;
    } else {
        next[byte] &= !mask;
    }
    keyspace.remove_if_expired(key, now);
    let expiry = keyspace
        .live(key, now)
        .and_then(|entry| entry.expire_at_ms());
    keyspace.insert(key, Value::Str(next.freeze()), expiry);
    Reply::Integer(i64::from(old))
}

pub(crate) fn getbit(keyspace: &Keyspace, key: &[u8], offset: u64, now: u64) -> Reply {
    match string_at(keyspace, key, now) {
        Ok(value) => Reply::Integer(i64::from(value.is_some_and(|value| bit_at(&value, offset)))),
        Err(error) => error,
    }
}

/// Resolves a `start end` range over `len` units (bytes or bits) as Redis
/// does: negative indexes count from the end, then both are clamped.
/// `None` when the range is empty.
fn resolve_range(start: i64, end: i64, len: i64) -> Option<(i64, i64)> {
    let resolve = |index: i64| {
        if index < 0 {
            len.saturating_add(index).max(0)
        } else {
            index
        }
    };
    let start = resolve(start);
    let end = resolve(end).min(len - 1);
    (start <= end).then_some((start, end))
}

/// The bit range `[first, last]` (inclusive, in bits) of `start end unit`
/// over a string of `len` bytes; `None` when empty.
fn bit_range(start: i64, end: i64, unit: BitUnit, len: usize) -> Option<(u64, u64)> {
    let len = len as i64;
    match unit {
        BitUnit::Byte => {
            resolve_range(start, end, len).map(|(s, e)| (s as u64 * 8, e as u64 * 8 + 7))
        }
        BitUnit::Bit => resolve_range(start, end, len * 8).map(|(s, e)| (s as u64, e as u64)),
    }
}

fn count_ones(bytes: &[u8], first: u64, last: u64) -> u64 {
    debug_assert!(first <= last && last < bytes.len() as u64 * 8);
    let first_byte = (first >> 3) as usize;
    let last_byte = (last >> 3) as usize;
    let mut count: u64 = bytes[first_byte..=last_byte]
        .iter()
        .map(|byte| u64::from(byte.count_ones()))
        .sum();
    // Take off the bits of the edge bytes outside the range (bit 0 is the
    // most significant).
    let head = !(0xFFu8 >> (first & 7));
    let tail = (0xFFu16 >> ((last & 7) + 1)) as u8;
    count -= u64::from((bytes[first_byte] & head).count_ones());
    count -= u64::from((bytes[last_byte] & tail).count_ones());
    count
}

pub(crate) fn bitcount(
    keyspace: &Keyspace,
    key: &[u8],
    range: Option<(i64, i64, BitUnit)>,
    now: u64,
) -> Reply {
    let value = match string_at(keyspace, key, now) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    };
    let bits = match range {
        None if value.is_empty() => None,
        None => Some((0, value.len() as u64 * 8 - 1)),
        // Redis answers 0 at once for two negative indexes out of order.
        Some((start, end, _)) if start < 0 && end < 0 && start > end => None,
        Some((start, end, unit)) => bit_range(start, end, unit, value.len()),
    };
    match bits {
        None => Reply::Integer(0),
        Some((first, last)) => Reply::Integer(count_ones(&value, first, last) as i64),
    }
}

/// First bit equal to `bit` in `[first, last]`.
fn find_bit(bytes: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let skip = if bit { 0x00 } else { 0xFF };
    let mut position = first;
    while position <= last {
        let byte = bytes[(position >> 3) as usize];
        if position & 7 == 0 && last - position >= 7 && byte == skip {
            position += 8;
            continue;
        }
        if bit_at(bytes, position) == bit {
            return Some(position);
        }
        position += 1;
    }
    None
}

pub(crate) fn bitpos(
    keyspace: &Keyspace,
    key: &[u8],
    bit: bool,
    start: Option<i64>,
    end: Option<i64>,
    unit: BitUnit,
    now: u64,
) -> Reply {
    let value = match string_at(keyspace, key, now) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Integer(if bit { -1 } else { 0 }),
        Err(error) => return error,
    };
    let len = value.len() as i64;
    let end_given = end.is_some();
    let end = end.unwrap_or(match unit {
        BitUnit::Byte => len - 1,
        BitUnit::Bit => len * 8 - 1,
    });
    let Some((first, last)) = bit_range(start.unwrap_or(0), end, unit, value.len()) else {
        // An empty range holds neither a 0 nor a 1.
        return Reply::Integer(-1);
    };
    match find_bit(&value, bit, first, last) {
        Some(position) => Reply::Integer(position as i64),
        // Past the end of the string, the bits are zeros: looking for a 0
        // without an explicit end finds the first bit after the range.
        None if !bit && !end_given => Reply::Integer(last as i64 + 1),
        None => Reply::Integer(-1),
    }
}

/// The most bytes (keys x longest source) one BITOP may process.
pub(crate) const BITOP_WORK_MAX: usize = 1 << 30;

pub(crate) fn bitop(
    keyspace: &mut Keyspace,
    operation: BitOperation,
    destination: &Bytes,
    keys: &[Bytes],
    now: u64,
) -> Reply {
    let mut sources: Vec<Bytes> = Vec::with_capacity(keys.len());
    for key in keys {
        match string_at(keyspace, key, now) {
            Ok(value) => sources.push(value.map_or_else(Bytes::new, StrRef::to_bytes)),
            Err(error) => return error,
        }
    }
    let len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    keyspace.remove_if_expired(destination, now);
    if len == 0 {
        keyspace.remove(destination);
        return Reply::Integer(0);
    }
    // Every replica does this work at apply time (and again on replay): a
    // small command naming one large key many times must not stall them
    // all, so the work is bounded before any is done.
    let work = len.saturating_mul(sources.len());
    if work > BITOP_WORK_MAX {
        return Reply::error(format!(
            "ERR BITOP over {} keys of up to {len} bytes processes more than {BITOP_WORK_MAX} \
             bytes, synod's limit for one command",
            sources.len()
        ));
    }
    let mut result = BytesMut::with_capacity(len);
    result.extend_from_slice(&sources[0]);
    result.resize(len, 0);
    match operation {
        BitOperation::Not => result.iter_mut().for_each(|byte| *byte = !*byte),
        BitOperation::And | BitOperation::Or | BitOperation::Xor => {
            for source in &sources[1..] {
                // Bytes past a shorter source count as zero.
                let common = source.len().min(len);
                let (head, tail) = result.split_at_mut(common);
                let pairs = head.iter_mut().zip(&source[..common]);
                match operation {
                    BitOperation::And => {
                        pairs.for_each(|(byte, other)| *byte &= other);
                        tail.fill(0);
                    }
                    BitOperation::Or => pairs.for_each(|(byte, other)| *byte |= other),
                    _ => pairs.for_each(|(byte, other)| *byte ^= other),
                }
            }
        }
    }
    keyspace.insert(destination, Value::Str(result.freeze()), None);
    Reply::Integer(len as i64)
}

/// The error for an LCS past [`LCS_CELLS_MAX`].
fn lcs_too_large(a: usize, b: usize) -> Reply {
    Reply::error(format!(
        "ERR LCS of strings of {a} and {b} bytes compares more than {LCS_CELLS_MAX} pairs, synod's limit for one command"
    ))
}

/// The number of cells an LCS of the two keys compares (0 for a key that
/// is missing or not a string): for the transaction budget and the
/// off-loop decision.
pub(crate) fn lcs_cells(keyspace: &impl Lookup, key1: &[u8], key2: &[u8], now: u64) -> u64 {
    let len = |key: &[u8]| match string_at(keyspace, key, now) {
        Ok(Some(value)) => value.len() as u64,
        _ => 0,
    };
    len(key1).saturating_mul(len(key2))
}

pub(crate) fn lcs(
    keyspace: &impl Lookup,
    key1: &[u8],
    key2: &[u8],
    output: LcsOutput,
    now: u64,
) -> Reply {
    let (a, b) = match (
        string_at(keyspace, key1, now),
        string_at(keyspace, key2, now),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Reply::error("ERR The specified keys must contain string values"),
    };
    let a: &[u8] = a.as_deref().unwrap_or(&[]);
    let b: &[u8] = b.as_deref().unwrap_or(&[]);
    if (a.len() as u64).saturating_mul(b.len() as u64) > LCS_CELLS_MAX {
        return lcs_too_large(a.len(), b.len());
    }
    // table[i * (b+1) + j]: the LCS length of a[..i] and b[..j].
    let width = b.len() + 1;
    let mut table = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let length = table[a.len() * width + b.len()] as usize;
    if output == LcsOutput::Len {
        return Reply::Integer(length as i64);
    }
    let (min_match_len, with_match_len) = match output {
        LcsOutput::Ranges {
            min_match_len,
            with_match_len,
        } => (min_match_len, with_match_len),
        _ => (0, false),
    };
    // Walk back from the end as Redis does, so ranges come out last first.
    let mut common = vec![0u8; length];
    let mut left = length;
    let mut ranges = Vec::new();
    let (mut i, mut j) = (a.len(), b.len());
    // The range being extended backwards: (a_start, a_end, b_start, b_end).
    let mut current: Option<(usize, usize, usize, usize)> = None;
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[left - 1] = a[i - 1];
            left -= 1;
            current = match current {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((a_start, a_end, b_start, b_end)) if a_start == i && b_start == j => {
                    Some((a_start - 1, a_end, b_start - 1, b_end))
                }
                Some(range) => {
                    emit = true;
                    Some(range)
                }
            };
            if current.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = current.is_some();
        }
        if emit {
            if let Some((a_start, a_end, b_start, b_end)) = current.take() {
                let match_len = (a_end - a_start + 1) as u64;
                if min_match_len == 0 || match_len >= min_match_len {
                    let mut range = vec![
                        Reply::Array(vec![
                            Reply::Integer(a_start as i64),
                            Reply::Integer(a_end as i64),
                        ]),
                        Reply::Array(vec![
                            Reply::Integer(b_start as i64),
                            Reply::Integer(b_end as i64),
                        ]),
                    ];
                    if with_match_len {
                        range.push(Reply::Integer(match_len as i64));
                    }
                    ranges.push(Reply::Array(range));
                }
            }
        }
    }
    match output {
        LcsOutput::String => Reply::Bulk(Bytes::from(common)),
        _ => Reply::Map(vec![
            (
                Reply::Bulk(Bytes::from_static(b"matches")),
                Reply::Array(ranges),
            ),
            (
                Reply::Bulk(Bytes::from_static(b"len")),
                Reply::Integer(length as i64),
            ),
        ]),
    }
}
