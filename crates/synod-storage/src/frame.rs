//! Framing of log entries: `len u32 | crc32c u32 | kind u8 | payload`, where
//! `len` counts `kind` and `payload`, and the CRC covers the length bytes, the
//! kind and the payload (so a damaged length is caught like damaged data).
//!
//! Scanning classifies a bad frame as either a *torn tail* or *corruption*.
//! Torn: no valid frame follows it anywhere in the buffer, so it can be the
//! unfinished last write. Corruption: a valid frame follows, so the damage sits
//! inside data that was written after it; that is never cut off silently (a
//! disk that writes pages out of order during a crash can also cause this; the
//! operator decides, the node does not guess).

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before a frame's kind: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Largest frame accepted (kind + payload); larger lengths are damage.
pub const FRAME_BYTES_MAX: usize = 256 << 20;

/// What a log frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A record from the protocol core.
    Record = 1,
    /// A checkpoint marker: the group's earlier records are superseded.
    Checkpoint = 2,
}

impl FrameKind {
    fn from_u8(kind: u8) -> Option<FrameKind> {
        match kind {
            1 => Some(FrameKind::Record),
            2 => Some(FrameKind::Checkpoint),
            _ => None,
        }
    }
}

/// Appends one frame to `buf`. Panics if the payload exceeds
/// [`FRAME_BYTES_MAX`]; callers bound their payloads below it.
pub fn put_frame(buf: &mut BytesMut, kind: FrameKind, payload: &[u8]) {
    let len = 1 + payload.len();
    assert!(
        len <= FRAME_BYTES_MAX,
        "frame of {len} bytes exceeds the limit"
    );
    let len_bytes = (len as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len_bytes);
    crc = crc32c::crc32c_append(crc, &[kind as u8]);
    crc = crc32c::crc32c_append(crc, payload);
    buf.put_slice(&len_bytes);
    buf.put_u32_le(crc);
    buf.put_u8(kind as u8);
    buf.put_slice(payload);
}

/// One frame read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame in its buffer.
    pub offset: usize,
    /// Its kind.
    pub kind: FrameKind,
    /// Its payload.
    pub payload: Bytes,
}

/// Why scanning stopped before the end of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// A bad frame with nothing valid after it: an unfinished write.
    Torn {
        /// Where the bad frame starts; the valid data ends here.
        offset: usize,
    },
    /// A bad frame followed by valid frames: damage, not a crash.
    Corrupt {
        /// Where the bad frame starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Parses the frame at `offset`, or says what is wrong with it.
fn parse(data: &Bytes, offset: usize) -> Result<Frame, &'static str> {
    let rest = data.len() - offset;
    if rest < FRAME_HEADER_BYTES + 1 {
        return Err("incomplete frame header");
    }
    let h = &data[offset..offset + FRAME_HEADER_BYTES];
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err("impossible frame length");
    }
    if FRAME_HEADER_BYTES + len > rest {
        return Err("frame runs past the end of the file");
    }
    let end = offset + FRAME_HEADER_BYTES + len;
    let body = &data[offset + FRAME_HEADER_BYTES..end];
    let actual = crc32c::crc32c_append(crc32c::crc32c(&h[0..4]), body);
    if actual != crc {
        return Err("CRC mismatch");
    }
    let kind = FrameKind::from_u8(body[0]).ok_or("unknown frame kind")?;
    Ok(Frame {
        offset,
        kind,
        payload: data.slice(offset + FRAME_HEADER_BYTES + 1..end),
    })
}

/// Reads every frame of `data`, stopping at the first bad one (see the module
/// docs for how it is classified).
pub fn scan(data: &Bytes) -> (Vec<Frame>, Option<ScanStop>) {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        match parse(data, offset) {
            Ok(frame) => {
                offset += FRAME_HEADER_BYTES + 1 + frame.payload.len();
                frames.push(frame);
            }
            Err(reason) => {
                let later_valid = (offset + 1..data.len()).any(|at| parse(data, at).is_ok());
                let stop = if later_valid {
                    ScanStop::Corrupt {
                        offset,
                        reason: reason.to_string(),
                    }
                } else {
                    ScanStop::Torn { offset }
                };
                return (frames, Some(stop));
            }
        }
    }
    (frames, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Bytes {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, FrameKind::Record, b"first");
        put_frame(&mut buf, FrameKind::Checkpoint, b"second");
        buf.freeze()
    }

    #[test]
    fn frames_round_trip() {
        let data = two_frames();
        let (frames, stop) = scan(&data);
        assert_eq!(stop, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[1].payload[..], b"second");
        assert_eq!(frames[1].kind, FrameKind::Checkpoint);
    }

    #[test]
    fn a_cut_anywhere_in_the_last_frame_is_torn() {
        let data = two_frames();
        let second = scan(&data).0[1].offset;
        for cut in second + 1..data.len() {
            let (frames, stop) = scan(&data.slice(..cut));
            assert_eq!(frames.len(), 1, "cut at {cut}");
            assert_eq!(
                stop,
                Some(ScanStop::Torn { offset: second }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_before_the_last_frame_is_corruption() {
        let data = two_frames();
        for byte in 0..scan(&data).0[1].offset {
            let mut bad = data.to_vec();
            bad[byte] ^= 0x10;
            let (_, stop) = scan(&Bytes::from(bad));
            assert!(
                matches!(stop, Some(ScanStop::Corrupt { offset: 0, .. })),
                "flip at {byte}: {stop:?}"
            );
        }
    }
}
