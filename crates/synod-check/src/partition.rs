//! Splits a history into independent partitions (P-compositionality).
//!
//! Linearizability is a local property: a history is linearizable iff its
//! restriction to each independent object is. Here an object is a set of keys
//! closed under "appear together in a transaction", i.e. a connected component
//! of the graph whose edges are transactions. Each component is checked on its
//! own, which keeps the search state small.

use crate::{Op, Operation, Outcome};
use std::collections::HashMap;

/// The operations on one connected set of keys.
#[derive(Debug)]
pub(crate) struct Partition<'h> {
    /// The keys, sorted and distinct; a key's position is its slot in the
    /// model state.
    pub(crate) keys: Vec<&'h [u8]>,
    /// Indices into the history of the operations to check, in history order.
    pub(crate) ops: Vec<usize>,
}

/// The keys an operation may change or observe (a nested transaction does
/// neither; a watched transaction observes its watched keys).
fn keys(op: &Op) -> impl Iterator<Item = &[u8]> {
    op.watched().iter().map(|(key, _)| key.as_slice()).chain(
        op.steps()
            .iter()
            .filter_map(|op| op.key().map(Vec::as_slice)),
    )
}

/// Whether `op` can never change the state.
fn read_only(op: &Op) -> bool {
    op.steps()
        .iter()
        .all(|op| matches!(op, Op::Get { .. } | Op::Txn { .. } | Op::WatchedTxn { .. }))
}

/// Whether the search can ignore `operation`: an unknown outcome that cannot
/// change the state constrains nothing, and neither does an operation that
/// touches no key (its outcome's shape was validated, so it always fits).
fn ignorable(operation: &Operation) -> bool {
    (operation.outcome == Outcome::Unknown && read_only(&operation.op))
        || keys(&operation.op).next().is_none()
}

/// Union-find over key ids, with path halving. Ids are indices into
/// `parent`, handed out by [`partition`] itself.
struct Components {
    parent: Vec<usize>,
}

impl Components {
    fn find(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        self.parent[a.max(b)] = a.min(b);
    }
}

/// Splits `history` into partitions, sorted by their smallest key. Ignorable
/// operations (see [`ignorable`]) are left out.
pub(crate) fn partition(history: &[Operation]) -> Vec<Partition<'_>> {
    let mut ids: HashMap<&[u8], usize> = HashMap::new();
    let mut key_list: Vec<&[u8]> = Vec::new();
    let mut components = Components { parent: Vec::new() };
    let mut first_key = Vec::new();
    for (index, operation) in history.iter().enumerate() {
        if ignorable(operation) {
            continue;
        }
        let mut first = None;
        for key in keys(&operation.op) {
            let id = *ids.entry(key).or_insert_with(|| {
                key_list.push(key);
                components.parent.push(key_list.len() - 1);
                key_list.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(first) => components.union(first, id),
            }
        }
        if let Some(first) = first {
            first_key.push((index, first));
        }
    }
    let mut by_root: HashMap<usize, usize> = HashMap::new();
    let mut partitions: Vec<Partition<'_>> = Vec::new();
    for (id, key) in key_list.iter().enumerate() {
        let root = components.find(id);
        let slot = *by_root.entry(root).or_insert_with(|| {
            partitions.push(Partition {
                keys: Vec::new(),
                ops: Vec::new(),
            });
            partitions.len() - 1
        });
        if let Some(partition) = partitions.get_mut(slot) {
            partition.keys.push(key);
        }
    }
    for (index, first) in first_key {
        let root = components.find(first);
        if let Some(partition) = by_root.get(&root).and_then(|&p| partitions.get_mut(p)) {
            partition.ops.push(index);
        }
    }
    for partition in &mut partitions {
        partition.keys.sort_unstable();
    }
    partitions.sort_by(|a, b| a.keys.first().cmp(&b.keys.first()));
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(op: Op, outcome: Outcome) -> Operation {
        Operation {
            client: 1,
            op,
            outcome,
            invoke: 0,
            complete: 1,
        }
    }

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }
    }

    fn get(key: &str) -> Op {
        Op::Get {
            key: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn transactions_join_keys() {
        let history = vec![
            operation(put("d"), Outcome::Ok),
            operation(put("a"), Outcome::Ok),
            operation(
                Op::Txn {
                    ops: vec![put("c"), put("b")],
                },
                Outcome::Unknown,
            ),
            operation(
                Op::Txn {
                    ops: vec![put("a"), put("b")],
                },
                Outcome::Unknown,
            ),
            operation(get("d"), Outcome::Value(None)),
            // Unknown reads are dropped and do not join their keys.
            operation(
                Op::Txn {
                    ops: vec![get("d"), get("e")],
                },
                Outcome::Unknown,
            ),
            // Touches no key.
            operation(Op::Txn { ops: vec![] }, Outcome::Txn(vec![])),
        ];
        let partitions = partition(&history);
        let shape: Vec<(Vec<&[u8]>, Vec<usize>)> =
            partitions.into_iter().map(|p| (p.keys, p.ops)).collect();
        assert_eq!(
            shape,
            vec![
                (vec![&b"a"[..], b"b", b"c"], vec![1, 2, 3]),
                (vec![&b"d"[..]], vec![0, 4]),
            ]
        );
    }

    #[test]
    fn read_only_detection() {
        assert!(read_only(&get("a")));
        assert!(read_only(&Op::Txn {
            ops: vec![get("a"), Op::Txn { ops: vec![] }]
        }));
        assert!(!read_only(&Op::Txn {
            ops: vec![get("a"), put("a")]
        }));
        assert!(!read_only(&Op::Delete { key: b"a".to_vec() }));
    }
}
