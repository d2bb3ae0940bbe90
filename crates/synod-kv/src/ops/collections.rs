//! The minimal hash and list commands (enough for real `WRONGTYPE` errors
//! and common client use).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use synod_resp::Reply;

use super::{wrong_type, OVERFLOW};
use crate::command::ListEnd;
use crate::keyspace::{Keyspace, Value};
use crate::number::parse_i64;

fn hash_at<'a>(
    keyspace: &'a Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a BTreeMap<Bytes, Bytes>>, Reply> {
    match keyspace.live(key, now).map(|entry| &entry.value) {
        None => Ok(None),
        Some(Value::Hash(fields)) => Ok(Some(fields)),
        Some(_) => Err(wrong_type()),
    }
}

fn list_at<'a>(
    keyspace: &'a Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a VecDeque<Bytes>>, Reply> {
    match keyspace.live(key, now).map(|entry| &entry.value) {
        None => Ok(None),
        Some(Value::List(items)) => Ok(Some(items)),
        Some(_) => Err(wrong_type()),
    }
}

/// The live hash at `key` for changing, created empty when absent. The
/// caller must leave it non-empty or call `remove_if_empty`.
fn hash_for_write<'a>(
    keyspace: &'a mut Keyspace,
    key: &Bytes,
    now: u64,
) -> Result<&'a mut BTreeMap<Bytes, Bytes>, Reply> {
    match keyspace.value_or_insert(key, now, || Value::Hash(BTreeMap::new())) {
        Value::Hash(fields) => Ok(fields),
        _ => Err(wrong_type()),
    }
}

/// Like [`hash_for_write`], for lists.
fn list_for_write<'a>(
    keyspace: &'a mut Keyspace,
    key: &Bytes,
    now: u64,
) -> Result<&'a mut VecDeque<Bytes>, Reply> {
    match keyspace.value_or_insert(key, now, || Value::List(VecDeque::new())) {
        Value::List(items) => Ok(items),
        _ => Err(wrong_type()),
    }
}

pub(crate) fn hset(
    keyspace: &mut Keyspace,
    key: &Bytes,
    pairs: &[(Bytes, Bytes)],
    now: u64,
) -> Reply {
    if pairs.is_empty() {
        // Only a hand-built command can get here; the parser demands a pair.
        return crate::parse::wrong_arity("hset");
    }
    let fields = match hash_for_write(keyspace, key, now) {
        Ok(fields) => fields,
        Err(error) => return error,
    };
    let mut added = 0;
    for (field, value) in pairs {
        if fields.insert(field.clone(), value.clone()).is_none() {
            added += 1;
        }
    }
    Reply::Integer(added)
}

pub(crate) fn hget(keyspace: &Keyspace, key: &[u8], field: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => fields
            .and_then(|fields| fields.get(field))
            .map_or(Reply::Null, |value| Reply::Bulk(value.clone())),
        Err(error) => error,
    }
}

pub(crate) fn hdel(keyspace: &mut Keyspace, key: &Bytes, fields: &[Bytes], now: u64) -> Reply {
    let stored = match keyspace.value_mut(key, now) {
        None => return Reply::Integer(0),
        Some(Value::Hash(stored)) => stored,
        Some(_) => return wrong_type(),
    };
    let removed = fields
        .iter()
        .filter(|field| stored.remove(&field[..]).is_some())
        .count();
    keyspace.remove_if_empty(key);
    Reply::Integer(removed as i64)
}

pub(crate) fn hgetall(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Map(
            fields
                .into_iter()
                .flatten()
                .map(|(field, value)| (Reply::Bulk(field.clone()), Reply::Bulk(value.clone())))
                .collect(),
        ),
        Err(error) => error,
    }
}

pub(crate) fn hlen(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Integer(fields.map_or(0, |fields| fields.len() as i64)),
        Err(error) => error,
    }
}

pub(crate) fn hexists(keyspace: &Keyspace, key: &[u8], field: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Integer(i64::from(
            fields.is_some_and(|fields| fields.contains_key(field)),
        )),
        Err(error) => error,
    }
}

pub(crate) fn hincrby(
    keyspace: &mut Keyspace,
    key: &Bytes,
    field: &Bytes,
    delta: i64,
    now: u64,
) -> Reply {
    // Validate before creating anything, so a failed HINCRBY leaves no
    // empty hash behind.
    let current = match hash_at(keyspace, key, now) {
        Ok(fields) => match fields.and_then(|fields| fields.get(field)) {
            None => 0,
            Some(text) => match parse_i64(text) {
                Some(current) => current,
                None => return Reply::error("ERR hash value is not an integer"),
            },
        },
        Err(error) => return error,
    };
    let Some(next) = current.checked_add(delta) else {
        return Reply::error(OVERFLOW);
    };
    match hash_for_write(keyspace, key, now) {
        Ok(fields) => {
            fields.insert(field.clone(), Bytes::from(next.to_string()));
            Reply::Integer(next)
        }
        Err(error) => error,
    }
}

pub(crate) fn push(
    keyspace: &mut Keyspace,
    key: &Bytes,
    end: ListEnd,
    values: &[Bytes],
    now: u64,
) -> Reply {
    if values.is_empty() {
        return crate::parse::wrong_arity(if end == ListEnd::Left {
            "lpush"
        } else {
            "rpush"
        });
    }
    let items = match list_for_write(keyspace, key, now) {
        Ok(items) => items,
        Err(error) => return error,
    };
    for value in values {
        match end {
            ListEnd::Left => items.push_front(value.clone()),
            ListEnd::Right => items.push_back(value.clone()),
        }
    }
    Reply::Integer(items.len() as i64)
}

pub(crate) fn pop(
    keyspace: &mut Keyspace,
    key: &Bytes,
    end: ListEnd,
    count: Option<u64>,
    now: u64,
) -> Reply {
    let items = match keyspace.value_mut(key, now) {
        None if count.is_some() => return Reply::NullArray,
        None => return Reply::Null,
        Some(Value::List(items)) => items,
        Some(_) => return wrong_type(),
    };
    let mut take = || match end {
        ListEnd::Left => items.pop_front(),
        ListEnd::Right => items.pop_back(),
    };
    let reply = match count {
        None => take().map_or(Reply::Null, Reply::Bulk),
        Some(count) => {
            let mut popped = Vec::new();
            while (popped.len() as u64) < count {
                match take() {
                    Some(item) => popped.push(Reply::Bulk(item)),
                    None => break,
                }
            }
            Reply::Array(popped)
        }
    };
    keyspace.remove_if_empty(key);
    reply
}

pub(crate) fn lrange(keyspace: &Keyspace, key: &[u8], start: i64, stop: i64, now: u64) -> Reply {
    let items = match list_at(keyspace, key, now) {
        Ok(Some(items)) => items,
        Ok(None) => return Reply::Array(Vec::new()),
        Err(error) => return error,
    };
    let len = items.len() as i64;
    let resolve = |index: i64| {
        if index < 0 {
            len.saturating_add(index)
        } else {
            index
        }
    };
    let start = resolve(start).max(0);
    let stop = resolve(stop).min(len - 1);
    if start > stop || start >= len {
        return Reply::Array(Vec::new());
    }
    Reply::Array(
        items
            .range(start as usize..=stop as usize)
            .map(|item| Reply::Bulk(item.clone()))
            .collect(),
    )
}

pub(crate) fn llen(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match list_at(keyspace, key, now) {
        Ok(items) => Reply::Integer(items.map_or(0, |items| items.len() as i64)),
        Err(error) => error,
    }
}
