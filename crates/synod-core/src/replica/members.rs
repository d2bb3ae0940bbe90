//! Membership at run time: who is addressed, who counts, changes proposed by
//! the leader, automatic promotion of caught-up learners, and leadership
//! transfer. The rule that makes changes safe is in `membership.rs`; this
//! file keeps the replica's schedule up to date and asks the proposer to
//! respect it.

use super::{Gate, Replica, Role};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::membership::{
    MemberOp, MemberRole, Membership, MembershipChange, MembershipError, Schedule,
    RECONFIG_DELAY_INSTANCES,
};

/// Operations forwarded and not answered yet that a follower remembers.
const MEMBER_OPS_ASKED_MAX: usize = 1024;
use crate::message::{Body, Message, Restoring};
use std::sync::Arc;
use thiserror::Error;

/// Why a membership change or a leadership transfer was refused. Nothing was
/// proposed: the request may be retried (at the leader, later) as it is.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChangeError {
    /// Only the leader proposes changes; this is who it is, if known.
    #[error("not the leader (leader: {})", .0.map_or("unknown".to_string(), |n| n.0.to_string()))]
    NotLeader(Option<NodeId>),
    /// Another change is being proposed or has not taken effect yet: the
    /// epoch it makes and the instance it takes effect at (0 while it is
    /// not chosen yet, so that instance is not known).
    #[error("another membership change is in progress (epoch {0} {})", in_progress_at(*.1))]
    InProgress(u64, u64),
    /// The change makes no sense in the current membership.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// Removing (or demoting) this voter would leave fewer reachable voters
    /// than a quorum of the new membership.
    #[error("removing node {} leaves {reachable} reachable voters, fewer than the {quorum} a quorum needs (use force to do it anyway)", .id.0)]
    NoQuorum {
        /// The member to remove.
        id: NodeId,
        /// Voters of the new membership heard from within an election timeout.
        reachable: usize,
        /// Votes a quorum of the new membership needs.
        quorum: usize,
    },
    /// The learner is too far behind to vote yet.
    #[error("node {} is {behind} instances behind the leader; promote it once it has caught up (or use force)", .id.0)]
    Lagging {
        /// The learner.
        id: NodeId,
        /// How far behind the leader's chosen prefix it last reported.
        behind: u64,
    },
    /// The transfer target is not an up-to-date voter other than the leader.
    #[error("cannot transfer leadership to node {}: {}", .0.0, .1)]
    BadTarget(NodeId, &'static str),
}

/// When a change in progress takes effect, for `ChangeError::InProgress`.
fn in_progress_at(from: u64) -> String {
    if from == 0 {
        "is not chosen yet".to_string()
    } else {
        format!("takes effect at instance {from}")
    }
}

/// What the leader knows of one member's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberProgress {
    /// The member.
    pub id: NodeId,
    /// Its role.
    pub role: MemberRole,
    /// Its address (opaque to the core).
    pub addr: bytes::Bytes,
    /// The chosen prefix it last reported to this leader (this replica's own
    /// for itself); `None` when not leading or never heard.
    pub chosen_end: Option<InstanceId>,
    /// Ticks since it last answered this leader (0 for itself).
    pub silent_ticks: Option<u64>,
}

/// A quorum a leader counted, for the simulator's checkers (recorded only
/// with the `fault-injection` feature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumUse {
    /// The instance chosen.
    pub instance: InstanceId,
    /// The ballot it was chosen at.
    pub ballot: Ballot,
    /// The members whose acceptance was counted.
    pub voters: Vec<NodeId>,
    /// The epoch of the membership the leader counted against.
    pub epoch: u64,
}

impl Replica {
    /// The membership in force at the applied point.
    pub fn membership(&self) -> &Arc<Membership> {
        self.schedule.at(self.learner.applied_end)
    }

    /// The memberships of the instances from the applied point on, the
    /// newest last (one unless a change waits to take effect).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The schedule a snapshot at `point` (at most the applied point) must
    /// carry, for `Snapshot::memberships`.
    pub fn schedule_at(&self, point: InstanceId) -> Schedule {
        self.schedule.since(point)
    }

    /// Where a node joining through this replica starts
    /// ([`crate::Config::schedule`]): a point and the memberships of every
    /// instance from there on, holding every reconfiguration chosen below
    /// it. Its newest membership is this replica's newest, so a node this
    /// replica knows as a member finds itself in it: every entry came with
    /// the base (`Schedule::since` of the base, so it takes effect before
    /// `base + α`) or was applied at some instance below the applied point
    /// (and takes effect α later), and `since` keeps every entry that takes
    /// effect before `point + α`.
    ///
    /// The point is the applied point, or the schedule's base if that is
    /// later. Why not always the applied point: the α rule needs the joiner
    /// and the members to agree on the membership of every instance from
    /// the point on, so the schedule must hold every change chosen below
    /// it. This replica's schedule holds every change chosen below its base
    /// (it came with it: a join, or a snapshot at the base) and every one
    /// applied since (`note_reconfig`), so it is complete exactly below
    /// `max(applied, base)`. A replica that joined at a base it has not
    /// applied up to yet (just started empty, or recovered a snapshot older
    /// than its join) would, at its applied point, drop the changes chosen
    /// between that point and its base: the schedule it handed out could
    /// lack the very node that asks (simulator seed 600021: a wiped node
    /// that had just restarted from a member's schedule answered a spare
    /// with a membership without it, and the spare could never start).
    pub fn join_schedule(&self) -> (InstanceId, Schedule) {
        let point = self.learner.applied_end.max(self.schedule_base);
        (point, self.schedule.since(point))
    }

    /// The membership governing `instance`.
    pub(super) fn membership_at(&self, instance: InstanceId) -> &Arc<Membership> {
        self.schedule.at(instance)
    }

    /// Whether this replica is the only voter of the membership in force.
    pub(super) fn alone(&self) -> bool {
        let m = self.membership_at(self.learner.chosen_end);
        m.voter_count() == 1 && m.is_voter(self.cfg.id)
    }

    /// The first instance whose membership this replica knows: its
    /// schedule's first entry. A node that joined from a member's schedule
    /// (or installed or recovered a snapshot whose schedule starts after its
    /// point, as one taken by such a node below that entry does) knows
    /// nothing of the memberships before it, while `Schedule::at` answers
    /// there with the first one it has.
    pub fn schedule_known_from(&self) -> InstanceId {
        self.schedule.entries()[0].from
    }

    /// Whether this replica may start an election: it votes in the
    /// membership of its first unchosen instance, and knows that membership
    /// (the instances a candidate's quorum covers must be governed by the
    /// membership it counts against; below `schedule_known_from` it would
    /// count against a later one).
    /// Nor while a `drop_leadership` hold lasts (`master.rs`).
    pub(super) fn may_campaign(&self) -> bool {
        !self.campaign_held() && self.may_lead()
    }

    /// [`Replica::may_campaign`] but for the holds: whether this replica may
    /// lead at all now (what a `TakeOver` naming it asks, besides a
    /// `drop_leadership` hold).
    fn may_lead(&self) -> bool {
        // Memberships are noted as values are applied: while an install
        // holds them back (the runtime restores its state machine), this
        // replica's schedule lags its chosen prefix, and a leader counting
        // quorums by it could count them wrongly (simulator seed 295).
        !self.learner.apply_held
            && self.learner.chosen_end >= self.schedule_known_from()
            && self
                .membership_at(self.learner.chosen_end)
                .is_voter(self.cfg.id)
    }

    /// Every member of every membership from the chosen prefix on, of the
    /// one before (while the schedule keeps it), and of reconfigurations
    /// this leader has in flight: who gets Accepts, heartbeats and
    /// Prepares, and whose messages are admitted.
    ///
    /// Why the one before: a member removed by the newest change must learn
    /// that it was (then it stops); the leader's chosen prefix may jump past
    /// the change's instance in one step, after which no message of the
    /// current membership would reach it. Admitting it gives it no vote:
    /// quorums count only the voters of each instance's membership.
    pub(super) fn audience(&self) -> Vec<NodeId> {
        let mut ids = self.schedule.members_from(self.audience_from());
        if let Role::Leader(leader) = &self.role {
            for m in leader.reconfigs_in_flight.values() {
                ids.extend(m.members.iter().map(|m| m.id));
            }
            ids.sort();
            ids.dedup();
        }
        ids
    }

    /// Whether a message from `node` may come in: it is a member of some
    /// membership from the chosen prefix on (or of a reconfiguration in
    /// flight here). Removed nodes and strangers are refused at the door.
    pub(super) fn knows_member(&self, node: NodeId) -> bool {
        // On every message: no allocation.
        let from = self.audience_from();
        let entries = self.schedule.entries();
        let first = entries
            .partition_point(|e| e.from <= from)
            .saturating_sub(1);
        let in_schedule = entries[first..].iter().any(|e| e.membership.contains(node));
        in_schedule
            || matches!(&self.role, Role::Leader(l) if l.reconfigs_in_flight.values().any(|m| m.contains(node)))
    }

    /// Where the audience starts: the `from` of the membership before the
    /// one in force at the chosen prefix (see `audience`).
    fn audience_from(&self) -> InstanceId {
        let entries = self.schedule.entries();
        let in_force = entries
            .partition_point(|e| e.from <= self.learner.chosen_end)
            .saturating_sub(1);
        entries[in_force.saturating_sub(1)].from
    }

    /// Whether `acks` is a quorum of `membership` (learners count only with
    /// the `learner_votes` negative control).
    pub(super) fn is_quorum_of<'a>(
        &self,
        membership: &Membership,
        acks: impl IntoIterator<Item = &'a NodeId>,
    ) -> bool {
        if self.injected().learner_votes {
            let members = acks
                .into_iter()
                .filter(|a| membership.contains(**a))
                .count();
            return members >= membership.quorum();
        }
        membership.is_quorum(acks)
    }

    /// A chosen reconfiguration at `instance` was applied: schedule it.
    pub(super) fn note_reconfig(&mut self, instance: InstanceId, membership: Arc<Membership>) {
        // No longer in flight, whether it takes effect or is ignored below
        // (a change re-proposed from phase 1 may be stale): one left here
        // would refuse every later change and keep the leader proposing
        // no-ops for ever.
        if let Role::Leader(leader) = &mut self.role {
            leader.reconfigs_in_flight.remove(&instance);
        }
        if instance < self.schedule_base {
            // Already in the schedule we started from.
            return;
        }
        let pending = self
            .schedule
            .entries()
            .last()
            .is_some_and(|e| e.from > instance);
        if membership.epoch <= self.schedule.latest().epoch || pending {
            // A stale change (proposed from an older membership, and another
            // was chosen first), or one chosen while another still waits to
            // take effect: it changes nothing, on every replica alike (this
            // depends on the log alone). So a schedule holds at most one
            // membership waiting. Leaders never propose such a change (see
            // `propose_change`); another leader's may still be chosen.
            return;
        }
        let from = InstanceId(instance.0.saturating_add(self.reconfig_delay()));
        let previous = self.schedule.clone();
        let mut entries = previous.entries().to_vec();
        entries.push(crate::membership::Scheduled { from, membership });
        match Schedule::from_entries(entries) {
            Ok(schedule) => self.schedule = schedule,
            Err(err) => {
                debug_assert!(false, "a chosen reconfiguration breaks the schedule: {err}");
            }
        }
        // Members of the new membership must promise this leader's ballot
        // before it proposes in the instances they govern.
        self.ask_promises();
    }

    /// Forgets memberships that govern nothing from the compacted prefix on.
    pub(super) fn prune_schedule(&mut self) {
        let point = self.learner.compacted_end;
        let mut schedule = self.schedule.clone();
        schedule.prune(point);
        self.schedule = schedule;
    }

    /// Proposes a membership change (leader only). Returns the membership it
    /// will make, once chosen; it takes effect `RECONFIG_DELAY_INSTANCES`
    /// instances later (the leader fills them with no-ops when idle). One
    /// change at a time: refused while another is queued, in flight or not
    /// yet in force. Unless `force`, a removal that would leave fewer
    /// reachable voters than a quorum, or a promotion of a learner far
    /// behind, is refused.
    pub fn propose_change(
        &mut self,
        change: MembershipChange,
        force: bool,
    ) -> Result<Arc<Membership>, ChangeError> {
        let Role::Leader(leader) = &self.role else {
            return Err(ChangeError::NotLeader(self.leader));
        };
        if let Some((to, _)) = leader.transfer {
            // Proposals stop while leadership is handed over: a change
            // queued now would be dropped when this leader steps down.
            return Err(ChangeError::NotLeader(Some(to)));
        }
        let latest = self.schedule.latest().clone();
        let in_force = self.schedule.entries().last().map(|e| e.from);
        if leader.change_queued.is_some() || !leader.reconfigs_in_flight.is_empty() {
            return Err(ChangeError::InProgress(latest.epoch + 1, 0));
        }
        if let Some(from) = in_force {
            if from > self.learner.chosen_end && self.schedule.entries().len() > 1 {
                return Err(ChangeError::InProgress(latest.epoch, from.0));
            }
        }
        let next = latest.change(&change)?;
        // Half a value at most, so that a snapshot's schedule (two
        // memberships) fits beside a chunk (`Config::message_bytes_max`).
        if 2 * crate::value::membership_encoded_len(&next) + 16 > self.cfg.value_bytes_max {
            return Err(ChangeError::Membership(MembershipError::TooMany));
        }
        if !force {
            match &change {
                MembershipChange::Remove { id } if latest.is_voter(*id) => {
                    let reachable = self.reachable_voters(&next);
                    if reachable < next.quorum() {
                        return Err(ChangeError::NoQuorum {
                            id: *id,
                            reachable,
                            quorum: next.quorum(),
                        });
                    }
                }
                MembershipChange::Promote { id } => {
                    if let Some(how) = self.member_restoring(*id) {
                        return Err(ChangeError::BadTarget(*id, how.reason()));
                    }
                    let behind = self.lag_of(*id);
                    if behind > self.cfg.promote_lag_max {
                        return Err(ChangeError::Lagging { id: *id, behind });
                    }
                }
                _ => {}
            }
        }
        let next = Arc::new(next);
        if let Role::Leader(leader) = &mut self.role {
            leader.change_queued = Some(next.clone());
        }
        Ok(next)
    }

    /// Voters of `membership` this leader heard from within an election
    /// timeout (itself included), not counting those restoring a snapshot
    /// with a full backlog: they decline every vote until their restore
    /// ends (`restore_backlog_full`), which may take minutes.
    fn reachable_voters(&self, membership: &Membership) -> usize {
        let Role::Leader(leader) = &self.role else {
            return 0;
        };
        membership
            .voters()
            .filter(|v| {
                *v == self.cfg.id
                    || (leader.member_restoring.get(v).is_none_or(|how| how.votes())
                        && leader
                            .last_ack_tick
                            .get(v)
                            .is_some_and(|t| self.now - *t < self.cfg.election_ticks))
            })
            .count()
    }

    /// Whether, and how, `id` said in its last heartbeat ack to this leader
    /// that it is restoring (a snapshot, or its votes).
    fn member_restoring(&self, id: NodeId) -> Option<Restoring> {
        match &self.role {
            Role::Leader(leader) => leader.member_restoring.get(&id).copied(),
            _ => None,
        }
    }

    /// How many instances `id` is behind this leader's chosen prefix, by
    /// its last report (`u64::MAX` if it never reported).
    fn lag_of(&self, id: NodeId) -> u64 {
        let Role::Leader(leader) = &self.role else {
            return u64::MAX;
        };
        if id == self.cfg.id {
            return 0;
        }
        leader.member_chosen_end.get(&id).map_or(u64::MAX, |end| {
            self.learner.chosen_end.0.saturating_sub(end.0)
        })
    }

    /// How many instances after its own a chosen change takes effect (α).
    fn reconfig_delay(&self) -> u64 {
        if self.injected().config_immediate {
            1
        } else {
            RECONFIG_DELAY_INSTANCES
        }
    }

    /// Whether this replica, removed by a chosen reconfiguration, may stop
    /// for good now (the runtime stops it when this says so, and not
    /// before). False while it is a member of the newest membership.
    ///
    /// Why not as soon as the removal is chosen: the instances before the
    /// point where the membership without it takes effect (`out_from`) are
    /// still governed by memberships that hold it. A member below that point
    /// can only elect a leader with a quorum of those, and with another old
    /// member away that quorum may need this node (the simulator's seed 988;
    /// a removed leader that stopped at once left nodes 4 and 5 of
    /// `a_voter_away_while_its_peers_were_replaced_comes_back_and_votes`
    /// with the no-ops that carry the change into force accepted but not
    /// known chosen, and no quorum to finish them: stuck for good). It may
    /// stop once a quorum of the voters of the newest membership is known to
    /// have the prefix chosen past `out_from`: a candidate among them then
    /// needs none of the old memberships. Evidence of that:
    /// - leading: their heartbeat acks (`member_chosen_end`), for the first
    ///   membership without it (with the change in force here);
    /// - following: a heartbeat of its leader that had applied the change
    ///   (its applied end is past the change's instance, so it knows this
    ///   node is removed) telling a prefix past `out_from`: a leader tells a
    ///   removed member no more of the prefix than a quorum of the newest
    ///   membership acknowledged (`retire_cap`), in its heartbeat rounds and
    ///   in answer to a removed member's Prepare or catch-up request, which
    ///   it refuses (`answer_removed`).
    ///
    /// Silence is no evidence: the members that need this node may be the
    /// ones cut off from it (the review of this rule wedged a cluster so).
    /// A removed node that no leader tells runs on (the runtime says so).
    ///
    /// Staying longer is always safe: a vote counts only in memberships
    /// that hold the voter.
    pub fn may_retire(&self) -> bool {
        let me = self.cfg.id;
        if !self.schedule.latest().was_removed(me) {
            return false;
        }
        let entries = self.schedule.entries();
        // The first membership without this node after the last with it;
        // when none left holds it (pruned), the oldest one kept, which is in
        // force (a later point, so a stricter wait).
        let out = match entries.iter().rposition(|e| e.membership.contains(me)) {
            Some(last) => entries.get(last + 1),
            None => entries.first(),
        };
        let Some(out) = out else {
            return false;
        };
        match &self.role {
            // This node is no voter of the membership without it, so the cap
            // counts the others' acks alone.
            Role::Leader(_) => {
                self.learner.chosen_end >= out.from && self.retire_cap(&out.membership) >= out.from
            }
            _ => {
                // The leader's word alone: a removed node that lags (the
                // others refuse its catch-up) may never reach `out_from`
                // itself, and need not.
                let (chosen_end, applied_end) = self.leader_marks;
                let change_at = out.from.0.saturating_sub(self.reconfig_delay());
                chosen_end >= out.from && applied_end.0 > change_at
            }
        }
    }

    /// Leader: a removed member that asks for a vote or for catch-up, which
    /// is refused here, hears how far a quorum of the newest membership has
    /// the prefix (`retire_cap`), so that it can retire (`may_retire`)
    /// although it lags and no heartbeat round reaches it any more. Only
    /// these two: an answer to an answer would go back and forth for ever.
    pub(super) fn answer_removed(&mut self, msg: &Message) {
        if !matches!(msg.body, Body::Prepare { .. } | Body::CatchupRequest { .. }) {
            return;
        }
        let latest = self.schedule.latest().clone();
        if !latest.was_removed(msg.from) {
            return;
        }
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let ballot = leader.ballot;
        let chosen_end = self.learner.chosen_end.min(self.retire_cap(&latest));
        let applied = crate::message::AppliedMark {
            applied_end: self.learner.applied_end,
            checksum: self.learner.checksum,
        };
        self.send(
            msg.from,
            Body::Heartbeat {
                ballot,
                chosen_end,
                applied,
                probe: 0,
            },
            Gate::Now,
        );
    }

    /// Leader: the largest prefix a quorum of `membership`'s voters is known
    /// to have chosen (this leader's own prefix if it is one of them,
    /// heartbeat acks for the others): what a removed member is told, and
    /// what a removed leader waits for (see `may_retire`).
    pub(super) fn retire_cap(&self, membership: &Membership) -> InstanceId {
        let Role::Leader(leader) = &self.role else {
            return InstanceId(0);
        };
        let mut ends: Vec<InstanceId> = membership
            .voters()
            .map(|v| {
                if v == self.cfg.id {
                    self.learner.chosen_end
                } else {
                    leader
                        .member_chosen_end
                        .get(&v)
                        .copied()
                        .unwrap_or(InstanceId(0))
                }
            })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(membership.quorum().saturating_sub(1))
            .copied()
            .unwrap_or(InstanceId(0))
    }

    /// What this replica knows of each member of the newest membership.
    pub fn member_progress(&self) -> Vec<MemberProgress> {
        let leader = match &self.role {
            Role::Leader(leader) => Some(leader),
            _ => None,
        };
        self.schedule
            .latest()
            .members
            .iter()
            .map(|m| {
                let me = m.id == self.cfg.id;
                MemberProgress {
                    id: m.id,
                    role: m.role,
                    addr: m.addr.clone(),
                    chosen_end: if me {
                        Some(self.learner.chosen_end)
                    } else {
                        leader.and_then(|l| l.member_chosen_end.get(&m.id).copied())
                    },
                    silent_ticks: if me {
                        Some(0)
                    } else {
                        leader.and_then(|l| l.last_ack_tick.get(&m.id).map(|t| self.now - t))
                    },
                }
            })
            .collect()
    }

    /// Hands leadership to `to`, a voter: the leader stops taking new
    /// commands, waits until `to` has every instance it proposed, then
    /// tells it to campaign at once (and the others to let it). Commands
    /// waiting meanwhile are refused when the leader steps down (clients
    /// retry at the new leader). A transfer that does not finish within an
    /// election timeout is abandoned and the leader goes on.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), ChangeError> {
        let Role::Leader(leader) = &self.role else {
            return Err(ChangeError::NotLeader(self.leader));
        };
        if to == self.cfg.id {
            // Already done.
            return Ok(());
        }
        if let Some(change) = &leader.change_queued {
            // Not proposed yet: the transfer would stop it from ever being
            // proposed, and stepping down would drop it. Retry once it is.
            return Err(ChangeError::InProgress(change.epoch, 0));
        }
        let next = leader.next_instance;
        if !self.membership_at(next).is_voter(to) || !self.schedule.latest().is_voter(to) {
            return Err(ChangeError::BadTarget(to, "it is not a voter"));
        }
        if let Some(how) = leader.member_restoring.get(&to) {
            // It could not campaign when told to take over (`may_campaign`):
            // the cluster would wait an election timeout with no leader.
            return Err(ChangeError::BadTarget(to, how.reason()));
        }
        if let Role::Leader(leader) = &mut self.role {
            leader.transfer = Some((to, self.now));
        }
        // It must report the whole prefix before it is told to take over.
        self.want_chosen(to, Some(next));
        self.want_report(to);
        self.check_transfer();
        Ok(())
    }

    /// The voter best placed to take over: the most up to date voter of the
    /// newest membership other than this one, not restoring a snapshot nor
    /// rebuilding (its last ack at this ballot says so).
    pub fn best_successor(&self) -> Option<NodeId> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        let latest = self.schedule.latest();
        latest
            .voters()
            // Heard at this ballot: until its first ack a new leader knows
            // neither how far a member is nor whether it restores.
            .filter(|v| {
                *v != self.cfg.id
                    && leader.member_chosen_end.contains_key(v)
                    && !leader.member_restoring.contains_key(v)
            })
            .filter(|v| {
                leader
                    .last_ack_tick
                    .get(v)
                    .is_some_and(|t| self.now - *t < self.cfg.election_ticks)
            })
            .max_by_key(|v| leader.member_chosen_end.get(v).copied())
    }

    /// Leader: finishes a transfer once the target has caught up, abandons
    /// one that took too long.
    pub(super) fn check_transfer(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let Some((to, since)) = leader.transfer else {
            return;
        };
        if self.master_lease_outstanding() {
            // `TakeOver` releases the grants a master lease lent earlier
            // rests on (`master.rs`): wait until it ran out. The transfer's
            // timeout starts after the wait.
            if let Role::Leader(leader) = &mut self.role {
                leader.transfer = Some((to, self.now));
            }
            return;
        }
        if self.now - since > self.cfg.election_ticks || self.member_restoring(to).is_some() {
            // Abandoned: too slow, or the target began restoring a snapshot
            // (it could not campaign for as long as that lasts, and
            // proposals wait while a transfer runs). A removed or stopping
            // leader picks a successor again (`best_successor`).
            if let Role::Leader(leader) = &mut self.role {
                leader.transfer = None;
            }
            return;
        }
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let caught_up = leader.in_flight.is_empty()
            && self.learner.chosen_end >= leader.next_instance
            && leader
                .member_chosen_end
                .get(&to)
                .is_some_and(|end| *end >= self.learner.chosen_end);
        if !caught_up {
            return;
        }
        let ballot = leader.ballot;
        // Everyone hears it: the target campaigns, the others stop holding
        // on to us (leader stickiness) so that they promise to it at once.
        for member in self.audience() {
            if member != self.cfg.id {
                self.send(member, Body::TakeOver { ballot, to }, Gate::Now);
            }
        }
        self.step_down();
        self.leader = Some(to);
        self.leader_contact_tick = self.now;
    }

    /// The leader of `ballot` hands leadership to `to`.
    pub(super) fn handle_take_over(&mut self, from: NodeId, ballot: Ballot, to: NodeId) {
        if ballot.node == from {
            // The old leader stepped down (and stopped serving lease reads)
            // before it sent this: its grant need not delay `to`.
            self.release_lease(from, ballot);
        }
        if ballot.node != from || ballot < self.acceptor.promised {
            return;
        }
        if to == self.cfg.id {
            if matches!(self.role, Role::Follower)
                && self.rebuild.is_none()
                && !self.take_over_held()
                && self.may_lead()
            {
                self.start_election();
            }
        } else if self.leader == Some(from) {
            // Let `to` win our promise although `from` was heard recently.
            self.leader = Some(to);
        }
    }

    /// Leader, every tick: promotes caught-up joining learners, and hands
    /// leadership on when the newest membership no longer has this replica
    /// as a voter.
    pub(super) fn tick_membership(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let latest = self.schedule.latest().clone();
        if !latest.is_voter(self.cfg.id) && leader.transfer.is_none() {
            if let Some(to) = self.best_successor() {
                let _ = self.transfer_leadership(to);
            }
            return;
        }
        let joining: Vec<NodeId> = latest
            .members
            .iter()
            .filter(|m| m.role == MemberRole::Joining)
            .map(|m| m.id)
            .collect();
        for id in joining {
            if self.member_restoring(id).is_none() && self.lag_of(id) <= self.cfg.promote_lag_max {
                // Refused while another change is in progress: tried again
                // next tick.
                let _ = self.propose_change(MembershipChange::Promote { id }, false);
                return;
            }
        }
    }

    /// Sends Prepares for this replica's ballot to members it needs a
    /// promise from and has not asked (candidate or leader), now and then
    /// every `retransmit_ticks`. Called when memberships change and from
    /// `tick`.
    pub(super) fn ask_promises(&mut self) {
        let audience = self.audience();
        let now = self.now;
        let (ballot, phase1, next) = match &mut self.role {
            Role::Candidate(c) => (c.ballot, &mut c.phase1, self.learner.chosen_end),
            Role::Leader(l) => (l.ballot, &mut l.phase1, l.next_instance),
            Role::Follower => return,
        };
        let mut asks = Vec::new();
        let due = now - phase1.prepare_sent_tick >= self.cfg.retransmit_ticks;
        for member in audience {
            if member == self.cfg.id || phase1.promised_by.contains(&member) {
                continue;
            }
            match phase1.pages_from.get(&member) {
                Some(first) if due => asks.push((member, *first)),
                Some(_) => {}
                None => {
                    phase1.pages_from.insert(member, next);
                    asks.push((member, next));
                }
            }
        }
        if due {
            phase1.prepare_sent_tick = now;
        }
        for (to, first_instance) in asks {
            let body = Body::Prepare {
                ballot,
                first_instance,
            };
            self.send(to, body, Gate::Durable);
        }
    }

    /// Runs a membership operation for the caller: at once when leading,
    /// else forwarded to the leader this replica knows. The outcome comes
    /// back in `Ready::member_outcomes` under `token`; a forwarded one whose
    /// answer is lost never comes (time out and retry). Refused at once when
    /// no leader is known.
    pub fn member_op(&mut self, token: u64, op: MemberOp) -> Result<(), ChangeError> {
        match (&self.role, self.leader) {
            (Role::Leader(_), _) => {
                let outcome = self.run_member_op(op).map_err(|e| e.to_string());
                self.ready.member_outcomes.push((token, outcome));
                Ok(())
            }
            (Role::Follower, Some(leader)) if leader != self.cfg.id => {
                if self.member_ops_asked.len() >= MEMBER_OPS_ASKED_MAX {
                    // Forget the oldest: its caller timed out long ago.
                    self.member_ops_asked.pop_first();
                }
                self.member_ops_asked.insert(token, leader);
                self.send(leader, Body::MemberRequest { token, op }, Gate::Now);
                Ok(())
            }
            _ => Err(ChangeError::NotLeader(None)),
        }
    }

    fn run_member_op(&mut self, op: MemberOp) -> Result<u64, ChangeError> {
        match op {
            MemberOp::Change { change, force } => {
                self.propose_change(change, force).map(|m| m.epoch)
            }
            MemberOp::Transfer { to } => self.transfer_leadership(to).map(|()| 0),
        }
    }

    /// A follower forwarded an operation (only a leader answers; a stale
    /// follower's caller times out and asks again).
    pub(super) fn handle_member_request(&mut self, from: NodeId, token: u64, op: MemberOp) {
        if !matches!(self.role, Role::Leader(_)) {
            let outcome = Err(ChangeError::NotLeader(self.leader).to_string());
            self.send(from, Body::MemberReply { token, outcome }, Gate::Now);
            return;
        }
        let outcome = self.run_member_op(op).map_err(|e| e.to_string());
        self.send(from, Body::MemberReply { token, outcome }, Gate::Now);
    }

    /// Records a quorum counted (simulator checkers only).
    pub(super) fn log_quorum(
        &mut self,
        instance: InstanceId,
        ballot: Ballot,
        voters: Vec<NodeId>,
        epoch: u64,
    ) {
        #[cfg(feature = "fault-injection")]
        self.quorum_log.push(QuorumUse {
            instance,
            ballot,
            voters,
            epoch,
        });
        #[cfg(not(feature = "fault-injection"))]
        let _ = (instance, ballot, voters, epoch);
    }

    /// Takes the quorums counted since the last call (simulator checkers).
    #[cfg(feature = "fault-injection")]
    pub fn take_quorum_log(&mut self) -> Vec<QuorumUse> {
        std::mem::take(&mut self.quorum_log)
    }
}
