//! Changes to the peer set, computed apart from the sockets they affect.
//!
//! [`crate::Net::set_peers`] replaces the whole set; [`Change::between`] says
//! which ids that adds, removes or moves, so that the transport touches only
//! those. The rules the transport relies on:
//!
//! 1. **Unchanged ids are left alone.** Same id, same address: the peer keeps
//!    its connection and its queue, so a change elsewhere costs it no message.
//! 2. **A moved id is a removal and an addition.** A new address is a new dial
//!    target; the old link (to whatever now answers at the old address, or
//!    from it) must not carry on as if it were the new one.
//! 3. **This node is never a peer.** Its own entry is ignored, whatever its
//!    address: a node does not connect to itself, and its listener is fixed
//!    at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use synod_core::NodeId;

/// How one peer set differs from the next. Each id appears in at most one list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// In the new set only.
    pub added: Vec<(NodeId, SocketAddr)>,
    /// In the old set only.
    pub removed: Vec<NodeId>,
    /// In both, with a new address (the new one here).
    pub readdressed: Vec<(NodeId, SocketAddr)>,
}

impl Change {
    /// What turns `old` into `new` for node `ours`; `ours` is ignored in both.
    pub(crate) fn between(
        ours: NodeId,
        old: &BTreeMap<NodeId, SocketAddr>,
        new: &BTreeMap<NodeId, SocketAddr>,
    ) -> Change {
        let mut change = Change::default();
        for (id, addr) in new.iter().filter(|(id, _)| **id != ours) {
            match old.get(id) {
                None => change.added.push((*id, *addr)),
                Some(was) if was != addr => change.readdressed.push((*id, *addr)),
                Some(_) => {}
            }
        }
        change.removed = old
            .keys()
            .filter(|id| **id != ours && !new.contains_key(id))
            .copied()
            .collect();
        debug_assert!(change
            .removed
            .iter()
            .all(|id| !change.added.iter().any(|(added, _)| added == id)));
        change
    }

    /// Whether the sets are the same (this node aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.readdressed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(u32, u16)]) -> BTreeMap<NodeId, SocketAddr> {
        entries
            .iter()
            .map(|(id, port)| (NodeId(*id), SocketAddr::from(([127, 0, 0, 1], *port))))
            .collect()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn each_id_is_added_removed_readdressed_or_left_alone() {
        let old = set(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let new = set(&[(1, 1), (2, 2), (3, 33), (5, 5)]);
        let change = Change::between(NodeId(1), &old, &new);
        assert_eq!(
            change,
            Change {
                added: vec![(NodeId(5), addr(5))],
                removed: vec![NodeId(4)],
                readdressed: vec![(NodeId(3), addr(33))],
            }
        );
        assert!(!change.is_empty());
    }

    #[test]
    fn our_own_entry_is_ignored() {
        let old = set(&[(1, 1), (2, 2)]);
        // Moved, then gone: neither is a change for node 1.
        assert!(Change::between(NodeId(1), &old, &set(&[(1, 9), (2, 2)])).is_empty());
        assert!(Change::between(NodeId(1), &old, &set(&[(2, 2)])).is_empty());
        // Nor is its appearance.
        assert!(Change::between(NodeId(1), &set(&[(2, 2)]), &old).is_empty());
    }

    #[test]
    fn the_same_set_is_no_change() {
        let old = set(&[(1, 1), (2, 2), (3, 3)]);
        assert_eq!(Change::between(NodeId(2), &old, &old), Change::default());
    }
}
