//! `ZUNION`, `ZINTER`, `ZDIFF` (and their `STORE` forms) and `ZINTERCARD`,
//! as Redis' `zunionInterDiffGenericCommand` computes them: a plain set is
//! an input whose members all score 1, a key of any other type is
//! WRONGTYPE; a weighted score that is NaN (`inf * 0`) counts as 0, and so
//! does a NaN sum (`inf + -inf`); `ZINTER` walks its smallest input.
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
use crate::value::SetMembers;
use crate::zset::ZSetMembers;

/// Most elements one set operation may visit over all its inputs.
pub(crate) const COMBINE_WORK_MAX: usize = 1 << 24;

/// The score every member of a plain set has as an input (Redis' `zuiNext`
/// gives set members 1.0).
const PLAIN_SET_SCORE: f64 = 1.0;

/// One input of a set operation: a sorted set, or a plain set whose members
/// all score [`PLAIN_SET_SCORE`].
#[derive(Clone, Copy)]
enum Input<'a> {
    Sorted(&'a ZSetMembers),
    Plain(&'a SetMembers),
}

impl<'a> Input<'a> {
    fn len(self) -> usize {
        match self {
            Input::Sorted(set) => set.len(),
            Input::Plain(set) => set.len(),
        }
    }

    fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            Input::Sorted(set) => set.score(member),
            Input::Plain(set) => set.contains(member).then_some(PLAIN_SET_SCORE),
        }
    }

    /// Every member with its score: a sorted set in score order, a plain
    /// set in byte order. (One of the two halves is empty; chaining them
    /// gives one iterator type without boxing.)
    fn iter(self) -> impl Iterator<Item = (&'a Bytes, f64)> + 'a {
        let (sorted, plain) = match self {
            Input::Sorted(set) => (Some(set), None),
            Input::Plain(set) => (None, Some(set)),
        };
        sorted.into_iter().flat_map(ZSetMembers::iter).chain(
            plain
                .into_iter()
                .flat_map(SetMembers::iter)
                .map(|member| (member, PLAIN_SET_SCORE)),
        )
    }
}

/// The number of members `key` brings to a set operation: a sorted set's or
/// a plain set's size, 0 for a missing key or one of another type (which
/// the operation refuses before doing any work).
pub(super) fn input_len(keyspace: &impl Lookup, key: &[u8], now: u64) -> usize {
    match keyspace.live(key, now).map(|entry| entry.value()) {
        Some(ValueRef::ZSet(set)) => set.len(),
        Some(ValueRef::Set(set)) => set.len(),
        _ => 0,
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
                Some(ValueRef::Set(set)) => Ok(Some(Input::Plain(set))),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyspace::Value;

    fn sorted(pairs: &[(&str, f64)]) -> ZSetMembers {
        let mut set = ZSetMembers::default();
        for (member, score) in pairs {
            set.insert(Bytes::copy_from_slice(member.as_bytes()), *score);
        }
        set
    }

    fn plain(members: &[&str]) -> SetMembers {
        let mut set = SetMembers::default();
        for member in members {
            set.insert(Bytes::copy_from_slice(member.as_bytes()));
        }
        set
    }

    fn pairs(result: &ZSetMembers) -> Vec<(String, f64)> {
        result
            .iter()
            .map(|(member, score)| (String::from_utf8(member.to_vec()).unwrap(), score))
            .collect()
    }

    fn expected(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs
            .iter()
            .map(|(member, score)| (member.to_string(), *score))
            .collect()
    }

    #[test]
    fn a_plain_input_scores_every_member_one() {
        let set = plain(&["b", "a", "c"]);
        let input = Input::Plain(&set);
        assert_eq!(input.len(), 3);
        assert_eq!(input.score(b"a"), Some(1.0));
        assert_eq!(input.score(b"d"), None);
        let members: Vec<(&[u8], f64)> = input
            .iter()
            .map(|(member, score)| (member.as_ref(), score))
            .collect();
        assert_eq!(members, [(&b"a"[..], 1.0), (b"b", 1.0), (b"c", 1.0)]);
        // A sorted input is unchanged: its own scores, in score order.
        let zset = sorted(&[("a", 5.0), ("b", -1.0)]);
        let scores: Vec<f64> = Input::Sorted(&zset)
            .iter()
            .map(|(_, score)| score)
            .collect();
        assert_eq!(scores, [-1.0, 5.0]);
        assert_eq!(Input::Sorted(&zset).score(b"a"), Some(5.0));
    }

    #[test]
    fn operations_mix_plain_and_sorted_inputs() {
        let zset = sorted(&[("x", 1.0), ("y", 2.0), ("z", 3.0)]);
        let set = plain(&["w", "y", "z"]);
        let inputs = [Some(Input::Sorted(&zset)), Some(Input::Plain(&set))];
        let union = compute(SetOperation::Union, &inputs, &[], Aggregate::Sum);
        assert_eq!(
            pairs(&union),
            expected(&[("w", 1.0), ("x", 1.0), ("y", 3.0), ("z", 4.0)])
        );
        let inter = compute(SetOperation::Inter, &inputs, &[2.0, 0.5], Aggregate::Min);
        assert_eq!(pairs(&inter), expected(&[("y", 0.5), ("z", 0.5)]));
        let diff = compute(SetOperation::Diff, &inputs, &[], Aggregate::Sum);
        assert_eq!(pairs(&diff), expected(&[("x", 1.0)]));
        // A plain set first: its members keep score 1 (weights do not apply
        // to ZDIFF, whose parser refuses them).
        let reversed = [Some(Input::Plain(&set)), Some(Input::Sorted(&zset))];
        let diff = compute(SetOperation::Diff, &reversed, &[], Aggregate::Sum);
        assert_eq!(pairs(&diff), expected(&[("w", 1.0)]));
        // Weights scale a plain set's 1 like any score.
        let inter = compute(
            SetOperation::Inter,
            &reversed,
            &[f64::INFINITY, 0.0],
            Aggregate::Sum,
        );
        assert_eq!(
            pairs(&inter),
            expected(&[("y", f64::INFINITY), ("z", f64::INFINITY)])
        );
        let union = compute(
            SetOperation::Union,
            &[Some(Input::Plain(&set))],
            &[-2.0],
            Aggregate::Sum,
        );
        assert_eq!(
            pairs(&union),
            expected(&[("w", -2.0), ("y", -2.0), ("z", -2.0)])
        );
    }

    #[test]
    fn plain_sets_are_looked_up_and_counted_as_inputs() {
        let mut keyspace = Keyspace::default();
        keyspace.insert(b"s", Value::Set(Arc::new(plain(&["a", "b"]))), None);
        keyspace.insert(b"z", Value::ZSet(Arc::new(sorted(&[("a", 1.0)]))), None);
        keyspace.insert(b"str", Value::Str(Bytes::from("v")), None);
        assert_eq!(input_len(&keyspace, b"s", 0), 2);
        assert_eq!(input_len(&keyspace, b"z", 0), 1);
        assert_eq!(input_len(&keyspace, b"str", 0), 0);
        assert_eq!(input_len(&keyspace, b"missing", 0), 0);
        let keys = [Bytes::from("s"), Bytes::from("missing"), Bytes::from("z")];
        let found = inputs(&keyspace, &keys, 0).unwrap();
        let lens: Vec<Option<usize>> = found.iter().map(|input| input.map(Input::len)).collect();
        assert_eq!(lens, [Some(2), None, Some(1)]);
        let keys = [Bytes::from("s"), Bytes::from("str")];
        assert!(inputs(&keyspace, &keys, 0).is_err());
    }
}
