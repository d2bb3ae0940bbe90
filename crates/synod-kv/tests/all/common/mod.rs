//! Test harness: runs command lines through the whole state-machine path
//! (parse → encode → decode → apply → encode_reply → decode_reply).

#![allow(dead_code)]

use bytes::Bytes;
use synod::{ApplyContext, InstanceId, StateMachine};
use synod_kv::{decode_reply, parse, KvCommand, Store};
use synod_resp::Reply;

/// Splits a command line into arguments. Double quotes group words and
/// allow `\"`, `\\`, `\r`, `\n`, `\0` and `\xHH` escapes.
pub fn args(line: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut arg: Vec<u8> = Vec::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next().expect("unterminated quote") {
                    '"' => break,
                    '\\' => match chars.next().expect("dangling escape") {
                        'r' => arg.push(b'\r'),
                        'n' => arg.push(b'\n'),
                        '0' => arg.push(0),
                        'x' => {
                            let hex: String = [chars.next().unwrap(), chars.next().unwrap()]
                                .iter()
                                .collect();
                            arg.push(u8::from_str_radix(&hex, 16).unwrap());
                        }
                        other => arg.extend(other.to_string().as_bytes()),
                    },
                    other => arg.extend(other.to_string().as_bytes()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.extend(c.to_string().as_bytes());
                chars.next();
            }
        }
        out.push(Bytes::from(arg));
    }
    out
}

pub fn ctx(instance: u64, time_ms: u64) -> ApplyContext {
    ApplyContext {
        instance: InstanceId(instance),
        time_ms,
        index: 0,
    }
}

/// A store plus a log position that advances with every applied command.
pub struct Harness {
    pub store: Store,
    pub instance: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            store: Store::new(),
            instance: 0,
        }
    }

    /// Applies `line` at log time `now_ms`, as the replicated path does. A
    /// parse error is returned as the reply. For a read, also checks that
    /// `query` answers exactly what `apply` does.
    pub fn run(&mut self, now_ms: u64, line: &str) -> Reply {
        let command = match parse(&args(line)) {
            Ok(command) => command,
            Err(reply) => return reply,
        };
        self.apply(now_ms, &command)
    }

    pub fn apply(&mut self, now_ms: u64, command: &KvCommand) -> Reply {
        let encoded = command.encode();
        assert_eq!(&KvCommand::decode(&encoded).unwrap(), command);
        self.instance += 1;
        let context = ctx(self.instance, now_ms);
        let queried = command
            .is_read()
            .then(|| decode_reply(&self.store.query(&encoded, &context)).unwrap());
        let reply = decode_reply(&self.store.apply(&encoded, &context)).unwrap();
        if let Some(queried) = queried {
            assert_eq!(queried, reply, "query and apply disagree on {command:?}");
        }
        self.store.check_invariants().unwrap();
        reply
    }

    /// Answers `line` through `query` only.
    pub fn query(&self, now_ms: u64, line: &str) -> Reply {
        let command = match parse(&args(line)) {
            Ok(command) => command,
            Err(reply) => return reply,
        };
        decode_reply(
            &self
                .store
                .query(&command.encode(), &ctx(self.instance, now_ms)),
        )
        .unwrap()
    }

    /// Runs each `(line, expected)` at `now_ms`, failing with the line.
    pub fn expect_all(&mut self, now_ms: u64, cases: &[(&str, Reply)]) {
        for (line, expected) in cases {
            let reply = self.run(now_ms, line);
            assert_eq!(&reply, expected, "{line}");
        }
    }
}

pub fn ok() -> Reply {
    Reply::ok()
}

pub fn int(value: i64) -> Reply {
    Reply::Integer(value)
}

pub fn bulk(value: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(value.as_bytes()))
}

pub fn null() -> Reply {
    Reply::Null
}

pub fn err(line: &str) -> Reply {
    Reply::Error(line.to_string())
}

pub fn simple(line: &str) -> Reply {
    Reply::simple(line.to_string())
}

pub fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(items)
}

pub fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|item| bulk(item)).collect())
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";

pub fn arity(name: &str) -> Reply {
    err(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Sorts the keys of an array-of-bulk reply (KEYS order is unspecified).
pub fn sorted(reply: Reply) -> Reply {
    match reply {
        Reply::Array(mut items) => {
            items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            Reply::Array(items)
        }
        other => other,
    }
}

/// Number of distinct command shapes [`workload_line`] produces.
pub const WORKLOAD_OPS: u8 = 44;

/// A command line from a small vocabulary over a few keys, for randomized
/// tests: `op` picks the command, `key` and `other` pick keys, `n` is a
/// small integer (times, counts, deltas).
pub fn workload_line(op: u8, key: u8, other: u8, n: i64) -> String {
    const KEYS: [&str; 6] = ["a", "b", "c", "h", "l", "x"];
    let k = KEYS[usize::from(key) % KEYS.len()];
    let o = KEYS[usize::from(other) % KEYS.len()];
    match op % WORKLOAD_OPS {
        0 => format!("SET {k} v{n}"),
        1 => format!("SET {k} v{n} PX {}", n.abs() + 1),
        2 => format!("SET {k} v{n} NX GET"),
        3 => format!("SET {k} v{n} XX KEEPTTL"),
        4 => format!("GET {k}"),
        5 => format!("DEL {k} {o}"),
        6 => format!("INCRBY {k} {n}"),
        7 => format!("APPEND {k} {n}"),
        8 => format!("PEXPIRE {k} {n}"),
        9 => format!("EXPIRE {k} {n} GT"),
        10 => format!("PERSIST {k}"),
        11 => format!("HSET {k} f{n} {n}"),
        12 => format!("HDEL {k} f{n}"),
        13 => format!("HINCRBY {k} f{} {n}", n % 3),
        14 => format!("LPUSH {k} {n} {o}"),
        15 => format!("RPOP {k} {}", n.abs() % 3),
        16 => format!("LPOP {k}"),
        17 => format!("MSET {k} {n} {o} {n}"),
        18 => format!("MSETNX {k} {n} {o} {n}"),
        19 => format!("GETDEL {k}"),
        20 => format!("GETEX {k} PX {}", n.abs() + 1),
        21 => format!("SETRANGE {k} {} z", n.abs() % 8),
        22 => format!("PTTL {k}"),
        23 => format!("TYPE {k}"),
        24 => "DBSIZE".to_string(),
        25 => "KEYS *".to_string(),
        26 => format!("SCAN 0 COUNT {}", n.abs() % 5 + 1),
        27 => format!("HGETALL {k}"),
        28 => format!("LRANGE {k} 0 -1"),
        29 => format!("INCRBYFLOAT {k} 1.5"),
        30 => format!("SETEX {k} {} v", n.abs() % 3 + 1),
        31 => format!("GETSET {k} {n}"),
        32 => format!("EXISTS {k} {o}"),
        33 => format!("PEXPIREAT {k} {}", n.abs() * 10),
        34 => format!("SET {k} v PXAT {}", n.abs() * 10 + 1),
        35 => format!("STRLEN {k}"),
        36 => format!("MGET {k} {o}"),
        37 => format!("SETNX {k} {n}"),
        38 => "RANDOMKEY".to_string(),
        39 => format!("SADD {k} {n} m{}", n % 4),
        40 => format!("SREM {k} {n} m1"),
        41 => format!("SPOP {k} {}", n.abs() % 3),
        42 => format!("SUNIONSTORE {k} {k} {o}"),
        _ if n % 7 == 0 => "FLUSHALL".to_string(),
        _ => format!("TTL {k}"),
    }
}
