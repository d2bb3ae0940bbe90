//! The chaos cluster's `synod server` processes: start, kill -9, pause,
//! resume, restart, stop; and a small blocking RESP call for the nemesis.

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
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    /// Set when the process exited without the nemesis killing it.
    crashed: Option<String>,
    /// Started before: later starts resume its data directory (the first
    /// passes `--init`, as a brand-new cluster).
    started: bool,
}

impl Procs {
    /// `n` nodes (not started) keeping data and logs under `dir`.
    pub fn new(exe: PathBuf, dir: PathBuf, n: u32, server_args: Vec<String>) -> Procs {
        Procs {
            exe,
            dir,
            server_args,
            nodes: (0..n).map(|_| Proc::default()).collect(),
        }
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
        let peers: Vec<String> = (1..=self.len())
            .map(|j| format!("{j}={}", net.peer_addr(j)))
            .collect();
        let log_path = self.dir.join(format!("node-{i}.log"));
        let (log, log_err) = crate::cluster::open_log(&log_path)?;
        let first_start: &[&str] = if self.node(i).started {
            &[]
        } else {
            &["--init"]
        };
        // TLS peer links, credentials made under the run's directory (the
        // namespaced network is not loopback, so plain links are refused).
        let peer_links = crate::cluster::peer_link_args(
            &self.dir.join("tls"),
            self.len(),
            &self.server_args,
            i,
        )?;
        let mut command = net.command(i, &self.exe);
        command
            .arg("server")
            .args(&peer_links)
            .args(["--id", &i.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--resp", &net.resp_addr(i).to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{i}")))
            .args(first_start)
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
            .map_err(|e| format!("cannot start node {i}: {e}"))?;
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
    /// nemesis only kills with `kill9`, which forgets the child first.
    pub fn reap(&mut self) {
        for (k, node) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    node.crashed.get_or_insert_with(|| {
                        format!("node {} exited by itself ({status})", k + 1)
                    });
                    node.child = None;
                }
            }
        }
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

/// The node that says it leads, asking every serving node.
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
