//! The simulated file system keeps its model (what a crash keeps and loses),
//! and the WAL on it stops cleanly on every injected fault: `EIO` on fsync,
//! a full disk, a wiped disk.

use crate::common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;
use synod_storage::{
    Fs, FsFile, OpenMode, SimFs, Storage, StorageError, Wal, WalOptions, SIM_SECTOR_BYTES,
};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn setup() -> (SimFs, &'static Path, std::path::PathBuf) {
    let sim = SimFs::new();
    let dir = Path::new("/d");
    sim.create_dir_all(dir).unwrap();
    (sim, dir, dir.join("f"))
}

#[test]
fn synced_data_survives_every_crash() {
    for seed in 0..50 {
        let (sim, dir, path) = setup();
        let file = sim.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"durable", 0).unwrap();
        file.sync_data().unwrap();
        sim.sync_dir(dir).unwrap();
        file.write_all_at(&[7; 2000], 7).unwrap();
        drop(file);
        sim.crash(&mut rng(seed));
        let after = sim.read(&path).unwrap();
        assert_eq!(&after[..7], b"durable", "seed {seed}");
        // Whatever of the unsynced write survived is its bytes or zeros.
        assert!(after[7..].iter().all(|b| *b == 7 || *b == 0), "seed {seed}");
    }
}

#[test]
fn unsynced_writes_are_lost_torn_and_reordered_across_seeds() {
    let mut lost = false;
    let mut kept = false;
    let mut torn_inside_a_sector = false;
    let mut out_of_order = false;
    for seed in 0..200 {
        let (sim, dir, path) = setup();
        let file = sim.open(&path, OpenMode::CreateNew).unwrap();
        file.sync_data().unwrap();
        sim.sync_dir(dir).unwrap();
        let len = 4 * SIM_SECTOR_BYTES as usize;
        file.write_all_at(&vec![1; len], 0).unwrap();
        drop(file);
        sim.crash(&mut rng(seed));
        let after = sim.read(&path).unwrap();
        let ones = after.iter().filter(|b| **b == 1).count();
        lost |= ones == 0;
        kept |= ones == len;
        let sectors: Vec<usize> = after
            .chunks(SIM_SECTOR_BYTES as usize)
            .map(|s| s.iter().filter(|b| **b == 1).count())
            .collect();
        torn_inside_a_sector |= sectors
            .iter()
            .any(|n| *n > 0 && *n < SIM_SECTOR_BYTES as usize);
        // A later sector kept while an earlier one was lost.
        out_of_order |= sectors.windows(2).any(|w| w[0] == 0 && w[1] > 0);
    }
    assert!(lost && kept && torn_inside_a_sector && out_of_order);
}

#[test]
fn names_are_durable_only_after_a_directory_sync() {
    let mut created_lost = false;
    for seed in 0..50 {
        let (sim, dir, path) = setup();
        let file = sim.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"x", 0).unwrap();
        file.sync_all().unwrap();
        drop(file);
        sim.crash(&mut rng(seed));
        created_lost |= sim.read(&path).is_err();
        // After a directory sync, a rename is durable.
        let tmp = dir.join("tmp");
        let file = sim.open(&tmp, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"y", 0).unwrap();
        file.sync_all().unwrap();
        drop(file);
        sim.rename(&tmp, &dir.join("z")).unwrap();
        sim.sync_dir(dir).unwrap();
        sim.crash(&mut rng(seed + 1000));
        assert_eq!(sim.read(&dir.join("z")).unwrap(), b"y");
        assert!(sim.read(&tmp).is_err());
    }
    assert!(created_lost, "an unsynced create was lost in some crash");
}

/// An empty durable file with "lost" written into it, unsynced, and the
/// next fsync armed to fail; `fail` must meet that EIO (then a sync
/// "succeeds", as on Linux), and no crash may find the bytes.
fn a_failed_write_is_lost(fail: impl FnOnce(&dyn FsFile) -> std::io::Result<()>) {
    let (sim, dir, path) = setup();
    let file = sim.open(&path, OpenMode::CreateNew).unwrap();
    file.sync_data().unwrap();
    sim.sync_dir(dir).unwrap();
    file.write_all_at(b"lost", 0).unwrap();
    sim.fail_fsync_after(0);
    let err = fail(&*file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    file.sync_data().unwrap();
    drop(file);
    for seed in 0..20 {
        let copy = sim.clone();
        copy.crash(&mut rng(seed));
        assert_eq!(copy.read(&path).unwrap(), b"", "seed {seed}");
    }
}

#[test]
fn a_failed_fsync_is_never_made_good_by_a_later_one() {
    a_failed_write_is_lost(|file| file.sync_data());
}

/// A waiting write-back that takes the injected EIO is a failed write, as
/// on Linux (the write-back error is reported to that call): the sync after
/// it succeeds, and the data is not on disk.
#[test]
fn a_failed_write_back_is_never_made_good_by_a_later_sync() {
    a_failed_write_is_lost(|file| {
        // One that does not wait takes no EIO.
        file.write_back(0, 4, false)?;
        file.write_back(0, 4, true)
    });
}

#[test]
fn stale_handles_fail_after_a_crash_or_wipe() {
    let (sim, _, path) = setup();
    let file = sim.open(&path, OpenMode::CreateNew).unwrap();
    sim.crash(&mut rng(1));
    assert!(file.write_all_at(b"late", 0).is_err());
    sim.wipe();
    assert!(sim.files().is_empty());
    assert!(sim.read_dir(Path::new("/d")).is_err());
}

fn sim_wal(sim: &SimFs, opts: WalOptions) -> Result<(Wal, synod_storage::Recovered), StorageError> {
    Wal::open_on(Arc::new(sim.clone()), Path::new("/node"), opts)
}

#[test]
fn the_wal_stops_cleanly_when_fsync_fails() {
    let sim = SimFs::new();
    let (mut wal, _) = sim_wal(&sim, WalOptions::default()).unwrap();
    let durable: Vec<_> = (0..3).map(common::fixed_record).collect();
    wal.append(&durable).unwrap();
    wal.sync().unwrap();
    wal.append(&[common::fixed_record(3)]).unwrap();
    sim.fail_fsync_after(0);
    let err = wal.sync().unwrap_err();
    assert!(matches!(err, StorageError::SyncFailed { .. }), "{err}");
    assert!(wal.is_poisoned());
    // Never retried: every later call is refused.
    assert!(matches!(
        wal.append(&[common::fixed_record(4)]),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(wal.sync(), Err(StorageError::Poisoned)));
    let snapshot = common::snapshot(1, b"s");
    assert!(matches!(
        wal.checkpoint(synod_core::GroupId(0), &snapshot, &[]),
        Err(StorageError::Poisoned)
    ));
    drop(wal);
    sim.crash(&mut rng(3));
    let (_, recovered) = sim_wal(&sim, WalOptions::default()).unwrap();
    assert_eq!(recovered.records, durable);
}

#[test]
fn the_wal_stops_cleanly_when_the_disk_is_full() {
    for preallocate_bytes in [0, 4096] {
        let sim = SimFs::new();
        let opts = WalOptions {
            segment_bytes_max: 2048,
            preallocate_bytes,
            ..WalOptions::default()
        };
        let (mut wal, _) = sim_wal(&sim, opts.clone()).unwrap();
        sim.set_space_bytes_max(Some(sim.used_bytes() + 3000));
        let mut durable = Vec::new();
        let (err, last) = loop {
            let record = common::fixed_record(durable.len() as u64);
            wal.append(std::slice::from_ref(&record)).unwrap();
            match wal.sync() {
                Ok(()) => durable.push(record),
                Err(err) => break (err, record),
            }
            assert!(durable.len() < 1000, "the disk never filled");
        };
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(wal.is_poisoned());
        assert!(matches!(wal.sync(), Err(StorageError::Poisoned)));
        drop(wal);
        // Room again (an operator freed space): everything acknowledged is there.
        sim.set_space_bytes_max(None);
        sim.crash(&mut rng(5));
        let (_, recovered) = sim_wal(&sim, opts).unwrap();
        // The failed call may have made its record durable before failing
        // (the disk filled when the segment rolled after the write).
        let with_last = [durable.clone(), vec![last]].concat();
        assert!(
            recovered.records == durable || recovered.records == with_last,
            "preallocate {preallocate_bytes}: {} records recovered, {} acknowledged",
            recovered.records.len(),
            durable.len()
        );
    }
}

#[test]
fn a_snapshot_that_does_not_fit_stops_the_checkpoint_cleanly() {
    let sim = SimFs::new();
    let (mut wal, _) = sim_wal(&sim, WalOptions::default()).unwrap();
    let durable = [common::fixed_record(1)];
    wal.append(&durable).unwrap();
    wal.sync().unwrap();
    sim.set_space_bytes_max(Some(sim.used_bytes() + 100));
    let snapshot = common::snapshot(9, &[1; 1000]);
    let err = wal
        .checkpoint(synod_core::GroupId(0), &snapshot, &durable)
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(wal.is_poisoned());
    drop(wal);
    sim.set_space_bytes_max(None);
    sim.crash(&mut rng(2));
    let (_, recovered) = sim_wal(&sim, WalOptions::default()).unwrap();
    assert_eq!(recovered.records, durable);
    assert!(recovered.snapshots.is_empty());
}

#[test]
fn a_wiped_disk_opens_empty() {
    let sim = SimFs::new();
    let (mut wal, _) = sim_wal(&sim, WalOptions::default()).unwrap();
    wal.append(&[common::fixed_record(1)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    sim.wipe();
    let (_, recovered) = sim_wal(&sim, WalOptions::default()).unwrap();
    assert!(recovered.records.is_empty() && recovered.snapshots.is_empty());
}

#[test]
fn counters_count_bytes_and_fsyncs() {
    let sim = SimFs::new();
    let (mut wal, _) = sim_wal(
        &sim,
        WalOptions {
            preallocate_bytes: 0,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let before = sim.stats();
    wal.append(&[common::fixed_record(1)]).unwrap();
    wal.sync().unwrap();
    let after = sim.stats();
    assert_eq!(after.fsyncs, before.fsyncs + 1, "group commit: one fsync");
    assert!(after.bytes_written > before.bytes_written);
}
