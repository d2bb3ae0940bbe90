//! Refuses histories that cannot have been recorded correctly.
//!
//! Such a history says nothing about the store under test (the harness that
//! recorded it is broken), so the checker answers "undetermined" instead of
//! blaming the store.

use crate::explain::Describe;
use crate::{Op, Operation, Outcome};

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
    Ok(())
}

/// Whether `outcome` is of a kind `op` can return from some state.
fn shape_fits(op: &Op, outcome: &Outcome) -> bool {
    match (op, outcome) {
        (_, Outcome::Unknown) => true,
        (Op::Txn { ops }, Outcome::Txn(outcomes)) => {
            ops.len() == outcomes.len()
                && ops.iter().zip(outcomes).all(|(op, outcome)| match op {
                    Op::Txn { .. } => *outcome == Outcome::Error,
                    single => *outcome != Outcome::Unknown && shape_fits(single, outcome),
                })
        }
        (Op::Get { .. } | Op::PutGet { .. }, Outcome::Value(_))
        | (Op::Put { .. } | Op::PutTtl { .. }, Outcome::Ok)
        | (Op::Delete { .. }, Outcome::Bool(_))
        | (Op::Append { .. }, Outcome::Int(_))
        | (Op::Incr { .. }, Outcome::Int(_) | Outcome::Error) => true,
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
