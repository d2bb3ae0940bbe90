//! `synod server`: one replica with its RESP front end and admin endpoint.

use crate::client_limits;
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
    /// This node's id (a member of --peers, or a new id with --join).
    #[arg(long)]
    id: u32,
    /// A founding member of a new cluster (with --init on its first start):
    /// every founding member, this node included: ID=HOST:PORT,... (the
    /// Paxos port). Keep giving the same list on restarts; later membership
    /// changes are in the log. Either --peers or --join.
    #[arg(long, value_parser = parse_peers, required_unless_present = "join", conflicts_with = "join")]
    peers: Option<BTreeMap<NodeId, SocketAddr>>,
    /// Join a running cluster through this member's RESP address
    /// (HOST:PORT). On the first start (no join-schedule in --data-dir) the
    /// node asks it to add --id at --paxos (SYNOD.MEMBER ADD, with AUTH if
    /// this server has a password), fetches where to start from (SYNOD.MEMBER
    /// JOININFO), writes it to --data-dir and starts as a learner; the leader
    /// promotes it to voter once it has caught up (unless --learner). Later
    /// starts use --data-dir alone and contact nobody. Refused when --id is
    /// already a member: a machine that lost its disk joins under a new id
    /// (`synod member remove` the old one) or restarts with --rebuild.
    #[arg(long, value_name = "HOST:PORT", requires = "paxos")]
    join: Option<String>,
    /// With --join: this node's Paxos (peer) address, IP:PORT, as the other
    /// members dial it (it also listens there).
    #[arg(long, requires = "join")]
    paxos: Option<SocketAddr>,
    /// With --join: stay a non-voting learner (promote it later with `synod
    /// member promote`).
    #[arg(long, requires = "join")]
    learner: bool,
    /// With --join: --id was already added with `synod member add` and this
    /// node has never run; skip the ADD and only fetch where to start from.
    /// Never for a machine that may have run under this id before (a lost
    /// disk): it could have voted, and must rejoin under a new id or with
    /// --rebuild.
    #[arg(long, requires = "join")]
    already_added: bool,
    /// Peer-link security: --tls-cert/--tls-key/--tls-ca (mutually
    /// authenticated TLS 1.3) or --insecure-peer-links (loopback only).
    #[command(flatten)]
    peer_links: crate::certs::PeerLinkArgs,
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
    #[arg(long, conflicts_with_all = ["rebuild", "join"])]
    init: bool,
    /// This node lost its data (wiped or replaced disk, lost volume): start
    /// it on an empty --data-dir as a new incarnation that rejoins as a
    /// NON-VOTING member. It learns and catches up from its peers, serves
    /// clients, and votes again only once that is safe: after every other
    /// member has reported its state and this node has caught up past it
    /// (Paxos Made Live, §5.1). Needs every other member up. Ignored when the
    /// directory holds this node's data.
    #[arg(long, conflicts_with = "join")]
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
    /// Require AUTH with this password: the ACL `default` user's password
    /// until an `ACL SETUSER default` rule sets its passwords. Visible in
    /// `ps`: prefer --password-file or the SYNOD_PASSWORD environment
    /// variable (used when neither flag is given).
    #[arg(long, conflicts_with = "password_file")]
    password: Option<String>,
    /// Read the `default` user's password from this file (its first line,
    /// without the line end; at most 4 KiB). Keeps the secret out of `ps`.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// A request that has not taken effect after this many ms fails with
    /// "outcome unknown".
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// While this node loads a peer's snapshot (it lagged past what its
    /// peers keep in their logs), new requests wait this many ms into the
    /// load; after that they are answered `-LOADING` at once (nothing is
    /// run: clients can retry through another node). 0: from the start of
    /// the load, as Redis does while it loads a dataset.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    loading_grace_ms: u64,
    /// Length of one protocol tick in ms.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Election timeout in ticks (randomized in [N, 2N)).
    #[arg(long, default_value_t = 50)]
    election_ticks: u64,
    /// Leader heartbeat interval in ticks.
    #[arg(long, default_value_t = 5)]
    heartbeat_ticks: u64,
    /// Leader read leases: the leader answers reads (GET and the other read
    /// commands) from its own state with no network round while a majority
    /// has promised, for the lease's length on their own clocks, to elect
    /// nobody else. ASSUMES every node's monotonic clock runs within
    /// --read-lease-drift-ppm of real time (a bound on drift rate; clock
    /// offsets and wall-clock steps do not matter). A virtual machine
    /// suspended with a monotonic clock that skips the suspension breaks it.
    /// Use the same setting on every node.
    #[arg(long)]
    read_lease: bool,
    /// Run a follower's log fdatasync on a thread of its own instead of on
    /// the node's event loop (the default, as Redis's appendfsync always:
    /// fewer thread hand-offs per write; a sync stalls the follower's loop
    /// while it lasts; a follower with requests of its own clients waiting
    /// syncs on a thread anyway). For disks whose syncs can take longer
    /// than the election timeout. A leader always syncs on a thread.
    #[arg(long)]
    fsync_thread: bool,
    /// Make the leader fsync its log for every batch it proposes and count
    /// its own vote at once. By default, while the followers answer, the
    /// leader's own vote waits for its next sync (one per 5 ticks, 50 ms at
    /// the default tick): a
    /// write is usually chosen by a majority of followers alone (every vote
    /// counted is durable), and the leader's disk syncs far less often. A
    /// commit then waits for a majority of followers; with one follower much
    /// slower than the rest, this flag gives a lower latency.
    #[arg(long)]
    eager_leader_sync: bool,
    /// How long a busy leader whose pipeline drained waits for its next
    /// write to tell the followers what is chosen, before it sends them a
    /// heartbeat round for it (busy: it wrote again within this time after
    /// the last drain). Saves a round per drain (at one client, per write).
    /// When cohort batching (--batch-hold-ms) is likely to hold the next
    /// batch back, the wait lasts until a hold starting at the drain would
    /// end, if later (busy then also means: the last batch came by then).
    /// Followers apply a write up to the longer of the two (plus under 1 ms,
    /// and about 1 ms of timer lateness) later. 0: always at once. Forwarded
    /// commands and reads on followers never wait for it.
    #[arg(long, value_name = "MS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    announce_delay_ms: u64,
    /// Cohort batching: while fewer than 4/5 of the writes lately
    /// outstanding at once wait, the leader holds them back until those in
    /// flight are chosen (the clients answered then come back), then this
    /// long (plus under 1 ms, and the timer's lateness). Fewer, fuller
    /// batches: fewer messages, writes and fsyncs on every node per write;
    /// the last fifth of a cohort waits a round more. One client (one or
    /// two writes outstanding) never waits; clients that do not come back
    /// together stop the holding for a while. When --announce-delay-ms is
    /// above 0, a busy leader lets the held batch tell the followers what
    /// the last one chose, rather than a round of its own, if it comes by
    /// the end of a hold starting at the drain: followers then apply a
    /// write up to the hold (plus under 1 ms, and the timer's lateness)
    /// later. 0: off.
    #[arg(long, value_name = "MS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=100))]
    batch_hold_ms: u64,
    /// The lease length in ms (default: 4/5 of the minimum election
    /// timeout, tick-ms x election-ticks). Must be below that timeout.
    #[arg(long, requires = "read_lease", value_name = "MS")]
    read_lease_ms: Option<u64>,
    /// The assumed bound on clock drift rate, in parts per million (at most
    /// 100000). The leader gives its lease up (L-1)(1-rho)/(1+rho) ms after
    /// the round that earned it.
    #[arg(
        long,
        requires = "read_lease",
        default_value_t = 10_000,
        value_name = "PPM"
    )]
    read_lease_drift_ppm: u32,
    /// Snapshot after this many applied instances (0: off). A checkpoint
    /// stalls the node for a few fsyncs (tens of ms on a slow disk), so not
    /// too often; etcd's default is the same count.
    #[arg(long, default_value_t = 100_000)]
    snapshot_instances: u64,
    /// Snapshot after this many bytes of log (0: off).
    #[arg(long, default_value_t = 64 << 20)]
    snapshot_log_bytes: u64,
    /// Write a checkpoint's snapshot file at no more than this many MB (10^6
    /// bytes) a second; 0: as fast as the disk takes it. A checkpoint written
    /// at full speed fills the disk's queue, and every log sync behind it
    /// waits: capped, writes keep more of their latency during checkpoints,
    /// and a checkpoint takes longer (a million 100-byte keys, ~125 MB, about
    /// 1 s at the default), holding the values chosen meanwhile in memory. A
    /// write that falls behind by a whole `--snapshot-instances` or
    /// `--snapshot-log-bytes`, or that a stop or a lagging peer waits for,
    /// finishes at full speed; a snapshot a peer needs is never capped.
    #[arg(
        long,
        default_value_t = SnapshotPolicy::DEFAULT_WRITE_BYTES_PER_SEC / 1_000_000,
        value_name = "MB_PER_SEC",
        value_parser = clap::value_parser!(u64).range(0..=1_000_000)
    )]
    snapshot_write_mbps: u64,
    /// Applied log values kept in memory after the last snapshot, in bytes,
    /// for followers that fall behind; older ones stay only in the log on
    /// disk, and a follower that needs them gets them read back from there
    /// (or a snapshot written for it, where the log no longer has them).
    /// 0 keeps none beyond what a snapshot in progress, or a follower
    /// catching up, needs.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    log_memory_bytes: u64,
    /// Log values chosen while this node restores a peer's snapshot are
    /// held in memory until the restore ends. At this many bytes the node
    /// stops voting for new instances and fetching values from peers until
    /// then: the other nodes carry on without it (without a quorum if
    /// another is down meanwhile), and it catches up after. 0 holds none.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    restore_backlog_bytes: u64,
    /// More client connections than this (plain and TLS together) are
    /// refused with "-ERR max number of clients reached". Lowered at start
    /// to what the open file limit allows after a reserve for the WAL,
    /// snapshots, peers and the admin port (the soft limit is first raised
    /// towards the hard one, as Redis does).
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Client limits and client TLS (issue 13): --client-query-buffer-limit,
    /// --client-query-buffer-total-limit, --client-output-buffer-limit,
    /// --timeout, --tls-port, --tls-cert-file, --tls-key-file,
    /// --tls-ca-cert-file, --tls-auth-clients.
    #[command(flatten)]
    clients: Box<client_limits::ClientArgs>,
    /// Largest value (any single argument) in bytes, checked on its declared
    /// length before any of it is buffered: a longer one is answered
    /// "-ERR Protocol error: invalid bulk length" and the connection closed
    /// (as Redis' proto-max-bulk-len).
    #[arg(long, default_value_t = 16 << 20)]
    max_value_bytes: usize,
    /// --maxmemory (issue 13): limit of the replicated dataset, in bytes or
    /// with Redis's units (100mb, 1gb; 0: no limit). Writes that would take
    /// the dataset's accounted size (INFO memory's used_memory_dataset, a
    /// formula of key/value sizes, the same on every replica) past it get
    /// -OOM. The limit is replicated: this node proposes it through the log
    /// when it starts, and every replica enforces the latest one proposed
    /// (nodes started with different values agree on the last to start).
    /// Without the flag the cluster keeps the limit its log holds.
    #[arg(long, value_parser = parse_memory_bytes)]
    maxmemory: Option<u64>,
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
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides. rustls
    /// logs only errors by default: it would write a line for every TLS
    /// handshake an outsider fails, which Synod already counts and logs at
    /// a limited rate.
    #[arg(long, default_value = "info,rustls=error")]
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

/// A memory size as Redis reads one: bytes, or a number with a unit
/// (k/m/g are powers of 1000, kb/mb/gb of 1024; case-insensitive).
fn parse_memory_bytes(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a memory size (e.g. 100mb)"))?;
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (k, kb, m, mb, g, gb)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Makes the log's maxmemory limit the --maxmemory flag's
/// (`synod_kv::set_maxmemory`: proposed only when the log holds another
/// value, with a warning naming both), retrying while there is no leader,
/// so every replica enforces it from the same point on.
async fn propose_maxmemory(node: Arc<Node>, bytes: u64, mut stop: watch::Receiver<bool>) {
    loop {
        match synod_kv::set_maxmemory(&node, bytes).await {
            Ok(_) => return,
            Err(err) => {
                tracing::debug!("maxmemory not set yet ({err}); retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
    }
}

pub fn main(args: ServerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    crate::prepare_allocator();
    // One thread runs the whole node: client connections, the driver, the
    // peer links (run to completion: a request, its proposal, the accepts it
    // sends and the reply it gets are handed between tasks of one thread,
    // never between threads). The log's group-commit fdatasync, snapshot
    // encoding and writing, and off-loop reads (`KEYS`) run on blocking
    // threads, woken once per batch, as do a checkpoint's marker batch and
    // restoring a peer's snapshot; a checkpoint's compaction still runs on
    // the loop (README, Known gaps). Measured with bench/cost-per-op.sh against the multi-threaded
    // runtime it replaces (same run, 3 nodes, SET at 50 clients): server CPU
    // 90 -> 54 us per SET summed over the nodes, context switches 2.8 -> 1.0
    // per SET. A node's throughput is then one core's; more cores per node
    // are for more Paxos groups (DESIGN.md, Groups), each on a loop of its own.
    crate::signals::explain_sigbus();
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
    let password = resolve_password(args.password.clone(), args.password_file.as_deref())?;
    // Bind the client ports first, so a port conflict is reported before
    // the node joins the cluster.
    let (resp, tls, clients_max) = client_listeners(&args).await?;
    let (peers, joined) = match (&args.peers, &args.join, args.paxos) {
        (Some(peers), None, _) => (peers.clone(), None),
        (None, Some(member), Some(paxos)) => {
            let start = crate::join::prepare(&crate::join::JoinRequest {
                id,
                member,
                paxos,
                resp: args.resp.to_string(),
                learner: args.learner,
                already_added: args.already_added,
                data_dir: &args.data_dir,
                password: password.as_deref(),
            })
            .await?;
            (start.peers.clone(), Some(start))
        }
        _ => {
            return Err(
                "give --peers (a founding member) or --join with --paxos (a new member)".into(),
            )
        }
    };
    let Some(mut cfg) = NodeConfig::new(id, peers.clone(), &args.data_dir) else {
        return Err(format!("--id {} is not in --peers", args.id));
    };
    cfg.peer_security = Some(args.peer_links.security(id, &peers)?);
    cfg.advertise_resp = Some(args.resp.to_string());
    cfg.tick = Duration::from_millis(args.tick_ms.max(1));
    cfg.election_ticks = args.election_ticks;
    cfg.heartbeat_ticks = args.heartbeat_ticks;
    cfg.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    cfg.loading_grace = Duration::from_millis(args.loading_grace_ms);
    cfg.value_bytes_max = args.max_replicated_bytes;
    cfg.unsafe_local_reads = args.unsafe_local_reads;
    cfg.sync_on_event_loop = !args.fsync_thread;
    cfg.eager_leader_sync = args.eager_leader_sync;
    cfg.chosen_announce_delay = Duration::from_millis(args.announce_delay_ms);
    cfg.batch_hold = Duration::from_millis(args.batch_hold_ms);
    cfg.log_memory_bytes = args.log_memory_bytes;
    cfg.restore_backlog_bytes = args.restore_backlog_bytes;
    if args.read_lease {
        let mut lease = cfg.default_read_lease();
        if let Some(ms) = args.read_lease_ms {
            lease.duration_ms = ms;
        }
        lease.drift_ppm = args.read_lease_drift_ppm;
        cfg.read_lease = Some(lease);
    }
    cfg.bootstrap = if let Some(start) = &joined {
        // The cluster's id, not a hash of this node's peer list.
        cfg.cluster_id = start.cluster_id;
        start.bootstrap
    } else if args.init {
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
        // At most 10^12: no overflow (the parser's range).
        write_bytes_per_sec: args.snapshot_write_mbps * 1_000_000,
    };
    let http = match args.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?,
        ),
        None => None,
    };
    let store = Store::new();
    let acl = store.acl();
    // Applied writes wake the blocked clients (BLPOP ...) of this node.
    let blocked_clients = store.blocked_clients();
    acl.set_config_password(password.as_deref());
    // Messages this node applies reach this node's subscribers.
    let pubsub = store.pubsub();
    // With a read lease, the leader's connections answer reads themselves.
    let local_store = cfg.read_lease.is_some().then(|| store.local());
    let node = Node::start(cfg, store)
        .await
        .map_err(|e| format!("node {} cannot start: {e}", args.id))?;
    let node = Arc::new(node);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_cfg = ServerConfig::new(args.resp);
    server_cfg.password = password;
    let acl_for_admin = acl.clone();
    let client_counters = Arc::clone(&server_cfg.counters);
    server_cfg.acl = acl;
    server_cfg.pubsub = pubsub;
    server_cfg.blocked_clients = blocked_clients;
    server_cfg.local_store = local_store;
    // A client's SHUTDOWN (an @admin command) ends this process like SIGTERM.
    let mut shutdown_asked = server_cfg.shutdown.listen();
    server_cfg.clients_max = clients_max;
    server_cfg.value_bytes_max = args.max_value_bytes;
    server_cfg.request_bytes_max = args.max_request_bytes;
    server_cfg.pipeline_max = args.max_pipeline;
    server_cfg.http = args.http;
    server_cfg.query_buffer_bytes_max = args.clients.client_query_buffer_limit;
    server_cfg.query_buffer_total_bytes_max = args.clients.client_query_buffer_total_limit;
    server_cfg.output_buffer_bytes_max = args.clients.client_output_buffer_limit;
    server_cfg.output_buffer_total_bytes_max = args.clients.client_output_buffer_total_limit;
    server_cfg.idle_timeout =
        (args.clients.timeout > 0).then(|| Duration::from_secs(args.clients.timeout));
    let resp_task = {
        let node = Arc::clone(&node);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            synod_kv::serve_listeners(resp, tls, server_cfg, node, &mut stop).await
        })
    };
    if let Some(bytes) = args.maxmemory {
        tokio::spawn(propose_maxmemory(Arc::clone(&node), bytes, stop_rx.clone()));
    }
    if let Some(listener) = http {
        let node = Arc::clone(&node);
        let stop = stop_rx.clone();
        let admin = synod::AdminConfig {
            connections_max: args.http_max_connections.max(1),
            // The ACL users decide, as AUTH does (`Acl::admin_verdict`): while
            // `default` is `nopass` requests need no credentials; otherwise a
            // user allowed INFO; throttled checks are waited out.
            auth: Some({
                let acl = acl_for_admin.clone();
                Arc::new(move |credentials: Option<(&str, &str)>| acl.admin_verdict(credentials))
                    as synod::AdminAuth
            }),
            extra_metrics: Some({
                let acl = acl_for_admin.clone();
                Arc::new(move |out: &mut String| {
                    render_front_end_metrics(&client_counters, &acl.stats(), out)
                }) as synod::ExtraMetrics
            }),
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
        _ = terminate.recv() => Ok("SIGTERM".to_string()),
        _ = interrupt.recv() => Ok("SIGINT".to_string()),
        why = shutdown_asked.requested() => Ok(why),
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

/// The plain and TLS client listeners (either may be off, not both) and the
/// client limit the open file limit allows.
async fn client_listeners(
    args: &ServerArgs,
) -> Result<
    (
        Option<TcpListener>,
        Option<(TcpListener, Arc<rustls::ServerConfig>)>,
        usize,
    ),
    String,
> {
    let plain = if args.resp.port() == 0 {
        // Redis' `port 0`: no plain TCP port, TLS only.
        if args.clients.tls_port.is_none() {
            return Err("--resp with port 0 turns the plain port off; give --tls-port".into());
        }
        None
    } else {
        Some(
            TcpListener::bind(args.resp)
                .await
                .map_err(|e| format!("cannot listen for Redis clients on {}: {e}", args.resp))?,
        )
    };
    let tls = match (
        args.clients.tls_port,
        &args.clients.tls_cert_file,
        &args.clients.tls_key_file,
    ) {
        (Some(port), Some(cert_file), Some(key_file)) => {
            let settings = synod_kv::tls::TlsSettings {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                ca_cert_file: args.clients.tls_ca_cert_file.clone(),
                auth_clients: args.clients.tls_auth_clients,
            };
            let config = synod_kv::tls::server_config(&settings).map_err(|e| e.to_string())?;
            let addr = SocketAddr::new(args.resp.ip(), port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for TLS clients on {addr}: {e}"))?;
            info!(%addr, auth_clients = ?args.clients.tls_auth_clients, "client TLS port");
            Some((listener, config))
        }
        (Some(_), _, _) => return Err("--tls-port needs --tls-cert-file and --tls-key-file".into()),
        (None, _, _) => None,
    };
    // A joining node learns the member count later; reserve for a handful.
    let others = args
        .peers
        .as_ref()
        .map_or(4, |peers| peers.len().saturating_sub(1));
    let clients_max = client_limits::clients_max_from_fd_limit(args.max_clients, others)
        .ok_or_else(|| {
            format!(
                "the open file limit leaves no descriptor for clients after the {} reserved; raise `ulimit -n`",
                client_limits::fds_reserved(others)
            )
        })?;
    Ok((plain, tls, clients_max))
}

/// The environment variable `synod server` reads the `default` user's
/// password from when neither --password nor --password-file is given
/// (`synod cluster` passes it this way, never on a command line).
pub const PASSWORD_ENV: &str = "SYNOD_PASSWORD";
/// Largest --password-file read.
const PASSWORD_FILE_BYTES_MAX: u64 = 4096;

/// --password, else --password-file, else $SYNOD_PASSWORD; an empty
/// password means none.
pub(crate) fn resolve_password(
    flag: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    let (password, source) = match (flag, file) {
        (Some(password), _) => {
            tracing::warn!("--password is visible to every local user in ps; prefer --password-file or {PASSWORD_ENV}");
            (Some(password), "--password")
        }
        (None, Some(path)) => (Some(read_password_file(path)?), "--password-file"),
        (None, None) => (std::env::var(PASSWORD_ENV).ok(), PASSWORD_ENV),
    };
    let password = password.filter(|p| !p.is_empty());
    if password.is_some() {
        info!(
            source,
            "the ACL default user's password is set (until an ACL rule sets one)"
        );
    }
    Ok(password)
}

fn read_password_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "--password-file is readable by other users; chmod 600 it"
            );
        }
    }
    let mut text = String::new();
    file.take(PASSWORD_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?;
    if text.len() as u64 > PASSWORD_FILE_BYTES_MAX {
        return Err(format!(
            "--password-file {} is larger than {PASSWORD_FILE_BYTES_MAX} bytes",
            path.display()
        ));
    }
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("--password-file {} is empty", path.display()));
    }
    Ok(line.to_string())
}

/// The RESP front end's refusals and the ACL's failed AUTHs as Prometheus
/// counters, appended to `/metrics`.
fn render_front_end_metrics(
    clients: &synod_kv::ClientCounters,
    acl: &synod_kv::AuthStats,
    out: &mut String,
) {
    use std::fmt::Write as _;
    let clients = clients.counters().map(|c| (c.metric_name, c.help, c.value));
    let acl = [
        (
            "synod_acl_auth_failures_total",
            "Failed AUTH / HELLO AUTH / admin credentials.",
            acl.auth_failures,
        ),
        (
            "synod_acl_auth_throttled_total",
            "AUTHs refused unchecked: the node's failed-AUTH budget was spent.",
            acl.auth_throttled,
        ),
        (
            "synod_acl_auth_delay_ms_total",
            "Milliseconds AUTH replies were held back.",
            acl.auth_delay_ms,
        ),
        (
            "synod_acl_denied_commands_total",
            "Commands refused with NOPERM.",
            acl.denied_commands,
        ),
        (
            "synod_acl_denied_keys_total",
            "Commands refused with NOPERM for a key.",
            acl.denied_keys,
        ),
    ];
    for (name, help, value) in clients.into_iter().chain(acl) {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        );
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
