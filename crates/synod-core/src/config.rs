//! Configuration of one replica, validated before the replica starts.

use crate::ids::{GroupId, InstanceId, NodeId};
use crate::membership::Schedule;
use thiserror::Error;

/// Largest membership the core accepts (acknowledgement sets are bit masks).
pub const MEMBERS_MAX: usize = 64;

/// Bytes an instance value's encoding adds around its commands: a tag and a
/// command count, then a 4-byte length before each command. A value holding
/// one command of `n` bytes encodes to `VALUE_OVERHEAD_BYTES + n` bytes.
pub const VALUE_OVERHEAD_BYTES: usize = 1 + 4 + 4;

/// Bytes an encoded message may add to the largest payload it carries (the
/// values of its entries, its commands or its snapshot data). See
/// [`Config::message_bytes_max`]; `codec.rs` tests check every message kind.
pub const MESSAGE_OVERHEAD_BYTES: usize = 128;

/// Bytes a snapshot's schedule (`Snapshot::memberships`) may add to its
/// first piece beyond `value_bytes_max`: a schedule holds at most two
/// memberships (one in force, one waiting; see `Replica::note_reconfig`),
/// each proposed only if its encoding is at most half a value.
pub(crate) const SCHEDULE_OVERHEAD_BYTES: usize = 32;

/// Bytes a promise entry adds to its value: instance, ballot and the chosen flag.
pub(crate) const PROMISE_ENTRY_OVERHEAD_BYTES: usize = 8 + 12 + 1;

/// Bytes a write-ahead log record adds to the value it carries.
pub const RECORD_OVERHEAD_BYTES: usize = 64;

/// Largest [`Config::value_bytes_max`] accepted: a value, the message that
/// carries it and the log record that holds it must all stay far below the
/// 4 GiB a `u32` length can express.
pub const VALUE_BYTES_LIMIT: usize = 1 << 30;

/// Deliberate protocol bugs used as negative controls by the simulator: each must
/// be caught by its checkers. They can only be switched on with the
/// `fault-injection` feature (which adds [`Config::inject`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inject {
    /// The acceptor sends Promise/Accepted before its record is durable.
    pub ack_before_fsync: bool,
    /// A new leader ignores the accepted values reported in phase 1.
    pub skip_adopt: bool,
    /// A leader serves reads from what it has applied, without confirming by
    /// a heartbeat round that it still leads: a deposed leader that has not
    /// noticed serves stale reads.
    pub leader_local_reads: bool,
    /// A replica started with [`Config::rebuild`] (its disk was wiped)
    /// votes at once, as if nothing had been lost: the behaviour before
    /// rebuild mode existed. It can let two values be chosen at one instance.
    pub wipe_votes: bool,
    /// A chosen membership governs the very next instance instead of the
    /// one `RECONFIG_DELAY_INSTANCES` later, while leaders still pipeline:
    /// instances already in flight change membership under their feet.
    pub config_immediate: bool,
    /// A leader counts learners' acceptances toward quorums.
    pub learner_votes: bool,
    /// A leader counts its own vote for its proposal before its Accept
    /// record is durable (the followers' votes still wait for theirs): what
    /// lazy self-sync (`Config::lazy_self_sync`) must never do.
    pub self_vote_before_fsync: bool,
    /// A leader serves reads from the end of what it knows chosen alone,
    /// without the floors of phase 1 (`recovery_end`, compacted prefixes):
    /// a new leader that has not yet re-chosen what an earlier one chose
    /// serves reads that miss writes completed under the earlier one.
    pub read_index_chosen_only: bool,
}

/// An opt-in leader lease (see `replica/lease.rs` for the rule and its
/// safety argument). The leader serves linearizable reads from its own state
/// without a network round while a majority of every membership it reads
/// against has promised, for `duration_ms` of their own clocks, to elect
/// nobody else.
///
/// **The assumption it needs:** every member's monotonic clock runs at a
/// rate within `drift_ppm` parts per million of real time, over every
/// interval (a bound on drift *rate*; clock *offsets* between nodes do not
/// matter, nor do steps of the wall clock). A clock that stops while the
/// process goes on (a suspended virtual machine whose monotonic clock does
/// not count the suspension) breaks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// `L`: an acceptor that acknowledges a leader at local time `t`
    /// promises no other candidate a higher ballot before `t + L` on its own
    /// clock (ms). Should be below the minimum election timeout, or
    /// elections after a leader failure wait for it.
    pub duration_ms: u64,
    /// `ρ`, in parts per million: over any interval, every member's clock
    /// advances by between `(1 - ρ)` and `(1 + ρ)` times the real time.
    pub drift_ppm: u32,
}

impl Lease {
    /// The largest drift bound accepted: 10%.
    pub const DRIFT_PPM_MAX: u32 = 100_000;
    /// The smallest drift bound accepted: 1000 ppm (0.1%). A monotonic
    /// clock is slewed by NTP (up to 500 ppm on Linux) and its oscillator
    /// drifts; a bound of 0 would leave the lease's safety to rounding.
    pub const DRIFT_PPM_MIN: u32 = 1_000;
    /// The longest lease accepted: one minute.
    pub const DURATION_MS_MAX: u64 = 60_000;

    /// How long, on its own clock, the leader may serve reads after sending
    /// a round that a majority then acknowledged: `D = ⌊(L − 1)(1 − ρ)/(1 + ρ)⌋`
    /// ms from the send (derivation in `replica/lease.rs`).
    pub fn leader_hold_ms(&self) -> u64 {
        const PPM: u128 = 1_000_000;
        let drift = u128::from(self.drift_ppm.min(Self::DRIFT_PPM_MAX));
        let hold = u128::from(self.duration_ms.saturating_sub(1)) * (PPM - drift) / (PPM + drift);
        u64::try_from(hold).unwrap_or(0)
    }
}

/// Everything a replica needs to know before it starts. Times are in ticks: the
/// caller decides how long a tick is (the runtime uses 10 ms).
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// The group it belongs to.
    pub group: GroupId,
    /// The voting members a new group starts with, this replica included
    /// (the membership of instance 0). Ignored when `schedule` is set.
    pub members: Vec<NodeId>,
    /// The memberships this replica starts from when it did not bootstrap
    /// the group: `(point, schedule)` where `schedule` gives the membership
    /// of every instance from `point` on and already includes every
    /// reconfiguration chosen below `point` (a joining node gets it from a
    /// member; see `Replica::join_schedule`). A snapshot's schedule replaces
    /// it on recovery or install.
    pub schedule: Option<(InstanceId, Schedule)>,
    /// The leader promotes a joining learner (and allows a manual promotion
    /// without force) only once its chosen prefix is at most this many
    /// instances behind the leader's.
    pub promote_lag_max: u64,
    /// Seed for the randomized election timeouts and read request ids. Must
    /// differ between incarnations of one node (a restarted follower must not
    /// take a reply meant for its previous life as its own).
    pub seed: u64,
    /// A leader sends a heartbeat at least this often.
    pub heartbeat_ticks: u64,
    /// A follower that hears no leader for a random time in
    /// `[election_ticks, 2 * election_ticks)` starts an election.
    pub election_ticks: u64,
    /// Unanswered Prepare/Accept messages are sent again after this long.
    pub retransmit_ticks: u64,
    /// A follower behind the leader's chosen prefix asks for catch-up this often.
    pub catchup_ticks: u64,
    /// At most this many instances in phase 2 at once.
    pub window_instances_max: usize,
    /// At most this many payload bytes in phase 2 at once.
    pub window_bytes_max: usize,
    /// The largest instance value, in encoded bytes (a batch of commands, with
    /// [`VALUE_OVERHEAD_BYTES`] plus 4 bytes per further command). This is the
    /// hard bound on everything the log carries: [`crate::Replica::propose`]
    /// refuses a command that would not fit alone
    /// ([`crate::RejectReason::TooLarge`], see [`Config::command_bytes_max`]),
    /// batches never grow past it, and every message and record is sized from
    /// it ([`Config::message_bytes_max`], [`Config::record_bytes_max`]), so the
    /// runtime can check at start-up that everything fits its frames. Why a
    /// bound at all: a value that cannot cross the network is never chosen,
    /// and every later instance waits behind it forever.
    pub value_bytes_max: usize,
    /// At most this many commands in one instance value.
    pub batch_commands_max: usize,
    /// At most this many payload bytes in one instance value (a larger single
    /// command still goes alone, up to `value_bytes_max`).
    pub batch_bytes_max: usize,
    /// At most this many commands wait for a slot; more are refused.
    pub pending_commands_max: usize,
    /// At most this many entries in one catch-up reply.
    pub catchup_entries_max: usize,
    /// At most this many encoded entry bytes in one catch-up reply (one entry
    /// always goes, however large: values are bounded by `value_bytes_max`).
    pub catchup_bytes_max: usize,
    /// At most this many encoded entry bytes in one page of a phase-1 promise
    /// (one entry always goes). An acceptor with more to report sends pages,
    /// the candidate asks for each next one (see `replica/proposer.rs`).
    pub promise_bytes_max: usize,
    /// At most this many bytes in one snapshot chunk.
    pub snapshot_chunk_bytes_max: usize,
    /// A snapshot offered by a peer larger than this is refused.
    pub snapshot_bytes_max: u64,
    /// Encoded bytes of applied chosen values kept in memory after the
    /// latest checkpoint, for peers that lag behind (catch-up, promises).
    /// Older applied values are dropped from memory as the runtime allows
    /// ([`crate::Replica::release_applied_values`]): they stay in the log on
    /// disk until the next checkpoint, and a peer that needs one gets them
    /// read back from there, or else a fresh snapshot
    /// ([`crate::Replica::take_released_demand`]).
    /// The bound is soft: values a peer is catching up through, or will
    /// need after a snapshot it fetches, are kept meanwhile (see
    /// `applied_tail_hold_ticks`). `u64::MAX` (the default): every value is
    /// kept until a checkpoint compacts it.
    pub applied_tail_bytes: u64,
    /// For this many ticks after a piece of this replica's snapshot was
    /// sent (or a peer needed values it dropped), no applied value after
    /// the snapshot is dropped from memory: the peer asks for them once it
    /// installed the snapshot. Also caps how long the values a peer is
    /// catching up through are kept after its latest request (otherwise 40
    /// catch-up intervals). Default 6,000 (a minute at 10 ms a tick).
    pub applied_tail_hold_ticks: u64,
    /// Encoded bytes of chosen values held back while the state machine is
    /// restored from a peer's snapshot ([`crate::Replica::set_hold_applies_on_install`]).
    /// Once they reach this bound the replica stops voting for instances
    /// not yet chosen here and stops asking peers for chosen values, until
    /// the runtime releases the values ([`crate::Replica::release_applies`]):
    /// a restore that outlasts a busy cluster's writes cannot fill memory
    /// with them. The bound is soft by what was accepted before it was
    /// reached, and by one value. Meanwhile
    /// the others must make a quorum without this replica; its votes come
    /// back once the restore ends. `u64::MAX` (the default): no bound.
    pub restore_backlog_bytes_max: u64,
    /// This replica lost its durable state (a wiped or replaced disk) and
    /// starts as a non-voting member that learns and catches up but answers
    /// no Prepare or Accept until voting is safe again (Paxos Made Live,
    /// §5.1; the rule and its safety argument are in `replica/rebuild.rs`).
    /// [`crate::Replica::rebuilding`] says when it votes again. Needs at
    /// least two members: a lone replica has nobody to rebuild from.
    pub rebuild: bool,
    /// Leader leases for reads without a network round (`None`, the
    /// default: every read is confirmed by a heartbeat round). With a lease
    /// the runtime must call [`crate::Replica::set_time`] with a fresh
    /// monotonic time before every input (see `replica/lease.rs`).
    pub read_lease: Option<Lease>,
    /// A leader's own vote for its proposals waits for the next sync instead
    /// of asking for one at once, while enough other voters answer to choose
    /// without it (`true`, the default; see `Replica::awaits_durability`).
    /// An instance is then usually chosen by followers alone, and the leader
    /// syncs its log when the runtime's lazy syncs come (the node runtime:
    /// every 5 ticks, `synod`'s `LAZY_SYNC_TICKS`) instead of once per batch; every
    /// vote counted is still durable. With a voter too few answering, the
    /// leader syncs each batch again (a follower that has just fallen
    /// silent still counts for a tick or two: meanwhile an instance may
    /// wait up to two ticks). `false`: the leader syncs every
    /// batch and counts its own vote at once (commit waits for the fastest
    /// follower and the leader's own fsync).
    pub lazy_self_sync: bool,
    /// How long a busy leader whose pipeline drained (nothing left in
    /// flight) waits, in ms of the time given to
    /// [`crate::Replica::set_time`], before it announces the grown chosen
    /// prefix with a heartbeat round (see `Replica::announce_chosen`):
    /// its next Accepts most likely carry the prefix within that time, and
    /// the round is not needed. Busy means it proposed within this time
    /// after its last drain; otherwise it announces at once. 0 (the
    /// default): always at once. Otherwise the runtime must give the replica a
    /// fresh time and call `take_ready` again once its clock reaches
    /// [`crate::Replica::wake_at_ms`] (a runtime that does not is only
    /// late: the next tick announces the prefix too). Without a time given,
    /// the round goes at once. When a cohort hold is likely to follow the
    /// drain ([`Config::batch_hold_ms`]: a cohort that holds, a batch within
    /// the last 20 ms, not backing off, no transfer), a busy leader's round
    /// waits until a hold starting at the drain would end, if later (the
    /// batch it releases carries the prefix), and busy also means that the
    /// last drain's batch came by the end of its hold.
    pub announce_delay_ms: u64,
    /// Cohort batching: how long, at most, a leader whose pipeline drained
    /// keeps waiting commands back so that they go in one batch with the
    /// commands about to arrive (in ms of the time given to
    /// [`crate::Replica::set_time`]; see `Replica::hold_batch`). While
    /// fewer than 4/5 of the most commands lately outstanding at once wait
    /// (and they fit in one batch), they wait for the batches in flight to
    /// be chosen, then this long (less than 1 ms more: the clock is whole
    /// ms). 0 (the default): never. Otherwise the runtime must give the
    /// replica a fresh time and call `take_ready` again once its clock
    /// reaches [`crate::Replica::wake_at_ms`] (a runtime that does not is
    /// only late: the second tick with the time unchanged ends the hold).
    /// Without a time given, the commands go at once.
    pub batch_hold_ms: u64,
    /// Negative controls; all off by default.
    #[cfg(feature = "fault-injection")]
    pub inject: Inject,
}

/// A configuration that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The membership is empty or larger than [`MEMBERS_MAX`].
    #[error("membership must have 1 to {MEMBERS_MAX} members, got {0}")]
    MembershipSize(usize),
    /// A node id appears twice.
    #[error("node {0} appears twice in the membership")]
    DuplicateMember(NodeId),
    /// This replica is not a member.
    #[error("node {0} is not in the membership")]
    NotAMember(NodeId),
    /// A limit or interval is zero or inconsistent.
    #[error("invalid setting: {0}")]
    Invalid(&'static str),
}

/// Default for [`Config::value_bytes_max`]: 32 MiB, half the peer transport's
/// default frame limit (64 MiB), so every message fits with room to spare.
pub const VALUE_BYTES_MAX_DEFAULT: usize = 32 << 20;

impl Config {
    /// A configuration with the defaults for `id` in `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Config {
        Config {
            id,
            group: GroupId(0),
            members,
            schedule: None,
            promote_lag_max: 256,
            seed: u64::from(id.0),
            heartbeat_ticks: 3,
            election_ticks: 30,
            retransmit_ticks: 10,
            catchup_ticks: 5,
            window_instances_max: 64,
            window_bytes_max: 16 << 20,
            lazy_self_sync: true,
            announce_delay_ms: 0,
            batch_hold_ms: 0,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            batch_commands_max: 1024,
            batch_bytes_max: 1 << 20,
            pending_commands_max: 100_000,
            catchup_entries_max: 256,
            catchup_bytes_max: 4 << 20,
            promise_bytes_max: 4 << 20,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 16 << 30,
            applied_tail_bytes: u64::MAX,
            applied_tail_hold_ticks: 6_000,
            restore_backlog_bytes_max: u64::MAX,
            rebuild: false,
            read_lease: None,
            #[cfg(feature = "fault-injection")]
            inject: Inject::default(),
        }
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some((_, schedule)) = &self.schedule {
            if !schedule.latest().contains(self.id) {
                return Err(ConfigError::NotAMember(self.id));
            }
        } else if self.members.is_empty() || self.members.len() > MEMBERS_MAX {
            return Err(ConfigError::MembershipSize(self.members.len()));
        }
        let mut seen = self.members.clone();
        seen.sort();
        for pair in seen.windows(2) {
            if pair[0] == pair[1] {
                return Err(ConfigError::DuplicateMember(pair[0]));
            }
        }
        if self.schedule.is_none() && !self.members.contains(&self.id) {
            return Err(ConfigError::NotAMember(self.id));
        }
        if self.heartbeat_ticks == 0 || self.retransmit_ticks == 0 || self.catchup_ticks == 0 {
            return Err(ConfigError::Invalid("tick intervals must be at least 1"));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::Invalid(
                "election_ticks must exceed heartbeat_ticks",
            ));
        }
        if self.window_instances_max == 0
            || self.window_bytes_max == 0
            || self.batch_commands_max == 0
            || self.batch_bytes_max == 0
            || self.pending_commands_max == 0
            || self.catchup_entries_max == 0
            || self.catchup_bytes_max == 0
            || self.promise_bytes_max == 0
            || self.snapshot_chunk_bytes_max == 0
        {
            return Err(ConfigError::Invalid("limits must be at least 1"));
        }
        if self.value_bytes_max <= VALUE_OVERHEAD_BYTES || self.value_bytes_max > VALUE_BYTES_LIMIT
        {
            return Err(ConfigError::Invalid(
                "value_bytes_max must hold a one-byte command and be at most 1 GiB",
            ));
        }
        if self.catchup_bytes_max > VALUE_BYTES_LIMIT
            || self.promise_bytes_max > VALUE_BYTES_LIMIT
            || self.snapshot_chunk_bytes_max > VALUE_BYTES_LIMIT
        {
            return Err(ConfigError::Invalid(
                "catch-up, promise and snapshot chunk limits must be at most 1 GiB",
            ));
        }
        if self.rebuild && self.schedule.is_none() && self.members.len() < 2 {
            return Err(ConfigError::Invalid(
                "a one-member group cannot rebuild: no peer holds its state",
            ));
        }
        if let Some(lease) = &self.read_lease {
            if lease.duration_ms > Lease::DURATION_MS_MAX
                || lease.drift_ppm > Lease::DRIFT_PPM_MAX
                || lease.drift_ppm < Lease::DRIFT_PPM_MIN
            {
                return Err(ConfigError::Invalid(
                    "read lease: duration at most 60 s and drift between 1000 ppm (0.1%) and 100000 ppm (10%)",
                ));
            }
            if lease.leader_hold_ms() == 0 {
                return Err(ConfigError::Invalid(
                    "read lease too short: the leader could hold it for 0 ms",
                ));
            }
        }
        Ok(())
    }

    /// The largest command [`crate::Replica::propose`] accepts: one that fits
    /// alone in a value of `value_bytes_max` encoded bytes.
    pub fn command_bytes_max(&self) -> usize {
        self.value_bytes_max.saturating_sub(VALUE_OVERHEAD_BYTES)
    }

    /// An upper bound on the encoded size of any message this replica emits
    /// (`codec::encoded_len`), given its limits: the largest payload a
    /// message carries plus [`MESSAGE_OVERHEAD_BYTES`]. The payloads are one
    /// value (Accept, Forward), the entries of one promise page or catch-up
    /// reply (at most `promise_bytes_max`/`catchup_bytes_max`, or a single
    /// entry of at most one value), or one snapshot chunk. The runtime checks
    /// at start-up that this fits in its peer frames.
    pub fn message_bytes_max(&self) -> usize {
        [
            self.value_bytes_max + PROMISE_ENTRY_OVERHEAD_BYTES,
            self.promise_bytes_max,
            self.catchup_bytes_max,
            self.snapshot_chunk_bytes_max + 1 + self.value_bytes_max + SCHEDULE_OVERHEAD_BYTES,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + MESSAGE_OVERHEAD_BYTES
    }

    /// An upper bound on the encoded size of any record this replica hands
    /// out to persist: a value plus [`RECORD_OVERHEAD_BYTES`].
    pub fn record_bytes_max(&self) -> usize {
        self.value_bytes_max + RECORD_OVERHEAD_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_holds_a_lease_for_l_times_one_minus_rho_over_one_plus_rho() {
        let lease = |duration_ms, drift_ppm| Lease {
            duration_ms,
            drift_ppm,
        };
        // No drift: L - 1 (one ms for the clocks' granularity).
        assert_eq!(lease(1000, 0).leader_hold_ms(), 999);
        // 1%: 999 * 0.99 / 1.01 = 979.2
        assert_eq!(lease(1000, 10_000).leader_hold_ms(), 979);
        // 10%: 999 * 0.9 / 1.1 = 817.4
        assert_eq!(lease(1000, 100_000).leader_hold_ms(), 817);
        assert_eq!(lease(1, 0).leader_hold_ms(), 0);
        let mut cfg = Config::new(NodeId(1), vec![NodeId(1)]);
        cfg.read_lease = Some(lease(1, 0));
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        cfg.read_lease = Some(lease(400, 100_001));
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        cfg.read_lease = Some(lease(400, 10_000));
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn validation_catches_bad_memberships() {
        let ok = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(ok.validate(), Ok(()));
        let dup = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(2)]);
        assert_eq!(dup.validate(), Err(ConfigError::DuplicateMember(NodeId(2))));
        let outsider = Config::new(NodeId(9), vec![NodeId(1)]);
        assert_eq!(outsider.validate(), Err(ConfigError::NotAMember(NodeId(9))));
        let empty = Config::new(NodeId(1), vec![]);
        assert_eq!(empty.validate(), Err(ConfigError::MembershipSize(0)));
    }

    #[test]
    fn value_limits_are_validated_and_bound_messages() {
        let mut cfg = Config::new(NodeId(1), vec![NodeId(1)]);
        assert_eq!(cfg.command_bytes_max(), VALUE_BYTES_MAX_DEFAULT - 9);
        // The largest message carries one value plus a promise entry's
        // fields and a message header; the defaults fit a 64 MiB frame.
        assert!(cfg.message_bytes_max() > cfg.value_bytes_max + PROMISE_ENTRY_OVERHEAD_BYTES);
        assert!(cfg.message_bytes_max() <= 64 << 20);
        assert!(cfg.record_bytes_max() > cfg.value_bytes_max);
        cfg.value_bytes_max = VALUE_OVERHEAD_BYTES;
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        cfg.value_bytes_max = VALUE_BYTES_LIMIT + 1;
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        cfg.value_bytes_max = VALUE_OVERHEAD_BYTES + 1;
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.command_bytes_max(), 1);
        cfg.promise_bytes_max = 0;
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        // Large pages raise the bound.
        cfg.promise_bytes_max = 100 << 20;
        assert_eq!(
            cfg.message_bytes_max(),
            (100 << 20) + MESSAGE_OVERHEAD_BYTES
        );
    }
}
