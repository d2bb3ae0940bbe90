//! # synod-storage: durable storage for Synod
//!
//! One [`Storage`] interface with two implementations:
//!
//! - [`Wal`]: the real one, a write-ahead log of framed, CRC32C-checked
//!   records in segment files with group commit, plus snapshot files and
//!   checkpoint-based compaction (see `wal.rs`);
//! - [`MemStorage`]: in memory, where a crash loses whatever was not synced
//!   (or keeps a prefix of it, as a torn tail would).
//!
//! The WAL and snapshot files go through a small file-system trait, [`Fs`]:
//! [`RealFs`] ships; [`SimFs`] is an in-memory disk for the deterministic
//! simulator that loses, tears and reorders unsynced writes at a crash and
//! injects `EIO` and `ENOSPC` (see `sim_fs.rs`).
//!
//! `tests/all/conformance.rs` runs the same scenarios against both and requires
//! the same recovered state.
//!
//! Every error is fatal to the node (see [`StorageError`]); in particular an
//! fsync error poisons the storage and is never retried.

#![deny(missing_docs)]

mod error;
pub mod frame;
pub mod fs;
mod group_commit;
pub mod identity;
pub mod log_read;
mod mem;
mod newest;
mod recovery;
pub mod segment;
mod sim_fs;
pub mod snapshot_file;
mod trash;
mod wal;

pub use error::StorageError;
pub use fs::{Fs, FsFile, OpenMode, RealFs};
pub use group_commit::GroupCommit;
pub use identity::{read_identity, write_identity, Identity, IdentityError};
pub use log_read::LogRead;
pub use mem::{MemDisk, MemStorage};
pub use sim_fs::{SimFs, SimFsStats, SIM_SECTOR_BYTES};
pub use snapshot_file::WriteRate;
pub use wal::{Obsolete, SyncJob, Wal, WalOptions};

use std::collections::BTreeMap;
use std::path::Path;
use synod_core::{GroupId, Record, Snapshot};

/// What a restart finds: per group the latest durable snapshot, and the
/// records written after it (for every group, in log order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest durable snapshot of each group that has one.
    pub snapshots: BTreeMap<GroupId, Snapshot>,
    /// Records after each group's snapshot, in the order they were appended.
    pub records: Vec<Record>,
    /// Bytes of a torn tail that were cut off (0 after a clean stop).
    pub torn_bytes_cut: u64,
}

impl Recovered {
    /// The records of one group.
    pub fn records_of(&self, group: GroupId) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.group() == group)
    }
}

/// When to snapshot: after this many applied instances or this many bytes of
/// log since the last snapshot, whichever comes first (0 switches a trigger
/// off); and how fast the runtime writes a checkpoint's snapshot file
/// (`Storage::checkpoint`, which writes it in place, does not pace it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Applied instances since the last snapshot.
    pub instances: u64,
    /// Bytes appended to the log since the last snapshot.
    pub log_bytes: u64,
    /// The most bytes a second a checkpoint's snapshot file is written at;
    /// 0: no cap. A write that falls a whole policy interval behind (or
    /// that a stop or a peer waits for) finishes at full speed. See
    /// [`snapshot_file::WriteRate`] for why and what it costs.
    pub write_bytes_per_sec: u64,
}

impl SnapshotPolicy {
    /// The default cap on a snapshot file's write rate, in bytes a second
    /// (see [`SnapshotPolicy::write_bytes_per_sec`]).
    pub const DEFAULT_WRITE_BYTES_PER_SEC: u64 = 128_000_000;
}

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy {
            instances: 10_000,
            log_bytes: 64 << 20,
            write_bytes_per_sec: SnapshotPolicy::DEFAULT_WRITE_BYTES_PER_SEC,
        }
    }
}

impl SnapshotPolicy {
    /// True when a snapshot is due.
    pub fn due(&self, instances_since: u64, log_bytes_since: u64) -> bool {
        (self.instances > 0 && instances_since >= self.instances)
            || (self.log_bytes > 0 && log_bytes_since >= self.log_bytes)
    }
}

/// Where the protocol core's records go.
pub trait Storage {
    /// Appends records after every earlier one. Not durable until `sync`.
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;

    /// Makes every appended record durable. When it returns `Ok`, the core may
    /// be told (`Replica::persisted`); an error is fatal.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Durably replaces `group`'s log with `snapshot` followed by `records`
    /// (the replica's checkpoint records, taken after the snapshot). Every
    /// record appended before is durable when this returns, in the form of the
    /// checkpoint, and space held only by superseded data is reclaimed.
    fn checkpoint(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
        records: &[Record],
    ) -> Result<(), StorageError>;
}

/// Makes `file`, written whole under the temporary name `tmp`, durable under
/// `path` in `dir`: its data synced (with `metadata`, `sync_all`, else
/// `sync_data`), then renamed over `path`, then `dir` synced. The data is
/// durable before the name, so a crash leaves under `path` either what was
/// there before or the whole new file.
pub(crate) fn publish(
    fs: &dyn Fs,
    file: std::sync::Arc<dyn fs::FsFile>,
    tmp: &Path,
    path: &Path,
    dir: &Path,
    metadata: bool,
) -> Result<(), StorageError> {
    let synced = if metadata {
        file.sync_all()
    } else {
        file.sync_data()
    };
    synced.map_err(|e| StorageError::SyncFailed {
        path: tmp.to_path_buf(),
        source: e,
    })?;
    drop(file);
    fs.rename(tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    fsync_dir(fs, dir)
}

/// fsyncs a directory, so that entries created, renamed or removed in it are
/// durable.
pub(crate) fn fsync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    fs.sync_dir(dir).map_err(|e| StorageError::SyncFailed {
        path: dir.to_path_buf(),
        source: e,
    })
}
