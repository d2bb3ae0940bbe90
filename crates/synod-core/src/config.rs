//! Configuration of one replica, validated before the replica starts.

use crate::ids::{GroupId, NodeId};
use thiserror::Error;

/// Largest membership the core accepts (acknowledgement sets are bit masks).
pub const MEMBERS_MAX: usize = 64;

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
}

/// Everything a replica needs to know before it starts. Times are in ticks: the
/// caller decides how long a tick is (the runtime uses 10 ms).
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// The group it belongs to.
    pub group: GroupId,
    /// Every voting member, this replica included.
    pub members: Vec<NodeId>,
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
    /// At most this many commands in one instance value.
    pub batch_commands_max: usize,
    /// At most this many payload bytes in one instance value (a larger single
    /// command still goes alone).
    pub batch_bytes_max: usize,
    /// At most this many commands wait for a slot; more are refused.
    pub pending_commands_max: usize,
    /// At most this many entries in one catch-up reply.
    pub catchup_entries_max: usize,
    /// At most this many payload bytes in one catch-up reply.
    pub catchup_bytes_max: usize,
    /// At most this many bytes in one snapshot chunk.
    pub snapshot_chunk_bytes_max: usize,
    /// A snapshot offered by a peer larger than this is refused.
    pub snapshot_bytes_max: u64,
    /// This replica lost its durable state (a wiped or replaced disk) and
    /// starts as a non-voting member that learns and catches up but answers
    /// no Prepare or Accept until voting is safe again (Paxos Made Live,
    /// §5.1; the rule and its safety argument are in `replica/rebuild.rs`).
    /// [`crate::Replica::rebuilding`] says when it votes again. Needs at
    /// least two members: a lone replica has nobody to rebuild from.
    pub rebuild: bool,
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

impl Config {
    /// A configuration with the defaults for `id` in `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Config {
        Config {
            id,
            group: GroupId(0),
            members,
            seed: u64::from(id.0),
            heartbeat_ticks: 3,
            election_ticks: 30,
            retransmit_ticks: 10,
            catchup_ticks: 5,
            window_instances_max: 64,
            window_bytes_max: 16 << 20,
            batch_commands_max: 1024,
            batch_bytes_max: 1 << 20,
            pending_commands_max: 100_000,
            catchup_entries_max: 256,
            catchup_bytes_max: 4 << 20,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 16 << 30,
            rebuild: false,
            #[cfg(feature = "fault-injection")]
            inject: Inject::default(),
        }
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.members.is_empty() || self.members.len() > MEMBERS_MAX {
            return Err(ConfigError::MembershipSize(self.members.len()));
        }
        let mut seen = self.members.clone();
        seen.sort();
        for pair in seen.windows(2) {
            if pair[0] == pair[1] {
                return Err(ConfigError::DuplicateMember(pair[0]));
            }
        }
        if !self.members.contains(&self.id) {
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
            || self.snapshot_chunk_bytes_max == 0
        {
            return Err(ConfigError::Invalid("limits must be at least 1"));
        }
        if self.rebuild && self.members.len() < 2 {
            return Err(ConfigError::Invalid(
                "a one-member group cannot rebuild: no peer holds its state",
            ));
        }
        Ok(())
    }

    /// Votes needed for a decision: a majority of the members.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_bad_memberships() {
        let ok = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.quorum(), 2);
        let dup = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(2)]);
        assert_eq!(dup.validate(), Err(ConfigError::DuplicateMember(NodeId(2))));
        let outsider = Config::new(NodeId(9), vec![NodeId(1)]);
        assert_eq!(outsider.validate(), Err(ConfigError::NotAMember(NodeId(9))));
        let empty = Config::new(NodeId(1), vec![]);
        assert_eq!(empty.validate(), Err(ConfigError::MembershipSize(0)));
    }
}
