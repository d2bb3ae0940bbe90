//! # synod-resp: the Redis protocol (RESP2 and RESP3)
//!
//! Synod speaks the Redis protocol so that redis-cli, redis-benchmark and
//! Redis client libraries work with it unchanged. This crate is that protocol
//! and nothing else: no sockets, no commands.
//!
//! - Server side: [`RequestParser`] takes requests (RESP arrays of bulk
//!   strings, or inline commands) off a connection's read buffer, bounded by
//!   [`Limits`]; [`write_reply`] writes a [`Reply`] in the [`Protocol`]
//!   version the client chose with `HELLO`.
//! - Client side (tests, benchmark tools): [`write_request`] and
//!   [`parse_reply`].
//!
//! Nothing here panics on network input: malformed bytes give a
//! [`ProtocolError`], whose [`ProtocolError::to_reply`] is the `-ERR Protocol
//! error: ...` line Redis sends before closing the connection.
//!
//! ```
//! use bytes::BytesMut;
//! use synod_resp::{parse_reply, write_reply, write_request, Protocol, Reply, RequestParser};
//!
//! let mut wire = BytesMut::new();
//! write_request(&mut wire, &[b"SET", b"k", b"v"]);
//! let args = RequestParser::default().parse(&mut wire).unwrap().unwrap();
//! assert_eq!(args, ["SET", "k", "v"]);
//!
//! write_reply(&mut wire, &Reply::ok(), Protocol::Resp2);
//! assert_eq!(&wire[..], b"+OK\r\n");
//! assert_eq!(parse_reply(&mut wire), Ok(Some(Reply::ok())));
//! ```

#![deny(missing_docs)]

pub mod client;
pub mod encode;
mod error;
mod inline;
mod number;
pub mod parse;
pub mod reply;

pub use client::{parse_reply, write_request};
pub use encode::{format_double, write_reply, Protocol};
pub use error::ProtocolError;
pub use parse::{
    Limits, LimitsError, RequestParser, ARGS_KEPT_MAX, UNAUTHENTICATED_ARGS_MAX,
    UNAUTHENTICATED_BULK_BYTES_MAX,
};
pub use reply::Reply;
