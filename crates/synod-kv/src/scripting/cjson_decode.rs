//! `cjson.decode`: lua-cjson's reader of one JSON text into Lua values
//! (see [`super::cjson`] for what it accepts and its bounds).

use mlua::{Lua, Value};

use super::cjson::{lua_error, null};

/// A recursive-descent reader of one JSON text into Lua values.
pub(crate) struct Parser<'a> {
    pub(crate) lua: &'a Lua,
    pub(crate) text: &'a [u8],
    pub(crate) at: usize,
    pub(crate) depth: usize,
    pub(crate) depth_max: usize,
    pub(crate) invalid_numbers: bool,
}

impl Parser<'_> {
    pub(crate) fn document(&mut self) -> mlua::Result<Value> {
        let value = self.value()?;
        self.skip_space();
        if self.at < self.text.len() {
            return Err(self.expected("the end"));
        }
        Ok(value)
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// lua-cjson's parse error, naming what it found where.
    fn expected(&self, what: &str) -> mlua::Error {
        let found = match self.text.get(self.at) {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b'"') => "T_STRING",
            Some(b':') => "T_COLON",
            Some(b',') => "T_COMMA",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b't' | b'f') => "T_BOOLEAN",
            Some(b'n') => "T_NULL",
            Some(_) => "invalid token",
        };
        lua_error(format!(
            "Expected {what} but found {found} at character {}",
            self.at + 1
        ))
    }

    fn descend(&mut self) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth > self.depth_max {
            return Err(lua_error(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth,
                self.at + 1
            )));
        }
        Ok(())
    }

    fn value(&mut self) -> mlua::Result<Value> {
        self.skip_space();
        let rest = &self.text[self.at.min(self.text.len())..];
        match rest.first() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if rest.starts_with(b"true") => {
                self.at += 4;
                Ok(Value::Boolean(true))
            }
            _ if rest.starts_with(b"false") => {
                self.at += 5;
                Ok(Value::Boolean(false))
            }
            _ if rest.starts_with(b"null") => {
                self.at += 4;
                Ok(null())
            }
            _ if self.invalid_numbers && is_invalid_number(rest) => self.number(),
            _ => Err(self.expected("value")),
        }
    }

    fn object(&mut self) -> mlua::Result<Value> {
        self.descend()?;
        self.at += 1;
        let table = self.lua.create_table()?;
        self.skip_space();
        if self.text.get(self.at) == Some(&b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        loop {
            self.skip_space();
            if self.text.get(self.at) != Some(&b'"') {
                return Err(self.expected("object key string"));
            }
            let key = self.string()?;
            self.skip_space();
            if self.text.get(self.at) != Some(&b':') {
                return Err(self.expected("colon"));
            }
            self.at += 1;
            let value = self.value()?;
            table.raw_set(self.lua.create_string(key)?, value)?;
            self.skip_space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Value::Table(table));
                }
                _ => return Err(self.expected("comma or object end")),
            }
        }
    }

    fn array(&mut self) -> mlua::Result<Value> {
        self.descend()?;
        self.at += 1;
        let table = self.lua.create_table()?;
        self.skip_space();
        if self.text.get(self.at) == Some(&b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        let mut index = 1usize;
        loop {
            let value = self.value()?;
            table.raw_set(index, value)?;
            index += 1;
            self.skip_space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Value::Table(table));
                }
                _ => return Err(self.expected("comma or array end")),
            }
        }
    }

    /// A string token (the cursor on its opening quote), unescaped.
    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                self.at = start;
                return Err(lua_error(format!(
                    "Expected value but found unexpected end of string at character {}",
                    start + 1
                )));
            };
            self.at += 1;
            match byte {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&escape) = self.text.get(self.at) else {
                        return Err(self.string_error(start, "invalid escape code"));
                    };
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'/' => out.push(escape),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let code = self.unicode_escape(start)?;
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(code.encode_utf8(&mut buffer).as_bytes());
                        }
                        _ => return Err(self.string_error(start, "invalid escape code")),
                    }
                }
                _ => out.push(byte),
            }
        }
    }

    fn string_error(&self, start: usize, what: &str) -> mlua::Error {
        lua_error(format!(
            "Expected value but found {what} at character {}",
            start + 1
        ))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(text, 16).ok()
    }

    /// `\uXXXX` (after the `\u`), with a surrogate pair as one character.
    fn unicode_escape(&mut self, start: usize) -> mlua::Result<char> {
        let invalid = |parser: &Parser| parser.string_error(start, "invalid unicode escape code");
        let high = self.hex4().ok_or_else(|| invalid(self))?;
        let code = match high {
            0xD800..=0xDBFF => {
                if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(invalid(self));
                }
                self.at += 2;
                let low = self.hex4().ok_or_else(|| invalid(self))?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(invalid(self));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(invalid(self)),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| invalid(self))
    }

    /// A number as C's `strtod` reads it (lua-cjson hands the text to it).
    fn number(&mut self) -> mlua::Result<Value> {
        let rest = &self.text[self.at..];
        if !self.invalid_numbers && is_invalid_number(rest) {
            return Err(lua_error(format!(
                "Expected value but found invalid number at character {}",
                self.at + 1
            )));
        }
        match strtod(rest) {
            Some((x, used)) => {
                self.at += used;
                Ok(Value::Number(x))
            }
            None => Err(lua_error(format!(
                "Expected value but found invalid number at character {}",
                self.at + 1
            ))),
        }
    }
}

/// lua-cjson's `json_is_invalid_number`: text that is a number to `strtod`
/// but not to JSON (a leading `+`, hex, leading zeros, inf, nan).
fn is_invalid_number(text: &[u8]) -> bool {
    let mut rest = text;
    match rest.first() {
        Some(b'+') => return true,
        Some(b'-') => rest = &rest[1..],
        _ => {}
    }
    match rest.first() {
        Some(b'0') => matches!(rest.get(1), Some(b'x' | b'X' | b'0'..=b'9')),
        Some(c) if *c <= b'9' => false,
        _ => {
            let lower: Vec<u8> = rest.iter().take(3).map(u8::to_ascii_lowercase).collect();
            lower == b"inf" || lower == b"nan"
        }
    }
}

/// C's `strtod` on the start of `text`: the value and the bytes it used,
/// `None` when no number starts there. Decimal text is converted exactly
/// (correctly rounded, as glibc does).
pub(crate) fn strtod(text: &[u8]) -> Option<(f64, usize)> {
    let mut at = 0;
    let negative = match text.first() {
        Some(b'-') => {
            at = 1;
            true
        }
        Some(b'+') => {
            at = 1;
            false
        }
        _ => false,
    };
    let sign = if negative { -1.0 } else { 1.0 };
    let rest = &text[at..];
    let lower: Vec<u8> = rest.iter().take(8).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"infinity") {
        return Some((sign * f64::INFINITY, at + 8));
    }
    if lower.starts_with(b"inf") {
        return Some((sign * f64::INFINITY, at + 3));
    }
    if lower.starts_with(b"nan") {
        return Some((f64::NAN, at + 3));
    }
    if (lower.starts_with(b"0x")) && rest.get(2).is_some_and(u8::is_ascii_hexdigit) {
        let digits = rest[2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let mut value = 0.0f64;
        for &digit in &rest[2..2 + digits] {
            value = value * 16.0 + f64::from((digit as char).to_digit(16).unwrap_or(0));
        }
        return Some((sign * value, at + 2 + digits));
    }
    let mut end = at;
    let integer = text[end..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    end += integer;
    let mut fraction = 0;
    if text.get(end) == Some(&b'.') {
        fraction = text[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if integer + fraction > 0 {
            end += 1 + fraction;
        }
    }
    if integer + fraction == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = text.get(end) {
        let mut exponent_at = end + 1;
        if let Some(b'+' | b'-') = text.get(exponent_at) {
            exponent_at += 1;
        }
        let digits = text[exponent_at.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            end = exponent_at + digits;
        }
    }
    let literal = std::str::from_utf8(&text[at..end]).ok()?;
    // Rust's parser wants a digit before the exponent: "5." and ".5" are
    // fine, but keep a trailing '.' out of its way.
    let literal = literal.replace(".e", ".0e").replace(".E", ".0E");
    let value: f64 = literal.parse().ok()?;
    Some((sign * value, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_what_c_reads() {
        assert_eq!(strtod(b"12abc"), Some((12.0, 2)));
        assert_eq!(strtod(b"-5e3,"), Some((-5000.0, 4)));
        assert_eq!(strtod(b"0.3e-3]"), Some((0.0003, 6)));
        assert_eq!(strtod(b"1e"), Some((1.0, 1)));
        assert_eq!(strtod(b"0x1F"), Some((31.0, 4)));
        assert_eq!(strtod(b"+7"), Some((7.0, 2)));
        assert_eq!(strtod(b"5."), Some((5.0, 2)));
        assert_eq!(strtod(b"-inf"), Some((f64::NEG_INFINITY, 4)));
        assert!(strtod(b"nan").is_some_and(|(x, used)| x.is_nan() && used == 3));
        assert_eq!(strtod(b"-"), None);
        assert_eq!(strtod(b"."), None);
        assert_eq!(strtod(b"e5"), None);
    }
}
