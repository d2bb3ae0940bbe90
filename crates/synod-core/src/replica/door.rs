//! The door: which peer messages a replica admits, and why it refuses the
//! others. Every refusal is counted per reason ([`Refusals`]); the runtime
//! exports the counters and logs them, rate limited. Nothing is dropped
//! silently.
//!
//! # Ballot rounds stay in range
//!
//! A ballot round is a `u64`, and a replica refuses rounds at or above
//! [`ROUND_LIMIT`] so that every `+ 1` is safe. That alone let one forged
//! Accept at round `ROUND_LIMIT - 1` end the cluster: every acceptor
//! adopted it (durably), and the next honest ballot was out of range and
//! dropped everywhere, forever. Two rules prevent and repair that:
//!
//! 1. **The ceiling.** A replica admits a message only if every ballot in
//!    it has a round of at most `quorum_round + ROUND_JUMP_MAX`, where
//!    `quorum_round` is the highest round that a majority of the members
//!    (this replica included, through its own promise) have shown they hold
//!    a promise at. A member shows it by the messages it sends: its own
//!    ballot in a Prepare, Accept or Heartbeat; the ballot it answers in a
//!    Promise, Accepted or HeartbeatAck; its promise in a Reject, a
//!    StateReport or a read request's vouch. (`member_rounds`, updated before the ceiling is checked,
//!    so that refused messages still count.) One member, buggy or forged,
//!    moves only its own entry, and a majority's round does not move with
//!    it: its huge ballots are refused.
//!
//!    *Safety.* Refusing a message is always safe in Paxos: it is a lost
//!    message. No promise is lowered and nothing is accepted because of it.
//!
//!    *Liveness.* An honest candidate picks one round above the highest it
//!    has admitted (`start_election`), so honest rounds grow by one per
//!    election. A round is refused by a replica only if it is more than
//!    `ROUND_JUMP_MAX` = 2^32 above what a majority holds in that replica's
//!    view, which takes 2^32 elections that no majority took part in:
//!    at one election per tick (the fastest possible) and a 1 ms tick, 49
//!    days; at the defaults (0.5 s minimum election timeout), 68 years.
//!    When a majority moves to a higher round, every member sees it (the
//!    leader's Accepts and Heartbeats, the Rejects a campaigning member
//!    gets) and follows.
//!
//! 2. **Headroom.** `ROUND_LIMIT` is 2^63; the first release refused rounds
//!    from 2^62 on, so any promise a node may hold on disk from then is
//!    below 2^62 and leaves 2^62 rounds of room. A cluster whose durable
//!    promises were pushed to 2^62 - 1 recovers by itself: the next
//!    candidate picks 2^62, and each replica admits it once a majority shows
//!    it holds 2^62 - 1 or more. Reaching 2^63 from there through the
//!    ceiling takes 2^31 jumps that each need a majority of members to
//!    vouch for them, which honest members never do and (with authenticated
//!    peer links) no outsider can.
//!
//! A replica whose own durable promise is far above a majority's (pushed
//! there alone) cannot lower it (that would be unsafe); it refuses the
//! majority's lower ballots, but it still learns how far the log is chosen
//! from their heartbeats and catches up; it votes again once a majority
//! moves past its promise, or after `--rebuild`.

use super::Replica;
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::message::{Body, Message};

/// Rounds and instances at or above these are refused at the door: no real
/// run comes near them, and refusing them keeps every `+ 1` from
/// overflowing. (See the module docs for why rounds have room below.)
pub(super) const ROUND_LIMIT: u64 = 1 << 63;
pub(super) const INSTANCE_LIMIT: u64 = 1 << 62;

/// How far above the round a majority holds an admitted ballot may be.
pub const ROUND_JUMP_MAX: u64 = 1 << 32;

/// Why a replica refused a message from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// For another Paxos group.
    WrongGroup,
    /// Addressed to another node.
    WrongRecipient,
    /// Claims to come from this replica itself.
    FromSelf,
    /// From a node that is not a member.
    NonMember,
    /// A ballot round or instance at or above the protocol's limits.
    OutOfRange,
    /// A ballot round more than [`ROUND_JUMP_MAX`] above the round a
    /// majority holds (see the module docs).
    BallotJump,
    /// A Prepare, Accept or Heartbeat whose ballot is not its sender's.
    ForeignBallot,
}

impl Refusal {
    /// Every reason, in the order of [`Refusals`]' counters.
    pub const ALL: [Refusal; 7] = [
        Refusal::WrongGroup,
        Refusal::WrongRecipient,
        Refusal::FromSelf,
        Refusal::NonMember,
        Refusal::OutOfRange,
        Refusal::BallotJump,
        Refusal::ForeignBallot,
    ];

    /// A short name, for metric labels and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::WrongGroup => "wrong_group",
            Refusal::WrongRecipient => "wrong_recipient",
            Refusal::FromSelf => "from_self",
            Refusal::NonMember => "non_member",
            Refusal::OutOfRange => "out_of_range",
            Refusal::BallotJump => "ballot_jump",
            Refusal::ForeignBallot => "foreign_ballot",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Messages refused since the replica started, per [`Refusal`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    counts: [u64; Refusal::ALL.len()],
}

impl Refusals {
    /// How many messages were refused for `reason`.
    pub fn get(&self, reason: Refusal) -> u64 {
        self.counts[reason.index()]
    }

    /// Every reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    /// All refusals together.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub(super) fn count(&mut self, reason: Refusal) {
        let count = &mut self.counts[reason.index()];
        *count = count.saturating_add(1);
    }
}

impl Replica {
    /// Decides whether `msg` is admitted (see the module docs).
    pub(super) fn admit(&mut self, msg: &Message) -> Result<(), Refusal> {
        if msg.group != self.cfg.group {
            return Err(Refusal::WrongGroup);
        }
        if msg.to != self.cfg.id {
            return Err(Refusal::WrongRecipient);
        }
        if msg.from == self.cfg.id {
            return Err(Refusal::FromSelf);
        }
        if !within_limits(&msg.body) {
            return Err(Refusal::OutOfRange);
        }
        if !self.knows_member(msg.from) {
            if self.hint_from_stranger(msg) {
                return Ok(());
            }
            self.answer_removed(msg);
            return Err(Refusal::NonMember);
        }
        if let Some(round) = held_round(&msg.body, msg.from) {
            let held = self.member_rounds.entry(msg.from).or_insert(0);
            *held = (*held).max(round);
        }
        let highest = highest_round(&msg.body);
        // Rounds up to our own promise raise nothing here (neither the
        // promise nor, through `observe`, our next ballot beyond the
        // promise), so they need no ceiling; this also spares the sort
        // for almost every message.
        if highest > self.acceptor.promised.round && highest > self.round_ceiling() {
            return Err(Refusal::BallotJump);
        }
        Ok(())
    }

    /// Counts a message a handler refused.
    pub(super) fn refuse(&mut self, reason: Refusal) {
        self.refusals.count(reason);
    }

    /// A node we do not know may be the leader (or a member) of a
    /// membership we have not learned yet: we were down or cut off while it
    /// was added, and the members we know may all be gone since. Its
    /// heartbeat or Prepare is refused (and counted), but a replica that does not lead
    /// notes how far the log is chosen and whom to catch up from; the
    /// catch-up replies and snapshot pieces of that source are then let in
    /// (returns true), so the replica learns the changes that admit the
    /// sender. Nothing else is taken from a stranger, and nothing at all
    /// from a removed node. (Peers are authenticated members of the
    /// cluster; a member could feed false catch-up already.)
    fn hint_from_stranger(&mut self, msg: &Message) -> bool {
        if self.schedule.latest().was_removed(msg.from) {
            return false;
        }
        match &msg.body {
            // A leader's heartbeat says how far the log is chosen; so does a
            // candidate's first Prepare (its `first_instance` is its own
            // chosen prefix; a leader asking a member late asks from its
            // next instance, at most a window of proposals beyond, so the
            // hint may overshoot by that much: catch-up then asks for a
            // little more than is chosen yet, which costs one more round).
            // The Prepare matters when no leader can be
            // elected without us: the members that replaced the ones we
            // know campaign, and we are the vote they need (seeds 6116 and
            // 80916 in the simulator: a voter that missed its peers'
            // replacement, and a new member still rebuilding).
            Body::Heartbeat { chosen_end, .. }
            | Body::Prepare {
                first_instance: chosen_end,
                ..
            } => {
                if !matches!(self.role, super::Role::Leader(_))
                    && *chosen_end > self.learner.chosen_end
                {
                    self.learner.commit_seen = self.learner.commit_seen.max(*chosen_end);
                    self.learner.stranger_source = Some(msg.from);
                }
                false
            }
            Body::CatchupReply { .. } | Body::SnapshotChunk { .. } => {
                self.learner.stranger_asked == Some(msg.from)
            }
            _ => false,
        }
    }

    /// The highest round admitted now: `ROUND_JUMP_MAX` above the round a
    /// majority of the voters in force hold.
    pub(super) fn round_ceiling(&self) -> u64 {
        let membership = self.membership_at(self.learner.chosen_end).clone();
        let mut rounds: Vec<u64> = membership
            .voters()
            .map(|voter| {
                let round = self.member_rounds.get(&voter).copied().unwrap_or(0);
                if voter == self.cfg.id {
                    round.max(self.acceptor.promised.round)
                } else {
                    round
                }
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let majority = rounds.len() / 2 + 1;
        let quorum_round = rounds.get(majority - 1).copied().unwrap_or(0);
        quorum_round.saturating_add(ROUND_JUMP_MAX)
    }
}

/// The round `from` shows, by sending `body`, that it holds a promise at.
fn held_round(body: &Body, from: NodeId) -> Option<u64> {
    let own = |ballot: &Ballot| (ballot.node == from).then_some(ballot.round);
    match body {
        // Its own ballot: it promised it before sending.
        Body::Prepare { ballot, .. }
        | Body::Accept { ballot, .. }
        | Body::Heartbeat { ballot, .. }
        | Body::TakeOver { ballot, .. } => own(ballot),
        // A ballot it promised or accepted.
        Body::Promise { ballot, .. }
        | Body::Accepted { ballot, .. }
        | Body::HeartbeatAck { ballot, .. } => Some(ballot.round),
        // Its promise, stated.
        Body::Reject { promised, .. } | Body::StateReport { promised, .. } => Some(promised.round),
        Body::ReadIndexRequest {
            vouch: Some(promised),
            ..
        } => Some(promised.round),
        _ => None,
    }
}

/// The highest ballot round anywhere in `body` (0 when it carries none).
fn highest_round(body: &Body) -> u64 {
    match body {
        Body::Prepare { ballot, .. }
        | Body::Accept { ballot, .. }
        | Body::Accepted { ballot, .. }
        | Body::Heartbeat { ballot, .. }
        | Body::HeartbeatAck { ballot, .. } => ballot.round,
        Body::Promise {
            ballot, entries, ..
        } => entries
            .iter()
            .map(|e| e.ballot.round)
            .fold(ballot.round, u64::max),
        Body::Reject { ballot, promised } => ballot.round.max(promised.round),
        Body::StateReport { promised, .. } => promised.round,
        Body::TakeOver { ballot, .. } => ballot.round,
        Body::MemberRequest { .. } | Body::MemberReply { .. } => 0,
        Body::ReadIndexRequest { vouch, .. } => vouch.map_or(0, |b| b.round),
        Body::ReadIndexReply { .. }
        | Body::Forward { .. }
        | Body::CatchupRequest { .. }
        | Body::CatchupReply { .. }
        | Body::SnapshotChunk { .. }
        | Body::SnapshotRequest { .. }
        | Body::StateDigest { .. }
        | Body::StateQuery => 0,
    }
}

/// True when every ballot round and instance in `body` is below the limits.
fn within_limits(body: &Body) -> bool {
    let ballot_ok = |b: &Ballot| b.round < ROUND_LIMIT;
    let instance_ok = |i: &InstanceId| i.0 < INSTANCE_LIMIT;
    match body {
        Body::Prepare {
            ballot,
            first_instance,
        } => ballot_ok(ballot) && instance_ok(first_instance),
        Body::Promise {
            ballot,
            compacted_end,
            first_instance,
            entries,
            more_from,
        } => {
            ballot_ok(ballot)
                && instance_ok(compacted_end)
                && instance_ok(first_instance)
                && more_from.as_ref().is_none_or(instance_ok)
                && entries
                    .iter()
                    .all(|e| ballot_ok(&e.ballot) && instance_ok(&e.instance))
        }
        Body::Accept {
            ballot,
            instance,
            chosen_end,
            ..
        } => ballot_ok(ballot) && instance_ok(instance) && instance_ok(chosen_end),
        Body::Accepted { ballot, instance } => ballot_ok(ballot) && instance_ok(instance),
        Body::Reject { ballot, promised } => ballot_ok(ballot) && ballot_ok(promised),
        Body::Heartbeat {
            ballot,
            chosen_end,
            applied,
            ..
        }
        | Body::HeartbeatAck {
            ballot,
            chosen_end,
            applied,
            ..
        } => ballot_ok(ballot) && instance_ok(chosen_end) && instance_ok(&applied.applied_end),
        Body::ReadIndexRequest { vouch, .. } => vouch.as_ref().is_none_or(ballot_ok),
        Body::ReadIndexReply {
            index, chosen_end, ..
        } => instance_ok(index) && instance_ok(chosen_end),
        Body::Forward { .. } => true,
        Body::CatchupRequest { from, to } => instance_ok(from) && instance_ok(to),
        Body::CatchupReply { entries } => entries.iter().all(|(i, _)| instance_ok(i)),
        Body::SnapshotChunk { meta, .. } => instance_ok(&meta.applied_end),
        Body::SnapshotRequest { applied_end, .. } => instance_ok(applied_end),
        Body::StateDigest { mark } => instance_ok(&mark.applied_end),
        Body::StateQuery => true,
        Body::TakeOver { ballot, .. } => ballot_ok(ballot),
        Body::MemberRequest { .. } => true,
        Body::MemberReply { outcome, .. } => {
            outcome.as_ref().is_ok_and(|e| *e < INSTANCE_LIMIT)
                || outcome.as_ref().is_err_and(|why| why.len() <= 4096)
        }
        Body::StateReport {
            promised, log_end, ..
        } => ballot_ok(promised) && instance_ok(log_end),
    }
}
