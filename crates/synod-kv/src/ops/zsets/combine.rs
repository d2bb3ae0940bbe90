//! `ZUNION`, `ZINTER`, `ZDIFF` (and their `STORE` forms) and `ZINTERCARD`,
//! as Redis' `zunionInterDiffGenericCommand` computes them: a weighted score
//! that is NaN (`inf * 0`) counts as 0, and so does a NaN sum (`inf +
//! -inf`); `ZINTER` walks its smallest input.
//!
//! A `STORE` runs on every replica's apply path, and a read may be batched
//! into a transaction, so the work of one command is bounded up front:
//! [`COMBINE_WORK_MAX`] element visits over all inputs (naming one huge set
//! many times multiplies the work without costing the client anything).

use std::collections::BTreeMap;

use bytes::Bytes;
use synod_resp::Reply;

use super::{scored, store, wrong_type};
use crate::command_zset::{Aggregate, SetOperation};
use crate::keyspace::{Keyspace, Lookup, ValueRef};
use crate::zset::ZSetMembers;

/// Most elements one set operation may visit over all its inputs.
pub(crate) const COMBINE_WORK_MAX: usize = 1 << 24;

/// One input of a set operation. (A plain set joins here as members of
/// score 1, as in Redis, once Synod stores sets.)
#[derive(Clone, Copy)]
enum Input<'a> {
    Sorted(&'a ZSetMembers),
}

impl<'a> Input<'a> {
    fn len(self) -> usize {
        match self {
            Input::Sorted(set) => set.len(),
        }
    }

    fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            Input::Sorted(set) => set.score(member),
        }
    }

    fn iter(self) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
        match self {
            Input::Sorted(set) => set.iter(),
        }
    }
}

/// The inputs, `None` for a missing key; WRONGTYPE for a key of another
/// type (checked for every key before any work, as Redis does).
fn inputs<'a>(
    keyspace: &'a impl Lookup,
    keys: &[Bytes],
    now: u64,
) -> Result<Vec<Option<Input<'a>>>, Reply> {
    keys.iter()
        .map(
            |key| match keyspace.live(key, now).map(|entry| entry.value()) {
                None => Ok(None),
                Some(ValueRef::ZSet(set)) => Ok(Some(Input::Sorted(set))),
                Some(_) => Err(wrong_type()),
            },
        )
        .collect()
}

/// Refuses a set operation whose inputs add up past [`COMBINE_WORK_MAX`].
fn check_work(name: &str, inputs: &[Option<Input<'_>>]) -> Result<(), Reply> {
    let lens = inputs.iter().map(|input| input.map_or(0, Input::len));
    let total = lens.clone().fold(0usize, usize::saturating_add);
    // ZINTER also looks each member of its smallest input up in the others.
    let lookups = lens.min().unwrap_or(0).saturating_mul(inputs.len());
    if total.max(lookups) > COMBINE_WORK_MAX {
        return Err(Reply::error(format!(
            "ERR {name} over inputs of more than {COMBINE_WORK_MAX} elements in all is refused by synod; combine fewer or smaller sets"
        )));
    }
    Ok(())
}

fn weighted(score: f64, weight: f64) -> f64 {
    let value = score * weight;
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

fn aggregated(current: f64, value: f64, aggregate: Aggregate) -> f64 {
    match aggregate {
        Aggregate::Sum => {
            let sum = current + value;
            if sum.is_nan() {
                0.0
            } else {
                sum
            }
        }
        Aggregate::Min => current.min(value),
        Aggregate::Max => current.max(value),
    }
}

/// The result of the operation as a new set.
fn compute(
    operation: SetOperation,
    inputs: &[Option<Input<'_>>],
    weights: &[f64],
    aggregate: Aggregate,
) -> ZSetMembers {
    let weight = |index: usize| weights.get(index).copied().unwrap_or(1.0);
    let mut result: BTreeMap<Bytes, f64> = BTreeMap::new();
    match operation {
        SetOperation::Union => {
            for (index, input) in inputs.iter().enumerate() {
                let Some(input) = input else { continue };
                for (member, score) in input.iter() {
                    let value = weighted(score, weight(index));
                    result
                        .entry(member.clone())
                        .and_modify(|current| *current = aggregated(*current, value, aggregate))
                        .or_insert(value);
                }
            }
        }
        SetOperation::Inter => {
            if inputs.iter().all(Option::is_some) {
                let mut order: Vec<(usize, Input<'_>)> = inputs
                    .iter()
                    .enumerate()
                    .filter_map(|(index, input)| input.map(|input| (index, input)))
                    .collect();
                // Smallest first (stable, so ties keep the command's order).
                order.sort_by_key(|(_, input)| input.len());
                if let Some(((first_index, first), others)) = order.split_first() {
                    'members: for (member, score) in first.iter() {
                        let mut value = weighted(score, weight(*first_index));
                        for (index, other) in others {
                            let Some(score) = other.score(member) else {
                                continue 'members;
                            };
                            value = aggregated(value, weighted(score, weight(*index)), aggregate);
                        }
                        result.insert(member.clone(), value);
                    }
                }
            }
        }
        SetOperation::Diff => {
            if let Some(Some(first)) = inputs.first() {
                for (member, score) in first.iter() {
                    let elsewhere = inputs[1..]
                        .iter()
                        .flatten()
                        .any(|other| other.score(member).is_some());
                    if !elsewhere {
                        result.insert(member.clone(), score);
                    }
                }
            }
        }
    }
    let mut members = ZSetMembers::default();
    for (member, score) in result {
        // `-0` is stored as `0`, as every other write stores it.
        members.insert(member, score + 0.0);
    }
    members
}

fn operation_name(operation: SetOperation, store: bool) -> &'static str {
    match (operation, store) {
        (SetOperation::Union, false) => "ZUNION",
        (SetOperation::Union, true) => "ZUNIONSTORE",
        (SetOperation::Inter, false) => "ZINTER",
        (SetOperation::Inter, true) => "ZINTERSTORE",
        (SetOperation::Diff, false) => "ZDIFF",
        (SetOperation::Diff, true) => "ZDIFFSTORE",
    }
}

pub(super) fn combine_read(
    keyspace: &impl Lookup,
    operation: SetOperation,
    keys: &[Bytes],
    weights: &[f64],
    aggregate: Aggregate,
    with_scores: bool,
    now: u64,
) -> Reply {
    let inputs = match inputs(keyspace, keys, now) {
        Ok(inputs) => inputs,
        Err(error) => return error,
    };
    if let Err(error) = check_work(operation_name(operation, false), &inputs) {
        return error;
    }
    let result = compute(operation, &inputs, weights, aggregate);
    if with_scores {
        Reply::Pairs(
            result
                .iter()
                .map(|(member, score)| scored(member, score))
                .collect(),
        )
    } else {
        Reply::Array(
            result
                .iter()
                .map(|(member, _)| Reply::Bulk(member.clone()))
                .collect(),
        )
    }
}

pub(super) fn combine_store(
    keyspace: &mut Keyspace,
    operation: SetOperation,
    destination: &Bytes,
    keys: &[Bytes],
    weights: &[f64],
    aggregate: Aggregate,
    now: u64,
) -> Reply {
    let result = {
        let inputs = match inputs(keyspace, keys, now) {
            Ok(inputs) => inputs,
            Err(error) => return error,
        };
        if let Err(error) = check_work(operation_name(operation, true), &inputs) {
            return error;
        }
        compute(operation, &inputs, weights, aggregate)
    };
    store(keyspace, destination, result, now)
}

/// `ZINTERCARD`: the size of the intersection, counting stopped at `limit`
/// (0: no limit).
pub(super) fn zintercard(keyspace: &impl Lookup, keys: &[Bytes], limit: u64, now: u64) -> Reply {
    let inputs = match inputs(keyspace, keys, now) {
        Ok(inputs) => inputs,
        Err(error) => return error,
    };
    if let Err(error) = check_work("ZINTERCARD", &inputs) {
        return error;
    }
    let Some(mut order) = inputs.into_iter().collect::<Option<Vec<Input<'_>>>>() else {
        return Reply::Integer(0);
    };
    order.sort_by_key(|input| input.len());
    let Some((first, others)) = order.split_first() else {
        return Reply::Integer(0);
    };
    let mut count = 0u64;
    for (member, _) in first.iter() {
        if others.iter().all(|other| other.score(member).is_some()) {
            count += 1;
            if count == limit {
                break;
            }
        }
    }
    Reply::Integer(count as i64)
}
