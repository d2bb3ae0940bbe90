//! The proposer role: elections (phase 1) and leading (phase 2).
//!
//! A candidate runs phase 1 for every instance from its first unchosen one with
//! a fresh ballot. With promises from a majority it becomes leader: for every
//! instance some promise reported, it re-proposes the value accepted at the
//! highest ballot (Paxos' rule that keeps a possibly chosen value chosen), fills
//! holes with no-ops, and only then assigns new commands to instances.

use super::{Candidate, Gate, InFlight, Leader, Replica, Role};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::{AppliedMark, Body, PromiseEntry};
use crate::ready::RejectReason;
use crate::value::Value;
use std::collections::BTreeMap;

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
        self.round_seen = round;
        if let Role::Leader(_) = self.role {
            self.step_down();
        }
        self.leader = None;
        self.role = Role::Candidate(Candidate {
            ballot,
            promised_by: 0,
            pages_from: vec![self.learner.chosen_end; self.cfg.members.len()],
            compacted_end_reported: InstanceId(0),
            entries: BTreeMap::new(),
            prepare_sent_tick: self.now,
        });
        self.election_due_tick = self.random_election_timeout();
        // Safety: our own promise of `ballot` is persisted *before* any Prepare
        // carrying it leaves (the Prepares are gated on it). After a crash the
        // recovered promise is at least `ballot`, so the next ballot we pick is
        // higher: one ballot never serves two incarnations, and so never two
        // values for one instance.
        let promised = self.promise(ballot);
        debug_assert!(promised, "a fresh ballot is above the promise");
        let first_instance = self.learner.chosen_end;
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
            self.start_election();
            return;
        }
        let (ballot, promised_by, pages_from) = match &mut self.role {
            Role::Candidate(c) if self.now - c.prepare_sent_tick >= self.cfg.retransmit_ticks => {
                c.prepare_sent_tick = self.now;
                (c.ballot, c.promised_by, c.pages_from.clone())
            }
            _ => return,
        };
        // Ask each member whose promise is not complete for the page we wait
        // for: the first one, or the next one of a paginated promise.
        for (k, first_instance) in pages_from.into_iter().enumerate() {
            let to = self.cfg.members[k];
            if promised_by & (1 << k) == 0 && to != self.cfg.id {
                let body = Body::Prepare {
                    ballot,
                    first_instance,
                };
                self.send(to, body, Gate::Durable);
            }
        }
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
    ///   `compacted_end`; we never propose below it).
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
        let Some(k) = self.member_index(from) else {
            return;
        };
        let skip_adopt = self.injected().skip_adopt && from != self.cfg.id;
        let quorum = self.cfg.quorum();
        let election_ticks = self.cfg.election_ticks;
        let now = self.now;
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot || c.promised_by & (1 << k) != 0 {
            return;
        }
        if first_instance != c.pages_from[k] {
            return;
        }
        let page_end = more_from.unwrap_or(InstanceId(u64::MAX));
        let well_formed = more_from.is_none_or(|next| next > first_instance)
            && entries
                .iter()
                .all(|e| e.instance >= first_instance && e.instance < page_end);
        if !well_formed {
            debug_assert!(from != self.cfg.id, "our own promise page is malformed");
            return;
        }
        if !skip_adopt {
            c.compacted_end_reported = c.compacted_end_reported.max(compacted_end);
            for entry in entries {
                merge_entry(&mut c.entries, entry);
            }
        }
        match more_from {
            Some(next) => {
                c.pages_from[k] = next;
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
                c.promised_by |= 1 << k;
                if c.promised_by.count_ones() as usize >= quorum {
                    self.become_leader();
                }
            }
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
        // Every instance below a reported compacted prefix is chosen and only
        // a snapshot holds it: fetch it by catch-up, never propose into it.
        self.learner.commit_seen = self.learner.commit_seen.max(c.compacted_end_reported);
        let start = self.learner.chosen_end.max(c.compacted_end_reported);
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
        let recovery = c
            .entries
            .into_iter()
            .filter(|(instance, entry)| !entry.chosen && *instance >= start)
            .map(|(instance, entry)| (instance, entry.value))
            .collect();
        let members = self.cfg.members.len();
        self.role = Role::Leader(Leader {
            ballot: c.ballot,
            recovery,
            recovery_next: start,
            recovery_end: end,
            next_instance: end,
            progress_tick: self.now,
            in_flight: BTreeMap::new(),
            in_flight_bytes: 0,
            last_ack_tick: vec![self.now; members],
            heartbeat_sent_tick: self.now,
            announced_chosen_end: InstanceId(0),
            probe_sent: 0,
            probe_sent_tick: self.now,
            probe_acked: vec![0; members],
            unconfirmed: std::collections::VecDeque::new(),
        });
        self.flush_proposals();
        self.send_heartbeats();
    }

    /// Phase 2a for one instance.
    fn propose_at(&mut self, instance: InstanceId, value: Value) {
        let chosen_end = self.learner.chosen_end;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let ballot = leader.ballot;
        leader.announced_chosen_end = chosen_end;
        leader.in_flight_bytes += value.size_bytes();
        let previous = leader.in_flight.insert(
            instance,
            InFlight {
                value: value.clone(),
                acks: 0,
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

    /// Proposes, while the window has room, the instances phase 1 left to
    /// finish, then waiting commands in new instances.
    pub(super) fn flush_proposals(&mut self) {
        loop {
            let Role::Leader(leader) = &mut self.role else {
                return;
            };
            if leader.in_flight.len() >= self.cfg.window_instances_max
                || leader.in_flight_bytes >= self.cfg.window_bytes_max
            {
                return;
            }
            if leader.recovery_next < leader.recovery_end {
                let instance = leader.recovery_next;
                leader.recovery_next = instance.next();
                let value = leader.recovery.remove(&instance).unwrap_or(Value::Noop);
                if !self.learner.chosen.contains_key(&instance)
                    && instance >= self.learner.chosen_end
                {
                    self.propose_at(instance, value);
                }
                continue;
            }
            if self.pending.is_empty() {
                return;
            }
            let instance = leader.next_instance;
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
            if let Role::Leader(leader) = &mut self.role {
                leader.next_instance = instance.next();
            }
            let value = Value::batch(batch);
            // Every pending command passed `command_fits` (propose and
            // handle_forward), so a batch of one fits; `fits` keeps larger
            // batches within the bound.
            debug_assert!(value.encoded_len() <= self.cfg.value_bytes_max);
            debug_assert_eq!(value.encoded_len(), size.encoded);
            self.propose_at(instance, value);
        }
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
    pub(super) fn handle_forward(&mut self, commands: Vec<crate::value::Command>) {
        if matches!(self.role, Role::Follower) {
            // Not leading: drop. The follower's client times out and retries;
            // exactly-once is the state machine's job (command ids).
            return;
        }
        for command in commands {
            if self.pending.len() >= self.cfg.pending_commands_max {
                return;
            }
            // A follower checks its own proposals; one configured with a
            // larger limit must still not make us build a value too large
            // to send. Dropped like any lost forward: its client times out.
            if !self.command_fits(&command) {
                continue;
            }
            self.pending.push_back(command);
        }
    }

    /// True when `command` fits alone in an instance value.
    pub(super) fn command_fits(&self, command: &crate::value::Command) -> bool {
        command.len() <= self.cfg.command_bytes_max()
    }

    /// Phase 2b received.
    pub(super) fn handle_accepted(&mut self, from: NodeId, ballot: Ballot, instance: InstanceId) {
        let Some(k) = self.member_index(from) else {
            return;
        };
        let quorum = self.cfg.quorum();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        leader.last_ack_tick[k] = self.now;
        let Some(in_flight) = leader.in_flight.get_mut(&instance) else {
            return;
        };
        in_flight.acks |= 1 << k;
        if (in_flight.acks.count_ones() as usize) < quorum {
            return;
        }
        // Chosen: a majority accepted this value at this ballot, durably.
        let Some(in_flight) = leader.in_flight.remove(&instance) else {
            return;
        };
        leader.in_flight_bytes -= in_flight.value.size_bytes();
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
        let me = self.cfg.members.iter().position(|m| *m == self.cfg.id);
        let heard = leader
            .last_ack_tick
            .iter()
            .enumerate()
            .filter(|(k, tick)| Some(*k) == me || now - **tick < self.cfg.election_ticks)
            .count();
        if heard < self.cfg.quorum() {
            self.step_down();
            return;
        }
        // A leader that cannot learn instances it knows are chosen (the only
        // peer that had them is gone) makes no progress at all; standing down
        // lets a leader whose majority can re-propose them take over.
        if self.learner.chosen_end > self.learner.progress_mark {
            self.learner.progress_mark = self.learner.chosen_end;
            leader.progress_tick = now;
        }
        if self.learner.chosen_end < self.learner.commit_seen
            && now - leader.progress_tick > 10 * self.cfg.election_ticks
        {
            self.step_down();
            return;
        }
        let ballot = leader.ballot;
        let mut resend = Vec::new();
        for (instance, in_flight) in leader.in_flight.iter_mut() {
            if now - in_flight.sent_tick >= self.cfg.retransmit_ticks {
                in_flight.sent_tick = now;
                resend.push((*instance, in_flight.value.clone(), in_flight.acks));
            }
        }
        let heartbeat_due = now - leader.heartbeat_sent_tick >= self.cfg.heartbeat_ticks;
        let chosen_end = self.learner.chosen_end;
        for (instance, value, acks) in resend {
            for k in 0..self.cfg.members.len() {
                let to = self.cfg.members[k];
                if acks & (1 << k) == 0 && to != self.cfg.id {
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

    /// Sends the chosen prefix to followers now if it grew since they were
    /// last told (see `Leader::announced_chosen_end`). Called once per
    /// `take_ready`, after new Accepts (which carry the prefix) went out, so
    /// under load the prefix rides on Accepts and no extra message is sent.
    pub(super) fn announce_chosen(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        if self.learner.chosen_end > leader.announced_chosen_end {
            self.send_heartbeats();
        }
    }

    pub(super) fn send_heartbeats(&mut self) {
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        leader.heartbeat_sent_tick = self.now;
        // Every heartbeat round is a read probe (see `reads.rs`).
        leader.probe_sent += 1;
        leader.probe_sent_tick = self.now;
        let probe = leader.probe_sent;
        let ballot = leader.ballot;
        let chosen_end = self.learner.chosen_end;
        leader.announced_chosen_end = chosen_end;
        let applied = AppliedMark {
            applied_end: self.learner.applied_end,
            checksum: self.learner.checksum,
        };
        for k in 0..self.cfg.members.len() {
            let to = self.cfg.members[k];
            if to != self.cfg.id {
                let body = Body::Heartbeat {
                    ballot,
                    chosen_end,
                    applied,
                    probe,
                };
                self.send(to, body, Gate::Now);
            }
        }
    }

    /// Notes that a follower answered this leader.
    pub(super) fn note_ack(&mut self, from: NodeId, ballot: Ballot) {
        let Some(k) = self.member_index(from) else {
            return;
        };
        if let Role::Leader(leader) = &mut self.role {
            if leader.ballot == ballot {
                leader.last_ack_tick[k] = self.now;
            }
        }
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
