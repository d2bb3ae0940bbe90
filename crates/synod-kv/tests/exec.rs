//! MULTI/EXEC: a transaction is one `KvCommand::Exec`, applied atomically.

mod common;

use common::*;
use synod_kv::{parse, KvCommand};
use synod_resp::Reply;

fn transaction(lines: &[&str]) -> KvCommand {
    KvCommand::Exec(
        lines
            .iter()
            .map(|line| parse(&args(line)).expect("queued commands parse"))
            .collect(),
    )
}

#[test]
fn replies_are_an_array_in_order() {
    let mut h = Harness::new();
    let reply = h.apply(
        0,
        &transaction(&["SET a 1", "INCR a", "GET a", "DEL a", "GET a"]),
    );
    assert_eq!(reply, array(vec![ok(), int(2), bulk("2"), int(1), null()]));
}

#[test]
fn a_runtime_error_fails_only_its_command() {
    let mut h = Harness::new();
    let reply = h.apply(
        0,
        &transaction(&["SET s v", "LPUSH s x", "INCR s", "SET t 1", "GET t"]),
    );
    assert_eq!(
        reply,
        array(vec![
            ok(),
            err(WRONGTYPE),
            err(NOT_INTEGER),
            ok(),
            bulk("1")
        ])
    );
    assert_eq!(h.run(0, "GET t"), bulk("1"));
    assert_eq!(h.run(0, "GET s"), bulk("v"));
}

#[test]
fn read_only_transactions_are_reads() {
    let mut h = Harness::new();
    h.run(0, "MSET a 1 b 2");
    let reads = transaction(&["GET a", "MGET a b", "EXISTS a b"]);
    assert!(reads.is_read());
    assert!(!transaction(&["GET a", "SET a 2"]).is_read());
    assert!(KvCommand::Exec(vec![]).is_read());
    // The harness checks query and apply agree for reads.
    assert_eq!(
        h.apply(0, &reads),
        array(vec![bulk("1"), bulks(&["1", "2"]), int(2)])
    );
    assert_eq!(h.apply(0, &KvCommand::Exec(vec![])), array(vec![]));
}

#[test]
fn every_command_sees_the_same_log_time() {
    let mut h = Harness::new();
    let reply = h.apply(5_000, &transaction(&["SET k v PX 1", "PTTL k", "GET k"]));
    assert_eq!(reply, array(vec![ok(), int(1), bulk("v")]));
    assert_eq!(h.run(5_001, "GET k"), null());
}

#[test]
fn nested_transactions_are_refused_whole() {
    let mut h = Harness::new();
    let nested = KvCommand::Exec(vec![
        parse(&args("SET a 1")).unwrap(),
        KvCommand::Exec(vec![]),
    ]);
    // The log codec refuses to decode one...
    assert!(KvCommand::decode(&nested.encode()).is_err());
    // ...and the store refuses to run one built by hand.
    assert_eq!(
        h.store.apply_command(&nested, &ctx(1, 0)),
        err("ERR MULTI calls can not be nested")
    );
    assert_eq!(h.run(0, "EXISTS a"), int(0));
}

#[test]
fn a_write_sent_as_a_query_is_refused() {
    let h = Harness::new();
    let reply = h.query(0, "SET a 1");
    assert!(matches!(reply, Reply::Error(ref line) if line.starts_with("ERR ")));
    assert_eq!(h.query(0, "EXISTS a"), int(0));
}
