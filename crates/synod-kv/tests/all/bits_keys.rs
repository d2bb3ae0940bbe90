//! Issue 16's key and string commands: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, LCS, INCRBYFLOAT precision, RENAME, COPY, TOUCH, EXPIRETIME,
//! OBJECT, RANDOMKEY and SORT, with Redis 7's replies and errors.

use crate::common;

use common::*;
use synod_kv::parse;
use synod_resp::Reply;

const T: u64 = 1_000_000;

fn bin(bytes: &[u8]) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(bytes))
}

#[test]
fn setbit_and_getbit() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SETBIT k 1 1", int(0)),
            ("GET k", bin(&[0b0100_0000])),
            ("SETBIT k 1 1", int(1)),
            ("SETBIT k 1 0", int(1)),
            ("SETBIT k 17 1", int(0)),
            ("GET k", bin(&[0, 0, 0b0100_0000])),
            ("GETBIT k 17", int(1)),
            ("GETBIT k 16", int(0)),
            ("GETBIT k 100000", int(0)),
            ("GETBIT missing 3", int(0)),
            ("SETBIT zero 7 0", int(0)),
            ("GET zero", bin(&[0])),
            (
                "SETBIT k 4294967296 1",
                err("ERR bit offset is not an integer or out of range"),
            ),
            (
                "SETBIT k -1 1",
                err("ERR bit offset is not an integer or out of range"),
            ),
            (
                "GETBIT k -1",
                err("ERR bit offset is not an integer or out of range"),
            ),
            (
                "SETBIT k 0 2",
                err("ERR bit is not an integer or out of range"),
            ),
            (
                "SETBIT k 0 x",
                err("ERR bit is not an integer or out of range"),
            ),
            ("LPUSH l a", int(1)),
            ("SETBIT l 0 1", err(WRONGTYPE)),
            ("GETBIT l 0", err(WRONGTYPE)),
            ("SETBIT k 0", arity("setbit")),
        ],
    );
}

#[test]
fn setbit_keeps_the_expiry() {
    let mut h = Harness::new();
    h.run(T, "SET k @ PX 1000");
    assert_eq!(h.run(T, "SETBIT k 2 1"), int(0));
    assert_eq!(h.run(T, "GET k"), bulk("`"));
    assert_eq!(h.run(T, "PTTL k"), int(1000));
}

#[test]
fn bitcount_ranges() {
    let mut h = Harness::new();
    h.run(T, "SET k foobar");
    h.expect_all(
        T,
        &[
            ("BITCOUNT k", int(26)),
            ("BITCOUNT k 0 0", int(4)),
            ("BITCOUNT k 1 1", int(6)),
            ("BITCOUNT k 1 1 BYTE", int(6)),
            ("BITCOUNT k 5 30 BIT", int(17)),
            ("BITCOUNT k -1 -2", int(0)),
            ("BITCOUNT k -2 -1", int(7)),
            ("BITCOUNT k 0 -1 bit", int(26)),
            ("BITCOUNT k 100 200", int(0)),
            ("BITCOUNT missing", int(0)),
            ("BITCOUNT k 0", err(SYNTAX)),
            ("BITCOUNT k 0 1 WORD", err(SYNTAX)),
            ("BITCOUNT k a 1", err(NOT_INTEGER)),
            (
                "BITCOUNT k -9223372036854775808 9223372036854775807",
                int(26),
            ),
        ],
    );
}

#[test]
fn bitpos_finds_bits() {
    let mut h = Harness::new();
    h.run(T, "SET k \"\\xff\\xf0\\x00\"");
    h.run(T, "SET ones \"\\xff\\xff\\xff\"");
    h.run(T, "SET zeros \"\\x00\\x00\\x00\"");
    h.expect_all(
        T,
        &[
            ("BITPOS k 0", int(12)),
            ("BITPOS k 1 2", int(-1)),
            ("BITPOS k 0 2", int(16)),
            ("BITPOS k 1 1 -1", int(8)),
            ("BITPOS k 0 2 -1 BYTE", int(16)),
            ("BITPOS k 1 7 15 BIT", int(7)),
            ("BITPOS k 0 7 11 BIT", int(-1)),
            ("BITPOS ones 0", int(24)),
            ("BITPOS ones 0 0 -1", int(-1)),
            ("BITPOS zeros 1", int(-1)),
            ("BITPOS missing 1", int(-1)),
            ("BITPOS missing 0", int(0)),
            ("BITPOS k 2", err("ERR The bit argument must be 1 or 0.")),
            ("BITPOS k 1 0 1 BYTE x", err(SYNTAX)),
            ("BITPOS k 1 0 1 NIBBLE", err(SYNTAX)),
        ],
    );
}

#[test]
fn bitop_operations() {
    let mut h = Harness::new();
    h.run(T, "SET a \"\\x0f\\xf0\"");
    h.run(T, "SET b \"\\xff\"");
    h.expect_all(
        T,
        &[
            ("BITOP AND d a b", int(2)),
            ("GET d", bin(&[0x0f, 0x00])),
            ("BITOP OR d a b", int(2)),
            ("GET d", bin(&[0xff, 0xf0])),
            ("BITOP XOR d a b missing", int(2)),
            ("GET d", bin(&[0xf0, 0xf0])),
            ("BITOP NOT d a", int(2)),
            ("GET d", bin(&[0xf0, 0x0f])),
            (
                "BITOP NOT d a b",
                err("ERR BITOP NOT must be called with a single source key."),
            ),
            ("BITOP NAND d a b", err(SYNTAX)),
            ("BITOP AND d missing other", int(0)),
            ("EXISTS d", int(0)),
            ("LPUSH l x", int(1)),
            ("BITOP OR d a l", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn lcs_replies() {
    let mut h = Harness::new();
    h.run(T, "MSET a ohmytext b mynewtext");
    h.expect_all(
        T,
        &[
            ("LCS a b", bulk("mytext")),
            ("LCS a b LEN", int(6)),
            ("LCS a missing", bulk("")),
            (
                "LCS a b IDX",
                Reply::Map(vec![
                    (
                        bulk("matches"),
                        array(vec![
                            array(vec![
                                array(vec![int(4), int(7)]),
                                array(vec![int(5), int(8)]),
                            ]),
                            array(vec![
                                array(vec![int(2), int(3)]),
                                array(vec![int(0), int(1)]),
                            ]),
                        ]),
                    ),
                    (bulk("len"), int(6)),
                ]),
            ),
            (
                "LCS a b IDX MINMATCHLEN 4 WITHMATCHLEN",
                Reply::Map(vec![
                    (
                        bulk("matches"),
                        array(vec![array(vec![
                            array(vec![int(4), int(7)]),
                            array(vec![int(5), int(8)]),
                            int(4),
                        ])]),
                    ),
                    (bulk("len"), int(6)),
                ]),
            ),
            (
                "LCS a b IDX LEN",
                err("ERR If you want both the length and indexes, please just use IDX."),
            ),
            ("LCS a b FOO", err(SYNTAX)),
            ("LPUSH l x", int(1)),
            (
                "LCS a l",
                err("ERR The specified keys must contain string values"),
            ),
        ],
    );
}

#[test]
fn lcs_refuses_huge_products() {
    let mut h = Harness::new();
    let big = "x".repeat(5000);
    h.run(T, &format!("MSET a {big} b {big}"));
    let Reply::Error(error) = h.run(T, "LCS a b LEN") else {
        panic!("expected an error")
    };
    assert!(error.contains("synod's limit"), "{error}");
}

#[test]
fn incrbyfloat_has_redis_precision() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            (
                "INCRBYFLOAT f 0.024390243902439025",
                bulk("0.02439024390243902"),
            ),
            ("INCRBYFLOAT f -0.024390243902439025", bulk("0")),
            ("SET g 0.1", ok()),
            ("INCRBYFLOAT g 0.2", bulk("0.3")),
            ("SET h 10.50", ok()),
            ("INCRBYFLOAT h 0.1", bulk("10.6")),
            ("INCRBYFLOAT i 5.0e3", bulk("5000")),
            ("INCRBYFLOAT j 1.0e-5", bulk("0.00001")),
            ("SET k 1", ok()),
            ("INCRBYFLOAT k -1.1", bulk("-0.1")),
            ("SET m 1e3", ok()),
            ("INCRBYFLOAT m 1", bulk("1001")),
            ("INCRBYFLOAT n 1e-20", bulk("0")),
            ("SET o 17179869184", ok()),
            ("INCRBYFLOAT o 1.5", bulk("17179869185.5")),
        ],
    );
}

#[test]
fn rename_and_renamenx() {
    let mut h = Harness::new();
    h.run(T, "SET a 1 PX 5000");
    h.run(T, "SET b 2 PX 100");
    h.expect_all(
        T,
        &[
            ("RENAME a c", ok()),
            ("EXISTS a", int(0)),
            ("GET c", bulk("1")),
            ("PTTL c", int(5000)),
            ("SET d x", ok()),
            ("RENAME c d", ok()),
            ("GET d", bulk("1")),
            ("PTTL d", int(5000)),
            ("RENAME missing x", err("ERR no such key")),
            ("RENAME missing missing", err("ERR no such key")),
            ("RENAME d d", ok()),
            ("RENAMENX d d", int(0)),
            ("SET e 1", ok()),
            ("RENAMENX d e", int(0)),
            ("RENAMENX d f", int(1)),
            ("GET f", bulk("1")),
            ("PERSIST f", int(1)),
            ("RENAME b f", ok()),
            ("PTTL f", int(100)),
        ],
    );
    // An expired source is missing.
    assert_eq!(h.run(T + 200, "RENAME f g"), err("ERR no such key"));
}

#[test]
fn copy_keeps_expiry_and_is_independent() {
    let mut h = Harness::new();
    h.run(T, "SET s foobar PX 5000");
    h.run(T, "RPUSH l a b c");
    h.expect_all(
        T,
        &[
            ("COPY s t", int(1)),
            ("GET t", bulk("foobar")),
            ("PTTL t", int(5000)),
            ("COPY s t", int(0)),
            ("SET s other", ok()),
            ("COPY s t REPLACE", int(1)),
            ("PTTL t", int(-1)),
            ("GET t", bulk("other")),
            (
                "COPY s s",
                err("ERR source and destination objects are the same"),
            ),
            ("COPY missing t", int(0)),
            ("COPY s t DB 0 REPLACE", int(1)),
            ("COPY s t DB 1", err("ERR DB index is out of range")),
            ("COPY s t DB notanumber", err(NOT_INTEGER)),
            ("COPY s t FOO", err(SYNTAX)),
            ("COPY l m", int(1)),
            ("RPUSH m d", int(4)),
            ("LRANGE l 0 -1", bulks(&["a", "b", "c"])),
            ("LRANGE m 0 -1", bulks(&["a", "b", "c", "d"])),
        ],
    );
}

#[test]
fn touch_expiretime_object() {
    let mut h = Harness::new();
    h.run(T, "SET a 12");
    h.run(T, "SET b hello PX 1500");
    h.run(T, &format!("SET c {}", "x".repeat(45)));
    h.run(T, "RPUSH l x");
    h.run(T, "HSET h f v");
    h.expect_all(
        T,
        &[
            ("TOUCH a b missing", int(2)),
            ("EXPIRETIME a", int(-1)),
            ("EXPIRETIME missing", int(-2)),
            ("PEXPIRETIME b", int((T + 1500) as i64)),
            ("EXPIRETIME b", int(((T + 1500 + 500) / 1000) as i64)),
            ("OBJECT ENCODING a", bulk("int")),
            ("OBJECT ENCODING b", bulk("embstr")),
            ("OBJECT ENCODING c", bulk("raw")),
            ("OBJECT ENCODING l", bulk("quicklist")),
            ("OBJECT ENCODING h", bulk("listpack")),
            ("OBJECT ENCODING missing", null()),
            ("OBJECT REFCOUNT a", int(i64::from(i32::MAX))),
            ("OBJECT REFCOUNT b", int(1)),
            ("OBJECT IDLETIME b", int(0)),
            (
                "OBJECT NOPE a",
                err("ERR unknown subcommand 'NOPE'. Try OBJECT HELP."),
            ),
            ("OBJECT ENCODING", arity("object|encoding")),
        ],
    );
    let Reply::Error(freq) = h.run(T, "OBJECT FREQ a") else {
        panic!("FREQ answers an error without an LFU policy")
    };
    assert!(freq.starts_with("ERR An LFU maxmemory policy is not selected"));
    assert!(matches!(h.run(T, "OBJECT HELP"), Reply::Array(lines) if lines.len() > 4));
}

#[test]
fn randomkey_is_uniform_and_seeded_by_the_nonce() {
    let mut h = Harness::new();
    h.run(T, "MSET foo x bar y");
    let mut counts = std::collections::BTreeMap::new();
    for nonce in 0..1000u64 {
        let command = synod_kv::KvCommand::RandomKey { nonce };
        let reply = h.apply(T, &command);
        *counts.entry(format!("{reply:?}")).or_insert(0u32) += 1;
    }
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|&count| count > 400), "{counts:?}");
    // Many keys: the windowed pick still reaches most of them.
    let mut h = Harness::new();
    for index in 0..2000 {
        h.run(T, &format!("SET k{index} v"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for nonce in 0..4000u64 {
        seen.insert(format!(
            "{:?}",
            h.apply(T, &synod_kv::KvCommand::RandomKey { nonce })
        ));
    }
    assert!(seen.len() > 1500, "{}", seen.len());
}

#[test]
fn sort_lists() {
    let mut h = Harness::new();
    h.run(T, "RPUSH l 3 1 2 10");
    h.run(T, "RPUSH words banana apple cherry");
    h.run(T, "MSET w_1 30 w_2 20 w_3 10 w_10 40 o_1 one o_2 two");
    h.run(T, "HSET hw_1 f b");
    h.run(T, "HSET hw_2 f a");
    h.expect_all(
        T,
        &[
            ("SORT l", bulks(&["1", "2", "3", "10"])),
            ("SORT l DESC", bulks(&["10", "3", "2", "1"])),
            ("SORT l ALPHA", bulks(&["1", "10", "2", "3"])),
            ("SORT l LIMIT 1 2", bulks(&["2", "3"])),
            ("SORT l LIMIT 10 2", bulks(&[])),
            ("SORT l LIMIT -5 -1", bulks(&["1", "2", "3", "10"])),
            ("SORT l BY w_*", bulks(&["3", "2", "1", "10"])),
            ("SORT l BY nosort", bulks(&["3", "1", "2", "10"])),
            // From the review, as Redis 7.0.15 answers: DESC reads an
            // unsorted list from its tail, and LIMIT applies after.
            ("SORT l BY nosort DESC", bulks(&["10", "2", "1", "3"])),
            ("SORT l BY nosort DESC LIMIT 0 2", bulks(&["10", "2"])),
            ("SORT l BY nosort LIMIT 1 2", bulks(&["1", "2"])),
            (
                "SORT l BY w_* GET # GET o_*",
                array(vec![
                    bulk("3"),
                    null(),
                    bulk("2"),
                    bulk("two"),
                    bulk("1"),
                    bulk("one"),
                    bulk("10"),
                    null(),
                ]),
            ),
            ("SORT l BY hw_*->f ALPHA LIMIT 0 2", bulks(&["10", "3"])),
            (
                "SORT words",
                err("ERR One or more scores can't be converted into double"),
            ),
            (
                "SORT words ALPHA DESC",
                bulks(&["cherry", "banana", "apple"]),
            ),
            ("SORT_RO l LIMIT 0 1", bulks(&["1"])),
            ("SORT_RO l STORE x", err(SYNTAX)),
            ("SORT l STORE dst", int(4)),
            ("LRANGE dst 0 -1", bulks(&["1", "2", "3", "10"])),
            ("SORT missing STORE dst", int(0)),
            ("EXISTS dst", int(0)),
            ("SORT missing", bulks(&[])),
            ("SORT w_1", err(WRONGTYPE)),
            ("SORT l LIMIT 0", err(SYNTAX)),
        ],
    );
}

#[test]
fn large_sort_and_lcs_run_off_the_loop_with_the_same_answer() {
    use synod::StateMachine;
    let mut h = Harness::new();
    let items: Vec<String> = (0..5000)
        .map(|index| (index * 7919 % 5000).to_string())
        .collect();
    h.run(T, &format!("RPUSH big {}", items.join(" ")));
    let long = "ab".repeat(300);
    h.run(T, &format!("MSET s1 {long} s2 {long}"));
    for line in ["SORT big LIMIT 10 5", "LCS s1 s2 LEN"] {
        let encoded = parse(&args(line)).unwrap().encode();
        let context = ctx(h.instance, T);
        let job = h
            .store
            .query_view(&encoded, &context)
            .expect("answered off the loop");
        assert_eq!(job(), h.store.query(&encoded, &context), "{line}");
    }
    assert_eq!(h.run(T, "SORT big LIMIT 0 3"), bulks(&["0", "1", "2"]));
}
