//! The write-ahead log on disk: segment files under `<data-dir>/wal/`, snapshot
//! files under `<data-dir>/snap/`, for any number of groups in one log.
//!
//! Writing: `append` encodes records into memory; `sync` writes them with one
//! positional write and one `fdatasync` (group commit: one fsync covers every
//! record appended since the last). Segments roll at a size limit; a new
//! segment's directory entry is fsynced before anything in it is relied on.
//!
//! Compaction: `checkpoint` writes the snapshot file durably, starts a new
//! segment with one batch: a checkpoint marker, the records that rebuild the
//! group after the snapshot, and a checkpoint end; syncs it, then deletes the
//! oldest segments whose every group has a later checkpoint. Recovery honours
//! a marker only with its end (see `recovery.rs`).
//!
//! Files go through an [`Fs`]: [`RealFs`] by default ([`Wal::open`]), or a
//! simulated one ([`Wal::open_on`]).
//!
//! Errors: any failed file operation poisons the log; every later call
//! returns [`StorageError::Poisoned`]. Nothing is retried (an fsync that
//! failed may have dropped data that a retry would report as durable).

use crate::error::StorageError;
use crate::frame::{put_frame, put_frame_with, FrameKind, Seal, FRAME_PAYLOAD_BYTES_MAX};
use crate::fs::{Fs, FsFile, OpenMode, RealFs};
use crate::recovery::{self, hash_record, marker_payload, CheckpointEnd};
use crate::{fsync_dir, newest, segment, snapshot_file, trash, Recovered, Storage};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use synod_core::codec::Encode;
use synod_core::{GroupId, InstanceId, Record, Snapshot, SnapshotMeta};

/// Settings of the log.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// The active segment is filled with zeros ahead of the writes, to the
    /// end of the chunk (of this many bytes; 0: never) that a write ends
    /// in. A write over zeros that are already on disk changes neither the
    /// file size nor the block map, so its `fdatasync` waits for the data
    /// write and the cache flush only. A write past the end of the file, or
    /// into space reserved with `fallocate` alone (unwritten extents, which
    /// the first write converts), also makes the `fdatasync` write the
    /// inode and the block map, one after the other: on the development
    /// machine (ext4 on a virtual disk) 3.5 waits for the disk per sync
    /// instead of 2, and a follower's context switches per SET at 50
    /// clients fell from 0.18–0.19 to 0.14–0.16 with zeros written.
    ///
    /// The sync job that first writes into a chunk does it: it reserves
    /// the chunk with `fallocate` before writing anything (so that a crash,
    /// on any journaling mode, finds the new space reading as zeros, never
    /// as blocks of deleted files that could hold old frames), writes its
    /// data, writes zeros over the rest of the chunk, then runs its one
    /// `fdatasync`. The log writes about twice its bytes, and that one sync
    /// per chunk is slower (1 MiB of zeros: about 1-3 ms here). Zeros past
    /// the last frame of the newest segment are unused space to recovery,
    /// and a closed segment is cut to its data before the next one is
    /// created. A fill or a reservation that fails (a full disk, a file
    /// system without `fallocate`) is logged once per segment and retried
    /// by the next write: only speed depends on it, and the data write and
    /// the sync report their own errors. With 0, writes extend the file
    /// (on a file system that may make a new size durable before the data,
    /// such as ext4 with `data=writeback`, a crash may then leave old
    /// blocks after the last frame).
    pub preallocate_bytes: u64,
    /// **Negative control only** (for the simulator's `--inject
    /// torn-checkpoint`): recovery trusts a checkpoint marker without its
    /// end frame, as the first release did, so a checkpoint cut short by a
    /// power failure makes the node forget durable promises and accepted
    /// values. Never set it in a real node. Default false.
    pub legacy_checkpoint_recovery: bool,
    /// The salt of the segments this log starts when it holds none of
    /// version 3 (see `segment::Format::salt`); `None` (the default) draws
    /// one from the operating system's random source. A log that ends in a
    /// version 3 segment goes on with that segment's salt. Fixed only where
    /// runs must repeat (the simulator); it must stay unknown to clients.
    pub salt: Option<u64>,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 << 20,
            preallocate_bytes: 1 << 20,
            legacy_checkpoint_recovery: false,
            salt: None,
        }
    }
}

#[derive(Debug)]
struct SegmentMeta {
    index: u64,
    path: PathBuf,
    /// Groups with a record or checkpoint in this segment.
    groups: BTreeSet<GroupId>,
}

/// A write of pending bytes plus its `fdatasync`, run without holding the
/// log (see `GroupCommit`); for a checkpoint (`Wal::begin_checkpoint`),
/// then its marker step.
#[derive(Debug)]
pub struct SyncJob {
    file: Arc<dyn FsFile>,
    path: PathBuf,
    /// The segment written to.
    segment: u64,
    offset: u64,
    bytes: Bytes,
    /// The chunk to reserve and fill (see `WalOptions::preallocate_bytes`).
    fill: Option<Fill>,
    /// Why the reservation or the fill failed, if it did (reported by
    /// `Wal::finish_sync`).
    fill_error: std::sync::OnceLock<String>,
    groups: BTreeSet<GroupId>,
    /// A checkpoint's marker step, run after the write and sync above
    /// (`Wal::begin_checkpoint`).
    checkpoint: Option<Box<CheckpointStep>>,
}

/// The marker step of a checkpoint, as a sync job carries it: once the
/// bytes appended before it are durable in the active segment, that segment
/// is cut to its data (durably), the next segment is created (durably, its
/// directory entry too), and the marker, the records and the end frame are
/// written at its start and synced: the same storage steps, in the same
/// order, as `Wal::checkpoint_written` took on the caller's thread.
#[derive(Debug)]
struct CheckpointStep {
    fs: Arc<dyn Fs>,
    wal_dir: PathBuf,
    group: GroupId,
    /// The active segment's data length (its zeros past it are cut).
    cut_to: u64,
    /// The segment the marker starts.
    index: u64,
    /// The log's salt, for that segment's header and frames.
    salt: Salt,
    /// The checkpoint's point; its marker, records and end frame are
    /// framed by the job (encoding them is the slow part, tens of MB of
    /// values chosen since the snapshot was taken).
    meta: SnapshotMeta,
    /// Taken by the job when it frames them (so they are freed there, not
    /// on the caller's loop when it finishes the job).
    records: std::sync::Mutex<Vec<Record>>,
    /// `WalOptions::preallocate_bytes` and `segment_bytes_max`, for the
    /// chunk of the new segment to reserve and fill after the batch.
    chunk: u64,
    segment_max: u64,
    /// Why that failed, if it did.
    fill_error: std::sync::OnceLock<String>,
    /// The segment the step created, for `Wal::finish_sync`.
    created: std::sync::Mutex<Option<Created>>,
}

/// What a checkpoint step created.
#[derive(Debug)]
struct Created {
    meta: SegmentMeta,
    file: Arc<dyn FsFile>,
    /// Where the checkpoint's batch ends.
    end: u64,
    fill: Option<Fill>,
}

impl CheckpointStep {
    /// The checkpoint's batch: marker, records, end frame.
    fn frame(&self) -> Result<BytesMut, StorageError> {
        let records = self
            .records
            .lock()
            .map(|mut records| std::mem::take(&mut *records))
            .unwrap_or_default();
        checkpoint_batch(Seal::salted(self.salt.0), self.group, self.meta, &records)
    }

    fn write(&self, batch: &[u8], file: &dyn FsFile, path: &Path) -> Result<(), StorageError> {
        let (meta, file) = close_and_create(
            &*self.fs,
            &self.wal_dir,
            file,
            path,
            self.cut_to,
            self.index,
            self.salt.0,
        )?;
        let end = segment::HEADER_BYTES as u64 + batch.len() as u64;
        let fill = fill_after(self.chunk, self.segment_max, end);
        write_reserved(
            &*file,
            &meta.path,
            batch,
            segment::HEADER_BYTES as u64,
            fill,
            &self.fill_error,
        )?;
        if let Ok(mut created) = self.created.lock() {
            *created = Some(Created {
                meta,
                file,
                end,
                fill,
            });
        }
        Ok(())
    }
}

/// The part of a segment a sync job prepares for later writes: reserved
/// (`fallocate`) from where the job's data starts (at or before the file's
/// end) to `to` before the data is written, then zeros from the end of the
/// data to `to` (none when the data reaches it).
#[derive(Debug, Clone, Copy)]
struct Fill {
    /// The end of the job's data.
    zeros_from: u64,
    to: u64,
}

/// Zeros written at a time by a fill.
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

impl SyncJob {
    /// Writes the bytes at their offset (and the zeros of a fill after
    /// them) and makes them durable: positional writes and one `fdatasync`.
    pub fn run(&self) -> Result<(), StorageError> {
        // A checkpoint's batch is framed before any write: a record too
        // large fails the job before it touches the disk.
        let batch = match &self.checkpoint {
            Some(step) => Some(step.frame()?),
            None => None,
        };
        // A checkpoint with nothing appended before it: every earlier write
        // is durable already (one sync job at a time).
        if !self.bytes.is_empty() {
            self.write_and_sync()?;
        }
        match (&self.checkpoint, batch) {
            (Some(step), Some(batch)) => step.write(&batch, &*self.file, &self.path),
            _ => Ok(()),
        }
    }

    /// Whether this job also writes a checkpoint's marker
    /// (`Wal::begin_checkpoint`).
    pub fn is_checkpoint(&self) -> bool {
        self.checkpoint.is_some()
    }

    fn write_and_sync(&self) -> Result<(), StorageError> {
        write_reserved(
            &*self.file,
            &self.path,
            &self.bytes,
            self.offset,
            self.fill,
            &self.fill_error,
        )
    }
}

/// Writes `bytes` at `offset` of `file` and makes them durable, reserving
/// and filling `fill` (if any) around them: reserved first, so the file
/// grows by unwritten extents, which read as zeros after any crash, before
/// anything is written there. A failed reservation or fill only costs speed
/// (see `WalOptions::preallocate_bytes`): it is left in `fill_error`, and a
/// roll cuts whatever part of it was written, by the file's real size.
fn write_reserved(
    file: &dyn FsFile,
    path: &Path,
    bytes: &[u8],
    offset: u64,
    fill: Option<Fill>,
    fill_error: &std::sync::OnceLock<String>,
) -> Result<(), StorageError> {
    let reserved = fill.map(|fill| (fill, file.allocate(offset, fill.to)));
    file.write_all_at(bytes, offset)
        .map_err(|e| StorageError::io(path, e))?;
    if let Some((fill, reserved)) = reserved {
        let filled = reserved.and_then(|()| fill_zeros(file, fill.zeros_from, fill.to));
        if let Err(e) = filled {
            let _ = fill_error.set(e.to_string());
        }
    }
    file.sync_data().map_err(|e| StorageError::SyncFailed {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Frames `records` after what `out` holds, telling `on_frame` each frame's
/// CRC. Each record is encoded straight into its frame, and checked there: a
/// batch with one record too large leaves `out` as it was (all or nothing);
/// `on_frame` may then have been told of frames cut back out, so a caller
/// drops what it made of them with the error.
fn frame_into(
    out: &mut BytesMut,
    seal: Seal,
    records: &[Record],
    mut on_frame: impl FnMut(u32),
) -> Result<(), StorageError> {
    let start = out.len();
    for record in records {
        match put_frame_with(out, seal, FrameKind::Record, |out| record.encode(out)) {
            Ok(crc) => on_frame(crc),
            Err(bytes) => {
                out.truncate(start);
                return Err(StorageError::RecordTooLarge {
                    bytes,
                    max: FRAME_PAYLOAD_BYTES_MAX,
                });
            }
        }
    }
    Ok(())
}

/// A checkpoint's batch: its marker, `records` and its end frame (their
/// count and a hash of their CRCs).
fn checkpoint_batch(
    seal: Seal,
    group: GroupId,
    meta: SnapshotMeta,
    records: &[Record],
) -> Result<BytesMut, StorageError> {
    let mut batch = BytesMut::new();
    put_frame(
        &mut batch,
        seal,
        FrameKind::Checkpoint,
        &marker_payload(group, meta),
    );
    let mut hash = 0;
    // On an error the hash is dropped with the batch.
    frame_into(&mut batch, seal, records, |crc| {
        hash = hash_record(hash, crc)
    })?;
    let end = CheckpointEnd {
        group,
        meta,
        records: records.len() as u64,
        hash,
    };
    put_frame(&mut batch, seal, FrameKind::CheckpointEnd, &end.payload());
    Ok(batch)
}

/// The rest of the chunk (of `chunk` bytes; 0: none) a write ending at
/// `end` ends in, to fill so that the next writes (until the chunk is used)
/// land on zeros already on disk. Not past `segment_max`, the size at which
/// the segment rolls: those zeros would only be cut off again (the write
/// that crosses it is still reserved, it just gets no zeros after it).
fn fill_after(chunk: u64, segment_max: u64, end: u64) -> Option<Fill> {
    (chunk > 0).then(|| Fill {
        zeros_from: end,
        to: (end.div_ceil(chunk) * chunk).min(segment_max).max(end),
    })
}

/// Writes zeros over `[from, to)` of `file`.
fn fill_zeros(file: &dyn FsFile, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(ZEROS.len(), |left| left.min(ZEROS.len()));
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The log. See the module docs.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    opts: WalOptions,
    /// Oldest first; the last one is written to.
    segments: Vec<SegmentMeta>,
    file: Arc<dyn FsFile>,
    /// Bytes written or reserved in the active segment.
    file_len: u64,
    /// Where the active segment has been (or is being) prepared up to by
    /// a fill (see `WalOptions::preallocate_bytes`): decides when the next
    /// fill starts. A fill may have failed part way, so the file's real
    /// size is asked for where it matters (`disk_bytes`, `roll`).
    allocated: u64,
    /// The next batch: frames whose batch offsets count from its start.
    pending: BytesMut,
    pending_groups: BTreeSet<GroupId>,
    /// Per group, the segment holding its latest finished checkpoint (its
    /// end frame durable).
    checkpoints: BTreeMap<GroupId, u64>,
    /// A sync job is running: nothing may roll or checkpoint meanwhile.
    syncing: bool,
    /// What a finished checkpoint job superseded, until taken
    /// (`take_checkpointed`).
    checkpointed: Option<Obsolete>,
    /// Superseded segments a removal could delete neither way, oldest
    /// first: handed out again, ahead of the next ones, with the next
    /// checkpoint's [`Obsolete`] (forgotten, a later removal would leave a
    /// gap in the indexes, and the log would refuse to open).
    stuck: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    poisoned: bool,
    /// Bytes appended since the last checkpoint (for `SnapshotPolicy`).
    bytes_since_checkpoint: u64,
    /// A failed fill was reported in the active segment.
    fill_warned: bool,
    /// The salt of the active segment and of every segment this log
    /// starts: frames are encoded before the segment they land in is known
    /// (a roll may move them to the next), so all share it.
    salt: Salt,
}

impl Wal {
    /// Opens (or creates) the log under `dir` on the real file system and
    /// recovers what it holds.
    ///
    /// A torn frame at the end of the newest segment is cut off. Any other
    /// damage is an error naming the file and offset; the log is left as is.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), StorageError> {
        Wal::open_on(Arc::new(RealFs), dir, opts)
    }

    /// [`Wal::open`] on the file system `fs` (e.g. a [`SimFs`](crate::SimFs)
    /// clone; `dir` is then just a name in it).
    pub fn open_on(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Recovered), StorageError> {
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [dir, &wal_dir, &snap_dir] {
            fs.create_dir_all(d).map_err(|e| StorageError::io(d, e))?;
        }
        fsync_dir(&*fs, dir)?;
        let mut indexes = Vec::new();
        let names = fs
            .read_dir(&wal_dir)
            .map_err(|e| StorageError::io(&wal_dir, e))?;
        for name in names {
            if let Some(index) = segment::parse_name(&name) {
                indexes.push(index);
            }
        }
        indexes.sort_unstable();
        // Segments that end before the newest one made durable were
        // deleted (see `newest.rs`). Checked before anything is changed: a
        // log refused as damaged is left as it was found.
        let mut recorded = newest::read(&*fs, &wal_dir)?;
        if let Some(recorded) = recorded {
            if indexes.last().is_none_or(|last| *last < recorded) {
                return Err(StorageError::corrupt(
                    wal_dir.join(segment::file_name(recorded)),
                    0,
                    "this log segment was made durable (wal/NEWEST names it), but it is missing: \
                     the log was damaged, and starting from what is left would forget promises \
                     and accepted values",
                ));
            }
        }
        for pair in indexes.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(StorageError::corrupt(
                    wal_dir.join(segment::file_name(pair[0] + 1)),
                    0,
                    "a log segment is missing between two others",
                ));
            }
        }
        let mut segments = Vec::new();
        let mut entries = Vec::new();
        let mut torn_bytes = 0;
        let mut data_end = segment::HEADER_BYTES as u64;
        // The salt of the segments started from here, unless the newest
        // has one (read below): drawn only when one is needed.
        let mut drawn = None;
        let mut fresh_salt = || -> Result<u64, StorageError> {
            if let Some(salt) = drawn {
                return Ok(salt);
            }
            let salt = match opts.salt {
                Some(salt) => salt,
                None => draw_salt(&wal_dir)?,
            };
            drawn = Some(salt);
            Ok(salt)
        };
        let mut newest_salt = None;
        let mut repair = None;
        for (k, index) in indexes.iter().copied().enumerate() {
            let newest = k + 1 == indexes.len();
            let path = wal_dir.join(segment::file_name(index));
            let durable = recorded.is_some_and(|r| index <= r);
            let read =
                recovery::read_segment(&*fs, &path, index, newest, durable, &mut fresh_salt)?;
            if let Some(due) = read.repair {
                repair = Some((path.clone(), index, due));
            }
            torn_bytes += read.cut;
            data_end = read.end;
            newest_salt = read.format.salt;
            entries.extend(read.entries);
            segments.push(SegmentMeta {
                index,
                path,
                groups: read.groups,
            });
        }
        let (recovered, checkpoints) = recovery::assemble(
            &*fs,
            &wal_dir,
            &snap_dir,
            entries,
            torn_bytes,
            opts.legacy_checkpoint_recovery,
        )?;
        // Segment 1 is the first a log ever has, and segments are removed
        // only once a later checkpoint's end frame is durable (`Obsolete`),
        // in the segment that checkpoint was written to or a later one,
        // which a removal never takes. So a log whose oldest segment is
        // not 1 holds a finished checkpoint. Without one, the log was
        // damaged: segments deleted, the newest (or only) one emptied or
        // zeroed (read as an unfinished creation or a torn tail), or the
        // checkpoint's end frame corrupted (read as a torn tail). Starting
        // from what is left would forget promises and accepted values, and
        // vote on them: refuse.
        if let Some(&oldest) = indexes.first() {
            if oldest > 1 && checkpoints.is_empty() {
                return Err(StorageError::corrupt(
                    wal_dir.join(segment::file_name(oldest)),
                    0,
                    format!(
                        "the log starts at segment {oldest} but holds no finished checkpoint: \
                         earlier segments were removed or the log is damaged, and what is left \
                         would forget promises and accepted values"
                    ),
                ));
            }
        }
        // What a removal cut short left (a crash, an error, a stop): never
        // read, only space; unlinked whole (nothing waits on this node's
        // syncs yet). One that cannot be removed now is left for the next
        // checkpoint's removal.
        for d in [&wal_dir, &snap_dir] {
            if let Err(e) = trash::purge_trash(&*fs, d) {
                tracing::warn!("cannot empty the trash of {}: {e}", d.display());
            }
        }
        // Snapshots half written or half received when the node stopped:
        // never trusted, only space, and on a full disk the space a restart
        // needs (a node stopped by ENOSPC while writing a snapshot stopped
        // again at once, its `.tmp` still there). Nothing writes them yet.
        if let Err(e) = snapshot_file::remove_unfinished_on(&*fs, &snap_dir) {
            tracing::warn!("cannot remove unfinished snapshots: {e}");
        }
        // The log is whole: now the newest segment's torn tail is cut, or
        // its unfinished creation started again (after the space above is
        // freed: on a full disk, a header written again needs a block).
        if let Some((path, index, due)) = repair {
            recovery::repair(&*fs, &path, index, due)?;
        }
        let (file, file_len, allocated) = match segments.last() {
            Some(last) => {
                let file = fs
                    .open(&last.path, OpenMode::Existing)
                    .map_err(|e| StorageError::io(&last.path, e))?;
                let len = file.size().map_err(|e| StorageError::io(&last.path, e))?;
                // Writing goes on where the data ends, before any
                // allocated zeros.
                (file, data_end, len.max(data_end))
            }
            None => {
                let salt = fresh_salt()?;
                let (meta, file) = create_segment(&*fs, &wal_dir, 1, salt)?;
                segments.push(meta);
                newest_salt = Some(salt);
                recorded = Some(1);
                let header = segment::HEADER_BYTES as u64;
                (file, header, header)
            }
        };
        // A log that ends in a version 2 segment (no salt) goes on in a new
        // segment of this version: frames of one segment share one seed.
        let salt = match newest_salt {
            Some(salt) => salt,
            None => fresh_salt()?,
        };
        let mut wal = Wal {
            fs,
            wal_dir,
            snap_dir,
            opts,
            segments,
            file,
            file_len,
            allocated,
            pending: BytesMut::new(),
            pending_groups: BTreeSet::new(),
            checkpoints,
            syncing: false,
            checkpointed: None,
            stuck: Arc::default(),
            poisoned: false,
            bytes_since_checkpoint: 0,
            fill_warned: false,
            salt: Salt(salt),
        };
        if newest_salt.is_none() {
            wal.roll()?;
            recorded = Some(wal.active().index);
        }
        // A log from before `wal/NEWEST`, or a crash between a segment's
        // creation and its record: record the newest now. (A segment this
        // open created recorded itself.)
        let newest = wal.active().index;
        if recorded != Some(newest) {
            newest::write(&*wal.fs, &wal.wal_dir, newest)?;
        }
        Ok((wal, recovered))
    }

    /// The file system the log writes to (to write snapshot files on it off
    /// the event loop with [`snapshot_file::write_on`]).
    pub fn fs(&self) -> Arc<dyn Fs> {
        Arc::clone(&self.fs)
    }

    /// A job that reads the chosen values of `[from, to)` of `group` back
    /// from the log's segments (see [`crate::LogRead`]), copying at most
    /// about `bytes_max` bytes of records.
    pub fn log_read(
        &self,
        group: GroupId,
        from: InstanceId,
        to: InstanceId,
        bytes_max: u64,
    ) -> crate::LogRead {
        crate::LogRead {
            fs: self.fs.clone(),
            dir: self.wal_dir.clone(),
            group,
            from,
            to,
            bytes_max,
        }
    }

    /// True once an error stopped the log for good.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Stops the log for good if `result` failed.
    fn fatal<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Takes the pending bytes for a sync run outside this struct (group
    /// commit). `None` when nothing is pending. Pair with `finish_sync`.
    pub fn begin_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if self.pending.is_empty() || self.syncing {
            return Ok(None);
        }
        Ok(Some(self.take_pending()))
    }

    /// Everything appended and not yet written, as the next sync job (no
    /// bytes when nothing is pending).
    fn take_pending(&mut self) -> SyncJob {
        let bytes = self.pending.split().freeze();
        let offset = self.file_len;
        self.file_len += bytes.len() as u64;
        let mut fill = None;
        if self.file_len > self.allocated {
            // Reserved from where this write starts, not from where the
            // last fill was meant to end: that fill may have failed part
            // way, and a hole below the new reservation would be filled by
            // this write as a plain extension. Reserving blocks already
            // written costs nothing.
            fill = fill_after(
                self.opts.preallocate_bytes,
                self.opts.segment_bytes_max,
                self.file_len,
            );
            if let Some(fill) = fill {
                self.allocated = fill.to;
            }
        }
        self.allocated = self.allocated.max(self.file_len);
        self.syncing = true;
        let active = self.active();
        SyncJob {
            file: Arc::clone(&self.file),
            path: active.path.clone(),
            segment: active.index,
            offset,
            bytes,
            fill,
            fill_error: std::sync::OnceLock::new(),
            groups: std::mem::take(&mut self.pending_groups),
            checkpoint: None,
        }
    }

    /// Completes a sync job. An error poisons the log for good: an fsync is
    /// never retried.
    pub fn finish_sync(
        &mut self,
        job: SyncJob,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        debug_assert!(self.syncing, "finish_sync without begin_sync");
        self.syncing = false;
        if let Err(err) = result {
            self.poisoned = true;
            return Err(err);
        }
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if let Some(error) = job.fill_error.get() {
            // Only speed depends on the fill (see
            // `WalOptions::preallocate_bytes`). The next job reserves and
            // fills again from its own data: no write then extends the
            // file past space that was never reserved.
            self.allocated = self.file_len;
            self.fill_failed(&job.path, error);
        }
        // Nothing rolls while a job runs, so its segment is still the
        // active one.
        debug_assert_eq!(self.active().index, job.segment);
        if let Some(segment) = self.segments.iter_mut().rfind(|s| s.index == job.segment) {
            segment.groups.extend(job.groups);
        }
        if let Some(step) = job.checkpoint {
            // The marker's segment is the active one now; what was appended
            // while the job ran is still pending and goes after the end
            // frame, as it would have had the checkpoint been written at
            // once.
            let created = step.created.lock().ok().and_then(|mut c| c.take());
            let Some(Created {
                mut meta,
                file,
                end,
                fill,
            }) = created
            else {
                self.poisoned = true;
                return Err(StorageError::io(
                    &self.wal_dir,
                    std::io::Error::other("a checkpoint job reported success without its segment"),
                ));
            };
            meta.groups.insert(step.group);
            let marker_segment = meta.index;
            self.enter_segment(meta, file, end);
            // A failed fill is retried by the next write (see above).
            match (fill, step.fill_error.get()) {
                (Some(fill), None) => self.allocated = fill.to.max(end),
                (_, Some(error)) => {
                    let path = self.active().path.clone();
                    self.fill_failed(&path, error);
                }
                (None, None) => {}
            }
            // Only now, with the end frame durable, does the checkpoint count.
            self.checkpoints.insert(step.group, marker_segment);
            self.checkpointed = Some(Obsolete {
                fs: Arc::clone(&self.fs),
                wal_dir: self.wal_dir.clone(),
                segments: self.take_obsolete(),
                snap_dir: self.snap_dir.clone(),
                keep: Some((step.group, step.meta.applied_end)),
                stop: Arc::new(AtomicBool::new(false)),
                stuck: Arc::clone(&self.stuck),
            });
        }
        if self.file_len >= self.opts.segment_bytes_max {
            // Appends made while the job ran are still pending: they go to
            // the new segment (their frames' batch offsets are relative).
            let rolled = self.roll();
            self.fatal(rolled)?;
        }
        Ok(())
    }

    /// Says, once per segment, that a reservation or fill failed.
    fn fill_failed(&mut self, path: &Path, error: &str) {
        if !self.fill_warned {
            self.fill_warned = true;
            tracing::warn!(
                path = %path.display(),
                error = %error,
                "could not reserve and fill the log segment ahead of the writes: \
                 syncs are slower (retried with every write; said once per segment)"
            );
        }
    }

    /// What the checkpoint of the last finished checkpoint job superseded
    /// (`begin_checkpoint`), once: delete it off the loop.
    pub fn take_checkpointed(&mut self) -> Option<Obsolete> {
        self.checkpointed.take()
    }

    /// Bytes of every segment and snapshot file, for the bounded-size
    /// figure; the zeros written ahead in the active segment (past its
    /// data) are not counted.
    pub fn disk_bytes(&self) -> u64 {
        let active = &self.active().path;
        let mut total = 0;
        for dir in [&self.wal_dir, &self.snap_dir] {
            if let Ok(names) = self.fs.read_dir(dir) {
                for name in names {
                    let path = dir.join(name);
                    let len = self.fs.file_len(&path).unwrap_or(0);
                    total += if &path == active {
                        len.min(self.file_len)
                    } else {
                        len
                    };
                }
            }
        }
        total
    }

    /// Bytes appended since the last checkpoint (or since opening).
    pub fn bytes_since_checkpoint(&self) -> u64 {
        self.bytes_since_checkpoint
    }

    /// Bytes appended and not yet handed to a sync job.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &SegmentMeta {
        // `open` always leaves at least one segment, and only `take_obsolete`
        // removes any, never the last.
        &self.segments[self.segments.len() - 1]
    }

    /// Starts a new segment; its directory entry is durable before it is used.
    ///
    /// Appends may be pending (made while a sync job ran, rolled from
    /// `finish_sync`): they are not in any file yet and go to the new
    /// segment. What must hold is that no job is writing into the segment
    /// being closed, and that everything written to it is durable.
    fn roll(&mut self) -> Result<(), StorageError> {
        debug_assert!(!self.syncing, "roll while a sync job writes the segment");
        debug_assert!(self.file_len <= self.allocated);
        let active = self.active();
        let (meta, file) = close_and_create(
            &*self.fs,
            &self.wal_dir,
            &*self.file,
            &active.path,
            self.file_len,
            active.index + 1,
            self.salt.0,
        )?;
        self.enter_segment(meta, file, segment::HEADER_BYTES as u64);
        Ok(())
    }

    /// Makes `file` (just created, its data ending at `end`) the active
    /// segment.
    fn enter_segment(&mut self, meta: SegmentMeta, file: Arc<dyn FsFile>, end: u64) {
        self.segments.push(meta);
        self.file = file;
        self.file_len = end;
        self.allocated = end;
        self.fill_warned = false;
    }

    /// Takes the oldest segments whose every group has a later checkpoint
    /// off the list (the caller deletes the files). Only a prefix goes, so
    /// the remaining indexes stay contiguous.
    fn take_obsolete(&mut self) -> Vec<PathBuf> {
        // Removals run one at a time (the runtime starts a checkpoint only
        // once the last one's removal reported), so what one left stuck is
        // here before the next is handed out, and older than all of it.
        let mut obsolete = std::mem::take(
            &mut *self
                .stuck
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let superseded = oldest.groups.iter().all(|g| {
                self.checkpoints
                    .get(g)
                    .is_some_and(|index| *index > oldest.index)
            });
            if !superseded {
                break;
            }
            obsolete.push(self.segments.remove(0).path);
        }
        obsolete
    }

    /// Frames `records` into the pending batch, all or nothing: an
    /// oversized record leaves nothing of the call appended.
    fn frame_records(&mut self, records: &[Record]) -> Result<(), StorageError> {
        let framed = frame_into(
            &mut self.pending,
            Seal::salted(self.salt.0),
            records,
            |_| {},
        );
        match framed {
            Ok(()) => self
                .pending_groups
                .extend(records.iter().map(|record| record.group())),
            Err(_) => {
                // The refused record was written into `pending` before it
                // was cut back out: do not keep what it grew for the
                // node's life (the frames before this call are copied).
                const SPARE_KEPT_BYTES_MAX: usize = 1 << 20;
                if self.pending.capacity() - self.pending.len() > SPARE_KEPT_BYTES_MAX {
                    self.pending = BytesMut::from(&self.pending[..]);
                }
            }
        }
        framed
    }
}

impl Storage for Wal {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let before = self.pending.len();
        self.frame_records(records)?;
        self.bytes_since_checkpoint += (self.pending.len() - before) as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        match self.begin_sync()? {
            None => Ok(()),
            Some(job) => {
                let result = job.run();
                self.finish_sync(job, result)
            }
        }
    }

    fn checkpoint(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
        records: &[Record],
    ) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let written = self.write_snapshot(group, snapshot);
        self.fatal(written)?;
        let removed = self
            .checkpoint_written(group, snapshot.meta, records)?
            .remove();
        self.fatal(removed)
    }
}

/// Segments and snapshot files a checkpoint superseded, to delete with
/// [`Obsolete::remove`], which may run on any thread and at any later time:
/// until they are gone, recovery reads them and skips them.
#[derive(Debug)]
#[must_use = "superseded files stay on disk until removed"]
pub struct Obsolete {
    fs: Arc<dyn Fs>,
    wal_dir: PathBuf,
    segments: Vec<PathBuf>,
    snap_dir: PathBuf,
    /// The group and point of the checkpoint whose older snapshot files go;
    /// `None` where only the trash is emptied (`Wal::trash_removal`).
    keep: Option<(GroupId, InstanceId)>,
    stop: Arc<AtomicBool>,
    /// The log's list of segments left stuck (`Wal::stuck`).
    stuck: Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Obsolete {
    /// Deletes the superseded segments and snapshot files: each is first
    /// renamed into the trash, then cut a few MiB at a time and unlinked,
    /// so that freeing a large file does not hold up the log's syncs on a
    /// disk that trims what is freed (see `trash.rs`). The segments go to
    /// the trash oldest first, so the remaining indexes stay contiguous
    /// after a crash part-way (names change in order), and the first that
    /// can be neither renamed nor unlinked stops them (a later one gone
    /// would leave a gap): it and the ones after it go back to the log, to
    /// be removed first by the next checkpoint's removal. Also finishes
    /// what an earlier removal left in the trash. Goes on past an error
    /// where it can, and returns the first.
    pub fn remove(self) -> Result<(), StorageError> {
        let mut first_error = None;
        let mut changed = false;
        for (k, path) in self.segments.iter().enumerate() {
            match trash::trash_or_remove(&*self.fs, path) {
                Ok(()) => changed = true,
                Err(e) => {
                    first_error = Some(e);
                    let mut stuck = self
                        .stuck
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    stuck.extend_from_slice(&self.segments[k..]);
                    break;
                }
            }
        }
        let mut note = |result: Result<(), StorageError>| {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        };
        if changed {
            note(fsync_dir(&*self.fs, &self.wal_dir));
        }
        if let Some((group, keep)) = self.keep {
            note(snapshot_file::trash_older_on(
                &*self.fs,
                &self.snap_dir,
                group,
                keep,
            ));
        }
        for dir in [&self.wal_dir, &self.snap_dir] {
            note(trash::empty_trash(&*self.fs, dir, &self.stop));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether it only empties the trash ([`Wal::trash_removal`]).
    pub fn is_trash_only(&self) -> bool {
        self.keep.is_none()
    }

    /// A flag that stops [`Obsolete::remove`] between two cuts once set
    /// (for a node that stops: no file of its directory changes after
    /// that); what it left stays in the trash, removed when the log opens
    /// again.
    pub fn stopper(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }
}

impl Wal {
    /// Where snapshot files go (to write one off the event loop with
    /// [`snapshot_file::write_on`] on [`Wal::fs`], as [`Wal::write_snapshot`]
    /// does).
    pub fn snap_dir(&self) -> &Path {
        &self.snap_dir
    }

    /// A removal that only empties the trash of the log's directories,
    /// superseding nothing: for a peer's snapshot transfer dropped part-way
    /// ([`snapshot_file::FileSpool`] moves it there), whose space a retry
    /// of the transfer needs back before the next checkpoint. Run it off
    /// the event loop, as a checkpoint's removal.
    pub fn trash_removal(&self) -> Obsolete {
        Obsolete {
            fs: Arc::clone(&self.fs),
            wal_dir: self.wal_dir.clone(),
            segments: Vec::new(),
            snap_dir: self.snap_dir.clone(),
            keep: None,
            stop: Arc::new(AtomicBool::new(false)),
            stuck: Arc::clone(&self.stuck),
        }
    }

    /// A checkpoint in three steps, so that the slow ones need not stop
    /// appends (the runtime runs each on another thread):
    /// 1. this: write the snapshot file durably (`snapshot_file::write_on`
    ///    with [`Wal::fs`] into [`Wal::snap_dir`] is the same, without
    ///    `&self`);
    /// 2. [`Wal::begin_checkpoint`] (a sync job, then [`Wal::finish_sync`]),
    ///    or [`Wal::checkpoint_written`] on the caller's thread: the marker,
    ///    the live records and the checkpoint end;
    /// 3. [`Obsolete::remove`]: delete what it superseded.
    pub fn write_snapshot(&self, group: GroupId, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        snapshot_file::write_on(&*self.fs, &self.snap_dir, group, snapshot).map(|_| ())
    }

    /// Writes a checkpoint of `group` at `meta` (its snapshot file already
    /// durable) on the caller's thread: [`Wal::begin_checkpoint`], the job
    /// run at once, [`Wal::finish_sync`]. Returns what it superseded.
    pub fn checkpoint_written(
        &mut self,
        group: GroupId,
        meta: SnapshotMeta,
        records: &[Record],
    ) -> Result<Obsolete, StorageError> {
        let job = self.begin_checkpoint(group, meta, records.to_vec())?;
        let result = job.run();
        self.finish_sync(job, result)?;
        self.take_checkpointed().ok_or_else(|| {
            StorageError::io(
                &self.wal_dir,
                std::io::Error::other("a checkpoint job finished without its checkpoint"),
            )
        })
    }

    /// Starts a checkpoint of `group` at `meta` (its snapshot file already
    /// durable) as a sync job to run off the caller's thread: everything
    /// appended so far, then, in a fresh segment, one batch of the
    /// checkpoint marker, `records` (the group's live state, taken when
    /// nothing the core handed out is still unappended) and the checkpoint
    /// end. Appends made while it runs stay pending and follow the end
    /// frame. [`Wal::finish_sync`] makes the checkpoint count;
    /// [`Wal::take_checkpointed`] then hands out what it superseded.
    ///
    /// Safety: the marker (which names the snapshot) is written only after
    /// the snapshot file is durable and after everything appended before it
    /// (so an unfinished checkpoint can be ignored on recovery without
    /// losing anything, see `recovery.rs`); recovery honours it only with
    /// its end frame, which is written after the records in the same batch;
    /// and the superseded segments and snapshot files are handed out for
    /// deletion only after that end frame is durable. A crash at any point
    /// therefore recovers either this checkpoint whole or the state before
    /// it.
    pub fn begin_checkpoint(
        &mut self,
        group: GroupId,
        meta: SnapshotMeta,
        records: Vec<Record>,
    ) -> Result<SyncJob, StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if self.syncing {
            return Err(StorageError::io(
                &self.wal_dir,
                std::io::Error::other("checkpoint while a sync is running"),
            ));
        }
        if records.iter().any(|r| r.group() != group) {
            return Err(StorageError::io(
                &self.wal_dir,
                std::io::Error::other("checkpoint records must belong to the checkpointed group"),
            ));
        }
        let mut job = self.take_pending();
        // The segment is cut to its data and closed right after: zeros
        // written after this write would only be cut off again.
        job.fill = None;
        let active = self.active();
        job.checkpoint = Some(Box::new(CheckpointStep {
            fs: Arc::clone(&self.fs),
            wal_dir: self.wal_dir.clone(),
            group,
            cut_to: self.file_len,
            index: active.index + 1,
            salt: self.salt,
            meta,
            records: std::sync::Mutex::new(records),
            chunk: self.opts.preallocate_bytes,
            segment_max: self.opts.segment_bytes_max,
            fill_error: std::sync::OnceLock::new(),
            created: std::sync::Mutex::new(None),
        }));
        self.syncing = true;
        // What is appended from now on follows this checkpoint.
        self.bytes_since_checkpoint = 0;
        Ok(job)
    }
}

/// A log's salt (`segment::Format::salt`), never printed.
#[derive(Clone, Copy)]
struct Salt(u64);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// A salt from the operating system's random source (see
/// `segment::Format::salt`).
fn draw_salt(wal_dir: &Path) -> Result<u64, StorageError> {
    let mut salt = [0u8; 8];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut salt).map_err(|e| {
        StorageError::io(
            wal_dir,
            std::io::Error::other(format!("cannot draw the log's salt: {e}")),
        )
    })?;
    Ok(u64::from_le_bytes(salt))
}

/// Closes the segment `file` (at `path`), whose data ends at `len`, and
/// creates the next one, `index`. Only the newest segment may end in zeros
/// (recovery refuses a closed segment that does not end on a frame): the
/// closed one is cut to its data, durably, before the next one exists, by
/// its real size (a fill may have failed part way).
fn close_and_create(
    fs: &dyn Fs,
    wal_dir: &Path,
    file: &dyn FsFile,
    path: &Path,
    len: u64,
    index: u64,
    salt: u64,
) -> Result<(SegmentMeta, Arc<dyn FsFile>), StorageError> {
    let size = file.size().map_err(|e| StorageError::io(path, e))?;
    if size > len {
        file.set_len(len).map_err(|e| StorageError::io(path, e))?;
        file.sync_all().map_err(|e| StorageError::SyncFailed {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    create_segment(fs, wal_dir, index, salt)
}

fn create_segment(
    fs: &dyn Fs,
    wal_dir: &Path,
    index: u64,
    salt: u64,
) -> Result<(SegmentMeta, Arc<dyn FsFile>), StorageError> {
    let path = wal_dir.join(segment::file_name(index));
    let file = fs
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| StorageError::io(&path, e))?;
    file.write_all_at(&segment::header(index, salt), 0)
        .map_err(|e| StorageError::io(&path, e))?;
    file.sync_data().map_err(|e| StorageError::SyncFailed {
        path: path.clone(),
        source: e,
    })?;
    fsync_dir(fs, wal_dir)?;
    // Only once the segment is durable (see `newest.rs`).
    newest::write(fs, wal_dir, index)?;
    Ok((
        SegmentMeta {
            index,
            path,
            groups: BTreeSet::new(),
        },
        file,
    ))
}

#[cfg(test)]
mod removal_tests {
    use super::*;
    use crate::trash::tests::{put, Refusing};
    use crate::SimFs;

    fn obsolete(fs: &Arc<dyn Fs>, wal_dir: &Path, segments: Vec<PathBuf>) -> Obsolete {
        Obsolete {
            fs: Arc::clone(fs),
            wal_dir: wal_dir.to_path_buf(),
            segments,
            snap_dir: wal_dir.with_file_name("snap"),
            keep: Some((GroupId(0), InstanceId(0))),
            stop: Arc::new(AtomicBool::new(false)),
            stuck: Arc::default(),
        }
    }

    /// The first segment that can be neither renamed nor unlinked stops the
    /// later ones (a gap otherwise) and goes back to the log with them; one
    /// whose rename fails but whose unlink works does not.
    #[test]
    fn a_stuck_segment_keeps_the_later_ones_and_a_refused_rename_does_not() {
        for (stuck, want) in [(true, vec![2u64, 3, 4]), (false, vec![4])] {
            let sim = SimFs::default();
            let wal_dir = Path::new("/n/wal");
            for d in [wal_dir, Path::new("/n/snap")] {
                sim.create_dir_all(d).expect("dir");
            }
            let fs: Arc<dyn Fs> = Arc::new(Refusing {
                inner: sim.clone(),
                refuse: "00000000000000000002.wal",
                stuck,
                stop_at_cut: None,
            });
            let mut segments = Vec::new();
            for k in 1..=4u64 {
                let path = wal_dir.join(segment::file_name(k));
                put(&sim, &path, 5000);
                if k < 4 {
                    segments.push(path);
                }
            }
            let removal = obsolete(&fs, wal_dir, segments.clone());
            let handed_back = Arc::clone(&removal.stuck);
            assert_eq!(removal.remove().is_err(), stuck);
            let names = sim.read_dir(wal_dir).expect("list");
            let mut left: Vec<u64> = names
                .iter()
                .filter_map(|n| segment::parse_name(n))
                .collect();
            left.sort_unstable();
            assert_eq!(left, want, "stuck {stuck}");
            assert!(names.iter().all(|n| !trash::is_trash(n)), "{names:?}");
            let back = handed_back.lock().expect("lock").clone();
            assert_eq!(
                back,
                if stuck {
                    segments[1..].to_vec()
                } else {
                    vec![]
                }
            );
        }
    }

    /// A segment no removal can delete is retried by every later one, which
    /// then stops there: the later checkpoints leave no gap, and the log
    /// still opens. (Before, the log forgot it, the next removal deleted
    /// the segments after it, and the log refused to open.)
    #[test]
    fn a_segment_left_stuck_leaves_no_gap_for_later_checkpoints() {
        use synod_core::{Ballot, Checksum, Membership, NodeId, Schedule, Value};
        let sim = SimFs::default();
        let fs: Arc<dyn Fs> = Arc::new(Refusing {
            inner: sim.clone(),
            refuse: "00000000000000000001.wal",
            stuck: true,
            stop_at_cut: None,
        });
        let dir = Path::new("/n");
        let record = |i: u64| Record::Accept {
            group: GroupId(0),
            instance: InstanceId(i),
            ballot: Ballot {
                round: 1,
                node: NodeId(1),
            },
            value: Value::batch(vec![Bytes::from(format!("command {i}"))]),
        };
        let snapshot = |at: u64| Snapshot {
            memberships: Some(Schedule::new(
                InstanceId(0),
                Membership::bootstrap(&[NodeId(1), NodeId(2)]),
            )),
            meta: SnapshotMeta {
                applied_end: InstanceId(at),
                checksum: Checksum(at * 31 + 7),
            },
            data: Bytes::from_static(b"state"),
        };
        let (mut wal, _) = Wal::open_on(Arc::clone(&fs), dir, WalOptions::default()).expect("open");
        for at in [10u64, 20, 30] {
            wal.append(&[record(at - 5)]).expect("append");
            wal.sync().expect("sync");
            let s = snapshot(at);
            wal.write_snapshot(GroupId(0), &s).expect("snapshot");
            let job = wal
                .begin_checkpoint(GroupId(0), s.meta, vec![record(at)])
                .expect("begin");
            let result = job.run();
            wal.finish_sync(job, result).expect("marked");
            let removal = wal.take_checkpointed().expect("obsolete");
            // The runtime only logs this (`Engine::cleaned`).
            assert!(removal.remove().is_err(), "segment 1 is stuck");
        }
        drop(wal);
        let names = sim.read_dir(&dir.join("wal")).expect("list");
        let reopened = Wal::open_on(Arc::clone(&fs), dir, WalOptions::default());
        assert!(reopened.is_ok(), "{names:?}: {:?}", reopened.err());
    }

    /// A snapshot file that can be neither cut nor unlinked does not keep
    /// the segments of this checkpoint or later ones on disk.
    #[test]
    fn a_stuck_snapshot_file_keeps_no_segment_on_disk() {
        let sim = SimFs::default();
        let root = Path::new("/n");
        let wal_dir = root.join("wal");
        let snap_dir = root.join("snap");
        for d in [root, &wal_dir, &snap_dir] {
            sim.create_dir_all(d).expect("dir");
        }
        let fs: Arc<dyn Fs> = Arc::new(Refusing {
            inner: sim.clone(),
            refuse: ".snap.deleting",
            stuck: true,
            stop_at_cut: None,
        });
        put(
            &sim,
            &snap_dir.join(snapshot_file::file_name(GroupId(0), InstanceId(5))),
            1000,
        );
        for (k, keep) in [(1u64, 10u64), (2, 20), (3, 30)] {
            let segment = wal_dir.join(segment::file_name(k));
            put(&sim, &segment, 100_000);
            let obsolete = Obsolete {
                fs: Arc::clone(&fs),
                wal_dir: wal_dir.clone(),
                segments: vec![segment],
                snap_dir: snap_dir.clone(),
                keep: Some((GroupId(0), InstanceId(keep))),
                stop: Arc::new(AtomicBool::new(false)),
                stuck: Arc::default(),
            };
            assert!(obsolete.remove().is_err(), "the stuck file is reported");
        }
        let left = sim.read_dir(&wal_dir).expect("list");
        assert!(left.is_empty(), "segments kept: {left:?}");
    }
}
