//! Blocking pops: `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`,
//! `BZPOPMIN`, `BZPOPMAX`, `BZMPOP`.
//!
//! # The design
//!
//! A blocking pop is replicated as one *try* ([`KvCommand::Blocking`]): the
//! non-blocking pop (`LMPOP`, `LMOVE`, `ZMPOP`), answering nil when every
//! key is empty or missing, the reply reshaped to the blocking command's. A
//! try that popped is the whole command. A try that answered nil leaves the
//! client waiting in this node's [`BlockedClients`]; the node's apply path
//! wakes it ([`BlockedClients::touched`], called by the keyspace for every
//! key a write gives a value: `Keyspace::put` and `Keyspace::modify`, the
//! only places that do) and it proposes the try again. The client's node
//! clock only ends the wait (the timeout); it never decides state: an
//! element is popped only by a try applied on every replica alike.
//!
//! # Safety: an element is never lost
//!
//! The pop happens only inside a try, applied like any write; its reply
//! goes to the client unless the client is gone. The timeout (and `CLIENT
//! UNBLOCK`) are looked at only between tries, never while one is in
//! flight: a try in flight is always waited for, and if it popped, its
//! element is the reply, not nil. (A client that disconnects while its try
//! is in flight loses that element, as it would the reply to an `LPOP`.)
//!
//! # Liveness: no lost wake-up
//!
//! A client registers its keys *before* proposing its first try. Let the
//! try be applied at log position `P`. A push at `Q < P` is seen by the
//! try. A push at `Q > P` is applied on this node after `P`, hence after
//! the registration (which preceded the proposal of `P`), so it finds the
//! waiter and wakes it. A wake that comes while the client's try is in
//! flight sets `again`, and a try that answered nil with `again` set is
//! proposed once more at once (applies on one node are sequential, so the
//! wake is either seen by the try or comes after it, and then is recorded).
//!
//! # Order: the first blocked is served first (on one node)
//!
//! A touched key wakes only the *head* of its FIFO of waiters. A waiter
//! that leaves (served, timed out, unblocked, closed) hands the wake on to
//! the next head when the key was touched since that one's last try began.
//! So the tries of one node's waiters on a key are proposed one after the
//! other, in the order they blocked, as Redis serves them. Across nodes
//! there is no order to keep: whichever try the log orders first pops.
//!
//! # Writers see their wakes served
//!
//! Redis answers a push only after the clients it unblocked were served, so
//! a client that pushes and then reads sees the pops done. Here the woken
//! tries are proposed after the push was applied; a connection that wrote
//! waits ([`BlockedClients::settle`]) until the wakes that existed when its
//! writes were applied, and the wakes those tries caused in turn (a chain of
//! `BLMOVE`s), were settled. Each wake is a *unit* with a generation: a
//! wake caused by the apply of a try, or handed on by a leaving waiter,
//! inherits the oldest generation outstanding; any other gets a new one.
//! The wait is bounded by [`SETTLE_WAIT_MAX`] (it only orders replies, it
//! is never needed for safety), and reads never wait.
//!
//! # Bounded memory
//!
//! One waiter per blocked connection, holding its keys (already bounded by
//! the request size); a waiter is removed when its connection's command
//! ends in any way, the connection closing included (a drop guard).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use synod_resp::Reply;
use tokio::sync::Notify;

use crate::command::{BlockingKind, KvCommand};
use crate::command_zset::ZSetCommand;
use crate::keyspace::{Keyspace, ValueRef};
use crate::number::parse_f64;

/// Longest a connection that wrote waits for the wakes its writes caused to
/// be served before it answers (see the module docs).
pub(crate) const SETTLE_WAIT_MAX: Duration = Duration::from_millis(1000);

/// `CLIENT UNBLOCK`'s reply to the unblocked client with `ERROR`.
const UNBLOCKED_ERROR: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// How long a blocking command waits; `None`: for ever.
pub(crate) type Timeout = Option<Duration>;

/// Whether `name` (lowercase) is a blocking pop.
pub(crate) fn is_blocking(name: &str) -> bool {
    is_blocking_name(name.as_bytes())
}

/// Whether `name` (any case) is a blocking pop.
pub(crate) fn is_blocking_name(name: &[u8]) -> bool {
    BlockingKind::ALL
        .iter()
        .any(|kind| name.eq_ignore_ascii_case(kind.name().as_bytes()))
}

/// Parses a blocking pop whose arity was checked: the replicated try and
/// the client's timeout. The arguments are checked in Redis 7.0's order:
/// those of the wrapped pop (numkeys, LEFT|RIGHT, COUNT) before the
/// timeout for `BLMOVE`, `BLMPOP` and `BZMPOP`, the timeout first for the
/// others (their keys cannot be wrong).
pub(crate) fn parse(name: &str, args: &[Bytes]) -> Result<(KvCommand, Timeout), Reply> {
    let Some(kind) = BlockingKind::ALL
        .into_iter()
        .find(|kind| kind.name() == name)
    else {
        return Err(Reply::error("ERR internal error: not a blocking command"));
    };
    let word = |text: &'static str| Bytes::from_static(text.as_bytes());
    let count_of = |keys: &[Bytes]| Bytes::from(keys.len().to_string());
    let (pop_args, timeout_arg): (Vec<Bytes>, &Bytes) = match kind {
        BlockingKind::BLPop
        | BlockingKind::BRPop
        | BlockingKind::BZPopMin
        | BlockingKind::BZPopMax => {
            let (timeout_arg, keys) = args[1..]
                .split_last()
                .ok_or_else(|| crate::parse::wrong_arity(name))?;
            let (pop, end) = match kind {
                BlockingKind::BLPop => ("lmpop", "left"),
                BlockingKind::BRPop => ("lmpop", "right"),
                BlockingKind::BZPopMin => ("zmpop", "min"),
                _ => ("zmpop", "max"),
            };
            let mut pop_args = Vec::with_capacity(keys.len() + 3);
            pop_args.push(word(pop));
            pop_args.push(count_of(keys));
            pop_args.extend_from_slice(keys);
            pop_args.push(word(end));
            // The timeout first, as Redis reads it.
            let timeout = parse_timeout(timeout_arg)?;
            return Ok((wrap(kind, &pop_args)?, timeout));
        }
        BlockingKind::BLMove => (
            std::iter::once(word("lmove"))
                .chain(args[1..5].iter().cloned())
                .collect(),
            &args[5],
        ),
        BlockingKind::BRPopLPush => (
            vec![word("rpoplpush"), args[1].clone(), args[2].clone()],
            &args[3],
        ),
        BlockingKind::BLMPop | BlockingKind::BZMPop => {
            let pop = if kind == BlockingKind::BLMPop {
                "lmpop"
            } else {
                "zmpop"
            };
            (
                std::iter::once(word(pop))
                    .chain(args[2..].iter().cloned())
                    .collect(),
                &args[1],
            )
        }
    };
    let command = wrap(kind, &pop_args)?;
    Ok((command, parse_timeout(timeout_arg)?))
}

fn wrap(kind: BlockingKind, pop_args: &[Bytes]) -> Result<KvCommand, Reply> {
    let pop = crate::parse::parse(pop_args)?;
    debug_assert!(kind.wraps(&pop));
    Ok(KvCommand::Blocking {
        kind,
        pop: Box::new(pop),
        blocked: false,
    })
}

/// For the try of a client that already blocked: `pop` without the sources
/// that hold another type than it pops (Redis leaves a blocked client
/// waiting on such keys); `None` when no source is left. A `BLMOVE` whose
/// destination has the wrong type still answers `WRONGTYPE`, as in Redis.
pub(crate) fn passing_over_wrong_types(
    keyspace: &Keyspace,
    pop: &KvCommand,
    now: u64,
) -> Option<KvCommand> {
    let holds = |key: &Bytes, zset: bool| match keyspace.live(key, now).map(|e| e.value()) {
        None => true,
        Some(ValueRef::List(_)) => !zset,
        Some(ValueRef::ZSet(_)) => zset,
        Some(_) => false,
    };
    match pop {
        KvCommand::LMPop { keys, end, count } => {
            let keys: Vec<Bytes> = keys
                .iter()
                .filter(|key| holds(key, false))
                .cloned()
                .collect();
            (!keys.is_empty()).then(|| KvCommand::LMPop {
                keys,
                end: *end,
                count: *count,
            })
        }
        KvCommand::LMove { source, .. } => holds(source, false).then(|| pop.clone()),
        KvCommand::ZSet(zset) if matches!(**zset, ZSetCommand::MPop { .. }) => {
            let ZSetCommand::MPop { keys, max, count } = &**zset else {
                unreachable!("matched above");
            };
            let keys: Vec<Bytes> = keys
                .iter()
                .filter(|key| holds(key, true))
                .cloned()
                .collect();
            (!keys.is_empty()).then(|| {
                KvCommand::ZSet(Box::new(ZSetCommand::MPop {
                    keys,
                    max: *max,
                    count: *count,
                }))
            })
        }
        other => Some(other.clone()),
    }
}

/// Redis 7.0's `getTimeoutFromObjectOrReply` in seconds: a float, turned to
/// milliseconds rounding up; 0 means for ever; one too large to hold turns
/// negative there, so it is refused as negative here too.
pub(crate) fn parse_timeout(arg: &[u8]) -> Result<Timeout, Reply> {
    let seconds =
        parse_f64(arg).ok_or_else(|| Reply::error("ERR timeout is not a float or out of range"))?;
    let millis = (seconds * 1000.0).ceil();
    // `i64::MAX as f64` rounds up to 2^63, which itself no longer fits;
    // `parse_f64` never gives NaN.
    if millis >= i64::MAX as f64 || millis < 0.0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    // -0.0 and 0.0: for ever.
    if millis == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(millis as u64)))
}

/// The reply of a try of `kind`, from its wrapped pop's reply: `BLPOP`,
/// `BRPOP` answer `[key, element]` where `LMPOP` answers `[key,
/// [element]]`; `BZPOPMIN`/`MAX` answer `[key, member, score]` where
/// `ZMPOP` answers `[key, [[member, score]]]`. The others, and nil and
/// errors, are as they are.
pub(crate) fn reshape(kind: BlockingKind, reply: Reply) -> Reply {
    let flatten = matches!(
        kind,
        BlockingKind::BLPop | BlockingKind::BRPop | BlockingKind::BZPopMin | BlockingKind::BZPopMax
    );
    if !flatten {
        return reply;
    }
    let Reply::Array(mut parts) = reply else {
        return reply;
    };
    let (Some(Reply::Array(mut popped)), Some(key)) = (parts.pop(), parts.pop()) else {
        return Reply::error("ERR internal error: bad pop reply");
    };
    if popped.len() != 1 || !parts.is_empty() {
        return Reply::error("ERR internal error: bad pop reply");
    }
    let mut reply = vec![key];
    match popped.pop() {
        Some(Reply::Array(pair))
            if kind == BlockingKind::BZPopMin || kind == BlockingKind::BZPopMax =>
        {
            reply.extend(pair)
        }
        Some(element) => reply.push(element),
        None => return Reply::error("ERR internal error: bad pop reply"),
    }
    Reply::Array(reply)
}

/// How `CLIENT UNBLOCK` ends a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unblock {
    /// As if the timeout had come: nil.
    Timeout,
    /// With `-UNBLOCKED`.
    Error,
}

/// This node's blocked clients: waiters by key, woken by the apply path.
/// A cheap handle (clones share the registry); the store's keyspace holds
/// one ([`crate::Store::blocked_clients`]) and the RESP server another
/// ([`crate::ServerConfig::blocked_clients`]): give the server the store's.
#[derive(Clone, Default)]
pub struct BlockedClients {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for BlockedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockedClients")
            .field("waiters", &self.registry.waiters.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
struct Registry {
    /// Registered waiters: what the apply path's fast check reads.
    waiters: AtomicUsize,
    /// Clients waiting now (INFO `blocked_clients`).
    blocked: AtomicUsize,
    /// Wake units outstanding: what `settle`'s fast check reads.
    units: AtomicUsize,
    /// Set while the store applies a try: the wakes it causes inherit.
    applying_try: AtomicBool,
    state: Mutex<State>,
    /// Notified whenever a unit is released.
    settled: Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Counts `touched` calls: when a key was last touched, and when a
    /// waiter's last try began, on one scale.
    epoch: u64,
    /// The last generation handed out.
    generation: u64,
    by_key: HashMap<Bytes, KeyQueue>,
    waiters: HashMap<u64, WaiterState>,
    /// Outstanding units per generation.
    units: BTreeMap<u64, usize>,
}

#[derive(Default)]
struct KeyQueue {
    /// Waiter ids, in the order they blocked.
    order: VecDeque<u64>,
    /// `epoch` of the last touch.
    touched_at: u64,
}

struct WaiterState {
    /// The connection's id (`CLIENT UNBLOCK`).
    client: u64,
    /// Its keys, each once.
    keys: Vec<Bytes>,
    notify: Arc<Notify>,
    /// A try is in flight.
    trying: bool,
    /// Woken since the last try began: try again.
    again: bool,
    /// `epoch` when the last try began.
    tried_at: u64,
    /// The generation of the wake unit it holds.
    unit: Option<u64>,
    /// Counted in `blocked` (its first try answered nil).
    blocked: bool,
    unblock: Option<Unblock>,
}

/// What a waiter does after a try.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterTry {
    /// The try popped (or failed): reply with it.
    Served,
    /// Woken while the try was in flight: try again now.
    Again,
    /// Wait for a wake or the timeout.
    Wait,
    /// `CLIENT UNBLOCK` came: reply so.
    Unblocked(Unblock),
}

impl BlockedClients {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state behind
        // (every change below is completed before any call that can fail).
        self.registry
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Clients blocked on this node now (INFO `blocked_clients`).
    pub fn blocked(&self) -> usize {
        self.registry.blocked.load(Ordering::Relaxed)
    }

    /// Registered waiters (blocked, or on their first try).
    pub fn waiters(&self) -> usize {
        self.registry.waiters.load(Ordering::Acquire)
    }

    /// The apply path: `key` got a value (or a changed one). Wakes the
    /// first waiter of `key`. One atomic load when nobody waits.
    pub(crate) fn touched(&self, key: &[u8]) {
        if self.registry.waiters.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut state = self.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        let Some(queue) = state.by_key.get_mut(key) else {
            return;
        };
        queue.touched_at = epoch;
        let Some(&head) = queue.order.front() else {
            return;
        };
        let inherit = if self.registry.applying_try.load(Ordering::Relaxed) {
            state.units.keys().next().copied()
        } else {
            None
        };
        self.wake(&mut state, head, inherit);
    }

    /// Marks the apply of a try (`true`) and its end (`false`): the wakes
    /// in between continue the chain of the wakes outstanding.
    pub(crate) fn applying_try(&self, applying: bool) {
        if applying || self.registry.applying_try.load(Ordering::Relaxed) {
            self.registry
                .applying_try
                .store(applying, Ordering::Relaxed);
        }
    }

    /// Wakes every waiter (a snapshot replaced the whole state).
    pub(crate) fn wake_all(&self) {
        if self.registry.waiters.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut state = self.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        for queue in state.by_key.values_mut() {
            queue.touched_at = epoch;
        }
        let ids: Vec<u64> = state.waiters.keys().copied().collect();
        for id in ids {
            self.wake(&mut state, id, None);
        }
    }

    fn wake(&self, state: &mut State, id: u64, inherit: Option<u64>) {
        let needs_unit = state.waiters.get(&id).is_some_and(|w| w.unit.is_none());
        let unit = needs_unit.then(|| {
            let generation = inherit.unwrap_or_else(|| {
                state.generation += 1;
                state.generation
            });
            *state.units.entry(generation).or_default() += 1;
            self.registry.units.fetch_add(1, Ordering::AcqRel);
            generation
        });
        let Some(waiter) = state.waiters.get_mut(&id) else {
            return;
        };
        waiter.again = true;
        if unit.is_some() {
            waiter.unit = unit;
        }
        if !waiter.trying {
            waiter.notify.notify_one();
        }
    }

    fn release_unit(&self, state: &mut State, generation: u64) {
        if let Some(count) = state.units.get_mut(&generation) {
            *count -= 1;
            if *count == 0 {
                state.units.remove(&generation);
            }
            self.registry.units.fetch_sub(1, Ordering::AcqRel);
        } else {
            debug_assert!(false, "released a unit not held");
        }
        self.registry.settled.notify_waiters();
    }

    /// Registers connection `client` as waiting for `keys`, before its
    /// first try is proposed (see the module docs). The waiter leaves when
    /// the returned guard is dropped.
    pub(crate) fn register(&self, client: u64, keys: &[&Bytes]) -> Waiter {
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(keys.len());
        let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
        for key in keys {
            if seen.insert(key.as_ref()) {
                unique.push((*key).clone());
            }
        }
        let keys = unique;
        let notify = Arc::new(Notify::new());
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        for key in &keys {
            state
                .by_key
                .entry(key.clone())
                .or_default()
                .order
                .push_back(id);
        }
        let tried_at = state.epoch;
        state.waiters.insert(
            id,
            WaiterState {
                client,
                keys,
                notify: Arc::clone(&notify),
                trying: false,
                again: false,
                tried_at,
                unit: None,
                blocked: false,
                unblock: None,
            },
        );
        self.registry.waiters.fetch_add(1, Ordering::AcqRel);
        Waiter {
            clients: self.clone(),
            id,
            notify,
        }
    }

    /// `CLIENT UNBLOCK`: ends the wait of connection `client` if it is
    /// blocked; whether it was. A try in flight still decides: if it pops,
    /// the client gets the element.
    pub(crate) fn unblock(&self, client: u64, how: Unblock) -> bool {
        let mut state = self.lock();
        let Some(waiter) = state
            .waiters
            .values_mut()
            .find(|w| w.client == client && w.blocked)
        else {
            return false;
        };
        waiter.unblock = Some(how);
        if !waiter.trying {
            waiter.notify.notify_one();
        }
        true
    }

    /// Waits until the wakes outstanding now, and those they cause, are
    /// settled, or [`SETTLE_WAIT_MAX`] passed. For a connection that wrote,
    /// before it answers (see the module docs).
    pub(crate) async fn settle(&self) {
        if self.registry.units.load(Ordering::Acquire) == 0 {
            return;
        }
        let ticket = self.lock().generation;
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT_MAX;
        loop {
            let notified = self.registry.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let oldest = self.lock().units.keys().next().copied();
            if oldest.is_none_or(|oldest| oldest > ticket) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Removes waiter `id`, handing its wakes on (see the module docs).
    fn leave(&self, id: u64) {
        let mut state = self.lock();
        let Some(waiter) = state.waiters.remove(&id) else {
            return;
        };
        for key in &waiter.keys {
            let Some(queue) = state.by_key.get_mut(key) else {
                debug_assert!(false, "a waiter's key has no queue");
                continue;
            };
            let was_head = queue.order.front() == Some(&id);
            if let Some(at) = queue.order.iter().position(|other| *other == id) {
                queue.order.remove(at);
            }
            let touched_at = queue.touched_at;
            let next = queue.order.front().copied();
            if queue.order.is_empty() {
                state.by_key.remove(key);
            }
            if let (true, Some(next)) = (was_head, next) {
                let missed = state
                    .waiters
                    .get(&next)
                    .is_some_and(|w| touched_at > w.tried_at);
                if missed {
                    let inherit = waiter.unit.or_else(|| state.units.keys().next().copied());
                    self.wake(&mut state, next, inherit);
                }
            }
        }
        if let Some(generation) = waiter.unit {
            self.release_unit(&mut state, generation);
        }
        if waiter.blocked {
            self.registry.blocked.fetch_sub(1, Ordering::Relaxed);
        }
        self.registry.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One registered waiter; leaves the registry when dropped.
pub(crate) struct Waiter {
    clients: BlockedClients,
    id: u64,
    notify: Arc<Notify>,
}

impl Waiter {
    /// A try is about to be proposed.
    pub(crate) fn begin_try(&self) {
        let mut state = self.clients.lock();
        let epoch = state.epoch;
        if let Some(waiter) = state.waiters.get_mut(&self.id) {
            waiter.trying = true;
            waiter.again = false;
            waiter.tried_at = epoch;
        }
    }

    /// The try answered; `nil`: it popped nothing.
    pub(crate) fn end_try(&self, nil: bool) -> AfterTry {
        let mut state = self.clients.lock();
        let Some(waiter) = state.waiters.get_mut(&self.id) else {
            return AfterTry::Served;
        };
        waiter.trying = false;
        if !nil {
            return AfterTry::Served;
        }
        if let Some(how) = waiter.unblock.take() {
            return AfterTry::Unblocked(how);
        }
        if waiter.again {
            return AfterTry::Again;
        }
        if !waiter.blocked {
            waiter.blocked = true;
            self.clients
                .registry
                .blocked
                .fetch_add(1, Ordering::Relaxed);
        }
        let keys = waiter.keys.clone();
        if let Some(generation) = waiter.unit.take() {
            self.clients.release_unit(&mut state, generation);
        }
        // Found nothing: the wake goes on to the next waiter of each key
        // written since that one last tried, which may want what this one
        // could not use (another type). Else only the head is ever woken,
        // and a head that cannot use a key's value starves those behind it
        // (review: BZPOPMIN ahead of BLPOP). Each hand-on moves down the
        // queue, so the chain ends.
        for key in &keys {
            let Some(queue) = state.by_key.get(key) else {
                continue;
            };
            let touched_at = queue.touched_at;
            let next = queue
                .order
                .iter()
                .position(|other| *other == self.id)
                .and_then(|at| queue.order.get(at + 1))
                .copied();
            let missed = next
                .and_then(|next| state.waiters.get(&next))
                .is_some_and(|w| touched_at > w.tried_at);
            if let (true, Some(next)) = (missed, next) {
                let inherit = state.units.keys().next().copied();
                self.clients.wake(&mut state, next, inherit);
            }
        }
        AfterTry::Wait
    }

    /// Woken (or unblocked): `Some` when `CLIENT UNBLOCK` ended the wait.
    pub(crate) async fn woken(&self) -> Option<Unblock> {
        self.notify.notified().await;
        self.take_unblock()
    }

    /// [`Waiter::woken`] without waiting: `None` if no wake is pending.
    /// A wake that came while nobody waited is kept by the `Notify` as a
    /// permit, which one poll of a fresh `notified()` takes.
    pub(crate) fn try_woken(&self) -> Option<Option<Unblock>> {
        let notified = std::pin::pin!(self.notify.notified());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(notified, &mut context) {
            std::task::Poll::Ready(()) => Some(self.take_unblock()),
            std::task::Poll::Pending => None,
        }
    }

    fn take_unblock(&self) -> Option<Unblock> {
        let mut state = self.clients.lock();
        state
            .waiters
            .get_mut(&self.id)
            .and_then(|waiter| waiter.unblock.take())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.clients.leave(self.id);
    }
}

/// The keys a blocking pop takes from: BLMOVE's and BRPOPLPUSH's source,
/// every key of the others.
fn source_keys(command: &KvCommand) -> Vec<&Bytes> {
    let keys = command.keys();
    match command {
        KvCommand::Blocking {
            kind: BlockingKind::BLMove | BlockingKind::BRPopLPush,
            ..
        } => keys.into_iter().take(1).collect(),
        _ => keys,
    }
}

/// One blocking pop of one client, as a sans-I/O state machine: it decides
/// every step of the loop in the module docs (register, try, wait, try
/// again, reply), and its driver only moves commands and time. The RESP
/// server drives it with `block`; the simulator drives the same code
/// with simulated time and its own proposals.
pub struct BlockingPop {
    waiter: Waiter,
    /// The try, as proposed next.
    command: KvCommand,
    /// The nil the last try answered (the reply on a timeout).
    nil: Reply,
}

/// What the driver of a [`BlockingPop`] does next.
#[derive(Debug)]
pub enum PopStep {
    /// Propose this try through the log, then give its reply to
    /// [`BlockingPop::answered`].
    Try(KvCommand),
    /// Wait for a wake ([`BlockingPop::wake`] or [`BlockingPop::poll_wake`])
    /// or the timeout ([`BlockingPop::timed_out`]); the only state in which
    /// the timeout is looked at.
    Wait,
    /// Done: the client's reply.
    Reply(Reply),
}

impl BlockingPop {
    /// Registers connection `client` of this node as waiting for the keys
    /// `command` (a [`KvCommand::Blocking`]) pops from, before its first try
    /// (see "no lost wake-up"), and returns the first try.
    pub fn start(
        clients: &BlockedClients,
        client: u64,
        command: KvCommand,
    ) -> (BlockingPop, KvCommand) {
        // Only the keys it pops from: a write to BLMOVE's destination cannot
        // serve it, and waking it there would hold back the waiters that can.
        let waiter = clients.register(client, &source_keys(&command));
        waiter.begin_try();
        let pop = BlockingPop {
            waiter,
            command: command.clone(),
            nil: Reply::NullArray,
        };
        (pop, command)
    }

    /// The last try answered `reply`; `deadline_passed`: the client's
    /// timeout ran out while it was in flight (a try in flight is always
    /// waited for, so a popped element is never lost to a timeout).
    pub fn answered(&mut self, reply: Reply, deadline_passed: bool) -> PopStep {
        let nil = matches!(reply, Reply::Null | Reply::NullArray);
        match self.waiter.end_try(nil) {
            AfterTry::Served => PopStep::Reply(reply),
            AfterTry::Unblocked(how) => PopStep::Reply(unblocked_reply(how, reply)),
            // Woken while the try was in flight: try again, unless the
            // timeout ran out meanwhile (it popped nothing: nil).
            AfterTry::Again if deadline_passed => PopStep::Reply(reply),
            AfterTry::Again => {
                self.nil = reply;
                PopStep::Try(self.next_try())
            }
            AfterTry::Wait => {
                // Blocked now: later tries pass over keys of another type.
                self.mark_blocked();
                self.nil = reply;
                PopStep::Wait
            }
        }
    }

    /// Woken while waiting: the next try, or the reply `CLIENT UNBLOCK` asked
    /// for.
    pub async fn wake(&mut self) -> PopStep {
        let unblock = self.waiter.woken().await;
        self.after_wake(unblock)
    }

    /// [`BlockingPop::wake`] without waiting: `None` if not woken yet.
    pub fn poll_wake(&mut self) -> Option<PopStep> {
        let unblock = self.waiter.try_woken()?;
        Some(self.after_wake(unblock))
    }

    /// The timeout ran out while waiting: the nil of the last try.
    pub fn timed_out(self) -> Reply {
        self.nil
    }

    fn after_wake(&mut self, unblock: Option<Unblock>) -> PopStep {
        match unblock {
            Some(how) => PopStep::Reply(unblocked_reply(how, self.nil.clone())),
            None => PopStep::Try(self.next_try()),
        }
    }

    fn mark_blocked(&mut self) {
        if let KvCommand::Blocking { blocked, .. } = &mut self.command {
            *blocked = true;
        }
    }

    fn next_try(&mut self) -> KvCommand {
        self.mark_blocked();
        self.waiter.begin_try();
        self.command.clone()
    }
}

/// Runs a blocking pop for connection `client` (see the module docs and
/// [`BlockingPop`], which decides each step): `propose` sends one try
/// through the log and returns its reply.
pub(crate) async fn block<F, Fut>(
    clients: &BlockedClients,
    client: u64,
    command: KvCommand,
    timeout: Timeout,
    mut propose: F,
) -> Reply
where
    F: FnMut(KvCommand) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    // A deadline past what the clock can hold (a timeout of ~292 million
    // years) is no deadline.
    let deadline = timeout.and_then(|timeout| tokio::time::Instant::now().checked_add(timeout));
    let (mut pop, mut command) = BlockingPop::start(clients, client, command);
    loop {
        let reply = propose(command).await;
        let passed = deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline);
        let mut step = pop.answered(reply, passed);
        if let PopStep::Wait = step {
            // No try is in flight here: the only place the timeout is
            // looked at.
            step = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, pop.wake()).await {
                    Ok(step) => step,
                    Err(_) => return pop.timed_out(),
                },
                None => pop.wake().await,
            };
        }
        match step {
            PopStep::Try(next) => command = next,
            PopStep::Reply(reply) => return reply,
            PopStep::Wait => {
                debug_assert!(false, "a wake never answers Wait");
                return pop.timed_out();
            }
        }
    }
}

/// Runs `run` (a batch holding a blocking command) while reading what the
/// client sends meanwhile into `input` (at most `room` bytes: the query
/// buffer's bound), as Redis keeps reading a blocked client. `None` when
/// the client closed the connection: `run` is dropped, and with it the
/// waiter's registration.
///
/// `pushes`: a subscribed RESP3 connection's mailbox and protocol. The
/// messages published while it waits are written as they come, as Redis
/// writes them to a blocked client (before, they waited for the block to
/// end: for ever with timeout 0). The batch is the blocking command alone
/// (the server's parse loop starts one for it), so nothing of its reply is
/// written yet, and a message never lands inside a reply. The messages
/// queued when the run ends go out before its reply (Redis has those
/// published before the serving push in the output buffer ahead of it;
/// one delivered while the last try is being answered may go ahead too),
/// the later ones after it, from the connection loop.
pub(crate) async fn until_closed<F, S>(
    run: F,
    stream: &mut S,
    input: &mut bytes::BytesMut,
    mut room: usize,
    pushes: Option<(&crate::pubsub::Pushes, synod_resp::Protocol)>,
) -> std::io::Result<WhileBlocked<F::Output>>
where
    F: std::future::Future,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use bytes::BufMut;
    use tokio::io::AsyncReadExt;
    tokio::pin!(run);
    loop {
        if room == 0 {
            // Reading no more would hide a close for as long as it blocks
            // (timeout 0: for ever), with its registration left behind:
            // a client that fills its query buffer while blocked is
            // closed, as one that fills it otherwise (review).
            return Ok(WhileBlocked::Overflow);
        }
        let mut limited = (&mut *input).limit(room);
        let ready = async {
            match pushes {
                Some((pushes, _)) => pushes.ready().await,
                None => std::future::pending().await,
            }
        };
        // The run first: a reply ready goes before messages ready with it.
        let finished = tokio::select! {
            biased;
            output = &mut run => Some(output),
            read = stream.read_buf(&mut limited) => {
                let read = read?;
                if read == 0 {
                    return Ok(WhileBlocked::Closed);
                }
                room = room.saturating_sub(read);
                continue;
            }
            () = ready => None,
        };
        let Some((pushes, protocol)) = pushes else {
            match finished {
                Some(output) => return Ok(WhileBlocked::Done(output)),
                None => continue,
            }
        };
        // What is queued now goes before the reply (or is written while
        // the run goes on).
        let taken = match pushes.take() {
            Ok(taken) => taken,
            Err(why) => return Ok(WhileBlocked::PubSubOutput(why)),
        };
        let mut finished = finished.map(|output| (output, None));
        {
            // The run goes on while the messages are written, and so do
            // the reads: a client slow to read them (or reading nothing,
            // below the limits) must not hold its blocked command still
            // (its wake would go untried, and every writing connection of
            // the node waits for the wakes its writes caused,
            // `BlockedClients::settle`: review of 372e9ec), nor hide its
            // close (its command would go on popping for nobody: review of
            // caf46e9).
            let (mut reader, mut writer) = tokio::io::split(&mut *stream);
            let write = pushes.write(&mut writer, protocol, taken);
            tokio::pin!(write);
            loop {
                let mut limited = (&mut *input).limit(room);
                tokio::select! {
                    biased;
                    written = &mut write => {
                        if let Err(why) = written? {
                            return Ok(WhileBlocked::PubSubOutput(why));
                        }
                        break;
                    }
                    output = &mut run, if finished.is_none() => {
                        // The messages queued by now go before its reply.
                        match pushes.take() {
                            Ok(taken) => finished = Some((output, Some(taken))),
                            Err(why) => return Ok(WhileBlocked::PubSubOutput(why)),
                        }
                    }
                    read = reader.read_buf(&mut limited), if finished.is_none() => {
                        let read = read?;
                        if read == 0 {
                            return Ok(WhileBlocked::Closed);
                        }
                        room = room.saturating_sub(read);
                        if room == 0 {
                            return Ok(WhileBlocked::Overflow);
                        }
                    }
                }
            }
        }
        let Some((output, later)) = finished else {
            continue;
        };
        if let Some(taken) = later {
            if let Err(why) = pushes.write(stream, protocol, taken).await? {
                return Ok(WhileBlocked::PubSubOutput(why));
            }
        }
        return Ok(WhileBlocked::Done(output));
    }
}

/// How [`until_closed`] ended.
pub(crate) enum WhileBlocked<T> {
    /// The run ended: its output.
    Done(T),
    /// The client closed the connection.
    Closed,
    /// The client sent more than its query buffer holds.
    Overflow,
    /// The connection broke its pub/sub output limits while it waited.
    PubSubOutput(String),
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]` (the arguments after `UNBLOCK`):
/// 1 if that connection of this node was blocked, else 0.
pub(crate) fn client_unblock(clients: &BlockedClients, args: &[Bytes]) -> Reply {
    let Some(id) = args.first().and_then(|arg| crate::number::parse_i64(arg)) else {
        return Reply::error("ERR value is not an integer or out of range");
    };
    let how = match args.get(1).map(|arg| arg.to_ascii_lowercase()) {
        None => Unblock::Timeout,
        Some(how) if how == b"timeout" => Unblock::Timeout,
        Some(how) if how == b"error" => Unblock::Error,
        Some(_) => return Reply::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    let unblocked = u64::try_from(id).is_ok_and(|id| clients.unblock(id, how));
    Reply::Integer(i64::from(unblocked))
}

fn unblocked_reply(how: Unblock, nil: Reply) -> Reply {
    match how {
        Unblock::Timeout => nil,
        Unblock::Error => Reply::error(UNBLOCKED_ERROR),
    }
}

#[cfg(test)]
#[path = "blocking_tests.rs"]
mod tests;
