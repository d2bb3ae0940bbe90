//! The minimal hash and list types, and WRONGTYPE across types.

use crate::common;

use common::*;
use synod_resp::Reply;

#[test]
fn hashes() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("HSET h f1 v1 f2 v2", int(2)),
            ("HSET h f1 x f3 v3", int(1)),
            ("HGET h f1", bulk("x")),
            ("HGET h nope", null()),
            ("HGET missing f", null()),
            ("HLEN h", int(3)),
            ("HLEN missing", int(0)),
            ("HEXISTS h f2", int(1)),
            ("HEXISTS h nope", int(0)),
            ("HEXISTS missing f", int(0)),
            (
                "HGETALL h",
                Reply::Map(vec![
                    (bulk("f1"), bulk("x")),
                    (bulk("f2"), bulk("v2")),
                    (bulk("f3"), bulk("v3")),
                ]),
            ),
            ("HGETALL missing", Reply::Map(vec![])),
            ("HDEL h f1 nope f1", int(1)),
            ("HDEL h f2 f3", int(2)),
            // The last field gone, the key goes too.
            ("EXISTS h", int(0)),
            ("HDEL h f", int(0)),
            ("HINCRBY h n 5", int(5)),
            ("HINCRBY h n -7", int(-2)),
            ("HSET h s abc", int(1)),
            ("HINCRBY h s 1", err("ERR hash value is not an integer")),
            ("HSET h big 9223372036854775807", int(1)),
            (
                "HINCRBY h big 1",
                err("ERR increment or decrement would overflow"),
            ),
            ("HINCRBY h n x", err(NOT_INTEGER)),
            ("HINCRBY fresh f x", err(NOT_INTEGER)),
            ("EXISTS fresh", int(0)),
            ("HSET h", arity("hset")),
            ("HGET h", arity("hget")),
            ("HDEL h", arity("hdel")),
        ],
    );
}

#[test]
fn lists() {
    let mut h = Harness::new();
    h.expect_all(
        0,
        &[
            ("LPUSH l a b c", int(3)),
            ("RPUSH l d e", int(5)),
            ("LRANGE l 0 -1", bulks(&["c", "b", "a", "d", "e"])),
            ("LRANGE l 1 2", bulks(&["b", "a"])),
            ("LRANGE l -2 -1", bulks(&["d", "e"])),
            ("LRANGE l -100 100", bulks(&["c", "b", "a", "d", "e"])),
            ("LRANGE l 3 1", bulks(&[])),
            ("LRANGE l 5 10", bulks(&[])),
            ("LRANGE missing 0 -1", bulks(&[])),
            ("LRANGE l a 1", err(NOT_INTEGER)),
            ("LLEN l", int(5)),
            ("LLEN missing", int(0)),
            ("LPOP l", bulk("c")),
            ("RPOP l", bulk("e")),
            ("LPOP l 2", bulks(&["b", "a"])),
            ("LPOP l 0", bulks(&[])),
            ("RPOP l 10", bulks(&["d"])),
            ("EXISTS l", int(0)),
            ("LPOP l", null()),
            ("LPOP l 1", Reply::NullArray),
            ("RPOP missing 0", Reply::NullArray),
            (
                "LPOP l -1",
                err("ERR value is out of range, must be positive"),
            ),
            (
                "LPOP l x",
                err("ERR value is out of range, must be positive"),
            ),
            ("LPUSH l", arity("lpush")),
            ("RPOP", arity("rpop")),
        ],
    );
}

#[test]
fn wrongtype_everywhere() {
    let mut h = Harness::new();
    h.run(0, "SET s v");
    h.run(0, "HSET h f v");
    h.run(0, "RPUSH l a");
    for line in [
        "GET h",
        "GET l",
        "GETSET h v",
        "GETDEL l",
        "APPEND h x",
        "INCR l",
        "STRLEN h",
        "HSET s f v",
        "HGET s f",
        "HDEL l f",
        "HGETALL s",
        "HLEN l",
        "HEXISTS s f",
        "HINCRBY l f 1",
        "LPUSH s a",
        "RPUSH h a",
        "LPOP s",
        "RPOP h 2",
        "LRANGE s 0 -1",
        "LLEN h",
    ] {
        assert_eq!(h.run(0, line), err(WRONGTYPE), "{line}");
    }
    // Nothing changed.
    h.expect_all(
        0,
        &[
            ("GET s", bulk("v")),
            ("HGETALL h", Reply::Map(vec![(bulk("f"), bulk("v"))])),
            ("LRANGE l 0 -1", bulks(&["a"])),
            ("DBSIZE", int(3)),
        ],
    );
}
