//! Property: however a stream of requests is cut into reads, the parser
//! yields the same requests, in order.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use synod_resp::{write_request, RequestParser};

/// One request as it goes on the wire, and the arguments it carries.
fn any_request() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    let multibulk = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
        .prop_map(|args| {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut wire = BytesMut::new();
            write_request(&mut wire, &refs);
            (wire.to_vec(), args)
        });
    let inline = (
        prop::collection::vec("[a-zA-Z0-9_:.-]{1,10}", 1..5),
        "[ \t]{1,3}",
        prop::bool::ANY,
    )
        .prop_map(|(words, gap, crlf)| {
            let mut wire = words.join(&gap).into_bytes();
            wire.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            (wire, words.into_iter().map(String::into_bytes).collect())
        });
    // Skipped requests carry no arguments.
    let skipped = prop_oneof![
        Just(b"*0\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"\r\n".to_vec())
    ]
    .prop_map(|wire| (wire, Vec::new()));
    prop_oneof![4 => multibulk, 2 => inline, 1 => skipped]
}

fn any_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<Vec<u8>>>)> {
    prop::collection::vec(any_request(), 1..10).prop_map(|requests| {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (bytes, args) in requests {
            wire.extend_from_slice(&bytes);
            if !args.is_empty() {
                expected.push(args);
            }
        }
        (wire, expected)
    })
}

/// Feeds `wire` in reads of the given sizes (cycled), draining complete
/// requests after each read.
fn parse_in_reads(wire: &[u8], read_sizes: &[usize]) -> Vec<Vec<Bytes>> {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut at = 0;
    for &size in read_sizes.iter().cycle() {
        let end = (at + size).min(wire.len());
        buf.extend_from_slice(&wire[at..end]);
        at = end;
        while let Some(args) = parser.parse(&mut buf).unwrap() {
            requests.push(args);
        }
        if at == wire.len() {
            break;
        }
    }
    assert!(buf.is_empty(), "the whole stream is consumed");
    requests
}

proptest! {
    #[test]
    fn any_split_gives_the_same_requests(
        (wire, expected) in any_stream(),
        read_sizes in prop::collection::vec(1usize..64, 1..16),
    ) {
        prop_assert_eq!(parse_in_reads(&wire, &read_sizes), expected);
    }

    #[test]
    fn byte_by_byte_gives_the_same_requests((wire, expected) in any_stream()) {
        prop_assert_eq!(parse_in_reads(&wire, &[1]), expected);
    }
}

#[test]
fn a_large_bulk_streams_in_linear_time() {
    // 8 MiB fed in 64-byte reads is 131072 calls: fast if each call is O(1)
    // in the bytes already buffered, minutes if each rescanned the buffer.
    let value = vec![b'x'; 8 * 1024 * 1024];
    let mut wire = BytesMut::new();
    write_request(&mut wire, &[b"SET", b"big", &value]);
    let requests = parse_in_reads(&wire, &[64]);
    assert_eq!(requests.len(), 1);
    assert_eq!(&requests[0][2][..], &value[..]);
}

#[test]
fn many_small_arguments_stream_in_linear_time() {
    let args: Vec<Vec<u8>> = (0..200_000)
        .map(|i: u32| i.to_string().into_bytes())
        .collect();
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let mut wire = BytesMut::new();
    write_request(&mut wire, &refs);
    let requests = parse_in_reads(&wire, &[7]);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0], args);
}
