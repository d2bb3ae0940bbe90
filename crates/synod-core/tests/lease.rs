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
}

impl Net {
    fn new(n: u32) -> Net {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut net = Net {
            r: Vec::new(),
            pool: vec![],
            applied: vec![vec![]; n as usize],
            served: vec![vec![]; n as usize],
            clock: vec![0; n as usize],
        };
        for id in &members {
            net.r.push(replica(*id, &members));
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
        self.exchange(|_| true);
    }
}

fn replica(id: NodeId, members: &[NodeId]) -> Replica {
    let mut cfg = Config::new(id, members.to_vec());
    cfg.seed = u64::from(id.0) * 7919;
    cfg.read_lease = Some(LEASE);
    Replica::new(cfg).unwrap()
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
