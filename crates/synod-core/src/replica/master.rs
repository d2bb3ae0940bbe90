//! Master leases: "only one of us does X" for applications (PhxPaxos's
//! `GetMaster` / `IsIMMaster` / `DropMaster`), derived from the leader lease
//! of `lease.rs`. Needs [`crate::Config::read_lease`].
//!
//! # The guarantee
//!
//! [`Replica::master_lease`] answers `Some(lease)` only to a leader that
//! could serve a read by lease now (`lease.rs`, rule 4). Then **no other
//! replica is given a master lease, nor completes phase 1 of a higher
//! ballot, before this replica's clock reads `lease.until_ms`**, provided
//! every member's clock keeps the drift *rate* bound of `Lease::drift_ppm`
//! (offsets do not matter).
//!
//! Why. `until_ms = t0 + D` for a heartbeat round sent at local `t0` and
//! acknowledged by a quorum `Q` of every membership in play, each member
//! holding a grant for this leader. By the "Why `D`" argument of `lease.rs`,
//! every grant behind it holds, in real time, past the moment this clock
//! reads `until_ms`. A rival needs promises of a quorum `P` of one of those
//! memberships to lead at a higher ballot; a member of `P ∩ Q` refuses such
//! a promise while its grant holds (rule 1), or for `L` after a restart
//! (rule 2). A rival's own master lease needs its own lease, hence grants of
//! a quorum, and a member keeps a grant for this leader rather than grant a
//! second leader (`grant_lease`). So no rival leads, let alone holds a
//! master lease, before `until_ms` here.
//!
//! The leader's own vote is in `Q` too, and counts without a grant while it
//! leads (`follows_live_leader`). A master lease outlives the leadership it
//! was lent under (a leader that hears a higher ballot steps down at once),
//! so while a lease it lent may be in use a replica promises no ballot of
//! another node (`lease_refuses_promise`): the grant it gives itself ends
//! exactly when the lease does, on the same clock. (Found by the
//! simulator's checker, seed 86: the old leader stepped down on a rival's
//! `Reject`, then promised the rival, which completed phase 1 with it.)
//!
//! The one way a grant is dropped early is `TakeOver` (rule 5), sent by a
//! leadership transfer. Reads stop at once when the transfer steps down, but
//! an application may act on a master lease lent before it. So
//! `check_transfer` sends no `TakeOver` before this incarnation's clock
//! passes the latest `until_ms` it lent (`LeaseState::master_lent_until_ms`,
//! kept across role changes: a grant at an older
//! ballot of this node is released by a `TakeOver` of a newer one), and no
//! lease is lent while a transfer waits. The wait counts toward nothing: the
//! transfer's timeout starts once it is over.
//!
//! Membership changes. A lease is counted against the memberships in play
//! when it is lent (rule 4 of `lease.rs`); a reconfiguration proposed later
//! brings in a membership whose quorums need not include any node that
//! granted it (new nodes, or nodes cut off from the leader that learn the
//! change from others). So `flush_proposals` proposes no reconfiguration
//! while a lent lease may be in use, and no lease is lent while a change
//! waits to be proposed. A change proposed before the lend is in flight or
//! scheduled then, so the lend needed a quorum of its membership too.
//!
//! # What the application must do
//!
//! The lease is a promise about *time on this node's monotonic clock*. A
//! process paused (GC, SIGSTOP, a swapped page) after checking the lease
//! may act after `until_ms`, when another node may already be master. So
//! the application asks for the lease before each action, and starts an
//! action only when its remaining time covers it. A monotonic clock that
//! stops while real time goes on (a suspended VM whose clock skips the
//! suspension) is beyond the drift bound: then nothing holds.
//!
//! # Stepping down
//!
//! [`Replica::drop_leadership`] steps down and campaigns for no ballot for
//! `DROP_HOLD_ELECTION_TIMEOUTS × election_ticks` ticks. It sends no
//! `TakeOver`, so the grants behind any lease it lent keep holding until they
//! run out (under `L`), after which another voter is elected at its own
//! election timeout (at most `2 × election_ticks` after it last heard the
//! leader). The hold outlasts two such timeouts, so another voter that can
//! reach a quorum is elected first.

use super::{Replica, Role};
use crate::ids::Ballot;

/// How long a replica that dropped leadership keeps from campaigning, in
/// multiples of `Config::election_ticks`: twice the longest election
/// timeout (which is drawn below `2 × election_ticks`).
pub const DROP_HOLD_ELECTION_TIMEOUTS: u64 = 4;

/// A master lease lent to the application (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterLease {
    /// The ballot this replica leads at: increases with every new master,
    /// so it orders masters (a fencing token for actions recorded in the
    /// log).
    pub ballot: Ballot,
    /// No other replica is master before this replica's clock (the time
    /// given to [`Replica::set_time`]) reads this, in ms.
    pub until_ms: u64,
}

impl Replica {
    /// The master lease this replica holds now, if it leads and holds a
    /// leader lease under which it could serve a read at once (see the
    /// module docs for the guarantee). Set a fresh time first
    /// ([`Replica::set_time`]). Records the lease as lent: a leadership
    /// transfer waits until it ran out.
    ///
    /// `None` without [`crate::Config::read_lease`], while not leading, while
    /// the lease is not (or no longer) held, while phase 1 does not cover
    /// every membership, while a leadership transfer is in progress, and
    /// while a membership change waits to be proposed.
    pub fn master_lease(&mut self) -> Option<MasterLease> {
        // The conditions of a read by lease (rule 4 of `lease.rs`).
        self.lease_read_index()?;
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        if leader.transfer.is_some() || leader.change_queued.is_some() {
            return None;
        }
        let until_ms = leader.lease.held_until_ms()?;
        let ballot = leader.ballot;
        debug_assert!(self.lease.clock().is_some_and(|now| now < until_ms));
        let lent = &mut self.lease.master_lent_until_ms;
        *lent = Some(lent.map_or(until_ms, |l| l.max(until_ms)));
        Some(MasterLease { ballot, until_ms })
    }

    /// Whether a master lease lent by this incarnation may still be in use
    /// (the local clock has not passed its end): a `TakeOver` must wait.
    pub(super) fn master_lease_outstanding(&self) -> bool {
        match (self.lease.master_lent_until_ms, self.lease.clock()) {
            (Some(lent), Some(now)) => now < lent,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Steps down (a leader or a candidate) and campaigns for no ballot for
    /// `DROP_HOLD_ELECTION_TIMEOUTS × election_ticks` ticks from now, nor
    /// answers a `TakeOver` naming it meanwhile; it promises and accepts as
    /// usual. Returns whether this replica was leading. Commands waiting for
    /// an instance are refused (`LostLeadership`); clients retry elsewhere.
    ///
    /// No `TakeOver` is sent: a master lease lent before stays valid (no
    /// other replica is master before it ends), and another voter is
    /// elected once the grants to this one ran out and its election timeout
    /// fires.
    pub fn drop_leadership(&mut self) -> bool {
        let leading = matches!(self.role, Role::Leader(_));
        self.step_down_and_hold(true);
        leading
    }

    /// Steps down and keeps from campaigning for
    /// `DROP_HOLD_ELECTION_TIMEOUTS` election timeouts from now; a
    /// `TakeOver` naming this replica is refused meanwhile too when
    /// `refuse_take_over` (a dropped leader's hold), and obeyed otherwise (a
    /// leader that stood down for want of progress: a transfer to it is an
    /// operator's or a stopping leader's choice, and refusing it left the
    /// cluster leaderless until timers fired).
    pub(super) fn step_down_and_hold(&mut self, refuse_take_over: bool) {
        let hold = self
            .cfg
            .election_ticks
            .saturating_mul(DROP_HOLD_ELECTION_TIMEOUTS);
        let until = self.now.saturating_add(hold);
        self.campaign_hold_until_tick = until;
        if refuse_take_over {
            self.take_over_hold_until_tick = until;
        }
        self.step_down();
        self.election_due_tick = self.election_due_tick.max(until);
    }

    /// Whether a campaign hold (`drop_leadership`, or a leader that stood
    /// down for want of progress) keeps this replica from campaigning by
    /// itself.
    pub(super) fn campaign_held(&self) -> bool {
        self.now < self.campaign_hold_until_tick
    }

    /// Whether a `drop_leadership` hold keeps this replica from answering a
    /// `TakeOver` naming it.
    pub(super) fn take_over_held(&self) -> bool {
        self.now < self.take_over_hold_until_tick
    }
}
