//! Cohort batching (`Config::batch_hold_ms`), message by message: after a
//! batch of n commands the leader holds the next one back until 4n/5 wait,
//! a batch is full, or the hold's clock runs out.

use crate::common::Cluster;
use bytes::Bytes;
use synod_core::*;

/// Three nodes on a perfect network (`common::Cluster`), `l` leading and
/// `f` (another node) whose Accepts the tests read.
struct Net {
    c: Cluster,
    l: u32,
    f: u32,
}

impl Net {
    /// Three nodes holding batches up to `hold_ms`, every clock at 1000 ms.
    fn new(hold_ms: u64, edit: impl Fn(&mut Config)) -> Net {
        Net::build(hold_ms, true, edit)
    }
    fn build(hold_ms: u64, clocked: bool, edit: impl Fn(&mut Config)) -> Net {
        let mut c = Cluster::with_config(3, |cfg| {
            cfg.batch_hold_ms = hold_ms;
            edit(cfg);
        });
        if clocked {
            for r in c.r.values_mut() {
                r.set_time(1_000);
            }
        }
        let l = c.elect();
        let f = if l == 1 { 2 } else { 1 };
        Net { c, l, f }
    }
    fn leader(&mut self) -> &mut Replica {
        self.c.r.get_mut(&self.l).expect("the leader")
    }
    /// The leader's clients send `n` commands of `len` bytes; returns the
    /// sizes of the batches its Accepts to `f` carry (left in the pool).
    fn send(&mut self, n: usize, len: usize) -> Vec<usize> {
        for _ in 0..n {
            self.leader().propose(Bytes::from(vec![b'x'; len])).unwrap();
        }
        self.c.pump(self.l);
        self.accepts()
    }
    /// The command counts of the Accepts to `f` waiting in the pool.
    fn accepts(&self) -> Vec<usize> {
        self.c
            .pool
            .iter()
            .filter_map(|m| match &m.body {
                Body::Accept { value, .. } if m.to.0 == self.f => Some(value.commands().len()),
                _ => None,
            })
            .collect()
    }
    fn at(&mut self, ms: u64) {
        self.leader().set_time(ms);
        self.c.pump(self.l);
    }
    fn exchange(&mut self) {
        self.c.settle();
    }
    fn applied(&self, id: u32) -> usize {
        self.c.applied(id)
    }
    fn wake_at_ms(&self) -> Option<u64> {
        self.c.r[&self.l].wake_at_ms()
    }
    fn batch_holds(&self) -> (u64, u64) {
        self.c.r[&self.l].batch_holds()
    }
}

#[test]
fn a_batch_waits_for_most_of_the_cohort_just_answered() {
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.applied(n.l), 10);

    // Seven of the ten clients are back: held, with a wake-up asked for.
    assert!(n.send(7, 8).is_empty(), "held for the cohort");
    assert_eq!(n.wake_at_ms(), Some(1_003), "at least 2 ms on");
    // The eighth (4/5 of ten) releases the batch at once.
    assert_eq!(n.send(1, 8), [8]);
    assert_eq!(n.wake_at_ms(), None);
    assert_eq!(n.batch_holds(), (1, 0));
}

#[test]
fn a_hold_ends_on_its_clock_then_backs_off() {
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(2, 8).is_empty());
    assert_eq!(n.wake_at_ms(), Some(1_003));
    n.at(1_002);
    assert!(n.accepts().is_empty(), "released before the hold's end");
    n.at(1_003);
    assert_eq!(n.accepts(), [2], "the hold's clock ran out");
    assert_eq!(n.batch_holds(), (1, 1));
    n.exchange();

    // Backing off: what comes within the next 4 ms goes at once, though
    // fewer than 4/5 of the last cohort.
    assert_eq!(n.send(1, 8), [1]);
    n.exchange();
    assert_eq!(n.batch_holds(), (1, 1));
    assert_eq!(
        n.applied(6 - n.l - n.f),
        13,
        "everything chosen reached node 3"
    );
}

#[test]
fn commands_wait_while_a_batch_is_in_flight_then_on_the_clock() {
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    // Not chosen yet: three more wait for the cohort, with no clock.
    assert_eq!(n.send(3, 8), [10], "no new Accept");
    assert_eq!(n.wake_at_ms(), None, "the commit ends this wait");
    n.exchange();
    assert_eq!(n.applied(n.l), 10);
    // Drained: now the clock runs (4/5 of the 13 outstanding is 10).
    assert!(n.accepts().is_empty());
    assert_eq!(n.wake_at_ms(), Some(1_003));
    assert_eq!(n.send(7, 8), [10]);
    assert_eq!(n.batch_holds(), (1, 0));
}

#[test]
fn one_or_two_clients_never_wait() {
    let mut n = Net::new(2, |_| {});
    for _ in 0..5 {
        assert_eq!(n.send(1, 8), [1]);
        n.exchange();
    }
    for _ in 0..5 {
        assert_eq!(n.send(2, 8), [2]);
        n.exchange();
        assert_eq!(n.send(1, 8), [1], "4/5 of two is one");
        n.exchange();
    }
    assert_eq!(n.batch_holds(), (0, 0));
}

#[test]
fn a_full_batch_never_waits() {
    // Batches of at most 100 command bytes.
    let mut n = Net::new(2, |cfg| cfg.batch_bytes_max = 100);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    // Two commands that do not fit one batch: the first batch is full and
    // goes at once; the second then waits, alone, for the cohort.
    assert_eq!(n.send(2, 60), [1]);
    assert_eq!(n.batch_holds(), (1, 0));
    n.exchange();
    assert_eq!(n.applied(n.l), 11);
    assert_eq!(n.send(7, 1), [8], "the cohort came back");
}

#[test]
fn no_hold_when_off_or_without_a_clock() {
    let mut n = Net::new(0, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.send(1, 8), [1]);

    // No time given: the hold would have no clock to end on; none begins.
    let mut n = Net::build(2, false, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.send(1, 8), [1]);
    assert_eq!(n.batch_holds(), (0, 0));
}

#[test]
fn a_leader_idle_for_a_while_does_not_hold() {
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    for r in n.c.r.values_mut() {
        r.set_time(1_021);
    }
    assert_eq!(n.send(1, 8), [1], "over 20 ms since the last batch");
    assert_eq!(n.batch_holds(), (0, 0));
}

/// After a hold that ran out, no hold for 4 ms, then 8 after another in a
/// row; a cohort that comes back sets it to 4 ms again.
#[test]
fn a_hold_that_ran_out_stops_holding_for_a_while_doubling() {
    let mut n = Net::new(1, |_| {});
    let miss = |n: &mut Net, at: u64| {
        n.at(at);
        assert_eq!(n.send(10, 8), [10]);
        n.exchange();
        assert!(n.send(1, 8).is_empty(), "held at {at}");
        n.at(at + 2);
        assert_eq!(n.accepts(), [1], "ran out at {}", at + 2);
        n.exchange();
    };
    miss(&mut n, 1_000);
    assert_eq!(n.batch_holds(), (1, 1));
    // Backing off until 1 006: a cohort of ten, then one command alone.
    n.at(1_005);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.send(1, 8), [1], "no hold while backing off");
    n.exchange();
    // Then a hold again, and it runs out: 8 ms of backing off now.
    miss(&mut n, 1_006);
    assert_eq!(n.batch_holds(), (2, 2));
    n.at(1_015);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.send(1, 8), [1], "still backing off at 1 015");
    n.exchange();
    // After it, a cohort that comes back...
    n.at(1_016);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(1, 8).is_empty());
    assert_eq!(n.send(7, 8), [8]);
    n.exchange();
    assert_eq!(n.batch_holds(), (3, 2));
    // ...makes the next miss back off 4 ms only.
    miss(&mut n, 1_017);
    n.at(1_023);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(1, 8).is_empty(), "4 ms of backing off were over");
}

/// A hold longer than the 20 ms after which a leader counts as idle still
/// ends on its own clock, and counts as one that ran out.
#[test]
fn a_long_hold_ends_on_its_clock() {
    let mut n = Net::new(30, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(2, 8).is_empty());
    assert_eq!(n.wake_at_ms(), Some(1_031));
    n.at(1_025);
    assert!(n.accepts().is_empty(), "idle for 25 ms, but holding");
    n.at(1_031);
    assert_eq!(n.accepts(), [2]);
    assert_eq!(n.batch_holds(), (1, 1));
}

/// A runtime that stops giving the time: the second tick ends the hold (a
/// fresh time in whole ms often has not moved at the first).
#[test]
fn a_tick_ends_a_hold_on_a_stale_clock() {
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(2, 8).is_empty());
    n.leader().tick();
    n.c.pump(n.l);
    assert!(n.accepts().is_empty(), "one tick within the same ms");
    n.leader().tick();
    n.c.pump(n.l);
    assert_eq!(n.accepts(), [2], "the time did not move: the tick ends it");
    assert_eq!(n.batch_holds(), (1, 1));
}

/// The leader's heartbeats waiting in the pool.
fn heartbeats(n: &Net) -> usize {
    n.c.pool
        .iter()
        .filter(|m| m.from.0 == n.l && matches!(m.body, Body::Heartbeat { .. }))
        .count()
}

/// A leader holding up to `hold_ms`, with an announce delay of 1 ms, made
/// busy: a cohort of ten chosen (its drain announced at once: not busy
/// yet), then eight of them back, released at once, in flight.
fn busy(hold_ms: u64) -> Net {
    let mut n = Net::new(hold_ms, |cfg| cfg.announce_delay_ms = 1);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.applied(n.f), 10, "not busy yet: announced at once");
    assert!(n.send(7, 8).is_empty());
    assert_eq!(n.send(1, 8), [8], "released by the cohort, at 1 000");
    n
}

/// With an announce delay (`Config::announce_delay_ms`), a busy leader's
/// drained pipeline announces the chosen prefix when the cohort hold that
/// is likely next would end, unless the batch it releases carries it first:
/// no heartbeat round per batch. Busy now also means: the last drain's batch
/// came by the end of the hold expected then.
#[test]
fn the_held_batch_carries_the_drained_prefix() {
    let mut n = busy(2);
    n.exchange();
    assert_eq!(n.applied(n.l), 18);
    assert_eq!(n.applied(n.f), 10, "busy: the drain waits");
    assert_eq!(n.wake_at_ms(), Some(1_003), "until the hold would end");
    n.at(1_001);
    assert_eq!(heartbeats(&n), 0, "not when the announce delay ends");
    assert!(n.send(7, 8).is_empty());
    assert_eq!(n.send(1, 8), [8]);
    assert_eq!(heartbeats(&n), 0, "the Accepts carry the prefix");
    n.exchange();
    assert_eq!(n.applied(n.f), 18, "learned from the Accepts");

    // Two commands held behind a batch in flight: the drain arms the
    // hold's clock, and the batch its end releases carries the prefix.
    assert!(n.send(7, 8).is_empty());
    assert_eq!(n.send(1, 8), [8]);
    assert_eq!(n.send(2, 8), [8], "no new Accept");
    n.exchange();
    assert_eq!(n.applied(n.l), 34);
    assert_eq!(n.wake_at_ms(), Some(1_004));
    n.at(1_003);
    assert_eq!(heartbeats(&n), 0);
    n.at(1_004);
    assert_eq!(n.accepts(), [2], "the hold ran out");
    assert_eq!(heartbeats(&n), 0, "the Accepts carry the prefix");
    n.exchange();
    assert_eq!(n.batch_holds(), (4, 1));
    // Backing off after that miss: no hold to wait for, this (busy)
    // drain waits for the announce delay only.
    assert_eq!(n.applied(n.f), 34);
    assert_eq!(n.wake_at_ms(), Some(1_005));

    // No announce delay: at once, busy or not.
    let mut n = Net::new(2, |_| {});
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(7, 8).is_empty());
    assert_eq!(n.send(1, 8), [8]);
    n.exchange();
    assert_eq!(n.applied(n.f), 18);
}

/// A hold that starts after the drain ends later than the drain's
/// announcement, which goes then, not at the hold's end: followers learn
/// the prefix at most the hold (plus the whole-ms rounding) after a drain.
#[test]
fn a_drain_is_announced_no_later_than_the_hold_it_expected() {
    let mut n = busy(2);
    n.exchange();
    assert_eq!(n.applied(n.f), 10);
    n.at(1_001);
    assert!(n.send(2, 8).is_empty(), "held until 1 004");
    assert_eq!(n.wake_at_ms(), Some(1_003));
    n.at(1_003);
    assert_eq!(heartbeats(&n), 2, "the drain's round, to both followers");
    n.exchange();
    assert_eq!(n.applied(n.f), 18);
    n.at(1_004);
    assert_eq!(n.accepts(), [2]);
}

/// Clients that come back together, but after longer than the hold: no
/// hold arms, and no drain waits for one (each is announced at once, as
/// the batch after it never came by the hold's end).
#[test]
fn bursts_further_apart_than_the_hold_are_announced_at_once() {
    let mut n = Net::new(1, |cfg| cfg.announce_delay_ms = 1);
    for round in 1..=5 {
        n.at(1_000 + 5 * round);
        assert_eq!(n.send(10, 8), [10], "round {round}");
        n.exchange();
        assert_eq!(n.applied(n.f), 10 * round as usize, "round {round}");
    }
    assert_eq!(n.batch_holds(), (0, 0));
}

/// While backing off after a hold that ran out, or with a cohort of one,
/// a drain waits for no hold: at once, or the announce delay only.
#[test]
fn no_wait_for_a_hold_while_backing_off_or_at_one_client() {
    let mut n = Net::new(2, |cfg| cfg.announce_delay_ms = 1);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert!(n.send(3, 8).is_empty());
    n.at(1_003);
    assert_eq!(n.accepts(), [3], "ran out with three back");
    n.exchange();
    // A cohort of three holds (4/5 of it is 2), but not while backing off:
    // the (busy) drain waits for the announce delay only.
    assert_eq!(n.applied(n.f), 10);
    assert_eq!(n.wake_at_ms(), Some(1_004), "the delay, not the hold");

    let mut n = Net::new(20, |cfg| cfg.announce_delay_ms = 1);
    assert_eq!(n.send(1, 8), [1]);
    n.exchange();
    assert_eq!(n.applied(n.f), 1, "not busy yet: at once");
    assert_eq!(n.send(1, 8), [1]);
    n.exchange();
    assert_eq!(n.applied(n.f), 1);
    assert_eq!(n.wake_at_ms(), Some(1_001), "the delay, not the hold");
}

/// A batch that comes after the announce delay but by the end of the hold
/// the drain expected makes the leader busy, so the next drain waits for
/// its hold too.
#[test]
fn a_batch_by_the_expected_holds_end_counts_as_busy() {
    let mut n = Net::new(2, |cfg| cfg.announce_delay_ms = 1);
    assert_eq!(n.send(10, 8), [10]);
    n.exchange();
    assert_eq!(n.applied(n.f), 10, "not busy yet: at once");
    n.at(1_002);
    assert_eq!(n.send(8, 8), [8], "2 ms after the drain, within its hold");
    n.exchange();
    assert_eq!(n.applied(n.f), 10, "busy: the drain waits");
    assert_eq!(n.wake_at_ms(), Some(1_005));
}

/// A transfer stops proposals: no batch will carry a drain's prefix, which
/// waits for the announce delay only.
#[test]
fn a_drain_during_a_transfer_waits_for_no_hold() {
    let mut n = busy(20);
    // The target hears nothing: the transfer waits for it.
    n.c.cut.push((n.l, n.f));
    let to = NodeId(n.f);
    n.leader().transfer_leadership(to).unwrap();
    n.exchange();
    assert_eq!(
        n.applied(n.l),
        18,
        "chosen by the leader and the third node"
    );
    assert_eq!(n.wake_at_ms(), Some(1_001), "the delay, not the hold");
}

/// A batch chosen more than 20 ms after it went leaves an idle leader,
/// which holds nothing (`a_leader_idle_for_a_while_does_not_hold`): its
/// drain waits for the announce delay only.
#[test]
fn a_drain_long_after_the_last_batch_waits_for_no_hold() {
    let mut n = busy(2);
    n.at(1_025);
    n.exchange();
    assert_eq!(n.applied(n.l), 18);
    assert_eq!(n.wake_at_ms(), Some(1_026), "the delay, not the hold");
}
