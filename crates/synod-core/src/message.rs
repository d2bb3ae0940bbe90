//! Messages exchanged between replicas of one group.

use crate::ids::{Ballot, GroupId, InstanceId, NodeId};
use crate::value::{Checksum, Command, SnapshotDigest, SnapshotMeta, Value};
use bytes::Bytes;

/// A message between two replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The group this message belongs to; a replica ignores other groups' messages.
    pub group: GroupId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// What the message says.
    pub body: Body,
}

/// Whether a follower is restoring state, as its heartbeat
/// acknowledgements say: its state machine from a peer's snapshot, or its
/// lost votes (a rebuild). Restoring, it can neither campaign nor apply: a
/// leader does not hand leadership to it or promote it meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restoring {
    /// Not restoring.
    #[default]
    No,
    /// Restoring a snapshot; it still votes.
    Yes,
    /// Restoring a snapshot with the values it holds at their bound
    /// (`Config::restore_backlog_bytes_max`): it declines every Accept until
    /// done, so a removal must not count on its vote.
    Declining,
    /// Rebuilding what a wiped disk lost (`Config::rebuild`): it answers no
    /// Prepare and no Accept until the rebuild ends, which waits for every
    /// other member, so a removal must not count on its vote and its
    /// acknowledgements do not keep a leader in office (`tick_leader`).
    Rebuilding,
}

impl Restoring {
    /// Whether it votes (answers Accepts) meanwhile.
    pub fn votes(self) -> bool {
        matches!(self, Restoring::No | Restoring::Yes)
    }

    /// Why a leader does not hand leadership to it or promote it.
    pub fn reason(self) -> &'static str {
        match self {
            Restoring::Rebuilding => "it is rebuilding lost state",
            _ => "it is restoring a snapshot",
        }
    }
}

/// One accepted (or known chosen) instance reported in a [`Body::Promise`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromiseEntry {
    /// The instance.
    pub instance: InstanceId,
    /// The ballot at which the acceptor accepted `value`.
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Value,
    /// The acceptor knows this value is chosen.
    pub chosen: bool,
}

/// A replica's applied point and the checksum there, compared to detect divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedMark {
    /// Every instance below this one has been applied.
    pub applied_end: InstanceId,
    /// Checksum of the values of instances `0..applied_end`.
    pub checksum: Checksum,
}

/// A replica's state digest after applying every instance below `applied_end`
/// (see `replica/digest.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateMark {
    /// The digest covers the state after instances `0..applied_end`.
    pub applied_end: InstanceId,
    /// The state machine's digest of its state there.
    pub digest: u64,
}

/// The content of a message. Names follow Paxos: phase 1 is Prepare/Promise,
/// phase 2 is Accept/Accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Phase 1a: "promise me `ballot` (for every instance), and report what you
    /// accepted from `first_instance` on". The candidate first sends its first
    /// unchosen instance; when a promise comes in pages, it asks for each next
    /// page with the same ballot and `first_instance` set to where the
    /// previous page ended (`Promise::more_from`).
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// Report entries from this instance on.
        first_instance: InstanceId,
    },
    /// Phase 1b: the promise, with one page of what the acceptor accepted (or
    /// knows chosen) from the prepare's `first_instance` on. A page holds at
    /// most `Config::promise_bytes_max` bytes of entries (or one entry), so
    /// every promise fits in one peer frame however long the log is.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// The acceptor dropped every instance below this for a snapshot (they
        /// are all chosen); entries start at the larger of this and
        /// `first_instance`.
        compacted_end: InstanceId,
        /// The prepare's `first_instance` this page answers, so the candidate
        /// can tell a page it asked for from a stale or duplicated one.
        first_instance: InstanceId,
        /// Accepted (or known chosen) instances in `first_instance..more_from`
        /// (to the end of the log when `more_from` is `None`), in instance order.
        entries: Vec<PromiseEntry>,
        /// `None`: this page is the last, the report is complete. `Some(i)`:
        /// the acceptor has more entries from `i` on (`i` is above
        /// `first_instance`); ask for them with a prepare from `i`.
        more_from: Option<InstanceId>,
    },
    /// Phase 2a: "accept `value` at `instance` with `ballot`". Carries the leader's
    /// chosen prefix so that followers learn what is chosen.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The instance.
        instance: InstanceId,
        /// The proposed value.
        value: Value,
        /// Every instance below this is chosen at the leader.
        chosen_end: InstanceId,
    },
    /// Phase 2b: the acceptor durably accepted the leader's value at `instance`.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The instance.
        instance: InstanceId,
    },
    /// A Prepare, Accept or Heartbeat was refused because the acceptor promised
    /// `promised` (or still follows a live leader).
    Reject {
        /// The ballot that was refused.
        ballot: Ballot,
        /// The acceptor's promise.
        promised: Ballot,
    },
    /// The leader is alive; what is chosen; its applied checksum.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every instance below this is chosen at the leader.
        chosen_end: InstanceId,
        /// The leader's applied point and checksum.
        applied: AppliedMark,
        /// Numbers the leader's heartbeat rounds: an acknowledgement of probe
        /// `p` from a majority confirms the reads that arrived before round
        /// `p` was sent (see `replica/reads.rs`).
        probe: u64,
    },
    /// Answer to a heartbeat: the follower's progress and checksum.
    HeartbeatAck {
        /// The heartbeat's ballot.
        ballot: Ballot,
        /// Every instance below this is chosen at the follower.
        chosen_end: InstanceId,
        /// The follower's applied point and checksum.
        applied: AppliedMark,
        /// The heartbeat's probe number.
        probe: u64,
        /// The read lease this acknowledgement grants the leader (see
        /// `replica/lease.rs`, rule 1): the acceptor's `L` in ms and its
        /// drift bound `ρ` in ppm; `granted_ms` 0 when it grants none (no
        /// lease configured here, or a grant to another leader holds). The
        /// leader counts it toward its lease only when it is at least as
        /// long and as strict as its own setting, so nodes with different
        /// settings (a rolling change of `--read-lease`) never let a leader
        /// count on a grant that was not given.
        granted_ms: u64,
        /// The acceptor's drift bound `ρ` (ppm) for `granted_ms`.
        granted_drift_ppm: u32,
        /// Whether the follower is restoring its state machine from a
        /// snapshot (see [`Restoring`]).
        restoring: Restoring,
    },
    /// A follower asks the leader for a read index for the linearizable
    /// reads its clients submitted.
    ReadIndexRequest {
        /// Chosen by the follower to match the reply.
        id: u64,
        /// The follower's promise when it sent the request, if it may stand
        /// as an acknowledgement of the leader of that ballot (see
        /// `replica/reads.rs`, "A follower's request vouches"): `None` from a
        /// rebuilding replica, one whose promise is another node's ballot, or
        /// one whose lease grant is another leader's.
        vouch: Option<Ballot>,
    },
    /// The leader confirmed it still led after the request arrived: once the
    /// follower has applied every instance below `index`, it may serve the
    /// reads of request `id`.
    ReadIndexReply {
        /// The request answered.
        id: u64,
        /// Where the reads may be served from: the leader's log end when
        /// the request arrived, or later.
        index: InstanceId,
        /// The leader's chosen prefix when it answered: a follower that
        /// missed an announcement learns from it what its read waits for
        /// (catch-up fetches it), whether or not the confirming round
        /// reached it (see `Replica::read_round_targets`).
        chosen_end: InstanceId,
    },
    /// Client commands sent by a follower to the leader it knows.
    Forward {
        /// The commands, in the order they were proposed.
        commands: Vec<Command>,
    },
    /// "Send me the chosen values of instances `from..to`."
    CatchupRequest {
        /// First instance wanted.
        from: InstanceId,
        /// One past the last instance wanted.
        to: InstanceId,
    },
    /// Chosen values, contiguous from the request's `from`, possibly fewer than asked.
    CatchupReply {
        /// `(instance, chosen value)` pairs in instance order.
        entries: Vec<(InstanceId, Value)>,
    },
    /// The requested instances were compacted away: a piece of the snapshot
    /// that replaces them. Sent in answer to a catch-up or snapshot request.
    /// One transfer is one snapshot from one source: the receiver takes
    /// pieces only from the sender of the first piece, with the same `meta`,
    /// `total_len` and `digest`, and installs the bytes only if their digest
    /// matches (see `replica/snapshot.rs`).
    SnapshotChunk {
        /// The snapshot this piece belongs to.
        meta: SnapshotMeta,
        /// Length of the whole snapshot.
        total_len: u64,
        /// Hash of the whole snapshot's bytes (all `total_len` of them).
        digest: SnapshotDigest,
        /// Where this piece starts.
        offset: u64,
        /// The snapshot's memberships (`Snapshot::memberships`), carried by
        /// the piece at offset 0 only.
        memberships: Option<crate::membership::Schedule>,
        /// The piece (at most `Config::snapshot_chunk_bytes_max`).
        data: Bytes,
    },
    /// "Send me the piece of the snapshot at `applied_end` from `offset` on."
    SnapshotRequest {
        /// The snapshot being transferred.
        applied_end: InstanceId,
        /// The first byte wanted.
        offset: u64,
    },
    /// The sender's newest state digest, for the receiver to compare with
    /// its own at the same point.
    StateDigest {
        /// Where, and the digest there.
        mark: StateMark,
    },
    /// The leader of `ballot` hands leadership to `to` (see
    /// `Replica::transfer_leadership`): `to` campaigns at once, the others
    /// stop holding on to the old leader so that they promise to `to`.
    TakeOver {
        /// The sender's (leader's) ballot.
        ballot: Ballot,
        /// The member that takes over.
        to: NodeId,
    },
    /// A follower forwards a membership operation its caller asked for to
    /// the leader it knows (see `Replica::member_op`).
    MemberRequest {
        /// Chosen by the follower's caller to match the reply.
        token: u64,
        /// The operation.
        op: crate::membership::MemberOp,
    },
    /// The leader's answer to a [`Body::MemberRequest`]: the epoch of the
    /// membership the change makes once chosen (0 for a transfer begun),
    /// or why it was refused.
    MemberReply {
        /// The request's token.
        token: u64,
        /// The outcome.
        outcome: Result<u64, String>,
    },
    /// A rebuilding replica (see [`crate::Config::rebuild`]) asks a peer
    /// for the bounds of its acceptor state.
    StateQuery,
    /// The answer to a [`Body::StateQuery`]: everything the acceptor promised
    /// and every instance it knows of lie below these bounds, unless it is
    /// rebuilding itself (then it vouches for nothing and the bounds are 0).
    StateReport {
        /// The reporter is itself rebuilding lost state.
        rebuilding: bool,
        /// The highest ballot this replica promised.
        promised: Ballot,
        /// One past the highest instance it accepted or knows chosen.
        log_end: InstanceId,
    },
}

impl Body {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Prepare { .. } => "prepare",
            Body::Promise { .. } => "promise",
            Body::Accept { .. } => "accept",
            Body::Accepted { .. } => "accepted",
            Body::Reject { .. } => "reject",
            Body::Heartbeat { .. } => "heartbeat",
            Body::HeartbeatAck { .. } => "heartbeat_ack",
            Body::Forward { .. } => "forward",
            Body::CatchupRequest { .. } => "catchup_request",
            Body::CatchupReply { .. } => "catchup_reply",
            Body::SnapshotChunk { .. } => "snapshot_chunk",
            Body::SnapshotRequest { .. } => "snapshot_request",
            Body::StateDigest { .. } => "state_digest",
            Body::ReadIndexRequest { .. } => "read_index_request",
            Body::ReadIndexReply { .. } => "read_index_reply",
            Body::TakeOver { .. } => "take_over",
            Body::MemberRequest { .. } => "member_request",
            Body::MemberReply { .. } => "member_reply",
            Body::StateQuery => "state_query",
            Body::StateReport { .. } => "state_report",
        }
    }
}
