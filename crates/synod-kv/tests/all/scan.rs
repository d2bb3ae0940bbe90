//! SCAN: cursor protocol, options, and Redis' guarantee that a key present
//! for the whole scan is returned at least once, whatever else changes.

use crate::common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use synod_resp::Reply;

/// One SCAN call: (next cursor, keys).
fn scan_once(h: &mut Harness, now: u64, line: &str) -> (u64, Vec<Bytes>) {
    let Reply::Array(parts) = h.run(now, line) else {
        panic!("SCAN reply is an array")
    };
    let [Reply::Bulk(cursor), Reply::Array(keys)] = &parts[..] else {
        panic!("SCAN reply is [cursor, keys]: {parts:?}")
    };
    let cursor = std::str::from_utf8(cursor).unwrap().parse().unwrap();
    let keys = keys
        .iter()
        .map(|key| match key {
            Reply::Bulk(key) => key.clone(),
            other => panic!("key is a bulk string: {other:?}"),
        })
        .collect();
    (cursor, keys)
}

fn full_scan(h: &mut Harness, options: &str) -> Vec<Bytes> {
    let mut cursor = 0;
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let (next, keys) = scan_once(h, 0, &format!("SCAN {cursor} {options}"));
        all.extend(keys);
        cursor = next;
        if cursor == 0 {
            return all;
        }
    }
    panic!("scan did not finish");
}

#[test]
fn full_scan_returns_every_key_once_when_nothing_changes() {
    let mut h = Harness::new();
    for index in 0..250 {
        h.run(0, &format!("SET key:{index} v"));
    }
    let keys = full_scan(&mut h, "COUNT 7");
    assert_eq!(keys.len(), 250);
    let unique: BTreeSet<_> = keys.into_iter().collect();
    assert_eq!(unique.len(), 250);
    // The default count works too, and a count larger than the keyspace
    // finishes in one call.
    assert_eq!(full_scan(&mut h, "").len(), 250);
    let (cursor, keys) = scan_once(&mut h, 0, "SCAN 0 COUNT 1000");
    assert_eq!((cursor, keys.len()), (0, 250));
}

#[test]
fn count_bounds_each_call() {
    let mut h = Harness::new();
    for index in 0..100 {
        h.run(0, &format!("SET k{index} v"));
    }
    let (cursor, keys) = scan_once(&mut h, 0, "SCAN 0 COUNT 10");
    assert_ne!(cursor, 0);
    assert_eq!(keys.len(), 10);
}

#[test]
fn match_and_type_filter() {
    let mut h = Harness::new();
    for index in 0..30 {
        h.run(0, &format!("SET user:{index} v"));
        h.run(0, &format!("HSET obj:{index} f v"));
        h.run(0, &format!("RPUSH queue:{index} a"));
    }
    let users = full_scan(&mut h, "MATCH user:* COUNT 5");
    assert_eq!(users.len(), 30);
    assert!(users.iter().all(|key| key.starts_with(b"user:")));
    let hashes = full_scan(&mut h, "TYPE HASH COUNT 5");
    assert_eq!(hashes.len(), 30);
    assert!(hashes.iter().all(|key| key.starts_with(b"obj:")));
    let lists = full_scan(&mut h, "type list match queue:1*");
    assert_eq!(lists.len(), 11);
    assert!(full_scan(&mut h, "TYPE zset").is_empty());
}

#[test]
fn scan_errors() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SCAN abc", err("ERR invalid cursor")),
            ("SCAN -1", err("ERR invalid cursor")),
            ("SCAN 18446744073709551616", err("ERR invalid cursor")),
            ("SCAN 0 COUNT 0", err(SYNTAX)),
            ("SCAN 0 COUNT -5", err(SYNTAX)),
            ("SCAN 0 COUNT x", err(NOT_INTEGER)),
            ("SCAN 0 MATCH", err(SYNTAX)),
            ("SCAN 0 FOO bar", err(SYNTAX)),
            ("SCAN", arity("scan")),
            (
                "SCAN 18446744073709551615",
                array(vec![bulk("0"), array(vec![])]),
            ),
        ],
    );
}

#[derive(Clone, Debug)]
enum Change {
    Add(u16),
    Delete(u16),
    Expire(u16),
    RewriteStable(u16),
    Flip(u16),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0u16..400).prop_map(Change::Add),
        (0u16..400).prop_map(Change::Delete),
        (0u16..400).prop_map(Change::Expire),
        (0u16..400).prop_map(Change::RewriteStable),
        (0u16..400).prop_map(Change::Flip),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Keys present for the whole scan are all returned, while other keys
    /// are added, deleted, expired, and stable ones overwritten or changed
    /// in type between calls.
    #[test]
    fn stable_keys_are_never_missed(
        stable_count in 1usize..120,
        initial_volatile in 0u16..200,
        count in 1u64..20,
        changes in prop::collection::vec(prop::collection::vec(change(), 0..8), 0..60),
    ) {
        let mut h = Harness::new();
        let mut now = 0u64;
        let stable: BTreeSet<Bytes> =
            (0..stable_count).map(|i| Bytes::from(format!("stable:{i}"))).collect();
        for key in &stable {
            h.run(now, &format!("SET {} v", std::str::from_utf8(key).unwrap()));
        }
        for id in 0..initial_volatile {
            h.run(now, &format!("SET volatile:{id} v"));
        }
        let mut seen = BTreeSet::new();
        let mut cursor = 0u64;
        let mut rounds = changes.into_iter();
        for _ in 0..10_000 {
            let (next, keys) = scan_once(&mut h, now, &format!("SCAN {cursor} COUNT {count}"));
            seen.extend(keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
            for change in rounds.next().unwrap_or_default() {
                now += 1;
                let line = match change {
                    Change::Add(id) => format!("SET volatile:{id} v"),
                    Change::Delete(id) => format!("DEL volatile:{id}"),
                    Change::Expire(id) => format!("PEXPIRE volatile:{id} 1"),
                    Change::RewriteStable(id) => {
                        format!("SET stable:{} w", usize::from(id) % stable_count)
                    }
                    Change::Flip(id) => format!("RPUSH volatile:{id} a"),
                };
                h.run(now, &line);
            }
        }
        prop_assert_eq!(cursor, 0, "scan finished");
        let missed: Vec<_> = stable.difference(&seen).collect();
        prop_assert!(missed.is_empty(), "missed {:?}", missed);
    }
}
