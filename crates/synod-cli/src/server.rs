//! `synod server`: one replica with its RESP front end and admin endpoint.

use clap::Args;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use synod::{Bootstrap, Node, NodeConfig, NodeId, SnapshotPolicy};
use synod_kv::{ServerConfig, Store};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// This node's id (a member of --peers).
    #[arg(long)]
    id: u32,
    /// Every member, this node included: ID=HOST:PORT,... (the Paxos port).
    #[arg(long, value_parser = parse_peers)]
    peers: BTreeMap<NodeId, SocketAddr>,
    /// Where Redis clients connect.
    #[arg(long, default_value = "127.0.0.1:6379")]
    resp: SocketAddr,
    /// Write-ahead log and snapshots. Holds an identity (cluster, node,
    /// incarnation): a node refuses a directory of another cluster or node,
    /// and an empty one unless --init or --rebuild says why it is empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// First start of a brand-new cluster: an empty --data-dir is
    /// initialised. Give it to every node of the new cluster, once (it is
    /// ignored where the directory is initialised already). Never use it for
    /// a node whose data was lost: use --rebuild.
    #[arg(long, conflicts_with = "rebuild")]
    init: bool,
    /// This node lost its data (wiped or replaced disk, lost volume): start
    /// it on an empty --data-dir as a new incarnation that rejoins as a
    /// NON-VOTING member. It learns and catches up from its peers, serves
    /// clients, and votes again only once that is safe: after every other
    /// member has reported its state and this node has caught up past it
    /// (Paxos Made Live, §5.1). Needs every other member up. Ignored when the
    /// directory holds this node's data.
    #[arg(long)]
    rebuild: bool,
    /// Admin HTTP endpoint (/metrics, /status, /): PORT (bound to
    /// 127.0.0.1, the safe default) or HOST:PORT (binding beyond loopback
    /// must be asked for by address). With --password set, every route needs
    /// credentials: HTTP Basic (user `default` and the password) or
    /// `Authorization: Bearer <password>`. Off unless given.
    #[arg(long, value_parser = parse_http)]
    http: Option<SocketAddr>,
    /// At most this many admin HTTP connections are served at once; more
    /// are closed at once (counted in synod_admin_connections_refused_total).
    /// A request head must arrive within 5 s and fit in 8 KiB.
    #[arg(long, default_value_t = synod::ADMIN_CONNECTIONS_MAX_DEFAULT)]
    http_max_connections: usize,
    /// Require AUTH with this password.
    #[arg(long)]
    password: Option<String>,
    /// A request that has not taken effect after this many ms fails with
    /// "outcome unknown".
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Length of one protocol tick in ms.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Election timeout in ticks (randomized in [N, 2N)).
    #[arg(long, default_value_t = 50)]
    election_ticks: u64,
    /// Leader heartbeat interval in ticks.
    #[arg(long, default_value_t = 5)]
    heartbeat_ticks: u64,
    /// Snapshot after this many applied instances (0: off). A checkpoint
    /// stalls the node for a few fsyncs (tens of ms on a slow disk), so not
    /// too often; etcd's default is the same count.
    #[arg(long, default_value_t = 100_000)]
    snapshot_instances: u64,
    /// Snapshot after this many bytes of log (0: off).
    #[arg(long, default_value_t = 64 << 20)]
    snapshot_log_bytes: u64,
    /// More client connections than this are refused.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Largest value (any single argument) in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_value_bytes: usize,
    /// Largest request in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_request_bytes: usize,
    /// Largest value in the replicated log, in bytes: one command, a
    /// MULTI/EXEC transaction or a batch of pipelined commands. A command
    /// or transaction that does not fit is refused with an error (nothing
    /// applied); pipelines are split. Every peer message must fit in the
    /// 64 MiB frame, so at most about 64 MiB less the headers.
    #[arg(long, default_value_t = synod::VALUE_BYTES_MAX_DEFAULT)]
    max_replicated_bytes: usize,
    /// Requests of one connection handled per batch.
    #[arg(long, default_value_t = 1024)]
    max_pipeline: usize,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides.
    #[arg(long, default_value = "info")]
    log: String,
    /// BREAKS LINEARIZABILITY, for testing the chaos checker only: answer
    /// reads from this replica's local state without the log (stale reads).
    #[arg(long, hide = true)]
    unsafe_local_reads: bool,
}

/// `--http`: a bare port means loopback.
fn parse_http(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.trim().parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not PORT or HOST:PORT (an IP address and a port)"))
}

fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not ID=HOST:PORT"))?;
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| format!("'{id}' is not a node id"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{addr}' is not HOST:PORT (an IP address and a port)"))?;
        if peers.insert(NodeId(id), addr).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

pub fn main(args: ServerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("synod: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // Bounded: a blocking thread stuck in a failed disk must not keep a
    // process alive that has stopped serving (dropping the runtime would
    // wait for it).
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("synod: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServerArgs) -> Result<(), String> {
    let id = NodeId(args.id);
    let Some(mut cfg) = NodeConfig::new(id, args.peers.clone(), &args.data_dir) else {
        return Err(format!("--id {} is not in --peers", args.id));
    };
    cfg.tick = Duration::from_millis(args.tick_ms.max(1));
    cfg.election_ticks = args.election_ticks;
    cfg.heartbeat_ticks = args.heartbeat_ticks;
    cfg.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    cfg.value_bytes_max = args.max_replicated_bytes;
    cfg.unsafe_local_reads = args.unsafe_local_reads;
    cfg.bootstrap = if args.init {
        Bootstrap::New
    } else if args.rebuild {
        Bootstrap::Rebuild
    } else {
        Bootstrap::Existing
    };
    if cfg.unsafe_local_reads {
        tracing::warn!("--unsafe-local-reads: reads skip the log and may be stale (testing only)");
    }
    cfg.snapshot_policy = SnapshotPolicy {
        instances: args.snapshot_instances,
        log_bytes: args.snapshot_log_bytes,
    };
    // Bind the client ports first, so a port conflict is reported before
    // the node joins the cluster.
    let resp = TcpListener::bind(args.resp)
        .await
        .map_err(|e| format!("cannot listen for Redis clients on {}: {e}", args.resp))?;
    let http = match args.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?,
        ),
        None => None,
    };
    let node = Node::start(cfg, Store::new())
        .await
        .map_err(|e| format!("node {} cannot start: {e}", args.id))?;
    let node = Arc::new(node);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_cfg = ServerConfig::new(args.resp);
    server_cfg.password = args.password.clone();
    server_cfg.clients_max = args.max_clients;
    server_cfg.value_bytes_max = args.max_value_bytes;
    server_cfg.request_bytes_max = args.max_request_bytes;
    server_cfg.pipeline_max = args.max_pipeline;
    server_cfg.http = args.http;
    let resp_task = {
        let node = Arc::clone(&node);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move { synod_kv::serve_on(resp, server_cfg, node, &mut stop).await })
    };
    if let Some(listener) = http {
        let node = Arc::clone(&node);
        let stop = stop_rx.clone();
        let admin = synod::AdminConfig {
            connections_max: args.http_max_connections.max(1),
            auth: args.password.clone().map(synod::AdminConfig::password_auth),
        };
        tokio::spawn(async move { synod::serve_admin_with(listener, node, stop, admin).await });
    }
    info!(
        node = args.id,
        resp = %args.resp,
        http = ?args.http,
        "synod server ready"
    );
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    // Divergence policy: a replica whose applied state differs from its
    // peers' refuses to serve; a process that only refuses is half alive,
    // so it ends (non-zero) and a supervisor or operator sees it.
    let mut status = node.watch_status();
    let diverged = async move {
        if status.wait_for(|s| s.diverged).await.is_err() {
            // The status closed: the node ended, which `wait` reports.
            std::future::pending::<()>().await;
        }
    };
    let outcome = tokio::select! {
        _ = terminate.recv() => Ok("SIGTERM"),
        _ = interrupt.recv() => Ok("SIGINT"),
        stopped = node.wait() => Err(stopped),
        () = diverged => Err(Err(synod::NodeError::Stopped(
            "this replica's state diverged from its peers (see the divergence log line above), \
             so its data cannot be trusted. Move its --data-dir aside (keep it for diagnosis) and \
             restart the node with --rebuild on an empty directory"
                .into(),
        ))),
    };
    let _ = stop_tx.send(true);
    match outcome {
        Ok(signal) => {
            info!("{signal}: shutting down");
            // Bounded: a signal must end the process even if the node
            // cannot stop cleanly (a disk that stopped answering).
            let stopped = tokio::time::timeout(Duration::from_secs(20), node.shutdown()).await;
            resp_task.abort();
            if stopped.is_err() {
                return Err(format!(
                    "{signal}: the node did not stop within 20 s (storage not answering?); exiting anyway"
                ));
            }
            Ok(())
        }
        Err(Ok(())) => Ok(()),
        Err(Err(err)) => {
            // Stops the node cleanly if it still runs (divergence); a node
            // that stopped on its own returns at once.
            let _ = tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await;
            Err(format!("node {} stopped: {err}", args.id))
        }
    }
}

#[cfg(test)]
mod http_flag_tests {
    use super::parse_http;

    #[test]
    fn a_bare_port_binds_loopback() {
        assert_eq!(parse_http("9000").unwrap().to_string(), "127.0.0.1:9000");
        assert_eq!(
            parse_http("0.0.0.0:9000").unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert!(parse_http("localhost:9000").is_err());
    }
}
