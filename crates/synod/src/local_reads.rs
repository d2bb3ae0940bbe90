//! Lease reads served by the caller's task, without the event loop.
//!
//! With a leader lease ([`crate::NodeConfig::read_lease`]) a linearizable
//! read costs the leader no network round, but it still goes through the
//! event loop: the request is handed to the loop's task, the core confirms
//! it at once, the state machine answers it there, and the answer is handed
//! back. For a small read that hand-off is most of its cost. A
//! [`LocalReads`] handle ([`crate::Node::local_reads`]) lets the task that
//! received the read answer it itself, from a state machine it shares with
//! the node, when the loop has said that a read arriving now would be
//! confirmed at once and served at the current applied point.
//!
//! # The permit
//!
//! After each pass over its inputs, before it waits for the next, the event
//! loop publishes a [`LocalPermit`] ([`crate::engine::Engine::local_read_permit`]):
//! present only while this node leads and holds a lease under which a read
//! arriving then is confirmed at once (`Replica::lease_read_window`, rule 4
//! of `synod_core`'s `lease.rs`), the state machine has applied past that
//! read's index (the end of what the leader knows chosen, not of what it
//! proposed: writes in flight leave the permit standing), and nothing keeps reads from being answered (a restore, a
//! load, a divergence). It carries the lease's end on the node's monotonic
//! clock, the applied point with its log clock, and the stamp clock. Before
//! the loop acts on any input it withdraws the permit: nothing it does can
//! change what a permitted read would answer, or let a write complete that
//! the state does not show, while the permit stands.
//!
//! # Why a read served under it is linearizable
//!
//! The caller holds the state machine's lock (the one its `apply` takes)
//! from before it reads the permit until it has the answer, and checks its
//! monotonic clock, read after the permit, against the lease's end. Let the
//! read arrive at real time `Tr` and be checked at `Tc ≥ Tr`.
//! - The permit it read was published after a pass `k` and not withdrawn by
//!   `Tc`; the loop applies only inside a pass, after withdrawing, so the
//!   state under the lock is the one pass `k` left, at the applied point the
//!   permit names. (Withdrawing happens before the apply; the apply takes
//!   the lock this read holds; the read saw the permit after taking it.)
//! - At the end of pass `k` a read arriving then was confirmed at once at
//!   some index `i` at or below the applied point: every instance applied
//!   anywhere before then is below `i` (the lease's safety argument in
//!   `lease.rs`, with the read index's in `reads.rs`). Until `Tc` the loop
//!   learned nothing chosen and sent nothing (no accept, no chosen mark, no
//!   reply), and whatever another replica applies it first learns chosen
//!   from this leader (`reads.rs`), so no other write completed meanwhile
//!   at this ballot; and the lease still held at `Tc` on the node's clock,
//!   so no other leader chose anything before `Tc` either (the lease's
//!   argument again, with `Tc` for the arrival: the core's check is the
//!   same, with a clock read later).
//! - So every write that completed before `Tr ≤ Tc` is in the state read,
//!   and everything in it was chosen: the read takes effect at `Tc`, at the
//!   applied point, exactly as a lease read served by the loop does at its
//!   own (the same `StateMachine::serve_query`, the same time rules, see
//!   [`serve_at`]).
//!
//! A read the permit does not cover (none published, the lease ran out on
//! the caller's clock, the state machine wants the log or its own thread
//! for it, the lock is busy) goes to the loop as before: nothing is lost by
//! asking.

use crate::clock::{StampClock, WallClock};
use crate::metrics::Metrics;
use crate::state_machine::{ApplyContext, Served, StateMachine};
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a read served outside the event loop needs (see the module docs),
/// as the loop last published it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPermit {
    /// Reads arriving while the node's monotonic clock (ms since the node
    /// started) is below this are covered by the lease.
    pub until_ms: u64,
    /// The applied point and its log clock: where a permitted read takes
    /// effect.
    pub ctx: ApplyContext,
    /// The engine's stamp clock, for reads whose answer depends on the time
    /// ([`settled_answer`]).
    pub stamp_clock: StampClock,
}

impl LocalPermit {
    /// Answers `query` from `machine` (which must be at the permit's applied
    /// point, its lock held since before the permit was read) if the lease
    /// still covers a read arriving at monotonic time `mono_ms`, with the
    /// wall clock at `wall_ms`, with whether the answer settled by the
    /// clock (see [`serve_at`]). `None`: the read goes to the event loop.
    pub fn serve<S: StateMachine + ?Sized>(
        &self,
        machine: &S,
        query: &[u8],
        mono_ms: u64,
        wall_ms: u64,
    ) -> Option<(Bytes, bool)> {
        if mono_ms >= self.until_ms {
            return None;
        }
        serve_at(
            machine,
            query,
            &self.ctx,
            self.stamp_clock.stamp(wall_ms, mono_ms),
        )
    }
}

/// The answer the event loop would give a confirmed read of `query` at the
/// applied point `at`, if it gives it on the loop: `Served::Answer`, or for
/// a read that depends on the time, the settled answer ([`settled_answer`],
/// `stamp_ms` being the stamp a proposal made now would carry; then `true`
/// comes with it). `None` for a read that goes through the log or off the
/// loop.
pub fn serve_at<S: StateMachine + ?Sized>(
    machine: &S,
    query: &[u8],
    at: &ApplyContext,
    stamp_ms: u64,
) -> Option<(Bytes, bool)> {
    match machine.serve_query(query, at) {
        Served::Answer(output) => Some((output, false)),
        Served::ThroughLog => settled_answer(machine, query, at, stamp_ms).map(|out| (out, true)),
        Served::OffLoop(_) => None,
    }
}

/// The answer at `at` (an applied point and its log clock) of a read whose
/// answer depends on the time, when the state machine lets such a read
/// settle by the clock (`StateMachine::query_settles_by_clock`) and the
/// answer is the same at `stamp_ms`, the time a command proposed now would
/// carry (the log clock when that is later): then it is also what the log
/// would answer, were nothing else applied first. `None`: the read goes
/// through the log. Safety: see `Engine::serve_read`; the clock chooses only
/// whether, never what, this answers.
pub fn settled_answer<S: StateMachine + ?Sized>(
    machine: &S,
    query: &[u8],
    at: &ApplyContext,
    stamp_ms: u64,
) -> Option<Bytes> {
    if !machine.query_settles_by_clock(query, at) {
        return None;
    }
    let answer = machine.query(query, at);
    if stamp_ms <= at.time_ms {
        return Some(answer);
    }
    let later = ApplyContext {
        time_ms: stamp_ms,
        ..*at
    };
    (machine.query(query, &later) == answer).then_some(answer)
}

/// A node's lease reads served by the caller (see the module docs). Cheap
/// to clone; from [`crate::Node::local_reads`].
#[derive(Clone)]
pub struct LocalReads(Arc<Gate>);

struct Gate {
    permit: Mutex<Option<LocalPermit>>,
    /// Monotonic time 0 of the node (`Driver::started`).
    started: Instant,
    wall_clock: WallClock,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for LocalReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReads")
            .field("permit", &self.permit())
            .finish()
    }
}

impl LocalReads {
    pub(crate) fn new(started: Instant, wall_clock: WallClock, metrics: Arc<Metrics>) -> Self {
        LocalReads(Arc::new(Gate {
            permit: Mutex::new(None),
            started,
            wall_clock,
            metrics,
        }))
    }

    /// The permit the event loop published last, if it stands.
    pub fn permit(&self) -> Option<LocalPermit> {
        *self
            .0
            .permit
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Publishes (or, with `None`, withdraws) the permit.
    pub(crate) fn publish(&self, permit: Option<LocalPermit>) {
        let mut slot = self
            .0
            .permit
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *slot = permit;
    }

    /// Answers the linearizable read `query` (as [`crate::Node::read`]
    /// would) from `machine` if the published permit covers a read arriving
    /// now; `None`: ask the node.
    ///
    /// `machine` must be the state machine this node applies to, and the
    /// caller must hold, from before this call until it returns, the lock
    /// that the state machine's `apply`, `apply_batch` and `restore` take
    /// (see the module docs for why). A read served here counts as a read
    /// and a lease read in the node's metrics.
    pub fn serve<S: StateMachine + ?Sized>(&self, machine: &S, query: &[u8]) -> Option<Bytes> {
        let permit = self.permit()?;
        // Read after the permit: the lease must cover this moment.
        let mono_ms = crate::clock::mono_ms_since(self.0.started);
        let (output, settled) =
            permit.serve(machine, query, mono_ms, self.0.wall_clock.now_ms())?;
        // Counted as the loop counts a lease read it serves.
        self.0.metrics.reads.fetch_add(1, Relaxed);
        self.0.metrics.local_lease_reads.fetch_add(1, Relaxed);
        if settled {
            self.0.metrics.reads_settled.fetch_add(1, Relaxed);
        }
        Some(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::InstanceId;

    /// A key that expires at `expires_ms` (log time): `"live"` is answered
    /// at once; `"ttl"` depends on the time (live before `expires_ms`);
    /// `"big"` goes off the loop.
    struct Expiring {
        expires_ms: u64,
    }

    impl StateMachine for Expiring {
        fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
            Bytes::new()
        }
        fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes {
            match query {
                b"ttl" if ctx.time_ms >= self.expires_ms => Bytes::from_static(b"gone"),
                _ => Bytes::from_static(b"value"),
            }
        }
        fn query_depends_on_time(&self, query: &[u8]) -> bool {
            query == b"ttl"
        }
        fn query_settles_by_clock(&self, query: &[u8], _ctx: &ApplyContext) -> bool {
            query == b"ttl"
        }
        fn query_view(&self, query: &[u8], _ctx: &ApplyContext) -> Option<crate::QueryJob> {
            (query == b"big").then(|| Box::new(|| Bytes::from_static(b"big")) as crate::QueryJob)
        }
        fn snapshot(&self) -> Bytes {
            Bytes::new()
        }
        fn restore(&mut self, _snapshot: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    /// A permit at log time 1,000 (applied point 7), until mono ms 500,
    /// with a stamp clock that vouches for 1,200 at mono 0.
    fn permit() -> LocalPermit {
        LocalPermit {
            until_ms: 500,
            ctx: ApplyContext {
                instance: InstanceId(7),
                time_ms: 1_000,
                index: 0,
            },
            stamp_clock: StampClock::new(1_200, 0),
        }
    }

    #[test]
    fn a_permit_serves_until_the_lease_end_on_the_callers_clock() {
        let machine = Expiring { expires_ms: 5_000 };
        let p = permit();
        let answer = p.serve(&machine, b"live", 499, 1_200);
        assert_eq!(answer, Some((Bytes::from_static(b"value"), false)));
        assert_eq!(p.serve(&machine, b"live", 500, 1_200), None, "at the end");
        assert_eq!(p.serve(&machine, b"live", 10_000, 1_200), None);
    }

    #[test]
    fn reads_the_loop_sends_elsewhere_are_not_served() {
        let p = permit();
        // Off the loop: the loop answers it from a view.
        let machine = Expiring { expires_ms: 5_000 };
        assert_eq!(p.serve(&machine, b"big", 0, 1_200), None);
        // Depends on the time and the same at the stamp now: settled.
        let answer = p.serve(&machine, b"ttl", 0, 1_200);
        assert_eq!(answer, Some((Bytes::from_static(b"value"), true)));
        // Live at the applied point's log clock, gone at the stamp now:
        // through the log, as the loop does.
        let machine = Expiring { expires_ms: 1_100 };
        assert_eq!(p.serve(&machine, b"ttl", 0, 1_200), None);
        // The stamp is capped by the stamp clock's bound (1,050 at mono 0):
        // a wall clock ahead cannot make it answer as of later.
        let p = LocalPermit {
            stamp_clock: StampClock::new(1_050, 0),
            ..permit()
        };
        let answer = p.serve(&machine, b"ttl", 0, 9_999);
        assert_eq!(answer, Some((Bytes::from_static(b"value"), true)));
    }

    #[test]
    fn the_gate_serves_only_while_a_permit_stands_and_counts_what_it_serves() {
        let metrics = Arc::new(Metrics::default());
        let reads = LocalReads::new(
            Instant::now(),
            WallClock::from_fn(|| 1_200),
            Arc::clone(&metrics),
        );
        let machine = Expiring { expires_ms: 5_000 };
        assert_eq!(reads.serve(&machine, b"live"), None, "nothing published");
        reads.publish(Some(LocalPermit {
            until_ms: u64::MAX,
            ..permit()
        }));
        assert_eq!(
            reads.serve(&machine, b"live"),
            Some(Bytes::from_static(b"value"))
        );
        assert_eq!(
            reads.serve(&machine, b"ttl"),
            Some(Bytes::from_static(b"value"))
        );
        assert_eq!(metrics.reads.load(Relaxed), 2);
        assert_eq!(metrics.local_lease_reads.load(Relaxed), 2);
        assert_eq!(metrics.reads_settled.load(Relaxed), 1);
        // A lease that ran out before now on the node's clock.
        reads.publish(Some(LocalPermit {
            until_ms: 0,
            ..permit()
        }));
        assert_eq!(reads.serve(&machine, b"live"), None);
        reads.publish(None);
        assert_eq!(reads.serve(&machine, b"live"), None, "withdrawn");
        assert_eq!(metrics.reads.load(Relaxed), 2);
    }
}
