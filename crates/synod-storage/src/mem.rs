//! The simulator's storage: the same interface as the WAL, in memory, with
//! crashes that lose unsynced records (or keep a prefix of them, like a torn
//! tail cut at a record boundary).

use crate::{Recovered, Storage, StorageError};
use std::collections::BTreeMap;
use synod_core::{GroupId, Record, Snapshot};

/// What survives a crash: synced records and durable snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemDisk {
    records: Vec<Record>,
    snapshots: BTreeMap<GroupId, Snapshot>,
}

impl MemDisk {
    /// Number of durable records (for size figures).
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

/// In-memory storage over a [`MemDisk`].
#[derive(Debug, Default)]
pub struct MemStorage {
    disk: MemDisk,
    pending: Vec<Record>,
}

impl MemStorage {
    /// Opens storage over what a disk holds, and what a restart recovers.
    pub fn open(disk: MemDisk) -> (MemStorage, Recovered) {
        let recovered = Recovered {
            snapshots: disk.snapshots.clone(),
            records: disk.records.clone(),
            torn_bytes_cut: 0,
        };
        (
            MemStorage {
                disk,
                pending: Vec::new(),
            },
            recovered,
        )
    }

    /// Crashes: the disk keeps what was synced plus the first `keep_unsynced`
    /// records written since (a torn tail; 0 for a clean power cut).
    pub fn crash(self, keep_unsynced: usize) -> MemDisk {
        let mut disk = self.disk;
        disk.records
            .extend(self.pending.into_iter().take(keep_unsynced));
        disk
    }

    /// Records appended but not yet durable.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Makes the first `n` pending records durable: an fsync that covered the
    /// records written before it started.
    pub fn sync_first(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        self.disk.records.extend(self.pending.drain(..n));
    }

    /// The durable state.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }
}

impl Storage for MemStorage {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.pending.extend_from_slice(records);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let n = self.pending.len();
        self.sync_first(n);
        Ok(())
    }

    fn checkpoint(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
        records: &[Record],
    ) -> Result<(), StorageError> {
        // As the WAL: earlier records become durable, the group's old records
        // are superseded by the checkpoint, other groups' records stay.
        self.sync()?;
        self.disk.records.retain(|r| r.group() != group);
        self.disk.records.extend_from_slice(records);
        self.disk.snapshots.insert(group, snapshot.clone());
        Ok(())
    }
}
