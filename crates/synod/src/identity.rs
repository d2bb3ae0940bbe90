//! Start-up check of the data directory's identity (see
//! `synod_storage::identity`): a node refuses to start on a directory that is
//! foreign, or that lost its data while the node is a member of a running
//! cluster, because an acceptor that forgot its promises and accepted values
//! can let two values be chosen at one instance.
//!
//! # Brand-new cluster or lost disk?
//! A node cannot tell on its own: a brand-new cluster has an empty directory
//! on every node, and so does a node whose disk was just replaced. Asking the
//! peers is racy at cluster birth (one node may already have promised a
//! ballot when another asks) and needs every peer up. So the operator says
//! it, once, as etcd (`--initial-cluster-state new`) and CockroachDB
//! (`cockroach init`) have it done:
//! - [`Bootstrap::New`] (`synod server --init`): the first start of a
//!   brand-new cluster; an empty directory gets a fresh identity. `synod
//!   cluster` passes it only when none of its nodes has any data yet.
//! - [`Bootstrap::Existing`] (the default): an empty directory is refused;
//!   the message says what happened and what to do.
//! - [`Bootstrap::Rebuild`] (`synod server --rebuild`): this node lost its
//!   data; it gets a new incarnation and rejoins as a non-voting member
//!   until voting is safe (`synod_core::Config::rebuild`).
//!
//! A directory that holds log segments but no identity was written by a
//! version before identities existed: its data is the node's, so it is
//! adopted (incarnation 1). A directory with an identity resumes whatever
//! the flag says (a rebuild left unfinished goes on); one that belongs to
//! another cluster or node is always refused.

use crate::config::{Bootstrap, NodeConfig};
use crate::node::NodeError;
use std::time::{SystemTime, UNIX_EPOCH};
use synod_storage::identity::{
    holds_log, holds_node_data, read_identity, write_identity, Identity,
};
use tracing::{info, warn};

/// Where a node that holds its data directory writes its pid, for the
/// message another start on the directory gets (the lock itself is on the
/// directory).
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A data directory held by this process: an exclusive `flock` on the
/// directory itself, released when this is dropped (the node's task ends)
/// or the process dies, whatever way.
#[derive(Debug)]
pub(crate) struct DirLock {
    _dir: std::fs::File,
}

/// Takes `cfg.data_dir` for this node alone, before anything reads or
/// writes it: two nodes on one directory (the same node started twice, or
/// a copy started with other ports) would both append to one log and
/// corrupt it, and the second one's recovery alone may cut what it takes
/// for a torn tail while the first is writing it. A directory another
/// process holds is refused with a message naming it. Nothing is written:
/// a start refused by the identity check leaves the directory as it was.
///
/// `None` where there is nothing to lock: a simulated file system, or a
/// directory that does not exist for a node told it is not new (its start
/// is refused by `check_data_dir` without writing anything; the caller
/// locks after the check otherwise). For `--init` and `--rebuild` a
/// missing directory is created first, as the check would.
///
/// A file system that cannot lock (`ENOLCK`, `EOPNOTSUPP`: some network
/// file systems) is logged and the node starts unlocked: it was never
/// locked before either, and the operator is told.
pub(crate) fn lock_data_dir(cfg: &NodeConfig) -> Result<Option<DirLock>, NodeError> {
    if cfg.storage_fs.is_some() {
        return Ok(None);
    }
    let dir = &cfg.data_dir;
    if !dir.exists() {
        if cfg.bootstrap == Bootstrap::Existing {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError::DataDir(format!("cannot create {}: {e}", dir.display())))?;
    }
    lock_dir(dir).map(Some)
}

/// The lock itself (see [`lock_data_dir`]).
pub(crate) fn lock_dir(dir: &std::path::Path) -> Result<DirLock, NodeError> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)
        .map_err(|e| NodeError::DataDir(format!("cannot open {}: {e}", dir.display())))?;
    // SAFETY: a plain syscall on a file descriptor that `handle` owns and
    // keeps open for the duration of the call; no memory is passed.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(DirLock { _dir: handle });
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => {
            let holder = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() || !holder.bytes().all(|b| b.is_ascii_digit()) {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            Err(NodeError::DataDir(format!(
                "data directory {} is in use by another running node{holder}: two nodes on one \
                 directory would write one log at once and corrupt it. Refusing to start; stop \
                 the other process first, or give this one its own --data-dir",
                dir.display()
            )))
        }
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS) => {
            warn!(
                data_dir = %dir.display(),
                "cannot lock the data directory ({error}): make sure no other node runs on it"
            );
            Ok(DirLock { _dir: handle })
        }
        _ => Err(NodeError::DataDir(format!(
            "cannot lock {}: {error}",
            dir.display()
        ))),
    }
}

/// Writes this process's pid into [`LOCK_FILE`] once the directory is
/// known to be this node's (after `check_data_dir`): only a hint for the
/// message of a refused start, so a failure is only logged.
pub(crate) fn note_lock_holder(dir: &std::path::Path) {
    let path = dir.join(LOCK_FILE);
    if let Err(e) = std::fs::write(&path, format!("{}\n", std::process::id())) {
        warn!(path = %path.display(), "cannot note this process's pid: {e}");
    }
}

/// Checks (and on a first start writes) the identity of `cfg.data_dir`
/// before anything else touches the directory. Returns the identity the node
/// runs with; `rebuilding` says whether it must start in rebuild mode.
pub(crate) fn check_data_dir(cfg: &NodeConfig) -> Result<Identity, NodeError> {
    let dir = &cfg.data_dir;
    let storage = |e: synod_storage::IdentityError| NodeError::DataDir(e.to_string());
    let expected = |incarnation, rebuilding| Identity {
        cluster_id: cfg.cluster_id,
        node_id: cfg.id.0,
        incarnation,
        rebuilding,
    };
    if let Some(found) = read_identity(dir).map_err(storage)? {
        if found.cluster_id != cfg.cluster_id || found.node_id != cfg.id.0 {
            return Err(NodeError::DataDir(format!(
                "data directory {} belongs to node {} of cluster {:016x}, but this is node {} of \
                 cluster {:016x} (the cluster id is a hash of --peers unless set): wrong --data-dir \
                 or --id, or --peers differs from the list this directory was created with. \
                 Refusing to start; use the right directory, or the original --peers",
                dir.display(),
                found.node_id,
                found.cluster_id,
                cfg.id.0,
                cfg.cluster_id,
            )));
        }
        // The identity says this node has been running here, so its log
        // must be here too (the log always keeps a segment, whatever
        // snapshots `snap/` holds). Without it the promises and acceptances
        // are gone just as with a wiped disk: a deleted or missing `wal/`
        // volume, or a directory restored from an incomplete copy. `--init`
        // passes only for a node that never got past creating its first
        // segment; `--rebuild` rebuilds.
        if !found.rebuilding && !holds_log(dir).map_err(storage)? {
            // Snapshots without a log: not a first start cut short.
            let never_ran = !holds_node_data(dir).map_err(storage)?;
            match cfg.bootstrap {
                Bootstrap::New if never_ran => {}
                Bootstrap::Rebuild => return start_rebuild(cfg, dir),
                Bootstrap::New | Bootstrap::Existing => {
                    return Err(NodeError::DataDir(format!(
                        "data directory {} holds node {}'s identity but no log (no segment in \
                         wal/): the log was lost or moved, and this node would forget promises \
                         and accepted values. Refusing to start. If the log is gone for good, \
                         restart the node with --rebuild: it rejoins as a non-voting member and \
                         votes again once that is safe",
                        dir.display(),
                        cfg.id.0
                    )))
                }
            }
        }
        match cfg.bootstrap {
            Bootstrap::New => info!(
                data_dir = %dir.display(),
                "--init ignored: the data directory is already initialised"
            ),
            Bootstrap::Rebuild if !found.rebuilding => info!(
                data_dir = %dir.display(),
                "--rebuild ignored: the data directory holds this node's data"
            ),
            _ => {}
        }
        if found.rebuilding {
            warn!(
                incarnation = found.incarnation,
                "resuming an unfinished rebuild: this node does not vote until it is safe"
            );
        }
        return Ok(found);
    }
    if holds_node_data(dir).map_err(storage)? {
        let identity = expected(1, false);
        warn!(
            data_dir = %dir.display(),
            "the data directory holds a log but no identity (written by an older version): adopting it"
        );
        write_identity(dir, &identity).map_err(storage)?;
        return Ok(identity);
    }
    let identity = match cfg.bootstrap {
        Bootstrap::Existing => {
            return Err(NodeError::DataDir(format!(
                "data directory {} has no Synod identity (it is empty or missing), but node {} is \
                 a member of cluster {:016x} and is not told that this is a brand-new cluster. If \
                 this node's disk was lost or replaced, restart it with --rebuild: it rejoins as a \
                 non-voting member and votes again once that is safe. If this is the first start \
                 of a new cluster, start every node with --init. If the path is wrong, fix \
                 --data-dir. Starting it empty as a voter could let it forget promises and \
                 accepted values and let two values be chosen, so it refuses",
                dir.display(),
                cfg.id.0,
                cfg.cluster_id,
            )));
        }
        Bootstrap::New => expected(1, false),
        Bootstrap::Rebuild => return start_rebuild(cfg, dir),
    };
    initialise(dir, identity)
}

/// A new incarnation that rebuilds: the lost one's number is gone with its
/// disk. The wall clock in ms differs from any earlier incarnation (1, or an
/// earlier rebuild's clock) unless the clock went back.
fn start_rebuild(cfg: &NodeConfig, dir: &std::path::Path) -> Result<Identity, NodeError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let identity = Identity {
        cluster_id: cfg.cluster_id,
        node_id: cfg.id.0,
        incarnation: now_ms.max(2),
        rebuilding: true,
    };
    initialise(dir, identity)
}

fn initialise(dir: &std::path::Path, identity: Identity) -> Result<Identity, NodeError> {
    write_identity(dir, &identity).map_err(|e| NodeError::DataDir(e.to_string()))?;
    info!(
        data_dir = %dir.display(),
        incarnation = identity.incarnation,
        rebuilding = identity.rebuilding,
        "initialised the data directory"
    );
    Ok(identity)
}

/// Records durably that the rebuild finished, so that a restart votes at once.
pub(crate) fn finish_rebuild(cfg: &NodeConfig, identity: &mut Identity) -> Result<(), NodeError> {
    let done = Identity {
        rebuilding: false,
        ..*identity
    };
    write_identity(&cfg.data_dir, &done).map_err(|e| NodeError::DataDir(e.to_string()))?;
    *identity = done;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use synod_core::NodeId;

    fn config(id: u32, dir: &std::path::Path, bootstrap: Bootstrap) -> NodeConfig {
        let peers: BTreeMap<NodeId, std::net::SocketAddr> = (1..=3)
            .map(|i| {
                (
                    NodeId(i),
                    format!("127.0.0.1:{}", 7100 + i).parse().unwrap(),
                )
            })
            .collect();
        let mut cfg = NodeConfig::new(NodeId(id), peers, dir.join(format!("node-{id}"))).unwrap();
        cfg.bootstrap = bootstrap;
        cfg
    }

    fn refusal(cfg: &NodeConfig) -> String {
        match check_data_dir(cfg) {
            Err(NodeError::DataDir(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// One node per directory: a second lock is refused (also within one
    /// process) while the first is held, and taken once it is dropped. A
    /// missing directory of a member that is not new is left alone (its
    /// start is refused, writing nothing); `--init` and `--rebuild` create
    /// it.
    #[test]
    fn a_data_directory_is_locked_for_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let existing = config(1, dir.path(), Bootstrap::Existing);
        assert!(lock_data_dir(&existing).unwrap().is_none());
        assert!(!existing.data_dir.exists());
        for bootstrap in [Bootstrap::New, Bootstrap::Rebuild] {
            let cfg = config(1, dir.path(), bootstrap);
            let held = lock_data_dir(&cfg).unwrap().expect("locked");
            note_lock_holder(&cfg.data_dir);
            for again in [&cfg, &existing] {
                match lock_data_dir(again) {
                    Err(NodeError::DataDir(message)) => {
                        assert!(
                            message.contains("in use by another running node"),
                            "{message}"
                        );
                        assert!(message.contains(&format!("(pid {})", std::process::id())));
                    }
                    other => panic!("a second lock: {other:?}"),
                }
            }
            drop(held);
            let held = lock_data_dir(&existing).unwrap().expect("free again");
            drop(held);
            std::fs::remove_dir_all(&cfg.data_dir).unwrap();
        }
        // Locking writes nothing (a start refused by the identity check
        // leaves a foreign directory as it was), and the pid file is no
        // node data: an initialised directory with it and no log is still
        // refused to a member.
        let foreign = dir.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("data"), b"x").unwrap();
        drop(lock_dir(&foreign).unwrap());
        assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
        let init = config(1, dir.path(), Bootstrap::New);
        drop(lock_data_dir(&init).unwrap());
        check_data_dir(&init).unwrap();
        note_lock_holder(&init.data_dir);
        assert!(refusal(&existing).contains("no log"));
    }

    /// The defect: a member restarted on an empty directory started as a
    /// voter with promise 0. Now it refuses, and says what to do.
    #[test]
    fn an_empty_directory_of_a_member_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(2, dir.path(), Bootstrap::Existing);
        let message = refusal(&cfg);
        assert!(message.contains("has no Synod identity"), "{message}");
        assert!(
            message.contains("--rebuild") && message.contains("--init"),
            "{message}"
        );
        // Refusing wrote nothing: the directory is as the operator left it.
        assert!(!cfg.data_dir.exists());
        // Likewise after a wipe of an initialised directory.
        let init = config(2, dir.path(), Bootstrap::New);
        check_data_dir(&init).unwrap();
        std::fs::remove_dir_all(&init.data_dir).unwrap();
        refusal(&cfg);
    }

    #[test]
    fn init_creates_an_identity_that_later_starts_resume() {
        let dir = tempfile::tempdir().unwrap();
        let first = check_data_dir(&config(1, dir.path(), Bootstrap::New)).unwrap();
        assert_eq!(
            (first.node_id, first.incarnation, first.rebuilding),
            (1, 1, false)
        );
        write_segment(&config(1, dir.path(), Bootstrap::New));
        let again = check_data_dir(&config(1, dir.path(), Bootstrap::Existing)).unwrap();
        assert_eq!(again, first);
        // --rebuild on a directory that holds the node's data changes nothing.
        let rebuild = check_data_dir(&config(1, dir.path(), Bootstrap::Rebuild)).unwrap();
        assert_eq!(rebuild, first);
    }

    #[test]
    fn a_foreign_directory_is_refused_whatever_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let node2 = config(2, dir.path(), Bootstrap::New);
        check_data_dir(&node2).unwrap();
        for bootstrap in [Bootstrap::Existing, Bootstrap::New, Bootstrap::Rebuild] {
            let mut other = config(1, dir.path(), bootstrap);
            other.data_dir = node2.data_dir.clone();
            let message = refusal(&other);
            assert!(message.contains("belongs to node 2"), "{message}");
            let mut cluster = config(2, dir.path(), bootstrap);
            cluster.cluster_id ^= 1;
            let message = refusal(&cluster);
            assert!(message.contains("of cluster"), "{message}");
        }
    }

    #[test]
    fn rebuild_takes_a_new_incarnation_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(3, dir.path(), Bootstrap::Rebuild);
        let mut identity = check_data_dir(&cfg).unwrap();
        assert!(identity.rebuilding && identity.incarnation > 1);
        // A restart before the rebuild finished goes on rebuilding, even
        // without the flag.
        let resumed = check_data_dir(&config(3, dir.path(), Bootstrap::Existing)).unwrap();
        assert_eq!(resumed, identity);
        finish_rebuild(&cfg, &mut identity).unwrap();
        write_segment(&cfg);
        let done = check_data_dir(&config(3, dir.path(), Bootstrap::Existing)).unwrap();
        assert!(!done.rebuilding);
        assert_eq!(done.incarnation, identity.incarnation);
    }

    /// What the log leaves once it has opened: one segment file.
    fn write_segment(cfg: &NodeConfig) {
        let wal = cfg.data_dir.join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join(synod_storage::segment::file_name(1)), b"data").unwrap();
    }

    /// Issue 12 review: an identity with no log (wal/ deleted, or a volume
    /// that did not come back) is a lost disk too, not a fresh start.
    #[test]
    fn an_identity_without_its_log_is_refused_and_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let init = config(2, dir.path(), Bootstrap::New);
        let first = check_data_dir(&init).unwrap();
        write_segment(&init);
        std::fs::remove_dir_all(init.data_dir.join("wal")).unwrap();
        let message = refusal(&config(2, dir.path(), Bootstrap::Existing));
        assert!(message.contains("no log"), "{message}");
        assert!(message.contains("--rebuild"), "{message}");
        let rebuilt = check_data_dir(&config(2, dir.path(), Bootstrap::Rebuild)).unwrap();
        assert!(rebuilt.rebuilding && rebuilt.incarnation > first.incarnation);
    }

    /// Review (stop 62): with `wal/` emptied and `snap/` still holding a
    /// snapshot, the check took the snapshot for the node's data, and the
    /// log opened empty: the node started with no promises and voted. Now
    /// only a segment counts, and `--init` does not pass either (the node
    /// did run: it wrote snapshots).
    #[test]
    fn snapshots_without_a_log_are_refused_even_with_init() {
        let dir = tempfile::tempdir().unwrap();
        let init = config(2, dir.path(), Bootstrap::New);
        check_data_dir(&init).unwrap();
        write_segment(&init);
        let snap = init.data_dir.join("snap");
        std::fs::create_dir_all(&snap).unwrap();
        let name = synod_storage::snapshot_file::file_name(
            synod_core::GroupId(0),
            synod_core::InstanceId(40),
        );
        std::fs::write(snap.join(name), b"snapshot").unwrap();
        for segment in std::fs::read_dir(init.data_dir.join("wal")).unwrap() {
            std::fs::remove_file(segment.unwrap().path()).unwrap();
        }
        for bootstrap in [Bootstrap::Existing, Bootstrap::New] {
            let message = refusal(&config(2, dir.path(), bootstrap));
            assert!(
                message.contains("no log") && message.contains("--rebuild"),
                "{message}"
            );
        }
        let rebuilt = check_data_dir(&config(2, dir.path(), Bootstrap::Rebuild)).unwrap();
        assert!(rebuilt.rebuilding);
    }

    #[test]
    fn a_log_without_identity_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1, dir.path(), Bootstrap::Existing);
        let wal = cfg.data_dir.join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join(synod_storage::segment::file_name(1)), b"data").unwrap();
        let adopted = check_data_dir(&cfg).unwrap();
        assert_eq!((adopted.incarnation, adopted.rebuilding), (1, false));
    }
}
