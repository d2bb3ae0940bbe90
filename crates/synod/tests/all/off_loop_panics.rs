//! A job the runtime runs off its event loop that panics (a bug in the
//! state machine's snapshot encoder or view read) is reported, never a
//! silent wait (review of issue 13, D10): a failed snapshot stops the node
//! as a storage failure does; a failed read answers its client an error.
//! (Before, the panicking job never reported: the read's client saw its
//! request dropped, and the checkpoint stayed busy forever, so no snapshot
//! was taken again and the log grew without bound, with no error.)

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use synod::{
    ApplyContext, Node, NodeConfig, NodeId, QueryJob, RequestError, SnapshotJob, SnapshotPolicy,
    StateMachine,
};

/// Counts applied commands; its off-loop jobs panic.
struct Panicky(u64);

impl StateMachine for Panicky {
    fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.0 += 1;
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn query_view(&self, query: &[u8], _ctx: &ApplyContext) -> Option<QueryJob> {
        fn bug() -> Bytes {
            panic!("a bug in a view read")
        }
        (query == b"boom").then(|| Box::new(bug) as QueryJob)
    }
    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn snapshot_view(&self) -> Option<SnapshotJob> {
        fn bug() -> Bytes {
            panic!("a bug in the snapshot encoder")
        }
        Some(Box::new(bug))
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

async fn one_node(dir: &std::path::Path, snapshot_every: u64) -> Node {
    let addr: SocketAddr = crate::common::free_addrs(1)[0];
    let peers: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), addr)].into_iter().collect();
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.request_timeout = Duration::from_secs(20);
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.snapshot_policy = SnapshotPolicy {
        instances: snapshot_every,
        log_bytes: 0,
        ..Default::default()
    };
    Node::start(cfg, Panicky(0)).await.expect("node starts")
}

async fn propose(node: &Node) -> Result<Bytes, RequestError> {
    for _ in 0..20 {
        match node.propose(Bytes::from_static(b"x")).await {
            Err(RequestError::Timeout(_)) => continue,
            other => return other,
        }
    }
    panic!("no answer after 20 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_view_read_answers_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = one_node(dir.path(), 1_000_000).await;
    propose(&node).await.expect("a write");
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        node.read(Bytes::from_static(b"boom")),
    )
    .await
    .expect("answered");
    assert!(matches!(read, Err(RequestError::ReadFailed(_))), "{read:?}");
    // The node goes on.
    assert!(node.read(Bytes::from_static(b"fine")).await.is_ok());
    assert!(propose(&node).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_snapshot_job_stops_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = one_node(dir.path(), 2).await;
    for _ in 0..3 {
        if propose(&node).await.is_err() {
            break;
        }
    }
    for _ in 0..200 {
        if node.status().fatal {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the node went on with a snapshot that can never finish: {:?}",
        node.status()
    );
}
