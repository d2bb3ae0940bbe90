//! Small histories built by hand, each with a known verdict.

use crate::support;

use support::*;
use synod_check::{check, CheckOptions, Op, Operation, Outcome, Verdict};

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default())
}

#[track_caller]
fn assert_linearizable(history: &[Operation]) {
    let verdict = verdict(history);
    assert!(verdict.is_linearizable(), "{verdict}");
}

/// Asserts the history is not linearizable and returns the explanation.
#[track_caller]
fn assert_not_linearizable(history: &[Operation]) -> String {
    match verdict(history) {
        Verdict::NotLinearizable { explanation, .. } => explanation,
        other => panic!("expected not linearizable, got {other}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&[]);
}

#[test]
fn sequential_history_is_linearizable() {
    let k = "k";
    assert_linearizable(&[
        at(1, get(k), Outcome::Value(None), 0, 5),
        at(1, put(k, "a"), Outcome::Ok, 10, 20),
        at(2, get(k), value("a"), 30, 40),
        at(1, append(k, "b"), Outcome::Int(2), 50, 60),
        at(
            2,
            Op::PutGet {
                key: key(k),
                value: key("7"),
            },
            value("ab"),
            70,
            80,
        ),
        at(1, incr(k, 3), Outcome::Int(10), 90, 100),
        at(2, Op::Delete { key: key(k) }, Outcome::Bool(true), 110, 120),
        at(
            1,
            Op::Delete { key: key(k) },
            Outcome::Bool(false),
            130,
            140,
        ),
        at(2, get(k), Outcome::Value(None), 150, 160),
    ]);
}

#[test]
fn concurrent_history_is_linearizable() {
    // Three reads overlap the write of "b": two take effect before it, one
    // after.
    assert_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, put("k", "b"), Outcome::Ok, 20, 60),
        at(3, get("k"), value("a"), 25, 30),
        at(4, get("k"), value("b"), 35, 50),
        at(5, get("k"), value("a"), 26, 38),
    ]);
    // Same history given in another order.
    let mut shuffled = vec![
        at(5, get("k"), value("a"), 26, 38),
        at(4, get("k"), value("b"), 35, 50),
        at(2, put("k", "b"), Outcome::Ok, 20, 60),
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(3, get("k"), value("a"), 25, 30),
    ];
    assert_linearizable(&shuffled);
    // A read that began after a read of the new value ended cannot see the
    // old one: new-old inversion.
    shuffled.push(at(6, get("k"), value("a"), 52, 55));
    assert_not_linearizable(&shuffled);
}

#[test]
fn equal_times_count_as_concurrent() {
    // The put completes at 10 and the get is invoked at 10: either order.
    assert_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, get("k"), Outcome::Value(None), 10, 20),
    ]);
    assert_not_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, get("k"), Outcome::Value(None), 11, 20),
    ]);
}

#[test]
fn stale_read_is_not_linearizable() {
    let explanation = assert_not_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(1, put("k", "b"), Outcome::Ok, 20, 30),
        at(2, get("k"), value("a"), 40, 50),
    ]);
    // The explanation names the read and what the model returns instead.
    assert!(
        explanation.contains("#2 client 2: GET \"k\" -> \"a\""),
        "{explanation}"
    );
    assert!(
        explanation.contains("here it would return \"b\""),
        "{explanation}"
    );
    assert!(explanation.contains("\"k\" = \"b\""), "{explanation}");
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    assert_not_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, get("k"), value("zzz"), 5, 30),
    ]);
    assert_not_linearizable(&[at(2, get("k"), value("zzz"), 5, 30)]);
}

#[test]
fn lost_write_followed_by_reads_is_not_linearizable() {
    assert_not_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, get("k"), Outcome::Value(None), 20, 30),
        at(3, get("k"), Outcome::Value(None), 40, 50),
    ]);
}

#[test]
fn unknown_write_whose_effect_is_seen_is_linearizable() {
    assert_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, put("k", "b"), Outcome::Unknown, 20, 25),
        // Seen long after the client gave up: a delayed message.
        at(3, get("k"), value("a"), 30, 40),
        at(3, get("k"), value("b"), 500, 510),
        at(3, get("k"), value("b"), 600, 610),
    ]);
    // And one whose effect is never seen never happened.
    assert_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, put("k", "b"), Outcome::Unknown, 20, 25),
        at(3, get("k"), value("a"), 30, 40),
    ]);
}

#[test]
fn unknown_write_seen_then_unseen_is_not_linearizable() {
    assert_not_linearizable(&[
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(2, put("k", "b"), Outcome::Unknown, 20, 25),
        at(3, get("k"), value("b"), 30, 40),
        at(3, get("k"), value("a"), 50, 60),
    ]);
}

#[test]
fn unknown_operation_cannot_take_effect_before_its_invocation() {
    assert_not_linearizable(&[
        at(3, get("k"), value("b"), 0, 10),
        at(2, put("k", "b"), Outcome::Unknown, 20, 25),
    ]);
}

#[test]
fn duplicate_append_is_not_linearizable() {
    // One append of "x", but a reader sees it twice.
    assert_not_linearizable(&[
        at(1, append("k", "x"), Outcome::Int(1), 0, 10),
        at(2, get("k"), value("xx"), 20, 30),
    ]);
    // An append whose client timed out (and retried inside the same
    // operation) took effect twice: a later append sees a length of 3.
    assert_not_linearizable(&[
        at(1, append("k", "x"), Outcome::Unknown, 0, 10),
        at(2, append("k", "y"), Outcome::Int(3), 50, 60),
    ]);
    // Once is fine.
    assert_linearizable(&[
        at(1, append("k", "x"), Outcome::Unknown, 0, 10),
        at(2, append("k", "y"), Outcome::Int(2), 50, 60),
        at(2, get("k"), value("xy"), 70, 80),
    ]);
}

fn txn(ops: Vec<Op>) -> Op {
    Op::Txn { ops }
}

#[test]
fn reader_seeing_half_a_transaction_is_not_linearizable() {
    let write = at(
        1,
        txn(vec![put("a", "1"), put("b", "1")]),
        Outcome::Txn(vec![Outcome::Ok, Outcome::Ok]),
        0,
        10,
    );
    let read = |a: Option<&str>, b: Option<&str>| {
        at(
            2,
            txn(vec![get("a"), get("b")]),
            Outcome::Txn(vec![Outcome::Value(a.map(key)), Outcome::Value(b.map(key))]),
            2,
            8,
        )
    };
    assert_linearizable(&[write.clone(), read(Some("1"), Some("1"))]);
    assert_linearizable(&[write.clone(), read(None, None)]);
    let half = [write.clone(), read(Some("1"), None)];
    match verdict(&half) {
        Verdict::NotLinearizable { key_group, .. } => {
            assert_eq!(key_group, vec![key("a"), key("b")]);
        }
        other => panic!("expected not linearizable, got {other}"),
    }
    // Two single-key reads may each see either side: no atomic view needed.
    assert_linearizable(&[
        write,
        at(2, get("a"), value("1"), 2, 8),
        at(3, get("b"), Outcome::Value(None), 2, 8),
    ]);
}

#[test]
fn incr_on_a_non_integer_is_an_error_that_changes_nothing() {
    let setup = || {
        vec![
            at(1, put("k", "x"), Outcome::Ok, 0, 10),
            at(1, get("k"), value("x"), 40, 50),
        ]
    };
    let mut history = setup();
    history.push(at(2, incr("k", 1), Outcome::Error, 20, 30));
    assert_linearizable(&history);
    // Claiming it incremented is wrong.
    let mut history = setup();
    history.push(at(2, incr("k", 1), Outcome::Int(1), 20, 30));
    assert_not_linearizable(&history);
    // An error on an integer is wrong too.
    assert_not_linearizable(&[
        at(1, put("k", "5"), Outcome::Ok, 0, 10),
        at(2, incr("k", 1), Outcome::Error, 20, 30),
    ]);
    // Overflow is an error; the value stays.
    assert_linearizable(&[
        at(1, put("k", "9223372036854775807"), Outcome::Ok, 0, 10),
        at(2, incr("k", 1), Outcome::Error, 20, 30),
        at(2, incr("k", -7), Outcome::Int(i64::MAX - 7), 40, 50),
    ]);
    // Inside a transaction the error is per operation; the rest applies.
    assert_linearizable(&[
        at(
            1,
            txn(vec![put("k", "x"), incr("k", 1), append("k", "y")]),
            Outcome::Txn(vec![Outcome::Ok, Outcome::Error, Outcome::Int(2)]),
            0,
            10,
        ),
        at(1, get("k"), value("xy"), 20, 30),
    ]);
}

#[test]
fn first_failing_partition_is_reported() {
    let verdict = verdict(&[
        at(1, put("a", "1"), Outcome::Ok, 0, 10),
        at(1, get("a"), value("1"), 20, 30),
        at(2, put("b", "1"), Outcome::Ok, 0, 10),
        at(2, get("b"), Outcome::Value(None), 20, 30),
        at(3, put("c", "1"), Outcome::Ok, 0, 10),
        at(3, get("c"), value("2"), 20, 30),
    ]);
    match &verdict {
        Verdict::NotLinearizable { key_group, .. } => assert_eq!(key_group, &vec![key("b")]),
        other => panic!("expected not linearizable, got {other}"),
    }
    assert!(verdict
        .to_string()
        .starts_with("not linearizable on keys [\"b\"]: "));
}

#[test]
fn malformed_histories_are_undetermined() {
    let cases = [
        at(1, put("k", "a"), Outcome::Ok, 10, 9),
        at(1, get("k"), Outcome::Bool(true), 0, 1),
        at(
            1,
            txn(vec![get("k")]),
            Outcome::Txn(vec![Outcome::Value(None), Outcome::Ok]),
            0,
            1,
        ),
    ];
    for case in cases {
        match verdict(&[at(2, put("k", "b"), Outcome::Ok, 0, 5), case]) {
            Verdict::Undetermined { reason } => {
                assert!(
                    reason.starts_with("malformed history: operation #1"),
                    "{reason}"
                )
            }
            other => panic!("expected undetermined, got {other}"),
        }
    }
    // An unknown outcome's completion time is ignored.
    assert_linearizable(&[at(1, put("k", "a"), Outcome::Unknown, 10, 0)]);
}

#[test]
fn exhausted_budget_is_undetermined() {
    // Ten concurrent writes, then reads that see them in the reverse of the
    // order the search tries them first: it must explore many orders, more
    // than a budget of 20 configurations allows.
    let mut history = Vec::new();
    for i in 0..10 {
        history.push(at(i, put("k", &i.to_string()), Outcome::Ok, 0, 100));
        let seen = (9 - i).to_string();
        history.push(at(100, get("k"), value(&seen), 1 + 2 * i, 2 + 2 * i));
    }
    assert_linearizable(&history);
    match check(&history, &CheckOptions { max_states: 20 }) {
        Verdict::Undetermined { reason } => {
            assert!(reason.contains("budget exhausted"), "{reason}")
        }
        other => panic!("expected undetermined, got {other}"),
    }
    // A definite failure elsewhere still wins over an undetermined partition.
    history.push(at(1, get("z"), value("never"), 0, 1));
    let tight = check(&history, &CheckOptions { max_states: 20 });
    assert!(matches!(tight, Verdict::NotLinearizable { .. }), "{tight}");
}

#[test]
fn many_unknown_writes_do_not_hide_a_stale_read() {
    // Twenty writes with unknown outcomes, never observed, then a stale read.
    // Without pruning configurations that differ only in which of them took
    // effect, this search would explore about 2^20 subsets.
    let mut history = vec![
        at(1, put("k", "a"), Outcome::Ok, 0, 10),
        at(1, put("k", "b"), Outcome::Ok, 20, 30),
    ];
    for i in 0..20 {
        history.push(at(
            10 + i,
            put("k", &format!("u{i}")),
            Outcome::Unknown,
            40,
            41,
        ));
    }
    history.push(at(2, get("k"), value("a"), 100, 110));
    let verdict = check(
        &history,
        &CheckOptions {
            max_states: 100_000,
        },
    );
    assert!(
        matches!(verdict, Verdict::NotLinearizable { .. }),
        "{verdict}"
    );
}

#[test]
fn display_and_is_linearizable() {
    assert_eq!(Verdict::Linearizable.to_string(), "linearizable");
    assert!(Verdict::Linearizable.is_linearizable());
    let undetermined = Verdict::Undetermined {
        reason: "why".to_string(),
    };
    assert_eq!(undetermined.to_string(), "undetermined: why");
    assert!(!undetermined.is_linearizable());
    assert_eq!(CheckOptions::default().max_states, 5_000_000);
}

mod witness {
    use super::*;
    use synod_check::{check_with_witness, verify_witness};

    #[test]
    fn a_correct_witness_verifies() {
        let history = vec![
            at(1, put("k", "a"), Outcome::Ok, 0, 10),
            at(2, get("k"), value("a"), 5, 30),
            at(3, put("k", "b"), Outcome::Unknown, 20, 0),
            at(1, get("k"), value("b"), 40, 50),
        ];
        assert_eq!(verify_witness(&history, &[0, 1, 2, 3]), Ok(()));
    }

    #[test]
    fn each_rule_is_enforced() {
        let history = vec![
            at(1, put("k", "a"), Outcome::Ok, 0, 10),
            at(2, get("k"), value("a"), 20, 30),
            at(3, put("k", "b"), Outcome::Unknown, 20, 0),
        ];
        // Real time: b was invoked after a completed.
        let writes = vec![
            at(1, put("k", "a"), Outcome::Ok, 0, 10),
            at(2, put("k", "b"), Outcome::Ok, 20, 30),
        ];
        let err = verify_witness(&writes, &[1, 0]).unwrap_err();
        assert!(err.contains("completed at"), "{err}");
        assert_eq!(verify_witness(&writes, &[0, 1]), Ok(()));
        // The model: the unknown put took effect before the get.
        let err = verify_witness(&history, &[0, 2, 1]).unwrap_err();
        assert!(err.contains("model gives"), "{err}");
        // Completeness, duplicates and range.
        let err = verify_witness(&history, &[0]).unwrap_err();
        assert!(err.contains("not in the witness"), "{err}");
        let err = verify_witness(&history, &[0, 0, 1]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = verify_witness(&history, &[0, 1, 7]).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        // Leaving the unknown one out is fine.
        assert_eq!(verify_witness(&history, &[0, 1]), Ok(()));
    }

    #[test]
    fn a_wrong_witness_falls_back_to_the_search() {
        let history = vec![
            at(1, put("k", "a"), Outcome::Ok, 0, 10),
            at(2, put("k", "b"), Outcome::Ok, 5, 15),
            at(3, get("k"), value("a"), 20, 30),
        ];
        // The witness puts b last; the search finds b, a, get.
        assert!(verify_witness(&history, &[0, 1, 2]).is_err());
        let verdict = check_with_witness(&history, &[0, 1, 2], &CheckOptions::default());
        assert_eq!(verdict, Verdict::Linearizable);
        // And a history no witness can save is still refused.
        let bad = vec![
            at(1, put("k", "a"), Outcome::Ok, 0, 10),
            at(3, get("k"), value(""), 20, 30),
        ];
        let verdict = check_with_witness(&bad, &[0, 1], &CheckOptions::default());
        assert!(
            matches!(verdict, Verdict::NotLinearizable { .. }),
            "{verdict}"
        );
    }
}

fn watched_txn(watched: &[(&str, Option<&str>)], ops: Vec<Op>) -> Op {
    Op::WatchedTxn {
        watched: watched.iter().map(|(k, v)| (key(k), v.map(key))).collect(),
        ops,
    }
}

/// Client 1 watches `k` (reads "a"), client 2 writes it, then client 1's
/// EXEC: it must abort, and running it is a violation.
#[test]
fn a_watched_transaction_after_a_write_must_abort() {
    let ran = |outcome| {
        vec![
            at(1, put("k", "a;"), Outcome::Ok, 0, 5),
            at(1, get("k"), value("a;"), 10, 15),
            at(2, put("k", "b;"), Outcome::Ok, 20, 25),
            at(
                1,
                watched_txn(&[("k", Some("a;"))], vec![put("x", "1;")]),
                outcome,
                30,
                35,
            ),
            at(2, get("x"), Outcome::Value(None), 40, 45),
        ]
    };
    let explanation = assert_not_linearizable(&ran(Outcome::Txn(vec![Outcome::Ok])));
    assert!(explanation.contains("WATCH \"k\"=\"a;\""), "{explanation}");
    assert_linearizable(&ran(Outcome::Aborted));
}

/// Nothing wrote `k` between the WATCH and the EXEC: it must run, and an
/// abort is a violation. A write that completed in between forces the abort;
/// one concurrent with the EXEC allows either.
#[test]
fn a_watched_transaction_without_a_write_must_run() {
    let history = |outcome, write: (u64, u64)| {
        vec![
            at(1, put("k", "a;"), Outcome::Ok, 0, 5),
            at(1, get("k"), value("a;"), 10, 15),
            at(
                1,
                watched_txn(&[("k", Some("a;"))], vec![get("k")]),
                outcome,
                30,
                35,
            ),
            at(2, put("k", "b;"), Outcome::Ok, write.0, write.1),
        ]
    };
    let ran = || Outcome::Txn(vec![value("a;")]);
    assert_not_linearizable(&history(Outcome::Aborted, (50, 55)));
    assert_linearizable(&history(ran(), (50, 55)));
    assert_linearizable(&history(Outcome::Aborted, (12, 17)));
    assert_not_linearizable(&history(ran(), (12, 17)));
    assert_linearizable(&history(Outcome::Aborted, (12, 40)));
    assert_linearizable(&history(ran(), (12, 40)));
    // Unknown: it may have run before the write, or never.
    assert_linearizable(&history(Outcome::Unknown, (12, 17)));
}

/// A value that can come back makes the check by value inexact: refused.
#[test]
fn watched_keys_whose_values_may_repeat_are_refused() {
    let watched = at(
        1,
        watched_txn(&[("k", None)], vec![]),
        Outcome::Aborted,
        30,
        35,
    );
    for (op, why) in [
        (put("k", "a;"), "not prefix-free"),
        (append("k", "a"), "not prefix-free"),
        (incr("k", 1), "increments"),
        (Op::Delete { key: key("k") }, "deletes"),
    ] {
        let history = [
            at(2, put("k", "a;"), Outcome::Ok, 0, 5),
            at(2, op, Outcome::Unknown, 10, 15),
            watched.clone(),
        ];
        match verdict(&history) {
            Verdict::Undetermined { reason } => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected undetermined, got {other}"),
        }
    }
}

fn push(k: &str, v: &str) -> Op {
    Op::Push {
        key: key(k),
        value: key(v),
    }
}

fn pop(k: &str) -> Op {
    Op::Pop { key: key(k) }
}

#[test]
fn a_queue_pops_in_push_order() {
    assert_linearizable(&[
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(1, push("q", "b"), Outcome::Int(2), 20, 30),
        at(2, pop("q"), value("a"), 40, 50),
        at(3, pop("q"), value("b"), 45, 60),
        at(2, pop("q"), Outcome::Value(None), 70, 80),
        // A blocking pop invoked before the push it got.
        at(3, pop("q"), value("c"), 90, 130),
        at(1, push("q", "c"), Outcome::Int(1), 100, 110),
    ]);
    // Out of order.
    assert_not_linearizable(&[
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(1, push("q", "b"), Outcome::Int(2), 20, 30),
        at(2, pop("q"), value("b"), 40, 50),
    ]);
    // An element popped twice.
    assert_not_linearizable(&[
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(2, pop("q"), value("a"), 20, 30),
        at(3, pop("q"), value("a"), 25, 40),
    ]);
}

#[test]
fn a_timed_out_pop_needs_an_empty_list_inside_its_interval() {
    // Nil while the list held "a" for the whole of the pop's interval.
    assert_not_linearizable(&[
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(2, pop("q"), Outcome::Value(None), 20, 500),
        at(3, pop("q"), value("a"), 600, 610),
    ]);
    // Nil is fine if the element was popped by someone else meanwhile.
    assert_linearizable(&[
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(2, pop("q"), Outcome::Value(None), 20, 500),
        at(3, pop("q"), value("a"), 400, 410),
    ]);
}

#[test]
fn a_list_key_touched_otherwise_is_refused() {
    let history = [
        at(1, push("q", "a"), Outcome::Int(1), 0, 10),
        at(2, get("q"), Outcome::Value(None), 20, 30),
    ];
    assert!(
        matches!(verdict(&history), Verdict::Undetermined { .. }),
        "{}",
        verdict(&history)
    );
}
