//! Checking a proposed linearization (a *witness*) instead of searching for
//! one.
//!
//! A system under test often knows the order in which it applied operations:
//! a replicated log does. Verifying that order takes one pass over the
//! history, where the search of [`crate::wgl`] is exponential in the worst
//! case; and a verified witness proves linearizability no matter where it
//! came from, because the checks below are exactly the definition:
//!
//! 1. every operation appears at most once, and every operation whose
//!    outcome the client saw appears (an unknown-outcome operation left out
//!    never took effect, which is allowed);
//! 2. the order respects real time: no operation is placed after one that
//!    was invoked after it completed (equal times count as concurrent, as in
//!    [`crate::check`]);
//! 3. applying the operations one by one to the sequential model
//!    ([`crate::model::apply_with_expiry`]) gives every observed outcome.
//!    Keys expire only where the caller says they had expired (which a
//!    replicated log knows: it decided it); without that, no key expires,
//!    one of the behaviours [`crate::Op::PutTtl`] allows, so a witness that
//!    verifies is still a proof, and one for a history where a key is seen
//!    to expire fails and the search decides.
//!
//! A witness that fails proves nothing (another order may work), so
//! [`crate::check_with_witness`] then falls back to the search.

use crate::{model, Key, Operation, Outcome};
use std::collections::{BTreeMap, BTreeSet};

/// Verifies that `order`, a list of indexes into `history`, is a
/// linearization of it. The error says which rule the first bad position
/// breaks.
pub(crate) fn verify(
    history: &[Operation],
    order: &[usize],
    expired: &[BTreeSet<Key>],
) -> Result<(), String> {
    let mut placed = vec![false; history.len()];
    let mut store = BTreeMap::new();
    let none = BTreeSet::new();
    // The latest invocation among the operations placed so far, and which.
    let mut latest_invoke: Option<(u64, usize)> = None;
    for (position, &index) in order.iter().enumerate() {
        let Some(operation) = history.get(index) else {
            return Err(format!(
                "position {position} names operation #{index}, outside the history"
            ));
        };
        if std::mem::replace(&mut placed[index], true) {
            return Err(format!("operation #{index} is placed twice"));
        }
        if operation.outcome != Outcome::Unknown {
            if let Some((invoke, earlier)) = latest_invoke {
                if operation.complete < invoke {
                    return Err(format!(
                        "operation #{index} completed at {} but is placed after #{earlier}, \
                         invoked at {invoke}",
                        operation.complete
                    ));
                }
            }
        }
        if latest_invoke.is_none_or(|(invoke, _)| operation.invoke > invoke) {
            latest_invoke = Some((operation.invoke, index));
        }
        let outcome = model::apply_with_expiry(
            &mut store,
            &operation.op,
            expired.get(position).unwrap_or(&none),
        );
        if operation.outcome != Outcome::Unknown && outcome != operation.outcome {
            return Err(format!(
                "operation #{index} observed {:?} but the model gives {outcome:?} at position \
                 {position}",
                operation.outcome
            ));
        }
    }
    if let Some(index) = history
        .iter()
        .zip(&placed)
        .position(|(operation, placed)| !placed && operation.outcome != Outcome::Unknown)
    {
        return Err(format!(
            "operation #{index} has an observed outcome but is not in the witness"
        ));
    }
    Ok(())
}
