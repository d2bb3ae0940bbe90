//! Integer parsing and formatting for RESP headers, without allocation.

use bytes::{BufMut, BytesMut};

/// Longest decimal form of a `u64` (`18446744073709551615`).
const U64_DIGITS_MAX: usize = 20;

/// Parses a decimal `i64` as strictly as Redis' `string2ll`: an optional `-`,
/// then digits without leading zeros (`0` alone is allowed, `-0`, `+1`, `01`,
/// the empty string and overflow are not). Strictness matters because a
/// length is a framing decision: two parsers must never disagree on it.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN, whose magnitude has no positive
    // i64, parses too.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Appends the decimal form of `value`.
pub(crate) fn write_u64(buf: &mut BytesMut, mut value: u64) {
    let mut digits = [0u8; U64_DIGITS_MAX];
    let mut start = U64_DIGITS_MAX;
    loop {
        start -= 1;
        // `value % 10` < 10, so the cast cannot truncate.
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

/// Appends the decimal form of `value`.
pub(crate) fn write_i64(buf: &mut BytesMut, value: i64) {
    if value < 0 {
        buf.put_u8(b'-');
    }
    write_u64(buf, value.unsigned_abs());
}

/// Appends a frame header: `prefix`, `len` in decimal, CRLF.
pub(crate) fn write_header(buf: &mut BytesMut, prefix: u8, len: usize) {
    buf.put_u8(prefix);
    // usize is at most 64 bits on every platform Rust supports.
    write_u64(buf, len as u64);
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"+1",
            b"01",
            b"1a",
            b" 1",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_extremes() {
        let mut buf = BytesMut::new();
        for value in [0, 7, -7, i64::MAX, i64::MIN] {
            buf.clear();
            write_i64(&mut buf, value);
            assert_eq!(&buf[..], value.to_string().as_bytes());
        }
        buf.clear();
        write_u64(&mut buf, u64::MAX);
        assert_eq!(&buf[..], u64::MAX.to_string().as_bytes());
    }
}
