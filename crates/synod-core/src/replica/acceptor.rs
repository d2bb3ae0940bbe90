//! The acceptor role: Prepare and Accept.
//!
//! Safety rests on two rules, both enforced here:
//! 1. An acceptor never takes part in a ballot below its promise.
//! 2. An acceptor's Promise or Accepted leaves only after the record behind it is
//!    durable (`Gate::Durable`). An acceptor that forgot a promise or an accepted
//!    value after a crash could let a second value be chosen for an instance.

use super::{Gate, Refusal, Replica, Role};
use crate::config::PROMISE_ENTRY_OVERHEAD_BYTES;
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::{Body, PromiseEntry};
use crate::record::Record;
use crate::value::Value;

impl Replica {
    /// Gate for an acceptor's answers: durable, unless the negative control
    /// `ack_before_fsync` is on.
    fn acceptor_gate(&self) -> Gate {
        if self.injected().ack_before_fsync {
            Gate::Now
        } else {
            Gate::Durable
        }
    }

    /// Raises the promise to `ballot`, persisting it. Returns false (and does
    /// nothing) when `ballot` is below the promise.
    pub(super) fn promise(&mut self, ballot: Ballot) -> bool {
        if ballot < self.acceptor.promised {
            return false;
        }
        if ballot > self.acceptor.promised {
            self.acceptor.promised = ballot;
            self.persist(Record::Promise {
                group: self.cfg.group,
                ballot,
            });
        }
        // Both callers checked the lease rules for `ballot` first.
        self.lease.promised_here = self.lease.promised_here.max(Some(ballot));
        true
    }

    /// Phase 1b.
    pub(super) fn handle_prepare(&mut self, from: NodeId, ballot: Ballot, first: InstanceId) {
        if ballot.node != from {
            // A candidate only prepares its own ballot.
            self.refuse(Refusal::ForeignBallot);
            return;
        }
        self.observe(ballot);
        if self.rebuild.is_some() {
            // Rebuilding: no promise, not even a refusal (see `rebuild.rs`).
            return;
        }
        if ballot < self.acceptor.promised {
            let promised = self.acceptor.promised;
            self.send(from, Body::Reject { ballot, promised }, Gate::Now);
            return;
        }
        if from != self.cfg.id && self.follows_live_leader(from) {
            // Leader stickiness: while a leader is heard from, a node that merely
            // lost contact with it must not depose it. Refusing is always safe
            // (it only costs liveness); the candidate retries later.
            let promised = self.acceptor.promised;
            self.send(from, Body::Reject { ballot, promised }, Gate::Now);
            return;
        }
        if self.lease_refuses_promise(ballot) {
            // A leader may hold a read lease counting on this acceptor not
            // to promise anyone else yet (see `lease.rs`, rules 1 and 2).
            // Like stickiness, refusing only costs the candidate time.
            let promised = self.acceptor.promised;
            self.send(from, Body::Reject { ballot, promised }, Gate::Now);
            return;
        }
        if ballot > self.acceptor.promised && ballot.node != self.cfg.id {
            self.step_down();
            self.leader = None;
        } else if self.promise_paged == Some((ballot, first)) {
            // The candidate we promised asks for exactly the page our last
            // answer pointed to: it heard us, and its phase 1 is making
            // progress, as its own timer counts it (`handle_promise`). Give
            // it an election timeout from now before campaigning ourselves;
            // otherwise a phase 1 of many pages (a log with many instances
            // accepted but not known chosen) outlasts the promisers' timers,
            // and each new candidate's ballot cuts the last one short, round
            // after round (simulator seed 913113 on 5 nodes: 7 s without a
            // leader). Only that page counts, once: a candidate re-sending
            // a page (page 1 on every retransmission, when it hears nothing)
            // proves nothing, and one that cannot hear us would otherwise
            // keep us from ever campaigning (the fourth review's deaf
            // candidate). So the extensions end with the candidate's pages.
            self.election_due_tick = self
                .election_due_tick
                .max(self.now + self.cfg.election_ticks);
        }
        // Also for a repeated Prepare of the promised ballot: it passed the
        // lease checks just now, so later repeats may skip them.
        self.promise(ballot);
        // Below the compacted prefix only the snapshot is left; the candidate
        // treats it as chosen and fetches the snapshot. From there on we report
        // every instance we accepted or know chosen, one page at a time (the
        // candidate asks for the next page; see `handle_promise` for why
        // pages are safe).
        // Values dropped from memory (`values_from`, above the compacted
        // prefix) count as compacted: every instance below `values_from` is
        // applied, hence chosen, so reporting it as compacted is as safe.
        let (entries, more_from) = self.promise_entries(first.max(self.learner.values_from));
        if let Some(next) = more_from {
            // Only forward within a ballot: a repeated request for an earlier
            // page does not move the mark back (it would count again).
            let behind = matches!(self.promise_paged, Some((b, at)) if b == ballot && at >= next);
            if ballot.node != self.cfg.id && !behind {
                self.promise_paged = Some((ballot, next));
            }
        }
        let body = Body::Promise {
            ballot,
            compacted_end: self.learner.values_from,
            first_instance: first,
            entries,
            more_from,
        };
        let gate = self.acceptor_gate();
        self.send(from, body, gate);
    }

    /// One page of what this acceptor knows of every instance from `first`
    /// on: the entries, in instance order, and where the next page starts
    /// (`None` when this page reaches the end). A page holds at most
    /// `promise_bytes_max` encoded bytes of entries, or one entry.
    ///
    /// Safety: where a value is known chosen, the entry carries *that* value,
    /// never an older accepted one. An acceptor may still hold an accepted
    /// value from an earlier ballot at an instance it learned chosen from a
    /// peer (the accepted map is pruned only below the chosen prefix); marking
    /// that stale value as chosen would make a new leader adopt it over the
    /// real one. (Found by review: a five-node scenario, pinned in
    /// tests/all/scenarios.rs.)
    fn promise_entries(&self, first: InstanceId) -> (Vec<PromiseEntry>, Option<InstanceId>) {
        let mut accepted = self.acceptor.accepted.range(first..).peekable();
        let mut chosen = self.learner.chosen.range(first..).peekable();
        let mut entries = Vec::new();
        let mut bytes = 0;
        // Bounded: each round consumes an entry of one of two finite maps.
        loop {
            let next_accepted = accepted.peek().map(|(i, _)| **i);
            let next_chosen = chosen.peek().map(|(i, _)| **i);
            let instance = match (next_accepted, next_chosen) {
                (None, None) => return (entries, None),
                (Some(a), None) => a,
                (None, Some(c)) => c,
                (Some(a), Some(c)) => a.min(c),
            };
            let accepted_here = if next_accepted == Some(instance) {
                accepted.next().map(|(_, entry)| entry)
            } else {
                None
            };
            let entry = if next_chosen == Some(instance) {
                let value = chosen.next().map(|(_, v)| v.clone()).unwrap_or(Value::Noop);
                let ballot = match accepted_here {
                    Some((accepted_ballot, accepted_value)) if *accepted_value == value => {
                        *accepted_ballot
                    }
                    _ => Ballot::ZERO,
                };
                PromiseEntry {
                    instance,
                    ballot,
                    value,
                    chosen: true,
                }
            } else {
                let Some((ballot, value)) = accepted_here else {
                    debug_assert!(false, "an instance from neither map");
                    return (entries, None);
                };
                PromiseEntry {
                    instance,
                    ballot: *ballot,
                    value: value.clone(),
                    chosen: false,
                }
            };
            let entry_bytes = PROMISE_ENTRY_OVERHEAD_BYTES + entry.value.encoded_len();
            if !entries.is_empty() && bytes + entry_bytes > self.cfg.promise_bytes_max {
                return (entries, Some(instance));
            }
            bytes += entry_bytes;
            entries.push(entry);
        }
    }

    /// Phase 2b.
    pub(super) fn handle_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        instance: InstanceId,
        value: Value,
        chosen_end: InstanceId,
    ) {
        self.observe(ballot);
        if self.rebuild.is_some() {
            // Rebuilding: learn who leads and how far the log is chosen, so
            // catch-up knows what to fetch, but accept nothing (see
            // `rebuild.rs`).
            if ballot.node == from && from != self.cfg.id {
                self.follow(from);
            }
            self.learner.commit_seen = self.learner.commit_seen.max(chosen_end);
            return;
        }
        if ballot.node != from {
            self.refuse(Refusal::ForeignBallot);
        }
        if ballot < self.acceptor.promised || ballot.node != from {
            let promised = self.acceptor.promised;
            self.send(from, Body::Reject { ballot, promised }, Gate::Now);
            return;
        }
        if from != self.cfg.id {
            self.follow(from);
        }
        if instance >= self.learner.chosen_end
            && self.restore_backlog_full()
            && !matches!(
                self.acceptor.accepted.get(&instance),
                Some((accepted_ballot, _)) if *accepted_ballot == ballot
            )
        {
            // The values held back for a restore reached their bound: no
            // vote, no promise raised, nothing written (see
            // `restore_backlog_full`). Still learn how far the log is
            // chosen, from values accepted before.
            self.learner.transfer_stats.accepts_deferred += 1;
            self.learn_commit(ballot, chosen_end);
            return;
        }
        // Accepting at `ballot` implies promising it; the Accept record carries
        // the ballot, and recovery takes the promise as the highest of both.
        let raised = ballot > self.acceptor.promised;
        self.acceptor.promised = ballot;
        let gate = match self.acceptor_gate() {
            // A leader's vote for its own proposal: durable before it
            // counts, like any vote, but it need not hurry the sync while
            // the followers choose without it (`awaits_durability`).
            Gate::Durable if from == self.cfg.id && matches!(self.role, Role::Leader(_)) => {
                if self.injected().self_vote_before_fsync {
                    Gate::Now
                } else {
                    Gate::Lazy
                }
            }
            gate => gate,
        };
        if instance < self.learner.chosen_end {
            if raised {
                // No Accept record is written for a chosen instance, so the
                // raised promise needs a record of its own: a later Promise
                // for this ballot (a leader re-asks members that have not
                // promised it, see `ask_promises`) goes out with nothing new
                // to persist, and a restart would forget what it claims
                // (acceptor amnesia; simulator seed 50 with membership changes).
                self.persist(Record::Promise {
                    group: self.cfg.group,
                    ballot,
                });
            }
            // Already chosen here. By Paxos (P2c) a value proposed for this
            // instance at a ballot at or above the one it was chosen at equals
            // the chosen value: acknowledging it without a record cannot help
            // choose anything else. A *different* value can only come from a
            // leader of a lower ballot that has not heard of its successors
            // (seen in the simulator: a paused leader waking up). It can never
            // be chosen, since the majority that chose this instance promised
            // a higher ballot; it is not acknowledged, so the stale leader
            // gathers no votes for it. Below a compacted prefix (or below
            // `values_from`, where applied values left memory ahead of the
            // next checkpoint) the chosen value is gone from memory, so
            // nothing can be compared: no
            // vote either (a defence in depth: a leader that broke P2c there
            // would otherwise get our vote for any value; it learns how far
            // we are chosen from our heartbeat answers and catches up).
            let same = self
                .learner
                .chosen
                .get(&instance)
                .is_some_and(|chosen| *chosen == value);
            if same {
                self.send(from, Body::Accepted { ballot, instance }, gate);
            }
        } else {
            let duplicate = matches!(
                self.acceptor.accepted.get(&instance),
                Some((accepted_ballot, _)) if *accepted_ballot == ballot
            );
            if !duplicate {
                self.acceptor
                    .accepted
                    .insert(instance, (ballot, value.clone()));
                self.persist(Record::Accept {
                    group: self.cfg.group,
                    instance,
                    ballot,
                    value,
                });
            }
            self.send(from, Body::Accepted { ballot, instance }, gate);
        }
        self.learn_commit(ballot, chosen_end);
    }

    /// True when this replica heard from a leader other than `candidate` within
    /// the minimum election timeout (or leads itself).
    fn follows_live_leader(&self, candidate: NodeId) -> bool {
        match self.role {
            Role::Leader(_) => true,
            Role::Candidate(_) => false,
            Role::Follower => match self.leader {
                Some(leader) if leader != candidate => {
                    self.now.saturating_sub(self.leader_contact_tick) < self.cfg.election_ticks
                }
                _ => false,
            },
        }
    }

    /// Notes that `leader` leads: resets the election timer; a candidate or
    /// leader with a lower ballot stands down.
    pub(super) fn follow(&mut self, leader: NodeId) {
        if leader == self.cfg.id {
            return;
        }
        if !matches!(self.role, Role::Follower) {
            self.step_down();
        }
        if self.leader != Some(leader) {
            self.leader = Some(leader);
        }
        self.leader_contact_tick = self.now;
        self.election_due_tick = self.random_election_timeout();
    }
}
