//! The proposer role: elections (phase 1) and leading (phase 2).
//!
//! A candidate runs phase 1 for every instance from its first unchosen one with
//! a fresh ballot. With promises from a majority it becomes leader: for every
//! instance some promise reported, it re-proposes the value accepted at the
//! highest ballot (Paxos' rule that keeps a possibly chosen value chosen), fills
//! holes with no-ops, and only then assigns new commands to instances.

use super::{Candidate, Gate, InFlight, Leader, Phase1, Replica, Role};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::membership::RECONFIG_DELAY_INSTANCES;
use crate::message::{AppliedMark, Body, PromiseEntry, Restoring};
use crate::ready::RejectReason;
use crate::value::Value;
use std::collections::{BTreeMap, BTreeSet};

impl Replica {
    /// Starts (or restarts) phase 1 with a ballot above every ballot seen.
    pub(super) fn start_election(&mut self) {
        debug_assert!(self.rebuild.is_none(), "a rebuilding replica campaigned");
        // Rounds from the network are bounded (see `Replica::step`), so this
        // cannot overflow; refuse rather than panic if it ever could.
        let Some(round) = self
            .round_seen
            .max(self.acceptor.promised.round)
            .checked_add(1)
        else {
            return;
        };
        let ballot = Ballot {
            round,
            node: self.cfg.id,
        };
        if self.lease_refuses_promise(ballot) {
            // Our own vote is bound by a grant to another leader, or by the
            // restart hold (see `lease.rs`): campaign once it runs out (the
            // election stays due, so the next tick tries again).
            return;
        }
        self.round_seen = round;
        if let Role::Leader(_) = self.role {
            self.step_down();
        }
        self.leader = None;
        let first_instance = self.learner.chosen_end;
        let pages_from = self
            .audience()
            .into_iter()
            .map(|m| (m, first_instance))
            .collect();
        self.role = Role::Candidate(Candidate {
            ballot,
            phase1: Phase1 {
                promised_by: BTreeSet::new(),
                pages_from,
                prepare_sent_tick: self.now,
                compacted: BTreeMap::new(),
            },
            entries: BTreeMap::new(),
        });
        self.election_due_tick = self.random_election_timeout();
        // Safety: our own promise of `ballot` is persisted *before* any Prepare
        // carrying it leaves (the Prepares are gated on it). After a crash the
        // recovered promise is at least `ballot`, so the next ballot we pick is
        // higher: one ballot never serves two incarnations, and so never two
        // values for one instance.
        let promised = self.promise(ballot);
        debug_assert!(promised, "a fresh ballot is above the promise");
        self.broadcast(
            Body::Prepare {
                ballot,
                first_instance,
            },
            Gate::Durable,
        );
    }

    pub(super) fn tick_candidate(&mut self) {
        if self.now >= self.election_due_tick {
            if self.may_campaign() {
                self.start_election();
            } else {
                // It learned meanwhile that it no longer votes.
                self.step_down();
            }
            return;
        }
        // Ask each member whose promise is not complete for the page we wait
        // for: the first one, or the next one of a paginated promise.
        self.ask_promises();
    }

    /// Phase 1b received: one page of a member's promise.
    ///
    /// Safety of paginated promises. A promise may come in pages (each at
    /// most `promise_bytes_max` bytes of entries, so it fits in a frame):
    /// page `p` answers a prepare from `first_instance = pages_from[k]` and
    /// covers `first_instance..more_from`; the candidate asks for the next
    /// page from `more_from`, and a page with `more_from == None` ends the
    /// report. A member counts towards the quorum only once its last page is
    /// in, so `become_leader` (and with it phase 2 for any instance) runs
    /// only with every accepted value a majority reported for every instance
    /// from `first_instance` on: the P2c argument there is the one for a
    /// single unpaginated promise. What remains to show is that pages taken
    /// at different times add up to a valid promise:
    /// - every page answers the same `ballot`, and the acceptor promised it
    ///   with the first page. From then on it accepts nothing at a lower
    ///   ballot (acceptor rule 1), so what it accepted below `ballot` — the
    ///   only thing P2c needs — cannot change between pages. If it promises
    ///   a higher ballot meanwhile, it refuses our later prepares (Reject)
    ///   and its promise never completes; it accepts at our own ballot only
    ///   after we lead, when pages no longer matter.
    /// - between pages it may learn instances chosen (reported as chosen,
    ///   which we adopt anyway) or compact a prefix (reported in
    ///   `compacted_end`; where it votes, we never propose below it unless
    ///   the promisers that do report the instance are a quorum on their
    ///   own: `Phase1::compacted_by_voter`, `Phase1::reporting_at`).
    /// - pages are matched by `first_instance` against `pages_from[k]`, so a
    ///   duplicated, stale or reordered page is ignored and the covered
    ///   ranges are contiguous; a page whose entries fall outside its range,
    ///   or whose `more_from` does not move forward, is ignored too (it
    ///   could break contiguity or never end).
    pub(super) fn handle_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        compacted_end: InstanceId,
        first_instance: InstanceId,
        entries: Vec<PromiseEntry>,
        more_from: Option<InstanceId>,
    ) {
        if let Role::Leader(_) = self.role {
            self.handle_late_promise(
                from,
                ballot,
                compacted_end,
                first_instance,
                entries,
                more_from,
            );
            return;
        }
        let skip_adopt = self.injected().skip_adopt && from != self.cfg.id;
        let election_ticks = self.cfg.election_ticks;
        let now = self.now;
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot || !c.phase1.awaits_page(from, first_instance) {
            return;
        }
        if !page_well_formed(first_instance, &entries, more_from) {
            debug_assert!(from != self.cfg.id, "our own promise page is malformed");
            return;
        }
        if !skip_adopt {
            c.phase1.note_compacted(from, compacted_end);
            for entry in entries {
                merge_entry(&mut c.entries, entry);
            }
        }
        match more_from {
            Some(next) => {
                c.phase1.pages_from.insert(from, next);
                let ballot = c.ballot;
                // Pages arriving are progress: give the rest time to come
                // before starting over with a new ballot (and page one).
                self.election_due_tick = self.election_due_tick.max(now + election_ticks);
                let body = Body::Prepare {
                    ballot,
                    first_instance: next,
                };
                self.send(from, body, Gate::Durable);
            }
            None => {
                c.phase1.promised_by.insert(from);
                let promised: Vec<NodeId> = c.phase1.promised_by.iter().copied().collect();
                // The membership of the first instance phase 1 covers; later
                // instances with another membership wait in
                // `flush_proposals` for a quorum of theirs.
                let membership = self.membership_at(self.learner.chosen_end).clone();
                if self.is_quorum_of(&membership, &promised) {
                    self.become_leader();
                }
            }
        }
    }

    /// A promise page for the ballot this replica already leads with: from
    /// a member of a membership that takes effect later (or one that was
    /// slow). Its entries matter only from the leader's cursor on: every
    /// instance below was proposed once a quorum of *its* membership had
    /// promised with their reports merged (see `flush_proposals`), and a
    /// value possibly chosen there is in those reports (P2c).
    fn handle_late_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        compacted_end: InstanceId,
        first_instance: InstanceId,
        entries: Vec<PromiseEntry>,
        more_from: Option<InstanceId>,
    ) {
        let skip_adopt = self.injected().skip_adopt && from != self.cfg.id;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.ballot != ballot
            || !leader.phase1.awaits_page(from, first_instance)
            || !page_well_formed(first_instance, &entries, more_from)
        {
            return;
        }
        let mut chosen = Vec::new();
        if !skip_adopt {
            // Below a voter's compacted prefix its report is missing: see
            // `flush_proposals`.
            leader.phase1.note_compacted(from, compacted_end);
            for entry in entries {
                if entry.chosen {
                    chosen.push((entry.instance, entry.value.clone()));
                }
                if entry.instance >= leader.next_instance {
                    leader.recovery_end = leader.recovery_end.max(entry.instance.next());
                    merge_entry(&mut leader.recovery, entry);
                }
            }
        }
        match more_from {
            Some(next) => {
                leader.phase1.pages_from.insert(from, next);
                let body = Body::Prepare {
                    ballot,
                    first_instance: next,
                };
                self.send(from, body, Gate::Durable);
            }
            None => {
                leader.phase1.promised_by.insert(from);
            }
        }
        for (instance, value) in chosen {
            self.learn_chosen(instance, value, None);
        }
    }

    /// Phase 1 succeeded: re-propose what may have been chosen, fill holes, lead.
    fn become_leader(&mut self) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        self.leader = Some(self.cfg.id);
        // Values some acceptor knows are chosen are learned directly.
        for entry in c.entries.values().filter(|e| e.chosen) {
            self.learn_chosen(entry.instance, entry.value.clone(), None);
        }
        // Instances below a voter's reported compacted prefix are held back
        // in `flush_proposals` until catch-up brings them (unless the other
        // promisers' reports alone are a quorum there).
        let start = self.learner.chosen_end;
        let end = [
            start,
            c.entries.keys().next_back().map_or(start, |i| i.next()),
            self.learner
                .chosen
                .keys()
                .next_back()
                .map_or(start, |i| i.next()),
        ]
        .into_iter()
        .max()
        .unwrap_or(start);
        // Safety (Paxos P2c): the value accepted at the highest ballot in a
        // majority of promises is the only one that can have been chosen at a
        // lower ballot; where no promise reports a value, none was chosen, so a
        // no-op is safe. `end` lies past every instance any promise reported,
        // so new commands (from `end` on) never land in a possibly chosen one.
        // (Instances whose membership differs from the first one's wait for a
        // quorum of theirs; see `flush_proposals`.)
        let recovery = c
            .entries
            .into_iter()
            .filter(|(instance, entry)| !entry.chosen && *instance >= start)
            .collect();
        let now = self.now;
        let last_ack_tick = self.audience().into_iter().map(|m| (m, now)).collect();
        self.role = Role::Leader(Leader {
            ballot: c.ballot,
            phase1: c.phase1,
            recovery,
            recovery_end: end,
            next_instance: start,
            reconfigs_in_flight: BTreeMap::new(),
            change_queued: None,
            member_chosen_end: BTreeMap::new(),
            member_restoring: BTreeMap::new(),
            transfer: None,
            progress_tick: now,
            in_flight: BTreeMap::new(),
            in_flight_bytes: 0,
            last_ack_tick,
            accepted_tick: BTreeMap::new(),
            heartbeat_sent_tick: now,
            declining_resent_tick: now,
            announced_chosen_end: InstanceId(0),
            announce_due_ms: None,
            drained_ms: None,
            drain_hold_until: None,
            announce_defer: false,
            last_batch_ms: 0,
            cohort_peak: 0,
            hold_until_ms: None,
            hold_off_until_ms: 0,
            hold_backoff_ms: HOLD_BACKOFF_MIN_MS,
            holding: false,
            hold_began: (0, 0),
            hold_armed: false,
            chosen_wanted: BTreeMap::new(),
            chosen_told: BTreeMap::new(),
            probe_sent: 0,
            probe_sent_tick: now,
            full_probe: 0,
            full_probe_order: Vec::new(),
            probe_acked: BTreeMap::new(),
            lease_acked: BTreeMap::new(),
            unconfirmed: std::collections::VecDeque::new(),
            lease: super::lease::LeaderLease::default(),
        });
        self.ask_promises();
        self.flush_proposals();
        self.send_heartbeats();
    }

    /// Phase 2a for one instance.
    fn propose_at(&mut self, instance: InstanceId, value: Value) {
        let chosen_end = self.learner.chosen_end;
        let now_ms = self.lease.clock();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let ballot = leader.ballot;
        leader.announced_chosen_end = chosen_end;
        leader.announce_due_ms = None;
        if let (Some(drained), Some(now)) = (leader.drained_ms.take(), now_ms) {
            // Busy: this proposal came within the delay after the last
            // drain, or by the end of the cohort hold expected then (the
            // hold's own end proposes at exactly that time).
            leader.announce_defer = now.saturating_sub(drained) < self.cfg.announce_delay_ms
                || leader.drain_hold_until.is_some_and(|until| now <= until);
        }
        leader.in_flight_bytes += value.size_bytes();
        if let Value::Reconfig(membership) = &value {
            leader
                .reconfigs_in_flight
                .insert(instance, membership.clone());
        }
        let previous = leader.in_flight.insert(
            instance,
            InFlight {
                value: value.clone(),
                acks: BTreeSet::new(),
                sent_tick: self.now,
            },
        );
        debug_assert!(previous.is_none(), "instance {instance} proposed twice");
        // Accepts need not wait for our own Accept record: the leader's own vote
        // is counted only when that record is durable (its Accepted is gated).
        self.broadcast(
            Body::Accept {
                ballot,
                instance,
                value,
                chosen_end,
            },
            Gate::Now,
        );
    }

    /// Proposes, in instance order while the window has room: what phase 1
    /// found (or a no-op in a hole), a queued membership change, waiting
    /// commands, and no-ops that carry a change into force when idle.
    ///
    /// Safety (see `membership.rs`): the cursor never reaches
    /// `chosen_end + α`, so the membership of the instance is fixed by the
    /// chosen log, and it moves on only once a quorum of *that* membership
    /// promised this ballot (their reports merged into `recovery`).
    pub(super) fn flush_proposals(&mut self) {
        // A reconfiguration waits for a master lease lent before it: the
        // lease was counted against the memberships in play then, and a
        // quorum of the new one need not include a node that granted it
        // (`master.rs`). No lease is lent while a change waits.
        let lease_lent = self.master_lease_outstanding();
        if let Role::Leader(leader) = &mut self.role {
            // A hold's clock runs on only while every call holds (another
            // limit may stop this one before it gets there); a wake-up is
            // asked for only if this call holds commands back on it.
            if !std::mem::take(&mut leader.hold_armed) {
                leader.hold_until_ms = None;
            }
        }
        loop {
            let chosen_end = self.learner.chosen_end;
            let Role::Leader(leader) = &self.role else {
                return;
            };
            if leader.in_flight.len() >= self.cfg.window_instances_max
                || leader.in_flight_bytes >= self.cfg.window_bytes_max
                || leader.transfer.is_some()
            {
                return;
            }
            let instance = leader.next_instance;
            if instance.0 >= chosen_end.0.saturating_add(RECONFIG_DELAY_INSTANCES) {
                return;
            }
            let membership = self.membership_at(instance);
            if !self.is_quorum_of(membership, &leader.phase1.promised_by) {
                return;
            }
            let known_chosen = instance < chosen_end || self.learner.chosen.contains_key(&instance);
            if !known_chosen {
                if let Some(compacted) = leader.phase1.compacted_by_voter(membership, instance) {
                    // A voter of this instance's membership compacted it:
                    // it is chosen, and that voter's report lacks it. P2c
                    // still holds if the promisers that *do* report this
                    // instance form a quorum of its membership on their
                    // own: the value chosen here was accepted by a quorum,
                    // which meets that one, so the highest-ballot value in
                    // their reports is the chosen one (the compacted
                    // voter's silence changes nothing). Their reports do
                    // cover it: each promise's pages are contiguous from a
                    // first instance at or below the cursor (the
                    // candidate's chosen prefix, or `next_instance` for a
                    // late one, whose entries are merged from there), and
                    // an acceptor reports every instance from its
                    // `values_from` on, which every way of dropping values
                    // raises (`note_compacted` keeps the largest a page
                    // gave). Otherwise never propose; catch-up fetches it.
                    //
                    // Liveness: a compacted voter may be unable to send
                    // its snapshot (an on-disk state machine restarted
                    // ahead of its recovered chosen marks can write none
                    // until it learns what is chosen past them), and
                    // catch-up from it would then wait for ever while the
                    // others could re-choose the instance (simulator seed
                    // 179 with a snapshot-write `EIO`).
                    let reporting = leader.phase1.reporting_at(instance);
                    if !self.is_quorum_of(membership, reporting) {
                        self.learner.commit_seen = self.learner.commit_seen.max(compacted);
                        return;
                    }
                }
            }
            let Role::Leader(leader) = &mut self.role else {
                return;
            };
            if known_chosen {
                leader.recovery.remove(&instance);
                leader.next_instance = instance.next();
                continue;
            }
            if let Some(entry) = leader.recovery.remove(&instance) {
                leader.next_instance = instance.next();
                self.propose_at(instance, entry.value);
                continue;
            }
            if instance < leader.recovery_end {
                leader.next_instance = instance.next();
                self.propose_at(instance, Value::Noop);
                continue;
            }
            if !lease_lent {
                if let Some(change) = leader.change_queued.take() {
                    leader.next_instance = instance.next();
                    self.propose_at(instance, Value::Reconfig(change));
                    continue;
                }
            }
            if self.pending.is_empty() {
                // Idle with a change on its way: no-ops carry it into force
                // (it takes effect α instances after its own).
                let waiting = !leader.reconfigs_in_flight.is_empty()
                    || self
                        .schedule
                        .entries()
                        .last()
                        .is_some_and(|e| e.from > instance);
                if waiting {
                    leader.next_instance = instance.next();
                    self.propose_at(instance, Value::Noop);
                    continue;
                }
                return;
            }
            if self.hold_batch() {
                return;
            }
            let mut batch = Vec::new();
            let mut size = BatchSize::default();
            while let Some(command) = self.pending.front() {
                if !size.fits(&self.cfg, command.len()) {
                    break;
                }
                size.add(command.len());
                if let Some(command) = self.pending.pop_front() {
                    batch.push(command);
                }
            }
            let now_ms = self.lease.clock();
            if let Role::Leader(leader) = &mut self.role {
                leader.next_instance = instance.next();
                if let Some(now) = now_ms {
                    leader.last_batch_ms = now;
                }
            }
            let value = Value::packed_batch(batch);
            // Every pending command passed `command_fits` (propose and
            // handle_forward), so a batch of one fits; `fits` keeps larger
            // batches within the bound.
            debug_assert!(value.encoded_len() <= self.cfg.value_bytes_max);
            debug_assert_eq!(value.encoded_len(), size.encoded);
            self.propose_at(instance, value);
        }
    }

    /// Cohort batching (`Config::batch_hold_ms`): whether the waiting
    /// commands stay back for now, to go in one batch with those about to
    /// arrive.
    ///
    /// Clients that wait for their answers come back together: a batch's
    /// answers go out in one pass, and their next commands arrive within a
    /// fraction of a round. A leader that proposes whatever waits at each
    /// step splits them: the first few go in a small batch of their own, the
    /// rest in the next, and the two cohorts then alternate for good, each
    /// batch costing every voter a message, a write and an fsync for part of
    /// the clients (50 clients on three nodes of one two-core machine: 6 to
    /// 8 commands per instance, 21 per follower fsync; held, 35 to 40 per
    /// instance and per fsync, 20-25% less CPU per SET and more SETs per
    /// second, measured side by side).
    ///
    /// The cohort is the most commands outstanding at once (in flight or
    /// waiting) since the load last shrank (`Leader::cohort_peak`). While
    /// fewer than 4/5 of it wait, and they fit in one batch: with commands in
    /// flight, they wait for the commit (whose answers bring the rest back);
    /// with none, for at most `batch_hold_ms` (at least that long, less
    /// than 1 ms more: the clock is whole ms; or until the second tick if
    /// the time given has not moved since). The cost: the batch goes once
    /// 4/5 are back, and the stragglers wait for its commit, a round more.
    /// A hold that ends on its clock means the clients did not come back
    /// together (they pause between commands, the load shrank): what is
    /// outstanding then becomes the cohort, and no batch is held for 4 ms,
    /// twice as long after each such hold in a row up to about a second,
    /// until a cohort comes back. A
    /// cohort of one or two never holds (`4n/5 < 2`: one client never
    /// waits), nor does a leader that proposed no batch for `HOLD_RECENT_MS`.
    ///
    /// Only when to propose changes, never what: safety does not depend on
    /// it. Liveness: a wait for a commit ends with the commit (or the
    /// leadership); a wait on the clock ends when the runtime wakes the
    /// replica at `wake_at_ms`, which asks for the hold's end.
    fn hold_batch(&mut self) -> bool {
        let hold_ms = self.cfg.batch_hold_ms;
        let now = match self.lease.clock() {
            Some(now) if hold_ms > 0 => now,
            _ => return false,
        };
        let Role::Leader(leader) = &mut self.role else {
            return false;
        };
        let in_flight: usize = leader
            .in_flight
            .values()
            .map(|f| f.value.commands().len())
            .sum();
        let outstanding = in_flight + self.pending.len();
        // (Not while a hold on the clock runs: it ends on its own clock,
        // counted, whatever its length.)
        let idle = leader.hold_until_ms.is_none() && !leader.batched_lately(now);
        if idle || leader.backing_off(now) {
            leader.cohort_peak = outstanding;
            leader.hold_until_ms = None;
            return false;
        }
        leader.cohort_peak = leader.cohort_peak.max(outstanding);
        let want = leader.cohort_want();
        let mut full = false;
        if self.pending.len() < want {
            let mut size = BatchSize::default();
            for command in &self.pending {
                if !size.fits(&self.cfg, command.len()) {
                    full = true;
                    break;
                }
                size.add(command.len());
            }
        }
        if self.pending.len() >= want || full {
            if std::mem::take(&mut leader.holding) && !full {
                // The cohort came back: hold again at once after a miss.
                leader.hold_backoff_ms = HOLD_BACKOFF_MIN_MS;
            }
            leader.hold_until_ms = None;
            return false;
        }
        if !std::mem::replace(&mut leader.holding, true) {
            self.batch_holds += 1;
        }
        if in_flight > 0 {
            // Their commit answers clients, whose next commands come
            // back soon after: the clock starts once the pipeline drained.
            leader.hold_until_ms = None;
            return true;
        }
        leader.hold_armed = true;
        if leader.hold_until_ms.is_none() {
            leader.hold_until_ms = Some(hold_end(now, hold_ms));
            leader.hold_began = (self.now, now);
        }
        let until = leader.hold_until_ms.unwrap_or(now);
        // Two ticks, not one: a fresh time in whole ms often has not moved
        // when the next tick comes, but it has after two.
        let stale = self.now >= leader.hold_began.0.saturating_add(2) && now == leader.hold_began.1;
        if now >= until || stale {
            leader.hold_armed = false;
            // The cohort did not come back (clients that pause between
            // commands, a load that shrank): no holding for a while.
            leader.cohort_peak = outstanding;
            leader.hold_until_ms = None;
            leader.holding = false;
            leader.hold_off_until_ms = now.saturating_add(leader.hold_backoff_ms);
            self.batch_hold_timeouts += 1;
            leader.hold_backoff_ms = (leader.hold_backoff_ms * 2).min(HOLD_BACKOFF_MAX_MS);
            return false;
        }
        true
    }

    /// How many times this replica, leading, held commands back for a
    /// cohort (`Config::batch_hold_ms`), and how many of those holds ended
    /// on their clock rather than with the cohort back.
    pub fn batch_holds(&self) -> (u64, u64) {
        (self.batch_holds, self.batch_hold_timeouts)
    }

    /// Sends buffered commands to the leader, or refuses them when there is none.
    pub(super) fn flush_forwards(&mut self) {
        if self.forward.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut self.forward);
        match (&self.role, self.leader) {
            (Role::Follower, Some(leader)) if leader != self.cfg.id => {
                // Chunks obey the batch limits, so a Forward is no larger
                // than the value its commands would make (plus the header).
                let mut chunk = Vec::new();
                let mut size = BatchSize::default();
                for command in commands {
                    if !size.fits(&self.cfg, command.len()) {
                        let commands = std::mem::take(&mut chunk);
                        self.send(leader, Body::Forward { commands }, Gate::Now);
                        size = BatchSize::default();
                    }
                    size.add(command.len());
                    chunk.push(command);
                }
                self.send(leader, Body::Forward { commands: chunk }, Gate::Now);
            }
            (Role::Follower, _) => {
                for command in commands {
                    self.reject(command, RejectReason::NoLeader);
                }
            }
            _ => {
                // We became candidate or leader since: propose them ourselves.
                for command in commands {
                    self.pending.push_back(command);
                }
            }
        }
    }

    /// Commands forwarded by a follower.
    pub(super) fn handle_forward(&mut self, from: NodeId, commands: Vec<crate::value::Command>) {
        if matches!(self.role, Role::Follower) {
            // Not leading: drop. The follower's client times out and retries;
            // exactly-once is the state machine's job (command ids).
            return;
        }
        let before = self.pending.len();
        for command in commands {
            if self.pending.len() >= self.cfg.pending_commands_max {
                break;
            }
            // A follower checks its own proposals; one configured with a
            // larger limit must still not make us build a value too large
            // to send. Dropped like any lost forward: its client times out.
            if !self.command_fits(&command) {
                continue;
            }
            self.pending.push_back(command);
        }
        if self.pending.len() > before {
            // Its clients wait for these to be chosen.
            self.want_chosen(from, None);
        }
    }

    /// Notes that `member` waits to learn the chosen prefix up to `needed`
    /// (`None`: through the commands it forwarded that are not proposed
    /// yet): `announce_chosen` tells it as the prefix grows, until it knows
    /// that much.
    pub(super) fn want_chosen(&mut self, member: NodeId, needed: Option<InstanceId>) {
        if member == self.cfg.id {
            return;
        }
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let told = leader.chosen_told.get(&member).copied().unwrap_or_default();
        let wanted = leader
            .chosen_wanted
            .entry(member)
            .or_insert_with(|| ChosenWanted {
                told,
                ..ChosenWanted::default()
            });
        match needed {
            Some(needed) => wanted.needed = wanted.needed.max(needed),
            None => wanted.open = true,
        }
    }

    /// A transfer's target must report the whole prefix (`check_transfer`):
    /// it is told the prefix again, with the last round's probe, even if a
    /// heartbeat that asked for no answer told it already (it forwarded
    /// commands). Without this, a target told so while a drained pipeline's
    /// announcement waited would report only at the next round. The
    /// caller made the entry first (`want_chosen`), starting from how far
    /// the member was told (`Leader::chosen_told`): zeroing its mark here is
    /// what makes the tell go.
    pub(super) fn want_report(&mut self, member: NodeId) {
        if let Role::Leader(leader) = &mut self.role {
            if let Some(wanted) = leader.chosen_wanted.get_mut(&member) {
                wanted.told = InstanceId(0);
            }
        }
    }

    /// True when `command` fits alone in an instance value.
    pub(super) fn command_fits(&self, command: &crate::value::Command) -> bool {
        command.len() <= self.cfg.command_bytes_max()
    }

    /// Phase 2b received.
    pub(super) fn handle_accepted(&mut self, from: NodeId, ballot: Ballot, instance: InstanceId) {
        let membership = self.membership_at(instance).clone();
        let known_chosen =
            instance < self.learner.chosen_end || self.learner.chosen.contains_key(&instance);
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        leader.last_ack_tick.insert(from, self.now);
        leader.accepted_tick.insert(from, self.now);
        // An Accepted proves it votes again: a rebuilding member sends none
        // (its acks saying it finished may have been lost).
        if leader.member_restoring.get(&from) == Some(&Restoring::Rebuilding) {
            leader.member_restoring.remove(&from);
        }
        let Some(in_flight) = leader.in_flight.get_mut(&instance) else {
            return;
        };
        if known_chosen {
            // Learned chosen meanwhile (catch-up, or another leader's
            // Chosen): nothing to count. Counting here would also use a
            // membership the schedule may no longer hold: below the
            // compacted prefix `membership_at` answers with the oldest one
            // it kept (simulator seed 242 with membership changes).
            let value_bytes = in_flight.value.size_bytes();
            leader.in_flight.remove(&instance);
            leader.in_flight_bytes -= value_bytes;
            return;
        }
        in_flight.acks.insert(from);
        let acks: Vec<NodeId> = in_flight.acks.iter().copied().collect();
        if !self.is_quorum_of(&membership, &acks) {
            return;
        }
        // Chosen: a majority of the instance's voters accepted this value at
        // this ballot, durably.
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(in_flight) = leader.in_flight.remove(&instance) else {
            return;
        };
        leader.in_flight_bytes -= in_flight.value.size_bytes();
        let counted = acks
            .into_iter()
            .filter(|a| membership.contains(*a))
            .collect();
        self.log_quorum(instance, ballot, counted, membership.epoch);
        self.learn_chosen(instance, in_flight.value, Some(ballot));
    }

    /// Someone promised a higher ballot: stand down.
    pub(super) fn handle_reject(&mut self, ballot: Ballot, promised: Ballot) {
        self.observe(promised);
        let mine = match &self.role {
            Role::Candidate(c) => c.ballot,
            Role::Leader(l) => l.ballot,
            Role::Follower => return,
        };
        if ballot == mine && promised > mine {
            self.step_down();
        }
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        // Check quorum: a leader that has not heard from a majority for an
        // election timeout stands down, so clients stop waiting on it.
        // A rebuilding member's acks do not count: it answers no Accept
        // until every other member has answered it, which may never happen
        // while this leader holds on (a removed leader kept in office by
        // one, with the new members refusing it, wedged a cluster in the
        // fourth review of stop 58). A member restoring a snapshot with a
        // full backlog does count: its restore ends by itself, and no other
        // leader could get its vote sooner. The leader is in
        // `last_ack_tick` too (its own Accepteds, and from its election):
        // it is counted once, below, not again for its own votes (it was
        // counted twice until the attack review of stop 59, and an isolated
        // leader still proposing stood down only once its window filled).
        let mut heard: Vec<NodeId> = leader
            .last_ack_tick
            .iter()
            .filter(|(id, tick)| {
                **id != self.cfg.id
                    && now - **tick < self.cfg.election_ticks
                    && leader.member_restoring.get(id) != Some(&Restoring::Rebuilding)
            })
            .map(|(id, _)| *id)
            .collect();
        heard.push(self.cfg.id);
        let membership = self.membership_at(self.learner.chosen_end).clone();
        if !self.is_quorum_of(&membership, &heard) {
            self.step_down();
            return;
        }
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        // A leader that cannot learn instances it knows are chosen (the only
        // peer that had them is gone) makes no progress at all; standing down
        // lets a leader whose majority can re-propose them take over.
        //
        // The voter it waited on is often the one that can lead (a node
        // whose on-disk state is ahead of its recovered chosen marks can
        // send no snapshot until a leader re-chooses the instances past
        // them, and this one cannot reach them: its cursor stops at the
        // compacted prefix). So it hands leadership to that voter
        // (`TakeOver`, as a transfer ends, but without waiting for it to
        // catch up: it is ahead) and keeps from campaigning for a while
        // (`step_down_and_hold`). Campaigning at once, this replica won
        // again about half the time, and the log stood still for one more
        // round of 10 election timeouts each time (simulator seed 95 of
        // fc99b90's draws: 6 s with no client served); with five voters
        // another lagging one won as often without the hand-over (stop
        // 64's review). Safety: `TakeOver` only starts an election at its
        // target and lifts the others' leader stickiness; none is sent
        // while a master lease lent by this leader may be outstanding (it
        // releases the grants the lease rests on, as in `check_transfer`).
        if self.learner.chosen_end > self.learner.progress_mark {
            self.learner.progress_mark = self.learner.chosen_end;
            leader.progress_tick = now;
        }
        if self.learner.chosen_end < self.learner.commit_seen
            && now - leader.progress_tick > 10 * self.cfg.election_ticks
        {
            let ballot = leader.ballot;
            let Role::Leader(leader) = &self.role else {
                return;
            };
            let membership = self.membership_at(self.learner.chosen_end);
            let successor = leader
                .phase1
                .voter_compacted_past(membership, self.learner.chosen_end, self.cfg.id)
                .filter(|_| !self.master_lease_outstanding());
            if let Some(to) = successor {
                for member in self.audience() {
                    if member != self.cfg.id {
                        self.send(member, Body::TakeOver { ballot, to }, Gate::Now);
                    }
                }
            }
            self.step_down_and_hold(false);
            if let Some(to) = successor {
                self.leader = Some(to);
                self.leader_contact_tick = now;
            }
            return;
        }
        let ballot = leader.ballot;
        // A member whose last acknowledgement said its restore backlog is
        // full declines every new Accept until the restore ends (and says
        // so in its next acknowledgement, a heartbeat later): copies sent
        // to it each retransmission (up to the whole window) would be
        // declined unread. It gets the window once per election timeout
        // instead, and at the normal pace again once its acks say it votes.
        // Not never: it still answers an Accept it accepted before its
        // backlog filled, and if that answer was lost, its vote may be the
        // one the instance waits for (the attack review of a4edd3b: without
        // this the instance, and the log behind it, waited for the whole
        // restore). Only what is sent changes, never what counts as a vote.
        let declining: Vec<NodeId> = leader
            .member_restoring
            .iter()
            .filter(|(_, restoring)| **restoring == Restoring::Declining)
            .map(|(id, _)| *id)
            .collect();
        let declining_due =
            !declining.is_empty() && now - leader.declining_resent_tick >= self.cfg.election_ticks;
        if declining_due {
            leader.declining_resent_tick = now;
        }
        let mut resend = Vec::new();
        for (instance, in_flight) in leader.in_flight.iter_mut() {
            let due = now - in_flight.sent_tick >= self.cfg.retransmit_ticks;
            if due {
                in_flight.sent_tick = now;
            }
            if due || declining_due {
                let acks = in_flight.acks.clone();
                resend.push((*instance, in_flight.value.clone(), acks, due));
            }
        }
        // A prefix that grew with no Accept to carry it (`announce_chosen`)
        // is announced now, at most a tick late.
        let heartbeat_due = now - leader.heartbeat_sent_tick >= self.cfg.heartbeat_ticks
            || self.learner.chosen_end > leader.announced_chosen_end;
        let chosen_end = self.learner.chosen_end;
        let audience = self.audience();
        for (instance, value, acks, due) in resend {
            for &to in &audience {
                let now_due = if declining.contains(&to) {
                    declining_due
                } else {
                    due
                };
                if now_due && !acks.contains(&to) && to != self.cfg.id {
                    let body = Body::Accept {
                        ballot,
                        instance,
                        value: value.clone(),
                        chosen_end,
                    };
                    self.send(to, body, Gate::Now);
                }
            }
        }
        if heartbeat_due {
            self.send_heartbeats();
        }
    }

    /// Tells followers how far the chosen prefix grew, when no Accept is
    /// about to. Called once per `take_ready`, after new Accepts (which
    /// carry the prefix to everyone) went out.
    ///
    /// - Nothing left in flight (the pipeline drained): a heartbeat round to
    ///   everyone. Followers act on what they apply (pub/sub deliveries,
    ///   blocked pops woken, keyspace events), so an idle or lightly loaded
    ///   cluster must not leave them a tick behind. But a busy leader's
    ///   pipeline drains for moments only (at one client, between an answer
    ///   and the client's next command), and a round at each of those cost
    ///   every follower a wake-up and an answer, for what the next Accept
    ///   carries anyway. So with `Config::announce_delay_ms`, when the last
    ///   drain was followed by a proposal within that delay
    ///   (`Leader::announce_defer`), the round waits that long
    ///   (`Replica::wake_at_ms`) and goes only if no Accept carried the
    ///   prefix meanwhile; otherwise it goes at once. Followers learn the
    ///   prefix at most the delay (with cohort batching, below: the longer
    ///   of it and the hold; plus the runtime's timer lateness) later, and
    ///   no later than the next write. Waiting is never unsafe: the
    ///   prefix is what followers learn, not what anyone votes on. With
    ///   cohort batching (`hold_batch`), the next batch comes a cohort's
    ///   return later, often more than the delay: when a hold is likely to
    ///   follow the drain (`cohort_batch_due`), a busy leader's round waits
    ///   until that hold would end if later (a hold that begins after the
    ///   drain may end later still: the round then goes first, so followers
    ///   learn the prefix at most the longer of the two after the drain),
    ///   and a batch by then also counts as busy. At 50 clients on three
    ///   nodes that round was a follower wake-up, a send and an answer per
    ///   batch: a quarter of the CPU per SET summed over the nodes, measured
    ///   side by side.
    /// - Instances still in flight: only the members that wait on the prefix
    ///   (`want_chosen`) are told now, each with a heartbeat of its own: a
    ///   follower answers a command it forwarded, or a read at the index it
    ///   was given, only once it knows the instance chosen, and a transfer
    ///   waits for its target to report the whole prefix. The others learn
    ///   it from the Accepts of the next batch, or when the pipeline drains,
    ///   or at the next tick (`tick_leader`). A round at every growth cost
    ///   every follower a wake-up and an answer per batch: at 50 clients on
    ///   three nodes, about a sixth of a follower's CPU per SET.
    ///
    /// A waiting member's heartbeat is no read round (a round to some
    /// members only would hold up the reads that wait for the next one): it
    /// carries probe 0, which asks for no answer (`handle_heartbeat`). Each
    /// answer cost the leader a wake-up and the member a send per batch,
    /// for nothing: it could only repeat an acknowledgement of the last
    /// round. Except to a leadership transfer's target, whose report of
    /// the whole prefix the transfer waits for (`check_transfer`): its
    /// heartbeat carries the last round's probe number, and its
    /// acknowledgement says the member had not promised a higher ballot when
    /// it arrived, after that round was sent, so counting it for that round
    /// is true, and a lease measured from that round's sending is measured
    /// from earlier than the grant (see `lease.rs`).
    pub(super) fn announce_chosen(&mut self) {
        let chosen_end = self.learner.chosen_end;
        let proposed_all = self.pending.is_empty();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if chosen_end > leader.announced_chosen_end && leader.in_flight.is_empty() {
            let now = self.lease.clock();
            let due = match (self.cfg.announce_delay_ms, now) {
                (0, _) | (_, None) => now,
                (delay, Some(now)) => match leader.announce_due_ms {
                    Some(due) => Some(due),
                    None => {
                        // The pipeline drained just now.
                        leader.drained_ms = Some(now);
                        // A cohort hold is likely next: the batch it
                        // releases carries the prefix, at the latest when
                        // the hold would end.
                        leader.drain_hold_until =
                            cohort_batch_due(leader, self.cfg.batch_hold_ms, now);
                        if leader.announce_defer {
                            let due = now.saturating_add(delay);
                            let due = leader.drain_hold_until.map_or(due, |h| h.max(due));
                            leader.announce_due_ms = Some(due);
                        }
                        leader.announce_due_ms
                    }
                },
            };
            if due <= now {
                self.send_heartbeats();
            }
        }
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.chosen_wanted.is_empty() {
            return;
        }
        let announced = leader.announced_chosen_end;
        let next = leader.next_instance;
        let mut tell = Vec::new();
        leader.chosen_wanted.retain(|member, wanted| {
            if wanted.open {
                // Its commands are at most in instances proposed so far.
                wanted.needed = wanted.needed.max(next);
                wanted.open = !proposed_all;
            }
            wanted.told = wanted.told.max(announced);
            if wanted.told < chosen_end {
                tell.push(*member);
                wanted.told = chosen_end;
            }
            wanted.open || wanted.told < wanted.needed
        });
        if tell.is_empty() {
            return;
        }
        for member in &tell {
            leader.chosen_told.insert(*member, chosen_end);
        }
        let probe = leader.probe_sent;
        let target = leader.transfer.map(|(to, _)| to);
        let latest = self.schedule.latest().clone();
        let mut cap = None;
        for to in tell {
            let probe = if target == Some(to) { probe } else { 0 };
            self.send_heartbeat(to, probe, &latest, &mut cap);
        }
    }

    pub(super) fn send_heartbeats(&mut self) {
        self.send_heartbeat_round(None);
    }

    /// Sends one heartbeat round: to every member (`only` is `None`), or,
    /// for a read round, to `only` (see `reads.rs`, `read_round_targets`).
    /// A partial round is a read probe and nothing else: it does not count
    /// as the periodic heartbeat (the others must still hear from this
    /// leader, or they would campaign) nor as an announcement of the chosen
    /// prefix (the others have not heard it).
    pub(super) fn send_heartbeat_round(&mut self, only: Option<Vec<NodeId>>) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let chosen_end = self.learner.chosen_end;
        // Every heartbeat round is a read probe (see `reads.rs`).
        leader.probe_sent += 1;
        leader.probe_sent_tick = self.now;
        let probe = leader.probe_sent;
        if only.is_none() {
            leader.heartbeat_sent_tick = self.now;
            leader.announced_chosen_end = chosen_end;
            leader.announce_due_ms = None;
            leader.full_probe = probe;
            leader.full_probe_order.clear();
        }
        leader.lease.note_probe(probe, self.lease.clock());
        let audience = match only {
            Some(only) => only,
            None => self.audience(),
        };
        let latest = self.schedule.latest().clone();
        let mut cap = None;
        for to in audience {
            if to != self.cfg.id {
                self.send_heartbeat(to, probe, &latest, &mut cap);
            }
        }
    }

    /// Sends one heartbeat of round `probe` to `to`, with the chosen prefix
    /// (`latest` is the newest membership; `cap`, the prefix a removed
    /// member may hear, computed once per round).
    fn send_heartbeat(
        &mut self,
        to: NodeId,
        probe: u64,
        latest: &crate::membership::Membership,
        cap: &mut Option<InstanceId>,
    ) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let ballot = leader.ballot;
        let applied = AppliedMark {
            applied_end: self.learner.applied_end,
            checksum: self.learner.checksum,
        };
        // A removed member hears only how far a quorum of the newest
        // membership is known to have the prefix chosen (`may_retire`). Any
        // lower bound of the prefix is true, so this is safe.
        let chosen_end = if latest.was_removed(to) {
            let cap = *cap.get_or_insert_with(|| self.retire_cap(latest));
            self.learner.chosen_end.min(cap)
        } else {
            self.learner.chosen_end
        };
        let body = Body::Heartbeat {
            ballot,
            chosen_end,
            applied,
            probe,
        };
        self.send(to, body, Gate::Now);
    }

    /// Notes that a follower answered this leader.
    pub(super) fn note_ack(&mut self, from: NodeId, ballot: Ballot) {
        if let Role::Leader(leader) = &mut self.role {
            if leader.ballot == ballot {
                leader.last_ack_tick.insert(from, self.now);
            }
        }
    }
}

/// A member waiting to learn the chosen prefix (`Leader::chosen_wanted`).
#[derive(Debug, Default)]
pub(super) struct ChosenWanted {
    /// It waits until it knows the prefix chosen up to here.
    needed: InstanceId,
    /// How far it was told (by `announce_chosen`, or with everyone).
    told: InstanceId,
    /// Commands it forwarded are not all proposed yet: `needed` grows to
    /// cover them once they are.
    open: bool,
}

/// Whether a promise page covers only `first_instance..more_from` and moves
/// forward (see `handle_promise`: a page that breaks contiguity or never
/// ends is ignored).
fn page_well_formed(
    first_instance: InstanceId,
    entries: &[PromiseEntry],
    more_from: Option<InstanceId>,
) -> bool {
    let page_end = more_from.unwrap_or(InstanceId(u64::MAX));
    more_from.is_none_or(|next| next > first_instance)
        && entries
            .iter()
            .all(|e| e.instance >= first_instance && e.instance < page_end)
}

impl Phase1 {
    /// Notes the compacted prefix a promise page of `from` reported.
    fn note_compacted(&mut self, from: NodeId, compacted_end: InstanceId) {
        if compacted_end > InstanceId(0) {
            let noted = self.compacted.entry(from).or_insert(compacted_end);
            *noted = (*noted).max(compacted_end);
        }
    }

    /// The highest compacted prefix above `instance` that a voter of
    /// `membership` (the one that governs `instance`) reported, if any.
    ///
    /// Why per instance, and only voters of that instance's membership: a
    /// node that compacted `instance` reports nothing there, so a quorum
    /// that includes it may lack the report P2c needs, and the leader must
    /// not propose there unless the promisers that report it are a quorum
    /// without it (the instance is chosen: catch-up fetches it). A
    /// node that is not a voter of `instance`'s membership is in no quorum
    /// for it, so its missing report costs nothing; honouring its prefix
    /// anyway stopped the log in simulator seed 993 (a removed learner had
    /// compacted past every voter's recovered chosen mark, and catch-up
    /// never asked it). The question is asked when proposing, not when the
    /// promise arrives: the leader's cursor stays below its chosen prefix
    /// plus α, so `membership` is fixed by then, whereas a node the
    /// candidate took for a learner may vote at later instances through a
    /// promotion it had not learned yet (a reviewer's scenario, in which
    /// deciding at promise time let a second value be chosen:
    /// `tests/all/compacted_voter.rs`).
    fn compacted_by_voter(
        &self,
        membership: &crate::Membership,
        instance: InstanceId,
    ) -> Option<InstanceId> {
        self.compacted
            .iter()
            .filter(|(id, end)| **end > instance && membership.is_voter(**id))
            .map(|(_, end)| *end)
            .max()
    }

    /// The voter of `membership` that reported the highest compacted prefix
    /// past `instance`, if any: the one a leader stuck there waits on.
    fn voter_compacted_past(
        &self,
        membership: &crate::Membership,
        instance: InstanceId,
        me: NodeId,
    ) -> Option<NodeId> {
        self.compacted
            .iter()
            .filter(|(id, end)| **id != me && **end > instance && membership.is_voter(**id))
            .max_by_key(|(_, end)| **end)
            .map(|(id, _)| *id)
    }

    /// The promisers whose (complete) reports cover `instance`: those that
    /// did not report a compacted prefix past it.
    fn reporting_at(&self, instance: InstanceId) -> impl Iterator<Item = &NodeId> {
        self.promised_by
            .iter()
            .filter(move |id| self.compacted.get(*id).is_none_or(|end| *end <= instance))
    }

    /// Whether the page of `from`'s promise that starts at `first_instance`
    /// is the one this phase 1 waits for.
    fn awaits_page(&self, from: NodeId, first_instance: InstanceId) -> bool {
        !self.promised_by.contains(&from) && self.pages_from.get(&from) == Some(&first_instance)
    }
}

/// Keeps, per instance, the entry that phase 1 must adopt: a value some acceptor
/// knows is chosen, else the value accepted at the highest ballot.
fn merge_entry(entries: &mut BTreeMap<InstanceId, PromiseEntry>, entry: PromiseEntry) {
    match entries.get(&entry.instance) {
        Some(old) if old.chosen => {
            debug_assert!(
                !entry.chosen || entry.value == old.value,
                "two chosen values reported for {}",
                entry.instance
            );
        }
        Some(old) if !entry.chosen && entry.ballot <= old.ballot => {
            debug_assert!(
                entry.ballot != old.ballot || entry.value == old.value,
                "two values accepted at one ballot for {}",
                entry.instance
            );
        }
        _ => {
            entries.insert(entry.instance, entry);
        }
    }
}

/// The size of a batch (a value, or a Forward's commands) being built.
#[derive(Clone, Copy, Debug)]
struct BatchSize {
    commands: usize,
    /// Sum of the command lengths (`batch_bytes_max` counts these).
    payload: usize,
    /// The encoded length of the value these commands make.
    encoded: usize,
}

impl Default for BatchSize {
    fn default() -> BatchSize {
        BatchSize {
            commands: 0,
            payload: 0,
            encoded: Value::batch(Vec::new()).encoded_len(),
        }
    }
}

impl BatchSize {
    /// Whether a command of `len` bytes may join: the first always may (it
    /// was checked against `value_bytes_max` on the way in); later ones only
    /// within the count, payload and encoded-size bounds.
    fn fits(&self, cfg: &crate::config::Config, len: usize) -> bool {
        self.commands == 0
            || (self.commands < cfg.batch_commands_max
                && self.payload + len <= cfg.batch_bytes_max
                && self.encoded + COMMAND_LENGTH_BYTES + len <= cfg.value_bytes_max)
    }

    fn add(&mut self, len: usize) {
        self.commands += 1;
        self.payload += len;
        self.encoded += COMMAND_LENGTH_BYTES + len;
    }
}

/// Bytes before each command in an encoded value.
const COMMAND_LENGTH_BYTES: usize = 4;

/// When a cohort hold starting now would end, if, as is likely, one
/// follows the pipeline draining now (`Replica::hold_batch`): cohort
/// batching is on, not backing off, with a cohort that holds (`4n/5 >= 2`)
/// and a batch proposed lately, and no transfer stops proposals. The
/// commands coming back then wait at most `hold_ms` (plus the whole-ms
/// rounding) from now, or from when the first of them comes (one held
/// already started its clock now). `None`: no hold to count on. Only a
/// timing hint for the drain's announcement (`announce_chosen`): if the
/// batch comes later, the announcement goes at this time anyway.
fn cohort_batch_due(leader: &Leader, hold_ms: u64, now: u64) -> Option<u64> {
    let cohort = hold_ms > 0
        && leader.transfer.is_none()
        && leader.cohort_want() >= 2
        && !leader.backing_off(now)
        && leader.batched_lately(now);
    cohort.then(|| hold_end(now, hold_ms))
}

/// When a hold on the clock that starts at `now` (whole ms) ends: one ms
/// more than `hold_ms`, so that it lasts at least that long, not until the
/// next ms begins.
fn hold_end(now: u64, hold_ms: u64) -> u64 {
    now.saturating_add(hold_ms).saturating_add(1)
}

/// Cohort batching's rules, shared by `Replica::hold_batch` and the drain's
/// announcement (`cohort_batch_due`).
impl Leader {
    /// How many commands must wait before a held batch goes: 4/5 of the
    /// cohort (under 2 for a cohort of one or two: those never hold).
    fn cohort_want(&self) -> usize {
        self.cohort_peak * 4 / 5
    }

    /// Whether a batch was proposed within `HOLD_RECENT_MS` of `now`.
    fn batched_lately(&self, now: u64) -> bool {
        now.saturating_sub(self.last_batch_ms) <= HOLD_RECENT_MS
    }

    /// Whether holding is off at `now`, after a hold that ran out.
    fn backing_off(&self, now: u64) -> bool {
        now < self.hold_off_until_ms
    }
}

/// Cohort batching (`Replica::hold_batch`) follows only a batch proposed
/// at most this long ago (ms).
const HOLD_RECENT_MS: u64 = 20;

/// After a hold that ended on its clock (the clients did not come back
/// together), a leader proposes without holding for a while (ms): the
/// first time this long, twice as long after each such hold in a row, up to
/// `HOLD_BACKOFF_MAX_MS`; once a cohort comes back, this long again.
const HOLD_BACKOFF_MIN_MS: u64 = 4;
const HOLD_BACKOFF_MAX_MS: u64 = 1024;
