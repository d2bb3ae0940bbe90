//! An in-memory file system for the deterministic simulator, with the
//! failures a real disk has: what was not synced may be lost, partly kept,
//! torn at any byte, or kept out of order, when the power goes; `fsync` may
//! fail; the disk may fill up.
//!
//! # The model
//! - **Data.** Each file has a *durable* image (what survives any crash) and
//!   the changes made since its last `sync_data`/`sync_all` (writes and size
//!   changes, in order). Reads see everything. A sync applies the changes to
//!   the durable image.
//! - **Names.** Creating, renaming and removing a file are entries of one
//!   ordered journal (as a journaling file system commits metadata in order).
//!   `sync_dir(d)` makes every entry up to the last one that touches `d`
//!   durable. Syncing a file does *not* make its name durable.
//! - **Crash** ([`SimFs::crash`]): a random prefix of the journal survives;
//!   every file keeps its durable image plus, by a mode drawn per file, none,
//!   all, an in-order prefix (the next write torn at a byte), or a random
//!   subset of its unsynced sectors (512 bytes; each kept, lost, or torn at a
//!   byte), with the size of before or after the unsynced changes. Bytes that
//!   were never durably written read as zeros. Directories are durable as
//!   soon as they are created (a simplification: the log creates its
//!   directories once, at start).
//! - **Faults**: [`SimFs::fail_fsync_after`] (one `EIO`, taken by an fsync or
//!   a waiting `write_back`; the failed file's
//!   unsynced changes will then never become durable, as a kernel that marks
//!   the pages clean after a failed writeback), [`SimFs::set_space_bytes_max`]
//!   (`ENOSPC` past a byte budget), [`SimFs::power_off_after`] (every
//!   operation fails after a number of changes, so that a crash can land
//!   between any two steps of a multi-step operation, e.g. a checkpoint).
//! - [`SimFs::wipe`]: the disk is lost (replaced by an empty one).
//!
//! Handles opened before a crash or wipe fail with an error afterwards.
//! Everything is deterministic: ordered maps, and randomness only from the
//! RNG passed to [`SimFs::crash`].
//!
//! After a failed fsync, reads still return the unsynced data (as Linux's
//! page cache does). Restart a node after such an error with
//! [`SimFs::crash`], as a real machine would have to be, not by reopening.

use crate::fs::{Fs, FsFile, OpenMode};
use rand::{Rng, RngCore};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Granularity at which unsynced data persists out of order.
pub const SIM_SECTOR_BYTES: u64 = 512;

/// Counters the simulator reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFsStats {
    /// Bytes passed to `write_all_at`.
    pub bytes_written: u64,
    /// `sync_data`, `sync_all` and `sync_dir` calls (failed ones included).
    pub fsyncs: u64,
    /// Crashes so far.
    pub crashes: u64,
    /// Operations refused with an injected fault (`EIO`, `ENOSPC`, power off).
    pub faults: u64,
    /// Nanoseconds a capped write paused for ([`Fs::pause`]: never waited,
    /// only added to the simulated file system's clock).
    pub paused_nanos: u64,
}

/// A simulated file system; clones share one disk (the log holds one, the
/// simulator another, to crash it).
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the file contents: they can be megabytes.
        let st = self.lock();
        f.debug_struct("SimFs")
            .field("files", &st.names.len())
            .field("stats", &st.stats)
            .finish()
    }
}

type InodeId = u64;

#[derive(Debug)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives any crash.
    durable: Vec<u8>,
    /// Changes since the last sync, in order; `durable` plus all of them is
    /// `data` unless a failed fsync dropped some.
    unsynced: Vec<Change>,
    /// Open handles (an unlinked file lives while one is open).
    handles: u32,
}

#[derive(Clone, Debug)]
enum NameOp {
    Link { path: PathBuf, inode: InodeId },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl NameOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent = |p: &Path| p.parent() == Some(dir);
        match self {
            NameOp::Link { path, .. } | NameOp::Unlink { path } => parent(path),
            NameOp::Rename { from, to } => parent(from) || parent(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, InodeId>) {
        match self {
            NameOp::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            NameOp::Unlink { path } => {
                names.remove(path);
            }
            NameOp::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    /// Fail the fsync after this many more.
    fsync_eio_after: Option<u64>,
    /// Total file bytes allowed.
    space_bytes_max: Option<u64>,
    /// Refuse every operation after this many more changes.
    power_off_after: Option<u64>,
    powered_off: bool,
}

#[derive(Debug, Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, InodeId>,
    durable_names: BTreeMap<PathBuf, InodeId>,
    journal: Vec<NameOp>,
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Bumped by a crash or a wipe: older handles are stale.
    generation: u64,
    faults: Faults,
    stats: SimFsStats,
}

fn fault(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("simulated: {what}"))
}

/// An injected `EIO` (the raw OS error, as the kernel reports it).
fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// Applies one change to a file image.
fn apply_change(image: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, bytes } => write_into(image, *offset, bytes),
        Change::SetLen(len) => image.resize(to_usize(*len), 0),
    }
}

fn write_into(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = to_usize(offset);
    let end = start + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

fn to_usize(n: u64) -> usize {
    // The simulated disk lives in memory: sizes beyond usize cannot exist.
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl State {
    /// Counts a change against the power-off budget; an error once it is
    /// spent (and for every call after).
    fn change(&mut self) -> io::Result<()> {
        self.check_power()?;
        if let Some(left) = self.faults.power_off_after.as_mut() {
            if *left == 0 {
                self.faults.powered_off = true;
                self.stats.faults += 1;
                return Err(fault(io::ErrorKind::Other, "power is off"));
            }
            *left -= 1;
        }
        Ok(())
    }

    fn check_power(&mut self) -> io::Result<()> {
        if self.faults.powered_off {
            self.stats.faults += 1;
            return Err(fault(io::ErrorKind::Other, "power is off"));
        }
        Ok(())
    }

    /// Counts an fsync; an injected EIO when its turn has come.
    fn fsync(&mut self) -> io::Result<()> {
        self.stats.fsyncs += 1;
        self.take_eio()
    }

    /// The injected EIO, when its turn has come (counting fsyncs and
    /// waiting write-backs).
    fn take_eio(&mut self) -> io::Result<()> {
        if let Some(left) = self.faults.fsync_eio_after.as_mut() {
            if *left == 0 {
                self.faults.fsync_eio_after = None;
                self.stats.faults += 1;
                return Err(eio());
            }
            *left -= 1;
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    /// Refuses growing `inode` to `new_len` past the space budget.
    fn check_space(&mut self, inode: InodeId, new_len: u64) -> io::Result<()> {
        let Some(max) = self.faults.space_bytes_max else {
            return Ok(());
        };
        let old = self.inodes.get(&inode).map_or(0, |i| i.data.len() as u64);
        if new_len > old && self.used_bytes() - old + new_len > max {
            self.stats.faults += 1;
            return Err(enospc());
        }
        Ok(())
    }

    fn inode(&mut self, id: InodeId) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| fault(io::ErrorKind::NotFound, "no such inode"))
    }

    /// Drops an inode nothing refers to any more.
    fn collect(&mut self, id: InodeId) {
        let named = self.names.values().any(|i| *i == id)
            || self.durable_names.values().any(|i| *i == id)
            || self
                .journal
                .iter()
                .any(|op| matches!(op, NameOp::Link { inode, .. } if *inode == id));
        let open = self.inodes.get(&id).is_some_and(|i| i.handles > 0);
        if !named && !open {
            self.inodes.remove(&id);
        }
    }

    fn sync_file(&mut self, id: InodeId) -> io::Result<()> {
        self.check_power()?;
        let failed = self.fsync();
        let inode = self.inode(id)?;
        let changes = std::mem::take(&mut inode.unsynced);
        if failed.is_ok() {
            for change in &changes {
                apply_change(&mut inode.durable, change);
            }
        }
        // On failure the changes are dropped: they will never become
        // durable, however often a later fsync succeeds.
        failed
    }
}

/// What one file holds after a crash.
fn crash_image(inode: &Inode, rng: &mut dyn RngCore) -> Vec<u8> {
    if inode.unsynced.is_empty() {
        return inode.durable.clone();
    }
    let mut full = inode.durable.clone();
    for change in &inode.unsynced {
        apply_change(&mut full, change);
    }
    match rng.gen_range(0..4u8) {
        // A clean power cut: nothing unsynced reached the disk.
        0 => inode.durable.clone(),
        // Everything did.
        1 => full,
        // In order, up to a byte of some write.
        2 => {
            let mut image = inode.durable.clone();
            let keep = rng.gen_range(0..=inode.unsynced.len());
            for change in &inode.unsynced[..keep] {
                apply_change(&mut image, change);
            }
            if let Some(Change::Write { offset, bytes }) = inode.unsynced.get(keep) {
                let cut = rng.gen_range(0..=bytes.len());
                write_into(&mut image, *offset, &bytes[..cut]);
            }
            image
        }
        // Out of order: each unsynced sector kept, lost or torn.
        _ => {
            let len = if rng.gen_bool(0.5) {
                inode.durable.len()
            } else {
                full.len()
            };
            let old = |i: usize| inode.durable.get(i).copied().unwrap_or(0);
            let mut image: Vec<u8> = (0..len)
                .map(|i| full.get(i).copied().unwrap_or(0))
                .collect();
            let mut dirty: Vec<(u64, u64)> = inode
                .unsynced
                .iter()
                .filter_map(|c| match c {
                    Change::Write { offset, bytes } => {
                        Some((*offset, *offset + bytes.len() as u64))
                    }
                    Change::SetLen(_) => None,
                })
                .collect();
            dirty.sort_unstable();
            let mut sectors = BTreeSet::new();
            for (start, end) in &dirty {
                let mut sector = start / SIM_SECTOR_BYTES;
                while sector * SIM_SECTOR_BYTES < *end {
                    sectors.insert(sector);
                    sector += 1;
                }
            }
            for sector in sectors {
                let start = to_usize(sector * SIM_SECTOR_BYTES).min(len);
                let end = to_usize((sector + 1) * SIM_SECTOR_BYTES).min(len);
                if start >= end {
                    continue;
                }
                // The first `new_upto` bytes of the sector are new, the rest
                // old: all new, all old, or torn at a byte.
                let new_upto = match rng.gen_range(0..3u8) {
                    0 => end,
                    1 => start,
                    _ => rng.gen_range(start..=end),
                };
                for (i, byte) in image.iter_mut().enumerate().take(end).skip(new_upto) {
                    let written = dirty.iter().any(|(s, e)| (*s..*e).contains(&(i as u64)));
                    if written {
                        *byte = old(i);
                    }
                }
            }
            image
        }
    }
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes out: what was not durable is lost, partly kept, torn or
    /// kept out of order, as drawn from `rng` (see the module docs). The disk
    /// is then usable again (power back on, faults cleared except the space
    /// budget); handles opened before fail.
    pub fn crash(&self, rng: &mut impl RngCore) {
        let mut st = self.lock();
        let keep = rng.gen_range(0..=st.journal.len());
        let journal = std::mem::take(&mut st.journal);
        let mut names = std::mem::take(&mut st.durable_names);
        for op in &journal[..keep] {
            op.apply(&mut names);
        }
        let live: BTreeSet<InodeId> = names.values().copied().collect();
        let inodes = std::mem::take(&mut st.inodes);
        for (id, inode) in inodes {
            if live.contains(&id) {
                let image = crash_image(&inode, rng);
                st.inodes.insert(
                    id,
                    Inode {
                        data: image.clone(),
                        durable: image,
                        unsynced: Vec::new(),
                        handles: 0,
                    },
                );
            }
        }
        st.names = names.clone();
        st.durable_names = names;
        st.generation += 1;
        st.stats.crashes += 1;
        st.faults.fsync_eio_after = None;
        st.faults.power_off_after = None;
        st.faults.powered_off = false;
    }

    /// The disk is lost: every file and directory is gone (a replaced disk,
    /// a container started without its volume). Handles opened before fail.
    pub fn wipe(&self) {
        let mut st = self.lock();
        let stats = st.stats;
        let generation = st.generation + 1;
        *st = State {
            generation,
            stats,
            ..State::default()
        };
    }

    /// The fsync after `n` more (0: the next one) fails with `EIO`, once; a
    /// waiting `write_back` counts as one (it can report a failed write).
    pub fn fail_fsync_after(&self, n: u64) {
        self.lock().faults.fsync_eio_after = Some(n);
    }

    /// Writes and allocations that would grow the files past `bytes` in
    /// total fail with `ENOSPC` (`None`: no limit).
    pub fn set_space_bytes_max(&self, bytes: Option<u64>) {
        self.lock().faults.space_bytes_max = bytes;
    }

    /// After `n` more changes (writes, size changes, syncs, creates,
    /// renames, removes), every operation fails until [`SimFs::crash`]: the
    /// machine lost power between two steps. `None` cancels.
    pub fn power_off_after(&self, n: Option<u64>) {
        let mut st = self.lock();
        st.faults.power_off_after = n;
        st.faults.powered_off = false;
    }

    /// Disarms every fault not yet fired (a pending EIO, power cut or space
    /// budget); one that fired (the power is off) stays until
    /// [`SimFs::crash`].
    pub fn disarm_faults(&self) {
        let mut st = self.lock();
        st.faults.fsync_eio_after = None;
        st.faults.power_off_after = None;
        st.faults.space_bytes_max = None;
    }

    /// True once a [`SimFs::power_off_after`] budget is spent.
    pub fn is_powered_off(&self) -> bool {
        self.lock().faults.powered_off
    }

    /// The counters.
    pub fn stats(&self) -> SimFsStats {
        self.lock().stats
    }

    /// Bytes held by all files.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// A file's content as reads see it (`None`: no such file). For tests.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let id = st.names.get(path)?;
        st.inodes.get(id).map(|i| i.data.clone())
    }

    /// Replaces a file's content, durably, as a tool outside the system
    /// would (to cut or damage a file in a test). False if there is no such
    /// file.
    pub fn set_file_bytes(&self, path: &Path, bytes: &[u8]) -> bool {
        let mut st = self.lock();
        let Some(id) = st.names.get(path).copied() else {
            return false;
        };
        let Some(inode) = st.inodes.get_mut(&id) else {
            return false;
        };
        inode.data = bytes.to_vec();
        inode.durable = bytes.to_vec();
        inode.unsynced.clear();
        true
    }

    /// The names of every file, in order. For tests.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// Removes a file at once and durably (a tool outside the system).
    pub fn remove_durably(&self, path: &Path) -> bool {
        let mut st = self.lock();
        let removed = st.names.remove(path);
        st.durable_names.remove(path);
        st.journal.retain(|op| match op {
            NameOp::Link { path: p, .. } | NameOp::Unlink { path: p } => p != path,
            NameOp::Rename { from, to } => from != path && to != path,
        });
        if let Some(id) = removed {
            st.collect(id);
        }
        removed.is_some()
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    inode: InodeId,
    generation: u64,
}

impl SimFile {
    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.fs.lock();
        if st.generation != self.generation {
            return Err(fault(
                io::ErrorKind::Other,
                "stale handle: the disk crashed or was wiped since it was opened",
            ));
        }
        Ok(st)
    }

    fn resize(&self, len: u64, shrink: bool) -> io::Result<()> {
        let mut st = self.lock()?;
        st.change()?;
        st.check_space(self.inode, len)?;
        let inode = st.inode(self.inode)?;
        if !shrink && inode.data.len() as u64 >= len {
            return Ok(());
        }
        inode.data.resize(to_usize(len), 0);
        inode.unsynced.push(Change::SetLen(len));
        Ok(())
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        if st.generation != self.generation {
            return;
        }
        if let Some(inode) = st.inodes.get_mut(&self.inode) {
            inode.handles = inode.handles.saturating_sub(1);
        }
        st.collect(self.inode);
    }
}

impl FsFile for SimFile {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.lock()?;
        st.change()?;
        st.check_space(self.inode, offset + bytes.len() as u64)?;
        st.stats.bytes_written += bytes.len() as u64;
        let inode = st.inode(self.inode)?;
        write_into(&mut inode.data, offset, bytes);
        inode.unsynced.push(Change::Write {
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        debug_assert!(from <= to);
        self.resize(to, false)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.resize(len, true)
    }

    fn size(&self) -> io::Result<u64> {
        let mut st = self.lock()?;
        st.check_power()?;
        Ok(st.inode(self.inode)?.data.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.lock()?;
        st.change()?;
        st.sync_file(self.inode)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    /// Only pacing on a real disk: nothing becomes durable, so nothing
    /// changes here (a crash still loses what was not synced). But a
    /// waiting call takes the injected `EIO` ([`SimFs::fail_fsync_after`])
    /// when its turn has come, as a real one reports a failed write-back
    /// to its caller alone: the file's unsynced changes are then dropped,
    /// and a later sync that succeeds does not bring them back.
    fn write_back(&self, from: u64, to: u64, wait: bool) -> io::Result<()> {
        debug_assert!(from <= to, "write-back of {from}..{to}");
        let mut st = self.lock()?;
        st.check_power()?;
        if !wait {
            return Ok(());
        }
        let failed = st.take_eio();
        if failed.is_err() {
            st.inode(self.inode)?.unsynced.clear();
        }
        failed
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.lock()?;
        st.check_power()?;
        let data = &st.inode(self.inode)?.data;
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("simulated: no such file {}", path.display()),
    )
}

impl SimFs {
    fn check_parent(st: &State, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if st.dirs.contains(dir) => Ok(()),
            _ => Err(not_found(path)),
        }
    }
}

impl Fs for SimFs {
    /// Small, so that the simulator's snapshots (hundreds of bytes to a few
    /// KiB) are paced as the real ones are.
    fn write_back_bytes(&self) -> u64 {
        256
    }

    /// Small too, so that a crash can land between the cuts of a removal.
    fn remove_step_bytes(&self) -> u64 {
        1024
    }

    /// Nothing is mapped here (`map` keeps the caller's bytes).
    fn is_mapped(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }

    /// A clock that stands still but for [`Fs::pause`], so that a capped
    /// write paces the same way in every run of a seed.
    fn now(&self) -> std::time::Instant {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let paused = std::time::Duration::from_nanos(self.lock().stats.paused_nanos);
        *ORIGIN.get_or_init(std::time::Instant::now) + paused
    }

    fn pause(&self, for_: std::time::Duration) {
        let mut st = self.lock();
        let nanos = u64::try_from(for_.as_nanos()).unwrap_or(u64::MAX);
        st.stats.paused_nanos = st.stats.paused_nanos.saturating_add(nanos);
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check_power()?;
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                st.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        st.check_power()?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut names: Vec<String> = st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.extend(
            st.dirs
                .iter()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut st = self.lock();
        st.check_power()?;
        let existing = st.names.get(path).copied();
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists))
            }
            (OpenMode::Existing, None) => return Err(not_found(path)),
            (_, Some(id)) => id,
            (_, None) => {
                Self::check_parent(&st, path)?;
                st.change()?;
                let id = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(id, Inode::default());
                st.names.insert(path.to_path_buf(), id);
                st.journal.push(NameOp::Link {
                    path: path.to_path_buf(),
                    inode: id,
                });
                id
            }
        };
        let generation = st.generation;
        st.inode(id)?.handles += 1;
        drop(st);
        let file = SimFile {
            fs: self.clone(),
            inode: id,
            generation,
        };
        if mode == OpenMode::Truncate && existing.is_some() {
            file.set_len(0)?;
        }
        Ok(Arc::new(file))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        st.check_power()?;
        let id = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inode(id)?.data.clone())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut st = self.lock();
        st.check_power()?;
        let id = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inode(id)?.data.len() as u64)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check_power()?;
        let id = *st.names.get(from).ok_or_else(|| not_found(from))?;
        Self::check_parent(&st, to)?;
        st.change()?;
        st.names.remove(from);
        let replaced = st.names.insert(to.to_path_buf(), id);
        st.journal.push(NameOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        if let Some(old) = replaced {
            st.collect(old);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check_power()?;
        let id = *st.names.get(path).ok_or_else(|| not_found(path))?;
        st.change()?;
        st.names.remove(path);
        st.journal.push(NameOp::Unlink {
            path: path.to_path_buf(),
        });
        st.collect(id);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        st.fsync()?;
        if let Some(last) = st.journal.iter().rposition(|op| op.touches(dir)) {
            let done: Vec<NameOp> = st.journal.drain(..=last).collect();
            let mut names = std::mem::take(&mut st.durable_names);
            for op in &done {
                op.apply(&mut names);
            }
            st.durable_names = names;
            let unlinked: Vec<InodeId> = st.inodes.keys().copied().collect();
            for id in unlinked {
                st.collect(id);
            }
        }
        Ok(())
    }
}
