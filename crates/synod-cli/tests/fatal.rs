//! Fail fast, visibly (issue 13, item 7), on a real `synod server`: a full
//! disk (simulated with RLIMIT_FSIZE, which works as root and needs no
//! tmpfs) ends the process with a non-zero status and one log line that
//! says what failed and what to do. Before, the process lived on after a
//! fatal storage error: PING answered, data commands hung, SIGTERM did not
//! end it.

mod common;

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

/// The other case: idle connections use up the descriptors
/// (RLIMIT_NOFILE 64 here), so opening the next snapshot file fails with
/// EMFILE. Before, the node logged the error and lived on as a zombie.
#[test]
fn running_out_of_descriptors_during_a_snapshot_ends_the_server() {
    const FILES_MAX: u64 = 64;
    let addrs = common::free_addrs(3);
    let cluster = Cluster {
        dir: tempfile::tempdir().expect("tempdir"),
        resp: vec![addrs[0]],
        paxos: vec![addrs[1]],
        http: vec![addrs[2]],
        children: vec![None],
        extra: vec!["--snapshot-instances".into(), "20".into()],
        tls: None,
        started: vec![false],
    };
    let mut command = cluster.server_command(0, &["--init"]);
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FILES_MAX,
                rlim_max: FILES_MAX,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn synod server");
    cluster.wait_ping(0);
    cluster.wait_writable(0);
    let mut client = cluster.client(0);
    // Idle sockets until the server can accept no more.
    let idle: Vec<std::net::TcpStream> = (0..FILES_MAX)
        .filter_map(|_| std::net::TcpStream::connect(cluster.resp[0]).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(cluster.log_path(0)).unwrap_or_default();
            panic!("the server outlived its fatal error (a zombie): {log}");
        }
        let _: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("k{k}"))
            .arg("v")
            .query(&mut client);
        k += 1;
    };
    drop(idle);
    assert!(!status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("node stopped on a fatal error"))
        .unwrap_or_else(|| panic!("no fatal line in {log}"));
    assert!(line.contains("Too many open files"), "{line}");
    assert!(line.contains("restart the node"), "says what to do: {line}");
    eprintln!("{line}");
}
