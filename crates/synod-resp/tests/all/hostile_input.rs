//! Property: no input, however malformed or cut up, panics a parser or makes
//! it loop; each call either consumes bytes, waits, or fails.

use bytes::BytesMut;
use proptest::prelude::*;
use synod_resp::{parse_reply, write_request, Limits, RequestParser};

/// Bytes biased towards the protocol's own symbols, which reach deeper into
/// the parsers than uniform noise does.
fn protocol_soup() -> impl Strategy<Value = Vec<u8>> {
    let symbol = prop_oneof![
        4 => prop::sample::select(b"*$:+-_#,=!%~>(|\r\n0123456789 \"'\\xtf".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(symbol, 0..256)
}

fn small_limits() -> Limits {
    Limits {
        bulk_bytes_max: 32,
        args_max: 4,
        inline_bytes_max: 24,
        request_bytes_max: 64,
    }
}

/// Feeds `wire` in reads of `read_size` bytes until it is used up or the
/// parser fails; asserts each successful call makes progress.
fn feed_requests(parser: &mut RequestParser, wire: &[u8], read_size: usize) {
    let mut buf = BytesMut::new();
    for chunk in wire.chunks(read_size.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match parser.parse(&mut buf) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty());
                    assert!(buf.len() < before, "a request consumes bytes");
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(error.to_string().starts_with("Protocol error: "));
                    return;
                }
            }
        }
    }
}

fn feed_replies(wire: &[u8], read_size: usize) {
    let mut buf = BytesMut::new();
    for chunk in wire.chunks(read_size.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match parse_reply(&mut buf) {
                Ok(Some(_)) => assert!(buf.len() < before, "a reply consumes bytes"),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete reply consumes nothing");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic_the_request_parser(wire in prop::collection::vec(any::<u8>(), 0..512), read_size in 1usize..64) {
        feed_requests(&mut RequestParser::default(), &wire, read_size);
        feed_requests(&mut RequestParser::new(small_limits()), &wire, read_size);
    }

    #[test]
    fn protocol_soup_never_panics_the_request_parser(wire in protocol_soup(), read_size in 1usize..16) {
        feed_requests(&mut RequestParser::default(), &wire, read_size);
        feed_requests(&mut RequestParser::new(small_limits()), &wire, read_size);
    }

    #[test]
    fn corrupted_requests_never_panic(
        args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        read_size in 1usize..16,
    ) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut wire = BytesMut::new();
        write_request(&mut wire, &refs);
        write_request(&mut wire, &refs);
        let mut wire = wire.to_vec();
        for (index, byte) in flips {
            let at = index.index(wire.len());
            wire[at] = byte;
        }
        feed_requests(&mut RequestParser::default(), &wire, read_size);
    }

    #[test]
    fn protocol_soup_never_panics_the_reply_parser(wire in protocol_soup(), read_size in 1usize..16) {
        feed_replies(&wire, read_size);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reply_parser(wire in prop::collection::vec(any::<u8>(), 0..512)) {
        feed_replies(&wire, wire.len());
    }
}
