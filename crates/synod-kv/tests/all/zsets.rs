//! The sorted-set commands of issue 16, through the whole state-machine
//! path: exact replies (scores as doubles), Redis' errors, wrong types,
//! missing keys, out-of-range and hostile arguments, and sets deleted when
//! emptied.

use crate::common;

use common::*;
use synod_resp::Reply;

fn double(value: f64) -> Reply {
    Reply::Double(value)
}

fn scored(items: &[(&str, f64)]) -> Reply {
    Reply::Pairs(
        items
            .iter()
            .map(|(member, score)| (bulk(member), double(*score)))
            .collect(),
    )
}

const NOT_FLOAT: &str = "ERR value is not a valid float";
const RANGE_NOT_FLOAT: &str = "ERR min or max is not a float";
const LEX_INVALID: &str = "ERR min or max not valid string range item";

#[test]
fn zadd_options_and_replies() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 1 a 2 b 3 c", int(3)),
            ("ZADD z 1 a", int(0)),
            ("ZADD z CH 5 a 1 d", int(2)),
            (
                "ZRANGE z 0 -1 WITHSCORES",
                scored(&[("d", 1.0), ("b", 2.0), ("c", 3.0), ("a", 5.0)]),
            ),
            ("ZADD z NX 9 a 9 e", int(1)),
            ("ZSCORE z a", double(5.0)),
            ("ZADD z XX 7 a 7 f", int(0)),
            ("ZSCORE z a", double(7.0)),
            ("ZSCORE z f", null()),
            ("ZADD z GT CH 1 a 8 b", int(1)),
            ("ZADD z LT CH 10 c 0 c", int(1)),
            ("ZSCORE z c", double(0.0)),
            ("ZADD z INCR 2.5 a", double(9.5)),
            ("ZADD z NX INCR 1 a", null()),
            ("ZADD z XX INCR 1 nope", null()),
            ("ZADD missing XX 1 a", int(0)),
            ("ZADD missing XX INCR 1 a", null()),
            ("EXISTS missing", int(0)),
            (
                "ZADD z NX XX 1 a",
                err("ERR XX and NX options at the same time are not compatible"),
            ),
            (
                "ZADD z GT LT 1 a",
                err("ERR GT, LT, and/or NX options at the same time are not compatible"),
            ),
            (
                "ZADD z NX GT 1 a",
                err("ERR GT, LT, and/or NX options at the same time are not compatible"),
            ),
            (
                "ZADD z INCR 1 a 2 b",
                err("ERR INCR option supports a single increment-element pair"),
            ),
            ("ZADD z 1", arity("zadd")),
            ("ZADD z CH 1", err(SYNTAX)),
            ("ZADD z 1 a 2", err(SYNTAX)),
            ("ZADD z nan a", err(NOT_FLOAT)),
            ("ZADD z x a", err(NOT_FLOAT)),
            ("ZADD z inf a -inf b", int(0)),
            ("ZRANGE z 0 0", bulks(&["b"])),
            ("ZRANGE z -1 -1", bulks(&["a"])),
            (
                "ZINCRBY z -inf a",
                err("ERR resulting score is not a number (NaN)"),
            ),
            ("ZSCORE z a", Reply::Double(f64::INFINITY)),
            ("SET s v", ok()),
            ("ZADD s 1 a", err(WRONGTYPE)),
            ("ZINCRBY s 1 a", err(WRONGTYPE)),
            ("TYPE z", Reply::Simple("zset".into())),
            ("OBJECT ENCODING z", bulk("listpack")),
        ],
    );
}

#[test]
fn zincrby_zrem_zcard_zmscore() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZINCRBY z 1.5 a", double(1.5)),
            ("ZINCRBY z -1.5 a", double(0.0)),
            ("ZINCRBY z x a", err(NOT_FLOAT)),
            ("ZADD z 2 b 3 c", int(2)),
            ("ZCARD z", int(3)),
            ("ZCARD missing", int(0)),
            (
                "ZMSCORE z a nope c",
                array(vec![double(0.0), null(), double(3.0)]),
            ),
            ("ZMSCORE missing a b", array(vec![null(), null()])),
            ("ZREM z a nope a", int(1)),
            ("ZREM missing a", int(0)),
            ("ZREM z b c", int(2)),
            ("EXISTS z", int(0)),
            ("SET s v", ok()),
            ("ZREM s a", err(WRONGTYPE)),
            ("ZCARD s", err(WRONGTYPE)),
            ("ZSCORE s a", err(WRONGTYPE)),
            ("ZMSCORE s a", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn ranks_and_rank_ranges() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 1 a 2 b 3 c 4 d", int(4)),
            ("ZRANK z a", int(0)),
            ("ZRANK z d", int(3)),
            ("ZREVRANK z a", int(3)),
            ("ZRANK z nope", null()),
            ("ZRANK missing a", null()),
            ("ZRANGE z 1 2", bulks(&["b", "c"])),
            ("ZRANGE z -2 -1", bulks(&["c", "d"])),
            ("ZRANGE z 3 1", bulks(&[])),
            ("ZRANGE z 5 10", bulks(&[])),
            ("ZRANGE z -100 100", bulks(&["a", "b", "c", "d"])),
            ("ZRANGE z -9223372036854775808 9223372036854775807", bulks(&["a", "b", "c", "d"])),
            ("ZREVRANGE z 0 1", bulks(&["d", "c"])),
            ("ZRANGE z 0 1 REV WITHSCORES", scored(&[("d", 4.0), ("c", 3.0)])),
            ("ZREVRANGE z 2 3", bulks(&["b", "a"])),
            ("ZRANGE missing 0 -1", bulks(&[])),
            ("ZRANGE z 0 -1 LIMIT 0 1", err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")),
            ("ZRANGE z 0 -1 BYLEX WITHSCORES", err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")),
            ("ZRANGE z 0 -1 FOO", err(SYNTAX)),
            ("ZRANGE z a -1", err(NOT_INTEGER)),
            ("ZREVRANGE z 0 -1 REV", err(SYNTAX)),
            ("ZREMRANGEBYRANK z 1 -2", int(2)),
            ("ZRANGE z 0 -1", bulks(&["a", "d"])),
            ("ZREMRANGEBYRANK z 5 9", int(0)),
            ("ZREMRANGEBYRANK z 0 -1", int(2)),
            ("EXISTS z", int(0)),
            ("SET s v", ok()),
            ("ZRANK s a", err(WRONGTYPE)),
            ("ZRANGE s 0 -1", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn score_ranges_with_limits() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z -inf x 1 a 2 b 3 c 4 d inf y", int(6)),
            ("ZRANGEBYSCORE z 2 3", bulks(&["b", "c"])),
            ("ZRANGEBYSCORE z (2 3", bulks(&["c"])),
            ("ZRANGEBYSCORE z (1 (4", bulks(&["b", "c"])),
            (
                "ZRANGEBYSCORE z -inf +inf",
                bulks(&["x", "a", "b", "c", "d", "y"]),
            ),
            ("ZRANGEBYSCORE z (-inf (inf", bulks(&["a", "b", "c", "d"])),
            ("ZRANGEBYSCORE z 3 2", bulks(&[])),
            ("ZRANGEBYSCORE z (2 2", bulks(&[])),
            ("ZRANGEBYSCORE z 1 4 LIMIT 1 2", bulks(&["b", "c"])),
            ("ZRANGEBYSCORE z 1 4 LIMIT 1 -1", bulks(&["b", "c", "d"])),
            ("ZRANGEBYSCORE z 1 4 LIMIT -1 2", bulks(&[])),
            (
                "ZRANGEBYSCORE z 1 4 LIMIT 9223372036854775807 1",
                bulks(&[]),
            ),
            (
                "ZRANGEBYSCORE z 1 2 WITHSCORES",
                scored(&[("a", 1.0), ("b", 2.0)]),
            ),
            ("ZREVRANGEBYSCORE z 3 2", bulks(&["c", "b"])),
            ("ZREVRANGEBYSCORE z (3 -inf LIMIT 1 2", bulks(&["a", "x"])),
            ("ZRANGE z 3 (4 BYSCORE REV", bulks(&[])),
            ("ZRANGE z (4 2 BYSCORE REV", bulks(&["c", "b"])),
            ("ZCOUNT z 2 +inf", int(4)),
            ("ZCOUNT z (2 (4", int(1)),
            ("ZCOUNT missing 0 1", int(0)),
            ("ZCOUNT z x 1", err(RANGE_NOT_FLOAT)),
            ("ZCOUNT z nan 1", err(RANGE_NOT_FLOAT)),
            ("ZRANGEBYSCORE z 1 (", err(RANGE_NOT_FLOAT)),
            ("ZRANGEBYSCORE z 1 2 LIMIT 1", err(SYNTAX)),
            ("ZRANGEBYSCORE z 1 2 BYLEX", err(SYNTAX)),
            ("ZREMRANGEBYSCORE z (1 3", int(2)),
            ("ZRANGE z 0 -1", bulks(&["x", "a", "d", "y"])),
            ("ZREMRANGEBYSCORE z -inf +inf", int(4)),
            ("EXISTS z", int(0)),
        ],
    );
}

#[test]
fn lex_ranges() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 0 a 0 b 0 c 0 d 0 e", int(5)),
            ("ZRANGEBYLEX z - +", bulks(&["a", "b", "c", "d", "e"])),
            ("ZRANGEBYLEX z [b (d", bulks(&["b", "c"])),
            ("ZRANGEBYLEX z (b [d LIMIT 1 5", bulks(&["d"])),
            ("ZREVRANGEBYLEX z + (c", bulks(&["e", "d"])),
            ("ZREVRANGEBYLEX z [d - LIMIT 0 2", bulks(&["d", "c"])),
            (
                "ZRANGE z [e [a BYLEX REV",
                bulks(&["e", "d", "c", "b", "a"]),
            ),
            ("ZRANGEBYLEX z + -", bulks(&[])),
            ("ZRANGEBYLEX z (c (c", bulks(&[])),
            ("ZLEXCOUNT z [b +", int(4)),
            ("ZLEXCOUNT z - (a", int(0)),
            ("ZLEXCOUNT missing - +", int(0)),
            ("ZLEXCOUNT z b +", err(LEX_INVALID)),
            (
                "ZRANGEBYLEX z - + WITHSCORES",
                err("ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
            ),
            ("ZREMRANGEBYLEX z [b [c", int(2)),
            ("ZRANGE z 0 -1", bulks(&["a", "d", "e"])),
            ("ZREMRANGEBYLEX z - +", int(3)),
            ("EXISTS z", int(0)),
        ],
    );
}

#[test]
fn pops() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 1 a 2 b 3 c", int(3)),
            ("ZPOPMIN z", array(vec![bulk("a"), double(1.0)])),
            ("ZPOPMAX z 5", scored(&[("c", 3.0), ("b", 2.0)])),
            ("EXISTS z", int(0)),
            ("ZPOPMIN z", array(vec![])),
            ("ZPOPMIN z 0", array(vec![])),
            (
                "ZPOPMIN z -1",
                err("ERR value is out of range, must be positive"),
            ),
            ("ZPOPMIN z 1 2", arity("zpopmin")),
            ("ZADD z 1 a 2 b 3 c", int(3)),
            (
                "ZPOPMIN z 9223372036854775807",
                scored(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
            ),
            ("ZADD z2 1 a 2 b", int(2)),
            (
                "ZMPOP 3 missing z2 z MAX COUNT 5",
                array(vec![
                    bulk("z2"),
                    array(vec![
                        array(vec![bulk("b"), double(2.0)]),
                        array(vec![bulk("a"), double(1.0)]),
                    ]),
                ]),
            ),
            ("ZMPOP 1 z2 MIN", Reply::NullArray),
            (
                "ZMPOP 0 z2 MIN",
                err("ERR numkeys should be greater than 0"),
            ),
            ("ZMPOP 2 z2 MIN", err(SYNTAX)),
            ("ZMPOP 1 z2 MIDDLE", err(SYNTAX)),
            (
                "ZMPOP 1 z2 MIN COUNT 0",
                err("ERR count should be greater than 0"),
            ),
            ("ZMPOP 1 z2 MIN COUNT 1 COUNT 1", err(SYNTAX)),
            ("SET s v", ok()),
            ("ZPOPMIN s", err(WRONGTYPE)),
            ("ZMPOP 1 s MIN", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn union_inter_diff() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD a 1 x 2 y 3 z", int(3)),
            ("ZADD b 10 y 20 z 30 w", int(3)),
            (
                "ZUNION 2 a b WITHSCORES",
                scored(&[("x", 1.0), ("y", 12.0), ("z", 23.0), ("w", 30.0)]),
            ),
            ("ZINTER 2 a b", bulks(&["y", "z"])),
            (
                "ZINTER 2 a b WEIGHTS 2 3 WITHSCORES",
                scored(&[("y", 34.0), ("z", 66.0)]),
            ),
            (
                "ZINTER 2 a b AGGREGATE MIN WITHSCORES",
                scored(&[("y", 2.0), ("z", 3.0)]),
            ),
            (
                "ZUNION 2 a b AGGREGATE MAX WITHSCORES",
                scored(&[("x", 1.0), ("y", 10.0), ("z", 20.0), ("w", 30.0)]),
            ),
            ("ZDIFF 2 a b WITHSCORES", scored(&[("x", 1.0)])),
            ("ZDIFF 2 missing a", bulks(&[])),
            ("ZINTER 2 a missing", bulks(&[])),
            ("ZUNIONSTORE d 2 a b", int(4)),
            (
                "ZRANGE d 0 -1 WITHSCORES",
                scored(&[("x", 1.0), ("y", 12.0), ("z", 23.0), ("w", 30.0)]),
            ),
            ("ZINTERSTORE d 2 a missing", int(0)),
            ("EXISTS d", int(0)),
            ("ZDIFFSTORE d 2 a b", int(1)),
            ("ZINTERCARD 2 a b", int(2)),
            ("ZINTERCARD 2 a b LIMIT 1", int(1)),
            ("ZINTERCARD 2 a missing", int(0)),
            (
                "ZINTERCARD 1 a LIMIT -1",
                err("ERR LIMIT can't be negative"),
            ),
            (
                "ZINTERCARD 0 a",
                err("ERR at least 1 input key is needed for 'zintercard' command"),
            ),
            (
                "ZUNION 0 a",
                err("ERR at least 1 input key is needed for 'zunion' command"),
            ),
            (
                "ZUNIONSTORE d 0 a",
                err("ERR at least 1 input key is needed for 'zunionstore' command"),
            ),
            ("ZUNION 3 a b", err(SYNTAX)),
            ("ZUNION 2 a b WEIGHTS 1", err(SYNTAX)),
            (
                "ZUNION 2 a b WEIGHTS 1 x",
                err("ERR weight value is not a float"),
            ),
            ("ZUNION 2 a b AGGREGATE AVG", err(SYNTAX)),
            ("ZDIFF 2 a b WEIGHTS 1 1", err(SYNTAX)),
            ("ZUNIONSTORE d 2 a b WITHSCORES", err(SYNTAX)),
            ("ZUNION a a", err(NOT_INTEGER)),
            ("ZADD inf 1 x", int(1)),
            ("ZADD ninf 1 x", int(1)),
            (
                "ZUNION 2 inf ninf WEIGHTS inf -inf WITHSCORES",
                scored(&[("x", 0.0)]),
            ),
            (
                "ZUNION 2 inf ninf WEIGHTS inf 0 WITHSCORES",
                Reply::Pairs(vec![(bulk("x"), Reply::Double(f64::INFINITY))]),
            ),
            ("SET s v", ok()),
            ("ZUNION 2 a s", err(WRONGTYPE)),
            ("ZUNIONSTORE d 2 a s", err(WRONGTYPE)),
            ("ZINTERCARD 2 a s", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn plain_sets_are_inputs_whose_members_score_one() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD a 1 x 2 y 3 z", int(3)),
            ("SADD s y z w", int(3)),
            // An intset: its members are inputs as text, as Redis' are.
            ("SADD n 3 1 2", int(3)),
            ("OBJECT ENCODING n", bulk("intset")),
            (
                "ZUNION 2 a s WITHSCORES",
                scored(&[("w", 1.0), ("x", 1.0), ("y", 3.0), ("z", 4.0)]),
            ),
            ("ZINTER 2 a s WITHSCORES", scored(&[("y", 3.0), ("z", 4.0)])),
            (
                "ZINTER 2 s a WEIGHTS 10 1 WITHSCORES",
                scored(&[("y", 12.0), ("z", 13.0)]),
            ),
            (
                "ZINTER 2 s a AGGREGATE MAX WITHSCORES",
                scored(&[("y", 2.0), ("z", 3.0)]),
            ),
            ("ZDIFF 2 s a WITHSCORES", scored(&[("w", 1.0)])),
            ("ZDIFF 2 a s WITHSCORES", scored(&[("x", 1.0)])),
            (
                "ZUNION 2 n s WEIGHTS 2 -1 WITHSCORES",
                scored(&[
                    ("w", -1.0),
                    ("y", -1.0),
                    ("z", -1.0),
                    ("1", 2.0),
                    ("2", 2.0),
                    ("3", 2.0),
                ]),
            ),
            ("ZINTER 2 n s", bulks(&[])),
            ("ZINTER 2 s missing", bulks(&[])),
            ("ZUNION 2 missing s", bulks(&["w", "y", "z"])),
            ("ZINTERCARD 2 a s", int(2)),
            ("ZINTERCARD 2 s a LIMIT 1", int(1)),
            ("ZINTERCARD 1 n", int(3)),
            ("ZUNIONSTORE d 2 s s", int(3)),
            ("TYPE d", simple("zset")),
            (
                "ZRANGE d 0 -1 WITHSCORES",
                scored(&[("w", 2.0), ("y", 2.0), ("z", 2.0)]),
            ),
            ("ZINTERSTORE d 2 s a", int(2)),
            (
                "ZRANGE d 0 -1 WITHSCORES",
                scored(&[("y", 3.0), ("z", 4.0)]),
            ),
            ("ZDIFFSTORE d 2 n s", int(3)),
            ("ZRANGE d 0 -1", bulks(&["1", "2", "3"])),
            // The inputs are read, never changed.
            ("TYPE s", simple("set")),
            ("SCARD s", int(3)),
            // A STORE over one of its own set inputs replaces it.
            ("ZUNIONSTORE s 2 s a", int(4)),
            ("TYPE s", simple("zset")),
            (
                "ZRANGE s 0 -1 WITHSCORES",
                scored(&[("w", 1.0), ("x", 1.0), ("y", 3.0), ("z", 4.0)]),
            ),
            // Other types stay WRONGTYPE, even next to a missing key.
            ("SET str v", ok()),
            ("RPUSH l v", int(1)),
            ("HSET h f v", int(1)),
            ("ZUNION 2 n str", err(WRONGTYPE)),
            ("ZINTER 2 missing l", err(WRONGTYPE)),
            ("ZDIFF 2 n h", err(WRONGTYPE)),
            ("ZINTERCARD 2 n l", err(WRONGTYPE)),
            ("ZUNIONSTORE d 2 n str", err(WRONGTYPE)),
            ("ZRANGE d 0 -1", bulks(&["1", "2", "3"])),
        ],
    );
}

#[test]
fn zrangestore() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 1 a 2 b 3 c", int(3)),
            ("ZRANGESTORE d z 0 1", int(2)),
            (
                "ZRANGE d 0 -1 WITHSCORES",
                scored(&[("a", 1.0), ("b", 2.0)]),
            ),
            ("ZRANGESTORE d z (1 +inf BYSCORE LIMIT 0 1", int(1)),
            ("ZRANGE d 0 -1", bulks(&["b"])),
            ("ZRANGESTORE d z 5 6", int(0)),
            ("EXISTS d", int(0)),
            ("SET d v", ok()),
            ("ZRANGESTORE d missing 0 -1", int(0)),
            ("EXISTS d", int(0)),
            ("ZRANGESTORE d z 0 -1 WITHSCORES", err(SYNTAX)),
            ("SET s v", ok()),
            ("ZRANGESTORE d s 0 -1", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn zrandmember_is_seeded_and_bounded() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZRANDMEMBER missing", null()),
            ("ZRANDMEMBER missing 5", array(vec![])),
            ("ZADD z 1 a 2 b 3 c", int(3)),
            ("ZRANDMEMBER z 0", array(vec![])),
            ("ZRANDMEMBER z 10 WITHSCORES", scored(&[("a", 1.0), ("b", 2.0), ("c", 3.0)])),
            ("ZRANDMEMBER z -9223372036854775808", err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")),
            ("ZRANDMEMBER z -9223372036854775807 WITHSCORES", err("ERR value is out of range")),
            ("ZRANDMEMBER z 1 FOO", err(SYNTAX)),
        ],
    );
    // Negative counts repeat: bounded by the reply's bytes, not the count.
    let Reply::Error(error) = h.run(0, "ZRANDMEMBER z -9223372036854775807") else {
        panic!("a huge count must be refused");
    };
    assert!(error.contains("ZRANDMEMBER reply"), "{error}");
    let Reply::Array(drawn) = h.run(0, "ZRANDMEMBER z -3000") else {
        panic!("an array");
    };
    for member in ["a", "b", "c"] {
        let seen = drawn.iter().filter(|reply| **reply == bulk(member)).count();
        assert!((850..1150).contains(&seen), "{member}: {seen}");
    }
    // Distinct members, every one of them once.
    let Reply::Array(two) = h.run(0, "ZRANDMEMBER z 2") else {
        panic!("an array");
    };
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1]);
}

#[test]
fn zscan_and_keys_commands() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("ZADD z 1.5 a 2 b 0.1 c", int(3)),
            (
                "ZSCAN z 0",
                array(vec![
                    bulk("0"),
                    bulks(&["a", "1.5", "b", "2", "c", "0.10000000000000001"]),
                ]),
            ),
            (
                "ZSCAN z 0 MATCH b",
                array(vec![bulk("0"), bulks(&["b", "2"])]),
            ),
            ("ZSCAN missing 0", array(vec![bulk("0"), bulks(&[])])),
            ("ZSCAN z x", err("ERR invalid cursor")),
            ("ZSCAN z 0 COUNT 0", err(SYNTAX)),
            ("COPY z c", int(1)),
            ("ZRANGE c 0 -1", bulks(&["c", "a", "b"])),
            ("RENAME c r", ok()),
            ("ZCARD r", int(3)),
            ("EXPIRE r 1", int(1)),
            ("DEL z", int(1)),
        ],
    );
    assert_eq!(h.run(2000, "EXISTS r"), int(0));
    // Paging: every member exactly once over small pages.
    let members: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    let line = members
        .iter()
        .map(|member| format!("1 {member}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(h.run(3000, &format!("ZADD big {line}")), int(50));
    assert_eq!(h.run(3000, "OBJECT ENCODING big"), bulk("listpack"));
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    loop {
        let Reply::Array(parts) = h.run(3000, &format!("ZSCAN big {cursor} COUNT 7")) else {
            panic!("an array");
        };
        let (Reply::Bulk(next), Reply::Array(found)) = (&parts[0], &parts[1]) else {
            panic!("cursor and members");
        };
        seen.extend(found.iter().step_by(2).cloned());
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn encoding_follows_redis_defaults() {
    let mut h = Harness::new();
    let long = "x".repeat(65);
    assert_eq!(h.run(0, &format!("ZADD z 1 {long}")), int(1));
    assert_eq!(h.run(0, "OBJECT ENCODING z"), bulk("skiplist"));
}

#[test]
fn log_encodings_round_trip_and_truncations_are_refused() {
    use synod_kv::{parse, KvCommand};
    let lines = [
        "ZADD z NX CH 1 a -inf b",
        "ZRANGE z (1 +inf BYSCORE REV LIMIT 1 2 WITHSCORES",
        "ZRANGESTORE d z [a (c BYLEX",
        "ZUNIONSTORE d 2 a b WEIGHTS 1 2.5 AGGREGATE MAX",
        "ZINTERCARD 2 a b LIMIT 3",
        "ZMPOP 2 a b MAX COUNT 3",
        "ZRANDMEMBER z -5 WITHSCORES",
        "ZSCAN z 7 MATCH a* COUNT 3",
        "ZREMRANGEBYLEX z - +",
        "ZPOPMAX z 2",
    ];
    for line in lines {
        let command = parse(&args(line)).unwrap();
        let encoded = command.encode();
        assert_eq!(KvCommand::decode(&encoded).unwrap(), command, "{line}");
        assert_eq!(command.encoded_len(), encoded.len(), "{line}");
        for cut in 0..encoded.len() {
            assert!(
                KvCommand::decode(&encoded[..cut]).is_err(),
                "{line} cut at {cut}"
            );
        }
    }
}

/// BZPOPMIN, BZPOPMAX, BZMPOP's replicated try: ZMPOP answered in their
/// shape, nil when every key is empty.
#[test]
fn blocking_zset_pops_as_tries() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("BZPOPMIN a b 0", Reply::NullArray),
            ("BZMPOP 0 2 a b MIN", Reply::NullArray),
            ("ZADD b 1 x 2 y 3 z", int(3)),
            (
                "BZPOPMIN a b 0",
                array(vec![bulk("b"), bulk("x"), double(1.0)]),
            ),
            (
                "BZPOPMAX a b 0",
                array(vec![bulk("b"), bulk("z"), double(3.0)]),
            ),
            (
                "BZMPOP 1 2 a b MAX COUNT 5",
                array(vec![
                    bulk("b"),
                    array(vec![array(vec![bulk("y"), double(2.0)])]),
                ]),
            ),
            ("EXISTS b", int(0)),
            ("SET s v", ok()),
            ("BZPOPMIN s 0", err(WRONGTYPE)),
            ("BZPOPMIN a -1", err("ERR timeout is negative")),
            (
                "BZPOPMAX a x",
                err("ERR timeout is not a float or out of range"),
            ),
            (
                "BZMPOP 0 0 a MIN",
                err("ERR numkeys should be greater than 0"),
            ),
            (
                "BZMPOP 0 1 a MIN COUNT 0",
                err("ERR count should be greater than 0"),
            ),
        ],
    );
}
