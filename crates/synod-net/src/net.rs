//! The transport: [`Net`], its listener and its dialers.

use crate::backoff::Backoff;
use crate::config::NetConfig;
use crate::connection::{self, BoxedStream};
use crate::error::{MessageTooLarge, NetError};
use crate::handshake::{self, HandshakeError};
use crate::peer::Peer;
use crate::ratelog::RejectLog;
use crate::slots::{HandshakeSlots, Slot, SlotLimits};
use crate::stats::{add, Counters, NetStats};
use crate::tls::PeerSecurity;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use synod_core::{Message, NodeId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// State shared by the handle and every task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub cfg: NetConfig,
    pub local_addr: SocketAddr,
    pub counters: Counters,
    /// Rate limits the warnings of refused handshakes (not their counts).
    reject_log: RejectLog,
    /// Every member except this node.
    pub peers: BTreeMap<NodeId, Arc<Peer>>,
    pub inbound: mpsc::Sender<Message>,
    /// Set to `true` once; every task watches it and winds down.
    pub shutdown: watch::Sender<bool>,
    pub next_connection_id: AtomicU64,
    /// The listener and dialer tasks; each waits for the connections it started.
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

/// The peer transport of one node: a TCP connection to every other member,
/// dialed by the lower id of each pair, carrying framed [`Message`]s both ways.
///
/// Cheap to clone; clones share one transport. Dropping the last clone stops
/// the background tasks without waiting; [`Net::shutdown`] stops them and waits.
#[derive(Clone, Debug)]
pub struct Net {
    handle: Arc<Handle>,
}

/// Owned by the clones of [`Net`] only (never by tasks), so its drop means no
/// one can send any more.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Net {
    /// Binds the listener (error if the address is taken) and starts background
    /// tasks on the current tokio runtime. Every valid message received from a
    /// peer is sent into `inbound`; if it is full, the reader waits
    /// (backpressure reaches the sender through TCP).
    pub async fn start(cfg: NetConfig, inbound: mpsc::Sender<Message>) -> Result<Net, NetError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| NetError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Net::start_with_listener(cfg, listener, inbound).await
    }

    /// Like [`Net::start`], but accepts on a listener the caller bound (and
    /// `cfg.listen` is ignored). Lets tests and tools bind port 0 first and put
    /// the real address in every member's config without a race for the port.
    pub async fn start_with_listener(
        cfg: NetConfig,
        listener: TcpListener,
        inbound: mpsc::Sender<Message>,
    ) -> Result<Net, NetError> {
        cfg.validate()?;
        let local_addr = listener.local_addr().map_err(NetError::ListenerAddr)?;
        let peers = cfg
            .peers
            .iter()
            .filter(|(id, _)| **id != cfg.node_id)
            .map(|(id, addr)| (*id, Arc::new(Peer::new(*id, *addr, cfg.send_queue_max))))
            .collect();
        match &cfg.security {
            PeerSecurity::Tls(tls) => tracing::info!(
                node = %cfg.node_id,
                cluster = tls.cluster(),
                "peer links use mutually authenticated TLS 1.3 (certificates name node-<id>.{}.synod)",
                tls.cluster()
            ),
            PeerSecurity::InsecureLoopback => tracing::warn!(
                node = %cfg.node_id,
                "peer links are INSECURE (plain TCP, unauthenticated): anyone who can reach the peer port on loopback can act as any member; use TLS credentials outside tests"
            ),
        }
        tracing::info!(
            node = %cfg.node_id,
            cluster_id = cfg.cluster_id,
            %local_addr,
            peers = ?cfg.peers,
            send_queue_max = cfg.send_queue_max,
            frame_bytes_max = cfg.frame_bytes_max,
            write_batch_bytes_max = cfg.write_batch_bytes_max,
            handshakes_pending_max = cfg.handshakes_pending_max,
            handshakes_pending_per_source_max = cfg.handshakes_pending_per_source_max,
            handshakes_pending_per_member_ip_max = cfg.handshakes_pending_per_member_ip_max,
            handshake_first_byte_timeout = ?cfg.handshake_first_byte_timeout,
            peer_accept_interval_min = ?cfg.peer_accept_interval_min,
            backoff_min = ?cfg.backoff_min,
            backoff_max = ?cfg.backoff_max,
            handshake_timeout = ?cfg.handshake_timeout,
            rejected_log_interval = ?cfg.rejected_log_interval,
            "peer transport listening"
        );
        let reject_log = RejectLog::new(cfg.rejected_log_interval);
        let inner = Arc::new(Inner {
            cfg,
            local_addr,
            counters: Counters::default(),
            reject_log,
            peers,
            inbound,
            shutdown: watch::Sender::new(false),
            next_connection_id: AtomicU64::new(0),
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = inner.tasks.lock().await;
            tasks.spawn(accept_loop(inner.clone(), listener));
            // One connection per pair: we dial only the members above us.
            for peer in inner.peers.values().filter(|p| p.id > inner.cfg.node_id) {
                tasks.spawn(dial_loop(inner.clone(), peer.clone()));
            }
        }
        Ok(Net {
            handle: Arc::new(Handle { inner }),
        })
    }

    /// Queues a message for `msg.to`. Never blocks. A message for an unknown
    /// node or this node, one not from this node, or one that finds the
    /// peer's queue full is dropped and counted in [`Net::stats`]: Paxos
    /// tolerates such losses like any lost packet. Messages for a
    /// disconnected peer wait in its queue until it reconnects.
    ///
    /// A message whose encoding exceeds [`NetConfig::frame_bytes_max`] can
    /// never be sent, however often it is retried: it is counted
    /// (`dropped_too_large`), logged at error level and returned as an error.
    /// The core bounds every message it emits below the frame limit (checked
    /// at start-up), so this is a bug; the caller should treat it as fatal
    /// rather than let a value that is never chosen stall the log.
    pub fn send(&self, msg: Message) -> Result<(), MessageTooLarge> {
        let inner = self.inner();
        // Checked here, on the caller's side, so that the caller learns of it;
        // the writer would only drop it.
        let bytes = synod_core::codec::encoded_len(&msg);
        if bytes > inner.cfg.frame_bytes_max {
            let err = MessageTooLarge {
                kind: msg.body.name(),
                to: msg.to,
                bytes,
                max: inner.cfg.frame_bytes_max,
            };
            add(&inner.counters.dropped_too_large, 1);
            tracing::error!(to = %msg.to, bytes, max = inner.cfg.frame_bytes_max, "cannot send: {err}");
            return Err(err);
        }
        let routable = msg.from == inner.cfg.node_id;
        match inner.peers.get(&msg.to).filter(|_| routable) {
            None => {
                add(&inner.counters.dropped_unroutable, 1);
                tracing::debug!(from = %msg.from, to = %msg.to, "dropping unroutable {} message", msg.body.name());
            }
            Some(peer) => {
                if peer.enqueue(msg).is_err() {
                    add(&inner.counters.dropped_queue_full, 1);
                }
            }
        }
        Ok(())
    }

    /// A snapshot of the counters and of each peer's connection and queue.
    pub fn stats(&self) -> NetStats {
        let inner = self.inner();
        let mut stats = inner.counters.snapshot();
        for (id, peer) in &inner.peers {
            stats.connected.insert(*id, peer.is_connected());
            stats.queued.insert(*id, peer.queued());
        }
        stats
    }

    /// Stops every task and closes every socket, including the listener;
    /// returns when that is done. Later sends are dropped (queued, never sent).
    pub async fn shutdown(&self) {
        let inner = self.inner();
        inner.shutdown.send_replace(true);
        // Held while joining, so a concurrent call also returns only when done.
        let mut tasks = inner.tasks.lock().await;
        while let Some(ended) = tasks.join_next().await {
            if let Err(err) = ended {
                tracing::error!("peer transport task failed: {err}");
            }
        }
        tracing::info!(node = %inner.cfg.node_id, "peer transport stopped");
    }

    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner().local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner().cfg.node_id
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }
}

/// Resolves once shutdown has begun.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Logs (rate limited per reason) and counts a failed handshake; logged
/// first, so that whoever sees the count can also find a line of its kind.
fn reject(inner: &Inner, addr: SocketAddr, err: &HandshakeError) {
    inner.reject_log.warn_rejected(addr, err);
    add(&inner.counters.handshakes_rejected, 1);
    if err.is_unauthenticated() {
        add(&inner.counters.handshakes_unauthenticated, 1);
    }
    if err.is_rate_limited() {
        add(&inner.counters.handshakes_rate_limited, 1);
    }
}

/// Accepts sockets and runs each through the handshake and, if it passes, as
/// the connection of the peer that dialed.
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut shutdown = inner.shutdown.subscribe();
    let cfg = &inner.cfg;
    let limits = SlotLimits {
        outsiders_max: cfg.handshakes_pending_max,
        per_source_max: cfg.handshakes_pending_per_source_max,
        per_member_ip_max: cfg.handshakes_pending_per_member_ip_max,
    };
    // Only members with lower ids dial us (one connection per pair).
    let dialers = cfg.peers.iter().filter(|(id, _)| **id < cfg.node_id);
    let slots = Arc::new(HandshakeSlots::new(
        limits,
        dialers.map(|(_, addr)| addr.ip()),
    ));
    // At most the pending handshakes (outsiders' and members') plus one live
    // connection per peer (and replaced ones for the moment they take to close).
    let mut accepted = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = stopping(&mut shutdown) => break,
            Some(_) = accepted.join_next(), if !accepted.is_empty() => continue,
            result = listener.accept() => match result {
                Ok(connection) => connection,
                Err(err) => {
                    // Usually out of file descriptors: pause rather than spin.
                    inner.reject_log.warn_accept_failed(&err);
                    tokio::select! {
                        _ = stopping(&mut shutdown) => break,
                        _ = tokio::time::sleep(inner.cfg.backoff_min) => continue,
                    }
                }
            },
        };
        match slots.take(remote.ip()) {
            Ok(slot) => {
                accepted.spawn(accept_connection(inner.clone(), stream, remote, slot));
            }
            Err(busy) => reject(&inner, remote, &busy),
        }
    }
    drop(listener);
    // Every accepted task watches the shutdown flag too, so this ends promptly.
    while accepted.join_next().await.is_some() {}
}

/// The acceptor's side of one socket: handshake, then the connection.
/// `slot` (its pending-handshake slot) is held for the handshake only.
async fn accept_connection(inner: Arc<Inner>, stream: TcpStream, remote: SocketAddr, slot: Slot) {
    let mut shutdown = inner.shutdown.subscribe();
    if let Err(err) = stream.set_nodelay(true) {
        tracing::warn!("cannot set TCP_NODELAY for peer {remote}: {err}");
    }
    // The timeout covers TLS and the inner handshake together, so a silent or
    // slow unauthenticated socket holds its slot for at most this long.
    let hs_timeout = inner.cfg.handshake_timeout;
    let result = tokio::select! {
        _ = stopping(&mut shutdown) => return,
        result = timeout(hs_timeout, accept_handshake(&inner, stream)) => result,
    };
    drop(slot);
    let result = result.unwrap_or(Err(HandshakeError::Timeout(hs_timeout)));
    let (peer_id, stream) = match result {
        Ok(accepted) => accepted,
        Err(err) => {
            reject(&inner, remote, &err);
            return;
        }
    };
    // check_hello admitted only members other than us, so the lookup succeeds.
    let Some(peer) = inner.peers.get(&peer_id).cloned() else {
        debug_assert!(false, "handshake admitted non-member {peer_id}");
        return;
    };
    connection::run(inner, peer, stream, remote).await;
}

/// Whether a dialer that proved (with TLS) or claimed (insecure) to be
/// `claimed` may replace that peer's link now. A new connection replaces the
/// live link (the peer restarted), but not more often than
/// `peer_accept_interval_min`: a flapping or hostile member cannot keep
/// cutting its link. Judged before we answer, so a refused dialer learns
/// nothing and its connection never reaches the peer's slot.
fn admit(inner: &Inner, claimed: NodeId) -> Result<(), HandshakeError> {
    let interval = inner.cfg.peer_accept_interval_min;
    // check_hello admitted only members other than us before this is called.
    let Some(peer) = inner.peers.get(&claimed) else {
        return Err(HandshakeError::UnknownPeer(claimed));
    };
    if peer.admit_accepted(std::time::Instant::now(), interval) {
        Ok(())
    } else {
        Err(HandshakeError::RateLimited {
            peer: claimed,
            interval,
        })
    }
}

/// TLS (if configured) and the inner handshake, acceptor side.
async fn accept_handshake(
    inner: &Inner,
    mut stream: TcpStream,
) -> Result<(NodeId, BoxedStream), HandshakeError> {
    let cfg = &inner.cfg;
    // Every dialer speaks first (a TLS ClientHello, or our handshake), at
    // once: a socket that stays silent is an outsider holding a slot, dropped
    // long before the handshake timeout.
    let first_byte_timeout = cfg.handshake_first_byte_timeout.min(cfg.handshake_timeout);
    let mut first = [0u8; 1];
    if timeout(first_byte_timeout, stream.peek(&mut first))
        .await
        .is_err()
    {
        return Err(HandshakeError::Silent(first_byte_timeout));
    }
    match &cfg.security {
        PeerSecurity::InsecureLoopback => {
            let peer = handshake::accept(&mut stream, cfg, |claimed| admit(inner, claimed)).await?;
            Ok((peer, Box::new(stream)))
        }
        PeerSecurity::Tls(tls) => {
            // Completes only with a client certificate chaining to our CA.
            let mut stream = tls
                .acceptor()
                .accept(stream)
                .await
                .map_err(HandshakeError::Tls)?;
            let certificates = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            // The claimed id must be one the certificate names; we answer
            // (and so reveal nothing more) only after that check.
            let authorize = |claimed| {
                tls.check_dialer(certificates.as_deref(), claimed)
                    .map_err(|why| HandshakeError::NotCertified { claimed, why })?;
                admit(inner, claimed)
            };
            let peer = handshake::accept(&mut stream, cfg, authorize).await?;
            Ok((peer, Box::new(stream)))
        }
    }
}

/// Why one dial attempt failed.
enum DialFailed {
    /// Could not connect at all: the peer is down or unreachable. Expected
    /// while members start, so logged quietly.
    Connect(std::io::Error),
    Handshake(HandshakeError),
}

/// Keeps a connection to `peer` (a member with a higher id) open for as long
/// as the node runs, redialing with backoff whenever it breaks.
async fn dial_loop(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut shutdown = inner.shutdown.subscribe();
    let cfg = &inner.cfg;
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, (cfg.node_id, peer.id));
    loop {
        let attempt = tokio::select! {
            _ = stopping(&mut shutdown) => return,
            attempt = dial(cfg, &peer) => attempt,
        };
        match attempt {
            Ok(stream) => {
                backoff.reset();
                connection::run(inner.clone(), peer.clone(), stream, peer.addr).await;
            }
            Err(DialFailed::Connect(err)) => {
                tracing::debug!(peer = %peer.id, "cannot connect to peer {} at {}: {err}", peer.id, peer.addr);
            }
            Err(DialFailed::Handshake(err)) => {
                reject(&inner, peer.addr, &err);
            }
        }
        tokio::select! {
            _ = stopping(&mut shutdown) => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One attempt: connect and handshake, each within the handshake timeout.
async fn dial(cfg: &NetConfig, peer: &Peer) -> Result<BoxedStream, DialFailed> {
    // A SYN lost to a partition is retried by the kernel only after 1 s, then
    // 3 s...: give up sooner and dial afresh (see `NetConfig::idle_timeout`).
    let connect_timeout = cfg.idle_timeout.min(cfg.handshake_timeout);
    let connected = timeout(connect_timeout, TcpStream::connect(peer.addr)).await;
    let stream = connected
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(DialFailed::Connect)?;
    stream.set_nodelay(true).map_err(DialFailed::Connect)?;
    match timeout(cfg.handshake_timeout, dial_handshake(cfg, peer.id, stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(DialFailed::Handshake(err)),
        Err(_) => Err(DialFailed::Handshake(HandshakeError::Timeout(
            cfg.handshake_timeout,
        ))),
    }
}

/// TLS (if configured) and the inner handshake, dialer side.
async fn dial_handshake(
    cfg: &NetConfig,
    peer: NodeId,
    mut stream: TcpStream,
) -> Result<BoxedStream, HandshakeError> {
    match &cfg.security {
        PeerSecurity::InsecureLoopback => {
            handshake::dial(&mut stream, cfg, peer).await?;
            Ok(Box::new(stream))
        }
        PeerSecurity::Tls(tls) => {
            // Verifies that the acceptor's certificate chains to our CA and
            // names node-<peer>.<cluster>.synod: we reached whom we dialed.
            let mut stream = tls
                .connector()
                .connect(tls.server_name(peer), stream)
                .await
                .map_err(HandshakeError::Tls)?;
            // Checked before we send anything inside TLS: the certificate
            // names that node exactly, not through a wildcard or among others.
            let certificates = stream.get_ref().1.peer_certificates();
            tls.check_acceptor(certificates, peer)
                .map_err(|why| HandshakeError::NotCertified { claimed: peer, why })?;
            handshake::dial(&mut stream, cfg, peer).await?;
            Ok(Box::new(stream))
        }
    }
}
