//! Commands, instance values and the running checksum of applied values.

use crate::membership::Membership;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use xxhash_rust::xxh3::Xxh3;

/// An opaque client command. The core never looks inside; the state machine does.
pub type Command = Bytes;

/// The value of one Paxos instance.
///
/// Cheap to clone: a batch is shared, because the same value goes to every peer and
/// into the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Fills a hole left by a failed leader; applies nothing.
    Noop,
    /// Many client commands chosen together, applied in order.
    Batch(Arc<[Command]>),
    /// A new membership for the group: it governs every instance from
    /// `RECONFIG_DELAY_INSTANCES` after the one it is chosen at (see
    /// `membership.rs`). Applies no command.
    Reconfig(Arc<Membership>),
}

impl Value {
    /// A batch of the given commands.
    pub fn batch(commands: Vec<Command>) -> Value {
        Value::Batch(commands.into())
    }

    /// A batch of the given commands, copied into one buffer that they then
    /// share: what a leader proposes. The chosen value stays in memory until
    /// a checkpoint compacts the log (up to `SnapshotPolicy`'s log bytes), and
    /// each command a client handed in is an allocation of its own, made
    /// while the state machine allocates its entries beside it; kept
    /// separately, the commands, freed at the checkpoint, would leave holes
    /// all over the heap that the allocator cannot hand back (measured: a
    /// loaded leader's RSS ~50 MiB above its followers', whose values arrive
    /// as one frame each). One copy of the bytes per command; the originals
    /// go when their last holder lets go (a forwarded command's frame at
    /// once, a local one's envelope when the runtime has applied it).
    pub fn packed_batch(commands: Vec<Command>) -> Value {
        if commands.len() <= 1 {
            return Value::batch(commands);
        }
        let mut buf = BytesMut::with_capacity(commands.iter().map(|c| c.len()).sum());
        for command in &commands {
            buf.extend_from_slice(command);
        }
        let whole = buf.freeze();
        let mut at = 0;
        Value::Batch(
            commands
                .iter()
                .map(|command| {
                    let slice = whole.slice(at..at + command.len());
                    at += command.len();
                    slice
                })
                .collect(),
        )
    }

    /// The commands in this value (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop | Value::Reconfig(_) => &[],
            Value::Batch(commands) => commands,
        }
    }

    /// Payload bytes, used for the in-flight window and batch limits.
    pub fn size_bytes(&self) -> usize {
        self.commands().iter().map(|c| c.len()).sum()
    }

    /// The length of this value's encoding (`codec`), without encoding it:
    /// what `Config::value_bytes_max` bounds.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Noop => 1,
            Value::Batch(commands) => 1 + 4 + commands.iter().map(|c| 4 + c.len()).sum::<usize>(),
            Value::Reconfig(membership) => 1 + membership_encoded_len(membership),
        }
    }
}

/// The length of a membership's encoding (`codec`).
pub(crate) fn membership_encoded_len(m: &Membership) -> usize {
    8 + 4
        + m.members
            .iter()
            .map(|m| 4 + 1 + 4 + m.addr.len())
            .sum::<usize>()
        + 4
        + 4 * m.removed.len()
}

/// Running checksum of everything a replica applied: `c(i) = h(c(i-1), value(i))`.
///
/// Two replicas that applied the same values in the same order have the same
/// checksum at the same instance; a mismatch means they diverged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Checksum(pub u64);

impl Checksum {
    /// The checksum after also applying `value`.
    pub fn extend(self, value: &Value) -> Checksum {
        let mut hasher = Xxh3::new();
        hasher.update(&self.0.to_le_bytes());
        match value {
            Value::Noop => hasher.update(&[0]),
            Value::Batch(commands) => {
                hasher.update(&[1]);
                hasher.update(&(commands.len() as u64).to_le_bytes());
                for command in commands.iter() {
                    hasher.update(&(command.len() as u64).to_le_bytes());
                    hasher.update(command);
                }
            }
            Value::Reconfig(membership) => {
                hasher.update(&[2]);
                hasher.update(&crate::codec::Encode::to_bytes(&**membership));
            }
        }
        Checksum(hasher.digest())
    }
}

/// Where a state machine snapshot stands: it holds the effect of every instance
/// below `applied_end`, and the running checksum there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SnapshotMeta {
    /// The snapshot covers instances `0..applied_end`.
    pub applied_end: crate::ids::InstanceId,
    /// The applied checksum at `applied_end`.
    pub checksum: Checksum,
}

/// A hash (xxh3-128) of a snapshot's bytes. `SnapshotMeta::checksum` covers
/// the *log* the snapshot stands for, not its bytes: two replicas may encode
/// the same state differently (a state machine's `snapshot` need not be
/// byte-canonical), so a transfer is identified and verified by this digest
/// of the very bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SnapshotDigest(pub u128);

impl SnapshotDigest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> SnapshotDigest {
        SnapshotDigest(xxhash_rust::xxh3::xxh3_128(data))
    }
}

/// The [`SnapshotDigest`] of bytes that arrive in pieces: equal to
/// `SnapshotDigest::of` their concatenation, without holding them.
#[derive(Clone, Default)]
pub struct SnapshotHasher(xxhash_rust::xxh3::Xxh3Default);

impl SnapshotHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> SnapshotHasher {
        SnapshotHasher::default()
    }

    /// Adds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of every byte added so far.
    pub fn digest(&self) -> SnapshotDigest {
        SnapshotDigest(self.0.digest128())
    }
}

impl std::fmt::Debug for SnapshotHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHasher")
    }
}

/// A state machine snapshot: opaque bytes the state machine wrote, and where
/// they stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Where the snapshot stands.
    pub meta: SnapshotMeta,
    /// The memberships of the instances from `meta.applied_end` on, as the
    /// log below it defines them (see `membership.rs`). `None` only in a
    /// snapshot written before memberships could change (the group still
    /// has its bootstrap membership then); [`crate::Replica::compact`] fills
    /// it in, so every snapshot a replica keeps, sends or hands out has one.
    pub memberships: Option<crate::membership::Schedule>,
    /// The state machine's encoding of its state.
    pub data: Bytes,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn checksum_depends_on_order_and_boundaries() {
        let ab = Value::batch(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        let a_b = Value::batch(vec![Bytes::from_static(b"ab")]);
        let zero = Checksum::default();
        assert_ne!(zero.extend(&ab), zero.extend(&a_b));
        assert_ne!(zero.extend(&Value::Noop), zero);
        let x = zero.extend(&ab).extend(&Value::Noop);
        let y = zero.extend(&Value::Noop).extend(&ab);
        assert_ne!(x, y);
        assert_eq!(x, zero.extend(&ab).extend(&Value::Noop));
    }

    #[test]
    fn a_packed_batch_is_the_same_value_in_one_buffer() {
        let commands: Vec<Command> = [&b"set a 1"[..], b"", b"x", b"del a"]
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect();
        let packed = Value::packed_batch(commands.clone());
        assert_eq!(packed, Value::batch(commands.clone()));
        assert_eq!(
            packed.encoded_len(),
            Value::batch(commands.clone()).encoded_len()
        );
        assert!(packed_in_one_buffer(&packed));
        // The value holds none of the originals.
        assert!(commands.into_iter().all(|c| c.is_empty() || c.is_unique()));
        assert_eq!(Value::packed_batch(Vec::new()), Value::batch(Vec::new()));
    }

    /// Whether a batch's commands lie end to end in one buffer.
    pub(crate) fn packed_in_one_buffer(value: &Value) -> bool {
        let parts = value.commands();
        let Some(first) = parts.first() else {
            return true;
        };
        let base = first.as_ptr() as usize;
        let mut at = 0;
        parts.iter().all(|part| {
            let here = part.as_ptr() as usize == base + at;
            at += part.len();
            here
        })
    }
}
