//! Leader leases (`Config::read_lease`), message by message: reads served
//! with no round while the lease holds, grants that keep candidates out,
//! the hold after a restart, and a transfer that releases the grants.

use bytes::Bytes;
use synod_core::*;

const LEASE: Lease = Lease {
    duration_ms: 1000,
    drift_ppm: 10_000,
};

struct Net {
    r: Vec<Replica>,
    pool: Vec<Message>,
    applied: Vec<Vec<Bytes>>,
    served: Vec<Vec<u64>>,
    /// Per node, its local clock (ms).
    clock: Vec<u64>,
    /// Per node, every record it handed out to persist (for restarts).
    records: Vec<Vec<Record>>,
}

impl Net {
    /// `n` nodes, all with `LEASE`.
    fn new(n: u32) -> Net {
        Net::with(&vec![Some(LEASE); n as usize])
    }
    /// A node per entry, with that lease setting.
    fn with(leases: &[Option<Lease>]) -> Net {
        let n = leases.len() as u32;
        let mut net = Net {
            r: Vec::new(),
            pool: vec![],
            applied: vec![vec![]; n as usize],
            served: vec![vec![]; n as usize],
            clock: vec![0; n as usize],
            records: vec![vec![]; n as usize],
        };
        for (k, lease) in leases.iter().enumerate() {
            net.r
                .push(Replica::new(cfg(k as u32 + 1, n, *lease)).unwrap());
        }
        net.set_all(0);
        // Past every node's restart hold.
        net.advance_all(LEASE.duration_ms);
        net
    }
    fn set_all(&mut self, ms: u64) {
        for k in 0..self.r.len() {
            self.clock[k] = ms;
            self.r[k].set_time(ms);
        }
    }
    fn advance_all(&mut self, ms: u64) {
        for k in 0..self.r.len() {
            self.advance(k as u32 + 1, ms);
        }
    }
    fn advance(&mut self, id: u32, ms: u64) {
        let k = id as usize - 1;
        self.clock[k] += ms;
        self.r[k].set_time(self.clock[k]);
    }
    fn pump(&mut self, id: u32) {
        let k = id as usize - 1;
        loop {
            let ready = self.r[k].take_ready();
            if ready.is_empty() {
                break;
            }
            self.pool.extend(ready.messages);
            self.records[k].extend(ready.persist.iter().cloned());
            for apply in ready.apply {
                self.applied[k].extend(apply.value.commands().iter().cloned());
            }
            for read in ready.reads {
                self.served[k].push(read.0);
            }
            if !ready.persist.is_empty() {
                self.r[k].persisted(ready.persist_through);
            }
        }
    }
    fn tick(&mut self, id: u32) {
        self.r[id as usize - 1].tick();
        self.pump(id);
    }
    fn role(&self, id: u32) -> RoleKind {
        self.r[id as usize - 1].status().role
    }
    /// Delivers messages matching `pred`, drops the rest, until quiet.
    fn exchange(&mut self, pred: impl Fn(&Message) -> bool) {
        for _ in 0..10_000 {
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if pred(&m) {
                    let to = m.to.0;
                    self.r[to as usize - 1].step(m);
                    self.pump(to);
                }
            }
        }
        panic!("messages never stopped");
    }
    /// Node `id` campaigns and wins with everyone.
    fn elect(&mut self, id: u32) {
        for _ in 0..1000 {
            if self.role(id) != RoleKind::Follower {
                break;
            }
            self.pool.clear();
            self.tick(id);
        }
        self.exchange(|_| true);
        assert_eq!(self.role(id), RoleKind::Leader);
    }
    fn write(&mut self, at: u32, command: &'static [u8]) {
        self.r[at as usize - 1]
            .propose(Bytes::from_static(command))
            .unwrap();
        self.pump(at);
        self.exchange(|_| true);
    }
    /// Ticks the leader until it sends a heartbeat round, and delivers it
    /// and the answers.
    fn heartbeat_round(&mut self, leader: u32) {
        self.heartbeat_round_where(leader, |_| true);
    }
    /// As `heartbeat_round`, delivering only the messages matching `pred`.
    fn heartbeat_round_where(&mut self, leader: u32, pred: impl Fn(&Message) -> bool) {
        for _ in 0..100 {
            self.tick(leader);
            if self
                .pool
                .iter()
                .any(|m| matches!(m.body, Body::Heartbeat { .. }))
            {
                break;
            }
        }
        self.exchange(pred);
    }
}

fn members(n: u32) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

/// Node `id` of `n`, with lease setting `lease`.
fn cfg(id: u32, n: u32, lease: Option<Lease>) -> Config {
    let mut cfg = Config::new(NodeId(id), members(n));
    cfg.seed = u64::from(id) * 7919;
    cfg.read_lease = lease;
    cfg
}

fn replica(id: NodeId, members: &[NodeId]) -> Replica {
    Replica::new(cfg(id.0, members.len() as u32, Some(LEASE))).unwrap()
}

#[test]
fn a_leader_with_a_lease_serves_a_read_at_once_without_a_round() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    assert!(n.r[0].holds_lease());
    n.pool.clear();
    n.r[0].read(ReadId(7)).unwrap();
    n.pump(1);
    assert_eq!(n.served[0], vec![7], "served at once");
    assert!(
        !n.pool
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat { .. })),
        "no round for a lease read"
    );
    assert_eq!(n.r[0].lease_reads(), 1);
}

/// A write proposed and not chosen cannot have completed anywhere, so a
/// lease read does not wait for it: it is served at once, at the end of
/// what the leader knows chosen, below the write's instance.
#[test]
fn a_write_in_flight_does_not_hold_back_a_lease_read() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    assert!(n.r[0].holds_lease());
    let chosen = n.r[0].status().chosen_end;
    assert_eq!(n.r[0].status().applied_end, chosen);
    // "y" goes out; its Accepts stay in the pool, undelivered.
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    assert!(n
        .pool
        .iter()
        .any(|m| matches!(m.body, Body::Accept { instance, .. } if instance == chosen)));
    let (index, _) = n.r[0].lease_read_window().expect("lease window");
    assert_eq!(
        index, chosen,
        "the read index is what is chosen, not proposed"
    );
    n.r[0].read(ReadId(9)).unwrap();
    n.pump(1);
    assert_eq!(n.served[0], vec![9], "served before the write is chosen");
    assert_eq!(n.applied[0], vec![Bytes::from_static(b"x")]);
    // Once "y" is chosen and applied, reads see it.
    n.exchange(|_| true);
    assert_eq!(n.r[0].status().applied_end, chosen.next());
    let (index, _) = n.r[0].lease_read_window().expect("lease window");
    assert_eq!(index, chosen.next());
}

/// The read index is past every instance the leader knows chosen, not only
/// its chosen prefix: an instance whose acceptances came first while the
/// one below waits. (Another replica may know the one below chosen from an
/// earlier leader and apply both: `reads.rs`.)
#[test]
fn the_read_index_is_past_instances_known_chosen_out_of_order() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    let first = n.r[0].status().chosen_end;
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    n.r[0].propose(Bytes::from_static(b"z")).unwrap();
    n.pump(1);
    let second = first.next();
    // Only the second instance's Accept reaches node 2, and only its
    // answer comes back: the leader knows `second` chosen, not `first`.
    n.exchange(|m| match &m.body {
        Body::Accept { instance, .. } => m.to == NodeId(2) && *instance == second,
        Body::Accepted { instance, .. } => *instance == second,
        _ => false,
    });
    assert_eq!(n.r[0].status().chosen_end, first, "the prefix waits");
    let (index, _) = n.r[0].lease_read_window().expect("lease window");
    assert_eq!(index, second.next(), "past what is known chosen");
    // So a read waits until both are applied.
    n.r[0].read(ReadId(3)).unwrap();
    n.pump(1);
    assert!(n.served[0].is_empty());
    // The first instance's Accepts were dropped above: the leader sends
    // them again on a tick.
    for _ in 0..100 {
        if !n.served[0].is_empty() {
            break;
        }
        n.tick(1);
        n.exchange(|_| true);
    }
    assert_eq!(n.served[0], vec![3]);
    assert_eq!(n.r[0].status().applied_end, second.next());
}

#[test]
fn the_lease_runs_out_after_d_on_the_leaders_clock() {
    let mut n = Net::new(3);
    n.elect(1);
    n.heartbeat_round(1);
    assert!(n.r[0].holds_lease());
    // The round left at the current time: D later the lease is gone.
    n.advance(1, LEASE.leader_hold_ms() - 1);
    assert!(n.r[0].holds_lease());
    n.advance(1, 1);
    assert!(!n.r[0].holds_lease());
    n.pool.clear();
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    assert!(n.served[0].is_empty(), "no lease: wait for a round");
    assert!(n
        .pool
        .iter()
        .any(|m| matches!(m.body, Body::Heartbeat { .. })));
    n.exchange(|_| true);
    assert_eq!(n.served[0], vec![1]);
    assert_eq!(n.r[0].lease_reads(), 0);
}

#[test]
fn a_follower_answers_read_index_requests_at_once_under_the_lease() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    n.pool.clear();
    n.r[1].read(ReadId(3)).unwrap();
    n.pump(2);
    // Request to the leader, reply from it: no heartbeat in between.
    n.exchange(|m| !matches!(m.body, Body::Heartbeat { .. }));
    assert_eq!(n.served[1], vec![3]);
    assert_eq!(n.r[0].lease_reads(), 1);
}

#[test]
fn a_follower_that_granted_a_lease_refuses_other_candidates_until_l_passes() {
    let mut n = Net::new(3);
    n.elect(1);
    n.heartbeat_round(1);
    // n1 goes silent; n2 campaigns but n3 (and n2 itself) granted n1 a
    // lease: n2 does not even campaign until its grant runs out.
    n.pool.clear();
    for _ in 0..200 {
        n.tick(2);
    }
    assert_eq!(n.role(2), RoleKind::Follower, "bound by its own grant");
    n.advance(2, LEASE.duration_ms);
    for _ in 0..200 {
        n.tick(2);
        if n.role(2) == RoleKind::Candidate {
            break;
        }
    }
    assert_eq!(n.role(2), RoleKind::Candidate);
    // n3's grant still holds: it refuses the Prepare.
    n.exchange(|m| m.from.0 != 1 && m.to.0 != 1);
    assert_eq!(n.role(2), RoleKind::Candidate, "n3 refused to promise");
    // Once n3's grant runs out too, n2 wins. By then n1's lease (D < L on
    // a clock that ran at the same rate) is long over.
    n.advance(3, LEASE.duration_ms);
    n.advance(1, LEASE.duration_ms);
    assert!(!n.r[0].holds_lease());
    for _ in 0..200 {
        n.tick(2);
        n.tick(3);
        n.exchange(|m| m.from.0 != 1 && m.to.0 != 1);
        if n.role(2) == RoleKind::Leader {
            break;
        }
    }
    assert_eq!(n.role(2), RoleKind::Leader);
}

#[test]
fn a_restarted_replica_promises_nothing_new_for_l_from_its_start() {
    let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut r = replica(NodeId(3), &members);
    r.set_time(5_000);
    let prepare = |round| Message {
        group: GroupId(0),
        from: NodeId(2),
        to: NodeId(3),
        body: Body::Prepare {
            ballot: Ballot {
                round,
                node: NodeId(2),
            },
            first_instance: InstanceId(0),
        },
    };
    r.step(prepare(1));
    let ready = r.take_ready();
    assert!(
        ready
            .messages
            .iter()
            .all(|m| matches!(m.body, Body::Reject { .. })),
        "promised during the hold: {:?}",
        ready.messages
    );
    r.set_time(5_000 + LEASE.duration_ms);
    r.step(prepare(2));
    let ready = r.take_ready();
    assert!(ready
        .persist
        .iter()
        .any(|rec| matches!(rec, Record::Promise { .. })));
}

#[test]
fn a_transfer_releases_the_grants_and_is_not_delayed_by_the_lease() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    assert!(n.r[0].holds_lease());
    n.r[0].transfer_leadership(NodeId(2)).unwrap();
    n.pump(1);
    // No time passes: the grants for n1 still hold, but TakeOver drops them.
    for _ in 0..20 {
        n.exchange(|_| true);
        if n.role(2) == RoleKind::Leader {
            break;
        }
        n.tick(1);
    }
    assert_eq!(n.role(2), RoleKind::Leader);
    assert!(!n.r[0].holds_lease(), "the old leader gave its lease up");
    n.write(2, b"y");
    n.heartbeat_round(2);
    n.r[1].read(ReadId(9)).unwrap();
    n.pump(2);
    assert_eq!(n.served[1], vec![9]);
    assert_eq!(n.applied[1].len(), 2);
}

#[test]
fn a_lease_counted_before_a_reconfiguration_does_not_serve_after_it() {
    let mut n = Net::new(3);
    n.elect(1);
    n.heartbeat_round(1);
    assert!(n.r[0].holds_lease());
    let change = MembershipChange::Add {
        id: NodeId(4),
        addr: Bytes::new(),
        promote: false,
    };
    n.r[0].propose_change(change, false).unwrap();
    n.pump(1);
    // The change is in flight (its Accepts not delivered): the membership
    // it makes is counted for reads, and the lease was not counted with it.
    n.pool.clear();
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    assert!(
        n.served[0].is_empty(),
        "served by a lease counted without it"
    );
    assert_eq!(n.r[0].lease_reads(), 0);
}

// Regression tests from the attack review of leases (issue 15): a rebuilt
// node inside its restart hold, and nodes with different lease settings.

fn cut(a: u32, b: u32) -> impl Fn(&Message) -> bool {
    move |m: &Message| !((m.from.0 == a && m.to.0 == b) || (m.from.0 == b && m.to.0 == a))
}

/// Rule 2 (the restart hold) is skipped for a Prepare at a ballot equal to
/// the acceptor's promise (`lease_refuses_promise`: `ballot <= promised`).
/// A rebuilding replica raises its promise to the highest one reported
/// (`check_rebuild_done`) without ever promising it to anyone, so the
/// candidate whose ballot that is gets the rebuilt node's promise at once,
/// inside the restart hold, although the node's lost incarnation granted
/// the current leader a lease moments before. The old leader then serves a
/// stale read by lease after the new leader completed a write.
#[test]
fn a_rebuilt_node_refuses_promises_inside_its_restart_hold() {
    let lease = Some(LEASE);
    let mut n = Net::with(&[lease, lease, lease]);
    n.elect(1);
    // n1 and n3 lose each other; n1 keeps its lease with n2 alone.
    let no13 = cut(1, 3);
    n.heartbeat_round_where(1, &no13);
    // n3's own grant for n1 runs out, it hears nothing: it campaigns at b'.
    n.advance(3, LEASE.duration_ms);
    for _ in 0..400 {
        n.tick(3);
        if n.role(3) == RoleKind::Candidate {
            break;
        }
    }
    assert_eq!(n.role(3), RoleKind::Candidate);
    // n1 renews its lease with n2 now (n2 refuses n3: grant + stickiness).
    n.pool.retain(|m| m.to.0 != 2); // n3's Prepare to n2 is lost
    n.heartbeat_round_where(1, &no13);
    assert!(n.r[0].holds_lease());
    // n2's disk is wiped right after it acknowledged; it restarts at once in
    // rebuild mode, its clock at some origin (the restart hold starts).
    let mut c = cfg(2, 3, lease);
    c.rebuild = true;
    n.r[1] = Replica::new(c).unwrap();
    n.r[1].set_time(50_000);
    n.pool.clear();
    // n2 rebuilds: state reports from n1 and n3, catch-up. It hears no
    // heartbeat or Accept from n1 (n1's link to n2 carries only the report;
    // a pause of n1 or drops do it as well), so no stickiness for n1.
    let only_reports_from_1 =
        |m: &Message| no13(m) && (m.from.0 != 1 || matches!(m.body, Body::StateReport { .. }));
    let mut promised_to_3 = false;
    for _ in 0..200 {
        n.tick(2);
        n.tick(3);
        n.exchange(only_reports_from_1);
        if n.role(3) == RoleKind::Leader {
            promised_to_3 = true;
            break;
        }
    }
    assert!(!n.r[1].rebuilding(), "n2 never finished rebuilding");
    // Fixed: only a ballot this incarnation promised itself skips the lease
    // checks, so n2 (clock still at its restart) refuses n3, which cannot
    // win without it. Before the fix n3 won here and the read below was
    // served stale.
    assert!(
        !promised_to_3,
        "n2 promised n3 inside its restart hold (its promise was raised by the rebuild)"
    );
}

/// n2 crashes right after acknowledging n1's round and recovers from its
/// durable records (no disk loss), with lease setting `lease2`; n3, cut off
/// from n1, campaigns meanwhile. Returns whether n1 held a lease after the
/// round, and whether it then served a stale read by lease after `y`
/// completed at n3.
fn restart_of_a_granting_follower(lease2: Option<Lease>) -> (bool, bool) {
    let lease = Some(LEASE);
    let mut n = Net::with(&[lease, lease2, lease2]);
    n.elect(1);
    let no13 = cut(1, 3);
    n.heartbeat_round_where(1, &no13);
    n.advance(3, LEASE.duration_ms);
    for _ in 0..400 {
        n.tick(3);
        if n.role(3) == RoleKind::Candidate {
            break;
        }
    }
    assert_eq!(n.role(3), RoleKind::Candidate);
    n.pool.retain(|m| m.to.0 != 2);
    n.heartbeat_round_where(1, &no13);
    let held = n.r[0].holds_lease();
    // n2 crashes and restarts from its records at once.
    let records = n.records[1].clone();
    n.r[1] = Replica::recover(cfg(2, 3, lease2), None, &records).unwrap();
    n.r[1].set_time(50_000);
    n.pool.clear();
    let no_1 = |m: &Message| m.from.0 != 1 && m.to.0 != 1;
    for _ in 0..200 {
        n.tick(2);
        n.tick(3);
        n.exchange(no_1);
        if n.role(3) == RoleKind::Leader {
            break;
        }
    }
    if n.role(3) != RoleKind::Leader {
        return (held, false);
    }
    n.r[2].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(3);
    for _ in 0..50 {
        n.tick(3);
        n.exchange(no_1);
    }
    assert!(
        n.applied[2].iter().any(|c| &c[..] == b"y"),
        "y completed at n3"
    );
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    let stale = n.served[0].contains(&1) && !n.applied[0].iter().any(|c| &c[..] == b"y");
    (held, stale)
}

/// Control: with the lease on everywhere, the restart hold keeps n2 from
/// promising n3, and n1 serves nothing stale.
#[test]
fn control_a_restarted_follower_with_the_lease_on_holds() {
    let (held, stale) = restart_of_a_granting_follower(Some(LEASE));
    assert!(held, "the control must reach a held lease");
    assert!(!stale);
}

/// Mixed settings (a rolling enablement of `--read-lease`, or a node
/// started without the flag): a follower without a lease acknowledges
/// with its probe (`grant_lease` returns true when `read_lease` is None),
/// so the leader counts it toward its lease, but it keeps no restart hold
/// (nor grant). The README says "use the same setting on every node", but
/// nothing checks it: one forgotten flag turns into stale reads.
#[test]
fn a_follower_without_the_lease_setting_counts_toward_the_lease_but_holds_nothing() {
    // Fixed: the acknowledgement says what it granted (nothing here), and
    // the leader counts only grants at least as long and strict as its own.
    let (held, stale) = restart_of_a_granting_follower(None);
    assert!(
        !held,
        "n2 and n3 (lease off) granted nothing, yet n1 counted them toward a lease"
    );
    assert!(
        !stale,
        "stale read by lease: n2 (lease off) counted toward n1's lease, restarted and promised n3 at once"
    );
}

/// Mixed durations: n2 and n3 grant for 100 ms, the leader believes 1000.
#[test]
fn a_follower_with_a_shorter_lease_setting_counts_toward_a_longer_lease() {
    let short = Some(Lease {
        duration_ms: 100,
        drift_ppm: 10_000,
    });
    let mut n = Net::with(&[Some(LEASE), short, short]);
    n.elect(1);
    n.heartbeat_round(1);
    // 150 ms later on every clock: n2's and n3's grants are over, n1's
    // lease (D = 979 ms) is not.
    for id in 1..=3 {
        n.advance(id, 150);
    }
    assert!(
        !n.r[0].holds_lease(),
        "n1 holds a lease for 979 ms on grants of 100 ms that ran out 50 ms ago"
    );
}

// Master leases (`Replica::master_lease`, `replica/master.rs`).

#[test]
fn a_master_lease_is_lent_only_to_a_leader_holding_its_lease_and_ends_with_it() {
    let mut n = Net::new(3);
    assert_eq!(n.r[0].master_lease(), None, "not leading yet");
    n.elect(1);
    n.heartbeat_round(1);
    let lease = n.r[0].master_lease().expect("a lease after a round");
    // The round left at the current time: the lease ends D later.
    assert_eq!(lease.until_ms, n.clock[0] + LEASE.leader_hold_ms());
    assert_eq!(lease.ballot, n.r[0].status().promised);
    assert_eq!(n.r[1].master_lease(), None, "a follower is no master");
    n.advance(1, LEASE.leader_hold_ms());
    assert_eq!(n.r[0].master_lease(), None, "the lease ran out");
    // Without the read lease setting, no master lease at all.
    let mut plain = Net::with(&[None, None, None]);
    plain.elect(1);
    plain.heartbeat_round(1);
    assert_eq!(plain.r[0].master_lease(), None);
}

/// `TakeOver` releases the grants a lent master lease rests on: the
/// transfer waits until the lease lent last ran out, and lends no more.
#[test]
fn a_transfer_waits_until_the_master_lease_lent_ran_out() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    let lease = n.r[0].master_lease().expect("lent");
    n.r[0].transfer_leadership(NodeId(2)).unwrap();
    n.pump(1);
    assert_eq!(
        n.r[0].master_lease(),
        None,
        "nothing lent during a transfer"
    );
    for _ in 0..20 {
        n.tick(1);
        n.exchange(|_| true);
        assert!(
            !n.pool
                .iter()
                .any(|m| matches!(m.body, Body::TakeOver { .. })),
            "TakeOver before the lent lease ran out"
        );
        assert_ne!(n.role(2), RoleKind::Leader, "a second master");
    }
    // Past the end of the lease lent, on n1's clock: the transfer goes on.
    n.advance(1, lease.until_ms - n.clock[0]);
    for _ in 0..20 {
        n.tick(1);
        n.exchange(|_| true);
        if n.role(2) == RoleKind::Leader {
            break;
        }
    }
    assert_eq!(n.role(2), RoleKind::Leader);
    assert_ne!(n.role(1), RoleKind::Leader);
}

#[test]
fn a_dropped_leader_steps_down_and_does_not_campaign_during_its_hold() {
    let mut n = Net::new(3);
    n.elect(1);
    n.heartbeat_round(1);
    assert!(n.r[0].master_lease().is_some());
    assert!(n.r[0].drop_leadership());
    assert_eq!(n.role(1), RoleKind::Follower);
    assert_eq!(n.r[0].master_lease(), None);
    let hold = DROP_HOLD_ELECTION_TIMEOUTS * n.r[0].config().election_ticks;
    n.pool.clear();
    for _ in 0..hold - 1 {
        n.tick(1);
        assert_eq!(n.role(1), RoleKind::Follower, "campaigned in its hold");
    }
    // Another node is elected once its grant to n1 ran out.
    n.advance_all(LEASE.duration_ms);
    for _ in 0..1000 {
        n.tick(2);
        n.tick(3);
        n.exchange(|_| true);
        if n.role(2) == RoleKind::Leader || n.role(3) == RoleKind::Leader {
            break;
        }
    }
    assert!(n.role(2) == RoleKind::Leader || n.role(3) == RoleKind::Leader);
    assert!(!n.r[1].drop_leadership() || !n.r[2].drop_leadership());
}

/// The simulator's seed 86: a leader that lent a master lease steps down
/// when it hears a higher ballot (a rival's Reject), while its lease still
/// runs. Its own vote was in the lease's quorum: it must not promise the
/// rival before the lease it lent ran out, or the rival completes phase 1
/// with it and a second master exists.
#[test]
fn a_replica_that_lent_a_master_lease_promises_no_rival_until_it_ran_out() {
    let mut n = Net::new(3);
    n.elect(1);
    n.heartbeat_round(1);
    let lease = n.r[0].master_lease().expect("lent");
    let rival = Ballot {
        round: n.r[0].status().promised.round + 1,
        node: NodeId(3),
    };
    let prepare = Message {
        group: GroupId(0),
        from: NodeId(3),
        to: NodeId(1),
        body: Body::Prepare {
            ballot: rival,
            first_instance: InstanceId(0),
        },
    };
    // n1 stops leading (as on a rival's Reject) with the lease still lent.
    assert!(n.r[0].drop_leadership());
    n.pool.clear();
    n.r[0].step(prepare.clone());
    let ready = n.r[0].take_ready();
    assert!(
        !ready
            .persist
            .iter()
            .any(|rec| matches!(rec, Record::Promise { .. })),
        "promised a rival while its master lease ran"
    );
    // Once its clock passed the lease's end, it promises.
    n.advance(1, lease.until_ms - n.clock[0]);
    n.r[0].step(prepare);
    let ready = n.r[0].take_ready();
    assert!(ready
        .persist
        .iter()
        .any(|rec| matches!(rec, Record::Promise { .. })));
}

/// A reconfiguration proposed after a master lease was lent waits until
/// the lease ran out: the new membership's quorums need not include a node
/// that granted it. No lease is lent while the change waits.
#[test]
fn a_membership_change_waits_for_the_master_lease_lent_before_it() {
    let mut n = Net::new(3);
    n.elect(1);
    n.write(1, b"x");
    n.heartbeat_round(1);
    let lease = n.r[0].master_lease().expect("lent");
    let change = MembershipChange::Add {
        id: NodeId(4),
        addr: Bytes::new(),
        promote: false,
    };
    n.r[0].propose_change(change, false).unwrap();
    n.pump(1);
    let reconfig_sent = |n: &Net| {
        n.pool.iter().any(|m| {
            matches!(&m.body, Body::Accept { value, .. } if matches!(value, Value::Reconfig(_)))
        })
    };
    assert!(!reconfig_sent(&n), "proposed while the master lease ran");
    assert_eq!(n.r[0].master_lease(), None, "lent while a change waits");
    n.advance(1, lease.until_ms - n.clock[0]);
    n.tick(1);
    assert!(reconfig_sent(&n), "the change waits past the lease");
}
