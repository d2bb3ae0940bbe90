//! Counters of the transport, kept in atomics and read as a [`NetStats`] snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use synod_core::NodeId;

/// A snapshot of the transport's counters. Counters only grow; `connections_open`,
/// `connected` and `queued` describe the moment of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Message frames written to sockets.
    pub frames_sent: u64,
    /// Payload and prefix bytes of those frames.
    pub bytes_sent: u64,
    /// Valid message frames read from peers and handed to the inbound channel.
    pub frames_received: u64,
    /// Payload and prefix bytes of those frames.
    pub bytes_received: u64,
    /// Messages dropped because the peer's send queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they were addressed to a node outside the
    /// current peer set or to this node, or did not come from this node.
    pub dropped_unroutable: u64,
    /// Messages refused because their encoding exceeded `frame_bytes_max`
    /// (each also logged at error level and returned by `Net::send`: a bug).
    pub dropped_too_large: u64,
    /// Connections closed because a peer sent a frame that was too large, did
    /// not decode, or was not from that peer to this node.
    pub bad_frames: u64,
    /// Handshakes refused or failed (either side), including timeouts; the
    /// two counters below are parts of this one.
    pub handshakes_rejected: u64,
    /// Of those, the ones where the other end could not prove it is a member:
    /// the TLS handshake failed (no certificate, another CA, expired, a
    /// plain-TCP client), or its certificate does not name the id it claimed.
    pub handshakes_unauthenticated: u64,
    /// Of those, the ones refused by a limit: too many pending handshakes
    /// (in all or from one source), or a peer reconnecting faster than
    /// `peer_accept_interval_min`.
    pub handshakes_rate_limited: u64,
    /// Links admitted from nodes that are not members here (see the `net`
    /// module's "Strangers").
    pub stranger_links: u64,
    /// Connections established (handshake complete), both directions, ever.
    pub connects: u64,
    /// Connections open now; with a healthy mesh, one per other member.
    pub connections_open: u64,
    /// For every member of the current peer set (this node aside), whether
    /// a connection to it is open now.
    pub connected: BTreeMap<NodeId, bool>,
    /// For every member of the current peer set (this node aside), messages
    /// waiting in its send queue now.
    pub queued: BTreeMap<NodeId, usize>,
}

/// The live counters behind [`NetStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_unroutable: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub bad_frames: AtomicU64,
    pub handshakes_rejected: AtomicU64,
    pub handshakes_unauthenticated: AtomicU64,
    pub handshakes_rate_limited: AtomicU64,
    pub stranger_links: AtomicU64,
    pub connects: AtomicU64,
    pub connections_open: AtomicU64,
}

/// Adds `n` to a counter. Relaxed: counters order nothing, they are only read
/// for reporting.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Everything except the per-peer maps, which the caller fills in.
    pub(crate) fn snapshot(&self) -> NetStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unroutable: get(&self.dropped_unroutable),
            dropped_too_large: get(&self.dropped_too_large),
            bad_frames: get(&self.bad_frames),
            handshakes_rejected: get(&self.handshakes_rejected),
            handshakes_unauthenticated: get(&self.handshakes_unauthenticated),
            handshakes_rate_limited: get(&self.handshakes_rate_limited),
            stranger_links: get(&self.stranger_links),
            connects: get(&self.connects),
            connections_open: get(&self.connections_open),
            connected: BTreeMap::new(),
            queued: BTreeMap::new(),
        }
    }
}

/// Counts one open connection for as long as it lives, however its task ends.
pub(crate) struct OpenConnection<'a>(&'a Counters);

impl<'a> OpenConnection<'a> {
    pub(crate) fn new(counters: &'a Counters) -> Self {
        add(&counters.connects, 1);
        add(&counters.connections_open, 1);
        OpenConnection(counters)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
