//! `ZRANDMEMBER` (drawn as `HRANDFIELD` draws: from the shared generator
//! seeded by the command's place in the log, see `ops::random::generator`) and
//! `ZSCAN` (members in byte order, cursors as `HSCAN`'s).

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::{format_double, Reply};

use super::{scored, zset_at};
use crate::glob::glob_match;
use crate::keyspace::Lookup;
use crate::ops::random::{generator, uniform_below, RANDOM_REPLY_BYTES_MAX};

/// Accounted per drawn member in [`RANDOM_REPLY_BYTES_MAX`]: the shared
/// per-entry overhead plus the score.
const RANDOM_REPLY_ENTRY_BYTES: u64 = crate::ops::random::RANDOM_REPLY_ENTRY_BYTES + 8;
/// Most members one `ZSCAN` call examines, whatever `COUNT` says (it is a
/// hint); a run of members sharing a cursor is finished past it.
const ZSCAN_COUNT_MAX: u64 = 100_000;

/// `ZRANDMEMBER`. A read whose answer depends on its place in the log, so
/// it always goes through the log (see `ops::read_depends_on_time`).
pub(super) fn zrandmember(
    keyspace: &impl Lookup,
    key: &[u8],
    count: Option<i64>,
    with_scores: bool,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    let set = match zset_at(keyspace, key, ctx.time_ms) {
        Ok(Some(set)) => set,
        Ok(None) if count.is_some() => return Reply::Array(Vec::new()),
        Ok(None) => return Reply::Null,
        Err(error) => return error,
    };
    let len = set.len();
    debug_assert!(len > 0, "a stored sorted set is never empty");
    let mut rng = generator(ctx, position, key);
    let Some(count) = count else {
        let index = uniform_below(&mut rng, len as u64) as usize;
        return set
            .iter()
            .nth(index)
            .map_or(Reply::Null, |(member, _)| Reply::Bulk(member.clone()));
    };
    if count == 0 {
        return Reply::Array(Vec::new());
    }
    let entries: Vec<(&Bytes, f64)> = set.iter().collect();
    let chosen: Vec<(&Bytes, f64)> = if count < 0 {
        // With repetition: every draw independent and uniform.
        let mut bytes = 0u64;
        let mut chosen = Vec::new();
        for _ in 0..count.unsigned_abs() {
            let (member, score) = entries[uniform_below(&mut rng, len as u64) as usize];
            bytes = bytes
                .saturating_add(RANDOM_REPLY_ENTRY_BYTES)
                .saturating_add(member.len() as u64);
            if bytes > RANDOM_REPLY_BYTES_MAX {
                return Reply::error(format!(
                    "ERR ZRANDMEMBER reply of more than {RANDOM_REPLY_BYTES_MAX} bytes refused; ask for fewer members"
                ));
            }
            chosen.push((member, score));
        }
        chosen
    } else if count as u64 >= len as u64 {
        entries
    } else {
        // Distinct members: the first `count` of a partial Fisher-Yates
        // shuffle, each subset equally likely.
        let mut entries = entries;
        let count = count as usize;
        for slot in 0..count {
            let pick = slot + uniform_below(&mut rng, (len - slot) as u64) as usize;
            entries.swap(slot, pick);
        }
        entries.truncate(count);
        entries
    };
    if with_scores {
        Reply::Pairs(
            chosen
                .into_iter()
                .map(|(member, score)| scored(member, score))
                .collect(),
        )
    } else {
        Reply::Array(
            chosen
                .into_iter()
                .map(|(member, _)| Reply::Bulk(member.clone()))
                .collect(),
        )
    }
}

/// `ZSCAN`, with `HSCAN`'s guarantee (see `ops::hashes::hscan`): members
/// are visited in byte order, a call never stops inside a run of members
/// sharing a cursor, and 0 starts and ends a scan. Scores are replied as
/// text (`%.17g`), as Redis does.
pub(super) fn zscan(
    keyspace: &impl Lookup,
    key: &[u8],
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    now: u64,
) -> Reply {
    let set = match zset_at(keyspace, key, now) {
        Ok(Some(set)) => set,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(error) => return error,
    };
    let budget = count.clamp(1, ZSCAN_COUNT_MAX);
    let start = cursor.to_be_bytes();
    let significant = start
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |at| at + 1);
    let mut last_cursor = None;
    let mut next_cursor = 0u64;
    let mut found = Vec::new();
    for (examined, (member, score)) in (0u64..).zip(set.iter_members_from(&start[..significant])) {
        let here = crate::ops::hashes::field_cursor(member);
        if examined >= budget && last_cursor != Some(here) {
            debug_assert!(here > 0);
            next_cursor = here;
            break;
        }
        last_cursor = Some(here);
        if pattern.is_none_or(|pattern| pattern == b"*" || glob_match(pattern, member)) {
            found.push(Reply::Bulk(member.clone()));
            found.push(Reply::Bulk(Bytes::from(format_double(score))));
        }
    }
    scan_reply(next_cursor, found)
}

fn scan_reply(cursor: u64, found: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(cursor.to_string())),
        Reply::Array(found),
    ])
}
