//! The operator's case of issue 12, item 4, with the real binary: stop a node
//! of a running cluster, delete its data directory, start it again with the
//! same id. It must refuse, saying what happened and what to do; with
//! `--rebuild` it comes back, catches up, votes again, and writes go on.

use crate::common;

use common::Cluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The body of `GET /status` on node `i`'s admin endpoint.
fn status(cluster: &Cluster, i: usize) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&cluster.http[i], Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn get(cluster: &Cluster, i: usize, key: &str) -> redis::RedisResult<Option<String>> {
    let mut con = cluster.client(i);
    redis::cmd("GET").arg(key).query(&mut con)
}

fn set_retrying(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut con = cluster.client(i);
        let ok: redis::RedisResult<String> = redis::cmd("SET").arg(key).arg(value).query(&mut con);
        if ok.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SET {key} via node {}: {ok:?}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_wiped_node_refuses_to_start_and_rebuilds_with_the_flag() {
    let mut cluster = Cluster::start(3, &[]);
    set_retrying(&cluster, 0, "before", "x");
    // Node 2 is stopped and its disk is lost.
    cluster.kill9(1);
    std::fs::remove_dir_all(cluster.data_dir(1)).expect("wipe node 2");

    // Started again with the same id and no flag: it refuses, and says why.
    let mut child = cluster
        .server_command(1, &[])
        .spawn()
        .expect("spawn synod server");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node 2 started on a wiped data directory instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!exit.success(), "refusal must exit non-zero: {exit}");
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("log");
    assert!(log.contains("has no Synod identity"), "{log}");
    assert!(log.contains("--rebuild"), "{log}");
    assert!(
        !cluster.data_dir(1).join("wal").exists(),
        "refusing must not create a log"
    );

    // With --rebuild it comes back and catches up: the key written before
    // the wipe is readable through it.
    let child = cluster
        .server_command(1, &["--rebuild"])
        .spawn()
        .expect("spawn synod server --rebuild");
    cluster.children[1] = Some(child);
    cluster.wait_ping(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(value)) = get(&cluster, 1, "before") {
            assert_eq!(value, "x");
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // It votes again once every member reported and it caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = status(&cluster, 1).unwrap_or_default();
        if text.contains("\"rebuilding\":false") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never finished rebuilding: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Writes keep working, through it too.
    set_retrying(&cluster, 1, "after", "y");
    set_retrying(&cluster, 0, "after2", "z");
    assert_eq!(get(&cluster, 1, "after2").expect("GET"), Some("z".into()));
    // Its vote counts: with node 1 stopped, nodes 2 and 3 still choose.
    cluster.kill9(0);
    set_retrying(&cluster, 2, "quorum", "without node 1");
    assert_eq!(
        get(&cluster, 1, "quorum").expect("GET"),
        Some("without node 1".into())
    );
    // A restart after the rebuild votes at once, without the flag.
    cluster.kill9(1);
    cluster.start_node(1);
    cluster.wait_ping(1);
    set_retrying(&cluster, 1, "restarted", "w");
}

/// `synod cluster` starts a brand-new cluster and resumes it with no flags;
/// resumed with one node's directory deleted, that node refuses (the
/// launcher and the node's log say so) and the other two go on.
#[test]
fn synod_cluster_initialises_once_and_refuses_a_wiped_node_on_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Nodes 1-3 use base + 1..=3, + 101..=103 and + 201..=203.
    let base = common::free_port_block(204);
    let launch = |run: usize| {
        let out = std::fs::File::create(dir.path().join(format!("launcher-{run}.txt")))
            .expect("launcher output");
        std::process::Command::new(env!("CARGO_BIN_EXE_synod"))
            .arg("cluster")
            .args(["--nodes", "3", "--base-port", &base.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn synod cluster")
    };
    let url = |i: u16| format!("redis://127.0.0.1:{}/", base + i);
    let query = |i: u16, cmd: &redis::Cmd| -> redis::RedisResult<Option<String>> {
        let client = redis::Client::open(url(i))?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        cmd.query(&mut con)
    };
    let until_ok = |i: u16, cmd: redis::Cmd| -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match query(i, &cmd) {
                Ok(reply) => return reply,
                Err(e) => assert!(Instant::now() < deadline, "node {i}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let stop = |mut child: std::process::Child| {
        // SAFETY: a signal to our own child process.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        child.wait().expect("launcher exits");
    };
    let mut set = redis::cmd("SET");
    set.arg("k").arg("v");
    let mut get = redis::cmd("GET");
    get.arg("k");

    // A brand-new cluster, no flags.
    let first = launch(1);
    until_ok(1, set.clone());
    stop(first);
    // Resumed, no flags: the data is there.
    let second = launch(2);
    assert_eq!(until_ok(3, get.clone()), Some("v".into()));
    stop(second);
    // Node 2's directory is gone: it refuses, the others resume.
    std::fs::remove_dir_all(data.join("node-2")).expect("wipe node 2");
    let third = launch(3);
    assert_eq!(until_ok(1, get.clone()), Some("v".into()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(data.join("node-2.log")).unwrap_or_default();
        if log.contains("has no Synod identity") {
            assert!(log.contains("--rebuild"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "node 2 did not refuse: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(third);
    let launcher = std::fs::read_to_string(dir.path().join("launcher-3.txt")).expect("output");
    assert!(launcher.contains("node 2 has no data"), "{launcher}");
    assert!(!data.join("node-2").join("wal").exists());
}
