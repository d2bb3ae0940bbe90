//! The forge nemesis (issue 13): a message with a huge ballot round, as a
//! buggy or malicious peer would send, delivered straight to one node under
//! the name of one rogue member (the same for the whole run). One member
//! only: peer links are authenticated, so a message claiming to come from a
//! member does; a quorum of rogue members is outside what Paxos tolerates. The node must refuse it (and count it): its
//! promise must not jump, and the liveness phase then checks that the
//! cluster keeps choosing. Before, one such Accept at round 2^62 - 1 ended
//! every later election.

use crate::world::World;
use rand::Rng;
use synod_core::{Ballot, Body, GroupId, InstanceId, Message, NodeId, Value, ROUND_JUMP_MAX};

impl World {
    pub(crate) fn forge_huge_ballot(&mut self) {
        // The initial nodes: spares appended by the membership nemesis
        // must not change who the rogue member is.
        let n = self.initial_nodes;
        let from = (self.seed % n as u64) as usize;
        let to = (from + self.forge_rng.gen_range(1..n.max(2))) % n;
        if from == to || self.nodes[to].paused {
            return;
        }
        let highest = self
            .nodes
            .iter()
            .filter_map(|node| node.replica())
            .map(|replica| replica.status().promised.round)
            .max()
            .unwrap_or(0);
        let Some(replica) = self.nodes[to].replica_mut() else {
            return;
        };
        let before = replica.status().promised.round;
        // Above anything a majority may hold, up to the largest round the
        // codec carries (the old attack used 2^62 - 1).
        let low = highest.saturating_add(ROUND_JUMP_MAX).saturating_add(1);
        let round = match self.forge_rng.gen_range(0..3) {
            0 => (1 << 62) - 1,
            1 => u64::MAX,
            _ => self.forge_rng.gen_range(low.min(u64::MAX - 1)..u64::MAX),
        };
        let round = round.max(low);
        let ballot = Ballot {
            round,
            node: NodeId(from as u32 + 1),
        };
        let chosen_end = replica.status().chosen_end;
        let body = match self.forge_rng.gen_range(0..4) {
            0 => Body::Prepare {
                ballot,
                first_instance: chosen_end,
            },
            1 => Body::Heartbeat {
                ballot,
                chosen_end,
                applied: synod_core::AppliedMark {
                    applied_end: InstanceId(0),
                    checksum: Default::default(),
                },
                probe: 0,
            },
            2 => Body::Reject {
                ballot: replica.status().promised,
                promised: ballot,
            },
            _ => Body::Accept {
                ballot,
                instance: chosen_end,
                value: Value::Noop,
                chosen_end: InstanceId(0),
            },
        };
        let name = body.name();
        replica.step(Message {
            group: GroupId(0),
            from: NodeId(from as u32 + 1),
            to: NodeId(to as u32 + 1),
            body,
        });
        let after = replica.status().promised.round;
        self.pump(to);
        self.stats.nemesis.push("forged-huge-ballot");
        if after > before.max(highest).saturating_add(ROUND_JUMP_MAX) {
            self.violation(format!(
                "ballots: n{} adopted a forged {name} at round {round} (promise {before} -> {after})",
                to + 1
            ));
        }
    }
}
