//! Fail fast, visibly (issue 13, item 7): after a fatal error the library
//! says the node stopped, with the reason and `fatal: true`, and every
//! request fails at once. Before, a failed snapshot write left the driver
//! waiting forever for a report that never came: `stopped: None`, requests
//! hanging, `shutdown` hanging.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use synod::{ApplyContext, Node, NodeConfig, NodeId, RequestError, SnapshotPolicy, StateMachine};
use synod_storage::SimFs;

/// Counts commands; its snapshot is large (so that writing it is what
/// fills the disk) and a command `panic` panics.
#[derive(Default)]
struct Big {
    commands: u64,
}

const SNAPSHOT_BYTES: usize = 1 << 20;

impl StateMachine for Big {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        if command == b"panic" {
            panic!("the state machine was told to panic");
        }
        self.commands += 1;
        Bytes::copy_from_slice(&self.commands.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.commands.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        let mut out = self.commands.to_le_bytes().to_vec();
        out.resize(SNAPSHOT_BYTES, 0xab);
        Bytes::from(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes = snapshot.get(0..8).ok_or("short snapshot")?;
        self.commands = u64::from_le_bytes(bytes.try_into().map_err(|_| "short snapshot")?);
        Ok(())
    }
}

fn single(dir: &std::path::Path, fs: &SimFs) -> NodeConfig {
    let addr: SocketAddr = crate::common::free_addrs(1)[0];
    let peers = BTreeMap::from([(NodeId(1), addr)]);
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.snapshot_policy = SnapshotPolicy {
        instances: 3,
        log_bytes: 64 << 20,
        ..Default::default()
    };
    cfg.storage_fs = Some(Arc::new(fs.clone()));
    cfg
}

/// Waits (bounded) until the node's status says it stopped.
async fn stopped_status(node: &Node) -> synod::NodeStatus {
    let mut status = node.watch_status();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.stopped.is_some()),
    )
    .await
    .expect("the status says stopped within 10 s (a zombie node never does)")
    .expect("the status channel stays open")
    .clone();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_snapshot_stops_the_node_visibly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SimFs::new();
    let node = Node::start(single(dir.path(), &fs), Big::default())
        .await
        .expect("starts");
    node.propose(Bytes::from_static(b"one"))
        .await
        .expect("a lone node chooses");
    // Room for the log (its segment is allocated ahead), not for a 1 MiB
    // snapshot.
    fs.set_space_bytes_max(Some(fs.used_bytes() + (256 << 10)));
    let mut failed = None;
    for k in 0..20u32 {
        let command = Bytes::from(format!("command {k}"));
        match tokio::time::timeout(Duration::from_secs(10), node.propose(command)).await {
            Ok(Ok(_)) => continue,
            Ok(Err(err)) => {
                failed = Some(err);
                break;
            }
            Err(_) => panic!("a request hung after the disk filled"),
        }
    }
    let err = failed.expect("a request fails once the snapshot cannot be written");
    assert!(matches!(err, RequestError::Stopped(_)), "{err:?}");
    let status = stopped_status(&node).await;
    assert!(status.fatal, "{status:?}");
    let reason = status.stopped.unwrap_or_default();
    assert!(reason.contains("storage"), "{reason}");
    assert!(reason.contains("restart"), "says what to do: {reason}");
    // Every later request fails at once, and `wait` reports the error.
    let later = tokio::time::timeout(Duration::from_secs(2), node.read(Bytes::new()))
        .await
        .expect("a read after the stop fails promptly");
    assert!(matches!(later, Err(RequestError::Stopped(_))), "{later:?}");
    let waited = tokio::time::timeout(Duration::from_secs(2), node.wait())
        .await
        .expect("wait returns");
    assert!(waited.is_err());
    tokio::time::timeout(Duration::from_secs(2), node.shutdown())
        .await
        .expect("shutdown of a stopped node returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_state_machine_stops_the_node_visibly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SimFs::new();
    let node = Node::start(single(dir.path(), &fs), Big::default())
        .await
        .expect("starts");
    node.propose(Bytes::from_static(b"one"))
        .await
        .expect("a lone node chooses");
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        node.propose(Bytes::from_static(b"panic")),
    )
    .await
    .expect("the panicking request fails promptly");
    assert!(
        matches!(answer, Err(RequestError::Stopped(_))),
        "{answer:?}"
    );
    let status = stopped_status(&node).await;
    assert!(status.fatal, "{status:?}");
    let reason = status.stopped.unwrap_or_default();
    assert!(reason.contains("told to panic"), "{reason}");
    let later = tokio::time::timeout(Duration::from_secs(2), node.propose(Bytes::new()))
        .await
        .expect("a request after the stop fails promptly");
    assert!(matches!(later, Err(RequestError::Stopped(_))), "{later:?}");
}
