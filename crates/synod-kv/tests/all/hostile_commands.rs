//! Commands whose work or memory a client controls, from the attack review
//! of issue 16's keys and strings: each case once aborted or stalled every
//! replica at apply time (and again when the log was replayed), so each now
//! answers at once, the same on every replica. Also a random sequence of
//! the new commands on two stores that must agree and account right.

use crate::common;

use bytes::Bytes;
use common::*;
use synod::StateMachine;
use synod_kv::{parse, KvCommand, REPLY_BYTES_MAX};
use synod_resp::Reply;

const T: u64 = 1_000_000;

/// `0e99999999999` is a valid float (0); the exact decimal sum once scaled
/// it digit by digit: an allocation of ~1e11 bytes on every replica.
#[test]
fn incrbyfloat_on_zero_with_huge_exponent() {
    let mut h = Harness::new();
    h.run(T, "SET k 0e99999999999");
    assert_eq!(h.run(T, "INCRBYFLOAT k 1"), bulk("1"));
    h.run(T, "SET k 0e300000000");
    assert_eq!(h.run(T, "INCRBYFLOAT k 1"), bulk("1"));
    h.run(T, "SET k 0e-99999999999");
    assert_eq!(h.run(T, "INCRBYFLOAT k 1"), bulk("1"));
    h.run(T, "SET k 1e300");
    assert!(!matches!(h.run(T, "INCRBYFLOAT k 1e-300"), Reply::Error(_)));
}

/// SORT ... GET x N ... STORE: elements x GET patterns were allocated in
/// full before any limit (200k x 200k slots from a ~1 MB command).
#[test]
fn sort_output_is_bounded_before_it_is_built() {
    let mut h = Harness::new();
    let elements = 200_000usize;
    let mut push: Vec<Bytes> = vec![Bytes::from("RPUSH"), Bytes::from("l")];
    push.extend((0..elements).map(|i| Bytes::from(i.to_string())));
    h.apply(T, &parse(&push).unwrap());
    let mut sort: Vec<Bytes> = vec![
        Bytes::from("SORT"),
        Bytes::from("l"),
        Bytes::from("BY"),
        Bytes::from("nosort"),
    ];
    for _ in 0..200_000 {
        sort.push(Bytes::from("GET"));
        sort.push(Bytes::from("#"));
    }
    sort.push(Bytes::from("STORE"));
    sort.push(Bytes::from("d"));
    let reply = h.apply(T, &parse(&sort).unwrap());
    match reply {
        Reply::Error(text) => assert!(text.starts_with("ERR SORT would return"), "{text}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(h.run(T, "EXISTS d"), Reply::Integer(0));
    // With LIMIT the same patterns fit.
    sort.splice(4..4, ["LIMIT", "0", "2"].map(Bytes::from));
    assert_eq!(h.apply(T, &parse(&sort).unwrap()), Reply::Integer(400_000));
}

/// BITOP naming one large key many times: keys x length bytes of work on
/// every replica (2000 x 1 MB took 8.8 s).
#[test]
fn bitop_work_is_bounded() {
    let mut h = Harness::new();
    h.run(T, "SETRANGE big 1048575 x");
    let mut bitop: Vec<Bytes> = vec![Bytes::from("BITOP"), Bytes::from("AND"), Bytes::from("d")];
    bitop.extend((0..2000).map(|_| Bytes::from("big")));
    match h.apply(T, &parse(&bitop).unwrap()) {
        Reply::Error(text) => assert!(text.starts_with("ERR BITOP over 2000 keys"), "{text}"),
        other => panic!("expected an error, got {other:?}"),
    }
    // Within the bound, the answer is right.
    h.run(T, "SET a abc");
    h.run(T, "SET b a");
    assert_eq!(h.run(T, "BITOP AND d a b"), Reply::Integer(3));
    assert_eq!(h.run(T, "GET d"), Reply::Bulk(Bytes::from_static(b"a\0\0")));
    assert_eq!(h.run(T, "BITOP OR d b a"), Reply::Integer(3));
    assert_eq!(h.run(T, "GET d"), bulk("abc"));
    assert_eq!(h.run(T, "BITOP XOR d a a"), Reply::Integer(3));
    assert_eq!(
        h.run(T, "GET d"),
        Reply::Bulk(Bytes::from_static(b"\0\0\0"))
    );
}

/// Deterministic commands over a few keys, the new ones included; two
/// stores fed the same log must agree byte for byte (snapshots), and the
/// accounted size must match a recount after each command (the harness
/// checks `check_invariants`).
fn line(op: u8, key: u8, other: u8, n: i64) -> String {
    const KEYS: [&str; 6] = ["a", "b", "c", "h", "l", "x"];
    let k = KEYS[usize::from(key) % KEYS.len()];
    let o = KEYS[usize::from(other) % KEYS.len()];
    match op % 30 {
        0 => format!("SET {k} v{n}"),
        1 => format!("SET {k} {n} PX {}", n.abs() + 1),
        2 => format!("RENAME {k} {o}"),
        3 => format!("RENAMENX {k} {o}"),
        4 => format!("COPY {k} {o}"),
        5 => format!("COPY {k} {o} REPLACE"),
        6 => format!("SETBIT {k} {} {}", n.abs() % 200, n & 1),
        7 => format!("BITOP OR {k} {o} {k}"),
        8 => format!("BITOP NOT {k} {o}"),
        9 => format!("BITOP XOR {o} {k} {o} a"),
        10 => format!("LPUSH {k} {n} {o}"),
        11 => format!("SORT {k} STORE {o}"),
        12 => format!("SORT {k} ALPHA DESC STORE {o}"),
        13 => format!("SORT {k} BY * GET # GET *->f STORE {o}"),
        14 => format!("HSET {k} f {n}"),
        15 => format!("RPOP {k}"),
        16 => format!("INCRBYFLOAT {k} {n}.25"),
        17 => format!("PEXPIRE {k} {}", n.abs() % 5 + 1),
        18 => format!("DEL {k}"),
        19 => format!("APPEND {k} {n}"),
        20 => format!("SORT {k} LIMIT {} {} ALPHA", n % 3, n % 4),
        21 => format!("BITCOUNT {k} {} {}", n % 5, -n % 7),
        22 => format!("BITPOS {k} {} {} {} BIT", n & 1, n % 9, n % 13),
        23 => format!("LCS {k} {o} IDX WITHMATCHLEN"),
        24 => format!("OBJECT ENCODING {k}"),
        25 => format!("EXPIRETIME {k}"),
        26 => format!("TOUCH {k} {o}"),
        27 => format!("MULTI_COPY_RENAME {k} {o}"),
        28 => format!("SETBIT {k} {} 0", n.abs() % 64),
        _ => format!("GETBIT {k} {}", n.abs() % 64),
    }
}

fn run_line(h: &mut Harness, now: u64, line: &str) -> Reply {
    if let Some(rest) = line.strip_prefix("MULTI_COPY_RENAME ") {
        // COPY then RENAME inside one transaction (one log command).
        let (k, o) = rest.split_once(' ').unwrap();
        let copy = parse(&args(&format!("COPY {k} {o} REPLACE"))).unwrap();
        let rename = parse(&args(&format!("RENAME {o} {k}"))).unwrap();
        let lpush = parse(&args(&format!("LPUSH {o} z"))).unwrap();
        return h.apply(now, &KvCommand::Exec(vec![copy, rename, lpush]));
    }
    h.run(now, line)
}

#[test]
fn new_commands_keep_accounting_and_replicas_agree() {
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..300 {
        let mut a = Harness::new();
        let mut b = Harness::new();
        let mut now = T;
        for _ in 0..80 {
            let r = next();
            let text = line(
                r as u8,
                (r >> 8) as u8,
                (r >> 16) as u8,
                ((r >> 24) % 41) as i64 - 20,
            );
            now += (r >> 40) % 3;
            let x = run_line(&mut a, now, &text);
            let y = run_line(&mut b, now, &text);
            assert_eq!(x, y, "round {round}: {text}");
        }
        assert_eq!(a.store.snapshot(), b.store.snapshot(), "round {round}");
        // And a restored store accounts the same.
        let mut c = Harness::new();
        c.store.restore(&a.store.snapshot()).unwrap();
        assert_eq!(c.store.memory(), a.store.memory(), "round {round}");
    }
}

/// A command or batch that names one big value many times (the attack
/// review of stop 61): `MGET big big ...`, `HMGET h f f ...`, `SORT ... GET
/// big`, or a pipeline of `GET big` riding with a write. Each replica built
/// the whole reply (gigabytes from kilobytes), ran out of memory, and did
/// so again replaying the log. Now the values a reply holds are bounded by
/// `REPLY_BYTES_MAX`, the same on every replica; past it a command is
/// refused, and in a batch the reads after it are not run (writes run).
#[test]
fn replies_that_repeat_a_big_value_are_bounded() {
    let mut h = Harness::new();
    const MIB: usize = 1 << 20;
    let big = Bytes::from(vec![b'x'; 4 * MIB]);
    let name = |key: &str| Bytes::copy_from_slice(key.as_bytes());
    let times = (REPLY_BYTES_MAX as usize) / (4 * MIB) + 1;
    let set = KvCommand::MSet {
        pairs: vec![(name("big"), big.clone())],
    };
    assert_eq!(h.apply(T, &set), ok());
    let too_large = |reply: &Reply, name: &str| {
        matches!(reply, Reply::Error(line)
            if line.starts_with(&format!("ERR {name} reply of more than {REPLY_BYTES_MAX} bytes")))
    };
    // MGET: one key named past the budget, refused; within it, answered.
    let mget = |n: usize| KvCommand::MGet {
        keys: vec![name("big"); n],
    };
    assert!(too_large(&h.apply(T, &mget(times)), "MGET"));
    let Reply::Array(values) = h.apply(T, &mget(times - 1)) else {
        panic!("an array");
    };
    assert_eq!(values.len(), times - 1);
    // HMGET, likewise.
    assert_eq!(
        h.apply(
            T,
            &KvCommand::HSet {
                key: name("h"),
                pairs: vec![(name("f"), big.clone())],
            }
        ),
        int(1)
    );
    let hmget = KvCommand::HMGet {
        key: name("h"),
        fields: vec![name("f"); times],
    };
    assert!(too_large(&h.apply(T, &hmget), "HMGET"));
    // SORT with a GET pattern: a list that repeats one element names one
    // key for each copy.
    h.run(T, &format!("RPUSH list{}", " g".repeat(times)));
    assert_eq!(h.run(T, "RENAME big bg"), ok());
    assert!(too_large(&h.run(T, "SORT list BY nosort GET b*"), "SORT"));
    assert!(too_large(
        &h.run(T, "SORT list BY nosort GET b* STORE copy"),
        "SORT"
    ));
    assert_eq!(h.run(T, "EXISTS copy"), int(0));
    let Reply::Array(three) = h.run(T, "SORT list BY nosort LIMIT 0 3 GET b*") else {
        panic!("an array");
    };
    assert_eq!(three, vec![Reply::Bulk(big.clone()); 3]);
    assert_eq!(h.run(T, "RENAME bg big"), ok());
    // A batch (a pipeline, or a transaction) of GETs with writes around
    // them: the GETs past the budget and the write after them are not run.
    let mut batch = vec![parse(&args("SET before 1")).expect("parses")];
    batch.extend((0..times + 2).map(|_| parse(&args("GET big")).expect("parses")));
    batch.push(parse(&args("SET after 1")).expect("parses"));
    batch.push(parse(&args("GETDEL big")).expect("parses"));
    let Reply::Array(replies) = h.apply(T, &KvCommand::Exec(batch)) else {
        panic!("an array");
    };
    let answered = replies
        .iter()
        .filter(|r| matches!(r, Reply::Bulk(v) if v.len() == 4 * MIB))
        .count();
    assert_eq!(answered, times - 1, "GETs answered until past the budget");
    // Past it, writes still run (the state a batch leaves never depends on
    // the budget); a big reply of theirs is dropped, saying so.
    assert!(
        matches!(replies.last(), Some(Reply::Error(line))
            if line.starts_with("ERR 'getdel' ran, but its reply (4194320 bytes) is dropped")),
        "{:?}",
        replies.last()
    );
    assert_eq!(h.run(T, "EXISTS big"), int(0));
    let replies = &replies[..replies.len() - 1];
    let not_run = |reply: &Reply, name: &str| matches!(reply, Reply::Error(line) if line.starts_with(&format!("ERR '{name}' not run")));
    assert!(
        not_run(&replies[replies.len() - 2], "get"),
        "{:?}",
        replies[replies.len() - 2]
    );
    assert_eq!(replies[replies.len() - 1], ok());
    assert_eq!(replies[0], ok());
    assert_eq!(h.run(T, "GET before"), bulk("1"));
    assert_eq!(h.run(T, "GET after"), bulk("1"));
}

/// The stop-61 review of the budget above: a batch holding an ACL command
/// ran through a path of its own that applied neither the reply budget nor
/// the transaction's read work bound; and a script's reply copies a string
/// once per table slot (each slot a reference, so Lua's memory limit
/// allows millions). Both now stop at `REPLY_BYTES_MAX`.
#[test]
fn an_acl_command_or_a_script_does_not_lift_the_reply_budget() {
    const MIB: usize = 1 << 20;
    let mut h = Harness::new();
    let big = Bytes::from(vec![b'x'; 4 * MIB]);
    let set = KvCommand::MSet {
        pairs: vec![(Bytes::from_static(b"big"), big)],
    };
    assert_eq!(h.apply(T, &set), ok());
    let times = (REPLY_BYTES_MAX as usize) / (4 * MIB) + 2;
    let mut batch = vec![KvCommand::Acl(synod_kv::AclCommand::Users)];
    batch.extend((0..times).map(|_| parse(&args("GET big")).expect("parses")));
    batch.push(parse(&args("SET after 1")).expect("parses"));
    let Reply::Array(replies) = h.apply(T, &KvCommand::Exec(batch)) else {
        panic!("an array");
    };
    let answered = replies
        .iter()
        .filter(|r| matches!(r, Reply::Bulk(v) if v.len() == 4 * MIB))
        .count();
    assert_eq!(answered, times - 2, "GETs answered until past the budget");
    assert!(
        matches!(&replies[replies.len() - 2], Reply::Error(line) if line.starts_with("ERR 'get' not run"))
    );
    assert_eq!(replies.last(), Some(&ok()));
    assert_eq!(h.run(T, "EXISTS after"), int(1));
    // A script returning one value many times.
    let copies = |n: usize| {
        KvCommand::Eval(Box::new(synod_kv::scripting::EvalCommand {
            instructions_max: synod_kv::scripting::APPLY_LIMITS.instructions_max,
            script: Bytes::from(format!(
                "local s = redis.call('GET', KEYS[1]) local t = {{}} \
                 for i = 1, {n} do t[i] = s end redis.call('SET', 'ran', '1') return t"
            )),
            keys: vec![Bytes::from_static(b"big")],
            args: vec![],
            read_only: false,
            function: None,
            user: None,
        }))
    };
    let reply = h.apply(T, &copies(times));
    assert!(
        matches!(&reply, Reply::Error(line) if line.starts_with(&format!("ERR script reply of more than {REPLY_BYTES_MAX} bytes"))),
        "{reply:?}"
    );
    // The script ran (its writes stay, as a script's do after any error
    // it raises once they are made); only its reply was refused.
    assert_eq!(h.run(T, "GET ran"), bulk("1"));
    let Reply::Array(values) = h.apply(T, &copies(3)) else {
        panic!("an array");
    };
    assert_eq!(values.len(), 3);
}
