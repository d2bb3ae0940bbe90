//! Proposals per second from in-process proposers, with a state machine
//! that keeps its own journal on disk (as an on-disk state machine does):
//! with `apply` alone it syncs its journal once per command; with
//! `apply_batch` once per batch the runtime hands it.
//!
//! ```sh
//! cargo run --release -p synod --example propose_rate -- [SECONDS]
//! ```
//!
//! Three nodes in one process on loopback, the log fsynced as always; the
//! proposers all talk to the leader. Prints one line per (state machine,
//! concurrent proposals) pair, all measured in the same run.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::{ApplyContext, BatchCommand, Node, NodeConfig, NodeId, StateMachine};

/// When the journal is synced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Never (the journal is only written): the runtime's own cost.
    Never,
    /// After each command (`apply` alone).
    PerCommand,
    /// After each batch (`apply_batch`).
    PerBatch,
}

impl Sync {
    fn label(self) -> &'static str {
        match self {
            Sync::Never => "journal not synced",
            Sync::PerCommand => "journal synced per command",
            Sync::PerBatch => "journal synced per batch",
        }
    }
}

/// Counts commands and journals each to a file, synced before it answers.
struct Journal {
    file: File,
    applied: u64,
    sync: Sync,
}

impl Journal {
    fn record(&mut self, command: &[u8]) -> Bytes {
        self.applied += 1;
        // A journal write failing is a storage failure: the node must stop.
        self.file
            .write_all(command)
            .unwrap_or_else(|e| panic!("journal write: {e}"));
        Bytes::copy_from_slice(&self.applied.to_le_bytes())
    }

    fn sync(&mut self) {
        if self.sync == Sync::Never {
            return;
        }
        self.file
            .sync_data()
            .unwrap_or_else(|e| panic!("journal sync: {e}"));
    }
}

impl StateMachine for Journal {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let output = self.record(command);
        self.sync();
        output
    }

    fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
        if self.sync != Sync::PerBatch {
            return batch
                .iter()
                .map(|one| self.apply(one.command, &one.ctx))
                .collect();
        }
        let outputs = batch.iter().map(|one| self.record(one.command)).collect();
        self.sync();
        outputs
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.applied.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.applied.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes")?;
        self.applied = u64::from_le_bytes(bytes);
        Ok(())
    }
}

async fn cluster(dir: &Path, sync: Sync) -> Result<Vec<Node>, Box<dyn std::error::Error>> {
    // Peer ports bound first and handed to the nodes (see the counter
    // example).
    let mut peers = BTreeMap::new();
    let mut listeners = Vec::new();
    for id in 1..=3u32 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr: SocketAddr = listener.local_addr()?;
        peers.insert(NodeId(id), addr);
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (id, listener) in peers.keys().zip(listeners) {
        let home = dir.join(format!("node-{}", id.0));
        let mut cfg =
            NodeConfig::new(*id, peers.clone(), home.clone()).ok_or("node not in its peer list")?;
        cfg.bootstrap = synod::Bootstrap::New;
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        std::fs::create_dir_all(&home)?;
        let journal = Journal {
            file: File::create(home.join("journal"))?,
            applied: 0,
            sync,
        };
        nodes.push(Node::start_with_listener(cfg, journal, listener).await?);
    }
    for node in &nodes {
        node.ready().await?;
    }
    Ok(nodes)
}

/// Proposals acknowledged per second with `concurrency` proposers on the
/// leader for `seconds`.
async fn rate(leader: Arc<Node>, concurrency: usize, seconds: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|k| {
            let (leader, done, stop) = (Arc::clone(&leader), Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let command = Bytes::from(format!(
                    "proposer {k}: 64 bytes of a command ........................"
                ));
                while !stop.load(Ordering::Relaxed) {
                    if leader.propose(command.clone()).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let count = done.load(Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    count as f64 / elapsed
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5.0);
    let dir = std::env::temp_dir().join(format!("synod-propose-rate-{}", std::process::id()));
    for (k, sync) in [Sync::Never, Sync::PerCommand, Sync::PerBatch]
        .into_iter()
        .enumerate()
    {
        let run = dir.join(format!("run-{k}"));
        let nodes = cluster(&run, sync).await?;
        let leader_id = nodes[0].status().leader.ok_or("no leader")?;
        let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        let at = nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.status().id == leader_id))
            .ok_or("leader not among the nodes")?;
        let leader = Arc::new(nodes[at].take().ok_or("taken")?);
        for concurrency in [1, 16] {
            let per_second = rate(Arc::clone(&leader), concurrency, seconds).await;
            println!(
                "{:<28} {concurrency:>2} concurrent proposals: {per_second:>8.0} proposals/s",
                sync.label()
            );
        }
        if let Ok(leader) = Arc::try_unwrap(leader) {
            leader.shutdown().await;
        }
        for node in nodes.into_iter().flatten() {
            node.shutdown().await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
