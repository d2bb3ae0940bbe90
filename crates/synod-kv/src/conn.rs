//! One client connection's state and the commands that concern only the
//! connection (PING, HELLO, AUTH, SELECT, CLIENT, COMMAND, INFO, MULTI...).

use crate::acl::{User, DEFAULT_USER};
use crate::acl_auth::failure_delay;
use crate::acl_conn::{acl_command, check_command, check_keys, AclAction};
use crate::command::KvCommand;
use crate::members::{is_member_command, parse_member, MemberCommand};
use crate::server::{execute, parse_data, Shared};
use crate::table::command_table;
use crate::watch::WatchedKey;
use bytes::Bytes;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use synod::RoleKind;
use synod_resp::{Protocol, Reply};

/// What one request turns into.
pub(crate) enum Item {
    /// Answered at once.
    Reply(Reply, Protocol),
    /// Pub/sub pushes: the messages delivered before the request, then its
    /// own replies (a (un)subscribe confirmation per channel, or its
    /// error; INFO commandstats judges it by the first). Never silenced by
    /// CLIENT REPLY, as in Redis; both empty for no reply at all.
    Pushes(Vec<Reply>, Vec<Reply>, Protocol),
    /// An item whose reply is not written (CLIENT REPLY OFF or SKIP): it
    /// runs, in order, and nothing of it reaches the client.
    Silent(Box<Item>),
    /// A data command for the log, with its encoded length
    /// ([`KvCommand::encoded_len`], counted once: see [`Item::data`]).
    Data(KvCommand, Protocol, usize),
    /// INFO with these sections (lowercase; empty means the default set).
    Info(Vec<String>, Protocol),
    /// A membership request (`SYNOD.MEMBER`, `SYNOD.LEADER`) for the node.
    Member(MemberCommand, Protocol),
    /// SAVE, BGSAVE, LASTSAVE, SHUTDOWN for the node (see
    /// `crate::persistence`).
    Persist(crate::persistence::PersistCommand, Protocol),
    /// Answer, then close the connection.
    Quit(Reply),
    /// Answered only after this long (a failed or throttled AUTH).
    Later(Reply, Protocol, std::time::Duration),
    /// `WATCH`: a read of the keys' tokens ([`KvCommand::Watch`]), which the
    /// connection then remembers ([`Conn::watch_read`]); answered OK.
    Watch(KvCommand, Protocol),
    /// Forget the watched keys, then answer (UNWATCH, DISCARD, an aborted
    /// EXEC). An item, not done at once, so that a pipelined
    /// `WATCH ... UNWATCH` forgets what the WATCH read.
    Unwatch(Reply, Protocol),
    /// `RESET`: the pub/sub messages delivered before it, in the protocol
    /// they were delivered in (never silenced), then as [`Item::Unwatch`]
    /// with `+RESET` in RESP2, unless `skipped`: sent right after `CLIENT
    /// REPLY SKIP`, whose skip Redis' RESET does not undo (it clears OFF
    /// and a SKIP still to come, not the skip of itself).
    Reset {
        delivered: Vec<Reply>,
        delivered_in: Protocol,
        skipped: bool,
    },
    /// `EXEC`: the queued data commands as one transaction (opened with the
    /// WATCH check of the keys watched by then), and each queued command's
    /// place in the reply.
    Exec(Vec<KvCommand>, Vec<ExecPart>, Protocol),
    /// A blocking pop outside MULTI: tried, then waited for (see
    /// `crate::blocking`), up to the timeout.
    Block(KvCommand, crate::blocking::Timeout, Protocol),
    /// A request checked and run only once this node has applied every
    /// change acknowledged before it arrived ([`Conn::after_barrier`]):
    /// AUTH, HELLO AUTH and the commands that act outside the log
    /// ([`needs_barrier`]).
    Barrier(Vec<Bytes>),
}

/// One queued command's place in EXEC's reply.
///
/// A transaction's connection commands run only once its data commands
/// have (after the WATCH check, in the same log command): a transaction
/// answered nil, or refused as a whole, runs none of them, as in Redis.
/// They run in their order, after the data commands.
pub(crate) enum ExecPart {
    /// The next reply of the transaction's data commands.
    Data,
    /// A connection command's reply, known at EXEC (it was refused).
    Ready(Reply),
    /// A connection command, run ([`Conn::exec_local`]) once the
    /// transaction's data commands ran.
    Local(Vec<Bytes>),
    /// A CONFIG SET naming `maxmemory`: the next reply of the data commands
    /// (its `SetMaxMemory`) and, when that is OK, its node-local parameters
    /// to set then.
    Config(ConfigLocal),
}

/// A command queued between MULTI and EXEC.
enum Queued {
    /// The next of `Multi::queued`.
    Data,
    /// A connection command (PING, ECHO, INFO, CONFIG GET, ...), run at
    /// EXEC as it would be alone.
    Local(Vec<Bytes>),
}

/// Connection commands that a transaction queues and runs at EXEC, with
/// Redis' arity (negative: at least that many arguments, the name counted).
const QUEUED_LOCAL: &[(&str, i64)] = &[
    ("ping", -1),
    ("echo", 2),
    ("select", 2),
    ("time", 1),
    ("config", -2),
    ("info", -1),
    ("command", -1),
    ("client", -2),
    ("pubsub", -2),
];

/// Whether `user`'s rules allow a queued connection command (its name and
/// first argument).
fn local_allowed(user: &User, args: &[Bytes]) -> bool {
    let name = lower(&args[0]);
    !crate::acl_categories::is_command(&name)
        || check_command(user, &name, args.get(1).map(|a| a.as_ref())).is_ok()
}

/// Whether a queued connection command is a CONFIG SET naming `maxmemory`
/// (a log command: see [`Conn::exec`]).
fn sets_maxmemory(args: &[Bytes]) -> bool {
    args.len() >= 4
        && args[0].eq_ignore_ascii_case(b"config")
        && args[1].eq_ignore_ascii_case(b"set")
        && args[2..]
            .chunks(2)
            .any(|pair| pair[0].eq_ignore_ascii_case(b"maxmemory"))
}

/// Commands Redis refuses inside MULTI (its `no-multi` flag), so EXEC then
/// aborts.
const NO_MULTI: &[&str] = &[
    "save",
    "shutdown",
    "sync",
    "psync",
    "monitor",
    "replicaof",
    "slaveof",
];

/// Most watched keys' bytes (key length plus [`WATCHED_KEY_OVERHEAD_BYTES`]
/// each) one connection may hold: they travel in EXEC's log command, so
/// they must fit in one with room for the commands.
const WATCHED_KEY_OVERHEAD_BYTES: usize = 4 + 1 + 16;

/// Commands queued between MULTI and EXEC; `dirty` when one of them was
/// refused, so EXEC must abort.
struct Multi {
    queued: Vec<KvCommand>,
    /// Every queued command in order: a data command (the next of
    /// `queued`) or a connection command.
    order: Vec<Queued>,
    /// Each queued command's name (lowercase) and first argument, as the
    /// client sent them: EXEC checks them again against the user's rules
    /// as they are then (an ACL change may have come in between).
    queued_names: Vec<(String, Option<Bytes>)>,
    dirty: bool,
    /// Encoded length of the transaction queued so far.
    exec_bytes: usize,
    /// The transaction grew past the largest replicated command: EXEC aborts,
    /// and nothing more is queued (so memory stays bounded too).
    too_large: bool,
}

pub(crate) struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pub protocol: Protocol,
    /// The ACL user (name, serial) the connection is authenticated as;
    /// `None` before AUTH.
    user: Option<(Bytes, u64)>,
    /// Consecutive failed AUTHs (kept across RESET, so RESET does not
    /// reset the slow-down).
    auth_failures: u32,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    multi: Option<Multi>,
    /// The keys WATCHed and what was read about them (see `crate::watch`);
    /// a key watched twice keeps its first token, as in Redis.
    watched: std::collections::BTreeMap<Bytes, WatchedKey>,
    /// Sum of the watched keys' lengths plus their overheads.
    watched_bytes: usize,
    /// The connection's pub/sub subscriptions and message queue.
    pub(crate) subscriber: crate::pubsub::Subscriber,
    /// CLIENT REPLY: `Off` silences every reply (pushes excepted), `Skip`
    /// the next command's.
    reply_mode: ReplyMode,
    /// One INFO commandstats tag per item handed out, in order.
    stat_tags: std::collections::VecDeque<Option<StatTag>>,
    /// The stamps of the user's rules this batch's checks used (see
    /// [`Conn::run_as`]).
    /// (Atomics only because a `Cell` would make the connection's future
    /// not `Send`; one task uses them.)
    checked: CheckedStamps,
    /// The user's rules' stamp, hashed again only when they may have changed.
    stamps: crate::acl::StampCache,
    /// Set while [`Conn::after_barrier`] handles a request: it is not
    /// deferred again.
    past_barrier: bool,
    /// Logged in as `default` because this node's `default` needs no
    /// password, not yet confirmed at a linearizable point (see
    /// [`Conn::barrier_first`]).
    implicit_login: bool,
    /// A request handled after its barrier closes the connection (its user
    /// was deleted or turned off meanwhile).
    quit_after_barrier: bool,
    /// What the ACL refused in the request being handled, if anything (see
    /// [`Conn::handle_confirmed`]).
    denied: DeniedCell,
    /// Set while EXEC takes a queued CONFIG SET naming `maxmemory` into its
    /// transaction: the node-local parameters of that CONFIG SET are held
    /// in `held_config`, not set, until the transaction ran.
    hold_config: bool,
    held_config: Option<ConfigLocal>,
    /// Set while a transaction's connection command runs after its data
    /// commands: its user's rules were checked at EXEC.
    acl_checked_at_exec: bool,
    /// When the bytes of the requests now handled were last read from the
    /// client: each arrived by then.
    arrived_by: Option<std::time::Instant>,
    /// When this connection's last barrier read that answered was asked.
    confirmed_at: Option<std::time::Instant>,
}

/// The node-local part of a CONFIG SET (see [`Conn::config_set`]).
#[derive(Default)]
pub(crate) struct ConfigLocal {
    lua_time_limit_ms: Option<u64>,
    keyspace_events: Option<u32>,
    tuning: Vec<(&'static str, String)>,
}

/// Redis 7.0's NOPERM for a channel outside the user's `&patterns`.
const CHANNEL_DENIED: &str =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

/// What an ACL check refused: counted in `INFO stats` once the refusal is
/// answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Denied {
    Command,
    Key,
    Channel,
    /// The connection's user is deleted or turned off (counted nowhere).
    User,
}

/// A [`Denied`] a `&Conn` can record (an atomic only for `Send`, as
/// [`CheckedStamps`]).
#[derive(Debug, Default)]
struct DeniedCell(std::sync::atomic::AtomicU8);

impl DeniedCell {
    fn set(&self, denied: Denied) {
        let code = match denied {
            Denied::Command => 1,
            Denied::Key => 2,
            Denied::Channel => 3,
            Denied::User => 4,
        };
        self.0.store(code, Relaxed);
    }

    fn take(&self) -> Option<Denied> {
        // One task uses it: a load, and a store only when set (no locked
        // swap on every request).
        let code = self.0.load(Relaxed);
        if code != 0 {
            self.0.store(0, Relaxed);
        }
        match code {
            1 => Some(Denied::Command),
            2 => Some(Denied::Key),
            3 => Some(Denied::Channel),
            4 => Some(Denied::User),
            _ => None,
        }
    }
}

/// The stamps of the ACL rules a batch of requests was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checked {
    Nothing,
    /// All against rules with this stamp.
    Stamp(u64),
    /// Against two different versions of the rules (an ACL change applied
    /// in between).
    Mixed,
}

/// A [`Checked`] a `&Conn` can change.
#[derive(Debug, Default)]
struct CheckedStamps {
    /// 0: nothing, 1: one stamp, 2: mixed.
    state: std::sync::atomic::AtomicU8,
    stamp: std::sync::atomic::AtomicU64,
}

impl CheckedStamps {
    fn get(&self) -> Checked {
        match self.state.load(Relaxed) {
            0 => Checked::Nothing,
            1 => Checked::Stamp(self.stamp.load(Relaxed)),
            _ => Checked::Mixed,
        }
    }

    fn set(&self, checked: Checked) {
        let (state, stamp) = match checked {
            Checked::Nothing => (0, 0),
            Checked::Stamp(stamp) => (1, stamp),
            Checked::Mixed => (2, 0),
        };
        self.stamp.store(stamp, Relaxed);
        self.state.store(state, Relaxed);
    }
}

/// The stamp a batch checked against two versions of its user's rules goes
/// with (see [`Conn::run_as`]): a constant that no rules are expected to
/// hash to.
const MIXED_RULES_STAMP: u64 = 0x6d69_7865_6420_7275;

/// The ACL user a batch of requests goes to the log with, and the stamp of
/// the rules it was checked against (see [`crate::AsUser`]).
#[derive(Clone, Debug)]
pub(crate) struct RunAs {
    pub user: Bytes,
    pub stamp: u64,
}

impl Item {
    /// A data command for the log, its encoded length counted here (the
    /// client paths have it from their size check).
    pub(crate) fn data(command: KvCommand, protocol: Protocol) -> Item {
        let len = command.encoded_len();
        Item::Data(command, protocol, len)
    }

    /// Whether the item changes the ACL users (an ACL write, alone or in a
    /// transaction), silenced or not: the requests after it are checked once
    /// it ran (see `server::serve`'s parse loop).
    pub(crate) fn changes_users(&self) -> bool {
        let writes_users = |command: &KvCommand| command.involves_acl() && !command.is_read();
        match self {
            Item::Data(command, _, _) => writes_users(command),
            Item::Exec(commands, _, _) => commands.iter().any(writes_users),
            Item::Silent(item) => item.changes_users(),
            _ => false,
        }
    }

    /// The item with its reply silenced (CLIENT REPLY OFF or SKIP), except
    /// pushes and a quit, which are written whatever CLIENT REPLY says (as
    /// in Redis). A barrier is silenced as a whole, and
    /// [`Item::silenced`] again once handled (`server::past_barrier`): what
    /// it turns into decides.
    pub(crate) fn silenced(self) -> Item {
        match self {
            Item::Pushes(..) | Item::Quit(_) | Item::Reset { .. } => self,
            item => Item::Silent(Box::new(item)),
        }
    }

    /// A request that waits for a linearizable point first, silenced or
    /// not: the requests after it are parsed once it ran.
    pub(crate) fn is_barrier(&self) -> bool {
        match self {
            Item::Barrier(_) => true,
            Item::Silent(item) => item.is_barrier(),
            _ => false,
        }
    }

    /// An error the connection answered itself, at once or after AUTH's
    /// delay (INFO commandstats' `rejected_calls`).
    pub(crate) fn is_rejection(&self) -> bool {
        matches!(
            self,
            Item::Reply(Reply::Error(_), _)
                | Item::Later(Reply::Error(_), _, _)
                | Item::Quit(Reply::Error(_))
        )
    }

    /// A blocking command, silenced or not: the connection must watch for
    /// a close while it waits (review: a silenced one was missed).
    pub(crate) fn is_block(&self) -> bool {
        match self {
            Item::Block(..) => true,
            Item::Silent(item) => item.is_block(),
            _ => false,
        }
    }

    /// An EXEC whose connection commands run once its data commands ran
    /// ([`ExecPart`]): the requests after it are handled in the next batch,
    /// so that they see what those did (review of 6573779, D1: a CLIENT
    /// GETNAME pipelined after EXEC missed the transaction's SETNAME).
    pub(crate) fn runs_connection_commands(&self) -> bool {
        match self {
            Item::Exec(_, parts, _) => parts
                .iter()
                .any(|part| matches!(part, ExecPart::Local(_) | ExecPart::Config(_))),
            Item::Silent(item) => item.runs_connection_commands(),
            _ => false,
        }
    }
}

/// Which command an item answers, for INFO commandstats.
#[derive(Debug)]
pub(crate) struct StatTag {
    /// The command (or subcommand): its place in [`stat_names`].
    pub known: usize,
    /// When it was read.
    pub started: std::time::Instant,
    /// The connection refused it before it ran.
    pub rejected: bool,
}

/// What CLIENT REPLY set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// SKIP was sent: the command after it is silent.
    SkipNext,
    /// This command is silent, then back to `On`.
    Skip,
}

/// Whether a request waits for a linearizable point before it is checked
/// and run ([`Item::Barrier`]): what authenticates (AUTH, HELLO .. AUTH,
/// well formed: a malformed one is answered at once and costs no read) and
/// the commands that act outside the log on the node's own say: membership
/// changes, SAVE/BGSAVE/SHUTDOWN, CONFIG SET/RESETSTAT/REWRITE, CLIENT
/// KILL/UNBLOCK/PAUSE/UNPAUSE, SCRIPT LOAD/FLUSH/KILL, FUNCTION
/// LOAD/DELETE/FLUSH/RESTORE/KILL, new subscriptions. Reads that only
/// describe the node (SYNOD.MEMBER LIST, SYNOD.LEADER HELP, LASTSAVE, INFO,
/// CONFIG GET...) need none, so a node cut off from the majority can still
/// be looked at on a login made before (an unconfirmed implicit one waits:
/// see [`Conn::barrier_first`]). Log commands need none: every replica checks them at
/// apply ([`crate::AsUser`]). Rare requests: one read round each.
fn needs_barrier(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    let named = |names: &[&str]| arg_is(Some(name), names);
    let sub_is = |subs: &[&str]| arg_is(args.get(1), subs);
    if named(&["auth"]) {
        return matches!(args.len(), 2 | 3);
    }
    if named(&["hello"]) {
        return hello_authenticates(args);
    }
    if named(&[
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "save",
        "bgsave",
        "shutdown",
    ]) {
        return true;
    }
    if named(&["config"]) {
        return sub_is(&["set", "resetstat", "rewrite"]);
    }
    if named(&["client"]) {
        return sub_is(&["kill", "unblock", "pause", "unpause"]);
    }
    if named(&["script"]) {
        return sub_is(&["load", "flush", "kill"]);
    }
    if named(&["function"]) {
        return sub_is(&["load", "delete", "flush", "restore", "kill"]);
    }
    if named(&["synod.member"]) {
        return !sub_is(&["list", "joininfo", "help"]);
    }
    if named(&["synod.leader"]) {
        return sub_is(&["transfer"]);
    }
    false
}

/// Whether `arg` is one of `names` (lowercase), in any case.
fn arg_is(arg: Option<&Bytes>, names: &[&str]) -> bool {
    arg.is_some_and(|arg| names.iter().any(|n| arg.eq_ignore_ascii_case(n.as_bytes())))
}

/// Whether a request only concerns the connection (PING, ECHO, HELLO,
/// SELECT, TIME, COMMAND, CLIENT ID/SETNAME/REPLY/INFO, ACL WHOAMI/CAT) or
/// authenticates: a connection logged in as `default` without a password
/// runs it without confirming that login first (see
/// [`Conn::barrier_first`]). What describes the node or the cluster (INFO,
/// CONFIG GET, SYNOD.MEMBER LIST/JOININFO, LASTSAVE) waits for the
/// confirmation like the rest (stop 64's second review: it was read at a
/// lagging node after a password was set on `default`); at a node cut off
/// from the majority, the admin HTTP endpoint describes it.
fn concerns_the_connection(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return true;
    };
    let named = |names: &[&str]| arg_is(Some(name), names);
    let sub_is = |subs: &[&str]| arg_is(args.get(1), subs);
    const ALONE: &[&str] = &[
        "ping", "echo", "quit", "reset", "auth", "hello", "time", "command", "select",
    ];
    named(ALONE)
        || (named(&["client"])
            && sub_is(&[
                "id", "getname", "setname", "info", "reply", "setinfo", "help",
            ]))
        || (named(&["acl"]) && sub_is(&["whoami", "cat", "help"]))
}

/// Whether `HELLO` authenticates: a protocol version it knows, then an
/// `AUTH user password` option (after SETNAMEs, if any). Anything else is
/// answered (or refused) without a barrier.
fn hello_authenticates(args: &[Bytes]) -> bool {
    // The version as `Conn::hello` reads it (`03` and `+2` included: a
    // HELLO 03 AUTH passed unconfirmed, checked against the node's users
    // alone; stop 64's second review).
    let version = args
        .get(1)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    if !matches!(version, Some(2 | 3)) {
        return false;
    }
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"auth") {
            return i + 2 < args.len();
        }
        if !args[i].eq_ignore_ascii_case(b"setname") {
            return false;
        }
        i += 2;
    }
    false
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

/// The names `COMMAND` lists, sorted: [`command_names`], made once.
pub(crate) fn known_names() -> &'static [String] {
    names().names
}

/// Redis 7.0's container commands that synod lists, and their subcommands
/// (with `CLIENT SETINFO`, from 7.2, which synod serves): INFO commandstats
/// counts a call of one as `container|sub`, as Redis (`cmdstat_config|get`,
/// `cmdstat_client|reply`), and a subcommand not listed nowhere, as Redis,
/// whose lookup finds no command for it.
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    (
        "acl",
        &[
            "cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami",
        ],
    ),
    (
        "client",
        &[
            "caching",
            "getname",
            "getredir",
            "help",
            "id",
            "info",
            "kill",
            "list",
            "no-evict",
            "pause",
            "reply",
            "setinfo",
            "setname",
            "tracking",
            "trackinginfo",
            "unblock",
            "unpause",
        ],
    ),
    (
        "command",
        &[
            "count",
            "docs",
            "getkeys",
            "getkeysandflags",
            "help",
            "info",
            "list",
        ],
    ),
    ("config", &["get", "help", "resetstat", "rewrite", "set"]),
    (
        "function",
        &[
            "delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats",
        ],
    ),
    (
        "memory",
        &["doctor", "help", "malloc-stats", "purge", "stats", "usage"],
    ),
    (
        "object",
        &["encoding", "freq", "help", "idletime", "refcount"],
    ),
    (
        "pubsub",
        &[
            "channels",
            "help",
            "numpat",
            "numsub",
            "shardchannels",
            "shardnumsub",
        ],
    ),
    (
        "script",
        &["debug", "exists", "flush", "help", "kill", "load"],
    ),
];

/// The places INFO commandstats counts in: [`known_names`], then
/// `container|sub` for each of [`SUBCOMMANDS`] whose container is listed.
struct StatNames {
    names: Vec<String>,
    /// Per listed name: its subcommands' places, if a container.
    subs: Vec<Option<std::collections::HashMap<&'static [u8], usize>>>,
    /// The places in name order (what INFO prints).
    sorted: Vec<usize>,
}

fn stat_names_made() -> &'static StatNames {
    static NAMES: std::sync::OnceLock<StatNames> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let known = known_names();
        let mut names: Vec<String> = known.to_vec();
        let mut subs: Vec<Option<std::collections::HashMap<&'static [u8], usize>>> =
            vec![None; known.len()];
        for (container, list) in SUBCOMMANDS {
            let Ok(at) = known.binary_search_by(|name| name.as_str().cmp(container)) else {
                continue;
            };
            let mut places = std::collections::HashMap::new();
            for sub in *list {
                places.insert(sub.as_bytes(), names.len());
                names.push(format!("{container}|{sub}"));
            }
            subs[at] = Some(places);
        }
        let mut sorted: Vec<usize> = (0..names.len()).collect();
        sorted.sort_by(|a, b| names[*a].cmp(&names[*b]));
        StatNames {
            names,
            subs,
            sorted,
        }
    })
}

/// The names INFO commandstats counts under (see [`stat_place`]).
pub(crate) fn stat_names() -> &'static [String] {
    &stat_names_made().names
}

/// [`stat_names`]' places in name order.
pub(crate) fn stat_names_sorted() -> &'static [usize] {
    &stat_names_made().sorted
}

/// Where INFO commandstats counts a request of the listed command `known`
/// (its place in [`known_names`]) with arguments `args`: `known` for a
/// command that is not a container, and for a container named alone (its
/// arity error); its subcommand's place for a listed subcommand; nowhere
/// (`None`) for another subcommand. One index for other commands (no
/// lookup on the data path).
pub(crate) fn stat_place(known: usize, args: &[Bytes]) -> Option<usize> {
    let Some(Some(places)) = stat_names_made().subs.get(known) else {
        return Some(known);
    };
    let Some(sub) = args.get(1) else {
        return Some(known);
    };
    // Longer than every listed subcommand: none of them.
    let mut buf = [0u8; NAME_BYTES_MAX];
    places.get(lowered_name(sub, &mut buf)?).copied()
}

/// Longer than every listed name and subcommand (the longest has 20
/// bytes): what [`lowered_name`] lowercases on the stack.
const NAME_BYTES_MAX: usize = 32;

/// `arg` in lowercase, in `buf`, without allocating; `None` when longer
/// than [`NAME_BYTES_MAX`] (no listed name is).
fn lowered_name<'a>(arg: &[u8], buf: &'a mut [u8; NAME_BYTES_MAX]) -> Option<&'a [u8]> {
    let lowered = buf.get_mut(..arg.len())?;
    lowered.copy_from_slice(arg);
    lowered.make_ascii_lowercase();
    Some(lowered)
}

/// The listed names, what the request path asks of each, and a map from
/// a name to its place: one lookup per request where there were three
/// (a binary search of the names, another of the command table when the
/// request is parsed, and a scan of the ACL categories), which took about
/// 4% of a leader's CPU under pipelined SETs.
struct Names {
    /// [`command_names`].
    names: &'static [String],
    /// Per name (same order): its command-table entry, if a data command.
    specs: Vec<Option<&'static crate::table::CommandSpec>>,
    /// Per name: whether ACL rules apply to it (`acl_categories::is_command`).
    acl_command: Vec<bool>,
    /// A name's bytes to its place in `names`.
    index: std::collections::HashMap<&'static [u8], usize, rustc_hash::FxBuildHasher>,
}

fn names() -> &'static Names {
    static NAMES: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let names: &'static [String] = Box::leak(command_names().into_boxed_slice());
        Names {
            names,
            specs: names
                .iter()
                .map(|name| crate::table::lookup(name))
                .collect(),
            acl_command: names
                .iter()
                .map(|name| crate::acl_categories::is_command(name))
                .collect(),
            index: names
                .iter()
                .enumerate()
                .map(|(at, name)| (name.as_bytes(), at))
                .collect(),
        }
    })
}

/// A request's lowercase command name and its place in [`known_names`]:
/// for a listed name, the listed copy (no allocation per request: this
/// was one of the most frequent allocations of a leader's client path);
/// for any other, a lowercase copy of its own.
pub(crate) fn command_name(arg: &[u8]) -> (std::borrow::Cow<'static, str>, Option<usize>) {
    let mut buf = [0u8; NAME_BYTES_MAX];
    if let Some(lowered) = lowered_name(arg, &mut buf) {
        let names = names();
        if let Some(&at) = names.index.get(lowered) {
            return (
                std::borrow::Cow::Borrowed(names.names[at].as_str()),
                Some(at),
            );
        }
    }
    (std::borrow::Cow::Owned(lower(arg)), None)
}

/// The command-table entry of the command at `known` in [`known_names`]
/// (from [`command_name`]): what `crate::parse::spec_of` finds for that
/// name, without a search. An unlisted name has none: every table entry
/// is listed (`command_names` starts from the table).
pub(crate) fn data_spec(known: Option<usize>) -> Option<&'static crate::table::CommandSpec> {
    known.and_then(|at| names().specs[at])
}

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(text.into()))
}

/// Commands allowed before AUTH when a password is set.
const NO_AUTH_NEEDED: &[&str] = &["auth", "hello", "quit", "ping", "reset"];
/// Commands no ACL rule can forbid (Redis' `no-auth` commands).
const ACL_EXEMPT: &[&str] = &["auth", "hello", "quit", "reset"];

/// Whether the `default` user, as this node enforces it, needs no password.
fn default_is_nopass(shared: &Shared) -> bool {
    let acl = &shared.cfg.acl;
    let config = acl.config_password();
    acl.users()
        .get(DEFAULT_USER.as_bytes())
        .is_some_and(|u| u.effective(config.as_ref()).nopass)
}

/// A new (or RESET) connection is the `default` user, authenticated only if
/// that user is on and needs no password (as in Redis).
fn initial_user(shared: &Shared) -> Option<(Bytes, u64)> {
    let acl = &shared.cfg.acl;
    let config = acl.config_password();
    let users = acl.users();
    let default = users.get(DEFAULT_USER.as_bytes())?;
    let effective = default.effective(config.as_ref());
    (effective.nopass && effective.enabled()).then(|| (effective.name().clone(), effective.serial))
}

impl Conn {
    /// The client's address, for log lines.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn new(id: u64, peer: SocketAddr, shared: Arc<Shared>) -> Conn {
        let user = initial_user(&shared);
        let implicit_login = user.is_some();
        let subscriber = crate::pubsub::Subscriber::new(shared.cfg.pubsub.clone(), id);
        Conn {
            id,
            peer,
            shared,
            protocol: Protocol::Resp2,
            user,
            auth_failures: 0,
            name: None,
            lib_name: None,
            lib_ver: None,
            multi: None,
            watched: std::collections::BTreeMap::new(),
            watched_bytes: 0,
            subscriber,
            reply_mode: ReplyMode::On,
            stat_tags: std::collections::VecDeque::new(),
            checked: CheckedStamps::default(),
            stamps: crate::acl::StampCache::default(),
            past_barrier: false,
            implicit_login,
            quit_after_barrier: false,
            denied: DeniedCell::default(),
            hold_config: false,
            held_config: None,
            acl_checked_at_exec: false,
            arrived_by: None,
            confirmed_at: None,
        }
    }

    /// The INFO commandstats tag of the next item `run_items` takes (one per
    /// item, in order: see [`Conn::handle`] and [`Conn::untracked`]).
    pub(crate) fn next_stat_tag(&mut self) -> Option<StatTag> {
        self.stat_tags.pop_front().flatten()
    }

    /// Marks the next item's INFO commandstats tag refused or not (a
    /// request handled after its barrier: see `server::past_barrier`).
    pub(crate) fn set_next_rejected(&mut self, rejected: bool) {
        if let Some(Some(tag)) = self.stat_tags.front_mut() {
            tag.rejected = rejected;
        }
    }

    /// When the requests handled from now on were read: they arrived by
    /// then (the server's last read of the client's bytes).
    pub(crate) fn set_arrived_by(&mut self, at: std::time::Instant) {
        self.arrived_by = Some(at);
    }

    /// A barrier read asked at `at` answered (`server::past_barrier`).
    pub(crate) fn confirmed_at(&mut self, at: std::time::Instant) {
        self.confirmed_at = Some(self.confirmed_at.map_or(at, |seen| seen.max(at)));
    }

    /// Whether a barrier read answered that was asked after the requests
    /// now handled arrived, with nothing but refusals handled since: it
    /// confirms their refusals as their own would. So a pipeline of
    /// refusals costs one read round, not one each.
    ///
    /// Why this is linearizable: a read asked at T answers once this node
    /// has applied every change acknowledged before T, so the users it
    /// checks a refusal against are those of a state the cluster held at
    /// some point at or after T, and so after the request arrived (was
    /// invoked). That point must also follow every earlier request of the
    /// connection (Redis runs them in order): true of those that ran
    /// before T (the barrier was first in its batch), and of refusals
    /// checked since (each against the same or a later state), but not of
    /// a request that ran after T, which may have seen a change
    /// acknowledged after T (an INFO keyspace, a log command). So any
    /// request that is not a refusal ends the confirmation (`Conn::ran`),
    /// as does a read that was not answered (review of 90de930, D1 and D2:
    /// a refusal pipelined behind an INFO was decided at parse time against
    /// an older state than the INFO saw, and counted before the INFO ran).
    fn arrivals_confirmed(&self) -> bool {
        // Strictly before: bytes read at the very instant the read was
        // asked (a coarse clock) are not taken as arrived before it.
        matches!((self.arrived_by, self.confirmed_at), (Some(arrived), Some(asked)) if arrived < asked)
    }

    /// A request handled that is not a refusal (it ran, failed, or waits
    /// for a barrier): later refusals need a read asked after it.
    fn ran(&mut self, item: Item) -> Item {
        self.confirmed_at = None;
        item
    }

    /// An item made without [`Conn::handle`] (a protocol error): it counts
    /// for no command, but keeps the tags in step with the items.
    pub(crate) fn untracked(&mut self) {
        self.stat_tags.push_back(None);
    }

    /// Remembers what a WATCH read (the reply to `command`, a
    /// [`KvCommand::Watch`]) and returns the client's reply.
    pub(crate) fn watch_read(&mut self, command: &KvCommand, reply: Reply) -> Reply {
        let KvCommand::Watch { keys } = command else {
            return Reply::error("ERR internal error: not a WATCH");
        };
        let read = match WatchedKey::read_all(keys, reply) {
            Ok(read) => read,
            Err(error) => return error,
        };
        let max = self.shared.node.command_bytes_max() / 2;
        for watched in read {
            if self.watched.contains_key(&watched.key) {
                continue;
            }
            let bytes = watched.key.len() + WATCHED_KEY_OVERHEAD_BYTES;
            if self.watched_bytes + bytes > max {
                return Reply::error(format!(
                    "ERR the watched keys exceed {max} bytes, half the maximum replicated size"
                ));
            }
            self.watched_bytes += bytes;
            self.watched.insert(watched.key.clone(), watched);
        }
        Reply::ok()
    }

    /// The connection's id (`CLIENT ID`).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Forgets every watched key (UNWATCH, DISCARD, EXEC, RESET).
    pub(crate) fn unwatch(&mut self) {
        self.watched.clear();
        self.watched_bytes = 0;
    }

    /// Takes the watched keys for EXEC, forgetting them.
    pub(crate) fn take_watched(&mut self) -> Vec<WatchedKey> {
        self.watched_bytes = 0;
        std::mem::take(&mut self.watched).into_values().collect()
    }

    /// Whether a transaction is open: what is parsed now is queued until
    /// EXEC or DISCARD.
    pub(crate) fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// Whether this connection may run commands: it authenticated, or no
    /// password is set. While not, the parser applies the pre-AUTH caps.
    pub(crate) fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Turns one request into an item, updating the connection's state,
    /// and silences its reply as CLIENT REPLY says (as Redis decides it:
    /// after the command ran, so `CLIENT REPLY ON` is answered; for an
    /// [`Item::Barrier`], once it ran after its barrier:
    /// [`Conn::after_barrier`]).
    /// `read_at`: when the request was read (one clock read for all the
    /// requests parsed from one read, not one per request). `None` when the
    /// request must wait for a linearizable point ([`Item::Barrier`]) but
    /// is not `first` in its batch: nothing of it was done, and the caller
    /// hands it in again first in the next batch (a barrier is handled
    /// only first in its batch: `server::past_barrier`).
    pub(crate) fn handle(
        &mut self,
        args: &[Bytes],
        read_at: std::time::Instant,
        first: bool,
    ) -> Option<Item> {
        let started = read_at;
        let name = args.first().map(|first| command_name(first));
        let item = self.handle_confirmed(
            name.as_ref().map(|(name, known)| (name.as_ref(), *known)),
            args,
        );
        if !first && item.is_barrier() {
            return None;
        }
        // Refused before running: the connection answered an error itself
        // (arity, authentication, ACL, MULTI's rules). A connection command
        // that ran and failed counts as refused too (it answered at once).
        let rejected = item.is_rejection();
        // Names `COMMAND` does not list (unknown commands) are not
        // counted, as in Redis.
        self.stat_tags.push_back(
            name.and_then(|(_, known)| known)
                .and_then(|known| stat_place(known, args))
                .map(|known| StatTag {
                    known,
                    started,
                    rejected,
                }),
        );
        if item.is_barrier() {
            // Not run yet: a CLIENT REPLY it is (refused by this node's
            // users, allowed after the barrier) must move the mode after
            // it ran, not before (review of c49b1fc, R2).
            return Some(item);
        }
        Some(self.settle_reply(item))
    }

    /// Silences `item`, the outcome of a request that ran (or failed), as
    /// CLIENT REPLY says now, and moves a SKIP on by one request.
    fn settle_reply(&mut self, item: Item) -> Item {
        let silent = matches!(self.reply_mode, ReplyMode::Off | ReplyMode::Skip);
        self.reply_mode = match self.reply_mode {
            ReplyMode::Skip => ReplyMode::On,
            ReplyMode::SkipNext => ReplyMode::Skip,
            mode => mode,
        };
        if silent {
            item.silenced()
        } else {
            item
        }
    }

    /// Whether `args` is checked and run only at a linearizable point
    /// ([`Item::Barrier`]): outside a transaction, a request
    /// [`needs_barrier`]; EXEC, when one such was queued (it runs at
    /// EXEC); and on a connection logged in as `default` without a
    /// password (on opening or at RESET), the first request that does not
    /// concern only the connection ([`concerns_the_connection`]): only once
    /// confirmed there does it run as `default` (a password set on
    /// `default`, acknowledged, held at a lagging node only for clients
    /// that sent AUTH: stop 64's review).
    /// (The server's parse loop asks too: such a request starts a batch.)
    pub(crate) fn barrier_first(&self, args: &[Bytes]) -> bool {
        if self.past_barrier {
            return false;
        }
        let Some(name) = args.first() else {
            return false;
        };
        if self.implicit_login && !concerns_the_connection(args) {
            return true;
        }
        match &self.multi {
            None => needs_barrier(args),
            Some(multi) => {
                name.eq_ignore_ascii_case(b"exec")
                    && multi.order.iter().any(|queued| match queued {
                        Queued::Local(args) => needs_barrier(args),
                        Queued::Data => false,
                    })
            }
        }
    }

    /// Handles a request of an [`Item::Barrier`] once this node has
    /// answered a linearizable read (so it has applied every command chosen
    /// before the request arrived, ACL changes included): it is checked
    /// against the users as they are then, as a log command is at apply.
    /// (Without this, a node that lagged let an old password log in after
    /// a rotation was acknowledged, and let a user turned off add a member:
    /// stop 63's review, F3 and F4.)
    pub(crate) fn after_barrier(&mut self, args: &[Bytes]) -> Item {
        if std::mem::take(&mut self.implicit_login) {
            // `default` may have got a password (or been turned off) by a
            // change this node had not applied when the connection opened.
            self.user = initial_user(&self.shared);
        }
        self.past_barrier = true;
        let item = self.handle_request(args);
        self.past_barrier = false;
        if matches!(item, Item::Quit(_)) {
            self.quit_after_barrier = true;
        }
        self.set_next_rejected(item.is_rejection());
        self.settle_reply(item)
    }

    /// Ends the transaction an EXEC was refused for (`reason`, an error
    /// line), as Redis' `execCommandAbort`: EXECABORT, the watched keys
    /// forgotten.
    fn exec_aborted(&mut self, reason: &str) -> Item {
        self.multi = None;
        Item::Unwatch(
            Reply::error(format!(
                "EXECABORT Transaction discarded because of: {reason}"
            )),
            self.protocol,
        )
    }

    /// Answers a request of an [`Item::Barrier`] that did not run because
    /// this node answered no linearizable read (`reply` says why). In a
    /// transaction the error flags it, as any error answered to a queued
    /// command does (Redis), and an EXEC ends it: it is answered
    /// EXECABORT, and what follows is not queued (review of c49b1fc, R3
    /// and R4: a refusal turned barrier had put the flag back, and an EXEC
    /// turned barrier its transaction).
    pub(crate) fn barrier_failed(&mut self, args: &[Bytes], reply: Reply) -> Item {
        let item = match self.multi.as_mut() {
            Some(_) if arg_is(args.first(), &["exec"]) => {
                let reason = match &reply {
                    Reply::Error(text) => text.as_str(),
                    _ => "",
                };
                self.exec_aborted(reason)
            }
            Some(multi) => {
                multi.dirty = true;
                Item::Reply(reply, self.protocol)
            }
            None => Item::Reply(reply, self.protocol),
        };
        self.set_next_rejected(true);
        self.settle_reply(item)
    }

    /// Whether a request handled after its barrier asked to close the
    /// connection (once its reply is written).
    pub(crate) fn take_quit_after_barrier(&mut self) -> bool {
        std::mem::take(&mut self.quit_after_barrier)
    }

    /// [`Conn::handle`] without CLIENT REPLY.
    fn handle_request(&mut self, args: &[Bytes]) -> Item {
        let name = args.first().map(|first| command_name(first));
        self.handle_confirmed(
            name.as_ref().map(|(name, known)| (name.as_ref(), *known)),
            args,
        )
    }

    /// [`Conn::handle_named`], whose ACL refusals are answered only at a
    /// linearizable point: a request the node's users refuse (a command,
    /// key or channel not allowed, the user turned off) becomes an
    /// [`Item::Barrier`] with nothing of it done, and is handled again once
    /// the node has applied every change acknowledged before it arrived
    /// ([`Conn::after_barrier`]). So a right given at another node and
    /// acknowledged holds at once at a lagging one, for log commands and
    /// queued ones too (before, only a right taken away did: the log
    /// refuses a command checked against older rules, but a command refused
    /// here never reached the log; stop 64's review, B7). Refusals are
    /// rare, so their extra read round costs the allowed path nothing. A
    /// refusal answered is counted once (`INFO stats`
    /// `acl_access_denied_*`).
    fn handle_confirmed(&mut self, name: Option<(&str, Option<usize>)>, args: &[Bytes]) -> Item {
        // What a refusal turned into a barrier must not have changed: a
        // transaction flagged, the rules the batch was checked against.
        let dirty = self.multi.as_ref().map(|multi| multi.dirty);
        let checked = self.checked.get();
        self.denied.take();
        let item = self.handle_named(name, args);
        let Some(denied) = self.denied.take() else {
            return self.ran(item);
        };
        let (item, denied) = if !self.past_barrier && !args.is_empty() {
            if let (Some(multi), Some(dirty)) = (self.multi.as_mut(), dirty) {
                multi.dirty = dirty;
            }
            self.checked.set(checked);
            if !self.arrivals_confirmed() {
                return Item::Barrier(args.to_vec());
            }
            // Confirmed already: handled again as after its own barrier
            // (`after_barrier`; nothing of the refused request was done).
            // What `after_barrier` does for an implicit login is not needed:
            // its barrier confirmed it (`after_barrier` took the flag), and
            // RESET, which sets it again, is never refused and so ends the
            // confirmation (`Conn::ran`). Second review of e8ee3b3.
            debug_assert!(
                !self.implicit_login,
                "a confirmed refusal on an unconfirmed login"
            );
            self.past_barrier = true;
            let item = self.handle_named(name, args);
            self.past_barrier = false;
            match self.denied.take() {
                Some(denied) => (item, denied),
                None => return self.ran(item),
            }
        } else {
            (item, denied)
        };
        let acl = &self.shared.cfg.acl;
        match denied {
            Denied::Command => acl.count_denied_command(),
            Denied::Key => acl.count_denied_key(),
            Denied::Channel => acl.count_denied_channel(),
            Denied::User => {}
        }
        item
    }

    /// [`Conn::handle_request`] given the command's lowercase name (the
    /// caller lowercased it already, for its statistics) and its place in
    /// [`known_names`], if listed.
    fn handle_named(&mut self, name: Option<(&str, Option<usize>)>, args: &[Bytes]) -> Item {
        let Some((name, known)) = name else {
            return self.reply(Reply::error("ERR empty command"));
        };
        if self.user.is_none() && !NO_AUTH_NEEDED.contains(&name) {
            return self.reply(Reply::error("NOAUTH Authentication required."));
        }
        if self.barrier_first(args) {
            return Item::Barrier(args.to_vec());
        }
        // Every command of an authenticated connection is checked against
        // its user's current rules (changed by any node's ACL command once
        // this node applied it). A user deleted or turned off since the
        // AUTH closes the connection.
        if self.user.is_some() && !ACL_EXEMPT.contains(&name) && !self.acl_checked_at_exec {
            let checked = self.with_user(|user| {
                let acl_command = match known {
                    Some(at) => names().acl_command[at],
                    None => crate::acl_categories::is_command(name),
                };
                if acl_command {
                    check_command(user, name, args.get(1).map(|a| a.as_ref()))
                } else {
                    Ok(())
                }
            });
            match checked {
                None => {
                    self.deny_user();
                    return Item::Quit(Reply::error(
                        "NOAUTH this connection's ACL user was deleted or disabled; authenticate again",
                    ));
                }
                Some(Err(reply)) => {
                    self.denied.set(Denied::Command);
                    if name == "exec" && self.past_barrier && self.multi.is_some() {
                        // As Redis' `execCommandAbort`: a refused EXEC
                        // ends its transaction (review of bfe3c81, F5).
                        // Only once confirmed: before, the request
                        // becomes a barrier with its transaction kept.
                        let Reply::Error(reason) = &reply else {
                            self.multi = None;
                            return self.reply(reply);
                        };
                        return self.exec_aborted(reason);
                    }
                    if let Some(multi) = self.multi.as_mut() {
                        multi.dirty = true;
                    }
                    return self.reply(reply);
                }
                Some(Ok(())) => {}
            }
        }
        // In RESP2 a subscribed connection only (un)subscribes (Redis).
        if self.protocol == Protocol::Resp2 && self.subscriber.active() {
            let full_name = match args.get(1) {
                Some(sub) if crate::acl_categories::is_container(name) => {
                    format!("{name}|{}", lower(sub))
                }
                _ => name.to_string(),
            };
            if let Some(refused) = crate::pubsub::refused_while_subscribed(name, &full_name) {
                return self.reply(refused);
            }
        }
        // A script this node dry-runs has lasted past `lua-time-limit`: as a
        // busy Redis, refuse all but what it lets through (see
        // `crate::scripting::dry_run`). In a transaction the refusal
        // flags it; an EXEC refused ends it (and answers EXECABORT even
        // without one, as Redis's `rejectCommand` does).
        if let Some(busy) = self.busy(name, args) {
            if name == "exec" {
                return self.exec_aborted(busy);
            }
            if let Some(multi) = self.multi.as_mut() {
                multi.dirty = true;
            }
            return self.reply(Reply::error(busy));
        }
        if let Some(multi) = self.multi.as_mut() {
            match name {
                "exec" | "discard" | "multi" | "quit" | "reset" => {}
                "watch" => {
                    return self.reply(Reply::error("ERR WATCH inside MULTI is not allowed"));
                }
                name if NO_MULTI.contains(&name) => {
                    multi.dirty = true;
                    return self
                        .reply(Reply::error("ERR Command not allowed inside a transaction"));
                }
                _ => return self.queue(args),
            }
        }
        match name {
            // Subscribed in RESP2, PING answers in the pub/sub form.
            "ping" if self.protocol == Protocol::Resp2 && self.subscriber.active() => {
                match args.len() {
                    1 | 2 => self.reply(Reply::Array(vec![
                        bulk("pong"),
                        Reply::Bulk(args.get(1).cloned().unwrap_or_default()),
                    ])),
                    _ => self.reply(wrong_args("ping")),
                }
            }
            "ping" => match args.len() {
                1 => self.reply(Reply::Simple("PONG".into())),
                2 => self.reply(Reply::Bulk(args[1].clone())),
                _ => self.reply(wrong_args("ping")),
            },
            "echo" => match args.len() {
                2 => self.reply(Reply::Bulk(args[1].clone())),
                _ => self.reply(wrong_args("echo")),
            },
            "quit" => Item::Quit(Reply::ok()),
            "reset" => {
                let delivered = self.subscriber.clear();
                let delivered_in = self.protocol;
                // CLIENT REPLY back on, so RESET's own reply is written,
                // unless RESET is the request a SKIP silences (Redis keeps
                // that skip: `settle_reply` moved SKIP on to `Skip` when it
                // settled the request before, so this one is `Skip` now).
                let skipped = self.reply_mode == ReplyMode::Skip;
                self.reply_mode = ReplyMode::On;
                self.multi = None;
                self.protocol = Protocol::Resp2;
                self.name = None;
                self.user = initial_user(&self.shared);
                self.implicit_login = self.user.is_some();
                Item::Reset {
                    delivered,
                    delivered_in,
                    skipped,
                }
            }
            "auth" => self.auth(args),
            "hello" => self.hello(args),
            "acl" => {
                let whoami = self.user.as_ref().map_or(Bytes::new(), |(n, _)| n.clone());
                match acl_command(&self.shared.cfg.acl, &whoami, args) {
                    AclAction::Reply(reply) => self.reply(reply),
                    AclAction::Log(command) => Item::data(command, self.protocol),
                }
            }
            "select" => match args.len() {
                2 => match std::str::from_utf8(&args[1])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(0) => self.reply(Reply::ok()),
                    Some(_) => self.reply(Reply::error("ERR DB index is out of range")),
                    None => self.reply(Reply::error("ERR value is not an integer or out of range")),
                },
                _ => self.reply(wrong_args("select")),
            },
            "client" => self.client(args),
            "time" => self.time(args),
            "command" => self.command(args),
            "config" => self.config(args),
            "info" => Item::Info(args[1..].iter().map(|a| lower(a)).collect(), self.protocol),
            name if crate::persistence::is_persist_command(name) => {
                match crate::persistence::parse(name, args) {
                    Ok(command) => Item::Persist(command, self.protocol),
                    Err(reply) => self.reply(reply),
                }
            }
            name if is_member_command(name) => match parse_member(args) {
                Ok(command) => Item::Member(command, self.protocol),
                Err(reply) => self.reply(reply),
            },
            "multi" => {
                if self.multi.is_some() {
                    return self.reply(Reply::error("ERR MULTI calls can not be nested"));
                }
                if args.len() != 1 {
                    return self.reply(wrong_args("multi"));
                }
                self.multi = Some(Multi {
                    queued: Vec::new(),
                    order: Vec::new(),
                    queued_names: Vec::new(),
                    dirty: false,
                    exec_bytes: KvCommand::exec_encoded_len([]),
                    too_large: false,
                });
                self.reply(Reply::ok())
            }
            // Every way out of a transaction forgets the watched keys, as in
            // Redis; "EXEC without MULTI" keeps them.
            "exec" => match self.multi.take() {
                None => self.reply(Reply::error("ERR EXEC without MULTI")),
                Some(multi) if multi.dirty => Item::Unwatch(
                    Reply::error("EXECABORT Transaction discarded because of previous errors."),
                    self.protocol,
                ),
                // Applied atomically means one log command: one that large
                // could never be chosen, so nothing of it is applied.
                Some(multi) if multi.too_large => Item::Unwatch(
                    Reply::error(format!(
                        "EXECABORT Transaction discarded because it exceeds the maximum replicated size of {} bytes.",
                        self.log_bytes_max()
                    )),
                    self.protocol,
                ),
                Some(multi) => match self.recheck_queued(&multi) {
                    Ok(()) if !self.past_barrier && self.refuses_a_queued_local(&multi) => {
                        // Confirmed first: run at EXEC, a queued
                        // connection command is final (see `exec`), and a
                        // right given back elsewhere must hold (review of
                        // bfe3c81, F2).
                        self.multi = Some(multi);
                        self.denied.set(Denied::Command);
                        Item::Barrier(args.to_vec())
                    }
                    Ok(()) => self.exec(multi),
                    Err(reply) => {
                        if !self.past_barrier {
                            // Refused here: kept open for the same EXEC
                            // once confirmed (see `handle_confirmed`).
                            self.multi = Some(multi);
                        }
                        Item::Unwatch(reply, self.protocol)
                    }
                },
            },
            "discard" => match self.multi.take() {
                None => self.reply(Reply::error("ERR DISCARD without MULTI")),
                Some(_) => Item::Unwatch(Reply::ok(), self.protocol),
            },
            "watch" => {
                if args.len() < 2 {
                    return self.reply(wrong_args("watch"));
                }
                let command = KvCommand::Watch {
                    keys: args[1..].to_vec(),
                };
                match self.check_keys(command) {
                    Ok(command) => Item::Watch(command, self.protocol),
                    Err(reply) => self.reply(reply),
                }
            }
            "unwatch" => match args.len() {
                1 => Item::Unwatch(Reply::ok(), self.protocol),
                _ => self.reply(wrong_args("unwatch")),
            },
            name if crate::pubsub::SUBSCRIBE_COMMANDS.contains(&name) => {
                // Arity first, as Redis (a refusal, not a failed call).
                if args.len() < 2 && matches!(name, "subscribe" | "psubscribe" | "ssubscribe") {
                    return self.reply(wrong_args(name));
                }
                if let Err(refused) = self.check_channels(name, args) {
                    return self.reply(refused);
                }
                let (delivered, replies) = self.subscriber.run(name, args);
                Item::Pushes(delivered, replies, self.protocol)
            }
            "pubsub" => self.reply(self.shared.cfg.pubsub.pubsub_command(args)),
            "publish" | "spublish" => match crate::pubsub::parse_publish(args)
                .and_then(|command| self.check_channels(name, args).map(|()| command))
                .and_then(|command| self.check_replicated_size(command))
            {
                Ok((command, len)) => Item::Data(command, self.protocol, len),
                Err(reply) => self.reply(reply),
            },
            "script" | "function"
                if args.len() == 2 && args[1].eq_ignore_ascii_case(b"kill") =>
            {
                let limit = self.lua_time_limit();
                self.reply(self.shared.script_runs.kill(name == "function", limit))
            }
            name if crate::scripting::SCRIPT_COMMANDS.contains(&name) => {
                match crate::scripting::request(&self.shared.scripts, args) {
                    crate::scripting::ScriptRequest::Reply(reply) => self.reply(reply),
                    crate::scripting::ScriptRequest::Log(command) => match self
                        .check_keys(self.run_as_user(command))
                        .and_then(|command| self.check_replicated_size(command))
                    {
                        Ok((command, len)) => Item::Data(command, self.protocol, len),
                        Err(reply) => self.reply(reply),
                    },
                }
            }
            _ => match parse_data(
                &self.kept_args(name, args),
                data_spec(known),
                self.shared.cfg.value_bytes_max,
            )
            .and_then(|command| self.check_keys(command))
            .and_then(|command| self.check_replicated_size(command))
            {
                Ok((command @ KvCommand::Blocking { .. }, _)) => {
                    match crate::blocking::parse(name, args) {
                        Ok((_, timeout)) => Item::Block(command, timeout, self.protocol),
                        Err(reply) => self.reply(reply),
                    }
                }
                Ok((command, len)) => Item::Data(command, self.protocol, len),
                Err(reply) => self.reply(reply),
            },
        }
    }

    /// The arguments a data command is built from: copies for a blocking
    /// command, which may be kept for as long as it waits (for ever with
    /// timeout 0); its arguments would otherwise pin the shared copy of the
    /// read buffer they were sliced from, or a large request's whole read
    /// buffer (review). Other commands are done with when their batch is.
    fn kept_args<'a>(&self, name: &str, args: &'a [Bytes]) -> std::borrow::Cow<'a, [Bytes]> {
        if crate::blocking::is_blocking(name) {
            std::borrow::Cow::Owned(args.iter().map(|arg| Bytes::copy_from_slice(arg)).collect())
        } else {
            std::borrow::Cow::Borrowed(args)
        }
    }

    /// This node's `lua-time-limit`: how long a dry run lasts before the
    /// node is busy with it.
    fn lua_time_limit(&self) -> Duration {
        Duration::from_millis(self.shared.lua_time_limit_ms.load(Relaxed))
    }

    /// The BUSY error for this request while a script this node dry-runs
    /// has lasted past `lua-time-limit`, unless Redis lets the command
    /// through while busy.
    fn busy(&self, name: &str, args: &[Bytes]) -> Option<&'static str> {
        let busy = self.shared.script_runs.busy(self.lua_time_limit())?;
        let allowed = match args.get(1) {
            Some(sub) if crate::acl_categories::is_container(name) => {
                let full = format!("{name}|{}", lower(sub));
                crate::scripting::ALLOW_BUSY.contains(&full.as_str())
            }
            _ => crate::scripting::ALLOW_BUSY.contains(&name),
        };
        (!allowed).then_some(busy)
    }

    /// Runs `f` on the connection's user as this node currently holds it;
    /// `None` when the user was deleted (or re-created: a new serial) or
    /// turned off since the connection authenticated, or it never did.
    /// A script runs as the connection's user: its commands are checked
    /// against that user's rules at apply (see `EvalCommand::user`).
    fn run_as_user(&self, mut command: KvCommand) -> KvCommand {
        if let KvCommand::Eval(eval) = &mut command {
            eval.user = self.user.as_ref().map(|(name, _)| name.clone());
        }
        command
    }

    fn with_user<R>(&self, f: impl FnOnce(&User) -> R) -> Option<R> {
        self.current_user(|user, stamp| {
            // Every check of a request goes through here: remember which
            // rules they used, for the log to hold the commands to them.
            self.checked.set(match self.checked.get() {
                Checked::Nothing => Checked::Stamp(stamp),
                Checked::Stamp(seen) if seen == stamp => Checked::Stamp(stamp),
                _ => Checked::Mixed,
            });
            f(user)
        })
    }

    /// Records that the connection's user is gone or off, as a refusal to
    /// confirm at a barrier ([`Conn::handle_confirmed`]) only if it may
    /// come back: turned off. A user deleted (or deleted and created again:
    /// another serial) never comes back, so that is answered at once, and
    /// such a connection closes even at a node without a majority (review
    /// of bfe3c81, F3).
    fn deny_user(&self) {
        let Some((name, serial)) = self.user.as_ref() else {
            return;
        };
        let users = self.shared.cfg.acl.users();
        if users.get(name).is_some_and(|user| user.serial == *serial) {
            self.denied.set(Denied::User);
        }
    }

    /// Runs `f` on the connection's user as this node holds it now and the
    /// stamp of its rules; `None` as for [`Conn::with_user`]. Records no
    /// check.
    fn current_user<R>(&self, f: impl FnOnce(&User, u64) -> R) -> Option<R> {
        let (name, serial) = self.user.as_ref()?;
        let acl = &self.shared.cfg.acl;
        let users = acl.users();
        let user = users
            .get(name)
            .filter(|u| u.serial == *serial && u.enabled())?;
        // Read under the users' guard: the version of the users read.
        let stamp = self.stamps.stamp(acl.generation(), user);
        Some(f(user, stamp))
    }

    /// Starts a batch of requests: forgets which rules earlier ones were
    /// checked against.
    pub(crate) fn begin_checks(&self) {
        self.checked.set(Checked::Nothing);
    }

    /// What the commands of this batch go to the log with, so that every
    /// replica refuses them if the user's rules changed since this node
    /// checked them (see [`crate::AsUser`]): the user and the stamp of the
    /// rules the batch's checks used; `None` before AUTH. A batch checked
    /// against two versions of the rules gets a stamp no rules have (short
    /// of a 64-bit collision), so it is refused whole: the change came in
    /// the middle of it. (A batch with nothing checked sends nothing to
    /// the log; should one, it goes with the rules as they are now.)
    pub(crate) fn run_as(&self) -> Option<RunAs> {
        let (name, _) = self.user.as_ref()?;
        let stamp = match self.checked.get() {
            Checked::Nothing => self
                .current_user(|_, stamp| stamp)
                .unwrap_or(MIXED_RULES_STAMP),
            Checked::Stamp(stamp) => stamp,
            Checked::Mixed => MIXED_RULES_STAMP,
        };
        Some(RunAs {
            user: name.clone(),
            stamp,
        })
    }

    /// The largest command this connection may send to the log: the
    /// node's bound (`Node::command_bytes_max`) less what going as its user
    /// adds ([`Conn::run_as_overhead`]), so that no command, batch or
    /// transaction it checks against this ever exceeds the bound.
    pub(crate) fn log_bytes_max(&self) -> usize {
        self.shared
            .node
            .command_bytes_max()
            .saturating_sub(self.run_as_overhead())
    }

    /// What a blocked command's next try goes to the log with (`admitted`:
    /// what its first try went with). A wait may last for ever, and its
    /// user's rules may change meanwhile: a try sent with the stamp of the
    /// rules it was admitted under would then be refused, even by a change
    /// that took nothing from it (stop 63's review). So while the rules are
    /// the same the try goes as admitted; once they changed, the command is
    /// checked again against the rules this node holds now and goes with
    /// their stamp. `Err`: the refusal to answer instead (the user is gone
    /// or off, or may no longer run it).
    pub(crate) fn restamp_blocked(
        &self,
        command: &KvCommand,
        admitted: Option<&RunAs>,
    ) -> Result<Option<RunAs>, Reply> {
        let (Some(admitted), Some((name, _))) = (admitted, self.user.as_ref()) else {
            return Ok(admitted.cloned());
        };
        let acl = &self.shared.cfg.acl;
        self.current_user(|user, stamp| {
            if stamp == admitted.stamp {
                return Ok(Some(admitted.clone()));
            }
            let command_name = command.name();
            if user.has_first_arg_rule(command_name) {
                // A `name|first-arg` rule needs the request's first
                // argument, which the try no longer has: not checked
                // again, refused.
                return Err(Reply::error(crate::store::ACL_CHANGED_IN_FLIGHT));
            }
            // Checked as the blocked command runs (no barrier then):
            // counted here.
            if let Err(reply) = check_command(user, command_name, None) {
                acl.count_denied_command();
                return Err(reply);
            }
            if let Err(reply) = check_keys(user, command) {
                acl.count_denied_key();
                return Err(reply);
            }
            Ok(Some(RunAs {
                user: name.clone(),
                stamp,
            }))
        })
        .unwrap_or_else(|| {
            Err(Reply::error(
                "NOAUTH this connection's ACL user was deleted or disabled; authenticate again",
            ))
        })
    }

    /// How many bytes going to the log as this connection's user adds to a
    /// command (see [`Conn::run_as`]).
    pub(crate) fn run_as_overhead(&self) -> usize {
        self.user.as_ref().map_or(0, |(name, _)| {
            crate::command_codec::as_user_overhead(name.len())
        })
    }

    /// Checks every queued command again, at EXEC, against the user's
    /// rules as this node now holds them, as Redis 7 does: a permission or
    /// key pattern taken away since the command was queued refuses it.
    /// Unlike Redis, which runs the rest, the whole transaction is then
    /// discarded: it is one atomic log command, and applying part of it is
    /// what its client least expects. `Err` carries the reply (a refusal
    /// recorded, see [`Conn::handle_confirmed`]).
    fn recheck_queued(&self, multi: &Multi) -> Result<(), Reply> {
        debug_assert_eq!(multi.queued.len(), multi.queued_names.len());
        let checked = self.with_user(|user| {
            for ((name, first_arg), command) in multi.queued_names.iter().zip(&multi.queued) {
                if crate::acl_categories::is_command(name) {
                    check_command(user, name, first_arg.as_deref())
                        .map_err(|reply| (Denied::Command, reply))?;
                }
                check_keys(user, command).map_err(|reply| (Denied::Key, reply))?;
                // The log holds EXEC to the rules of now only: a channel
                // taken away since the PUBLISH was queued is refused here
                // (review of bfe3c81, F1: the message went out).
                if let KvCommand::Publish { channel, .. } = command {
                    if !user.channel_allowed(channel, false) {
                        return Err((Denied::Channel, Reply::error(CHANNEL_DENIED)));
                    }
                }
            }
            Ok(())
        });
        let checked = match checked {
            Some(Err((denied, reply))) => {
                self.denied.set(denied);
                Some(Err(reply))
            }
            Some(Ok(())) => Some(Ok(())),
            None => {
                self.deny_user();
                None
            }
        };
        match checked {
            Some(Ok(())) => Ok(()),
            Some(Err(Reply::Error(reason))) => Err(Reply::error(format!(
                "EXECABORT Transaction discarded because ACL rules changed since it was queued: {}",
                reason.strip_prefix("NOPERM ").unwrap_or(&reason)
            ))),
            Some(Err(other)) => Err(other),
            None => Err(Reply::error("NOAUTH Authentication required.")),
        }
    }

    /// Whether the user's rules as this node holds them refuse a queued
    /// connection command (its name and first argument): checked, not run.
    fn refuses_a_queued_local(&self, multi: &Multi) -> bool {
        let refused = self.current_user(|user, _| {
            multi.order.iter().any(|queued| match queued {
                Queued::Local(args) => !local_allowed(user, args),
                Queued::Data => false,
            })
        });
        refused.unwrap_or(false)
    }

    /// Refuses a command touching a key outside the user's `~patterns`.
    fn check_keys(&self, command: KvCommand) -> Result<KvCommand, Reply> {
        match self.with_user(|user| check_keys(user, &command)) {
            Some(Ok(())) => Ok(command),
            Some(Err(reply)) => {
                self.denied.set(Denied::Key);
                Err(reply)
            }
            None => {
                self.deny_user();
                Err(Reply::error("NOAUTH Authentication required."))
            }
        }
    }

    /// Refuses a pub/sub command naming a channel outside the user's
    /// `&patterns` (see [`crate::pubsub::channels_checked`]).
    fn check_channels(&self, name: &str, args: &[Bytes]) -> Result<(), Reply> {
        let checked = crate::pubsub::channels_checked(name, args);
        let allowed = self.with_user(|user| {
            checked
                .iter()
                .all(|(channel, literal)| user.channel_allowed(channel, *literal))
        });
        match allowed {
            Some(true) => Ok(()),
            Some(false) => {
                self.denied.set(Denied::Channel);
                Err(Reply::error(CHANNEL_DENIED))
            }
            None => {
                self.deny_user();
                Err(Reply::error("NOAUTH Authentication required."))
            }
        }
    }

    /// Refuses a command that could not be replicated alone: its encoding
    /// must fit in one log value (`Node::command_bytes_max`).
    /// Returns the command with its encoded length, which the batch it
    /// joins adds up (see `server::run_items`) instead of encoding it again.
    fn check_replicated_size(&self, command: KvCommand) -> Result<(KvCommand, usize), Reply> {
        let max = self.log_bytes_max();
        let len = command.encoded_len();
        if len > max {
            return Err(Reply::error(format!(
                "ERR command of {len} bytes exceeds the maximum replicated size of {max} bytes"
            )));
        }
        Ok((command, len))
    }

    fn reply(&self, reply: Reply) -> Item {
        Item::Reply(reply, self.protocol)
    }

    /// EXEC of a transaction that may run: its data commands go as one log
    /// command; its connection commands run once that ran
    /// ([`ExecPart`]), except a CONFIG SET naming `maxmemory`, whose
    /// `SetMaxMemory` joins the data commands in its place.
    fn exec(&mut self, multi: Multi) -> Item {
        let mut parts = Vec::with_capacity(multi.order.len());
        let mut data = multi.queued.into_iter();
        let mut commands = Vec::with_capacity(data.len());
        for queued in multi.order {
            parts.push(match queued {
                Queued::Data => {
                    commands.extend(data.next());
                    ExecPart::Data
                }
                Queued::Local(args) if sets_maxmemory(&args) => {
                    // Checked now (the ACL, the values), its node-local
                    // parameters held: a log command, in its place in the
                    // transaction (review of bfe3c81, F4: it answered
                    // "internal error" and did nothing).
                    self.hold_config = true;
                    let item = self.run_queued_local(&args);
                    self.hold_config = false;
                    let held = self.held_config.take();
                    match (item, held) {
                        (Item::Data(command, _, _), Some(held)) => {
                            commands.push(command);
                            ExecPart::Config(held)
                        }
                        (Item::Reply(reply, _), _) => ExecPart::Ready(reply),
                        _ => ExecPart::Ready(Reply::error(
                            "ERR internal error: not a CONFIG SET of maxmemory",
                        )),
                    }
                }
                // Checked now, against the rules the data commands are
                // checked against (the batch's), and run once they ran
                // without a second check: the transaction is checked as a
                // whole at EXEC (review of 6573779, D2: a change to the
                // users landing between its data and a later connection
                // command refused that one alone).
                Queued::Local(args)
                    if self
                        .with_user(|user| local_allowed(user, &args))
                        .unwrap_or(false) =>
                {
                    ExecPart::Local(args)
                }
                // Refused (or the user gone): answered now, as alone.
                Queued::Local(args) => match self.run_queued_local(&args) {
                    Item::Reply(reply, _) | Item::Quit(reply) => ExecPart::Ready(reply),
                    _ => ExecPart::Ready(Reply::error("ERR internal error: not a local command")),
                },
            });
        }
        Item::Exec(commands, parts, self.protocol)
    }

    /// A queued connection command, run as it would be alone (not in
    /// MULTI any more). Answered in EXEC's reply, so final: a refusal is
    /// not deferred to a barrier (`handle_confirmed`; an EXEC with a queued
    /// command that needs one came after its own). Review of c49b1fc, R1.
    fn run_queued_local(&mut self, args: &[Bytes]) -> Item {
        let past = std::mem::replace(&mut self.past_barrier, true);
        let item = self.handle_request(args);
        self.past_barrier = past;
        item
    }

    /// Runs a transaction's queued connection command once its data
    /// commands ran ([`ExecPart::Local`]), without checking the user's
    /// rules again (`Conn::exec` did): its reply in EXEC's.
    pub(crate) async fn exec_local(&mut self, args: &[Bytes]) -> Reply {
        self.acl_checked_at_exec = true;
        let item = self.run_queued_local(args);
        self.acl_checked_at_exec = false;
        match item {
            Item::Reply(reply, _) | Item::Quit(reply) => reply,
            Item::Info(sections, _) => self.info(&sections).await,
            _ => Reply::error("ERR internal error: not a local command"),
        }
    }

    /// Sets the node-local parameters of a transaction's CONFIG SET of
    /// `maxmemory` once its `SetMaxMemory` answered OK
    /// ([`ExecPart::Config`]).
    pub(crate) fn exec_config(&self, held: ConfigLocal, reply: Reply) -> Reply {
        if matches!(&reply, Reply::Simple(ok) if ok == "OK") {
            self.set_config_local(held);
        }
        reply
    }

    fn queue(&mut self, args: &[Bytes]) -> Item {
        let name = lower(&args[0]);
        if name == "client" && arg_is(args.get(1), &["reply"]) {
            // Run at EXEC, it answered "internal error" and silenced
            // EXEC's own reply (review of 8fc9577).
            if let Some(multi) = self.multi.as_mut() {
                multi.dirty = true;
            }
            return self.reply(Reply::error(
                "ERR 'client|reply' cannot be used inside MULTI in synod",
            ));
        }
        if let Some((_, arity)) = QUEUED_LOCAL.iter().find(|(local, _)| *local == name) {
            let argc = args.len() as i64;
            if (*arity >= 0 && argc != *arity) || argc < arity.abs() {
                if let Some(multi) = self.multi.as_mut() {
                    multi.dirty = true;
                }
                return self.reply(wrong_args(&name));
            }
            return self.queue_local(args);
        }
        let parsed = match name.as_str() {
            "hello" | "auth" | "acl" | "synod.member" | "synod.leader" => Err(Reply::error(
                format!("ERR '{name}' cannot be used inside MULTI in synod"),
            )),
            name if crate::pubsub::SUBSCRIBE_COMMANDS.contains(&name) => Err(Reply::error(
                format!("ERR '{name}' cannot be used inside MULTI in synod"),
            )),
            "publish" | "spublish" => crate::pubsub::parse_publish(args)
                .and_then(|command| self.check_channels(&name, args).map(|()| command))
                .and_then(|command| self.check_replicated_size(command)),
            "script" | "function" => Err(Reply::error(format!(
                "ERR '{name}' cannot be used inside MULTI in synod"
            ))),
            name if crate::scripting::SCRIPT_COMMANDS.contains(&name) => {
                match crate::scripting::request(&self.shared.scripts, args) {
                    crate::scripting::ScriptRequest::Reply(reply) => Err(reply),
                    crate::scripting::ScriptRequest::Log(command) => self
                        .check_keys(self.run_as_user(command))
                        .and_then(|command| self.check_replicated_size(command)),
                }
            }
            _ => parse_data(
                args,
                data_spec(command_name(&args[0]).1),
                self.shared.cfg.value_bytes_max,
            )
            .and_then(|command| self.check_keys(command))
            .and_then(|command| self.check_replicated_size(command)),
        };
        let max = self.log_bytes_max();
        let Some(multi) = self.multi.as_mut() else {
            return self.reply(Reply::error("ERR internal error: not in MULTI"));
        };
        match parsed {
            Ok((command, len)) => {
                // Like KvCommand::exec_encoded_len, one command at a time.
                multi.exec_bytes += len.saturating_sub(1);
                if multi.exec_bytes > max {
                    multi.too_large = true;
                    multi.queued = Vec::new();
                    multi.order = Vec::new();
                }
                if multi.too_large {
                    multi.queued_names = Vec::new();
                } else {
                    multi.queued.push(command);
                    multi.order.push(Queued::Data);
                    multi.queued_names.push((name, args.get(1).cloned()));
                }
                self.reply(Reply::Simple("QUEUED".into()))
            }
            Err(reply) => {
                multi.dirty = true;
                self.reply(reply)
            }
        }
    }

    /// Queues a connection command, counting its arguments toward the
    /// transaction's bound (they are held until EXEC).
    fn queue_local(&mut self, args: &[Bytes]) -> Item {
        let max = self.log_bytes_max();
        let Some(multi) = self.multi.as_mut() else {
            return self.reply(Reply::error("ERR internal error: not in MULTI"));
        };
        let bytes: usize = args.iter().map(|arg| arg.len() + 4).sum();
        multi.exec_bytes = multi.exec_bytes.saturating_add(bytes);
        if multi.exec_bytes > max {
            multi.too_large = true;
            multi.queued = Vec::new();
            multi.order = Vec::new();
            multi.queued_names = Vec::new();
        }
        if !multi.too_large {
            multi.order.push(Queued::Local(args.to_vec()));
        }
        self.reply(Reply::Simple("QUEUED".into()))
    }

    /// Checks a user name and password (see `acl_auth` for the constant
    /// time and the slow-down) and, when right, switches the connection to
    /// that user. Returns the outcome and how long to hold the reply back.
    fn authenticate(&mut self, user: &[u8], password: &[u8]) -> (Result<(), Reply>, Duration) {
        let acl = &self.shared.cfg.acl;
        let verdict = acl.verify(user, password, &self.peer.to_string());
        let result = match verdict.serial {
            Some(serial) => {
                self.user = Some((Bytes::copy_from_slice(user), serial));
                self.implicit_login = false;
                self.auth_failures = 0;
                Ok(())
            }
            None => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                Err(Reply::error(if verdict.refused {
                    "ERR too many failed authentication attempts on this server; try again later"
                } else {
                    "WRONGPASS invalid username-password pair or user is disabled."
                }))
            }
        };
        let delay = if result.is_ok() {
            verdict.wait
        } else {
            verdict.wait.max(failure_delay(self.auth_failures))
        };
        acl.count_delay(delay);
        (result, delay)
    }

    /// The reply item, held back by `delay` when there is one.
    fn reply_after(&self, reply: Reply, delay: Duration) -> Item {
        if delay.is_zero() {
            self.reply(reply)
        } else {
            Item::Later(reply, self.protocol, delay)
        }
    }

    fn auth(&mut self, args: &[Bytes]) -> Item {
        let (result, delay) = match args.len() {
            2 => {
                if default_is_nopass(&self.shared) {
                    return self.reply(Reply::error(
                        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                    ));
                }
                self.authenticate(DEFAULT_USER.as_bytes(), &args[1])
            }
            3 => self.authenticate(&args[1], &args[2]),
            // As Redis 7.0: too many arguments is a syntax error, too few
            // the arity error.
            4.. => (Err(Reply::error("ERR syntax error")), Duration::ZERO),
            _ => (Err(wrong_args("auth")), Duration::ZERO),
        };
        match result {
            Ok(()) => self.reply_after(Reply::ok(), delay),
            Err(reply) => self.reply_after(reply, delay),
        }
    }

    fn hello(&mut self, args: &[Bytes]) -> Item {
        let mut protocol = self.protocol;
        let mut i = 1;
        let mut auth_delay = Duration::ZERO;
        if let Some(version) = args.get(1) {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return self.reply(Reply::error("NOPROTO unsupported protocol version")),
                None => {
                    return self.reply(Reply::error(
                        "ERR Protocol version is not an integer or out of range",
                    ))
                }
            }
            i = 2;
        }
        while i < args.len() {
            match lower(&args[i]).as_str() {
                "auth" if i + 2 < args.len() => {
                    let (user, pass) = (args[i + 1].clone(), args[i + 2].clone());
                    let (result, delay) = self.authenticate(&user, &pass);
                    auth_delay = delay;
                    if let Err(reply) = result {
                        return self.reply_after(reply, delay);
                    }
                    i += 3;
                }
                "setname" if i + 1 < args.len() => {
                    // A copy: an argument is a slice of a copy of the read
                    // buffer shared with the requests around it.
                    self.name = Some(Bytes::copy_from_slice(&args[i + 1]));
                    i += 2;
                }
                _ => return self.reply(Reply::error("ERR syntax error")),
            }
        }
        if self.user.is_none() {
            return self.reply(Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
        }
        self.protocol = protocol;
        // Every node takes writes and answers reads linearizably (a
        // follower forwards them), so to a Redis client each one is a
        // master: "replica" made clients that route writes by role refuse
        // to write to a follower. `INFO replication` tells the Paxos roles.
        let role = "master";
        let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
        let map = vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(crate::REDIS_VERSION)),
            (bulk("proto"), Reply::Integer(proto)),
            (bulk("id"), Reply::Integer(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk(role)),
            (bulk("modules"), Reply::Array(Vec::new())),
        ];
        self.reply_after(Reply::Map(map), auth_delay)
    }

    /// `TIME`: this node's clock, as Redis answers from its own. Only the
    /// answer depends on it; nothing replicated does.
    fn time(&self, args: &[Bytes]) -> Item {
        if args.len() != 1 {
            return self.reply(wrong_args("time"));
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.reply(Reply::Array(vec![
            bulk(since_epoch.as_secs().to_string()),
            bulk(since_epoch.subsec_micros().to_string()),
        ]))
    }

    fn client(&mut self, args: &[Bytes]) -> Item {
        let Some(sub) = args.get(1).map(|a| lower(a)) else {
            return self.reply(wrong_args("client"));
        };
        match (sub.as_str(), args.len()) {
            ("id", 2) => self.reply(Reply::Integer(self.id as i64)),
            ("getname", 2) => self.reply(self.name.clone().map_or(Reply::Null, Reply::Bulk)),
            ("setname", 3) => {
                if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                    return self.reply(Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                // A copy, as HELLO's SETNAME.
                self.name = (!args[2].is_empty()).then(|| Bytes::copy_from_slice(&args[2]));
                self.reply(Reply::ok())
            }
            ("setinfo", 4) => {
                match lower(&args[2]).as_str() {
                    // Copies, as CLIENT SETNAME's.
                    "lib-name" => self.lib_name = Some(Bytes::copy_from_slice(&args[3])),
                    "lib-ver" => self.lib_ver = Some(Bytes::copy_from_slice(&args[3])),
                    other => {
                        return self
                            .reply(Reply::error(format!("ERR Unrecognized option '{other}'")))
                    }
                }
                self.reply(Reply::ok())
            }
            ("reply", 3) => match lower(&args[2]).as_str() {
                "on" => {
                    self.reply_mode = ReplyMode::On;
                    self.reply(Reply::ok())
                }
                // OFF and SKIP have no reply of their own.
                "off" => {
                    self.reply_mode = ReplyMode::Off;
                    Item::Pushes(Vec::new(), Vec::new(), self.protocol)
                }
                "skip" => {
                    if self.reply_mode != ReplyMode::Off {
                        self.reply_mode = ReplyMode::SkipNext;
                    }
                    Item::Pushes(Vec::new(), Vec::new(), self.protocol)
                }
                _ => self.reply(Reply::error("ERR syntax error")),
            },
            ("info", 2) => self.reply(Reply::Verbatim(Bytes::from(self.describe() + "\n"))),
            ("unblock", 3 | 4) => self.reply(crate::blocking::client_unblock(
                &self.shared.cfg.blocked_clients,
                &args[2..],
            )),
            ("list", _) => self.reply(Reply::Verbatim(Bytes::from(self.describe() + "\n"))),
            ("setinfo" | "setname" | "getname" | "id" | "info" | "reply" | "unblock", _) => {
                self.reply(wrong_args(&format!("client|{sub}")))
            }
            _ => self.reply(Reply::error(format!(
                "ERR unknown subcommand '{sub}'. Try CLIENT HELP."
            ))),
        }
    }

    fn describe(&self) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        format!(
            "id={} addr={} name={} db=0 resp={} user={} lib-name={} lib-ver={}",
            self.id,
            self.peer,
            text(&self.name),
            if self.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            text(&self.user.as_ref().map(|(name, _)| name.clone())),
            text(&self.lib_name),
            text(&self.lib_ver)
        )
    }

    fn command(&self, args: &[Bytes]) -> Item {
        let table = full_table();
        let sub = args.get(1).map(|a| lower(a));
        match sub.as_deref() {
            None => self.reply(Reply::Array(table.iter().map(info_entry).collect())),
            Some("count") => self.reply(Reply::Integer(table.len() as i64)),
            Some("info") => {
                let wanted: Vec<String> = args[2..].iter().map(|a| lower(a)).collect();
                let replies = if wanted.is_empty() {
                    table.iter().map(info_entry).collect()
                } else {
                    wanted
                        .iter()
                        .map(|w| {
                            table
                                .iter()
                                .find(|c| c.name == *w)
                                .map_or(Reply::NullArray, info_entry)
                        })
                        .collect()
                };
                self.reply(Reply::Array(replies))
            }
            Some("docs") => {
                let wanted: Vec<String> = args[2..].iter().map(|a| lower(a)).collect();
                let docs = table
                    .iter()
                    .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
                    .map(|c| {
                        (
                            bulk(c.name.clone()),
                            Reply::Map(vec![
                                (bulk("summary"), bulk(c.summary.clone())),
                                (bulk("since"), bulk("1.0.0")),
                                (bulk("group"), bulk(c.group.clone())),
                            ]),
                        )
                    })
                    .collect();
                self.reply(Reply::Map(docs))
            }
            Some(other) => self.reply(Reply::error(format!(
                "ERR unknown subcommand '{other}'. Try COMMAND HELP."
            ))),
        }
    }

    fn config(&mut self, args: &[Bytes]) -> Item {
        let sub = args.get(1).map(|a| lower(a));
        match sub.as_deref() {
            Some("get") if args.len() >= 3 => {
                // Enough for tools that read a few settings at start-up
                // (redis-benchmark asks for `save` and `appendonly`).
                let maxclients = self.shared.cfg.clients_max.to_string();
                let events = crate::pubsub::keyspace_events::flags_to_string(
                    self.shared.cfg.pubsub.keyspace_events(),
                );
                let lua_time_limit = self.shared.lua_time_limit_ms.load(Relaxed).to_string();
                let known: [(&str, &str); 9] = [
                    ("save", ""),
                    ("appendonly", "yes"),
                    ("appendfsync", "always"),
                    ("databases", "1"),
                    ("maxmemory", "0"),
                    ("maxclients", &maxclients),
                    ("notify-keyspace-events", &events),
                    ("lua-time-limit", &lua_time_limit),
                    ("busy-reply-threshold", &lua_time_limit),
                ];
                // Each parameter once, however many patterns match it
                // (Redis 7: `CONFIG GET maxmemory maxmemory*`).
                let mut pairs = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for arg in &args[2..] {
                    let pattern = lower(arg);
                    for (key, value) in known {
                        if crate::glob::glob_match(pattern.as_bytes(), key.as_bytes())
                            && seen.insert(key.to_string())
                        {
                            pairs.push((bulk(key), bulk(value)));
                        }
                    }
                    for (key, value) in self.shared.tuning.get(&pattern) {
                        if seen.insert(key.to_string()) {
                            pairs.push((bulk(key), bulk(value)));
                        }
                    }
                }
                self.reply(Reply::Map(pairs))
            }
            // Pairs of parameter and value, all or nothing (Redis 7).
            Some("set") if args.len() >= 4 && args.len().is_multiple_of(2) => {
                self.config_set(&args[2..])
            }
            Some("set") if args.len() >= 4 => self.reply(wrong_args("config|set")),
            // This node's INFO commandstats and errorstats (nothing else
            // synod keeps is a Redis statistic RESETSTAT clears).
            Some("resetstat") if args.len() == 2 => {
                self.shared.command_stats.reset();
                self.reply(Reply::ok())
            }
            Some("set" | "resetstat" | "rewrite") => {
                self.reply(Reply::error("ERR CONFIG SET is not supported by synod"))
            }
            _ => self.reply(wrong_args("config")),
        }
    }

    /// CONFIG SET of `name value` pairs: only what synod can honour is
    /// accepted, all or nothing, with Redis' wording for a refusal (clients
    /// and the Redis suite match on it).
    ///
    /// - `lua-time-limit` / `busy-reply-threshold`: kept on this node and
    ///   reported by CONFIG GET. Synod never answers BUSY: a script is
    ///   stopped deterministically by its instruction budget on every
    ///   replica instead (see `crate::scripting`), so the value changes
    ///   nothing else.
    /// - `maxmemory`: the replicated limit, proposed through the log (as
    ///   the `--maxmemory` flag), so every replica enforces it from the
    ///   same point on; it is a change for the whole cluster.
    fn config_set(&mut self, pairs: &[Bytes]) -> Item {
        let mut lua_time_limit = None;
        let mut maxmemory = None;
        let mut keyspace_events = None;
        let mut tuning = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for pair in pairs.chunks(2) {
            let name = lower(&pair[0]);
            // As Redis 7, before looking at the value; an alias counts as
            // its parameter (`busy-reply-threshold` is `lua-time-limit`).
            let canonical = match name.as_str() {
                "busy-reply-threshold" => "lua-time-limit".to_string(),
                name => crate::tuning::canonical(name).map_or(name.to_string(), str::to_string),
            };
            if !seen.insert(canonical) {
                return self.reply(crate::tuning::set_error(&pair[0], "duplicate parameter"));
            }
            let parsed = match name.as_str() {
                "lua-time-limit" | "busy-reply-threshold" => crate::number::parse_i64(&pair[1])
                    .filter(|n| *n >= 0)
                    .map(|n| lua_time_limit = Some(n as u64)),
                "maxmemory" => parse_memory(&pair[1]).map(|n| maxmemory = Some(n)),
                // Node-local, as in Redis (see `crate::pubsub::keyspace_events`).
                "notify-keyspace-events" => {
                    match crate::pubsub::keyspace_events::flags_from_string(&pair[1]) {
                        Some(flags) => {
                            keyspace_events = Some(flags);
                            Some(())
                        }
                        None => {
                            return self.reply(Reply::error(format!(
                                "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'. (got '{}')",
                                String::from_utf8_lossy(&pair[1])
                            )))
                        }
                    }
                }
                // The encoding tuning parameters: no-ops (see `crate::tuning`).
                name if crate::tuning::is_tuning(name) => {
                    match crate::tuning::Tuning::check(name, &pair[1]) {
                        Ok(value) => {
                            tuning.push(value);
                            Some(())
                        }
                        Err(reason) => {
                            return self.reply(crate::tuning::set_error(&pair[0], &reason))
                        }
                    }
                }
                _ => {
                    return self.reply(crate::tuning::set_error(
                        &pair[0],
                        "CONFIG SET is not supported by synod",
                    ))
                }
            };
            if parsed.is_none() {
                return self.reply(Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - argument couldn't be parsed into an integer",
                    String::from_utf8_lossy(&pair[0])
                )));
            }
        }
        let local = ConfigLocal {
            lua_time_limit_ms: lua_time_limit,
            keyspace_events,
            tuning,
        };
        match maxmemory {
            // In a transaction, held until it ran (see `Conn::exec`).
            Some(bytes) if self.hold_config => {
                self.held_config = Some(local);
                Item::data(KvCommand::SetMaxMemory { bytes }, self.protocol)
            }
            // Alone, the node-local parameters are set at once, before
            // the log answers `maxmemory`: a CONFIG SET is all or nothing
            // only in what it accepts (as Redis, whose rollback is of a
            // failed apply, which these cannot have).
            Some(bytes) => {
                self.set_config_local(local);
                Item::data(KvCommand::SetMaxMemory { bytes }, self.protocol)
            }
            None => {
                self.set_config_local(local);
                self.reply(Reply::ok())
            }
        }
    }

    /// Sets the node-local parameters of a CONFIG SET.
    fn set_config_local(&self, local: ConfigLocal) {
        if let Some(ms) = local.lua_time_limit_ms {
            self.shared.lua_time_limit_ms.store(ms, Relaxed);
        }
        if let Some(flags) = local.keyspace_events {
            self.shared.cfg.pubsub.set_keyspace_events(flags);
        }
        if !local.tuning.is_empty() {
            self.shared.tuning.set(local.tuning);
        }
    }

    /// The INFO text. As in Redis 7.0: no argument or `default` gives the
    /// default sections, `all` and `everything` every section (commandstats
    /// too), and any mix of those and section names (any case) gives each
    /// section once.
    pub(crate) async fn info(&self, sections: &[String]) -> Reply {
        let asked: Vec<String> = sections.iter().map(|s| s.to_ascii_lowercase()).collect();
        let every = asked.iter().any(|s| s == "all" || s == "everything");
        let default = asked.is_empty() || asked.iter().any(|s| s == "default");
        let wants = |name: &str| {
            every || (default && name != "commandstats") || asked.iter().any(|s| s == name)
        };
        let shared = &self.shared;
        let status = shared.node.status();
        let mut text = String::new();
        if wants("server") {
            let _ = write!(
                text,
                "# Server\r\nredis_version:{}\r\nsynod_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                crate::REDIS_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                shared.cfg.listen.port(),
                shared.started.elapsed().as_secs(),
            );
        }
        if wants("clients") {
            let _ = write!(
                text,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
                shared.clients.load(Relaxed),
                shared.cfg.clients_max,
                // This node's only.
                shared.cfg.blocked_clients.blocked(),
            );
        }
        if wants("stats") {
            let mut stats = String::new();
            shared.cfg.counters.write_info(&mut stats);
            // The section's closing blank line goes after our own line.
            let body = stats.strip_suffix("\r\n").unwrap_or(&stats);
            let _ = write!(
                text,
                "{body}total_error_replies:{}\r\n\r\n",
                shared.command_stats.total_error_replies()
            );
        }
        if wants("replication") {
            let role = match status.role {
                RoleKind::Leader => "leader",
                RoleKind::Candidate => "candidate",
                RoleKind::Follower => "follower",
            };
            let connected = shared.node.peers_connected();
            let peers: Vec<String> = connected
                .iter()
                .map(|(id, up)| format!("{}={}", id.0, if *up { "up" } else { "down" }))
                .collect();
            let _ = write!(
                text,
                "# Replication\r\nrole:{role}\r\nnode_id:{}\r\nleader_id:{}\r\nmembers:{}\r\npeers:{}\r\nchosen_instance:{}\r\napplied_instance:{}\r\nmaster_repl_offset:{}\r\nsnapshot_instance:{}\r\nrequests_waiting:{}\r\ndiverged:{}\r\n",
                status.id.0,
                status.leader.map_or_else(|| "none".to_string(), |l| l.0.to_string()),
                status.members.iter().map(|m| m.0.to_string()).collect::<Vec<_>>().join(","),
                peers.join(","),
                status.chosen_end.0,
                status.applied_end.0,
                // Redis's replication offset; here the applied log's end.
                status.applied_end.0,
                status.snapshot_end.0,
                status.requests_waiting,
                u8::from(status.diverged),
            );
            crate::members::write_info(&shared.node, &mut text).await;
            text.push_str("\r\n");
        }
        if wants("stats") {
            let acl = shared.cfg.acl.stats();
            let _ = write!(
                text,
                "# Stats\r\nacl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:{}\r\nsynod_auth_throttled:{}\r\nsynod_auth_delay_ms:{}\r\n",
                acl.auth_failures,
                acl.denied_commands,
                acl.denied_keys,
                acl.denied_channels,
                acl.auth_throttled,
                acl.auth_delay_ms,
            );
            // This node's subscriptions (pub/sub is node-local).
            let (channels, patterns, shard_channels) = shared.cfg.pubsub.counts();
            let _ = write!(
                text,
                "pubsub_channels:{channels}\r\npubsub_patterns:{patterns}\r\npubsubshard_channels:{shard_channels}\r\nsynod_pubsub_pattern_matches_abandoned:{}\r\nsynod_pubsub_pattern_scans_cut_short:{}\r\n",
                shared.cfg.pubsub.matches_abandoned(),
                shared.cfg.pubsub.scans_cut_short(),
            );
            // Scripts this node dry-ran before proposing them.
            let runs = &shared.script_runs;
            let _ = write!(
                text,
                "synod_script_dry_runs:{}\r\nsynod_script_dry_runs_refused:{}\r\nsynod_script_dry_runs_killed:{}\r\nsynod_script_dry_runs_unjudged:{}\r\nsynod_script_dry_runs_timed_out:{}\r\n\r\n",
                runs.dry_runs.load(Relaxed),
                runs.refused.load(Relaxed),
                runs.killed.load(Relaxed),
                runs.unjudged.load(Relaxed),
                runs.timed_out.load(Relaxed),
            );
        }
        if wants("memory") {
            // The replicated dataset's accounted size and limit (issue 13,
            // `--maxmemory`): equal on every replica at the same point.
            let replies = execute(shared, None, vec![KvCommand::MemoryInfo]).await;
            if let Some(Reply::Array(figures)) = replies.first() {
                if let [Reply::Integer(used), Reply::Integer(max), Reply::Integer(keys), ..] =
                    figures.as_slice()
                {
                    let _ = write!(
                        text,
                        "# Memory\r\nused_memory_dataset:{used}\r\nused_memory_dataset_keys:{keys}\r\nmaxmemory:{max}\r\nmaxmemory_policy:noeviction\r\nnumber_of_cached_scripts:{scripts}\r\n\r\n",
                        scripts = shared.scripts.len(),
                    );
                }
            }
        }
        if wants("persistence") {
            // Every acknowledged write is in the write-ahead log, fsynced on
            // a majority, before its reply: the AOF of Redis's terms, always
            // on; snapshots (Redis' RDB) are taken by the node's policy, or
            // on demand by SAVE/BGSAVE. The rdb_* fields are this node's
            // snapshot state: changes are applied instances since the last
            // snapshot; a failed snapshot write stops the node, so the last
            // status a running node reports is always ok.
            let _ = write!(
                text,
                "# Persistence\r\nloading:{}\r\nasync_loading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\nrdb_bgsave_in_progress:{}\r\nrdb_changes_since_last_save:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\nsynod_wal:fsync-before-ack\r\nsynod_snapshot_instance:{}\r\nsynod_applied_instance:{}\r\n\r\n",
                u8::from(status.loading),
                u8::from(status.snapshot_in_progress),
                status.applied_end.0.saturating_sub(status.snapshot_end.0),
                status.snapshot_unix_ms / 1000,
                status.snapshot_end.0,
                status.applied_end.0,
            );
        }
        if wants("cpu") {
            text.push_str(&crate::info::cpu_section());
        }
        if wants("commandstats") {
            text.push_str(&shared.command_stats.section());
        }
        if wants("errorstats") {
            text.push_str(&shared.command_stats.error_section());
        }
        if wants("keyspace") {
            // Keys and keys with a time to live in the replicated state
            // (expired keys not yet purged included, as in Redis).
            let _ = write!(text, "# Keyspace\r\n");
            let replies = execute(shared, None, vec![KvCommand::MemoryInfo]).await;
            if let Some(Reply::Array(figures)) = replies.first() {
                if let [_, _, Reply::Integer(keys), Reply::Integer(expires)] = figures.as_slice() {
                    if *keys > 0 {
                        let _ = write!(text, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
                    }
                }
            }
            text.push_str("\r\n");
        }
        while text.ends_with("\r\n\r\n") {
            text.truncate(text.len() - 2);
        }
        Reply::Verbatim(Bytes::from(text))
    }
}

/// A row of the COMMAND table.
pub(crate) struct Row {
    name: String,
    arity: i64,
    flags: Vec<String>,
    first_key: i64,
    last_key: i64,
    step: i64,
    summary: String,
    group: String,
}

fn row(name: &str, arity: i64, flags: &[&str], summary: &str) -> Row {
    Row {
        name: name.into(),
        arity,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        first_key: 0,
        last_key: 0,
        step: 0,
        summary: summary.into(),
        group: "connection".into(),
    }
}

/// The name of every command `COMMAND` lists (the data commands of
/// [`command_table`] and the connection commands served here), sorted.
pub fn command_names() -> Vec<String> {
    let mut names: Vec<String> = full_table().into_iter().map(|row| row.name).collect();
    names.sort_unstable();
    names
}

/// The data commands plus the connection commands served here.
fn full_table() -> Vec<Row> {
    let mut rows: Vec<Row> = command_table()
        .into_iter()
        .map(|c| Row {
            name: c.name.to_string(),
            arity: i64::from(c.arity),
            flags: c.flags.iter().map(|f| f.to_string()).collect(),
            first_key: i64::from(c.first_key),
            last_key: i64::from(c.last_key),
            step: i64::from(c.step),
            summary: c.summary.to_string(),
            group: c.group.to_string(),
        })
        .collect();
    rows.extend([
        row(
            "ping",
            -1,
            &["fast", "stale"],
            "Returns the server's liveliness response.",
        ),
        row("echo", 2, &["fast"], "Returns the given string."),
        row(
            "time",
            1,
            &["loading", "stale", "fast"],
            "Returns the server time (this node's clock).",
        ),
        row(
            "hello",
            -1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Handshakes with the server.",
        ),
        row(
            "auth",
            -2,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Authenticates the connection.",
        ),
        row(
            "select",
            2,
            &["loading", "stale", "fast"],
            "Changes the selected database (only 0 exists).",
        ),
        row(
            "client",
            -2,
            &["loading", "stale"],
            "CLIENT ID, GETNAME, SETNAME, SETINFO, INFO, LIST.",
        ),
        row(
            "command",
            -1,
            &["loading", "stale"],
            "Returns detailed information about all commands.",
        ),
        row(
            "acl",
            -2,
            &["noscript", "loading", "stale"],
            "ACL SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, HELP: replicated users.",
        ),
        row(
            "config",
            -2,
            &["admin", "loading", "stale"],
            "CONFIG GET of a few settings.",
        ),
        row(
            "info",
            -1,
            &["loading", "stale"],
            "Returns information about the server and the cluster.",
        ),
        row(
            "synod.member",
            -2,
            &["admin", "noscript", "loading", "stale"],
            "SYNOD.MEMBER LIST, ADD, REMOVE, PROMOTE, JOININFO: the cluster's membership.",
        ),
        row(
            "synod.leader",
            -2,
            &["admin", "noscript", "loading", "stale"],
            "SYNOD.LEADER TRANSFER <id>: hands leadership over.",
        ),
        row(
            "multi",
            1,
            &["noscript", "loading", "stale", "fast"],
            "Starts a transaction.",
        ),
        row(
            "exec",
            1,
            &["noscript", "loading", "stale"],
            "Executes the transaction as one replicated command.",
        ),
        row(
            "watch",
            -2,
            &["noscript", "loading", "stale", "fast"],
            "Remembers the keys' versions: EXEC then runs nothing if one changed.",
        ),
        row(
            "unwatch",
            1,
            &["noscript", "loading", "stale", "fast"],
            "Forgets the WATCHed keys.",
        ),
        row(
            "discard",
            1,
            &["noscript", "loading", "stale", "fast"],
            "Discards a transaction.",
        ),
        row(
            "quit",
            -1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Closes the connection.",
        ),
        row(
            "reset",
            1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Resets the connection.",
        ),
    ]);
    rows.extend(
        crate::scripting::COMMAND_ROWS
            .iter()
            .map(|(name, arity, flags, summary)| Row {
                group: "scripting".into(),
                ..row(name, *arity, flags, summary)
            }),
    );
    rows.extend(
        crate::persistence::COMMAND_ROWS
            .iter()
            .map(|(name, arity, flags, summary)| Row {
                group: "server".into(),
                ..row(name, *arity, flags, summary)
            }),
    );
    rows.extend(
        crate::pubsub::COMMAND_ROWS
            .iter()
            .map(|(name, arity, flags, summary)| Row {
                group: "pubsub".into(),
                ..row(name, *arity, flags, summary)
            }),
    );
    rows
}

fn info_entry(c: &Row) -> Reply {
    Reply::Array(vec![
        bulk(c.name.clone()),
        Reply::Integer(c.arity),
        Reply::Set(c.flags.iter().map(|f| Reply::simple(f.clone())).collect()),
        Reply::Integer(c.first_key),
        Reply::Integer(c.last_key),
        Reply::Integer(c.step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// A memory size as CONFIG SET takes it: bytes, or a number with a `k`,
/// `kb`, `m`, `mb`, `g` or `gb` suffix (any case; `k` is 1000, `kb` 1024).
fn parse_memory(text: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(text).to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
    ];
    let (digits, unit) = units
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((text.as_str(), 1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod name_index_tests {
    use super::*;

    /// The one lookup per request finds, for every listed name in any
    /// case, what the three lookups it replaced found.
    #[test]
    fn the_name_index_agrees_with_the_searches_it_replaced() {
        for (at, name) in known_names().iter().enumerate() {
            for spelled in [name.clone(), name.to_ascii_uppercase()] {
                let (found, known) = command_name(spelled.as_bytes());
                assert_eq!((found.as_ref(), known), (name.as_str(), Some(at)));
                assert_eq!(
                    data_spec(known).map(|spec| spec.name),
                    crate::parse::spec_of(spelled.as_bytes()).map(|spec| spec.name),
                    "{spelled}"
                );
            }
        }
        // Every data command is listed, so an unlisted name is not one.
        for spec in crate::table::command_table() {
            let (_, known) = command_name(spec.name.as_bytes());
            assert_eq!(data_spec(known).map(|found| found.name), Some(spec.name));
        }
        for unlisted in ["nosuchcommand", "", "sét", "get\0", &"g".repeat(40)] {
            let (found, known) = command_name(unlisted.as_bytes());
            assert_eq!(
                (found.as_ref(), known),
                (unlisted.to_lowercase().as_str(), None)
            );
            assert!(crate::parse::spec_of(unlisted.as_bytes()).is_none());
        }
    }
}
