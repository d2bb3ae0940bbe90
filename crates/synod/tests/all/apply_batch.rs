//! `StateMachine::apply_batch` (issue 17): the runtime hands an instance's
//! commands over together, outputs go back to the right proposers, and a
//! state machine that answers a batch with the wrong number of outputs
//! stops the node visibly.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synod::{ApplyContext, BatchCommand, Node, NodeConfig, NodeId, RequestError, StateMachine};

/// Appends each command to a list; the output is the command and its
/// position. `apply_batch` is its own, and counts the largest batch.
struct Log {
    entries: Vec<Bytes>,
    largest_batch: Arc<AtomicUsize>,
    /// Answers every batch with no output (a broken state machine).
    broken: bool,
}

impl Log {
    fn output(&self, command: &[u8]) -> Bytes {
        Bytes::from(format!(
            "{}@{}",
            String::from_utf8_lossy(command),
            self.entries.len()
        ))
    }
}

impl StateMachine for Log {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.entries.push(Bytes::copy_from_slice(command));
        self.output(command)
    }

    fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
        self.largest_batch.fetch_max(batch.len(), Ordering::Relaxed);
        if self.broken {
            return Vec::new();
        }
        batch
            .iter()
            .map(|one| {
                self.entries.push(Bytes::copy_from_slice(one.command));
                self.output(one.command)
            })
            .collect()
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::from(self.entries.len().to_string())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.entries.len().to_string())
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), String> {
        Err("not used".into())
    }
}

fn lone(dir: &std::path::Path) -> NodeConfig {
    let addr: SocketAddr = crate::common::free_addrs(1)[0];
    let peers = BTreeMap::from([(NodeId(1), addr)]);
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.request_timeout = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_applied_in_batches_and_answered_rightly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let largest_batch = Arc::new(AtomicUsize::new(0));
    let machine = Log {
        entries: Vec::new(),
        largest_batch: Arc::clone(&largest_batch),
        broken: false,
    };
    let node = Arc::new(
        Node::start(lone(dir.path()), machine)
            .await
            .expect("starts"),
    );
    let mut outputs = Vec::new();
    for round in 0..4 {
        let tasks: Vec<_> = (0..32)
            .map(|k| {
                let node = Arc::clone(&node);
                tokio::spawn(async move {
                    let command = format!("c{round}.{k}");
                    let output = node.propose(Bytes::from(command.clone())).await;
                    (command, output)
                })
            })
            .collect();
        for task in tasks {
            outputs.push(task.await.expect("joins"));
        }
    }
    // Each proposer got its own command's output, and the positions are
    // 1..=128 once each: no output went to another proposer.
    let mut positions = Vec::new();
    for (command, output) in outputs {
        let output = output.expect("chosen");
        let text = String::from_utf8_lossy(&output).into_owned();
        let (echoed, position) = text.split_once('@').expect("command@position");
        assert_eq!(echoed, command);
        positions.push(position.parse::<usize>().expect("a number"));
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=128).collect::<Vec<_>>());
    assert!(
        largest_batch.load(Ordering::Relaxed) > 1,
        "32 concurrent proposals were never applied as one batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_with_the_wrong_number_of_outputs_stops_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let machine = Log {
        entries: Vec::new(),
        largest_batch: Arc::new(AtomicUsize::new(0)),
        broken: true,
    };
    let node = Node::start(lone(dir.path()), machine)
        .await
        .expect("starts");
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        node.propose(Bytes::from_static(b"one")),
    )
    .await
    .expect("the request fails promptly");
    assert!(
        matches!(answer, Err(RequestError::Stopped(_))),
        "{answer:?}"
    );
    let mut status = node.watch_status();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.stopped.is_some()),
    )
    .await
    .expect("the status says stopped")
    .expect("the status channel stays open")
    .clone();
    assert!(stopped.fatal, "{stopped:?}");
    let reason = stopped.stopped.unwrap_or_default();
    assert!(
        reason.contains("apply_batch returned 0 outputs for 1 commands"),
        "{reason}"
    );
}
