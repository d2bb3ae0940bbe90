//! The request parser on exact inputs: each request form, pipelining,
//! skipping, and every protocol error with its exact text.

use bytes::{Bytes, BytesMut};
use synod_resp::{Limits, ProtocolError, Reply, RequestParser};

/// Parses every complete request in `wire`, then the error or the leftover.
fn parse_all(
    parser: &mut RequestParser,
    wire: &[u8],
) -> (Vec<Vec<Bytes>>, Result<usize, ProtocolError>) {
    let mut buf = BytesMut::from(wire);
    let mut requests = Vec::new();
    loop {
        match parser.parse(&mut buf) {
            Ok(Some(args)) => requests.push(args),
            Ok(None) => return (requests, Ok(buf.len())),
            Err(error) => return (requests, Err(error)),
        }
    }
}

fn requests(wire: &[u8]) -> Vec<Vec<String>> {
    let (requests, rest) = parse_all(&mut RequestParser::default(), wire);
    assert_eq!(rest, Ok(0), "whole input should parse");
    requests
        .iter()
        .map(|args| {
            args.iter()
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .collect()
}

fn error_text(limits: Limits, wire: &[u8]) -> String {
    let (_, rest) = parse_all(&mut RequestParser::new(limits), wire);
    match rest {
        Err(error) => error.to_string(),
        Ok(left) => panic!("no error; {left} bytes left unparsed"),
    }
}

fn error_of(wire: &[u8]) -> String {
    error_text(Limits::default(), wire)
}

#[test]
fn parses_a_multibulk_request() {
    assert_eq!(
        requests(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n"),
        [["SET", "a", "b"]]
    );
}

#[test]
fn bulk_strings_are_binary_safe() {
    let (parsed, rest) = parse_all(
        &mut RequestParser::default(),
        b"*2\r\n$3\r\nGET\r\n$4\r\n\r\n\0\xff\r\n",
    );
    assert_eq!(rest, Ok(0));
    assert_eq!(
        parsed,
        [vec![
            Bytes::from_static(b"GET"),
            Bytes::from_static(b"\r\n\0\xff")
        ]]
    );
}

#[test]
fn pipelined_requests_come_out_one_by_one() {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(
        &b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI"[..],
    );
    let first = parser.parse(&mut buf).unwrap().unwrap();
    assert_eq!(first, ["PING"]);
    assert!(
        buf.starts_with(b"ECHO"),
        "only the first request is consumed"
    );
    assert_eq!(parser.parse(&mut buf).unwrap().unwrap(), ["ECHO", "hi"]);
    assert_eq!(parser.parse(&mut buf).unwrap().unwrap(), ["GET", "k"]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    buf.extend_from_slice(b"NG\r\n");
    assert_eq!(parser.parse(&mut buf).unwrap().unwrap(), ["PING"]);
    assert!(buf.is_empty());
}

#[test]
fn empty_and_null_multibulks_are_skipped() {
    assert_eq!(
        requests(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*0\r\n"),
        [["PING"]]
    );
}

#[test]
fn empty_bulk_arguments_are_kept() {
    assert_eq!(requests(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"), [["ECHO", ""]]);
}

#[test]
fn inline_commands() {
    assert_eq!(requests(b"PING\r\n"), [["PING"]]);
    assert_eq!(requests(b"set a b\r\n"), [["set", "a", "b"]]);
    // Telnet and netcat may end lines with a bare LF.
    assert_eq!(requests(b"get  a\n"), [["get", "a"]]);
    assert_eq!(
        requests(b"set \"a key\" 'it\\'s' \"\\x00\\n\"\r\n"),
        [["set", "a key", "it's", "\0\n"]]
    );
}

#[test]
fn empty_inline_lines_are_ignored() {
    assert_eq!(requests(b"\r\n\n   \r\nPING\r\n\r\n"), [["PING"]]);
}

#[test]
fn truncated_frames_wait_for_more() {
    let wire = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    for len in 0..wire.len() {
        let (parsed, rest) = parse_all(&mut RequestParser::default(), &wire[..len]);
        assert!(parsed.is_empty(), "prefix of {len} bytes");
        assert_eq!(rest, Ok(len), "prefix of {len} bytes consumes nothing");
    }
}

#[test]
fn invalid_multibulk_length() {
    for wire in [
        &b"*abc\r\n"[..],
        b"*1x\r\n",
        b"*01\r\n",
        b"*+1\r\n",
        b"*\r\n",
        b"*3\n",
        b"*99999999999999999999\r\n",
    ] {
        assert_eq!(
            error_of(wire),
            "Protocol error: invalid multibulk length",
            "{wire:?}"
        );
    }
}

#[test]
fn too_many_arguments_is_an_invalid_multibulk_length() {
    let limits = Limits {
        args_max: 2,
        ..Limits::default()
    };
    assert_eq!(
        error_text(limits.clone(), b"*3\r\n"),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        error_text(limits, b"a b c\r\n"),
        "Protocol error: invalid multibulk length"
    );
    // The default admits Redis' 1024 * 1024 and refuses one more.
    assert_eq!(
        error_of(b"*1048577\r\n"),
        "Protocol error: invalid multibulk length"
    );
    let (parsed, rest) = parse_all(&mut RequestParser::default(), b"*1048576\r\n");
    assert!(parsed.is_empty());
    assert!(rest.is_ok());
}

#[test]
fn invalid_bulk_length() {
    for wire in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$-5\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$1 \r\n",
        b"*1\r\n$9223372036854775808\r\n",
    ] {
        assert_eq!(
            error_of(wire),
            "Protocol error: invalid bulk length",
            "{wire:?}"
        );
    }
}

#[test]
fn expected_dollar() {
    assert_eq!(
        error_of(b"*1\r\nx3\r\nfoo\r\n"),
        "Protocol error: expected '$', got 'x'"
    );
    assert_eq!(
        error_of(b"*2\r\n$1\r\na\r\n:1\r\n"),
        "Protocol error: expected '$', got ':'"
    );
}

#[test]
fn too_big_inline_request() {
    let limits = Limits {
        inline_bytes_max: 16,
        ..Limits::default()
    };
    // No line end within the limit.
    assert_eq!(
        error_text(limits.clone(), &[b'a'; 17]),
        "Protocol error: too big inline request"
    );
    // A complete line over the limit.
    assert_eq!(
        error_text(limits.clone(), b"set aaaaaaaaaa bbbbbbbbbb\r\n"),
        "Protocol error: too big inline request"
    );
    // Exactly at the limit is fine, and a shorter partial line waits.
    let (parsed, rest) = parse_all(
        &mut RequestParser::new(limits.clone()),
        b"0123456789abcdef\n",
    );
    assert_eq!(parsed.len(), 1);
    assert_eq!(rest, Ok(0));
    let (_, rest) = parse_all(&mut RequestParser::new(limits), &[b'a'; 16]);
    assert_eq!(rest, Ok(16));
    // The default is Redis' 64 KiB.
    assert_eq!(
        error_of(&vec![b'a'; 64 * 1024 + 1]),
        "Protocol error: too big inline request"
    );
}

#[test]
fn too_big_count_strings() {
    let limits = Limits {
        inline_bytes_max: 16,
        ..Limits::default()
    };
    let mut header = b"*".to_vec();
    header.extend_from_slice(&[b'1'; 20]);
    assert_eq!(
        error_text(limits.clone(), &header),
        "Protocol error: too big mbulk count string"
    );
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend_from_slice(&[b'1'; 20]);
    assert_eq!(
        error_text(limits, &bulk),
        "Protocol error: too big bulk count string"
    );
}

#[test]
fn unbalanced_quotes() {
    for wire in [&b"set \"a b\r\n"[..], b"set 'a\r\n", b"set \"a\"b c\r\n"] {
        assert_eq!(
            error_of(wire),
            "Protocol error: unbalanced quotes in request",
            "{wire:?}"
        );
    }
}

#[test]
fn bulk_must_end_with_crlf() {
    assert_eq!(
        error_of(b"*1\r\n$3\r\nPINGX\r\n"),
        "Protocol error: bulk string not terminated by CRLF"
    );
}

#[test]
fn too_big_request() {
    let limits = Limits {
        request_bytes_max: 32,
        ..Limits::default()
    };
    // 4 + (4 + 3 + 2) + (5 + 12 + 2) = 32 bytes: exactly at the limit.
    let (parsed, rest) = parse_all(
        &mut RequestParser::new(limits.clone()),
        b"*2\r\n$3\r\nGET\r\n$12\r\nhello world!\r\n",
    );
    assert_eq!((parsed.len(), rest), (1, Ok(0)));
    // One more payload byte is refused on the header, before it arrives.
    assert_eq!(
        error_text(limits, b"*2\r\n$3\r\nGET\r\n$13\r\n"),
        "Protocol error: too big request (limit 32 bytes)"
    );
}

#[test]
fn huge_bulk_is_rejected_without_allocating() {
    let wire = b"*2\r\n$3\r\nSET\r\n$2147483647\r\n";
    assert_eq!(error_of(wire), "Protocol error: invalid bulk length");

    // Even when the limits admit it, the header alone reserves nothing: the
    // parser waits for the bytes, and the buffer stays as it was.
    let limits = Limits {
        bulk_bytes_max: usize::MAX,
        request_bytes_max: usize::MAX,
        ..Limits::default()
    };
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(wire);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert_eq!(buf.capacity(), 64);
    assert_eq!(&buf[..], wire);
    // The largest i64 length does not overflow the offset arithmetic.
    let mut buf = BytesMut::from(&b"*1\r\n$9223372036854775807\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
}

#[test]
fn error_replies_carry_the_err_code() {
    let error = ProtocolError::UnbalancedQuotes;
    assert_eq!(
        error.to_reply(),
        Reply::Error("ERR Protocol error: unbalanced quotes in request".to_string())
    );
}

#[test]
fn parser_is_reusable_after_an_error() {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(&b"*1\r\n$x\r\n"[..]);
    assert!(parser.parse(&mut buf).is_err());
    let mut buf = BytesMut::from(&b"PING\r\n"[..]);
    assert_eq!(parser.parse(&mut buf).unwrap().unwrap(), ["PING"]);
}

#[test]
fn large_requests_are_sliced_and_small_ones_copied() {
    let value = vec![b'v'; synod_resp::parse::REQUEST_ZERO_COPY_BYTES_MIN];
    let mut wire = BytesMut::new();
    synod_resp::write_request(&mut wire, &[b"SET", b"k", &value]);
    let start = wire.as_ptr() as usize;
    let end = start + wire.len();
    let args = RequestParser::default().parse(&mut wire).unwrap().unwrap();
    let value_at = args[2].as_ptr() as usize;
    assert!(
        (start..end).contains(&value_at),
        "a large value points into the read buffer"
    );
    assert_eq!(&args[2][..], &value[..]);

    let mut wire = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]);
    let start = wire.as_ptr() as usize;
    let end = start + wire.len();
    let args = RequestParser::default().parse(&mut wire).unwrap().unwrap();
    assert!(
        !(start..end).contains(&(args[1].as_ptr() as usize)),
        "a small request is copied"
    );
}

#[test]
fn limits_validate() {
    assert!(Limits::default().validate().is_ok());
    let zero = Limits {
        args_max: 0,
        ..Limits::default()
    };
    assert_eq!(
        zero.validate().unwrap_err().to_string(),
        "limit args_max must be at least 1"
    );
}

/// `parse_into` reuses the caller's vector: each call leaves in it only
/// the request it found (nothing of the one before), and nothing when the
/// buffer ends inside a request or the stream is broken.
#[test]
fn parse_into_leaves_only_the_request_found() {
    let mut parser = RequestParser::default();
    let mut args = Vec::new();
    let mut buf =
        BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nPING\r\n*2\r\n$3\r\nGET"[..]);
    assert_eq!(parser.parse_into(&mut buf, &mut args), Ok(true));
    assert_eq!(args, ["SET", "k", "v"]);
    assert_eq!(parser.parse_into(&mut buf, &mut args), Ok(true));
    assert_eq!(args, ["PING"]);
    assert_eq!(parser.parse_into(&mut buf, &mut args), Ok(false));
    assert!(args.is_empty());
    buf.extend_from_slice(b"\r\n$1\r\nk\r\n");
    assert_eq!(parser.parse_into(&mut buf, &mut args), Ok(true));
    assert_eq!(args, ["GET", "k"]);
    buf.extend_from_slice(b"*1\r\n+oops\r\n");
    assert!(parser.parse_into(&mut buf, &mut args).is_err());
    assert!(args.is_empty());
}
