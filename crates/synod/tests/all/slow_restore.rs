//! A restore from a peer's snapshot runs off the event loop (issue 17's
//! "without stalling heartbeats"): a state machine that takes seconds to
//! restore leaves its node voting, accepting and learning meanwhile; what
//! was chosen during the restore is applied after it, and reads wait for it.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::{ApplyContext, Node, StateMachine};

use crate::common::{free_peers, propose_retrying, read_once_loaded, snapshotting_config};

/// A sum whose restore takes `restore_ms`.
struct SlowSum {
    sum: u64,
    restore_ms: Arc<AtomicU64>,
    restores: Arc<AtomicU64>,
}

impl StateMachine for SlowSum {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.sum += command.len() as u64;
        Bytes::from(self.sum.to_string())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::from(self.sum.to_string())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.sum.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        std::thread::sleep(Duration::from_millis(self.restore_ms.load(Relaxed)));
        self.sum = u64::from_le_bytes(snapshot.try_into().map_err(|_| "not 8 bytes")?);
        self.restores.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// Nodes 1 and 2 chose 200 instances and compacted them; node 3 started
/// empty behind them and installed their snapshot, whose restore takes
/// `restore_ms`; it is restoring now.
struct Restoring {
    _dir: tempfile::TempDir,
    a: Node,
    b: Node,
    c: Node,
    restores: Arc<AtomicU64>,
    /// Node 1's leader changes when node 3 started.
    leader_changes: u64,
    /// When node 3 started.
    restoring_from: Instant,
    /// Node 3's applied point after the install.
    installed_at: u64,
    status: tokio::sync::watch::Receiver<synod::NodeStatus>,
}

async fn a_node_restoring(restore_ms: u64, restore_backlog_bytes: Option<u64>) -> Restoring {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let restore_ms_now = Arc::new(AtomicU64::new(0));
    let restores = Arc::new(AtomicU64::new(0));
    let cfg = |id| {
        let mut cfg = snapshotting_config(id, &peers, dir.path());
        if let Some(bytes) = restore_backlog_bytes {
            cfg.restore_backlog_bytes = bytes;
        }
        // Refused from the load's start (the default waits 1 s first).
        cfg.loading_grace = Duration::ZERO;
        cfg
    };
    let start = |id| {
        let machine = SlowSum {
            sum: 0,
            restore_ms: Arc::clone(&restore_ms_now),
            restores: Arc::clone(&restores),
        };
        Node::start(cfg(id), machine)
    };
    let a = start(1).await.expect("node 1 starts");
    let b = start(2).await.expect("node 2 starts");
    for _ in 0..200 {
        propose_retrying(&a, Bytes::from_static(b"x")).await;
    }
    restore_ms_now.store(restore_ms, Relaxed);
    let c = start(3).await.expect("node 3 starts");
    let leader_changes = a.metrics().leader_changes.load(Relaxed);
    let restoring_from = Instant::now();
    // Wait until the install happened (the applied point jumps).
    let mut status = c.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.applied_end.0 >= 150),
    )
    .await
    .expect("node 3 installs a snapshot")
    .expect("alive");
    let installed_at = c.status().applied_end.0;
    Restoring {
        _dir: dir,
        a,
        b,
        c,
        restores,
        leader_changes,
        restoring_from,
        installed_at,
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_restore_leaves_the_node_voting_and_learning() {
    // Node 3's restore takes 3 s, several election timeouts (0.5 to 1 s).
    let Restoring {
        _dir,
        a,
        b,
        c,
        restores,
        leader_changes,
        restoring_from,
        installed_at,
        mut status,
    } = a_node_restoring(3_000, None).await;
    // Write more while node 3 restores: it accepts and learns them (its
    // chosen prefix grows), and applies none before the restore is done.
    for _ in 0..20 {
        propose_retrying(&a, Bytes::from_static(b"yy")).await;
    }
    tokio::time::timeout(
        Duration::from_secs(2),
        status.wait_for(|s| s.chosen_end.0 >= installed_at + 20),
    )
    .await
    .expect("node 3 learns what is chosen while it restores (its event loop runs)")
    .expect("alive");
    assert_eq!(
        restores.load(Relaxed),
        0,
        "learned while the restore ran ({:?} after node 3 started)",
        restoring_from.elapsed()
    );
    assert!(c.status().stopped.is_none());
    // A read on node 3 is refused at once while it restores (its clients
    // can go elsewhere); once restored, it sees everything. A read served
    // before any restore finished would be a read of no state at all.
    let expected = a.read(Bytes::new()).await.expect("read");
    let asked = Instant::now();
    match c.read(Bytes::new()).await {
        Err(synod::RequestError::Loading) => {
            assert!(
                asked.elapsed() < Duration::from_millis(500),
                "refused at once, not after {:?}",
                asked.elapsed()
            );
            assert!(c.metrics().loading_refusals.load(Relaxed) >= 1);
        }
        // Only once a restore finished (a slow machine).
        Ok(_) => assert!(restores.load(Relaxed) >= 1, "served while restoring"),
        Err(e) => panic!("read on node 3: {e}"),
    }
    let (output, _) = read_once_loaded(&c, Bytes::new()).await;
    assert_eq!(output, expected);
    assert!(restores.load(Relaxed) >= 1);
    // One restore, or two when a newer snapshot came during the first.
    assert!((1..=2).contains(&restores.load(Relaxed)));
    let target = a.status().applied_end;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.applied_end >= target),
    )
    .await
    .expect("node 3 applies everything after its restore")
    .expect("alive");
    // Nobody had to elect a new leader for node 3's sake.
    assert_eq!(a.metrics().leader_changes.load(Relaxed), leader_changes);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

/// With `restore_backlog_bytes` 0 a node restoring a peer's snapshot holds
/// nothing chosen meanwhile: it declines the leader's Accepts (counted) and
/// asks no peer for values, the two others choose without it, and once the
/// restore ends it votes again, catches up and applies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restore_backlog_declines_votes_until_the_restore_ends() {
    let Restoring {
        _dir,
        a,
        b,
        c,
        restores,
        installed_at,
        mut status,
        ..
    } = a_node_restoring(2_000, Some(0)).await;
    // Writes go on while node 3 restores: nodes 1 and 2 choose them, node 3
    // declines to vote and learns none of them.
    for _ in 0..20 {
        propose_retrying(&a, Bytes::from_static(b"yy")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(restores.load(Relaxed), 0, "the restore is still running");
    assert!(
        c.status().chosen_end.0 < installed_at + 20,
        "node 3 learned {} instances past its snapshot at {installed_at} while its backlog was full",
        c.status().chosen_end.0 - installed_at
    );
    assert!(c.metrics().accepts_deferred.load(Relaxed) > 0);
    // Once the restore ends node 3 catches up and applies everything (it
    // refuses reads until then).
    let expected = a.read(Bytes::new()).await.expect("read");
    let (output, _) = read_once_loaded(&c, Bytes::new()).await;
    assert_eq!(output, expected);
    let target = a.status().applied_end;
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.applied_end >= target),
    )
    .await
    .expect("node 3 applies everything after its restore")
    .expect("alive");
    assert!(c.status().stopped.is_none());
    assert_eq!(c.metrics().restore_backlog_bytes.load(Relaxed), 0);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}
