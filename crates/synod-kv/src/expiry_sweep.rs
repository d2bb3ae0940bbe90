//! When a leader proposes an expiry sweep (Redis' active expiry as points
//! of the log, [`crate::KvCommand::ExpireSweep`]): the rule the server's
//! sweep task follows, and the simulator's, so that both propose alike.
//!
//! The two rules this file keeps:
//!
//! 1. **Due by the time the sweep applies at, never by a local clock.** A
//!    sweep removes the keys expired at its log time, the larger of the
//!    stamp its proposal carries and the log clock before it. A node whose
//!    system clock is ahead of its stamps (a clock stepped ahead since the
//!    start: stamps advance only with monotonic time, see
//!    `synod::StampClock`) would otherwise find a key due that no sweep it
//!    proposes can remove, and propose empty sweeps forever.
//! 2. **A sweep that changed nothing slows the next.** While a sweep left
//!    the next expiry where it was, the interval doubles, up to
//!    [`EXPIRE_SWEEP_INTERVAL_MAX_MS`]; any progress, or nothing due,
//!    brings it back to [`EXPIRE_SWEEP_INTERVAL_MS`]. Whatever a clock
//!    does, a leader proposes at most one useless sweep per few seconds.

/// How often the leader looks for keys past their expiry (Redis' active
/// expiry runs at `hz` 10 too).
pub const EXPIRE_SWEEP_INTERVAL_MS: u64 = 100;
/// The longest interval a run of sweeps that changed nothing backs off to.
pub const EXPIRE_SWEEP_INTERVAL_MAX_MS: u64 = 3_200;

/// The pace of one leader's expiry sweeps (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepPacer {
    interval_ms: u64,
}

impl Default for SweepPacer {
    fn default() -> SweepPacer {
        SweepPacer::new()
    }
}

impl SweepPacer {
    /// A pacer at the base interval.
    pub fn new() -> SweepPacer {
        SweepPacer {
            interval_ms: EXPIRE_SWEEP_INTERVAL_MS,
        }
    }

    /// How long to wait before looking again.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Whether a sweep proposed now would remove a key: the store's next
    /// expiry (`None`: no key has one) is at or before the time the sweep
    /// would apply at, the larger of the stamp its proposal would carry
    /// (`synod::Node::stamp_ms`) and the log clock as applied here.
    pub fn due(next_expiry_ms: Option<u64>, stamp_ms: u64, log_time_ms: u64) -> bool {
        next_expiry_ms.is_some_and(|at_ms| at_ms <= stamp_ms.max(log_time_ms))
    }

    /// A sweep was proposed while the next expiry was `before`; once it is
    /// applied (or failed) the next expiry is `after`. Unchanged: back off.
    pub fn swept(&mut self, before: Option<u64>, after: Option<u64>) {
        if before.is_some() && after == before {
            self.interval_ms = (self.interval_ms * 2).min(EXPIRE_SWEEP_INTERVAL_MAX_MS);
        } else {
            self.interval_ms = EXPIRE_SWEEP_INTERVAL_MS;
        }
        debug_assert!(
            (EXPIRE_SWEEP_INTERVAL_MS..=EXPIRE_SWEEP_INTERVAL_MAX_MS).contains(&self.interval_ms)
        );
    }

    /// Nothing was due (or this node does not lead): the next key due is
    /// swept promptly.
    pub fn idle(&mut self) {
        self.interval_ms = EXPIRE_SWEEP_INTERVAL_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_the_time_the_sweep_applies_at() {
        assert!(!SweepPacer::due(None, 1_000, 1_000));
        assert!(SweepPacer::due(Some(1_000), 1_000, 0));
        assert!(!SweepPacer::due(Some(1_001), 1_000, 900));
        // Another node stamped the log ahead: the sweep applies there.
        assert!(SweepPacer::due(Some(1_001), 1_000, 1_500));
    }

    #[test]
    fn sweeps_that_change_nothing_back_off() {
        let mut pacer = SweepPacer::new();
        let intervals: Vec<u64> = (0..7)
            .map(|_| {
                pacer.swept(Some(5), Some(5));
                pacer.interval_ms()
            })
            .collect();
        assert_eq!(intervals, [200, 400, 800, 1_600, 3_200, 3_200, 3_200]);
        pacer.swept(Some(5), Some(9));
        assert_eq!(pacer.interval_ms(), EXPIRE_SWEEP_INTERVAL_MS);
        pacer.swept(Some(5), Some(5));
        pacer.idle();
        assert_eq!(pacer.interval_ms(), EXPIRE_SWEEP_INTERVAL_MS);
        // The last key expired: progress.
        pacer.swept(Some(5), None);
        assert_eq!(pacer.interval_ms(), EXPIRE_SWEEP_INTERVAL_MS);
    }
}
