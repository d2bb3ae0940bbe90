//! From a client's argument list to a [`KvCommand`], with Redis' checks and
//! Redis' exact error text.
//!
//! Only checks that depend on nothing but the arguments happen here (arity,
//! syntax, integers, non-positive expiry times). Checks that depend on the
//! stored data or on the command's log time (`WRONGTYPE`, overflow of
//! `now + ttl`) happen when the command is applied.

use bytes::Bytes;
use synod_resp::Reply;

use crate::command::{
    ExpireCondition, ExpireForm, GetExExpiry, KvCommand, ListEnd, SetCondition, SetExpiry, TimeUnit,
};
use crate::number::{parse_f64, parse_i64};
use crate::table;

/// Longest command name we try to look up; longer names are unknown.
const COMMAND_NAME_LEN_MAX: usize = 32;
/// How much of the name and of the arguments an "unknown command" error
/// quotes (Redis' limits).
const UNKNOWN_COMMAND_QUOTE_LEN_MAX: usize = 128;
/// `SCAN`'s default `COUNT`.
const SCAN_COUNT_DEFAULT: u64 = 10;

pub(crate) const SYNTAX_ERROR: &str = "ERR syntax error";
pub(crate) const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub(crate) const NOT_A_FLOAT: &str = "ERR value is not a valid float";

/// The error for a command called with an unacceptable number of arguments.
pub(crate) fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// The error for an expiry time Redis refuses (non-positive or overflowing).
pub(crate) fn invalid_expire_time(name: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{name}' command"))
}

/// Parses one client request. `args[0]` is the command name, in any case.
///
/// ```
/// use bytes::Bytes;
/// use synod_kv::{parse, KvCommand};
///
/// let args: Vec<Bytes> = ["get", "k"].into_iter().map(Bytes::from).collect();
/// assert_eq!(parse(&args), Ok(KvCommand::Get { key: Bytes::from("k") }));
/// ```
pub fn parse(args: &[Bytes]) -> Result<KvCommand, synod_resp::Reply> {
    parse_spec(args.first().and_then(|name| spec_of(name)), args)
}

/// [`parse`] given what `spec_of(&args[0])` is (the connection looked the
/// name up already): `None` for a name the table lacks.
pub(crate) fn parse_spec(
    spec: Option<&'static table::CommandSpec>,
    args: &[Bytes],
) -> Result<KvCommand, synod_resp::Reply> {
    if args.is_empty() {
        return Err(Reply::error("ERR empty command"));
    }
    debug_assert_eq!(
        spec.map(|spec| spec.name),
        spec_of(&args[0]).map(|spec| spec.name)
    );
    let spec = spec.ok_or_else(|| unknown_command(args))?;
    if !spec.arity_accepts(args.len()) {
        return Err(wrong_arity(spec.name));
    }
    let key = || args[1].clone();
    let command = match spec.name {
        "get" => KvCommand::Get { key: key() },
        "set" => parse_set(args)?,
        "setnx" => KvCommand::SetNx {
            key: key(),
            value: args[2].clone(),
        },
        "setex" | "psetex" => parse_setex(spec.name, args)?,
        "getset" => KvCommand::GetSet {
            key: key(),
            value: args[2].clone(),
        },
        "getdel" => KvCommand::GetDel { key: key() },
        "getex" => parse_getex(args)?,
        "mget" => KvCommand::MGet {
            keys: args[1..].to_vec(),
        },
        "mset" | "msetnx" => {
            let pairs = parse_pairs(spec.name, &args[1..])?;
            if spec.name == "mset" {
                KvCommand::MSet { pairs }
            } else {
                KvCommand::MSetNx { pairs }
            }
        }
        "del" | "unlink" => KvCommand::Del {
            keys: args[1..].to_vec(),
        },
        "exists" => KvCommand::Exists {
            keys: args[1..].to_vec(),
        },
        "incr" => KvCommand::IncrBy {
            key: key(),
            delta: 1,
        },
        "decr" => KvCommand::IncrBy {
            key: key(),
            delta: -1,
        },
        "incrby" => KvCommand::IncrBy {
            key: key(),
            delta: integer(&args[2])?,
        },
        "decrby" => {
            let decrement = integer(&args[2])?;
            let delta = decrement
                .checked_neg()
                .ok_or_else(|| Reply::error("ERR decrement would overflow"))?;
            KvCommand::IncrBy { key: key(), delta }
        }
        "incrbyfloat" => KvCommand::IncrByFloat {
            key: key(),
            delta: parse_f64(&args[2]).ok_or_else(|| Reply::error(NOT_A_FLOAT))?,
        },
        "append" => KvCommand::Append {
            key: key(),
            value: args[2].clone(),
        },
        "strlen" => KvCommand::StrLen { key: key() },
        "getrange" => KvCommand::GetRange {
            key: key(),
            start: integer(&args[2])?,
            end: integer(&args[3])?,
        },
        "setrange" => {
            let offset = integer(&args[2])?;
            let offset =
                u64::try_from(offset).map_err(|_| Reply::error("ERR offset is out of range"))?;
            KvCommand::SetRange {
                key: key(),
                offset,
                value: args[3].clone(),
            }
        }
        "expire" => parse_expire(ExpireForm::Expire, args)?,
        "pexpire" => parse_expire(ExpireForm::PExpire, args)?,
        "expireat" => parse_expire(ExpireForm::ExpireAt, args)?,
        "pexpireat" => parse_expire(ExpireForm::PExpireAt, args)?,
        "ttl" => KvCommand::Ttl {
            key: key(),
            unit: TimeUnit::Seconds,
        },
        "pttl" => KvCommand::Ttl {
            key: key(),
            unit: TimeUnit::Milliseconds,
        },
        "persist" => KvCommand::Persist { key: key() },
        "type" => KvCommand::Type { key: key() },
        "keys" => KvCommand::Keys { pattern: key() },
        "scan" => parse_scan(args)?,
        "dbsize" => KvCommand::DbSize,
        "flushall" | "flushdb" => parse_flush(args)?,
        name if crate::blocking::is_blocking(name) => crate::blocking::parse(name, args)?.0,
        name if crate::parse_zset::NAMES.contains(&name) => crate::parse_zset::parse(name, args)?,
        name if crate::parse_keys_bits::NAMES.contains(&name) => {
            crate::parse_keys_bits::parse(name, args)?
        }
        name if crate::parse_sets::NAMES.contains(&name) => crate::parse_sets::parse(name, args)?,
        "hset" => {
            if !args.len().is_multiple_of(2) {
                return Err(wrong_arity("hset"));
            }
            KvCommand::HSet {
                key: key(),
                pairs: parse_pairs("hset", &args[2..])?,
            }
        }
        "hget" => KvCommand::HGet {
            key: key(),
            field: args[2].clone(),
        },
        "hdel" => KvCommand::HDel {
            key: key(),
            fields: args[2..].to_vec(),
        },
        "hgetall" => KvCommand::HGetAll { key: key() },
        "hlen" => KvCommand::HLen { key: key() },
        "hexists" => KvCommand::HExists {
            key: key(),
            field: args[2].clone(),
        },
        "hincrby" => KvCommand::HIncrBy {
            key: key(),
            field: args[2].clone(),
            delta: integer(&args[3])?,
        },
        "lpush" | "rpush" => KvCommand::Push {
            key: key(),
            end: list_end(spec.name),
            values: args[2..].to_vec(),
        },
        "lpop" | "rpop" => parse_pop(spec.name, args)?,
        "lrange" => KvCommand::LRange {
            key: key(),
            start: integer(&args[2])?,
            stop: integer(&args[3])?,
        },
        "llen" => KvCommand::LLen { key: key() },
        "lindex" | "lset" | "linsert" | "lrem" | "ltrim" | "lpos" | "lpushx" | "rpushx"
        | "lmove" | "rpoplpush" | "lmpop" | "hmset" | "hmget" | "hsetnx" | "hincrbyfloat"
        | "hstrlen" | "hkeys" | "hvals" | "hrandfield" | "hscan" => {
            parse_list_or_hash(spec.name, args)?
        }
        other => {
            // The table and this match are kept in step by a test that
            // parses every table entry.
            debug_assert!(false, "command {other} is in the table but not parsed");
            return Err(unknown_command(args));
        }
    };
    Ok(command)
}

/// The command table's entry for a name in any case, lowercased on the
/// stack (this runs for every data command).
pub(crate) fn spec_of(name: &[u8]) -> Option<&'static table::CommandSpec> {
    if name.len() > COMMAND_NAME_LEN_MAX || !name.is_ascii() {
        return None;
    }
    let mut buf = [0u8; COMMAND_NAME_LEN_MAX];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table::lookup(std::str::from_utf8(lower).ok()?)
}

/// Redis 7: `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
fn unknown_command(args: &[Bytes]) -> Reply {
    let mut line = b"ERR unknown command '".to_vec();
    line.extend_from_slice(c_string(&args[0], UNKNOWN_COMMAND_QUOTE_LEN_MAX));
    line.extend_from_slice(b"', with args beginning with: ");
    let mut quoted: Vec<u8> = Vec::new();
    for arg in &args[1..] {
        if quoted.len() >= UNKNOWN_COMMAND_QUOTE_LEN_MAX {
            break;
        }
        let room = UNKNOWN_COMMAND_QUOTE_LEN_MAX - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_string(arg, room));
        quoted.extend_from_slice(b"' ");
    }
    line.extend_from_slice(&quoted);
    // An error line must not break the protocol: Redis turns CR and LF into
    // spaces; the reply type needs UTF-8, so other bytes are replaced.
    let text = String::from_utf8_lossy(&line).replace(['\r', '\n'], " ");
    Reply::Error(text)
}

/// What C's `%.*s` prints of `bytes`: up to the first NUL, at most `max`.
fn c_string(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len());
    &bytes[..end.min(max)]
}

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::error(NOT_AN_INTEGER))
}

fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn list_end(name: &str) -> ListEnd {
    if name.starts_with('l') {
        ListEnd::Left
    } else {
        ListEnd::Right
    }
}

fn parse_pairs(name: &str, args: &[Bytes]) -> Result<Vec<(Bytes, Bytes)>, Reply> {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    Ok(args
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}

/// The expiry options shared by `SET` and `GETEX`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpiryOption {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl ExpiryOption {
    fn from_arg(arg: &[u8]) -> Option<ExpiryOption> {
        [
            ("ex", ExpiryOption::Ex),
            ("px", ExpiryOption::Px),
            ("exat", ExpiryOption::ExAt),
            ("pxat", ExpiryOption::PxAt),
        ]
        .into_iter()
        .find(|(name, _)| is_option(arg, name))
        .map(|(_, option)| option)
    }

    /// Reads the option's argument as Redis' `getExpireMillisecondsOrReply`
    /// does, up to (not including) adding the log time for relative forms.
    /// Returns (milliseconds, relative).
    fn milliseconds(self, arg: &[u8], command: &str) -> Result<(i64, bool), Reply> {
        let value = integer(arg)?;
        let seconds = matches!(self, ExpiryOption::Ex | ExpiryOption::ExAt);
        if value <= 0 || (seconds && value > i64::MAX / 1000) {
            return Err(invalid_expire_time(command));
        }
        let ms = if seconds { value * 1000 } else { value };
        Ok((ms, matches!(self, ExpiryOption::Ex | ExpiryOption::Px)))
    }
}

fn parse_set(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut keep_ttl = false;
    let mut expiry: Option<(ExpiryOption, &Bytes)> = None;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let next = args.get(index + 1);
        if is_option(option, "nx") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is_option(option, "xx") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is_option(option, "get") {
            get = true;
        } else if is_option(option, "keepttl") && expiry.is_none() {
            keep_ttl = true;
        } else if let (Some(kind), Some(next)) = (ExpiryOption::from_arg(option), next) {
            // The same option may repeat (the last wins); a different
            // expiry option or KEEPTTL conflicts.
            if keep_ttl || expiry.is_some_and(|(previous, _)| previous != kind) {
                return Err(Reply::error(SYNTAX_ERROR));
            }
            expiry = Some((kind, next));
            index += 1;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    let expiry = match expiry {
        None if keep_ttl => SetExpiry::Keep,
        None => SetExpiry::Clear,
        Some((kind, arg)) => match kind.milliseconds(arg, "set")? {
            (ttl_ms, true) => SetExpiry::After { ttl_ms },
            (unix_ms, false) => SetExpiry::At { unix_ms },
        },
    };
    Ok(KvCommand::Set {
        key: args[1].clone(),
        value: args[2].clone(),
        condition,
        get,
        expiry,
    })
}

fn parse_setex(name: &'static str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let (unit, option) = if name == "setex" {
        (TimeUnit::Seconds, ExpiryOption::Ex)
    } else {
        (TimeUnit::Milliseconds, ExpiryOption::Px)
    };
    let (ttl_ms, _) = option.milliseconds(&args[2], name)?;
    Ok(KvCommand::SetEx {
        key: args[1].clone(),
        value: args[3].clone(),
        unit,
        ttl_ms,
    })
}

fn parse_getex(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut persist = false;
    let mut expiry: Option<(ExpiryOption, &Bytes)> = None;
    let mut index = 2;
    while index < args.len() {
        let option = &args[index];
        let next = args.get(index + 1);
        if is_option(option, "persist") && expiry.is_none() {
            persist = true;
        } else if let (Some(kind), Some(next)) = (ExpiryOption::from_arg(option), next) {
            if persist || expiry.is_some_and(|(previous, _)| previous != kind) {
                return Err(Reply::error(SYNTAX_ERROR));
            }
            expiry = Some((kind, next));
            index += 1;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 1;
    }
    let expiry = match expiry {
        None if persist => GetExExpiry::Persist,
        None => GetExExpiry::Unchanged,
        Some((kind, arg)) => match kind.milliseconds(arg, "getex")? {
            (ttl_ms, true) => GetExExpiry::After { ttl_ms },
            (unix_ms, false) => GetExExpiry::At { unix_ms },
        },
    };
    Ok(KvCommand::GetEx {
        key: args[1].clone(),
        expiry,
    })
}

fn parse_expire(form: ExpireForm, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut condition = ExpireCondition::ALWAYS;
    for option in &args[3..] {
        if is_option(option, "nx") {
            condition.if_no_expiry = true;
        } else if is_option(option, "xx") {
            condition.if_has_expiry = true;
        } else if is_option(option, "gt") {
            condition.if_greater = true;
        } else if is_option(option, "lt") {
            condition.if_less = true;
        } else {
            return Err(Reply::Error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(c_string(option, usize::MAX)).replace(['\r', '\n'], " ")
            )));
        }
    }
    if condition.if_no_expiry
        && (condition.if_has_expiry || condition.if_greater || condition.if_less)
    {
        return Err(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.if_greater && condition.if_less {
        return Err(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let value = integer(&args[2])?;
    let when_ms = match form.unit() {
        TimeUnit::Milliseconds => value,
        TimeUnit::Seconds => value
            .checked_mul(1000)
            .ok_or_else(|| invalid_expire_time(form.name()))?,
    };
    Ok(KvCommand::Expire {
        key: args[1].clone(),
        form,
        when_ms,
        condition,
    })
}

fn parse_scan(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut type_name = None;
    let mut index = 2;
    while index < args.len() {
        let option = &args[index];
        let Some(value) = args.get(index + 1) else {
            return Err(Reply::error(SYNTAX_ERROR));
        };
        if is_option(option, "count") {
            let value = integer(value)?;
            count = u64::try_from(value)
                .ok()
                .filter(|&count| count >= 1)
                .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
        } else if is_option(option, "match") {
            pattern = Some(value.clone());
        } else if is_option(option, "type") {
            type_name = Some(value.clone());
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 2;
    }
    Ok(KvCommand::Scan {
        cursor,
        pattern,
        count,
        type_name,
    })
}

fn parse_flush(args: &[Bytes]) -> Result<KvCommand, Reply> {
    match args {
        [_] => Ok(KvCommand::FlushAll),
        [_, mode] if is_option(mode, "async") || is_option(mode, "sync") => Ok(KvCommand::FlushAll),
        _ => Err(Reply::error(SYNTAX_ERROR)),
    }
}

fn parse_pop(name: &'static str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    if args.len() > 3 {
        return Err(wrong_arity(name));
    }
    let count = match args.get(2) {
        None => None,
        Some(arg) => Some(
            parse_i64(arg)
                .and_then(|count| u64::try_from(count).ok())
                .ok_or_else(|| Reply::error("ERR value is out of range, must be positive"))?,
        ),
    };
    Ok(KvCommand::Pop {
        key: args[1].clone(),
        end: list_end(name),
        count,
    })
}

// ---- Issue 16: the rest of the list and hash commands ----

/// Parses the list and hash commands added for issue 16. The arity has been
/// checked against the table.
fn parse_list_or_hash(name: &'static str, args: &[Bytes]) -> Result<KvCommand, Reply> {
    let key = || args[1].clone();
    let command = match name {
        "lindex" => KvCommand::LIndex {
            key: key(),
            index: integer(&args[2])?,
        },
        "lset" => KvCommand::LSet {
            key: key(),
            index: integer(&args[2])?,
            value: args[3].clone(),
        },
        "linsert" => {
            let before = if is_option(&args[2], "before") {
                true
            } else if is_option(&args[2], "after") {
                false
            } else {
                return Err(Reply::error(SYNTAX_ERROR));
            };
            KvCommand::LInsert {
                key: key(),
                before,
                pivot: args[3].clone(),
                value: args[4].clone(),
            }
        }
        "lrem" => KvCommand::LRem {
            key: key(),
            count: integer(&args[2])?,
            value: args[3].clone(),
        },
        "ltrim" => KvCommand::LTrim {
            key: key(),
            start: integer(&args[2])?,
            stop: integer(&args[3])?,
        },
        "lpos" => parse_lpos(args)?,
        "lpushx" | "rpushx" => KvCommand::PushX {
            key: key(),
            end: list_end(name),
            values: args[2..].to_vec(),
        },
        "lmove" => KvCommand::LMove {
            source: key(),
            destination: args[2].clone(),
            from: list_position(&args[3])?,
            to: list_position(&args[4])?,
        },
        "rpoplpush" => KvCommand::LMove {
            source: key(),
            destination: args[2].clone(),
            from: ListEnd::Right,
            to: ListEnd::Left,
        },
        "lmpop" => parse_lmpop(args)?,
        "hmset" => {
            if !args.len().is_multiple_of(2) {
                return Err(wrong_arity("hmset"));
            }
            KvCommand::HMSet {
                key: key(),
                pairs: parse_pairs("hmset", &args[2..])?,
            }
        }
        "hmget" => KvCommand::HMGet {
            key: key(),
            fields: args[2..].to_vec(),
        },
        "hsetnx" => KvCommand::HSetNx {
            key: key(),
            field: args[2].clone(),
            value: args[3].clone(),
        },
        "hincrbyfloat" => {
            let increment = parse_f64(&args[3]).ok_or_else(|| Reply::error(NOT_A_FLOAT))?;
            if !increment.is_finite() {
                return Err(Reply::error("ERR value is NaN or Infinity"));
            }
            KvCommand::HIncrByFloat {
                key: key(),
                field: args[2].clone(),
                increment: args[3].clone(),
            }
        }
        "hstrlen" => KvCommand::HStrLen {
            key: key(),
            field: args[2].clone(),
        },
        "hkeys" => KvCommand::HKeys { key: key() },
        "hvals" => KvCommand::HVals { key: key() },
        "hrandfield" => parse_hrandfield(args)?,
        "hscan" => parse_hscan(args)?,
        other => {
            debug_assert!(false, "{other} is not a list or hash command");
            return Err(unknown_command(args));
        }
    };
    Ok(command)
}

/// `LEFT` or `RIGHT`, as Redis' `getListPositionFromObjectOrReply` reads it.
fn list_position(arg: &[u8]) -> Result<ListEnd, Reply> {
    if is_option(arg, "left") {
        Ok(ListEnd::Left)
    } else if is_option(arg, "right") {
        Ok(ListEnd::Right)
    } else {
        Err(Reply::error(SYNTAX_ERROR))
    }
}

/// Redis' `getRangeLongFromObjectOrReply`: an integer in `min..=max`, else
/// `message` (or the generic range error when there is none).
pub(crate) fn integer_in_range(
    arg: &[u8],
    min: i64,
    max: i64,
    message: Option<&str>,
) -> Result<i64, Reply> {
    let error = || match message {
        Some(message) => Reply::error(format!("ERR {message}")),
        None => Reply::error(format!(
            "ERR value is out of range, value must between {min} and {max}"
        )),
    };
    let value = match parse_i64(arg) {
        Some(value) => value,
        None if message.is_some() => return Err(error()),
        None => return Err(Reply::error(NOT_AN_INTEGER)),
    };
    if value < min || value > max {
        return Err(error());
    }
    Ok(value)
}

fn parse_lpos(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let mut rank = 1;
    let mut count = None;
    let mut maxlen = 0;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let Some(value) = args.get(index + 1) else {
            return Err(Reply::error(SYNTAX_ERROR));
        };
        if is_option(option, "rank") {
            rank = integer(value)?;
            if rank == i64::MIN {
                // Redis 7.0 negates it to count from the tail, which leaves
                // it negative, so every match qualifies: the first from the
                // tail, as RANK -1 answers.
                rank = -1;
            }
            if rank == 0 {
                return Err(Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is_option(option, "count") {
            let value = integer_in_range(value, 0, i64::MAX, Some("COUNT can't be negative"))?;
            count = Some(value as u64);
        } else if is_option(option, "maxlen") {
            let value = integer_in_range(value, 0, i64::MAX, Some("MAXLEN can't be negative"))?;
            maxlen = value as u64;
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 2;
    }
    Ok(KvCommand::LPos {
        key: args[1].clone(),
        value: args[2].clone(),
        rank,
        count,
        maxlen,
    })
}

fn parse_lmpop(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let numkeys = integer_in_range(
        &args[1],
        1,
        i64::MAX,
        Some("numkeys should be greater than 0"),
    )?;
    // The keys, then the direction: there must be room for both.
    let end_index = usize::try_from(numkeys)
        .ok()
        .and_then(|numkeys| numkeys.checked_add(2))
        .filter(|&end_index| end_index < args.len())
        .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
    let end = list_position(&args[end_index])?;
    let mut count = None;
    let mut index = end_index + 1;
    while index < args.len() {
        match args.get(index + 1) {
            Some(value) if count.is_none() && is_option(&args[index], "count") => {
                let value =
                    integer_in_range(value, 1, i64::MAX, Some("count should be greater than 0"))?;
                count = Some(value as u64);
            }
            _ => return Err(Reply::error(SYNTAX_ERROR)),
        }
        index += 2;
    }
    Ok(KvCommand::LMPop {
        keys: args[2..end_index].to_vec(),
        end,
        count: count.unwrap_or(1),
    })
}

fn parse_hrandfield(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let count = match args.get(2) {
        None => None,
        Some(arg) => Some(integer_in_range(arg, -i64::MAX, i64::MAX, None)?),
    };
    let with_values = match args.get(3..) {
        None | Some([]) => false,
        Some([option]) if is_option(option, "withvalues") => true,
        Some(_) => return Err(Reply::error(SYNTAX_ERROR)),
    };
    // Two replies per field: Redis refuses counts whose doubling overflows.
    if with_values && count.is_some_and(|count| !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count))
    {
        return Err(Reply::error("ERR value is out of range"));
    }
    Ok(KvCommand::HRandField {
        key: args[1].clone(),
        count,
        with_values,
    })
}

pub(crate) fn parse_hscan(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let cursor = parse_cursor(&args[2])?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let Some(value) = args.get(index + 1) else {
            return Err(Reply::error(SYNTAX_ERROR));
        };
        if is_option(option, "count") {
            let value = integer(value)?;
            count = u64::try_from(value)
                .ok()
                .filter(|&count| count >= 1)
                .ok_or_else(|| Reply::error(SYNTAX_ERROR))?;
        } else if is_option(option, "match") {
            pattern = Some(value.clone());
        } else {
            return Err(Reply::error(SYNTAX_ERROR));
        }
        index += 2;
    }
    Ok(KvCommand::HScan {
        key: args[1].clone(),
        cursor,
        pattern,
        count,
    })
}

/// A `SCAN`-family cursor: an unsigned 64-bit decimal.
fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))
}
