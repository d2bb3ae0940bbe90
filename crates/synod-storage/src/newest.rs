//! `wal/NEWEST`: the index of the newest segment the log has made durable.
//!
//! A segment's data cannot tell recovery that the segment is missing, or
//! that it was emptied after it was written: an emptied newest segment
//! reads as one whose creation a crash cut short, a deleted one as no
//! segment at all. Before this file (stop 62), a node whose only segment was
//! emptied started with no promises and voted. So each new segment is
//! recorded here once it is durable (its header synced, its directory
//! entry synced), and recovery refuses a log whose segments end before the
//! recorded one, or whose recorded segment reads as never created.
//!
//! Order: the segment is durable before this file names it, so after any
//! crash the file names the newest segment or the one before it (when the
//! crash fell between the two), never one that does not exist. It is
//! replaced by a rename: a crash leaves the old or the new content whole.
//! Layout: the index (8 bytes LE), then the CRC32C of those 8 bytes.

use crate::error::StorageError;
use crate::fs::{Fs, OpenMode};
use crate::publish;
use std::path::Path;

/// The file's name in the log's directory.
pub(crate) const NAME: &str = "NEWEST";
const TMP_NAME: &str = "NEWEST.tmp";
const BYTES: usize = 12;

/// The recorded newest segment; `None` where the file does not exist (a
/// log written before it, or one whose first segment's record a crash
/// cut short).
pub(crate) fn read(fs: &dyn Fs, wal_dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = wal_dir.join(NAME);
    let bytes = match fs.read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let damaged = || {
        StorageError::corrupt(
            &path,
            0,
            "the record of the newest log segment is damaged (a crash cannot tear it: it is \
             replaced by a rename); if the segments are known whole, deleting this file lets the \
             log open",
        )
    };
    if bytes.len() != BYTES {
        return Err(damaged());
    }
    let (index, crc) = bytes.split_at(8);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| damaged())?);
    if crc32c::crc32c(index) != crc {
        return Err(damaged());
    }
    Ok(Some(u64::from_le_bytes(
        index.try_into().map_err(|_| damaged())?,
    )))
}

/// Records `index` as the newest durable segment.
pub(crate) fn write(fs: &dyn Fs, wal_dir: &Path, index: u64) -> Result<(), StorageError> {
    let tmp = wal_dir.join(TMP_NAME);
    let path = wal_dir.join(NAME);
    let mut bytes = Vec::with_capacity(BYTES);
    bytes.extend_from_slice(&index.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&index.to_le_bytes()).to_le_bytes());
    let file = fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| StorageError::io(&tmp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| StorageError::io(&tmp, e))?;
    publish(fs, file, &tmp, &path, wal_dir, false)
}
