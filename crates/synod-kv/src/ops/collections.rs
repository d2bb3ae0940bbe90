//! The minimal hash and list commands (enough for real `WRONGTYPE` errors
//! and common client use).

use std::sync::Arc;

use bytes::Bytes;
use synod_resp::Reply;

use super::{wrong_type, OVERFLOW};
use crate::command::ListEnd;
use crate::keyspace::{Keyspace, Lookup, Value, ValueRef};
use crate::number::parse_i64;
use crate::value::{HashFields, ListItems};

pub(super) fn hash_at<'a>(
    keyspace: &'a impl Lookup,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a HashFields>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::Hash(fields)) => Ok(Some(fields)),
        Some(_) => Err(wrong_type()),
    }
}

pub(super) fn list_at<'a>(
    keyspace: &'a impl Lookup,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a ListItems>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::List(items)) => Ok(Some(items)),
        Some(_) => Err(wrong_type()),
    }
}

/// Changes the live hash at `key`, created empty when absent (and removed
/// again if `change` leaves it empty). A hash shared with a keyspace view is
/// copied first.
pub(super) fn change_hash<R>(
    keyspace: &mut Keyspace,
    key: &Bytes,
    now: u64,
    change: impl FnOnce(&mut HashFields) -> R,
) -> Result<R, Reply> {
    keyspace.modify_or_insert(key, now, Value::empty_hash, |value| match value {
        Value::Hash(fields) => Ok(change(Arc::make_mut(fields))),
        _ => Err(wrong_type()),
    })
}

/// Like [`change_hash`], for lists.
pub(super) fn change_list<R>(
    keyspace: &mut Keyspace,
    key: &Bytes,
    now: u64,
    change: impl FnOnce(&mut ListItems) -> R,
) -> Result<R, Reply> {
    keyspace.modify_or_insert(key, now, Value::empty_list, |value| match value {
        Value::List(items) => Ok(change(Arc::make_mut(items))),
        _ => Err(wrong_type()),
    })
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
    let added = change_hash(keyspace, key, now, |fields| {
        pairs
            .iter()
            .filter(|(field, value)| fields.insert(field.clone(), value.clone()))
            .count()
    });
    match added {
        Ok(added) => Reply::Integer(added as i64),
        Err(error) => error,
    }
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
    if let Err(error) = hash_at(keyspace, key, now) {
        return error;
    }
    let removed = keyspace.modify(key, now, |value| match value {
        Value::Hash(stored) => {
            let stored = Arc::make_mut(stored);
            fields.iter().filter(|field| stored.remove(field)).count()
        }
        _ => 0,
    });
    Reply::Integer(removed.unwrap_or(0) as i64)
}

pub(crate) fn hgetall(keyspace: &impl Lookup, key: &[u8], now: u64) -> Reply {
    match hash_at(keyspace, key, now) {
        Ok(fields) => Reply::Map(
            fields
                .into_iter()
                .flat_map(HashFields::iter)
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
    match change_hash(keyspace, key, now, |fields| {
        fields.insert(field.clone(), Bytes::from(next.to_string()))
    }) {
        Ok(_) => Reply::Integer(next),
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
    let len = change_list(keyspace, key, now, |items| {
        for value in values {
            items.push(end, value.clone());
        }
        items.len()
    });
    match len {
        Ok(len) => Reply::Integer(len as i64),
        Err(error) => error,
    }
}

pub(crate) fn pop(
    keyspace: &mut Keyspace,
    key: &Bytes,
    end: ListEnd,
    count: Option<u64>,
    now: u64,
) -> Reply {
    match list_at(keyspace, key, now) {
        Ok(Some(_)) => {}
        Ok(None) if count.is_some() => return Reply::NullArray,
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    }
    let reply = keyspace.modify(key, now, |value| {
        let Value::List(items) = value else {
            return wrong_type();
        };
        let items = Arc::make_mut(items);
        match count {
            None => items.pop(end).map_or(Reply::Null, Reply::Bulk),
            Some(count) => {
                let mut popped = Vec::new();
                while (popped.len() as u64) < count {
                    match items.pop(end) {
                        Some(item) => popped.push(Reply::Bulk(item)),
                        None => break,
                    }
                }
                Reply::Array(popped)
            }
        }
    });
    reply.unwrap_or(Reply::Null)
}

pub(crate) fn lrange(keyspace: &impl Lookup, key: &[u8], start: i64, stop: i64, now: u64) -> Reply {
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
