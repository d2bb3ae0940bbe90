//! The Redis-protocol front end: accepts client connections, answers
//! connection commands itself and sends data commands through the log.
//!
//! Order and batching: the requests a client pipelined and that arrived
//! together are handled in order; their data commands become *one* log
//! command (applied atomically, replies split back out), so a pipeline costs
//! one round of consensus, and a connection's commands always take effect in
//! the order it sent them (the next batch is proposed only after the previous
//! one was applied). A batch of reads only is a linearizable read. A batch
//! never exceeds the largest replicated command (`Node::command_bytes_max`):
//! a pipeline too large for one is split into several, in order.

use crate::blocking::WhileBlocked;
use crate::client_limits::{
    ClientCounters, ClientLogs, QueryBudget, QueryShare, QUERY_BUFFER_FREE_BYTES,
    TLS_HANDSHAKES_MAX, TLS_HANDSHAKE_TIMEOUT,
};
use crate::command::KvCommand;
use crate::conn::{Conn, ExecPart, Item, RunAs, StatTag};
use crate::expiry_sweep::SweepPacer;
use crate::info::{CommandStats, Ending};
use crate::parse::parse_spec;
use crate::reply_codec::decode_reply_shared;
use bytes::buf::BufMut;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::Node;
use synod_resp::{
    write_reply, Limits, Protocol, ProtocolError, Reply, RequestParser, ARGS_KEPT_MAX,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

/// Limits and settings of the RESP front end.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// When set, clients must AUTH first: the ACL `default` user's password
    /// until an ACL rule sets one (see `crate::acl`).
    pub password: Option<String>,
    /// More connections than this are refused with `-ERR max number of
    /// clients reached` (both ports together). The CLI lowers it to what
    /// `RLIMIT_NOFILE` allows.
    pub clients_max: usize,
    /// At most this many requests of one connection are handled per batch;
    /// the rest wait in its buffer (bounds memory per client).
    pub pipeline_max: usize,
    /// A single request (all its arguments) may not exceed this.
    pub request_bytes_max: usize,
    /// A single argument (a value) may not exceed this: checked on its
    /// declared length (`$n`), before any of it is buffered.
    pub value_bytes_max: usize,
    /// Bytes one client's query buffer (read, not yet a complete request)
    /// may hold; a client that reaches it is closed, as in Redis
    /// (`client-query-buffer-limit`). Requests larger than this cannot
    /// complete, so it also bounds the request size.
    pub query_buffer_bytes_max: usize,
    /// Bytes all clients' query buffers together may hold; past it, a
    /// client growing its buffer beyond `QUERY_BUFFER_FREE_BYTES` is closed.
    pub query_buffer_total_bytes_max: usize,
    /// Bytes of replies one batch of a client's requests may produce; past
    /// it the client is closed (Redis' `client-output-buffer-limit`).
    pub output_buffer_bytes_max: usize,
    /// Bytes of replies all clients together may leave unread (written to
    /// their sockets, not yet taken); past it, a client whose own unread
    /// replies exceed `QUERY_BUFFER_FREE_BYTES` is closed rather than have
    /// its replies kept. Without it every client may hold
    /// `output_buffer_bytes_max` for as long as it does not read.
    pub output_buffer_total_bytes_max: usize,
    /// Close a client that sent nothing (or took no reply) for this long
    /// (Redis' `timeout`; `None`: never).
    pub idle_timeout: Option<Duration>,
    /// Close a client that must authenticate (a password is set) and has
    /// not within this long of connecting, whatever `idle_timeout` says:
    /// otherwise idle unauthenticated sockets hold the client slots forever
    /// (`clients_max` of them lock everyone out). Default
    /// [`AUTH_TIMEOUT_DEFAULT`].
    pub auth_timeout: Duration,
    /// Port of the admin HTTP endpoint, for INFO.
    pub http: Option<SocketAddr>,
    /// Refused and closed clients by reason; clone it to export the counts.
    pub counters: Arc<ClientCounters>,
    /// The node's ACL users: give the store's ([`crate::Store::acl`]), so
    /// the rules the log sets are the rules connections are checked
    /// against. The default is a standalone table with only `default`.
    pub acl: crate::Acl,
    /// The node's pub/sub registry: give the store's
    /// ([`crate::Store::pubsub`]), so the messages the log delivers reach
    /// this server's subscribers. The default is a standalone registry
    /// (PUBLISH then reaches nobody).
    pub pubsub: crate::PubSub,
    /// This node's blocked clients (BLPOP and the like): give the store's
    /// ([`crate::Store::blocked_clients`]), so that applied writes wake
    /// them. The default is a registry no store wakes: blocked commands
    /// then end only by their timeout.
    pub blocked_clients: crate::BlockedClients,
    /// Where a client's SHUTDOWN goes: the process that owns the server
    /// listens ([`crate::ShutdownSignal::listen`]) and stops the node. The
    /// default has no listener: SHUTDOWN is then refused.
    pub shutdown: crate::ShutdownSignal,
    /// The store's handle for lease reads served on the connection's task
    /// ([`crate::Store::local`]): while the node leads under a read lease
    /// and its permit stands ([`synod::LocalReads`]), a read-only request
    /// is answered from it without the node's event loop. `None` (the
    /// default): every read goes through the node.
    pub local_store: Option<crate::LocalStore>,
}

impl ServerConfig {
    /// Defaults for a listener on `listen`.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            password: None,
            clients_max: 10_000,
            pipeline_max: 1024,
            request_bytes_max: 64 << 20,
            value_bytes_max: 16 << 20,
            query_buffer_bytes_max: QUERY_BUFFER_BYTES_MAX_DEFAULT,
            query_buffer_total_bytes_max: QUERY_BUFFER_TOTAL_BYTES_MAX_DEFAULT,
            output_buffer_bytes_max: OUTPUT_BUFFER_BYTES_MAX_DEFAULT,
            output_buffer_total_bytes_max: OUTPUT_BUFFER_TOTAL_BYTES_MAX_DEFAULT,
            idle_timeout: None,
            auth_timeout: AUTH_TIMEOUT_DEFAULT,
            http: None,
            counters: Arc::new(ClientCounters::default()),
            acl: crate::Acl::new(),
            pubsub: crate::PubSub::new(),
            blocked_clients: crate::BlockedClients::default(),
            shutdown: crate::ShutdownSignal::default(),
            local_store: None,
        }
    }
}

/// Default of [`ServerConfig::auth_timeout`]: 10 s to send AUTH (or HELLO
/// AUTH), ample for any client library, short enough that one source cannot
/// keep `clients_max` idle sockets.
pub const AUTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Default of [`ServerConfig::query_buffer_bytes_max`]: 64 MiB. Redis'
/// 1 GiB would let 10 clients hold 10 GiB; 64 MiB is the largest request
/// (`--max-request-bytes`) we accept anyway, four 16 MiB values.
pub const QUERY_BUFFER_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Default of [`ServerConfig::query_buffer_total_bytes_max`]: 512 MiB, room
/// for eight clients sending the largest request at once.
pub const QUERY_BUFFER_TOTAL_BYTES_MAX_DEFAULT: usize = 512 << 20;
/// Default of [`ServerConfig::output_buffer_bytes_max`]: 256 MiB, sixteen
/// replies of the largest value in one pipeline.
pub const OUTPUT_BUFFER_BYTES_MAX_DEFAULT: usize = 256 << 20;
/// Default of [`ServerConfig::output_buffer_total_bytes_max`]: 1 GiB, four
/// clients at their own limit at once.
pub const OUTPUT_BUFFER_TOTAL_BYTES_MAX_DEFAULT: usize = 1 << 30;

/// State shared by every connection.
pub(crate) struct Shared {
    pub cfg: ServerConfig,
    pub node: Arc<Node>,
    pub clients: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub started: Instant,
    pub commands: AtomicU64,
    /// INFO commandstats (this node's, not replicated).
    pub command_stats: crate::info::CommandStats,
    /// This node's script cache (SCRIPT LOAD, EVALSHA): node-local.
    pub scripts: crate::scripting::ScriptCache,
    /// CONFIG SET lua-time-limit: reported back, node-local (see
    /// `Conn::config_set`).
    pub lua_time_limit_ms: AtomicU64,
    /// The scripts this node is dry-running before proposing them (BUSY,
    /// SCRIPT KILL; see `crate::scripting::dry_run`).
    pub script_runs: Arc<crate::scripting::ScriptRuns>,
    /// This node's encoding tuning parameters (CONFIG SET no-ops, see
    /// `crate::tuning`).
    pub tuning: crate::tuning::Tuning,
    query_budget: Arc<QueryBudget>,
    /// The replies clients left unread, all together.
    output_budget: Arc<QueryBudget>,
    logs: ClientLogs,
    /// `cfg.local_store` with the node's permit, when given.
    local_reads: Option<(crate::LocalStore, synod::LocalReads)>,
}

/// Serves clients until `stop` turns true.
pub async fn serve(
    cfg: ServerConfig,
    node: Arc<Node>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(cfg.listen).await?;
    serve_on(listener, cfg, node, &mut stop).await
}

/// Serves clients on an already bound listener until `stop` turns true.
pub async fn serve_on(
    listener: TcpListener,
    cfg: ServerConfig,
    node: Arc<Node>,
    stop: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_listeners(Some(listener), None, cfg, node, stop).await
}

/// Serves plain clients on `plain` and TLS clients on `tls` (either may be
/// absent, as Redis' `port 0` turns the plain port off) until `stop` turns
/// true. Both share one client limit and one set of counters.
pub async fn serve_listeners(
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    cfg: ServerConfig,
    node: Arc<Node>,
    stop: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Some(listener) = &plain {
        info!(addr = %listener.local_addr()?, "serving the Redis protocol");
    }
    if let Some((listener, _)) = &tls {
        info!(addr = %listener.local_addr()?, "serving the Redis protocol over TLS");
    }
    // `--password` is the default user's password until an ACL rule sets one.
    cfg.acl.set_config_password(cfg.password.as_deref());
    let local_reads = cfg
        .local_store
        .clone()
        .map(|store| (store, node.local_reads()));
    let shared = Arc::new(Shared {
        local_reads,
        cfg,
        node,
        clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(1),
        started: Instant::now(),
        commands: AtomicU64::new(0),
        command_stats: crate::info::CommandStats::default(),
        scripts: crate::scripting::ScriptCache::default(),
        lua_time_limit_ms: AtomicU64::new(5000),
        script_runs: Arc::default(),
        tuning: crate::tuning::Tuning::default(),
        query_budget: Arc::new(QueryBudget::default()),
        output_budget: Arc::new(QueryBudget::default()),
        logs: ClientLogs::new(),
    });
    // Ends with this function (the handle aborts it when dropped).
    let _sweeps = AbortOnDrop(tokio::spawn(expire_sweeps(Arc::clone(&shared))));
    let (tls_listener, acceptor) = match tls {
        Some((listener, config)) => (Some(listener), Some(TlsAcceptor::from(config))),
        None => (None, None),
    };
    let handshakes = Arc::new(tokio::sync::Semaphore::new(TLS_HANDSHAKES_MAX));
    loop {
        tokio::select! {
            accepted = accept(plain.as_ref(), &shared) => {
                if let Some((stream, peer)) = accepted {
                    let Some(slot) = admit(&shared, &stream, peer) else { continue };
                    tokio::spawn(async move {
                        if let Err(err) = client(stream, peer, slot).await {
                            debug!(%peer, "client connection ended: {err}");
                        }
                    });
                }
            }
            accepted = accept(tls_listener.as_ref(), &shared) => {
                if let (Some((stream, peer)), Some(acceptor)) = (accepted, &acceptor) {
                    let Some(slot) = admit(&shared, &stream, peer) else { continue };
                    let acceptor = acceptor.clone();
                    let handshakes = Arc::clone(&handshakes);
                    tokio::spawn(async move {
                        tls_client(acceptor, &handshakes, stream, peer, slot).await
                    });
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Redis' active expiry, as points of the log: while this node leads and
/// the store holds a key whose expiry is at or before the time a sweep
/// would apply at (the stamp its proposal would carry, `Node::stamp_ms`,
/// or the log clock if ahead), it proposes an expiry sweep
/// ([`KvCommand::ExpireSweep`]), one at a time, paced by [`SweepPacer`]:
/// every 100 ms, backing off while sweeps change nothing. Every replica
/// removes the same keys at the sweep's log time (and emits their
/// `expired` events), so expired keys leave memory, and their events fire,
/// without waiting for a write. The clocks only decide *when* to propose,
/// never what is removed (see `crate::expiry_sweep`).
async fn expire_sweeps(shared: Arc<Shared>) {
    let mut pacer = SweepPacer::new();
    loop {
        tokio::time::sleep(Duration::from_millis(pacer.interval_ms())).await;
        let pubsub = &shared.cfg.pubsub;
        let before = pubsub.next_expiry_ms();
        let due = SweepPacer::due(before, shared.node.stamp_ms(), pubsub.log_time_ms());
        if !due || !shared.node.is_leader() {
            pacer.idle();
            continue;
        }
        if let Err(error) = shared.node.propose(KvCommand::ExpireSweep.encode()).await {
            debug!("expiry sweep not applied: {error}");
        }
        pacer.swept(before, pubsub.next_expiry_ms());
    }
}

/// The next connection of `listener`; never resolves when there is none.
async fn accept(
    listener: Option<&TcpListener>,
    shared: &Shared,
) -> Option<(TcpStream, SocketAddr)> {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    match listener.accept().await {
        Ok(pair) => Some(pair),
        Err(err) => {
            // Out of file descriptors and the like: wait a little (the
            // pending connection stays in the backlog).
            shared.cfg.counters.accept_failures.fetch_add(1, Relaxed);
            shared
                .logs
                .accept
                .warn(format_args!("accepting a client failed: {err}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Takes a client slot for a new connection, or refuses it. Refused here, in
/// the accept loop, so an excess connection holds its descriptor only for
/// one non-blocking write, however fast they come: descriptors reserved for
/// the WAL and peers stay free.
fn admit(shared: &Arc<Shared>, stream: &TcpStream, peer: SocketAddr) -> Option<ClientSlot> {
    let counters = &shared.cfg.counters;
    counters.connections_received.fetch_add(1, Relaxed);
    let count = shared.clients.fetch_add(1, Relaxed) + 1;
    let slot = ClientSlot(Arc::clone(shared));
    if count > shared.cfg.clients_max {
        counters.rejected_connections.fetch_add(1, Relaxed);
        shared.logs.rejected.warn(format_args!(
            "refused client {peer}: max number of clients ({}) reached",
            shared.cfg.clients_max
        ));
        // Best effort, like Redis: a fresh socket's send buffer takes it.
        let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
        return None;
    }
    let _ = stream.set_nodelay(true);
    Some(slot)
}

/// Completes the TLS handshake (bounded in time, and at most
/// [`TLS_HANDSHAKES_MAX`] at once), then serves the client.
async fn tls_client(
    acceptor: TlsAcceptor,
    handshakes: &tokio::sync::Semaphore,
    stream: TcpStream,
    peer: SocketAddr,
    slot: ClientSlot,
) {
    let shared = Arc::clone(&slot.0);
    // The wait for a turn counts toward the deadline: a flood of
    // connections is shed, never queued without bound.
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, async {
        // Never closed, so a turn always comes.
        let _turn = handshakes.acquire().await;
        acceptor.accept(stream).await
    })
    .await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            shared
                .cfg
                .counters
                .tls_handshake_failures
                .fetch_add(1, Relaxed);
            shared
                .logs
                .tls
                .warn(format_args!("TLS handshake with {peer} failed: {err}"));
            return;
        }
        Err(_) => {
            shared
                .cfg
                .counters
                .tls_handshake_failures
                .fetch_add(1, Relaxed);
            shared.logs.tls.warn(format_args!(
                "TLS handshake with {peer} timed out after {TLS_HANDSHAKE_TIMEOUT:?}"
            ));
            return;
        }
    };
    if let Err(err) = client(stream, peer, slot).await {
        debug!(%peer, "TLS client connection ended: {err}");
    }
}

/// Decrements the client count however the connection ends.
struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Relaxed);
    }
}

/// Why the server closed a client.
enum Closed {
    /// It sent a protocol error (answered first).
    Protocol(ProtocolError),
    QueryBuffer,
    QueryBufferTotal,
    OutputBuffer,
    OutputBufferTotal,
    Idle,
    /// Did not authenticate within `auth_timeout`.
    AuthTimeout,
    /// A subscriber broke the pub/sub output limits (the reason).
    PubSubOutput(String),
}

/// Serves one client connection on any byte stream: a TCP socket, or a TLS
/// session over one.
async fn client<S>(mut stream: S, peer: SocketAddr, slot: ClientSlot) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::clone(&slot.0);
    let id = shared.next_client_id.fetch_add(1, Relaxed);
    // Dropped only after a close is counted below: a subscriber closed for
    // its pub/sub limit leaves the registry when `conn` goes, and nobody may
    // see it gone (a PUBLISH reaching no one) before the counter says why.
    let mut conn = Conn::new(id, peer, Arc::clone(&shared));
    let closed = match serve_client(&mut stream, &mut conn, &shared).await? {
        Some(closed) => closed,
        None => return Ok(()),
    };
    let cfg = &shared.cfg;
    let (counter, log, why) = match &closed {
        Closed::Protocol(
            err @ (ProtocolError::UnauthenticatedBulkLength
            | ProtocolError::UnauthenticatedMultibulkLength),
        ) => (
            &cfg.counters.unauthenticated_limit,
            &shared.logs.protocol,
            err.to_string(),
        ),
        // The request bound is the query-buffer bound (see `serve_client`).
        Closed::Protocol(err @ ProtocolError::RequestTooBig { .. }) => (
            &cfg.counters.query_buffer_limit,
            &shared.logs.query_buffer,
            err.to_string(),
        ),
        Closed::Protocol(err) => (
            &cfg.counters.protocol_errors,
            &shared.logs.protocol,
            err.to_string(),
        ),
        Closed::QueryBuffer => (
            &cfg.counters.query_buffer_limit,
            &shared.logs.query_buffer,
            format!("query buffer reached {} bytes", cfg.query_buffer_bytes_max),
        ),
        Closed::QueryBufferTotal => (
            &cfg.counters.query_buffer_total_limit,
            &shared.logs.query_buffer,
            format!(
                "all clients' query buffers exceed {} bytes",
                cfg.query_buffer_total_bytes_max
            ),
        ),
        Closed::OutputBuffer => (
            &cfg.counters.output_buffer_limit,
            &shared.logs.output_buffer,
            format!("replies exceed {} bytes", cfg.output_buffer_bytes_max),
        ),
        Closed::OutputBufferTotal => (
            &cfg.counters.output_buffer_total_limit,
            &shared.logs.output_buffer,
            format!(
                "all clients' unread replies exceed {} bytes",
                cfg.output_buffer_total_bytes_max
            ),
        ),
        Closed::Idle => (
            &cfg.counters.idle_timeout,
            &shared.logs.idle,
            format!("idle for {:?}", cfg.idle_timeout.unwrap_or_default()),
        ),
        Closed::PubSubOutput(why) => (
            &cfg.counters.output_buffer_limit,
            &shared.logs.output_buffer,
            why.clone(),
        ),
        Closed::AuthTimeout => (
            &cfg.counters.auth_timeout,
            &shared.logs.auth_timeout,
            format!("not authenticated within {:?}", cfg.auth_timeout),
        ),
    };
    counter.fetch_add(1, Relaxed);
    log.warn(format_args!("closed client {peer}: {why}"));
    drop(conn);
    Ok(())
}

/// The most item slots a connection keeps between batches (see
/// `serve_client`): pipelines of up to 64 requests reuse them.
const ITEMS_KEPT_MAX: usize = 64;

/// The connection loop: read, parse, execute, answer. Returns why the
/// server closed the client, or `None` when the client left (or QUIT).
async fn serve_client<S>(
    stream: &mut S,
    conn: &mut Conn,
    shared: &Arc<Shared>,
) -> std::io::Result<Option<Closed>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &shared.cfg;
    // An argument is checked against the value limit on its declared
    // length, by the parser, before any of it is buffered; the request as a
    // whole against the request and query-buffer limits likewise.
    let request_bytes_max = cfg.request_bytes_max.min(cfg.query_buffer_bytes_max);
    let mut parser = RequestParser::new(Limits {
        bulk_bytes_max: cfg.value_bytes_max.min(request_bytes_max),
        request_bytes_max,
        ..Limits::default()
    });
    let mut input = BytesMut::with_capacity(16 * 1024);
    // When bytes were last read into `input`: every request parsed from it
    // had arrived by then (see `Conn::set_arrived_by`).
    let mut last_read = Instant::now();
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut share = QueryShare::new(Arc::clone(&shared.query_budget));
    // What this client's replies hold while it does not take them.
    let mut unread = QueryShare::new(Arc::clone(&shared.output_budget));
    let auth_deadline = tokio::time::Instant::now() + cfg.auth_timeout;
    // A (un)subscribe (or RESET) parsed behind other requests waits until
    // they have run: it changes what this connection receives at once, so
    // it must not overtake a PUBLISH before it (pub/sub review).
    let mut deferred: Option<Vec<Bytes>> = None;
    // Each request's arguments, in one vector kept for the connection's
    // life (see `RequestParser::parse_into`).
    let mut args: Vec<Bytes> = Vec::new();
    // The items parsed from what is buffered, run as one batch; kept (empty)
    // between batches, so a request costs no vector of its own.
    let mut items: Vec<Item> = Vec::new();
    loop {
        // Pub/sub messages delivered so far go out before the next request
        // is handled (see `crate::pubsub`).
        if let Err(why) = conn.subscriber.flush(stream, conn.protocol).await? {
            return Ok(Some(Closed::PubSubOutput(why)));
        }
        // Before AUTH, every wait (reads, writes) ends at the deadline.
        let auth_left = (!conn.authenticated())
            .then(|| auth_deadline.saturating_duration_since(tokio::time::Instant::now()));
        if auth_left.is_some_and(|left| left.is_zero()) {
            return Ok(Some(Closed::AuthTimeout));
        }
        // A subscriber is never idle, as in Redis (its output limits bound it).
        let idle_timeout = cfg.idle_timeout.filter(|_| !conn.subscriber.active());
        let wait_max = match (idle_timeout, auth_left) {
            (Some(idle), Some(left)) => Some(idle.min(left)),
            (idle, left) => idle.or(left),
        };
        // Which bound a wait that ran out hit.
        let ran_out = || {
            if auth_left.is_some_and(|left| idle_timeout.is_none_or(|idle| left <= idle)) {
                Closed::AuthTimeout
            } else {
                Closed::Idle
            }
        };
        // Parse what is buffered, up to the pipeline limit. The pre-AUTH
        // caps follow the connection's state request by request: an AUTH
        // is handled before the next request's header is read.
        debug_assert!(items.is_empty());
        let mut close = None;
        let mut quit = false;
        // Requests behind a blocking command wait with it.
        let mut held = false;
        // When the requests parsed now were read (INFO commandstats).
        let read_at = Instant::now();
        conn.set_arrived_by(last_read);
        // The requests parsed now go to the log with the rules they are
        // checked against (see `Conn::run_as`).
        conn.begin_checks();
        while items.len() < cfg.pipeline_max {
            parser.set_unauthenticated(!conn.authenticated());
            // What is kept past this batch (queued in a transaction, or
            // waiting behind a blocking command) pins only its own bytes.
            parser.set_share_copies(!held && !conn.in_multi());
            let parsed = match deferred.take() {
                Some(held) => {
                    args = held;
                    Ok(true)
                }
                None => parser.parse_into(&mut input, &mut args),
            };
            match parsed {
                // A request that waits for a linearizable point runs in a
                // batch of its own: checked after its barrier, it goes to
                // the log (if it does) with the rules it was checked
                // against then (`server::run_items`).
                // So does a blocking command: the replies before it go out
                // while it waits, as Redis writes them before it blocks
                // (in a transaction it is only queued).
                Ok(true)
                    if !items.is_empty()
                        && (changes_subscriptions(&args)
                            || changes_user(&args)
                            || conn.barrier_first(&args)
                            || (!conn.in_multi() && blocks(&args))) =>
                {
                    deferred = Some(std::mem::take(&mut args));
                    break;
                }
                Ok(true) => {
                    let Some(item) = conn.handle(&args, read_at, items.is_empty()) else {
                        // An ACL refusal to confirm at a linearizable
                        // point (`Conn::handle_confirmed`): first in the
                        // next batch.
                        deferred = Some(std::mem::take(&mut args));
                        break;
                    };
                    // The item holds what it needs of the request: the
                    // frame is not kept alive by this vector while the
                    // batch runs, nor a huge request's slots for the
                    // connection's life.
                    args.clear();
                    if args.capacity() > ARGS_KEPT_MAX {
                        args = Vec::new();
                    }
                    quit = matches!(item, Item::Quit(_));
                    // The requests after a change to the users, or after a
                    // blocking command (whose wait may outlast one), are
                    // checked in the next batch, once it ran: against the
                    // rules in force then, as Redis checks each command
                    // when it runs (see `Conn::run_as`; stop 63's review).
                    // So are the requests after one that waits for a
                    // linearizable point (AUTH, admin commands: see
                    // `Conn::after_barrier`), which may change the user.
                    // So are those after an EXEC whose connection
                    // commands run once its data commands ran.
                    let ends_batch = item.changes_users()
                        || item.is_block()
                        || item.is_barrier()
                        || item.runs_connection_commands();
                    held |= item.is_block();
                    items.push(item);
                    if quit || ends_batch {
                        break;
                    }
                }
                Ok(false) => break,
                Err(err) => {
                    // Like Redis: answer the protocol error and close.
                    conn.untracked();
                    items.push(Item::Quit(err.to_reply()));
                    close = Some(Closed::Protocol(err));
                    break;
                }
            }
        }
        if !items.is_empty() {
            // A request that waits for a linearizable point is alone in its
            // batch: handled now (see `Conn::after_barrier`), before the
            // batch's rules stamp is taken (`run_items`), and before the
            // batch is known to block or not (a first BLPOP of a connection
            // still to confirm its login is a barrier until then: its
            // client's close went unseen, and the next push popped for it
            // was lost; stop 64's second review).
            if let Some(first) = items.first_mut() {
                if first.is_barrier() {
                    let placeholder = Item::Pushes(Vec::new(), Vec::new(), conn.protocol);
                    let item = std::mem::replace(first, placeholder);
                    *first = past_barrier(shared, conn, item).await;
                }
            }
            let fits = if items.iter().any(Item::is_block) {
                // A blocked client that closes must not stay registered:
                // read (and buffer) while it waits, and end on EOF.
                let room = cfg.query_buffer_bytes_max.saturating_sub(input.len());
                // Messages published while it waits go out at once to a
                // subscribed RESP3 connection (RESP2 refuses a blocking
                // command while subscribed); the subscriptions cannot
                // change while the batch (the blocking command alone) runs.
                let protocol = conn.protocol;
                let pushes = (protocol == Protocol::Resp3 && conn.subscriber.may_receive())
                    .then(|| conn.subscriber.pushes());
                let run = run_items(shared, conn, &mut items, &mut output);
                let pushes = pushes.as_ref().map(|pushes| (pushes, protocol));
                let done =
                    crate::blocking::until_closed(run, stream, &mut input, room, pushes).await?;
                // What it read meanwhile arrived by now.
                last_read = Instant::now();
                match done {
                    WhileBlocked::Done(fits) => fits,
                    WhileBlocked::Closed => return Ok(None),
                    WhileBlocked::Overflow => return Ok(Some(Closed::QueryBuffer)),
                    WhileBlocked::PubSubOutput(why) => return Ok(Some(Closed::PubSubOutput(why))),
                }
            } else {
                run_items(shared, conn, &mut items, &mut output).await
            };
            if !fits {
                return Ok(Some(Closed::OutputBuffer));
            }
            quit |= conn.take_quit_after_barrier();
            if items.capacity() > ITEMS_KEPT_MAX {
                // A deep pipeline's slots are not kept for the connection's
                // life (up to `pipeline_max` items of ~100 bytes).
                items = Vec::new();
            }
            let total = unread.set(output.len());
            if total > cfg.output_buffer_total_bytes_max && output.len() > QUERY_BUFFER_FREE_BYTES {
                return Ok(Some(Closed::OutputBufferTotal));
            }
            if !write_or_idle(stream, &output, wait_max).await? {
                return Ok(Some(ran_out()));
            }
            unread.set(0);
            output.clear();
            if output.capacity() > QUERY_BUFFER_FREE_BYTES {
                // Do not keep a large reply's buffer for the connection's life.
                output = BytesMut::with_capacity(16 * 1024);
            }
            if close.is_some() || quit {
                return Ok(close);
            }
            // More may be parsed from the buffer already.
            continue;
        }
        // Everything complete was parsed: `input` holds part of one request.
        let room = cfg.query_buffer_bytes_max.saturating_sub(input.len());
        if room == 0 {
            return Ok(Some(Closed::QueryBuffer));
        }
        let read = {
            // At most `room` bytes: the buffer never holds more than the
            // limit, whatever the client sends.
            let mut limited = (&mut input).limit(room);
            let read = async {
                let read = stream.read_buf(&mut limited);
                match wait_max {
                    Some(timeout) => tokio::time::timeout(timeout, read).await.ok(),
                    None => Some(read.await),
                }
            };
            // A message for a subscriber ends the wait: written at the top.
            // A connection that cannot receive one (not subscribed, nothing
            // queued: `Subscriber::may_receive`) waits on its socket alone.
            if conn.subscriber.may_receive() {
                tokio::select! {
                    read = read => match read {
                        Some(read) => read?,
                        None => return Ok(Some(ran_out())),
                    },
                    () = conn.subscriber.ready() => continue,
                }
            } else {
                match read.await {
                    Some(read) => read?,
                    None => return Ok(Some(ran_out())),
                }
            }
        };
        if read == 0 {
            return Ok(None);
        }
        last_read = Instant::now();
        let total = share.set(input.capacity());
        if total > cfg.query_buffer_total_bytes_max && input.capacity() > QUERY_BUFFER_FREE_BYTES {
            return Ok(Some(Closed::QueryBufferTotal));
        }
    }
}

/// Writes `bytes` in full; `false` if the client took none of it for
/// `idle_timeout` (a client that never reads must not hold its replies, and
/// its slot, for ever).
async fn write_or_idle<S>(
    stream: &mut S,
    mut bytes: &[u8],
    idle_timeout: Option<Duration>,
) -> std::io::Result<bool>
where
    S: AsyncWrite + Unpin,
{
    while !bytes.is_empty() {
        let written = match idle_timeout {
            Some(timeout) => match tokio::time::timeout(timeout, stream.write(bytes)).await {
                Ok(written) => written?,
                Err(_) => return Ok(false),
            },
            None => stream.write(bytes).await?,
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    stream.flush().await?;
    Ok(true)
}

/// Runs a batch of items in order and writes their replies. Returns `false`
/// when the replies exceeded the output buffer limit (they are then not all
/// written, and the client must be closed: it would miss replies).
async fn run_items(
    shared: &Shared,
    conn: &mut Conn,
    items: &mut Vec<Item>,
    out: &mut BytesMut,
) -> bool {
    let mut out = Output {
        bytes: out,
        max: shared.cfg.output_buffer_bytes_max,
        overflow: false,
        stats: &shared.command_stats,
    };
    let out = &mut out;
    // Every command of these items goes to the log with the connection's
    // user and the stamp of the rules it was checked against.
    let run_as = conn.run_as();
    let run_as = run_as.as_ref();
    // Data commands are grouped into one log command; a reply slot remembers
    // where each reply goes and with which protocol it is written.
    let mut pending = Pending::new(run_as);
    let batch_bytes_max = conn.log_bytes_max();
    // With each slot, the INFO commandstats tag of the request it answers
    // (the first slot of an item takes the item's tag).
    let mut slots: Vec<(Slot, Protocol, Option<StatTag>)> = Vec::new();
    // A batch that wrote answers after the blocked clients its writes woke
    // were served, as Redis does (see `crate::blocking`).
    let wrote = items.iter().any(|item| match item {
        Item::Data(command, _, _) => !command.is_read(),
        Item::Exec(..) => true,
        _ => false,
    });
    for item in items.drain(..) {
        let mut tag = conn.next_stat_tag();
        // A script is dry-run before it is proposed (see
        // `crate::scripting::dry_run`), after what came before it.
        let item = if is_script(&item) {
            pending.flush(shared, &mut slots, out).await;
            judged(shared, item).await
        } else {
            item
        };
        // A silenced item (CLIENT REPLY) runs alone, so what it writes can
        // be cut off without touching the replies around it.
        let (item, silenced) = match item {
            Item::Silent(item) => {
                pending.flush(shared, &mut slots, out).await;
                (*item, Some((out.bytes.len(), out.overflow)))
            }
            item => (item, None),
        };
        match item {
            Item::Silent(_) => {}
            // Only first in a batch, and handled before (`serve`).
            Item::Barrier(_) => slots.push((
                Slot::Ready(Reply::error(
                    "ERR internal error: a request waiting for a barrier was not first in its batch",
                )),
                conn.protocol,
                tag.take(),
            )),
            Item::Reply(reply, proto) => slots.push((Slot::Ready(reply), proto, tag.take())),
            Item::Pushes(delivered, replies, proto) => {
                slots.extend(
                    delivered
                        .into_iter()
                        .map(|message| (Slot::Ready(message), proto, None)),
                );
                if replies.is_empty() {
                    // CLIENT REPLY OFF and SKIP answer nothing, and ran.
                    if let Some(tag) = tag.take() {
                        out.stats
                            .record(tag.known, tag.started.elapsed(), Ending::Ok);
                    }
                }
                slots.extend(
                    replies
                        .into_iter()
                        .map(|reply| (Slot::Ready(reply), proto, tag.take())),
                );
            }
            Item::Quit(reply) => slots.push((Slot::Ready(reply), conn.protocol, tag.take())),
            Item::Later(reply, proto, delay) => {
                // A failed or throttled AUTH: the reply waits (see acl_auth);
                // the connection's later requests wait behind it.
                tokio::time::sleep(delay).await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Data(command, proto, len) if goes_alone(&command) => {
                // A transaction is its own log command (the log format does
                // not nest them), after what came before it. So is a
                // command whose cost grows with the dataset or a collection:
                // alone, a read is answered off the event loop when large
                // (see `ops::read_off_loop`), and neither a read nor a write
                // is refused for a batch's read budget; in a batch it would
                // run on the loop, or on every replica's apply path with a
                // write, or be refused for its neighbours.
                pending.flush(shared, &mut slots, out).await;
                let replies = execute_encoded(shared, run_as, vec![command], Some(len)).await;
                slots.push((Slot::Pending(0), proto, tag.take()));
                fill(&mut slots, replies, out);
            }
            Item::Data(command, proto, len) => {
                // Every command fits alone (checked by `Conn`); a batch that
                // it would push past the bound is sent first, so no log
                // command ever exceeds what the log can carry.
                if !pending.commands.is_empty()
                    && pending.bytes + len.saturating_sub(1) > batch_bytes_max
                {
                    pending.flush(shared, &mut slots, out).await;
                }
                slots.push((Slot::Pending(pending.commands.len()), proto, tag.take()));
                pending.push(command, len);
            }
            Item::Info(sections, proto) => {
                // INFO reads the log: finish what came before first.
                pending.flush(shared, &mut slots, out).await;
                let reply = conn.info(&sections).await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Member(command, proto) => {
                // In order: what came before is answered first.
                pending.flush(shared, &mut slots, out).await;
                let reply = crate::members::run(&shared.node, command).await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Persist(command, proto) => {
                // In order: what came before is answered first.
                pending.flush(shared, &mut slots, out).await;
                let client = format!("id={} addr={}", conn.id(), conn.peer());
                let reply = crate::persistence::run(shared, command, &client).await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Watch(command, proto) => {
                // A read at a point after everything this connection sent
                // before (its writes included), alone: its reply is kept.
                pending.flush(shared, &mut slots, out).await;
                let mut replies = execute(shared, run_as, vec![command.clone()]).await;
                let reply = match replies.pop() {
                    Some(reply) => conn.watch_read(&command, reply),
                    None => Reply::error("ERR internal error: missing reply"),
                };
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Unwatch(reply, proto) => {
                conn.unwatch();
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Reset {
                delivered,
                delivered_in,
                skipped,
            } => {
                conn.unwatch();
                slots.extend(
                    delivered
                        .into_iter()
                        .map(|message| (Slot::Ready(message), delivered_in, None)),
                );
                let reset = Reply::Simple("RESET".into());
                if skipped {
                    // Counted, and cut off as a silenced item is; the
                    // messages before it go out.
                    pending.flush(shared, &mut slots, out).await;
                    let (written, overflow) = (out.bytes.len(), out.overflow);
                    slots.push((Slot::Ready(reset), Protocol::Resp2, tag.take()));
                    pending.flush(shared, &mut slots, out).await;
                    out.bytes.truncate(written);
                    out.overflow = overflow;
                } else {
                    slots.push((Slot::Ready(reset), Protocol::Resp2, tag.take()));
                }
            }
            Item::Block(command, timeout, proto) => {
                // In order: what came before is answered first; then the
                // connection waits (see `crate::blocking`).
                pending.flush(shared, &mut slots, out).await;
                let id = conn.id();
                let conn: &Conn = conn;
                let reply = crate::blocking::block(
                    &shared.cfg.blocked_clients,
                    id,
                    command,
                    timeout,
                    |command| async move {
                        // Each try goes with the rules in force when it is
                        // sent (see `Conn::restamp_blocked`); one refused
                        // because they changed on the way ran nothing and
                        // goes again, checked against the new ones (this
                        // node applied the change before answering).
                        let mut tries = 0;
                        loop {
                            let run_as = match conn.restamp_blocked(&command, run_as) {
                                Ok(run_as) => run_as,
                                Err(refused) => return refused,
                            };
                            let reply = execute(shared, run_as.as_ref(), vec![command.clone()])
                                .await
                                .pop()
                                .unwrap_or_else(|| {
                                    Reply::error("ERR internal error: missing reply")
                                });
                            tries += 1;
                            let changed = matches!(&reply, Reply::Error(text)
                                if text == crate::store::ACL_CHANGED_IN_FLIGHT);
                            if !changed || tries == 3 {
                                return reply;
                            }
                        }
                    },
                )
                .await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
            Item::Exec(commands, parts, proto) => {
                pending.flush(shared, &mut slots, out).await;
                let reply = exec(shared, conn, run_as, commands, parts).await;
                slots.push((Slot::Ready(reply), proto, tag.take()));
            }
        }
        if let Some((written, overflow)) = silenced {
            pending.flush(shared, &mut slots, out).await;
            out.bytes.truncate(written);
            out.overflow = overflow;
        }
    }
    pending.flush(shared, &mut slots, out).await;
    if wrote {
        shared.cfg.blocked_clients.settle().await;
    }
    shared.commands.fetch_add(1, Relaxed);
    !out.overflow
}

/// A barrier `item` once this node answered a linearizable read (it has
/// then applied everything chosen before the request arrived): the request
/// as handled then ([`Conn::after_barrier`]), silenced as CLIENT REPLY says
/// once it ran; the node's error if it answered none (the request was not
/// run: [`Conn::barrier_failed`]). Its INFO commandstats refusal is that
/// of the request as handled now.
async fn past_barrier(shared: &Shared, conn: &mut Conn, item: Item) -> Item {
    let Item::Barrier(args) = item else {
        // `Conn::handle` never silences a barrier.
        return item;
    };
    // A read of nothing much, with no user: nothing of it reaches the client.
    // Asked after every request read so far arrived (`last_read`), so its
    // answer confirms their refusals too (`Conn::set_arrived_by`).
    let asked = Instant::now();
    match shared.node.read(KvCommand::DbSize.encode()).await {
        Ok(_) => {
            conn.confirmed_at(asked);
            conn.after_barrier(&args)
        }
        Err(err) => conn.barrier_failed(&args, barrier_error_reply(&err)),
    }
}

/// The error a request that waited for a linearizable point gets when the
/// node answered no read: it did not run (unlike a log command's timeout,
/// whose outcome is unknown).
fn barrier_error_reply(err: &synod::RequestError) -> Reply {
    let reason = match err {
        synod::RequestError::Loading => return request_error_reply(err),
        synod::RequestError::Timeout(wait) => {
            format!("no majority answered within {wait:?}")
        }
        other => other.to_string(),
    };
    Reply::error(format!(
        "ERR not run: this node could not check it at a linearizable point ({reason}); retry, or use another node"
    ))
}

/// Runs a transaction at EXEC: the data commands as one log command opened by
/// the WATCH check of the keys the connection watched (which it forgets),
/// then the queued connection commands, each reply in its place. Nil when a
/// watched key changed; the transaction's error when it was refused as a
/// whole (OOM, too large) or got no answer: then no connection command ran.
async fn exec(
    shared: &Shared,
    conn: &mut Conn,
    run_as: Option<&RunAs>,
    mut commands: Vec<KvCommand>,
    parts: Vec<ExecPart>,
) -> Reply {
    let watched = conn.take_watched();
    let data_len = commands.len();
    if !watched.is_empty() {
        commands.insert(0, KvCommand::WatchCheck { watched });
    }
    let data_reply = if commands.is_empty() {
        Reply::Array(Vec::new())
    } else {
        let transaction = KvCommand::Exec(commands);
        let max = conn.log_bytes_max();
        let len = transaction.encoded_len();
        if len > max {
            return Reply::error(format!(
                "EXECABORT Transaction discarded because it exceeds the maximum replicated size of {max} bytes."
            ));
        }
        execute(shared, run_as, vec![transaction])
            .await
            .pop()
            .unwrap_or_else(|| Reply::error("ERR internal error: missing reply"))
    };
    let data = match data_reply {
        Reply::Array(replies) if replies.len() == data_len => replies,
        Reply::Array(_) => return Reply::error("ERR internal error: transaction reply length"),
        // Nil (a watched key changed) or the whole transaction's error.
        other => return other,
    };
    let mut data = data.into_iter();
    let mut replies = Vec::with_capacity(parts.len());
    for part in parts {
        replies.push(match part {
            ExecPart::Data => data
                .next()
                .unwrap_or_else(|| Reply::error("ERR internal error: missing reply")),
            ExecPart::Ready(reply) => reply,
            ExecPart::Local(args) => conn.exec_local(&args).await,
            ExecPart::Config(held) => conn.exec_config(
                held,
                data.next()
                    .unwrap_or_else(|| Reply::error("ERR internal error: missing reply")),
            ),
        });
    }
    Reply::Array(replies)
}

/// Whether `item` runs a script (EVAL, EVALSHA, FCALL and their `_RO`),
/// alone or in a transaction.
fn is_script(item: &Item) -> bool {
    match item {
        Item::Silent(inner) => is_script(inner),
        Item::Data(KvCommand::Eval(_), _, _) => true,
        Item::Exec(commands, _, _) => commands
            .iter()
            .any(|command| matches!(command, KvCommand::Eval(_))),
        _ => false,
    }
}

/// Dry-runs `eval` on this node (see `crate::scripting::dry_run`).
async fn dry_run(shared: &Shared, eval: &crate::scripting::EvalCommand) -> Result<(), Reply> {
    let acl = shared.cfg.acl.clone();
    crate::scripting::dry_run::dry_run(&shared.node, &shared.script_runs, acl, eval).await
}

/// A script item after its dry run: as it was when the run passed, its
/// refusal otherwise (silenced as the item was).
async fn judged(shared: &Shared, item: Item) -> Item {
    let (item, silent) = match item {
        Item::Silent(inner) => (*inner, true),
        item => (item, false),
    };
    let item = match item {
        Item::Data(KvCommand::Eval(eval), proto, len) => match dry_run(shared, &eval).await {
            Ok(()) => Item::Data(KvCommand::Eval(eval), proto, len),
            Err(refused) => Item::Reply(refused, proto),
        },
        // Every script of a transaction is dry-run, in order; one refused
        // discards the transaction (it is applied whole or not at all).
        Item::Exec(commands, parts, proto) => {
            let mut refused = None;
            for command in &commands {
                if let KvCommand::Eval(eval) = command {
                    if let Err(reply) = dry_run(shared, eval).await {
                        refused = Some(reply);
                        break;
                    }
                }
            }
            match refused {
                None => Item::Exec(commands, parts, proto),
                Some(Reply::Error(text)) => Item::Unwatch(
                    Reply::error(format!(
                        "EXECABORT Transaction discarded because a script in it was refused: {text}"
                    )),
                    proto,
                ),
                Some(other) => Item::Unwatch(other, proto),
            }
        }
        item => item,
    };
    if silent {
        Item::Silent(Box::new(item))
    } else {
        item
    }
}

/// Whether a data command is sent as its own log command, never batched
/// with the pipelined commands around it (see `run_items`): a transaction
/// (the log format does not nest them), and every command that a batch's
/// read budget may charge (`ops::charged_in_transaction`). Those are the
/// reads whose cost grows with the dataset or a collection, which alone are
/// answered off the event loop when large (`ops::read_off_loop`), and the
/// writes that walk a collection (`SORT ... STORE`, `ZRANGESTORE`,
/// `ZPOPMIN` with a count, ...). Sent alone, none is refused for the
/// budget, and in a batch of the others none is: whether a pipelined
/// command runs never depends on how its pipeline was grouped, which the
/// client does not see.
fn goes_alone(command: &KvCommand) -> bool {
    matches!(command, KvCommand::Exec(_))
        || crate::ops::charged_in_transaction(command)
        // An ACL change is in force for the commands after it, this
        // connection's included: in a batch with them it would be applied
        // with them, after their user's rules were checked (see
        // `crate::AsUser`). Alone, those after it go in a later log command,
        // which every replica refuses if the change touched their user.
        || (command.involves_acl() && !command.is_read())
}

/// Whether a request may change the connection's user (AUTH, HELLO with
/// AUTH, RESET): it starts a batch of its own, so that every request of a
/// batch was checked as one user (see `Conn::run_as`).
fn changes_user(args: &[Bytes]) -> bool {
    const NAMES: [&[u8]; 3] = [b"auth", b"hello", b"reset"];
    args.first()
        .is_some_and(|name| NAMES.iter().any(|n| name.eq_ignore_ascii_case(n)))
}

/// Whether a request is a blocking pop (`BLPOP` and the like): it starts a
/// batch of its own (outside a transaction).
fn blocks(args: &[Bytes]) -> bool {
    args.first()
        .is_some_and(|name| crate::blocking::is_blocking_name(name))
}

/// Whether a request changes which messages the connection receives
/// (SUBSCRIBE and the like, RESET): it runs after the requests before it.
fn changes_subscriptions(args: &[Bytes]) -> bool {
    const NAMES: [&[u8]; 7] = [
        b"subscribe",
        b"unsubscribe",
        b"psubscribe",
        b"punsubscribe",
        b"ssubscribe",
        b"sunsubscribe",
        b"reset",
    ];
    args.first()
        .is_some_and(|name| NAMES.iter().any(|n| name.eq_ignore_ascii_case(n)))
}

/// A batch's reply bytes, bounded: past `max`, nothing more is written.
struct Output<'a> {
    bytes: &'a mut BytesMut,
    max: usize,
    overflow: bool,
    /// Where each answered request is counted (INFO commandstats).
    stats: &'a CommandStats,
}

enum Slot {
    Ready(Reply),
    Pending(usize),
}

/// The data commands `run_items` has grouped so far, to go to the log as
/// one command.
struct Pending<'a> {
    /// What they go to the log with (see `Conn::run_as`).
    run_as: Option<&'a RunAs>,
    commands: Vec<KvCommand>,
    /// Their encoded length as one batch ([`KvCommand::exec_encoded_len`]),
    /// summed from the lengths their items carry: the batch is encoded in
    /// one pass, without counting it again.
    bytes: usize,
}

impl<'a> Pending<'a> {
    fn new(run_as: Option<&'a RunAs>) -> Pending<'a> {
        Pending {
            run_as,
            commands: Vec::new(),
            bytes: KvCommand::exec_encoded_len([]),
        }
    }

    /// Adds `command`, whose encoded length is `len`.
    fn push(&mut self, command: KvCommand, len: usize) {
        // As in `exec_encoded_len`: a nested command without its version.
        self.bytes += len.saturating_sub(1);
        self.commands.push(command);
    }

    /// Sends the grouped commands (none: nothing is sent) and writes every
    /// slot so far, theirs with their replies.
    async fn flush(
        &mut self,
        shared: &Shared,
        slots: &mut Vec<(Slot, Protocol, Option<StatTag>)>,
        out: &mut Output<'_>,
    ) {
        let commands = std::mem::take(&mut self.commands);
        let bytes = std::mem::replace(&mut self.bytes, KvCommand::exec_encoded_len([]));
        // One command goes as it is (see `execute`): its own length, the
        // batch's without the batch's framing, plus its version byte.
        let len = match commands.len() {
            1 => bytes - KvCommand::exec_encoded_len([]) + 1,
            _ => bytes,
        };
        let replies = execute_encoded(shared, self.run_as, commands, Some(len)).await;
        fill(slots, replies, out);
    }
}

/// Writes every slot in order, taking pending replies from `replies`.
fn fill(
    slots: &mut Vec<(Slot, Protocol, Option<StatTag>)>,
    replies: Vec<Reply>,
    out: &mut Output<'_>,
) {
    // The pending slots take replies 0, 1, 2, ... in order (`run_items`
    // numbers them so between two fills): taken in turn, with no copy of
    // the replies per batch, and any other index is a missing reply.
    let mut replies = replies.into_iter().enumerate();
    // The replies are all ready now: one clock read for their timings.
    let mut now = None;
    for (slot, proto, tag) in slots.drain(..) {
        let reply = match slot {
            Slot::Ready(reply) => reply,
            Slot::Pending(i) => match replies.next() {
                Some((at, reply)) if at == i => reply,
                other => {
                    // `execute` answers each command of its batch once.
                    debug_assert!(false, "reply {other:?} for pending slot {i}");
                    Reply::error("ERR internal error: missing reply")
                }
            },
        };
        if let Reply::Error(text) = &reply {
            out.stats.record_error(text);
        }
        if let Some(tag) = tag {
            let ending = match (&reply, tag.rejected) {
                (_, true) => Ending::Rejected,
                (Reply::Error(_), false) => Ending::Failed,
                _ => Ending::Ok,
            };
            let now = *now.get_or_insert_with(Instant::now);
            out.stats.record(
                tag.known,
                now.saturating_duration_since(tag.started),
                ending,
            );
        }
        if out.overflow {
            continue;
        }
        write_reply(out.bytes, &reply, proto);
        out.overflow = out.bytes.len() > out.max;
    }
}

/// Sends data commands through the log as one command and returns one reply
/// per command.
/// With `run_as`, the log command carries the client's user and the stamp
/// of the rules its commands were checked against, and every replica
/// refuses it if they changed (see [`crate::AsUser`]).
pub(crate) async fn execute(
    shared: &Shared,
    run_as: Option<&RunAs>,
    commands: Vec<KvCommand>,
) -> Vec<Reply> {
    execute_encoded(shared, run_as, commands, None).await
}

/// [`execute`], given the encoded length of what goes to the log when it is
/// known (`len`: see [`KvCommand::encode_with_len`]).
async fn execute_encoded(
    shared: &Shared,
    run_as: Option<&RunAs>,
    mut commands: Vec<KvCommand>,
    len: Option<usize>,
) -> Vec<Reply> {
    let n = commands.len();
    let read_only = commands.iter().all(KvCommand::is_read);
    // One command goes as it is (a transaction included); several become one
    // batch (never containing a transaction: see `run_items`).
    let single = n == 1;
    let command = match commands.pop() {
        Some(last) if single => last,
        Some(last) => {
            commands.push(last);
            KvCommand::Exec(commands)
        }
        None => return Vec::new(),
    };
    let mut command = command;
    // PUBLISH counts this node's receivers (see `crate::pubsub`).
    let tickets = shared.cfg.pubsub.stamp(&mut command);
    // Stamping changes only fixed-width fields: the length still holds.
    let bytes: Bytes = match (run_as, len) {
        (Some(run_as), len) => command.encode_as_user(&run_as.user, run_as.stamp, len),
        (None, Some(len)) => command.encode_with_len(len),
        (None, None) => command.encode(),
    };
    let local = match &shared.local_reads {
        Some((store, reads)) if read_only => store.serve(reads, &bytes),
        _ => None,
    };
    let result = if let Some(output) = local {
        // Answered here under the node's lease (see `synod::local_reads`).
        Ok(output)
    } else if read_only {
        shared.node.read(bytes).await
    } else {
        shared.node.propose(bytes).await
    };
    let mut reply = match result {
        Ok(output) => decode_reply_shared(&output)
            .unwrap_or_else(|e| Reply::error(format!("ERR internal error: bad reply: {e}"))),
        Err(err) => request_error_reply(&err),
    };
    tickets.settle(&command, &mut reply);
    if single {
        return vec![reply];
    }
    match reply {
        Reply::Array(replies) if replies.len() == n => replies,
        other => vec![other; n],
    }
}

/// The error reply for a request the node did not answer. A node loading a
/// peer's snapshot answers as Redis does while it loads a dataset
/// (`-LOADING`: client libraries retry it or go to another node); nothing
/// was run. Anything else is `-ERR` with the node's reason.
fn request_error_reply(err: &synod::RequestError) -> Reply {
    match err {
        synod::RequestError::Loading => Reply::error(format!("LOADING {err}")),
        _ => Reply::error(format!("ERR {err}")),
    }
}

/// Parses a data command, checking argument sizes first, and refuses a
/// SETRANGE that would make a string longer than `value_bytes_max`.
/// A nonce for a command that picks at random (RANDOMKEY): a per-process
/// counter, so that reads at one point of the log still differ. It travels
/// in the command, so every replica that evaluates the command picks alike.
fn next_pick_nonce() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn parse_data(
    args: &[Bytes],
    spec: Option<&'static crate::table::CommandSpec>,
    value_bytes_max: usize,
) -> Result<KvCommand, Reply> {
    if let Some(big) = args.iter().find(|a| a.len() > value_bytes_max) {
        return Err(Reply::error(format!(
            "ERR argument of {} bytes exceeds the maximum value size of {value_bytes_max} bytes",
            big.len()
        )));
    }
    let mut command = parse_spec(spec, args)?;
    if let KvCommand::RandomKey { nonce } = &mut command {
        *nonce = next_pick_nonce();
    }
    // Like SETRANGE below: SETBIT past the largest value would make every
    // replica allocate it.
    if let KvCommand::SetBit { offset, .. } = &command {
        if offset / 8 + 1 > value_bytes_max as u64 {
            return Err(Reply::error(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
            ));
        }
    }
    // A client could never SET such a string; a few bytes at a large offset
    // would make every replica allocate it (512 MB per command before).
    // Refused here, before proposing, so no replica has to judge it. As in
    // Redis, an empty patch changes nothing and is not refused.
    if let KvCommand::SetRange { offset, value, .. } = &command {
        let end = offset.saturating_add(value.len() as u64);
        if !value.is_empty() && end > value_bytes_max as u64 {
            return Err(Reply::error(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
            ));
        }
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node loading a snapshot answers as Redis does while it loads
    /// (`-LOADING`, which client libraries recognise); other failures stay
    /// `-ERR` with the node's reason.
    #[test]
    fn a_loading_node_answers_loading_and_other_failures_err() {
        let loading = request_error_reply(&synod::RequestError::Loading);
        let Reply::Error(line) = &loading else {
            panic!("not an error: {loading:?}");
        };
        assert!(line.starts_with("LOADING "), "{line}");
        let timeout = request_error_reply(&synod::RequestError::Timeout(Duration::from_secs(5)));
        let Reply::Error(line) = &timeout else {
            panic!("not an error: {timeout:?}");
        };
        assert!(line.starts_with("ERR no answer within"), "{line}");
    }
}
