//! A promiser's compacted prefix must hold a leader back wherever the
//! promiser votes, including memberships the candidate has not learned yet.
//! An attack review found that judging "is it a voter?" when the promise
//! arrives (against the candidate's schedule, fixed only up to its chosen
//! prefix + α) let a node the candidate took for a learner, but which voted
//! at a later instance through a promotion, have its missing report ignored:
//! a second value was chosen at an instance. The leader now judges it per
//! instance, when proposing (`Phase1::compacted_by_voter`). A second
//! review found the same gap on the read side (a read confirmed by the old
//! membership's quorum while memberships inside a compacted prefix were
//! unknown): the second test; a third review found it again for a
//! follower's vouched read: the third.

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

fn heal(c: &mut Cluster, id: u32) {
    c.cut.retain(|(a, b)| *a != id && *b != id);
}

/// Node `id` compacts its log where it applied (a snapshot holding no
/// state: these tests look at the protocol only).
fn compact_at_applied(c: &mut Cluster, id: u32) {
    let s = c.r[&id].status();
    let snap = Snapshot {
        meta: SnapshotMeta {
            applied_end: s.applied_end,
            checksum: s.checksum,
        },
        memberships: None,
        data: Bytes::new(),
    };
    c.r.get_mut(&id).unwrap().compact(snap).unwrap();
}

/// Node `id`, cut off from every other, ticks alone until it stops leading.
fn stop_leading_alone(c: &mut Cluster, id: u32) {
    for _ in 0..200 {
        c.r.get_mut(&id).unwrap().tick();
        c.settle();
    }
    assert_ne!(c.r[&id].status().role, RoleKind::Leader);
}

/// Delivers until quiet; only `a` campaigns, and catch-up is lost (safety
/// must not depend on it).
fn settle_only(c: &mut Cluster, a: u32) {
    deliver_recording(c, a, false, &mut Vec::new());
}

/// Voters 1, 2, 3 and learners 4, 5; `a` is cut off while leader `b`
/// promotes 4 and 5, so `a` knows them only as learners. Returns the
/// cluster, `a`, `b` and the third voter `cc`.
fn promoted_while_a_was_away() -> (Cluster, u32, u32, u32) {
    let mut c = Cluster::new(3);
    let b = c.elect();
    let others: Vec<u32> = (1..=3).filter(|id| *id != b).collect();
    let (a, cc) = (others[0], others[1]);
    c.write(b, "x");
    // Learners 4 and 5 join.
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
    assert_eq!(c.chosen_end(4), c.chosen_end(b));
    assert_eq!(c.chosen_end(a), c.chosen_end(b));
    // A is cut off: it knows 4 and 5 only as learners.
    isolate(&mut c, a);
    let leader = c.elect();
    assert_eq!(leader, b, "b still leads");
    c.r.get_mut(&b)
        .unwrap()
        .propose_change(MembershipChange::Promote { id: NodeId(4) }, false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    c.r.get_mut(&b)
        .unwrap()
        .propose_change(MembershipChange::Promote { id: NodeId(5) }, false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    let in_force = c.r[&b].schedule().at(InstanceId(c.chosen_end(b)));
    assert!(in_force.is_voter(NodeId(4)) && in_force.is_voter(NodeId(5)));
    assert!(!c.r[&a].schedule().latest().is_voter(NodeId(4)));
    (c, a, b, cc)
}

#[test]
fn ignoring_a_compacted_prefix_of_a_future_voter_loses_a_chosen_value() {
    let (mut c, a, b, cc) = promoted_while_a_was_away();
    // C misses the next write: chosen by {B, 4, 5}.
    isolate(&mut c, cc);
    let k = c.chosen_end(b);
    c.write(b, "v");
    c.tick_all(4);
    let v = Value::batch(vec![Bytes::from_static(b"v")]);
    assert_eq!(c.r[&b].chosen_value(InstanceId(k)), Some(&v));
    assert!(c.chosen_end(4) > k && c.chosen_end(5) > k);
    assert!(c.chosen_end(cc) <= k);
    // 4 and 5 compact past k.
    for id in [4, 5] {
        compact_at_applied(&mut c, id);
    }
    // B dies. A comes back, with C, 4 and 5 (but only A campaigns).
    c.r.remove(&b);
    heal(&mut c, a);
    heal(&mut c, cc);
    let mut won = false;
    for _ in 0..2000 {
        for id in [a, cc, 4, 5] {
            c.r.get_mut(&id).unwrap().tick();
        }
        // Drop every Prepare not from A: A is the only candidate heard.
        for id in [a, cc, 4, 5] {
            c.pump(id);
        }
        c.pool
            .retain(|m| !matches!(m.body, Body::Prepare { .. }) || m.from.0 == a);
        settle_only(&mut c, a);
        if c.r[&a].status().role == RoleKind::Leader {
            won = true;
            break;
        }
    }
    assert!(won, "a never led");
    c.r.get_mut(&a)
        .unwrap()
        .propose(Bytes::from_static(b"w"))
        .unwrap();
    settle_only(&mut c, a);
    for _ in 0..5 {
        for id in [a, cc, 4, 5] {
            c.r.get_mut(&id).unwrap().tick();
        }
        settle_only(&mut c, a);
    }
    let at_a = c.r[&a].chosen_value(InstanceId(k)).cloned();
    assert!(
        at_a.is_none() || at_a == Some(v.clone()),
        "AGREEMENT VIOLATED: {at_a:?} chosen at {k}, where v was chosen"
    );
}

/// Delivers messages until quiet: over links not cut, Prepares only from
/// `a` (the one candidate), catch-up only with `catch_up`. Records each read
/// any node serves: the node, the read and the node's applied point then.
fn deliver_recording(
    c: &mut Cluster,
    a: u32,
    catch_up: bool,
    served: &mut Vec<(u32, ReadId, u64)>,
) {
    for _ in 0..10_000 {
        let ids: Vec<u32> = c.r.keys().copied().collect();
        for id in ids {
            let replica = c.r.get_mut(&id).unwrap();
            loop {
                let ready = replica.take_ready();
                if ready.is_empty() {
                    break;
                }
                let applied = replica.status().applied_end.0;
                served.extend(ready.reads.iter().map(|r| (id, *r, applied)));
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
        // The learners' promises happen to arrive before the voters'.
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

/// Reads served so far: (node, read, applied point then).
type Served = Vec<(u32, ReadId, u64)>;

/// A second review's scenario, up to the read: `cc` compacts where it
/// stands (its snapshot carries the memberships), `b` keeps leading the new
/// membership and completes w at `k`, and `a` leads by the old membership's
/// quorum with `cc`'s promise, behind `cc`'s compacted prefix. Returns the
/// cluster, `a`, `cc`, `k` and the reads served meanwhile.
fn a_leads_behind_a_compacted_prefix() -> (Cluster, u32, u32, u64, Served) {
    let (mut c, a, b, cc) = promoted_while_a_was_away();
    assert!(c.r[&cc].status().applied_end.0 > c.chosen_end(a));
    compact_at_applied(&mut c, cc);
    // {a, cc} | {b, 4, 5}: b keeps leading (3 of 5 voters) and completes w.
    c.cut.clear();
    for x in [a, cc] {
        for y in [b, 4, 5] {
            c.cut.push((x, y));
        }
    }
    let k = c.chosen_end(b);
    c.write(b, "w");
    c.tick_all(4);
    let w = Value::batch(vec![Bytes::from_static(b"w")]);
    assert_eq!(c.r[&b].chosen_value(InstanceId(k)), Some(&w));
    // a campaigns; cc promises; a leads by the old membership's quorum.
    let mut served = Vec::new();
    let mut won = false;
    for _ in 0..2000 {
        for id in [a, cc] {
            c.r.get_mut(&id).unwrap().tick();
        }
        deliver_recording(&mut c, a, false, &mut served);
        if c.r[&a].status().role == RoleKind::Leader {
            won = true;
            break;
        }
    }
    assert!(won, "a never led");
    (c, a, cc, k, served)
}

/// After a read was submitted: its confirmation is answered before
/// catch-up runs, then catch-up brings `cc`'s snapshot to `a`. No read may
/// have been served without w at `k`.
fn serve_then_catch_up(c: &mut Cluster, a: u32, cc: u32, k: u64, mut served: Served) {
    for _ in 0..3 {
        c.r.get_mut(&a).unwrap().tick();
        deliver_recording(c, a, false, &mut served);
    }
    for _ in 0..50 {
        for id in [a, cc] {
            c.r.get_mut(&id).unwrap().tick();
        }
        deliver_recording(c, a, true, &mut served);
    }
    assert!(c.chosen_end(a) >= k, "a caught up to cc's snapshot");
    for (node, read, applied) in &served {
        assert!(
            *applied > k,
            "STALE READ at n{node}: {read:?} served at applied point {applied}, without w at {k}"
        );
    }
}

/// A second review's scenario: a leader elected by the old membership's
/// quorum, one member of which had compacted past the leader's chosen
/// prefix (membership changes included), must not confirm a read until it
/// has caught up to that prefix: the new membership may have completed
/// writes meanwhile that the read would miss.
#[test]
fn a_read_waits_for_the_memberships_inside_a_compacted_prefix() {
    let (mut c, a, cc, k, served) = a_leads_behind_a_compacted_prefix();
    c.r.get_mut(&a).unwrap().read(ReadId(7)).unwrap();
    serve_then_catch_up(&mut c, a, cc, k, served);
}

/// The same for a read at `cc`, whose request vouches for `a` (its promise
/// is `a`'s ballot): the vouch stands in for the round, not for the wait
/// until phase 1 covers every membership (`reads_covered`). From the attack
/// review of vouched reads: without that check in `vouched_read_index`, the
/// read was served at 257 with w at 257, and neither the other tests nor the
/// simulator noticed.
#[test]
fn a_vouched_follower_read_waits_for_the_memberships_inside_a_compacted_prefix() {
    let (mut c, a, cc, k, served) = a_leads_behind_a_compacted_prefix();
    assert_eq!(c.r[&cc].status().leader, Some(NodeId(a)));
    assert_eq!(c.r[&cc].status().promised, c.r[&a].status().promised);
    c.r.get_mut(&cc).unwrap().read(ReadId(9)).unwrap();
    serve_then_catch_up(&mut c, a, cc, k, served);
}

/// Delivers until quiet over links not cut, dropping every Prepare not from
/// `a` and all catch-up; promises from `first` are delivered before the
/// others' (so that `a` counts it in the quorum it leads with). Notes the
/// instance of every Accept `a` sends in `accepts`.
fn deliver_promise_first(c: &mut Cluster, a: u32, first: u32, accepts: &mut Vec<u64>) {
    deliver_dropping(c, a, first, accepts, |_| false);
}

/// `deliver_promise_first`, also dropping every message `drop` names.
fn deliver_dropping(
    c: &mut Cluster,
    a: u32,
    first: u32,
    accepts: &mut Vec<u64>,
    drop: impl Fn(&Message) -> bool,
) {
    for _ in 0..10_000 {
        let ids: Vec<u32> = c.r.keys().copied().collect();
        for id in ids {
            c.pump(id);
        }
        let mut msgs = std::mem::take(&mut c.pool);
        if msgs.is_empty() {
            return;
        }
        msgs.sort_by_key(|m| !(matches!(m.body, Body::Promise { .. }) && m.from.0 == first));
        for m in msgs {
            if let Body::Accept { instance, .. } = m.body {
                if m.from.0 == a {
                    accepts.push(instance.0);
                }
            }
            let dropped = match m.body {
                Body::Prepare { .. } => m.from.0 != a,
                Body::CatchupRequest { .. }
                | Body::CatchupReply { .. }
                | Body::SnapshotChunk { .. }
                | Body::SnapshotRequest { .. } => true,
                _ => drop(&m),
            };
            let (from, to) = (m.from.0, m.to.0);
            if dropped || c.cut.contains(&(from, to)) || c.cut.contains(&(to, from)) {
                continue;
            }
            if let Some(r) = c.r.get_mut(&to) {
                r.step(m);
            }
        }
    }
    panic!("the network never went quiet");
}

/// Ticks every node, then delivers (`deliver_dropping`), until `a` leads.
fn campaign(
    c: &mut Cluster,
    a: u32,
    first: u32,
    accepts: &mut Vec<u64>,
    drop: impl Fn(&Message) -> bool + Copy,
) {
    for _ in 0..2000 {
        c.tick_each();
        deliver_dropping(c, a, first, accepts, drop);
        if c.r[&a].status().role == RoleKind::Leader {
            return;
        }
    }
    panic!("n{a} never led");
}

/// `rounds` times: ticks every node, then delivers
/// (`deliver_promise_first`).
fn tick_and_deliver(c: &mut Cluster, a: u32, first: u32, rounds: u32, accepts: &mut Vec<u64>) {
    for _ in 0..rounds {
        c.tick_each();
        deliver_promise_first(c, a, first, accepts);
    }
}

/// Leader `l` (with nodes `away` cut off) chooses v at the next instance
/// `k` with the others' votes, and is cut off before it tells anyone that v
/// is chosen. Returns `k` and v.
fn chosen_then_leader_cut_off(c: &mut Cluster, l: u32, away: &[u32]) -> (u64, Value) {
    c.write(l, "x");
    c.tick_all(3);
    for id in away {
        isolate(c, *id);
    }
    let k = c.chosen_end(l);
    c.r.get_mut(&l)
        .unwrap()
        .propose(Bytes::from_static(b"v"))
        .unwrap();
    // The Accepts reach the others, their votes reach l, then l is cut off.
    c.pump(l);
    c.settle_one_step(None);
    c.settle_one_step(None);
    isolate(c, l);
    c.settle();
    let v = Value::batch(vec![Bytes::from_static(b"v")]);
    assert_eq!(c.r[&l].chosen_value(InstanceId(k)), Some(&v));
    assert!(c.r[&l].status().applied_end.0 > k);
    (k, v)
}

/// Three voters: leader `l` chooses v at `k` with `p`'s vote while `q` is
/// away, `p` never hears that it is chosen, and `l` compacts past `k` and
/// stops leading (cut off from both). Then `q` campaigns, with `l`'s
/// promise counted first; `p` is reachable only when `p_reachable`.
/// Catch-up is dropped throughout. Returns the cluster, `q`, `k`, v and
/// the instances of the Accepts `q` sent.
fn q_leads_behind_l_compacted_prefix(p_reachable: bool) -> (Cluster, u32, u64, Value, Vec<u64>) {
    q_leads_behind_l_compacted_prefix_with(p_reachable, false)
}

/// As `q_leads_behind_l_compacted_prefix`; with `compact_p`, `p` also
/// compacts, exactly at `k` (its applied point): its report still covers `k`.
fn q_leads_behind_l_compacted_prefix_with(
    p_reachable: bool,
    compact_p: bool,
) -> (Cluster, u32, u64, Value, Vec<u64>) {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let others: Vec<u32> = (1..=3).filter(|id| *id != l).collect();
    let (p, q) = (others[0], others[1]);
    let (k, v) = chosen_then_leader_cut_off(&mut c, l, &[q]);
    assert!(c.chosen_end(p) <= k, "p must not know v is chosen");
    compact_at_applied(&mut c, l);
    // Alone, l stops leading.
    stop_leading_alone(&mut c, l);
    if compact_p {
        assert_eq!(
            c.r[&p].status().applied_end.0,
            k,
            "p applied exactly up to k"
        );
        compact_at_applied(&mut c, p);
    }
    c.cut.clear();
    if !p_reachable {
        isolate(&mut c, p);
    }
    let mut accepts = Vec::new();
    campaign(&mut c, q, l, &mut accepts, |_| false);
    tick_and_deliver(&mut c, q, l, 5, &mut accepts);
    (c, q, k, v, accepts)
}

/// `l`'s report lacks `k` (compacted), but `q` and `p` are a quorum whose
/// reports cover it: `q` re-proposes p's v there at once, with no catch-up
/// (the log used to wait for catch-up from `l`, which an on-disk state
/// machine restarted ahead of its chosen marks could not give: simulator
/// seed 179).
#[test]
fn a_quorum_of_reports_without_the_compacted_voter_lets_the_leader_propose() {
    let (mut c, q, k, v, _) = q_leads_behind_l_compacted_prefix(true);
    assert_eq!(c.r[&q].chosen_value(InstanceId(k)), Some(&v));
    assert!(c.chosen_end(q) > k);
    c.r.get_mut(&q)
        .unwrap()
        .propose(Bytes::from_static(b"w"))
        .unwrap();
    deliver_promise_first(&mut c, q, 0, &mut Vec::new());
    let w = Value::batch(vec![Bytes::from_static(b"w")]);
    assert_eq!(c.r[&q].chosen_value(InstanceId(k + 1)), Some(&w));
}

/// With `p` away, `q`'s quorum is {q, l}, and only q reports `k`: q must
/// not propose there (a new command over v; `l` refuses to vote below its
/// compacted prefix, so it would not be chosen here, but that is a second
/// line of defence) and waits for catch-up.
#[test]
fn without_a_quorum_of_reports_the_leader_waits_for_catch_up() {
    let (mut c, q, k, _, mut accepts) = q_leads_behind_l_compacted_prefix(false);
    c.r.get_mut(&q)
        .unwrap()
        .propose(Bytes::from_static(b"w"))
        .unwrap();
    deliver_promise_first(&mut c, q, 0, &mut accepts);
    assert!(
        !accepts.contains(&k),
        "q proposed at {k} with no quorum reporting it: {accepts:?}"
    );
    assert_eq!(c.r[&q].chosen_value(InstanceId(k)), None);
    assert!(c.chosen_end(q) <= k);
}

/// The boundary of `Phase1::reporting_at`): `p` compacted exactly at
/// `k` (`values_from == k`), so its promise still reports `k`, with v:
/// `{q, p}` are a quorum reporting `k` and `q` re-proposes v at once. A
/// filter `end < instance` would drop p and wait for catch-up for nothing.
#[test]
fn a_promiser_compacted_exactly_at_the_instance_still_reports_it() {
    let (c, q, k, v, _) = q_leads_behind_l_compacted_prefix_with(true, true);
    assert_eq!(c.r[&q].chosen_value(InstanceId(k)), Some(&v));
}

/// Five voters. `l` chooses v at `k` with `b` and `cc` (`d`, `e`
/// away); `b` and `cc` never hear it is chosen; `l` compacts past `k` and
/// stops leading. `d` then leads with promises from `l`, `d`, `e` only:
/// `{d, e}` report `k` (nothing there) but are no quorum of five, so `d`
/// must not propose at `k` (it would otherwise propose a new command there,
/// and `b`, `cc` would vote for it: two values chosen at `k`). Once `b`
/// and `cc` promise late, their reports (v at `k`) are merged and `{b, cc,
/// d, e}` is a quorum reporting `k`: `d` re-proposes v there, with no
/// catch-up.
#[test]
fn five_voters_late_promises_complete_a_reporting_quorum() {
    let mut c = Cluster::new(5);
    let l = c.elect();
    let others: Vec<u32> = (1..=5).filter(|id| *id != l).collect();
    let (b, cc, d, e) = (others[0], others[1], others[2], others[3]);
    let (k, v) = chosen_then_leader_cut_off(&mut c, l, &[d, e]);
    assert!(c.chosen_end(b) <= k && c.chosen_end(cc) <= k);
    compact_at_applied(&mut c, l);
    stop_leading_alone(&mut c, l);
    // {l, d, e} connected; b and cc away.
    c.cut.clear();
    isolate(&mut c, b);
    isolate(&mut c, cc);
    let mut accepts = Vec::new();
    campaign(&mut c, d, 0, &mut accepts, |_| false);
    c.r.get_mut(&d)
        .unwrap()
        .propose(Bytes::from_static(b"w"))
        .unwrap();
    tick_and_deliver(&mut c, d, 0, 5, &mut accepts);
    assert!(
        !accepts.contains(&k),
        "d proposed at {k} with only {{d, e}} reporting it: {accepts:?}"
    );
    // b and cc come back: their late promises complete a reporting quorum.
    c.cut.clear();
    tick_and_deliver(&mut c, d, 0, 30, &mut accepts);
    let at_d = c.r[&d].chosen_value(InstanceId(k)).cloned();
    assert_eq!(at_d, Some(v.clone()), "AGREEMENT/LIVENESS at {k}: {at_d:?}");
    for id in 1..=5 {
        let at = c.r[&id].chosen_value(InstanceId(k));
        assert!(
            at.is_none() || at == Some(&v),
            "AGREEMENT VIOLATED at n{id}: {at:?}"
        );
    }
    let w = Value::batch(vec![Bytes::from_static(b"w")]);
    assert!(
        (k + 1..c.chosen_end(d)).any(|i| c.r[&d].chosen_value(InstanceId(i)) == Some(&w)),
        "w was never chosen"
    );
}

/// The reporting quorum is judged by the membership of the instance, not by
/// the one in force at the leader's chosen prefix (a mutant judging by the
/// latter survived every other test). Voters 1 (`a`), 2 (`b`) and 3 (`cc`),
/// learner 4 promoted: in force from `e`. Leader `b` proposes one instance
/// at a time. `a` learns the promotion chosen and is cut off; `b` fills up
/// to `e - 1` with `cc`, whose last Accept is `e - 1` (it knows the fills
/// chosen below that); v is chosen at `e` by `b`, `a` and 4 (`cc` never
/// sees it); `b` compacts past `e` and stops leading; 4 goes away. `a` leads
/// with `b`'s promise (a quorum of the old membership), a command `w`
/// waiting, then `cc` promises late: `a` learns the fills chosen below
/// `e - 1` from it, and `{a, cc}` report every instance, a quorum of the old
/// membership (`e - 1`: `a` re-proposes `cc`'s no-op) but not of the new one
/// (`e`): `a` must hold back at `e` although its chosen prefix is still in
/// the old membership.
#[test]
fn a_reporting_quorum_is_judged_by_the_membership_of_the_instance() {
    // b proposes one instance at a time, a (the next leader) many.
    let mut c = Cluster::with_config(3, |cfg| {
        if cfg.id != NodeId(1) {
            cfg.window_instances_max = 1;
        }
    });
    let (a, b, cc) = (1, 2, 3);
    for _ in 0..500 {
        if c.leader() == Some(b) {
            break;
        }
        c.r.get_mut(&b).unwrap().tick();
        c.settle();
    }
    assert_eq!(c.leader(), Some(b));
    c.write(b, "x");
    c.r.get_mut(&b)
        .unwrap()
        .propose_change(add(4, false), false)
        .unwrap();
    c.settle();
    c.tick_all(3);
    c.join(4, b);
    c.tick_all(20);
    // The promotion: a learns it chosen, then is cut off.
    let r = c.chosen_end(b);
    c.r.get_mut(&b)
        .unwrap()
        .propose_change(MembershipChange::Promote { id: NodeId(4) }, false)
        .unwrap();
    c.pump(b);
    for _ in 0..20 {
        if c.chosen_end(a) > r {
            break;
        }
        c.settle_one_step(None);
    }
    isolate(&mut c, a);
    let ca = c.chosen_end(a);
    assert!(ca > r);
    let schedule = c.r[&a].schedule();
    assert!(!schedule.at(InstanceId(ca)).is_voter(NodeId(4)));
    let e = (ca..ca + 64)
        .find(|i| schedule.at(InstanceId(*i)).is_voter(NodeId(4)))
        .expect("the promotion is in force within α of a's chosen prefix");
    // b fills up to e - 1 with cc, one instance at a time.
    for _ in 0..1000 {
        if c.chosen_end(b) >= e {
            break;
        }
        c.settle_one_step(None);
    }
    assert_eq!(c.chosen_end(b), e);
    // Nothing more reaches cc (b's announcement of e - 1 included).
    c.pool.clear();
    c.r.get_mut(&b)
        .unwrap()
        .propose(Bytes::from_static(b"v"))
        .unwrap();
    c.pump(b);
    let accepts_at_e: Vec<Message> = std::mem::take(&mut c.pool)
        .into_iter()
        .filter(|m| {
            matches!(m.body, Body::Accept { instance, .. } if instance.0 == e)
                && (m.to.0 == a || m.to.0 == 4)
        })
        .collect();
    assert_eq!(accepts_at_e.len(), 2);
    for m in accepts_at_e {
        let to = m.to.0;
        c.r.get_mut(&to).unwrap().step(m);
        c.pump(to);
    }
    for m in std::mem::take(&mut c.pool) {
        if m.to.0 == b && matches!(m.body, Body::Accepted { .. }) {
            c.r.get_mut(&b).unwrap().step(m);
        }
    }
    c.pump(b);
    c.pool.clear();
    isolate(&mut c, b);
    let v = Value::batch(vec![Bytes::from_static(b"v")]);
    assert_eq!(c.r[&b].chosen_value(InstanceId(e)), Some(&v));
    assert!(c.chosen_end(cc) < e, "cc must not know e - 1 is chosen");
    assert!(c.chosen_end(a) < e);
    assert!(c.r[&b].status().applied_end.0 > e);
    compact_at_applied(&mut c, b);
    stop_leading_alone(&mut c, b);
    // a leads with b's promise; cc's is held back until w waits.
    c.cut.clear();
    isolate(&mut c, 4);
    let mut accepts = Vec::new();
    campaign(&mut c, a, b, &mut accepts, |m| {
        matches!(m.body, Body::Promise { .. }) && m.from.0 == cc
    });
    assert!(c.chosen_end(a) < e - 1);
    c.r.get_mut(&a)
        .unwrap()
        .propose(Bytes::from_static(b"w"))
        .unwrap();
    tick_and_deliver(&mut c, a, 0, 30, &mut accepts);
    assert!(
        accepts.contains(&(e - 1)),
        "a never re-proposed e - 1 = {}: {accepts:?}",
        e - 1
    );
    assert!(
        !accepts.contains(&e),
        "a proposed at {e} with only {{a, cc}} reporting it: {accepts:?}"
    );
    assert_eq!(c.r[&a].chosen_value(InstanceId(e)), None);
}
