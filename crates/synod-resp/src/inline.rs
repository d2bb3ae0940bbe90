//! Splitting an inline command line (`set "a key" value`, as typed into
//! telnet) into arguments, with the quoting rules of redis-cli and Redis'
//! `sdssplitargs`:
//!
//! - arguments are separated by whitespace (space, tab, CR, LF, VT, FF);
//! - `"..."` understands `\n \r \t \b \a \\ \"` and `\xHH`; any other escaped
//!   byte stands for itself;
//! - `'...'` understands only `\'`;
//! - a closing quote must be followed by whitespace or the end of the line,
//!   and an unclosed quote is an error.

use bytes::Bytes;

use crate::error::ProtocolError;

/// Splits `line` (without its line end) into arguments. Unquoted arguments are
/// slices of `line`; quoted ones are decoded into their own buffer.
pub(crate) fn split_inline_args(line: &Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    let text: &[u8] = line;
    let mut args = Vec::new();
    let mut at = 0;
    // Each pass consumes at least one byte, so the loop ends.
    loop {
        while text.get(at).is_some_and(|&b| is_space(b)) {
            at += 1;
        }
        if at >= text.len() {
            return Ok(args);
        }
        let start = at;
        while text.get(at).is_some_and(|&b| !is_space(b) && !is_quote(b)) {
            at += 1;
        }
        if text.get(at).is_none_or(|&b| is_space(b)) {
            args.push(line.slice(start..at));
            continue;
        }
        // The argument contains a quote: decode it.
        let mut decoded = text[start..at].to_vec();
        at = match text[at] {
            b'"' => read_double_quoted(text, at + 1, &mut decoded)?,
            _ => read_single_quoted(text, at + 1, &mut decoded)?,
        };
        args.push(Bytes::from(decoded));
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn is_quote(byte: u8) -> bool {
    byte == b'"' || byte == b'\''
}

/// Decodes a `"`-quoted section starting just after the opening quote;
/// returns the position after the closing quote.
fn read_double_quoted(
    text: &[u8],
    mut at: usize,
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        let Some(&byte) = text.get(at) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match (byte, text.get(at + 1)) {
            (b'\\', Some(b'x')) => {
                let high = text.get(at + 2).and_then(|&b| hex_value(b));
                let low = text.get(at + 3).and_then(|&b| hex_value(b));
                if let (Some(high), Some(low)) = (high, low) {
                    out.push(high << 4 | low);
                    at += 4;
                } else {
                    // Not a valid \xHH: the escaped 'x' stands for itself.
                    out.push(b'x');
                    at += 2;
                }
            }
            (b'\\', Some(&escaped)) => {
                out.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                at += 2;
            }
            (b'"', next) => return close_quote(next, at),
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
}

/// Decodes a `'`-quoted section starting just after the opening quote;
/// returns the position after the closing quote.
fn read_single_quoted(
    text: &[u8],
    mut at: usize,
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        let Some(&byte) = text.get(at) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match (byte, text.get(at + 1)) {
            (b'\\', Some(b'\'')) => {
                out.push(b'\'');
                at += 2;
            }
            (b'\'', next) => return close_quote(next, at),
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
}

/// A closing quote at `at` ends the argument: it must be followed by
/// whitespace or the end of the line (`"a"b` is rejected, as in Redis).
fn close_quote(next: Option<&u8>, at: usize) -> Result<usize, ProtocolError> {
    match next {
        Some(&b) if !is_space(b) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(at + 1),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, ProtocolError> {
        let args = split_inline_args(&Bytes::copy_from_slice(line.as_bytes()))?;
        Ok(args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect())
    }

    #[test]
    fn splits_on_whitespace() {
        assert_eq!(split("set  a\tb ").unwrap(), ["set", "a", "b"]);
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn decodes_quotes() {
        assert_eq!(
            split(r#"set "a key" 'it\'s'"#).unwrap(),
            ["set", "a key", "it's"]
        );
        assert_eq!(split(r#""\x41\n\"\q\xZZ""#).unwrap(), ["A\n\"qxZZ"]);
        assert_eq!(split(r#"pre"fix" x"#).unwrap(), ["prefix", "x"]);
        assert_eq!(split(r#""" ''"#).unwrap(), ["", ""]);
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        for line in [r#""abc"#, r#""a"b"#, "'abc", "'a'b", r#""abc\"#] {
            assert_eq!(split(line), Err(ProtocolError::UnbalancedQuotes), "{line}");
        }
    }
}
