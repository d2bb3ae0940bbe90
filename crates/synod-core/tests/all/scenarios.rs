//! Multi-node scenarios built message by message, each pinning a bug found
//! by review of the core (see each test). They drive the public API only.

use bytes::Bytes;
use synod_core::*;

struct Net {
    r: Vec<Replica>,
    pool: Vec<Message>,
    applied: Vec<Vec<Apply>>,
    records: Vec<Vec<Record>>,
}

impl Net {
    fn new(n: u32) -> Net {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let r = members
            .iter()
            .map(|id| Replica::new(Config::new(*id, members.clone())).unwrap())
            .collect();
        Net {
            r,
            pool: vec![],
            applied: vec![vec![]; n as usize],
            records: vec![vec![]; n as usize],
        }
    }
    fn pump(&mut self, id: u32) {
        let k = id as usize - 1;
        loop {
            let ready = self.r[k].take_ready();
            if ready.is_empty() {
                break;
            }
            self.pool.extend(ready.messages);
            self.applied[k].extend(ready.apply);
            if !ready.persist.is_empty() {
                self.records[k].extend(ready.persist);
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
    fn tick_until(&mut self, id: u32, role: RoleKind) {
        for _ in 0..1000 {
            if self.role(id) == role {
                return;
            }
            self.pool.clear();
            self.tick(id);
        }
        panic!("n{id} never became {role:?}");
    }
    /// Delivers messages matching `pred`, drops the rest, until quiet.
    fn exchange(&mut self, pred: impl Fn(&Message) -> bool) {
        let mut kept = Vec::new();
        loop {
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                self.pool = kept;
                return;
            }
            for m in msgs {
                if pred(&m) {
                    let to = m.to.0;
                    self.r[to as usize - 1].step(m);
                    self.pump(to);
                } else {
                    kept.push(m);
                }
            }
        }
    }
    fn chosen(&self, id: u32, i: u64) -> Option<Value> {
        self.r[id as usize - 1].chosen_value(InstanceId(i)).cloned()
    }
}

fn is(m: &Message, from: u32, to: &[u32]) -> bool {
    m.from.0 == from && to.contains(&m.to.0)
}

/// Was an agreement violation: a promise reported an old accepted value as
/// chosen, and the new leader applied it over the value really chosen.
#[test]
fn stale_accepted_value_is_never_reported_as_chosen() {
    let mut n = Net::new(5);
    let v = |s: &'static str| Value::batch(vec![Bytes::from_static(s.as_bytes())]);
    // A: n1 leads at b1; instance 0 = x reaches n2, instance 1 = v1 reaches n3 only.
    n.tick_until(1, RoleKind::Candidate);
    n.pump(1);
    n.exchange(|m| matches!(m.body, Body::Prepare { .. } | Body::Promise { .. }));
    assert_eq!(n.role(1), RoleKind::Leader);
    n.pool.clear();
    n.pool.clear();
    n.r[0].propose(Bytes::from_static(b"x")).unwrap();
    n.pump(1);
    n.exchange(|m| is(m, 1, &[2]) && matches!(m.body, Body::Accept { .. }));
    n.pool.clear();
    n.r[0].propose(Bytes::from_static(b"v1")).unwrap();
    n.pump(1);
    n.exchange(|m| is(m, 1, &[3]) && matches!(m.body, Body::Accept { .. }));
    n.pool.clear();
    // B: n2 leads at b2 with n4, n5.
    n.tick_until(2, RoleKind::Candidate);
    n.pump(2);
    n.exchange(|m| {
        (is(m, 2, &[4, 5]) && matches!(m.body, Body::Prepare { .. }))
            || (m.to.0 == 2 && matches!(m.body, Body::Promise { .. }))
    });
    assert_eq!(n.role(2), RoleKind::Leader);
    // instance 0 (b2, x) chosen by n2, n1, n4
    n.exchange(|m| {
        (is(m, 2, &[1, 4]) && matches!(m.body, Body::Accept { .. }))
            || (m.to.0 == 2 && matches!(m.body, Body::Accepted { .. }))
    });
    assert_eq!(n.r[1].status().chosen_end, InstanceId(1));
    n.pool.clear();
    n.r[1].propose(Bytes::from_static(b"v2")).unwrap();
    n.pump(2);
    // instance 1 (b2, v2) chosen by n2, n1, n5
    n.exchange(|m| {
        (is(m, 2, &[1, 5]) && matches!(m.body, Body::Accept { .. }))
            || (m.to.0 == 2 && matches!(m.body, Body::Accepted { .. }))
    });
    assert_eq!(n.chosen(2, 1), Some(v("v2")));
    n.pool.clear();
    for _ in 0..3 {
        n.tick(2);
    }
    n.exchange(|m| is(m, 2, &[5]) && matches!(m.body, Body::Heartbeat { .. }));
    assert_eq!(n.chosen(5, 1), Some(v("v2")));
    assert_eq!(n.r[4].status().chosen_end, InstanceId(0));
    assert_eq!(n.r[0].status().chosen_end, InstanceId(1));
    assert_eq!(n.chosen(1, 1), None);
    n.pool.clear();
    // C: n2 gone. n3 (stale (b1,v1) at 1) leads at b3 with n4, n5.
    for _ in 0..30 {
        n.tick(4);
        n.tick(5);
        n.pool.clear();
    }
    assert_eq!(n.role(4), RoleKind::Follower);
    assert_eq!(n.role(5), RoleKind::Follower);
    n.tick_until(3, RoleKind::Candidate);
    n.pump(3);
    n.exchange(|m| {
        (is(m, 3, &[4, 5]) && matches!(m.body, Body::Prepare { .. }))
            || (m.to.0 == 3 && matches!(m.body, Body::Promise { .. }))
    });
    assert_eq!(n.role(3), RoleKind::Leader);
    assert_eq!(n.chosen(3, 1), Some(v("v2")));
    assert_eq!(n.r[2].status().chosen_end, InstanceId(0));
    // D: n3 loses quorum and steps down before catching up instance 0.
    n.pool.clear();
    n.tick_until(3, RoleKind::Follower);
    n.pool.clear();
    // E: n4 runs for b4 with n1 and n3.
    for _ in 0..30 {
        n.tick(1);
        n.pool.clear();
    }
    n.tick_until(4, RoleKind::Candidate);
    n.pump(4);
    n.exchange(|m| {
        (is(m, 4, &[1, 3]) && matches!(m.body, Body::Prepare { .. }))
            || (m.to.0 == 4 && matches!(m.body, Body::Promise { .. }))
    });
    assert_eq!(n.role(4), RoleKind::Leader);
    println!(
        "n2 chosen[1] = {:?}; n4 chosen[1] = {:?}",
        n.chosen(2, 1),
        n.chosen(4, 1)
    );
    println!("n4 applied: {:?}", n.applied[3]);
    assert_eq!(n.chosen(4, 1), n.chosen(2, 1), "AGREEMENT VIOLATED");
}

/// Was a permanent stall: a leader elected behind a peer's chosen prefix
/// waited forever for values only that (dead) peer had learned.
#[test]
fn a_leader_behind_the_reported_prefix_still_makes_progress() {
    let mut n = Net::new(3);
    n.tick_until(1, RoleKind::Candidate);
    n.pump(1);
    n.exchange(|m| matches!(m.body, Body::Prepare { .. } | Body::Promise { .. }));
    assert_eq!(n.role(1), RoleKind::Leader);
    n.pool.clear();
    n.r[0].propose(Bytes::from_static(b"x")).unwrap();
    n.pump(1);
    n.exchange(|m| {
        (is(m, 1, &[2]) && matches!(m.body, Body::Accept { .. }))
            || (is(m, 2, &[1]) && matches!(m.body, Body::Accepted { .. }))
    });
    assert_eq!(n.r[0].status().chosen_end, InstanceId(1));
    n.pool.clear();
    n.tick_until(1, RoleKind::Follower); // n1 loses contact, steps down
    n.tick_until(3, RoleKind::Candidate);
    n.pump(3);
    n.exchange(|m| {
        (is(m, 3, &[1]) && matches!(m.body, Body::Prepare { .. }))
            || (m.to.0 == 3 && matches!(m.body, Body::Promise { .. }))
    });
    assert_eq!(n.role(3), RoleKind::Leader);
    n.pool.clear();
    // n1 dies for good; n2 and n3 (a majority) talk freely.
    for t in 0..2000 {
        if t % 10 == 0 {
            let _ = n.r[2].propose(Bytes::from(format!("c{t}")));
            n.pump(3);
        }
        n.tick(2);
        n.tick(3);
        n.exchange(|m| m.from.0 != 1 && m.to.0 != 1);
        n.pool.clear();
    }
    println!("n3 {:?}\nn2 {:?}", n.r[2].status(), n.r[1].status());
    assert!(
        n.r[2].status().applied_end > InstanceId(0),
        "cluster with a live majority never applies again"
    );
}

/// Was a panic: a round of u64::MAX overflowed at the next election.
#[test]
fn huge_round_is_refused_and_elections_still_work() {
    let mut n = Net::new(3);
    n.r[0].step(Message {
        group: GroupId(0),
        from: NodeId(2),
        to: NodeId(1),
        body: Body::Heartbeat {
            ballot: Ballot {
                round: u64::MAX,
                node: NodeId(2),
            },
            chosen_end: InstanceId(0),
            applied: AppliedMark {
                applied_end: InstanceId(0),
                checksum: Checksum(0),
            },
            probe: 0,
        },
    });
    n.pump(1);
    n.tick_until(1, RoleKind::Candidate);
}

/// Was a panic: an instance of u64::MAX overflowed in `become_leader`.
#[test]
fn huge_instance_in_promise_is_refused() {
    let mut n = Net::new(3);
    n.tick_until(1, RoleKind::Candidate);
    n.pump(1);
    let ballot = n.r[0].status().promised;
    n.r[0].step(Message {
        group: GroupId(0),
        from: NodeId(2),
        to: NodeId(1),
        body: Body::Promise {
            ballot,
            compacted_end: InstanceId(0),
            first_instance: InstanceId(0),
            entries: vec![PromiseEntry {
                instance: InstanceId(u64::MAX),
                ballot: Ballot::ZERO,
                value: Value::Noop,
                chosen: false,
            }],
            more_from: None,
        },
    });
}

/// Seen in the simulator (seed 171, 5 nodes): a leader of an old ballot woke
/// from a pause and proposed a new value for an instance already chosen. An
/// acceptor that knows the instance chosen must not vote for another value
/// (it could never be chosen anyway); the chosen value itself is still
/// acknowledged.
#[test]
fn an_acceptor_does_not_vote_for_another_value_in_a_chosen_instance() {
    let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut r = Replica::new(Config::new(NodeId(2), members)).unwrap();
    let ballot = |round, node| Ballot {
        round,
        node: NodeId(node),
    };
    let msg = |from: u32, body| Message {
        group: GroupId(0),
        from: NodeId(from),
        to: NodeId(2),
        body,
    };
    let chosen = Value::batch(vec![Bytes::from_static(b"chosen")]);
    let other = Value::batch(vec![Bytes::from_static(b"other")]);
    let step = |r: &mut Replica, m: Message| {
        r.step(m);
        let ready = r.take_ready();
        r.persisted(ready.persist_through);
        let mut out = ready.messages;
        out.extend(r.take_ready().messages);
        out
    };
    step(
        &mut r,
        msg(
            1,
            Body::Accept {
                ballot: ballot(1, 1),
                instance: InstanceId(0),
                value: chosen.clone(),
                chosen_end: InstanceId(0),
            },
        ),
    );
    step(
        &mut r,
        msg(
            1,
            Body::Heartbeat {
                ballot: ballot(1, 1),
                chosen_end: InstanceId(1),
                applied: AppliedMark {
                    applied_end: InstanceId(0),
                    checksum: Checksum(0),
                },
                probe: 1,
            },
        ),
    );
    assert_eq!(r.chosen_value(InstanceId(0)), Some(&chosen));
    let votes = |out: &[Message]| {
        out.iter()
            .filter(|m| matches!(m.body, Body::Accepted { .. }))
            .count()
    };
    let stale = step(
        &mut r,
        msg(
            3,
            Body::Accept {
                ballot: ballot(1, 3),
                instance: InstanceId(0),
                value: other,
                chosen_end: InstanceId(0),
            },
        ),
    );
    assert_eq!(
        votes(&stale),
        0,
        "voted for another value in a chosen instance"
    );
    let same = step(
        &mut r,
        msg(
            3,
            Body::Accept {
                ballot: ballot(1, 3),
                instance: InstanceId(0),
                value: chosen,
                chosen_end: InstanceId(0),
            },
        ),
    );
    assert_eq!(votes(&same), 1, "the chosen value is acknowledged");
}
