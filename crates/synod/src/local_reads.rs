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
//! read's index, and nothing keeps reads from being answered (a restore, a
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
//!   some index `i` at or below the applied point: every instance chosen
//!   before then is below `i` (the lease's safety argument in `lease.rs`).
//!   Until `Tc` the loop sent nothing (no accept, no chosen mark, no reply)
//!   that let another write complete, and the lease still held at `Tc` on
//!   the node's clock, so no other leader chose anything before `Tc` either
//!   (the lease's argument again, with `Tc` for the arrival: the core's
//!   check is the same, with a clock read later).
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
    /// wall clock at `wall_ms`. `None`: the read goes to the event loop.
    pub fn serve<S: StateMachine + ?Sized>(
        &self,
        machine: &S,
        query: &[u8],
        mono_ms: u64,
        wall_ms: u64,
    ) -> Option<Bytes> {
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
/// `stamp_ms` being the stamp a proposal made now would carry). `None` for
/// a read that goes through the log or off the loop.
pub fn serve_at<S: StateMachine + ?Sized>(
    machine: &S,
    query: &[u8],
    at: &ApplyContext,
    stamp_ms: u64,
) -> Option<Bytes> {
    match machine.serve_query(query, at) {
        Served::Answer(output) => Some(output),
        Served::ThroughLog => settled_answer(machine, query, at, stamp_ms),
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
        let mono_ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let output = permit.serve(machine, query, mono_ms, self.0.wall_clock.now_ms())?;
        self.0.metrics.reads.fetch_add(1, Relaxed);
        self.0.metrics.local_lease_reads.fetch_add(1, Relaxed);
        Some(output)
    }
}
