//! Membership changes with real nodes (WAL on disk, TCP on loopback) in one
//! process: the operator's walkthrough through the library API.
//!
//! 3 voters with data → node 4 joins as a learner → promoted → node 1 is
//! killed and its data deleted → node 1 removed → every write readable on
//! node 4 → leadership handed to node 4 → writes go on → a clean stop of the
//! leader hands leadership over without an election timeout.

use crate::common::{self, free_addrs};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use synod::{
    ApplyContext, MemberAddr, MemberError, MemberRole, Node, NodeConfig, NodeId, RequestError,
    RoleKind, StateMachine,
};

/// A counter; `query` returns its value.
#[derive(Default)]
struct Counter {
    value: i64,
}

impl StateMachine for Counter {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let delta = command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        self.value += delta;
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "bad snapshot")?;
        self.value = i64::from_le_bytes(bytes);
        Ok(())
    }
}

fn value_of(output: &[u8]) -> i64 {
    i64::from_le_bytes(output[..8].try_into().expect("8 bytes"))
}

/// Starts node `id` as a new member joining through `via`: the library
/// steps `synod server --join` takes (add, fetch the schedule, start).
async fn join(via: &Node, id: u32, addr: SocketAddr, dir: &Path, learner: bool) -> Node {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let added = via
            .add_member(
                NodeId(id),
                MemberAddr {
                    paxos: Some(addr),
                    resp: None,
                },
                learner,
            )
            .await;
        match added {
            Ok(()) => break,
            // The change before this one has not taken effect yet.
            Err(MemberError::Refused(why))
                if why.contains("in progress") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("add of {id} refused: {err}"),
        }
    }
    let info = via.join_info().await.expect("join info");
    let data_dir = dir.join(format!("n{id}"));
    synod::write_join_schedule(&data_dir, info.point, &info.schedule).expect("join file");
    let mut peers: BTreeMap<NodeId, SocketAddr> = info
        .schedule
        .latest()
        .members
        .iter()
        .filter_map(|m| MemberAddr::parse(&m.addr).paxos.map(|a| (m.id, a)))
        .collect();
    peers.insert(NodeId(id), addr);
    let mut cfg = config(id, &peers, dir);
    cfg.cluster_id = info.cluster_id;
    Node::start(cfg, Counter::default()).await.expect("joins")
}

async fn propose_retrying(node: &Node, delta: i64) -> i64 {
    for _ in 0..20 {
        match node
            .propose(Bytes::copy_from_slice(&delta.to_le_bytes()))
            .await
        {
            Ok(out) => return value_of(&out),
            Err(RequestError::Timeout(_)) => continue,
            Err(err) => panic!("propose failed: {err}"),
        }
    }
    panic!("no answer after 20 attempts");
}

async fn wait_for(node: &Node, what: &str, f: impl Fn(&synod::NodeStatus) -> bool) {
    let mut status = node.watch_status();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", node.status()))
        .expect("node alive");
}

/// Waits until the newest membership `node` knows is in force.
async fn in_force(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = node.members().await.expect("members");
        if view.pending_from.is_none() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the membership is still pending from {:?}: {:?}",
            view.pending_from,
            node.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_of(nodes: &[&Node]) -> Option<NodeId> {
    nodes
        .iter()
        .map(|n| n.status())
        .find(|s| s.role == RoleKind::Leader)
        .map(|s| s.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_walkthrough_add_promote_replace_transfer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addrs = free_addrs(4);
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|i| (NodeId(i), addrs[i as usize - 1]))
        .collect();
    let n1 = Node::start(config(1, &peers, dir.path()), Counter::default())
        .await
        .expect("n1");
    let n2 = Node::start(config(2, &peers, dir.path()), Counter::default())
        .await
        .expect("n2");
    let n3 = Node::start(config(3, &peers, dir.path()), Counter::default())
        .await
        .expect("n3");
    let mut total = 0;
    for k in 1..=20 {
        total = propose_retrying(&n2, k).await;
    }
    assert_eq!(total, 210);

    // Node 4 joins as a learner: it catches up but does not vote.
    let n4 = join(&n2, 4, addrs[3], dir.path(), true).await;
    wait_for(&n4, "node 4 to catch up", |s| s.applied_end.0 >= 20).await;
    let view = n2.members().await.expect("view");
    let four = view
        .members
        .iter()
        .find(|m| m.id == NodeId(4))
        .expect("4 listed");
    assert_eq!(four.role, MemberRole::Learner);
    assert_eq!(four.addr.paxos, Some(addrs[3]));
    // A second add of the same id is refused, and says why.
    let again = n1
        .add_member(NodeId(4), MemberAddr::default(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(&again, MemberError::Refused(m) if m.contains("already a member")),
        "{again}"
    );

    // Promote it; it votes from the membership's instance on.
    n3.promote(NodeId(4), false).await.expect("promoted");
    for node in [&n1, &n2, &n3, &n4] {
        wait_for(node, "node 4 to be a voter", |s| {
            s.members.contains(&NodeId(4))
        })
        .await;
    }

    // Node 1 dies for good: its data is gone. Remove it; writes go on.
    n1.shutdown().await;
    drop(n1);
    std::fs::remove_dir_all(dir.path().join("n1")).expect("wipe n1");
    // Node 1 may have led: until its successor is known (it handed over at
    // its stop), a change is refused or times out. Once seen gone, done.
    // (Seen once under load, stop 62: `Refused` with no leader known.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = n4.remove_member(NodeId(1), false).await;
        if result.is_ok() || !n4.status().members.contains(&NodeId(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "removing 1: {result:?}");
        match result {
            Err(MemberError::Refused(_) | MemberError::Timeout(_) | MemberError::Lost(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("removing 1: {other:?}"),
        }
    }
    for node in [&n2, &n3, &n4] {
        wait_for(node, "node 1 to be gone", |s| {
            !s.members.contains(&NodeId(1))
        })
        .await;
    }
    for k in 21..=30 {
        total = propose_retrying(&n3, k).await;
    }
    assert_eq!(total, 465);
    // Every write is readable on node 4.
    let read = crate::common::read_once_loaded(&n4, Bytes::new()).await.0;
    assert_eq!(value_of(&read), 465);

    // Re-adding the removed id is refused: a removed node never votes again.
    let back = n2
        .add_member(NodeId(1), MemberAddr::default(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(&back, MemberError::Refused(m) if m.contains("removed")),
        "{back}"
    );

    // Hand leadership to node 4 and time the gap seen by a writer.
    let started = Instant::now();
    n2.transfer_leader(NodeId(4)).await.expect("transfer");
    let transfer_ms = started.elapsed().as_millis();
    // The transfer is done at node 2 once it promised node 4's ballot and
    // follows it; node 4's own status says Leader once its phase 1 ends
    // (a moment later on a loaded machine: this assertion raced with it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader_of(&[&n2, &n3, &n4]) != Some(NodeId(4)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(leader_of(&[&n2, &n3, &n4]), Some(NodeId(4)));
    total = propose_retrying(&n4, 1).await;
    assert_eq!(total, 466);
    println!("leader transfer to node 4 answered in {transfer_ms} ms");

    // A clean stop of the leader hands over first: the next write succeeds
    // well within an election timeout (500 ms .. 1 s here).
    assert_eq!(
        n4.status().role,
        RoleKind::Leader,
        "node 4 leads before its stop"
    );
    let started = Instant::now();
    n4.shutdown().await;
    let stop_ms = started.elapsed().as_millis();
    let started = Instant::now();
    total = propose_retrying(&n2, 1).await;
    let gap_ms = started.elapsed().as_millis();
    assert_eq!(total, 467);
    println!("clean stop of the leader took {stop_ms} ms; next write answered after {gap_ms} ms");
    assert!(
        gap_ms < 500,
        "the write after a clean leader stop waited {gap_ms} ms: an election timeout was paid"
    );
    n2.shutdown().await;
    n3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_stops_and_refuses_to_start_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addrs = free_addrs(3);
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|i| (NodeId(i), addrs[i as usize - 1]))
        .collect();
    let nodes: Vec<Node> = futures_start(&peers, dir.path()).await;
    propose_retrying(&nodes[0], 5).await;
    nodes[0]
        .remove_member(NodeId(3), false)
        .await
        .expect("removed");
    // Node 3 learns it was removed and stops.
    let stopped = tokio::time::timeout(Duration::from_secs(30), nodes[2].wait())
        .await
        .expect("node 3 stops");
    assert!(
        matches!(&stopped, Err(e) if e.to_string().contains("removed")),
        "{stopped:?}"
    );
    // It refuses to start on that data directory again.
    let again = Node::start(config(3, &peers, dir.path()), Counter::default()).await;
    let err = again.expect_err("refused");
    assert!(err.to_string().contains("removed"), "{err}");
    // The two left go on (a quorum of two voters).
    assert_eq!(propose_retrying(&nodes[1], 1).await, 6);
    nodes[0].shutdown().await;
    nodes[1].shutdown().await;
}

async fn futures_start(peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in peers.keys() {
        nodes.push(
            Node::start(config(id.0, peers, dir), Counter::default())
                .await
                .expect("starts"),
        );
    }
    nodes
}

/// A voter that was down while every other member it knew was replaced
/// comes back and votes again: the new members link to it although it does
/// not know them (the transport's stranger links), it learns from their
/// leader how far the log is chosen, catches up from it, and so learns the
/// membership that admits them (simulator seeds 80916, 2095 and 6116 found
/// the gap; this is the same path over real sockets and disks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_away_while_its_peers_were_replaced_comes_back_and_votes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addrs = free_addrs(5);
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|i| (NodeId(i), addrs[i as usize - 1]))
        .collect();
    let mut nodes = futures_start(&peers, dir.path()).await;
    let mut total = 0;
    for k in 1..=5 {
        total = propose_retrying(&nodes[1], k).await;
    }
    assert_eq!(total, 15);
    // Node 1 goes away, with its data.
    let n1 = nodes.remove(0);
    n1.shutdown().await;
    drop(n1);
    // 4 and 5 join as voters (through the leader); 2 and 3 are removed:
    // the members are 1, 4, 5.
    let deadline = Instant::now() + Duration::from_secs(30);
    let via = loop {
        match leader_of(&[&nodes[0], &nodes[1]]) {
            Some(NodeId(2)) => break 0,
            Some(_) => break 1,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("no leader among 2 and 3"),
        }
    };
    let n4 = join(&nodes[via], 4, addrs[3], dir.path(), false).await;
    wait_for(&nodes[via], "node 4 to vote", |s| {
        s.members.contains(&NodeId(4))
    })
    .await;
    let n5 = join(&nodes[via], 5, addrs[4], dir.path(), false).await;
    for node in [&n4, &n5] {
        wait_for(node, "node 5 to vote", |s| s.members.contains(&NodeId(5))).await;
    }
    for gone in [2, 3] {
        // Each change waits for the one before it; removing the leader
        // costs an election, and an answer may be lost with it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = n4.remove_member(NodeId(gone), false).await;
            let status = n4.status();
            if result.is_ok() || !status.members.contains(&NodeId(gone)) {
                break;
            }
            assert!(Instant::now() < deadline, "removing {gone}: {result:?}");
            match result {
                Err(MemberError::Refused(_) | MemberError::Timeout(_) | MemberError::Lost(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("removing {gone}: {other:?}"),
            }
        }
    }
    for node in [&n4, &n5] {
        wait_for(node, "members 1, 4 and 5", |s| {
            s.members == vec![NodeId(1), NodeId(4), NodeId(5)]
        })
        .await;
        // A removal answers once it is chosen, and takes effect a window of
        // instances later: until then a quorum still needs the removed
        // nodes, so they stop only once it is in force (under load, CI
        // once stopped them first and 4 and 5 alone could choose nothing).
        in_force(node).await;
    }
    for node in nodes.drain(..) {
        node.shutdown().await;
    }
    for k in 6..=10 {
        total = propose_retrying(&n4, k).await;
    }
    assert_eq!(total, 55);
    // Node 1 comes back knowing only 2 and 3, both gone.
    let n1 = Node::start(config(1, &peers, dir.path()), Counter::default())
        .await
        .expect("n1 restarts");
    wait_for(&n1, "node 1 to learn the members", |s| {
        s.members == vec![NodeId(1), NodeId(4), NodeId(5)]
    })
    .await;
    // Without node 5, a write needs node 1's vote.
    n5.shutdown().await;
    drop(n5);
    total = propose_retrying(&n4, 100).await;
    assert_eq!(total, 155);
    wait_for(&n1, "node 1 to apply the last write", |s| {
        s.applied_end >= n4.status().applied_end
    })
    .await;
    let read = n1.read(Bytes::new()).await.expect("read on 1");
    assert_eq!(value_of(&read), 155);
    n4.shutdown().await;
    n1.shutdown().await;
}

fn config(id: u32, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> NodeConfig {
    common::config(id, peers, dir, Duration::from_secs(10))
}
