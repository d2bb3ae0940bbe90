//! `Node::snapshot_now`: a snapshot on demand, answered once durable,
//! whatever the snapshot policy says (what Redis' SAVE needs).

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use synod::{ApplyContext, Node, NodeConfig, NodeId, SnapshotPolicy, StateMachine};

/// A counter.
#[derive(Default)]
struct Counter {
    value: i64,
}

fn encode(value: i64) -> Bytes {
    Bytes::copy_from_slice(&value.to_le_bytes())
}

impl StateMachine for Counter {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.value += command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        encode(self.value)
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        encode(self.value)
    }

    fn snapshot(&self) -> Bytes {
        encode(self.value)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
        self.value = i64::from_le_bytes(bytes);
        Ok(())
    }
}

fn one_node(dir: &std::path::Path, addr: SocketAddr) -> NodeConfig {
    let peers: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), addr)].into_iter().collect();
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.request_timeout = Duration::from_secs(60);
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    // The policy never snapshots: only `snapshot_now` does.
    cfg.snapshot_policy = SnapshotPolicy {
        instances: 0,
        log_bytes: 0,
        ..Default::default()
    };
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_now_answers_once_the_snapshot_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = crate::common::free_addrs(1)[0];
    let node = Node::start(one_node(dir.path(), addr), Counter::default())
        .await
        .expect("node starts");
    for _ in 0..5 {
        node.propose(encode(2)).await.expect("propose");
    }
    let started_ms = node.status().snapshot_unix_ms;
    let applied = node.status().applied_end;
    assert_eq!(node.status().snapshot_end.0, 0, "the policy took none");
    let point = tokio::time::timeout(Duration::from_secs(60), node.snapshot_now())
        .await
        .expect("in time")
        .expect("snapshot");
    assert!(point >= applied, "{point:?} covers {applied:?}");
    let status = node.status();
    assert_eq!(status.snapshot_end, point);
    assert!(!status.snapshot_in_progress);
    assert!(status.snapshot_unix_ms >= started_ms);
    // Nothing applied since: answered at once, at the same point.
    assert_eq!(node.snapshot_now().await.expect("again"), point);
    node.propose(encode(1)).await.expect("propose");
    let later = node.snapshot_now().await.expect("third");
    assert!(later > point);
    node.shutdown().await;

    // The snapshot is what a restart starts from.
    let mut cfg = one_node(dir.path(), addr);
    cfg.bootstrap = synod::Bootstrap::Existing;
    let node = Node::start(cfg, Counter::default())
        .await
        .expect("restarts");
    assert!(node.status().snapshot_end >= later);
    let value = node.read(Bytes::new()).await.expect("read");
    assert_eq!(i64::from_le_bytes(value[..8].try_into().unwrap()), 11);
    node.shutdown().await;
}
