//! Linearizable reads by read index (`Replica::read`), message by message.

use bytes::Bytes;
use synod_core::*;

struct Net {
    r: Vec<Replica>,
    pool: Vec<Message>,
    applied: Vec<Vec<Bytes>>,
    /// Per node, reads served: (read id, commands applied when it was served).
    served: Vec<Vec<(u64, usize)>>,
    refused: Vec<Vec<(u64, RejectReason)>>,
}

impl Net {
    fn new(n: u32) -> Net {
        Net::with_config(n, |_| {})
    }
    fn with_config(n: u32, edit: impl Fn(&mut Config)) -> Net {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let r = members
            .iter()
            .map(|id| {
                let mut cfg = Config::new(*id, members.clone());
                cfg.seed = u64::from(id.0) * 7919;
                edit(&mut cfg);
                Replica::new(cfg).unwrap()
            })
            .collect();
        Net {
            r,
            pool: vec![],
            applied: vec![vec![]; n as usize],
            served: vec![vec![]; n as usize],
            refused: vec![vec![]; n as usize],
        }
    }
    /// Node 1 leads `n` nodes whose busy leaders announce a drained
    /// pipeline's prefix `delay_ms` after it drained, every clock at
    /// `now_ms`; a tick's round went to everyone.
    fn with_announce_delay(n: u32, delay_ms: u64, now_ms: u64) -> Net {
        let mut net = Net::with_config(n, |cfg| cfg.announce_delay_ms = delay_ms);
        for r in &mut net.r {
            r.set_time(now_ms);
        }
        let followers: Vec<u32> = (2..=n).collect();
        net.elect(1, &followers);
        net.tick(1);
        net.exchange(|_| true);
        net
    }
    fn heartbeats_from(&self, id: u32) -> usize {
        self.pool
            .iter()
            .filter(|m| m.from.0 == id && matches!(m.body, Body::Heartbeat { .. }))
            .count()
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
                self.served[k].push((read.0, self.applied[k].len()));
            }
            for (read, reason) in ready.rejected_reads {
                self.refused[k].push((read.0, reason));
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
    /// Node `id` wins an election with the nodes in `voters`.
    fn elect(&mut self, id: u32, voters: &[u32]) {
        for _ in 0..1000 {
            if self.role(id) == RoleKind::Candidate {
                break;
            }
            self.pool.clear();
            self.tick(id);
        }
        let voters = voters.to_vec();
        self.exchange(|m| {
            let both = |a: u32, b: u32| {
                (m.from.0 == a && voters.contains(&b))
                    || (m.to.0 == a && voters.contains(&m.from.0))
            };
            matches!(m.body, Body::Prepare { .. } | Body::Promise { .. }) && both(id, m.to.0)
                || m.from.0 == m.to.0
        });
        assert_eq!(self.role(id), RoleKind::Leader);
    }
    /// n2 or n3 wins an election that n1 never hears of (every message to
    /// or from n1 is lost); returns the winner.
    fn take_over_without_n1(&mut self) -> u32 {
        for _ in 0..1000 {
            self.tick(2);
            self.tick(3);
            self.pool.retain(|m| m.from.0 != 1 && m.to.0 != 1);
            self.exchange(|m| m.from.0 != 1 && m.to.0 != 1);
            if let Some(id) = [2, 3]
                .into_iter()
                .find(|id| self.role(*id) == RoleKind::Leader)
            {
                return id;
            }
        }
        panic!("neither n2 nor n3 leads");
    }
    /// Replaces node `id` by an empty replica in rebuild mode (a wiped disk).
    fn wipe(&mut self, id: u32) {
        let members: Vec<NodeId> = (1..=self.r.len() as u32).map(NodeId).collect();
        let mut cfg = Config::new(NodeId(id), members);
        cfg.seed = 1000 + u64::from(id);
        cfg.rebuild = true;
        self.r[id as usize - 1] = Replica::new(cfg).unwrap();
        self.applied[id as usize - 1].clear();
    }
    /// Node 1 leads `size` nodes; x is chosen and every node knows it (a
    /// tick's round announced it); nothing is left in the pool.
    fn settled(size: u32) -> Net {
        Net::settled_with(size, |_| {})
    }
    /// As `settled`, every node's configuration edited by `edit`.
    fn settled_with(size: u32, edit: impl Fn(&mut Config)) -> Net {
        let mut n = Net::with_config(size, edit);
        let all: Vec<u32> = (1..=size).collect();
        n.elect(1, &all[1..]);
        n.write(1, b"x", &all);
        n.tick(1);
        n.exchange(|_| true);
        n.pool.clear();
        n
    }
    /// n2 forwards f; the leader (n1) proposes it, then g, whose Accepts
    /// are held back (returned): g is in flight when f is chosen. f's
    /// Accepts are left in the pool.
    fn forward_f_with_g_in_flight(&mut self) -> Vec<Message> {
        self.r[1].propose(Bytes::from_static(b"f")).unwrap();
        self.pump(2);
        self.exchange(|m| matches!(m.body, Body::Forward { .. }));
        let f_accepts = std::mem::take(&mut self.pool);
        self.r[0].propose(Bytes::from_static(b"g")).unwrap();
        self.pump(1);
        let g_accepts = std::mem::take(&mut self.pool);
        self.pool = f_accepts;
        g_accepts
    }
    /// Three nodes (so that a read request at n2 vouches and needs no
    /// round): n2's forwarded f is chosen and n2 was told so, while g is in
    /// flight (its Accepts returned, held back).
    fn forwarder_told_f_with_g_in_flight() -> (Net, Vec<Message>) {
        let mut n = Net::settled(3);
        let g_accepts = n.forward_f_with_g_in_flight();
        n.exchange(|_| true);
        assert_eq!(n.applied[1].len(), 2, "the forwarder was told f is chosen");
        (n, g_accepts)
    }
    /// The one heartbeat to a transfer's target `id` in the pool: it
    /// carries a round's probe (not 0), so the target answers it.
    fn told_with_a_probe(&self, id: u32) -> Message {
        let told = self.heartbeats_to(id);
        assert_eq!(told.len(), 1, "the target is told: {:?}", self.pool);
        assert!(
            !matches!(told[0].body, Body::Heartbeat { probe: 0, .. }),
            "{:?}",
            told[0]
        );
        told[0].clone()
    }
    /// Node 1 (leading) tells `id` to take over within 25 of its ticks.
    fn hands_over_to(&mut self, id: u32) {
        for _ in 0..25 {
            self.exchange(|m| !matches!(m.body, Body::TakeOver { .. }));
            if self
                .pool
                .iter()
                .any(|m| m.to.0 == id && matches!(m.body, Body::TakeOver { .. }))
            {
                return;
            }
            self.tick(1);
        }
        panic!("no hand-over to node {id}: {:?}", self.pool);
    }
    /// The heartbeats to `id` in the pool.
    fn heartbeats_to(&self, id: u32) -> Vec<Message> {
        self.pool
            .iter()
            .filter(|m| m.to.0 == id && matches!(m.body, Body::Heartbeat { .. }))
            .cloned()
            .collect()
    }
    fn write(&mut self, at: u32, command: &'static [u8], among: &[u32]) {
        self.r[at as usize - 1]
            .propose(Bytes::from_static(command))
            .unwrap();
        self.pump(at);
        let among = among.to_vec();
        self.exchange(|m| among.contains(&m.from.0) && among.contains(&m.to.0));
    }
}

#[test]
fn a_leader_serves_a_read_only_after_a_majority_answers_a_later_heartbeat() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    assert_eq!(n.applied[0].len(), 1);
    n.pool.clear();
    n.r[0].read(ReadId(7)).unwrap();
    n.pump(1);
    assert!(n.served[0].is_empty(), "served before any confirmation");
    let probes: Vec<Message> = n.pool.clone();
    assert!(
        probes
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat { .. })),
        "a read starts a heartbeat round"
    );
    // Deliver the heartbeats, but not the answers yet.
    n.exchange(|m| matches!(m.body, Body::Heartbeat { .. }));
    assert!(n.served[0].is_empty());
    // One answer makes a majority with the leader's own vote (and the
    // round went to one follower only, see `read_rounds_go_to_a_quorum_only`).
    let acks: Vec<Message> = std::mem::take(&mut n.pool)
        .into_iter()
        .filter(|m| matches!(m.body, Body::HeartbeatAck { .. }))
        .collect();
    assert_eq!(acks.len(), 1);
    n.r[0].step(acks[0].clone());
    n.pump(1);
    assert_eq!(n.served[0], vec![(7, 1)], "served after x was applied");
}

#[test]
fn heartbeats_answered_before_the_read_arrived_do_not_confirm_it() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.pool.clear();
    // A round goes out before the read: its answers arrive after it.
    for _ in 0..20 {
        n.tick(1);
    }
    let heartbeats: Vec<Message> = std::mem::take(&mut n.pool)
        .into_iter()
        .filter(|m| matches!(m.body, Body::Heartbeat { .. }))
        .collect();
    assert!(!heartbeats.is_empty());
    for m in heartbeats {
        let to = m.to.0;
        n.r[to as usize - 1].step(m);
        n.pump(to);
    }
    let old_acks = std::mem::take(&mut n.pool);
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    n.pool.clear(); // the new round is lost
    for m in old_acks {
        n.r[0].step(m);
        n.pump(1);
    }
    assert!(
        n.served[0].is_empty(),
        "confirmed by a round sent before it"
    );
}

#[test]
fn a_deposed_leader_refuses_its_reads_instead_of_serving_stale_state() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.pool.clear();
    // n2 or n3 takes over and writes y; n1 hears nothing of it.
    let new_leader = n.take_over_without_n1();
    n.write(new_leader, b"y", &[2, 3]);
    assert_eq!(n.applied[new_leader as usize - 1].len(), 2);
    n.pool.clear();
    // n1 still believes it leads; its read must not return state without y.
    assert_eq!(n.role(1), RoleKind::Leader);
    n.r[0].read(ReadId(9)).unwrap();
    n.pump(1);
    n.exchange(|_| true);
    assert!(n.served[0].is_empty(), "a deposed leader served a read");
    assert_eq!(n.refused[0], vec![(9, RejectReason::LostLeadership)]);
}

#[test]
fn a_follower_serves_a_read_at_the_leaders_index() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.write(1, b"y", &[1, 2]); // n3 has not learned y
    n.pool.clear();
    n.r[2].read(ReadId(3)).unwrap();
    n.pump(3);
    assert!(n
        .pool
        .iter()
        .any(|m| matches!(m.body, Body::ReadIndexRequest { .. })));
    n.exchange(|_| true);
    assert!(n.served[2].is_empty(), "served before y was applied");
    // n3 never accepted y: it fetches it by catch-up.
    for _ in 0..100 {
        n.tick(3);
        n.exchange(|_| true);
    }
    assert_eq!(n.applied[2].len(), 2, "n3 learned y");
    assert_eq!(n.served[2], vec![(3, 2)], "served with y applied");
}

#[test]
fn a_lone_replica_serves_reads_at_once() {
    let mut n = Net::new(1);
    for _ in 0..5 {
        n.tick(1);
    }
    assert_eq!(n.role(1), RoleKind::Leader);
    n.write(1, b"x", &[1]);
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    assert_eq!(n.served[0], vec![(1, 1)]);
}

#[test]
fn an_unanswered_follower_read_is_asked_again_then_refused() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.pool.clear();
    n.r[1].read(ReadId(5)).unwrap();
    n.pump(2);
    let cfg = n.r[1].config().clone();
    let mut requests = 0;
    for _ in 0..cfg.election_ticks + cfg.retransmit_ticks {
        n.tick(2);
        requests += n
            .pool
            .iter()
            .filter(|m| matches!(m.body, Body::ReadIndexRequest { .. }))
            .count();
        // The leader is unreachable; n2 must not start an election for
        // this test, so keep its leader alive with nothing but contact.
        n.pool.clear();
    }
    assert!(requests >= 2, "asked again ({requests} requests)");
    assert_eq!(n.refused[1], vec![(5, RejectReason::NoLeader)]);
    assert!(n.served[1].is_empty());
}

#[test]
fn a_reply_from_a_node_not_asked_is_ignored() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.pool.clear();
    n.r[1].read(ReadId(5)).unwrap();
    n.pump(2);
    let Some(Body::ReadIndexRequest { id, .. }) = n.pool.iter().map(|m| m.body.clone()).next()
    else {
        panic!("no request");
    };
    n.pool.clear();
    n.r[1].step(Message {
        group: GroupId(0),
        from: NodeId(3),
        to: NodeId(2),
        body: Body::ReadIndexReply {
            id,
            index: InstanceId(0),
            chosen_end: InstanceId(0),
        },
    });
    n.pump(2);
    assert!(
        n.served[1].is_empty(),
        "took a reply from a node it did not ask"
    );
}

/// The followers a message pool holds heartbeats for.
fn heartbeat_targets(pool: &[Message]) -> Vec<u32> {
    let mut to: Vec<u32> = pool
        .iter()
        .filter(|m| matches!(m.body, Body::Heartbeat { .. }))
        .map(|m| m.to.0)
        .collect();
    to.sort_unstable();
    to
}

#[test]
fn read_rounds_go_to_a_quorum_only() {
    for (size, followers_asked) in [(3, 1), (5, 2)] {
        let mut n = Net::new(size);
        let all: Vec<u32> = (1..=size).collect();
        n.elect(1, &all[1..]);
        n.write(1, b"x", &all);
        for k in 0..5u64 {
            n.pool.clear();
            n.r[0].read(ReadId(k)).unwrap();
            n.pump(1);
            let to = heartbeat_targets(&n.pool);
            assert_eq!(to.len(), followers_asked, "{size} nodes: round to {to:?}");
            n.exchange(|_| true);
            assert_eq!(
                n.served[0].len() as u64,
                k + 1,
                "{size} nodes: read {k} served"
            );
        }
    }
}

#[test]
fn a_read_round_goes_to_everyone_while_a_write_is_in_flight() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.pool.clear();
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    assert_eq!(heartbeat_targets(&n.pool), vec![2, 3]);
    n.exchange(|_| true);
    assert_eq!(n.served[0], vec![(1, 2)], "served with y applied");
}

#[test]
fn a_partial_round_left_unanswered_for_a_tick_goes_to_everyone() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.pool.clear();
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    let to = heartbeat_targets(&n.pool);
    assert_eq!(to.len(), 1);
    let silent = to[0];
    let other = 5 - silent;
    // The follower asked is down: its heartbeat is lost, and so is
    // everything sent to it from now on.
    n.pool.clear();
    n.tick(1);
    assert!(
        heartbeat_targets(&n.pool).contains(&other),
        "after a tick the round goes to {other} too"
    );
    n.exchange(|m| m.to.0 != silent && m.from.0 != silent);
    assert_eq!(n.served[0], vec![(1, 1)]);
    // The follower that answered is asked first from now on.
    n.pool.clear();
    n.r[0].read(ReadId(2)).unwrap();
    n.pump(1);
    assert_eq!(heartbeat_targets(&n.pool), vec![other]);
    n.exchange(|m| m.to.0 != silent && m.from.0 != silent);
    assert_eq!(n.served[0], vec![(1, 1), (2, 1)]);
}

#[test]
fn a_follower_left_out_of_read_rounds_still_hears_every_heartbeat_interval() {
    let mut n = Net::new(3);
    n.elect(1, &[2, 3]);
    n.write(1, b"x", &[1, 2, 3]);
    n.exchange(|_| true);
    let cfg = n.r[0].config().clone();
    let mut heard = [0u64; 4];
    let mut quiet_max = [0u64; 4];
    let mut quiet = [0u64; 4];
    let ticks = cfg.election_ticks * 4;
    for t in 0..ticks {
        n.r[0].read(ReadId(t)).unwrap();
        n.pump(1);
        for id in 1..=3 {
            n.tick(id);
        }
        for to in heartbeat_targets(&n.pool) {
            heard[to as usize] += 1;
            quiet[to as usize] = 0;
        }
        for id in 2..=3 {
            quiet[id] += 1;
            quiet_max[id] = quiet_max[id].max(quiet[id]);
        }
        n.exchange(|_| true);
    }
    assert_eq!(n.role(1), RoleKind::Leader);
    assert_eq!(n.served[0].len() as u64, ticks, "every read served");
    for id in 2..=3 {
        assert!(heard[id] > 0, "n{id} heard nothing");
        assert!(
            quiet_max[id] <= cfg.heartbeat_ticks + 1,
            "n{id} went {} ticks without a heartbeat",
            quiet_max[id]
        );
    }
}

#[test]
fn partial_rounds_go_to_the_quickest_to_answer_the_last_full_round() {
    for quick in [2u32, 3] {
        let mut n = Net::new(3);
        n.elect(1, &[2, 3]);
        n.write(1, b"x", &[1, 2, 3]);
        n.pool.clear();
        // Tick until the periodic heartbeat goes to both followers.
        let mut rounds = 0;
        while heartbeat_targets(&n.pool) != vec![2, 3] {
            n.pool.clear();
            n.tick(1);
            rounds += 1;
            assert!(rounds < 100, "no periodic heartbeat");
        }
        n.exchange(|m| matches!(m.body, Body::Heartbeat { .. }));
        let mut acks = std::mem::take(&mut n.pool);
        acks.sort_by_key(|m| m.from.0 != quick);
        for ack in acks {
            n.r[0].step(ack);
            n.pump(1);
        }
        n.pool.clear();
        n.r[0].read(ReadId(1)).unwrap();
        n.pump(1);
        assert_eq!(heartbeat_targets(&n.pool), vec![quick]);
    }
}

/// Everything but the state reports a rebuilding node waits for: its
/// rebuild lasts as long as the test.
fn keep_rebuilding(m: &Message) -> bool {
    !matches!(m.body, Body::StateReport { .. })
}

/// A node that asks for read indexes but cannot confirm a round (a
/// rebuilding one acknowledges round 0) is given no place in partial rounds
/// for asking: the leader's own reads are served at once. From the review
/// of partial rounds: the first version put the asker in the quorum's
/// place, and every round waited a tick.
#[test]
fn a_rebuilding_node_that_asks_does_not_hold_read_rounds_back() {
    for (size, wiped) in [(3u32, 3u32), (5, 5)] {
        let mut n = Net::new(size);
        let all: Vec<u32> = (1..=size).collect();
        n.elect(1, &all[1..]);
        n.write(1, b"x", &all);
        n.wipe(wiped);
        for _ in 0..20 {
            n.tick(1);
            n.tick(wiped);
            n.exchange(keep_rebuilding);
        }
        let w = wiped as usize - 1;
        assert!(n.r[w].rebuilding(), "n{wiped} still rebuilding");
        assert_eq!(n.r[w].status().leader, Some(NodeId(1)));
        for k in 0..10u64 {
            n.pool.clear();
            // Without asking, the rebuilding node gets no partial round.
            n.r[0].read(ReadId(1000 + k)).unwrap();
            n.pump(1);
            assert!(!heartbeat_targets(&n.pool).contains(&wiped), "round {k}");
            n.exchange(keep_rebuilding);
            // Asking changes nothing, and the leader's read sharing the
            // round is served without waiting for a tick.
            n.pool.clear();
            n.r[w].read(ReadId(100 + k)).unwrap();
            n.pump(wiped);
            // It may have lost a promise above the leader's: it vouches
            // for nothing.
            assert_eq!(vouches(&n.pool), vec![None], "round {k}");
            n.exchange(|m| matches!(m.body, Body::ReadIndexRequest { .. }));
            n.r[0].read(ReadId(k)).unwrap();
            n.pump(1);
            assert!(!heartbeat_targets(&n.pool).contains(&wiped), "round {k}");
            n.exchange(keep_rebuilding);
            assert_eq!(
                n.served[0].len() as u64,
                2 * (k + 1),
                "{size} nodes: leader read {k} served at once"
            );
        }
    }
}

/// A follower's read that waits for instances it has not learned are
/// chosen (it missed the announcement) is served once it learns them from
/// the reply's chosen prefix and fetches them, though the round that
/// confirmed it went to the other follower only.
///
/// Both ways a follower's read is confirmed: by its request's vouch alone
/// (no round), and, with the vouch taken out, by a round to n2.
#[test]
fn a_follower_read_learns_the_chosen_prefix_from_the_reply() {
    for vouched in [true, false] {
        let mut n = Net::new(3);
        n.elect(1, &[2, 3]);
        n.write(1, b"x", &[1, 2, 3]);
        // Everyone answered the last full round, n2 first: n2 gets the
        // partial rounds.
        n.write(1, b"y", &[1, 2]); // n3 never hears y, nor that it is chosen
        n.pool.clear();
        n.r[2].read(ReadId(3)).unwrap();
        n.pump(3);
        if !vouched {
            strip_vouches(&mut n.pool);
        }
        n.exchange(|m| matches!(m.body, Body::ReadIndexRequest { .. }));
        let to = heartbeat_targets(&n.pool);
        if vouched {
            assert_eq!(to, Vec::<u32>::new(), "confirmed by the request alone");
            assert_eq!(n.r[0].vouched_reads(), 1);
        } else {
            assert_eq!(to, vec![2], "the round goes to n2 only");
            assert_eq!(n.r[0].vouched_reads(), 0);
        }
        // Deliver everything but heartbeats to n3: n3 learns from the reply.
        n.exchange(|m| !(matches!(m.body, Body::Heartbeat { .. }) && m.to.0 == 3));
        assert!(n.served[2].is_empty(), "served before y was applied");
        for _ in 0..100 {
            n.tick(3);
            n.exchange(|m| !(matches!(m.body, Body::Heartbeat { .. }) && m.to.0 == 3));
        }
        assert_eq!(n.applied[2].len(), 2, "n3 learned y");
        assert_eq!(n.served[2], vec![(3, 2)], "served with y applied");
    }
}

/// Takes the vouch out of every read request in `pool` (as a follower that
/// may not vouch sends them).
fn strip_vouches(pool: &mut [Message]) {
    for m in pool {
        if let Body::ReadIndexRequest { vouch, .. } = &mut m.body {
            *vouch = None;
        }
    }
}

/// The vouch a read request in `pool` carries.
fn vouches(pool: &[Message]) -> Vec<Option<Ballot>> {
    pool.iter()
        .filter_map(|m| match m.body {
            Body::ReadIndexRequest { vouch, .. } => Some(vouch),
            _ => None,
        })
        .collect()
}

/// On three nodes a follower's request, sent while its promise is the
/// leader's ballot, is an acknowledgement sent after its reads arrived: the
/// leader and it are a majority, and the leader answers on arrival, with
/// no heartbeat round. Its reads are served at the leader's log end.
#[test]
fn a_follower_request_that_vouches_is_answered_without_a_round() {
    let mut n = Net::settled(3);
    let ballot = n.r[0].status().promised;
    n.r[2].read(ReadId(4)).unwrap();
    n.r[2].read(ReadId(5)).unwrap();
    n.pump(3);
    assert_eq!(vouches(&n.pool), vec![Some(ballot)], "one request for both");
    n.exchange(|m| matches!(m.body, Body::ReadIndexRequest { .. }));
    assert_eq!(heartbeat_targets(&n.pool), Vec::<u32>::new());
    assert!(n
        .pool
        .iter()
        .any(|m| matches!(m.body, Body::ReadIndexReply { .. })));
    n.exchange(|_| true);
    assert_eq!(n.served[2], vec![(4, 1), (5, 1)]);
    assert_eq!(n.r[0].vouched_reads(), 1);
}

/// A vouch counts only for the ballot the leader leads at: one that names
/// another (an earlier ballot of this leader, a higher one, another node's)
/// leaves the request to a heartbeat round, as a request without one.
#[test]
fn a_vouch_for_another_ballot_confirms_nothing() {
    let mut n = Net::settled(3);
    let ballot = n.r[0].status().promised;
    let others = [
        Ballot {
            round: ballot.round - 1,
            node: ballot.node,
        },
        Ballot {
            round: ballot.round + 1,
            node: ballot.node,
        },
        Ballot {
            round: ballot.round,
            node: NodeId(3),
        },
    ];
    for (k, other) in others.into_iter().enumerate() {
        n.pool.clear();
        n.r[0].step(Message {
            group: GroupId(0),
            from: NodeId(3),
            to: NodeId(1),
            body: Body::ReadIndexRequest {
                id: 77 + k as u64,
                vouch: Some(other),
            },
        });
        n.pump(1);
        assert!(
            !n.pool
                .iter()
                .any(|m| matches!(m.body, Body::ReadIndexReply { .. })),
            "{other:?} answered at once"
        );
        assert!(!heartbeat_targets(&n.pool).is_empty(), "a round is sent");
        assert_eq!(n.r[0].vouched_reads(), 0);
        // Let the round complete so the next request starts afresh.
        n.exchange(|m| m.to.0 != 3 || !matches!(m.body, Body::ReadIndexReply { .. }));
    }
}

/// On five nodes the leader and one follower are not a majority: a vouched
/// request still waits for a heartbeat round.
#[test]
fn a_vouch_on_five_nodes_waits_for_a_round() {
    let mut n = Net::settled(5);
    n.r[4].read(ReadId(6)).unwrap();
    n.pump(5);
    assert!(vouches(&n.pool)[0].is_some(), "it vouches");
    n.exchange(|m| matches!(m.body, Body::ReadIndexRequest { .. }));
    assert!(!n
        .pool
        .iter()
        .any(|m| matches!(m.body, Body::ReadIndexReply { .. })));
    assert!(!heartbeat_targets(&n.pool).is_empty(), "a round is sent");
    n.exchange(|_| true);
    assert_eq!(n.served[4], vec![(6, 1)]);
    assert_eq!(n.r[0].vouched_reads(), 0);
}

/// While instances are in flight the leader does not announce a grown
/// chosen prefix to everyone (`announce_chosen`): a follower whose read
/// waits for an index it has not learned is chosen is told in the step its
/// request arrives, not when the pipeline drains or at the next tick (nor
/// after a catch-up); a follower that waits on nothing is not told.
#[test]
fn a_follower_whose_read_waits_is_told_the_chosen_prefix_without_a_tick() {
    let mut n = Net::settled(3);
    // y goes out and both followers accept it; only n2's acceptance comes
    // back.
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    n.exchange(|m| matches!(m.body, Body::Accept { .. }));
    let accepted: Vec<Message> = std::mem::take(&mut n.pool)
        .into_iter()
        .filter(|m| m.from.0 == 2)
        .collect();
    // z goes out (its Accepts carry the old prefix, and stay away): in
    // flight when y is chosen.
    n.r[0].propose(Bytes::from_static(b"z")).unwrap();
    n.pump(1);
    let _z_accepts = std::mem::take(&mut n.pool);
    n.pool = accepted;
    n.exchange(|_| true);
    assert_eq!(n.applied[0].len(), 2, "y chosen");
    assert_eq!(n.applied[1].len(), 1, "n2 waits on nothing: not told");
    assert_eq!(n.applied[2].len(), 1, "n3 was not told either");
    // n3 reads: its read index is past y, which it does not know chosen.
    n.r[2].read(ReadId(9)).unwrap();
    n.pump(3);
    n.exchange(|_| true);
    assert_eq!(n.served[2], vec![(9, 2)], "served with y applied, no tick");
    assert_eq!(n.applied[1].len(), 1, "n2 still not told");
}

/// A follower read whose index is past the leader's chosen prefix (the
/// leader knows a later instance chosen, out of order) waits, and is told
/// the prefix in the step it grows that far, while instances are still in
/// flight (no drain round tells everyone).
#[test]
fn a_follower_read_past_the_leaders_prefix_is_told_as_it_grows() {
    let mut n = Net::settled(3);
    // y and then z go out; both followers accept z, only n2's acceptance
    // comes back: the leader knows z chosen, not y.
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    let y_accepts = std::mem::take(&mut n.pool);
    n.r[0].propose(Bytes::from_static(b"z")).unwrap();
    n.pump(1);
    n.exchange(|m| {
        matches!(m.body, Body::Accept { .. })
            || matches!(m.body, Body::Accepted { .. }) && m.from.0 != 3
    });
    n.pool.clear();
    assert_eq!(n.applied[0].len(), 1, "y is not known chosen");
    // n3 reads: its index is past z.
    n.r[2].read(ReadId(9)).unwrap();
    n.pump(3);
    n.exchange(|_| true);
    assert!(n.served[2].is_empty(), "served before y and z are applied");
    // w goes out and stays in flight; y's acceptances come back.
    n.r[0].propose(Bytes::from_static(b"w")).unwrap();
    n.pump(1);
    n.pool.clear();
    n.pool = y_accepts;
    n.exchange(|_| true);
    assert_eq!(n.applied[0].len(), 3, "y and z chosen at the leader");
    assert_eq!(
        n.served[2],
        vec![(9, 3)],
        "told as the prefix grew, no tick"
    );
}

/// A write in flight cannot have completed anywhere: a read at a follower
/// is served at once, at what the leader knows chosen, without waiting for
/// the write to be chosen (`reads.rs`).
#[test]
fn a_read_does_not_wait_for_a_write_in_flight() {
    let mut n = Net::settled(3);
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    let _y_accepts = std::mem::take(&mut n.pool);
    n.r[2].read(ReadId(9)).unwrap();
    n.pump(3);
    n.exchange(|_| true);
    assert_eq!(n.served[2], vec![(9, 1)], "served without y");
    // At the leader too, after its round.
    n.r[0].read(ReadId(10)).unwrap();
    n.pump(1);
    n.exchange(|m| !matches!(m.body, Body::Accept { .. }));
    assert_eq!(n.served[0], vec![(10, 1)], "served without y");
}

/// What a forwarder is told while instances are in flight goes in a
/// heartbeat that is no new round (probe 0): on five nodes a round to one
/// follower could never confirm, and a read arriving right after it must
/// not wait a tick for it.
#[test]
fn telling_a_forwarder_its_commands_are_chosen_does_not_hold_up_a_read() {
    let mut n = Net::settled(5);
    let g_accepts = n.forward_f_with_g_in_flight();
    n.exchange(|_| true);
    assert_eq!(n.applied[1].len(), 2, "the forwarder applied its command");
    assert_eq!(n.applied[2].len(), 1, "the others were not told");
    n.r[0].read(ReadId(4)).unwrap();
    n.pump(1);
    assert!(
        n.pool
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat { .. }) && m.to.0 != 2),
        "the read's round went out at once"
    );
    n.pool.extend(g_accepts);
    n.exchange(|_| true);
    // At what was chosen when it arrived (f): g was in flight.
    assert_eq!(
        n.served[0],
        vec![(4, 2)],
        "the read was served without a tick"
    );
}

/// A forwarder told that its command is chosen while other instances are in
/// flight gets a heartbeat that asks for no answer (probe 0), and answers
/// none: an acknowledgement per batch cost the leader a wake-up and the
/// forwarder a send, and could only repeat one of the last round's.
#[test]
fn a_forwarder_told_its_command_is_chosen_sends_no_answer() {
    let mut n = Net::settled(5);
    let g_accepts = n.forward_f_with_g_in_flight();
    n.exchange(|m| !matches!(m.body, Body::Heartbeat { .. }));
    let told = n.heartbeats_to(2);
    assert_eq!(told.len(), 1, "the forwarder is told: {:?}", n.pool);
    assert!(matches!(told[0].body, Body::Heartbeat { probe: 0, .. }));
    n.pool.clear();
    n.r[1].step(told[0].clone());
    n.pump(2);
    assert_eq!(n.applied[1].len(), 2, "the forwarder applied its command");
    assert!(
        !n.pool
            .iter()
            .any(|m| matches!(m.body, Body::HeartbeatAck { .. })),
        "no answer: {:?}",
        n.pool
    );
    // A round still gets its answers.
    n.pool.extend(g_accepts);
    n.exchange(|_| true);
    n.r[0].read(ReadId(7)).unwrap();
    n.pump(1);
    n.exchange(|_| true);
    assert_eq!(n.served[0], vec![(7, 3)]);
}

/// A new leader that has not yet re-chosen what its predecessor chose
/// still serves reads past it: a follower told by the predecessor may have
/// applied it and answered its client. The read index is past what phase 1
/// reported (`recovery_end`), not only past what the leader knows chosen
/// (`reads.rs`; without that floor, `Inject::read_index_chosen_only`, this
/// read is served without y).
#[test]
fn a_new_leader_serves_reads_past_what_its_predecessor_chose() {
    let (served_early, served) = new_leader_read(|_| {});
    assert!(
        served_early.is_empty(),
        "served before y was chosen again: {served_early:?}"
    );
    assert_eq!(served, vec![(1, 2)], "served with y, once chosen again");
}

/// The negative control: without the floors of phase 1 the same read is
/// served at once, without y, which n2 applied (and acknowledged).
#[cfg(feature = "fault-injection")]
#[test]
fn read_index_chosen_only_injection_serves_a_stale_read() {
    let (served_early, _) = new_leader_read(|cfg| cfg.inject.read_index_chosen_only = true);
    assert_eq!(served_early, vec![(1, 1)]);
}

/// The scenario of `a_new_leader_serves_reads_past_what_its_predecessor_chose`
/// on five nodes configured by `edit`: what the new leader served of its
/// read while its re-proposal of y was held back, and in the end.
type Served = Vec<(u64, usize)>;
fn new_leader_read(edit: impl Fn(&mut Config)) -> (Served, Served) {
    let mut n = Net::settled_with(5, edit);
    // y is accepted by n2 and n3 (and n1) and so chosen at n1.
    n.r[0].propose(Bytes::from_static(b"y")).unwrap();
    n.pump(1);
    n.exchange(|m| {
        m.from.0 == m.to.0
            || matches!(m.body, Body::Accept { .. }) && [2, 3].contains(&m.to.0)
            || matches!(m.body, Body::Accepted { .. })
    });
    assert_eq!(n.applied[0].len(), 2, "y chosen at n1");
    // Only n2 is told so: it applies y (and would answer y's client).
    n.pool
        .retain(|m| m.to.0 == 2 && matches!(m.body, Body::Heartbeat { .. }));
    assert!(!n.pool.is_empty(), "n1 tells the prefix");
    n.exchange(|_| true);
    assert_eq!(n.applied[1].len(), 2, "n2 applied y");
    n.pool.clear();
    // n1 and n2 fall silent; one of n3, n4, n5 wins with the other two,
    // none of which knows y chosen (n3 reports it as accepted). Its
    // re-proposal of y stays away.
    let others = |m: &Message| ![1, 2].contains(&m.from.0) && ![1, 2].contains(&m.to.0);
    let is_accept = |m: &Message| matches!(m.body, Body::Accept { .. } | Body::Accepted { .. });
    let quiet = |m: &Message| others(m) && !is_accept(m);
    let mut winner = None;
    for _ in 0..1000 {
        for id in 3..=5 {
            n.tick(id);
        }
        n.pool.retain(others);
        n.exchange(quiet);
        winner = (3..=5).find(|id| n.role(*id) == RoleKind::Leader);
        if winner.is_some() {
            break;
        }
    }
    let w = winner.expect("one of n3, n4, n5 leads");
    let k = w as usize - 1;
    assert_eq!(n.applied[k].len(), 1, "n{w} has not applied y");
    // Its read's round is answered; y is not chosen again yet.
    n.r[k].read(ReadId(1)).unwrap();
    n.pump(w);
    for _ in 0..5 {
        n.tick(w);
        n.exchange(quiet);
    }
    let served_early = n.served[k].clone();
    // y is chosen again (and applied).
    n.exchange(others);
    (served_early, n.served[k].clone())
}

/// A member that waits on the prefix again (here a read at a follower,
/// after its forwarded command was answered) is not told the prefix it was
/// told already: the leader remembers how far it told each member after
/// the member stops waiting. It forgot, and a follower with clients got a
/// second, identical heartbeat for about half of the batches.
#[test]
fn a_member_waiting_again_is_not_told_the_prefix_it_has() {
    let (mut n, _g_accepts) = Net::forwarder_told_f_with_g_in_flight();
    n.r[1].read(ReadId(5)).unwrap();
    n.pump(2);
    n.exchange(|m| matches!(m.body, Body::ReadIndexRequest { .. }));
    assert!(
        n.heartbeats_to(2).is_empty(),
        "told again what it was told: {:?}",
        n.pool
    );
    n.exchange(|_| true);
    // g is in flight, not chosen: the read does not wait for it.
    assert_eq!(n.served[1], vec![(5, 2)], "served at what it was told");
}

/// The member waiting again is told as the prefix grows past what it was
/// told while instances are still in flight, so with no drain round to
/// tell everyone: its read is served by the tell alone.
#[test]
fn a_member_waiting_again_is_told_growth_with_instances_in_flight() {
    let (mut n, g_accepts) = Net::forwarder_told_f_with_g_in_flight();
    // h goes in flight and stays there.
    n.r[0].propose(Bytes::from_static(b"h")).unwrap();
    n.pump(1);
    n.pool.clear();
    // g is accepted everywhere and chosen by n3's acceptance alone: h in
    // flight, so g's choice drains nothing and n2 is not told.
    n.pool = g_accepts;
    n.exchange(|m| !matches!(m.body, Body::Accepted { .. }) || m.from.0 == 3);
    assert_eq!(n.applied[0].len(), 3, "g chosen");
    assert_eq!(n.applied[1].len(), 2, "n2 not told g is chosen");
    n.r[1].read(ReadId(5)).unwrap();
    n.pump(2);
    n.exchange(|_| true);
    assert_eq!(n.served[1], vec![(5, 3)], "told g is chosen, it serves");
}

/// A transfer target that was told the prefix already (it forwarded a
/// command) is told it again with the last round's probe, which it
/// answers (the transfer waits for that report): the told mark the leader
/// keeps does not stand in for it.
#[test]
fn a_transfer_target_told_before_is_told_again_with_a_probe() {
    let (mut n, g_accepts) = Net::forwarder_told_f_with_g_in_flight();
    n.pool.clear();
    n.r[0].transfer_leadership(NodeId(2)).unwrap();
    n.pump(1);
    n.told_with_a_probe(2);
    n.pool.extend(g_accepts);
    n.hands_over_to(2);
}

/// A leadership transfer waits for its target to report the whole prefix
/// (`check_transfer`): told it while instances are in flight, the target
/// gets the last round's probe, not 0, and answers.
#[test]
fn a_transfer_target_told_the_prefix_answers() {
    let mut n = Net::settled(3);
    n.r[0].propose(Bytes::from_static(b"a")).unwrap();
    n.pump(1);
    let a_accepts = std::mem::take(&mut n.pool);
    n.r[0].propose(Bytes::from_static(b"b")).unwrap();
    n.pump(1);
    n.pool.clear(); // b stays in flight
    n.r[0].transfer_leadership(NodeId(2)).unwrap();
    n.pump(1);
    n.pool = a_accepts; // what the transfer sent is dropped
    n.exchange(|m| !matches!(m.body, Body::Heartbeat { .. }));
    let told = n.told_with_a_probe(2);
    n.pool.clear();
    n.r[1].step(told);
    n.pump(2);
    assert!(n
        .pool
        .iter()
        .any(|m| m.to.0 == 1 && matches!(m.body, Body::HeartbeatAck { .. })));
    // And the transfer goes through (b is sent again after a few ticks).
    n.hands_over_to(2);
}

/// Attack review: a follower picked for a read round that also waits on the
/// prefix (it forwarded a command) got a second, identical heartbeat from
/// `announce_chosen` in the same step.
#[test]
fn a_waiting_forwarder_in_a_read_round_gets_one_heartbeat_per_step() {
    let mut n = Net::settled(3);
    n.r[0].read(ReadId(1)).unwrap();
    n.pump(1);
    let target = n
        .pool
        .iter()
        .find(|m| matches!(m.body, Body::Heartbeat { .. }))
        .expect("a read round")
        .to
        .0;
    n.exchange(|_| true);
    assert_eq!(n.served[0].len(), 1);
    // The read round's target forwards a command; the leader also has a
    // second one in flight, so the prefix is not announced to everyone.
    n.r[target as usize - 1]
        .propose(Bytes::from_static(b"f"))
        .unwrap();
    n.pump(target);
    n.r[0].propose(Bytes::from_static(b"g")).unwrap();
    n.exchange(|m| !matches!(m.body, Body::Accepted { .. }));
    let accepted: Vec<Message> = std::mem::take(&mut n.pool);
    let first = accepted
        .iter()
        .filter(|m| m.from.0 == target && matches!(m.body, Body::Accepted { .. }))
        .min_by_key(|m| match m.body {
            Body::Accepted { instance, .. } => instance,
            _ => unreachable!(),
        })
        .expect("the target accepted")
        .clone();
    n.r[0].step(first); // chooses the first of them
    n.r[0].read(ReadId(2)).unwrap(); // and a read in the same step
    let ready = n.r[0].take_ready();
    let to_target = ready
        .messages
        .iter()
        .filter(|m| m.to.0 == target && matches!(m.body, Body::Heartbeat { .. }))
        .count();
    assert_eq!(to_target, 1, "heartbeats to node {target} in one step");
}

/// Attack review: a command forwarded to a node that had stepped down and
/// was campaigning is chosen once it leads; the forwarder learns so without
/// waiting for a tick (the drained pipeline is announced to everyone).
#[test]
fn a_command_forwarded_to_a_candidate_is_known_chosen_without_a_tick() {
    let mut n = Net::settled(3);
    for _ in 0..200 {
        // Node 1 hears nobody: it steps down and campaigns.
        n.pool.clear();
        n.tick(1);
        if n.role(1) == RoleKind::Candidate {
            break;
        }
    }
    assert_eq!(n.role(1), RoleKind::Candidate);
    let prepares = std::mem::take(&mut n.pool);
    n.r[1].propose(Bytes::from_static(b"f")).unwrap(); // node 2 still follows 1
    n.pump(2);
    n.exchange(|m| matches!(m.body, Body::Forward { .. }));
    n.pool.extend(prepares);
    n.exchange(|_| true);
    assert_eq!(n.role(1), RoleKind::Leader);
    assert_eq!(n.applied[0].len(), 2, "f chosen and applied at the leader");
    assert_eq!(
        n.applied[1].len(),
        2,
        "the forwarder learned it without a tick"
    );
}

/// With `Config::announce_delay_ms`, a leader whose pipeline drained and
/// that proposed again within the delay after its last drain (a busy one)
/// tells its followers the grown prefix only once its clock reaches
/// `wake_at_ms`, and not at all if an Accept carried the prefix first (at
/// one client, the next command's): the round each drain cost is saved. A
/// leader that proposes less often announces at once.
#[test]
fn a_busy_leaders_drained_pipeline_is_announced_after_the_delay_unless_an_accept_carries_it() {
    let mut n = Net::with_announce_delay(3, 2, 1_000);
    n.write(1, b"x", &[1, 2, 3]);
    assert_eq!(
        n.applied[1].len(),
        1,
        "the first drain is announced at once"
    );
    assert_eq!(n.r[0].wake_at_ms(), None);

    // y comes right after x's drain: y's drain waits.
    n.write(1, b"y", &[1, 2, 3]);
    assert_eq!(n.applied[0].len(), 2, "y chosen");
    assert_eq!(n.applied[1].len(), 1, "y not announced at once");
    assert_eq!(n.r[0].wake_at_ms(), Some(1_002));
    n.r[0].set_time(1_001);
    n.pump(1);
    assert_eq!(n.heartbeats_from(1), 0, "announced before the delay");
    n.r[0].set_time(1_002);
    n.pump(1);
    assert_eq!(n.heartbeats_from(1), 2, "one round to both followers");
    assert_eq!(n.r[0].wake_at_ms(), None);
    n.exchange(|_| true);
    assert_eq!(n.applied[1].len(), 2, "y announced after the delay");
    assert_eq!(n.applied[2].len(), 2, "y announced after the delay");

    // z comes later than the delay after y's drain: announced at once.
    for k in 0..3 {
        n.r[k].set_time(1_003);
    }
    n.write(1, b"z", &[1, 2, 3]);
    assert_eq!(n.applied[1].len(), 3, "an idle leader announces at once");

    // w right after: its drain waits; v's Accepts carry w's prefix before
    // the delay runs out, and no round goes for w.
    n.write(1, b"w", &[1, 2, 3]);
    assert_eq!(n.r[0].wake_at_ms(), Some(1_005));
    n.r[0].propose(Bytes::from_static(b"v")).unwrap();
    n.pump(1);
    assert_eq!(n.r[0].wake_at_ms(), None, "the Accepts carry w");
    assert_eq!(n.heartbeats_from(1), 0);
    n.exchange(|_| true);
    assert_eq!(n.applied[1].len(), 4, "w learned from v's Accept");
    assert_eq!(n.r[0].wake_at_ms(), Some(1_005), "v drained it again");
}

/// A follower waiting on the prefix is told at once even when the drain's
/// round waits: a forwarder's client waits for the answer.
#[test]
fn a_forwarder_is_told_at_once_whatever_the_announce_delay() {
    let mut n = Net::with_announce_delay(3, 5, 1_000);
    n.write(1, b"a", &[1, 2, 3]);
    n.write(1, b"b", &[1, 2, 3]);
    assert_eq!(n.applied[1].len(), 1, "b's round waits");
    n.r[1].propose(Bytes::from_static(b"f")).unwrap();
    n.pump(2);
    n.exchange(|_| true);
    assert_eq!(n.applied[0].len(), 3, "f chosen");
    assert_eq!(n.applied[1].len(), 3, "the forwarder was told at once");
    assert_eq!(n.applied[2].len(), 2, "the other follower waits");
    assert!(n.r[0].wake_at_ms().is_some());
}

/// A replica restored from an old image of its disk (its promise is `b`, the
/// leader's ballot; its lost incarnation had promised a rival's higher
/// ballot and helped it complete y) rebuilds; while it rebuilds it must not
/// vouch for the deposed leader it follows, or its read misses y. (From the
/// attack review of vouched reads: a wiped node's promise is zero, which
/// never names a leader, so only an old image shows the rebuild check.)
#[test]
fn a_rebuilding_replica_restored_from_an_old_image_does_not_vouch() {
    let mut n = Net::settled(3);
    let ballot = n.r[0].status().promised;
    assert_eq!(n.r[1].status().promised, ballot);
    let images = [n.r[1].checkpoint_records(), n.r[2].checkpoint_records()];
    // n2 or n3 takes over and writes y; n1 hears nothing of it.
    let x = n.take_over_without_n1();
    let f = 5 - x; // the other one: it promised x, and is restored
    n.write(x, b"y", &[2, 3]);
    assert_eq!(
        n.applied[x as usize - 1].len(),
        2,
        "y completed at the new leader"
    );
    assert!(n.r[f as usize - 1].status().promised > ballot);
    n.pool.clear();
    assert_eq!(n.role(1), RoleKind::Leader, "n1 has not noticed");
    // The other one's disk is replaced by the old image; it rebuilds. The new leader is gone.
    let mut cfg = Config::new(NodeId(f), (1..=3).map(NodeId).collect());
    cfg.seed = 4242;
    cfg.rebuild = true;
    let fi = f as usize - 1;
    n.r[fi] = Replica::recover(cfg, None, images[fi - 1].iter()).unwrap();
    n.applied[fi].clear();
    n.pump(f);
    assert_eq!(n.r[fi].status().promised, ballot);
    let no3 = move |m: &Message| m.from.0 != x && m.to.0 != x;
    for _ in 0..5 {
        n.tick(1);
        n.tick(f);
        n.exchange(no3);
        n.pool.retain(no3);
    }
    assert!(n.r[fi].rebuilding());
    assert_eq!(n.r[fi].status().leader, Some(NodeId(1)));
    n.r[fi].read(ReadId(50)).unwrap();
    n.pump(f);
    assert_eq!(vouches(&n.pool), vec![None], "a rebuilding replica vouches");
    for _ in 0..50 {
        n.tick(1);
        n.tick(f);
        n.exchange(no3);
        n.pool.retain(no3);
    }
    assert_eq!(n.r[0].vouched_reads(), 0);
    for (read, applied) in &n.served[fi] {
        assert!(*applied >= 2, "STALE READ {read} at n{f}: y missing");
    }
}

/// A deposed leader that has not noticed answers a vouched request that
/// was sent before its successor was elected, at its own (stale) index.
/// That is linearizable: the vouch says the follower had promised nothing
/// above the old ballot when it sent the request, after its reads arrived,
/// so those reads began before the successor's first write could complete
/// (y here): they may be ordered before it. The module docs' claim is
/// stated from the read's arrival at the follower for this reason (attack
/// review of vouched reads).
#[test]
fn a_deposed_leader_answers_a_vouched_request_sent_before_its_successor() {
    let mut n = Net::settled(3);
    n.r[1].read(ReadId(60)).unwrap();
    n.pump(2);
    let held: Vec<Message> = std::mem::take(&mut n.pool);
    assert!(vouches(&held)[0].is_some());
    let x = n.take_over_without_n1();
    n.write(x, b"y", &[2, 3]);
    assert_eq!(n.role(1), RoleKind::Leader);
    n.pool.clear();
    for m in held {
        n.r[0].step(m);
    }
    n.pump(1);
    assert_eq!(n.r[0].vouched_reads(), 1, "the deposed leader answered");
}
