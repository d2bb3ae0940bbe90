//! Keys written with a time to live (`Op::PutTtl`) may vanish at any moment;
//! hand-built histories, each with its exact verdict.

use crate::support;

use support::*;
use synod_check::{check, check_with_witness, CheckOptions, Op, Operation, Outcome, Verdict};

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default())
}

#[track_caller]
fn assert_linearizable(history: &[Operation]) {
    let verdict = verdict(history);
    assert_eq!(verdict, Verdict::Linearizable, "{verdict}");
}

/// Asserts the history is not linearizable and returns the explanation.
#[track_caller]
fn assert_not_linearizable(history: &[Operation]) -> String {
    match verdict(history) {
        Verdict::NotLinearizable { explanation, .. } => explanation,
        other => panic!("expected not linearizable, got {other}"),
    }
}

fn nil() -> Outcome {
    Outcome::Value(None)
}

#[test]
fn a_key_is_seen_then_vanishes_for_good() {
    let history = [
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(2, get("k"), value("v"), 20, 30),
        at(2, get("k"), nil(), 40, 50),
        at(3, get("k"), nil(), 60, 70),
    ];
    assert_linearizable(&history);
    // The log order never says when a key expired: the witness fails and the
    // search decides.
    let verdict = check_with_witness(&history, &[0, 1, 2, 3], &CheckOptions::default());
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn an_expired_key_does_not_come_back() {
    let explanation = assert_not_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(2, get("k"), nil(), 20, 30),
        at(3, get("k"), value("v"), 40, 50),
    ]);
    assert!(
        explanation.contains("1. #0 client 1: SET \"k\" \"v\" PX -> OK (t=0..10)"),
        "{explanation}"
    );
    assert!(
        explanation.contains("State after it: \"k\" absent."),
        "{explanation}"
    );
    assert!(
        explanation
            .contains("#2 client 3: GET \"k\" -> \"v\" (t=40..50): here it would return nil"),
        "{explanation}"
    );
}

#[test]
fn overlapping_readers_may_see_the_value_then_nothing() {
    // The read of "v" takes effect first, then the key expires.
    assert_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(2, get("k"), nil(), 20, 40),
        at(3, get("k"), value("v"), 25, 45),
    ]);
    // Not when the read of nothing completed before the other began.
    assert_not_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(2, get("k"), nil(), 20, 24),
        at(3, get("k"), value("v"), 25, 45),
    ]);
}

#[test]
fn an_unknown_put_ttl_explains_reads_of_either_kind() {
    assert_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Unknown, 0, 5),
        at(2, get("k"), nil(), 10, 20),
        at(2, get("k"), value("v"), 30, 40),
        at(3, get("k"), nil(), 50, 60),
    ]);
    assert_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Unknown, 0, 5),
        at(2, get("k"), value("v"), 10, 20),
    ]);
    assert_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Unknown, 0, 5),
        at(2, get("k"), nil(), 10, 20),
    ]);
    // It took effect once: the value cannot come back a second time.
    assert_not_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Unknown, 0, 5),
        at(2, get("k"), value("v"), 10, 20),
        at(2, get("k"), nil(), 30, 40),
        at(3, get("k"), value("v"), 50, 60),
    ]);
}

#[test]
fn append_tells_whether_the_key_had_expired() {
    // After the key expired, the append creates it afresh: its length is the
    // suffix's.
    assert_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(2, get("k"), nil(), 20, 30),
        at(1, append("k", "c"), Outcome::Int(1), 40, 50),
        at(2, get("k"), value("c"), 60, 70),
    ]);
    // The append saw an expired key, so a later read cannot see the old value.
    let explanation = assert_not_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(1, append("k", "c"), Outcome::Int(1), 20, 30),
        at(2, get("k"), value("ab"), 40, 50),
    ]);
    assert!(
        explanation.contains("here it would return \"c\""),
        "{explanation}"
    );
    // An append before expiry keeps the time to live (as in Redis) ...
    assert_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(1, append("k", "c"), Outcome::Int(3), 20, 30),
        at(2, get("k"), value("abc"), 40, 50),
        at(2, get("k"), nil(), 60, 70),
    ]);
    // ... and one after expiry creates a key that does not expire.
    assert_not_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(1, append("k", "c"), Outcome::Int(1), 20, 30),
        at(2, get("k"), nil(), 40, 50),
    ]);
}

#[test]
fn incr_tells_whether_the_key_had_expired() {
    // 5 + 1: not expired, the time to live stays.
    assert_linearizable(&[
        at(1, put_ttl("n", "5"), Outcome::Ok, 0, 10),
        at(1, incr("n", 1), Outcome::Int(6), 20, 30),
        at(2, get("n"), nil(), 40, 50),
    ]);
    // 0 + 1: expired, the new key does not expire.
    assert_not_linearizable(&[
        at(1, put_ttl("n", "5"), Outcome::Ok, 0, 10),
        at(1, incr("n", 1), Outcome::Int(1), 20, 30),
        at(2, get("n"), nil(), 40, 50),
    ]);
    // "0" + 1 and absent + 1 look alike: either may follow.
    assert_linearizable(&[
        at(1, put_ttl("n", "0"), Outcome::Ok, 0, 10),
        at(1, incr("n", 1), Outcome::Int(1), 20, 30),
        at(2, get("n"), nil(), 40, 50),
    ]);
    // Not an integer: an error, unless the key had expired.
    assert_linearizable(&[
        at(1, put_ttl("n", "x"), Outcome::Ok, 0, 10),
        at(1, incr("n", 2), Outcome::Error, 20, 30),
        at(1, incr("n", 2), Outcome::Int(2), 40, 50),
        at(2, get("n"), value("2"), 60, 70),
    ]);
}

#[test]
fn delete_sees_an_expired_key_as_absent() {
    assert_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(
            1,
            Op::Delete { key: key("k") },
            Outcome::Bool(false),
            20,
            30,
        ),
        at(2, get("k"), nil(), 40, 50),
    ]);
    assert_not_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(
            1,
            Op::Delete { key: key("k") },
            Outcome::Bool(false),
            20,
            30,
        ),
        at(2, get("k"), value("v"), 40, 50),
    ]);
}

#[test]
fn a_write_without_ttl_makes_the_key_permanent() {
    let explanation = assert_not_linearizable(&[
        at(1, put_ttl("k", "a"), Outcome::Ok, 0, 10),
        at(1, put("k", "b"), Outcome::Ok, 20, 30),
        at(2, get("k"), nil(), 40, 50),
    ]);
    assert!(
        explanation.contains("here it would return \"b\""),
        "{explanation}"
    );
    // SET ... GET replaces the key, ttl included: it may see the old value or
    // nothing, but the new one stays.
    let put_get = |outcome| {
        at(
            1,
            Op::PutGet {
                key: key("k"),
                value: key("b"),
            },
            outcome,
            20,
            30,
        )
    };
    for old in [value("a"), nil()] {
        assert_linearizable(&[
            at(1, put_ttl("k", "a"), Outcome::Ok, 0, 10),
            put_get(old.clone()),
            at(2, get("k"), value("b"), 40, 50),
        ]);
        assert_not_linearizable(&[
            at(1, put_ttl("k", "a"), Outcome::Ok, 0, 10),
            put_get(old),
            at(2, get("k"), nil(), 40, 50),
        ]);
    }
    // And a later SET ... PX makes it expiring again.
    assert_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(1, put_ttl("k", "b"), Outcome::Ok, 20, 30),
        at(2, get("k"), nil(), 40, 50),
    ]);
}

#[test]
fn an_unknown_append_may_land_before_or_after_expiry() {
    // Seen as "c": it landed after expiry, on an absent key, and made a key
    // that no longer expires ...
    assert_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(2, append("k", "c"), Outcome::Unknown, 20, 25),
        at(3, get("k"), value("c"), 30, 40),
        at(3, get("k"), value("c"), 50, 60),
    ]);
    assert_not_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(2, append("k", "c"), Outcome::Unknown, 20, 25),
        at(3, get("k"), value("c"), 30, 40),
        at(3, get("k"), nil(), 50, 60),
    ]);
    // ... seen as "abc": it landed before, and the key still expires.
    assert_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(2, append("k", "c"), Outcome::Unknown, 20, 25),
        at(3, get("k"), value("abc"), 30, 40),
        at(3, get("k"), nil(), 50, 60),
    ]);
    // Expired, then the delayed append, then seen.
    assert_linearizable(&[
        at(1, put_ttl("k", "ab"), Outcome::Ok, 0, 10),
        at(2, append("k", "c"), Outcome::Unknown, 20, 25),
        at(3, get("k"), nil(), 30, 40),
        at(3, get("k"), value("c"), 50, 60),
    ]);
}

#[test]
fn a_transaction_sees_a_key_expire_before_or_after_it_never_during() {
    let read_twice = |first, second| {
        at(
            2,
            Op::Txn {
                ops: vec![get("k"), get("k")],
            },
            Outcome::Txn(vec![first, second]),
            20,
            30,
        )
    };
    let put = at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10);
    assert_linearizable(&[put.clone(), read_twice(value("v"), value("v"))]);
    assert_linearizable(&[put.clone(), read_twice(nil(), nil())]);
    assert_not_linearizable(&[put, read_twice(value("v"), nil())]);
}

#[test]
fn a_mismatch_lists_every_answer_an_expiring_key_allows() {
    let explanation = assert_not_linearizable(&[
        at(1, put_ttl("k", "v"), Outcome::Ok, 0, 10),
        at(2, get("k"), value("w"), 20, 30),
    ]);
    assert!(
        explanation.contains("here it would return \"v\" or nil"),
        "{explanation}"
    );
    assert!(
        explanation.contains("\"k\" = \"v\" (may expire)"),
        "{explanation}"
    );
}

#[test]
fn too_many_forks_are_undetermined() {
    let wide = Op::Txn {
        ops: (0..9).map(|i| append(&format!("k{i}"), "x")).collect(),
    };
    let history = [
        at(1, put_ttl("k0", "v"), Outcome::Ok, 0, 10),
        at(
            1,
            Op::Txn {
                ops: (0..9).map(|i| get(&format!("k{i}"))).collect(),
            },
            Outcome::Txn((0..9).map(|_| nil()).collect()),
            20,
            30,
        ),
        at(2, wide, Outcome::Unknown, 15, 16),
    ];
    match verdict(&history) {
        Verdict::Undetermined { reason } => {
            assert!(
                reason.contains("appends to or increments 9 keys"),
                "{reason}"
            )
        }
        other => panic!("expected undetermined, got {other}"),
    }
}
