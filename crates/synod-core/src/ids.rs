//! Newtypes for the identifiers the protocol uses, so that they cannot be mixed.

use std::fmt;

/// A replica's identity within a group's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u32);

/// A Paxos group; every message and record carries one so that a node can host many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId(pub u32);

/// The index of one slot of the replicated log (a Paxos instance).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InstanceId(pub u64);

impl InstanceId {
    /// The instance after this one.
    pub fn next(self) -> InstanceId {
        InstanceId(self.0 + 1)
    }
}

/// A ballot: totally ordered by round first, then by the node that owns it.
///
/// Safety: a ballot is used by at most one proposer (its `node`) and, because a
/// proposer persists its own promise for a ballot before any message carrying it
/// leaves (see `Replica::start_election`), by at most one incarnation of that node.
/// Within one ballot a proposer proposes at most one value per instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// Election round; higher rounds win.
    pub round: u64,
    /// The proposer that owns this ballot; breaks ties between equal rounds.
    pub node: NodeId,
}

impl Ballot {
    /// The ballot every acceptor starts with; lower than every ballot a proposer uses.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        let a = Ballot {
            round: 1,
            node: NodeId(3),
        };
        let b = Ballot {
            round: 2,
            node: NodeId(1),
        };
        let c = Ballot {
            round: 2,
            node: NodeId(2),
        };
        assert!(Ballot::ZERO < a && a < b && b < c);
    }
}
