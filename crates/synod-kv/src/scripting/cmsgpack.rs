//! The `cmsgpack` library Redis bundles for scripts (lua-cmsgpack 0.4.0):
//! `pack`, `unpack`, `unpack_one`, `unpack_limit`.
//!
//! Byte for byte what lua-cmsgpack writes, so digests and stored blobs
//! agree with Redis: the smallest integer encoding for integral numbers
//! (within int64), a 32-bit float when it holds the number exactly, else a
//! 64-bit one; strings as str8/16/32; a table whose keys are exactly
//! 1..n is an array, anything else a map written in the table's `next`
//! order; tables nested deeper than [`ENCODE_NESTING_MAX`] (16, as
//! lua-cmsgpack) are written as nil, so a table that holds itself encodes
//! to a bounded depth.
//!
//! # Bounds
//! - Packing: the output is bounded by the run's memory limit before it
//!   grows (nested self-references can otherwise multiply it).
//! - Unpacking: every length in a header is checked against the bytes left
//!   before anything is allocated (a 4 GiB array header over 5 bytes is
//!   "Missing bytes in input."), and nesting is bounded by
//!   [`DECODE_NESTING_MAX`] so the recursion cannot exhaust the stack.
//!   Lua values it creates count against the Lua state's memory limit.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::cjson::{number_of, string_bytes};

/// Deepest table nesting `pack` writes; deeper tables become nil (lua-cmsgpack's
/// `LUACMSGPACK_MAX_NESTING`).
pub(crate) const ENCODE_NESTING_MAX: usize = 16;
/// Deepest nesting `unpack` reads.
pub(crate) const DECODE_NESTING_MAX: usize = 1000;
/// Most values one `unpack` returns (Lua's C stack holds about 8000).
pub(crate) const UNPACK_RESULTS_MAX: usize = 7000;

/// 2^63: the integral doubles below it in magnitude convert to int64.
const INT64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn lua_error(text: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(text.into())
}

/// Builds the `cmsgpack` table; `output_bytes_max` bounds a packed text.
pub(crate) fn library(lua: &Lua, output_bytes_max: usize) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.set(
        "pack",
        lua.create_function(move |lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(lua_error(
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for value in args.iter() {
                encode(value, 0, &mut out, output_bytes_max)?;
            }
            // Written a byte at a time (see `cost`).
            super::cost::charge(lua, out.len() / super::cost::CHARS_PER_UNIT);
            lua.create_string(&out)
        })?,
    )?;
    cmsgpack.set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| {
            let data = input(lua, args.first(), "unpack")?;
            // Parsed a byte at a time (see `cost`).
            super::cost::charge(lua, data.len() / super::cost::CHARS_PER_UNIT);
            unpack(lua, &data, 0, 0)
        })?,
    )?;
    cmsgpack.set(
        "unpack_one",
        lua.create_function(|lua, args: Variadic<Value>| {
            let data = input(lua, args.first(), "unpack_one")?;
            let offset = optional_integer(args.get(1), 2, "unpack_one")?.unwrap_or(0);
            // Parsed a byte at a time (see `cost`).
            super::cost::charge(lua, data.len() / super::cost::CHARS_PER_UNIT);
            unpack(lua, &data, 1, offset)
        })?,
    )?;
    cmsgpack.set(
        "unpack_limit",
        lua.create_function(|lua, args: Variadic<Value>| {
            let data = input(lua, args.first(), "unpack_limit")?;
            let limit = optional_integer(args.get(1), 2, "unpack_limit")?.ok_or_else(|| {
                lua_error("bad argument #2 to 'unpack_limit' (number expected, got no value)")
            })?;
            let offset = optional_integer(args.get(2), 3, "unpack_limit")?.unwrap_or(0);
            // Parsed a byte at a time (see `cost`).
            super::cost::charge(lua, data.len() / super::cost::CHARS_PER_UNIT);
            unpack(lua, &data, limit, offset)
        })?,
    )?;
    cmsgpack.set("_NAME", "cmsgpack")?;
    cmsgpack.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    cmsgpack.set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    cmsgpack.set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(cmsgpack)
}

fn input(lua: &Lua, value: Option<&Value>, name: &str) -> mlua::Result<Vec<u8>> {
    if let Some(bytes) = value.map(|v| string_bytes(lua, v)).transpose()?.flatten() {
        return Ok(bytes);
    }
    Err(lua_error(format!(
        "bad argument #1 to '{name}' (string expected, got {})",
        value.map_or("no value", Value::type_name)
    )))
}

/// An optional integer argument (`luaL_optinteger`: a number, truncated).
fn optional_integer(
    value: Option<&Value>,
    position: usize,
    name: &str,
) -> mlua::Result<Option<i64>> {
    match value {
        None | Some(Value::Nil) => Ok(None),
        Some(value) => match number_of(value) {
            Some(x) if x.is_finite() => Ok(Some(x.clamp(i32::MIN as f64, i32::MAX as f64) as i64)),
            _ => Err(lua_error(format!(
                "bad argument #{position} to '{name}' (number expected, got {})",
                value.type_name()
            ))),
        },
    }
}

fn append(out: &mut Vec<u8>, bytes: &[u8], output_bytes_max: usize) -> mlua::Result<()> {
    if out.len().saturating_add(bytes.len()) > output_bytes_max {
        return Err(lua_error(format!(
            "MessagePack pack: the packed text exceeds {output_bytes_max} bytes"
        )));
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode(value: &Value, level: usize, out: &mut Vec<u8>, max: usize) -> mlua::Result<()> {
    match value {
        Value::String(text) => encode_bytes(&text.as_bytes(), out, max),
        Value::Boolean(true) => append(out, &[0xc3], max),
        Value::Boolean(false) => append(out, &[0xc2], max),
        Value::Integer(_) | Value::Number(_) => {
            let x = number_of(value).unwrap_or(0.0);
            // lua-cmsgpack's IS_INT64_EQUIVALENT: finite and (int64)x == x.
            if x.is_finite() && x.fract() == 0.0 && (-INT64_LIMIT..INT64_LIMIT).contains(&x) {
                encode_int(x as i64, out, max)
            } else {
                encode_double(x, out, max)
            }
        }
        Value::Table(table) if level < ENCODE_NESTING_MAX => encode_table(table, level, out, max),
        _ => append(out, &[0xc0], max),
    }
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>, max: usize) -> mlua::Result<()> {
    let len = bytes.len();
    if len < 32 {
        append(out, &[0xa0 | len as u8], max)?;
    } else if len <= 0xff {
        append(out, &[0xd9, len as u8], max)?;
    } else if len <= 0xffff {
        append(out, &[0xda], max)?;
        append(out, &(len as u16).to_be_bytes(), max)?;
    } else {
        let len = u32::try_from(len).map_err(|_| lua_error("MessagePack pack: string too long"))?;
        append(out, &[0xdb], max)?;
        append(out, &len.to_be_bytes(), max)?;
    }
    append(out, bytes, max)
}

fn encode_int(n: i64, out: &mut Vec<u8>, max: usize) -> mlua::Result<()> {
    if n >= 0 {
        if n <= 127 {
            append(out, &[n as u8], max)
        } else if n <= 0xff {
            append(out, &[0xcc, n as u8], max)
        } else if n <= 0xffff {
            append(out, &[0xcd], max)?;
            append(out, &(n as u16).to_be_bytes(), max)
        } else if n <= 0xffff_ffff {
            append(out, &[0xce], max)?;
            append(out, &(n as u32).to_be_bytes(), max)
        } else {
            append(out, &[0xcf], max)?;
            append(out, &(n as u64).to_be_bytes(), max)
        }
    } else if n >= -32 {
        append(out, &[n as i8 as u8], max)
    } else if n >= -128 {
        append(out, &[0xd0, n as i8 as u8], max)
    } else if n >= -32768 {
        append(out, &[0xd1], max)?;
        append(out, &(n as i16).to_be_bytes(), max)
    } else if n >= -2_147_483_648 {
        append(out, &[0xd2], max)?;
        append(out, &(n as i32).to_be_bytes(), max)
    } else {
        append(out, &[0xd3], max)?;
        append(out, &n.to_be_bytes(), max)
    }
}

fn encode_double(x: f64, out: &mut Vec<u8>, max: usize) -> mlua::Result<()> {
    let single = x as f32;
    if f64::from(single) == x {
        append(out, &[0xca], max)?;
        append(out, &single.to_be_bytes(), max)
    } else {
        append(out, &[0xcb], max)?;
        append(out, &x.to_be_bytes(), max)
    }
}

/// lua-cmsgpack's `table_is_an_array`: every key a positive integer and
/// the largest equal to the count (an empty table is an empty array).
fn is_array(table: &Table) -> mlua::Result<bool> {
    let mut count = 0usize;
    let mut max = 0.0f64;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        match number_of(&key) {
            Some(k) if k > 0.0 && k.fract() == 0.0 && k.is_finite() => {
                max = max.max(k);
                count += 1;
            }
            _ => return Ok(false),
        }
    }
    Ok(max == count as f64)
}

fn encode_table(table: &Table, level: usize, out: &mut Vec<u8>, max: usize) -> mlua::Result<()> {
    if is_array(table)? {
        let len = table.raw_len();
        encode_header(len, 0x90, 0xdc, 0xdd, out, max)?;
        for index in 1..=len {
            let item: Value = table.raw_get(index)?;
            encode(&item, level + 1, out, max)?;
        }
        return Ok(());
    }
    let mut len = 0usize;
    for pair in table.pairs::<Value, Value>() {
        pair?;
        len += 1;
    }
    encode_header(len, 0x80, 0xde, 0xdf, out, max)?;
    for pair in table.pairs::<Value, Value>() {
        let (key, item) = pair?;
        encode(&key, level + 1, out, max)?;
        encode(&item, level + 1, out, max)?;
    }
    Ok(())
}

fn encode_header(
    len: usize,
    fix: u8,
    short: u8,
    long: u8,
    out: &mut Vec<u8>,
    max: usize,
) -> mlua::Result<()> {
    if len <= 15 {
        append(out, &[fix | len as u8], max)
    } else if len <= 0xffff {
        append(out, &[short], max)?;
        append(out, &(len as u16).to_be_bytes(), max)
    } else {
        let len = u32::try_from(len).map_err(|_| lua_error("MessagePack pack: table too large"))?;
        append(out, &[long], max)?;
        append(out, &len.to_be_bytes(), max)
    }
}

/// Why decoding stopped.
#[derive(Debug, PartialEq, Eq)]
enum DecodeError {
    /// The input ends inside a value.
    Eof,
    /// A byte that starts no value this library reads.
    BadFormat,
    /// Nested deeper than [`DECODE_NESTING_MAX`].
    TooDeep,
}

/// lua-cmsgpack's `mp_unpack_full`: `limit` values (0 with offset 0: all)
/// from `offset`; unless all were asked for, the next offset (-1 at the
/// end) comes first.
fn unpack(lua: &Lua, data: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let decode_all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        return Err(lua_error(format!(
            "Invalid request to unpack with offset of {offset} and limit of {limit}."
        )));
    }
    let offset = offset as usize;
    if offset > data.len() {
        return Err(lua_error(format!(
            "Start offset {offset} greater than input length {}.",
            data.len()
        )));
    }
    let limit = if decode_all {
        usize::MAX
    } else {
        limit as usize
    };
    let mut cursor = Cursor { data, at: offset };
    let mut values = Vec::new();
    while cursor.at < data.len() && values.len() < limit {
        if values.len() >= UNPACK_RESULTS_MAX {
            return Err(lua_error(format!(
                "MessagePack unpack: more than {UNPACK_RESULTS_MAX} values; use unpack_limit"
            )));
        }
        match cursor.value(lua, 0) {
            Ok(value) => values.push(value),
            Err(Failure::Decode(DecodeError::Eof)) => {
                return Err(lua_error("Missing bytes in input."))
            }
            Err(Failure::Decode(DecodeError::BadFormat)) => {
                return Err(lua_error("Bad data format in input."))
            }
            Err(Failure::Decode(DecodeError::TooDeep)) => {
                return Err(lua_error(format!(
                    "MessagePack unpack: nesting deeper than {DECODE_NESTING_MAX}"
                )))
            }
            Err(Failure::Lua(error)) => return Err(error),
        }
    }
    let mut result = Vec::with_capacity(values.len() + 1);
    if !decode_all {
        let next = if cursor.at >= data.len() {
            -1.0
        } else {
            cursor.at as f64
        };
        result.push(Value::Number(next));
    }
    result.extend(values);
    Ok(MultiValue::from_iter(result))
}

enum Failure {
    Decode(DecodeError),
    Lua(mlua::Error),
}

impl From<mlua::Error> for Failure {
    fn from(error: mlua::Error) -> Failure {
        Failure::Lua(error)
    }
}

impl From<DecodeError> for Failure {
    fn from(error: DecodeError) -> Failure {
        Failure::Decode(error)
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.left() {
            return Err(DecodeError::Eof);
        }
        let bytes = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> Result<Value, Failure> {
        let first = self.take(1)?[0];
        let value = match first {
            0x00..=0x7f => Value::Number(f64::from(first)),
            0xe0..=0xff => Value::Number(f64::from(first as i8)),
            0xa0..=0xbf => self.string(lua, usize::from(first & 0x1f))?,
            0x90..=0x9f => self.array(lua, usize::from(first & 0x0f), depth)?,
            0x80..=0x8f => self.map(lua, usize::from(first & 0x0f), depth)?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xcc => Value::Number(self.uint(1)? as f64),
            0xcd => Value::Number(self.uint(2)? as f64),
            0xce => Value::Number(self.uint(4)? as f64),
            0xcf => Value::Number(self.uint(8)? as f64),
            0xd0 => Value::Number(f64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Number(f64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Number(f64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Number(self.uint(8)? as i64 as f64),
            0xca => Value::Number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Number(f64::from_bits(self.uint(8)?)),
            0xc4 | 0xd9 => {
                let len = self.uint(1)? as usize;
                self.string(lua, len)?
            }
            0xc5 | 0xda => {
                let len = self.uint(2)? as usize;
                self.string(lua, len)?
            }
            0xc6 | 0xdb => {
                let len = self.uint(4)? as usize;
                self.string(lua, len)?
            }
            0xdc => {
                let len = self.uint(2)? as usize;
                self.array(lua, len, depth)?
            }
            0xdd => {
                let len = self.uint(4)? as usize;
                self.array(lua, len, depth)?
            }
            0xde => {
                let len = self.uint(2)? as usize;
                self.map(lua, len, depth)?
            }
            0xdf => {
                let len = self.uint(4)? as usize;
                self.map(lua, len, depth)?
            }
            _ => return Err(DecodeError::BadFormat.into()),
        };
        Ok(value)
    }

    fn string(&mut self, lua: &Lua, len: usize) -> Result<Value, Failure> {
        let bytes = self.take(len)?;
        Ok(Value::String(lua.create_string(bytes)?))
    }

    fn array(&mut self, lua: &Lua, len: usize, depth: usize) -> Result<Value, Failure> {
        if depth + 1 > DECODE_NESTING_MAX {
            return Err(DecodeError::TooDeep.into());
        }
        // Every item takes at least a byte: a length beyond what is left is
        // a truncated input, found before anything is allocated.
        if len > self.left() {
            return Err(DecodeError::Eof.into());
        }
        let table = lua.create_table_with_capacity(len, 0)?;
        for index in 1..=len {
            let item = self.value(lua, depth + 1)?;
            table.raw_set(index, item)?;
        }
        Ok(Value::Table(table))
    }

    fn map(&mut self, lua: &Lua, len: usize, depth: usize) -> Result<Value, Failure> {
        if depth + 1 > DECODE_NESTING_MAX {
            return Err(DecodeError::TooDeep.into());
        }
        if len.saturating_mul(2) > self.left() {
            return Err(DecodeError::Eof.into());
        }
        let table = lua.create_table_with_capacity(0, len)?;
        for _ in 0..len {
            let key = self.value(lua, depth + 1)?;
            let item = self.value(lua, depth + 1)?;
            // Lua refuses nil and NaN keys; lua-cmsgpack raises Lua's error.
            match &key {
                Value::Nil => return Err(lua_error("table index is nil").into()),
                Value::Number(x) if x.is_nan() => {
                    return Err(lua_error("table index is NaN").into())
                }
                _ => {}
            }
            table.raw_set(key, item)?;
        }
        Ok(Value::Table(table))
    }
}
