//! The client side of the protocol: writing requests and parsing RESP2 and
//! RESP3 replies. Used by tests and benchmark tools, not by the server.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::number::{parse_i64, write_header};
use crate::reply::Reply;

/// The deepest nesting of aggregate replies accepted. Parsing recurses once
/// per level, so without a bound a stream of `*1\r\n` could overflow the stack.
/// Redis' own replies nest a few levels at most.
pub const REPLY_DEPTH_MAX: usize = 64;

/// The longest bulk string, verbatim string or status line accepted in a
/// reply.
pub const REPLY_BULK_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// The most element slots reserved up front for an aggregate reply; its
/// declared count is untrusted.
const ELEMENTS_PREALLOC_MAX: usize = 1024;

/// Appends a request: an array of bulk strings, the form every client library
/// sends.
pub fn write_request(buf: &mut BytesMut, args: &[&[u8]]) {
    // Payloads plus a generous allowance for headers and line ends.
    let bytes_needed: usize = args.iter().map(|arg| arg.len().saturating_add(16)).sum();
    buf.reserve(bytes_needed.saturating_add(16));
    write_header(buf, b'*', args.len());
    for arg in args {
        write_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Takes one complete reply off the front of `buf`, or returns `Ok(None)`
/// (consuming nothing) if `buf` ends inside it.
///
/// Parses every RESP2 and RESP3 type except big numbers `(`, attributes `|`
/// and pushes `>`, which are rejected. RESP3 `_` parses as [`Reply::Null`]
/// (RESP3 has one null), a blob error `!` as [`Reply::Error`], and a verbatim
/// string as [`Reply::Verbatim`] without its format prefix (`txt:`).
///
/// Without saved state, a reply arriving in pieces is re-scanned on each
/// call; the scan allocates nothing, so this is cheap for the replies tests
/// and benchmarks see, but a huge array read in small pieces costs time
/// quadratic in its size.
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    // First pass: find the reply's end, building nothing.
    let mut scan = Cursor {
        data: buf,
        pos: 0,
        frame: None,
    };
    if scan.value(0)?.is_none() {
        return Ok(None);
    }
    let end = scan.pos;
    // Second pass over exactly the reply's bytes, slicing bulk strings from it.
    let frame = buf.split_to(end).freeze();
    let mut build = Cursor {
        data: &frame,
        pos: 0,
        frame: Some(&frame),
    };
    let reply = build.value(0)?;
    debug_assert_eq!(build.pos, end, "both passes parse the same bytes");
    // The first pass found a complete reply in these bytes, so the second does.
    reply.map(Some).ok_or(ProtocolError::InvalidReply("frame"))
}

/// A position in reply bytes. Without `frame` it only scans (every value
/// comes back as a placeholder `Null`); with it, it builds replies and slices
/// bulk strings out of `frame`, which holds the same bytes as `data`.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    frame: Option<&'a Bytes>,
}

impl<'a> Cursor<'a> {
    /// Parses the value at `pos`; `None` if the data ends inside it.
    fn value(&mut self, depth: usize) -> Result<Option<Reply>, ProtocolError> {
        let Some(&kind) = self.data.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        let reply = match kind {
            b'+' => self.text(line).map(Reply::simple),
            b'-' => self.text(line).map(Reply::Error),
            b':' => Some(Reply::Integer(
                parse_i64(line).ok_or(ProtocolError::InvalidReply("integer"))?,
            )),
            b'_' if line.is_empty() => Some(Reply::Null),
            b'_' => return Err(ProtocolError::InvalidReply("null")),
            b'#' => match line {
                b"t" => Some(Reply::Bool(true)),
                b"f" => Some(Reply::Bool(false)),
                _ => return Err(ProtocolError::InvalidReply("boolean")),
            },
            b',' => Some(Reply::Double(parse_double(line)?)),
            b'$' | b'!' | b'=' => {
                let Some(len) = self.length(line, kind, ProtocolError::InvalidBulkLength)? else {
                    return Ok(Some(Reply::Null));
                };
                let Some(payload) = self.bulk(len)? else {
                    return Ok(None);
                };
                if kind == b'=' && (len < 4 || self.data.get(payload.start + 3) != Some(&b':')) {
                    // A verbatim string starts with a three-byte format and ':'.
                    return Err(ProtocolError::InvalidReply("verbatim string"));
                }
                self.frame.map(|frame| match kind {
                    b'$' => Reply::Bulk(frame.slice(payload)),
                    b'!' => Reply::Error(String::from_utf8_lossy(&frame[payload]).into_owned()),
                    _ => Reply::Verbatim(frame.slice(payload.start + 4..payload.end)),
                })
            }
            b'*' | b'~' | b'%' | b'>' => {
                let Some(count) = self.length(line, kind, ProtocolError::InvalidMultibulkLength)?
                else {
                    // Only `*` may be null; `~-1` and `%-1` were refused above.
                    return Ok(Some(Reply::NullArray));
                };
                if depth >= REPLY_DEPTH_MAX {
                    return Err(ProtocolError::ReplyTooDeep {
                        limit: REPLY_DEPTH_MAX,
                    });
                }
                let elements = match kind {
                    b'%' => count
                        .checked_mul(2)
                        .ok_or(ProtocolError::InvalidMultibulkLength)?,
                    _ => count,
                };
                let Some(mut items) = self.elements(elements, depth)? else {
                    return Ok(None);
                };
                match kind {
                    b'*' => Some(Reply::Array(items)),
                    b'~' => Some(Reply::Set(items)),
                    b'>' => Some(Reply::Push(items)),
                    _ => {
                        let mut pairs = Vec::with_capacity(items.len() / 2);
                        let mut drain = items.drain(..);
                        while let (Some(key), Some(value)) = (drain.next(), drain.next()) {
                            pairs.push((key, value));
                        }
                        Some(Reply::Map(pairs))
                    }
                }
            }
            other => return Err(ProtocolError::UnsupportedReplyType { got: other }),
        };
        // In scan mode nothing is built; any value marks "complete".
        Ok(Some(reply.unwrap_or(Reply::Null)))
    }

    /// The rest of the current line without its CRLF, moving past it.
    fn line(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        let data = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
            if rest.len() > REPLY_BULK_BYTES_MAX {
                return Err(ProtocolError::InvalidReply("line length"));
            }
            return Ok(None);
        };
        let line = rest[..newline]
            .strip_suffix(b"\r")
            .ok_or(ProtocolError::InvalidReply("line end"))?;
        self.pos += newline + 1;
        Ok(Some(line))
    }

    /// The declared length of a bulk or aggregate of type `kind`: `None` for
    /// the null form `-1`, which only `$` and `*` have.
    fn length(
        &self,
        line: &[u8],
        kind: u8,
        invalid: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        match parse_i64(line) {
            Some(-1) if kind == b'$' || kind == b'*' => Ok(None),
            Some(len) => usize::try_from(len)
                .ok()
                .filter(|&len| len <= REPLY_BULK_BYTES_MAX)
                .map(Some)
                .ok_or(invalid),
            None => Err(invalid),
        }
    }

    /// Moves past a bulk payload of `len` bytes and its CRLF, returning where
    /// the payload lies; `None` if incomplete.
    fn bulk(&mut self, len: usize) -> Result<Option<Range<usize>>, ProtocolError> {
        let start = self.pos;
        let end = start + len; // len <= REPLY_BULK_BYTES_MAX: no overflow.
        let Some(terminator) = self.data.get(end..end + 2) else {
            return Ok(None);
        };
        if terminator != b"\r\n" {
            return Err(ProtocolError::BulkNotTerminated);
        }
        self.pos = end + 2;
        Ok(Some(start..end))
    }

    /// `count` nested values: `None` if incomplete, else the values (empty
    /// when only scanning).
    fn elements(
        &mut self,
        count: usize,
        depth: usize,
    ) -> Result<Option<Vec<Reply>>, ProtocolError> {
        let mut items = match self.frame {
            Some(_) => Vec::with_capacity(count.min(ELEMENTS_PREALLOC_MAX)),
            None => Vec::new(),
        };
        // Bounded by the data: each value consumes at least one byte or ends
        // the loop as incomplete.
        for _ in 0..count {
            let Some(item) = self.value(depth + 1)? else {
                return Ok(None);
            };
            if self.frame.is_some() {
                items.push(item);
            }
        }
        Ok(Some(items))
    }

    /// A status or error line as text, built only when building.
    fn text(&self, line: &[u8]) -> Option<String> {
        self.frame
            .map(|_| String::from_utf8_lossy(line).into_owned())
    }
}

fn parse_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let invalid = ProtocolError::InvalidReply("double");
    let text = std::str::from_utf8(line).map_err(|_| invalid.clone())?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        // Only decimal forms reach Rust's parser, which would also take
        // spellings such as "infinity" that RESP3 does not have.
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) =>
        {
            text.parse().map_err(|_| invalid)
        }
        _ => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        let mut buf = BytesMut::from(wire);
        let reply = parse_reply(&mut buf);
        if let Ok(Some(_)) = reply {
            assert!(buf.is_empty(), "reply left bytes behind: {buf:?}");
        }
        reply
    }

    #[test]
    fn parses_resp3_types() {
        assert_eq!(parse(b"_\r\n"), Ok(Some(Reply::Null)));
        assert_eq!(parse(b"#t\r\n"), Ok(Some(Reply::Bool(true))));
        assert_eq!(
            parse(b",-inf\r\n"),
            Ok(Some(Reply::Double(f64::NEG_INFINITY)))
        );
        assert_eq!(parse(b",1e+300\r\n"), Ok(Some(Reply::Double(1e300))));
        assert!(matches!(parse(b",nan\r\n"), Ok(Some(Reply::Double(x))) if x.is_nan()));
        assert_eq!(
            parse(b"!7\r\nERR bad\r\n"),
            Ok(Some(Reply::error("ERR bad")))
        );
        assert_eq!(
            parse(b"=7\r\ntxt:abc\r\n"),
            Ok(Some(Reply::Verbatim("abc".into())))
        );
        assert_eq!(
            parse(b"%1\r\n+a\r\n~1\r\n:2\r\n"),
            Ok(Some(Reply::Map(vec![(
                Reply::simple("a"),
                Reply::Set(vec![Reply::Integer(2)])
            )])))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some(Reply::Null)));
        assert_eq!(parse(b"*-1\r\n"), Ok(Some(Reply::NullArray)));
        assert_eq!(
            parse(b">2\r\n$7\r\nmessage\r\n:1\r\n"),
            Ok(Some(Reply::Push(vec![
                Reply::Bulk("message".into()),
                Reply::Integer(1)
            ])))
        );
    }

    #[test]
    fn incomplete_replies_consume_nothing() {
        let wire = b"*2\r\n$3\r\nabc\r\n%1\r\n+k\r\n:1\r\n";
        for len in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..len]);
            assert_eq!(parse_reply(&mut buf), Ok(None), "prefix of {len} bytes");
            assert_eq!(buf.len(), len);
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        let invalid = |what| Err(ProtocolError::InvalidReply(what));
        assert_eq!(
            parse(b"(123\r\n"),
            Err(ProtocolError::UnsupportedReplyType { got: b'(' })
        );
        assert_eq!(
            parse(b">-1\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(parse(b":12x\r\n"), invalid("integer"));
        assert_eq!(parse(b"#x\r\n"), invalid("boolean"));
        assert_eq!(parse(b",infinity\r\n"), invalid("double"));
        assert_eq!(parse(b"_x\r\n"), invalid("null"));
        assert_eq!(parse(b"+OK\n"), invalid("line end"));
        assert_eq!(parse(b"=3\r\ntxt\r\n"), invalid("verbatim string"));
        assert_eq!(parse(b"=1\r\nx\r\n:1\r\n"), invalid("verbatim string"));
        assert_eq!(parse(b"$-2\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(
            parse(b"~-1\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse(b"$1\r\nab\r\n"),
            Err(ProtocolError::BulkNotTerminated)
        );
    }

    #[test]
    fn bounds_nesting() {
        let deep = b"*1\r\n".repeat(REPLY_DEPTH_MAX + 1);
        assert_eq!(
            parse(&deep),
            Err(ProtocolError::ReplyTooDeep {
                limit: REPLY_DEPTH_MAX
            })
        );
        let mut ok = b"*1\r\n".repeat(REPLY_DEPTH_MAX);
        ok.extend_from_slice(b":1\r\n");
        assert!(matches!(parse(&ok), Ok(Some(Reply::Array(_)))));
    }

    #[test]
    fn writes_requests_as_bulk_arrays() {
        let mut buf = BytesMut::new();
        write_request(&mut buf, &[b"SET", b"a", b""]);
        assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$0\r\n\r\n");
    }
}
