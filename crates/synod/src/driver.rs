//! The task that drives one replica: it feeds the runtime's engine
//! (`engine.rs`, which the simulator runs too) its inputs (peer messages,
//! ticks, requests, durability notices) and carries out what the engine
//! decides: sends, storage jobs on blocking threads, answers. The engine
//! carries out each `Ready` in the order the core documents:
//!
//! 1. `persist`: append to the write-ahead log; one background `fdatasync`
//!    covers everything appended since the previous one (group commit), and
//!    only when it returns is the core told (`persisted`). The core holds back
//!    every message that depends on those records until then, so a promise or
//!    an accept can never leave this node before it is on disk.
//! 2. `install`: restore the state machine from a peer's snapshot before
//!    applying what follows it, and answer every waiting request whose
//!    command the snapshot covers from the session table in it (`apply`
//!    never runs for those here).
//! 3. `messages`: hand to the network at once.
//! 4. `apply`: apply to the state machine in instance order; answer the
//!    requests of this node whose commands took effect.
//! 5. `rejected`: those commands were not proposed; retry them later.
//! 6. `diverged`: alarm, and refuse to serve from this replica.
//! 7. `reads`: answer these linearizable reads from the state machine, now
//!    that `apply` is applied (reads use the core's read index: no log
//!    instance, no fsync; see `synod-core/src/replica/reads.rs`), at the log
//!    clock; a read whose answer depends on the time goes through the log
//!    instead, unless its answer there is also the one at this node's clock
//!    (see `Engine::serve_read`).
//! 8. `rejected_reads`: retry them later.

use crate::config::{NodeConfig, GROUP};
use crate::engine::{recover_machine, Answer, Engine, EngineOptions, Kind, MonoClock};
use crate::metrics::{Metrics, RefusalLog};
use crate::node::{NodeError, NodeStatus, RequestError};
use crate::persist::{Io, PendingCheckpoint, Persister};
use crate::state_machine::StateMachine;
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use synod_core::{InstanceId, Message, NodeId, PersistSeq, Replica, Value};
use synod_net::Net;
use synod_storage::{LogRead, StorageError, SyncJob, Wal, WalOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

/// Peer messages taken per wake-up before the core's output is acted on.
const INBOUND_BATCH_MAX: usize = 1024;
/// Requests taken per wake-up.
const SUBMIT_BATCH_MAX: usize = 4096;
/// Inbound peer messages buffered between the network and this task.
const INBOUND_QUEUE_MAX: usize = 8192;
/// Acting on one `Ready` for longer than this is logged: every request on the
/// node waits meanwhile.
const SLOW_STEP: std::time::Duration = std::time::Duration::from_millis(100);
/// Reads answered off the event loop (`StateMachine::query_view`) at once;
/// more wait for a turn, so a flood of `KEYS` takes at most this many
/// cores from the loop and the other clients.
const OFF_LOOP_QUERIES_MAX: usize = 2;

/// At a stop, how long to wait for storage work still out on a blocking
/// thread before giving up on its report.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What an operator should do about a fatal error, for the one log line
/// (and the status) that reports it.
fn fatal_advice(err: &NodeError) -> &'static str {
    match err {
        NodeError::Storage(_) => {
            "The data directory could not be written or synced (full disk, too many open files, \
             I/O error): fix the cause and restart the node; it recovers from its log"
        }
        NodeError::Stopped(_) => "Restart the node; it recovers from its log",
        NodeError::Removed(_) => "This is final: do not restart it under this id",
        _ => "Fix the cause and restart the node",
    }
}

/// What a `Node` handle asks of the driver.
pub(crate) enum Submit {
    Request {
        kind: Kind,
        /// For a client session command: its session and sequence number.
        client: Option<crate::engine::ClientSeq>,
        payload: Bytes,
        reply: Reply,
    },
    /// [`crate::Node::read_stale`]: answered at once from the applied state.
    StaleRead {
        payload: Bytes,
        reply: Reply,
    },
    Member(crate::membership::MemberSubmit),
    /// [`crate::Node::snapshot_now`]: answered with the applied point the
    /// snapshot covers once it is durable.
    Snapshot(oneshot::Sender<InstanceId>),
    /// [`crate::Node::master_lease`], [`crate::Node::drop_leadership`].
    Master(crate::master::MasterSubmit),
}

/// One read answered off the loop, counted in `Driver::off_loop_waiting`
/// until its task ends (dropped, however it ends).
struct OffLoopWaiting {
    count: Arc<std::sync::atomic::AtomicUsize>,
    done: Arc<tokio::sync::Notify>,
}

impl OffLoopWaiting {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>, done: &Arc<tokio::sync::Notify>) -> Self {
        count.fetch_add(1, Relaxed);
        OffLoopWaiting {
            count: Arc::clone(count),
            done: Arc::clone(done),
        }
    }
}

impl Drop for OffLoopWaiting {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
        self.done.notify_one();
    }
}

/// How the driver answers a request: the caller's channel.
pub(crate) type Reply = oneshot::Sender<Result<Bytes, RequestError>>;

/// A step of a checkpoint that ran off the event loop.
enum CheckpointStep {
    /// Step 1: the snapshot file is durable (or could not be written).
    Written(PendingCheckpoint, Result<(), StorageError>),
    /// Step 3: superseded files deleted.
    Cleaned(Result<(), StorageError>),
}

/// Values a peer needs read back from the log (`Io::ReadLog`), or why not.
type LogReadOutcome = (LogRead, Result<Vec<(InstanceId, Value)>, StorageError>);

/// A restore run off the loop: the state machine and what `restore` said,
/// or why the job panicked (the state machine went with it).
type RestoreOutcome<S> = Result<(S, Result<(), String>), String>;

/// What woke the event loop (`Driver::run_loop`), taken out of the `select!`
/// so that the permit for reads off the loop is withdrawn in one place
/// before any of them is acted on.
enum Input<S> {
    Synced(SyncDone),
    Checkpoint(CheckpointStep),
    LogRead(LogReadOutcome),
    Restored(RestoreOutcome<S>),
    /// The stop channel's message, or `None`: its senders are gone.
    Stop(Option<()>),
    Message(Message),
    /// A submission, or `None`: every handle is gone.
    Submit(Option<Submit>),
    /// A read answered off the loop finished while the loop was full.
    OffLoopDone,
    /// The core's own wake-up time came.
    Wake,
    Tick,
}

/// A finished write + fdatasync of the log.
struct SyncDone {
    job: SyncJob,
    result: Result<(), StorageError>,
    through: PersistSeq,
    started: Instant,
}

pub(crate) struct Driver<S> {
    pub(crate) cfg: NodeConfig,
    /// The permit for reads served outside the loop: published after each
    /// pass over the inputs, withdrawn before the next acts (see
    /// `local_reads.rs` for why that order keeps those reads linearizable).
    local_reads: crate::LocalReads,
    /// The data directory's identity; `rebuilding` is cleared (durably) once
    /// the core votes again.
    identity: synod_storage::Identity,
    /// Every decision about requests, the core's output and storage (the
    /// same code the simulator runs); this task carries out its I/O.
    pub(crate) engine: Engine<S, Reply>,
    /// Membership operations waiting, and the peer set given to `net`.
    pub(crate) members: crate::membership::MemberState,
    /// Set at a clean stop while leadership is handed over (to whom): stop
    /// by then.
    stopping: Option<(Instant, NodeId)>,
    sync_tx: mpsc::Sender<SyncDone>,
    sync_rx: mpsc::Receiver<SyncDone>,
    /// A log sync the engine started, to run on the event loop once the
    /// other tasks of this thread (peer links, client connections) have
    /// sent what the step before it produced.
    sync_pending: Option<(SyncJob, PersistSeq, Instant)>,
    /// Stops the removal of superseded files running on a blocking thread,
    /// if any (`Obsolete::stopper`), at a stop.
    removal_stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// When the running checkpoint started (for its log line).
    checkpoint_started: Instant,
    checkpoint_tx: mpsc::Sender<CheckpointStep>,
    checkpoint_rx: mpsc::Receiver<CheckpointStep>,
    /// A read of the log for a peer (one at a time; its own channel: it
    /// changes no file, so a stop does not wait for it).
    log_read_tx: mpsc::Sender<LogReadOutcome>,
    log_read_rx: mpsc::Receiver<LogReadOutcome>,
    /// The state machine coming back from a restore run off the loop
    /// (`Err`: the restore panicked, and took the state machine with it).
    restore_tx: mpsc::Sender<RestoreOutcome<S>>,
    restore_rx: mpsc::Receiver<RestoreOutcome<S>>,
    /// A restore job runs on a blocking thread (it reports once).
    restore_running: bool,
    /// Turns for reads answered off the loop.
    off_loop_queries: Arc<tokio::sync::Semaphore>,
    /// Reads answered off the loop that have not finished: each holds its
    /// view (a version of the state) until its turn comes and its job
    /// runs. They left the engine's count when their view was taken, so
    /// the admission bound (`requests_in_flight_max`) counts them here.
    off_loop_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Told when one of those finishes, for a loop that stopped admitting.
    off_loop_done: Arc<tokio::sync::Notify>,
    /// The data directory, held for this node alone
    /// (`identity::lock_data_dir`) until this task and every job that
    /// writes in the directory (log syncs, snapshot writes, removals) end.
    dir_lock: Option<Arc<crate::identity::DirLock>>,
    pub(crate) net: Net,
    inbound: mpsc::Receiver<Message>,
    submit: mpsc::Receiver<Submit>,
    /// [`crate::Node::shutdown`]'s calls: apart from `submit`, whose
    /// branch is off while the node is full (a node without quorum holding
    /// its bound of requests), so that a stop never waits for requests to
    /// time out. (A channel, not a `watch`: polling an empty one costs the
    /// loop no lock.)
    stop: mpsc::Receiver<()>,
    /// `stop`'s sender is still there (every `Node` handle dropped: the
    /// closed `submit` stops the node instead).
    stop_open: bool,
    metrics: Arc<Metrics>,
    /// Refused peer messages: exported and logged, rate limited.
    refusal_log: RefusalLog,
    status: watch::Sender<NodeStatus>,
    /// Callers of `Node::snapshot_now`, with the applied point each waits
    /// for (answered once the latest checkpoint reaches it; dropped, so
    /// failed, when the node stops).
    snapshot_waiters: Vec<(InstanceId, oneshot::Sender<InstanceId>)>,
    /// Unix time (ms, this machine's clock) of this node's latest
    /// checkpoint, or of its start before the first (as Redis' LASTSAVE).
    snapshot_unix_ms: u64,
    /// Origin of the monotonic milliseconds given to the engine.
    started: Instant,
    /// The engine's stamp clock, published for `Node::stamp_ms`.
    stamps: Arc<crate::clock::StampSource>,
    /// The restore backlog was full at the last status (its filling is
    /// logged).
    backlog_full_logged: bool,
}

/// 64 random bits for the session id and the election seed. Sessions must
/// differ between processes (a restarted node must not reuse sequence
/// numbers of its previous life), so the OS generator is preferred; the clock
/// and pid are a fallback.
pub(crate) fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

impl<S: StateMachine> Driver<S> {
    /// Recovers from the data directory and connects the network.
    pub(crate) async fn open(
        cfg: NodeConfig,
        mut machine: S,
        submit: mpsc::Receiver<Submit>,
        stop: mpsc::Receiver<()>,
        metrics: Arc<Metrics>,
        listener: Option<std::net::TcpListener>,
    ) -> Result<(Driver<S>, watch::Receiver<NodeStatus>, Net), NodeError> {
        // First, the directory for this node alone: nothing else may read
        // or write it while this node runs (see `identity::lock_data_dir`).
        let mut dir_lock = crate::identity::lock_data_dir(&cfg)?;
        // Before the log is opened (which would create it): a node must not
        // start voting on a directory that lost its data.
        let identity = crate::identity::check_data_dir(&cfg)?;
        if dir_lock.is_none() && cfg.storage_fs.is_none() {
            // (Not reached: a missing directory of a node that is not new
            // is refused by the check. Locked all the same, before the log.)
            dir_lock = Some(crate::identity::lock_dir(&cfg.data_dir)?);
        }
        if dir_lock.is_some() {
            crate::identity::note_lock_holder(&cfg.data_dir);
        }
        let (wal, recovered) = match &cfg.storage_fs {
            Some(fs) => Wal::open_on(Arc::clone(fs), &cfg.data_dir, WalOptions::default())?,
            None => Wal::open(&cfg.data_dir, WalOptions::default())?,
        };
        if recovered.torn_bytes_cut > 0 {
            warn!(
                bytes = recovered.torn_bytes_cut,
                "cut a torn record off the end of the log (a write was interrupted)"
            );
        }
        let snapshot = recovered.snapshots.get(&GROUP).cloned();
        let restored =
            recover_machine(&mut machine, snapshot.as_ref(), cfg.sessions_max).map_err(|e| {
                NodeError::Recover(format!("the snapshot in {}: {e}", cfg.data_dir.display()))
            })?;
        let snapshot_end = restored.applied_end;
        if restored.skip_below > snapshot_end {
            info!(
                checkpoint = snapshot_end.0,
                durable_end = restored.skip_below.0,
                "the state machine keeps its state on its own disk, durable past the checkpoint: nothing restored, the log is applied from there"
            );
        }
        let seed = random_u64();
        let mut core = cfg.core_config(seed);
        core.rebuild = identity.rebuilding;
        core.schedule = Some(
            match crate::membership::read_join_schedule(&cfg.data_dir)
                .map_err(NodeError::DataDir)?
            {
                // A node that joined a running cluster starts from the
                // memberships a member gave it when it joined.
                Some((point, schedule)) => (point, schedule),
                // A founding member: the start-up peer list, with the peer
                // addresses in it so that they travel with every change.
                None => (
                    InstanceId(0),
                    synod_core::Schedule::new(InstanceId(0), cfg.bootstrap_membership()),
                ),
            },
        );
        if core.rebuild && cfg.peers.len() < 2 {
            return Err(NodeError::DataDir(format!(
                "node {} lost its data and is the only member: there is no peer to rebuild from",
                cfg.id.0
            )));
        }
        let applied_end = snapshot_end;
        let checksum = restored.checksum;
        let replica = Replica::recover(core, snapshot, recovered.records_of(GROUP))
            .map_err(|e| NodeError::Recover(e.to_string()))?;
        let latest = replica.schedule().latest().clone();
        if latest.was_removed(cfg.id) {
            return Err(NodeError::DataDir(format!(
                "node {} was removed from this cluster (membership epoch {}): a removed node never votes again. Refusing to start; add the machine back under a new id with a fresh data directory (synod server --join)",
                cfg.id.0, latest.epoch
            )));
        }

        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE_MAX);
        let net = match listener {
            None => Net::start(cfg.net_config(), inbound_tx).await,
            Some(listener) => {
                let listener = listener
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(listener))
                    .map_err(|e| NodeError::Net(format!("the peer listener handed in: {e}")))?;
                Net::start_with_listener(cfg.net_config(), listener, inbound_tx).await
            }
        }
        .map_err(|e| NodeError::Net(e.to_string()))?;
        let status = replica.status();
        let (status_tx, status_rx) = watch::channel(NodeStatus {
            id: cfg.id,
            members: latest.voters().collect(),
            learners: latest
                .members
                .iter()
                .filter(|m| m.role != synod_core::MemberRole::Voter)
                .map(|m| m.id)
                .collect(),
            membership_epoch: latest.epoch,
            role: status.role,
            leader: status.leader,
            promised: status.promised,
            chosen_end: status.chosen_end,
            applied_end,
            checksum,
            snapshot_end,
            snapshot_in_progress: false,
            restoring: false,
            loading: false,
            snapshot_unix_ms: unix_now_ms(),
            requests_waiting: 0,
            diverged: false,
            rebuilding: replica.rebuilding(),
            stopped: None,
            fatal: false,
        });
        let (election_min, election_max) = cfg.election_timeout();
        info!(
            node = cfg.id.0,
            members = cfg.peers.len(),
            data_dir = %cfg.data_dir.display(),
            ?election_min,
            ?election_max,
            records = recovered.records.len(),
            snapshot_end = snapshot_end.0,
            "node started: fsync on every log write (group commit); linearizable reads by read index"
        );
        if let Some(lease) = cfg.read_lease {
            info!(
                node = cfg.id.0,
                lease_ms = lease.duration_ms,
                leader_hold_ms = lease.leader_hold_ms(),
                drift_ppm = lease.drift_ppm,
                "read lease on: the leader serves reads with no network round while a majority's grant holds; \
                 safe only while every node's monotonic clock runs within drift_ppm of real time"
            );
        }
        if replica.rebuilding() {
            warn!(
                node = cfg.id.0,
                incarnation = identity.incarnation,
                "rebuilding lost data: non-voting until every other member has reported its state \
                 and this node has caught up past it"
            );
        }
        let (sync_tx, sync_rx) = mpsc::channel(1);
        let (checkpoint_tx, checkpoint_rx) = mpsc::channel(2);
        let (log_read_tx, log_read_rx) = mpsc::channel(1);
        let (restore_tx, restore_rx) = mpsc::channel(1);
        // Monotonic time 0 is now (see `Engine::new` for the wall clock).
        let started = Instant::now();
        let opts = EngineOptions {
            request_timeout: cfg.request_timeout,
            retry_interval: cfg.retry_interval,
            loading_grace: cfg.loading_grace,
            sessions_max: cfg.sessions_max,
            unsafe_local_reads: cfg.unsafe_local_reads,
            local_clock_reads: cfg.local_clock_reads,
            wall_clock: cfg.wall_clock.clone(),
            mono_clock: Some(MonoClock::from_fn(move || {
                crate::clock::mono_ms_since(started)
            })),
            inject_admit_duplicates: false,
            inject_session_reapply: false,
            inject_on_disk_reapply: false,
            inject_release_past_checkpoint: false,
            read_back_released: true,
            inject_log_read_shift: false,
            inject_local_permit_without_lease: false,
        };
        let persist = Persister::new(GROUP, wal, cfg.snapshot_policy, snapshot_end);
        let engine = Engine::new(
            opts,
            replica,
            persist,
            machine,
            restored,
            random_u64(),
            0,
            Arc::clone(&metrics),
        );
        let stamps = Arc::new(crate::clock::StampSource::new(
            engine.stamp_clock(),
            cfg.wall_clock.clone(),
            started,
        ));
        let local_reads =
            crate::LocalReads::new(started, cfg.wall_clock.clone(), Arc::clone(&metrics));
        let driver = Driver {
            stamps,
            local_reads,
            backlog_full_logged: false,
            identity,
            members: crate::membership::MemberState::default(),
            stopping: None,
            started,
            engine,
            sync_tx,
            sync_pending: None,
            removal_stop: None,
            sync_rx,
            checkpoint_started: Instant::now(),
            checkpoint_tx,
            checkpoint_rx,
            log_read_tx,
            log_read_rx,
            restore_tx,
            restore_rx,
            restore_running: false,
            off_loop_queries: Arc::new(tokio::sync::Semaphore::new(OFF_LOOP_QUERIES_MAX)),
            off_loop_waiting: Arc::default(),
            off_loop_done: Arc::default(),
            dir_lock: dir_lock.map(Arc::new),
            net: net.clone(),
            inbound,
            submit,
            stop,
            stop_open: true,
            metrics,
            refusal_log: RefusalLog::new(),
            status: status_tx,
            snapshot_waiters: Vec::new(),
            snapshot_unix_ms: unix_now_ms(),
            cfg,
        };
        Ok((driver, status_rx, net))
    }

    /// The engine's stamp clock as this driver publishes it (see
    /// `Node::stamp_ms`).
    pub(crate) fn stamp_source(&self) -> Arc<crate::clock::StampSource> {
        Arc::clone(&self.stamps)
    }

    /// The handle on the permit this driver publishes for reads served
    /// outside the loop (see `local_reads.rs`).
    pub(crate) fn local_reads(&self) -> crate::LocalReads {
        self.local_reads.clone()
    }

    /// A second sender of the status, for the task that reports a panic of
    /// this one (see `Node::start`).
    pub(crate) fn status_sender(&self) -> watch::Sender<NodeStatus> {
        self.status.clone()
    }

    /// The event loop. Returns on shutdown, or with the fatal error that
    /// stopped the node.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        let result = self.run_loop().await;
        // Stopping: no read is served outside the loop from here on.
        self.local_reads.publish(None);
        let reason = match &result {
            Ok(()) => "shut down".to_string(),
            Err(err) => {
                error!(
                    node = self.cfg.id.0,
                    "node stopped on a fatal error: {err}. {}",
                    fatal_advice(err)
                );
                format!("{err}. {}", fatal_advice(err))
            }
        };
        // A snapshot file being written under its cap goes on at full speed
        // from now: the stop waits for it below (after the log sync).
        self.engine.persist.lift_write_rate();
        // Wait for a write in flight, so a clean stop leaves nothing half done.
        // Bounded: a stop must never hang on a report that does not come (a
        // node that stays half alive after a fatal error is worse than one
        // that leaves a stray file, which recovery ignores).
        if let Some((job, _, _)) = self.sync_pending.take() {
            let result = catch_job_panic("log sync", || job.run());
            self.engine.persist.sync_finished_at_stop(job, result);
        } else if self.engine.persist.syncing() {
            match tokio::time::timeout(STOP_WAIT, self.sync_rx.recv()).await {
                Ok(Some(done)) => self
                    .engine
                    .persist
                    .sync_finished_at_stop(done.job, done.result),
                Ok(None) => {}
                Err(_) => warn!("stopping without the report of a log sync still out"),
            }
        }
        // A checkpoint step may be running on a blocking thread: let it end,
        // so no file of this data directory changes after `run` returns.
        // Step 1 or step 3 runs (each reports once), and beside step 1 a
        // removal that only empties the trash may run (it reports once
        // too). A removal cutting large files a step at a time ends at the
        // next cut: what it leaves stays in the trash, removed at the next
        // start.
        let reports = usize::from(self.engine.persist.stop_checkpoint())
            + usize::from(self.engine.persist.trash_removal_out());
        if reports > 0 {
            if let Some(stop) = &self.removal_stop {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for _ in 0..reports {
                if tokio::time::timeout(STOP_WAIT, self.checkpoint_rx.recv())
                    .await
                    .is_err()
                {
                    warn!("stopping without the report of a checkpoint step still out");
                    break;
                }
            }
        }
        // A restore of the state machine may be running: let it end too (an
        // on-disk state machine writes its own files in it, and a restart
        // in this process must not open them meanwhile). Not bounded: the
        // job always reports (a panic included), however long it takes.
        if self.restore_running {
            info!(
                node = self.cfg.id.0,
                "waiting for the state machine's restore to end before stopping"
            );
            let _ = self.restore_rx.recv().await;
            self.restore_running = false;
        }
        // Records nothing waited for (chosen marks) may not be durable yet.
        // A removed node syncs too: the chosen change that removed it must
        // be on disk, so that it refuses to start again.
        if matches!(result, Ok(()) | Err(NodeError::Removed(_))) {
            let _ = self.engine.persist.final_sync();
        }
        self.engine.fail_all(RequestError::Stopped(reason.clone()));
        self.deliver();
        self.fail_member_waiters(&reason);
        self.submit.close();
        while let Ok(Submit::Request { reply, .. }) = self.submit.try_recv() {
            let _ = reply.send(Err(RequestError::Stopped(reason.clone())));
        }
        self.net.shutdown().await;
        // The directory is free once nothing of this node writes in it: a
        // caller told of the stop below may start a node on it at once. (A
        // job still out past `STOP_WAIT` holds it until it ends.)
        self.dir_lock = None;
        let fatal = result.is_err();
        self.status.send_modify(|s| {
            s.stopped = Some(reason);
            s.fatal = fatal;
        });
        result
    }

    async fn run_loop(&mut self) -> Result<(), NodeError> {
        let mut ticker = tokio::time::interval(self.cfg.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The core's own wake-up (`Replica::wake_at_ms`, in `mono_ms` time):
        // one timer, reset only when the time it asks for changes.
        let wake = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(wake);
        let mut wake_armed: Option<u64> = None;
        loop {
            // The pass before left the engine as it stays while the loop
            // waits: reads may be served outside it until an input comes.
            self.local_reads.publish(self.engine.local_read_permit());
            if self.sync_pending.is_some() {
                self.local_reads.publish(None);
                self.run_pending_sync().await?;
                continue;
            }
            let wake_at = self.engine.replica.wake_at_ms();
            if wake_at != wake_armed {
                if let Some(ms) = wake_at {
                    let at = self.started + std::time::Duration::from_millis(ms);
                    wake.as_mut().reset(at.into());
                }
                wake_armed = wake_at;
            }
            // A node refusing requests while it loads a snapshot takes them
            // in to refuse them at once, however many wait.
            let admit = self.requests_in_flight() < self.cfg.requests_in_flight_max
                || self.engine.refusing_requests();
            // Full only because of reads answered off the loop: wake when
            // one finishes (nothing else may come).
            let off_loop_full = !admit && self.off_loop_waiting.load(Relaxed) > 0;
            let input = tokio::select! {
                biased;
                Some(done) = self.sync_rx.recv() => Input::Synced(done),
                Some(step) = self.checkpoint_rx.recv() => Input::Checkpoint(step),
                Some(read) = self.log_read_rx.recv() => Input::LogRead(read),
                Some(restored) = self.restore_rx.recv() => Input::Restored(restored),
                stop = self.stop.recv(), if self.stop_open => Input::Stop(stop),
                Some(msg) = self.inbound.recv() => Input::Message(msg),
                submit = self.submit.recv(), if admit => Input::Submit(submit),
                () = self.off_loop_done.notified(), if off_loop_full => Input::OffLoopDone,
                () = &mut wake, if wake_armed.is_some() => Input::Wake,
                _ = ticker.tick() => Input::Tick,
            };
            // Whatever came, the permit goes before the loop acts on it, in
            // one place for every input (`local_reads.rs`: nothing the loop
            // does may change what a permitted read answers while the
            // permit stands). It is published again after this pass.
            self.local_reads.publish(None);
            match input {
                Input::Synced(done) => self.sync_done(done)?,
                Input::Checkpoint(step) => self.checkpoint_step(step)?,
                Input::LogRead((read, result)) => self.engine.log_read_done(&read, result),
                Input::Restored(restored) => self.restored(restored)?,
                Input::Stop(stop) => match stop {
                    Some(()) => {
                        if !self.begin_stop() {
                            return Ok(());
                        }
                    }
                    None => self.stop_open = false,
                },
                Input::Message(msg) => {
                    tracing::trace!(
                        node = self.cfg.id.0,
                        from = msg.from.0,
                        body = msg.body.name(),
                        "message"
                    );
                    // A fresh time before every input (read leases; see
                    // `Replica::set_time`): a stale one is unsafe.
                    self.engine.set_time(self.mono_ms());
                    self.engine.replica.step(msg);
                    for _ in 1..INBOUND_BATCH_MAX {
                        match self.inbound.try_recv() {
                            Ok(msg) => {
                                tracing::trace!(
                                    node = self.cfg.id.0,
                                    from = msg.from.0,
                                    body = msg.body.name(),
                                    "message"
                                );
                                self.engine.set_time(self.mono_ms());
                                self.engine.replica.step(msg)
                            }
                            Err(_) => break,
                        }
                    }
                }
                Input::Submit(submit) => {
                    self.engine.set_time(self.mono_ms());
                    match submit {
                        Some(submit) => self.take_submit(submit),
                        None => {
                            if !self.begin_stop() {
                                return Ok(());
                            }
                        }
                    }
                    for _ in 1..SUBMIT_BATCH_MAX {
                        if self.requests_in_flight() >= self.cfg.requests_in_flight_max {
                            break;
                        }
                        match self.submit.try_recv() {
                            Ok(submit) => self.take_submit(submit),
                            Err(_) => break,
                        }
                    }
                }
                // Only to look at `admit` again.
                Input::OffLoopDone => {}
                Input::Wake => {
                    // Fired: the next loop arms it again if the core still
                    // asks (its clock, floored to ms, may lag the timer's).
                    wake_armed = None;
                    self.engine.set_time(self.mono_ms());
                }
                Input::Tick => {
                    let net = &self.net;
                    self.refusal_log.maybe_log(
                        Instant::now(),
                        self.engine.replica.refusals(),
                        || net.stats(),
                        &self.metrics,
                    );
                    self.engine.set_time(self.mono_ms());
                    if self.engine.tick() {
                        self.check_member_waiters();
                    }
                }
            }
            let started = Instant::now();
            self.process_ready()?;
            let took = started.elapsed();
            if took >= SLOW_STEP {
                warn!(
                    ms = took.as_millis() as u64,
                    "acting on the core's output took long"
                );
            }
            if let Some((deadline, to)) = self.stopping {
                if self.handed_over(to) {
                    info!(node = self.cfg.id.0, "leadership handed over; stopping");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    warn!(
                        node = self.cfg.id.0,
                        "leadership transfer did not finish; stopping anyway"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Acts on one submission from a handle.
    fn take_submit(&mut self, submit: Submit) {
        match submit {
            Submit::Request {
                kind,
                client,
                payload,
                reply,
            } => self.engine.request_with(kind, client, payload, reply),
            Submit::StaleRead { payload, reply } => self.engine.read_stale(payload, reply),
            Submit::Member(member) => self.member_submit(member),
            Submit::Snapshot(reply) => self.snapshot_submit(reply),
            Submit::Master(master) => self.master_submit(master),
        }
    }

    /// A stop was asked: a leader hands over first (returns true: the loop
    /// runs on until that is done or an election timeout passed); anyone
    /// else, or a second ask, stops now (false).
    fn begin_stop(&mut self) -> bool {
        if self.stopping.is_some() {
            return false;
        }
        let Some(to) = self.start_hand_over() else {
            return false;
        };
        let wait = self.cfg.tick * u32::try_from(self.cfg.election_ticks).unwrap_or(u32::MAX);
        self.stopping = Some((Instant::now() + wait, to));
        true
    }

    /// The origin of the engine's monotonic milliseconds.
    pub(crate) fn started_at(&self) -> Instant {
        self.started
    }

    /// The requests counted against `requests_in_flight_max`: those the
    /// engine holds and the reads answered off the loop not yet finished.
    fn requests_in_flight(&self) -> usize {
        self.engine.requests_waiting() + self.off_loop_waiting.load(Relaxed)
    }

    /// Monotonic milliseconds since this node started.
    fn mono_ms(&self) -> u64 {
        crate::clock::mono_ms_since(self.started)
    }

    /// Hands the engine's answers to their callers: at once, or, for a read
    /// answered from a view, from a blocking thread.
    fn deliver(&mut self) {
        for answer in self.engine.take_effects().answers {
            self.deliver_one(answer);
        }
    }

    fn deliver_one(&self, answer: Answer<Reply>) {
        match answer {
            Answer::Done(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::OffLoop(reply, job) => {
                let turns = Arc::clone(&self.off_loop_queries);
                let waiting = OffLoopWaiting::new(&self.off_loop_waiting, &self.off_loop_done);
                tokio::spawn(async move {
                    let _waiting = waiting;
                    // The semaphore is never closed, so a turn always comes.
                    let Ok(_turn) = turns.acquire_owned().await else {
                        return;
                    };
                    // Its caller gave up meanwhile (a timeout, a closed
                    // connection): the work and the view go unused.
                    if reply.is_closed() {
                        return;
                    }
                    match tokio::task::spawn_blocking(job).await {
                        Ok(output) => {
                            let _ = reply.send(Ok(output));
                        }
                        // The job panicked (a bug in the state machine's
                        // read): the client gets an error rather than a
                        // dropped request; the node is unaffected (the view
                        // is a copy).
                        Err(err) => {
                            error!("a read answered off the event loop failed: {err}");
                            let _ = reply.send(Err(RequestError::ReadFailed(err.to_string())));
                        }
                    }
                });
            }
        }
    }

    /// Carries out the core's effects until it has nothing more to say (the
    /// engine decides; this task sends, starts storage jobs and answers).
    fn process_ready(&mut self) -> Result<(), NodeError> {
        self.engine.set_time(self.mono_ms());
        let net = &self.net;
        let result = self.engine.process_ready(&mut |msg| {
            // A message too large for a frame can never be sent: the core
            // bounds its messages below the frame limit (checked in
            // `NodeConfig::validate`), so this is a bug. `Net::send` counted
            // and logged it; stopping the node (rather than going on without
            // it) makes it impossible to miss, and the rest of the cluster
            // elects a leader without this node.
            net.send(msg).map_err(|err| {
                NodeError::Net(format!(
                    "{err}; every message should fit (a bug), stopping the node"
                ))
            })
        });
        // Whatever was decided before an error is still carried out (answers
        // given, storage jobs started): the engine's state already counts on it.
        let effects = self.engine.take_effects();
        if !effects.checkpointed.is_empty() {
            self.snapshot_unix_ms = unix_now_ms();
        }
        for done in &effects.checkpointed {
            let took = self.checkpoint_started.elapsed();
            self.metrics.checkpoint_seconds.observe(took.as_secs_f64());
            info!(
                applied_end = done.meta.applied_end.0,
                bytes = done.bytes,
                ms = took.as_millis() as u64,
                records = done.records,
                "checkpoint written"
            );
        }
        self.start_io(effects.io);
        if let Some(job) = self.engine.take_restore_job() {
            self.start_restore(job);
        }
        for answer in effects.answers {
            self.deliver_one(answer);
        }
        if !effects.member_outcomes.is_empty() {
            self.member_outcomes(effects.member_outcomes);
        }
        if effects.leader_changed {
            self.metrics.leader_changes.fetch_add(1, Relaxed);
            info!(node = self.cfg.id.0, leader = ?self.engine.leader().map(|l| l.0), "leader changed");
        }
        result?;
        self.follow_membership().map_err(NodeError::Removed)?;
        self.check_member_waiters();
        if self.identity.rebuilding && !self.engine.replica.rebuilding() {
            // The core votes only after its raised promise is durable, so a
            // crash before this write merely rebuilds again (safe, slower).
            // One small fsynced file, once: fine on the event loop.
            crate::identity::finish_rebuild(&self.cfg, &mut self.identity)?;
            info!(
                node = self.cfg.id.0,
                incarnation = self.identity.incarnation,
                "rebuild finished: this node votes again"
            );
        }
        self.publish_status();
        // After the status: a caller answered sees the new snapshot point.
        self.answer_snapshot_waiters();
        Ok(())
    }

    /// `Node::snapshot_now`: asks the engine for a snapshot of everything
    /// applied; answered by [`Driver::answer_snapshot_waiters`] once the
    /// checkpoint is durable (at once when the latest already covers it).
    fn snapshot_submit(&mut self, reply: oneshot::Sender<InstanceId>) {
        let through = self.engine.request_snapshot();
        info!(
            node = self.cfg.id.0,
            applied_end = through.0,
            "snapshot asked for"
        );
        self.snapshot_waiters.push((through, reply));
    }

    /// Answers the `snapshot_now` callers whose point the latest durable
    /// checkpoint covers.
    fn answer_snapshot_waiters(&mut self) {
        let end = self.engine.persist.snapshot_end();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshot_waiters)
            .into_iter()
            .partition(|(through, _)| *through <= end);
        self.snapshot_waiters = waiting;
        if done.is_empty() {
            return;
        }
        // What is on disk is this node's whole applied state as of now,
        // whether this request wrote it or the latest checkpoint already
        // covered it (nothing applied since): LASTSAVE's meaning.
        self.snapshot_unix_ms = unix_now_ms();
        for (_, reply) in done {
            let _ = reply.send(end);
        }
    }

    /// Starts the storage work the engine found due, on blocking threads.
    fn start_io(&mut self, io: Vec<Io>) {
        for io in io {
            match io {
                Io::WriteSnapshot(mut write) => {
                    self.checkpoint_started = Instant::now();
                    let tx = self.checkpoint_tx.clone();
                    let held = self.dir_lock.clone();
                    tokio::task::spawn_blocking(move || {
                        // A panic in the job (the state machine's snapshot
                        // encoder, a bug) must still report, as a failed
                        // write: else the checkpoint stays busy forever, no
                        // snapshot is ever taken again and the log grows
                        // without bound, with no error. A failed snapshot
                        // write is fatal (`snapshot_written`).
                        let result = catch_job_panic("snapshot write", || write.run());
                        release_after_job(held);
                        let _ = tx.blocking_send(CheckpointStep::Written(write.checkpoint, result));
                    });
                }
                // On the loop only while this follower has no client of its
                // own waiting: a loop blocked in fdatasync answers nobody,
                // and a follower whose syncs run back to back under load
                // would hold every request it forwards, every chosen notice
                // and every reply for most of a sync each (SET at 50
                // clients on one follower: 31-33k/s with every follower
                // sync on the loop, 35-40k/s with this rule; with every
                // sync on a thread, the leader's followers, which have no
                // clients, cost it 42k/s against 49-50k/s on the loop). The
                // choice is made per sync, when it starts: one that starts
                // with nothing waiting still holds the loop. Where the sync
                // runs changes only when its effects are taken, never
                // which (one sync at a time either way: `Persister::kick`).
                // A checkpoint's marker job (several fsyncs and a new
                // segment, up to ~100 ms under load at millions of keys)
                // always runs on a thread.
                Io::Sync { job, through }
                    if self.cfg.sync_on_event_loop
                        && !job.is_checkpoint()
                        && self.engine.leader() != Some(self.cfg.id)
                        && self.engine.requests_waiting() == 0 =>
                {
                    debug_assert!(self.sync_pending.is_none(), "one log sync at a time");
                    self.metrics.log_syncs_on_loop.fetch_add(1, Relaxed);
                    self.sync_pending = Some((job, through, Instant::now()));
                }
                Io::Sync { job, through } => {
                    self.metrics.log_syncs_on_thread.fetch_add(1, Relaxed);
                    let tx = self.sync_tx.clone();
                    let started = Instant::now();
                    let held = self.dir_lock.clone();
                    tokio::task::spawn_blocking(move || {
                        // As for the snapshot write: a panic is a failure
                        // reported (fatal), never a report that never comes.
                        let result = catch_job_panic("log sync", || job.run());
                        release_after_job(held);
                        let _ = tx.blocking_send(SyncDone {
                            job,
                            result,
                            through,
                            started,
                        });
                    });
                }
                Io::ReadLog(read) => {
                    let tx = self.log_read_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        // A panic is a failed read (a snapshot answers the
                        // need instead), never a report that never comes.
                        let result = catch_job_panic("log read", || read.run());
                        let _ = tx.blocking_send((read, result));
                    });
                }
                Io::Remove(obsolete) => {
                    self.removal_stop = Some(obsolete.stopper());
                    let tx = self.checkpoint_tx.clone();
                    let trash_only = obsolete.is_trash_only();
                    let held = self.dir_lock.clone();
                    tokio::task::spawn_blocking(move || {
                        let result =
                            catch_job_panic("removal of superseded files", || obsolete.remove());
                        release_after_job(held);
                        // The last step of a checkpoint: what it freed (the
                        // compacted log, tree nodes copied while the
                        // snapshot was read) goes back to the system. Not
                        // after a removal that only emptied the trash (it
                        // freed no memory, and drops may come often).
                        if !trash_only {
                            release_free_heap();
                        }
                        let _ = tx.blocking_send(CheckpointStep::Cleaned(result));
                    });
                }
            }
        }
    }

    /// Runs the pending log sync on the event loop, as Redis's
    /// `appendfsync always` does: first every other task of this thread
    /// runs (`yield_now`), so the peer links send the accepts and the
    /// connections write the replies that the step before produced, and
    /// the fdatasync overlaps the peers' own; then the sync, with no thread
    /// hand-off and no wake-up on either side; then its effects.
    async fn run_pending_sync(&mut self) -> Result<(), NodeError> {
        tokio::task::yield_now().await;
        let Some((job, through, started)) = self.sync_pending.take() else {
            return Ok(());
        };
        let result = catch_job_panic("log sync", || job.run());
        self.sync_done(SyncDone {
            job,
            result,
            through,
            started,
        })?;
        self.process_ready()
    }

    fn checkpoint_step(&mut self, step: CheckpointStep) -> Result<(), NodeError> {
        match step {
            CheckpointStep::Written(pending, result) => {
                self.engine.snapshot_written(pending, result)?;
            }
            CheckpointStep::Cleaned(result) => {
                self.removal_stop = None;
                self.engine.cleaned(result);
            }
        }
        Ok(())
    }

    /// Restores the state machine from a peer's snapshot on a blocking
    /// thread: it may read the whole state (gigabytes), and the loop must
    /// go on voting, accepting and sending heartbeats meanwhile.
    fn start_restore(&mut self, job: crate::engine::RestoreJob<S>) {
        info!(
            node = self.cfg.id.0,
            bytes = job.len(),
            "restoring the state machine from a peer's snapshot, off the event loop"
        );
        let tx = self.restore_tx.clone();
        self.restore_running = true;
        tokio::task::spawn_blocking(move || {
            // A panic in `restore` must still report (fatal): else the node
            // would wait for its state machine forever, half alive.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                .map_err(|panic| {
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_string())
                });
            let _ = tx.blocking_send(outcome);
        });
    }

    fn restored(&mut self, outcome: RestoreOutcome<S>) -> Result<(), NodeError> {
        self.restore_running = false;
        let (machine, result) = outcome.map_err(|reason| {
            NodeError::Stopped(format!("the state machine panicked in restore: {reason}"))
        })?;
        self.engine.set_time(self.mono_ms());
        self.engine.restored(machine, result)
    }

    fn sync_done(&mut self, done: SyncDone) -> Result<(), NodeError> {
        // A checkpoint's marker job is timed with the whole checkpoint
        // (`checkpoint written`), not as a log sync.
        if !done.job.is_checkpoint() {
            self.metrics
                .fsync_seconds
                .observe(done.started.elapsed().as_secs_f64());
        }
        self.engine.set_time(self.mono_ms());
        // An fsync error poisons the log: fatal, never retried.
        self.engine.sync_done(done.job, done.result, done.through)
    }

    fn publish_status(&mut self) {
        self.stamps.publish(self.engine.stamp_clock());
        let replica = &self.engine.replica;
        let core = replica.status();
        self.metrics.chosen_end.store(core.chosen_end.0, Relaxed);
        // The core's count; the series adds the reads served outside the
        // loop when scraped (`Metrics::loop_lease_reads`).
        self.metrics
            .loop_lease_reads
            .store(replica.lease_reads(), Relaxed);
        self.metrics
            .vouched_reads
            .store(replica.vouched_reads(), Relaxed);
        let (holds, hold_timeouts) = replica.batch_holds();
        self.metrics.batch_holds.store(holds, Relaxed);
        self.metrics
            .batch_hold_timeouts
            .store(hold_timeouts, Relaxed);
        let transfers = replica.snapshot_transfer_stats();
        self.metrics
            .snapshot_chunks_ignored
            .store(transfers.chunks_ignored, Relaxed);
        self.metrics
            .snapshot_digest_mismatches
            .store(transfers.digest_mismatches, Relaxed);
        self.metrics
            .snapshot_spool_errors
            .store(transfers.spool_errors, Relaxed);
        self.metrics
            .accepts_deferred
            .store(transfers.accepts_deferred, Relaxed);
        // Logged as the backlog fills (once per restore: it stays full until
        // the restore ends, or a newer snapshot replaces what it held).
        let full = replica.restore_backlog_full();
        if full && !self.backlog_full_logged {
            tracing::warn!(
                backlog_bytes = replica.restore_backlog_bytes(),
                bound = self.cfg.restore_backlog_bytes,
                "the log values held while the state machine is restored from a peer's snapshot reached --restore-backlog-bytes: this node votes again once the restore ends"
            );
        }
        self.backlog_full_logged = full;
        self.metrics
            .restore_backlog_bytes
            .store(replica.restore_backlog_bytes(), Relaxed);
        let applied_end = self.engine.applied_end();
        self.metrics.applied_end.store(applied_end.0, Relaxed);
        let membership = replica.schedule().latest().clone();
        let status = NodeStatus {
            id: self.cfg.id,
            members: membership.voters().collect(),
            learners: membership
                .members
                .iter()
                .filter(|m| m.role != synod_core::MemberRole::Voter)
                .map(|m| m.id)
                .collect(),
            membership_epoch: membership.epoch,
            role: core.role,
            leader: core.leader,
            promised: core.promised,
            chosen_end: core.chosen_end,
            applied_end,
            checksum: self.engine.checksum(),
            snapshot_end: self.engine.persist.snapshot_end(),
            snapshot_in_progress: self.engine.persist.checkpoint_in_progress()
                || self.engine.persist.snapshot_asked(),
            restoring: self.engine.restoring(),
            loading: self.engine.loading(),
            snapshot_unix_ms: self.snapshot_unix_ms,
            requests_waiting: self.requests_in_flight(),
            diverged: self.engine.diverged(),
            rebuilding: replica.rebuilding(),
            stopped: None,
            fatal: false,
        };
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }
}

/// Returns the free pages inside the heap to the system (glibc only: its
/// `free` gives back only the top of an arena, so memory freed in bulk in
/// the middle stays resident until reused). Runs on a blocking thread; it
/// holds each arena's lock while it walks that arena's free chunks. A
/// program whose global allocator is another one (the `synod` binary uses
/// jemalloc, which returns freed pages by itself) trims only what glibc
/// holds for C code, little and quickly.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = Instant::now();
        // SAFETY: malloc_trim only walks and madvises glibc's own free
        // lists under their locks; it has no preconditions on the caller.
        let released = unsafe { libc::malloc_trim(0) };
        debug!(
            released = released != 0,
            ms = started.elapsed().as_millis() as u64,
            "free heap pages returned after a checkpoint"
        );
    }
}

/// Lets go of a blocking job's hold on the data directory's lock once the
/// job's work there is done, before it reports: a stop that waited for the
/// report then returns with the directory free (before, the hold dropped
/// after the report, and a node started on the directory right after a stop
/// was sometimes refused as "in use by another running node").
fn release_after_job<T>(held: T) {
    drop(held);
}

/// Runs a storage job off the loop, turning a panic in it into an error
/// (`StorageError::Io` naming the job), so the loop always hears back.
fn catch_job_panic<T>(
    what: &str,
    job: impl FnOnce() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        error!("the {what} job panicked: {reason}");
        Err(StorageError::Io {
            path: std::path::PathBuf::from(format!("<{what} job>")),
            source: std::io::Error::other(format!("the job panicked: {reason}")),
        })
    })
}

/// This machine's Unix time in ms (for LASTSAVE-style reports only; never
/// for decisions).
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
