//! The list commands past push/pop/range (issue 16): by index (`LINDEX`,
//! `LSET`, `LINSERT`), by value (`LREM`, `LPOS`), `LTRIM`, the `X` pushes
//! and the moves between lists (`LMOVE`/`RPOPLPUSH`, `LMPOP`).
//!
//! Every write validates the type of every key it touches before it changes
//! anything, so a command that fails leaves the keyspace as it was; a list a
//! command empties is deleted (by `Keyspace::modify`), as in Redis.

use std::sync::Arc;

use bytes::Bytes;
use synod_resp::Reply;

use super::collections::{change_list, list_at};
use crate::command::ListEnd;
use crate::keyspace::{Keyspace, Lookup, Value};
use crate::value::ListItems;

/// The position of `index` (negative: from the tail) in a list of `len`.
fn resolve_index(len: usize, index: i64) -> Option<usize> {
    let position = if index < 0 {
        (len as i64).checked_add(index)?
    } else {
        index
    };
    usize::try_from(position)
        .ok()
        .filter(|&position| position < len)
}

/// Runs `change` on the live list at `key` (which must exist and be a
/// list: check with [`list_at`] first).
fn with_list<R>(
    keyspace: &mut Keyspace,
    key: &[u8],
    now: u64,
    change: impl FnOnce(&mut ListItems) -> R,
) -> Option<R> {
    keyspace.modify(key, now, |value| match value {
        Value::List(items) => Some(change(Arc::make_mut(items))),
        _ => None,
    })?
}

pub(crate) fn lindex(keyspace: &Keyspace, key: &[u8], index: i64, now: u64) -> Reply {
    match list_at(keyspace, key, now) {
        Ok(Some(items)) => resolve_index(items.len(), index)
            .and_then(|position| items.get(position))
            .map_or(Reply::Null, |item| Reply::Bulk(item.clone())),
        Ok(None) => Reply::Null,
        Err(error) => error,
    }
}

pub(crate) fn lset(
    keyspace: &mut Keyspace,
    key: &Bytes,
    index: i64,
    value: &Bytes,
    now: u64,
) -> Reply {
    let position = match list_at(keyspace, key, now) {
        Ok(Some(items)) => resolve_index(items.len(), index),
        Ok(None) => return Reply::error("ERR no such key"),
        Err(error) => return error,
    };
    let Some(position) = position else {
        return Reply::error("ERR index out of range");
    };
    match with_list(keyspace, key, now, |items| {
        items.replace(position, value.clone())
    }) {
        Some(true) => Reply::ok(),
        _ => Reply::error("ERR index out of range"),
    }
}

pub(crate) fn linsert(
    keyspace: &mut Keyspace,
    key: &Bytes,
    before: bool,
    pivot: &[u8],
    value: &Bytes,
    now: u64,
) -> Reply {
    let found = match list_at(keyspace, key, now) {
        Ok(Some(items)) => items.iter().position(|item| item == pivot),
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    };
    let Some(found) = found else {
        return Reply::Integer(-1);
    };
    let at = if before { found } else { found + 1 };
    let len = with_list(keyspace, key, now, |items| {
        items.insert(at, value.clone());
        items.len()
    });
    Reply::Integer(len.unwrap_or(0) as i64)
}

pub(crate) fn lrem(
    keyspace: &mut Keyspace,
    key: &Bytes,
    count: i64,
    value: &[u8],
    now: u64,
) -> Reply {
    match list_at(keyspace, key, now) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    }
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
    };
    let removed = with_list(keyspace, key, now, |items| {
        items.remove_matching(value, limit, count < 0)
    });
    Reply::Integer(removed.unwrap_or(0) as i64)
}

pub(crate) fn ltrim(
    keyspace: &mut Keyspace,
    key: &Bytes,
    start: i64,
    stop: i64,
    now: u64,
) -> Reply {
    let len = match list_at(keyspace, key, now) {
        Ok(Some(items)) => items.len() as i64,
        Ok(None) => return Reply::ok(),
        Err(error) => return error,
    };
    let resolve = |index: i64| {
        if index < 0 {
            len.saturating_add(index)
        } else {
            index
        }
    };
    let start = resolve(start).max(0);
    let stop = resolve(stop);
    // An empty range (start past the end or past stop) empties the list.
    let (first, kept) = if start > stop || start >= len {
        (0, 0)
    } else {
        let stop = stop.min(len - 1);
        (start as usize, (stop - start + 1) as usize)
    };
    with_list(keyspace, key, now, |items| items.keep_range(first, kept));
    Reply::ok()
}

pub(crate) fn lpos(
    keyspace: &impl Lookup,
    key: &[u8],
    value: &[u8],
    rank: i64,
    count: Option<u64>,
    maxlen: u64,
    now: u64,
) -> Reply {
    debug_assert!(rank != 0 && rank != i64::MIN);
    let items = match list_at(keyspace, key, now) {
        Ok(Some(items)) => items,
        Ok(None) if count.is_some() => return Reply::Array(Vec::new()),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let len = items.len();
    let from_tail = rank < 0;
    let skip = rank.unsigned_abs() - 1;
    let compared = if maxlen == 0 {
        len
    } else {
        usize::try_from(maxlen).unwrap_or(usize::MAX).min(len)
    };
    let wanted = match count {
        None => 1,
        Some(0) => usize::MAX,
        Some(count) => usize::try_from(count).unwrap_or(usize::MAX),
    };
    let order: Box<dyn Iterator<Item = usize>> = if from_tail {
        Box::new((len - compared..len).rev())
    } else {
        Box::new(0..compared)
    };
    let mut matches = 0u64;
    let mut found = Vec::new();
    for position in order {
        if found.len() >= wanted {
            break;
        }
        if items.get(position).is_some_and(|item| item == value) {
            matches += 1;
            if matches > skip {
                found.push(Reply::Integer(position as i64));
            }
        }
    }
    match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Null),
    }
}

pub(crate) fn pushx(
    keyspace: &mut Keyspace,
    key: &Bytes,
    end: ListEnd,
    values: &[Bytes],
    now: u64,
) -> Reply {
    match list_at(keyspace, key, now) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Integer(0),
        Err(error) => return error,
    }
    let len = with_list(keyspace, key, now, |items| {
        for value in values {
            items.push(end, value.clone());
        }
        items.len()
    });
    Reply::Integer(len.unwrap_or(0) as i64)
}

pub(crate) fn lmove(
    keyspace: &mut Keyspace,
    source: &Bytes,
    destination: &Bytes,
    from: ListEnd,
    to: ListEnd,
    now: u64,
) -> Reply {
    match list_at(keyspace, source, now) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    }
    if let Err(error) = list_at(keyspace, destination, now) {
        return error;
    }
    if source == destination {
        // One list: rotate it in place, so it keeps its expiry even when
        // it holds a single item.
        let item = with_list(keyspace, source, now, |items| {
            let item = items.pop(from)?;
            items.push(to, item.clone());
            Some(item)
        });
        return item.flatten().map_or(Reply::Null, Reply::Bulk);
    }
    let Some(Some(item)) = with_list(keyspace, source, now, |items| items.pop(from)) else {
        return Reply::Null;
    };
    match change_list(keyspace, destination, now, |items| {
        items.push(to, item.clone())
    }) {
        Ok(()) => Reply::Bulk(item),
        Err(error) => error,
    }
}

pub(crate) fn lmpop(
    keyspace: &mut Keyspace,
    keys: &[Bytes],
    end: ListEnd,
    count: u64,
    now: u64,
) -> Reply {
    for key in keys {
        match list_at(keyspace, key, now) {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(error) => return error,
        }
        let popped = with_list(keyspace, key, now, |items| {
            let mut popped = Vec::new();
            while (popped.len() as u64) < count {
                match items.pop(end) {
                    Some(item) => popped.push(Reply::Bulk(item)),
                    None => break,
                }
            }
            popped
        });
        return Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(popped.unwrap_or_default()),
        ]);
    }
    Reply::NullArray
}

/// Elements a list read visits (for the transaction budget and the
/// off-loop decision): `LPOS` compares up to `MAXLEN` items, `LINDEX` one.
pub(crate) fn read_work(keyspace: &impl Lookup, key: &[u8], maxlen: u64, now: u64) -> usize {
    match list_at(keyspace, key, now) {
        Ok(Some(items)) if maxlen == 0 => items.len(),
        Ok(Some(items)) => usize::try_from(maxlen)
            .unwrap_or(usize::MAX)
            .min(items.len()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_resolve_like_redis() {
        assert_eq!(resolve_index(3, 0), Some(0));
        assert_eq!(resolve_index(3, 2), Some(2));
        assert_eq!(resolve_index(3, 3), None);
        assert_eq!(resolve_index(3, -1), Some(2));
        assert_eq!(resolve_index(3, -3), Some(0));
        assert_eq!(resolve_index(3, -4), None);
        assert_eq!(resolve_index(3, i64::MIN), None);
        assert_eq!(resolve_index(3, i64::MAX), None);
        assert_eq!(resolve_index(0, 0), None);
    }
}
