//! The state machine's snapshot is encoded, and its big reads answered, off
//! the event loop (issue 13): while either is stuck, the node keeps
//! applying and answering.
//!
//! No wall clock decides the outcome: the encoding blocks on a gate that the
//! test opens only after the node has answered requests made while it was
//! blocked. On a runtime that encodes on its event loop the loop itself is
//! stuck at the gate and those requests are never answered (the test then
//! fails at its generous timeout instead of hanging).

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod::{
    ApplyContext, Node, NodeConfig, NodeId, QueryJob, RequestError, SnapshotJob, SnapshotPolicy,
    StateMachine,
};

/// Waits for the test to open it; tells the test when someone waits.
#[derive(Clone)]
struct Gate {
    entered: mpsc::SyncSender<()>,
    open: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Gate {
    fn pass(&self) {
        let _ = self.entered.try_send(());
        if let Ok(open) = self.open.lock() {
            // The test sends once per snapshot it lets through; a closed
            // channel (the test ended) lets everything through.
            let _ = open.recv();
        }
    }
}

/// A counter whose snapshot encoding, on either path, waits at the gate.
struct Gated {
    value: i64,
    gate: Option<Gate>,
}

fn encode(value: i64) -> Bytes {
    Bytes::copy_from_slice(&value.to_le_bytes())
}

impl StateMachine for Gated {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.value += command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        encode(self.value)
    }

    /// A query `b"slow"` waits at the gate (on the old path: on the loop).
    fn query(&self, query: &[u8], _ctx: &ApplyContext) -> Bytes {
        if query == b"slow" {
            if let Some(gate) = &self.gate {
                gate.pass();
            }
        }
        encode(self.value)
    }

    /// `b"slow"` is answered off the loop, from the value now.
    fn query_view(&self, query: &[u8], _ctx: &ApplyContext) -> Option<QueryJob> {
        if query != b"slow" {
            return None;
        }
        let value = self.value;
        let gate = self.gate.clone();
        Some(Box::new(move || {
            if let Some(gate) = gate {
                gate.pass();
            }
            encode(value)
        }))
    }

    /// The old path: the runtime calling this on its loop blocks the loop.
    fn snapshot(&self) -> Bytes {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        encode(self.value)
    }

    /// The view is the value now; the job waits at the gate, then encodes
    /// the view (not the state at the time it runs).
    fn snapshot_view(&self) -> Option<SnapshotJob> {
        let value = self.value;
        let gate = self.gate.clone();
        Some(Box::new(move || {
            if let Some(gate) = gate {
                gate.pass();
            }
            encode(value)
        }))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
        self.value = i64::from_le_bytes(bytes);
        Ok(())
    }
}

fn free_addr() -> SocketAddr {
    crate::common::free_addrs(1)[0]
}

fn one_node(dir: &std::path::Path, addr: SocketAddr, snapshot_every: u64) -> NodeConfig {
    let peers: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), addr)].into_iter().collect();
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.request_timeout = Duration::from_secs(60);
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.snapshot_policy = SnapshotPolicy {
        instances: snapshot_every,
        log_bytes: 0,
        ..Default::default()
    };
    cfg
}

async fn add(node: &Node, delta: i64) -> i64 {
    for _ in 0..20 {
        match node.propose(encode(delta)).await {
            Ok(out) => return i64::from_le_bytes(out[..8].try_into().expect("8 bytes")),
            Err(RequestError::Timeout(_)) => continue,
            Err(err) => panic!("propose failed: {err}"),
        }
    }
    panic!("no answer after 20 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_while_its_snapshot_is_being_encoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (entered_tx, entered_rx) = mpsc::sync_channel(16);
    let (open_tx, open_rx) = mpsc::channel();
    let gate = Gate {
        entered: entered_tx,
        open: Arc::new(Mutex::new(open_rx)),
    };
    let addr = free_addr();
    let node = Node::start(
        one_node(dir.path(), addr, 4),
        Gated {
            value: 0,
            gate: Some(gate),
        },
    )
    .await
    .expect("node starts");
    // Enough applied instances to want a snapshot.
    let mut expected = 0;
    for _ in 0..4 {
        expected = add(&node, 1).await;
    }
    // Wait (off the runtime's threads) until an encoding is stuck at the gate.
    let entered = tokio::task::spawn_blocking(move || {
        let got = entered_rx.recv_timeout(Duration::from_secs(60));
        (got, entered_rx)
    })
    .await
    .expect("joins");
    let (got, _entered_rx) = entered;
    got.expect("a snapshot encoding started");
    let view_value = expected;

    // The loop is free: writes and reads are answered meanwhile.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut last = 0;
        for _ in 0..10 {
            last = add(&node, 1).await;
        }
        let read = node.read(Bytes::new()).await.expect("read");
        (
            last,
            i64::from_le_bytes(read[..8].try_into().expect("8 bytes")),
        )
    })
    .await
    .expect("the node answered while its snapshot was being encoded");
    assert_eq!(answered, (view_value + 10, view_value + 10));
    assert_eq!(
        node.status().snapshot_end.0,
        0,
        "the checkpoint cannot finish before its encoding"
    );

    // Let the encodings through; the checkpoint completes.
    for _ in 0..64 {
        let _ = open_tx.send(());
    }
    let mut status = node.watch_status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.snapshot_end.0 >= 4),
    )
    .await
    .expect("checkpoint in time")
    .expect("node alive");
    node.shutdown().await;
    drop(open_tx);

    // A restart restores the encoded view (the value at its point) and
    // replays the rest: every write counted once.
    let node = Node::start(
        one_node(dir.path(), addr, 0),
        Gated {
            value: 0,
            gate: None,
        },
    )
    .await
    .expect("node restarts");
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match node.read(Bytes::new()).await {
                Ok(read) => return read,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("read after restart");
    assert_eq!(
        i64::from_le_bytes(read[..8].try_into().expect("8 bytes")),
        view_value + 10
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_while_a_big_read_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (entered_tx, entered_rx) = mpsc::sync_channel(16);
    let (open_tx, open_rx) = mpsc::channel();
    let gate = Gate {
        entered: entered_tx,
        open: Arc::new(Mutex::new(open_rx)),
    };
    let node = Arc::new(
        Node::start(
            one_node(dir.path(), free_addr(), 0),
            Gated {
                value: 0,
                gate: Some(gate),
            },
        )
        .await
        .expect("node starts"),
    );
    assert_eq!(add(&node, 5).await, 5);
    let slow = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.read(Bytes::from_static(b"slow")).await })
    };
    let (got, _entered_rx) = tokio::task::spawn_blocking(move || {
        let got = entered_rx.recv_timeout(Duration::from_secs(60));
        (got, entered_rx)
    })
    .await
    .expect("joins");
    got.expect("the slow read started");
    // The loop is free while the read is stuck.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut last = 0;
        for _ in 0..10 {
            last = add(&node, 1).await;
        }
        last
    })
    .await
    .expect("the node answered while a big read was being answered");
    assert_eq!(answered, 15);
    let _ = open_tx.send(());
    let read = tokio::time::timeout(Duration::from_secs(60), slow)
        .await
        .expect("the slow read is answered")
        .expect("joins")
        .expect("read");
    // The read's answer is the state at its point, before the writes.
    assert_eq!(
        i64::from_le_bytes(read[..8].try_into().expect("8 bytes")),
        5
    );
    drop(open_tx);
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
}
