//! One replica of one Paxos group: acceptor, proposer and learner in one pure
//! state machine. Inputs are [`Replica::step`], [`Replica::tick`],
//! [`Replica::propose`] and [`Replica::persisted`]; outputs are collected in a
//! [`Ready`] taken with [`Replica::take_ready`].
//!
//! The roles live in their own files: `acceptor.rs` (Prepare, Accept),
//! `proposer.rs` (elections, phase 1 and 2 as leader), `learner.rs` (chosen
//! values, apply, catch-up, heartbeats and checksums).

mod acceptor;
mod digest;
mod door;
mod learner;
mod lease;
mod master;
mod members;
mod proposer;
mod reads;
mod rebuild;
mod recover;
mod snapshot;

#[cfg(test)]
mod tests;

use crate::config::{Config, ConfigError, Inject};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::membership::{Membership, Schedule};
use crate::message::{AppliedMark, Body, Message, PromiseEntry};
use crate::ready::{PersistSeq, Ready, RejectReason, Rejected};
use crate::record::Record;
use crate::value::{Checksum, Command, Snapshot, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

pub use door::{Refusal, Refusals, ROUND_JUMP_MAX};
pub use master::{MasterLease, DROP_HOLD_ELECTION_TIMEOUTS};
pub use members::{ChangeError, MemberProgress, QuorumUse};
pub use recover::RecoverError;
pub use snapshot::{CompactError, SnapshotTransferStats};

/// What a replica is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    /// Following a leader (or waiting for one).
    Follower,
    /// Running phase 1 to become leader.
    Candidate,
    /// Leading: phase 1 done for every instance from its first unchosen one.
    Leader,
}

/// A snapshot of a replica's progress, for status pages, metrics and checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This replica.
    pub id: NodeId,
    /// Its role.
    pub role: RoleKind,
    /// The leader it knows of (itself when leading).
    pub leader: Option<NodeId>,
    /// The highest ballot it promised.
    pub promised: Ballot,
    /// Every instance below this is chosen and known here.
    pub chosen_end: InstanceId,
    /// Every instance below this was handed out to apply.
    pub applied_end: InstanceId,
    /// Checksum of the applied values.
    pub checksum: Checksum,
}

/// Whether a message may leave before everything persisted so far is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// The message does not depend on any record being durable.
    Now,
    /// The message may only leave once every record handed out so far is durable.
    Durable,
    /// As `Durable`, but the message asks for no sync of its own while the
    /// other voters can choose without it: a leader's vote for its own
    /// proposal (see [`Replica::awaits_durability`]).
    Lazy,
}

/// Acceptor state: what must survive a crash for Paxos to be safe.
#[derive(Debug, Default)]
struct AcceptorState {
    /// No ballot below this is accepted or promised any more.
    promised: Ballot,
    /// Accepted values at or above the chosen prefix; below it they are pruned
    /// (the chosen value is kept by the learner).
    accepted: BTreeMap<InstanceId, (Ballot, Value)>,
}

/// Values a peer needs that this replica dropped from memory (they are in its
/// log on disk until the next checkpoint): see
/// [`Replica::take_released_demand`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleasedDemand {
    /// The first instance a peer asked for.
    pub from: InstanceId,
    /// The first value still kept in memory when it asked: the need ends
    /// there.
    pub through: InstanceId,
}

/// Learner state: what is known chosen and what was handed out to apply.
#[derive(Debug)]
struct LearnerState {
    /// Every known chosen value from `values_from` on. Below it the values
    /// are dropped: below `compacted_end` a snapshot replaces them, between
    /// the two they are on disk only (see `release_applied_values`).
    chosen: BTreeMap<InstanceId, Value>,
    /// The first instance whose chosen value is kept in memory:
    /// `compacted_end <= values_from <= applied_end`.
    values_from: InstanceId,
    /// Encoded bytes of the values kept of applied instances
    /// (`values_from..applied_end`), which `Config::applied_tail_bytes`
    /// bounds.
    tail_bytes: u64,
    /// Until this tick no applied value at or above `compacted_end` is
    /// dropped: a peer fetches our snapshot and then needs the values after
    /// it (set whenever a piece of the snapshot is sent or a whole one is
    /// to be written for a peer, and when a fresh one is demanded).
    tail_hold_until: u64,
    /// Peers need values this replica dropped from memory: the runtime
    /// reads them back from its log ([`Replica::restore_released_values`])
    /// or checkpoints through them ([`Replica::take_released_demand`]).
    released_demand: Option<ReleasedDemand>,
    /// Per member, the first instance of its latest catch-up request
    /// served from memory, and the tick until which no value from there on
    /// is dropped (it is catching up through them). At most one entry per
    /// member: only members' catch-up requests pass the door.
    catchup_marks: BTreeMap<NodeId, (InstanceId, u64)>,
    /// Encoded bytes of the chosen values in `chosen` at or above
    /// `applied_end` while `apply_held` (0 otherwise), which
    /// `Config::restore_backlog_bytes_max` bounds (see
    /// `Replica::restore_backlog_full`).
    held_bytes: u64,
    /// Every instance below this is chosen and known here.
    chosen_end: InstanceId,
    /// Every instance below this was handed out to apply.
    applied_end: InstanceId,
    /// Checksum of values `0..applied_end`.
    checksum: Checksum,
    /// Recent applied marks, oldest first, to compare with peers' marks.
    history: VecDeque<AppliedMark>,
    /// Highest chosen prefix end heard of (from a leader or a promise).
    commit_seen: InstanceId,
    /// When this replica last asked a peer for catch-up.
    catchup_asked_tick: Option<u64>,
    /// The chosen prefix when the leader last noted progress.
    progress_mark: InstanceId,
    /// Chosen values below this were dropped; `snapshot` replaces them.
    compacted_end: InstanceId,
    /// The latest snapshot, served to peers that need compacted instances.
    snapshot: Option<Snapshot>,
    /// The digest of `snapshot`'s bytes, computed when first sent (`None`
    /// until then; reset whenever `snapshot` changes).
    snapshot_digest: Option<crate::value::SnapshotDigest>,
    /// Whether `snapshot` can be sent to peers: `false` for a checkpoint
    /// of a state machine that keeps its state on its own disk, which
    /// rebuilds this replica after a restart but holds no state to install
    /// (see [`Replica::set_snapshot_sendable`]).
    snapshot_sendable: bool,
    /// A peer asked for a piece of our snapshot since the runtime last
    /// looked ([`Replica::take_snapshot_demand`]).
    snapshot_demand: bool,
    /// Installing a snapshot holds back the chosen values after it (see
    /// [`Replica::set_hold_applies_on_install`]).
    hold_applies_on_install: bool,
    /// Chosen values are not handed out to apply until
    /// [`Replica::release_applies`] (the state machine is being restored).
    apply_held: bool,
    /// The values held back are handed out a slice per step
    /// (`APPLY_DRAIN_PER_STEP`) until the applied point reaches the chosen
    /// one: a long restore's backlog must not stall the loop in one step.
    apply_draining: bool,
    /// A snapshot being received from a peer.
    incoming: Option<snapshot::Incoming>,
    /// Keeps the bytes of `incoming`.
    spool: Box<dyn crate::SnapshotSpool>,
    /// Counters of snapshot transfers, for metrics.
    transfer_stats: SnapshotTransferStats,
    /// A node outside our memberships whose heartbeat said the log is
    /// chosen further: catch up from it (see `door.rs::hint_from_stranger`).
    stranger_source: Option<NodeId>,
    /// The stranger last asked for catch-up: its replies are let in.
    stranger_asked: Option<NodeId>,
}

/// Checksum marks kept to compare with peers.
const HISTORY_MARKS_MAX: usize = 4096;

/// A value in phase 2, waiting for a majority.
#[derive(Debug)]
struct InFlight {
    value: Value,
    /// The members that accepted (voters of the instance's membership
    /// count toward its quorum; anyone else is ignored there).
    acks: BTreeSet<NodeId>,
    /// Last time the Accept was sent to members that have not answered.
    sent_tick: u64,
}

#[derive(Debug)]
struct Candidate {
    ballot: Ballot,
    /// Phase 1 in progress (shared with the leader it becomes).
    phase1: Phase1,
    /// Per instance, the highest-ballot accepted value reported so far (or a
    /// value some acceptor knows is chosen).
    entries: BTreeMap<InstanceId, PromiseEntry>,
}

/// Promises gathered for one ballot. A member counts once every page of its
/// report is in (see `handle_promise` for why only complete promises count).
#[derive(Debug)]
struct Phase1 {
    /// The members whose promise is complete.
    promised_by: BTreeSet<NodeId>,
    /// Per member asked, where the next page of its promise starts (the
    /// `first_instance` of the prepare that asks for it). A member asked
    /// first when the candidate starts gets its chosen prefix; one asked
    /// later (a member of a membership that takes effect while this ballot
    /// leads) gets the leader's next instance then: its reports below that
    /// are not needed (see `proposer.rs`). Meaningless once the member is in
    /// `promised_by`.
    pages_from: BTreeMap<NodeId, InstanceId>,
    /// When Prepares last went to members whose promise is not complete.
    prepare_sent_tick: u64,
    /// Per member, the highest compacted prefix its promise pages reported
    /// (only those above zero): its report lacks every instance below it
    /// (see `flush_proposals`).
    compacted: BTreeMap<NodeId, InstanceId>,
}

#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    /// Phase 1 goes on while leading: members of a membership that takes
    /// effect later must promise before the leader proposes in its instances.
    phase1: Phase1,
    /// Per instance at or after `next_instance`, the highest-ballot value
    /// some promise reported (or one known chosen): proposed when the
    /// cursor gets there. Instances below `recovery_end` without one get a
    /// no-op; new commands go only at or after `recovery_end`.
    recovery: BTreeMap<InstanceId, PromiseEntry>,
    recovery_end: InstanceId,
    /// The next instance to propose at: every instance below it was
    /// proposed (or known chosen) under this ballot.
    next_instance: InstanceId,
    /// Reconfigurations this leader proposed that are not chosen yet.
    reconfigs_in_flight: BTreeMap<InstanceId, Arc<Membership>>,
    /// A change accepted by `propose_change`, waiting for an instance.
    change_queued: Option<Arc<Membership>>,
    /// Per member, the chosen prefix it last reported (heartbeat acks).
    member_chosen_end: BTreeMap<NodeId, InstanceId>,
    /// Members whose last heartbeat ack of this ballot said they are
    /// restoring (a snapshot, or their votes: `Restoring`), and how.
    /// Restoring, they cannot campaign until done: no leadership is handed
    /// to them (`transfer_leadership`, `check_transfer`, `best_successor`)
    /// and no learner among them is promoted. Not voting (a full backlog, a
    /// rebuild), a removal does not count on their vote
    /// (`reachable_voters`); rebuilding, their acks do not count as a live
    /// quorum either (`tick_leader`). A member that went silent keeps its
    /// last report; these rules also need it heard recently.
    member_restoring: BTreeMap<NodeId, crate::message::Restoring>,
    /// A leadership transfer in progress: to whom, since when.
    transfer: Option<(NodeId, u64)>,
    /// Last time the chosen prefix advanced (or leadership began).
    progress_tick: u64,
    in_flight: BTreeMap<InstanceId, InFlight>,
    in_flight_bytes: usize,
    /// Per member, the last tick it answered this leader.
    last_ack_tick: BTreeMap<NodeId, u64>,
    /// Per member, the last tick it accepted a proposal of this leader
    /// (see `Replica::awaits_durability`).
    accepted_tick: BTreeMap<NodeId, u64>,
    heartbeat_sent_tick: u64,
    /// When the window was last re-sent to members that decline it (their
    /// restore backlog is full; see `Replica::tick_leader`).
    declining_resent_tick: u64,
    /// The largest chosen prefix sent to every member (on Accepts or a full
    /// heartbeat round). When the prefix grows past it with nothing left in
    /// flight, `take_ready` announces it with a heartbeat round (at once, or
    /// `Config::announce_delay_ms` later if no Accept carried it meanwhile);
    /// otherwise the next Accepts carry it, or the pipeline draining, or the
    /// next tick (`Replica::announce_chosen`, `Replica::tick_leader`).
    announced_chosen_end: InstanceId,
    /// When (local ms) a drained pipeline's prefix is to be announced, if
    /// it still is not by then (`Replica::announce_chosen`); cleared when a
    /// full round or an Accept carries the prefix.
    announce_due_ms: Option<u64>,
    /// When (local ms) the pipeline last drained with a prefix to announce,
    /// until the next proposal; when a cohort hold expected then would
    /// have ended (`cohort_batch_due`); and whether that proposal came
    /// within `Config::announce_delay_ms` of the drain or by that end. Only
    /// then is the next drain's announcement delayed (until the later of
    /// the two): a leader proposing that often will most likely carry it
    /// on an Accept, while one that proposes now and then (an idle cluster,
    /// a publisher every few ms, clients that come back together but after
    /// longer than the hold) announces at once.
    drained_ms: Option<u64>,
    drain_hold_until: Option<u64>,
    announce_defer: bool,
    /// Cohort batching (`Replica::hold_batch`): when (local ms) the last
    /// command batch was proposed; the most commands outstanding (in flight
    /// or waiting) seen since the load last shrank; until when the waiting
    /// commands are held back, once the leader began to hold.
    last_batch_ms: u64,
    cohort_peak: usize,
    hold_until_ms: Option<u64>,
    /// No holding before this time (local ms): a hold ended on its clock;
    /// the next such pause; whether the last step held commands back.
    hold_off_until_ms: u64,
    hold_backoff_ms: u64,
    holding: bool,
    /// The tick and the time a hold on the clock began at: if the time has
    /// not moved by the second tick after (a runtime that stopped giving
    /// it), that tick ends the hold.
    hold_began: (u64, u64),
    /// Whether the last `flush_proposals` held commands back on the hold's
    /// clock: only then does `wake_at_ms` ask for its end.
    hold_armed: bool,
    /// Members waiting to learn that instances are chosen, told the prefix
    /// in the step it grows even while instances are in flight (see
    /// `Replica::announce_chosen`): a follower that forwarded commands (its
    /// clients wait for their answers), a follower whose read waits for the
    /// index it was given, the target of a leadership transfer.
    chosen_wanted: BTreeMap<NodeId, proposer::ChosenWanted>,
    /// How far each member was last told the prefix by `announce_chosen`,
    /// kept after its `chosen_wanted` entry goes: a follower that forwards
    /// again, its last commands answered, must not be told again the
    /// prefix it already has (a heartbeat, a wake-up there, for nothing;
    /// with clients on every node, about a third of the leader's
    /// heartbeats to its followers were such repeats). One entry per member
    /// that waited on this leader, gone with its leadership.
    chosen_told: BTreeMap<NodeId, InstanceId>,
    /// Read confirmation (see `reads.rs`): the last heartbeat round sent,
    /// when, and per member the highest round it acknowledged.
    probe_sent: u64,
    probe_sent_tick: u64,
    /// The last round sent to every member (a later one went to only some,
    /// see `reads.rs`), and the members in the order their
    /// acknowledgements of it came in: the quickest first, whom partial
    /// rounds go to (`Replica::read_round_targets`).
    full_probe: u64,
    full_probe_order: Vec<NodeId>,
    probe_acked: BTreeMap<NodeId, u64>,
    /// Per member, the highest round it acknowledged with a lease grant at
    /// least as long and as strict as this leader's setting (`lease.rs`).
    lease_acked: BTreeMap<NodeId, u64>,
    /// Reads waiting for a majority to acknowledge a round sent after they
    /// arrived, in arrival (hence round) order.
    unconfirmed: VecDeque<reads::Unconfirmed>,
    /// The read lease this leader holds, if any (see `lease.rs`).
    lease: lease::LeaderLease,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per replica; boxing buys nothing
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

/// One replica of one Paxos group. See the module docs.
#[derive(Debug)]
pub struct Replica {
    cfg: Config,
    rng: ChaCha8Rng,
    /// Ticks since this replica was created.
    now: u64,
    acceptor: AcceptorState,
    learner: LearnerState,
    role: Role,
    /// The leader this replica believes in (itself when leading).
    leader: Option<NodeId>,
    /// When this replica last heard from the leader it believes in.
    leader_contact_tick: u64,
    /// When a follower or candidate starts its next election.
    election_due_tick: u64,
    /// No campaign before this tick (`drop_leadership`, a leader that
    /// stood down for want of progress: see `master.rs`).
    campaign_hold_until_tick: u64,
    /// Until this tick a `TakeOver` naming this replica is refused (a
    /// `drop_leadership` hold; see `Replica::step_down_and_hold`).
    take_over_hold_until_tick: u64,
    /// Highest round seen in any ballot, so a new ballot beats all of them.
    round_seen: u64,
    /// The candidate's ballot this acceptor last answered with a promise
    /// page that has more after it, and where the next page starts
    /// (volatile): a Prepare for exactly that page proves the candidate
    /// heard the last one (see `handle_prepare`).
    promise_paged: Option<(Ballot, InstanceId)>,
    /// Per member, the highest round that member showed it holds a
    /// promise at (see `door.rs`: the ceiling on admitted rounds).
    member_rounds: BTreeMap<NodeId, u64>,
    /// The membership of every instance from `schedule_base`'s membership
    /// on (see `membership.rs`): the bootstrap one, a joining node's, or a
    /// snapshot's, plus every reconfiguration applied since.
    schedule: Schedule,
    /// Reconfigurations chosen below this are already in `schedule` (it
    /// came from a snapshot or a join at this point): applying them again
    /// changes nothing.
    schedule_base: InstanceId,
    /// Membership operations forwarded to the leader: token -> that leader.
    member_ops_asked: BTreeMap<u64, NodeId>,
    /// For the simulator's checkers: every quorum this replica counted.
    #[cfg(feature = "fault-injection")]
    quorum_log: Vec<QuorumUse>,
    /// Messages refused at the door or by a handler, per reason.
    refusals: Refusals,
    /// The chosen prefix and applied end the latest heartbeat of the leader
    /// this replica follows carried: evidence for `may_retire` (a leader
    /// caps the prefix it tells a removed member, see `retire_cap`).
    leader_marks: (InstanceId, InstanceId),
    /// Commands waiting for an instance (leader or candidate).
    pending: VecDeque<Command>,
    /// Cohort batching's counts (`Replica::batch_holds`).
    batch_holds: u64,
    batch_hold_timeouts: u64,
    /// Commands to forward to the leader (follower).
    forward: Vec<Command>,
    /// Records handed out so far.
    persist_next: u64,
    /// Records known durable.
    durable: u64,
    /// Messages waiting for records to be durable: (records needed, message).
    held: VecDeque<(u64, Gate, Message)>,
    /// How many of `held` are `Gate::Lazy`.
    held_lazy: usize,
    /// Messages to this replica itself, handled before the current call returns.
    inbox: VecDeque<Message>,
    /// Linearizable reads in progress (see `reads.rs`).
    reads: reads::ReadState,
    /// Local time, and grants given to leaders (see `lease.rs`).
    lease: lease::LeaseState,
    /// State digests recorded and sent (see `digest.rs`).
    state_digests: digest::StateDigests,
    /// Set while this replica rebuilds lost state and must not vote (see
    /// `rebuild.rs`).
    rebuild: Option<rebuild::Rebuild>,
    ready: Ready,
}

impl Replica {
    /// A replica with empty durable state: a brand new member, or (with
    /// [`Config::rebuild`]) one that lost its state and must not vote yet.
    pub fn new(cfg: Config) -> Result<Replica, ConfigError> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let reads = reads::ReadState::new(rng.gen());
        let rebuild = rebuild::Rebuild::start(&cfg);
        let (schedule_base, schedule) = match &cfg.schedule {
            Some((base, schedule)) => (*base, schedule.clone()),
            None => (
                InstanceId(0),
                Schedule::new(InstanceId(0), Membership::bootstrap(&cfg.members)),
            ),
        };
        let mut replica = Replica {
            cfg,
            rng,
            now: 0,
            acceptor: AcceptorState::default(),
            learner: LearnerState {
                chosen: BTreeMap::new(),
                chosen_end: InstanceId(0),
                applied_end: InstanceId(0),
                checksum: Checksum::default(),
                history: VecDeque::from([AppliedMark {
                    applied_end: InstanceId(0),
                    checksum: Checksum::default(),
                }]),
                commit_seen: InstanceId(0),
                catchup_asked_tick: None,
                progress_mark: InstanceId(0),
                compacted_end: InstanceId(0),
                values_from: InstanceId(0),
                tail_bytes: 0,
                held_bytes: 0,
                tail_hold_until: 0,
                released_demand: None,
                catchup_marks: BTreeMap::new(),
                snapshot: None,
                snapshot_digest: None,
                snapshot_sendable: true,
                snapshot_demand: false,
                hold_applies_on_install: false,
                apply_held: false,
                apply_draining: false,
                incoming: None,
                spool: Box::<crate::MemorySpool>::default(),
                transfer_stats: SnapshotTransferStats::default(),
                stranger_source: None,
                stranger_asked: None,
            },
            role: Role::Follower,
            leader: None,
            leader_contact_tick: 0,
            election_due_tick: 0,
            campaign_hold_until_tick: 0,
            take_over_hold_until_tick: 0,
            round_seen: 0,
            promise_paged: None,
            member_rounds: BTreeMap::new(),
            schedule,
            schedule_base,
            member_ops_asked: BTreeMap::new(),
            #[cfg(feature = "fault-injection")]
            quorum_log: Vec::new(),
            refusals: Refusals::default(),
            leader_marks: (InstanceId(0), InstanceId(0)),
            pending: VecDeque::new(),
            batch_holds: 0,
            batch_hold_timeouts: 0,
            forward: Vec::new(),
            persist_next: 0,
            durable: 0,
            held: VecDeque::new(),
            held_lazy: 0,
            inbox: VecDeque::new(),
            reads,
            lease: lease::LeaseState::default(),
            state_digests: digest::StateDigests::default(),
            rebuild,
            ready: Ready::default(),
        };
        replica.election_due_tick = if replica.alone() {
            // Alone: nobody to wait for.
            1
        } else {
            replica.random_election_timeout()
        };
        Ok(replica)
    }

    /// Handles a message from a peer (or a duplicate, or a stale one: the
    /// network may do anything). A message this replica cannot accept (for
    /// another group or node, from a non-member, out of range, or with a
    /// ballot round too far above what a quorum holds) is refused and
    /// counted in [`Replica::refusals`], never silently dropped.
    pub fn step(&mut self, msg: Message) {
        if let Err(refusal) = self.admit(&msg) {
            self.refusals.count(refusal);
            return;
        }
        self.dispatch(msg);
        self.drain_inbox();
    }

    /// Advances time by one tick: elections, heartbeats, retransmissions, catch-up.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.learner.apply_held && !matches!(self.role, Role::Follower) {
            // A leader or candidate that installed a snapshot while catching
            // up: its schedule lags until the runtime releases the values
            // after it (see `may_campaign`). It leads again once it can.
            self.step_down();
        }
        match self.role {
            Role::Follower => {
                // A rebuilding replica never campaigns: it may not vote, not
                // even for itself (see `rebuild.rs`); nor does a learner or
                // a removed node.
                if self.now >= self.election_due_tick
                    && self.rebuild.is_none()
                    && self.may_campaign()
                {
                    self.start_election();
                }
            }
            Role::Candidate(_) => self.tick_candidate(),
            Role::Leader(_) => {
                self.tick_leader();
                self.tick_membership();
                self.check_transfer();
                self.ask_promises();
            }
        }
        self.tick_rebuild();
        self.tick_catchup();
        self.tick_reads();
        self.tick_state_digest();
        self.drain_inbox();
    }

    /// Submits a command. A leader (or candidate) queues it for the next batch; a
    /// follower forwards it to the leader it knows. The outcome is learned by
    /// applying: the command shows up in a later `Ready::apply`, or never (a
    /// forwarded command can be lost; clients retry with the same id, and the
    /// state machine applies a command id once).
    ///
    /// A command longer than [`Config::command_bytes_max`] is refused with
    /// [`RejectReason::TooLarge`]: no value holding it could be chosen.
    pub fn propose(&mut self, command: Command) -> Result<(), RejectReason> {
        if !self.command_fits(&command) {
            return Err(RejectReason::TooLarge {
                bytes: command.len(),
                max: self.cfg.command_bytes_max(),
            });
        }
        match self.role {
            Role::Leader(_) | Role::Candidate(_) => {
                if self.pending.len() >= self.cfg.pending_commands_max {
                    return Err(RejectReason::Overloaded);
                }
                self.pending.push_back(command);
                Ok(())
            }
            Role::Follower => {
                if self.leader.is_none() {
                    return Err(RejectReason::NoLeader);
                }
                if self.forward.len() >= self.cfg.pending_commands_max {
                    return Err(RejectReason::Overloaded);
                }
                self.forward.push(command);
                Ok(())
            }
        }
    }

    /// Tells the replica that the first `through` records it handed out are
    /// durable. Releases the messages that waited for them.
    pub fn persisted(&mut self, through: PersistSeq) {
        let through = through.0.min(self.persist_next);
        if through <= self.durable {
            return;
        }
        self.durable = through;
        while let Some((needed, _, _)) = self.held.front() {
            if *needed > self.durable {
                break;
            }
            if let Some((_, gate, msg)) = self.held.pop_front() {
                if gate == Gate::Lazy {
                    self.held_lazy -= 1;
                }
                self.route(msg);
            }
        }
        self.check_rebuild_done();
        self.drain_inbox();
    }

    /// The local time (ms, as given to [`Replica::set_time`]) at which this
    /// replica has something to do without any input: the runtime should
    /// then give it a fresh time and call [`Replica::take_ready`]: a drained
    /// pipeline's delayed announcement of the chosen prefix
    /// ([`crate::Config::announce_delay_ms`]), or the end of a cohort hold
    /// ([`crate::Config::batch_hold_ms`]). `None`: nothing before the next
    /// tick or input. Waking late, or not at all, only delays them (the next
    /// tick ends either).
    pub fn wake_at_ms(&self) -> Option<u64> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        let announce = leader
            .announce_due_ms
            .filter(|_| self.learner.chosen_end > leader.announced_chosen_end);
        let hold = leader
            .hold_until_ms
            .filter(|_| leader.hold_armed && !self.pending.is_empty());
        match (announce, hold) {
            (Some(a), Some(h)) => Some(a.min(h)),
            (a, h) => a.or(h),
        }
    }

    /// Takes every effect produced since the last call. Pending commands are
    /// batched into instances here, so commands proposed between two calls share
    /// an instance (adaptive batching: the busier, the bigger the batches).
    pub fn take_ready(&mut self) -> Ready {
        #[cfg(debug_assertions)]
        self.check_held_bytes();
        if self.learner.apply_draining {
            self.emit_apply();
        }
        self.check_rebuild_done();
        self.flush_proposals();
        self.flush_reads();
        self.announce_chosen();
        self.flush_forwards();
        self.drain_inbox();
        self.release_reads();
        std::mem::take(&mut self.ready)
    }

    /// True when messages wait for records to become durable: the caller
    /// should make everything persisted so far durable now. When false, the
    /// records handed out may wait for a later sync (they are chosen marks,
    /// which only spare a restart some catch-up): syncing less often is
    /// always safe, since every message whose safety depends on a record
    /// waits for it, and this says so whenever one does.
    ///
    /// A leader's votes for its own proposals (`Gate::Lazy`) do not ask for
    /// a sync while the other voters that accepted in this tick or the last
    /// are a quorum of every membership in phase 2 ([`Config::lazy_self_sync`]):
    /// they choose without it, and the runtime's next lazy sync (or any other) counts
    /// it later. Safety does not depend on this choice: the vote is counted
    /// only once its record is durable, whenever that is, so an instance is
    /// chosen only by durable votes (a leader that crashes before the sync
    /// lost a vote nobody counted). Only latency does: with a voter too few
    /// answering, the leader syncs at once, as it would without the setting
    /// (a follower that has just fallen silent still counts for a tick or
    /// two, so an instance may wait that long).
    ///
    /// At most `window_instances_max` votes wait: a runtime whose ticks are
    /// late (a loop that always has input ready) still syncs, so neither the
    /// held votes nor the unsynced log grow without bound.
    ///
    /// [`Config::lazy_self_sync`]: crate::Config::lazy_self_sync
    pub fn awaits_durability(&self) -> bool {
        self.held.len() > self.held_lazy
            || self.rebuild_awaits_durability()
            || self.held_lazy >= self.cfg.window_instances_max
            || (self.held_lazy > 0 && !self.others_choose_alone())
    }

    /// Whether, for every membership of an instance in phase 2, the voters
    /// other than this leader that accepted from it in this tick or the
    /// last are a quorum. False unless leading with `lazy_self_sync`.
    fn others_choose_alone(&self) -> bool {
        if !self.cfg.lazy_self_sync {
            return false;
        }
        let Role::Leader(leader) = &self.role else {
            return false;
        };
        let prompt = |v: &NodeId| {
            *v != self.cfg.id
                && leader
                    .accepted_tick
                    .get(v)
                    .is_some_and(|t| self.now.saturating_sub(*t) <= 1)
        };
        let mut checked: Option<&Arc<Membership>> = None;
        for instance in leader.in_flight.keys() {
            let membership = self.membership_at(*instance);
            if checked.is_some_and(|c| Arc::ptr_eq(c, membership)) {
                continue;
            }
            checked = Some(membership);
            // Voters only, so `is_quorum_of`'s count (learners aside) is
            // this one, without collecting them on every kick.
            if membership.voters().filter(prompt).count() < membership.quorum() {
                return false;
            }
        }
        true
    }

    /// This replica's progress.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: match self.role {
                Role::Follower => RoleKind::Follower,
                Role::Candidate(_) => RoleKind::Candidate,
                Role::Leader(_) => RoleKind::Leader,
            },
            leader: self.leader,
            promised: self.acceptor.promised,
            chosen_end: self.learner.chosen_end,
            applied_end: self.learner.applied_end,
            checksum: self.learner.checksum,
        }
    }

    /// The latest snapshot this replica holds (its own or one it installed).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.learner.snapshot.as_ref()
    }

    /// A one-line account of a leader's or candidate's progress, for
    /// debugging liveness reports (the simulator prints it).
    #[doc(hidden)]
    pub fn debug_role(&self) -> String {
        match &self.role {
            Role::Follower => "follower".to_string(),
            Role::Candidate(c) => format!(
                "candidate promised_by {:?} pages_from {:?} compacted {:?} entries {}",
                c.phase1.promised_by,
                c.phase1.pages_from,
                c.phase1.compacted,
                c.entries.len()
            ),
            Role::Leader(l) => format!(
                "leader promised_by {:?} pages_from {:?} next {} recovery_end {} recovery {:?} in_flight {:?} reconfigs {:?} queued {}",
                l.phase1.promised_by,
                l.phase1.pages_from,
                l.next_instance,
                l.recovery_end,
                l.recovery.keys().collect::<Vec<_>>(),
                l.in_flight
                    .iter()
                    .map(|(i, f)| (i, &f.acks))
                    .collect::<Vec<_>>(),
                l.reconfigs_in_flight.keys().collect::<Vec<_>>(),
                l.change_queued.is_some(),
            ),
        }
    }

    /// Counters of the messages this replica refused, per reason.
    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// Counters of the snapshot transfers this replica received.
    pub fn snapshot_transfer_stats(&self) -> SnapshotTransferStats {
        self.learner.transfer_stats
    }

    /// The chosen value of `instance`, if known here and kept in memory
    /// (see [`Replica::release_applied_values`]).
    pub fn chosen_value(&self, instance: InstanceId) -> Option<&Value> {
        self.learner.chosen.get(&instance)
    }

    /// This replica's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn dispatch(&mut self, msg: Message) {
        let from = msg.from;
        match msg.body {
            Body::Prepare {
                ballot,
                first_instance,
            } => self.handle_prepare(from, ballot, first_instance),
            Body::Promise {
                ballot,
                compacted_end,
                first_instance,
                entries,
                more_from,
            } => self.handle_promise(
                from,
                ballot,
                compacted_end,
                first_instance,
                entries,
                more_from,
            ),
            Body::Accept {
                ballot,
                instance,
                value,
                chosen_end,
            } => self.handle_accept(from, ballot, instance, value, chosen_end),
            Body::Accepted { ballot, instance } => self.handle_accepted(from, ballot, instance),
            Body::Reject { ballot, promised } => self.handle_reject(ballot, promised),
            Body::Heartbeat {
                ballot,
                chosen_end,
                applied,
                probe,
            } => self.handle_heartbeat(from, ballot, chosen_end, applied, probe),
            Body::HeartbeatAck {
                ballot,
                chosen_end,
                applied,
                probe,
                granted_ms,
                granted_drift_ppm,
                restoring,
            } => {
                let granted = crate::config::Lease {
                    duration_ms: granted_ms,
                    drift_ppm: granted_drift_ppm,
                };
                self.note_restoring(from, ballot, restoring);
                self.handle_heartbeat_ack(from, ballot, chosen_end, applied, probe, granted)
            }
            Body::ReadIndexRequest { id, vouch } => self.handle_read_index_request(from, id, vouch),
            Body::ReadIndexReply {
                id,
                index,
                chosen_end,
            } => self.handle_read_index_reply(from, id, index, chosen_end),
            Body::Forward { commands } => self.handle_forward(from, commands),
            Body::CatchupRequest { from: first, to } => {
                self.handle_catchup_request(from, first, to)
            }
            Body::CatchupReply { entries } => self.handle_catchup_reply(entries),
            Body::SnapshotChunk {
                meta,
                total_len,
                digest,
                offset,
                data,
                memberships,
            } => self.handle_snapshot_chunk(
                from,
                snapshot::Transfer {
                    source: from,
                    meta,
                    total_len,
                    digest,
                },
                offset,
                data,
                memberships,
            ),
            Body::TakeOver { ballot, to } => self.handle_take_over(from, ballot, to),
            Body::MemberRequest { token, op } => self.handle_member_request(from, token, op),
            Body::MemberReply { token, outcome } => {
                if self
                    .member_ops_asked
                    .remove(&token)
                    .is_some_and(|to| to == from)
                {
                    self.ready.member_outcomes.push((token, outcome));
                }
            }
            Body::SnapshotRequest {
                applied_end,
                offset,
            } => self.handle_snapshot_request(from, applied_end, offset),
            Body::StateDigest { mark } => self.handle_state_digest(from, mark),
            Body::StateQuery => self.handle_state_query(from),
            Body::StateReport {
                rebuilding,
                promised,
                log_end,
            } => self.handle_state_report(from, rebuilding, promised, log_end),
        }
    }

    /// Handles messages this replica sent itself, until there are none.
    fn drain_inbox(&mut self) {
        // Bounded: every self-message is a reply to a self-message of a
        // different kind (Prepare -> Promise, Accept -> Accepted), and replies
        // produce no further self-messages, except a promise page that asks
        // for the next page; each page moves past at least one instance of
        // our own finite log, so the chain ends.
        while let Some(msg) = self.inbox.pop_front() {
            self.dispatch(msg);
        }
    }

    /// Queues a message, held back until durable when `gate` says so.
    fn send(&mut self, to: NodeId, body: Body, gate: Gate) {
        let msg = Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            body,
        };
        if gate != Gate::Now && self.durable < self.persist_next {
            if gate == Gate::Lazy {
                self.held_lazy += 1;
            }
            self.held.push_back((self.persist_next, gate, msg));
        } else {
            self.route(msg);
        }
    }

    /// Sends `body` to every member of every membership in force from the
    /// chosen prefix on (learners included), this replica included.
    fn broadcast(&mut self, body: Body, gate: Gate) {
        for to in self.audience() {
            self.send(to, body.clone(), gate);
        }
    }

    fn route(&mut self, msg: Message) {
        // Bounded by construction (see `Config::message_bytes_max`): values
        // are bounded when proposed, promise pages and catch-up replies by
        // their byte limits. The runtime checked at start-up that this bound
        // fits in its frames.
        debug_assert!(
            crate::codec::encoded_len(&msg) <= self.cfg.message_bytes_max(),
            "a {} message of {} bytes exceeds the bound of {}",
            msg.body.name(),
            crate::codec::encoded_len(&msg),
            self.cfg.message_bytes_max()
        );
        if msg.to == self.cfg.id {
            self.inbox.push_back(msg);
        } else {
            self.ready.messages.push(msg);
        }
    }

    /// Hands a record to the caller to persist.
    fn persist(&mut self, record: Record) {
        debug_assert_eq!(record.group(), self.cfg.group);
        self.ready.persist.push(record);
        self.persist_next += 1;
        self.ready.persist_through = PersistSeq(self.persist_next);
    }

    fn random_election_timeout(&mut self) -> u64 {
        let base = self.cfg.election_ticks;
        self.now + base + self.rng.gen_range(0..base)
    }

    /// Notes a ballot seen anywhere, so that our next ballot is higher.
    fn observe(&mut self, ballot: Ballot) {
        self.round_seen = self.round_seen.max(ballot.round);
    }

    /// Gives up leading or campaigning. Commands that never got an instance are
    /// refused (they were not proposed, so a retry cannot duplicate them).
    fn step_down(&mut self) {
        let reason = match self.role {
            Role::Follower => return,
            Role::Candidate(_) => RejectReason::NoLeader,
            Role::Leader(_) => RejectReason::LostLeadership,
        };
        if let Role::Leader(leader) = &mut self.role {
            // Unconfirmed reads cannot be confirmed any more; confirmed ones
            // (waiting to be applied) stay valid and are served later.
            let unconfirmed = std::mem::take(&mut leader.unconfirmed);
            self.reject_unconfirmed(unconfirmed);
        }
        self.role = Role::Follower;
        if self.leader == Some(self.cfg.id) {
            self.leader = None;
        }
        for command in self.pending.drain(..) {
            self.ready.rejected.push(Rejected { command, reason });
        }
        self.election_due_tick = self.random_election_timeout();
    }

    fn reject(&mut self, command: Command, reason: RejectReason) {
        self.ready.rejected.push(Rejected { command, reason });
    }

    /// The deliberate bugs switched on (none unless built with `fault-injection`).
    fn injected(&self) -> Inject {
        #[cfg(feature = "fault-injection")]
        {
            self.cfg.inject
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            Inject::default()
        }
    }
}
