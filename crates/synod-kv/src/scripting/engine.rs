//! One script run: a fresh Lua 5.1 state, sandboxed as Redis 7 sandboxes
//! it, with `redis.call` running synod-kv's own command execution against
//! the keyspace being applied.
//!
//! A fresh state per run (about 100 µs) means nothing a script leaves in
//! the state (globals it sneaks in, the PRNG's position, garbage) can reach
//! the next script, so a script's result is a function of (script, keys,
//! arguments, keyspace, log position) only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use mlua::{
    chunk::ChunkMode, Function, HookTriggers, Lua, LuaOptions, StdLib, Value, Variadic, VmState,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use synod::ApplyContext;
use synod_resp::Reply;

use super::convert::{error_table, lua_to_reply, one_line, reply_to_lua, ScriptResp};
use super::cost::{self, LuaCost};
use super::precompiled::Precompiled;
use super::{EvalCommand, Limits};
use crate::keyspace::Keyspace;

/// Instructions between two budget checks: the hook's own cost is
/// negligible at this spacing, and a script overruns by at most this many.
const HOOK_STEP_INSTRUCTIONS: u32 = 1000;

/// What one `redis.call` / `redis.pcall` costs in the instruction budget:
/// about what running it costs next to one Lua instruction (a PING
/// through the call path takes a few hundred nanoseconds; a command's own
/// work is bounded apart, see `call`). A script runs at most
/// `instructions_max / CALL_COST_INSTRUCTIONS` commands (a million).
const CALL_COST_INSTRUCTIONS: u64 = 500;

/// What the hook charges for one window of [`HOOK_STEP_INSTRUCTIONS`]:
/// flat without cost charging (log entries written before it), else the
/// window's true length and the cost charged in it (see `cost`).
fn window(cost: Option<&LuaCost>) -> u64 {
    match cost {
        Some(cost) => cost.window(HOOK_STEP_INSTRUCTIONS),
        None => u64::from(HOOK_STEP_INSTRUCTIONS),
    }
}

/// The error a script stopped by its instruction budget answers.
fn budget_error(limits: &Limits) -> Reply {
    Reply::error(format!(
        "ERR Script exceeded the budget of {} Lua instructions (synod stops scripts deterministically instead of letting them stall every replica)",
        limits.instructions_max
    ))
}

/// [`PRELUDE`], compiled once (see [`Precompiled`]).
static PRELUDE_CHUNK: Precompiled = Precompiled::new(PRELUDE);

/// The sandbox, run once per state before the user's script (chunk
/// `=synod`). It receives the Rust functions, builds `redis`, replaces
/// what must be deterministic or safe, then makes the globals read-only as
/// Redis 7 does: reading an undeclared global and writing any global are
/// errors.
const PRELUDE: &str = r#"
local raw_call, sha1hex, setresp, random, randomseed, stopped, bitlib, keys, argv,
  cjsonlib, msgpacklib, structlib, acl_check, patlib = ...
local error, type, select, real_tostring, next = error, type, select, tostring, next
local real_setmetatable, real_rawset, real_pcall, real_xpcall = setmetatable, rawset, pcall, xpcall
local real_getmetatable = getmetatable
local real_loadstring, unpack = loadstring, unpack
local readonly = {}
local function deny() error("Attempt to modify a readonly table", 2) end
local function protect(real)
  local proxy = {}
  local meta = {__index = real, __newindex = deny}
  if real ~= nil then meta.__metatable = protect(nil) end
  real_setmetatable(proxy, meta)
  readonly[proxy] = true
  return proxy
end

local redis = {}
redis.call = function(...)
  local reply, raise = raw_call({n = select('#', ...), ...})
  if raise then error(reply, 0) end
  return reply
end
redis.pcall = function(...)
  local reply, raise = raw_call({n = select('#', ...), ...})
  if raise == 2 then error(reply, 0) end
  return reply
end
redis.sha1hex = function(...)
  if select('#', ...) ~= 1 then error("wrong number of arguments", 0) end
  return sha1hex(...)
end
redis.error_reply = function(text)
  if type(text) ~= 'string' then error("wrong number or type of arguments", 0) end
  if text == '' or text:sub(1, 1) == '-' then text = 'ERR ' .. text:sub(2) end
  return {err = text}
end
redis.status_reply = function(text)
  if type(text) ~= 'string' then error("wrong number or type of arguments", 0) end
  return {ok = text}
end
redis.setresp = function(...)
  if select('#', ...) ~= 1 then error("redis.setresp() requires one argument.", 0) end
  local resp = ...
  if resp ~= 2 and resp ~= 3 then error("RESP version must be 2 or 3.", 0) end
  setresp(resp)
end
local registered = {}
redis.register_function = function(...)
  local name, callback
  if select('#', ...) == 1 and type((...)) == 'table' then
    local spec = ...
    name, callback = spec.function_name, spec.callback
  else
    name, callback = ...
  end
  if type(name) ~= 'string' or type(callback) ~= 'function' then
    error("wrong arguments to redis.register_function", 0)
  end
  registered[name] = callback
end
redis.log = function() end
redis.debug = function() end
redis.breakpoint = function() return false end
redis.replicate_commands = function() return true end
redis.set_repl = function() end
redis.acl_check_cmd = function(...)
  if select('#', ...) == 0 then error("Please specify at least one argument for this redis lib call", 0) end
  return acl_check({n = select('#', ...), ...})
end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = "7.0.15", 0x07000f

-- Pattern matching whose steps count against the budget (see the module
-- `patterns`).
if patlib ~= nil then
  string.find, string.match = patlib.find, patlib.match
  string.gmatch, string.gsub = patlib.gmatch, patlib.gsub
  -- Lua 5.1's old name for gmatch (LUA_COMPAT_GFIND): the C matcher too.
  string.gfind = patlib.gmatch
end

-- Deterministic randomness: seeded from the log position (see the module
-- documentation), reseeded by math.randomseed.
math.random = random
math.randomseed = randomseed

-- A budget-stopped script must not go on by catching the stop.
local function rethrow(...)
  if stopped() then error("script stopped", 0) end
  return ...
end
-- Nested pcalls are bounded well below Lua's C-call limit (200): Lua 5.1's
-- pcall mishandles its stack when the limit is hit inside it.
local depth = 0
local function leave(...)
  depth = depth - 1
  return rethrow(...)
end
pcall = function(...)
  if depth >= 64 then error("pcall nested too deeply", 0) end
  depth = depth + 1
  return leave(real_pcall(...))
end
xpcall = function(f, handler)
  if depth >= 64 then error("pcall nested too deeply", 0) end
  depth = depth + 1
  return leave(real_xpcall(f, handler))
end

-- No bytecode (it can crash the VM), no files, no output, no coroutines
-- (the instruction hook is per coroutine).
loadstring = function(text, name)
  if type(text) == 'string' and text:byte(1) == 27 then return nil, "binary chunks are not allowed" end
  return real_loadstring(text, name)
end
-- Object addresses differ between replicas: never let a script see one.
-- Without a metatable (so without __tostring) such a value's text is its
-- kind and its address: answered without making that string at all, whose
-- slot in Lua's string table (so the cost of later strings) would differ.
tostring = function(value)
  local kind = type(value)
  if kind == 'table' or kind == 'function' or kind == 'userdata' or kind == 'thread' then
    if real_getmetatable(value) == nil then return kind end
    local text = real_tostring(value)
    return (text:gsub(': 0x%x+$', ''):gsub(': %x+$', ''))
  end
  return real_tostring(value)
end
local safe_tostring = tostring
setmetatable = function(t, meta)
  if readonly[t] then error("Attempt to modify a readonly table", 2) end
  return real_setmetatable(t, meta)
end
rawset = function(t, k, v)
  if readonly[t] then error("Attempt to modify a readonly table", 2) end
  return real_rawset(t, k, v)
end
dofile, loadfile, load, print, coroutine, module, require, newproxy = nil, nil, nil, nil, nil, nil, nil, nil

KEYS, ARGV = keys, argv
real_rawset(_G, "redis", protect(redis))
bit = protect(bitlib)
cjson = protect(cjsonlib)
cmsgpack = protect(msgpacklib)
struct = protect(structlib)

local G = _G
local real = {}
for k, v in next, G do real[k] = v end
for k in next, real do real_rawset(G, k, nil) end
real._G = G
real_setmetatable(G, {
  __index = function(_, k)
    local v = real[k]
    if v == nil then
      error("Script attempted to access nonexistent global variable '" .. safe_tostring(k) .. "'", 2)
    end
    return v
  end,
  __newindex = deny,
  __metatable = protect(nil),
})
readonly[G] = true
-- FCALL: run the library (which registers its functions), then the one
-- called, with KEYS and ARGV as its arguments.
local function function_runner(chunk, name)
  return function()
    chunk()
    local callback = registered[name]
    if callback == nil then error("Function not found", 0) end
    return callback(KEYS, ARGV)
  end
end
return real_xpcall, function_runner
"#;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The script returned or raised an error of its own.
    Finished,
    /// Stopped by its instruction budget.
    Budget,
    /// Stopped by its memory limit.
    Memory,
    /// Stopped by [`Hooks::kill`] (SCRIPT KILL on the proposer's dry run).
    Killed,
}

/// See [`Hooks::prefetch`].
pub(crate) type Prefetch<'a> =
    dyn Fn(&mut Keyspace, &crate::command::KvCommand) -> Option<Reply> + 'a;

/// What a run outside the apply path adds (the proposer's dry run, see
/// `super::dry_run`); the apply path uses none of it.
#[derive(Default)]
pub(crate) struct Hooks<'a> {
    /// Set from another thread: the run stops at its next budget check or
    /// `redis.call`, and `pcall` cannot catch it (as the budget's stop).
    pub kill: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Called for every command the script runs, before it runs, with the
    /// keyspace it runs against: may copy in the keys the command touches,
    /// or answer the command itself (`Some`).
    pub prefetch: Option<&'a Prefetch<'a>>,
}

impl Hooks<'_> {
    fn killed(&self) -> bool {
        is_set(self.kill.as_ref())
    }
}

/// Whether a kill flag is there and set.
fn is_set(kill: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>) -> bool {
    kill.is_some_and(|kill| kill.load(std::sync::atomic::Ordering::Relaxed))
}

/// Runs `eval` against `keyspace` within `limits`. `position` is the
/// command's place in its batch (seeds randomness apart).
pub(crate) fn run(
    keyspace: &mut Keyspace,
    eval: &EvalCommand,
    ctx: &ApplyContext,
    position: u32,
    limits: &Limits,
) -> Reply {
    run_with(keyspace, eval, ctx, position, limits, &Hooks::default()).0
}

/// [`run`] with `hooks`, saying how the run ended.
pub(crate) fn run_with(
    keyspace: &mut Keyspace,
    eval: &EvalCommand,
    ctx: &ApplyContext,
    position: u32,
    limits: &Limits,
    hooks: &Hooks<'_>,
) -> (Reply, Ended) {
    let sha = super::sha1::sha1_hex(&eval.script);
    let stopped = Rc::new(Cell::new(false));
    let result = run_in_lua(keyspace, eval, ctx, position, limits, &sha, &stopped, hooks);
    if hooks.killed() {
        return (
            Reply::error(
                "ERR Script killed by user with SCRIPT KILL... (synod: stopped on the node it was sent to, before it was proposed: nothing of it was applied)",
            ),
            Ended::Killed,
        );
    }
    let reply = match result {
        _ if stopped.get() => return (budget_error(limits), Ended::Budget),
        Ok(reply) => reply,
        Err(mlua::Error::MemoryError(_)) => return (memory_error(limits), Ended::Memory),
        Err(error) => Reply::error(format!(
            "ERR Error running script: {}",
            first_line(&error.to_string())
        )),
    };
    if reply == memory_error(limits) {
        return (reply, Ended::Memory);
    }
    (reply, Ended::Finished)
}

/// Compiles `script` without running it (SCRIPT LOAD): Redis refuses to
/// cache a script that does not compile.
pub(crate) fn compile_check(script: &[u8]) -> Result<(), Reply> {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default())
        .map_err(|error| Reply::error(format!("ERR {}", first_line(&error.to_string()))))?;
    let _ = lua.set_memory_limit(APPLY_MEMORY_FOR_COMPILE);
    match lua
        .load(super::without_shebang(script))
        .set_name("@user_script")
        .set_mode(ChunkMode::Text)
        .into_function()
    {
        Ok(_) => Ok(()),
        Err(mlua::Error::SyntaxError { message, .. }) => Err(Reply::error(format!(
            "ERR Error compiling script (new function): {}",
            first_line(&message)
        ))),
        Err(error) => Err(Reply::error(format!(
            "ERR {}",
            first_line(&error.to_string())
        ))),
    }
}

/// The names of the functions a library registers (FUNCTION LOAD): the
/// library's code run in a bare state whose only API is
/// `redis.register_function`, within the apply limits.
pub(crate) fn library_functions(code: &[u8]) -> Result<Vec<String>, Reply> {
    let failed = |error: mlua::Error| {
        Reply::error(format!(
            "ERR Error registering functions: {}",
            first_line(&error.to_string())
        ))
    };
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )
    .map_err(failed)?;
    lua.set_memory_limit(APPLY_MEMORY_FOR_COMPILE)
        .map_err(failed)?;
    let executed = Rc::new(Cell::new(0u64));
    let instructions_max = super::APPLY_LIMITS.instructions_max / 10;
    // Work inside one instruction or C call is charged (see `cost`).
    let cost = LuaCost::enable(&lua, instructions_max).map_err(failed)?;
    // The library's own code may match patterns too: with the charged
    // matcher, so a backtracking one cannot stall the node loading it.
    let patterns = super::patterns::library(
        &lua,
        &super::patterns::Budget {
            executed: Rc::clone(&executed),
            stopped: Rc::new(Cell::new(false)),
            instructions_max,
            kill: None,
            memory_bytes_max: APPLY_MEMORY_FOR_COMPILE,
        },
    )
    .map_err(failed)?;
    let string: mlua::Table = lua.globals().get("string").map_err(failed)?;
    // `gfind` is Lua 5.1's old name for the C `gmatch`.
    for (name, ours) in [
        ("find", "find"),
        ("match", "match"),
        ("gmatch", "gmatch"),
        ("gsub", "gsub"),
        ("gfind", "gmatch"),
    ] {
        string
            .set(name, patterns.get::<Function>(ours).map_err(failed)?)
            .map_err(failed)?;
    }
    // Lua's pcall would catch the hook's stop at every step, for good: once
    // the budget is spent, every pcall raises the stop again.
    {
        let executed = Rc::clone(&executed);
        let spent = lua
            .create_function(move |_, ()| Ok(executed.get() > instructions_max))
            .map_err(failed)?;
        lua.load(
            r#"
local spent, real_pcall, real_xpcall, error = ...
local function rethrow(...)
  if spent() then error("library took too long to load", 0) end
  return ...
end
pcall = function(...) return rethrow(real_pcall(...)) end
xpcall = function(f, handler) return rethrow(real_xpcall(f, handler)) end
"#,
        )
        .set_name("=synod")
        .call::<()>((
            spent,
            lua.globals().get::<Function>("pcall").map_err(failed)?,
            lua.globals().get::<Function>("xpcall").map_err(failed)?,
            lua.globals().get::<Function>("error").map_err(failed)?,
        ))
        .map_err(failed)?;
    }
    let spent = Rc::clone(&executed);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_STEP_INSTRUCTIONS),
        move |_, _| {
            let total = executed
                .get()
                .saturating_add(cost.window(HOOK_STEP_INSTRUCTIONS));
            executed.set(total);
            cost.set_room(instructions_max.saturating_sub(total));
            if total > instructions_max {
                return Err(mlua::Error::RuntimeError(
                    "library took too long to load".into(),
                ));
            }
            Ok(VmState::Continue)
        },
    )
    .map_err(failed)?;
    let names = Rc::new(RefCell::new(Vec::new()));
    let collect = {
        let names = Rc::clone(&names);
        lua.create_function(move |_, args: Variadic<Value>| {
            let name = match args.first() {
                Some(Value::Table(spec)) => spec.raw_get::<Value>("function_name")?,
                Some(other) => other.clone(),
                None => Value::Nil,
            };
            match name {
                Value::String(name) => {
                    names.borrow_mut().push(name.to_string_lossy());
                    Ok(())
                }
                _ => Err(mlua::Error::RuntimeError(
                    "wrong arguments to redis.register_function".into(),
                )),
            }
        })
        .map_err(failed)?
    };
    let redis = lua.create_table().map_err(failed)?;
    redis.set("register_function", collect).map_err(failed)?;
    // Loading may only register functions; calls answer an error.
    let refuse = lua
        .create_function(|_, ()| -> mlua::Result<()> {
            Err(mlua::Error::RuntimeError(
                "redis.call is not available while loading a library".into(),
            ))
        })
        .map_err(failed)?;
    redis.set("call", refuse.clone()).map_err(failed)?;
    redis.set("pcall", refuse).map_err(failed)?;
    lua.globals().set("redis", redis).map_err(failed)?;
    let chunk = match lua
        .load(code)
        .set_name("@user_function")
        .set_mode(ChunkMode::Text)
        .into_function()
    {
        Ok(chunk) => chunk,
        Err(mlua::Error::SyntaxError { message, .. }) => {
            return Err(Reply::error(format!(
                "ERR Error compiling function: {}",
                first_line(&message)
            )))
        }
        Err(error) => return Err(failed(error)),
    };
    let result = chunk.call::<()>(());
    spent.set(spent.get().saturating_add(cost.settle()));
    result.map_err(|error| {
        if spent.get() > instructions_max {
            failed(mlua::Error::RuntimeError(
                "library took too long to load".into(),
            ))
        } else {
            failed(error)
        }
    })?;
    let names = names.borrow().clone();
    if names.is_empty() {
        return Err(Reply::error("ERR No functions registered"));
    }
    Ok(names)
}

const APPLY_MEMORY_FOR_COMPILE: usize = super::APPLY_LIMITS.memory_bytes_max;

fn memory_error(limits: &Limits) -> Reply {
    Reply::error(format!(
        "ERR Script exceeded the Lua memory limit of {} bytes",
        limits.memory_bytes_max
    ))
}

fn first_line(text: &str) -> String {
    one_line(text.lines().next().unwrap_or("").as_bytes())
}

#[allow(clippy::too_many_arguments)]
fn run_in_lua(
    keyspace: &mut Keyspace,
    eval: &EvalCommand,
    ctx: &ApplyContext,
    position: u32,
    limits: &Limits,
    sha: &str,
    stopped: &Rc<Cell<bool>>,
    hooks: &Hooks<'_>,
) -> mlua::Result<Reply> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    lua.set_memory_limit(limits.memory_bytes_max)?;
    let executed = Rc::new(Cell::new(0u64));
    // The work done inside one instruction or one C call, charged too
    // (see `cost`); off for log entries written before it.
    let cost = if limits.costs_charged {
        Some(LuaCost::enable(&lua, limits.instructions_max)?)
    } else {
        None
    };
    {
        let executed = Rc::clone(&executed);
        let stopped = Rc::clone(stopped);
        let instructions_max = limits.instructions_max;
        let kill = hooks.kill.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_STEP_INSTRUCTIONS),
            move |_, _| {
                let total = executed.get().saturating_add(window(cost.as_ref()));
                executed.set(total);
                if let Some(cost) = &cost {
                    cost.set_room(instructions_max.saturating_sub(total));
                }
                if total > instructions_max || stopped.get() || is_set(kill.as_ref()) {
                    stopped.set(true);
                    return Err(mlua::Error::RuntimeError("script stopped".into()));
                }
                Ok(VmState::Continue)
            },
        )?;
    }
    let resp = Rc::new(Cell::new(ScriptResp::Two));
    let rng = Rc::new(RefCell::new(seeded_rng(ctx, position)));
    let line = Rc::new(Cell::new(None::<usize>));
    let keyspace = RefCell::new(keyspace);
    let calls = Cell::new(0u32);
    let read_work = Cell::new(0usize);

    lua.scope(|scope| {
        // The arguments come packed in one table: a Rust callback takes at
        // most a few thousand arguments on the Lua stack, Redis takes more.
        let raw_call = scope.create_function(|lua, packed: mlua::Table| {
            let count: usize = packed.raw_get::<Option<usize>>("n")?.unwrap_or(0);
            let mut args = Vec::with_capacity(count.min(1 << 16));
            for index in 1..=count {
                args.push(packed.raw_get::<Value>(index)?);
            }
            // A command costs far more than a Lua instruction: each one is
            // charged to the budget, so a loop of calls is stopped as soon
            // as a loop of instructions would be.
            let charged = executed.get().saturating_add(CALL_COST_INSTRUCTIONS);
            executed.set(charged);
            if charged > limits.instructions_max || hooks.killed() {
                stopped.set(true);
            }
            if stopped.get() {
                return Ok((Value::String(lua.create_string("script stopped")?), Some(2)));
            }
            let mut command_args = Vec::with_capacity(args.len());
            for arg in args.iter() {
                match arg_bytes(arg) {
                    Some(bytes) => {
                        // Copied out of Lua: charged as Lua's own copies.
                        cost::charge(lua, bytes.len() / cost::BYTES_PER_UNIT);
                        command_args.push(bytes)
                    }
                    None => {
                        let text = "Lua redis lib command arguments must be strings or integers";
                        return Ok((Value::String(lua.create_string(text)?), Some(2)));
                    }
                }
            }
            if command_args.is_empty() {
                let text = "Please specify at least one argument for this redis lib call";
                return Ok((Value::String(lua.create_string(text)?), Some(2)));
            }
            let call = calls.get();
            calls.set(call.wrapping_add(1));
            let mut keyspace = keyspace.borrow_mut();
            let reply = super::call::run_command(
                &mut keyspace,
                &command_args,
                eval.user.as_ref(),
                eval.read_only,
                ctx,
                position,
                call,
                &read_work,
                hooks.prefetch,
            );
            let failed = matches!(reply, Reply::Error(_));
            let value = match &reply {
                Reply::Error(text) => error_table(lua, text)?,
                other => reply_to_lua(lua, other, resp.get())?,
            };
            Ok((value, failed.then_some(1)))
        })?;
        // redis.acl_check_cmd: whether the script's user may run the
        // command with these arguments (an unknown command is an error).
        let acl_check = scope.create_function(|_, packed: mlua::Table| {
            let count: usize = packed.raw_get::<Option<usize>>("n")?.unwrap_or(0);
            let mut command_args = Vec::with_capacity(count.min(1 << 16));
            for index in 1..=count {
                let arg = packed.raw_get::<Value>(index)?;
                command_args.push(arg_bytes(&arg).ok_or_else(|| {
                    mlua::Error::RuntimeError(
                        "Lua redis lib command arguments must be strings or integers".into(),
                    )
                })?);
            }
            let known = command_args.first().is_some_and(|name| {
                crate::table::lookup(&String::from_utf8_lossy(name).to_ascii_lowercase()).is_some()
            });
            if !known {
                return Err(mlua::Error::RuntimeError(
                    "Invalid command passed to redis.acl_check_cmd()".into(),
                ));
            }
            let keyspace = keyspace.borrow();
            // As Redis' ACL check: the name and the keys. A SORT pattern
            // is refused when the command runs (`sortCommand` there).
            Ok(matches!(
                super::call::acl_verdict(&keyspace, eval.user.as_ref(), &command_args),
                super::call::AclVerdict::Allowed | super::call::AclVerdict::SortPatternDenied(_)
            ))
        })?;
        let sha1hex = lua.create_function(|lua, text: mlua::LuaString| {
            let text = text.as_bytes();
            cost::charge(lua, text.len() / cost::CHARS_PER_UNIT);
            lua.create_string(super::sha1::sha1_hex(&text))
        })?;
        let setresp = {
            let resp = Rc::clone(&resp);
            lua.create_function(move |_, version: f64| {
                resp.set(if version == 3.0 {
                    ScriptResp::Three
                } else {
                    ScriptResp::Two
                });
                Ok(())
            })?
        };
        let random = {
            let rng = Rc::clone(&rng);
            lua.create_function(move |_, args: Variadic<f64>| random_call(&rng, &args))?
        };
        let randomseed = {
            let rng = Rc::clone(&rng);
            lua.create_function(move |_, seed: f64| {
                *rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed as i64 as u64);
                Ok(())
            })?
        };
        let stopped_fn = {
            let stopped = Rc::clone(stopped);
            lua.create_function(move |_, ()| Ok(stopped.get()))?
        };
        let patterns = if limits.costs_charged {
            let budget = super::patterns::Budget {
                executed: Rc::clone(&executed),
                stopped: Rc::clone(stopped),
                instructions_max: limits.instructions_max,
                kill: hooks.kill.clone(),
                memory_bytes_max: limits.memory_bytes_max,
            };
            Some(super::patterns::library(&lua, &budget)?)
        } else {
            None
        };
        let bit = super::bit::library(&lua)?;
        let cjson = super::cjson::library(&lua, limits.memory_bytes_max)?;
        let cmsgpack = super::cmsgpack::library(&lua, limits.memory_bytes_max)?;
        let structlib = super::structlib::library(&lua, limits.memory_bytes_max)?;
        let keys = lua.create_sequence_from(
            eval.keys
                .iter()
                .map(|k| lua.create_string(k))
                .collect::<mlua::Result<Vec<_>>>()?,
        )?;
        let argv = lua.create_sequence_from(
            eval.args
                .iter()
                .map(|a| lua.create_string(a))
                .collect::<mlua::Result<Vec<_>>>()?,
        )?;
        // Log entries written before costs were charged replay as they were
        // applied: their prelude is parsed, as it was then (see `Precompiled`).
        let (xpcall, function_runner): (Function, Function) =
            PRELUDE_CHUNK.load(&lua, limits.costs_charged).call((
                raw_call, sha1hex, setresp, random, randomseed, stopped_fn, bit, keys, argv, cjson,
                cmsgpack, structlib, acl_check, patterns,
            ))?;
        let script = match lua
            .load(super::without_shebang(&eval.script))
            .set_name("@user_script")
            .set_mode(ChunkMode::Text)
            .into_function()
        {
            Ok(script) => script,
            Err(mlua::Error::SyntaxError { message, .. }) => {
                return Ok(Reply::error(format!(
                    "ERR Error compiling script (new function): {}",
                    first_line(&message)
                )));
            }
            Err(error) => return Err(error),
        };
        let handler = {
            let line = Rc::clone(&line);
            lua.create_function(move |lua, error: Value| {
                line.set(user_line(lua));
                Ok(error)
            })?
        };
        let main = match &eval.function {
            None => script,
            Some(name) => function_runner.call((script, lua.create_string(name)?))?,
        };
        let (ok, value): (bool, Value) = xpcall.call((main, handler))?;
        // The cost charged since the hook last ran (a C loop stopped by
        // it raised "script stopped" with no instruction after it).
        if let Some(cost) = &cost {
            let total = executed.get().saturating_add(cost.settle());
            executed.set(total);
            if total > limits.instructions_max {
                stopped.set(true);
            }
        }
        if stopped.get() {
            return Ok(budget_error(limits));
        }
        if ok {
            Ok(lua_to_reply(&value))
        } else {
            Ok(script_error(&value, sha, line.get(), limits))
        }
    })
}

/// The line of the user's script the running code is at: the innermost
/// stack level whose chunk is the script.
fn user_line(lua: &Lua) -> Option<usize> {
    (1..64).find_map(|level| {
        lua.inspect_stack(level, |debug| {
            let source = debug.source();
            let is_user = source.short_src.as_deref() == Some("user_script");
            if is_user {
                debug.current_line()
            } else {
                None
            }
        })
        .flatten()
    })
}

/// The error reply of a script that raised `value`, as Redis 7 words it:
/// the error, then which script and where.
fn script_error(value: &Value, sha: &str, line: Option<usize>, limits: &Limits) -> Reply {
    let message = match value {
        Value::Table(table) => match table.raw_get::<Value>("err") {
            Ok(Value::String(err)) => one_line(&err.as_bytes()),
            _ => "ERR unknown error".to_string(),
        },
        Value::String(text) => {
            let text = text.as_bytes();
            if text.as_ref() == b"not enough memory" {
                return memory_error(limits);
            }
            format!("ERR {}", one_line(&text))
        }
        Value::Error(error) => match error.as_ref() {
            mlua::Error::MemoryError(_) => return memory_error(limits),
            mlua::Error::RuntimeError(text) => format!("ERR {}", first_line(text)),
            mlua::Error::CallbackError { cause, .. } => {
                format!("ERR {}", first_line(&cause.to_string()))
            }
            other => format!("ERR {}", first_line(&other.to_string())),
        },
        Value::Nil => "ERR unknown error".to_string(),
        other => format!("ERR {}", one_line(other.type_name().as_bytes())),
    };
    let line = line.map_or_else(|| "?".to_string(), |line| line.to_string());
    Reply::Error(format!("{message} script: {sha}, on @user_script:{line}."))
}

/// An argument of `redis.call`: a string, or a number in its shortest
/// exact text (integers without a decimal point, as Redis writes them).
fn arg_bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::String(text) => Some(Bytes::copy_from_slice(&text.as_bytes())),
        Value::Integer(n) => Some(Bytes::from(n.to_string())),
        Value::Number(x) => Some(Bytes::from(if x.fract() == 0.0 && x.abs() < 9.2e18 {
            (*x as i64).to_string()
        } else {
            crate::number::format_f64(*x)
        })),
        _ => None,
    }
}

/// The script's generator: seeded by its place in the log (instance, log
/// clock, position inside the log command: a transaction or a batch), the
/// same on every replica, different for every script run. The command's
/// index in its instance's value picks the ChaCha stream, as in
/// `ops::random`: the leader puts many clients' scripts into one value,
/// where the rest of the seed is often the same.
fn seeded_rng(ctx: &ApplyContext, position: u32) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&ctx.instance.0.to_le_bytes());
    seed[8..16].copy_from_slice(&ctx.time_ms.to_le_bytes());
    seed[16..20].copy_from_slice(&position.to_le_bytes());
    seed[20..24].copy_from_slice(b"eval");
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from(ctx.index));
    rng
}

/// `math.random()`, `math.random(m)`, `math.random(m, n)` with Lua 5.1's
/// argument rules.
fn random_call(rng: &RefCell<ChaCha8Rng>, args: &[f64]) -> mlua::Result<f64> {
    let unit = (rng.borrow_mut().next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let pick = |low: f64, high: f64| -> mlua::Result<f64> {
        let (low, high) = (low.floor(), high.floor());
        if low > high {
            return Err(mlua::Error::RuntimeError(
                "bad argument to 'random' (interval is empty)".into(),
            ));
        }
        Ok((unit * (high - low + 1.0)).floor() + low)
    };
    match args {
        [] => Ok(unit),
        [high] => pick(1.0, *high),
        [low, high] => pick(*low, *high),
        _ => Err(mlua::Error::RuntimeError(
            "wrong number of arguments to 'random'".into(),
        )),
    }
}
