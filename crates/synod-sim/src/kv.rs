//! The simulator's state machine: a small key-value store with exactly-once
//! application of client commands (client id + sequence number).

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use synod_check::{Op, Outcome};

/// A client command as proposed: who, which attempt-independent sequence, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCommand {
    /// The client.
    pub client: u64,
    /// The client's sequence number; a retry reuses it.
    pub seq: u64,
    /// The operation.
    pub op: Op,
}

const KIND_GET: u8 = 1;
const KIND_PUT: u8 = 2;
const KIND_APPEND: u8 = 3;

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
        other => unreachable!("the simulator does not issue {other:?}"),
    };
    buf.put_u8(kind);
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
        _ => return None,
    };
    Some(KvCommand { client, seq, op })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// The replicated key-value state plus the exactly-once table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kv {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Per client: the last sequence applied and its outcome.
    sessions: BTreeMap<u64, (u64, Outcome)>,
    /// Per (client, seq): how many times it took effect (must never exceed 1).
    effects: BTreeMap<(u64, u64), u32>,
}

impl Kv {
    /// Applies a command; returns its outcome, or the remembered outcome when
    /// the command was applied before (a retry chosen twice). Returns `None` for
    /// a stale duplicate older than the client's latest command.
    pub fn apply(&mut self, command: &KvCommand) -> Option<Outcome> {
        if let Some((last_seq, outcome)) = self.sessions.get(&command.client) {
            if command.seq == *last_seq {
                return Some(outcome.clone());
            }
            if command.seq < *last_seq {
                return None;
            }
        }
        let outcome = match &command.op {
            Op::Get { key } => Outcome::Value(self.data.get(key).cloned()),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                Outcome::Ok
            }
            Op::Append { key, value } => {
                let entry = self.data.entry(key.clone()).or_default();
                entry.extend_from_slice(value);
                Outcome::Int(entry.len() as i64)
            }
            other => unreachable!("the simulator does not issue {other:?}"),
        };
        *self
            .effects
            .entry((command.client, command.seq))
            .or_default() += 1;
        self.sessions
            .insert(command.client, (command.seq, outcome.clone()));
        Some(outcome)
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

    /// The stored data, for comparing replicas.
    pub fn data(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.data
    }
}

impl Kv {
    /// Encodes the whole state (the simulator's snapshot format).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u64_le(self.data.len() as u64);
        for (key, value) in &self.data {
            put_bytes(&mut buf, key);
            put_bytes(&mut buf, value);
        }
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

    /// Decodes a snapshot written by `encode`.
    pub fn decode(bytes: &[u8]) -> Option<Kv> {
        let mut rest = bytes;
        let mut kv = Kv::default();
        for _ in 0..get_u64(&mut rest)? {
            let key = get_bytes(&mut rest)?;
            let value = get_bytes(&mut rest)?;
            kv.data.insert(key, value);
        }
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

    #[test]
    fn commands_round_trip_and_garbage_is_refused() {
        let command = KvCommand {
            client: 7,
            seq: 9,
            op: Op::Append {
                key: b"k".to_vec(),
                value: b"xy".to_vec(),
            },
        };
        let bytes = encode(&command);
        assert_eq!(decode(&bytes), Some(command));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"garbage"), None);
    }

    #[test]
    fn retries_take_effect_once() {
        let mut kv = Kv::default();
        let append = KvCommand {
            client: 1,
            seq: 1,
            op: Op::Append {
                key: b"k".to_vec(),
                value: b"a".to_vec(),
            },
        };
        assert_eq!(kv.apply(&append), Some(Outcome::Int(1)));
        assert_eq!(kv.apply(&append), Some(Outcome::Int(1)));
        assert_eq!(kv.effects(1, 1), 1);
        let next = KvCommand {
            seq: 2,
            ..append.clone()
        };
        assert_eq!(kv.apply(&next), Some(Outcome::Int(2)));
        assert_eq!(kv.apply(&append), None);
        let get = KvCommand {
            seq: 3,
            op: Op::Get { key: b"k".to_vec() },
            ..append
        };
        kv.apply(&get);
        assert_eq!(Kv::decode(&kv.encode()), Some(kv.clone()));
        assert_eq!(Kv::decode(&kv.encode()[1..]), None);
    }
}
