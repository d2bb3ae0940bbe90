//! Fail fast, visibly (issue 13, item 7), on a real `synod server`: a full
//! disk (simulated with RLIMIT_FSIZE, which works as root and needs no
//! tmpfs) ends the process with a non-zero status and one log line that
//! says what failed and what to do. Before, the process lived on after a
//! fatal storage error: PING answered, data commands hung, SIGTERM did not
//! end it.

use crate::common;

use common::Cluster;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// The largest file the server may write: its first log segment (allocated
/// 4 MiB ahead) fits, growing it past this fails with EFBIG.
const FILE_BYTES_MAX: u64 = 6 << 20;

#[test]
fn a_full_disk_ends_the_server_with_a_clear_message() {
    let addrs = common::free_addrs(3);
    let cluster = Cluster {
        dir: tempfile::tempdir().expect("tempdir"),
        resp: vec![addrs[0]],
        paxos: vec![addrs[1]],
        http: vec![addrs[2]],
        children: vec![None],
        extra: Vec::new(),
        tls: None,
        started: vec![false],
    };
    let mut command = cluster.server_command(0, &["--init"]);
    // SAFETY: between fork and exec only async-signal-safe calls
    // (setrlimit, signal), touching no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FILE_BYTES_MAX,
                rlim_max: FILE_BYTES_MAX,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A write past the limit then fails with EFBIG instead of
            // killing the process with SIGXFSZ: the server must report it.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn synod server");
    cluster.wait_ping(0);
    cluster.wait_writable(0);

    let value = vec![b'v'; 256 << 10];
    let mut writes_ok = 0;
    let mut client = cluster.client(0);
    for k in 0..64 {
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("key{k}"))
            .arg(&value)
            .query(&mut client);
        match result {
            Ok(()) => writes_ok += 1,
            Err(_) => break,
        }
    }
    assert!(writes_ok > 0, "some writes fit before the disk is full");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(cluster.log_path(0)).unwrap_or_default();
            panic!("the server outlived its fatal error (a zombie): {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("node stopped on a fatal error"))
        .unwrap_or_else(|| panic!("no fatal line in {log}"));
    assert!(line.contains("storage"), "{line}");
    assert!(line.contains("restart the node"), "says what to do: {line}");
    eprintln!("{line}");
}

/// The other case: idle connections used up the descriptors, so
/// opening the next snapshot or log file failed (EMFILE) and the node lived
/// on as a zombie. Now descriptors are reserved for the WAL, snapshots,
/// peers and the admin port, and `--max-clients` is lowered to what
/// RLIMIT_NOFILE leaves: far more idle sockets than descriptors leave the
/// node writing and snapshotting. A limit too low for the reserve is refused
/// at start with a message (a non-zero exit, never a half-started node).
#[test]
fn idle_sockets_cannot_take_the_descriptors_the_node_needs() {
    fn cluster() -> Cluster {
        let addrs = common::free_addrs(3);
        Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            resp: vec![addrs[0]],
            paxos: vec![addrs[1]],
            http: vec![addrs[2]],
            children: vec![None],
            extra: vec!["--snapshot-instances".into(), "20".into()],
            tls: None,
            started: vec![false],
        }
    }
    fn spawn_with_files_max(cluster: &Cluster, files_max: u64) -> std::process::Child {
        let mut command = cluster.server_command(0, &["--init"]);
        // SAFETY: only setrlimit between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: files_max,
                    rlim_max: files_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().expect("spawn synod server")
    }

    // Too few descriptors for the reserve: refused at start, visibly.
    let small = cluster();
    let mut child = spawn_with_files_max(&small, 64);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "started with 64 descriptors");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(small.log_path(0)).expect("log");
    assert!(log.contains("open file limit"), "{log}");

    // Enough for the reserve: 3x more idle sockets than descriptors.
    const FILES_MAX: u64 = 256;
    let cluster = cluster();
    let mut child = spawn_with_files_max(&cluster, FILES_MAX);
    cluster.wait_ping(0);
    cluster.wait_writable(0);
    let mut client = cluster.client(0);
    let idle: Vec<std::net::TcpStream> = (0..3 * FILES_MAX)
        .filter_map(|_| std::net::TcpStream::connect(cluster.resp[0]).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // 100 writes: five snapshots' worth, each opening files.
    for k in 0..100 {
        let reply: redis::RedisResult<String> = redis::cmd("SET")
            .arg(format!("k{k}"))
            .arg("v")
            .query(&mut client);
        if let Err(err) = reply {
            let log = std::fs::read_to_string(cluster.log_path(0)).unwrap_or_default();
            panic!(
                "SET {k} failed with {} idle sockets open: {err}\n{log}",
                idle.len()
            );
        }
    }
    assert!(child.try_wait().expect("wait").is_none(), "the node exited");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert!(!log.contains("fatal"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}

/// Review (stop 62): a snapshot file cut short under a running node (read
/// through a memory map) ended it with SIGBUS and not a word. It still
/// ends (nothing can be returned from a faulting memory access), now with
/// a line that says why.
#[test]
fn a_snapshot_cut_short_under_the_node_ends_it_with_a_message() {
    let mut cluster = Cluster::start(1, &[]);
    let mut client = cluster.client(0);
    let value = vec![b'v'; 1000];
    for k in 0..2000 {
        let () = redis::cmd("SET")
            .arg(format!("key{k}"))
            .arg(&value)
            .query(&mut client)
            .expect("SET");
    }
    let () = redis::cmd("SAVE").query(&mut client).expect("SAVE");
    drop(client);
    // Restarted, the node reads its state from the snapshot's map.
    cluster.kill9(0);
    cluster.restart_node_with(0, &[]);
    cluster.wait_ping(0);
    cluster.wait_writable(0);
    let snap = cluster.data_dir(0).join("snap");
    let snapshot = std::fs::read_dir(&snap)
        .expect("snap")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a snapshot");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&snapshot)
        .expect("open");
    file.set_len(4096).expect("cut");
    drop(file);
    // A new snapshot reads every key, some from the cut pages.
    let mut client = cluster.client(0);
    let _: redis::RedisResult<()> = redis::cmd("SAVE").query(&mut client);
    let log = ended_by_sigbus(&mut cluster);
    assert!(
        log.contains("synod: fatal: SIGBUS: a memory-mapped file"),
        "no message: {log}"
    );
}

/// Waits for node 0 to end, checks that SIGBUS ended it, and returns its
/// log.
fn ended_by_sigbus(cluster: &mut Cluster) -> String {
    use std::os::unix::process::ExitStatusExt;
    let child = cluster.children[0].as_mut().expect("running");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the node lived on");
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.children[0] = None;
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}: {log}");
    log
}

/// A SIGBUS sent by `kill` (no faulting access to run again) also ends the
/// node, after the message: the first handler returned and left it running
/// after it said it stopped (review, stop 62).
#[test]
fn a_sigbus_sent_by_kill_ends_the_node_too() {
    let mut cluster = Cluster::start(1, &[]);
    let child = cluster.children[0].as_mut().expect("running");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGBUS) }, 0);
    let log = ended_by_sigbus(&mut cluster);
    assert!(log.contains("synod: fatal: SIGBUS"), "no message: {log}");
}
