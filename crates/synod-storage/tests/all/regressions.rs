//! Regression tests of issue 12 (items 1 and 3), on the real file system.
//! They use only the API the first release had, so they run against it too
//! (and fail there).

use crate::common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use synod_core::{Ballot, GroupId, InstanceId, NodeId, Record, Value};
use synod_storage::{segment, Storage, Wal, WalOptions};

fn newest_segment(dir: &Path) -> PathBuf {
    common::segment_files(dir).pop().unwrap()
}

/// An acceptor's durable state: a promise and an accepted value.
fn acceptor_state() -> Vec<Record> {
    let group = GroupId(0);
    let ballot = Ballot {
        round: 7,
        node: NodeId(2),
    };
    vec![
        Record::Promise { group, ballot },
        Record::Accept {
            group,
            instance: InstanceId(12),
            ballot,
            value: Value::batch(vec![bytes::Bytes::from_static(b"SET x 1")]),
        },
    ]
}

/// Writes the acceptor state durably, then a checkpoint at instance 10 whose
/// live records are that same state, and stops before deleting what the
/// checkpoint superseded (a crash cutting the checkpoint's write happens
/// before that). Returns the segment holding the checkpoint and where its
/// data ends.
fn checkpoint_after_durable_state(dir: &Path, opts: &WalOptions) -> (PathBuf, u64) {
    let (mut wal, _) = Wal::open(dir, opts.clone()).unwrap();
    write_checkpoint(&mut wal);
    drop(wal);
    // Where the checkpoint's data ends: the same log without preallocation
    // is exactly that long.
    let reference = tempfile::tempdir().unwrap();
    let exact = WalOptions {
        preallocate_bytes: 0,
        ..opts.clone()
    };
    let (mut wal, _) = Wal::open(reference.path(), exact).unwrap();
    wal.append(&acceptor_state()).unwrap();
    wal.sync().unwrap();
    wal.checkpoint(
        GroupId(0),
        &common::snapshot(10, b"state at 10"),
        &acceptor_state(),
    )
    .unwrap();
    drop(wal);
    let end = fs::metadata(newest_segment(reference.path()))
        .unwrap()
        .len();
    (newest_segment(dir), end)
}

fn write_checkpoint(wal: &mut Wal) {
    wal.append(&acceptor_state()).unwrap();
    wal.sync().unwrap();
    let snapshot = common::snapshot(10, b"state at 10");
    wal.write_snapshot(GroupId(0), &snapshot).unwrap();
    let superseded = wal
        .checkpoint_written(GroupId(0), snapshot.meta, &acceptor_state())
        .unwrap();
    // Not removed: the crash comes first.
    drop(superseded);
}

/// Issue 12 item 1: a power cut inside a checkpoint's write (the marker on
/// disk, its records cut short) must not make the acceptor forget its
/// promise and accepted value. Every cut strictly inside the checkpoint's
/// batch recovers the state from before the checkpoint.
#[test]
fn a_checkpoint_cut_short_keeps_the_durable_promise_and_accept() {
    let opts = WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    };
    let template = tempfile::tempdir().unwrap();
    let (path, end) = checkpoint_after_durable_state(template.path(), &opts);
    let original = fs::read(&path).unwrap();
    assert_eq!(original.len() as u64, end);
    // Cut anywhere after the header (so the marker may survive) and before
    // the last byte.
    for cut in segment::HEADER_BYTES as u64 + 1..end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let segment = newest_segment(dir.path());
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (_, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(
            recovered.records,
            acceptor_state(),
            "cut at {cut} of {end}: the promise and the accepted value were forgotten"
        );
        assert!(recovered.snapshots.is_empty(), "cut at {cut}");
    }
}

/// The same with preallocation: the lost tail reads as zeros, which the old
/// recovery took for unused space without a word.
#[test]
fn a_checkpoint_cut_short_into_allocated_zeros_keeps_the_durable_state() {
    let opts = WalOptions::default();
    let template = tempfile::tempdir().unwrap();
    let (path, end) = checkpoint_after_durable_state(template.path(), &opts);
    let allocated = fs::metadata(&path).unwrap().len();
    assert!(allocated > end, "preallocated");
    for cut in segment::HEADER_BYTES as u64 + 1..end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let segment = newest_segment(dir.path());
        let mut bytes = fs::read(&segment).unwrap();
        // The segment's salt is random, so the last bytes of the end frame's
        // checksum are zeros now and then (1 run in 256 for the last byte):
        // zeros written over zeros damage nothing, and the finished
        // checkpoint must then be read as such.
        let unchanged = bytes[cut as usize..end as usize].iter().all(|&b| b == 0);
        bytes[cut as usize..].fill(0);
        fs::write(&segment, &bytes).unwrap();
        let (_, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
        if unchanged {
            assert_eq!(recovered.snapshots.len(), 1, "zeros over zeros from {cut}");
            continue;
        }
        assert_eq!(
            recovered.records,
            acceptor_state(),
            "zeros from {cut} of {end}"
        );
        assert!(recovered.snapshots.is_empty(), "zeros from {cut}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Issue 12 item 3: a segment roll in `finish_sync` while appends made during
/// the sync job are pending (the test profile used to panic on a wrong
/// assertion); everything is recovered.
#[test]
fn a_roll_with_appends_pending_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes_max: 64,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let records: Vec<_> = (0..6).map(common::fixed_record).collect();
    wal.append(&records[..2]).unwrap();
    let job = wal.begin_sync().unwrap().expect("bytes to sync");
    // Appends arrive while the job runs (as in the runtime's group commit).
    wal.append(&records[2..4]).unwrap();
    let result = job.run();
    wal.finish_sync(job, result).unwrap();
    assert_eq!(wal.segment_count(), 2, "the full segment rolled");
    wal.append(&records[4..]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(recovered.records, records);
}

/// Cuts the newest segment a few bytes before its end: the last batch (a
/// checkpoint's) loses its end frame.
fn tear_newest_segment(dir: &Path) {
    let segment = newest_segment(dir);
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
}

/// Two unfinished checkpoints in a row, with appends after each restart,
/// then a finished one: nothing acknowledged is lost at any step, the
/// unfinished checkpoints are ignored wherever they sit (newest segment or
/// older), and the finished one supersedes everything.
#[test]
fn unfinished_checkpoints_with_appends_after_them_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    };
    let group = GroupId(0);
    let other = Record::Promise {
        group: GroupId(1),
        ballot: Ballot {
            round: 3,
            node: NodeId(1),
        },
    };
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let mut expected = acceptor_state();
    expected.push(other.clone());
    wal.append(&expected).unwrap();
    wal.sync().unwrap();
    for round in 1..=2u64 {
        let snapshot = common::snapshot(round, b"never finished");
        wal.write_snapshot(group, &snapshot).unwrap();
        let superseded = wal
            .checkpoint_written(group, snapshot.meta, &acceptor_state())
            .unwrap();
        drop(superseded);
        drop(wal);
        tear_newest_segment(dir.path());
        let (reopened, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(recovered.records, expected, "round {round}");
        assert!(recovered.snapshots.is_empty(), "round {round}");
        wal = reopened;
        // Appends after the restart follow the unfinished checkpoint in
        // the same segment.
        let more = common::fixed_record(round);
        wal.append(std::slice::from_ref(&more)).unwrap();
        wal.sync().unwrap();
        expected.push(more);
        drop(wal);
        let (reopened, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(recovered.records, expected, "round {round}, after appends");
        wal = reopened;
    }
    // A finished checkpoint supersedes the group's records; the other
    // group's stay (and keep the oldest segment).
    let snapshot = common::snapshot(3, b"finished");
    let live = [common::fixed_record(2)];
    wal.checkpoint(group, &snapshot, &live).unwrap();
    assert_eq!(
        wal.segment_count(),
        4,
        "group 1 still needs the first segment"
    );
    drop(wal);
    let (mut wal, recovered) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(recovered.snapshots[&group], snapshot);
    assert_eq!(recovered.records, vec![other.clone(), live[0].clone()]);
    // Once group 1 checkpoints too, the segments holding the unfinished
    // checkpoints go.
    let other_snapshot = common::snapshot(1, b"group 1");
    wal.checkpoint(GroupId(1), &other_snapshot, std::slice::from_ref(&other))
        .unwrap();
    assert_eq!(wal.segment_count(), 2);
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(recovered.snapshots.len(), 2);
    assert_eq!(recovered.records, vec![live[0].clone(), other]);
}

/// A batch with a record too large for a frame appends nothing, not even
/// the records framed before it (each record is now encoded straight into
/// the batch, so the frames before it must be cut back out); the log goes on
/// with the next append.
#[test]
fn a_record_too_large_appends_nothing_of_its_batch() {
    use synod_storage::frame::FRAME_PAYLOAD_BYTES_MAX;
    use synod_storage::StorageError;
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let records: Vec<_> = (0..3).map(common::fixed_record).collect();
    wal.append(&records[..1]).unwrap();
    let huge = Record::Accept {
        group: GroupId(0),
        instance: InstanceId(99),
        ballot: Ballot {
            round: 1,
            node: NodeId(1),
        },
        value: Value::batch(vec![bytes::Bytes::from(vec![0u8; FRAME_PAYLOAD_BYTES_MAX])]),
    };
    let err = wal
        .append(&[records[1].clone(), huge])
        .expect_err("a record over the frame limit");
    assert!(
        matches!(err, StorageError::RecordTooLarge { bytes, max }
            if bytes > FRAME_PAYLOAD_BYTES_MAX && max == FRAME_PAYLOAD_BYTES_MAX),
        "{err}"
    );
    wal.append(&records[2..]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(
        recovered.records,
        vec![records[0].clone(), records[2].clone()]
    );
}
