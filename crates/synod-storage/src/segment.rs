//! Log segment files: `wal/<index>.wal`, each starting with a header that
//! names the format and the segment's index.

use crate::error::StorageError;
use crate::frame::Seal;
use std::path::Path;

const MAGIC: &[u8; 8] = b"SYNODWAL";
/// The segment format this build writes. Version 3 added the salt (see
/// [`Format::seal`]) and the frames' tag; version 2 segments are still read
/// (frames without a tag, their CRCs started from 0), and a log that ends
/// in one goes on in a new version 3 segment. Version 2 added the batch
/// offset to every frame and the checkpoint end frame (a checkpoint counts
/// only once its end is durable); version 1 logs are refused, not guessed
/// at.
pub const VERSION: u32 = 3;
/// Bytes of the segment header this build writes: magic, version, index,
/// salt, CRC of those.
pub const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;
/// Bytes of a version 1 or 2 header: magic, version, index, CRC of those.
const V2_HEADER_BYTES: usize = 8 + 4 + 8 + 4;
/// Bytes that name the format: magic and version.
const FORMAT_BYTES: usize = 8 + 4;

/// How a segment's frames are read, from its header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Where its first frame starts.
    pub header_bytes: usize,
    /// The segment's salt, a random number drawn when the log started a
    /// segment with none before it (none in a version 2 segment): its frames
    /// are sealed with it ([`Format::seal`]).
    ///
    /// Why: recovery tells a torn tail from corruption by the valid frames
    /// after a bad one (`frame::scan`), and a record's payload holds client
    /// data. Without a salt, a value crafted to contain a well-formed frame
    /// would, after a crash that tore the batch holding it, read as a
    /// frame of a later batch: corruption, and the node would refuse to
    /// start. The salt never leaves the node: a frame hidden in client data
    /// passes both the tag and the CRC only by a 2^-64 chance per try, and a
    /// torn batch can hold at most one try per 21 bytes.
    pub salt: Option<u64>,
}

impl Format {
    /// How its frames are sealed (`Seal::UNSALTED` in a version 2 segment).
    pub fn seal(&self) -> Seal {
        self.salt.map_or(Seal::UNSALTED, Seal::salted)
    }
}

impl std::fmt::Debug for Format {
    // The salt is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Format")
            .field("header_bytes", &self.header_bytes)
            .field("salted", &self.salt.is_some())
            .finish_non_exhaustive()
    }
}

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

/// The header of segment `index`, whose frames are sealed with
/// `Seal::salted(salt)`.
pub fn header(index: u64, salt: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&index.to_le_bytes());
    out[20..28].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&out[..28]);
    out[28..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the header of segment `index` read from `path` (`bytes`: the
/// file from its start, at least the header); says how to read its frames.
pub fn check_header(path: &Path, index: u64, bytes: &[u8]) -> Result<Format, StorageError> {
    if bytes.len() < FORMAT_BYTES {
        return Err(StorageError::corrupt(path, 0, "segment header truncated"));
    }
    if &bytes[..8] != MAGIC {
        return Err(StorageError::corrupt(path, 0, "not a Synod log segment"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > VERSION {
        // Its header's layout is unknown here: no CRC to check.
        return Err(StorageError::corrupt(
            path,
            8,
            format!("unsupported segment version {version} (this build reads 2 and {VERSION}; written by a newer Synod, or the header is damaged)"),
        ));
    }
    // Each version's header has its own length; one whose CRC does not
    // match was damaged (the version field included).
    let header_bytes = if version == VERSION {
        HEADER_BYTES
    } else {
        V2_HEADER_BYTES
    };
    if bytes.len() < header_bytes {
        return Err(StorageError::corrupt(path, 0, "segment header truncated"));
    }
    let crc_at = header_bytes - 4;
    let crc = u32::from_le_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    if crc32c::crc32c(&bytes[..crc_at]) != crc {
        return Err(StorageError::corrupt(
            path,
            0,
            "segment header CRC mismatch",
        ));
    }
    if version == 0 {
        return Err(StorageError::corrupt(
            path,
            8,
            "segment format version 0 (no Synod wrote it: a damaged header)",
        ));
    }
    if version < 2 {
        return Err(StorageError::corrupt(
            path,
            8,
            format!(
                "log segment format version {version} was written by an older Synod; this build \
                 reads versions 2 and {VERSION} only (version 1 could lose a checkpoint cut short \
                 by a power failure). Upgrade one node at a time: stop it cleanly, move this data \
                 directory away, start the new build with --rebuild (it rejoins as a \
                 non-voting member and catches up from its peers, which needs the others up), \
                 and wait until it votes again before the next node"
            ),
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
    let salt = (version == VERSION).then(|| {
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&bytes[20..28]);
        u64::from_le_bytes(salt)
    });
    Ok(Format { header_bytes, salt })
}
