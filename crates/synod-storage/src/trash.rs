//! Deleting large files without stalling the log's syncs.
//!
//! On a file system mounted with online discard (ext4 `-o discard`, usual on
//! virtual and flash disks, and the development machine's), the blocks of an
//! unlinked file are trimmed in the next journal commit, all at once, and
//! every sync that needs that commit or the disk's queue waits for the trim.
//! Measured there: unlinking a 128 MiB file held a `pwrite` + `fdatasync`
//! loop beside it for 28-55 ms; and SETs at 50 clients during checkpoints
//! of a million keys (`bench/checkpoint-cost.sh`) waited up to 110-132 ms,
//! against 18 ms with the superseded files left in place. Cutting the file
//! [`Fs::remove_step_bytes`] (4 MiB) at a time, each cut synced, spreads the
//! trim over as many small commits: the loop's worst sync fell to 5-8 ms.
//!
//! So a file is deleted in three steps:
//! 1. [`to_trash`]: renamed to `<name>.deleting` in its own directory, and
//!    the directory synced by the caller. From then on nothing that reads the
//!    directory by name sees it (recovery, the log reader, the checkpoint
//!    cleanup): a file cut short never shows under its real name, where a
//!    segment cut short would read as a damaged log.
//! 2. [`empty_trash`]: each trash file cut from its end, a step at a time,
//!    each cut synced;
//! 3. then unlinked.
//!
//! A crash or an error part-way leaves trash files: the log empties the trash
//! when it opens ([`Wal::open_on`](crate::Wal::open_on)) and after every
//! checkpoint's removal. They cost space, never safety: no trash file is
//! ever read.
//!
//! **A mapped file is unlinked at once, not cut** ([`Fs::is_mapped`]): a
//! snapshot file may still be mapped (its data sent to a lagging peer, or a
//! peer's snapshot being restored), and cutting it would take the pages from
//! under the mapping (`SIGBUS`). Unlinked, it lives until the mapping goes,
//! as before; its trim then comes at once, as before.

use crate::error::StorageError;
use crate::fs::{Fs, OpenMode};
use std::io;
use std::path::{Path, PathBuf};

/// What a file in the trash is called: its name and this.
pub(crate) const SUFFIX: &str = ".deleting";

/// Renames `path` into the trash of its directory and returns the new path.
/// Durable once the directory is synced (the caller's, once for a batch).
/// A trash file of the same name (an earlier removal cut short) is replaced;
/// that frees its blocks at once, as an unlink would.
pub(crate) fn to_trash(fs: &dyn Fs, path: &Path) -> Result<PathBuf, StorageError> {
    let mut name = path
        .file_name()
        .ok_or_else(|| StorageError::io(path, io::Error::other("no file name")))?
        .to_os_string();
    name.push(SUFFIX);
    let trash = path.with_file_name(name);
    fs.rename(path, &trash)
        .map_err(|e| StorageError::io(path, e))?;
    Ok(trash)
}

/// Deletes every file in the trash of `dir`, a step at a time (see the
/// module's comment), and syncs `dir` where it deleted any. Stops at the
/// first error.
pub(crate) fn empty_trash(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    let names = fs.read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    let mut emptied = false;
    for name in names {
        if !is_trash(&name) {
            continue;
        }
        let path = dir.join(&name);
        remove_paced(fs, &path).map_err(|e| StorageError::io(&path, e))?;
        emptied = true;
    }
    if emptied {
        crate::fsync_dir(fs, dir)?;
    }
    Ok(())
}

/// Whether `name` is a file in the trash.
pub(crate) fn is_trash(name: &str) -> bool {
    name.len() > SUFFIX.len() && name.ends_with(SUFFIX)
}

/// Cuts the file at `path` from its end, [`Fs::remove_step_bytes`] at a
/// time, syncing each cut, then unlinks it; unlinks a mapped file at once.
fn remove_paced(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    // Safe to cut only while no mapping of it is alive; none can begin now:
    // the file left its name before this check (`to_trash`), and nothing
    // maps a trash file (`Fs::is_mapped`).
    if !fs.is_mapped(path)? {
        let step = fs.remove_step_bytes().max(1);
        let file = fs.open(path, OpenMode::Existing)?;
        let mut len = file.size()?;
        while len > 0 {
            len = len.saturating_sub(step);
            file.set_len(len)?;
            file.sync_data()?;
        }
    }
    fs.remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;
    use crate::SimFs;

    /// A file is renamed away, then cut a step at a time, each cut synced,
    /// then gone; the directory keeps its other files.
    #[test]
    fn a_large_file_is_cut_a_step_at_a_time_then_unlinked() {
        let fs = SimFs::default();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).expect("dir");
        let step = fs.remove_step_bytes();
        let path = dir.join("big.snap");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all_at(&vec![7u8; (10 * step + 5) as usize], 0)
            .expect("write");
        file.sync_data().expect("sync");
        drop(file);
        let other = dir.join("other.snap");
        fs.open(&other, OpenMode::CreateNew).expect("create");
        let trash = to_trash(&fs, &path).expect("to trash");
        assert_eq!(trash, dir.join("big.snap.deleting"));
        assert!(fs.file_len(&path).is_err(), "left its name");
        let syncs = fs.stats().fsyncs;
        empty_trash(&fs, dir).expect("emptied");
        // 11 cuts, each synced, and the directory once.
        assert_eq!(fs.stats().fsyncs - syncs, 12);
        let mut names = fs.read_dir(dir).expect("list");
        names.sort();
        assert_eq!(names, vec!["other.snap".to_string()]);
    }

    /// A power cut at any step of a removal leaves, after the crash, the
    /// file under its old name whole (the rename not yet durable) or under
    /// the trash name, cut to some step; emptying the trash then finishes
    /// it.
    #[test]
    fn a_removal_cut_short_by_a_crash_is_finished_by_the_next_emptying() {
        use rand::SeedableRng;
        let mut cut_short = 0;
        for after in 0..30 {
            let fs = SimFs::default();
            let dir = Path::new("/d");
            fs.create_dir_all(dir).expect("dir");
            let step = fs.remove_step_bytes();
            let path = dir.join("s.wal");
            let data = vec![9u8; (6 * step) as usize];
            let file = fs.open(&path, OpenMode::CreateNew).expect("create");
            file.write_all_at(&data, 0).expect("write");
            file.sync_data().expect("sync");
            drop(file);
            crate::fsync_dir(&fs, dir).expect("durable name");
            fs.power_off_after(Some(after));
            let _ = to_trash(&fs, &path)
                .and_then(|_| crate::fsync_dir(&fs, dir))
                .and_then(|()| empty_trash(&fs, dir));
            fs.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(after));
            match fs.read(&path) {
                Ok(kept) => assert_eq!(kept, data, "cut under its own name ({after})"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            }
            let left = fs.read_dir(dir).expect("list");
            cut_short += usize::from(left.iter().any(|n| is_trash(n)));
            empty_trash(&fs, dir).expect("emptied");
            let names = fs.read_dir(dir).expect("list");
            assert!(names.iter().all(|n| !is_trash(n)), "{names:?} ({after})");
        }
        assert!(cut_short > 0, "no crash left a trash file");
    }

    /// The log empties the trash when it opens, and opens as if it were
    /// not there.
    #[test]
    fn the_log_empties_the_trash_when_it_opens() {
        let fs = SimFs::default();
        let root = Path::new("/n");
        drop(
            crate::Wal::open_on(std::sync::Arc::new(fs.clone()), root, Default::default())
                .expect("opens"),
        );
        for left in [
            "/n/wal/00000000000000000001.wal.deleting",
            "/n/snap/0000000000-00000000000000000007.snap.deleting",
        ] {
            let file = fs
                .open(Path::new(left), OpenMode::CreateNew)
                .expect("create");
            file.write_all_at(b"not a log, not a snapshot", 0)
                .expect("write");
        }
        let (_, recovered) =
            crate::Wal::open_on(std::sync::Arc::new(fs.clone()), root, Default::default())
                .expect("opens");
        assert!(recovered.records.is_empty() && recovered.snapshots.is_empty());
        for dir in ["/n/wal", "/n/snap"] {
            let names = fs.read_dir(Path::new(dir)).expect("list");
            assert!(names.iter().all(|n| !is_trash(n)), "{names:?}");
        }
    }

    /// A file still mapped is unlinked whole: the mapping keeps reading its
    /// bytes.
    #[test]
    fn a_mapped_file_is_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mapped.snap");
        let data: Vec<u8> = (0..3 * RealFs.remove_step_bytes())
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).expect("write");
        let mapped = RealFs
            .map(&path, 0, data.len())
            .expect("maps")
            .expect("a mapping");
        let trash = to_trash(&RealFs, &path).expect("to trash");
        assert!(RealFs.is_mapped(&trash).expect("checks"));
        empty_trash(&RealFs, dir.path()).expect("emptied");
        assert!(std::fs::read_dir(dir.path())
            .expect("list")
            .next()
            .is_none());
        assert!(mapped[..] == data[..], "the mapping reads what was written");
        drop(mapped);
        // Once unmapped, a file is cut.
        std::fs::write(&path, &data).expect("write");
        let mapped = RealFs.map(&path, 0, 10).expect("maps").expect("a mapping");
        drop(mapped);
        let trash = to_trash(&RealFs, &path).expect("to trash");
        assert!(!RealFs.is_mapped(&trash).expect("checks"));
    }

    #[test]
    fn trash_names_are_told_apart() {
        assert!(is_trash("00000000000000000001.wal.deleting"));
        assert!(!is_trash(".deleting"));
        assert!(!is_trash("00000000000000000001.wal"));
        assert!(!is_trash("0000000000-00000000000000000009.snap"));
    }
}
