//! Master leases (issue 17, `synod_core::Replica::master_lease`), checked in
//! true simulated time.
//!
//! With leader leases on, after every step of a node that leads, the
//! simulator asks its replica for a master lease, as an application checking
//! before each action would (which also makes a transfer wait for it, as in
//! the runtime). A lease lent at simulated time `now` that ends at
//! `until_ms` on the node's drifting clock means the node believes it is
//! the only master from `now` until the *true* time at which its clock reads
//! `until_ms` (`DriftClock::real_us_when`). The checker: when a node is lent
//! a lease, no other node's belief may reach past `now`. Intervals of one
//! node never conflict (a node that leads again is the same master).
//!
//! The end of an interval is computed when the lease is lent, from the
//! clock's future rate segments (drawn from its own stream, so exact), with
//! no pause in between: under `--inject lease-drift-beyond-bound` a pause
//! stops the clock later and the true end comes later still, so the
//! interval recorded is the shortest the node may believe in. The overlap
//! that control produces shows up anyway: the paused leader wakes with its
//! clock stopped, is lent a fresh lease while another node holds one.

use std::collections::BTreeMap;
use synod_core::{Ballot, NodeId};

/// The latest belief of one node: it is master from `from_us` until
/// `until_us` (true simulated time), at `ballot`.
#[derive(Clone, Copy, Debug)]
struct Belief {
    ballot: Ballot,
    from_us: u64,
    until_us: u64,
}

/// Every node's latest master belief, and how many leases were lent.
#[derive(Debug, Default)]
pub(crate) struct MasterWatch {
    beliefs: BTreeMap<NodeId, Belief>,
    /// Master leases lent (every ask answered `Some`).
    pub(crate) lent: u64,
    /// Distinct (node, ballot) masters seen.
    pub(crate) masters: u64,
}

impl MasterWatch {
    /// Node `id` was lent a lease at `now_us` (true time) for `ballot`,
    /// believed until `until_us` (true time). Returns a violation's text if
    /// another node believes it is master past `now_us`.
    pub(crate) fn lent(
        &mut self,
        id: NodeId,
        ballot: Ballot,
        now_us: u64,
        until_us: u64,
    ) -> Option<String> {
        self.lent += 1;
        let overlap = self
            .beliefs
            .iter()
            .find(|(other, belief)| **other != id && belief.until_us > now_us)
            .map(|(other, belief)| {
                format!(
                    "master lease overlap: {id} (ballot {ballot}) was lent a master lease at {now_us} us \
                     until {until_us} us, while {other} (ballot {}) believes it is master from {} us until {} us",
                    belief.ballot, belief.from_us, belief.until_us
                )
            });
        match self.beliefs.get_mut(&id) {
            Some(belief) if belief.ballot == ballot && belief.until_us >= now_us => {
                belief.until_us = belief.until_us.max(until_us);
            }
            Some(belief) => {
                if belief.ballot != ballot {
                    self.masters += 1;
                }
                let until_us = until_us.max(belief.until_us);
                *belief = Belief {
                    ballot,
                    from_us: now_us,
                    until_us,
                };
            }
            None => {
                self.masters += 1;
                self.beliefs.insert(
                    id,
                    Belief {
                        ballot,
                        from_us: now_us,
                        until_us,
                    },
                );
            }
        }
        overlap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballot(round: u64, node: u32) -> Ballot {
        Ballot {
            round,
            node: NodeId(node),
        }
    }

    #[test]
    fn disjoint_beliefs_pass_and_an_overlap_is_caught() {
        let mut watch = MasterWatch::default();
        assert_eq!(watch.lent(NodeId(1), ballot(1, 1), 0, 100), None);
        assert_eq!(watch.lent(NodeId(1), ballot(1, 1), 50, 150), None);
        // Node 2 at 150: node 1's belief ended (at 150, exclusive).
        assert_eq!(watch.lent(NodeId(2), ballot(2, 2), 150, 300), None);
        let caught = watch.lent(NodeId(1), ballot(3, 1), 299, 400);
        assert!(caught.is_some_and(|text| text.contains("while n2 (ballot 2.2)")));
        assert_eq!(watch.masters, 3);
        assert_eq!(watch.lent, 4);
    }
}
