//! Writing replies in RESP2 or RESP3.

use bytes::{BufMut, BytesMut};

use crate::number::{write_header, write_i64};
use crate::reply::Reply;

/// The protocol version a connection speaks: RESP2 until the client sends
/// `HELLO 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: RESP3-only reply kinds are written in their RESP2 form (see
    /// [`Reply`]).
    Resp2,
    /// RESP3.
    Resp3,
}

/// Appends `reply` to `buf` in `proto`.
///
/// RESP2 forms of the RESP3-only kinds: `Null` is `$-1`, `NullArray` is `*-1`,
/// `Map` a flat array of keys and values, `Set` an array, `Double` a bulk
/// string (see [`format_double`]), `Bool` the integer 1 or 0, `Verbatim` a
/// bulk string without its `txt:` prefix, `Pairs` a flat array (RESP3: an
/// array of two-element arrays), `Push` an array. In RESP3 `NullArray` is `_` like `Null`.
///
/// A CR or LF inside a `Simple` or `Error` string is written as a space: these
/// are line-framed, so one would end the reply early and make the client
/// read the rest as further replies.
pub fn write_reply(buf: &mut BytesMut, reply: &Reply, proto: Protocol) {
    match (reply, proto) {
        (Reply::Simple(text), _) => write_line(buf, b'+', text.as_bytes()),
        (Reply::Error(text), _) => write_line(buf, b'-', text.as_bytes()),
        (Reply::Integer(value), _) => write_integer(buf, *value),
        (Reply::Bulk(bytes), _) => write_bulk(buf, bytes),
        (Reply::Null, Protocol::Resp2) => buf.extend_from_slice(b"$-1\r\n"),
        (Reply::NullArray, Protocol::Resp2) => buf.extend_from_slice(b"*-1\r\n"),
        (Reply::Null | Reply::NullArray, Protocol::Resp3) => buf.extend_from_slice(b"_\r\n"),
        (Reply::Array(items), _) => write_aggregate(buf, b'*', items, proto),
        (Reply::Set(items), Protocol::Resp2) => write_aggregate(buf, b'*', items, proto),
        (Reply::Set(items), Protocol::Resp3) => write_aggregate(buf, b'~', items, proto),
        (Reply::Push(items), Protocol::Resp2) => write_aggregate(buf, b'*', items, proto),
        (Reply::Push(items), Protocol::Resp3) => write_aggregate(buf, b'>', items, proto),
        (Reply::Map(pairs), _) => {
            match proto {
                // Two elements per pair; cannot overflow, as each pair
                // occupies far more than two bytes of memory.
                Protocol::Resp2 => write_header(buf, b'*', pairs.len().saturating_mul(2)),
                Protocol::Resp3 => write_header(buf, b'%', pairs.len()),
            }
            for (key, value) in pairs {
                write_reply(buf, key, proto);
                write_reply(buf, value, proto);
            }
        }
        (Reply::Pairs(pairs), _) => {
            match proto {
                Protocol::Resp2 => write_header(buf, b'*', pairs.len().saturating_mul(2)),
                Protocol::Resp3 => write_header(buf, b'*', pairs.len()),
            }
            for (first, second) in pairs {
                if proto == Protocol::Resp3 {
                    write_header(buf, b'*', 2);
                }
                write_reply(buf, first, proto);
                write_reply(buf, second, proto);
            }
        }
        (Reply::Double(value), Protocol::Resp2) => {
            write_bulk(buf, format_double(*value).as_bytes())
        }
        (Reply::Double(value), Protocol::Resp3) => {
            write_line(buf, b',', format_double(*value).as_bytes())
        }
        (Reply::Bool(value), Protocol::Resp2) => write_integer(buf, i64::from(*value)),
        (Reply::Bool(true), Protocol::Resp3) => buf.extend_from_slice(b"#t\r\n"),
        (Reply::Bool(false), Protocol::Resp3) => buf.extend_from_slice(b"#f\r\n"),
        (Reply::Verbatim(text), Protocol::Resp2) => write_bulk(buf, text),
        (Reply::Verbatim(text), Protocol::Resp3) => {
            const FORMAT: &[u8] = b"txt:";
            write_header(buf, b'=', text.len().saturating_add(FORMAT.len()));
            buf.extend_from_slice(FORMAT);
            buf.extend_from_slice(text);
            buf.extend_from_slice(b"\r\n");
        }
    }
}

/// Formats a double the way Redis 7.0's `addReplyDouble` does: `inf`,
/// `-inf`, `nan`; otherwise C's `%.17g` (17 significant digits, trailing
/// zeros dropped, plain notation for decimal exponents -4 to 16, else
/// `d.ddde+XX` with at least two exponent digits). Seventeen digits always
/// parse back to the same value; Redis' own test suite compares these texts
/// exactly (`0.1` reads back as `0.10000000000000001`).
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    const PRECISION: i32 = 17;
    // Rust's `{:e}` with a precision rounds correctly, as C's printf does.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..PRECISION).contains(&exponent) {
        let decimals = (PRECISION - 1 - exponent) as usize;
        let plain = format!("{value:.decimals$}");
        return trim_fraction(&plain).to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!(
        "{}e{sign}{:02}",
        trim_fraction(mantissa),
        exponent.unsigned_abs()
    )
}

/// `%g`'s removal of trailing zeros (and of a trailing point).
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

fn write_integer(buf: &mut BytesMut, value: i64) {
    buf.put_u8(b':');
    write_i64(buf, value);
    buf.extend_from_slice(b"\r\n");
}

fn write_bulk(buf: &mut BytesMut, bytes: &[u8]) {
    write_header(buf, b'$', bytes.len());
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(b"\r\n");
}

fn write_aggregate(buf: &mut BytesMut, prefix: u8, items: &[Reply], proto: Protocol) {
    write_header(buf, prefix, items.len());
    for item in items {
        write_reply(buf, item, proto);
    }
}

/// Writes a line-framed value, turning CR and LF into spaces.
fn write_line(buf: &mut BytesMut, prefix: u8, text: &[u8]) {
    buf.put_u8(prefix);
    if text.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
        buf.extend(text.iter().map(|&byte| {
            if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            }
        }));
    } else {
        buf.extend_from_slice(text);
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn encode(reply: &Reply, proto: Protocol) -> String {
        let mut buf = BytesMut::new();
        write_reply(&mut buf, reply, proto);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    fn both(reply: Reply, resp2: &str, resp3: &str) {
        assert_eq!(encode(&reply, Protocol::Resp2), resp2, "{reply:?} in RESP2");
        assert_eq!(encode(&reply, Protocol::Resp3), resp3, "{reply:?} in RESP3");
    }

    #[test]
    fn encodes_every_kind() {
        both(Reply::ok(), "+OK\r\n", "+OK\r\n");
        both(Reply::error("ERR no"), "-ERR no\r\n", "-ERR no\r\n");
        both(Reply::Integer(-12), ":-12\r\n", ":-12\r\n");
        both(
            Reply::Bulk(Bytes::from_static(b"a\r\nb")),
            "$4\r\na\r\nb\r\n",
            "$4\r\na\r\nb\r\n",
        );
        both(Reply::Bulk(Bytes::new()), "$0\r\n\r\n", "$0\r\n\r\n");
        both(Reply::Null, "$-1\r\n", "_\r\n");
        both(Reply::NullArray, "*-1\r\n", "_\r\n");
        both(
            Reply::Array(vec![Reply::Integer(1), Reply::Null]),
            "*2\r\n:1\r\n$-1\r\n",
            "*2\r\n:1\r\n_\r\n",
        );
        both(
            Reply::Map(vec![(Reply::Simple("k".into()), Reply::Bool(true))]),
            "*2\r\n+k\r\n:1\r\n",
            "%1\r\n+k\r\n#t\r\n",
        );
        both(
            Reply::Set(vec![Reply::Bool(false)]),
            "*1\r\n:0\r\n",
            "~1\r\n#f\r\n",
        );
        both(Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n");
        both(
            Reply::Verbatim(Bytes::from_static(b"# Server")),
            "$8\r\n# Server\r\n",
            "=12\r\ntxt:# Server\r\n",
        );
    }

    #[test]
    fn line_replies_cannot_break_framing() {
        both(Reply::Simple("a\r\nb".into()), "+a  b\r\n", "+a  b\r\n");
        both(Reply::error("ERR x\ny"), "-ERR x y\r\n", "-ERR x y\r\n");
    }

    #[test]
    fn formats_doubles_like_redis() {
        let cases = [
            (3.0, "3"),
            (-0.0, "-0"),
            (0.0, "0"),
            (0.1, "0.10000000000000001"),
            (1.5, "1.5"),
            (1.3, "1.3"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1.5e300, "1.5000000000000001e+300"),
            (1e-4, "0.0001"),
            (1e-5, "1.0000000000000001e-05"),
            (1.5e-7, "1.4999999999999999e-07"),
            (0.5488135039273248, "0.54881350392732475"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (value, text) in cases {
            assert_eq!(format_double(value), text);
        }
    }
}
