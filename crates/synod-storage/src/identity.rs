//! The identity of a data directory: which cluster and node it belongs to,
//! which incarnation of that node wrote it, and whether that incarnation is
//! still rebuilding lost state. A node reads it before anything else, so that
//! an empty (wiped) or foreign directory is noticed before the node votes.
//!
//! File `IDENTITY` in the data directory, 40 bytes, little-endian:
//! magic `SYNODID1` (8), format version (4), cluster id (8), node id (4),
//! incarnation (8), flags (4; bit 0: rebuilding), CRC32C of the preceding
//! 36 bytes (4). Written to `IDENTITY.tmp`, fsynced, renamed over `IDENTITY`,
//! and the directory fsynced, so the file is always whole: the old identity
//! or the new one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The identity file's name inside a data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";
const MAGIC: &[u8; 8] = b"SYNODID1";
/// The format version this code writes and reads.
pub const IDENTITY_VERSION: u32 = 1;
const BYTES: usize = 8 + 4 + 8 + 4 + 8 + 4 + 4;
const FLAG_REBUILDING: u32 = 1;

/// Who a data directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster it was created for.
    pub cluster_id: u64,
    /// The node it belongs to.
    pub node_id: u32,
    /// Which life of the node wrote it; a rebuild starts a new one.
    pub incarnation: u64,
    /// This incarnation lost its predecessor's state and may not vote yet.
    pub rebuilding: bool,
}

/// The identity file cannot be read or written.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but is not a valid identity.
    #[error("{path} is damaged: {reason}. The node refuses to start rather than guess whose data this is")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Identity {
    /// The file's bytes.
    pub fn encode(&self) -> [u8; BYTES] {
        let mut out = [0u8; BYTES];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&IDENTITY_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[20..24].copy_from_slice(&self.node_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.incarnation.to_le_bytes());
        let flags = if self.rebuilding { FLAG_REBUILDING } else { 0 };
        out[32..36].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&out[..BYTES - 4]);
        out[36..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the file's bytes; `Err` says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Identity, &'static str> {
        if bytes.len() != BYTES {
            return Err("wrong length");
        }
        if &bytes[..8] != MAGIC {
            return Err("not a Synod identity file");
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(36) != crc32c::crc32c(&bytes[..BYTES - 4]) {
            return Err("CRC mismatch");
        }
        if u32_at(8) != IDENTITY_VERSION {
            return Err("unsupported format version");
        }
        let flags = u32_at(32);
        if flags & !FLAG_REBUILDING != 0 {
            return Err("unknown flags");
        }
        Ok(Identity {
            cluster_id: u64_at(12),
            node_id: u32_at(20),
            incarnation: u64_at(24),
            rebuilding: flags & FLAG_REBUILDING != 0,
        })
    }
}

/// Reads the identity of `dir`: `None` when the directory or the file does
/// not exist.
pub fn read_identity(dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    Identity::decode(&bytes)
        .map(Some)
        .map_err(|reason| IdentityError::Corrupt { path, reason })
}

/// Durably writes `identity` into `dir` (created if missing): temporary file,
/// fsync, rename, directory fsync. When it returns `Ok` the new identity
/// survives a crash; if it fails or the machine crashes meanwhile, the file
/// holds the old identity or the new one, never a mix.
pub fn write_identity(dir: &Path, identity: &Identity) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(IDENTITY_FILE);
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(&identity.encode()).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    // The rename (and, on a first write, the directory's own entry in its
    // parent) must be durable before the node acts on the new identity.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error(parent))?;
    }
    debug_assert_eq!(read_identity(dir).ok().flatten(), Some(*identity));
    Ok(())
}

/// True when `dir` holds log segments or snapshots: the durable state of a
/// node (written by a version before identities existed, if it has no
/// identity file).
pub fn holds_node_data(dir: &Path) -> Result<bool, IdentityError> {
    holds_files(dir, &["wal", "snap"])
}

/// True when `dir` holds a log segment, or the log's record of its newest
/// one (`wal/NEWEST`: the log then refuses to open, saying what was lost).
/// A node's log always keeps a segment from its first start on (a
/// checkpoint's snapshot files alone hold neither its promises nor what it
/// accepted since), so a node with an identity and neither lost its log.
pub fn holds_log(dir: &Path) -> Result<bool, IdentityError> {
    if dir.join("wal").join(crate::newest::NAME).exists() {
        return Ok(true);
    }
    holds_files(dir, &["wal"])
}

/// True when one of the subdirectories `subs` of `dir` holds a log segment
/// (`wal`) or a snapshot (`snap`).
fn holds_files(dir: &Path, subs: &[&str]) -> Result<bool, IdentityError> {
    for &sub in subs {
        let path = dir.join(sub);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let data = if sub == "wal" {
                crate::segment::parse_name(&name).is_some()
            } else {
                crate::snapshot_file::parse_name(&name).is_some()
            };
            if data {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        Identity {
            cluster_id: 0xfeed_beef,
            node_id: 2,
            incarnation: 7,
            rebuilding: true,
        }
    }

    #[test]
    fn round_trips_and_survives_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node-2");
        assert_eq!(read_identity(&data).unwrap(), None);
        write_identity(&data, &sample()).unwrap();
        assert_eq!(read_identity(&data).unwrap(), Some(sample()));
        let done = Identity {
            rebuilding: false,
            ..sample()
        };
        write_identity(&data, &done).unwrap();
        assert_eq!(read_identity(&data).unwrap(), Some(done));
        assert!(!data.join("IDENTITY.tmp").exists());
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let good = sample().encode();
        for at in 0..good.len() {
            let mut bad = good;
            bad[at] ^= 0x40;
            assert!(Identity::decode(&bad).is_err(), "flip at byte {at}");
        }
        assert!(Identity::decode(&good[..20]).is_err());
        assert_eq!(Identity::decode(&good), Ok(sample()));
    }

    #[test]
    fn data_is_recognised_by_segment_and_snapshot_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!holds_node_data(dir.path()).unwrap());
        fs::create_dir_all(dir.path().join("wal")).unwrap();
        fs::create_dir_all(dir.path().join("snap")).unwrap();
        fs::write(dir.path().join("wal/notes.txt"), b"x").unwrap();
        assert!(!holds_node_data(dir.path()).unwrap());
        let segment = crate::segment::file_name(1);
        fs::write(dir.path().join("wal").join(segment), b"x").unwrap();
        assert!(holds_node_data(dir.path()).unwrap());
    }
}
