//! What a user replicates: a deterministic state machine.

use bytes::Bytes;
use synod_core::InstanceId;

/// Where in the log a command or read takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    /// The instance whose value holds the command.
    pub instance: InstanceId,
    /// Milliseconds since the Unix epoch, stamped by the proposing node and
    /// made monotonic along the log (the maximum of every stamp so far). Every
    /// replica sees the same value for the same command, so a state machine
    /// uses this, never its own clock, for anything time-dependent (expiry).
    pub time_ms: u64,
}

/// A deterministic state machine replicated by a [`crate::Node`].
///
/// Commands, reads and outputs are opaque bytes: encode them as you like.
/// `apply` must be a pure function of (state, command, context): every replica
/// applies the same commands in the same order and must reach the same state.
pub trait StateMachine: Send + 'static {
    /// Applies one replicated command and returns its output. Runs on every
    /// replica; the output is returned to the proposer.
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes;

    /// Answers a linearizable read at its point in the log. Runs only on the
    /// node that asked; it must not change the state.
    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes;

    /// The whole state, to be given back to `restore` (on a restart, or on a
    /// replica that lags behind a compacted log).
    fn snapshot(&self) -> Bytes;

    /// Replaces the state with one produced by `snapshot`.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// A digest of the whole state, equal on every replica that applied the
    /// same commands (a pure function of the state: no addresses, no
    /// iteration order of a randomly seeded map). Replicas compare digests
    /// taken at the same point in the log, and a mismatch is reported as
    /// divergence, like a mismatch of the applied log checksum: it catches a
    /// state machine that is not deterministic. Called after every batch of
    /// applied commands, so it must be cheap (keep it up to date as `apply`
    /// changes the state). The default, `None`, compares nothing.
    fn digest(&self) -> Option<u64> {
        None
    }
}
