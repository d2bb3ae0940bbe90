//! Membership checkers, run after every step of every node.
//!
//! The truth is computed from the agreed log alone (`World::chosen`, whose
//! values every replica must apply alike), independently of any replica:
//! the bootstrap membership governs instance 0; a `Value::Reconfig` chosen
//! at `c` governs instances from `c + α` on, unless its epoch is not above
//! the newest one or another change still waits to take effect (then it is
//! ignored, by every replica alike). This is the rule of
//! `synod-core/src/membership.rs`, written again here so that a replica that
//! strays from it disagrees with the checker.
//!
//! (a) Every replica's schedule gives, for every instance from its start up
//!     to its applied point + α (the instances whose membership its log
//!     fixes), the membership the truth gives.
//! (b) Every quorum a leader counted when it declared an instance chosen
//!     (`Replica::take_quorum_log`) was counted against the instance's true
//!     epoch, holds only members of that membership, and a majority of its
//!     voters among them. So (c) a removed node, a stranger or a learner
//!     never makes the difference.

use crate::membership::describe;
use crate::world::World;
use std::sync::Arc;
use synod_core::{InstanceId, NodeId, QuorumUse, Value, RECONFIG_DELAY_INSTANCES};

impl World {
    /// Folds newly agreed instances into the truth, then checks `node`'s
    /// schedule and the quorums it counted (and those waiting for the truth
    /// to reach them).
    pub(crate) fn check_membership(&mut self, node: usize) {
        self.fold_truth();
        self.check_schedule(node);
        let id = self.nodes[node].id;
        if let Some(replica) = self.nodes[node].replica_mut() {
            let quorums = replica.take_quorum_log();
            for used in quorums {
                if used.voters.contains(&id) {
                    // A leader that counted its own vote relied on its own
                    // Accept record as on a peer's Accepted: it goes into the
                    // amnesia check like one sent on the wire (a self-vote
                    // crosses no wire; lazy self-sync, issue 15, relaxed when
                    // that record is synced, so the check must see it).
                    let sent = self.nodes[node]
                        .sent_accepted
                        .entry(used.instance)
                        .or_insert(used.ballot);
                    *sent = (*sent).max(used.ballot);
                }
                self.members.quorums_pending.push_back((id, used));
            }
        }
        let horizon = self.members.truth_horizon();
        let pending = std::mem::take(&mut self.members.quorums_pending);
        for (leader, used) in pending {
            if used.instance.0 < horizon {
                self.check_quorum(leader, &used);
            } else {
                self.members.quorums_pending.push_back((leader, used));
            }
        }
    }

    /// Extends the truth over the contiguous agreed prefix.
    fn fold_truth(&mut self) {
        while let Some(value) = self.chosen.get(&self.members.truth_end) {
            let instance = self.members.truth_end;
            if let Value::Reconfig(next) = value {
                let (from, latest) = &self.members.truth[self.members.truth.len() - 1];
                let pending = *from > instance;
                if next.epoch > latest.epoch && !pending {
                    let next = Arc::clone(next);
                    self.members
                        .truth
                        .push((instance + RECONFIG_DELAY_INSTANCES, next));
                    self.stats.reconfigs += 1;
                } else {
                    self.stats.reconfigs_ignored += 1;
                }
            }
            self.members.truth_end += 1;
        }
    }

    /// (a): `node`'s schedule agrees with the truth wherever its log fixes
    /// the membership. Both are step functions of the instance: they agree
    /// on a range if they agree at its start and at every step of either.
    fn check_schedule(&mut self, node: usize) {
        let Some(replica) = self.nodes[node].replica() else {
            return;
        };
        let entries = replica.schedule().entries();
        let start = entries[0].from.0;
        // Its applied point, but no further than the agreed prefix (what it
        // applied and the simulator has not taken yet is not in it).
        let applied = replica.status().applied_end.0.min(self.members.truth_end);
        let end = applied + RECONFIG_DELAY_INSTANCES;
        let mut points: Vec<u64> = std::iter::once(start)
            .chain(entries.iter().map(|e| e.from.0))
            .chain(self.members.truth.iter().map(|(from, _)| *from))
            .filter(|p| (start..end).contains(p))
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut found = None;
        for point in points {
            let mine = replica.schedule().at(InstanceId(point));
            let truth = self.members.truth_at(point);
            if mine != truth {
                found = Some(format!(
                    "membership schedule: node {} (applied to #{applied}) has {} at #{point}, the log gives {}",
                    self.nodes[node].id,
                    describe(mine),
                    describe(truth)
                ));
                break;
            }
        }
        if let Some(text) = found {
            self.violation(text);
        }
    }

    /// (b) and (c) for one quorum `leader` counted.
    fn check_quorum(&mut self, leader: NodeId, used: &QuorumUse) {
        self.stats.quorums_checked += 1;
        let truth = self.members.truth_at(used.instance.0).clone();
        let what = format!(
            "quorum: node {leader} declared {} chosen at ballot {:?} counting {:?} (epoch {})",
            used.instance, used.ballot, used.voters, used.epoch
        );
        if used.epoch != truth.epoch {
            self.violation(format!(
                "{what}, but the log's membership of that instance is {}",
                describe(&truth)
            ));
            return;
        }
        if let Some(stranger) = used.voters.iter().find(|v| !truth.contains(**v)) {
            let why = if truth.was_removed(*stranger) {
                "removed"
            } else {
                "not a member"
            };
            self.violation(format!(
                "{what}: node {stranger} is {why} in {}",
                describe(&truth)
            ));
            return;
        }
        let votes = used.voters.iter().filter(|v| truth.is_voter(**v)).count();
        if votes < truth.quorum() {
            self.violation(format!(
                "{what}: only {votes} voters of {}, which needs {} (learners never count)",
                describe(&truth),
                truth.quorum()
            ));
        }
    }
}
