//! Where a node's wall-clock time comes from.
//!
//! Time enters the replicated state in one place only: the stamp a proposer
//! puts in each command's envelope (see `envelope.rs`). [`WallClock`] is the
//! source of that stamp; tests and the simulator replace it with a clock that
//! is skewed or jumps.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A wall clock: milliseconds since the Unix epoch. Cheap to clone.
///
/// The default reads the system clock. Anything else is for tests: a clock
/// that is skewed or steps, to show what a wrong clock can and cannot do.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// The system's real-time clock.
    pub fn system() -> WallClock {
        WallClock(Arc::new(system_now_ms))
    }

    /// A clock that reads `now_ms()`.
    pub fn from_fn(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(now_ms))
    }

    /// Milliseconds since the Unix epoch, as this clock says.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for WallClock {
    fn default() -> WallClock {
        WallClock::system()
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

/// A node's monotonic clock: whole ms since `started` (its engine's time 0),
/// rounded down. The engine, the driver, the stamp source and the permit
/// for local reads all read time this way, so their ms agree.
pub(crate) fn mono_ms_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The system clock in ms since the Unix epoch (0 if it reads before 1970).
pub(crate) fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bound on what a node may stamp into the log: **a node's stamps advance
/// by at most the monotonic time that passed** since a moment at which it
/// trusted a wall-clock reading.
///
/// The log clock (`ApplyContext::time_ms`) is the maximum of the stamps in
/// the log so far, so a single stamp far in the future would expire, on every
/// replica, every key whose TTL ends before it. Each proposer therefore
/// stamps `min(wall clock, bound)`, where the bound starts at the wall clock
/// read when the node starts and then grows with the node's *monotonic*
/// clock, which NTP never steps:
///
/// - A wall clock that jumps ahead after the start (an NTP step, an operator
///   typo) is ignored beyond the monotonic time that passed: the log clock
///   does not jump.
/// - A wall clock that jumps back only lowers this node's stamps; the log
///   clock keeps its maximum, and this node's stamps count again once its
///   clock is back.
/// - When the log clock, as applied here, is ahead of the bound (another node
///   stamped it, or this node started with a clock behind), the bound is
///   raised to it ([`StampClock::observe_log`]): that time was already in the
///   log, so vouching for it adds nothing a single stamp could not.
///
/// By induction over stamps, at any moment the log clock is at most
/// `max over nodes n (start_wall(n) + monotonic time since n started)`: the
/// residual assumption is that **each node's wall clock is right when the
/// node starts** (a node started with a clock an hour ahead moves the log
/// clock an hour ahead) and that monotonic clocks run at the real rate.
/// Whatever the clocks do, expiry stays linearizable (the log clock is one
/// clock, read only along the log); a wrong clock can only make keys expire
/// early or late, by at most the start-time error described above.
///
/// Pure: the caller reads both clocks and passes them in, so the simulator
/// drives it with its own clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StampClock {
    /// The latest time this node vouches for, as of `anchor_mono_ms`.
    anchor_ms: u64,
    /// Monotonic time (ms, any origin) at which `anchor_ms` was vouched for.
    anchor_mono_ms: u64,
}

impl StampClock {
    /// Trusts `wall_ms`, read at monotonic time `mono_ms` (the node's start).
    pub fn new(wall_ms: u64, mono_ms: u64) -> StampClock {
        StampClock {
            anchor_ms: wall_ms,
            anchor_mono_ms: mono_ms,
        }
    }

    /// The latest stamp allowed at monotonic time `mono_ms`.
    pub fn bound_ms(&self, mono_ms: u64) -> u64 {
        self.anchor_ms
            .saturating_add(mono_ms.saturating_sub(self.anchor_mono_ms))
    }

    /// The stamp for a command proposed now: the wall clock, capped by the
    /// bound.
    pub fn stamp(&self, wall_ms: u64, mono_ms: u64) -> u64 {
        let stamp = wall_ms.min(self.bound_ms(mono_ms));
        debug_assert!(stamp <= self.bound_ms(mono_ms));
        stamp
    }

    /// The log clock, as applied on this node, reached `log_ms` by monotonic
    /// time `mono_ms`: raise the bound to it if it is behind.
    pub fn observe_log(&mut self, log_ms: u64, mono_ms: u64) {
        if log_ms > self.bound_ms(mono_ms) {
            self.anchor_ms = log_ms;
            self.anchor_mono_ms = mono_ms;
        }
        debug_assert!(self.bound_ms(mono_ms) >= log_ms);
    }
}

/// What a running node's engine would stamp a proposal with now, readable
/// from any task ([`crate::Node::stamp_ms`]): the engine's [`StampClock`]
/// as the driver last published it, read with the node's wall clock and the
/// monotonic origin the engine counts from. A caller deciding *whether* to
/// propose something time-dependent (an expiry sweep) must decide by this
/// time, not by its own clock: the command will carry this stamp.
#[derive(Debug)]
pub(crate) struct StampSource {
    clock: Mutex<StampClock>,
    wall_clock: WallClock,
    /// Monotonic time 0 of the engine (`Driver::started`).
    started: Instant,
}

impl StampSource {
    pub(crate) fn new(clock: StampClock, wall_clock: WallClock, started: Instant) -> StampSource {
        StampSource {
            clock: Mutex::new(clock),
            wall_clock,
            started,
        }
    }

    /// Publishes the engine's stamp clock (its bound moves when the log
    /// clock passes it).
    pub(crate) fn publish(&self, clock: StampClock) {
        *self
            .clock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = clock;
    }

    /// The stamp a proposal made now would carry.
    pub(crate) fn now_ms(&self) -> u64 {
        let mono_ms = mono_ms_since(self.started);
        let clock = *self
            .clock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        clock.stamp(self.wall_clock.now_ms(), mono_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_jump_ahead_counts_only_as_far_as_monotonic_time() {
        let clock = StampClock::new(1_000_000, 50);
        assert_eq!(clock.stamp(1_000_000, 50), 1_000_000);
        // 10 s later the wall clock says an hour and 10 s passed.
        assert_eq!(clock.stamp(1_000_000 + HOUR + 10_000, 10_050), 1_010_000);
        // A clock behind the bound is taken as it is.
        assert_eq!(clock.stamp(999_000, 10_050), 999_000);
    }

    #[test]
    fn the_log_clock_raises_the_bound_never_lowers_it() {
        let mut clock = StampClock::new(1_000, 0);
        clock.observe_log(500, 100);
        assert_eq!(clock.bound_ms(100), 1_100, "a log behind changes nothing");
        clock.observe_log(5_000, 100);
        assert_eq!(clock.bound_ms(100), 5_000);
        assert_eq!(clock.stamp(u64::MAX, 300), 5_200);
        // Monotonic readings older than the anchor do not underflow.
        assert_eq!(clock.bound_ms(0), 5_000);
    }
}
