//! Command execution against the [`Keyspace`]: one module per data type.
//!
//! [`read`] answers a read-only command from a shared reference (the
//! `query` path); [`write`] runs any command, reads included, against a
//! mutable keyspace (the `apply` path). Both take the time from the
//! `ApplyContext`, so they are pure functions of (state, command, context).

pub(crate) mod acl;
pub(crate) mod bits;
mod collections;
mod dump;
mod events;
mod hashes;
mod keys;
mod keys_more;
mod lists;
pub(crate) mod memory;
mod random;
mod sets;
pub(crate) mod strings;
mod zsets;

use synod::ApplyContext;
use synod_resp::Reply;

use crate::command::{KvCommand, TimeUnit};
use crate::keyspace::{Entry, Keyspace, KeyspaceView, ValueRef};
use crate::trie::PREFETCH_GROUP_MAX;

pub(crate) const WRONG_TYPE: &str =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
pub(crate) const OVERFLOW: &str = "ERR increment or decrement would overflow";

pub(crate) use keys_more::object_help;

pub(crate) fn wrong_type() -> Reply {
    Reply::error(WRONG_TYPE)
}

/// The log time as a signed number, the type Redis computes expiries in.
pub(crate) fn now_signed(ctx: &ApplyContext) -> i64 {
    i64::try_from(ctx.time_ms).unwrap_or(i64::MAX)
}

/// Answers a read-only command without changing anything.
pub(crate) fn read(keyspace: &Keyspace, command: &KvCommand, ctx: &ApplyContext) -> Reply {
    read_at(keyspace, command, ctx, 0)
}

/// [`read`] of the command at `position` in its transaction or batch (0
/// alone): the position seeds random replies apart (see
/// [`random::generator`]).
fn read_at(keyspace: &Keyspace, command: &KvCommand, ctx: &ApplyContext, position: u32) -> Reply {
    let now = ctx.time_ms;
    match command {
        KvCommand::Get { key } => strings::get(keyspace, key, now),
        KvCommand::MGet { keys } => strings::mget(keyspace, keys, now),
        KvCommand::StrLen { key } => strings::strlen(keyspace, key, now),
        KvCommand::GetRange { key, start, end } => {
            strings::getrange(keyspace, key, *start, *end, now)
        }
        KvCommand::Exists { keys } => keys::exists(keyspace, keys, now),
        KvCommand::Ttl { key, unit } => keys::ttl(keyspace, key, *unit, now),
        KvCommand::Type { key } => keys::type_of(keyspace, key, now),
        KvCommand::Keys { pattern } => keys::keys(keyspace, pattern, now),
        KvCommand::Scan {
            cursor,
            pattern,
            count,
            type_name,
        } => keys::scan(
            keyspace,
            *cursor,
            pattern.as_deref(),
            *count,
            type_name.as_deref(),
            now,
        ),
        KvCommand::DbSize => keys::dbsize(keyspace, now),
        KvCommand::RandomKey { nonce } => keys_more::randomkey(keyspace, ctx, *nonce),
        KvCommand::Touch { keys } => keys_more::touch(keyspace, keys, now),
        KvCommand::ExpireTime { key, unit } => keys_more::expiretime(keyspace, key, *unit, now),
        KvCommand::Object { key, field } => keys_more::object(keyspace, key, *field, now),
        KvCommand::Sort(sort) if sort.store.is_none() => keys_more::sort_read(keyspace, sort, now),
        KvCommand::GetBit { key, offset } => bits::getbit(keyspace, key, *offset, now),
        KvCommand::BitCount { key, range } => bits::bitcount(keyspace, key, *range, now),
        KvCommand::BitPos {
            key,
            bit,
            start,
            end,
            unit,
        } => bits::bitpos(keyspace, key, *bit, *start, *end, *unit, now),
        KvCommand::Lcs { key1, key2, output } => bits::lcs(keyspace, key1, key2, *output, now),
        KvCommand::Dump { key } => dump::dump(keyspace, key, now),
        KvCommand::MemoryUsage { key } => dump::memory_usage(keyspace, key, now),
        KvCommand::HGet { key, field } => collections::hget(keyspace, key, field, now),
        KvCommand::HGetAll { key } => collections::hgetall(keyspace, key, now),
        KvCommand::HLen { key } => collections::hlen(keyspace, key, now),
        KvCommand::HExists { key, field } => collections::hexists(keyspace, key, field, now),
        KvCommand::LRange { key, start, stop } => {
            collections::lrange(keyspace, key, *start, *stop, now)
        }
        KvCommand::LLen { key } => collections::llen(keyspace, key, now),
        list_or_hash @ (KvCommand::LIndex { .. }
        | KvCommand::LPos { .. }
        | KvCommand::HMGet { .. }
        | KvCommand::HStrLen { .. }
        | KvCommand::HKeys { .. }
        | KvCommand::HVals { .. }
        | KvCommand::HRandField { .. }
        | KvCommand::HScan { .. }) => read_list_or_hash(keyspace, list_or_hash, ctx, position),
        set @ (KvCommand::SMembers { .. }
        | KvCommand::SIsMember { .. }
        | KvCommand::SMIsMember { .. }
        | KvCommand::SCard { .. }
        | KvCommand::SRandMember { .. }
        | KvCommand::SetCombine { store: None, .. }
        | KvCommand::SInterCard { .. }
        | KvCommand::SScan { .. }) => read_set(keyspace, set, ctx, position),
        KvCommand::ZSet(zset) => zsets::read(keyspace, zset, ctx, position),
        KvCommand::MemoryInfo => Reply::Array(vec![
            Reply::Integer(i64::try_from(keyspace.used_bytes()).unwrap_or(i64::MAX)),
            Reply::Integer(i64::try_from(keyspace.maxmemory_bytes()).unwrap_or(i64::MAX)),
            Reply::Integer(keyspace.len() as i64),
            Reply::Integer(keyspace.expires_len() as i64),
        ]),
        KvCommand::Watch { keys } => Reply::Array(
            keys.iter()
                .map(|key| {
                    let token = keyspace.watch_token(key, now);
                    // `as` keeps all 64 bits; the front end casts back.
                    Reply::Array(vec![
                        Reply::Integer(i64::from(token.live)),
                        Reply::Integer(token.stamp.instance as i64),
                        Reply::Integer(token.stamp.sequence as i64),
                    ])
                })
                .collect(),
        ),
        // Checked by the store before the transaction it opens runs (see
        // `Store::apply_command`), which drops this reply.
        KvCommand::WatchCheck { .. } => Reply::ok(),
        KvCommand::Exec(commands) => {
            run_batch(keyspace, commands, now, |keyspace, command, position| {
                read_at(keyspace, command, ctx, position)
            })
        }
        write => {
            debug_assert!(!write.is_read());
            Reply::error(format!(
                "ERR '{}' changes data and cannot be answered as a read",
                write.name()
            ))
        }
    }
}

/// Whether [`read`]'s answer to `command` in this state depends on the time
/// (`ctx.time_ms`): it looks at a key with an expiry, or it is a
/// keyspace-wide read (KEYS, SCAN, DBSIZE, RANDOMKEY) while any key has one.
/// `false` means the answer is the same at every time, so the runtime may
/// answer it by read index; `true` sends it through the log, to be answered
/// at the log's clock. Conservative: an expiry far in the future still counts.
/// Costs one lookup per key (O(1) for the keyspace-wide reads). RANDOMKEY's
/// pick is seeded by the time, but without expiries any live key is a
/// correct answer and the set of live keys does not change with the time.
pub(crate) fn read_depends_on_time(keyspace: &Keyspace, command: &KvCommand) -> bool {
    let any_expires = || keyspace.expires_len() > 0;
    match command {
        KvCommand::Get { key }
        | KvCommand::StrLen { key }
        | KvCommand::GetRange { key, .. }
        | KvCommand::Ttl { key, .. }
        | KvCommand::Type { key }
        | KvCommand::HGet { key, .. }
        | KvCommand::HGetAll { key }
        | KvCommand::HLen { key }
        | KvCommand::HExists { key, .. }
        | KvCommand::LRange { key, .. }
        | KvCommand::LLen { key }
        | KvCommand::LIndex { key, .. }
        | KvCommand::LPos { key, .. }
        | KvCommand::HMGet { key, .. }
        | KvCommand::HStrLen { key, .. }
        | KvCommand::HKeys { key }
        | KvCommand::HVals { key }
        | KvCommand::HScan { key, .. } => keyspace.has_expiry(key),
        // Not the time but the place in the log seeds the draw: through the
        // log, every HRANDFIELD gets its own (see `hashes::hrandfield`).
        KvCommand::HRandField { .. } | KvCommand::SRandMember { .. } => true,
        KvCommand::SMembers { key }
        | KvCommand::SIsMember { key, .. }
        | KvCommand::SMIsMember { key, .. }
        | KvCommand::SCard { key }
        | KvCommand::SScan { key, .. } => keyspace.has_expiry(key),
        KvCommand::SetCombine { keys, .. } | KvCommand::SInterCard { keys, .. } => {
            keys.iter().any(|key| keyspace.has_expiry(key))
        }
        KvCommand::ExpireTime { key, .. }
        | KvCommand::Object { key, .. }
        | KvCommand::GetBit { key, .. }
        | KvCommand::BitCount { key, .. }
        | KvCommand::BitPos { key, .. }
        | KvCommand::Dump { key }
        | KvCommand::MemoryUsage { key } => keyspace.has_expiry(key),
        KvCommand::Lcs { key1, key2, .. } => keyspace.has_expiry(key1) || keyspace.has_expiry(key2),
        KvCommand::Touch { keys } => keys.iter().any(|key| keyspace.has_expiry(key)),
        // BY and GET read keys named by the elements: any expiry counts.
        KvCommand::Sort(_) => any_expires(),
        KvCommand::MGet { keys } | KvCommand::Exists { keys } => {
            keys.iter().any(|key| keyspace.has_expiry(key))
        }
        KvCommand::Keys { .. }
        | KvCommand::Scan { .. }
        | KvCommand::DbSize
        | KvCommand::RandomKey { .. } => any_expires(),
        KvCommand::MemoryInfo => false,
        // Seeded by its place in the log, as HRANDFIELD.
        KvCommand::ZSet(zset)
            if matches!(**zset, crate::command_zset::ZSetCommand::RandMember { .. }) =>
        {
            true
        }
        KvCommand::ZSet(zset) => zset.keys().iter().any(|key| keyspace.has_expiry(key)),
        KvCommand::Exec(commands) => commands
            .iter()
            .any(|command| read_depends_on_time(keyspace, command)),
        // Whether a key is live depends on the time when it has an expiry.
        KvCommand::Watch { keys } => keys.iter().any(|key| keyspace.has_expiry(key)),
        KvCommand::WatchCheck { watched } => watched
            .iter()
            .any(|watched| keyspace.has_expiry(&watched.key)),
        // Not a read: `read` answers an error, whatever the time.
        write => {
            debug_assert!(!write.is_read());
            false
        }
    }
}

/// Whether a read that [`read_depends_on_time`] sends through the log may
/// be answered at the log clock of the applied point when that answer is
/// also the one at the serving node's clock
/// (`StateMachine::query_settles_by_clock`): its tie to the time is only
/// which keys are live and for how long, which `read` computes from the time
/// it is given. Not a read that draws a random pick (RANDOMKEY is seeded by
/// the time, the RAND* commands by their place in the log: through the log
/// each gets its own draw, off it repeated ones would draw alike), nor one
/// answered off the event loop (it would be computed twice on the loop).
/// Nor one whose answer may be large (`small_to_settle`): the runtime builds
/// it twice, both copies alive at once, to compare them; such a read takes
/// the log as before. `now`: the log clock of the applied point.
pub(crate) fn read_settles_by_clock(keyspace: &Keyspace, command: &KvCommand, now: u64) -> bool {
    match command {
        KvCommand::HRandField { .. }
        | KvCommand::SRandMember { .. }
        | KvCommand::RandomKey { .. } => false,
        KvCommand::ZSet(zset)
            if matches!(**zset, crate::command_zset::ZSetCommand::RandMember { .. }) =>
        {
            false
        }
        KvCommand::Exec(commands) => {
            commands.len() <= SETTLE_TRANSACTION_COMMANDS_MAX
                && commands
                    .iter()
                    .all(|command| read_settles_by_clock(keyspace, command, now))
        }
        command => !read_off_loop(keyspace, command, now) && small_to_settle(keyspace, command),
    }
}

/// The most bytes of a string value a read that settles by the clock may
/// look at (its answer is built twice on the event loop).
const SETTLE_STRING_BYTES_MAX: usize = 64 << 10;
/// The most elements of a collection such a read may look at.
const SETTLE_ELEMENTS_MAX: usize = 1024;
/// The most keys such a read may name (MGET, EXISTS, SUNION...).
const SETTLE_KEYS_MAX: usize = 64;
/// The most commands of a read-only transaction that settles.
const SETTLE_TRANSACTION_COMMANDS_MAX: usize = 16;

/// Whether every key `command` names holds a value small enough for its
/// answer to be built twice cheaply: a string of at most
/// `SETTLE_STRING_BYTES_MAX`, a collection of at most `SETTLE_ELEMENTS_MAX`
/// elements, and at most `SETTLE_KEYS_MAX` keys. Expired or not: the bound
/// is on the work, whatever the time. O(keys).
fn small_to_settle(keyspace: &Keyspace, command: &KvCommand) -> bool {
    let keys = command.keys();
    keys.len() <= SETTLE_KEYS_MAX
        && keys.iter().all(|key| {
            keyspace
                .stored(key)
                .is_none_or(|entry| match entry.value() {
                    ValueRef::Str(value) => value.len() <= SETTLE_STRING_BYTES_MAX,
                    ValueRef::Hash(fields) => fields.len() <= SETTLE_ELEMENTS_MAX,
                    ValueRef::List(items) => items.len() <= SETTLE_ELEMENTS_MAX,
                    ValueRef::Set(members) => members.len() <= SETTLE_ELEMENTS_MAX,
                    ValueRef::ZSet(members) => members.len() <= SETTLE_ELEMENTS_MAX,
                })
        })
}

/// Work (keys or elements visited) from which a read is answered off the
/// event loop, from a view ([`read_view`]): below it, the hop to another
/// thread costs more than the read.
pub(crate) const OFF_LOOP_WORK_MIN: usize = 4096;

/// Whether `command` is a read whose cost grows with the dataset enough to
/// answer it off the event loop, with [`read_view`]: `KEYS` over many keys,
/// `SCAN` with a large `COUNT`, `HGETALL`/`LRANGE` of a large collection.
/// O(1).
pub(crate) fn read_off_loop(keyspace: &Keyspace, command: &KvCommand, now: u64) -> bool {
    let big = |len: usize| len >= OFF_LOOP_WORK_MIN;
    match command {
        // A pattern other than `*` costs O(pattern × key length) per key
        // (glob matching), which a client controls (up to --max-value-bytes
        // each): never run it on the loop, however few keys there are.
        KvCommand::Keys { pattern } => big(keyspace.len()) || pattern.as_ref() != b"*",
        KvCommand::Scan { count, pattern, .. } => {
            let visits = (*count).clamp(1, keys::SCAN_COUNT_MAX) as usize;
            (big(keyspace.len()) && big(visits))
                || pattern.as_ref().is_some_and(|p| p.as_ref() != b"*")
        }
        KvCommand::HGetAll { key } => matches!(
            keyspace.live(key, now).map(|entry| entry.value()),
            Some(ValueRef::Hash(fields)) if big(fields.len())
        ),
        KvCommand::LRange { key, start, stop } => match keyspace.live(key, now).map(Entry::value) {
            Some(ValueRef::List(items)) => big(range_len(items.len(), *start, *stop)),
            _ => false,
        },
        KvCommand::Lcs { key1, key2, .. } => {
            bits::lcs_cells(keyspace, key1, key2, now) >= LCS_OFF_LOOP_CELLS_MIN
        }
        KvCommand::Sort(sort) if sort.store.is_none() => {
            match keyspace.live(&sort.key, now).map(Entry::value) {
                Some(ValueRef::List(items)) => big(items.len()),
                Some(ValueRef::Set(members)) => big(members.len()),
                _ => false,
            }
        }
        KvCommand::SMembers { key } => big(sets::set_read_work(keyspace, key, 0, now)),
        KvCommand::SScan { key, pattern, .. } => {
            big(sets::set_read_work(keyspace, key, 0, now))
                || pattern.as_ref().is_some_and(|p| p.as_ref() != b"*")
        }
        KvCommand::SRandMember { key, count } => big(sets::set_read_work(
            keyspace,
            key,
            count.map_or(1, i64::unsigned_abs),
            now,
        )),
        KvCommand::SetCombine {
            keys, store: None, ..
        }
        | KvCommand::SInterCard { keys, .. } => big(sets::read_work(keyspace, keys, now)),
        KvCommand::HKeys { key } | KvCommand::HVals { key } => {
            big(hashes::read_work(keyspace, key, 0, now))
        }
        KvCommand::LPos { key, maxlen, .. } => big(lists::read_work(keyspace, key, *maxlen, now)),
        // A pattern costs O(pattern × field length) per field (see KEYS).
        KvCommand::HScan { key, pattern, .. } => {
            big(hashes::read_work(keyspace, key, 0, now))
                || pattern.as_ref().is_some_and(|p| p.as_ref() != b"*")
        }
        KvCommand::HRandField { key, count, .. } => big(hashes::read_work(
            keyspace,
            key,
            count.map_or(1, i64::unsigned_abs),
            now,
        )),
        KvCommand::ZSet(zset) => zset.is_read() && big(zsets::read_work(keyspace, zset, now)),
        KvCommand::Dump { key } => big(dump::dump_work(keyspace, key, now)),
        _ => false,
    }
}

/// Cells from which an LCS (O(cells) time and memory) is answered off the
/// event loop.
const LCS_OFF_LOOP_CELLS_MIN: u64 = 1 << 18;
/// Cells of an LCS counted as one element of a transaction's read budget
/// ([`TRANSACTION_READ_WORK_MAX`]): a 16 M-cell LCS costs about what
/// visiting 64 K elements does.
const LCS_CELLS_PER_WORK: u64 = 256;

/// Elements (hash fields, list items) the reads of one transaction may
/// visit together. A transaction is one log command: with a write in it, it
/// runs on every replica's apply path, and an all-read one on the event
/// loop, where a read of a huge collection would stall consensus. A read
/// that would take the total past this is answered with an error instead
/// (decided from replicated state only, so every replica answers the same;
/// the state a transaction leaves does not depend on it). Alone, the same
/// read is answered off the loop.
pub const TRANSACTION_READ_WORK_MAX: usize = 16 * OFF_LOOP_WORK_MIN;

/// What a read inside a transaction visits, for
/// [`TRANSACTION_READ_WORK_MAX`]: `None` for a read never allowed inside
/// one, else the elements of a collection it visits (0 for the rest, whose
/// cost the command's own size bounds). KEYS and SCAN (queued in MULTI as
/// Redis does, never batched otherwise) count the keys they may visit, plus,
/// with a pattern, the glob's cost: O(pattern × key) per key, so at most
/// the pattern's length times the dataset's accounted bytes (which include
/// every key), counted per [`GLOB_STEPS_PER_WORK`] steps. O(1).
pub(crate) fn transaction_read_work(
    keyspace: &Keyspace,
    command: &KvCommand,
    now: u64,
) -> Option<usize> {
    let work = charge(keyspace, command, now);
    // The node's grouping of a pipeline relies on this (see
    // `charged_in_transaction`).
    debug_assert!(
        work == Some(0) || charged_in_transaction(command),
        "{} charged {work:?} but not listed as charged",
        command.name()
    );
    work
}

/// Whether [`transaction_read_work`] may charge `command` anything (or
/// refuse it), whatever the state: decided from the command alone. The
/// node sends every pipelined command for which this holds through the log
/// alone (`server::goes_alone`), so a batch of pipelined commands is never
/// refused any of them for the budget, and whether a pipelined command
/// runs never depends on how the node grouped the pipeline (which TCP
/// segments and `--max-pipeline` decide): only a real transaction or a
/// script is refused for it. The node's own state cannot decide it: the
/// state at apply may differ (another client's write, or an earlier
/// command of the same batch, may grow a collection meanwhile). O(1).
pub(crate) fn charged_in_transaction(command: &KvCommand) -> bool {
    match command {
        KvCommand::Keys { .. }
        | KvCommand::Scan { .. }
        | KvCommand::HScan { .. }
        | KvCommand::HGetAll { .. }
        | KvCommand::LRange { .. }
        | KvCommand::Lcs { .. }
        | KvCommand::Sort(_)
        | KvCommand::SMembers { .. }
        | KvCommand::SScan { .. }
        | KvCommand::SPop { .. }
        | KvCommand::SRandMember { .. }
        | KvCommand::SetCombine { .. }
        | KvCommand::SInterCard { .. }
        | KvCommand::HKeys { .. }
        | KvCommand::HVals { .. }
        | KvCommand::HRandField { .. }
        | KvCommand::LPos { .. }
        | KvCommand::Dump { .. } => true,
        KvCommand::ZSet(zset) => zsets::charged(zset),
        KvCommand::Pop { count, .. } => count.is_some_and(|c| c > 1),
        KvCommand::LMPop { count, .. } => *count > 1,
        // A blocking pop inside MULTI is its pop, run once: charged as it
        // (`BZMPOP ... COUNT n` popped a whole set in one EXEC before).
        KvCommand::Blocking { pop, .. } => charged_in_transaction(pop),
        _ => false,
    }
}

/// [`transaction_read_work`]'s figure.
fn charge(keyspace: &Keyspace, command: &KvCommand, now: u64) -> Option<usize> {
    let glob_work = |pattern: Option<&[u8]>| match pattern {
        None | Some(b"*") => 0,
        Some(pattern) => {
            let bytes = usize::try_from(keyspace.used_bytes()).unwrap_or(usize::MAX);
            pattern.len().saturating_mul(bytes) / GLOB_STEPS_PER_WORK
        }
    };
    match command {
        KvCommand::Keys { pattern } => Some(
            keyspace
                .len()
                .saturating_add(glob_work(Some(pattern.as_ref()))),
        ),
        KvCommand::Scan { count, pattern, .. } => {
            let visits = (*count).clamp(1, keys::SCAN_COUNT_MAX) as usize;
            Some(
                visits
                    .min(keyspace.len())
                    .saturating_add(glob_work(pattern.as_deref())),
            )
        }
        // As SCAN: a pattern's cost grows with it and the fields' lengths.
        KvCommand::HScan {
            pattern: Some(pattern),
            ..
        } if pattern.as_ref() != b"*" => None,
        KvCommand::HGetAll { key } => match keyspace.live(key, now).map(Entry::value) {
            Some(ValueRef::Hash(fields)) => Some(fields.len()),
            _ => Some(0),
        },
        KvCommand::LRange { key, start, stop } => match keyspace.live(key, now).map(Entry::value) {
            Some(ValueRef::List(items)) => Some(range_len(items.len(), *start, *stop)),
            _ => Some(0),
        },
        KvCommand::Lcs { key1, key2, .. } => {
            let cells = bits::lcs_cells(keyspace, key1, key2, now);
            Some(usize::try_from(cells / LCS_CELLS_PER_WORK).unwrap_or(usize::MAX))
        }
        KvCommand::Sort(sort) => match keyspace.live(&sort.key, now).map(Entry::value) {
            Some(ValueRef::List(items)) => Some(items.len().saturating_mul(1 + sort.gets.len())),
            Some(ValueRef::Set(members)) => Some(members.len().saturating_mul(1 + sort.gets.len())),
            _ => Some(0),
        },
        // As HSCAN.
        KvCommand::SScan {
            pattern: Some(pattern),
            ..
        } if pattern.as_ref() != b"*" => None,
        KvCommand::SMembers { key } | KvCommand::SScan { key, .. } => {
            Some(sets::set_read_work(keyspace, key, 0, now))
        }
        KvCommand::SPop { key, count } => {
            Some(sets::set_read_work(keyspace, key, count.unwrap_or(1), now))
        }
        KvCommand::SRandMember { key, count } => Some(sets::set_read_work(
            keyspace,
            key,
            count.map_or(1, i64::unsigned_abs),
            now,
        )),
        KvCommand::SetCombine { keys, .. } | KvCommand::SInterCard { keys, .. } => {
            Some(sets::read_work(keyspace, keys, now))
        }
        KvCommand::HKeys { key } | KvCommand::HVals { key } | KvCommand::HScan { key, .. } => {
            Some(hashes::read_work(keyspace, key, 0, now))
        }
        KvCommand::HRandField { key, count, .. } => Some(hashes::read_work(
            keyspace,
            key,
            count.map_or(1, i64::unsigned_abs),
            now,
        )),
        KvCommand::LPos { key, maxlen, .. } => Some(lists::read_work(keyspace, key, *maxlen, now)),
        // As SCAN and HSCAN: a pattern's cost grows with it.
        KvCommand::ZSet(zset)
            if matches!(&**zset, crate::command_zset::ZSetCommand::Scan {
                pattern: Some(pattern),
                ..
            } if pattern.as_ref() != b"*") =>
        {
            None
        }
        KvCommand::ZSet(zset) => Some(zsets::read_work(keyspace, zset, now)),
        KvCommand::Dump { key } => Some(dump::dump_work(keyspace, key, now)),
        // A pop with a count walks that many items (a single pop is O(1)).
        KvCommand::Pop {
            key,
            count: Some(count),
            ..
        } if *count > 1 => Some(lists::read_work(keyspace, key, *count, now)),
        // It pops from the first list that holds items: at most the most
        // any of them could give.
        KvCommand::LMPop { keys, count, .. } if *count > 1 => Some(
            keys.iter()
                .map(|key| lists::read_work(keyspace, key, *count, now))
                .max()
                .unwrap_or(0),
        ),
        KvCommand::Blocking { pop, .. } => charge(keyspace, pop, now),
        _ => Some(0),
    }
}

/// Glob steps (pattern byte × key byte) counted as one element of a
/// transaction's read budget.
const GLOB_STEPS_PER_WORK: usize = 64;

/// The number of items `LRANGE start stop` selects from a list of `len`,
/// as `lrange` resolves the indexes.
fn range_len(len: usize, start: i64, stop: i64) -> usize {
    let len = len as i64;
    let resolve = |index: i64| {
        if index < 0 {
            len.saturating_add(index)
        } else {
            index
        }
    };
    let first = resolve(start).max(0);
    let last = resolve(stop).min(len - 1);
    if last >= first {
        (last - first + 1) as usize
    } else {
        0
    }
}

/// Most bytes of values (strings, members, fields) one command's reply may
/// hold where the command itself can repeat them (`MGET k k k ...`, `HMGET`,
/// `SORT ... GET` of one key), and most a batch of commands (a transaction,
/// or the commands a client pipelined, which travel as one log command)
/// may answer before the rest of it is refused. Without it a request of a
/// few kilobytes could make every replica build a reply of terabytes (when
/// the batch holds a write, it goes through the log: each replica applies
/// it, runs out of memory, and does so again replaying it after a
/// restart). 256 MiB, the default bound on the replies a client's batch
/// may leave waiting (`ServerConfig::output_buffer_bytes_max`): a bigger
/// batch of replies closes the client's connection anyway. The budget is
/// checked between a batch's commands, so a GET of one string (up to
/// 512 MiB) is still answered whole; the worst a batch
/// builds is the budget plus one command's reply. Decided from replicated
/// state only, so every replica answers the same. Past it, a batch's reads
/// are refused (not run: a read changes nothing), and its writes run as
/// ever, only a reply of theirs holding more than 64 bytes
/// being dropped for an error that says the write ran: the state a batch
/// leaves never depends on this budget (a replica of an earlier version,
/// or a replay of an entry it applied, agrees), as in Redis, which runs
/// every command of a pipeline whatever its client's output limit.
pub const REPLY_BYTES_MAX: u64 = 256 << 20;

/// Counted per element of a reply in [`reply_bytes`].
pub(crate) const REPLY_ENTRY_BYTES: u64 = 16;

/// A write's reply kept past a batch's [`REPLY_BYTES_MAX`] (a status, a
/// number, a short string), as counted by [`reply_bytes`].
pub(crate) const SMALL_REPLY_BYTES: u64 = 64;

/// Runs a batch (a transaction, or the commands a client pipelined) in
/// order with `run`, under the bounds every path that runs one applies
/// (plain or with an ACL command in it, on the read path or the apply
/// path): a nested transaction runs nothing; a read past the elements the
/// batch's reads may visit ([`TRANSACTION_READ_WORK_MAX`]) or past the
/// bytes its replies may hold ([`REPLY_BYTES_MAX`]) is refused without
/// running; a write always runs, and past the byte budget its reply is
/// dropped unless small.
pub(crate) fn run_batch<K: std::ops::Deref<Target = Keyspace>>(
    mut keyspace: K,
    commands: &[KvCommand],
    now: u64,
    mut run: impl FnMut(&mut K, &KvCommand, u32) -> Reply,
) -> Reply {
    // Redis refuses MULTI inside MULTI before queueing anything, so a
    // nested transaction never runs any of its commands.
    if commands
        .iter()
        .any(|command| matches!(command, KvCommand::Exec(_)))
    {
        return nested_exec();
    }
    let mut work = 0usize;
    let mut replied = 0u64;
    let mut replies = Vec::with_capacity(commands.len());
    for (command, position) in commands.iter().zip(0u32..) {
        prefetch_ahead(&keyspace, commands, position);
        if replied > REPLY_BYTES_MAX && command.is_read() {
            replies.push(over_reply_budget(command));
            continue;
        }
        match transaction_read_work(&keyspace, command, now) {
            Some(cost) if work.saturating_add(cost) <= TRANSACTION_READ_WORK_MAX => work += cost,
            _ => {
                replies.push(over_transaction_budget(command));
                continue;
            }
        }
        let reply = run(&mut keyspace, command, position);
        let bytes = reply_bytes(&reply);
        replies.push(if replied > REPLY_BYTES_MAX && bytes > SMALL_REPLY_BYTES {
            reply_dropped(command, bytes)
        } else {
            replied = replied.saturating_add(bytes);
            reply
        });
    }
    Reply::Array(replies)
}

/// About the bytes `reply` takes: its strings, and [`REPLY_ENTRY_BYTES`]
/// per element. Linear in its elements.
pub(crate) fn reply_bytes(reply: &Reply) -> u64 {
    REPLY_ENTRY_BYTES
        + match reply {
            Reply::Bulk(bytes) | Reply::Verbatim(bytes) => bytes.len() as u64,
            Reply::Error(text) => text.len() as u64,
            Reply::Simple(text) => text.len() as u64,
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                items.iter().map(reply_bytes).sum()
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(a, b)| reply_bytes(a) + reply_bytes(b))
                .sum(),
            Reply::Integer(_)
            | Reply::Null
            | Reply::NullArray
            | Reply::Double(_)
            | Reply::Bool(_) => 0,
        }
}

/// The answer to a read of a batch whose earlier replies hold more than
/// [`REPLY_BYTES_MAX`]: not run.
pub(crate) fn over_reply_budget(command: &KvCommand) -> Reply {
    Reply::error(format!(
        "ERR '{}' not run: the replies before it in the same transaction or pipeline hold more \
         than {REPLY_BYTES_MAX} bytes; send it again on its own",
        command.name()
    ))
}

/// The answer to a write of such a batch whose reply is not small: it ran.
fn reply_dropped(command: &KvCommand, bytes: u64) -> Reply {
    Reply::error(format!(
        "ERR '{}' ran, but its reply ({bytes} bytes) is dropped: the replies before it in the \
         same transaction or pipeline hold more than {REPLY_BYTES_MAX} bytes",
        command.name()
    ))
}

/// The answer to a command whose own reply would hold more than
/// [`REPLY_BYTES_MAX`] bytes of values.
pub(crate) fn reply_too_large(name: &str) -> Reply {
    Reply::error(format!(
        "ERR {name} reply of more than {REPLY_BYTES_MAX} bytes refused; ask for less at a time"
    ))
}

/// The answer to a read inside a transaction past its budget
/// ([`TRANSACTION_READ_WORK_MAX`]), or one never allowed there.
pub(crate) fn over_transaction_budget(command: &KvCommand) -> Reply {
    Reply::error(format!(
        "ERR '{}' of more than {TRANSACTION_READ_WORK_MAX} elements in all, or of the whole dataset, cannot run inside a transaction in synod; run it alone",
        command.name()
    ))
}

/// Answers a read that [`read_off_loop`] chose, from a view taken at the
/// read's point: exactly what [`read`] answers there.
pub(crate) fn read_view(view: &KeyspaceView, command: &KvCommand, ctx: &ApplyContext) -> Reply {
    let now = ctx.time_ms;
    match command {
        KvCommand::Keys { pattern } => keys::keys(view, pattern, now),
        KvCommand::Scan {
            cursor,
            pattern,
            count,
            type_name,
        } => keys::scan(
            view,
            *cursor,
            pattern.as_deref(),
            *count,
            type_name.as_deref(),
            now,
        ),
        KvCommand::HGetAll { key } => collections::hgetall(view, key, now),
        KvCommand::LRange { key, start, stop } => {
            collections::lrange(view, key, *start, *stop, now)
        }
        KvCommand::Lcs { key1, key2, output } => bits::lcs(view, key1, key2, *output, now),
        KvCommand::Dump { key } => dump::dump(view, key, now),
        KvCommand::Sort(sort) if sort.store.is_none() => keys_more::sort_read(view, sort, now),
        KvCommand::HKeys { key } => hashes::hkeys(view, key, now),
        KvCommand::HVals { key } => hashes::hvals(view, key, now),
        KvCommand::LPos {
            key,
            value,
            rank,
            count,
            maxlen,
        } => lists::lpos(view, key, value, *rank, *count, *maxlen, now),
        KvCommand::HScan {
            key,
            cursor,
            pattern,
            count,
        } => hashes::hscan(view, key, *cursor, pattern.as_deref(), *count, now),
        // Alone (never batched), so at position 0, as `read` answers it.
        KvCommand::HRandField {
            key,
            count,
            with_values,
        } => hashes::hrandfield(view, key, *count, *with_values, ctx, 0),
        KvCommand::SMembers { key } => sets::smembers(view, key, now),
        KvCommand::SScan {
            key,
            cursor,
            pattern,
            count,
        } => sets::sscan(view, key, *cursor, pattern.as_deref(), *count, now),
        // Alone (never batched), so at position 0, as `read` answers it.
        KvCommand::SRandMember { key, count } => sets::srandmember(view, key, *count, ctx, 0),
        KvCommand::SetCombine {
            operation,
            keys,
            store: None,
        } => sets::combine_read(view, *operation, keys, now),
        KvCommand::SInterCard { keys, limit } => sets::sintercard(view, keys, *limit, now),
        // Alone (never batched), so at position 0.
        KvCommand::ZSet(zset) if zset.is_read() => zsets::read(view, zset, ctx, 0),
        other => {
            debug_assert!(false, "{} is not answered from a view", other.name());
            Reply::error(format!(
                "ERR '{}' cannot be answered from a view",
                other.name()
            ))
        }
    }
}

fn nested_exec() -> Reply {
    Reply::error("ERR MULTI calls can not be nested")
}

/// The WATCH check of a transaction: `Some(nil)` when it opens with a
/// [`KvCommand::WatchCheck`] and one of its keys changed since it was read
/// (then nothing of it may run), else `None`. See [`crate::watch`].
pub(crate) fn watch_aborts(keyspace: &Keyspace, command: &KvCommand, now_ms: u64) -> Option<Reply> {
    let KvCommand::Exec(commands) = command else {
        return None;
    };
    let Some(KvCommand::WatchCheck { watched }) = commands.first() else {
        return None;
    };
    watched
        .iter()
        .any(|watched| keyspace.watch_changed(watched, now_ms))
        .then_some(Reply::NullArray)
}

/// A transaction's reply without the WATCH check's own (the client sees
/// one reply per command it queued).
pub(crate) fn without_watch_reply(command: &KvCommand, reply: Reply) -> Reply {
    let guarded = matches!(
        command,
        KvCommand::Exec(commands) if matches!(commands.first(), Some(KvCommand::WatchCheck { .. }))
    );
    match reply {
        Reply::Array(mut replies) if guarded && !replies.is_empty() => {
            replies.remove(0);
            Reply::Array(replies)
        }
        other => other,
    }
}

/// Runs any command, changing the keyspace as it says, unless it would
/// take the dataset past the replicated `maxmemory` limit (`-OOM`, see
/// [`memory`]; decided here, at apply time, identically on every replica).
pub(crate) fn write(keyspace: &mut Keyspace, command: &KvCommand, ctx: &ApplyContext) -> Reply {
    if let Some(refused) = memory::refusal(keyspace, command, ctx.time_ms) {
        return refused;
    }
    write_unchecked(keyspace, command, ctx, 0)
}

/// [`write`] of a command a script runs (`redis.call`), with `position`
/// seeding its random draws apart from the script's other calls.
pub(crate) fn write_in_script(
    keyspace: &mut Keyspace,
    command: &KvCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    if let Some(refused) = memory::refusal(keyspace, command, ctx.time_ms) {
        return refused;
    }
    write_unchecked(keyspace, command, ctx, position)
}

/// [`write`] without the memory check, of the command at `position` in its
/// transaction or batch (0 alone; see [`read_at`]). Emits the command's
/// keyspace events when the node has them on (see [`events`]); the
/// commands that run others (a transaction, a script, a blocking pop's
/// try) emit nothing themselves: the commands they run do.
fn write_unchecked(
    keyspace: &mut Keyspace,
    command: &KvCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    if keyspace.event_flags() == 0
        || matches!(
            command,
            KvCommand::Exec(_) | KvCommand::Eval(_) | KvCommand::Blocking { .. }
        )
    {
        return run_command(keyspace, command, ctx, position);
    }
    let before = events::before(keyspace, command, ctx.time_ms);
    let reply = run_command(keyspace, command, ctx, position);
    events::emit(keyspace, command, &reply, &before, ctx.time_ms);
    reply
}

/// Runs one command (see [`write_unchecked`]).
fn run_command(
    keyspace: &mut Keyspace,
    command: &KvCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let now = ctx.time_ms;
    match command {
        KvCommand::Set {
            key,
            value,
            condition,
            get,
            expiry,
        } => strings::set(keyspace, key, value, *condition, *get, *expiry, ctx),
        KvCommand::SetNx { key, value } => strings::setnx(keyspace, key, value, now),
        KvCommand::SetEx {
            key,
            value,
            unit,
            ttl_ms,
        } => strings::setex(keyspace, key, value, *unit, *ttl_ms, ctx),
        KvCommand::GetSet { key, value } => strings::getset(keyspace, key, value, now),
        KvCommand::GetDel { key } => strings::getdel(keyspace, key, now),
        KvCommand::GetEx { key, expiry } => strings::getex(keyspace, key, *expiry, ctx),
        KvCommand::MSet { pairs } => strings::mset(keyspace, pairs),
        KvCommand::MSetNx { pairs } => strings::msetnx(keyspace, pairs, now),
        KvCommand::IncrBy { key, delta } => strings::incrby(keyspace, key, *delta, now),
        KvCommand::IncrByFloat { key, delta } => strings::incrbyfloat(keyspace, key, *delta, now),
        KvCommand::Append { key, value } => strings::append(keyspace, key, value, now),
        KvCommand::SetRange { key, offset, value } => {
            strings::setrange(keyspace, key, *offset, value, now)
        }
        KvCommand::Del { keys } => keys::del(keyspace, keys, now),
        KvCommand::Expire {
            key,
            form,
            when_ms,
            condition,
        } => keys::expire(keyspace, key, *form, *when_ms, *condition, ctx),
        KvCommand::Persist { key } => keys::persist(keyspace, key, now),
        KvCommand::FlushAll => {
            keyspace.clear();
            Reply::ok()
        }
        KvCommand::SetMaxMemory { bytes } => {
            keyspace.set_maxmemory_bytes(*bytes);
            Reply::ok()
        }
        KvCommand::ExpireSweep => {
            keyspace.purge_expired(now, crate::store::SWEEP_KEYS_MAX);
            Reply::ok()
        }
        KvCommand::HSet { key, pairs } => collections::hset(keyspace, key, pairs, now),
        KvCommand::HDel { key, fields } => collections::hdel(keyspace, key, fields, now),
        KvCommand::HIncrBy { key, field, delta } => {
            collections::hincrby(keyspace, key, field, *delta, now)
        }
        KvCommand::Push { key, end, values } => collections::push(keyspace, key, *end, values, now),
        KvCommand::Pop { key, end, count } => collections::pop(keyspace, key, *end, *count, now),
        KvCommand::Rename {
            key,
            new_key,
            only_if_absent,
        } => keys_more::rename(keyspace, key, new_key, *only_if_absent, now),
        KvCommand::Copy {
            source,
            destination,
            replace,
        } => keys_more::copy(keyspace, source, destination, *replace, now),
        KvCommand::Restore(restore) => dump::restore(keyspace, restore, ctx),
        KvCommand::Sort(sort) => match &sort.store {
            Some(destination) => keys_more::sort_store(keyspace, sort, destination, now),
            None => keys_more::sort_read(keyspace, sort, now),
        },
        KvCommand::SetBit { key, offset, bit } => bits::setbit(keyspace, key, *offset, *bit, now),
        KvCommand::BitOp {
            operation,
            destination,
            keys,
        } => bits::bitop(keyspace, *operation, destination, keys, now),
        list_or_hash @ (KvCommand::LSet { .. }
        | KvCommand::LInsert { .. }
        | KvCommand::LRem { .. }
        | KvCommand::LTrim { .. }
        | KvCommand::PushX { .. }
        | KvCommand::LMove { .. }
        | KvCommand::LMPop { .. }
        | KvCommand::HMSet { .. }
        | KvCommand::HSetNx { .. }
        | KvCommand::HIncrByFloat { .. }) => write_list_or_hash(keyspace, list_or_hash, now),
        KvCommand::SAdd { key, members } => sets::sadd(keyspace, key, members, now),
        KvCommand::SRem { key, members } => sets::srem(keyspace, key, members, now),
        KvCommand::SPop { key, count } => sets::spop(keyspace, key, *count, ctx, position),
        KvCommand::SMove {
            source,
            destination,
            member,
        } => sets::smove(keyspace, source, destination, member, now),
        KvCommand::SetCombine {
            operation,
            keys,
            store: Some(destination),
        } => sets::combine_store(keyspace, *operation, keys, destination, now),
        KvCommand::ZSet(zset) => zsets::write(keyspace, zset, ctx, position),
        // Nothing replicated changes; the output is the same on every
        // replica. The store delivers the message after this (see
        // `crate::pubsub`), and the proposer's front end puts its node's
        // receiver count in place of this 0.
        KvCommand::Publish { .. } => Reply::Integer(0),
        KvCommand::Blocking { kind, pop, blocked } => {
            if !*blocked {
                return crate::blocking::reshape(
                    *kind,
                    write_unchecked(keyspace, pop, ctx, position),
                );
            }
            match crate::blocking::passing_over_wrong_types(keyspace, pop, now) {
                Some(pop) => {
                    crate::blocking::reshape(*kind, write_unchecked(keyspace, &pop, ctx, position))
                }
                None => kind.nil(),
            }
        }
        KvCommand::Eval(eval) => crate::scripting::run(keyspace, eval, ctx, position),
        // (See `REPLY_BYTES_MAX`: past it reads are refused and writes run,
        // so the state left does not depend on it.)
        KvCommand::Exec(commands) => {
            run_batch(keyspace, commands, now, |keyspace, command, position| {
                write_unchecked(keyspace, command, ctx, position)
            })
        }
        read_only => {
            debug_assert!(read_only.is_read());
            read_at(keyspace, read_only, ctx, position)
        }
    }
}

/// At the start of each group of a batch's commands (a transaction, or the
/// commands a client pipelined, which travel as one), asks the CPU to fetch
/// the keyspace memory the group's keys lead to (see
/// [`Keyspace::prefetch`]): a hint, which changes nothing.
pub(crate) fn prefetch_ahead(keyspace: &Keyspace, commands: &[KvCommand], position: u32) {
    let at = position as usize;
    if at.is_multiple_of(PREFETCH_GROUP_MAX) {
        let group = commands
            .get(at..(at + PREFETCH_GROUP_MAX).min(commands.len()))
            .unwrap_or_default();
        keyspace.prefetch(group.iter().filter_map(KvCommand::hot_key));
    }
}

/// TTL/PTTL of a live entry: -1 without expiry, else the time left.
pub(crate) fn time_to_live(entry: &Entry, unit: TimeUnit, now_ms: u64) -> i64 {
    let Some(at) = entry.expire_at_ms() else {
        return -1;
    };
    debug_assert!(at > now_ms, "a live entry has not expired");
    let left_ms = i64::try_from(at.saturating_sub(now_ms)).unwrap_or(i64::MAX);
    match unit {
        TimeUnit::Milliseconds => left_ms,
        // Redis rounds to the nearest second.
        TimeUnit::Seconds => left_ms.saturating_add(500) / 1000,
    }
}

// ---- Issue 16: the rest of the list and hash commands ----

/// [`read_at`] for the issue-16 list and hash reads.
fn read_list_or_hash(
    keyspace: &Keyspace,
    command: &KvCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let now = ctx.time_ms;
    match command {
        KvCommand::LIndex { key, index } => lists::lindex(keyspace, key, *index, now),
        KvCommand::LPos {
            key,
            value,
            rank,
            count,
            maxlen,
        } => lists::lpos(keyspace, key, value, *rank, *count, *maxlen, now),
        KvCommand::HMGet { key, fields } => hashes::hmget(keyspace, key, fields, now),
        KvCommand::HStrLen { key, field } => hashes::hstrlen(keyspace, key, field, now),
        KvCommand::HKeys { key } => hashes::hkeys(keyspace, key, now),
        KvCommand::HVals { key } => hashes::hvals(keyspace, key, now),
        KvCommand::HRandField {
            key,
            count,
            with_values,
        } => hashes::hrandfield(keyspace, key, *count, *with_values, ctx, position),
        KvCommand::HScan {
            key,
            cursor,
            pattern,
            count,
        } => hashes::hscan(keyspace, key, *cursor, pattern.as_deref(), *count, now),
        other => {
            debug_assert!(false, "{} is not an issue-16 read", other.name());
            Reply::error(format!("ERR '{}' is not a list or hash read", other.name()))
        }
    }
}

/// [`read_at`] for the set reads.
fn read_set(keyspace: &Keyspace, command: &KvCommand, ctx: &ApplyContext, position: u32) -> Reply {
    let now = ctx.time_ms;
    match command {
        KvCommand::SMembers { key } => sets::smembers(keyspace, key, now),
        KvCommand::SIsMember { key, member } => sets::sismember(keyspace, key, member, now),
        KvCommand::SMIsMember { key, members } => sets::smismember(keyspace, key, members, now),
        KvCommand::SCard { key } => sets::scard(keyspace, key, now),
        KvCommand::SRandMember { key, count } => {
            sets::srandmember(keyspace, key, *count, ctx, position)
        }
        KvCommand::SetCombine {
            operation,
            keys,
            store: None,
        } => sets::combine_read(keyspace, *operation, keys, now),
        KvCommand::SInterCard { keys, limit } => sets::sintercard(keyspace, keys, *limit, now),
        KvCommand::SScan {
            key,
            cursor,
            pattern,
            count,
        } => sets::sscan(keyspace, key, *cursor, pattern.as_deref(), *count, now),
        other => {
            debug_assert!(false, "{} is not a set read", other.name());
            Reply::error(format!("ERR '{}' is not a set read", other.name()))
        }
    }
}

/// [`write_unchecked`] for the issue-16 list and hash writes.
fn write_list_or_hash(keyspace: &mut Keyspace, command: &KvCommand, now: u64) -> Reply {
    match command {
        KvCommand::LSet { key, index, value } => lists::lset(keyspace, key, *index, value, now),
        KvCommand::LInsert {
            key,
            before,
            pivot,
            value,
        } => lists::linsert(keyspace, key, *before, pivot, value, now),
        KvCommand::LRem { key, count, value } => lists::lrem(keyspace, key, *count, value, now),
        KvCommand::LTrim { key, start, stop } => lists::ltrim(keyspace, key, *start, *stop, now),
        KvCommand::PushX { key, end, values } => lists::pushx(keyspace, key, *end, values, now),
        KvCommand::LMove {
            source,
            destination,
            from,
            to,
        } => lists::lmove(keyspace, source, destination, *from, *to, now),
        KvCommand::LMPop { keys, end, count } => lists::lmpop(keyspace, keys, *end, *count, now),
        KvCommand::HMSet { key, pairs } => hashes::hmset(keyspace, key, pairs, now),
        KvCommand::HSetNx { key, field, value } => hashes::hsetnx(keyspace, key, field, value, now),
        KvCommand::HIncrByFloat {
            key,
            field,
            increment,
        } => hashes::hincrbyfloat(keyspace, key, field, increment, now),
        other => {
            debug_assert!(false, "{} is not an issue-16 write", other.name());
            Reply::error(format!(
                "ERR '{}' is not a list or hash write",
                other.name()
            ))
        }
    }
}
