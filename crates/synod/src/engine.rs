//! The runtime's decisions, without I/O: what a node does with a client's
//! request, with each `Ready` of the core, and with time.
//!
//! [`Engine`] owns the replica, the persister, the state machine and the
//! replicated session table, and decides everything the node runtime
//! decides: the envelope each request travels in, when a request is
//! proposed again (retries, a new leader, a rejection, a snapshot that
//! passed it), when it times out, in which order a `Ready` is carried out
//! (persist, install, send, apply, reads, checkpoint), how a read is served
//! (read index, or through the log when its answer depends on the time), and
//! how every request is answered (from `apply`, or from the session table
//! of an installed snapshot). It performs no I/O and decides nothing by a
//! clock of its own: the caller gives it the monotonic time
//! ([`Engine::set_time`]) and a wall clock (the real clock only times its
//! log lines), sends the messages it hands out, runs the storage jobs
//! ([`Io`]) it asks for and reports them back, and delivers its [`Answer`]s.
//!
//! Two callers run this same code: the tokio task behind [`crate::Node`]
//! (`driver.rs`: sockets, blocking threads, channels) and the deterministic
//! simulator (`synod-sim`: a simulated network, disk and clock), so every
//! decision here is exercised under the simulator's faults.

use crate::client_sessions::Check;
use crate::clock::{StampClock, WallClock};
pub use crate::envelope::{ClientSeq, Envelope, Kind};
use crate::envelope::{Outcome, Sessions, HEADER_BYTES as ENVELOPE_HEADER_BYTES};
use crate::metrics::Metrics;
use crate::node::{NodeError, RequestError};
use crate::persist::{Checkpointed, Io, Persister, SnapshotEncoder};
use crate::state_machine::{ApplyContext, BatchCommand, QueryJob, Served, StateMachine};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use synod_core::{
    Checksum, Divergence, DivergenceKind, InstanceId, Message, NodeId, ReadId, RejectReason,
    ReleasedDemand, Replica, RoleKind, Snapshot, SnapshotMeta,
};
use synod_storage::{LogRead, StorageError, SyncJob};
use tracing::{debug, error, info, warn};

/// Waiting requests are checked for retry and expiry this often (in ticks).
pub const SCAN_TICKS: u64 = 10;

/// On-disk mode: for this long after a peer last asked for a snapshot,
/// checkpoints hold the whole state (as in memory mode), so that a transfer
/// in progress is not cut by a checkpoint that holds none.
pub const WHOLE_SNAPSHOTS_HOLD_MS: u64 = 60_000;

/// Reads released together are handed to the state machine's prefetch hint
/// in groups of at most this many (`StateMachine::prefetch_queries`):
/// enough to overlap their cache misses, few enough that what is fetched
/// for the first is still cached when the last is served.
pub const QUERY_PREFETCH_GROUP: usize = 16;

/// What the engine takes from the node's configuration.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// A request not answered within this is answered with
    /// [`RequestError::Timeout`] (its outcome unknown).
    pub request_timeout: Duration,
    /// A proposal not chosen within this is proposed again (a forward may
    /// have been lost).
    pub retry_interval: Duration,
    /// How long a load of a peer's snapshot may last before new requests
    /// are refused ([`Engine::loading`]; see `NodeConfig::loading_grace`).
    pub loading_grace: Duration,
    /// Sessions the replicated table keeps (see `NodeConfig::sessions_max`).
    pub sessions_max: usize,
    /// Answer reads from the local state without the read index (unsafe;
    /// see `NodeConfig::unsafe_local_reads`).
    pub unsafe_local_reads: bool,
    /// Answer reads at this node's clock instead of the log clock (a
    /// negative control; see `NodeConfig::local_clock_reads`).
    pub local_clock_reads: bool,
    /// This node's wall clock: the stamps it proposes (bounded by
    /// [`StampClock`]).
    pub wall_clock: WallClock,
    /// The monotonic clock in ms, read right before every read handed to the
    /// core: a read served under a leader lease is checked against the time
    /// of that call, and a time taken before a long batch of requests would
    /// let a lease that ran out meanwhile still serve (see
    /// `Replica::set_time`). `None`: the caller's [`Engine::set_time`] before
    /// each input is fresh enough (a simulator whose time stands still
    /// within one event).
    pub mono_clock: Option<MonoClock>,
    /// Negative control only: the session table admits every command, so a
    /// retried request takes effect again (the simulator must catch it).
    pub inject_admit_duplicates: bool,
    /// Negative control only: the client session table's check is skipped,
    /// so a client session command retried through another node (or after
    /// its proposer restarted) takes effect again (the simulator must catch
    /// it).
    pub inject_session_reapply: bool,
    /// Negative control: an on-disk state machine's commands are applied
    /// again after a restart although its durable state has them
    /// (`StateMachine::durable_end`): the simulator must catch it.
    pub inject_on_disk_reapply: bool,
    /// Negative control: applied values are dropped from memory up to the
    /// applied point whatever checkpoint is in progress, so a checkpoint's
    /// records can lack values after its point (acceptor amnesia at the
    /// next restart: the simulator must catch it).
    pub inject_release_past_checkpoint: bool,
    /// Values a peer needs that this node dropped from memory are read back
    /// from the log (`true`, what ships) rather than replaced by a fresh
    /// snapshot; a read that does not find them all falls back to the
    /// snapshot. `false` only in the simulator, so that both ways run.
    pub read_back_released: bool,
    /// Negative control: values read back from the log are restored one
    /// instance off (a peer then catches up with wrong values: the
    /// simulator must catch it).
    pub inject_log_read_shift: bool,
    /// Negative control: the permit for reads outside the loop
    /// ([`Engine::local_read_permit`]) stands whenever this node leads,
    /// lease or not, at its applied point: a deposed leader that does not
    /// know it serves stale reads (the simulator must catch it).
    pub inject_local_permit_without_lease: bool,
}

/// A read back from the log that found fewer values than asked is tried
/// again once within this many ms (see `Engine::log_read_done`).
const LOG_READ_RETRY_MS: u64 = 1_000;

/// A monotonic clock in ms (see [`EngineOptions::mono_clock`]).
#[derive(Clone)]
pub struct MonoClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl MonoClock {
    /// A clock that reads `now_ms()`.
    pub fn from_fn(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> MonoClock {
        MonoClock(Arc::new(now_ms))
    }

    /// Milliseconds, as this clock says.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for MonoClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonoClock")
    }
}

/// An answer to a request, for the caller to deliver.
pub enum Answer<R> {
    /// The request is finished.
    Done(R, Result<Bytes, RequestError>),
    /// A read to answer by running the job off the event loop (the state
    /// machine's [`StateMachine::query_view`]): its output is the answer.
    OffLoop(R, QueryJob),
}

/// What the caller must carry out after an input, in this order: send the
/// messages (already handed to the `send` callback), start the storage jobs,
/// deliver the answers.
pub struct Effects<R> {
    /// Storage jobs to run (off the event loop), each reported back through
    /// [`Engine::sync_done`], [`Engine::snapshot_written`] or [`Engine::cleaned`].
    pub io: Vec<Io>,
    /// Answers to deliver.
    pub answers: Vec<Answer<R>>,
    /// Checkpoints that finished.
    pub checkpointed: Vec<Checkpointed>,
    /// Outcomes of membership operations the core finished.
    pub member_outcomes: Vec<(u64, Result<u64, String>)>,
    /// Divergences the core reported (the engine already refuses to serve).
    pub diverged: Vec<Divergence>,
    /// Chosen instances applied, in order (only with
    /// [`Engine::record_applies`], for a checker).
    pub applied: Vec<synod_core::Apply>,
    /// A snapshot from a peer was installed (its point).
    pub installed: Option<InstanceId>,
    /// The leader this node knows changed.
    pub leader_changed: bool,
}

impl<R> Default for Effects<R> {
    fn default() -> Self {
        Effects {
            io: Vec::new(),
            answers: Vec::new(),
            checkpointed: Vec::new(),
            member_outcomes: Vec::new(),
            diverged: Vec::new(),
            applied: Vec::new(),
            installed: None,
            leader_changed: false,
        }
    }
}

struct Waiter<R> {
    envelope: Bytes,
    reply: R,
    deadline_ms: u64,
    next_retry_ms: u64,
}

/// A linearizable read waiting for the core's read index.
struct ReadWaiter<R> {
    query: Bytes,
    reply: R,
    deadline_ms: u64,
    /// When to submit it again if the core has not answered (a refused read
    /// is due at once).
    next_retry_ms: u64,
}

/// The node runtime's decisions for one replica (see the module docs).
/// `R` is how the caller answers a request (a channel, a client id).
pub struct Engine<S, R> {
    /// The protocol core.
    pub replica: Replica,
    /// When to append, sync and checkpoint.
    pub persist: Persister,
    /// `None` while a restore from a peer's snapshot runs off the event
    /// loop ([`Engine::take_restore_job`]): the job owns the state machine.
    machine: Option<S>,
    /// The job that restores the state machine from a peer's snapshot,
    /// until the caller takes it to run.
    restore_job: Option<RestoreJob<S>>,
    /// A newer peer snapshot installed while a restore ran: restored next
    /// (its state machine bytes and point).
    restore_next: Option<(Bytes, InstanceId)>,
    /// Reads the core released while the state machine was away: served
    /// once it is back.
    reads_after_restore: Vec<u64>,
    /// Stale reads asked while the state machine was away (or ahead of the
    /// applied point), with the time they give up (`request_timeout`).
    stale_after_restore: Vec<(Bytes, R, u64)>,
    /// When (engine ms) the current load of a peer's snapshot began, as
    /// first noticed by a tick or a request ([`Engine::loading`]).
    loading_since_ms: Option<u64>,
    sessions: Sessions,
    /// This process's session: its requests' envelopes carry it.
    session: u64,
    next_seq: u64,
    waiters: BTreeMap<u64, Waiter<R>>,
    /// Reads by the id given to the core (fresh for every submission).
    reads: BTreeMap<u64, ReadWaiter<R>>,
    next_read: u64,
    applied_end: InstanceId,
    checksum: Checksum,
    /// The state machine keeps its state on its own disk
    /// (`StateMachine::durable_end`).
    on_disk: bool,
    /// Commands of instances before this are in the state machine's state
    /// already (on-disk mode, after a restart): applying skips them.
    skip_below: InstanceId,
    /// On-disk mode: checkpoints hold the whole state until then (a peer
    /// needed a snapshot recently; see `WHOLE_SNAPSHOTS_HOLD_MS`).
    whole_until_ms: u64,
    /// A read of values a peer needs back from the log is out
    /// ([`Engine::read_back_released`]).
    log_read_out: bool,
    /// The highest point through which such a read failed.
    log_read_failed_through: Option<InstanceId>,
    /// When the latest read that found fewer values than asked finished
    /// (the records of the newest may not be written yet: it is asked
    /// again; a second within `LOG_READ_RETRY_MS` falls back).
    log_read_short_ms: Option<u64>,
    leader: Option<NodeId>,
    diverged: bool,
    ticks: u64,
    /// Bounds this node's stamps by its monotonic clock (see `StampClock`).
    stamp_clock: StampClock,
    /// Monotonic milliseconds, as the caller last said.
    now_ms: u64,
    opts: EngineOptions,
    metrics: Arc<Metrics>,
    record_applies: bool,
    effects: Effects<R>,
}

/// Restores a state machine from the state machine's part of a peer's
/// snapshot, off the event loop ([`Engine::take_restore_job`]).
pub struct RestoreJob<S> {
    machine: S,
    user: Bytes,
    /// The snapshot's point: the job is handed out once this node's
    /// checkpoint covers it.
    point: InstanceId,
}

impl<S: StateMachine> RestoreJob<S> {
    /// Runs `StateMachine::restore` (slow for a large state: on a blocking
    /// thread); hand both back to [`Engine::restored`].
    pub fn run(self) -> (S, Result<(), String>) {
        let RestoreJob {
            mut machine, user, ..
        } = self;
        let result = machine.restore(&user);
        (machine, result)
    }

    /// Bytes the state machine is restored from.
    pub fn len(&self) -> usize {
        self.user.len()
    }

    /// Whether the state machine's part of the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
}

impl<S> std::fmt::Debug for RestoreJob<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreJob")
            .field("bytes", &self.user.len())
            .finish()
    }
}

/// The state machine and session table as a start found them: what
/// [`recover_machine`] made of the latest checkpoint, for [`Engine::new`].
pub struct RecoveredMachine {
    sessions: Sessions,
    /// The checkpoint's point (0 without one): the log is applied from here.
    pub applied_end: InstanceId,
    /// The log checksum there.
    pub checksum: Checksum,
    /// The state machine's state has every command of the instances before
    /// this (an on-disk state machine whose durable state is past the
    /// checkpoint): applying the log skips them.
    pub skip_below: InstanceId,
    /// Whether the checkpoint holds the state (else only the session
    /// table: it is never sent to a peer).
    pub holds_state: bool,
}

impl RecoveredMachine {
    /// A node with no checkpoint and an in-memory state machine.
    pub fn empty(sessions_max: usize) -> RecoveredMachine {
        RecoveredMachine {
            sessions: Sessions::new(sessions_max),
            applied_end: InstanceId(0),
            checksum: Checksum::default(),
            skip_below: InstanceId(0),
            holds_state: true,
        }
    }

    /// The log clock the session table holds (the largest stamp applied).
    pub fn time_ms(&self) -> u64 {
        self.sessions.time_ms
    }
}

/// Brings the state machine and the session table to the latest
/// checkpoint, `snapshot`, at start.
///
/// An in-memory state machine is restored from it. An on-disk one
/// ([`StateMachine::durable_end`]) whose durable state is at or past the
/// checkpoint restores nothing: the log is applied from the checkpoint,
/// skipping the commands its state has. One whose durable state is older is
/// restored from the checkpoint when it holds the state (a peer's snapshot
/// installed since), and refused with an error otherwise: the checkpoint
/// keeps no copy, so the state machine's files were lost or replaced.
pub fn recover_machine<S: StateMachine>(
    machine: &mut S,
    snapshot: Option<&Snapshot>,
    sessions_max: usize,
) -> Result<RecoveredMachine, String> {
    let durable = machine.durable_end();
    let Some(snapshot) = snapshot else {
        return Ok(RecoveredMachine {
            skip_below: durable.unwrap_or(InstanceId(0)),
            ..RecoveredMachine::empty(sessions_max)
        });
    };
    let point = snapshot.meta.applied_end;
    let (sessions, user) = Sessions::decode_snapshot(&snapshot.data, sessions_max)
        .map_err(|e| format!("its session table does not decode: {e}"))?;
    let holds_state = user.is_some();
    let skip_below = match (durable, user) {
        // Safety: the durable state is the state after every command before
        // `d`, which is at or past the checkpoint; the log from the
        // checkpoint on is kept (compaction never passes the state
        // machine's durable point), so applying it from `d` on, and only
        // the session table before, rebuilds the state as it was.
        (Some(d), _) if d >= point => d,
        (_, Some(user)) => {
            machine
                .restore(&user)
                .map_err(|e| format!("the state machine refused it: {e}"))?;
            point
        }
        (durable, None) => {
            return Err(format!(
                "the checkpoint at instance {} holds no copy of the state machine's state (it keeps its state on its own disk), and the state machine reports its durable state at instance {}, before it: its files were lost or replaced. Restore them, or start this node afresh to copy the state from a peer: an empty data directory and `Bootstrap::Rebuild` (`synod server --rebuild`)",
                point.0,
                durable.map_or(0, |d| d.0)
            ));
        }
    };
    Ok(RecoveredMachine {
        sessions,
        applied_end: point,
        checksum: snapshot.meta.checksum,
        skip_below,
        holds_state,
    })
}

impl<S: StateMachine, R> Engine<S, R> {
    /// An engine over a recovered replica and persister, with the state
    /// machine and session table restored to `applied_end` (the snapshot's
    /// point, or 0). `session` must differ between incarnations of a node
    /// (a restarted node must not reuse the sequence numbers of its previous
    /// life); `now_ms` is the monotonic time now, `wall_ms` the wall clock
    /// this incarnation trusts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: EngineOptions,
        replica: Replica,
        persist: Persister,
        machine: S,
        recovered: RecoveredMachine,
        session: u64,
        now_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Engine<S, R> {
        let RecoveredMachine {
            sessions,
            applied_end,
            checksum,
            skip_below,
            holds_state,
        } = recovered;
        let on_disk = machine.durable_end().is_some();
        // Snapshots from peers arrive into a file beside the log's, never
        // whole on the heap (a snapshot may be larger than memory).
        let mut replica = replica;
        replica.set_snapshot_spool(persist.spool());
        // A checkpoint without the state is never sent to a peer.
        replica.set_snapshot_sendable(holds_state);
        // The digest peers verify a transfer against, computed now, before
        // the node serves, rather than on its event loop at the first
        // request (over a mapped file: reading it all from disk).
        replica.compute_snapshot_digest();
        // The wall clock read now is the one this incarnation trusts (the
        // residual assumption of `StampClock`); a log clock recovered ahead
        // of it raises the bound.
        let mut stamp_clock = StampClock::new(opts.wall_clock.now_ms(), now_ms);
        stamp_clock.observe_log(sessions.time_ms, now_ms);
        // Installs restore off the event loop: the core holds the values
        // after a snapshot until the state machine is back.
        replica.set_hold_applies_on_install(true);
        Engine {
            replica,
            persist,
            machine: Some(machine),
            restore_job: None,
            restore_next: None,
            reads_after_restore: Vec::new(),
            stale_after_restore: Vec::new(),
            loading_since_ms: None,
            sessions,
            session,
            next_seq: 1,
            waiters: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            applied_end,
            checksum,
            on_disk,
            skip_below,
            whole_until_ms: 0,
            log_read_out: false,
            log_read_failed_through: None,
            log_read_short_ms: None,
            leader: None,
            diverged: false,
            ticks: 0,
            stamp_clock,
            now_ms,
            opts,
            metrics,
            record_applies: false,
            effects: Effects::default(),
        }
    }

    /// Also hand out every applied instance (for a checker).
    pub fn record_applies(&mut self, on: bool) {
        self.record_applies = on;
    }

    /// The monotonic time now, before every input: the core's read leases
    /// depend on it, and a stale time is unsafe (see `Replica::set_time`).
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.replica.set_time(now_ms);
    }

    /// End of the prefix applied to the state machine.
    pub fn applied_end(&self) -> InstanceId {
        self.applied_end
    }

    /// The applied prefix's checksum.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// The state machine (`None` while it is being restored off the loop).
    pub fn machine(&self) -> Option<&S> {
        self.machine.as_ref()
    }

    /// The state machine, mutable: for a harness that collects what the
    /// state machine recorded (the simulator). Changing the replicated
    /// state through it breaks the replicas' agreement. `None` while it is
    /// being restored off the loop.
    pub fn machine_mut(&mut self) -> Option<&mut S> {
        self.machine.as_mut()
    }

    /// Requests and reads waiting for an answer.
    pub fn requests_waiting(&self) -> usize {
        self.waiters.len() + self.reads.len() + self.stale_after_restore.len()
    }

    /// The restore of the state machine from a peer's snapshot, to run off
    /// the event loop (it may take as long as reading the whole state);
    /// hand its outcome to [`Engine::restored`]. Until then the state
    /// machine is away: nothing is applied (the core holds the chosen
    /// values), reads wait (new requests are refused once the load has
    /// lasted `loading_grace`: [`Engine::loading`]), no snapshot is taken;
    /// the replica still votes, accepts and answers its peers.
    ///
    /// The job is handed out only once the installed snapshot is durable as
    /// this node's checkpoint. Safety: `restore` may then replace the state
    /// machine's durable state (an on-disk state machine rebuilds its
    /// store): a crash from then on restarts from that checkpoint, which
    /// holds the state, whatever the state machine's files hold.
    pub fn take_restore_job(&mut self) -> Option<RestoreJob<S>> {
        if self
            .restore_job
            .as_ref()
            .is_some_and(|job| job.point > self.persist.snapshot_end())
        {
            return None;
        }
        self.restore_job.take()
    }

    /// Whether the state machine is away, being restored.
    pub fn restoring(&self) -> bool {
        self.machine.is_none()
    }

    /// Whether this node is catching up from a peer's snapshot: receiving
    /// one, or restoring the state machine from one installed (its job
    /// waiting or running). New requests are refused meanwhile, once it
    /// has lasted `EngineOptions::loading_grace` ([`RequestError::Loading`]),
    /// as Redis answers `-LOADING` while it loads a dataset: a node in this
    /// state answers nothing current until the whole snapshot has arrived
    /// and been restored (seconds to minutes for a large state), and its
    /// clients can go to another node. The
    /// requests that were waiting when it began keep waiting: some may be
    /// proposed already, so only their own answers can say what they did.
    pub fn loading(&self) -> bool {
        self.machine.is_none() || self.replica.receiving_snapshot()
    }

    /// Whether a new request would be refused now
    /// ([`RequestError::Loading`]): loading for `loading_grace` already,
    /// as last noted (by a tick or a request).
    pub fn refusing_requests(&self) -> bool {
        let grace = u64::try_from(self.opts.loading_grace.as_millis()).unwrap_or(u64::MAX);
        self.loading()
            && self
                .loading_since_ms
                .is_some_and(|since| self.now_ms.saturating_sub(since) >= grace)
    }

    /// Notes whether this node is loading, and since when; whether a new
    /// request is to be refused now: the load has lasted
    /// `EngineOptions::loading_grace`. Called on every tick and request.
    fn refuses_while_loading(&mut self) -> bool {
        if !self.loading() {
            self.loading_since_ms = None;
            return false;
        }
        self.loading_since_ms.get_or_insert(self.now_ms);
        self.refusing_requests()
    }

    /// Refuses a new request with [`RequestError::Loading`] (see
    /// [`Engine::loading`]): called before anything is proposed or read, so
    /// the refusal is exact: the request had no effect.
    fn refuse_loading(&mut self, reply: R) {
        self.metrics.loading_refusals.fetch_add(1, Relaxed);
        self.answer(reply, Err(RequestError::Loading));
    }

    /// A restore job ([`Engine::take_restore_job`]) finished with
    /// `result`, giving the state machine back. A state machine that
    /// refused the snapshot is fatal, as at start.
    pub fn restored(&mut self, machine: S, result: Result<(), String>) -> Result<(), NodeError> {
        result.map_err(|e| {
            NodeError::Stopped(format!(
                "restoring the state machine from a peer's snapshot failed: {e}"
            ))
        })?;
        if let Some((user, point)) = self.restore_next.take() {
            // A newer snapshot was installed meanwhile: restore that one
            // too before anything is applied.
            self.restore_job = Some(RestoreJob {
                machine,
                user,
                point,
            });
            return Ok(());
        }
        self.machine = Some(machine);
        info!(
            applied_end = self.applied_end.0,
            "the state machine is restored from a peer's snapshot"
        );
        if let Some(digest) = self.machine.as_ref().and_then(|m| m.digest()) {
            self.replica.record_state_digest(self.applied_end, digest);
        }
        self.replica.release_applies();
        for id in std::mem::take(&mut self.reads_after_restore) {
            self.serve_read(id);
        }
        self.release_stale_reads();
        Ok(())
    }

    /// Whether this replica diverged (it refuses to serve).
    pub fn diverged(&self) -> bool {
        self.diverged
    }

    /// The leader this node knew after the last `process_ready`.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The log clock: the largest stamp applied.
    pub fn log_time_ms(&self) -> u64 {
        self.sessions.time_ms
    }

    /// What the caller must carry out now.
    pub fn take_effects(&mut self) -> Effects<R> {
        std::mem::take(&mut self.effects)
    }

    /// A new request from this node's clients. Never answered here: the
    /// answer comes out of a later [`Engine::take_effects`] (or this one's).
    pub fn request(&mut self, kind: Kind, payload: Bytes, reply: R) {
        self.request_with(kind, None, payload, reply);
    }

    /// Registers a client session (see [`crate::Node::session`]): answered
    /// with the new [`crate::SessionId`]'s 16 bytes
    /// ([`crate::SessionId::from_bytes`]).
    /// `nonce` should be random; `ttl_ms` is the session's expiry, in log
    /// time, once unused.
    pub fn register_session(&mut self, nonce: u64, ttl_ms: u64, reply: R) {
        self.request_with(Kind::Register, None, register_payload(nonce, ttl_ms), reply);
    }

    /// A command of client session `client.session` with sequence number
    /// `client.seq` (see [`crate::Session`]): it takes effect at most once
    /// whichever node it is proposed through and however often.
    pub fn request_in_session(&mut self, client: ClientSeq, payload: Bytes, reply: R) {
        self.request_with(Kind::SessionCommand, Some(client), payload, reply);
    }

    /// A request of any kind (`client` only for [`Kind::SessionCommand`]).
    pub fn request_with(
        &mut self,
        kind: Kind,
        client: Option<ClientSeq>,
        payload: Bytes,
        reply: R,
    ) {
        if self.diverged {
            self.answer(reply, Err(RequestError::Diverged));
            return;
        }
        if self.refuses_while_loading() {
            self.refuse_loading(reply);
            return;
        }
        match kind {
            Kind::Command | Kind::SessionCommand | Kind::Register => {
                self.metrics.proposals.fetch_add(1, Relaxed)
            }
            Kind::Read => self.metrics.reads.fetch_add(1, Relaxed),
        };
        if kind == Kind::Read && self.opts.unsafe_local_reads {
            // Deliberately unsafe (see `NodeConfig::unsafe_local_reads`):
            // whatever this replica has applied, however stale.
            self.answer_from_applied(payload, reply);
            return;
        }
        let deadline_ms = self.now_ms.saturating_add(self.request_timeout_ms());
        if kind == Kind::Read {
            let read = ReadWaiter {
                query: payload,
                reply,
                deadline_ms,
                next_retry_ms: self.now_ms,
            };
            self.submit_read(read);
            return;
        }
        self.propose_new(kind, client, payload, reply, deadline_ms);
    }

    /// A stale read ([`crate::Node::read_stale`]): the query is answered at
    /// once from whatever this replica has applied, with no round to any
    /// other node (off the event loop when the state machine offers a view
    /// for it, as linearizable reads are).
    pub fn read_stale(&mut self, payload: Bytes, reply: R) {
        if self.diverged {
            self.answer(reply, Err(RequestError::Diverged));
            return;
        }
        if self.restoring() && self.refuses_while_loading() {
            // No state to answer from until the restore ends. (While the
            // snapshot is still arriving, the applied state is there to
            // answer from, however stale: that is this read's contract.)
            self.refuse_loading(reply);
            return;
        }
        self.metrics.stale_reads.fetch_add(1, Relaxed);
        self.answer_from_applied(payload, reply);
    }

    /// Answers the stale reads that waited for the state machine, once it
    /// is back and at the applied point.
    fn release_stale_reads(&mut self) {
        if self.stale_after_restore.is_empty()
            || self.machine.is_none()
            || self.applied_end < self.skip_below
        {
            return;
        }
        for (query, reply, _) in std::mem::take(&mut self.stale_after_restore) {
            self.answer_from_applied(query, reply);
        }
    }

    /// Answers `query` from the applied state as it is now (the clock of a
    /// read is this node's wall clock: nothing orders it in the log).
    fn answer_from_applied(&mut self, query: Bytes, reply: R) {
        // While the state machine is away (a restore), or ahead of the
        // applied point (an on-disk one replaying after a restart), no
        // answer would be the state at a point: wait for one.
        if self.machine.is_none() || self.applied_end < self.skip_below {
            let deadline_ms = self.now_ms.saturating_add(self.request_timeout_ms());
            self.stale_after_restore.push((query, reply, deadline_ms));
            return;
        }
        let ctx = ApplyContext {
            instance: self.applied_end,
            time_ms: self.opts.wall_clock.now_ms(),
            index: 0,
        };
        self.answer_query(&query, &ctx, reply);
    }

    fn answer(&mut self, reply: R, result: Result<Bytes, RequestError>) {
        self.effects.answers.push(Answer::Done(reply, result));
    }

    fn request_timeout_ms(&self) -> u64 {
        u64::try_from(self.opts.request_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn retry_interval_ms(&self) -> u64 {
        u64::try_from(self.opts.retry_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// Puts a command (or a read that goes through the log) in a fresh
    /// envelope, stamped with this node's bounded clock, and proposes it.
    fn propose_new(
        &mut self,
        kind: Kind,
        client: Option<ClientSeq>,
        payload: Bytes,
        reply: R,
        deadline_ms: u64,
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
            client,
            payload,
        }
        .encode();
        let mut waiter = Waiter {
            envelope,
            reply,
            deadline_ms,
            next_retry_ms: self.now_ms.saturating_add(self.retry_interval_ms()),
        };
        if let Err(refused) = self.propose(&mut waiter) {
            self.answer(waiter.reply, Err(refused));
            return;
        }
        self.waiters.insert(seq, waiter);
    }

    /// The time to stamp into an envelope proposed now: the wall clock,
    /// capped so that it advances no faster than the monotonic clock (see
    /// `StampClock`). Every node stamps this way, a forwarding follower
    /// included, so no node's wall clock can step the log clock ahead.
    fn stamp(&self) -> u64 {
        self.stamp_ms()
    }

    /// The stamp a command proposed now would carry (see `Engine::stamp`
    /// and `StampClock`), at the engine's time (the last
    /// [`Engine::set_time`]). Decide whether to propose something that
    /// depends on time (an expiry sweep) by this, not by the wall clock: a
    /// wall clock ahead of the bound would make it due forever.
    pub fn stamp_ms(&self) -> u64 {
        self.stamp_clock
            .stamp(self.opts.wall_clock.now_ms(), self.now_ms)
    }

    /// The clock bounding this engine's stamps, as of its last step.
    pub fn stamp_clock(&self) -> StampClock {
        self.stamp_clock
    }

    /// Hands a read to the core under a fresh id (an answer to an earlier
    /// submission of the same read finds no waiter and is dropped).
    fn submit_read(&mut self, mut read: ReadWaiter<R>) {
        let id = self.next_read;
        self.next_read += 1;
        if self.replica.status().role != RoleKind::Leader {
            self.metrics.forwarded_reads.fetch_add(1, Relaxed);
        }
        if let Some(clock) = &self.opts.mono_clock {
            // A time read just before the call (the lease's contract).
            let now_ms = clock.now_ms();
            self.set_time(now_ms);
        }
        read.next_retry_ms = match self.replica.read(ReadId(id)) {
            Ok(()) => self.now_ms.saturating_add(self.retry_interval_ms()),
            // No leader yet, or too busy: try again at the next scan.
            Err(_) => self.now_ms,
        };
        self.reads.insert(id, read);
    }

    /// Hands the state machine the queries of the reads about to be served,
    /// as a prefetch hint (`StateMachine::prefetch_queries`); a lone read
    /// gets none (a walk ahead of a single lookup would only double it).
    /// The ids are looked up here and again in `serve_read`: two lookups in
    /// a small map, against the cache misses the hint saves.
    fn prefetch_reads(&self, group: &[ReadId]) {
        let Some(machine) = self.machine.as_ref() else {
            return;
        };
        let mut queries: [&[u8]; QUERY_PREFETCH_GROUP] = [&[]; QUERY_PREFETCH_GROUP];
        let mut n = 0;
        for (slot, read) in queries
            .iter_mut()
            .zip(group.iter().filter_map(|id| self.reads.get(&id.0)))
        {
            *slot = &read.query;
            n += 1;
        }
        if n > 1 {
            machine.prefetch_queries(&queries[..n]);
        }
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
    ///   its instance `j` with the log clock `L_j` (`Engine::apply`). `j` is
    ///   chosen after the read began and applied before it is answered, the
    ///   log clock is one monotonic clock along the log that every replica
    ///   computes alike, and every later operation is at an instance after
    ///   `j`: the read is linearizable at `j` under any clock skew. Its own
    ///   stamp moves the log clock on, so a key expires without a write.
    ///
    /// The decision is taken on `S_k` alone: whether a key has an expiry is
    /// part of the state, so it needs no clock either.
    ///
    /// Save for one case (`settled_answer`): a read that depends on the time
    /// only as its state looks at different times
    /// (`StateMachine::query_settles_by_clock`: a GET of a key with a TTL)
    /// is answered at `k` with `L_k` after all when that answer is also the
    /// one at this node's clock. It is the answer at point `k`, linearizable
    /// at `k` as above: `L_k` is the log clock there, one function of the
    /// point that every replica computes alike, and any read or write that
    /// finished before takes effect at or before `k` (a through-log read
    /// that saw the key gone at `j` finished before this one began, so
    /// `k >= j` and `L_k >= L_j`: a key once read as gone is never read
    /// as present again until a write). The clock only picks between that
    /// answer and the log: a key that this node's clock says has expired
    /// while `L_k` says it has not still goes through the log, and there
    /// reads as gone, so a key without writes still expires for readers
    /// at the time it did before.
    fn serve_read(&mut self, id: u64) {
        if self.machine.is_none() {
            // Released by the core at the snapshot's point: answered from
            // the restored state, once it is back.
            if self.reads.contains_key(&id) {
                self.reads_after_restore.push(id);
            }
            return;
        }
        let Some(read) = self.reads.remove(&id) else {
            return;
        };
        if self.opts.local_clock_reads {
            // Negative control (see `NodeConfig::local_clock_reads`): the
            // first release's rule, this node's clock. Not linearizable.
            let ctx = ApplyContext {
                instance: self.applied_end,
                time_ms: self.opts.wall_clock.now_ms(),
                index: 0,
            };
            self.answer_query(&read.query, &ctx, read.reply);
            return;
        }
        let ctx = ApplyContext {
            instance: self.applied_end,
            time_ms: self.sessions.time_ms,
            index: 0,
        };
        // One call: the state machine decodes the query once (see
        // `StateMachine::serve_query`, which serves as the three calls would).
        let served = self
            .machine
            .as_ref()
            .map(|machine| machine.serve_query(&read.query, &ctx));
        if let Some(Served::ThroughLog) = served {
            if let Some(output) = self.settled_answer(&read.query, &ctx) {
                self.metrics.reads_settled.fetch_add(1, Relaxed);
                self.answer(read.reply, Ok(output));
                return;
            }
            self.metrics.reads_through_log.fetch_add(1, Relaxed);
            self.propose_new(Kind::Read, None, read.query, read.reply, read.deadline_ms);
            return;
        }
        self.deliver_read(read.reply, served);
    }

    /// The answer at `at` of a read whose answer depends on the time, if it
    /// settles by the clock now: see [`crate::local_reads::settled_answer`].
    fn settled_answer(&self, query: &[u8], at: &ApplyContext) -> Option<Bytes> {
        let machine = self.machine.as_ref()?;
        crate::local_reads::settled_answer(machine, query, at, self.stamp_ms())
    }

    /// The permit for reads served outside the event loop
    /// ([`crate::LocalReads`]): present while a read arriving now would be
    /// confirmed at once under this node's leader lease
    /// (`Replica::lease_read_window`, with the time last given) and served
    /// at once at the applied point, which is past its read index. Never
    /// while reads are refused (a divergence, a load), while the state
    /// machine is away or ahead of the applied point, or with a negative
    /// control of the read path on. The runtime publishes it after each
    /// pass over its inputs and withdraws it before the next (see
    /// `local_reads.rs`).
    pub fn local_read_permit(&self) -> Option<crate::LocalPermit> {
        if self.diverged
            || self.opts.unsafe_local_reads
            || self.opts.local_clock_reads
            || self.machine.is_none()
            || self.applied_end < self.skip_below
            || self.loading()
        {
            return None;
        }
        let (index, until_ms) = if self.opts.inject_local_permit_without_lease {
            if self.replica.status().role != RoleKind::Leader {
                return None;
            }
            (self.applied_end, u64::MAX)
        } else {
            self.replica.lease_read_window()?
        };
        if self.applied_end < index {
            return None;
        }
        Some(crate::LocalPermit {
            until_ms,
            ctx: ApplyContext {
                instance: self.applied_end,
                time_ms: self.sessions.time_ms,
                index: 0,
            },
            stamp_clock: self.stamp_clock,
        })
    }

    /// Gives a read the answer its state machine served: at once, or from a
    /// job off the loop. `None`: the state machine is away (never: reads
    /// wait while it is restored, see `serve_read`).
    fn deliver_read(&mut self, reply: R, served: Option<Served>) {
        match served {
            Some(Served::OffLoop(job)) => self.effects.answers.push(Answer::OffLoop(reply, job)),
            Some(Served::Answer(output)) => self.answer(reply, Ok(output)),
            // `ThroughLog` is the caller's to carry out (`serve_read`).
            Some(_) | None => {
                debug_assert!(false, "a read served while the state machine is restored");
                self.answer(
                    reply,
                    Err(RequestError::Stopped(
                        "the state machine is being restored".into(),
                    )),
                );
            }
        }
    }

    /// Answers a read at the current state: off the loop when the state
    /// machine offers a view for it (a read whose cost grows with the
    /// state), else here. The view is taken now, so the answer is the
    /// state's at this point of the log either way.
    fn answer_query(&mut self, query: &[u8], ctx: &ApplyContext, reply: R) {
        let served = self
            .machine
            .as_ref()
            .map(|machine| match machine.query_view(query, ctx) {
                Some(job) => Served::OffLoop(job),
                None => Served::Answer(machine.query(query, ctx)),
            });
        self.deliver_read(reply, served);
    }

    /// Hands a waiter's command to the core. `Err` only for a command that can
    /// never be proposed (too large): the caller answers the waiter with it.
    fn propose(&mut self, waiter: &mut Waiter<R>) -> Result<(), RequestError> {
        if self.replica.status().role != RoleKind::Leader {
            self.metrics.forwarded.fetch_add(1, Relaxed);
        }
        match self.replica.propose(waiter.envelope.clone()) {
            Ok(()) => waiter.next_retry_ms = self.now_ms.saturating_add(self.retry_interval_ms()),
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
            ) => waiter.next_retry_ms = self.now_ms,
        }
        Ok(())
    }

    /// A timer tick. Returns true on the ticks at which waiting requests
    /// were scanned for retry and expiry (every [`SCAN_TICKS`]).
    pub fn tick(&mut self) -> bool {
        self.replica.tick();
        self.persist.tick();
        self.refuses_while_loading();
        self.ticks += 1;
        if self.ticks.is_multiple_of(SCAN_TICKS) {
            self.scan_waiters();
            return true;
        }
        false
    }

    /// Expires requests past their deadline and proposes again those that
    /// waited too long (a forward may have been lost).
    fn scan_waiters(&mut self) {
        let now = self.now_ms;
        let expired: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(waiter) = self.waiters.remove(&seq) {
                self.metrics.timeouts.fetch_add(1, Relaxed);
                let timeout = self.opts.request_timeout;
                self.answer(waiter.reply, Err(RequestError::Timeout(timeout)));
            }
        }
        self.retry(|w| w.next_retry_ms <= now);
        // Stale reads that waited for the state machine as long as any
        // request may: a node replaying towards an on-disk state it cannot
        // reach (cut off from its peers) must not hold them for ever.
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stale_after_restore)
            .into_iter()
            .partition(|(_, _, deadline_ms)| *deadline_ms <= now);
        self.stale_after_restore = waiting;
        for (_, reply, _) in expired {
            self.metrics.timeouts.fetch_add(1, Relaxed);
            let timeout = self.opts.request_timeout;
            self.answer(reply, Err(RequestError::Timeout(timeout)));
        }
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.deadline_ms <= now || r.next_retry_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(read) = self.reads.remove(&id) else {
                continue;
            };
            if read.deadline_ms <= now {
                self.metrics.timeouts.fetch_add(1, Relaxed);
                let timeout = self.opts.request_timeout;
                self.answer(read.reply, Err(RequestError::Timeout(timeout)));
            } else {
                self.metrics.retries.fetch_add(1, Relaxed);
                self.submit_read(read);
            }
        }
    }

    fn retry(&mut self, due: impl Fn(&Waiter<R>) -> bool) {
        let seqs: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| due(w))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in seqs {
            if let Some(mut waiter) = self.waiters.remove(&seq) {
                self.metrics.retries.fetch_add(1, Relaxed);
                if let Err(refused) = self.propose(&mut waiter) {
                    self.answer(waiter.reply, Err(refused));
                    continue;
                }
                self.waiters.insert(seq, waiter);
            }
        }
    }

    /// Carries out the core's effects until it has nothing more to say, in
    /// the order the core documents (see `driver.rs`): persist, install,
    /// send (through `send`, at once), apply, retry the rejected, serve the
    /// reads, alarm on divergence, take a snapshot when due, start storage
    /// work. `send` fails only for a message that can never be sent (a bug):
    /// the node must stop. Storage and snapshot errors are fatal too.
    pub fn process_ready(
        &mut self,
        send: &mut dyn FnMut(Message) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        // The spool writes a peer's snapshot as the replica takes its
        // pieces: a failure there is fatal (persist.rs, rule 6).
        self.persist.spool_failed()?;
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
                send(msg)?;
            }
            let applied = !ready.apply.is_empty();
            if applied && self.machine.is_none() {
                // The core holds chosen values back while a restore runs
                // (`Replica::set_hold_applies_on_install`): a value here is
                // a bug, and applying it to nothing would lose it.
                return Err(NodeError::Stopped(
                    "a chosen value was handed out while the state machine was being restored (a bug)".into(),
                ));
            }
            for apply in ready.apply {
                self.apply(apply.instance, &apply.value, apply.checksum);
                if self.record_applies {
                    self.effects.applied.push(apply);
                }
            }
            // The state of an on-disk state machine that is ahead of the
            // applied point is not the state there: no digest to compare.
            if (installed || applied) && self.applied_end >= self.skip_below {
                if let Some(digest) = self.machine.as_ref().and_then(|m| m.digest()) {
                    self.replica.record_state_digest(self.applied_end, digest);
                }
            }
            for rejected in ready.rejected {
                // Not proposed: try again at the next scan.
                if let Some(env) = Envelope::decode(&rejected.command) {
                    if env.session == self.session {
                        if let Some(waiter) = self.waiters.get_mut(&env.seq) {
                            waiter.next_retry_ms = self.now_ms;
                        }
                    }
                }
            }
            for group in ready.reads.chunks(QUERY_PREFETCH_GROUP) {
                self.prefetch_reads(group);
                for read in group {
                    self.serve_read(read.0);
                }
            }
            self.effects.member_outcomes.extend(ready.member_outcomes);
            for (read, _) in ready.rejected_reads {
                if let Some(waiter) = self.reads.get_mut(&read.0) {
                    waiter.next_retry_ms = self.now_ms;
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
                    self.answer(waiter.reply, Err(RequestError::Diverged));
                }
                for (_, read) in std::mem::take(&mut self.reads) {
                    self.answer(read.reply, Err(RequestError::Diverged));
                }
                for (_, reply, _) in std::mem::take(&mut self.stale_after_restore) {
                    self.answer(reply, Err(RequestError::Diverged));
                }
                self.effects.diverged.push(divergence);
            }
            self.maybe_snapshot();
            self.kick()?;
        }
        // A peer lags behind our compacted log. An on-disk state machine's
        // checkpoints hold no state to send it: write a whole snapshot now,
        // and keep checkpoints whole while peers keep asking.
        if self.replica.take_snapshot_demand() && self.on_disk {
            self.whole_until_ms = self.now_ms.saturating_add(WHOLE_SNAPSHOTS_HOLD_MS);
            if !self.replica.snapshot_sendable() && !self.persist.whole_asked() {
                info!("a peer needs a snapshot to catch up: writing a whole one");
                self.metrics.snapshots_for_peers.fetch_add(1, Relaxed);
                self.persist.ask_whole_snapshot();
            }
        }
        // A peer needs values this node dropped from memory (they are only
        // in the log on disk, `release_applied_values`): read them back, or
        // else write a snapshot at the applied point.
        if let Some(demand) = self.replica.take_released_demand() {
            if !self.read_back_released(demand) {
                self.snapshot_for_released(demand.through);
            }
        }
        // A snapshot asked for (`request_snapshot`) with nothing applied
        // since is taken here (only then: the policy's snapshots are taken
        // after applies, as before).
        if self.persist.snapshot_asked() {
            self.maybe_snapshot();
        }
        self.release_stale_reads();
        // Every effect is taken now (or rounds ran out): a checkpoint that
        // `sync_done` left for later can be written here.
        self.kick()?;
        self.release_applied_values();
        let leader = self.replica.status().leader;
        if leader != self.leader {
            self.leader = leader;
            self.effects.leader_changed = true;
            if leader.is_some() {
                // Whatever waited for the old leader goes to the new one now.
                self.retry(|_| true);
            }
        }
        Ok(())
    }

    fn apply(&mut self, instance: InstanceId, value: &synod_core::Value, checksum: Checksum) {
        let commands = value.commands();
        if !commands.is_empty() {
            self.metrics.batch_commands.observe(commands.len() as f64);
        }
        // Commands admitted since the last read, applied together
        // (`StateMachine::apply_batch`); a read must see the commands before
        // it, so it ends a batch.
        let mut batch: Vec<(Envelope, ApplyContext, bool)> = Vec::new();
        // Every command counts toward the next one's index, skipped or not,
        // so the index is the command's place in the value: it cannot depend
        // on this node's session table or on how it cuts the batches. A value
        // holds fewer than 2^28 commands (at most 1 GiB,
        // `synod_core::VALUE_BYTES_LIMIT`, with 4 length bytes each), so
        // `0u32..` never runs out before `commands` does.
        for (command, index) in commands.iter().zip(0u32..) {
            let Some(envelope) = Envelope::decode(command) else {
                // Only this runtime proposes, so this is a bug or a foreign
                // writer; every replica skips it alike.
                warn!(instance = instance.0, "skipping an undecodable command");
                continue;
            };
            // The session table's clock and admission advance in log order,
            // command by command, before the batch is applied: neither
            // depends on the state machine. Outputs are recorded after the
            // batch, so near the table's byte limits which outputs it keeps
            // can differ from an apply-one-at-a-time order; the cut of
            // batches is a function of the log alone (an instance's
            // commands, cut at its reads), so every replica and every
            // replay keeps the same ones.
            let ctx = ApplyContext {
                instance,
                time_ms: self.sessions.clock(&envelope),
                index,
            };
            // Client sessions unused for their TTL go, at the same point of
            // the log on every replica.
            self.sessions.clients.expire(ctx.time_ms);
            match envelope.kind {
                Kind::Command => {
                    let admitted = self.sessions.admit(&envelope);
                    if !admitted && !self.opts.inject_admit_duplicates {
                        self.metrics.duplicates.fetch_add(1, Relaxed);
                        continue;
                    }
                    batch.push((envelope, ctx, admitted));
                }
                Kind::Read => {
                    self.apply_batch(&mut batch);
                    if envelope.session == self.session {
                        if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                            self.answer_query(&envelope.payload, &ctx, waiter.reply);
                        }
                    }
                }
                Kind::Register => {
                    if !self.sessions.admit(&envelope) {
                        self.metrics.duplicates.fetch_add(1, Relaxed);
                        continue;
                    }
                    let output = match parse_register_payload(&envelope.payload) {
                        Some((nonce, ttl_ms)) => {
                            let id = self.sessions.clients.register(nonce, ttl_ms, ctx.time_ms);
                            Bytes::copy_from_slice(&id.to_bytes())
                        }
                        // Only this runtime proposes, so this is a bug; every
                        // replica registers nothing alike.
                        None => Bytes::new(),
                    };
                    self.sessions.record_output(&envelope, &output);
                    self.answer_own(&envelope, Ok(output));
                }
                Kind::SessionCommand => {
                    let admitted = self.sessions.admit(&envelope);
                    if !admitted && !self.opts.inject_admit_duplicates {
                        self.metrics.duplicates.fetch_add(1, Relaxed);
                        continue;
                    }
                    let Some(client) = envelope.client else {
                        continue;
                    };
                    let mut check =
                        self.sessions
                            .clients
                            .check(client.session, client.seq, ctx.time_ms);
                    if self.opts.inject_session_reapply
                        && matches!(check, Check::Duplicate(_) | Check::TooOld { .. })
                    {
                        // Negative control: the check is ignored.
                        check = Check::Apply;
                    }
                    match check {
                        Check::Apply => batch.push((envelope, ctx, admitted)),
                        Check::Duplicate(_) => {
                            // Its first copy may be in this very batch, its
                            // output not recorded yet: apply the batch first.
                            self.apply_batch(&mut batch);
                            self.metrics.session_duplicates.fetch_add(1, Relaxed);
                            let answer = session_answer(
                                self.sessions.clients.outcome(client.session, client.seq),
                                client,
                            );
                            if let Some(answer) = answer {
                                self.answer_own(&envelope, answer);
                            }
                        }
                        refused => {
                            self.metrics.session_refusals.fetch_add(1, Relaxed);
                            if let Some(answer) = session_answer(refused, client) {
                                self.answer_own(&envelope, answer);
                            }
                        }
                    }
                }
            }
        }
        self.apply_batch(&mut batch);
        self.applied_end = instance.next();
        if instance >= self.skip_below {
            if let Some(machine) = self.machine.as_mut() {
                machine.applied_through(self.applied_end);
            }
        }
        self.checksum = checksum;
        self.stamp_clock
            .observe_log(self.sessions.time_ms, self.now_ms);
    }

    /// Applies the commands gathered by `apply` in one
    /// `StateMachine::apply_batch`, records their outputs in the session
    /// table and answers this node's waiters.
    fn apply_batch(&mut self, batch: &mut Vec<(Envelope, ApplyContext, bool)>) {
        if batch.is_empty() {
            return;
        }
        if batch[0].1.instance < self.skip_below && !self.opts.inject_on_disk_reapply {
            // On-disk mode, after a restart: the state machine's durable
            // state has these commands already (its `durable_end` is past
            // them). The session table admitted them (the caller did), so a
            // retry is never applied again; their outputs are unknown, so
            // a retry is told so (`OutputNotKept`).
            for (envelope, _, _) in batch.drain(..) {
                if envelope.session == self.session {
                    if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                        self.answer(waiter.reply, Err(RequestError::OutputNotKept));
                    }
                }
            }
            return;
        }
        let commands: Vec<BatchCommand<'_>> = batch
            .iter()
            .map(|(envelope, ctx, _)| BatchCommand {
                command: &envelope.payload,
                ctx: *ctx,
            })
            .collect();
        let outputs = self
            .machine
            .as_mut()
            .expect("nothing is applied while the state machine is away (process_ready refuses)")
            .apply_batch(&commands);
        drop(commands);
        // A state machine that answers a batch with another number of
        // outputs is broken: which output is whose cannot be known, and a
        // guess would answer clients wrongly. The node stops as on a panic
        // in `apply` (the task's end is reported by `Node::status`).
        assert_eq!(
            outputs.len(),
            batch.len(),
            "StateMachine::apply_batch returned {} outputs for {} commands",
            outputs.len(),
            batch.len()
        );
        for ((envelope, _, admitted), output) in batch.drain(..).zip(outputs) {
            if let Some(client) = envelope.client {
                // A session command's output is kept by its client session
                // (the node session's record would be a second copy).
                self.sessions
                    .clients
                    .record_output(client.session, client.seq, &output);
            } else if admitted {
                self.sessions.record_output(&envelope, &output);
            }
            if envelope.session == self.session {
                if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                    self.answer(waiter.reply, Ok(output));
                }
            }
        }
    }

    /// A snapshot from a peer replaces the state machine: its session table
    /// now, its state by a restore job run off the event loop
    /// ([`Engine::take_restore_job`]); the core holds the values after it
    /// until then.
    fn install(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let (table, user) = Sessions::decode_snapshot(&snapshot.data, self.opts.sessions_max)
            .map_err(|e| {
                NodeError::Recover(format!(
                    "a peer's snapshot: its session table does not decode: {e}"
                ))
            })?;
        let user = user.ok_or_else(|| {
            NodeError::Recover(
                "a peer's snapshot holds no state (a checkpoint of a state machine that keeps its state on its own disk, never sent to peers)".into(),
            )
        })?;
        let point = snapshot.meta.applied_end;
        match self.machine.take() {
            Some(machine) => {
                self.restore_job = Some(RestoreJob {
                    machine,
                    user,
                    point,
                })
            }
            // A restore runs (or its job waits to be taken): this newer
            // snapshot is restored after it, before anything is applied.
            None => match self.restore_job.as_mut() {
                Some(job) => {
                    job.user = user;
                    job.point = point;
                }
                None => self.restore_next = Some((user, point)),
            },
        }
        self.sessions = table;
        // The state machine's state is the snapshot's now: every command
        // after it is applied.
        self.skip_below = snapshot.meta.applied_end;
        self.stamp_clock
            .observe_log(self.sessions.time_ms, self.now_ms);
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
        self.effects.installed = Some(snapshot.meta.applied_end);
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
        let now = self.now_ms;
        let mut client = None;
        if let Some(waiter) = self.waiters.get_mut(&seq) {
            let envelope = Envelope::decode(&waiter.envelope);
            if envelope.as_ref().is_some_and(|e| e.kind == Kind::Read) {
                waiter.next_retry_ms = now;
                return;
            }
            client = envelope.and_then(|e| e.client);
        }
        if let Some(client) = client {
            // A client session command: its client session knows. A session
            // the snapshot's table does not know yet may have been
            // registered after the snapshot's point (this node lagged): the
            // command keeps waiting for its place in the log, where it is
            // decided. Expired and too old are final (indexes are never
            // reused, sequence numbers only grow).
            let outcome = match self.sessions.clients.outcome(client.session, client.seq) {
                Check::Unknown => return,
                outcome => outcome,
            };
            if let Some(answer) = session_answer(outcome, client) {
                if let Some(waiter) = self.waiters.remove(&seq) {
                    self.metrics.answered_from_sessions.fetch_add(1, Relaxed);
                    self.answer(waiter.reply, answer);
                }
            }
            return;
        }
        let answer = match self.sessions.outcome(self.session, seq) {
            Outcome::Pending => return,
            Outcome::Applied(Some(output)) => Ok(output),
            Outcome::Applied(None) => Err(RequestError::OutputNotKept),
            Outcome::Unknown(reason) => Err(RequestError::SessionLost(reason.to_string())),
        };
        if let Some(waiter) = self.waiters.remove(&seq) {
            self.metrics.answered_from_sessions.fetch_add(1, Relaxed);
            self.answer(waiter.reply, answer);
        }
    }

    /// Answers this node's waiter for `envelope`, if it is this node's.
    fn answer_own(&mut self, envelope: &Envelope, answer: Result<Bytes, RequestError>) {
        if envelope.session == self.session {
            if let Some(waiter) = self.waiters.remove(&envelope.seq) {
                self.answer(waiter.reply, answer);
            }
        }
    }

    /// Asks for a snapshot of everything applied so far, whatever the
    /// snapshot policy says; it is taken at the next [`Engine::process_ready`]
    /// (after a checkpoint already running, if any). Returns the applied
    /// point it will cover: done once `persist.snapshot_end()` reaches it
    /// (at once when the latest checkpoint already does).
    pub fn request_snapshot(&mut self) -> InstanceId {
        let through = self.applied_end;
        self.persist.ask_snapshot(through);
        through
    }

    /// Drops from memory the applied values beyond the bound of
    /// `Config::applied_tail_bytes`. Safety: never at or above the point of
    /// a checkpoint due, being written or waiting for its records (they
    /// must hold every value from that point on), nor at or above what the
    /// state machine applied (a checkpoint taken next is at that point).
    fn release_applied_values(&mut self) {
        // Liveness: only while this node can write a snapshot at its applied
        // point (a peer that needs the dropped values gets one), not while
        // it restores one or replays what an on-disk state already has
        // (seed 70910: a replaying node dropped values a peer needed and
        // could checkpoint none).
        if self.machine.is_some() && self.applied_end >= self.skip_below {
            let below = match self.persist.checkpoint_floor() {
                Some(floor) if !self.opts.inject_release_past_checkpoint => {
                    floor.min(self.applied_end)
                }
                _ => self.applied_end,
            };
            let released = self.replica.release_applied_values(below);
            if released > 0 {
                self.metrics
                    .log_memory_released_bytes
                    .fetch_add(released, Relaxed);
            }
        }
        self.metrics
            .log_memory_bytes
            .store(self.replica.applied_tail_bytes(), Relaxed);
    }

    fn maybe_snapshot(&mut self) {
        self.persist.hurry_overdue_write(self.applied_end);
        // An on-disk state machine ahead of the applied point (a restart
        // replaying what its state has) holds a later state than this
        // point's: no snapshot of it can be taken here (seed 157 wrote one
        // and a peer installed a state two instances ahead of its point).
        if self.applied_end < self.skip_below || !self.persist.snapshot_wanted(self.applied_end) {
            return;
        }
        let Some(machine) = self.machine.as_mut() else {
            return;
        };
        let started = std::time::Instant::now();
        let meta = SnapshotMeta {
            applied_end: self.applied_end,
            checksum: self.checksum,
        };
        // The session table is bounded (`sessions_max` sessions, at most
        // 1 MiB of outputs each) and changes with every apply: encode it
        // here, at the view's point. `encode_snapshot` puts the state
        // machine's bytes last, so table + user bytes is exactly what
        // `encode_snapshot(&snapshot())` gives at this point.
        let memberships = self.replica.schedule_at(meta.applied_end);
        let whole =
            !self.on_disk || self.persist.whole_asked() || self.now_ms < self.whole_until_ms;
        // On-disk mode: the state machine makes its state durable through
        // this point first, at every checkpoint (a whole one too, so that a
        // restart soon after restores nothing).
        let sync = if self.on_disk {
            machine.sync(meta.applied_end)
        } else {
            None
        };
        let encoder = if !whole {
            // The checkpoint records the session table alone. Safety: the
            // file (hence the compaction, step b) comes only after the
            // state machine's job succeeded, and `snapshot_written` checks
            // that it reports the point durable.
            self.metrics.checkpoints_state_on_disk.fetch_add(1, Relaxed);
            let table = self.sessions.encode_checkpoint_state_on_disk();
            log_snapshot_taken(started, table.len(), "state on the state machine's disk");
            SnapshotEncoder::stream(move |out| {
                if let Some(sync) = sync {
                    sync()?;
                }
                out.write_all(&table)
            })
        } else if let Some(write_user) = machine.snapshot_stream() {
            let table = self.sessions.encode_snapshot(&[]);
            log_snapshot_taken(started, table.len(), "view taken, streaming off the loop");
            SnapshotEncoder::stream(move |out| {
                if let Some(sync) = sync {
                    sync()?;
                }
                out.write_all(&table)?;
                write_user(out)
            })
        } else if let Some(encode_user) = machine.snapshot_view() {
            let table = self.sessions.encode_snapshot(&[]);
            log_snapshot_taken(started, table.len(), "view taken, encoding off the loop");
            if let Some(sync) = sync {
                SnapshotEncoder::stream(move |out| {
                    sync()?;
                    out.write_all(&table)?;
                    out.write_all(&encode_user())
                })
            } else {
                SnapshotEncoder::new(move || {
                    let user = encode_user();
                    let mut data = BytesMut::with_capacity(table.len() + user.len());
                    data.extend_from_slice(&table);
                    data.extend_from_slice(&user);
                    data.freeze()
                })
            }
        } else {
            let data = self.sessions.encode_snapshot(&machine.snapshot());
            log_snapshot_taken(started, data.len(), "encoded on the event loop");
            if let Some(sync) = sync {
                self.persist.snapshot_deferred(
                    meta,
                    memberships,
                    SnapshotEncoder::stream(move |out| {
                        sync()?;
                        out.write_all(&data)
                    }),
                );
                return;
            }
            self.persist.snapshot_taken(Snapshot {
                meta,
                memberships: Some(memberships),
                data,
            });
            return;
        };
        self.persist.snapshot_deferred(meta, memberships, encoder);
    }

    /// Starts reading values a peer needs back from the log
    /// ([`Io::ReadLog`]), one read at a time; false where this node does
    /// not (then a snapshot answers the need). While a read is out, a need
    /// waits for it: the peer asks again every catch-up interval, and the
    /// hold the demand set keeps what the read will join. A read that
    /// failed through a point is not tried again for needs up to it: the
    /// snapshot asked then answers them.
    fn read_back_released(&mut self, demand: ReleasedDemand) -> bool {
        if !self.opts.read_back_released {
            return false;
        }
        if self.log_read_failed_through >= Some(demand.through) {
            return false;
        }
        if self.log_read_out {
            return true;
        }
        self.log_read_out = true;
        let read = self.persist.log_read(demand.from, demand.through);
        self.effects.io.push(Io::ReadLog(read));
        true
    }

    /// A read of values a peer needs back from the log ([`Io::ReadLog`])
    /// finished: they go back into memory for the peer's next catch-up
    /// request. Where they no longer join the values kept (more left memory
    /// meanwhile), the peer's next request asks again. Where the log did not
    /// have them all (records not yet written: asked again once; segments a
    /// checkpoint deleted meanwhile), or the read failed, a snapshot
    /// answers the need.
    pub fn log_read_done(
        &mut self,
        read: &LogRead,
        result: Result<Vec<(InstanceId, synod_core::Value)>, StorageError>,
    ) {
        self.log_read_out = false;
        let (from, through) = (read.from(), read.to());
        let mut values = match result {
            Ok(values) => values,
            Err(err) => {
                self.log_read_failed(from, through, &err.to_string());
                return;
            }
        };
        let found = values.len();
        let whole = values.last().is_some_and(|(i, _)| i.next() == through);
        if self.opts.inject_log_read_shift {
            // Negative control: each instance gets the next one's value.
            let instances: Vec<InstanceId> = values.iter().map(|(i, _)| *i).collect();
            values.rotate_left(1);
            for (slot, instance) in values.iter_mut().zip(instances) {
                slot.0 = instance;
            }
        }
        let bytes: usize = values.iter().map(|(_, v)| v.encoded_len()).sum();
        if self.replica.restore_released_values(values) {
            self.log_read_short_ms = None;
            self.metrics.log_reads_for_peers.fetch_add(1, Relaxed);
            info!(
                values = found,
                bytes,
                from = from.0,
                "a peer needs values no longer held in memory: read them back from the log"
            );
        } else if whole {
            // The values kept moved on meanwhile: the next demand reads
            // again, through where they start now.
            self.log_read_short_ms = None;
            debug!(
                from = from.0,
                through = through.0,
                "values read back from the log no longer join those kept"
            );
        } else {
            // Records of the newest values may not be written yet: the
            // peer's next request reads again; a second short read within
            // a second of the first falls back.
            let now = self.now_ms;
            match self.log_read_short_ms {
                Some(at) if now.saturating_sub(at) <= LOG_READ_RETRY_MS => {
                    let reason = format!("found {found} values, not every one up to {}", through.0);
                    self.log_read_failed(from, through, &reason);
                }
                _ => self.log_read_short_ms = Some(now),
            }
        }
    }

    /// A read back from the log did not give what a peer needs: a snapshot
    /// answers the need, and needs up to `through` no longer read the log.
    fn log_read_failed(&mut self, from: InstanceId, through: InstanceId, reason: &str) {
        warn!(
            from = from.0,
            through = through.0,
            "could not read the values a peer needs back from the log ({reason}): writing a snapshot instead"
        );
        self.log_read_short_ms = None;
        self.log_read_failed_through = self.log_read_failed_through.max(Some(through));
        self.snapshot_for_released(through);
    }

    /// A snapshot through `through` for a peer that needs values this node
    /// dropped from memory: once per need (the peer asks again every
    /// catch-up interval until the snapshot is there, and a checkpoint
    /// through the dropped values, asked for, due or being written, answers
    /// it); a whole one for an on-disk state machine.
    fn snapshot_for_released(&mut self, through: InstanceId) {
        if self.on_disk {
            self.whole_until_ms = self.now_ms.saturating_add(WHOLE_SNAPSHOTS_HOLD_MS);
            if !self.persist.whole_asked() {
                info!("a peer needs values no longer held in memory: writing a whole snapshot");
                self.metrics.snapshots_for_peers.fetch_add(1, Relaxed);
                self.persist.ask_whole_snapshot();
            }
            return;
        }
        let covered = self.persist.checkpoint_floor() >= Some(through)
            || self.persist.snapshot_asked_through() >= Some(through);
        if covered {
            // Whatever covers it is written at full speed.
            self.persist.peer_waits();
        } else if self.persist.ask_snapshot(through) {
            info!("a peer needs log values no longer held in memory: writing a snapshot now");
            self.metrics.snapshots_for_peers.fetch_add(1, Relaxed);
        }
    }

    /// Lets the persister start the storage work that is due.
    fn kick(&mut self) -> Result<(), NodeError> {
        let kicked = self.persist.kick(&mut self.replica)?;
        if let Some(done) = kicked.checkpointed {
            self.metrics.snapshots.fetch_add(1, Relaxed);
            self.effects.checkpointed.push(done);
        }
        self.effects.io.extend(kicked.io);
        Ok(())
    }

    /// A log write + fdatasync handed out as [`Io::Sync`] finished. An
    /// error poisons the log: fatal, never retried.
    pub fn sync_done(
        &mut self,
        job: SyncJob,
        result: Result<(), StorageError>,
        through: synod_core::PersistSeq,
    ) -> Result<(), NodeError> {
        self.persist
            .sync_done(job, result, through, &mut self.replica)?;
        Ok(())
    }

    /// A snapshot file handed out as [`Io::WriteSnapshot`] was written (or
    /// not: fatal).
    pub fn snapshot_written(
        &mut self,
        pending: crate::persist::PendingCheckpoint,
        result: Result<(), StorageError>,
    ) -> Result<(), NodeError> {
        let mut result = result;
        // A checkpoint an install superseded is dropped at step (b) anyway:
        // not checked (the restore may have reset the durable point).
        if result.is_ok()
            && pending.is_own()
            && self.persist.is_current(&pending)
            && !Sessions::snapshot_holds_state(&pending.snapshot.data)
        {
            // The log is about to be compacted to this point on the word
            // of the state machine's `sync`: it must say the state is
            // durable there, or a restart could not rebuild it.
            let point = pending.snapshot.meta.applied_end;
            // While a restore runs this checkpoint is of the state before
            // the install, and step (b) drops it (persist.rs, rule 5).
            let durable = self.machine.as_ref().map(|m| m.durable_end());
            if let Some(durable) = durable.filter(|d| d.is_none_or(|d| d < point)) {
                result = Err(StorageError::Io {
                    path: std::path::PathBuf::from("(the state machine's own files)"),
                    source: std::io::Error::other(format!(
                        "StateMachine::sync through instance {} succeeded but durable_end reports {:?}: the log cannot be compacted past the state machine's durable state",
                        point.0,
                        durable.map(|d| d.0)
                    )),
                });
            }
        }
        self.persist.snapshot_written(pending, result)?;
        Ok(())
    }

    /// Files superseded by a checkpoint ([`Io::Remove`]) were deleted (or
    /// not: logged, harmless).
    pub fn cleaned(&mut self, result: Result<(), StorageError>) {
        if let Err(err) = self.persist.cleaned(result) {
            warn!("could not delete files a checkpoint superseded: {err}");
        }
    }

    /// Answers every waiting request with `error` (the node stops).
    pub fn fail_all(&mut self, error: RequestError) {
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            self.answer(waiter.reply, Err(error.clone()));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            self.answer(read.reply, Err(error.clone()));
        }
        for (_, reply, _) in std::mem::take(&mut self.stale_after_restore) {
            self.answer(reply, Err(error.clone()));
        }
    }
}

/// The payload of a [`Kind::Register`] envelope.
pub(crate) fn register_payload(nonce: u64, ttl_ms: u64) -> Bytes {
    let mut payload = BytesMut::with_capacity(16);
    payload.extend_from_slice(&nonce.to_le_bytes());
    payload.extend_from_slice(&ttl_ms.to_le_bytes());
    payload.freeze()
}

fn parse_register_payload(payload: &[u8]) -> Option<(u64, u64)> {
    let payload: &[u8; 16] = payload.try_into().ok()?;
    let (nonce, ttl) = payload.split_at(8);
    Some((
        u64::from_le_bytes(nonce.try_into().ok()?),
        u64::from_le_bytes(ttl.try_into().ok()?),
    ))
}

/// The answer to a client session command the table decided on (`None`:
/// not decided yet).
fn session_answer(check: Check, client: ClientSeq) -> Option<Result<Bytes, RequestError>> {
    Some(match check {
        Check::Pending | Check::Apply => return None,
        Check::Duplicate(Some(output)) => Ok(output),
        Check::Duplicate(None) => Err(RequestError::OutputNotKept),
        Check::TooOld { last } => Err(RequestError::SessionSeqTooOld {
            seq: client.seq,
            last,
        }),
        Check::Expired => Err(RequestError::SessionExpired(client.session)),
        Check::Unknown => Err(RequestError::SessionUnknown(client.session)),
    })
}

fn log_snapshot_taken(started: std::time::Instant, bytes: usize, how: &str) {
    let took = started.elapsed();
    if took >= Duration::from_millis(25) {
        info!(
            bytes,
            ms = took.as_millis() as u64,
            "state machine snapshot taken ({how})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{Body, Config, GroupId, SnapshotDigest, Value};
    use synod_storage::{SnapshotPolicy, Wal, WalOptions};

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
            Bytes::from(self.0.to_string())
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

    /// An engine of node `id` of three, on a fresh log in `dir`, that
    /// nothing drives: the test calls its steps by hand.
    fn engine(id: u32, dir: &std::path::Path, sessions_max: usize) -> Engine<Sum, u32> {
        let members = vec![NodeId(1), NodeId(2), NodeId(3)];
        let replica =
            Replica::recover(Config::new(NodeId(id), members), None, Vec::new()).expect("recovers");
        let (wal, _) =
            Wal::open(&dir.join(format!("n{id}")), WalOptions::default()).expect("opens");
        let persist = Persister::new(GroupId(0), wal, SnapshotPolicy::default(), InstanceId(0));
        let opts = EngineOptions {
            request_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_secs(1),
            loading_grace: Duration::ZERO,
            sessions_max,
            unsafe_local_reads: false,
            local_clock_reads: false,
            wall_clock: WallClock::from_fn(|| 1_000),
            mono_clock: None,
            inject_admit_duplicates: false,
            inject_session_reapply: false,
            inject_on_disk_reapply: false,
            inject_release_past_checkpoint: false,
            read_back_released: true,
            inject_log_read_shift: false,
            inject_local_permit_without_lease: false,
        };
        Engine::new(
            opts,
            replica,
            persist,
            Sum::default(),
            RecoveredMachine::empty(sessions_max),
            u64::from(id) << 32,
            0,
            Arc::new(Metrics::default()),
        )
    }

    /// A request of `follower`'s client number `token`, waiting for its
    /// command; returns the command as it sits in the log.
    /// Runs the restore an install handed out, as the driver does off the
    /// loop.
    fn finish_restore(engine: &mut Engine<Sum, u32>) {
        // Without storage I/O run here, the installed checkpoint never
        // becomes durable: take the job as if it had.
        let job = engine.restore_job.take().expect("an install restores");
        assert!(engine.restoring());
        let (machine, result) = job.run();
        engine.restored(machine, result).expect("restored");
    }

    fn submit(follower: &mut Engine<Sum, u32>, token: u32, payload: &'static [u8]) -> Bytes {
        follower.request(Kind::Command, Bytes::from_static(payload), token);
        let seq = *follower.waiters.keys().next_back().expect("a waiter");
        follower.waiters[&seq].envelope.clone()
    }

    /// The answers handed out so far, by token.
    fn answers(engine: &mut Engine<Sum, u32>) -> BTreeMap<u32, Result<Bytes, RequestError>> {
        engine
            .take_effects()
            .answers
            .into_iter()
            .map(|answer| match answer {
                Answer::Done(token, result) => (token, result),
                Answer::OffLoop(..) => panic!("Sum answers on the loop"),
            })
            .collect()
    }

    /// What the leader's snapshot holds after applying `commands` at
    /// instances 0, 1, ...
    fn leader_snapshot(leader: &mut Engine<Sum, u32>, commands: &[Bytes]) -> Snapshot {
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
            data: leader
                .sessions
                .encode_snapshot(&leader.machine().expect("present").snapshot()),
        }
    }

    /// A read back from the log that finds fewer values than asked is tried
    /// again once (the newest records may not be written yet); a second
    /// within a second, or a read that fails, asks for a snapshot through
    /// the need, and needs up to it no longer read the log. A read past the
    /// window of a first short one counts as a first again.
    #[test]
    fn a_short_or_failed_log_read_falls_back_to_a_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = engine(1, dir.path(), 16);
        let need = |from, through| ReleasedDemand {
            from: InstanceId(from),
            through: InstanceId(through),
        };
        assert!(e.read_back_released(need(0, 4)));
        assert!(e.read_back_released(need(0, 4)), "waits for the read out");
        assert_eq!(e.effects.io.len(), 1, "one read at a time");
        let read = e.persist.log_read(InstanceId(0), InstanceId(4));
        e.log_read_done(&read, Ok(Vec::new()));
        assert_eq!(e.persist.snapshot_asked_through(), None);
        e.set_time(2_000);
        e.log_read_done(&read, Ok(Vec::new()));
        assert_eq!(e.persist.snapshot_asked_through(), None, "a first again");
        e.set_time(2_500);
        e.log_read_done(&read, Ok(Vec::new()));
        assert_eq!(e.persist.snapshot_asked_through(), Some(InstanceId(4)));
        assert!(!e.read_back_released(need(0, 4)), "no longer read");
        assert_eq!(e.metrics.snapshots_for_peers.load(Relaxed), 1);
        // A failed read: the snapshot at once.
        assert!(e.read_back_released(need(4, 9)));
        let read = e.persist.log_read(InstanceId(4), InstanceId(9));
        let failure = StorageError::Io {
            path: std::path::PathBuf::from("wal"),
            source: std::io::Error::other("a failing disk"),
        };
        e.log_read_done(&read, Err(failure));
        assert_eq!(e.persist.snapshot_asked_through(), Some(InstanceId(9)));
        assert_eq!(e.metrics.snapshots_for_peers.load(Relaxed), 2);
        assert_eq!(e.metrics.log_reads_for_peers.load(Relaxed), 0);
    }

    /// Regression (issue 12, item 7): a follower's command, forwarded to the
    /// leader and chosen while the follower lagged, reaches the follower only
    /// inside a snapshot. `apply` never runs for it there, so the client
    /// waited for the whole request timeout and was told "outcome unknown"
    /// for a write that took effect. Now the install answers it with the
    /// output the session table kept.
    #[test]
    fn a_write_covered_by_an_installed_snapshot_is_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut follower = engine(2, dir.path(), 16);
        let mut leader = engine(1, dir.path(), 16);
        let command = submit(&mut follower, 1, b"abc");
        submit(&mut follower, 2, b"not chosen yet");
        let other = Envelope {
            kind: Kind::Command,
            session: 99,
            seq: 1,
            low_mark: 1,
            time_ms: 1,
            client: None,
            payload: Bytes::from_static(b"12"),
        }
        .encode();
        let snapshot = leader_snapshot(&mut leader, &[other, command]);
        follower.install(snapshot).expect("installs");
        finish_restore(&mut follower);
        let answers = answers(&mut follower);
        assert_eq!(
            answers.get(&1),
            Some(&Ok(Bytes::from_static(b"sum=5"))),
            "the output the command had on the leader"
        );
        assert!(
            !answers.contains_key(&2),
            "a command the snapshot does not cover still waits"
        );
        assert_eq!(follower.waiters.len(), 1);
    }

    /// A piece of `snapshot` as node 1 sends it to node 2.
    fn snapshot_piece(snapshot: &Snapshot, offset: u64, data: &[u8]) -> Message {
        Message {
            group: GroupId(0),
            from: NodeId(1),
            to: NodeId(2),
            body: Body::SnapshotChunk {
                meta: snapshot.meta,
                total_len: snapshot.data.len() as u64,
                digest: SnapshotDigest::of(&snapshot.data),
                offset,
                data: Bytes::copy_from_slice(data),
                memberships: (offset == 0).then(|| {
                    synod_core::Schedule::new(
                        InstanceId(0),
                        synod_core::Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]),
                    )
                }),
            },
        }
    }

    /// With a grace (the runtime's default is 1 s), a load shorter than it
    /// refuses nothing: requests wait for it as before; from the grace on,
    /// new ones are refused. Counted from when a tick or a request first
    /// saw the load (here, a request).
    #[test]
    fn requests_wait_for_a_short_load_and_are_refused_past_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut follower = engine(2, dir.path(), 16);
        follower.opts.loading_grace = Duration::from_secs(1);
        let mut leader = engine(1, dir.path(), 16);
        let command = submit(&mut follower, 1, b"abc");
        let snapshot = leader_snapshot(&mut leader, &[command]);
        follower.set_time(10_000);
        follower
            .replica
            .step(snapshot_piece(&snapshot, 0, &snapshot.data[..1]));
        assert!(follower.loading());
        submit(&mut follower, 2, b"waits");
        follower.set_time(10_999);
        submit(&mut follower, 3, b"waits too");
        assert_eq!(follower.waiters.len(), 3, "within the grace: proposed");
        follower.set_time(11_000);
        follower.request(Kind::Command, Bytes::from_static(b"refused"), 4);
        assert_eq!(follower.waiters.len(), 3);
        assert_eq!(
            answers(&mut follower).get(&4),
            Some(&Err(RequestError::Loading))
        );
    }

    /// A node catching up from a peer's snapshot refuses new requests at
    /// once, writes, reads and stale reads alike, with `Loading` (counted),
    /// and proposes or asks nothing for them: from the first piece received
    /// until the state machine is restored. The request that waited before
    /// keeps waiting (it was proposed: only its own answer can tell), and
    /// is answered from the snapshot; requests are taken again after.
    #[test]
    fn a_node_loading_a_snapshot_refuses_new_requests_until_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut follower = engine(2, dir.path(), 16);
        let mut leader = engine(1, dir.path(), 16);
        let command = submit(&mut follower, 1, b"abc");
        assert!(!follower.loading());
        let snapshot = leader_snapshot(&mut leader, &[command]);
        let piece = |offset, data: &[u8]| snapshot_piece(&snapshot, offset, data);
        follower.replica.step(piece(0, &snapshot.data[..1]));
        assert!(follower.replica.receiving_snapshot());
        let refuse_all = |follower: &mut Engine<Sum, u32>, first: u32| {
            let (waiters, reads) = (follower.waiters.len(), follower.reads.len());
            follower.request(Kind::Command, Bytes::from_static(b"write"), first);
            follower.request(Kind::Read, Bytes::from_static(b"read"), first + 1);
            follower.read_stale(Bytes::from_static(b"stale"), first + 2);
            assert_eq!(
                (follower.waiters.len(), follower.reads.len()),
                (waiters, reads)
            );
            answers(follower)
        };
        let refused = refuse_all(&mut follower, 10);
        assert_eq!(refused.get(&10), Some(&Err(RequestError::Loading)));
        assert_eq!(refused.get(&11), Some(&Err(RequestError::Loading)));
        assert_eq!(
            refused.get(&12),
            Some(&Ok(Bytes::from_static(b"0"))),
            "a stale read is answered from the state it has while the snapshot arrives"
        );
        // The last piece: the core installs it; the engine restores it.
        follower.replica.step(piece(1, &snapshot.data[1..]));
        assert!(!follower.replica.receiving_snapshot());
        follower.install(snapshot).expect("installs");
        assert!(follower.loading());
        let mut refused = refuse_all(&mut follower, 20);
        for token in 20..23 {
            assert_eq!(refused.remove(&token), Some(Err(RequestError::Loading)));
        }
        assert_eq!(follower.metrics.loading_refusals.load(Relaxed), 5);
        finish_restore(&mut follower);
        assert!(!follower.loading());
        refused.extend(answers(&mut follower));
        assert_eq!(
            refused.get(&1),
            Some(&Ok(Bytes::from_static(b"sum=3"))),
            "the write that waited is answered from the snapshot"
        );
        submit(&mut follower, 30, b"after");
        assert_eq!(follower.waiters.len(), 1, "taken again once restored");
    }

    /// A covered command whose session the leader's table evicted cannot be
    /// answered with an output: its client is told plainly that the outcome
    /// is unknown, at once rather than after the request timeout.
    #[test]
    fn a_write_whose_session_was_evicted_gets_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut follower = engine(2, dir.path(), 16);
        let mut leader = engine(1, dir.path(), 1);
        let command = submit(&mut follower, 1, b"abc");
        submit(&mut follower, 2, b"not chosen yet");
        // A newer session pushes the follower's out of the leader's table.
        let newer = Envelope {
            kind: Kind::Command,
            session: 99,
            seq: 1,
            low_mark: 1,
            time_ms: u64::MAX / 2,
            client: None,
            payload: Bytes::from_static(b"12"),
        }
        .encode();
        let snapshot = leader_snapshot(&mut leader, &[command, newer]);
        follower.install(snapshot).expect("installs");
        finish_restore(&mut follower);
        let answers = answers(&mut follower);
        for token in [1, 2] {
            let answer = &answers[&token];
            assert!(
                matches!(answer, Err(RequestError::SessionLost(reason)) if reason.contains("evicted")),
                "{answer:?}"
            );
        }
        assert!(follower.waiters.is_empty());
        assert_eq!(follower.metrics.answered_from_sessions.load(Relaxed), 2);
    }

    /// A client session command proposed through node 2, then retried with
    /// the same sequence number through node 3 (its answer to node 2 was
    /// lost): applied once, and both copies answered with the one output,
    /// in the same instance (the batch is applied before the duplicate is
    /// answered) or in a later one. A follower that learns of it only from
    /// a snapshot answers from the client session table in it.
    #[test]
    fn a_session_command_retried_through_another_node_applies_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut leader = engine(1, dir.path(), 16);
        let mut two = engine(2, dir.path(), 16);
        let mut three = engine(3, dir.path(), 16);
        two.register_session(77, 60_000, 1);
        let seq = *two.waiters.keys().next_back().expect("a waiter");
        let registration = two.waiters[&seq].envelope.clone();
        let snapshot = leader_snapshot(&mut leader, &[registration]);
        two.install(snapshot.clone()).expect("installs");
        finish_restore(&mut two);
        let id = match answers(&mut two).remove(&1) {
            Some(Ok(bytes)) => crate::SessionId::from_bytes(&bytes).expect("an id"),
            other => panic!("{other:?}"),
        };
        three.install(snapshot).expect("installs");
        finish_restore(&mut three);
        let client = ClientSeq {
            session: id,
            seq: 1,
        };
        let in_session = |node: &mut Engine<Sum, u32>, token: u32| {
            node.request_in_session(client, Bytes::from_static(b"abc"), token);
            let seq = *node.waiters.keys().next_back().expect("a waiter");
            node.waiters[&seq].envelope.clone()
        };
        let first = in_session(&mut two, 2);
        let retry = in_session(&mut three, 3);
        let again = in_session(&mut three, 4);
        // Both copies in instance 1, the third in instance 2.
        let base = leader.applied_end().0;
        let mut checksum = leader.checksum();
        for (k, value) in [Value::batch(vec![first, retry]), Value::batch(vec![again])]
            .iter()
            .enumerate()
        {
            checksum = checksum.extend(value);
            leader.apply(InstanceId(base + k as u64), value, checksum);
        }
        assert_eq!(leader.machine().expect("present").0, 3, "applied once");
        let data = leader
            .sessions
            .encode_snapshot(&leader.machine().expect("present").snapshot());
        let snapshot = Snapshot {
            memberships: None,
            meta: SnapshotMeta {
                applied_end: leader.applied_end(),
                checksum,
            },
            data,
        };
        two.install(snapshot.clone()).expect("installs");
        finish_restore(&mut two);
        three.install(snapshot).expect("installs");
        finish_restore(&mut three);
        assert_eq!(
            answers(&mut two).get(&2),
            Some(&Ok(Bytes::from_static(b"sum=3")))
        );
        let three_answers = answers(&mut three);
        assert_eq!(
            three_answers.get(&3),
            Some(&Ok(Bytes::from_static(b"sum=3")))
        );
        assert_eq!(
            three_answers.get(&4),
            Some(&Ok(Bytes::from_static(b"sum=3")))
        );
        assert_eq!(two.machine().expect("present").0, 3);
        // An older sequence number after a newer one is refused, never applied.
        let newer = ClientSeq {
            session: id,
            seq: 5,
        };
        three.request_in_session(newer, Bytes::from_static(b"zz"), 5);
        three.request_in_session(client, Bytes::from_static(b"abc"), 6);
        let value = Value::batch(three.waiters.values().map(|w| w.envelope.clone()).collect());
        let at = three.applied_end();
        three.apply(at, &value, three.checksum().extend(&value));
        let three_answers = answers(&mut three);
        assert_eq!(
            three_answers.get(&5),
            Some(&Ok(Bytes::from_static(b"sum=5")))
        );
        assert_eq!(
            three_answers.get(&6),
            Some(&Err(RequestError::SessionSeqTooOld { seq: 1, last: 5 }))
        );
    }

    /// A session unused for its TTL of log time is dropped at the same point
    /// of the log everywhere; its next command is refused, not applied.
    #[test]
    fn an_expired_session_refuses_its_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = engine(1, dir.path(), 16);
        let id = node.sessions.clients.register(1, 100, 0);
        let envelope = |seq: u64, time_ms: u64| {
            Envelope {
                kind: Kind::SessionCommand,
                session: 5,
                seq,
                low_mark: seq,
                time_ms,
                client: Some(ClientSeq { session: id, seq }),
                payload: Bytes::from_static(b"x"),
            }
            .encode()
        };
        let value = Value::batch(vec![envelope(1, 50), envelope(2, 149), envelope(3, 249)]);
        node.apply(InstanceId(0), &value, Checksum::default().extend(&value));
        assert_eq!(
            node.machine().expect("present").0,
            2,
            "applied at 50 and 149; unused for 100 ms by 249"
        );
        assert_eq!(
            node.sessions.clients.outcome(id, 3),
            crate::client_sessions::Check::Expired
        );
    }

    /// A request nobody answers times out at the first scan after its
    /// deadline, by the monotonic time the caller gives, never before.
    #[test]
    fn a_request_times_out_by_the_callers_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = engine(2, dir.path(), 16);
        submit(&mut node, 7, b"x");
        for tick in 1..=SCAN_TICKS * 60 {
            node.set_time(tick * 10);
            node.tick();
            let answers = answers(&mut node);
            if tick * 10 < 5_000 {
                assert!(answers.is_empty(), "answered at {} ms", tick * 10);
            } else if let Some(answer) = answers.get(&7) {
                assert_eq!(answer, &Err(RequestError::Timeout(Duration::from_secs(5))));
                assert!(tick * 10 <= 5_000 + SCAN_TICKS * 10);
                return;
            }
        }
        panic!("never timed out");
    }
}
