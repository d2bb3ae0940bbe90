//! Reading the log back at start: each segment's frames (cutting a torn tail
//! of the newest), then per group the latest *finished* checkpoint and the
//! records after it.
//!
//! # Checkpoints are atomic on recovery
//! `Wal::checkpoint_written` writes one batch: the marker, the group's live
//! records, and an end frame carrying their count and a hash of their frame
//! CRCs. A power cut during that write can keep the marker and lose (or tear)
//! what follows; recovery then cuts the torn tail, and what is left is a
//! marker without its end. Such an *unfinished* checkpoint is ignored, marker
//! and records alike, and the group recovers from its previous finished
//! checkpoint (or from the start of the log) and every record after it,
//! exactly the state as if the checkpoint had never started:
//! - everything the unfinished checkpoint's records say was appended, and made
//!   durable, before its marker (`checkpoint_written` syncs first, and its
//!   records are copies of live state taken when nothing handed out is
//!   unappended), so dropping them loses nothing; replaying them would be
//!   harmless too, but dropping them keeps recovery a function of the
//!   acknowledged history, which the crash tests check exactly;
//! - the previous checkpoint's segments and snapshot file still exist: they
//!   are deleted (by `Obsolete::remove`) only after a later checkpoint's end
//!   frame is durable, and the log records a group's checkpoint segment only
//!   then (`Wal::finish_sync` of the checkpoint's job, and `assemble` below
//!   at start).
//!
//! The old rule (trust the last marker whatever follows) stays available as
//! `WalOptions::legacy_checkpoint_recovery`, for the simulator's negative
//! control only.

use crate::error::StorageError;
use crate::frame::{scan, FrameKind, ScanStop};
use crate::fs::{Fs, OpenMode};
use crate::{segment, snapshot_file, Recovered};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use synod_core::codec::Decode;
use synod_core::{Checksum, GroupId, InstanceId, Record, SnapshotMeta};

/// Bytes of a checkpoint marker's payload.
const MARKER_BYTES: usize = 4 + 8 + 8;
/// Bytes of a checkpoint end's payload.
const END_BYTES: usize = 4 + 8 + 8 + 8 + 4;

/// The payload of a checkpoint marker.
pub(crate) fn marker_payload(group: GroupId, meta: SnapshotMeta) -> BytesMut {
    let mut out = BytesMut::with_capacity(MARKER_BYTES);
    out.put_u32_le(group.0);
    out.put_u64_le(meta.applied_end.0);
    out.put_u64_le(meta.checksum.0);
    out
}

/// What closes a checkpoint: its group and point, and the count and hash of
/// the records between the marker and this frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointEnd {
    pub group: GroupId,
    pub meta: SnapshotMeta,
    pub records: u64,
    pub hash: u32,
}

impl CheckpointEnd {
    pub(crate) fn payload(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(END_BYTES);
        out.put_u32_le(self.group.0);
        out.put_u64_le(self.meta.applied_end.0);
        out.put_u64_le(self.meta.checksum.0);
        out.put_u64_le(self.records);
        out.put_u32_le(self.hash);
        out
    }
}

/// Folds a record frame's CRC into a checkpoint's hash.
pub(crate) fn hash_record(hash: u32, frame_crc: u32) -> u32 {
    crc32c::crc32c_append(hash, &frame_crc.to_le_bytes())
}

/// One entry read back from the log.
#[derive(Debug)]
pub(crate) enum Entry {
    Record(Record),
    Checkpoint(GroupId, SnapshotMeta),
    CheckpointEnd(CheckpointEnd),
}

/// An entry and where it was.
#[derive(Debug)]
pub(crate) struct Located {
    /// Segment index.
    pub segment: u64,
    /// Offset of its batch's first byte in the segment file.
    pub batch: u64,
    /// Offset of the frame in the segment file.
    pub at: u64,
    /// The frame's CRC.
    pub crc: u32,
    pub entry: Entry,
}

/// One segment read back.
pub(crate) struct SegmentRead {
    /// Groups with a record or checkpoint in it.
    pub groups: BTreeSet<GroupId>,
    pub entries: Vec<Located>,
    /// Torn bytes cut off.
    pub cut: u64,
    /// Where its data ends (allocated zeros may follow in the newest).
    pub end: u64,
    /// How its frames are read (its salt: appends to the newest go on with
    /// it).
    pub format: segment::Format,
    /// What the newest segment needs before appends go on in it, done by
    /// [`repair`] only once the whole log is known to be sound: a log
    /// refused as damaged is left as it was found.
    pub repair: Option<Repair>,
}

/// A change the newest segment needs before the log appends to it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Repair {
    /// Its creation did not finish: write its header again, with this salt.
    Restart { salt: u64 },
    /// It ends in a torn write: cut it to this length.
    Cut { len: u64 },
}

/// Makes a repair [`read_segment`] found due in segment `index`, durably.
pub(crate) fn repair(
    fs: &dyn Fs,
    path: &Path,
    index: u64,
    repair: Repair,
) -> Result<(), StorageError> {
    match repair {
        Repair::Restart { salt } => restart_segment(fs, path, index, salt),
        Repair::Cut { len } => {
            let file = fs
                .open(path, OpenMode::Existing)
                .map_err(|e| StorageError::io(path, e))?;
            file.set_len(len).map_err(|e| StorageError::io(path, e))?;
            file.sync_data().map_err(|e| StorageError::SyncFailed {
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
}

/// Rewrites the header of the newest segment whose creation did not finish.
fn restart_segment(fs: &dyn Fs, path: &Path, index: u64, salt: u64) -> Result<(), StorageError> {
    let file = fs
        .open(path, OpenMode::Existing)
        .map_err(|e| StorageError::io(path, e))?;
    file.set_len(0).map_err(|e| StorageError::io(path, e))?;
    file.write_all_at(&segment::header(index, salt), 0)
        .map_err(|e| StorageError::io(path, e))?;
    file.sync_data().map_err(|e| StorageError::SyncFailed {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Reads one segment. Only the newest may end in a torn write (to cut off,
/// see [`repair`]) or in allocated zeros; one whose creation
/// did not finish is to be started again, with the salt `salt` gives, unless
/// `recorded` says it was made durable (see `newest.rs`): then it was
/// emptied or zeroed since, and is refused.
pub(crate) fn read_segment(
    fs: &dyn Fs,
    path: &Path,
    index: u64,
    newest: bool,
    recorded: bool,
    salt: &mut dyn FnMut() -> Result<u64, StorageError>,
) -> Result<SegmentRead, StorageError> {
    let bytes = fs.read(path).map_err(|e| StorageError::io(path, e))?;
    // A header this build writes is the longest: a shorter file (or one
    // with a bad header and only zeros after where it would end) was never
    // used. (A version 2 segment that holds nothing but its shorter header
    // is started again too: there is nothing in it to lose.)
    let unfinished_creation = newest
        && (bytes.len() < segment::HEADER_BYTES
            || (segment::check_header(path, index, &bytes).is_err()
                && bytes[segment::HEADER_BYTES..].iter().all(|b| *b == 0)));
    if unfinished_creation && recorded {
        return Err(StorageError::corrupt(
            path,
            0,
            "this segment was made durable (wal/NEWEST names it), but it is now empty or its \
             header is gone: the log was damaged, and starting from what is left would forget \
             promises and accepted values",
        ));
    }
    if unfinished_creation {
        // Created, but its header never wholly reached the disk: nothing was
        // written after it (the header is durable before the segment is
        // used), so start it again.
        let salt = salt()?;
        let header = segment::HEADER_BYTES;
        return Ok(SegmentRead {
            groups: BTreeSet::new(),
            entries: Vec::new(),
            cut: bytes.len().saturating_sub(header) as u64,
            end: header as u64,
            format: segment::Format {
                header_bytes: header,
                salt: Some(salt),
            },
            repair: Some(Repair::Restart { salt }),
        });
    }
    let format = segment::check_header(path, index, &bytes)?;
    let header = format.header_bytes;
    let total = bytes.len();
    let data = Bytes::from(bytes).slice(header..);
    let (frames, stop) = scan(&data, format.seal());
    let mut cut = 0;
    let mut end = total as u64;
    let mut repair = None;
    match stop {
        None => {}
        Some(ScanStop::Torn { offset }) if newest && data[offset..].iter().all(|b| *b == 0) => {
            // Allocated ahead and never written (see
            // `WalOptions::preallocate_bytes`), not a torn write: a frame
            // never starts with a zero length. Writing resumes here.
            end = (header + offset) as u64;
        }
        Some(ScanStop::Torn { offset }) if newest => {
            repair = Some(Repair::Cut {
                len: (header + offset) as u64,
            });
            cut = (total - header - offset) as u64;
            end = (header + offset) as u64;
        }
        Some(ScanStop::Torn { offset }) => {
            return Err(StorageError::corrupt(
                path,
                (header + offset) as u64,
                "incomplete record in a segment that is not the newest (was the log cut short?)",
            ))
        }
        Some(ScanStop::Corrupt { offset, reason }) => {
            return Err(StorageError::corrupt(
                path,
                (header + offset) as u64,
                reason,
            ))
        }
    }
    let mut groups = BTreeSet::new();
    let mut entries = Vec::with_capacity(frames.len());
    for frame in frames {
        let at = (header + frame.offset) as u64;
        debug_assert!(frame.batch_offset <= frame.offset as u64, "checked by scan");
        let batch = at - frame.batch_offset;
        let mut p = frame.payload;
        let entry = match frame.kind {
            FrameKind::Record => {
                let record = Record::from_bytes(p).map_err(|e| {
                    StorageError::corrupt(path, at, format!("undecodable record: {e}"))
                })?;
                Entry::Record(record)
            }
            FrameKind::Checkpoint => {
                if p.len() != MARKER_BYTES {
                    return Err(StorageError::corrupt(path, at, "bad checkpoint marker"));
                }
                let group = GroupId(p.get_u32_le());
                let meta = SnapshotMeta {
                    applied_end: InstanceId(p.get_u64_le()),
                    checksum: Checksum(p.get_u64_le()),
                };
                Entry::Checkpoint(group, meta)
            }
            FrameKind::CheckpointEnd => {
                if p.len() != END_BYTES {
                    return Err(StorageError::corrupt(path, at, "bad checkpoint end"));
                }
                Entry::CheckpointEnd(CheckpointEnd {
                    group: GroupId(p.get_u32_le()),
                    meta: SnapshotMeta {
                        applied_end: InstanceId(p.get_u64_le()),
                        checksum: Checksum(p.get_u64_le()),
                    },
                    records: p.get_u64_le(),
                    hash: p.get_u32_le(),
                })
            }
        };
        groups.insert(match &entry {
            Entry::Record(r) => r.group(),
            Entry::Checkpoint(g, _) => *g,
            Entry::CheckpointEnd(end) => end.group,
        });
        entries.push(Located {
            segment: index,
            batch,
            at,
            crc: frame.crc,
            entry,
        });
    }
    Ok(SegmentRead {
        groups,
        entries,
        cut,
        end,
        format,
        repair,
    })
}

/// The latest finished checkpoint of each group: (position of its marker,
/// its segment, its point).
type Markers = BTreeMap<GroupId, (usize, u64, SnapshotMeta)>;

/// Finds every group's latest finished checkpoint, and flags the entries of
/// unfinished ones (see the module docs).
fn finished_checkpoints(
    wal_dir: &Path,
    entries: &[Located],
) -> Result<(Markers, Vec<bool>), StorageError> {
    let corrupt = |e: &Located, reason: &str| {
        StorageError::corrupt(wal_dir.join(segment::file_name(e.segment)), e.at, reason)
    };
    let mut markers = Markers::new();
    let mut ignored = vec![false; entries.len()];
    let mut position = 0;
    while position < entries.len() {
        let marker = &entries[position];
        match &marker.entry {
            Entry::Record(_) => {
                position += 1;
                continue;
            }
            Entry::CheckpointEnd(_) => {
                return Err(corrupt(marker, "checkpoint end without its marker"));
            }
            Entry::Checkpoint(group, meta) => {
                let same_batch =
                    |e: &Located| e.segment == marker.segment && e.batch == marker.batch;
                let mut next = position + 1;
                let mut hash = 0;
                let mut count = 0u64;
                while let Some(e) = entries.get(next).filter(|e| same_batch(e)) {
                    match &e.entry {
                        Entry::Record(r) if r.group() == *group => {
                            hash = hash_record(hash, e.crc);
                            count += 1;
                            next += 1;
                        }
                        Entry::CheckpointEnd(end) => {
                            let expected = CheckpointEnd {
                                group: *group,
                                meta: *meta,
                                records: count,
                                hash,
                            };
                            if *end != expected {
                                return Err(corrupt(
                                    e,
                                    "checkpoint end does not match its marker and records",
                                ));
                            }
                            break;
                        }
                        _ => {
                            return Err(corrupt(
                                e,
                                "a checkpoint holds an entry that is not one of its records",
                            ))
                        }
                    }
                }
                let finished = entries
                    .get(next)
                    .is_some_and(|e| same_batch(e) && matches!(e.entry, Entry::CheckpointEnd(_)));
                if finished {
                    markers.insert(*group, (position, marker.segment, *meta));
                    next += 1;
                } else {
                    // Unfinished: its batch was cut short by a crash. It is
                    // the last batch written before that crash, so nothing
                    // of its batch follows; later batches (appends after the
                    // restart) are kept.
                    debug_assert!(entries.get(next).is_none_or(|e| !same_batch(e)));
                    ignored[position..next].fill(true);
                }
                position = next;
            }
        }
    }
    Ok((markers, ignored))
}

/// The old rule: the last marker of each group wins, finished or not.
fn last_markers(entries: &[Located]) -> Markers {
    let mut markers = Markers::new();
    for (position, located) in entries.iter().enumerate() {
        if let Entry::Checkpoint(group, meta) = &located.entry {
            markers.insert(*group, (position, located.segment, *meta));
        }
    }
    markers
}

/// Keeps, per group, the latest finished checkpoint's snapshot and the
/// records after it. Returns also each group's checkpoint segment.
pub(crate) fn assemble(
    fs: &dyn Fs,
    wal_dir: &Path,
    snap_dir: &Path,
    entries: Vec<Located>,
    torn_bytes: u64,
    legacy_checkpoint_recovery: bool,
) -> Result<(Recovered, BTreeMap<GroupId, u64>), StorageError> {
    let (markers, ignored) = if legacy_checkpoint_recovery {
        (last_markers(&entries), vec![false; entries.len()])
    } else {
        finished_checkpoints(wal_dir, &entries)?
    };
    let mut snapshots = BTreeMap::new();
    let mut checkpoints = BTreeMap::new();
    for (group, (_, index, meta)) in &markers {
        // A finished checkpoint's snapshot file was durable before its
        // marker was written, and is deleted only once a later checkpoint
        // is finished: missing here is damage (`read_on` says so).
        snapshots.insert(*group, snapshot_file::read_on(fs, snap_dir, *group, *meta)?);
        checkpoints.insert(*group, *index);
    }
    let records = entries
        .into_iter()
        .enumerate()
        .filter(|(position, _)| !ignored[*position])
        .filter_map(|(position, located)| match located.entry {
            Entry::Record(record) => {
                let after = markers
                    .get(&record.group())
                    .is_none_or(|(marker, _, _)| position > *marker);
                after.then_some(record)
            }
            Entry::Checkpoint(..) | Entry::CheckpointEnd(_) => None,
        })
        .collect();
    Ok((
        Recovered {
            snapshots,
            records,
            torn_bytes_cut: torn_bytes,
        },
        checkpoints,
    ))
}
