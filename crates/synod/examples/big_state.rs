//! Big state: how much heap a snapshot costs. Three nodes in one process;
//! nodes 1 and 2 load `MIB` MiB of state each (256 KiB commands), snapshot
//! it and compact,
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
//! The example's allocator counts the bytes on the heap (not the page cache
//! behind the mapped snapshot files, nor what the allocator keeps from the
//! system); each phase prints the heap before it and its peak, in units of
//! one node's state.

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::{
    ApplyContext, Node, NodeConfig, NodeId, SnapshotJob, SnapshotPolicy, SnapshotStream,
    StateMachine,
};

/// Bytes of each command (one blob of state).
const BLOB_BYTES: usize = 256 << 10;

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

/// The global allocator, counting the bytes allocated now and their peak:
/// the heap the program uses, whatever the allocator keeps from the system.
struct Counting;

static HEAP_NOW: AtomicU64 = AtomicU64::new(0);
static HEAP_PEAK: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            let now = HEAP_NOW.fetch_add(layout.size() as u64, Relaxed) + layout.size() as u64;
            HEAP_PEAK.fetch_max(now, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_NOW.fetch_sub(layout.size() as u64, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HEAP_NOW.fetch_sub(layout.size() as u64, Relaxed);
            let now = HEAP_NOW.fetch_add(new_size as u64, Relaxed) + new_size as u64;
            HEAP_PEAK.fetch_max(now, Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap in use now.
fn heap_now() -> u64 {
    HEAP_NOW.load(Relaxed)
}

/// The heap's peak since the last call (or the start), and a new start.
fn heap_peak() -> u64 {
    HEAP_PEAK.swap(heap_now(), Relaxed)
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
    // Small peer queues: what was sent to node 3 while it was down is
    // dropped, as after a long outage, so it catches up by snapshot.
    cfg.peer_send_queue_max = 16;
    // Snapshots only when asked (`snapshot_now`), so each phase measures one.
    cfg.snapshot_policy = SnapshotPolicy {
        instances: u64::MAX,
        log_bytes: u64::MAX,
        ..Default::default()
    };
    Ok(cfg)
}

/// Starts a node on `listener`, bound before the peer lists were written
/// (or bound again, for a restart, on the port they name): no other socket
/// can take the port in between.
async fn start(
    cfg: NodeConfig,
    whole: bool,
    listener: std::net::TcpListener,
) -> Result<Node, Box<dyn std::error::Error>> {
    let machine = Blobs {
        blobs: Arc::default(),
        whole,
    };
    Ok(Node::start_with_listener(cfg, machine, listener).await?)
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

/// Prints one phase's line: its time, the heap before it and its peak.
fn phase(name: &str, started: Instant, before: f64, peak: f64, what: &str) {
    println!(
        "{:9} {:6.1} s, heap {before:5.2} -> peak {peak:5.2} x state ({what})",
        format!("{name}:"),
        started.elapsed().as_secs_f64(),
    );
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
    let mut listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let peers: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((NodeId(i as u32 + 1), l.local_addr()?)))
        .collect::<Result<_, std::io::Error>>()?;
    // Node 3 starts later: its socket is held until then.
    let listener_c = listeners.pop().ok_or("three listeners")?;
    let listener_b = listeners.pop().ok_or("three listeners")?;
    let listener_a = listeners.pop().ok_or("three listeners")?;
    let state = (mib << 20) as f64;
    let units = |bytes: u64| bytes as f64 / state;
    let mode = if whole {
        "snapshot_view (encoded whole)"
    } else {
        "snapshot_stream"
    };
    println!("state per node: {mib} MiB; snapshots: {mode}");
    heap_peak();

    let a = start(config(1, &peers, dir.path())?, whole, listener_a).await?;
    let b = start(config(2, &peers, dir.path())?, whole, listener_b).await?;
    let started = Instant::now();
    let a = Arc::new(a);
    let blobs = mib * (1 << 20) / BLOB_BYTES;
    let mut proposers = Vec::new();
    for p in 0..4 {
        let a = Arc::clone(&a);
        proposers.push(tokio::spawn(async move {
            for i in (p..blobs).step_by(4) {
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
    let load_peak = heap_peak();
    let before = heap_now();
    println!(
        "load:     {:6.1} s, peak heap {:5.2} x state (2 nodes hold 2, and their logs)",
        started.elapsed().as_secs_f64(),
        units(load_peak)
    );

    let started = Instant::now();
    let (sa, sb) = tokio::join!(a.snapshot_now(), b.snapshot_now());
    sa?;
    sb?;
    let snap_peak = heap_peak();
    phase(
        "snapshot",
        started,
        units(before),
        units(snap_peak),
        "2 nodes snapshot and compact",
    );
    let before = heap_now();

    let started = Instant::now();
    let c = start(config(3, &peers, dir.path())?, whole, listener_c).await?;
    wait_applied(&c, target).await?;
    let install_peak = heap_peak();
    if c.metrics().snapshots_installed.load(Relaxed) == 0 {
        return Err("node 3 caught up without a snapshot: load more".into());
    }
    phase(
        "install",
        started,
        units(before),
        units(install_peak),
        "node 3 installs 1",
    );
    // Node 3 checkpoints what it installed; then it restarts from that file.
    let mut status = c.watch_status();
    if tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.snapshot_end.0 >= target),
    )
    .await
    .is_err()
    {
        return Err(format!("node 3 did not checkpoint: {:?}", c.status()).into());
    }
    c.shutdown().await;
    drop(c);
    // The stopped node's task lets go of its state machine just after.
    tokio::time::sleep(Duration::from_secs(1)).await;
    heap_peak();
    let after_stop = heap_now();
    // The restart binds the port its peers know again, as a restarted
    // server does.
    let listener_c = std::net::TcpListener::bind(peers[&NodeId(3)])?;
    let started = Instant::now();
    let c = start(config(3, &peers, dir.path())?, whole, listener_c).await?;
    let restart_peak = heap_peak();
    phase(
        "restart",
        started,
        units(after_stop),
        units(restart_peak),
        "node 3 restores 1",
    );
    let answer = c.read(Bytes::new()).await?;
    let held: usize = std::str::from_utf8(&answer)?.parse()?;
    if held != mib << 20 {
        return Err(format!("node 3 holds {held} bytes, expected {}", mib << 20).into());
    }
    c.shutdown().await;
    if let Ok(a) = Arc::try_unwrap(a) {
        a.shutdown().await;
    }
    b.shutdown().await;
    Ok(())
}
