//! Log segment files: `wal/<index>.wal`, each starting with a header that
//! names the format and the segment's index.

use crate::error::StorageError;
use std::path::Path;

const MAGIC: &[u8; 8] = b"SYNODWAL";
/// The segment format this build writes and reads. Version 2 added the batch
/// offset to every frame and the checkpoint end frame (a checkpoint counts
/// only once its end is durable); version 1 logs are refused, not guessed at.
pub const VERSION: u32 = 2;
/// Bytes of the segment header: magic, version, index, CRC of those.
pub const HEADER_BYTES: usize = 8 + 4 + 8 + 4;

/// The file name of segment `index`.
pub fn file_name(index: u64) -> String {
    format!("{index:020}.wal")
}

/// Parses a segment file name.
pub fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The header of segment `index`.
pub fn header(index: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the header of segment `index` read from `path`.
pub fn check_header(path: &Path, index: u64, bytes: &[u8]) -> Result<(), StorageError> {
    if bytes.len() < HEADER_BYTES {
        return Err(StorageError::corrupt(path, 0, "segment header truncated"));
    }
    if &bytes[..8] != MAGIC {
        return Err(StorageError::corrupt(path, 0, "not a Synod log segment"));
    }
    let crc = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if crc32c::crc32c(&bytes[..20]) != crc {
        return Err(StorageError::corrupt(
            path,
            0,
            "segment header CRC mismatch",
        ));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version < VERSION {
        return Err(StorageError::corrupt(
            path,
            8,
            format!(
                "log segment format version {version} was written by an older Synod; this build \
                 reads version {VERSION} only (version 1 could lose a checkpoint cut short by a \
                 power failure). Upgrade one node at a time: stop it cleanly, move this data \
                 directory away, start the new build with --rebuild (it rejoins as a \
                 non-voting member and catches up from its peers, which needs the others up), \
                 and wait until it votes again before the next node"
            ),
        ));
    }
    if version != VERSION {
        return Err(StorageError::corrupt(
            path,
            8,
            format!("unsupported segment version {version} (this build reads {VERSION}; written by a newer Synod?)"),
        ));
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&bytes[12..20]);
    if u64::from_le_bytes(found) != index {
        return Err(StorageError::corrupt(
            path,
            12,
            "segment header names another segment (renamed file?)",
        ));
    }
    Ok(())
}
