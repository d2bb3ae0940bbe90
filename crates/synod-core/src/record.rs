//! Records the core asks the caller to persist, and recovery from them.

use crate::ids::{Ballot, GroupId, InstanceId};
use crate::value::Value;

/// One durable record. The caller appends records in the order given and tells the
/// core (with [`crate::Replica::persisted`]) once they are durable; durability is
/// a prefix: when record *n* is durable, so is every record before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The acceptor promised `ballot` for every instance not yet chosen.
    Promise {
        /// The group.
        group: GroupId,
        /// The promised ballot.
        ballot: Ballot,
    },
    /// The acceptor accepted `value` at `instance` with `ballot` (which also
    /// implies a promise of `ballot`).
    Accept {
        /// The group.
        group: GroupId,
        /// The instance.
        instance: InstanceId,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Value,
    },
    /// `instance` is chosen.
    Chosen {
        /// The group.
        group: GroupId,
        /// The instance.
        instance: InstanceId,
        /// Where the chosen value is.
        value: ChosenValue,
    },
}

/// Where a [`Record::Chosen`] finds its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChosenValue {
    /// The value this replica accepted at the instance with this ballot, in an
    /// earlier [`Record::Accept`] (durability is a prefix, so that record survives
    /// whenever this one does).
    Accepted(Ballot),
    /// A value learned from a peer, carried here in full.
    Learned(Value),
}

impl Record {
    /// The group this record belongs to.
    pub fn group(&self) -> GroupId {
        match self {
            Record::Promise { group, .. }
            | Record::Accept { group, .. }
            | Record::Chosen { group, .. } => *group,
        }
    }
}
