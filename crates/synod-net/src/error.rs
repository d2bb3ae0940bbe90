//! Errors of the peer transport.

use std::net::SocketAddr;
use thiserror::Error;

/// Errors returned by [`crate::Net`] and [`crate::NetConfig::validate`].
///
/// Only start-up can fail: once running, every fault of a peer or a connection
/// is logged, counted in [`crate::NetStats`] and handled by reconnecting.
#[derive(Debug, Error)]
pub enum NetError {
    /// The configuration breaks a rule; the message says which.
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// The listen address could not be bound (taken, or not a local address).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// Why the operating system refused.
        source: std::io::Error,
    },
    /// The listener given to [`crate::Net::start_with_listener`] has no local address.
    #[error("listener has no local address: {0}")]
    ListenerAddr(std::io::Error),
}
