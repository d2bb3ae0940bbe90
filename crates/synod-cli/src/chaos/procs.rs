//! The chaos cluster's `synod server` processes: start, kill -9, pause,
//! resume, restart, stop, replace; and a small blocking RESP call for the
//! nemesis.
//!
//! A *slot* (1..=n) is a place in the cluster: fixed RESP and Paxos
//! addresses (and network namespace). It starts with node id = slot; the
//! membership nemesis replaces a slot's node with a fresh one under a new id
//! (n+1, n+2, ...) that joins the running cluster. Everything outside this
//! file (clients, probes, partitions, `find_leader`) speaks of slots; node
//! ids appear only in membership commands and in descriptions.

use super::net::Network;
use bytes::BytesMut;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use synod_resp::{parse_reply, write_request, Reply};

/// The server processes of one run.
pub struct Procs {
    exe: PathBuf,
    dir: PathBuf,
    server_args: Vec<String>,
    nodes: Vec<Proc>,
    /// The id the next replacement node gets.
    next_id: u32,
}

struct Proc {
    /// The node id this slot runs now.
    id: u32,
    child: Option<Child>,
    paused: bool,
    /// Set when the process exited without the nemesis killing it.
    crashed: Option<String>,
    /// Started before: later starts resume its data directory (the first
    /// start of a founding node passes `--init`, as a brand-new cluster).
    started: bool,
    /// Set for a node that joined the running cluster: the member's RESP
    /// address its every start passes as `--join` (the first start asks that
    /// member; later ones start from the join schedule in the data
    /// directory and contact nobody). Never `--init`.
    join: Option<SocketAddr>,
    /// A joining node whose first start stopped before writing its join
    /// schedule, though its ADD took effect: it never ran, so later starts
    /// pass `--already-added` (ignored once the schedule exists).
    already_added: bool,
}

impl Procs {
    /// `n` nodes (not started) keeping data and logs under `dir`.
    pub fn new(exe: PathBuf, dir: PathBuf, n: u32, server_args: Vec<String>) -> Procs {
        Procs {
            exe,
            dir,
            server_args,
            nodes: (1..=n)
                .map(|slot| Proc {
                    id: slot,
                    child: None,
                    paused: false,
                    crashed: None,
                    started: false,
                    join: None,
                    already_added: false,
                })
                .collect(),
            next_id: n + 1,
        }
    }

    /// The node id slot `i` runs.
    pub fn id(&self, i: u32) -> u32 {
        self.nodes[i as usize - 1].id
    }

    /// Slot `i`'s node for descriptions: "node 2", or "node 5 (slot 2)" once
    /// the slot's node was replaced.
    pub fn label(&self, i: u32) -> String {
        let id = self.id(i);
        if id == i {
            format!("node {id}")
        } else {
            format!("node {id} (slot {i})")
        }
    }

    /// Every slot's node id, in slot order.
    pub fn ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn data_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    pub fn len(&self) -> u32 {
        self.nodes.len() as u32
    }

    fn node(&mut self, i: u32) -> &mut Proc {
        &mut self.nodes[i as usize - 1]
    }

    /// Starts node `i` (1-based) if it is not running.
    pub fn start(&mut self, net: &Network, i: u32) -> Result<(), String> {
        if self.node(i).child.is_some() {
            return Ok(());
        }
        let id = self.id(i);
        // Founding members always start with the founding peer list (the
        // cluster id is derived from it); the membership in their log says
        // who is a member now.
        let membership: Vec<String> = match self.node(i).join {
            Some(member) => {
                let mut args = vec![
                    "--join".into(),
                    member.to_string(),
                    "--paxos".into(),
                    net.peer_addr(i).to_string(),
                ];
                if self.node(i).already_added {
                    args.push("--already-added".into());
                }
                args
            }
            None => {
                let peers: Vec<String> = (1..=self.len())
                    .map(|j| format!("{j}={}", net.peer_addr(j)))
                    .collect();
                let mut args = vec!["--peers".into(), peers.join(",")];
                if !self.node(i).started {
                    args.push("--init".into());
                }
                args
            }
        };
        let log_path = self.dir.join(format!("node-{id}.log"));
        let (log, log_err) = crate::cluster::open_log(&log_path)?;
        // TLS peer links, credentials made under the run's directory (the
        // namespaced network is not loopback, so plain links are refused);
        // a joining node's are issued from the same CA.
        let peer_links = crate::cluster::peer_link_args(
            &self.dir.join("tls"),
            self.len(),
            &self.server_args,
            id,
        )?;
        let mut command = net.command(i, &self.exe);
        command
            .arg("server")
            .args(&peer_links)
            .args(["--id", &id.to_string()])
            .args(&membership)
            .args(["--resp", &net.resp_addr(i).to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Ctrl-C in a terminal goes to the tester alone, which then stops
            // the nodes itself (not counted as crashes).
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; if the tester dies (even by
        // SIGKILL) its nodes die with it instead of lingering, maybe stopped.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.label(i)))?;
        let node = self.node(i);
        node.child = Some(child);
        node.paused = false;
        node.started = true;
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self, i: u32) {
        let node = self.node(i);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: u32) {
        self.signal(i, libc::SIGSTOP);
        self.node(i).paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: u32) {
        self.signal(i, libc::SIGCONT);
        self.node(i).paused = false;
    }

    fn signal(&mut self, i: u32, signal: libc::c_int) {
        if let Some(child) = &self.node(i).child {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signalling our own child process.
                unsafe {
                    libc::kill(pid, signal);
                }
            }
        }
    }

    /// Whether node `i` runs and is not paused.
    pub fn serving(&self, i: u32) -> bool {
        let node = &self.nodes[i as usize - 1];
        node.child.is_some() && !node.paused
    }

    /// Resumes paused nodes and starts stopped ones.
    pub fn heal(&mut self, net: &Network) -> Result<(), String> {
        for i in 1..=self.len() {
            if self.node(i).paused {
                self.resume(i);
            }
            self.start(net, i)?;
        }
        Ok(())
    }

    /// Notes nodes that exited on their own (a fatal error, a panic): the
    /// nemesis only kills with `kill9`, which forgets the child first, and
    /// waits for a removed node with `take_exit`.
    pub fn reap(&mut self) {
        for (k, node) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    let slot = k + 1;
                    node.crashed.get_or_insert_with(|| {
                        format!("node {} (slot {slot}) exited by itself ({status})", node.id)
                    });
                    node.child = None;
                }
            }
        }
    }

    /// Whether slot `i`'s process has exited; if so it is forgotten (not a
    /// crash: the caller expected it) and its exit status returned.
    pub fn take_exit(&mut self, i: u32) -> Option<String> {
        let node = self.node(i);
        let child = node.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                node.child = None;
                node.paused = false;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => {
                node.child = None;
                Some(format!("unknown ({e})"))
            }
        }
    }

    /// Slot `i` gets a brand-new node (not started): the next id, an empty
    /// data directory, and `--join member` on every start. The old node's
    /// process must be gone (removed from the cluster, so its directory
    /// may never serve again: it is deleted). Returns the new id.
    pub fn replace(&mut self, i: u32, member: SocketAddr) -> Result<u32, String> {
        assert!(
            self.node(i).child.is_none(),
            "slot {i} is replaced while its process runs"
        );
        let old = self.data_dir(self.id(i));
        std::fs::remove_dir_all(&old)
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
        let id = self.next_id;
        self.next_id += 1;
        let fresh = self.data_dir(id);
        debug_assert!(!fresh.exists(), "a new id's directory already exists");
        let node = self.node(i);
        node.id = id;
        node.started = false;
        node.paused = false;
        node.join = Some(member);
        node.already_added = false;
        Ok(id)
    }

    /// Slot `i`'s joining node was added, but its process stopped before it
    /// wrote its join schedule (see `Proc::already_added`).
    pub fn set_already_added(&mut self, i: u32) {
        let node = self.node(i);
        assert!(node.join.is_some(), "only a joining node is added");
        node.already_added = true;
    }

    /// Nodes that exited by themselves during the run.
    pub fn crashes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.crashed.clone())
            .collect()
    }

    /// SIGCONT and SIGTERM to every node, SIGKILL after 10 s.
    pub fn stop_all(&mut self) {
        for i in 1..=self.len() {
            self.signal(i, libc::SIGCONT);
            self.signal(i, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One blocking RESP request with a deadline (for the nemesis and probes).
pub fn call(addr: SocketAddr, args: &[&[u8]], timeout: Duration) -> Result<Reply, String> {
    call_until(addr, args, timeout, &|| false)
}

/// Like [`call`], giving up early (within 50 ms) once `stop()` is true.
pub fn call_until(
    addr: SocketAddr,
    args: &[&[u8]],
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Reply, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut out = BytesMut::new();
    write_request(&mut out, args);
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(reply) = parse_reply(&mut buf).map_err(|e| e.to_string())? {
            return Ok(reply);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stop() {
            return Err("timed out".into());
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(50))))
            .map_err(|e| e.to_string())?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The slot whose node says it leads, asking every serving slot (`INFO
/// replication` describes the process asked, so no id is involved).
pub fn find_leader(net: &Network, procs: &Procs) -> Option<u32> {
    (1..=procs.len()).filter(|i| procs.serving(*i)).find(|i| {
        let reply = call(
            net.resp_addr(*i),
            &[b"INFO", b"replication"],
            Duration::from_millis(500),
        );
        let text = match reply {
            Ok(Reply::Bulk(b)) | Ok(Reply::Verbatim(b)) => b,
            _ => return false,
        };
        String::from_utf8_lossy(&text)
            .lines()
            .any(|l| l.trim() == "role:leader")
    })
}
