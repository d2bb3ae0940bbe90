//! Per-node monotonic clocks whose *rate* drifts, for leader leases
//! (`synod_core::Config::read_lease`).
//!
//! Each clock runs in segments of 20 to 500 ms of simulated time, each at a
//! rate drawn anew: within the lease's drift bound ρ (90% of it, so that
//! integer rounding never carries a clock past the bound). For the negative
//! control `lease-drift-beyond-bound`, a paused node's clock also stands
//! still (rate 0, far outside any bound: a suspended virtual machine whose
//! monotonic clock skips the suspension). Rates drawn far outside the bound
//! at every node were tried first and caught only 1 seed in 300: a slow
//! follower clock holds its grant for long and delays the successor as
//! much as a slow leader clock extends the lease. Clocks start at a random origin: only their rates
//! matter to leases, never their offsets.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PPM: u64 = 1_000_000;

/// One node's monotonic clock.
#[derive(Clone, Debug)]
pub(crate) struct DriftClock {
    rng: ChaCha8Rng,
    /// The largest deviation of a rate from 1, in ppm (within the bound).
    drift_ppm: u64,
    /// The clock stands still while the node is paused (negative control).
    beyond_bound: bool,
    /// The current segment: real and local time at its start, its rate in
    /// ppm of real time, and its real end.
    start_us: u64,
    local_start_us: u64,
    rate_ppm: u64,
    end_us: u64,
    /// The simulated time of the last reading.
    last_us: u64,
}

impl DriftClock {
    /// A clock for one node, drawn from its own seed.
    pub(crate) fn new(seed: u64, drift_ppm: u32, beyond_bound: bool, now_us: u64) -> DriftClock {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let local_start_us = rng.gen_range(0..1_000_000_000);
        let mut clock = DriftClock {
            rng,
            drift_ppm: u64::from(drift_ppm) * 9 / 10,
            beyond_bound,
            start_us: now_us,
            local_start_us,
            rate_ppm: PPM,
            end_us: now_us,
            last_us: now_us,
        };
        clock.next_segment(now_us, local_start_us);
        clock
    }

    fn next_segment(&mut self, start_us: u64, local_start_us: u64) {
        self.start_us = start_us;
        self.local_start_us = local_start_us;
        self.rate_ppm = self
            .rng
            .gen_range(PPM - self.drift_ppm..=PPM + self.drift_ppm);
        self.end_us = start_us + self.rng.gen_range(20_000..500_000);
    }

    fn local_at(&self, now_us: u64) -> u64 {
        let elapsed = u128::from(now_us.saturating_sub(self.start_us));
        let local = elapsed * u128::from(self.rate_ppm) / u128::from(PPM);
        self.local_start_us + u64::try_from(local).unwrap_or(u64::MAX / 2)
    }

    /// The first simulated time at which this clock reads `local_ms` or
    /// more, if it is not frozen before then (at or before the last
    /// reading when it already does). Exact: the future rate segments come
    /// from the clock's own stream, drawn here on a copy exactly as
    /// `now_ms` will draw them.
    pub(crate) fn real_us_when(&self, local_ms: u64) -> u64 {
        /// Segments of at least 20 ms: a minute of leases is far within.
        const SEGMENTS_MAX: u32 = 1_000_000;
        let target_us = local_ms.saturating_mul(1000);
        let mut clock = self.clone();
        for _ in 0..SEGMENTS_MAX {
            if target_us <= clock.local_start_us {
                return clock.start_us;
            }
            if clock.local_at(clock.end_us) >= target_us {
                // Smallest `t` with ⌊(t − start)·rate/PPM⌋ ≥ need.
                let need = u128::from(target_us - clock.local_start_us);
                let rate = u128::from(clock.rate_ppm);
                let elapsed = (need * u128::from(PPM)).div_ceil(rate);
                let at = clock.start_us + u64::try_from(elapsed).unwrap_or(u64::MAX / 2);
                debug_assert!(clock.local_at(at) >= target_us);
                debug_assert!(at == clock.start_us || clock.local_at(at - 1) < target_us);
                return at;
            }
            let end = clock.end_us;
            let local = clock.local_at(end);
            clock.next_segment(end, local);
        }
        u64::MAX
    }

    /// The local time in ms at simulated time `now_us` (never earlier than
    /// a previous call's). With `frozen` (negative control only), the clock
    /// stood still since the last reading.
    pub(crate) fn now_ms(&mut self, now_us: u64, frozen: bool) -> u64 {
        if frozen && self.beyond_bound && now_us > self.last_us {
            let gap = now_us - self.last_us;
            self.start_us += gap;
            self.end_us += gap;
        }
        self.last_us = self.last_us.max(now_us);
        while now_us >= self.end_us {
            let end = self.end_us;
            let local = self.local_at(end);
            self.next_segment(end, local);
        }
        self.local_at(now_us) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_us_when_finds_the_first_moment_the_clock_reads_a_time() {
        let mut clock = DriftClock::new(11, 50_000, false, 1_000);
        let start_ms = clock.now_ms(1_000, false);
        for ahead_ms in [0, 1, 19, 20, 333, 2_000, 10_000] {
            let target = start_ms + ahead_ms;
            let at = clock.real_us_when(target);
            let mut probe = clock.clone();
            assert!(probe.now_ms(at, false) >= target, "{ahead_ms}");
            if at > 1_000 {
                let mut before = clock.clone();
                assert!(before.now_ms(at - 1, false) < target, "{ahead_ms}");
            }
        }
        // The real clock, read later, agrees with the copy.
        let at = clock.real_us_when(start_ms + 5_000);
        assert_eq!(clock.now_ms(at, false), start_ms + 5_000);
    }

    #[test]
    fn a_clock_within_the_bound_never_drifts_past_it() {
        let drift_ppm = 10_000;
        let mut clock = DriftClock::new(7, drift_ppm, false, 0);
        let start = clock.now_ms(0, false);
        let mut last = start;
        for step in 1..=20_000u64 {
            let now_us = step * 997;
            let ms = clock.now_ms(now_us, step % 7 == 0);
            assert!(ms >= last, "monotonic");
            last = ms;
        }
        let real_ms = 20_000 * 997 / 1000;
        let local_ms = last - start;
        let bound = real_ms * u64::from(drift_ppm) / PPM + 1;
        assert!(
            local_ms.abs_diff(real_ms) <= bound,
            "{local_ms} vs {real_ms}"
        );
    }
}
