//! A linearizability checker for histories of a key-value store.
//!
//! Synod's deterministic simulator (and, later, the chaos tester that drives
//! real processes) records every client operation with its invocation time,
//! its completion time and what the client observed. [`check`] decides
//! whether some total order of those operations, consistent with real time,
//! explains every observation when the operations are applied one by one to
//! a single sequential key-value store (the model in [`model`]).
//!
//! # The algorithm
//!
//! This is the Wing–Gong search with the memoization and "just-in-time
//! linearization" of Lowe ("Testing for linearizability", 2017), as also used
//! by Porcupine:
//!
//! 1. **Validation.** A history that cannot have been recorded correctly
//!    (completion before invocation, an outcome of the wrong shape such as
//!    `Bool` for a `Get`) is refused with [`Verdict::Undetermined`]: it says
//!    nothing about the store under test.
//! 2. **P-compositionality.** Linearizability is local: a history is
//!    linearizable iff each of its projections onto independent objects is.
//!    Keys that appear together in a [`Op::Txn`] are one object; the history
//!    is split into the connected components of that relation and each is
//!    checked on its own (the search is exponential in the worst case, so
//!    small partitions matter).
//! 3. **Search.** Invocations and completions are laid out in time order.
//!    At each step an operation may be *linearized* (take effect) next only if
//!    it was invoked no later than the earliest completion among the completed
//!    operations not yet linearized: anything else would put it after an
//!    operation that finished before it started. The search applies a
//!    candidate to the model; if the model's answer matches what the client
//!    observed it goes deeper, otherwise it tries the next candidate, and when
//!    none is left it backtracks. The stack is explicit, so histories of any
//!    length do not overflow the call stack.
//! 4. **Memoization.** A configuration is the set of linearized operations
//!    plus the model state. Reaching a configuration already explored cannot
//!    lead anywhere new, so each configuration is explored once; this turns
//!    the exponential search into one that is close to linear on the
//!    histories real systems produce. The number of configurations explored
//!    per partition is bounded by [`CheckOptions::max_states`]; past it the
//!    verdict is [`Verdict::Undetermined`] rather than a guess.
//!
//! # Operations with an unknown outcome
//!
//! A client that timed out, lost its connection or crashed does not know
//! whether its operation took effect ([`Outcome::Unknown`]). Such an operation
//! may have taken effect at any moment after its invocation, even long after
//! the client gave up (a retried or delayed message), or never. The checker
//! therefore treats its completion time as +infinity and accepts any return
//! value: it may be linearized at any point after its invocation, and the
//! search never *has* to linearize it, which is the "never happened" case.
//! Unknown operations never bound which operation may go next, so they do not
//! make the search prune anything it should not.
//!
//! Two consequences are used to keep the search small. An unknown operation
//! that cannot change the state (a `Get`, or a transaction of `Get`s) is
//! dropped before the search: it constrains nothing. And if a configuration
//! was explored with a set of unknown operations linearized, a configuration
//! with the same completed operations, the same state and a *superset* of
//! those unknown operations can do nothing more (the extra ones could simply
//! never have happened), so it is pruned too.
//!
//! # Keys that expire
//!
//! [`Op::PutTtl`] (Redis `SET key value PX ttl`) writes a key that may
//! vanish at any moment: expiry is decided by the replicated log's clock,
//! which the history does not show, so the model treats it as
//! nondeterminism. A key is absent, present, or *expiring* (holds a value but
//! may vanish; once vanished it stays absent until the next write). `PUT`,
//! `SET ... GET` and `DEL` clear the time to live, `APPEND` and `INCR` keep it
//! (as in Redis), and a key they create has none. [`model::apply_with_expiry`]
//! is the reference, with the choice of which keys have expired as an
//! argument.
//!
//! The search does not branch on when a key expires. Each operation with an
//! observed outcome settles it: the key had expired just before it only if
//! the outcome is wrong otherwise (a `GET` of nil, a `DEL` of `false`, an
//! `APPEND` returning just the suffix's length, an `INCR` counting from 0).
//! Where both choices fit the observation, "not expired" leaves the key
//! expiring, which allows everything the other choice would, so nothing is
//! lost. `INCR` is handled exactly, like the others.
//!
//! An operation with an unknown outcome observes nothing; where it appends
//! to or increments an expiring key, both "not expired" (the key keeps its
//! time to live) and "expired" (a new key without one) may follow, and the
//! search explores both, so the check stays sound: a history is never called
//! non-linearizable because of a choice the checker did not try. A
//! transaction with an unknown outcome that appends to or increments more
//! than 8 keys in a partition where a time to live is set would need more
//! than 256 branches; such a partition is [`Verdict::Undetermined`].
//!
//! A transaction takes effect at one instant: no key expires in its middle.
//! A witness ([`check_with_witness`]) is verified as if no key ever expired,
//! so a history where a key is seen to expire falls back to the search.
//!
//! # Watched transactions
//!
//! Redis aborts `EXEC` when a watched key was written (even with the same
//! value), deleted or expired since `WATCH`. A history does not show writes
//! as events of their own, only operations, so [`Op::WatchedTxn`] states the
//! condition by value: it runs iff every watched key holds, when it takes
//! effect, the value its `WATCH` read. The two agree exactly when a watched
//! key's value never comes back: the `WATCH` read value `v` at some point
//! `p`, and if no value repeats, "the value is `v` again at the `EXEC`"
//! holds iff nothing wrote the key in between. So the checker refuses (as
//! [`Verdict::Undetermined`]) a history in which a key a watched transaction
//! touches is ever set with a time to live (it could vanish and come back
//! absent), deleted, incremented, appended an empty value, or written twice
//! with the same value ([`Op::Put`], [`Op::PutGet`]). Appends of non-empty
//! values only grow a value, so they never repeat one.
//!
//! # Lists
//!
//! [`Op::Push`] and [`Op::Pop`] model a queue (`RPUSH`, `LPOP`): a list's
//! key holds its elements in order, and the last pop removes the key. A
//! blocking pop (`BLPOP key timeout`) is one [`Op::Pop`]: the element it
//! popped, or `None` when it timed out. That is exact, because a blocking
//! pop is a sequence of tries, each an atomic pop, and every try before
//! the last found the list empty (a read that changes nothing), so the
//! whole operation takes effect at its last try, inside its interval; a
//! timed-out one's last try found the list empty. The checker keeps a list
//! in a layout of its own, so a history may touch a list's key with `Push`
//! and `Pop` only ([`Verdict::Undetermined`] otherwise).
//!
//! # Real-time order
//!
//! Operation `a` precedes `b` iff `a.complete < b.invoke`; equal times count
//! as concurrent. This errs towards accepting histories, never towards false
//! alarms, when a clock's resolution merges two events.

#[cfg(test)]
mod agreement;
mod command;
mod explain;
mod memo;
pub mod model;
mod partition;
mod validate;
mod wgl;
mod witness;

use std::fmt;

/// A key: an arbitrary byte string.
pub type Key = Vec<u8>;

/// A value: an arbitrary byte string.
pub type Value = Vec<u8>;

/// One operation on the key-value store, as invoked by a client.
///
/// The semantics are those of the sequential model, [`model::apply`] and,
/// for keys that expire, [`model::apply_with_expiry`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Reads a key. Returns [`Outcome::Value`].
    Get {
        /// The key read.
        key: Key,
    },
    /// Sets a key, like Redis `SET`. Returns [`Outcome::Ok`].
    Put {
        /// The key written.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// Sets a key with a time to live, like Redis `SET key value PX ttl`.
    /// Returns [`Outcome::Ok`]. Afterwards the key holds `value` but may
    /// vanish at any moment (its expiry is decided by a clock the checker
    /// does not see, so the ttl itself is not recorded); once it has
    /// vanished it stays absent until the next write to it. See "Keys that
    /// expire" in the crate docs.
    PutTtl {
        /// The key written.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// Sets a key and returns its previous value, like Redis `SET ... GET`.
    /// Returns [`Outcome::Value`] with the old value.
    PutGet {
        /// The key written.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// Removes a key. Returns [`Outcome::Bool`]: whether the key existed.
    Delete {
        /// The key removed.
        key: Key,
    },
    /// Appends bytes to a key's value; a missing key is created. Returns
    /// [`Outcome::Int`]: the new length.
    Append {
        /// The key appended to.
        key: Key,
        /// The bytes appended.
        value: Value,
    },
    /// Adds `by` to the key's value read as a decimal `i64` (a missing key
    /// counts as 0). Returns [`Outcome::Int`] with the new value, or
    /// [`Outcome::Error`] (and changes nothing) when the value is not an
    /// integer or the sum overflows.
    Incr {
        /// The key incremented.
        key: Key,
        /// The amount added, possibly negative.
        by: i64,
    },
    /// Pushes `value` onto the tail of the list at `key` (Redis `RPUSH`); a
    /// missing key is created. Returns [`Outcome::Int`]: the list's new
    /// length, or [`Outcome::Error`] (and changes nothing) when the key holds
    /// something other than a list. See "Lists" in the crate docs.
    Push {
        /// The list's key.
        key: Key,
        /// The element pushed.
        value: Value,
    },
    /// Removes and returns the head of the list at `key` (Redis `LPOP`, or
    /// a blocking pop: `BLPOP` records the element it popped, or `None` when
    /// it timed out, since its tries that found the list empty were reads
    /// inside its interval). Returns [`Outcome::Value`]: the element, `None`
    /// when the list is empty or missing; [`Outcome::Error`] when the key
    /// holds something other than a list. The last pop removes the key.
    Pop {
        /// The list's key.
        key: Key,
    },
    /// Several single-key operations applied atomically, in order (Redis
    /// `MULTI`/`EXEC`). Returns [`Outcome::Txn`] with one outcome per
    /// operation. As in Redis, an operation that errors (an `Incr` on a
    /// non-integer) yields [`Outcome::Error`] in its slot and the others still
    /// apply; a `Txn` nested inside a `Txn` is refused the way Redis refuses a
    /// nested `MULTI`: it yields [`Outcome::Error`] and does nothing.
    Txn {
        /// The operations, in the order they apply.
        ops: Vec<Op>,
    },
    /// `WATCH` then `MULTI`/`EXEC`: the client read each watched key's value
    /// (its `WATCH`, recorded as a [`Op::Get`] of its own); the transaction
    /// runs like a [`Op::Txn`] if every watched key still holds the value
    /// read, and otherwise does nothing and returns [`Outcome::Aborted`].
    /// See "Watched transactions" in the crate docs for why comparing values
    /// checks "not written since", and the histories that needs.
    WatchedTxn {
        /// Each watched key and the value its `WATCH` read (`None`: absent).
        watched: Vec<(Key, Option<Value>)>,
        /// The operations, in the order they apply.
        ops: Vec<Op>,
    },
}

impl Op {
    /// The key of a single-key operation; `None` for a transaction.
    pub fn key(&self) -> Option<&Key> {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::PutTtl { key, .. }
            | Op::PutGet { key, .. }
            | Op::Delete { key }
            | Op::Append { key, .. }
            | Op::Incr { key, .. }
            | Op::Push { key, .. }
            | Op::Pop { key } => Some(key),
            Op::Txn { .. } | Op::WatchedTxn { .. } => None,
        }
    }

    /// The operations of a transaction, in order; the operation itself
    /// otherwise.
    pub fn steps(&self) -> &[Op] {
        match self {
            Op::Txn { ops } | Op::WatchedTxn { ops, .. } => ops,
            single => std::slice::from_ref(single),
        }
    }

    /// The keys a [`Op::WatchedTxn`] watches, with the values read; empty
    /// for any other operation.
    pub fn watched(&self) -> &[(Key, Option<Value>)] {
        match self {
            Op::WatchedTxn { watched, .. } => watched,
            _ => &[],
        }
    }
}

/// What the client observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The value read: by [`Op::Get`], or the old value for [`Op::PutGet`].
    Value(Option<Value>),
    /// A [`Op::Put`] or [`Op::PutTtl`] succeeded.
    Ok,
    /// Whether the key existed, for [`Op::Delete`].
    Bool(bool),
    /// The new length for [`Op::Append`] and [`Op::Push`], the new value
    /// for [`Op::Incr`].
    Int(i64),
    /// A deterministic error (an [`Op::Incr`] on a non-integer or one that
    /// overflows): the operation happened but changed nothing.
    Error,
    /// One outcome per operation of an [`Op::Txn`] or of a
    /// [`Op::WatchedTxn`] that ran.
    Txn(Vec<Outcome>),
    /// A [`Op::WatchedTxn`] found a watched key changed and did nothing
    /// (`EXEC`'s nil).
    Aborted,
    /// The client does not know whether the operation took effect (timeout,
    /// lost connection, crash). It may have taken effect at any time after
    /// its invocation, or never.
    Unknown,
}

/// One operation of a history: what a client invoked, when, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that invoked it (only used in explanations).
    pub client: u64,
    /// The operation.
    pub op: Op,
    /// What the client observed.
    pub outcome: Outcome,
    /// When the client invoked it, in any monotone unit (simulated µs, ns).
    pub invoke: u64,
    /// When the client saw the outcome, in the unit of `invoke`. Ignored
    /// (treated as +infinity) when the outcome is [`Outcome::Unknown`].
    pub complete: u64,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some real-time-respecting order of the operations explains every
    /// observation.
    Linearizable,
    /// No such order exists.
    NotLinearizable {
        /// The keys of the first partition found not linearizable, sorted.
        key_group: Vec<Key>,
        /// A readable account: the longest linearizable prefix the search
        /// found, the model state after it, and why none of the operations
        /// that could go next fits.
        explanation: String,
    },
    /// The checker could not decide: the search budget was exhausted, or the
    /// history is malformed (the reason then starts with "malformed
    /// history").
    Undetermined {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable {
                key_group,
                explanation,
            } => {
                write!(f, "not linearizable on keys [")?;
                for (i, key) in key_group.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", explain::Bytes(key))?;
                }
                write!(f, "]: {explanation}")
            }
            Verdict::Undetermined { reason } => write!(f, "undetermined: {reason}"),
        }
    }
}

/// Limits on the checker's work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// The most configurations (set of linearized operations plus model
    /// state) explored in one partition before giving up with
    /// [`Verdict::Undetermined`].
    pub max_states: u64,
}

impl CheckOptions {
    /// The default value of [`CheckOptions::max_states`].
    pub const MAX_STATES_DEFAULT: u64 = 5_000_000;
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_states: Self::MAX_STATES_DEFAULT,
        }
    }
}

/// Checks whether `history` is linearizable with respect to the sequential
/// key-value model ([`model::apply_with_expiry`], where keys written by
/// [`Op::PutTtl`] may expire at any moment), every key starting absent.
///
/// The order of `history` does not matter. Partitions (keys linked by
/// transactions) are checked in the order of their smallest key; the first
/// one found not linearizable is reported. [`Verdict::Undetermined`] is
/// returned only when no partition is found not linearizable and at least one
/// could not be decided. Never panics.
///
/// ```
/// use synod_check::{check, CheckOptions, Op, Operation, Outcome, Verdict};
///
/// let put = Operation {
///     client: 1,
///     op: Op::Put { key: b"k".to_vec(), value: b"v".to_vec() },
///     outcome: Outcome::Ok,
///     invoke: 0,
///     complete: 10,
/// };
/// let stale_get = Operation {
///     client: 2,
///     op: Op::Get { key: b"k".to_vec() },
///     outcome: Outcome::Value(None),
///     invoke: 20,
///     complete: 30,
/// };
/// let verdict = check(&[put, stale_get], &CheckOptions::default());
/// assert!(matches!(verdict, Verdict::NotLinearizable { .. }));
/// ```
pub fn check(history: &[Operation], opts: &CheckOptions) -> Verdict {
    if let Err(reason) = validate::validate(history) {
        return Verdict::Undetermined {
            reason: format!("malformed history: {reason}"),
        };
    }
    let mut undetermined = None;
    for partition in partition::partition(history) {
        match wgl::check_partition(history, &partition, opts.max_states) {
            wgl::PartitionVerdict::Linearizable => {}
            wgl::PartitionVerdict::NotLinearizable { explanation } => {
                return Verdict::NotLinearizable {
                    key_group: partition.keys.iter().map(|key| key.to_vec()).collect(),
                    explanation,
                };
            }
            wgl::PartitionVerdict::Exhausted { reason } => {
                undetermined.get_or_insert(reason);
            }
        }
    }
    match undetermined {
        Some(reason) => Verdict::Undetermined { reason },
        None => Verdict::Linearizable,
    }
}

/// Checks `history` like [`check`], first trying `witness`: a proposed
/// linearization, as indexes into `history` in the order the operations took
/// effect (a replicated log's apply order, say). Unknown-outcome operations
/// may be left out (they never took effect); every other one must appear.
///
/// A witness that verifies proves the history linearizable in one pass; one
/// that does not proves nothing, and the search of [`check`] decides. So the
/// verdict never depends on the witness being right, only the time taken
/// does. Never panics.
///
/// ```
/// use synod_check::{check_with_witness, CheckOptions, Op, Operation, Outcome, Verdict};
///
/// let put = |value: &[u8], invoke, complete| Operation {
///     client: 1,
///     op: Op::Put { key: b"k".to_vec(), value: value.to_vec() },
///     outcome: Outcome::Ok,
///     invoke,
///     complete,
/// };
/// // Concurrent writes: the log applied b, then a.
/// let history = [put(b"a", 0, 10), put(b"b", 5, 20)];
/// let verdict = check_with_witness(&history, &[1, 0], &CheckOptions::default());
/// assert_eq!(verdict, Verdict::Linearizable);
/// ```
pub fn check_with_witness(
    history: &[Operation],
    witness: &[usize],
    opts: &CheckOptions,
) -> Verdict {
    match verify_witness(history, witness) {
        Ok(()) => Verdict::Linearizable,
        Err(_) => check(history, opts),
    }
}

/// Verifies that `order` (indexes into `history`) is a linearization of
/// `history`: each operation at most once, every operation with an observed
/// outcome present, real-time order respected, and the sequential model
/// giving every observed outcome. The error names the first rule broken.
pub fn verify_witness(history: &[Operation], order: &[usize]) -> Result<(), String> {
    witness::verify(history, order, &[])
}

/// [`verify_witness`] for a system that also knows which keys had expired
/// when it applied each operation: `expired[position]` holds the keys whose
/// time to live ran out just before the operation at `order[position]`
/// took effect (missing positions: none). A key named there that the model
/// does not hold as expiring is ignored. With this, a witness for a history
/// in which keys are seen to expire verifies in one pass too.
pub fn verify_witness_with_expiry(
    history: &[Operation],
    order: &[usize],
    expired: &[std::collections::BTreeSet<Key>],
) -> Result<(), String> {
    witness::verify(history, order, expired)
}
