//! The compiled form of the model ([`crate::model`]) that the search runs.
//!
//! An [`Op`] is compiled against the keys of one partition: each key becomes
//! the index of its slot in the partition's [`State`], and values sit behind
//! `Rc` so that copying a state is cheap.
//!
//! # Keys that may expire
//!
//! A key written by [`Op::PutTtl`] is [`Slot::Expiring`]: it may vanish at
//! any moment, decided by a clock the checker cannot see. The search does not
//! branch on *when* it vanishes. It resolves the choice at the operations that
//! touch the key, from what their client observed, with one rule:
//!
//! > the key is taken to have expired just before an operation only if the
//! > operation's observed outcome is wrong when it has not.
//!
//! This loses no linearization because of a *dominance* argument:
//! `Expiring(v)` allows every behaviour of `Present(v)` (never expire) and of
//! `Absent` (expire at once). Where the observation fits both choices (a
//! `PUT` returns `OK` either way; an `APPEND` to an expiring empty value
//! returns the same length either way) the "not expired" successor dominates
//! the other: the values are equal and only it may still expire, or the key
//! was overwritten and both successors are equal. So continuing from it alone
//! explores every behaviour either could.
//!
//! An operation with an unknown outcome observes nothing. Those that replace
//! or remove the key (`PUT`, `SET ... PX`, `SET ... GET`, `DEL`) reach the same
//! state either way; an unobserved `GET` changes nothing (and `Expiring(v)`
//! dominates `Absent`). But `APPEND` and `INCR` change the value in place, so
//! "not expired" (`Expiring(v + a)`) and "expired" (`Present(a)`) are both
//! possible and neither dominates: each such step is a *fork*, and a command
//! with `f` forks has `2^f` *branches*, numbered by a bit mask (bit `i` set:
//! the key of fork `i` had expired). The search tries every branch of an
//! unknown-outcome operation as a separate candidate ([`Run::NoSuchBranch`]
//! ends the list). Branch 0 is the only branch of any other command.
//!
//! A transaction takes effect at one instant: once one of its steps has
//! settled whether a key had expired, later steps on that key agree.

use crate::model::{length, list_is_empty, list_pop, list_push, parse_int};
use crate::{Op, Outcome};
use std::rc::Rc;

/// A value inside the checker: shared, immutable bytes.
pub(crate) type Bytes = Rc<[u8]>;

/// The model state of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Absent,
    /// Holds the value until the next write.
    Present(Bytes),
    /// Holds the value but may vanish at any moment (a time to live).
    Expiring(Bytes),
}

impl Slot {
    /// The value held, if any.
    pub(crate) fn value(&self) -> Option<&Bytes> {
        match self {
            Slot::Absent => None,
            Slot::Present(value) | Slot::Expiring(value) => Some(value),
        }
    }

    fn into_value(self) -> Option<Bytes> {
        match self {
            Slot::Absent => None,
            Slot::Present(value) | Slot::Expiring(value) => Some(value),
        }
    }

    pub(crate) fn is_expiring(&self) -> bool {
        matches!(self, Slot::Expiring(_))
    }

    /// `value` in place of the current one, keeping the time to live (as
    /// `APPEND` and `INCR` do); an absent key is created without one.
    fn with_value(&self, value: Bytes) -> Slot {
        match self {
            Slot::Expiring(_) => Slot::Expiring(value),
            Slot::Absent | Slot::Present(_) => Slot::Present(value),
        }
    }
}

/// The model state of one partition: one slot per key, indexed like the
/// partition's sorted key list.
pub(crate) type State = Box<[Slot]>;

/// The most forks (see the module docs) one command may have: a command with
/// more `APPEND`/`INCR` keys than this is refused up front where it may meet
/// an expiring key ([`Command::forks_max`]), so branch masks fit in a `u32`
/// and an operation has at most 256 branches.
pub(crate) const FORKS_MAX: u32 = 8;

/// One single-key step, with its key replaced by the key's index in the
/// partition.
#[derive(Debug)]
enum Step<'h> {
    Get(usize),
    Put(usize, Bytes),
    PutTtl(usize, Bytes),
    PutGet(usize, Bytes),
    Delete(usize),
    Append(usize, &'h [u8]),
    Incr(usize, i64),
    Push(usize, &'h [u8]),
    Pop(usize),
    /// A `Txn` nested in a `Txn`: refused, no effect.
    Refused,
}

impl Step<'_> {
    fn slot(&self) -> Option<usize> {
        match self {
            Step::Get(key)
            | Step::Put(key, _)
            | Step::PutTtl(key, _)
            | Step::PutGet(key, _)
            | Step::Delete(key)
            | Step::Append(key, _)
            | Step::Incr(key, _)
            | Step::Push(key, _)
            | Step::Pop(key) => Some(*key),
            Step::Refused => None,
        }
    }

    /// Whether, unobserved, the step's result depends on whether its key had
    /// expired (a fork).
    fn forks(&self) -> bool {
        matches!(
            self,
            Step::Append(..) | Step::Incr(..) | Step::Push(..) | Step::Pop(_)
        )
    }
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
    /// A watched transaction's condition: each watched key's slot and the
    /// value its `WATCH` read. The steps run only if every one still holds.
    guards: Vec<(usize, Option<Bytes>)>,
    txn: bool,
    read_only: bool,
    /// The most forks a run can meet: the distinct keys it appends to or
    /// increments.
    forks_max: u32,
    /// Whether a key it touches may be expiring; see
    /// [`Command::no_key_expires`].
    may_expire: bool,
}

/// What running a command against a state and an observed outcome gives.
pub(crate) enum Run {
    /// The model's answer differs from the observed one.
    Mismatch,
    /// The answer matches and the state is unchanged.
    Same,
    /// The answer matches and this is the new state.
    Changed(State),
    /// The command has fewer branches than the one asked for (see the module
    /// docs); branches are numbered densely, so neither has any higher one.
    NoSuchBranch,
}

/// Why [`Command::execute`] gave no state.
enum Fail {
    Mismatch,
    NoSuchBranch,
}

impl<'h> Command<'h> {
    /// Compiles `op`; `index` maps a key to its slot, `None` for a key outside
    /// the partition (which the caller treats as an internal error).
    pub(crate) fn compile(
        op: &'h Op,
        index: &impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<Command<'h>> {
        let txn = matches!(op, Op::Txn { .. } | Op::WatchedTxn { .. });
        let ops = op.steps();
        let guards = op
            .watched()
            .iter()
            .map(|(key, seen)| Some((index(key)?, seen.as_deref().map(Rc::from))))
            .collect::<Option<Vec<_>>>()?;
        let mut steps = Vec::with_capacity(ops.len());
        for op in ops {
            steps.push(match op {
                Op::Get { key } => Step::Get(index(key)?),
                Op::Put { key, value } => Step::Put(index(key)?, Rc::from(value.as_slice())),
                Op::PutTtl { key, value } => Step::PutTtl(index(key)?, Rc::from(value.as_slice())),
                Op::PutGet { key, value } => Step::PutGet(index(key)?, Rc::from(value.as_slice())),
                Op::Delete { key } => Step::Delete(index(key)?),
                Op::Append { key, value } => Step::Append(index(key)?, value),
                Op::Incr { key, by } => Step::Incr(index(key)?, *by),
                Op::Push { key, value } => Step::Push(index(key)?, value),
                Op::Pop { key } => Step::Pop(index(key)?),
                Op::Txn { .. } | Op::WatchedTxn { .. } => Step::Refused,
            });
        }
        let read_only = steps
            .iter()
            .all(|step| matches!(step, Step::Get(_) | Step::Refused));
        let mut fork_slots: Vec<usize> = steps
            .iter()
            .filter(|step| step.forks())
            .filter_map(Step::slot)
            .collect();
        fork_slots.sort_unstable();
        fork_slots.dedup();
        Some(Command {
            steps,
            guards,
            txn,
            read_only,
            forks_max: u32::try_from(fork_slots.len()).unwrap_or(u32::MAX),
            may_expire: true,
        })
    }

    /// Promises that no state this command runs on has an expiring key (no
    /// operation of the partition sets a time to live), which spares the
    /// common case a scan of the keys touched.
    pub(crate) fn no_key_expires(&mut self) {
        self.may_expire = false;
    }

    /// The most forks a run of this command can meet (see [`FORKS_MAX`]).
    pub(crate) fn forks_max(&self) -> u32 {
        self.forks_max
    }

    /// Whether the command can set a time to live.
    pub(crate) fn sets_ttl(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step, Step::PutTtl(..)))
    }

    /// Runs branch `branch` of the command on `state` and compares each answer
    /// with `observed` ([`Outcome::Unknown`] accepts anything).
    pub(crate) fn run(&self, state: &[Slot], observed: &Outcome, branch: u32) -> Run {
        if !self.guards_hold(state) {
            // Aborted: nothing ran. Unobserved, "it ran" is impossible from
            // this state and "it never happened" is the search's own choice.
            return match (observed, branch) {
                (_, 1..) => Run::NoSuchBranch,
                (Outcome::Aborted | Outcome::Unknown, 0) => Run::Same,
                (_, 0) => Run::Mismatch,
            };
        }
        if *observed == Outcome::Aborted {
            return if branch == 0 {
                Run::Mismatch
            } else {
                Run::NoSuchBranch
            };
        }
        let expected: &[Outcome] = match (observed, self.txn) {
            (Outcome::Unknown, _) => &[],
            (Outcome::Txn(outcomes), true) => outcomes,
            (single, false) => std::slice::from_ref(single),
            (_, true) => return Run::Mismatch,
        };
        if !self.may_expire || !self.touches_expiring(state) {
            debug_assert!(!self.touches_expiring(state), "no_key_expires broken");
            // The common case, and the only one in histories without
            // `PutTtl`: deterministic, one branch.
            if branch != 0 {
                return Run::NoSuchBranch;
            }
            return self.run_deterministic(state, expected);
        }
        let unknown = *observed == Outcome::Unknown;
        match self.execute(state, expected, unknown, branch, None) {
            Err(Fail::Mismatch) => Run::Mismatch,
            Err(Fail::NoSuchBranch) => Run::NoSuchBranch,
            Ok(next) if *next == *state => Run::Same,
            Ok(next) => Run::Changed(next),
        }
    }

    /// Whether a watched transaction's condition holds in `state` (always
    /// for any other command). A watched key never expires: `validate`
    /// refuses histories that set one with a time to live.
    fn guards_hold(&self, state: &[Slot]) -> bool {
        self.guards.iter().all(|(key, seen)| {
            let slot = state.get(*key);
            debug_assert!(
                !slot.is_some_and(Slot::is_expiring),
                "a watched key expires"
            );
            slot.and_then(Slot::value) == seen.as_ref()
        })
    }

    fn touches_expiring(&self, state: &[Slot]) -> bool {
        self.steps.iter().any(|step| {
            step.slot()
                .and_then(|key| state.get(key))
                .is_some_and(Slot::is_expiring)
        })
    }

    /// [`Command::run`] where no key touched may expire.
    fn run_deterministic(&self, state: &[Slot], expected: &[Outcome]) -> Run {
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

    /// Runs the command with expiry resolved as the module docs say: by
    /// `expected` (one outcome per step) where observed, by the bits of
    /// `branch` at the forks of an `unknown` run. Pushes each step's answer
    /// onto `rets` if given.
    ///
    /// Kept out of line: inlined into [`Command::run`] it made the common,
    /// deterministic path measurably slower.
    #[inline(never)]
    fn execute(
        &self,
        state: &[Slot],
        expected: &[Outcome],
        unknown: bool,
        branch: u32,
        mut rets: Option<&mut Vec<Ret>>,
    ) -> Result<State, Fail> {
        if branch != 0 && !unknown {
            return Err(Fail::NoSuchBranch);
        }
        let mut next: State = state.into();
        // Keys whose expiry this command has settled: no key expires in the
        // middle of a transaction, so once a step has seen or written a key,
        // later steps see what it left (only an unobserved read settles
        // nothing).
        let mut settled: Vec<usize> = Vec::new();
        let mut forks = 0u32;
        for (i, step) in self.steps.iter().enumerate() {
            let seen = if unknown { None } else { expected.get(i) };
            let key = step
                .slot()
                .filter(|key| !settled.contains(key))
                .filter(|&key| next.get(key).is_some_and(Slot::is_expiring));
            let ret = match (key, seen) {
                (None, _) => apply_step(&mut next, step),
                (Some(key), Some(seen)) => {
                    let slot = &mut next[key];
                    // "Not expired" first: where both fit, it dominates.
                    let mut kept = slot.clone();
                    let ret = apply_to_slot(&mut kept, step);
                    if ret.matches(seen) {
                        *slot = kept;
                        ret
                    } else {
                        *slot = Slot::Absent;
                        apply_to_slot(slot, step)
                    }
                }
                (Some(key), None) => {
                    let slot = &mut next[key];
                    if step.forks() {
                        let expired = branch.checked_shr(forks).unwrap_or(0) & 1 == 1;
                        forks += 1;
                        if expired {
                            *slot = Slot::Absent;
                        }
                    }
                    apply_to_slot(slot, step)
                }
            };
            if let Some(key) = step.slot() {
                if (seen.is_some() || !matches!(step, Step::Get(_))) && !settled.contains(&key) {
                    settled.push(key);
                }
            }
            if seen.is_some_and(|seen| !ret.matches(seen)) {
                return Err(Fail::Mismatch);
            }
            if let Some(rets) = rets.as_deref_mut() {
                rets.push(ret);
            }
        }
        debug_assert!(forks <= self.forks_max, "a fork per distinct key");
        if branch.checked_shr(forks).unwrap_or(0) != 0 {
            return Err(Fail::NoSuchBranch);
        }
        Ok(next)
    }

    /// What a correct store returns along branch `branch` of the command run
    /// with no observation (an unknown outcome), and the state after; `None`
    /// if there is no such branch.
    pub(crate) fn outcome(&self, state: &[Slot], branch: u32) -> Option<(Outcome, State)> {
        if !self.guards_hold(state) {
            return (branch == 0).then(|| (Outcome::Aborted, state.into()));
        }
        let mut rets = Vec::with_capacity(self.steps.len());
        let next = self
            .execute(state, &[], true, branch, Some(&mut rets))
            .ok()?;
        let rets: Vec<Outcome> = rets.iter().map(Ret::to_outcome).collect();
        let outcome = match (self.txn, rets.as_slice()) {
            (false, [single]) => single.clone(),
            _ => Outcome::Txn(rets),
        };
        Some((outcome, next))
    }

    /// Every outcome a correct store may return from `state`, "no key
    /// expired" first; for explanations. Past [`FORKS_MAX`] expiring keys
    /// touched, only some of the combinations are listed.
    pub(crate) fn possible_outcomes(&self, state: &[Slot]) -> Vec<Outcome> {
        let mut expiring: Vec<usize> = self
            .steps
            .iter()
            .filter_map(Step::slot)
            .filter(|&key| state.get(key).is_some_and(Slot::is_expiring))
            .collect();
        expiring.sort_unstable();
        expiring.dedup();
        expiring.truncate(FORKS_MAX as usize);
        let mut outcomes: Vec<Outcome> = Vec::new();
        for mask in 0..1u32 << expiring.len() {
            let mut before: State = state.into();
            for (bit, &key) in expiring.iter().enumerate() {
                if mask >> bit & 1 == 1 {
                    before[key] = Slot::Absent;
                }
            }
            if let Some((outcome, _)) = self.outcome(&before, 0) {
                if !outcomes.contains(&outcome) {
                    outcomes.push(outcome);
                }
            }
        }
        outcomes
    }
}

fn read(state: &[Slot], step: &Step<'_>) -> Ret {
    match step {
        Step::Get(key) => Ret::Value(state.get(*key).and_then(Slot::value).cloned()),
        _ => Ret::Error,
    }
}

fn apply_step(state: &mut [Slot], step: &Step<'_>) -> Ret {
    match step.slot().and_then(|key| state.get_mut(key)) {
        Some(slot) => apply_to_slot(slot, step),
        None => Ret::Error,
    }
}

/// Applies `step` to its key's slot, an expiring value counting as present.
#[inline]
fn apply_to_slot(slot: &mut Slot, step: &Step<'_>) -> Ret {
    match step {
        Step::Get(_) => Ret::Value(slot.value().cloned()),
        Step::Put(_, value) => {
            *slot = Slot::Present(value.clone());
            Ret::Ok
        }
        Step::PutTtl(_, value) => {
            *slot = Slot::Expiring(value.clone());
            Ret::Ok
        }
        Step::PutGet(_, value) => {
            Ret::Value(std::mem::replace(slot, Slot::Present(value.clone())).into_value())
        }
        Step::Delete(_) => Ret::Bool(std::mem::replace(slot, Slot::Absent).into_value().is_some()),
        Step::Append(_, suffix) => {
            let old = slot.value().map_or(&[][..], |value| value);
            let mut value = Vec::with_capacity(old.len() + suffix.len());
            value.extend_from_slice(old);
            value.extend_from_slice(suffix);
            let len = length(value.len());
            *slot = slot.with_value(Rc::from(value));
            Ret::Int(len)
        }
        Step::Incr(_, by) => {
            let current = match slot.value() {
                None => Some(0),
                Some(value) => parse_int(value),
            };
            match current.and_then(|n| n.checked_add(*by)) {
                Some(n) => {
                    *slot = slot.with_value(Rc::from(n.to_string().into_bytes()));
                    Ret::Int(n)
                }
                None => Ret::Error,
            }
        }
        Step::Push(_, element) => match list_push(slot.value().map(|value| &value[..]), element) {
            Some((list, len)) => {
                *slot = slot.with_value(Rc::from(list));
                Ret::Int(len)
            }
            None => Ret::Error,
        },
        Step::Pop(_) => {
            let Some(list) = slot.value() else {
                return Ret::Value(None);
            };
            match list_pop(list) {
                Some(Some((head, rest))) => {
                    // Redis removes a list's key with its last element.
                    *slot = if list_is_empty(&rest) {
                        Slot::Absent
                    } else {
                        slot.with_value(Rc::from(rest))
                    };
                    Ret::Value(Some(Rc::from(head)))
                }
                Some(None) => Ret::Value(None),
                None => Ret::Error,
            }
        }
        Step::Refused => Ret::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn key(k: &str) -> Key {
        k.as_bytes().to_vec()
    }

    fn bytes(v: &str) -> Bytes {
        Rc::from(v.as_bytes())
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
        let empty: State = vec![Slot::Absent, Slot::Absent].into();
        let good = Outcome::Txn(vec![Outcome::Int(1), Outcome::Value(None)]);
        let bad = Outcome::Txn(vec![Outcome::Int(2), Outcome::Value(None)]);
        assert!(matches!(command.run(&empty, &good, 0), Run::Changed(_)));
        assert!(matches!(command.run(&empty, &bad, 0), Run::Mismatch));
        assert!(matches!(
            command.run(&empty, &Outcome::Unknown, 0),
            Run::Changed(_)
        ));
        assert!(matches!(
            command.run(&empty, &Outcome::Unknown, 1),
            Run::NoSuchBranch
        ));
        assert_eq!(command.outcome(&empty, 0).map(|(o, _)| o), Some(good));
        let outside = Op::Get { key: key("c") };
        assert!(Command::compile(&outside, &index).is_none());
    }

    #[test]
    fn observation_settles_expiry() {
        let keys = [key("k")];
        let index = |k: &[u8]| keys.iter().position(|x| x.as_slice() == k);
        let expiring: State = vec![Slot::Expiring(bytes("ab"))].into();
        let get = Op::Get { key: key("k") };
        let get = Command::compile(&get, &index).unwrap_or_else(|| unreachable!());
        let seen = Outcome::Value(Some(b"ab".to_vec()));
        assert!(matches!(get.run(&expiring, &seen, 0), Run::Same));
        let Run::Changed(gone) = get.run(&expiring, &Outcome::Value(None), 0) else {
            panic!("a read of nil means the key expired");
        };
        assert_eq!(*gone, [Slot::Absent]);
        let other = Outcome::Value(Some(b"zz".to_vec()));
        assert!(matches!(get.run(&expiring, &other, 0), Run::Mismatch));

        let append = Op::Append {
            key: key("k"),
            value: b"c".to_vec(),
        };
        let append = Command::compile(&append, &index).unwrap_or_else(|| unreachable!());
        let Run::Changed(kept) = append.run(&expiring, &Outcome::Int(3), 0) else {
            panic!("not expired");
        };
        assert_eq!(*kept, [Slot::Expiring(bytes("abc"))]);
        let Run::Changed(fresh) = append.run(&expiring, &Outcome::Int(1), 0) else {
            panic!("expired");
        };
        assert_eq!(*fresh, [Slot::Present(bytes("c"))]);
        assert!(matches!(
            append.run(&expiring, &Outcome::Int(2), 0),
            Run::Mismatch
        ));
        // Unobserved, the append forks: branch 0 "not expired", branch 1
        // "expired", and no branch 2.
        let branches: Vec<State> = (0..)
            .map_while(
                |branch| match append.run(&expiring, &Outcome::Unknown, branch) {
                    Run::Changed(state) => Some(state),
                    Run::Same | Run::Mismatch | Run::NoSuchBranch => None,
                },
            )
            .collect();
        assert_eq!(branches, vec![kept, fresh]);
        assert_eq!(
            get.possible_outcomes(&expiring),
            vec![seen, Outcome::Value(None)]
        );
    }
}
