//! Pub/sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH,
//! SPUBLISH and PUBSUB, with Redis 7's replies.
//!
//! The two rules this file keeps:
//!
//! 1. **A message is a point of the log.** PUBLISH is a replicated command
//!    ([`KvCommand::Publish`]); when a replica *applies* it, [`crate::store::Store`]
//!    hands (channel, message) to that node's registry ([`PubSub`]), which
//!    queues it for the node's own subscribers. Every node therefore
//!    delivers every message in log order, the same order on every node —
//!    something Redis (whose replicas each forward in their own order, and
//!    whose cluster has no global order) cannot give. Delivery is a side
//!    effect outside the replicated state, like a reply: the apply's
//!    *output* for a PUBLISH is the same on every replica (0), so the
//!    replicated session table, which keeps outputs, stays identical.
//! 2. **The reply counts the proposer's receivers.** As Redis Cluster
//!    answers with the receiving node's count, PUBLISH answers with the
//!    number of subscriptions that received it on the node the client is
//!    connected to. That node stamps the command with a ticket
//!    (`Tickets`) before proposing it; its own apply records the count
//!    under the ticket, and the front end replaces the output's 0 with it.
//!    Other nodes' applies see a ticket that is not theirs and record
//!    nothing.
//!
//! Delivery is at most once per node: messages applied while a node catches
//! up by installing a snapshot are not delivered on it, and a subscriber
//! whose node restarts loses what it has not read, as in Redis.
//!
//! Subscriptions are node-local connection state, never replicated. Memory is
//! bounded twice: each connection holds at most
//! [`SUBSCRIPTIONS_PER_CLIENT_MAX`] channels and patterns (and
//! [`SUBSCRIPTION_BYTES_PER_CLIENT_MAX`] bytes of their names), and each
//! subscriber's queue of undelivered messages obeys Redis' default
//! `client-output-buffer-limit pubsub 32mb 8mb 60`: past the hard limit, or
//! over the soft one for 60 s, the subscriber is disconnected (counted in
//! `client_output_buffer_limit_disconnections` and logged) and its queue is
//! dropped, so a slow reader never makes the node's memory grow without bound.

mod commands;
pub mod keyspace_events;
mod mailbox;
mod patterns;
mod subscriber;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::KvCommand;
use crate::glob::glob_match_within;
pub(crate) use commands::{channels_checked, parse_publish, COMMAND_ROWS};
use mailbox::{lock, Mailbox, Message, OutputLimits};
use patterns::{literal_prefix, prefix_groups};
pub(crate) use subscriber::{refused_while_subscribed, Pushes, Subscriber, SUBSCRIBE_COMMANDS};

/// Most channels, patterns and shard channels one connection may be
/// subscribed to, all together. Redis has no limit; 10,000 is far more
/// than clients use, and bounds a connection's registry entries (the
/// patterns of all connections have a lower node-wide bound of their own,
/// [`PATTERN_SUBSCRIPTIONS_PER_NODE_MAX`]).
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 10_000;
/// Most bytes of channel and pattern names one connection may hold.
pub const SUBSCRIPTION_BYTES_PER_CLIENT_MAX: usize = 4 << 20;
/// Most subscriptions (channels, patterns and shard channels of every
/// connection) one node holds: the per-connection bounds times the client
/// limit would allow a hundred million.
pub const SUBSCRIPTIONS_PER_NODE_MAX: usize = 1_000_000;
/// Most bytes of subscribed names one node holds, all connections together.
pub const SUBSCRIPTION_BYTES_PER_NODE_MAX: usize = 256 << 20;
/// Most pattern subscriptions (PSUBSCRIBE, every connection's together) one
/// node holds, within [`SUBSCRIPTIONS_PER_NODE_MAX`]. Much lower than that
/// bound, because patterns, unlike channels, cost every message and every
/// keyspace event a scan on the apply path (see `Registry::publish`):
/// 65,536 is far more than real deployments use, and keeps a full scan
/// within a few milliseconds.
pub const PATTERN_SUBSCRIPTIONS_PER_NODE_MAX: usize = 65_536;
/// Redis' `client-output-buffer-limit pubsub` hard limit: a subscriber with
/// this many bytes of messages not yet written is disconnected.
pub const PUBSUB_OUTPUT_HARD_BYTES: usize = 32 << 20;
/// The soft limit: over it for [`PUBSUB_OUTPUT_SOFT_DURATION`] disconnects.
pub const PUBSUB_OUTPUT_SOFT_BYTES: usize = 8 << 20;
/// How long a subscriber may stay over [`PUBSUB_OUTPUT_SOFT_BYTES`].
pub const PUBSUB_OUTPUT_SOFT_DURATION: Duration = Duration::from_secs(60);
/// The three namespaces: plain channels, patterns over plain channels, and
/// Redis 7's shard channels (one shard here, so their own namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn subscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    fn unsubscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// The subscribers of each channel, pattern and shard channel, by client
/// id (sorted maps: deterministic listing order).
#[derive(Debug, Default)]
struct Registry {
    channels: BTreeMap<Bytes, BTreeSet<u64>>,
    patterns: BTreeMap<Bytes, BTreeSet<u64>>,
    /// The keys of `patterns` grouped by their literal prefix (see
    /// [`literal_prefix`]): a channel is only matched against the patterns
    /// whose prefix it starts with.
    pattern_prefixes: BTreeMap<Bytes, BTreeSet<Bytes>>,
    shard_channels: BTreeMap<Bytes, BTreeSet<u64>>,
    mailboxes: HashMap<u64, Arc<Mailbox>>,
    limits: OutputLimits,
    /// This node's tickets for its own PUBLISHes in flight: the receivers
    /// counted when its apply delivered the message (`None` until then).
    tickets: HashMap<u64, Option<i64>>,
    next_ticket: u64,
    /// Pattern matches given up for cost (see [`Registry::publish`]).
    matches_abandoned: u64,
    /// Glob steps the running apply may still spend on patterns, all its
    /// messages and keyspace events together: reset to
    /// [`APPLY_PATTERN_STEPS_MAX`] by [`PubSub::registry_for_apply`] at
    /// the first message of each apply.
    apply_steps_left: u64,
    /// The apply (count of [`PubSub::begin_apply`] calls) whose budget
    /// `apply_steps_left` holds (`None`: none yet).
    budget_of_apply: Option<u64>,
    /// Messages (PUBLISHes and keyspace events) whose pattern matching was
    /// cut short because their apply's budget ran out (INFO
    /// `synod_pubsub_pattern_scans_cut_short`).
    scans_cut_short: u64,
    /// Pattern subscriptions in `patterns`: bounded by
    /// [`PATTERN_SUBSCRIPTIONS_PER_NODE_MAX`].
    pattern_subscriptions: usize,
    /// Subscriptions in the three indexes, and the bytes of their names
    /// (each subscription counts its name): bounded by
    /// [`SUBSCRIPTIONS_PER_NODE_MAX`] and [`SUBSCRIPTION_BYTES_PER_NODE_MAX`].
    subscriptions: usize,
    subscription_bytes: usize,
    /// SUBSCRIBEs refused for the node's bounds (logged, see `Subscriber`).
    subscriptions_refused: u64,
}

/// Most glob steps one apply may spend on patterns, all its PUBLISHes and
/// keyspace events together (an MSET of thousands of keys emits thousands
/// of events): the match runs on every replica's apply path, so a costly
/// set of patterns must not stall the log (a few hundred ms at most at this
/// bound; it takes 256 patterns that each exhaust [`PATTERN_STEPS_MAX`], or
/// a huge number of patterns sharing the channel's prefix, to get there).
/// Every pattern tried costs at least one step, and finding the patterns
/// whose literal prefix starts the channel costs one per byte compared.
const APPLY_PATTERN_STEPS_MAX: u64 = 64 << 20;
/// Most glob steps one pattern may spend on one PUBLISH (a linear match of
/// a 256 KiB channel name; [`pattern_steps`] is less for most).
const PATTERN_STEPS_MAX: u64 = 256 << 10;
/// Most glob steps PUBSUB CHANNELS may spend (on the event loop, under the
/// registry lock).
const CHANNELS_PATTERN_STEPS_MAX: u64 = 16 << 20;

/// The steps one pattern may take against one channel: enough for the
/// whole quadratic match of any pattern up to 64 bytes, linear in both
/// lengths for longer ones (a match that costs more is super-linear: only
/// a hostile pattern needs it).
fn pattern_steps(pattern: &[u8], channel: &[u8]) -> u64 {
    ((pattern.len() as u64 + channel.len() as u64 + 64) * 64).min(PATTERN_STEPS_MAX)
}

impl Registry {
    /// Whether no connection subscribes to a channel or pattern (shard
    /// channels aside): then no event or message can reach anyone.
    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty()
    }

    fn index(&mut self, kind: Kind) -> &mut BTreeMap<Bytes, BTreeSet<u64>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// Whether `count` more subscriptions of `bytes` of names in all fit in
    /// the node's bounds.
    fn room_for(&self, kind: Kind, count: usize, bytes: usize) -> bool {
        self.subscriptions.saturating_add(count) <= SUBSCRIPTIONS_PER_NODE_MAX
            && self.subscription_bytes.saturating_add(bytes) <= SUBSCRIPTION_BYTES_PER_NODE_MAX
            && (kind != Kind::Pattern
                || self.pattern_subscriptions.saturating_add(count)
                    <= PATTERN_SUBSCRIPTIONS_PER_NODE_MAX)
    }

    fn add(&mut self, kind: Kind, name: &Bytes, client: u64, mailbox: &Arc<Mailbox>) {
        if self
            .index(kind)
            .entry(name.clone())
            .or_default()
            .insert(client)
        {
            self.subscriptions += 1;
            self.subscription_bytes += name.len();
            if kind == Kind::Pattern {
                self.pattern_subscriptions += 1;
                self.pattern_prefixes
                    .entry(Bytes::copy_from_slice(literal_prefix(name)))
                    .or_default()
                    .insert(name.clone());
            }
        }
        self.mailboxes
            .entry(client)
            .or_insert_with(|| Arc::clone(mailbox));
    }

    fn remove(&mut self, kind: Kind, name: &[u8], client: u64) {
        let index = self.index(kind);
        let mut removed = false;
        let mut last = false;
        if let Some(clients) = index.get_mut(name) {
            removed = clients.remove(&client);
            if clients.is_empty() {
                index.remove(name);
                last = true;
            }
        }
        if removed {
            debug_assert!(self.subscriptions > 0 && self.subscription_bytes >= name.len());
            self.subscriptions -= 1;
            self.subscription_bytes -= name.len();
            if kind == Kind::Pattern {
                debug_assert!(self.pattern_subscriptions > 0);
                self.pattern_subscriptions -= 1;
            }
        }
        if last && kind == Kind::Pattern {
            let prefix = literal_prefix(name);
            if let Some(group) = self.pattern_prefixes.get_mut(prefix) {
                group.remove(name);
                if group.is_empty() {
                    self.pattern_prefixes.remove(prefix);
                }
            }
        }
        debug_assert!(kind != Kind::Pattern || self.patterns.len() <= self.pattern_subscriptions);
    }

    /// Queues the message for every subscription it matches; returns how
    /// many (a client subscribed to the channel and to a matching pattern
    /// counts twice, and gets it twice, as in Redis).
    ///
    /// Patterns are matched within budgets, because this runs on every
    /// replica's apply path: only the patterns whose literal prefix starts
    /// the channel are tried (see [`prefix_groups`]), each within
    /// [`pattern_steps`] (at most [`PATTERN_STEPS_MAX`]), and all the
    /// messages of one apply within [`APPLY_PATTERN_STEPS_MAX`] together
    /// (reset by [`PubSub::begin_apply`]). A pattern whose match runs out is
    /// taken as not matching (counted in INFO
    /// `synod_pubsub_pattern_matches_abandoned`); once the apply's budget
    /// runs out, the patterns left are not tried for this message nor for
    /// the apply's later ones (counted per message in
    /// `synod_pubsub_pattern_scans_cut_short`). Both are logged, never
    /// silent. Only hostile patterns (thousands of bytes with many stars, or
    /// tens of thousands sharing a prefix with a busy channel) get there.
    fn publish(&mut self, channel: &Bytes, payload: &Bytes, shard: bool) -> i64 {
        let now = Instant::now();
        let mut receivers = 0i64;
        let mut send = |client: &u64, message: Message| {
            if let Some(mailbox) = self.mailboxes.get(client) {
                mailbox.push(message, self.limits, now);
                receivers += 1;
            }
        };
        if shard {
            for client in self.shard_channels.get(channel).into_iter().flatten() {
                let message = Message::Shard {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                send(client, message);
            }
            return receivers;
        }
        for client in self.channels.get(channel).into_iter().flatten() {
            let message = Message::Channel {
                channel: channel.clone(),
                payload: payload.clone(),
            };
            send(client, message);
        }
        if self.patterns.is_empty() {
            return receivers;
        }
        // Every pattern that can match is tried, as in Redis, within the
        // budgets above.
        let mut total = self.apply_steps_left;
        let mut abandoned = 0u64;
        let mut cut_short = true;
        if let Some(groups) = prefix_groups(&self.pattern_prefixes, channel, &mut total) {
            let mut candidates: Vec<&Bytes> = groups.into_iter().flatten().collect();
            if candidates.len() > 1 {
                // In name order, as the patterns are listed (several
                // groups come longest prefix first).
                candidates.sort_unstable();
            }
            cut_short = false;
            for pattern in candidates {
                if total == 0 {
                    cut_short = true;
                    break;
                }
                let budget = pattern_steps(pattern, channel).min(total);
                let mut steps = budget;
                let matched = glob_match_within(pattern, channel, &mut steps);
                total -= budget - steps;
                match matched {
                    Some(true) => {}
                    Some(false) => continue,
                    None if total == 0 => {
                        cut_short = true;
                        break;
                    }
                    None => {
                        abandoned += 1;
                        continue;
                    }
                }
                for client in self.patterns.get(pattern).into_iter().flatten() {
                    let message = Message::Pattern {
                        pattern: pattern.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    send(client, message);
                }
            }
        }
        self.apply_steps_left = total;
        if cut_short {
            self.scans_cut_short += 1;
            // The first, then one line per 1,000.
            if self.scans_cut_short % 1000 == 1 {
                tracing::warn!(
                    cut_short = self.scans_cut_short,
                    channel_bytes = channel.len(),
                    patterns = self.patterns.len(),
                    "pub/sub: pattern matching cut short: this apply's messages and keyspace \
                     events spent its budget of {APPLY_PATTERN_STEPS_MAX} glob steps (too many \
                     or too costly patterns); patterns not tried did not get the message"
                );
            }
        }
        if abandoned > 0 {
            let before = self.matches_abandoned;
            self.matches_abandoned += abandoned;
            // The first, then one line per 1,000 (a hostile client would
            // otherwise flood the log).
            if before == 0 || before / 1000 != self.matches_abandoned / 1000 {
                tracing::warn!(
                    abandoned = self.matches_abandoned,
                    channel_bytes = channel.len(),
                    "pub/sub: pattern matches given up for cost (patterns too long or too \
                     many for this channel; they did not get the message)"
                );
            }
        }
        receivers
    }
}

/// A node's pub/sub registry: shared by its [`crate::Store`] (which
/// delivers applied messages) and its RESP server (whose connections
/// subscribe). Give the store's ([`crate::Store::pubsub`]) to
/// `ServerConfig::pubsub`.
#[derive(Clone, Debug)]
pub struct PubSub {
    registry: Arc<Mutex<Registry>>,
    /// This handle's identity in tickets: PUBLISHes stamped elsewhere
    /// carry another (see [`Tickets`]).
    origin: Arc<OriginId>,
    /// This node's `notify-keyspace-events` (see [`keyspace_events`]).
    event_flags: Arc<keyspace_events::EventFlags>,
    /// The earliest expiry time of any key in the store (`u64::MAX`: none),
    /// published by the store after each apply, read by the server's
    /// expiry sweep (see `crate::server`).
    next_expiry_ms: Arc<AtomicU64>,
    /// The log clock (`ApplyContext::time_ms`) of the last apply, read by
    /// the expiry sweep with `next_expiry_ms`.
    log_time_ms: Arc<AtomicU64>,
    /// Applies begun ([`PubSub::begin_apply`]): each has its own pattern
    /// budget.
    applies: Arc<AtomicU64>,
}

/// A process-unique, non-zero id per registry.
#[derive(Debug)]
struct OriginId(u64);

impl Default for OriginId {
    fn default() -> OriginId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Distinct across processes too: nodes of one cluster are separate
        // processes, each counting from 1, and a ticket must never be taken
        // for another node's.
        let seed = std::collections::hash_map::RandomState::new();
        let random = std::hash::BuildHasher::hash_one(&seed, std::process::id());
        OriginId((random << 16 | NEXT.fetch_add(1, Relaxed) & 0xffff).max(1))
    }
}

impl Default for PubSub {
    fn default() -> PubSub {
        PubSub {
            registry: Arc::default(),
            origin: Arc::default(),
            event_flags: Arc::default(),
            next_expiry_ms: Arc::new(AtomicU64::new(u64::MAX)),
            log_time_ms: Arc::default(),
            applies: Arc::default(),
        }
    }
}

impl PubSub {
    /// An empty registry.
    pub fn new() -> PubSub {
        PubSub::default()
    }

    /// The earliest expiry time of any key in the store (`None`: no key
    /// has one), as of the last apply.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        Some(self.next_expiry_ms.load(Relaxed)).filter(|at| *at != u64::MAX)
    }

    pub(crate) fn set_next_expiry_ms(&self, at: Option<u64>) {
        self.next_expiry_ms.store(at.unwrap_or(u64::MAX), Relaxed);
    }

    /// The log clock as of the last apply (0 before any).
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms.load(Relaxed)
    }

    pub(crate) fn set_log_time_ms(&self, time_ms: u64) {
        self.log_time_ms.store(time_ms, Relaxed);
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Starts an apply: its PUBLISHes and keyspace events share one budget
    /// of [`APPLY_PATTERN_STEPS_MAX`] glob steps (see `Registry::publish`).
    /// Called by the keyspace where every apply begins. One atomic add, no
    /// lock: the registry refreshes the budget when it next matches (see
    /// [`PubSub::registry_for_apply`]).
    pub(crate) fn begin_apply(&self) {
        self.applies.fetch_add(1, Relaxed);
    }

    /// The registry, for delivering a message of the running apply: with
    /// the apply's budget fresh if this is its first message.
    fn registry_for_apply(&self) -> MutexGuard<'_, Registry> {
        let apply = self.applies.load(Relaxed);
        let mut registry = self.registry();
        if registry.budget_of_apply != Some(apply) {
            registry.budget_of_apply = Some(apply);
            registry.apply_steps_left = APPLY_PATTERN_STEPS_MAX;
        }
        registry
    }

    /// Sets the subscribers' output limits (Redis' `client-output-buffer-limit
    /// pubsub <hard> <soft> <seconds>`; the defaults are Redis'), for the
    /// messages queued from now on.
    pub fn set_output_limits(&self, hard_bytes: usize, soft_bytes: usize, soft_duration: Duration) {
        self.set_limits(OutputLimits {
            hard_bytes,
            soft_bytes,
            soft_duration,
        });
    }

    fn set_limits(&self, limits: OutputLimits) {
        self.registry().limits = limits;
    }

    /// Delivers the PUBLISHes in `command` (alone, or in a transaction or
    /// batch) that ran, as `reply`, the apply's output, shows: called by
    /// the store after applying. Records the receivers of this node's own
    /// tickets. Changes nothing replicated.
    pub(crate) fn deliver_applied(&self, command: &KvCommand, reply: &Reply) {
        if !involves_publish(command) {
            return;
        }
        let mut registry = self.registry_for_apply();
        let origin = self.origin.0;
        visit_publishes(command, reply, &mut |publish, reply| {
            let KvCommand::Publish {
                channel,
                message,
                shard,
                origin: stamped_by,
                ticket,
            } = publish
            else {
                return;
            };
            // Anything but the placeholder means it did not run.
            if *reply != Reply::Integer(0) {
                return;
            }
            let receivers = registry.publish(channel, message, *shard);
            if *stamped_by == origin {
                if let Some(slot) = registry.tickets.get_mut(ticket) {
                    *slot = Some(receivers);
                }
            }
        });
    }

    /// Stamps every PUBLISH in `command` with a fresh ticket of this node,
    /// before it is proposed. Settle the tickets with the reply.
    pub(crate) fn stamp(&self, command: &mut KvCommand) -> Tickets<'_> {
        let mut issued = Vec::new();
        if involves_publish(command) {
            let mut registry = self.registry();
            let mut stamp_one = |command: &mut KvCommand| {
                if let KvCommand::Publish { origin, ticket, .. } = command {
                    registry.next_ticket = registry.next_ticket.wrapping_add(1);
                    let fresh = registry.next_ticket;
                    registry.tickets.insert(fresh, None);
                    *origin = self.origin.0;
                    *ticket = fresh;
                    issued.push(fresh);
                }
            };
            match command {
                KvCommand::Exec(commands) => commands.iter_mut().for_each(&mut stamp_one),
                other => stamp_one(other),
            }
        }
        Tickets {
            pubsub: self,
            issued,
        }
    }

    /// `PUBSUB <subcommand> ...`: this node's subscriptions.
    pub(crate) fn pubsub_command(&self, args: &[Bytes]) -> Reply {
        let Some(sub) = args
            .get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        else {
            return wrong_args("pubsub");
        };
        let registry = self.registry();
        let channels = |index: &BTreeMap<Bytes, BTreeSet<u64>>| {
            let pattern = args.get(2);
            let mut steps = CHANNELS_PATTERN_STEPS_MAX;
            let mut names = Vec::new();
            for name in index.keys() {
                let matched = match pattern {
                    None => Some(true),
                    Some(pattern) => glob_match_within(pattern, name, &mut steps),
                };
                match matched {
                    Some(true) => names.push(Reply::Bulk(name.clone())),
                    Some(false) => {}
                    None => {
                        return Reply::error(
                            "ERR PUBSUB CHANNELS: the pattern is too costly to match against \
                             this node's channels",
                        )
                    }
                }
            }
            Reply::Array(names)
        };
        let numsub = |index: &BTreeMap<Bytes, BTreeSet<u64>>| {
            let mut reply = Vec::with_capacity((args.len() - 2) * 2);
            for name in &args[2..] {
                reply.push(Reply::Bulk(name.clone()));
                reply.push(Reply::Integer(index.get(name).map_or(0, |c| c.len()) as i64));
            }
            Reply::Array(reply)
        };
        match (sub.as_str(), args.len()) {
            ("channels", 2 | 3) => channels(&registry.channels),
            ("shardchannels", 2 | 3) => channels(&registry.shard_channels),
            ("numsub", _) => numsub(&registry.channels),
            ("shardnumsub", _) => numsub(&registry.shard_channels),
            ("numpat", 2) => Reply::Integer(registry.patterns.len() as i64),
            ("help", 2) => Reply::Array(
                PUBSUB_HELP
                    .iter()
                    .map(|line| Reply::simple(line.to_string()))
                    .collect(),
            ),
            ("channels" | "shardchannels" | "numpat" | "help", _) => {
                wrong_args(&format!("pubsub|{sub}"))
            }
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            )),
        }
    }

    /// How many channels and patterns have subscribers on this node (INFO
    /// `pubsub_channels`, `pubsub_patterns`, `pubsubshard_channels`).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let registry = self.registry();
        (
            registry.channels.len(),
            registry.patterns.len(),
            registry.shard_channels.len(),
        )
    }

    /// Pattern matches given up for cost since start (INFO
    /// `synod_pubsub_pattern_matches_abandoned`; see `Registry::publish`).
    pub(crate) fn matches_abandoned(&self) -> u64 {
        self.registry().matches_abandoned
    }

    /// Messages and keyspace events whose pattern matching was cut short
    /// by their apply's budget since start (INFO
    /// `synod_pubsub_pattern_scans_cut_short`; see `Registry::publish`).
    pub(crate) fn scans_cut_short(&self) -> u64 {
        self.registry().scans_cut_short
    }
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn involves_publish(command: &KvCommand) -> bool {
    match command {
        KvCommand::Publish { .. } => true,
        KvCommand::Exec(commands) => commands
            .iter()
            .any(|command| matches!(command, KvCommand::Publish { .. })),
        _ => false,
    }
}

/// Calls `f` with each PUBLISH in `command` and its reply in `reply` (the
/// apply's output, or the reply the client gets): a transaction's or
/// batch's array lines up with its commands, less the WATCH check's, which
/// the store drops. A transaction that did not run (a nil or an error
/// instead of the array) has none.
fn visit_publishes<R>(command: &KvCommand, reply: R, f: &mut impl FnMut(&KvCommand, R))
where
    R: ReplyRef,
{
    match command {
        KvCommand::Publish { .. } => f(command, reply),
        KvCommand::Exec(commands) => {
            let skip = usize::from(matches!(
                commands.first(),
                Some(KvCommand::WatchCheck { .. })
            ));
            let commands = &commands[skip..];
            let Some(replies) = reply.items(commands.len()) else {
                return;
            };
            for (command, reply) in commands.iter().zip(replies) {
                if matches!(command, KvCommand::Publish { .. }) {
                    f(command, reply);
                }
            }
        }
        _ => {}
    }
}

/// A reply walked by [`visit_publishes`], shared or mutable.
trait ReplyRef: Sized {
    /// The elements of an array of exactly `len` replies.
    fn items(self, len: usize) -> Option<Vec<Self>>;
}

impl<'a> ReplyRef for &'a Reply {
    fn items(self, len: usize) -> Option<Vec<&'a Reply>> {
        match self {
            Reply::Array(items) if items.len() == len => Some(items.iter().collect()),
            _ => None,
        }
    }
}

impl<'a> ReplyRef for &'a mut Reply {
    fn items(self, len: usize) -> Option<Vec<&'a mut Reply>> {
        match self {
            Reply::Array(items) if items.len() == len => Some(items.iter_mut().collect()),
            _ => None,
        }
    }
}

/// The tickets of one proposal's PUBLISHes. [`Tickets::settle`] puts this
/// node's receiver counts in the reply; dropped unsettled (the client went
/// away while waiting), it forgets them, so tickets never pile up.
pub(crate) struct Tickets<'a> {
    pubsub: &'a PubSub,
    issued: Vec<u64>,
}

impl Tickets<'_> {
    /// Replaces each PUBLISH's placeholder in `reply` (the reply to
    /// `command`, as stamped) with the receivers this node's apply
    /// counted. A PUBLISH this node did not apply (its outcome came from
    /// a snapshot's session table) reached nobody here: it keeps its 0.
    pub(crate) fn settle(mut self, command: &KvCommand, reply: &mut Reply) {
        if self.issued.is_empty() {
            return;
        }
        let mut registry = self.pubsub.registry();
        visit_publishes(command, reply, &mut |publish, reply: &mut Reply| {
            if let KvCommand::Publish { ticket, .. } = publish {
                if let (Some(Some(receivers)), Reply::Integer(0)) =
                    (registry.tickets.remove(ticket), &*reply)
                {
                    *reply = Reply::Integer(receivers);
                }
            }
        });
        for ticket in self.issued.drain(..) {
            registry.tickets.remove(&ticket);
        }
    }
}

impl Drop for Tickets<'_> {
    fn drop(&mut self) {
        if self.issued.is_empty() {
            return;
        }
        let mut registry = self.pubsub.registry();
        for ticket in self.issued.drain(..) {
            registry.tickets.remove(&ticket);
        }
    }
}
