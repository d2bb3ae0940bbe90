//! Master election for applications: "only one of us runs the jobs"
//! (PhxPaxos's `GetMaster`, `IsIMMaster`, `SetMasterLease`, `DropMaster`).
//!
//! The master is the Paxos leader. [`crate::Node::is_leader`] and
//! [`crate::Node::leadership`] say what this node believes now, which can be
//! stale: a leader cut off from the others goes on believing it leads until
//! it hears otherwise, while the rest elect another. For actions that must
//! never run on two nodes at once, ask for a [`MasterLease`] before each one.
//!
//! # The guarantee
//!
//! [`crate::Node::master_lease`] answers `Some(lease)` only when **no other
//! node can be master (be given a master lease, or even finish an election)
//! before [`MasterLease::valid_until`]**, an instant on this node's monotonic
//! clock. It is derived from the leader read lease
//! ([`crate::NodeConfig::read_lease`], which must be set; otherwise the
//! answer is always `None`): a majority of every membership in play
//! acknowledged a heartbeat round of this leader, each promising, for
//! `duration_ms` of its own clock, to help no other candidate. The leader
//! holds the lease `D = ⌊(L − 1)(1 − ρ)/(1 + ρ)⌋` ms from the round's send,
//! which ends before any of those promises can, whatever the clocks do
//! within the bound. A lease lent is given up only by running out: a
//! leadership transfer ([`crate::Node::transfer_leader`], a shutdown, the
//! leader's removal) and a membership change wait until the last lease lent
//! has run out before they go ahead, and the node promises nothing to
//! another candidate until then, even after it stopped leading (details and the proof in
//! `synod-core`'s `replica/master.rs` and `replica/lease.rs`).
//!
//! # The assumption
//!
//! Every member's monotonic clock advances at a **rate** within
//! `read_lease.drift_ppm` parts per million of real time, over every
//! interval. Offsets between clocks do not matter, nor do steps of the wall
//! clock (NTP steps, an operator's `date`). A clock that stops while real
//! time goes on breaks it: a virtual machine suspended and resumed whose
//! `CLOCK_MONOTONIC` skips the suspension.
//!
//! # What the application must do
//!
//! The lease is a statement about time, and the process may stall between
//! checking it and acting (a GC pause, SIGSTOP, swapping, a slow disk).
//! So: ask for the lease **before each action**, start the action only if
//! [`MasterLease::remaining`] covers it with a margin, and keep actions
//! shorter than the lease (with the default timing `D` is about 390 ms).
//! Longer work is split into steps, each checked. Record what was done
//! through the log with the lease's [`MasterLease::ballot`] (a fencing
//! token: it grows with each new master), so readers can tell masters apart.
//!
//! # Stepping down
//!
//! [`crate::Node::drop_leadership`] makes the leader step down and not
//! campaign for [`crate::DROP_HOLD_ELECTION_TIMEOUTS`] ×
//! `election_ticks` ticks (2 s with the default 10 ms tick and 50-tick
//! election timeout: twice the longest election timeout), so another voter
//! is elected meanwhile, once its election timeout fires (0.5 to 1 s with
//! the defaults after it last heard this node) and the promises behind
//! this node's last lease ran out. A lease lent before stays valid until
//! its end: no other node is master before then.

use crate::driver::Driver;
use crate::state_machine::StateMachine;
use std::time::{Duration, Instant};
use synod_core::Ballot;
use tokio::sync::oneshot;

/// This node is the only master until [`MasterLease::valid_until`] (see
/// [`crate::master`] for the guarantee and its assumption).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterLease {
    /// The ballot this node leads at: a new master always has a higher one,
    /// so it orders masters (a fencing token for what they record).
    pub ballot: Ballot,
    /// No other node is master before this instant (on this node's
    /// monotonic clock).
    pub valid_until: Instant,
}

impl MasterLease {
    /// How long the lease still holds from now (zero once it ran out).
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Whether the lease still holds now.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Whether an action that takes at most `action` and starts now ends
    /// before the lease does.
    pub fn covers(&self, action: Duration) -> bool {
        Instant::now()
            .checked_add(action)
            .is_some_and(|end| end < self.valid_until)
    }
}

/// The master requests a `Node` handle submits.
pub(crate) enum MasterSubmit {
    /// [`crate::Node::master_lease`].
    Lease(oneshot::Sender<Option<MasterLease>>),
    /// [`crate::Node::drop_leadership`]: answers whether the node led.
    Drop(oneshot::Sender<bool>),
}

impl<S: StateMachine> Driver<S> {
    /// A master request from the handle. The engine's replica was given a
    /// fresh time just before (the lease is measured from it).
    pub(crate) fn master_submit(&mut self, submit: MasterSubmit) {
        match submit {
            MasterSubmit::Lease(reply) => {
                let lease = self.engine.replica.master_lease().map(|lease| MasterLease {
                    ballot: lease.ballot,
                    // The replica's clock is whole ms since `started`,
                    // rounded down: it reads `until_ms` exactly from here.
                    valid_until: self.started_at() + Duration::from_millis(lease.until_ms),
                });
                let _ = reply.send(lease);
            }
            MasterSubmit::Drop(reply) => {
                let led = self.engine.replica.drop_leadership();
                if led {
                    tracing::info!(
                        node = self.cfg.id.0,
                        "dropped leadership on request; not campaigning for a while"
                    );
                }
                let _ = reply.send(led);
            }
        }
    }
}
