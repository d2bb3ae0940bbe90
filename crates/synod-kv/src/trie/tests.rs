//! The trie against a model (a `BTreeMap` keyed by `(hash, key)`), with
//! hashes drawn from tiny sets so that collisions (buckets), long shared
//! prefixes (compressed paths) and the edge hashes 0 and `u64::MAX` are common; clones
//! taken along the way must keep their contents while the original
//! changes, and every item clone must be dropped exactly once.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

thread_local! {
    /// How many more `Item::clone`s succeed before one panics (to test
    /// that a panicking clone while copying a shared node leaks nothing
    /// and frees nothing twice).
    pub(super) static CLONES_BEFORE_PANIC: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The hashes of the items `Trie::prefetch` reached, in order.
    static PREFETCHED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Debug)]
pub(super) struct Item {
    pub(super) hash: u64,
    pub(super) key: Vec<u8>,
    pub(super) value: u32,
    /// One count per live item (clones included), to find leaks and
    /// double drops.
    pub(super) alive: Arc<()>,
}

impl Clone for Item {
    fn clone(&self) -> Self {
        match CLONES_BEFORE_PANIC.get() {
            usize::MAX => {}
            // Unwinds without the panic hook's message.
            0 => std::panic::resume_unwind(Box::new("clone asked to panic")),
            left => CLONES_BEFORE_PANIC.set(left - 1),
        }
        Item {
            hash: self.hash,
            key: self.key.clone(),
            value: self.value,
            alive: self.alive.clone(),
        }
    }
}

impl TrieItem for Item {
    fn trie_hash(&self) -> u64 {
        self.hash
    }

    fn trie_key(&self) -> &[u8] {
        &self.key
    }

    fn prefetch(&self) {
        PREFETCHED.with_borrow_mut(|seen| seen.push(self.hash));
    }
}

/// A prefetch walk ends at the item of every hash present (whatever the
/// shape: random hashes, shared prefixes, collisions in buckets, which it
/// does not enter), and at nothing for a hash absent; at most a group's
/// worth of hashes is walked.
#[test]
fn prefetch_walks_reach_the_items() {
    let mut trie = Trie::default();
    let mut hashes = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..20_000u32 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Some hashes share long prefixes with the one before.
        let hash = if i % 7 == 0 {
            hashes.last().map_or(x, |h: &u64| h ^ 1)
        } else {
            x
        };
        hashes.push(hash);
        trie.insert(Item {
            hash,
            key: i.to_be_bytes().to_vec(),
            value: i,
            alive: Arc::new(()),
        });
    }
    for group in hashes.chunks(PREFETCH_GROUP_MAX) {
        PREFETCHED.with_borrow_mut(Vec::clear);
        trie.prefetch(group);
        let mut seen = PREFETCHED.with_borrow(Clone::clone);
        seen.sort_unstable();
        let mut expected = group.to_vec();
        expected.sort_unstable();
        assert_eq!(seen, expected);
    }
    // An absent hash reaches at most the item a lookup would compare it
    // with; a longer list walks only a group.
    PREFETCHED.with_borrow_mut(Vec::clear);
    let absent: Vec<u64> = hashes.iter().map(|h| h.wrapping_add(1 << 20)).collect();
    trie.prefetch(&absent[..PREFETCH_GROUP_MAX]);
    assert!(PREFETCHED.with_borrow(Vec::len) <= PREFETCH_GROUP_MAX);
    PREFETCHED.with_borrow_mut(Vec::clear);
    trie.prefetch(&hashes[..64]);
    assert_eq!(PREFETCHED.with_borrow(Vec::len), PREFETCH_GROUP_MAX);
}

pub(super) type Model = BTreeMap<(u64, Vec<u8>), u32>;

pub(super) fn contents(trie: &Trie<Item>) -> Vec<(u64, Vec<u8>, u32)> {
    trie.iter()
        .map(|item| (item.hash, item.key.clone(), item.value))
        .collect()
}

pub(super) fn model_contents(model: &Model) -> Vec<(u64, Vec<u8>, u32)> {
    model
        .iter()
        .map(|((hash, key), value)| (*hash, key.clone(), *value))
        .collect()
}

/// Hashes that collide, share long prefixes, or sit at the edges.
fn hash() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Differ only in the last level's 4 bits: a node at level 10.
        0..4u64,
        Just(16u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX - 64),
        // Differ in the first level only.
        (0..4u64).prop_map(|high| high << 58),
        // Differ in the middle.
        (0..4u64).prop_map(|middle| (middle << 30) | 0x0123_0000_0000_0007),
        any::<u64>(),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0..3u8, 0..3)
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, Vec<u8>, u32),
    Remove(u64, Vec<u8>),
    Get(u64, Vec<u8>),
    GetMut(u64, Vec<u8>, u32),
    IterFrom(u64),
    /// Keeps a clone of the trie (and of the model) to check later.
    Clone,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (hash(), key(), any::<u32>()).prop_map(|(hash, key, value)| Op::Insert(hash, key, value)),
        3 => (hash(), key()).prop_map(|(hash, key)| Op::Remove(hash, key)),
        1 => (hash(), key()).prop_map(|(hash, key)| Op::Get(hash, key)),
        1 => (hash(), key(), any::<u32>()).prop_map(|(hash, key, value)| Op::GetMut(hash, key, value)),
        1 => hash().prop_map(Op::IterFrom),
        1 => Just(Op::Clone),
    ]
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let alive = Arc::new(());
    let item = |hash: u64, key: &[u8], value: u32| Item {
        hash,
        key: key.to_vec(),
        value,
        alive: alive.clone(),
    };
    let mut trie = Trie::default();
    let mut model = Model::new();
    let mut clones: Vec<(Trie<Item>, Model)> = Vec::new();
    for op in ops {
        match op {
            Op::Insert(hash, key, value) => {
                let replaced = trie.insert(item(*hash, key, *value)).map(|old| old.value);
                prop_assert_eq!(replaced, model.insert((*hash, key.clone()), *value));
            }
            Op::Remove(hash, key) => {
                let removed = trie.remove(*hash, key).map(|old| old.value);
                prop_assert_eq!(removed, model.remove(&(*hash, key.clone())));
            }
            Op::Get(hash, key) => {
                let found = trie.get(*hash, key).map(|item| item.value);
                prop_assert_eq!(found, model.get(&(*hash, key.clone())).copied());
            }
            Op::GetMut(hash, key, value) => {
                let found = trie.get_mut(*hash, key).map(|item| {
                    item.value = *value;
                });
                let expected = model.get_mut(&(*hash, key.clone())).map(|stored| {
                    *stored = *value;
                });
                prop_assert_eq!(found, expected);
            }
            Op::IterFrom(from) => {
                let got: Vec<_> = trie
                    .iter_from(*from)
                    .map(|item| (item.hash, item.key.clone()))
                    .collect();
                let expected: Vec<_> = model
                    .range((*from, Vec::new())..)
                    .map(|(at, _)| at.clone())
                    .collect();
                prop_assert_eq!(got, expected);
            }
            Op::Clone => clones.push((trie.clone(), model.clone())),
        }
        trie.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert_eq!(trie.len(), model.len());
        prop_assert_eq!(contents(&trie), model_contents(&model));
    }
    clones_kept_what_they_saw(trie, clones, &alive)
}

/// The end of a model run: every clone is still well formed and holds
/// what the model held when it was taken, and once the trie and its
/// clones are dropped every item they made is dropped, once.
pub(super) fn clones_kept_what_they_saw(
    trie: Trie<Item>,
    clones: Vec<(Trie<Item>, Model)>,
    alive: &Arc<()>,
) -> Result<(), TestCaseError> {
    for (clone, then) in &clones {
        clone.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert_eq!(contents(clone), model_contents(then));
    }
    drop((trie, clones));
    prop_assert_eq!(Arc::strong_count(alive), 1);
    Ok(())
}

/// `(label, datamap, nodemap, keys)` of every node, depth first (a
/// bucket's keys in its order).
fn shape(trie: &Trie<Item>) -> Vec<(u64, u64, u64, Vec<Vec<u8>>)> {
    fn walk(node: &Node<Item>, out: &mut Vec<(u64, u64, u64, Vec<Vec<u8>>)>) {
        let (datamap, nodemap) = node.maps();
        let keys = match node.bucket() {
            Some(bucket) => bucket.iter().map(|item| item.key.clone()).collect(),
            None => node.items().iter().map(|item| item.key.clone()).collect(),
        };
        out.push((node.label(), datamap, nodemap, keys));
        for child in node.children() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    if let Some(root) = &trie.root {
        walk(root, &mut out);
    }
    out
}

/// Cases per property: fewer under Miri, which checks the node code's
/// `unsafe` blocks (~1000x slower).
const CASES: u32 = if cfg!(miri) { 8 } else { 500 };

/// Items for the tests with many (fewer under Miri).
const MANY: u64 = if cfg!(miri) { 300 } else { 5_000 };

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn trie_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }

    /// The shape depends only on the set of items: any insertion order,
    /// and any items inserted and removed again, give the same nodes.
    #[test]
    fn shape_is_canonical(
        items in proptest::collection::btree_map((hash(), key()), any::<u32>(), 0..60),
        extra in proptest::collection::btree_set((hash(), key()), 0..30),
        seed in any::<u64>(),
    ) {
        let alive = Arc::new(());
        let item = |(hash, key): &(u64, Vec<u8>), value: u32| Item {
            hash: *hash,
            key: key.clone(),
            value,
            alive: alive.clone(),
        };
        let mut in_order = Trie::default();
        for (at, value) in &items {
            in_order.insert(item(at, *value));
        }
        // Another order, with the extra items mixed in and then removed.
        let mut shuffled: Vec<_> = items.iter().collect();
        let mut state = seed | 1;
        for index in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let mut other = Trie::default();
        for at in &extra {
            other.insert(item(at, 0));
        }
        for (at, value) in shuffled {
            other.insert(item(at, *value));
        }
        for at in &extra {
            if !items.contains_key(at) {
                other.remove(at.0, &at.1);
            }
        }
        other.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert_eq!(shape(&in_order), shape(&other));
    }
}

pub(super) fn plain(hash: u64, key: &[u8], alive: &Arc<()>) -> Item {
    Item {
        hash,
        key: key.to_vec(),
        value: 0,
        alive: alive.clone(),
    }
}

#[test]
fn edge_hashes_and_deep_collisions() {
    let alive = Arc::new(());
    let mut trie = Trie::default();
    // 0 and 1 differ in the very last bit: one node at level 10 below the
    // root. Three keys on hash 1 make a bucket. `u64::MAX` sits in the
    // last slot of the root.
    for (hash, key) in [
        (u64::MAX, &b"z"[..]),
        (1, b"b"),
        (0, b"a"),
        (1, b"a"),
        (1, b""),
    ] {
        assert!(trie.insert(plain(hash, key, &alive)).is_none());
        trie.check_invariants().unwrap();
    }
    let order: Vec<_> = trie
        .iter()
        .map(|item| (item.hash, item.key.clone()))
        .collect();
    assert_eq!(
        order,
        [
            (0, b"a".to_vec()),
            (1, b"".to_vec()),
            (1, b"a".to_vec()),
            (1, b"b".to_vec()),
            (u64::MAX, b"z".to_vec()),
        ]
    );
    assert_eq!(trie.iter_from(1).count(), 4);
    assert_eq!(trie.iter_from(2).count(), 1);
    assert_eq!(trie.iter_from(u64::MAX).count(), 1);
    assert!(trie.get(1, b"c").is_none());
    assert!(trie.get(2, b"a").is_none());
    assert_eq!(trie.get(1, b"a").map(|item| item.hash), Some(1));
    // Removing down to one item collapses everything into the root.
    for (hash, key) in [(1, &b"a"[..]), (1, b""), (u64::MAX, b"z"), (0, b"a")] {
        assert!(trie.remove(hash, key).is_some());
        trie.check_invariants().unwrap();
    }
    let root = trie.root.as_ref().unwrap();
    assert_eq!((root.items().len(), root.children().len()), (1, 0));
    assert!(trie.remove(1, b"b").is_some());
    assert!(trie.is_empty() && trie.root.is_none());
    drop(trie);
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[test]
fn a_clone_is_read_on_another_thread_while_the_original_changes() {
    let alive = Arc::new(());
    let mut trie = Trie::default();
    for index in 0..MANY {
        let hash = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        trie.insert(plain(hash, &index.to_le_bytes(), &alive));
    }
    let expected: Vec<u64> = trie.iter().map(|item| item.hash).collect();
    let view = trie.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..if cfg!(miri) { 2 } else { 20 } {
            seen = view.iter().map(|item| item.hash).collect();
        }
        view.check_invariants().unwrap();
        seen
    });
    for index in 0..MANY {
        let hash = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if index % 2 == 0 {
            trie.remove(hash, &index.to_le_bytes());
        } else {
            trie.insert(plain(hash, &index.to_le_bytes(), &alive));
        }
    }
    assert_eq!(reader.join().unwrap(), expected);
    trie.check_invariants().unwrap();
    assert_eq!(trie.len() as u64, MANY / 2);
    drop(trie);
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[test]
fn a_panicking_clone_leaks_nothing_and_frees_nothing_twice() {
    let alive = Arc::new(());
    let mut trie = Trie::default();
    // A root with an item in each of its 64 slots.
    for index in 0..64u64 {
        trie.insert(plain(index << 58, b"k", &alive));
    }
    let before = contents(&trie);
    // Writes under a view copy the root, cloning its items: make the
    // n-th clone panic, for a replacement (copy on write) and for a new
    // key in a taken slot (a split, then a rebuild of the copy).
    for writes_new_key in [false, true] {
        for clones in 0..70 {
            let view = trie.clone();
            let hash = (5 << 58) | u64::from(writes_new_key);
            CLONES_BEFORE_PANIC.set(clones);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                trie.insert(plain(hash, b"k", &alive));
            }));
            CLONES_BEFORE_PANIC.set(usize::MAX);
            trie.check_invariants().unwrap();
            view.check_invariants().unwrap();
            assert_eq!(contents(&view), before);
            if outcome.is_ok() && writes_new_key {
                // Enough clones to finish: undo the write.
                trie.remove(hash, b"k");
            }
            // A replacement by an equal item, or nothing, or undone.
            assert_eq!(contents(&trie), before);
        }
    }
    drop(trie);
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[test]
fn misses_under_a_view_copy_nothing() {
    let alive = Arc::new(());
    let mut trie = Trie::default();
    for index in 0..MANY {
        trie.insert(plain(
            index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            b"k",
            &alive,
        ));
    }
    let view = trie.clone();
    assert!(trie.remove(12345, b"k").is_none());
    assert!(trie.get_mut(12345, b"k").is_none());
    let (Some(root), Some(view_root)) = (&trie.root, &view.root) else {
        panic!("no root");
    };
    // Still the same root node, shared by both.
    assert_eq!(root.refs(), 2);
    assert!(std::ptr::eq(
        root.items().as_ptr(),
        view_root.items().as_ptr()
    ));
}

/// As above, in a bucket under a view: a write that copies the bucket's
/// tree path panics at each of its clones in turn; the view keeps what it
/// had and the trie holds either the old or the new contents, whole.
#[test]
fn a_panicking_clone_in_a_bucket_leaves_it_whole() {
    let alive = Arc::new(());
    let mut trie = Trie::default();
    let count: u64 = if cfg!(miri) { 40 } else { 300 };
    for index in 0..count {
        trie.insert(plain(7, &index.to_be_bytes(), &alive));
    }
    trie.insert(plain(8, b"other", &alive));
    let before = contents(&trie);
    for remove in [false, true] {
        let mut panicked = 0;
        for clones in 0..40 {
            let view = trie.clone();
            let key = if remove { 5u64 } else { count + 1 }.to_be_bytes();
            CLONES_BEFORE_PANIC.set(clones);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if remove {
                    trie.remove(7, &key).is_some()
                } else {
                    trie.insert(plain(7, &key, &alive)).is_none()
                }
            }));
            CLONES_BEFORE_PANIC.set(usize::MAX);
            panicked += usize::from(outcome.is_err());
            trie.check_invariants().unwrap();
            view.check_invariants().unwrap();
            assert_eq!(contents(&view), before);
            assert_eq!(trie.len(), trie.iter().count());
            if matches!(outcome, Ok(true)) {
                // Done: undo it for the next round.
                if remove {
                    trie.insert(plain(7, &key, &alive));
                } else {
                    trie.remove(7, &key);
                }
            }
            assert_eq!(contents(&trie), before);
        }
        // The write clones a leaf's items: the early rounds panic.
        assert!(panicked > 0, "no clone panicked (remove: {remove})");
    }
    drop(trie);
    assert_eq!(Arc::strong_count(&alive), 1);
}
