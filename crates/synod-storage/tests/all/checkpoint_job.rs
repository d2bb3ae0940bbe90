//! A checkpoint's marker step run as a job off the caller's thread
//! (`Wal::begin_checkpoint`): appends made while it runs, a crash before it
//! ran or part way, and the one-job-at-a-time rule.

use crate::common;

use std::path::Path;
use synod_core::{GroupId, Record};
use synod_storage::{Storage, Wal, WalOptions};

fn segments(dir: &Path) -> usize {
    common::segment_files(dir).len()
}

fn records(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(common::fixed_record).collect()
}

/// Records appended while the marker job runs are not synced before it
/// ends and follow its end frame: after a restart the checkpoint holds, its
/// records come first, then those appends; what was appended before the
/// job is superseded by the checkpoint, and the job deleted nothing itself.
#[test]
fn appends_made_while_a_checkpoint_job_runs_follow_it() {
    for preallocate_bytes in [0, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            preallocate_bytes,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        wal.append(&records(0..3)).unwrap();
        wal.sync().unwrap();
        let snapshot = common::snapshot(10, b"state at 10");
        wal.write_snapshot(GroupId(0), &snapshot).unwrap();
        // Appended, not synced, before the checkpoint: the job writes them
        // first, into the segment it closes.
        wal.append(&records(3..5)).unwrap();
        let live = records(10..12);
        let job = wal
            .begin_checkpoint(GroupId(0), snapshot.meta, live.clone())
            .unwrap();
        assert!(job.is_checkpoint());
        // While it runs: appends wait, no other sync, no second checkpoint.
        let during = records(12..15);
        wal.append(&during).unwrap();
        assert!(wal.begin_sync().unwrap().is_none(), "one job at a time");
        assert!(wal
            .begin_checkpoint(GroupId(0), snapshot.meta, live.clone())
            .is_err());
        let before = segments(dir.path());
        let result = job.run();
        assert_eq!(segments(dir.path()), before + 1, "a fresh segment");
        wal.finish_sync(job, result).unwrap();
        let obsolete = wal.take_checkpointed().expect("what it superseded");
        assert!(wal.take_checkpointed().is_none(), "handed out once");
        wal.sync().unwrap();
        obsolete.remove().unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(
            recovered.snapshots.get(&GroupId(0)).map(|s| s.meta),
            Some(snapshot.meta),
            "preallocate {preallocate_bytes}"
        );
        let mut expected = live.clone();
        expected.extend(during.clone());
        assert_eq!(
            recovered.records, expected,
            "preallocate {preallocate_bytes}"
        );
    }
}

/// A crash before the job ran, or after it ran but before the caller heard
/// (the process gone, nothing deleted): the first recovers the state before
/// the checkpoint (its records appended before the job are lost only if
/// unsynced, as any unsynced append), the second the checkpoint.
#[test]
fn a_crash_around_the_checkpoint_job_recovers_one_state_or_the_other() {
    let opts = WalOptions::default();
    // The job never ran.
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    wal.append(&records(0..3)).unwrap();
    wal.sync().unwrap();
    let snapshot = common::snapshot(10, b"state at 10");
    wal.write_snapshot(GroupId(0), &snapshot).unwrap();
    let job = wal
        .begin_checkpoint(GroupId(0), snapshot.meta, records(10..12))
        .unwrap();
    drop(job);
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert!(recovered.snapshots.is_empty());
    assert_eq!(recovered.records, records(0..3));

    // The job ran; its report never came.
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    wal.append(&records(0..3)).unwrap();
    wal.sync().unwrap();
    wal.write_snapshot(GroupId(0), &snapshot).unwrap();
    let job = wal
        .begin_checkpoint(GroupId(0), snapshot.meta, records(10..12))
        .unwrap();
    job.run().unwrap();
    drop(job);
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(
        recovered.snapshots.get(&GroupId(0)).map(|s| s.meta),
        Some(snapshot.meta)
    );
    assert_eq!(recovered.records, records(10..12));
}
