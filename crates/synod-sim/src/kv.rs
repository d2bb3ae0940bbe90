//! The simulator's state machine: the `synod` server's key-value store
//! (`synod_kv::Store`) with exactly-once application of client commands
//! (client id + sequence number).

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use synod::{ApplyContext, StateMachine};
use synod_check::{Op, Outcome};
use synod_core::InstanceId;
use synod_kv::{SetCondition, SetExpiry, Store};
use synod_resp::Reply;

/// A client command as proposed: who, which attempt-independent sequence, what.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

const KIND_GET: u8 = 1;
const KIND_PUT: u8 = 2;
const KIND_APPEND: u8 = 3;
const KIND_PUT_TTL: u8 = 4;

/// Encodes a command. Only the single-key operations the simulator's clients
/// issue are supported.
pub fn encode(command: &KvCommand) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    buf.put_u64_le(command.client);
    buf.put_u64_le(command.seq);
    let (kind, key, value): (u8, &[u8], &[u8]) = match &command.op {
        Op::Get { key } => (KIND_GET, key, &[]),
        Op::Put { key, value } => (KIND_PUT, key, value),
        Op::Append { key, value } => (KIND_APPEND, key, value),
        Op::PutTtl { key, value } => (KIND_PUT_TTL, key, value),
        other => unreachable!("the simulator does not issue {other:?}"),
    };
    buf.put_u8(kind);
    buf.put_u32_le(command.ttl_ms);
    buf.put_u16_le(key.len() as u16);
    buf.put_slice(key);
    buf.put_u16_le(value.len() as u16);
    buf.put_slice(value);
    buf.freeze()
}

/// Decodes a command; `None` when the bytes are not one (a validity violation).
pub fn decode(bytes: &[u8]) -> Option<KvCommand> {
    let mut rest = bytes;
    let client = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let kind = take(&mut rest, 1)?[0];
    let ttl_ms = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
    let key_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?) as usize;
    let key = take(&mut rest, key_len)?.to_vec();
    let value_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?) as usize;
    let value = take(&mut rest, value_len)?.to_vec();
    if !rest.is_empty() {
        return None;
    }
    let op = match kind {
        KIND_GET => Op::Get { key },
        KIND_PUT => Op::Put { key, value },
        KIND_APPEND => Op::Append { key, value },
        KIND_PUT_TTL => Op::PutTtl { key, value },
        _ => return None,
    };
    Some(KvCommand {
        client,
        seq,
        op,
        ttl_ms,
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

/// Bytes of the proposer's clock stamp in front of a proposed command.
const STAMP_BYTES: usize = 8;

/// A command as a node proposes it: its wall clock (ms since the Unix epoch)
/// in front of the client's bytes, as the runtime's envelope carries the
/// proposer's clock. The same client command proposed twice (a retry through
/// another node) carries two stamps.
pub fn stamp(time_ms: u64, command: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(STAMP_BYTES + command.len());
    buf.put_u64_le(time_ms);
    buf.put_slice(command);
    buf.freeze()
}

/// Splits a proposed value into its clock stamp and the client's bytes.
pub fn unstamp(bytes: &Bytes) -> Option<(u64, Bytes)> {
    let stamp = u64::from_le_bytes(bytes.get(..STAMP_BYTES)?.try_into().ok()?);
    Some((stamp, bytes.slice(STAMP_BYTES..)))
}

/// A TTL long enough never to run out during a run: it puts real expiry
/// state into synod-kv (and so into its snapshots and the state digest)
/// without changing what the linearizability model expects of the key.
pub const LONG_TTL_MS: u32 = 24 * 3600 * 1000;

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
    /// have.
    pub fn apply(
        &mut self,
        command: &KvCommand,
        instance: u64,
        stamp_ms: u64,
        local_clock_ms: Option<u64>,
    ) -> Result<Option<(Outcome, bool)>, String> {
        self.log_time_ms = self.log_time_ms.max(stamp_ms);
        if let Some((last_seq, outcome)) = self.sessions.get(&command.client) {
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
        };
        let kv_command = to_store_command(&command.op, command.ttl_ms)?;
        let key = command
            .op
            .key()
            .map(|k| Bytes::copy_from_slice(k))
            .unwrap_or_default();
        let exists = synod_kv::KvCommand::Exists { keys: vec![key] };
        let absent = self.store.query_command(&exists, &ctx) == Reply::Integer(0);
        let reply = self.store.apply_command(&kv_command, &ctx);
        let outcome = to_outcome(&command.op, reply)?;
        *self
            .effects
            .entry((command.client, command.seq))
            .or_default() += 1;
        self.sessions
            .insert(command.client, (command.seq, outcome.clone()));
        Ok(Some((outcome, absent)))
    }

    /// Reads a key without the log, as a node serves a read by read index
    /// (or, wrongly, a stale read): synod-kv's read path at `time_ms`.
    pub fn read(&self, key: &[u8], time_ms: u64) -> Result<Option<Vec<u8>>, String> {
        let ctx = ApplyContext {
            instance: InstanceId(0),
            time_ms,
        };
        let get = synod_kv::KvCommand::Get {
            key: Bytes::copy_from_slice(key),
        };
        match self.store.query_command(&get, &ctx) {
            Reply::Bulk(value) => Ok(Some(value.to_vec())),
            Reply::Null => Ok(None),
            other => Err(format!("GET answered {other:?}")),
        }
    }

    /// Whether a GET of `key` depends on the time (the key has an expiry),
    /// so that the runtime answers it through the log, at the log clock.
    pub fn read_depends_on_time(&self, key: &[u8]) -> bool {
        let get = synod_kv::KvCommand::Get {
            key: Bytes::copy_from_slice(key),
        };
        self.store.command_depends_on_time(&get)
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
        xxhash_rust::xxh3::xxh3_64(&self.encode())
    }

    /// Checks synod-kv's internal indexes.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.store.check_invariants()
    }
}

/// The synod-kv command for a simulator operation.
fn to_store_command(op: &Op, ttl_ms: u32) -> Result<synod_kv::KvCommand, String> {
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
        other => return Err(format!("the simulator does not issue {other:?}")),
    })
}

/// What synod-kv's reply means for the linearizability checker.
fn to_outcome(op: &Op, reply: Reply) -> Result<Outcome, String> {
    match (op, reply) {
        (Op::Get { .. }, Reply::Bulk(value)) => Ok(Outcome::Value(Some(value.to_vec()))),
        (Op::Get { .. }, Reply::Null) => Ok(Outcome::Value(None)),
        (Op::Put { .. } | Op::PutTtl { .. }, Reply::Simple(ok)) if ok == "OK" => Ok(Outcome::Ok),
        (Op::Append { .. }, Reply::Integer(len)) => Ok(Outcome::Int(len)),
        (op, reply) => Err(format!("synod-kv answered {reply:?} to {op:?}")),
    }
}

impl Kv {
    /// Encodes the whole state (the simulator's snapshot format): synod-kv's
    /// own snapshot, the log clock, then the exactly-once table.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        put_bytes(&mut buf, &self.store.snapshot());
        buf.extend_from_slice(&self.encode_tail());
        buf.freeze()
    }

    /// What `encode` returns now, encoded later: the store through its
    /// view (`StateMachine::snapshot_view`, the server's path), the small
    /// tables now. The driver does the same with its session table.
    pub fn encode_later(&self) -> impl FnOnce() -> Bytes + Send + 'static {
        let store = self.store.snapshot_view();
        let store_now = if store.is_none() {
            Some(self.store.snapshot())
        } else {
            None
        };
        let tail = self.encode_tail();
        move || {
            let store = match (store, store_now) {
                (Some(job), _) => job(),
                (None, Some(bytes)) => bytes,
                (None, None) => Bytes::new(),
            };
            let mut buf = BytesMut::new();
            put_bytes(&mut buf, &store);
            buf.extend_from_slice(&tail);
            buf.freeze()
        }
    }

    /// The log clock and the exactly-once table, as `encode` writes them.
    fn encode_tail(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u64_le(self.log_time_ms);
        buf.put_u64_le(self.sessions.len() as u64);
        for (client, (seq, outcome)) in &self.sessions {
            buf.put_u64_le(*client);
            buf.put_u64_le(*seq);
            match outcome {
                Outcome::Ok => buf.put_u8(0),
                Outcome::Int(n) => {
                    buf.put_u8(1);
                    buf.put_i64_le(*n);
                }
                Outcome::Value(None) => buf.put_u8(2),
                Outcome::Value(Some(value)) => {
                    buf.put_u8(3);
                    put_bytes(&mut buf, value);
                }
                other => unreachable!("the simulator's state machine never returns {other:?}"),
            }
        }
        buf.put_u64_le(self.effects.len() as u64);
        for ((client, seq), n) in &self.effects {
            buf.put_u64_le(*client);
            buf.put_u64_le(*seq);
            buf.put_u32_le(*n);
        }
        buf.freeze()
    }

    /// Decodes a snapshot written by `encode` (through synod-kv's restore).
    pub fn decode(bytes: &[u8]) -> Option<Kv> {
        let mut rest = bytes;
        let mut kv = Kv::default();
        let store = get_bytes(&mut rest)?;
        kv.store.restore(&store).ok()?;
        kv.log_time_ms = get_u64(&mut rest)?;
        for _ in 0..get_u64(&mut rest)? {
            let client = get_u64(&mut rest)?;
            let seq = get_u64(&mut rest)?;
            let outcome = match take(&mut rest, 1)?[0] {
                0 => Outcome::Ok,
                1 => Outcome::Int(get_u64(&mut rest)? as i64),
                2 => Outcome::Value(None),
                3 => Outcome::Value(Some(get_bytes(&mut rest)?)),
                _ => return None,
            };
            kv.sessions.insert(client, (seq, outcome));
        }
        for _ in 0..get_u64(&mut rest)? {
            let client = get_u64(&mut rest)?;
            let seq = get_u64(&mut rest)?;
            let n = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
            kv.effects.insert((client, seq), n);
        }
        rest.is_empty().then_some(kv)
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
        };
        let bytes = encode(&command);
        assert_eq!(decode(&bytes), Some(command));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"garbage"), None);
        let stamped = stamp(42, &bytes);
        assert_eq!(unstamp(&stamped), Some((42, bytes)));
    }

    #[test]
    fn retries_take_effect_once() {
        let mut kv = Kv::default();
        assert_eq!(
            kv.apply(&append(1), 0, 5, None),
            Ok(Some((Outcome::Int(1), true)))
        );
        assert_eq!(
            kv.apply(&append(1), 1, 5, None),
            Ok(Some((Outcome::Int(1), false)))
        );
        assert_eq!(kv.effects(1, 1), 1);
        assert_eq!(
            kv.apply(&append(2), 2, 5, None),
            Ok(Some((Outcome::Int(2), false)))
        );
        assert_eq!(kv.apply(&append(1), 3, 5, None), Ok(None));
        let get = KvCommand {
            seq: 3,
            op: Op::Get { key: b"k".to_vec() },
            ..append(3)
        };
        assert_eq!(
            kv.apply(&get, 4, 5, None),
            Ok(Some((Outcome::Value(Some(b"aa".to_vec())), false)))
        );
        let copy = Kv::decode(&kv.encode()).expect("decodes");
        assert_eq!(copy.encode(), kv.encode());
        assert_eq!(copy.digest(), kv.digest());
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
        a.apply(&put, 0, 1_000, None).unwrap();
        b.apply(&put, 0, 1_000, None).unwrap();
        assert_eq!(a.digest(), b.digest());
        let mut c = Kv::default();
        c.apply(&put, 0, 1_000, Some(2_000)).unwrap();
        assert_ne!(a.digest(), c.digest());
        assert_eq!(c.read(b"k", 2_000), Ok(Some(b"v".to_vec())));
    }
}
