//! The binary encoding of a [`Reply`] as the state machine's output.
//!
//! `apply` and `query` return bytes (the `StateMachine` contract); the RESP
//! front end decodes them back into a [`Reply`] and writes it in the
//! client's protocol version. Layout: a version byte
//! ([`REPLY_FORMAT_VERSION`]), then the reply: a tag byte and its fields,
//! lengths as `u32`, numbers little-endian.

use std::borrow::Cow;

use bytes::Bytes;
use synod_resp::Reply;

use crate::wire::{DecodeError, Reader, Writer};

/// The format version byte every encoded reply starts with.
pub const REPLY_FORMAT_VERSION: u8 = 1;

/// Deepest nesting of aggregates the decoder accepts. The store's deepest
/// reply is a transaction of `SCAN`s (3 levels); the limit guards the
/// decoder's recursion against hostile input.
pub const REPLY_DEPTH_MAX: usize = 32;

mod tag {
    pub const SIMPLE: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const INTEGER: u8 = 2;
    pub const BULK: u8 = 3;
    pub const NULL: u8 = 4;
    pub const NULL_ARRAY: u8 = 5;
    pub const ARRAY: u8 = 6;
    pub const MAP: u8 = 7;
    pub const SET: u8 = 8;
    pub const DOUBLE: u8 = 9;
    pub const BOOL: u8 = 10;
    pub const VERBATIM: u8 = 11;
    pub const PAIRS: u8 = 12;
    /// A push (pub/sub): never an apply's output today, but every reply
    /// kind has a tag so the codec stays total.
    pub const PUSH: u8 = 13;
}

/// `encode_reply(&Reply::ok())`, the most frequent output (every SET),
/// as a static: no allocation to encode it, and its clones (the session
/// table keeps one per write) cost none either, where a fresh buffer's
/// first clone allocates a shared header. A test checks it against the
/// general encoding.
const ENCODED_OK: [u8; 8] = [REPLY_FORMAT_VERSION, tag::SIMPLE, 2, 0, 0, 0, b'O', b'K'];

/// Encodes a reply for the state machine's output.
pub fn encode_reply(reply: &Reply) -> Bytes {
    if matches!(reply, Reply::Simple(text) if text == "OK") {
        return Bytes::from_static(&ENCODED_OK);
    }
    Writer::sized(|writer| {
        writer.u8(REPLY_FORMAT_VERSION);
        encode(writer, reply);
    })
}

/// Decodes what [`encode_reply`] produced. Never panics; rejects status and
/// error lines containing CR or LF, which would break the RESP framing.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, DecodeError> {
    decode_from(bytes, Reader::new(bytes))
}

/// [`decode_reply`] of an output held as `Bytes`: bulk strings are
/// zero-copy slices of `bytes` rather than copies (a GET's value is copied
/// once fewer on its way to the client; the first slice of a fresh buffer
/// still allocates its shared header, as the copy allocated its own, so
/// this saves copying, not allocations). The reply keeps `bytes` alive as
/// long as it lives: for a reply on its way to a client, not one kept.
pub fn decode_reply_shared(bytes: &Bytes) -> Result<Reply, DecodeError> {
    decode_from(bytes, Reader::shared(bytes))
}

fn decode_from(bytes: &[u8], mut reader: Reader<'_>) -> Result<Reply, DecodeError> {
    if bytes == ENCODED_OK {
        // No copy of the text (the general path allocates a `String`).
        return Ok(Reply::ok());
    }
    let version = reader.u8().map_err(|_| DecodeError::Empty)?;
    if version != REPLY_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let reply = decode(&mut reader, 0)?;
    reader.finish()?;
    Ok(reply)
}

fn encode(writer: &mut Writer, reply: &Reply) {
    match reply {
        Reply::Simple(text) => {
            writer.u8(tag::SIMPLE);
            writer.bytes(text.as_bytes());
        }
        Reply::Error(text) => {
            writer.u8(tag::ERROR);
            writer.bytes(text.as_bytes());
        }
        Reply::Integer(value) => {
            writer.u8(tag::INTEGER);
            writer.i64(*value);
        }
        Reply::Bulk(value) => {
            writer.u8(tag::BULK);
            writer.bytes(value);
        }
        Reply::Null => writer.u8(tag::NULL),
        Reply::NullArray => writer.u8(tag::NULL_ARRAY),
        Reply::Array(items) => {
            writer.u8(tag::ARRAY);
            writer.len(items.len());
            for item in items {
                encode(writer, item);
            }
        }
        Reply::Map(pairs) => {
            writer.u8(tag::MAP);
            writer.len(pairs.len());
            for (key, value) in pairs {
                encode(writer, key);
                encode(writer, value);
            }
        }
        Reply::Set(items) => {
            writer.u8(tag::SET);
            writer.len(items.len());
            for item in items {
                encode(writer, item);
            }
        }
        Reply::Double(value) => {
            writer.u8(tag::DOUBLE);
            writer.f64(*value);
        }
        Reply::Bool(value) => {
            writer.u8(tag::BOOL);
            writer.bool(*value);
        }
        Reply::Verbatim(value) => {
            writer.u8(tag::VERBATIM);
            writer.bytes(value);
        }
        Reply::Push(items) => {
            writer.u8(tag::PUSH);
            writer.len(items.len());
            for item in items {
                encode(writer, item);
            }
        }
        Reply::Pairs(pairs) => {
            writer.u8(tag::PAIRS);
            writer.len(pairs.len());
            for (first, second) in pairs {
                encode(writer, first);
                encode(writer, second);
            }
        }
    }
}

fn line(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    let text = reader.string()?;
    if text.contains(['\r', '\n']) {
        return Err(DecodeError::Invalid("CR or LF in a status or error line"));
    }
    Ok(text)
}

fn items(reader: &mut Reader<'_>, depth: usize) -> Result<Vec<Reply>, DecodeError> {
    let len = reader.len(1)?;
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        items.push(decode(reader, depth + 1)?);
    }
    Ok(items)
}

fn pairs(reader: &mut Reader<'_>, depth: usize) -> Result<Vec<(Reply, Reply)>, DecodeError> {
    let len = reader.len(2)?;
    let mut pairs = Vec::with_capacity(len);
    for _ in 0..len {
        let first = decode(reader, depth + 1)?;
        let second = decode(reader, depth + 1)?;
        pairs.push((first, second));
    }
    Ok(pairs)
}

fn decode(reader: &mut Reader<'_>, depth: usize) -> Result<Reply, DecodeError> {
    if depth > REPLY_DEPTH_MAX {
        return Err(DecodeError::TooDeep(REPLY_DEPTH_MAX));
    }
    let reply = match reader.u8()? {
        tag::SIMPLE => Reply::Simple(status_line(reader)?),
        tag::ERROR => Reply::Error(line(reader)?),
        tag::INTEGER => Reply::Integer(reader.i64()?),
        tag::BULK => Reply::Bulk(reader.shared_bytes()?),
        tag::NULL => Reply::Null,
        tag::NULL_ARRAY => Reply::NullArray,
        tag::ARRAY => Reply::Array(items(reader, depth)?),
        tag::MAP => Reply::Map(pairs(reader, depth)?),
        tag::PAIRS => Reply::Pairs(pairs(reader, depth)?),
        tag::SET => Reply::Set(items(reader, depth)?),
        tag::PUSH => Reply::Push(items(reader, depth)?),
        tag::DOUBLE => Reply::Double(reader.f64()?),
        tag::BOOL => Reply::Bool(reader.bool()?),
        tag::VERBATIM => Reply::Verbatim(reader.bytes()?),
        tag => return Err(DecodeError::UnknownTag { what: "reply", tag }),
    };
    Ok(reply)
}

/// A status line, as [`line`] decodes it, but the ones nearly every write
/// answers come back as shared constants, not copies on the heap.
fn status_line(reader: &mut Reader<'_>) -> Result<Cow<'static, str>, DecodeError> {
    const COMMON: [&str; 3] = ["OK", "QUEUED", "PONG"];
    let mut peek = (*reader).clone();
    let raw = peek.slice()?;
    if let Some(common) = COMMON.iter().find(|common| common.as_bytes() == raw) {
        *reader = peek;
        return Ok(Cow::Borrowed(common));
    }
    line(reader).map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static OK is what the general encoder writes, and both codec
    /// directions agree with it (an OK built at run time too).
    #[test]
    fn the_static_ok_is_the_general_encoding() {
        let mut writer = Writer::with_capacity(16);
        writer.u8(REPLY_FORMAT_VERSION);
        encode(&mut writer, &Reply::ok());
        assert_eq!(&writer.finish()[..], &ENCODED_OK[..]);
        let owned = Reply::Simple(Cow::Owned("OK".to_string()));
        assert_eq!(&encode_reply(&owned)[..], &ENCODED_OK[..]);
        assert_eq!(decode_reply(&ENCODED_OK), Ok(Reply::ok()));
        assert_ne!(&encode_reply(&Reply::simple("OKAY"))[..], &ENCODED_OK[..]);
    }

    #[test]
    fn round_trip_every_kind() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR boom"),
            Reply::Integer(-7),
            Reply::Bulk(Bytes::from_static(b"\0bin\r\n")),
            Reply::Null,
            Reply::NullArray,
            Reply::Map(vec![(Reply::Bulk("f".into()), Reply::Integer(1))]),
            Reply::Set(vec![Reply::Bool(true)]),
            Reply::Double(2.5),
            Reply::Verbatim(Bytes::from_static(b"txt:hi")),
            Reply::Array(vec![]),
            Reply::Pairs(vec![
                (Reply::Bulk("f".into()), Reply::Bulk("v".into())),
                (Reply::Bulk("f".into()), Reply::Bulk("v".into())),
            ]),
        ]);
        let encoded = encode_reply(&reply);
        assert_eq!(decode_reply_shared(&encoded), Ok(reply.clone()));
        assert_eq!(decode_reply(&encoded), Ok(reply));
    }

    /// The shared decode slices bulk strings out of its source (no copy)
    /// and refuses what the copying one refuses.
    #[test]
    fn the_shared_decode_slices_bulk_strings_and_refuses_alike() {
        let encoded = encode_reply(&Reply::Array(vec![
            Reply::Bulk(Bytes::from(vec![7u8; 3000])),
            Reply::Bulk("v".into()),
        ]));
        let range = encoded.as_ptr_range();
        let Ok(Reply::Array(items)) = decode_reply_shared(&encoded) else {
            panic!("an array");
        };
        for item in &items {
            let Reply::Bulk(bulk) = item else {
                panic!("a bulk string");
            };
            assert!(range.contains(&bulk.as_ptr()), "a slice of the source");
        }
        for cut in 0..encoded.len() {
            let cut = encoded.slice(..cut);
            assert_eq!(
                decode_reply_shared(&cut),
                decode_reply(&cut),
                "cut {}",
                cut.len()
            );
            assert!(decode_reply_shared(&cut).is_err());
        }
        let ok = Bytes::from_static(&ENCODED_OK);
        assert_eq!(decode_reply_shared(&ok), Ok(Reply::ok()));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode_reply(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode_reply(&[9, tag::NULL]),
            Err(DecodeError::UnsupportedVersion(9))
        );
        assert_eq!(
            decode_reply(&[REPLY_FORMAT_VERSION, tag::NULL, 0]),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut deep = vec![REPLY_FORMAT_VERSION];
        for _ in 0..100 {
            deep.extend_from_slice(&[tag::ARRAY, 1, 0, 0, 0]);
        }
        deep.push(tag::NULL);
        assert_eq!(
            decode_reply(&deep),
            Err(DecodeError::TooDeep(REPLY_DEPTH_MAX))
        );
        let simple = encode_reply(&Reply::simple("a\r\nb"));
        assert!(decode_reply(&simple).is_err());
    }

    #[test]
    fn status_lines_round_trip_and_refuse_line_breaks() {
        for text in [
            "OK", "QUEUED", "PONG", "OK\r\n", "OK\n", "PONG\r", "\rOK", "ok", "OKAY", "",
            "QUEUED\n",
        ] {
            let enc = encode_reply(&Reply::simple(text.to_string()));
            let dec = decode_reply(&enc);
            if text.contains(['\r', '\n']) {
                assert!(dec.is_err(), "{text:?}");
            } else {
                assert_eq!(dec.unwrap(), Reply::simple(text.to_string()));
            }
            for cut in 1..enc.len() {
                assert!(decode_reply(&enc[..cut]).is_err(), "{text:?} {cut}");
            }
            let mut t = enc.to_vec();
            t.push(0);
            if !text.contains(['\r', '\n']) {
                assert_eq!(decode_reply(&t), Err(DecodeError::TrailingBytes(1)));
            }
            // Inside an array too.
            let arr = encode_reply(&Reply::Array(vec![
                Reply::simple(text.to_string()),
                Reply::Integer(1),
            ]));
            assert_eq!(decode_reply(&arr).is_err(), text.contains(['\r', '\n']));
        }
        let a = Reply::ok();
        let b = Reply::simple("OK".to_string());
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(format!("{a:?}"), "Simple(\"OK\")");
        assert!(matches!(
            decode_reply(&encode_reply(&Reply::simple("OK".to_string()))).unwrap(),
            Reply::Simple(Cow::Borrowed("OK"))
        ));
        let mut bad = vec![REPLY_FORMAT_VERSION, tag::SIMPLE];
        bad.extend(2u32.to_le_bytes());
        bad.extend([0xff, 0xfe]);
        assert!(decode_reply(&bad).is_err());
        let mut short = vec![REPLY_FORMAT_VERSION, tag::SIMPLE];
        short.extend(2u32.to_le_bytes());
        short.extend(b"O");
        assert_eq!(decode_reply(&short), Err(DecodeError::Truncated));
        // Counting pass equals what is written for a nested reply.
        let nested = Reply::Map(vec![(
            Reply::simple("OK"),
            Reply::Array(vec![
                Reply::Bulk(Bytes::from_static(b"xyz")),
                Reply::Double(1.5),
                Reply::Bool(true),
                Reply::Null,
                Reply::Pairs(vec![(
                    Reply::Integer(3),
                    Reply::Verbatim(Bytes::from_static(b"txt:ab")),
                )]),
                Reply::Push(vec![Reply::Set(vec![
                    Reply::NullArray,
                    Reply::error("ERR x"),
                ])]),
            ]),
        )]);
        let mut counter = Writer::counter();
        counter.u8(REPLY_FORMAT_VERSION);
        encode(&mut counter, &nested);
        assert_eq!(counter.written(), encode_reply(&nested).len());
    }
}
