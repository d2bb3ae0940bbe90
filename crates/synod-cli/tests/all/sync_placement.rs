//! Where a node's log sync runs (`NodeConfig::sync_on_event_loop`, counted
//! by `synod_log_syncs_on_loop_total` and `synod_log_syncs_on_thread_total`):
//! a leader always on a blocking thread; a follower on its event loop while
//! none of its own clients' requests wait, on a thread while one does.

use crate::common;

use common::Cluster;
use std::time::{Duration, Instant};

const ON_LOOP: &str = "synod_log_syncs_on_loop_total";
const ON_THREAD: &str = "synod_log_syncs_on_thread_total";

fn set_through(cluster: &Cluster, i: usize, count: usize) {
    let mut con = cluster.client(i);
    for n in 0..count {
        let reply: String = redis::cmd("SET")
            .arg(format!("k{n}"))
            .arg("v")
            .query(&mut con)
            .expect("SET");
        assert_eq!(reply, "OK");
    }
}

/// Node `i`'s counters once `ok` holds of them (or after 10 s): (on the
/// loop, on a thread). /metrics reads them live; `ok` waits for syncs still
/// running when the last reply came.
fn syncs(cluster: &Cluster, i: usize, ok: impl Fn(u64, u64) -> bool) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = (
            cluster.try_metric(i, ON_LOOP),
            cluster.try_metric(i, ON_THREAD),
        );
        if let (Some(on_loop), Some(on_thread)) = counts {
            if ok(on_loop, on_thread) || Instant::now() > deadline {
                return (on_loop, on_thread);
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {} /metrics: {counts:?}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_follower_syncs_on_its_loop_unless_its_own_clients_wait() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().expect("a leader");
    let (busy, idle) = ((leader + 1) % 3, (leader + 2) % 3);

    // Writes through the leader: the followers have no client of their
    // own, so each of their syncs runs on the loop.
    let before = syncs(&cluster, idle, |_, _| true);
    // (The leader may have synced on its loop while it campaigned.)
    let leader_before = syncs(&cluster, leader, |_, _| true);
    set_through(&cluster, leader, 50);
    // One sync per SET, unless one stalls and covers several Accepts: at
    // least one, then.
    let after = syncs(&cluster, idle, |on_loop, _| on_loop >= before.0 + 50);
    assert!(after.0 > before.0, "idle follower: {before:?} -> {after:?}");
    assert_eq!(after.1, before.1, "an idle follower synced on a thread");
    let leader_after = syncs(&cluster, leader, |_, on_thread| on_thread > leader_before.1);
    assert_eq!(
        leader_after.0, leader_before.0,
        "the leader synced on its loop"
    );
    assert!(leader_after.1 > leader_before.1, "the leader never synced");

    // Writes through a follower: each waits there while its Accept is
    // synced, so that follower's syncs go to a thread; the other
    // follower's stay on its loop.
    let busy_before = syncs(&cluster, busy, |_, _| true);
    let idle_before = syncs(&cluster, idle, |_, _| true);
    set_through(&cluster, busy, 50);
    let busy_after = syncs(&cluster, busy, |_, on_thread| {
        on_thread >= busy_before.1 + 25
    });
    assert!(
        busy_after.1 >= busy_before.1 + 25,
        "follower with clients: {busy_before:?} -> {busy_after:?}"
    );
    let idle_after = syncs(&cluster, idle, |on_loop, _| on_loop >= idle_before.0 + 50);
    assert_eq!(
        idle_after.1, idle_before.1,
        "an idle follower synced on a thread"
    );
    // Every count above assumed one leader throughout.
    assert_eq!(
        cluster.leader(),
        Some(leader),
        "the leader changed during the test"
    );
}
