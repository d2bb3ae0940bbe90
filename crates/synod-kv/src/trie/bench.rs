//! Measurements of the trie against the B+ tree the keyspace used before
//! (`imbl::OrdMap` of 24-byte entries ordered by `(hash, key)`): ns per
//! operation with random probes, and heap bytes per key, at 100k and 1M
//! keys of 100-byte values. Not a test (timings vary with the machine):
//! ignored by default, run in release mode, alone, so that the heap
//! counts see nothing else:
//!
//! ```text
//! cargo test -p synod-kv --release --lib trie::bench -- --ignored --nocapture --test-threads=1
//! ```

use std::cmp::Ordering;
use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use equivalent::{Comparable, Equivalent};
use imbl::OrdMap;

use super::{Node, Trie};
use crate::entry::{order_hash, Entry};
use crate::value::Value;

/// An entry ordered by `(hash, key)`, as the B+ tree held them.
#[derive(Clone)]
struct Ordered(Entry);

impl PartialEq for Ordered {
    fn eq(&self, other: &Ordered) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Ordered) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Ordered) -> Ordering {
        (self.0.hash(), self.0.key()).cmp(&(other.0.hash(), other.0.key()))
    }
}

/// A borrowed `(hash, key)` to search the tree without allocating.
struct Probe<'a> {
    hash: u64,
    key: &'a [u8],
}

impl Equivalent<Ordered> for Probe<'_> {
    fn equivalent(&self, other: &Ordered) -> bool {
        self.hash == other.0.hash() && self.key == other.0.key()
    }
}

impl Comparable<Ordered> for Probe<'_> {
    fn compare(&self, other: &Ordered) -> Ordering {
        (self.hash, self.key).cmp(&(other.0.hash(), other.0.key()))
    }
}

type Tree = OrdMap<Ordered, ()>;

/// Bytes the allocator hands out now (glibc's count, chunk overheads
/// included: what the process pays, not what was asked for).
fn heap_bytes() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

/// xorshift64*: fixed-seed probes, the same for both structures.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound as u64) as usize
    }
}

fn entries(prefix: &str, count: usize) -> Vec<Entry> {
    let value = Bytes::from(vec![b'v'; 100]);
    (0..count)
        .map(|index| {
            let key = format!("{prefix}:{index:012}");
            Entry::new(key.as_bytes(), Value::Str(value.clone()), None)
        })
        .collect()
}

fn shuffle<X>(items: &mut [X], rng: &mut Rng) {
    for index in (1..items.len()).rev() {
        items.swap(index, rng.below(index + 1));
    }
}

/// ns per operation of `ops` calls of `op`.
fn time(ops: usize, mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for index in 0..ops {
        op(index);
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn trie_allocated_bytes(trie: &Trie<Entry>) -> (usize, usize) {
    fn walk(node: &Node<Entry>, totals: &mut (usize, usize)) {
        totals.0 += 1;
        totals.1 += node.allocated_bytes();
        for child in node.children() {
            walk(child, totals);
        }
    }
    let mut totals = (0, 0);
    if let Some(root) = &trie.root {
        walk(root, &mut totals);
    }
    totals
}

fn row(what: &str, trie_ns: f64, tree_ns: f64) {
    println!(
        "  {what:<38} trie {trie_ns:>8.1}   imbl {tree_ns:>8.1}   ({:.2}x)",
        tree_ns / trie_ns
    );
}

fn compare(count: usize) {
    const PROBES: usize = 1_000_000;
    const FRESH: usize = 100_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut stored = entries("key", count);
    shuffle(&mut stored, &mut rng);
    let fresh = entries("new", FRESH);
    let probes: Vec<usize> = (0..PROBES).map(|_| rng.below(count)).collect();
    let starts: Vec<u64> = (0..PROBES).map(|_| rng.0.wrapping_mul(31)).collect();
    println!("{count} keys (ns per operation, random probes):");

    // Built in a random order, as a replica applying writes would.
    let heap = heap_bytes();
    let mut trie = Trie::default();
    let trie_build = time(count, |index| {
        black_box(trie.insert(stored[index].clone()));
    });
    let trie_heap = heap_bytes() - heap;
    let heap = heap_bytes();
    let mut tree = Tree::new();
    let tree_build = time(count, |index| {
        black_box(tree.insert(Ordered(stored[index].clone()), ()));
    });
    let tree_heap = heap_bytes() - heap;
    row("insert new (building)", trie_build, tree_build);

    let get_trie = time(PROBES, |index| {
        let entry = &stored[probes[index]];
        black_box(trie.get(entry.hash(), entry.key()));
    });
    let get_tree = time(PROBES, |index| {
        let entry = &stored[probes[index]];
        let probe = Probe {
            hash: entry.hash(),
            key: entry.key(),
        };
        black_box(tree.get_key_value(&probe));
    });
    row("get", get_trie, get_tree);

    let hashed_trie = time(PROBES, |index| {
        let key = stored[probes[index]].key();
        black_box(trie.get(order_hash(key), key));
    });
    let hashed_tree = time(PROBES, |index| {
        let key = stored[probes[index]].key();
        let probe = Probe {
            hash: order_hash(key),
            key,
        };
        black_box(tree.get_key_value(&probe));
    });
    row("get, hashing the key", hashed_trie, hashed_tree);

    let replace_trie = time(PROBES, |index| {
        black_box(trie.insert(stored[probes[index]].clone()));
    });
    let replace_tree = time(PROBES, |index| {
        black_box(tree.insert(Ordered(stored[probes[index]].clone()), ()));
    });
    row("insert replacing", replace_trie, replace_tree);
    // What `Keyspace::put` did: a lookup for the old entry, then insert.
    let put_tree = time(PROBES, |index| {
        let entry = &stored[probes[index]];
        let probe = Probe {
            hash: entry.hash(),
            key: entry.key(),
        };
        black_box(tree.get_key_value(&probe));
        black_box(tree.insert(Ordered(entry.clone()), ()));
    });
    row(
        "put (trie: insert; imbl: get+insert)",
        replace_trie,
        put_tree,
    );

    // As `Store::apply_batch` does: each group of 16 is prefetched (its
    // walks interleaved), then inserted. The imbl column is the plain
    // insert of the row above, for the ratio.
    let hashes: Vec<u64> = probes.iter().map(|at| stored[*at].hash()).collect();
    let grouped_trie = time(PROBES, |index| {
        if index.is_multiple_of(super::PREFETCH_GROUP_MAX) {
            let end = (index + super::PREFETCH_GROUP_MAX).min(PROBES);
            trie.prefetch(&hashes[index..end]);
        }
        black_box(trie.insert(stored[probes[index]].clone()));
    });
    row(
        "insert replacing, prefetched by 16 (vs trie)",
        grouped_trie,
        replace_trie,
    );

    let new_trie = time(FRESH, |index| {
        black_box(trie.insert(fresh[index].clone()));
    });
    let new_tree = time(FRESH, |index| {
        black_box(tree.insert(Ordered(fresh[index].clone()), ()));
    });
    row("insert new (into the full one)", new_trie, new_tree);
    let remove_trie = time(FRESH, |index| {
        let entry = &fresh[index];
        black_box(trie.remove(entry.hash(), entry.key()));
    });
    let remove_tree = time(FRESH, |index| {
        let entry = &fresh[index];
        let probe = Probe {
            hash: entry.hash(),
            key: entry.key(),
        };
        black_box(tree.remove_with_key(&probe));
    });
    row("remove", remove_trie, remove_tree);

    let scan_trie = time(PROBES / 10, |index| {
        black_box(trie.iter_from(starts[index]).take(10).count());
    });
    let scan_tree = time(PROBES / 10, |index| {
        let from = Probe {
            hash: starts[index],
            key: &[],
        }..;
        black_box(tree.range(from).take(10).count());
    });
    row("iter_from, 10 items (a SCAN page)", scan_trie, scan_tree);
    let all_trie = time(1, |_| {
        black_box(trie.iter().count());
    }) / count as f64;
    let all_tree = time(1, |_| {
        black_box(tree.iter().count());
    }) / count as f64;
    row("iterate everything (per item)", all_trie, all_tree);
    // As a snapshot or KEYS does: each entry's record is read too.
    let keys_trie = time(1, |_| {
        black_box(trie.iter().map(|entry| entry.key().len()).sum::<usize>());
    }) / count as f64;
    let keys_tree = time(1, |_| {
        black_box(tree.keys().map(|entry| entry.0.key().len()).sum::<usize>());
    }) / count as f64;
    row("iterate everything, reading keys", keys_trie, keys_tree);

    // A write right after a view: copies the path, and dropping the view
    // frees the old one.
    let view_trie = time(PROBES / 10, |index| {
        let view = trie.clone();
        black_box(trie.insert(stored[probes[index]].clone()));
        drop(view);
    });
    let view_tree = time(PROBES / 10, |index| {
        let view = tree.clone();
        black_box(tree.insert(Ordered(stored[probes[index]].clone()), ()));
        drop(view);
    });
    row("view, then insert replacing", view_trie, view_tree);

    let (nodes, allocated) = trie_allocated_bytes(&trie);
    println!(
        "  heap per key (glibc, chunks included): trie {:.1} B, imbl {:.1} B",
        trie_heap as f64 / count as f64,
        tree_heap as f64 / count as f64,
    );
    println!(
        "  trie: {nodes} nodes ({:.3} per key), {:.1} B per key asked of the allocator",
        nodes as f64 / count as f64,
        allocated as f64 / count as f64,
    );
    assert_eq!(trie.len(), tree.len());
}

#[test]
#[ignore = "a measurement: run in release mode, alone (see the module docs)"]
fn trie_against_imbl() {
    for count in [100_000, 1_000_000] {
        compare(count);
    }
}
