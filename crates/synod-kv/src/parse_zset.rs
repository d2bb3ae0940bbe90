//! Parsing of the sorted-set commands, with Redis 7.0's checks and error
//! text (`t_zset.c`). The arity has been checked against the table.

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::KvCommand;
use crate::command_zset::{
    Aggregate, LexBound, LexRange, ScoreRange, SetOperation, ZAddFlags, ZRangeSpec, ZSetCommand,
};
use crate::number::{parse_f64, parse_i64};
use crate::parse::{wrong_arity, NOT_AN_INTEGER, NOT_A_FLOAT, SYNTAX_ERROR};

/// The sorted-set command names this module parses.
pub(crate) const NAMES: &[&str] = &[
    "zadd",
    "zcard",
    "zcount",
    "zdiff",
    "zdiffstore",
    "zincrby",
    "zinter",
    "zintercard",
    "zinterstore",
    "zlexcount",
    "zmpop",
    "zmscore",
    "zpopmax",
    "zpopmin",
    "zrandmember",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "zrangestore",
    "zrank",
    "zrem",
    "zremrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zrevrange",
    "zrevrangebylex",
    "zrevrangebyscore",
    "zrevrank",
    "zscan",
    "zscore",
    "zunion",
    "zunionstore",
];

/// `ZSCAN`'s default `COUNT`.
const SCAN_COUNT_DEFAULT: u64 = 10;

const SCORE_RANGE_ERROR: &str = "ERR min or max is not a float";
const LEX_RANGE_ERROR: &str = "ERR min or max not valid string range item";

fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::error(NOT_AN_INTEGER))
}

/// A score as Redis' `getDoubleFromObject` reads it: a float, never NaN.
pub(crate) fn score(arg: &[u8]) -> Option<f64> {
    parse_f64(arg).filter(|value| !value.is_nan())
}

fn score_or(arg: &[u8], message: &str) -> Result<f64, Reply> {
    score(arg).ok_or_else(|| Reply::error(message))
}

/// Parses one sorted-set command (`name` is in [`NAMES`]).
pub(crate) fn parse(name: &'static str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let key = || args[1].clone();
    let command = match name {
        "zadd" => parse_zadd(args)?,
        "zincrby" => ZSetCommand::IncrBy {
            key: key(),
            increment: score_or(&args[2], NOT_A_FLOAT)?,
            member: args[3].clone(),
        },
        "zrem" => ZSetCommand::Rem {
            key: key(),
            members: args[2..].to_vec(),
        },
        "zscore" => ZSetCommand::Score {
            key: key(),
            member: args[2].clone(),
        },
        "zmscore" => ZSetCommand::MScore {
            key: key(),
            members: args[2..].to_vec(),
        },
        "zcard" => ZSetCommand::Card { key: key() },
        "zcount" => ZSetCommand::Count {
            key: key(),
            range: score_range(&args[2], &args[3])?,
        },
        "zlexcount" => ZSetCommand::LexCount {
            key: key(),
            range: lex_range(&args[2], &args[3])?,
        },
        "zrange" => parse_range(args, 1, None, None)?,
        "zrangestore" => parse_range(args, 2, None, None)?,
        "zrevrange" => parse_range(args, 1, Some(RangeKind::Rank), Some(true))?,
        "zrangebyscore" => parse_range(args, 1, Some(RangeKind::Score), Some(false))?,
        "zrevrangebyscore" => parse_range(args, 1, Some(RangeKind::Score), Some(true))?,
        "zrangebylex" => parse_range(args, 1, Some(RangeKind::Lex), Some(false))?,
        "zrevrangebylex" => parse_range(args, 1, Some(RangeKind::Lex), Some(true))?,
        "zrank" | "zrevrank" => ZSetCommand::Rank {
            key: key(),
            member: args[2].clone(),
            reverse: name == "zrevrank",
        },
        "zpopmin" | "zpopmax" => {
            if args.len() > 3 {
                return Err(wrong_arity(name));
            }
            let count = match args.get(2) {
                None => None,
                Some(arg) => Some(
                    parse_i64(arg)
                        .and_then(|count| u64::try_from(count).ok())
                        .ok_or_else(|| {
                            Reply::error("ERR value is out of range, must be positive")
                        })?,
                ),
            };
            ZSetCommand::Pop {
                key: key(),
                max: name == "zpopmax",
                count,
            }
        }
        "zmpop" => parse_zmpop(args)?,
        "zremrangebyrank" => ZSetCommand::RemRange {
            key: key(),
            range: ZRangeSpec::Rank {
                start: integer(&args[2])?,
                stop: integer(&args[3])?,
            },
        },
        "zremrangebyscore" => ZSetCommand::RemRange {
            key: key(),
            range: ZRangeSpec::Score(score_range(&args[2], &args[3])?),
        },
        "zremrangebylex" => ZSetCommand::RemRange {
            key: key(),
            range: ZRangeSpec::Lex(lex_range(&args[2], &args[3])?),
        },
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
        | "zintercard" => parse_combine(name, args)?,
        "zrandmember" => parse_zrandmember(args)?,
        "zscan" => parse_zscan(args)?,
        other => {
            debug_assert!(false, "{other} is not a sorted-set command");
            return Err(Reply::error(format!("ERR unknown command '{other}'")));
        }
    };
    Ok(KvCommand::ZSet(Box::new(command)))
}

fn parse_zadd(args: &[Bytes]) -> Result<ZSetCommand, Reply> {
    let mut flags = ZAddFlags::default();
    let mut index = 2;
    while index < args.len() {
        let option = &args[index];
        if is_option(option, "nx") {
            flags.only_new = true;
        } else if is_option(option, "xx") {
            flags.only_existing = true;
        } else if is_option(option, "gt") {
            flags.only_greater = true;
        } else if is_option(option, "lt") {
            flags.only_less = true;
        } else if is_option(option, "ch") {
            flags.changed = true;
        } else if is_option(option, "incr") {
            flags.increment = true;
        } else {
            break;
        }
        index += 1;
    }
    let rest = &args[index..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(Reply::error(SYNTAX_ERROR));
    }
    if flags.only_new && flags.only_existing {
        return Err(Reply::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (flags.only_new && (flags.only_greater || flags.only_less))
        || (flags.only_greater && flags.only_less)
    {
        return Err(Reply::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if flags.increment && rest.len() > 2 {
        return Err(Reply::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        pairs.push((score_or(&pair[0], NOT_A_FLOAT)?, pair[1].clone()));
    }
    Ok(ZSetCommand::Add {
        key: args[1].clone(),
        flags,
        pairs,
    })
}

/// One end of a score range: `(` for exclusive, then a float (`inf` and
/// `-inf` included), as Redis' `zslParseRange`.
fn score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    match arg.split_first() {
        Some((b'(', rest)) => score(rest).map(|value| (value, true)),
        _ => score(arg).map(|value| (value, false)),
    }
}

pub(crate) fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
    let (Some((min, min_exclusive)), Some((max, max_exclusive))) =
        (score_bound(min), score_bound(max))
    else {
        return Err(Reply::error(SCORE_RANGE_ERROR));
    };
    Ok(ScoreRange {
        min,
        min_exclusive,
        max,
        max_exclusive,
    })
}

/// One end of a lex range, as Redis' `zslParseLexRangeItem`.
fn lex_bound(arg: &Bytes) -> Option<LexBound> {
    match arg.first() {
        Some(b'+') if arg.len() == 1 => Some(LexBound::Highest),
        Some(b'-') if arg.len() == 1 => Some(LexBound::Lowest),
        Some(b'[') => Some(LexBound::Inclusive(arg.slice(1..))),
        Some(b'(') => Some(LexBound::Exclusive(arg.slice(1..))),
        _ => None,
    }
}

pub(crate) fn lex_range(min: &Bytes, max: &Bytes) -> Result<LexRange, Reply> {
    match (lex_bound(min), lex_bound(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(Reply::error(LEX_RANGE_ERROR)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    Rank,
    Score,
    Lex,
}

/// The `ZRANGE` family, as Redis' `zrangeGenericCommand`: `first` is the
/// index of the source key (2 for `ZRANGESTORE`); the older commands fix
/// the kind and direction, which their options may then not name.
fn parse_range(
    args: &[Bytes],
    first: usize,
    fixed_kind: Option<RangeKind>,
    fixed_reverse: Option<bool>,
) -> Result<ZSetCommand, Reply> {
    let store = first == 2;
    let mut kind = fixed_kind;
    let mut reverse = fixed_reverse;
    let mut with_scores = false;
    let mut limit = None;
    let mut index = first + 3;
    while index < args.len() {
        let option = &args[index];
        let left = args.len() - index - 1;
        if !store && is_option(option, "withscores") {
            with_scores = true;
        } else if is_option(option, "limit") && left >= 2 {
            limit = Some((integer(&args[index + 1])?, integer(&args[index + 2])?));
            index += 2;
        } else if reverse.is_none() && is_option(option, "rev") {
            reverse = Some(true);
        } else if kind.is_none() && is_option(option, "bylex") {
            kind = Some(RangeKind::Lex);
        } else if kind.is_none() && is_option(option, "byscore") {
            kind = Some(RangeKind::Score);
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    let kind = kind.unwrap_or(RangeKind::Rank);
    let reverse = reverse.unwrap_or(false);
    if limit.is_some() && kind == RangeKind::Rank {
        return Err(Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == RangeKind::Lex {
        return Err(Reply::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (&args[first + 1], &args[first + 2]);
    if reverse && kind != RangeKind::Rank {
        // A reversed score or lex range is written max first.
        std::mem::swap(&mut min, &mut max);
    }
    let range = match kind {
        RangeKind::Rank => ZRangeSpec::Rank {
            start: integer(min)?,
            stop: integer(max)?,
        },
        RangeKind::Score => ZRangeSpec::Score(score_range(min, max)?),
        RangeKind::Lex => ZRangeSpec::Lex(lex_range(min, max)?),
    };
    let key = args[first].clone();
    Ok(if store {
        ZSetCommand::RangeStore {
            destination: args[1].clone(),
            key,
            range,
            reverse,
            limit,
        }
    } else {
        ZSetCommand::Range {
            key,
            range,
            reverse,
            limit,
            with_scores,
        }
    })
}

/// Redis' `getRangeLongFromObjectOrReply` with a message: an integer in
/// `min..`, else `ERR {message}`.
fn integer_at_least(arg: &[u8], min: i64, message: &str) -> Result<i64, Reply> {
    parse_i64(arg)
        .filter(|&value| value >= min)
        .ok_or_else(|| Reply::error(format!("ERR {message}")))
}

fn parse_zmpop(args: &[Bytes]) -> Result<ZSetCommand, Reply> {
    let numkeys = integer_at_least(&args[1], 1, "numkeys should be greater than 0")?;
    // The keys, then MIN or MAX: there must be room for both.
    let where_index = usize::try_from(numkeys)
        .ok()
        .and_then(|numkeys| numkeys.checked_add(2))
        .filter(|&at| at < args.len())
        .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
    let max = if is_option(&args[where_index], "min") {
        false
    } else if is_option(&args[where_index], "max") {
        true
    } else {
        return Err(Reply::error(SYNTAX_ERROR));
    };
    let mut count = None;
    let mut index = where_index + 1;
    while index < args.len() {
        match args.get(index + 1) {
            Some(value) if count.is_none() && is_option(&args[index], "count") => {
                count = Some(integer_at_least(value, 1, "count should be greater than 0")? as u64);
            }
            _ => return Err(Reply::error(SYNTAX_ERROR)),
        }
        index += 2;
    }
    Ok(ZSetCommand::MPop {
        keys: args[2..where_index].to_vec(),
        max,
        count: count.unwrap_or(1),
    })
}

/// `ZUNION`/`ZINTER`/`ZDIFF` (+`STORE`) and `ZINTERCARD`, as Redis'
/// `zunionInterDiffGenericCommand` reads them.
fn parse_combine(name: &'static str, args: &[Bytes]) -> Result<ZSetCommand, Reply> {
    let store = name.ends_with("store");
    let cardinality = name == "zintercard";
    let operation = if name.starts_with("zunion") {
        SetOperation::Union
    } else if name.starts_with("zinter") {
        SetOperation::Inter
    } else {
        SetOperation::Diff
    };
    let numkeys_index = if store { 2 } else { 1 };
    let numkeys = integer(&args[numkeys_index])?;
    if numkeys < 1 {
        return Err(Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let first_key = numkeys_index + 1;
    let end = usize::try_from(numkeys)
        .ok()
        .and_then(|numkeys| numkeys.checked_add(first_key))
        .filter(|&end| end <= args.len())
        .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
    let keys = args[first_key..end].to_vec();
    let mut weights = Vec::new();
    let mut aggregate = Aggregate::Sum;
    let mut with_scores = false;
    let mut limit = 0u64;
    let mut index = end;
    let weighted = operation != SetOperation::Diff && !cardinality;
    while index < args.len() {
        let option = &args[index];
        let left = args.len() - index;
        if weighted && left > keys.len() && is_option(option, "weights") {
            weights.clear();
            for weight in &args[index + 1..index + 1 + keys.len()] {
                weights.push(score_or(weight, "ERR weight value is not a float")?);
            }
            index += 1 + keys.len();
        } else if weighted && left >= 2 && is_option(option, "aggregate") {
            let value = &args[index + 1];
            aggregate = if is_option(value, "sum") {
                Aggregate::Sum
            } else if is_option(value, "min") {
                Aggregate::Min
            } else if is_option(value, "max") {
                Aggregate::Max
            } else {
                return Err(Reply::error(SYNTAX_ERROR));
            };
            index += 2;
        } else if !store && !cardinality && is_option(option, "withscores") {
            with_scores = true;
            index += 1;
        } else if cardinality && left >= 2 && is_option(option, "limit") {
            limit = parse_i64(&args[index + 1])
                .and_then(|limit| u64::try_from(limit).ok())
                .ok_or_else(|| Reply::error("ERR LIMIT can't be negative"))?;
            index += 2;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
    }
    if cardinality {
        return Ok(ZSetCommand::InterCard { keys, limit });
    }
    Ok(ZSetCommand::Combine {
        operation,
        destination: store.then(|| args[1].clone()),
        keys,
        weights,
        aggregate,
        with_scores,
    })
}

fn parse_zrandmember(args: &[Bytes]) -> Result<ZSetCommand, Reply> {
    let count = match args.get(2) {
        None => None,
        Some(arg) => {
            let value = integer(arg)?;
            if value == i64::MIN {
                return Err(Reply::error(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
            Some(value)
        }
    };
    let with_scores = match args.get(3..) {
        None | Some([]) => false,
        Some([option]) if is_option(option, "withscores") => true,
        Some(_) => return Err(Reply::error(SYNTAX_ERROR)),
    };
    // Two replies per member: Redis refuses counts whose doubling overflows.
    if with_scores && count.is_some_and(|count| !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count))
    {
        return Err(Reply::error("ERR value is out of range"));
    }
    Ok(ZSetCommand::RandMember {
        key: args[1].clone(),
        count,
        with_scores,
    })
}

fn parse_zscan(args: &[Bytes]) -> Result<ZSetCommand, Reply> {
    let cursor = std::str::from_utf8(&args[2])
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let Some(value) = args.get(index + 1) else {
            return Err(Reply::error(SYNTAX_ERROR));
        };
        if is_option(option, "count") {
            count = integer(value)?
                .try_into()
                .ok()
                .filter(|&count: &u64| count >= 1)
                .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
        } else if is_option(option, "match") {
            pattern = Some(value.clone());
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 2;
    }
    Ok(ZSetCommand::Scan {
        key: args[1].clone(),
        cursor,
        pattern,
        count,
    })
}
