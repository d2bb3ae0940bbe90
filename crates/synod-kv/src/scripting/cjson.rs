//! The `cjson` library Redis bundles for scripts (lua-cjson 2.1.0, as
//! Redis ships it): `encode`, `decode`, `null` and the option setters.
//!
//! Written against lua-cjson's documented behaviour, so scripts that run on
//! Redis get the same text and the same values here:
//! - numbers are written as C's `%.14g` (`encode_number_precision`), NaN
//!   and infinity refused unless `encode_invalid_numbers` allows them;
//! - a table is an array when all its keys are integers >= 1 and it is not
//!   excessively sparse (more than twice as many slots as items, beyond 10),
//!   else an object whose keys must be strings or numbers; an empty table is
//!   `{}`; objects are written in the table's `next` order (the same on every
//!   replica: Lua 5.1 hashes strings without a seed);
//! - `/` and control characters are escaped as lua-cjson escapes them;
//! - decoding accepts what lua-cjson accepts by default (`decode_invalid_numbers`:
//!   hexadecimal, `inf`, `nan`, a leading `+`), turns `null` into
//!   `cjson.null` and refuses anything after the value.
//!
//! # Bounds
//! Nesting is bounded both ways by the configured depth (default 1000, as
//! lua-cjson) and never deeper than [`DEPTH_HARD_MAX`], whatever a script
//! configures, so the recursion cannot exhaust the apply thread's stack.
//! The encoder's output is bounded by the run's memory limit before it
//! grows (a table that holds itself many times over cannot make it build
//! gigabytes). Errors are Lua errors with lua-cjson's wording; nothing here
//! panics on a script's input.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{LightUserData, Lua, Table, Value, Variadic};

/// The deepest nesting encoded or decoded, whatever `encode_max_depth` or
/// `decode_max_depth` say: the recursion runs on the apply thread's stack.
pub(crate) const DEPTH_HARD_MAX: usize = 1000;

/// lua-cjson's settings, per run (a fresh state per run resets them).
#[derive(Debug)]
struct Config {
    encode_max_depth: usize,
    decode_max_depth: usize,
    encode_number_precision: usize,
    /// 0: refuse, 1: `NaN`/`Infinity`, 2: `null`.
    encode_invalid_numbers: u8,
    decode_invalid_numbers: bool,
    sparse_convert: bool,
    sparse_ratio: usize,
    sparse_safe: usize,
    keep_buffer: bool,
    /// Bytes an encoded text may reach.
    output_bytes_max: usize,
}

impl Config {
    fn new(output_bytes_max: usize) -> Config {
        Config {
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_number_precision: 14,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            keep_buffer: true,
            output_bytes_max,
        }
    }
}

pub(crate) fn lua_error(text: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(text.into())
}

/// A string argument as Lua's `luaL_checklstring` takes it: the bytes of
/// a string, or a number's text; `None` for any other value.
pub(crate) fn string_bytes(lua: &Lua, value: &Value) -> mlua::Result<Option<Vec<u8>>> {
    match value {
        Value::String(text) => Ok(Some(text.as_bytes().to_vec())),
        Value::Integer(_) | Value::Number(_) => Ok(Some(
            lua.coerce_string(value.clone())?
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default(),
        )),
        _ => Ok(None),
    }
}

/// The number a Lua value holds, if it is a number.
pub(crate) fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(x) => Some(*x),
        _ => None,
    }
}

/// `cjson.null`: a light userdata holding NULL, as lua-cjson's.
pub(crate) fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn is_null(value: &Value) -> bool {
    matches!(value, Value::LightUserData(data) if data.0.is_null())
}

/// C's `printf("%.<precision>g", x)` for a finite `x`.
pub(crate) fn format_g(x: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let scientific = format!("{:.*e}", precision - 1, x);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn strip_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Builds the `cjson` table; `output_bytes_max` bounds an encoded text.
pub(crate) fn library(lua: &Lua, output_bytes_max: usize) -> mlua::Result<Table> {
    let config = Rc::new(RefCell::new(Config::new(output_bytes_max)));
    let cjson = lua.create_table()?;
    {
        let config = Rc::clone(&config);
        cjson.set(
            "encode",
            lua.create_function(move |lua, args: Variadic<Value>| {
                if args.len() != 1 {
                    return Err(lua_error("expected 1 argument"));
                }
                let config = config.borrow();
                let mut out = Vec::new();
                encode_value(&config, &args[0], 0, &mut out)?;
                // Written a byte at a time (see `cost`).
                super::cost::charge(lua, out.len() / super::cost::CHARS_PER_UNIT);
                lua.create_string(&out)
            })?,
        )?;
    }
    {
        let config = Rc::clone(&config);
        cjson.set(
            "decode",
            lua.create_function(move |lua, args: Variadic<Value>| {
                if args.len() != 1 {
                    return Err(lua_error("expected 1 argument"));
                }
                let Some(text) = string_bytes(lua, &args[0])? else {
                    return Err(lua_error(format!(
                        "bad argument #1 to 'decode' (string expected, got {})",
                        args[0].type_name()
                    )));
                };
                // Parsed a byte at a time (see `cost`).
                super::cost::charge(lua, text.len() / super::cost::CHARS_PER_UNIT);
                let config = config.borrow();
                let mut parser = super::cjson_decode::Parser {
                    lua,
                    text: &text,
                    at: 0,
                    depth: 0,
                    depth_max: config.decode_max_depth.min(DEPTH_HARD_MAX),
                    invalid_numbers: config.decode_invalid_numbers,
                };
                parser.document()
            })?,
        )?;
    }
    let integer_option = |name: &'static str,
                          get: fn(&Config) -> usize,
                          set: fn(&mut Config, usize),
                          low: usize,
                          high: usize| {
        let config = Rc::clone(&config);
        lua.create_function(move |_, args: Variadic<Value>| {
            if let Some(value) = args.first().filter(|v| !v.is_nil()) {
                let n = number_of(value)
                    .filter(|n| n.fract() == 0.0 && *n >= low as f64 && *n <= high as f64)
                    .ok_or_else(|| {
                        lua_error(format!(
                            "bad argument #1 to '{name}' (expected integer between {low} and {high})"
                        ))
                    })?;
                set(&mut config.borrow_mut(), n as usize);
            }
            Ok(get(&config.borrow()) as f64)
        })
    };
    let int_max = i32::MAX as usize;
    cjson.set(
        "encode_max_depth",
        integer_option(
            "encode_max_depth",
            |c| c.encode_max_depth,
            |c, n| c.encode_max_depth = n,
            1,
            int_max,
        )?,
    )?;
    cjson.set(
        "decode_max_depth",
        integer_option(
            "decode_max_depth",
            |c| c.decode_max_depth,
            |c, n| c.decode_max_depth = n,
            1,
            int_max,
        )?,
    )?;
    cjson.set(
        "encode_number_precision",
        integer_option(
            "encode_number_precision",
            |c| c.encode_number_precision,
            |c, n| c.encode_number_precision = n,
            1,
            14,
        )?,
    )?;
    {
        let config = Rc::clone(&config);
        cjson.set(
            "encode_keep_buffer",
            lua.create_function(move |_, args: Variadic<Value>| {
                if let Some(on) = bool_option("encode_keep_buffer", args.first())? {
                    config.borrow_mut().keep_buffer = on;
                }
                Ok(config.borrow().keep_buffer)
            })?,
        )?;
    }
    {
        let config = Rc::clone(&config);
        cjson.set(
            "decode_invalid_numbers",
            lua.create_function(move |_, args: Variadic<Value>| {
                if let Some(on) = bool_option("decode_invalid_numbers", args.first())? {
                    config.borrow_mut().decode_invalid_numbers = on;
                }
                Ok(config.borrow().decode_invalid_numbers)
            })?,
        )?;
    }
    {
        let config = Rc::clone(&config);
        cjson.set(
            "encode_invalid_numbers",
            lua.create_function(move |lua, args: Variadic<Value>| {
                let mode = match args.first() {
                    None | Some(Value::Nil) => None,
                    Some(Value::Boolean(on)) => Some(u8::from(*on)),
                    Some(Value::String(text)) => match &*text.as_bytes() {
                        b"off" => Some(0),
                        b"on" => Some(1),
                        b"null" => Some(2),
                        _ => None,
                    }
                    .map(Some)
                    .ok_or_else(|| {
                        lua_error("bad argument #1 to 'encode_invalid_numbers' (invalid option)")
                    })?,
                    Some(_) => {
                        return Err(lua_error(
                            "bad argument #1 to 'encode_invalid_numbers' (invalid option)",
                        ))
                    }
                };
                if let Some(mode) = mode {
                    config.borrow_mut().encode_invalid_numbers = mode;
                }
                Ok(match config.borrow().encode_invalid_numbers {
                    0 => Value::Boolean(false),
                    1 => Value::Boolean(true),
                    _ => Value::String(lua.create_string("null")?),
                })
            })?,
        )?;
    }
    {
        let config = Rc::clone(&config);
        cjson.set(
            "encode_sparse_array",
            lua.create_function(move |_, args: Variadic<Value>| {
                if let Some(on) = bool_option("encode_sparse_array", args.first())? {
                    config.borrow_mut().sparse_convert = on;
                }
                let ratio = args.get(1).and_then(number_of);
                let safe = args.get(2).and_then(number_of);
                let mut config = config.borrow_mut();
                if let Some(ratio) = ratio {
                    if ratio.fract() != 0.0 || !(0.0..=i32::MAX as f64).contains(&ratio) {
                        return Err(lua_error(
                            "bad argument #2 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
                        ));
                    }
                    config.sparse_ratio = ratio as usize;
                }
                if let Some(safe) = safe {
                    if safe.fract() != 0.0 || !(0.0..=i32::MAX as f64).contains(&safe) {
                        return Err(lua_error(
                            "bad argument #3 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
                        ));
                    }
                    config.sparse_safe = safe as usize;
                }
                Ok((
                    config.sparse_convert,
                    config.sparse_ratio as f64,
                    config.sparse_safe as f64,
                ))
            })?,
        )?;
    }
    cjson.set("null", null())?;
    cjson.set("_NAME", "cjson")?;
    cjson.set("_VERSION", "2.1.0")?;
    Ok(cjson)
}

fn bool_option(name: &str, value: Option<&Value>) -> mlua::Result<Option<bool>> {
    match value {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Boolean(on)) => Ok(Some(*on)),
        Some(Value::String(text)) => match &*text.as_bytes() {
            b"on" => Ok(Some(true)),
            b"off" => Ok(Some(false)),
            _ => Err(lua_error(format!(
                "bad argument #1 to '{name}' (invalid option)"
            ))),
        },
        Some(_) => Err(lua_error(format!(
            "bad argument #1 to '{name}' (invalid option)"
        ))),
    }
}

fn encode_error(value: &Value, reason: &str) -> mlua::Error {
    lua_error(format!("Cannot serialise {}: {reason}", value.type_name()))
}

fn push(config: &Config, out: &mut Vec<u8>, bytes: &[u8]) -> mlua::Result<()> {
    if out.len().saturating_add(bytes.len()) > config.output_bytes_max {
        return Err(lua_error(format!(
            "Cannot serialise: the JSON text exceeds {} bytes",
            config.output_bytes_max
        )));
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode_value(
    config: &Config,
    value: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    match value {
        Value::Nil => push(config, out, b"null"),
        Value::LightUserData(_) if is_null(value) => push(config, out, b"null"),
        Value::Boolean(true) => push(config, out, b"true"),
        Value::Boolean(false) => push(config, out, b"false"),
        Value::Integer(_) | Value::Number(_) => {
            let x = number_of(value).unwrap_or(0.0);
            if !x.is_finite() {
                return match config.encode_invalid_numbers {
                    0 => Err(encode_error(value, "must not be NaN or Inf")),
                    1 if x.is_nan() => push(config, out, b"NaN"),
                    1 if x < 0.0 => push(config, out, b"-Infinity"),
                    1 => push(config, out, b"Infinity"),
                    _ => push(config, out, b"null"),
                };
            }
            push(
                config,
                out,
                format_g(x, config.encode_number_precision).as_bytes(),
            )
        }
        Value::String(text) => encode_string(config, &text.as_bytes(), out),
        Value::Table(table) => {
            let depth = depth + 1;
            if depth > config.encode_max_depth.min(DEPTH_HARD_MAX) {
                return Err(lua_error(format!(
                    "Cannot serialise, excessive nesting ({depth})"
                )));
            }
            match array_length(config, table)? {
                Some(length) if length > 0 => {
                    push(config, out, b"[")?;
                    for index in 1..=length {
                        if index > 1 {
                            push(config, out, b",")?;
                        }
                        let item: Value = table.raw_get(index)?;
                        encode_value(config, &item, depth, out)?;
                    }
                    push(config, out, b"]")
                }
                _ => {
                    push(config, out, b"{")?;
                    let mut first = true;
                    for pair in table.pairs::<Value, Value>() {
                        let (key, item) = pair?;
                        if !first {
                            push(config, out, b",")?;
                        }
                        first = false;
                        match &key {
                            Value::String(text) => encode_string(config, &text.as_bytes(), out)?,
                            Value::Integer(_) | Value::Number(_) => {
                                let x = number_of(&key).unwrap_or(0.0);
                                let text =
                                    format!("\"{}\"", format_g(x, config.encode_number_precision));
                                push(config, out, text.as_bytes())?;
                            }
                            _ => {
                                return Err(encode_error(
                                    &Value::Table(table.clone()),
                                    "table key must be a number or string",
                                ))
                            }
                        }
                        push(config, out, b":")?;
                        encode_value(config, &item, depth, out)?;
                    }
                    push(config, out, b"}")
                }
            }
        }
        other => Err(encode_error(other, "type not supported")),
    }
}

/// lua-cjson's array test: `Some(n)` when every key is an integer >= 1
/// (n the largest), `None` when the table must be an object.
fn array_length(config: &Config, table: &Table) -> mlua::Result<Option<usize>> {
    let mut max = 0.0f64;
    let mut items = 0usize;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        match number_of(&key) {
            Some(k) if k.floor() == k && k >= 1.0 => {
                max = max.max(k);
                items += 1;
            }
            _ => return Ok(None),
        }
    }
    if config.sparse_ratio > 0
        && max > (items.saturating_mul(config.sparse_ratio)) as f64
        && max > config.sparse_safe as f64
    {
        if !config.sparse_convert {
            return Err(encode_error(
                &Value::Table(table.clone()),
                "excessively sparse array",
            ));
        }
        return Ok(None);
    }
    // Bounded by the key count (a dense array), so the loop over it is.
    Ok(Some(max as usize))
}

fn encode_string(config: &Config, text: &[u8], out: &mut Vec<u8>) -> mlua::Result<()> {
    let mut escaped = Vec::with_capacity(text.len() + 2);
    escaped.push(b'"');
    for &byte in text {
        match byte {
            b'"' => escaped.extend_from_slice(b"\\\""),
            b'\\' => escaped.extend_from_slice(b"\\\\"),
            b'/' => escaped.extend_from_slice(b"\\/"),
            b'\x08' => escaped.extend_from_slice(b"\\b"),
            b'\t' => escaped.extend_from_slice(b"\\t"),
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\x0c' => escaped.extend_from_slice(b"\\f"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => escaped.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => escaped.push(byte),
        }
        if escaped.len() > config.output_bytes_max {
            break;
        }
    }
    escaped.push(b'"');
    push(config, out, &escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_printf() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (-5000.0, "-5000"),
            (0.0003, "0.0003"),
            (1023.2, "1023.2"),
            (0.1, "0.1"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (12345678901234.0, "12345678901234"),
            (1e-5, "1e-05"),
            (0.00012345, "0.00012345"),
            (1.234_567_890_123_456_7, "1.2345678901235"),
        ];
        for (x, expected) in cases {
            assert_eq!(format_g(*x, 14), *expected, "{x}");
        }
    }
}
