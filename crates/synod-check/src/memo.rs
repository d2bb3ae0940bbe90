//! The search's memory: interned model states and the set of explored
//! configurations.

use crate::command::State;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast non-cryptographic hasher (the FxHash mixing step with a final
/// avalanche). Inputs are the checker's own data, so there is no need for
/// SipHash's resistance to chosen collisions.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's finalizer, so that hashbrown's use of the top bits sees
        // all the input.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Model states, each stored once and named by a dense id, so that a
/// configuration holds a 4-byte id instead of a copy of the state.
#[derive(Default)]
pub(crate) struct States {
    list: Vec<State>,
    ids: FastMap<State, u32>,
}

impl States {
    /// The id of `state`, adding it if new. `None` past `u32::MAX` states.
    pub(crate) fn intern(&mut self, state: State) -> Option<u32> {
        if let Some(&id) = self.ids.get(&state) {
            return Some(id);
        }
        let id = u32::try_from(self.list.len()).ok()?;
        self.list.push(state.clone());
        self.ids.insert(state, id);
        Some(id)
    }

    /// The state named `id` (ids come from [`States::intern`]).
    pub(crate) fn get(&self, id: u32) -> &State {
        &self.list[id as usize]
    }
}

/// The sets of linearized unknown-outcome operations seen with one key.
enum UnknownSets {
    One(Box<[u32]>),
    Many(Vec<Box<[u32]>>),
}

/// Explored configurations.
///
/// A configuration is split in two: a key (model state id and the exact set
/// of linearized *completed* operations, encoded by the caller) and the
/// sorted set of linearized *unknown-outcome* operations. A configuration is
/// dominated by an explored one with the same key and a subset of its unknown
/// operations: the extra ones could simply never have happened, so the
/// dominated configuration cannot reach anything the other cannot. (This
/// includes plain equality, the usual WGL memo.)
#[derive(Default)]
pub(crate) struct Memo {
    map: FastMap<Box<[u32]>, UnknownSets>,
}

/// Whether every element of sorted `small` is in sorted `large`.
fn is_subset(small: &[u32], large: &[u32]) -> bool {
    if small.len() > large.len() {
        return false;
    }
    let mut rest = large;
    for x in small {
        match rest.binary_search(x) {
            Ok(at) => rest = &rest[at + 1..],
            Err(_) => return false,
        }
    }
    true
}

impl Memo {
    /// Records the configuration `(key, unknown)` and returns true, or
    /// returns false if an explored configuration dominates it.
    pub(crate) fn insert(&mut self, key: &[u32], unknown: &[u32]) -> bool {
        let Some(sets) = self.map.get_mut(key) else {
            self.map
                .insert(key.into(), UnknownSets::One(unknown.into()));
            return true;
        };
        match sets {
            UnknownSets::One(seen) => {
                if is_subset(seen, unknown) {
                    return false;
                }
                let seen = std::mem::take(seen);
                *sets = if is_subset(unknown, &seen) {
                    UnknownSets::One(unknown.into())
                } else {
                    UnknownSets::Many(vec![seen, unknown.into()])
                };
            }
            UnknownSets::Many(list) => {
                if list.iter().any(|seen| is_subset(seen, unknown)) {
                    return false;
                }
                // Sets that the new one dominates will never prune anything
                // it would not.
                list.retain(|seen| !is_subset(unknown, seen));
                list.push(unknown.into());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Slot;
    use std::rc::Rc;

    #[test]
    fn subsets() {
        assert!(is_subset(&[], &[1]));
        assert!(is_subset(&[1, 3], &[0, 1, 2, 3]));
        assert!(!is_subset(&[1, 4], &[0, 1, 2, 3]));
        assert!(!is_subset(&[1, 2], &[1]));
    }

    #[test]
    fn memo_prunes_equal_and_dominated() {
        let mut memo = Memo::default();
        assert!(memo.insert(&[0, 1], &[5]));
        assert!(!memo.insert(&[0, 1], &[5]));
        assert!(!memo.insert(&[0, 1], &[2, 5]));
        assert!(memo.insert(&[0, 1], &[2]));
        assert!(memo.insert(&[0, 1], &[7]));
        assert!(!memo.insert(&[0, 1], &[2, 7]));
        assert!(memo.insert(&[0, 1], &[]));
        assert!(!memo.insert(&[0, 1], &[3]));
        assert!(memo.insert(&[0, 2], &[3]));
    }

    #[test]
    fn states_are_interned() {
        let mut states = States::default();
        let a: State = vec![Slot::Present(Rc::from(&b"x"[..])), Slot::Absent].into();
        let b: State = vec![Slot::Expiring(Rc::from(&b"x"[..])), Slot::Absent].into();
        assert_eq!(states.intern(a.clone()), Some(0));
        assert_eq!(states.intern(b), Some(1));
        assert_eq!(states.intern(a.clone()), Some(0));
        assert_eq!(states.get(0), &a);
    }
}
