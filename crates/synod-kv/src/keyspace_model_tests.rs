//! The keyspace against a model (a sorted map of owned keys and values):
//! random writes with string lengths around the inline/boxed boundary,
//! collections and expiries; after each, lookups, iteration order, the
//! accounted size and the indexes must agree with the model, a view taken
//! earlier must still show its own point, and a snapshot must restore to
//! the same contents and re-encode to the same bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::entry::INLINE_VALUE_BYTES_MAX;
use crate::snapshot;
use crate::value::entry_bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
enum ModelValue {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

type Model = BTreeMap<Vec<u8>, (ModelValue, Option<u64>)>;

/// (key, value, expiry), in iteration order.
type Contents = Vec<(Vec<u8>, ModelValue, Option<u64>)>;

#[derive(Clone, Debug)]
enum Op {
    SetString {
        key: u8,
        len: usize,
        expiry: Option<u64>,
    },
    SetField {
        key: u8,
        field: u8,
    },
    DelField {
        key: u8,
        field: u8,
    },
    Expire {
        key: u8,
        at: Option<u64>,
    },
    Remove {
        key: u8,
    },
    Purge {
        now: u64,
    },
    View,
}

fn key_name(key: u8) -> Vec<u8> {
    // Long and short names, so inline headers of both sizes are exercised.
    if key.is_multiple_of(4) {
        vec![b'k'; 130 + usize::from(key)]
    } else {
        format!("key:{key}").into_bytes()
    }
}

fn string_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0..4usize,
        (INLINE_VALUE_BYTES_MAX - 2)..(INLINE_VALUE_BYTES_MAX + 3),
        Just(3 * INLINE_VALUE_BYTES_MAX),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    prop_oneof![
        4 => (key.clone(), string_len(), proptest::option::of(1u64..50))
            .prop_map(|(key, len, expiry)| Op::SetString { key, len, expiry }),
        2 => (key.clone(), 0u8..4).prop_map(|(key, field)| Op::SetField { key, field }),
        1 => (key.clone(), 0u8..4).prop_map(|(key, field)| Op::DelField { key, field }),
        2 => (key.clone(), proptest::option::of(1u64..50))
            .prop_map(|(key, at)| Op::Expire { key, at }),
        1 => key.prop_map(|key| Op::Remove { key }),
        1 => (0u64..50).prop_map(|now| Op::Purge { now }),
        1 => Just(Op::View),
    ]
}

fn model_bytes(key: &[u8], value: &ModelValue) -> u64 {
    let value_bytes = match value {
        ModelValue::Str(bytes) => bytes.len() as u64,
        ModelValue::Hash(fields) => fields
            .iter()
            .map(|(field, value)| crate::value::field_bytes(field, value))
            .sum(),
    };
    entry_bytes(key.len(), value_bytes)
}

fn stored_value(entry: &Entry) -> ModelValue {
    match entry.value() {
        ValueRef::Str(bytes) => ModelValue::Str(bytes.to_vec()),
        ValueRef::Hash(fields) => ModelValue::Hash(
            fields
                .iter()
                .map(|(field, value)| (field.to_vec(), value.to_vec()))
                .collect(),
        ),
        ValueRef::List(_) | ValueRef::Set(_) | ValueRef::ZSet(_) => {
            unreachable!("no lists, sets or sorted sets in this test")
        }
    }
}

/// The (key, value, expiry) triples in iteration order.
fn contents(lookup: &impl Lookup) -> Contents {
    lookup
        .iter_from(0)
        .map(|(hash, key, entry)| {
            assert_eq!(hash, order_hash(key));
            (key.to_vec(), stored_value(entry), entry.expire_at_ms())
        })
        .collect()
}

/// The model in the keyspace's order: by (xxh3, key).
fn ordered(model: &Model) -> Contents {
    let mut all: Vec<_> = model
        .iter()
        .map(|(key, (value, expiry))| (key.clone(), value.clone(), *expiry))
        .collect();
    all.sort_by(|a, b| (order_hash(&a.0), &a.0).cmp(&(order_hash(&b.0), &b.0)));
    all
}

fn apply(keyspace: &mut Keyspace, model: &mut Model, op: &Op) {
    match op {
        Op::SetString { key, len, expiry } => {
            let name = key_name(*key);
            let value = vec![*key; *len];
            keyspace.insert(&name, Value::Str(Bytes::from(value.clone())), *expiry);
            model.insert(name, (ModelValue::Str(value), *expiry));
        }
        Op::SetField { key, field } => {
            let name = key_name(*key);
            let is_hash = !matches!(model.get(&name), Some((ModelValue::Str(_), _)));
            let outcome =
                keyspace.modify_or_insert(&name, 0, Value::empty_hash, |value| match value {
                    Value::Hash(fields) => {
                        Arc::make_mut(fields).insert(Bytes::from(vec![*field]), Bytes::from("v"));
                        true
                    }
                    _ => false,
                });
            assert_eq!(outcome, is_hash);
            if is_hash {
                let (value, _) = model
                    .entry(name)
                    .or_insert((ModelValue::Hash(BTreeMap::new()), None));
                if let ModelValue::Hash(fields) = value {
                    fields.insert(vec![*field], b"v".to_vec());
                }
            }
        }
        Op::DelField { key, field } => {
            let name = key_name(*key);
            keyspace.modify(&name, 0, |value| {
                if let Value::Hash(fields) = value {
                    Arc::make_mut(fields).remove(&[*field]);
                }
            });
            if let Some((ModelValue::Hash(fields), _)) = model.get_mut(&name) {
                fields.remove(&vec![*field]);
                if fields.is_empty() {
                    model.remove(&name);
                }
            }
        }
        Op::Expire { key, at } => {
            let name = key_name(*key);
            if let Some((_, expiry)) = model.get_mut(&name) {
                keyspace.set_expiry(&name, *at);
                *expiry = *at;
            }
        }
        Op::Remove { key } => {
            let name = key_name(*key);
            assert_eq!(
                keyspace.remove(&name).is_some(),
                model.remove(&name).is_some()
            );
        }
        Op::Purge { now } => {
            keyspace.purge_expired(*now, usize::MAX);
            model.retain(|_, (_, expiry)| expiry.is_none_or(|at| at > *now));
        }
        Op::View => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn keyspace_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut keyspace = Keyspace::default();
        let mut model = Model::new();
        let mut views: Vec<(KeyspaceView, Contents)> = Vec::new();
        for op in &ops {
            apply(&mut keyspace, &mut model, op);
            if let Op::View = op {
                views.push((keyspace.view(), ordered(&model)));
            }
            keyspace.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert_eq!(contents(&keyspace), ordered(&model));
            let used: u64 = model.iter().map(|(key, (value, _))| model_bytes(key, value)).sum();
            prop_assert_eq!(keyspace.used_bytes(), used);
            for (key, (value, expiry)) in &model {
                let entry = keyspace.stored(key).expect("a key of the model is stored");
                prop_assert_eq!(&stored_value(entry), value);
                prop_assert_eq!(entry.expire_at_ms(), *expiry);
                if let ModelValue::Str(bytes) = value {
                    prop_assert_eq!(entry.is_inline(), bytes.len() <= INLINE_VALUE_BYTES_MAX);
                }
            }
        }
        // Views keep showing the point they were taken at.
        for (view, then) in &views {
            prop_assert_eq!(&contents(view), then);
        }
        // A snapshot restores to the same contents and encodes identically.
        let written = snapshot::write(&keyspace.view());
        let restored = snapshot::read(&written).map_err(|e| TestCaseError::fail(e.to_string()))?;
        restored.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert_eq!(contents(&restored), ordered(&model));
        prop_assert_eq!(restored.used_bytes(), keyspace.used_bytes());
        prop_assert_eq!(snapshot::write(&restored.view()), written);
    }
}

#[test]
fn a_snapshot_with_a_duplicate_key_is_refused() {
    let entries = vec![
        Entry::new(b"a", Value::Str(Bytes::from("1")), None),
        Entry::new(b"a", Value::Str(Bytes::from("2")), Some(5)),
    ];
    assert!(Keyspace::from_entries(entries, 0).is_none());
}
