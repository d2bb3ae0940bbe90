//! Refuses histories that cannot have been recorded correctly.
//!
//! Such a history says nothing about the store under test (the harness that
//! recorded it is broken), so the checker answers "undetermined" instead of
//! blaming the store.

use crate::explain::Describe;
use crate::{Op, Operation, Outcome};
use std::collections::HashMap;

/// The most operations a history may hold: operation indices are stored in
/// 31 bits inside the search.
pub(crate) const OPERATIONS_MAX: usize = (1 << 31) - 1;

/// Returns why `history` is malformed, if it is.
pub(crate) fn validate(history: &[Operation]) -> Result<(), String> {
    if history.len() > OPERATIONS_MAX {
        return Err(format!(
            "{} operations, more than the {OPERATIONS_MAX} supported",
            history.len()
        ));
    }
    for (index, operation) in history.iter().enumerate() {
        if operation.outcome != Outcome::Unknown && operation.complete < operation.invoke {
            return Err(format!(
                "operation #{index} completes (t={}) before it is invoked (t={}): {}",
                operation.complete,
                operation.invoke,
                Describe(operation)
            ));
        }
        if !shape_fits(&operation.op, &operation.outcome) {
            return Err(format!(
                "operation #{index} has an outcome no store could return for it: {}",
                Describe(operation)
            ));
        }
    }
    lists_kept_apart(history)?;
    watched_values_never_repeat(history)
}

/// A list ([`Op::Push`], [`Op::Pop`]) is kept as one value in a layout of
/// the checker's own (see `model`), which only these two operations may
/// see: refuses a history in which any other operation, or a `WATCH`,
/// touches a key that a `Push` or `Pop` touches.
fn lists_kept_apart(history: &[Operation]) -> Result<(), String> {
    let steps = || history.iter().flat_map(|operation| operation.op.steps());
    let lists: Vec<&[u8]> = steps()
        .filter_map(|op| match op {
            Op::Push { key, .. } | Op::Pop { key } => Some(key.as_slice()),
            _ => None,
        })
        .collect();
    if lists.is_empty() {
        return Ok(());
    }
    for (index, operation) in history.iter().enumerate() {
        let watched = operation.op.watched().iter().map(|(key, _)| key);
        let others = operation
            .op
            .steps()
            .iter()
            .filter(|op| !matches!(op, Op::Push { .. } | Op::Pop { .. }))
            .filter_map(Op::key);
        if let Some(key) = watched
            .chain(others)
            .find(|key| lists.contains(&key.as_slice()))
        {
            return Err(format!(
                "operation #{index} touches {:?}, a list's key, with something other than a \
                 push or a pop: {}",
                String::from_utf8_lossy(key),
                Describe(operation)
            ));
        }
    }
    Ok(())
}

/// A watched transaction is checked by value (see "Watched transactions" in
/// the crate docs), which stands for "not written since the `WATCH`" only if
/// a key it touches never gets a value back. Refuses a history in which such
/// a key is set with a time to live, deleted or incremented, or in which the
/// values put or appended to it are not prefix-free (no one a prefix of
/// another, nor equal). Why that suffices: without deletion or expiry a key
/// is absent only before its first write; after that its value is the last
/// value put (or, before any put, the first value appended) followed by what
/// was appended since, so it only grows until the next put, and two values
/// from different puts differ within their first, prefix-free part.
fn watched_values_never_repeat(history: &[Operation]) -> Result<(), String> {
    let mut written: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for operation in history {
        if let Op::WatchedTxn { watched, ops } = &operation.op {
            let keys = watched.iter().map(|(key, _)| key);
            for key in keys.chain(ops.iter().filter_map(Op::key)) {
                written.entry(key.as_slice()).or_default();
            }
        }
    }
    if written.is_empty() {
        return Ok(());
    }
    for (index, operation) in history.iter().enumerate() {
        for op in operation.op.steps() {
            let Some(values) = op.key().and_then(|key| written.get_mut(key.as_slice())) else {
                continue;
            };
            match op {
                Op::Put { value, .. } | Op::PutGet { value, .. } | Op::Append { value, .. } => {
                    values.push(value)
                }
                Op::PutTtl { .. } | Op::Delete { .. } | Op::Incr { .. } => {
                    return Err(format!(
                        "operation #{index} expires, deletes or increments a key a watched \
                         transaction touches, so the transaction's check by value is not \
                         exact: {}",
                        Describe(operation)
                    ))
                }
                // Lists are kept apart from other keys (`lists_kept_apart`).
                Op::Get { .. }
                | Op::Push { .. }
                | Op::Pop { .. }
                | Op::Txn { .. }
                | Op::WatchedTxn { .. } => {}
            }
        }
    }
    for (key, values) in &mut written {
        values.sort_unstable();
        // Sorted, a value that is a prefix of another is a prefix of the
        // next one.
        if let Some(pair) = values.windows(2).find(|pair| pair[1].starts_with(pair[0])) {
            return Err(format!(
                "the values written to {:?}, a key a watched transaction touches, are not \
                 prefix-free ({:?} and {:?}), so the transaction's check by value is not exact",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(pair[0]),
                String::from_utf8_lossy(pair[1])
            ));
        }
    }
    Ok(())
}

/// Whether `outcome` is of a kind `op` can return from some state.
fn shape_fits(op: &Op, outcome: &Outcome) -> bool {
    match (op, outcome) {
        (_, Outcome::Unknown) => true,
        (Op::WatchedTxn { .. }, Outcome::Aborted) => true,
        (Op::Txn { ops } | Op::WatchedTxn { ops, .. }, Outcome::Txn(outcomes)) => {
            ops.len() == outcomes.len()
                && ops.iter().zip(outcomes).all(|(op, outcome)| match op {
                    Op::Txn { .. } | Op::WatchedTxn { .. } => *outcome == Outcome::Error,
                    single => *outcome != Outcome::Unknown && shape_fits(single, outcome),
                })
        }
        (Op::Get { .. } | Op::PutGet { .. }, Outcome::Value(_))
        | (Op::Put { .. } | Op::PutTtl { .. }, Outcome::Ok)
        | (Op::Delete { .. }, Outcome::Bool(_))
        | (Op::Append { .. }, Outcome::Int(_))
        | (Op::Incr { .. } | Op::Push { .. }, Outcome::Int(_) | Outcome::Error)
        | (Op::Pop { .. }, Outcome::Value(_) | Outcome::Error) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(op: Op, outcome: Outcome, invoke: u64, complete: u64) -> Operation {
        Operation {
            client: 1,
            op,
            outcome,
            invoke,
            complete,
        }
    }

    fn get() -> Op {
        Op::Get { key: b"k".to_vec() }
    }

    #[test]
    fn complete_before_invoke_is_malformed_unless_unknown() {
        assert!(validate(&[operation(get(), Outcome::Value(None), 5, 4)]).is_err());
        assert!(validate(&[operation(get(), Outcome::Unknown, 5, 4)]).is_ok());
        assert!(validate(&[operation(get(), Outcome::Value(None), 5, 5)]).is_ok());
    }

    #[test]
    fn outcome_shapes() {
        assert!(!shape_fits(&get(), &Outcome::Bool(true)));
        assert!(!shape_fits(&get(), &Outcome::Error));
        let incr = Op::Incr {
            key: b"k".to_vec(),
            by: 1,
        };
        assert!(shape_fits(&incr, &Outcome::Error));
        assert!(shape_fits(&incr, &Outcome::Int(3)));
        let txn = Op::Txn {
            ops: vec![get(), Op::Txn { ops: vec![] }],
        };
        assert!(shape_fits(
            &txn,
            &Outcome::Txn(vec![Outcome::Value(None), Outcome::Error])
        ));
        assert!(!shape_fits(&txn, &Outcome::Txn(vec![Outcome::Value(None)])));
        assert!(!shape_fits(
            &txn,
            &Outcome::Txn(vec![Outcome::Unknown, Outcome::Error])
        ));
        assert!(!shape_fits(&txn, &Outcome::Error));
        assert!(!shape_fits(&get(), &Outcome::Txn(vec![])));
    }
}
