//! [`ThinBytes`]: an immutable, reference-counted byte string behind one
//! thin pointer, with an 8-byte header (a `u32` count and a `u32` length).
//!
//! It holds the keyspace's inline records (see [`crate::entry`]): a million
//! small keys are most datasets, and an `Arc<[u8]>` puts 16 bytes of
//! counts (strong and weak) in front of each. A record of a 16-byte key and
//! a 100-byte value is 131 bytes here against 139 in an `Arc<[u8]>`, which
//! glibc's allocator rounds to chunks of 144 and 160 bytes: 16 bytes, ~8%
//! of such a key's memory, saved per key. (On average over sizes the saving
//! is the 8 bytes of the header.)
//!
//! [`ThinOrArc`] puts a `ThinBytes` or an `Arc<B>` behind one tagged
//! pointer, so that an entry of the keyspace (its hash, and an inline
//! record or a boxed value) is two words instead of three: 8 bytes less
//! per key in every tree node that holds it.
//!
//! All of the `unsafe` code is here; the rules it keeps:
//!
//! 1. **Layout.** A handle points at an allocation of
//!    `Header` followed by `len` bytes, laid out by [`layout`] for the
//!    `len` in its header; every byte is written before the first handle
//!    exists, and nothing is written after (shared memory is read-only, as
//!    in an `Arc<[u8]>`: there is no `get_mut`).
//! 2. **Counting.** The count is the number of live handles. A clone adds
//!    one (`Relaxed`: the new handle comes from an existing one, as in
//!    `Arc`); a drop takes one (`Release`), and the drop that takes the
//!    last one fences (`Acquire`) before freeing, so every other handle's
//!    reads happen before the free. A count about to pass `u32::MAX / 2`
//!    aborts the process (as `Arc` does past `isize::MAX`): a wrapped count
//!    would free memory still in use. The keyspace holds one handle per
//!    tree copy that holds the entry, far below that.
//! 3. **Tags.** A [`ThinOrArc`] owns exactly one handle, kept as a raw
//!    pointer: a `ThinBytes`'s header pointer (aligned to 4, so its low bit
//!    is 0) or an `Arc<B>`'s data pointer (`Arc::into_raw`, aligned to at
//!    least 2 by the check in [`ThinOrArc::arc`]) with its low bit set.
//!    Every use reads the bit first and turns the pointer back into the
//!    handle it came from (`from_raw` of that same type), so each handle
//!    is released once, by `Drop`, and cloned only through its own type.

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{self, AtomicU32, Ordering};
use std::sync::Arc;

#[repr(C)]
struct Header {
    refs: AtomicU32,
    len: u32,
}

/// A shared, immutable byte string (see the module docs).
pub(crate) struct ThinBytes {
    header: NonNull<Header>,
}

// SAFETY: as for `Arc<[u8]>`: the bytes are never written once shared, and
// the count is atomic, so handles may be read, cloned and dropped from any
// thread.
unsafe impl Send for ThinBytes {}
// SAFETY: see `Send`.
unsafe impl Sync for ThinBytes {}

/// The allocation's layout for `len` bytes, and the offset of the bytes;
/// `None` if no allocation can be that large (a length past `isize::MAX`
/// with the header, on a 32-bit target).
fn try_layout(len: u32) -> Option<(Layout, usize)> {
    let bytes = Layout::array::<u8>(usize::try_from(len).ok()?).ok()?;
    Layout::new::<Header>().extend(bytes).ok()
}

/// The layout of an allocation that exists (its length was laid out by
/// [`try_layout`] once, in [`ThinBytes::concat`], so this cannot fail).
fn layout(len: u32) -> Layout {
    let (layout, offset) = try_layout(len).expect("an allocated length has a layout");
    debug_assert_eq!(offset, BYTES_OFFSET);
    layout
}

/// Where the bytes start: right after the header (which has no padding:
/// two `u32`s, aligned to 4; the bytes need no alignment).
const BYTES_OFFSET: usize = size_of::<Header>();
const _: () = assert!(BYTES_OFFSET == 8 && align_of::<Header>() >= 2);

/// Counts above this abort the process (see rule 2).
const REFS_MAX: u32 = u32::MAX / 2;

impl ThinBytes {
    /// The concatenation of `parts` in one allocation, or `None` when it
    /// is longer than a `u32` counts (the caller keeps such bytes another
    /// way).
    pub(crate) fn concat(parts: &[&[u8]]) -> Option<ThinBytes> {
        let total = parts
            .iter()
            .try_fold(0usize, |sum, part| sum.checked_add(part.len()))?;
        let len = u32::try_from(total).ok()?;
        let (layout, offset) = try_layout(len)?;
        // SAFETY: the layout is never zero-sized (it holds the header).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(header) = NonNull::new(raw.cast::<Header>()) else {
            alloc::handle_alloc_error(layout);
        };
        // SAFETY: `raw` is a fresh allocation of `layout`: the header fits
        // at its start (aligned: `layout` has the header's alignment) and
        // `total` bytes at `offset`; `parts` cannot overlap it. Nothing of
        // the caller's runs between the allocation and the last write, so
        // no panic can leave a half-written record behind (rule 1).
        unsafe {
            header.as_ptr().write(Header {
                refs: AtomicU32::new(1),
                len,
            });
            let mut at = raw.add(offset);
            for part in parts {
                ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        Some(ThinBytes { header })
    }

    /// The handle as a raw pointer, to be given back to
    /// [`ThinBytes::from_raw`] exactly once.
    fn into_raw(self) -> NonNull<u8> {
        let this = ManuallyDrop::new(self);
        this.header.cast::<u8>()
    }

    /// # Safety
    /// `raw` came from [`ThinBytes::into_raw`] and is given back once.
    unsafe fn from_raw(raw: NonNull<u8>) -> ThinBytes {
        ThinBytes {
            header: raw.cast::<Header>(),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle keeps the allocation alive (rule 2) and the
        // header was written before the handle existed (rule 1).
        unsafe { self.header.as_ref() }
    }
}

impl Deref for ThinBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let len = self.header().len;
        // SAFETY: `len` bytes at `BYTES_OFFSET` were written before the handle
        // existed and are never written again (rule 1); they live as long
        // as `self` does.
        unsafe {
            slice::from_raw_parts(
                self.header.as_ptr().cast::<u8>().add(BYTES_OFFSET),
                len as usize,
            )
        }
    }
}

impl Clone for ThinBytes {
    fn clone(&self) -> ThinBytes {
        let before = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if before > REFS_MAX {
            // A wrapped count would free memory in use (rule 2).
            std::process::abort();
        }
        ThinBytes {
            header: self.header,
        }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other handle's last use happened before its decrement,
        // which this fence orders before the free (rule 2).
        atomic::fence(Ordering::Acquire);
        let layout = layout(self.header().len);
        // SAFETY: this was the last handle: nothing else reads the
        // allocation, which was made with this layout (rule 1). The bytes
        // need no drop.
        unsafe { alloc::dealloc(self.header.as_ptr().cast::<u8>(), layout) };
    }
}

impl std::fmt::Debug for ThinBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&bytes::Bytes::copy_from_slice(self), f)
    }
}

/// A [`ThinBytes`] or an `Arc<B>` in one word (rule 3).
pub(crate) struct ThinOrArc<B> {
    /// Low bit 0: a `ThinBytes`; 1: an `Arc<B>`'s data pointer, plus one.
    tagged: NonNull<u8>,
    /// It owns one of the two (for the drop checker and auto traits).
    owns: PhantomData<(ThinBytes, Arc<B>)>,
}

/// What a [`ThinOrArc`] holds, borrowed.
pub(crate) enum ThinOrArcRef<'a, B> {
    Thin(&'a [u8]),
    Arc(&'a B),
}

/// What a [`ThinOrArc`] holds, the `Arc`'s value writable.
pub(crate) enum ThinOrArcMut<'a, B> {
    Thin(&'a [u8]),
    Arc(&'a mut B),
}

const ARC_TAG: usize = 1;

impl<B> ThinOrArc<B> {
    pub(crate) fn thin(bytes: ThinBytes) -> ThinOrArc<B> {
        let raw = bytes.into_raw();
        // A header is aligned to at least 2 (checked at compile time next
        // to `BYTES_OFFSET`): the bit is free.
        debug_assert_eq!(raw.as_ptr().addr() & ARC_TAG, 0);
        ThinOrArc {
            tagged: raw,
            owns: PhantomData,
        }
    }

    pub(crate) fn arc(value: Arc<B>) -> ThinOrArc<B> {
        const { assert!(align_of::<B>() >= 2, "the tag needs the low bit") };
        ThinOrArc {
            tagged: ThinOrArc::<B>::tag(Arc::into_raw(value).cast_mut()),
            owns: PhantomData,
        }
    }

    fn is_arc(&self) -> bool {
        self.tagged.as_ptr().addr() & ARC_TAG != 0
    }

    fn arc_ptr(&self) -> *const B {
        debug_assert!(self.is_arc());
        self.tagged
            .as_ptr()
            .map_addr(|addr| addr & !ARC_TAG)
            .cast::<B>()
            .cast_const()
    }

    /// The handle this holds, kept from dropping (rule 3: `self` still
    /// owns it).
    fn thin_handle(&self) -> ManuallyDrop<ThinBytes> {
        debug_assert!(!self.is_arc());
        // SAFETY: untagged, the pointer came from `ThinBytes::into_raw`; the
        // `ManuallyDrop` keeps this copy from releasing it.
        ManuallyDrop::new(unsafe { ThinBytes::from_raw(self.tagged) })
    }

    /// Asks the CPU to fetch the start of what this points to: an inline
    /// record's header and first bytes, or the `Arc`'s value (a hint).
    pub(crate) fn prefetch(&self) {
        crate::trie::prefetch_address(self.tagged.as_ptr().map_addr(|addr| addr & !ARC_TAG));
    }

    pub(crate) fn get(&self) -> ThinOrArcRef<'_, B> {
        if self.is_arc() {
            // SAFETY: tagged, it is a live `Arc<B>`'s data pointer, alive as
            // long as `self` is (which owns the count).
            ThinOrArcRef::Arc(unsafe { &*self.arc_ptr() })
        } else {
            ThinOrArcRef::Thin(self.thin_bytes())
        }
    }

    /// The bytes of the `ThinBytes` this holds (untagged).
    fn thin_bytes(&self) -> &[u8] {
        let handle = self.thin_handle();
        let bytes: &[u8] = &handle;
        // SAFETY: the bytes live in the allocation `self` keeps alive and
        // never change (rule 1), so they outlive the copy of the handle that
        // found them, for as long as `self` is borrowed.
        unsafe { slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
    }

    /// As [`ThinOrArc::get`], with the `Arc`'s value writable (copied
    /// first if shared, as `Arc::make_mut`).
    pub(crate) fn get_mut(&mut self) -> ThinOrArcMut<'_, B>
    where
        B: Clone,
    {
        if !self.is_arc() {
            return ThinOrArcMut::Thin(self.thin_bytes());
        }
        // SAFETY: tagged, it came from `Arc::into_raw`; the handle is taken
        // back here and put back below (a new pointer if `make_mut` copied).
        // Until then it stays in a `ManuallyDrop`: if `B::clone` panics
        // inside `make_mut`, `self` still owns the handle and nothing
        // releases it twice. (When `make_mut` copies, its assignment
        // releases the old handle and the copy's becomes ours.)
        let mut arc = ManuallyDrop::new(unsafe { Arc::from_raw(self.arc_ptr()) });
        Arc::make_mut(&mut arc);
        let raw = Arc::into_raw(ManuallyDrop::into_inner(arc)).cast_mut();
        self.tagged = ThinOrArc::<B>::tag(raw);
        // SAFETY: `make_mut` left the count at one, held by `self`, which
        // is borrowed mutably for as long as the reference lives.
        ThinOrArcMut::Arc(unsafe { &mut *raw })
    }

    /// An `Arc<B>`'s data pointer, tagged.
    fn tag(raw: *mut B) -> NonNull<u8> {
        let tagged = raw.cast::<u8>().map_addr(|addr| addr | ARC_TAG);
        // SAFETY: `Arc::into_raw` is never null, nor is it with a bit set.
        unsafe { NonNull::new_unchecked(tagged) }
    }
}

impl<B> Clone for ThinOrArc<B> {
    fn clone(&self) -> ThinOrArc<B> {
        if self.is_arc() {
            // SAFETY: a live `Arc<B>`'s data pointer (rule 3); the new count
            // is the clone's.
            unsafe { Arc::increment_strong_count(self.arc_ptr()) };
            ThinOrArc {
                tagged: self.tagged,
                owns: PhantomData,
            }
        } else {
            ThinOrArc::thin(ThinBytes::clone(&self.thin_handle()))
        }
    }
}

impl<B> Drop for ThinOrArc<B> {
    fn drop(&mut self) {
        if self.is_arc() {
            // SAFETY: the handle `self` owns (rule 3), released once.
            drop(unsafe { Arc::from_raw(self.arc_ptr()) });
        } else {
            // SAFETY: as above.
            drop(unsafe { ThinBytes::from_raw(self.tagged) });
        }
    }
}

// SAFETY: it is a `ThinBytes` (Send and Sync) or an `Arc<B>`, which is
// Send and Sync when `B` is both.
unsafe impl<B: Send + Sync> Send for ThinOrArc<B> {}
// SAFETY: see `Send`.
unsafe impl<B: Send + Sync> Sync for ThinOrArc<B> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenates_shares_and_frees() {
        let record = ThinBytes::concat(&[b"ab", b"", b"cde"]).expect("short");
        assert_eq!(&*record, b"abcde");
        let copy = record.clone();
        drop(record);
        assert_eq!(&*copy, b"abcde");
        let empty = ThinBytes::concat(&[]).expect("empty");
        assert!(empty.is_empty());
        assert_eq!(format!("{copy:?}"), "b\"abcde\"");
    }

    #[test]
    fn the_handle_is_one_word_and_the_header_two_u32s() {
        assert_eq!(std::mem::size_of::<ThinBytes>(), 8);
        assert_eq!(std::mem::size_of::<Option<ThinBytes>>(), 8);
        assert_eq!(layout(100).size(), 108);
        assert_eq!(
            try_layout(u32::MAX).map(|(l, _)| l.size()),
            Some(8 + u32::MAX as usize)
        );
    }

    #[test]
    fn clones_dropped_on_other_threads_free_once() {
        let record = ThinBytes::concat(&[&[7u8; 300]]).expect("short");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let copy = record.clone();
                std::thread::spawn(move || {
                    let inner: Vec<_> = (0..100).map(|_| copy.clone()).collect();
                    assert!(inner.iter().all(|h| h.len() == 300 && h[299] == 7));
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("no panic");
        }
        assert_eq!(record.header().refs.load(Ordering::Relaxed), 1);
    }

    fn push(boxed: &mut ThinOrArc<String>, c: char) {
        match boxed.get_mut() {
            ThinOrArcMut::Arc(s) => s.push(c),
            ThinOrArcMut::Thin(_) => panic!("an Arc"),
        }
    }

    /// Clones by panicking once `ARMED` is set.
    #[derive(Debug)]
    struct Fragile(u32);

    static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    impl Clone for Fragile {
        fn clone(&self) -> Fragile {
            assert!(!ARMED.load(Ordering::Relaxed), "clone refused");
            Fragile(self.0)
        }
    }

    #[test]
    fn a_panicking_copy_in_get_mut_releases_nothing_twice() {
        let shared = Arc::new(Fragile(7));
        let mut one = ThinOrArc::arc(Arc::clone(&shared));
        let two = one.clone();
        ARMED.store(true, Ordering::Relaxed);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = one.get_mut();
        }));
        ARMED.store(false, Ordering::Relaxed);
        assert!(unwound.is_err());
        assert_eq!(Arc::strong_count(&shared), 3);
        assert!(matches!(one.get(), ThinOrArcRef::Arc(Fragile(7))));
        drop((one, two));
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn thin_or_arc_holds_either_in_one_word() {
        assert_eq!(std::mem::size_of::<ThinOrArc<String>>(), 8);
        assert_eq!(std::mem::size_of::<Option<ThinOrArc<String>>>(), 8);
        let thin = ThinOrArc::<String>::thin(ThinBytes::concat(&[b"key", b"value"]).unwrap());
        let shared = Arc::new("boxed".to_string());
        let mut boxed = ThinOrArc::arc(Arc::clone(&shared));
        assert_eq!(Arc::strong_count(&shared), 2);
        let thin_copy = thin.clone();
        let boxed_copy = boxed.clone();
        assert_eq!(Arc::strong_count(&shared), 3);
        assert!(matches!(thin_copy.get(), ThinOrArcRef::Thin(b"keyvalue")));
        assert!(matches!(
            thin_copy.clone().get_mut(),
            ThinOrArcMut::Thin(b"keyvalue")
        ));
        // Shared: the write copies, and the copies keep the old value.
        push(&mut boxed, '!');
        assert_eq!(Arc::strong_count(&shared), 2);
        assert!(matches!(boxed.get(), ThinOrArcRef::Arc(s) if s == "boxed!"));
        assert!(matches!(boxed_copy.get(), ThinOrArcRef::Arc(s) if s == "boxed"));
        // Unshared: in place.
        push(&mut boxed, '?');
        assert!(matches!(boxed.get(), ThinOrArcRef::Arc(s) if s == "boxed!?"));
        drop((thin, boxed_copy));
        assert_eq!(Arc::strong_count(&shared), 1);
        let on_threads: Vec<_> = (0..3)
            .map(|_| {
                let (a, b) = (thin_copy.clone(), boxed.clone());
                std::thread::spawn(move || {
                    let copies: Vec<_> = (0..50).map(|_| (a.clone(), b.clone())).collect();
                    assert!(copies
                        .iter()
                        .all(|(a, b)| matches!(a.get(), ThinOrArcRef::Thin(b"keyvalue"))
                            && matches!(b.get(), ThinOrArcRef::Arc(s) if s == "boxed!?")));
                })
            })
            .collect();
        for thread in on_threads {
            thread.join().expect("no panic");
        }
    }
}
