//! Exact decimal addition for the float increments (`HINCRBYFLOAT`).
//!
//! Redis adds in `long double` and prints 17 decimals, so the everyday
//! `1.1 + 0.2` reads `1.3` and `x + (-x)` reads `0`. In f64 neither holds
//! (`1.3000000000000003`, or a residue of 1e-17 when the stored text was
//! rounded). Both operands arrive as decimal text (the stored value and the
//! client's increment), so we add them exactly in decimal and round the sum
//! to [`SIGNIFICANT_DIGITS`]: every replica computes the same digits, a
//! value and its negation cancel exactly, and no binary rounding shows.
//!
//! Only text that [`crate::number::parse_f64`] accepts (a finite decimal
//! float, the syntax of Rust's `f64` parser: optional sign, digits with an
//! optional point, optional exponent) is given to [`add_decimal_texts`], so
//! the exponents are bounded by f64's range plus the text's length.

use crate::number::parse_f64;

/// Significant digits a sum keeps: enough that every f64 survives the
/// trip through its text, as with `%.17g`.
pub(crate) const SIGNIFICANT_DIGITS: usize = 17;

/// Longest text [`add_decimal_texts`] returns: a sign, `0.`, 323 zeros and
/// 17 digits for the smallest non-zero f64 magnitudes (the largest take 309
/// digits).
pub(crate) const DECIMAL_TEXT_MAX: u64 = 343;

/// Longest run of digits an addition may align (the operands' exponents
/// apart plus their digits). Text `parse_f64` accepts stays far below it
/// (at most ~700 exponent apart plus 5 KiB of digits); it only guards the
/// allocation against a caller that skipped the check.
const ALIGNED_DIGITS_MAX: i64 = 16 * 1024;

/// A decimal number: `digits × 10^exponent`, digits most significant first,
/// without leading or trailing zeros (empty for zero).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    fn zero() -> Decimal {
        Decimal {
            negative: false,
            digits: Vec::new(),
            exponent: 0,
        }
    }

    /// Strips leading and trailing zeros; zero loses its sign.
    fn normalized(mut self) -> Decimal {
        let leading = self.digits.iter().take_while(|&&digit| digit == 0).count();
        self.digits.drain(..leading);
        while self.digits.last() == Some(&0) {
            self.digits.pop();
            self.exponent += 1;
        }
        if self.digits.is_empty() {
            return Decimal::zero();
        }
        self
    }
}

/// Parses decimal float text (see the module docs for the syntax).
fn parse(text: &[u8]) -> Option<Decimal> {
    let (negative, rest) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    let (mantissa, exponent_text) = match rest.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let mut exponent: i64 = match exponent_text {
        None => 0,
        Some(text) => {
            let (sign, digits) = match text.split_first()? {
                (b'-', digits) => (-1, digits),
                (b'+', digits) => (1, digits),
                _ => (1, text),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Saturates: a huge exponent only matters with a zero mantissa
            // (parse_f64 refuses the others), which stays zero.
            let magnitude = digits.iter().fold(0i64, |value, &digit| {
                value
                    .saturating_mul(10)
                    .saturating_add(i64::from(digit - b'0'))
            });
            sign * magnitude.min(i64::MAX / 4)
        }
    };
    let mut digits = Vec::with_capacity(mantissa.len());
    let mut seen_point = false;
    let mut seen_digit = false;
    for &byte in mantissa {
        match byte {
            b'0'..=b'9' => {
                digits.push(byte - b'0');
                seen_digit = true;
                if seen_point {
                    exponent -= 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if !seen_digit {
        return None;
    }
    Some(
        Decimal {
            negative,
            digits,
            exponent,
        }
        .normalized(),
    )
}

/// Compares two digit runs of equal length as numbers.
fn magnitude_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    debug_assert_eq!(a.len(), b.len());
    a.cmp(b)
}

/// `a + b`, exactly; `None` when aligning them would exceed
/// [`ALIGNED_DIGITS_MAX`].
fn add(a: &Decimal, b: &Decimal) -> Option<Decimal> {
    if a.digits.is_empty() {
        return Some(b.clone());
    }
    if b.digits.is_empty() {
        return Some(a.clone());
    }
    // Both as digit runs ending at the smaller exponent, padded in front to
    // one length (plus a digit for the carry).
    let low = a.exponent.min(b.exponent);
    let top = |d: &Decimal| d.exponent + d.digits.len() as i64;
    let width = top(a).max(top(b)) - low + 1;
    if width > ALIGNED_DIGITS_MAX {
        return None;
    }
    let align = |d: &Decimal| {
        let mut run = vec![0u8; width as usize];
        let end = (d.exponent - low) as usize;
        let start = run.len() - end - d.digits.len();
        run[start..start + d.digits.len()].copy_from_slice(&d.digits);
        run
    };
    let (x, y) = (align(a), align(b));
    let mut sum = vec![0u8; width as usize];
    let negative;
    if a.negative == b.negative {
        negative = a.negative;
        let mut carry = 0;
        for i in (0..sum.len()).rev() {
            let total = x[i] + y[i] + carry;
            sum[i] = total % 10;
            carry = total / 10;
        }
        debug_assert_eq!(carry, 0, "the extra front digit takes the carry");
    } else {
        // Subtract the smaller magnitude from the larger.
        let (larger, smaller, larger_negative) = match magnitude_cmp(&x, &y) {
            std::cmp::Ordering::Less => (&y, &x, b.negative),
            _ => (&x, &y, a.negative),
        };
        negative = larger_negative;
        let mut borrow = 0;
        for i in (0..sum.len()).rev() {
            let mut digit = larger[i] as i8 - smaller[i] as i8 - borrow;
            borrow = 0;
            if digit < 0 {
                digit += 10;
                borrow = 1;
            }
            sum[i] = digit as u8;
        }
        debug_assert_eq!(borrow, 0, "the larger magnitude was subtracted from");
    }
    Some(
        Decimal {
            negative,
            digits: sum,
            exponent: low,
        }
        .normalized(),
    )
}

/// Rounds to `significant` digits, half to even.
fn round(mut value: Decimal, significant: usize) -> Decimal {
    if value.digits.len() <= significant {
        return value;
    }
    let dropped = value.digits.split_off(significant);
    value.exponent += dropped.len() as i64;
    let first = dropped[0];
    let rest_nonzero = dropped[1..].iter().any(|&digit| digit != 0);
    let last_odd = value.digits.last().is_some_and(|&digit| digit % 2 == 1);
    let round_up = first > 5 || (first == 5 && (rest_nonzero || last_odd));
    if round_up {
        let mut carry = true;
        for digit in value.digits.iter_mut().rev() {
            if *digit == 9 {
                *digit = 0;
            } else {
                *digit += 1;
                carry = false;
                break;
            }
        }
        if carry {
            value.digits.insert(0, 1);
            value.digits.pop();
            value.exponent += 1;
        }
    }
    value.normalized()
}

/// Plain notation: no exponent, no trailing zeros after the point, no
/// point without decimals, `0` for zero.
fn format_plain(value: &Decimal) -> String {
    if value.digits.is_empty() {
        return "0".to_string();
    }
    let digits: String = value
        .digits
        .iter()
        .map(|&digit| char::from(b'0' + digit))
        .collect();
    let mut text = String::new();
    if value.negative {
        text.push('-');
    }
    if value.exponent >= 0 {
        text.push_str(&digits);
        text.extend(std::iter::repeat_n('0', value.exponent as usize));
    } else {
        let point = value.digits.len() as i64 + value.exponent;
        if point > 0 {
            let (whole, fraction) = digits.split_at(point as usize);
            text.push_str(whole);
            text.push('.');
            text.push_str(fraction);
        } else {
            text.push_str("0.");
            text.extend(std::iter::repeat_n('0', (-point) as usize));
            text.push_str(&digits);
        }
    }
    text
}

/// The sum of two decimal float texts, exactly, rounded to
/// [`SIGNIFICANT_DIGITS`] and written plainly; `None` when either is not a
/// finite float (`parse_f64`) or the sum does not fit an f64 (beyond its
/// range, or a non-zero too small for it), which Redis reports as a NaN or
/// infinite result.
pub(crate) fn add_decimal_texts(current: &[u8], increment: &[u8]) -> Option<String> {
    parse_f64(current).filter(|value| value.is_finite())?;
    parse_f64(increment).filter(|value| value.is_finite())?;
    let sum = add(&parse(current)?, &parse(increment)?)?;
    let text = format_plain(&round(sum, SIGNIFICANT_DIGITS));
    parse_f64(text.as_bytes()).filter(|value| value.is_finite())?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> Option<String> {
        add_decimal_texts(a.as_bytes(), b.as_bytes())
    }

    #[test]
    fn sums_are_exact_decimals() {
        assert_eq!(sum("1.1", "0.2").as_deref(), Some("1.3"));
        assert_eq!(sum("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(sum("1.23", "0.77").as_deref(), Some("2"));
        assert_eq!(sum("2", "-0.1").as_deref(), Some("1.9"));
        assert_eq!(
            sum("0.024390243902439025", "-0.024390243902439025").as_deref(),
            Some("0")
        );
        assert_eq!(sum("0", "-0").as_deref(), Some("0"));
        assert_eq!(sum("-1.5", "0.5").as_deref(), Some("-1"));
        assert_eq!(sum("0.5", "-1.5").as_deref(), Some("-1"));
        assert_eq!(
            sum("17179869184", "17179869184").as_deref(),
            Some("34359738368")
        );
        assert_eq!(sum("5.0e3", "+1E-2").as_deref(), Some("5000.01"));
        assert_eq!(sum("1.", ".5").as_deref(), Some("1.5"));
        assert_eq!(sum("0e999999999999999999999", "7").as_deref(), Some("7"));
        assert_eq!(sum("999", "1").as_deref(), Some("1000"));
        assert_eq!(sum("0.000001", "0").as_deref(), Some("0.000001"));
        assert_eq!(sum("1e-20", "0").as_deref(), Some("0.00000000000000000001"));
        assert_eq!(sum("1e21", "0").as_deref(), Some("1000000000000000000000"));
    }

    #[test]
    fn sums_round_to_17_significant_digits() {
        // 18 digits: the last goes, half to even.
        assert_eq!(
            sum("1.23456789012345675", "0").as_deref(),
            Some("1.2345678901234568")
        );
        assert_eq!(
            sum("1.23456789012345665", "0").as_deref(),
            Some("1.2345678901234566")
        );
        assert_eq!(
            sum("1.234567890123456651", "0").as_deref(),
            Some("1.2345678901234567")
        );
        assert_eq!(
            sum("99999999999999999.5", "0").as_deref(),
            Some("100000000000000000")
        );
        assert_eq!(
            sum("-0.333333333333333333333", "0").as_deref(),
            Some("-0.33333333333333333")
        );
        assert_eq!(sum("1e20", "1").as_deref(), Some("100000000000000000000"));
    }

    #[test]
    fn sums_outside_f64_are_refused() {
        assert_eq!(sum("1.7e308", "1.7e308"), None);
        assert_eq!(sum("inf", "1"), None);
        assert_eq!(sum("1", "nan"), None);
        assert_eq!(sum("abc", "1"), None);
        assert_eq!(sum(" 1", "1"), None);
        // -1e-330: a non-zero below f64's smallest.
        assert_eq!(
            sum("1e-300", "-1.000000000000000000000000000001e-300"),
            None
        );
        assert_eq!(
            sum("1e-300", "1e300").as_deref(),
            Some(&*format!("1{}", "0".repeat(300)))
        );
    }

    #[test]
    fn parse_and_format_round_trip() {
        for text in ["0", "-1", "1.5", "0.001", "123000", "-0.000000000123"] {
            let value = parse(text.as_bytes()).unwrap();
            assert_eq!(format_plain(&value), text);
        }
        assert_eq!(parse(b"1.2.3"), None);
        assert_eq!(parse(b"."), None);
        assert_eq!(parse(b"1e"), None);
        assert_eq!(parse(b"-"), None);
    }
}
