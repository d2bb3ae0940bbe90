//! Reading chosen values back from the log while the node runs, for a peer
//! that needs values this node no longer holds in memory (see
//! `synod_core::Replica::release_applied_values`): they stay in the log until
//! the next checkpoint, and reading them back is far cheaper than writing,
//! sending and installing a snapshot of the whole state.
//!
//! The job reads every segment in the directory, oldest first, a bounded
//! chunk at a time and without changing anything: the newest segment is
//! being appended to, so a frame that is incomplete, zero (allocated ahead)
//! or fails its CRC ends the reading of that segment, and a segment deleted
//! meanwhile (a checkpoint finished) is skipped. Either way values may be
//! missing from what it returns, never wrong:
//! - a [`Record::Chosen`] says which value an instance chose, in full
//!   (`Learned`) or as the ballot of this node's own [`Record::Accept`];
//! - an acceptor accepts at most one value per instance and ballot (a
//!   leader proposes each instance once per ballot), so the Accept record
//!   with that instance and ballot holds the chosen value;
//! - a frame is used only when its CRC matches, and a record only when it
//!   decodes.
//!
//! The caller gets the chosen values from its `from` on, in instance order
//! and without a gap, up to the first instance it could not resolve (or
//! `to`), and decides whether that is enough.

use crate::error::StorageError;
use crate::frame::{announced_len, verify, FrameKind};
use crate::fs::{Fs, FsFile, OpenMode};
use crate::segment;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use synod_core::codec::Decode;
use synod_core::{Ballot, ChosenValue, GroupId, InstanceId, Record, Value};

/// Bytes read from a segment at a time (more when one frame is larger).
const CHUNK_BYTES: usize = 1 << 20;

/// Reads the chosen values of `[from, to)` of one group back from the log
/// (see the module docs). Runs on a blocking thread (or the simulator's
/// disk); built by [`crate::Wal::log_read`].
#[derive(Debug)]
pub struct LogRead {
    pub(crate) fs: Arc<dyn Fs>,
    /// The segments' directory.
    pub(crate) dir: PathBuf,
    pub(crate) group: GroupId,
    pub(crate) from: InstanceId,
    pub(crate) to: InstanceId,
    /// Bytes of records copied at most.
    pub(crate) bytes_max: u64,
}

/// Where a chosen instance's value is, as the log says: a `Chosen` record's
/// payload (copied) with the value in full, and the ballots of this node's
/// `Accept` records that `Chosen` records name (any one found resolves it).
#[derive(Default)]
struct Source {
    learned: Option<Bytes>,
    ballots: Vec<Ballot>,
}

impl LogRead {
    /// The first instance asked for.
    pub fn from(&self) -> InstanceId {
        self.from
    }

    /// The end (exclusive) of the instances asked for.
    pub fn to(&self) -> InstanceId {
        self.to
    }

    /// Reads the values: those of `from..to`, in order and without a gap,
    /// up to the first it could not find. An error where the records it
    /// copied pass the job's byte bound (a snapshot is then the cheaper
    /// way), the directory cannot be listed or a segment read fails for
    /// another reason than its deletion.
    pub fn run(&self) -> Result<Vec<(InstanceId, Value)>, StorageError> {
        let names = self
            .fs
            .read_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let mut indexes: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .collect();
        indexes.sort_unstable();
        let mut sources: BTreeMap<InstanceId, Source> = BTreeMap::new();
        let mut accepted: HashMap<(InstanceId, Ballot), Bytes> = HashMap::new();
        let mut copied = 0u64;
        for index in indexes {
            let path = self.dir.join(segment::file_name(index));
            let file = match self.fs.open(&path, OpenMode::Existing) {
                Ok(file) => file,
                // Deleted since the listing: a checkpoint covered it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(&path, e)),
            };
            let mut keep = |payload: &[u8]| -> bool {
                // Only records of the range are copied and decoded.
                match Record::peek_instance(payload) {
                    Some((group, instance))
                        if group == self.group && instance >= self.from && instance < self.to => {}
                    _ => return true,
                }
                let copy = Bytes::copy_from_slice(payload);
                let Ok(record) = Record::from_bytes(copy.clone()) else {
                    return true;
                };
                match record {
                    Record::Accept {
                        instance, ballot, ..
                    } => {
                        copied += copy.len() as u64;
                        accepted.insert((instance, ballot), copy);
                    }
                    Record::Chosen {
                        instance,
                        value: ChosenValue::Learned(_),
                        ..
                    } => {
                        let source = sources.entry(instance).or_default();
                        if source.learned.is_none() {
                            copied += copy.len() as u64;
                            source.learned = Some(copy);
                        }
                    }
                    Record::Chosen {
                        instance,
                        value: ChosenValue::Accepted(ballot),
                        ..
                    } => {
                        let source = sources.entry(instance).or_default();
                        if !source.ballots.contains(&ballot) {
                            source.ballots.push(ballot);
                        }
                    }
                    Record::Promise { .. } => {}
                }
                copied <= self.bytes_max
            };
            let within =
                read_records(&*file, index, &mut keep).map_err(|e| StorageError::io(&path, e))?;
            if !within {
                // More than the bound: a snapshot is the cheaper way, at once.
                return Err(StorageError::io(
                    &self.dir,
                    std::io::Error::other(format!(
                        "more than {} bytes of log records to read back",
                        self.bytes_max
                    )),
                ));
            }
        }
        let mut values = Vec::new();
        let mut instance = self.from;
        while instance < self.to {
            let Some(source) = sources.get(&instance) else {
                break;
            };
            let found = source.learned.as_ref().or_else(|| {
                source
                    .ballots
                    .iter()
                    .find_map(|ballot| accepted.get(&(instance, *ballot)))
            });
            let Some(payload) = found else {
                break;
            };
            let value = match Record::from_bytes(payload.clone()) {
                Ok(Record::Chosen {
                    value: ChosenValue::Learned(value),
                    ..
                })
                | Ok(Record::Accept { value, .. }) => value,
                _ => break,
            };
            values.push((instance, value));
            instance = instance.next();
        }
        Ok(values)
    }
}

/// Hands the payload of every record frame of the segment `file` (segment
/// `index`) to `keep`, in order, until `keep` says stop (returns false) or a
/// frame is incomplete, zero or bad: the end of what can be read now. A
/// segment whose header is wrong is skipped. Reads a chunk at a time.
fn read_records(
    file: &dyn FsFile,
    index: u64,
    keep: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<bool> {
    // The longest header (this build's); an older one is shorter.
    let mut header = [0u8; segment::HEADER_BYTES];
    let read = file.read_at(&mut header, 0)?;
    let Ok(format) = segment::check_header(std::path::Path::new(""), index, &header[..read]) else {
        return Ok(true);
    };
    // `buf` holds the file from `buf_at` on; `at` is the next frame.
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = format.header_bytes as u64;
    let mut at = buf_at;
    let seal = format.seal();
    let frame_header = seal.header_bytes();
    loop {
        if !fill(file, &mut buf, &mut buf_at, at, frame_header + 1)? {
            return Ok(true);
        }
        let offset = (at - buf_at) as usize;
        let Ok(len) = announced_len(&buf[offset..offset + frame_header]) else {
            return Ok(true);
        };
        let whole = frame_header + len;
        if !fill(file, &mut buf, &mut buf_at, at, whole)? {
            return Ok(true);
        }
        let offset = (at - buf_at) as usize;
        let frame = &buf[offset..offset + whole];
        let Ok((kind, _, _)) = verify(frame, seal) else {
            return Ok(true);
        };
        if kind == FrameKind::Record && !keep(&frame[frame_header + 1..]) {
            return Ok(false);
        }
        at += whole as u64;
    }
}

/// Makes `buf` (the file from `buf_at` on) hold the `need` bytes from `at`,
/// reading a chunk or more; false where the file ends first.
fn fill(
    file: &dyn FsFile,
    buf: &mut Vec<u8>,
    buf_at: &mut u64,
    at: u64,
    need: usize,
) -> std::io::Result<bool> {
    let end = *buf_at + buf.len() as u64;
    if at + need as u64 <= end {
        return Ok(true);
    }
    // A frame announced past the end of the file is incomplete (or its
    // length is damaged): nothing is allocated for it.
    if at + need as u64 > file.size()? {
        return Ok(false);
    }
    // Drop what was consumed, keep what is left from `at`.
    let consumed = (at - *buf_at) as usize;
    buf.drain(..consumed);
    *buf_at = at;
    let have = buf.len();
    let want = need.max(CHUNK_BYTES);
    buf.resize(want, 0);
    let read = file.read_at(&mut buf[have..], at + have as u64)?;
    buf.truncate(have + read);
    Ok(buf.len() >= need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Storage as _;
    use crate::{SimFs, Wal, WalOptions};
    use std::path::Path;
    use synod_core::NodeId;

    const G: GroupId = GroupId(7);

    fn value(tag: u8) -> Value {
        Value::batch(vec![Bytes::from(vec![tag; 300])])
    }

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn accept(instance: u64, round: u64, tag: u8) -> Record {
        Record::Accept {
            group: G,
            instance: InstanceId(instance),
            ballot: ballot(round),
            value: value(tag),
        }
    }

    fn chosen(instance: u64, source: ChosenValue) -> Record {
        Record::Chosen {
            group: G,
            instance: InstanceId(instance),
            value: source,
        }
    }

    /// A log in small segments, so that records spread over several, and
    /// files that end where their data ends (no space reserved ahead).
    fn wal(fs: &SimFs) -> Wal {
        let opts = WalOptions {
            segment_bytes_max: 4096,
            preallocate_bytes: 0,
            ..WalOptions::default()
        };
        Wal::open_on(Arc::new(fs.clone()), Path::new("/n"), opts)
            .expect("opens")
            .0
    }

    /// The segment indexes in `dir`, oldest first.
    fn segments(fs: &SimFs, dir: &Path) -> Vec<u64> {
        let mut names: Vec<u64> = fs
            .read_dir(dir)
            .expect("lists")
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .collect();
        names.sort_unstable();
        names
    }

    fn read(wal: &Wal, from: u64, to: u64) -> Vec<(u64, Value)> {
        wal.log_read(G, InstanceId(from), InstanceId(to), u64::MAX)
            .run()
            .expect("reads")
            .into_iter()
            .map(|(i, v)| (i.0, v))
            .collect()
    }

    #[test]
    fn reads_the_chosen_values_in_order_up_to_the_first_unknown() {
        let fs = SimFs::new();
        let mut wal = wal(&fs);
        let mut records = Vec::new();
        for i in 0..20 {
            // An older accept at the same instance lost: the chosen value
            // is the one accepted at the ballot the Chosen record names.
            // (Later in the log here, so that keying accepts by instance
            // alone would take it.)
            records.push(accept(i, 2, i as u8));
            records.push(accept(i, 1, 100 + i as u8));
            if i == 3 {
                // A Chosen record naming an accept this log lacks (its
                // segment deleted): another that resolves still counts.
                records.push(chosen(i, ChosenValue::Accepted(ballot(9))));
            }
            records.push(chosen(i, ChosenValue::Accepted(ballot(2))));
        }
        // Learned in full (no accept here), and another group's records.
        records.push(chosen(20, ChosenValue::Learned(value(20))));
        records.push(Record::Chosen {
            group: GroupId(8),
            instance: InstanceId(21),
            value: ChosenValue::Learned(value(99)),
        });
        // Accepted but not known chosen: the reading stops before it.
        records.push(accept(21, 2, 21));
        records.push(chosen(22, ChosenValue::Learned(value(22))));
        for chunk in records.chunks(5) {
            wal.append(chunk).expect("appends");
            wal.sync().expect("syncs");
        }
        assert!(wal.segment_count() > 3, "spread over segments");
        let got = read(&wal, 3, 30);
        let want: Vec<(u64, Value)> = (3..21).map(|i| (i, value(i as u8))).collect();
        assert_eq!(got, want);
        assert_eq!(read(&wal, 5, 8).len(), 3, "stops at `to`");
        assert!(read(&wal, 21, 30).is_empty(), "nothing known chosen at 21");
        // A damaged length in the newest segment's tail (announcing far more
        // than the file holds): the reading of that segment ends there.
        let dir = Path::new("/n/wal");
        let names = segments(&fs, dir);
        let newest = dir.join(segment::file_name(*names.last().expect("a segment")));
        let end = fs.file_len(&newest).expect("len");
        let file = fs.open(&newest, OpenMode::Existing).expect("opens");
        let mut huge = [0u8; crate::frame::FRAME_HEADER_BYTES + 1];
        huge[..4].copy_from_slice(&(200u32 << 20).to_le_bytes());
        file.write_all_at(&huge, end).expect("writes");
        assert_eq!(read(&wal, 3, 30), want);
        // Over the byte bound: an error (a snapshot is the cheaper way).
        let bounded = wal.log_read(G, InstanceId(0), InstanceId(30), 2000);
        assert!(bounded.run().is_err());
    }

    #[test]
    fn unsynced_torn_and_deleted_parts_are_missing_never_wrong() {
        let fs = SimFs::new();
        let mut wal = wal(&fs);
        for i in 0..12 {
            wal.append(&[
                accept(i, 1, i as u8),
                chosen(i, ChosenValue::Accepted(ballot(1))),
            ])
            .expect("appends");
            wal.sync().expect("syncs");
        }
        // Appended, not yet written: not in the file.
        wal.append(&[chosen(12, ChosenValue::Learned(value(12)))])
            .expect("appends");
        let got = read(&wal, 0, 20);
        assert_eq!(got.len(), 12);
        // A torn frame in the newest segment ends its reading; the others
        // still count.
        let dir = Path::new("/n/wal");
        let names = segments(&fs, dir);
        let newest = dir.join(segment::file_name(*names.last().expect("a segment")));
        let file = fs.open(&newest, OpenMode::Existing).expect("opens");
        let first_frame = segment::HEADER_BYTES as u64;
        file.write_all_at(&[0xff; 8], first_frame + 20)
            .expect("tears");
        let torn = read(&wal, 0, 20);
        assert!(torn.len() < 12 && torn.iter().all(|(i, v)| *v == value(*i as u8)));
        // The oldest segment deleted (a checkpoint covered it): the
        // reading stops where its values were.
        assert!(names.len() >= 2, "{names:?}");
        fs.remove_file(&dir.join(segment::file_name(names[0])))
            .expect("removes");
        let gap = read(&wal, 0, 20);
        assert!(gap.len() < torn.len());
        assert!(gap.iter().all(|(i, v)| *v == value(*i as u8)));
    }
}
