//! Little-endian binary primitives shared by the command codec, the reply
//! codec and the snapshot format.
//!
//! Every decoder reads through [`Reader`], which checks each length against
//! the bytes that remain before it slices or allocates, so hostile input can
//! neither panic nor make us reserve memory the input could not fill.

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes could not be decoded (a command, a reply or a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input was empty.
    #[error("empty input")]
    Empty,
    /// The leading format version is not one this build understands.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The input ended in the middle of a field.
    #[error("truncated input")]
    Truncated,
    /// Bytes were left over after a complete value.
    #[error("{0} trailing bytes after a complete value")]
    TrailingBytes(usize),
    /// A tag byte that names no known variant.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What kind of tag was being read.
        what: &'static str,
        /// The tag byte found.
        tag: u8,
    },
    /// Structurally valid bytes that break a rule of the format.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// Values nested deeper than the codec allows.
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// The checksum does not match the contents.
    #[error("checksum mismatch")]
    Checksum,
}

/// Appends fixed-width little-endian fields and length-prefixed byte strings.
/// A counting writer ([`Writer::counter`]) only counts: the exact length of an
/// encoding, computed by the encoding code itself, without copying anything.
pub(crate) struct Writer {
    buf: BytesMut,
    /// Bytes written (or counted) so far.
    written: usize,
    count_only: bool,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::with_capacity(0)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buf: BytesMut::with_capacity(capacity),
            written: 0,
            count_only: false,
        }
    }

    /// A writer that keeps nothing and only counts ([`Writer::written`]).
    pub(crate) fn counter() -> Writer {
        Writer {
            count_only: true,
            ..Writer::new()
        }
    }

    /// Bytes written (or counted) so far.
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    pub(crate) fn u8(&mut self, value: u8) {
        // Fixed-width fields are stored directly: through `raw`, a slice of
        // unknown length, each one was a call to `memcpy` (1% of a leader's
        // CPU under pipelined SETs, encoding commands and replies).
        self.written += 1;
        if !self.count_only {
            self.buf.put_u8(value);
        }
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.written += 8;
        if !self.count_only {
            self.buf.put_u64_le(value);
        }
    }

    pub(crate) fn i64(&mut self, value: i64) {
        // The same eight bytes: two's complement, little-endian.
        self.u64(value as u64);
    }

    pub(crate) fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    /// A collection length. Nothing we encode can hold 2^32 elements (values
    /// are capped at 512 MiB), so exceeding it is a bug, not an input error.
    pub(crate) fn len(&mut self, len: usize) {
        let len = u32::try_from(len).expect("collection longer than u32::MAX");
        self.written += 4;
        if !self.count_only {
            self.buf.put_u32_le(len);
        }
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.len(value.len());
        self.raw(value);
    }

    pub(crate) fn optional_bytes(&mut self, value: Option<&Bytes>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.bytes(value);
            }
        }
    }

    pub(crate) fn raw(&mut self, value: &[u8]) {
        self.written += value.len();
        if !self.count_only {
            self.buf.put_slice(value);
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        debug_assert!(!self.count_only, "a counting writer keeps no bytes");
        &self.buf
    }

    /// Drops the bytes kept so far (once the caller passed them on);
    /// [`Writer::written`] still counts them.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    pub(crate) fn finish(self) -> Bytes {
        debug_assert!(!self.count_only, "a counting writer keeps no bytes");
        self.buf.freeze()
    }

    /// What `write` writes, in a buffer sized by running it once on a
    /// counting writer first (that pass copies nothing). On the hot path,
    /// growing the buffer as it filled reallocated it several times per
    /// command or reply (a SET of 100 bytes: four times, the largest single
    /// cost of a leader's client path in a profile).
    pub(crate) fn sized(write: impl Fn(&mut Writer)) -> Bytes {
        let mut counter = Writer::counter();
        write(&mut counter);
        let mut writer = Writer::with_capacity(counter.written());
        write(&mut writer);
        writer.finish()
    }
}

/// Reads what [`Writer`] wrote, checking every length against the input.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    /// What `input` is a part of, when the caller has it as `Bytes`: then
    /// [`Reader::short_bytes`] slices instead of copying.
    source: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Reader<'a> {
        Reader {
            input,
            source: None,
        }
    }

    /// A reader of `source` whose [`Reader::short_bytes`] are zero-copy
    /// slices of it.
    pub(crate) fn shared(source: &'a Bytes) -> Reader<'a> {
        Reader {
            input: source,
            source: Some(source),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.input.len()
    }

    /// The next byte, not consumed.
    pub(crate) fn peek_u8(&self) -> Result<u8, DecodeError> {
        self.input.first().copied().ok_or(DecodeError::Truncated)
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.input.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.input.split_at(count);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean byte other than 0 or 1")),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A collection length whose elements each take at least
    /// `min_element_bytes` of input: a length the rest of the input cannot
    /// hold is rejected here, so callers may reserve `len` elements safely.
    pub(crate) fn len(&mut self, min_element_bytes: usize) -> Result<usize, DecodeError> {
        debug_assert!(min_element_bytes > 0);
        let len = self.u32()? as usize;
        if len > self.remaining() / min_element_bytes {
            return Err(DecodeError::Truncated);
        }
        Ok(len)
    }

    pub(crate) fn slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }

    /// Like [`Reader::bytes`], but a field of at most `max` bytes read by a
    /// [`Reader::shared`] reader is a zero-copy slice of its source (no
    /// allocation, no copy). Only for fields the caller copies before the
    /// apply ends and never keeps as they are: a kept slice would keep the
    /// whole source (a log value holding a batch of commands) alive.
    pub(crate) fn short_bytes(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let slice = self.slice()?;
        Ok(match self.source {
            Some(source) if slice.len() <= max => source.slice_ref(slice),
            _ => Bytes::copy_from_slice(slice),
        })
    }

    /// Like [`Reader::bytes`], but read by a [`Reader::shared`] reader a
    /// zero-copy slice of its source whatever its length: for a field whose
    /// keeping the source alive costs nothing (see
    /// [`crate::reply_codec::decode_reply_shared`]).
    pub(crate) fn shared_bytes(&mut self) -> Result<Bytes, DecodeError> {
        self.short_bytes(usize::MAX)
    }

    pub(crate) fn optional_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.bool()? {
            Ok(Some(self.bytes()?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let slice = self.slice()?;
        std::str::from_utf8(slice)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid("string is not UTF-8"))
    }

    /// Succeeds only when every input byte has been read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.input.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_primitives() {
        let mut writer = Writer::new();
        writer.u8(7);
        writer.bool(true);
        writer.len(0xdead_beef);
        writer.u64(u64::MAX);
        writer.i64(-5);
        writer.f64(1.5);
        writer.bytes(b"abc");
        writer.optional_bytes(None);
        writer.optional_bytes(Some(&Bytes::from_static(b"x")));
        let encoded = writer.finish();
        let mut reader = Reader::new(&encoded);
        assert_eq!(reader.u8(), Ok(7));
        assert_eq!(reader.bool(), Ok(true));
        assert_eq!(reader.u32(), Ok(0xdead_beef));
        assert_eq!(reader.u64(), Ok(u64::MAX));
        assert_eq!(reader.i64(), Ok(-5));
        assert_eq!(reader.f64(), Ok(1.5));
        assert_eq!(reader.bytes(), Ok(Bytes::from_static(b"abc")));
        assert_eq!(reader.optional_bytes(), Ok(None));
        assert_eq!(reader.optional_bytes(), Ok(Some(Bytes::from_static(b"x"))));
        assert_eq!(reader.finish(), Ok(()));
    }

    /// The bytes of each field, spelled out (the log, snapshots and replies
    /// are stored in this format), and a counting writer's count of them.
    #[test]
    fn fields_have_their_documented_bytes() {
        let write = |writer: &mut Writer| {
            writer.u8(7);
            writer.bool(true);
            writer.len(0x0102_0304);
            writer.u64(0x0102_0304_0506_0708);
            writer.i64(-2);
            writer.f64(1.5);
            writer.bytes(b"ab");
        };
        let mut expected = vec![7, 1, 4, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1];
        expected.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
        expected.extend_from_slice(&[2, 0, 0, 0, b'a', b'b']);
        let mut writer = Writer::new();
        write(&mut writer);
        assert_eq!(writer.written(), expected.len());
        assert_eq!(&writer.finish()[..], &expected[..]);
        let mut counter = Writer::counter();
        write(&mut counter);
        assert_eq!(counter.written(), expected.len());
        assert_eq!(&Writer::sized(write)[..], &expected[..]);
    }

    #[test]
    fn length_beyond_input_is_rejected_before_allocation() {
        let mut writer = Writer::new();
        writer.raw(&u32::MAX.to_le_bytes());
        writer.raw(&[0; 16]);
        let encoded = writer.finish();
        assert_eq!(Reader::new(&encoded).len(4), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&encoded).slice(), Err(DecodeError::Truncated));
    }
}
