//! The `struct` library Redis bundles for scripts (Roberto Ierusalimschy's
//! lua-struct, with Redis' bounds): `struct.pack(fmt, ...)`,
//! `struct.unpack(fmt, data [, pos])`, `struct.size(fmt)`.
//!
//! Format: `<` little endian, `>` big endian, `=` native (little here, as
//! on the machines Redis runs), `!n` maximum alignment (a power of two,
//! default 8), `b`/`B` char, `h`/`H` short, `l`/`L` long (8 bytes), `T`
//! size_t (8), `i`/`I`n integer of n bytes (default 4, at most 32), `f`
//! float, `d` double, `s` zero-terminated string, `cn` n chars (`c0`:
//! the string's length when packing, the previous number when unpacking),
//! `x` a zero byte, spaces ignored. Lower case integers are signed.
//!
//! # Bounds
//! A count in a format is refused past `INT_MAX` ("integral size
//! overflow"); every read is checked against the data's length before it is
//! taken ("data string too short"); a packed string is never longer than
//! the strings and numbers it was given (plus alignment, at most 7 bytes
//! per item), and is bounded by the run's memory limit too; `unpack`
//! returns at most [`UNPACK_RESULTS_MAX`] values.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::cjson::{number_of, string_bytes};

/// lua-struct's `MAXINTSIZE`.
const INT_SIZE_MAX: usize = 32;
/// lua-struct's `MAXALIGN` (the default alignment).
const ALIGN_MAX: usize = 8;
/// Most values one `unpack` returns (Lua's C stack holds about 8000).
pub(crate) const UNPACK_RESULTS_MAX: usize = 7000;

fn lua_error(text: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(text.into())
}

fn arg_error(position: usize, name: &str, text: &str) -> mlua::Error {
    lua_error(format!("bad argument #{position} to '{name}' ({text})"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A format being read.
struct Format<'a> {
    text: &'a [u8],
    at: usize,
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let byte = *self.text.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// lua-struct's `getnum`: digits, or `default` when none follow.
    fn number(&mut self, default: usize) -> mlua::Result<usize> {
        if !self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut value: usize = 0;
        while let Some(&digit) = self.text.get(self.at).filter(|b| b.is_ascii_digit()) {
            let digit = usize::from(digit - b'0');
            if value > (i32::MAX as usize) / 10 || value * 10 > i32::MAX as usize - digit {
                return Err(lua_error("integral size overflow"));
            }
            value = value * 10 + digit;
            self.at += 1;
        }
        Ok(value)
    }

    /// lua-struct's `optsize`: the size of option `option`.
    fn size(&mut self, option: u8) -> mlua::Result<usize> {
        Ok(match option {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' | b'x' => {
                if option == b'x' {
                    1
                } else {
                    4
                }
            }
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > INT_SIZE_MAX {
                    return Err(lua_error(format!(
                        "integral size {size} is larger than limit of {INT_SIZE_MAX}"
                    )));
                }
                size
            }
            _ => 0,
        })
    }

    /// lua-struct's `controloptions`.
    fn control(&mut self, option: u8, header: &mut Header) -> mlua::Result<()> {
        match option {
            b' ' => {}
            b'>' => header.endian = Endian::Big,
            b'<' | b'=' => header.endian = Endian::Little,
            b'!' => {
                let align = self.number(ALIGN_MAX)?;
                if !align.is_power_of_two() {
                    return Err(lua_error(format!("alignment {align} is not a power of 2")));
                }
                header.align = align;
            }
            other => {
                return Err(lua_error(format!(
                    "bad argument #1 to 'struct' (invalid format option '{}')",
                    char::from(other)
                )))
            }
        }
        Ok(())
    }
}

/// Padding before an item of `size` at `len` (lua-struct's `gettoalign`).
fn padding(len: usize, header: &Header, option: u8, size: usize) -> usize {
    if size == 0 || option == b'c' {
        return 0;
    }
    let size = size.min(header.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn format_arg(value: Option<&Value>, name: &str) -> mlua::Result<Vec<u8>> {
    match value {
        Some(Value::String(text)) => Ok(text.as_bytes().to_vec()),
        other => Err(arg_error(
            1,
            name,
            &format!(
                "string expected, got {}",
                other.map_or("no value", Value::type_name)
            ),
        )),
    }
}

fn number_arg(value: Option<&Value>, position: usize) -> mlua::Result<f64> {
    value.and_then(number_of).ok_or_else(|| {
        arg_error(
            position,
            "pack",
            &format!(
                "number expected, got {}",
                value.map_or("no value", Value::type_name)
            ),
        )
    })
}

fn string_arg(lua: &Lua, value: Option<&Value>, position: usize) -> mlua::Result<Vec<u8>> {
    if let Some(bytes) = value.map(|v| string_bytes(lua, v)).transpose()?.flatten() {
        return Ok(bytes);
    }
    Err(arg_error(
        position,
        "pack",
        &format!(
            "string expected, got {}",
            value.map_or("no value", Value::type_name)
        ),
    ))
}

/// Builds the `struct` table; `output_bytes_max` bounds a packed string.
pub(crate) fn library(lua: &Lua, output_bytes_max: usize) -> mlua::Result<Table> {
    let library = lua.create_table()?;
    library.set(
        "pack",
        lua.create_function(move |lua, args: Variadic<Value>| {
            let format = format_arg(args.first(), "pack")?;
            let out = pack(lua, &format, &args[1..], output_bytes_max)?;
            // Written a byte at a time (see `cost`).
            super::cost::charge(
                lua,
                (format.len() + out.len()) / super::cost::CHARS_PER_UNIT,
            );
            lua.create_string(&out)
        })?,
    )?;
    library.set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| {
            let format = format_arg(args.first(), "unpack")?;
            let data = match args.get(1) {
                Some(Value::String(text)) => text.as_bytes().to_vec(),
                other => {
                    return Err(arg_error(
                        2,
                        "unpack",
                        &format!(
                            "string expected, got {}",
                            other.map_or("no value", Value::type_name)
                        ),
                    ))
                }
            };
            let position = match args.get(2) {
                None | Some(Value::Nil) => 1.0,
                Some(value) => {
                    number_of(value).ok_or_else(|| arg_error(3, "unpack", "number expected"))?
                }
            };
            if position.is_nan() || position < 1.0 {
                return Err(arg_error(3, "unpack", "offset must be 1 or greater"));
            }
            // The subject is copied whole, the format read a byte at a
            // time (see `cost`).
            super::cost::charge(
                lua,
                data.len() / super::cost::BYTES_PER_UNIT
                    + format.len() / super::cost::CHARS_PER_UNIT,
            );
            unpack(
                lua,
                &format,
                &data,
                position.min(usize::MAX as f64) as usize - 1,
            )
        })?,
    )?;
    library.set(
        "size",
        lua.create_function(|_, args: Variadic<Value>| {
            let format = format_arg(args.first(), "size")?;
            size(&format)
        })?,
    )?;
    Ok(library)
}

fn pack(
    lua: &Lua,
    format: &[u8],
    args: &[Value],
    output_bytes_max: usize,
) -> mlua::Result<Vec<u8>> {
    let mut header = Header::new();
    let mut format = Format {
        text: format,
        at: 0,
    };
    let mut out: Vec<u8> = Vec::new();
    let mut arg = 0usize;
    let grow = |out: &mut Vec<u8>, bytes: &[u8]| -> mlua::Result<()> {
        if out.len().saturating_add(bytes.len()) > output_bytes_max {
            return Err(lua_error(format!(
                "struct.pack: the packed string exceeds {output_bytes_max} bytes"
            )));
        }
        out.extend_from_slice(bytes);
        Ok(())
    };
    while let Some(option) = format.next() {
        let size = format.size(option)?;
        let pad = padding(out.len(), &header, option, size);
        grow(&mut out, &[0u8; ALIGN_MAX * 4][..pad])?;
        // Arguments are numbered from 2 in errors (the format is 1).
        match option {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number_arg(args.get(arg), arg + 2)?;
                arg += 1;
                let value: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut bytes = [0u8; INT_SIZE_MAX];
                for (i, byte) in bytes.iter_mut().take(size.min(8)).enumerate() {
                    *byte = (value >> (8 * i)) as u8;
                }
                let bytes = &mut bytes[..size];
                if header.endian == Endian::Big {
                    bytes.reverse();
                }
                grow(&mut out, bytes)?;
            }
            b'x' => grow(&mut out, &[0])?,
            b'f' => {
                let n = number_arg(args.get(arg), arg + 2)? as f32;
                arg += 1;
                match header.endian {
                    Endian::Little => grow(&mut out, &n.to_le_bytes())?,
                    Endian::Big => grow(&mut out, &n.to_be_bytes())?,
                }
            }
            b'd' => {
                let n = number_arg(args.get(arg), arg + 2)?;
                arg += 1;
                match header.endian {
                    Endian::Little => grow(&mut out, &n.to_le_bytes())?,
                    Endian::Big => grow(&mut out, &n.to_be_bytes())?,
                }
            }
            b'c' | b's' => {
                let text = string_arg(lua, args.get(arg), arg + 2)?;
                arg += 1;
                let size = if size == 0 { text.len() } else { size };
                if text.len() < size {
                    return Err(arg_error(arg + 1, "pack", "string too short"));
                }
                grow(&mut out, &text[..size])?;
                if option == b's' {
                    grow(&mut out, &[0])?;
                }
            }
            other => format.control(other, &mut header)?,
        }
    }
    Ok(out)
}

fn read_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut value: u64 = 0;
    let ordered: Vec<u8> = match endian {
        Endian::Big => bytes.to_vec(),
        Endian::Little => bytes.iter().rev().copied().collect(),
    };
    for byte in ordered {
        value = (value << 8) | u64::from(byte);
    }
    if !signed {
        return value as f64;
    }
    let bits = bytes.len() * 8;
    if bits == 0 || bits > 64 {
        return value as i64 as f64;
    }
    let mask = u64::MAX << (bits - 1);
    if value & mask != 0 {
        value |= mask;
    }
    value as i64 as f64
}

fn too_short() -> mlua::Error {
    arg_error(2, "unpack", "data string too short")
}

fn unpack(lua: &Lua, format: &[u8], data: &[u8], mut position: usize) -> mlua::Result<MultiValue> {
    let mut header = Header::new();
    let mut format = Format {
        text: format,
        at: 0,
    };
    let mut values: Vec<Value> = Vec::new();
    while let Some(option) = format.next() {
        let mut size = format.size(option)?;
        position = position.saturating_add(padding(position, &header, option, size));
        if size > data.len() || position > data.len() - size {
            return Err(too_short());
        }
        if values.len() >= UNPACK_RESULTS_MAX {
            return Err(lua_error("too many results"));
        }
        match option {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[position..position + size];
                values.push(Value::Number(read_integer(
                    bytes,
                    header.endian,
                    option.is_ascii_lowercase(),
                )));
            }
            b'x' => {}
            b'f' => {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&data[position..position + 4]);
                let x = match header.endian {
                    Endian::Little => f32::from_le_bytes(bytes),
                    Endian::Big => f32::from_be_bytes(bytes),
                };
                values.push(Value::Number(f64::from(x)));
            }
            b'd' => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&data[position..position + 8]);
                let x = match header.endian {
                    Endian::Little => f64::from_le_bytes(bytes),
                    Endian::Big => f64::from_be_bytes(bytes),
                };
                values.push(Value::Number(x));
            }
            b'c' => {
                if size == 0 {
                    let previous = values.pop().as_ref().and_then(number_of);
                    let Some(length) = previous.filter(|n| *n >= 0.0) else {
                        return Err(lua_error("format 'c0' needs a previous size"));
                    };
                    size = length.min(usize::MAX as f64) as usize;
                    if size > data.len() || position > data.len() - size {
                        return Err(too_short());
                    }
                }
                values.push(Value::String(
                    lua.create_string(&data[position..position + size])?,
                ));
            }
            b's' => {
                let Some(end) = data[position..].iter().position(|&b| b == 0) else {
                    return Err(lua_error("unfinished string in data"));
                };
                values.push(Value::String(
                    lua.create_string(&data[position..position + end])?,
                ));
                size = end + 1;
            }
            other => format.control(other, &mut header)?,
        }
        position += size;
    }
    values.push(Value::Number(position as f64 + 1.0));
    Ok(MultiValue::from_iter(values))
}

fn size(format: &[u8]) -> mlua::Result<f64> {
    let header = Header::new();
    let mut format = Format {
        text: format,
        at: 0,
    };
    let mut position: usize = 0;
    while let Some(option) = format.next() {
        let size = format.size(option)?;
        position = position.saturating_add(padding(position, &header, option, size));
        if option == b's' || (option == b'c' && size == 0) {
            return Err(arg_error(
                1,
                "size",
                "options 'c0' - 's' have undefined sizes",
            ));
        }
        // As lua-struct's `b_size`: control options (`<`, `>`, `!n`) are
        // not interpreted here, so alignment never pads.
        position = position.saturating_add(size);
    }
    Ok(position as f64)
}
