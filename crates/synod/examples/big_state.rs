//! Big state: how much heap a snapshot costs. Three nodes in one process;
//! nodes 1 and 2 load `MIB` MiB of state each, snapshot it and compact,
//! then node 3 starts empty and catches up by installing a snapshot, and
//! restarts from the snapshot file it wrote.
//!
//! ```sh
//! cargo run --release -p synod --example big_state -- [MIB] [--whole]
//! ```
//!
//! The state machine streams its snapshots (`snapshot_stream`); with
//! `--whole` it offers only `snapshot_view`, which encodes each snapshot
//! whole on the heap before it is written (the path before streaming).
//! A thread samples the process's anonymous resident memory (`RssAnon` in
//! `/proc/self/status`: the heap, not the page cache behind the mapped
//! snapshot files) every 5 ms; each phase prints its peak over the state
//! held at that point, in units of one node's state. Linux only.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::{
    ApplyContext, Node, NodeConfig, NodeId, SnapshotJob, SnapshotPolicy, SnapshotStream,
    StateMachine,
};

/// Bytes of each command (one blob of state).
const BLOB_BYTES: usize = 1 << 20;

/// Blobs, shared copy-on-write with snapshot jobs (the cheap view).
struct Blobs {
    blobs: Arc<Vec<Bytes>>,
    whole: bool,
}

fn write_blobs(blobs: &[Bytes], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for blob in blobs {
        out.write_all(&(blob.len() as u32).to_le_bytes())?;
        out.write_all(blob)?;
    }
    Ok(())
}

impl StateMachine for Blobs {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        Arc::make_mut(&mut self.blobs).push(Bytes::copy_from_slice(command));
        Bytes::new()
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        let bytes: usize = self.blobs.iter().map(Bytes::len).sum();
        Bytes::from(bytes.to_string())
    }

    fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        write_blobs(&self.blobs, &mut out).expect("a Vec takes every write");
        Bytes::from(out)
    }

    fn snapshot_view(&self) -> Option<SnapshotJob> {
        let view = Arc::clone(&self.blobs);
        Some(Box::new(move || {
            let mut out = Vec::new();
            write_blobs(&view, &mut out).expect("a Vec takes every write");
            Bytes::from(out)
        }))
    }

    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        if self.whole {
            return None;
        }
        let view = Arc::clone(&self.blobs);
        Some(Box::new(move |out: &mut dyn std::io::Write| {
            write_blobs(&view, out)
        }))
    }

    /// Decodes from the slice as it goes: one copy of the state (the slice
    /// is a mapping of the snapshot file, not heap).
    fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), String> {
        let mut blobs = Vec::new();
        while !snapshot.is_empty() {
            let (len, rest) = snapshot.split_at_checked(4).ok_or("truncated")?;
            let len = u32::from_le_bytes(len.try_into().map_err(|_| "length")?) as usize;
            let (blob, rest) = rest.split_at_checked(len).ok_or("truncated")?;
            blobs.push(Bytes::copy_from_slice(blob));
            snapshot = rest;
        }
        self.blobs = Arc::new(blobs);
        Ok(())
    }
}

/// The process's anonymous resident memory in bytes.
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples `rss_anon` into a running peak until dropped.
struct PeakSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakSampler {
    fn start() -> PeakSampler {
        let peak = Arc::new(AtomicU64::new(rss_anon()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Relaxed) {
                p.fetch_max(rss_anon(), Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        PeakSampler { peak, stop }
    }

    /// The peak so far, and a fresh start from now.
    fn take(&self) -> u64 {
        let peak = self.peak.load(Relaxed).max(rss_anon());
        self.peak.store(rss_anon(), Relaxed);
        peak
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

fn config(
    id: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
) -> Result<NodeConfig, Box<dyn std::error::Error>> {
    let mut cfg = NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("n{id}")))
        .ok_or("node not in its peer list")?;
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.request_timeout = Duration::from_secs(60);
    // Snapshots only when asked (`snapshot_now`), so each phase measures one.
    cfg.snapshot_policy = SnapshotPolicy {
        instances: u64::MAX,
        log_bytes: u64::MAX,
    };
    Ok(cfg)
}

async fn start(cfg: NodeConfig, whole: bool) -> Result<Node, Box<dyn std::error::Error>> {
    let machine = Blobs {
        blobs: Arc::default(),
        whole,
    };
    Ok(Node::start(cfg, machine).await?)
}

async fn wait_applied(node: &Node, target: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut status = node.watch_status();
    tokio::time::timeout(
        Duration::from_secs(600),
        status.wait_for(|s| s.applied_end.0 >= target),
    )
    .await??;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let whole = args.iter().any(|a| a == "--whole");
    let mib: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(512), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let peers: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((NodeId(i as u32 + 1), l.local_addr()?)))
        .collect::<Result<_, std::io::Error>>()?;
    drop(listeners);
    let state = (mib * BLOB_BYTES) as f64;
    let units = |bytes: u64| bytes as f64 / state;
    let mode = if whole {
        "snapshot_view (encoded whole)"
    } else {
        "snapshot_stream"
    };
    println!("state per node: {mib} MiB; snapshots: {mode}");
    let sampler = PeakSampler::start();

    let a = start(config(1, &peers, dir.path())?, whole).await?;
    let b = start(config(2, &peers, dir.path())?, whole).await?;
    let started = Instant::now();
    let a = Arc::new(a);
    let mut proposers = Vec::new();
    for p in 0..4 {
        let a = Arc::clone(&a);
        proposers.push(tokio::spawn(async move {
            for i in (p..mib).step_by(4) {
                let blob = Bytes::from(vec![(i % 251) as u8; BLOB_BYTES]);
                loop {
                    match a.propose(blob.clone()).await {
                        Ok(_) => break,
                        Err(synod::RequestError::Timeout(_)) => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Ok(())
        }));
    }
    for proposer in proposers {
        proposer.await??;
    }
    let target = a.status().applied_end.0;
    wait_applied(&b, target).await?;
    let load_peak = sampler.take();
    println!(
        "load:     {:6.1} s, peak heap {:5.2} x state (2 nodes hold 2)",
        started.elapsed().as_secs_f64(),
        units(load_peak)
    );

    let started = Instant::now();
    let (sa, sb) = tokio::join!(a.snapshot_now(), b.snapshot_now());
    sa?;
    sb?;
    let snap_peak = sampler.take();
    println!(
        "snapshot: {:6.1} s, peak heap {:5.2} x state (2 nodes hold 2, both snapshotting)",
        started.elapsed().as_secs_f64(),
        units(snap_peak)
    );

    let started = Instant::now();
    let c = start(config(3, &peers, dir.path())?, whole).await?;
    wait_applied(&c, target).await?;
    let install_peak = sampler.take();
    println!(
        "install:  {:6.1} s, peak heap {:5.2} x state (3 nodes hold 3)",
        started.elapsed().as_secs_f64(),
        units(install_peak)
    );
    // Node 3 checkpoints what it installed; then it restarts from that file.
    let mut status = c.watch_status();
    tokio::time::timeout(
        Duration::from_secs(600),
        status.wait_for(|s| s.snapshot_end.0 >= target),
    )
    .await??;
    c.shutdown().await;
    let after_stop = sampler.take();
    let started = Instant::now();
    let c = start(config(3, &peers, dir.path())?, whole).await?;
    let restart_peak = sampler.take();
    println!(
        "restart:  {:6.1} s, peak heap {:5.2} x state (3 nodes hold 3; {:4.2} before it)",
        started.elapsed().as_secs_f64(),
        units(restart_peak),
        units(after_stop)
    );
    let answer = c.read(Bytes::new()).await?;
    let held: usize = std::str::from_utf8(&answer)?.parse()?;
    if held != mib * BLOB_BYTES {
        return Err(format!("node 3 holds {held} bytes, expected {}", mib * BLOB_BYTES).into());
    }
    c.shutdown().await;
    if let Ok(a) = Arc::try_unwrap(a) {
        a.shutdown().await;
    }
    b.shutdown().await;
    Ok(())
}
