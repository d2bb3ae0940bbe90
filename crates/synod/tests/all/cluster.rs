//! Real nodes (WAL on disk, TCP on loopback) in one process: replication,
//! failover, restart and catch-up by snapshot, and the no-quorum timeout.

use crate::common;
use crate::common::free_peers;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use synod::{
    ApplyContext, Node, NodeConfig, NodeId, RequestError, RoleKind, SnapshotPolicy, StateMachine,
};

/// A counter that also remembers how many commands it applied, so that
/// exactly-once is visible.
#[derive(Default)]
struct Counter {
    value: i64,
    applied: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let delta = command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        self.value += delta;
        self.applied += 1;
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        let mut out = self.value.to_le_bytes().to_vec();
        out.extend_from_slice(&self.applied.to_le_bytes());
        Bytes::from(out)
    }

    fn snapshot(&self) -> Bytes {
        let mut out = self.value.to_le_bytes().to_vec();
        out.extend_from_slice(&self.applied.to_le_bytes());
        Bytes::from(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        if snapshot.len() != 16 {
            return Err(format!("bad counter snapshot of {} bytes", snapshot.len()));
        }
        self.value = i64::from_le_bytes(snapshot[..8].try_into().map_err(|_| "value")?);
        self.applied = u64::from_le_bytes(snapshot[8..].try_into().map_err(|_| "applied")?);
        Ok(())
    }
}

fn add(n: i64) -> Bytes {
    Bytes::copy_from_slice(&n.to_le_bytes())
}

fn counter_of(output: &[u8]) -> (i64, u64) {
    let value = i64::from_le_bytes(output[..8].try_into().expect("8 bytes"));
    let applied = u64::from_le_bytes(output[8..16].try_into().expect("8 bytes"));
    (value, applied)
}

async fn start(cfg: NodeConfig) -> Node {
    Node::start(cfg, Counter::default())
        .await
        .expect("node starts")
}

/// Proposes until it succeeds (a leader may still be being elected).
async fn propose_retrying(node: &Node, delta: i64) -> Bytes {
    for _ in 0..10 {
        match node.propose(add(delta)).await {
            Ok(out) => return out,
            Err(RequestError::Timeout(_)) => continue,
            Err(err) => panic!("propose failed: {err}"),
        }
    }
    panic!("no answer after 10 attempts");
}

async fn wait_applied(node: &Node, at_least: u64) {
    let mut status = node.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.applied_end.0 >= at_least),
    )
    .await
    .expect("catches up in time")
    .expect("node alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_fail_over_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(Some(start(config(id, &peers, dir.path())).await));
    }
    // Every node takes writes; each write is applied exactly once.
    for round in 0..10 {
        for node in nodes.iter().flatten() {
            propose_retrying(node, 1).await;
        }
        let _ = round;
    }
    let (value, applied) = counter_of(
        &nodes[0]
            .as_ref()
            .expect("up")
            .read(Bytes::new())
            .await
            .expect("read"),
    );
    assert_eq!((value, applied), (30, 30));

    // Stop the leader; the other two carry on.
    let leader = nodes[0]
        .as_ref()
        .expect("up")
        .status()
        .leader
        .expect("a leader");
    let leader_index = (leader.0 - 1) as usize;
    nodes[leader_index].take().expect("up").shutdown().await;
    let survivor = nodes.iter().flatten().next().expect("a survivor");
    propose_retrying(survivor, 5).await;
    let (value, _) = counter_of(&survivor.read(Bytes::new()).await.expect("read"));
    assert_eq!(value, 35);
    let new_leader = survivor.status().leader.expect("new leader");
    assert_ne!(new_leader, leader);

    // The old leader restarts from its data directory and catches up.
    let restarted = start(config(leader.0, &peers, dir.path())).await;
    let target = survivor.status().applied_end.0;
    wait_applied(&restarted, target).await;
    let (value, applied) = counter_of(
        &crate::common::read_once_loaded(&restarted, Bytes::new())
            .await
            .0,
    );
    assert_eq!((value, applied), (35, 31));
    nodes[leader_index] = Some(restarted);
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let snapshotting = |id| {
        let mut cfg = config(id, &peers, dir.path());
        cfg.snapshot_policy = SnapshotPolicy {
            instances: 10,
            log_bytes: 0,
            ..Default::default()
        };
        // Small peer queues: what was sent to node 3 while it was down is
        // mostly dropped, as it would be after a long outage.
        cfg.peer_send_queue_max = 16;
        cfg
    };
    let a = start(snapshotting(1)).await;
    let b = start(snapshotting(2)).await;
    // Node 3 is down while the others write, snapshot and compact.
    // More instances than the leader's phase-2 window (64), so the oldest
    // are compacted everywhere and only a snapshot can bring node 3 back.
    for _ in 0..200 {
        propose_retrying(&a, 2).await;
    }
    assert!(a.status().snapshot_end.0 >= 10, "node 1 snapshotted");
    assert!(b.status().snapshot_end.0 >= 10, "node 2 snapshotted");
    let c = start(snapshotting(3)).await;
    wait_applied(&c, a.status().applied_end.0).await;
    assert!(
        c.metrics()
            .snapshots_installed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Its applied point is the snapshot's once installed; reads are
    // refused (`Loading`) until the state machine is restored from it.
    let (output, _) = common::read_once_loaded(&c, Bytes::new()).await;
    let (value, applied) = counter_of(&output);
    assert_eq!((value, applied), (400, 200));
    // And it survives a restart with the installed snapshot.
    c.shutdown().await;
    let c = start(snapshotting(3)).await;
    let (output, _) = common::read_once_loaded(&c, Bytes::new()).await;
    let (value, _) = counter_of(&output);
    assert_eq!(value, 400);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

/// With no log kept in memory beyond what a checkpoint needs
/// (`log_memory_bytes` 0) and no checkpoint yet, the applied values are
/// only on disk: a node that was down meanwhile gets them read back from the
/// log of the node it asks (no snapshot), and a node restarted replays them
/// from its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_values_dropped_from_memory_gets_them_read_back_from_the_log() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let node_config = |id| {
        let mut cfg = config(id, &peers, dir.path());
        cfg.snapshot_policy = SnapshotPolicy {
            instances: 0,
            log_bytes: 0,
            ..Default::default()
        };
        cfg.log_memory_bytes = 0;
        cfg.peer_send_queue_max = 16;
        cfg
    };
    let a = start(node_config(1)).await;
    let b = start(node_config(2)).await;
    for _ in 0..200 {
        propose_retrying(&a, 2).await;
    }
    for node in [&a, &b] {
        assert_eq!(node.status().snapshot_end.0, 0, "no checkpoint yet");
        assert!(node.metrics().log_memory_released_bytes.load(Relaxed) > 0);
    }
    // Every record is durable before node 3 asks (the leader syncs its
    // own records within a tick): the reads find every value.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = start(node_config(3)).await;
    wait_applied(&c, a.status().applied_end.0).await;
    let read_back = [&a, &b].map(|n| n.metrics().log_reads_for_peers.load(Relaxed));
    assert!(
        read_back.iter().sum::<u64>() >= 1,
        "values read back from the log for node 3"
    );
    assert_eq!(c.metrics().snapshots_installed.load(Relaxed), 0);
    let for_peers = [&a, &b].map(|n| n.metrics().snapshots_for_peers.load(Relaxed));
    assert_eq!(for_peers, [0, 0], "no snapshot written for node 3");
    let (value, applied) = counter_of(&crate::common::read_once_loaded(&c, Bytes::new()).await.0);
    assert_eq!((value, applied), (400, 200));
    // Node 2 restarts: whatever it dropped from memory it replays from its
    // log (or its checkpoint, if it wrote the snapshot).
    b.shutdown().await;
    let b = start(node_config(2)).await;
    wait_applied(&b, a.status().applied_end.0).await;
    let (value, _) = counter_of(&crate::common::read_once_loaded(&b, Bytes::new()).await.0);
    assert_eq!(value, 400);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_times_out_with_unknown_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut cfg = config(1, &peers, dir.path());
    cfg.request_timeout = Duration::from_millis(800);
    let lonely = start(cfg).await;
    let started = std::time::Instant::now();
    let err = lonely.propose(add(1)).await.expect_err("no quorum");
    assert!(matches!(err, RequestError::Timeout(_)), "{err}");
    assert!(err.to_string().contains("outcome is unknown"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_ne!(lonely.status().role, RoleKind::Leader);
    lonely.shutdown().await;
}

/// Runs `what`, failing the test after 30 s.
async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), what)
        .await
        .expect("in time")
}

/// `ready` waits for the replay and a leader; `is_leader` and `leadership`
/// follow a transfer on both ends; `Debug` names the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_leader_and_leadership_follow_a_transfer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(config(id, &peers, dir.path())).await);
    }
    for node in &nodes {
        let status = within(node.ready()).await.expect("ready");
        assert!(status.leader.is_some());
    }
    propose_retrying(&nodes[0], 1).await;
    let leader = nodes[0].status().leader.expect("a leader");
    let old = &nodes[(leader.0 - 1) as usize];
    let new = nodes
        .iter()
        .find(|n| n.status().id != leader)
        .expect("a follower");
    within(async {
        while !old.is_leader() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(!new.is_leader());
    assert!(format!("{old:?}").contains(&format!("id: NodeId({})", leader.0)));

    let mut gaining = new.leadership();
    let mut losing = old.leadership();
    assert!(!gaining.is_leading());
    assert!(losing.is_leading());
    let to = new.status().id;
    within(old.transfer_leader(to)).await.expect("transfer");
    assert_eq!(within(gaining.next()).await, Some(true));
    assert_eq!(within(losing.next()).await, Some(false));

    // A restarted node is ready once it replayed its log and knows the
    // leader; then it answers a read with every write.
    propose_retrying(new, 1).await;
    let value = counter_of(&crate::common::read_once_loaded(new, Bytes::new()).await.0).0;
    let restarted_id = old.status().id;
    let index = (restarted_id.0 - 1) as usize;
    nodes.remove(index).shutdown().await;
    let restarted = start(config(restarted_id.0, &peers, dir.path())).await;
    within(restarted.ready()).await.expect("ready");
    let (read, _) = counter_of(
        &crate::common::read_once_loaded(&restarted, Bytes::new())
            .await
            .0,
    );
    assert_eq!(read, value);
    // Stopped: `leadership` ends and `ready` reports it.
    let mut ended = restarted.leadership();
    restarted.shutdown().await;
    while let Some(_change) = within(ended.next()).await {}
    assert!(restarted.ready().await.is_err());
    for node in nodes {
        node.shutdown().await;
    }
}

/// A restart with another peer list is refused at start with a clear error
/// (the cluster id is a hash of the peers, recorded in the data directory),
/// not run with a membership no other node has; membership changes go
/// through `add_member`/`remove_member`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_another_peer_list_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let node = start(config(3, &peers, dir.path())).await;
    node.shutdown().await;
    let mut more = peers.clone();
    let extra = free_peers(1).into_values().next().expect("an address");
    more.insert(NodeId(4), extra);
    let mut cfg = config(3, &more, dir.path());
    cfg.bootstrap = synod::Bootstrap::Existing;
    let refused = Node::start(cfg, Counter::default())
        .await
        .expect_err("another peer list is refused");
    let text = refused.to_string();
    assert!(text.contains("--peers differs"), "{text}");
    // The original list still starts.
    let node = start(config(3, &peers, dir.path())).await;
    node.shutdown().await;
}

fn config(id: u32, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> NodeConfig {
    common::config(id, peers, dir, Duration::from_secs(10))
}

/// Three nodes ticking once a second (a heartbeat a tick, elections after
/// two), each configuration edited by `edit`: what happens within a tick
/// comes from the driver's own timer. Returns them and the leader's index,
/// once a write went through.
async fn slow_tick_cluster(dir: &Path, edit: impl Fn(&mut NodeConfig)) -> (Vec<Node>, usize) {
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut cfg = config(id, &peers, dir);
        cfg.tick = Duration::from_secs(1);
        cfg.heartbeat_ticks = 1;
        cfg.election_ticks = 2;
        edit(&mut cfg);
        nodes.push(start(cfg).await);
    }
    propose_retrying(&nodes[0], 1).await;
    let leader = nodes[0].status().leader.expect("a leader");
    (nodes, (leader.0 - 1) as usize)
}

/// Cohort batching's clock: after a burst of ten writes, a lone write waits
/// for the rest of the cohort (4/5 of ten), which does not come; with a 1 s
/// tick and a 20 ms hold, the driver's own timer (`Replica::wake_at_ms`)
/// ends the hold, not the next tick (about a second later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_goes_when_the_hold_ends_not_at_the_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, leader) =
        slow_tick_cluster(dir.path(), |cfg| cfg.batch_hold = Duration::from_millis(20)).await;
    let leader = &nodes[leader];
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        // Idle for longer than 20 ms: the burst itself is not held.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let write = || leader.propose(add(1));
        let burst = tokio::join!(
            write(),
            write(),
            write(),
            write(),
            write(),
            write(),
            write(),
            write(),
            write(),
            write()
        );
        for answer in [
            burst.0, burst.1, burst.2, burst.3, burst.4, burst.5, burst.6, burst.7, burst.8,
            burst.9,
        ] {
            answer.expect("a write of the burst");
        }
        let started = std::time::Instant::now();
        leader.propose(add(1)).await.expect("the lone write");
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(300),
        "a held write went only after {slowest:?} (tick 1 s, hold 20 ms)"
    );
    // The status (and the counters) are published after the answers.
    let mut timeouts = 0;
    for _ in 0..100 {
        timeouts = leader
            .metrics()
            .batch_hold_timeouts
            .load(std::sync::atomic::Ordering::Relaxed);
        if timeouts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        timeouts > 0,
        "no hold ran out: the lone writes were not held"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// A busy leader's drained pipeline is announced by the driver's own timer
/// (`Replica::wake_at_ms`), not only at the next tick: with a 1 s tick and a
/// 20 ms delay, followers apply the last write of a burst well within a
/// tick: about 21 ms in each of the five trials here. With the timer's arm
/// switched off, each waited for the next tick (about 950 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_announcement_reaches_followers_within_the_delay_not_a_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, leader) = slow_tick_cluster(dir.path(), |cfg| {
        cfg.chosen_announce_delay = Duration::from_millis(20)
    })
    .await;
    let leader = &nodes[leader];
    let followers: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.status().id != leader.status().id)
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The first write finds an idle leader (announced at once); the
        // second comes right after its drain, so its own drain waits.
        let before = leader.status().applied_end.0;
        leader.propose(add(1)).await.expect("first write");
        leader.propose(add(1)).await.expect("second write");
        let started = std::time::Instant::now();
        // The status is published after the answers: wait for it to show
        // both writes (one instance each, at least).
        wait_applied(leader, before + 2).await;
        let target = leader.status().applied_end.0;
        for follower in &followers {
            wait_applied(follower, target).await;
        }
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(150),
        "a follower learned a write only after {slowest:?} (tick 1 s, delay 20 ms)"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// A peer listener handed to `Node::start_with_listener` on another port
/// than the node's peer address (its peers would dial a port nobody serves),
/// or outside loopback with insecure links, is refused before the data
/// directory is touched: a later start with the right listener works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_peers_could_not_reach_is_refused_before_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peers = BTreeMap::from([(NodeId(1), listener.local_addr().expect("addr"))]);
    let cfg = common::config(1, &peers, dir.path(), Duration::from_secs(10));
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = Node::start_with_listener(cfg.clone(), Counter::default(), elsewhere)
        .await
        .expect_err("another port");
    assert!(
        refused.to_string().contains("could not reach it"),
        "{refused}"
    );
    // On every interface, on the port the peer list names on loopback.
    let outside = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let refused = refused_on_its_loopback_port(outside, dir.path()).await;
    assert!(
        refused.contains("the peer listener handed in is on 0.0.0.0"),
        "{refused}"
    );
    // Bound on the right port but never listening: its peers' connections
    // would be refused.
    #[cfg(target_os = "linux")]
    {
        let refused = refused_on_its_loopback_port(bound_not_listening(), dir.path()).await;
        assert!(refused.contains("not listening"), "{refused}");
    }
    assert!(
        !cfg.data_dir.exists(),
        "a refused start wrote to its data directory"
    );
    let node = Node::start_with_listener(cfg, Counter::default(), listener)
        .await
        .expect("starts");
    common::propose_retrying(&node, Bytes::copy_from_slice(&5i64.to_le_bytes())).await;
    node.shutdown().await;
}

/// Starts node 1, whose peer list names `listener`'s port on loopback, on
/// `listener`, and returns why the start was refused (a start that succeeds
/// fails the test).
async fn refused_on_its_loopback_port(listener: std::net::TcpListener, dir: &Path) -> String {
    let port = listener.local_addr().expect("addr").port();
    let cfg = common::config(
        1,
        &BTreeMap::from([(NodeId(1), SocketAddr::from(([127, 0, 0, 1], port)))]),
        dir,
        Duration::from_secs(10),
    );
    Node::start_with_listener(cfg, Counter::default(), listener)
        .await
        .expect_err("a listener that must be refused")
        .to_string()
}

/// A TCP socket bound to a free loopback port and never put in the listening
/// state, as a `TcpListener` (std binds and listens in one call, so this
/// goes through libc).
#[cfg(target_os = "linux")]
fn bound_not_listening() -> std::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket, bound with a zeroed and filled `sockaddr_in`
    // of the size given; on success its descriptor is owned by the
    // listener returned (and closed with it).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        std::net::TcpListener::from_raw_fd(fd)
    }
}
