//! Parsing of the key and string commands of issue 16 (RENAME, COPY, SORT,
//! OBJECT, the bit commands, LCS, ...), with Redis' exact error text.
//! [`crate::parse`] hands these names over after its arity check.

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::{
    BitOperation, BitUnit, KvCommand, LcsOutput, ObjectField, RestoreCommand, RestoreExpiry,
    SortCommand, TimeUnit,
};
use crate::number::parse_i64;
use crate::ops::bits::BIT_OFFSET_END;
use crate::parse::{wrong_arity, NOT_AN_INTEGER, SYNTAX_ERROR};

/// The commands this module parses.
pub(crate) const NAMES: &[&str] = &[
    "bitcount",
    "bitop",
    "bitpos",
    "copy",
    "dump",
    "expiretime",
    "getbit",
    "lcs",
    "memory",
    "object",
    "pexpiretime",
    "randomkey",
    "rename",
    "renamenx",
    "restore",
    "setbit",
    "sort",
    "sort_ro",
    "touch",
];

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::error(NOT_AN_INTEGER))
}

fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// Parses `args` (arity already checked) of the command `name`, one of
/// [`NAMES`]. `Err` is the reply to send instead (an error, or `OBJECT
/// HELP`'s text, which needs no data).
pub(crate) fn parse(name: &str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let key = || args[1].clone();
    let command = match name {
        // The serving node sets the nonce (`server::parse_data`).
        "randomkey" => KvCommand::RandomKey { nonce: 0 },
        "rename" | "renamenx" => KvCommand::Rename {
            key: key(),
            new_key: args[2].clone(),
            only_if_absent: name == "renamenx",
        },
        "copy" => parse_copy(args)?,
        "dump" => KvCommand::Dump { key: key() },
        "restore" => parse_restore(args)?,
        "memory" => parse_memory(args)?,
        "touch" => KvCommand::Touch {
            keys: args[1..].to_vec(),
        },
        "expiretime" | "pexpiretime" => KvCommand::ExpireTime {
            key: key(),
            unit: if name == "expiretime" {
                TimeUnit::Seconds
            } else {
                TimeUnit::Milliseconds
            },
        },
        "object" => parse_object(args)?,
        "sort" | "sort_ro" => parse_sort(args, name == "sort_ro")?,
        "setbit" => {
            let offset = bit_offset(&args[2])?;
            let bit = match parse_i64(&args[3]) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(Reply::error("ERR bit is not an integer or out of range")),
            };
            KvCommand::SetBit {
                key: key(),
                offset,
                bit,
            }
        }
        "getbit" => KvCommand::GetBit {
            key: key(),
            offset: bit_offset(&args[2])?,
        },
        "bitcount" => parse_bitcount(args)?,
        "bitpos" => parse_bitpos(args)?,
        "bitop" => parse_bitop(args)?,
        "lcs" => parse_lcs(args)?,
        other => {
            debug_assert!(false, "{other} is not parsed here");
            return Err(Reply::error(format!("ERR unknown command '{other}'")));
        }
    };
    Ok(command)
}

/// A SETBIT/GETBIT offset: below 2^32 bits (Redis' 512 MB).
fn bit_offset(arg: &[u8]) -> Result<u64, Reply> {
    parse_i64(arg)
        .and_then(|offset| u64::try_from(offset).ok())
        .filter(|&offset| offset < BIT_OFFSET_END)
        .ok_or_else(|| Reply::error("ERR bit offset is not an integer or out of range"))
}

fn parse_copy(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut replace = false;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        if is_option(option, "replace") {
            replace = true;
        } else if is_option(option, "db") && index + 1 < args.len() {
            let db = integer(&args[index + 1])?;
            if i32::try_from(db).is_err() {
                return Err(Reply::error(NOT_AN_INTEGER));
            }
            if db != 0 {
                return Err(Reply::error("ERR DB index is out of range"));
            }
            index += 1;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    Ok(KvCommand::Copy {
        source: args[1].clone(),
        destination: args[2].clone(),
        replace,
    })
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ
/// frequency]`, checked as Redis 7 checks it. `IDLETIME` and `FREQ` are
/// validated and then ignored: Synod keeps no access times or counters.
/// The payload is decoded here, on the node the client reached, so an
/// unreadable one never enters the log (see [`RestoreCommand`]).
fn parse_restore(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut replace = false;
    let mut absolute = false;
    let mut idle_time = false;
    let mut freq = false;
    let mut index = 4;
    while index < args.len() {
        let option = &args[index];
        let has_value = index + 1 < args.len();
        if is_option(option, "replace") {
            replace = true;
        } else if is_option(option, "absttl") {
            absolute = true;
        } else if is_option(option, "idletime") && has_value && !freq {
            idle_time = true;
            index += 1;
            if integer(&args[index])? < 0 {
                return Err(Reply::error("ERR Invalid IDLETIME value, must be >= 0"));
            }
        } else if is_option(option, "freq") && has_value && !idle_time {
            freq = true;
            index += 1;
            if !(0..=255).contains(&integer(&args[index])?) {
                return Err(Reply::error(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    let ttl = integer(&args[2])?;
    let ttl =
        u64::try_from(ttl).map_err(|_| Reply::error("ERR Invalid TTL value, must be >= 0"))?;
    let expiry = match (ttl, absolute) {
        (0, _) => None,
        (unix_ms, true) => Some(RestoreExpiry::At { unix_ms }),
        (ttl_ms, false) => Some(RestoreExpiry::After { ttl_ms }),
    };
    let payload = if crate::dump::is_valid(&args[3]) {
        args[3].clone()
    } else if replace {
        // No key state can change the answer: refuse it here.
        return Err(Reply::error(crate::dump::PAYLOAD_ERROR));
    } else {
        // BUSYKEY or the payload error, decided by the replicas.
        Bytes::new()
    };
    Ok(KvCommand::Restore(Box::new(RestoreCommand {
        key: args[1].clone(),
        expiry,
        replace,
        payload,
    })))
}

/// `MEMORY USAGE key [SAMPLES count]` (SAMPLES is checked and ignored:
/// the size is exact) and `MEMORY HELP`; Redis' other subcommands
/// (DOCTOR, STATS, MALLOC-STATS, PURGE) describe its allocator.
fn parse_memory(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match sub.as_str() {
        "help" if args.len() == 2 => Err(Reply::Array(
            [
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "    Return the bytes Synod accounts for <key> and its value (exact; SAMPLES is",
                "    accepted and ignored).",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|line| Reply::Simple(line.into()))
            .collect(),
        )),
        "usage" if args.len() == 3 || args.len() == 5 => {
            if args.len() == 5 {
                if !is_option(&args[3], "samples") {
                    return Err(Reply::error(SYNTAX_ERROR));
                }
                integer(&args[4])?;
            }
            Ok(KvCommand::MemoryUsage {
                key: args[2].clone(),
            })
        }
        "usage" => Err(Reply::error(SYNTAX_ERROR)),
        _ => Err(unknown_subcommand(&args[1], "MEMORY")),
    }
}

/// Redis' error for an unknown subcommand of `command`: the subcommand
/// quoted (at most 128 characters, line breaks as spaces).
fn unknown_subcommand(sub: &[u8], command: &str) -> Reply {
    let quoted: String = String::from_utf8_lossy(sub)
        .chars()
        .take(128)
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Reply::error(format!(
        "ERR unknown subcommand '{quoted}'. Try {command} HELP."
    ))
}

fn parse_object(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let field = match sub.as_str() {
        "help" if args.len() == 2 => return Err(crate::ops::object_help()),
        "encoding" => ObjectField::Encoding,
        "refcount" => ObjectField::RefCount,
        "idletime" => ObjectField::IdleTime,
        "freq" => ObjectField::Freq,
        "help" => return Err(wrong_arity("object|help")),
        _ => return Err(unknown_subcommand(&args[1], "OBJECT")),
    };
    if args.len() != 3 {
        return Err(wrong_arity(&format!("object|{sub}")));
    }
    Ok(KvCommand::Object {
        key: args[2].clone(),
        field,
    })
}

fn parse_sort(args: &[Bytes], read_only: bool) -> Result<KvCommand, Reply> {
    let mut sort = SortCommand {
        key: args[1].clone(),
        by: None,
        limit: None,
        gets: Vec::new(),
        descending: false,
        alpha: false,
        store: None,
    };
    let mut index = 2;
    while index < args.len() {
        let option = &args[index];
        let left = args.len() - index - 1;
        if is_option(option, "asc") {
            sort.descending = false;
        } else if is_option(option, "desc") {
            sort.descending = true;
        } else if is_option(option, "alpha") {
            sort.alpha = true;
        } else if is_option(option, "limit") && left >= 2 {
            sort.limit = Some((integer(&args[index + 1])?, integer(&args[index + 2])?));
            index += 2;
        } else if !read_only && is_option(option, "store") && left >= 1 {
            sort.store = Some(args[index + 1].clone());
            index += 1;
        } else if is_option(option, "by") && left >= 1 {
            sort.by = Some(args[index + 1].clone());
            index += 1;
        } else if is_option(option, "get") && left >= 1 {
            sort.gets.push(args[index + 1].clone());
            index += 1;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    Ok(KvCommand::Sort(Box::new(sort)))
}

fn bit_unit(arg: &[u8]) -> Result<BitUnit, Reply> {
    if is_option(arg, "byte") {
        Ok(BitUnit::Byte)
    } else if is_option(arg, "bit") {
        Ok(BitUnit::Bit)
    } else {
        Err(Reply::error(SYNTAX_ERROR))
    }
}

fn parse_bitcount(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let range = match args.len() {
        2 => None,
        4 | 5 => {
            let start = integer(&args[2])?;
            let end = integer(&args[3])?;
            let unit = match args.get(4) {
                Some(arg) => bit_unit(arg)?,
                None => BitUnit::Byte,
            };
            Some((start, end, unit))
        }
        _ => return Err(Reply::error(SYNTAX_ERROR)),
    };
    Ok(KvCommand::BitCount {
        key: args[1].clone(),
        range,
    })
}

fn parse_bitpos(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let bit = match integer(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(Reply::error("ERR The bit argument must be 1 or 0.")),
    };
    if args.len() > 6 {
        return Err(Reply::error(SYNTAX_ERROR));
    }
    let start = args.get(3).map(|arg| integer(arg)).transpose()?;
    let end = args.get(4).map(|arg| integer(arg)).transpose()?;
    let unit = match args.get(5) {
        Some(arg) => bit_unit(arg)?,
        None => BitUnit::Byte,
    };
    Ok(KvCommand::BitPos {
        key: args[1].clone(),
        bit,
        start,
        end,
        unit,
    })
}

fn parse_bitop(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let operation = [
        ("and", BitOperation::And),
        ("or", BitOperation::Or),
        ("xor", BitOperation::Xor),
        ("not", BitOperation::Not),
    ]
    .into_iter()
    .find(|(name, _)| is_option(&args[1], name))
    .map(|(_, operation)| operation)
    .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
    let keys = args[3..].to_vec();
    if operation == BitOperation::Not && keys.len() != 1 {
        return Err(Reply::error(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    Ok(KvCommand::BitOp {
        operation,
        destination: args[2].clone(),
        keys,
    })
}

fn parse_lcs(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let (mut idx, mut len, mut with_match_len) = (false, false, false);
    let mut min_match_len = 0u64;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        if is_option(option, "idx") {
            idx = true;
        } else if is_option(option, "len") {
            len = true;
        } else if is_option(option, "withmatchlen") {
            with_match_len = true;
        } else if is_option(option, "minmatchlen") && index + 1 < args.len() {
            min_match_len = u64::try_from(integer(&args[index + 1])?).unwrap_or(0);
            index += 1;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    if idx && len {
        return Err(Reply::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let output = if idx {
        LcsOutput::Ranges {
            min_match_len,
            with_match_len,
        }
    } else if len {
        LcsOutput::Len
    } else {
        LcsOutput::String
    };
    Ok(KvCommand::Lcs {
        key1: args[1].clone(),
        key2: args[2].clone(),
        output,
    })
}
