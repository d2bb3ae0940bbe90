//! A state machine that streams its snapshots (`snapshot_stream`, issue 17's
//! big state): its snapshots are written piece by piece into the file, never
//! encoded whole; a lagging node receives one into a file (the spool), not
//! into memory, installs it, checkpoints it and restarts from it.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use synod::{ApplyContext, Node, SnapshotStream, StateMachine};

use crate::common::{catch_up, free_peers, propose_retrying, snapshotting_config};

/// What every node's state machine reports to the test.
#[derive(Default)]
struct Seen {
    /// Calls of `snapshot` (the runtime must stream instead).
    whole_snapshots: AtomicU64,
    /// The largest single write a snapshot job made.
    largest_write: AtomicU64,
    /// Bytes given to `restore`, in all.
    restored_bytes: AtomicU64,
}

/// Blobs appended by commands, shared copy-on-write with snapshot jobs.
struct Blobs {
    blobs: Arc<Vec<Bytes>>,
    seen: Arc<Seen>,
}

/// Length-prefixed blobs, written a piece at a time.
fn encode(blobs: &[Bytes], out: &mut dyn std::io::Write, seen: &Seen) -> std::io::Result<()> {
    for blob in blobs {
        out.write_all(&(blob.len() as u32).to_le_bytes())?;
        for piece in blob.chunks(4096) {
            seen.largest_write.fetch_max(piece.len() as u64, Relaxed);
            out.write_all(piece)?;
        }
    }
    Ok(())
}

/// The answer to every query: how many blobs, and a digest of them all.
fn summary(blobs: &[Bytes]) -> Bytes {
    use std::hash::{Hash, Hasher};
    // Fixed keys: equal on every node of this process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    blobs.hash(&mut hasher);
    let mut out = (blobs.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hasher.finish().to_le_bytes());
    Bytes::from(out)
}

impl StateMachine for Blobs {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        Arc::make_mut(&mut self.blobs).push(Bytes::copy_from_slice(command));
        Bytes::new()
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        summary(&self.blobs)
    }

    fn snapshot(&self) -> Bytes {
        self.seen.whole_snapshots.fetch_add(1, Relaxed);
        let mut out = Vec::new();
        encode(&self.blobs, &mut out, &self.seen).expect("a Vec takes every write");
        Bytes::from(out)
    }

    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        let view = Arc::clone(&self.blobs);
        let seen = Arc::clone(&self.seen);
        Some(Box::new(move |out: &mut dyn std::io::Write| {
            encode(&view, out, &seen)
        }))
    }

    fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), String> {
        self.seen
            .restored_bytes
            .fetch_add(snapshot.len() as u64, Relaxed);
        let mut blobs = Vec::new();
        while !snapshot.is_empty() {
            let (len, rest) = snapshot.split_at_checked(4).ok_or("truncated length")?;
            let len = u32::from_le_bytes(len.try_into().map_err(|_| "length")?) as usize;
            let (blob, rest) = rest.split_at_checked(len).ok_or("truncated blob")?;
            blobs.push(Bytes::copy_from_slice(blob));
            snapshot = rest;
        }
        self.blobs = Arc::new(blobs);
        Ok(())
    }
}

async fn start(cfg: synod::NodeConfig, seen: &Arc<Seen>) -> Node {
    let machine = Blobs {
        blobs: Arc::default(),
        seen: Arc::clone(seen),
    };
    Node::start(cfg, machine).await.expect("node starts")
}

fn incoming_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("snap"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".incoming"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_snapshot_is_written_sent_installed_and_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let seen = Arc::new(Seen::default());
    let cfg = |id| snapshotting_config(id, &peers, dir.path());
    let a = start(cfg(1), &seen).await;
    let b = start(cfg(2), &seen).await;
    // 200 blobs of 24 KiB (4.7 MiB): snapshots span several 1 MiB chunks,
    // and the instances node 3 misses are compacted on both others.
    for i in 0..200u32 {
        let blob: Vec<u8> = (0..24 * 1024).map(|k| (k as u32 ^ i) as u8).collect();
        propose_retrying(&a, Bytes::from(blob)).await;
    }
    assert!(a.status().snapshot_end.0 >= 100, "node 1 snapshotted");
    let expected = a.read(Bytes::new()).await.expect("read");
    let c = start(cfg(3), &seen).await;
    catch_up(&c, &a, "node 3 catches up in time").await;
    assert!(c.metrics().snapshots_installed.load(Relaxed) >= 1);
    assert_eq!(
        crate::common::read_once_loaded(&c, Bytes::new()).await.0,
        expected
    );
    assert_eq!(c.metrics().snapshot_spool_errors.load(Relaxed), 0);
    // The installed snapshot is checkpointed as a snapshot file, and the
    // spool's file goes with that checkpoint's cleanup.
    let n3 = dir.path().join("n3");
    tokio::time::timeout(Duration::from_secs(30), async {
        while !incoming_files(&n3).is_empty() || c.status().snapshot_end.0 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the incoming file is cleaned up");
    // The install was made durable by sealing the incoming file in place,
    // not by copying it: the bytes node 3 serves are a mapping of its
    // snapshot file, not of a deleted incoming file still holding disk.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let n3_snap = n3.join("snap");
    let n3_snap = n3_snap.to_string_lossy();
    assert!(
        maps.lines()
            .any(|l| l.contains(&*n3_snap) && l.ends_with(".snap")),
        "node 3 serves its snapshot file"
    );
    assert!(
        !maps
            .lines()
            .any(|l| l.contains(&*n3_snap) && l.contains("(deleted)")),
        "a deleted file stays mapped:\n{maps}"
    );

    // A restart restores from the file written on node 3.
    let restored_before = seen.restored_bytes.load(Relaxed);
    c.shutdown().await;
    let c = start(cfg(3), &seen).await;
    assert!(seen.restored_bytes.load(Relaxed) > restored_before + 4 * 1024 * 1024);
    propose_retrying(&a, Bytes::from_static(b"after")).await;
    let expected = a.read(Bytes::new()).await.expect("read");
    catch_up(&c, &a, "node 3 catches up after its restart").await;
    assert_eq!(
        crate::common::read_once_loaded(&c, Bytes::new()).await.0,
        expected
    );

    // No snapshot was ever encoded whole, and none in writes larger than
    // the state machine's own pieces.
    assert_eq!(seen.whole_snapshots.load(Relaxed), 0);
    assert_eq!(seen.largest_write.load(Relaxed), 4096);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}
