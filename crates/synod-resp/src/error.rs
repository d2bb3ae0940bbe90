//! The protocol errors of both directions: a client's malformed request and a
//! server's malformed reply.

use std::fmt;

use crate::reply::Reply;

/// A violation of the Redis protocol. After one, the stream cannot be
/// resynchronised (the next frame boundary is unknown), so a server writes
/// [`ProtocolError::to_reply`] and closes the connection, as Redis does.
///
/// `Display` gives the text Redis puts after `-ERR ` where Redis has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*n` whose `n` is not an integer or exceeds [`Limits::args_max`](crate::Limits::args_max).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$n` whose `n` is not an integer, is negative, or exceeds
    /// [`Limits::bulk_bytes_max`](crate::Limits::bulk_bytes_max).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// `*n` with `n` above [`UNAUTHENTICATED_ARGS_MAX`](crate::parse::UNAUTHENTICATED_ARGS_MAX)
    /// on a connection that must still authenticate (Redis' text and limit).
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// `$n` with `n` above
    /// [`UNAUTHENTICATED_BULK_BYTES_MAX`](crate::parse::UNAUTHENTICATED_BULK_BYTES_MAX)
    /// on a connection that must still authenticate (Redis' text and limit).
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// An argument of a multibulk request does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", ByteForDisplay(*got))]
    ExpectedBulk {
        /// The byte found instead of `$`.
        got: u8,
    },
    /// The `*n` line grew past the inline limit without a line end.
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    /// The `$n` line grew past the inline limit without a line end.
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// An inline command longer than
    /// [`Limits::inline_bytes_max`](crate::Limits::inline_bytes_max).
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline command with an unclosed quote, or a closing quote not
    /// followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// One request larger than
    /// [`Limits::request_bytes_max`](crate::Limits::request_bytes_max)
    /// (Redis has no reply for this: it closes the connection).
    #[error("Protocol error: too big request (limit {limit} bytes)")]
    RequestTooBig {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A bulk string's payload is not followed by CRLF: its declared length is
    /// wrong. Redis skips the two bytes unchecked; we refuse, because reading on
    /// would run payload bytes as commands.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkNotTerminated,
    /// A reply starting with a type byte we do not parse (`(` big number,
    /// `|` attribute, `>` push, or garbage).
    #[error("Protocol error: unsupported reply type '{}'", ByteForDisplay(*got))]
    UnsupportedReplyType {
        /// The type byte.
        got: u8,
    },
    /// A reply whose content does not match its type; the field names what.
    #[error("Protocol error: invalid {0} in reply")]
    InvalidReply(&'static str),
    /// A reply nested deeper than [`REPLY_DEPTH_MAX`](crate::client::REPLY_DEPTH_MAX).
    #[error("Protocol error: reply nested deeper than {limit} levels")]
    ReplyTooDeep {
        /// The nesting limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The error reply a server writes before closing the connection:
    /// `-ERR Protocol error: ...`.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(format!("ERR {self}"))
    }
}

/// Shows a byte the way it was typed when it is printable ASCII, else as
/// `\xNN`, so an error text never carries control bytes (a CR or LF would
/// break the reply line).
struct ByteForDisplay(u8);

impl fmt::Display for ByteForDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_redis() {
        assert_eq!(
            ProtocolError::ExpectedBulk { got: b'x' }.to_string(),
            "Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            ProtocolError::ExpectedBulk { got: b'\n' }.to_string(),
            "Protocol error: expected '$', got '\\x0a'"
        );
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_reply(),
            Reply::Error("ERR Protocol error: invalid bulk length".to_string())
        );
    }
}
