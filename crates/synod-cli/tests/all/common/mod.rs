//! A local cluster of real `synod server` processes for integration tests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub resp: Vec<SocketAddr>,
    pub paxos: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub children: Vec<Option<Child>>,
    pub extra: Vec<String>,
    /// Peer-link credentials from `synod certs` (TLS links), or `None` for
    /// `--insecure-peer-links` (loopback).
    pub tls: Option<PathBuf>,
    /// Nodes started at least once: their first start passes `--init` (a
    /// brand-new cluster), later ones resume their data directory.
    pub started: Vec<bool>,
}

// The free loopback ports, shared with the library's cluster tests.
#[path = "../../../../../test-support/free_ports.rs"]
mod free_ports;
#[allow(unused_imports)] // Each test binary uses a part.
pub use free_ports::{free_addrs, free_port_block};

/// Runs a prepared `synod bench` command with `--json JSON`, checks that it
/// succeeded and returns its standard output and the parsed report.
pub fn run_bench(command: &mut Command, json: &std::path::Path) -> (String, serde_json::Value) {
    let out = command
        .arg("--json")
        .arg(json)
        .output()
        .expect("run synod bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json")).expect("parse");
    (stdout, report)
}

impl Cluster {
    /// Starts `n` nodes and waits until every node answers PING and a write
    /// goes through.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, false)
    }

    /// Like [`Cluster::start`], with TLS peer links: credentials are made
    /// with `synod certs` in DIR/tls first.
    pub fn start_tls(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, true)
    }

    fn start_with(n: usize, extra: &[&str], tls: bool) -> Cluster {
        let addrs = free_addrs(3 * n);
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls.then(|| {
            let tls_dir = dir.path().join("tls");
            let nodes: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
            let out = Command::new(env!("CARGO_BIN_EXE_synod"))
                .args(["certs", "--out"])
                .arg(&tls_dir)
                .args(["--nodes", &nodes.join(","), "--cluster", "test"])
                .output()
                .expect("run synod certs");
            assert!(out.status.success(), "synod certs: {out:?}");
            tls_dir
        });
        let mut cluster = Cluster {
            dir,
            resp: addrs[..n].to_vec(),
            paxos: addrs[n..2 * n].to_vec(),
            http: addrs[2 * n..].to_vec(),
            children: (0..n).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
            started: vec![false; n],
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        for i in 0..n {
            cluster.wait_ping(i);
        }
        cluster.wait_writable(0);
        cluster
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", i + 1))
    }

    pub fn start_node(&mut self, i: usize) {
        let first: &[&str] = if self.started[i] { &[] } else { &["--init"] };
        let child = self
            .server_command(i, first)
            .spawn()
            .expect("spawn synod server");
        self.started[i] = true;
        self.children[i] = Some(child);
    }

    /// The `synod server` command of node `i`, with `args` added, its output
    /// appended to the node's log file.
    pub fn server_command(&self, i: usize, args: &[&str]) -> Command {
        let peers: Vec<String> = self
            .paxos
            .iter()
            .enumerate()
            .map(|(k, a)| format!("{}={a}", k + 1))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_synod"));
        command
            .arg("server")
            .args(["--id", &(i + 1).to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--resp", &self.resp[i].to_string()])
            .args(["--http", &self.http[i].to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(self.peer_link_args(i))
            .args(&self.extra)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        command
    }

    /// Node `i`'s TLS files, or plain links on loopback.
    pub fn peer_link_args(&self, i: usize) -> Vec<String> {
        match &self.tls {
            None => vec!["--insecure-peer-links".into()],
            Some(dir) => {
                let file = |name: String| dir.join(name).display().to_string();
                vec![
                    "--tls-ca".into(),
                    file("ca.pem".into()),
                    "--tls-cert".into(),
                    file(format!("node-{}.pem", i + 1)),
                    "--tls-key".into(),
                    file(format!("node-{}-key.pem", i + 1)),
                ]
            }
        }
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}.log", i + 1))
    }

    /// Starts node `i` again (after `kill9`) with `args` added to its
    /// command line.
    pub fn restart_node_with(&mut self, i: usize, args: &[&str]) {
        assert!(self.started[i] && self.children[i].is_none());
        let child = self
            .server_command(i, args)
            .spawn()
            .expect("spawn synod server");
        self.children[i] = Some(child);
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, i: usize) -> String {
        let flag = |name: &str| {
            self.extra
                .iter()
                .position(|a| a == name)
                .and_then(|k| self.extra.get(k + 1))
                .cloned()
        };
        // --password-file: the file's first line (see `synod server`).
        let password = flag("--password").or_else(|| {
            flag("--password-file").and_then(|path| {
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.lines().next().map(str::to_string))
            })
        });
        match password {
            Some(p) => format!("redis://:{p}@{}/", self.resp[i]),
            None => format!("redis://{}/", self.resp[i]),
        }
    }

    pub fn client(&self, i: usize) -> redis::Connection {
        let client = redis::Client::open(self.url(i)).expect("client");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        con
    }

    /// The last lines (up to 8 KiB) of node `i`'s log, for a failure message.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let mut start = log.len().saturating_sub(8 << 10);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    pub fn wait_ping(&self, i: usize) {
        // Generous: on a loaded 2-core machine a start (TLS credentials,
        // log replay) has taken longer than 20 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(self.resp[i]).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never listened; its log:\n{}",
                i + 1,
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a write through node `i` succeeds.
    pub fn wait_writable(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut con = self.client(i);
            let ok: redis::RedisResult<String> =
                redis::cmd("SET").arg("__ready").arg("1").query(&mut con);
            if ok.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no write through node {} in time: {ok:?}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// INFO replication field of node `i`.
    pub fn info_field(&self, i: usize, field: &str) -> Option<String> {
        let mut con = self.client(i);
        let info: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
    }

    /// A counter from node `i`'s /metrics (0 if unreachable or absent).
    pub fn metric(&self, i: usize, name: &str) -> u64 {
        self.try_metric(i, name).unwrap_or(0)
    }

    /// A counter from node `i`'s /metrics; `None` if the node did not
    /// answer or the series is not there.
    pub fn try_metric(&self, i: usize, name: &str) -> Option<u64> {
        let mut stream = TcpStream::connect(self.http[i]).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let series = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn leader(&self) -> Option<usize> {
        for i in 0..self.resp.len() {
            if self.children[i].is_none() {
                continue;
            }
            if let Some(id) = self.info_field(i, "leader_id") {
                if let Ok(id) = id.parse::<usize>() {
                    return Some(id - 1);
                }
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}
