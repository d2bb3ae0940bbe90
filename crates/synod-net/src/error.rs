//! Errors of the peer transport.

use std::net::SocketAddr;
use synod_core::NodeId;
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

/// A message too large for one frame, refused by [`crate::Net::send`]. It
/// can never be sent (the receiver would close the connection on it), so
/// retrying cannot help; since the core bounds its messages below the frame
/// limit, this is a bug of the sender.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("a {kind} message for {to} encodes to {bytes} bytes, over the frame limit of {max} bytes")]
pub struct MessageTooLarge {
    /// The message's kind (`Body::name`).
    pub kind: &'static str,
    /// Its receiver.
    pub to: NodeId,
    /// Its encoded length.
    pub bytes: usize,
    /// The frame limit.
    pub max: usize,
}
