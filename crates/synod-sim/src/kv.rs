//! The simulator's state machine: the `synod` server's key-value store
//! (`synod_kv::Store`) with exactly-once application of client commands
//! (client id + sequence number).

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use synod::{ApplyContext, StateMachine};
use synod_check::{Op, Outcome};
use synod_core::InstanceId;
use synod_kv::watch::{Stamp, WatchedKey};
use synod_kv::{SetCondition, SetExpiry, Store};
use synod_resp::Reply;
use synod_storage::fs::{Fs, OpenMode};

/// A client command as proposed: who, which attempt-independent sequence, what.
#[derive(Clone, Debug, PartialEq)]
pub struct KvCommand {
    /// The client.
    pub client: u64,
    /// The client's sequence number; a retry reuses it.
    pub seq: u64,
    /// The operation.
    pub op: Op,
    /// The TTL a `Put` or `PutTtl` sets (`SET key value PX ttl_ms`), 0 for
    /// none. A `Put` may carry a TTL too, one longer than any run
    /// ([`LONG_TTL_MS`]); a `PutTtl`'s is short enough to run out.
    pub ttl_ms: u32,
    /// Which attempt of the client carries it: each attempt goes to one
    /// node as one request, so the same attempt taking effect twice means
    /// the node's runtime applied one request twice (its session table
    /// failed). Not part of the client's exactly-once rule.
    pub attempt: u32,
    /// An `Op::Get` that is a `WATCH` read: answered with synod-kv's token
    /// for the key as well as its value ([`SimAnswer::Watched`]).
    pub watch_read: bool,
    /// For an `Op::WatchedTxn`: what its `WATCH` read of each watched key
    /// returned (synod-kv's tokens, in the order of `watched`); the
    /// transaction sends them to be checked at apply time, as the server's
    /// `EXEC` does.
    pub tokens: Vec<WatchedKey>,
    /// For an `Op::Pop`: the try to propose, as synod-kv's
    /// [`synod_kv::BlockingPop`] gave it (a `BLPOP`'s
    /// `KvCommand::Blocking`), so the log carries what the server's would.
    pub blocking: Option<synod_kv::KvCommand>,
}

const KIND_GET: u8 = 1;
const KIND_PUT: u8 = 2;
const KIND_APPEND: u8 = 3;
const KIND_PUT_TTL: u8 = 4;
/// A `WATCH` read: laid out as a `GET`.
const KIND_WATCH_READ: u8 = 5;
/// A watched transaction: the watched keys with their values and tokens,
/// then the operations, each as a kind, a key and a value.
const KIND_WATCHED_TXN: u8 = 6;
/// An `RPUSH` of one element.
const KIND_PUSH: u8 = 7;
/// One try of a blocking pop: the key, then synod-kv's encoding of the try.
const KIND_POP: u8 = 8;

/// Encodes a command. Only the operations the simulator's clients issue are
/// supported: single-key GET, PUT, APPEND and SET .. PX, and watched
/// transactions of GET, PUT and APPEND.
pub fn encode(command: &KvCommand) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    buf.put_u64_le(command.client);
    buf.put_u64_le(command.seq);
    buf.put_u32_le(command.attempt);
    if let Op::WatchedTxn { watched, ops } = &command.op {
        buf.put_u8(KIND_WATCHED_TXN);
        buf.put_u32_le(command.ttl_ms);
        buf.put_u8(watched.len() as u8);
        for ((key, value), token) in watched.iter().zip(&command.tokens) {
            put_short(&mut buf, key);
            buf.put_u8(u8::from(value.is_some()));
            put_short(&mut buf, value.as_deref().unwrap_or_default());
            buf.put_u8(u8::from(token.live));
            buf.put_u64_le(token.stamp.instance);
            buf.put_u64_le(token.stamp.sequence);
        }
        buf.put_u8(ops.len() as u8);
        for op in ops {
            let (kind, key, value) = single_parts(op, false);
            buf.put_u8(kind);
            put_short(&mut buf, key);
            put_short(&mut buf, value);
        }
    } else if let Op::Pop { key } = &command.op {
        buf.put_u8(KIND_POP);
        buf.put_u32_le(command.ttl_ms);
        put_short(&mut buf, key);
        let try_bytes = command
            .blocking
            .as_ref()
            .map(synod_kv::KvCommand::encode)
            .unwrap_or_default();
        put_short(&mut buf, &try_bytes);
    } else {
        let (kind, key, value) = single_parts(&command.op, command.watch_read);
        buf.put_u8(kind);
        buf.put_u32_le(command.ttl_ms);
        put_short(&mut buf, key);
        put_short(&mut buf, value);
    }
    buf.freeze()
}

/// A single-key operation's kind, key and value.
fn single_parts(op: &Op, watch_read: bool) -> (u8, &[u8], &[u8]) {
    match op {
        Op::Get { key } if watch_read => (KIND_WATCH_READ, key, &[]),
        Op::Get { key } => (KIND_GET, key, &[]),
        Op::Put { key, value } => (KIND_PUT, key, value),
        Op::Append { key, value } => (KIND_APPEND, key, value),
        Op::PutTtl { key, value } => (KIND_PUT_TTL, key, value),
        Op::Push { key, value } => (KIND_PUSH, key, value),
        other => unreachable!("the simulator does not issue {other:?}"),
    }
}

/// The single-key operation of `kind`; `None` for another kind.
fn single_op(kind: u8, key: Vec<u8>, value: Vec<u8>) -> Option<Op> {
    Some(match kind {
        KIND_GET | KIND_WATCH_READ => Op::Get { key },
        KIND_PUT => Op::Put { key, value },
        KIND_APPEND => Op::Append { key, value },
        KIND_PUT_TTL => Op::PutTtl { key, value },
        KIND_PUSH => Op::Push { key, value },
        _ => return None,
    })
}

/// Writes bytes after their length as a `u16` (keys and values of the
/// simulator's clients are short).
fn put_short(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u16_le(bytes.len() as u16);
    buf.put_slice(bytes);
}

fn get_short(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let len = u16::from_le_bytes(take(rest, 2)?.try_into().ok()?) as usize;
    Some(take(rest, len)?.to_vec())
}

/// An expiry sweep (`KvCommand::ExpireSweep`), as the server's leader
/// proposes it while a key is past its expiry by its clock (see
/// `World::maybe_sweep`): not a client's command, so it has a payload of
/// its own, which `decode` does not take for one.
pub const SWEEP: &[u8] = b"synod-sim: expire sweep";

/// Decodes a command; `None` when the bytes are not one (a validity violation).
pub fn decode(bytes: &[u8]) -> Option<KvCommand> {
    let mut rest = bytes;
    let client = get_u64(&mut rest)?;
    let seq = get_u64(&mut rest)?;
    let attempt = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
    let kind = take(&mut rest, 1)?[0];
    let ttl_ms = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
    let mut tokens = Vec::new();
    let mut blocking = None;
    let op = if kind == KIND_POP {
        let key = get_short(&mut rest)?;
        let try_bytes = get_short(&mut rest)?;
        let try_command = synod_kv::KvCommand::decode(&try_bytes).ok()?;
        if !matches!(try_command, synod_kv::KvCommand::Blocking { .. }) {
            return None;
        }
        blocking = Some(try_command);
        Op::Pop { key }
    } else if kind == KIND_WATCHED_TXN {
        let mut watched = Vec::new();
        for _ in 0..take(&mut rest, 1)?[0] {
            let key = get_short(&mut rest)?;
            let has_value = take(&mut rest, 1)?[0] != 0;
            let value = get_short(&mut rest)?;
            let live = take(&mut rest, 1)?[0] != 0;
            let stamp = Stamp {
                instance: get_u64(&mut rest)?,
                sequence: get_u64(&mut rest)?,
            };
            tokens.push(WatchedKey {
                key: Bytes::copy_from_slice(&key),
                live,
                stamp,
            });
            watched.push((key, has_value.then_some(value)));
        }
        let mut ops = Vec::new();
        for _ in 0..take(&mut rest, 1)?[0] {
            let kind = take(&mut rest, 1)?[0];
            let key = get_short(&mut rest)?;
            let value = get_short(&mut rest)?;
            ops.push(single_op(kind, key, value).filter(|_| kind != KIND_WATCH_READ)?);
        }
        Op::WatchedTxn { watched, ops }
    } else {
        let key = get_short(&mut rest)?;
        let value = get_short(&mut rest)?;
        single_op(kind, key, value)?
    };
    if !rest.is_empty() {
        return None;
    }
    Some(KvCommand {
        client,
        seq,
        op,
        ttl_ms,
        attempt,
        watch_read: kind == KIND_WATCH_READ,
        tokens,
        blocking,
    })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// A TTL long enough never to run out during a run: it puts real expiry
/// state into synod-kv (and so into its snapshots and the state digest)
/// without changing what the linearizability model expects of the key.
pub const LONG_TTL_MS: u32 = 24 * 3600 * 1000;

/// The context a read out of the log is answered in at `time_ms`: no
/// instance of its own (synod-kv's reads do not look at it).
fn read_context(time_ms: u64) -> ApplyContext {
    ApplyContext {
        instance: InstanceId(0),
        time_ms,
        index: 0,
    }
}

/// The replicated state: the real key-value state machine of the `synod`
/// server (`synod_kv::Store`: its commands, expiry index, snapshot codec),
/// plus the simulator's exactly-once table.
#[derive(Debug, Default)]
pub struct Kv {
    store: Store,
    /// The log clock: the largest proposer stamp applied so far, as the
    /// runtime computes `ApplyContext::time_ms`.
    pub(crate) log_time_ms: u64,
    /// Per client: the last sequence applied and its outcome.
    sessions: BTreeMap<u64, (u64, Outcome)>,
    /// Per (client, seq): how many times it took effect (must never exceed 1).
    effects: BTreeMap<(u64, u64), u32>,
    /// The wrapping sum of `effect_hash` over `effects`, kept as it changes:
    /// the digest covers `effects` through it. The table gains an entry per
    /// command, so encoding it into every digest (every few instances, on
    /// every node) made a seed's run quadratic in its length.
    effects_sum: u64,
    /// Clients whose exactly-once is the runtime's (library client
    /// sessions): their commands are applied as they come, never answered
    /// from `sessions`, so a command the runtime lets through twice shows
    /// in `effects`. Configuration, the same on every replica: not in the
    /// snapshot.
    pub library_clients: std::collections::BTreeSet<u64>,
    /// A running hash of the replies to mixed commands (see `mixed.rs`), in
    /// the order applied: replicas that applied the same prefix gave the
    /// same replies. Kept with the state (its snapshots carry it), so the
    /// digest comparison covers it.
    mixed_replies: u64,
}

impl Kv {
    /// Applies a command stamped `stamp_ms` at `instance`; returns its
    /// outcome, or the remembered outcome when the command was applied before
    /// (a retry chosen twice). Returns `None` for a stale duplicate older than
    /// the client's latest command. `local_clock_ms`, when given, replaces
    /// the log clock: a state machine that reads its own clock (the
    /// `nondeterministic-sm` negative control). With the outcome: whether
    /// the command's key was absent (never set, deleted or expired) when it
    /// took effect. `Err` when synod-kv's reply is not one the operation can
    /// have. `drop_watch`: run a watched transaction without its WATCH check
    /// (the `watch-ignored` negative control).
    pub fn apply(
        &mut self,
        command: &KvCommand,
        instance: u64,
        stamp_ms: u64,
        local_clock_ms: Option<u64>,
        drop_watch: bool,
    ) -> Result<Option<(Outcome, bool)>, String> {
        self.log_time_ms = self.log_time_ms.max(stamp_ms);
        let deduplicate = !self.library_clients.contains(&command.client);
        if let Some((last_seq, outcome)) =
            self.sessions.get(&command.client).filter(|_| deduplicate)
        {
            if command.seq == *last_seq {
                return Ok(Some((outcome.clone(), false)));
            }
            if command.seq < *last_seq {
                return Ok(None);
            }
        }
        let ctx = ApplyContext {
            instance: InstanceId(instance),
            time_ms: local_clock_ms.unwrap_or(self.log_time_ms),
            index: 0,
        };
        let kv_command = to_store_command(command, drop_watch)?;
        let absent = command.op.key().is_some_and(|key| {
            let keys = vec![Bytes::copy_from_slice(key)];
            let exists = synod_kv::KvCommand::Exists { keys };
            self.store.query_command(&exists, &ctx) == Reply::Integer(0)
        });
        // Through the bytes, as a node applies a chosen value: the command's
        // encoding, `apply_batch` (zero-copy decoding of short string
        // writes, `KvCommand::decode_shared`) and the reply's encoding.
        let encoded = kv_command.encode();
        let batch = [synod::BatchCommand {
            command: &encoded,
            ctx,
        }];
        let output = self.store.apply_batch(&batch).pop().unwrap_or_default();
        let reply = synod_kv::decode_reply(&output)
            .map_err(|error| format!("synod-kv's output did not decode: {error}"))?;
        let outcome = match &command.op {
            Op::WatchedTxn { ops, .. } => txn_outcome(ops, reply, !drop_watch)?,
            single => to_outcome(single, reply)?,
        };
        let n = self
            .effects
            .entry((command.client, command.seq))
            .or_default();
        let before = effect_hash(command.client, command.seq, *n);
        *n += 1;
        self.effects_sum = self
            .effects_sum
            .wrapping_sub(before)
            .wrapping_add(effect_hash(command.client, command.seq, *n));
        if deduplicate {
            self.sessions
                .insert(command.client, (command.seq, outcome.clone()));
        }
        Ok(Some((outcome, absent)))
    }

    /// Applies a mixed command (synod-kv's encoding of it, see `mixed.rs`)
    /// stamped `stamp_ms`, at its place `index` in the value of `instance`,
    /// as the server's apply path does; the reply goes into
    /// `mixed_replies`. `local_clock_ms` as for [`Kv::apply`]. `Err` when the
    /// reply does not decode.
    pub fn apply_mixed(
        &mut self,
        command: &Bytes,
        instance: u64,
        stamp_ms: u64,
        index: u32,
        local_clock_ms: Option<u64>,
    ) -> Result<(), String> {
        self.log_time_ms = self.log_time_ms.max(stamp_ms);
        let ctx = ApplyContext {
            instance: InstanceId(instance),
            time_ms: local_clock_ms.unwrap_or(self.log_time_ms),
            index,
        };
        let batch = [synod::BatchCommand { command, ctx }];
        let output = self.store.apply_batch(&batch).pop().unwrap_or_default();
        synod_kv::decode_reply(&output)
            .map_err(|error| format!("a mixed command's output did not decode: {error}"))?;
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        hash.update(&self.mixed_replies.to_le_bytes());
        hash.update(&output);
        self.mixed_replies = hash.digest();
        Ok(())
    }

    /// Reads a key without the log, as a node serves a read by read index
    /// (or, wrongly, a stale read): synod-kv's read path at `time_ms`.
    pub fn read(&self, key: &[u8], time_ms: u64) -> Result<Option<Vec<u8>>, String> {
        let ctx = read_context(time_ms);
        let get = synod_kv::KvCommand::Get {
            key: Bytes::copy_from_slice(key),
        };
        match self.store.query_command(&get, &ctx) {
            Reply::Bulk(value) => Ok(Some(value.to_vec())),
            Reply::Null => Ok(None),
            other => Err(format!("GET answered {other:?}")),
        }
    }

    /// A WATCH read of `key` (synod-kv's read path at `time_ms`, as the
    /// server answers `WATCH`), with the key's value in the same state.
    pub fn watch(&self, key: &[u8], time_ms: u64) -> Result<(Option<Vec<u8>>, WatchedKey), String> {
        let ctx = read_context(time_ms);
        let keys = vec![Bytes::copy_from_slice(key)];
        let reply = self
            .store
            .query_command(&synod_kv::KvCommand::Watch { keys: keys.clone() }, &ctx);
        let token = match WatchedKey::read_all(&keys, reply) {
            Ok(mut tokens) if tokens.len() == 1 => tokens.remove(0),
            other => return Err(format!("WATCH answered {other:?}")),
        };
        Ok((self.read(key, time_ms)?, token))
    }

    /// Whether a GET of `key` depends on the time (the key has an expiry),
    /// so that the runtime answers it through the log, at the log clock.
    pub fn read_depends_on_time(&self, key: &[u8]) -> bool {
        let get = synod_kv::KvCommand::Get {
            key: Bytes::copy_from_slice(key),
        };
        self.store.command_depends_on_time(&get)
    }

    /// Whether synod-kv lets a read of `key` (a GET, or for a WATCH read
    /// the WATCH and the GET it is answered with) settle by the clock, as
    /// the server's node asks it: `StateMachine::query_settles_by_clock` on
    /// the encoded command, at the log clock `time_ms`. The simulator's
    /// reads then run the server's predicate, not one of their own.
    pub fn read_settles_by_clock(&self, key: &[u8], watch_read: bool, time_ms: u64) -> bool {
        let ctx = read_context(time_ms);
        let key = Bytes::copy_from_slice(key);
        let settles = |command: synod_kv::KvCommand| {
            StateMachine::query_settles_by_clock(&self.store, &command.encode(), &ctx)
        };
        settles(synod_kv::KvCommand::Get { key: key.clone() })
            && (!watch_read || settles(synod_kv::KvCommand::Watch { keys: vec![key] }))
    }

    /// The log clock: the largest stamp applied so far.
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// How many times the command `(client, seq)` took effect.
    pub fn effects(&self, client: u64, seq: u64) -> u32 {
        self.effects.get(&(client, seq)).copied().unwrap_or(0)
    }

    /// Every command that took effect more than once.
    pub fn duplicated(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.effects
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
    }

    /// A digest of the whole replicated state (synod-kv's snapshot bytes,
    /// which are canonical, the log clock and the exactly-once table):
    /// replicas that applied the same prefix must agree on it, whatever the
    /// log checksum says.
    pub fn digest(&self) -> u64 {
        let mut digest = xxhash_rust::xxh3::Xxh3::new();
        digest.update(&self.encode_tail(false));
        digest.update(&self.effects_sum.to_le_bytes());
        digest.update(&self.store.snapshot());
        digest.digest()
    }

    /// The stamp of ACL user `name`'s rules as this state holds them
    /// (what a node's front end sends a command checked against them with,
    /// see `synod_kv::AsUser`); `None` for no such user.
    pub fn rules_stamp(&self, name: &[u8]) -> Option<u64> {
        let acl = self.store.acl();
        let users = acl.users();
        users.get(name).map(|user| user.rules_stamp())
    }

    /// Checks synod-kv's internal indexes.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.store.check_invariants()
    }
}

/// One entry of `Kv::effects` as the digest counts it (0 for a count of 0,
/// an absent entry, so that inserting one changes the sum only by its count).
fn effect_hash(client: u64, seq: u64, n: u32) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut entry = [0u8; 20];
    entry[..8].copy_from_slice(&client.to_le_bytes());
    entry[8..16].copy_from_slice(&seq.to_le_bytes());
    entry[16..].copy_from_slice(&n.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&entry)
}

/// The synod-kv command for a simulator command: a watched transaction is
/// what the server's `EXEC` sends, the WATCH check of its tokens first
/// (unless `drop_watch`), then its operations.
fn to_store_command(command: &KvCommand, drop_watch: bool) -> Result<synod_kv::KvCommand, String> {
    if let Op::Pop { .. } = &command.op {
        return command
            .blocking
            .clone()
            .ok_or_else(|| "a pop without its try".to_string());
    }
    let Op::WatchedTxn { ops, .. } = &command.op else {
        return single_store_command(&command.op, command.ttl_ms);
    };
    let check = synod_kv::KvCommand::WatchCheck {
        watched: command.tokens.clone(),
    };
    let mut commands = Vec::with_capacity(ops.len() + 1);
    if !drop_watch {
        commands.push(check);
    }
    for op in ops {
        commands.push(single_store_command(op, 0)?);
    }
    Ok(synod_kv::KvCommand::Exec(commands))
}

/// The synod-kv command for a single-key operation.
fn single_store_command(op: &Op, ttl_ms: u32) -> Result<synod_kv::KvCommand, String> {
    let bytes = |v: &[u8]| Bytes::copy_from_slice(v);
    let set = |key: &[u8], value: &[u8]| synod_kv::KvCommand::Set {
        key: bytes(key),
        value: bytes(value),
        condition: SetCondition::Always,
        get: false,
        expiry: if ttl_ms > 0 {
            SetExpiry::After {
                ttl_ms: i64::from(ttl_ms),
            }
        } else {
            SetExpiry::Clear
        },
    };
    Ok(match op {
        Op::Get { key } => synod_kv::KvCommand::Get { key: bytes(key) },
        Op::Put { key, value } | Op::PutTtl { key, value } => set(key, value),
        Op::Append { key, value } => synod_kv::KvCommand::Append {
            key: bytes(key),
            value: bytes(value),
        },
        Op::Push { key, value } => synod_kv::KvCommand::Push {
            key: bytes(key),
            end: synod_kv::ListEnd::Right,
            values: vec![bytes(value)],
        },
        other => return Err(format!("the simulator does not issue {other:?}")),
    })
}

/// What synod-kv's reply to a watched transaction means: nil when a watched
/// key changed (`checked`: the check was sent), else one reply per
/// operation (the store leaves the check's own out).
fn txn_outcome(ops: &[Op], reply: Reply, checked: bool) -> Result<Outcome, String> {
    let replies = match reply {
        Reply::NullArray if checked => return Ok(Outcome::Aborted),
        Reply::Array(replies) if replies.len() == ops.len() => replies,
        other => {
            return Err(format!(
                "synod-kv answered {other:?} to a transaction of {ops:?}"
            ))
        }
    };
    let outcomes = ops
        .iter()
        .zip(replies)
        .map(|(op, reply)| to_outcome(op, reply))
        .collect::<Result<_, _>>()?;
    Ok(Outcome::Txn(outcomes))
}

/// What synod-kv's reply means for the linearizability checker.
fn to_outcome(op: &Op, reply: Reply) -> Result<Outcome, String> {
    match (op, reply) {
        (Op::Get { .. }, Reply::Bulk(value)) => Ok(Outcome::Value(Some(value.to_vec()))),
        (Op::Get { .. }, Reply::Null) => Ok(Outcome::Value(None)),
        (Op::Put { .. } | Op::PutTtl { .. }, Reply::Simple(ok)) if ok == "OK" => Ok(Outcome::Ok),
        (Op::Append { .. } | Op::Push { .. }, Reply::Integer(len)) => Ok(Outcome::Int(len)),
        // A try of `BLPOP`: the key and the element, or nil.
        (Op::Pop { key }, Reply::Array(pair)) => match pair.as_slice() {
            [Reply::Bulk(popped_from), Reply::Bulk(element)] if popped_from[..] == key[..] => {
                Ok(Outcome::Value(Some(element.to_vec())))
            }
            _ => Err(format!("synod-kv answered {pair:?} to a BLPOP of {key:?}")),
        },
        (Op::Pop { .. }, Reply::NullArray) => Ok(Outcome::Value(None)),
        (op, reply) => Err(format!("synod-kv answered {reply:?} to {op:?}")),
    }
}

impl Kv {
    /// Encodes the whole state (the simulator's snapshot format): the log
    /// clock and the exactly-once table (length-prefixed), then synod-kv's
    /// own snapshot, last so that it can be streamed.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        put_bytes(&mut buf, &self.encode_tail(true));
        buf.extend_from_slice(&self.store.snapshot());
        buf.freeze()
    }

    /// What `encode` returns now, encoded later: the store through its
    /// view (`StateMachine::snapshot_view`), the small tables now. The
    /// driver does the same with its session table.
    pub fn encode_later(&self) -> impl FnOnce() -> Bytes + Send + 'static {
        let store = self.store.snapshot_view();
        let store_now = if store.is_none() {
            Some(self.store.snapshot())
        } else {
            None
        };
        let tail = self.encode_tail(true);
        move || {
            let store = match (store, store_now) {
                (Some(job), _) => job(),
                (None, Some(bytes)) => bytes,
                (None, None) => Bytes::new(),
            };
            let mut buf = BytesMut::new();
            put_bytes(&mut buf, &tail);
            buf.extend_from_slice(&store);
            buf.freeze()
        }
    }

    /// What `encode` returns now, written later into a stream: the store
    /// through `StateMachine::snapshot_stream` (the server's path), the
    /// small tables now.
    pub fn encode_stream(&self) -> synod::SnapshotStream {
        let store = self.store.snapshot_stream();
        let store_now = if store.is_none() {
            Some(self.store.snapshot())
        } else {
            None
        };
        let mut tail = BytesMut::new();
        put_bytes(&mut tail, &self.encode_tail(true));
        Box::new(move |out: &mut dyn std::io::Write| {
            out.write_all(&tail)?;
            match (store, store_now) {
                (Some(job), _) => job(out),
                (None, Some(bytes)) => out.write_all(&bytes),
                (None, None) => Ok(()),
            }
        })
    }

    /// The log clock and the exactly-once table, as `encode` writes them;
    /// without `effects` (the digest's own part, which covers the effect
    /// counts through `effects_sum`), only their number.
    fn encode_tail(&self, effects: bool) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u64_le(self.log_time_ms);
        buf.put_u64_le(self.mixed_replies);
        buf.put_u64_le(self.sessions.len() as u64);
        for (client, (seq, outcome)) in &self.sessions {
            buf.put_u64_le(*client);
            buf.put_u64_le(*seq);
            put_outcome(&mut buf, outcome);
        }
        buf.put_u64_le(self.effects.len() as u64);
        if effects {
            for ((client, seq), n) in &self.effects {
                buf.put_u64_le(*client);
                buf.put_u64_le(*seq);
                buf.put_u32_le(*n);
            }
        }
        buf.freeze()
    }

    /// Decodes a snapshot written by `encode` (through synod-kv's restore).
    pub fn decode(bytes: &[u8]) -> Option<Kv> {
        let mut kv = Kv::default();
        kv.restore(bytes)?;
        Some(kv)
    }

    /// Replaces the state with a snapshot written by `encode`, through
    /// synod-kv's own restore of the store, which keeps the node's blocked
    /// clients registered and wakes them all (as the server's does).
    pub fn restore(&mut self, bytes: &[u8]) -> Option<()> {
        let mut rest = bytes;
        let tail = get_bytes(&mut rest)?;
        self.store.restore(rest).ok()?;
        let mut rest = tail.as_slice();
        let log_time_ms = get_u64(&mut rest)?;
        let mixed_replies = get_u64(&mut rest)?;
        let mut sessions = BTreeMap::new();
        for _ in 0..get_u64(&mut rest)? {
            let client = get_u64(&mut rest)?;
            let seq = get_u64(&mut rest)?;
            let outcome = get_outcome(&mut rest)?;
            sessions.insert(client, (seq, outcome));
        }
        let mut effects = BTreeMap::new();
        for _ in 0..get_u64(&mut rest)? {
            let client = get_u64(&mut rest)?;
            let seq = get_u64(&mut rest)?;
            let n = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
            // `apply` never leaves a count of 0, and the digest counts such
            // an entry only in the table's length (`effect_hash`).
            if n == 0 {
                return None;
            }
            effects.insert((client, seq), n);
        }
        if !rest.is_empty() {
            return None;
        }
        self.log_time_ms = log_time_ms;
        self.mixed_replies = mixed_replies;
        self.sessions = sessions;
        self.effects_sum = effects.iter().fold(0u64, |sum, ((client, seq), n)| {
            sum.wrapping_add(effect_hash(*client, *seq, *n))
        });
        self.effects = effects;
        Some(())
    }

    /// The earliest expiry of any key (synod-kv's own count, which the
    /// server's leader reads to decide when to sweep).
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.store.pubsub().next_expiry_ms()
    }

    /// Applies an expiry sweep at `stamp_ms` (it advances the log clock like
    /// any command).
    pub fn sweep(&mut self, instance: u64, stamp_ms: u64) -> Result<(), String> {
        self.log_time_ms = self.log_time_ms.max(stamp_ms);
        let ctx = ApplyContext {
            instance: InstanceId(instance),
            time_ms: self.log_time_ms,
            index: 0,
        };
        match self
            .store
            .apply_command(&synod_kv::KvCommand::ExpireSweep, &ctx)
        {
            Reply::Integer(_) | Reply::Simple(_) => Ok(()),
            other => Err(format!("an expiry sweep answered {other:?}")),
        }
    }

    /// This node's blocked clients (synod-kv's registry, which the store's
    /// apply path wakes).
    pub fn blocked_clients(&self) -> synod_kv::BlockedClients {
        self.store.blocked_clients()
    }

    /// The length of the list at `key` in this node's state (0 if absent).
    pub fn list_len(&self, key: &[u8]) -> usize {
        let ctx = read_context(self.log_time_ms);
        let llen = synod_kv::KvCommand::LLen {
            key: Bytes::copy_from_slice(key),
        };
        match self.store.query_command(&llen, &ctx) {
            Reply::Integer(len) => usize::try_from(len).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Writes an outcome of the simulator's state machine.
fn put_outcome(buf: &mut BytesMut, outcome: &Outcome) {
    match outcome {
        Outcome::Ok => buf.put_u8(0),
        Outcome::Int(n) => {
            buf.put_u8(1);
            buf.put_i64_le(*n);
        }
        Outcome::Value(None) => buf.put_u8(2),
        Outcome::Value(Some(value)) => {
            buf.put_u8(3);
            put_bytes(buf, value);
        }
        Outcome::Txn(outcomes) => {
            buf.put_u8(4);
            buf.put_u32_le(outcomes.len() as u32);
            for outcome in outcomes {
                put_outcome(buf, outcome);
            }
        }
        Outcome::Aborted => buf.put_u8(5),
        other => unreachable!("the simulator's state machine never returns {other:?}"),
    }
}

fn get_outcome(rest: &mut &[u8]) -> Option<Outcome> {
    match rest.first()? {
        4 => {
            take(rest, 1)?;
            // One level: a transaction's steps are single outcomes.
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().ok()?);
            let outcomes = (0..len)
                .map(|_| get_single_outcome(rest))
                .collect::<Option<_>>()?;
            Some(Outcome::Txn(outcomes))
        }
        5 => {
            take(rest, 1)?;
            Some(Outcome::Aborted)
        }
        _ => get_single_outcome(rest),
    }
}

fn get_single_outcome(rest: &mut &[u8]) -> Option<Outcome> {
    Some(match take(rest, 1)?[0] {
        0 => Outcome::Ok,
        1 => Outcome::Int(get_u64(rest)? as i64),
        2 => Outcome::Value(None),
        3 => Outcome::Value(Some(get_bytes(rest)?)),
        _ => return None,
    })
}

/// What the simulator's state machine saw while the runtime's engine
/// applied commands, for the world's checks (drained after every input).
#[derive(Debug)]
pub enum KvEvent {
    /// Client command `(client, seq)` took effect, carried by `attempt` at
    /// `instance` (a retry the exactly-once table answered is not an
    /// effect); `absent`: its key was absent (never set, deleted or expired)
    /// when it did.
    Applied {
        client: u64,
        seq: u64,
        attempt: u32,
        instance: u64,
        absent: bool,
    },
    /// Something only a bug explains (a violation).
    Broken(String),
    /// The state's digest at the end of the applied prefix `point` (the
    /// exclusive end): replicas must agree on it.
    Digest { point: u64, digest: u64 },
}

/// How often (in instances) the state digest is recorded: a digest encodes
/// the whole state, and a divergence stays in the state once there.
pub const DIGEST_EVERY: u64 = 4;

/// The simulator's state machine as the runtime's [`synod::engine::Engine`]
/// runs it: [`Kv`] behind the [`StateMachine`] trait, commands and reads
/// as the clients' encoded [`KvCommand`]s, answers as [`SimAnswer`] bytes.
pub struct SimKv {
    pub kv: Kv,
    /// Drops the WATCH check of every transaction (the `watch-ignored`
    /// negative control).
    pub drop_watch: bool,
    /// Offers `snapshot_stream` (else only `snapshot_view`).
    pub stream_snapshots: bool,
    /// On-disk mode (`StateMachine::durable_end`): the state is kept in a
    /// file on the node's simulated disk too, written by `sync`.
    on_disk: Option<OnDisk>,
    /// Points before this are not digested: the state is ahead of them (an
    /// on-disk state recovered past the runtime's checkpoint).
    digest_floor: u64,
    /// The node's wall clock in ms, for the `nondeterministic-sm` control
    /// (`None`: the log clock, as it must be).
    local_clock: Option<Arc<AtomicU64>>,
    /// Added to every mixed command's `ApplyContext::index`: 0, or the
    /// node's id for the `local-random-draws` negative control (random
    /// draws seeded by node, not by the log alone).
    pub index_shift: u32,
    /// The `acl-checked-by-node` negative control on this node: a mixed
    /// command sent as a user runs with that user's stamp as held here.
    pub acl_checked_here: bool,
    /// Instance of the last command applied since the last restore.
    last_instance: Option<u64>,
    /// Every `(client, seq, attempt)` applied since the last restore.
    attempts: HashSet<(u64, u64, u32)>,
    /// Points up to this one had their digest recorded (since the last
    /// restore): a digest encodes the whole state, so each is taken once.
    digested_to: Option<u64>,
    pub events: Vec<KvEvent>,
}

/// Where an on-disk [`SimKv`] keeps its state on the node's disk.
pub const ON_DISK_DIR: &str = "/kv";
/// The file in [`ON_DISK_DIR`]: point, xxh3 of the state, the state.
pub const ON_DISK_STATE: &str = "state";

/// An on-disk [`SimKv`] also writes its state through after every instance
/// whose end is a multiple of this.
const WRITE_THROUGH_EVERY: u64 = 7;

/// Writes `state` at `point` durably into [`ON_DISK_STATE`] (temp file,
/// fsync, rename, directory fsync), then records the point.
fn write_on_disk(
    fs: &dyn Fs,
    durable: &AtomicU64,
    point: u64,
    state: &[u8],
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(16 + state.len());
    bytes.extend_from_slice(&point.to_le_bytes());
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(state).to_le_bytes());
    bytes.extend_from_slice(state);
    let dir = Path::new(ON_DISK_DIR);
    let tmp = dir.join(format!("{ON_DISK_STATE}.tmp"));
    let file = fs.open(&tmp, OpenMode::Truncate)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_all()?;
    fs.rename(&tmp, &dir.join(ON_DISK_STATE))?;
    fs.sync_dir(dir)?;
    durable.store(point, Ordering::Release);
    Ok(())
}

/// The file system and durable point of an on-disk [`SimKv`].
struct OnDisk {
    fs: Arc<dyn Fs>,
    /// The point the state in the file is at (0: no file).
    durable: Arc<AtomicU64>,
}

/// An answer of [`SimKv`], as the engine hands it to the client.
#[derive(Debug, PartialEq)]
pub enum SimAnswer {
    /// A command took effect (now or, for a retry, before) with this outcome.
    Applied(Outcome),
    /// A stale duplicate of an older command: no answer for anyone.
    Stale,
    /// The state machine found a bug (reported as an event too).
    Broken,
    /// A read answered at the end of applied prefix `point` (by read index)
    /// or at instance `point` (through the log).
    Read { point: u64, value: Option<Vec<u8>> },
    /// A WATCH read, answered like [`SimAnswer::Read`], with synod-kv's
    /// token for the key.
    Watched {
        point: u64,
        value: Option<Vec<u8>>,
        token: WatchedKey,
    },
}

impl SimAnswer {
    fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            SimAnswer::Applied(outcome) => {
                buf.put_u8(1);
                put_outcome(&mut buf, outcome);
            }
            SimAnswer::Stale => buf.put_u8(2),
            SimAnswer::Broken => buf.put_u8(3),
            SimAnswer::Read { point, value } => {
                buf.put_u8(4);
                buf.put_u64_le(*point);
                put_outcome(&mut buf, &Outcome::Value(value.clone()));
            }
            SimAnswer::Watched {
                point,
                value,
                token,
            } => {
                buf.put_u8(5);
                buf.put_u64_le(*point);
                put_outcome(&mut buf, &Outcome::Value(value.clone()));
                put_bytes(&mut buf, &token.key);
                buf.put_u8(u8::from(token.live));
                buf.put_u64_le(token.stamp.instance);
                buf.put_u64_le(token.stamp.sequence);
            }
        }
        buf.freeze()
    }

    /// Decodes an answer; `None` for bytes no [`SimKv`] writes.
    pub fn decode(bytes: &[u8]) -> Option<SimAnswer> {
        let mut rest = bytes;
        let answer = match take(&mut rest, 1)?[0] {
            1 => SimAnswer::Applied(get_outcome(&mut rest)?),
            2 => SimAnswer::Stale,
            3 => SimAnswer::Broken,
            4 => {
                let point = get_u64(&mut rest)?;
                match get_outcome(&mut rest)? {
                    Outcome::Value(value) => SimAnswer::Read { point, value },
                    _ => return None,
                }
            }
            5 => {
                let point = get_u64(&mut rest)?;
                let Outcome::Value(value) = get_outcome(&mut rest)? else {
                    return None;
                };
                let key = Bytes::from(get_bytes(&mut rest)?);
                let live = take(&mut rest, 1)?[0] != 0;
                let stamp = Stamp {
                    instance: get_u64(&mut rest)?,
                    sequence: get_u64(&mut rest)?,
                };
                SimAnswer::Watched {
                    point,
                    value,
                    token: WatchedKey { key, live, stamp },
                }
            }
            _ => return None,
        };
        rest.is_empty().then_some(answer)
    }
}

impl SimKv {
    /// An empty state; `local_clock` only for the `nondeterministic-sm`
    /// negative control.
    pub fn new(local_clock: Option<Arc<AtomicU64>>) -> SimKv {
        SimKv {
            kv: Kv::default(),
            drop_watch: false,
            stream_snapshots: false,
            on_disk: None,
            digest_floor: 0,
            local_clock,
            index_shift: 0,
            acl_checked_here: false,
            last_instance: None,
            attempts: HashSet::new(),
            digested_to: None,
            events: Vec::new(),
        }
    }

    /// Switches to on-disk mode: opens the state kept in [`ON_DISK_STATE`]
    /// on `fs` (the node's simulated disk), if any, and from then on
    /// reports its point as `durable_end` and rewrites it on every `sync`.
    pub fn open_on_disk(&mut self, fs: Arc<dyn Fs>) -> Result<(), String> {
        let dir = Path::new(ON_DISK_DIR);
        fs.create_dir_all(dir)
            .map_err(|e| format!("on-disk state: cannot create {ON_DISK_DIR}: {e}"))?;
        let path = dir.join(ON_DISK_STATE);
        let mut point = 0;
        match fs.read(&path) {
            Ok(bytes) => {
                // Written whole, synced and renamed into place: a crash
                // leaves the old file or the new one, never a torn one.
                let (head, state) = bytes
                    .split_at_checked(16)
                    .ok_or("on-disk state: a file shorter than its header")?;
                let sum = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
                if xxhash_rust::xxh3::xxh3_64(state) != sum {
                    return Err("on-disk state: the file's checksum does not match".into());
                }
                point = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
                self.kv
                    .restore(state)
                    .ok_or("on-disk state: the file does not decode")?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("on-disk state: cannot read it: {err}")),
        }
        self.digest_floor = point;
        self.on_disk = Some(OnDisk {
            fs,
            durable: Arc::new(AtomicU64::new(point)),
        });
        Ok(())
    }

    /// Records the digest at every point in `from..=to` that is due: the
    /// state now is the state at each of them (no command in between).
    fn digest_points(&mut self, from: u64, to: u64) {
        let from = from.max(self.digest_floor);
        let from = self.digested_to.map_or(from, |done| from.max(done + 1));
        let first = from.div_ceil(DIGEST_EVERY) * DIGEST_EVERY;
        if first > to {
            return;
        }
        self.digested_to = Some(to);
        let digest = self.kv.digest();
        for point in (first..=to).step_by(DIGEST_EVERY as usize) {
            self.events.push(KvEvent::Digest { point, digest });
        }
    }

    /// The state at `point` (the end of the applied prefix, after a
    /// restart, an install or a batch) for the digest comparison.
    pub fn digest_at(&mut self, point: u64) {
        self.digest_points(point, point);
    }
}

impl SimKv {
    /// The answer to a command no model checks (a sweep, a mixed command):
    /// `Applied(Ok)`, or `Broken` with the error reported.
    fn answer_unchecked(&mut self, instance: u64, applied: Result<(), String>) -> Bytes {
        let answer = match applied {
            Ok(()) => SimAnswer::Applied(Outcome::Ok),
            Err(error) => {
                self.events
                    .push(KvEvent::Broken(format!("synod-kv at #{instance}: {error}")));
                SimAnswer::Broken
            }
        };
        answer.encode()
    }
}

impl StateMachine for SimKv {
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes {
        let instance = ctx.instance.0;
        if self.last_instance != Some(instance) {
            // A new instance: the state now is the state at every point up
            // to it since the previous command's instance.
            let from = self.last_instance.map_or(instance, |last| last + 1);
            self.digest_points(from, instance);
            self.last_instance = Some(instance);
        }
        if command == SWEEP {
            let swept = self.kv.sweep(instance, ctx.time_ms);
            return self.answer_unchecked(instance, swept);
        }
        if let Some(mixed) = crate::mixed::command_bytes(command) {
            let local_clock = self.local_clock.as_ref().map(|c| c.load(Ordering::Relaxed));
            let index = ctx.index.wrapping_add(self.index_shift);
            let applied = synod_kv::KvCommand::decode(mixed)
                .map_err(|error| format!("validity: an undecodable mixed command: {error}"))
                .and_then(|command| {
                    let mixed = match command {
                        synod_kv::KvCommand::AsUser(mut as_user) if self.acl_checked_here => {
                            if let Some(stamp) = self.kv.rules_stamp(&as_user.user) {
                                as_user.stamp = stamp;
                            }
                            synod_kv::KvCommand::AsUser(as_user).encode()
                        }
                        _ => Bytes::copy_from_slice(mixed),
                    };
                    self.kv
                        .apply_mixed(&mixed, instance, ctx.time_ms, index, local_clock)
                });
            return self.answer_unchecked(instance, applied);
        }
        let Some(command) = decode(command) else {
            self.events.push(KvEvent::Broken(format!(
                "validity: an undecodable command applied at #{instance}: {:?}",
                &command[..command.len().min(40)]
            )));
            return SimAnswer::Broken.encode();
        };
        if !self
            .attempts
            .insert((command.client, command.seq, command.attempt))
        {
            self.events.push(KvEvent::Broken(format!(
                "exactly-once: the runtime applied attempt {} of client {}'s command {} twice (at #{instance})",
                command.attempt, command.client, command.seq
            )));
        }
        let local_clock = self.local_clock.as_ref().map(|c| c.load(Ordering::Relaxed));
        let effects_before = self.kv.effects(command.client, command.seq);
        let applied = self.kv.apply(
            &command,
            instance,
            ctx.time_ms,
            local_clock,
            self.drop_watch,
        );
        let answer = match applied {
            Ok(Some((outcome, absent))) => {
                if self.kv.effects(command.client, command.seq) > effects_before {
                    self.events.push(KvEvent::Applied {
                        client: command.client,
                        seq: command.seq,
                        attempt: command.attempt,
                        instance,
                        absent,
                    });
                }
                SimAnswer::Applied(outcome)
            }
            Ok(None) => SimAnswer::Stale,
            Err(error) => {
                self.events
                    .push(KvEvent::Broken(format!("synod-kv at #{instance}: {error}")));
                SimAnswer::Broken
            }
        };
        answer.encode()
    }

    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes {
        let answer = match decode(query) {
            Some(KvCommand {
                op: Op::Get { key },
                watch_read: true,
                ..
            }) => match self.kv.watch(&key, ctx.time_ms) {
                Ok((value, token)) => SimAnswer::Watched {
                    point: ctx.instance.0,
                    value,
                    token,
                },
                Err(_) => SimAnswer::Broken,
            },
            Some(KvCommand {
                op: Op::Get { key },
                ..
            }) => match self.kv.read(&key, ctx.time_ms) {
                Ok(value) => SimAnswer::Read {
                    point: ctx.instance.0,
                    value,
                },
                Err(_) => SimAnswer::Broken,
            },
            _ => SimAnswer::Broken,
        };
        answer.encode()
    }

    /// The simulator's reads (GET, and GET for WATCH) settle by the clock
    /// when synod-kv's predicate says the server's would
    /// (`Kv::read_settles_by_clock`): their answer at a time is whether the
    /// key is live then, and its value.
    fn query_settles_by_clock(&self, query: &[u8], ctx: &ApplyContext) -> bool {
        match decode(query) {
            Some(KvCommand {
                op: Op::Get { key },
                watch_read,
                ..
            }) => self.kv.read_settles_by_clock(&key, watch_read, ctx.time_ms),
            _ => false,
        }
    }

    fn query_depends_on_time(&self, query: &[u8]) -> bool {
        match decode(query) {
            Some(KvCommand {
                op: Op::Get { key },
                ..
            }) => self.kv.read_depends_on_time(&key),
            _ => false,
        }
    }

    fn snapshot(&self) -> Bytes {
        self.kv.encode()
    }

    fn snapshot_view(&self) -> Option<synod::SnapshotJob> {
        // The driver's path for a state machine with a view: the state is
        // captured now, encoded when the snapshot write runs (later, with
        // applies in between).
        Some(Box::new(self.kv.encode_later()))
    }

    fn snapshot_stream(&self) -> Option<synod::SnapshotStream> {
        // Preferred by the driver when offered: half the nodes stream their
        // snapshots into the file, half encode them whole (both paths run,
        // and peers install snapshots written either way).
        self.stream_snapshots.then(|| self.kv.encode_stream())
    }

    fn durable_end(&self) -> Option<InstanceId> {
        self.on_disk
            .as_ref()
            .map(|d| InstanceId(d.durable.load(Ordering::Acquire)))
    }

    fn sync(&mut self, through: InstanceId) -> Option<synod::StateSyncJob> {
        let on_disk = self.on_disk.as_ref()?;
        // The state now, encoded and written when the runtime runs the job
        // (later, with applies in between), as a real on-disk store would
        // flush a consistent view of itself.
        let encode = self.kv.encode_later();
        let fs = Arc::clone(&on_disk.fs);
        let durable = Arc::clone(&on_disk.durable);
        Some(Box::new(move || {
            if durable.load(Ordering::Acquire) >= through.0 {
                // Written through at a later point since the view was taken.
                return Ok(());
            }
            write_on_disk(&*fs, &durable, through.0, &encode())
        }))
    }

    fn applied_through(&mut self, end: InstanceId) {
        // A store that also writes through on its own schedule (as a
        // database flushes), so that restarts find state past the
        // runtime's checkpoint and skip the commands it has.
        let Some(on_disk) = self.on_disk.as_ref() else {
            return;
        };
        if !end.0.is_multiple_of(WRITE_THROUGH_EVERY) {
            return;
        }
        if let Err(err) = write_on_disk(&*on_disk.fs, &on_disk.durable, end.0, &self.kv.encode()) {
            // A real store would stop the node; the state on disk is still
            // the previous one with its point, so going on is safe here.
            // Counted as nothing: the next write or sync tries again.
            let _ = err;
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.kv
            .restore(snapshot)
            .ok_or("the simulator's snapshot does not decode")?;
        // The state is the snapshot's, behind any on-disk point: digested
        // from here on.
        self.digest_floor = 0;
        if let Some(on_disk) = &self.on_disk {
            // As a store that rebuilds itself from the snapshot: the old
            // state goes, and the point says so (0) until the next sync.
            // The runtime restores only once the snapshot is this node's
            // checkpoint, so a restart restores it again.
            on_disk.durable.store(0, Ordering::Release);
            let path = Path::new(ON_DISK_DIR).join(ON_DISK_STATE);
            if let Err(err) = on_disk.fs.remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    return Err(format!("on-disk state: cannot remove the old state: {err}"));
                }
            }
        }
        self.last_instance = None;
        self.attempts.clear();
        self.digested_to = None;
        Ok(())
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u32_le(bytes.len() as u32);
    buf.put_slice(bytes);
}

fn get_u64(rest: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
}

fn get_bytes(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(take(rest, 4)?.try_into().ok()?) as usize;
    Some(take(rest, len)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(seq: u64) -> KvCommand {
        KvCommand {
            client: 1,
            seq,
            op: Op::Append {
                key: b"k".to_vec(),
                value: b"a".to_vec(),
            },
            ttl_ms: 0,
            attempt: 1,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        }
    }

    #[test]
    fn commands_round_trip_and_garbage_is_refused() {
        let command = KvCommand {
            client: 7,
            seq: 9,
            op: Op::Put {
                key: b"k".to_vec(),
                value: b"xy".to_vec(),
            },
            ttl_ms: LONG_TTL_MS,
            attempt: 3,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        };
        let bytes = encode(&command);
        assert_eq!(decode(&bytes), Some(command));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"garbage"), None);
    }

    fn watched_txn(seq: u64, token: WatchedKey) -> KvCommand {
        KvCommand {
            op: Op::WatchedTxn {
                watched: vec![(b"w0".to_vec(), Some(b"1.1.0;".to_vec()))],
                ops: vec![
                    Op::Put {
                        key: b"w0".to_vec(),
                        value: b"1.2.0;".to_vec(),
                    },
                    Op::Get {
                        key: b"w1".to_vec(),
                    },
                ],
            },
            tokens: vec![token],
            blocking: None,
            ..append(seq)
        }
    }

    #[test]
    fn watched_transactions_round_trip() {
        let token = WatchedKey {
            key: Bytes::from_static(b"w0"),
            live: true,
            stamp: Stamp {
                instance: 7,
                sequence: 2,
            },
        };
        let command = watched_txn(2, token.clone());
        let bytes = encode(&command);
        assert_eq!(decode(&bytes), Some(command));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let read = KvCommand {
            op: Op::Get {
                key: b"w0".to_vec(),
            },
            watch_read: true,
            ..append(1)
        };
        assert_eq!(decode(&encode(&read)), Some(read));
        for answer in [
            SimAnswer::Watched {
                point: 3,
                value: None,
                token,
            },
            SimAnswer::Applied(Outcome::Aborted),
            SimAnswer::Applied(Outcome::Txn(vec![Outcome::Ok, Outcome::Value(None)])),
        ] {
            let bytes = answer.encode();
            assert_eq!(SimAnswer::decode(&bytes), Some(answer));
            assert_eq!(SimAnswer::decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    /// Through synod-kv's own WATCH read and check: the transaction runs
    /// while the key is unchanged and answers nil after a write, unless the
    /// check is dropped (the negative control).
    #[test]
    fn a_watched_transaction_aborts_after_a_write() {
        let put = |seq, value: &str| KvCommand {
            op: Op::Put {
                key: b"w0".to_vec(),
                value: value.as_bytes().to_vec(),
            },
            ..append(seq)
        };
        let mut kv = Kv::default();
        kv.apply(&put(1, "1.1.0;"), 0, 5, None, false).unwrap();
        let (value, token) = kv.watch(b"w0", 5).unwrap();
        assert_eq!(value, Some(b"1.1.0;".to_vec()));
        let mut unchanged = Kv::decode(&kv.encode()).expect("decodes");
        let ran = Outcome::Txn(vec![Outcome::Ok, Outcome::Value(None)]);
        assert_eq!(
            unchanged.apply(&watched_txn(2, token.clone()), 1, 5, None, false),
            Ok(Some((ran.clone(), false)))
        );
        kv.apply(&put(2, "1.2.1;"), 1, 5, None, false).unwrap();
        let mut ignoring = Kv::decode(&kv.encode()).expect("decodes");
        assert_eq!(
            kv.apply(&watched_txn(3, token.clone()), 2, 5, None, false),
            Ok(Some((Outcome::Aborted, false)))
        );
        assert_eq!(kv.read(b"w0", 5), Ok(Some(b"1.2.1;".to_vec())));
        assert_eq!(
            ignoring.apply(&watched_txn(3, token), 2, 5, None, true),
            Ok(Some((ran, false)))
        );
    }

    #[test]
    fn answers_round_trip_and_garbage_is_refused() {
        for answer in [
            SimAnswer::Applied(Outcome::Int(-3)),
            SimAnswer::Applied(Outcome::Ok),
            SimAnswer::Stale,
            SimAnswer::Broken,
            SimAnswer::Read {
                point: 7,
                value: Some(b"v".to_vec()),
            },
            SimAnswer::Read {
                point: 0,
                value: None,
            },
        ] {
            let bytes = answer.encode();
            assert_eq!(SimAnswer::decode(&bytes), Some(answer));
            assert_eq!(SimAnswer::decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    /// The same attempt applied twice is the runtime's fault (its session
    /// table let a duplicate through), even though the client's own
    /// exactly-once rule hides the second effect.
    #[test]
    fn an_attempt_applied_twice_is_reported() {
        let mut sm = SimKv::new(None);
        let ctx = |instance| ApplyContext {
            instance: InstanceId(instance),
            time_ms: 5,
            index: 0,
        };
        let bytes = encode(&append(1));
        sm.apply(&bytes, &ctx(0));
        assert!(!sm.events.iter().any(|e| matches!(e, KvEvent::Broken(_))));
        let retry = encode(&KvCommand {
            attempt: 2,
            ..append(1)
        });
        sm.apply(&retry, &ctx(1));
        assert!(!sm.events.iter().any(|e| matches!(e, KvEvent::Broken(_))));
        sm.apply(&bytes, &ctx(2));
        assert!(sm
            .events
            .iter()
            .any(|e| matches!(e, KvEvent::Broken(text) if text.contains("twice"))));
    }

    #[test]
    fn retries_take_effect_once() {
        let mut kv = Kv::default();
        assert_eq!(
            kv.apply(&append(1), 0, 5, None, false),
            Ok(Some((Outcome::Int(1), true)))
        );
        assert_eq!(
            kv.apply(&append(1), 1, 5, None, false),
            Ok(Some((Outcome::Int(1), false)))
        );
        assert_eq!(kv.effects(1, 1), 1);
        assert_eq!(
            kv.apply(&append(2), 2, 5, None, false),
            Ok(Some((Outcome::Int(2), false)))
        );
        assert_eq!(kv.apply(&append(1), 3, 5, None, false), Ok(None));
        let get = KvCommand {
            seq: 3,
            op: Op::Get { key: b"k".to_vec() },
            ..append(3)
        };
        assert_eq!(
            kv.apply(&get, 4, 5, None, false),
            Ok(Some((Outcome::Value(Some(b"aa".to_vec())), false)))
        );
        let copy = Kv::decode(&kv.encode()).expect("decodes");
        assert_eq!(copy.encode(), kv.encode());
        assert_eq!(copy.digest(), kv.digest());
        // The digest covers the effect counts through a running sum, which
        // the decode recomputed: a count of 2 (a command applied twice)
        // shows, and so does a count of 1 where there was none.
        let mut twice = Kv::decode(&kv.encode()).expect("decodes");
        *twice.effects.get_mut(&(1, 1)).expect("counted") = 2;
        let twice = Kv::decode(&twice.encode()).expect("decodes");
        assert_ne!(twice.digest(), kv.digest());
        let mut extra = Kv::decode(&kv.encode()).expect("decodes");
        extra.effects.insert((9, 9), 1);
        let extra = Kv::decode(&extra.encode()).expect("decodes");
        assert_ne!(extra.digest(), kv.digest());
        // A library client's command is applied as often as it comes (the
        // runtime's sessions, not these, keep it to once): the running sum
        // then replaces a count's hash, and must match the decoded one.
        let mut library = Kv::default();
        library.library_clients.insert(1);
        for at in 0..2 {
            let _ = library.apply(&append(1), at, 5, None, false);
        }
        assert_eq!(library.effects(1, 1), 2);
        let decoded = Kv::decode(&library.encode()).expect("decodes");
        assert_eq!(decoded.digest(), library.digest());
        let mut zero = Kv::decode(&library.encode()).expect("decodes");
        zero.effects.insert((9, 9), 0);
        assert!(
            Kv::decode(&zero.encode()).is_none(),
            "a count of 0 is refused"
        );
        let mut fresh = Kv::default();
        for (at, command) in [append(1), append(1), append(2)].iter().enumerate() {
            let _ = fresh.apply(command, at as u64, 5, None, false);
        }
        let _ = fresh.apply(&get, 4, 5, None, false);
        assert_eq!(
            fresh.digest(),
            copy.digest(),
            "the running sum is the decoded one"
        );
        assert!(Kv::decode(&kv.encode()[1..]).is_none());
    }

    #[test]
    fn a_local_clock_changes_the_state_digest() {
        let put = KvCommand {
            op: Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            ttl_ms: LONG_TTL_MS,
            ..append(1)
        };
        let (mut a, mut b) = (Kv::default(), Kv::default());
        a.apply(&put, 0, 1_000, None, false).unwrap();
        b.apply(&put, 0, 1_000, None, false).unwrap();
        assert_eq!(a.digest(), b.digest());
        let mut c = Kv::default();
        c.apply(&put, 0, 1_000, Some(2_000), false).unwrap();
        assert_ne!(a.digest(), c.digest());
        assert_eq!(c.read(b"k", 2_000), Ok(Some(b"v".to_vec())));
    }
}
