//! Configuration of the peer transport, with every limit named and validated.

use crate::error::NetError;
use crate::handshake::HANDSHAKE_PAYLOAD_BYTES;
use crate::tls::PeerSecurity;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use synod_core::NodeId;

/// Default for [`NetConfig::send_queue_max`].
pub const SEND_QUEUE_MAX_DEFAULT: usize = 4096;
/// Default for [`NetConfig::frame_bytes_max`]: 64 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Default for [`NetConfig::write_batch_bytes_max`]: 1 MiB.
pub const WRITE_BATCH_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Default for [`NetConfig::handshakes_pending_max`].
pub const HANDSHAKES_PENDING_MAX_DEFAULT: usize = 64;
/// Default for [`NetConfig::backoff_min`].
pub const BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(50);
/// Default for [`NetConfig::backoff_max`].
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_millis(500);
/// Default for [`NetConfig::handshake_timeout`].
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default for [`NetConfig::handshakes_pending_per_source_max`].
pub const HANDSHAKES_PENDING_PER_SOURCE_MAX_DEFAULT: usize = 8;
/// Default for [`NetConfig::handshakes_pending_per_member_ip_max`].
pub const HANDSHAKES_PENDING_PER_MEMBER_IP_MAX_DEFAULT: usize = 8;
/// Default for [`NetConfig::handshake_first_byte_timeout`].
pub const HANDSHAKE_FIRST_BYTE_TIMEOUT_DEFAULT: Duration = Duration::from_millis(500);
/// Default for [`NetConfig::peer_accept_interval_min`].
pub const PEER_ACCEPT_INTERVAL_MIN_DEFAULT: Duration = Duration::from_millis(200);
/// Default for [`NetConfig::rejected_log_interval`].
pub const REJECTED_LOG_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default for [`NetConfig::keepalive_interval`].
pub const KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// Default for [`NetConfig::idle_timeout`].
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// How a node joins the mesh of its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Identifies the cluster; a peer with another cluster id is refused at handshake,
    /// so that two clusters sharing hosts cannot exchange Paxos messages.
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// Where this node accepts peer connections.
    pub listen: SocketAddr,
    /// Every member including this node, at start: id -> address. The set
    /// can change later with [`crate::Net::set_peers`]; this field is not
    /// updated ([`crate::Net::peers`] gives the current set).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// TLS with the cluster's CA, or plain TCP on loopback only. Chosen
    /// explicitly by whoever builds the config: there is no default.
    pub security: PeerSecurity,
    /// Per-peer bound on queued outgoing messages; more are dropped (Paxos
    /// tolerates loss) and counted.
    pub send_queue_max: usize,
    /// Largest frame accepted or sent (bytes). A larger incoming frame closes the
    /// connection with a log line; a larger outgoing message is refused by
    /// [`crate::Net::send`] (counted, logged at error level, returned as an
    /// error). The node runtime checks at start-up that the core's largest
    /// message (`synod_core::Config::message_bytes_max`) fits.
    pub frame_bytes_max: usize,
    /// A writer stops adding queued messages to one write once it holds this many
    /// bytes, so one write call stays bounded while still batching.
    pub write_batch_bytes_max: usize,
    /// Accepted sockets from outsiders (any address that is not a dialing
    /// member's, see below) that may be in the handshake at once; more are
    /// closed at once, so a flood of idle sockets cannot hold unbounded tasks.
    pub handshakes_pending_max: usize,
    /// Of those, at most this many from one source IP address; more from that
    /// address are closed at once, so one flooding host cannot take every
    /// outsider slot.
    pub handshakes_pending_per_source_max: usize,
    /// Sockets from the IP address of a member that dials us (a lower id)
    /// that may be in the handshake at once, per such address. Counted apart
    /// from the two limits above, so that outsiders, however many addresses
    /// they use, cannot keep the members out. Processes sharing a member's
    /// address (on loopback: every local process) share its slots.
    pub handshakes_pending_per_member_ip_max: usize,
    /// An accepted socket that sends nothing for this long is closed (and
    /// counted as a failed handshake): a dialer speaks first, at once (a TLS
    /// ClientHello, or the handshake frame), so a silent socket is an
    /// outsider holding a slot. The whole handshake still has
    /// `handshake_timeout`; the smaller of the two applies to the first byte.
    pub handshake_first_byte_timeout: Duration,
    /// An accepted connection that completes its handshake as peer P less
    /// than this long after the last one accepted for P is closed (and
    /// counted) instead of replacing P's link. Bounds how often a flapping
    /// or misbehaving peer, authenticated or not, can cut its link; a
    /// restarted peer's redial is spaced by its backoff and gets in. Only
    /// applies while the peer has a live link. Zero turns the limit off.
    pub peer_accept_interval_min: Duration,
    /// A refused or failed handshake is logged at most once per this
    /// interval for each reason (the next line says how many were left
    /// out); the counters in [`crate::NetStats`] count every one. Bounds the
    /// log an outsider can make the node write. Zero logs every refusal.
    pub rejected_log_interval: Duration,
    /// First delay before a dialer reconnects.
    pub backoff_min: Duration,
    /// The delay doubles after each failed attempt up to this.
    pub backoff_max: Duration,
    /// Connecting plus the handshake must finish within this, or the socket is closed.
    pub handshake_timeout: Duration,
    /// A writer with nothing to send for this long sends a keepalive (an
    /// empty frame), so the other side can tell a quiet link from a dead one.
    pub keepalive_interval: Duration,
    /// A connection on which nothing (not even a keepalive) arrived for this
    /// long is closed and redialed; connecting (the TCP part) is also given
    /// up after this long. Why: after a partition heals, a TCP connection
    /// that was stalled waits out its exponential retransmission backoff
    /// (seconds) before it moves again, while a fresh connection works at
    /// once; a SYN lost during the partition is likewise retried only after
    /// 1 s, 3 s, 7 s... So a stalled link is replaced, not waited for.
    pub idle_timeout: Duration,
}

impl NetConfig {
    /// A config with every limit at its default and the given security.
    pub fn new(
        cluster_id: u64,
        node_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        security: PeerSecurity,
    ) -> NetConfig {
        NetConfig {
            cluster_id,
            node_id,
            listen,
            peers,
            security,
            send_queue_max: SEND_QUEUE_MAX_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            write_batch_bytes_max: WRITE_BATCH_BYTES_MAX_DEFAULT,
            handshakes_pending_max: HANDSHAKES_PENDING_MAX_DEFAULT,
            handshakes_pending_per_source_max: HANDSHAKES_PENDING_PER_SOURCE_MAX_DEFAULT,
            handshakes_pending_per_member_ip_max: HANDSHAKES_PENDING_PER_MEMBER_IP_MAX_DEFAULT,
            handshake_first_byte_timeout: HANDSHAKE_FIRST_BYTE_TIMEOUT_DEFAULT,
            peer_accept_interval_min: PEER_ACCEPT_INTERVAL_MIN_DEFAULT,
            rejected_log_interval: REJECTED_LOG_INTERVAL_DEFAULT,
            backoff_min: BACKOFF_MIN_DEFAULT,
            backoff_max: BACKOFF_MAX_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            keepalive_interval: KEEPALIVE_INTERVAL_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
        }
    }

    /// Checks every rule; [`crate::Net::start`] calls this first.
    pub fn validate(&self) -> Result<(), NetError> {
        let fail = |why: String| Err(NetError::InvalidConfig(why));
        if !self.peers.contains_key(&self.node_id) {
            return fail(format!(
                "peers must include this node ({}), found {:?}",
                self.node_id,
                self.peers.keys().collect::<Vec<_>>()
            ));
        }
        if self.send_queue_max == 0 {
            return fail("send_queue_max must be at least 1".into());
        }
        // The length prefix is a u32; a handshake must fit in a frame.
        if self.frame_bytes_max < HANDSHAKE_PAYLOAD_BYTES
            || self.frame_bytes_max > u32::MAX as usize
        {
            return fail(format!(
                "frame_bytes_max {} must be in {}..={}",
                self.frame_bytes_max,
                HANDSHAKE_PAYLOAD_BYTES,
                u32::MAX
            ));
        }
        if self.write_batch_bytes_max == 0 {
            return fail("write_batch_bytes_max must be at least 1".into());
        }
        if self.handshakes_pending_max == 0
            || self.handshakes_pending_per_source_max == 0
            || self.handshakes_pending_per_member_ip_max == 0
        {
            return fail(
                "handshakes_pending_max, handshakes_pending_per_source_max and handshakes_pending_per_member_ip_max must be at least 1"
                    .into(),
            );
        }
        if self.keepalive_interval.is_zero() || self.idle_timeout < 2 * self.keepalive_interval {
            return fail(format!(
                "keepalive_interval {:?} must be positive and idle_timeout {:?} at least twice it",
                self.keepalive_interval, self.idle_timeout
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return fail(format!(
                "backoff_min {:?} must be positive and at most backoff_max {:?}",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.handshake_timeout.is_zero() || self.handshake_first_byte_timeout.is_zero() {
            return fail(
                "handshake_timeout and handshake_first_byte_timeout must be positive".into(),
            );
        }
        self.validate_security()
    }

    /// Insecure links only on loopback; a TLS identity only for its own node.
    fn validate_security(&self) -> Result<(), NetError> {
        match &self.security {
            PeerSecurity::InsecureLoopback => {
                let outside = std::iter::once((self.node_id, &self.listen))
                    .chain(self.peers.iter().map(|(id, addr)| (*id, addr)))
                    .find(|(_, addr)| !addr.ip().is_loopback());
                if let Some((id, addr)) = outside {
                    return Err(NetError::InvalidConfig(format!(
                        "insecure peer links are allowed on loopback only, but node {id} has peer address {addr}: anyone who can reach it could act as any member; use TLS credentials (synod certs) for addresses outside loopback"
                    )));
                }
            }
            PeerSecurity::Tls(tls) => {
                if tls.node_id() != self.node_id {
                    return Err(NetError::InvalidConfig(format!(
                        "the TLS credentials are node {}'s, but this is node {}",
                        tls.node_id(),
                        self.node_id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks a listener on `local` that replaces `listen` (see
    /// [`crate::Net::start_with_listener`]): `validate` checked `listen`
    /// only, and a listener on another interface would serve
    /// unauthenticated links outside loopback.
    pub fn validate_listener(&self, local: SocketAddr) -> Result<(), NetError> {
        if matches!(self.security, PeerSecurity::InsecureLoopback) && !local.ip().is_loopback() {
            return Err(NetError::InvalidConfig(format!(
                "insecure peer links are allowed on loopback only, but the peer listener handed in is on {local}: anyone who can reach it could act as any member; use TLS credentials (synod certs) for addresses outside loopback"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetConfig {
        let addr: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        let peers = [(NodeId(1), addr)].into_iter().collect();
        NetConfig::new(9, NodeId(1), addr, peers, PeerSecurity::InsecureLoopback)
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = config();
        assert_eq!(cfg.send_queue_max, 4096);
        assert_eq!(cfg.frame_bytes_max, 64 << 20);
        assert_eq!(cfg.backoff_min, Duration::from_millis(50));
        assert_eq!(cfg.backoff_max, Duration::from_millis(500));
        assert_eq!(cfg.handshake_timeout, Duration::from_secs(5));
        assert_eq!(cfg.handshake_first_byte_timeout, Duration::from_millis(500));
        assert_eq!(cfg.handshakes_pending_per_member_ip_max, 8);
        assert_eq!(cfg.keepalive_interval, Duration::from_millis(100));
        assert_eq!(cfg.idle_timeout, Duration::from_secs(1));
        cfg.validate().unwrap();
    }

    #[test]
    fn rejects_broken_limits() {
        let broken: [fn(&mut NetConfig); 14] = [
            |c| c.handshakes_pending_per_source_max = 0,
            |c| c.handshakes_pending_per_member_ip_max = 0,
            |c| c.handshake_first_byte_timeout = Duration::ZERO,
            |c| c.listen = "0.0.0.0:7101".parse().unwrap(),
            |c| {
                c.peers.insert(NodeId(2), "192.0.2.1:7101".parse().unwrap());
            },
            |c| c.keepalive_interval = Duration::ZERO,
            |c| c.idle_timeout = c.keepalive_interval,
            |c| c.node_id = NodeId(2),
            |c| c.send_queue_max = 0,
            |c| c.frame_bytes_max = 3,
            |c| c.write_batch_bytes_max = 0,
            |c| c.handshakes_pending_max = 0,
            |c| c.backoff_min = c.backoff_max * 2,
            |c| c.handshake_timeout = Duration::ZERO,
        ];
        for (i, breaker) in broken.iter().enumerate() {
            let mut cfg = config();
            breaker(&mut cfg);
            assert!(
                matches!(cfg.validate(), Err(NetError::InvalidConfig(_))),
                "case {i}"
            );
        }
    }
}
