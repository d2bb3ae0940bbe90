//! The learner role: what is chosen, what to apply, catch-up, and the checksum
//! watch that detects divergence.

use super::{Gate, Refusal, ReleasedDemand, Replica, Role, HISTORY_MARKS_MAX};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::{AppliedMark, Body, Restoring};
use crate::ready::{Apply, Divergence, DivergenceKind};
use crate::record::{ChosenValue, Record};
use crate::value::Value;
use rand::Rng;

/// Instances handed out per step while a restore's backlog drains (see
/// `Learner::apply_draining`): the values chosen during a long restore are
/// applied over several steps of the event loop, not in one.
const APPLY_DRAIN_PER_STEP: usize = 256;

/// A peer's catch-up mark (see `release_applied_values`) lasts this many
/// catch-up intervals after its latest request (2 s at the runtime's
/// defaults), at most `Config::applied_tail_hold_ticks`.
const CATCHUP_MARK_INTERVALS: u64 = 40;

impl Replica {
    /// Records that `value` is chosen at `instance`. `ballot` is the ballot it was
    /// chosen at when known (then the record can point at our Accept record
    /// instead of repeating the value).
    pub(super) fn learn_chosen(
        &mut self,
        instance: InstanceId,
        value: Value,
        ballot: Option<Ballot>,
    ) {
        if instance < self.learner.chosen_end {
            debug_assert!(
                self.learner
                    .chosen
                    .get(&instance)
                    .is_none_or(|v| *v == value),
                "two values chosen for {instance}"
            );
            return;
        }
        if let Some(known) = self.learner.chosen.get(&instance) {
            debug_assert_eq!(known, &value, "two values chosen for {instance}");
            return;
        }
        let source = match (ballot, self.acceptor.accepted.get(&instance)) {
            (Some(b), Some((accepted_ballot, accepted_value)))
                if *accepted_ballot == b && *accepted_value == value =>
            {
                ChosenValue::Accepted(b)
            }
            _ => ChosenValue::Learned(value.clone()),
        };
        self.persist(Record::Chosen {
            group: self.cfg.group,
            instance,
            value: source,
        });
        if self.learner.apply_held {
            self.learner.held_bytes += value.encoded_len() as u64;
        }
        self.learner.chosen.insert(instance, value);
        self.advance_chosen_end();
    }

    /// Moves the chosen prefix over every contiguous chosen instance, prunes the
    /// accepted values below it and hands the newly chosen values out to apply.
    pub(super) fn advance_chosen_end(&mut self) {
        let mut end = self.learner.chosen_end;
        while self.learner.chosen.contains_key(&end) {
            end = end.next();
        }
        if let Role::Leader(leader) = &mut self.role {
            // Proposals below the chosen prefix are settled, whatever value
            // won: an acceptor that compacted them no longer acknowledges
            // them (acceptor.rs), so waiting for its answer would hold a
            // window place, and a leadership transfer, for good. (A
            // snapshot install moves the prefix before calling this.)
            if leader
                .in_flight
                .first_key_value()
                .is_some_and(|(i, _)| *i < end)
            {
                let kept = leader.in_flight.split_off(&end);
                let settled = std::mem::replace(&mut leader.in_flight, kept);
                for in_flight in settled.values() {
                    leader.in_flight_bytes -= in_flight.value.size_bytes();
                }
            }
        }
        if end == self.learner.chosen_end {
            return;
        }
        self.learner.chosen_end = end;
        self.learner.commit_seen = self.learner.commit_seen.max(end);
        if let Role::Leader(leader) = &mut self.role {
            // Chosen, whatever value won (a stale change is ignored when
            // applied): no longer a change in flight.
            leader.reconfigs_in_flight = leader.reconfigs_in_flight.split_off(&end);
        }
        // Below the chosen prefix accepted values are no longer needed: phase 1
        // reports chosen values from the learner, not the acceptor.
        self.acceptor.accepted = self.acceptor.accepted.split_off(&end);
        self.emit_apply();
    }

    /// Hands out, in order, every chosen value not yet applied.
    pub(super) fn emit_apply(&mut self) {
        if self.learner.apply_held {
            // The state machine is being restored: the values wait here,
            // in order, until `release_applies`.
            return;
        }
        let mut budget = if self.learner.apply_draining {
            APPLY_DRAIN_PER_STEP
        } else {
            usize::MAX
        };
        while self.learner.applied_end < self.learner.chosen_end && budget > 0 {
            budget -= 1;
            let instance = self.learner.applied_end;
            let Some(value) = self.learner.chosen.get(&instance).cloned() else {
                debug_assert!(false, "chosen prefix has a hole at {instance}");
                return;
            };
            let checksum = self.learner.checksum.extend(&value);
            self.learner.checksum = checksum;
            self.learner.applied_end = instance.next();
            self.learner.tail_bytes += value.encoded_len() as u64;
            self.learner.history.push_back(AppliedMark {
                applied_end: self.learner.applied_end,
                checksum,
            });
            if self.learner.history.len() > HISTORY_MARKS_MAX {
                self.learner.history.pop_front();
            }
            if let Value::Reconfig(membership) = &value {
                self.note_reconfig(instance, membership.clone());
            }
            self.ready.apply.push(Apply {
                instance,
                value,
                checksum,
            });
        }
        if self.learner.applied_end >= self.learner.chosen_end {
            self.learner.apply_draining = false;
        }
    }

    /// The leader of `ballot` says every instance below `chosen_end` is chosen.
    /// Our accepted value at an instance with that same ballot is the one it
    /// proposed there (one value per instance per ballot), hence the chosen one.
    /// Other instances are fetched by catch-up.
    pub(super) fn learn_commit(&mut self, ballot: Ballot, chosen_end: InstanceId) {
        self.learner.commit_seen = self.learner.commit_seen.max(chosen_end);
        if chosen_end <= self.learner.chosen_end {
            return;
        }
        let learned: Vec<(InstanceId, Value)> = self
            .acceptor
            .accepted
            .range(self.learner.chosen_end..chosen_end)
            .filter(|(_, (accepted_ballot, _))| *accepted_ballot == ballot)
            .map(|(instance, (_, value))| (*instance, value.clone()))
            .collect();
        for (instance, value) in learned {
            self.learn_chosen(instance, value, Some(ballot));
        }
    }

    pub(super) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        chosen_end: InstanceId,
        applied: AppliedMark,
        probe: u64,
    ) {
        self.observe(ballot);
        if ballot.node == from {
            // Evidence for `may_retire`, whatever the ballot: what a leader
            // that had applied a change knew stays true.
            self.leader_marks = (chosen_end, applied.applied_end);
        }
        if ballot.node != from {
            self.refuse(Refusal::ForeignBallot);
        } else if ballot < self.acceptor.promised {
            // A leader of a lower ballot still knows what is chosen: chosen
            // is forever, whoever says so, and catch-up fetches only values
            // a peer knows chosen. A replica whose promise is above the
            // majority's (see `door.rs`) keeps learning this way.
            self.learner.commit_seen = self.learner.commit_seen.max(chosen_end);
        }
        if ballot < self.acceptor.promised || ballot.node != from {
            let promised = self.acceptor.promised;
            self.send(from, Body::Reject { ballot, promised }, Gate::Now);
            return;
        }
        self.follow(from);
        self.learn_commit(ballot, chosen_end);
        self.compare_checksum(from, applied);
        if probe == 0 {
            // No round (every round has a probe above 0): the leader only
            // tells how far the prefix is chosen (`announce_chosen`), or a
            // removed member how far it may retire (`answer_removed`), and
            // wants no answer. Nothing is granted either: an acknowledgement
            // of probe 0 confirms no read and no lease.
            return;
        }
        // Safety of leader reads (see `reads.rs`): this acknowledgement says
        // that, now, no ballot above `ballot` is promised here. A rebuilding
        // replica cannot say that (its lost incarnation may have promised a
        // higher ballot), so it acknowledges probe 0, which confirms no read.
        // With read leases the acknowledgement is also a grant (`lease.rs`,
        // rule 1); one that cannot be given confirms nothing either.
        let granted = self.rebuild.is_none() && self.grant_lease(from, ballot);
        let probe = if granted { probe } else { 0 };
        // What was granted, for the leader to check against its own setting
        // (nothing when no lease is configured here).
        let (granted_ms, granted_drift_ppm) = match self.cfg.read_lease {
            Some(lease) if granted && probe > 0 => (lease.duration_ms, lease.drift_ppm),
            _ => (0, 0),
        };
        let body = Body::HeartbeatAck {
            ballot,
            chosen_end: self.learner.chosen_end,
            applied: AppliedMark {
                applied_end: self.learner.applied_end,
                checksum: self.learner.checksum,
            },
            probe,
            granted_ms,
            granted_drift_ppm,
            // It cannot campaign until its restore or rebuild ends
            // (`may_campaign`): the leader must not count it ready to lead,
            // nor (rebuilding, or declining) count on its vote (see
            // `Leader::member_restoring`).
            restoring: if self.rebuild.is_some() {
                Restoring::Rebuilding
            } else if !self.learner.apply_held {
                Restoring::No
            } else if self.restore_backlog_full() {
                Restoring::Declining
            } else {
                Restoring::Yes
            },
        };
        self.send(from, body, Gate::Now);
    }

    pub(super) fn handle_heartbeat_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        chosen_end: InstanceId,
        applied: AppliedMark,
        probe: u64,
        granted: crate::config::Lease,
    ) {
        self.note_ack(from, ballot);
        if let Role::Leader(leader) = &mut self.role {
            if leader.ballot == ballot {
                leader.member_chosen_end.insert(from, chosen_end);
            }
        }
        self.learner.commit_seen = self.learner.commit_seen.max(chosen_end);
        self.compare_checksum(from, applied);
        self.note_probe_ack(from, ballot, probe, granted);
    }

    /// Leader: notes whether a member said, in its ack of a heartbeat of
    /// this leader's ballot, that it is restoring a snapshot
    /// (`Leader::member_restoring`).
    pub(super) fn note_restoring(&mut self, from: NodeId, ballot: Ballot, restoring: Restoring) {
        if let Role::Leader(leader) = &mut self.role {
            if leader.ballot == ballot {
                match restoring {
                    Restoring::No => leader.member_restoring.remove(&from),
                    how => leader.member_restoring.insert(from, how),
                };
            }
        }
    }

    /// Compares a peer's applied mark with ours at the same instance.
    fn compare_checksum(&mut self, peer: NodeId, remote: AppliedMark) {
        let history = &self.learner.history;
        let Ok(k) = history.binary_search_by_key(&remote.applied_end, |m| m.applied_end) else {
            return;
        };
        let local = history[k];
        if local.checksum != remote.checksum {
            self.ready.diverged.push(Divergence {
                peer,
                applied_end: remote.applied_end,
                local: local.checksum,
                remote: remote.checksum,
                kind: DivergenceKind::Log,
            });
        }
    }

    /// Asks a peer for chosen values we know exist but lack.
    pub(super) fn tick_catchup(&mut self) {
        if self.learner.chosen_end >= self.learner.commit_seen {
            self.drop_incoming();
            // Caught up: a stranger we asked is not let in any more.
            self.learner.stranger_asked = None;
            return;
        }
        if let Some(asked) = self.learner.catchup_asked_tick {
            if self.now - asked < self.cfg.catchup_ticks {
                return;
            }
        }
        if self.restore_backlog_full() {
            // Every value fetched now would wait in memory for the restore
            // (see `restore_backlog_full`): ask once it ended. A snapshot
            // transfer in progress waits too (its source keeps it).
            return;
        }
        if self.resume_snapshot_transfer() {
            self.learner.catchup_asked_tick = Some(self.now);
            return;
        }
        // Taken, not kept: a live stranger leader's heartbeats name it again
        // every interval; a dead one must not keep catch-up to itself.
        let stranger = self
            .learner
            .stranger_source
            .take()
            .filter(|s| !self.knows_member(*s));
        let target = match (self.leader, stranger) {
            // Cut off while the membership changed: the members we know may
            // all be gone; the stranger that told us the log moved on is the
            // way back in (see `door.rs`).
            (_, Some(source)) if !matches!(self.role, Role::Leader(_)) => {
                self.learner.stranger_asked = Some(source);
                source
            }
            (Some(leader), _) if leader != self.cfg.id && !matches!(self.role, Role::Leader(_)) => {
                leader
            }
            _ => {
                let others: Vec<NodeId> = self
                    .schedule
                    .members_from(self.learner.chosen_end)
                    .into_iter()
                    .filter(|m| *m != self.cfg.id)
                    .collect();
                if others.is_empty() {
                    return;
                }
                others[self.rng.gen_range(0..others.len())]
            }
        };
        self.learner.catchup_asked_tick = Some(self.now);
        let body = Body::CatchupRequest {
            from: self.learner.chosen_end,
            to: self.learner.commit_seen,
        };
        self.send(target, body, Gate::Now);
    }

    pub(super) fn handle_catchup_request(
        &mut self,
        from: NodeId,
        first: InstanceId,
        to: InstanceId,
    ) {
        if first < self.learner.values_from {
            if self.learner.values_from == self.learner.compacted_end {
                // Compacted away: the snapshot replaces those instances.
                self.send_snapshot_chunk(from, 0);
            } else {
                // Dropped from memory (on disk only until the next
                // checkpoint): our snapshot is older than they are, so the
                // peer would come back for them after installing it. Ask
                // the runtime to read them back from its log, or else for a
                // checkpoint through them, and keep what follows them; the
                // peer's next request gets them or that snapshot.
                self.demand_released(first);
            }
            return;
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut instance = first;
        while instance < to && entries.len() < self.cfg.catchup_entries_max {
            let Some(value) = self.learner.chosen.get(&instance) else {
                break;
            };
            // Encoded bytes (instance and value), so the reply's size is
            // bounded by `catchup_bytes_max`, or by one value when a single
            // entry is larger (see `Config::message_bytes_max`).
            let entry_bytes = 8 + value.encoded_len();
            if !entries.is_empty() && bytes + entry_bytes > self.cfg.catchup_bytes_max {
                break;
            }
            bytes += entry_bytes;
            entries.push((instance, value.clone()));
            instance = instance.next();
        }
        if !entries.is_empty() {
            // The peer goes on from here: keep these values and the ones
            // after them in memory while it asks (`release_applied_values`).
            // A peer catching up asks again at once after each reply, or
            // within a catch-up interval: its mark lapses soon after it
            // stops (caught up, or asking another node).
            let keep = self
                .cfg
                .catchup_ticks
                .saturating_mul(CATCHUP_MARK_INTERVALS)
                .min(self.cfg.applied_tail_hold_ticks);
            let until = self.now.saturating_add(keep);
            self.learner.catchup_marks.insert(from, (first, until));
            self.send(from, Body::CatchupReply { entries }, Gate::Now);
        }
    }

    /// Keeps every applied value from the compacted point on for a while: a
    /// peer is fetching (or about to fetch) our snapshot, and after
    /// installing it asks for the values that follow it.
    pub(super) fn hold_tail(&mut self) {
        self.learner.tail_hold_until = self.now.saturating_add(self.cfg.applied_tail_hold_ticks);
    }

    /// A peer needs the values this replica dropped from memory from `from`
    /// on: asks the runtime to read them back from its log or else to
    /// checkpoint through them, and keeps every value after the snapshot
    /// meanwhile (and the values read back, once restored).
    pub(super) fn demand_released(&mut self, from: InstanceId) {
        let through = self.learner.values_from;
        let from = from.max(self.learner.compacted_end).min(through);
        let demand = match self.learner.released_demand {
            Some(d) => ReleasedDemand {
                from: d.from.min(from),
                through: d.through.max(through),
            },
            None => ReleasedDemand { from, through },
        };
        self.learner.released_demand = Some(demand);
        self.hold_tail();
    }

    /// Puts back into memory chosen values this replica dropped
    /// (`release_applied_values`), read back from its own log by the
    /// runtime after [`Replica::take_released_demand`]: `values`, in
    /// instance order, must end just below the first value kept; those
    /// below the compacted point are ignored. Returns false, changing
    /// nothing, when they do not join the values kept without a gap.
    ///
    /// Safety: the values are the chosen ones (the runtime resolves each
    /// from the log's `Chosen` record, see `synod_storage::LogRead`), of
    /// applied instances. They serve only catch-up and promises, as before
    /// they were dropped: a promise then reports a lower compacted prefix
    /// and the chosen values above it, which a new leader re-proposes
    /// unchanged (P2c holds for a chosen value). Kept while the tail is held
    /// (the demand held it) and while a peer catches up through them.
    pub fn restore_released_values(&mut self, mut values: Vec<(InstanceId, Value)>) -> bool {
        let learner = &mut self.learner;
        let end = learner.values_from;
        values.retain(|(i, _)| *i >= learner.compacted_end && *i < end);
        let Some((first, _)) = values.first() else {
            return false;
        };
        let first = *first;
        let joined = values
            .iter()
            .enumerate()
            .all(|(k, (i, _))| i.0.checked_sub(first.0) == Some(k as u64))
            && values.last().is_some_and(|(i, _)| i.next() == end);
        if !joined {
            return false;
        }
        for (instance, value) in values {
            learner.tail_bytes += value.encoded_len() as u64;
            learner.chosen.insert(instance, value);
        }
        learner.values_from = first;
        true
    }

    /// Drops from memory the chosen values of applied instances below
    /// `below`, oldest first, while the values kept of applied instances
    /// exceed [`crate::Config::applied_tail_bytes`]. Returns the encoded bytes
    /// dropped.
    ///
    /// Safety: the caller guarantees that no checkpoint now due or in
    /// progress has its point above `below`. A checkpoint's records
    /// ([`Replica::checkpoint_records`]) must hold every chosen value after
    /// its point, or an acceptor that voted for one would forget it at the
    /// next restart (the log segments holding it are deleted once the
    /// checkpoint is durable). Values below the point are in the
    /// checkpoint's snapshot; until then in the log on disk, which a restart
    /// replays. No other safety rule needs an applied value: a promise
    /// reports `values_from` as its compacted prefix (every instance below
    /// is chosen, so a new leader never proposes there and fetches them by
    /// catch-up), a catch-up request below it asks the runtime to read them
    /// back or write a fresh snapshot, and
    /// an Accept for an instance below it gets no vote (as below the
    /// compacted prefix: nothing to compare the value with).
    ///
    /// Liveness: the caller must be able to read the values back from its
    /// log or write a snapshot at its applied point when asked
    /// ([`Replica::take_released_demand`]); a peer behind `values_from` has
    /// no other way to catch up from this replica.
    /// Values a peer is catching up through (from its latest catch-up
    /// request served from memory, for `CATCHUP_MARK_INTERVALS` catch-up
    /// intervals) or will need after a snapshot it fetches (for
    /// `Config::applied_tail_hold_ticks` after its last request) are kept
    /// whatever the bound: the bound is soft while peers lag.
    pub fn release_applied_values(&mut self, below: InstanceId) -> u64 {
        let now = self.now;
        let learner = &mut self.learner;
        let mut cap = below.min(learner.applied_end);
        if now < learner.tail_hold_until {
            cap = cap.min(learner.compacted_end);
        }
        learner.catchup_marks.retain(|_, (_, until)| *until > now);
        if let Some(first) = learner
            .catchup_marks
            .values()
            .map(|(first, _)| *first)
            .min()
        {
            cap = cap.min(first);
        }
        let mut released = 0;
        while learner.tail_bytes > self.cfg.applied_tail_bytes {
            let Some(entry) = learner.chosen.first_entry() else {
                break;
            };
            let instance = *entry.key();
            if instance >= cap {
                break;
            }
            debug_assert!(instance >= learner.values_from);
            let len = entry.remove().encoded_len() as u64;
            learner.tail_bytes = learner.tail_bytes.saturating_sub(len);
            learner.values_from = instance.next();
            released += len;
        }
        released
    }

    /// Recounts `tail_bytes` after the kept values changed wholesale (a
    /// compaction, an install).
    pub(super) fn recount_tail(&mut self) {
        let learner = &mut self.learner;
        learner.values_from = learner.values_from.max(learner.compacted_end);
        learner.tail_bytes = if learner.values_from < learner.applied_end {
            learner
                .chosen
                .range(learner.values_from..learner.applied_end)
                .map(|(_, v)| v.encoded_len() as u64)
                .sum()
        } else {
            0
        };
    }

    /// Whether a peer needed values this replica dropped from memory since
    /// the last call: from which instance, and through which point (the
    /// first value still kept). The runtime should then read them back from
    /// its log and hand them to [`Replica::restore_released_values`], or
    /// where it cannot, checkpoint at its applied point (the snapshot
    /// replaces them) unless a checkpoint at or above `through` is already
    /// asked for or in progress, even before its policy says so.
    pub fn take_released_demand(&mut self) -> Option<ReleasedDemand> {
        self.learner.released_demand.take()
    }

    /// Encoded bytes of applied chosen values held in memory.
    pub fn applied_tail_bytes(&self) -> u64 {
        self.learner.tail_bytes
    }

    pub(super) fn handle_catchup_reply(&mut self, entries: Vec<(InstanceId, Value)>) {
        let mut progressed = false;
        for (instance, value) in entries {
            if self.restore_backlog_full() {
                // The rest would wait in memory for the restore (see
                // `restore_backlog_full`): fetched again once it ended. A
                // reply nobody asked for cannot grow the backlog either.
                break;
            }
            if instance >= self.learner.chosen_end && !self.learner.chosen.contains_key(&instance) {
                progressed = true;
            }
            self.learn_chosen(instance, value, None);
        }
        if progressed {
            // Ask for the next range straight away.
            self.learner.catchup_asked_tick = None;
        }
    }
}
