//! Rebuild mode: a replica that lost its durable state (a wiped or replaced
//! disk) rejoins as a non-voting member and votes again only once that is
//! safe. The technique is Paxos Made Live's (Chandra, Griesemer, Redstone,
//! §5.1); the rule below makes its "a complete instance started after the
//! rebuild began" precise in ballots and instances.
//!
//! # Why a wiped acceptor must not vote
//! An acceptor that forgets a promise or an accepted value can let two values
//! be chosen at one instance: `x` chosen at instance 0 by n1 and n2; n2's disk
//! is wiped; n3 (which never saw `x`) runs phase 1 with the empty n2, learns
//! of no value at instance 0, and gets `y` chosen there by n3 and n2.
//!
//! # The rule
//! While rebuilding, the replica
//! - answers no Prepare and no Accept (not even with a refusal), never
//!   campaigns, and acknowledges heartbeats with probe 0, which confirms no
//!   leader read (its lost incarnation may have promised a higher ballot);
//! - learns as any follower does: commit points from heartbeats and Accepts,
//!   chosen values by catch-up and snapshots;
//! - asks every other member for a [`Body::StateReport`]: its promise and
//!   its log end (one past every instance it accepted or knows chosen). A
//!   member that is rebuilding itself answers that it vouches for nothing.
//!
//! It votes again once (1) every other member has answered, and at least a
//! quorum of them vouch (are not rebuilding themselves), (2) its chosen
//! prefix covers the highest log end reported (every instance any member
//! knew of when asked is chosen and known here), and (3) its promise, raised
//! to the highest ballot reported, is durable.
//!
//! # Safety argument
//! Call the lost incarnation *old* and the rebuilt one *new*. After (3), new
//! behaves as an acceptor that never forgot anything would be allowed to:
//! - *Promises.* Every ballot `b` old promised or accepted belongs to a
//!   proposer that persisted its own promise of `b` before any message
//!   carrying `b` left (`start_election`), and promises only grow. If that
//!   proposer is another member, its report (taken after the rebuild began)
//!   is at least `b`; if it was old itself, some member promised `b` before
//!   old could use it in phase 2 (it needed a majority, n >= 2), so again a
//!   report is at least `b`. New's promise is raised to the highest report
//!   before it votes, so it never accepts below a ballot old promised, and
//!   its own next ballot is above every ballot old may have used.
//! - *Accepted values.* Old accepted a value at instance `i` only after its
//!   leader had proposed `i`; the leader's own acceptance is in its accepted
//!   map (or its chosen prefix) from then on, so its log end exceeds `i`
//!   (a leader that crashed and lost an undurable self-acceptance made no
//!   majority with old alone). Every such `i` is therefore below the highest
//!   reported log end, which by (2) new's chosen prefix covers: in any
//!   later phase 1 new reports those instances with their *chosen* values
//!   (`promise_entries`), which is what a never-wiped acceptor that learned
//!   them would report too. Above that bound old accepted nothing.
//! - Waiting for *every* member, not a majority, is what makes the promise
//!   bound hold: the proposer whose candidacy counted old's promise can be
//!   any member, and it may still be collecting promises. A member that is
//!   rebuilding itself lost that candidacy with its disk (candidate state
//!   lives in memory, and it never campaigns while rebuilding), so its
//!   empty answer is enough there. (In a three-member group a majority of
//!   the others is both of them anyway.)
//! - At least a quorum of vouching members bounds the loss: a value was
//!   chosen by a quorum of acceptors; with fewer than a quorum of members
//!   wiped, at least one of that quorum survives, reports the instance in
//!   its log end, and keeps the value (or the chosen mark) for catch-up.
//!   With a quorum or more wiped (two of three), every copy of a chosen
//!   value may be gone: no rebuild finishes, and an operator must decide.
//!   The cost: a rebuild waits until every other member answers.
//!
//! Assumption: no message sent by old is delivered after the rebuild began
//! (a restarted process's connections die with it; the simulator's disk-wipe
//! nemesis drops the wiped node's messages in flight).

use super::{Gate, Replica};
use crate::config::Config;
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::Body;

/// Progress of a rebuild.
#[derive(Debug)]
pub(super) struct Rebuild {
    /// Bit `k` set: member `k` answered (this replica's own bit is preset).
    reported: std::collections::BTreeSet<NodeId>,
    /// Bit `k` set: member `k` answered and was not rebuilding itself (this
    /// replica's own bit is preset; it does not count towards the quorum).
    vouched: std::collections::BTreeSet<NodeId>,
    /// Highest promise reported.
    promised_max: Ballot,
    /// Highest log end reported.
    log_end_max: InstanceId,
    /// When the last queries went out.
    query_sent_tick: Option<u64>,
    /// Set once (1) and (2) hold: the replica votes once the first this many
    /// records (its raised promise included) are durable.
    resume_at: Option<u64>,
}

impl Rebuild {
    /// The rebuild state a replica starts with under `cfg`: `None` unless it
    /// must rebuild (or the `wipe_votes` negative control is on).
    pub(super) fn start(cfg: &Config) -> Option<Rebuild> {
        #[cfg(feature = "fault-injection")]
        if cfg.inject.wipe_votes {
            return None;
        }
        if !cfg.rebuild {
            return None;
        }
        Some(Rebuild {
            reported: [cfg.id].into(),
            vouched: [cfg.id].into(),
            promised_max: Ballot::ZERO,
            log_end_max: InstanceId(0),
            query_sent_tick: None,
            resume_at: None,
        })
    }
}

impl Replica {
    /// True while this replica rebuilds lost state and does not vote. Once
    /// false it stays false; its raised promise is durable by then. A runtime
    /// should record durably that the rebuild finished (so that a restart
    /// does not start it over, which would be safe but slow).
    pub fn rebuilding(&self) -> bool {
        self.rebuild.is_some()
    }

    /// One past the highest instance this replica accepted or knows chosen.
    fn log_end(&self) -> InstanceId {
        let accepted = self.acceptor.accepted.keys().next_back().map(|i| i.next());
        let chosen = self.learner.chosen.keys().next_back().map(|i| i.next());
        [accepted, chosen, Some(self.learner.chosen_end)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.learner.chosen_end)
    }

    /// Sends the state queries due: to every member that has not vouched
    /// (not answered, or rebuilding itself when it answered), at first and
    /// then every `retransmit_ticks`.
    pub(super) fn tick_rebuild(&mut self) {
        let Some(rebuild) = &mut self.rebuild else {
            return;
        };
        let due = rebuild
            .query_sent_tick
            .is_none_or(|sent| self.now - sent >= self.cfg.retransmit_ticks);
        if !due || rebuild.resume_at.is_some() {
            return;
        }
        rebuild.query_sent_tick = Some(self.now);
        let vouched = rebuild.vouched.clone();
        let missing: Vec<NodeId> = self
            .schedule
            .members_from(self.learner.chosen_end)
            .into_iter()
            .filter(|m| !vouched.contains(m))
            .collect();
        for to in missing {
            self.send(to, Body::StateQuery, Gate::Now);
        }
    }

    /// A rebuilding peer asks for our bounds. The report may include records
    /// not yet durable: a bound that is too high only delays the rebuild.
    pub(super) fn handle_state_query(&mut self, from: NodeId) {
        let body = if self.rebuild.is_some() {
            // We cannot vouch for anything we may have forgotten.
            Body::StateReport {
                rebuilding: true,
                promised: Ballot::ZERO,
                log_end: InstanceId(0),
            }
        } else {
            Body::StateReport {
                rebuilding: false,
                promised: self.acceptor.promised,
                log_end: self.log_end(),
            }
        };
        self.send(from, body, Gate::Now);
    }

    pub(super) fn handle_state_report(
        &mut self,
        from: NodeId,
        rebuilding: bool,
        promised: Ballot,
        log_end: InstanceId,
    ) {
        self.observe(promised);
        let Some(rebuild) = &mut self.rebuild else {
            return;
        };
        if rebuild.resume_at.is_some() {
            // The bounds are fixed; later reports change nothing.
            return;
        }
        rebuild.reported.insert(from);
        if rebuilding {
            // It vouches for nothing now; `tick_rebuild` asks again, and it
            // counts once it votes again.
            return;
        }
        rebuild.vouched.insert(from);
        rebuild.promised_max = rebuild.promised_max.max(promised);
        rebuild.log_end_max = rebuild.log_end_max.max(log_end);
    }

    /// Ends the rebuild once safe (see the module docs): raises the promise
    /// when every member reported and the chosen prefix covers every log end
    /// reported, then votes once that promise is durable.
    pub(super) fn check_rebuild_done(&mut self) {
        // Called as the chosen prefix grows: nothing to look up (the
        // audience, a copy of the membership) while no rebuild runs.
        if self.rebuild.is_none() {
            return;
        }
        let audience = self.schedule.members_from(self.learner.chosen_end);
        let membership = self.membership_at(self.learner.chosen_end).clone();
        let me = self.cfg.id;
        let held = self.learner.apply_held;
        let Some(rebuild) = &mut self.rebuild else {
            return;
        };
        if rebuild.resume_at.is_none() {
            let all_reported = audience.iter().all(|m| rebuild.reported.contains(m));
            let vouchers = rebuild
                .vouched
                .iter()
                .filter(|v| **v != me && membership.is_voter(**v))
                .count();
            if held
                || !all_reported
                || vouchers < membership.quorum()
                || self.learner.chosen_end < rebuild.log_end_max
            {
                return;
            }
            let bound = rebuild.promised_max;
            if bound > self.acceptor.promised {
                // Persisted like any promise; `persist_next` below covers it.
                self.acceptor.promised = bound;
                self.persist(crate::record::Record::Promise {
                    group: self.cfg.group,
                    ballot: bound,
                });
            }
            self.round_seen = self.round_seen.max(bound.round);
            if let Some(rebuild) = &mut self.rebuild {
                rebuild.resume_at = Some(self.persist_next);
            }
        }
        let Some(resume_at) = self.rebuild.as_ref().and_then(|r| r.resume_at) else {
            return;
        };
        if self.durable < resume_at {
            return;
        }
        debug_assert!(self.acceptor.promised >= self.rebuild_promised_bound());
        self.rebuild = None;
        // Votes from now on; campaigns only after a full election timeout.
        self.election_due_tick = self.random_election_timeout();
    }

    fn rebuild_promised_bound(&self) -> Ballot {
        self.rebuild
            .as_ref()
            .map_or(Ballot::ZERO, |r| r.promised_max)
    }

    /// True while the raised promise waits to be durable before voting.
    pub(super) fn rebuild_awaits_durability(&self) -> bool {
        self.rebuild
            .as_ref()
            .and_then(|r| r.resume_at)
            .is_some_and(|at| self.durable < at)
    }
}
