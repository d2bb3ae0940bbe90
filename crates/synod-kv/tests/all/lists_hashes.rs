//! The list and hash commands of issue 16, through the whole state-machine
//! path: exact replies, errors, wrong types, missing keys, out-of-range
//! indexes, and collections deleted when emptied.

use crate::common;

use common::*;
use synod_resp::Reply;

fn ints(values: &[i64]) -> Reply {
    Reply::Array(values.iter().map(|&value| int(value)).collect())
}

fn pairs(items: &[(&str, &str)]) -> Reply {
    Reply::Pairs(
        items
            .iter()
            .map(|(first, second)| (bulk(first), bulk(second)))
            .collect(),
    )
}

#[test]
fn lindex_lset_linsert() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("RPUSH l a b c", int(3)),
            ("LINDEX l 0", bulk("a")),
            ("LINDEX l -1", bulk("c")),
            ("LINDEX l -3", bulk("a")),
            ("LINDEX l -4", null()),
            ("LINDEX l 3", null()),
            ("LINDEX l 9223372036854775807", null()),
            ("LINDEX l -9223372036854775808", null()),
            ("LINDEX l x", err(NOT_INTEGER)),
            ("LINDEX missing 0", null()),
            ("LSET l 1 B", ok()),
            ("LSET l -1 C", ok()),
            ("LRANGE l 0 -1", bulks(&["a", "B", "C"])),
            ("LSET l 3 x", err("ERR index out of range")),
            ("LSET l -4 x", err("ERR index out of range")),
            ("LSET missing 0 x", err("ERR no such key")),
            ("LINSERT l BEFORE B x", int(4)),
            ("LINSERT l after C y", int(5)),
            ("LRANGE l 0 -1", bulks(&["a", "x", "B", "C", "y"])),
            ("LINSERT l BEFORE nope z", int(-1)),
            ("LINSERT missing BEFORE a z", int(0)),
            ("EXISTS missing", int(0)),
            ("LINSERT l middle a z", err(SYNTAX)),
            ("SET s v", ok()),
            ("LINDEX s 0", err(WRONGTYPE)),
            ("LSET s 0 v", err(WRONGTYPE)),
            ("LINSERT s BEFORE a b", err(WRONGTYPE)),
            ("LINSERT l BEFORE a", arity("linsert")),
        ],
    );
}

#[test]
fn lrem_and_ltrim() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("RPUSH l a b a c a", int(5)),
            ("LREM l 1 a", int(1)),
            ("LRANGE l 0 -1", bulks(&["b", "a", "c", "a"])),
            ("LREM l -1 a", int(1)),
            ("LRANGE l 0 -1", bulks(&["b", "a", "c"])),
            ("LREM l 0 nope", int(0)),
            ("RPUSH l a a", int(5)),
            ("LREM l 0 a", int(3)),
            ("LRANGE l 0 -1", bulks(&["b", "c"])),
            ("LREM l -9223372036854775808 b", int(1)),
            ("LREM l 0 c", int(1)),
            ("EXISTS l", int(0)),
            ("LREM missing 0 a", int(0)),
            ("LREM l x a", err(NOT_INTEGER)),
            ("RPUSH t 1 2 3 4 5", int(5)),
            ("LTRIM t 1 -2", ok()),
            ("LRANGE t 0 -1", bulks(&["2", "3", "4"])),
            ("LTRIM t -100 100", ok()),
            ("LRANGE t 0 -1", bulks(&["2", "3", "4"])),
            ("LTRIM t 1 1", ok()),
            ("LRANGE t 0 -1", bulks(&["3"])),
            ("LTRIM t -9223372036854775808 9223372036854775807", ok()),
            ("LRANGE t 0 -1", bulks(&["3"])),
            // An empty range empties the list, and the key goes.
            ("LTRIM t 2 1", ok()),
            ("EXISTS t", int(0)),
            ("LTRIM missing 0 1", ok()),
            ("EXISTS missing", int(0)),
            ("SET s v", ok()),
            ("LREM s 0 v", err(WRONGTYPE)),
            ("LTRIM s 0 1", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn lpos() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("RPUSH l a b c 1 2 3 c c", int(8)),
            ("LPOS l c", int(2)),
            ("LPOS l nope", null()),
            ("LPOS l c RANK 2", int(6)),
            ("LPOS l c RANK -1", int(7)),
            ("LPOS l c RANK -3", int(2)),
            ("LPOS l c RANK 4", null()),
            ("LPOS l c COUNT 0", ints(&[2, 6, 7])),
            ("LPOS l c COUNT 2", ints(&[2, 6])),
            ("LPOS l c COUNT 2 RANK -1", ints(&[7, 6])),
            ("LPOS l c COUNT 0 RANK 2", ints(&[6, 7])),
            ("LPOS l c COUNT 0 MAXLEN 7", ints(&[2, 6])),
            ("LPOS l c COUNT 0 RANK -1 MAXLEN 2", ints(&[7, 6])),
            ("LPOS l a RANK -1 MAXLEN 1", null()),
            ("LPOS l nope COUNT 5", ints(&[])),
            ("LPOS missing a", null()),
            ("LPOS missing a COUNT 1", ints(&[])),
            (
                "LPOS l c RANK 0",
                err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"),
            ),
            // As Redis 7.0 answers it (see parse_lpos).
            ("LPOS l c RANK -9223372036854775808", int(7)),
            ("LPOS l c RANK 9223372036854775807", null()),
            ("LPOS l c COUNT -1", err("ERR COUNT can't be negative")),
            ("LPOS l c COUNT x", err("ERR COUNT can't be negative")),
            ("LPOS l c MAXLEN -1", err("ERR MAXLEN can't be negative")),
            ("LPOS l c RANK", err(SYNTAX)),
            ("LPOS l c FOO 1", err(SYNTAX)),
            ("SET s v", ok()),
            ("LPOS s v", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn pushx() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("LPUSHX l a", int(0)),
            ("RPUSHX l a", int(0)),
            ("EXISTS l", int(0)),
            ("RPUSH l b", int(1)),
            ("LPUSHX l a0 a1", int(3)),
            ("RPUSHX l c d", int(5)),
            ("LRANGE l 0 -1", bulks(&["a1", "a0", "b", "c", "d"])),
            ("SET s v", ok()),
            ("LPUSHX s a", err(WRONGTYPE)),
            ("RPUSHX l", arity("rpushx")),
        ],
    );
}

#[test]
fn lmove_and_rpoplpush() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("RPUSH src a b c", int(3)),
            ("LMOVE src dst LEFT RIGHT", bulk("a")),
            ("LMOVE src dst right left", bulk("c")),
            ("LRANGE dst 0 -1", bulks(&["c", "a"])),
            ("RPOPLPUSH src dst", bulk("b")),
            ("EXISTS src", int(0)),
            ("LRANGE dst 0 -1", bulks(&["b", "c", "a"])),
            ("RPOPLPUSH src dst", null()),
            ("LMOVE src dst LEFT LEFT", null()),
            // Rotation of one list.
            ("RPOPLPUSH dst dst", bulk("a")),
            ("LRANGE dst 0 -1", bulks(&["a", "b", "c"])),
            ("LMOVE dst dst LEFT RIGHT", bulk("a")),
            ("LRANGE dst 0 -1", bulks(&["b", "c", "a"])),
            ("LMOVE dst dst UP RIGHT", err(SYNTAX)),
            // Wrong types are refused before anything moves.
            ("SET s v", ok()),
            ("LMOVE dst s LEFT LEFT", err(WRONGTYPE)),
            ("LRANGE dst 0 -1", bulks(&["b", "c", "a"])),
            ("RPOPLPUSH s dst", err(WRONGTYPE)),
            ("RPOPLPUSH missing s", null()),
        ],
    );
    // A one-item list rotated onto itself keeps its expiry.
    h.expect_all(0, &[("RPUSH one x", int(1)), ("PEXPIRE one 1000", int(1))]);
    h.expect_all(
        10,
        &[("RPOPLPUSH one one", bulk("x")), ("PTTL one", int(990))],
    );
}

#[test]
fn lmpop() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("LMPOP 2 a b LEFT", Reply::NullArray),
            ("RPUSH b 1 2 3", int(3)),
            ("LMPOP 2 a b LEFT", array(vec![bulk("b"), bulks(&["1"])])),
            (
                "LMPOP 2 a b RIGHT COUNT 10",
                array(vec![bulk("b"), bulks(&["3", "2"])]),
            ),
            ("EXISTS b", int(0)),
            ("SET s v", ok()),
            ("RPUSH c 1", int(1)),
            ("LMPOP 2 s c LEFT", err(WRONGTYPE)),
            ("LMPOP 2 missing s LEFT", err(WRONGTYPE)),
            ("LMPOP 2 c s LEFT", array(vec![bulk("c"), bulks(&["1"])])),
            (
                "LMPOP 0 a LEFT",
                err("ERR numkeys should be greater than 0"),
            ),
            (
                "LMPOP x a LEFT",
                err("ERR numkeys should be greater than 0"),
            ),
            (
                "LMPOP -1 a LEFT",
                err("ERR numkeys should be greater than 0"),
            ),
            ("LMPOP 9223372036854775807 a LEFT", err(SYNTAX)),
            ("LMPOP 2 a LEFT", err(SYNTAX)),
            ("LMPOP 1 a bad", err(SYNTAX)),
            ("LMPOP 1 a LEFT bar", err(SYNTAX)),
            ("LMPOP 1 a RIGHT LEFT", err(SYNTAX)),
            ("LMPOP 1 a COUNT", err(SYNTAX)),
            ("LMPOP 1 a LEFT COUNT 1 COUNT 2", err(SYNTAX)),
            (
                "LMPOP 1 a LEFT COUNT 0",
                err("ERR count should be greater than 0"),
            ),
            (
                "LMPOP 1 a LEFT COUNT x",
                err("ERR count should be greater than 0"),
            ),
            ("LMPOP 1 a", arity("lmpop")),
        ],
    );
}

#[test]
fn hash_reads_and_conditional_writes() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("HMSET h b 2 a 1", ok()),
            ("HMSET h a 10", ok()),
            ("HMSET h a", arity("hmset")),
            ("HMSET h a 1 b", arity("hmset")),
            (
                "HMGET h a nope b",
                array(vec![bulk("10"), null(), bulk("2")]),
            ),
            ("HMGET missing a b", array(vec![null(), null()])),
            ("HSETNX h a 99", int(0)),
            ("HSETNX h c 3", int(1)),
            ("HSETNX fresh f v", int(1)),
            ("HGET h a", bulk("10")),
            ("HSTRLEN h a", int(2)),
            ("HSTRLEN h nope", int(0)),
            ("HSTRLEN missing a", int(0)),
            ("HKEYS h", bulks(&["a", "b", "c"])),
            ("HVALS h", bulks(&["10", "2", "3"])),
            ("HKEYS missing", bulks(&[])),
            ("HVALS missing", bulks(&[])),
            ("SET s v", ok()),
            ("HMSET s a 1", err(WRONGTYPE)),
            ("HMGET s a", err(WRONGTYPE)),
            ("HSETNX s a 1", err(WRONGTYPE)),
            ("HSTRLEN s a", err(WRONGTYPE)),
            ("HKEYS s", err(WRONGTYPE)),
            ("HVALS s", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn hincrbyfloat() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("HINCRBYFLOAT h f 10.5", bulk("10.5")),
            ("HINCRBYFLOAT h f 0.1", bulk("10.6")),
            ("HINCRBYFLOAT h g 1.23", bulk("1.23")),
            ("HINCRBYFLOAT h g 0.77", bulk("2")),
            ("HINCRBYFLOAT h g -0.1", bulk("1.9")),
            (
                "HINCRBYFLOAT h x 0.024390243902439025",
                bulk("0.024390243902439025"),
            ),
            ("HINCRBYFLOAT h x -0.024390243902439025", bulk("0")),
            ("HINCRBYFLOAT h e 5.0e3", bulk("5000")),
            ("HINCRBYFLOAT h y 1.1", bulk("1.1")),
            ("HINCRBYFLOAT h y 0.2", bulk("1.3")),
            ("HINCRBYFLOAT h z 0.1", bulk("0.1")),
            ("HINCRBYFLOAT h z 0.2", bulk("0.3")),
            ("HINCRBYFLOAT h w 1e-20", bulk("0.00000000000000000001")),
            ("HSET h i 17179869184", int(1)),
            ("HINCRBYFLOAT h i 1", bulk("17179869185")),
            ("HSET h s \" 1\"", int(1)),
            ("HINCRBYFLOAT h s 1", err("ERR hash value is not a float")),
            ("HSET h n \"1\\x002\"", int(1)),
            ("HINCRBYFLOAT h n 1", err("ERR hash value is not a float")),
            ("HINCRBYFLOAT h f x", err("ERR value is not a valid float")),
            ("HINCRBYFLOAT h f +inf", err("ERR value is NaN or Infinity")),
            ("HINCRBYFLOAT h f -inf", err("ERR value is NaN or Infinity")),
            (
                "HINCRBYFLOAT h f nan",
                err("ERR value is not a valid float"),
            ),
            ("HSET h big 1.7e308", int(1)),
            (
                "HINCRBYFLOAT h big 1.7e308",
                err("ERR increment would produce NaN or Infinity"),
            ),
            (
                "HINCRBYFLOAT fresh f x",
                err("ERR value is not a valid float"),
            ),
            ("EXISTS fresh", int(0)),
            ("SET s v", ok()),
            ("HINCRBYFLOAT s f 1", err(WRONGTYPE)),
        ],
    );
}

fn fields_of(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Array(items) => items
            .iter()
            .map(|item| match item {
                Reply::Bulk(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn hrandfield_shapes_and_errors() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("HRANDFIELD missing", null()),
            ("HRANDFIELD missing 5", bulks(&[])),
            ("HRANDFIELD missing -5 WITHVALUES", bulks(&[])),
            ("HMSET h a 1 b 2 c 3", ok()),
            ("HRANDFIELD h 0", bulks(&[])),
            ("HRANDFIELD h 3", bulks(&["a", "b", "c"])),
            ("HRANDFIELD h 10", bulks(&["a", "b", "c"])),
            (
                "HRANDFIELD h 3 WITHVALUES",
                pairs(&[("a", "1"), ("b", "2"), ("c", "3")]),
            ),
            ("HRANDFIELD h 1 FOO", err(SYNTAX)),
            ("HRANDFIELD h 1 WITHVALUES x", err(SYNTAX)),
            ("HRANDFIELD h x", err(NOT_INTEGER)),
            (
                "HRANDFIELD h -9223372036854775808",
                err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"),
            ),
            (
                "HRANDFIELD h -9223372036854770000 WITHVALUES",
                err("ERR value is out of range"),
            ),
            ("SET s v", ok()),
            ("HRANDFIELD s", err(WRONGTYPE)),
            ("HRANDFIELD s 1", err(WRONGTYPE)),
        ],
    );
    let reply = h.run(0, "HRANDFIELD h -10");
    let drawn = fields_of(&reply);
    assert_eq!(drawn.len(), 10);
    assert!(drawn.iter().all(|f| ["a", "b", "c"].contains(&f.as_str())));
    let Reply::Pairs(drawn) = h.run(0, "HRANDFIELD h -4 WITHVALUES") else {
        panic!("pairs expected");
    };
    assert_eq!(drawn.len(), 4);
    for (field, value) in drawn {
        let expected = match field {
            Reply::Bulk(ref f) if f.as_ref() == b"a" => "1",
            Reply::Bulk(ref f) if f.as_ref() == b"b" => "2",
            _ => "3",
        };
        assert_eq!(value, bulk(expected));
    }
    let two = fields_of(&h.run(0, "HRANDFIELD h 2"));
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1]);
}

#[test]
fn hrandfield_draws_are_uniform_and_vary_along_the_log() {
    let mut h = Harness::new();
    let fields: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let line = format!(
        "HMSET h {}",
        fields
            .iter()
            .map(|f| format!("{f} v"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(h.run(0, &line), ok());
    // One field per command, each at its own log position: every field
    // comes up, about equally often.
    let mut seen = std::collections::BTreeMap::<Vec<u8>, u32>::new();
    for _ in 0..2000 {
        let Reply::Bulk(field) = h.run(0, "HRANDFIELD h") else {
            panic!("bulk expected");
        };
        *seen.entry(field.to_vec()).or_default() += 1;
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.values().all(|&n| (120..280).contains(&n)), "{seen:?}");
    // With repetition, in one reply.
    let drawn = fields_of(&h.run(0, "HRANDFIELD h -5000"));
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for field in drawn {
        *counts.entry(field).or_default() += 1;
    }
    assert_eq!(counts.len(), 10);
    assert!(
        counts.values().all(|&n| (380..620).contains(&n)),
        "{counts:?}"
    );
    // Distinct fields: every subset size 2 has a fair chance per field.
    let mut picked = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..1000 {
        for field in fields_of(&h.run(0, "HRANDFIELD h 2")) {
            *picked.entry(field).or_default() += 1;
        }
    }
    assert!(
        picked.values().all(|&n| (130..270).contains(&n)),
        "{picked:?}"
    );
}

#[test]
fn hrandfield_is_the_same_on_every_replica() {
    // Two stores applying the same log answer the same draws.
    let mut first = Harness::new();
    let mut second = Harness::new();
    for h in [&mut first, &mut second] {
        assert_eq!(h.run(0, "HMSET h a 1 b 2 c 3 d 4 e 5"), ok());
    }
    for _ in 0..20 {
        assert_eq!(
            first.run(5, "HRANDFIELD h -3 WITHVALUES"),
            second.run(5, "HRANDFIELD h -3 WITHVALUES")
        );
    }
    // Inside one transaction, the same command draws apart by position.
    let transaction = synod_kv::KvCommand::Exec(vec![
        synod_kv::parse(&args("HRANDFIELD h -8")).unwrap(),
        synod_kv::parse(&args("HRANDFIELD h -8")).unwrap(),
    ]);
    let Reply::Array(replies) = first.apply(5, &transaction) else {
        panic!("array expected");
    };
    assert_ne!(replies[0], replies[1]);
}

#[test]
fn hrandfield_reply_is_bounded() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, "HSET h f v"), int(1));
    assert!(matches!(
        h.run(0, "HRANDFIELD h -9223372036854775807"),
        Reply::Error(text) if text.contains("refused")
    ));
}

fn scan_all(h: &mut Harness, key: &str, extra: &str) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut found = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 10_000, "HSCAN does not end");
        let reply = h.run(0, &format!("HSCAN {key} {cursor} {extra}"));
        let Reply::Array(parts) = reply else {
            panic!("array expected: {reply:?}");
        };
        let Reply::Bulk(next) = &parts[0] else {
            panic!("cursor expected");
        };
        let items = fields_of(&parts[1]);
        for pair in items.chunks(2) {
            found.push(pair[0].clone());
        }
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            return (found, calls);
        }
    }
}

#[test]
fn hscan_returns_every_field() {
    let mut h = Harness::new();
    for i in 0..500 {
        assert_eq!(h.run(0, &format!("HSET h key:{i} v{i}")), int(1));
    }
    let (mut found, calls) = scan_all(&mut h, "h", "COUNT 10");
    assert!(calls > 10, "pages of about COUNT fields: {calls} calls");
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 500);
    let (found, _) = scan_all(&mut h, "h", "MATCH key:1* COUNT 7");
    assert_eq!(found.len(), 111);
    // Fields sharing their first 8 bytes (and short or empty fields) are
    // still all returned.
    assert_eq!(h.run(0, "HSET g \"\" 1 a 1 \"a\\x00\" 1 ab 1"), int(4));
    for i in 0..100 {
        h.run(0, &format!("HSET g common-prefix-{i} v"));
    }
    let (mut found, _) = scan_all(&mut h, "g", "COUNT 3");
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 104);
    h.expect_all(
        0,
        &[
            ("HSCAN missing 0", array(vec![bulk("0"), bulks(&[])])),
            ("HSCAN h x", err("ERR invalid cursor")),
            ("HSCAN h -1", err("ERR invalid cursor")),
            ("HSCAN h 0 COUNT 0", err(SYNTAX)),
            ("HSCAN h 0 COUNT", err(SYNTAX)),
            ("HSCAN h 0 FOO 1", err(SYNTAX)),
            ("SET s v", ok()),
            ("HSCAN s 0", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn hscan_survives_deletions_between_calls() {
    let mut h = Harness::new();
    for i in 0..200 {
        h.run(0, &format!("HSET h f{i:03} v"));
    }
    // Delete half the fields after the first page: the rest still come.
    let Reply::Array(parts) = h.run(0, "HSCAN h 0 COUNT 20") else {
        panic!("array expected");
    };
    let Reply::Bulk(cursor) = &parts[0] else {
        panic!("cursor expected");
    };
    let cursor = String::from_utf8_lossy(cursor).into_owned();
    let mut kept: Vec<String> = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            h.run(0, &format!("HDEL h f{i:03}"));
        } else {
            kept.push(format!("f{i:03}"));
        }
    }
    let first_page = fields_of(&parts[1]);
    let mut found: Vec<String> = first_page.chunks(2).map(|p| p[0].clone()).collect();
    let mut cursor = cursor;
    while cursor != "0" {
        let Reply::Array(parts) = h.run(0, &format!("HSCAN h {cursor} COUNT 20")) else {
            panic!("array expected");
        };
        let Reply::Bulk(next) = &parts[0] else {
            panic!("cursor expected");
        };
        found.extend(fields_of(&parts[1]).chunks(2).map(|p| p[0].clone()));
        cursor = String::from_utf8_lossy(next).into_owned();
    }
    for field in kept {
        assert!(found.contains(&field), "{field} missing");
    }
}

/// A blocking pop's replicated try: the non-blocking pop, answered in the
/// blocking command's shape, nil when every key is empty (the connection
/// then waits: see `crate::blocking`).
#[test]
fn blocking_pops_as_tries() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("BLPOP a b 0", Reply::NullArray),
            ("BRPOPLPUSH a b 1", null()),
            ("BLMOVE a b LEFT RIGHT 0.5", null()),
            ("BLMPOP 0 2 a b LEFT", Reply::NullArray),
            ("RPUSH b 1 2 3", int(3)),
            ("BLPOP a b 0", bulks(&["b", "1"])),
            ("BRPOP a b 0", bulks(&["b", "3"])),
            ("BLMOVE b a RIGHT LEFT 0", bulk("2")),
            ("EXISTS b", int(0)),
            ("RPUSH b x y z", int(3)),
            (
                "BLMPOP 0 2 a b RIGHT COUNT 5",
                array(vec![bulk("a"), bulks(&["2"])]),
            ),
            (
                "BLMPOP 0 1 b LEFT COUNT 2",
                array(vec![bulk("b"), bulks(&["x", "y"])]),
            ),
            ("BRPOPLPUSH b b 0", bulk("z")),
            ("LRANGE b 0 -1", bulks(&["z"])),
            // Wrong types answer at once, the first existing key decides.
            ("SET s v", ok()),
            ("BLPOP s b 0", err(WRONGTYPE)),
            ("BLPOP missing s 0", err(WRONGTYPE)),
            ("BRPOPLPUSH b s 0", err(WRONGTYPE)),
            ("LRANGE b 0 -1", bulks(&["z"])),
            // An empty source is nil before the destination is looked at.
            ("BRPOPLPUSH missing s 0", null()),
            // Errors in Redis 7.0's order and words.
            ("BLPOP a -1", err("ERR timeout is negative")),
            (
                "BLPOP a x",
                err("ERR timeout is not a float or out of range"),
            ),
            ("BLPOP a", arity("blpop")),
            (
                "BLMPOP 0 0 a LEFT",
                err("ERR numkeys should be greater than 0"),
            ),
            ("BLMPOP x 1 a UP", err(SYNTAX)),
            (
                "BLMPOP 0 1 a LEFT COUNT 0",
                err("ERR count should be greater than 0"),
            ),
            ("BLMOVE a b UP LEFT 0", err(SYNTAX)),
            ("BRPOPLPUSH a b -0.5", err("ERR timeout is negative")),
        ],
    );
}

/// The try of a client that already blocked (see `crate::blocking`) passes
/// over keys of another type, as Redis leaves a blocked client waiting on
/// them; a wrong-type destination still fails it.
#[test]
fn a_blocked_clients_try_passes_over_other_types() {
    use synod_kv::{parse, BlockingKind, KvCommand};
    let mut h = Harness::new();
    let blocked = |line: &str| match parse(&args(line)).unwrap() {
        KvCommand::Blocking { kind, pop, .. } => KvCommand::Blocking {
            kind,
            pop,
            blocked: true,
        },
        other => panic!("not a blocking pop: {other:?}"),
    };
    h.run(0, "SET s v");
    assert_eq!(h.apply(0, &blocked("BLPOP s 0")), Reply::NullArray);
    h.run(0, "RPUSH l a");
    assert_eq!(h.apply(0, &blocked("BLPOP s l 0")), bulks(&["l", "a"]));
    assert_eq!(h.apply(0, &blocked("BRPOPLPUSH s l 0")), null());
    h.run(0, "RPUSH l a");
    assert_eq!(h.apply(0, &blocked("BRPOPLPUSH l s 0")), err(WRONGTYPE));
    assert_eq!(h.run(0, "LRANGE l 0 -1"), bulks(&["a"]));
    assert!(matches!(
        parse(&args("BZPOPMIN z 0")),
        Ok(KvCommand::Blocking {
            kind: BlockingKind::BZPopMin,
            ..
        })
    ));
}
