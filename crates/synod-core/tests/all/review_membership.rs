//! Review of online membership changes: attacks on the schedule, the door,
//! transfers and the α rule, each pinned by a test that failed before its fix.

use bytes::Bytes;
use synod_core::*;

use crate::common;
use common::*;

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
