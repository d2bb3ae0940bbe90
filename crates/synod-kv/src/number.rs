//! Redis' rules for reading and writing numbers stored as strings.
//!
//! Redis is strict: an integer is `-?[1-9][0-9]*` or `0`, at most 20
//! characters, no sign `+`, no spaces, no leading zeros. We follow it exactly
//! so that `INCR` accepts and rejects the same values as Redis.

/// Longest text Redis reads as a 64-bit integer (`LONG_STR_SIZE - 1`).
const INTEGER_TEXT_LEN_MAX: usize = 20;

/// Longest text Redis reads as a float (`MAX_LONG_DOUBLE_CHARS`).
const FLOAT_TEXT_LEN_MAX: usize = 5 * 1024;

/// Parses `text` as Redis' `string2ll` does; `None` when it is not exactly a
/// canonical 64-bit integer.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > INTEGER_TEXT_LEN_MAX {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so i64::MIN is reachable.
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses `text` as Redis' `string2ld` does (for `INCRBYFLOAT`): a decimal
/// float with no surrounding spaces, not NaN, and not out of range. The
/// literal infinities are accepted here; the command rejects the result.
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text.len() > FLOAT_TEXT_LEN_MAX {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    // Rust also accepts "nan"; strtold accepts hex floats, which we don't.
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if value.is_infinite() && !lower.contains("inf") {
        return None; // overflow (ERANGE in strtold)
    }
    if value == 0.0 {
        let mantissa = lower.split('e').next().unwrap_or("");
        if mantissa.bytes().any(|byte| (b'1'..=b'9').contains(&byte)) {
            return None; // underflow to zero (ERANGE in strtold)
        }
    }
    Some(value)
}

/// Significant digits `INCRBYFLOAT` keeps: `DBL_DIG`, the most that any
/// decimal survives a trip through an f64 with. Redis computes in `long
/// double` and prints 17 decimals, so `0.1 + 0.2` gives `0.3` there; with
/// f64 arithmetic, rounding to 15 digits gives the same for everyday values.
const FLOAT_SIGNIFICANT_DIGITS: i32 = 15;

/// Writes a float the way `INCRBYFLOAT` replies and stores it: plain decimal
/// digits, no exponent, no trailing zeros, no trailing point.
pub(crate) fn format_f64(value: f64) -> String {
    debug_assert!(value.is_finite());
    if value == 0.0 {
        return "0".to_string();
    }
    let exponent = value.abs().log10().floor() as i32;
    let decimals = (FLOAT_SIGNIFICANT_DIGITS - 1 - exponent).max(0) as usize;
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(trimmed);
    }
    if text == "-0" {
        return "0".to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"10"), Some(10));
        assert_eq!(parse_i64(b"-10"), Some(-10));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"00000000000000000001",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_follow_string2ld() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-3"), Some(-3.0));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"0"), Some(0.0));
        assert_eq!(parse_f64(b"0.0e10"), Some(0.0));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        for bad in [
            &b""[..],
            b"nan",
            b" 1",
            b"1 ",
            b"1e400",
            b"1e-400",
            b"abc",
            b"1,5",
        ] {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn float_formatting_is_plain_decimal() {
        assert_eq!(format_f64(10.5), "10.5");
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(1e21), "1000000000000000000000");
        assert_eq!(format_f64(1e-7), "0.0000001");
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(0.1 + 0.2), "0.3");
        assert_eq!(format_f64(-1.25), "-1.25");
        assert_eq!(format_f64(-1e-20), "-0.00000000000000000001");
        assert_eq!(format_f64(1.0 / 3.0), "0.333333333333333");
        assert_eq!(format_f64(123456.789), "123456.789");
    }
}
