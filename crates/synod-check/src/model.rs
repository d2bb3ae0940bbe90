//! The sequential specification: what each [`Op`] does to a key-value store
//! and what it returns.
//!
//! [`apply`] is the readable reference, public so that a simulator or a test
//! server can share the exact semantics the checker assumes. It is
//! deterministic: a key written by [`Op::PutTtl`] simply never expires, which
//! is one of the behaviours the specification allows. [`apply_with_expiry`]
//! is the reference for the others: it keeps the "may expire" flag of each
//! key ([`Entry`]) and takes the nondeterministic choice, which keys have
//! expired by the time the operation takes effect, as an explicit argument.
//!
//! The checker itself runs a compiled form (`crate::command::Command`) over
//! the keys of one partition, with values behind `Rc` so that copying a state
//! is cheap, and with the expiry choice resolved by what the client observed;
//! the property tests in `src/agreement.rs` keep the two in agreement.

use crate::{Key, Op, Outcome, Value};
use std::collections::{BTreeMap, BTreeSet};

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
/// No key ever expires here: [`Op::PutTtl`] acts as [`Op::Put`] (see
/// [`apply_with_expiry`] for keys that do expire).
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
        Op::WatchedTxn { watched, .. }
            if watched
                .iter()
                .any(|(key, seen)| store.get(key) != seen.as_ref()) =>
        {
            Outcome::Aborted
        }
        Op::Txn { ops } | Op::WatchedTxn { ops, .. } => Outcome::Txn(
            ops.iter()
                .map(|op| match op {
                    Op::Txn { .. } | Op::WatchedTxn { .. } => Outcome::Error,
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
        Op::Put { key, value } | Op::PutTtl { key, value } => {
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
        Op::Push { key, value } => match list_push(store.get(key).map(Vec::as_slice), value) {
            Some((list, len)) => {
                store.insert(key.clone(), list);
                Outcome::Int(len)
            }
            None => Outcome::Error,
        },
        Op::Pop { key } => {
            let Some(list) = store.get(key) else {
                return Outcome::Value(None);
            };
            match list_pop(list) {
                Some(Some((head, rest))) => {
                    if list_is_empty(&rest) {
                        store.remove(key);
                    } else {
                        store.insert(key.clone(), rest);
                    }
                    Outcome::Value(Some(head))
                }
                Some(None) => Outcome::Value(None),
                None => Outcome::Error,
            }
        }
        Op::Txn { .. } | Op::WatchedTxn { .. } => Outcome::Error,
    }
}

/// A list ([`Op::Push`], [`Op::Pop`]) is kept as one value: its elements
/// in order, each as its length (4 bytes, little-endian) then its bytes.
/// Any other value is not a list, which the two operations answer with
/// [`Outcome::Error`], as Redis answers `WRONGTYPE`. The checker only ever
/// compares such values whole, so the layout is invisible to histories:
/// `validate` refuses a history that reads or writes a list's key with any
/// other operation.
const LIST_LEN_BYTES: usize = 4;

/// `list` (`None`: the key is absent) with `element` pushed at its tail,
/// and its new length; `None` when `list` is not a list (or the element is
/// too long to encode).
pub(crate) fn list_push(list: Option<&[u8]>, element: &[u8]) -> Option<(Vec<u8>, i64)> {
    let list = list.unwrap_or_default();
    let len = if list.is_empty() { 0 } else { list_len(list)? };
    let element_len = u32::try_from(element.len()).ok()?;
    let mut pushed = Vec::with_capacity(list.len() + LIST_LEN_BYTES + element.len());
    pushed.extend_from_slice(list);
    pushed.extend_from_slice(&element_len.to_le_bytes());
    pushed.extend_from_slice(element);
    Some((pushed, length(len + 1)))
}

/// `list`'s head and the rest; `None` when `list` is not a list. (The
/// `Option` inside is always `Some`: a list is never empty.)
pub(crate) fn list_pop(list: &[u8]) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
    list_len(list)?;
    let (prefix, rest) = list.split_first_chunk::<LIST_LEN_BYTES>()?;
    let element_len = usize::try_from(u32::from_le_bytes(*prefix)).ok()?;
    let (head, rest) = rest.split_at_checked(element_len)?;
    Some(Some((head.to_vec(), rest.to_vec())))
}

/// Whether a list holds no element.
pub(crate) fn list_is_empty(list: &[u8]) -> bool {
    list.is_empty()
}

/// The number of elements of `list`; `None` when it is not a list. An empty
/// value is not one (it is the string `""`): as in Redis, a list is never
/// empty, its last pop removes the key. (Were it one, an empty list would
/// answer a pop as an absent key does, yet differ from it: the checker's
/// rule that "not expired" dominates where both fit would then be wrong.)
fn list_len(mut list: &[u8]) -> Option<usize> {
    if list.is_empty() {
        return None;
    }
    let mut len = 0;
    while !list.is_empty() {
        let (prefix, rest) = list.split_first_chunk::<LIST_LEN_BYTES>()?;
        let element_len = usize::try_from(u32::from_le_bytes(*prefix)).ok()?;
        list = rest.get(element_len..)?;
        len += 1;
    }
    Some(len)
}

/// The length of a value as a Redis integer reply.
pub(crate) fn length(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// A key's entry in the store of [`apply_with_expiry`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The key holds this value and keeps it until the next write.
    Present(Value),
    /// The key holds this value but may vanish at any moment (it was written
    /// by [`Op::PutTtl`]); once vanished it stays absent until the next write.
    Expiring(Value),
}

impl Entry {
    /// The value held.
    pub fn value(&self) -> &Value {
        match self {
            Entry::Present(value) | Entry::Expiring(value) => value,
        }
    }

    /// Whether the key may vanish.
    pub fn is_expiring(&self) -> bool {
        matches!(self, Entry::Expiring(_))
    }
}

/// Applies `op` to `store` like [`apply`], after first removing the keys of
/// `expired` that hold an [`Entry::Expiring`] (the others in `expired` are
/// ignored): `expired` is the nondeterministic choice of which keys' time to
/// live ran out before `op` took effect. A transaction takes effect at one
/// instant, so no key expires in its middle.
///
/// The expiry flag follows Redis: [`Op::PutTtl`] sets it; [`Op::Put`],
/// [`Op::PutGet`] and [`Op::Delete`] clear it (they replace or remove the
/// key); [`Op::Append`], [`Op::Incr`], [`Op::Push`] and [`Op::Pop`] change
/// the value in place and keep it, and a key they create has none.
///
/// ```
/// use std::collections::{BTreeMap, BTreeSet};
/// use synod_check::{model::{apply_with_expiry, Entry}, Op, Outcome};
///
/// let k = b"k".to_vec();
/// let mut store = BTreeMap::new();
/// let none = BTreeSet::new();
/// let expired = BTreeSet::from([k.clone()]);
/// let put_ttl = Op::PutTtl { key: k.clone(), value: b"ab".to_vec() };
/// let append = Op::Append { key: k.clone(), value: b"c".to_vec() };
/// assert_eq!(apply_with_expiry(&mut store, &put_ttl, &none), Outcome::Ok);
/// // Not expired yet: the append sees "ab" and keeps the time to live.
/// assert_eq!(apply_with_expiry(&mut store.clone(), &append, &none), Outcome::Int(3));
/// // Expired: the append creates a new key, which does not expire.
/// assert_eq!(apply_with_expiry(&mut store, &append, &expired), Outcome::Int(1));
/// assert_eq!(store.get(&k), Some(&Entry::Present(b"c".to_vec())));
/// ```
pub fn apply_with_expiry(
    store: &mut BTreeMap<Key, Entry>,
    op: &Op,
    expired: &BTreeSet<Key>,
) -> Outcome {
    for key in expired {
        if store.get(key).is_some_and(Entry::is_expiring) {
            store.remove(key);
        }
    }
    match op {
        Op::WatchedTxn { watched, .. }
            if watched
                .iter()
                .any(|(key, seen)| store.get(key).map(Entry::value) != seen.as_ref()) =>
        {
            Outcome::Aborted
        }
        Op::Txn { ops } | Op::WatchedTxn { ops, .. } => Outcome::Txn(
            ops.iter()
                .map(|op| match op {
                    Op::Txn { .. } | Op::WatchedTxn { .. } => Outcome::Error,
                    single => apply_single_with_expiry(store, single),
                })
                .collect(),
        ),
        single => apply_single_with_expiry(store, single),
    }
}

/// One single-key operation: the value changes as [`apply`] says, the flag
/// as [`apply_with_expiry`] says.
fn apply_single_with_expiry(store: &mut BTreeMap<Key, Entry>, op: &Op) -> Outcome {
    let Some(key) = op.key() else {
        return Outcome::Error;
    };
    let (value, expiring) = match store.remove(key) {
        Some(Entry::Present(value)) => (Some(value), false),
        Some(Entry::Expiring(value)) => (Some(value), true),
        None => (None, false),
    };
    let mut one = BTreeMap::new();
    if let Some(value) = value {
        one.insert(key.clone(), value);
    }
    let outcome = apply_single(&mut one, op);
    let expiring = match op {
        Op::PutTtl { .. } => true,
        Op::Put { .. } | Op::PutGet { .. } | Op::Delete { .. } => false,
        Op::Get { .. }
        | Op::Append { .. }
        | Op::Incr { .. }
        | Op::Push { .. }
        | Op::Pop { .. }
        | Op::Txn { .. }
        | Op::WatchedTxn { .. } => expiring,
    };
    if let Some(value) = one.remove(key) {
        let entry = if expiring {
            Entry::Expiring(value)
        } else {
            Entry::Present(value)
        };
        store.insert(key.clone(), entry);
    }
    outcome
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
}
