//! The transport: [`Net`], its listener and its dialers, over a peer set
//! that [`Net::set_peers`] can change while it runs.
//!
//! The peer set is one `Arc<BTreeMap>` swapped whole under a `std` `RwLock`:
//! `send` and the acceptor only read it (no await while it is held), and
//! `set_peers` writes it. A peer that leaves is marked removed *after* the
//! swap, so each task either misses it in the map or holds it and sees the
//! mark (see the `peer` module); the rules for which ids change are in the
//! `membership` module.
//!
//! # Strangers
//!
//! A node that was down or cut off while the membership changed may know
//! none of the current members, while they know it and need its vote (the
//! core's door takes a stranger's heartbeat or Prepare as a hint to catch
//! up from it, and learns the membership that admits it: see
//! `synod_core`'s `door.rs`). For that hint to arrive, the transport links
//! such pairs too:
//!
//! - the acceptor admits a dialer whose id was never in its peer set (a
//!   *stranger*) once it proves that id (with TLS, a certificate of the
//!   cluster's CA naming it), whichever id is lower, with a send queue of
//!   its own so the core can answer it; at most [`STRANGERS_MAX`] at once,
//!   and a member that *left* the set is still refused (the core refuses
//!   everything from a removed node);
//! - a node whose lower-id peer has not linked to it for a while dials it
//!   itself (`reverse_dial_loop`): the lower one may not know it. A lower
//!   peer that does know it refuses (only lower ids dial members) and keeps
//!   dialing itself, so each pair still ends up with one connection.
//!
//! When a stranger joins the peer set its stranger link closes and the
//! ordinary one takes over.

use crate::backoff::Backoff;
use crate::config::NetConfig;
use crate::connection::{self, BoxedStream};
use crate::error::{MessageTooLarge, NetError};
use crate::handshake::{self, HandshakeError, Standing};
use crate::membership::Change;
use crate::peer::Peer;
use crate::ratelog::RejectLog;
use crate::slots::{HandshakeSlots, Slot, SlotLimits};
use crate::stats::{add, Counters, NetStats};
use crate::tls::PeerSecurity;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;
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
    /// The current peer set: every member except this node. Replaced whole
    /// by [`Net::set_peers`] (under the write lock, which also orders
    /// concurrent changes); everyone else reads.
    peers: RwLock<Arc<Peers>>,
    /// Ids that were in the peer set and left it: refused at the handshake.
    /// Changed only under the `peers` write lock.
    departed: Mutex<BTreeSet<NodeId>>,
    /// Links from strangers (see the module docs), at most `STRANGERS_MAX`.
    strangers: Mutex<Peers>,
    /// Pending-handshake slots; their member addresses follow the peer set.
    slots: Arc<HandshakeSlots>,
    /// The runtime `start` ran on: dial loops of added peers are spawned
    /// there, whichever thread calls `set_peers`.
    runtime: tokio::runtime::Handle,
    pub inbound: mpsc::Sender<Message>,
    /// Set to `true` once; every task watches it and winds down.
    pub shutdown: watch::Sender<bool>,
    pub next_connection_id: AtomicU64,
    /// The listener and dialer tasks; each waits for the connections it started.
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

/// A peer set: id -> the peer's queue and connection.
type Peers = BTreeMap<NodeId, Arc<Peer>>;

/// At most this many stranger links at once (see the module docs): each
/// holds a send queue of `send_queue_max` messages.
pub const STRANGERS_MAX: usize = 8;

/// A node dials a lower-id peer itself once that peer has not linked to it
/// for at least this many times the longest dial backoff (see the module
/// docs; each try waits longer, up to 16 times that): long enough that a
/// peer that knows us has had several tries of its own.
const REVERSE_DIAL_QUIET_FACTOR: u32 = 4;

impl Inner {
    /// The current peer set, for a lookup; never held across an await.
    fn peers(&self) -> RwLockReadGuard<'_, Arc<Peers>> {
        // Written only by one assignment of a finished map, so a panic
        // elsewhere cannot leave it half-changed.
        self.peers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers().get(&id).cloned()
    }

    fn strangers(&self) -> MutexGuard<'_, Peers> {
        self.strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn departed(&self) -> MutexGuard<'_, BTreeSet<NodeId>> {
        self.departed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What this node knows of `id` now (see [`Standing`]).
    fn standing(&self, id: NodeId) -> Standing {
        if self.peers().contains_key(&id) {
            Standing::Member
        } else if self.departed().contains(&id) {
            Standing::Departed
        } else {
            Standing::Stranger
        }
    }

    /// The stranger link for `id`, made if there is room: the peer that an
    /// authenticated connection from a stranger will serve.
    fn stranger(&self, id: NodeId, remote: SocketAddr) -> Result<Arc<Peer>, HandshakeError> {
        // Looked up again, under the peer set's lock (taken before the
        // others, as `set_peers` takes them): the set may have changed
        // while TLS ran, and an id that became a member meanwhile must not
        // get a stranger link beside its member link (the member link
        // would be the one `send` uses, with no connection behind it).
        let peers = self.peers();
        if let Some(peer) = peers.get(&id) {
            return if id < self.cfg.node_id {
                Ok(peer.clone())
            } else {
                Err(HandshakeError::NotLower {
                    theirs: id,
                    ours: self.cfg.node_id,
                })
            };
        }
        if self.departed().contains(&id) {
            return Err(HandshakeError::UnknownPeer(id));
        }
        let mut strangers = self.strangers();
        if let Some(peer) = strangers.get(&id) {
            return Ok(peer.clone());
        }
        if strangers.len() >= STRANGERS_MAX {
            return Err(HandshakeError::Strangers(id, strangers.len()));
        }
        let peer = Arc::new(Peer::new(id, remote, self.cfg.send_queue_max));
        strangers.insert(id, peer.clone());
        add(&self.counters.stranger_links, 1);
        tracing::info!(
            node = %self.cfg.node_id,
            peer = %id,
            %remote,
            "admitting a link from node {id}, which is not a member here: it may belong to a membership this node has not learned yet"
        );
        Ok(peer)
    }

    /// Forgets a stranger's link once its connection has ended (unless a
    /// newer connection already serves it).
    fn forget_stranger(&self, peer: &Arc<Peer>) {
        let mut strangers = self.strangers();
        if strangers
            .get(&peer.id)
            .is_some_and(|p| Arc::ptr_eq(p, peer) && !p.is_connected())
        {
            strangers.remove(&peer.id);
            peer.mark_removed();
        }
    }

    /// Spawns the dial loops of `peers` into the task set that `shutdown`
    /// joins, after reaping the loops that have ended (peers removed since),
    /// so the set does not grow with every change.
    fn spawn_dial_loops(self: &Arc<Self>, peers: Vec<Arc<Peer>>) {
        if peers.is_empty() {
            return;
        }
        // Past start-up only `shutdown` holds this lock, and it raises the
        // flag first: then nothing needs dialing any more.
        let Ok(mut tasks) = self.tasks.try_lock() else {
            debug_assert!(*self.shutdown.borrow(), "task set busy while running");
            return;
        };
        while let Some(ended) = tasks.try_join_next() {
            if let Err(err) = ended {
                tracing::error!("peer transport task failed: {err}");
            }
        }
        for peer in peers {
            if peer.id > self.cfg.node_id {
                tasks.spawn_on(dial_loop(self.clone(), peer), &self.runtime);
            } else {
                tasks.spawn_on(reverse_dial_loop(self.clone(), peer), &self.runtime);
            }
        }
    }

    /// `peers` without this node and, on insecure links, without addresses
    /// off loopback (refused with an error, as `NetConfig::validate` refuses
    /// them at start: anyone who can reach such an address could act as any
    /// member).
    fn admissible(&self, peers: BTreeMap<NodeId, SocketAddr>) -> BTreeMap<NodeId, SocketAddr> {
        let insecure = matches!(self.cfg.security, PeerSecurity::InsecureLoopback);
        peers
            .into_iter()
            .filter(|(id, addr)| {
                if *id == self.cfg.node_id {
                    return false;
                }
                if insecure && !addr.ip().is_loopback() {
                    tracing::error!(
                        node = %self.cfg.node_id,
                        peer = %id,
                        %addr,
                        "not adding peer {id} at {addr}: insecure peer links are allowed on loopback only; use TLS credentials"
                    );
                    return false;
                }
                true
            })
            .collect()
    }
}

/// The addresses of the members that dial us: one connection per pair, so
/// only those with lower ids.
fn dialer_ips(ours: NodeId, peers: &Peers) -> impl Iterator<Item = IpAddr> + '_ {
    peers
        .values()
        .filter(move |peer| peer.id < ours)
        .map(|peer| peer.addr.ip())
}

/// The peer transport of one node: a TCP connection to every other member,
/// dialed by the lower id of each pair, carrying framed [`Message`]s both ways.
/// The members start as [`NetConfig::peers`] and change with
/// [`Net::set_peers`].
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
        cfg.validate_listener(local_addr)?;
        let peers: Peers = cfg
            .peers
            .iter()
            .filter(|(id, _)| **id != cfg.node_id)
            .map(|(id, addr)| (*id, Arc::new(Peer::new(*id, *addr, cfg.send_queue_max))))
            .collect();
        let limits = SlotLimits {
            outsiders_max: cfg.handshakes_pending_max,
            per_source_max: cfg.handshakes_pending_per_source_max,
            per_member_ip_max: cfg.handshakes_pending_per_member_ip_max,
        };
        let slots = Arc::new(HandshakeSlots::new(limits, dialer_ips(cfg.node_id, &peers)));
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
            peers: RwLock::new(Arc::new(peers)),
            departed: Mutex::new(BTreeSet::new()),
            strangers: Mutex::new(BTreeMap::new()),
            slots,
            runtime: tokio::runtime::Handle::current(),
            inbound,
            shutdown: watch::Sender::new(false),
            next_connection_id: AtomicU64::new(0),
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = inner.tasks.lock().await;
            tasks.spawn(accept_loop(inner.clone(), listener));
            // One connection per pair: we dial the members above us, and
            // those below us only if they do not (see the module docs).
            let peers = inner.peers().clone();
            for peer in peers.values() {
                if peer.id > inner.cfg.node_id {
                    tasks.spawn(dial_loop(inner.clone(), peer.clone()));
                } else {
                    tasks.spawn(reverse_dial_loop(inner.clone(), peer.clone()));
                }
            }
        }
        Ok(Net {
            handle: Arc::new(Handle { inner }),
        })
    }

    /// Queues a message for `msg.to`. Never blocks. A message for a node
    /// outside the current peer set or this node, one not from this node, or
    /// one that finds the peer's queue full is dropped and counted in
    /// [`Net::stats`]: Paxos tolerates such losses like any lost packet.
    /// Messages for a disconnected peer wait in its queue until it
    /// reconnects (or leaves the set, which drops them uncounted).
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
        // Read-locked for the lookup and the non-blocking enqueue only.
        let peers = inner.peers();
        let enqueued = match peers.get(&msg.to).filter(|_| routable) {
            Some(peer) => peer.enqueue(msg).map_err(|_| ()),
            // A stranger's link (see the module docs), if it has one.
            None => match inner.strangers().get(&msg.to).filter(|_| routable) {
                Some(peer) => peer.enqueue(msg).map_err(|_| ()),
                None => {
                    add(&inner.counters.dropped_unroutable, 1);
                    tracing::debug!(from = %msg.from, to = %msg.to, "dropping unroutable {} message", msg.body.name());
                    Ok(())
                }
            },
        };
        if enqueued.is_err() {
            add(&inner.counters.dropped_queue_full, 1);
        }
        Ok(())
    }

    /// Replaces the peer set: every member and its peer address. This node's
    /// own entry is ignored (its listener is fixed at start). Takes effect
    /// before it returns:
    ///
    /// - an id that is new gets a send queue and a dial loop (the lower id of
    ///   a pair dials; the higher one only if the lower does not link to it
    ///   for a while); a stranger link it had closes;
    /// - an id that is gone is no longer routable (`send` counts it in
    ///   `dropped_unroutable`), its dial loop stops, its connection closes
    ///   (whichever side dialed) and its queue is dropped with what it held;
    ///   a handshake claiming it is refused like any non-member's;
    /// - an id with a new address is treated as gone and new: its old link
    ///   closes and a fresh one is made to (or accepted from) the new address;
    /// - an id with the same address is untouched: its link and its queue
    ///   carry on, and no message is lost.
    ///
    /// On [`PeerSecurity::InsecureLoopback`], entries off loopback are left
    /// out and logged as errors, as the config check refuses them at start.
    /// Each change is logged at info level. Synchronous and cheap; may be
    /// called from any thread.
    pub fn set_peers(&self, peers: BTreeMap<NodeId, SocketAddr>) {
        let inner = &self.handle.inner;
        let ours = inner.cfg.node_id;
        let wanted = inner.admissible(peers);
        // Held for the whole change, so concurrent changes apply in turn and
        // the slots' member addresses always match the map.
        let mut current = inner.peers.write().unwrap_or_else(PoisonError::into_inner);
        let old = current.iter().map(|(id, peer)| (*id, peer.addr)).collect();
        let change = Change::between(ours, &old, &wanted);
        if change.is_empty() {
            return;
        }
        let mut next: Peers = (**current).clone();
        let moved = change.readdressed.iter().map(|(id, _)| id);
        let gone: Vec<Arc<Peer>> = change
            .removed
            .iter()
            .chain(moved)
            .filter_map(|id| next.remove(id))
            .collect();
        let mut dial = Vec::new();
        for (id, addr) in change.added.iter().chain(&change.readdressed) {
            let peer = Arc::new(Peer::new(*id, *addr, inner.cfg.send_queue_max));
            dial.push(peer.clone());
            next.insert(*id, peer);
        }
        {
            let mut departed = inner.departed();
            departed.extend(change.removed.iter().copied());
            for (id, _) in &change.added {
                departed.remove(id);
            }
        }
        let former_strangers: Vec<Arc<Peer>> = {
            let mut strangers = inner.strangers();
            change
                .added
                .iter()
                .filter_map(|(id, _)| strangers.remove(id))
                .collect()
        };
        debug_assert!(next.keys().eq(wanted.keys()));
        debug_assert!(next
            .iter()
            .all(|(id, peer)| wanted.get(id) == Some(&peer.addr)));
        *current = Arc::new(next);
        inner.slots.set_member_ips(dialer_ips(ours, &current));
        // Marked after the swap: a task that looks the id up from now on
        // misses it, and one that found it before holds this `Peer` and sees
        // the mark (its connection closes, or never stays up).
        for peer in gone.iter().chain(&former_strangers) {
            peer.mark_removed();
        }
        inner.spawn_dial_loops(dial);
        drop(current);
        let ids = |entries: &[(NodeId, SocketAddr)]| -> Vec<String> {
            entries
                .iter()
                .map(|(id, addr)| format!("{id}@{addr}"))
                .collect()
        };
        tracing::info!(
            node = %ours,
            added = ?ids(&change.added),
            removed = ?change.removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            readdressed = ?ids(&change.readdressed),
            "peer set changed"
        );
    }

    /// Adds ids to refuse at the handshake, as members that left are
    /// refused (the caller passes the ids its membership records as
    /// removed: `set_peers` alone knows only the removals since this node
    /// started). A stranger link such an id holds closes. Ids in the peer
    /// set are not affected.
    pub fn set_departed(&self, ids: impl IntoIterator<Item = NodeId>) {
        let inner = self.inner();
        let peers = inner.peers();
        let ids: Vec<NodeId> = ids
            .into_iter()
            .filter(|id| *id != inner.cfg.node_id && !peers.contains_key(id))
            .collect();
        inner.departed().extend(ids.iter().copied());
        let closed: Vec<Arc<Peer>> = {
            let mut strangers = inner.strangers();
            ids.iter().filter_map(|id| strangers.remove(id)).collect()
        };
        drop(peers);
        for peer in closed {
            tracing::info!(node = %inner.cfg.node_id, peer = %peer.id, "closing the stranger link of node {}: it was removed from the cluster", peer.id);
            peer.mark_removed();
        }
    }

    /// The current peer set: every member but this node, with its address.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        let peers = self.inner().peers();
        peers.iter().map(|(id, peer)| (*id, peer.addr)).collect()
    }

    /// A snapshot of the counters and of each current peer's connection and
    /// queue (a peer that left the set is no longer reported).
    pub fn stats(&self) -> NetStats {
        let inner = self.inner();
        let mut stats = inner.counters.snapshot();
        let peers = inner.peers().clone();
        for (id, peer) in peers.iter() {
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
        match inner.slots.take(remote.ip()) {
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
        result = timeout(hs_timeout, accept_handshake(&inner, stream, remote)) => result,
    };
    drop(slot);
    let result = result.unwrap_or(Err(HandshakeError::Timeout(hs_timeout)));
    let (peer, stream) = match result {
        Ok(accepted) => accepted,
        Err(err) => {
            reject(&inner, remote, &err);
            return;
        }
    };
    // The peer admitted, even if it has left the set since: then its
    // removal mark closes this connection at once.
    connection::run(inner.clone(), peer.clone(), stream, remote).await;
    inner.forget_stranger(&peer);
}

/// Whether a dialer that proved (with TLS) or claimed (insecure) to be
/// `claimed` may replace that peer's link now. A new connection replaces the
/// live link (the peer restarted), but not more often than
/// `peer_accept_interval_min`: a flapping or hostile member cannot keep
/// cutting its link. Judged before we answer, so a refused dialer learns
/// nothing and its connection never reaches the peer's slot. Returns the
/// peer the connection will serve.
fn admit(inner: &Inner, claimed: NodeId, remote: SocketAddr) -> Result<Arc<Peer>, HandshakeError> {
    let interval = inner.cfg.peer_accept_interval_min;
    // check_hello judged its standing, but the set may have changed since
    // (TLS takes a while), so it is looked up again.
    let peer = match inner.peer(claimed) {
        Some(peer) => peer,
        None => inner.stranger(claimed, remote)?,
    };
    if peer.admit_accepted(std::time::Instant::now(), interval) {
        Ok(peer)
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
    remote: SocketAddr,
) -> Result<(Arc<Peer>, BoxedStream), HandshakeError> {
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
    let standing = |id| inner.standing(id);
    // A stranger link made for this handshake is forgotten again if the
    // handshake then fails or times out (this future is dropped then): its
    // place must not stay taken by a connection that never came.
    let mut made = StrangerGuard { inner, peer: None };
    match &cfg.security {
        PeerSecurity::InsecureLoopback => {
            let authorize = |claimed| made.admit(claimed, remote);
            let peer = handshake::accept(&mut stream, cfg, standing, authorize).await?;
            made.peer = None;
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
                made.admit(claimed, remote)
            };
            let peer = handshake::accept(&mut stream, cfg, standing, authorize).await?;
            made.peer = None;
            Ok((peer, Box::new(stream)))
        }
    }
}

/// Forgets, when dropped, the stranger link an accepted handshake made,
/// unless the handshake went through (then `peer` is taken out first).
struct StrangerGuard<'a> {
    inner: &'a Inner,
    peer: Option<Arc<Peer>>,
}

impl StrangerGuard<'_> {
    /// `admit`, noting a stranger link it hands out.
    fn admit(&mut self, claimed: NodeId, remote: SocketAddr) -> Result<Arc<Peer>, HandshakeError> {
        let peer = admit(self.inner, claimed, remote)?;
        if !self.inner.peers().contains_key(&claimed) {
            self.peer = Some(peer.clone());
        }
        Ok(peer)
    }
}

impl Drop for StrangerGuard<'_> {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            self.inner.forget_stranger(&peer);
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
/// as the node runs and `peer` stays in the peer set, redialing with backoff
/// whenever it breaks.
async fn dial_loop(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut shutdown = inner.shutdown.subscribe();
    let cfg = &inner.cfg;
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, (cfg.node_id, peer.id));
    loop {
        // Biased: once stopping or removed, no further attempt starts.
        let attempt = tokio::select! {
            biased;
            _ = stopping(&mut shutdown) => return,
            _ = peer.removed() => break,
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
            biased;
            _ = stopping(&mut shutdown) => return,
            _ = peer.removed() => break,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    tracing::debug!(peer = %peer.id, "stopped dialing peer {} at {}: no longer in the peer set", peer.id, peer.addr);
}

/// Dials `peer` (a member with a lower id, which dials us if it knows us)
/// once it has not linked to us for a while, in case it does not know us
/// (see the module docs), for as long as the node runs and `peer` stays in
/// the peer set.
async fn reverse_dial_loop(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut shutdown = inner.shutdown.subscribe();
    let cfg = &inner.cfg;
    let quiet = cfg.backoff_max * REVERSE_DIAL_QUIET_FACTOR;
    let mut backoff = Backoff::new(quiet, quiet * 16, (peer.id, cfg.node_id));
    let mut wait = backoff.next_delay();
    let mut unlinked_since: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = stopping(&mut shutdown) => return,
            _ = peer.removed() => return,
            _ = tokio::time::sleep(quiet / 4) => {}
        }
        if peer.is_connected() {
            unlinked_since = None;
            backoff.reset();
            wait = backoff.next_delay();
            continue;
        }
        let now = Instant::now();
        if now.duration_since(*unlinked_since.get_or_insert(now)) < wait {
            continue;
        }
        // Each try waits longer (a peer that knows us refuses it and dials
        // us itself); a link that comes up resets the wait.
        unlinked_since = None;
        wait = backoff.next_delay();
        let attempt = tokio::select! {
            biased;
            _ = stopping(&mut shutdown) => return,
            _ = peer.removed() => return,
            attempt = dial(cfg, &peer) => attempt,
        };
        match attempt {
            Ok(stream) => {
                let linked = Instant::now();
                connection::run(inner.clone(), peer.clone(), stream, peer.addr).await;
                // A link that lasted starts the waits afresh.
                if linked.elapsed() > quiet {
                    backoff.reset();
                    wait = backoff.next_delay();
                }
            }
            Err(DialFailed::Connect(err)) => {
                tracing::debug!(peer = %peer.id, "cannot connect to peer {} at {}: {err}", peer.id, peer.addr);
            }
            Err(DialFailed::Handshake(err)) => {
                // Usually a peer that knows us and dials us itself: it
                // refuses a member's dial from above. Not counted as a
                // refusal of ours.
                tracing::debug!(peer = %peer.id, "peer {} at {} did not take our dial: {err}", peer.id, peer.addr);
            }
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
