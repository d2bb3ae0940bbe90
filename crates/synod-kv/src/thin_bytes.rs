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

use std::alloc::{self, Layout};
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{self, AtomicU32, Ordering};

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

/// The allocation's layout for `len` bytes, and the offset of the bytes.
fn layout(len: u32) -> (Layout, usize) {
    let bytes = Layout::array::<u8>(len as usize).expect("a u32 length fits a layout");
    let (layout, offset) = Layout::new::<Header>()
        .extend(bytes)
        .expect("a u32 length fits a layout");
    (layout, offset)
}

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
        let (layout, offset) = layout(len);
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
        let (_, offset) = layout(len);
        // SAFETY: `len` bytes at `offset` were written before the handle
        // existed and are never written again (rule 1); they live as long
        // as `self` does.
        unsafe {
            slice::from_raw_parts(self.header.as_ptr().cast::<u8>().add(offset), len as usize)
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
        let (layout, _) = layout(self.header().len);
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
        assert_eq!(layout(100).0.size(), 108);
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
}
