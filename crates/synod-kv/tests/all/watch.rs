//! WATCH (issue 16): a transaction opened by a WATCH check runs only if no
//! watched key changed since it was read, decided at apply time from the
//! replicated state; Redis 7.0's rules for what counts as a change (checked
//! against a real redis-server 7.0.15).

use crate::common;

use common::*;
use synod::StateMachine;
use synod_kv::watch::{Stamp, WatchedKey, TOMBSTONES_MAX};
use synod_kv::{parse, KvCommand};
use synod_resp::Reply;

/// What `WATCH keys` reads at `now_ms`: through `query`, as the front end's
/// linearizable read is answered.
fn watch(h: &Harness, now_ms: u64, keys: &[&str]) -> Vec<WatchedKey> {
    let command = KvCommand::Watch {
        keys: keys
            .iter()
            .map(|key| key.as_bytes().to_vec().into())
            .collect(),
    };
    let reply = h.store.query_command(&command, &ctx(h.instance, now_ms));
    let Reply::Array(tokens) = reply else {
        panic!("WATCH answers an array: {reply:?}");
    };
    assert_eq!(tokens.len(), keys.len());
    keys.iter()
        .zip(tokens)
        .map(|(key, token)| match token {
            Reply::Array(fields) => match fields.as_slice() {
                [Reply::Integer(live), Reply::Integer(instance), Reply::Integer(sequence)] => {
                    WatchedKey {
                        key: key.as_bytes().to_vec().into(),
                        live: *live == 1,
                        stamp: Stamp {
                            instance: *instance as u64,
                            sequence: *sequence as u64,
                        },
                    }
                }
                other => panic!("bad token {other:?}"),
            },
            other => panic!("bad token {other:?}"),
        })
        .collect()
}

/// EXEC of `lines` guarded by `watched`, applied at `now_ms`.
fn exec(h: &mut Harness, now_ms: u64, watched: &[WatchedKey], lines: &[&str]) -> Reply {
    let mut commands = vec![KvCommand::WatchCheck {
        watched: watched.to_vec(),
    }];
    commands.extend(
        lines
            .iter()
            .map(|line| parse(&args(line)).expect("queued commands parse")),
    );
    h.apply(now_ms, &KvCommand::Exec(commands))
}

fn ran(h: &mut Harness, now_ms: u64, watched: &[WatchedKey]) -> bool {
    match exec(h, now_ms, watched, &["INCR runs"]) {
        Reply::Array(replies) => {
            assert_eq!(replies.len(), 1, "the check's own reply is dropped");
            true
        }
        Reply::NullArray => false,
        other => panic!("EXEC answered {other:?}"),
    }
}

#[test]
fn an_unchanged_key_lets_the_transaction_run() {
    let mut h = Harness::new();
    h.run(0, "SET x 1");
    let watched = watch(&h, 0, &["x", "missing"]);
    h.run(0, "SET other 2");
    h.run(0, "GET x");
    h.run(0, "DEL missing");
    assert_eq!(
        exec(&mut h, 0, &watched, &["INCR x", "GET x"]),
        array(vec![int(2), bulk("2")])
    );
}

#[test]
fn any_write_to_a_watched_key_aborts_even_of_the_same_value() {
    for change in [
        "SET x 1",
        "SET x 2",
        "INCR x",
        "APPEND x z",
        "EXPIRE x 100",
        "DEL x",
        "RENAME x y",
        "GETDEL x",
        "FLUSHALL",
    ] {
        let mut h = Harness::new();
        h.run(0, "SET x 1");
        let watched = watch(&h, 0, &["a", "x", "z"]);
        h.run(0, change);
        assert_eq!(
            exec(&mut h, 0, &watched, &["SET x 3"]),
            Reply::NullArray,
            "{change}"
        );
        // Nothing of it ran.
        assert_ne!(h.query(0, "GET x"), bulk("3"), "{change}");
    }
}

#[test]
fn a_rename_touches_its_destination() {
    let mut h = Harness::new();
    h.run(0, "SET src 1");
    let watched = watch(&h, 0, &["dst"]);
    h.run(0, "RENAME src dst");
    assert!(!ran(&mut h, 0, &watched));
}

#[test]
fn emptying_a_collection_counts_as_a_change() {
    let mut h = Harness::new();
    h.run(0, "RPUSH l a");
    h.run(0, "HSET h f v");
    for (key, change) in [("l", "LPOP l"), ("h", "HDEL h f")] {
        let watched = watch(&h, 0, &[key]);
        h.run(0, change);
        assert!(!ran(&mut h, 0, &watched), "{change}");
    }
}

/// Redis 7.0 touches a key only when something changed: DEL, EXPIRE or
/// PERSIST of a missing key, or an SORT ... STORE nothing into a missing
/// key, leave a WATCH of it intact.
#[test]
fn no_op_writes_to_a_missing_key_do_not_count() {
    let mut h = Harness::new();
    let watched = watch(&h, 0, &["x"]);
    for noop in ["DEL x", "EXPIRE x 10", "PERSIST x", "LPOP x", "HDEL x f"] {
        h.run(0, noop);
    }
    assert!(ran(&mut h, 0, &watched));
}

/// A missing key written and deleted again in between counts (Redis aborts),
/// found through the tombstone of its last write.
#[test]
fn a_missing_key_created_and_removed_again_counts() {
    for remove in ["DEL x", "FLUSHALL", "GETDEL x"] {
        let mut h = Harness::new();
        let watched = watch(&h, 0, &["x"]);
        h.run(0, "SET x 1");
        h.run(0, remove);
        assert!(!ran(&mut h, 0, &watched), "{remove}");
    }
    // Also when it expired and was purged in between.
    let mut h = Harness::new();
    let watched = watch(&h, 0, &["x"]);
    h.run(0, "SET x 1 PX 5");
    h.run(10, "SET other 1");
    assert_eq!(h.store.stats().keys, 1, "x was purged");
    assert!(!ran(&mut h, 10, &watched));
}

#[test]
fn flushall_does_not_touch_keys_that_did_not_exist() {
    let mut h = Harness::new();
    h.run(0, "MSET a 1 b 2");
    let watched = watch(&h, 0, &["x"]);
    h.run(0, "FLUSHALL");
    assert!(ran(&mut h, 0, &watched));
}

/// A key that expires between WATCH and EXEC counts as changed, purged or
/// not (Redis 7.0: "EXEC fail on lazy expired WATCHed key").
#[test]
fn expiry_counts_as_a_change() {
    let mut h = Harness::new();
    h.run(0, "SET x 1 PX 100");
    let watched = watch(&h, 50, &["x"]);
    assert!(!ran(&mut h, 100, &watched));
    assert_eq!(h.query(100, "GET runs"), null(), "nothing ran");
}

/// A key already expired (not yet purged) at WATCH is absent; deleting or
/// purging it later is no change ("WATCH stale keys should not fail EXEC",
/// "Delete WATCHed stale keys should not fail EXEC", "FLUSHDB while
/// watching stale keys should not fail EXEC").
#[test]
fn a_stale_key_removed_later_is_no_change() {
    for removal in ["EXISTS x", "DEL x", "FLUSHALL", "SET other 1"] {
        let mut h = Harness::new();
        h.run(0, "SET x 1 PX 1");
        let watched = watch(&h, 2, &["x"]);
        assert!(!watched[0].live);
        h.run(2, removal);
        assert!(ran(&mut h, 2, &watched), "{removal}");
    }
}

#[test]
fn a_key_recreated_after_delete_still_counts() {
    let mut h = Harness::new();
    h.run(0, "SET x 1");
    let watched = watch(&h, 0, &["x"]);
    h.run(0, "DEL x");
    h.run(0, "SET x 1");
    assert!(!ran(&mut h, 0, &watched));
}

/// Past the tombstone bound the check is conservative: it may abort, never
/// run a transaction whose key changed.
#[test]
fn evicted_tombstones_abort_rather_than_miss() {
    let mut h = Harness::new();
    let watched = watch(&h, 0, &["x"]);
    h.run(0, "SET x 1");
    h.run(0, "DEL x");
    for batch in 0..=(TOMBSTONES_MAX / 1000) {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{batch}-{i}")).collect();
        h.run(
            0,
            &format!(
                "MSET {}",
                keys.iter()
                    .map(|k| format!("{k} v"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        h.run(0, &format!("DEL {}", keys.join(" ")));
    }
    assert!(!ran(&mut h, 0, &watched));
}

#[test]
fn a_read_only_transaction_is_checked_too() {
    let mut h = Harness::new();
    h.run(0, "SET x 1");
    let watched = watch(&h, 0, &["x"]);
    let guarded = KvCommand::Exec(vec![
        KvCommand::WatchCheck {
            watched: watched.clone(),
        },
        parse(&args("GET x")).unwrap(),
    ]);
    assert!(guarded.is_read());
    // The harness checks query and apply agree.
    assert_eq!(h.apply(0, &guarded), array(vec![bulk("1")]));
    h.run(0, "SET x 2");
    assert_eq!(h.apply(0, &guarded), Reply::NullArray);
    // An empty transaction (MULTI; PING; EXEC) is only the check.
    let empty = KvCommand::Exec(vec![KvCommand::WatchCheck { watched }]);
    assert_eq!(h.apply(0, &empty), Reply::NullArray);
}

/// Stamps and tombstones travel in snapshots: a replica restored from one
/// decides every WATCH check as the replica that applied the log.
#[test]
fn a_restored_replica_decides_alike() {
    let mut h = Harness::new();
    h.run(0, "MSET a 1 b 2");
    let live = watch(&h, 0, &["a"]);
    let gone = watch(&h, 0, &["c"]);
    h.run(0, "SET c 1");
    h.run(0, "DEL c");
    let mut copy = Harness::new();
    copy.store.restore(&h.store.snapshot()).unwrap();
    copy.store.check_invariants().unwrap();
    copy.instance = h.instance;
    assert_eq!(copy.store.snapshot(), h.store.snapshot());
    assert!(ran(&mut copy, 0, &live));
    assert!(!ran(&mut copy, 0, &gone));
    assert!(ran(&mut h, 0, &live));
    assert!(!ran(&mut h, 0, &gone));
    assert_eq!(copy.store.snapshot(), h.store.snapshot());
}

#[test]
fn the_check_encodes_only_at_the_head_of_a_transaction() {
    let check = KvCommand::WatchCheck {
        watched: vec![WatchedKey {
            key: "k".into(),
            live: true,
            stamp: Stamp {
                instance: u64::MAX,
                sequence: 7,
            },
        }],
    };
    let guarded = KvCommand::Exec(vec![check.clone(), KvCommand::DbSize]);
    assert_eq!(KvCommand::decode(&guarded.encode()).unwrap(), guarded);
    assert!(KvCommand::decode(&check.encode()).is_err(), "alone");
    let misplaced = KvCommand::Exec(vec![KvCommand::DbSize, check]);
    assert!(KvCommand::decode(&misplaced.encode()).is_err(), "not first");
    // Every truncation is rejected, never a panic.
    let bytes = guarded.encode();
    for len in 0..bytes.len() {
        assert!(KvCommand::decode(&bytes[..len]).is_err(), "{len}");
    }
    let watch = KvCommand::Watch {
        keys: vec!["a".into(), "b".into()],
    };
    assert_eq!(KvCommand::decode(&watch.encode()).unwrap(), watch);
}

/// A transaction without WATCH still encodes as before (tag 39), so log
/// records written by earlier builds decode the same.
#[test]
fn an_unguarded_transaction_keeps_its_encoding() {
    let plain = KvCommand::Exec(vec![KvCommand::DbSize]);
    // Version, EXEC tag, count 1 (u32), DBSIZE tag.
    assert_eq!(&plain.encode()[..], &[1, 39, 1, 0, 0, 0, 25]);
}

/// Sets and sorted sets change through the same keyspace paths: a member
/// added, removed or re-scored aborts a transaction that watched the key,
/// and a read of them does not.
#[test]
fn set_and_sorted_set_writes_count_as_changes() {
    let mut h = Harness::new();
    h.run(0, "SADD s a");
    h.run(0, "ZADD z 1 a");
    for write in [
        "SADD s b",
        "SREM s a",
        "SPOP s",
        "ZADD z 2 a",
        "ZINCRBY z 1 a",
        "ZREM z a",
    ] {
        h.run(0, "SADD s a");
        h.run(0, "ZADD z 1 a");
        let watched = watch(&h, 0, &["s", "z"]);
        h.run(0, "SMEMBERS s");
        h.run(0, "ZRANGE z 0 -1");
        assert!(ran(&mut h, 0, &watched), "reads alone must not abort");
        let watched = watch(&h, 0, &["s", "z"]);
        h.run(0, write);
        assert!(!ran(&mut h, 0, &watched), "{write} must abort");
    }
}
