//! `redis.call` / `redis.pcall`: one command of a script, run inside the
//! script's apply with synod-kv's own parser and execution (the path a
//! transaction's commands take), so a script sees and changes exactly the
//! replicated keyspace.

use std::cell::Cell;

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use crate::acl_conn::KeysRefused;
use crate::command::KvCommand;
use crate::keyspace::Keyspace;
use crate::ops;

/// Commands a script may not run, as in Redis (blocking, transactions,
/// pub/sub subscriptions, scripting itself, connection and server
/// administration), plus those synod answers outside the state machine
/// (PUBLISH is delivered by the store only for a top-level command).
const NOT_ALLOWED: &[&str] = &[
    "blpop",
    "brpop",
    "brpoplpush",
    "blmove",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "script",
    "fcall",
    "fcall_ro",
    "function",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "publish",
    "spublish",
    "pubsub",
    "auth",
    "hello",
    "acl",
    "client",
    "quit",
    "reset",
    "cluster",
    "synod.member",
    "synod.leader",
    "config",
    "info",
    "command",
    "save",
    "bgsave",
    "shutdown",
    "monitor",
    "sync",
    "psync",
    "replicaof",
    "slaveof",
    "debug",
    "xread",
    "xreadgroup",
    "wait",
    "failover",
];

/// Longest value a script's command may write (like the server's
/// `--max-value-bytes` default): the apply path does not know the node's
/// setting, and this bounds SETRANGE/SETBIT offsets before anything grows.
pub(crate) const SCRIPT_VALUE_BYTES_MAX: usize = 16 << 20;

/// Runs one `redis.call`; an error reply is the command's error (raised by
/// `redis.call`, returned by `redis.pcall`). `call` numbers the script's
/// calls; `read_work` is what the script's reads visited so far, bounded
/// as a transaction's are ([`ops::TRANSACTION_READ_WORK_MAX`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_command(
    keyspace: &mut Keyspace,
    args: &[Bytes],
    user: Option<&Bytes>,
    read_only: bool,
    ctx: &ApplyContext,
    position: u32,
    call: u32,
    read_work: &Cell<usize>,
    prefetch: Option<&super::engine::Prefetch<'_>>,
) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if NOT_ALLOWED.contains(&name.as_str()) {
        return Reply::error("ERR This Redis command is not allowed from script");
    }
    let local = match name.as_str() {
        "ping" => Some(match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => return wrong_args(),
        }),
        "echo" => Some(match args.len() {
            2 => Reply::Bulk(args[1].clone()),
            _ => return wrong_args(),
        }),
        // The log clock: the same on every replica.
        "time" => Some(match args.len() {
            1 => Reply::Array(vec![
                Reply::Bulk(Bytes::from((ctx.time_ms / 1000).to_string())),
                Reply::Bulk(Bytes::from(((ctx.time_ms % 1000) * 1000).to_string())),
            ]),
            _ => return wrong_args(),
        }),
        "select" => Some(match args.len() {
            2 if args[1].as_ref() == b"0" => Reply::ok(),
            2 => Reply::error("ERR DB index is out of range"),
            _ => return wrong_args(),
        }),
        _ => None,
    };
    if let Some(reply) = local {
        // Checked against the user's commands too, as Redis' `scriptCall`
        // checks every command (review of 0e7a7e0: a user without PING
        // or SELECT ran them in a script).
        return acl_refusal(acl_verdict(keyspace, user, args)).unwrap_or(reply);
    }
    let Some(spec) = crate::table::lookup(&name) else {
        return Reply::error("ERR Unknown Redis command called from script");
    };
    if !spec.arity_accepts(args.len()) {
        return wrong_args();
    }
    if let Some(refused) = acl_refusal(acl_verdict(keyspace, user, args)) {
        return refused;
    }
    if let Some(big) = args.iter().find(|arg| arg.len() > SCRIPT_VALUE_BYTES_MAX) {
        return Reply::error(format!(
            "ERR argument of {} bytes exceeds the maximum value size of {SCRIPT_VALUE_BYTES_MAX} bytes in scripts",
            big.len()
        ));
    }
    let mut command = match crate::parse::parse(args) {
        Ok(command) => command,
        Err(reply) => return reply,
    };
    if read_only && !command.is_read() {
        return Reply::error("ERR Write commands are not allowed from read-only scripts.");
    }
    match &mut command {
        // Several RANDOMKEYs of one script draw apart, alike on every replica.
        KvCommand::RandomKey { nonce } => *nonce = u64::from(call),
        KvCommand::SetBit { offset, .. } if *offset / 8 + 1 > SCRIPT_VALUE_BYTES_MAX as u64 => {
            return Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        }
        KvCommand::SetRange { offset, value, .. }
            if !value.is_empty()
                && offset.saturating_add(value.len() as u64) > SCRIPT_VALUE_BYTES_MAX as u64 =>
        {
            return Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        }
        _ => {}
    }
    // The proposer's dry run: the keys come in from the node's state first
    // (or the command is answered from it); see `super::dry_run`.
    if let Some(answered) = prefetch.and_then(|prefetch| prefetch(keyspace, &command)) {
        return answered;
    }
    match ops::transaction_read_work(keyspace, &command, ctx.time_ms) {
        Some(cost) if read_work.get().saturating_add(cost) <= ops::TRANSACTION_READ_WORK_MAX => {
            read_work.set(read_work.get() + cost);
        }
        _ => return ops::over_transaction_budget(&command),
    }
    let salt = position.wrapping_add(call.wrapping_add(1).wrapping_mul(0x9E37_79B9));
    ops::write_in_script(keyspace, &command, ctx, salt)
}

/// What the script's user may do with a command (see `EvalCommand::user`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AclVerdict {
    Allowed,
    /// The user may not run the command (or the user is gone or disabled).
    CommandDenied,
    /// The user may not touch one of the command's keys.
    KeyDenied,
    /// A SORT whose BY or GET pattern (this option) reads keys named by
    /// the list's elements, for a user without every key.
    SortPatternDenied(&'static str),
}

/// Checks `args` against the rules of `user` as the replicated users hold
/// them now; no user: allowed. A command that does not parse is allowed
/// here (it fails on its own).
pub(crate) fn acl_verdict(keyspace: &Keyspace, user: Option<&Bytes>, args: &[Bytes]) -> AclVerdict {
    let Some(name) = user else {
        return AclVerdict::Allowed;
    };
    let users = keyspace.acl().users();
    let Some(user) = users.get(name).filter(|user| user.enabled()) else {
        return AclVerdict::CommandDenied;
    };
    let command = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let first = args
        .get(1)
        .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase());
    if !user.command_allowed(&command, first.as_deref()) {
        return AclVerdict::CommandDenied;
    }
    if user.all_keys {
        return AclVerdict::Allowed;
    }
    let Ok(parsed) = crate::parse::parse(args) else {
        return AclVerdict::Allowed;
    };
    // Keys, then a SORT pattern, as the front end's `acl_conn::check_keys`
    // and Redis' `sortCommand` (which runs as the script's user, after the
    // check of keys; review of 8fc9577: a user limited to `~l` read any
    // key through `SORT l GET secret:*` in a script).
    match crate::acl_conn::keys_refused(user, &parsed) {
        None => AclVerdict::Allowed,
        Some(KeysRefused::Key) => AclVerdict::KeyDenied,
        Some(KeysRefused::SortPattern(option)) => AclVerdict::SortPatternDenied(option),
    }
}

/// Redis 7.0's error for a script command its user may not run.
pub(crate) fn acl_refusal(verdict: AclVerdict) -> Option<Reply> {
    match verdict {
        AclVerdict::Allowed => None,
        AclVerdict::CommandDenied => Some(Reply::error(
            "ERR The user executing the script can't run this command or subcommand",
        )),
        AclVerdict::KeyDenied => Some(Reply::error(
            "ERR The user executing the script can't access at least one of the keys mentioned in the command",
        )),
        AclVerdict::SortPatternDenied(option) => Some(crate::acl_conn::sort_pattern_denied(option)),
    }
}

fn wrong_args() -> Reply {
    Reply::error("ERR Wrong number of args calling Redis command from script")
}
