//! Storage errors. Every one of them is fatal to the node: the runtime logs it
//! and stops; none is retried.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// What went wrong with the disk.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An I/O call other than fsync failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// fsync/fdatasync failed. The kernel may have dropped the dirty pages, so
    /// a retry could report success for data that is gone: never retry, stop.
    #[error("fsync failed on {path}: {source}; the page cache can no longer be trusted: stopping (restart the node to recover from what is on disk)")]
    SyncFailed {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Data on disk is damaged in a way a crash cannot explain.
    #[error("corrupt data in {path} at offset {offset}: {reason}. The node refuses to start rather than guess. Restore this node's data directory from a backup, or move it away and restart the node with --rebuild: it rejoins as a non-voting member, catches up from its peers and votes again once that is safe")]
    Corrupt {
        /// The damaged file (or directory).
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier failure (an fsync or any other file operation) stopped
    /// this storage; it accepts nothing more.
    #[error("storage stopped after an earlier failure (see the first error logged)")]
    Poisoned,
    /// A record too large for one log frame; nothing of the call was
    /// appended. Values are bounded far below this before they reach the
    /// log, so this is a bug upstream, reported rather than a panic.
    #[error("record of {bytes} bytes exceeds the log's frame limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded record's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
