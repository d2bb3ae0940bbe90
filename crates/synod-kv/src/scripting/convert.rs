//! Conversions between Redis replies and Lua values, as Redis 7 makes them
//! (`luaPushReply` / `luaReplyToRedisReply`).
//!
//! Reply -> Lua (what `redis.call` returns), in RESP2 mode: integer ->
//! number; bulk -> string; nil -> false; array -> table; status -> `{ok=s}`;
//! error -> `{err=s}`; a map or pairs -> a flat table; a double -> its text;
//! a boolean -> 1 or 0. In RESP3 mode (`redis.setresp(3)`): nil -> nil,
//! map -> `{map={k=v}}`, set -> `{set={m=true}}`, double -> `{double=x}`,
//! boolean -> boolean.
//!
//! Lua -> reply (what the script returns): string -> bulk; number -> integer
//! (truncated); true -> 1; false and nil -> nil; a table with `err` -> error,
//! with `ok` -> status, with `double`/`map`/`set` -> those; any other table
//! -> array of its items 1, 2, ... up to the first nil. Fields are read raw
//! (no metamethods run), and nesting is bounded by [`REPLY_DEPTH_MAX`].

use bytes::Bytes;
use mlua::{Lua, Table, Value};
use synod_resp::Reply;

/// Deepest nesting of tables converted into a reply; deeper (a table that
/// holds itself) is answered with Redis' error in its place.
pub(crate) const REPLY_DEPTH_MAX: usize = 30;

/// The protocol `redis.call` replies are converted in (`redis.setresp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScriptResp {
    Two,
    Three,
}

/// A command's reply as the Lua value `redis.call` returns.
pub(crate) fn reply_to_lua(lua: &Lua, reply: &Reply, resp: ScriptResp) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Simple(text) => {
            let table = lua.create_table()?;
            table.raw_set("ok", lua.create_string(text.as_bytes())?)?;
            Value::Table(table)
        }
        Reply::Error(text) => error_table(lua, text)?,
        Reply::Integer(n) => Value::Number(*n as f64),
        Reply::Bulk(bytes) | Reply::Verbatim(bytes) => Value::String(lua.create_string(bytes)?),
        Reply::Null | Reply::NullArray => match resp {
            ScriptResp::Two => Value::Boolean(false),
            ScriptResp::Three => Value::Nil,
        },
        Reply::Array(items) | Reply::Push(items) => sequence(lua, items.iter(), resp)?,
        Reply::Set(items) => match resp {
            ScriptResp::Two => sequence(lua, items.iter(), resp)?,
            ScriptResp::Three => {
                let members = lua.create_table()?;
                for item in items {
                    members.raw_set(reply_to_lua(lua, item, resp)?, true)?;
                }
                wrapped(lua, "set", Value::Table(members))?
            }
        },
        Reply::Map(pairs) => match resp {
            ScriptResp::Two => flat_pairs(lua, pairs, resp)?,
            ScriptResp::Three => {
                let map = lua.create_table()?;
                for (key, value) in pairs {
                    map.raw_set(
                        reply_to_lua(lua, key, resp)?,
                        reply_to_lua(lua, value, resp)?,
                    )?;
                }
                wrapped(lua, "map", Value::Table(map))?
            }
        },
        Reply::Pairs(pairs) => match resp {
            ScriptResp::Two => flat_pairs(lua, pairs, resp)?,
            ScriptResp::Three => {
                let table = lua.create_table()?;
                for (i, (first, second)) in pairs.iter().enumerate() {
                    let pair = lua.create_table()?;
                    pair.raw_set(1, reply_to_lua(lua, first, resp)?)?;
                    pair.raw_set(2, reply_to_lua(lua, second, resp)?)?;
                    table.raw_set(i + 1, pair)?;
                }
                Value::Table(table)
            }
        },
        Reply::Double(x) => match resp {
            // As a RESP2 client reads it (`%.17g`, inf and nan by name), as
            // Redis 7.0 converts a double reply for a RESP2 script.
            ScriptResp::Two => Value::String(lua.create_string(synod_resp::format_double(*x))?),
            ScriptResp::Three => wrapped(lua, "double", Value::Number(*x))?,
        },
        Reply::Bool(b) => match resp {
            ScriptResp::Two => Value::Number(if *b { 1.0 } else { 0.0 }),
            ScriptResp::Three => Value::Boolean(*b),
        },
    })
}

/// `{err=text}`.
pub(crate) fn error_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(text)?)?;
    Ok(Value::Table(table))
}

fn wrapped(lua: &Lua, field: &str, value: Value) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set(field, value)?;
    Ok(Value::Table(table))
}

fn sequence<'a>(
    lua: &Lua,
    items: impl Iterator<Item = &'a Reply>,
    resp: ScriptResp,
) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    for (i, item) in items.enumerate() {
        table.raw_set(i + 1, reply_to_lua(lua, item, resp)?)?;
    }
    Ok(Value::Table(table))
}

fn flat_pairs(lua: &Lua, pairs: &[(Reply, Reply)], resp: ScriptResp) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    for (i, (first, second)) in pairs.iter().enumerate() {
        table.raw_set(2 * i + 1, reply_to_lua(lua, first, resp)?)?;
        table.raw_set(2 * i + 2, reply_to_lua(lua, second, resp)?)?;
    }
    Ok(Value::Table(table))
}

/// The reply for the value a script returned. Bounded by
/// [`crate::ops::REPLY_BYTES_MAX`]: a table may hold one string many times
/// (each slot a reference, so Lua's memory limit allows millions), and the
/// reply copies it each time; past the bound the script is answered with
/// an error instead. The total is the same in any order the table is
/// walked, so every replica decides the same.
pub(crate) fn lua_to_reply(value: &Value) -> Reply {
    let mut bytes = 0u64;
    let reply = lua_to_reply_at(value, 0, &mut bytes);
    if bytes > crate::ops::REPLY_BYTES_MAX {
        return crate::ops::reply_too_large("script");
    }
    reply
}

/// `bytes`: what the reply built so far holds (see
/// `crate::ops::reply_bytes`); once past the bound nothing more is copied.
fn lua_to_reply_at(value: &Value, depth: usize, bytes: &mut u64) -> Reply {
    *bytes = bytes.saturating_add(crate::ops::REPLY_ENTRY_BYTES);
    if *bytes > crate::ops::REPLY_BYTES_MAX {
        return Reply::Null;
    }
    match value {
        Value::String(text) => {
            let text = text.as_bytes();
            *bytes = bytes.saturating_add(text.len() as u64);
            if *bytes > crate::ops::REPLY_BYTES_MAX {
                return Reply::Null;
            }
            Reply::Bulk(Bytes::copy_from_slice(&text))
        }
        Value::Boolean(true) => Reply::Integer(1),
        Value::Boolean(false) | Value::Nil => Reply::Null,
        // Redis truncates toward zero (a C cast); `as` saturates and maps
        // NaN to 0, which a C cast leaves undefined.
        Value::Number(n) => Reply::Integer(*n as i64),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Table(table) => table_to_reply(table, depth, bytes),
        _ => Reply::Null,
    }
}

fn raw_string(table: &Table, field: &str) -> Option<Vec<u8>> {
    match table.raw_get::<Value>(field).ok()? {
        Value::String(text) => Some(text.as_bytes().to_vec()),
        _ => None,
    }
}

/// An error or status text as a reply line: CR and LF become spaces, as
/// Redis does, so the line cannot break the protocol.
pub(crate) fn one_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

fn table_to_reply(table: &Table, depth: usize, bytes: &mut u64) -> Reply {
    if depth >= REPLY_DEPTH_MAX {
        return Reply::error("ERR reached lua stack limit");
    }
    if let Some(err) = raw_string(table, "err") {
        return Reply::Error(one_line(&err));
    }
    if let Some(ok) = raw_string(table, "ok") {
        return Reply::simple(one_line(&ok));
    }
    if let Ok(Value::Number(x)) = table.raw_get::<Value>("double") {
        return Reply::Double(x);
    }
    if let Ok(Value::Table(map)) = table.raw_get::<Value>("map") {
        let mut pairs = Vec::new();
        for (key, value) in map.pairs::<Value, Value>().flatten() {
            pairs.push((
                lua_to_reply_at(&key, depth + 1, bytes),
                lua_to_reply_at(&value, depth + 1, bytes),
            ));
            if *bytes > crate::ops::REPLY_BYTES_MAX {
                break;
            }
        }
        return Reply::Map(pairs);
    }
    if let Ok(Value::Table(set)) = table.raw_get::<Value>("set") {
        let mut members = Vec::new();
        for (key, _) in set.pairs::<Value, Value>().flatten() {
            members.push(lua_to_reply_at(&key, depth + 1, bytes));
            if *bytes > crate::ops::REPLY_BYTES_MAX {
                break;
            }
        }
        return Reply::Set(members);
    }
    let mut items = Vec::new();
    for index in 1.. {
        match table.raw_get::<Value>(index) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => {
                items.push(lua_to_reply_at(&item, depth + 1, bytes));
                if *bytes > crate::ops::REPLY_BYTES_MAX {
                    break;
                }
            }
        }
    }
    Reply::Array(items)
}
