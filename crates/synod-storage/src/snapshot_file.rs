//! Snapshot files: `snap/<group>-<applied_end>.snap`, written to a temporary
//! name, fsynced, renamed, and the directory fsynced, so a snapshot file either
//! exists whole or not at all.
//!
//! Every function has an `_on` form that goes through a given [`Fs`] (the
//! simulator's); the plain form uses [`RealFs`].

use crate::error::StorageError;
use crate::fs::{Fs, OpenMode, RealFs};
use crate::fsync_dir;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::path::{Path, PathBuf};
use synod_core::codec::{Decode, Encode};
use synod_core::{Checksum, GroupId, InstanceId, Schedule, Snapshot, SnapshotMeta};

const MAGIC: &[u8; 8] = b"SYNODSNP";
/// Version 2 adds a trailer after the data: the snapshot's memberships
/// (`u32` length, `u32` CRC32C, then the schedule's encoding; length 0 for
/// none). Version 1 files (no trailer) are still read, as a snapshot
/// without memberships.
const VERSION: u32 = 2;
const VERSION_1: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 4;

/// The file name of a group's snapshot at a point.
pub fn file_name(group: GroupId, applied_end: InstanceId) -> String {
    format!("{:010}-{:020}.snap", group.0, applied_end.0)
}

/// Parses a snapshot file name.
pub fn parse_name(name: &str) -> Option<(GroupId, InstanceId)> {
    let stem = name.strip_suffix(".snap")?;
    let (group, point) = stem.split_once('-')?;
    Some((
        GroupId(group.parse().ok()?),
        InstanceId(point.parse().ok()?),
    ))
}

/// Writes a snapshot durably. Returns its path.
pub fn write(dir: &Path, group: GroupId, snapshot: &Snapshot) -> Result<PathBuf, StorageError> {
    write_on(&RealFs, dir, group, snapshot)
}

/// [`write()`] through `fs`.
pub fn write_on(
    fs: &dyn Fs,
    dir: &Path,
    group: GroupId,
    snapshot: &Snapshot,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(file_name(group, snapshot.meta.applied_end));
    let tmp = dir.join(format!(
        "{}.tmp",
        file_name(group, snapshot.meta.applied_end)
    ));
    let mut header = BytesMut::with_capacity(HEADER_BYTES);
    header.put_slice(MAGIC);
    header.put_u32_le(VERSION);
    header.put_u32_le(group.0);
    header.put_u64_le(snapshot.meta.applied_end.0);
    header.put_u64_le(snapshot.meta.checksum.0);
    header.put_u64_le(snapshot.data.len() as u64);
    header.put_u32_le(crc32c::crc32c(&snapshot.data));
    let header_crc = crc32c::crc32c(&header);
    header.put_u32_le(header_crc);
    let file = fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| StorageError::io(&tmp, e))?;
    let schedule = snapshot
        .memberships
        .as_ref()
        .map_or_else(Bytes::new, |s| s.to_bytes());
    let mut trailer = BytesMut::with_capacity(8 + schedule.len());
    trailer.put_u32_le(schedule.len() as u32);
    trailer.put_u32_le(crc32c::crc32c(&schedule));
    trailer.put_slice(&schedule);
    let trailer_at = (HEADER_BYTES + snapshot.data.len()) as u64;
    file.write_all_at(&header, 0)
        .and_then(|_| file.write_all_at(&snapshot.data, HEADER_BYTES as u64))
        .and_then(|_| file.write_all_at(&trailer, trailer_at))
        .map_err(|e| StorageError::io(&tmp, e))?;
    // The data is durable before the name: a crash leaves either no file
    // under the final name or the whole file.
    file.sync_all().map_err(|e| StorageError::SyncFailed {
        path: tmp.clone(),
        source: e,
    })?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, e))?;
    fsync_dir(fs, dir)?;
    Ok(path)
}

/// The data of the snapshot file `path` (as [`write_on`] returned it) that
/// holds `len` bytes of data, mapped read-only (see [`Fs::map`]); `None`
/// where `fs` does not map.
pub fn map_data_on(fs: &dyn Fs, path: &Path, len: usize) -> Result<Option<Bytes>, StorageError> {
    fs.map(path, HEADER_BYTES as u64, len)
        .map_err(|e| StorageError::io(path, e))
}

/// Reads and verifies the snapshot of `group` at `meta`.
pub fn read(dir: &Path, group: GroupId, meta: SnapshotMeta) -> Result<Snapshot, StorageError> {
    read_on(&RealFs, dir, group, meta)
}

/// [`read`] through `fs`.
pub fn read_on(
    fs: &dyn Fs,
    dir: &Path,
    group: GroupId,
    meta: SnapshotMeta,
) -> Result<Snapshot, StorageError> {
    let path = dir.join(file_name(group, meta.applied_end));
    let bytes = fs.read(&path).map_err(|e| {
        StorageError::corrupt(
            &path,
            0,
            format!("the log names this snapshot but it cannot be read: {e}"),
        )
    })?;
    let mut bytes = Bytes::from(bytes);
    if bytes.len() < HEADER_BYTES {
        return Err(StorageError::corrupt(&path, 0, "snapshot header truncated"));
    }
    let header_crc = crc32c::crc32c(&bytes[..HEADER_BYTES - 4]);
    let mut header = bytes.split_to(HEADER_BYTES);
    if &header[..8] != MAGIC {
        return Err(StorageError::corrupt(&path, 0, "not a snapshot file"));
    }
    header.advance(8);
    let version = header.get_u32_le();
    let file_group = GroupId(header.get_u32_le());
    let applied_end = InstanceId(header.get_u64_le());
    let checksum = Checksum(header.get_u64_le());
    let len = header.get_u64_le();
    let data_crc = header.get_u32_le();
    if header.get_u32_le() != header_crc {
        return Err(StorageError::corrupt(
            &path,
            0,
            "snapshot header CRC mismatch",
        ));
    }
    if version != VERSION && version != VERSION_1 {
        return Err(StorageError::corrupt(
            &path,
            8,
            format!("unsupported snapshot version {version}"),
        ));
    }
    let found = SnapshotMeta {
        applied_end,
        checksum,
    };
    if file_group != group || found != meta {
        return Err(StorageError::corrupt(
            &path,
            0,
            "snapshot header does not match the log's checkpoint",
        ));
    }
    let damaged = || {
        StorageError::corrupt(
            &path,
            HEADER_BYTES as u64,
            "snapshot data truncated or damaged",
        )
    };
    if (bytes.len() as u64) < len {
        return Err(damaged());
    }
    let data = bytes.split_to(len as usize);
    if crc32c::crc32c(&data) != data_crc {
        return Err(damaged());
    }
    let memberships = if version == VERSION_1 {
        if !bytes.is_empty() {
            return Err(damaged());
        }
        None
    } else {
        let trailer_at = HEADER_BYTES as u64 + len;
        let bad_trailer = |why: &str| {
            StorageError::corrupt(&path, trailer_at, format!("snapshot memberships {why}"))
        };
        if bytes.len() < 8 {
            return Err(bad_trailer("truncated"));
        }
        let schedule_len = bytes.get_u32_le() as usize;
        let schedule_crc = bytes.get_u32_le();
        if bytes.len() != schedule_len || crc32c::crc32c(&bytes) != schedule_crc {
            return Err(bad_trailer("truncated or damaged"));
        }
        if schedule_len == 0 {
            None
        } else {
            Some(
                Schedule::from_bytes(bytes)
                    .map_err(|e| bad_trailer(&format!("do not decode: {e}")))?,
            )
        }
    };
    Ok(Snapshot {
        meta,
        memberships,
        data,
    })
}

/// Deletes the snapshot files of `group` older than `keep` (and stray
/// temporary files of it up to `keep`).
pub fn remove_older(dir: &Path, group: GroupId, keep: InstanceId) -> Result<(), StorageError> {
    remove_older_on(&RealFs, dir, group, keep)
}

/// [`remove_older`] through `fs`.
pub fn remove_older_on(
    fs: &dyn Fs,
    dir: &Path,
    group: GroupId,
    keep: InstanceId,
) -> Result<(), StorageError> {
    let names = fs.read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for name in names {
        let tmp = name.ends_with(".tmp");
        // A temporary file past `keep` may be a newer snapshot being written
        // right now (the runtime writes snapshots on another thread): leave
        // it; the checkpoint that finishes it removes it when superseded.
        let stale = match parse_name(name.strip_suffix(".tmp").unwrap_or(&name)) {
            Some((g, point)) => g == group && (point < keep || (tmp && point == keep)),
            None => false,
        };
        if stale {
            let path = dir.join(&name);
            fs.remove_file(&path)
                .map_err(|e| StorageError::io(&path, e))?;
        }
    }
    fsync_dir(fs, dir)
}
