//! The size bound on replicated commands (issue 12, item 2), on real nodes:
//! WAL on disk, TCP on loopback.

use crate::common;
use crate::common::free_peers;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use synod::{ApplyContext, Node, NodeConfig, NodeError, NodeId, RequestError, StateMachine};

/// Counts the commands it applied and their bytes.
#[derive(Default)]
struct Tally {
    commands: u64,
    bytes: u64,
}

impl StateMachine for Tally {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.commands += 1;
        self.bytes += command.len() as u64;
        Bytes::copy_from_slice(&self.commands.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.commands.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        let mut out = self.commands.to_le_bytes().to_vec();
        out.extend_from_slice(&self.bytes.to_le_bytes());
        Bytes::from(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let field = |range: std::ops::Range<usize>| {
            snapshot
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| format!("bad snapshot of {} bytes", snapshot.len()))
        };
        self.commands = field(0..8)?;
        self.bytes = field(8..16)?;
        Ok(())
    }
}

/// Proposes until a leader answers.
async fn propose_retrying(node: &Node, command: Bytes) -> Result<Bytes, RequestError> {
    for _ in 0..10 {
        match node.propose(command.clone()).await {
            Err(RequestError::Timeout(_)) => continue,
            other => return other,
        }
    }
    panic!("no answer after 10 attempts");
}

/// The reproduction: a 65 MiB command, then a small one, on a
/// three-node cluster. Before, both timed out and every node stayed at the
/// same chosen point forever (the Accept exceeded the 64 MiB frame and was
/// dropped; the small command waited behind it). Now the big one is refused
/// at once with a typed error and the small one is chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_is_refused_and_the_cluster_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let node = Node::start(config(id, &peers, dir.path()), Tally::default())
            .await
            .expect("starts");
        nodes.push(node);
    }
    propose_retrying(&nodes[0], Bytes::from_static(b"warm-up"))
        .await
        .expect("a leader is elected");
    let max = nodes[0].command_bytes_max();
    assert!(max >= 16 << 20, "the default fits a 16 MiB value: {max}");
    let started = Instant::now();
    let big = Bytes::from(vec![7u8; 65 << 20]);
    for node in &nodes {
        let refused = node.propose(big.clone()).await;
        assert_eq!(
            refused,
            Err(RequestError::TooLarge {
                bytes: 65 << 20,
                max
            })
        );
        let text = refused.unwrap_err().to_string();
        assert!(text.contains("maximum replicated size"), "{text}");
    }
    // The largest command accepted goes through, and so does a small one.
    let output = propose_retrying(&nodes[1], Bytes::from(vec![1u8; max]))
        .await
        .expect("the largest command is chosen");
    assert_eq!(output, Bytes::copy_from_slice(&2u64.to_le_bytes()));
    let output = propose_retrying(&nodes[2], Bytes::from_static(b"small"))
        .await
        .expect("a small command after it is chosen");
    assert_eq!(output, Bytes::copy_from_slice(&3u64.to_le_bytes()));
    assert!(started.elapsed() < Duration::from_secs(90));
    for node in &nodes {
        node.shutdown().await;
    }
}

/// A limit that would let a message exceed the peer frame is refused at
/// start-up, with a message that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_limit_above_the_frame_limit_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(1);
    let mut cfg = config(1, &peers, dir.path());
    cfg.value_bytes_max = 64 << 20;
    let refused = Node::start(cfg, Tally::default()).await;
    match refused {
        Err(NodeError::Config(why)) => assert!(why.contains("frame limit"), "{why}"),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a 64 MiB value limit cannot fit in 64 MiB frames"),
    }
}

fn config(id: u32, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> NodeConfig {
    // Generous: a retry after a timeout is a new command (applied again),
    // and the outputs below count commands; a loaded CI machine needed more
    // than 5 s for a 32 MiB command on three nodes.
    common::config(id, peers, dir, Duration::from_secs(30))
}
