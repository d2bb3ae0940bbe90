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
//! it. Items whose whole 64-bit hashes are equal (a real collision) live
//! at level 11 in a *bucket*, sorted by key bytes. So a lookup reads at
//! most 12 nodes, and with random hashes ~log64(n) of them: 3 for 100k
//! keys, 4 for 1M, against ~5 and ~6 levels of 16-wide B+ tree nodes.
//!
//! The shape is *canonical*: an item lives in the shallowest node whose
//! slot it does not share with another item, and a node exists for a slot
//! exactly when at least two items share it (removal pulls a lone item
//! back up, node by node). It depends only on the set of items, not on the
//! order they came in; [`Trie::check_invariants`] checks it.
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
//! Each node is one allocation: a 24-byte header (reference count and the
//! two maps), then its items, then its child handles (see [`node`], which
//! holds all the `unsafe` code). Items are 24 bytes for the keyspace, and
//! there are ~0.2-0.3 nodes per key, so the trie costs ~33-36 B per key at
//! 100k-1M keys (the B+ tree it replaced: ~43; see `trie/bench.rs`).
//!
//! Why 64-way: the node count swings with how full the bottom level is,
//! but averaged over 100k-10M keys a 32-way trie (with a 16-byte header,
//! `u32` maps) and this one cost the same ~11 B per key on top of the
//! items, and this one is a level shallower. Cloning a trie shares its root (O(1));
//! a write copies the shared nodes on its path (copy on write, like
//! `Arc::make_mut`) and leaves the others shared, so a clone taken on the
//! event loop can be read on another thread while writes go on.

mod node;

use std::fmt;

use node::{Edit, Node};

/// What the trie stores: an item that knows its hash and key. Items are
/// told apart by `(hash, key)` (the keyspace's hash is a function of the
/// key; tests pick theirs freely), and neither may change while the item
/// is in a trie.
pub(crate) trait TrieItem: Clone {
    fn trie_hash(&self) -> u64;
    fn trie_key(&self) -> &[u8];
}

/// Hash bits a level branches on.
const BITS_PER_LEVEL: u32 = 6;
/// The level of collision buckets: levels 0..=10 use up the 64 bits
/// (10 x 6 + 4).
const BUCKET_LEVEL: u32 = 11;
/// Nodes on the longest path: levels 0..=11.
const DEPTH_MAX: usize = BUCKET_LEVEL as usize + 1;

/// The slot of `hash` at `level` (< [`BUCKET_LEVEL`]): the next 6 bits
/// below the ones the levels above used, so that slot order is hash order.
fn slot(hash: u64, level: u32) -> u32 {
    debug_assert!(level < BUCKET_LEVEL);
    // At level 10 the shift leaves 4 bits, in the slot's top bits.
    ((hash << (BITS_PER_LEVEL * level)) >> (64 - BITS_PER_LEVEL)) as u32
}

/// The position, in the array that `map` describes, of the slot `bit`.
fn index(map: u64, bit: u64) -> usize {
    (map & (bit - 1)).count_ones() as usize
}

/// Position of `key` in a bucket's items (sorted by key).
fn bucket_search<T: TrieItem>(items: &[T], key: &[u8]) -> Result<usize, usize> {
    items.binary_search_by(|item| item.trie_key().cmp(key))
}

/// A persistent map from `(hash, key)` to items. See the module docs.
pub(crate) struct Trie<T> {
    /// `None` when empty (a trie of no keys holds no allocation).
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
        get_in(self.root.as_ref()?, 0, hash, key)
    }

    /// The item with this hash and key, writable. The caller must not
    /// change its hash or key (lookups would then miss it; memory safety
    /// does not depend on it). Copies the shared nodes on the path, only
    /// when the item is there.
    pub(crate) fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut T> {
        get_mut_in(self.root.as_mut()?, 0, hash, key, false)
    }

    /// Stores `item`, replacing and returning the item with its key if
    /// there is one (one walk down the trie either way).
    pub(crate) fn insert(&mut self, item: T) -> Option<T> {
        let hash = item.trie_hash();
        let replaced = match &mut self.root {
            Some(root) => insert_in(root, 0, hash, item),
            None => {
                let bit = 1 << slot(hash, 0);
                self.root = Some(Node::from_parts(bit, 0, [item], []));
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
        let removed = remove_in(self.root.as_mut()?, 0, hash, key, false)?;
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
    /// Descends to the first one (O(depth)) rather than skipping the ones
    /// before it.
    pub(crate) fn iter_from(&self, hash: u64) -> Iter<'_, T> {
        let mut iter = Iter {
            frames: [Frame::UNUSED; DEPTH_MAX],
            depth: 0,
        };
        let mut next = self.root.as_ref();
        let mut level = 0;
        while let Some(node) = next {
            next = None;
            let (datamap, nodemap) = node.maps();
            // The slots after `hash`'s are all wanted; `hash`'s own slot
            // depends on what it holds.
            let pending = if level == BUCKET_LEVEL {
                // Every bit of the hash led here: the bucket's hash is
                // `hash`, so all of it is wanted (from item 0).
                0
            } else {
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
            };
            iter.frames[level as usize] = Frame::of(node, pending);
            iter.depth = level as usize + 1;
            level += 1;
        }
        iter
    }

    /// Checks the shape the module docs describe: every item in its
    /// slot, maps and buckets well formed, the shape canonical, the count
    /// right. Costs O(items); for tests and the simulator.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let Some(root) = &self.root else {
            return match self.len {
                0 => Ok(()),
                len => Err(format!("empty trie counts {len} items")),
            };
        };
        let counted = check_node(root, 0, 0, true)?;
        if counted != self.len || counted == 0 {
            return Err(format!(
                "trie counts {} items but holds {counted}",
                self.len
            ));
        }
        Ok(())
    }
}

fn get_in<'a, T: TrieItem>(
    mut node: &'a Node<T>,
    mut level: u32,
    hash: u64,
    key: &[u8],
) -> Option<&'a T> {
    loop {
        if level == BUCKET_LEVEL {
            let items = node.items();
            return bucket_search(items, key).ok().map(|at| &items[at]);
        }
        let (datamap, nodemap) = node.maps();
        let bit = 1u64 << slot(hash, level);
        if datamap & bit != 0 {
            let item = &node.items()[index(datamap, bit)];
            // The hash first: it is in the node, the key behind a pointer.
            return (item.trie_hash() == hash && item.trie_key() == key).then_some(item);
        }
        if nodemap & bit == 0 {
            return None;
        }
        node = &node.children()[index(nodemap, bit)];
        level += 1;
    }
}

/// `present`: the item is known to be below `node` (then shared nodes
/// are copied without looking first).
fn get_mut_in<'a, T: TrieItem>(
    node: &'a mut Node<T>,
    level: u32,
    hash: u64,
    key: &[u8],
    present: bool,
) -> Option<&'a mut T> {
    // A miss must not copy shared nodes: look before writing, once, at the
    // first shared node of the path. `present` stays false through unique
    // nodes (writing them is free) so that a shared one below still looks.
    let unique = node.is_unique();
    let present = present || (!unique && get_in(node, level, hash, key).is_some());
    if !present && !unique {
        return None;
    }
    if level == BUCKET_LEVEL {
        let at = bucket_search(node.items(), key).ok()?;
        return node.make_mut().0.get_mut(at);
    }
    let (datamap, nodemap) = node.maps();
    let bit = 1u64 << slot(hash, level);
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
    get_mut_in(child, level + 1, hash, key, present)
}

fn insert_in<T: TrieItem>(node: &mut Node<T>, level: u32, hash: u64, item: T) -> Option<T> {
    let (datamap, nodemap) = node.maps();
    if level == BUCKET_LEVEL {
        // Every hash bit matched on the way here: same hash, so the
        // bucket is ordered by key alone.
        return match bucket_search(node.items(), item.trie_key()) {
            Ok(at) => Some(std::mem::replace(&mut node.make_mut().0[at], item)),
            Err(at) => {
                let (datamap, nodemap) = Node::<T>::bucket_maps(node.items().len() + 1);
                node.rebuild(datamap, nodemap, Edit::Insert(at, item), Edit::Keep);
                None
            }
        };
    }
    let bit = 1u64 << slot(hash, level);
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
        let child = pair(level + 1, existing.clone(), existing_hash, item, hash);
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
        let child = &mut node.make_mut().1[index(nodemap, bit)];
        return insert_in(child, level + 1, hash, item);
    }
    let at = index(datamap, bit);
    node.rebuild(datamap | bit, nodemap, Edit::Insert(at, item), Edit::Keep);
    None
}

/// The node at `level` holding `a` and `b` (different keys): a bucket if
/// their hashes are equal, else the node where their slots differ, under
/// as many one-child nodes as the slots they share above it.
fn pair<T: TrieItem>(level: u32, a: T, a_hash: u64, b: T, b_hash: u64) -> Node<T> {
    if level == BUCKET_LEVEL {
        debug_assert_eq!(a_hash, b_hash);
        let (datamap, nodemap) = Node::<T>::bucket_maps(2);
        let (first, second) = if a.trie_key() < b.trie_key() {
            (a, b)
        } else {
            (b, a)
        };
        return Node::from_parts(datamap, nodemap, [first, second], []);
    }
    let (a_slot, b_slot) = (slot(a_hash, level), slot(b_hash, level));
    if a_slot == b_slot {
        let child = pair(level + 1, a, a_hash, b, b_hash);
        return Node::from_parts(0, 1 << a_slot, [], [child]);
    }
    let datamap = (1 << a_slot) | (1 << b_slot);
    let items = if a_slot < b_slot { [a, b] } else { [b, a] };
    Node::from_parts(datamap, 0, items, [])
}

/// `present`: as for [`get_mut_in`].
fn remove_in<T: TrieItem>(
    node: &mut Node<T>,
    level: u32,
    hash: u64,
    key: &[u8],
    present: bool,
) -> Option<T> {
    let (datamap, nodemap) = node.maps();
    if level == BUCKET_LEVEL {
        let at = bucket_search(node.items(), key).ok()?;
        // A bucket holds two items or more (canonical shape), so one is
        // left; the parent pulls it up.
        let (datamap, nodemap) = Node::<T>::bucket_maps(node.items().len() - 1);
        return node
            .rebuild(datamap, nodemap, Edit::Remove(at), Edit::Keep)
            .0;
    }
    let bit = 1u64 << slot(hash, level);
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
    let present =
        present || (!unique && get_in(&node.children()[child_at], level + 1, hash, key).is_some());
    if !present && !unique {
        return None;
    }
    let child = &mut node.make_mut().1[child_at];
    let removed = remove_in(child, level + 1, hash, key, present)?;
    // A child left with one item and no children goes: its item moves up
    // into the child's slot (the shape stays canonical, and a chain of
    // one-child nodes collapses one level per return).
    let lone = match (child.items(), child.children()) {
        // Moved out (the removal left the child unique), not cloned: no
        // item code runs once the removal has changed the child, so a
        // panic cannot leave a one-item child or a wrong `len` behind.
        ([_], []) => child.rebuild(0, 0, Edit::Remove(0), Edit::Keep).0,
        _ => None,
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

/// Checks the node at `level` whose items' hashes start with the bits of
/// `prefix` above the level; returns how many items it holds in all.
fn check_node<T: TrieItem>(
    node: &Node<T>,
    level: u32,
    prefix: u64,
    is_root: bool,
) -> Result<usize, String> {
    let (datamap, nodemap) = node.maps();
    let (items, children) = (node.items(), node.children());
    if level == BUCKET_LEVEL {
        if (datamap, nodemap) != Node::<T>::bucket_maps(items.len()) || !children.is_empty() {
            return Err(format!("level {level}: not a bucket"));
        }
        if items.len() < 2 {
            return Err("a bucket of fewer than 2 items".into());
        }
        if items.iter().any(|item| item.trie_hash() != prefix) {
            return Err("a bucket item with another hash".into());
        }
        if !items
            .windows(2)
            .all(|pair| pair[0].trie_key() < pair[1].trie_key())
        {
            return Err("a bucket out of key order".into());
        }
        return Ok(items.len());
    }
    if datamap & nodemap != 0 {
        return Err(format!("level {level}: a slot holds an item and a child"));
    }
    // Bits of the hash the levels above used.
    let above = BITS_PER_LEVEL * level;
    let same_prefix = |hash: u64| above == 0 || (hash ^ prefix) >> (64 - above) == 0;
    for item in items {
        let hash = item.trie_hash();
        if !same_prefix(hash) {
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
        // The child's hashes: this prefix plus the slot's bits (at level
        // 10, the last 4, kept in the slot's top bits).
        let slot_bits = if level == BUCKET_LEVEL - 1 {
            u64::from(slot_at) >> 2
        } else {
            u64::from(slot_at) << (64 - BITS_PER_LEVEL * (level + 1))
        };
        if level == BUCKET_LEVEL - 1 && slot_at % 4 != 0 {
            return Err("level 10: a slot with bits it does not have".into());
        }
        let child_prefix = prefix | slot_bits;
        let below = check_node(child, level + 1, child_prefix, false)?;
        if below < 2 {
            return Err(format!("level {level}: a child holding one item"));
        }
        total += below;
    }
    if level == BUCKET_LEVEL - 1 && datamap & !0x1111_1111_1111_1111 != 0 {
        return Err("level 10: an item slot with bits it does not have".into());
    }
    if is_root && total == 0 {
        return Err("an empty root".into());
    }
    if !is_root && items.len() == 1 && children.is_empty() {
        return Err(format!("level {level}: a node of one item"));
    }
    Ok(total)
}

/// Items in `(hash, key)` order (see the module docs), from a stack of
/// the nodes on the path to the next one: no allocation.
pub(crate) struct Iter<'a, T> {
    /// The node at each level of the path (`depth` of them).
    frames: [Frame<'a, T>; DEPTH_MAX],
    depth: usize,
}

/// A node being iterated, with what `next` reads of it at hand.
struct Frame<'a, T> {
    items: &'a [T],
    children: &'a [Node<T>],
    datamap: u64,
    nodemap: u64,
    /// For a branch node, the slots not visited yet; for a bucket, the
    /// index of its next item.
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

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        while let Some(top) = self.depth.checked_sub(1) {
            let frame = &mut self.frames[top];
            if top == BUCKET_LEVEL as usize {
                if let Some(item) = frame.items.get(frame.pending as usize) {
                    frame.pending += 1;
                    return Some(item);
                }
                self.depth = top;
                continue;
            }
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
            let (datamap, nodemap) = child.maps();
            let pending = if top + 1 == BUCKET_LEVEL as usize {
                0
            } else {
                datamap | nodemap
            };
            self.frames[top + 1] = Frame::of(child, pending);
            self.depth = top + 2;
        }
        None
    }
}

impl<T> std::iter::FusedIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod review_tests;

#[cfg(test)]
mod bench;
