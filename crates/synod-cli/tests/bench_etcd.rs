//! `synod bench --protocol etcd` against a real single-member etcd (skipped,
//! with a message, when `etcd` is not installed: apt-get install etcd-server).
//! Built only with the `etcd` feature (`cargo test -p synod-cli --features etcd`).
#![cfg(feature = "etcd")]

#[path = "all/common/mod.rs"]
mod common;

use common::{free_addrs, run_bench};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh member may take to elect itself and serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A single-member etcd on loopback, stopped on drop.
struct Etcd {
    child: Child,
    client: SocketAddr,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts etcd in `dir`, or None when it is not installed.
fn start_etcd(dir: &Path) -> Option<Etcd> {
    if Command::new("etcd").arg("--version").output().is_err() {
        return None;
    }
    let addrs = free_addrs(2);
    let (client, peer) = (
        format!("http://{}", addrs[0]),
        format!("http://{}", addrs[1]),
    );
    let log = std::fs::File::create(dir.join("etcd.log")).expect("log file");
    let child = Command::new("etcd")
        .args(["--name", "bench-test"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("bench-test={peer}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn etcd");
    let etcd = Etcd {
        child,
        client: addrs[0],
    };
    wait_healthy(&etcd, dir);
    Some(etcd)
}

/// Waits until etcd's /health says it has a leader (HTTP on the client port).
fn wait_healthy(etcd: &Etcd, dir: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut answer = String::new();
        if let Ok(mut stream) = TcpStream::connect_timeout(&etcd.client, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let _ = stream.read_to_string(&mut answer);
        }
        if answer.contains("\"health\":\"true\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never became healthy; its log:\n{}",
            std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `synod bench --protocol etcd` with `args` and returns its JSON report.
fn bench(etcd: &Etcd, dir: &Path, args: &[&str]) -> serde_json::Value {
    let json = dir.join("report.json");
    let (stdout, report) = run_bench(
        Command::new(env!("CARGO_BIN_EXE_synod"))
            .args(["bench", "--protocol", "etcd", "--addr"])
            .arg(etcd.client.to_string())
            .args(args),
        &json,
    );
    assert!(stdout.contains("ops/s"), "{stdout}");
    report
}

#[test]
fn bench_loads_etcd_and_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(etcd) = start_etcd(dir.path()) else {
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
        return;
    };

    let report = bench(
        &etcd,
        dir.path(),
        &["--duration", "1", "--warmup", "0", "--clients", "2"],
    );
    assert!(report["requests"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    assert_eq!(report["protocol"].as_str(), Some("etcd"), "{report}");

    // Pipelined, with reads: concurrent streams on each client's connection.
    let report = bench(
        &etcd,
        dir.path(),
        &[
            "--duration",
            "1",
            "--warmup",
            "0",
            "--clients",
            "2",
            "--pipeline",
            "4",
            "--read-ratio",
            "0.5",
        ],
    );
    assert!(report["requests"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    assert_eq!(report["pipeline"].as_u64(), Some(4), "{report}");
}
