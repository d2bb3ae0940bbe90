//! # synod-sim: deterministic simulation of synod-core
//!
//! Runs N replicas of the real protocol code against a simulated disk (only
//! fsynced records survive a crash), a simulated network (delay, loss,
//! duplication, reordering, symmetric and one-way partitions) and crashes, all
//! driven by one seed, so that any failure replays exactly. Every seed draws
//! its own fault mix (see [`params`]), runs a safety phase with faults, then a
//! liveness phase with faults healed, and checks agreement, validity,
//! durability and exactly-once of acknowledged commands, convergence of the
//! replicas' checksums and states, linearizability of the client history and
//! liveness. A membership nemesis adds, promotes, removes and replaces nodes
//! (spares beyond the initial ones start when added), and every replica's
//! schedule and every quorum a leader counts are checked against the
//! memberships the agreed log implies.

mod checks;
mod client;
mod forge;
pub mod kv;
mod lease_clock;
mod master_checks;
mod membership;
mod membership_checks;
mod mixed;
mod nemesis;
pub mod params;
mod queue;
mod report;
mod sessions;
mod sweep;
mod world;

pub use report::{SeedReport, Stats};
pub use synod_core::Inject;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use world::World;

/// The deliberate bugs `--inject` can switch on, by name.
pub const INJECTIONS: &[&str] = &[
    "ack-before-fsync",
    "self-vote-before-fsync",
    "skip-adopt",
    "stale-read",
    "leader-local-reads",
    "nondeterministic-sm",
    "torn-checkpoint",
    "local-clock-ttl",
    "wipe-votes",
    "config-immediate",
    "learner-votes",
    "lease-drift-beyond-bound",
    "admit-duplicates",
    "watch-ignored",
    "wake-lost",
    "session-reapply",
    "on-disk-reapply",
    "release-past-checkpoint",
    "log-read-shift",
    "local-random-draws",
    "acl-checked-by-node",
    "local-permit-without-lease",
    "read-index-chosen-only",
];

/// Deliberate bugs for negative controls: in the protocol core, or in how a
/// node serves clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Bugs in synod-core.
    pub core: Inject,
    /// A node answers GET from its local state at once, without the log: a
    /// follower (or a deposed leader) returns stale values. Only the
    /// linearizability checker can see this one.
    pub stale_read: bool,
    /// The state machine reads its node's own clock instead of the log
    /// clock: replicas apply the same log and reach different states, which
    /// only the state digest sees (the log checksums agree).
    pub nondeterministic_sm: bool,
    /// The WAL's old recovery rule: trust a checkpoint marker without its
    /// end frame (`WalOptions::legacy_checkpoint_recovery`), so a power cut
    /// in the middle of a checkpoint makes the node forget promises and
    /// accepted values.
    pub torn_checkpoint: bool,
    /// Reads by read index answered at the serving node's own clock, as
    /// the runtime did before issue 12: a node whose clock runs ahead sees
    /// a key expired that a later read elsewhere still finds.
    pub local_clock_ttl: bool,
    /// Leader leases on in every seed, and a paused node's clock stands
    /// still (a drift rate of 0, far beyond the bound the replicas assume): a
    /// leader paused through its successor's election and writes wakes up
    /// believing its lease still holds and serves stale reads by lease.
    pub lease_drift_beyond_bound: bool,
    /// The runtime's session table admits every command
    /// (`EngineOptions::inject_admit_duplicates`): a request its node
    /// proposed twice (a retry) takes effect twice. The clients'
    /// exactly-once table would hide the second effect; the state machine's
    /// check of attempts sees it.
    pub admit_duplicates: bool,
    /// The state machine drops the WATCH check of every transaction, so a
    /// transaction runs even when a watched key changed since its WATCH
    /// (watch clients in every seed). Only the linearizability checker can
    /// see this one.
    pub watch_ignored: bool,
    /// Blocked pops are never woken: the simulator's driver of synod-kv's
    /// `BlockingPop` drops every wake (queue clients in every seed), as a
    /// registry that forgot a waiter would. Timed-out pops stay
    /// linearizable (their first try found the list empty); the lost-wake
    /// check at each timeout sees it.
    pub wake_lost: bool,
    /// The runtime's client session check is skipped
    /// (`EngineOptions::inject_session_reapply`): a library client session's
    /// command retried through another node, or resumed after its client
    /// "restarted", takes effect again (session clients in every seed). The
    /// state machine does not deduplicate session clients' commands (that
    /// is the library's job), so the exactly-once check sees it.
    pub session_reapply: bool,
    /// The runtime applies again, after a restart, the commands an on-disk
    /// state machine's durable state already has
    /// (`EngineOptions::inject_on_disk_reapply`; every third node is one).
    /// The digest comparison and the exactly-once table see it.
    pub on_disk_reapply: bool,
    /// The runtime drops applied values from memory past the point of a
    /// checkpoint in progress
    /// (`EngineOptions::inject_release_past_checkpoint`): the checkpoint's
    /// records lack them, and a node restarted after it forgot accepts it
    /// sent. The amnesia check sees it.
    pub release_past_checkpoint: bool,
    /// A leader publishes the permit for reads served outside its engine
    /// whatever its lease (`EngineOptions::inject_local_permit_without_lease`),
    /// and every seed serves reads under it: a deposed leader that does
    /// not know it yet answers stale reads. The linearizability check sees
    /// it.
    pub local_permit_without_lease: bool,
    /// Not a bug: a targeted nemesis. A leader that has just applied new
    /// instances is cut off from every peer at once, before its commits
    /// arrive anywhere (for 1.5 to 3 s, again half a second later, through
    /// the safety phase: the cuts hold most of it, and the network's other
    /// nemeses wait while one holds), so its
    /// successor learns what it chose only from the acceptors in phase 1,
    /// while the write that leader acknowledged has completed. Reads at the
    /// successor must wait for it (the read index's floor of phase 1: the
    /// control `Inject::read_index_chosen_only` is caught under it).
    pub isolate_leader_on_apply: bool,
    /// Values read back from the log for a peer are restored one instance
    /// off (`EngineOptions::inject_log_read_shift`): the peer catches up
    /// with wrong values. The agreement and digest checks see it.
    pub log_read_shift: bool,
    /// Mixed commands' random draws (`SPOP`, `SRANDMEMBER`, `math.random`...)
    /// are seeded by node as well as by the log: each node adds its id to
    /// `ApplyContext::index` (mixed commands in every seed). Replicas give
    /// different replies and reach different states; the digest
    /// comparison sees it.
    pub local_random_draws: bool,
    /// Node 1 runs every mixed command sent as an ACL user
    /// (`KvCommand::AsUser`) with the stamp of that user's rules as it holds
    /// them when it applies it: it trusts its own users instead of refusing
    /// what was checked against other rules (mixed commands in every seed).
    /// Where a command was checked against rules changed since, node 1
    /// runs it and the others refuse it; the digest comparison sees it.
    pub acl_checked_by_node: bool,
    /// Not a fault: no node reads values back from its log for a peer
    /// (each writes a snapshot instead, as before that existed), so that
    /// seeds pinned before it replay the runs they were found in.
    pub log_reads_off: bool,
    /// Not a fault: runs without library session clients whatever the seed
    /// draws, so that seeds pinned before they existed replay the runs they
    /// were found in.
    pub sessions_off: bool,
    /// Not a fault: restores from a peer's snapshot take no simulated time
    /// (they run off the event loop, at a later time, otherwise), so that
    /// seeds pinned before that replay the runs they were found in.
    pub restore_instant: bool,
    /// Not a fault: runs without on-disk state machines (every third node
    /// keeps its state on its own disk otherwise), so that seeds pinned
    /// before they existed replay the runs they were found in.
    pub on_disk_off: bool,
    /// Not a fault: runs without expiry sweeps, so that seeds pinned before
    /// they existed replay the runs they were found in.
    pub sweep_off: bool,
    /// Not a fault: runs without queue clients whatever the seed draws, so
    /// that seeds pinned before they existed replay the runs they were
    /// found in.
    pub queue_off: bool,
    /// Not a fault: runs without watch clients whatever the seed draws, so
    /// that seeds pinned before they existed replay the runs they were
    /// found in.
    pub watch_off: bool,
    /// Not a fault: runs without leader leases whatever the seed draws, so
    /// that seeds pinned before leases existed replay the runs they were
    /// found in (a seed that draws a lease runs differently).
    pub lease_off: bool,
    /// Not a fault: never asks for master leases (issue 17), so that seeds
    /// pinned before they existed replay the runs they were found in (a
    /// lease lent makes a leadership transfer wait for it).
    pub master_off: bool,
    /// Not a fault: never asks a leader to drop its leadership, so that
    /// seeds pinned before the simulator did replay the runs they were
    /// found in.
    pub drop_off: bool,
    /// Not a fault: every leader syncs each batch it proposes
    /// (`Config::lazy_self_sync` off; one node in three otherwise), so that
    /// seeds pinned before leaders let their own votes wait replay the runs
    /// they were found in.
    pub eager_leaders: bool,
    /// Not a fault: followers' read requests reach their leader without a
    /// vouch (taken out on the wire), so every one waits for a heartbeat
    /// round, so that seeds pinned before vouched reads replay the runs
    /// they were found in.
    pub vouch_off: bool,
    /// Not a fault: no leader holds a batch back for its cohort
    /// (`Config::batch_hold_ms` 0; a mix of 0, 1, 3 and 20 ms otherwise),
    /// so that seeds pinned before cohort batching replay the runs they
    /// were found in.
    pub hold_off: bool,
    /// Not a fault: no snapshot write gets an injected `EIO`
    /// (`Params::snapshot_write_eio`), so that seeds pinned before that
    /// nemesis replay the runs they were found in.
    pub snapshot_eio_off: bool,
    /// Not a fault: no seed writes its snapshot files under a slow cap
    /// (`Params::slow_snapshot_writes`), so that seeds pinned before that
    /// replay the runs they were found in.
    pub slow_snapshot_writes_off: bool,
    /// Not a fault: snapshots go to peers in the runtime's default chunks
    /// (`Params::snapshot_chunk_bytes`), so that seeds pinned before small
    /// chunks replay the runs they were found in.
    pub small_chunks_off: bool,
    /// Not a fault: no node bounds the values it holds while it restores a
    /// peer's snapshot (`Params::restore_backlog_bytes`), so that seeds
    /// pinned before the bound replay the runs they were found in.
    pub restore_backlog_off: bool,
    /// Not a fault: no node refuses requests while it loads a peer's
    /// snapshot (`RequestError::Loading`: they wait, as before stop 60), so
    /// that seeds pinned before refusals replay the runs they were found in.
    pub loading_refusals_off: bool,
    /// Not a fault: leaders propose no mixed commands (`mixed.rs`) whatever
    /// the seed draws, so that seeds pinned before they existed replay the
    /// runs they were found in.
    pub mixed_off: bool,
    /// Not a fault: no lease read is served outside the engine
    /// (`Engine::local_read_permit`) whatever the seed draws, so that seeds
    /// pinned before such reads replay the runs they were found in.
    pub local_reads_off: bool,
}

impl Faults {
    /// No fault, no lease and no watch client: how every seed ran before
    /// leases existed.
    pub fn before_leases() -> Faults {
        Faults {
            sessions_off: true,
            lease_off: true,
            watch_off: true,
            queue_off: true,
            sweep_off: true,
            master_off: true,
            drop_off: true,
            eager_leaders: true,
            vouch_off: true,
            hold_off: true,
            snapshot_eio_off: true,
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault, no watch and no queue client: how every seed ran before watched
    /// transactions were in the workload.
    pub fn before_watch() -> Faults {
        Faults {
            sessions_off: true,
            watch_off: true,
            queue_off: true,
            sweep_off: true,
            master_off: true,
            drop_off: true,
            eager_leaders: true,
            vouch_off: true,
            hold_off: true,
            snapshot_eio_off: true,
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault, no queue client and no expiry sweep: how every seed ran
    /// before blocking pops were in the workload.
    pub fn before_queues() -> Faults {
        Faults {
            sessions_off: true,
            queue_off: true,
            sweep_off: true,
            master_off: true,
            drop_off: true,
            eager_leaders: true,
            vouch_off: true,
            hold_off: true,
            snapshot_eio_off: true,
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }
}

impl Faults {
    /// No fault: how every seed ran before leaders proposed mixed commands.
    pub fn before_mixed() -> Faults {
        Faults {
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault, every leader syncing each batch it proposes: how every
    /// seed ran before leaders let their own votes wait for a later sync.
    pub fn before_lazy_leaders() -> Faults {
        Faults {
            eager_leaders: true,
            vouch_off: true,
            hold_off: true,
            snapshot_eio_off: true,
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault: how every seed ran before snapshot files could be written
    /// under a slow cap (checkpoints lasting seconds).
    pub fn before_slow_snapshots() -> Faults {
        Faults {
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault: how every seed ran before snapshots could go to peers in
    /// small chunks (transfers dropped part-way).
    pub fn before_small_chunks() -> Faults {
        Faults {
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault: how every seed ran before a node bounded the values it
    /// holds while it restores a peer's snapshot.
    pub fn before_restore_backlog() -> Faults {
        Faults {
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }

    /// No fault and no library session client: how every seed ran before
    /// client sessions were in the workload.
    pub fn before_sessions() -> Faults {
        Faults {
            sessions_off: true,
            drop_off: true,
            eager_leaders: true,
            vouch_off: true,
            hold_off: true,
            snapshot_eio_off: true,
            slow_snapshot_writes_off: true,
            small_chunks_off: true,
            restore_backlog_off: true,
            loading_refusals_off: true,
            mixed_off: true,
            local_reads_off: true,
            ..Faults::default()
        }
    }
}

/// The targeted nemeses `--scenario` names (not bugs: the code under test
/// must pass them).
pub const SCENARIOS: &[&str] = &["isolate-leader-on-apply"];

/// Adds the `--scenario` named `name` to `faults`; `None`: unknown.
pub fn with_scenario(mut faults: Faults, name: &str) -> Option<Faults> {
    match name {
        "isolate-leader-on-apply" => faults.isolate_leader_on_apply = true,
        _ => return None,
    }
    Some(faults)
}

/// Parses an `--inject` name.
pub fn parse_inject(name: &str) -> Option<Faults> {
    let mut faults = Faults::default();
    match name {
        "ack-before-fsync" => faults.core.ack_before_fsync = true,
        "self-vote-before-fsync" => faults.core.self_vote_before_fsync = true,
        "skip-adopt" => faults.core.skip_adopt = true,
        "stale-read" => faults.stale_read = true,
        "leader-local-reads" => faults.core.leader_local_reads = true,
        "read-index-chosen-only" => faults.core.read_index_chosen_only = true,
        "nondeterministic-sm" => faults.nondeterministic_sm = true,
        "torn-checkpoint" => faults.torn_checkpoint = true,
        "local-clock-ttl" => faults.local_clock_ttl = true,
        "wipe-votes" => faults.core.wipe_votes = true,
        "config-immediate" => faults.core.config_immediate = true,
        "learner-votes" => faults.core.learner_votes = true,
        "lease-drift-beyond-bound" => faults.lease_drift_beyond_bound = true,
        "admit-duplicates" => faults.admit_duplicates = true,
        "watch-ignored" => faults.watch_ignored = true,
        "wake-lost" => faults.wake_lost = true,
        "session-reapply" => faults.session_reapply = true,
        "on-disk-reapply" => faults.on_disk_reapply = true,
        "release-past-checkpoint" => faults.release_past_checkpoint = true,
        "local-permit-without-lease" => faults.local_permit_without_lease = true,
        "log-read-shift" => faults.log_read_shift = true,
        "local-random-draws" => faults.local_random_draws = true,
        "acl-checked-by-node" => faults.acl_checked_by_node = true,
        _ => return None,
    }
    Some(faults)
}

/// Runs one seed on a cluster of `nodes` replicas. A panic inside the run (a
/// broken invariant assertion) is reported as a violation, not propagated.
pub fn run_seed(seed: u64, nodes: usize, faults: Faults) -> SeedReport {
    let mut world = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let world = world.insert(World::new(seed, nodes, faults, rng));
        world.run();
        world.final_checks();
        world.stats.end_us = world.now_us;
        let metrics = &world.metrics;
        world.stats.reads_through_log = metrics.reads_through_log.load(Relaxed);
        world.stats.reads_settled = metrics.reads_settled.load(Relaxed);
        world.stats.request_timeouts = metrics.timeouts.load(Relaxed);
        world.stats.request_retries = metrics.retries.load(Relaxed);
        world.stats.duplicates_skipped = metrics.duplicates.load(Relaxed);
        world.stats.answered_from_sessions = metrics.answered_from_sessions.load(Relaxed);
        world.stats.checkpoints_state_on_disk = metrics.checkpoints_state_on_disk.load(Relaxed);
        world.stats.snapshots_for_peers = metrics.snapshots_for_peers.load(Relaxed);
        world.stats.log_bytes_released = metrics.log_memory_released_bytes.load(Relaxed);
        world.stats.log_reads_for_peers = metrics.log_reads_for_peers.load(Relaxed);
        world.stats.session_duplicates = metrics.session_duplicates.load(Relaxed);
        world.stats.loading_refusals = metrics.loading_refusals.load(Relaxed);
        world.stats.master_leases_lent = world.masters.lent;
        world.stats.leadership_drops = world.leadership_drops;
        world.stats.masters = world.masters.masters;
        world.stats.lease_reads += world
            .nodes
            .iter()
            .filter_map(|n| n.replica())
            .map(|r| r.lease_reads())
            .sum::<u64>();
        world.stats.accepts_deferred += world
            .nodes
            .iter()
            .filter_map(|n| n.replica())
            .map(|r| r.snapshot_transfer_stats().accepts_deferred)
            .sum::<u64>();
        world.stats.vouched_reads += world
            .nodes
            .iter()
            .filter_map(|n| n.replica())
            .map(|r| r.vouched_reads())
            .sum::<u64>();
        for (holds, hold_timeouts) in world
            .nodes
            .iter()
            .filter_map(|n| n.replica())
            .map(|r| r.batch_holds())
        {
            world.stats.batch_holds += holds;
            world.stats.batch_hold_timeouts += hold_timeouts;
        }
    }));
    match (result, world) {
        (Ok(()), Some(world)) => SeedReport {
            seed,
            violations: world.violations,
            violation_count: world.violation_count,
            stats: world.stats,
        },
        (result, world) => {
            let message = match result {
                Err(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string()),
                Ok(()) => "no world".to_string(),
            };
            // What the checkers found before the panic is kept: a broken
            // invariant that a checker reported first (a negative control's
            // bug, seen by the checker meant to see it, then tripping a
            // debug assertion as the run goes on) is not hidden by the panic.
            let (mut violations, violation_count, stats) = match world {
                Some(world) => (world.violations, world.violation_count, world.stats),
                None => (Vec::new(), 0, Stats::default()),
            };
            violations.push(format!("panic (broken invariant): {message}"));
            SeedReport {
                seed,
                violations,
                violation_count: violation_count + 1,
                stats,
            }
        }
    }
}
