//! Framing of log entries (segment format version 3):
//! `len u32 | tag u32 | crc32c u32 | batch_offset u64 | kind u8 | payload`,
//! where `len` counts `kind` and `payload`, the CRC covers the length, the
//! batch offset, the kind and the payload (so a damaged length is caught
//! like damaged data), and the tag covers the length, the batch offset and
//! the kind. Both start from seeds drawn from the segment's secret salt
//! ([`Seal`]): client data inside a payload passes for a frame only by
//! guessing both (one chance in 2^64 per try), and the tag rejects almost
//! every offset that is not a frame after reading 21 bytes, whatever length
//! it announces (the search after a bad frame below is linear, not
//! quadratic in bytes a client chose). Version 2 segments have neither salt
//! nor tag: `len u32 | crc32c u32 | batch_offset u64 | kind u8 | payload`,
//! the CRC started from 0 ([`Seal::UNSALTED`]).
//!
//! A *batch* is what one sync writes: one positional write of consecutive
//! frames, made durable by one `fdatasync` before the next batch is written.
//! `batch_offset` is the distance from the start of the frame's batch to the
//! frame (0 for a batch's first frame); it does not depend on where the batch
//! lands, so frames can be encoded before their segment is known.
//!
//! Scanning classifies a bad frame as either a *torn tail* or *corruption*.
//! Only the last batch can be unsynced at a crash, and a disk may persist an
//! unsynced write partly, torn at any byte, or sector by sector out of order;
//! so a bad frame is torn when every valid frame after it belongs to the same
//! batch (its batch starts at or before the bad frame): all of it was one
//! unfinished write. A valid frame of a *later* batch after a bad frame means
//! the damage sits in data that was durable before that batch was written:
//! corruption, never cut off silently (the operator decides, the node does not
//! guess).

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before a frame's kind in this build's segments: length, tag, CRC
/// and batch offset ([`Seal::header_bytes`]).
pub const FRAME_HEADER_BYTES: usize = 20;

/// How the frames of a segment are sealed: the seeds their checks start
/// from, and whether they carry a tag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// What the CRC starts from.
    seed: u32,
    /// What the tag starts from; none in a version 2 segment.
    tag_seed: Option<u32>,
}

impl std::fmt::Debug for Seal {
    // The seeds are the salt: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("tagged", &self.tag_seed.is_some())
            .finish_non_exhaustive()
    }
}

impl Seal {
    /// A version 2 segment's frames: no tag, the CRC started from 0.
    pub const UNSALTED: Seal = Seal {
        seed: 0,
        tag_seed: None,
    };

    /// The frames of a segment with `salt`: its low half seeds the CRC, its
    /// high half the tag (independent halves of a uniform salt, so the two
    /// checks' unknowns are independent too).
    pub fn salted(salt: u64) -> Seal {
        Seal {
            seed: salt as u32,
            tag_seed: Some((salt >> 32) as u32),
        }
    }

    /// Bytes before a frame's kind.
    pub fn header_bytes(self) -> usize {
        if self.tag_seed.is_some() {
            FRAME_HEADER_BYTES
        } else {
            FRAME_HEADER_BYTES - 4
        }
    }

    /// The tag of the frame whose header (through its kind) is `h`: over the
    /// length, batch offset and kind.
    fn tag(tag_seed: u32, h: &[u8]) -> u32 {
        let at = h.len() - 9;
        crc32c::crc32c_append(crc32c::crc32c_append(tag_seed, &h[..4]), &h[at..])
    }
}

/// Largest frame accepted (kind + payload); larger lengths are damage.
pub const FRAME_BYTES_MAX: usize = 256 << 20;

/// Largest payload [`put_frame`] accepts.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = FRAME_BYTES_MAX - 1;

/// What a log frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A record from the protocol core.
    Record = 1,
    /// A checkpoint marker: the group's earlier records are superseded, once
    /// the checkpoint's end frame follows.
    Checkpoint = 2,
    /// The end of a checkpoint: closes the marker and records before it in
    /// the same batch (count and a hash of their frames' CRCs). A marker
    /// without it is an unfinished checkpoint.
    CheckpointEnd = 3,
}

impl FrameKind {
    fn from_u8(kind: u8) -> Option<FrameKind> {
        match kind {
            1 => Some(FrameKind::Record),
            2 => Some(FrameKind::Checkpoint),
            3 => Some(FrameKind::CheckpointEnd),
            _ => None,
        }
    }
}

/// Appends one frame to `batch`, the bytes of one batch so far (the frame's
/// batch offset is `batch.len()`), sealed with `seal`. Returns the frame's
/// CRC. Panics if the payload exceeds [`FRAME_PAYLOAD_BYTES_MAX`]; callers
/// check their payloads against it first.
pub fn put_frame(batch: &mut BytesMut, seal: Seal, kind: FrameKind, payload: &[u8]) -> u32 {
    put_frame_with(batch, seal, kind, |out| out.put_slice(payload)).unwrap_or_else(|len| {
        panic!("frame of {} bytes exceeds the limit", len + 1);
    })
}

/// [`put_frame`] of the payload `write` appends to `batch`, written where it
/// goes (the WAL encodes each record straight into its batch instead of into
/// a buffer of its own first, then copying it). `write` only appends: it
/// must not touch what `batch` held. When the payload exceeds
/// [`FRAME_PAYLOAD_BYTES_MAX`], `batch` is cut back to what it held before
/// and the payload's length is the error.
pub(crate) fn put_frame_with(
    batch: &mut BytesMut,
    seal: Seal,
    kind: FrameKind,
    write: impl FnOnce(&mut BytesMut),
) -> Result<u32, usize> {
    let start = batch.len();
    let header = seal.header_bytes();
    // The length, tag and CRC are filled in once the payload is written.
    batch.put_bytes(0, header - 8);
    batch.put_u64_le(start as u64);
    batch.put_u8(kind as u8);
    write(batch);
    let payload_len = batch.len() - (start + header + 1);
    if payload_len > FRAME_PAYLOAD_BYTES_MAX {
        batch.truncate(start);
        return Err(payload_len);
    }
    let len_bytes = ((1 + payload_len) as u32).to_le_bytes();
    batch[start..start + 4].copy_from_slice(&len_bytes);
    // The CRC covers the length, then the batch offset, kind and payload
    // (contiguous after the CRC's own field).
    let rest = start + header - 8;
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(seal.seed, &len_bytes), &batch[rest..]);
    batch[rest - 4..rest].copy_from_slice(&crc.to_le_bytes());
    if let Some(tag_seed) = seal.tag_seed {
        let tag = Seal::tag(tag_seed, &batch[start..start + header + 1]);
        batch[start + 4..start + 8].copy_from_slice(&tag.to_le_bytes());
    }
    Ok(crc)
}

/// One frame read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame in its buffer.
    pub offset: usize,
    /// Distance from the start of its batch.
    pub batch_offset: u64,
    /// Its CRC (as stored).
    pub crc: u32,
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
    /// A bad frame followed by a valid frame of a later batch: damage, not a
    /// crash.
    Corrupt {
        /// Where the bad frame starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The length (kind and payload) that the frame header `h` announces, if a
/// frame can have it.
pub(crate) fn announced_len(h: &[u8]) -> Result<usize, &'static str> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err("impossible frame length");
    }
    Ok(len)
}

/// Checks the tag of the frame whose header, through its kind, is `h`
/// (`seal.header_bytes() + 1` bytes): a cheap check, before the whole frame
/// is read or its CRC computed. Always true for an untagged seal.
pub(crate) fn tag_matches(h: &[u8], seal: Seal) -> bool {
    match seal.tag_seed {
        Some(tag_seed) => {
            let tag = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            Seal::tag(tag_seed, h) == tag
        }
        None => true,
    }
}

/// Checks one whole frame (`frame`: header, kind and payload, its length as
/// announced): its tag and CRC (sealed with `seal`) and its kind. Returns
/// the kind, the CRC and the batch offset.
pub(crate) fn verify(frame: &[u8], seal: Seal) -> Result<(FrameKind, u32, u64), &'static str> {
    let header = seal.header_bytes();
    if !tag_matches(&frame[..header + 1], seal) {
        return Err("frame tag mismatch");
    }
    let (h, body) = frame.split_at(header);
    let rest = header - 8;
    let crc = u32::from_le_bytes([h[rest - 4], h[rest - 3], h[rest - 2], h[rest - 1]]);
    let mut actual = crc32c::crc32c_append(seal.seed, &h[0..4]);
    actual = crc32c::crc32c_append(actual, &h[rest..]);
    actual = crc32c::crc32c_append(actual, body);
    if actual != crc {
        return Err("CRC mismatch");
    }
    let mut batch = [0u8; 8];
    batch.copy_from_slice(&h[rest..]);
    let kind = FrameKind::from_u8(body[0]).ok_or("unknown frame kind")?;
    Ok((kind, crc, u64::from_le_bytes(batch)))
}

/// Parses the frame at `offset`, or says what is wrong with it.
fn parse(data: &Bytes, offset: usize, seal: Seal) -> Result<Frame, &'static str> {
    let header = seal.header_bytes();
    let rest = data.len() - offset;
    if rest < header + 1 {
        return Err("incomplete frame header");
    }
    let len = announced_len(&data[offset..offset + header])?;
    // The tag first: a check of constant cost, where the CRC's grows with
    // the length announced.
    if !tag_matches(&data[offset..offset + header + 1], seal) {
        return Err("frame tag mismatch");
    }
    if header + len > rest {
        return Err("frame runs past the end of the file");
    }
    let end = offset + header + len;
    let (kind, crc, batch_offset) = verify(&data[offset..end], seal)?;
    if batch_offset > offset as u64 {
        return Err("batch starts before the segment");
    }
    Ok(Frame {
        offset,
        batch_offset,
        crc,
        kind,
        payload: data.slice(offset + header + 1..end),
    })
}

/// Reads every frame of `data` (a segment after its header: offsets count
/// from there; frames sealed with `seal`), stopping at the first bad one
/// (see the module docs for how it is classified).
pub fn scan(data: &Bytes, seal: Seal) -> (Vec<Frame>, Option<ScanStop>) {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        match parse(data, offset, seal) {
            Ok(frame) => {
                offset += seal.header_bytes() + 1 + frame.payload.len();
                frames.push(frame);
            }
            Err(reason) => {
                // A valid frame whose batch starts after the bad one was
                // written after the bad one's batch was durable.
                let later_batch = (offset + 1..data.len()).any(|at| {
                    parse(data, at, seal)
                        .is_ok_and(|later| later.offset as u64 - later.batch_offset > offset as u64)
                });
                let stop = if later_batch {
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

    /// The seal of the segment the tests' frames are in.
    const SALT: u64 = 0x5A17_5EED_1234_5678;

    fn seal() -> Seal {
        Seal::salted(SALT)
    }

    /// Two frames, each its own batch.
    fn two_batches() -> Bytes {
        let mut out = BytesMut::new();
        for (kind, payload) in [
            (FrameKind::Record, &b"first"[..]),
            (FrameKind::Checkpoint, &b"second"[..]),
        ] {
            let mut batch = BytesMut::new();
            put_frame(&mut batch, seal(), kind, payload);
            out.extend_from_slice(&batch);
        }
        out.freeze()
    }

    /// Three frames written as one batch.
    fn one_batch() -> Bytes {
        let mut batch = BytesMut::new();
        for payload in [&b"one"[..], b"two", b"three"] {
            put_frame(&mut batch, seal(), FrameKind::Record, payload);
        }
        batch.freeze()
    }

    /// The bytes on disk, spelled out field by field as the module docs
    /// give them: a frame written in place (the payload appended in two
    /// pieces) is exactly that, in both formats.
    #[test]
    fn a_frame_written_in_place_has_the_documented_bytes() {
        for seal in [seal(), Seal::UNSALTED] {
            let before = b"batch so far";
            let mut batch = BytesMut::from(&before[..]);
            let crc = put_frame_with(&mut batch, seal, FrameKind::Checkpoint, |out| {
                out.put_slice(b"pay");
                out.put_slice(b"load");
            })
            .unwrap();
            let len = (1u32 + 7).to_le_bytes();
            let offset = (before.len() as u64).to_le_bytes();
            let mut covered = Vec::new();
            covered.extend_from_slice(&len);
            covered.extend_from_slice(&offset);
            covered.push(2);
            covered.extend_from_slice(b"payload");
            let (seed, tag) = if seal == Seal::UNSALTED {
                (0, None)
            } else {
                let tag_seed = (SALT >> 32) as u32;
                let tagged = [&len[..], &offset[..], &[2]].concat();
                (SALT as u32, Some(crc32c::crc32c_append(tag_seed, &tagged)))
            };
            assert_eq!(crc, crc32c::crc32c_append(seed, &covered));
            let mut expected = before.to_vec();
            expected.extend_from_slice(&len);
            if let Some(tag) = tag {
                expected.extend_from_slice(&tag.to_le_bytes());
            }
            expected.extend_from_slice(&crc.to_le_bytes());
            expected.extend_from_slice(&offset);
            expected.push(2);
            expected.extend_from_slice(b"payload");
            assert_eq!(&batch[..], &expected[..]);
        }
    }

    #[test]
    fn frames_round_trip() {
        let data = two_batches();
        let (frames, stop) = scan(&data, seal());
        assert_eq!(stop, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[1].payload[..], b"second");
        assert_eq!(frames[1].kind, FrameKind::Checkpoint);
        assert_eq!(frames[1].batch_offset, 0);
        let (frames, _) = scan(&one_batch(), seal());
        let offsets: Vec<u64> = frames.iter().map(|f| f.batch_offset).collect();
        assert_eq!(
            offsets,
            [0, frames[1].offset as u64, frames[2].offset as u64]
        );
    }

    #[test]
    fn a_cut_anywhere_in_the_last_frame_is_torn() {
        let data = two_batches();
        let second = scan(&data, seal()).0[1].offset;
        for cut in second + 1..data.len() {
            let (frames, stop) = scan(&data.slice(..cut), seal());
            assert_eq!(frames.len(), 1, "cut at {cut}");
            assert_eq!(
                stop,
                Some(ScanStop::Torn { offset: second }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_before_a_later_batch_is_corruption() {
        let data = two_batches();
        for byte in 0..scan(&data, seal()).0[1].offset {
            let mut bad = data.to_vec();
            bad[byte] ^= 0x10;
            let (_, stop) = scan(&Bytes::from(bad), seal());
            assert!(
                matches!(stop, Some(ScanStop::Corrupt { offset: 0, .. })),
                "flip at {byte}: {stop:?}"
            );
        }
    }

    #[test]
    fn damage_followed_only_by_its_own_batch_is_torn() {
        // An unsynced batch persisted out of order: its first sector lost
        // (zeros), its later frames whole.
        let data = one_batch();
        let second = scan(&data, seal()).0[1].offset;
        for lost in 1..=second {
            let mut bad = data.to_vec();
            bad[..lost].fill(0);
            let (frames, stop) = scan(&Bytes::from(bad), seal());
            assert!(frames.is_empty());
            assert_eq!(stop, Some(ScanStop::Torn { offset: 0 }), "lost {lost}");
        }
        // The middle frame lost, the last one kept.
        let third = scan(&data, seal()).0[2].offset;
        let mut bad = data.to_vec();
        bad[second..third].fill(0);
        let (frames, stop) = scan(&Bytes::from(bad), seal());
        assert_eq!(frames.len(), 1);
        assert_eq!(stop, Some(ScanStop::Torn { offset: second }));
    }

    /// Client data inside a torn batch that holds a well-formed frame of a
    /// "later batch": crafted without the segment's salt (which never leaves
    /// the node), it fails its checks and the tail reads as torn. Crafted
    /// with the salt (every segment had none before version 3), the same
    /// bytes read as corruption, and the node would refuse to start.
    #[test]
    fn a_frame_hidden_in_a_torn_payload_does_not_pass_for_a_later_batch() {
        let cases = [
            (seal(), Seal::UNSALTED, true),
            (seal(), Seal::salted(1), true),
            // Half the salt right: the tag's half, or the CRC's.
            (seal(), Seal::salted(SALT & 0xFFFF_FFFF_0000_0000), true),
            (seal(), Seal::salted(SALT & 0x0000_0000_FFFF_FFFF), true),
            (seal(), seal(), false),
            (Seal::UNSALTED, Seal::UNSALTED, false),
        ];
        for (seal, crafted_with, torn) in cases {
            let mut fake = BytesMut::new();
            put_frame(&mut fake, crafted_with, FrameKind::Record, b"not a record");
            let mut data = BytesMut::new();
            put_frame(&mut data, seal, FrameKind::Record, b"durable");
            let batch_at = data.len();
            let mut payload = b"SET k ".to_vec();
            payload.extend_from_slice(&fake);
            payload.extend_from_slice(b" and more");
            let mut batch = BytesMut::new();
            put_frame(&mut batch, seal, FrameKind::Record, &payload);
            data.extend_from_slice(&batch);
            // Torn after the hidden frame, before the record holding it ends.
            let cut = data.len() - 4;
            let (frames, stop) = scan(&data.freeze().slice(..cut), seal);
            assert_eq!(frames.len(), 1);
            if torn {
                assert_eq!(stop, Some(ScanStop::Torn { offset: batch_at }));
            } else {
                assert!(matches!(stop, Some(ScanStop::Corrupt { .. })), "{stop:?}");
            }
        }
    }

    /// The search after a bad frame rejects an offset by its tag, a check
    /// of the header's 21 bytes, before any CRC over the length it
    /// announces: a torn tail of client bytes that announce lengths that fit
    /// costs time linear in its size, not quadratic (without the tag, a
    /// megabyte of such bytes took seconds, and the largest value hours).
    #[test]
    fn the_search_after_a_bad_frame_checks_each_offset_by_its_tag_first() {
        let mut data = BytesMut::new();
        put_frame(&mut data, seal(), FrameKind::Record, b"durable");
        let batch_at = data.len();
        // Read at any offset, these announce 256, 65536, 1 or 16 MiB.
        let payload: Vec<u8> = [0u8, 1, 0, 0].repeat(32 << 10);
        let mut batch = BytesMut::new();
        put_frame(&mut batch, seal(), FrameKind::Record, &payload);
        data.extend_from_slice(&batch);
        let data = data.freeze();
        let (_, stop) = scan(&data.slice(..data.len() - 4), seal());
        assert_eq!(stop, Some(ScanStop::Torn { offset: batch_at }));
        let header = FRAME_HEADER_BYTES;
        let mut fitting = 0;
        for at in batch_at + 1..data.len() - (header + 1) {
            let Ok(len) = announced_len(&data[at..at + header]) else {
                continue;
            };
            if at + header + len <= data.len() {
                fitting += 1;
            }
            assert_eq!(
                parse(&data, at, seal()).map(|_| ()),
                Err("frame tag mismatch"),
                "offset {at}"
            );
        }
        assert!(
            fitting > 60_000,
            "{fitting} offsets announce a length that fits"
        );
    }
}
