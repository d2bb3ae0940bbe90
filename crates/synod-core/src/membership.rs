//! Who takes part in a group: voters, learners, and the schedule of
//! memberships in force at each instance.
//!
//! # How a membership change takes effect (Lamport's α rule)
//!
//! A change is a value of its own, [`Value::Reconfig`], carrying the whole new
//! [`Membership`]. When it is chosen at instance `c`, the new membership
//! governs instance `c + α` and every later one, where α is
//! [`RECONFIG_DELAY_INSTANCES`]; instances before `c + α` keep the membership
//! they had. So the membership of instance `i` is a function of the chosen
//! log up to `i − α` alone: every replica computes the same one.
//!
//! Safety: a quorum for instance `i` is always a majority of the voters of
//! `membership(i)`. A leader proposes at `i` only when (1) every instance up to
//! `i − α` is chosen and known to it, so it knows `membership(i)` exactly, and
//! (2) a majority of `membership(i)`'s voters promised its ballot (phase 1 with
//! their reports merged in). Each instance is then plain single-decree Paxos
//! with one fixed set of acceptors, whichever leader runs it: no two
//! memberships ever form quorums for the same instance, because an instance
//! has one membership. Holes, pipelining, out-of-order choice and phase 1 from
//! the first unchosen instance all stay within this rule, since the window of
//! instances in flight never reaches past `chosen_end + α` (the leader refuses
//! to go further) and every membership it needs there is already fixed.
//!
//! The price: a change waits α instances before it takes effect. The leader
//! fills them with no-ops when no commands come (see `proposer.rs`).
//!
//! [`Value::Reconfig`]: crate::Value::Reconfig

use crate::config::MEMBERS_MAX;
use crate::ids::{InstanceId, NodeId};
use bytes::Bytes;
use std::sync::Arc;
use thiserror::Error;

/// α: a membership chosen at instance `c` governs instances from `c + α` on.
/// A protocol constant: every replica of a group must use the same one.
pub const RECONFIG_DELAY_INSTANCES: u64 = 64;

/// Largest address a member may carry (bytes; opaque to the core).
pub const MEMBER_ADDR_BYTES_MAX: usize = 512;

/// Removed ids remembered so that none is ever reused.
pub const REMOVED_IDS_MAX: usize = 4096;

/// What a member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Votes in phase 1 and 2; counts toward quorums.
    Voter,
    /// Receives the log and snapshots; never counts toward a quorum.
    Learner,
    /// A learner the leader promotes to voter by itself once it has caught up.
    Joining,
}

impl MemberRole {
    /// A short name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Joining => "learner(joining)",
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Whether it votes.
    pub role: MemberRole,
    /// Where to reach it: opaque to the core (the runtime stores its
    /// addresses here), at most [`MEMBER_ADDR_BYTES_MAX`] bytes.
    pub addr: Bytes,
}

/// The members of a group at one point of its log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Membership {
    /// Counts changes: each chosen change makes the next epoch.
    pub epoch: u64,
    /// The members, sorted by id.
    pub members: Vec<Member>,
    /// Ids removed from this group, sorted: never admitted again.
    pub removed: Vec<NodeId>,
}

/// A change an operator asks for. See [`Membership::change`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a learner; with `promote`, the leader makes it a voter once it
    /// has caught up.
    Add {
        /// The new node's id (never used in this group before).
        id: NodeId,
        /// Its address, opaque to the core.
        addr: Bytes,
        /// Promote it automatically once caught up.
        promote: bool,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a member (voter or learner) for good.
    Remove {
        /// The member.
        id: NodeId,
    },
}

/// A membership operation, run by the leader: a follower forwards it (see
/// `Replica::member_op`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOp {
    /// Propose a change; `force` skips the reachability and lag checks.
    Change {
        /// The change.
        change: MembershipChange,
        /// Skip the checks that only protect availability.
        force: bool,
    },
    /// Hand leadership to this voter.
    Transfer {
        /// The voter.
        to: NodeId,
    },
}

/// Why a membership or a change of it is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MembershipError {
    /// An id is already a member.
    #[error("node {} is already a member", .0.0)]
    Exists(NodeId),
    /// An id was removed from this group before and cannot come back.
    #[error("node {} was removed from this group; ids are never reused (add it under a new id)", .0.0)]
    Removed(NodeId),
    /// The id is not a member.
    #[error("node {} is not a member", .0.0)]
    Unknown(NodeId),
    /// Promoting a member that already votes.
    #[error("node {} is already a voter", .0.0)]
    AlreadyVoter(NodeId),
    /// Removing the last voter.
    #[error("cannot remove node {}: it is the last voter", .0.0)]
    LastVoter(NodeId),
    /// Too many members, or too many removed ids remembered.
    #[error("membership would exceed {MEMBERS_MAX} members or {REMOVED_IDS_MAX} removed ids")]
    TooMany,
    /// An address longer than [`MEMBER_ADDR_BYTES_MAX`].
    #[error("member address of {0} bytes exceeds {MEMBER_ADDR_BYTES_MAX}")]
    AddrTooLong(usize),
    /// Two entries for one id, or members not sorted.
    #[error("malformed membership: {0}")]
    Malformed(&'static str),
}

impl Membership {
    /// The first membership of a group: these voters, at epoch 0.
    pub fn bootstrap(voters: &[NodeId]) -> Membership {
        let mut members: Vec<Member> = voters
            .iter()
            .map(|id| Member {
                id: *id,
                role: MemberRole::Voter,
                addr: Bytes::new(),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        Membership {
            epoch: 0,
            members,
            removed: Vec::new(),
        }
    }

    /// Checks the invariants every membership keeps.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.members.len() > MEMBERS_MAX || self.removed.len() > REMOVED_IDS_MAX {
            return Err(MembershipError::TooMany);
        }
        if !self.members.windows(2).all(|w| w[0].id < w[1].id) {
            return Err(MembershipError::Malformed("members not sorted and unique"));
        }
        if !self.removed.windows(2).all(|w| w[0] < w[1]) {
            return Err(MembershipError::Malformed(
                "removed ids not sorted and unique",
            ));
        }
        if let Some(m) = self.members.iter().find(|m| self.was_removed(m.id)) {
            return Err(MembershipError::Removed(m.id));
        }
        if let Some(m) = self
            .members
            .iter()
            .find(|m| m.addr.len() > MEMBER_ADDR_BYTES_MAX)
        {
            return Err(MembershipError::AddrTooLong(m.addr.len()));
        }
        if self.voter_count() == 0 {
            return Err(MembershipError::Malformed("no voter"));
        }
        Ok(())
    }

    /// The member with this id.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members
            .binary_search_by_key(&id, |m| m.id)
            .ok()
            .map(|k| &self.members[k])
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.member(id).is_some()
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.member(id).is_some_and(|m| m.role == MemberRole::Voter)
    }

    /// Whether `id` was removed from this group.
    pub fn was_removed(&self, id: NodeId) -> bool {
        self.removed.binary_search(&id).is_ok()
    }

    /// The voters, in id order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Voter)
            .map(|m| m.id)
    }

    /// How many members vote.
    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// Votes needed for a decision: a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    /// Whether the voters among `ids` form a quorum (ids that do not vote
    /// here, learners and strangers, never count).
    pub fn is_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> bool {
        ids.into_iter().filter(|id| self.is_voter(**id)).count() >= self.quorum()
    }

    /// The membership after `change`, at the next epoch; refused when the
    /// change makes no sense here.
    pub fn change(&self, change: &MembershipChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        next.epoch = self.epoch + 1;
        match change {
            MembershipChange::Add { id, addr, promote } => {
                if self.contains(*id) {
                    return Err(MembershipError::Exists(*id));
                }
                if self.was_removed(*id) {
                    return Err(MembershipError::Removed(*id));
                }
                next.members.push(Member {
                    id: *id,
                    role: if *promote {
                        MemberRole::Joining
                    } else {
                        MemberRole::Learner
                    },
                    addr: addr.clone(),
                });
                next.members.sort_by_key(|m| m.id);
            }
            MembershipChange::Promote { id } => {
                let Some(member) = next.members.iter_mut().find(|m| m.id == *id) else {
                    return Err(MembershipError::Unknown(*id));
                };
                if member.role == MemberRole::Voter {
                    return Err(MembershipError::AlreadyVoter(*id));
                }
                member.role = MemberRole::Voter;
            }
            MembershipChange::Remove { id } => {
                let Some(k) = next.members.iter().position(|m| m.id == *id) else {
                    return Err(MembershipError::Unknown(*id));
                };
                if next.members[k].role == MemberRole::Voter && self.voter_count() == 1 {
                    return Err(MembershipError::LastVoter(*id));
                }
                next.members.remove(k);
                next.removed.push(*id);
                next.removed.sort();
            }
        }
        next.validate()?;
        Ok(next)
    }
}

/// The memberships of a group's instances from some point on: entry `k`
/// governs instances from its `from` up to the next entry's `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    entries: Vec<Scheduled>,
}

/// One membership and the first instance it governs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// The first instance this membership governs.
    pub from: InstanceId,
    /// The membership.
    pub membership: Arc<Membership>,
}

impl Schedule {
    /// A schedule with one membership for every instance from `from` on.
    pub fn new(from: InstanceId, membership: Membership) -> Schedule {
        Schedule {
            entries: vec![Scheduled {
                from,
                membership: Arc::new(membership),
            }],
        }
    }

    /// A schedule from its entries (as decoded), checked: at least one entry,
    /// `from` strictly increasing, epochs increasing, each membership valid.
    pub fn from_entries(entries: Vec<Scheduled>) -> Result<Schedule, MembershipError> {
        if entries.is_empty() {
            return Err(MembershipError::Malformed("empty schedule"));
        }
        for pair in entries.windows(2) {
            if pair[0].from >= pair[1].from || pair[0].membership.epoch >= pair[1].membership.epoch
            {
                return Err(MembershipError::Malformed("schedule out of order"));
            }
        }
        for entry in &entries {
            entry.membership.validate()?;
        }
        Ok(Schedule { entries })
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Scheduled] {
        &self.entries
    }

    /// The membership that governs `instance` (the first one for instances
    /// before the schedule begins: callers only ask from its start on).
    pub fn at(&self, instance: InstanceId) -> &Arc<Membership> {
        let k = self.entries.partition_point(|e| e.from <= instance);
        &self.entries[k.saturating_sub(1)].membership
    }

    /// The newest membership (perhaps not in force yet).
    pub fn latest(&self) -> &Arc<Membership> {
        &self.entries[self.entries.len() - 1].membership
    }

    /// Notes that a membership chosen at `chosen_at` governs instances from
    /// `chosen_at + α` on.
    #[cfg(test)]
    pub(crate) fn push(&mut self, chosen_at: InstanceId, membership: Arc<Membership>) {
        let from = InstanceId(chosen_at.0.saturating_add(RECONFIG_DELAY_INSTANCES));
        debug_assert!(
            self.entries.last().is_none_or(|e| e.from < from),
            "reconfigurations applied out of order"
        );
        self.entries.push(Scheduled { from, membership });
    }

    /// The schedule a snapshot at `point` carries: the membership in force at
    /// `point` and those chosen before it that take effect later. Entries
    /// older than that are dropped here too (`prune`).
    pub fn since(&self, point: InstanceId) -> Schedule {
        let first = self.entries.partition_point(|e| e.from <= point);
        let first = first.saturating_sub(1);
        let end = self
            .entries
            .partition_point(|e| e.from.0 < point.0.saturating_add(RECONFIG_DELAY_INSTANCES));
        Schedule {
            entries: self.entries[first..end.max(first + 1)].to_vec(),
        }
    }

    /// Drops entries that govern no instance from `point` on.
    pub(crate) fn prune(&mut self, point: InstanceId) {
        let first = self.entries.partition_point(|e| e.from <= point);
        let first = first.saturating_sub(1);
        self.entries.drain(..first);
    }

    /// Every member of every membership that governs an instance from
    /// `point` on (learners included), in id order, without repeats.
    pub fn members_from(&self, point: InstanceId) -> Vec<NodeId> {
        let first = self
            .entries
            .partition_point(|e| e.from <= point)
            .saturating_sub(1);
        let mut ids: Vec<NodeId> = self.entries[first..]
            .iter()
            .flat_map(|e| e.membership.members.iter().map(|m| m.id))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The memberships that govern some instance from `point` on.
    pub fn memberships_from(&self, point: InstanceId) -> impl Iterator<Item = &Arc<Membership>> {
        let first = self
            .entries
            .partition_point(|e| e.from <= point)
            .saturating_sub(1);
        self.entries[first..].iter().map(|e| &e.membership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn changes_are_checked() {
        let m = Membership::bootstrap(&ids(&[1, 2, 3]));
        assert_eq!(m.quorum(), 2);
        let add = MembershipChange::Add {
            id: NodeId(4),
            addr: Bytes::from_static(b"x"),
            promote: true,
        };
        let m4 = m.change(&add).unwrap();
        assert_eq!(m4.epoch, 1);
        assert_eq!(m4.quorum(), 2, "a joining learner does not vote");
        assert_eq!(m4.change(&add), Err(MembershipError::Exists(NodeId(4))));
        let m4v = m4
            .change(&MembershipChange::Promote { id: NodeId(4) })
            .unwrap();
        assert_eq!(m4v.quorum(), 3);
        assert!(!m4v.is_quorum(&ids(&[1, 2])));
        assert!(m4v.is_quorum(&ids(&[1, 2, 4])));
        let m3 = m4v
            .change(&MembershipChange::Remove { id: NodeId(1) })
            .unwrap();
        assert!(m3.was_removed(NodeId(1)));
        assert_eq!(
            m3.change(&MembershipChange::Add {
                id: NodeId(1),
                addr: Bytes::new(),
                promote: false
            }),
            Err(MembershipError::Removed(NodeId(1)))
        );
        let one = Membership::bootstrap(&ids(&[1]));
        assert_eq!(
            one.change(&MembershipChange::Remove { id: NodeId(1) }),
            Err(MembershipError::LastVoter(NodeId(1)))
        );
        // Strangers and learners never make a quorum.
        assert!(!m4.is_quorum(&ids(&[1, 4, 9])));
    }

    #[test]
    fn the_schedule_answers_per_instance() {
        let m0 = Membership::bootstrap(&ids(&[1, 2, 3]));
        let m1 = m0
            .change(&MembershipChange::Remove { id: NodeId(3) })
            .unwrap();
        let mut s = Schedule::new(InstanceId(0), m0.clone());
        s.push(InstanceId(10), Arc::new(m1.clone()));
        let alpha = RECONFIG_DELAY_INSTANCES;
        assert_eq!(**s.at(InstanceId(10 + alpha - 1)), m0);
        assert_eq!(**s.at(InstanceId(10 + alpha)), m1);
        // A snapshot at 11 keeps both; at 10 + α only the new one.
        assert_eq!(s.since(InstanceId(11)).entries().len(), 2);
        assert_eq!(s.since(InstanceId(10)).entries().len(), 1);
        assert_eq!(s.since(InstanceId(10 + alpha)).entries().len(), 1);
        assert_eq!(**s.since(InstanceId(10 + alpha)).latest(), m1);
        assert_eq!(s.members_from(InstanceId(0)), ids(&[1, 2, 3]));
        assert_eq!(s.members_from(InstanceId(10 + alpha)), ids(&[1, 2]));
        s.prune(InstanceId(10 + alpha));
        assert_eq!(s.entries().len(), 1);
    }
}
