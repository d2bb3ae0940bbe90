//! Key commands of issue 16: RENAME/RENAMENX, COPY, TOUCH,
//! EXPIRETIME/PEXPIRETIME, OBJECT, RANDOMKEY and SORT/SORT_RO.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use synod::ApplyContext;
use synod_resp::Reply;

use super::random::pick_rng;
use super::{memory, wrong_type};
use crate::command::{ObjectField, SortCommand, TimeUnit};
use crate::keyspace::{Entry, Keyspace, Lookup, Value, ValueRef};
use crate::number::parse_i64;
use crate::value::{item_bytes, ListItems};

pub(crate) fn rename(
    keyspace: &mut Keyspace,
    key: &Bytes,
    new_key: &Bytes,
    only_if_absent: bool,
    now: u64,
) -> Reply {
    keyspace.remove_if_expired(key, now);
    keyspace.remove_if_expired(new_key, now);
    if keyspace.live(key, now).is_none() {
        return Reply::error("ERR no such key");
    }
    let done = if only_if_absent {
        Reply::Integer(1)
    } else {
        Reply::ok()
    };
    if key == new_key {
        return if only_if_absent {
            Reply::Integer(0)
        } else {
            done
        };
    }
    if only_if_absent && keyspace.live(new_key, now).is_some() {
        return Reply::Integer(0);
    }
    let Some(entry) = keyspace.remove(key) else {
        return Reply::error("ERR no such key");
    };
    // The destination's old value and expiry go; the source's expiry moves.
    keyspace.insert(new_key, entry.value_owned(), entry.expire_at_ms());
    done
}

pub(crate) fn copy(
    keyspace: &mut Keyspace,
    source: &Bytes,
    destination: &Bytes,
    replace: bool,
    now: u64,
) -> Reply {
    if source == destination {
        return Reply::error("ERR source and destination objects are the same");
    }
    keyspace.remove_if_expired(destination, now);
    let Some(entry) = keyspace.live(source, now) else {
        return Reply::Integer(0);
    };
    if !replace && keyspace.live(destination, now).is_some() {
        return Reply::Integer(0);
    }
    // Collections are shared copy-on-write (`Arc::make_mut` on the first
    // change of either key), so the copy is independent of its source.
    let (value, expiry) = (entry.value_owned(), entry.expire_at_ms());
    keyspace.insert(destination, value, expiry);
    Reply::Integer(1)
}

pub(crate) fn touch(keyspace: &Keyspace, keys: &[Bytes], now: u64) -> Reply {
    super::keys::exists(keyspace, keys, now)
}

pub(crate) fn expiretime(keyspace: &Keyspace, key: &[u8], unit: TimeUnit, now: u64) -> Reply {
    let Some(entry) = keyspace.live(key, now) else {
        return Reply::Integer(-2);
    };
    match entry.expire_at_ms() {
        None => Reply::Integer(-1),
        Some(at) => {
            let at = i64::try_from(at).unwrap_or(i64::MAX);
            Reply::Integer(match unit {
                TimeUnit::Milliseconds => at,
                TimeUnit::Seconds => at.saturating_add(500) / 1000,
            })
        }
    }
}

/// Redis' `OBJ_SHARED_REFCOUNT`: what `OBJECT REFCOUNT` says of a shared
/// small integer.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;
/// Redis shares the integers 0..`OBJ_SHARED_INTEGERS`.
const SHARED_INTEGERS: i64 = 10_000;
/// Longest string Redis stores as `embstr`.
const EMBSTR_LEN_MAX: usize = 44;
/// Redis' default `hash-max-listpack-entries` / `-value`.
const HASH_LISTPACK_ENTRIES_MAX: usize = 128;
const HASH_LISTPACK_VALUE_MAX: usize = 64;

/// The encoding Redis would report for this value, from its type and size
/// (Synod has one representation per type; this is the name Redis gives a
/// value like it). A string is `int` when it reads as a 64-bit integer,
/// `embstr` up to 44 bytes, else `raw`; Redis also reports `raw` for a
/// short string changed in place (APPEND, SETRANGE, SETBIT), which depends
/// on history Synod does not keep.
fn encoding(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Str(text) if text.len() <= 20 && parse_i64(&text).is_some() => "int",
        ValueRef::Str(text) if text.len() <= EMBSTR_LEN_MAX => "embstr",
        ValueRef::Str(_) => "raw",
        ValueRef::Hash(fields)
            if fields.len() <= HASH_LISTPACK_ENTRIES_MAX
                && fields.iter().all(|(field, value)| {
                    field.len() <= HASH_LISTPACK_VALUE_MAX && value.len() <= HASH_LISTPACK_VALUE_MAX
                }) =>
        {
            "listpack"
        }
        ValueRef::Hash(_) => "hashtable",
        // Redis 7.0 keeps every list in a quicklist.
        ValueRef::List(_) => "quicklist",
        // Redis 7.0 has no listpack sets: an intset or a hash table, by the
        // set's history (see `SetMembers`).
        ValueRef::Set(members) if members.is_intset() => "intset",
        ValueRef::Set(_) => "hashtable",
        // Redis 7.0's defaults: zset-max-listpack-entries 128, -value 64.
        ValueRef::ZSet(members)
            if members.len() <= 128 && members.iter().all(|(member, _)| member.len() <= 64) =>
        {
            "listpack"
        }
        ValueRef::ZSet(_) => "skiplist",
    }
}

pub(crate) fn object(keyspace: &Keyspace, key: &[u8], field: ObjectField, now: u64) -> Reply {
    let Some(entry) = keyspace.live(key, now) else {
        return Reply::Null;
    };
    match field {
        ObjectField::Encoding => Reply::Bulk(Bytes::from_static(
            encoding(entry.value()).as_bytes(),
        )),
        ObjectField::RefCount => Reply::Integer(match entry.value() {
            ValueRef::Str(text) => match parse_i64(&text) {
                Some(number) if (0..SHARED_INTEGERS).contains(&number) => SHARED_REFCOUNT,
                _ => 1,
            },
            _ => 1,
        }),
        // Reads do not go through the log, so no replica knows when a key
        // was last read: every key counts as just used.
        ObjectField::IdleTime => Reply::Integer(0),
        // Synod never evicts (its policy is noeviction), as Redis answers
        // then.
        ObjectField::Freq => Reply::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}

/// `OBJECT HELP`'s lines.
pub(crate) fn object_help() -> Reply {
    let lines = [
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access logarithmic access frequency counter associated with a",
        "    <key>.",
        "IDLETIME <key>",
        "    Return the idle time associated with a <key>.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|line| Reply::simple((*line).to_string()))
            .collect(),
    )
}

/// Live keys from which RANDOMKEY picks exactly uniformly (walking to the
/// picked key); above, it picks in a window (see [`randomkey`]).
const RANDOM_EXACT_KEYS_MAX: usize = 1024;
/// Keys a pick in a large keyspace walks at most.
const RANDOM_WINDOW_KEYS: u64 = 64;

/// `RANDOMKEY`: with at most [`RANDOM_EXACT_KEYS_MAX`] live keys, the
/// `k`-th live key for a uniform `k`. With more, the `j`-th live key
/// (uniform `j` below [`RANDOM_WINDOW_KEYS`]) after a uniform point of the
/// hash order, wrapping: a key's chance is then the sum of the 64 hash gaps
/// before it, which for xxh3-spread keys is within a few percent of
/// uniform, at O(64) cost instead of O(keys).
pub(crate) fn randomkey(keyspace: &Keyspace, ctx: &ApplyContext, nonce: u64) -> Reply {
    let now = ctx.time_ms;
    let mut rng = pick_rng(ctx, nonce);
    let live = |(_, _, entry): &(u64, &[u8], &Entry)| entry.is_live(now);
    let count = keyspace.live_len(now);
    if count == 0 {
        return Reply::Null;
    }
    let picked = if count <= RANDOM_EXACT_KEYS_MAX {
        let index = rng.gen_range(0..count);
        keyspace.iter_from(0).filter(live).nth(index)
    } else {
        let start: u64 = rng.gen();
        let steps = rng.gen_range(0..RANDOM_WINDOW_KEYS) as usize;
        keyspace
            .iter_from(start)
            .chain(keyspace.iter_from(0))
            .filter(live)
            .nth(steps)
    };
    picked.map_or(Reply::Null, |(_, key, _)| {
        Reply::Bulk(Bytes::copy_from_slice(key))
    })
}

/// What a `BY`/`GET` pattern names for `element`: `#` is the element
/// itself; else the first `*` is replaced by it, and a `->field` suffix
/// reads that field of a hash. `None` when the key is missing or of the
/// wrong type, or the pattern has no `*`.
fn lookup_pattern(
    keyspace: &impl Lookup,
    pattern: &[u8],
    element: &Bytes,
    now: u64,
) -> Option<Bytes> {
    if pattern == b"#" {
        return Some(element.clone());
    }
    let star = pattern.iter().position(|&byte| byte == b'*')?;
    let arrow = pattern[star + 1..]
        .windows(2)
        .position(|pair| pair == b"->")
        .map(|at| star + 1 + at)
        .filter(|&at| at + 2 < pattern.len());
    let key_end = arrow.unwrap_or(pattern.len());
    let mut key = Vec::with_capacity(key_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let entry = keyspace.live(&key, now)?;
    match (arrow, entry.value()) {
        (None, ValueRef::Str(text)) => Some(text.to_bytes()),
        (Some(at), ValueRef::Hash(fields)) => fields.get(&pattern[at + 2..]).cloned(),
        _ => None,
    }
}

/// A score as Redis' SORT reads one (`strtod`: leading spaces allowed, the
/// whole rest must be the number, no NaN); an empty text is 0.
fn sort_score(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if text.is_empty() {
        return Some(0.0);
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// The most elements (picked elements x GET patterns) one SORT may return
/// or store; as many GET lookups at most.
pub(crate) const SORT_OUTPUT_MAX: usize = 1 << 22;

/// `SORT`/`SORT_RO` of a list or a set (Synod has no sorted sets yet), from
/// the keyspace or, for a large one, a view off the event loop.
pub(crate) fn sort(
    keyspace: &impl Lookup,
    sort: &SortCommand,
    now: u64,
) -> Result<Vec<Option<Bytes>>, Reply> {
    let elements: Vec<Bytes> = match keyspace.live(&sort.key, now).map(Entry::value) {
        None => Vec::new(),
        Some(ValueRef::List(items)) => items.iter().cloned().collect(),
        // In byte order: with BY nosort, the same order on every replica.
        Some(ValueRef::Set(members)) => members.iter().cloned().collect(),
        // In score order, which `BY nosort` keeps.
        Some(ValueRef::ZSet(members)) => members.iter().map(|(member, _)| member.clone()).collect(),
        Some(_) => return Err(wrong_type()),
    };
    let dont_sort = sort
        .by
        .as_ref()
        .is_some_and(|pattern| !pattern.contains(&b'*'));
    let mut order: Vec<(Bytes, Option<Bytes>, f64)> = Vec::with_capacity(elements.len());
    for element in elements {
        let by = match &sort.by {
            Some(pattern) if !dont_sort => lookup_pattern(keyspace, pattern, &element, now),
            _ => None,
        };
        let score = if sort.alpha || dont_sort {
            0.0
        } else {
            let text = match &sort.by {
                Some(_) => by.clone(),
                None => Some(element.clone()),
            };
            match text {
                None => 0.0,
                Some(text) => sort_score(&text).ok_or_else(|| {
                    Reply::error("ERR One or more scores can't be converted into double")
                })?,
            }
        };
        order.push((element, by, score));
    }
    if dont_sort && sort.descending {
        // As Redis: an unsorted list with DESC is read from its tail.
        order.reverse();
    }
    if !dont_sort {
        order.sort_by(|(a, a_by, a_score), (b, b_by, b_score)| {
            let cmp = if sort.alpha {
                if sort.by.is_some() {
                    // A missing BY value sorts first.
                    a_by.cmp(b_by)
                } else {
                    a.cmp(b)
                }
            } else {
                a_score.partial_cmp(b_score).unwrap_or(Ordering::Equal)
            };
            // Equal keys are ordered by the elements, so the result is
            // deterministic.
            let cmp = cmp.then_with(|| a.cmp(b));
            if sort.descending {
                cmp.reverse()
            } else {
                cmp
            }
        });
    }
    let len = order.len() as i64;
    let (mut start, mut end) = match sort.limit {
        None => (0, len - 1),
        Some((offset, count)) => {
            let start = offset.max(0);
            let end = if count < 0 {
                len - 1
            } else {
                start.saturating_add(count) - 1
            };
            (start, end)
        }
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    let picked = if start <= end && start >= 0 {
        &order[start as usize..=end as usize]
    } else {
        &order[..0]
    };
    // Bounded before the result is built: every replica runs a SORT ...
    // STORE (and replays it after a restart), so a small command naming
    // many GET patterns must not make each of them allocate picked x
    // patterns entries or do as many lookups. (BY looks up one key per
    // element: bounded by the list, which is already in memory.)
    let outputs = picked.len().saturating_mul(sort.gets.len().max(1));
    if outputs > SORT_OUTPUT_MAX {
        return Err(Reply::error(format!(
            "ERR SORT would return {outputs} elements (elements x GET patterns), more than \
             {SORT_OUTPUT_MAX}: use LIMIT or fewer GET patterns"
        )));
    }
    let mut out = Vec::with_capacity(outputs);
    // A list may repeat an element, and a GET pattern then names one key
    // for each copy: the values may repeat, so they are bounded as they
    // are gathered (the elements alone are in memory already).
    let mut looked_up = 0u64;
    for (element, _, _) in picked {
        if sort.gets.is_empty() {
            out.push(Some(element.clone()));
        }
        for pattern in &sort.gets {
            let value = lookup_pattern(keyspace, pattern, element, now);
            looked_up = looked_up.saturating_add(value.as_ref().map_or(0, |v| v.len() as u64));
            if looked_up > super::REPLY_BYTES_MAX {
                return Err(super::reply_too_large("SORT"));
            }
            out.push(value);
        }
    }
    Ok(out)
}

pub(crate) fn sort_read(keyspace: &impl Lookup, command: &SortCommand, now: u64) -> Reply {
    match sort(keyspace, command, now) {
        Ok(items) => Reply::Array(
            items
                .into_iter()
                .map(|item| item.map_or(Reply::Null, Reply::Bulk))
                .collect(),
        ),
        Err(error) => error,
    }
}

/// `SORT ... STORE destination`: the result as a list (a missing value is
/// an empty string), replacing the destination; an empty result deletes
/// it. Refused with `-OOM` when the list would take the dataset past the
/// replicated limit (known only once sorted: the GET values come from
/// other keys).
pub(crate) fn sort_store(
    keyspace: &mut Keyspace,
    command: &SortCommand,
    destination: &Bytes,
    now: u64,
) -> Reply {
    let items = match sort(keyspace, command, now) {
        Ok(items) => items,
        Err(error) => return error,
    };
    keyspace.remove_if_expired(destination, now);
    if items.is_empty() {
        keyspace.remove(destination);
        return Reply::Integer(0);
    }
    let growth = items
        .iter()
        .map(|item| item_bytes(item.as_deref().unwrap_or(&[])))
        .fold(
            crate::value::entry_bytes(destination.len(), 0),
            u64::saturating_add,
        );
    if !memory::fits(keyspace, growth) {
        return Reply::error(memory::OOM);
    }
    let count = items.len();
    let mut list = ListItems::with_capacity(count);
    for item in items {
        list.push(crate::command::ListEnd::Right, item.unwrap_or_default());
    }
    keyspace.insert(destination, Value::List(Arc::new(list)), None);
    Reply::Integer(count as i64)
}
