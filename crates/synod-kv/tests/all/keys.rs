//! Generic key commands: DEL, UNLINK, EXISTS, TYPE, KEYS, DBSIZE, FLUSH*,
//! RANDOMKEY.

use crate::common;

use common::*;
use synod_resp::Reply;

#[test]
fn del_unlink_exists() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("MSET a 1 b 2 c 3", ok()),
            ("EXISTS a b missing", int(2)),
            // Redis counts a repeated key each time.
            ("EXISTS a a a", int(3)),
            ("DEL a missing", int(1)),
            // ...but deletes it once.
            ("DEL b b", int(1)),
            ("UNLINK c", int(1)),
            ("EXISTS a b c", int(0)),
            ("DEL", arity("del")),
            ("EXISTS", arity("exists")),
            ("UNLINK", arity("unlink")),
        ],
    );
}

#[test]
fn type_reports_each_kind() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("SET s v", ok()),
            ("HSET h f v", int(1)),
            ("RPUSH l a", int(1)),
            ("TYPE s", simple("string")),
            ("TYPE h", simple("hash")),
            ("TYPE l", simple("list")),
            ("TYPE missing", simple("none")),
        ],
    );
}

#[test]
fn keys_with_glob_patterns() {
    let mut h = Harness::new();
    h.run(
        0,
        "MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 h*llo 6 other 7",
    );
    let cases: &[(&str, &[&str])] = &[
        ("KEYS h?llo", &["h*llo", "hallo", "hello", "hxllo"]),
        (
            "KEYS h*llo",
            &["h*llo", "hallo", "heeeello", "hello", "hllo", "hxllo"],
        ),
        ("KEYS h[ae]llo", &["hallo", "hello"]),
        ("KEYS h[^e]llo", &["h*llo", "hallo", "hxllo"]),
        ("KEYS h[a-b]llo", &["hallo"]),
        ("KEYS h\\*llo", &["h*llo"]),
        ("KEYS nothing*", &[]),
        (
            "KEYS *",
            &[
                "h*llo", "hallo", "heeeello", "hello", "hllo", "hxllo", "other",
            ],
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(sorted(h.run(0, line)), bulks(expected), "{line}");
    }
    assert_eq!(h.run(0, "KEYS"), arity("keys"));
}

#[test]
fn dbsize_and_flush() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("DBSIZE", int(0)),
            ("MSET a 1 b 2", ok()),
            ("HSET h f v", int(1)),
            ("DBSIZE", int(3)),
            ("FLUSHDB", ok()),
            ("DBSIZE", int(0)),
            ("MSET a 1 b 2", ok()),
            ("FLUSHALL ASYNC", ok()),
            ("DBSIZE", int(0)),
            ("FLUSHALL sync", ok()),
            ("FLUSHALL foo", err(SYNTAX)),
            ("FLUSHDB async extra", err(SYNTAX)),
            ("DBSIZE extra", arity("dbsize")),
        ],
    );
}

#[test]
fn randomkey_is_deterministic_and_live() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, "RANDOMKEY"), null());
    h.run(0, "MSET a 1 b 2 c 3 d 4");
    h.run(0, "PEXPIRE d 5");
    let mut seen = std::collections::BTreeSet::new();
    for now in 10..200 {
        let first = h.query(now, "RANDOMKEY");
        assert_eq!(first, h.query(now, "RANDOMKEY"), "same position, same key");
        let Reply::Bulk(key) = first else {
            panic!("expected a key")
        };
        assert_ne!(&key[..], b"d", "an expired key is never returned");
        seen.insert(key);
    }
    assert_eq!(seen.len(), 3, "every live key comes up eventually");
    assert_eq!(h.run(0, "RANDOMKEY x"), arity("randomkey"));
}
