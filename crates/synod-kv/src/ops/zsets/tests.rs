//! Unit tests of the sorted-set value and the range helpers.

use bytes::Bytes;

use super::ranges::select;
use super::{range_work, rank_range};
use crate::command_zset::{LexBound, LexRange, ScoreRange, ZRangeSpec};
use crate::zset::{member_bytes, ZSetMembers};

fn set_of(pairs: &[(f64, &str)]) -> ZSetMembers {
    let mut set = ZSetMembers::default();
    for (score, member) in pairs {
        set.insert(Bytes::copy_from_slice(member.as_bytes()), *score);
    }
    set
}

fn recount(set: &ZSetMembers) -> u64 {
    set.iter().map(|(member, _)| member_bytes(member)).sum()
}

fn names(picked: &[(Bytes, f64)]) -> Vec<&str> {
    picked
        .iter()
        .map(|(member, _)| std::str::from_utf8(member).unwrap())
        .collect()
}

#[test]
fn bytes_follow_every_change() {
    let mut set = set_of(&[(1.0, "a"), (2.0, "bb")]);
    assert_eq!(set.bytes(), recount(&set));
    assert_eq!(set.insert(Bytes::from("a"), 5.0), Some(1.0));
    assert_eq!(set.bytes(), recount(&set));
    assert_eq!(set.remove(b"bb"), Some(2.0));
    assert_eq!(set.remove(b"bb"), None);
    assert_eq!(set.bytes(), member_bytes(b"a"));
    assert_eq!(set.remove(b"a"), Some(5.0));
    assert_eq!(set.bytes(), 0);
    assert!(set.is_empty());
}

#[test]
fn order_is_score_then_member_with_infinities_at_the_ends() {
    let set = set_of(&[
        (f64::INFINITY, "z"),
        (1.0, "b"),
        (1.0, "a"),
        (f64::NEG_INFINITY, "y"),
        (-2.5, "c"),
    ]);
    let order: Vec<&[u8]> = set.iter().map(|(member, _)| member.as_ref()).collect();
    assert_eq!(order, [&b"y"[..], b"c", b"a", b"b", b"z"]);
    assert_eq!(set.rank(b"a"), Some(2));
    assert_eq!(set.rank(b"z"), Some(4));
    assert_eq!(set.rank(b"nope"), None);
}

#[test]
fn score_walks_from_both_ends() {
    let set = set_of(&[(1.0, "a"), (2.0, "b"), (2.0, "c"), (3.0, "d")]);
    let forward: Vec<_> = set
        .iter_from_score(2.0, false)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(forward, ["b", "c", "d"]);
    let forward: Vec<_> = set
        .iter_from_score(2.0, true)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(forward, ["d"]);
    let back: Vec<_> = set
        .iter_back_from_score(2.0, false)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(back, ["c", "b", "a"]);
    let back: Vec<_> = set
        .iter_back_from_score(2.0, true)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(back, ["a"]);
    let back: Vec<_> = set
        .iter_back_from_score(f64::INFINITY, false)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(back, ["d", "c", "b", "a"]);
}

#[test]
fn rank_ranges_resolve_like_redis() {
    assert_eq!(rank_range(4, 0, -1), Some((0, 3)));
    assert_eq!(rank_range(4, -2, -1), Some((2, 3)));
    assert_eq!(rank_range(4, 2, 1), None);
    assert_eq!(rank_range(4, 4, 9), None);
    assert_eq!(rank_range(4, i64::MIN, i64::MAX), Some((0, 3)));
    assert_eq!(rank_range(4, i64::MAX, i64::MIN), None);
    assert_eq!(rank_range(0, 0, -1), None);
}

#[test]
fn selections_walk_from_the_nearer_end_in_reply_order() {
    let set = set_of(&[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d"), (5.0, "e")]);
    let rank = |start, stop| ZRangeSpec::Rank { start, stop };
    assert_eq!(names(&select(&set, &rank(3, 4), false, None)), ["d", "e"]);
    assert_eq!(names(&select(&set, &rank(0, 1), false, None)), ["a", "b"]);
    assert_eq!(names(&select(&set, &rank(3, 4), true, None)), ["b", "a"]);
    assert_eq!(names(&select(&set, &rank(0, 1), true, None)), ["e", "d"]);
    let scores = ZRangeSpec::Score(ScoreRange {
        min: 2.0,
        min_exclusive: false,
        max: 4.0,
        max_exclusive: true,
    });
    assert_eq!(names(&select(&set, &scores, false, None)), ["b", "c"]);
    assert_eq!(names(&select(&set, &scores, true, None)), ["c", "b"]);
    assert_eq!(names(&select(&set, &scores, false, Some((1, 5)))), ["c"]);
    let lex = ZRangeSpec::Lex(LexRange {
        min: LexBound::Exclusive(Bytes::from("a")),
        max: LexBound::Inclusive(Bytes::from("c")),
    });
    let same = set_of(&[(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d")]);
    assert_eq!(names(&select(&same, &lex, false, None)), ["b", "c"]);
    assert_eq!(names(&select(&same, &lex, true, None)), ["c", "b"]);
}

#[test]
fn snapshots_keep_sorted_sets() {
    use crate::keyspace::{Keyspace, Value};
    use std::sync::Arc;

    let mut keyspace = Keyspace::default();
    let set = set_of(&[(1.5, "a"), (f64::NEG_INFINITY, "b"), (2.0, "c")]);
    keyspace.insert(b"z", Value::ZSet(Arc::new(set.clone())), Some(9));
    let bytes = crate::snapshot::write(&keyspace.view());
    let restored = crate::snapshot::read(&bytes).unwrap();
    restored.check_invariants().unwrap();
    assert_eq!(restored.used_bytes(), keyspace.used_bytes());
    let entry = restored.stored(b"z").unwrap();
    assert_eq!(entry.expire_at_ms(), Some(9));
    assert_eq!(entry.value_owned(), Value::ZSet(Arc::new(set)));
}

/// The walk a range is charged for the transaction budget: the members
/// `select` may visit, known before walking.
#[test]
fn range_work_bounds_the_walk_before_it() {
    let rank = |start, stop| ZRangeSpec::Rank { start, stop };
    // From the nearer end to the range's far edge.
    assert_eq!(range_work(100, &rank(0, 0), false, None), 1);
    assert_eq!(range_work(100, &rank(-1, -1), false, None), 1);
    assert_eq!(range_work(100, &rank(10, 19), true, None), 20);
    assert_eq!(range_work(100, &rank(50, 50), false, None), 50);
    assert_eq!(range_work(100, &rank(0, -1), false, None), 100);
    assert_eq!(range_work(100, &rank(5, 2), false, None), 0);
    let score = |min, min_exclusive| {
        ZRangeSpec::Score(ScoreRange {
            min,
            min_exclusive,
            max: 10.0,
            max_exclusive: false,
        })
    };
    // Found by a tree lookup: LIMIT's offset and count.
    assert_eq!(range_work(100, &score(1.0, false), false, Some((3, 4))), 7);
    assert_eq!(range_work(100, &score(1.0, false), false, Some((-1, 4))), 0);
    assert_eq!(range_work(5, &score(1.0, false), false, Some((3, 4))), 5);
    assert_eq!(
        range_work(100, &score(1.0, false), false, Some((0, -1))),
        100
    );
    assert_eq!(range_work(100, &score(1.0, false), false, None), 100);
    assert_eq!(range_work(100, &score(11.0, false), false, None), 0);
    // Members tied at an exclusive minimum, or at the maximum of a
    // reversed range, are walked past first: the whole set.
    assert_eq!(range_work(100, &score(1.0, true), false, Some((0, 1))), 100);
    assert_eq!(range_work(100, &score(1.0, false), true, Some((0, 1))), 100);
    let lex = |min, max| ZRangeSpec::Lex(LexRange { min, max });
    let text = || LexBound::Inclusive(Bytes::from("m"));
    assert_eq!(
        range_work(100, &lex(LexBound::Lowest, text()), false, Some((0, 2))),
        2
    );
    assert_eq!(
        range_work(100, &lex(text(), LexBound::Highest), true, Some((1, 2))),
        3
    );
    // A lex range from a member walks from an end to it first.
    assert_eq!(
        range_work(100, &lex(text(), LexBound::Highest), false, Some((0, 2))),
        100
    );
    assert_eq!(
        range_work(100, &lex(LexBound::Highest, LexBound::Lowest), false, None),
        0
    );
}
