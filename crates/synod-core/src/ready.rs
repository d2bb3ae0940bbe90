//! The batch of effects the core hands its caller.

use crate::ids::{InstanceId, NodeId};
use crate::message::Message;
use crate::record::Record;
use crate::value::{Checksum, Command, Snapshot, Value};

/// Position in the stream of records a replica asked its caller to persist:
/// `PersistSeq(n)` names the first `n` records since the replica was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PersistSeq(pub u64);

/// Names a linearizable read submitted with [`crate::Replica::read`]; chosen
/// by the caller, handed back in [`Ready::reads`] or [`Ready::rejected_reads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// One chosen instance to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    /// The instance; `apply` lists are strictly consecutive across calls.
    pub instance: InstanceId,
    /// Its chosen value.
    pub value: Value,
    /// The running checksum after applying this value.
    pub checksum: Checksum,
}

/// Why a command was refused without being proposed. The command was not and
/// will not be proposed by this replica, so a client may safely retry it elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// No leader is known; retry later.
    NoLeader,
    /// This replica stopped leading before the command got an instance.
    LostLeadership,
    /// Too many commands are waiting already.
    Overloaded,
    /// The command is longer than the largest command a value can hold
    /// (`Config::command_bytes_max`). Retrying cannot help.
    TooLarge {
        /// The command's length.
        bytes: usize,
        /// The largest command accepted.
        max: usize,
    },
}

/// A command refused without being proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The command.
    pub command: Command,
    /// Why.
    pub reason: RejectReason,
}

/// What differs between two replicas at the same instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DivergenceKind {
    /// They applied different values: the applied checksums differ.
    Log,
    /// They applied the same values but reached different states: the state
    /// digests their callers recorded differ (see
    /// [`crate::Replica::record_state_digest`]).
    State,
}

/// Two replicas applied different values up to the same instance, or reached
/// different states there: the replicated state has diverged. This must never
/// happen; the caller should alarm and stop serving from this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The peer whose checksum differs.
    pub peer: NodeId,
    /// Both checksums cover instances `0..applied_end`.
    pub applied_end: InstanceId,
    /// This replica's checksum there (its state digest, for `State`).
    pub local: Checksum,
    /// The peer's checksum there (its state digest, for `State`).
    pub remote: Checksum,
    /// Whether the log or only the state differs.
    pub kind: DivergenceKind,
}

/// Everything the caller must do after driving the replica, taken with
/// [`crate::Replica::take_ready`]. The fields can be acted on independently:
///
/// 1. `persist`: append these records to stable storage in order, after every
///    record of earlier `Ready`s. Once they (and all before them) are durable, call
///    [`crate::Replica::persisted`] with `persist_through`. Until then the replica
///    holds back every message whose safety depends on them (promises, accepts,
///    its own votes), so the caller cannot send them too early; they appear in
///    `messages` of a later `Ready`.
/// 2. `install`: a snapshot received from a peer, all of it from that one
///    peer and its bytes verified against the digest the peer sent. Restore
///    the state machine from it *before* applying anything in `apply` (which
///    continues after it), and save it like a snapshot of your own. Commands
///    it covers never appear in `apply` here: answer this node's clients
///    waiting for them from the state it restored (their outcome is in it).
/// 3. `messages`: send now, in any order; the network may lose or reorder them.
/// 4. `apply`: apply to the state machine in this order. Values are chosen, so
///    applying does not wait for `persist`.
/// 5. `rejected`: answer these clients; the commands were not proposed.
/// 6. `diverged`: raise an alarm; stop serving from this replica. (Then, and
///    after acting on `install` and `apply`, report the state machine's
///    digest with [`crate::Replica::record_state_digest`] if it has one.)
/// 7. `reads`: serve these reads from the state machine now, *after* applying
///    `apply` (and every earlier `apply`): that state includes every command
///    that completed anywhere before the read was submitted.
/// 8. `rejected_reads`: these reads were refused; retry them (a read has no
///    effect, so a retry is always safe).
#[derive(Debug, Default)]
pub struct Ready {
    /// Records to append, in order.
    pub persist: Vec<Record>,
    /// Pass this to `persisted` once `persist` (and all earlier records) is durable.
    pub persist_through: PersistSeq,
    /// A snapshot to install before `apply`.
    pub install: Option<Snapshot>,
    /// Messages safe to send now.
    pub messages: Vec<Message>,
    /// Chosen values to apply, in instance order.
    pub apply: Vec<Apply>,
    /// Commands refused without being proposed.
    pub rejected: Vec<Rejected>,
    /// Divergence detected with a peer.
    pub diverged: Vec<Divergence>,
    /// Reads that may be served once `apply` is applied.
    pub reads: Vec<ReadId>,
    /// Reads refused.
    pub rejected_reads: Vec<(ReadId, RejectReason)>,
    /// Outcomes of membership operations submitted with
    /// [`crate::Replica::member_op`]: the token, and the epoch of the
    /// membership a change makes once chosen (0 for a transfer begun) or why
    /// it was refused. An operation forwarded to a leader that never answers
    /// gets no outcome: the caller times out (and may retry).
    pub member_outcomes: Vec<(u64, Result<u64, String>)>,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.install.is_none()
            && self.messages.is_empty()
            && self.apply.is_empty()
            && self.rejected.is_empty()
            && self.diverged.is_empty()
            && self.reads.is_empty()
            && self.rejected_reads.is_empty()
            && self.member_outcomes.is_empty()
    }
}
