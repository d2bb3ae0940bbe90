//! The file system under the log and the snapshot files: a small trait with
//! two implementations, [`RealFs`] (std::fs, what ships) and
//! [`SimFs`](crate::SimFs) (in memory, for the deterministic simulator).
//!
//! The trait is as small as the log needs: whole-file reads, positional
//! writes, size changes, the two kinds of sync, and the directory operations
//! (create, list, rename, remove, sync). Every call returns `io::Result`; the
//! log turns errors into [`StorageError`](crate::StorageError)s and stops.
//!
//! Hot path: a [`SyncJob`](crate::SyncJob) holds an `Arc<dyn FsFile>` and
//! runs one `write_all_at` and one `sync_data` on it; for [`RealFs`] those
//! are `pwrite` and `fdatasync` behind one indirect call each.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

/// How [`Fs::open`] opens a file. Every mode opens for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// The file must not exist; it is created empty (`O_CREAT | O_EXCL`).
    CreateNew,
    /// Created if missing, emptied if present (`O_CREAT | O_TRUNC`).
    Truncate,
}

/// An open file.
pub trait FsFile: Send + Sync + Debug {
    /// Writes all of `bytes` at `offset` (the file grows if needed).
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Reserves `[from, to)` (the file grows to `to` if shorter; new bytes
    /// read as zeros, also after a crash: `posix_fallocate`'s unwritten
    /// extents). An error may leave part of the range reserved (ext4 keeps
    /// what it allocated before running out of space), which reads as
    /// zeros too; callers may treat an error as "not supported" and let
    /// writes extend the file instead.
    fn allocate(&self, from: u64, to: u64) -> io::Result<()>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's size.
    fn size(&self) -> io::Result<u64>;
    /// Makes the data and the size durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the data and all metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
    /// Hands the written bytes of `[from, to)` to the disk now, without
    /// waiting (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`); with
    /// `wait`, first waits for the write-back of that range already under
    /// way, and then for all of it (`WAIT_BEFORE | WRITE | WAIT_AFTER`).
    /// Promises no durability (no cache flush, no metadata): only
    /// `sync_data` and `sync_all` do. It paces a large file written front
    /// to back (see `snapshot_file::WriteBack`). Does nothing where the
    /// system has no such call (another OS; on Linux, a file or a sandbox
    /// that refuses it: `ENOSYS`, `EOPNOTSUPP`, `EINVAL`, `ESPIPE`). Any
    /// other error means a failed write, and the caller must treat it as a
    /// failed sync: a waiting call reports a write-back error to this open
    /// file once, and the next sync on it may then return success.
    fn write_back(&self, from: u64, to: u64, wait: bool) -> io::Result<()>;
    /// Reads into `buf` from `offset`: the bytes read, fewer than asked
    /// only at the end of the file (0 there).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// A file system.
pub trait Fs: Send + Sync + Debug {
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The size of a file.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Renames a file, replacing `to` if it exists. Durable once the
    /// directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable once the directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries created, renamed or removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// `len` bytes of the file at `path` from `offset`, mapped read-only
    /// into memory (backed by the page cache, which the kernel may reclaim,
    /// rather than by the heap); `None` where the file system cannot map
    /// (the simulator's keeps the caller's bytes). Only for files written
    /// whole, synced and never changed afterwards (snapshot files).
    fn map(&self, _path: &Path, _offset: u64, _len: usize) -> io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
    /// The stretch a large file written front to back is handed to the
    /// disk in ([`FsFile::write_back`]; see `snapshot_file::WriteBack`).
    /// The simulator's is small, so that its small snapshots are paced too.
    fn write_back_bytes(&self) -> u64 {
        1 << 20
    }
    /// Whether a mapping of the file at `path` made by [`Fs::map`] may still
    /// be alive (then it must not be cut: see `trash.rs`). A mapping begun
    /// before this call is seen by it, whatever name the file has now. True
    /// unless a file system says otherwise: one that wraps another's `map`
    /// and forgets this never has a mapped file cut from under it.
    fn is_mapped(&self, _path: &Path) -> io::Result<bool> {
        Ok(true)
    }
    /// The step a file in the trash is cut by before it is unlinked (see
    /// `trash.rs`). The simulator's is small, so that a crash can land
    /// between the steps of its small files.
    fn remove_step_bytes(&self) -> u64 {
        4 << 20
    }
    /// Now, on the clock that paces a capped write (see
    /// `snapshot_file::WriteRate`); [`Fs::pause`] moves it on. A file
    /// system overrides both or neither (the writer never waits on a clock
    /// that stands still, but would pace by the wrong one).
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
    /// Waits `for_` between two stretches of a capped write. The
    /// simulator's returns at once and moves its [`Fs::now`] on by `for_`:
    /// it runs the pacing, never waits for it.
    fn pause(&self, for_: std::time::Duration) {
        std::thread::sleep(for_);
    }
}

/// `[from, to)` as the offset and length a system call takes (empty when
/// `to < from`); `InvalidInput` where `to` is past what `T` holds.
fn off_range<T: TryFrom<u64>>(from: u64, to: u64) -> io::Result<(T, T)> {
    match (
        T::try_from(from),
        T::try_from(to.saturating_sub(from)),
        T::try_from(to),
    ) {
        (Ok(offset), Ok(len), Ok(_)) => Ok((offset, len)),
        _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
    }
}

/// The operating system's file system, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FsFile for File {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match FileExt::read_at(self, &mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (offset, len): (libc::off_t, libc::off_t) = off_range(from, to)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: a plain syscall on a file descriptor that `self` owns and
        // keeps open for the duration of the call; no memory is passed.
        match unsafe { libc::posix_fallocate(self.as_raw_fd(), offset, len) } {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    #[cfg(target_os = "linux")]
    fn write_back(&self, from: u64, to: u64, wait: bool) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        debug_assert!(from <= to, "write-back of {from}..{to}");
        // (`off64_t`: glibc's `sync_file_range` takes 64-bit offsets on
        // 32-bit systems too.)
        let (offset, len): (libc::off64_t, libc::off64_t) = off_range(from, to)?;
        if len == 0 {
            // (A length of 0 would mean "to the end of the file".)
            return Ok(());
        }
        let mut flags = libc::SYNC_FILE_RANGE_WRITE;
        if wait {
            flags |= libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        }
        loop {
            // SAFETY: a plain syscall on a file descriptor that `self` owns
            // and keeps open for the duration of the call; no memory is
            // passed.
            if unsafe { libc::sync_file_range(self.as_raw_fd(), offset, len, flags) } == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not supported here: pacing is only a hint. (Our ranges
                // are valid: `off_range` refused any past `off64_t`.)
                Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::ESPIPE) => Ok(()),
                _ => Err(error),
            };
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn write_back(&self, _from: u64, _to: u64, _wait: bool) -> io::Result<()> {
        Ok(())
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Arc::new(options.open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn map(&self, path: &Path, offset: u64, len: usize) -> io::Result<Option<bytes::Bytes>> {
        if len == 0 {
            return Ok(None);
        }
        // Held from the open to the count, so that `is_mapped` sees every
        // mapping of a file that still had its name when it was opened.
        let mut mapped = lock_mapped();
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.len() < offset.saturating_add(len as u64) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than the range to map",
            ));
        }
        // SAFETY: a mapping is undefined behaviour if the file changes under
        // it. `map` is only called on snapshot files, which are written
        // whole under a temporary name, synced, renamed and never written
        // again; a superseded one is cut before it is unlinked only while
        // no mapping of it is alive (`is_mapped`, counted here; see
        // `trash.rs`), else it is unlinked whole, which leaves the mapping
        // valid. What remains is an outside process truncating the file
        // (or the disk failing a page-in): the process then gets SIGBUS and
        // stops, as it would stop on a failed read (fatal, recovers from the
        // log on restart).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(&file)?
        };
        let inode = (meta.dev(), meta.ino());
        *mapped.entry(inode).or_insert(0) += 1;
        Ok(Some(bytes::Bytes::from_owner(Mapping { map, inode })))
    }

    fn is_mapped(&self, path: &Path) -> io::Result<bool> {
        let mapped = lock_mapped();
        let meta = fs::metadata(path)?;
        Ok(mapped.contains_key(&(meta.dev(), meta.ino())))
    }
}

/// The files (device and inode numbers) with a mapping made by
/// [`RealFs::map`] alive, and how many.
static MAPPED: std::sync::Mutex<BTreeMap<(u64, u64), usize>> =
    std::sync::Mutex::new(BTreeMap::new());

/// [`MAPPED`], locked. A panic while it was held cannot leave a count
/// half-changed (each change is one map operation), so a poisoned lock is
/// taken as it is.
fn lock_mapped() -> std::sync::MutexGuard<'static, BTreeMap<(u64, u64), usize>> {
    MAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A mapping of a file, counted in [`MAPPED`] while it lives.
struct Mapping {
    map: memmap2::Mmap,
    inode: (u64, u64),
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let mut mapped = lock_mapped();
        if let Some(count) = mapped.get_mut(&self.inode) {
            *count -= 1;
            if *count == 0 {
                mapped.remove(&self.inode);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real write-back: ranges with and without waiting, an empty one,
    /// one past what `off_t` holds (refused), and a pipe (no such call
    /// there: nothing done, no error).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_real_write_back_paces_and_ignores_what_it_cannot_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = RealFs
            .open(&dir.path().join("f"), OpenMode::CreateNew)
            .expect("open");
        file.write_all_at(&vec![7u8; 3 << 20], 0).expect("write");
        file.write_back(0, 1 << 20, false).expect("start");
        file.write_back(1 << 20, 2 << 20, false).expect("start");
        file.write_back(0, 1 << 20, true).expect("wait");
        file.write_back(2 << 20, 2 << 20, true).expect("empty");
        for (from, to) in [(0, u64::MAX), (2, (1 << 63) + 1)] {
            assert_eq!(
                file.write_back(from, to, false)
                    .expect_err("too long")
                    .kind(),
                io::ErrorKind::InvalidInput
            );
        }
        file.sync_all().expect("sync");
        let mut fds = [0; 2];
        // SAFETY: `pipe` writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: the descriptors were just made and are owned here alone.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        write
            .write_back(0, 4096, true)
            .expect("a pipe: nothing to do");
        drop(read);
    }
}
