//! A replica whose disk was wiped (issue 12, item 4), built message by
//! message. The reviewer's scenario, three nodes: `x` is chosen at instance 0
//! by n1 and n2; n2's disk is wiped; n3 (which never saw `x`) campaigns with
//! n2 while n1 is away. Restarted empty and voting (what the node did before
//! rebuild mode), n2 lets n3 get `y` chosen at instance 0 as well. Restarted
//! in rebuild mode, n2 answers nothing until it is safe, so n3 cannot lead;
//! once n1 is back n2 catches up, votes again, and every replica agrees on `x`.

use bytes::Bytes;
use synod_core::*;

struct Net {
    r: Vec<Replica>,
    pool: Vec<Message>,
    records: Vec<Vec<Record>>,
    /// Nodes whose messages (both ways) are dropped.
    down: Vec<u32>,
    /// Nodes whose heartbeat acknowledgements are dropped.
    acks_lost: Vec<u32>,
}

fn members(n: u32) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

impl Net {
    fn new(n: u32) -> Net {
        let r = members(n)
            .iter()
            .map(|id| Replica::new(Config::new(*id, members(n))).unwrap())
            .collect();
        Net {
            r,
            pool: vec![],
            records: vec![vec![]; n as usize],
            down: vec![],
            acks_lost: vec![],
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
            if !ready.persist.is_empty() {
                self.records[k].extend(ready.persist);
                self.r[k].persisted(ready.persist_through);
            }
        }
    }
    fn role(&self, id: u32) -> RoleKind {
        self.r[id as usize - 1].status().role
    }
    fn up(&self, m: &Message) -> bool {
        let ack_lost =
            matches!(m.body, Body::HeartbeatAck { .. }) && self.acks_lost.contains(&m.from.0);
        !self.down.contains(&m.from.0) && !self.down.contains(&m.to.0) && !ack_lost
    }
    /// Delivers every message between nodes that are up until quiet; drops
    /// the rest.
    fn exchange(&mut self) {
        for _ in 0..10_000 {
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if self.up(&m) {
                    let to = m.to.0;
                    self.r[to as usize - 1].step(m);
                    self.pump(to);
                }
            }
        }
        panic!("messages never stopped");
    }
    /// One tick on every node that is up, then a full exchange.
    fn round(&mut self) {
        for id in 1..=self.r.len() as u32 {
            if !self.down.contains(&id) {
                self.r[id as usize - 1].tick();
                self.pump(id);
            }
        }
        self.exchange();
    }
    /// Ticks n1 alone (with whoever is up answering) until it leads.
    fn elect_n1(&mut self) {
        while self.role(1) != RoleKind::Leader {
            self.r[0].tick();
            self.pump(1);
            self.exchange();
        }
    }
    fn chosen(&self, id: u32, i: u64) -> Option<Value> {
        self.r[id as usize - 1].chosen_value(InstanceId(i)).cloned()
    }
    /// Replaces node `id` by a replica with empty durable state, as after a
    /// wiped disk, in rebuild mode or not.
    fn wipe(&mut self, id: u32, rebuild: bool) {
        let mut cfg = Config::new(NodeId(id), members(self.r.len() as u32));
        cfg.seed = 1000 + u64::from(id);
        cfg.rebuild = rebuild;
        self.r[id as usize - 1] = Replica::new(cfg).unwrap();
        self.records[id as usize - 1].clear();
    }
}

fn batch(s: &'static str) -> Value {
    Value::batch(vec![Bytes::from_static(s.as_bytes())])
}

/// `x` chosen at instance 0 by n1 (leader) and n2; n3 hears nothing.
fn x_chosen_by_n1_and_n2() -> Net {
    let mut n = Net::new(3);
    n.down = vec![3];
    n.elect_n1();
    n.r[0].propose(Bytes::from_static(b"x")).unwrap();
    n.pump(1);
    n.exchange();
    assert_eq!(n.chosen(1, 0), Some(batch("x")));
    assert_eq!(n.chosen(3, 0), None);
    n
}

/// `x_chosen_by_n1_and_n2`, then everyone up for `rounds` rounds, after
/// which n1 still leads.
fn all_up_with_n1_leading(rounds: u32) -> Net {
    let mut n = x_chosen_by_n1_and_n2();
    n.down = vec![];
    for _ in 0..rounds {
        n.round();
    }
    assert_eq!(n.role(1), RoleKind::Leader);
    n
}

/// n1 away, n3 campaigns with n2 for a while; `y` proposed at n3.
fn n3_campaigns_with_n2(n: &mut Net) {
    n.down = vec![1];
    for _ in 0..400 {
        n.round();
        if n.role(3) == RoleKind::Leader {
            break;
        }
    }
    if n.role(3) == RoleKind::Leader {
        n.r[2].propose(Bytes::from_static(b"y")).unwrap();
        n.pump(3);
        n.exchange();
    }
}

/// The defect, as the node behaved before rebuild mode: the wiped node
/// restarts empty and votes at once, and a second value is chosen at
/// instance 0. (Pins that the scenario really reaches the violation, so
/// that the test below is meaningful.)
#[test]
fn a_wiped_node_that_votes_at_once_lets_two_values_be_chosen() {
    let mut n = x_chosen_by_n1_and_n2();
    n.wipe(2, false);
    n3_campaigns_with_n2(&mut n);
    assert_eq!(n.role(3), RoleKind::Leader);
    assert_eq!(n.chosen(1, 0), Some(batch("x")));
    assert_eq!(n.chosen(3, 0), Some(batch("y")), "two values chosen at #0");
}

#[test]
fn a_rebuilding_node_does_not_vote_until_safe_and_then_agrees() {
    let mut n = x_chosen_by_n1_and_n2();
    n.wipe(2, true);
    n3_campaigns_with_n2(&mut n);
    // n2 promised and accepted nothing, so n3 never led and chose nothing.
    assert_ne!(n.role(3), RoleKind::Leader);
    assert_eq!(n.chosen(3, 0), None);
    assert_eq!(n.chosen(2, 0), None);
    assert!(
        n.r[1].rebuilding(),
        "n1 never reported: n2 must wait for it"
    );
    assert!(
        n.records[1].is_empty(),
        "a rebuilding node persists no promise or accept: {:?}",
        n.records[1]
    );
    // n1 is back: n2 hears from every member, catches up, votes again.
    n.down = vec![];
    for _ in 0..2000 {
        n.round();
        if !n.r[1].rebuilding() && (1..=3).all(|id| n.chosen(id, 0).is_some()) {
            break;
        }
    }
    assert!(!n.r[1].rebuilding(), "n2 never finished rebuilding");
    for id in 1..=3 {
        assert_eq!(n.chosen(id, 0), Some(batch("x")), "n{id} at #0");
    }
    // Before any vote, n2 persisted a promise raised to the highest one
    // reported (n1's and n3's are above zero here, and not n2's own).
    let first_acceptor_record = n.records[1]
        .iter()
        .find(|r| matches!(r, Record::Promise { .. } | Record::Accept { .. }));
    match first_acceptor_record {
        Some(Record::Promise { ballot, .. }) => {
            assert!(
                *ballot > Ballot::ZERO && ballot.node != NodeId(2),
                "{ballot}"
            )
        }
        other => panic!("n2's first acceptor record must be its raised promise: {other:?}"),
    }
    // It votes again: with n3 away, n1 and n2 elect a leader and choose `z`.
    n.down = vec![3];
    let mut proposed = false;
    let has_z = |n: &Net, id: u32| (0..8).any(|i| n.chosen(id, i) == Some(batch("z")));
    for _ in 0..3000 {
        if !proposed {
            if let Some(leader) = (1..=2).find(|id| n.role(*id) == RoleKind::Leader) {
                n.r[leader as usize - 1]
                    .propose(Bytes::from_static(b"z"))
                    .unwrap();
                n.pump(leader);
                proposed = true;
            }
        }
        n.round();
        if has_z(&n, 1) && has_z(&n, 2) {
            break;
        }
    }
    assert!(has_z(&n, 1) && has_z(&n, 2), "n1 and n2 never chose z");
}

/// A member that is itself rebuilding cannot vouch for anything: two nodes
/// of three wiped at once never vote again on their own (they may have held
/// the only copies of a chosen value).
#[test]
fn two_rebuilding_nodes_do_not_rebuild_each_other() {
    let mut n = x_chosen_by_n1_and_n2();
    n.wipe(1, true);
    n.wipe(2, true);
    n.down = vec![];
    for _ in 0..500 {
        n.round();
    }
    assert!(n.r[0].rebuilding() && n.r[1].rebuilding());
    assert!((1..=3).all(|id| n.role(id) != RoleKind::Leader));
}

/// Five members, two wiped at once (fewer than a quorum): every chosen
/// value survives on a third member, and both rebuild, each answering the
/// other that it vouches for nothing until it votes again.
#[test]
fn two_of_five_rebuild_together() {
    let mut n = Net::new(5);
    n.elect_n1();
    n.r[0].propose(Bytes::from_static(b"x")).unwrap();
    n.pump(1);
    n.exchange();
    assert_eq!(n.chosen(1, 0), Some(batch("x")));
    n.wipe(2, true);
    n.wipe(4, true);
    for _ in 0..3000 {
        n.round();
        if !n.r[1].rebuilding() && !n.r[3].rebuilding() {
            break;
        }
    }
    assert!(!n.r[1].rebuilding() && !n.r[3].rebuilding());
    assert_eq!(n.chosen(2, 0), Some(batch("x")));
    assert_eq!(n.chosen(4, 0), Some(batch("x")));
}

/// The simulator's negative control: with `wipe_votes` a replica started in
/// rebuild mode votes at once, and the scenario chooses two values.
#[cfg(feature = "fault-injection")]
#[test]
fn wipe_votes_injection_votes_at_once() {
    let mut n = x_chosen_by_n1_and_n2();
    let mut cfg = Config::new(NodeId(2), members(3));
    cfg.seed = 1002;
    cfg.rebuild = true;
    cfg.inject.wipe_votes = true;
    n.r[1] = Replica::new(cfg).unwrap();
    assert!(!n.r[1].rebuilding());
    n3_campaigns_with_n2(&mut n);
    assert_eq!(n.chosen(3, 0), Some(batch("y")));
}

/// A rebuilding member is no voter yet, and its heartbeat acks say so
/// (`Restoring::Rebuilding`): its leader does not hand leadership to it, does
/// not count on its vote for a removal, and does not stay in office on its
/// acks alone. (The fourth review of stop 58 found a removed leader kept in
/// office so while the new members refused it: no progress, no election.)
#[test]
fn a_rebuilding_member_is_not_counted_on_by_its_leader() {
    let mut n = all_up_with_n1_leading(50);
    // n2's disk is wiped; n3 goes away, so n2's rebuild cannot finish (it
    // waits for every other member).
    n.wipe(2, true);
    n.down = vec![3];
    for _ in 0..6 {
        n.round();
    }
    assert!(n.r[1].rebuilding());
    assert_eq!(n.role(1), RoleKind::Leader);
    assert_eq!(
        n.r[0].transfer_leadership(NodeId(2)),
        Err(ChangeError::BadTarget(
            NodeId(2),
            "it is rebuilding lost state"
        ))
    );
    assert_ne!(n.r[0].best_successor(), Some(NodeId(2)));
    // Without n3, the membership {n1, n2} would need n2's vote.
    assert!(matches!(
        n.r[0].propose_change(MembershipChange::Remove { id: NodeId(3) }, false),
        Err(ChangeError::NoQuorum {
            reachable: 1,
            quorum: 2,
            ..
        })
    ));
    // n1 hears only n2: no quorum that can vote for it, so it stands down
    // within an election timeout or two (and nobody can lead).
    for _ in 0..70 {
        n.round();
    }
    assert!((1..=3).all(|id| n.role(id) != RoleKind::Leader));
    // n3 is back: n2 finishes its rebuild and n1 and n2 acknowledge as
    // voters again.
    n.down = vec![];
    for _ in 0..2000 {
        n.round();
        if !n.r[1].rebuilding() && (1..=3).any(|id| n.role(id) == RoleKind::Leader) {
            break;
        }
    }
    assert!(!n.r[1].rebuilding());
    assert!((1..=3).any(|id| n.role(id) == RoleKind::Leader));
}

/// The leader's check of a live quorum counts each member once: its own
/// Accepteds (it votes for its proposals) do not stand for a second vote.
/// Isolated on three nodes, a leader still proposing stands down within an
/// election timeout or so, as an idle one does (it counted itself twice and
/// stayed until its window of instances in flight filled, about three
/// times as long: the attack review of stop 59).
#[test]
fn an_isolated_leader_stands_down_even_while_it_proposes() {
    for busy in [false, true] {
        let mut n = all_up_with_n1_leading(20);
        n.down = vec![2, 3];
        let mut rounds = 0;
        while n.role(1) == RoleKind::Leader && rounds < 200 {
            if busy {
                let _ = n.r[0].propose(Bytes::from(format!("p{rounds}")));
                n.pump(1);
            }
            n.round();
            rounds += 1;
        }
        assert!(
            rounds <= 45,
            "busy {busy}: stood down after {rounds} rounds"
        );
    }
}

/// Five members, the highest-numbered one rebuilding and as far as the
/// others (so a successor chosen by progress alone, ties to the highest id,
/// would be it): the leader's best successor is a voter that can campaign.
#[test]
fn a_rebuilding_member_is_not_the_best_successor() {
    let mut n = Net::new(5);
    n.elect_n1();
    for _ in 0..10 {
        n.round();
    }
    n.wipe(5, true);
    n.down = vec![4];
    for _ in 0..6 {
        n.round();
    }
    assert!(n.r[4].rebuilding());
    assert_eq!(n.role(1), RoleKind::Leader);
    assert_eq!(
        n.r[4].status().chosen_end,
        n.r[0].status().chosen_end,
        "caught up"
    );
    let successor = n.r[0].best_successor();
    assert!(matches!(successor, Some(NodeId(2..=4))), "{successor:?}");
}

/// A member that finished rebuilding votes again; an Accepted from it says
/// so even when its heartbeat acks are lost (the leader would otherwise keep
/// it for rebuilding until the next ack: refusing a transfer to it, not
/// counting it as a live voter).
#[test]
fn an_accepted_clears_a_rebuilding_mark() {
    let mut n = all_up_with_n1_leading(20);
    n.wipe(2, true);
    for _ in 0..3 {
        n.round();
    }
    assert_eq!(
        n.r[0].transfer_leadership(NodeId(2)),
        Err(ChangeError::BadTarget(
            NodeId(2),
            "it is rebuilding lost state"
        ))
    );
    n.acks_lost = vec![2];
    for _ in 0..2000 {
        n.round();
        if !n.r[1].rebuilding() {
            break;
        }
    }
    assert!(!n.r[1].rebuilding());
    assert_eq!(n.role(1), RoleKind::Leader);
    // A proposal: node 2 accepts it.
    n.r[0].propose(Bytes::from_static(b"after")).unwrap();
    n.pump(1);
    n.exchange();
    assert_eq!(n.r[0].transfer_leadership(NodeId(2)), Ok(()));
}
