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

use crate::command::KvCommand;
use crate::conn::{Conn, Item};
use crate::parse::parse;
use crate::reply_codec::decode_reply;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use synod::Node;
use synod_resp::{write_reply, Limits, Protocol, Reply, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Limits and settings of the RESP front end.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// When set, clients must AUTH first: the ACL `default` user's password
    /// until an ACL rule sets one (see `crate::acl`).
    pub password: Option<String>,
    /// More connections than this are refused with an error.
    pub clients_max: usize,
    /// At most this many requests of one connection are handled per batch;
    /// the rest wait in its buffer (bounds memory per client).
    pub pipeline_max: usize,
    /// A single request (all its arguments) may not exceed this.
    pub request_bytes_max: usize,
    /// A single argument (a value) may not exceed this.
    pub value_bytes_max: usize,
    /// Port of the admin HTTP endpoint, for INFO.
    pub http: Option<SocketAddr>,
    /// The node's ACL users: give the store's ([`crate::Store::acl`]), so
    /// the rules the log sets are the rules connections are checked
    /// against. The default is a standalone table with only `default`.
    pub acl: crate::Acl,
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
            http: None,
            acl: crate::Acl::new(),
        }
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub cfg: ServerConfig,
    pub node: Arc<Node>,
    pub clients: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub started: Instant,
    pub commands: AtomicU64,
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
    info!(addr = %listener.local_addr()?, "serving the Redis protocol");
    // `--password` is the default user's password until an ACL rule sets one.
    cfg.acl.set_config_password(cfg.password.as_deref());
    let shared = Arc::new(Shared {
        cfg,
        node,
        clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(1),
        started: Instant::now(),
        commands: AtomicU64::new(0),
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: wait a little.
                        warn!("accept failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(err) = client(stream, peer, shared).await {
                        debug!(%peer, "client connection ended: {err}");
                    }
                });
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// Decrements the client count however the connection ends.
struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Relaxed);
    }
}

async fn client(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let count = shared.clients.fetch_add(1, Relaxed) + 1;
    let _slot = ClientSlot(Arc::clone(&shared));
    if count > shared.cfg.clients_max {
        stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await?;
        return Ok(());
    }
    let id = shared.next_client_id.fetch_add(1, Relaxed);
    let mut conn = Conn::new(id, peer, Arc::clone(&shared));
    let mut parser = RequestParser::new(Limits {
        bulk_bytes_max: shared.cfg.request_bytes_max,
        request_bytes_max: shared.cfg.request_bytes_max,
        ..Limits::default()
    });
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    loop {
        // Parse what is buffered, up to the pipeline limit.
        let mut items = Vec::new();
        let mut close = false;
        while items.len() < shared.cfg.pipeline_max {
            match parser.parse(&mut input) {
                Ok(Some(args)) => {
                    let item = conn.handle(args);
                    close = matches!(item, Item::Quit(_));
                    items.push(item);
                    if close {
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    // Like Redis: answer the protocol error and close.
                    items.push(Item::Quit(err.to_reply()));
                    close = true;
                    break;
                }
            }
        }
        if !items.is_empty() {
            run_items(&shared, &mut conn, items, &mut output).await;
            stream.write_all(&output).await?;
            output.clear();
            if close {
                return Ok(());
            }
            // More may be parsed from the buffer already.
            continue;
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
    }
}

/// Runs a batch of items in order and writes their replies.
async fn run_items(shared: &Shared, conn: &mut Conn, items: Vec<Item>, out: &mut BytesMut) {
    // Data commands are grouped into one log command; a reply slot remembers
    // where each reply goes and with which protocol it is written.
    let mut pending: Vec<KvCommand> = Vec::new();
    // Encoded length of `pending` as one batch (`KvCommand::exec_encoded_len`).
    let empty_batch_bytes = KvCommand::exec_encoded_len([]);
    let mut pending_bytes = empty_batch_bytes;
    let batch_bytes_max = shared.node.command_bytes_max();
    let mut slots: Vec<(Slot, Protocol)> = Vec::new();
    for item in items {
        match item {
            Item::Reply(reply, proto) => slots.push((Slot::Ready(reply), proto)),
            Item::Quit(reply) => slots.push((Slot::Ready(reply), conn.protocol)),
            Item::Later(reply, proto, delay) => {
                // A failed or throttled AUTH: the reply waits (see acl_auth);
                // the connection's later requests wait behind it.
                tokio::time::sleep(delay).await;
                slots.push((Slot::Ready(reply), proto));
            }
            Item::Data(command @ KvCommand::Exec(_), proto) => {
                // A transaction is its own log command (the log format does
                // not nest them), after what came before it.
                let replies = execute(shared, std::mem::take(&mut pending)).await;
                fill(&mut slots, replies, out);
                pending_bytes = empty_batch_bytes;
                let replies = execute(shared, vec![command]).await;
                slots.push((Slot::Pending(0), proto));
                fill(&mut slots, replies, out);
            }
            Item::Data(command, proto) => {
                // Every command fits alone (checked by `Conn`); a batch that
                // it would push past the bound is sent first, so no log
                // command ever exceeds what the log can carry.
                let len = command.encoded_len().saturating_sub(1);
                if !pending.is_empty() && pending_bytes + len > batch_bytes_max {
                    let replies = execute(shared, std::mem::take(&mut pending)).await;
                    fill(&mut slots, replies, out);
                    pending_bytes = empty_batch_bytes;
                }
                pending_bytes += len;
                slots.push((Slot::Pending(pending.len()), proto));
                pending.push(command);
            }
            Item::Info(sections, proto) => {
                // INFO reads the log: finish what came before first.
                let replies = execute(shared, std::mem::take(&mut pending)).await;
                fill(&mut slots, replies, out);
                pending_bytes = empty_batch_bytes;
                let reply = conn.info(&sections).await;
                slots.push((Slot::Ready(reply), proto));
            }
        }
    }
    let replies = execute(shared, pending).await;
    fill(&mut slots, replies, out);
    shared.commands.fetch_add(1, Relaxed);
}

enum Slot {
    Ready(Reply),
    Pending(usize),
}

/// Writes every slot in order, taking pending replies from `replies`.
fn fill(slots: &mut Vec<(Slot, Protocol)>, replies: Vec<Reply>, out: &mut BytesMut) {
    let mut replies: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
    for (slot, proto) in slots.drain(..) {
        let reply = match slot {
            Slot::Ready(reply) => reply,
            Slot::Pending(i) => replies
                .get_mut(i)
                .and_then(Option::take)
                .unwrap_or_else(|| Reply::error("ERR internal error: missing reply")),
        };
        write_reply(out, &reply, proto);
    }
}

/// Sends data commands through the log as one command and returns one reply
/// per command.
pub(crate) async fn execute(shared: &Shared, mut commands: Vec<KvCommand>) -> Vec<Reply> {
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
    let bytes: Bytes = command.encode();
    let result = if read_only {
        shared.node.read(bytes).await
    } else {
        shared.node.propose(bytes).await
    };
    let reply = match result {
        Ok(output) => decode_reply(&output)
            .unwrap_or_else(|e| Reply::error(format!("ERR internal error: bad reply: {e}"))),
        Err(err) => Reply::error(format!("ERR {err}")),
    };
    if single {
        return vec![reply];
    }
    match reply {
        Reply::Array(replies) if replies.len() == n => replies,
        other => vec![other; n],
    }
}

/// Parses a data command, checking argument sizes first.
pub(crate) fn parse_data(args: &[Bytes], value_bytes_max: usize) -> Result<KvCommand, Reply> {
    if let Some(big) = args.iter().find(|a| a.len() > value_bytes_max) {
        return Err(Reply::error(format!(
            "ERR argument of {} bytes exceeds the maximum value size of {value_bytes_max} bytes",
            big.len()
        )));
    }
    parse(args)
}
