//! Parsing of the set commands (issue 16), with Redis' exact error text.
//! [`crate::parse`] hands these names over after its arity check.

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::{KvCommand, SetOperation};
use crate::parse::{integer_in_range, parse_hscan, SYNTAX_ERROR};

/// The commands this module parses.
pub(crate) const NAMES: &[&str] = &[
    "sadd",
    "scard",
    "sdiff",
    "sdiffstore",
    "sinter",
    "sintercard",
    "sinterstore",
    "sismember",
    "smembers",
    "smismember",
    "smove",
    "spop",
    "srandmember",
    "srem",
    "sscan",
    "sunion",
    "sunionstore",
];

/// Parses `args` (arity already checked) of the command `name`, one of
/// [`NAMES`].
pub(crate) fn parse(name: &str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let key = || args[1].clone();
    let command = match name {
        "sadd" => KvCommand::SAdd {
            key: key(),
            members: args[2..].to_vec(),
        },
        "srem" => KvCommand::SRem {
            key: key(),
            members: args[2..].to_vec(),
        },
        "smembers" => KvCommand::SMembers { key: key() },
        "sismember" => KvCommand::SIsMember {
            key: key(),
            member: args[2].clone(),
        },
        "smismember" => KvCommand::SMIsMember {
            key: key(),
            members: args[2..].to_vec(),
        },
        "scard" => KvCommand::SCard { key: key() },
        "spop" => {
            let count = match args {
                [_, _] => None,
                [_, _, count] => Some(integer_in_range(
                    count,
                    0,
                    i64::MAX,
                    Some("value is out of range, must be positive"),
                )? as u64),
                _ => return Err(Reply::error(SYNTAX_ERROR)),
            };
            KvCommand::SPop { key: key(), count }
        }
        "srandmember" => {
            let count = match args {
                [_, _] => None,
                // Redis refuses i64::MIN: its negation (the draws) overflows.
                [_, _, count] => Some(integer_in_range(count, -i64::MAX, i64::MAX, None)?),
                _ => return Err(Reply::error(SYNTAX_ERROR)),
            };
            KvCommand::SRandMember { key: key(), count }
        }
        "smove" => KvCommand::SMove {
            source: key(),
            destination: args[2].clone(),
            member: args[3].clone(),
        },
        "sinter" | "sunion" | "sdiff" => KvCommand::SetCombine {
            operation: operation(name),
            keys: args[1..].to_vec(),
            store: None,
        },
        "sinterstore" | "sunionstore" | "sdiffstore" => KvCommand::SetCombine {
            operation: operation(name),
            keys: args[2..].to_vec(),
            store: Some(key()),
        },
        "sintercard" => parse_sintercard(args)?,
        "sscan" => match parse_hscan(args)? {
            KvCommand::HScan {
                key,
                cursor,
                pattern,
                count,
            } => KvCommand::SScan {
                key,
                cursor,
                pattern,
                count,
            },
            _ => return Err(Reply::error(SYNTAX_ERROR)),
        },
        other => {
            debug_assert!(false, "{other} is not a set command");
            return Err(Reply::error(format!("ERR unknown command '{other}'")));
        }
    };
    Ok(command)
}

fn operation(name: &str) -> SetOperation {
    if name.starts_with("sinter") {
        SetOperation::Inter
    } else if name.starts_with("sunion") {
        SetOperation::Union
    } else {
        SetOperation::Diff
    }
}

fn parse_sintercard(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let numkeys = integer_in_range(
        &args[1],
        1,
        i64::MAX,
        Some("numkeys should be greater than 0"),
    )?;
    let keys_end = usize::try_from(numkeys)
        .ok()
        .and_then(|numkeys| numkeys.checked_add(2))
        .filter(|&keys_end| keys_end <= args.len())
        .ok_or_else(|| Reply::error("ERR Number of keys can't be greater than number of args"))?;
    let mut limit = 0;
    let mut index = keys_end;
    while index < args.len() {
        match args.get(index + 1) {
            Some(value) if args[index].eq_ignore_ascii_case(b"limit") => {
                limit =
                    integer_in_range(value, 0, i64::MAX, Some("LIMIT can't be negative"))? as u64;
            }
            _ => return Err(Reply::error(SYNTAX_ERROR)),
        }
        index += 2;
    }
    Ok(KvCommand::SInterCard {
        keys: args[2..keys_end].to_vec(),
        limit,
    })
}
