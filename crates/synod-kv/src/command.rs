//! The typed data commands the key-value state machine applies.
//!
//! A [`KvCommand`] is what the RESP front end builds from a client's request
//! (see [`crate::parse`]) and what travels through the replicated log (see
//! [`KvCommand::encode`]). Everything that depends on the command's place in
//! the log — above all the current time for relative expiries — is resolved
//! at apply time from the `ApplyContext`, never at parse time, so every
//! replica computes the same result.

use crate::watch::WatchedKey;
use bytes::Bytes;

pub use crate::command_zset::ZSetCommand;

/// Condition of a `SET`: `NX`, `XX` or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    /// Set unconditionally.
    Always,
    /// `NX`: only when the key does not exist.
    IfAbsent,
    /// `XX`: only when the key exists.
    IfPresent,
}

/// What a `SET` does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// No option: the key no longer expires.
    Clear,
    /// `KEEPTTL`: keep the key's current expiry.
    Keep,
    /// `EX`/`PX`: expire this many milliseconds (> 0) after the command's
    /// log time.
    After {
        /// Milliseconds, already converted from seconds for `EX`.
        ttl_ms: i64,
    },
    /// `EXAT`/`PXAT`: expire at this Unix time in milliseconds (> 0).
    At {
        /// Unix time in milliseconds.
        unix_ms: i64,
    },
}

/// What a `GETEX` does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetExExpiry {
    /// No option: leave the expiry alone.
    Unchanged,
    /// `PERSIST`: remove the expiry.
    Persist,
    /// `EX`/`PX`: expire this many milliseconds (> 0) after the log time.
    After {
        /// Milliseconds, already converted from seconds for `EX`.
        ttl_ms: i64,
    },
    /// `EXAT`/`PXAT`: expire at this Unix time in milliseconds (> 0).
    At {
        /// Unix time in milliseconds.
        unix_ms: i64,
    },
}

/// Unit a command takes or reports time in (`SETEX` vs `PSETEX`, `TTL` vs
/// `PTTL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Milliseconds,
}

/// Which of the four `EXPIRE` commands, which fixes how its time is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireForm {
    /// `EXPIRE key seconds`: relative, seconds.
    Expire,
    /// `PEXPIRE key ms`: relative, milliseconds.
    PExpire,
    /// `EXPIREAT key unix-seconds`: absolute.
    ExpireAt,
    /// `PEXPIREAT key unix-ms`: absolute.
    PExpireAt,
}

impl ExpireForm {
    /// The command's lowercase name, as Redis uses it in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ExpireForm::Expire => "expire",
            ExpireForm::PExpire => "pexpire",
            ExpireForm::ExpireAt => "expireat",
            ExpireForm::PExpireAt => "pexpireat",
        }
    }

    /// Whether the time counts from the command's log time.
    pub fn is_relative(self) -> bool {
        matches!(self, ExpireForm::Expire | ExpireForm::PExpire)
    }

    /// The unit the client gave the time in.
    pub fn unit(self) -> TimeUnit {
        match self {
            ExpireForm::Expire | ExpireForm::ExpireAt => TimeUnit::Seconds,
            ExpireForm::PExpire | ExpireForm::PExpireAt => TimeUnit::Milliseconds,
        }
    }
}

/// The `NX`/`XX`/`GT`/`LT` options of the `EXPIRE` family. Redis allows
/// `XX` together with `GT` or `LT`, so these are independent flags; every
/// one that is set must hold for the expiry to change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCondition {
    /// `NX`: only when the key has no expiry.
    pub if_no_expiry: bool,
    /// `XX`: only when the key has an expiry.
    pub if_has_expiry: bool,
    /// `GT`: only when the new expiry is later (no expiry counts as infinite).
    pub if_greater: bool,
    /// `LT`: only when the new expiry is earlier (no expiry counts as infinite).
    pub if_less: bool,
}

impl ExpireCondition {
    /// No option: always set the expiry.
    pub const ALWAYS: ExpireCondition = ExpireCondition {
        if_no_expiry: false,
        if_has_expiry: false,
        if_greater: false,
        if_less: false,
    };
}

/// Which end of a list `LPUSH`/`RPUSH`/`LPOP`/`RPOP` work on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEnd {
    /// The head (`L...`).
    Left,
    /// The tail (`R...`).
    Right,
}

/// An `ACL` subcommand that goes through the log: changes to users (so
/// every replica applies them in the same order) and reads of them (so they
/// are linearizable, and a client reads its own changes on any node).
/// `SetUser` rules never hold a cleartext password: the front end turns
/// `>password` into `#<sha256>` and `<password` into `!<sha256>` first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclCommand {
    /// `ACL SETUSER name rule...`.
    SetUser { name: Bytes, rules: Vec<Bytes> },
    /// `ACL DELUSER name...`.
    DelUser { names: Vec<Bytes> },
    /// `ACL GETUSER name`.
    GetUser { name: Bytes },
    /// `ACL LIST`.
    List,
    /// `ACL USERS`.
    Users,
}

/// The unit of a `BITCOUNT`/`BITPOS` range: bytes (the default) or bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitUnit {
    /// `BYTE`: the range indexes bytes.
    Byte,
    /// `BIT`: the range indexes bits.
    Bit,
}

/// The operation of a `BITOP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOperation {
    /// `AND`.
    And,
    /// `OR`.
    Or,
    /// `XOR`.
    Xor,
    /// `NOT` (exactly one source).
    Not,
}

/// What an `LCS` replies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcsOutput {
    /// No option: the common subsequence itself.
    String,
    /// `LEN`: its length.
    Len,
    /// `IDX`: the matching ranges, longest common subsequence length too.
    Ranges {
        /// `MINMATCHLEN`: leave out ranges shorter than this.
        min_match_len: u64,
        /// `WITHMATCHLEN`: give each range's length.
        with_match_len: bool,
    },
}

/// Which `OBJECT` subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectField {
    /// `OBJECT ENCODING`: the name Redis gives the value's representation.
    Encoding,
    /// `OBJECT REFCOUNT`.
    RefCount,
    /// `OBJECT IDLETIME`.
    IdleTime,
    /// `OBJECT FREQ`.
    Freq,
}

/// A `SORT` or `SORT_RO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortCommand {
    /// The list (or, in Redis, set or sorted set) to sort.
    pub key: Bytes,
    /// `BY pattern`: sort by the values of other keys (`NOSORT` when the
    /// pattern has no `*`).
    pub by: Option<Bytes>,
    /// `LIMIT offset count`.
    pub limit: Option<(i64, i64)>,
    /// `GET pattern` (in order; `#` is the element itself).
    pub gets: Vec<Bytes>,
    /// `DESC`.
    pub descending: bool,
    /// `ALPHA`: compare as byte strings instead of numbers.
    pub alpha: bool,
    /// `STORE destination` (never with `SORT_RO`).
    pub store: Option<Bytes>,
}

/// A `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`.
///
/// The node that receives it checks the payload (see `crate::dump`); one it
/// cannot read travels empty, so the log never carries unreadable bytes and
/// every replica still answers as Redis would: `BUSYKEY` when the key exists
/// (without `REPLACE`), else the payload error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreCommand {
    /// The key to create.
    pub key: Bytes,
    /// The key's expiry: `None` for the `0` that means none.
    pub expiry: Option<RestoreExpiry>,
    /// `REPLACE`: overwrite an existing key.
    pub replace: bool,
    /// The `DUMP` payload, already checked; empty when it was unreadable.
    pub payload: Bytes,
}

/// The time to live a `RESTORE` gives its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreExpiry {
    /// Milliseconds (> 0) after the command's log time.
    After {
        /// Milliseconds.
        ttl_ms: u64,
    },
    /// `ABSTTL`: at this Unix time in milliseconds (> 0; in the past means
    /// the key is not created).
    At {
        /// Unix time in milliseconds.
        unix_ms: u64,
    },
}

/// The combination `SINTER`, `SUNION`, `SDIFF` (and their `STORE` forms)
/// compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOperation {
    /// `SINTER`: members in every set.
    Inter,
    /// `SUNION`: members in any set.
    Union,
    /// `SDIFF`: members of the first set in none of the others.
    Diff,
}

impl SetOperation {
    /// The lowercase Redis name of the command (`store`: its `STORE` form).
    pub fn name(self, store: bool) -> &'static str {
        match (self, store) {
            (SetOperation::Inter, false) => "sinter",
            (SetOperation::Inter, true) => "sinterstore",
            (SetOperation::Union, false) => "sunion",
            (SetOperation::Union, true) => "sunionstore",
            (SetOperation::Diff, false) => "sdiff",
            (SetOperation::Diff, true) => "sdiffstore",
        }
    }
}

/// A client's command as it travels in the log with its ACL user.
///
/// Each node checks a client's commands against the user's rules as that
/// node holds them, but a node may lag behind the log: an `ACL SETUSER`
/// that another node acknowledged may not have reached it yet. Without a
/// check at apply, a user turned off (or whose rights were taken away)
/// could still write through a lagging node after the change was
/// acknowledged, which no single Redis server allows. So the front end
/// sends, with each command, the user's name and the stamp of the rules it
/// checked ([`crate::acl::User::rules_stamp`]), and every replica applies
/// the command only if the user, at that point of the log, exists, is on
/// and has rules with the same stamp; otherwise the command is refused
/// unrun (`NOPERM`), on every replica alike. A change to the user's rules
/// that the command raced with therefore refuses it even where the new
/// rules would allow it: the client runs it again, and its node, which has
/// applied the change by then, checks it against the new rules.
///
/// Linearizable: an ACL change acknowledged at instance `i` is in force for
/// every command applied after `i`, whichever node proposed it; a command
/// applied before `i` comes before the change in the log's order.
#[derive(Clone, Debug, PartialEq)]
pub struct AsUser {
    /// The user's name.
    pub user: Bytes,
    /// [`crate::acl::User::rules_stamp`] of the rules the command was
    /// checked against.
    pub stamp: u64,
    /// The command (never another `AsUser`).
    pub command: KvCommand,
}

/// One data command. Variants are named after the Redis command they carry;
/// commands that differ only in a parameter share a variant (`INCR`, `DECR`,
/// `INCRBY`, `DECRBY` are all [`KvCommand::IncrBy`]).
#[derive(Clone, Debug, PartialEq)]
pub enum KvCommand {
    /// `GET key`.
    Get { key: Bytes },
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`.
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        /// `GET`: reply with the old value.
        get: bool,
        expiry: SetExpiry,
    },
    /// `SETNX key value`.
    SetNx { key: Bytes, value: Bytes },
    /// `SETEX key seconds value` / `PSETEX key ms value`.
    SetEx {
        key: Bytes,
        value: Bytes,
        /// Which command it was (for error messages).
        unit: TimeUnit,
        /// Time to live in milliseconds (> 0).
        ttl_ms: i64,
    },
    /// `GETSET key value`.
    GetSet { key: Bytes, value: Bytes },
    /// `GETDEL key`.
    GetDel { key: Bytes },
    /// `GETEX key [EX|PX|EXAT|PXAT|PERSIST]`.
    GetEx { key: Bytes, expiry: GetExExpiry },
    /// `MGET key [key ...]`.
    MGet { keys: Vec<Bytes> },
    /// `MSET key value [key value ...]`.
    MSet { pairs: Vec<(Bytes, Bytes)> },
    /// `MSETNX key value [key value ...]`.
    MSetNx { pairs: Vec<(Bytes, Bytes)> },
    /// `DEL key [key ...]` and `UNLINK key [key ...]`.
    Del { keys: Vec<Bytes> },
    /// `EXISTS key [key ...]`.
    Exists { keys: Vec<Bytes> },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`.
    IncrBy { key: Bytes, delta: i64 },
    /// `INCRBYFLOAT key increment`.
    IncrByFloat { key: Bytes, delta: f64 },
    /// `APPEND key value`.
    Append { key: Bytes, value: Bytes },
    /// `STRLEN key`.
    StrLen { key: Bytes },
    /// `GETRANGE key start end`.
    GetRange { key: Bytes, start: i64, end: i64 },
    /// `SETRANGE key offset value`.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` with an optional condition.
    Expire {
        key: Bytes,
        form: ExpireForm,
        /// The time as given, converted to milliseconds (relative or absolute
        /// per `form`); may be negative.
        when_ms: i64,
        condition: ExpireCondition,
    },
    /// `TTL key` / `PTTL key`.
    Ttl { key: Bytes, unit: TimeUnit },
    /// `PERSIST key`.
    Persist { key: Bytes },
    /// `TYPE key`.
    Type { key: Bytes },
    /// `KEYS pattern`.
    Keys { pattern: Bytes },
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        /// Keys to examine (a hint, as in Redis), at least 1.
        count: u64,
        /// Only keys of this type (as `TYPE` names it, compared
        /// case-insensitively).
        type_name: Option<Bytes>,
    },
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHDB` and `FLUSHALL` (there is one database).
    FlushAll,
    /// `RANDOMKEY`. `nonce` is picked by the node that serves it (a
    /// per-node counter, see `server::parse_data`) and mixed with the
    /// command's place in the log to seed the pick, so consecutive reads at
    /// one point of the log differ, and every replica that evaluates the
    /// same command picks the same key.
    RandomKey { nonce: u64 },
    // Keys and strings of issue 16, grouped (see `ops::keys_more`,
    // `ops::bits`).
    /// `RENAME key newkey` / `RENAMENX key newkey`.
    Rename {
        key: Bytes,
        new_key: Bytes,
        /// `RENAMENX`: only when `new_key` does not exist.
        only_if_absent: bool,
    },
    /// `COPY source destination [DB 0] [REPLACE]`.
    Copy {
        source: Bytes,
        destination: Bytes,
        replace: bool,
    },
    /// `TOUCH key [key ...]`.
    Touch { keys: Vec<Bytes> },
    /// `EXPIRETIME key` / `PEXPIRETIME key`.
    ExpireTime { key: Bytes, unit: TimeUnit },
    /// `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`.
    Object { key: Bytes, field: ObjectField },
    /// `SORT` / `SORT_RO`.
    Sort(Box<SortCommand>),
    /// `DUMP key`: the key's value as a payload `RESTORE` reads (see
    /// `crate::dump`).
    Dump { key: Bytes },
    /// `RESTORE key ttl payload [REPLACE] [ABSTTL] ...`.
    Restore(Box<RestoreCommand>),
    /// `MEMORY USAGE key [SAMPLES count]`: the key's accounted bytes (see
    /// `crate::value`), or nil.
    MemoryUsage { key: Bytes },
    /// `SETBIT key offset value`.
    SetBit { key: Bytes, offset: u64, bit: bool },
    /// `GETBIT key offset`.
    GetBit { key: Bytes, offset: u64 },
    /// `BITCOUNT key [start end [BYTE|BIT]]`.
    BitCount {
        key: Bytes,
        range: Option<(i64, i64, BitUnit)>,
    },
    /// `BITPOS key bit [start [end [BYTE|BIT]]]`.
    BitPos {
        key: Bytes,
        bit: bool,
        start: Option<i64>,
        end: Option<i64>,
        unit: BitUnit,
    },
    /// `BITOP operation destkey key [key ...]`.
    BitOp {
        operation: BitOperation,
        destination: Bytes,
        keys: Vec<Bytes>,
    },
    /// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`.
    Lcs {
        key1: Bytes,
        key2: Bytes,
        output: LcsOutput,
    },
    /// `HSET key field value [field value ...]`.
    HSet {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `HGET key field`.
    HGet { key: Bytes, field: Bytes },
    /// `HDEL key field [field ...]`.
    HDel { key: Bytes, fields: Vec<Bytes> },
    /// `HGETALL key`.
    HGetAll { key: Bytes },
    /// `HLEN key`.
    HLen { key: Bytes },
    /// `HEXISTS key field`.
    HExists { key: Bytes, field: Bytes },
    /// `HINCRBY key field increment`.
    HIncrBy {
        key: Bytes,
        field: Bytes,
        delta: i64,
    },
    /// `LPUSH` / `RPUSH key element [element ...]`.
    Push {
        key: Bytes,
        end: ListEnd,
        values: Vec<Bytes>,
    },
    /// `LPOP` / `RPOP key [count]`.
    Pop {
        key: Bytes,
        end: ListEnd,
        count: Option<u64>,
    },
    /// `LRANGE key start stop`.
    LRange { key: Bytes, start: i64, stop: i64 },
    /// `LLEN key`.
    LLen { key: Bytes },
    // ---- Issue 16: the rest of the list and hash commands ----
    /// `LINDEX key index`.
    LIndex { key: Bytes, index: i64 },
    /// `LSET key index element`.
    LSet {
        key: Bytes,
        index: i64,
        value: Bytes,
    },
    /// `LINSERT key BEFORE|AFTER pivot element`.
    LInsert {
        key: Bytes,
        /// `BEFORE` (else `AFTER`) the first item equal to `pivot`.
        before: bool,
        pivot: Bytes,
        value: Bytes,
    },
    /// `LREM key count element`.
    LRem {
        key: Bytes,
        /// Positive: the first `count` matches from the head; negative: from
        /// the tail; 0: all.
        count: i64,
        value: Bytes,
    },
    /// `LTRIM key start stop`.
    LTrim { key: Bytes, start: i64, stop: i64 },
    /// `LPOS key element [RANK rank] [COUNT count] [MAXLEN len]`.
    LPos {
        key: Bytes,
        value: Bytes,
        /// Never 0 nor `i64::MIN` (the parser refuses them): 1 is the first
        /// match from the head, -1 the first from the tail.
        rank: i64,
        /// `COUNT` (0: all matches); `None`: reply with one index, not an
        /// array.
        count: Option<u64>,
        /// Items compared at most (0: all).
        maxlen: u64,
    },
    /// `LPUSHX` / `RPUSHX key element [element ...]`: push only onto an
    /// existing list.
    PushX {
        key: Bytes,
        end: ListEnd,
        values: Vec<Bytes>,
    },
    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT` and `RPOPLPUSH
    /// source destination` (`RIGHT LEFT`).
    LMove {
        source: Bytes,
        destination: Bytes,
        from: ListEnd,
        to: ListEnd,
    },
    /// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]`.
    LMPop {
        keys: Vec<Bytes>,
        end: ListEnd,
        /// At least 1.
        count: u64,
    },
    /// `HMSET key field value [field value ...]`.
    HMSet {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `HMGET key field [field ...]`.
    HMGet { key: Bytes, fields: Vec<Bytes> },
    /// `HSETNX key field value`.
    HSetNx {
        key: Bytes,
        field: Bytes,
        value: Bytes,
    },
    /// `HINCRBYFLOAT key field increment`. The increment stays the
    /// client's text (a finite float), added exactly in decimal (see
    /// `crate::decimal`).
    HIncrByFloat {
        key: Bytes,
        field: Bytes,
        increment: Bytes,
    },
    /// `HSTRLEN key field`.
    HStrLen { key: Bytes, field: Bytes },
    /// `HKEYS key`.
    HKeys { key: Bytes },
    /// `HVALS key`.
    HVals { key: Bytes },
    /// `HRANDFIELD key [count [WITHVALUES]]`. Its draw is seeded by its
    /// place in the log (see `ops::hashes::hrandfield`).
    HRandField {
        key: Bytes,
        /// `None`: one field (or nil); `Some(n)`: up to `n` distinct fields,
        /// or `-n` fields with repetition when negative.
        count: Option<i64>,
        with_values: bool,
    },
    /// `HSCAN key cursor [MATCH pattern] [COUNT count]`.
    HScan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        /// At least 1.
        count: u64,
    },
    // ---- Issue 16: sets (see `ops::sets`) ----
    /// `SADD key member [member ...]`.
    SAdd { key: Bytes, members: Vec<Bytes> },
    /// `SREM key member [member ...]`.
    SRem { key: Bytes, members: Vec<Bytes> },
    /// `SMEMBERS key`.
    SMembers { key: Bytes },
    /// `SISMEMBER key member`.
    SIsMember { key: Bytes, member: Bytes },
    /// `SMISMEMBER key member [member ...]`.
    SMIsMember { key: Bytes, members: Vec<Bytes> },
    /// `SCARD key`.
    SCard { key: Bytes },
    /// `SPOP key [count]`. Its draw is seeded by its place in the log (see
    /// `ops::random`).
    SPop {
        key: Bytes,
        /// `None`: one member (or nil); `Some(n)`: up to `n` members.
        count: Option<u64>,
    },
    /// `SRANDMEMBER key [count]`, seeded like `HRANDFIELD`.
    SRandMember {
        key: Bytes,
        /// `None`: one member (or nil); `Some(n)`: up to `n` distinct
        /// members, or `-n` members with repetition when negative (never
        /// `i64::MIN`: the parser refuses it).
        count: Option<i64>,
    },
    /// `SMOVE source destination member`.
    SMove {
        source: Bytes,
        destination: Bytes,
        member: Bytes,
    },
    /// `SINTER`, `SUNION`, `SDIFF key [key ...]` and their `STORE
    /// destination key [key ...]` forms.
    SetCombine {
        operation: SetOperation,
        keys: Vec<Bytes>,
        /// The `STORE` form's destination.
        store: Option<Bytes>,
    },
    /// `SINTERCARD numkeys key [key ...] [LIMIT limit]`.
    SInterCard {
        keys: Vec<Bytes>,
        /// 0: no limit.
        limit: u64,
    },
    /// `SSCAN key cursor [MATCH pattern] [COUNT count]`, with `HSCAN`'s
    /// cursors.
    SScan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        /// At least 1.
        count: u64,
    },
    /// Sets the replicated `maxmemory` limit in bytes (0: none). Not a
    /// client command: the server proposes it at start from its
    /// `--maxmemory` flag (and `CONFIG SET maxmemory`), so the limit every
    /// replica enforces is a point of the log, never a node-local setting,
    /// and replicas whose flags differ still agree (the latest proposal
    /// wins, for all of them at the same point).
    SetMaxMemory { bytes: u64 },
    /// `INFO memory`'s and `INFO keyspace`'s figures: `[used_memory_dataset,
    /// maxmemory, keys, keys with a time to live]` as integers, from the
    /// replicated state.
    MemoryInfo,
    /// The expiry sweep: removes keys whose time to live passed, up to
    /// `crate::store::SWEEP_KEYS_MAX`, at the log time of its apply. Not a
    /// client command: the leader's server proposes it when the store
    /// holds a key past its expiry (Redis' active expiry, as a point of the
    /// log), so expired keys go, and their `expired` events fire, without
    /// waiting for a write.
    ExpireSweep,
    /// `MULTI ... EXEC`: the queued commands, applied atomically in order.
    /// The front end builds it; a transaction never nests.
    Exec(Vec<KvCommand>),
    /// A client's command (a transaction or batch included) with the ACL
    /// user its node checked it for: applied only while that user's rules
    /// are the ones it was checked against (see [`AsUser`]). Only at the
    /// top of a log command; never nested.
    AsUser(Box<AsUser>),
    /// An `ACL` command on the replicated users.
    Acl(AclCommand),
    /// A sorted-set command (issue 16; see [`crate::command_zset`]).
    /// Boxed, as [`KvCommand::Eval`]: its largest forms would make every
    /// command 176 bytes, moved by value from the parser to the encoder
    /// (see `an_unboxed_command_stays_small`).
    ZSet(Box<ZSetCommand>),
    /// `WATCH`: a read of what the replicated state says about each key
    /// now (see [`crate::watch`]), answered with one
    /// `[live, stamp instance, stamp sequence]` array of integers per key.
    Watch { keys: Vec<Bytes> },
    /// The first command of a transaction `EXEC` sends after `WATCH`: when
    /// any of these keys changed since it was read, the whole transaction
    /// answers nil and nothing in it runs (checked by the store, at the
    /// transaction's point of the log). Never alone, never elsewhere.
    WatchCheck { watched: Vec<WatchedKey> },
    /// `PUBLISH channel message` (`SPUBLISH` when `shard`): changes nothing
    /// replicated; every replica that applies it delivers the message to
    /// its own node's subscribers (see `crate::pubsub`). `origin` and
    /// `ticket` are stamped by the proposing node so that its own apply can
    /// count its receivers for the reply; 0 when unstamped.
    Publish {
        channel: Bytes,
        message: Bytes,
        shard: bool,
        origin: u64,
        ticket: u64,
    },
    /// `EVAL` / `EVAL_RO` (and `EVALSHA`, whose proposer put the script's
    /// text in place of its digest): run on every replica at apply time
    /// (see `crate::scripting`).
    Eval(Box<crate::scripting::EvalCommand>),
    /// A blocking pop (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`,
    /// `BZPOPMIN`, `BZPOPMAX`, `BZMPOP`) as one replicated *try*: `pop` is
    /// the non-blocking form (`LMPOP`, `LMOVE` or `ZMPOP`) and answers nil
    /// when every key is empty; the reply is reshaped to `kind`'s. Waiting
    /// and the timeout live in the client's node only (see
    /// `crate::blocking`); the log never holds a timeout.
    Blocking {
        kind: BlockingKind,
        pop: Box<KvCommand>,
        /// A try of a client that already blocked: sources holding another
        /// type are passed over (Redis leaves a blocked client waiting on
        /// them; only its first try answers `WRONGTYPE`).
        blocked: bool,
    },
}

/// Which blocking command a [`KvCommand::Blocking`] answers as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingKind {
    /// `BLPOP key [key ...] timeout`: `LMPOP ... LEFT` answered `[key, element]`.
    BLPop,
    /// `BRPOP`: as `BLPOP`, from the tail.
    BRPop,
    /// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`: `LMOVE`.
    BLMove,
    /// `BRPOPLPUSH source destination timeout`: `LMOVE ... RIGHT LEFT`.
    BRPopLPush,
    /// `BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]`.
    BLMPop,
    /// `BZPOPMIN key [key ...] timeout`: `ZMPOP ... MIN` answered
    /// `[key, member, score]`.
    BZPopMin,
    /// `BZPOPMAX`: as `BZPOPMIN`, the highest score.
    BZPopMax,
    /// `BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]`.
    BZMPop,
}

impl BlockingKind {
    /// Every kind, in tag order (the codec's byte is the index).
    pub const ALL: [BlockingKind; 8] = [
        BlockingKind::BLPop,
        BlockingKind::BRPop,
        BlockingKind::BLMove,
        BlockingKind::BRPopLPush,
        BlockingKind::BLMPop,
        BlockingKind::BZPopMin,
        BlockingKind::BZPopMax,
        BlockingKind::BZMPop,
    ];

    /// The lowercase Redis name.
    pub fn name(self) -> &'static str {
        match self {
            BlockingKind::BLPop => "blpop",
            BlockingKind::BRPop => "brpop",
            BlockingKind::BLMove => "blmove",
            BlockingKind::BRPopLPush => "brpoplpush",
            BlockingKind::BLMPop => "blmpop",
            BlockingKind::BZPopMin => "bzpopmin",
            BlockingKind::BZPopMax => "bzpopmax",
            BlockingKind::BZMPop => "bzmpop",
        }
    }

    /// The nil this kind answers when nothing was popped.
    pub fn nil(self) -> synod_resp::Reply {
        match self {
            BlockingKind::BLMove | BlockingKind::BRPopLPush => synod_resp::Reply::Null,
            _ => synod_resp::Reply::NullArray,
        }
    }

    /// Whether `pop` is the non-blocking form this kind wraps.
    pub fn wraps(self, pop: &KvCommand) -> bool {
        match self {
            BlockingKind::BLPop | BlockingKind::BRPop | BlockingKind::BLMPop => {
                matches!(pop, KvCommand::LMPop { .. })
            }
            BlockingKind::BLMove | BlockingKind::BRPopLPush => {
                matches!(pop, KvCommand::LMove { .. })
            }
            BlockingKind::BZPopMin | BlockingKind::BZPopMax | BlockingKind::BZMPop => matches!(
                pop,
                KvCommand::ZSet(zset) if matches!(**zset, crate::command_zset::ZSetCommand::MPop { .. })
            ),
        }
    }
}

impl KvCommand {
    /// True when the command changes nothing, so it may be answered by
    /// `StateMachine::query` instead of going through the log.
    pub fn is_read(&self) -> bool {
        match self {
            KvCommand::Get { .. }
            | KvCommand::MGet { .. }
            | KvCommand::Exists { .. }
            | KvCommand::StrLen { .. }
            | KvCommand::GetRange { .. }
            | KvCommand::Ttl { .. }
            | KvCommand::Type { .. }
            | KvCommand::Keys { .. }
            | KvCommand::Scan { .. }
            | KvCommand::DbSize
            | KvCommand::RandomKey { .. }
            | KvCommand::Touch { .. }
            | KvCommand::ExpireTime { .. }
            | KvCommand::Object { .. }
            | KvCommand::GetBit { .. }
            | KvCommand::BitCount { .. }
            | KvCommand::BitPos { .. }
            | KvCommand::Lcs { .. }
            | KvCommand::HGet { .. }
            | KvCommand::HGetAll { .. }
            | KvCommand::HLen { .. }
            | KvCommand::HExists { .. }
            | KvCommand::LRange { .. }
            | KvCommand::LLen { .. }
            | KvCommand::MemoryInfo => true,
            KvCommand::LIndex { .. }
            | KvCommand::LPos { .. }
            | KvCommand::HMGet { .. }
            | KvCommand::HStrLen { .. }
            | KvCommand::HKeys { .. }
            | KvCommand::HVals { .. }
            | KvCommand::HRandField { .. }
            | KvCommand::HScan { .. } => true,
            KvCommand::SMembers { .. }
            | KvCommand::SIsMember { .. }
            | KvCommand::SMIsMember { .. }
            | KvCommand::SCard { .. }
            | KvCommand::SRandMember { .. }
            | KvCommand::SInterCard { .. }
            | KvCommand::SScan { .. } => true,
            KvCommand::SAdd { .. }
            | KvCommand::SRem { .. }
            | KvCommand::SPop { .. }
            | KvCommand::SMove { .. } => false,
            KvCommand::SetCombine { store, .. } => store.is_none(),
            KvCommand::LSet { .. }
            | KvCommand::LInsert { .. }
            | KvCommand::LRem { .. }
            | KvCommand::LTrim { .. }
            | KvCommand::PushX { .. }
            | KvCommand::LMove { .. }
            | KvCommand::LMPop { .. }
            | KvCommand::HMSet { .. }
            | KvCommand::HSetNx { .. }
            | KvCommand::HIncrByFloat { .. } => false,
            KvCommand::Acl(acl) => matches!(
                acl,
                AclCommand::GetUser { .. } | AclCommand::List | AclCommand::Users
            ),
            KvCommand::Set { .. }
            | KvCommand::SetNx { .. }
            | KvCommand::SetEx { .. }
            | KvCommand::GetSet { .. }
            | KvCommand::GetDel { .. }
            | KvCommand::GetEx { .. }
            | KvCommand::MSet { .. }
            | KvCommand::MSetNx { .. }
            | KvCommand::Del { .. }
            | KvCommand::IncrBy { .. }
            | KvCommand::IncrByFloat { .. }
            | KvCommand::Append { .. }
            | KvCommand::SetRange { .. }
            | KvCommand::Expire { .. }
            | KvCommand::Persist { .. }
            | KvCommand::FlushAll
            | KvCommand::Rename { .. }
            | KvCommand::Copy { .. }
            | KvCommand::Restore(_)
            | KvCommand::SetBit { .. }
            | KvCommand::BitOp { .. }
            | KvCommand::HSet { .. }
            | KvCommand::HDel { .. }
            | KvCommand::HIncrBy { .. }
            | KvCommand::Push { .. }
            | KvCommand::Pop { .. }
            | KvCommand::SetMaxMemory { .. }
            | KvCommand::ExpireSweep
            | KvCommand::Publish { .. } => false,
            // Through the log, even read-only: see `crate::scripting`.
            KvCommand::Eval(_) => false,
            KvCommand::Sort(sort) => sort.store.is_none(),
            KvCommand::ZSet(zset) => zset.is_read(),
            KvCommand::Exec(commands) => commands.iter().all(KvCommand::is_read),
            KvCommand::AsUser(run) => run.command.is_read(),
            KvCommand::Watch { .. } | KvCommand::WatchCheck { .. } => true,
            KvCommand::Blocking { .. } => false,
            KvCommand::Dump { .. } | KvCommand::MemoryUsage { .. } => true,
        }
    }

    /// The lowercase Redis name of the command (for one that several
    /// commands share, the most general: `incrby`, `del`, `flushall`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            KvCommand::Get { .. } => "get",
            KvCommand::Set { .. } => "set",
            KvCommand::SetNx { .. } => "setnx",
            KvCommand::SetEx { unit, .. } => setex_name(*unit),
            KvCommand::GetSet { .. } => "getset",
            KvCommand::GetDel { .. } => "getdel",
            KvCommand::GetEx { .. } => "getex",
            KvCommand::MGet { .. } => "mget",
            KvCommand::MSet { .. } => "mset",
            KvCommand::MSetNx { .. } => "msetnx",
            KvCommand::Del { .. } => "del",
            KvCommand::Exists { .. } => "exists",
            KvCommand::IncrBy { .. } => "incrby",
            KvCommand::IncrByFloat { .. } => "incrbyfloat",
            KvCommand::Append { .. } => "append",
            KvCommand::StrLen { .. } => "strlen",
            KvCommand::GetRange { .. } => "getrange",
            KvCommand::SetRange { .. } => "setrange",
            KvCommand::Expire { form, .. } => form.name(),
            KvCommand::Ttl { unit, .. } => match unit {
                TimeUnit::Seconds => "ttl",
                TimeUnit::Milliseconds => "pttl",
            },
            KvCommand::Persist { .. } => "persist",
            KvCommand::Type { .. } => "type",
            KvCommand::Keys { .. } => "keys",
            KvCommand::Scan { .. } => "scan",
            KvCommand::DbSize => "dbsize",
            KvCommand::FlushAll => "flushall",
            KvCommand::RandomKey { .. } => "randomkey",
            KvCommand::Rename { only_if_absent, .. } => {
                if *only_if_absent {
                    "renamenx"
                } else {
                    "rename"
                }
            }
            KvCommand::Copy { .. } => "copy",
            KvCommand::Touch { .. } => "touch",
            KvCommand::ExpireTime { unit, .. } => match unit {
                TimeUnit::Seconds => "expiretime",
                TimeUnit::Milliseconds => "pexpiretime",
            },
            KvCommand::Object { .. } => "object",
            KvCommand::Sort(_) => "sort",
            KvCommand::Dump { .. } => "dump",
            KvCommand::Restore(_) => "restore",
            KvCommand::MemoryUsage { .. } => "memory",
            KvCommand::SetBit { .. } => "setbit",
            KvCommand::GetBit { .. } => "getbit",
            KvCommand::BitCount { .. } => "bitcount",
            KvCommand::BitPos { .. } => "bitpos",
            KvCommand::BitOp { .. } => "bitop",
            KvCommand::Lcs { .. } => "lcs",
            KvCommand::HSet { .. } => "hset",
            KvCommand::HGet { .. } => "hget",
            KvCommand::HDel { .. } => "hdel",
            KvCommand::HGetAll { .. } => "hgetall",
            KvCommand::HLen { .. } => "hlen",
            KvCommand::HExists { .. } => "hexists",
            KvCommand::HIncrBy { .. } => "hincrby",
            KvCommand::Push { end, .. } => match end {
                ListEnd::Left => "lpush",
                ListEnd::Right => "rpush",
            },
            KvCommand::Pop { end, .. } => match end {
                ListEnd::Left => "lpop",
                ListEnd::Right => "rpop",
            },
            KvCommand::LRange { .. } => "lrange",
            KvCommand::LLen { .. } => "llen",
            KvCommand::LIndex { .. } => "lindex",
            KvCommand::LSet { .. } => "lset",
            KvCommand::LInsert { .. } => "linsert",
            KvCommand::LRem { .. } => "lrem",
            KvCommand::LTrim { .. } => "ltrim",
            KvCommand::LPos { .. } => "lpos",
            KvCommand::PushX { end, .. } => match end {
                ListEnd::Left => "lpushx",
                ListEnd::Right => "rpushx",
            },
            KvCommand::LMove { .. } => "lmove",
            KvCommand::LMPop { .. } => "lmpop",
            KvCommand::HMSet { .. } => "hmset",
            KvCommand::HMGet { .. } => "hmget",
            KvCommand::HSetNx { .. } => "hsetnx",
            KvCommand::HIncrByFloat { .. } => "hincrbyfloat",
            KvCommand::HStrLen { .. } => "hstrlen",
            KvCommand::HKeys { .. } => "hkeys",
            KvCommand::HVals { .. } => "hvals",
            KvCommand::HRandField { .. } => "hrandfield",
            KvCommand::HScan { .. } => "hscan",
            KvCommand::SAdd { .. } => "sadd",
            KvCommand::SRem { .. } => "srem",
            KvCommand::SMembers { .. } => "smembers",
            KvCommand::SIsMember { .. } => "sismember",
            KvCommand::SMIsMember { .. } => "smismember",
            KvCommand::SCard { .. } => "scard",
            KvCommand::SPop { .. } => "spop",
            KvCommand::SRandMember { .. } => "srandmember",
            KvCommand::SMove { .. } => "smove",
            KvCommand::SetCombine {
                operation, store, ..
            } => operation.name(store.is_some()),
            KvCommand::SInterCard { .. } => "sintercard",
            KvCommand::SScan { .. } => "sscan",
            KvCommand::SetMaxMemory { .. } => "config",
            KvCommand::MemoryInfo => "info",
            KvCommand::ExpireSweep => "expire-sweep",
            KvCommand::Exec(_) => "exec",
            KvCommand::AsUser(run) => run.command.name(),
            KvCommand::Acl(_) => "acl",
            KvCommand::ZSet(zset) => zset.name(),
            KvCommand::Watch { .. } | KvCommand::WatchCheck { .. } => "watch",
            KvCommand::Publish { shard: false, .. } => "publish",
            KvCommand::Publish { shard: true, .. } => "spublish",
            KvCommand::Blocking { kind, .. } => kind.name(),
            KvCommand::Eval(eval) if eval.read_only => "eval_ro",
            KvCommand::Eval(_) => "eval",
        }
    }

    /// Whether the command is, or a transaction holding, an ACL command:
    /// those are applied to the users, not the keyspace.
    pub fn involves_acl(&self) -> bool {
        match self {
            KvCommand::Acl(_) => true,
            KvCommand::Exec(commands) => commands.iter().any(KvCommand::involves_acl),
            KvCommand::AsUser(run) => run.command.involves_acl(),
            _ => false,
        }
    }

    /// The key of the most common single-key commands, which
    /// [`crate::Store`] asks the CPU to fetch ahead of applying them (a
    /// hint only: `None` for every other command costs nothing but speed).
    pub(crate) fn hot_key(&self) -> Option<&[u8]> {
        match self {
            KvCommand::Get { key }
            | KvCommand::Set { key, .. }
            | KvCommand::SetNx { key, .. }
            | KvCommand::SetEx { key, .. }
            | KvCommand::GetSet { key, .. }
            | KvCommand::GetDel { key }
            | KvCommand::IncrBy { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::HSet { key, .. }
            | KvCommand::HGet { key, .. }
            | KvCommand::HIncrBy { key, .. }
            | KvCommand::Push { key, .. }
            | KvCommand::Pop { key, .. } => Some(key),
            KvCommand::AsUser(run) => run.command.hot_key(),
            _ => None,
        }
    }

    /// The keys the command reads or writes (what ACL `~patterns` are
    /// checked against). KEYS and SCAN take a pattern, not keys, and
    /// FLUSHALL none, as in Redis.
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            KvCommand::Get { key }
            | KvCommand::Set { key, .. }
            | KvCommand::SetNx { key, .. }
            | KvCommand::SetEx { key, .. }
            | KvCommand::GetSet { key, .. }
            | KvCommand::GetDel { key }
            | KvCommand::GetEx { key, .. }
            | KvCommand::IncrBy { key, .. }
            | KvCommand::IncrByFloat { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::StrLen { key }
            | KvCommand::GetRange { key, .. }
            | KvCommand::SetRange { key, .. }
            | KvCommand::Expire { key, .. }
            | KvCommand::Ttl { key, .. }
            | KvCommand::Persist { key }
            | KvCommand::Type { key }
            | KvCommand::HSet { key, .. }
            | KvCommand::HGet { key, .. }
            | KvCommand::HDel { key, .. }
            | KvCommand::HGetAll { key }
            | KvCommand::HLen { key }
            | KvCommand::HExists { key, .. }
            | KvCommand::HIncrBy { key, .. }
            | KvCommand::Push { key, .. }
            | KvCommand::Pop { key, .. }
            | KvCommand::LRange { key, .. }
            | KvCommand::LLen { key }
            | KvCommand::ExpireTime { key, .. }
            | KvCommand::Object { key, .. }
            | KvCommand::SetBit { key, .. }
            | KvCommand::GetBit { key, .. }
            | KvCommand::BitCount { key, .. }
            | KvCommand::BitPos { key, .. }
            | KvCommand::Dump { key }
            | KvCommand::MemoryUsage { key } => vec![key],
            KvCommand::Restore(restore) => vec![&restore.key],
            KvCommand::Rename { key, new_key, .. } => vec![key, new_key],
            KvCommand::LIndex { key, .. }
            | KvCommand::LSet { key, .. }
            | KvCommand::LInsert { key, .. }
            | KvCommand::LRem { key, .. }
            | KvCommand::LTrim { key, .. }
            | KvCommand::LPos { key, .. }
            | KvCommand::PushX { key, .. }
            | KvCommand::HMSet { key, .. }
            | KvCommand::HMGet { key, .. }
            | KvCommand::HSetNx { key, .. }
            | KvCommand::HIncrByFloat { key, .. }
            | KvCommand::HStrLen { key, .. }
            | KvCommand::HKeys { key }
            | KvCommand::HVals { key }
            | KvCommand::HRandField { key, .. }
            | KvCommand::HScan { key, .. } => vec![key],
            KvCommand::SAdd { key, .. }
            | KvCommand::SRem { key, .. }
            | KvCommand::SMembers { key }
            | KvCommand::SIsMember { key, .. }
            | KvCommand::SMIsMember { key, .. }
            | KvCommand::SCard { key }
            | KvCommand::SPop { key, .. }
            | KvCommand::SRandMember { key, .. }
            | KvCommand::SScan { key, .. } => vec![key],
            KvCommand::SMove {
                source,
                destination,
                ..
            } => vec![source, destination],
            // The destination first, as Redis' key specs list it.
            KvCommand::SetCombine { keys, store, .. } => store.iter().chain(keys).collect(),
            KvCommand::SInterCard { keys, .. } => keys.iter().collect(),
            KvCommand::Copy {
                source,
                destination,
                ..
            }
            | KvCommand::LMove {
                source,
                destination,
                ..
            } => vec![source, destination],
            KvCommand::Touch { keys } => keys.iter().collect(),
            KvCommand::Lcs { key1, key2, .. } => vec![key1, key2],
            KvCommand::BitOp {
                destination, keys, ..
            } => std::iter::once(destination).chain(keys).collect(),
            // BY and GET patterns name keys only once expanded; Redis'
            // key specs cover the sorted key and the STORE destination.
            KvCommand::Sort(sort) => std::iter::once(&sort.key).chain(&sort.store).collect(),
            KvCommand::LMPop { keys, .. } => keys.iter().collect(),
            KvCommand::MGet { keys } | KvCommand::Del { keys } | KvCommand::Exists { keys } => {
                keys.iter().collect()
            }
            KvCommand::MSet { pairs } | KvCommand::MSetNx { pairs } => {
                pairs.iter().map(|(key, _)| key).collect()
            }
            KvCommand::Keys { .. }
            | KvCommand::Scan { .. }
            | KvCommand::DbSize
            | KvCommand::FlushAll
            | KvCommand::RandomKey { .. }
            | KvCommand::SetMaxMemory { .. }
            | KvCommand::MemoryInfo
            | KvCommand::ExpireSweep
            | KvCommand::Acl(_)
            | KvCommand::Publish { .. } => Vec::new(),
            KvCommand::Exec(commands) => commands.iter().flat_map(KvCommand::keys).collect(),
            KvCommand::AsUser(run) => run.command.keys(),
            KvCommand::ZSet(zset) => zset.keys(),
            KvCommand::Watch { keys } => keys.iter().collect(),
            KvCommand::WatchCheck { watched } => watched.iter().map(|w| &w.key).collect(),
            KvCommand::Blocking { pop, .. } => pop.keys(),
            KvCommand::Eval(eval) => eval.keys.iter().collect(),
        }
    }
}

/// `setex` or `psetex`.
pub(crate) fn setex_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Seconds => "setex",
        TimeUnit::Milliseconds => "psetex",
    }
}

#[cfg(test)]
mod size_tests {
    /// Commands are moved by value from the parser through the batch to
    /// the encoder (and `conn::Item`s around them): up to 128 bytes a move
    /// is a few vector stores, above it a call to `memmove`, which was 5%
    /// of a leader's CPU under pipelined SETs at 176 bytes. A variant that
    /// would grow the enum goes in a box, as `ZSet` and `Eval` do.
    #[test]
    fn an_unboxed_command_stays_small() {
        let size = std::mem::size_of::<super::KvCommand>();
        assert!(size <= 104, "KvCommand is {size} bytes");
        let item = std::mem::size_of::<crate::conn::Item>();
        assert!(item <= 128, "conn::Item is {item} bytes");
    }
}
