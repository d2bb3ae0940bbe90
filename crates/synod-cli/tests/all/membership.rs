//! Membership changes through the command line, on real processes: a node
//! joins a running 3-node cluster with `synod server --join`, shows in
//! `synod member list` as a learner, is promoted, takes over leadership
//! with `synod leader transfer`, restarts from its data directory without
//! contacting anyone; a second node joins and is promoted by the leader on
//! its own; SYNOD.MEMBER refuses duplicates, unknown subcommands and
//! clients without AUTH.

use crate::common;

use common::{free_addrs, Cluster};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "membership-test-pw";
/// Every wait in this test is bounded by this.
const WAIT: Duration = Duration::from_secs(90);

fn synod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(args)
        .output()
        .expect("run synod")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `synod member list` through `addr`: (id, role) per line, and the text.
fn member_list(addr: SocketAddr) -> (Vec<(String, String)>, String) {
    let out = synod(&[
        "member",
        "list",
        "--cluster",
        &addr.to_string(),
        "--password",
        PASSWORD,
    ]);
    let text = stdout(&out);
    if !out.status.success() {
        return (Vec::new(), format!("{text}{}", stderr(&out)));
    }
    let rows = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 6, "member list line: {line:?}");
            (fields[0].to_string(), fields[3].to_string())
        })
        .collect();
    (rows, text)
}

/// Waits until `synod member list` through `addr` shows node `id` with a
/// role in `roles`; returns the listing.
fn wait_role(addr: SocketAddr, id: &str, roles: &[&str], log: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (rows, text) = member_list(addr);
        if rows
            .iter()
            .any(|(i, r)| i == id && roles.contains(&r.as_str()))
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never showed as {roles:?}; last listing:\n{text}\nnode log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `synod server --join` process, killed when dropped.
struct Joiner {
    id: u32,
    resp: SocketAddr,
    paxos: SocketAddr,
    http: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Joiner {
    fn new(root: &Path, id: u32) -> Joiner {
        let addrs = free_addrs(3);
        Joiner {
            id,
            resp: addrs[0],
            paxos: addrs[1],
            http: addrs[2],
            dir: root.join(format!("node-{id}")),
            log: root.join(format!("node-{id}.log")),
            child: None,
        }
    }

    fn start(&mut self, member: SocketAddr, extra: &[&str]) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_synod"))
            .arg("server")
            .args(["--id", &self.id.to_string()])
            .args(["--join", &member.to_string()])
            .args(["--paxos", &self.paxos.to_string()])
            .args(["--resp", &self.resp.to_string()])
            .args(["--http", &self.http.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--insecure-peer-links", "--password", PASSWORD])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn synod server --join");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One raw request on a fresh connection (no AUTH); the reply's first line.
fn raw_first_line(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Runs `synod <args>` until it succeeds, within [`WAIT`].
fn until_ok(args: &[&str], log: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = synod(args);
        if out.status.success() {
            return stdout(&out);
        }
        assert!(
            Instant::now() < deadline,
            "synod {args:?} kept failing: {}\nnode log:\n{}",
            stderr(&out),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_node_joins_is_promoted_takes_over_and_restarts_alone() {
    let cluster = Cluster::start(3, &["--password", PASSWORD]);
    let first = cluster.resp[0];
    let second = cluster.resp[1].to_string();

    // Node 4 joins through node 1 as a learner (stays one until promoted).
    let mut four = Joiner::new(cluster.dir.path(), 4);
    four.start(first, &["--learner"]);
    let listing = wait_role(first, "4", &["learner"], &four.log);
    assert!(
        listing.contains(&four.paxos.to_string()) && listing.contains(&four.resp.to_string()),
        "{listing}"
    );
    assert_eq!(member_list(first).0.len(), 4, "{listing}");

    // Refusals: a duplicate id (CLI and RESP), an unknown subcommand, no AUTH.
    let dup = synod(&[
        "member",
        "add",
        "--cluster",
        &second,
        "--password",
        PASSWORD,
        "--id",
        "4",
        "--paxos",
        "127.0.0.1:1",
    ]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("already a member"),
        "{}",
        stderr(&dup)
    );
    let mut con = cluster.client(0);
    let err = redis::cmd("SYNOD.MEMBER")
        .arg("ADD")
        .arg("4")
        .arg("127.0.0.1:1")
        .query::<()>(&mut con)
        .expect_err("duplicate id");
    assert!(err.to_string().contains("already a member"), "{err}");
    let err = redis::cmd("SYNOD.MEMBER")
        .arg("FROB")
        .query::<()>(&mut con)
        .expect_err("unknown subcommand");
    assert!(
        err.to_string()
            .contains("unknown subcommand 'FROB'. Try SYNOD.MEMBER HELP."),
        "{err}"
    );
    let err = redis::cmd("SYNOD.LEADER")
        .query::<()>(&mut con)
        .expect_err("no subcommand");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    let noauth = raw_first_line(first, b"*2\r\n$12\r\nSYNOD.MEMBER\r\n$4\r\nLIST\r\n");
    assert!(noauth.starts_with("-NOAUTH"), "{noauth}");
    let out = synod(&["member", "list", "--cluster", &first.to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NOAUTH"), "{}", stderr(&out));
    // INFO replication shows the configuration.
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .expect("info");
    assert!(info.contains("membership_epoch:"), "{info}");
    assert!(info.contains("learners:4"), "{info}");
    assert!(
        info.contains(&format!("id=4,role=learner,paxos={}", four.paxos)),
        "{info}"
    );

    // Promote it (through a follower or the leader: any member forwards).
    // Refused while it is far behind, so retried until it caught up.
    until_ok(
        &[
            "member",
            "promote",
            "--cluster",
            &second,
            "--password",
            PASSWORD,
            "--id",
            "4",
        ],
        &four.log,
    );
    wait_role(first, "4", &["voter", "leader"], &four.log);

    // Hand leadership to node 4.
    let out = synod(&[
        "leader",
        "transfer",
        "--cluster",
        &first.to_string(),
        "--password",
        PASSWORD,
        "--to",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}\nnode 4 log:\n{}",
        stderr(&out),
        four.log_text()
    );
    wait_role(first, "4", &["leader"], &four.log);
    // Asked at a follower, the listing comes from the leader: lags are
    // known (once node 4 has finished taking over, which node 1 may see
    // announced a moment before).
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, listing) = member_list(first);
        let complete = listing.lines().count() == 4
            && listing
                .lines()
                .all(|l| l.split_whitespace().last() != Some("-"));
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lags never complete through a follower:\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut via_four = redis::Client::open(format!("redis://:{PASSWORD}@{}/", four.resp))
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect to node 4");
    let _: () = redis::cmd("SET")
        .arg("joined")
        .arg("yes")
        .query(&mut via_four)
        .expect("write through the new leader");
    let got: String = redis::cmd("GET")
        .arg("joined")
        .query(&mut con)
        .expect("read on node 1");
    assert_eq!(got, "yes");

    // Restart node 4 from its data directory: --join now names an address
    // where nobody listens, which a restart never contacts.
    four.kill9();
    four.start("127.0.0.1:1".parse().unwrap(), &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = redis::Client::open(format!("redis://:{PASSWORD}@{}/", four.resp))
            .ok()
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)).ok())
            .and_then(|mut c| {
                redis::cmd("SET")
                    .arg("after-restart")
                    .arg("1")
                    .query::<()>(&mut c)
                    .ok()
            });
        if ok.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 did not serve after its restart:\n{}",
            four.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Node 5 joins the default way (no --learner): the leader promotes it
    // once it has caught up.
    let mut five = Joiner::new(cluster.dir.path(), 5);
    five.start(cluster.resp[2], &[]);
    wait_role(first, "5", &["voter", "leader"], &five.log);
    assert_eq!(member_list(first).0.len(), 5);
}

/// Writes through `addr` in a loop until told to stop; records when each
/// write was acknowledged (for the longest gap: the unavailability a client
/// of that node saw).
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acks: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(addr: SocketAddr) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, acks2) = (stop.clone(), acks.clone());
        let handle = std::thread::spawn(move || {
            let client =
                redis::Client::open(format!("redis://:{PASSWORD}@{addr}/")).expect("client");
            let mut con = client
                .get_connection_with_timeout(Duration::from_secs(10))
                .expect("connect");
            let mut k = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let ok = redis::cmd("SET")
                    .arg(format!("w{}", k % 100))
                    .arg(k)
                    .query::<()>(&mut con)
                    .is_ok();
                if ok {
                    acks2.lock().unwrap().push(Instant::now());
                }
            }
        });
        Writer {
            stop,
            acks,
            handle: Some(handle),
        }
    }

    /// The longest time between two acknowledgements from `from` on.
    fn longest_gap_since(&self, from: Instant) -> Duration {
        let acks = self.acks.lock().unwrap();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for t in acks.iter().filter(|t| **t >= from) {
            gap = gap.max(*t - last);
            last = *t;
        }
        gap.max(Instant::now() - last)
    }

    fn acks_since(&self, from: Instant) -> usize {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t >= from)
            .count()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The operator's walkthrough (issue 14): 3-node cluster with data → node 4
/// joins as a learner → promoted → node 1 killed with kill -9 and its data
/// deleted → node 1 removed → every key readable on node 4 → leadership
/// handed to node 4 → writes go on; and the unavailability a writer sees
/// during a clean transfer and during a clean SIGTERM of the leader, which
/// must stay below an election timeout (500 ms here) — the target is 100 ms.
#[test]
fn operator_walkthrough_replace_a_lost_node_and_hand_over_leadership() {
    let mut cluster = Cluster::start(3, &["--password", PASSWORD]);
    let second = cluster.resp[1].to_string();
    let mut con = cluster.client(0);
    for k in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{k}"))
            .arg(format!("value{k}"))
            .query(&mut con)
            .expect("write");
    }
    drop(con);

    let mut four = Joiner::new(cluster.dir.path(), 4);
    four.start(cluster.resp[1], &["--learner"]);
    wait_role(cluster.resp[1], "4", &["learner"], &four.log);
    until_ok(
        &[
            "member",
            "promote",
            "--cluster",
            &second,
            "--password",
            PASSWORD,
            "--id",
            "4",
        ],
        &four.log,
    );
    wait_role(cluster.resp[1], "4", &["voter", "leader"], &four.log);

    // Node 1's machine dies with its disk.
    cluster.kill9(0);
    std::fs::remove_dir_all(cluster.data_dir(0)).expect("delete node 1's data");
    until_ok(
        &[
            "member",
            "remove",
            "--cluster",
            &second,
            "--password",
            PASSWORD,
            "--id",
            "1",
        ],
        &four.log,
    );
    let deadline = Instant::now() + WAIT;
    while member_list(cluster.resp[1])
        .0
        .iter()
        .any(|(id, _)| id == "1")
    {
        assert!(Instant::now() < deadline, "node 1 is still listed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every key is readable on node 4.
    let mut on_four = redis::Client::open(format!("redis://:{PASSWORD}@{}/", four.resp))
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect to node 4");
    for k in 0..200 {
        let got: String = redis::cmd("GET")
            .arg(format!("key{k}"))
            .query(&mut on_four)
            .expect("read on node 4");
        assert_eq!(got, format!("value{k}"));
    }

    // A writer on node 2 all along; hand leadership to node 4.
    let writer = Writer::start(cluster.resp[1]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = synod(&[
        "leader",
        "transfer",
        "--cluster",
        &second,
        "--password",
        PASSWORD,
        "--to",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_role(cluster.resp[1], "4", &["leader"], &four.log);
    std::thread::sleep(Duration::from_millis(500));
    let transfer_gap = writer.longest_gap_since(started);
    assert!(
        writer.acks_since(started) > 10,
        "writes go on after the transfer"
    );

    // A clean stop (SIGTERM) of the leader, node 4: it hands over first.
    let pid = four.child.as_ref().expect("node 4 runs").id();
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exited = four.child.as_mut().expect("node 4").wait().expect("wait");
    let stop_took = started.elapsed();
    assert!(exited.success(), "a clean stop exits 0: {exited}");
    std::thread::sleep(Duration::from_millis(1000));
    let sigterm_gap = writer.longest_gap_since(started);
    assert!(
        writer.acks_since(started) > 10,
        "writes go on after the stop"
    );
    drop(writer);
    println!(
        "unavailability seen by a writer on node 2: leader transfer {} ms, SIGTERM of the leader {} ms (the process exited in {} ms)",
        transfer_gap.as_millis(),
        sigterm_gap.as_millis(),
        stop_took.as_millis()
    );
    // Below the smallest election timeout: no election was waited for.
    assert!(
        transfer_gap < Duration::from_millis(500),
        "{transfer_gap:?}"
    );
    assert!(sigterm_gap < Duration::from_millis(500), "{sigterm_gap:?}");
}
