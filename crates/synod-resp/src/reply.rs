//! A reply to a client command, independent of the RESP version it is
//! written in (see [`write_reply`](crate::write_reply) for the RESP2 and RESP3
//! encodings).

use std::borrow::Cow;

use bytes::Bytes;

/// A command's reply. RESP2 writes the RESP3-only kinds in their RESP2 form
/// (`Null` as a null bulk string, `Map` as a flat array, `Double` as a bulk
/// string, `Set` as an array, `Bool` as an integer 0/1).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`-style status line (no CR or LF inside). Borrowed for the
    /// constant lines (`OK`, `QUEUED`, ...): one is built for nearly every
    /// write, and copying it onto the heap was a measurable share of a SET.
    Simple(Cow<'static, str>),
    /// `-ERR ...`: the full error line without the leading `-` (it must start
    /// with an error code such as `ERR` or `WRONGTYPE`).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Bytes),
    /// Null (RESP2 `$-1`, RESP3 `_`).
    Null,
    /// Null array (RESP2 `*-1`, RESP3 `_`), e.g. EXEC after a failed WATCH.
    NullArray,
    /// `*n` array.
    Array(Vec<Reply>),
    /// RESP3 map `%n` (RESP2: flat array of key, value, ...).
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set `~n` (RESP2: array).
    Set(Vec<Reply>),
    /// RESP3 double `,x` (RESP2: bulk string).
    Double(f64),
    /// RESP3 boolean `#t`/`#f` (RESP2: integer 1/0).
    Bool(bool),
    /// RESP3 verbatim string `=n\r\ntxt:...` (RESP2: bulk string); used by INFO.
    Verbatim(Bytes),
    /// Pairs (`HRANDFIELD ... WITHVALUES`, `ZRANGE ... WITHSCORES`): in RESP3
    /// an array of two-element arrays, in RESP2 one flat array of first,
    /// second, first, second, ... Unlike a map, a first may repeat.
    Pairs(Vec<(Reply, Reply)>),
    /// RESP3 push `>n` (RESP2: array): out-of-band data such as a pub/sub
    /// message or a (un)subscribe confirmation. A connection layer sends
    /// it; it never travels in the replicated log.
    Push(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// An error reply; `line` must start with an error code (`ERR ...`).
    pub fn error(line: impl Into<String>) -> Reply {
        Reply::Error(line.into())
    }

    /// A status reply such as `+PONG`. A CR or LF in `text` is written as a
    /// space.
    pub fn simple(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Simple(text.into())
    }

    /// A bulk string reply.
    pub fn bulk(bytes: impl Into<Bytes>) -> Reply {
        Reply::Bulk(bytes.into())
    }
}
