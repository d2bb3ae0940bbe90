//! Shared generators for the storage tests.
#![allow(dead_code)]

use bytes::Bytes;
use proptest::prelude::*;
use synod_core::*;

pub fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4)
            .prop_map(|cs| Value::batch(cs.into_iter().map(Bytes::from).collect())),
    ]
}

pub fn record(groups: u32) -> impl Strategy<Value = Record> {
    let group = (0..groups).prop_map(GroupId);
    let ballot = (0..100u64, 0..5u32).prop_map(|(round, node)| Ballot {
        round,
        node: NodeId(node),
    });
    prop_oneof![
        (group.clone(), ballot.clone())
            .prop_map(|(group, ballot)| Record::Promise { group, ballot }),
        (group.clone(), 0..1000u64, ballot, value()).prop_map(|(group, i, ballot, value)| {
            Record::Accept {
                group,
                instance: InstanceId(i),
                ballot,
                value,
            }
        }),
        (group, 0..1000u64, value()).prop_map(|(group, i, value)| Record::Chosen {
            group,
            instance: InstanceId(i),
            value: ChosenValue::Learned(value),
        }),
    ]
}

pub fn snapshot(applied_end: u64, data: &[u8]) -> Snapshot {
    Snapshot {
        memberships: Some(synod_core::Schedule::new(
            InstanceId(0),
            synod_core::Membership::bootstrap(&[synod_core::NodeId(1), synod_core::NodeId(2)]),
        )),
        meta: SnapshotMeta {
            applied_end: InstanceId(applied_end),
            checksum: Checksum(applied_end * 31 + 7),
        },
        data: Bytes::copy_from_slice(data),
    }
}

/// A record that depends only on `i` (an Accept at instance `i`).
pub fn fixed_record(i: u64) -> Record {
    Record::Accept {
        group: synod_core::GroupId(0),
        instance: synod_core::InstanceId(i),
        ballot: synod_core::Ballot {
            round: 1,
            node: synod_core::NodeId(1),
        },
        value: Value::batch(vec![bytes::Bytes::from(format!("command {i}"))]),
    }
}

/// The disk a test's WAL lives on: the real file system (a temporary
/// directory) or a simulated one. Tests tamper with files through it.
pub enum TestDisk {
    Real(tempfile::TempDir),
    Sim(synod_storage::SimFs),
}

impl TestDisk {
    pub fn real() -> TestDisk {
        TestDisk::Real(tempfile::tempdir().unwrap())
    }

    pub fn sim() -> TestDisk {
        TestDisk::Sim(synod_storage::SimFs::new())
    }

    /// Both kinds, for tests that run on each.
    pub fn both() -> [TestDisk; 2] {
        [TestDisk::real(), TestDisk::sim()]
    }

    pub fn dir(&self) -> std::path::PathBuf {
        match self {
            TestDisk::Real(dir) => dir.path().to_path_buf(),
            TestDisk::Sim(_) => std::path::PathBuf::from("/data"),
        }
    }

    pub fn open(
        &self,
        opts: synod_storage::WalOptions,
    ) -> Result<(synod_storage::Wal, synod_storage::Recovered), synod_storage::StorageError> {
        match self {
            TestDisk::Real(dir) => synod_storage::Wal::open(dir.path(), opts),
            TestDisk::Sim(sim) => {
                synod_storage::Wal::open_on(std::sync::Arc::new(sim.clone()), &self.dir(), opts)
            }
        }
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> Vec<std::path::PathBuf> {
        let wal = self.dir().join("wal");
        let mut out: Vec<_> = match self {
            TestDisk::Real(_) => std::fs::read_dir(&wal)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect(),
            TestDisk::Sim(sim) => sim
                .files()
                .into_iter()
                .filter(|p| p.parent() == Some(wal.as_path()))
                .collect(),
        };
        // Segments only (`wal/NEWEST` records the newest of them).
        out.retain(|p| p.extension().is_some_and(|e| e == "wal"));
        out.sort();
        out
    }

    pub fn newest_segment(&self) -> std::path::PathBuf {
        self.segments().pop().unwrap()
    }

    pub fn read(&self, path: &std::path::Path) -> Vec<u8> {
        match self {
            TestDisk::Real(_) => std::fs::read(path).unwrap(),
            TestDisk::Sim(sim) => sim.file_bytes(path).unwrap(),
        }
    }

    /// Replaces a file's content (as a crash or damage would leave it).
    pub fn write(&self, path: &std::path::Path, bytes: &[u8]) {
        match self {
            TestDisk::Real(_) => std::fs::write(path, bytes).unwrap(),
            TestDisk::Sim(sim) => assert!(sim.set_file_bytes(path, bytes)),
        }
    }

    pub fn len(&self, path: &std::path::Path) -> u64 {
        self.read(path).len() as u64
    }

    pub fn set_len(&self, path: &std::path::Path, len: u64) {
        let mut bytes = self.read(path);
        bytes.resize(len as usize, 0);
        self.write(path, &bytes);
    }

    pub fn remove(&self, path: &std::path::Path) {
        match self {
            TestDisk::Real(_) => std::fs::remove_file(path).unwrap(),
            TestDisk::Sim(sim) => assert!(sim.remove_durably(path)),
        }
    }
}

/// The log segments of the node directory `dir` on the real file system,
/// oldest first (`wal/NEWEST`, the record of the newest, is not one).
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments
}
