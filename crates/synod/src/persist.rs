//! When the log is written, synced and checkpointed: the runtime's storage
//! decisions as a sans-I/O layer. The node's event loop (`driver.rs`) and the
//! deterministic simulator (`synod-sim`) both drive this same code; only the
//! slow I/O ([`Io`]) is carried out by the caller, on another thread or at a
//! later simulated time, and reported back.
//!
//! The decisions, and why they are safe:
//!
//! 1. **Append at once, sync lazily.** Records from the core's `Ready` are
//!    appended (to memory) when taken. A sync (one write + one `fdatasync`
//!    for everything appended since the last) starts at once only when the
//!    core holds messages back for durability (`Replica::awaits_durability`);
//!    otherwise once `LAZY_SYNC_TICKS` ticks passed since the last sync
//!    started, or `LAZY_SYNC_BYTES` wait. Syncing later is always safe:
//!    every message whose safety depends on a record waits for it, and the
//!    core says so.
//!    Chosen marks, which nothing waits for, would otherwise cost a second
//!    fsync per command. A leader's vote for its own proposal waits without
//!    asking for a sync while the followers choose without it (see
//!    `synod_core::Config::lazy_self_sync`): a leader then syncs once per
//!    `LAZY_SYNC_TICKS`, not once per batch.
//! 2. **The core hears of durability only after the fsync returned**
//!    (`Replica::persisted` with the position the job covered). An fsync
//!    error is fatal and never retried (the page cache can no longer be
//!    trusted).
//! 3. **A checkpoint runs in three steps** so that the slow ones do not stop
//!    appends: (a) the snapshot file is written durably off the loop; (b) once
//!    no sync runs and every record the core handed out is appended, the
//!    replica is compacted to the snapshot (only our own) and its checkpoint
//!    records are taken, on the loop; a marker job (`Wal::begin_checkpoint`,
//!    handed out as the one sync job, off the loop) makes what was appended
//!    before durable, cuts the segment, and writes the marker, the records
//!    and the end frame durably in a fresh one; when it returns, the core is
//!    told that everything appended before it is durable, and the
//!    checkpoint counts; (c) superseded files are deleted off the loop. Step
//!    (b) never starts between a `persisted` call and the next `Ready` being
//!    taken: records handed out before the checkpoint's records were taken
//!    but appended after them would be replayed on top of it. Records
//!    appended while the marker job runs follow its end frame in the log, as
//!    they would had it run at once; none is synced before it ends (one job
//!    at a time), and the core waits for them as for any slow sync.
//! 4. **The state machine's snapshot is encoded in step (a), off the loop**,
//!    when the state machine offers a view (`StateMachine::snapshot_view`):
//!    the view is taken on the loop at `applied_end` ([`Persister::snapshot_deferred`])
//!    and encoded by [`SnapshotWrite::run`] before the file is written. Nothing
//!    reads the snapshot's bytes before step (b), which runs only after step
//!    (a) reported back, so compaction and catch-up always see them encoded.
//! 5. **A peer's snapshot replaces a checkpoint in progress:** a checkpoint of
//!    the state before an install is dropped at step (b); its file goes with
//!    the next checkpoint's cleanup. One whose marker job is already out
//!    completes (as if the install had come right after it, as during step
//!    (c)): the records appended after the install follow its end frame,
//!    and the install's own checkpoint comes next.
//! 6. **A peer's snapshot arrives into a file and is sealed there.** The
//!    replica's spool ([`Persister::spool`]) writes the pieces, unsynced, to
//!    an incoming file laid out as a snapshot file. Step (a) of the install's
//!    checkpoint writes its header and trailer, fsyncs it and renames it into
//!    place: no second copy on disk, and the mapping the replica serves
//!    stays that same file. Until the rename the file is nobody's: a crash
//!    leaves a stray that the next start removes; a transfer dropped
//!    part-way goes to the trash, emptied at once off the loop, a step at a
//!    time, by a removal of its own. It runs beside a checkpoint's steps
//!    (a) and (b), never beside a step (c), which waits for it: at most one
//!    removal is out, so `cleaned` always knows which reported. A failure
//!    of the spool's
//!    I/O stops the node ([`Persister::spool_failed`]), as a failed log write
//!    does: a node whose disk fails while a snapshot arrives must not download
//!    it again and again without ever catching up.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use synod_core::{
    GroupId, InstanceId, PersistSeq, Record, Replica, Schedule, Snapshot, SnapshotMeta,
};
use synod_storage::fs::Fs;
use synod_storage::{
    snapshot_file, LogRead, Obsolete, SnapshotPolicy, Storage, StorageError, SyncJob, Wal,
    WriteRate,
};
use tracing::warn;

/// Records nothing waits for (chosen marks, a leader's own votes while the
/// followers choose without them) are synced at the latest this many ticks
/// (50 ms at the default 10 ms tick) after the last sync started (rule 1).
/// Only when nothing else syncs them first: a follower under load syncs
/// each accept batch at once anyway.
/// Once a tick (1), a leader's lazy syncs shared the one disk of the
/// 2-core machine with every follower fsync a lone client waits for: at 5,
/// `bench/ab-cpu.sh` alternated (9 pairs, each won by 5) measured SET at one
/// client 1,160 -> 1,410 per second (+22%) and 626 -> 536 µs CPU per request
/// over the three nodes (-14%);
/// at 50 clients the change was within the noise (9 pairs). A held vote
/// still waits at most two ticks when a follower falls silent (the core
/// asks for a sync then), and at most `window_instances_max` wait.
const LAZY_SYNC_TICKS: u64 = 5;

/// ... or sooner, once this many bytes of them wait in memory: a follower
/// catching up while nothing else syncs appends the values it learns as
/// records nothing waits for, up to a catch-up reply at a time, and they
/// must neither pile up for `LAZY_SYNC_TICKS` nor go to disk in one long
/// write and fsync (found by review). Above what 50 clients' SETs append
/// in 5 ticks (~0.2 MiB on the 2-core machine).
const LAZY_SYNC_BYTES: usize = 1 << 20;

/// A checkpoint whose snapshot file is being written (step a).
#[derive(Debug)]
pub struct PendingCheckpoint {
    /// The snapshot to write.
    pub snapshot: Snapshot,
    /// Our own snapshot (the replica is compacted to it), not a peer's.
    own: bool,
    /// `Persister::installs` when it started.
    installs: u64,
    /// The digest of the snapshot's bytes, once step (a) wrote them.
    digest: Option<synod_core::SnapshotDigest>,
}

impl PendingCheckpoint {
    /// Whether this is our own snapshot (not a peer's being installed).
    pub fn is_own(&self) -> bool {
        self.own
    }
}

/// Encodes a snapshot's bytes: run by [`SnapshotWrite::run`], off the loop.
pub struct SnapshotEncoder(Encoding);

/// How a [`SnapshotEncoder`] produces the bytes.
enum Encoding {
    /// All at once, on the heap.
    Whole(Box<dyn FnOnce() -> Bytes + Send>),
    /// Piece by piece, into the snapshot file.
    Stream(crate::SnapshotStream),
}

impl SnapshotEncoder {
    /// Wraps an encoding job that returns the whole snapshot.
    pub fn new(encode: impl FnOnce() -> Bytes + Send + 'static) -> Self {
        SnapshotEncoder(Encoding::Whole(Box::new(encode)))
    }

    /// Wraps a job that writes the snapshot to the file as it encodes it.
    pub fn stream(
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
    ) -> Self {
        SnapshotEncoder(Encoding::Stream(Box::new(write)))
    }
}

impl std::fmt::Debug for SnapshotEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Encoding::Whole(_) => "SnapshotEncoder::Whole",
            Encoding::Stream(_) => "SnapshotEncoder::Stream",
        })
    }
}

/// Slow I/O for the caller to carry out, off the event loop, and report back.
#[derive(Debug)]
pub enum Io {
    /// Step (a) of a checkpoint: [`SnapshotWrite::run`], then call
    /// [`Persister::snapshot_written`] with its checkpoint.
    WriteSnapshot(SnapshotWrite),
    /// Run the job (`SyncJob::run`: one positional write and one
    /// `fdatasync`; for a checkpoint's marker, `SyncJob::is_checkpoint`,
    /// then a new segment and its marker batch, synced), then call
    /// [`Persister::sync_done`] with `through`.
    Sync {
        /// The write.
        job: SyncJob,
        /// What it makes durable, for the core.
        through: PersistSeq,
    },
    /// Step (c): delete what a checkpoint superseded (`Obsolete::remove`),
    /// then call [`Persister::cleaned`].
    Remove(Obsolete),
    /// Read chosen values a peer needs back from the log (`LogRead::run`),
    /// then call [`crate::engine::Engine::log_read_done`]. Reads only: it may run
    /// beside any other job.
    ReadLog(LogRead),
}

/// Step (a)'s write: the snapshot file, through the log's own file system
/// (the server's disk, or the simulator's).
#[derive(Debug)]
pub struct SnapshotWrite {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    group: GroupId,
    /// Fills `checkpoint.snapshot.data` first, when the snapshot was taken
    /// as a view (rule 4).
    encode: Option<SnapshotEncoder>,
    /// The incoming file that holds this (installed) snapshot: sealed in
    /// place instead of written again (rule 6).
    seal: Option<snapshot_file::Received>,
    /// The cap on the file's write rate (lifted at a stop, or once the
    /// write is overdue: [`Persister::hurry_overdue_write`]). A sealed
    /// peer's snapshot is not capped: its pieces reached the page cache
    /// unpaced as they arrived, and the kernel writes them back at its own
    /// pace; a cap on the seal would only delay the install's checkpoint.
    rate: WriteRate,
    /// What to write; hand it back to [`Persister::snapshot_written`].
    pub checkpoint: PendingCheckpoint,
}

impl SnapshotWrite {
    /// Whether its cap is lifted (a stop, or the write overdue): for the
    /// simulator, which models how long a capped write lasts.
    pub fn rate_lifted(&self) -> bool {
        self.rate.is_lifted()
    }

    /// Encodes the snapshot if it was taken as a view (streaming it into
    /// the file when the encoder writes), then writes the snapshot file
    /// durably (temp file, fsync, rename, directory fsync), hashing it on
    /// the way. Slow: run it off the event loop.
    pub fn run(&mut self) -> Result<(), StorageError> {
        if let Some(received) = self.seal.take() {
            // A peer's snapshot received into a file laid out as a snapshot
            // file: made durable in place. Its bytes (a mapping of that same
            // file, or a copy read back) are what the replica installed.
            snapshot_file::seal_incoming_on(
                &*self.fs,
                &self.dir,
                self.group,
                &received,
                self.checkpoint.snapshot.memberships.as_ref(),
                &WriteRate::unlimited(),
            )?;
            return Ok(());
        }
        let snapshot = &mut self.checkpoint.snapshot;
        let stream = match self.encode.take().map(|e| e.0) {
            Some(Encoding::Whole(encode)) => {
                debug_assert!(snapshot.data.is_empty());
                snapshot.data = encode();
                None
            }
            Some(Encoding::Stream(write)) => {
                debug_assert!(snapshot.data.is_empty());
                Some(write)
            }
            None => None,
        };
        let streamed = stream.is_some();
        let written = snapshot_file::write_stream_on(
            &*self.fs,
            &self.dir,
            self.group,
            snapshot.meta,
            snapshot.memberships.as_ref(),
            &self.rate,
            |out| match stream {
                Some(write) => write(out),
                None => out.write_all(&snapshot.data),
            },
        )?;
        self.checkpoint.digest = Some(written.digest);
        // The core keeps this snapshot to send to lagging peers until the
        // next one: from the file (page cache, reclaimable) rather than the
        // encoded copy on the heap, which would be a second copy of the
        // whole state. Not mapping costs memory, never safety: keep the
        // bytes (a streamed snapshot has none in memory: read them back).
        let len = usize::try_from(written.len).map_err(|_| StorageError::Io {
            path: written.path.clone(),
            source: std::io::Error::other("a snapshot larger than the address space"),
        })?;
        if streamed {
            snapshot.data = snapshot_file::read_data_on(&*self.fs, &written.path, len)?;
            return Ok(());
        }
        match snapshot_file::map_data_on(&*self.fs, &written.path, len) {
            Ok(Some(mapped)) => snapshot.data = mapped,
            Ok(None) => {}
            Err(err) => tracing::warn!("keeping the snapshot in memory: cannot map it: {err}"),
        }
        Ok(())
    }
}

/// A checkpoint marker was written (step b), for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpointed {
    /// The snapshot's point and checksum.
    pub meta: SnapshotMeta,
    /// Bytes of the snapshot.
    pub bytes: usize,
    /// Records written after the marker.
    pub records: usize,
}

/// What [`Persister::kick`] started or did.
#[derive(Debug, Default)]
pub struct Kicked {
    /// I/O to carry out.
    pub io: Vec<Io>,
    /// A checkpoint whose marker job ended (durably) since the last call.
    pub checkpointed: Option<Checkpointed>,
}

/// The runtime's storage decisions for one group (see the module docs).
#[derive(Debug)]
pub struct Persister {
    group: GroupId,
    wal: Wal,
    policy: SnapshotPolicy,
    /// The cap on the snapshot file being written (step a), shared with
    /// its writer, if one is out; and the log's `bytes_since_checkpoint`
    /// when it started.
    writing_rate: Option<(WriteRate, u64)>,
    /// A stop lifted the caps: later writes are not capped either.
    rate_lifted: bool,
    /// A peer waits for a snapshot: the next write is not capped.
    next_uncapped: bool,
    /// Everything handed to `wal.append` so far is covered by this.
    appended_through: PersistSeq,
    /// A sync job is out.
    syncing: bool,
    /// What the replica's spool reports: the file of the latest snapshot
    /// it received whole, and its first failure.
    spool_report: Arc<std::sync::Mutex<snapshot_file::SpoolReport>>,
    /// A removal that only empties the trash (a dropped transfer's) is out.
    /// It runs beside a checkpoint's steps (a) and (b), never beside a step
    /// (c) (which empties the trash too): at most one removal is out.
    trash_removal_out: bool,
    /// A checkpoint's step (c), durable and reported, waiting for the trash
    /// removal out to end.
    removal_waiting: Option<Obsolete>,
    /// A snapshot to checkpoint; `true` when it is our own. Its bytes are
    /// still to be encoded when the encoder is set.
    checkpoint_due: Option<(Snapshot, bool, Option<SnapshotEncoder>)>,
    /// A checkpoint is in progress (step a or c out, step b due, or step
    /// b's marker job out): no other starts.
    checkpoint_busy: bool,
    /// Step a is done: step b runs when no sync is out.
    checkpoint_ready: Option<PendingCheckpoint>,
    /// Step b's marker job is out (as the sync job): what it checkpoints.
    marking: Option<Checkpointed>,
    /// Step b's marker is durable: reported, and step c started, by the
    /// next `kick`.
    marked: Option<(Checkpointed, Obsolete)>,
    /// The point of the checkpoint whose snapshot file is being written
    /// (step a), if any.
    checkpoint_writing: Option<InstanceId>,
    /// Snapshots installed from peers so far.
    installs: u64,
    ticks: u64,
    /// `ticks` when the last sync started: records nothing waits for are
    /// synced at the latest [`LAZY_SYNC_TICKS`] later.
    sync_started_tick: u64,
    /// The point of the latest checkpoint.
    snapshot_end: InstanceId,
    /// The running checkpoint is durable and only deletes what it
    /// superseded (step c).
    cleaning: bool,
    /// A snapshot was asked for ([`Persister::ask_snapshot`]) that must
    /// cover at least this applied point, whatever the policy says.
    snapshot_asked: Option<InstanceId>,
    /// A peer needs a whole snapshot and the latest checkpoint holds only
    /// the session table (its state machine keeps its state on its own
    /// disk): the next checkpoint must hold the state, even at the point of
    /// the latest one.
    whole_asked: bool,
}

impl Persister {
    /// Takes over an open log whose latest checkpoint is at `snapshot_end`.
    pub fn new(group: GroupId, wal: Wal, policy: SnapshotPolicy, snapshot_end: InstanceId) -> Self {
        Persister {
            group,
            wal,
            policy,
            writing_rate: None,
            rate_lifted: false,
            next_uncapped: false,
            appended_through: PersistSeq(0),
            syncing: false,
            spool_report: Arc::default(),
            trash_removal_out: false,
            removal_waiting: None,
            checkpoint_due: None,
            checkpoint_busy: false,
            checkpoint_ready: None,
            marking: None,
            marked: None,
            checkpoint_writing: None,
            installs: 0,
            ticks: 0,
            sync_started_tick: 0,
            snapshot_end,
            snapshot_asked: None,
            whole_asked: false,
            cleaning: false,
        }
    }

    /// A spool that receives peers' snapshots into the log's snapshot
    /// directory (see [`snapshot_file::FileSpool`]), reporting to this
    /// persister (rule 6).
    pub fn spool(&self) -> Box<dyn synod_core::SnapshotSpool> {
        Box::new(snapshot_file::FileSpool::open(
            self.wal.fs(),
            self.wal.snap_dir().to_path_buf(),
            self.group,
            Arc::clone(&self.spool_report),
        ))
    }

    /// The spool's first I/O failure, if any: fatal, like a failed log
    /// write (rule 6). Check after every input the replica took.
    pub fn spool_failed(&self) -> Result<(), StorageError> {
        let failed = self
            .spool_report
            .lock()
            .ok()
            .and_then(|mut report| report.failed.take());
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Whether the spool dropped a transfer into the trash since the last
    /// call ([`snapshot_file::SpoolReport::dropped`]).
    fn take_dropped_transfer(&mut self) -> bool {
        self.spool_report
            .lock()
            .map(|mut report| std::mem::take(&mut report.dropped))
            .unwrap_or(false)
    }

    /// The incoming file the spool received `snapshot` into, if it still
    /// holds it: the same point and length.
    fn received_file(&self, snapshot: &Snapshot) -> Option<snapshot_file::Received> {
        let mut report = self.spool_report.lock().ok()?;
        let received = report.received.take()?;
        (received.meta == snapshot.meta && received.len == snapshot.data.len() as u64)
            .then_some(received)
    }

    /// Appends the records of a `Ready` (not yet durable).
    pub fn append(&mut self, records: &[Record], through: PersistSeq) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        self.wal.append(records)?;
        self.appended_through = through;
        Ok(())
    }

    /// One timer tick passed.
    pub fn tick(&mut self) {
        self.ticks += 1;
    }

    /// The point of the latest durable checkpoint.
    pub fn snapshot_end(&self) -> InstanceId {
        self.snapshot_end
    }

    /// True when the state machine should be snapshotted now, at
    /// `applied_end` (by the policy, and no checkpoint is due or running).
    pub fn snapshot_wanted(&self, applied_end: InstanceId) -> bool {
        if self.checkpoint_due.is_some() || self.checkpoint_busy || applied_end < self.snapshot_end
        {
            return false;
        }
        if self.whole_asked {
            return true;
        }
        if applied_end == self.snapshot_end {
            return false;
        }
        if self.snapshot_asked.is_some() {
            return true;
        }
        self.policy.due(
            applied_end.0 - self.snapshot_end.0,
            self.wal.bytes_since_checkpoint(),
        )
    }

    /// Asks for a checkpoint covering at least `through` (an applied point)
    /// now, whatever the policy says: the next [`Persister::snapshot_wanted`]
    /// answers true (once no checkpoint is in progress). `false` when the
    /// latest checkpoint already covers it (nothing to do).
    pub fn ask_snapshot(&mut self, through: InstanceId) -> bool {
        if through <= self.snapshot_end {
            return false;
        }
        self.snapshot_asked = Some(
            self.snapshot_asked
                .map_or(through, |asked| asked.max(through)),
        );
        self.peer_waits();
        true
    }

    /// A peer waits for a snapshot (asked for here, or covered by the
    /// checkpoint in progress): the snapshot file being written, which
    /// covers the need or must end before the one that does, and the next
    /// one are written at full speed. A cap there would hold the peer, and
    /// with it perhaps the whole cluster, for the state's size over the
    /// cap, with nothing chosen meanwhile to make the write overdue (seed
    /// 890431).
    pub fn peer_waits(&mut self) {
        self.next_uncapped = true;
        self.lift_write_under_way();
    }

    /// The snapshot file being written, if any, goes on at full speed.
    fn lift_write_under_way(&self) {
        if let Some((rate, _)) = &self.writing_rate {
            rate.lift();
        }
    }

    /// The point a checkpoint was asked for through
    /// ([`Persister::ask_snapshot`]) and is not taken yet, if any.
    pub fn snapshot_asked_through(&self) -> Option<InstanceId> {
        self.snapshot_asked
    }

    /// Asks for a checkpoint that holds the state machine's state (a whole
    /// snapshot) now, even at the point of the latest checkpoint, which
    /// holds none: a peer needs it to catch up.
    pub fn ask_whole_snapshot(&mut self) {
        self.whole_asked = true;
        self.peer_waits();
    }

    /// Whether `checkpoint` is still of the current state: no peer's
    /// snapshot was installed since it was taken (else step (b) drops it,
    /// rule 5).
    pub fn is_current(&self, checkpoint: &PendingCheckpoint) -> bool {
        checkpoint.installs == self.installs
    }

    /// Whether a whole snapshot was asked for and is not written yet.
    pub fn whole_asked(&self) -> bool {
        self.whole_asked
    }

    /// Whether a snapshot asked for is not taken yet.
    pub fn snapshot_asked(&self) -> bool {
        self.snapshot_asked.is_some() || self.whole_asked
    }

    /// Whether a checkpoint is due or running and not yet durable (its
    /// snapshot being encoded or written, or its marker due; deleting what
    /// a durable one superseded does not count).
    pub fn checkpoint_in_progress(&self) -> bool {
        self.checkpoint_due.is_some() || (self.checkpoint_busy && !self.cleaning)
    }

    /// A job that reads the chosen values of `[from, through)` back from
    /// the log (values dropped from memory that a peer needs), copying at
    /// most twice the log bytes after which the policy checkpoints (the
    /// records an instance has, an Accept and a Chosen, can both be in the
    /// range; beyond that a snapshot is the cheaper way), and never more
    /// than 256 MiB.
    pub fn log_read(&self, from: InstanceId, through: InstanceId) -> LogRead {
        const BYTES_MAX: u64 = 256 << 20;
        let bytes_max = match self.policy.log_bytes {
            0 => BYTES_MAX,
            bytes => bytes.saturating_mul(2).min(BYTES_MAX),
        };
        self.wal.log_read(self.group, from, through, bytes_max)
    }

    /// The lowest point of a checkpoint that is due, being written or
    /// waiting for its records to be durable (`None`: none). Its records hold every chosen
    /// value from its point on, so none of those may be dropped from memory
    /// before they are written (`Replica::release_applied_values`).
    pub fn checkpoint_floor(&self) -> Option<InstanceId> {
        let due = self
            .checkpoint_due
            .as_ref()
            .map(|(snapshot, _, _)| snapshot.meta.applied_end);
        let ready = self
            .checkpoint_ready
            .as_ref()
            .map(|pending| pending.snapshot.meta.applied_end);
        let marking = self.marking.as_ref().map(|m| m.meta.applied_end);
        [due, self.checkpoint_writing, ready, marking]
            .into_iter()
            .flatten()
            .min()
    }

    /// Our own snapshot, taken at its point: checkpoint it.
    pub fn snapshot_taken(&mut self, snapshot: Snapshot) {
        self.checkpoint_due = Some((snapshot, true, None));
    }

    /// Our own snapshot at `meta`, taken as a view whose bytes `encode`
    /// produces off the loop, in step (a) (rule 4): checkpoint it.
    pub fn snapshot_deferred(
        &mut self,
        meta: SnapshotMeta,
        memberships: Schedule,
        encode: SnapshotEncoder,
    ) {
        let snapshot = Snapshot {
            memberships: Some(memberships),
            meta,
            data: Bytes::new(),
        };
        self.checkpoint_due = Some((snapshot, true, Some(encode)));
    }

    /// A peer's snapshot was installed: checkpoint it (and drop any
    /// checkpoint of the state it replaced).
    pub fn installed(&mut self, snapshot: Snapshot) {
        self.installs += 1;
        self.checkpoint_due = Some((snapshot, false, None));
        // Our own checkpoint being written is of the state this replaced:
        // step (b) drops it, and the install's checkpoint waits for it.
        self.lift_write_under_way();
    }

    /// Starts whatever storage work is due: a checkpoint's snapshot file,
    /// a checkpoint's marker (handed out as the sync job), or the next
    /// sync; reports a checkpoint whose marker job ended and starts its
    /// step (c). Call after every `Ready` is acted on and after every I/O
    /// completion.
    pub fn kick(&mut self, replica: &mut Replica) -> Result<Kicked, StorageError> {
        let mut kicked = Kicked::default();
        if let Some((done, obsolete)) = self.marked.take() {
            kicked.checkpointed = Some(done);
            self.cleaning = true;
            // It empties the trash too, a dropped transfer's included: one
            // dropped after this point asks again, and its removal runs
            // after this one.
            self.take_dropped_transfer();
            if self.trash_removal_out {
                self.removal_waiting = Some(obsolete);
            } else {
                kicked.io.push(Io::Remove(obsolete));
            }
        }
        if !self.trash_removal_out {
            if let Some(obsolete) = self.removal_waiting.take() {
                kicked.io.push(Io::Remove(obsolete));
            }
        }
        if !self.trash_removal_out && !self.cleaning && self.take_dropped_transfer() {
            // A peer's snapshot transfer dropped part-way went to the trash
            // (`FileSpool::abort`): emptied off the loop now, so that a
            // retry has the space back (a node catching up by snapshot has
            // no checkpoint before its install). It holds up no checkpoint
            // (steps (a) and (b) run beside it; the policy and installs
            // keep asking for them), only the next step (c), which would
            // race it over the trash and waits for `cleaned`.
            self.trash_removal_out = true;
            kicked.io.push(Io::Remove(self.wal.trash_removal()));
        }
        if !self.checkpoint_busy {
            if let Some((snapshot, own, encode)) = self.checkpoint_due.take() {
                self.checkpoint_busy = true;
                self.checkpoint_writing = Some(snapshot.meta.applied_end);
                let seal = if own {
                    None
                } else {
                    self.received_file(&snapshot)
                };
                // Capped: our own checkpoints that no peer waits for. A
                // peer's snapshot (sealed, or written again) makes an
                // install durable; one a peer waits for holds it.
                let rate = if self.rate_lifted || self.next_uncapped || !own {
                    WriteRate::unlimited()
                } else {
                    WriteRate::capped(self.policy.write_bytes_per_sec)
                };
                self.next_uncapped = false;
                self.writing_rate = Some((rate.clone(), self.wal.bytes_since_checkpoint()));
                kicked.io.push(Io::WriteSnapshot(SnapshotWrite {
                    fs: self.wal.fs(),
                    dir: self.wal.snap_dir().to_path_buf(),
                    group: self.group,
                    encode,
                    seal,
                    rate,
                    checkpoint: PendingCheckpoint {
                        snapshot,
                        own,
                        installs: self.installs,
                        digest: None,
                    },
                }));
            }
        }
        if self.syncing {
            return Ok(kicked);
        }
        if let Some(pending) = self.checkpoint_ready.take() {
            if pending.installs != self.installs {
                // A peer's snapshot replaced the state this one is of since
                // it was taken: the records would not follow it. Its file
                // goes with the next checkpoint's cleanup.
                self.checkpoint_busy = false;
                return Ok(kicked);
            }
            // Every effect the core handed out is appended (this runs after
            // a `Ready` is acted on, or after an I/O completion with nothing
            // taken in between that was not appended), so the records
            // describe exactly what the log holds.
            //
            // Compact first (the snapshot file is durable now): the records
            // then start at the snapshot instead of holding every chosen
            // value since the previous one.
            let meta = pending.snapshot.meta;
            let bytes = pending.snapshot.data.len();
            let holds_state =
                crate::envelope::Sessions::snapshot_holds_state(&pending.snapshot.data);
            if pending.own {
                // A checkpoint of a state machine that keeps its state on
                // its own disk rebuilds this node, but a peer could not
                // install it: never sent.
                if let Err(err) =
                    replica.compact_checkpoint(pending.snapshot, pending.digest, holds_state)
                {
                    warn!("compaction refused: {err}");
                }
            }
            if holds_state {
                self.whole_asked = false;
            }
            let records = replica.checkpoint_records();
            // The marker, the records and the end frame are written off the
            // loop, as the sync job (one at a time: no other sync, roll or
            // checkpoint meanwhile); what is appended until it ends follows
            // them in the log. The core hears that everything appended so
            // far is durable only once it ends (`sync_done`), and the
            // checkpoint counts from then on.
            let count = records.len();
            let job = match self.wal.begin_checkpoint(self.group, meta, records) {
                Ok(job) => job,
                Err(err) => {
                    // Fatal (the node stops): nothing of this checkpoint is
                    // out, so a stop must not wait for a report of it.
                    self.checkpoint_busy = false;
                    return Err(err);
                }
            };
            self.marking = Some(Checkpointed {
                meta,
                bytes,
                records: count,
            });
            self.syncing = true;
            self.sync_started_tick = self.ticks;
            kicked.io.push(Io::Sync {
                job,
                through: self.appended_through,
            });
            return Ok(kicked);
        }
        // Sync at once only when messages wait for it; otherwise let the
        // next sync take these records, once `LAZY_SYNC_TICKS` passed or
        // `LAZY_SYNC_BYTES` are waiting (rule 1).
        if !replica.awaits_durability()
            && self.ticks < self.sync_started_tick.saturating_add(LAZY_SYNC_TICKS)
            && self.wal.pending_bytes() < LAZY_SYNC_BYTES
        {
            return Ok(kicked);
        }
        if let Some(job) = self.wal.begin_sync()? {
            self.syncing = true;
            self.sync_started_tick = self.ticks;
            kicked.io.push(Io::Sync {
                job,
                through: self.appended_through,
            });
        }
        Ok(kicked)
    }

    /// A sync job finished. An error is fatal (rule 2).
    pub fn sync_done(
        &mut self,
        job: SyncJob,
        result: Result<(), StorageError>,
        through: PersistSeq,
        replica: &mut Replica,
    ) -> Result<(), StorageError> {
        self.syncing = false;
        let checkpoint = job.is_checkpoint();
        if let Err(err) = self.wal.finish_sync(job, result) {
            if checkpoint {
                // Fatal (the node stops): nothing of this checkpoint is out
                // any more, so a stop must not wait for a report of it.
                self.marking = None;
                self.checkpoint_busy = false;
            }
            return Err(err);
        }
        if checkpoint {
            self.checkpoint_marked()?;
        }
        // `persisted` can release held messages and let the core act on them,
        // queueing new records in its next Ready. No checkpoint may be taken
        // until those are appended (the caller acts on the next Ready before
        // it calls `kick`).
        replica.persisted(through);
        Ok(())
    }

    /// Step (b)'s marker job finished (durably): the checkpoint counts now.
    /// Its report and step (c) wait for the next `kick`.
    fn checkpoint_marked(&mut self) -> Result<(), StorageError> {
        let (Some(done), Some(obsolete)) = (self.marking.take(), self.wal.take_checkpointed())
        else {
            return Err(StorageError::Poisoned);
        };
        self.snapshot_end = done.meta.applied_end;
        if self
            .snapshot_asked
            .is_some_and(|asked| asked <= self.snapshot_end)
        {
            self.snapshot_asked = None;
        }
        self.marked = Some((done, obsolete));
        Ok(())
    }

    /// A snapshot file being written goes on at full speed, and later ones
    /// are not capped: a stop waits for the write (the driver lifts the cap
    /// first thing when it stops; so does dropping the persister, for a
    /// driver that panicked and left its writer running).
    pub fn lift_write_rate(&mut self) {
        self.rate_lifted = true;
        self.lift_write_under_way();
    }

    /// Lifts the cap on the snapshot file being written once the policy
    /// would call for the next checkpoint, counting from this one's point
    /// (`applied_end`, instances) and from the write's start (log bytes;
    /// 64 MiB where the policy counts neither): the checkpoint floor keeps
    /// every value chosen meanwhile in memory and the log on disk grows
    /// until the checkpoint is durable, so a write that falls that far
    /// behind finishes at full speed. This keeps both within about one
    /// policy interval more than a write at full speed would, whatever the
    /// state's size and the cap.
    pub fn hurry_overdue_write(&self, applied_end: InstanceId) {
        const LOG_BYTES_OFF: u64 = 64 << 20;
        let (Some((rate, log_bytes_at_start)), Some(point)) =
            (&self.writing_rate, self.checkpoint_writing)
        else {
            return;
        };
        if rate.is_lifted() {
            return;
        }
        let instances = applied_end.0.saturating_sub(point.0);
        let log_bytes = self
            .wal
            .bytes_since_checkpoint()
            .saturating_sub(*log_bytes_at_start);
        let overdue = match (self.policy.instances, self.policy.log_bytes) {
            (0, 0) => log_bytes >= LOG_BYTES_OFF,
            _ => self.policy.due(instances, log_bytes),
        };
        if overdue {
            tracing::info!(
                instances,
                log_bytes,
                "the snapshot file being written is overdue: the rest at full speed"
            );
            rate.lift();
        }
    }

    /// Step (a) finished. A failed snapshot write is an I/O error like a
    /// failed fsync: fatal.
    pub fn snapshot_written(
        &mut self,
        checkpoint: PendingCheckpoint,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.checkpoint_writing = None;
        self.writing_rate = None;
        if result.is_err() {
            // Step (a) is over (it failed): nothing of this checkpoint is out
            // any more, so a stop must not wait for a report that never comes
            // (it did, and left a half-alive process).
            self.checkpoint_busy = false;
        }
        result?;
        self.checkpoint_ready = Some(checkpoint);
        Ok(())
    }

    /// Step (c) finished. Superseded files left behind cost space, not
    /// safety (recovery skips them): an error is returned for the caller to
    /// log, and the node goes on.
    pub fn cleaned(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        // One removal is out at a time (`kick`): the trash removal, or the
        // checkpoint's step (c).
        if std::mem::take(&mut self.trash_removal_out) {
            return result;
        }
        self.checkpoint_busy = false;
        self.cleaning = false;
        result
    }

    /// Whether a removal that only empties the trash is out: a stop waits
    /// for its report too ([`Persister::stop_checkpoint`] says only whether
    /// a checkpoint's step is out).
    pub fn trash_removal_out(&self) -> bool {
        self.trash_removal_out
    }

    /// True while a sync job is out.
    pub fn syncing(&self) -> bool {
        self.syncing
    }

    /// For a clean stop: drops a checkpoint whose marker was never written
    /// (its snapshot file is a stray a later cleanup removes) and says
    /// whether a step (a) or (c) is still out (wait for its report).
    pub fn stop_checkpoint(&mut self) -> bool {
        self.lift_write_rate();
        if self.checkpoint_ready.take().is_some() {
            self.checkpoint_busy = false;
        }
        let marked = self.marked.take().is_some();
        let marking = self.marking.take().is_some();
        let waiting = self.removal_waiting.take().is_some();
        if marked || marking || waiting {
            // Durable, but step (c) never started (or waited for the trash
            // removal): its files stay (recovery
            // skips them, the next checkpoint deletes them). Or its marker
            // job, which reports as the log sync: ended at the stop
            // (`sync_finished_at_stop`, no step (c) either), or still out
            // after the stop waited for the sync (the stop goes on without
            // it, as for a sync that outlasts the wait).
            self.checkpoint_busy = false;
        }
        self.checkpoint_busy
    }

    /// For a clean stop, once no sync is out: makes every appended record
    /// durable (records nothing waited for, such as chosen marks, may not be).
    pub fn final_sync(&mut self) -> Result<(), StorageError> {
        if let Some(job) = self.wal.begin_sync()? {
            let synced = job.run();
            self.wal.finish_sync(job, synced)?;
        }
        Ok(())
    }

    /// For a stop: a sync job that was out finished; its result only
    /// decides whether the log may still be written (see `final_sync`). A
    /// checkpoint's marker job is settled by `stop_checkpoint`, which the
    /// stop calls next.
    pub fn sync_finished_at_stop(&mut self, job: SyncJob, result: Result<(), StorageError>) {
        self.syncing = false;
        let _ = self.wal.finish_sync(job, result);
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        // A writer still out (its driver gone) does not crawl on.
        self.lift_write_rate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{Checksum, Config, NodeId};
    use synod_storage::WalOptions;

    fn snapshot_at(point: u64) -> Snapshot {
        Snapshot {
            memberships: None,
            meta: SnapshotMeta {
                applied_end: InstanceId(point),
                checksum: Checksum::default(),
            },
            data: Bytes::from_static(b"state"),
        }
    }

    /// Step (a) of the checkpoint due, handed out by `kick`.
    fn step_a(persist: &mut Persister, replica: &mut Replica) -> SnapshotWrite {
        let kicked = persist.kick(replica).expect("kick");
        kicked
            .io
            .into_iter()
            .find_map(|io| match io {
                Io::WriteSnapshot(write) => Some(write),
                _ => None,
            })
            .expect("step (a) handed out")
    }

    /// How a checkpoint's snapshot file of 10,000 bytes, capped at 1,000
    /// bytes a second, is written: `between` runs after step (a) is handed
    /// out and before it runs. The time its writer paused for.
    fn capped_checkpoint(between: impl FnOnce(&mut Persister)) -> std::time::Duration {
        let policy = SnapshotPolicy {
            instances: 100,
            log_bytes: 0,
            write_bytes_per_sec: 1_000,
        };
        capped_checkpoint_under(policy, |_| {}, between)
    }

    /// A persister under `policy` on a fresh simulated disk, and a replica.
    fn on_sim_disk(policy: SnapshotPolicy) -> (synod_storage::SimFs, Persister, Replica) {
        let sim = synod_storage::SimFs::new();
        let (wal, _) = Wal::open_on(
            Arc::new(sim.clone()),
            std::path::Path::new("/data"),
            WalOptions::default(),
        )
        .expect("opens");
        let persist = Persister::new(GroupId(0), wal, policy, InstanceId(0));
        let replica = Replica::new(Config::new(NodeId(1), vec![NodeId(1)])).expect("replica");
        (sim, persist, replica)
    }

    /// [`capped_checkpoint`] under `policy`, `before` run before the
    /// snapshot is taken.
    fn capped_checkpoint_under(
        policy: SnapshotPolicy,
        before: impl FnOnce(&mut Persister),
        between: impl FnOnce(&mut Persister),
    ) -> std::time::Duration {
        let (sim, mut persist, mut replica) = on_sim_disk(policy);
        before(&mut persist);
        let mut snapshot = snapshot_at(7);
        snapshot.data = Bytes::from(vec![1u8; 10_000]);
        persist.snapshot_taken(snapshot);
        let mut write = step_a(&mut persist, &mut replica);
        between(&mut persist);
        write.run().expect("written");
        std::time::Duration::from_nanos(sim.stats().paused_nanos)
    }

    /// The policy's cap holds; a stop lifts it on the snapshot file being
    /// written (the stop waits for that write), and so does a write that
    /// falls a whole policy interval behind, and dropping the persister.
    #[test]
    fn a_checkpoint_keeps_to_its_cap_until_a_stop_or_it_is_overdue() {
        use std::time::Duration;
        // 10,000 bytes at 1,000 a second, but for the last stretch (the
        // simulator's is 256 bytes).
        let paused = capped_checkpoint(|_| {});
        assert!(
            paused >= Duration::from_millis(9_744) && paused <= Duration::from_secs(10),
            "{paused:?}"
        );
        let paused = capped_checkpoint(|persist| {
            assert!(persist.stop_checkpoint(), "step (a) is out");
        });
        assert_eq!(paused, Duration::ZERO, "a stop lifts the cap");
        let paused = capped_checkpoint(|persist| persist.lift_write_rate());
        assert_eq!(paused, Duration::ZERO);
        // 99 instances applied past the checkpoint's point (7): not yet.
        let paused = capped_checkpoint(|persist| persist.hurry_overdue_write(InstanceId(106)));
        assert!(paused >= Duration::from_millis(9_744), "{paused:?}");
        // 100: the policy would checkpoint again.
        let paused = capped_checkpoint(|persist| persist.hurry_overdue_write(InstanceId(107)));
        assert_eq!(paused, Duration::ZERO, "an overdue write is hurried");
        // A peer waits (seed 890431): the write under way, and the next.
        let paused = capped_checkpoint(|persist| persist.ask_whole_snapshot());
        assert_eq!(paused, Duration::ZERO, "a peer waits for a whole snapshot");
        let paused = capped_checkpoint(|persist| {
            assert!(persist.ask_snapshot(InstanceId(50)));
        });
        assert_eq!(paused, Duration::ZERO, "a peer waits for a snapshot");
        // A peer's snapshot installed meanwhile: ours is to be dropped.
        let paused = capped_checkpoint(|persist| persist.installed(snapshot_at(9)));
        assert_eq!(paused, Duration::ZERO, "an install does not wait behind it");
    }

    /// After a peer asked for a snapshot, the next snapshot file is written
    /// at full speed too (it may be the one that answers); the one after is
    /// capped again.
    #[test]
    fn the_snapshot_a_peer_waits_for_is_not_capped() {
        let (sim, mut persist, mut replica) = on_sim_disk(SnapshotPolicy {
            instances: 100,
            log_bytes: 0,
            write_bytes_per_sec: 1_000,
        });
        assert!(persist.ask_snapshot(InstanceId(7)));
        let mut paused = Vec::new();
        for point in [7, 8] {
            let mut snapshot = snapshot_at(point);
            snapshot.data = Bytes::from(vec![1u8; 10_000]);
            persist.snapshot_taken(snapshot);
            let before = sim.stats().paused_nanos;
            let mut write = step_a(&mut persist, &mut replica);
            write.run().expect("written");
            paused.push(sim.stats().paused_nanos - before);
            let failed = Err(StorageError::Io {
                path: "/x".into(),
                source: std::io::Error::other("dropped"),
            });
            // Step (a) over (as a failure: no marker to write here).
            let _ = persist.snapshot_written(write.checkpoint, failed);
        }
        assert_eq!(paused[0], 0, "the asked-for snapshot was capped");
        assert!(paused[1] >= 9_000_000_000, "the next was not: {paused:?}");
    }

    /// Under a policy that counts log bytes, a write is overdue once the
    /// log grew by that much since the write began (not since the last
    /// checkpoint, which the write's own interval already filled).
    #[test]
    fn a_write_is_overdue_after_a_policy_interval_of_log_bytes() {
        use synod_core::Ballot;
        let policy = SnapshotPolicy {
            instances: 0,
            log_bytes: 4_000,
            write_bytes_per_sec: 1_000,
        };
        // Log written before the write began, then during it.
        let grow = |persist: &mut Persister, records: usize| {
            let promise = Record::Promise {
                group: GroupId(0),
                ballot: Ballot {
                    round: 1,
                    node: NodeId(1),
                },
            };
            persist
                .append(&vec![promise; records], PersistSeq(1))
                .expect("append");
        };
        let log_bytes = |persist: &Persister| persist.wal.bytes_since_checkpoint();
        // A whole interval before the write (it is what made it due), a
        // little during it: not overdue.
        let fill = |persist: &mut Persister| {
            while log_bytes(persist) < 4_000 {
                grow(persist, 100);
            }
        };
        let paused = capped_checkpoint_under(policy, fill, |persist| {
            let before = log_bytes(persist);
            grow(persist, 100);
            assert!(log_bytes(persist) - before < 4_000, "a few records only");
            persist.hurry_overdue_write(InstanceId(7));
        });
        assert!(paused >= std::time::Duration::from_secs(9), "{paused:?}");
        let paused = capped_checkpoint_under(policy, fill, |persist| {
            let before = log_bytes(persist);
            while log_bytes(persist) - before < 4_000 {
                grow(persist, 100);
            }
            persist.hurry_overdue_write(InstanceId(7));
        });
        assert_eq!(paused, std::time::Duration::ZERO, "overdue by log bytes");
    }

    /// Drops `point`'s transfer part-way into `spool` (to the trash).
    fn drop_transfer(spool: &mut Box<dyn synod_core::SnapshotSpool>, point: u64) {
        let meta = SnapshotMeta {
            applied_end: InstanceId(point),
            checksum: Checksum::default(),
        };
        spool.begin(meta, 10_000).expect("begins");
        spool.append(&[6u8; 5_000]).expect("appends");
        spool.abort();
    }

    /// The removal among what `kick` handed out, if any.
    fn removal(kicked: Kicked) -> Option<Obsolete> {
        kicked.io.into_iter().find_map(|io| match io {
            Io::Remove(obsolete) => Some(obsolete),
            _ => None,
        })
    }

    /// A peer's snapshot transfer dropped part-way goes to the trash, and
    /// the next kick empties it off the loop, in a removal of its own (not
    /// at the next checkpoint: a retry needs the space). A checkpoint asked
    /// for meanwhile starts beside it (an install's must not wait for the
    /// cuts); only its step (c) waits, and goes once the removal reported.
    #[test]
    fn a_dropped_transfer_is_removed_at_once_off_the_loop() {
        let (sim, mut persist, mut replica) = on_sim_disk(SnapshotPolicy {
            instances: 100,
            log_bytes: 0,
            write_bytes_per_sec: 0,
        });
        let snap_dir = std::path::Path::new("/data/snap");
        let mut spool = persist.spool();
        drop_transfer(&mut spool, 9);
        assert_eq!(
            sim.read_dir(snap_dir).expect("list").len(),
            1,
            "in the trash"
        );
        let trash = removal(persist.kick(&mut replica).expect("kick")).expect("a removal");
        assert!(trash.is_trash_only());
        assert!(persist.trash_removal_out());
        // An install meanwhile: its checkpoint starts at once.
        let mut snapshot = snapshot_at(3);
        snapshot.data = Bytes::from(vec![2u8; 1_000]);
        persist.installed(snapshot);
        let mut write = step_a(&mut persist, &mut replica);
        write.run().expect("written");
        persist
            .snapshot_written(write.checkpoint, Ok(()))
            .expect("step (a) reported");
        // Step (b): its marker job is the sync; then step (c) is due, but
        // the trash removal is out.
        let mut kicked = persist.kick(&mut replica).expect("kick");
        let mut marker = None;
        for io in kicked.io.drain(..) {
            match io {
                Io::Sync { job, through } => marker = Some((job, through)),
                Io::Remove(_) => panic!("a removal beside the trash removal"),
                _ => {}
            }
        }
        let (job, through) = marker.expect("the marker job");
        let result = job.run();
        persist
            .sync_done(job, result, through, &mut replica)
            .expect("marked");
        let kicked = persist.kick(&mut replica).expect("kick");
        assert!(
            kicked.checkpointed.is_some(),
            "the checkpoint is durable and reported"
        );
        assert!(
            removal(kicked).is_none(),
            "its step (c) waits for the trash removal"
        );
        trash.remove().expect("removed");
        assert!(
            sim.read_dir(snap_dir)
                .expect("list")
                .iter()
                .all(|name| !name.contains("incoming")),
            "the dropped transfer is gone"
        );
        persist.cleaned(Ok(())).expect("cleaned");
        assert!(!persist.trash_removal_out());
        let step_c = removal(persist.kick(&mut replica).expect("kick")).expect("step (c) now");
        assert!(!step_c.is_trash_only());
        // A drop while step (c) is out waits for it (which empties the
        // trash too if it comes first), then gets a removal of its own.
        drop_transfer(&mut spool, 12);
        assert!(removal(persist.kick(&mut replica).expect("kick")).is_none());
        persist.cleaned(step_c.remove()).expect("cleaned");
        let trash = removal(persist.kick(&mut replica).expect("kick")).expect("a removal");
        assert!(trash.is_trash_only());
        trash.remove().expect("removed");
        persist.cleaned(Ok(())).expect("cleaned");
        let left = sim.read_dir(snap_dir).expect("list");
        assert!(
            left.iter().all(|name| !name.contains("incoming")),
            "{left:?}"
        );
    }

    /// Drops back to back, one in each trash removal's window, never keep
    /// the policy's checkpoints from starting (found by the second review:
    /// a removal that held the checkpoint busy starved them).
    #[test]
    fn drops_back_to_back_do_not_starve_the_policy_s_checkpoints() {
        let (_sim, mut persist, mut replica) = on_sim_disk(SnapshotPolicy {
            instances: 10,
            log_bytes: 0,
            write_bytes_per_sec: 0,
        });
        let mut spool = persist.spool();
        drop_transfer(&mut spool, 1_000);
        let mut out = removal(persist.kick(&mut replica).expect("kick")).expect("a removal");
        for round in 1..=20u64 {
            assert!(
                persist.snapshot_wanted(InstanceId(50 * round)),
                "round {round}: the policy's checkpoint is held up"
            );
            drop_transfer(&mut spool, 1_000 + round);
            assert!(persist.kick(&mut replica).expect("kick").io.is_empty());
            persist.cleaned(out.remove()).expect("cleaned");
            out = removal(persist.kick(&mut replica).expect("kick")).expect("the next removal");
        }
    }

    /// A peer's snapshot is never capped, whatever the policy: sealed in
    /// place where the spool received it, or written again where it did
    /// not. Either makes an install durable, and a cap would only hold it.
    #[test]
    fn a_peer_s_snapshot_is_sealed_or_written_at_full_speed() {
        for received in [true, false] {
            let (sim, mut persist, mut replica) = on_sim_disk(SnapshotPolicy {
                instances: 100,
                log_bytes: 0,
                write_bytes_per_sec: 1_000,
            });
            let mut snapshot = snapshot_at(9);
            snapshot.data = Bytes::from(vec![4u8; 10_000]);
            if received {
                let mut spool = persist.spool();
                spool.begin(snapshot.meta, 10_000).expect("begins");
                spool.append(&snapshot.data).expect("appends");
                assert_eq!(spool.finish().expect("finishes"), snapshot.data);
            }
            persist.installed(snapshot);
            let mut write = step_a(&mut persist, &mut replica);
            assert_eq!(write.seal.is_some(), received);
            write.run().expect("written");
            assert_eq!(sim.stats().paused_nanos, 0, "received: {received}");
            let read = snapshot_file::read_on(
                &sim,
                std::path::Path::new("/data/snap"),
                GroupId(0),
                SnapshotMeta {
                    applied_end: InstanceId(9),
                    checksum: Checksum::default(),
                },
            );
            assert_eq!(read.expect("reads").data.len(), 10_000);
        }
    }

    /// Under a policy that counts neither instances nor log bytes (the
    /// node checkpoints only when asked), a write is overdue once 64 MiB of
    /// log were written during it; instances never make it overdue.
    #[test]
    fn without_a_policy_a_write_is_overdue_after_64_mib_of_log() {
        use synod_core::{ChosenValue, Value};
        let policy = SnapshotPolicy {
            instances: 0,
            log_bytes: 0,
            write_bytes_per_sec: 1_000,
        };
        let value = Value::batch(vec![Bytes::from(vec![5u8; 256 << 10])]);
        // Appends learned values until the log grew by `bytes` at least,
        // and by less than one value more.
        let grow = |persist: &mut Persister, bytes: u64| {
            let before = persist.wal.bytes_since_checkpoint();
            let mut instance = 0;
            while persist.wal.bytes_since_checkpoint() - before < bytes {
                instance += 1;
                let chosen = Record::Chosen {
                    group: GroupId(0),
                    instance: InstanceId(instance),
                    value: ChosenValue::Learned(value.clone()),
                };
                persist.append(&[chosen], PersistSeq(1)).expect("append");
            }
        };
        let paused = capped_checkpoint_under(
            policy,
            |_| {},
            |persist| {
                grow(persist, (64 << 20) - (300 << 10));
                persist.hurry_overdue_write(InstanceId(u64::MAX / 2));
            },
        );
        assert!(paused >= std::time::Duration::from_secs(9), "{paused:?}");
        let paused = capped_checkpoint_under(
            policy,
            |_| {},
            |persist| {
                grow(persist, 64 << 20);
                persist.hurry_overdue_write(InstanceId(8));
            },
        );
        assert_eq!(paused, std::time::Duration::ZERO, "overdue at 64 MiB");
    }

    /// Dropping the persister (its driver gone) lifts the cap of a writer
    /// still out.
    #[test]
    fn dropping_the_persister_lifts_the_cap() {
        let paused = capped_checkpoint(|persist| {
            let mut replaced = Persister::new(
                GroupId(0),
                Wal::open_on(
                    Arc::new(synod_storage::SimFs::new()),
                    std::path::Path::new("/other"),
                    WalOptions::default(),
                )
                .expect("opens")
                .0,
                SnapshotPolicy::default(),
                InstanceId(0),
            );
            std::mem::swap(persist, &mut replaced);
            drop(replaced);
        });
        assert_eq!(paused, std::time::Duration::ZERO);
    }

    /// A checkpoint's records hold every chosen value from its point on:
    /// the floor that keeps those values in memory must cover it from the
    /// moment it is due until its records are written, and no longer.
    #[test]
    fn the_checkpoint_floor_covers_a_checkpoint_until_its_records_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("opens");
        let mut persist = Persister::new(GroupId(0), wal, SnapshotPolicy::default(), InstanceId(0));
        let mut replica = Replica::new(Config::new(NodeId(1), vec![NodeId(1)])).expect("replica");
        assert_eq!(persist.checkpoint_floor(), None);
        // At 7, above the latest checkpoint (0), so that a floor reporting
        // that one would fail. (The replica refuses to compact there, having
        // applied nothing: a warning, the records are written anyway.)
        persist.snapshot_taken(snapshot_at(7));
        assert_eq!(persist.checkpoint_floor(), Some(InstanceId(7)), "due");
        let mut write = step_a(&mut persist, &mut replica);
        assert_eq!(persist.checkpoint_floor(), Some(InstanceId(7)), "writing");
        write.run().expect("written");
        persist
            .snapshot_written(write.checkpoint, Ok(()))
            .expect("step (a) reported");
        assert_eq!(persist.checkpoint_floor(), Some(InstanceId(7)), "ready");
        // Step (b): the records are taken and handed out with the marker,
        // as the sync job; they count once it ends.
        let kicked = persist.kick(&mut replica).expect("kick");
        assert!(kicked.checkpointed.is_none(), "not durable yet");
        let (job, through) = kicked
            .io
            .into_iter()
            .find_map(|io| match io {
                Io::Sync { job, through } => Some((job, through)),
                _ => None,
            })
            .expect("the marker job handed out");
        assert!(job.is_checkpoint());
        assert!(persist.syncing(), "one job at a time");
        assert_eq!(persist.checkpoint_floor(), Some(InstanceId(7)), "marking");
        let result = job.run();
        persist
            .sync_done(job, result, through, &mut replica)
            .expect("marker durable");
        assert_eq!(persist.checkpoint_floor(), None, "after the records");
        assert_eq!(persist.snapshot_end(), InstanceId(7));
        let kicked = persist.kick(&mut replica).expect("kick");
        assert!(kicked.checkpointed.is_some(), "reported");
        assert!(
            kicked.io.iter().any(|io| matches!(io, Io::Remove(_))),
            "step (c) started"
        );
        // Step (c) deletes what it superseded: nothing a floor protects.
        persist.cleaned(Ok(())).expect("cleaned");

        // A failed write ends the checkpoint (the node stops): no floor.
        persist.snapshot_taken(snapshot_at(9));
        let write = step_a(&mut persist, &mut replica);
        assert_eq!(persist.checkpoint_floor(), Some(InstanceId(9)));
        let failed = persist.snapshot_written(
            write.checkpoint,
            Err(StorageError::Io {
                path: dir.path().to_path_buf(),
                source: std::io::Error::other("disk gone"),
            }),
        );
        assert!(failed.is_err());
        assert_eq!(persist.checkpoint_floor(), None);
    }
}
