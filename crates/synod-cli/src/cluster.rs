//! `synod cluster`: a local cluster of `synod server` processes.

use crate::certs;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use synod::NodeId;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Number of nodes (1, 3, 5 or 7 make sense: 2F+1).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Node i serves RESP on base+i, Paxos on base+100+i, HTTP on base+200+i.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// Each node keeps its data in DIR/node-i (and its log in DIR/node-i.log).
    /// Peer-link TLS credentials are made in DIR/tls on the first start and
    /// reused later (give --insecure-peer-links after -- to run without).
    #[arg(long, default_value = "./synod-data")]
    data_dir: PathBuf,
    /// Extra arguments passed to every `synod server` (after --).
    #[arg(last = true)]
    server_args: Vec<String>,
}

/// Removes `--password X` / `--password=X` from the server arguments and
/// returns X. (A password in $SYNOD_PASSWORD is inherited by every node as
/// it is; --password-file passes through, being only a path.)
fn take_password(args: &mut Vec<String>) -> Result<Option<String>, String> {
    let mut password = None;
    let mut kept = Vec::with_capacity(args.len());
    let mut iter = std::mem::take(args).into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--password" {
            password = Some(iter.next().ok_or("--password needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--password=") {
            password = Some(value.to_string());
        } else {
            kept.push(arg);
        }
    }
    *args = kept;
    Ok(password)
}

fn port(base: u16, offset: u32) -> Result<u16, String> {
    u16::try_from(u32::from(base) + offset)
        .map_err(|_| format!("--base-port {base} is too high for {offset} more ports"))
}

pub fn main(args: ClusterArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("synod cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: ClusterArgs) -> Result<ExitCode, String> {
    if args.nodes == 0 || args.nodes > 64 {
        return Err("--nodes must be between 1 and 64".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let mut peers = Vec::new();
    for i in 1..=args.nodes {
        peers.push(format!("{i}=127.0.0.1:{}", port(args.base_port, 100 + i)?));
    }
    let peers = peers.join(",");
    let brand_new = brand_new_cluster(&args)?;
    // A password among the server arguments goes to every node through the
    // environment, never on its command line (where `ps` shows it).
    let mut extra_args = args.server_args.clone();
    let password = take_password(&mut extra_args)?;
    let credentials = peer_credentials(&args)?;
    crate::signals::install();
    let mut children: Vec<(u32, Child)> = Vec::new();
    for i in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{i}"));
        let log_path = args.data_dir.join(format!("node-{i}.log"));
        let (mut log, log_err) = open_log(&log_path)?;
        let mut server_args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            i.to_string(),
            "--peers".into(),
            peers.clone(),
            "--resp".into(),
            format!("127.0.0.1:{}", port(args.base_port, i)?),
            "--http".into(),
            format!("127.0.0.1:{}", port(args.base_port, 200 + i)?),
            "--data-dir".into(),
            dir.display().to_string(),
        ];
        if let Some(dir) = &credentials {
            server_args.extend(tls_args(dir, i));
        }
        server_args.extend(extra_args.iter().cloned());
        // How to restart this node by hand (without --init: a restart must
        // never initialise a directory that lost its data).
        let _ = writeln!(
            log,
            "synod cluster: node {i} runs: {} {}",
            exe.display(),
            server_args.join(" ")
        );
        if brand_new {
            server_args.push("--init".into());
        }
        let mut command = Command::new(&exe);
        if let Some(password) = &password {
            command.env(crate::server::PASSWORD_ENV, password);
        }
        let child = command
            .args(&server_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        match child {
            Ok(child) => children.push((i, child)),
            Err(err) => {
                stop_all(&mut children);
                return Err(format!("cannot start node {i}: {err}"));
            }
        }
    }
    println!(
        "synod: {} nodes started on 127.0.0.1 (data in {})",
        args.nodes,
        args.data_dir.display()
    );
    println!();
    println!("  node  redis              paxos              http (status, /metrics)");
    for i in 1..=args.nodes {
        println!(
            "  {i:>4}  127.0.0.1:{:<8} 127.0.0.1:{:<8} http://127.0.0.1:{}/",
            port(args.base_port, i)?,
            port(args.base_port, 100 + i)?,
            port(args.base_port, 200 + i)?
        );
    }
    println!();
    println!(
        "Connect with any Redis client to any node, e.g.:  redis-cli -p {}",
        port(args.base_port, 1)?
    );
    println!(
        "Logs: {}/node-N.log. Ctrl-C stops every node; running this again resumes the cluster.",
        args.data_dir.display()
    );
    let mut exited = vec![false; children.len()];
    while !crate::signals::requested() {
        std::thread::sleep(Duration::from_millis(100));
        for (k, (i, child)) in children.iter_mut().enumerate() {
            if exited[k] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited[k] = true;
                eprintln!(
                    "synod cluster: node {i} exited ({status}); not restarting it (see {}/node-{i}.log)",
                    args.data_dir.display()
                );
            }
        }
        if exited.iter().all(|e| *e) {
            eprintln!("synod cluster: every node has exited");
            return Ok(ExitCode::FAILURE);
        }
    }
    println!("synod cluster: stopping every node");
    stop_all(&mut children);
    Ok(ExitCode::SUCCESS)
}

/// True when no node of the cluster has any data yet: the first start of a
/// brand-new cluster, whose nodes get `--init`. Otherwise the cluster
/// resumes, and a node whose directory lost its data refuses to start (it
/// says so in its log, and how to bring it back with `--rebuild`).
fn brand_new_cluster(args: &ClusterArgs) -> Result<bool, String> {
    let mut empty = Vec::new();
    for i in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{i}"));
        let has_identity = synod_storage::read_identity(&dir)
            .map_err(|e| e.to_string())?
            .is_some();
        let has_data = synod_storage::identity::holds_node_data(&dir).map_err(|e| e.to_string())?;
        if !has_identity && !has_data {
            empty.push(i);
        }
    }
    if empty.len() == args.nodes as usize {
        return Ok(true);
    }
    for i in empty {
        eprintln!(
            "synod cluster: node {i} has no data in {} while other nodes do: it will refuse to \
             start. If its disk was lost, restart it by hand with --rebuild (its command line is \
             logged in {}/node-{i}.log)",
            args.data_dir.join(format!("node-{i}")).display(),
            args.data_dir.display()
        );
    }
    Ok(false)
}

/// Whether extra `synod server` arguments already choose the peer-link
/// security (--insecure-peer-links, or their own --tls-* files).
fn chooses_peer_links(server_args: &[String]) -> bool {
    server_args.iter().any(|a| {
        a == "--insecure-peer-links"
            || ["--tls-cert", "--tls-key", "--tls-ca"].contains(&a.as_str())
    })
}

/// Where the peer-link TLS credentials are: DATA_DIR/tls, made now if there
/// are none. `None` when the extra server arguments already choose.
fn peer_credentials(args: &ClusterArgs) -> Result<Option<PathBuf>, String> {
    if chooses_peer_links(&args.server_args) {
        return Ok(None);
    }
    let dir = args.data_dir.join("tls");
    let nodes: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
    if certs::ensure_cluster_credentials(&dir, &nodes)? {
        println!("synod: made peer-link TLS credentials in {}", dir.display());
    }
    Ok(Some(dir))
}

/// Node i's peer-link flags for the credentials in `dir`.
fn tls_args(dir: &Path, i: u32) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string();
    vec![
        "--tls-ca".into(),
        path(certs::ca_cert_path(dir)),
        "--tls-cert".into(),
        path(certs::node_cert_path(dir, NodeId(i))),
        "--tls-key".into(),
        path(certs::node_key_path(dir, NodeId(i))),
    ]
}

/// For other launchers of local clusters (the chaos tester): node `id`'s
/// peer-link flags, with credentials for the founding nodes 1..=n made in
/// `dir` on first use, or none if `server_args` already choose. An `id`
/// beyond n (a node that joins later) gets its credentials issued from the
/// same CA when it first needs them.
pub(crate) fn peer_link_args(
    dir: &Path,
    n: u32,
    server_args: &[String],
    id: u32,
) -> Result<Vec<String>, String> {
    if chooses_peer_links(server_args) {
        return Ok(Vec::new());
    }
    let nodes: Vec<NodeId> = (1..=n).map(NodeId).collect();
    certs::ensure_cluster_credentials(dir, &nodes)?;
    if id > n {
        certs::ensure_node_credentials(dir, NodeId(id))?;
    }
    Ok(tls_args(dir, id))
}

/// A node's log file, opened for appending, twice: for its stdout and stderr.
pub(crate) fn open_log(path: &std::path::Path) -> Result<(std::fs::File, std::fs::File), String> {
    let fail = |e: std::io::Error| format!("cannot open {}: {e}", path.display());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    let log_err = log.try_clone().map_err(fail)?;
    Ok((log, log_err))
}

/// SIGTERM to every node, then SIGKILL to those still running after 10 s.
fn stop_all(children: &mut [(u32, Child)]) {
    for (_, child) in children.iter() {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("synod cluster: node {i} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
