//! # synod-kv: replicated key-value store with a Redis-protocol front end
//!
//! The state machine half: [`parse`] turns a client's argument list into a
//! typed [`KvCommand`] (with Redis' error text), [`KvCommand::encode`] puts
//! it in the replicated log, and [`Store`] (a `synod::StateMachine`) applies
//! it on every replica and returns the [`synod_resp::Reply`] encoded with
//! [`encode_reply`]. [`command_table`] describes every supported command
//! for `COMMAND`.
//!
//! Supported: strings (GET, SET with all options, SETNX, SETEX, PSETEX,
//! GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, INCR/DECR\[BY\], INCRBYFLOAT,
//! APPEND, STRLEN, GETRANGE, SETRANGE), keys (DEL, UNLINK, EXISTS, EXPIRE
//! family with NX/XX/GT/LT, TTL, PTTL, PERSIST, TYPE, KEYS, SCAN, DBSIZE,
//! FLUSHDB, FLUSHALL, RANDOMKEY, RENAME\[NX\], COPY, TOUCH, \[P\]EXPIRETIME,
//! OBJECT, SORT\[_RO\]), bits (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP), LCS,
//! a minimal hash (HSET, HGET, HDEL, HGETALL,
//! HLEN, HEXISTS, HINCRBY) and list (LPUSH, RPUSH, LPOP, RPOP, LRANGE, LLEN),
//! the issue-16 list and hash commands, sets (SADD, SREM, SMEMBERS,
//! SISMEMBER, SMISMEMBER, SCARD, SPOP, SRANDMEMBER, SMOVE,
//! SINTER/SUNION/SDIFF and their STORE forms, SINTERCARD, SSCAN), and
//! MULTI/EXEC transactions as [`KvCommand::Exec`], and pub/sub
//! (PUBLISH through the log, delivered by every node in log order: see
//! [`pubsub`]).

pub mod acl;
mod acl_auth;
pub mod acl_categories;
mod acl_conn;
mod acl_snapshot;
mod blocking;
mod client_limits;
mod codec_zset;
pub mod command;
mod command_codec;
pub mod command_zset;
mod conn;
mod decimal;
mod dump;
mod entry;
pub mod expiry_sweep;
pub mod glob;
mod info;
mod keyspace;
mod maxmemory;
mod members;
mod number;
mod ops;
mod parse;
mod parse_keys_bits;
mod parse_sets;
mod parse_zset;
mod persistence;
pub mod pubsub;
pub mod reply_codec;
#[cfg(test)]
mod review_keyspace_tests;
pub mod scripting;
mod server;
mod snapshot;
pub mod store;
pub mod table;
mod thin_bytes;
pub mod tls;
mod trie;
mod tuning;
mod value;
mod value_set;
pub mod watch;
mod wire;
mod zset;

pub use acl_auth::{Acl, Admission, AuthBudget, AuthStats};
pub use blocking::{BlockedClients, BlockingPop, PopStep};
pub use client_limits::{ClientCounter, ClientCounters, QUERY_BUFFER_FREE_BYTES};
pub use command::{
    AclCommand, AsUser, BitOperation, BitUnit, BlockingKind, ExpireCondition, ExpireForm,
    GetExExpiry, KvCommand, LcsOutput, ListEnd, ObjectField, RestoreCommand, RestoreExpiry,
    SetCondition, SetExpiry, SetOperation, SortCommand, TimeUnit,
};
pub use command_codec::COMMAND_FORMAT_VERSION;
pub use conn::command_names;
pub use dump::DUMP_FORMAT_VERSION;
pub use glob::glob_match;
pub use maxmemory::{read_maxmemory, set_maxmemory, MaxMemoryChange, MaxMemoryError};
pub use ops::{REPLY_BYTES_MAX, TRANSACTION_READ_WORK_MAX};
pub use parse::parse;
pub use persistence::{ShutdownListener, ShutdownSignal};
pub use pubsub::PubSub;
pub use reply_codec::{decode_reply, decode_reply_shared, encode_reply, REPLY_FORMAT_VERSION};
pub use server::{
    serve, serve_listeners, serve_on, ServerConfig, AUTH_TIMEOUT_DEFAULT,
    OUTPUT_BUFFER_BYTES_MAX_DEFAULT, QUERY_BUFFER_BYTES_MAX_DEFAULT,
    QUERY_BUFFER_TOTAL_BYTES_MAX_DEFAULT,
};
pub use snapshot::SNAPSHOT_FORMAT_VERSION;
pub use store::{LocalStore, Store, StoreStats, PURGE_PER_APPLY_MAX};
pub use table::{command_table, CommandSpec};

/// The Redis version reported to clients (HELLO, INFO; a script's
/// `redis.REDIS_VERSION` says the same): the command set and replies follow Redis 7.0.15,
/// whose own test suite is the specification (`shared/redis-tests`). It
/// said 7.2.0 before stop 62, which made clients expect 7.2's additions
/// (`ZRANK ... WITHSCORE`, ...) that are not built.
pub const REDIS_VERSION: &str = "7.0.15";
pub use wire::DecodeError;
