//! What this node keeps per other member: the bounded send queue, which lives
//! across connections, and the slot holding the current connection.
//!
//! A `Peer` lives as long as its id stays in the peer set with the same
//! address. When it leaves (or moves), the transport marks it removed: its
//! dial loop and its connection watch that mark and end, and the queue goes
//! with the last of them. A peer that comes back is a new `Peer`.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use synod_core::{Message, NodeId};
use tokio::sync::{mpsc, oneshot, watch};

/// Another member of the cluster.
#[derive(Debug)]
pub(crate) struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    queue_tx: mpsc::Sender<Message>,
    /// Held by the writer of the current connection for its whole life. When a
    /// connection is replaced, the old writer is stopped, which releases the
    /// queue to the new writer (tokio's mutex is fair: waiters go in order).
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Message>>,
    slot: Mutex<Option<Slot>>,
    /// When the acceptor last let a connection from this peer through.
    last_accepted: Mutex<Option<Instant>>,
    /// Set once, when this peer leaves the peer set; never cleared.
    removed: watch::Sender<bool>,
}

/// The registered connection of a peer.
#[derive(Debug)]
struct Slot {
    connection_id: u64,
    /// Dropping this tells the connection it was replaced and must close.
    _replaced: oneshot::Sender<()>,
}

/// Why [`Peer::enqueue`] dropped a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QueueFull;

impl Peer {
    pub(crate) fn new(id: NodeId, addr: SocketAddr, send_queue_max: usize) -> Peer {
        let (queue_tx, queue_rx) = mpsc::channel(send_queue_max);
        Peer {
            id,
            addr,
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            slot: Mutex::new(None),
            last_accepted: Mutex::new(None),
            removed: watch::Sender::new(false),
        }
    }

    /// Marks this peer as no longer a member: its dial loop stops and its
    /// connection closes (now, or as soon as one that raced the removal is
    /// installed, since they check the mark when they start).
    pub(crate) fn mark_removed(&self) {
        self.removed.send_replace(true);
    }

    /// Resolves once [`Peer::mark_removed`] has been called (at once if it
    /// already was).
    pub(crate) async fn removed(&self) {
        let mut removed = self.removed.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = removed.wait_for(|removed| *removed).await;
    }

    /// Queues a message without waiting; a full queue drops it, because a Paxos
    /// message lost here is no worse than one lost on the wire.
    pub(crate) fn enqueue(&self, msg: Message) -> Result<(), QueueFull> {
        self.queue_tx.try_send(msg).map_err(|_| QueueFull)
    }

    /// Messages waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.queue_tx.max_capacity() - self.queue_tx.capacity()
    }

    /// Waits until this connection's writer owns the queue.
    pub(crate) async fn lock_queue(&self) -> tokio::sync::MutexGuard<'_, mpsc::Receiver<Message>> {
        self.queue_rx.lock().await
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.slot().is_some()
    }

    /// Registers a new connection, closing the one it replaces (a peer that
    /// restarted dials again before we notice its old socket is dead). Returns
    /// whether one was replaced and the receiver that fires when this one is.
    pub(crate) fn install(&self, connection_id: u64) -> (bool, oneshot::Receiver<()>) {
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let old = self.slot().replace(Slot {
            connection_id,
            _replaced: replaced_tx,
        });
        (old.is_some(), replaced_rx)
    }

    /// Unregisters a closed connection, unless a newer one already took its place.
    pub(crate) fn uninstall(&self, connection_id: u64) {
        let mut slot = self.slot();
        if slot.as_ref().map(|s| s.connection_id) == Some(connection_id) {
            *slot = None;
        }
    }

    /// Whether an accepted connection from this peer may replace its link
    /// now: yes if it has no link, or if the last accepted connection is at
    /// least `interval_min` old. Records the admission. This bounds how often
    /// any connection, even an authenticated one, can cut a live link.
    pub(crate) fn admit_accepted(&self, now: Instant, interval_min: Duration) -> bool {
        let mut last = self
            .last_accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let too_soon = last.is_some_and(|at| now.saturating_duration_since(at) < interval_min);
        if too_soon && self.is_connected() {
            return false;
        }
        *last = Some(now);
        true
    }

    fn slot(&self) -> MutexGuard<'_, Option<Slot>> {
        // The slot is only replaced or cleared, so a panic elsewhere while it
        // was held cannot leave it half-updated.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{Ballot, Body, GroupId, InstanceId};

    fn peer(queue_max: usize) -> Peer {
        Peer::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), queue_max)
    }

    fn message() -> Message {
        Message {
            group: GroupId(0),
            from: NodeId(1),
            to: NodeId(2),
            body: Body::Accepted {
                ballot: Ballot::ZERO,
                instance: InstanceId(0),
            },
        }
    }

    #[test]
    fn the_queue_is_bounded() {
        let peer = peer(2);
        assert_eq!(peer.enqueue(message()), Ok(()));
        assert_eq!(peer.enqueue(message()), Ok(()));
        assert_eq!(peer.enqueue(message()), Err(QueueFull));
        assert_eq!(peer.queued(), 2);
    }

    #[test]
    fn a_new_connection_replaces_the_old_one() {
        let peer = peer(1);
        let (replaced, mut first) = peer.install(1);
        assert!(!replaced && peer.is_connected());
        let (replaced, mut second) = peer.install(2);
        assert!(replaced);
        assert!(
            first.try_recv().is_err(),
            "the first connection is told to close"
        );
        // The old connection's exit must not unregister the new one.
        peer.uninstall(1);
        assert!(peer.is_connected());
        assert_eq!(second.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        peer.uninstall(2);
        assert!(!peer.is_connected());
    }

    #[tokio::test]
    async fn removal_is_seen_by_waiters_before_and_after_it() {
        let peer = std::sync::Arc::new(peer(1));
        let not_yet = tokio::time::timeout(Duration::ZERO, peer.removed()).await;
        assert!(not_yet.is_err(), "not removed yet");
        let waiting = tokio::spawn({
            let peer = peer.clone();
            async move { peer.removed().await }
        });
        peer.mark_removed();
        waiting.await.unwrap();
        // A connection installed after the removal still sees it at once.
        let seen = tokio::time::timeout(Duration::ZERO, peer.removed()).await;
        assert!(seen.is_ok(), "a later waiter sees the removal");
    }

    #[test]
    fn accepted_connections_are_rate_limited_only_while_linked() {
        let peer = peer(1);
        let interval = Duration::from_millis(200);
        let t0 = Instant::now();
        assert!(peer.admit_accepted(t0, interval));
        // Not linked yet: nothing to protect, so a quick second one is let in.
        assert!(peer.admit_accepted(t0 + Duration::from_millis(1), interval));
        let _live = peer.install(1);
        assert!(!peer.admit_accepted(t0 + Duration::from_millis(100), interval));
        assert!(peer.admit_accepted(t0 + Duration::from_millis(201), interval));
    }
}
