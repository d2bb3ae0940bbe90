//! The simulated world: nodes running the real `synod-core`, their simulated
//! disks, the simulated network, and one event queue ordered by simulated time.
//! Everything random comes from one seeded generator, so a seed replays exactly.

use crate::kv::{decode, KvEvent, SimKv};
use crate::params::Params;
use crate::report::Stats;
use bytes::{Bytes, BytesMut};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use synod::engine::{Answer, Engine, EngineOptions, Envelope};
use synod::persist::{Io, Persister, SnapshotWrite};
use synod::{Metrics, NodeError, WallClock};
use synod_check::Operation;
use synod_core::codec::Decode;
use synod_core::{
    Apply, Ballot, Body, Config, GroupId, InstanceId, Message, NodeId, PersistSeq, Record, Replica,
    RoleKind, Schedule, Value,
};
use synod_storage::fs::Fs;
use synod_storage::{
    LogRead, Obsolete, SimFs, SnapshotPolicy, StorageError, SyncJob, Wal, WalOptions,
};

/// How a node's engine answers a simulated client: which client, which of
/// its operations, which attempt (an answer to an older attempt is stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) client: usize,
    pub(crate) seq: u64,
    pub(crate) attempt: u32,
}

/// Sessions a node's table keeps: the runtime's default. Sessions live per
/// node incarnation, so a run never evicts one (an evicted session's late
/// retry may take effect twice: documented in `envelope.rs`).
const SESSIONS_MAX: usize = 4096;

/// The runtime's engine as a simulated node runs it.
pub(crate) type SimEngine = Engine<SimKv, Token>;

/// What a restarted replica forgot of what it had said durably before the
/// crash (`None`: nothing). Instances below `snapshot_end` are chosen and in
/// the snapshot.
fn no_amnesia(node: &mut SimNode, replica: &Replica, snapshot_end: InstanceId) -> Option<String> {
    node.sent_accepted = node.sent_accepted.split_off(&snapshot_end);
    let mut promised = Ballot::ZERO;
    let mut accepted = BTreeMap::new();
    let mut chosen = BTreeSet::new();
    for record in replica.checkpoint_records() {
        match record {
            Record::Promise { ballot, .. } => promised = promised.max(ballot),
            Record::Accept {
                instance, ballot, ..
            } => {
                accepted.insert(instance, ballot);
            }
            Record::Chosen { instance, .. } => {
                chosen.insert(instance);
            }
        }
    }
    if promised < node.sent_promise {
        return Some(format!(
            "with promise {promised:?} after promising {:?}",
            node.sent_promise
        ));
    }
    for (instance, sent) in &node.sent_accepted {
        let kept = accepted.get(instance).is_some_and(|b| b >= sent);
        if !kept && !chosen.contains(instance) {
            return Some(format!(
                "without its acceptance of {instance} at {sent:?} (it has {:?})",
                accepted.get(instance)
            ));
        }
    }
    None
}

/// What a node's wall clock reads at simulated time 0 (2026-01-01).
const WALL_EPOCH_MS: u64 = 1_767_225_600_000;

/// Something that happens at a simulated time.
#[derive(Debug)]
pub(crate) enum Event {
    Tick {
        node: usize,
        epoch: u64,
    },
    /// One message in flight, as the bytes `synod-net` puts on the wire
    /// (one frame), between two node indexes.
    Deliver {
        from: usize,
        to: usize,
        /// The sender's incarnation: a wiped node's messages still in
        /// flight are dropped (as its TCP connections were).
        epoch: u64,
        frame: Bytes,
    },
    /// A node's storage I/O (started by its `Persister`) completes.
    IoDone {
        node: usize,
        epoch: u64,
        io: IoKind,
    },
    Restart {
        node: usize,
    },
    ClientWake {
        client: usize,
        token: u64,
    },
    Nemesis,
    HealNetwork {
        token: u64,
    },
    Heal,
    EndLiveness,
    Resume {
        node: usize,
        epoch: u64,
    },
    /// One membership nemesis action (see `membership.rs`).
    MemberNemesis,
    /// A spare node added to the membership starts (see `membership.rs`).
    StartSpare {
        node: usize,
    },
    /// A node's core asked to be woken at this local time
    /// (`Replica::wake_at_ms`), as the driver's timer does.
    Wake {
        node: usize,
        epoch: u64,
        due_ms: u64,
    },
}

/// Which of a node's outstanding I/O jobs completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoKind {
    Sync,
    WriteSnapshot,
    Remove,
    /// Values a peer needs read back from the log (`Io::ReadLog`).
    ReadLog,
    /// The state machine's restore from a peer's snapshot (the driver runs
    /// it on a blocking thread).
    Restore,
    /// A snapshot file written under a slow cap is reported (see
    /// `Params::slow_snapshot_writes`).
    SnapshotReport,
}

/// Where every simulated node keeps its data on its simulated disk.
const DATA_DIR: &str = "/data";

/// Something that reached a paused node, handled when it wakes.
#[derive(Debug)]
pub(crate) enum Backlog {
    /// A message or an fsync completion.
    Event(Event),
    /// The ticks its clock missed, fired in a row (as the runtime's timer
    /// catches up), at one random point among the rest.
    Ticks(u64),
    /// A client's request (its current operation, if still the same).
    Submit {
        client: usize,
        seq: u64,
        attempt: u32,
    },
}

struct Scheduled {
    time_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time_us, self.seq) == (other.time_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.time_us, other.seq).cmp(&(self.time_us, self.seq))
    }
}

/// The phases of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Faults on; only safety is checked.
    Safety,
    /// Faults healed; clients go on and must make progress.
    Liveness,
    /// Clients stop issuing; the cluster must converge.
    Settle,
}

/// One simulated node: a replica (when up), its disk and its state machine.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    /// The runtime's engine (`synod::engine`, the code the driver runs):
    /// the replica, the persister, the session table and the state machine;
    /// `None` while the node is down.
    pub(crate) engine: Option<SimEngine>,
    /// The node's wall clock (ms since the Unix epoch), read by its engine's
    /// `WallClock` (and, for the `nondeterministic-sm` control, its state
    /// machine); set before every input.
    pub(crate) wall: Arc<AtomicU64>,
    /// Bumped at every crash; events of an older incarnation are ignored.
    pub(crate) epoch: u64,
    /// The node's disk (shared handle): the real WAL and snapshot files
    /// write through it, and a crash keeps only what it made durable (or a
    /// torn, reordered part of the rest).
    pub(crate) disk: SimFs,
    /// I/O the persister started, carried out when its completion event
    /// fires (one of each kind at most).
    pub(crate) sync_out: Option<(SyncJob, PersistSeq)>,
    pub(crate) snapshot_out: Option<SnapshotWrite>,
    /// A snapshot file written under a slow cap, its result, and when its
    /// report is due (unless its cap is lifted first).
    pub(crate) snapshot_report: Option<(SnapshotWrite, Result<(), StorageError>, u64)>,
    pub(crate) restore_out: Option<synod::engine::RestoreJob<SimKv>>,
    /// synod-kv's registry of blocked clients of this incarnation: it
    /// outlives the state machine's restores (as the server's does), so
    /// pops register and wait while the state machine is away.
    pub(crate) blocked_clients: Option<synod_kv::BlockedClients>,
    pub(crate) remove_out: Option<Obsolete>,
    pub(crate) log_read_out: Option<LogRead>,
    /// Disk faults were injected into this node since its last start: a
    /// fatal storage error is then expected, not a bug.
    pub(crate) disk_faults: bool,
    /// A power cut is armed inside this node's next checkpoint.
    pub(crate) checkpoint_cut: bool,
    /// The highest ballot this node ever sent a Promise for, and per
    /// instance the highest ballot it sent Accepted for: both were durable
    /// when sent, so a restart must remember them (acceptor amnesia lets two
    /// values be chosen). Checked at every restart (`check_no_amnesia`).
    pub(crate) sent_promise: Ballot,
    pub(crate) sent_accepted: BTreeMap<InstanceId, Ballot>,
    /// The disk was wiped and the node has not voted since: it starts with
    /// `Config::rebuild` (as `synod server --rebuild`) until it does.
    pub(crate) rebuilding: bool,
    /// Messages sent by incarnations before this one are dropped in flight.
    pub(crate) wiped_epoch: u64,
    /// The next instance this incarnation must apply (the order check).
    pub(crate) next_apply: u64,
    /// Frozen by the pause nemesis: everything for it waits in `backlog`.
    pub(crate) paused: bool,
    pub(crate) backlog: Vec<Backlog>,
    pub(crate) missed_ticks: u64,
    /// The wake-up its core asked for that is scheduled (`Event::Wake`):
    /// the incarnation and the local time.
    pub(crate) wake_armed: Option<(u64, u64)>,
    /// A spare slot (an id beyond the initial nodes) that has never run: it
    /// starts only once a live member's membership holds it
    /// (`World::start_spare`), never through a restart.
    pub(crate) absent: bool,
    /// A start of this spare is scheduled.
    pub(crate) spare_start_due: bool,
    /// Removed from the group and stopped for good: never restarted.
    pub(crate) retired: bool,
    /// For a node that joined a running group: the point and schedule it
    /// was started with (`Config::schedule`), as an operator's config file
    /// keeps them; every restart passes them again (a snapshot on its disk
    /// replaces them on recovery).
    pub(crate) join: Option<(InstanceId, Schedule)>,
    /// The disk was wiped after the group's membership changed: like a new
    /// node, it must start from a live member's schedule (its bootstrap
    /// membership names nodes that may be gone, and the members it has now
    /// would refuse it as a stranger).
    pub(crate) schedule_lost: bool,
    /// An expiry sweep it proposed is not answered yet (see `sweep.rs`).
    pub(crate) sweep_in_flight: bool,
    /// Mixed commands this node proposed whose answer has not come.
    pub(crate) mixed_in_flight: u32,
    /// When this node may propose its next mixed command.
    pub(crate) next_mixed_us: u64,
    /// No sweep from it before this time.
    pub(crate) next_sweep_us: u64,
    /// The pace of its sweeps, as the server's (see `sweep.rs`).
    pub(crate) sweep_pacer: synod_kv::expiry_sweep::SweepPacer,
    /// The next expiry when its sweep in flight was proposed.
    pub(crate) sweep_expiry_before: Option<u64>,
}

impl SimNode {
    /// The node's replica, if it runs.
    pub(crate) fn replica(&self) -> Option<&Replica> {
        self.engine.as_ref().map(|e| &e.replica)
    }

    /// The node's state machine, if it runs.
    pub(crate) fn kv(&self) -> Option<&crate::kv::Kv> {
        self.engine
            .as_ref()
            .and_then(|e| e.machine())
            .map(|m| &m.kv)
    }

    pub(crate) fn replica_mut(&mut self) -> Option<&mut Replica> {
        self.engine.as_mut().map(|e| &mut e.replica)
    }

    /// A node with an empty disk and nothing running.
    pub(crate) fn new(id: NodeId) -> SimNode {
        SimNode {
            id,
            engine: None,
            wall: Arc::new(AtomicU64::new(0)),
            epoch: 0,
            disk: SimFs::new(),
            sync_out: None,
            snapshot_out: None,
            snapshot_report: None,
            restore_out: None,
            blocked_clients: None,
            remove_out: None,
            log_read_out: None,
            disk_faults: false,
            checkpoint_cut: false,
            sent_promise: Ballot::ZERO,
            sent_accepted: BTreeMap::new(),
            rebuilding: false,
            wiped_epoch: 0,
            next_apply: 0,
            paused: false,
            backlog: Vec::new(),
            missed_ticks: 0,
            wake_armed: None,
            absent: false,
            spare_start_due: false,
            retired: false,
            join: None,
            schedule_lost: false,
            sweep_in_flight: false,
            next_sweep_us: 0,
            mixed_in_flight: 0,
            next_mixed_us: 0,
            sweep_pacer: synod_kv::expiry_sweep::SweepPacer::new(),
            sweep_expiry_before: None,
        }
    }
}

/// The whole simulation of one seed.
pub(crate) struct World {
    pub(crate) rng: ChaCha8Rng,
    /// Chooses which GETs go by read index (see `Params::read_index_share`).
    pub(crate) read_rng: ChaCha8Rng,
    /// Chooses which PUTs set a TTL.
    pub(crate) ttl_rng: ChaCha8Rng,
    /// Draws disk faults and where power cuts land.
    pub(crate) disk_rng: ChaCha8Rng,
    /// Draws the forged messages (see `forge.rs`).
    pub(crate) forge_rng: ChaCha8Rng,
    /// Draws the watch clients' operations (see `Params::watch_clients`).
    pub(crate) watch_rng: ChaCha8Rng,
    /// Draws the queue clients' operations (see `Params::push_clients`).
    pub(crate) queue_rng: ChaCha8Rng,
    /// Draws which reads a leader serves outside its engine (see
    /// `Params::local_lease_reads`).
    pub(crate) local_read_rng: ChaCha8Rng,
    /// Draws the library session clients' operations, nodes and restarts
    /// (see `Params::session_clients`).
    pub(crate) session_rng: ChaCha8Rng,
    /// Draws the mixed commands and when they are proposed (see `mixed.rs`).
    pub(crate) mixed_rng: ChaCha8Rng,
    /// Draws which restores from a peer's snapshot take long (a stream of
    /// its own, so the other draws of a seed stay as they were).
    restore_rng: ChaCha8Rng,
    /// Draws which snapshot writes get an `EIO` (`Params::snapshot_write_eio`;
    /// a stream of its own too).
    snapshot_eio_rng: ChaCha8Rng,
    pub(crate) now_us: u64,
    pub(crate) seed: u64,
    pub(crate) params: Params,
    pub(crate) faults: crate::Faults,
    pub(crate) phase: Phase,
    pub(crate) nodes: Vec<SimNode>,
    /// Directed links that drop everything: (from, to) node indexes.
    pub(crate) blocked: BTreeSet<(usize, usize)>,
    /// Per directed link, an extra loss probability (flaky links).
    pub(crate) link_loss: BTreeMap<(usize, usize), f64>,
    pub(crate) network_token: u64,
    /// No `isolate_on_apply` before this time.
    pub(crate) next_isolate_us: u64,
    /// The cut of `isolate_on_apply` holds until this time: the other
    /// nemeses leave the network alone meanwhile.
    pub(crate) cut_until_us: u64,
    queue: BinaryHeap<Scheduled>,
    queue_seq: u64,
    pub(crate) clients: Vec<crate::client::Client>,
    /// The client history, for the linearizability checker.
    pub(crate) history: Vec<Operation>,
    /// The history index of each operation, by (client, seq).
    pub(crate) history_index: BTreeMap<(u64, u64), usize>,
    /// Per GET answered by a read (by read index or through the log): the
    /// point its answer gave, its attempt and its sequence number.
    pub(crate) read_points: BTreeMap<usize, (u64, u32, u64)>,
    /// Per client command `(client, seq)` that took effect: the attempt that
    /// carried it and the instance. The runtime may skip an earlier copy in
    /// the log (a late one its proposer gave up on), so this, not the first
    /// copy, is where it took effect.
    pub(crate) effective: BTreeMap<(u64, u64), (u32, u64)>,
    /// Every `(client, seq, attempt)` a node answered `Loading`: refused
    /// before it was proposed, so none may ever take effect.
    pub(crate) refused_while_loading: std::collections::HashSet<(u64, u64, u32)>,
    /// The runtime's counters, all engines of the run together (evidence
    /// that the engine's paths ran: retries, timeouts, reads through the log,
    /// answers from an installed snapshot's session table).
    pub(crate) metrics: Arc<Metrics>,
    /// GETs served by read index: (the serving node's applied prefix then,
    /// when, index in `history`). They place those reads in the witness.
    pub(crate) index_reads: Vec<(u64, u64, usize)>,
    /// Every command a client ever proposed (validity).
    pub(crate) proposed: HashSet<Bytes>,
    /// The first value applied at each instance by anyone (agreement).
    pub(crate) chosen: BTreeMap<u64, Value>,
    /// Commands acknowledged to a client: (client, seq).
    pub(crate) acknowledged: Vec<(u64, u64)>,
    /// Commands (client, seq) whose key was absent (never set, deleted, or
    /// expired) when they first took effect: the witness needs to know
    /// where the log let a key expire.
    pub(crate) found_absent: HashSet<(u64, u64)>,
    /// History indexes of reads by index that found their key absent.
    pub(crate) read_found_absent: HashSet<usize>,
    /// Per applied prefix length, the first node to reach it and its state
    /// digest (see `record_digest`).
    pub(crate) digests: BTreeMap<u64, (NodeId, u64)>,
    /// The first violations found (see `violation`).
    pub(crate) violations: Vec<String>,
    /// How many violations were found in all.
    pub(crate) violation_count: u64,
    pub(crate) stats: Stats,
    pub(crate) heal_us: u64,
    /// How many nodes the group started with (ids 1..=initial_nodes, the
    /// bootstrap membership); spares added later get the next ids.
    pub(crate) initial_nodes: usize,
    /// Draws membership changes (see `membership.rs`): a stream of its own.
    pub(crate) member_rng: ChaCha8Rng,
    /// The membership nemesis's state and the membership checkers' truth.
    pub(crate) members: crate::membership::MemberState,
    /// Per node, its drifting monotonic clock (with leases only; created
    /// when first read, spares included).
    pub(crate) lease_clocks: Vec<crate::lease_clock::DriftClock>,
    /// Every node's master-lease belief in true time (leases only; see
    /// `master_checks.rs`).
    pub(crate) masters: crate::master_checks::MasterWatch,
    /// Draws whether a leader is asked to drop its leadership.
    drop_rng: ChaCha8Rng,
    /// Leaders that dropped their leadership when asked.
    pub(crate) leadership_drops: u64,
    /// The roles `log_role_changes` logged last.
    pub(crate) logged_roles: String,
}

impl World {
    pub(crate) fn new(
        seed: u64,
        nodes: usize,
        faults: crate::Faults,
        mut rng: ChaCha8Rng,
    ) -> World {
        let mut params = Params::draw(&mut rng, nodes);
        params.eager_checkpoint =
            ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C4EC_4B01_0000).gen_bool(0.5);
        // Reads by read index came after the seeds above were pinned: their
        // choices come from a stream of their own, so a seed without them
        // runs exactly as before.
        let mut read_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_4EAD_1DE7_0000);
        params.read_index_share = if read_rng.gen_bool(0.5) { 0.75 } else { 0.0 };
        // So do pauses (a fault added later too).
        let mut pause_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_7A05_E000_0000);
        params.weights.pause = if pause_rng.gen_bool(0.5) { 3 } else { 0 };
        // Disk faults and power cuts in the middle of a checkpoint (the real
        // WAL on a simulated disk since issue 12): a stream of their own.
        let mut disk_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_D15C_0000_0000);
        params.weights.disk_fault = if disk_rng.gen_bool(0.5) { 2 } else { 0 };
        params.checkpoint_power_cut = if disk_rng.gen_bool(0.5) { 0.5 } else { 0.0 };
        params.weights.wipe = if disk_rng.gen_bool(0.5) { 1 } else { 0 };
        // Snapshot files written under a slow cap, so that checkpoints last
        // up to seconds (added with the cap): a stream of their own.
        let mut slow_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5A0E_CA90_0000);
        params.slow_snapshot_writes = if slow_rng.gen_bool(0.5) && !faults.slow_snapshot_writes_off
        {
            Some(slow_rng.gen_range(2_000..=40_000))
        } else {
            None
        };
        // Snapshots sent in small chunks, so that transfers drop part-way
        // (added with the spool's trash): a stream of their own.
        let mut chunk_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C4A2_4C00_0000);
        params.snapshot_chunk_bytes = if chunk_rng.gen_bool(0.5) && !faults.small_chunks_off {
            Some(chunk_rng.gen_range(128..=1_024))
        } else {
            None
        };
        // A bound on the values a restoring node holds (added with it): a
        // stream of its own.
        let mut backlog_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_BAC1_0600_0000);
        params.restore_backlog_bytes = if backlog_rng.gen_bool(0.5) && !faults.restore_backlog_off {
            Some(backlog_rng.gen_range(0..=4_096))
        } else {
            None
        };
        // Failed snapshot writes (added with paced write-back): their own.
        let mut snapshot_eio_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5EA1_E100_0000);
        params.snapshot_write_eio = if snapshot_eio_rng.gen_bool(0.5) {
            0.2
        } else {
            0.0
        };
        // Wall clocks that disagree by up to 10 s, and the share of PUTs that
        // set a TTL: streams of their own too.
        let mut clock_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C10C_0000_0000);
        params.clock_offset_ms = (0..nodes)
            .map(|_| clock_rng.gen_range(-10_000..=10_000))
            .collect();
        let ttl_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0771_0000_0000);
        params.weights.clock_jump = if clock_rng.gen_bool(0.5) { 2 } else { 0 };
        params.short_ttls = clock_rng.gen_bool(0.5);
        // Forged huge ballots (issue 13): a stream of their own as well.
        let mut forge_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F026_E000_0000);
        params.weights.forge = if forge_rng.gen_bool(0.5) { 2 } else { 0 };
        // Membership changes came later still: a stream of their own, and
        // spare nodes are only appended when one is added, so a seed
        // without them runs exactly as before.
        let mut member_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_3E3B_E250_0000);
        params.members = crate::params::MemberParams::draw(&mut member_rng, nodes);
        // Leader leases (issue 15): a stream of their own.
        let mut lease_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1EA5_E000_0000);
        let lease_drawn = lease_rng.gen_bool(0.5);
        if (lease_drawn && !faults.lease_off) || faults.lease_drift_beyond_bound {
            params.lease = Some(synod_core::Lease {
                // Below the election timeout (30 ticks of 9 to 11 ms), as the
                // runtime requires, in most seeds; above it in some, which
                // only slows elections.
                duration_ms: if lease_rng.gen_bool(0.8) {
                    lease_rng.gen_range(20..260)
                } else {
                    lease_rng.gen_range(260..800)
                },
                drift_ppm: *[1_000, 2_000, 5_000, 10_000, 50_000, 100_000]
                    .choose(&mut lease_rng)
                    .unwrap_or(&10_000),
            });
        }
        if faults.lease_drift_beyond_bound {
            // The negative control needs reads by index to see anything, and
            // pauses to stop clocks in.
            params.read_index_share = 0.75;
            params.weights.pause = 12;
            params.keys = 1;
            params.clients = params.clients.max(8);
        }
        // Leadership drops (issue 17): a stream of their own.
        let mut drop_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_D209_0000_0000);
        if !faults.drop_off && !faults.master_off && drop_rng.gen_bool(0.5) {
            params.drop_leadership_chance = 0.002;
        }
        // Watched transactions (issue 16): a stream of their own, and
        // clients of their own, so a seed without them runs as before.
        let mut watch_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_3A7C_0000_0000);
        let watch_drawn = watch_rng.gen_bool(0.5);
        if (watch_drawn && !faults.watch_off) || faults.watch_ignored {
            params.watch_clients = watch_rng.gen_range(2..=3);
        }
        // Queue clients (blocking pops, issue 16): likewise.
        let mut queue_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0B10_C4ED_0000_0000);
        let queue_drawn = queue_rng.gen_bool(0.5);
        if (queue_drawn && !faults.queue_off) || faults.wake_lost {
            params.push_clients = queue_rng.gen_range(1..=2);
            params.pop_clients = queue_rng.gen_range(1..=3);
        }
        // Library session clients (issue 17): likewise.
        let mut session_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5E55_1011_0000_0000);
        let session_drawn = session_rng.gen_bool(0.5);
        if (session_drawn && !faults.sessions_off) || faults.session_reapply {
            params.session_clients = session_rng.gen_range(2..=3);
        }
        // Mixed commands (hashes, sets, sorted sets, scripts...): likewise.
        let mut mixed_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x313E_D0C5_0000_0000);
        let mixed_drawn = mixed_rng.gen_bool(0.5);
        if (mixed_drawn && !faults.mixed_off)
            || faults.local_random_draws
            || faults.acl_checked_by_node
        {
            // One seed in three is busy: one every few ms.
            params.mixed_every_us = if mixed_rng.gen_bool(0.3) {
                mixed_rng.gen_range(2_000..10_000)
            } else {
                mixed_rng.gen_range(10_000..80_000)
            };
        }
        // Lease reads served outside the engine: likewise.
        let mut local_read_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x10CA_17EA_0000_0000);
        let local_drawn = local_read_rng.gen_bool(0.5);
        params.local_lease_reads = local_drawn && !faults.local_reads_off;
        let members: Vec<NodeId> = (1..=nodes as u32).map(NodeId).collect();
        let mut world = World {
            local_read_rng,
            rng,
            read_rng,
            ttl_rng,
            disk_rng,
            forge_rng,
            watch_rng,
            queue_rng,
            session_rng,
            mixed_rng,
            restore_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x2E57_02E0_0000_0000),
            snapshot_eio_rng,
            now_us: 0,
            seed,
            heal_us: params.safety_us,
            params,
            faults,
            phase: Phase::Safety,
            nodes: Vec::new(),
            blocked: BTreeSet::new(),
            link_loss: BTreeMap::new(),
            network_token: 0,
            next_isolate_us: 0,
            cut_until_us: 0,
            queue: BinaryHeap::new(),
            queue_seq: 0,
            clients: Vec::new(),
            history: Vec::new(),
            history_index: BTreeMap::new(),
            read_points: BTreeMap::new(),
            effective: BTreeMap::new(),
            refused_while_loading: std::collections::HashSet::new(),
            metrics: Arc::new(Metrics::default()),
            index_reads: Vec::new(),
            proposed: HashSet::new(),
            digests: BTreeMap::new(),
            found_absent: HashSet::new(),
            read_found_absent: HashSet::new(),
            chosen: BTreeMap::new(),
            acknowledged: Vec::new(),
            violations: Vec::new(),
            violation_count: 0,
            stats: Stats::default(),
            initial_nodes: nodes,
            member_rng,
            members: crate::membership::MemberState::new(&members),
            lease_clocks: Vec::new(),
            masters: crate::master_checks::MasterWatch::default(),
            drop_rng,
            leadership_drops: 0,
            logged_roles: String::new(),
        };
        for id in &members {
            world.nodes.push(SimNode::new(*id));
        }
        for node in 0..nodes {
            world.start_node(node);
        }
        world.init_clients();
        let first_nemesis = world.nemesis_delay();
        world.schedule(first_nemesis, Event::Nemesis);
        if world.params.members.weights.total() > 0 {
            let first = world.member_nemesis_delay();
            world.schedule(first, Event::MemberNemesis);
        }
        world.schedule(world.params.safety_us, Event::Heal);
        world.schedule(
            world.params.safety_us + world.params.liveness_us,
            Event::EndLiveness,
        );
        world
    }

    /// The ids of the clients that use library sessions (the last ones):
    /// the state machine leaves their exactly-once to the runtime.
    pub(crate) fn library_client_ids(&self) -> std::collections::BTreeSet<u64> {
        let p = &self.params;
        let first = p.clients + p.watch_clients + p.push_clients + p.pop_clients;
        (first..first + p.session_clients)
            .map(|i| i as u64 + 1)
            .collect()
    }

    /// Runs until the cluster settles or the deadline passes.
    pub(crate) fn run(&mut self) {
        let deadline = self.params.safety_us + self.params.liveness_us + self.params.settle_us;
        while let Some(next) = self.queue.pop() {
            if next.time_us > deadline {
                break;
            }
            debug_assert!(next.time_us >= self.now_us);
            self.now_us = next.time_us;
            self.feed_clocks();
            // With `SIM_LOG` set (main.rs), the runtime's log lines say when
            // and on which node (1-based, as in reports) they were written.
            let node = match &next.event {
                Event::Tick { node, .. }
                | Event::IoDone { node, .. }
                | Event::Restart { node }
                | Event::Resume { node, .. } => Some(*node + 1),
                Event::Deliver { to, .. } => Some(*to + 1),
                _ => None,
            };
            let _span = tracing::info_span!("sim", ms = self.now_us / 1000, node).entered();
            let nemesis_before = self.stats.nemesis.len();
            self.handle(next.event);
            if let Some(action) = self
                .stats
                .nemesis
                .get(nemesis_before..)
                .and_then(|a| a.last())
            {
                tracing::info!("nemesis: {action}");
            }
            if tracing::enabled!(tracing::Level::DEBUG) {
                self.log_role_changes();
            }
            if self.phase == Phase::Settle && self.settled() {
                return;
            }
        }
        self.violation(format!(
            "liveness: the cluster did not settle within {} s after the liveness phase ({})",
            self.params.settle_us / 1_000_000,
            self.progress_summary()
        ));
    }

    pub(crate) fn schedule(&mut self, at_us: u64, event: Event) {
        self.queue_seq += 1;
        self.queue.push(Scheduled {
            time_us: at_us,
            seq: self.queue_seq,
            event,
        });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, epoch } => {
                if self.nodes[node].epoch != epoch {
                    return;
                }
                if self.nodes[node].paused {
                    self.nodes[node].missed_ticks += 1;
                    let at = self.now_us + self.params.tick_us[node];
                    self.schedule(at, Event::Tick { node, epoch });
                    return;
                }
                self.maybe_sweep(node);
                self.propose_mixed(node);
                if let Some(engine) = self.nodes[node].engine.as_mut() {
                    // Scans of waiting requests (retries, timeouts) happen
                    // inside, every few ticks, as in the driver.
                    engine.tick();
                    let at = self.now_us + self.params.tick_us[node];
                    self.schedule(at, Event::Tick { node, epoch });
                    self.pump(node);
                    self.retire_if_allowed(node);
                }
            }
            Event::Deliver {
                from,
                to,
                epoch,
                frame,
            } => {
                if self.blocked.contains(&(from, to)) || epoch < self.nodes[from].wiped_epoch {
                    return;
                }
                if self.nodes[to].paused {
                    let event = Event::Deliver {
                        from,
                        to,
                        epoch,
                        frame,
                    };
                    self.nodes[to].backlog.push(Backlog::Event(event));
                    return;
                }
                if self.nodes[to].replica().is_none() {
                    return;
                }
                let Some(msg) = self.receive(from, to, frame) else {
                    return;
                };
                if let Some(replica) = self.nodes[to].replica_mut() {
                    replica.step(msg);
                    self.pump(to);
                    self.retire_if_allowed(to);
                }
            }
            Event::IoDone { node, epoch, io } => {
                if self.nodes[node].epoch != epoch {
                    return;
                }
                if self.nodes[node].paused {
                    let event = Event::IoDone { node, epoch, io };
                    self.nodes[node].backlog.push(Backlog::Event(event));
                    return;
                }
                self.io_done(node, io);
            }
            Event::Resume { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    self.resume(node);
                }
            }
            Event::Wake {
                node,
                epoch,
                due_ms,
            } => {
                if self.nodes[node].epoch != epoch {
                    return;
                }
                if self.nodes[node].wake_armed == Some((epoch, due_ms)) {
                    self.nodes[node].wake_armed = None;
                }
                if self.nodes[node].paused {
                    let event = Event::Wake {
                        node,
                        epoch,
                        due_ms,
                    };
                    self.nodes[node].backlog.push(Backlog::Event(event));
                    return;
                }
                let asked = |world: &Self| {
                    world.nodes[node].replica().and_then(|r| r.wake_at_ms()) == Some(due_ms)
                };
                if asked(self) {
                    let holds =
                        |world: &Self| world.nodes[node].replica().map_or(0, |r| r.batch_holds().1);
                    let timeouts = holds(self);
                    self.pump(node);
                    if !asked(self) {
                        let leads = self.nodes[node]
                            .replica()
                            .is_some_and(|r| r.status().role == RoleKind::Leader);
                        // (A cohort hold that ran out is no announcement.)
                        if leads && holds(self) == timeouts {
                            self.stats.delayed_announcements += 1;
                        }
                    } else if self.mono_ms(node) >= due_ms {
                        // Woken at the time it asked for, the core must
                        // act (announce the prefix, or propose what a
                        // cohort hold kept back): asking again for the
                        // same time would put it off until a tick or an
                        // input.
                        let id = self.nodes[node].id;
                        self.violation(format!(
                            "node {id} asked to be woken at {due_ms} ms and did nothing when woken"
                        ));
                    }
                    self.retire_if_allowed(node);
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].replica().is_none() {
                    self.start_node(node);
                }
            }
            Event::MemberNemesis => self.member_nemesis(),
            Event::StartSpare { node } => self.start_spare(node),
            Event::ClientWake { client, token } => self.client_wake(client, token),
            Event::Nemesis => self.nemesis(),
            Event::HealNetwork { token } => {
                if token == self.network_token {
                    self.blocked.clear();
                    self.link_loss.clear();
                }
            }
            Event::Heal => self.heal(),
            Event::EndLiveness => self.phase = Phase::Settle,
        }
    }

    /// Starts (or restarts) a node from its durable records only. A spare
    /// that never ran, or a node removed and stopped for good, stays down.
    pub(crate) fn start_node(&mut self, node: usize) {
        if self.nodes[node].absent || self.nodes[node].retired {
            return;
        }
        tracing::info!("node {} starts", node + 1);
        if self.nodes[node].schedule_lost && self.members.truth.len() > 1 {
            let id = self.nodes[node].id;
            match self.schedule_from_member(id) {
                Some(join) => self.nodes[node].join = Some(join),
                None => {
                    // As an operator would: wait until a member answers.
                    if !self.members.truth_latest().was_removed(id) {
                        self.schedule(self.now_us + 100_000, Event::Restart { node });
                    }
                    return;
                }
            }
        }
        self.nodes[node].schedule_lost = false;
        // The bootstrap membership: the initial nodes (spares are not in it).
        let members: Vec<NodeId> = (1..=self.initial_nodes as u32).map(NodeId).collect();
        let library_clients = self.library_client_ids();
        let sim_node = &mut self.nodes[node];
        let mut cfg = Config::new(sim_node.id, members);
        cfg.schedule = sim_node.join.clone();
        cfg.seed = self.seed ^ (u64::from(sim_node.id.0) << 32) ^ sim_node.epoch;
        cfg.inject = self.faults.core;
        cfg.rebuild = sim_node.rebuilding;
        cfg.read_lease = self.params.lease;
        if let Some(bytes) = self.params.snapshot_chunk_bytes {
            cfg.snapshot_chunk_bytes_max = bytes;
        }
        if let Some(bytes) = self.params.restore_backlog_bytes {
            cfg.restore_backlog_bytes_max = bytes;
        }
        // One node in three syncs every batch it leads; the others let their
        // own votes wait for a later sync while the followers choose (the
        // runtime's default): both kinds of leader run in every cluster.
        // (`eager_leaders`: every node syncs each batch, as all did before.)
        cfg.lazy_self_sync =
            !self.faults.eager_leaders && self.seed.wrapping_add(u64::from(sim_node.id.0)) % 3 != 0;
        // A busy leader's drained pipeline announced at once by one node in
        // four, after the runtime's default delay (1 ms) or longer by the
        // others (20 ms: after the next tick, which announces it first).
        cfg.announce_delay_ms = match self.seed.wrapping_add(3 * u64::from(sim_node.id.0)) % 4 {
            0 => 0,
            1 => 3,
            2 => 20,
            _ => 1,
        };
        // Cohort batching off for one node in four, the runtime's default
        // (1 ms) or longer for the others (20 ms: past the next tick), so
        // that leaders hold batches back, release them on a count, on the
        // hold's clock and after backing off, under every fault.
        // (`hold_off`: never, as before it existed.)
        cfg.batch_hold_ms = match self.seed.wrapping_add(7 * u64::from(sim_node.id.0)) % 4 {
            _ if self.faults.hold_off => 0,
            0 => 0,
            1 => 3,
            2 => 20,
            _ => 1,
        };
        // Applied values dropped from memory as soon as the runtime allows,
        // beyond a 512 B or an 8 KiB tail, or never (until a checkpoint
        // compacts them), by node and seed, so that promises report dropped
        // prefixes and catch-up asks for fresh snapshots in most clusters;
        // the values a lagging peer needs held for 1, 10 or 60 s after its
        // last request.
        let id = u64::from(sim_node.id.0);
        cfg.applied_tail_bytes = match self.seed.wrapping_add(5 * id) % 4 {
            0 => 0,
            1 => 512,
            2 => 8192,
            _ => u64::MAX,
        };
        cfg.applied_tail_hold_ticks = match (self.seed >> 2).wrapping_add(id) % 3 {
            0 => 100,
            1 => 1_000,
            _ => 6_000,
        };
        // Small pages, so that phase 1 and catch-up run paginated under
        // every fault (issue 12): a promise or a catch-up reply of more than
        // a few values comes in several messages.
        cfg.promise_bytes_max = 256;
        // Catch-up pages a little larger: a wiped node rebuilds from the
        // first instance, one page per round trip, and with 256-byte pages
        // it lagged a busy cluster for seconds (seed 1288's liveness).
        cfg.catchup_bytes_max = 4096;
        let opts = WalOptions {
            // Small segments and allocation chunks, so that rolls, cuts of
            // allocated tails and multi-segment recovery happen in every run.
            segment_bytes_max: 32 << 10,
            preallocate_bytes: 8 << 10,
            legacy_checkpoint_recovery: self.faults.torn_checkpoint,
            // Runs repeat: the salt comes from the seed, not the OS; each
            // start of a node draws another, as a node does (a segment
            // restarted or started at one open must not be read with
            // another open's salt).
            salt: Some(
                (self.seed ^ (id << 48) ^ sim_node.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .rotate_left(17)
                    ^ 0x5A17_0000_0000,
            ),
        };
        // Whoever restarts a node whose disk filled up frees space first
        // (before opening the WAL, which may need some: recovery cuts a torn
        // tail and may start a segment; seed 100005 on 5 nodes restarted a
        // node on a disk still full, and its WAL could not open).
        sim_node.disk.set_space_bytes_max(None);
        let fs: Arc<dyn Fs> = Arc::new(sim_node.disk.clone());
        let (wal, recovered) = match Wal::open_on(fs, Path::new(DATA_DIR), opts) {
            Ok(opened) => opened,
            Err(err) => {
                self.violation(format!(
                    "recovery of node {node} failed: the WAL does not open on what a crash left: {err}"
                ));
                return;
            }
        };
        let snapshot = recovered.snapshots.get(&GroupId(0)).cloned();
        let local_clock = self
            .faults
            .nondeterministic_sm
            .then(|| Arc::clone(&sim_node.wall));
        let mut machine = SimKv::new(local_clock);
        machine.drop_watch = self.faults.watch_ignored;
        if self.faults.local_random_draws {
            machine.index_shift = sim_node.id.0;
        }
        machine.acl_checked_here = self.faults.acl_checked_by_node && sim_node.id.0 == 1;
        // Odd-numbered nodes stream their snapshots into the file, the
        // others encode them whole: both of the runtime's paths run in
        // every cluster, and nodes install snapshots written either way.
        machine.stream_snapshots = sim_node.id.0 % 2 == 1;
        machine.kv.library_clients = library_clients;
        // Every third node keeps its state on its own (simulated) disk, as
        // a database would: it restarts from that state, not from a
        // snapshot, and its checkpoints hold no copy of it.
        if sim_node.id.0.is_multiple_of(3) && !self.faults.on_disk_off {
            if let Err(err) = machine.open_on_disk(Arc::new(sim_node.disk.clone())) {
                self.violation(format!("node {node}: {err}"));
                return;
            }
        }
        // As the driver recovers: the session table and the state machine
        // from the snapshot (or the state machine's own disk), then the log
        // after it.
        let restored =
            match synod::engine::recover_machine(&mut machine, snapshot.as_ref(), SESSIONS_MAX) {
                Ok(restored) => restored,
                Err(err) => {
                    self.violation(format!("node {node}: its durable snapshot: {err}"));
                    return;
                }
            };
        let next_apply = restored.applied_end.0;
        if restored.skip_below > restored.applied_end {
            self.stats.on_disk_restarts += 1;
        }
        let replica = match Replica::recover(cfg, snapshot, recovered.records_of(GroupId(0))) {
            Ok(replica) => replica,
            Err(err) => {
                self.violation(format!("recovery of node {node} failed: {err}"));
                return;
            }
        };
        if let Some(amnesia) = no_amnesia(sim_node, &replica, InstanceId(next_apply)) {
            let id = sim_node.id;
            self.violation(format!("acceptor amnesia: node {id} restarted {amnesia}"));
            return;
        }
        let policy = SnapshotPolicy {
            instances: self.params.snapshot_every,
            log_bytes: 0,
            // The simulated file system runs the pacing on its own clock
            // and never waits; under a slow cap, the report waits instead.
            write_bytes_per_sec: self
                .params
                .slow_snapshot_writes
                .unwrap_or(SnapshotPolicy::DEFAULT_WRITE_BYTES_PER_SEC),
        };
        let persist = Persister::new(GroupId(0), wal, policy, InstanceId(next_apply));
        let wall = Arc::clone(&sim_node.wall);
        let attempt_ms = self.params.attempt_timeout_us / 1000;
        let opts = EngineOptions {
            // A node gives up on a request about when its client does; it
            // proposes again a few times before that (a lost forward).
            request_timeout: std::time::Duration::from_millis(attempt_ms),
            retry_interval: std::time::Duration::from_millis(attempt_ms / 3),
            // Refusals from the start of a load on half the nodes (by node
            // and seed, no draw), after the runtime's default on the rest.
            loading_grace: if self.faults.loading_refusals_off {
                std::time::Duration::MAX
            } else if (self.seed >> 3).wrapping_add(u64::from(sim_node.id.0)) % 2 == 0 {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs(1)
            },
            sessions_max: SESSIONS_MAX,
            unsafe_local_reads: false,
            local_clock_reads: self.faults.local_clock_ttl,
            wall_clock: WallClock::from_fn(move || wall.load(AtomicOrdering::Relaxed)),
            // Simulated time stands still within an event, and the world
            // sets it before every event.
            mono_clock: None,
            inject_admit_duplicates: self.faults.admit_duplicates,
            inject_session_reapply: self.faults.session_reapply,
            inject_on_disk_reapply: self.faults.on_disk_reapply,
            inject_release_past_checkpoint: self.faults.release_past_checkpoint,
            // Values a peer needs that a node dropped from memory are read
            // back from its log on three nodes in four (by node and seed, no
            // draw), and replaced by a fresh snapshot on the others.
            read_back_released: !self.faults.log_reads_off
                && (self.seed >> 4).wrapping_add(u64::from(sim_node.id.0)) % 4 != 0,
            inject_log_read_shift: self.faults.log_read_shift,
            inject_local_permit_without_lease: self.faults.local_permit_without_lease,
        };
        // A session id per incarnation, as the driver draws one at random.
        let session = self.seed ^ (u64::from(sim_node.id.0) << 48) ^ (sim_node.epoch << 20) ^ 1;
        sim_node.next_apply = next_apply;
        let mono_ms = self.mono_ms(node);
        self.nodes[node]
            .wall
            .store(self.wall_ms(node), AtomicOrdering::Relaxed);
        let mut engine = Engine::new(
            opts,
            replica,
            persist,
            machine,
            restored,
            session,
            mono_ms,
            Arc::clone(&self.metrics),
        );
        engine.record_applies(true);
        let sim_node = &mut self.nodes[node];
        sim_node.blocked_clients = engine.machine().map(|m| m.kv.blocked_clients());
        sim_node.engine = Some(engine);
        let epoch = sim_node.epoch;
        // The new incarnation's clock, before it does anything.
        self.feed_clock(node);
        let at = self.now_us + self.params.tick_us[node];
        self.schedule(at, Event::Tick { node, epoch });
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            if let Some(machine) = engine.machine_mut() {
                machine.digest_at(next_apply);
            }
        }
        self.pump(node);
    }

    /// Wakes a paused node: it handles what reached it meanwhile as the
    /// runtime's event loop would, picking at random, item by item, among its
    /// sources (peer messages and fsync completions in arrival order, client
    /// requests in arrival order, the missed timer ticks at once), so a
    /// client's request may come before the messages that would tell it it
    /// was deposed.
    pub(crate) fn resume(&mut self, node: usize) {
        if !self.nodes[node].paused {
            return;
        }
        self.nodes[node].paused = false;
        let backlog = std::mem::take(&mut self.nodes[node].backlog);
        let missed = std::mem::take(&mut self.nodes[node].missed_ticks);
        let (submits, events): (VecDeque<Backlog>, VecDeque<Backlog>) = backlog
            .into_iter()
            .partition(|item| matches!(item, Backlog::Submit { .. }));
        let mut sources = [events, submits, VecDeque::new()];
        if missed > 0 {
            sources[2].push_back(Backlog::Ticks(missed));
        }
        loop {
            let ready: Vec<usize> = (0..sources.len())
                .filter(|k| !sources[*k].is_empty())
                .collect();
            let Some(&k) = ready.choose(&mut self.rng) else {
                break;
            };
            let Some(item) = sources[k].pop_front() else {
                break;
            };
            match item {
                Backlog::Event(event) => self.handle(event),
                Backlog::Ticks(count) => {
                    for _ in 0..count {
                        if let Some(engine) = self.nodes[node].engine.as_mut() {
                            engine.tick();
                            self.pump(node);
                        }
                    }
                }
                Backlog::Submit {
                    client,
                    seq,
                    attempt,
                } => {
                    if self.submit(client, node, seq, attempt) {
                        self.pump(node);
                    }
                }
            }
        }
    }

    /// Kills a node: its memory and its unsynced writes are gone.
    pub(crate) fn crash(&mut self, node: usize) {
        tracing::info!("node {} crashes", node + 1);
        let sim_node = &mut self.nodes[node];
        let Some(engine) = sim_node.engine.take() else {
            return;
        };
        self.stats.lease_reads += engine.replica.lease_reads();
        self.stats.accepts_deferred += engine.replica.snapshot_transfer_stats().accepts_deferred;
        self.stats.vouched_reads += engine.replica.vouched_reads();
        let (holds, hold_timeouts) = engine.replica.batch_holds();
        self.stats.batch_holds += holds;
        self.stats.batch_hold_timeouts += hold_timeouts;
        sim_node.paused = false;
        sim_node.sweep_in_flight = false;
        sim_node.mixed_in_flight = 0;
        sim_node.sweep_pacer = synod_kv::expiry_sweep::SweepPacer::new();
        sim_node.backlog.clear();
        sim_node.missed_ticks = 0;
        sim_node.epoch += 1;
        // A write may have been issued and not synced when the power went:
        // then its bytes reach the disk's cache, and the crash keeps a torn,
        // reordered part of them (or none).
        if let Some((job, _)) = sim_node.sync_out.take() {
            if self.rng.gen_bool(self.params.torn_tail) {
                sim_node.disk.power_off_after(Some(1));
                let _ = job.run();
            }
        }
        sim_node.snapshot_out = None;
        sim_node.snapshot_report = None;
        sim_node.restore_out = None;
        sim_node.blocked_clients = None;
        sim_node.remove_out = None;
        sim_node.log_read_out = None;
        // The process is gone: its open files go with it (`engine` above),
        // then the disk loses what was not durable.
        drop(engine);
        // The crash also ends every injected fault but a full disk (cleared
        // when the node restarts).
        sim_node.disk.crash(&mut self.rng);
        sim_node.disk_faults = false;
        sim_node.checkpoint_cut = false;
        self.stats.crashes += 1;
        self.clients_lost_node(node);
    }

    /// Lets the node's engine carry out everything its replica's `Ready`
    /// asks for (the driver's own code: persist, install, send, apply,
    /// answer, snapshot, start storage work), then carries out what it hands
    /// out here: messages onto the simulated network, storage jobs onto the
    /// simulated disk, answers to the clients; and checks what it applied.
    pub(crate) fn pump(&mut self, node: usize) {
        self.pump_once(node);
        self.arm_wake(node);
    }

    /// Schedules the wake-up the node's core asks for, once per time asked
    /// (as the driver's timer, which fires at or a little after it; the
    /// core acts only once its own clock, which may drift, got there: a
    /// wake-up that comes early is asked for again).
    fn arm_wake(&mut self, node: usize) {
        let Some(due_ms) = self.nodes[node].replica().and_then(|r| r.wake_at_ms()) else {
            return;
        };
        let epoch = self.nodes[node].epoch;
        if self.nodes[node].wake_armed == Some((epoch, due_ms)) {
            return;
        }
        self.nodes[node].wake_armed = Some((epoch, due_ms));
        let now_ms = self.mono_ms(node);
        let wait_us = due_ms.saturating_sub(now_ms).max(1) * 1000 + self.rng.gen_range(0..=500);
        self.schedule(
            self.now_us + wait_us,
            Event::Wake {
                node,
                epoch,
                due_ms,
            },
        );
    }

    fn pump_once(&mut self, node: usize) {
        let Some(engine) = self.nodes[node].engine.as_mut() else {
            return;
        };
        let applied_before = engine.applied_end().0;
        let mut sent = Vec::new();
        let result = engine.process_ready(&mut |msg| {
            sent.push(msg);
            Ok(())
        });
        let mut effects = engine.take_effects();
        let restore = engine.take_restore_job();
        let events = engine
            .machine_mut()
            .map(|m| std::mem::take(&mut m.events))
            .unwrap_or_default();
        let applied_end = engine.applied_end().0;
        let rebuilt = !engine.replica.rebuilding();
        for msg in sent {
            self.transmit(msg);
        }
        if let Some(point) = effects.installed {
            self.stats.snapshots_installed += 1;
            self.nodes[node].next_apply = point.0;
        }
        for apply in std::mem::take(&mut effects.applied) {
            self.check_applied(node, apply);
        }
        self.kv_events(node, events);
        let epoch = self.nodes[node].epoch;
        if result.is_err() {
            // As the driver: what was decided before the error is carried
            // out (answers given) before the process ends.
            for answer in std::mem::take(&mut effects.answers) {
                self.deliver(node, answer);
            }
            // An answer lets its client send the next request, to this node
            // too, and that request's pump meets the same stopped storage
            // and ends the process (seed 100045: a second report after the
            // crash had cleared the node's injected-fault mark read as a
            // fault nobody injected). The process ended once: done.
            if self.nodes[node].epoch != epoch {
                return;
            }
        }
        if let Err(err) = result {
            match err {
                NodeError::Storage(err) => self.storage_failed(node, &err.to_string()),
                other => {
                    let id = self.nodes[node].id;
                    self.violation(format!("node {id} stopped: {other}"));
                    self.crash(node);
                }
            }
            return;
        }
        self.stats.snapshots += effects.checkpointed.len() as u64;
        self.start_io(node, effects.io);
        let mut restore_now = false;
        if self.faults.restore_instant && restore.is_some() {
            // Seeds pinned before restores ran off the loop replay as they
            // were found: the restore takes no time (no draw either).
            self.nodes[node].restore_out = restore;
            restore_now = true;
        } else if let Some(job) = restore {
            // Restored off the loop, later: the node goes on voting and
            // accepting meanwhile, with nothing applied and reads waiting.
            self.nodes[node].restore_out = Some(job);
            let mut latency =
                self.params.fsync_us_min + self.rng.gen_range(0..=4 * self.params.fsync_us_jitter);
            if self.phase == Phase::Safety && self.restore_rng.gen_bool(0.25) {
                // A large state: the restore lasts several election
                // timeouts, while the node votes, accepts and learns, and a
                // newer snapshot may arrive meanwhile.
                latency = self.restore_rng.gen_range(200_000..2_500_000);
            }
            let epoch = self.nodes[node].epoch;
            self.schedule(
                self.now_us + latency,
                Event::IoDone {
                    node,
                    epoch,
                    io: IoKind::Restore,
                },
            );
        }
        for answer in effects.answers {
            self.deliver(node, answer);
        }
        if applied_end > applied_before {
            self.isolate_on_apply(node);
        }
        for (_, outcome) in effects.member_outcomes {
            match outcome {
                Ok(_) => self.stats.member_ops_ok += 1,
                Err(_) => self.stats.member_ops_refused += 1,
            }
        }
        for divergence in effects.diverged {
            self.violation(format!(
                "divergence reported by node {} against {} at {}: {:?} != {:?}",
                self.nodes[node].id,
                divergence.peer,
                divergence.applied_end,
                divergence.local,
                divergence.remote
            ));
        }
        if let Some(machine) = self.nodes[node]
            .engine
            .as_mut()
            .and_then(|e| e.machine_mut())
        {
            machine.digest_at(applied_end);
            let events = std::mem::take(&mut machine.events);
            self.kv_events(node, events);
        }
        // What this node's applies woke: blocked pops try again.
        self.poll_pops(node);
        self.check_membership(node);
        self.notice_spares(node);
        self.ask_master_lease(node);
        self.maybe_drop_leadership(node);
        let sim_node = &mut self.nodes[node];
        if sim_node.rebuilding && rebuilt {
            sim_node.rebuilding = false;
            self.stats.rebuilds += 1;
        }
        if restore_now {
            self.io_done(node, IoKind::Restore);
        }
    }

    /// Hands an engine's answer to its client.
    fn deliver(&mut self, node: usize, answer: Answer<Token>) {
        let (token, result) = match answer {
            Answer::Done(token, result) => (token, result),
            // The simulator's state machine offers no read views; a job
            // would run at once here.
            Answer::OffLoop(token, job) => (token, Ok(job())),
        };
        if token.client == crate::sweep::SWEEP_CLIENT {
            self.sweep_answered(node);
            return;
        }
        if token.client == crate::mixed::MIXED_CLIENT {
            self.mixed_answered(node, result.is_ok());
            return;
        }
        self.client_answer(node, token, result);
    }

    /// What the node's state machine reported while applying.
    fn kv_events(&mut self, node: usize, events: Vec<KvEvent>) {
        let id = self.nodes[node].id;
        for event in events {
            match event {
                KvEvent::Applied {
                    client,
                    seq,
                    attempt,
                    instance,
                    absent,
                } => {
                    if absent {
                        self.found_absent.insert((client, seq));
                    }
                    if self.refused_while_loading.contains(&(client, seq, attempt)) {
                        self.violation(format!(
                            "node {id} applied attempt {attempt} of client {client}'s command {seq} at #{instance}, which a node had refused as loading (not run)"
                        ));
                    }
                    // Every replica applies the same log: the first to
                    // report it says where the command took effect.
                    self.effective
                        .entry((client, seq))
                        .or_insert((attempt, instance));
                }
                KvEvent::Broken(text) => self.violation(format!("node {id}: {text}")),
                KvEvent::Digest { point, digest } => self.record_digest(node, point, digest),
            }
        }
    }

    /// The node's disk is lost (a replaced disk, a container without its
    /// volume): it crashes, and comes back empty, rebuilding.
    pub(crate) fn wipe(&mut self, node: usize) {
        tracing::info!("node {} loses its disk", node + 1);
        self.crash(node);
        let sim_node = &mut self.nodes[node];
        sim_node.disk.wipe();
        sim_node.rebuilding = true;
        sim_node.wiped_epoch = sim_node.epoch;
        // A wiped node forgets by design; what it said before is not held
        // against it (the rebuild protocol is what must keep that safe).
        sim_node.sent_promise = Ballot::ZERO;
        sim_node.sent_accepted.clear();
        sim_node.schedule_lost = true;
    }

    /// Schedules the completion of the storage jobs the engine handed out.
    fn start_io(&mut self, node: usize, io: Vec<Io>) {
        let epoch = self.nodes[node].epoch;
        for io in io {
            let (kind, latency) = match io {
                Io::Sync { job, through } => {
                    self.nodes[node].sync_out = Some((job, through));
                    let latency = self.params.fsync_us_min
                        + self.rng.gen_range(0..=self.params.fsync_us_jitter);
                    (IoKind::Sync, latency)
                }
                Io::WriteSnapshot(write) => {
                    self.nodes[node].snapshot_out = Some(write);
                    let latency = 2 * self.params.fsync_us_min
                        + self.rng.gen_range(0..=2 * self.params.fsync_us_jitter);
                    (IoKind::WriteSnapshot, latency)
                }
                Io::ReadLog(read) => {
                    self.nodes[node].log_read_out = Some(read);
                    let latency = self.params.fsync_us_min
                        + self.rng.gen_range(0..=self.params.fsync_us_jitter);
                    (IoKind::ReadLog, latency)
                }
                Io::Remove(obsolete) => {
                    // One removal out at a time (`Persister::kick`): a
                    // second would race the first over the same trash.
                    assert!(
                        self.nodes[node].remove_out.is_none(),
                        "node {node}: a removal handed out while one is out"
                    );
                    self.nodes[node].remove_out = Some(obsolete);
                    (IoKind::Remove, self.rng.gen_range(10..=1_000))
                }
            };
            self.schedule(
                self.now_us + latency,
                Event::IoDone {
                    node,
                    epoch,
                    io: kind,
                },
            );
        }
    }

    /// An I/O job completes: it runs now (on the simulated disk) and the
    /// persister hears of it, as the driver's blocking threads report back.
    fn io_done(&mut self, node: usize, io: IoKind) {
        let sim_node = &mut self.nodes[node];
        let Some(engine) = sim_node.engine.as_mut() else {
            return;
        };
        let result = match io {
            IoKind::Sync => {
                let Some((job, through)) = sim_node.sync_out.take() else {
                    return;
                };
                let result = job.run();
                engine.sync_done(job, result, through)
            }
            IoKind::WriteSnapshot => {
                let Some(mut write) = sim_node.snapshot_out.take() else {
                    return;
                };
                if self.phase == Phase::Safety
                    && !self.faults.snapshot_eio_off
                    && self
                        .snapshot_eio_rng
                        .gen_bool(self.params.snapshot_write_eio)
                {
                    // On a write-back the writer waits for, or its sync.
                    let after = self.snapshot_eio_rng.gen_range(0..2);
                    sim_node.disk.fail_fsync_after(after);
                    sim_node.disk_faults = true;
                    self.stats.nemesis.push("snapshot-write-eio");
                }
                let paused_before = sim_node.disk.stats().paused_nanos;
                let written = write.run();
                let paused_us = (sim_node.disk.stats().paused_nanos - paused_before) / 1_000;
                if self.params.slow_snapshot_writes.is_some() && paused_us > 0 {
                    // The writer ran at once on the simulated disk, but a
                    // capped write takes the time it paused for: the report
                    // comes then, or as soon as the cap is lifted (a write
                    // overdue). Meanwhile the node goes on, its checkpoint
                    // in progress.
                    sim_node.snapshot_report = Some((write, written, self.now_us + paused_us));
                    self.stats.slow_snapshot_writes += 1;
                    self.schedule_snapshot_report(node);
                    return;
                }
                self.snapshot_reported(node, write, written)
            }
            IoKind::SnapshotReport => {
                let Some((write, written, due)) = sim_node.snapshot_report.take() else {
                    return;
                };
                if self.now_us < due {
                    if !write.rate_lifted() {
                        sim_node.snapshot_report = Some((write, written, due));
                        self.schedule_snapshot_report(node);
                        return;
                    }
                    self.stats.snapshot_writes_hurried += 1;
                }
                self.snapshot_reported(node, write, written)
            }
            IoKind::Restore => {
                let Some(job) = sim_node.restore_out.take() else {
                    return;
                };
                let (machine, result) = job.run();
                // An on-disk state machine's restore writes to the disk: a
                // failure there stops the node like any storage failure
                // (a violation unless a disk fault was injected).
                if let Err(err) = engine.restored(machine, result) {
                    self.storage_failed(node, &err.to_string());
                    return;
                }
                Ok(())
            }
            IoKind::ReadLog => {
                let Some(read) = sim_node.log_read_out.take() else {
                    return;
                };
                // It runs now, on the disk as it is: a checkpoint may have
                // deleted segments since it was asked for (the driver's
                // blocking thread races the same way).
                let result = read.run();
                engine.log_read_done(&read, result);
                Ok(())
            }
            IoKind::Remove => {
                let Some(obsolete) = sim_node.remove_out.take() else {
                    return;
                };
                if obsolete.is_trash_only() {
                    self.stats.dropped_transfer_removals += 1;
                }
                // Files left behind cost space, not safety: the driver logs
                // this and goes on; so does the simulated node.
                engine.cleaned(obsolete.remove());
                Ok(())
            }
        };
        if let Err(err) = result {
            self.storage_failed(node, &err.to_string());
            return;
        }
        self.pump(node);
    }

    /// Checks on a slow snapshot write again in 10 ms (or when it is due).
    fn schedule_snapshot_report(&mut self, node: usize) {
        let Some((_, _, due)) = &self.nodes[node].snapshot_report else {
            return;
        };
        let at = (*due).min(self.now_us + 10_000);
        let epoch = self.nodes[node].epoch;
        self.schedule(
            at,
            Event::IoDone {
                node,
                epoch,
                io: IoKind::SnapshotReport,
            },
        );
    }

    /// Step (a) of a checkpoint is reported to the node's engine; a power
    /// cut may be set to land in the marker step that follows.
    fn snapshot_reported(
        &mut self,
        node: usize,
        write: SnapshotWrite,
        written: Result<(), StorageError>,
    ) -> Result<(), synod::NodeError> {
        let sim_node = &mut self.nodes[node];
        let Some(engine) = sim_node.engine.as_mut() else {
            return Ok(());
        };
        let result = engine.snapshot_written(write.checkpoint, written);
        if result.is_ok()
            && self.phase == Phase::Safety
            && self.disk_rng.gen_bool(self.params.checkpoint_power_cut)
        {
            // The marker step comes next: let the power go a few storage
            // steps into it.
            let steps = self.disk_rng.gen_range(0..12);
            sim_node.disk.power_off_after(Some(steps));
            sim_node.disk_faults = true;
            sim_node.checkpoint_cut = true;
            self.stats.nemesis.push("checkpoint-power-cut");
        }
        result
    }

    /// A storage error stopped the node: as the runtime does, the process
    /// ends (never retries an fsync) and is restarted later from what its
    /// disk kept. Without an injected disk fault this is a bug.
    fn storage_failed(&mut self, node: usize, error: &str) {
        let id = self.nodes[node].id;
        if !self.nodes[node].disk_faults {
            self.violation(format!(
                "storage: node {id} stopped on a storage error nobody injected: {error}"
            ));
        }
        self.stats.storage_failures += 1;
        let rack_down = self.nodes[node].checkpoint_cut && self.disk_rng.gen_bool(0.5);
        self.crash(node);
        let downtime = self.rng.gen_range(10_000..1_000_000);
        self.schedule(self.now_us + downtime, Event::Restart { node });
        if rack_down {
            // The power went for the whole rack: every node restarts from
            // its disk, the one cut mid-checkpoint among them.
            for other in 0..self.nodes.len() {
                if other != node && self.nodes[other].replica().is_some() {
                    self.crash(other);
                    let downtime = self.disk_rng.gen_range(10_000..1_500_000);
                    self.schedule(self.now_us + downtime, Event::Restart { node: other });
                }
            }
        }
    }

    /// Sends a message through the simulated network, encoded as the frame
    /// `synod-net` would write (same codec, same size limit).
    fn transmit(&mut self, mut msg: Message) {
        self.stats.messages += 1;
        if self.faults.vouch_off {
            if let Body::ReadIndexRequest { vouch, .. } = &mut msg.body {
                *vouch = None;
            }
        }
        let (Some(from), Some(to)) = (self.index(msg.from), self.index(msg.to)) else {
            // To an id no node has (yet): nobody listens there, as with an
            // address that refuses connections. The sender is ours.
            return;
        };
        let mut buf = BytesMut::new();
        if let Err(too_large) = synod_net::put_message(&mut buf, &msg, self.params.frame_bytes_max)
        {
            // The runtime cannot send it either: the message is lost for
            // good, every time it is retried. Paxos tolerates a lost message,
            // not one that can never be delivered.
            self.violation(format!(
                "unsendable: node {} made a {} message for node {} that exceeds the peer frame limit ({too_large})",
                msg.from,
                msg.body.name(),
                msg.to
            ));
            return;
        }
        let frame = buf.freeze();
        let sender = &mut self.nodes[from];
        match &msg.body {
            Body::Promise { ballot, .. } => sender.sent_promise = sender.sent_promise.max(*ballot),
            Body::Accepted { ballot, instance } => {
                let highest = sender.sent_accepted.entry(*instance).or_insert(*ballot);
                *highest = (*highest).max(*ballot);
            }
            _ => {}
        }
        let loss = self
            .link_loss
            .get(&(from, to))
            .map_or(self.params.loss, |l| l.max(self.params.loss));
        if self.blocked.contains(&(from, to)) || self.rng.gen_bool(loss) {
            return;
        }
        let epoch = self.nodes[from].epoch;
        if self.rng.gen_bool(self.params.duplicate) {
            let delay = self.delay();
            let frame = frame.clone();
            self.schedule(
                self.now_us + delay,
                Event::Deliver {
                    from,
                    to,
                    epoch,
                    frame,
                },
            );
        }
        let delay = self.delay();
        self.schedule(
            self.now_us + delay,
            Event::Deliver {
                from,
                to,
                epoch,
                frame,
            },
        );
    }

    /// Decodes a frame as the receiving connection does; anything it would
    /// refuse (bad length, undecodable, wrong sender or receiver) is a
    /// violation here, since only our own encoder wrote it.
    fn receive(&mut self, from: usize, to: usize, frame: Bytes) -> Option<Message> {
        let mut buf = BytesMut::from(&frame[..]);
        let decoded = match synod_net::take_frame(&mut buf, self.params.frame_bytes_max) {
            Ok(Some(payload)) if buf.is_empty() => {
                Message::from_bytes(payload).map_err(|e| e.to_string())
            }
            Ok(_) => Err("not exactly one frame".to_string()),
            Err(too_large) => Err(too_large.to_string()),
        };
        match decoded {
            Ok(msg) if msg.from == self.nodes[from].id && msg.to == self.nodes[to].id => Some(msg),
            Ok(msg) => {
                self.violation(format!(
                    "codec: a frame from node {} to node {} decoded as a message from {} to {}",
                    self.nodes[from].id, self.nodes[to].id, msg.from, msg.to
                ));
                None
            }
            Err(error) => {
                self.violation(format!(
                    "codec: a frame from node {} to node {} does not decode: {error}",
                    self.nodes[from].id, self.nodes[to].id
                ));
                None
            }
        }
    }

    fn delay(&mut self) -> u64 {
        self.params.delay_us_min + self.rng.gen_range(0..=self.params.delay_us_jitter)
    }

    /// Checks one chosen instance a node's engine applied: agreement, order
    /// and validity (the engine applied it to the state machine already).
    fn check_applied(&mut self, node: usize, apply: Apply) {
        let id = self.nodes[node].id;
        let instance = apply.instance.0;
        if instance != self.nodes[node].next_apply {
            self.violation(format!(
                "order: node {id} applied {} but expected #{}",
                apply.instance, self.nodes[node].next_apply
            ));
        }
        self.nodes[node].next_apply = instance + 1;
        match self.chosen.get(&instance) {
            Some(first) if *first != apply.value => self.violation(format!(
                "agreement: node {id} applied {:?} at #{instance}, another node applied {:?}",
                summarize(&apply.value),
                summarize(first)
            )),
            Some(_) => {}
            None => {
                self.chosen.insert(instance, apply.value.clone());
            }
        }
        for proposed in apply.value.commands() {
            let Some(envelope) = Envelope::decode(proposed) else {
                self.violation(format!(
                    "validity: a command without an envelope at #{instance}"
                ));
                continue;
            };
            if !self.proposed.contains(&envelope.payload) {
                self.violation(format!(
                    "validity: node {id} applied a command no client proposed at #{instance}"
                ));
            }
        }
    }

    /// Records the digest of `node`'s state at applied point `point`, or
    /// compares it with the one another node recorded at the same point:
    /// replicas that applied the same log must hold the same state (a state
    /// machine that is not deterministic diverges with equal log checksums).
    fn record_digest(&mut self, node: usize, point: u64, digest: u64) {
        let id = self.nodes[node].id;
        match self.digests.get(&point) {
            None => {
                self.digests.insert(point, (id, digest));
            }
            Some((first, expected)) if *expected != digest => {
                let first = *first;
                self.violation(format!(
                    "state divergence: node {id} and node {first} applied the same {point} instances but hold different states"
                ));
            }
            Some(_) => {}
        }
    }

    /// The node's monotonic clock in ms: simulated time, or, with read
    /// leases, its own drifting clock (see `lease_clock.rs`).
    pub(crate) fn mono_ms(&mut self, node: usize) -> u64 {
        let Some(lease) = self.params.lease else {
            return self.now_us / 1000;
        };
        while self.lease_clocks.len() <= node {
            let k = self.lease_clocks.len() as u64;
            self.lease_clocks.push(crate::lease_clock::DriftClock::new(
                self.seed ^ 0x5EED_C10C_D21F_0000 ^ (k << 40),
                lease.drift_ppm,
                self.faults.lease_drift_beyond_bound,
                self.now_us,
            ));
        }
        let paused = self.nodes[node].paused;
        self.lease_clocks[node].now_ms(self.now_us, paused)
    }

    /// As an application of the master lease would before each action:
    /// asks a leading node for its master lease, and checks the true-time
    /// interval it believes in against every other node's (leases only;
    /// see `master_checks.rs`).
    fn ask_master_lease(&mut self, node: usize) {
        if self.params.lease.is_none() || self.faults.master_off {
            return;
        }
        let id = self.nodes[node].id;
        let Some(engine) = self.nodes[node].engine.as_mut() else {
            return;
        };
        if engine.replica.status().role != RoleKind::Leader {
            return;
        }
        let Some(lease) = engine.replica.master_lease() else {
            return;
        };
        // The replica's time is this clock's reading now (`feed_clocks`).
        let _ = self.mono_ms(node);
        let until_us = self.lease_clocks[node].real_us_when(lease.until_ms);
        if let Some(overlap) = self.masters.lent(id, lease.ballot, self.now_us, until_us) {
            self.violation(overlap);
        }
    }

    /// As an application would now and then (`Node::drop_leadership`): asks
    /// a leading node to step down and hold off campaigning. What it sends
    /// goes out at its next pump. The master-lease checker then sees
    /// whether a successor's lease can overlap the dropped one's.
    fn maybe_drop_leadership(&mut self, node: usize) {
        let chance = self.params.drop_leadership_chance;
        // Like the nemesis, only during the safety phase: the liveness
        // phase checks progress of a healed cluster, and drawn at every
        // pump the drops come faster as load grows (seeds 722, 1142 with
        // 5 nodes, 5049, 5178 with 7: a leader every ~400 ms, each
        // lasting ~100 ms; a follower's read starved for 4 s).
        if chance == 0.0 || self.phase != Phase::Safety {
            return;
        }
        let Some(engine) = self.nodes[node].engine.as_mut() else {
            return;
        };
        if engine.replica.status().role != RoleKind::Leader || !self.drop_rng.gen_bool(chance) {
            return;
        }
        if engine.replica.drop_leadership() {
            self.leadership_drops += 1;
        }
    }

    /// The node's wall clock, in ms since the Unix epoch: simulated time
    /// plus the node's own offset (clocks of different nodes disagree).
    pub(crate) fn wall_ms(&self, node: usize) -> u64 {
        let local = (self.now_us / 1000) as i64 + self.params.clock_offset_ms[node];
        (WALL_EPOCH_MS as i64 + local).max(0) as u64
    }

    /// Ends the safety phase: heals the network, restarts every node.
    fn heal(&mut self) {
        self.phase = Phase::Liveness;
        self.heal_us = self.now_us;
        self.blocked.clear();
        self.link_loss.clear();
        self.network_token += 1;
        self.params.loss = 0.0;
        for node in 0..self.nodes.len() {
            // Disks are healed too: no fault fires after this point.
            self.nodes[node].disk.disarm_faults();
            self.nodes[node].checkpoint_cut = false;
            self.resume(node);
            if self.nodes[node].replica().is_none() {
                self.start_node(node);
            }
        }
    }

    /// True once clients are done and every member of the group's newest
    /// membership applied everything chosen (removed nodes that keep
    /// running are left behind on purpose: nobody talks to them).
    fn settled(&self) -> bool {
        if self.clients.iter().any(|c| c.busy()) {
            return false;
        }
        let members = self.final_members();
        let Some(&reference) = members.first() else {
            return false;
        };
        let Some(first) = self.nodes[reference].replica().map(|r| r.status()) else {
            return false;
        };
        let has_leader = self.nodes.iter().any(|n| {
            n.replica()
                .is_some_and(|r| r.status().role == RoleKind::Leader)
        });
        has_leader
            && members.iter().map(|k| &self.nodes[*k]).all(|n| {
                n.replica().is_some_and(|r| {
                    let status = r.status();
                    status.applied_end == first.applied_end
                        && status.chosen_end == first.chosen_end
                        && status.chosen_end.0 >= self.chosen.len() as u64
                })
            })
    }

    /// Logs where each node stands (`progress_summary`) whenever a node's
    /// role, ballot or leader changed: with `SIM_LOG=debug`.
    fn log_role_changes(&mut self) {
        let roles: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                n.replica()
                    .map(|r| r.status())
                    .map(|s| (s.role, s.promised, s.leader))
            })
            .collect();
        let roles = format!("{roles:?}");
        if roles != self.logged_roles {
            self.logged_roles = roles;
            tracing::debug!("{}", self.progress_summary());
        }
    }

    /// Where each node stands, for a liveness failure's report; with the
    /// environment variable `SIM_DEBUG` set, also each node's schedule of
    /// memberships and what it knows of its peers' progress.
    fn progress_summary(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match n.replica() {
                None if n.absent => format!("{}: absent", n.id),
                None if n.retired => format!("{}: removed", n.id),
                None => format!("{}: down", n.id),
                Some(r) => {
                    let s = r.status();
                    format!(
                        "{}: {:?} ballot {} chosen {} applied {} leader {:?} waiting {}",
                        n.id,
                        s.role,
                        s.promised,
                        s.chosen_end,
                        s.applied_end,
                        s.leader,
                        n.engine.as_ref().map_or(0, |e| e.requests_waiting())
                    ) + &if std::env::var_os("SIM_DEBUG").is_some() {
                        format!(
                            " {} refused {:?} rebuilding {} schedule {:?} progress {:?}",
                            r.debug_role(),
                            r.refusals()
                                .iter()
                                .filter(|(_, n)| *n > 0)
                                .collect::<Vec<_>>(),
                            r.rebuilding(),
                            r.schedule()
                                .entries()
                                .iter()
                                .map(|e| (
                                    e.from,
                                    e.membership.epoch,
                                    e.membership.voters().collect::<Vec<_>>()
                                ))
                                .collect::<Vec<_>>(),
                            r.member_progress()
                                .iter()
                                .map(|p| (p.id, p.chosen_end, p.silent_ticks))
                                .collect::<Vec<_>>()
                        )
                    } else {
                        String::new()
                    }
                }
            })
            .collect();
        let busy = self.clients.iter().filter(|c| c.busy()).count();
        format!(
            "{}; {busy} clients busy; {}",
            nodes.join(", "),
            self.members.describe()
        )
    }

    /// Records a violation; past a few, only counts them (one bug tends to
    /// cause many).
    pub(crate) fn violation(&mut self, text: String) {
        const SHOWN_MAX: usize = 5;
        self.violation_count += 1;
        if self.violations.len() < SHOWN_MAX {
            self.violations.push(text);
        }
    }

    /// Gives every running replica its local time now (leases only): set
    /// before every event, so that whatever the event makes a replica do
    /// happens at a fresh time, as the runtime does.
    fn feed_clocks(&mut self) {
        for node in 0..self.nodes.len() {
            self.feed_clock(node);
        }
    }

    /// Gives `node`'s engine (if running) its clocks now: the monotonic time
    /// its replica and request deadlines go by, and its wall clock.
    pub(crate) fn feed_clock(&mut self, node: usize) {
        if self.nodes[node].engine.is_none() {
            return;
        }
        let now_ms = self.mono_ms(node);
        let wall_ms = self.wall_ms(node);
        self.nodes[node]
            .wall
            .store(wall_ms, AtomicOrdering::Relaxed);
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            engine.set_time(now_ms);
        }
    }

    /// The index of node `id`, if the world has such a node (spares are
    /// appended when first added).
    pub(crate) fn index(&self, id: NodeId) -> Option<usize> {
        let k = (id.0 as usize).checked_sub(1)?;
        (k < self.nodes.len()).then_some(k)
    }

    /// The node that leads with the highest ballot, if any is up and leading.
    pub(crate) fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let status = self.nodes[i].replica()?.status();
                (status.role == RoleKind::Leader).then_some((status.promised, i))
            })
            .max()
            .map(|(_, i)| i)
    }
}

fn summarize(value: &Value) -> String {
    match value {
        Value::Noop => "no-op".to_string(),
        Value::Batch(commands) => {
            let ids: Vec<String> = commands
                .iter()
                .map(|c| match decode(c) {
                    Some(k) => format!("c{}s{}", k.client, k.seq),
                    None => "?".to_string(),
                })
                .collect();
            format!("[{}]", ids.join(" "))
        }
        Value::Reconfig(m) => {
            let members: Vec<String> = m
                .members
                .iter()
                .map(|m| format!("{}:{}", m.id.0, m.role.name()))
                .collect();
            format!("reconfig epoch {} [{}]", m.epoch, members.join(" "))
        }
    }
}
