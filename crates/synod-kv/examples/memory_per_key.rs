//! Where the bytes of a loaded keyspace go: loads KEYS string keys of
//! VALUE_LEN bytes into a [`Store`] (in a random order, as
//! `redis-benchmark -r` does) and prints, per key, the bytes the store holds
//! on the heap (requested sizes, counted by a wrapping allocator), the
//! number of allocations, and the process's RSS; then the same for a store
//! restored from a snapshot of it.
//!
//! ```text
//! cargo run --release -p synod-kv --example memory_per_key -- [KEYS] [VALUE_LEN]
//! ```
//! (defaults: 1000000 keys of 100 bytes, keys `key:000000123456` as
//! redis-benchmark names them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use synod::{ApplyContext, StateMachine};
use synod_core::InstanceId;
use synod_kv::{KvCommand, SetCondition, SetExpiry, Store};

/// Counts live heap bytes and allocations, then defers to the system
/// allocator.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone, Copy)]
struct Heap {
    bytes: isize,
    allocations: isize,
    rss_bytes: isize,
}

fn heap() -> Heap {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let rss_pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    Heap {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        allocations: LIVE_ALLOCATIONS.load(Ordering::Relaxed),
        rss_bytes: rss_pages * 4096,
    }
}

fn report(what: &str, before: Heap, after: Heap, keys: u64) {
    let per_key = |delta: isize| delta as f64 / keys as f64;
    println!(
        "{what:<28} heap {:>7.1} B/key  allocations {:>5.2}/key  RSS {:>7.1} B/key",
        per_key(after.bytes - before.bytes),
        per_key(after.allocations - before.allocations),
        per_key(after.rss_bytes - before.rss_bytes),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let value_len: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let value = vec![b'x'; value_len];
    let ctx = ApplyContext {
        instance: InstanceId(1),
        time_ms: 1,
        index: 0,
    };

    let empty = heap();
    let mut store = Store::new();
    // A fixed odd multiplier modulo a power of two visits every index once,
    // in a scattered order.
    let span = keys.next_power_of_two();
    let mut loaded = 0u64;
    for step in 0..span {
        let index = step.wrapping_mul(0x9E37_79B9_7F4A_7C15) & (span - 1);
        if index >= keys {
            continue;
        }
        let command = KvCommand::Set {
            key: Bytes::from(format!("key:{index:012}")),
            // A buffer of its own, as a command decoded from the log has.
            value: Bytes::copy_from_slice(&value),
            condition: SetCondition::Always,
            get: false,
            expiry: SetExpiry::Clear,
        };
        store.apply_command(&command, &ctx);
        loaded += 1;
    }
    assert_eq!(store.stats().keys, loaded);
    let full = heap();
    println!("{loaded} keys of {value_len} B (keys of 16 B)");
    report("loaded by SET", empty, full, loaded);

    let snapshot = store.snapshot();
    let with_snapshot = heap();
    report("+ snapshot bytes", full, with_snapshot, loaded);
    let mut restored = Store::new();
    restored
        .restore(&snapshot)
        .expect("a snapshot just written restores");
    let both = heap();
    report("restored from snapshot", with_snapshot, both, loaded);
    drop(snapshot);
    drop(store);
    assert_eq!(restored.stats().keys, loaded);
}
