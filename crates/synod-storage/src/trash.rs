//! Deleting large files without stalling the log's syncs.
//!
//! On a file system mounted with online discard (ext4 `-o discard`, usual on
//! virtual and flash disks, and the development machine's), the blocks of an
//! unlinked file are trimmed in the next journal commit, all at once, and
//! every sync that needs that commit or the disk's queue waits for the trim.
//! Measured there: unlinking a 128 MiB file held a `pwrite` + `fdatasync`
//! loop beside it for 28-69 ms (`bench/unlink-stall.py`); cutting the file
//! [`Fs::remove_step_bytes`] (4 MiB) at a time, each cut synced, spreads the
//! trim over as many small commits: the loop's worst sync fell to 4-8 ms.
//! In `bench/checkpoint-cost.sh` at a million keys, 41-51 of the cluster's
//! log syncs over 40 ms overlapped a removal before, 0-6 with the cuts.
//!
//! So a file is deleted in three steps:
//! 1. [`to_trash`]: renamed to `<name>.deleting` in its own directory, and
//!    the directory synced. From then on nothing that reads the directory by
//!    name sees it (recovery, the log reader, the checkpoint cleanup): a file
//!    cut short never shows under its real name, where a segment cut short
//!    would read as a damaged log.
//! 2. [`empty_trash`]: each trash file cut from its end, a step at a time,
//!    each cut synced;
//! 3. then unlinked.
//!
//! Cutting is only a way to free the blocks gently; whatever keeps it from
//! working falls back to what the log did before, an unlink: a rename that
//! fails (say `ENOSPC` for a longer name in a full directory), a file that
//! cannot be opened for writing (another owner), a cut or its sync that
//! fails. One trash file that cannot be removed never keeps the others.
//!
//! A crash, an error or a stop part-way leaves trash files: the log removes
//! them when it opens ([`purge_trash`], unlinked whole: nothing of this node
//! waits on its syncs then, though another process sharing the disk may
//! feel the trim; it only follows a crash or stop in mid-removal) and after
//! every checkpoint's removal. They cost
//! space, never safety: no trash file is ever read.
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
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What a file in the trash is called: its name and this.
pub(crate) const SUFFIX: &str = ".deleting";

/// Renames `path` into the trash of its directory and returns the new path.
/// Durable once the directory is synced (the caller's, once for a batch).
/// A trash file of the same name (an earlier removal cut short) is replaced;
/// that frees its blocks at once, as an unlink would.
pub(crate) fn to_trash(fs: &dyn Fs, path: &Path) -> io::Result<PathBuf> {
    let mut name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_os_string();
    name.push(SUFFIX);
    let trash = path.with_file_name(name);
    fs.rename(path, &trash)?;
    Ok(trash)
}

/// [`to_trash`], or, where the rename fails, the file unlinked at once (as
/// before the trash): the error only where that fails too.
pub(crate) fn trash_or_remove(fs: &dyn Fs, path: &Path) -> Result<(), StorageError> {
    if let Err(e) = to_trash(fs, path) {
        tracing::warn!(path = %path.display(), "cannot move to the trash ({e}): unlinked whole");
        fs.remove_file(path)
            .map_err(|e| StorageError::io(path, e))?;
    }
    Ok(())
}

/// Deletes every file in the trash of `dir`, a step at a time (see the
/// module's comment). Makes the renames into the trash durable first (so
/// that no crash brings back a cut file under its real name, whatever the
/// caller synced), and the unlinks after. Goes on past a file it cannot
/// remove and returns the first error at the end. Stops cutting once `stop`
/// is set (a node stopping): what is left stays in the trash.
pub(crate) fn empty_trash(fs: &dyn Fs, dir: &Path, stop: &AtomicBool) -> Result<(), StorageError> {
    remove_trash(fs, dir, Some(stop))
}

/// Unlinks every file in the trash of `dir` whole, and syncs `dir`: for the
/// log's start, when nothing waits on this node's syncs. Goes on past a
/// file it cannot remove and returns the first error at the end.
pub(crate) fn purge_trash(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    remove_trash(fs, dir, None)
}

/// [`empty_trash`] with `Some(stop)`, [`purge_trash`] with `None`.
fn remove_trash(fs: &dyn Fs, dir: &Path, paced: Option<&AtomicBool>) -> Result<(), StorageError> {
    let trash = trash_in(fs, dir)?;
    if trash.is_empty() {
        return Ok(());
    }
    if paced.is_some() {
        crate::fsync_dir(fs, dir)?;
    }
    let mut first_error = None;
    for path in trash {
        let removed = match paced {
            Some(stop) if stop.load(Relaxed) => break,
            Some(stop) => remove_paced(fs, &path, stop),
            None => fs.remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            // Gone meanwhile: a spool drops the trash file of its earlier
            // dropped transfer whole (`FileSpool::abort`), maybe while this
            // removal cuts it. Gone is what was wanted.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert(StorageError::io(&path, e));
            }
        }
    }
    crate::fsync_dir(fs, dir)?;
    first_error.map_or(Ok(()), Err)
}

/// The files in the trash of `dir`.
fn trash_in(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let names = fs.read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    Ok(names
        .iter()
        .filter(|name| is_trash(name))
        .map(|name| dir.join(name))
        .collect())
}

/// Whether `name` is a file in the trash.
pub(crate) fn is_trash(name: &str) -> bool {
    name.len() > SUFFIX.len() && name.ends_with(SUFFIX)
}

/// Cuts the trash file at `path` to nothing ([`cut`]), then unlinks it; a
/// cut that cannot be made only costs the gentleness: unlinked whole. Left
/// in the trash when `stop` was set.
fn remove_paced(fs: &dyn Fs, path: &Path, stop: &AtomicBool) -> io::Result<()> {
    match cut(fs, path, stop) {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(path = %path.display(), "stopping: left in the trash");
            return Ok(());
        }
        // Gone meanwhile (see `remove_trash`): nothing to cut or unlink.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => tracing::warn!(path = %path.display(), "cannot cut ({e}): unlinked whole"),
    }
    fs.remove_file(path)
}

/// Cuts the trash file at `path` from its end, [`Fs::remove_step_bytes`]
/// at a time, syncing each cut; leaves a mapped file whole. False where
/// `stop` was set before it was empty.
fn cut(fs: &dyn Fs, path: &Path, stop: &AtomicBool) -> io::Result<bool> {
    // Safe to cut only while no mapping of it is alive; none can begin now:
    // the file left its name before this check (`to_trash`), and nothing
    // maps a trash file (`Fs::is_mapped`).
    if fs.is_mapped(path)? {
        tracing::debug!(path = %path.display(), "still mapped: unlinked whole, not cut");
        return Ok(true);
    }
    let step = fs.remove_step_bytes().max(1);
    let file = fs.open(path, OpenMode::Existing)?;
    let mut len = file.size()?;
    while len > 0 {
        if stop.load(Relaxed) {
            return Ok(false);
        }
        len = len.saturating_sub(step);
        file.set_len(len)?;
        file.sync_data()?;
    }
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fs::RealFs;
    use crate::SimFs;

    fn go() -> AtomicBool {
        AtomicBool::new(false)
    }

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
        empty_trash(&fs, dir, &go()).expect("emptied");
        // The directory, 11 cuts, each synced, and the directory again.
        assert_eq!(fs.stats().fsyncs - syncs, 13);
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
                .map_err(|e| StorageError::io(&path, e))
                .and_then(|_| crate::fsync_dir(&fs, dir))
                .and_then(|()| empty_trash(&fs, dir, &go()));
            fs.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(after));
            match fs.read(&path) {
                Ok(kept) => assert_eq!(kept, data, "cut under its own name ({after})"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            }
            let left = fs.read_dir(dir).expect("list");
            cut_short += usize::from(left.iter().any(|n| is_trash(n)));
            empty_trash(&fs, dir, &go()).expect("emptied");
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
        empty_trash(&RealFs, dir.path(), &go()).expect("emptied");
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

    /// A file system that refuses what a real one can refuse, for the
    /// paths that end in `refuse`: opening a trash file for writing (a file
    /// another user owns), renaming (`ENOSPC`: a longer name in a full
    /// directory), and with `stuck`, unlinking too. With `stop_at_cut`, sets
    /// that flag when a cut asks whether its file is mapped: after
    /// `empty_trash` looked at it, before the first cut.
    #[derive(Debug)]
    pub(crate) struct Refusing {
        pub(crate) inner: SimFs,
        pub(crate) refuse: &'static str,
        pub(crate) stuck: bool,
        pub(crate) stop_at_cut: Option<std::sync::Arc<AtomicBool>>,
    }

    impl Refusing {
        fn refuses(&self, path: &Path) -> bool {
            path.to_string_lossy().ends_with(self.refuse)
        }
    }

    impl Fs for Refusing {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.read_dir(dir)
        }
        fn open(
            &self,
            path: &Path,
            mode: OpenMode,
        ) -> io::Result<std::sync::Arc<dyn crate::FsFile>> {
            if self.refuses(path) && path.to_string_lossy().ends_with(SUFFIX) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            self.inner.open(path, mode)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.inner.read(path)
        }
        fn file_len(&self, path: &Path) -> io::Result<u64> {
            self.inner.file_len(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            if self.refuses(from) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            if self.stuck && self.refuses(path) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            self.inner.remove_file(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.inner.sync_dir(dir)
        }
        fn is_mapped(&self, path: &Path) -> io::Result<bool> {
            if let Some(stop) = &self.stop_at_cut {
                stop.store(true, Relaxed);
            }
            self.inner.is_mapped(path)
        }
        fn remove_step_bytes(&self) -> u64 {
            self.inner.remove_step_bytes()
        }
    }

    /// A file system on which a trash file vanishes as its cut begins: the
    /// spool unlinked it meanwhile (`FileSpool::abort`).
    #[derive(Debug)]
    struct Vanishing(SimFs);

    impl Fs for Vanishing {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.0.create_dir_all(dir)
        }
        fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.0.read_dir(dir)
        }
        fn open(
            &self,
            path: &Path,
            mode: OpenMode,
        ) -> io::Result<std::sync::Arc<dyn crate::FsFile>> {
            self.0.open(path, mode)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.0.read(path)
        }
        fn file_len(&self, path: &Path) -> io::Result<u64> {
            self.0.file_len(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.0.remove_file(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.0.sync_dir(dir)
        }
        fn is_mapped(&self, path: &Path) -> io::Result<bool> {
            if path.to_string_lossy().contains("vanishing") {
                self.0.remove_file(path)?;
            }
            self.0.is_mapped(path)
        }
        fn remove_step_bytes(&self) -> u64 {
            self.0.remove_step_bytes()
        }
    }

    /// A trash file someone else unlinked while the trash was emptied is
    /// removed, not an error: the others go too.
    #[test]
    fn a_trash_file_gone_meanwhile_is_no_error() {
        let sim = SimFs::default();
        let dir = Path::new("/d");
        sim.create_dir_all(dir).expect("dir");
        for name in ["a.snap", "vanishing.incoming", "c.snap"] {
            put(&sim, &dir.join(name), 4096);
            to_trash(&sim, &dir.join(name)).expect("renamed");
        }
        empty_trash(&Vanishing(sim.clone()), dir, &go()).expect("no error");
        assert!(sim.read_dir(dir).expect("list").is_empty());
    }

    pub(crate) fn put(fs: &SimFs, path: &Path, len: usize) {
        let file = fs.open(path, OpenMode::CreateNew).expect("create");
        file.write_all_at(&vec![1u8; len], 0).expect("write");
        file.sync_data().expect("sync");
    }

    /// A trash file that cannot be opened for writing is unlinked whole
    /// (as before the trash: only the directory's permission matters); one
    /// that cannot be unlinked either is reported, and keeps no other.
    #[test]
    fn a_file_that_cannot_be_cut_is_unlinked_and_one_stuck_keeps_no_other() {
        for stuck in [false, true] {
            let sim = SimFs::default();
            let dir = Path::new("/d");
            sim.create_dir_all(dir).expect("dir");
            for name in ["a.snap", "b.snap", "c.snap"] {
                put(&sim, &dir.join(name), 4096);
            }
            let fs = Refusing {
                inner: sim.clone(),
                refuse: "b.snap.deleting",
                stuck,
                stop_at_cut: None,
            };
            for name in ["a.snap", "b.snap", "c.snap"] {
                to_trash(&fs, &dir.join(name)).expect("renamed");
            }
            let emptied = empty_trash(&fs, dir, &go());
            let left = sim.read_dir(dir).expect("list");
            if stuck {
                assert!(emptied.is_err());
                assert_eq!(left, vec!["b.snap.deleting".to_string()]);
            } else {
                emptied.expect("emptied");
                assert!(left.is_empty(), "{left:?}");
            }
        }
    }

    /// A file that cannot be renamed into the trash is unlinked at once.
    #[test]
    fn a_file_that_cannot_be_renamed_is_unlinked() {
        let sim = SimFs::default();
        let dir = Path::new("/d");
        sim.create_dir_all(dir).expect("dir");
        put(&sim, &dir.join("a.snap"), 4096);
        let fs = Refusing {
            inner: sim.clone(),
            refuse: "a.snap",
            stuck: false,
            stop_at_cut: None,
        };
        trash_or_remove(&fs, &dir.join("a.snap")).expect("removed");
        assert!(sim.read_dir(dir).expect("list").is_empty());
    }

    /// The renames into the trash are made durable before anything is cut,
    /// whatever the caller synced: no crash brings back a file cut short
    /// under its real name.
    #[test]
    fn the_trash_is_durable_before_anything_is_cut() {
        use rand::SeedableRng;
        let mut bad = Vec::new();
        for after in 0..12u64 {
            for seed in 0..8u64 {
                let fs = SimFs::default();
                let dir = Path::new("/d");
                fs.create_dir_all(dir).expect("dir");
                let path = dir.join("00000000000000000001.wal");
                let len = 6 * fs.remove_step_bytes() as usize;
                put(&fs, &path, len);
                crate::fsync_dir(&fs, dir).expect("durable name");
                to_trash(&fs, &path).expect("renamed");
                // No directory sync here.
                fs.power_off_after(Some(after));
                let _ = empty_trash(&fs, dir, &go());
                fs.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
                if let Ok(kept) = fs.read(&path) {
                    if kept.len() != len {
                        bad.push((after, seed, kept.len()));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "cut short under the real name: {bad:?}");
    }

    /// Once stopped, nothing more is cut: the file stays in the trash.
    #[test]
    fn a_stopped_emptying_leaves_the_trash() {
        let fs = SimFs::default();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).expect("dir");
        put(&fs, &dir.join("a.snap"), 8192);
        to_trash(&fs, &dir.join("a.snap")).expect("renamed");
        empty_trash(&fs, dir, &AtomicBool::new(true)).expect("stopped");
        assert_eq!(
            fs.file_len(&dir.join("a.snap.deleting")).expect("left"),
            8192
        );
        purge_trash(&fs, dir).expect("purged");
        assert!(fs.read_dir(dir).expect("list").is_empty());
    }

    /// A stop that lands while a file is being cut ends the cutting before
    /// the next cut: the file stays whole in the trash.
    #[test]
    fn a_stop_during_a_file_ends_its_cutting() {
        let sim = SimFs::default();
        let dir = Path::new("/d");
        sim.create_dir_all(dir).expect("dir");
        put(&sim, &dir.join("a.snap"), 8192);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let fs = Refusing {
            inner: sim.clone(),
            refuse: "(nothing)",
            stuck: false,
            stop_at_cut: Some(stop.clone()),
        };
        to_trash(&fs, &dir.join("a.snap")).expect("renamed");
        empty_trash(&fs, dir, &stop).expect("stopped");
        assert_eq!(
            sim.file_len(&dir.join("a.snap.deleting")).expect("left"),
            8192
        );
    }

    #[test]
    fn trash_names_are_told_apart() {
        assert!(is_trash("00000000000000000001.wal.deleting"));
        assert!(!is_trash(".deleting"));
        assert!(!is_trash("00000000000000000001.wal"));
        assert!(!is_trash("0000000000-00000000000000000009.snap"));
    }
}
