//! Membership changes, scenario by scenario, through the public API only:
//! the α rule, learners that never count, one change at a time, removal of
//! the leader, leadership transfer. (The simulator draws these under every
//! fault; these pin the rules one by one.)

use bytes::Bytes;
use synod_core::*;

use crate::common;
use common::*;

#[test]
fn a_change_takes_effect_alpha_instances_later_and_idle_leaders_get_it_there() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let before = c.chosen_end(leader);
    let next =
        c.r.get_mut(&leader)
            .unwrap()
            .propose_change(add(4, false), false)
            .expect("a valid change");
    assert_eq!(next.epoch, 1);
    c.settle();
    // The change went into the next instance; without any client command
    // the leader fills the α instances after it with no-ops.
    let change_at = InstanceId(before);
    let effective = InstanceId(before + RECONFIG_DELAY_INSTANCES);
    assert!(
        c.chosen_end(leader) >= effective.0,
        "{}",
        c.chosen_end(leader)
    );
    for id in 1..=3 {
        let schedule = c.r[&id].schedule();
        assert_eq!(
            schedule.at(InstanceId(effective.0 - 1)).epoch,
            0,
            "node {id}"
        );
        assert_eq!(schedule.at(effective).epoch, 1, "node {id}");
        assert!(matches!(
            c.r[&id].chosen_value(change_at),
            Some(Value::Reconfig(m)) if m.contains(NodeId(4))
        ));
    }
}

#[test]
fn only_one_change_at_a_time_and_nonsense_is_refused() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    let r = c.r.get_mut(&leader).unwrap();
    r.propose_change(add(4, true), false).expect("first");
    assert!(matches!(
        r.propose_change(add(5, true), false),
        Err(ChangeError::InProgress(..))
    ));
    c.settle();
    let r = c.r.get_mut(&leader).unwrap();
    assert!(matches!(
        r.propose_change(add(4, true), false),
        Err(ChangeError::Membership(MembershipError::Exists(NodeId(4))))
    ));
    assert!(matches!(
        r.propose_change(MembershipChange::Remove { id: NodeId(9) }, false),
        Err(ChangeError::Membership(MembershipError::Unknown(NodeId(9))))
    ));
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    assert!(matches!(
        c.r.get_mut(&follower)
            .unwrap()
            .propose_change(add(6, true), false),
        Err(ChangeError::NotLeader(Some(_)))
    ));
}

/// Three voters and node 4 added as a learner (not promoted
/// automatically), started and caught up. Returns the leader.
fn with_a_caught_up_learner(c: &mut Cluster) -> u32 {
    let leader = c.elect();
    c.write(leader, "a");
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(4, false), false)
        .unwrap();
    c.settle();
    c.join(4, leader);
    c.tick_all(20);
    assert_eq!(
        c.chosen_end(4),
        c.chosen_end(leader),
        "the learner caught up"
    );
    leader
}

#[test]
fn a_learner_catches_up_but_never_counts_toward_a_quorum() {
    let mut c = Cluster::new(3);
    let leader = with_a_caught_up_learner(&mut c);
    // Cut the leader off from both other voters: with only the learner it
    // must not choose anything.
    let others: Vec<u32> = (1..=3).filter(|id| *id != leader).collect();
    for other in &others {
        c.cut.push((leader, *other));
    }
    let stuck_at = c.chosen_end(leader);
    let _ =
        c.r.get_mut(&leader)
            .unwrap()
            .propose(Bytes::from_static(b"b"));
    c.settle();
    c.tick_all(5);
    assert_eq!(c.chosen_end(leader), stuck_at, "a learner's vote counted");
    // A learner never campaigns either.
    c.cut.clear();
    for other in &others {
        c.cut.push((4, *other));
        c.cut.push((leader, *other));
    }
    c.tick_all(400);
    assert_ne!(c.r[&4].status().role, RoleKind::Leader);
    assert_ne!(c.r[&4].status().role, RoleKind::Candidate);
}

#[test]
fn removing_the_leader_hands_leadership_over_and_shuts_it_out() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(MembershipChange::Remove { id: NodeId(leader) }, false)
        .unwrap();
    c.settle();
    c.tick_all(50);
    let new_leader = c.elect();
    assert_ne!(new_leader, leader, "the removed leader handed over");
    c.write(new_leader, "b");
    let after = c.chosen_end(new_leader);
    // The removed node knows it was removed and never campaigns again.
    assert!(c.r[&leader].schedule().latest().was_removed(NodeId(leader)));
    for _ in 0..400 {
        c.r.get_mut(&leader).unwrap().tick();
        c.settle();
        assert_eq!(c.r[&leader].status().role, RoleKind::Follower);
    }
    // Once the membership before is forgotten (compaction), its messages
    // are refused at the door: a forged Prepare from it is counted.
    let refused_before = c.r[&new_leader].refusals().get(Refusal::NonMember);
    c.r.get_mut(&new_leader).unwrap().step(Message {
        group: GroupId(0),
        from: NodeId(9),
        to: NodeId(new_leader),
        body: Body::Prepare {
            ballot: Ballot {
                round: 1000,
                node: NodeId(9),
            },
            first_instance: InstanceId(0),
        },
    });
    assert_eq!(
        c.r[&new_leader].refusals().get(Refusal::NonMember),
        refused_before + 1,
        "a stranger's prepare is refused"
    );
    c.write(new_leader, "c");
    assert!(c.chosen_end(new_leader) > after);
}

/// A removed node may stop only once the members left can go on without
/// it: a removed leader not before a quorum of them reported a chosen prefix
/// past the point where its removal takes effect (until then they may need
/// its vote to finish the instances before that point); a removed follower
/// once the change is in force and it follows a leader of the new
/// membership. Nobody else may retire.
#[test]
fn a_removed_node_may_retire_only_once_the_others_go_on_without_it() {
    // A follower.
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(
            MembershipChange::Remove {
                id: NodeId(follower),
            },
            false,
        )
        .unwrap();
    c.settle();
    c.tick_all(4);
    assert!(
        c.r[&follower].may_retire(),
        "in force, and its leader says both left have it"
    );
    for id in (1..=3).filter(|id| *id != follower) {
        assert!(!c.r[&id].may_retire(), "node {id} was not removed");
    }

    // The leader, while one of the two left hears nothing: the change and
    // the no-ops after it are chosen by the leader and the other one, so
    // the change is in force at the leader, but the members left are not a
    // quorum past it (one of two).
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let mut others = (1..=3).filter(|id| *id != leader);
    let (a, b) = (others.next().unwrap(), others.next().unwrap());
    c.cut.push((leader, b));
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(MembershipChange::Remove { id: NodeId(leader) }, false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    let r = &c.r[&leader];
    let from = r.schedule().entries().last().unwrap().from;
    assert!(r.schedule().latest().was_removed(NodeId(leader)));
    assert!(r.status().chosen_end >= from, "in force at the leader");
    assert!(c.r[&a].status().chosen_end >= from);
    assert!(c.r[&b].status().chosen_end < from);
    assert!(
        !c.r[&leader].may_retire(),
        "node {b} may still need its vote"
    );
    // Healed: b learns the prefix and says so in its heartbeat acks (or
    // the removed leader has handed over to one of the two, and follows it).
    c.cut.clear();
    c.tick_all(100);
    assert!(c.r[&b].status().chosen_end >= from);
    assert!(c.r[&leader].may_retire(), "both left are past it");
}

/// Four voters r, a, b, d; d away from everyone. r leads and removes
/// itself; once the change is in force at r, b is cut off from r and a, so
/// that of the members left only a has the prefix past the point where the
/// change takes effect (returned last).
fn removed_leader_with_two_behind() -> (Cluster, u32, u32, u32, u32, InstanceId) {
    let mut c = Cluster::new(4);
    let r = c.elect();
    c.write(r, "a");
    let mut others = (1..=4).filter(|id| *id != r);
    let (a, b, d) = (
        others.next().unwrap(),
        others.next().unwrap(),
        others.next().unwrap(),
    );
    for x in [r, a, b] {
        c.cut.push((x, d));
    }
    c.r.get_mut(&r)
        .unwrap()
        .propose_change(MembershipChange::Remove { id: NodeId(r) }, false)
        .unwrap();
    c.pump(r);
    for _ in 0..1000 {
        c.settle_one_step(None);
        let s = c.r[&r].schedule();
        if s.entries().len() > 1 && c.r[&r].status().chosen_end >= s.entries().last().unwrap().from
        {
            break;
        }
    }
    // b is cut off from r and a for a while.
    c.cut.push((r, b));
    c.cut.push((a, b));
    c.settle();
    let from = c.r[&r].schedule().entries().last().unwrap().from;
    assert!(c.chosen_end(b) < from.0 && c.chosen_end(d) < from.0);
    (c, r, a, b, d, from)
}

/// A removed leader that hands leadership over once its removal is in force
/// then follows the new leader: it must not retire on that alone (the
/// review of `may_retire` found it did). Of four voters, one (d) is away
/// and one (b) misses the end of the change: if the removed leader r
/// retired and the new leader a then failed, b and d, a quorum of the
/// membership without r, would need a quorum of the old four below the
/// change's effect point, and could never elect. r waits until its
/// leader tells it a quorum of the new membership has the prefix.
#[test]
fn a_removed_leader_that_hands_over_waits_for_a_quorum_of_the_members_left() {
    let (mut c, r, a, b, _d, from) = removed_leader_with_two_behind();
    for _ in 0..200 {
        c.tick_all(1);
        assert!(
            !c.r[&r].may_retire(),
            "only a of the members left has the prefix past the change"
        );
    }
    assert_ne!(c.leader(), Some(r), "r handed leadership over");
    // b is back: it learns the prefix, a quorum of a, b and d has it, and
    // the leader says so to r.
    c.cut.retain(|link| *link != (r, b) && *link != (a, b));
    let mut retired = false;
    for _ in 0..50 {
        c.tick_all(1);
        if c.r[&r].may_retire() {
            retired = true;
            break;
        }
    }
    assert!(retired, "r may go once b has the prefix too");
    assert!(c.chosen_end(b) >= from.0);
    // r retires and a fails for good: b and d elect.
    c.r.remove(&r);
    c.r.remove(&a);
    c.cut.clear();
    c.tick_all(500);
    assert!(c.leader().is_some(), "b and d elect without r and a");
}

/// Silence is no evidence (second review of `may_retire`): the removed
/// ex-leader r, cut off from b and d while a (the only member left with the
/// prefix) fails for good, hears from nobody; had it retired, b and d could
/// never elect. It runs on, and once the links heal r, b and d elect.
#[test]
fn a_removed_node_cut_off_from_the_members_left_does_not_retire() {
    let (mut c, r, a, _b, _d, _from) = removed_leader_with_two_behind();
    c.tick_all(50);
    c.r.remove(&a);
    let timeouts = c.r[&r].config().election_ticks as u32;
    for _ in 0..25 * timeouts {
        c.tick_all(1);
        assert!(
            !c.r[&r].may_retire(),
            "nobody said the members left have it"
        );
    }
    c.cut.clear();
    c.tick_all(1000);
    assert!(c.leader().is_some(), "r, b and d elect");
}

/// A removed member that lags is refused by the members left (its
/// catch-up too) once they moved past the membership that held it, so no
/// heartbeat round reaches it. The leader answers its refused catch-up
/// request or Prepare with a heartbeat saying how far a quorum of the newest
/// membership has the prefix (`may_retire` takes that word); it answers
/// nothing else (an answer to an answer would go back and forth).
#[test]
fn a_leader_answers_a_removed_members_refused_request_with_the_prefix_a_quorum_has() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let x = (1..=3).find(|id| *id != leader).unwrap();
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(MembershipChange::Remove { id: NodeId(x) }, false)
        .unwrap();
    c.settle();
    c.tick_all(20);
    // A second change goes into force: the membership with x is forgotten.
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(9, false), false)
        .unwrap();
    c.settle();
    c.tick_all(20);
    assert_eq!(c.leader(), Some(leader));
    let chosen = c.r[&leader].status().chosen_end;
    let ask = |body| Message {
        group: GroupId(0),
        from: NodeId(x),
        to: NodeId(leader),
        body,
    };
    let r = c.r.get_mut(&leader).unwrap();
    let _ = r.take_ready();
    let refused = r.refusals().get(Refusal::NonMember);
    r.step(ask(Body::CatchupRequest {
        from: InstanceId(1),
        to: InstanceId(2),
    }));
    assert_eq!(r.refusals().get(Refusal::NonMember), refused + 1);
    let answers: Vec<Message> = r
        .take_ready()
        .messages
        .into_iter()
        .filter(|m| m.to == NodeId(x))
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    match &answers[0].body {
        Body::Heartbeat {
            chosen_end, probe, ..
        } => {
            // Both voters left have acknowledged the whole prefix.
            assert_eq!(*chosen_end, chosen);
            assert_eq!(*probe, 0, "no read probe");
        }
        other => panic!("{other:?}"),
    }
    // Its answer to that heartbeat is refused and not answered.
    let ballot = r.status().promised;
    r.step(ask(Body::HeartbeatAck {
        ballot,
        chosen_end: InstanceId(1),
        applied: AppliedMark {
            applied_end: InstanceId(1),
            checksum: Checksum::default(),
        },
        probe: 0,
        granted_ms: 0,
        granted_drift_ppm: 0,
        restoring: synod_core::Restoring::No,
    }));
    assert!(r.take_ready().messages.iter().all(|m| m.to != NodeId(x)));
}

#[test]
fn leadership_transfer_goes_to_the_named_voter_without_an_election_timeout() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let to = (1..=3).find(|id| *id != leader).unwrap();
    c.r.get_mut(&leader)
        .unwrap()
        .transfer_leadership(NodeId(to))
        .expect("a voter");
    // A heartbeat round (for the target's progress) and the hand-over: a
    // few ticks, far below an election timeout (30 ticks by default).
    for _ in 0..5 {
        if c.leader() == Some(to) {
            break;
        }
        c.tick_all(1);
    }
    assert_eq!(c.leader(), Some(to));
    c.write(to, "b");
    assert!(matches!(
        c.r.get_mut(&to).unwrap().transfer_leadership(NodeId(9)),
        Err(ChangeError::BadTarget(NodeId(9), _))
    ));
}

#[test]
fn memberships_survive_in_snapshots_and_checkpoints() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(4, false), false)
        .unwrap();
    c.settle();
    let r = &c.r[&leader];
    let point = r.status().applied_end;
    let schedule = r.schedule_at(point);
    assert!(schedule.latest().contains(NodeId(4)));
    // A replica recovered from a snapshot at `point` (no log) knows node 4.
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            applied_end: point,
            checksum: r.status().checksum,
        },
        memberships: Some(schedule),
        data: Bytes::new(),
    };
    let cfg = Config::new(NodeId(2), vec![NodeId(1), NodeId(2), NodeId(3)]);
    let recovered = Replica::recover(cfg, Some(snapshot), std::iter::empty()).unwrap();
    assert!(recovered.schedule().latest().contains(NodeId(4)));
    assert_eq!(recovered.membership().epoch, 1);
}

/// A node that started from a member's schedule at a point it has not
/// applied up to yet (here node 3, rebuilding after a lost disk, as the
/// simulator restarts one) answers a node joining through it with the
/// schedule from that point, not from its applied point: there the schedule
/// would drop every change chosen in between, the one that added the new
/// node included, and the new node could not start (`NotAMember`).
/// Simulator seed 600021: spare n4 asked a wiped n1 that had just restarted
/// so, and could never start.
#[test]
fn a_member_below_its_own_join_point_hands_out_a_schedule_holding_the_joiner() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    let wiped = (1..=3).find(|id| *id != leader).unwrap();
    c.write(leader, "a");
    let change_at = InstanceId(c.chosen_end(leader));
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(4, false), false)
        .unwrap();
    c.settle();
    // The wiped node restarts empty from what the leader answered right
    // after it applied the change (node 4's addition chosen, not yet in
    // force): its schedule holds node 4 from `change_at + α` on.
    let point = change_at.next();
    let schedule = c.r[&leader].schedule_at(point);
    assert_eq!(schedule.entries().len(), 2, "{schedule:?}");
    assert!(schedule.latest().contains(NodeId(4)));
    let mut cfg = Config::new(NodeId(wiped), vec![]);
    cfg.schedule = Some((point, schedule));
    cfg.rebuild = true;
    c.r.insert(wiped, Replica::new(cfg).unwrap());
    let restarted = &c.r[&wiped];
    assert_eq!(restarted.status().applied_end, InstanceId(0));
    assert!(
        !restarted
            .schedule_at(restarted.status().applied_end)
            .latest()
            .contains(NodeId(4)),
        "the schedule at its applied point lacks node 4 (what it answered before)"
    );
    let (answered_at, schedule) = restarted.join_schedule();
    assert_eq!(answered_at, point, "the point it started from");
    assert_eq!(schedule.latest(), restarted.schedule().latest());
    // Node 4 joins through it and catches up, as does the wiped node.
    c.join(4, wiped);
    c.tick_all(30);
    assert_eq!(c.chosen_end(4), c.chosen_end(leader), "node 4 caught up");
    assert_eq!(
        c.chosen_end(wiped),
        c.chosen_end(leader),
        "the wiped node too"
    );
}

/// `from` tells `leader`, in a heartbeat ack of its ballot, whether it is
/// restoring a snapshot.
fn say_restoring(c: &mut Cluster, leader: u32, from: u32, restoring: Restoring) {
    let chosen_end = InstanceId(c.chosen_end(leader));
    let ack = Message {
        group: GroupId(0),
        from: NodeId(from),
        to: NodeId(leader),
        body: Body::HeartbeatAck {
            ballot: c.r[&leader].status().promised,
            chosen_end,
            applied: AppliedMark {
                applied_end: chosen_end,
                checksum: c.r[&leader].status().checksum,
            },
            probe: 0,
            granted_ms: 0,
            granted_drift_ppm: 0,
            restoring,
        },
    };
    c.r.get_mut(&leader).unwrap().step(ack);
}

/// A learner restoring a snapshot is not promoted, asked or automatically
/// (it could not campaign, and a voter restoring may decline votes), and
/// is once its acks say the restore ended.
#[test]
fn a_restoring_learner_is_not_promoted_until_its_restore_ends() {
    let mut c = Cluster::new(3);
    let leader = with_a_caught_up_learner(&mut c);
    // Its real acks stop; the last one says it restores.
    c.cut.push((4, leader));
    c.cut.push((leader, 4));
    say_restoring(&mut c, leader, 4, Restoring::Yes);
    assert!(matches!(
        c.r.get_mut(&leader)
            .unwrap()
            .propose_change(MembershipChange::Promote { id: NodeId(4) }, false),
        Err(ChangeError::BadTarget(
            NodeId(4),
            "it is restoring a snapshot"
        ))
    ));
    say_restoring(&mut c, leader, 4, Restoring::No);
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(MembershipChange::Promote { id: NodeId(4) }, false)
        .expect("promoted once restored");
}

/// A leader asked to promote learners automatically skips one that says it
/// is restoring, and promotes it once it says the restore ended.
#[test]
fn automatic_promotion_waits_for_a_restoring_learner() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(4, true), false)
        .unwrap();
    // It says it restores before the leader's first tick after the change.
    c.settle_one_step(Some(4));
    say_restoring(&mut c, leader, 4, Restoring::Yes);
    c.cut.push((4, leader));
    c.cut.push((leader, 4));
    for _ in 0..20 {
        c.r.get_mut(&leader).unwrap().tick();
        c.settle();
    }
    let voter = |c: &Cluster| c.r[&leader].schedule().latest().is_voter(NodeId(4));
    assert!(!voter(&c), "promoted while restoring");
    say_restoring(&mut c, leader, 4, Restoring::No);
    for _ in 0..20 {
        c.r.get_mut(&leader).unwrap().tick();
        c.settle();
    }
    assert!(voter(&c), "promoted once its restore ended");
}

/// A transfer whose target says, once it has started, that it restores a
/// snapshot is abandoned at once: the leader takes proposals again at the
/// next tick rather than an election timeout later.
#[test]
fn a_transfer_whose_target_starts_restoring_is_abandoned_at_once() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let to = (1..=3).find(|id| *id != leader).unwrap();
    c.cut.push((to, leader));
    c.cut.push((leader, to));
    // The target falls behind, so the transfer waits for it.
    c.write(leader, "b");
    c.r.get_mut(&leader)
        .unwrap()
        .transfer_leadership(NodeId(to))
        .expect("a voter");
    c.settle();
    assert!(matches!(
        c.r.get_mut(&leader)
            .unwrap()
            .propose_change(add(5, false), false),
        Err(ChangeError::NotLeader(Some(_)))
    ));
    say_restoring(&mut c, leader, to, Restoring::Yes);
    c.r.get_mut(&leader).unwrap().tick();
    c.settle();
    assert_eq!(c.leader(), Some(leader));
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(5, false), false)
        .expect("the transfer was abandoned");
}

/// A removal counts on the vote of a restoring voter that still votes, not
/// on one whose backlog is full (it declines every Accept until done).
#[test]
fn a_removal_counts_on_a_restoring_voter_only_while_it_votes() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.write(leader, "a");
    let mut others = (1..=3).filter(|id| *id != leader);
    let (restoring, removed) = (others.next().unwrap(), others.next().unwrap());
    let remove = MembershipChange::Remove {
        id: NodeId(removed),
    };
    say_restoring(&mut c, leader, restoring, Restoring::Declining);
    assert!(matches!(
        c.r.get_mut(&leader)
            .unwrap()
            .propose_change(remove.clone(), false),
        Err(ChangeError::NoQuorum { .. })
    ));
    say_restoring(&mut c, leader, restoring, Restoring::Yes);
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(remove, false)
        .expect("a restoring voter that votes counts");
}
