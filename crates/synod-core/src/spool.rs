//! Where a snapshot received from a peer is kept while its pieces arrive.
//!
//! The core stays free of I/O: it decides which piece belongs where
//! (`replica/snapshot.rs`) and verifies the digest as the pieces pass, and a
//! [`SnapshotSpool`] keeps the bytes. The runtime gives the replica one that
//! writes them to a file, so that a snapshot far larger than memory arrives
//! without ever being held on the heap; [`MemorySpool`], the default, keeps
//! them in a buffer (tests, and users of the bare core).

use crate::value::SnapshotMeta;
use bytes::{Bytes, BytesMut};
use std::io;

/// Keeps the bytes of one incoming snapshot at a time.
///
/// The replica calls `begin`, then `append` with consecutive pieces, then
/// `finish` once `total_len` bytes arrived (or `abort` at any point). An
/// error from any call makes the replica drop the transfer (counted in
/// `SnapshotTransferStats::spool_errors`) and ask for it again later.
pub trait SnapshotSpool: Send + std::fmt::Debug {
    /// Starts keeping the snapshot at `meta`, `total_len` bytes long, and
    /// drops whatever an earlier transfer left.
    fn begin(&mut self, meta: SnapshotMeta, total_len: u64) -> io::Result<()>;

    /// Keeps the next bytes (they follow the previous ones).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Every byte arrived: all of them, in order. The result may be a
    /// read-only mapping of a file rather than heap memory. Not yet durable:
    /// the runtime makes an installed snapshot durable as a checkpoint.
    fn finish(&mut self) -> io::Result<Bytes>;

    /// Drops what the current transfer kept, if anything.
    fn abort(&mut self);
}

/// A spool on the heap: the whole snapshot is buffered while it arrives.
#[derive(Debug, Default)]
pub struct MemorySpool {
    data: BytesMut,
}

impl SnapshotSpool for MemorySpool {
    fn begin(&mut self, _meta: SnapshotMeta, _total_len: u64) -> io::Result<()> {
        // The replica bounds `total_len` by `Config::snapshot_bytes_max`
        // before calling this; the buffer grows with what actually arrives.
        self.data = BytesMut::new();
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<Bytes> {
        Ok(std::mem::take(&mut self.data).freeze())
    }

    fn abort(&mut self) {
        self.data = BytesMut::new();
    }
}
