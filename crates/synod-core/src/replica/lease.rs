//! Leader leases (opt-in, [`crate::Config::read_lease`]): linearizable reads
//! served by the leader from its own state with no network round.
//!
//! Without a lease a read waits for a heartbeat round sent after it arrived
//! (`reads.rs`). With one, the leader confirms a read at once while a
//! majority of every membership it reads against has promised, on its own
//! clock, not to help anyone else become leader.
//!
//! # Time
//!
//! The core still reads no clock: the runtime hands it a monotonic local
//! time in ms with [`Replica::set_time`] before each input (the node runtime:
//! ms since the process started, from `Instant`; the simulator: a per-node
//! clock whose rate drifts). Ticks are *not* time here: a stalled event loop
//! delivers ticks late, and a leader that counted ticks would believe less
//! time had passed than really did.
//!
//! The assumption (`Lease::drift_ppm` = ρ): over any interval, every
//! member's clock advances by between `(1 − ρ)` and `(1 + ρ)` times the real
//! time that passed. Offsets between clocks do not matter.
//!
//! # The rules (L = `Lease::duration_ms`)
//!
//! 1. **Grant.** An acceptor that acknowledges heartbeat round `p` of the
//!    leader `A` of ballot `b` at its local time `t` (`handle_heartbeat`, its
//!    promise is at most `b`) holds a *grant* for `A` until `t + L` on its
//!    own clock. While a grant for `A` holds it promises no ballot above its
//!    current promise to a candidate other than `A`, itself included (it
//!    does not campaign): `lease_refuses_promise`. It grants nobody else
//!    meanwhile (its acknowledgements to another leader carry probe 0, which
//!    confirms no read and no lease). The acknowledgement states the grant
//!    (`granted_ms` = its `L`, `granted_drift_ppm` = its `ρ`; 0 for none,
//!    as from a node without a lease setting), and the leader counts it
//!    toward its lease only if `granted_ms ≥` its own `L` and
//!    `granted_drift_ppm ≤` its own `ρ`: nodes with different settings (a
//!    rolling change of `--read-lease`) cannot make a leader count on a
//!    grant shorter than the one its `D` assumes (found by review).
//!    The check is skipped only for a ballot at or below the highest one this
//!    incarnation promised itself after passing it (`promised_here`): a
//!    promise restored from disk, or raised by a rebuild to the highest
//!    ballot peers report, was never checked against this incarnation's
//!    grant or restart hold (found by review: a rebuilt node promised a
//!    candidate inside its hold and an old leader read stale).
//! 2. **Restart.** A grant lives in memory only. A replica therefore
//!    promises no higher ballot to anyone for `L` on its clock from the first
//!    time it is given (the process start): whatever its previous
//!    incarnation granted ran out by then, since the crash came before the
//!    restart. This costs nothing in practice, because `L` is below the
//!    election timeout, which a restarted node waits for anyway.
//! 3. **Lease.** The leader notes its local time `t0` when it sends each
//!    heartbeat round. Once a majority of every membership that reads are
//!    confirmed against (`probe_confirmed`: the memberships from the chosen
//!    prefix on and the reconfigurations in flight) acknowledged round `p`,
//!    it holds a lease until `t0(p) + D` on its own clock, with
//!    `D = ⌊(L − 1)(1 − ρ)/(1 + ρ)⌋` (`Lease::leader_hold_ms`).
//! 4. **Reads.** A read (local, or a follower's read-index request) that
//!    arrives while the lease holds, with phase 1 covering every membership
//!    (`reads_covered`) and the memberships counted now all among those the
//!    lease was counted against, is confirmed at once at the read index
//!    (`Replica::read_index`); it is still served only once the
//!    state machine has applied up to that index.
//! 5. **Giving it up.** The lease belongs to the `Leader` role at one ballot:
//!    any step down drops it. A leader transfer (`check_transfer`) steps down
//!    in the same call that sends `TakeOver`, so no lease read is served
//!    after it; a follower that gets `TakeOver` from the holder of its grant
//!    (at the grant's ballot or above) drops the grant, so the new leader is
//!    not kept waiting for `L`. A transfer sends no `TakeOver` while a
//!    master lease it lent the application may be in use (`master.rs`).
//!
//! # Why `D`
//!
//! Let round `p` leave the leader at real time `T0` (local `t0`, the floor of
//! its clock then). A member acknowledges it at real `T1 ≥ T0` and local `t`
//! (the floor of its clock `c`), and refuses other candidates until its clock
//! reads `t + L`: its clock advances by more than `L − 1` first, which at rate
//! at most `1 + ρ` takes real time more than `(L − 1)/(1 + ρ)`. So the grant
//! holds through real time `T0 + (L − 1)/(1 + ρ)`. The leader serves while
//! its (floored) clock is below `t0 + D`, so while its clock advanced less
//! than `D` since `T0`, which at rate at least `1 − ρ` takes real time less
//! than `D/(1 − ρ) ≤ (L − 1)/(1 + ρ)`. Every lease read therefore arrives
//! while every grant behind it still holds.
//!
//! # Safety: a lease read sees every write completed before it arrived
//!
//! Let a read arrive at the leader `A` (ballot `b`) at real time `Tr`, under
//! a lease from round `p` acknowledged by a quorum `Q_M` of each membership
//! `M` counted then. Claim: nothing was chosen at a ballot above `b` before
//! `Tr`. That is the only use `reads.rs` makes of a round: with it, its
//! argument shows the read index past every instance applied anywhere
//! before `Tr` (chosen below `b`: phase 1 reported it; at `b`: `A` knew it
//! chosen). Suppose instead `i` was chosen at `b' > b` before `Tr`, the
//! first instance a rival chose that `A` does not know of. By the argument of `probe_confirmed`,
//! `membership(i)` is one of the memberships counted at `Tr`, hence (rule 4)
//! one of those counted for the lease: some `M`. The rival of `b'` finished
//! phase 1 for `M` with promises of a quorum `P` of `M`; let `x ∈ P ∩ Q_M`.
//! `x` acknowledged `b` at `T1 ≥ T0`, so its promise was `≤ b` then, and it
//! promised `b' > b` later, at some time before `Tr` (the rival chose `i`
//! before `Tr`). But from `T1` until past `Tr` (previous section) `x` held a
//! grant for `A` and refused every ballot above its promise from anyone else
//! (rule 1), unless the grant was dropped first: only by `TakeOver` from `A`,
//! sent after `A` stopped leading `b` (after `Tr`, since `A` served the
//! read then), or by a crash, after which `x` refuses for `L` from its
//! restart (rule 2), past `Tr` again. Promises to `A` itself at a higher
//! ballot come after `A` gave up `b` (it campaigns only as a follower), so
//! after `Tr`. A contradiction: nothing unknown to `A` was chosen before
//! the read arrived. The read is then linearizable exactly as a read
//! confirmed by a round (`reads.rs`).
//!
//! The leader's own vote needs no grant: a leader refuses every Prepare
//! (`follows_live_leader`), and its lease ends when it stops leading.
//!
//! Membership changes. The lease remembers the memberships it was counted
//! against; a read is served by lease only if every membership counted at
//! its arrival is among them (rule 4), so a membership that came into play
//! after the round (a reconfiguration proposed or scheduled, a snapshot
//! installed) needs a round of its own first. Memberships only ever leave
//! the set as the chosen prefix moves on, which keeps the argument above.

use super::{Replica, Role};
use crate::ids::{Ballot, InstanceId, NodeId};
use crate::membership::Membership;
use std::collections::VecDeque;
use std::sync::Arc;

/// Send times of heartbeat rounds a leader remembers (the oldest are
/// forgotten: a round whose time is forgotten extends no lease, which is
/// always safe).
const PROBES_REMEMBERED_MAX: usize = 256;

/// The clock and the acceptor's side of leases, per replica.
#[derive(Debug, Default)]
pub(super) struct LeaseState {
    /// The monotonic local time last given to [`Replica::set_time`] (ms).
    clock_ms: Option<u64>,
    /// The first time given: the start of this incarnation (rule 2).
    started_ms: Option<u64>,
    /// The grant this acceptor holds for a leader (rule 1).
    grant: Option<Grant>,
    /// The highest ballot this incarnation promised to a candidate itself
    /// (`Replica::promise`: a Prepare answered, or its own campaign), after
    /// the lease checks. Only a ballot at or below it may skip them: a
    /// promise restored from disk or raised by a rebuild (to the highest
    /// ballot peers report, never promised to anyone here) is no proof
    /// that the candidate of that ballot passed this acceptor's grant and
    /// restart hold (found by review: a rebuilt node raised its promise to
    /// a candidate's ballot, then promised it inside its restart hold, and
    /// the old leader served a stale read under its lease).
    pub(super) promised_here: Option<Ballot>,
    /// Reads confirmed under a lease at this replica, for metrics.
    reads_served: u64,
    /// The latest end (local ms) of a master lease this incarnation lent
    /// to the application, whatever ballot it led at then (`master.rs`): a
    /// transfer sends no `TakeOver`, which releases the grants behind it,
    /// before the local clock passes it.
    pub(super) master_lent_until_ms: Option<u64>,
}

/// A promise not to help anyone but `holder` become leader before `until_ms`.
#[derive(Clone, Copy, Debug)]
struct Grant {
    holder: NodeId,
    /// The highest ballot of `holder` acknowledged under this grant.
    ballot: Ballot,
    until_ms: u64,
}

/// The leader's side: its rounds' send times and the lease they earned.
#[derive(Debug, Default)]
pub(super) struct LeaderLease {
    /// `(probe, local send time)`, oldest first.
    probes_sent: VecDeque<(u64, u64)>,
    held: Option<Held>,
}

/// A lease the leader holds.
#[derive(Debug)]
struct Held {
    /// It holds while the local clock is below this.
    until_ms: u64,
    /// The memberships a quorum of which acknowledged the round.
    memberships: Vec<Arc<Membership>>,
}

impl LeaseState {
    /// The local time last given, if any.
    pub(super) fn clock(&self) -> Option<u64> {
        self.clock_ms
    }
}

impl LeaderLease {
    /// Notes that heartbeat round `probe` left at local time `now_ms`.
    pub(super) fn note_probe(&mut self, probe: u64, now_ms: Option<u64>) {
        let Some(now_ms) = now_ms else {
            return;
        };
        if self.probes_sent.len() >= PROBES_REMEMBERED_MAX {
            self.probes_sent.pop_front();
        }
        self.probes_sent.push_back((probe, now_ms));
    }
}

impl LeaderLease {
    /// The end of the lease held, on the leader's clock, if any.
    pub(super) fn held_until_ms(&self) -> Option<u64> {
        self.held.as_ref().map(|held| held.until_ms)
    }
}

impl Held {
    /// Whether every membership in `now` is one the lease was counted against.
    fn covers<'a>(&self, mut now: impl Iterator<Item = &'a Arc<Membership>>) -> bool {
        now.all(|m| {
            self.memberships
                .iter()
                .any(|held| Arc::ptr_eq(held, m) || **held == **m)
        })
    }
}

impl Replica {
    /// Gives the replica the current local time: a monotonic clock in ms
    /// (any origin; a value lower than a previous one is ignored). Needed
    /// with [`crate::Config::read_lease`], and then before every `step`,
    /// `tick`, `read` and `take_ready`, with a time read just before the
    /// call: a stale time makes a leader believe its lease lasts longer,
    /// and a follower's grant start earlier, than they really do. The
    /// delayed announcement ([`crate::Config::announce_delay_ms`]) and cohort
    /// batching ([`crate::Config::batch_hold_ms`]) also measure their waits
    /// with it (without a time, they do not wait; with a stale one, they
    /// wait at most until the next tick, or the second).
    pub fn set_time(&mut self, now_ms: u64) {
        let clock = self.lease.clock_ms.map_or(now_ms, |c| c.max(now_ms));
        self.lease.clock_ms = Some(clock);
        if self.lease.started_ms.is_none() {
            self.lease.started_ms = Some(clock);
        }
    }

    /// How many reads this replica confirmed under its leader lease (no
    /// network round), its own and its followers' read-index requests.
    pub fn lease_reads(&self) -> u64 {
        self.lease.reads_served
    }

    /// Whether this replica leads and holds a lease now (reads may still
    /// wait for phase 1 to cover every membership).
    pub fn holds_lease(&self) -> bool {
        let (Role::Leader(leader), Some(now)) = (&self.role, self.lease.clock_ms) else {
            return false;
        };
        leader
            .lease
            .held
            .as_ref()
            .is_some_and(|held| now < held.until_ms)
    }

    /// Rules 1 and 2: whether promising `ballot` now could break a lease
    /// some leader may hold. Only a promise *above* the current one can:
    /// the grant was given with the promise at most the holder's ballot.
    pub(super) fn lease_refuses_promise(&self, ballot: Ballot) -> bool {
        let Some(lease) = self.cfg.read_lease else {
            return false;
        };
        if ballot.node != self.cfg.id && self.master_lease_outstanding() {
            // This replica's own vote was in the quorum behind the master
            // lease it lent, and that lease outlives its leadership: it
            // grants itself until the lease's end (`master.rs`).
            return true;
        }
        if self.lease.promised_here.is_some_and(|p| ballot <= p) {
            return false;
        }
        let Some(now) = self.lease.clock_ms else {
            // No time given yet: the restart hold has not even begun.
            return true;
        };
        let started = self.lease.started_ms.unwrap_or(now);
        if now < started.saturating_add(lease.duration_ms) {
            return true;
        }
        self.lease
            .grant
            .is_some_and(|g| now < g.until_ms && g.holder != ballot.node)
    }

    /// Rule 1: this acceptor acknowledges round `probe > 0` of `leader`'s
    /// ballot `ballot` now. Returns whether the acknowledgement may count
    /// toward reads and leases: false (answer with probe 0) while a grant for
    /// another leader holds, or when no time was given.
    pub(super) fn grant_lease(&mut self, leader: NodeId, ballot: Ballot) -> bool {
        let Some(lease) = self.cfg.read_lease else {
            return true;
        };
        let Some(now) = self.lease.clock_ms else {
            debug_assert!(false, "a read lease without set_time");
            return false;
        };
        // Another leader's grant still holds: that leader may be serving
        // lease reads counting on it, and replacing it would free this
        // acceptor to promise a third candidate. Keep it; grant nothing.
        if !self.could_grant(leader) {
            return false;
        }
        let until_ms = now.saturating_add(lease.duration_ms);
        match &mut self.lease.grant {
            Some(grant) if grant.holder == leader => {
                grant.ballot = grant.ballot.max(ballot);
                grant.until_ms = grant.until_ms.max(until_ms);
            }
            _ => {
                self.lease.grant = Some(Grant {
                    holder: leader,
                    ballot,
                    until_ms,
                });
            }
        }
        true
    }

    /// Whether an acknowledgement of `leader` sent now would carry a grant
    /// (what `grant_lease` answers, without granting): true without a lease
    /// setting; false while another leader's grant holds. A follower's read-index request vouches for its
    /// leader only then (`reads.rs`), as its heartbeat acknowledgements
    /// confirm reads only then: a precaution, since the read-index argument
    /// itself needs no grant.
    pub(super) fn could_grant(&self, leader: NodeId) -> bool {
        if self.cfg.read_lease.is_none() {
            return true;
        }
        let Some(now) = self.lease.clock_ms else {
            return false;
        };
        match &self.lease.grant {
            Some(grant) => grant.holder == leader || now >= grant.until_ms,
            None => true,
        }
    }

    /// Rule 5: the leader `from` of `ballot` handed leadership over (it
    /// stopped leading, and serving lease reads, before it said so). A grant
    /// for it at `ballot` or below is no longer needed.
    pub(super) fn release_lease(&mut self, from: NodeId, ballot: Ballot) {
        if self
            .lease
            .grant
            .is_some_and(|g| g.holder == from && g.ballot <= ballot)
        {
            self.lease.grant = None;
        }
    }

    /// Rule 3: after an acknowledgement (or a round a lone voter confirms
    /// itself), extends the lease to the send time of the latest round a
    /// quorum of every membership acknowledged, plus `D`.
    pub(super) fn extend_lease(&mut self) {
        let Some(lease) = self.cfg.read_lease else {
            return;
        };
        let confirmed = self.round_confirmed(true);
        let Role::Leader(leader) = &self.role else {
            return;
        };
        if confirmed == 0 {
            return;
        }
        let memberships: Vec<Arc<Membership>> = self
            .schedule
            .memberships_from(self.learner.chosen_end)
            .chain(leader.reconfigs_in_flight.values())
            .cloned()
            .collect();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let sent = &mut leader.lease.probes_sent;
        // Keep the latest round at or below `confirmed` at the front: its
        // send time is a lower bound on every acknowledgement counted.
        while sent.get(1).is_some_and(|(probe, _)| *probe <= confirmed) {
            sent.pop_front();
        }
        let Some(&(probe, sent_ms)) = sent.front() else {
            return;
        };
        if probe > confirmed {
            return;
        }
        let until_ms = sent_ms.saturating_add(lease.leader_hold_ms());
        let replace = match &leader.lease.held {
            None => true,
            Some(held) => until_ms >= held.until_ms || !held.covers(memberships.iter()),
        };
        if replace {
            leader.lease.held = Some(Held {
                until_ms,
                memberships,
            });
        }
    }

    /// Rule 4: the read index for a read arriving now, if the lease lets the
    /// leader confirm it at once.
    pub(super) fn lease_read_index(&self) -> Option<InstanceId> {
        self.cfg.read_lease?;
        let now = self.lease.clock_ms?;
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        let held = leader.lease.held.as_ref()?;
        if now >= held.until_ms || !self.reads_covered() {
            return None;
        }
        let counted = self
            .schedule
            .memberships_from(self.learner.chosen_end)
            .chain(leader.reconfigs_in_flight.values());
        if !held.covers(counted) {
            return None;
        }
        self.read_index()
    }

    /// Rule 4 for reads served outside [`Replica::read`] (the runtime's
    /// local reads, see `synod::LocalReads`): the read index and the end of
    /// the lease on this replica's clock (ms, as given to
    /// [`Replica::set_time`]), if a read arriving now would be confirmed at
    /// once under the lease. Such a read may be served while the caller's
    /// clock, read when it arrives, is below that end, from a state machine
    /// that applied every instance below the index, as long as nothing was
    /// stepped into this replica since this call. Counts nothing: the
    /// caller counts the reads it serves.
    pub fn lease_read_window(&self) -> Option<(InstanceId, u64)> {
        let index = self.lease_read_index()?;
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        Some((index, leader.lease.held_until_ms()?))
    }

    /// Counts a read confirmed under the lease.
    pub(super) fn note_lease_read(&mut self) {
        self.lease.reads_served += 1;
    }
}
