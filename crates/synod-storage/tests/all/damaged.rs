//! A damaged log is refused, never read as a shorter one, and unfinished
//! snapshot files do not outlive a restart (outside review, stop 62). Before,
//! an emptied or zeroed only segment was taken for an unfinished creation, a
//! corrupted checkpoint end for a torn tail: the log opened with no
//! checkpoint and nothing after it, and the node voted with no promises.

use crate::common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use synod_core::{GroupId, InstanceId, Record};
use synod_storage::{snapshot_file, Storage, StorageError, Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments
}

fn records(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(common::fixed_record).collect()
}

/// A log whose first segment a checkpoint superseded and removed: what is
/// left is the segment the checkpoint started, holding only it.
fn checkpointed(dir: &Path) -> PathBuf {
    let (mut wal, _) = Wal::open(dir, opts()).unwrap();
    wal.append(&records(0..5)).unwrap();
    wal.sync().unwrap();
    wal.checkpoint(
        GroupId(0),
        &common::snapshot(10, b"state at 10"),
        &records(10..12),
    )
    .unwrap();
    drop(wal);
    let left = segments(dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].ends_with(synod_storage::segment::file_name(1)));
    left[0].clone()
}

fn refused(dir: &Path, what: &str) {
    match Wal::open(dir, opts()) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains("no finished checkpoint"), "{what}: {text}");
        }
        Err(other) => panic!("{what}: refused, but not as damage: {other}"),
        Ok((_, recovered)) => panic!(
            "{what}: opened with {} records and snapshots {:?}",
            recovered.records.len(),
            recovered.snapshots.keys().collect::<Vec<_>>()
        ),
    }
}

#[test]
fn an_intact_checkpointed_log_opens_with_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed(dir.path());
    let (_, recovered) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(
        recovered.snapshots[&GroupId(0)].meta.applied_end,
        InstanceId(10)
    );
    assert_eq!(recovered.records, records(10..12));
}

#[test]
fn an_emptied_or_zeroed_only_segment_is_refused() {
    for zeroed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let segment = checkpointed(dir.path());
        let len = fs::metadata(&segment).unwrap().len();
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(0).unwrap();
        if zeroed {
            file.set_len(len).unwrap();
        }
        drop(file);
        refused(dir.path(), if zeroed { "zeroed" } else { "emptied" });
    }
}

#[test]
fn a_corrupted_checkpoint_end_is_refused_not_cut_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let segment = checkpointed(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    // The end frame is the last thing written: flip a byte of its payload.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, len - 6).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], len - 6).unwrap();
    drop(file);
    refused(dir.path(), "flipped end frame");
}

#[test]
fn unfinished_snapshot_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed(dir.path());
    let snap = dir.path().join("snap");
    let finished: Vec<_> = fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let tmp = snap.join(format!(
        "{}.tmp",
        snapshot_file::file_name(GroupId(0), InstanceId(30))
    ));
    let incoming = snap.join(snapshot_file::incoming_name(GroupId(0), InstanceId(40)));
    let other = snap.join("notes.tmp");
    for path in [&tmp, &incoming, &other] {
        fs::write(path, vec![7u8; 4096]).unwrap();
    }
    let (_, recovered) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(
        recovered.snapshots[&GroupId(0)].meta.applied_end,
        InstanceId(10)
    );
    assert!(!tmp.exists() && !incoming.exists());
    assert!(other.exists(), "a file the log does not name is left alone");
    for path in finished {
        assert!(path.exists(), "{}", path.display());
    }
}
