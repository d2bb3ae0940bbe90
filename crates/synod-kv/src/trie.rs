//! A persistent hash array mapped trie (CHAMP-style) keyed by a 64-bit
//! hash, most significant bits first: the keyspace's index of every key.
//!
//! ## Shape
//!
//! A node at level `L` branches on bits `63 - 6L ..= 58 - 6L` of the hash
//! (its *slot*, 0..64; level 10 has only the 4 lowest bits left, shifted to
//! slots 0, 4, .., 60). Each slot holds nothing, one item, or a child node
//! for the items that share the slot, found by two `u64` bitmaps
//! (`datamap`: slots holding an item; `nodemap`: slots holding a child);
//! a slot's position in the node's arrays is the number of set bits below
//! it. With random hashes a lookup reads ~log64(n) nodes: 3 for 100k keys,
//! 4 for 1M, against ~5 and ~6 levels of 16-wide B+ tree nodes.
//!
//! The shape is *canonical*: it depends only on the set of items, not on
//! the order they came in, and [`Trie::check_invariants`] checks it:
//!
//! - The root is a node at level 0. An item lives in the shallowest node
//!   whose slot it does not share with another item.
//! - The items that share a slot live in one child, at the level where
//!   their hashes first differ (*path compression*: the levels on the way
//!   where they all take the same slot get no node). So a non-root node
//!   always uses two slots or more, and each node records its level and
//!   the hash bits above it (its *label*, see [`label`]). Without this a
//!   client that chooses its keys' hashes (xxh3 inverts for 4-8 byte
//!   keys) could make each pair of keys a chain of 11 one-child nodes.
//! - Items whose whole 64-bit hashes are equal (a real collision, free to
//!   make with xxh3 for 17-32 byte keys) live in a *bucket*: a persistent
//!   B+ tree by key bytes ([`bucket`]), so that a client who makes k keys
//!   collide costs O(log k) per operation, not O(k).
//! - Removal restores the shape: a child left with one item hands it up
//!   to its parent's slot, and one left with a lone child is replaced by it.
//!
//! So every node but the root holds two entries or more: a trie of n items
//! has fewer than n nodes and buckets, whatever the hashes, and a lookup
//! reads at most 11 nodes and one bucket.
//!
//! ## Order
//!
//! Iteration is in `(hash, key)` order, exactly: the items below a node
//! share the hash bits above its level, and within the node slot `s` holds
//! only hashes whose next bits are `s`, so every hash under slot `s` is
//! smaller than every hash under slot `s + 1`. Visiting slots in
//! increasing order, each child before the next slot, is numeric hash
//! order; items with equal hashes sit in one bucket in key order. This is
//! the order `KEYS`, `SCAN` cursors, `RANDOMKEY` and snapshot bytes are
//! defined by, so it must never change.
//!
//! ## Memory and sharing
//!
//! Each node is one allocation: a 32-byte header (reference count, the two
//! maps and the label), then its items, then its child handles (see
//! [`node`], which holds all the `unsafe` code). Items are 16 bytes for the
//! keyspace, and there are ~0.2-0.3 nodes per key with random hashes, so
//! the trie costs ~27-30 B per key at 100k-1M keys (~35-38 with the
//! 24-byte items measured in `trie/bench.rs`; the B+ tree it replaced:
//! ~43 with those). With chosen hashes the worst is a node of one item and
//! one child per key: 32 + 16 + 8 = 56 B of node per key, the item's own
//! included (`trie/cost_tests.rs` bounds it by 64); a
//! colliding key costs its share of its bucket's tree and a key copy.
//!
//! Why 64-way: the node count swings with how full the bottom level is,
//! but averaged over 100k-10M keys a 32-way trie (with smaller maps) and
//! this one cost the same ~11 B per key on top of the items, and this one
//! is a level shallower. Cloning a trie shares its root (O(1)); a write
//! copies the shared nodes on its path (copy on write, like
//! `Arc::make_mut`) and leaves the others shared, so a clone taken on the
//! event loop can be read on another thread while writes go on.

mod bucket;
mod node;

use std::cmp::Ordering;
use std::fmt;

use bucket::Bucket;
pub(crate) use node::prefetch_address;
use node::{Edit, Node};

/// What the trie stores: an item that knows its hash and key. Items are
/// told apart by `(hash, key)` (the keyspace's hash is a function of the
/// key; tests pick theirs freely), and neither may change while the item
/// is in a trie.
pub(crate) trait TrieItem: Clone {
    fn trie_hash(&self) -> u64;
    fn trie_key(&self) -> &[u8];
    /// Asks the CPU to fetch what comparing the item's key reads (a hint;
    /// see [`Trie::prefetch`]). Nothing by default.
    fn prefetch(&self) {}
}

/// Hash bits a level branches on.
const BITS_PER_LEVEL: u32 = 6;
/// The deepest level: levels 0..=10 use up the 64 bits (10 x 6 + 4).
const LEVEL_MAX: u32 = 10;
/// Branch nodes on the longest path (one per level; a bucket below).
const DEPTH_MAX: usize = LEVEL_MAX as usize + 1;
/// The label bits that hold the level (the prefix never uses them: even
/// level 10's prefix stops at bit 4).
const LEVEL_BITS: u64 = 0xF;

/// The slot of `hash` at `level` (<= [`LEVEL_MAX`]): the next 6 bits
/// below the ones the levels above used, so that slot order is hash order.
fn slot(hash: u64, level: u32) -> u32 {
    debug_assert!(level <= LEVEL_MAX);
    // At level 10 the shift leaves 4 bits, in the slot's top bits.
    ((hash << (BITS_PER_LEVEL * level)) >> (64 - BITS_PER_LEVEL)) as u32
}

/// The hash bits the levels above `level` branch on, as a mask.
fn above(level: u32) -> u64 {
    debug_assert!(level <= LEVEL_MAX);
    // The complement of the bits from `level` down (all of them at level
    // 0, where no level is above): no branch on the hot path.
    !(u64::MAX >> (BITS_PER_LEVEL * level))
}

/// The label of a branch node at `level` whose items' hashes start like
/// `hash`: the bits above the level (its prefix), and the level in the
/// low bits (which the prefix never uses).
fn label(hash: u64, level: u32) -> u64 {
    (hash & above(level)) | u64::from(level)
}

fn level_of(label: u64) -> u32 {
    (label & LEVEL_BITS) as u32
}

/// The level at which two different hashes take different slots.
fn divergence(a: u64, b: u64) -> u32 {
    debug_assert_ne!(a, b);
    // Bits 63..4 are levels 0..9, six each; bits 3..0 are level 10.
    ((a ^ b).leading_zeros() / BITS_PER_LEVEL).min(LEVEL_MAX)
}

/// Whether every hash below `node` could be `hash`: a branch node's
/// prefix, a bucket's whole hash, is `hash`'s.
fn covers<T: TrieItem>(node: &Node<T>, hash: u64) -> bool {
    match node.bucket() {
        Some(bucket) => bucket.hash() == hash,
        None => {
            let label = node.label();
            (hash ^ label) & above(level_of(label)) == 0
        }
    }
}

/// A hash that starts as every hash below `node` does (a branch node's
/// prefix, zeros after it; a bucket's hash).
fn prefix_hash<T: TrieItem>(node: &Node<T>) -> u64 {
    match node.bucket() {
        Some(bucket) => bucket.hash(),
        None => node.label() & !LEVEL_BITS,
    }
}

/// The position, in the array that `map` describes, of the slot `bit`.
fn index(map: u64, bit: u64) -> usize {
    (map & (bit - 1)).count_ones() as usize
}

/// A persistent map from `(hash, key)` to items. See the module docs.
pub(crate) struct Trie<T> {
    /// `None` when empty (a trie of no keys holds no allocation);
    /// otherwise a branch node at level 0.
    root: Option<Node<T>>,
    len: usize,
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Trie { root: None, len: 0 }
    }
}

impl<T> Clone for Trie<T> {
    /// O(1): shares the root.
    fn clone(&self) -> Self {
        Trie {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<T: TrieItem + fmt::Debug> fmt::Debug for Trie<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: TrieItem> Trie<T> {
    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item with this hash and key.
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<&T> {
        get_in(self.root.as_ref()?, hash, key)
    }

    /// The item with this hash and key, writable. The caller must not
    /// change its hash or key (lookups would then miss it; memory safety
    /// does not depend on it). Copies the shared nodes on the path, only
    /// when the item is there.
    pub(crate) fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut T> {
        get_mut_in(self.root.as_mut()?, hash, key, false)
    }

    /// Asks the CPU to bring into the cache the memory that looking up
    /// (or inserting) each of `hashes` will read: the nodes on its path,
    /// the slot it ends in and the item there. The walks are interleaved,
    /// one step of each in turn, and a step reads only what the step
    /// before it asked for, so their cache misses overlap instead of
    /// following one another (with 100k-1M random keys, applying a SET
    /// was mostly waiting for two or three misses: a node below the top
    /// levels and the item's key). A hint: it changes nothing, and a
    /// lookup after it finds what it would have found without it.
    /// At most [`PREFETCH_GROUP_MAX`] hashes are walked; more are ignored.
    pub(crate) fn prefetch(&self, hashes: &[u64]) {
        let Some(root) = &self.root else {
            return;
        };
        let hashes = &hashes[..hashes.len().min(PREFETCH_GROUP_MAX)];
        let mut probes = [Probe::Node(root); PREFETCH_GROUP_MAX];
        // Each step moves a probe down one slot or one node: a walk ends
        // within two steps per level.
        for _ in 0..2 * (DEPTH_MAX + 1) {
            let mut walking = false;
            for (probe, hash) in probes.iter_mut().zip(hashes) {
                walking |= probe.step(*hash);
            }
            if !walking {
                break;
            }
        }
    }

    /// Stores `item`, replacing and returning the item with its key if
    /// there is one (one walk down the trie either way).
    pub(crate) fn insert(&mut self, item: T) -> Option<T> {
        let hash = item.trie_hash();
        let replaced = match &mut self.root {
            Some(root) => insert_in(root, hash, item),
            None => {
                let bit = 1 << slot(hash, 0);
                self.root = Some(Node::from_parts(label(hash, 0), bit, 0, [item], []));
                None
            }
        };
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes and returns the item with this hash and key. Copies the
    /// shared nodes on the path, only when the item is there.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) -> Option<T> {
        let removed = remove_in(self.root.as_mut()?, hash, key, false)?;
        self.len -= 1;
        if self.len == 0 {
            // The root is left with no slot: free it.
            self.root = None;
        }
        Some(removed)
    }

    /// Every item in `(hash, key)` order.
    pub(crate) fn iter(&self) -> Iter<'_, T> {
        self.iter_from(0)
    }

    /// Every item whose hash is `hash` or more, in `(hash, key)` order.
    /// Descends to the first one (O(depth), and O(log k) into a bucket of
    /// k) rather than skipping the ones before it.
    pub(crate) fn iter_from(&self, hash: u64) -> Iter<'_, T> {
        let mut iter = Iter {
            frames: [Frame::UNUSED; DEPTH_MAX],
            depth: 0,
            bucket: None,
        };
        let mut next = self.root.as_ref();
        while let Some(node) = next {
            next = None;
            if let Some(bucket) = node.bucket() {
                // Reached through `hash`'s slot: all of it or none.
                if bucket.hash() >= hash {
                    iter.bucket = Some(Box::new(bucket.iter()));
                }
                break;
            }
            let label = node.label();
            let level = level_of(label);
            let (datamap, nodemap) = node.maps();
            let mask = above(level);
            // The node's prefix against `hash`'s bits above its level
            // (they can differ in the levels compression skipped).
            let pending = match (label & mask).cmp(&(hash & mask)) {
                // Every hash below is greater: all of the node.
                Ordering::Greater => datamap | nodemap,
                // Every hash below is smaller: none of it.
                Ordering::Less => 0,
                // The slots after `hash`'s are all wanted; `hash`'s own
                // slot depends on what it holds.
                Ordering::Equal => {
                    let bit = 1u64 << slot(hash, level);
                    let after = (datamap | nodemap) & !(bit | (bit - 1));
                    if datamap & bit != 0 {
                        let item = &node.items()[index(datamap, bit)];
                        after | if item.trie_hash() >= hash { bit } else { 0 }
                    } else {
                        if nodemap & bit != 0 {
                            next = Some(&node.children()[index(nodemap, bit)]);
                        }
                        after
                    }
                }
            };
            iter.frames[iter.depth] = Frame::of(node, pending);
            iter.depth += 1;
        }
        iter
    }

    /// Checks the shape the module docs describe: every item in its
    /// slot, labels, maps and buckets well formed, the shape canonical,
    /// the count right. Costs O(items); for tests and the simulator.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let Some(root) = &self.root else {
            return match self.len {
                0 => Ok(()),
                len => Err(format!("empty trie counts {len} items")),
            };
        };
        if root.bucket().is_some() || root.label() != 0 {
            return Err("the root is not a node at level 0".into());
        }
        let counted = check_node(root, None, 0)?;
        if counted != self.len || counted == 0 {
            return Err(format!(
                "trie counts {} items but holds {counted}",
                self.len
            ));
        }
        Ok(())
    }
}

fn get_in<'a, T: TrieItem>(mut node: &'a Node<T>, hash: u64, key: &[u8]) -> Option<&'a T> {
    loop {
        if let Some(bucket) = node.bucket() {
            return if bucket.hash() == hash {
                bucket.get(key)
            } else {
                None
            };
        }
        // The levels compression skipped are not compared here: a hash
        // that differs there reaches an item or a bucket of another hash,
        // which the comparisons below reject.
        let (datamap, nodemap) = node.maps();
        let bit = 1u64 << slot(hash, level_of(node.label()));
        if datamap & bit != 0 {
            let item = &node.items()[index(datamap, bit)];
            // The hash first: it is in the node, the key behind a pointer.
            return (item.trie_hash() == hash && item.trie_key() == key).then_some(item);
        }
        if nodemap & bit == 0 {
            return None;
        }
        node = &node.children()[index(nodemap, bit)];
    }
}

/// `present`: the item is known to be below `node` (then shared nodes
/// are copied without looking first).
fn get_mut_in<'a, T: TrieItem>(
    node: &'a mut Node<T>,
    hash: u64,
    key: &[u8],
    present: bool,
) -> Option<&'a mut T> {
    // A miss must not copy shared nodes: look before writing, once, at the
    // first shared node of the path. `present` stays false through unique
    // nodes (writing them is free) so that a shared one below still looks.
    let unique = node.is_unique();
    let present = present || (!unique && get_in(node, hash, key).is_some());
    if !present && !unique {
        return None;
    }
    if let Some(bucket) = node.bucket() {
        if bucket.hash() != hash {
            return None;
        }
        // The bucket looks before it writes too (its tree may be shared).
        return node.bucket_mut().get_mut(key);
    }
    let (datamap, nodemap) = node.maps();
    let bit = 1u64 << slot(hash, level_of(node.label()));
    if datamap & bit != 0 {
        let at = index(datamap, bit);
        let item = &node.items()[at];
        if item.trie_hash() != hash || item.trie_key() != key {
            return None;
        }
        return node.make_mut().0.get_mut(at);
    }
    if nodemap & bit == 0 {
        return None;
    }
    let child = node.make_mut().1.get_mut(index(nodemap, bit))?;
    get_mut_in(child, hash, key, present)
}

/// The most hashes one [`Trie::prefetch`] walks: about as many misses as
/// a core keeps in flight, and few enough lines that they are still cached
/// when the commands that asked for them run.
pub(crate) const PREFETCH_GROUP_MAX: usize = 16;

/// Where one walk of [`Trie::prefetch`] stands: at a node whose header was
/// asked for, or at a slot of a node whose line was asked for.
enum Probe<'a, T> {
    Node(&'a Node<T>),
    Item(&'a Node<T>, usize),
    Child(&'a Node<T>, usize),
    Done,
}

// By hand: a derive would ask `T: Copy`, and a probe holds only references.
impl<T> Clone for Probe<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Probe<'_, T> {}

impl<T: TrieItem> Probe<'_, T> {
    /// Takes one step toward `hash`, asking for what the next one reads;
    /// false once the walk is over.
    fn step(&mut self, hash: u64) -> bool {
        match *self {
            Probe::Done => false,
            Probe::Node(node) => {
                *self = Probe::Done;
                if node.bucket().is_some() || !covers(node, hash) {
                    return false;
                }
                let (datamap, nodemap) = node.maps();
                let bit = 1u64 << slot(hash, level_of(node.label()));
                if datamap & bit != 0 {
                    let at = index(datamap, bit);
                    node.prefetch_item(at);
                    *self = Probe::Item(node, at);
                } else if nodemap & bit != 0 {
                    let at = index(nodemap, bit);
                    node.prefetch_child(at);
                    *self = Probe::Child(node, at);
                }
                !matches!(self, Probe::Done)
            }
            Probe::Item(node, at) => {
                *self = Probe::Done;
                if let Some(item) = node.items().get(at) {
                    item.prefetch();
                }
                false
            }
            Probe::Child(node, at) => {
                *self = Probe::Done;
                let Some(child) = node.children().get(at) else {
                    return false;
                };
                child.prefetch();
                *self = Probe::Node(child);
                true
            }
        }
    }
}

/// Inserts into the branch node `node`, whose prefix `hash` has.
fn insert_in<T: TrieItem>(node: &mut Node<T>, hash: u64, item: T) -> Option<T> {
    debug_assert!(covers(node, hash));
    let (datamap, nodemap) = node.maps();
    let bit = 1u64 << slot(hash, level_of(node.label()));
    if datamap & bit != 0 {
        let at = index(datamap, bit);
        let existing = &node.items()[at];
        let existing_hash = existing.trie_hash();
        if existing_hash == hash && existing.trie_key() == item.trie_key() {
            return Some(std::mem::replace(&mut node.make_mut().0[at], item));
        }
        // Two items share the slot: they move down into a new child. The
        // one in the node is cloned, then dropped with the old slot (one
        // reference count each way for an `Entry`): cheaper to reason
        // about than moving it out of a node being rebuilt.
        let child = pair(existing.clone(), existing_hash, item, hash);
        let child_at = index(nodemap, bit);
        node.rebuild(
            datamap & !bit,
            nodemap | bit,
            Edit::Remove(at),
            Edit::Insert(child_at, child),
        );
        return None;
    }
    if nodemap & bit != 0 {
        let at = index(nodemap, bit);
        let child = &node.children()[at];
        if !covers(child, hash) {
            // `hash` leaves the child's prefix in a level compression
            // skipped: a new node at that level holds both. The handle
            // is cloned (a count), then the old one dropped.
            let split = split(child.clone(), item, hash);
            node.make_mut().1[at] = split;
            return None;
        }
        let child = &mut node.make_mut().1[at];
        if child.bucket().is_some() {
            return child.bucket_mut().insert(item);
        }
        return insert_in(child, hash, item);
    }
    let at = index(datamap, bit);
    node.rebuild(datamap | bit, nodemap, Edit::Insert(at, item), Edit::Keep);
    None
}

/// The node holding `a` and `b` (different keys, sharing a slot): a
/// bucket if their hashes are equal, else a node at the level where they
/// differ (no node for the levels they share: see the module docs).
fn pair<T: TrieItem>(a: T, a_hash: u64, b: T, b_hash: u64) -> Node<T> {
    if a_hash == b_hash {
        return Node::new_bucket(Bucket::pair(a, b));
    }
    let level = divergence(a_hash, b_hash);
    let (a_slot, b_slot) = (slot(a_hash, level), slot(b_hash, level));
    let datamap = (1 << a_slot) | (1 << b_slot);
    let items = if a_slot < b_slot { [a, b] } else { [b, a] };
    Node::from_parts(label(a_hash, level), datamap, 0, items, [])
}

/// The node holding `child` and `item` (of hash `hash`, which `child`
/// does not cover though they share a slot): at the level where `hash`
/// and the child's prefix differ, above the child's.
fn split<T: TrieItem>(child: Node<T>, item: T, hash: u64) -> Node<T> {
    let child_hash = prefix_hash(&child);
    let level = divergence(hash, child_hash);
    debug_assert!(child.bucket().is_some() || level < level_of(child.label()));
    let (item_bit, child_bit) = (1 << slot(hash, level), 1 << slot(child_hash, level));
    Node::from_parts(label(hash, level), item_bit, child_bit, [item], [child])
}

/// Removes from the branch node `node`. `present`: as for
/// [`get_mut_in`].
fn remove_in<T: TrieItem>(node: &mut Node<T>, hash: u64, key: &[u8], present: bool) -> Option<T> {
    let (datamap, nodemap) = node.maps();
    let bit = 1u64 << slot(hash, level_of(node.label()));
    if datamap & bit != 0 {
        let at = index(datamap, bit);
        let item = &node.items()[at];
        if item.trie_hash() != hash || item.trie_key() != key {
            return None;
        }
        return node
            .rebuild(datamap & !bit, nodemap, Edit::Remove(at), Edit::Keep)
            .0;
    }
    if nodemap & bit == 0 {
        return None;
    }
    let child_at = index(nodemap, bit);
    // A miss must not copy shared nodes: look before writing (see
    // `get_mut_in`: uniqueness lets this node be written, it does not say
    // the item is there).
    let unique = node.is_unique();
    let present = present || (!unique && get_in(&node.children()[child_at], hash, key).is_some());
    if !present && !unique {
        return None;
    }
    let child = &mut node.make_mut().1[child_at];
    let removed = match child.bucket() {
        // Look before writing: the bucket node may be shared even where
        // this node is not.
        Some(bucket) if bucket.hash() != hash || bucket.get(key).is_none() => return None,
        Some(_) => child.bucket_mut().remove(key)?,
        None => remove_in(child, hash, key, present)?,
    };
    // A child left with one entry goes (canonical shape): a lone item
    // moves up into the child's slot, a lone grandchild takes the child's
    // place. Moved out (the removal left the child unique), not cloned:
    // no item code runs once the removal has changed the child, so a
    // panic cannot leave a one-entry child or a wrong `len` behind.
    let lone = match child.bucket() {
        Some(bucket) if bucket.len() == 1 => child.bucket_mut().take_lone(),
        Some(_) => None,
        None => match (child.items().len(), child.children().len()) {
            (1, 0) => child.rebuild(0, 0, Edit::Remove(0), Edit::Keep).0,
            (0, 1) => {
                // A handle clone (a count), then the child and its own
                // handle on the grandchild are dropped.
                let grandchild = child.children()[0].clone();
                *child = grandchild;
                None
            }
            _ => None,
        },
    };
    if let Some(item) = lone {
        let at = index(datamap, bit);
        node.rebuild(
            datamap | bit,
            nodemap & !bit,
            Edit::Insert(at, item),
            Edit::Remove(child_at),
        );
    }
    Some(removed)
}

/// The hash bits a slot stands for at `level`, in place (at level 10, the
/// last 4 bits, kept in the slot's top bits).
fn slot_bits(slot: u32, level: u32) -> u64 {
    if level == LEVEL_MAX {
        u64::from(slot) >> 2
    } else {
        u64::from(slot) << (64 - BITS_PER_LEVEL * (level + 1))
    }
}

/// Checks the node below a slot of a node at `parent_level` (`None` for
/// the root), where every hash starts with `known`'s bits down to that
/// slot; returns how many items it holds in all.
fn check_node<T: TrieItem>(
    node: &Node<T>,
    parent_level: Option<u32>,
    known: u64,
) -> Result<usize, String> {
    // The bits the parent's prefix and slot fix.
    let known_mask = match parent_level {
        None => 0,
        Some(LEVEL_MAX) => u64::MAX,
        Some(level) => above(level + 1),
    };
    if let Some(bucket) = node.bucket() {
        let Some(parent_level) = parent_level else {
            return Err("the root is a bucket".into());
        };
        bucket.check()?;
        if (bucket.hash() ^ known) & known_mask != 0 {
            return Err(format!(
                "a bucket below level {parent_level} under another prefix"
            ));
        }
        let (datamap, nodemap) = node.maps();
        if (datamap & nodemap) == 0 || !node.items().is_empty() || !node.children().is_empty() {
            return Err("a bucket with a branch node's maps or arrays".into());
        }
        return Ok(bucket.len());
    }
    let label = node.label();
    let level = level_of(label);
    let (datamap, nodemap) = node.maps();
    let (items, children) = (node.items(), node.children());
    if level > LEVEL_MAX || parent_level.is_some_and(|parent| level <= parent) {
        return Err(format!("a node at level {level} below {parent_level:?}"));
    }
    let prefix = label & !LEVEL_BITS;
    if prefix & !above(level) != 0 {
        return Err(format!("level {level}: a label with bits below its level"));
    }
    if (prefix ^ known) & known_mask != 0 {
        return Err(format!(
            "level {level}: a prefix its parent does not lead to"
        ));
    }
    if datamap & nodemap != 0 {
        return Err(format!("level {level}: a slot holds an item and a child"));
    }
    if level == LEVEL_MAX && (datamap | nodemap) & !0x1111_1111_1111_1111 != 0 {
        return Err("level 10: a slot with bits it does not have".into());
    }
    // Canonical: a node below the root exists where its items' hashes
    // first differ, so it uses two slots or more.
    if parent_level.is_some() && items.len() + children.len() < 2 {
        return Err(format!("level {level}: a node of one entry"));
    }
    if parent_level.is_none() && items.len() + children.len() == 0 {
        return Err("an empty root".into());
    }
    for item in items {
        let hash = item.trie_hash();
        if (hash ^ prefix) & above(level) != 0 {
            return Err(format!("level {level}: an item under another prefix"));
        }
        let bit = 1u64 << slot(hash, level);
        if datamap & bit == 0 || !std::ptr::eq(&items[index(datamap, bit)], item) {
            return Err(format!("level {level}: an item out of its slot"));
        }
    }
    let mut total = items.len();
    let mut slots = nodemap;
    for child in children {
        let slot_at = slots.trailing_zeros();
        slots &= slots - 1;
        total += check_node(child, Some(level), prefix | slot_bits(slot_at, level))?;
    }
    Ok(total)
}

/// Items in `(hash, key)` order (see the module docs), from a stack of
/// the nodes on the path to the next one (and the bucket being read, if
/// any): no allocation outside buckets.
pub(crate) struct Iter<'a, T> {
    /// The branch nodes of the path (`depth` of them, at increasing
    /// levels).
    frames: [Frame<'a, T>; DEPTH_MAX],
    depth: usize,
    /// The bucket below the last frame being read: its items come
    /// before the frame's remaining slots. Boxed: the tree's iterator is
    /// large, and most iterations never meet a bucket.
    bucket: Option<Box<bucket::Iter<'a, T>>>,
}

/// A branch node being iterated, with what `next` reads of it at hand.
struct Frame<'a, T> {
    items: &'a [T],
    children: &'a [Node<T>],
    datamap: u64,
    nodemap: u64,
    /// The slots not visited yet.
    pending: u64,
}

impl<T> Clone for Frame<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Frame<'_, T> {}

impl<'a, T> Frame<'a, T> {
    const UNUSED: Frame<'a, T> = Frame {
        items: &[],
        children: &[],
        datamap: 0,
        nodemap: 0,
        pending: 0,
    };

    fn of(node: &'a Node<T>, pending: u64) -> Frame<'a, T> {
        let (datamap, nodemap) = node.maps();
        Frame {
            items: node.items(),
            children: node.children(),
            datamap,
            nodemap,
            pending,
        }
    }
}

impl<'a, T: TrieItem> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(bucket) = &mut self.bucket {
                if let Some(item) = bucket.next() {
                    return Some(item);
                }
                self.bucket = None;
            }
            let top = self.depth.checked_sub(1)?;
            let frame = &mut self.frames[top];
            let pending = frame.pending;
            if pending == 0 {
                self.depth = top;
                continue;
            }
            // The lowest slot left, then the rest.
            let bit = pending & pending.wrapping_neg();
            frame.pending = pending & !bit;
            if frame.datamap & bit != 0 {
                return frame.items.get(index(frame.datamap, bit));
            }
            let at = index(frame.nodemap, bit);
            let children = frame.children;
            let child = children.get(at)?;
            // The next sibling's header is read after this child's items:
            // ask for it now, so that its cache miss overlaps them.
            if let Some(sibling) = children.get(at + 1) {
                sibling.prefetch();
            }
            if let Some(bucket) = child.bucket() {
                self.bucket = Some(Box::new(bucket.iter()));
                continue;
            }
            let (datamap, nodemap) = child.maps();
            // Its items are read in turn from here on (a full walk, as a
            // snapshot's, reads each one's key and value): asking for all
            // of them now overlaps their cache misses instead of taking
            // one per item (a million keys with 100-byte values: each
            // record is a miss).
            for item in child.items() {
                item.prefetch();
            }
            // A child is deeper than its parent, so the stack (one frame
            // per level) has room: indexing asserts it.
            self.frames[top + 1] = Frame::of(child, datamap | nodemap);
            self.depth = top + 2;
        }
    }
}

impl<T: TrieItem> std::iter::FusedIterator for Iter<'_, T> {}

/// Visits the trie's nodes depth first, for tests that count or measure
/// them; `visit` returns whether to descend into the node's children.
#[cfg(test)]
fn visit_nodes<T>(trie: &Trie<T>, visit: &mut dyn FnMut(&Node<T>) -> bool) {
    fn walk<T>(node: &Node<T>, visit: &mut dyn FnMut(&Node<T>) -> bool) {
        if visit(node) {
            for child in node.children() {
                walk(child, visit);
            }
        }
    }
    if let Some(root) = &trie.root {
        walk(root, visit);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod review_tests;

#[cfg(test)]
mod cost_tests;

#[cfg(test)]
mod bench;
