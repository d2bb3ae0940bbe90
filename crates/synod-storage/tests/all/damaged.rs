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
    let left = common::segment_files(dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].ends_with(synod_storage::segment::file_name(1)));
    left[0].clone()
}

/// Flips a byte of the checkpoint end frame's payload: the last thing a
/// [`checkpointed`] log wrote.
fn flip_end_frame(segment: &Path) {
    let len = fs::metadata(segment).unwrap().len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, len - 6).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], len - 6).unwrap();
}

/// Cuts a file to nothing, as `truncate -s 0` does.
fn empty(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn refused(dir: &Path, what: &str) {
    match Wal::open(dir, opts()) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("no finished checkpoint") || text.contains("wal/NEWEST"),
                "{what}: {text}"
            );
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
    flip_end_frame(&segment);
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

/// A log of several segments, never checkpointed (its segments rolled at
/// 4 KiB): 1, 2, 3, ...
fn rolled(dir: &Path) -> Vec<PathBuf> {
    let opts = WalOptions {
        segment_bytes_max: 4096,
        ..opts()
    };
    let (mut wal, _) = Wal::open(dir, opts).unwrap();
    for chunk in records(0..200).chunks(10) {
        wal.append(chunk).unwrap();
        wal.sync().unwrap();
    }
    drop(wal);
    let left = common::segment_files(dir);
    assert!(left.len() >= 3, "{left:?}");
    left
}

fn refused_as_recorded(dir: &Path, what: &str) {
    match Wal::open(dir, opts()) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains("wal/NEWEST"), "{what}: {text}");
        }
        Err(other) => panic!("{what}: refused, but not as damage: {other}"),
        Ok((_, recovered)) => panic!("{what}: opened with {} records", recovered.records.len()),
    }
}

/// The review of the first fix: a log that never checkpointed has only
/// segment 1, or newest segments with nothing to vouch for them; emptied or
/// deleted, they read as a shorter log. `wal/NEWEST` records the newest
/// segment made durable, so each is refused.
#[test]
fn an_emptied_or_deleted_newest_segment_is_refused_without_a_checkpoint() {
    // The only segment, emptied before any checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&records(0..5)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let only = common::segment_files(dir.path());
    assert_eq!(only.len(), 1);
    empty(&only[0]);
    refused_as_recorded(dir.path(), "segment 1 emptied");
    // The newest of several, deleted or emptied.
    for delete in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let newest = rolled(dir.path()).pop().unwrap();
        if delete {
            fs::remove_file(&newest).unwrap();
        } else {
            empty(&newest);
        }
        refused_as_recorded(dir.path(), if delete { "deleted" } else { "emptied" });
    }
}

/// What the record allows: a crash between a segment's creation and its
/// record (the record names the one before, the newest's header may be
/// torn), and a log from before the record (none). Each opens, and is
/// recorded from then on.
#[test]
fn a_segment_created_but_not_yet_recorded_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut left = rolled(dir.path());
    let newest = left.pop().unwrap();
    let index_before = left.len() as u64;
    // The record names the segment before the newest, whose header a crash
    // left unwritten.
    let record = dir.path().join("wal").join("NEWEST");
    let mut bytes = index_before.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&index_before.to_le_bytes()).to_le_bytes());
    fs::write(&record, &bytes).unwrap();
    empty(&newest);
    let (_, recovered) = Wal::open(dir.path(), opts()).unwrap();
    assert!(!recovered.records.is_empty());
    // No record at all (a log written before it): opens and records.
    fs::remove_file(&record).unwrap();
    Wal::open(dir.path(), opts()).unwrap();
    assert!(record.exists());
    // Now the newest is recorded: emptied, it is refused.
    let newest = common::segment_files(dir.path()).pop().unwrap();
    empty(&newest);
    refused_as_recorded(dir.path(), "recorded, then emptied");
}

/// The review of the first fix: a refused log was changed before the
/// refusal (its torn tail cut, durably), so a one-byte flip that a copy
/// could have mended lost a whole checkpoint batch. Now nothing changes
/// until the log is known whole.
#[test]
fn a_refused_log_is_left_as_it_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let segment = checkpointed(dir.path());
    flip_end_frame(&segment);
    let stray = dir.path().join("snap").join(format!(
        "{}.tmp",
        snapshot_file::file_name(GroupId(0), InstanceId(30))
    ));
    fs::write(&stray, b"x").unwrap();
    let before = fs::read(&segment).unwrap();
    refused(dir.path(), "flipped end frame");
    assert_eq!(
        fs::read(&segment).unwrap(),
        before,
        "the segment is as it was"
    );
    assert!(stray.exists(), "nothing removed either");
}

/// The review of the record: a roll stopped by a full disk leaves its new
/// segment empty (unrecorded), and a half-written snapshot or the trash
/// holding the space. The open must free that space before it writes the
/// segment's header again; when the repairs first moved after the checks,
/// the header came first, failed with ENOSPC, and every restart failed
/// alike.
#[test]
fn a_full_disk_restart_frees_space_before_it_restarts_a_segment() {
    use std::sync::Arc;
    use synod_storage::{segment, Fs, OpenMode, SimFs};
    let opts = WalOptions {
        segment_bytes_max: 400,
        preallocate_bytes: 512,
        salt: Some(5),
        ..WalOptions::default()
    };
    let wal_dir = Path::new("/n/wal");
    for junk in [
        Path::new("/n/snap").join(format!(
            "{}.tmp",
            snapshot_file::file_name(GroupId(0), InstanceId(10))
        )),
        wal_dir.join(format!("{}.deleting", segment::file_name(0))),
    ] {
        let sim = SimFs::new();
        let open = || Wal::open_on(Arc::new(sim.clone()), Path::new("/n"), opts.clone());
        let (mut wal, _) = open().unwrap();
        wal.append(&records(0..1)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let file = sim.open(&junk, OpenMode::CreateNew).unwrap();
        file.write_all_at(&[7u8; 8192], 0).unwrap();
        file.sync_data().unwrap();
        drop(file);
        sim.sync_dir(junk.parent().unwrap()).unwrap();
        let last = sim
            .files()
            .iter()
            .filter(|p| p.parent() == Some(wal_dir))
            .filter_map(|p| segment::parse_name(p.file_name()?.to_str()?))
            .max()
            .unwrap();
        // The roll cut the closed segment to its data, created the next,
        // and could not write its header: the disk is full.
        let closed = wal_dir.join(segment::file_name(last));
        let mut bytes = sim.file_bytes(&closed).unwrap();
        let data = bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count();
        bytes.truncate(data);
        sim.set_file_bytes(&closed, &bytes);
        drop(
            sim.open(
                &wal_dir.join(segment::file_name(last + 1)),
                OpenMode::CreateNew,
            )
            .unwrap(),
        );
        sim.sync_dir(wal_dir).unwrap();
        sim.set_space_bytes_max(Some(sim.used_bytes()));
        let opened = open();
        assert!(opened.is_ok(), "{}: {:?}", junk.display(), opened.err());
        assert!(sim.file_bytes(&junk).is_none(), "{}", junk.display());
    }
}
