//! The state digest watch: replicas compare a digest of their *state*, not
//! only a checksum of the log they applied.
//!
//! The applied checksum (`learner.rs`) proves that replicas applied the same
//! values in the same order; it cannot see a state machine that turns the
//! same values into different states (one that reads a local clock, iterates
//! a randomly seeded hash map, or has a bug). A caller whose state machine
//! can digest its state cheaply reports the digest after applying, with
//! [`Replica::record_state_digest`]; every replica sends its newest recorded
//! mark to its peers now and then, and a peer that recorded a digest at the
//! same applied point compares: a mismatch is a [`Divergence`] of kind
//! [`DivergenceKind::State`]. A caller that records nothing sends nothing.
//!
//! Marks are compared only at equal points, so nothing is concluded from two
//! replicas that digested at different instances.

use super::{Gate, Replica, HISTORY_MARKS_MAX};
use crate::ids::{InstanceId, NodeId};
use crate::message::{Body, StateMark};
use crate::ready::{Divergence, DivergenceKind};
use crate::value::Checksum;
use std::collections::VecDeque;

/// The state digests this replica recorded, and what it told its peers.
#[derive(Debug, Default)]
pub(super) struct StateDigests {
    /// Recorded marks, oldest first, strictly increasing points (at most
    /// `HISTORY_MARKS_MAX`).
    marks: VecDeque<StateMark>,
    /// The point of the newest mark sent to peers.
    sent_end: Option<InstanceId>,
    /// When marks were last sent.
    sent_tick: u64,
}

impl Replica {
    /// Records the digest of the state machine's state after applying every
    /// instance below `applied_end` (and nothing more). Call it after acting
    /// on a `Ready`'s `install` and `apply`, with a digest that is a pure
    /// function of the state, so replicas at the same point agree. Points
    /// must not go backwards, except after an install (which clears the
    /// marks below its point).
    pub fn record_state_digest(&mut self, applied_end: InstanceId, digest: u64) {
        debug_assert!(applied_end <= self.learner.applied_end);
        let marks = &mut self.state_digests.marks;
        if applied_end > self.learner.applied_end {
            return;
        }
        while marks.back().is_some_and(|m| m.applied_end >= applied_end) {
            // A point at or below the newest mark: only after an install
            // moved the state (or a repeated report); keep the newest.
            marks.pop_back();
        }
        marks.push_back(StateMark {
            applied_end,
            digest,
        });
        if marks.len() > HISTORY_MARKS_MAX {
            marks.pop_front();
        }
    }

    /// Sends our newest state mark to every peer, once per heartbeat
    /// interval, when it is newer than the one sent last.
    pub(super) fn tick_state_digest(&mut self) {
        let digests = &self.state_digests;
        let Some(newest) = digests.marks.back().copied() else {
            return;
        };
        if digests.sent_end == Some(newest.applied_end)
            || self.now < digests.sent_tick + self.cfg.heartbeat_ticks
        {
            return;
        }
        self.state_digests.sent_end = Some(newest.applied_end);
        self.state_digests.sent_tick = self.now;
        for to in self.audience() {
            if to != self.cfg.id {
                self.send(to, Body::StateDigest { mark: newest }, Gate::Now);
            }
        }
    }

    /// A peer's state digest at its point: compare with ours there, if any.
    pub(super) fn handle_state_digest(&mut self, peer: NodeId, remote: StateMark) {
        let marks = &self.state_digests.marks;
        let Ok(k) = marks.binary_search_by_key(&remote.applied_end, |m| m.applied_end) else {
            return;
        };
        let local = marks[k];
        if local.digest != remote.digest {
            self.ready.diverged.push(Divergence {
                peer,
                applied_end: remote.applied_end,
                local: Checksum(local.digest),
                remote: Checksum(remote.digest),
                kind: DivergenceKind::State,
            });
        }
    }

    /// After an install the state is the snapshot's: digests recorded for
    /// the state before it are of nothing we hold now.
    pub(super) fn forget_state_digests(&mut self) {
        self.state_digests.marks.clear();
        self.state_digests.sent_end = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ids::GroupId;
    use crate::message::Message;

    fn replica(id: u32) -> Replica {
        Replica::new(Config::new(
            NodeId(id),
            vec![NodeId(1), NodeId(2), NodeId(3)],
        ))
        .expect("config")
    }

    /// Ticks `from` until it sends its state mark, then hands it to `to`;
    /// returns what `to` reported as divergence.
    fn exchange(from: &mut Replica, to: &mut Replica) -> Vec<Divergence> {
        for _ in 0..10 {
            from.tick();
            let ready = from.take_ready();
            let sent: Vec<Message> = ready
                .messages
                .into_iter()
                .filter(|m| m.to == to.cfg.id && matches!(m.body, Body::StateDigest { .. }))
                .collect();
            if !sent.is_empty() {
                for msg in sent {
                    to.step(msg);
                }
                return to.take_ready().diverged;
            }
        }
        panic!("no state mark sent");
    }

    #[test]
    fn equal_states_agree_and_different_states_diverge() {
        let (mut a, mut b, mut c) = (replica(1), replica(2), replica(3));
        a.record_state_digest(InstanceId(0), 7);
        b.record_state_digest(InstanceId(0), 7);
        c.record_state_digest(InstanceId(0), 8);
        assert!(exchange(&mut a, &mut b).is_empty());
        let diverged = exchange(&mut c, &mut a);
        assert_eq!(
            diverged,
            vec![Divergence {
                peer: NodeId(3),
                applied_end: InstanceId(0),
                local: Checksum(7),
                remote: Checksum(8),
                kind: DivergenceKind::State,
            }]
        );
    }

    #[test]
    fn marks_at_other_points_are_not_compared() {
        let mut a = replica(1);
        a.record_state_digest(InstanceId(0), 7);
        let mut b = replica(2);
        b.step(Message {
            group: GroupId(0),
            from: NodeId(1),
            to: NodeId(2),
            body: Body::StateDigest {
                mark: StateMark {
                    applied_end: InstanceId(0),
                    digest: 9,
                },
            },
        });
        assert!(b.take_ready().diverged.is_empty(), "b recorded nothing");
        let mut silent = replica(3);
        for _ in 0..10 {
            silent.tick();
        }
        assert!(
            !silent
                .take_ready()
                .messages
                .iter()
                .any(|m| matches!(m.body, Body::StateDigest { .. })),
            "a replica that records no digest sends none"
        );
    }
}
