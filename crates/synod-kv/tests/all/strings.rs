//! String commands: replies and error text as Redis 7 gives them.

use crate::common;

use common::*;

const T: u64 = 1_000_000;

#[test]
fn get_and_set_basics() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("GET k", null()),
            ("SET k v", ok()),
            ("get k", bulk("v")),
            ("SeT k \"two words\"", ok()),
            ("GET k", bulk("two words")),
            ("SET empty \"\"", ok()),
            ("GET empty", bulk("")),
            ("SET bin \"a\\0b\\r\\n\"", ok()),
            ("STRLEN bin", int(5)),
            ("GET", arity("get")),
            ("GET a b", arity("get")),
            ("SET k", arity("set")),
        ],
    );
}

#[test]
fn set_conditions_and_get_option() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SET k v XX", null()),
            ("EXISTS k", int(0)),
            ("SET k v NX", ok()),
            ("SET k other NX", null()),
            ("GET k", bulk("v")),
            ("SET k v2 XX", ok()),
            ("SET k v3 GET", bulk("v2")),
            ("SET new v GET", null()),
            ("GET new", bulk("v")),
            // Redis 7 allows NX with GET: the old value comes back, no set.
            ("SET k v4 NX GET", bulk("v3")),
            ("GET k", bulk("v3")),
            ("SET missing v XX GET", null()),
            ("EXISTS missing", int(0)),
            ("SET k v NX NX", null()),
        ],
    );
}

#[test]
fn set_option_errors() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SET k v NX XX", err(SYNTAX)),
            ("SET k v XX NX", err(SYNTAX)),
            ("SET k v EX", err(SYNTAX)),
            ("SET k v EX 10 PX 100", err(SYNTAX)),
            ("SET k v EX 10 EXAT 100", err(SYNTAX)),
            ("SET k v KEEPTTL EX 10", err(SYNTAX)),
            ("SET k v EX 10 KEEPTTL", err(SYNTAX)),
            ("SET k v FOO", err(SYNTAX)),
            ("SET k v EX abc", err(NOT_INTEGER)),
            ("SET k v EX 1.5", err(NOT_INTEGER)),
            (
                "SET k v EX 0",
                err("ERR invalid expire time in 'set' command"),
            ),
            (
                "SET k v EX -1",
                err("ERR invalid expire time in 'set' command"),
            ),
            (
                "SET k v PX 0",
                err("ERR invalid expire time in 'set' command"),
            ),
            (
                "SET k v EXAT 0",
                err("ERR invalid expire time in 'set' command"),
            ),
            (
                "SET k v PXAT -5",
                err("ERR invalid expire time in 'set' command"),
            ),
            // Seconds that overflow when converted to milliseconds.
            (
                "SET k v EX 9223372036854776",
                err("ERR invalid expire time in 'set' command"),
            ),
            // Fits in ms, but overflows once the log time is added.
            (
                "SET k v EX 9223372036854775",
                err("ERR invalid expire time in 'set' command"),
            ),
            ("EXISTS k", int(0)),
            ("SET k v EX 10 EX 20", ok()),
            ("TTL k", int(20)),
        ],
    );
}

#[test]
fn set_expiry_options() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SET k v EX 10", ok()),
            ("PTTL k", int(10_000)),
            ("SET k v PX 1500", ok()),
            ("PTTL k", int(1500)),
            ("SET k v KEEPTTL", ok()),
            ("PTTL k", int(1500)),
            ("SET k v", ok()),
            ("PTTL k", int(-1)),
            ("SET k v EXAT 2000", ok()),
            ("PTTL k", int(2_000_000 - T as i64)),
            ("SET k v PXAT 1000500", ok()),
            ("PTTL k", int(500)),
            // An absolute time already past: the SET succeeds, the key is gone.
            ("SET k v PXAT 999999", ok()),
            ("EXISTS k", int(0)),
            ("SET k v PXAT 1000000", ok()),
            ("EXISTS k", int(0)),
            ("SET k v px 100", ok()),
            ("SET k v2 keepttl get", bulk("v")),
            ("PTTL k", int(100)),
        ],
    );
}

#[test]
fn set_get_on_wrong_type() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("HSET h f v", int(1)),
            ("SET h v GET", err(WRONGTYPE)),
            ("TYPE h", simple("hash")),
            // Plain SET replaces a value of any type.
            ("SET h v", ok()),
            ("TYPE h", simple("string")),
            ("LPUSH l a", int(1)),
            ("GETSET l v", err(WRONGTYPE)),
            ("GET l", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn setnx_setex_psetex() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SETNX k v", int(1)),
            ("SETNX k w", int(0)),
            ("GET k", bulk("v")),
            ("SETEX k 10 v2", ok()),
            ("TTL k", int(10)),
            ("GET k", bulk("v2")),
            ("PSETEX k 1500 v3", ok()),
            ("PTTL k", int(1500)),
            (
                "SETEX k 0 v",
                err("ERR invalid expire time in 'setex' command"),
            ),
            (
                "SETEX k -1 v",
                err("ERR invalid expire time in 'setex' command"),
            ),
            (
                "PSETEX k 0 v",
                err("ERR invalid expire time in 'psetex' command"),
            ),
            ("SETEX k abc v", err(NOT_INTEGER)),
            ("SETEX k 10", arity("setex")),
            ("SETNX k", arity("setnx")),
            ("GET k", bulk("v3")),
        ],
    );
}

#[test]
fn getset_getdel_getex() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("GETSET k v", null()),
            ("GET k", bulk("v")),
            ("EXPIRE k 100", int(1)),
            ("GETSET k w", bulk("v")),
            ("TTL k", int(-1)),
            ("GETDEL k", bulk("w")),
            ("GETDEL k", null()),
            ("EXISTS k", int(0)),
            ("GETEX k", null()),
            ("SET k v", ok()),
            ("GETEX k", bulk("v")),
            ("GETEX k EX 100", bulk("v")),
            ("TTL k", int(100)),
            ("GETEX k PX 2500", bulk("v")),
            ("PTTL k", int(2500)),
            ("GETEX k PERSIST", bulk("v")),
            ("TTL k", int(-1)),
            ("GETEX k EXAT 2000", bulk("v")),
            ("TTL k", int(1000)),
            ("GETEX k EX 10 PERSIST", err(SYNTAX)),
            ("GETEX k PERSIST EX 10", err(SYNTAX)),
            ("GETEX k NX", err(SYNTAX)),
            ("GETEX k EX", err(SYNTAX)),
            (
                "GETEX k EX 0",
                err("ERR invalid expire time in 'getex' command"),
            ),
            ("GETEX k EX x", err(NOT_INTEGER)),
            // An absolute time in the past deletes the key after reading it.
            ("GETEX k PXAT 1", bulk("v")),
            ("EXISTS k", int(0)),
            ("HSET h f v", int(1)),
            ("GETDEL h", err(WRONGTYPE)),
            ("GETEX h", err(WRONGTYPE)),
            ("EXISTS h", int(1)),
        ],
    );
}

#[test]
fn mget_mset_msetnx() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("MSET a 1 b 2", ok()),
            ("LPUSH l x", int(1)),
            (
                "MGET a b missing l",
                array(vec![bulk("1"), bulk("2"), null(), null()]),
            ),
            ("MSET a 1 b", arity("mset")),
            ("MSET a", arity("mset")),
            ("MSETNX a 9 c 3", int(0)),
            ("EXISTS c", int(0)),
            ("MSETNX c 3 d 4", int(1)),
            ("MGET c d", bulks(&["3", "4"])),
            ("MSETNX e 1 f", arity("msetnx")),
            ("EXPIRE a 100", int(1)),
            ("MSET a 5", ok()),
            ("TTL a", int(-1)),
            ("MSET l v", ok()),
            ("TYPE l", simple("string")),
            ("MSET x 1 x 2", ok()),
            ("GET x", bulk("2")),
        ],
    );
}

#[test]
fn integer_counters() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("INCR n", int(1)),
            ("INCRBY n 10", int(11)),
            ("DECR n", int(10)),
            ("DECRBY n 3", int(7)),
            ("INCRBY n -7", int(0)),
            ("DECR fresh", int(-1)),
            ("GET n", bulk("0")),
            ("SET n 9223372036854775806", ok()),
            ("INCR n", int(i64::MAX)),
            ("INCR n", err("ERR increment or decrement would overflow")),
            ("SET n -9223372036854775808", ok()),
            ("DECR n", err("ERR increment or decrement would overflow")),
            (
                "DECRBY n -9223372036854775808",
                err("ERR decrement would overflow"),
            ),
            ("INCRBY n abc", err(NOT_INTEGER)),
            ("INCRBY n 1.0", err(NOT_INTEGER)),
            ("SET s abc", ok()),
            ("INCR s", err(NOT_INTEGER)),
            ("SET s \" 1\"", ok()),
            ("INCR s", err(NOT_INTEGER)),
            ("SET s 01", ok()),
            ("INCR s", err(NOT_INTEGER)),
            ("SET s \"\"", ok()),
            ("INCR s", err(NOT_INTEGER)),
            ("HSET h f 1", int(1)),
            ("INCR h", err(WRONGTYPE)),
            ("INCR", arity("incr")),
            ("INCRBY n", arity("incrby")),
            // INCR keeps the key's expiry.
            ("SET t 5 EX 100", ok()),
            ("INCR t", int(6)),
            ("TTL t", int(100)),
        ],
    );
}

#[test]
fn incrbyfloat() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("INCRBYFLOAT f 10.5", bulk("10.5")),
            ("INCRBYFLOAT f 0.1", bulk("10.6")),
            ("INCRBYFLOAT f -5", bulk("5.6")),
            ("SET g 0.1", ok()),
            ("INCRBYFLOAT g 0.2", bulk("0.3")),
            ("INCRBYFLOAT g -0.3", bulk("0")),
            ("SET f 5.0e3", ok()),
            ("INCRBYFLOAT f 2.0e2", bulk("5200")),
            ("GET f", bulk("5200")),
            ("INCRBYFLOAT f abc", err("ERR value is not a valid float")),
            ("SET s abc", ok()),
            ("INCRBYFLOAT s 1", err("ERR value is not a valid float")),
            (
                "INCRBYFLOAT f inf",
                err("ERR increment would produce NaN or Infinity"),
            ),
            ("INCRBYFLOAT f nan", err("ERR value is not a valid float")),
            ("GET f", bulk("5200")),
            ("LPUSH l a", int(1)),
            ("INCRBYFLOAT l 1", err(WRONGTYPE)),
            ("SET i 3 PX 5000", ok()),
            ("INCRBYFLOAT i 1.5", bulk("4.5")),
            ("PTTL i", int(5000)),
        ],
    );
}

#[test]
fn append_strlen_getrange() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("APPEND k Hello", int(5)),
            ("APPEND k \" World\"", int(11)),
            ("GET k", bulk("Hello World")),
            ("STRLEN k", int(11)),
            ("STRLEN missing", int(0)),
            ("SET s \"This is a string\"", ok()),
            ("GETRANGE s 0 3", bulk("This")),
            ("GETRANGE s -3 -1", bulk("ing")),
            ("GETRANGE s 0 -1", bulk("This is a string")),
            ("GETRANGE s 10 100", bulk("string")),
            ("GETRANGE s 5 3", bulk("")),
            ("GETRANGE s -1 -5", bulk("")),
            ("GETRANGE s -100 2", bulk("Thi")),
            ("GETRANGE s 100 200", bulk("")),
            ("GETRANGE missing 0 -1", bulk("")),
            ("GETRANGE s a 1", err(NOT_INTEGER)),
            ("SET e \"\"", ok()),
            ("GETRANGE e 0 -1", bulk("")),
            ("HSET h f v", int(1)),
            ("APPEND h x", err(WRONGTYPE)),
            ("STRLEN h", err(WRONGTYPE)),
            ("GETRANGE h 0 1", err(WRONGTYPE)),
            ("SET t v EX 100", ok()),
            ("APPEND t w", int(2)),
            ("TTL t", int(100)),
        ],
    );
}

#[test]
fn setrange() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SET key1 \"Hello World\"", ok()),
            ("SETRANGE key1 6 Redis", int(11)),
            ("GET key1", bulk("Hello Redis")),
            ("SETRANGE key2 6 Redis", int(11)),
            ("GET key2", bulk("\0\0\0\0\0\0Redis")),
            ("SETRANGE key1 0 \"\"", int(11)),
            ("SETRANGE missing 5 \"\"", int(0)),
            ("EXISTS missing", int(0)),
            ("SETRANGE key1 -1 x", err("ERR offset is out of range")),
            ("SETRANGE key1 x x", err(NOT_INTEGER)),
            (
                "SETRANGE key1 536870911 xx",
                err("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
            ),
            (
                "SETRANGE big 536870912 x",
                err("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
            ),
            ("EXISTS big", int(0)),
            ("SETRANGE key1 11 !", int(12)),
            ("GET key1", bulk("Hello Redis!")),
            ("LPUSH l a", int(1)),
            ("SETRANGE l 0 x", err(WRONGTYPE)),
        ],
    );
}

#[test]
fn unknown_command_and_arity_errors() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            (
                "foo a b",
                err("ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
            ),
            (
                "FOO",
                err("ERR unknown command 'FOO', with args beginning with: "),
            ),
            (
                "bar \"x y\"",
                err("ERR unknown command 'bar', with args beginning with: 'x y' "),
            ),
            (
                "baz \"a\\r\\nb\"",
                err("ERR unknown command 'baz', with args beginning with: 'a  b' "),
            ),
            ("GETDEL", arity("getdel")),
            ("HSET h f", arity("hset")),
            ("HSET h f v g", arity("hset")),
            ("LPOP l 1 2", arity("lpop")),
        ],
    );
    let long = "x".repeat(200);
    let reply = h.run(T, &format!("cmd {long} more"));
    let Reply::Error(line) = reply else {
        panic!("expected an error")
    };
    // The quoted arguments stop at 128 bytes, as in Redis.
    assert_eq!(
        line,
        format!(
            "ERR unknown command 'cmd', with args beginning with: '{}' ",
            "x".repeat(128)
        )
    );
}

use synod_resp::Reply;
