//! Binary encoding of values, records and messages, shared by the write-ahead
//! log and the peer protocol. Pure: bytes in, bytes out.
//!
//! All integers are little-endian and fixed width. Decoding never panics and
//! never allocates more than the input could hold: a count is checked against
//! the bytes left before anything is reserved.

use crate::ids::{Ballot, GroupId, InstanceId, NodeId};
use crate::membership::{
    Member, MemberOp, MemberRole, Membership, MembershipChange, Schedule, Scheduled,
    MEMBER_ADDR_BYTES_MAX,
};
use crate::message::{AppliedMark, Body, Message, PromiseEntry, Restoring, StateMark};
use crate::record::{ChosenValue, Record};
use crate::value::{Checksum, Command, SnapshotDigest, SnapshotMeta, Value};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::sync::Arc;
use thiserror::Error;

/// Bytes that are not a valid encoding.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside an item.
    #[error("truncated input: needed {needed} more bytes")]
    Truncated {
        /// How many bytes were missing.
        needed: usize,
    },
    /// A tag byte names no known variant.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What was being decoded.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A count cannot fit in the bytes that are left.
    #[error("{what} count {count} exceeds the input")]
    CountTooLarge {
        /// What was being counted.
        what: &'static str,
        /// The count found.
        count: u64,
    },
    /// Bytes were left over after the item.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Well-formed bytes that break an invariant of what they encode.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Appends encodings to a buffer.
pub trait Encode {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut BytesMut);

    /// The encoding as a standalone buffer.
    fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// Reads encodings from a buffer; commands are zero-copy slices of it.
pub trait Decode: Sized {
    /// Reads one item from the front of `buf`.
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError>;

    /// Decodes exactly one item that fills `bytes`.
    fn from_bytes(mut bytes: Bytes) -> Result<Self, DecodeError> {
        let item = Self::decode(&mut bytes)?;
        if bytes.has_remaining() {
            return Err(DecodeError::Trailing(bytes.remaining()));
        }
        Ok(item)
    }
}

fn need(buf: &Bytes, n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError::Truncated {
            needed: n - buf.remaining(),
        });
    }
    Ok(())
}

fn get_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

/// An optional field: a tag byte (0 none, 1 some), then the value.
fn put_option<T>(buf: &mut BytesMut, value: Option<&T>, put: impl FnOnce(&mut BytesMut, &T)) {
    match value {
        None => buf.put_u8(0),
        Some(value) => {
            buf.put_u8(1);
            put(buf, value);
        }
    }
}

/// Reads what `put_option` wrote; any other tag is refused.
fn get_option<T>(
    buf: &mut Bytes,
    get: impl FnOnce(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match get_u8(buf)? {
        0 => Ok(None),
        1 => get(buf).map(Some),
        tag => Err(DecodeError::UnknownTag {
            what: "option",
            tag,
        }),
    }
}

fn get_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_u32_le())
}

fn get_u64(buf: &mut Bytes) -> Result<u64, DecodeError> {
    need(buf, 8)?;
    Ok(buf.get_u64_le())
}

fn get_u128(buf: &mut Bytes) -> Result<u128, DecodeError> {
    need(buf, 16)?;
    Ok(buf.get_u128_le())
}

/// Reads a count of items each at least `min_size` bytes long.
fn get_count(buf: &mut Bytes, min_size: usize, what: &'static str) -> Result<usize, DecodeError> {
    let count = get_u32(buf)? as usize;
    if count.saturating_mul(min_size.max(1)) > buf.remaining() {
        return Err(DecodeError::CountTooLarge {
            what,
            count: count as u64,
        });
    }
    Ok(count)
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    Ok(buf.split_to(len))
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u32_le(bytes.len() as u32);
    buf.put_slice(bytes);
}

impl Encode for Ballot {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.round);
        buf.put_u32_le(self.node.0);
    }
}

impl Decode for Ballot {
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        Ok(Ballot {
            round: get_u64(buf)?,
            node: NodeId(get_u32(buf)?),
        })
    }
}

fn put_instance(buf: &mut BytesMut, instance: InstanceId) {
    buf.put_u64_le(instance.0);
}

fn get_instance(buf: &mut Bytes) -> Result<InstanceId, DecodeError> {
    Ok(InstanceId(get_u64(buf)?))
}

impl Encode for Value {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Value::Noop => buf.put_u8(0),
            Value::Batch(commands) => {
                buf.put_u8(1);
                buf.put_u32_le(commands.len() as u32);
                for command in commands.iter() {
                    put_bytes(buf, command);
                }
            }
            Value::Reconfig(membership) => {
                buf.put_u8(2);
                membership.encode(buf);
            }
        }
    }
}

impl Encode for Membership {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.epoch);
        buf.put_u32_le(self.members.len() as u32);
        for member in &self.members {
            buf.put_u32_le(member.id.0);
            buf.put_u8(match member.role {
                MemberRole::Voter => 0,
                MemberRole::Learner => 1,
                MemberRole::Joining => 2,
            });
            put_bytes(buf, &member.addr);
        }
        buf.put_u32_le(self.removed.len() as u32);
        for id in &self.removed {
            buf.put_u32_le(id.0);
        }
    }
}

impl Decode for Membership {
    /// Decodes and validates (`Membership::validate`): a membership that
    /// breaks its invariants is refused like any malformed input.
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let epoch = get_u64(buf)?;
        let count = get_count(buf, 9, "member")?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let id = NodeId(get_u32(buf)?);
            let role = match get_u8(buf)? {
                0 => MemberRole::Voter,
                1 => MemberRole::Learner,
                2 => MemberRole::Joining,
                tag => return Err(DecodeError::UnknownTag { what: "role", tag }),
            };
            members.push(Member {
                id,
                role,
                addr: get_bytes(buf)?,
            });
        }
        let count = get_count(buf, 4, "removed id")?;
        let mut removed = Vec::with_capacity(count);
        for _ in 0..count {
            removed.push(NodeId(get_u32(buf)?));
        }
        let membership = Membership {
            epoch,
            members,
            removed,
        };
        membership
            .validate()
            .map_err(|_| DecodeError::Invalid("membership"))?;
        Ok(membership)
    }
}

fn put_member_op(buf: &mut BytesMut, op: &MemberOp) {
    match op {
        MemberOp::Change { change, force } => {
            buf.put_u8(u8::from(*force));
            match change {
                MembershipChange::Add { id, addr, promote } => {
                    buf.put_u8(0);
                    buf.put_u32_le(id.0);
                    buf.put_u8(u8::from(*promote));
                    put_bytes(buf, addr);
                }
                MembershipChange::Promote { id } => {
                    buf.put_u8(1);
                    buf.put_u32_le(id.0);
                }
                MembershipChange::Remove { id } => {
                    buf.put_u8(2);
                    buf.put_u32_le(id.0);
                }
            }
        }
        MemberOp::Transfer { to } => {
            buf.put_u8(2);
            buf.put_u8(3);
            buf.put_u32_le(to.0);
        }
    }
}

fn member_op_len(op: &MemberOp) -> usize {
    1 + 1
        + 4
        + match op {
            MemberOp::Change {
                change: MembershipChange::Add { addr, .. },
                ..
            } => 1 + 4 + addr.len(),
            _ => 0,
        }
}

fn get_bool(buf: &mut Bytes) -> Result<bool, DecodeError> {
    match get_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag { what: "bool", tag }),
    }
}

fn get_member_op(buf: &mut Bytes) -> Result<MemberOp, DecodeError> {
    let force = get_u8(buf)?;
    let kind = get_u8(buf)?;
    let id = NodeId(get_u32(buf)?);
    let change = match (force, kind) {
        (2, 3) => return Ok(MemberOp::Transfer { to: id }),
        (0 | 1, 0) => {
            let promote = get_bool(buf)?;
            let addr = get_bytes(buf)?;
            if addr.len() > MEMBER_ADDR_BYTES_MAX {
                return Err(DecodeError::Invalid("member address"));
            }
            MembershipChange::Add { id, addr, promote }
        }
        (0 | 1, 1) => MembershipChange::Promote { id },
        (0 | 1, 2) => MembershipChange::Remove { id },
        (_, tag) => {
            return Err(DecodeError::UnknownTag {
                what: "member operation",
                tag,
            })
        }
    };
    Ok(MemberOp::Change {
        change,
        force: force == 1,
    })
}

/// The length of a schedule's encoding.
pub fn schedule_encoded_len(schedule: &Schedule) -> usize {
    4 + schedule
        .entries()
        .iter()
        .map(|e| INSTANCE_BYTES + crate::value::membership_encoded_len(&e.membership))
        .sum::<usize>()
}

impl Encode for Schedule {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u32_le(self.entries().len() as u32);
        for entry in self.entries() {
            put_instance(buf, entry.from);
            entry.membership.encode(buf);
        }
    }
}

impl Decode for Schedule {
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let count = get_count(buf, 8 + 16, "schedule entry")?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(Scheduled {
                from: get_instance(buf)?,
                membership: Arc::new(Membership::decode(buf)?),
            });
        }
        Schedule::from_entries(entries).map_err(|_| DecodeError::Invalid("schedule"))
    }
}

impl Decode for Value {
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        match get_u8(buf)? {
            0 => Ok(Value::Noop),
            1 => {
                let count = get_count(buf, 4, "command")?;
                let mut commands: Vec<Command> = Vec::with_capacity(count);
                for _ in 0..count {
                    commands.push(get_bytes(buf)?);
                }
                Ok(Value::batch(commands))
            }
            2 => Ok(Value::Reconfig(Arc::new(Membership::decode(buf)?))),
            tag => Err(DecodeError::UnknownTag { what: "value", tag }),
        }
    }
}

impl Encode for Record {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Record::Promise { group, ballot } => {
                buf.put_u8(1);
                buf.put_u32_le(group.0);
                ballot.encode(buf);
            }
            Record::Accept {
                group,
                instance,
                ballot,
                value,
            } => {
                buf.put_u8(2);
                buf.put_u32_le(group.0);
                put_instance(buf, *instance);
                ballot.encode(buf);
                value.encode(buf);
            }
            Record::Chosen {
                group,
                instance,
                value: ChosenValue::Accepted(ballot),
            } => {
                buf.put_u8(3);
                buf.put_u32_le(group.0);
                put_instance(buf, *instance);
                ballot.encode(buf);
            }
            Record::Chosen {
                group,
                instance,
                value: ChosenValue::Learned(value),
            } => {
                buf.put_u8(4);
                buf.put_u32_le(group.0);
                put_instance(buf, *instance);
                value.encode(buf);
            }
        }
    }
}

impl Record {
    /// The group and instance of an encoded Accept or Chosen record, read
    /// without decoding its value; `None` for a Promise, an unknown tag or
    /// a buffer too short (the caller decodes the records it keeps, which
    /// checks them whole).
    pub fn peek_instance(encoded: &[u8]) -> Option<(GroupId, InstanceId)> {
        if !matches!(encoded.first(), Some(2..=4)) {
            return None;
        }
        let group = u32::from_le_bytes(encoded.get(1..5)?.try_into().ok()?);
        let instance = u64::from_le_bytes(encoded.get(5..13)?.try_into().ok()?);
        Some((GroupId(group), InstanceId(instance)))
    }
}

impl Decode for Record {
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let tag = get_u8(buf)?;
        let group = GroupId(get_u32(buf)?);
        Ok(match tag {
            1 => Record::Promise {
                group,
                ballot: Ballot::decode(buf)?,
            },
            2 => Record::Accept {
                group,
                instance: get_instance(buf)?,
                ballot: Ballot::decode(buf)?,
                value: Value::decode(buf)?,
            },
            3 => Record::Chosen {
                group,
                instance: get_instance(buf)?,
                value: ChosenValue::Accepted(Ballot::decode(buf)?),
            },
            4 => Record::Chosen {
                group,
                instance: get_instance(buf)?,
                value: ChosenValue::Learned(Value::decode(buf)?),
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "record",
                    tag,
                })
            }
        })
    }
}

fn put_mark(buf: &mut BytesMut, mark: &AppliedMark) {
    put_instance(buf, mark.applied_end);
    buf.put_u64_le(mark.checksum.0);
}

fn get_mark(buf: &mut Bytes) -> Result<AppliedMark, DecodeError> {
    Ok(AppliedMark {
        applied_end: get_instance(buf)?,
        checksum: Checksum(get_u64(buf)?),
    })
}

impl Encode for Message {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u32_le(self.group.0);
        buf.put_u32_le(self.from.0);
        buf.put_u32_le(self.to.0);
        match &self.body {
            Body::Prepare {
                ballot,
                first_instance,
            } => {
                buf.put_u8(1);
                ballot.encode(buf);
                put_instance(buf, *first_instance);
            }
            Body::Promise {
                ballot,
                compacted_end,
                first_instance,
                entries,
                more_from,
            } => {
                buf.put_u8(2);
                ballot.encode(buf);
                put_instance(buf, *compacted_end);
                put_instance(buf, *first_instance);
                put_option(buf, more_from.as_ref(), |buf, next| {
                    put_instance(buf, *next)
                });
                buf.put_u32_le(entries.len() as u32);
                for entry in entries {
                    put_instance(buf, entry.instance);
                    entry.ballot.encode(buf);
                    buf.put_u8(u8::from(entry.chosen));
                    entry.value.encode(buf);
                }
            }
            Body::Accept {
                ballot,
                instance,
                value,
                chosen_end,
            } => {
                buf.put_u8(3);
                ballot.encode(buf);
                put_instance(buf, *instance);
                put_instance(buf, *chosen_end);
                value.encode(buf);
            }
            Body::Accepted { ballot, instance } => {
                buf.put_u8(4);
                ballot.encode(buf);
                put_instance(buf, *instance);
            }
            Body::Reject { ballot, promised } => {
                buf.put_u8(5);
                ballot.encode(buf);
                promised.encode(buf);
            }
            Body::Heartbeat {
                ballot,
                chosen_end,
                applied,
                probe,
            } => {
                buf.put_u8(6);
                ballot.encode(buf);
                put_instance(buf, *chosen_end);
                put_mark(buf, applied);
                buf.put_u64_le(*probe);
            }
            Body::HeartbeatAck {
                ballot,
                chosen_end,
                applied,
                probe,
                granted_ms,
                granted_drift_ppm,
                restoring,
            } => {
                buf.put_u8(7);
                ballot.encode(buf);
                put_instance(buf, *chosen_end);
                put_mark(buf, applied);
                buf.put_u64_le(*probe);
                buf.put_u64_le(*granted_ms);
                buf.put_u32_le(*granted_drift_ppm);
                buf.put_u8(match restoring {
                    Restoring::No => 0,
                    Restoring::Yes => 1,
                    Restoring::Declining => 2,
                    Restoring::Rebuilding => 3,
                });
            }
            Body::Forward { commands } => {
                buf.put_u8(8);
                buf.put_u32_le(commands.len() as u32);
                for command in commands {
                    put_bytes(buf, command);
                }
            }
            Body::CatchupRequest { from, to } => {
                buf.put_u8(9);
                put_instance(buf, *from);
                put_instance(buf, *to);
            }
            Body::CatchupReply { entries } => {
                buf.put_u8(10);
                buf.put_u32_le(entries.len() as u32);
                for (instance, value) in entries {
                    put_instance(buf, *instance);
                    value.encode(buf);
                }
            }
            Body::SnapshotChunk {
                meta,
                total_len,
                digest,
                offset,
                data,
                memberships,
            } => {
                buf.put_u8(11);
                put_instance(buf, meta.applied_end);
                buf.put_u64_le(meta.checksum.0);
                buf.put_u64_le(*total_len);
                buf.put_u128_le(digest.0);
                buf.put_u64_le(*offset);
                put_bytes(buf, data);
                put_option(buf, memberships.as_ref(), |buf, schedule| {
                    schedule.encode(buf)
                });
            }
            Body::SnapshotRequest {
                applied_end,
                offset,
            } => {
                buf.put_u8(12);
                put_instance(buf, *applied_end);
                buf.put_u64_le(*offset);
            }
            Body::ReadIndexRequest { id, vouch } => {
                buf.put_u8(13);
                buf.put_u64_le(*id);
                put_option(buf, vouch.as_ref(), |buf, ballot| ballot.encode(buf));
            }
            Body::ReadIndexReply {
                id,
                index,
                chosen_end,
            } => {
                buf.put_u8(14);
                buf.put_u64_le(*id);
                put_instance(buf, *index);
                put_instance(buf, *chosen_end);
            }
            Body::StateDigest { mark } => {
                buf.put_u8(15);
                put_instance(buf, mark.applied_end);
                buf.put_u64_le(mark.digest);
            }
            Body::TakeOver { ballot, to } => {
                buf.put_u8(16);
                ballot.encode(buf);
                buf.put_u32_le(to.0);
            }
            Body::MemberRequest { token, op } => {
                buf.put_u8(17);
                buf.put_u64_le(*token);
                put_member_op(buf, op);
            }
            Body::MemberReply { token, outcome } => {
                buf.put_u8(18);
                buf.put_u64_le(*token);
                match outcome {
                    Ok(epoch) => {
                        buf.put_u8(0);
                        buf.put_u64_le(*epoch);
                    }
                    Err(why) => {
                        buf.put_u8(1);
                        put_bytes(buf, why.as_bytes());
                    }
                }
            }
            // Tags 32 and up: rebuild messages (kept apart from the tags
            // other message kinds take next).
            Body::StateQuery => buf.put_u8(32),
            Body::StateReport {
                rebuilding,
                promised,
                log_end,
            } => {
                buf.put_u8(33);
                buf.put_u8(u8::from(*rebuilding));
                promised.encode(buf);
                put_instance(buf, *log_end);
            }
        }
    }
}

/// Bytes of a message's header: group, sender, receiver and body tag.
const MESSAGE_HEADER_BYTES: usize = 4 + 4 + 4 + 1;
/// Bytes of an encoded ballot.
const BALLOT_BYTES: usize = 8 + 4;
/// Bytes of an encoded instance.
const INSTANCE_BYTES: usize = 8;

/// The length of `msg`'s encoding, computed without encoding it (the
/// transport checks it against its frame limit before queueing a message).
/// Exact: `encoded_len(m) == m.to_bytes().len()` (tested below).
pub fn encoded_len(msg: &Message) -> usize {
    let body = match &msg.body {
        Body::Prepare { .. } => BALLOT_BYTES + INSTANCE_BYTES,
        Body::Promise {
            more_from, entries, ..
        } => {
            BALLOT_BYTES
                + 2 * INSTANCE_BYTES
                + 1
                + more_from.map_or(0, |_| INSTANCE_BYTES)
                + 4
                + entries
                    .iter()
                    .map(|e| INSTANCE_BYTES + BALLOT_BYTES + 1 + e.value.encoded_len())
                    .sum::<usize>()
        }
        Body::Accept { value, .. } => BALLOT_BYTES + 2 * INSTANCE_BYTES + value.encoded_len(),
        Body::Accepted { .. } => BALLOT_BYTES + INSTANCE_BYTES,
        Body::Reject { .. } => 2 * BALLOT_BYTES,
        Body::Heartbeat { .. } => BALLOT_BYTES + INSTANCE_BYTES + (INSTANCE_BYTES + 8) + 8,
        Body::HeartbeatAck { .. } => {
            BALLOT_BYTES + INSTANCE_BYTES + (INSTANCE_BYTES + 8) + 8 + 8 + 4 + 1
        }
        Body::Forward { commands } => 4 + commands.iter().map(|c| 4 + c.len()).sum::<usize>(),
        Body::CatchupRequest { .. } => 2 * INSTANCE_BYTES,
        Body::CatchupReply { entries } => {
            4 + entries
                .iter()
                .map(|(_, v)| INSTANCE_BYTES + v.encoded_len())
                .sum::<usize>()
        }
        Body::SnapshotChunk {
            data, memberships, ..
        } => {
            INSTANCE_BYTES
                + 8
                + 8
                + 16
                + 8
                + 4
                + data.len()
                + 1
                + memberships.as_ref().map_or(0, schedule_encoded_len)
        }
        Body::SnapshotRequest { .. } => INSTANCE_BYTES + 8,
        Body::ReadIndexRequest { vouch, .. } => 8 + 1 + vouch.map_or(0, |_| BALLOT_BYTES),
        Body::ReadIndexReply { .. } => 8 + 2 * INSTANCE_BYTES,
        Body::StateDigest { .. } => INSTANCE_BYTES + 8,
        Body::TakeOver { .. } => BALLOT_BYTES + 4,
        Body::MemberRequest { op, .. } => 8 + member_op_len(op),
        Body::MemberReply { outcome, .. } => {
            8 + 1
                + match outcome {
                    Ok(_) => 8,
                    Err(why) => 4 + why.len(),
                }
        }
        Body::StateQuery => 0,
        Body::StateReport { .. } => 1 + BALLOT_BYTES + INSTANCE_BYTES,
    };
    MESSAGE_HEADER_BYTES + body
}

impl Decode for Message {
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let group = GroupId(get_u32(buf)?);
        let from = NodeId(get_u32(buf)?);
        let to = NodeId(get_u32(buf)?);
        let body = match get_u8(buf)? {
            1 => Body::Prepare {
                ballot: Ballot::decode(buf)?,
                first_instance: get_instance(buf)?,
            },
            2 => {
                let ballot = Ballot::decode(buf)?;
                let compacted_end = get_instance(buf)?;
                let first_instance = get_instance(buf)?;
                let more_from = get_option(buf, get_instance)?;
                let count = get_count(buf, 22, "promise entry")?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let instance = get_instance(buf)?;
                    let ballot = Ballot::decode(buf)?;
                    let chosen = match get_u8(buf)? {
                        0 => false,
                        1 => true,
                        tag => return Err(DecodeError::UnknownTag { what: "bool", tag }),
                    };
                    let value = Value::decode(buf)?;
                    entries.push(PromiseEntry {
                        instance,
                        ballot,
                        value,
                        chosen,
                    });
                }
                Body::Promise {
                    ballot,
                    compacted_end,
                    first_instance,
                    entries,
                    more_from,
                }
            }
            3 => Body::Accept {
                ballot: Ballot::decode(buf)?,
                instance: get_instance(buf)?,
                chosen_end: get_instance(buf)?,
                value: Value::decode(buf)?,
            },
            4 => Body::Accepted {
                ballot: Ballot::decode(buf)?,
                instance: get_instance(buf)?,
            },
            5 => Body::Reject {
                ballot: Ballot::decode(buf)?,
                promised: Ballot::decode(buf)?,
            },
            6 => Body::Heartbeat {
                ballot: Ballot::decode(buf)?,
                chosen_end: get_instance(buf)?,
                applied: get_mark(buf)?,
                probe: get_u64(buf)?,
            },
            7 => Body::HeartbeatAck {
                ballot: Ballot::decode(buf)?,
                chosen_end: get_instance(buf)?,
                applied: get_mark(buf)?,
                probe: get_u64(buf)?,
                granted_ms: get_u64(buf)?,
                granted_drift_ppm: get_u32(buf)?,
                restoring: match get_u8(buf)? {
                    0 => Restoring::No,
                    1 => Restoring::Yes,
                    2 => Restoring::Declining,
                    3 => Restoring::Rebuilding,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "restoring",
                            tag,
                        })
                    }
                },
            },
            8 => {
                let count = get_count(buf, 4, "command")?;
                let mut commands = Vec::with_capacity(count);
                for _ in 0..count {
                    commands.push(get_bytes(buf)?);
                }
                Body::Forward { commands }
            }
            9 => Body::CatchupRequest {
                from: get_instance(buf)?,
                to: get_instance(buf)?,
            },
            10 => {
                let count = get_count(buf, 9, "catch-up entry")?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push((get_instance(buf)?, Value::decode(buf)?));
                }
                Body::CatchupReply { entries }
            }
            11 => Body::SnapshotChunk {
                meta: SnapshotMeta {
                    applied_end: get_instance(buf)?,
                    checksum: Checksum(get_u64(buf)?),
                },
                total_len: get_u64(buf)?,
                digest: SnapshotDigest(get_u128(buf)?),
                offset: get_u64(buf)?,
                data: get_bytes(buf)?,
                memberships: get_option(buf, Schedule::decode)?,
            },
            12 => Body::SnapshotRequest {
                applied_end: get_instance(buf)?,
                offset: get_u64(buf)?,
            },
            13 => Body::ReadIndexRequest {
                id: get_u64(buf)?,
                vouch: get_option(buf, Ballot::decode)?,
            },
            14 => Body::ReadIndexReply {
                id: get_u64(buf)?,
                index: get_instance(buf)?,
                chosen_end: get_instance(buf)?,
            },
            15 => Body::StateDigest {
                mark: StateMark {
                    applied_end: get_instance(buf)?,
                    digest: get_u64(buf)?,
                },
            },
            16 => Body::TakeOver {
                ballot: Ballot::decode(buf)?,
                to: NodeId(get_u32(buf)?),
            },
            17 => Body::MemberRequest {
                token: get_u64(buf)?,
                op: get_member_op(buf)?,
            },
            18 => Body::MemberReply {
                token: get_u64(buf)?,
                outcome: match get_u8(buf)? {
                    0 => Ok(get_u64(buf)?),
                    1 => Err(String::from_utf8_lossy(&get_bytes(buf)?).into_owned()),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "outcome",
                            tag,
                        })
                    }
                },
            },
            32 => Body::StateQuery,
            33 => Body::StateReport {
                rebuilding: match get_u8(buf)? {
                    0 => false,
                    1 => true,
                    tag => return Err(DecodeError::UnknownTag { what: "bool", tag }),
                },
                promised: Ballot::decode(buf)?,
                log_end: get_instance(buf)?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "message",
                    tag,
                })
            }
        };
        Ok(Message {
            group,
            from,
            to,
            body,
        })
    }
}
