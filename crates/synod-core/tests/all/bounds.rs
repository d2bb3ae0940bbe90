//! Every value and message is bounded by construction (issue 12, item 2).
//!
//! These scenarios run replicas on a wire that behaves like the peer
//! transport: a message whose encoding exceeds the frame limit is never
//! delivered (the old transport dropped it). Before the fix, a value larger
//! than a frame was accepted by `propose`, never chosen, and every later
//! instance waited behind it forever; a candidate whose promises carried more
//! than a frame of values was never elected.

use bytes::Bytes;
use synod_core::codec::{encoded_len, Encode};
use synod_core::*;

/// The frame limit of the simulated transport.
const FRAME_BYTES_MAX: usize = 4096;

/// Small limits, so a few kilobytes exercise every bound.
fn config(id: u32, n: u32) -> Config {
    let members = (1..=n).map(NodeId).collect();
    let mut cfg = Config::new(NodeId(id), members);
    cfg.value_bytes_max = 2048;
    cfg.batch_bytes_max = 4096;
    cfg.promise_bytes_max = 1024;
    cfg.catchup_bytes_max = 1024;
    cfg.snapshot_chunk_bytes_max = 1024;
    assert!(cfg.message_bytes_max() <= FRAME_BYTES_MAX);
    cfg
}

struct Wire {
    r: Vec<Replica>,
    pool: Vec<Message>,
    applied: Vec<Vec<Apply>>,
    /// Durable records per node (everything is durable at once).
    records: Vec<Vec<Record>>,
    down: Vec<bool>,
    /// Messages the transport could not have carried.
    oversized: Vec<(&'static str, usize)>,
    /// Largest message seen, by kind.
    largest: std::collections::BTreeMap<&'static str, usize>,
    /// Promise pages that said more was to come.
    partial_pages: usize,
}

impl Wire {
    fn new(n: u32) -> Wire {
        Wire {
            r: (1..=n)
                .map(|id| Replica::new(config(id, n)).unwrap())
                .collect(),
            pool: vec![],
            applied: vec![vec![]; n as usize],
            records: vec![vec![]; n as usize],
            down: vec![false; n as usize],
            oversized: vec![],
            largest: Default::default(),
            partial_pages: 0,
        }
    }

    /// Takes every effect of `id`; records are durable at once.
    fn pump(&mut self, id: u32) {
        let k = id as usize - 1;
        for _ in 0..1000 {
            let ready = self.r[k].take_ready();
            if ready.is_empty() {
                return;
            }
            for msg in ready.messages {
                let len = encoded_len(&msg);
                debug_assert_eq!(len, msg.to_bytes().len());
                if let Body::Promise {
                    more_from: Some(_), ..
                } = msg.body
                {
                    self.partial_pages += 1;
                }
                let largest = self.largest.entry(msg.body.name()).or_default();
                *largest = (*largest).max(len);
                if len > FRAME_BYTES_MAX {
                    self.oversized.push((msg.body.name(), len));
                } else {
                    self.pool.push(msg);
                }
            }
            self.applied[k].extend(ready.apply);
            assert!(ready.diverged.is_empty());
            if !ready.persist.is_empty() {
                self.records[k].extend(ready.persist);
                self.r[k].persisted(ready.persist_through);
            }
        }
        panic!("n{id} never went quiet");
    }

    /// Restarts `id` from its durable records: it knows no leader, so it
    /// votes for the first candidate that asks (and, left unticked, never
    /// campaigns itself).
    fn restart(&mut self, id: u32) {
        let k = id as usize - 1;
        let n = self.r.len() as u32;
        self.r[k] = Replica::recover(config(id, n), None, &self.records[k]).unwrap();
        self.applied[k].clear();
        self.pump(id);
    }

    /// Delivers every message (to and from live nodes) until none is left.
    fn deliver(&mut self) {
        for _ in 0..100_000 {
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                return;
            }
            for msg in msgs {
                let (from, to) = (msg.from.0, msg.to.0);
                if self.down[from as usize - 1] || self.down[to as usize - 1] {
                    continue;
                }
                self.r[to as usize - 1].step(msg);
                self.pump(to);
            }
        }
        panic!("messages never stopped");
    }

    /// Ticks the nodes in `ids` once, then delivers everything.
    fn tick(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.down[id as usize - 1] {
                self.r[id as usize - 1].tick();
                self.pump(id);
            }
        }
        self.deliver();
    }

    fn role(&self, id: u32) -> RoleKind {
        self.r[id as usize - 1].status().role
    }

    /// Ticks `ids` until `id` leads.
    fn elect(&mut self, id: u32, ids: &[u32]) {
        for _ in 0..2000 {
            if self.role(id) == RoleKind::Leader {
                return;
            }
            self.tick(ids);
        }
        panic!(
            "n{id} never became leader (oversized messages: {:?})",
            self.oversized
        );
    }

    fn propose(&mut self, id: u32, command: Bytes) -> Result<(), RejectReason> {
        let result = self.r[id as usize - 1].propose(command);
        self.pump(id);
        self.deliver();
        result
    }

    fn applied_commands(&self, id: u32) -> Vec<Bytes> {
        self.applied[id as usize - 1]
            .iter()
            .flat_map(|a| a.value.commands().to_vec())
            .collect()
    }

    /// Checks that no message exceeded its bound.
    fn assert_bounded(&self) {
        assert!(self.oversized.is_empty(), "{:?}", self.oversized);
        let bound = self.r[0].config().message_bytes_max();
        for (kind, len) in &self.largest {
            assert!(*len <= bound, "a {kind} of {len} bytes, bound {bound}");
        }
    }
}

fn command(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

/// (a) A command over the limit is refused with a typed reason instead of
/// being proposed; the log goes on, and a later small command is chosen.
/// Before: `propose` accepted it, its Accept never crossed the wire, and the
/// small command waited behind it forever.
#[test]
fn an_oversized_command_is_refused_and_the_log_goes_on() {
    let mut w = Wire::new(3);
    w.elect(1, &[1]);
    let max = w.r[0].config().command_bytes_max();
    assert_eq!(max, 2048 - VALUE_OVERHEAD_BYTES);
    // On the leader and on a follower (which would forward it).
    for id in [1, 2] {
        assert_eq!(
            w.propose(id, command(b'x', max + 1)),
            Err(RejectReason::TooLarge {
                bytes: max + 1,
                max
            })
        );
    }
    w.propose(1, command(b'a', 10)).unwrap();
    w.propose(2, command(b'b', max)).unwrap();
    w.tick(&[1]);
    for id in 1..=3 {
        assert_eq!(
            w.applied_commands(id),
            vec![command(b'a', 10), command(b'b', max)],
            "n{id}"
        );
    }
    w.assert_bounded();
}

/// Many commands that each fit but together do not are split into several
/// instances by bytes, not only by count; every one is chosen.
#[test]
fn batches_are_bounded_by_bytes() {
    let mut w = Wire::new(3);
    w.elect(1, &[1]);
    let commands: Vec<Bytes> = (0..10).map(|i| command(i, 700)).collect();
    for c in &commands {
        w.r[0].propose(c.clone()).unwrap();
    }
    w.pump(1);
    w.deliver();
    w.tick(&[1]);
    for id in 1..=3 {
        assert_eq!(w.applied_commands(id), commands, "n{id}");
        // 700-byte commands, 2048-byte values: two per instance.
        assert_eq!(w.applied[id as usize - 1].len(), 5, "n{id}");
    }
    for apply in &w.applied[0] {
        assert!(apply.value.encoded_len() <= 2048);
    }
    w.assert_bounded();
}

/// (b) A candidate whose promises carry more than a frame of values: n1
/// leads and n1+n2 choose 24 instances of 1 KiB while n3 is down; then n1
/// crashes, n2 restarts, and n3, which has none of them, runs for election
/// and only n2 can answer. n2's promise reports all 24 values (about 25 KiB,
/// six frames), so it comes in pages; n3 is elected, learns every value and
/// leads on.
/// Before: the single Promise exceeded the frame, was never delivered, and
/// n3 could never be elected.
#[test]
fn a_candidate_collects_a_promise_larger_than_a_frame_in_pages() {
    let mut w = Wire::new(3);
    w.down[2] = true;
    w.elect(1, &[1]);
    let commands: Vec<Bytes> = (0..24).map(|i| command(i, 1000)).collect();
    for c in &commands {
        w.propose(1, c.clone()).unwrap();
    }
    w.tick(&[1]);
    assert_eq!(w.applied_commands(2), commands);
    // n1 crashes; n3 comes back with an empty log. Only n3's clock runs, so
    // n3 is the candidate and n2 the only other voter.
    w.down[0] = true;
    w.restart(2);
    w.down[2] = false;
    w.elect(3, &[3]);
    // One 1 KiB value per page (pages hold 1 KiB of entries, or one).
    assert!(w.partial_pages >= 23, "{} partial pages", w.partial_pages);
    w.propose(3, command(b'z', 10)).unwrap();
    w.tick(&[3]);
    let mut expected = commands.clone();
    expected.push(command(b'z', 10));
    for id in [2, 3] {
        assert_eq!(w.applied_commands(id), expected, "n{id}");
    }
    assert_eq!(w.r[2].status().checksum, w.r[1].status().checksum);
    w.assert_bounded();
}

/// A follower far behind catches up in replies bounded by encoded bytes.
#[test]
fn catch_up_replies_are_bounded() {
    let mut w = Wire::new(3);
    w.down[2] = true;
    w.elect(1, &[1]);
    let commands: Vec<Bytes> = (0..24).map(|i| command(i, 1000)).collect();
    for c in &commands {
        w.propose(1, c.clone()).unwrap();
    }
    w.down[2] = false;
    for _ in 0..200 {
        w.tick(&[1, 3]);
    }
    assert_eq!(w.applied_commands(3), commands);
    w.assert_bounded();
}

/// A paginated promise is safe however its pages interleave with a rival:
/// a page that answers a stale request is ignored, and a member counts only
/// once its last page is in. Here n2's pages are duplicated and reordered
/// and the candidate still adopts every accepted value.
#[test]
fn duplicated_and_reordered_promise_pages_are_harmless() {
    let mut w = Wire::new(3);
    w.down[2] = true;
    w.elect(1, &[1]);
    let commands: Vec<Bytes> = (0..12).map(|i| command(i, 1000)).collect();
    for c in &commands {
        w.propose(1, c.clone()).unwrap();
    }
    w.down[0] = true;
    w.restart(2);
    w.down[2] = false;
    // Deliver n3's traffic with every promise delivered twice, newest first.
    for _ in 0..2000 {
        if w.role(3) == RoleKind::Leader {
            break;
        }
        w.r[2].tick();
        w.pump(3);
        for _ in 0..1000 {
            let mut msgs = std::mem::take(&mut w.pool);
            if msgs.is_empty() {
                break;
            }
            msgs.reverse();
            for msg in msgs {
                let (from, to) = (msg.from.0 as usize, msg.to.0 as usize);
                if w.down[from - 1] || w.down[to - 1] {
                    continue;
                }
                if matches!(msg.body, Body::Promise { .. }) {
                    w.r[to - 1].step(msg.clone());
                }
                w.r[to - 1].step(msg);
                w.pump(to as u32);
            }
        }
    }
    assert_eq!(w.role(3), RoleKind::Leader);
    w.tick(&[3]);
    assert_eq!(w.applied_commands(3), commands);
    w.assert_bounded();
}
