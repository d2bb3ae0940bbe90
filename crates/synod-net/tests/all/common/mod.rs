//! Helpers shared by the integration tests: nodes on pre-bound loopback
//! listeners, messages, polling with generous deadlines, and captured warnings.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod pki;

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use synod_core::{Ballot, Body, GroupId, InstanceId, Message, NodeId, Value};
use synod_net::{Net, NetConfig, NetStats, PeerSecurity};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Long enough for a loaded two-core CI machine; the tests poll, so a healthy
/// run takes milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Cluster id of the test clusters.
pub const CLUSTER: u64 = 42;
/// Inbound channel capacity of test nodes.
pub const INBOUND_MAX: usize = 1024;

/// A started node and the receiving end of its inbound channel.
pub struct Node {
    pub id: NodeId,
    pub net: Net,
    pub inbound: mpsc::Receiver<Message>,
}

/// Binds one loopback listener per id on port 0 and returns them with the
/// address map every member's config needs.
pub async fn bind(ids: &[u32]) -> (BTreeMap<NodeId, TcpListener>, BTreeMap<NodeId, SocketAddr>) {
    let mut listeners = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in ids {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(NodeId(*id), listener.local_addr().unwrap());
        listeners.insert(NodeId(*id), listener);
    }
    (listeners, addrs)
}

/// A config with short backoff, so reconnects in tests are quick, and plain
/// links (loopback).
pub fn config(id: NodeId, addrs: &BTreeMap<NodeId, SocketAddr>) -> NetConfig {
    config_with(id, addrs, PeerSecurity::InsecureLoopback)
}

/// Like [`config`], with the given security.
pub fn config_with(
    id: NodeId,
    addrs: &BTreeMap<NodeId, SocketAddr>,
    security: PeerSecurity,
) -> NetConfig {
    let mut cfg = NetConfig::new(CLUSTER, id, addrs[&id], addrs.clone(), security);
    cfg.backoff_min = Duration::from_millis(10);
    cfg.backoff_max = Duration::from_millis(200);
    cfg
}

/// Starts a node on its pre-bound listener.
pub async fn start(cfg: NetConfig, listener: TcpListener) -> Node {
    start_with_inbound(cfg, listener, INBOUND_MAX).await
}

/// Starts a node whose inbound channel holds `inbound_max` messages.
pub async fn start_with_inbound(cfg: NetConfig, listener: TcpListener, inbound_max: usize) -> Node {
    let (tx, inbound) = mpsc::channel(inbound_max);
    let id = cfg.node_id;
    let net = Net::start_with_listener(cfg, listener, tx).await.unwrap();
    Node { id, net, inbound }
}

/// Starts every node of `addrs` that has a listener in `listeners`.
pub async fn start_all(
    listeners: BTreeMap<NodeId, TcpListener>,
    addrs: &BTreeMap<NodeId, SocketAddr>,
) -> BTreeMap<NodeId, Node> {
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        nodes.insert(id, start(config(id, addrs), listener).await);
    }
    nodes
}

/// The handshake frame a dialer claiming `from` sends to reach `to`.
pub fn hello_frame(cluster: u64, from: u32, to: u32) -> Vec<u8> {
    use synod_net::{HANDSHAKE_PAYLOAD_BYTES, MAGIC, PROTOCOL_VERSION};
    let mut frame = (HANDSHAKE_PAYLOAD_BYTES as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&cluster.to_le_bytes());
    frame.extend_from_slice(&from.to_le_bytes());
    frame.extend_from_slice(&to.to_le_bytes());
    frame
}

/// A small message; `instance` tells messages apart.
pub fn message(from: NodeId, to: NodeId, instance: u64) -> Message {
    Message {
        group: GroupId(0),
        from,
        to,
        body: Body::Accepted {
            ballot: Ballot {
                round: 1,
                node: from,
            },
            instance: InstanceId(instance),
        },
    }
}

/// A message carrying one command of `bytes` bytes.
pub fn big_message(from: NodeId, to: NodeId, instance: u64, bytes: usize) -> Message {
    let command = Bytes::from((0..bytes).map(|i| i as u8).collect::<Vec<_>>());
    Message {
        group: GroupId(0),
        from,
        to,
        body: Body::Accept {
            ballot: Ballot {
                round: 1,
                node: from,
            },
            instance: InstanceId(instance),
            value: Value::batch(vec![command]),
            chosen_end: InstanceId(0),
        },
    }
}

/// The instance of a message built by [`message`] or [`big_message`].
pub fn instance_of(msg: &Message) -> u64 {
    match &msg.body {
        Body::Accepted { instance, .. } | Body::Accept { instance, .. } => instance.0,
        other => panic!("unexpected {other:?}"),
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls a node's stats until `condition` holds.
pub async fn wait_stats(net: &Net, what: &str, condition: impl Fn(&NetStats) -> bool) {
    wait_until(what, || condition(&net.stats())).await;
}

/// Whether `net` is connected to every id in `others`.
pub fn connected_to(net: &Net, others: &[NodeId]) -> bool {
    let stats = net.stats();
    others
        .iter()
        .all(|id| stats.connected.get(id) == Some(&true))
}

/// The next inbound message, failing the test after [`DEADLINE`].
pub async fn recv(node: &mut Node) -> Message {
    tokio::time::timeout(DEADLINE, node.inbound.recv())
        .await
        .unwrap_or_else(|_| panic!("{} received nothing in time", node.id))
        .expect("inbound channel open")
}

/// Reads (and discards) until the other end closes the socket; fails the test
/// if it stays open past [`DEADLINE`].
pub async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node kept the connection open");
}

/// Warnings logged by any test in this binary, captured by [`capture_warnings`].
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Panics anywhere in this binary, including inside the transport's tasks
/// (which tokio would otherwise swallow).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs (once) a global subscriber that records WARN and ERROR messages,
/// and a panic hook that counts panics.
pub fn capture_warnings() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(WarnCapture).unwrap();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    });
}

/// Whether a captured warning contains `needle`.
pub fn warned(needle: &str) -> bool {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains(needle))
}

/// The captured warnings that contain `needle`.
pub fn warnings_containing(needle: &str) -> Vec<String> {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}

/// Panics counted since [`capture_warnings`].
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// A minimal subscriber: keeps the message of every WARN or ERROR event.
struct WarnCapture;

struct MessageField(String);

impl tracing::field::Visit for MessageField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for WarnCapture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = MessageField(String::new());
        event.record(&mut message);
        WARNINGS.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
