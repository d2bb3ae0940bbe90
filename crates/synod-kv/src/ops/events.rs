//! The keyspace events of each command: the `notifyKeyspaceEvent` calls of
//! Redis' command implementations, derived in one place after the command
//! ran, from the command, its reply and what [`Before`] saw of its keys.
//!
//! Runs on the apply path of every node, and only when the node's
//! `notify-keyspace-events` is on ([`Keyspace::event_flags`] non-zero): with
//! it off, [`super::write_unchecked`] pays one branch. Events change
//! nothing replicated (see [`crate::pubsub::keyspace_events`]).
//!
//! Events the keyspace emits itself, in the order Redis emits them:
//! `new` when a key is created and `expired` when an expired key is
//! removed (both before the command's events), and `del` when a command
//! empties a collection (after them, from [`Keyspace::flush_emptied`]).
//!
//! Known differences from Redis: `ZADD` without `CH` that only changes
//! scores emits nothing (its reply, 0, does not tell), and the streams,
//! `MOVE`, `RESTORE`, `evicted` and `keymiss` events do not exist here
//! (synod has no streams, one database, and never evicts).

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::{GetExExpiry, KvCommand, ListEnd, SetCondition, SetExpiry};
use crate::command_zset::{SetOperation as ZSetOperation, ZRangeSpec, ZSetCommand};
use crate::keyspace::Keyspace;
use crate::pubsub::keyspace_events::{GENERIC, HASH, LIST, SET, STRING, ZSET};

/// What the command's keys were before it ran, for the events that depend
/// on it (whether a conditional SET wrote, which keys DEL removed, whether
/// a STORE destination it left empty existed).
pub(super) struct Before {
    /// One per [`probed_keys`] key: (live, with an expiry).
    keys: Vec<(bool, bool)>,
    /// SMOVE: the destination already held the member (Redis emits no
    /// `sadd` then).
    member_in_destination: bool,
}

/// The keys whose state [`Before`] records for `command`.
fn probed_keys(command: &KvCommand) -> Vec<&Bytes> {
    match command {
        KvCommand::Set { key, .. }
        | KvCommand::GetEx { key, .. }
        | KvCommand::LTrim { key, .. } => vec![key],
        KvCommand::Del { keys } => keys.iter().collect(),
        KvCommand::BitOp { destination, .. } => vec![destination],
        KvCommand::SetCombine {
            store: Some(destination),
            ..
        } => vec![destination],
        KvCommand::Sort(sort) => sort.store.iter().collect(),
        KvCommand::ZSet(zset) => match &**zset {
            ZSetCommand::RangeStore { destination, .. }
            | ZSetCommand::Combine {
                destination: Some(destination),
                ..
            } => vec![destination],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Records what [`emit`] will need to know of the state before `command`.
pub(super) fn before(keyspace: &Keyspace, command: &KvCommand, now: u64) -> Before {
    Before {
        keys: probed_keys(command)
            .into_iter()
            .map(|key| {
                let entry = keyspace.live(key, now);
                (
                    entry.is_some(),
                    entry.is_some_and(|entry| entry.expire_at_ms().is_some()),
                )
            })
            .collect(),
        member_in_destination: match command {
            KvCommand::SMove {
                destination,
                member,
                ..
            } => super::sets::set_at(keyspace, destination, now)
                .ok()
                .flatten()
                .is_some_and(|set| set.contains(member)),
            _ => false,
        },
    }
}

/// Whether a pop-like reply took something.
fn took_something(reply: &Reply) -> bool {
    match reply {
        Reply::Null | Reply::NullArray | Reply::Error(_) => false,
        Reply::Array(items) => !items.is_empty(),
        _ => true,
    }
}

fn positive(reply: &Reply) -> bool {
    matches!(reply, Reply::Integer(n) if *n > 0)
}

fn pop_event(end: ListEnd) -> &'static str {
    match end {
        ListEnd::Left => "lpop",
        ListEnd::Right => "rpop",
    }
}

fn push_event(end: ListEnd) -> &'static str {
    match end {
        ListEnd::Left => "lpush",
        ListEnd::Right => "rpush",
    }
}

/// Emits the events of `command`, which just ran with `reply`, then the
/// `del` events of the collections it emptied.
pub(super) fn emit(
    keyspace: &mut Keyspace,
    command: &KvCommand,
    reply: &Reply,
    before: &Before,
    now: u64,
) {
    if !matches!(reply, Reply::Error(_)) {
        command_events(keyspace, command, reply, before, now);
    }
    keyspace.flush_emptied();
}

/// A STORE destination: `event` when it now holds a value, `del` when the
/// command removed it (an empty result deletes the destination).
fn stored(keyspace: &Keyspace, class: u32, event: &str, key: &[u8], existed: bool, now: u64) {
    if keyspace.live(key, now).is_some() {
        keyspace.event(class, event, key);
    } else if existed {
        keyspace.event(GENERIC, "del", key);
    }
}

fn command_events(
    keyspace: &Keyspace,
    command: &KvCommand,
    reply: &Reply,
    before: &Before,
    now: u64,
) {
    let was_live = |index: usize| before.keys.get(index).is_some_and(|(live, _)| *live);
    let event = |class: u32, name: &str, key: &[u8]| keyspace.event(class, name, key);
    match command {
        KvCommand::Set {
            key,
            condition,
            get,
            expiry,
            ..
        } => {
            let wrote = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !was_live(0),
                SetCondition::IfPresent => was_live(0),
            } && (*get || !matches!(reply, Reply::Null));
            if wrote {
                event(STRING, "set", key);
                if matches!(expiry, SetExpiry::After { .. } | SetExpiry::At { .. }) {
                    event(GENERIC, "expire", key);
                }
            }
        }
        KvCommand::SetNx { key, .. } if positive(reply) => event(STRING, "set", key),
        KvCommand::SetEx { key, .. } => {
            event(STRING, "set", key);
            event(GENERIC, "expire", key);
        }
        KvCommand::GetSet { key, .. } => event(STRING, "set", key),
        KvCommand::MSet { pairs } => pairs.iter().for_each(|(key, _)| event(STRING, "set", key)),
        KvCommand::MSetNx { pairs } if positive(reply) => {
            pairs.iter().for_each(|(key, _)| event(STRING, "set", key))
        }
        KvCommand::GetDel { key } if took_something(reply) => event(GENERIC, "del", key),
        KvCommand::GetEx { key, expiry } if took_something(reply) => match expiry {
            GetExExpiry::Unchanged => {}
            GetExExpiry::Persist => {
                if before.keys.first().is_some_and(|(_, expiring)| *expiring) {
                    event(GENERIC, "persist", key);
                }
            }
            GetExExpiry::After { .. } | GetExExpiry::At { .. } => {
                if keyspace.live(key, now).is_some() {
                    event(GENERIC, "expire", key);
                } else {
                    event(GENERIC, "del", key);
                }
            }
        },
        KvCommand::IncrBy { key, .. } => event(STRING, "incrby", key),
        KvCommand::IncrByFloat { key, .. } => event(STRING, "incrbyfloat", key),
        KvCommand::Append { key, .. } => event(STRING, "append", key),
        KvCommand::SetRange { key, value, .. } if !value.is_empty() => {
            event(STRING, "setrange", key)
        }
        KvCommand::SetBit { key, .. } => event(STRING, "setbit", key),
        KvCommand::BitOp { destination, .. } => {
            stored(keyspace, STRING, "set", destination, was_live(0), now)
        }
        KvCommand::Del { keys } => {
            for (index, key) in keys.iter().enumerate() {
                // A key named twice is deleted (and notified) once.
                if was_live(index) && !keys[..index].contains(key) {
                    event(GENERIC, "del", key);
                }
            }
        }
        KvCommand::Expire { key, .. } if positive(reply) => {
            if keyspace.live(key, now).is_some() {
                event(GENERIC, "expire", key);
            } else {
                event(GENERIC, "del", key);
            }
        }
        KvCommand::Persist { key } if positive(reply) => event(GENERIC, "persist", key),
        KvCommand::Rename { key, new_key, .. }
            if key != new_key && matches!(reply, Reply::Simple(_) | Reply::Integer(1)) =>
        {
            event(GENERIC, "rename_from", key);
            event(GENERIC, "rename_to", new_key);
        }
        KvCommand::Copy { destination, .. } if positive(reply) => {
            event(GENERIC, "copy_to", destination)
        }
        KvCommand::Sort(sort) => {
            if let Some(destination) = &sort.store {
                stored(keyspace, LIST, "sortstore", destination, was_live(0), now);
            }
        }
        KvCommand::HSet { key, .. } | KvCommand::HMSet { key, .. } => event(HASH, "hset", key),
        KvCommand::HSetNx { key, .. } if positive(reply) => event(HASH, "hset", key),
        KvCommand::HDel { key, .. } if positive(reply) => event(HASH, "hdel", key),
        KvCommand::HIncrBy { key, .. } => event(HASH, "hincrby", key),
        KvCommand::HIncrByFloat { key, .. } => event(HASH, "hincrbyfloat", key),
        KvCommand::Push { key, end, .. } => event(LIST, push_event(*end), key),
        KvCommand::PushX { key, end, .. } if positive(reply) => event(LIST, push_event(*end), key),
        KvCommand::Pop { key, end, .. } if took_something(reply) => {
            event(LIST, pop_event(*end), key)
        }
        KvCommand::LSet { key, .. } => event(LIST, "lset", key),
        KvCommand::LInsert { key, .. } if positive(reply) => event(LIST, "linsert", key),
        KvCommand::LRem { key, .. } if positive(reply) => event(LIST, "lrem", key),
        KvCommand::LTrim { key, .. } if was_live(0) => event(LIST, "ltrim", key),
        KvCommand::LMove {
            source,
            destination,
            from,
            to,
        } if took_something(reply) => {
            // Redis pushes (and notifies) first, then notifies the pop.
            event(LIST, push_event(*to), destination);
            event(LIST, pop_event(*from), source);
        }
        KvCommand::LMPop { end, .. } => {
            if let Reply::Array(items) = reply {
                if let Some(Reply::Bulk(key)) = items.first() {
                    event(LIST, pop_event(*end), key);
                }
            }
        }
        KvCommand::SAdd { key, .. } if positive(reply) => event(SET, "sadd", key),
        KvCommand::SRem { key, .. } if positive(reply) => event(SET, "srem", key),
        KvCommand::SPop { key, .. } if took_something(reply) => event(SET, "spop", key),
        KvCommand::SMove {
            source,
            destination,
            ..
        } if positive(reply) && source != destination => {
            // SMOVE within one set changes nothing: no event, as in Redis.
            event(SET, "srem", source);
            if !before.member_in_destination {
                event(SET, "sadd", destination);
            }
        }
        KvCommand::SetCombine {
            operation,
            store: Some(destination),
            ..
        } => stored(
            keyspace,
            SET,
            operation.name(true),
            destination,
            was_live(0),
            now,
        ),
        KvCommand::ZSet(zset) => zset_events(keyspace, zset, reply, was_live(0), now),
        _ => {}
    }
}

fn zset_events(keyspace: &Keyspace, command: &ZSetCommand, reply: &Reply, existed: bool, now: u64) {
    let event = |name: &str, key: &[u8]| keyspace.event(ZSET, name, key);
    match command {
        ZSetCommand::Add { key, flags, .. } => {
            if flags.increment {
                if !matches!(reply, Reply::Null) {
                    event("zincr", key);
                }
            } else if positive(reply) {
                event("zadd", key);
            }
        }
        ZSetCommand::IncrBy { key, .. } => event("zincr", key),
        ZSetCommand::Rem { key, .. } if positive(reply) => event("zrem", key),
        ZSetCommand::RemRange { key, range } if positive(reply) => {
            let name = match range {
                ZRangeSpec::Rank { .. } => "zremrangebyrank",
                ZRangeSpec::Score(_) => "zremrangebyscore",
                ZRangeSpec::Lex(_) => "zremrangebylex",
            };
            event(name, key);
        }
        ZSetCommand::Pop { key, max, .. } if took_something(reply) => {
            event(if *max { "zpopmax" } else { "zpopmin" }, key)
        }
        ZSetCommand::MPop { max, .. } => {
            if let Reply::Array(items) = reply {
                if let Some(Reply::Bulk(key)) = items.first() {
                    event(if *max { "zpopmax" } else { "zpopmin" }, key);
                }
            }
        }
        ZSetCommand::RangeStore { destination, .. } => {
            stored(keyspace, ZSET, "zrangestore", destination, existed, now)
        }
        ZSetCommand::Combine {
            operation,
            destination: Some(destination),
            ..
        } => {
            let name = match operation {
                ZSetOperation::Union => "zunionstore",
                ZSetOperation::Inter => "zinterstore",
                ZSetOperation::Diff => "zdiffstore",
            };
            stored(keyspace, ZSET, name, destination, existed, now);
        }
        _ => {}
    }
}
