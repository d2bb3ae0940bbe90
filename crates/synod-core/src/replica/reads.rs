//! Linearizable reads without the log (read index).
//!
//! A read submitted at time `t` must see every command that completed
//! anywhere before `t`. Sending it through the log costs a Paxos round and an
//! fsync at a majority; this costs one heartbeat round and no disk write:
//!
//! 1. The leader notes its *read index*: the end of what it knows chosen
//!    (`Replica::known_chosen_end`) or, when higher, the end of what phase 1
//!    reported (`Leader::recovery_end`) or a compacted prefix it reported
//!    (`Replica::read_index`), and the next heartbeat round (probe). Writes
//!    it proposed that are not chosen yet are not waited for: none of them
//!    can have completed (see Safety).
//! 2. It sends that round (at once, or when the round in flight is answered:
//!    reads that arrive meanwhile share the next one) and waits until a
//!    majority, itself included, acknowledged it at its ballot. In the
//!    steady state the round goes only to the quickest followers that
//!    majority needs (`Replica::read_round_targets`): on three nodes, one
//!    follower per round instead of two.
//! 3. Once every instance below the read index is applied, the read is served
//!    from the state machine.
//!
//! Followers ask the leader for a read index (`ReadIndexRequest`), wait
//! until they have applied up to it and serve the read themselves.
//!
//! A follower's request vouches. A follower `F` that sends a request while
//! its promise is exactly the ballot `b` of the leader `L` it asks (and it
//! is not rebuilding, and no lease grant to another leader holds there)
//! says so in the request (`vouch`). That request was sent after every
//! read in it arrived at `F`, so it stands as `F`'s acknowledgement of a
//! round sent after those reads arrived: at the send, `F` had promised no
//! ballot above `b`. `L`, leading at `b` when the request arrives, stands
//! for itself at that moment, as it does in every round. So when `L` and
//! `F` together make a quorum of every membership reads are confirmed
//! against (on three voters, whenever `L` is one of them: not, say, while
//! its own removal is pending) and phase 1 covers them (`reads_covered`;
//! the attack review showed a stale read without that check), `L` answers
//! at once, with its read index taken on arrival (`vouched_read_index`):
//! one round trip for a follower's read instead of two, and no heartbeat
//! round.
//!
//! For these reads the claim below holds from their arrival at `F`, not at
//! `L` (a read must see what completed before it began, and it began at
//! `F`): the proof goes through with `A = {L, F}`, both acknowledging
//! after the reads arrived at `F`. `F`'s promise only grows, so had it
//! promised `b' > b` before then, it could not have stated `b` after; and
//! `L` still leading at `b` on arrival has promised no `b' > b`. So a
//! deposed leader that has not noticed may answer a vouched request, but
//! only one sent before `F` promised the successor: its reads began before
//! the successor could complete a write (its promisers include `F` or `L`,
//! the two being a quorum, and `L` promised nothing above `b`). A
//! rebuilding replica states nothing (its lost incarnation may have
//! promised more), as it acknowledges round 0. Nor, as a precaution, does
//! one that holds another leader's lease grant: its heartbeat
//! acknowledgements confirm nothing then either (`lease.rs`, rule 1); the
//! read-index argument itself needs no grant.
//!
//! Safety. Claim: every instance applied anywhere before the read arrived at
//! the leader `L` (ballot `b`) lies below its read index: the end of what
//! `L` knows chosen then (`Replica::known_chosen_end`), or, when higher, the
//! end of what phase 1 reported (`recovery_end`) or a compacted prefix a
//! promise reported. Not the end of what `L` proposed: a write in flight
//! cannot have completed, so a read need not wait for it.
//!
//! How a replica comes to know an instance chosen (the callers of
//! `learn_chosen`): (a) as the leader of a ballot, by counting acceptances
//! at that ballot (`handle_accepted`); (b) from a commit in an Accept or a
//! Heartbeat of ballot `b'`, which only the leader of `b'` sends (both
//! handlers check `ballot.node == from`), naming a prefix of what that
//! leader knows chosen; (c) from a peer that knew it: a catch-up reply, a
//! promise entry marked chosen, a snapshot (which holds applied instances
//! only); (d) from its own log after a restart: what it knew before. So
//! whatever anyone knows chosen was first known by some leader counting
//! acceptances at its own ballot, at which the instance was then chosen.
//! And a replica applies an instance only once it knows it chosen.
//!
//! Take an instance `i` applied at some replica before the read arrived.
//! If `i` is below where `L`'s phase 1 began (its chosen prefix when it
//! campaigned), `L` knew it chosen then, and `known_chosen_end` is past it.
//! Otherwise, if a value was chosen at `i` at a ballot `< b`, a majority accepted it,
//! so phase 1 for `b` (complete for the membership of `i` before `L`
//! proposes there, see `confirm_reads`) heard of it from the majority that
//! promised: `recovery_end` is past `i` (or a reported compacted prefix
//! is). If at a ballot `b' > b` before the read arrived: the leader of `b'`
//! finished phase 1 with promises from a majority `P`; `L`'s round was
//! acknowledged by a majority `A` at `b`; an acceptor in `A ∩ P`
//! acknowledged (promise `<= b`) *after* the read arrived, so it promised
//! `b'` after that, and `i` was chosen after the read arrived: a
//! contradiction. An acknowledgement is sent only by an acceptor whose
//! promise is at most `b` (`handle_heartbeat`), and promises only grow (a
//! crash loses only promises never announced). Otherwise `i` was chosen
//! before the read arrived at `b` only, and by the above whoever knew that
//! learned it from `L`, the only replica that counts acceptances at `b`:
//! `L` knew `i` chosen when the read arrived, and what a leader knows
//! chosen only grows while it leads, so `known_chosen_end` is past `i`.
//! (The end of every instance `L` knows chosen, not only of its chosen
//! prefix: `L` may know `i` chosen while it still waits to re-choose an
//! instance below `i` that another replica knows chosen from an earlier
//! leader, and that replica may apply both. It could fetch `i` from `L` by
//! catch-up only past a hint above `L`'s prefix, which every source of one
//! names but a stranger's late Prepare, `door.rs`: narrow, not excluded.) Without the floors of phase 1
//! a new leader serves reads that miss its predecessor's completed writes:
//! the test `a_new_leader_serves_reads_past_what_its_predecessor_chose` and
//! its control `Inject::read_index_chosen_only` show it message by message.
//! The simulator catches that control: rarely under its random nemesis
//! (on five nodes, seed 720563), more often under the targeted one that
//! cuts a leader off as it applies, before its commits arrive anywhere
//! (`--scenario isolate-leader-on-apply`, seed 742103 on five nodes, 743071
//! on three). Without the cut, the new leader's quorum nearly always holds
//! the old leader or a replica that learned the instance chosen, and a
//! promise marks what its sender knows chosen, which the new leader then
//! learns at once.
//!
//! Compaction: a promiser that compacted a prefix reports nothing below it.
//! The read index is past every such prefix (`Replica::read_index`: all of it
//! is chosen), and no read is confirmed until the leader's chosen prefix has
//! reached it (`reads_covered`): before that, membership changes inside it,
//! and so the quorums a read must be confirmed by, may be unknown here.
//!
//! So the state a read is served from holds every command that completed
//! before the read began (its instance was applied where it completed), and
//! it is a prefix of the one log; a later read is served from a prefix at
//! least as long as any state an earlier read saw (those instances were
//! applied before it began). Reads and writes therefore linearize in log
//! order, each read at the end of the prefix it was served from.
//!
//! With [`crate::Config::read_lease`], a leader holding a lease confirms
//! reads (and answers followers' requests) at once instead: see `lease.rs`.
//!
//! Nothing here depends on clocks: a deposed leader that has not noticed
//! cannot confirm a round, because the majority that elected its successor
//! refuses its heartbeats (nor a vouched request sent after the follower
//! promised the successor: see above).

use super::{Leader, Replica, Role};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::Body;
use crate::ready::{ReadId, RejectReason};
use std::collections::BTreeMap;

use super::Gate;

/// A read at the leader, waiting for its round to be confirmed.
#[derive(Debug)]
pub(super) struct Unconfirmed {
    origin: Origin,
    /// The read index when the read arrived (`Replica::read_index`).
    index: InstanceId,
    /// The first heartbeat round sent after the read arrived.
    probe: u64,
}

/// Who asked.
#[derive(Debug)]
enum Origin {
    /// A read submitted here.
    Local(ReadId),
    /// A follower's request: answered with a `ReadIndexReply`.
    Remote(NodeId, u64),
}

/// A follower's request to the leader, waiting for its reply.
#[derive(Debug)]
struct Asked {
    leader: NodeId,
    reads: Vec<(ReadId, u64)>,
    sent_tick: u64,
}

/// Reads in progress at one replica.
#[derive(Debug)]
pub(super) struct ReadState {
    /// Follower: reads to ask the leader about, with the tick each was submitted.
    unsent: Vec<(ReadId, u64)>,
    /// Follower: requests sent, by request id.
    asked: BTreeMap<u64, Asked>,
    /// Follower: the next request id. Starts at a random point so that a
    /// reply to a previous incarnation's request is not taken for ours.
    next_request: u64,
    /// Confirmed reads waiting until every instance below their index is applied.
    waiting: Vec<(InstanceId, ReadId)>,
    /// Leader: follower requests confirmed by their vouch alone.
    vouched: u64,
}

impl ReadState {
    pub(super) fn new(first_request: u64) -> ReadState {
        ReadState {
            unsent: Vec::new(),
            asked: BTreeMap::new(),
            next_request: first_request,
            waiting: Vec::new(),
            vouched: 0,
        }
    }

    fn queued(&self) -> usize {
        self.unsent.len() + self.asked.values().map(|a| a.reads.len()).sum::<usize>()
    }
}

impl Leader {
    /// Notes a read that arrived now, to be served at `index` (taken now,
    /// `Replica::read_index`) once the next heartbeat round is confirmed.
    fn queue_read(&mut self, origin: Origin, index: InstanceId) {
        self.unconfirmed.push_back(Unconfirmed {
            origin,
            index,
            probe: self.probe_sent + 1,
        });
    }
}

impl Replica {
    /// The end of every instance this replica knows chosen: its chosen
    /// prefix, or past it where it knows later instances chosen (a leader
    /// counts acceptances as they come, in any order).
    pub(super) fn known_chosen_end(&self) -> InstanceId {
        let beyond = self.learner.chosen.keys().next_back().map(|i| i.next());
        self.learner.chosen_end.max(beyond.unwrap_or(InstanceId(0)))
    }

    /// Leader: where a read arriving now is served from (the claim in the
    /// module docs): past every instance it knows chosen, past every
    /// instance phase 1 reported (`recovery_end`: an earlier leader may
    /// have chosen and completed there, and this one may not know it
    /// chosen yet), and past every compacted prefix a promise reported
    /// (everything below one is chosen, and a voter that compacted reports
    /// none of it, so `recovery_end` may stop short; the leader holds back
    /// there until catch-up brings it or re-proposes what a quorum of the
    /// others reported, see `Phase1::compacted_by_voter`, and reads wait for
    /// it too).
    pub(super) fn read_index(&self) -> Option<InstanceId> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        let known = self.known_chosen_end();
        if self.injected().read_index_chosen_only {
            return Some(known);
        }
        let compacted = leader.phase1.compacted.values().max().copied();
        Some(
            known
                .max(leader.recovery_end)
                .max(compacted.unwrap_or(InstanceId(0))),
        )
    }

    /// Submits a linearizable read. The replica hands `id` back in
    /// [`crate::Ready::reads`] once the state machine, after applying that
    /// `Ready`'s `apply`, includes every command that completed before now; or
    /// in [`crate::Ready::rejected_reads`] (retry it). Costs no log instance:
    /// one heartbeat round at the leader, shared by the reads that arrive
    /// together, plus a request to the leader from a follower.
    pub fn read(&mut self, id: ReadId) -> Result<(), RejectReason> {
        let limit = self.cfg.pending_commands_max;
        if self.injected().leader_local_reads && matches!(self.role, Role::Leader(_)) {
            self.reads.waiting.push((InstanceId(0), id));
            return Ok(());
        }
        if let Some(index) = self.lease_read_index() {
            // Confirmed at once under the leader's lease (see `lease.rs`).
            if self.reads.waiting.len() >= limit {
                return Err(RejectReason::Overloaded);
            }
            self.reads.waiting.push((index, id));
            self.note_lease_read();
            return Ok(());
        }
        let index = self.read_index();
        match (&mut self.role, index) {
            (Role::Leader(leader), Some(index)) => {
                if leader.unconfirmed.len() >= limit {
                    return Err(RejectReason::Overloaded);
                }
                leader.queue_read(Origin::Local(id), index);
                Ok(())
            }
            (Role::Leader(_) | Role::Candidate(_), _) => Err(RejectReason::NoLeader),
            (Role::Follower, _) => {
                if self.leader.is_none() {
                    return Err(RejectReason::NoLeader);
                }
                if self.reads.queued() >= limit {
                    return Err(RejectReason::Overloaded);
                }
                self.reads.unsent.push((id, self.now));
                Ok(())
            }
        }
    }

    /// A follower asks for a read index; `vouch`, the promise it stated.
    pub(super) fn handle_read_index_request(
        &mut self,
        from: NodeId,
        id: u64,
        vouch: Option<Ballot>,
    ) {
        let limit = self.cfg.pending_commands_max;
        let at_once = match self.lease_read_index() {
            // Answered at once under the leader's lease (see `lease.rs`).
            Some(index) => {
                self.note_lease_read();
                Some(index)
            }
            // Or confirmed by the request itself (see the module docs).
            None => self.vouched_read_index(from, vouch).inspect(|_| {
                self.reads.vouched += 1;
            }),
        };
        if let Some(index) = at_once {
            let chosen_end = self.learner.chosen_end;
            let reply = Body::ReadIndexReply {
                id,
                index,
                chosen_end,
            };
            self.send(from, reply, Gate::Now);
            // Its reads wait until it knows `index` chosen.
            self.want_chosen(from, Some(index));
            return;
        }
        // Not leading: no answer; the follower asks again or gives up.
        let index = self.read_index();
        if let (Role::Leader(leader), Some(index)) = (&mut self.role, index) {
            if leader.unconfirmed.len() < limit {
                leader.queue_read(Origin::Remote(from, id), index);
            }
        }
    }

    /// Where a follower's read request is served from when the request
    /// confirms it by itself: `from`'s stated promise `vouch` is this
    /// leader's ballot, phase 1 covers every membership counted, and this
    /// leader with `from` is a quorum of each (see the module docs).
    fn vouched_read_index(&self, from: NodeId, vouch: Option<Ballot>) -> Option<InstanceId> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        if vouch != Some(leader.ballot) || !self.reads_covered() {
            return None;
        }
        let pair = [self.cfg.id, from];
        let quorum = self
            .schedule
            .memberships_from(self.learner.chosen_end)
            .chain(leader.reconfigs_in_flight.values())
            .all(|m| self.is_quorum_of(m, &pair));
        if !quorum {
            return None;
        }
        self.read_index()
    }

    /// What a follower states in a read request to `leader`: its promise, if
    /// that is `leader`'s ballot and it may acknowledge `leader` (see the
    /// module docs and `handle_heartbeat`).
    fn vouch_for(&self, leader: NodeId) -> Option<Ballot> {
        let promised = self.acceptor.promised;
        (promised.node == leader && self.rebuild.is_none() && self.could_grant(leader))
            .then_some(promised)
    }

    /// How many follower reads this leader confirmed by the request alone
    /// (no heartbeat round; see the module docs).
    pub fn vouched_reads(&self) -> u64 {
        self.reads.vouched
    }

    /// The leader answered a request of ours.
    pub(super) fn handle_read_index_reply(
        &mut self,
        from: NodeId,
        id: u64,
        index: InstanceId,
        chosen_end: InstanceId,
    ) {
        // The reply is valid whoever leads now: it was confirmed after our
        // request (hence after every read in it) arrived. Only the node we
        // asked can answer, and only once.
        if self.reads.asked.get(&id).is_some_and(|a| a.leader == from) {
            // What it says is chosen is a hint for catch-up, as a
            // heartbeat's prefix is: catch-up fetches only values a peer
            // knows chosen, so a wrong claim costs a fetch, never safety.
            self.learner.commit_seen = self.learner.commit_seen.max(chosen_end);
            if let Some(asked) = self.reads.asked.remove(&id) {
                for (read, _) in asked.reads {
                    self.reads.waiting.push((index, read));
                }
            }
        }
    }

    /// A follower acknowledged heartbeat round `probe` of ballot `ballot`.
    pub(super) fn note_probe_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        probe: u64,
        granted: crate::config::Lease,
    ) {
        let lease_ok = self.cfg.read_lease.is_some_and(|own| {
            granted.duration_ms >= own.duration_ms && granted.drift_ppm <= own.drift_ppm
        });
        if let Role::Leader(leader) = &mut self.role {
            if leader.ballot == ballot && probe <= leader.probe_sent {
                if probe == leader.full_probe && !leader.full_probe_order.contains(&from) {
                    leader.full_probe_order.push(from);
                }
                let acked = leader.probe_acked.entry(from).or_insert(0);
                *acked = (*acked).max(probe);
                if lease_ok {
                    let acked = leader.lease_acked.entry(from).or_insert(0);
                    *acked = (*acked).max(probe);
                }
                self.extend_lease();
                self.confirm_reads();
            }
        }
    }

    /// Whether this leader's phase 1 covers every membership that reads are
    /// confirmed against (see `confirm_reads`): a quorum of each promised,
    /// and everything phase 1 found is proposed.
    pub(super) fn reads_covered(&self) -> bool {
        let Role::Leader(leader) = &self.role else {
            return false;
        };
        if leader.next_instance < leader.recovery_end {
            return false;
        }
        // A promiser that compacted past our chosen prefix reported nothing
        // below its prefix, memberships changes there included: the
        // memberships that govern later instances (and whose quorums a
        // read must be confirmed by) are unknown here until catch-up brings
        // that prefix (an attack review's scenario: a leader confirmed by
        // the old membership's quorum while the new one completed writes).
        if leader
            .phase1
            .compacted
            .values()
            .any(|end| *end > self.learner.chosen_end)
        {
            return false;
        }
        self.schedule
            .memberships_from(self.learner.chosen_end)
            .chain(leader.reconfigs_in_flight.values())
            .all(|m| self.is_quorum_of(m, &leader.phase1.promised_by))
    }

    /// The highest round a majority (this leader included) acknowledged, in
    /// every membership that governs an instance from the chosen prefix on
    /// and in every reconfiguration this leader has in flight.
    ///
    /// Why every one: a rival leader that chose something this one does not
    /// know did so first at some instance `i` at or after our chosen prefix
    /// `c`. If `i < next + α` (`next` = our cursor), `membership(i)` is fixed
    /// by values below `next`, which are chosen or ours: one of the
    /// memberships counted here. A quorum of it acknowledging a round sent
    /// after the read arrived says none of them had promised the rival
    /// then, so the rival had chosen nothing there yet. And the rival cannot
    /// choose at `i >= next + α` before choosing below it.
    pub(super) fn probe_confirmed(&self) -> u64 {
        self.round_confirmed(false)
    }

    /// The latest round a quorum of every membership acknowledged: with
    /// `leases`, counting only acknowledgements that granted a lease at
    /// least as long and as strict as this leader's (see `lease.rs`).
    pub(super) fn round_confirmed(&self, leases: bool) -> u64 {
        let Role::Leader(leader) = &self.role else {
            return 0;
        };
        let acks = if leases {
            &leader.lease_acked
        } else {
            &leader.probe_acked
        };
        let memberships = self
            .schedule
            .memberships_from(self.learner.chosen_end)
            .chain(leader.reconfigs_in_flight.values());
        let mut confirmed = u64::MAX;
        // Runs as acknowledgements arrive: the usual memberships' rounds are
        // sorted on the stack, not in an allocation per call.
        let mut on_stack = [0u64; 16];
        let mut on_heap = Vec::new();
        for membership in memberships {
            let rounds = membership.voters().map(|v| {
                if v == self.cfg.id {
                    leader.probe_sent
                } else {
                    acks.get(&v).copied().unwrap_or(0)
                }
            });
            let voters = membership.voters().count();
            let acked: &mut [u64] = if voters <= on_stack.len() {
                for (slot, round) in on_stack.iter_mut().zip(rounds) {
                    *slot = round;
                }
                &mut on_stack[..voters]
            } else {
                on_heap.clear();
                on_heap.extend(rounds);
                &mut on_heap
            };
            acked.sort_unstable_by(|a, b| b.cmp(a));
            let quorum = membership.quorum();
            confirmed = confirmed.min(acked.get(quorum - 1).copied().unwrap_or(0));
        }
        confirmed
    }

    /// Moves the reads whose round a majority acknowledged on: local ones
    /// wait to be applied, remote ones are answered.
    ///
    /// Safety with membership changes: a read is confirmed only once phase 1
    /// is complete for a quorum of every membership counted in
    /// `probe_confirmed` and every value it found is proposed (the cursor is
    /// past `recovery_end`), and its index is taken *then* (a larger index
    /// than at arrival only includes more). A write an earlier leader
    /// completed at instance `i` was accepted by a quorum of membership(i);
    /// membership(i) is one of those counted (for `i` below the chosen
    /// prefix + α it is fixed by the chosen log; above, by values this
    /// leader adopted and proposed, so it is in force, waiting or in
    /// flight), so a member of that quorum promised us and reported `i`:
    /// `recovery_end` is past `i`, and so is the index.
    fn confirm_reads(&mut self) {
        if !self.reads_covered() {
            return;
        }
        let confirmed = self.probe_confirmed();
        let mut replies = Vec::new();
        let index = self.read_index();
        if let (Role::Leader(leader), Some(index)) = (&mut self.role, index) {
            while leader
                .unconfirmed
                .front()
                .is_some_and(|u| u.probe <= confirmed)
            {
                let Some(read) = leader.unconfirmed.pop_front() else {
                    break;
                };
                let index = index.max(read.index);
                match read.origin {
                    Origin::Local(id) => self.reads.waiting.push((index, id)),
                    Origin::Remote(node, id) => replies.push((node, id, index)),
                }
            }
        }
        let chosen_end = self.learner.chosen_end;
        for (node, id, index) in replies {
            let reply = Body::ReadIndexReply {
                id,
                index,
                chosen_end,
            };
            self.send(node, reply, Gate::Now);
            // Its reads wait until it knows `index` chosen.
            self.want_chosen(node, Some(index));
        }
    }

    /// Called from `take_ready`: sends a follower's new reads to the leader;
    /// at the leader, starts a round for reads that need one.
    pub(super) fn flush_reads(&mut self) {
        if !self.reads.unsent.is_empty() {
            let unsent = std::mem::take(&mut self.reads.unsent);
            // Taken now, after these reads arrived: only later.
            let index = self.read_index();
            match (&mut self.role, self.leader, index) {
                (Role::Follower, Some(leader), _) if leader != self.cfg.id => {
                    let id = self.reads.next_request;
                    self.reads.next_request = id.wrapping_add(1);
                    self.reads.asked.insert(
                        id,
                        Asked {
                            leader,
                            reads: unsent,
                            sent_tick: self.now,
                        },
                    );
                    let vouch = self.vouch_for(leader);
                    self.send(leader, Body::ReadIndexRequest { id, vouch }, Gate::Now);
                }
                (Role::Leader(leader), _, Some(index)) => {
                    for (id, _) in unsent {
                        leader.queue_read(Origin::Local(id), index);
                    }
                }
                _ => {
                    for (id, _) in unsent {
                        self.ready.rejected_reads.push((id, RejectReason::NoLeader));
                    }
                }
            }
        }
        let confirmed = self.probe_confirmed();
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let needs_round = leader
            .unconfirmed
            .back()
            .is_some_and(|u| u.probe > leader.probe_sent);
        // One round in flight at a time: reads arriving meanwhile share the
        // next. A round that is not answered in time is superseded; a
        // partial one after a tick, by a round to everyone.
        let answered = confirmed >= leader.probe_sent;
        // The last round went to only some members (none was full since).
        let partial = leader.full_probe < leader.probe_sent;
        let partial_late = partial && self.now > leader.probe_sent_tick;
        let round_free = answered
            || partial_late
            || self.now - leader.probe_sent_tick >= self.cfg.retransmit_ticks;
        // Reads waiting on a partial round nobody answered for a tick: the
        // chosen follower may be down, so everyone is asked (a tick that
        // happens to fall while a round is in flight costs one full round).
        let stalled = partial_late && !answered && !leader.unconfirmed.is_empty();
        if (needs_round || stalled) && round_free {
            // A round superseded (unanswered) goes to everyone.
            let partial_targets = if answered {
                self.read_round_targets()
            } else {
                None
            };
            match partial_targets {
                Some(targets) => self.send_heartbeat_round(Some(targets)),
                None => self.send_heartbeats(),
            }
            // Alone, the round is confirmed by this replica's own vote.
            self.extend_lease();
            self.confirm_reads();
        }
    }

    /// Whom a read round goes to, when not to everyone: the quickest voters
    /// that make a quorum with this leader. `None`, a round to
    /// everyone, unless the leader is in the steady state where confirming
    /// reads is all a round is for: one membership, this leader a voter of
    /// it, no proposal in flight (followers busy with accepts and syncs
    /// answer late, and either may be the quick one), no chosen prefix to
    /// announce (with nothing in flight, `announce_chosen` sends a round to
    /// everyone in the same step or, for a busy leader, a little later:
    /// this round to everyone is that announcement, now), no change or
    /// transfer under way.
    ///
    /// A round sent to fewer members confirms exactly what it did before:
    /// a quorum's acknowledgements, counted by `probe_confirmed` as ever.
    /// Only liveness depends on the choice:
    /// - The quickest are those that answered the last full round first
    ///   (`Leader::full_probe_order`); a member that stopped answering, or
    ///   whose answers cannot count (a rebuilding node acknowledges round
    ///   0), drops out of that order at the next full round, at least once
    ///   a heartbeat interval.
    /// - A chosen member that does not answer within a tick makes the next
    ///   round go to everyone (`flush_reads`).
    /// - A member whose read (a `ReadIndexRequest`) waits for the round
    ///   gets no heartbeat for it: the reply carries the chosen prefix its
    ///   read may wait for. An asker is not given a place in the quorum
    ///   either (a rebuilding node asks for its clients' reads, but its
    ///   acknowledgements confirm nothing); an asker that vouched, where it
    ///   and the leader are a quorum, had its read answered on arrival.
    ///
    /// On three nodes this wakes one follower per round instead of two.
    fn read_round_targets(&self) -> Option<Vec<NodeId>> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        if !leader.in_flight.is_empty()
            || !leader.reconfigs_in_flight.is_empty()
            || leader.change_queued.is_some()
            || leader.transfer.is_some()
            || leader.announced_chosen_end < self.learner.chosen_end
        {
            return None;
        }
        let mut memberships = self.schedule.memberships_from(self.learner.chosen_end);
        let membership = memberships.next()?;
        if memberships.next().is_some() || !membership.is_voter(self.cfg.id) {
            return None;
        }
        let mut targets: Vec<NodeId> = membership.voters().filter(|v| *v != self.cfg.id).collect();
        let others = targets.len();
        let rank = |v: &NodeId| {
            leader
                .full_probe_order
                .iter()
                .position(|o| o == v)
                .unwrap_or(usize::MAX)
        };
        // The full round's answers may be on their way still: then those
        // that answered the latest rounds.
        let acked = |v: &NodeId| leader.probe_acked.get(v).copied().unwrap_or(0);
        targets.sort_by_key(|v| (rank(v), std::cmp::Reverse(acked(v)), *v));
        targets.truncate(membership.quorum() - 1);
        (targets.len() < others).then_some(targets)
    }

    /// Called from `take_ready` last: hands out confirmed reads whose index
    /// is applied (their values are in this or an earlier `Ready::apply`).
    pub(super) fn release_reads(&mut self) {
        let applied_end = self.learner.applied_end;
        let ready = &mut self.ready.reads;
        self.reads.waiting.retain(|(index, id)| {
            if *index <= applied_end {
                ready.push(*id);
                false
            } else {
                true
            }
        });
    }

    /// Asks again for requests unanswered for a retransmit interval (the
    /// request or its reply may be lost, or the leader changed), and refuses
    /// reads that waited an election timeout without an answer.
    pub(super) fn tick_reads(&mut self) {
        let now = self.now;
        let due: Vec<u64> = self
            .reads
            .asked
            .iter()
            .filter(|(_, a)| now - a.sent_tick >= self.cfg.retransmit_ticks)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(asked) = self.reads.asked.remove(&id) else {
                continue;
            };
            for (read, submitted) in asked.reads {
                if now - submitted >= self.cfg.election_ticks {
                    self.ready
                        .rejected_reads
                        .push((read, RejectReason::NoLeader));
                } else {
                    self.reads.unsent.push((read, submitted));
                }
            }
        }
    }

    /// Refuses reads a deposed leader can no longer confirm.
    pub(super) fn reject_unconfirmed(
        &mut self,
        unconfirmed: std::collections::VecDeque<Unconfirmed>,
    ) {
        for read in unconfirmed {
            if let Origin::Local(id) = read.origin {
                self.ready
                    .rejected_reads
                    .push((id, RejectReason::LostLeadership));
            }
        }
    }
}
