//! The proposer's dry run of a script (issue 16): the node a client sends
//! `EVAL`/`EVALSHA`/`FCALL` to runs the script first, off the event loop,
//! against a private scratch copy of the keys it touches, and proposes it
//! only if that run ended within the limits every replica applies
//! ([`super::APPLY_LIMITS`]). A script over its instruction budget or its
//! memory limit is refused before it enters the log, so it costs the
//! replicas nothing.
//!
//! # What the dry run reads
//!
//! Each key a command of the script touches is copied into the scratch
//! keyspace the first time (its size and time to live, then its DUMP
//! payload, by stale reads of this node's applied state:
//! [`synod::Node::read_stale`], off the event loop for a large value); the
//! script's writes change only the copy. A keyspace-wide read (KEYS, SCAN,
//! DBSIZE, RANDOMKEY) sees the copy only: the dry run never makes the node
//! walk its whole keyspace. Keys past [`DRY_RUN_FETCH_BYTES_MAX`] in all,
//! key names past [`DRY_RUN_KEY_BYTES_MAX`] and keys past
//! [`DRY_RUN_KEYS_MAX`] are not copied: the run
//! goes on as if they were absent, and counts as unjudged in INFO
//! (`synod_script_dry_runs_unjudged`).
//!
//! The state may move between the dry run and the apply, so the dry run is
//! an estimate of the apply run, never a stand-in for it: safety rests on
//! the apply-time budget alone, which stops an over-long script at the
//! same point on every replica whatever the dry run saw.
//!
//! # Time
//!
//! The instruction budget bounds time only roughly: one C call (a
//! `string.rep` or `table.concat` of megabytes) counts as one instruction
//! and the hook cannot interrupt it (pattern matching is charged step by
//! step, see `patterns`, so it no longer runs unbounded). The dry run
//! is local to the proposer, so it may use the wall clock: a script whose
//! dry run lasts longer than [`DRY_RUN_WALL_MAX`] is refused (its thread
//! is left to finish on its own, holding its turn, and counted in INFO as
//! `synod_script_dry_runs_timed_out`). A script that passed its dry run can
//! still take up to that long on every replica at apply.
//!
//! # BUSY and SCRIPT KILL
//!
//! While a dry run has lasted longer than `lua-time-limit`, this node
//! answers other clients' commands with Redis's BUSY error (those Redis
//! lets through while busy excepted: see [`ALLOW_BUSY`]), as a Redis that
//! runs a long script does, and `SCRIPT KILL` (`FUNCTION KILL` for FCALL)
//! stops the dry run: the script is never proposed, and its client is
//! answered "Script killed by user". Unlike Redis, a script that has
//! written can be killed too: its writes went to the scratch copy only.
//! Once a script passed its dry run and is in the log, it runs to its end
//! (or its budget) on every replica; nothing stops it half-way.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod::{ApplyContext, InstanceId, Node};
use synod_resp::Reply;

use super::engine::{self, Ended, Hooks};
use super::EvalCommand;
use crate::command::{KvCommand, TimeUnit};
use crate::keyspace::Keyspace;

/// Most bytes of keys one dry run copies from the node's state (by
/// `MEMORY USAGE`); past it, keys are taken as absent.
pub const DRY_RUN_FETCH_BYTES_MAX: u64 = 64 << 20;

/// Most bytes of key names one dry run remembers as copied (or absent);
/// past it, keys are taken as absent.
pub const DRY_RUN_KEY_BYTES_MAX: u64 = 16 << 20;

/// Most keys one dry run copies (each costs the node two small reads on its
/// event loop); past it, keys are taken as absent.
pub const DRY_RUN_KEYS_MAX: usize = 10_000;

/// The longest a dry run may last (and the longest a script waits for a
/// turn to be dry-run); past it the script is refused.
pub const DRY_RUN_WALL_MAX: Duration = Duration::from_secs(5);

/// Most dry runs that run at once on one node (each holds a thread); more
/// wait for a turn.
pub const DRY_RUNS_MAX: usize = 16;

/// Commands a node answers while a script is busy, as Redis 7.0 (its
/// commands flagged `allow-busy`).
pub const ALLOW_BUSY: &[&str] = &[
    "auth",
    "discard",
    "function|kill",
    "function|stats",
    "hello",
    "multi",
    "quit",
    "replconf",
    "reset",
    "script|kill",
    "shutdown",
    "unwatch",
    "watch",
];

/// Redis's BUSY error while an `EVAL` runs too long.
const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// Redis's BUSY error while an `FCALL` runs too long.
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// The dry runs in progress on this node, and their counters.
#[derive(Debug)]
pub struct ScriptRuns {
    running: Mutex<BTreeMap<u64, Running>>,
    next_id: AtomicU64,
    turns: Arc<tokio::sync::Semaphore>,
    /// Dry runs started.
    pub dry_runs: AtomicU64,
    /// Scripts refused by their dry run (over budget or memory).
    pub refused: AtomicU64,
    /// Dry runs stopped by SCRIPT KILL / FUNCTION KILL.
    pub killed: AtomicU64,
    /// Dry runs that ran without some key (too large to copy, a failed
    /// read): judged on an incomplete copy.
    pub unjudged: AtomicU64,
    /// Scripts refused because their dry run lasted past
    /// [`DRY_RUN_WALL_MAX`] (or found no turn within it).
    pub timed_out: AtomicU64,
}

#[derive(Debug)]
struct Running {
    started: Instant,
    function: bool,
    kill: Arc<AtomicBool>,
}

impl Default for ScriptRuns {
    fn default() -> Self {
        ScriptRuns {
            running: Mutex::default(),
            next_id: AtomicU64::new(1),
            turns: Arc::new(tokio::sync::Semaphore::new(DRY_RUNS_MAX)),
            dry_runs: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            unjudged: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }
}

impl ScriptRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The BUSY error to answer while some dry run has lasted longer than
    /// `limit`; `None` when none has.
    pub fn busy(&self, limit: Duration) -> Option<&'static str> {
        let running = self.lock();
        running
            .values()
            .filter(|run| run.started.elapsed() >= limit)
            .min_by_key(|run| run.started)
            .map(|run| {
                if run.function {
                    BUSY_FUNCTION
                } else {
                    BUSY_EVAL
                }
            })
    }

    /// SCRIPT KILL (`function == false`) or FUNCTION KILL: stops every dry
    /// run of that kind that has lasted past `limit` (`lua-time-limit`), as
    /// Redis can kill only a script that made it busy.
    pub fn kill(&self, function: bool, limit: Duration) -> Reply {
        let running = self.lock();
        let mut any = false;
        for run in running
            .values()
            .filter(|run| run.function == function && run.started.elapsed() >= limit)
        {
            run.kill.store(true, Relaxed);
            any = true;
        }
        if any {
            Reply::ok()
        } else {
            Reply::error("NOTBUSY No scripts in execution right now.")
        }
    }

    fn start(&self, function: bool) -> RunGuard<'_> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let kill = Arc::new(AtomicBool::new(false));
        self.lock().insert(
            id,
            Running {
                started: Instant::now(),
                function,
                kill: Arc::clone(&kill),
            },
        );
        self.dry_runs.fetch_add(1, Relaxed);
        RunGuard {
            runs: self,
            id,
            kill,
        }
    }
}

/// A registered dry run; dropping it (the run ended or timed out, or the
/// request was dropped) asks the run to stop and forgets it.
struct RunGuard<'a> {
    runs: &'a ScriptRuns,
    id: u64,
    kill: Arc<AtomicBool>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.kill.store(true, Relaxed);
        self.runs.lock().remove(&self.id);
    }
}

/// How a dry run ended, as the proposer acts on it.
#[derive(Debug)]
enum Verdict {
    /// Within the limits: propose it.
    Propose,
    /// Over a limit or killed: answer this, propose nothing.
    Refuse(Reply, Ended),
    /// Within the limits, judged without some key: propose it.
    Unjudged,
}

/// Dry-runs `eval` against this node's state; `Err` is the error to answer
/// instead of proposing it. `acl` is the node's replicated users (the
/// script's `redis.call`s are checked against them, as at apply).
pub(crate) async fn dry_run(
    node: &Arc<Node>,
    runs: &Arc<ScriptRuns>,
    acl: crate::acl_auth::Acl,
    eval: &EvalCommand,
) -> Result<(), Reply> {
    let timed_out = |runs: &ScriptRuns, what: &str| {
        runs.timed_out.fetch_add(1, Relaxed);
        Reply::error(format!(
            "ERR script refused: {what} (synod dry-runs a script for at most {} s before proposing it)",
            DRY_RUN_WALL_MAX.as_secs()
        ))
    };
    // A turn first: at most DRY_RUNS_MAX threads run scripts at once. The
    // turn goes with the thread, which may outlive this request.
    let turn = match tokio::time::timeout(DRY_RUN_WALL_MAX, Arc::clone(&runs.turns).acquire_owned())
        .await
    {
        Ok(Ok(turn)) => turn,
        Ok(Err(_)) => return Err(Reply::error("ERR script refused: the node is stopping")),
        Err(_) => return Err(timed_out(runs, "no turn to dry-run it came free")),
    };
    let guard = runs.start(eval.function.is_some());
    let kill = Arc::clone(&guard.kill);
    let handle = tokio::runtime::Handle::current();
    let node = Arc::clone(node);
    let eval = eval.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        judge(&handle, &node, acl, &eval, kill)
    });
    let verdict = tokio::time::timeout(DRY_RUN_WALL_MAX, job).await;
    // Stops the run if it still goes (the hook sees the flag at its next
    // check; a C call it is inside runs to its end first).
    drop(guard);
    match verdict {
        Ok(Ok(Verdict::Propose)) => Ok(()),
        Ok(Ok(Verdict::Unjudged)) => {
            runs.unjudged.fetch_add(1, Relaxed);
            Ok(())
        }
        Ok(Ok(Verdict::Refuse(reply, ended))) => {
            let counter = match ended {
                Ended::Killed => &runs.killed,
                _ => &runs.refused,
            };
            counter.fetch_add(1, Relaxed);
            Err(reply)
        }
        // A dry run that panicked would make every replica panic alike.
        Ok(Err(_)) => {
            runs.refused.fetch_add(1, Relaxed);
            Err(Reply::error("ERR script refused: its dry run failed"))
        }
        Err(_) => Err(timed_out(runs, "its dry run lasted too long")),
    }
}

/// The dry run itself, on a blocking thread.
fn judge(
    handle: &tokio::runtime::Handle,
    node: &Node,
    acl: crate::acl_auth::Acl,
    eval: &EvalCommand,
    kill: Arc<AtomicBool>,
) -> Verdict {
    let mut scratch = Keyspace::default();
    scratch.set_acl(acl);
    let ctx = ApplyContext {
        instance: InstanceId(0),
        time_ms: node.stamp_ms(),
        index: 0,
    };
    let fetched: RefCell<BTreeSet<Bytes>> = RefCell::default();
    let key_bytes = Cell::new(0u64);
    let fetched_bytes = Cell::new(0u64);
    let flushed = Cell::new(false);
    let incomplete = Cell::new(false);
    let stale = |command: KvCommand| -> Option<Reply> {
        let output = handle.block_on(node.read_stale(command.encode())).ok()?;
        crate::reply_codec::decode_reply(&output).ok()
    };
    // Keyspace-wide reads and FLUSHALL run against the copy alone: the
    // node's own keys are never walked for a dry run.
    let prefetch = |keyspace: &mut Keyspace, command: &KvCommand| -> Option<Reply> {
        if matches!(command, KvCommand::FlushAll) {
            // From here on the node's keys are gone for this script.
            flushed.set(true);
        }
        if flushed.get() {
            return None;
        }
        for key in command.keys() {
            if fetched.borrow().contains(key) {
                continue;
            }
            let total = key_bytes.get().saturating_add(key.len() as u64);
            if total > DRY_RUN_KEY_BYTES_MAX || fetched.borrow().len() >= DRY_RUN_KEYS_MAX {
                incomplete.set(true);
                continue;
            }
            key_bytes.set(total);
            fetched.borrow_mut().insert(key.clone());
            if copy_key(keyspace, key, &ctx, &fetched_bytes, &stale).is_err() {
                incomplete.set(true);
            }
        }
        None
    };
    let hooks = Hooks {
        kill: Some(kill),
        prefetch: Some(&prefetch),
    };
    let limits = super::eval_limits(eval);
    let (reply, ended) = engine::run_with(&mut scratch, eval, &ctx, 0, &limits, &hooks);
    match ended {
        Ended::Finished if incomplete.get() => Verdict::Unjudged,
        Ended::Finished => Verdict::Propose,
        Ended::Budget | Ended::Memory | Ended::Killed => Verdict::Refuse(reply, ended),
    }
}

/// Copies `key` from the node's state into `keyspace` (nothing when it has
/// no such key); `Err` when it is too large or could not be read (then it
/// stays absent).
fn copy_key(
    keyspace: &mut Keyspace,
    key: &Bytes,
    ctx: &ApplyContext,
    fetched_bytes: &Cell<u64>,
    stale: &dyn Fn(KvCommand) -> Option<Reply>,
) -> Result<(), ()> {
    let sizes = stale(KvCommand::Exec(vec![
        KvCommand::MemoryUsage { key: key.clone() },
        KvCommand::Ttl {
            key: key.clone(),
            unit: TimeUnit::Milliseconds,
        },
    ]))
    .ok_or(())?;
    let Reply::Array(sizes) = sizes else {
        return Err(());
    };
    let (bytes, ttl_ms) = match sizes.as_slice() {
        [Reply::Null, _] => return Ok(()),
        [Reply::Integer(bytes), Reply::Integer(ttl_ms)] => (*bytes, *ttl_ms),
        _ => return Err(()),
    };
    let total = fetched_bytes.get().saturating_add(bytes.max(0) as u64);
    if total > DRY_RUN_FETCH_BYTES_MAX {
        return Err(());
    }
    fetched_bytes.set(total);
    let payload = match stale(KvCommand::Dump { key: key.clone() }).ok_or(())? {
        Reply::Bulk(payload) => payload,
        // Gone since: absent for this run.
        Reply::Null => return Ok(()),
        _ => return Err(()),
    };
    // The key may have grown since its size was read: the bound holds on
    // what was copied (the payload's length replaces the size read).
    let copied = fetched_bytes
        .get()
        .saturating_sub(bytes.max(0) as u64)
        .saturating_add(payload.len() as u64);
    if copied > DRY_RUN_FETCH_BYTES_MAX {
        return Err(());
    }
    fetched_bytes.set(copied);
    let value = crate::dump::decode(&payload).map_err(|_| ())?;
    let expire_at = (ttl_ms > 0).then(|| ctx.time_ms.saturating_add(ttl_ms as u64));
    keyspace.insert(key, value, expire_at);
    Ok(())
}
