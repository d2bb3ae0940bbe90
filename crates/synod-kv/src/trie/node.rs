//! One trie node: a reference-counted, immutable-once-shared allocation,
//! of one of two kinds that its header tells apart.
//!
//! ```text
//! branch: | refs: AtomicUsize | datamap | nodemap | label | items: [T; n] | children: [Node<T>; m] |
//! bucket: | refs: AtomicUsize | u64::MAX | u64::MAX | 0    | Bucket<T> |
//! ```
//!
//! A *branch* node has `n = datamap.count_ones()` and `m =
//! nodemap.count_ones()`, the two maps being disjoint (a slot holds an item,
//! a child or nothing); its `label` says which level it branches at and the
//! hash bits above it (see `trie.rs`). A *bucket* (items whose 64-bit hashes
//! are all equal, in a persistent tree of their own: see `bucket.rs`) has
//! both maps all ones: they then overlap, which no branch node's do, so
//! every node can tell its own kind (and with it its layout) from its
//! header alone, which `Drop` needs.
//!
//! This file holds all of the trie's `unsafe` code. The rules it keeps:
//!
//! 1. **Layout.** A branch node's allocation always has the layout
//!    [`Node::layout`] gives for the counts its maps imply, and every slot
//!    of it is initialised. The maps are written once, by [`Builder`], and
//!    never change; a builder only hands out a node once it has written
//!    exactly that many items and children, and it refuses the bucket
//!    maps. A bucket is a `Box<BucketNode<T>>` (whose first field is the
//!    header), made only by [`Node::new_bucket`] and freed as that box.
//! 2. **Sharing.** Memory reachable from a node with `refs > 1` is never
//!    written: only [`Node::make_mut`], [`Node::rebuild`] and
//!    [`Node::bucket_mut`] hand out or take writable access, and all
//!    three first check `refs == 1` (an `Acquire`
//!    load, pairing with the `Release` decrement of the owner that went
//!    away, so its reads happen before our writes). `refs == 1` cannot
//!    change under us: the only other way to reach the node would be a
//!    second `Node` handle, and we hold the only one by `&mut`.
//! 3. **Moves.** When a node is rebuilt from a unique one, its items and
//!    children are moved bit for bit and the old allocation is freed
//!    without dropping them. Every check that can fail runs before the
//!    first move, and no code of the item type (a `clone`, which could
//!    panic) runs between the first move and the free, so a panic can
//!    never leave a value owned twice.

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{self, AtomicUsize, Ordering};

use super::bucket::Bucket;

#[cfg(test)]
thread_local! {
    /// `(nodes, array slots)` built on this thread so far: what writes
    /// allocate and copy or move, for the cost tests' bounds.
    pub(super) static BUILT: std::cell::Cell<(usize, usize)> =
        const { std::cell::Cell::new((0, 0)) };
}

/// Counts a node of `slots` array slots in [`BUILT`].
fn count_built(slots: usize) {
    #[cfg(test)]
    BUILT.set({
        let (nodes, total) = BUILT.get();
        (nodes + 1, total + slots)
    });
    let _ = slots;
}

#[repr(C)]
struct Header {
    refs: AtomicUsize,
    datamap: u64,
    nodemap: u64,
    /// A branch node's level and hash prefix (`trie.rs` packs them); 0 in
    /// a bucket.
    label: u64,
}

/// A bucket's allocation: the header first, so that a pointer to it is a
/// pointer to its header (`repr(C)`), then the bucket.
#[repr(C)]
struct BucketNode<T> {
    header: Header,
    bucket: Bucket<T>,
}

/// An owning, reference-counted handle on a node (as `Arc`, minus the
/// weak count and with the node's arrays in the same allocation).
pub(super) struct Node<T> {
    header: NonNull<Header>,
    /// The node owns `T`s (for the drop checker).
    owns: PhantomData<T>,
}

// SAFETY: as for `Arc<T>`: handles on one node may be cloned, read and
// dropped from several threads (the count is atomic, and rule 2 keeps
// shared memory read-only), so a `T` may be read from several threads
// (`Sync`) and dropped on any of them (`Send`).
unsafe impl<T: Send + Sync> Send for Node<T> {}
// SAFETY: see `Send`.
unsafe impl<T: Send + Sync> Sync for Node<T> {}

/// A change to one of a node's two arrays, for [`Node::rebuild`].
pub(super) enum Edit<X> {
    Keep,
    /// Inserts the value at this index; later ones move up.
    Insert(usize, X),
    /// Removes the value at this index (handed back); later ones move down.
    Remove(usize),
}

impl<X> Edit<X> {
    /// The array's length after the edit, if the edit fits `len`.
    fn applied_len(&self, len: usize) -> Option<usize> {
        match self {
            Edit::Keep => Some(len),
            Edit::Insert(index, _) => (*index <= len).then_some(len + 1),
            Edit::Remove(index) => (*index < len).then(|| len - 1),
        }
    }
}

/// A bucket's maps (see the module docs): overlapping, as no branch
/// node's are.
const BUCKET_MAPS: (u64, u64) = (u64::MAX, u64::MAX);

fn is_bucket(datamap: u64, nodemap: u64) -> bool {
    datamap & nodemap != 0
}

/// `(items, children)` in the arrays of a node with these maps (a bucket
/// has none: its items are in its `Bucket`).
fn counts(datamap: u64, nodemap: u64) -> (usize, usize) {
    if is_bucket(datamap, nodemap) {
        (0, 0)
    } else {
        (datamap.count_ones() as usize, nodemap.count_ones() as usize)
    }
}

/// Aborts as `Arc` does when a size cannot be represented: only reachable
/// with more items than memory can hold.
#[cold]
fn capacity_overflow() -> ! {
    std::process::abort()
}

impl<T> Node<T> {
    /// Where the items start: right after the header.
    const ITEMS_OFFSET: usize = size_of::<Header>().next_multiple_of(align_of::<T>());
    const ALIGN: usize = max(
        max(align_of::<Header>(), align_of::<T>()),
        align_of::<Self>(),
    );

    /// Where the children start in a node of `items` items. Cannot
    /// overflow for a node that exists: [`Node::layout`] computed the same
    /// sum with checks when it was allocated.
    fn children_offset(items: usize) -> usize {
        (Self::ITEMS_OFFSET + items * size_of::<T>()).next_multiple_of(align_of::<Self>())
    }

    /// The allocation of a node with these counts (rule 1).
    fn layout(items: usize, children: usize) -> Layout {
        let size = items
            .checked_mul(size_of::<T>())
            .and_then(|bytes| bytes.checked_add(Self::ITEMS_OFFSET))
            .and_then(|end| end.checked_next_multiple_of(align_of::<Self>()))
            .and_then(|offset| {
                let bytes = children.checked_mul(size_of::<Self>())?;
                offset.checked_add(bytes)
            });
        match size.and_then(|size| Layout::from_size_align(size, Self::ALIGN).ok()) {
            Some(layout) => layout,
            None => capacity_overflow(),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle keeps the allocation alive, and the header is
        // initialised first (Builder::new, Node::new_bucket).
        unsafe { self.header.as_ref() }
    }

    /// `(datamap, nodemap)`: a bucket's are both all ones.
    pub(super) fn maps(&self) -> (u64, u64) {
        let header = self.header();
        (header.datamap, header.nodemap)
    }

    /// A branch node's level and prefix (see `trie.rs`); 0 for a bucket.
    pub(super) fn label(&self) -> u64 {
        self.header().label
    }

    /// The bucket, if this node is one.
    pub(super) fn bucket(&self) -> Option<&Bucket<T>> {
        let (datamap, nodemap) = self.maps();
        if !is_bucket(datamap, nodemap) {
            return None;
        }
        // SAFETY: a node with the bucket maps was made by `new_bucket`
        // (rule 1: `Builder` refuses them), so the allocation is a live
        // `BucketNode<T>`; it is not written while shared (rule 2).
        Some(unsafe { &(*self.header.as_ptr().cast::<BucketNode<T>>()).bucket })
    }

    /// A node holding `bucket`.
    pub(super) fn new_bucket(bucket: Bucket<T>) -> Node<T> {
        let (datamap, nodemap) = BUCKET_MAPS;
        count_built(0);
        let node = Box::new(BucketNode {
            header: Header {
                refs: AtomicUsize::new(1),
                datamap,
                nodemap,
                label: 0,
            },
            bucket,
        });
        // `repr(C)`: the box's address is its header's.
        let header = NonNull::from(Box::leak(node)).cast::<Header>();
        Node {
            header,
            owns: PhantomData,
        }
    }

    /// The bucket, writable, after replacing the node by a copy of its
    /// own if it is shared (copy on write: cloning a bucket is O(1), it
    /// shares its tree). Panics if the node is not a bucket.
    pub(super) fn bucket_mut(&mut self) -> &mut Bucket<T>
    where
        Bucket<T>: Clone,
    {
        let Some(bucket) = self.bucket() else {
            panic!("trie node written as a bucket but is none");
        };
        if !self.is_unique() {
            *self = Node::new_bucket(bucket.clone());
        }
        // SAFETY: a bucket (checked above; a copy is one too), unique
        // (rule 2), so nothing else reads it while `self` is borrowed
        // mutably.
        unsafe { &mut (*self.header.as_ptr().cast::<BucketNode<T>>()).bucket }
    }

    /// `(items, children)`.
    fn counts(&self) -> (usize, usize) {
        let (datamap, nodemap) = self.maps();
        counts(datamap, nodemap)
    }

    fn base(&self) -> *mut u8 {
        self.header.as_ptr().cast::<u8>()
    }

    fn items_ptr(&self) -> *mut T {
        // SAFETY: in bounds of the allocation (rule 1).
        unsafe { self.base().add(Self::ITEMS_OFFSET).cast::<T>() }
    }

    fn children_ptr(&self) -> *mut Node<T> {
        let (items, _) = self.counts();
        // SAFETY: in bounds of the allocation (rule 1).
        unsafe {
            self.base()
                .add(Self::children_offset(items))
                .cast::<Node<T>>()
        }
    }

    pub(super) fn items(&self) -> &[T] {
        let (items, _) = self.counts();
        if items == 0 {
            // A bucket's allocation has no item array to point into.
            return &[];
        }
        // SAFETY: `items` initialised values (rule 1), not written while
        // this borrow of a handle lives (rule 2).
        unsafe { slice::from_raw_parts(self.items_ptr(), items) }
    }

    pub(super) fn children(&self) -> &[Node<T>] {
        let (_, children) = self.counts();
        if children == 0 {
            // As in `items`.
            return &[];
        }
        // SAFETY: as for `items`.
        unsafe { slice::from_raw_parts(self.children_ptr(), children) }
    }

    /// Asks the CPU to bring the node's header into the cache (a hint:
    /// nothing is read, nothing can fault).
    pub(super) fn prefetch(&self) {
        prefetch_address(self.header.as_ptr().cast::<u8>());
    }

    /// Asks the CPU to bring the cache line of item `at` into the cache
    /// (a hint, as [`Node::prefetch`]; `at` out of range prefetches some
    /// other address, which is harmless).
    pub(super) fn prefetch_item(&self, at: usize) {
        prefetch_address(self.items_ptr().wrapping_add(at).cast::<u8>());
    }

    /// As [`Node::prefetch_item`], for the handle of child `at`.
    pub(super) fn prefetch_child(&self, at: usize) {
        prefetch_address(self.children_ptr().wrapping_add(at).cast::<u8>());
    }

    /// Whether this handle is the node's only one (rule 2).
    pub(super) fn is_unique(&self) -> bool {
        self.header().refs.load(Ordering::Acquire) == 1
    }

    /// How many handles share the node (for tests' structure checks).
    #[cfg(test)]
    pub(super) fn refs(&self) -> usize {
        self.header().refs.load(Ordering::Acquire)
    }

    /// Bytes of this node's allocation (for memory measurements; a
    /// bucket's tree is not counted).
    #[cfg(test)]
    pub(super) fn allocated_bytes(&self) -> usize {
        if self.bucket().is_some() {
            return size_of::<BucketNode<T>>();
        }
        let (items, children) = self.counts();
        Self::layout(items, children).size()
    }

    /// A branch node with this label, these maps, items and children
    /// (which must be as many as the maps say, else this panics before
    /// handing out anything).
    pub(super) fn from_parts(
        label: u64,
        datamap: u64,
        nodemap: u64,
        items: impl IntoIterator<Item = T>,
        children: impl IntoIterator<Item = Node<T>>,
    ) -> Node<T> {
        let mut builder = Builder::new(label, datamap, nodemap);
        for item in items {
            builder.push_item(item);
        }
        for child in children {
            builder.push_child(child);
        }
        builder.finish()
    }

    /// Writable access to a branch node's items and children, after
    /// replacing the node by a copy of its own if it is shared (copy on
    /// write: the copy clones the items and shares the children). Panics
    /// on a bucket (see [`Node::bucket_mut`]).
    pub(super) fn make_mut(&mut self) -> (&mut [T], &mut [Node<T>])
    where
        T: Clone,
    {
        assert!(
            self.bucket().is_none(),
            "trie bucket written as a branch node"
        );
        if !self.is_unique() {
            let (datamap, nodemap) = self.maps();
            *self = Node::from_parts(
                self.label(),
                datamap,
                nodemap,
                self.items().iter().cloned(),
                self.children().iter().cloned(),
            );
        }
        let (items, children) = self.counts();
        // SAFETY: the node is unique (rule 2), so nothing else reads it
        // while `self` is borrowed mutably; the two ranges are disjoint and
        // initialised (rule 1).
        unsafe {
            (
                slice::from_raw_parts_mut(self.items_ptr(), items),
                slice::from_raw_parts_mut(self.children_ptr(), children),
            )
        }
    }

    /// Replaces the node by one with the maps `(datamap, nodemap)` holding
    /// its items with `items` applied and its children with `children`
    /// applied, and hands back what the edits removed. A unique node's
    /// contents are moved (rule 3); a shared one's are cloned, and the
    /// node itself is left to its other owners.
    ///
    /// Panics, changing nothing, if the new maps do not count the edited
    /// arrays' lengths (a bug in the caller).
    pub(super) fn rebuild(
        &mut self,
        datamap: u64,
        nodemap: u64,
        items: Edit<T>,
        children: Edit<Node<T>>,
    ) -> (Option<T>, Option<Node<T>>)
    where
        T: Clone,
    {
        let (old_items, old_children) = self.counts();
        let (new_items, new_children) = counts(datamap, nodemap);
        assert!(
            self.bucket().is_none()
                && items.applied_len(old_items) == Some(new_items)
                && children.applied_len(old_children) == Some(new_children),
            "trie node rebuilt with maps that do not match its arrays"
        );
        let mut builder = Builder::new(self.label(), datamap, nodemap);
        if !self.is_unique() {
            let removed_item = builder.clone_items(self.items(), items);
            let removed_child = builder.clone_children(self.children(), children);
            // Drops this handle only: the other owners keep the old node.
            *self = builder.finish();
            return (removed_item, removed_child);
        }
        // SAFETY (rule 3): every check is above. The old node is unique, so
        // its values can be moved out; from here on only moves and the
        // free run, and afterwards the old allocation is gone, its values
        // owned by the new node or by the caller (removed ones), once.
        unsafe {
            let removed_item = builder.move_items(self.items_ptr(), old_items, items);
            let removed_child = builder.move_children(self.children_ptr(), old_children, children);
            let old = self.header;
            let new = builder.finish();
            self.header = new.header;
            std::mem::forget(new);
            alloc::dealloc(
                old.as_ptr().cast::<u8>(),
                Self::layout(old_items, old_children),
            );
            (removed_item, removed_child)
        }
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        // Relaxed as in `Arc::clone`: the new handle is made from an
        // existing one, which already keeps the node alive.
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            // As `Arc`: a count this high means handles are being leaked.
            std::process::abort();
        }
        Node {
            header: self.header,
            owns: PhantomData,
        }
    }
}

impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        // As `Arc`: the Release decrement orders this owner's reads before
        // the free; the last owner's Acquire fence sees all of them.
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        atomic::fence(Ordering::Acquire);
        if self.bucket().is_some() {
            // SAFETY: the last handle on a bucket, which `new_bucket` made
            // from this box (rule 1): freed as one, once.
            unsafe { drop(Box::from_raw(self.header.as_ptr().cast::<BucketNode<T>>())) };
            return;
        }
        let (items, children) = self.counts();
        // SAFETY: this was the last handle, so nothing else can reach the
        // node; its values are initialised (rule 1) and dropped once, then
        // the allocation is freed with the layout it was made with.
        // Children drop recursively: a path is at most 12 nodes deep.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.items_ptr(), items));
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.children_ptr(), children));
            alloc::dealloc(self.base(), Self::layout(items, children));
        }
    }
}

/// A node being filled. Dropped unfinished (a `clone` panicked), it drops
/// what it was given and frees the allocation, so nothing leaks and no
/// half-built node escapes.
struct Builder<T> {
    header: NonNull<Header>,
    items: usize,
    children: usize,
    items_written: usize,
    children_written: usize,
    owns: PhantomData<T>,
}

impl<T> Builder<T> {
    fn new(label: u64, datamap: u64, nodemap: u64) -> Builder<T> {
        // Rule 1: only `new_bucket` makes a node with the bucket maps.
        assert!(
            !is_bucket(datamap, nodemap),
            "trie branch node built with a bucket's maps"
        );
        let (items, children) = counts(datamap, nodemap);
        count_built(items + children);
        let layout = Node::<T>::layout(items, children);
        // SAFETY: the layout is never zero-sized (it includes the header).
        let memory = unsafe { alloc::alloc(layout) };
        let Some(header) = NonNull::new(memory.cast::<Header>()) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: freshly allocated, aligned for the header.
        unsafe {
            header.as_ptr().write(Header {
                refs: AtomicUsize::new(1),
                datamap,
                nodemap,
                label,
            });
        }
        Builder {
            header,
            items,
            children,
            items_written: 0,
            children_written: 0,
            owns: PhantomData,
        }
    }

    fn items_ptr(&self) -> *mut T {
        // SAFETY: in bounds of the allocation.
        unsafe {
            self.header
                .as_ptr()
                .cast::<u8>()
                .add(Node::<T>::ITEMS_OFFSET)
                .cast::<T>()
        }
    }

    fn children_ptr(&self) -> *mut Node<T> {
        // SAFETY: in bounds of the allocation.
        unsafe {
            self.header
                .as_ptr()
                .cast::<u8>()
                .add(Node::<T>::children_offset(self.items))
                .cast::<Node<T>>()
        }
    }

    fn push_item(&mut self, item: T) {
        assert!(self.items_written < self.items, "trie node overfilled");
        // SAFETY: the slot is in bounds (checked) and not yet written.
        unsafe { self.items_ptr().add(self.items_written).write(item) };
        self.items_written += 1;
    }

    fn push_child(&mut self, child: Node<T>) {
        assert!(
            self.children_written < self.children,
            "trie node overfilled"
        );
        // SAFETY: as for `push_item`.
        unsafe { self.children_ptr().add(self.children_written).write(child) };
        self.children_written += 1;
    }

    /// Clones `old` with `edit` applied into the (still empty) items.
    fn clone_items(&mut self, old: &[T], edit: Edit<T>) -> Option<T>
    where
        T: Clone,
    {
        debug_assert_eq!(self.items_written, 0);
        let slots = self.items_ptr();
        // SAFETY: `rebuild` checked that the edited array fills the items.
        unsafe { clone_edited(slots, &mut self.items_written, old, edit, T::clone) }
    }

    /// Clones `old` with `edit` applied into the (still empty) children.
    fn clone_children(&mut self, old: &[Node<T>], edit: Edit<Node<T>>) -> Option<Node<T>> {
        debug_assert_eq!(self.children_written, 0);
        let slots = self.children_ptr();
        // SAFETY: as for `clone_items`.
        unsafe { clone_edited(slots, &mut self.children_written, old, edit, Node::clone) }
    }

    /// Moves the `len` items at `old` with `edit` applied into the (still
    /// empty) items.
    ///
    /// # Safety
    /// `old` holds `len` initialised items that are the caller's to move
    /// (it must not drop them afterwards), and the edited array fills the
    /// items exactly.
    unsafe fn move_items(&mut self, old: *const T, len: usize, edit: Edit<T>) -> Option<T> {
        debug_assert_eq!(self.items_written, 0);
        let slots = self.items_ptr();
        // SAFETY: forwarded from the caller.
        unsafe { move_edited(slots, &mut self.items_written, old, len, edit) }
    }

    /// As [`Builder::move_items`], for the children.
    ///
    /// # Safety
    /// As for [`Builder::move_items`].
    unsafe fn move_children(
        &mut self,
        old: *const Node<T>,
        len: usize,
        edit: Edit<Node<T>>,
    ) -> Option<Node<T>> {
        debug_assert_eq!(self.children_written, 0);
        let slots = self.children_ptr();
        // SAFETY: forwarded from the caller.
        unsafe { move_edited(slots, &mut self.children_written, old, len, edit) }
    }

    fn finish(self) -> Node<T> {
        assert!(
            self.items_written == self.items && self.children_written == self.children,
            "trie node underfilled"
        );
        let node = Node {
            header: self.header,
            owns: PhantomData,
        };
        std::mem::forget(self);
        node
    }
}

impl<T> Drop for Builder<T> {
    fn drop(&mut self) {
        // SAFETY: the first `*_written` slots of each array were written
        // and are still owned by the builder (`finish` forgets it).
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                self.items_ptr(),
                self.items_written,
            ));
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                self.children_ptr(),
                self.children_written,
            ));
            alloc::dealloc(
                self.header.as_ptr().cast::<u8>(),
                Node::<T>::layout(self.items, self.children),
            );
        }
    }
}

/// Writes clones of `old`, with `edit` applied, to `slots`, counting each
/// in `written` as soon as it is written (so that a panicking `clone`
/// leaves the builder knowing what to drop); hands back a clone of a
/// removed value.
///
/// # Safety
/// `slots` has room for the edited array, and `*written` is 0.
unsafe fn clone_edited<X>(
    slots: *mut X,
    written: &mut usize,
    old: &[X],
    edit: Edit<X>,
    clone: fn(&X) -> X,
) -> Option<X> {
    let (inserted, removed_at) = match edit {
        Edit::Keep => (None, None),
        Edit::Insert(index, value) => (Some((index, value)), None),
        Edit::Remove(index) => (None, Some(index)),
    };
    let mut inserted = inserted;
    let mut removed = None;
    for (index, value) in old.iter().enumerate() {
        if inserted.as_ref().is_some_and(|(at, _)| *at == index) {
            if let Some((_, value)) = inserted.take() {
                // SAFETY: within the edited array's length (the caller's
                // promise); each slot is written once.
                unsafe { slots.add(*written).write(value) };
                *written += 1;
            }
        }
        if removed_at == Some(index) {
            removed = Some(clone(value));
            continue;
        }
        let copy = clone(value);
        // SAFETY: as above.
        unsafe { slots.add(*written).write(copy) };
        *written += 1;
    }
    if let Some((_, value)) = inserted {
        // SAFETY: as above (an insertion at the end).
        unsafe { slots.add(*written).write(value) };
        *written += 1;
    }
    removed
}

/// Moves the `len` values at `old`, with `edit` applied, to `slots`.
///
/// # Safety
/// `old` holds `len` initialised values that the caller gives up (it must
/// neither read nor drop them afterwards); `slots` has room for the edited
/// array and does not overlap `old`; `*written` is 0; the edit's index
/// fits `len` (see `Edit::applied_len`).
unsafe fn move_edited<X>(
    slots: *mut X,
    written: &mut usize,
    old: *const X,
    len: usize,
    edit: Edit<X>,
) -> Option<X> {
    // SAFETY: bit copies of ranges within both arrays (the caller's
    // promise); each value ends up owned once: by `slots` or the caller.
    unsafe {
        match edit {
            Edit::Keep => {
                ptr::copy_nonoverlapping(old, slots, len);
                *written = len;
                None
            }
            Edit::Insert(index, value) => {
                ptr::copy_nonoverlapping(old, slots, index);
                slots.add(index).write(value);
                ptr::copy_nonoverlapping(old.add(index), slots.add(index + 1), len - index);
                *written = len + 1;
                None
            }
            Edit::Remove(index) => {
                ptr::copy_nonoverlapping(old, slots, index);
                let removed = old.add(index).read();
                ptr::copy_nonoverlapping(old.add(index + 1), slots.add(index), len - index - 1);
                *written = len - 1;
                Some(removed)
            }
        }
    }
}

/// Asks the CPU to bring the cache line holding `address` into the cache:
/// a hint that reads no memory and cannot fault, whatever the address.
pub(crate) fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads no memory and cannot fault, whatever the
    // address (it is dropped if the address maps nothing).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
