//! The conformance suite: the same operations on the real WAL (on the real
//! file system and on the simulated one) and on the in-memory storage must
//! recover the same state, at every restart.

use crate::common;

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;
use synod_core::{GroupId, Record};
use synod_storage::{MemDisk, MemStorage, Recovered, SimFs, Storage, Wal, WalOptions};

/// Where the WAL lives.
enum Disk {
    Real(tempfile::TempDir),
    /// A simulated disk, crashed at each restart (between operations every
    /// write is synced, so a crash must lose nothing the WAL relies on: a
    /// missing file or directory sync would show here).
    Sim(SimFs, Box<ChaCha8Rng>),
}

impl Disk {
    fn real() -> Disk {
        Disk::Real(tempfile::tempdir().unwrap())
    }

    fn sim(seed: u64) -> Disk {
        Disk::Sim(SimFs::new(), Box::new(ChaCha8Rng::seed_from_u64(seed)))
    }

    fn open(&self, opts: &WalOptions) -> (Wal, Recovered) {
        match self {
            Disk::Real(dir) => Wal::open(dir.path(), opts.clone()).unwrap(),
            Disk::Sim(sim, _) => {
                Wal::open_on(Arc::new(sim.clone()), Path::new("/data"), opts.clone()).unwrap()
            }
        }
    }

    /// A restart: the process stops (and on the simulated disk, the power
    /// goes).
    fn restart(&mut self) {
        if let Disk::Sim(sim, rng) = self {
            sim.crash(&mut **rng);
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Record>),
    Sync,
    Checkpoint {
        group: u32,
        records: Vec<Record>,
    },
    /// Stop without syncing and start again (unsynced records are lost).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(common::record(3), 1..4).prop_map(Op::Append),
        3 => Just(Op::Sync),
        1 => (0..3u32, prop::collection::vec(common::record(3), 0..3)).prop_map(|(group, records)| {
            // Checkpoint records belong to the checkpointed group.
            let records = records.into_iter().map(|r| regroup(r, GroupId(group))).collect();
            Op::Checkpoint { group, records }
        }),
        1 => Just(Op::Restart),
    ]
}

fn regroup(record: Record, group: GroupId) -> Record {
    match record {
        Record::Promise { ballot, .. } => Record::Promise { group, ballot },
        Record::Accept {
            instance,
            ballot,
            value,
            ..
        } => Record::Accept {
            group,
            instance,
            ballot,
            value,
        },
        Record::Chosen {
            instance, value, ..
        } => Record::Chosen {
            group,
            instance,
            value,
        },
    }
}

/// Runs `ops` on both implementations, comparing what each restart recovers.
fn run_both(ops: &[Op], opts: WalOptions, mut disk: Disk) -> Result<(), TestCaseError> {
    let (mut wal, from_wal) = disk.open(&opts);
    let (mut mem, from_mem) = MemStorage::open(MemDisk::default());
    prop_assert_eq!(from_wal, from_mem);
    let mut point = 0;
    for op in ops {
        match op {
            Op::Append(records) => {
                wal.append(records).unwrap();
                mem.append(records).unwrap();
            }
            Op::Sync => {
                wal.sync().unwrap();
                mem.sync().unwrap();
            }
            Op::Checkpoint { group, records } => {
                point += 1;
                let snapshot = common::snapshot(point, format!("state {point}").as_bytes());
                wal.checkpoint(GroupId(*group), &snapshot, records).unwrap();
                mem.checkpoint(GroupId(*group), &snapshot, records).unwrap();
            }
            Op::Restart => {
                drop(wal);
                disk.restart();
                let (w, from_wal) = disk.open(&opts);
                let (m, from_mem): (MemStorage, Recovered) = MemStorage::open(mem.crash(0));
                prop_assert_eq!(&from_wal, &from_mem);
                wal = w;
                mem = m;
            }
        }
    }
    drop(wal);
    disk.restart();
    let (_, from_wal) = disk.open(&opts);
    let (_, from_mem) = MemStorage::open(mem.crash(0));
    prop_assert_eq!(from_wal, from_mem);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn wal_and_memory_recover_the_same(ops in prop::collection::vec(op(), 1..30)) {
        run_both(&ops, WalOptions::default(), Disk::real())?;
    }

    #[test]
    fn wal_and_memory_agree_with_tiny_segments(ops in prop::collection::vec(op(), 1..30)) {
        run_both(&ops, WalOptions { segment_bytes_max: 300, ..WalOptions::default() }, Disk::real())?;
    }

    #[test]
    fn wal_on_a_simulated_disk_and_memory_recover_the_same(
        ops in prop::collection::vec(op(), 1..30),
        seed in any::<u64>(),
    ) {
        run_both(&ops, WalOptions::default(), Disk::sim(seed))?;
    }

    #[test]
    fn wal_on_a_simulated_disk_agrees_with_tiny_segments(
        ops in prop::collection::vec(op(), 1..30),
        seed in any::<u64>(),
    ) {
        let opts = WalOptions { segment_bytes_max: 300, preallocate_bytes: 512, ..WalOptions::default() };
        run_both(&ops, opts, Disk::sim(seed))?;
    }
}

#[test]
fn checkpoints_keep_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes_max: 4096,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let group = GroupId(0);
    let mut high_water = 0;
    for round in 1..=50u64 {
        for i in 0..40 {
            let record = Record::Promise {
                group,
                ballot: synod_core::Ballot {
                    round: round * 100 + i,
                    node: synod_core::NodeId(1),
                },
            };
            wal.append(&[record]).unwrap();
            wal.sync().unwrap();
        }
        let snapshot = common::snapshot(round, &[7; 1000]);
        let last = Record::Promise {
            group,
            ballot: synod_core::Ballot {
                round: round * 100 + 39,
                node: synod_core::NodeId(1),
            },
        };
        wal.checkpoint(group, &snapshot, std::slice::from_ref(&last))
            .unwrap();
        high_water = high_water.max(wal.disk_bytes());
        assert!(
            wal.segment_count() <= 2,
            "round {round}: {} segments",
            wal.segment_count()
        );
    }
    // 50 rounds wrote well over 50 KiB; the directory never held more than
    // about one round of log plus one snapshot.
    assert!(high_water < 12_000, "high water {high_water} bytes");
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(recovered.snapshots[&group].meta.applied_end.0, 50);
    assert_eq!(recovered.records.len(), 1);
    let snaps = std::fs::read_dir(dir.path().join("snap")).unwrap().count();
    assert_eq!(snaps, 1, "older snapshot files are removed");
}

#[test]
fn a_damaged_snapshot_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let snapshot = common::snapshot(5, b"important state");
    wal.checkpoint(GroupId(1), &snapshot, &[]).unwrap();
    drop(wal);
    let file = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&file).unwrap();
    // A byte of the data (after the 48-byte header).
    let mut bytes = original.clone();
    bytes[50] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("snapshot data"), "{err}");
    // The last byte: the memberships' trailer.
    let mut bytes = original;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("snapshot memberships"), "{err}");
}

/// A batch whose records grow the WAL's scratch buffer past what it keeps
/// (1 MiB), then small batches and an empty one: every record comes back.
#[test]
fn large_then_small_batches_recover_every_record() {
    use bytes::Bytes;
    use synod_core::{Ballot, InstanceId, NodeId, Value};
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let rec = |i: u64, len: usize| Record::Accept {
        group: GroupId(0),
        instance: InstanceId(i),
        ballot: Ballot {
            round: 1,
            node: NodeId(1),
        },
        value: Value::batch(vec![Bytes::from(vec![i as u8; len])]),
    };
    let mut all = Vec::new();
    let big: Vec<Record> = (0..3).map(|i| rec(i, 700_000)).collect();
    wal.append(&big).unwrap();
    all.extend(big);
    let small: Vec<Record> = (3..6).map(|i| rec(i, 10 + i as usize)).collect();
    wal.append(&small).unwrap();
    all.extend(small);
    wal.append(&[]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.records, all);
}
