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
//!    applying what follows it.
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
use crate::config::NodeConfig;
use crate::envelope::{Envelope, Kind, Sessions};
use crate::metrics::Metrics;
use crate::node::{NodeError, NodeStatus, RequestError};
use crate::state_machine::{ApplyContext, StateMachine};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use synod_core::{
    Checksum, Config, GroupId, InstanceId, Message, NodeId, PersistSeq, ReadId, Replica, RoleKind,
    Snapshot, SnapshotMeta,
};
use synod_net::{Net, NetConfig};
use synod_storage::{snapshot_file, Storage, StorageError, SyncJob, Wal, WalOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// The group every node hosts today (one Paxos group per node).
const GROUP: GroupId = GroupId(0);
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

/// What a `Node` handle asks of the driver.
pub(crate) enum Submit {
    Request {
        kind: Kind,
        payload: Bytes,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    },
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

/// A checkpoint whose snapshot file is being written or is durable.
struct PendingCheckpoint {
    snapshot: Snapshot,
    /// Our own snapshot (the replica is compacted to it), not a peer's.
    own: bool,
    /// `Driver::installs` when it started: a snapshot installed since
    /// replaces it.
    installs: u64,
    started: Instant,
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
    cfg: NodeConfig,
    replica: Replica,
    machine: S,
    sessions: Sessions,
    /// This process's session: its requests' envelopes carry it.
    session: u64,
    next_seq: u64,
    waiters: BTreeMap<u64, Waiter>,
    /// Reads by the id given to the core (fresh for every submission).
    reads: BTreeMap<u64, ReadWaiter>,
    next_read: u64,
    wal: Wal,
    /// Everything handed to `wal.append` so far is covered by this.
    appended_through: PersistSeq,
    syncing: bool,
    sync_tx: mpsc::Sender<SyncDone>,
    sync_rx: mpsc::Receiver<SyncDone>,
    /// A snapshot to checkpoint; `true` when it is our own (the replica is
    /// compacted after it is durable). A checkpoint runs in three steps (see
    /// `Wal::write_snapshot`): the snapshot file and the deletion of what it
    /// superseded run on a blocking thread, so appends and the protocol go on
    /// meanwhile (they took 200-360 ms here); only the marker, in a fresh
    /// segment, is written in this task.
    checkpoint_due: Option<(Snapshot, bool)>,
    /// A checkpoint is in progress (step 1 or 3 running, or step 2 due):
    /// no other starts.
    checkpoint_busy: bool,
    /// Step 1 is done: write the marker when no sync is running.
    checkpoint_ready: Option<PendingCheckpoint>,
    /// Snapshots installed from peers so far.
    installs: u64,
    checkpoint_tx: mpsc::Sender<CheckpointStep>,
    checkpoint_rx: mpsc::Receiver<CheckpointStep>,
    snapshot_end: InstanceId,
    applied_end: InstanceId,
    checksum: Checksum,
    leader: Option<NodeId>,
    diverged: bool,
    ticks: u64,
    /// `ticks` when the last sync started: records nothing waits for (chosen
    /// marks) are synced at the latest a tick later.
    sync_started_tick: u64,
    net: Net,
    inbound: mpsc::Receiver<Message>,
    submit: mpsc::Receiver<Submit>,
    metrics: Arc<Metrics>,
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
        let (wal, recovered) = Wal::open(&cfg.data_dir, WalOptions::default())?;
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
        let mut core = Config::new(cfg.id, cfg.peers.keys().copied().collect());
        core.group = GROUP;
        core.seed = seed;
        core.heartbeat_ticks = cfg.heartbeat_ticks;
        core.election_ticks = cfg.election_ticks;
        core.batch_commands_max = cfg.batch_commands_max;
        core.window_instances_max = cfg.window_instances_max;
        let applied_end = snapshot_end;
        let checksum = snapshot
            .as_ref()
            .map_or(Checksum::default(), |s| s.meta.checksum);
        let replica = Replica::recover(core, snapshot, recovered.records_of(GROUP))
            .map_err(|e| NodeError::Recover(e.to_string()))?;

        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE_MAX);
        let mut net_cfg = NetConfig::new(cfg.cluster_id, cfg.id, cfg.listen, cfg.peers.clone());
        net_cfg.send_queue_max = cfg.peer_send_queue_max;
        let net = Net::start(net_cfg, inbound_tx)
            .await
            .map_err(|e| NodeError::Net(e.to_string()))?;
        let status = replica.status();
        let (status_tx, status_rx) = watch::channel(NodeStatus {
            id: cfg.id,
            members: cfg.peers.keys().copied().collect(),
            role: status.role,
            leader: status.leader,
            promised: status.promised,
            chosen_end: status.chosen_end,
            applied_end,
            checksum,
            snapshot_end,
            requests_waiting: 0,
            diverged: false,
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
        let (sync_tx, sync_rx) = mpsc::channel(1);
        let (checkpoint_tx, checkpoint_rx) = mpsc::channel(2);
        // Monotonic time 0 is now: the wall clock read now is the one this
        // process trusts (the residual assumption of `StampClock`); a log
        // clock recovered ahead of it raises the bound.
        let started = Instant::now();
        let mut stamp_clock = StampClock::new(cfg.wall_clock.now_ms(), 0);
        stamp_clock.observe_log(sessions.time_ms, 0);
        let driver = Driver {
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
            wal,
            appended_through: PersistSeq(0),
            syncing: false,
            sync_tx,
            sync_rx,
            checkpoint_due: None,
            checkpoint_busy: false,
            checkpoint_ready: None,
            installs: 0,
            checkpoint_tx,
            checkpoint_rx,
            snapshot_end,
            applied_end,
            checksum,
            leader: None,
            diverged: false,
            ticks: 0,
            sync_started_tick: 0,
            net: net.clone(),
            inbound,
            submit,
            metrics,
            status: status_tx,
            cfg,
        };
        Ok((driver, status_rx, net))
    }

    /// The event loop. Returns on shutdown, or with the fatal error that
    /// stopped the node.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        let result = self.run_loop().await;
        let reason = match &result {
            Ok(()) => "shut down".to_string(),
            Err(err) => {
                error!(node = self.cfg.id.0, "node stopped on a fatal error: {err}");
                err.to_string()
            }
        };
        // Wait for a write in flight, so a clean stop leaves nothing half done.
        if self.syncing {
            if let Some(done) = self.sync_rx.recv().await {
                let _ = self.wal.finish_sync(done.job, done.result);
            }
        }
        // A checkpoint step may be running on a blocking thread: let it end,
        // so no file of this data directory changes after `run` returns.
        if self.checkpoint_ready.take().is_some() {
            // Its marker was never written: its snapshot file is a stray
            // that a later checkpoint's cleanup removes.
            self.checkpoint_busy = false;
        }
        if self.checkpoint_busy {
            // Step 1 or step 3 runs; either reports once.
            let _ = self.checkpoint_rx.recv().await;
            self.checkpoint_busy = false;
        }
        // Records nothing waited for (chosen marks) may not be durable yet.
        if result.is_ok() {
            if let Ok(Some(job)) = self.wal.begin_sync() {
                let synced = job.run();
                let _ = self.wal.finish_sync(job, synced);
            }
        }
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            let _ = waiter
                .reply
                .send(Err(RequestError::Stopped(reason.clone())));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            let _ = read.reply.send(Err(RequestError::Stopped(reason.clone())));
        }
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
                    self.replica.step(msg);
                    for _ in 1..INBOUND_BATCH_MAX {
                        match self.inbound.try_recv() {
                            Ok(msg) => {
                                tracing::trace!(node = self.cfg.id.0, from = msg.from.0, body = msg.body.name(), "message");
                                self.replica.step(msg)
                            }
                            Err(_) => break,
                        }
                    }
                }
                submit = self.submit.recv(), if admit => {
                    let Some(Submit::Request { kind, payload, reply }) = submit else {
                        return Ok(());
                    };
                    self.request(kind, payload, reply);
                    for _ in 1..SUBMIT_BATCH_MAX {
                        if self.waiters.len() + self.reads.len() >= self.cfg.requests_in_flight_max {
                            break;
                        }
                        match self.submit.try_recv() {
                            Ok(Submit::Request { kind, payload, reply }) => {
                                self.request(kind, payload, reply)
                            }
                            Ok(Submit::Shutdown) => return Ok(()),
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    self.replica.tick();
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(SCAN_TICKS) {
                        self.scan_waiters();
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
        }
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
        self.propose(&mut waiter, now);
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
            let _ = read.reply.send(Ok(self.machine.query(&read.query, &ctx)));
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
        let _ = read.reply.send(Ok(self.machine.query(&read.query, &ctx)));
    }

    fn propose(&mut self, waiter: &mut Waiter, now: Instant) {
        if self.replica.status().role != RoleKind::Leader {
            self.metrics.forwarded.fetch_add(1, Relaxed);
        }
        match self.replica.propose(waiter.envelope.clone()) {
            Ok(()) => waiter.next_retry = now + self.cfg.retry_interval,
            // No leader yet, or too busy: try again at the next scan (or at
            // once when a leader appears).
            Err(_) => waiter.next_retry = now,
        }
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
                self.propose(&mut waiter, now);
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
            if !ready.persist.is_empty() {
                self.wal.append(&ready.persist)?;
                self.appended_through = ready.persist_through;
            }
            if let Some(snapshot) = ready.install {
                self.install(snapshot)?;
            }
            for msg in ready.messages {
                self.net.send(msg);
            }
            for apply in ready.apply {
                self.apply(apply.instance, &apply.value, apply.checksum);
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
                    "DIVERGENCE: this replica applied different values than a peer; it stops serving"
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
                    if mine {
                        if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                            let _ = waiter.reply.send(Ok(output));
                        }
                    }
                }
                Kind::Read => {
                    if mine {
                        if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                            let output = self.machine.query(&envelope.payload, &ctx);
                            let _ = waiter.reply.send(Ok(output));
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
        info!(
            applied_end = snapshot.meta.applied_end.0,
            bytes = snapshot.data.len(),
            "installed a snapshot from a peer"
        );
        self.metrics.snapshots_installed.fetch_add(1, Relaxed);
        self.installs += 1;
        self.checkpoint_due = Some((snapshot, false));
        Ok(())
    }

    fn maybe_snapshot(&mut self) {
        if self.checkpoint_due.is_some()
            || self.checkpoint_busy
            || self.applied_end <= self.snapshot_end
        {
            return;
        }
        let since = self.applied_end.0 - self.snapshot_end.0;
        if !self
            .cfg
            .snapshot_policy
            .due(since, self.wal.bytes_since_checkpoint())
        {
            return;
        }
        let started = Instant::now();
        let data = self.sessions.encode_snapshot(&self.machine.snapshot());
        let took = started.elapsed();
        if took >= SLOW_STEP / 4 {
            info!(
                bytes = data.len(),
                ms = took.as_millis() as u64,
                "state machine snapshot taken"
            );
        }
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                applied_end: self.applied_end,
                checksum: self.checksum,
            },
            data,
        };
        self.checkpoint_due = Some((snapshot, true));
    }

    /// Starts a checkpoint's snapshot file, writes a checkpoint marker whose
    /// file is durable, or starts the next log write.
    fn kick_storage(&mut self) -> Result<(), NodeError> {
        if !self.checkpoint_busy {
            if let Some((snapshot, own)) = self.checkpoint_due.take() {
                self.checkpoint_busy = true;
                let snap_dir = self.wal.snap_dir().to_path_buf();
                let tx = self.checkpoint_tx.clone();
                let pending = PendingCheckpoint {
                    snapshot,
                    own,
                    installs: self.installs,
                    started: Instant::now(),
                };
                tokio::task::spawn_blocking(move || {
                    let result = snapshot_file::write(&snap_dir, GROUP, &pending.snapshot);
                    let _ = tx.blocking_send(CheckpointStep::Written(pending, result.map(|_| ())));
                });
            }
        }
        if self.syncing {
            return Ok(());
        }
        if let Some(PendingCheckpoint {
            snapshot,
            own,
            installs,
            started,
        }) = self.checkpoint_ready.take()
        {
            if installs != self.installs {
                // A peer's snapshot replaced the state this one is of since
                // it was taken: the records would not follow it. Its file
                // goes with the next checkpoint's cleanup.
                self.checkpoint_busy = false;
                return Ok(());
            }
            // Every effect the core handed out is appended (this runs at the
            // end of `process_ready` or after a sync), so the records describe
            // exactly what the log holds; appends wait for this step only.
            //
            // Compact first (the snapshot file is durable now), as the
            // simulator does: the records then start at the snapshot. Taken
            // before compaction they held every chosen value since the
            // previous snapshot, and this step rewrote the whole log (300 ms
            // for 64 MiB here).
            let meta = snapshot.meta;
            let bytes = snapshot.data.len();
            if own {
                if let Err(err) = self.replica.compact(snapshot) {
                    warn!("compaction refused: {err}");
                }
            }
            let marker_started = Instant::now();
            let records = self.replica.checkpoint_records();
            let obsolete = self.wal.checkpoint_written(GROUP, meta, &records)?;
            let marker_ms = marker_started.elapsed().as_millis() as u64;
            let took = started.elapsed();
            self.metrics.fsync_seconds.observe(took.as_secs_f64());
            info!(
                applied_end = meta.applied_end.0,
                bytes,
                ms = took.as_millis() as u64,
                marker_ms,
                records = records.len(),
                "checkpoint written"
            );
            self.metrics.snapshots.fetch_add(1, Relaxed);
            self.snapshot_end = meta.applied_end;
            // The checkpoint made everything appended so far durable.
            self.replica.persisted(self.appended_through);
            let tx = self.checkpoint_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.blocking_send(CheckpointStep::Cleaned(obsolete.remove()));
            });
            return Ok(());
        }
        // Sync at once only when messages wait for it (see
        // `Replica::awaits_durability`); otherwise let the next sync, or the
        // next tick, take these records. A chosen mark per instance would
        // otherwise cost a second fsync per command, and delay the next
        // command's Accept behind it.
        if !self.replica.awaits_durability() && self.ticks == self.sync_started_tick {
            return Ok(());
        }
        if let Some(job) = self.wal.begin_sync()? {
            self.syncing = true;
            self.sync_started_tick = self.ticks;
            let through = self.appended_through;
            let tx = self.sync_tx.clone();
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                let result = job.run();
                let _ = tx.blocking_send(SyncDone {
                    job,
                    result,
                    through,
                    started,
                });
            });
        }
        Ok(())
    }

    fn checkpoint_step(&mut self, step: CheckpointStep) -> Result<(), NodeError> {
        match step {
            CheckpointStep::Written(pending, result) => {
                // A failed snapshot write is an I/O error like a failed
                // fsync: fatal.
                result?;
                self.checkpoint_ready = Some(pending);
            }
            CheckpointStep::Cleaned(result) => {
                self.checkpoint_busy = false;
                if let Err(err) = result {
                    // Superseded files left behind cost space, not safety:
                    // recovery skips them.
                    warn!("could not delete files a checkpoint superseded: {err}");
                }
            }
        }
        Ok(())
    }

    fn sync_done(&mut self, done: SyncDone) -> Result<(), NodeError> {
        self.syncing = false;
        self.metrics
            .fsync_seconds
            .observe(done.started.elapsed().as_secs_f64());
        // An fsync error poisons the log: fatal, never retried.
        self.wal.finish_sync(done.job, done.result)?;
        // `persisted` can release held messages and let the core act on them,
        // queueing new records in its next Ready. No checkpoint may be taken
        // until those are taken (`process_ready`, which runs after this):
        // a checkpoint snapshots the core's state, and records handed out
        // before it but appended after it would be replayed on top of it.
        self.replica.persisted(done.through);
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
        self.metrics.applied_end.store(self.applied_end.0, Relaxed);
        let status = NodeStatus {
            id: self.cfg.id,
            members: self.cfg.peers.keys().copied().collect(),
            role: core.role,
            leader: core.leader,
            promised: core.promised,
            chosen_end: core.chosen_end,
            applied_end: self.applied_end,
            checksum: self.checksum,
            snapshot_end: self.snapshot_end,
            requests_waiting: self.waiters.len() + self.reads.len(),
            diverged: self.diverged,
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
