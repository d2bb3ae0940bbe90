//! Reconnect delays: exponential from `backoff_min` to `backoff_max`, with jitter
//! so that nodes restarted together do not redial in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// The dialer's delay schedule for one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// The base of the next delay; doubles after each use, up to `max`.
    base: Duration,
    /// State of a splitmix64 generator. Jitter needs spread, not quality, and a
    /// tiny generator avoids a dependency.
    jitter_state: u64,
}

impl Backoff {
    /// A schedule whose jitter is seeded from `seed_parts` and a per-process
    /// random key, so two nodes (or two runs) draw different delays.
    pub(crate) fn new(min: Duration, max: Duration, seed_parts: impl Hash) -> Backoff {
        debug_assert!(!min.is_zero() && min <= max, "validated by NetConfig");
        let mut hasher = RandomState::new().build_hasher();
        seed_parts.hash(&mut hasher);
        Instant::now().hash(&mut hasher);
        Backoff::with_seed(min, max, hasher.finish())
    }

    fn with_seed(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max,
            base: min,
            jitter_state: seed,
        }
    }

    /// Back to the shortest delay, after a connection was established.
    pub(crate) fn reset(&mut self) {
        self.base = self.min;
    }

    /// The next delay: uniform in `[base/2, base]`, so never above `max`; then
    /// the base doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.max);
        let half = base / 2;
        let spread = (base - half).as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            self.next_random() % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    fn next_random(&mut self) -> u64 {
        self.jitter_state = self.jitter_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.jitter_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_with_bounded_jitter() {
        let (min, max) = (Duration::from_millis(50), Duration::from_millis(400));
        let mut backoff = Backoff::with_seed(min, max, 42);
        let bases = [50, 100, 200, 400, 400, 400];
        for base in bases {
            let base = Duration::from_millis(base);
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay <= base,
                "{delay:?} for base {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn jitter_spreads_delays() {
        let second = Duration::from_secs(1);
        let mut backoff = Backoff::with_seed(second, second, 7);
        let delays: std::collections::BTreeSet<_> = (0..16).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 8, "{delays:?}");
    }
}
