//! One subscriber's queue of messages ([`Mailbox`]): filled by applies (on
//! the node's apply path), emptied by the connection's task, and bounded by
//! the pub/sub output limits (see [`super`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod_resp::Reply;
use tokio::sync::Notify;

use super::{PUBSUB_OUTPUT_HARD_BYTES, PUBSUB_OUTPUT_SOFT_BYTES, PUBSUB_OUTPUT_SOFT_DURATION};

/// Bytes counted per queued message besides its strings (the RESP framing
/// and the queue entry), so that empty messages still count.
const MESSAGE_OVERHEAD_BYTES: usize = 64;
/// One message waiting for a subscriber. The strings are shared (reference
/// counted) between every subscriber that gets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Message {
    Channel {
        channel: Bytes,
        payload: Bytes,
    },
    Pattern {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    Shard {
        channel: Bytes,
        payload: Bytes,
    },
}

impl Message {
    /// What the message counts toward its subscriber's output limits.
    fn bytes(&self) -> usize {
        MESSAGE_OVERHEAD_BYTES
            + match self {
                Message::Channel { channel, payload } | Message::Shard { channel, payload } => {
                    channel.len() + payload.len()
                }
                Message::Pattern {
                    pattern,
                    channel,
                    payload,
                } => pattern.len() + channel.len() + payload.len(),
            }
    }

    fn to_reply(&self) -> Reply {
        match self {
            Message::Channel { channel, payload } => Reply::Push(vec![
                Reply::Bulk(Bytes::from_static(b"message")),
                Reply::Bulk(channel.clone()),
                Reply::Bulk(payload.clone()),
            ]),
            Message::Pattern {
                pattern,
                channel,
                payload,
            } => Reply::Push(vec![
                Reply::Bulk(Bytes::from_static(b"pmessage")),
                Reply::Bulk(pattern.clone()),
                Reply::Bulk(channel.clone()),
                Reply::Bulk(payload.clone()),
            ]),
            Message::Shard { channel, payload } => Reply::Push(vec![
                Reply::Bulk(Bytes::from_static(b"smessage")),
                Reply::Bulk(channel.clone()),
                Reply::Bulk(payload.clone()),
            ]),
        }
    }
}

/// Locks a mutex whatever a panicking holder left: every structure here is
/// valid between statements, and a pub/sub registry must not take the
/// node down.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Output limits of one subscriber's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutputLimits {
    pub hard_bytes: usize,
    pub soft_bytes: usize,
    pub soft_duration: Duration,
}

impl Default for OutputLimits {
    fn default() -> OutputLimits {
        OutputLimits {
            hard_bytes: PUBSUB_OUTPUT_HARD_BYTES,
            soft_bytes: PUBSUB_OUTPUT_SOFT_BYTES,
            soft_duration: PUBSUB_OUTPUT_SOFT_DURATION,
        }
    }
}

#[derive(Debug, Default)]
struct MailboxState {
    queue: VecDeque<Message>,
    /// Bytes of `queue` plus those taken and not yet written: what the
    /// limits are checked against.
    bytes: usize,
    /// Since when `bytes` has been over the soft limit.
    over_soft_since: Option<Instant>,
    /// Why the subscriber must be disconnected; nothing is queued after.
    overflow: Option<String>,
}

/// One connection's queue of messages to write, filled by applies (any
/// thread) and emptied by the connection's task.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    state: Mutex<MailboxState>,
    /// Woken when a message is queued or the queue overflows.
    notify: Notify,
    /// Whether the queue holds a message or overflowed: written under
    /// `state`'s lock whenever either changes, so that a connection with
    /// nothing to write (every connection that never subscribed, on every
    /// request) learns it without taking the lock ([`Mailbox::pending`]).
    pending: AtomicBool,
}

impl Mailbox {
    /// Queues `message` unless that breaks a limit; then marks the
    /// subscriber for disconnection and drops its queue.
    pub(super) fn push(&self, message: Message, limits: OutputLimits, now: Instant) {
        let mut state = lock(&self.state);
        if state.overflow.is_some() {
            return;
        }
        let bytes = state.bytes.saturating_add(message.bytes());
        let overflow = if bytes > limits.hard_bytes {
            Some(format!(
                "pub/sub messages not yet read exceed {} bytes (hard limit)",
                limits.hard_bytes
            ))
        } else if bytes > limits.soft_bytes {
            let since = *state.over_soft_since.get_or_insert(now);
            (now.saturating_duration_since(since) >= limits.soft_duration).then(|| {
                format!(
                    "pub/sub messages not yet read exceeded {} bytes for {:?} (soft limit)",
                    limits.soft_bytes, limits.soft_duration
                )
            })
        } else {
            state.over_soft_since = None;
            None
        };
        match overflow {
            Some(why) => {
                state.overflow = Some(why);
                state.queue = VecDeque::new();
            }
            None => {
                state.bytes = bytes;
                state.queue.push_back(message);
            }
        }
        self.pending.store(true, Ordering::Release);
        drop(state);
        self.notify.notify_one();
    }

    /// Whether there is something to write, or the queue overflowed.
    pub(super) fn ready(&self) -> bool {
        let state = lock(&self.state);
        !state.queue.is_empty() || state.overflow.is_some()
    }

    /// Whether there may be something to write, without the lock: `false`
    /// only when the queue was empty, and had not overflowed, as of the
    /// last change this thread can see. A push that races with this call
    /// is seen by the next one (or by [`Mailbox::wait_ready`]); one made
    /// before the pusher released a lock this thread took since is seen
    /// now (the pub/sub registry's, for a connection that left it).
    pub(super) fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Why the subscriber must be disconnected, if it must.
    pub(super) fn overflow(&self) -> Option<String> {
        lock(&self.state).overflow.clone()
    }

    /// Every queued message, in order, as replies. Their bytes stay counted
    /// until [`Mailbox::written`] says they left.
    ///
    /// The queue is moved out under the lock in O(1) and turned into
    /// replies after it: an apply publishing to this subscriber never waits
    /// on the conversion (up to the hard limit's worth of messages).
    pub(super) fn take(&self) -> (Vec<Reply>, usize) {
        let queue = self.take_queue();
        let bytes = queue.iter().map(Message::bytes).sum();
        (queue.iter().map(Message::to_reply).collect(), bytes)
    }

    /// Every queued message, in order, moved out in O(1) under the lock.
    /// Their bytes stay counted until [`Mailbox::written`] says they left
    /// ([`Mailbox::written_replies`] does both).
    pub(super) fn take_queue(&self) -> VecDeque<Message> {
        let mut state = lock(&self.state);
        let queue = std::mem::take(&mut state.queue);
        self.pending
            .store(state.overflow.is_some(), Ordering::Release);
        queue
    }

    /// Messages from [`Mailbox::take_queue`] as replies, handed to the
    /// connection's reply buffer: their bytes no longer count.
    pub(super) fn written_replies(&self, queue: VecDeque<Message>) -> Vec<Reply> {
        self.written(queue.iter().map(Message::bytes).sum());
        queue.iter().map(Message::to_reply).collect()
    }

    /// `bytes` taken by [`Mailbox::take`] were written (or handed to the
    /// connection's reply buffer).
    pub(super) fn written(&self, bytes: usize) {
        let mut state = lock(&self.state);
        debug_assert!(bytes <= state.bytes || state.overflow.is_some());
        state.bytes = state.bytes.saturating_sub(bytes);
    }

    /// Resolves when [`Mailbox::ready`] is true.
    pub(super) async fn wait_ready(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a push in between wakes it.
            notified.as_mut().enable();
            if self.ready() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves when the queue overflows.
    pub(super) async fn wait_overflow(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.overflow().is_some() {
                // Leave a wake-up for `wait_ready`, which this may have taken.
                self.notify.notify_one();
                return;
            }
            notified.await;
        }
    }
}
