//! Where a node's wall-clock time comes from.
//!
//! Time enters the replicated state in one place only: the stamp a proposer
//! puts in each command's envelope (see `envelope.rs`). [`WallClock`] is the
//! source of that stamp; tests and the simulator replace it with a clock that
//! is skewed or jumps.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The system clock in ms since the Unix epoch (0 if it reads before 1970).
pub(crate) fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
