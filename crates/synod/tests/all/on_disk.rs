//! A state machine that keeps its state on its own disk (issue 17's
//! on-disk mode, `StateMachine::durable_end`): checkpoints hold no copy of
//! the state, a restart restores nothing and applies only what its files
//! lack, a lagging peer gets a whole snapshot written on demand, and a node
//! whose state machine lost its files refuses to start.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use synod::{ApplyContext, InstanceId, Node, SnapshotStream, StateMachine, StateSyncJob};

use crate::common::{
    catch_up, free_peers, propose_retrying, read_once_loaded, snapshotting_config,
};

/// What one node's state machine did, for the test.
#[derive(Default)]
struct Seen {
    /// Commands applied.
    applies: AtomicU64,
    /// Calls of `restore`.
    restores: AtomicU64,
    /// Whole snapshots asked for (`snapshot_stream` or `snapshot`).
    whole_snapshots: AtomicU64,
    /// `sync` jobs that ran.
    syncs: AtomicU64,
}

/// Keys and values, kept in a file of its own (written whole at every
/// `sync`: a stand-in for a database's flush) and in memory.
struct DiskMap {
    map: Arc<BTreeMap<String, String>>,
    dir: PathBuf,
    durable: Arc<AtomicU64>,
    seen: Arc<Seen>,
}

const STATE: &str = "state";

/// `key=value` lines.
fn encode(map: &BTreeMap<String, String>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for (key, value) in map {
        writeln!(out, "{key}={value}")?;
    }
    Ok(())
}

fn decode(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.lines()
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("not key=value: {line:?}"))
        })
        .collect()
}

impl DiskMap {
    /// Opens the state in `dir` (empty if there is none): its first line is
    /// its point.
    fn open(dir: &Path, seen: &Arc<Seen>) -> DiskMap {
        std::fs::create_dir_all(dir).expect("state machine dir");
        let (point, map) = match std::fs::read_to_string(dir.join(STATE)) {
            Ok(text) => {
                let (point, rest) = text.split_once('\n').expect("a point line");
                (
                    point.parse().expect("a point"),
                    decode(rest).expect("decodes"),
                )
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
            Err(err) => panic!("cannot read the state: {err}"),
        };
        DiskMap {
            map: Arc::new(map),
            dir: dir.to_path_buf(),
            durable: Arc::new(AtomicU64::new(point)),
            seen: Arc::clone(seen),
        }
    }
}

impl StateMachine for DiskMap {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.seen.applies.fetch_add(1, Relaxed);
        let text = String::from_utf8_lossy(command);
        let (key, value) = text.split_once('=').unwrap_or((&text, ""));
        let old = Arc::make_mut(&mut self.map).insert(key.to_string(), value.to_string());
        Bytes::from(old.unwrap_or_default())
    }

    fn query(&self, query: &[u8], _ctx: &ApplyContext) -> Bytes {
        if query.is_empty() {
            let mut out = Vec::new();
            encode(&self.map, &mut out).expect("a Vec takes every write");
            return Bytes::from(out);
        }
        let key = String::from_utf8_lossy(query);
        Bytes::from(self.map.get(&*key).cloned().unwrap_or_default())
    }

    fn snapshot(&self) -> Bytes {
        self.seen.whole_snapshots.fetch_add(1, Relaxed);
        let mut out = Vec::new();
        encode(&self.map, &mut out).expect("a Vec takes every write");
        Bytes::from(out)
    }

    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        self.seen.whole_snapshots.fetch_add(1, Relaxed);
        let view = Arc::clone(&self.map);
        Some(Box::new(move |out: &mut dyn std::io::Write| {
            encode(&view, out)
        }))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.seen.restores.fetch_add(1, Relaxed);
        let text = std::str::from_utf8(snapshot).map_err(|e| e.to_string())?;
        // The file keeps the old state under its old point until the next
        // `sync`: what the contract of `durable_end` allows.
        self.map = Arc::new(decode(text)?);
        Ok(())
    }

    fn durable_end(&self) -> Option<InstanceId> {
        Some(InstanceId(self.durable.load(Relaxed)))
    }

    fn sync(&mut self, through: InstanceId) -> Option<StateSyncJob> {
        let view = Arc::clone(&self.map);
        let dir = self.dir.clone();
        let durable = Arc::clone(&self.durable);
        let seen = Arc::clone(&self.seen);
        Some(Box::new(move || {
            use std::io::Write;
            let tmp = dir.join("state.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            let mut out = std::io::BufWriter::new(&mut file);
            writeln!(out, "{}", through.0)?;
            encode(&view, &mut out)?;
            out.flush()?;
            drop(out);
            file.sync_all()?;
            std::fs::rename(&tmp, dir.join(STATE))?;
            std::fs::File::open(&dir)?.sync_all()?;
            durable.store(through.0, Relaxed);
            seen.syncs.fetch_add(1, Relaxed);
            Ok(())
        }))
    }
}

/// Waits until `node` checkpointed at or past `point`.
async fn checkpointed(node: &Node, point: u64, what: &str) {
    let mut status = node.watch_status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.snapshot_end.0 >= point),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"))
    .expect("the node is alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_disk_state_machine_restarts_without_a_restore_and_serves_lagging_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let seen: Vec<Arc<Seen>> = (0..=3).map(|_| Arc::new(Seen::default())).collect();
    let cfg = |id| snapshotting_config(id, &peers, dir.path());
    let sm_dir = |id: u32| dir.path().join(format!("sm{id}"));
    let start = |id: u32| {
        let machine = DiskMap::open(&sm_dir(id), &seen[id as usize]);
        Node::start(cfg(id), machine)
    };
    let a = start(1).await.expect("node 1 starts");
    let b = start(2).await.expect("node 2 starts");
    let c = start(3).await.expect("node 3 starts");
    for i in 0..60 {
        propose_retrying(&a, Bytes::from(format!("k{}={i}", i % 25))).await;
    }
    catch_up(&b, &a, "node 2 applies everything").await;
    checkpointed(&b, 40, "node 2 checkpoints").await;
    // Checkpoints hold no copy of the state: the state machine synced its
    // own files, and no whole snapshot was asked for (no peer lagged).
    assert!(b.metrics().checkpoints_state_on_disk.load(Relaxed) > 0);
    assert!(seen[2].syncs.load(Relaxed) > 0);
    assert_eq!(seen[2].whole_snapshots.load(Relaxed), 0);
    let expected = a.read(Bytes::new()).await.expect("read");

    // A restart restores nothing and applies only what the state
    // machine's files lack (at most the commands since its last sync).
    b.shutdown().await;
    let durable: u64 = std::fs::read_to_string(sm_dir(2).join(STATE))
        .expect("state file")
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("a point");
    assert!(durable >= 40, "node 2's state is durable at {durable}");
    let applies_before = seen[2].applies.load(Relaxed);
    let b = start(2).await.expect("node 2 restarts");
    catch_up(&b, &a, "node 2 replays its log").await;
    assert_eq!(seen[2].restores.load(Relaxed), 0, "nothing restored");
    let reapplied = seen[2].applies.load(Relaxed) - applies_before;
    assert!(
        reapplied < 60 - 30,
        "node 2 applied {reapplied} commands again after its restart"
    );
    assert_eq!(
        crate::common::read_once_loaded(&b, Bytes::new()).await.0,
        expected
    );

    // A state machine that lost its files: the checkpoint holds no copy of
    // the state, so the node refuses to start and says why.
    b.shutdown().await;
    std::fs::rename(sm_dir(2), dir.path().join("sm2.lost")).expect("move the files away");
    let refused = start(2)
        .await
        .expect_err("a node whose state is lost must not start");
    let message = refused.to_string();
    assert!(
        message.contains("holds no copy of the state machine's state"),
        "{message}"
    );
    std::fs::remove_dir_all(sm_dir(2)).expect("the empty dir the refused start made");
    std::fs::rename(dir.path().join("sm2.lost"), sm_dir(2)).expect("files back");
    let b = start(2).await.expect("node 2 starts with its files back");

    // A peer that lags behind the compacted log: the checkpoints hold no
    // state to send it, so a whole snapshot is written on demand, sent
    // and installed.
    c.shutdown().await;
    for i in 60..400 {
        propose_retrying(&a, Bytes::from(format!("k{}={i}", i % 25))).await;
    }
    catch_up(&b, &a, "node 2 keeps up").await;
    checkpointed(&a, 380, "node 1 compacts past node 3").await;
    checkpointed(&b, 380, "node 2 compacts past node 3").await;
    let expected = a.read(Bytes::new()).await.expect("read");
    let c = start(3).await.expect("node 3 restarts");
    catch_up(&c, &a, "node 3 catches up by snapshot").await;
    let for_peers = a.metrics().snapshots_for_peers.load(Relaxed)
        + b.metrics().snapshots_for_peers.load(Relaxed);
    assert!(
        for_peers >= 1,
        "a whole snapshot was written for node 3 (restores {}, installed {}, whole {} {})",
        seen[3].restores.load(Relaxed),
        c.metrics().snapshots_installed.load(Relaxed),
        seen[1].whole_snapshots.load(Relaxed),
        seen[2].whole_snapshots.load(Relaxed)
    );

    // Reads are refused until the restore, which runs off node 3's event
    // loop, is done.
    let (output, _) = read_once_loaded(&c, Bytes::new()).await;
    assert_eq!(output, expected);
    assert!(seen[3].restores.load(Relaxed) >= 1, "node 3 installed it");
    for node in [a, b, c] {
        node.shutdown().await;
    }
}
