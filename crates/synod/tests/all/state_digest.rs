//! The state digest watch end to end: real nodes whose state machine reaches
//! different states from the same commands are reported as diverged, and
//! nodes whose states agree are not.

use crate::common::free_peers;
use bytes::Bytes;
use std::time::Duration;
use synod::{ApplyContext, Node, NodeConfig, NodeId, RequestError, StateMachine};

/// Counts commands; its digest is the count, plus `skew` (a stand-in for a
/// state machine that reads its local clock or another node-local input).
struct Tally {
    count: u64,
    skew: u64,
}

impl StateMachine for Tally {
    fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.count += 1;
        Bytes::copy_from_slice(&self.count.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.count.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.count.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
        self.count = u64::from_le_bytes(bytes);
        Ok(())
    }

    fn digest(&self) -> Option<u64> {
        Some(self.count + self.skew)
    }
}

/// Starts three nodes whose digests are skewed by `skews`, writes a few
/// commands, and returns the nodes (and their data directories).
async fn run(skews: [u64; 3]) -> (tempfile::TempDir, Vec<Node>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for (k, skew) in skews.into_iter().enumerate() {
        let id = NodeId(k as u32 + 1);
        let mut cfg = NodeConfig::new(id, peers.clone(), dir.path().join(format!("n{}", id.0)))
            .expect("member");
        cfg.bootstrap = synod::Bootstrap::New;
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        let machine = Tally { count: 0, skew };
        nodes.push(Node::start(cfg, machine).await.expect("starts"));
    }
    'commands: for _ in 0..5 {
        for _ in 0..20 {
            match nodes[0].propose(Bytes::from_static(b"+1")).await {
                Ok(_) => break,
                Err(RequestError::Timeout(_)) => continue,
                // The skewed run can be caught before its last command:
                // a diverged node refuses clients, which is the point.
                Err(RequestError::Diverged) if skews.iter().any(|s| *s != 0) => break 'commands,
                Err(err) => panic!("propose failed: {err}"),
            }
        }
    }
    (dir, nodes)
}

async fn any_diverged(nodes: &[Node], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if nodes.iter().any(|n| n.status().diverged) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_that_is_not_deterministic_is_caught() {
    let (_dir, nodes) = run([0, 0, 1]).await;
    assert!(
        any_diverged(&nodes, Duration::from_secs(10)).await,
        "node 3 reached another state from the same log"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_states_are_not_reported() {
    let (_dir, nodes) = run([0, 0, 0]).await;
    assert!(!any_diverged(&nodes, Duration::from_secs(1)).await);
    for node in nodes {
        node.shutdown().await;
    }
}
