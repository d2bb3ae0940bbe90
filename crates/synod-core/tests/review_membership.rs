//! Review of online membership changes: attacks on the schedule, the door,
//! transfers and the α rule, each pinned by a test that failed before its fix.

#![allow(dead_code)]

use bytes::Bytes;
use std::collections::BTreeMap;
use synod_core::*;

/// Replicas on a perfect network (every message delivered unless a link is
/// cut), every record durable at once.
struct Cluster {
    r: BTreeMap<u32, Replica>,
    pool: Vec<Message>,
    cut: Vec<(u32, u32)>,
}

impl Cluster {
    fn new(n: u32) -> Cluster {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let r = members
            .iter()
            .map(|id| {
                (
                    id.0,
                    Replica::new(Config::new(*id, members.clone())).unwrap(),
                )
            })
            .collect();
        Cluster {
            r,
            pool: vec![],
            cut: vec![],
        }
    }

    /// Starts node `id` as a brand-new member, from `via`'s schedule.
    fn join(&mut self, id: u32, via: u32) {
        let source = &self.r[&via];
        let point = source.status().applied_end;
        let mut cfg = Config::new(NodeId(id), vec![]);
        cfg.schedule = Some((point, source.schedule_at(point)));
        cfg.seed = 1000 + u64::from(id);
        self.r
            .insert(id, Replica::new(cfg).expect("a member of the schedule"));
    }

    fn pump(&mut self, id: u32) {
        let Some(replica) = self.r.get_mut(&id) else {
            return;
        };
        loop {
            let ready = replica.take_ready();
            if ready.is_empty() {
                break;
            }
            self.pool.extend(ready.messages);
            if !ready.persist.is_empty() {
                replica.persisted(ready.persist_through);
            }
        }
    }

    /// Delivers every message (over links not cut) until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let ids: Vec<u32> = self.r.keys().copied().collect();
            for id in &ids {
                self.pump(*id);
            }
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                let (from, to) = (m.from.0, m.to.0);
                if self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                    continue;
                }
                if let Some(replica) = self.r.get_mut(&to) {
                    replica.step(m);
                }
            }
        }
        panic!("the network never went quiet");
    }

    /// Delivers the messages in the pool once (no pumping before).
    fn settle_one_step(&mut self, skip: Option<u32>) {
        let msgs = std::mem::take(&mut self.pool);
        for m in msgs {
            let (from, to) = (m.from.0, m.to.0);
            if self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                continue;
            }
            if let Some(replica) = self.r.get_mut(&to) {
                replica.step(m);
            }
        }
        let ids: Vec<u32> = self.r.keys().copied().collect();
        for id in ids {
            if Some(id) != skip {
                self.pump(id);
            }
        }
    }

    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            let ids: Vec<u32> = self.r.keys().copied().collect();
            for id in ids {
                if let Some(replica) = self.r.get_mut(&id) {
                    replica.tick();
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<u32> {
        self.r
            .iter()
            .filter(|(_, r)| r.status().role == RoleKind::Leader)
            .max_by_key(|(_, r)| r.status().promised)
            .map(|(id, _)| *id)
    }

    fn elect(&mut self) -> u32 {
        for _ in 0..500 {
            if let Some(id) = self.leader() {
                return id;
            }
            self.tick_all(1);
        }
        panic!("no leader");
    }

    fn write(&mut self, leader: u32, what: &str) {
        self.r
            .get_mut(&leader)
            .unwrap()
            .propose(Bytes::from(what.to_string()))
            .expect("leader takes it");
        self.settle();
    }

    fn chosen_end(&self, id: u32) -> u64 {
        self.r[&id].status().chosen_end.0
    }
}

fn add(id: u32, promote: bool) -> MembershipChange {
    MembershipChange::Add {
        id: NodeId(id),
        addr: Bytes::new(),
        promote,
    }
}

fn voters(m: &Membership) -> Vec<NodeId> {
    m.voters().collect()
}

/// A node that joined from a member's schedule at `P` and then caught up the
/// log from instance 0 (the group never compacted) knows the memberships
/// only from the first entry of that schedule on: `schedule_at(Q)` for an
/// earlier `Q` (what its snapshot at `Q` carries, and what a node joining
/// through it gets) starts after `Q`. A replica that installs or recovers
/// such a snapshot has its chosen prefix at `Q`, where `Schedule::at` answers
/// with the first membership it has, that of `P`: before the fix it
/// campaigned there and counted promises against a membership that does not
/// govern those instances (a quorum of the wrong voters for instances the
/// group may already have chosen).
#[test]
fn a_replica_never_campaigns_before_the_first_membership_it_knows() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != victim).unwrap();
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(MembershipChange::Remove { id: NodeId(victim) }, false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    c.write(leader, "b");
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(5, false), false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    c.join(5, leader);
    c.tick_all(20);
    assert_eq!(
        c.chosen_end(5),
        c.chosen_end(leader),
        "the joiner caught up"
    );
    let old = InstanceId(1);
    let truth = voters(c.r[&leader].schedule_at(old).at(old));
    assert_eq!(truth.len(), 3, "three voters governed instance 1");
    let claimed = c.r[&5].schedule_at(old);
    let known_from = claimed.entries()[0].from;
    assert!(
        known_from > old,
        "the joiner's schedule does not reach back to instance 1"
    );
    // `other`, a voter throughout, recovers from the joiner's snapshot at
    // `old` (no log after it): it must not campaign before it has learned
    // the log up to the first membership its schedule holds.
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            applied_end: old,
            checksum: Checksum::default(),
        },
        memberships: Some(claimed),
        data: Bytes::new(),
    };
    let cfg = Config::new(NodeId(other), vec![NodeId(1), NodeId(2), NodeId(3)]);
    let mut r = Replica::recover(cfg, Some(snapshot), std::iter::empty()).unwrap();
    for _ in 0..300 {
        r.tick();
        let _ = r.take_ready();
        assert_eq!(
            r.status().role,
            RoleKind::Follower,
            "campaigned at {} with the membership of {}",
            old.0,
            known_from.0
        );
    }
}

/// A change the leader accepted (`propose_change` answered Ok) and a
/// transfer asked before the change got an instance: the transfer stops
/// new proposals, and the change was dropped with the old leader's state
/// when it stepped down. The operator was told it would happen; it never
/// did, and nothing said so.
#[test]
fn a_transfer_never_drops_a_change_the_leader_accepted() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let to = (1..=3).find(|id| *id != leader).unwrap();
    let r = c.r.get_mut(&leader).unwrap();
    r.propose_change(add(4, false), false)
        .expect("the leader takes the change");
    let transfer = r.transfer_leadership(NodeId(to));
    c.settle();
    c.tick_all(80);
    let new_leader = c.elect();
    let added = c.r[&new_leader].schedule().latest().contains(NodeId(4));
    assert!(
        added || transfer.is_err(),
        "the change was accepted, the transfer too, and the change vanished"
    );
}

/// A new leader's read index is its cursor (`next_instance`), which since
/// the α rule starts at the chosen prefix and moves only as it proposes
/// (window, α gate, per-instance quorums). Before, it started past every
/// instance phase 1 reported. Here node 1 chose four instances (node 3
/// accepted them, without learning they were chosen) and crashed; the new
/// leader, whose window is one instance, confirmed a read at an index below
/// three of them and served it from a state without writes that had
/// completed before the read began: a stale read.
#[test]
fn a_new_leaders_read_sees_every_write_its_predecessor_completed() {
    let members = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut c = Cluster::new(3);
    for id in [2u32, 3] {
        let mut cfg = Config::new(NodeId(id), members.clone());
        cfg.window_instances_max = 1;
        c.r.insert(id, Replica::new(cfg).unwrap());
    }
    // Node 1 leads: only it ticks until it does.
    for _ in 0..200 {
        if c.leader() == Some(1) {
            break;
        }
        c.r.get_mut(&1).unwrap().tick();
        c.settle();
    }
    assert_eq!(c.leader(), Some(1));
    c.write(1, "w0");
    c.tick_all(1);
    // Node 2 is cut off; node 1 proposes four writes, one instance each.
    c.cut.push((1, 2));
    for k in 0..4 {
        c.r.get_mut(&1)
            .unwrap()
            .propose(Bytes::from(format!("w{}", k + 1)))
            .unwrap();
        c.pump(1);
    }
    let accepts = std::mem::take(&mut c.pool);
    for m in accepts {
        if m.to.0 == 3 {
            c.r.get_mut(&3).unwrap().step(m);
        }
    }
    c.pump(3);
    let replies = std::mem::take(&mut c.pool);
    for m in replies {
        if m.to.0 == 1 {
            c.r.get_mut(&1).unwrap().step(m);
        }
    }
    let completed = c.chosen_end(1);
    assert!(completed >= 5, "node 1 chose the four writes: {completed}");
    // Node 1 crashes before telling anyone they were chosen.
    c.r.remove(&1);
    c.pool.clear();
    c.cut.clear();
    let mut new_leader = None;
    for _ in 0..300 {
        for id in [2u32, 3] {
            c.r.get_mut(&id).unwrap().tick();
        }
        c.settle_one_step(None);
        new_leader = [2u32, 3]
            .into_iter()
            .find(|id| c.r[id].status().role == RoleKind::Leader);
        if new_leader.is_some() {
            break;
        }
    }
    let l = new_leader.expect("a new leader");
    c.r.get_mut(&l).unwrap().read(ReadId(7)).unwrap();
    for _ in 0..200 {
        let ready = c.r.get_mut(&l).unwrap().take_ready();
        let served = ready.reads.contains(&ReadId(7));
        c.pool.extend(ready.messages);
        if !ready.persist.is_empty() {
            c.r.get_mut(&l).unwrap().persisted(ready.persist_through);
        }
        if served {
            let applied = c.r[&l].status().applied_end.0;
            assert!(
                applied >= completed,
                "read served at applied {applied}, but writes up to {completed} completed before it"
            );
            return;
        }
        c.settle_one_step(Some(l));
        c.r.get_mut(&l).unwrap().tick();
    }
    panic!("the read was never served");
}
