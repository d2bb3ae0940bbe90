//! Expiry driven by the log time (`ApplyContext::time_ms`), never a clock.

use crate::common;

use common::*;
use synod::StateMachine;
use synod_kv::{KvCommand, Store, StoreStats, PURGE_PER_APPLY_MAX};

#[test]
fn px_100_at_1000_is_visible_until_1100() {
    let mut h = Harness::new();
    assert_eq!(h.run(1000, "SET k v PX 100"), ok());
    assert_eq!(h.run(1099, "GET k"), bulk("v"));
    assert_eq!(h.run(1099, "PTTL k"), int(1));
    assert_eq!(h.query(1100, "GET k"), null());
    assert_eq!(h.query(1100, "EXISTS k"), int(0));
    assert_eq!(h.run(1100, "GET k"), null());
    assert_eq!(h.run(1100, "TTL k"), int(-2));
    assert_eq!(h.run(1100, "PTTL k"), int(-2));
    assert_eq!(
        h.store.stats(),
        StoreStats {
            keys: 0,
            expires: 0
        }
    );
}

#[test]
fn ttl_and_pttl_values() {
    let mut h = Harness::new();
    h.expect_all(
        10_000,
        &[
            ("TTL missing", int(-2)),
            ("PTTL missing", int(-2)),
            ("SET k v", ok()),
            ("TTL k", int(-1)),
            ("PTTL k", int(-1)),
            ("SET k v PX 10400", ok()),
            ("TTL k", int(10)),
            ("SET k v PX 10500", ok()),
            // TTL rounds to the nearest second, as Redis does.
            ("TTL k", int(11)),
            ("SET k v PX 499", ok()),
            ("TTL k", int(0)),
            ("PTTL k", int(499)),
        ],
    );
}

#[test]
fn expired_keys_are_invisible_to_every_command() {
    let mut h = Harness::new();
    h.run(0, "SET s v PX 10");
    h.run(0, "HSET h f v");
    h.run(0, "PEXPIRE h 10");
    h.run(0, "RPUSH l a b");
    h.run(0, "PEXPIRE l 10");
    // The purge at each apply removes expired keys; query answers at t=10
    // from the unpurged state and must already hide them.
    for line in [
        "GET s",
        "STRLEN s",
        "TYPE h",
        "HGET h f",
        "LLEN l",
        "EXISTS s h l",
    ] {
        let reply = h.query(10, line);
        assert!(
            matches!(reply, Reply::Null | Reply::Integer(0)) || reply == simple("none"),
            "{line}: {reply:?}"
        );
    }
    assert_eq!(h.query(10, "DBSIZE"), int(0));
    assert_eq!(h.query(10, "KEYS *"), array(vec![]));
    assert_eq!(h.query(10, "SCAN 0"), array(vec![bulk("0"), array(vec![])]));
    assert_eq!(h.query(10, "RANDOMKEY"), null());
    assert_eq!(h.query(9, "DBSIZE"), int(3));
    // Writes treat an expired key as absent: no WRONGTYPE, fresh values.
    h.expect_all(
        10,
        &[
            ("LPUSH h x", int(1)),
            ("TTL h", int(-1)),
            ("INCR s", int(1)),
            ("APPEND l z", int(1)),
            ("DBSIZE", int(3)),
        ],
    );
}

#[test]
fn expire_family() {
    let mut h = Harness::new();
    let now = 1_000_000u64;
    h.expect_all(
        now,
        &[
            ("EXPIRE missing 10", int(0)),
            ("SET k v", ok()),
            ("EXPIRE k 10", int(1)),
            ("PTTL k", int(10_000)),
            ("PEXPIRE k 1234", int(1)),
            ("PTTL k", int(1234)),
            ("EXPIREAT k 1005", int(1)),
            ("PTTL k", int(5000)),
            ("PEXPIREAT k 1000600", int(1)),
            ("PTTL k", int(600)),
            ("PERSIST k", int(1)),
            ("PERSIST k", int(0)),
            ("PERSIST missing", int(0)),
            ("TTL k", int(-1)),
            ("EXPIRE k abc", err(NOT_INTEGER)),
            ("EXPIRE k", arity("expire")),
            (
                "EXPIRE k 9223372036854776",
                err("ERR invalid expire time in 'expire' command"),
            ),
            (
                "PEXPIRE k 9223372036854775807",
                err("ERR invalid expire time in 'pexpire' command"),
            ),
            ("TTL k", int(-1)),
            // A time in the past deletes the key.
            ("EXPIRE k -1", int(1)),
            ("EXISTS k", int(0)),
            ("SET k v", ok()),
            ("EXPIRE k 0", int(1)),
            ("EXISTS k", int(0)),
            ("SET k v", ok()),
            ("PEXPIREAT k 1000000", int(1)),
            ("EXISTS k", int(0)),
            ("SET k v", ok()),
            ("EXPIREAT k 1", int(1)),
            ("EXISTS k", int(0)),
            ("SET k v", ok()),
            ("PEXPIREAT k -9223372036854775808", int(1)),
            ("EXISTS k", int(0)),
        ],
    );
}

#[test]
fn expire_conditions() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SET k v", ok()),
            ("EXPIRE k 100 XX", int(0)),
            ("EXPIRE k 100 GT", int(0)),
            ("EXPIRE k 100 NX", int(1)),
            ("EXPIRE k 200 NX", int(0)),
            ("TTL k", int(100)),
            ("EXPIRE k 50 GT", int(0)),
            ("EXPIRE k 100 GT", int(0)),
            ("EXPIRE k 150 GT", int(1)),
            ("EXPIRE k 200 LT", int(0)),
            ("EXPIRE k 120 LT", int(1)),
            ("EXPIRE k 130 XX", int(1)),
            ("EXPIRE k 140 xx gt", int(1)),
            ("TTL k", int(140)),
            ("PERSIST k", int(1)),
            // No expiry counts as infinite: LT always succeeds, XX LT not.
            ("EXPIRE k 100 XX LT", int(0)),
            ("EXPIRE k 100 LT", int(1)),
            ("TTL k", int(100)),
            (
                "EXPIRE k 10 NX XX",
                err("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                "EXPIRE k 10 NX GT",
                err("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                "EXPIRE k 10 GT LT",
                err("ERR GT and LT options at the same time are not compatible"),
            ),
            ("EXPIRE k 10 FOO", err("ERR Unsupported option FOO")),
            ("EXPIRE k abc FOO", err("ERR Unsupported option FOO")),
            ("EXPIRE missing 10 NX", int(0)),
        ],
    );
}

#[test]
fn purge_is_bounded_and_deterministic() {
    let mut store = Store::new();
    let keys = PURGE_PER_APPLY_MAX * 3;
    for index in 0..keys {
        let command = KvCommand::Set {
            key: format!("k{index}").into(),
            value: "v".into(),
            condition: synod_kv::SetCondition::Always,
            get: false,
            expiry: synod_kv::SetExpiry::After { ttl_ms: 10 },
        };
        store.apply(&command.encode(), &ctx(index as u64, 0));
    }
    assert_eq!(store.stats().keys as usize, keys);
    assert_eq!(store.stats().expires as usize, keys);
    // One apply after expiry purges at most PURGE_PER_APPLY_MAX keys...
    store.apply(&KvCommand::DbSize.encode(), &ctx(1000, 10));
    assert_eq!(store.stats().keys as usize, keys - PURGE_PER_APPLY_MAX);
    // ...but none of the rest is visible.
    let reply = store.query(&KvCommand::DbSize.encode(), &ctx(1000, 10));
    assert_eq!(synod_kv::decode_reply(&reply).unwrap(), int(0));
    store.apply(&KvCommand::DbSize.encode(), &ctx(1001, 10));
    store.apply(&KvCommand::DbSize.encode(), &ctx(1002, 10));
    assert_eq!(
        store.stats(),
        StoreStats {
            keys: 0,
            expires: 0
        }
    );
}

use synod_resp::Reply;
