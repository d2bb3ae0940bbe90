//! Property: what one side writes, the other side reads back unchanged.
//! Requests: `write_request` then `RequestParser`. Replies: `write_reply` then
//! `parse_reply`, which gives the same reply in RESP3 and its RESP2 form in
//! RESP2.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use synod_resp::{
    format_double, parse_reply, write_reply, write_request, Protocol, Reply, RequestParser,
};

fn any_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..8)
}

fn any_double() -> impl Strategy<Value = f64> {
    // NaN is left out only because NaN != NaN; it has its own test.
    prop::num::f64::POSITIVE
        | prop::num::f64::NEGATIVE
        | prop::num::f64::ZERO
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::INFINITE
}

fn any_reply() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        "[^\r\n]{0,16}".prop_map(|s: String| Reply::simple(s)),
        "[A-Z]{1,8} [^\r\n]{0,16}".prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| Reply::Bulk(b.into())),
        Just(Reply::Null),
        Just(Reply::NullArray),
        any_double().prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Bool),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| Reply::Verbatim(b.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Reply::Map),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Pairs),
        ]
    })
}

/// What a RESP3 client reads back: RESP3 has a single null.
fn resp3_form(reply: &Reply) -> Reply {
    match reply {
        Reply::NullArray => Reply::Null,
        Reply::Array(items) => Reply::Array(items.iter().map(resp3_form).collect()),
        Reply::Set(items) => Reply::Set(items.iter().map(resp3_form).collect()),
        Reply::Map(pairs) => Reply::Map(
            pairs
                .iter()
                .map(|(key, value)| (resp3_form(key), resp3_form(value)))
                .collect(),
        ),
        Reply::Pairs(pairs) => Reply::Array(
            pairs
                .iter()
                .map(|(first, second)| Reply::Array(vec![resp3_form(first), resp3_form(second)]))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a RESP2 client reads back: the RESP2 forms of RESP3-only kinds.
fn resp2_form(reply: &Reply) -> Reply {
    match reply {
        Reply::Array(items) | Reply::Set(items) => {
            Reply::Array(items.iter().map(resp2_form).collect())
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => Reply::Array(
            pairs
                .iter()
                .flat_map(|(key, value)| [resp2_form(key), resp2_form(value)])
                .collect(),
        ),
        Reply::Double(value) => Reply::Bulk(Bytes::from(format_double(*value))),
        Reply::Bool(value) => Reply::Integer(i64::from(*value)),
        Reply::Verbatim(text) => Reply::Bulk(text.clone()),
        other => other.clone(),
    }
}

fn read_back(reply: &Reply, proto: Protocol) -> Reply {
    let mut buf = BytesMut::new();
    write_reply(&mut buf, reply, proto);
    let parsed = parse_reply(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "one reply consumes exactly its bytes");
    parsed
}

proptest! {
    #[test]
    fn requests_round_trip(args in any_args()) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut buf = BytesMut::new();
        write_request(&mut buf, &refs);
        let parsed = RequestParser::default().parse(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(parsed, args);
    }

    #[test]
    fn replies_round_trip_in_resp3(reply in any_reply()) {
        prop_assert_eq!(read_back(&reply, Protocol::Resp3), resp3_form(&reply));
    }

    #[test]
    fn replies_round_trip_in_resp2(reply in any_reply()) {
        prop_assert_eq!(read_back(&reply, Protocol::Resp2), resp2_form(&reply));
    }

    #[test]
    fn doubles_keep_their_value(value in any_double()) {
        let text = format_double(value);
        let back: f64 = match text.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => text.parse().unwrap(),
        };
        prop_assert_eq!(back.to_bits(), value.to_bits(), "{}", text);
    }

    #[test]
    fn pipelined_replies_come_out_in_order(replies in prop::collection::vec(any_reply(), 1..6)) {
        let mut buf = BytesMut::new();
        for reply in &replies {
            write_reply(&mut buf, reply, Protocol::Resp3);
        }
        for reply in &replies {
            prop_assert_eq!(parse_reply(&mut buf).unwrap().unwrap(), resp3_form(reply));
        }
        prop_assert!(buf.is_empty());
    }
}

#[test]
fn nan_round_trips() {
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        match read_back(&Reply::Double(f64::NAN), proto) {
            Reply::Double(value) => assert!(value.is_nan()),
            Reply::Bulk(text) => assert_eq!(&text[..], b"nan"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
