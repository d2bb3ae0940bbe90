//! Regression (review of the restore off the event loop): a wiped node in
//! rebuild mode installs a snapshot, and the runtime's restore holds the
//! values after it (`Replica::set_hold_applies_on_install`). Memberships are
//! noted as values are applied, so a change chosen after the snapshot's
//! point is not in its schedule meanwhile. The rebuild used to finish by
//! that superseded membership, without the reports of the members added
//! since, and its raised promise did not cover a newer leader's ballot: a
//! deposed leader with a paused clock then chose a second value at an
//! instance already chosen. A rebuild now never finishes while values are
//! held back.

use bytes::Bytes;
use synod_core::*;

use crate::common::*;

/// Every node compacts at its applied point: a wiped node needs a snapshot.
fn compact_all(c: &mut Cluster) {
    for id in 1..=3 {
        let st = c.r[&id].status();
        let snapshot = Snapshot {
            memberships: Some(c.r[&id].schedule_at(st.applied_end)),
            meta: SnapshotMeta {
                applied_end: st.applied_end,
                checksum: st.checksum,
            },
            data: Bytes::from_static(b"state"),
        };
        c.r.get_mut(&id).unwrap().compact(snapshot).unwrap();
    }
}

/// Node `w` after its disk was wiped: it restarts in rebuild mode, holding
/// the values after an install when `hold` (as the runtime does).
fn wiped(w: u32, hold: bool) -> Replica {
    let mut cfg = Config::new(NodeId(w), vec![NodeId(1), NodeId(2), NodeId(3)]);
    cfg.rebuild = true;
    cfg.seed = 4242;
    let mut r = Replica::new(cfg).unwrap();
    r.set_hold_applies_on_install(hold);
    r
}

fn scenario(hold: bool) -> (bool, bool, bool) {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    let w: u32 = if leader == 3 { 2 } else { 3 };
    for i in 0..5 {
        c.write(leader, &format!("w{i}"));
    }
    c.tick_all(3);
    compact_all(&mut c);
    // n4 joins and is promoted: membership {1,2,3,4}, chosen after the snapshot.
    c.r.get_mut(&leader)
        .unwrap()
        .propose_change(add(4, true), false)
        .expect("change");
    c.settle();
    c.join(4, leader);
    for _ in 0..400 {
        c.tick_all(1);
        let s = c.r[&leader].schedule();
        if s.latest().is_voter(NodeId(4))
            && c.chosen_end(leader) > s.entries().last().unwrap().from.0
        {
            break;
        }
    }
    assert!(
        c.r[&leader].schedule().latest().is_voter(NodeId(4)),
        "n4 promoted"
    );
    // n3's disk is wiped: it restarts in rebuild mode, and cannot reach n4.
    c.r.insert(w, wiped(w, hold));
    c.cut.push((w, 4));
    for _ in 0..300 {
        c.tick_all(1);
        if !c.r[&w].rebuilding() {
            break;
        }
    }
    let r3 = &c.r[&w];
    (
        r3.rebuilding(),
        r3.applies_held(),
        r3.schedule().latest().is_voter(NodeId(4)),
    )
}

/// Without the hold (control), the rebuild waits for the new member.
#[test]
fn control_without_hold_the_rebuild_waits_for_the_new_member() {
    let (rebuilding, held, knows4) = scenario(false);
    eprintln!("no hold: rebuilding={rebuilding} held={held} knows n4={knows4}");
    assert!(rebuilding, "n3 must wait for n4's report");
}

/// With the hold, the rebuild must wait too.
#[test]
fn with_hold_the_rebuild_must_not_finish_by_a_superseded_membership() {
    let (rebuilding, held, knows4) = scenario(true);
    eprintln!("hold: rebuilding={rebuilding} held={held} knows n4={knows4}");
    assert!(
        rebuilding,
        "n3 finished its rebuild while its schedule lagged (held applies) without n4's report"
    );
}

fn in_force(c: &Cluster, leader: u32, id: u32) -> bool {
    let s = c.r[&leader].schedule();
    s.latest().is_voter(NodeId(id)) && c.chosen_end(leader) > s.entries().last().unwrap().from.0 + 2
}

fn double_choice(hold: bool) -> Vec<(u64, Value, Value)> {
    let mut c = Cluster::new(3);
    let a = c.elect();
    let w: u32 = if a == 3 { 2 } else { 3 };
    let b: u32 = (1..=3).find(|id| *id != a && *id != w).unwrap();
    for i in 0..5 {
        c.write(a, &format!("w{i}"));
    }
    c.tick_all(3);
    compact_all(&mut c);
    for new in [4u32, 5] {
        c.r.get_mut(&a)
            .unwrap()
            .propose_change(add(new, true), false)
            .expect("change");
        c.settle();
        c.join(new, a);
        for k in 0..600 {
            c.tick_all(1);
            if k % 5 == 0 {
                c.write(a, &format!("f{k}"));
            }
            if in_force(&c, a, new) {
                break;
            }
        }
        assert!(
            in_force(&c, a, new),
            "n{new} in force: {:?} chosen {}",
            c.r[&a].schedule(),
            c.chosen_end(a)
        );
    }
    assert_eq!(c.leader(), Some(a));
    let split_at = c.chosen_end(a);
    let tick_only = |c: &mut Cluster, ids: &[u32]| {
        for id in ids {
            if let Some(r) = c.r.get_mut(id) {
                r.tick();
            }
        }
        c.settle();
    };
    // {a, b} | {w, 4, 5}; only the right side's clocks run: it elects and
    // chooses x, while a (its clock stopped) still leads at its ballot.
    c.cut = vec![(a, w), (a, 4), (a, 5), (b, w), (b, 4), (b, 5)];
    let mut right = None;
    for _ in 0..600 {
        tick_only(&mut c, &[w, 4, 5]);
        right = [w, 4, 5]
            .into_iter()
            .find(|id| c.r[id].status().role == RoleKind::Leader);
        if right.is_some() {
            break;
        }
    }
    let right = right.expect("the right side elects");
    c.r.get_mut(&right)
        .unwrap()
        .propose(Bytes::from_static(b"x"))
        .unwrap();
    c.settle();
    for _ in 0..5 {
        tick_only(&mut c, &[w, 4, 5]);
    }
    assert_eq!(c.r[&a].status().role, RoleKind::Leader);
    // w's disk is wiped; it comes back in rebuild mode and reaches a, b only;
    // 4 and 5 stay cut off from the left side.
    c.r.insert(w, wiped(w, hold));
    c.cut = vec![(a, 4), (a, 5), (b, 4), (b, 5), (w, 4), (w, 5)];
    let mut ticks = 0;
    for _ in 0..200 {
        tick_only(&mut c, &[a, b, w]);
        ticks += 1;
        if !c.r[&w].rebuilding() {
            break;
        }
    }
    eprintln!("hold={hold}: after {ticks} ticks w rebuilding={} held={} a role={:?} right={right} split_at={split_at}", c.r[&w].rebuilding(), c.r[&w].applies_held(), c.r[&a].status().role);
    if c.r[&a].status().role == RoleKind::Leader {
        let _ = c.r.get_mut(&a).unwrap().propose(Bytes::from_static(b"y"));
        c.settle();
        for _ in 0..5 {
            tick_only(&mut c, &[a, b, w]);
        }
    }
    let mut both = vec![];
    for i in split_at..split_at + 200 {
        let (l, r) = (
            c.r[&a].chosen_value(InstanceId(i)).cloned(),
            c.r[&4].chosen_value(InstanceId(i)).cloned(),
        );
        if let (Some(l), Some(r)) = (l, r) {
            if l != r {
                both.push((i, l, r));
            }
        }
    }
    both
}

/// The safety consequence, without the hold (control): one value per
/// instance.
#[test]
fn control_no_hold_no_double_choice() {
    let d = double_choice(false);
    assert!(d.is_empty(), "{d:?}");
}

/// And with it: a rebuild finished by a superseded membership let a deposed
/// leader choose a second value at an instance already chosen.
#[test]
fn a_held_install_never_lets_a_rebuild_enable_a_second_choice() {
    let d = double_choice(true);
    assert!(d.is_empty(), "two values chosen: {d:?}");
}
