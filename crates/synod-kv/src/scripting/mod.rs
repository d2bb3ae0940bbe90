//! Scripting: `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO` and `SCRIPT`, with
//! Lua 5.1 (the version Redis embeds) through `mlua`.
//!
//! # Replicated as the script, run on every replica
//!
//! The log command is [`EvalCommand`]: the script's full text, its keys and
//! its arguments (EVALSHA is resolved to the text by the node the client
//! talks to, so no replica ever needs a script cache to apply it). Every
//! replica runs it at apply time against the replicated keyspace, and
//! `redis.call` runs synod-kv's own command execution (`ops`), the path a
//! transaction's commands take. Writes made before an error stay, as in
//! Redis (no rollback): that is deterministic too.
//!
//! # Why every replica computes the same result
//!
//! A run is a function of (script, keys, arguments, keyspace, log
//! position) only:
//! - a fresh Lua state per run (see `engine`), so nothing carries over
//!   from one script to the next;
//! - no `os`, `io`, `debug`, `package`, `coroutine`, `print`, `dofile`,
//!   `loadfile`: no clock, no files, no process state;
//! - `math.random` is replaced by a ChaCha8 generator seeded by the log
//!   position (instance, log time, place in the batch), so it differs from
//!   run to run (as in Redis 7) and is the same on every replica;
//!   `math.randomseed(n)` reseeds it;
//! - commands that read the clock or draw at random are deterministic at
//!   apply time in synod already (the log clock; RANDOMKEY, SPOP,
//!   SRANDMEMBER... are seeded by the log position, here also by the call's
//!   number in the script), so scripts may run them; `TIME` answers the log
//!   clock;
//! - `tostring` of a table or function hides its address, which differs
//!   between processes (and, without a metatable, never makes the address
//!   text at all); tables keyed by tables, functions or userdata hash them
//!   by creation number, not address (synod's patch to Lua 5.1,
//!   `vendor/lua-src/SYNOD.md`), so `pairs` visits them in the same order
//!   on every replica.
//!
//! # Bounds: a script never stalls a replica
//!
//! Every run has an instruction budget counted by a Lua hook
//! ([`Limits::instructions_max`]) and a memory limit on the Lua state
//! ([`Limits::memory_bytes_max`]). Instruction counts and Lua allocations
//! are the same on every replica for the same run (same binary, same
//! inputs), so a script over either limit stops at the same point
//! everywhere and answers the same error; a script cannot catch the stop
//! with `pcall`. The reads of one script together visit at most
//! [`crate::ops::TRANSACTION_READ_WORK_MAX`] elements, as a transaction's,
//! and the values it writes are bounded by
//! `call::SCRIPT_VALUE_BYTES_MAX`. Lua 5.1 does not run the hook inside
//! a C function, and one `string.find` with a backtracking pattern would
//! run for a time that grows as a power of the string's length: the
//! pattern functions (`find`, `match`, `gmatch`, `gsub`) are synod's own
//! port of Lua 5.1's matcher, whose every step is charged to the same
//! budget (`patterns`). Every other operation that works inside one
//! instruction or one C call (a concatenation, a string comparison,
//! `string.upper`, `string.rep`, `table.insert` at 1, `table.sort`, `next`
//! on a sparse table, `loadstring`, `collectgarbage`, synod's `cjson`,
//! `cmsgpack`, `struct`...) is charged its work through a cost counter
//! synod adds to Lua 5.1 (`cost`, `vendor/lua-src`): one such call still
//! does work bounded by the memory limit before the hook runs again (a
//! few tens of milliseconds on 64 MiB), but a loop of them stops at the
//! budget, as a loop of instructions does. Log entries written before
//! budgets travelled in the log count instructions only
//! ([`Limits::costs_charged`]).
//!
//! The node a client sends a script to dry-runs it first (see
//! `dry_run`): a script over either limit is refused there, before it
//! enters the log, and while a dry run lasts longer than `lua-time-limit`
//! the node answers BUSY and SCRIPT KILL stops it, as in Redis. The budget
//! at apply stays the safety net: the state can move between the dry run
//! and the apply.
//!
//! # The script cache
//!
//! Node-local ([`ScriptCache`]): SCRIPT LOAD and EVAL add to the cache of
//! the node the client talks to; EVALSHA looks there (NOSCRIPT when the
//! script is not known on that node, as a fresh Redis replica answers).

mod bit;
mod call;
mod cjson;
mod cjson_decode;
mod cmsgpack;
mod convert;
mod cost;
pub(crate) mod dry_run;
mod engine;
mod patterns;
mod precompiled;
mod sha1;
mod structlib;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use crate::command::KvCommand;
use crate::keyspace::Keyspace;

pub use dry_run::{
    ScriptRuns, ALLOW_BUSY, DRY_RUNS_MAX, DRY_RUN_FETCH_BYTES_MAX, DRY_RUN_KEYS_MAX,
    DRY_RUN_KEY_BYTES_MAX, DRY_RUN_WALL_MAX,
};

/// The SHA-1 of `data` as 40 lowercase hex digits: a script's name.
pub fn sha1_hex(data: &[u8]) -> String {
    sha1::sha1_hex(data)
}

/// A script run as it travels in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalCommand {
    /// The script's text (EVALSHA's digest already resolved).
    pub script: Bytes,
    /// `KEYS`.
    pub keys: Vec<Bytes>,
    /// `ARGV`.
    pub args: Vec<Bytes>,
    /// `EVAL_RO`/`EVALSHA_RO`/`FCALL_RO`: write commands are refused.
    pub read_only: bool,
    /// `FCALL`: `script` is a function library's code (without its
    /// `#!lua` line) and this is the function to call.
    pub function: Option<Bytes>,
    /// The ACL user the client ran it as, when it authenticated as one:
    /// the script's commands and `redis.acl_check_cmd` are checked against
    /// that user's rules as the replicated users hold them at this point of
    /// the log (the same on every replica). `None`: the connection's
    /// default, unchecked (as before users travelled with scripts).
    pub user: Option<Bytes>,
    /// The run's instruction budget, chosen by the node that proposed it
    /// ([`APPLY_LIMITS`] today) and carried in the log, so every replica,
    /// and a replay by a later release, stops it at the same point.
    pub instructions_max: u64,
}

/// The instruction budget of scripts logged by releases before the dry
/// run (their log entries carry none).
pub const LEGACY_INSTRUCTIONS_MAX: u64 = 100_000_000;

/// The largest budget a log entry may carry (a larger one is refused at
/// decode): ten times today's, room for later releases, never unbounded.
pub const INSTRUCTIONS_MAX_LOGGED: u64 = 5_000_000_000;

/// What one script run may use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Lua VM instructions (counted every 1000).
    pub instructions_max: u64,
    /// Bytes the Lua state may allocate.
    pub memory_bytes_max: usize,
    /// `string.find`/`match`/`gmatch`/`gsub` run synod's matcher, whose
    /// steps count against `instructions_max` (see `patterns`), instead
    /// of Lua's C functions, which the budget cannot interrupt; and the
    /// work done inside one instruction or C call is charged too (see
    /// `cost`). Off only for log entries written before it
    /// ([`LEGACY_INSTRUCTIONS_MAX`]), so they replay as they were applied.
    pub costs_charged: bool,
}

/// The limits of a run at apply time, the same on every replica: 500
/// million Lua instructions (about one second of CPU for the cheapest
/// instructions, a tight `while true do end`, on the 2-core development
/// machine; a few seconds for heavier ones) and 64 MiB at most.
///
/// Since the proposer's dry run refuses a script over these limits before
/// it enters the log (`dry_run`), a replica meets a script this long only
/// when the state changed between the dry run and the apply. The event
/// loop counts election timeouts in ticks, and a stalled loop loses ticks
/// rather than counting them late, so a replica busy for a second with a
/// script does not start an election by itself.
///
/// Changing these limits changes what replicas compute: every node of a
/// cluster must run with the same limits (it was 100 million before
/// issue 16's dry run).
pub const APPLY_LIMITS: Limits = Limits {
    instructions_max: 500_000_000,
    memory_bytes_max: 64 << 20,
    costs_charged: true,
};

/// Runs a script at apply time (`ops::write`); `position` is its place in
/// its batch or transaction.
pub(crate) fn run(
    keyspace: &mut Keyspace,
    eval: &EvalCommand,
    ctx: &ApplyContext,
    position: u32,
) -> Reply {
    if let Some(refused) = oom_refusal(keyspace, eval) {
        return refused;
    }
    engine::run(keyspace, eval, ctx, position, &eval_limits(eval))
}

/// The limits `eval` runs with: its own instruction budget (from the log),
/// the memory limit of today.
pub(crate) fn eval_limits(eval: &EvalCommand) -> Limits {
    Limits {
        instructions_max: eval.instructions_max,
        costs_charged: eval.instructions_max != LEGACY_INSTRUCTIONS_MAX,
        ..APPLY_LIMITS
    }
}

/// Redis 7 refuses a script that declares its flags (a `#!lua` line)
/// without `allow-oom` or `no-writes` while memory is full, before it runs;
/// a script without the line runs, and only its writes are refused. In
/// synod "full" is the replicated dataset having no room left under the
/// replicated `maxmemory` (the same on every replica at this point of the
/// log).
fn oom_refusal(keyspace: &Keyspace, eval: &EvalCommand) -> Option<Reply> {
    if eval.read_only || eval.function.is_some() || !eval.script.starts_with(b"#!") {
        return None;
    }
    let flags = shebang_flags(&eval.script);
    if flags.iter().any(|f| *f == "allow-oom" || *f == "no-writes") {
        return None;
    }
    if crate::ops::memory::fits(keyspace, 1) {
        return None;
    }
    Some(Reply::error(crate::ops::memory::OOM))
}

/// The flags of a script's `#!lua flags=...` line (none when it has none).
fn shebang_flags(script: &[u8]) -> Vec<String> {
    let Some(rest) = script.strip_prefix(b"#!") else {
        return Vec::new();
    };
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split_whitespace()
        .filter_map(|part| part.strip_prefix("flags="))
        .flat_map(|flags| flags.split(','))
        .filter(|flag| !flag.is_empty())
        .map(str::to_string)
        .collect()
}

/// [`run`] with explicit limits (the budget tests).
#[cfg(test)]
pub(crate) fn run_limited(
    keyspace: &mut Keyspace,
    eval: &EvalCommand,
    ctx: &ApplyContext,
    limits: &Limits,
) -> Reply {
    engine::run(keyspace, eval, ctx, 0, limits)
}

/// Most scripts one node's cache holds.
pub const SCRIPT_CACHE_SCRIPTS_MAX: usize = 10_000;
/// Most bytes of script text one node's cache holds.
pub const SCRIPT_CACHE_BYTES_MAX: usize = 64 << 20;

/// A node's scripts by SHA-1 (lowercase hex): node-local, not replicated.
#[derive(Clone, Debug, Default)]
pub struct ScriptCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Debug, Default)]
struct CacheInner {
    scripts: BTreeMap<String, Bytes>,
    bytes: usize,
    /// FUNCTION libraries by name: their code and function names.
    libraries: BTreeMap<String, (Bytes, Vec<String>)>,
    /// Function name -> library name.
    functions: BTreeMap<String, String>,
}

impl ScriptCache {
    /// Adds `script` (when the cache has room) and returns its digest.
    pub fn insert(&self, script: &Bytes) -> Result<String, Reply> {
        let sha = sha1::sha1_hex(script);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        if inner.scripts.len() >= SCRIPT_CACHE_SCRIPTS_MAX
            || inner.bytes.saturating_add(script.len()) > SCRIPT_CACHE_BYTES_MAX
        {
            return Err(Reply::error(format!(
                "ERR the script cache is full ({SCRIPT_CACHE_SCRIPTS_MAX} scripts or {SCRIPT_CACHE_BYTES_MAX} bytes); SCRIPT FLUSH it"
            )));
        }
        inner.bytes += script.len();
        // A copy: the script may be a slice of a request's bytes, which
        // would keep what was sent around it (see `RequestParser::take_frame`).
        inner
            .scripts
            .insert(sha.clone(), Bytes::copy_from_slice(script));
        Ok(sha)
    }

    /// The script whose digest is `sha` (any case).
    pub fn get(&self, sha: &[u8]) -> Option<Bytes> {
        if sha.len() != 40 {
            return None;
        }
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.scripts.get(&sha).cloned()
    }

    /// Empties the cache.
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = inner.scripts.values().map(Bytes::len).sum();
        inner.bytes = inner.bytes.saturating_sub(held);
        inner.scripts.clear();
    }

    /// FUNCTION LOAD: the library `code` (its `#!lua name=` line first).
    fn load_library(&self, code: &Bytes, replace: bool) -> Reply {
        let (name, body) = match library_header(code) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        let names = match engine::library_functions(&body) {
            Ok(names) => names,
            Err(reply) => return reply,
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.libraries.contains_key(&name) && !replace {
            return Reply::error(format!("ERR Library '{name}' already exists"));
        }
        for function in &names {
            if let Some(owner) = inner.functions.get(function) {
                if *owner != name {
                    return Reply::error(format!("ERR Function {function} already exists"));
                }
            }
        }
        let added = body.len();
        let held = inner.libraries.get(&name).map_or(0, |(code, _)| code.len());
        if inner.libraries.len() >= SCRIPT_CACHE_SCRIPTS_MAX
            || inner.bytes.saturating_add(added) > SCRIPT_CACHE_BYTES_MAX
        {
            return Reply::error("ERR the function library cache is full; FUNCTION FLUSH it");
        }
        if let Some((_, old)) = inner.libraries.remove(&name) {
            for function in old {
                inner.functions.remove(&function);
            }
        }
        inner.bytes = inner.bytes.saturating_sub(held) + added;
        for function in &names {
            inner.functions.insert(function.clone(), name.clone());
        }
        inner.libraries.insert(name.clone(), (body, names));
        Reply::Bulk(Bytes::from(name))
    }

    /// The code of the library holding `function`.
    fn function_code(&self, function: &[u8]) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let library = inner.functions.get(&*String::from_utf8_lossy(function))?;
        inner.libraries.get(library).map(|(code, _)| code.clone())
    }

    fn flush_functions(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = inner.libraries.values().map(|(code, _)| code.len()).sum();
        inner.bytes = inner.bytes.saturating_sub(held);
        inner.libraries.clear();
        inner.functions.clear();
    }

    fn delete_library(&self, name: &[u8]) -> Reply {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.libraries.remove(&*String::from_utf8_lossy(name)) {
            Some((code, functions)) => {
                inner.bytes = inner.bytes.saturating_sub(code.len());
                for function in functions {
                    inner.functions.remove(&function);
                }
                Reply::ok()
            }
            None => Reply::error("ERR Library not found"),
        }
    }

    /// Scripts held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .scripts
            .len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a scripting request turns into at the front end.
pub(crate) enum ScriptRequest {
    /// A script run for the log.
    Log(KvCommand),
    /// Answered at once (SCRIPT, errors).
    Reply(Reply),
}

/// The scripting commands the front end handles (lowercase).
pub(crate) const SCRIPT_COMMANDS: &[&str] = &[
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "script",
    "fcall",
    "fcall_ro",
    "function",
];

/// Flags a script may declare on a `#!lua flags=...` first line.
const SHEBANG_FLAGS: &[&str] = &[
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// Checks an EVAL script's `#!lua` line, if it has one, as Redis 7 does;
/// `Ok(true)` when it declares `no-writes` (then it runs as EVAL_RO).
fn eval_shebang(script: &[u8]) -> Result<bool, Reply> {
    let Some(rest) = script.strip_prefix(b"#!") else {
        return Ok(false);
    };
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(&rest[..end]);
    let mut parts = line.split_whitespace();
    if parts.next() != Some("lua") {
        return Err(Reply::error("ERR Unexpected engine in script shebang"));
    }
    let mut no_writes = false;
    for part in parts {
        let Some(flags) = part.strip_prefix("flags=") else {
            return Err(Reply::error(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for flag in flags.split(',').filter(|f| !f.is_empty()) {
            if !SHEBANG_FLAGS.contains(&flag) {
                return Err(Reply::error(format!(
                    "ERR Unexpected flag in script shebang: {flag}"
                )));
            }
            no_writes |= flag == "no-writes";
        }
    }
    Ok(no_writes)
}

/// The script as Lua compiles it: a `#!` first line blanked (keeping the
/// line numbers).
pub(crate) fn without_shebang(script: &[u8]) -> &[u8] {
    if script.starts_with(b"#!") {
        let end = script
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(script.len());
        &script[end..]
    } else {
        script
    }
}

/// A library's name and its code without the `#!lua name=<name>` line (an
/// empty line in its place keeps the line numbers).
fn library_header(code: &Bytes) -> Result<(String, Bytes), Reply> {
    let (first, rest) = match code.iter().position(|&b| b == b'\n') {
        Some(end) => (&code[..end], &code[end..]),
        None => (&code[..], &b""[..]),
    };
    let Some(header) = first.strip_prefix(b"#!") else {
        return Err(Reply::error("ERR Missing library metadata"));
    };
    let header = String::from_utf8_lossy(header);
    let mut parts = header.split_whitespace();
    let engine = parts.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(Reply::error(format!("ERR Engine '{engine}' not found")));
    }
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(value) => name = Some(value.to_string()),
            None => {
                return Err(Reply::error(format!(
                    "ERR Invalid metadata value given: {part}"
                )))
            }
        }
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Err(Reply::error("ERR Library name was not given"));
    };
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Reply::error("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"));
    }
    Ok((name, Bytes::copy_from_slice(rest)))
}

fn function_command(cache: &ScriptCache, args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return crate::parse::wrong_arity("function");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("load", 3) => cache.load_library(&args[2], false),
        ("load", 4) if args[2].eq_ignore_ascii_case(b"replace") => {
            cache.load_library(&args[3], true)
        }
        ("flush", 2) => {
            cache.flush_functions();
            Reply::ok()
        }
        ("flush", 3)
            if args[2].eq_ignore_ascii_case(b"async") || args[2].eq_ignore_ascii_case(b"sync") =>
        {
            cache.flush_functions();
            Reply::ok()
        }
        ("delete", 3) => cache.delete_library(&args[2]),
        ("kill", 2) => Reply::error("NOTBUSY No scripts in execution right now."),
        _ => Reply::error(format!(
            "ERR FUNCTION {} is not supported in synod (LOAD, DELETE, FLUSH, KILL are)",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

/// `COMMAND` rows of the scripting commands: name, arity, flags, summary.
pub(crate) const COMMAND_ROWS: &[(&str, i64, &[&str], &str)] = &[
    (
        "eval",
        -3,
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
        ],
        "Runs a Lua script on every replica, at its place in the log.",
    ),
    (
        "eval_ro",
        -3,
        &["noscript", "stale", "skip_monitor", "no_mandatory_keys"],
        "Runs a read-only Lua script.",
    ),
    (
        "evalsha",
        -3,
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
        ],
        "Runs a cached Lua script by its SHA-1 (this node's cache).",
    ),
    (
        "evalsha_ro",
        -3,
        &["noscript", "stale", "skip_monitor", "no_mandatory_keys"],
        "Runs a cached read-only Lua script by its SHA-1.",
    ),
    (
        "script",
        -2,
        &["noscript"],
        "SCRIPT LOAD, EXISTS, FLUSH, KILL, HELP: this node's script cache.",
    ),
    (
        "fcall",
        -3,
        &[
            "noscript",
            "stale",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
        ],
        "Calls a function of a library loaded on this node, on every replica.",
    ),
    (
        "fcall_ro",
        -3,
        &["noscript", "stale", "skip_monitor", "no_mandatory_keys"],
        "Calls a function read-only.",
    ),
    (
        "function",
        -2,
        &["noscript"],
        "FUNCTION LOAD, DELETE, FLUSH, KILL: this node's function libraries.",
    ),
];

/// Parses a scripting request (`args[0]` is one of [`SCRIPT_COMMANDS`]).
pub(crate) fn request(cache: &ScriptCache, args: &[Bytes]) -> ScriptRequest {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if name == "script" {
        return ScriptRequest::Reply(script_command(cache, args));
    }
    if name == "function" {
        return ScriptRequest::Reply(function_command(cache, args));
    }
    if args.len() < 3 {
        return ScriptRequest::Reply(crate::parse::wrong_arity(&name));
    }
    let read_only = name.ends_with("_ro");
    let mut function = None;
    let script = if name.starts_with("fcall") {
        match cache.function_code(&args[1]) {
            Some(code) => {
                function = Some(args[1].clone());
                code
            }
            None => return ScriptRequest::Reply(Reply::error("ERR Function not found")),
        }
    } else if name.starts_with("evalsha") {
        match cache.get(&args[1]) {
            Some(script) => script,
            None => {
                return ScriptRequest::Reply(Reply::error(
                    "NOSCRIPT No matching script. Please use EVAL.",
                ))
            }
        }
    } else {
        // As Redis, EVAL caches the script (when there is room).
        let _ = cache.insert(&args[1]);
        args[1].clone()
    };
    let read_only = match eval_shebang(&script) {
        Ok(no_writes) => read_only || no_writes,
        Err(reply) => return ScriptRequest::Reply(reply),
    };
    let Some(numkeys) = crate::number::parse_i64(&args[2]) else {
        return ScriptRequest::Reply(Reply::error(crate::parse::NOT_AN_INTEGER));
    };
    let rest = &args[3..];
    if numkeys < 0 {
        return ScriptRequest::Reply(Reply::error("ERR Number of keys can't be negative"));
    }
    if numkeys as u64 > rest.len() as u64 {
        return ScriptRequest::Reply(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let (keys, script_args) = rest.split_at(numkeys as usize);
    ScriptRequest::Log(KvCommand::Eval(Box::new(EvalCommand {
        instructions_max: APPLY_LIMITS.instructions_max,
        script,
        keys: keys.to_vec(),
        args: script_args.to_vec(),
        read_only,
        function,
        user: None,
    })))
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in this node's script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush this node's Lua scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script (synod: the scripts this node is dry-running before it proposes them).",
    "LOAD <script>",
    "    Load a script into this node's scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

fn script_command(cache: &ScriptCache, args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return crate::parse::wrong_arity("script");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("help", 2) => Reply::Array(
            SCRIPT_HELP
                .iter()
                .map(|line| Reply::simple((*line).to_string()))
                .collect(),
        ),
        ("load", 3) => match engine::compile_check(&args[2]) {
            Err(reply) => reply,
            Ok(()) => match cache.insert(&args[2]) {
                Ok(sha) => Reply::Bulk(Bytes::from(sha)),
                Err(reply) => reply,
            },
        },
        ("exists", n) if n >= 3 => Reply::Array(
            args[2..]
                .iter()
                .map(|sha| Reply::Integer(i64::from(cache.get(sha).is_some())))
                .collect(),
        ),
        ("flush", 2) => {
            cache.flush();
            Reply::ok()
        }
        ("flush", 3) => {
            let mode = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            if mode == "async" || mode == "sync" {
                cache.flush();
                Reply::ok()
            } else {
                Reply::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
            }
        }
        ("kill", 2) => Reply::error("NOTBUSY No scripts in execution right now."),
        ("debug", _) => Reply::error("ERR SCRIPT DEBUG is not supported in synod"),
        _ => Reply::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SCRIPT HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_costs;
#[cfg(test)]
mod tests_libs;
#[cfg(test)]
mod tests_patterns;
