//! The task that drives one replica: it feeds the core its inputs (peer
//! messages, ticks, proposals, durability notices) and carries out each
//! `Ready` in the order the core documents:
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
//!    instead (see `Driver::serve_read`).
//! 8. `rejected_reads`: retry them later.

use crate::clock::StampClock;
use crate::config::{NodeConfig, GROUP};
use crate::envelope::{Envelope, Kind, Outcome, Sessions, HEADER_BYTES as ENVELOPE_HEADER_BYTES};
use crate::metrics::{Metrics, RefusalLog};
use crate::node::{NodeError, NodeStatus, RequestError};
use crate::persist::{Io, PendingCheckpoint, Persister, SnapshotEncoder};
use crate::state_machine::{ApplyContext, StateMachine};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use synod_core::{
    Checksum, DivergenceKind, InstanceId, Message, NodeId, PersistSeq, ReadId, RejectReason,
    Replica, RoleKind, Snapshot, SnapshotMeta,
};
use synod_net::Net;
use synod_storage::{StorageError, SyncJob, Wal, WalOptions};
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
/// Waiting requests are checked for retry and expiry this often (in ticks).
const SCAN_TICKS: u64 = 10;
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
        payload: Bytes,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    },
    Member(crate::membership::MemberSubmit),
    Shutdown,
}

struct Waiter {
    envelope: Bytes,
    reply: oneshot::Sender<Result<Bytes, RequestError>>,
    deadline: Instant,
    next_retry: Instant,
}

/// A linearizable read waiting for the core's read index.
struct ReadWaiter {
    query: Bytes,
    reply: oneshot::Sender<Result<Bytes, RequestError>>,
    deadline: Instant,
    /// When to submit it again if the core has not answered (a refused read
    /// is due at once).
    next_retry: Instant,
}

/// A step of a checkpoint that ran off the event loop.
enum CheckpointStep {
    /// Step 1: the snapshot file is durable (or could not be written).
    Written(PendingCheckpoint, Result<(), StorageError>),
    /// Step 3: superseded files deleted.
    Cleaned(Result<(), StorageError>),
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
    /// The data directory's identity; `rebuilding` is cleared (durably) once
    /// the core votes again.
    identity: synod_storage::Identity,
    pub(crate) replica: Replica,
    /// Membership operations waiting, and the peer set given to `net`.
    pub(crate) members: crate::membership::MemberState,
    /// Set at a clean stop while leadership is handed over (to whom): stop
    /// by then.
    stopping: Option<(Instant, NodeId)>,
    machine: S,
    sessions: Sessions,
    /// This process's session: its requests' envelopes carry it.
    session: u64,
    next_seq: u64,
    waiters: BTreeMap<u64, Waiter>,
    /// Reads by the id given to the core (fresh for every submission).
    reads: BTreeMap<u64, ReadWaiter>,
    next_read: u64,
    /// When to append, sync and checkpoint (the same code the simulator
    /// runs); this task carries out its I/O on blocking threads.
    persist: Persister,
    sync_tx: mpsc::Sender<SyncDone>,
    sync_rx: mpsc::Receiver<SyncDone>,
    /// When the running checkpoint started (for its log line).
    checkpoint_started: Instant,
    checkpoint_tx: mpsc::Sender<CheckpointStep>,
    checkpoint_rx: mpsc::Receiver<CheckpointStep>,
    /// Turns for reads answered off the loop.
    off_loop_queries: Arc<tokio::sync::Semaphore>,
    pub(crate) applied_end: InstanceId,
    checksum: Checksum,
    leader: Option<NodeId>,
    diverged: bool,
    ticks: u64,
    pub(crate) net: Net,
    inbound: mpsc::Receiver<Message>,
    submit: mpsc::Receiver<Submit>,
    metrics: Arc<Metrics>,
    /// Refused peer messages: exported and logged, rate limited.
    refusal_log: RefusalLog,
    status: watch::Sender<NodeStatus>,
    /// Bounds this node's stamps by its monotonic clock (see `StampClock`).
    stamp_clock: StampClock,
    /// Origin of the monotonic milliseconds given to `stamp_clock`.
    started: Instant,
}

/// 64 random bits for the session id and the election seed. Sessions must
/// differ between processes (a restarted node must not reuse sequence
/// numbers of its previous life), so the OS generator is preferred; the clock
/// and pid are a fallback.
fn random_u64() -> u64 {
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
        metrics: Arc<Metrics>,
    ) -> Result<(Driver<S>, watch::Receiver<NodeStatus>, Net), NodeError> {
        // Before the log is opened (which would create it): a node must not
        // start voting on a directory that lost its data.
        let identity = crate::identity::check_data_dir(&cfg)?;
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
        let mut sessions = Sessions::new(cfg.sessions_max);
        let mut snapshot_end = InstanceId(0);
        if let Some(snapshot) = &snapshot {
            let (table, user) = Sessions::decode_snapshot(&snapshot.data, cfg.sessions_max)
                .map_err(|e| {
                    NodeError::Recover(format!(
                        "the snapshot in {} does not decode: {e}",
                        cfg.data_dir.display()
                    ))
                })?;
            machine.restore(&user).map_err(|e| {
                NodeError::Recover(format!(
                    "the state machine refused the snapshot in {}: {e}",
                    cfg.data_dir.display()
                ))
            })?;
            sessions = table;
            snapshot_end = snapshot.meta.applied_end;
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
        let checksum = snapshot
            .as_ref()
            .map_or(Checksum::default(), |s| s.meta.checksum);
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
        let net = Net::start(cfg.net_config(), inbound_tx)
            .await
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
        // Monotonic time 0 is now: the wall clock read now is the one this
        // process trusts (the residual assumption of `StampClock`); a log
        // clock recovered ahead of it raises the bound.
        let started = Instant::now();
        let mut stamp_clock = StampClock::new(cfg.wall_clock.now_ms(), 0);
        stamp_clock.observe_log(sessions.time_ms, 0);
        let driver = Driver {
            identity,
            members: crate::membership::MemberState::default(),
            stopping: None,
            stamp_clock,
            started,
            session: random_u64(),
            next_seq: 1,
            waiters: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            replica,
            machine,
            sessions,
            persist: Persister::new(GROUP, wal, cfg.snapshot_policy, snapshot_end),
            sync_tx,
            sync_rx,
            checkpoint_started: Instant::now(),
            checkpoint_tx,
            checkpoint_rx,
            off_loop_queries: Arc::new(tokio::sync::Semaphore::new(OFF_LOOP_QUERIES_MAX)),
            applied_end,
            checksum,
            leader: None,
            diverged: false,
            ticks: 0,
            net: net.clone(),
            inbound,
            submit,
            metrics,
            refusal_log: RefusalLog::new(),
            status: status_tx,
            cfg,
        };
        Ok((driver, status_rx, net))
    }

    /// End of the prefix applied to the state machine.
    pub(crate) fn applied_end(&self) -> InstanceId {
        self.applied_end
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
        // Wait for a write in flight, so a clean stop leaves nothing half done.
        // Bounded: a stop must never hang on a report that does not come (a
        // node that stays half alive after a fatal error is worse than one
        // that leaves a stray file, which recovery ignores).
        if self.persist.syncing() {
            match tokio::time::timeout(STOP_WAIT, self.sync_rx.recv()).await {
                Ok(Some(done)) => self.persist.sync_finished_at_stop(done.job, done.result),
                Ok(None) => {}
                Err(_) => warn!("stopping without the report of a log sync still out"),
            }
        }
        // A checkpoint step may be running on a blocking thread: let it end,
        // so no file of this data directory changes after `run` returns.
        if self.persist.stop_checkpoint() {
            // Step 1 or step 3 runs; either reports once.
            if tokio::time::timeout(STOP_WAIT, self.checkpoint_rx.recv())
                .await
                .is_err()
            {
                warn!("stopping without the report of a checkpoint step still out");
            }
        }
        // Records nothing waited for (chosen marks) may not be durable yet.
        // A removed node syncs too: the chosen change that removed it must
        // be on disk, so that it refuses to start again.
        if matches!(result, Ok(()) | Err(NodeError::Removed(_))) {
            let _ = self.persist.final_sync();
        }
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            let _ = waiter
                .reply
                .send(Err(RequestError::Stopped(reason.clone())));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            let _ = read.reply.send(Err(RequestError::Stopped(reason.clone())));
        }
        self.fail_member_waiters(&reason);
        self.submit.close();
        while let Ok(Submit::Request { reply, .. }) = self.submit.try_recv() {
            let _ = reply.send(Err(RequestError::Stopped(reason.clone())));
        }
        self.net.shutdown().await;
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
        loop {
            let admit = self.waiters.len() + self.reads.len() < self.cfg.requests_in_flight_max;
            tokio::select! {
                biased;
                Some(done) = self.sync_rx.recv() => self.sync_done(done)?,
                Some(step) = self.checkpoint_rx.recv() => self.checkpoint_step(step)?,
                Some(msg) = self.inbound.recv() => {
                    tracing::trace!(node = self.cfg.id.0, from = msg.from.0, body = msg.body.name(), "message");
                    // A fresh time before every input (read leases; see
                    // `Replica::set_time`): a stale one is unsafe.
                    self.replica.set_time(self.mono_ms());
                    self.replica.step(msg);
                    for _ in 1..INBOUND_BATCH_MAX {
                        match self.inbound.try_recv() {
                            Ok(msg) => {
                                tracing::trace!(node = self.cfg.id.0, from = msg.from.0, body = msg.body.name(), "message");
                                self.replica.set_time(self.mono_ms());
                                self.replica.step(msg)
                            }
                            Err(_) => break,
                        }
                    }
                }
                submit = self.submit.recv(), if admit => {
                    match submit {
                        Some(Submit::Request { kind, payload, reply }) => {
                            self.request(kind, payload, reply)
                        }
                        Some(Submit::Member(member)) => self.member_submit(member),
                        Some(Submit::Shutdown) | None => {
                            if !self.begin_stop() {
                                return Ok(());
                            }
                        }
                    }
                    for _ in 1..SUBMIT_BATCH_MAX {
                        if self.waiters.len() + self.reads.len() >= self.cfg.requests_in_flight_max {
                            break;
                        }
                        match self.submit.try_recv() {
                            Ok(Submit::Request { kind, payload, reply }) => {
                                self.request(kind, payload, reply)
                            }
                            Ok(Submit::Member(member)) => self.member_submit(member),
                            Ok(Submit::Shutdown) => {
                                if !self.begin_stop() {
                                    return Ok(());
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    let net = &self.net;
                    self.refusal_log.maybe_log(
                        Instant::now(),
                        self.replica.refusals(),
                        || net.stats(),
                        &self.metrics,
                    );
                    self.replica.set_time(self.mono_ms());
                    self.replica.tick();
                    self.persist.tick();
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(SCAN_TICKS) {
                        self.scan_waiters();
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

    /// A new request from this node's clients.
    fn request(
        &mut self,
        kind: Kind,
        payload: Bytes,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    ) {
        if self.diverged {
            let _ = reply.send(Err(RequestError::Diverged));
            return;
        }
        match kind {
            Kind::Command => self.metrics.proposals.fetch_add(1, Relaxed),
            Kind::Read => self.metrics.reads.fetch_add(1, Relaxed),
        };
        if kind == Kind::Read && self.cfg.unsafe_local_reads {
            // Deliberately unsafe (see `NodeConfig::unsafe_local_reads`):
            // whatever this replica has applied, however stale.
            let ctx = ApplyContext {
                instance: self.applied_end,
                time_ms: self.cfg.wall_clock.now_ms(),
            };
            let _ = reply.send(Ok(self.machine.query(&payload, &ctx)));
            return;
        }
        let now = Instant::now();
        let deadline = now + self.cfg.request_timeout;
        if kind == Kind::Read {
            let read = ReadWaiter {
                query: payload,
                reply,
                deadline,
                next_retry: now,
            };
            self.submit_read(read, now);
            return;
        }
        self.propose_new(kind, payload, reply, deadline);
    }

    /// Puts a command (or a read that goes through the log) in a fresh
    /// envelope, stamped with this node's bounded clock, and proposes it.
    fn propose_new(
        &mut self,
        kind: Kind,
        payload: Bytes,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
        deadline: Instant,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let low_mark = self.waiters.keys().next().copied().unwrap_or(seq);
        let envelope = Envelope {
            kind,
            session: self.session,
            seq,
            low_mark,
            time_ms: self.stamp(),
            payload,
        }
        .encode();
        let now = Instant::now();
        let mut waiter = Waiter {
            envelope,
            reply,
            deadline,
            next_retry: now + self.cfg.retry_interval,
        };
        if let Err(refused) = self.propose(&mut waiter, now) {
            let _ = waiter.reply.send(Err(refused));
            return;
        }
        self.waiters.insert(seq, waiter);
    }

    /// Monotonic milliseconds since this node started.
    fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The time to stamp into an envelope proposed now: the wall clock,
    /// capped so that it advances no faster than the monotonic clock (see
    /// `StampClock`). Every node stamps this way, a forwarding follower
    /// included, so no node's wall clock can step the log clock ahead.
    fn stamp(&self) -> u64 {
        self.stamp_clock
            .stamp(self.cfg.wall_clock.now_ms(), self.mono_ms())
    }

    /// Hands a read to the core under a fresh id (an answer to an earlier
    /// submission of the same read finds no waiter and is dropped).
    fn submit_read(&mut self, mut read: ReadWaiter, now: Instant) {
        let id = self.next_read;
        self.next_read += 1;
        if self.replica.status().role != RoleKind::Leader {
            self.metrics.forwarded.fetch_add(1, Relaxed);
        }
        self.replica.set_time(self.mono_ms());
        read.next_retry = match self.replica.read(ReadId(id)) {
            Ok(()) => now + self.cfg.retry_interval,
            // No leader yet, or too busy: try again at the next scan.
            Err(_) => now,
        };
        self.reads.insert(id, read);
    }

    /// Answers a read the core released: the state machine now includes
    /// every command that completed before the read was submitted.
    ///
    /// Linearizability of the time (issue 12, item 5). Let `k` be the
    /// applied point now, `S_k` the state there and `L_k` the log clock there
    /// (the largest stamp applied). The read index guarantees that `k` is at
    /// or after every command that finished before the read began, and `k`
    /// is reached before we answer, so the read may take effect at `k`:
    /// - If the answer in `S_k` does not depend on the time
    ///   (`StateMachine::query_depends_on_time` is false), it is the answer
    ///   at point `k` whatever time is passed; we pass `L_k`, the log clock
    ///   there, which no replica's wall clock influences.
    /// - Otherwise the answer at `k` would need the time "now", and any
    ///   node's clock is wrong for some other node: a node whose clock is
    ///   ahead would answer nil for a key that a node whose clock is behind
    ///   then shows again. So the read goes through the log, in a `Kind::Read`
    ///   envelope stamped like a command, and is answered when applied at
    ///   its instance `j` with the log clock `L_j` (`Driver::apply`). `j` is
    ///   chosen after the read began and applied before it is answered, the
    ///   log clock is one monotonic clock along the log that every replica
    ///   computes alike, and every later operation is at an instance after
    ///   `j`: the read is linearizable at `j` under any clock skew. Its own
    ///   stamp moves the log clock on, so a key expires without a write.
    ///
    /// The decision is taken on `S_k` alone: whether a key has an expiry is
    /// part of the state, so it needs no clock either.
    fn serve_read(&mut self, id: u64) {
        let Some(read) = self.reads.remove(&id) else {
            return;
        };
        if self.cfg.local_clock_reads {
            // Negative control (see `NodeConfig::local_clock_reads`): the
            // first release's rule, this node's clock. Not linearizable.
            let ctx = ApplyContext {
                instance: self.applied_end,
                time_ms: self.cfg.wall_clock.now_ms(),
            };
            self.answer_query(&read.query, &ctx, read.reply);
            return;
        }
        if self.machine.query_depends_on_time(&read.query) {
            self.metrics.reads_through_log.fetch_add(1, Relaxed);
            self.propose_new(Kind::Read, read.query, read.reply, read.deadline);
            return;
        }
        let ctx = ApplyContext {
            instance: self.applied_end,
            time_ms: self.sessions.time_ms,
        };
        self.answer_query(&read.query, &ctx, read.reply);
    }

    /// Answers a read at the current state: off the loop when the state
    /// machine offers a view for it (a read whose cost grows with the
    /// state), else here. The view is taken now, so the answer is the
    /// state's at this point of the log either way.
    fn answer_query(
        &self,
        query: &[u8],
        ctx: &ApplyContext,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    ) {
        let Some(job) = self.machine.query_view(query, ctx) else {
            let _ = reply.send(Ok(self.machine.query(query, ctx)));
            return;
        };
        let turns = Arc::clone(&self.off_loop_queries);
        tokio::spawn(async move {
            // The semaphore is never closed, so a turn always comes.
            let Ok(_turn) = turns.acquire_owned().await else {
                return;
            };
            match tokio::task::spawn_blocking(job).await {
                Ok(output) => {
                    let _ = reply.send(Ok(output));
                }
                // The job panicked (a bug in the state machine's read): the
                // client gets an error rather than a dropped request; the
                // node is unaffected (the view is a copy).
                Err(err) => {
                    error!("a read answered off the event loop failed: {err}");
                    let _ = reply.send(Err(RequestError::ReadFailed(err.to_string())));
                }
            }
        });
    }

    /// Hands a waiter's command to the core. `Err` only for a command that can
    /// never be proposed (too large): the caller answers the waiter with it.
    fn propose(&mut self, waiter: &mut Waiter, now: Instant) -> Result<(), RequestError> {
        if self.replica.status().role != RoleKind::Leader {
            self.metrics.forwarded.fetch_add(1, Relaxed);
        }
        match self.replica.propose(waiter.envelope.clone()) {
            Ok(()) => waiter.next_retry = now + self.cfg.retry_interval,
            // `Node::propose` checks the size first, so only a bug gets here;
            // retrying could never help.
            Err(RejectReason::TooLarge { bytes, max }) => {
                return Err(RequestError::TooLarge {
                    bytes: bytes.saturating_sub(ENVELOPE_HEADER_BYTES),
                    max: max.saturating_sub(ENVELOPE_HEADER_BYTES),
                });
            }
            // No leader yet, or too busy: try again at the next scan (or at
            // once when a leader appears).
            Err(
                RejectReason::NoLeader | RejectReason::LostLeadership | RejectReason::Overloaded,
            ) => waiter.next_retry = now,
        }
        Ok(())
    }

    /// Expires requests past their deadline and proposes again those that
    /// waited too long (a forward may have been lost).
    fn scan_waiters(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(waiter) = self.waiters.remove(&seq) {
                self.metrics.timeouts.fetch_add(1, Relaxed);
                let _ = waiter
                    .reply
                    .send(Err(RequestError::Timeout(self.cfg.request_timeout)));
            }
        }
        self.retry(|w| w.next_retry <= now);
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.deadline <= now || r.next_retry <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(read) = self.reads.remove(&id) else {
                continue;
            };
            if read.deadline <= now {
                self.metrics.timeouts.fetch_add(1, Relaxed);
                let _ = read
                    .reply
                    .send(Err(RequestError::Timeout(self.cfg.request_timeout)));
            } else {
                self.metrics.retries.fetch_add(1, Relaxed);
                self.submit_read(read, now);
            }
        }
    }

    fn retry(&mut self, due: impl Fn(&Waiter) -> bool) {
        let now = Instant::now();
        let seqs: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| due(w))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in seqs {
            if let Some(mut waiter) = self.waiters.remove(&seq) {
                self.metrics.retries.fetch_add(1, Relaxed);
                if let Err(refused) = self.propose(&mut waiter, now) {
                    let _ = waiter.reply.send(Err(refused));
                    continue;
                }
                self.waiters.insert(seq, waiter);
            }
        }
    }

    /// Carries out the core's effects until it has nothing more to say.
    fn process_ready(&mut self) -> Result<(), NodeError> {
        // Bounded: each round either does work or stops; acting on a Ready
        // can release held messages once (after a checkpoint), so a few
        // rounds always suffice.
        for _ in 0..8 {
            let ready = self.replica.take_ready();
            if ready.is_empty() {
                break;
            }
            self.persist.append(&ready.persist, ready.persist_through)?;
            let installed = ready.install.is_some();
            if let Some(snapshot) = ready.install {
                self.install(snapshot)?;
            }
            for msg in ready.messages {
                // A message too large for a frame can never be sent: the
                // core bounds its messages below the frame limit (checked in
                // `NodeConfig::validate`), so this is a bug. `Net::send`
                // counted and logged it; stopping the node (rather than
                // going on without it) makes it impossible to miss, and the
                // rest of the cluster elects a leader without this node.
                self.net.send(msg).map_err(|err| {
                    NodeError::Net(format!(
                        "{err}; every message should fit (a bug), stopping the node"
                    ))
                })?;
            }
            let applied = !ready.apply.is_empty();
            for apply in ready.apply {
                self.apply(apply.instance, &apply.value, apply.checksum);
            }
            if installed || applied {
                if let Some(digest) = self.machine.digest() {
                    self.replica.record_state_digest(self.applied_end, digest);
                }
            }
            for rejected in ready.rejected {
                // Not proposed: try again at the next scan.
                if let Some(env) = Envelope::decode(&rejected.command) {
                    if env.session == self.session {
                        if let Some(waiter) = self.waiters.get_mut(&env.seq) {
                            waiter.next_retry = Instant::now();
                        }
                    }
                }
            }
            for read in ready.reads {
                self.serve_read(read.0);
            }
            if !ready.member_outcomes.is_empty() {
                self.member_outcomes(ready.member_outcomes);
            }
            for (read, _) in ready.rejected_reads {
                if let Some(waiter) = self.reads.get_mut(&read.0) {
                    waiter.next_retry = Instant::now();
                }
            }
            for divergence in ready.diverged {
                error!(
                    peer = divergence.peer.0,
                    applied_end = divergence.applied_end.0,
                    local = divergence.local.0,
                    remote = divergence.remote.0,
                    "DIVERGENCE: {}; it stops serving",
                    match divergence.kind {
                        DivergenceKind::Log => "this replica applied different values than a peer",
                        DivergenceKind::State => {
                            "this replica applied the same values as a peer but reached a different state (the state machine is not deterministic)"
                        }
                    }
                );
                self.diverged = true;
                for (_, waiter) in std::mem::take(&mut self.waiters) {
                    let _ = waiter.reply.send(Err(RequestError::Diverged));
                }
                for (_, read) in std::mem::take(&mut self.reads) {
                    let _ = read.reply.send(Err(RequestError::Diverged));
                }
            }
            self.maybe_snapshot();
            self.kick_storage()?;
        }
        // Every effect is taken now (or rounds ran out): a checkpoint that
        // `sync_done` left for later can be written here.
        self.kick_storage()?;
        self.follow_membership().map_err(NodeError::Removed)?;
        self.check_member_waiters();
        if self.identity.rebuilding && !self.replica.rebuilding() {
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
        Ok(())
    }

    fn apply(&mut self, instance: InstanceId, value: &synod_core::Value, checksum: Checksum) {
        let commands = value.commands();
        if !commands.is_empty() {
            self.metrics.batch_commands.observe(commands.len() as f64);
        }
        for command in commands {
            let Some(envelope) = Envelope::decode(command) else {
                // Only this runtime proposes, so this is a bug or a foreign
                // writer; every replica skips it alike.
                warn!(instance = instance.0, "skipping an undecodable command");
                continue;
            };
            let ctx = ApplyContext {
                instance,
                time_ms: self.sessions.clock(&envelope),
            };
            let mine = envelope.session == self.session;
            match envelope.kind {
                Kind::Command => {
                    if !self.sessions.admit(&envelope) {
                        self.metrics.duplicates.fetch_add(1, Relaxed);
                        continue;
                    }
                    let output = self.machine.apply(&envelope.payload, &ctx);
                    self.sessions.record_output(&envelope, &output);
                    if mine {
                        if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                            let _ = waiter.reply.send(Ok(output));
                        }
                    }
                }
                Kind::Read => {
                    if mine {
                        if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                            self.answer_query(&envelope.payload, &ctx, waiter.reply);
                        }
                    }
                }
            }
        }
        self.applied_end = instance.next();
        self.checksum = checksum;
        let mono_ms = self.mono_ms();
        self.stamp_clock.observe_log(self.sessions.time_ms, mono_ms);
    }

    /// A snapshot from a peer replaces the state machine.
    fn install(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let (table, user) = Sessions::decode_snapshot(&snapshot.data, self.cfg.sessions_max)
            .map_err(|e| NodeError::Recover(format!("a peer's snapshot does not decode: {e}")))?;
        self.machine.restore(&user).map_err(|e| {
            NodeError::Recover(format!("the state machine refused a peer's snapshot: {e}"))
        })?;
        self.sessions = table;
        let mono_ms = self.mono_ms();
        self.stamp_clock.observe_log(self.sessions.time_ms, mono_ms);
        self.applied_end = snapshot.meta.applied_end;
        self.checksum = snapshot.meta.checksum;
        // Commands of ours that the snapshot covers will never pass through
        // `apply` here: answer them from the session table it carries.
        let seqs: Vec<u64> = self.waiters.keys().copied().collect();
        for seq in seqs {
            self.answer_from_sessions(seq);
        }
        info!(
            applied_end = snapshot.meta.applied_end.0,
            bytes = snapshot.data.len(),
            "installed a snapshot from a peer"
        );
        self.metrics.snapshots_installed.fetch_add(1, Relaxed);
        self.persist.installed(snapshot);
        Ok(())
    }

    /// Answers request `seq` of this node if the session table knows its
    /// outcome: the output the command had when it took effect, or why the
    /// outcome is unknown. A request the table knows nothing of keeps
    /// waiting (it may still be chosen, or be retried).
    fn answer_from_sessions(&mut self, seq: u64) {
        // A read through the log is never in the session table (reads are
        // not admitted): a snapshot that passed its place in the log says
        // nothing about it. Propose it again at once; answered wherever it
        // lands, it is still answered after it was asked.
        if let Some(waiter) = self.waiters.get_mut(&seq) {
            if Envelope::decode(&waiter.envelope).is_some_and(|e| e.kind == Kind::Read) {
                waiter.next_retry = Instant::now();
                return;
            }
        }
        let answer = match self.sessions.outcome(self.session, seq) {
            Outcome::Pending => return,
            Outcome::Applied(Some(output)) => Ok(output),
            Outcome::Applied(None) => Err(RequestError::OutputNotKept),
            Outcome::Unknown(reason) => Err(RequestError::SessionLost(reason.to_string())),
        };
        if let Some(waiter) = self.waiters.remove(&seq) {
            self.metrics.answered_from_sessions.fetch_add(1, Relaxed);
            let _ = waiter.reply.send(answer);
        }
    }

    fn maybe_snapshot(&mut self) {
        if !self.persist.snapshot_wanted(self.applied_end) {
            return;
        }
        let started = Instant::now();
        let meta = SnapshotMeta {
            applied_end: self.applied_end,
            checksum: self.checksum,
        };
        let Some(encode_user) = self.machine.snapshot_view() else {
            let data = self.sessions.encode_snapshot(&self.machine.snapshot());
            self.log_snapshot_taken(started, data.len(), "encoded on the event loop");
            self.persist.snapshot_taken(Snapshot {
                meta,
                memberships: Some(self.replica.schedule_at(meta.applied_end)),
                data,
            });
            return;
        };
        // The session table is bounded (`sessions_max` sessions, at most
        // 1 MiB of outputs each) and changes with every apply: encode it
        // here, at the view's point. `encode_snapshot` puts the state
        // machine's bytes last, so table + user bytes is exactly what
        // `encode_snapshot(&snapshot())` gives at this point.
        let table = self.sessions.encode_snapshot(&[]);
        let table_bytes = table.len();
        self.persist.snapshot_deferred(
            meta,
            self.replica.schedule_at(meta.applied_end),
            SnapshotEncoder::new(move || {
                let user = encode_user();
                let mut data = BytesMut::with_capacity(table.len() + user.len());
                data.extend_from_slice(&table);
                data.extend_from_slice(&user);
                data.freeze()
            }),
        );
        self.log_snapshot_taken(started, table_bytes, "view taken, encoding off the loop");
    }

    fn log_snapshot_taken(&self, started: Instant, bytes: usize, how: &str) {
        let took = started.elapsed();
        if took >= SLOW_STEP / 4 {
            info!(
                bytes,
                ms = took.as_millis() as u64,
                "state machine snapshot taken ({how})"
            );
        }
    }

    /// Starts the storage work the persister finds due, on blocking threads.
    fn kick_storage(&mut self) -> Result<(), NodeError> {
        let marker_started = Instant::now();
        let kicked = self.persist.kick(&mut self.replica)?;
        if let Some(done) = kicked.checkpointed {
            let took = self.checkpoint_started.elapsed();
            self.metrics.fsync_seconds.observe(took.as_secs_f64());
            info!(
                applied_end = done.meta.applied_end.0,
                bytes = done.bytes,
                ms = took.as_millis() as u64,
                marker_ms = marker_started.elapsed().as_millis() as u64,
                records = done.records,
                "checkpoint written"
            );
            self.metrics.snapshots.fetch_add(1, Relaxed);
        }
        for io in kicked.io {
            match io {
                Io::WriteSnapshot(mut write) => {
                    self.checkpoint_started = Instant::now();
                    let tx = self.checkpoint_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        // A panic in the job (the state machine's snapshot
                        // encoder, a bug) must still report, as a failed
                        // write: else the checkpoint stays busy forever, no
                        // snapshot is ever taken again and the log grows
                        // without bound, with no error. A failed snapshot
                        // write is fatal (`snapshot_written`).
                        let result = catch_job_panic("snapshot write", || write.run());
                        let _ = tx.blocking_send(CheckpointStep::Written(write.checkpoint, result));
                    });
                }
                Io::Sync { job, through } => {
                    let tx = self.sync_tx.clone();
                    let started = Instant::now();
                    tokio::task::spawn_blocking(move || {
                        // As for the snapshot write: a panic is a failure
                        // reported (fatal), never a report that never comes.
                        let result = catch_job_panic("log sync", || job.run());
                        let _ = tx.blocking_send(SyncDone {
                            job,
                            result,
                            through,
                            started,
                        });
                    });
                }
                Io::Remove(obsolete) => {
                    let tx = self.checkpoint_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result =
                            catch_job_panic("removal of superseded files", || obsolete.remove());
                        // The last step of a checkpoint: what it freed (the
                        // compacted log, tree nodes copied while the
                        // snapshot was read) goes back to the system.
                        release_free_heap();
                        let _ = tx.blocking_send(CheckpointStep::Cleaned(result));
                    });
                }
            }
        }
        Ok(())
    }

    fn checkpoint_step(&mut self, step: CheckpointStep) -> Result<(), NodeError> {
        match step {
            CheckpointStep::Written(pending, result) => {
                self.persist.snapshot_written(pending, result)?;
            }
            CheckpointStep::Cleaned(result) => {
                if let Err(err) = self.persist.cleaned(result) {
                    warn!("could not delete files a checkpoint superseded: {err}");
                }
            }
        }
        Ok(())
    }

    fn sync_done(&mut self, done: SyncDone) -> Result<(), NodeError> {
        self.metrics
            .fsync_seconds
            .observe(done.started.elapsed().as_secs_f64());
        // An fsync error poisons the log: fatal, never retried.
        self.persist
            .sync_done(done.job, done.result, done.through, &mut self.replica)?;
        Ok(())
    }

    fn publish_status(&mut self) {
        let core = self.replica.status();
        if core.leader != self.leader {
            self.metrics.leader_changes.fetch_add(1, Relaxed);
            info!(node = self.cfg.id.0, leader = ?core.leader.map(|l| l.0), "leader changed");
            self.leader = core.leader;
            if self.leader.is_some() {
                // Whatever waited for the old leader goes to the new one now.
                self.retry(|_| true);
            }
        }
        self.metrics.chosen_end.store(core.chosen_end.0, Relaxed);
        self.metrics
            .lease_reads
            .store(self.replica.lease_reads(), Relaxed);
        let transfers = self.replica.snapshot_transfer_stats();
        self.metrics
            .snapshot_chunks_ignored
            .store(transfers.chunks_ignored, Relaxed);
        self.metrics
            .snapshot_digest_mismatches
            .store(transfers.digest_mismatches, Relaxed);
        self.metrics.applied_end.store(self.applied_end.0, Relaxed);
        let membership = self.replica.schedule().latest().clone();
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
            applied_end: self.applied_end,
            checksum: self.checksum,
            snapshot_end: self.persist.snapshot_end(),
            requests_waiting: self.waiters.len() + self.reads.len(),
            diverged: self.diverged,
            rebuilding: self.replica.rebuilding(),
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

/// Runs a storage job off the loop, turning a panic in it into an error
/// (`StorageError::Io` naming the job), so the loop always hears back.
/// Returns the free pages inside the heap to the system (glibc only: its
/// `free` gives back only the top of an arena, so memory freed in bulk in
/// the middle stays resident until reused). Runs on a blocking thread; it
/// holds each arena's lock while it walks that arena's free chunks.
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

fn catch_job_panic(
    what: &str,
    job: impl FnOnce() -> Result<(), StorageError>,
) -> Result<(), StorageError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use synod_core::Value;

    /// Keeps a running sum; a command's output is the sum after it, so an
    /// answer shows which state it came from.
    #[derive(Default)]
    struct Sum(u64);

    impl StateMachine for Sum {
        fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
            self.0 += command.len() as u64;
            Bytes::from(format!("sum={}", self.0))
        }
        fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
            Bytes::from(format!("sum={}", self.0))
        }
        fn snapshot(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0.to_le_bytes())
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
            let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
            self.0 = u64::from_le_bytes(bytes);
            Ok(())
        }
    }

    fn free_peers(n: u32) -> BTreeMap<NodeId, SocketAddr> {
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (NodeId(i as u32 + 1), l.local_addr().expect("addr")))
            .collect()
    }

    /// A driver that is never run: the test calls its steps by hand. Its
    /// peers are not up, so nothing it sends arrives anywhere.
    async fn driver(
        id: u32,
        peers: &BTreeMap<NodeId, SocketAddr>,
        dir: &std::path::Path,
        sessions_max: usize,
    ) -> Driver<Sum> {
        let mut cfg =
            NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("n{id}"))).expect("member");
        cfg.sessions_max = sessions_max;
        cfg.bootstrap = crate::Bootstrap::New;
        cfg.peer_security = Some(synod_net::PeerSecurity::InsecureLoopback);
        let (_submit_tx, submit_rx) = mpsc::channel(16);
        let (driver, _status, _net) =
            Driver::open(cfg, Sum::default(), submit_rx, Arc::new(Metrics::default()))
                .await
                .expect("opens");
        driver
    }

    /// A request of `follower`'s client, waiting for its command; returns
    /// the receiver of its answer and the command as it sits in the log.
    fn submit(
        follower: &mut Driver<Sum>,
        payload: &'static [u8],
    ) -> (oneshot::Receiver<Result<Bytes, RequestError>>, Bytes) {
        let (tx, rx) = oneshot::channel();
        follower.request(Kind::Command, Bytes::from_static(payload), tx);
        let seq = *follower.waiters.keys().next_back().expect("a waiter");
        (rx, follower.waiters[&seq].envelope.clone())
    }

    /// What the leader's snapshot holds after applying `commands` at
    /// instances 0, 1, ...
    fn leader_snapshot(leader: &mut Driver<Sum>, commands: &[Bytes]) -> Snapshot {
        let mut checksum = Checksum::default();
        for (k, command) in commands.iter().enumerate() {
            let value = Value::batch(vec![command.clone()]);
            checksum = checksum.extend(&value);
            leader.apply(InstanceId(k as u64), &value, checksum);
        }
        Snapshot {
            memberships: None,
            meta: SnapshotMeta {
                applied_end: InstanceId(commands.len() as u64),
                checksum,
            },
            data: leader.sessions.encode_snapshot(&leader.machine.snapshot()),
        }
    }

    /// Regression (issue 12, item 7): a follower's command, forwarded to the
    /// leader and chosen while the follower lagged, reaches the follower only
    /// inside a snapshot. `apply` never runs for it there, so the client
    /// waited for the whole request timeout and was told "outcome unknown"
    /// for a write that took effect. Now the install answers it with the
    /// output the session table kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_covered_by_an_installed_snapshot_is_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers = free_peers(3);
        let mut follower = driver(2, &peers, dir.path(), 16).await;
        let mut leader = driver(1, &peers, dir.path(), 16).await;
        let (mut covered, command) = submit(&mut follower, b"abc");
        let (mut later, _) = submit(&mut follower, b"not chosen yet");
        let other = Envelope {
            kind: Kind::Command,
            session: 99,
            seq: 1,
            low_mark: 1,
            time_ms: 1,
            payload: Bytes::from_static(b"12"),
        }
        .encode();
        let snapshot = leader_snapshot(&mut leader, &[other, command]);
        follower.install(snapshot).expect("installs");
        assert_eq!(
            covered.try_recv().expect("answered at install"),
            Ok(Bytes::from_static(b"sum=5")),
            "the output the command had on the leader"
        );
        assert!(
            later.try_recv().is_err(),
            "a command the snapshot does not cover still waits"
        );
        assert_eq!(follower.waiters.len(), 1);
    }

    /// A covered command whose session the leader's table evicted cannot be
    /// answered with an output: its client is told plainly that the outcome
    /// is unknown, at once rather than after the request timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_whose_session_was_evicted_gets_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers = free_peers(3);
        let mut follower = driver(2, &peers, dir.path(), 16).await;
        let mut leader = driver(1, &peers, dir.path(), 1).await;
        let (mut covered, command) = submit(&mut follower, b"abc");
        let (mut later, _) = submit(&mut follower, b"not chosen yet");
        // A newer session pushes the follower's out of the leader's table.
        let newer = Envelope {
            kind: Kind::Command,
            session: 99,
            seq: 1,
            low_mark: 1,
            time_ms: u64::MAX / 2,
            payload: Bytes::from_static(b"12"),
        }
        .encode();
        let snapshot = leader_snapshot(&mut leader, &[command, newer]);
        follower.install(snapshot).expect("installs");
        for rx in [&mut covered, &mut later] {
            let answer = rx.try_recv().expect("answered at install");
            assert!(
                matches!(&answer, Err(RequestError::SessionLost(reason)) if reason.contains("evicted")),
                "{answer:?}"
            );
        }
        assert!(follower.waiters.is_empty());
        assert_eq!(follower.metrics.answered_from_sessions.load(Relaxed), 2);
    }
}
