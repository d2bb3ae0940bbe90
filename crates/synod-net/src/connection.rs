//! One established connection: a reader task and a writer task over the two
//! halves of the socket, supervised so that when either ends, both do.

use crate::frame::{self, FrameTooLarge};
use crate::net::Inner;
use crate::peer::Peer;
use crate::stats::{add, OpenConnection};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use synod_core::codec::{Decode, DecodeError};
use synod_core::{Message, NodeId};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinSet;

/// A socket after its handshake: plain TCP (insecure loopback mode) or TLS
/// over TCP. Boxed, so one connection code serves both.
pub(crate) trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerStream for T {}
/// The stream a connection runs on.
pub(crate) type BoxedStream = Box<dyn PeerStream>;

/// The reader asks the socket for at least this much at a time, so many small
/// frames arrive in one read call.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// A read buffer larger than this is replaced once empty.
const READ_BUFFER_RETAIN_BYTES: usize = 1 << 20;
/// A writer buffer that grew past this many batches (for one huge message) is
/// released instead of being kept for the life of the connection.
const WRITE_BUFFER_RETAIN_BATCHES: usize = 4;

/// Why a connection closed.
#[derive(Debug, Error)]
enum CloseReason {
    #[error("closed the connection")]
    Eof,
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("sent a {0}")]
    TooLarge(FrameTooLarge),
    #[error("sent a frame that does not decode ({0})")]
    Decode(DecodeError),
    #[error("sent a message from {0} on its own connection")]
    WrongSender(NodeId),
    #[error("sent a message for {theirs}, but we are {ours}")]
    WrongReceiver { theirs: NodeId, ours: NodeId },
    #[error("has a newer connection, which replaces this one")]
    Replaced,
    #[error("is no longer in the peer set (removed or readdressed)")]
    Removed,
    #[error("is disconnected because we are shutting down")]
    Shutdown,
    #[error("is disconnected because nobody receives inbound messages any more")]
    InboundClosed,
    #[error("lost a connection task: {0}")]
    TaskFailed(String),
    #[error("sent nothing for {0:?} (not even a keepalive): the link is stalled or dead")]
    Idle(std::time::Duration),
}

impl CloseReason {
    /// The peer broke the protocol (as opposed to the connection just ending).
    fn is_bad_frame(&self) -> bool {
        matches!(
            self,
            CloseReason::TooLarge(_)
                | CloseReason::Decode(_)
                | CloseReason::WrongSender(_)
                | CloseReason::WrongReceiver { .. }
        )
    }
}

/// Runs a connection whose handshake with `peer` is done, until it breaks, is
/// replaced, `peer` leaves the peer set, or the node shuts down. Returns once both tasks have stopped and
/// the socket is closed.
pub(crate) async fn run(
    inner: Arc<Inner>,
    peer: Arc<Peer>,
    stream: BoxedStream,
    remote: SocketAddr,
) {
    let connection_id = inner.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let (replaced_old, mut replaced) = peer.install(connection_id);
    let _open = OpenConnection::new(&inner.counters);
    tracing::info!(
        peer = %peer.id,
        %remote,
        replaced_old,
        "connected to peer {} at {remote}",
        peer.id
    );

    let (read_half, write_half) = tokio::io::split(stream);
    // Separate tasks, so that reading (and its backpressure on the inbound
    // channel) never stalls writing, and the two can use different cores.
    let mut tasks = JoinSet::new();
    tasks.spawn(read_loop(inner.clone(), peer.id, read_half));
    tasks.spawn(write_loop(inner.clone(), peer.clone(), write_half));

    let mut shutdown = inner.shutdown.subscribe();
    let closed = tokio::select! {
        ended = tasks.join_next() => match ended {
            Some(Ok(closed)) => closed,
            Some(Err(failed)) => CloseReason::TaskFailed(failed.to_string()),
            None => CloseReason::TaskFailed("no tasks".into()),
        },
        _ = &mut replaced => CloseReason::Replaced,
        // Resolves at once if the peer was removed while this connection's
        // handshake ran, so a removed peer never keeps a link.
        _ = peer.removed() => CloseReason::Removed,
        _ = shutdown.wait_for(|stop| *stop) => CloseReason::Shutdown,
    };
    // Stops the other task and waits for it: the socket is closed and the send
    // queue released before a replacement's writer may take it.
    tasks.shutdown().await;
    peer.uninstall(connection_id);

    if closed.is_bad_frame() {
        // Logged before counting, so whoever sees the count can find the line.
        tracing::warn!(peer = %peer.id, "peer {remote} ({}) {closed}: closing", peer.id);
        add(&inner.counters.bad_frames, 1);
    } else {
        tracing::info!(peer = %peer.id, "peer {remote} ({}) {closed}", peer.id);
    }
}

/// Reads frames, checks them, and hands messages to the inbound channel.
async fn read_loop(
    inner: Arc<Inner>,
    peer: NodeId,
    mut socket: ReadHalf<BoxedStream>,
) -> CloseReason {
    let frame_bytes_max = inner.cfg.frame_bytes_max;
    let ours = inner.cfg.node_id;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            let payload = match frame::take_frame(&mut buf, frame_bytes_max) {
                Ok(Some(payload)) => payload,
                Ok(None) => break,
                Err(too_large) => return CloseReason::TooLarge(too_large),
            };
            let frame_bytes = frame::LENGTH_PREFIX_BYTES + payload.len();
            if payload.is_empty() {
                // A keepalive: it only proves the link moves.
                continue;
            }
            let msg = match Message::from_bytes(payload) {
                Ok(msg) => msg,
                Err(err) => return CloseReason::Decode(err),
            };
            // The handshake proved who is at the other end; a message claiming
            // another sender or receiver is a bug or a forgery, never routed.
            if msg.from != peer {
                return CloseReason::WrongSender(msg.from);
            }
            if msg.to != ours {
                return CloseReason::WrongReceiver {
                    theirs: msg.to,
                    ours,
                };
            }
            add(&inner.counters.frames_received, 1);
            add(&inner.counters.bytes_received, frame_bytes as u64);
            // Awaiting here is the backpressure: a slow replica stops reading,
            // and TCP slows the sender.
            if inner.inbound.send(msg).await.is_err() {
                return CloseReason::InboundClosed;
            }
        }
        // Frames are copied out (`take_frame`), so the buffer is reused; one
        // that grew for a large frame is given back once it is empty, rather
        // than held for the life of the link.
        if buf.is_empty() && buf.capacity() > READ_BUFFER_RETAIN_BYTES {
            buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        }
        // take_frame vouched for the length, so reserving for it is bounded by
        // frame_bytes_max; the chunk minimum lets small frames batch per read.
        buf.reserve(frame::bytes_missing(&buf).max(READ_CHUNK_BYTES));
        let idle = inner.cfg.idle_timeout;
        match tokio::time::timeout(idle, socket.read_buf(&mut buf)).await {
            Err(_) => return CloseReason::Idle(idle),
            Ok(Ok(0)) => return CloseReason::Eof,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return CloseReason::Io(err),
        }
    }
}

/// Takes messages from the peer's queue and writes them, many frames per write.
async fn write_loop(
    inner: Arc<Inner>,
    peer: Arc<Peer>,
    mut socket: WriteHalf<BoxedStream>,
) -> CloseReason {
    let cfg = &inner.cfg;
    let mut queue = peer.lock_queue().await;
    let mut buf = BytesMut::with_capacity(cfg.write_batch_bytes_max.min(READ_CHUNK_BYTES));
    loop {
        let first = match tokio::time::timeout(cfg.keepalive_interval, queue.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return CloseReason::Shutdown,
            Err(_) => {
                // Nothing to send for a while: tell the reader we live.
                if let Err(err) = write_flushed(&mut socket, &frame::KEEPALIVE).await {
                    return CloseReason::Io(err);
                }
                continue;
            }
        };
        let mut next = Some(first);
        let mut frames = 0u64;
        // Batch whatever is already queued into one write: one syscall for many
        // messages is most of the transport's throughput.
        while let Some(msg) = next.take() {
            match frame::put_message(&mut buf, &msg, cfg.frame_bytes_max) {
                Ok(_) => frames += 1,
                Err(too_large) => {
                    // Unreachable: `Net::send` refused every message whose
                    // `encoded_len` exceeds the limit, and `encoded_len` is
                    // exact (tested in synod-core). Still never silent.
                    debug_assert!(false, "Net::send let an oversized message through");
                    add(&inner.counters.dropped_too_large, 1);
                    tracing::error!(
                        peer = %peer.id,
                        "dropping a {} message for {}: {too_large}",
                        msg.body.name(),
                        peer.id
                    );
                }
            }
            if buf.len() < cfg.write_batch_bytes_max {
                next = queue.try_recv().ok();
            }
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(err) = write_flushed(&mut socket, &buf).await {
            return CloseReason::Io(err);
        }
        add(&inner.counters.frames_sent, frames);
        add(&inner.counters.bytes_sent, buf.len() as u64);
        if buf.capacity() > WRITE_BUFFER_RETAIN_BATCHES * cfg.write_batch_bytes_max {
            buf = BytesMut::new();
        } else {
            buf.clear();
        }
    }
}

/// Writes `bytes` and flushes: TLS keeps written bytes in its own buffer
/// until flushed (for plain TCP the flush does nothing).
async fn write_flushed(socket: &mut WriteHalf<BoxedStream>, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}
