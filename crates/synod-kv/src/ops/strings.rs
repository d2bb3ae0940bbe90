//! String commands.

use bytes::{Bytes, BytesMut};
use synod::ApplyContext;
use synod_resp::Reply;

use super::{now_signed, wrong_type, OVERFLOW};
use crate::command::{setex_name, GetExExpiry, SetCondition, SetExpiry, TimeUnit};
use crate::keyspace::{Keyspace, StrRef, Value, ValueRef};
use crate::number::{format_f64, incrbyfloat_text, parse_f64, parse_i64};
use crate::parse::{invalid_expire_time, NOT_AN_INTEGER, NOT_A_FLOAT};

/// Largest string value, as Redis' default `proto-max-bulk-len`.
pub(crate) const STRING_LEN_MAX: u64 = 512 * 1024 * 1024;

fn too_long() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// The live string at `key`: `Ok(None)` when absent, an error reply when the
/// key holds another type.
fn string_at<'a>(
    keyspace: &'a Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<StrRef<'a>>, Reply> {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        None => Ok(None),
        Some(ValueRef::Str(value)) => Ok(Some(value)),
        Some(_) => Err(wrong_type()),
    }
}

fn bulk_or_null(value: Option<Bytes>) -> Reply {
    value.map_or(Reply::Null, Reply::Bulk)
}

/// How a write sets the key's expiry, resolved against the log time.
#[derive(Clone, Copy)]
enum ExpiryPlan {
    Clear,
    Keep,
    /// Absolute Unix ms; at or before now means "already expired".
    At(i64),
}

/// `now + ttl_ms`, with Redis' checks (positive, no overflow).
fn after(ttl_ms: i64, ctx: &ApplyContext, name: &str) -> Result<i64, Reply> {
    if ttl_ms <= 0 {
        return Err(invalid_expire_time(name));
    }
    now_signed(ctx)
        .checked_add(ttl_ms)
        .ok_or_else(|| invalid_expire_time(name))
}

fn at(unix_ms: i64, name: &str) -> Result<i64, Reply> {
    if unix_ms <= 0 {
        return Err(invalid_expire_time(name));
    }
    Ok(unix_ms)
}

/// The expiry a string stored under `key` gets by `plan`, or `None` when
/// the key was deleted instead (its new expiry is already past: Redis does
/// the same for `SET ... EXAT <past>`).
fn planned_expiry(
    keyspace: &mut Keyspace,
    key: &Bytes,
    plan: ExpiryPlan,
    now: u64,
) -> Option<Option<u64>> {
    // Only keeping the expiry needs to know whether the old entry is live;
    // otherwise `insert` replaces the entry whole (its size and its expiry
    // index entry with it), live or expired, and a SET walks the trie once
    // (the insertion hands back the old entry).
    match plan {
        ExpiryPlan::Clear => Some(None),
        ExpiryPlan::Keep => {
            keyspace.remove_if_expired(key, now);
            Some(
                keyspace
                    .live(key, now)
                    .and_then(|entry| entry.expire_at_ms()),
            )
        }
        ExpiryPlan::At(at) => match u64::try_from(at) {
            Ok(at) if at > now => Some(Some(at)),
            _ => {
                keyspace.remove(key);
                None
            }
        },
    }
}

/// Stores a string the command carries under `key` with the planned
/// expiry (see [`planned_expiry`]); a short one is copied into the entry
/// without cloning the command's buffer.
fn store(keyspace: &mut Keyspace, key: &Bytes, value: &Bytes, plan: ExpiryPlan, now: u64) {
    if let Some(expire_at_ms) = planned_expiry(keyspace, key, plan, now) {
        keyspace.insert_string(key, value, expire_at_ms);
    }
}

/// Replaces the value of a live string key, keeping its expiry (INCR,
/// APPEND, SETRANGE); creates the key without expiry if absent. The value
/// is moved in (a long one is kept as it is, not cloned).
fn overwrite(keyspace: &mut Keyspace, key: &Bytes, value: Bytes, now: u64) {
    if let Some(expire_at_ms) = planned_expiry(keyspace, key, ExpiryPlan::Keep, now) {
        keyspace.insert(key, Value::Str(value), expire_at_ms);
    }
}

pub(crate) fn get(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match string_at(keyspace, key, now) {
        Ok(value) => bulk_or_null(value.map(StrRef::to_bytes)),
        Err(error) => error,
    }
}

pub(crate) fn set(
    keyspace: &mut Keyspace,
    key: &Bytes,
    value: &Bytes,
    condition: SetCondition,
    get: bool,
    expiry: SetExpiry,
    ctx: &ApplyContext,
) -> Reply {
    let now = ctx.time_ms;
    let plan = match expiry {
        SetExpiry::Clear => Ok(ExpiryPlan::Clear),
        SetExpiry::Keep => Ok(ExpiryPlan::Keep),
        SetExpiry::After { ttl_ms } => after(ttl_ms, ctx, "set").map(ExpiryPlan::At),
        SetExpiry::At { unix_ms } => at(unix_ms, "set").map(ExpiryPlan::At),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(error) => return error,
    };
    let old = if get {
        match string_at(keyspace, key, now) {
            Ok(old) => Some(old.map(StrRef::to_bytes)),
            Err(error) => return error,
        }
    } else {
        None
    };
    let skip = match condition {
        SetCondition::Always => false,
        SetCondition::IfAbsent => keyspace.live(key, now).is_some(),
        SetCondition::IfPresent => keyspace.live(key, now).is_none(),
    };
    if !skip {
        store(keyspace, key, value, plan, now);
    }
    match old {
        Some(old) => bulk_or_null(old),
        None if skip => Reply::Null,
        None => Reply::ok(),
    }
}

pub(crate) fn setnx(keyspace: &mut Keyspace, key: &Bytes, value: &Bytes, now: u64) -> Reply {
    if keyspace.live(key, now).is_some() {
        return Reply::Integer(0);
    }
    store(keyspace, key, value, ExpiryPlan::Clear, now);
    Reply::Integer(1)
}

pub(crate) fn setex(
    keyspace: &mut Keyspace,
    key: &Bytes,
    value: &Bytes,
    unit: TimeUnit,
    ttl_ms: i64,
    ctx: &ApplyContext,
) -> Reply {
    match after(ttl_ms, ctx, setex_name(unit)) {
        Ok(at) => {
            store(keyspace, key, value, ExpiryPlan::At(at), ctx.time_ms);
            Reply::ok()
        }
        Err(error) => error,
    }
}

pub(crate) fn getset(keyspace: &mut Keyspace, key: &Bytes, value: &Bytes, now: u64) -> Reply {
    let old = match string_at(keyspace, key, now) {
        Ok(old) => old.map(StrRef::to_bytes),
        Err(error) => return error,
    };
    store(keyspace, key, value, ExpiryPlan::Clear, now);
    bulk_or_null(old)
}

pub(crate) fn getdel(keyspace: &mut Keyspace, key: &Bytes, now: u64) -> Reply {
    let old = match string_at(keyspace, key, now) {
        Ok(old) => old.map(StrRef::to_bytes),
        Err(error) => return error,
    };
    if old.is_some() {
        keyspace.remove(key);
    }
    bulk_or_null(old)
}

pub(crate) fn getex(
    keyspace: &mut Keyspace,
    key: &Bytes,
    expiry: GetExExpiry,
    ctx: &ApplyContext,
) -> Reply {
    let now = ctx.time_ms;
    let value = match string_at(keyspace, key, now) {
        Ok(Some(value)) => value.to_bytes(),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let new_expiry = match expiry {
        GetExExpiry::Unchanged => return Reply::Bulk(value),
        GetExExpiry::Persist => None,
        GetExExpiry::After { ttl_ms } => match after(ttl_ms, ctx, "getex") {
            Ok(at) => Some(at),
            Err(error) => return error,
        },
        GetExExpiry::At { unix_ms } => match at(unix_ms, "getex") {
            Ok(at) => Some(at),
            Err(error) => return error,
        },
    };
    match new_expiry.map(u64::try_from) {
        None => keyspace.set_expiry(key, None),
        Some(Ok(at)) if at > now => keyspace.set_expiry(key, Some(at)),
        Some(_) => {
            keyspace.remove(key);
        }
    }
    Reply::Bulk(value)
}

/// MGET. A key may be named many times: the values it returns are bounded
/// by [`super::REPLY_BYTES_MAX`], counted as they are gathered.
pub(crate) fn mget(keyspace: &Keyspace, keys: &[Bytes], now: u64) -> Reply {
    let mut bytes = 0u64;
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        values.push(match keyspace.live(key, now).map(|entry| entry.value()) {
            Some(ValueRef::Str(value)) => {
                bytes = bytes.saturating_add(value.len() as u64);
                if bytes > super::REPLY_BYTES_MAX {
                    return super::reply_too_large("MGET");
                }
                Reply::Bulk(value.to_bytes())
            }
            _ => Reply::Null,
        });
    }
    Reply::Array(values)
}

pub(crate) fn mset(keyspace: &mut Keyspace, pairs: &[(Bytes, Bytes)]) -> Reply {
    for (key, value) in pairs {
        keyspace.insert_string(key, value, None);
    }
    Reply::ok()
}

pub(crate) fn msetnx(keyspace: &mut Keyspace, pairs: &[(Bytes, Bytes)], now: u64) -> Reply {
    if pairs
        .iter()
        .any(|(key, _)| keyspace.live(key, now).is_some())
    {
        return Reply::Integer(0);
    }
    mset(keyspace, pairs);
    Reply::Integer(1)
}

pub(crate) fn incrby(keyspace: &mut Keyspace, key: &Bytes, delta: i64, now: u64) -> Reply {
    let current = match string_at(keyspace, key, now) {
        Ok(None) => 0,
        Ok(Some(text)) => match parse_i64(&text) {
            Some(current) => current,
            None => return Reply::error(NOT_AN_INTEGER),
        },
        Err(error) => return error,
    };
    let Some(next) = current.checked_add(delta) else {
        return Reply::error(OVERFLOW);
    };
    overwrite(keyspace, key, Bytes::from(next.to_string()), now);
    Reply::Integer(next)
}

pub(crate) fn incrbyfloat(keyspace: &mut Keyspace, key: &Bytes, delta: f64, now: u64) -> Reply {
    let (current, current_text) = match string_at(keyspace, key, now) {
        Ok(None) => (0.0, Bytes::from_static(b"0")),
        Ok(Some(text)) => match parse_f64(&text) {
            Some(current) => (current, text.to_bytes()),
            None => return Reply::error(NOT_A_FLOAT),
        },
        Err(error) => return error,
    };
    let next = current + delta;
    if !next.is_finite() {
        return Reply::error("ERR increment would produce NaN or Infinity");
    }
    // Redis' precision (17 decimals of an exact sum), see `incrbyfloat_text`.
    let text = incrbyfloat_text(&current_text, delta).unwrap_or_else(|| format_f64(next));
    let text = Bytes::from(text);
    overwrite(keyspace, key, text.clone(), now);
    Reply::Bulk(text)
}

pub(crate) fn append(keyspace: &mut Keyspace, key: &Bytes, suffix: &Bytes, now: u64) -> Reply {
    let next = match string_at(keyspace, key, now) {
        Ok(None) => suffix.clone(),
        Ok(Some(current)) => {
            if current.len() as u64 + suffix.len() as u64 > STRING_LEN_MAX {
                return too_long();
            }
            let mut joined = BytesMut::with_capacity(current.len() + suffix.len());
            joined.extend_from_slice(&current);
            joined.extend_from_slice(suffix);
            joined.freeze()
        }
        Err(error) => return error,
    };
    let len = next.len();
    overwrite(keyspace, key, next, now);
    Reply::Integer(len as i64)
}

pub(crate) fn strlen(keyspace: &Keyspace, key: &[u8], now: u64) -> Reply {
    match string_at(keyspace, key, now) {
        Ok(value) => Reply::Integer(value.map_or(0, |value| value.len() as i64)),
        Err(error) => error,
    }
}

pub(crate) fn getrange(keyspace: &Keyspace, key: &[u8], start: i64, end: i64, now: u64) -> Reply {
    let value = match string_at(keyspace, key, now) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Bulk(Bytes::new()),
        Err(error) => return error,
    };
    let len = value.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return Reply::Bulk(Bytes::new());
    }
    let resolve = |index: i64| {
        if index < 0 {
            (len + index).max(0)
        } else {
            index
        }
    };
    let start = resolve(start);
    let end = resolve(end).min(len - 1);
    if start > end {
        return Reply::Bulk(Bytes::new());
    }
    Reply::Bulk(value.to_bytes().slice(start as usize..=end as usize))
}

pub(crate) fn setrange(
    keyspace: &mut Keyspace,
    key: &Bytes,
    offset: u64,
    patch: &Bytes,
    now: u64,
) -> Reply {
    let current = match string_at(keyspace, key, now) {
        Ok(current) => current,
        Err(error) => return error,
    };
    if patch.is_empty() {
        return Reply::Integer(current.map_or(0, |value| value.len() as i64));
    }
    match offset.checked_add(patch.len() as u64) {
        Some(end) if end <= STRING_LEN_MAX => {}
        _ => return too_long(),
    }
    let offset = offset as usize;
    let current: &[u8] = current.as_deref().unwrap_or(&[]);
    let new_len = current.len().max(offset + patch.len());
    let mut next = BytesMut::with_capacity(new_len);
    next.extend_from_slice(current);
    next.resize(new_len, 0);
    next[offset..offset + patch.len()].copy_from_slice(patch);
    overwrite(keyspace, key, next.freeze(), now);
    Reply::Integer(new_len as i64)
}
