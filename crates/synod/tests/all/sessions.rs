//! Client sessions on a real 3-node cluster (WAL on disk, TCP on loopback):
//! a command proposed through node A whose answer is lost, retried with the
//! same sequence number through node B, after a "restart" of the proposer
//! (a fresh handle from the persisted id) and after a restart of a node,
//! takes effect exactly once; old, unknown and expired sessions are
//! refused with clear errors.

use crate::common;
use crate::common::free_peers;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use synod::{ApplyContext, Node, NodeConfig, NodeId, RequestError, SessionId, StateMachine};

/// Sums the commands' bytes read as i64 and counts the commands applied.
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
        Bytes::copy_from_slice(&self.applied.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        let mut out = self.value.to_le_bytes().to_vec();
        out.extend_from_slice(&self.applied.to_le_bytes());
        Bytes::from(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 16] = snapshot.try_into().map_err(|_| "not 16 bytes")?;
        let (value, applied) = bytes.split_at(8);
        self.value = i64::from_le_bytes(value.try_into().map_err(|_| "value")?);
        self.applied = u64::from_le_bytes(applied.try_into().map_err(|_| "applied")?);
        Ok(())
    }
}

fn add(n: i64) -> Bytes {
    Bytes::copy_from_slice(&n.to_le_bytes())
}

async fn start(cfg: NodeConfig) -> Node {
    Node::start(cfg, Counter::default()).await.expect("starts")
}

async fn ready(node: &Node) {
    tokio::time::timeout(Duration::from_secs(30), node.ready())
        .await
        .expect("ready in time")
        .expect("ready");
}

/// Commands the node's state machine applied (a linearizable read).
async fn applied(node: &Node) -> u64 {
    let out = node.read(Bytes::new()).await.expect("reads");
    u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_node_applies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(config(id, &peers, dir.path())).await);
    }
    for node in &nodes {
        ready(node).await;
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let session = a.session().await.expect("a session");
    let id = SessionId::from_bytes(&session.id().to_bytes()).expect("persisted id");
    assert_eq!(session.next_seq(), 1);
    drop(session);

    // Through A: applied, but its answer is "lost" (we ignore it).
    let first = a
        .resume_session(id, 1)
        .propose(add(5))
        .await
        .expect("applied");
    // The same seq through B: not applied again, answered with A's output.
    let mut via_b = b.resume_session(id, 1);
    assert_eq!(via_b.propose(add(5)).await, Ok(first.clone()));
    assert_eq!(via_b.next_seq(), 2);
    // A "restarted" proposer resumes from the persisted id through C.
    assert_eq!(
        c.resume_session(id, 1).propose(add(5)).await,
        Ok(first.clone())
    );
    for node in &nodes {
        assert_eq!(applied(node).await, 1, "applied once on every replica");
    }

    // The next seq applies; the first one is now too old, never re-applied.
    assert_eq!(via_b.propose(add(2)).await, Ok(add(7)));
    assert_eq!(
        via_b.retry(1, add(5)).await,
        Err(RequestError::SessionSeqTooOld { seq: 1, last: 2 })
    );
    assert_eq!(applied(c).await, 2);

    // A node restart replays the session table from its log.
    a.shutdown().await;
    let a = start(config(1, &peers, dir.path())).await;
    ready(&a).await;
    assert_eq!(a.resume_session(id, 2).propose(add(2)).await, Ok(add(7)));
    assert_eq!(applied(&a).await, 2);

    // An id this cluster never gave out is refused.
    let stranger = SessionId::from_bytes(&[9u8; 16]).expect("16 bytes");
    assert_eq!(
        a.resume_session(stranger, 1).propose(add(1)).await,
        Err(RequestError::SessionUnknown(stranger))
    );
    assert_eq!(applied(&a).await, 2);
    a.shutdown().await;
    for node in &nodes[1..] {
        node.shutdown().await;
    }
}

/// A session unused for its TTL of log time is dropped everywhere; its next
/// command is refused with `SessionExpired` and not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_session_expires_by_log_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut cfg = config(id, &peers, dir.path());
        cfg.session_ttl = Duration::from_millis(300);
        nodes.push(start(cfg).await);
    }
    for node in &nodes {
        ready(node).await;
    }
    let mut session = nodes[1].session().await.expect("a session");
    assert_eq!(session.propose(add(1)).await, Ok(add(1)));
    // Log time moves with the stamps of what is applied: wait, then propose.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let id = session.id();
    assert_eq!(
        session.propose(add(1)).await,
        Err(RequestError::SessionExpired(id))
    );
    assert_eq!(
        nodes[2].resume_session(id, 1).propose(add(1)).await,
        Err(RequestError::SessionExpired(id)),
        "the same on every node, for any seq"
    );
    assert_eq!(applied(&nodes[0]).await, 1);
    for node in &nodes {
        node.shutdown().await;
    }
}

fn config(id: u32, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> NodeConfig {
    common::config(id, peers, dir, Duration::from_secs(10))
}
