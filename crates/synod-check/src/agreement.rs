//! Property tests keeping the compiled model ([`crate::command`]) in
//! agreement with the readable reference ([`crate::model`]).
//!
//! For a random store over two keys (each absent, present or expiring), a
//! random operation, and every choice of which keys expire before it, the
//! reference gives an outcome and a successor. The compiled form must then:
//!
//! 1. accept exactly the outcomes some choice gives (no false alarm, no
//!    blind spot);
//! 2. given such an outcome, reach a successor the reference reaches with
//!    that outcome, and one that *dominates* every such successor (allows at
//!    least its behaviours: see the `command` module docs);
//! 3. with an unknown outcome, reach over its branches only successors the
//!    reference reaches, and dominate each of those with some branch.
//!
//! And [`model::apply`] is [`model::apply_with_expiry`] with nothing expired.

use crate::command::{Command, Run, Slot, State};
use crate::model::{self, Entry};
use crate::{Key, Op, Outcome, Value};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

const KEYS: [&[u8]; 2] = [b"a", b"b"];

fn key() -> impl Strategy<Value = Key> {
    prop::sample::select(KEYS.to_vec()).prop_map(<[u8]>::to_vec)
}

fn value() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![&b""[..], b"0", b"5", b"-1", b"ab", b"x"]).prop_map(<[u8]>::to_vec)
}

fn single() -> impl Strategy<Value = Op> {
    prop_oneof![
        key().prop_map(|key| Op::Get { key }),
        (key(), value()).prop_map(|(key, value)| Op::Put { key, value }),
        (key(), value()).prop_map(|(key, value)| Op::PutTtl { key, value }),
        (key(), value()).prop_map(|(key, value)| Op::PutGet { key, value }),
        key().prop_map(|key| Op::Delete { key }),
        (key(), value()).prop_map(|(key, value)| Op::Append { key, value }),
        (key(), prop::sample::select(vec![-1i64, 0, 1, 5, i64::MAX]))
            .prop_map(|(key, by)| Op::Incr { key, by }),
        (key(), value()).prop_map(|(key, value)| Op::Push { key, value }),
        key().prop_map(|key| Op::Pop { key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => single(),
        1 => prop::collection::vec(
            prop_oneof![8 => single(), 1 => Just(Op::Txn { ops: vec![] })],
            0..4
        )
        .prop_map(|ops| Op::Txn { ops }),
    ]
}

/// A watched transaction over keys that never expire (`validate` refuses
/// histories where they do), on a store where none is expiring.
fn watched_case() -> impl Strategy<Value = (BTreeMap<Key, Entry>, Op)> {
    let present = prop_oneof![Just(None), value().prop_map(|v| Some(Entry::Present(v)))];
    let step = single().prop_filter("no time to live", |op| !matches!(op, Op::PutTtl { .. }));
    (
        (present.clone(), present),
        prop::collection::vec((key(), prop::option::of(value())), 0..3),
        prop::collection::vec(step, 0..4),
    )
        .prop_map(|((a, b), watched, ops)| {
            let store = KEYS
                .iter()
                .zip([a, b])
                .filter_map(|(key, entry)| Some((key.to_vec(), entry?)))
                .collect();
            (store, Op::WatchedTxn { watched, ops })
        })
}

fn entry() -> impl Strategy<Value = Option<Entry>> {
    prop_oneof![
        Just(None),
        value().prop_map(|v| Some(Entry::Present(v))),
        value().prop_map(|v| Some(Entry::Expiring(v))),
    ]
}

fn store() -> impl Strategy<Value = BTreeMap<Key, Entry>> {
    (entry(), entry()).prop_map(|(a, b)| {
        KEYS.iter()
            .zip([a, b])
            .filter_map(|(key, entry)| Some((key.to_vec(), entry?)))
            .collect()
    })
}

fn to_state(store: &BTreeMap<Key, Entry>) -> State {
    KEYS.iter()
        .map(|key| match store.get(*key) {
            None => Slot::Absent,
            Some(Entry::Present(v)) => Slot::Present(Rc::from(v.as_slice())),
            Some(Entry::Expiring(v)) => Slot::Expiring(Rc::from(v.as_slice())),
        })
        .collect()
}

fn to_store(state: &[Slot]) -> BTreeMap<Key, Entry> {
    KEYS.iter()
        .zip(state)
        .filter_map(|(key, slot)| {
            let entry = match slot {
                Slot::Absent => return None,
                Slot::Present(v) => Entry::Present(v.to_vec()),
                Slot::Expiring(v) => Entry::Expiring(v.to_vec()),
            };
            Some((key.to_vec(), entry))
        })
        .collect()
}

/// Whether `big` allows every behaviour of `small`, key by key: equal, or
/// expiring where `small` holds the same value for good or nothing.
fn dominates(big: &BTreeMap<Key, Entry>, small: &BTreeMap<Key, Entry>) -> bool {
    KEYS.iter()
        .all(|key| match (big.get(*key), small.get(*key)) {
            (b, s) if b == s => true,
            (Some(Entry::Expiring(b)), Some(Entry::Present(s))) => b == s,
            (Some(Entry::Expiring(_)), None) => true,
            _ => false,
        })
}

/// Every (outcome, successor) the reference allows: one per choice of
/// expired keys.
fn reference(store: &BTreeMap<Key, Entry>, op: &Op) -> Vec<(Outcome, BTreeMap<Key, Entry>)> {
    let choices = [vec![], vec![KEYS[0]], vec![KEYS[1]], KEYS.to_vec()];
    choices
        .iter()
        .map(|expired| {
            let expired: BTreeSet<Key> = expired.iter().map(|key| key.to_vec()).collect();
            let mut next = store.clone();
            let outcome = model::apply_with_expiry(&mut next, op, &expired);
            (outcome, next)
        })
        .collect()
}

fn compiled(state: &State, op: &Op, observed: &Outcome, branch: u32) -> Option<Option<State>> {
    let index = |key: &[u8]| KEYS.iter().position(|k| *k == key);
    let command = Command::compile(op, &index)?;
    match command.run(state, observed, branch) {
        Run::Mismatch => Some(None),
        Run::Same => Some(Some(state.clone())),
        Run::Changed(next) => Some(Some(next)),
        Run::NoSuchBranch => None,
    }
}

/// Outcomes of the right shape that no reference choice may give, to probe
/// for blind spots.
fn wrong_outcomes(allowed: &[Outcome]) -> Vec<Outcome> {
    let candidates = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Bool(true),
        Outcome::Bool(false),
        Outcome::Int(0),
        Outcome::Int(1),
        Outcome::Int(2),
        Outcome::Int(6),
        Outcome::Value(None),
        Outcome::Value(Some(b"ab".to_vec())),
        Outcome::Value(Some(b"x".to_vec())),
        Outcome::Aborted,
    ];
    candidates
        .into_iter()
        .filter(|outcome| !allowed.contains(outcome))
        .collect()
}

/// The compiled form accepts exactly the outcomes the reference gives for
/// `op` on `store`, reaching a dominating reference successor with each.
fn observed_outcomes_agree_on(store: &BTreeMap<Key, Entry>, op: &Op) -> Result<(), TestCaseError> {
    let state = to_state(store);
    let successors = reference(store, op);
    let outcomes: Vec<Outcome> = successors.iter().map(|(o, _)| o.clone()).collect();
    for (outcome, _) in &successors {
        let Some(Some(next)) = compiled(&state, op, outcome, 0) else {
            panic!("{op:?} on {store:?}: compiled refuses {outcome:?}");
        };
        let next = to_store(&next);
        let same_outcome: Vec<_> = successors.iter().filter(|(o, _)| o == outcome).collect();
        prop_assert!(
            same_outcome.iter().any(|(_, s)| *s == next),
            "{op:?} on {store:?} -> {outcome:?}: compiled {next:?} not a reference successor"
        );
        for (_, s) in &same_outcome {
            prop_assert!(
                dominates(&next, s),
                "{op:?} on {store:?}: {next:?} vs {s:?}"
            );
        }
        prop_assert!(compiled(&state, op, outcome, 1).is_none());
    }
    let mut probes = wrong_outcomes(&outcomes);
    // In a transaction, one step's outcome at a time.
    for outcome in &outcomes {
        if let Outcome::Txn(steps) = outcome {
            for i in 0..steps.len() {
                for wrong in wrong_outcomes(&[]) {
                    let mut steps = steps.clone();
                    steps[i] = wrong;
                    let probe = Outcome::Txn(steps);
                    if !outcomes.contains(&probe) {
                        probes.push(probe);
                    }
                }
            }
        }
    }
    for wrong in probes {
        prop_assert!(
            matches!(compiled(&state, op, &wrong, 0), Some(None)),
            "{op:?} on {store:?}: compiled accepts {wrong:?}, reference gives {outcomes:?}"
        );
    }
    Ok(())
}

/// With an unknown outcome, the compiled branches reach only reference
/// successors and dominate each of them.
fn unknown_outcomes_agree_on(store: &BTreeMap<Key, Entry>, op: &Op) -> Result<(), TestCaseError> {
    let state = to_state(store);
    let successors: Vec<_> = reference(store, op).into_iter().map(|(_, s)| s).collect();
    let branches: Vec<_> = (0..)
        .map_while(|branch| compiled(&state, op, &Outcome::Unknown, branch))
        .map(|next| next.map(|next| to_store(&next)))
        .collect();
    for next in &branches {
        let Some(next) = next else {
            panic!("{op:?} on {store:?}: an unknown outcome mismatched");
        };
        prop_assert!(successors.contains(next), "{op:?} on {store:?}: {next:?}");
    }
    for s in &successors {
        prop_assert!(
            branches.iter().flatten().any(|next| dominates(next, s)),
            "{op:?} on {store:?}: nothing dominates {s:?} among {branches:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn observed_outcomes_agree(store in store(), op in op()) {
        observed_outcomes_agree_on(&store, &op)?;
    }

    #[test]
    fn unknown_outcomes_agree(store in store(), op in op()) {
        unknown_outcomes_agree_on(&store, &op)?;
    }

    #[test]
    fn watched_transactions_agree((store, op) in watched_case()) {
        observed_outcomes_agree_on(&store, &op)?;
        unknown_outcomes_agree_on(&store, &op)?;
        // An aborted transaction must not be taken for one that ran.
        let Op::WatchedTxn { ops, .. } = &op else {
            unreachable!("watched_case makes watched transactions");
        };
        let allowed: Vec<Outcome> = reference(&store, &op).into_iter().map(|(o, _)| o).collect();
        let unguarded = Op::Txn { ops: ops.clone() };
        for (ran, _) in reference(&store, &unguarded) {
            if !allowed.contains(&ran) {
                prop_assert!(
                    matches!(compiled(&to_state(&store), &op, &ran, 0), Some(None)),
                    "{op:?} on {store:?}: compiled accepts {ran:?}, reference gives {allowed:?}"
                );
            }
        }
    }

    #[test]
    fn apply_is_apply_with_expiry_when_nothing_expires(store in store(), op in op()) {
        let mut values: BTreeMap<Key, Value> =
            store.iter().map(|(k, e)| (k.clone(), e.value().clone())).collect();
        let mut entries = store.clone();
        let outcome = model::apply(&mut values, &op);
        prop_assert_eq!(&model::apply_with_expiry(&mut entries, &op, &BTreeSet::new()), &outcome);
        let projected: BTreeMap<Key, Value> =
            entries.iter().map(|(k, e)| (k.clone(), e.value().clone())).collect();
        prop_assert_eq!(projected, values);
    }
}
