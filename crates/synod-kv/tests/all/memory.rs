//! `--maxmemory` (issue 13): deterministic accounting, `-OOM` decided at
//! apply time from replicated state, SETRANGE/APPEND bounded before any
//! allocation, and the limit carried by snapshots.

use crate::common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use proptest::prelude::*;
use synod::StateMachine;
use synod_kv::{KvCommand, Store};
use synod_resp::Reply;

/// Records the largest single allocation made by the current thread while
/// tracking is on, to prove a refused command allocated nothing big.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; `note`
// only touches const-initialised thread-locals (no allocation, no panic).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f`, returning its result and the largest allocation it made.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|largest| largest.set(0));
    TRACKING.with(|on| on.set(true));
    let result = f();
    TRACKING.with(|on| on.set(false));
    (result, LARGEST.with(Cell::get))
}

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const MB: u64 = 1 << 20;

fn set_limit(h: &mut Harness, bytes: u64) {
    assert_eq!(h.apply(1, &KvCommand::SetMaxMemory { bytes }), ok());
}

#[test]
fn setrange_at_512mb_is_refused_before_any_allocation() {
    let mut h = Harness::new();
    set_limit(&mut h, 100 * MB);
    let (reply, largest) = largest_allocation(|| h.run(2, "SETRANGE k 536870911 x"));
    assert_eq!(reply, err(OOM));
    assert!(largest < MB as usize, "allocated {largest} bytes");
    assert_eq!(h.run(2, "EXISTS k"), int(0));
    // The same growth in steps is refused at the step that crosses.
    assert_eq!(h.run(2, "SETRANGE k 1000 x"), int(1001));
    let (reply, largest) = largest_allocation(|| h.run(2, "SETRANGE k 209715200 x"));
    assert_eq!(reply, err(OOM));
    assert!(largest < MB as usize, "allocated {largest} bytes");
    assert_eq!(h.run(2, "STRLEN k"), int(1001));
}

#[test]
fn the_string_limit_holds_without_maxmemory_and_allocates_nothing() {
    let mut h = Harness::new();
    let (reply, largest) = largest_allocation(|| h.run(2, "SETRANGE k 536870912 x"));
    assert_eq!(reply, err(TOO_LONG));
    assert!(largest < MB as usize, "allocated {largest} bytes");
    // Under a limit too: the string limit answers first, as in Redis.
    set_limit(&mut h, 100 * MB);
    assert_eq!(h.run(2, "SETRANGE k 536870912 x"), err(TOO_LONG));
    assert_eq!(
        h.run(2, "SETRANGE k -1 x"),
        err("ERR offset is out of range")
    );
}

#[test]
fn append_growth_is_bounded_by_the_limit() {
    let mut h = Harness::new();
    set_limit(&mut h, 1000);
    let half = "x".repeat(500);
    assert_eq!(h.run(2, &format!("SET k {half}")), ok());
    let (reply, largest) = largest_allocation(|| h.run(2, &format!("APPEND k {half}")));
    assert_eq!(reply, err(OOM));
    assert!(largest < 600, "allocated {largest} bytes");
    assert_eq!(h.run(2, "STRLEN k"), int(500));
    assert_eq!(h.run(2, "APPEND k abc"), int(503));
}

#[test]
fn only_writes_that_grow_are_refused() {
    let mut h = Harness::new();
    set_limit(&mut h, 400);
    assert_eq!(h.run(2, "SET a 0123456789"), ok());
    assert_eq!(h.run(2, "RPUSH l a b c"), int(3));
    assert_eq!(h.run(2, "HSET h f v"), int(1));
    let (used, max) = h.store.memory();
    assert_eq!(max, 400);
    // 64+1+10 + 64+1+3*(24+1) + 64+1+(48+1+1)
    assert_eq!(used, 75 + 140 + 115);
    let big = "y".repeat(100);
    for line in [
        format!("SET b {big}"),
        format!("APPEND a {big}"),
        format!("RPUSH l {big}"),
        format!("HSET h g {big}"),
        format!("MSET c {big}"),
        "INCR counter".to_string(),
    ] {
        assert_eq!(h.run(2, &line), err(OOM), "{line}");
    }
    // Shrinking, deleting, expiring, reading and flushing always run.
    assert_eq!(h.run(2, "SET a 1"), ok());
    assert_eq!(h.run(2, "GET a"), bulk("1"));
    assert_eq!(h.run(2, "LPOP l"), bulk("a"));
    assert_eq!(h.run(2, "EXPIRE h 100"), int(1));
    assert_eq!(h.run(2, "DEL h"), int(1));
    assert_eq!(h.run(2, "INCR counter"), int(1));
    assert_eq!(h.run(2, "FLUSHALL"), ok());
    assert_eq!(h.store.memory(), (0, 400), "FLUSHALL keeps the limit");
    // A transaction is refused whole.
    let exec = KvCommand::Exec(vec![
        parse_line("SET x 1"),
        parse_line(&format!("SET y {}", "z".repeat(400))),
    ]);
    assert_eq!(h.apply(2, &exec), err(OOM));
    assert_eq!(h.run(2, "EXISTS x"), int(0));
    set_limit(&mut h, 0);
    assert_eq!(h.apply(2, &exec), array(vec![ok(), ok()]));
}

fn parse_line(line: &str) -> KvCommand {
    synod_kv::parse(&args(line)).expect("parses")
}

/// A deterministic workload of growing and shrinking writes.
fn workload(seed: u64, len: usize) -> Vec<String> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..len)
        .map(|_| {
            let r = next();
            let key = r % 23;
            let size = (r >> 8) % 300;
            let text = "v".repeat(size as usize);
            match (r >> 20) % 8 {
                0 | 1 => format!("SET k{key} {text}"),
                2 => format!("APPEND k{key} {text}"),
                3 => format!("SETRANGE k{key} {} ab", size * 3),
                4 => format!("HSET h{} f{size} {text}", key % 5),
                5 => format!("RPUSH l{} {text}", key % 5),
                6 => format!("DEL k{key} h{}", key % 5),
                _ => format!("LPOP l{}", key % 5),
            }
        })
        .collect()
}

#[test]
fn every_replica_refuses_the_same_writes_across_restarts_and_restores() {
    let lines = workload(0x5eed, 3000);
    let (first, second) = lines.split_at(1500);
    let mut a = Harness::new();
    let mut b = Harness::new();
    set_limit(&mut a, 6000);
    set_limit(&mut b, 6000);
    let replies_a: Vec<Reply> = first.iter().map(|line| a.run(10, line)).collect();
    let replies_b: Vec<Reply> = first.iter().map(|line| b.run(10, line)).collect();
    assert_eq!(replies_a, replies_b);
    let refused = replies_a.iter().filter(|reply| **reply == err(OOM)).count();
    assert!(
        refused > 100,
        "the workload must reach the limit ({refused} refusals)"
    );
    assert!(
        refused < 1400,
        "and still apply writes ({refused} refusals)"
    );

    // A third replica restarts from b's snapshot (the limit travels in it);
    // b goes on from its view encoded off the loop.
    let snapshot = b.store.snapshot();
    let job = b.store.snapshot_view().expect("a view");
    assert_eq!(job(), snapshot, "the view encodes what snapshot() does");
    let mut c = Harness::new();
    c.store.restore(&snapshot).expect("restores");
    c.instance = b.instance;
    assert_eq!(c.store.memory(), b.store.memory());
    assert_eq!(c.store.memory().1, 6000);

    let replies: Vec<Vec<Reply>> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|h| second.iter().map(|line| h.run(20, line)).collect())
        .collect();
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[0], replies[2]);
    assert!(replies[0].contains(&err(OOM)));
    assert_eq!(a.store.snapshot(), b.store.snapshot());
    assert_eq!(a.store.snapshot(), c.store.snapshot());
    let (used, max) = a.store.memory();
    assert!(used <= max, "{used} > {max}");
}

/// Snapshots are version 3 (WATCH's stamps, issue 16), limit or not.
#[test]
fn a_snapshot_is_version_3_with_or_without_a_limit() {
    let mut h = Harness::new();
    assert_eq!(h.run(1, "SET k v"), ok());
    assert_eq!(h.store.snapshot()[8], 3);
    set_limit(&mut h, 1 << 30);
    assert_eq!(h.store.snapshot()[8], 3);
    set_limit(&mut h, 0);
    assert_eq!(h.store.snapshot()[8], 3);
}

/// The bytes a build before issue 13 wrote for `SET a 1`, `SET b 22 PXAT
/// 5000`, `HSET h f v`, `RPUSH l x y` (taken from that build). Since
/// version 3 (WATCH's stamps) they are no longer what this build writes,
/// but they still restore to the same data, and a restored store writes
/// version 3 from then on.
const OLD_SNAPSHOT_HEX: &str = include_str!("data/snapshot-v1.hex");

#[test]
fn a_snapshot_earlier_builds_wrote_still_restores() {
    let mut h = Harness::new();
    h.expect_all(
        1,
        &[
            ("SET a 1", ok()),
            ("SET b 22 PXAT 5000", ok()),
            ("HSET h f v", int(1)),
            ("RPUSH l x y", int(2)),
        ],
    );
    let hex = OLD_SNAPSHOT_HEX.trim();
    let old: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect();
    let mut restored = Harness::new();
    restored
        .store
        .restore(&old)
        .expect("a version 1 snapshot restores");
    restored.store.check_invariants().unwrap();
    for line in ["GET a", "PTTL b", "HGETALL h", "LRANGE l 0 -1", "DBSIZE"] {
        assert_eq!(restored.query(1, line), h.query(1, line), "{line}");
    }
    assert_eq!(restored.store.snapshot()[8], 3);
}

#[test]
fn a_view_is_the_state_at_its_point_whatever_follows() {
    let mut h = Harness::new();
    for i in 0..5000 {
        h.run(1, &format!("SET key{i} {i}"));
    }
    h.run(1, "RPUSH l a b c");
    h.run(1, "HSET h f v");
    let before = h.store.snapshot();
    let view = h.store.snapshot_view().expect("a view");
    let keys = h
        .store
        .query_view(&parse_line("KEYS *").encode(), &ctx(h.instance, 1))
        .expect("KEYS over 5000 keys is answered off the loop");
    // Writes after the views, collections shared with them included.
    h.run(2, "RPUSH l d");
    h.run(2, "HSET h g w");
    h.run(2, "SET key0 changed");
    set_limit(&mut h, 1 << 40);
    h.run(2, "FLUSHALL");
    assert_eq!(view(), before);
    let keys = synod_kv::decode_reply(&keys()).expect("a reply");
    let Reply::Array(keys) = keys else {
        panic!("KEYS answers an array");
    };
    assert_eq!(keys.len(), 5002);
    let mut restored = Store::new();
    restored.restore(&before).expect("restores");
    assert_eq!(restored.snapshot(), before);
}

#[test]
fn off_loop_reads_answer_what_query_answers() {
    let mut h = Harness::new();
    for i in 0..5000 {
        h.run(1, &format!("SET key{i} {i}"));
        if i % 2 == 0 {
            h.run(1, &format!("PEXPIRE key{i} {}", 10 + i));
        }
        h.run(1, &format!("RPUSH list {i}"));
        h.run(1, &format!("HSET hash f{i} {i}"));
    }
    for line in [
        "KEYS *",
        "KEYS key1*",
        "SCAN 0 COUNT 10000",
        "SCAN 0 MATCH key2* COUNT 100000 TYPE string",
        "HGETALL hash",
        "LRANGE list 0 -1",
        "LRANGE list 100 -100",
    ] {
        let command = parse_line(line);
        let context = ctx(h.instance, 2000);
        let job = h
            .store
            .query_view(&command.encode(), &context)
            .unwrap_or_else(|| panic!("{line} is answered off the loop"));
        assert_eq!(job(), h.store.query(&command.encode(), &context), "{line}");
    }
    // Small reads stay on the loop.
    for line in ["GET key1", "SCAN 0", "LRANGE list 0 10", "DBSIZE"] {
        let command = parse_line(line);
        assert!(h
            .store
            .query_view(&command.encode(), &ctx(h.instance, 2000))
            .is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Version 2 (a limit set) round-trips: restore gives back the same
    /// bytes, the same accounting and the same limit.
    #[test]
    fn snapshots_with_a_limit_round_trip(seed in any::<u64>(), len in 0usize..300, limit in 1u64..40_000) {
        let mut h = Harness::new();
        set_limit(&mut h, limit);
        for line in workload(seed, len) {
            h.run(5, &line);
        }
        let snapshot = h.store.snapshot_view().expect("a view")();
        let mut restored = Store::new();
        restored.restore(&snapshot).expect("restores");
        restored.check_invariants().unwrap();
        prop_assert_eq!(restored.memory(), h.store.memory());
        prop_assert_eq!(restored.snapshot(), snapshot);
        let (used, max) = h.store.memory();
        prop_assert!(used <= max);
    }
}
