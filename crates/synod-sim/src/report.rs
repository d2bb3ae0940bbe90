//! What one seed's run found.

use std::fmt;

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations acknowledged to clients.
    pub ops_ok: u64,
    /// Operations whose outcome stayed unknown (the client gave up).
    pub ops_unknown: u64,
    /// Messages sent.
    pub messages: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Instances chosen.
    pub instances: u64,
    /// Snapshots taken (with log compaction).
    pub snapshots: u64,
    /// Snapshots received from a peer and installed.
    pub snapshots_installed: u64,
    /// Checkpoints of on-disk state machines (no copy of the state).
    pub checkpoints_state_on_disk: u64,
    /// Snapshots written for a peer: whole ones by on-disk state machines,
    /// and checkpoints through values dropped from memory.
    pub snapshots_for_peers: u64,
    /// Bytes of applied values dropped from memory before a checkpoint.
    pub log_bytes_released: u64,
    /// Times values a peer needed, dropped from memory, were read back from
    /// the log.
    pub log_reads_for_peers: u64,
    /// Restarts of on-disk state machines that restored nothing (their
    /// durable state was past the checkpoint).
    pub on_disk_restarts: u64,
    /// Nemesis actions, in order.
    pub nemesis: Vec<&'static str>,
    /// Nodes that stopped on a storage error (injected disk faults).
    pub storage_failures: u64,
    /// Snapshot files written under a slow cap whose report waited.
    pub slow_snapshot_writes: u64,
    /// Of those, the ones reported early: their cap was lifted (overdue).
    pub snapshot_writes_hurried: u64,
    /// Removals that only emptied the trash: a peer's snapshot transfer
    /// dropped part-way went there (`FileSpool::abort`).
    pub dropped_transfer_removals: u64,
    /// Client requests refused because their node was loading a peer's
    /// snapshot (`RequestError::Loading`; the clients retried elsewhere).
    pub loading_refusals: u64,
    /// Accepts declined by nodes whose values held for a restore reached
    /// their bound (`Params::restore_backlog_bytes`).
    pub accepts_deferred: u64,
    /// Wiped nodes that finished rebuilding (vote again).
    pub rebuilds: u64,
    /// Reads by index that depended on the time and went through the log.
    pub reads_through_log: u64,
    /// Reads by index that depended on the time and were answered without
    /// the log, their answer at the applied point's log clock being the one
    /// at the serving node's clock (`StateMachine::query_settles_by_clock`).
    pub reads_settled: u64,
    /// Requests the runtime's engines gave up on (timeouts).
    pub request_timeouts: u64,
    /// Requests and reads the engines proposed or submitted again.
    pub request_retries: u64,
    /// Commands the engines' session tables skipped as duplicates.
    pub duplicates_skipped: u64,
    /// Requests answered from an installed snapshot's session table.
    pub answered_from_sessions: u64,
    /// Simulated time at the end, in µs.
    pub end_us: u64,
    /// Membership operations asked (`Replica::member_op`).
    pub member_ops: u64,
    /// Of those, answered with success (`Ready::member_outcomes`).
    pub member_ops_ok: u64,
    /// Of those, refused at once or answered with a refusal.
    pub member_ops_refused: u64,
    /// Membership changes the agreed log put in force (or scheduled).
    pub reconfigs: u64,
    /// Chosen changes the log ignores (stale epoch, or another one pending).
    pub reconfigs_ignored: u64,
    /// Spare nodes started to join the group.
    pub spares_started: u64,
    /// Quorums counted by leaders that the membership checker verified.
    pub quorums_checked: u64,
    /// Reads confirmed under a leader lease, with no round (all replicas,
    /// all incarnations).
    pub lease_reads: u64,
    /// Of those, reads served outside the engine under its published
    /// permit (`Engine::local_read_permit`), as a leader's RESP connections
    /// serve them.
    pub local_lease_reads: u64,
    /// Follower reads a leader confirmed by the request's vouch alone, with
    /// no round (all replicas, all incarnations).
    pub vouched_reads: u64,
    /// Cohort batching: batches held back by leaders (all replicas, all
    /// incarnations).
    pub batch_holds: u64,
    /// Of `batch_holds`, those that ended on their clock.
    pub batch_hold_timeouts: u64,
    /// Blocking pops (queue clients): popped an element, timed out, and
    /// tries proposed after a wake (a push woke a blocked client).
    pub pops_served: u64,
    pub pops_timed_out: u64,
    pub pop_tries_after_wake: u64,
    /// Expiry sweeps proposed (see `sweep.rs`).
    pub sweeps: u64,
    /// Mixed commands proposed, and answered as applied (see `mixed.rs`).
    pub mixed_proposed: u64,
    pub mixed_applied: u64,
    /// Library client sessions registered, expired, and client restarts
    /// (an attempt dropped without its answer, resumed elsewhere).
    pub sessions_registered: u64,
    pub sessions_expired: u64,
    pub session_restarts: u64,
    /// Session commands the runtime answered from its client session table
    /// instead of applying them again.
    pub session_duplicates: u64,
    /// Master leases lent to the simulated application (leases only).
    pub master_leases_lent: u64,
    /// Distinct masters (node, ballot) that were lent one.
    pub masters: u64,
    /// Leaders asked to drop their leadership (and leading when asked).
    pub leadership_drops: u64,
    /// Drained pipelines' chosen prefixes announced when the core's
    /// wake-up came (`Event::Wake`), no Accept having carried them first.
    pub delayed_announcements: u64,
}

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The first few violations found; empty when the run passed.
    pub violations: Vec<String>,
    /// How many violations were found in all.
    pub violation_count: u64,
    /// What happened.
    pub stats: Stats,
}

impl SeedReport {
    /// True when no checker found anything.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ok, {} unknown, {} instances, {} messages, {} crashes, {} snapshots ({} installed, {} for peers; on disk: {} checkpoints, {} restarts), {} dropped transfers removed, {} accepts deferred by restoring nodes, {} requests refused while loading, {} KiB of applied values dropped from memory ({} times read back from the log), {} nemesis actions, {} reconfigs ({} ignored, {} of {} member ops ok, {} spares), {} lease reads ({} local), {} vouched reads, {} batch holds ({} timed out), {} master leases lent to {} masters, {} leadership drops, {} delayed announcements, pops {} served {} timed out {} woken, {} sweeps, {} of {} mixed commands applied, {:.1} s simulated",
            self.ops_ok,
            self.ops_unknown,
            self.instances,
            self.messages,
            self.crashes,
            self.snapshots,
            self.snapshots_installed,
            self.snapshots_for_peers,
            self.checkpoints_state_on_disk,
            self.on_disk_restarts,
            self.dropped_transfer_removals,
            self.accepts_deferred,
            self.loading_refusals,
            self.log_bytes_released / 1024,
            self.log_reads_for_peers,
            self.nemesis.len(),
            self.reconfigs,
            self.reconfigs_ignored,
            self.member_ops_ok,
            self.member_ops,
            self.spares_started,
            self.lease_reads,
            self.local_lease_reads,
            self.vouched_reads,
            self.batch_holds,
            self.batch_hold_timeouts,
            self.master_leases_lent,
            self.masters,
            self.leadership_drops,
            self.delayed_announcements,
            self.pops_served,
            self.pops_timed_out,
            self.pop_tries_after_wake,
            self.sweeps,
            self.mixed_applied,
            self.mixed_proposed,
            self.end_us as f64 / 1e6
        )
    }
}
