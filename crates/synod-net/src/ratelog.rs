//! Rate-limited warnings for refused and failed handshakes.
//!
//! Anyone who can reach the peer port can make the node refuse a handshake,
//! thousands of times a second. Logging each one let an outsider write
//! 120 MB of log in 40 s, so the lines are limited: per reason (one
//! [`HandshakeError`] variant), at most one line per `interval`, and the next
//! line logged for a reason says how many were left out since the last one.
//! The counters in [`crate::NetStats`] stay exact; only the lines are thinned.
//!
//! The limiter is pure (time comes in as an argument), so its behaviour is
//! tested without sleeping.

use crate::handshake::{HandshakeError, REJECT_REASONS};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The reason index of a failed `accept` (usually out of file descriptors),
/// after the handshake refusals.
const ACCEPT_FAILED: usize = REJECT_REASONS;
/// Reasons in all.
const REASONS: usize = REJECT_REASONS + 1;

/// Per reason: when a line was last logged and how many were left out since.
#[derive(Clone, Copy, Debug, Default)]
struct Reason {
    logged_at: Option<Instant>,
    suppressed: u64,
}

/// At most one line per reason per interval; see the module docs.
#[derive(Debug)]
pub(crate) struct RejectLog {
    interval: Duration,
    reasons: Mutex<[Reason; REASONS]>,
}

impl RejectLog {
    /// Zero `interval` logs every line.
    pub(crate) fn new(interval: Duration) -> RejectLog {
        RejectLog {
            interval,
            reasons: Mutex::new([Reason::default(); REASONS]),
        }
    }

    /// Whether a line for `reason` may be logged at `now`: `Some(n)` with the
    /// number of lines left out since the last one, or `None` (this one is
    /// left out and counted for the next).
    pub(crate) fn admit(&self, reason: usize, now: Instant) -> Option<u64> {
        debug_assert!(reason < REASONS, "reason {reason} out of range");
        let mut reasons = self.reasons.lock().unwrap_or_else(PoisonError::into_inner);
        // An unknown reason is a bug; logging it unlimited is the safe side.
        let Some(slot) = reasons.get_mut(reason) else {
            return Some(0);
        };
        let due = slot
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if due {
            let suppressed = slot.suppressed;
            *slot = Reason {
                logged_at: Some(now),
                suppressed: 0,
            };
            Some(suppressed)
        } else {
            slot.suppressed = slot.suppressed.saturating_add(1);
            None
        }
    }

    /// Logs a refused or failed handshake in the one format operators grep
    /// for ("peer ADDR ...: closing"), unless this reason was logged within
    /// the interval.
    pub(crate) fn warn_rejected(&self, addr: SocketAddr, err: &HandshakeError) {
        let Some(suppressed) = self.admit(err.reason(), Instant::now()) else {
            return;
        };
        if suppressed == 0 {
            tracing::warn!("peer {addr} {err}: closing");
        } else {
            tracing::warn!(
                suppressed,
                "peer {addr} {err}: closing ({suppressed} more like it not logged in the last {:?}; counted in /metrics)",
                self.interval
            );
        }
    }
}

impl RejectLog {
    /// Logs a failed `accept` of a peer socket, rate limited like refusals
    /// (the accept loop pauses `backoff_min` after each, but that is still
    /// many lines a second while the node is out of file descriptors).
    pub(crate) fn warn_accept_failed(&self, err: &std::io::Error) {
        let Some(suppressed) = self.admit(ACCEPT_FAILED, Instant::now()) else {
            return;
        };
        tracing::warn!(
            suppressed,
            "accepting a peer connection failed: {err} ({suppressed} more not logged in the last {:?})",
            self.interval
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_per_reason_with_the_count_left_out() {
        let log = RejectLog::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(log.admit(0, at(0)), Some(0));
        // A flood within the second: nothing logged, every one counted.
        for ms in 1..1000 {
            assert_eq!(log.admit(0, at(ms)), None);
        }
        // Another reason has its own budget.
        assert_eq!(log.admit(1, at(500)), Some(0));
        assert_eq!(log.admit(1, at(600)), None);
        // Once the second is over, the next line carries the count.
        assert_eq!(log.admit(0, at(1000)), Some(999));
        assert_eq!(log.admit(0, at(1001)), None);
        assert_eq!(log.admit(0, at(5000)), Some(1));
        assert_eq!(log.admit(1, at(5000)), Some(1));
    }

    #[test]
    fn zero_interval_logs_everything() {
        let log = RejectLog::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(log.admit(3, now), Some(0));
        }
    }
}
