//! A follower's vouched read waits, as a round would, for the memberships
//! inside a promiser's compacted prefix (`reads_covered`). From the attack
//! review of vouched reads: without that check in `vouched_read_index`, the
//! read below is served at 257 while w is at 257 (stale), and neither the
//! other tests nor the simulator noticed.

use bytes::Bytes;
use synod_core::*;

use crate::common;
use common::*;

fn isolate(c: &mut Cluster, id: u32) {
    for other in 1..=9 {
        if other != id {
            c.cut.push((id, other));
        }
    }
}

fn promoted_while_a_was_away() -> (Cluster, u32, u32, u32) {
    let mut c = Cluster::new(3);
    let b = c.elect();
    let others: Vec<u32> = (1..=3).filter(|id| *id != b).collect();
    let (a, cc) = (others[0], others[1]);
    c.write(b, "x");
    for id in [4, 5] {
        c.r.get_mut(&b)
            .unwrap()
            .propose_change(add(id, false), false)
            .unwrap();
        c.settle();
        c.tick_all(3);
        c.join(id, b);
    }
    c.tick_all(20);
    isolate(&mut c, a);
    assert_eq!(c.elect(), b);
    for id in [4, 5] {
        c.r.get_mut(&b)
            .unwrap()
            .propose_change(MembershipChange::Promote { id: NodeId(id) }, false)
            .unwrap();
        c.settle();
        c.tick_all(3);
    }
    (c, a, b, cc)
}

/// Delivers until quiet (Prepares only from `a`, catch-up only with
/// `catch_up`), recording every node's served reads with its applied point.
fn deliver(c: &mut Cluster, a: u32, catch_up: bool, served: &mut Vec<(u32, ReadId, u64)>) {
    for _ in 0..10_000 {
        let ids: Vec<u32> = c.r.keys().copied().collect();
        for id in &ids {
            let replica = c.r.get_mut(id).unwrap();
            loop {
                let ready = replica.take_ready();
                if ready.is_empty() {
                    break;
                }
                let applied = replica.status().applied_end.0;
                served.extend(ready.reads.iter().map(|r| (*id, *r, applied)));
                c.pool.extend(ready.messages);
                if !ready.persist.is_empty() {
                    replica.persisted(ready.persist_through);
                }
            }
        }
        let mut msgs = std::mem::take(&mut c.pool);
        if msgs.is_empty() {
            return;
        }
        msgs.sort_by_key(|m| matches!(m.body, Body::Promise { .. }) && m.from.0 <= 3);
        for m in msgs {
            if matches!(m.body, Body::Prepare { .. }) && m.from.0 != a {
                continue;
            }
            let catch_up_msg = matches!(
                m.body,
                Body::CatchupRequest { .. }
                    | Body::CatchupReply { .. }
                    | Body::SnapshotChunk { .. }
                    | Body::SnapshotRequest { .. }
            );
            if catch_up_msg && !catch_up {
                continue;
            }
            let (from, to) = (m.from.0, m.to.0);
            if c.cut.contains(&(from, to)) || c.cut.contains(&(to, from)) {
                continue;
            }
            if let Some(r) = c.r.get_mut(&to) {
                r.step(m);
            }
        }
    }
    panic!("the network never went quiet");
}

#[test]
fn a_vouched_follower_read_waits_for_memberships_inside_a_compacted_prefix() {
    let (mut c, a, b, cc) = promoted_while_a_was_away();
    let s = c.r[&cc].status();
    assert!(s.applied_end.0 > c.chosen_end(a));
    let snap = Snapshot {
        meta: SnapshotMeta {
            applied_end: s.applied_end,
            checksum: s.checksum,
        },
        memberships: None,
        data: Bytes::new(),
    };
    c.r.get_mut(&cc).unwrap().compact(snap).unwrap();
    c.cut.clear();
    for x in [a, cc] {
        for y in [b, 4, 5] {
            c.cut.push((x, y));
        }
    }
    let k = c.chosen_end(b);
    c.write(b, "w");
    c.tick_all(4);
    let mut served = Vec::new();
    let mut won = false;
    for _ in 0..2000 {
        for id in [a, cc] {
            c.r.get_mut(&id).unwrap().tick();
        }
        deliver(&mut c, a, false, &mut served);
        if c.r[&a].status().role == RoleKind::Leader {
            won = true;
            break;
        }
    }
    assert!(won, "a never led");
    assert_eq!(c.r[&cc].status().leader, Some(NodeId(a)));
    assert_eq!(c.r[&cc].status().promised, c.r[&a].status().promised);
    // cc's client reads: its request vouches for a.
    c.r.get_mut(&cc).unwrap().read(ReadId(9)).unwrap();
    for _ in 0..3 {
        c.r.get_mut(&a).unwrap().tick();
        deliver(&mut c, a, false, &mut served);
    }
    for _ in 0..50 {
        for id in [a, cc] {
            c.r.get_mut(&id).unwrap().tick();
        }
        deliver(&mut c, a, true, &mut served);
    }
    for (node, read, applied) in &served {
        assert!(
            *applied > k,
            "STALE READ at n{node}: {read:?} served at {applied}, w at {k}"
        );
    }
}
