//! The set commands of issue 16, through the whole state-machine path:
//! exact replies, errors, wrong types, missing keys, hostile counts, the
//! encoding Redis would report, sets deleted when emptied, and the seeded
//! draws of SPOP and SRANDMEMBER.

use crate::common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use synod::{ApplyContext, InstanceId, StateMachine};
use synod_kv::{decode_reply, parse, KvCommand, Store};
use synod_resp::Reply;

fn set(items: &[&str]) -> Reply {
    Reply::Set(items.iter().map(|item| bulk(item)).collect())
}

fn ints(values: &[i64]) -> Reply {
    Reply::Array(values.iter().map(|&value| int(value)).collect())
}

/// The members of an array or set reply of bulk strings, in reply order.
fn members_of(reply: &Reply) -> Vec<String> {
    let items = match reply {
        Reply::Array(items) | Reply::Set(items) => items,
        other => panic!("not an array: {other:?}"),
    };
    items
        .iter()
        .map(|item| match item {
            Reply::Bulk(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => panic!("not a bulk: {other:?}"),
        })
        .collect()
}

fn sorted_members(reply: &Reply) -> Vec<String> {
    let mut members = members_of(reply);
    members.sort();
    members
}

#[test]
fn sadd_srem_and_membership() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD s b a c", int(3)),
            ("SADD s a d", int(1)),
            ("SCARD s", int(4)),
            ("SMEMBERS s", set(&["a", "b", "c", "d"])),
            ("SISMEMBER s a", int(1)),
            ("SISMEMBER s z", int(0)),
            ("SMISMEMBER s a z d", ints(&[1, 0, 1])),
            ("SMISMEMBER missing a b", ints(&[0, 0])),
            ("SISMEMBER missing a", int(0)),
            ("SCARD missing", int(0)),
            ("SMEMBERS missing", set(&[])),
            ("TYPE s", simple("set")),
            ("SREM s a z a", int(1)),
            ("SREM missing a", int(0)),
            ("SREM s b c d", int(3)),
            ("EXISTS s", int(0)),
            ("SADD s", arity("sadd")),
            ("SREM s", arity("srem")),
            ("SMISMEMBER s", arity("smismember")),
            ("SISMEMBER s", arity("sismember")),
            ("SET str v", ok()),
            ("SADD str a", err(WRONGTYPE)),
            ("SREM str a", err(WRONGTYPE)),
            ("SMEMBERS str", err(WRONGTYPE)),
            ("SISMEMBER str a", err(WRONGTYPE)),
            ("SMISMEMBER str a", err(WRONGTYPE)),
            ("SCARD str", err(WRONGTYPE)),
            ("RPUSH l a", int(1)),
            ("SMEMBERS l", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn members_are_binary_safe() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD s \"\\x00\\xff\" \"\" \"a b\"", int(3)),
            ("SISMEMBER s \"\\x00\\xff\"", int(1)),
            ("SISMEMBER s \"\"", int(1)),
            ("SREM s \"\"", int(1)),
        ],
    );
    let Reply::Set(members) = h.run(0, "SMEMBERS s") else {
        panic!("a set reply");
    };
    assert_eq!(
        members,
        [
            Reply::Bulk(Bytes::from_static(b"\x00\xff")),
            Reply::Bulk(Bytes::from_static(b"a b"))
        ]
    );
}

#[test]
fn the_encoding_follows_redis_history() {
    let mut h = Harness::new();
    let encoding = |h: &mut Harness, key: &str| h.run(0, &format!("OBJECT ENCODING {key}"));
    assert_eq!(h.run(0, "SADD i 1 2 -3"), int(3));
    assert_eq!(encoding(&mut h, "i"), bulk("intset"));
    assert_eq!(h.run(0, "SADD i 01"), int(1));
    assert_eq!(encoding(&mut h, "i"), bulk("hashtable"));
    assert_eq!(h.run(0, "SREM i 01"), int(1));
    assert_eq!(encoding(&mut h, "i"), bulk("hashtable"), "never back");
    assert_eq!(h.run(0, "SADD big 99999999999999999999"), int(1));
    assert_eq!(encoding(&mut h, "big"), bulk("hashtable"));
    let numbers: Vec<String> = (0..512).map(|n| n.to_string()).collect();
    assert_eq!(h.run(0, &format!("SADD n {}", numbers.join(" "))), int(512));
    assert_eq!(encoding(&mut h, "n"), bulk("intset"));
    assert_eq!(h.run(0, "SADD n 512"), int(1));
    assert_eq!(encoding(&mut h, "n"), bulk("hashtable"));
    // A stored combination is encoded by its members, as Redis builds it.
    assert_eq!(h.run(0, "SADD j 2 x"), int(2));
    assert_eq!(h.run(0, "SINTERSTORE d i j"), int(1));
    assert_eq!(encoding(&mut h, "d"), bulk("intset"));
    // COPY and RENAME keep the encoding.
    assert_eq!(h.run(0, "COPY i c"), int(1));
    assert_eq!(encoding(&mut h, "c"), bulk("hashtable"));
    assert_eq!(h.run(0, "RENAME d e"), ok());
    assert_eq!(encoding(&mut h, "e"), bulk("intset"));
    assert_eq!(h.run(0, "SMEMBERS e"), set(&["2"]));
}

#[test]
fn smove_cases() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD a 1 x", int(2)),
            ("SADD b 2", int(1)),
            ("SMOVE a b x", int(1)),
            ("SMEMBERS a", set(&["1"])),
            ("SMEMBERS b", set(&["2", "x"])),
            ("SMOVE a b nope", int(0)),
            ("SMOVE a a 1", int(1)),
            ("SMOVE a a nope", int(0)),
            ("SMOVE missing b 2", int(0)),
            ("SET str v", ok()),
            // A missing source answers 0 whatever the destination holds.
            ("SMOVE missing str 2", int(0)),
            ("SMOVE str b v", err(WRONGTYPE)),
            ("SMOVE a str 1", err(WRONGTYPE)),
            ("SMEMBERS a", set(&["1"])),
            ("SMOVE a fresh 1", int(1)),
            ("EXISTS a", int(0)),
            ("SMEMBERS fresh", set(&["1"])),
            ("OBJECT ENCODING fresh", bulk("intset")),
            ("SADD b 1", int(1)),
            ("SMOVE fresh b 1", int(1)),
            ("EXISTS fresh", int(0)),
            ("SMEMBERS b", set(&["1", "2", "x"])),
        ],
    );
}

#[test]
fn combinations_and_their_stores() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD a 1 2 3 4", int(4)),
            ("SADD b 3 4 5", int(3)),
            ("SADD c 4 6", int(2)),
            ("SINTER a b", set(&["3", "4"])),
            ("SINTER a b c", set(&["4"])),
            ("SINTER a missing", set(&[])),
            ("SINTER a a a", set(&["1", "2", "3", "4"])),
            ("SUNION a b c", set(&["1", "2", "3", "4", "5", "6"])),
            ("SUNION missing b", set(&["3", "4", "5"])),
            ("SDIFF a b", set(&["1", "2"])),
            ("SDIFF a b c missing", set(&["1", "2"])),
            ("SDIFF missing a", set(&[])),
            ("SDIFF a a", set(&[])),
            ("SINTERCARD 2 a b", int(2)),
            ("SINTERCARD 2 a b LIMIT 1", int(1)),
            ("SINTERCARD 2 a b LIMIT 0", int(2)),
            ("SINTERCARD 3 a b c limit 10", int(1)),
            ("SINTERCARD 1 missing", int(0)),
            ("SINTERSTORE d a b", int(2)),
            ("SMEMBERS d", set(&["3", "4"])),
            ("SUNIONSTORE d a c", int(5)),
            ("SMEMBERS d", set(&["1", "2", "3", "4", "6"])),
            ("SDIFFSTORE d a b", int(2)),
            ("SMEMBERS d", set(&["1", "2"])),
            // The destination may be a source.
            ("SUNIONSTORE d d c", int(4)),
            ("SMEMBERS d", set(&["1", "2", "4", "6"])),
            // An empty result deletes the destination, whatever it held.
            ("SET d x", ok()),
            ("SINTERSTORE d a missing", int(0)),
            ("EXISTS d", int(0)),
            ("SET d x", ok()),
            ("SDIFFSTORE d missing a", int(0)),
            ("EXISTS d", int(0)),
            // The destination's expiry goes with its old value.
            ("SADD d z", int(1)),
            ("PEXPIRE d 1000", int(1)),
            ("SUNIONSTORE d a", int(4)),
            ("PTTL d", int(-1)),
        ],
    );
}

#[test]
fn combinations_check_every_type_first() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD a x", int(1)),
            ("SADD d keep", int(1)),
            ("SET str v", ok()),
            ("SINTER str missing", err(WRONGTYPE)),
            ("SINTER missing str", err(WRONGTYPE)),
            ("SUNION a str", err(WRONGTYPE)),
            ("SDIFF missing str", err(WRONGTYPE)),
            ("SINTERCARD 2 missing str", err(WRONGTYPE)),
            ("SINTERSTORE d missing str", err(WRONGTYPE)),
            ("SUNIONSTORE d str a", err(WRONGTYPE)),
            ("SDIFFSTORE d a str", err(WRONGTYPE)),
            ("SMEMBERS d", set(&["keep"])),
            ("SINTER", arity("sinter")),
            ("SINTERSTORE d", arity("sinterstore")),
        ],
    );
}

#[test]
fn sintercard_arguments() {
    let mut h = Harness::new();
    let numkeys = "ERR numkeys should be greater than 0";
    let too_many = "ERR Number of keys can't be greater than number of args";
    let limit = "ERR LIMIT can't be negative";
    h.expect_all(
        0,
        &[
            ("SINTERCARD", arity("sintercard")),
            ("SINTERCARD 1", arity("sintercard")),
            ("SINTERCARD 0 a", err(numkeys)),
            ("SINTERCARD -1 a", err(numkeys)),
            ("SINTERCARD x a", err(numkeys)),
            ("SINTERCARD 2 a", err(too_many)),
            ("SINTERCARD 9223372036854775807 a", err(too_many)),
            ("SINTERCARD 1 a b", err(SYNTAX)),
            ("SINTERCARD 1 a LIMIT", err(SYNTAX)),
            ("SINTERCARD 1 a LIMIT -1", err(limit)),
            ("SINTERCARD 1 a LIMIT x", err(limit)),
            ("SINTERCARD 1 a LIMIT 1 LIMIT 2", int(0)),
        ],
    );
}

#[test]
fn spop_shapes_and_errors() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SPOP missing", null()),
            ("SPOP missing 3", set(&[])),
            ("SADD s a", int(1)),
            ("SPOP s 0", set(&[])),
            ("SPOP s", bulk("a")),
            ("EXISTS s", int(0)),
            ("SADD s a b c", int(3)),
            ("SPOP s 3", set(&["a", "b", "c"])),
            ("EXISTS s", int(0)),
            ("SADD s a b c", int(3)),
            ("SPOP s 9223372036854775807", set(&["a", "b", "c"])),
            (
                "SPOP s -1",
                err("ERR value is out of range, must be positive"),
            ),
            (
                "SPOP s x",
                err("ERR value is out of range, must be positive"),
            ),
            ("SPOP s 1 2", err(SYNTAX)),
            ("SET str v", ok()),
            ("SPOP str", err(WRONGTYPE)),
            ("SPOP str 0", err(WRONGTYPE)),
        ],
    );
    assert_eq!(h.run(0, "SADD s a b c d e"), int(5));
    let popped = members_of(&h.run(0, "SPOP s 2"));
    assert_eq!(popped.len(), 2);
    assert_ne!(popped[0], popped[1]);
    let left = sorted_members(&h.run(0, "SMEMBERS s"));
    assert_eq!(left.len(), 3);
    let mut all: Vec<String> = popped.into_iter().chain(left).collect();
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d", "e"]);
    let Reply::Bulk(one) = h.run(0, "SPOP s") else {
        panic!("a member");
    };
    assert_eq!(h.run(0, "SCARD s"), int(2));
    assert_eq!(
        h.run(0, &format!("SISMEMBER s {}", String::from_utf8_lossy(&one))),
        int(0)
    );
}

#[test]
fn srandmember_shapes_and_errors() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SRANDMEMBER missing", null()),
            ("SRANDMEMBER missing 5", bulks(&[])),
            ("SRANDMEMBER missing -5", bulks(&[])),
            ("SADD s a b c", int(3)),
            ("SRANDMEMBER s 0", bulks(&[])),
            ("SRANDMEMBER s 3", bulks(&["a", "b", "c"])),
            ("SRANDMEMBER s 9223372036854775807", bulks(&["a", "b", "c"])),
            ("SRANDMEMBER s x", err(NOT_INTEGER)),
            (
                "SRANDMEMBER s -9223372036854775808",
                err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"),
            ),
            ("SRANDMEMBER s 1 2", err(SYNTAX)),
            // Refused before anything is drawn or allocated.
            (
                "SRANDMEMBER s -9223372036854775807",
                err("ERR SRANDMEMBER reply of more than 67108864 bytes refused; ask for fewer members"),
            ),
            ("SET str v", ok()),
            ("SRANDMEMBER str", err(WRONGTYPE)),
            ("SRANDMEMBER str 1", err(WRONGTYPE)),
            ("SCARD s", int(3)),
        ],
    );
    let drawn = members_of(&h.run(0, "SRANDMEMBER s -10"));
    assert_eq!(drawn.len(), 10);
    assert!(drawn.iter().all(|m| ["a", "b", "c"].contains(&m.as_str())));
    let two = members_of(&h.run(0, "SRANDMEMBER s 2"));
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1]);
}

#[test]
fn srandmember_refuses_a_reply_past_its_bound_while_drawing() {
    let mut h = Harness::new();
    let big = "x".repeat(1 << 20);
    assert_eq!(h.run(0, &format!("SADD s {big}")), int(1));
    // 100 draws of a 1 MiB member: past 64 MiB.
    assert_eq!(
        h.run(0, "SRANDMEMBER s -100"),
        err("ERR SRANDMEMBER reply of more than 67108864 bytes refused; ask for fewer members")
    );
    assert_eq!(members_of(&h.run(0, "SRANDMEMBER s -3")).len(), 3);
}

/// Counts how often each member comes up in `rounds` replies of `line`, each
/// at its own place in the log.
fn histogram(h: &mut Harness, line: &str, rounds: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..rounds {
        let reply = h.run(0, line);
        let members = match reply {
            Reply::Bulk(member) => vec![String::from_utf8_lossy(&member).into_owned()],
            other => members_of(&other),
        };
        for member in members {
            *seen.entry(member).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn srandmember_draws_are_uniform_and_vary_along_the_log() {
    let mut h = Harness::new();
    let members: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(h.run(0, &format!("SADD s {}", members.join(" "))), int(10));
    for (line, rounds, expected) in [
        ("SRANDMEMBER s", 2000, 200),
        ("SRANDMEMBER s -20", 100, 200),
        ("SRANDMEMBER s 3", 700, 210),
        ("SRANDMEMBER s 8", 250, 200),
    ] {
        let seen = histogram(&mut h, line, rounds);
        assert_eq!(seen.len(), 10, "{line}: {seen:?}");
        assert!(
            seen.values().all(|&n| n.abs_diff(expected) < expected / 3),
            "{line}: {seen:?}"
        );
    }
}

#[test]
fn spop_draws_are_uniform() {
    let mut h = Harness::new();
    let mut first = BTreeMap::new();
    for _ in 0..1000 {
        assert_eq!(h.run(0, "SADD s a b c d e"), int(5));
        let Reply::Bulk(member) = h.run(0, "SPOP s") else {
            panic!("a member");
        };
        *first.entry(member).or_insert(0usize) += 1;
        assert_eq!(h.run(0, "DEL s"), int(1));
    }
    assert_eq!(first.len(), 5);
    assert!(first.values().all(|&n| n.abs_diff(200) < 70), "{first:?}");
}

/// Applies `line` at `instance` to `store`.
fn apply_at(store: &mut Store, instance: u64, line: &str) -> Reply {
    let command = parse(&args(line)).unwrap();
    let context = ApplyContext {
        instance: InstanceId(instance),
        time_ms: 5,
        index: 0,
    };
    decode_reply(&store.apply(&command.encode(), &context)).unwrap()
}

#[test]
fn spop_is_the_same_on_every_replica() {
    let mut replicas = [Store::new(), Store::new()];
    let mut replies = Vec::new();
    for store in &mut replicas {
        let members: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        apply_at(store, 1, &format!("SADD s {}", members.join(" ")));
        let popped: Vec<Reply> = (2..20)
            .map(|instance| apply_at(store, instance, "SPOP s 3"))
            .collect();
        replies.push((popped, store.snapshot()));
    }
    assert_eq!(replies[0], replies[1]);
}

#[test]
fn sscan_walks_every_member_once() {
    let mut h = Harness::new();
    let members: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    assert_eq!(h.run(0, &format!("SADD s {}", members.join(" "))), int(300));
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    loop {
        let Reply::Array(parts) = h.run(0, &format!("SSCAN s {cursor} COUNT 7")) else {
            panic!("an array");
        };
        let [Reply::Bulk(next), page] = &parts[..] else {
            panic!("cursor and page");
        };
        seen.extend(members_of(page));
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen, members);
    h.expect_all(
        0,
        &[
            (
                "SSCAN s 0 MATCH m00* COUNT 1000",
                array(vec![
                    bulk("0"),
                    bulks(&[
                        "m000", "m001", "m002", "m003", "m004", "m005", "m006", "m007", "m008",
                        "m009",
                    ]),
                ]),
            ),
            ("SSCAN missing 0", array(vec![bulk("0"), bulks(&[])])),
            ("SSCAN s x", err("ERR invalid cursor")),
            ("SSCAN s 0 COUNT 0", err(SYNTAX)),
            ("SSCAN s 0 COUNT x", err(NOT_INTEGER)),
            ("SSCAN s 0 TYPE set", err(SYNTAX)),
            ("SSCAN s 0 MATCH", err(SYNTAX)),
            ("SET str v", ok()),
            ("SSCAN str 0", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn sort_reads_a_set() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD s 3 10 1", int(3)),
            ("SORT s", bulks(&["1", "3", "10"])),
            ("SORT s DESC LIMIT 0 2", bulks(&["10", "3"])),
            ("SORT s ALPHA", bulks(&["1", "10", "3"])),
            ("SORT s BY nosort", bulks(&["1", "10", "3"])),
            ("SORT s STORE dst", int(3)),
            ("LRANGE dst 0 -1", bulks(&["1", "3", "10"])),
        ],
    );
}

#[test]
fn sets_expire_and_are_deleted() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD s a", int(1)),
            ("PEXPIRE s 100", int(1)),
            ("SCARD s", int(1)),
        ],
    );
    h.expect_all(
        100,
        &[
            ("SCARD s", int(0)),
            ("EXISTS s", int(0)),
            ("SADD s b", int(1)),
            ("PTTL s", int(-1)),
            ("DEL s", int(1)),
            ("SMEMBERS s", set(&[])),
        ],
    );
}

#[test]
fn transactions_budget_set_reads() {
    let mut h = Harness::new();
    let members: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    for chunk in members.chunks(1000) {
        h.run(0, &format!("SADD s {}", chunk.join(" ")));
    }
    // 13 reads of 5000 members fit in the budget of 65,536; the 14th not.
    let reads: Vec<KvCommand> = (0..14)
        .map(|_| parse(&args("SMEMBERS s")).unwrap())
        .collect();
    let Reply::Array(replies) = h.apply(0, &KvCommand::Exec(reads)) else {
        panic!("an array");
    };
    assert!(matches!(replies[12], Reply::Set(ref members) if members.len() == 5000));
    assert!(
        matches!(replies[13], Reply::Error(ref e) if e.contains("cannot run inside a transaction"))
    );
    // SSCAN with a pattern never runs inside one, as SCAN.
    let scan = parse(&args("SSCAN s 0 MATCH 1*")).unwrap();
    let Reply::Array(replies) = h.apply(0, &KvCommand::Exec(vec![scan])) else {
        panic!("an array");
    };
    assert!(matches!(replies[0], Reply::Error(_)));
}

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

#[test]
fn sets_are_accounted_and_refused_past_maxmemory() {
    let mut h = Harness::new();
    assert_eq!(h.apply(1, &KvCommand::SetMaxMemory { bytes: 400 }), ok());
    assert_eq!(h.run(2, "SADD s a bb"), int(2));
    // 64 + 1 + (40 + 1) + (40 + 2)
    assert_eq!(h.store.memory().0, 148);
    assert_eq!(h.run(2, "SREM s bb"), int(1));
    assert_eq!(h.store.memory().0, 64 + 1 + 41);
    let big = "y".repeat(300);
    assert_eq!(h.run(2, &format!("SADD s {big}")), err(OOM));
    assert_eq!(h.run(2, &format!("SADD t {big}")), err(OOM));
    assert_eq!(h.run(2, "SADD t c d"), int(2));
    // 106 + 64 + 1 + 2 * 41: a store of 2 more fits, of 3 not.
    assert_eq!(h.store.memory().0, 253);
    assert_eq!(h.run(2, "SINTERSTORE u s t"), int(0));
    assert_eq!(h.run(2, "SUNIONSTORE u s t"), err(OOM));
    assert_eq!(h.run(2, "EXISTS u"), int(0));
    // Replacing a destination counts only what it grows by.
    assert_eq!(h.run(2, "SUNIONSTORE t s t"), int(3));
    assert_eq!(h.store.memory().0, 106 + 64 + 1 + 3 * 41);
    // Removals always run.
    assert_eq!(h.run(2, "SPOP t 3"), set(&["a", "c", "d"]));
    assert_eq!(h.store.memory().0, 106);
    assert_eq!(h.run(2, "SMOVE s t a"), int(1));
    assert_eq!(h.store.memory().0, 106);
}

#[test]
fn large_set_reads_are_answered_off_the_loop() {
    let mut h = Harness::new();
    for chunk in (0..6000).collect::<Vec<_>>().chunks(1000) {
        let members: Vec<String> = chunk.iter().map(|i| format!("m{i}")).collect();
        h.run(1, &format!("SADD a {}", members.join(" ")));
        let members: Vec<String> = chunk.iter().map(|i| format!("m{}", i * 2)).collect();
        h.run(1, &format!("SADD b {}", members.join(" ")));
    }
    for line in [
        "SMEMBERS a",
        "SINTER a b",
        "SUNION a b",
        "SDIFF a b",
        "SINTERCARD 2 a b LIMIT 10",
        "SSCAN a 0 COUNT 100",
        "SSCAN b 0 MATCH m1*",
        "SRANDMEMBER a -5",
        "SORT a BY nosort",
    ] {
        let command = parse(&args(line)).unwrap();
        let context = ctx(h.instance, 2);
        let job = h
            .store
            .query_view(&command.encode(), &context)
            .unwrap_or_else(|| panic!("{line} is answered off the loop"));
        assert_eq!(job(), h.store.query(&command.encode(), &context), "{line}");
    }
    for line in ["SCARD a", "SISMEMBER a m1", "SMISMEMBER a m1 m2"] {
        let command = parse(&args(line)).unwrap();
        assert!(h
            .store
            .query_view(&command.encode(), &ctx(h.instance, 2))
            .is_none());
    }
}

#[test]
fn store_forms_are_bounded_on_the_apply_path() {
    let mut h = Harness::new();
    // A set of 2^20 + 2^16 members combined with itself three times visits
    // less than the bound of 2^22, four times more.
    let total = (1usize << 20) + (1 << 16);
    for start in (0..total).step_by(1 << 16) {
        let members: Vec<String> = (start..start + (1 << 16)).map(|i| i.to_string()).collect();
        h.run(1, &format!("SADD s {}", members.join(" ")));
    }
    assert_eq!(h.run(1, "SINTERCARD 1 s"), int(total as i64));
    assert_eq!(h.run(1, "SDIFFSTORE d s s s"), int(0));
    assert_eq!(
        h.run(1, "SUNIONSTORE d s s s s"),
        err("ERR SUNIONSTORE would visit 4456448 members, more than 4194304: a store runs on every replica; combine fewer or smaller sets")
    );
    assert_eq!(h.run(1, "EXISTS d"), int(0));
    // The reads are not bounded this way: they run off the loop, alone.
    assert_eq!(h.run(1, "SINTERCARD 4 s s s s LIMIT 5"), int(5));
}

#[test]
fn snapshots_carry_sets_and_their_encoding() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SADD ints 1 2 3", int(3)),
            ("SADD mixed 1 a", int(2)),
            ("SREM mixed a", int(1)),
            ("SADD ttl x", int(1)),
            ("PEXPIRE ttl 500", int(1)),
        ],
    );
    let snapshot = h.store.snapshot();
    let mut restored = Store::new();
    restored.restore(&snapshot).expect("restores");
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.memory(), h.store.memory());
    let mut r = Harness {
        store: restored,
        instance: h.instance,
    };
    r.expect_all(
        0,
        &[
            ("SMEMBERS ints", set(&["1", "2", "3"])),
            ("OBJECT ENCODING ints", bulk("intset")),
            ("SMEMBERS mixed", set(&["1"])),
            ("OBJECT ENCODING mixed", bulk("hashtable")),
            ("PTTL ttl", int(500)),
        ],
    );
}
