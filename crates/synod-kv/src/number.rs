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

/// Decimal places `INCRBYFLOAT` keeps: Redis prints its `long double` sum
/// with `%.17Lf` and strips the trailing zeros.
const INCRBYFLOAT_DECIMALS: i64 = 17;

/// A decimal number `digits * 10^exponent` (digits most significant
/// first), exactly as written.
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

/// Reads a decimal float as Rust's `f64` parser accepts it (sign, digits,
/// point, exponent), exactly; `None` for anything else (infinities).
fn parse_decimal(text: &[u8]) -> Option<Decimal> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (mantissa, exponent_text) = match rest.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if whole.is_empty() && fraction.is_empty()
        || !whole.iter().chain(fraction).all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut exponent: i64 = 0;
    if let Some(text) = exponent_text {
        let (sign, digits) = match text.split_first() {
            Some((b'-', rest)) => (-1, rest),
            Some((b'+', rest)) => (1, rest),
            _ => (1, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for &digit in digits {
            // Saturates far beyond any finite f64 (the caller checked it is).
            exponent = (exponent * 10 + i64::from(digit - b'0')).min(1 << 40);
        }
        exponent *= sign;
    }
    let mut digits: Vec<u8> = whole.iter().chain(fraction).map(|&b| b - b'0').collect();
    let mut exponent = exponent - fraction.len() as i64;
    // Normalize, so that the exponent says where the value's digits are:
    // a zero written `0e99999999999` (a valid float, 0) must not make the
    // sum scale ~10^11 digits on every replica.
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading);
    let trailing = digits.iter().rev().take_while(|&&d| d == 0).count();
    digits.truncate(digits.len() - trailing);
    exponent += trailing as i64;
    if digits.is_empty() {
        exponent = 0;
    }
    // A finite non-zero f64 from at most FLOAT_TEXT_LEN_MAX characters has
    // its digits within these decimal places; anything else is not a
    // value we sum exactly.
    if exponent < -(FLOAT_TEXT_LEN_MAX as i64) - 400 || exponent > 400 {
        return None;
    }
    Some(Decimal {
        negative,
        digits,
        exponent,
    })
}

/// The digits of `decimal` scaled to `exponent` (<= its own), least
/// significant first.
fn scaled(decimal: &Decimal, exponent: i64) -> Vec<u8> {
    let shift = (decimal.exponent - exponent) as usize;
    let mut digits = vec![0u8; shift];
    digits.extend(decimal.digits.iter().rev());
    digits
}

fn compare_magnitude(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .rev()
        .map(|index| {
            let x = a.get(index).copied().unwrap_or(0);
            let y = b.get(index).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|order| order.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// `INCRBYFLOAT`'s new text: `current + delta` computed exactly in decimal
/// (the delta as the shortest decimal that reads back as it), then written
/// with 17 decimals, trailing zeros and point stripped, never `-0`.
///
/// Redis sums in x87 `long double` (64-bit mantissa) and prints `%.17Lf`:
/// the fixed 17 decimals are what make `x + (-x)` print `0` and `0.1 + 0.2`
/// print `0.3`. Exact decimal arithmetic gives the same text wherever the
/// `long double` sum is exact to 17 decimals (any value below ~100 with few
/// digits); past ~19 significant digits Redis prints the binary value's
/// noise (`1000.09999999999999998` for `1000 + 0.1`) where this prints the
/// exact `1000.1`. `None` when `current` is not a plain decimal (an
/// infinity); the caller has already refused a non-finite sum.
pub(crate) fn incrbyfloat_text(current: &[u8], delta: f64) -> Option<String> {
    let a = parse_decimal(current)?;
    let b = parse_decimal(format!("{delta}").as_bytes())?;
    let exponent = a.exponent.min(b.exponent);
    let (x, y) = (scaled(&a, exponent), scaled(&b, exponent));
    let len = x.len().max(y.len()) + 1;
    let digit = |digits: &[u8], index: usize| i16::from(digits.get(index).copied().unwrap_or(0));
    let (mut sum, negative) = if a.negative == b.negative {
        let mut sum = Vec::with_capacity(len);
        let mut carry = 0i16;
        for index in 0..len {
            let total = digit(&x, index) + digit(&y, index) + carry;
            sum.push((total % 10) as u8);
            carry = total / 10;
        }
        (sum, a.negative)
    } else {
        let (big, small, negative) = match compare_magnitude(&x, &y) {
            std::cmp::Ordering::Less => (&y, &x, b.negative),
            _ => (&x, &y, a.negative),
        };
        let mut difference = Vec::with_capacity(len);
        let mut borrow = 0i16;
        for index in 0..len {
            let mut value = digit(big, index) - digit(small, index) - borrow;
            borrow = i16::from(value < 0);
            if value < 0 {
                value += 10;
            }
            difference.push(value as u8);
        }
        (difference, negative)
    };
    // Round to 17 decimals, half to even.
    let mut exponent = exponent;
    if exponent < -INCRBYFLOAT_DECIMALS {
        let cut = (-INCRBYFLOAT_DECIMALS - exponent) as usize;
        let cut = cut.min(sum.len());
        let dropped = &sum[..cut];
        let half = dropped.last().copied().unwrap_or(0);
        let rest_zero = dropped[..cut.saturating_sub(1)].iter().all(|&d| d == 0);
        let mut kept = sum[cut..].to_vec();
        let odd = kept.first().is_some_and(|d| d % 2 == 1);
        let round_up = half > 5 || (half == 5 && (!rest_zero || odd));
        if round_up {
            let mut index = 0;
            loop {
                if index == kept.len() {
                    kept.push(1);
                    break;
                }
                if kept[index] == 9 {
                    kept[index] = 0;
                    index += 1;
                } else {
                    kept[index] += 1;
                    break;
                }
            }
        }
        sum = kept;
        exponent = -INCRBYFLOAT_DECIMALS;
    }
    // Write it out: `sum * 10^exponent`, exponent >= -17.
    let decimals = (-exponent).max(0) as usize;
    let mut digits: Vec<u8> = sum.iter().rev().map(|d| b'0' + d).collect();
    if exponent > 0 {
        digits.extend(std::iter::repeat_n(b'0', exponent as usize));
    }
    if digits.len() <= decimals {
        let mut padded = vec![b'0'; decimals + 1 - digits.len()];
        padded.extend(digits);
        digits = padded;
    }
    let point = digits.len() - decimals;
    let mut whole: Vec<u8> = digits[..point].to_vec();
    let first_nonzero = whole.iter().position(|&d| d != b'0');
    whole.drain(..first_nonzero.unwrap_or(whole.len() - 1));
    let mut fraction: Vec<u8> = digits[point..].to_vec();
    while fraction.last() == Some(&b'0') {
        fraction.pop();
    }
    let mut text = String::new();
    let zero = whole == b"0" && fraction.is_empty();
    if negative && !zero {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(&whole).ok()?);
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(std::str::from_utf8(&fraction).ok()?);
    }
    Some(text)
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
