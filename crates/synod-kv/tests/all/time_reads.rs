//! Which reads depend on the time (`Store::command_depends_on_time`): those
//! the runtime sends through the log instead of answering by read index.
//! Each case also checks the claim it relies on: a read said not to depend on
//! the time answers the same at every time.

use crate::common;

use common::*;
use synod::{Served, StateMachine};
use synod_kv::{parse, KvCommand};

fn command(line: &str) -> KvCommand {
    parse(&args(line)).expect("valid command")
}

/// Times far apart, before and after every expiry the cases set.
const TIMES: [u64; 4] = [1_000, 1_500, 10_000, u64::MAX / 2];

/// `StateMachine::serve_query`, which the store overrides to decode once,
/// serves `bytes` exactly as the three calls it stands for would.
fn serves_as_the_three_calls(h: &Harness, bytes: &[u8]) {
    let ctx = ctx(h.instance, TIMES[0]);
    match h.store.serve_query(bytes, &ctx) {
        Served::ThroughLog => assert!(h.store.query_depends_on_time(bytes)),
        Served::OffLoop(job) => {
            assert!(!h.store.query_depends_on_time(bytes));
            let view = h.store.query_view(bytes, &ctx).expect("a view");
            let answer = job();
            assert_eq!(answer, view());
            assert_eq!(answer, h.store.query(bytes, &ctx));
        }
        Served::Answer(answer) => {
            assert!(!h.store.query_depends_on_time(bytes));
            assert!(h.store.query_view(bytes, &ctx).is_none());
            assert_eq!(answer, h.store.query(bytes, &ctx));
        }
        other => panic!("a way of serving this test does not know: {other:?}"),
    }
}

fn depends(h: &Harness, line: &str) -> bool {
    let command = command(line);
    serves_as_the_three_calls(h, &command.encode());
    let typed = h.store.command_depends_on_time(&command);
    assert_eq!(
        h.store.query_depends_on_time(&command.encode()),
        typed,
        "{line}: the byte and typed forms disagree"
    );
    // RANDOMKEY's pick is seeded by the instance and the time; any live key
    // is a correct answer, and which keys are live does not depend on the
    // time here.
    if !typed && line != "RANDOMKEY" {
        let first = h.query(TIMES[0], line);
        for time in TIMES {
            assert_eq!(h.query(time, line), first, "{line} changed at {time}");
        }
    }
    typed
}

#[test]
fn keys_without_expiry_do_not_depend_on_the_time() {
    let mut h = Harness::new();
    h.run(1_000, "SET s v");
    h.run(1_000, "HSET h f v");
    h.run(1_000, "RPUSH l a b");
    for line in [
        "GET s",
        "GET missing",
        "MGET s missing",
        "EXISTS s h l missing",
        "STRLEN s",
        "GETRANGE s 0 -1",
        "TTL s",
        "PTTL missing",
        "TYPE h",
        "HGET h f",
        "HGETALL h",
        "HLEN h",
        "HEXISTS h f",
        "LRANGE l 0 -1",
        "LLEN l",
        "KEYS *",
        "SCAN 0",
        "DBSIZE",
        "RANDOMKEY",
    ] {
        assert!(!depends(&h, line), "{line}");
    }
}

#[test]
fn reads_touching_a_key_with_expiry_depend_on_the_time() {
    let mut h = Harness::new();
    h.run(1_000, "SET s v");
    h.run(1_000, "SET t v PX 1000");
    h.run(1_000, "HSET h f v");
    h.run(1_000, "PEXPIRE h 1000");
    for line in [
        "GET t",
        "MGET s t",
        "EXISTS s t",
        "STRLEN t",
        "GETRANGE t 0 -1",
        "TTL t",
        "PTTL t",
        "TYPE t",
        "HGET h f",
        "HGETALL h",
        "HLEN h",
        "HEXISTS h f",
        // Keyspace-wide reads count every key.
        "KEYS *",
        "SCAN 0",
        "DBSIZE",
        "RANDOMKEY",
    ] {
        assert!(depends(&h, line), "{line}");
    }
    // Other keys stay on the fast path.
    assert!(!depends(&h, "GET s"));
    assert!(!depends(&h, "MGET s missing"));
    // A transaction of reads depends on the time if any of its reads does.
    let exec = |lines: &[&str]| KvCommand::Exec(lines.iter().map(|l| command(l)).collect());
    assert!(h.store.command_depends_on_time(&exec(&["GET s", "GET t"])));
    assert!(!h.store.command_depends_on_time(&exec(&["GET s", "LLEN s"])));
}

#[test]
fn an_expired_key_not_yet_purged_still_depends_on_the_time() {
    let mut h = Harness::new();
    h.run(1_000, "SET t v PX 10");
    // Expired at log time 1010 but still stored: whether a read sees it
    // depends on the time it is given.
    assert!(depends(&h, "GET t"));
    assert_eq!(h.query(1_005, "GET t"), bulk("v"));
    assert_eq!(h.query(1_010, "GET t"), null());
    // PERSIST takes the expiry away: no longer time-dependent.
    h.run(1_005, "PERSIST t");
    assert!(!depends(&h, "GET t"));
    assert!(!depends(&h, "DBSIZE"));
}

#[test]
fn writes_and_undecodable_bytes_do_not_depend_on_the_time() {
    let mut h = Harness::new();
    h.run(1_000, "SET t v PX 1000");
    assert!(!h.store.command_depends_on_time(&command("SET t w")));
    assert!(!h.store.query_depends_on_time(b"\xffnot a command"));
    serves_as_the_three_calls(&h, b"\xffnot a command");
    serves_as_the_three_calls(&h, b"");
}

/// `has_expiry` skips the lookup while no key has an expiry: the answer must
/// follow the one key that gains, loses and regains one.
#[test]
fn the_only_key_with_an_expiry_is_found_as_it_gains_and_loses_it() {
    let mut h = Harness::new();
    h.run(1_000, "SET a v");
    h.run(1_000, "SET b v");
    assert!(!depends(&h, "GET a"));
    h.run(1_000, "EXPIRE a 100");
    assert!(depends(&h, "GET a"));
    assert!(!depends(&h, "GET b"));
    h.run(1_000, "PERSIST a");
    assert!(!depends(&h, "GET a"));
    h.run(1_000, "PEXPIRE b 50");
    assert!(depends(&h, "GET b"));
    assert!(!depends(&h, "GET a"));
}

/// The read prefetch hint (`StateMachine::prefetch_queries`) changes no
/// answer, whatever it is given: reads, writes, bytes that decode to
/// nothing, more queries than one prefetch group.
#[test]
fn the_read_prefetch_hint_changes_no_answer() {
    let mut h = Harness::new();
    for i in 0..40 {
        h.run(1_000, &format!("SET k{i} v{i}"));
        h.run(1_000, &format!("HSET h{i} f {i}"));
    }
    let lines: Vec<String> = (0..40)
        .flat_map(|i| {
            [
                format!("GET k{i}"),
                format!("HGET h{i} f"),
                format!("GET none{i}"),
            ]
        })
        .chain(["STRLEN k2".to_string()])
        .collect();
    let before: Vec<_> = lines.iter().map(|l| h.query(2_000, l)).collect();
    let encoded: Vec<_> = lines.iter().map(|l| command(l).encode()).collect();
    let mut queries: Vec<&[u8]> = encoded.iter().map(|q| &q[..]).collect();
    let write = command("SET k1 other").encode();
    queries.push(&write);
    queries.push(b"");
    queries.push(&[0xff, 0x01, 0x02]);
    h.store.prefetch_queries(&queries);
    let after: Vec<_> = lines.iter().map(|l| h.query(2_000, l)).collect();
    assert_eq!(before, after);
}

/// `serve_query` on the reads whose paths the depends cases above do not
/// reach: off the loop (KEYS and SCAN with a pattern), transactions of
/// reads, ACL reads.
#[test]
fn serve_query_serves_off_loop_transaction_and_acl_reads_as_the_three_calls() {
    let mut h = Harness::new();
    h.run(1_000, "SET s v");
    h.run(1_000, "SET t v PX 1000");
    h.run(1_000, "HSET h f v");
    let mut off_loop = 0;
    for line in [
        "KEYS s*",
        "SCAN 0 MATCH s*",
        "SCAN 0 COUNT 1000",
        "HGETALL h",
        "LRANGE missing 0 -1",
        "ACL WHOAMI",
        "ACL LIST",
        "ACL GETUSER default",
    ] {
        let Ok(command) = synod_kv::parse(&args(line)) else {
            continue;
        };
        let bytes = command.encode();
        serves_as_the_three_calls(&h, &bytes);
        let ctx = ctx(h.instance, TIMES[0]);
        off_loop += usize::from(h.store.query_view(&bytes, &ctx).is_some());
    }
    assert!(off_loop > 0, "no case went off the loop");
    let exec = |lines: &[&str]| KvCommand::Exec(lines.iter().map(|l| command(l)).collect());
    for transaction in [exec(&["GET s", "LLEN s"]), exec(&["GET s", "GET t"])] {
        serves_as_the_three_calls(&h, &transaction.encode());
    }
}
