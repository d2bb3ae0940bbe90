//! One connection's side of pub/sub ([`Subscriber`]): its subscriptions,
//! the (un)subscribe confirmations, RESP2's subscribed mode, and writing
//! its queued messages.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use synod_resp::{write_reply, Protocol, Reply};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::mailbox::{Mailbox, Message};
use super::{
    wrong_args, Kind, PubSub, PATTERN_SUBSCRIPTIONS_PER_NODE_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX,
    SUBSCRIPTIONS_PER_NODE_MAX, SUBSCRIPTION_BYTES_PER_CLIENT_MAX, SUBSCRIPTION_BYTES_PER_NODE_MAX,
};

/// The commands a connection may send while subscribed in RESP2.
const ALLOWED_WHILE_SUBSCRIBED: &[&str] = &[
    "ping",
    "subscribe",
    "ssubscribe",
    "unsubscribe",
    "sunsubscribe",
    "psubscribe",
    "punsubscribe",
    "quit",
    "reset",
];

/// The (un)subscribe commands, which [`Subscriber::command`] answers.
pub(crate) const SUBSCRIBE_COMMANDS: &[&str] = &[
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

/// Redis' refusal of `name` (its full name: `client|id`) on a connection
/// subscribed in RESP2, if it is refused.
pub(crate) fn refused_while_subscribed(name: &str, full_name: &str) -> Option<Reply> {
    (!ALLOWED_WHILE_SUBSCRIBED.contains(&name)).then(|| {
        Reply::error(format!(
            "ERR Can't execute '{full_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))
    })
}

/// One connection's subscriptions and its mailbox. Dropping it (the
/// connection closed) removes every subscription from the registry.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pubsub: PubSub,
    client: u64,
    mailbox: Arc<Mailbox>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard_channels: BTreeSet<Bytes>,
    /// Bytes of every name in the three sets.
    name_bytes: usize,
}

impl Subscriber {
    pub(crate) fn new(pubsub: PubSub, client: u64) -> Subscriber {
        Subscriber {
            pubsub,
            client,
            mailbox: Arc::new(Mailbox::default()),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
            name_bytes: 0,
        }
    }

    /// Whether the connection is in pub/sub mode (Redis' `CLIENT_PUBSUB`):
    /// subscribed to anything.
    pub(crate) fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }

    fn set(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// The count a (un)subscribe confirmation of `kind` carries: channels
    /// plus patterns, or shard channels (Redis 7.0).
    fn count(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Channel | Kind::Pattern => (self.channels.len() + self.patterns.len()) as i64,
            Kind::Shard => self.shard_channels.len() as i64,
        }
    }

    fn confirmation(&self, what: &'static str, name: Option<&Bytes>, kind: Kind) -> Reply {
        Reply::Push(vec![
            Reply::Bulk(Bytes::from_static(what.as_bytes())),
            name.map_or(Reply::Null, |name| Reply::Bulk(name.clone())),
            Reply::Integer(self.count(kind)),
        ])
    }

    /// [`Subscriber::run`]'s two lists as one, in the order they are
    /// written.
    #[cfg(test)]
    pub(crate) fn command(&mut self, name: &str, args: &[Bytes]) -> Vec<Reply> {
        let (mut delivered, replies) = self.run(name, args);
        delivered.extend(replies);
        delivered
    }

    /// Runs one of [`SUBSCRIBE_COMMANDS`] (`name` lowercase) and returns
    /// the pushes to write, in order: the messages delivered before it took
    /// effect, then its own replies (one confirmation per channel or
    /// pattern, or its error). Apart, so that INFO commandstats judges the
    /// command by its own replies, not by a message ahead of them.
    pub(crate) fn run(&mut self, name: &str, args: &[Bytes]) -> (Vec<Reply>, Vec<Reply>) {
        let (kind, subscribe) = match name {
            "subscribe" => (Kind::Channel, true),
            "psubscribe" => (Kind::Pattern, true),
            "ssubscribe" => (Kind::Shard, true),
            "unsubscribe" => (Kind::Channel, false),
            "punsubscribe" => (Kind::Pattern, false),
            _ => (Kind::Shard, false),
        };
        if subscribe && args.len() < 2 {
            return (Vec::new(), vec![wrong_args(name)]);
        }
        // What was delivered before this command goes out before its
        // confirmations (a message after UNSUBSCRIBE's confirmation would
        // look as if it had been published after).
        let mut delivered = self.mailbox.written_replies(self.mailbox.take_queue());
        let replies = if subscribe {
            match self.subscribe(kind, &args[1..]) {
                Ok(confirmations) => confirmations,
                Err(refused) => vec![refused],
            }
        } else {
            let (late, confirmations) = self.unsubscribe(kind, &args[1..]);
            delivered.extend(late);
            confirmations
        };
        (delivered, replies)
    }

    fn subscribe(&mut self, kind: Kind, names: &[Bytes]) -> Result<Vec<Reply>, Reply> {
        // All or nothing: count what is new first.
        let mut fresh: BTreeSet<&Bytes> = BTreeSet::new();
        for name in names {
            if !self.set(kind).contains(name) {
                fresh.insert(name);
            }
        }
        let total = self.channels.len() + self.patterns.len() + self.shard_channels.len();
        let fresh_bytes: usize = fresh.iter().map(|name| name.len()).sum();
        if total + fresh.len() > SUBSCRIPTIONS_PER_CLIENT_MAX
            || self.name_bytes + fresh_bytes > SUBSCRIPTION_BYTES_PER_CLIENT_MAX
        {
            return Err(Reply::error(format!(
                "ERR a connection may hold at most {SUBSCRIPTIONS_PER_CLIENT_MAX} channels and patterns of {SUBSCRIPTION_BYTES_PER_CLIENT_MAX} bytes in all (synod)"
            )));
        }
        let mut replies = Vec::with_capacity(names.len());
        let pubsub = self.pubsub.clone();
        let mut registry = pubsub.registry();
        if !registry.room_for(kind, fresh.len(), fresh_bytes) {
            registry.subscriptions_refused += 1;
            let refused = registry.subscriptions_refused;
            drop(registry);
            // The first, then one line per 1,000.
            if refused % 1000 == 1 {
                tracing::warn!(
                    refused,
                    "pub/sub: subscriptions refused: the node holds {SUBSCRIPTIONS_PER_NODE_MAX} subscriptions, {PATTERN_SUBSCRIPTIONS_PER_NODE_MAX} pattern subscriptions or {SUBSCRIPTION_BYTES_PER_NODE_MAX} bytes of names"
                );
            }
            return Err(Reply::error(format!(
                "ERR this node holds at most {SUBSCRIPTIONS_PER_NODE_MAX} subscriptions (of which {PATTERN_SUBSCRIPTIONS_PER_NODE_MAX} patterns) of {SUBSCRIPTION_BYTES_PER_NODE_MAX} bytes of names in all connections (synod)"
            )));
        }
        for name in names {
            // A copy: the name may be a slice of a large read buffer, which
            // a subscription held for hours would otherwise keep whole.
            let name = &Bytes::copy_from_slice(name);
            if self.set(kind).insert(name.clone()) {
                self.name_bytes += name.len();
                registry.add(kind, name, self.client, &self.mailbox);
            }
            replies.push(self.confirmation(kind.subscribe_name(), Some(name), kind));
        }
        Ok(replies)
    }

    /// The messages queued since [`Subscriber::run`] took the queue, and
    /// the confirmations.
    fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) -> (Vec<Reply>, Vec<Reply>) {
        let what = kind.unsubscribe_name();
        let names: Vec<Bytes> = if names.is_empty() {
            self.set(kind).iter().cloned().collect()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            // Nothing to leave: one confirmation with a nil name.
            return (Vec::new(), vec![self.confirmation(what, None, kind)]);
        }
        let pubsub = self.pubsub.clone();
        let mut registry = pubsub.registry();
        // What was queued since `command` took the queue goes out before the
        // confirmations too: nothing is queued for this connection while
        // the registry's lock is held (messages are queued under it), and
        // the connection leaves the registry under it below. Moved out in
        // O(1) here, turned into replies once the lock is released.
        let late = self.mailbox.take_queue();
        let mut confirmations = Vec::with_capacity(names.len());
        for name in &names {
            if self.set(kind).remove(name) {
                self.name_bytes -= name.len();
                registry.remove(kind, name, self.client);
            }
            confirmations.push(self.confirmation(what, Some(name), kind));
        }
        if !self.active() {
            registry.mailboxes.remove(&self.client);
        }
        drop(registry);
        (self.mailbox.written_replies(late), confirmations)
    }

    /// Leaves everything without confirmations (RESET, or the connection
    /// closing) and returns the messages delivered before, for RESET to
    /// write ahead of its reply, as Redis has them in its output buffer by
    /// then. Taken under the registry's lock, with the subscriptions
    /// removed: none is left behind to reach the connection after RESET's
    /// reply, nor can one be queued after.
    pub(crate) fn clear(&mut self) -> Vec<Reply> {
        let queue = self.leave();
        self.mailbox.written_replies(queue)
    }

    /// Leaves every subscription and takes what was queued: under the
    /// registry's lock when subscribed (O(subscriptions), the queue moved out
    /// in O(1)); with no lock at all when nothing is subscribed or queued
    /// (every connection that never subscribed, when it closes).
    fn leave(&mut self) -> VecDeque<Message> {
        if !self.active() {
            if !self.mailbox.pending() {
                return VecDeque::new();
            }
            return self.mailbox.take_queue();
        }
        let pubsub = self.pubsub.clone();
        let mut registry = pubsub.registry();
        let queue = self.mailbox.take_queue();
        for (kind, names) in [
            (Kind::Channel, std::mem::take(&mut self.channels)),
            (Kind::Pattern, std::mem::take(&mut self.patterns)),
            (Kind::Shard, std::mem::take(&mut self.shard_channels)),
        ] {
            for name in names {
                registry.remove(kind, &name, self.client);
            }
        }
        registry.mailboxes.remove(&self.client);
        self.name_bytes = 0;
        queue
    }

    /// Whether a message may be waiting or still come: subscribed, or
    /// something left queued. `false` means nothing can arrive until the
    /// connection subscribes again (its mailbox left the registry, under
    /// the registry's lock, with its last subscription, and messages are
    /// queued only under that lock), so the connection loop need not wait
    /// on [`Subscriber::ready`].
    pub(crate) fn may_receive(&self) -> bool {
        self.active() || self.mailbox.pending()
    }

    /// Resolves when messages wait to be written (or the queue overflowed):
    /// the connection loop waits on it with the client's next request.
    pub(crate) async fn ready(&self) {
        self.mailbox.wait_ready().await
    }

    /// Writes the messages waiting, in `protocol`. `Err(reason)`: the
    /// subscriber broke its output limits (before, or while this write was
    /// blocked) and must be disconnected.
    pub(crate) async fn flush<S>(
        &self,
        stream: &mut S,
        protocol: Protocol,
    ) -> std::io::Result<Result<(), String>>
    where
        S: AsyncWrite + Unpin,
    {
        flush_mailbox(&self.mailbox, stream, protocol).await
    }

    /// A handle on this connection's mailbox that needs no borrow of the
    /// subscriber: a blocked batch holds the connection while it waits, and
    /// the messages that arrive meanwhile go out through this handle.
    pub(crate) fn pushes(&self) -> Pushes {
        Pushes(Arc::clone(&self.mailbox))
    }
}

/// A connection's mailbox, for writing its messages while a blocking
/// command waits ([`Subscriber::pushes`]).
#[derive(Debug)]
pub(crate) struct Pushes(Arc<Mailbox>);

/// Messages taken from a mailbox, still counted against its limits until
/// written ([`Pushes::take`], [`Pushes::write`]).
#[derive(Debug, Default)]
pub(crate) struct Taken {
    replies: Vec<Reply>,
    bytes: usize,
}

impl Pushes {
    /// As [`Subscriber::ready`].
    pub(crate) async fn ready(&self) {
        self.0.wait_ready().await
    }

    /// The messages waiting now, to write later with [`Pushes::write`]
    /// (those queued after go after them). `Err(reason)`: the output
    /// limits were broken.
    pub(crate) fn take(&self) -> Result<Taken, String> {
        take_pending(&self.0)
    }

    /// Writes what [`Pushes::take`] took, as [`Subscriber::flush`] does.
    pub(crate) async fn write<S>(
        &self,
        stream: &mut S,
        protocol: Protocol,
        taken: Taken,
    ) -> std::io::Result<Result<(), String>>
    where
        S: AsyncWrite + Unpin,
    {
        write_taken(&self.0, stream, protocol, taken).await
    }
}

/// [`Subscriber::flush`]: writes what `mailbox` holds.
async fn flush_mailbox<S>(
    mailbox: &Mailbox,
    stream: &mut S,
    protocol: Protocol,
) -> std::io::Result<Result<(), String>>
where
    S: AsyncWrite + Unpin,
{
    match take_pending(mailbox) {
        Ok(taken) => write_taken(mailbox, stream, protocol, taken).await,
        Err(why) => Ok(Err(why)),
    }
}

/// What `mailbox` holds, taken (still counted until written).
fn take_pending(mailbox: &Mailbox) -> Result<Taken, String> {
    // The common case, on every request of every connection: nothing
    // queued, no overflow; no lock taken.
    if !mailbox.pending() {
        return Ok(Taken::default());
    }
    if let Some(why) = mailbox.overflow() {
        return Err(why);
    }
    let (replies, bytes) = mailbox.take();
    Ok(Taken { replies, bytes })
}

/// Writes `taken`, then stops counting its bytes.
async fn write_taken<S>(
    mailbox: &Mailbox,
    stream: &mut S,
    protocol: Protocol,
    taken: Taken,
) -> std::io::Result<Result<(), String>>
where
    S: AsyncWrite + Unpin,
{
    let Taken { replies, bytes } = taken;
    if replies.is_empty() {
        return Ok(Ok(()));
    }
    let mut out = BytesMut::with_capacity(bytes.min(1 << 20));
    for reply in &replies {
        write_reply(&mut out, reply, protocol);
    }
    drop(replies);
    let write = async {
        stream.write_all(&out).await?;
        stream.flush().await
    };
    // The bytes stay counted while the client does not read them: a
    // client that stops reading reaches the limits and is closed, even
    // though this write never completes.
    tokio::select! {
        written = write => written?,
        () = mailbox.wait_overflow() => {
            return Ok(Err(mailbox.overflow().unwrap_or_default()));
        }
    }
    mailbox.written(bytes);
    Ok(Ok(()))
}

#[cfg(test)]
impl Subscriber {
    /// The queued messages, as [`Subscriber::flush`] would write them.
    pub(super) fn take_for_tests(&self) -> Vec<Reply> {
        let (replies, bytes) = self.mailbox.take();
        self.mailbox.written(bytes);
        replies
    }

    pub(super) fn overflow_for_tests(&self) -> Option<String> {
        self.mailbox.overflow()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // What was queued goes with the connection, never turned into
        // replies (up to the hard limit's worth), and after the lock.
        drop(self.leave());
    }
}
