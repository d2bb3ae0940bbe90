//! The hash commands past set/get/delete (issue 16): `HMSET`, `HMGET`,
//! `HSETNX`, `HINCRBYFLOAT`, `HSTRLEN`, `HKEYS`, `HVALS`, `HRANDFIELD` and
//! `HSCAN`.
//!
//! Fields are kept in byte order, so every reply that lists fields lists
//! them in the same order on every replica. `HRANDFIELD` draws from a
//! ChaCha generator seeded by the command's place in the log (see
//! [`hrandfield`]), never by a clock or the process.

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::collections::{change_hash, hash_at};
use super::random::{generator, uniform_below, RANDOM_REPLY_BYTES_MAX, RANDOM_REPLY_ENTRY_BYTES};
use crate::decimal::add_decimal_texts;
use crate::glob::glob_match;
use crate::keyspace::{Keyspace, Lookup};
use crate::number::parse_f64;
use crate::parse::NOT_A_FLOAT;
use crate::value::HashFields;

/// Most fields one `HSCAN` call examines, whatever `COUNT` says (it is a
/// hint); a run of fields sharing a cursor is finished past it.
const HSCAN_COUNT_MAX: u64 = 100_000;

pub(crate) fn hmset(
    keyspace: &mut Keyspace,
    key: &Bytes,
    pairs: &[(Bytes, Bytes)],
    now: u64,
) -> Reply {
    if pairs.is_empty() {
        // Only a hand-built command can get here; the parser demands a pair.
        return crate::parse::wrong_arity("hmset");
    }
    match change_hash(keyspace, key, now, |fields| {
        for (field, value) in pairs {
            fields.insert(field.clone(), value.clone());
        }
    }) {
        Ok(()) => Reply::ok(),
        Err(error) => error,
    }
}

/// HMGET. A field may be named many times: the values it returns are
/// bounded by [`super::REPLY_BYTES_MAX`], counted as they are gathered.
pub(crate) fn hmget(keyspace: &Keyspace, key: &[u8], fields: &[Bytes], now: u64) -> Reply {
    let stored = match hash_at(keyspace, key, now) {
        Ok(stored) => stored,
        Err(error) => return error,
    };
    let mut bytes = 0u64;
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        values.push(match stored.and_then(|stored| stored.get(field)) {
            Some(value) => {
                bytes = bytes.saturating_add(value.len() as u64);
                if bytes > super::REPLY_BYTES_MAX {
                    return super::reply_too_large("HMGET");
                }
                Reply::Bulk(value.clone())
            }
            None => Reply::Null,
        });
    }
    Reply::Array(values)
}

pub(crate) fn hsetnx(
    keyspace: &mut Keyspace,
    key: &Bytes,
    field: &Bytes,
    value: &Bytes,
    now: u64,
) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(Some(fields)) if fields.contains_key(field) => return Reply::Integer(0),
        Ok(_) => {}
        Err(error) => return error,
    }
    match change_hash(keyspace, key, now, |fields| {
        fields.insert(field.clone(), value.clone())
    }) {
        Ok(added) => Reply::Integer(i64::from(added)),
        Err(error) => error,
    }
}

/// `HINCRBYFLOAT`: the stored text plus the increment's, added exactly in
/// decimal and rounded to 17 significant digits ([`add_decimal_texts`]),
/// so `1.1 + 0.2` stores `1.3` and `x` then `-x` stores `0`, as in Redis.
pub(crate) fn hincrbyfloat(
    keyspace: &mut Keyspace,
    key: &Bytes,
    field: &Bytes,
    increment: &[u8],
    now: u64,
) -> Reply {
    match parse_f64(increment) {
        Some(value) if value.is_finite() => {}
        // The parser refuses these; a hand-built command gets its answer.
        Some(_) => return Reply::error("ERR value is NaN or Infinity"),
        None => return Reply::error(NOT_A_FLOAT),
    }
    // Validate before creating anything, so a failed HINCRBYFLOAT leaves no
    // empty hash behind.
    let current = match hash_at(keyspace, key, now) {
        Ok(fields) => match fields.and_then(|fields| fields.get(field)) {
            None => Bytes::from_static(b"0"),
            Some(text) if parse_f64(text).is_some() => text.clone(),
            Some(_) => return Reply::error("ERR hash value is not a float"),
        },
        Err(error) => return error,
    };
    let Some(next) = add_decimal_texts(&current, increment) else {
        return Reply::error("ERR increment would produce NaN or Infinity");
    };
    let text = Bytes::from(next);
    match change_hash(keyspace, key, now, |fields| {
        fields.insert(field.clone(), text.clone())
    }) {
        Ok(_) => Reply::Bulk(text),
        Err(error) => error,
    }
}

pub(crate) fn hstrlen(keyspace: &Keyspace, key: &[u8], field: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Integer(
            fields
                .and_then(|fields| fields.get(field))
                .map_or(0, |value| value.len() as i64),
        ),
        Err(error) => error,
    }
}

pub(crate) fn hkeys(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Array(
            fields
                .into_iter()
                .flat_map(HashFields::iter)
                .map(|(field, _)| Reply::Bulk(field.clone()))
                .collect(),
        ),
        Err(error) => error,
    }
}

pub(crate) fn hvals(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Array(
            fields
                .into_iter()
                .flat_map(HashFields::iter)
                .map(|(_, value)| Reply::Bulk(value.clone()))
                .collect(),
        ),
        Err(error) => error,
    }
}

/// `HRANDFIELD`. A read whose answer depends on its place in the log (the
/// seed of [`generator`]); it is therefore always answered through the log
/// (see `read_depends_on_time`): answered by read index, every
/// `HRANDFIELD` until the next write would share that place and draw the
/// same field. O(fields) to index the hash, plus the draws.
pub(crate) fn hrandfield(
    keyspace: &impl Lookup,
    key: &[u8],
    count: Option<i64>,
    with_values: bool,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let fields = match hash_at(keyspace, key, ctx.time_ms) {
        Ok(Some(fields)) => fields,
        Ok(None) if count.is_some() => return Reply::Array(Vec::new()),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let len = fields.len();
    debug_assert!(len > 0, "a stored hash is never empty");
    let mut rng = generator(ctx, position, key);
    let Some(count) = count else {
        let index = uniform_below(&mut rng, len as u64) as usize;
        return fields
            .iter()
            .nth(index)
            .map_or(Reply::Null, |(field, _)| Reply::Bulk(field.clone()));
    };
    let entries: Vec<(&Bytes, &Bytes)> = fields.iter().collect();
    let chosen: Vec<(&Bytes, &Bytes)> = if count < 0 {
        // With repetition: every draw independent and uniform.
        let draws = count.unsigned_abs();
        let mut bytes = 0u64;
        let mut chosen = Vec::new();
        for _ in 0..draws {
            let (field, value) = entries[uniform_below(&mut rng, len as u64) as usize];
            bytes = bytes
                .saturating_add(RANDOM_REPLY_ENTRY_BYTES)
                .saturating_add(field.len() as u64)
                .saturating_add(if with_values { value.len() as u64 } else { 0 });
            if bytes > RANDOM_REPLY_BYTES_MAX {
                return Reply::error(format!(
                    "ERR HRANDFIELD reply of more than {RANDOM_REPLY_BYTES_MAX} bytes refused; ask for fewer fields"
                ));
            }
            chosen.push((field, value));
        }
        chosen
    } else if count as u64 >= len as u64 {
        // The whole hash (in field order, as Redis answers it in its own).
        entries
    } else {
        // Distinct fields: the first `count` of a partial Fisher-Yates
        // shuffle, each subset equally likely.
        let mut entries = entries;
        let count = count as usize;
        for slot in 0..count {
            let pick = slot + uniform_below(&mut rng, (len - slot) as u64) as usize;
            entries.swap(slot, pick);
        }
        entries.truncate(count);
        entries
    };
    if with_values {
        Reply::Pairs(
            chosen
                .into_iter()
                .map(|(field, value)| (Reply::Bulk(field.clone()), Reply::Bulk(value.clone())))
                .collect(),
        )
    } else {
        Reply::Array(
            chosen
                .into_iter()
                .map(|(field, _)| Reply::Bulk(field.clone()))
                .collect(),
        )
    }
}

/// The `HSCAN` (and `ZSCAN`) cursor of a field or member: its first 8
/// bytes, zero-padded, read as a big-endian number, so cursors grow with
/// the byte order.
pub(crate) fn field_cursor(field: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    let len = field.len().min(8);
    prefix[..len].copy_from_slice(&field[..len]);
    u64::from_be_bytes(prefix)
}

/// `HSCAN`: fields are visited in byte order; the cursor is the 8-byte
/// prefix ([`field_cursor`]) of the field to resume from; 0 starts and ends
/// a scan.
///
/// Guarantee (Redis'): a field present for the whole scan is returned at
/// least once. A call never stops inside a run of fields sharing a cursor,
/// so every field whose cursor is below the returned one has been examined;
/// the next call starts at the smallest byte string with that cursor (the
/// prefix without its trailing zero bytes), which sorts at or before every
/// field with that cursor, and a field present throughout keeps its cursor.
/// A field can be returned twice when fields are added or removed between
/// calls, as in Redis. Fields that share their first 8 bytes come back in
/// one page, whatever `COUNT` says.
pub(crate) fn hscan(
    keyspace: &impl Lookup,
    key: &[u8],
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    now: u64,
) -> Reply {
    let fields = match hash_at(keyspace, key, now) {
        Ok(Some(fields)) => fields,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(error) => return error,
    };
    scan_page(
        |start| fields.iter_from(start),
        cursor,
        pattern,
        count,
        |field, value, found| {
            found.push(Reply::Bulk(field.clone()));
            found.push(Reply::Bulk(value.clone()));
        },
    )
}

/// One page of a scan over byte-ordered entries with [`hscan`]'s cursors
/// and guarantees (HSCAN, SSCAN): `entries_from(start)` gives the entries
/// from `start` on in byte order, each a name and what goes with it;
/// `emit` adds a matching entry's replies. The reply is `[cursor, found]`.
pub(crate) fn scan_page<'a, T, I>(
    entries_from: impl FnOnce(&[u8]) -> I,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    mut emit: impl FnMut(&'a Bytes, T, &mut Vec<Reply>),
) -> Reply
where
    I: Iterator<Item = (&'a Bytes, T)>,
{
    let budget = count.clamp(1, HSCAN_COUNT_MAX);
    let start = cursor.to_be_bytes();
    let significant = start
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |at| at + 1);
    let mut last_cursor = None;
    let mut next_cursor = 0u64;
    let mut found = Vec::new();
    for (examined, (name, rest)) in (0u64..).zip(entries_from(&start[..significant])) {
        let here = field_cursor(name);
        if examined >= budget && last_cursor != Some(here) {
            // Every entry so far had a smaller cursor, and the first one
            // examined had one >= 0, so a resume point is never 0.
            debug_assert!(here > 0);
            next_cursor = here;
            break;
        }
        last_cursor = Some(here);
        if pattern.is_none_or(|pattern| pattern == b"*" || glob_match(pattern, name)) {
            emit(name, rest, &mut found);
        }
    }
    scan_reply(next_cursor, found)
}

pub(crate) fn scan_reply(cursor: u64, found: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(cursor.to_string())),
        Reply::Array(found),
    ])
}

/// Elements a hash read visits, for the transaction budget and the
/// off-loop decision: the whole hash for `HKEYS`, `HVALS`, `HRANDFIELD`
/// (plus its draws) and `HSCAN` (conservatively: a page may hold a long
/// run of fields sharing a cursor).
pub(crate) fn read_work(keyspace: &impl Lookup, key: &[u8], draws: u64, now: u64) -> usize {
    match hash_at(keyspace, key, now) {
        Ok(Some(fields)) => fields
            .len()
            .saturating_add(usize::try_from(draws).unwrap_or(usize::MAX)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_cursors_follow_byte_order() {
        assert_eq!(field_cursor(b""), 0);
        assert_eq!(field_cursor(b"\x01"), 1 << 56);
        assert!(field_cursor(b"ab") < field_cursor(b"ab\x01"));
        assert_eq!(field_cursor(b"abcdefgh"), field_cursor(b"abcdefghij"));
    }
}
