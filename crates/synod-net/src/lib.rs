//! # synod-net: peer networking for Synod replicas
//!
//! [`Net`] keeps one TCP connection between every pair of members and carries
//! [`synod_core::Message`]s over it in both directions.
//!
//! - **Members.** The peer set starts as [`NetConfig::peers`] and can be
//!   replaced while the transport runs with [`Net::set_peers`] (read back
//!   with [`Net::peers`]): added members are dialed or accepted, removed ones
//!   are disconnected, refused at handshake and unroutable, a member with a
//!   new address is treated as removed and added, and members whose address
//!   did not change keep their link and queue. The handshake's membership
//!   check, the member slots for pending handshakes and the per-peer stats
//!   all follow the current set.
//! - **Who dials.** The member with the lower id dials the higher one, so a
//!   pair never races to open two connections. The dialer redials a broken
//!   connection with jittered exponential backoff; the acceptor waits, and a
//!   new connection from a peer replaces its old one (the peer restarted).
//! - **Security.** Chosen explicitly in [`NetConfig::security`]: mutually
//!   authenticated TLS 1.3 with the cluster's CA, where each certificate names
//!   its node and cluster (see the [`tls`] module), or plain TCP on loopback
//!   only ([`PeerSecurity::InsecureLoopback`], logged as a warning).
//! - **Handshake.** The first frame each way (inside TLS) names the protocol
//!   version, the cluster and both ends (see the `handshake` module); any
//!   mismatch, or a claimed id the certificate does not name, closes the
//!   socket with a count and a warning; warnings are rate limited per reason
//!   ([`NetConfig::rejected_log_interval`]), counts are exact.
//! - **Reconnect storms.** Pending handshakes are bounded in all and per
//!   source address, with slots of their own for the addresses of the
//!   members that dial us (so outsiders cannot keep members out); a silent
//!   socket is dropped after [`NetConfig::handshake_first_byte_timeout`] and
//!   every handshake times out; an accepted connection replaces a live link
//!   of the same peer at most once per [`NetConfig::peer_accept_interval_min`].
//! - **Frames.** A 4-byte little-endian length, then `Message::to_bytes()`.
//!   Writers batch every queued message into one write; `TCP_NODELAY` is set.
//! - **Bounds.** Each peer has a bounded send queue that outlives connections;
//!   [`Net::send`] never blocks and drops (and counts) what does not fit, which
//!   Paxos tolerates like any lost packet. A message too large for a frame is
//!   never dropped silently: `send` counts it, logs it at error level and
//!   returns [`MessageTooLarge`] (it can never be sent, so it is a bug). Incoming frames are bounded by
//!   [`NetConfig::frame_bytes_max`], checked before anything is allocated, and
//!   the inbound channel is bounded by the caller: a full one stops the reader.
//! - **Hostile input.** A frame that is too large, does not decode, or is not
//!   from the handshaked peer to this node closes that connection with a
//!   warning and a count in [`NetStats`]; nothing from the network can panic.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::collections::BTreeMap;
//! use synod_core::{Ballot, Body, GroupId, InstanceId, Message, NodeId};
//! use synod_net::{Net, NetConfig, PeerSecurity};
//! use tokio::net::TcpListener;
//! use tokio::sync::mpsc;
//!
//! // Bind first, so every member's config can name the real addresses.
//! let (a, b) = (TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?);
//! let peers: BTreeMap<_, _> = [(NodeId(1), a.local_addr()?), (NodeId(2), b.local_addr()?)].into();
//! let (tx1, _rx1) = mpsc::channel(1024);
//! let (tx2, mut rx2) = mpsc::channel(1024);
//! // Plain TCP is allowed on loopback only; real clusters use `PeerSecurity::Tls`.
//! let config = |id: u32| NetConfig::new(7, NodeId(id), peers[&NodeId(id)], peers.clone(), PeerSecurity::InsecureLoopback);
//! let one = Net::start_with_listener(config(1), a, tx1).await?;
//! let two = Net::start_with_listener(config(2), b, tx2).await?;
//!
//! let msg = Message {
//!     group: GroupId(0),
//!     from: NodeId(1),
//!     to: NodeId(2),
//!     body: Body::Accepted { ballot: Ballot::ZERO, instance: InstanceId(0) },
//! };
//! one.send(msg.clone())?; // queued until node 1 has dialed node 2
//! assert_eq!(rx2.recv().await, Some(msg));
//! one.shutdown().await;
//! two.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod backoff;
mod config;
mod connection;
mod der;
mod error;
mod frame;
mod handshake;
mod membership;
mod net;
mod peer;
mod ratelog;
mod slots;
mod stats;
pub mod tls;

pub use config::{
    NetConfig, BACKOFF_MAX_DEFAULT, BACKOFF_MIN_DEFAULT, FRAME_BYTES_MAX_DEFAULT,
    HANDSHAKES_PENDING_MAX_DEFAULT, HANDSHAKES_PENDING_PER_MEMBER_IP_MAX_DEFAULT,
    HANDSHAKES_PENDING_PER_SOURCE_MAX_DEFAULT, HANDSHAKE_FIRST_BYTE_TIMEOUT_DEFAULT,
    HANDSHAKE_TIMEOUT_DEFAULT, PEER_ACCEPT_INTERVAL_MIN_DEFAULT, REJECTED_LOG_INTERVAL_DEFAULT,
    SEND_QUEUE_MAX_DEFAULT, WRITE_BATCH_BYTES_MAX_DEFAULT,
};
pub use error::{MessageTooLarge, NetError};
/// The framing the connections use, as pure buffer code: the simulator sends
/// every message through it so that it crosses its network as these bytes.
pub use frame::{put_message, take_frame, FrameTooLarge};
pub use handshake::{HANDSHAKE_PAYLOAD_BYTES, MAGIC, PROTOCOL_VERSION};
pub use net::{Net, STRANGERS_MAX};
pub use stats::NetStats;
pub use tls::{PeerSecurity, PeerTls, TlsError};
