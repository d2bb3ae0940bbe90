//! What the cluster tests share: free loopback addresses for a new cluster
//! and a member's configuration on them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use synod::{Node, NodeConfig, NodeId, RequestError};

#[path = "../../../../test-support/free_ports.rs"]
mod free_ports;
pub use free_ports::{free_addrs, free_port_block};

/// `n` loopback addresses free at the time of the call, as node ids 1..=n,
/// from below the ephemeral range (see [`free_addrs`]): a port from
/// `bind(0)`, released, could be taken by a client's connection before a
/// node (or a node restarting) binds it.
pub fn free_peers(n: u32) -> BTreeMap<NodeId, SocketAddr> {
    free_addrs(n as usize)
        .into_iter()
        .enumerate()
        .map(|(i, addr)| (NodeId(i as u32 + 1), addr))
        .collect()
}

/// Node `id` of a brand-new cluster of `peers` on insecure loopback links,
/// its data in `dir/n{id}`. `Bootstrap::New` is ignored on restarts (these
/// directories are never wiped, so the flag cannot make a node vote with
/// amnesia).
pub fn config(
    id: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
    request_timeout: Duration,
) -> NodeConfig {
    let mut cfg =
        NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("n{id}"))).expect("member");
    cfg.request_timeout = request_timeout;
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg
}

/// [`config`] for a test of snapshots: a snapshot every 10 instances, and
/// at most 16 messages queued for a stopped peer, so that a node that was
/// away finds none of the accepts it missed and catches up by snapshot.
pub fn snapshotting_config(
    id: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
) -> NodeConfig {
    let mut cfg = config(id, peers, dir, Duration::from_secs(10));
    cfg.snapshot_policy = synod::SnapshotPolicy {
        instances: 10,
        log_bytes: 0,
        ..Default::default()
    };
    cfg.peer_send_queue_max = 16;
    cfg
}

/// Proposes `command` until it is answered, retrying timeouts (an election
/// may be under way) and refusals while the node loads a peer's snapshot
/// (for up to 30 s); any other error fails the test.
pub async fn propose_retrying(node: &Node, command: Bytes) -> Bytes {
    let mut timeouts = 0;
    let loading_until = std::time::Instant::now() + Duration::from_secs(30);
    while timeouts < 20 {
        match node.propose(command.clone()).await {
            Ok(output) => return output,
            Err(RequestError::Timeout(_)) => timeouts += 1,
            Err(RequestError::Loading) if std::time::Instant::now() < loading_until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("propose failed: {err}"),
        }
    }
    panic!("no answer after 20 attempts");
}

/// Reads `query` on `node`, retrying while the node refuses it because it
/// loads a peer's snapshot (up to 30 s); any other error fails the test.
/// Also returns how many times it was refused.
pub async fn read_once_loaded(node: &Node, query: Bytes) -> (Bytes, u32) {
    let mut refused = 0;
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match node.read(query.clone()).await {
            Ok(output) => return (output, refused),
            Err(RequestError::Loading) if std::time::Instant::now() < until => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("read failed: {err}"),
        }
    }
}

/// Waits (up to a minute) until `node` applied everything `from` applied.
pub async fn catch_up(node: &Node, from: &Node, what: &str) {
    let target = from.status().applied_end.0;
    let mut status = node.watch_status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.applied_end.0 >= target),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"))
    .expect("the node is alive");
}
