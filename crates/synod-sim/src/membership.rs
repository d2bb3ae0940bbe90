//! The membership nemesis: an operator who adds, promotes, removes and
//! replaces nodes and moves leadership, during the safety phase, through
//! `Replica::member_op` at the leader or at a follower (which forwards it).
//! Spare nodes (ids above the initial ones) are appended to the world when
//! first added and start, with an empty disk and the schedule a live member
//! hands them (`Config::schedule`), once a live member's membership holds
//! them. What the changes must preserve is checked in
//! `membership_checks.rs`.
//!
//! Availability rules the operator keeps, so that the progress checks after
//! the heal stay meaningful: never fewer than 3 voters (never remove a
//! voter from 3), and every member of the newest membership is started.

use crate::world::{Event, Phase, World};
use bytes::Bytes;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use synod_core::{
    InstanceId, MemberOp, MemberRole, Membership, MembershipChange, NodeId, QuorumUse, Schedule,
    RECONFIG_DELAY_INSTANCES,
};

/// At most this many spare nodes are appended to a run (ids
/// `initial + 1 ..= initial + SPARES_MAX`).
const SPARES_MAX: usize = 4;

/// Voters are never removed below this many.
const VOTERS_MIN: usize = 3;

/// An operator notices a new member and starts it after this long.
const SPARE_START_DELAY_US: u64 = 20_000;

/// A multi-step change (replace, grow, shrink) is abandoned after this long.
const PLAN_US_MAX: u64 = 8_000_000;

/// A multi-step change in progress: each membership tick asks for its next
/// step until the newest membership shows it done.
#[derive(Clone, Debug)]
enum Plan {
    /// Add a fresh node, wait until it votes, then remove `old`.
    Replace {
        old: NodeId,
        new: Option<NodeId>,
        until_us: u64,
    },
    /// Add (auto-promoted) nodes until there are `target` voters.
    Grow { target: usize, until_us: u64 },
    /// Remove voters until there are `target`.
    Shrink { target: usize, until_us: u64 },
}

/// The membership nemesis's state, and the truth the membership checkers
/// compare replicas with (see `membership_checks.rs`).
pub(crate) struct MemberState {
    /// The schedule the agreed log implies: `(first instance governed,
    /// membership)`, computed from `World::chosen` by the α rule.
    pub(crate) truth: Vec<(u64, Arc<Membership>)>,
    /// Instances below this are folded into `truth`.
    pub(crate) truth_end: u64,
    /// Quorums counted at instances whose membership the log does not fix
    /// yet (no one has applied up to `instance - α`): checked later.
    pub(crate) quorums_pending: VecDeque<(NodeId, QuorumUse)>,
    plan: Option<Plan>,
    next_token: u64,
}

impl MemberState {
    pub(crate) fn new(initial: &[NodeId]) -> MemberState {
        MemberState {
            truth: vec![(0, Arc::new(Membership::bootstrap(initial)))],
            truth_end: 0,
            quorums_pending: VecDeque::new(),
            plan: None,
            next_token: 0,
        }
    }

    /// The membership of `instance` by the log (only meaningful below
    /// `truth_end + α`).
    pub(crate) fn truth_at(&self, instance: u64) -> &Arc<Membership> {
        let k = self.truth.partition_point(|(from, _)| *from <= instance);
        &self.truth[k.saturating_sub(1)].1
    }

    /// The newest membership the log holds (perhaps not in force yet).
    pub(crate) fn truth_latest(&self) -> &Arc<Membership> {
        &self.truth[self.truth.len() - 1].1
    }

    /// The first instance whose membership the log does not fix yet.
    pub(crate) fn truth_horizon(&self) -> u64 {
        self.truth_end + RECONFIG_DELAY_INSTANCES
    }

    /// For failure reports.
    pub(crate) fn describe(&self) -> String {
        let (from, latest) = &self.truth[self.truth.len() - 1];
        format!(
            "membership by the log: {} from #{from} (log folded to #{})",
            describe(latest),
            self.truth_end
        )
    }
}

/// `epoch 3 [1:voter 2:voter 4:learner]`.
pub(crate) fn describe(m: &Membership) -> String {
    let members: Vec<String> = m
        .members
        .iter()
        .map(|m| format!("{}:{}", m.id.0, m.role.name()))
        .collect();
    format!("epoch {} [{}]", m.epoch, members.join(" "))
}

impl World {
    pub(crate) fn member_nemesis_delay(&mut self) -> u64 {
        let p = &self.params.members;
        self.now_us + p.every_us_min + self.member_rng.gen_range(0..=p.every_us_jitter)
    }

    /// One membership action (or the next step of a plan), then the next
    /// one is scheduled. After the safety phase only removed nodes are
    /// stopped: the membership the cluster has then must make progress.
    pub(crate) fn member_nemesis(&mut self) {
        self.retire_removed();
        if self.phase == Phase::Safety {
            match self.members.plan.take() {
                Some(plan) => self.advance_plan(plan),
                None => self.member_action(),
            }
        }
        let next = self.member_nemesis_delay();
        self.schedule(next, Event::MemberNemesis);
    }

    fn member_action(&mut self) {
        let w = self.params.members.weights.clone();
        let choices = [
            (w.add_learner, 0),
            (w.promote, 1),
            (w.remove_follower, 2),
            (w.remove_leader, 3),
            (w.replace, 4),
            (w.grow, 5),
            (w.shrink, 6),
            (w.concurrent, 7),
            (w.partitioned, 8),
            (w.transfer, 9),
        ];
        let total = w.total();
        if total == 0 {
            return;
        }
        let mut pick = self.member_rng.gen_range(0..total);
        let mut action = 0;
        for (weight, a) in choices {
            if pick < weight {
                action = a;
                break;
            }
            pick -= weight;
        }
        let now = self.now_us;
        match action {
            0 => {
                let promote = self.member_rng.gen_bool(0.5);
                if let Some(op) = self.add_op(promote) {
                    self.ask_somewhere(op, "member-add");
                }
            }
            1 => {
                if let Some(op) = self.promote_op() {
                    self.ask_somewhere(op, "member-promote");
                }
            }
            2 => {
                if let Some(op) = self.remove_op(false) {
                    self.ask_somewhere(op, "member-remove");
                }
            }
            3 => {
                if let Some(op) = self.remove_op(true) {
                    self.ask_somewhere(op, "member-remove-leader");
                }
            }
            4 => {
                let voters: Vec<NodeId> = self.latest().voters().collect();
                let old = voters[self.member_rng.gen_range(0..voters.len())];
                self.members.plan = Some(Plan::Replace {
                    old,
                    new: None,
                    until_us: now + PLAN_US_MAX,
                });
                self.stats.nemesis.push("member-replace");
            }
            5 => {
                let target = (self.latest().voter_count() + 2).clamp(5, 7);
                self.members.plan = Some(Plan::Grow {
                    target,
                    until_us: now + PLAN_US_MAX,
                });
                self.stats.nemesis.push("member-grow");
            }
            6 => {
                self.members.plan = Some(Plan::Shrink {
                    target: VOTERS_MIN,
                    until_us: now + PLAN_US_MAX,
                });
                self.stats.nemesis.push("member-shrink");
            }
            7 => {
                // Two different changes at two different nodes at once: at
                // most one can be chosen and take effect (one at a time; a
                // change proposed from a stale membership is ignored).
                let live = self.live_nodes();
                if live.len() >= 2 {
                    let a = live[self.member_rng.gen_range(0..live.len())];
                    let mut b = live[self.member_rng.gen_range(0..live.len())];
                    if a == b {
                        b = live[(live.iter().position(|k| *k == a).unwrap_or(0) + 1) % live.len()];
                    }
                    for node in [a, b] {
                        if let Some(op) = self.any_simple_op() {
                            self.ask(node, op);
                        }
                    }
                    self.stats.nemesis.push("member-concurrent");
                }
            }
            8 => {
                // Cut a node off (the leader half the time), then ask for a
                // change: at the cut-off node or anywhere.
                let victim = match self.leader() {
                    Some(leader) if self.member_rng.gen_bool(0.5) => leader,
                    _ => self.member_rng.gen_range(0..self.nodes.len()),
                };
                let links = (0..self.nodes.len())
                    .filter(|other| *other != victim)
                    .flat_map(|other| [(victim, other), (other, victim)])
                    .collect();
                self.partition(links);
                if let Some(op) = self.any_simple_op() {
                    if self.member_rng.gen_bool(0.5) && self.nodes[victim].replica().is_some() {
                        self.ask(victim, op);
                    } else {
                        self.ask_somewhere(op, "");
                    }
                }
                self.stats.nemesis.push("member-partitioned");
            }
            _ => {
                if let Some(op) = self.transfer_op() {
                    self.ask_somewhere(op, "member-transfer");
                }
            }
        }
    }

    /// The next step of a multi-step change; the plan stays until done or
    /// out of time.
    fn advance_plan(&mut self, plan: Plan) {
        let latest = self.latest();
        let voters = latest.voter_count();
        let now = self.now_us;
        let plan = match plan {
            Plan::Replace { until_us, .. }
            | Plan::Grow { until_us, .. }
            | Plan::Shrink { until_us, .. }
                if now > until_us =>
            {
                return;
            }
            Plan::Replace { old, new, until_us } => match new {
                None => match self.spare_slot() {
                    Some(id) => {
                        self.ask_somewhere(add(id, true), "");
                        Plan::Replace {
                            old,
                            new: Some(id),
                            until_us,
                        }
                    }
                    None => return,
                },
                Some(id) if latest.was_removed(id) => return,
                Some(id) if !latest.contains(id) => {
                    self.ask_somewhere(add(id, true), "");
                    Plan::Replace { old, new, until_us }
                }
                Some(id)
                    if latest
                        .member(id)
                        .is_some_and(|m| m.role == MemberRole::Learner) =>
                {
                    self.ask_somewhere(promote(id, false), "");
                    Plan::Replace { old, new, until_us }
                }
                // Joining: the leader promotes it once caught up.
                Some(id) if !latest.is_voter(id) => Plan::Replace { old, new, until_us },
                Some(_) if latest.contains(old) && voters > VOTERS_MIN => {
                    self.ask_somewhere(remove(old, false), "");
                    Plan::Replace { old, new, until_us }
                }
                Some(_) => return,
            },
            Plan::Grow { target, until_us } => {
                if voters >= target {
                    return;
                }
                let learner = latest
                    .members
                    .iter()
                    .find(|m| m.role != MemberRole::Voter)
                    .map(|m| (m.id, m.role));
                match learner {
                    Some((id, MemberRole::Learner)) => {
                        self.ask_somewhere(promote(id, false), "");
                    }
                    Some(_) => {}
                    None => match self.spare_slot() {
                        Some(id) => self.ask_somewhere(add(id, true), ""),
                        None => return,
                    },
                }
                Plan::Grow { target, until_us }
            }
            Plan::Shrink { target, until_us } => {
                if voters <= target.max(VOTERS_MIN) {
                    return;
                }
                let leader = self.member_rng.gen_bool(0.25);
                if let Some(op) = self.remove_op(leader) {
                    self.ask_somewhere(op, "");
                }
                Plan::Shrink { target, until_us }
            }
        };
        self.members.plan = Some(plan);
    }

    /// The newest membership as the operator sees it: the leader's, else
    /// the log's.
    fn latest(&self) -> Arc<Membership> {
        match self.leader().and_then(|k| self.nodes[k].replica()) {
            Some(replica) => replica.schedule().latest().clone(),
            None => self.members.truth_latest().clone(),
        }
    }

    fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|k| self.nodes[*k].replica().is_some() && !self.nodes[*k].paused)
            .collect()
    }

    /// An id for a new node: a spare slot that never ran and is neither a
    /// member nor removed, or a new one appended while fewer than
    /// `SPARES_MAX` were.
    fn spare_slot(&mut self) -> Option<NodeId> {
        let latest = self.members.truth_latest().clone();
        let leader_latest = self.latest();
        let reusable = (self.initial_nodes..self.nodes.len()).find(|k| {
            let id = self.nodes[*k].id;
            self.nodes[*k].absent
                && !self.nodes[*k].spare_start_due
                && !latest.contains(id)
                && !latest.was_removed(id)
                && !leader_latest.contains(id)
                && !leader_latest.was_removed(id)
        });
        if let Some(k) = reusable {
            return Some(self.nodes[k].id);
        }
        if self.nodes.len() >= self.initial_nodes + SPARES_MAX {
            return None;
        }
        let id = NodeId(self.nodes.len() as u32 + 1);
        let mut node = crate::world::SimNode::new(id);
        node.absent = true;
        self.nodes.push(node);
        let tick_us = self.member_rng.gen_range(9_000..11_000);
        self.params.tick_us.push(tick_us);
        let offset_ms = self.member_rng.gen_range(-10_000..=10_000);
        self.params.clock_offset_ms.push(offset_ms);
        Some(id)
    }

    fn add_op(&mut self, promote: bool) -> Option<MemberOp> {
        self.spare_slot().map(|id| add(id, promote))
    }

    /// Promote a learner (forced one time in five: it may lag).
    fn promote_op(&mut self) -> Option<MemberOp> {
        let latest = self.latest();
        let learners: Vec<NodeId> = latest
            .members
            .iter()
            .filter(|m| m.role != MemberRole::Voter)
            .map(|m| m.id)
            .collect();
        if learners.is_empty() {
            return None;
        }
        let id = learners[self.member_rng.gen_range(0..learners.len())];
        let force = self.member_rng.gen_bool(0.2);
        Some(promote(id, force))
    }

    /// Remove the leader (`leader`), or a learner or a voter other than the
    /// leader; voters only while more than `VOTERS_MIN` remain.
    fn remove_op(&mut self, leader: bool) -> Option<MemberOp> {
        let latest = self.latest();
        let leader_id = self.leader().map(|k| self.nodes[k].id);
        let voters_spare = latest.voter_count() > VOTERS_MIN;
        let candidates: Vec<NodeId> = if leader {
            leader_id
                .filter(|id| voters_spare && latest.is_voter(*id))
                .into_iter()
                .collect()
        } else {
            latest
                .members
                .iter()
                .filter(|m| Some(m.id) != leader_id)
                .filter(|m| m.role != MemberRole::Voter || voters_spare)
                .map(|m| m.id)
                .collect()
        };
        if candidates.is_empty() {
            return None;
        }
        let id = candidates[self.member_rng.gen_range(0..candidates.len())];
        let force = self.member_rng.gen_bool(0.1);
        Some(remove(id, force))
    }

    fn transfer_op(&mut self) -> Option<MemberOp> {
        let voters: Vec<NodeId> = self.latest().voters().collect();
        let to = *voters.get(self.member_rng.gen_range(0..voters.len().max(1)))?;
        Some(MemberOp::Transfer { to })
    }

    /// One single-step operation of any kind.
    fn any_simple_op(&mut self) -> Option<MemberOp> {
        match self.member_rng.gen_range(0..4) {
            0 => {
                let promote = self.member_rng.gen_bool(0.5);
                self.add_op(promote)
            }
            1 => self.promote_op(),
            2 => self.remove_op(false),
            _ => self.transfer_op(),
        }
    }

    /// Asks at the leader two times in three, else at a random live node
    /// (a follower forwards it to the leader it knows).
    fn ask_somewhere(&mut self, op: MemberOp, name: &'static str) {
        let live = self.live_nodes();
        let node = match self.leader() {
            Some(leader) if !self.nodes[leader].paused && self.member_rng.gen_bool(0.66) => {
                Some(leader)
            }
            _ if !live.is_empty() => Some(live[self.member_rng.gen_range(0..live.len())]),
            _ => None,
        };
        if let Some(node) = node {
            self.ask(node, op);
            if !name.is_empty() {
                self.stats.nemesis.push(name);
            }
        }
    }

    /// Runs `op` at `node` as an operator's request would.
    fn ask(&mut self, node: usize, op: MemberOp) {
        self.members.next_token += 1;
        let token = self.members.next_token;
        let Some(replica) = self.nodes[node].replica_mut() else {
            return;
        };
        self.stats.member_ops += 1;
        if replica.member_op(token, op).is_err() {
            self.stats.member_ops_refused += 1;
        }
        self.pump(node);
    }

    /// Stops (for good) the removed nodes whose replica says it may retire
    /// (`Replica::may_retire`, the rule the runtime stops a removed node by),
    /// when the seed drew `stop_removed`; otherwise they keep running and
    /// must be refused.
    ///
    /// Stopping a node as soon as the log takes it past the point where its
    /// removal takes effect is not enough: members still below it need a
    /// quorum of the *old* membership to elect a leader there, and with one
    /// of them down that quorum may need the removed node (seed 988 stalled
    /// so, with the rule the simulator used before; a removed leader that
    /// stopped as soon as it applied its removal did the same to a real
    /// cluster in synod's `a_voter_away_while_its_peers_were_replaced` test).
    fn retire_removed(&mut self) {
        if !self.params.members.stop_removed {
            return;
        }
        for k in 0..self.nodes.len() {
            self.retire_if_allowed(k);
        }
    }

    /// Node `k`, when the seed drew `stop_removed` and its replica says it
    /// may retire, stops for good: checked after each of its ticks and
    /// deliveries too, as the runtime checks after each step.
    pub(crate) fn retire_if_allowed(&mut self, k: usize) {
        if !self.params.members.stop_removed || self.nodes[k].retired {
            return;
        }
        if !self.nodes[k].replica().is_some_and(|r| r.may_retire()) {
            return;
        }
        self.crash(k);
        self.nodes[k].retired = true;
        self.stats.nemesis.push("stop-removed");
    }

    /// After `node` acted: a spare slot its newest membership holds is
    /// started soon (as an operator would once the change is chosen).
    pub(crate) fn notice_spares(&mut self, node: usize) {
        if self.nodes.len() == self.initial_nodes {
            return;
        }
        let Some(replica) = self.nodes[node].replica() else {
            return;
        };
        let latest = replica.schedule().latest().clone();
        for k in self.initial_nodes..self.nodes.len() {
            let spare = &mut self.nodes[k];
            if spare.absent && !spare.spare_start_due && latest.contains(spare.id) {
                spare.spare_start_due = true;
                self.schedule(
                    self.now_us + SPARE_START_DELAY_US,
                    Event::StartSpare { node: k },
                );
            }
        }
    }

    /// Starts a spare with an empty disk and the schedule of a live member
    /// that holds it (the leader if it can), from that member's applied
    /// point (`Config::schedule`).
    pub(crate) fn start_spare(&mut self, node: usize) {
        self.nodes[node].spare_start_due = false;
        if !self.nodes[node].absent {
            return;
        }
        let id = self.nodes[node].id;
        let Some(join) = self.schedule_from_member(id) else {
            if !self.members.truth_latest().was_removed(id) {
                // Nobody reachable holds it now: try again later.
                self.nodes[node].spare_start_due = true;
                self.schedule(self.now_us + 100_000, Event::StartSpare { node });
            }
            return;
        };
        self.nodes[node].join = Some(join);
        self.nodes[node].absent = false;
        self.stats.spares_started += 1;
        self.start_node(node);
    }

    /// What a node `id` that does not bootstrap the group starts from
    /// (`Config::schedule`): what a live member answers to `SYNOD.MEMBER
    /// JOININFO` (`Replica::join_schedule`, as the driver calls it), taken
    /// from the leader if it holds `id`, else from the first live node whose
    /// newest membership holds it. As `synod server --join` does, a
    /// schedule whose newest membership lacks `id` is refused (`None`: the
    /// caller tries again later) rather than kept: a node started from it
    /// could never recover (`Config::validate`), and the join would keep it
    /// for every restart.
    pub(crate) fn schedule_from_member(&self, id: NodeId) -> Option<(InstanceId, Schedule)> {
        let knows = |k: &usize| {
            self.nodes[*k]
                .replica()
                .is_some_and(|r| !self.nodes[*k].paused && r.schedule().latest().contains(id))
        };
        let source = self
            .leader()
            .filter(knows)
            .or_else(|| (0..self.nodes.len()).find(knows))?;
        let (point, schedule) = self.nodes[source].replica()?.join_schedule();
        // `knows` saw `id` in the source's newest membership, and the join
        // schedule keeps it (`Replica::join_schedule`); before it did, a
        // member that had not applied up to its own join point answered
        // without it (seed 600021).
        debug_assert!(
            schedule.latest().contains(id),
            "{}'s join schedule at {point} lacks {id}, which its newest membership holds",
            self.nodes[source].id
        );
        schedule.latest().contains(id).then_some((point, schedule))
    }

    /// Indexes of the nodes in the log's newest membership: the group
    /// after the run, which must settle and hold every acknowledged write.
    pub(crate) fn final_members(&self) -> Vec<usize> {
        let latest = self.members.truth_latest();
        (0..self.nodes.len())
            .filter(|k| latest.contains(self.nodes[*k].id))
            .collect()
    }

    /// Where clients may send requests: `None` for anywhere (the safety
    /// phase, or a run whose membership never changed, which keeps the
    /// draws of older seeds); after the heal, the started members of the
    /// newest membership, as a client configured with the group's
    /// addresses would (a removed node that keeps running answers nobody).
    pub(crate) fn client_targets(&self) -> Option<Vec<usize>> {
        if self.phase == Phase::Safety
            || (self.nodes.len() == self.initial_nodes && self.members.truth.len() == 1)
        {
            return None;
        }
        let targets: Vec<usize> = self
            .final_members()
            .into_iter()
            .filter(|k| !self.nodes[*k].absent)
            .collect();
        (!targets.is_empty()).then_some(targets)
    }
}

fn add(id: NodeId, promote: bool) -> MemberOp {
    MemberOp::Change {
        change: MembershipChange::Add {
            id,
            addr: Bytes::from(format!("sim://n{}", id.0)),
            promote,
        },
        force: false,
    }
}

fn promote(id: NodeId, force: bool) -> MemberOp {
    MemberOp::Change {
        change: MembershipChange::Promote { id },
        force,
    }
}

fn remove(id: NodeId, force: bool) -> MemberOp {
    MemberOp::Change {
        change: MembershipChange::Remove { id },
        force,
    }
}
