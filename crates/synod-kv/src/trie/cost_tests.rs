//! Regression tests for the review's two denial-of-service findings,
//! stated as bounds on what an operation builds and copies (nodes, array
//! slots, item clones, node bytes) rather than as timings, so that they
//! fail the same way on every machine if an O(k) copy comes back:
//!
//! 1. **Collision buckets.** With k items of one hash, every get, insert,
//!    remove and get_mut, with or without a view sharing the bucket,
//!    builds a bounded number of trie nodes and clones O(log k) items.
//!    The flat buckets they replace built a (k+1)-slot node on every
//!    insert and removal, and cloned all k items under a view.
//! 2. **Chosen hashes.** n items make at most n nodes and at most 64 bytes
//!    of nodes per item, whatever their hashes (see the bound in
//!    [`node_bytes_are_bounded_whatever_the_hashes`]). Chains of one-child
//!    nodes made pairs of keys cost ~150 bytes of nodes per key.

use std::cell::Cell;

use super::node::{Node, BUILT};
use super::*;

thread_local! {
    /// `Counted` clones on this thread so far.
    static CLONES: Cell<usize> = const { Cell::new(0) };
}

#[derive(Debug)]
struct Counted {
    hash: u64,
    key: Vec<u8>,
    value: u32,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.set(CLONES.get() + 1);
        Counted {
            hash: self.hash,
            key: self.key.clone(),
            value: self.value,
        }
    }
}

impl TrieItem for Counted {
    fn trie_hash(&self) -> u64 {
        self.hash
    }

    fn trie_key(&self) -> &[u8] {
        &self.key
    }
}

fn counted(hash: u64, key: u64) -> Counted {
    Counted {
        hash,
        key: key.to_be_bytes().to_vec(),
        value: 0,
    }
}

/// What one operation built and cloned.
#[derive(Debug, Clone, Copy)]
struct Cost {
    nodes: usize,
    slots: usize,
    clones: usize,
}

fn cost<R>(op: impl FnOnce() -> R) -> (R, Cost) {
    let (nodes, slots) = BUILT.get();
    let clones = CLONES.get();
    let result = op();
    let (nodes_after, slots_after) = BUILT.get();
    let cost = Cost {
        nodes: nodes_after - nodes,
        slots: slots_after - slots,
        clones: CLONES.get() - clones,
    };
    (result, cost)
}

/// The bucket's hash: its path shares the root's slot with other items,
/// so the bucket sits below a node of its own.
const BUCKET_HASH: u64 = 0x0123_4567_89AB_CDEF;

/// A trie of `k` items with [`BUCKET_HASH`] (keys 0..k), 200 with spread
/// hashes in the root's upper half (the bucket is in slot 0), and 3 that
/// leave the bucket's hash at levels 3, 7 and 9: the bucket's path is the
/// root and three nodes of one item and one child.
fn with_bucket(k: u64) -> Trie<Counted> {
    let mut trie = Trie::default();
    for key in 0..k {
        trie.insert(counted(BUCKET_HASH, key));
    }
    for key in 0..200u64 {
        trie.insert(counted(
            key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 << 63,
            key,
        ));
    }
    for bit in [40, 20, 5] {
        trie.insert(counted(BUCKET_HASH ^ (1 << bit), 0));
    }
    trie.check_invariants().unwrap();
    trie
}

/// One operation on the bucket: whether it found its item (or made a
/// new one).
type BucketOp = Box<dyn Fn(&mut Trie<Counted>) -> bool>;

/// The operations on the bucket, by name; each returns whether it found
/// its item (or made a new one). Each `round` uses other keys.
fn bucket_ops(k: u64, round: u64) -> [(&'static str, BucketOp); 7] {
    let key = move |n: u64| (n + round).to_be_bytes();
    let k = k + 10 * round;
    [
        (
            "get",
            Box::new(move |trie| trie.get(BUCKET_HASH, &key(k / 2)).is_some()),
        ),
        (
            "insert new",
            Box::new(move |trie| trie.insert(counted(BUCKET_HASH, k + 1)).is_none()),
        ),
        (
            "insert replacing",
            Box::new(move |trie| trie.insert(counted(BUCKET_HASH, k / 3 + round)).is_some()),
        ),
        (
            "get_mut",
            Box::new(move |trie| {
                trie.get_mut(BUCKET_HASH, &key(k / 4))
                    .map(|item| item.value += 1)
                    .is_some()
            }),
        ),
        (
            "remove",
            Box::new(move |trie| trie.remove(BUCKET_HASH, &key(k / 5)).is_some()),
        ),
        (
            "remove missing",
            Box::new(move |trie| trie.remove(BUCKET_HASH, &key(k + 7)).is_none()),
        ),
        (
            "get_mut missing",
            Box::new(move |trie| trie.get_mut(BUCKET_HASH, &key(k + 9)).is_none()),
        ),
    ]
}

/// Items a write may clone with a view sharing everything: the items of
/// the trie nodes on its path (the root's, at most 64, and one in each of
/// the three below it) and those of the bucket's tree nodes on its path
/// (a leaf of at most 16, and a sibling it may merge with).
fn clones_max() -> usize {
    64 + 3 + 2 * 16
}

/// Trie nodes a write may build: the four on the bucket's path and a new
/// bucket node when the bucket node is shared (array slots: at most 64
/// in the root, 2 in the others).
const NODES_MAX: usize = 5;
const SLOTS_MAX: usize = 64 + 3 * 2;

#[test]
fn bucket_operations_cost_o_log_k() {
    let sizes: &[u64] = if cfg!(miri) { &[40] } else { &[1_000, 30_000] };
    for &k in sizes {
        let mut trie = with_bucket(k);
        for ((name, op), (_, op_shared)) in bucket_ops(k, 0).into_iter().zip(bucket_ops(k, 1)) {
            // Alone: nothing is shared, so nothing is cloned or rebuilt
            // (a flat bucket was rebuilt with k slots on every write).
            let (found, alone) = cost(|| op(&mut trie));
            assert!(found, "{name}");
            eprintln!("k={k} {name:<18} alone:       {alone:?}");
            assert!(
                alone.nodes <= NODES_MAX && alone.slots <= SLOTS_MAX && alone.clones == 0,
                "k={k} {name}: {alone:?}"
            );
            // Under a view: the view keeps what it saw, and the write
            // copies a path, not the bucket (a flat bucket cloned k items).
            let view = trie.clone();
            let before: Vec<(u64, Vec<u8>, u32)> = view
                .iter()
                .map(|item| (item.hash, item.key.clone(), item.value))
                .collect();
            let (found, shared) = cost(|| op_shared(&mut trie));
            assert!(found, "{name} under a view");
            eprintln!("k={k} {name:<18} under a view: {shared:?}");
            assert!(
                shared.nodes <= NODES_MAX
                    && shared.slots <= SLOTS_MAX
                    && shared.clones <= clones_max(),
                "k={k} {name} under a view: {shared:?} (at most {} clones)",
                clones_max()
            );
            let after: Vec<(u64, Vec<u8>, u32)> = view
                .iter()
                .map(|item| (item.hash, item.key.clone(), item.value))
                .collect();
            assert_eq!(before, after, "{name}: the view changed");
            trie.check_invariants().unwrap();
        }
    }
}

/// Misses under a view copy nothing at all, in the bucket either.
#[test]
fn bucket_misses_under_a_view_copy_nothing() {
    let k = if cfg!(miri) { 40 } else { 5_000 };
    let mut trie = with_bucket(k);
    let view = trie.clone();
    for (name, op) in bucket_ops(k, 0)
        .into_iter()
        .filter(|(name, _)| name.contains("missing"))
    {
        let (found, miss) = cost(|| op(&mut trie));
        assert!(found, "{name}");
        assert_eq!((miss.nodes, miss.clones), (0, 0), "{name}");
    }
    // Another hash on the bucket's path (it reaches the bucket: the
    // levels between are compressed away).
    let (_, miss) = cost(|| trie.remove(BUCKET_HASH ^ 1, &0u64.to_be_bytes()));
    assert_eq!((miss.nodes, miss.clones), (0, 0));
    assert_eq!(trie.root.as_ref().map(Node::refs), Some(2));
    drop(view);
}

/// `iter_from` into a bucket starts at its first item and reads it in
/// key order; resuming at the next hash skips it whole.
#[test]
fn iter_from_a_bucket_reads_it_in_key_order() {
    let k = if cfg!(miri) { 40 } else { 3_000 };
    let trie = with_bucket(k);
    let (keys, cost) = cost(|| {
        trie.iter_from(BUCKET_HASH)
            .take_while(|item| item.hash == BUCKET_HASH)
            .map(|item| u64::from_be_bytes(item.key.as_slice().try_into().unwrap()))
            .collect::<Vec<_>>()
    });
    assert_eq!(keys, (0..k).collect::<Vec<_>>());
    assert_eq!((cost.nodes, cost.clones), (0, 0));
    let next = trie.iter_from(BUCKET_HASH + 1).next().map(|item| item.hash);
    let expected = trie
        .iter()
        .map(|item| item.hash)
        .find(|hash| *hash > BUCKET_HASH);
    assert_eq!(next, expected);
}

/// `(nodes, bytes)` of the branch nodes (buckets: none in these tests).
fn branch_bytes(trie: &Trie<Counted>) -> (usize, usize) {
    let mut out = (0, 0);
    super::visit_nodes(trie, &mut |node| {
        assert!(node.bucket().is_none());
        out.0 += 1;
        out.1 += node.allocated_bytes();
        true
    });
    out
}

/// Hash families a client can choose (xxh3 inverts for 8-byte keys, see
/// the review's `key_with_hash`), by name, for `n` items.
fn chosen_hashes(family: &str, n: u64) -> Vec<u64> {
    let spread = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| match family {
            // Pairs that differ in the last bit only: each pair was a
            // chain of one-child nodes down to level 10.
            "pairs" => (spread(i / 2) & !1) | (i & 1),
            // Groups of 4 sharing all but the last 4 bits.
            "last 4 bits" => (spread(i / 4) & !0xF) | (i % 4),
            // A spine per 20-bit prefix (distinct: odd multiples mod
            // 2^20): one item at each level below it and a child for the
            // rest, the most nodes per item there is.
            "spines" => {
                let (spine, depth) = (i / 8, (i % 8) as u32);
                let prefix = spine.wrapping_mul(0x9E37_79B1) & 0xF_FFFF;
                (prefix << 44) | (1 << (43 - 6 * depth))
            }
            // Everything in the root's first slot, spread below it.
            "one root slot" => spread(i) >> 6,
            _ => spread(i),
        })
        .collect()
}

/// The bound: every node but the root uses two slots or more, so n items
/// (no buckets) make N <= n nodes, and the nodes hold n items and N - 1
/// child handles: 32 N + 24 n + 8 (N - 1) < 64 n bytes for 24-byte items.
/// `Counted` is 40 bytes (a `Vec` key), so its bound is 80 n.
#[test]
fn node_bytes_are_bounded_whatever_the_hashes() {
    let n = if cfg!(miri) { 300 } else { 100_000 };
    let per_item_max = 32 + size_of::<Counted>() + 8;
    for family in ["spread", "pairs", "last 4 bits", "spines", "one root slot"] {
        let mut trie = Trie::default();
        for (key, hash) in (0..).zip(chosen_hashes(family, n)) {
            trie.insert(counted(hash, key));
        }
        trie.check_invariants().unwrap();
        let (nodes, bytes) = branch_bytes(&trie);
        eprintln!(
            "{family:<14} {nodes:>6} nodes ({:.3} per item), {:.1} B of nodes per item",
            nodes as f64 / n as f64,
            bytes as f64 / n as f64
        );
        assert!(nodes <= n as usize, "{family}: {nodes} nodes for {n} items");
        assert!(
            bytes <= per_item_max * n as usize,
            "{family}: {bytes} B of nodes for {n} items"
        );
    }
}

/// `(buckets, bytes)` of the bucket nodes, each counted as its node and
/// its array (a tree bucket counts as `usize::MAX / 4` bytes, to fail any
/// bound: none is expected where this is used).
fn bucket_bytes(trie: &Trie<Counted>) -> (usize, usize) {
    let mut out = (0, 0);
    super::visit_nodes(trie, &mut |node| {
        if let Some(bucket) = node.bucket() {
            out.0 += 1;
            out.1 += node.allocated_bytes();
            out.1 += bucket.array_bytes().unwrap_or(usize::MAX / 4);
        }
        true
    });
    out
}

/// Buckets of a few items (a client can make any number of them, each
/// family of colliding keys is free) are arrays: a tree's first leaf is a
/// full node of 16 slots, ~4x the accounted size of a pair of keys.
#[test]
fn small_buckets_cost_a_few_words_per_item() {
    let groups: u64 = if cfg!(miri) { 20 } else { 5_000 };
    for size in [2u64, 3, bucket::SMALL_MAX as u64] {
        let mut trie = Trie::default();
        for group in 0..groups {
            let hash = group.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for key in 0..size {
                trie.insert(counted(hash, key));
            }
        }
        trie.check_invariants().unwrap();
        let (buckets, bytes) = bucket_bytes(&trie);
        let items = (groups * size) as usize;
        eprintln!(
            "buckets of {size}: {buckets} buckets, {:.1} B of bucket per item",
            bytes as f64 / items as f64
        );
        assert_eq!(buckets, groups as usize);
        // The node (~72 B: header, hash, the array's handle) shared by two
        // items or more, and each item in the array (whose capacity, grown
        // by doubling from two, is at most 4/3 of its length here): ~76 B
        // per item for pairs, under 2 items' size + 48. A tree's first
        // leaf alone is over 500 B.
        let per_item_max = 2 * size_of::<Counted>() + 48;
        assert!(
            bytes <= per_item_max * items,
            "buckets of {size}: {bytes} B for {items} items"
        );
    }
}

/// A bucket becomes a tree past `SMALL_MAX` and an array again only at
/// `SMALL_MIN`: inserting and removing one key at the boundary changes
/// the form once, not at every operation.
#[test]
fn bucket_forms_change_with_hysteresis() {
    let form = |trie: &Trie<Counted>| {
        let mut found = None;
        super::visit_nodes(trie, &mut |node| {
            if let Some(bucket) = node.bucket() {
                found = Some((bucket.len(), bucket.is_tree()));
            }
            true
        });
        found
    };
    let max = bucket::SMALL_MAX as u64;
    let mut trie = Trie::default();
    for key in 0..max {
        trie.insert(counted(BUCKET_HASH, key));
    }
    assert_eq!(form(&trie), Some((bucket::SMALL_MAX, false)));
    trie.insert(counted(BUCKET_HASH, max));
    assert_eq!(form(&trie), Some((bucket::SMALL_MAX + 1, true)));
    for _ in 0..10 {
        trie.remove(BUCKET_HASH, &max.to_be_bytes());
        assert_eq!(form(&trie), Some((bucket::SMALL_MAX, true)));
        trie.insert(counted(BUCKET_HASH, max));
        assert_eq!(form(&trie), Some((bucket::SMALL_MAX + 1, true)));
        trie.check_invariants().unwrap();
    }
    for key in (bucket::SMALL_MIN as u64..=max).rev() {
        trie.remove(BUCKET_HASH, &key.to_be_bytes());
    }
    assert_eq!(form(&trie), Some((bucket::SMALL_MIN, false)));
    trie.check_invariants().unwrap();
    for key in 2..bucket::SMALL_MIN as u64 {
        trie.remove(BUCKET_HASH, &key.to_be_bytes());
    }
    assert_eq!(form(&trie), Some((2, false)));
    trie.remove(BUCKET_HASH, &1u64.to_be_bytes());
    assert_eq!(form(&trie), None, "a lone item leaves its bucket");
    trie.check_invariants().unwrap();
}
