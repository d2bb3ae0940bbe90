//! Incremental parsing of client requests from a connection's read buffer.
//!
//! Clients send either a RESP array of bulk strings
//! (`*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n`, what every client library
//! and redis-benchmark send) or an inline command (`set a b\r\n`, as typed
//! into telnet). A request starting with `*` is an array; anything else is
//! inline, as in Redis.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::inline::split_inline_args;
use crate::number::parse_i64;

/// Requests at least this long are split off the read buffer without a copy.
/// Shorter ones are copied (with the small requests pipelined behind them, up
/// to 2 KiB: see `RequestParser::take_frame`), because an argument the server
/// keeps would otherwise pin the whole read buffer it was sliced from: a
/// 10-byte value could keep 64 KiB alive. Past this size a request is sliced
/// off the buffer, sharing its allocation for as long as the request lives:
/// fine for a batch's requests, which are done with when it is; a server
/// turns this off for what it keeps longer (see
/// `RequestParser::set_share_copies`).
pub const REQUEST_ZERO_COPY_BYTES_MIN: usize = 16 * 1024;

/// The most bytes of the read buffer copied at once for the small
/// requests at its front (see `RequestParser::take_frame`): with the
/// copy's length and count, a 2 KiB allocation.
const CHUNK_BYTES_MAX: usize = 2032;

/// The most argument slots a caller of [`RequestParser::parse_into`] should
/// keep between requests (32 bytes a slot): past it, a large request's
/// vector is better dropped than held for the connection's life.
pub const ARGS_KEPT_MAX: usize = 64;

/// The most argument slots reserved up front for a multibulk request: the
/// declared count is untrusted, so `*1048576` alone must not allocate for a
/// million arguments. The vector grows as arguments actually arrive.
const ARGS_PREALLOC_MAX: usize = 1024;

/// The most arguments a request may declare before the connection has
/// authenticated (when the server requires it): Redis' limit, enough for
/// `HELLO 3 AUTH user pass SETNAME name` and `AUTH user pass`. A larger `*n`
/// is `unauthenticated multibulk length` and closes the connection.
pub const UNAUTHENTICATED_ARGS_MAX: usize = 10;

/// The longest argument a request may declare before the connection has
/// authenticated (Redis' limit). A larger `$n` is `unauthenticated bulk
/// length` and closes the connection, before any of it is buffered: an
/// outsider can make the server hold at most about
/// `UNAUTHENTICATED_ARGS_MAX * UNAUTHENTICATED_BULK_BYTES_MAX` (160 KiB)
/// of request per connection, or an inline line of
/// [`Limits::inline_bytes_max`].
pub const UNAUTHENTICATED_BULK_BYTES_MAX: usize = 16 * 1024;

/// Bounds on what one request may declare or send. Every check happens on a
/// header, before the bytes it announces are received or allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk string argument (Redis `proto-max-bulk-len`,
    /// default 512 MiB). A longer `$n` is `invalid bulk length`.
    pub bulk_bytes_max: usize,
    /// The most arguments in one request. A larger `*n` is `invalid multibulk
    /// length` (Redis' text for its own limit).
    pub args_max: usize,
    /// The longest inline command line, and the longest `*n` / `$n` header line
    /// awaited before its line end (Redis `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub inline_bytes_max: usize,
    /// The largest whole request, headers included (Redis bounds the query
    /// buffer by `client-query-buffer-limit`, default 1 GiB).
    pub request_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bulk_bytes_max: 512 * 1024 * 1024,
            args_max: 1024 * 1024,
            inline_bytes_max: 64 * 1024,
            request_bytes_max: 1024 * 1024 * 1024,
        }
    }
}

/// A [`Limits`] value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A limit is zero, so no request could pass it.
    #[error("limit {name} must be at least 1")]
    Zero {
        /// The field's name.
        name: &'static str,
    },
}

impl Limits {
    /// Checks the limits at start-up: each must admit at least one request.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (name, value) in [
            ("bulk_bytes_max", self.bulk_bytes_max),
            ("args_max", self.args_max),
            ("inline_bytes_max", self.inline_bytes_max),
            ("request_bytes_max", self.request_bytes_max),
        ] {
            if value == 0 {
                return Err(LimitsError::Zero { name });
            }
        }
        Ok(())
    }
}

/// Parses requests out of one connection's read buffer, one at a time.
///
/// The parser keeps its place between calls, so a request arriving in many
/// reads is scanned once overall (a large bulk string costs O(1) per call
/// while it streams in). The caller's side of that contract: between calls it
/// only appends to the buffer, and never consumes from it.
///
/// ```
/// use bytes::BytesMut;
/// use synod_resp::RequestParser;
///
/// let mut parser = RequestParser::default();
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
/// assert_eq!(parser.parse(&mut buf), Ok(None)); // more bytes needed
/// buf.extend_from_slice(b"\nk\r\nPING\r\n");
/// let get = parser.parse(&mut buf).unwrap().unwrap();
/// assert_eq!(get, ["GET", "k"]);
/// let ping = parser.parse(&mut buf).unwrap().unwrap();
/// assert_eq!(ping, ["PING"]);
/// assert!(buf.is_empty());
/// ```
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    /// Arguments still to read in the current multibulk request; 0 between
    /// requests (and while an inline line is awaited).
    args_left: usize,
    /// Where the arguments read so far lie in the read buffer.
    arg_ranges: Vec<Range<usize>>,
    /// The declared length of the bulk string whose `$n` header was read but
    /// whose payload has not fully arrived.
    bulk_len: Option<usize>,
    /// Offset in the read buffer where parsing of the current request
    /// continues; 0 between requests (the buffer starts at a request).
    pos: usize,
    /// Offset from which the search for the next line end resumes, so a line
    /// arriving in pieces is scanned once rather than once per read.
    scan_from: usize,
    /// The connection must authenticate before it may send more than tiny
    /// requests: the `UNAUTHENTICATED_*` caps apply on top of `limits`.
    unauthenticated: bool,
    /// A copy of bytes that were at the front of the read buffer, made for
    /// a small request and the bytes buffered after it (see
    /// [`RequestParser::take_frame`]); `chunk[chunk_at..]` is what the
    /// buffer's front held when the parser last consumed from it (it is
    /// checked against the buffer before use). Dropped when the buffer
    /// ends inside a request.
    chunk: Bytes,
    /// How much of `chunk` the parser consumed.
    chunk_at: usize,
    /// Whether small requests may share a copy (see
    /// [`RequestParser::set_share_copies`]).
    share_copies: bool,
}

impl Default for RequestParser {
    fn default() -> RequestParser {
        RequestParser::new(Limits::default())
    }
}

/// What one step of parsing found.
enum Step {
    /// The buffer ends inside a request.
    NeedMore,
    /// Progress without a request: a header was read, or a request with no
    /// arguments (`*0`, `*-1`, an empty inline line, which Redis ignores) was
    /// consumed. Parsing goes on.
    Continue,
    /// A complete request, its arguments pushed onto the caller's vector.
    Request,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            args_left: 0,
            arg_ranges: Vec::new(),
            bulk_len: None,
            pos: 0,
            scan_from: 0,
            unauthenticated: false,
            chunk: Bytes::new(),
            chunk_at: 0,
            share_copies: true,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the connection still has to authenticate: while it has, the
    /// caps [`UNAUTHENTICATED_ARGS_MAX`] and
    /// [`UNAUTHENTICATED_BULK_BYTES_MAX`] apply, as in Redis. The caller
    /// sets it before each [`parse`](Self::parse) call; a header is checked
    /// against the setting in force when it is read (requests are handled
    /// one at a time, so an AUTH takes effect from the next request on).
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Whether the requests parsed next may be sliced from a copy shared
    /// with the small requests pipelined around them, or a large one from
    /// the read buffer itself (the default), or each gets a copy of its
    /// own. A server turns sharing off while what
    /// it parses is kept until some later event (a transaction's queued
    /// commands, requests behind a blocking command): a kept argument then
    /// pins its own request's bytes, not a 2 KiB copy of whatever was sent
    /// around it.
    pub fn set_share_copies(&mut self, share: bool) {
        self.share_copies = share;
    }

    /// How many bytes the request being parsed has buffered so far (0
    /// between requests): what a query-buffer limit would free by closing
    /// this connection.
    pub fn partial_request_bytes(&self) -> usize {
        self.pos
    }

    /// Takes the next complete request off the front of `buf`: the command
    /// name followed by its arguments, never empty.
    ///
    /// Returns `Ok(None)` when `buf` ends inside a request (read more and call
    /// again; the parser remembers its place). On `Err` the stream is beyond
    /// repair: write [`ProtocolError::to_reply`] and close the connection. The
    /// parser is reset so that it could be reused on a fresh stream.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut args = Vec::new();
        Ok(self.parse_into(buf, &mut args)?.then_some(args))
    }

    /// [`parse`](Self::parse) into a vector the caller keeps between
    /// requests: `args` is cleared, and on `Ok(true)` holds the request.
    /// A server parsing every request of a connection this way allocates no
    /// vector per request (it was one of the most frequent allocations of a
    /// leader's client path). A caller that keeps `args` should not keep a
    /// huge request's capacity: see [`ARGS_KEPT_MAX`].
    pub fn parse_into(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        args.clear();
        if self.pos > buf.len() {
            // The caller consumed bytes we had parsed: our offsets no longer
            // mean anything. Start over rather than index out of bounds.
            debug_assert!(false, "read buffer shrank under the request parser");
            self.reset();
        }
        // Each `Continue` consumes bytes or moves from a `*n` header to its
        // arguments, so the loop is bounded by the buffer's length.
        loop {
            let step = if self.args_left > 0 {
                self.continue_multibulk(buf, args)
            } else if buf.first() == Some(&b'*') {
                self.start_multibulk(buf)
            } else if buf.is_empty() {
                Ok(Step::NeedMore)
            } else {
                self.parse_inline(buf, args)
            };
            match step {
                Ok(Step::NeedMore) => {
                    // What is left is part of one request, which the copy
                    // cannot hold whole (or it would be complete): an idle
                    // connection keeps no copy.
                    self.drop_chunk();
                    return Ok(false);
                }
                Ok(Step::Continue) => continue,
                Ok(Step::Request) => {
                    debug_assert!(!args.is_empty());
                    debug_assert_eq!((self.pos, self.args_left), (0, 0));
                    return Ok(true);
                }
                Err(error) => {
                    args.clear();
                    self.reset();
                    return Err(error);
                }
            }
        }
    }

    /// Forgets any partly parsed request.
    pub fn reset(&mut self) {
        self.args_left = 0;
        self.arg_ranges.clear();
        self.bulk_len = None;
        self.pos = 0;
        self.scan_from = 0;
        self.drop_chunk();
    }

    /// Consumes `n` bytes at the front of `buf` that make no frame (`*0`,
    /// `*-1`), keeping the copy in step with the buffer.
    fn skip(&mut self, buf: &mut BytesMut, n: usize) {
        self.take_copied(&buf[..n]);
        buf.advance(n);
    }

    /// `front` (the buffer's next bytes) as a slice of the copy, if the
    /// copy holds exactly them next: the copy moves past them, and is
    /// dropped once used up. Otherwise the copy is out of step and dropped.
    fn take_copied(&mut self, front: &[u8]) -> Option<Bytes> {
        let from = self.chunk_at;
        let to = from + front.len();
        let copied = match self.chunk.get(from..to) {
            Some(copied) if copied == front => {
                self.chunk_at = to;
                Some(self.chunk.slice(from..to))
            }
            _ => None,
        };
        if copied.is_none() || self.chunk_at == self.chunk.len() {
            self.drop_chunk();
        }
        copied
    }

    fn drop_chunk(&mut self) {
        self.chunk = Bytes::new();
        self.chunk_at = 0;
    }

    /// Removes the first `len` bytes of `buf` as one immutable frame that
    /// the arguments are sliced from.
    ///
    /// A large request is split off the buffer without a copy (see
    /// [`REQUEST_ZERO_COPY_BYTES_MIN`]). A small one is copied, and so are
    /// the bytes buffered after it, up to [`CHUNK_BYTES_MAX`] in all: the
    /// pipelined requests that lie wholly in that copy are sliced from it,
    /// so a batch of them costs one allocation instead of one each (under
    /// pipelined SETs these were a quarter of a leader's allocations). A
    /// frame is taken from the copy only if its bytes equal the buffer's:
    /// what a request holds never depends on the caller keeping its side
    /// of the contract (append only).
    ///
    /// An argument pins the copy it was sliced from for as long as it is
    /// kept: up to `CHUNK_BYTES_MAX` bytes, whatever its own size (with
    /// each request copied alone it pinned about its request's size). That
    /// is harmless for the requests of a batch, which are done with when
    /// it is; what outlives a batch either copies what it keeps
    /// (subscriptions, watched keys, a connection's name and library, the
    /// script cache) or is parsed with sharing off
    /// ([`RequestParser::set_share_copies`]).
    fn take_frame(&mut self, buf: &mut BytesMut, len: usize) -> Bytes {
        debug_assert!(len <= buf.len());
        if !self.share_copies {
            // Copied alone whatever its size: a large request split off the
            // buffer would keep the buffer's whole allocation (up to the
            // query-buffer limit) for as long as its arguments are kept,
            // counted by no limit once the buffer moved on (review).
            self.drop_chunk();
            let frame = copy_frame(&buf[..len]);
            buf.advance(len);
            return frame;
        }
        if len >= REQUEST_ZERO_COPY_BYTES_MIN {
            self.drop_chunk();
            return buf.split_to(len).freeze();
        }
        let frame = self.take_copied(&buf[..len]).unwrap_or_else(|| {
            let take = buf.len().min(CHUNK_BYTES_MAX).max(len);
            let chunk = copy_frame(&buf[..take]);
            let frame = chunk.slice(..len);
            if take > len {
                self.chunk = chunk;
                self.chunk_at = len;
            }
            frame
        });
        buf.advance(len);
        frame
    }

    /// Reads the `*n` header at the start of `buf`.
    fn start_multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        debug_assert_eq!(self.pos, 0);
        let Some((count, next)) = self.read_header(
            buf,
            ProtocolError::MultibulkCountTooBig,
            ProtocolError::InvalidMultibulkLength,
        )?
        else {
            return Ok(Step::NeedMore);
        };
        if count <= 0 {
            // Redis skips `*0` and `*-1` (and any non-positive count).
            self.skip(buf, next);
            self.scan_from = 0;
            return Ok(Step::Continue);
        }
        // The pre-AUTH cap first: an outsider learns only that it must
        // authenticate, not the server's own limits.
        if self.unauthenticated && count > UNAUTHENTICATED_ARGS_MAX as i64 {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        let count = usize::try_from(count)
            .ok()
            .filter(|&count| count <= self.limits.args_max)
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        self.args_left = count;
        self.arg_ranges.clear();
        self.arg_ranges.reserve(count.min(ARGS_PREALLOC_MAX));
        self.pos = next;
        Ok(Step::Continue)
    }

    /// Reads bulk strings of the current multibulk request until it is
    /// complete or the buffer runs out.
    fn continue_multibulk(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<Step, ProtocolError> {
        // Bounded: each pass reads one argument or returns.
        while self.args_left > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(&prefix) = buf.get(self.pos) else {
                        return Ok(Step::NeedMore);
                    };
                    if prefix != b'$' {
                        return Err(ProtocolError::ExpectedBulk { got: prefix });
                    }
                    let Some((len, next)) = self.read_header(
                        buf,
                        ProtocolError::BulkCountTooBig,
                        ProtocolError::InvalidBulkLength,
                    )?
                    else {
                        return Ok(Step::NeedMore);
                    };
                    if self.unauthenticated && len > UNAUTHENTICATED_BULK_BYTES_MAX as i64 {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&len| len <= self.limits.bulk_bytes_max)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    // Checked on the header, before the payload is read,
                    // so a declared size never makes anyone allocate.
                    let request_end = next.checked_add(len).and_then(|end| end.checked_add(2));
                    if request_end.is_none_or(|end| end > self.limits.request_bytes_max) {
                        return Err(self.request_too_big());
                    }
                    self.pos = next;
                    self.bulk_len = Some(len);
                    len
                }
            };
            // Cannot overflow: pos + len + 2 <= request_bytes_max was checked.
            let end = self.pos + len;
            let Some(terminator) = buf.get(end..end + 2) else {
                return Ok(Step::NeedMore);
            };
            if terminator != b"\r\n" {
                return Err(ProtocolError::BulkNotTerminated);
            }
            self.arg_ranges.push(self.pos..end);
            self.pos = end + 2;
            self.bulk_len = None;
            self.args_left -= 1;
        }
        let frame = self.take_frame(buf, self.pos);
        args.extend(self.arg_ranges.drain(..).map(|range| frame.slice(range)));
        if self.arg_ranges.capacity() > ARGS_PREALLOC_MAX {
            // Do not keep a huge request's slots for the connection's life.
            self.arg_ranges = Vec::new();
        }
        self.pos = 0;
        self.scan_from = 0;
        Ok(Step::Request)
    }

    /// Reads one inline command line at the start of `buf`.
    fn parse_inline(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<Step, ProtocolError> {
        debug_assert_eq!(self.pos, 0);
        let line_bytes_max = self
            .limits
            .inline_bytes_max
            .min(self.limits.request_bytes_max);
        let Some(newline) = self.find_newline(buf) else {
            if buf.len() > line_bytes_max {
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(Step::NeedMore);
        };
        if newline > line_bytes_max {
            return Err(ProtocolError::InlineTooBig);
        }
        let frame = self.take_frame(buf, newline + 1);
        self.scan_from = 0;
        let line_end = if newline > 0 && frame[newline - 1] == b'\r' {
            newline - 1
        } else {
            // Telnet and netcat may send a bare LF; Redis accepts it.
            newline
        };
        let inline_args = split_inline_args(&frame.slice(..line_end))?;
        if inline_args.is_empty() {
            return Ok(Step::Continue);
        }
        if inline_args.len() > self.limits.args_max {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        args.extend(inline_args);
        Ok(Step::Request)
    }

    /// Reads a `*n` or `$n` header line starting at `self.pos`, returning the
    /// number and the offset just past the line, or `None` if the line end
    /// has not arrived. `too_big` is the error for a header that grows past
    /// the inline limit, `invalid` the one for a line that is not `<prefix>n\r\n`.
    fn read_header(
        &mut self,
        buf: &[u8],
        too_big: ProtocolError,
        invalid: ProtocolError,
    ) -> Result<Option<(i64, usize)>, ProtocolError> {
        let Some(newline) = self.find_newline(buf) else {
            if buf.len() - self.pos > self.limits.inline_bytes_max {
                return Err(too_big);
            }
            return Ok(None);
        };
        let next = newline + 1;
        if next > self.limits.request_bytes_max {
            return Err(self.request_too_big());
        }
        // buf[pos] is the prefix byte, not '\n', so pos < newline.
        let number = buf
            .get(self.pos + 1..newline)
            .and_then(|line| line.strip_suffix(b"\r"))
            .and_then(parse_i64)
            .ok_or(invalid)?;
        Ok(Some((number, next)))
    }

    /// The offset of the first `\n` at or after `self.pos`, resuming where the
    /// previous unsuccessful search stopped.
    fn find_newline(&mut self, buf: &[u8]) -> Option<usize> {
        let start = self.scan_from.max(self.pos);
        let found = buf
            .get(start..)
            .and_then(|rest| rest.iter().position(|&byte| byte == b'\n'));
        match found {
            Some(offset) => {
                self.scan_from = 0;
                Some(start + offset)
            }
            None => {
                self.scan_from = buf.len();
                None
            }
        }
    }

    fn request_too_big(&self) -> ProtocolError {
        ProtocolError::RequestTooBig {
            limit: self.limits.request_bytes_max,
        }
    }
}

/// A copy of requests, in one allocation for a short one: its bytes and
/// the count its argument slices share. A `Bytes` copied from a slice is
/// a `Vec` whose first slice allocates that count on its own (so two
/// allocations per copy, the most frequent ones on a leader's client
/// path); `Bytes::from_owner` of a fixed-size array keeps both together.
/// The sizes (allocations of 64 to 2048 bytes with the count and length)
/// waste under half of what they hold; past them, the plain copy.
fn copy_frame(bytes: &[u8]) -> Bytes {
    match bytes.len() {
        0..=48 => Inline::<48>::frame(bytes),
        49..=112 => Inline::<112>::frame(bytes),
        113..=240 => Inline::<240>::frame(bytes),
        241..=496 => Inline::<496>::frame(bytes),
        497..=1008 => Inline::<1008>::frame(bytes),
        1009..=CHUNK_BYTES_MAX => Inline::<CHUNK_BYTES_MAX>::frame(bytes),
        _ => Bytes::copy_from_slice(bytes),
    }
}

/// Up to `N` bytes held in place (see [`copy_frame`]).
struct Inline<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> Inline<N> {
    fn frame(bytes: &[u8]) -> Bytes {
        let mut inline = Inline {
            len: bytes.len(),
            bytes: [0; N],
        };
        inline.bytes[..bytes.len()].copy_from_slice(bytes);
        Bytes::from_owner(inline)
    }
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `copy_frame` at and around each size class, and whole requests of
/// exactly those sizes, pipelined, multibulk and inline (from the review).
#[cfg(test)]
mod copy_frame_tests {
    use super::*;

    const EDGES: [usize; 22] = [
        0,
        1,
        47,
        48,
        49,
        111,
        112,
        113,
        239,
        240,
        241,
        495,
        496,
        497,
        1000,
        1007,
        1008,
        1009,
        2031,
        2032,
        2033,
        16 * 1024,
    ];

    #[test]
    fn copy_frame_is_the_bytes() {
        for len in EDGES {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let frame = copy_frame(&bytes);
            assert_eq!(&frame[..], &bytes[..], "len {len}");
            assert_eq!(frame.len(), len);
            // Slices (shared count), clones and their drops.
            if len > 0 {
                let head = frame.slice(..len / 2);
                let tail = frame.slice(len / 2..);
                drop(frame);
                assert_eq!(&head[..], &bytes[..len / 2]);
                assert_eq!(&tail[..], &bytes[len / 2..]);
                let again = tail.clone();
                drop(tail);
                assert_eq!(&again[..], &bytes[len / 2..]);
                assert_eq!(Vec::from(again), bytes[len / 2..].to_vec());
                assert_eq!(bytes::BytesMut::from(head), bytes[..len / 2]);
            }
        }
    }

    /// A `SET k <value>` request of exactly `total` bytes.
    fn set_request(total: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        for digits in 1..=6 {
            let fixed = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$".len() + digits + 2 + 2;
            let value_len = total.checked_sub(fixed)?;
            if value_len.to_string().len() == digits {
                let value: Vec<u8> = (0..value_len).map(|i| b'a' + (i % 26) as u8).collect();
                let mut req =
                    format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${value_len}\r\n").into_bytes();
                req.extend_from_slice(&value);
                req.extend_from_slice(b"\r\n");
                assert_eq!(req.len(), total);
                return Some((req, value));
            }
        }
        None
    }

    #[test]
    fn requests_of_each_edge_size_parse_and_survive_buffer_reuse() {
        for total in (30..=530).chain([16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1]) {
            let Some((req, value)) = set_request(total) else {
                continue;
            };
            let mut parser = RequestParser::new(Limits::default());
            let mut buf = BytesMut::new();
            // Two pipelined copies, then a partial third.
            buf.extend_from_slice(&req);
            buf.extend_from_slice(&req);
            buf.extend_from_slice(&req[..req.len() / 2]);
            let first = parser.parse(&mut buf).unwrap().expect("first");
            let second = parser.parse(&mut buf).unwrap().expect("second");
            assert_eq!(parser.parse(&mut buf).unwrap(), None);
            buf.extend_from_slice(&req[req.len() / 2..]);
            let third = parser.parse(&mut buf).unwrap().expect("third");
            assert!(buf.is_empty());
            // Overwrite the buffer's memory.
            buf.extend_from_slice(&vec![b'#'; 4096]);
            buf.clear();
            for args in [&first, &second, &third] {
                assert_eq!(args.len(), 3, "total {total}");
                assert_eq!(&args[0][..], b"SET");
                assert_eq!(&args[1][..], b"k");
                assert_eq!(&args[2][..], &value[..], "total {total}");
            }
            drop(first);
            assert_eq!(&second[2][..], &value[..]);
        }
    }

    #[test]
    fn inline_requests_of_each_edge_size() {
        for total in [2usize, 3, 48, 49, 50, 112, 113, 240, 241, 496, 497, 498] {
            // "SET k <v>\r\n"
            let value_len = total.saturating_sub(b"SET k \r\n".len()).max(1);
            let value: Vec<u8> = vec![b'x'; value_len];
            let mut line = b"SET k ".to_vec();
            line.extend_from_slice(&value);
            line.extend_from_slice(b"\r\n");
            let mut parser = RequestParser::new(Limits::default());
            let mut buf = BytesMut::from(&line[..]);
            let args = parser.parse(&mut buf).unwrap().expect("a request");
            buf.clear();
            assert_eq!(
                args,
                vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from_static(b"k"),
                    Bytes::from(value)
                ]
            );
        }
    }
}

/// The copy that pipelined small requests share (`RequestParser::take_frame`).
#[cfg(test)]
mod chunk_tests {
    use super::*;

    fn set(key: &str, value: &str) -> Vec<u8> {
        format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        )
        .into_bytes()
    }

    /// Requests wholly inside one copy are sliced from it: the second
    /// request's key lies right after the first request in memory.
    #[test]
    fn pipelined_requests_share_one_copy() {
        let mut parser = RequestParser::default();
        let first = set("k1", "v1");
        let mut buf = BytesMut::new();
        for i in 0..3 {
            buf.extend_from_slice(&set(&format!("k{}", i + 1), &format!("v{}", i + 1)));
        }
        let one = parser.parse(&mut buf).unwrap().unwrap();
        let two = parser.parse(&mut buf).unwrap().unwrap();
        let three = parser.parse(&mut buf).unwrap().unwrap();
        assert_eq!(one, ["SET", "k1", "v1"]);
        assert_eq!(two, ["SET", "k2", "v2"]);
        assert_eq!(three, ["SET", "k3", "v3"]);
        // SET's name starts 8 bytes into its request.
        assert_eq!(
            one[0].as_ptr() as usize + first.len(),
            two[0].as_ptr() as usize
        );
        assert_eq!(
            two[0].as_ptr() as usize + first.len(),
            three[0].as_ptr() as usize
        );
        // All of the copy was used: the parser keeps none of it.
        assert!(parser.chunk.is_empty());
        assert!(buf.is_empty());
    }

    /// `*0` and `*-1` between requests (skipped, as Redis does) keep the
    /// copy in step: the requests after them are still sliced from it (a
    /// review found each one copying 2 KiB afresh).
    #[test]
    fn skipped_empty_arrays_keep_the_copy_in_step() {
        let mut parser = RequestParser::default();
        let (a, b) = (set("k1", "v1"), set("k2", "v2"));
        let mut buf = BytesMut::from(&a[..]);
        buf.extend_from_slice(b"*0\r\n");
        buf.extend_from_slice(&b);
        buf.extend_from_slice(b"*-1\r\n");
        buf.extend_from_slice(&a);
        let one = parser.parse(&mut buf).unwrap().unwrap();
        let two = parser.parse(&mut buf).unwrap().unwrap();
        let three = parser.parse(&mut buf).unwrap().unwrap();
        assert_eq!(one, ["SET", "k1", "v1"]);
        assert_eq!(two, ["SET", "k2", "v2"]);
        assert_eq!(three, ["SET", "k1", "v1"]);
        let base = one[0].as_ptr() as usize;
        assert_eq!(two[0].as_ptr() as usize, base + a.len() + 4);
        assert_eq!(three[0].as_ptr() as usize, base + a.len() + 4 + b.len() + 5);
        assert!(parser.chunk.is_empty() && buf.is_empty());
    }

    /// With sharing off, each request is copied alone: nothing it keeps
    /// holds the bytes sent around it.
    #[test]
    fn without_sharing_each_request_is_copied_alone() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        for i in 0..3 {
            buf.extend_from_slice(&set(&format!("k{i}"), "v"));
            buf.extend_from_slice(b"*0\r\n\r\n");
        }
        parser.set_share_copies(false);
        for i in 0..3 {
            let args = parser.parse(&mut buf).unwrap().unwrap();
            assert_eq!(args[1], format!("k{i}"));
            assert!(parser.chunk.is_empty(), "request {i}");
        }
        // A large request too is copied, not sliced off the buffer, whose
        // allocation it would keep (review).
        let value = "v".repeat(REQUEST_ZERO_COPY_BYTES_MIN);
        buf.extend_from_slice(&set("big", &value));
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.capacity();
        let args = parser.parse(&mut buf).unwrap().unwrap();
        assert_eq!(args[2].len(), value.len());
        assert!(!range.contains(&(args[2].as_ptr() as usize)));
        // Turned back on, sharing resumes.
        parser.set_share_copies(true);
        buf.extend_from_slice(&set("x", "1"));
        buf.extend_from_slice(&set("y", "2"));
        assert_eq!(parser.parse(&mut buf).unwrap().unwrap()[1], "x");
        assert!(!parser.chunk.is_empty());
    }

    /// A request that runs past the copy gets a copy of its own, made
    /// when it is complete, and an idle connection keeps no copy.
    #[test]
    fn a_request_past_the_copy_is_copied_again_and_idle_keeps_nothing() {
        let mut parser = RequestParser::default();
        let (a, b) = (set("a", "1"), set("b", &"x".repeat(40)));
        let mut buf = BytesMut::from(&a[..]);
        buf.extend_from_slice(&b[..b.len() / 2]);
        assert_eq!(parser.parse(&mut buf).unwrap().unwrap(), ["SET", "a", "1"]);
        assert_eq!(parser.parse(&mut buf), Ok(None));
        assert!(parser.chunk.is_empty(), "an idle connection keeps no copy");
        buf.extend_from_slice(&b[b.len() / 2..]);
        let got = parser.parse(&mut buf).unwrap().unwrap();
        assert_eq!(got, ["SET", "b", "x".repeat(40).as_str()]);
    }

    /// The copy is used only where it equals the buffer: a caller that
    /// broke the append-only contract still gets the bytes it buffered.
    #[test]
    fn a_copy_that_differs_from_the_buffer_is_not_used() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&set("k1", "v1")[..]);
        buf.extend_from_slice(&set("k2", "v2"));
        assert_eq!(
            parser.parse(&mut buf).unwrap().unwrap(),
            ["SET", "k1", "v1"]
        );
        assert!(!parser.chunk.is_empty());
        // Same length, other bytes, at the front of the buffer.
        buf.clear();
        buf.extend_from_slice(&set("k9", "v9"));
        assert_eq!(
            parser.parse(&mut buf).unwrap().unwrap(),
            ["SET", "k9", "v9"]
        );
    }

    /// Many pipelined requests, read in pieces of every size: each is what
    /// was sent, and no copy exceeds `CHUNK_BYTES_MAX`.
    #[test]
    fn pipelined_requests_read_in_pieces_are_whole() {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for i in 0..200 {
            let value = "v".repeat(i * 37 % 700);
            wire.extend_from_slice(&set(&format!("key{i}"), &value));
            if i % 7 == 0 {
                wire.extend_from_slice(format!("PING {i}\r\n").as_bytes());
            }
            sent.push((format!("key{i}"), value, i % 7 == 0));
        }
        for piece in [1, 2, 13, 100, 999, 2032, 2033, 5000, wire.len()] {
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for bytes in wire.chunks(piece) {
                buf.extend_from_slice(bytes);
                while let Some(args) = parser.parse(&mut buf).unwrap() {
                    assert!(parser.chunk.len() <= CHUNK_BYTES_MAX);
                    got.push(args);
                }
            }
            let mut expected: Vec<Vec<Bytes>> = Vec::new();
            for (i, (key, value, ping)) in sent.iter().enumerate() {
                expected.push(vec![
                    Bytes::from("SET"),
                    Bytes::from(key.clone()),
                    Bytes::from(value.clone()),
                ]);
                if *ping {
                    expected.push(vec![Bytes::from("PING"), Bytes::from(i.to_string())]);
                }
            }
            assert_eq!(got, expected, "piece {piece}");
            assert!(buf.is_empty());
        }
    }
}
