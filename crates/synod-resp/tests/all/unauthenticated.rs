//! The caps on requests of a connection that has not authenticated yet
//! (Redis: at most 10 arguments of at most 16 KiB each), checked on the
//! headers, before the bytes they announce arrive.

use bytes::BytesMut;
use synod_resp::{
    ProtocolError, Reply, RequestParser, UNAUTHENTICATED_ARGS_MAX, UNAUTHENTICATED_BULK_BYTES_MAX,
};

fn parser(unauthenticated: bool) -> RequestParser {
    let mut parser = RequestParser::default();
    parser.set_unauthenticated(unauthenticated);
    parser
}

#[test]
fn an_unauthenticated_multibulk_of_more_than_ten_is_refused_on_its_header() {
    assert_eq!(UNAUTHENTICATED_ARGS_MAX, 10);
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(
        parser(true).parse(&mut buf),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    assert_eq!(
        ProtocolError::UnauthenticatedMultibulkLength.to_reply(),
        Reply::Error("ERR Protocol error: unauthenticated multibulk length".into())
    );
    // Ten is allowed, and so is eleven once authenticated.
    let mut buf = BytesMut::from(&b"*10\r\n"[..]);
    assert_eq!(parser(true).parse(&mut buf), Ok(None));
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(parser(false).parse(&mut buf), Ok(None));
}

#[test]
fn an_unauthenticated_bulk_longer_than_16_kib_is_refused_before_its_payload() {
    assert_eq!(UNAUTHENTICATED_BULK_BYTES_MAX, 16384);
    // Only the header of a 60 MB argument: refused at once, nothing of the
    // payload needed (or buffered).
    let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$60000000\r\n"[..]);
    assert_eq!(
        parser(true).parse(&mut buf),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    assert_eq!(
        ProtocolError::UnauthenticatedBulkLength.to_reply(),
        Reply::Error("ERR Protocol error: unauthenticated bulk length".into())
    );
    let mut buf = BytesMut::from(&b"*1\r\n$16384\r\n"[..]);
    assert_eq!(parser(true).parse(&mut buf), Ok(None));
    let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
    assert_eq!(parser(false).parse(&mut buf), Ok(None));
}

#[test]
fn authenticating_lifts_the_caps_from_the_next_request_on() {
    // Without the AUTH taking effect, the next request is refused...
    let mut p = parser(true);
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*11\r\n"[..]);
    assert_eq!(
        p.parse(&mut buf),
        Ok(Some(vec!["AUTH".into(), "pw".into()]))
    );
    assert_eq!(
        p.parse(&mut buf),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    // ...and with it, accepted.
    let mut p = parser(true);
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*11\r\n"[..]);
    assert_eq!(
        p.parse(&mut buf),
        Ok(Some(vec!["AUTH".into(), "pw".into()]))
    );
    p.set_unauthenticated(false);
    assert_eq!(p.parse(&mut buf), Ok(None));
    assert_eq!(p.partial_request_bytes(), 5);
}
