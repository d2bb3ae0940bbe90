//! Message frames: a 4-byte little-endian payload length, then the payload
//! (`Message::to_bytes()`). A frame with an empty payload is a keepalive. Pure buffer code, so it is tested without sockets.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use synod_core::codec::Encode;
use synod_core::Message;
use thiserror::Error;

/// Bytes of the length prefix.
pub(crate) const LENGTH_PREFIX_BYTES: usize = 4;

/// A keepalive: a frame with an empty payload (no message encodes to nothing).
pub(crate) const KEEPALIVE: [u8; LENGTH_PREFIX_BYTES] = [0; LENGTH_PREFIX_BYTES];

/// A frame longer than the configured limit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("frame of {len} bytes exceeds the limit of {max}")]
pub struct FrameTooLarge {
    /// Bytes the frame's payload has (or claims).
    pub len: usize,
    /// The limit it exceeds.
    pub max: usize,
}

/// Splits the payload of the first complete frame off the front of `buf`.
///
/// `Ok(None)` means more bytes are needed. The claimed length is checked
/// against `frame_bytes_max` as soon as the prefix is in, before the caller
/// reserves room for it, so a lying peer cannot make us allocate.
pub fn take_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<Bytes>, FrameTooLarge> {
    let Some(len) = peek_length(buf) else {
        return Ok(None);
    };
    if len > frame_bytes_max {
        return Err(FrameTooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    if buf.len() < LENGTH_PREFIX_BYTES + len {
        return Ok(None);
    }
    // Copied out rather than split off: a split frame shares the read
    // buffer's allocation, and decoded values live on in the log until the
    // next checkpoint. A reader whose reads return a few KiB each then pinned
    // a fresh 64 KiB buffer per read (a shared buffer must be reallocated to
    // reserve); followers held more than the leader after a long load (659
    // against 509 MiB in bench/report). A copy is one exact-size allocation
    // per frame, and the read buffer stays unshared and is reused in place.
    let frame = Bytes::copy_from_slice(&buf[LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len]);
    buf.advance(LENGTH_PREFIX_BYTES + len);
    Ok(Some(frame))
}

/// How many more bytes the frame at the front of `buf` needs. Only meaningful
/// after [`take_frame`] returned `Ok(None)`, which vouches for the length.
pub(crate) fn bytes_missing(buf: &BytesMut) -> usize {
    match peek_length(buf) {
        None => LENGTH_PREFIX_BYTES - buf.len(),
        Some(len) => (LENGTH_PREFIX_BYTES + len).saturating_sub(buf.len()),
    }
}

fn peek_length(buf: &BytesMut) -> Option<usize> {
    let prefix: [u8; LENGTH_PREFIX_BYTES] = buf.get(..LENGTH_PREFIX_BYTES)?.try_into().ok()?;
    Some(u32::from_le_bytes(prefix) as usize)
}

/// Appends `msg` as one frame and returns its payload length. A message whose
/// encoding exceeds `frame_bytes_max` is not appended (`buf` is left as it was),
/// because the receiver would close the connection on it.
pub fn put_message(
    buf: &mut BytesMut,
    msg: &Message,
    frame_bytes_max: usize,
) -> Result<usize, FrameTooLarge> {
    let start = buf.len();
    // Encode in place and patch the prefix afterwards: no second copy.
    buf.put_u32_le(0);
    msg.encode(buf);
    let len = buf.len() - start - LENGTH_PREFIX_BYTES;
    if len > frame_bytes_max {
        buf.truncate(start);
        return Err(FrameTooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    // frame_bytes_max <= u32::MAX is enforced by NetConfig::validate.
    buf[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::codec::Decode;
    use synod_core::{Ballot, Body, GroupId, InstanceId, NodeId};

    fn message(instance: u64) -> Message {
        Message {
            group: GroupId(0),
            from: NodeId(1),
            to: NodeId(2),
            body: Body::Accepted {
                ballot: Ballot::ZERO,
                instance: InstanceId(instance),
            },
        }
    }

    #[test]
    fn frames_round_trip_in_batches_and_pieces() {
        let mut out = BytesMut::new();
        for i in 0..3 {
            put_message(&mut out, &message(i), 1024).unwrap();
        }
        // Feed the batch one byte at a time, as the slowest socket would.
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for byte in out.iter() {
            input.put_u8(*byte);
            while let Some(payload) = take_frame(&mut input, 1024).unwrap() {
                got.push(Message::from_bytes(payload).unwrap());
            }
            if got.len() < 3 {
                assert!(bytes_missing(&input) > 0);
            }
        }
        assert_eq!(got, (0..3).map(message).collect::<Vec<_>>());
        assert!(input.is_empty());
    }

    #[test]
    fn the_prefix_is_little_endian_payload_length() {
        let mut out = BytesMut::new();
        let len = put_message(&mut out, &message(5), 1024).unwrap();
        assert_eq!(&out[..4], &(len as u32).to_le_bytes());
        assert_eq!(&out[4..], &message(5).to_bytes()[..]);
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_payload_arrives() {
        let mut input = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert_eq!(
            take_frame(&mut input, 1024),
            Err(FrameTooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
    }

    #[test]
    fn an_oversized_message_is_not_appended() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let err = put_message(&mut out, &message(1), 8).unwrap_err();
        assert_eq!(err.max, 8);
        assert_eq!(&out[..], b"keep");
    }

    #[test]
    fn missing_bytes_counts_the_prefix_then_the_payload() {
        let mut input = BytesMut::from(&[3u8, 0][..]);
        assert_eq!(bytes_missing(&input), 2);
        input.put_slice(&[0, 0, 9]);
        assert_eq!(take_frame(&mut input, 16), Ok(None));
        assert_eq!(bytes_missing(&input), 2);
    }
}
