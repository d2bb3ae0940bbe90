//! The sequential specification: what each [`Op`] does to a key-value store
//! and what it returns.
//!
//! [`apply`] is the readable reference, public so that a simulator or a test
//! server can share the exact semantics the checker assumes. The checker
//! itself runs a compiled form ([`Command`]) over the keys of one partition,
//! with values behind `Rc` so that copying a state is cheap; a property test
//! keeps the two in agreement.

use crate::{Key, Op, Outcome, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Parses a value as Redis's `INCR` does: an optional `-`, then decimal
/// digits without a leading zero (`0` itself is fine, `-0` is not), no sign
/// `+`, no spaces, within `i64`.
///
/// ```
/// use synod_check::model::parse_int;
/// assert_eq!(parse_int(b"-42"), Some(-42));
/// assert_eq!(parse_int(b"007"), None);
/// assert_eq!(parse_int(b"x"), None);
/// ```
pub fn parse_int(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut n: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(digit)?
        } else {
            n.checked_add(digit)?
        };
    }
    Some(n)
}

/// Applies `op` to `store` (absent keys are absent from the map) and returns
/// what a correct store answers. See [`Op`] for each operation's semantics.
///
/// ```
/// use std::collections::BTreeMap;
/// use synod_check::{model::apply, Op, Outcome};
///
/// let mut store = BTreeMap::new();
/// let incr = Op::Incr { key: b"n".to_vec(), by: 5 };
/// assert_eq!(apply(&mut store, &incr), Outcome::Int(5));
/// let append = Op::Append { key: b"n".to_vec(), value: b"x".to_vec() };
/// assert_eq!(apply(&mut store, &append), Outcome::Int(2));
/// assert_eq!(apply(&mut store, &incr), Outcome::Error);
/// ```
pub fn apply(store: &mut BTreeMap<Key, Value>, op: &Op) -> Outcome {
    match op {
        Op::Txn { ops } => Outcome::Txn(
            ops.iter()
                .map(|op| match op {
                    Op::Txn { .. } => Outcome::Error,
                    single => apply_single(store, single),
                })
                .collect(),
        ),
        single => apply_single(store, single),
    }
}

fn apply_single(store: &mut BTreeMap<Key, Value>, op: &Op) -> Outcome {
    match op {
        Op::Get { key } => Outcome::Value(store.get(key).cloned()),
        Op::Put { key, value } => {
            store.insert(key.clone(), value.clone());
            Outcome::Ok
        }
        Op::PutGet { key, value } => Outcome::Value(store.insert(key.clone(), value.clone())),
        Op::Delete { key } => Outcome::Bool(store.remove(key).is_some()),
        Op::Append { key, value } => {
            let entry = store.entry(key.clone()).or_default();
            entry.extend_from_slice(value);
            Outcome::Int(length(entry.len()))
        }
        Op::Incr { key, by } => {
            let current = match store.get(key) {
                None => Some(0),
                Some(value) => parse_int(value),
            };
            match current.and_then(|n| n.checked_add(*by)) {
                Some(n) => {
                    store.insert(key.clone(), n.to_string().into_bytes());
                    Outcome::Int(n)
                }
                None => Outcome::Error,
            }
        }
        Op::Txn { .. } => Outcome::Error,
    }
}

fn length(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// A value inside the checker: shared, immutable bytes.
pub(crate) type Bytes = Rc<[u8]>;

/// The model state of one partition: one slot per key, indexed like the
/// partition's sorted key list; `None` is an absent key.
pub(crate) type State = Box<[Option<Bytes>]>;

/// One single-key step, with its key replaced by the key's index in the
/// partition.
#[derive(Debug)]
enum Step<'h> {
    Get(usize),
    Put(usize, Bytes),
    PutGet(usize, Bytes),
    Delete(usize),
    Append(usize, &'h [u8]),
    Incr(usize, i64),
    /// A `Txn` nested in a `Txn`: refused, no effect.
    Refused,
}

/// What one step returns, borrowing nothing so that it outlives the state.
#[derive(Debug)]
pub(crate) enum Ret {
    Value(Option<Bytes>),
    Ok,
    Bool(bool),
    Int(i64),
    Error,
}

impl Ret {
    fn matches(&self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Ret::Value(got), Outcome::Value(seen)) => got.as_deref() == seen.as_deref(),
            (Ret::Ok, Outcome::Ok) | (Ret::Error, Outcome::Error) => true,
            (Ret::Bool(got), Outcome::Bool(seen)) => got == seen,
            (Ret::Int(got), Outcome::Int(seen)) => got == seen,
            _ => false,
        }
    }

    fn to_outcome(&self) -> Outcome {
        match self {
            Ret::Value(value) => Outcome::Value(value.as_deref().map(<[u8]>::to_vec)),
            Ret::Ok => Outcome::Ok,
            Ret::Bool(b) => Outcome::Bool(*b),
            Ret::Int(n) => Outcome::Int(*n),
            Ret::Error => Outcome::Error,
        }
    }
}

/// An [`Op`] compiled against a partition's key indices.
#[derive(Debug)]
pub(crate) struct Command<'h> {
    steps: Vec<Step<'h>>,
    txn: bool,
    read_only: bool,
}

/// What running a command against a state and an observed outcome gives.
pub(crate) enum Run {
    /// The model's answer differs from the observed one.
    Mismatch,
    /// The answer matches and the state is unchanged.
    Same,
    /// The answer matches and this is the new state.
    Changed(State),
}

impl<'h> Command<'h> {
    /// Compiles `op`; `index` maps a key to its slot, `None` for a key outside
    /// the partition (which the caller treats as an internal error).
    pub(crate) fn compile(
        op: &'h Op,
        index: &impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<Command<'h>> {
        let (ops, txn) = match op {
            Op::Txn { ops } => (ops.as_slice(), true),
            single => (std::slice::from_ref(single), false),
        };
        let mut steps = Vec::with_capacity(ops.len());
        for op in ops {
            steps.push(match op {
                Op::Get { key } => Step::Get(index(key)?),
                Op::Put { key, value } => Step::Put(index(key)?, Rc::from(value.as_slice())),
                Op::PutGet { key, value } => Step::PutGet(index(key)?, Rc::from(value.as_slice())),
                Op::Delete { key } => Step::Delete(index(key)?),
                Op::Append { key, value } => Step::Append(index(key)?, value),
                Op::Incr { key, by } => Step::Incr(index(key)?, *by),
                Op::Txn { .. } => Step::Refused,
            });
        }
        let read_only = steps
            .iter()
            .all(|step| matches!(step, Step::Get(_) | Step::Refused));
        Some(Command {
            steps,
            txn,
            read_only,
        })
    }

    /// Runs the command on `state` and compares each answer with `observed`
    /// ([`Outcome::Unknown`] accepts anything).
    pub(crate) fn run(&self, state: &[Option<Bytes>], observed: &Outcome) -> Run {
        let expected: &[Outcome] = match (observed, self.txn) {
            (Outcome::Unknown, _) => &[],
            (Outcome::Txn(outcomes), true) => outcomes,
            (single, false) => std::slice::from_ref(single),
            (_, true) => return Run::Mismatch,
        };
        let matches = |i: usize, ret: &Ret| expected.get(i).is_none_or(|seen| ret.matches(seen));
        if self.read_only {
            for (i, step) in self.steps.iter().enumerate() {
                if !matches(i, &read(state, step)) {
                    return Run::Mismatch;
                }
            }
            return Run::Same;
        }
        let mut next: State = state.into();
        for (i, step) in self.steps.iter().enumerate() {
            if !matches(i, &apply_step(&mut next, step)) {
                return Run::Mismatch;
            }
        }
        if *next == *state {
            Run::Same
        } else {
            Run::Changed(next)
        }
    }

    /// The outcome a correct store returns from `state`, and the state after.
    pub(crate) fn outcome(&self, state: &[Option<Bytes>]) -> (Outcome, State) {
        let mut next: State = state.into();
        let rets: Vec<Outcome> = self
            .steps
            .iter()
            .map(|step| apply_step(&mut next, step).to_outcome())
            .collect();
        let outcome = match (self.txn, rets.as_slice()) {
            (false, [single]) => single.clone(),
            _ => Outcome::Txn(rets),
        };
        (outcome, next)
    }
}

fn read(state: &[Option<Bytes>], step: &Step<'_>) -> Ret {
    match step {
        Step::Get(key) => Ret::Value(state.get(*key).cloned().flatten()),
        _ => Ret::Error,
    }
}

fn apply_step(state: &mut [Option<Bytes>], step: &Step<'_>) -> Ret {
    let slot = match step {
        Step::Refused => return Ret::Error,
        Step::Get(key)
        | Step::Put(key, _)
        | Step::PutGet(key, _)
        | Step::Delete(key)
        | Step::Append(key, _)
        | Step::Incr(key, _) => match state.get_mut(*key) {
            Some(slot) => slot,
            None => return Ret::Error,
        },
    };
    match step {
        Step::Get(_) => Ret::Value(slot.clone()),
        Step::Put(_, value) => {
            *slot = Some(value.clone());
            Ret::Ok
        }
        Step::PutGet(_, value) => Ret::Value(slot.replace(value.clone())),
        Step::Delete(_) => Ret::Bool(slot.take().is_some()),
        Step::Append(_, suffix) => {
            let old = slot.as_deref().unwrap_or_default();
            let mut value = Vec::with_capacity(old.len() + suffix.len());
            value.extend_from_slice(old);
            value.extend_from_slice(suffix);
            let len = length(value.len());
            *slot = Some(Rc::from(value));
            Ret::Int(len)
        }
        Step::Incr(_, by) => {
            let current = match slot.as_deref() {
                None => Some(0),
                Some(value) => parse_int(value),
            };
            match current.and_then(|n| n.checked_add(*by)) {
                Some(n) => {
                    *slot = Some(Rc::from(n.to_string().into_bytes()));
                    Ret::Int(n)
                }
                None => Ret::Error,
            }
        }
        Step::Refused => Ret::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        k.as_bytes().to_vec()
    }

    #[test]
    fn parse_int_follows_redis() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-0"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b" 1"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"-9223372036854775809"), None);
    }

    #[test]
    fn reference_semantics() {
        let mut store = BTreeMap::new();
        let k = key("k");
        assert_eq!(
            apply(&mut store, &Op::Delete { key: k.clone() }),
            Outcome::Bool(false)
        );
        assert_eq!(
            apply(
                &mut store,
                &Op::Append {
                    key: k.clone(),
                    value: b"ab".to_vec()
                }
            ),
            Outcome::Int(2)
        );
        assert_eq!(
            apply(
                &mut store,
                &Op::PutGet {
                    key: k.clone(),
                    value: b"9".to_vec()
                }
            ),
            Outcome::Value(Some(b"ab".to_vec()))
        );
        assert_eq!(
            apply(
                &mut store,
                &Op::Incr {
                    key: k.clone(),
                    by: 1
                }
            ),
            Outcome::Int(10)
        );
        assert_eq!(
            apply(
                &mut store,
                &Op::Incr {
                    key: k.clone(),
                    by: i64::MAX
                }
            ),
            Outcome::Error
        );
        assert_eq!(
            apply(&mut store, &Op::Get { key: k.clone() }),
            Outcome::Value(Some(b"10".to_vec()))
        );
        let txn = Op::Txn {
            ops: vec![
                Op::Put {
                    key: key("a"),
                    value: b"x".to_vec(),
                },
                Op::Incr {
                    key: key("a"),
                    by: 1,
                },
                Op::Txn { ops: vec![] },
                Op::Delete { key: k.clone() },
            ],
        };
        assert_eq!(
            apply(&mut store, &txn),
            Outcome::Txn(vec![
                Outcome::Ok,
                Outcome::Error,
                Outcome::Error,
                Outcome::Bool(true)
            ])
        );
        assert_eq!(store.get(&key("a")), Some(&b"x".to_vec()));
        assert_eq!(store.get(&k), None);
    }

    #[test]
    fn compiled_command_matches_and_mismatches() {
        let keys = [key("a"), key("b")];
        let index = |k: &[u8]| keys.iter().position(|x| x.as_slice() == k);
        let op = Op::Txn {
            ops: vec![
                Op::Append {
                    key: key("a"),
                    value: b"x".to_vec(),
                },
                Op::Get { key: key("b") },
            ],
        };
        let Some(command) = Command::compile(&op, &index) else {
            panic!("keys are in the partition");
        };
        let empty: State = vec![None, None].into();
        let good = Outcome::Txn(vec![Outcome::Int(1), Outcome::Value(None)]);
        let bad = Outcome::Txn(vec![Outcome::Int(2), Outcome::Value(None)]);
        assert!(matches!(command.run(&empty, &good), Run::Changed(_)));
        assert!(matches!(command.run(&empty, &bad), Run::Mismatch));
        assert!(matches!(
            command.run(&empty, &Outcome::Unknown),
            Run::Changed(_)
        ));
        assert_eq!(command.outcome(&empty).0, good);
        let outside = Op::Get { key: key("c") };
        assert!(Command::compile(&outside, &index).is_none());
    }
}
