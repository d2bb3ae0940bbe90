//! DUMP and RESTORE (and MEMORY USAGE, whose codec they share): every
//! type round trips with its expiry, Redis 7's options and errors, and payloads that are corrupt, truncated, foreign or
//! hostile are refused (at parse on the proposer, and again at apply).

use crate::common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use synod_kv::{parse, KvCommand, RestoreCommand, RestoreExpiry};
use synod_resp::Reply;

const T: u64 = 1_000_000;
const PAYLOAD_ERROR: &str = "ERR DUMP payload version or checksum are wrong";
const BUSYKEY: &str = "BUSYKEY Target key name already exists.";

fn command(parts: &[&[u8]]) -> Result<KvCommand, Reply> {
    let args: Vec<Bytes> = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    parse(&args)
}

fn dump(h: &mut Harness, key: &str) -> Bytes {
    match h.apply(T, &command(&[b"DUMP", key.as_bytes()]).unwrap()) {
        Reply::Bulk(payload) => payload,
        other => panic!("DUMP {key}: {other:?}"),
    }
}

fn restore(
    h: &mut Harness,
    now: u64,
    key: &str,
    ttl: &str,
    payload: &[u8],
    options: &[&str],
) -> Reply {
    let mut parts: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), ttl.as_bytes(), payload];
    parts.extend(options.iter().map(|o| o.as_bytes()));
    match command(&parts) {
        Ok(command) => h.apply(now, &command),
        Err(reply) => reply,
    }
}

#[test]
fn every_type_round_trips_with_its_expiry() {
    let mut h = Harness::new();
    h.expect_all(
        T,
        &[
            ("SET s bar", ok()),
            ("SET n 12345", ok()),
            ("RPUSH l a b c a", int(4)),
            ("HSET h f1 v1 f2 v2", int(2)),
            ("SADD si 3 1 2", int(3)),
            ("SADD ss x y", int(2)),
            ("ZADD z 1.5 a -2 b inf c", int(3)),
            ("PEXPIRE l 5000", int(1)),
        ],
    );
    let keys = ["s", "n", "l", "h", "si", "ss", "z"];
    let readers = [
        "GET s",
        "GET n",
        "LRANGE l 0 -1",
        "HGETALL h",
        "SMEMBERS si",
        "SMEMBERS ss",
        "ZRANGE z 0 -1 WITHSCORES",
    ];
    let before: Vec<Reply> = readers.iter().map(|line| h.run(T, line)).collect();
    let encodings: Vec<Reply> = keys
        .iter()
        .map(|key| h.run(T, &format!("OBJECT ENCODING {key}")))
        .collect();
    let payloads: Vec<Bytes> = keys.iter().map(|key| dump(&mut h, key)).collect();
    for key in keys {
        h.run(T, &format!("DEL {key}"));
    }
    for (key, payload) in keys.iter().zip(&payloads) {
        assert_eq!(
            restore(&mut h, T + 10, key, "0", payload, &[]),
            ok(),
            "{key}"
        );
    }
    let after: Vec<Reply> = readers.iter().map(|line| h.run(T + 10, line)).collect();
    assert_eq!(before, after);
    let encodings_after: Vec<Reply> = keys
        .iter()
        .map(|key| h.run(T + 10, &format!("OBJECT ENCODING {key}")))
        .collect();
    assert_eq!(encodings, encodings_after);
    // The dumped expiry is not in the payload: ttl 0 means none.
    assert_eq!(h.run(T + 10, "PTTL l"), int(-1));
    // Relative and absolute expiries.
    assert_eq!(
        restore(&mut h, T, "l", "5000", &payloads[2], &["REPLACE"]),
        ok()
    );
    assert_eq!(h.run(T + 1000, "PTTL l"), int(4000));
    let at = (T + 3000).to_string();
    assert_eq!(
        restore(&mut h, T, "h", &at, &payloads[3], &["REPLACE", "ABSTTL"]),
        ok()
    );
    assert_eq!(h.run(T, "PTTL h"), int(3000));
    assert_eq!(h.run(T + 3000, "EXISTS h"), int(0));
    // A payload re-dumped is byte-identical (one encoding per value).
    assert_eq!(dump(&mut h, "z"), payloads[6]);
    assert_eq!(h.run(T, "DUMP missing"), null());
}

#[test]
fn options_and_errors_follow_redis_7() {
    let mut h = Harness::new();
    h.run(T, "SET foo bar");
    let payload = dump(&mut h, "foo");
    // BUSYKEY comes before the payload is looked at (Redis' order).
    assert_eq!(restore(&mut h, T, "foo", "0", b"...", &[]), err(BUSYKEY));
    assert_eq!(restore(&mut h, T, "foo", "0", &payload, &[]), err(BUSYKEY));
    assert_eq!(
        restore(&mut h, T, "foo", "0", b"...", &["REPLACE"]),
        err(PAYLOAD_ERROR)
    );
    assert_eq!(
        restore(&mut h, T, "new", "0", b"...", &[]),
        err(PAYLOAD_ERROR)
    );
    assert_eq!(
        restore(&mut h, T, "foo", "0", b"...", &["invalid-option"]),
        err(SYNTAX)
    );
    assert_eq!(
        restore(&mut h, T, "foo", "-1", &payload, &["REPLACE"]),
        err("ERR Invalid TTL value, must be >= 0")
    );
    assert_eq!(
        restore(&mut h, T, "foo", "x", &payload, &["REPLACE"]),
        err(NOT_INTEGER)
    );
    assert_eq!(
        restore(&mut h, T, "foo", "0", &payload, &["IDLETIME", "-1"]),
        err("ERR Invalid IDLETIME value, must be >= 0")
    );
    assert_eq!(
        restore(&mut h, T, "foo", "0", &payload, &["FREQ", "256"]),
        err("ERR Invalid FREQ value, must be >= 0 and <= 255")
    );
    assert_eq!(
        restore(
            &mut h,
            T,
            "foo",
            "0",
            &payload,
            &["IDLETIME", "1", "FREQ", "1"]
        ),
        err(SYNTAX)
    );
    assert_eq!(
        restore(
            &mut h,
            T,
            "foo",
            "0",
            &payload,
            &["REPLACE", "IDLETIME", "1000"]
        ),
        ok()
    );
    assert_eq!(
        restore(&mut h, T, "foo", "0", &payload, &["REPLACE", "FREQ", "100"]),
        ok()
    );
    // ABSTTL in the past: nothing is created, and REPLACE deletes the key.
    assert_eq!(restore(&mut h, T, "gone", "1", &payload, &["ABSTTL"]), ok());
    assert_eq!(h.run(T, "EXISTS gone"), int(0));
    assert_eq!(
        restore(&mut h, T, "foo", "1", &payload, &["ABSTTL", "REPLACE"]),
        ok()
    );
    assert_eq!(h.run(T, "EXISTS foo"), int(0));
    // The largest ttl a client can give still fits the clock.
    let huge = i64::MAX.to_string();
    assert_eq!(restore(&mut h, T, "foo", &huge, &payload, &[]), ok());
    assert_eq!(h.run(T, "PTTL foo"), int(i64::MAX));
    // An expired key does not make RESTORE busy.
    assert_eq!(h.run(T, "SET e v PX 10"), ok());
    assert_eq!(restore(&mut h, T + 10, "e", "0", &payload, &[]), ok());
    assert_eq!(h.run(T + 10, "GET e"), bulk("bar"));
    // Wrong arity and the COMMAND table's flags.
    assert_eq!(h.run(T, "RESTORE k 0"), arity("restore"));
    assert_eq!(h.run(T, "DUMP"), arity("dump"));
}

#[test]
fn a_foreign_payload_is_refused() {
    let mut h = Harness::new();
    // Redis 7.0's DUMP of "bar": type 0, the string, RDB version 10, CRC64.
    let redis = b"\x00\x03bar\x0a\x00\x85\x9a\x9b\x9f\xa8\x1c\x7b\x9c";
    assert_eq!(restore(&mut h, T, "k", "0", redis, &[]), err(PAYLOAD_ERROR));
    assert_eq!(
        restore(&mut h, T, "k", "0", redis, &["REPLACE"]),
        err(PAYLOAD_ERROR)
    );
    assert_eq!(restore(&mut h, T, "k", "0", b"", &[]), err(PAYLOAD_ERROR));
    assert_eq!(h.run(T, "EXISTS k"), int(0));
}

/// What a proposer that skipped the check (another build, a damaged log
/// entry) would send: the replicas decode it again and refuse it alike.
#[test]
fn apply_refuses_a_bad_payload_the_proposer_let_through() {
    let mut h = Harness::new();
    h.run(T, "RPUSH l a b c");
    let payload = dump(&mut h, "l");
    let mut hostile: Vec<Vec<u8>> = Vec::new();
    for at in 0..payload.len() {
        let mut flipped = payload.to_vec();
        flipped[at] ^= 0x40;
        hostile.push(flipped);
        hostile.push(payload[..at].to_vec());
    }
    for bad in hostile {
        let restore = KvCommand::Restore(Box::new(RestoreCommand {
            key: Bytes::from_static(b"r"),
            expiry: Some(RestoreExpiry::After { ttl_ms: 10 }),
            replace: true,
            payload: Bytes::from(bad),
        }));
        assert_eq!(h.apply(T, &restore), err(PAYLOAD_ERROR));
    }
    assert_eq!(h.run(T, "EXISTS r"), int(0));
}

#[test]
fn restore_counts_against_maxmemory_at_its_exact_size() {
    let mut h = Harness::new();
    h.run(T, "RPUSH l a b c");
    let payload = dump(&mut h, "l");
    // A limit just below what the copy needs refuses it.
    let set_limit = KvCommand::SetMaxMemory { bytes: 1 };
    h.apply(T, &set_limit);
    let reply = restore(&mut h, T, "copy", "0", &payload, &[]);
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("OOM")),
        "{reply:?}"
    );
    assert_eq!(h.run(T, "EXISTS copy"), int(0));
    h.apply(T, &KvCommand::SetMaxMemory { bytes: 0 });
    assert_eq!(restore(&mut h, T, "copy", "0", &payload, &[]), ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mutation of a real payload (bytes changed, cut or appended) is
    /// refused through the whole parse → log → apply path, never panics,
    /// and creates nothing.
    #[test]
    fn mutated_payloads_never_restore(
        members in proptest::collection::vec("[a-z0-9]{0,6}", 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 0..3),
        mode in 0u8..3,
    ) {
        let mut h = Harness::new();
        let mut line = String::from("SADD k");
        for member in &members {
            line.push(' ');
            line.push_str(if member.is_empty() { "e" } else { member });
        }
        h.run(T, &line);
        let payload = dump(&mut h, "k");
        let mut bad = payload.to_vec();
        match mode {
            0 => {
                for (at, byte) in &edits {
                    let at = at.index(bad.len());
                    bad[at] ^= byte | 1;
                }
            }
            1 => bad.truncate(cut.index(bad.len())),
            _ => bad.extend_from_slice(if extra.is_empty() { &[0] } else { &extra }),
        }
        prop_assume!(bad != payload.to_vec());
        let reply = restore(&mut h, T, "r", "0", &bad, &[]);
        // Several flipped bytes far apart can, very rarely, fool a CRC; the
        // payload must then still be a well-formed value.
        if reply != ok() {
            prop_assert_eq!(reply, err(PAYLOAD_ERROR));
            prop_assert_eq!(h.run(T, "EXISTS r"), int(0));
        }
    }
}

#[test]
fn memory_usage_is_the_accounted_size() {
    let mut h = Harness::new();
    h.run(T, "SET k abc");
    // Per-key overhead (64), the key and the value.
    assert_eq!(h.run(T, "MEMORY USAGE k"), int(64 + 1 + 3));
    assert_eq!(h.run(T, "MEMORY usage k SAMPLES 5"), int(68));
    assert_eq!(h.run(T, "MEMORY USAGE missing"), null());
    assert_eq!(h.run(T, "MEMORY USAGE k SAMPLES x"), err(NOT_INTEGER));
    assert_eq!(h.run(T, "MEMORY USAGE k COUNT 5"), err(SYNTAX));
    assert_eq!(
        h.run(T, "MEMORY DOCTOR"),
        err("ERR unknown subcommand 'DOCTOR'. Try MEMORY HELP.")
    );
    h.run(T, "SET e v PX 10");
    assert_eq!(h.run(T + 10, "MEMORY USAGE e"), null());
}
