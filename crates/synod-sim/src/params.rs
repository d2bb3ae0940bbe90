//! Fault parameters, drawn per seed so that every seed tests a different mix.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Everything random about one run that is fixed at its start. Times in µs.
#[derive(Clone, Debug)]
pub struct Params {
    /// Length of the safety phase, with faults.
    pub safety_us: u64,
    /// Length of the liveness phase after healing, during which clients go on.
    pub liveness_us: u64,
    /// After the liveness phase, the cluster must settle within this.
    pub settle_us: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys they share.
    pub keys: usize,
    /// Longest pause of a client between two operations.
    pub think_us_max: u64,
    /// Per message: probability of loss.
    pub loss: f64,
    /// Per message: probability of duplication.
    pub duplicate: f64,
    /// Shortest one-way delay.
    pub delay_us_min: u64,
    /// Extra random delay (reorders messages).
    pub delay_us_jitter: u64,
    /// Shortest fsync.
    pub fsync_us_min: u64,
    /// Extra random fsync time.
    pub fsync_us_jitter: u64,
    /// Tick length per node (clock skew between nodes).
    pub tick_us: Vec<u64>,
    /// Time between two nemesis actions.
    pub nemesis_us_min: u64,
    /// Extra random time between nemesis actions.
    pub nemesis_us_jitter: u64,
    /// Relative weights of the nemesis actions, see `nemesis.rs`.
    pub weights: NemesisWeights,
    /// A client attempt times out after this long.
    pub attempt_timeout_us: u64,
    /// A node snapshots its state machine and compacts its log every this many
    /// applied instances (0: never).
    pub snapshot_every: u64,
    /// Snapshot files are written at no more than this many bytes a second
    /// (`SnapshotPolicy::write_bytes_per_sec`), and a checkpoint's step (a)
    /// is reported only after the time its writer paused for (or when its
    /// cap is lifted): checkpoints that last up to seconds. `None`: the
    /// runtime's default cap, and no wait (a few bytes' worth). Own stream.
    pub slow_snapshot_writes: Option<u64>,
    /// Snapshots go to peers in chunks of at most this many bytes
    /// (`Config::snapshot_chunk_bytes_max`), so that a transfer takes many
    /// messages and crashes, partitions and new leaders drop some part-way
    /// (the spool's trash and its removal run). `None`: the runtime's
    /// default (1 MiB: one chunk for every snapshot here). Own stream.
    pub snapshot_chunk_bytes: Option<usize>,
    /// Every node holds at most this many bytes of chosen values while it
    /// restores a peer's snapshot (`Config::restore_backlog_bytes_max`; 0:
    /// it stops voting and catching up for every restore), so that
    /// restoring nodes decline votes and catch-up waits. `None`: the
    /// core's default (no bound). Own stream.
    pub restore_backlog_bytes: Option<u64>,
    /// Also checkpoint right after an fsync completes, before the replica's
    /// next `Ready` is taken: records the replica queued in between are then
    /// appended after the checkpoint, as a runtime may do (the real one did,
    /// and a node could not restart). Drawn from its own stream (see
    /// `World::new`) so that the other parameters of every seed stay as they were.
    pub eager_checkpoint: bool,
    /// Share of GETs served by read index (`Replica::read`) instead of through
    /// the log: 0 in half the seeds. Drawn, like each GET's choice, from a
    /// stream of its own (see `World::new`).
    pub read_index_share: f64,
    /// Probability that a crash keeps a random prefix of the unsynced records
    /// (written but not fsynced: a torn tail cut at a record boundary).
    pub torn_tail: f64,
    /// Largest peer frame payload, as `synod-net` enforces it: every message
    /// crosses the simulated network through that codec and limit.
    pub frame_bytes_max: usize,
    /// Per node, how far its wall clock is off the simulated time (ms;
    /// drawn from a stream of its own, see `World::new`).
    pub clock_offset_ms: Vec<i64>,
    /// Probability that a checkpoint about to write its marker gets a power
    /// cut armed a few storage steps ahead (a crash in the middle of a
    /// checkpoint). Own stream.
    pub checkpoint_power_cut: f64,
    /// Probability that a snapshot file about to be written (a checkpoint's,
    /// or a peer's snapshot being sealed) gets an fsync `EIO` armed a step
    /// or two ahead, so that it lands on the writer's paced write-backs or
    /// on its final sync: a failed snapshot write, which must stop the node
    /// cleanly. Own stream.
    pub snapshot_write_eio: f64,
    /// Some PUTs set a TTL short enough to run out during the run.
    pub short_ttls: bool,
    /// Clients that run watched transactions (WATCH, then MULTI/EXEC) and
    /// plain reads and writes on keys of their own (`w0`, `w1`, which never
    /// get a TTL, so the checker can check WATCH by value). Own stream.
    pub watch_clients: usize,
    /// Clients that push to the list `q0` (`RPUSH`) and clients that pop
    /// from it with a blocking pop (`BLPOP q0`, a timeout of a few hundred
    /// ms), through synod-kv's own blocked-client registry (see `queue.rs`).
    /// Own stream.
    pub push_clients: usize,
    pub pop_clients: usize,
    /// Clients that use the library's client sessions (see `sessions.rs`).
    /// Own stream.
    pub session_clients: usize,
    /// A client gives up an operation after this many timed-out attempts (only
    /// during the safety phase; the outcome is then unknown).
    pub attempts_max: u32,
    /// Membership changes (see `membership.rs`): drawn from a stream of
    /// their own (see `World::new`), all zero in about a third of the seeds.
    pub members: MemberParams,
    /// Leader leases for reads (`Config::read_lease`), on in about half the
    /// seeds; every node's clock then drifts in rate within the bound (see
    /// `lease_clock.rs`). Own stream.
    pub lease: Option<synod_core::Lease>,
    /// The chance, at every pump of a leading node during the safety phase
    /// (not after the heal, like every other fault), that the application
    /// asks it to give up leadership (`Replica::drop_leadership`, issue 17's
    /// `Node::drop_leadership`): non-zero in about half the seeds. Own
    /// stream.
    pub drop_leadership_chance: f64,
    /// Leaders propose a mixed command (see `mixed.rs`) about every this
    /// many µs (0: none). Non-zero in about half the seeds. Own stream.
    pub mixed_every_us: u64,
    /// A linearizable read that reaches a node whose engine publishes a
    /// permit for reads outside the loop (a leader under its lease) is
    /// served there, from the state machine, in about half the cases, as
    /// a leader's RESP connections serve them (`synod::LocalReads`). On in
    /// about half the seeds with leases. Own stream.
    pub local_lease_reads: bool,
}

/// How the membership nemesis behaves in one run.
#[derive(Clone, Debug, Default)]
pub struct MemberParams {
    /// Relative weights of its actions (all 0: no membership changes).
    pub weights: MemberWeights,
    /// Time between two membership actions.
    pub every_us_min: u64,
    /// Extra random time between two membership actions.
    pub every_us_jitter: u64,
    /// A removed node is stopped once its removal is in force; otherwise it
    /// keeps running and the members must refuse it.
    pub stop_removed: bool,
}

/// Relative weights of the membership actions (0 switches one off).
#[derive(Clone, Debug, Default)]
pub struct MemberWeights {
    /// Add a fresh node as a learner; half the time it is promoted by the
    /// leader once caught up (`Joining`), else it stays a learner.
    pub add_learner: u32,
    /// Promote a learner by hand (sometimes forced while it lags).
    pub promote: u32,
    /// Remove a voter other than the leader, or a learner.
    pub remove_follower: u32,
    /// Remove the leader itself (it hands leadership on).
    pub remove_leader: u32,
    /// Replace a voter: add a fresh node, wait until it votes, remove the old one.
    pub replace: u32,
    /// Grow the voters to 5 (or two more), one addition at a time.
    pub grow: u32,
    /// Shrink the voters back to 3, one removal at a time.
    pub shrink: u32,
    /// Two different changes asked at two different nodes at once
    /// (followers forward theirs to the leader).
    pub concurrent: u32,
    /// Cut one node off (often the leader), then ask for a change.
    pub partitioned: u32,
    /// Hand leadership to a random voter.
    pub transfer: u32,
}

impl MemberWeights {
    /// The sum of the weights (0: no membership changes in this run).
    pub fn total(&self) -> u32 {
        self.add_learner
            + self.promote
            + self.remove_follower
            + self.remove_leader
            + self.replace
            + self.grow
            + self.shrink
            + self.concurrent
            + self.partitioned
            + self.transfer
    }
}

impl MemberParams {
    /// Draws the membership nemesis of one run from its own stream. Off in
    /// about a third of the seeds, and always with fewer than 3 nodes (a
    /// group is never shrunk below 3 voters).
    pub fn draw(rng: &mut ChaCha8Rng, nodes: usize) -> MemberParams {
        if nodes < 3 || rng.gen_bool(0.35) {
            return MemberParams::default();
        }
        let on = |rng: &mut ChaCha8Rng, w: u32| if rng.gen_bool(0.6) { w } else { 0 };
        let mut weights = MemberWeights {
            add_learner: on(rng, 3),
            promote: on(rng, 2),
            remove_follower: on(rng, 2),
            remove_leader: on(rng, 1),
            replace: on(rng, 2),
            grow: on(rng, 1),
            shrink: on(rng, 1),
            concurrent: on(rng, 2),
            partitioned: on(rng, 1),
            transfer: on(rng, 2),
        };
        if weights.total() == 0 {
            weights.add_learner = 1;
        }
        let busy = rng.gen_bool(0.3);
        MemberParams {
            weights,
            every_us_min: if busy {
                rng.gen_range(20_000..100_000)
            } else {
                rng.gen_range(100_000..600_000)
            },
            every_us_jitter: rng.gen_range(0..800_000),
            stop_removed: rng.gen_bool(0.5),
        }
    }
}

/// Relative weights of the nemesis actions (0 switches one off).
#[derive(Clone, Debug)]
pub struct NemesisWeights {
    /// Crash one node (often the leader) and restart it later.
    pub crash: u32,
    /// Crash every node at once (power loss), restart them later.
    pub power_loss: u32,
    /// Cut one node (often the leader) off both ways.
    pub isolate: u32,
    /// Split the nodes in two sides.
    pub split: u32,
    /// Two sides and a bridge node that sees both.
    pub bridge: u32,
    /// Drop messages one way on random links.
    pub one_way: u32,
    /// Give every directed link its own loss rate (flaky links).
    pub flaky: u32,
    /// Freeze one node (often the leader) for a while, as a GC pause or
    /// SIGSTOP does: what reaches it waits, and is handled in a random order
    /// when it wakes. Drawn from its own stream (see `World::new`).
    pub pause: u32,
    /// A disk fault on one node: the power goes in the middle of its next
    /// storage steps, an fsync fails with EIO, or the disk fills up. Own
    /// stream.
    pub disk_fault: u32,
    /// Step one node's wall clock (ahead or back, up to two days), as NTP or
    /// an operator does. Own stream.
    pub clock_jump: u32,
    /// Wipe one node's disk; it restarts rebuilding (`--rebuild`). Own
    /// stream; never more than one node rebuilding at a time.
    pub wipe: u32,
    /// Deliver a forged message with a huge ballot round to one node, as a
    /// buggy or malicious peer would (issue 13): it must be refused and
    /// counted, and the cluster must keep choosing. Own stream.
    pub forge: u32,
    /// Heal the network.
    pub heal: u32,
}

impl Params {
    /// Draws the parameters of one run.
    pub fn draw(rng: &mut ChaCha8Rng, nodes: usize) -> Params {
        let on = |rng: &mut ChaCha8Rng, p: f64, w: u32| if rng.gen_bool(p) { w } else { 0 };
        let weights = NemesisWeights {
            crash: on(rng, 0.85, 4),
            power_loss: on(rng, 0.5, 2),
            isolate: on(rng, 0.7, 3),
            split: on(rng, 0.6, 2),
            bridge: on(rng, 0.4, 1),
            one_way: on(rng, 0.4, 2),
            flaky: on(rng, 0.5, 2),
            pause: 0,
            disk_fault: 0,
            clock_jump: 0,
            wipe: 0,
            forge: 0,
            heal: 3,
        };
        let storm = rng.gen_bool(0.33);
        Params {
            safety_us: rng.gen_range(6_000_000..12_000_000),
            liveness_us: 4_000_000,
            settle_us: 20_000_000,
            clients: if rng.gen_bool(0.3) {
                rng.gen_range(8..=16)
            } else {
                rng.gen_range(3..=6)
            },
            keys: rng.gen_range(1..=4),
            think_us_max: rng.gen_range(0..20_000),
            loss: if rng.gen_bool(0.7) {
                rng.gen_range(0.0..0.15)
            } else {
                0.0
            },
            duplicate: if rng.gen_bool(0.5) {
                rng.gen_range(0.0..0.05)
            } else {
                0.0
            },
            delay_us_min: rng.gen_range(50..1_000),
            delay_us_jitter: rng.gen_range(0..8_000),
            fsync_us_min: rng.gen_range(50..1_000),
            fsync_us_jitter: rng.gen_range(0..10_000),
            tick_us: (0..nodes).map(|_| rng.gen_range(9_000..11_000)).collect(),
            // One seed in three is a storm: a fault every few tens of ms, so
            // leaders change before they finish what they started.
            nemesis_us_min: if storm {
                rng.gen_range(5_000..50_000)
            } else {
                rng.gen_range(50_000..400_000)
            },
            nemesis_us_jitter: if storm {
                rng.gen_range(0..100_000)
            } else {
                rng.gen_range(0..1_500_000)
            },
            weights,
            attempt_timeout_us: rng.gen_range(400_000..1_200_000),
            attempts_max: rng.gen_range(2..=6),
            frame_bytes_max: synod_net::FRAME_BYTES_MAX_DEFAULT,
            clock_offset_ms: vec![0; nodes],
            short_ttls: false,
            watch_clients: 0,
            push_clients: 0,
            pop_clients: 0,
            session_clients: 0,
            checkpoint_power_cut: 0.0,
            snapshot_write_eio: 0.0,
            snapshot_every: if rng.gen_bool(0.6) {
                rng.gen_range(5..300)
            } else {
                0
            },
            torn_tail: rng.gen_range(0.0..1.0),
            slow_snapshot_writes: None,
            snapshot_chunk_bytes: None,
            restore_backlog_bytes: None,
            eager_checkpoint: false,
            read_index_share: 0.0,
            members: MemberParams::default(),
            lease: None,
            drop_leadership_chance: 0.0,
            mixed_every_us: 0,
            local_lease_reads: false,
        }
    }
}
