//! A cluster in one process (WAL on disk, TCP on loopback) with its RESP
//! front ends, plain and optionally TLS, and a raw RESP client over any
//! byte stream: for tests of the client edge (limits, TLS).

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use synod::{Node, NodeConfig, NodeId, RequestError};
use synod_kv::{ServerConfig, Store};
use synod_resp::{parse_reply, write_request, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a test waits for any one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub nodes: Vec<Arc<Node>>,
    pub resp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub configs: Vec<ServerConfig>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// Starts `n` nodes; `configure` adjusts each front end's settings; with
/// `tls`, each also serves TLS clients on a second port.
pub async fn cluster(
    n: u32,
    configure: impl Fn(&mut ServerConfig),
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Cluster {
    cluster_wrapped(n, configure, tls, |_, store| store).await
}

/// [`cluster`] whose node `id`'s state machine is `wrap(id, its store)`
/// (a test's stand-in around the real store).
pub async fn cluster_wrapped<S: synod::StateMachine>(
    n: u32,
    configure: impl Fn(&mut ServerConfig),
    tls: Option<Arc<rustls::ServerConfig>>,
    wrap: impl Fn(u32, Store) -> S,
) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let (peers, mut listeners) = bound_peers(n);
    let (stop, stop_rx) = watch::channel(false);
    let mut c = Cluster {
        nodes: Vec::new(),
        resp: Vec::new(),
        tls: Vec::new(),
        configs: Vec::new(),
        _stop: stop,
        _dir: dir,
    };
    for id in 1..=n {
        let mut cfg = NodeConfig::new(
            NodeId(id),
            peers.clone(),
            c._dir.path().join(format!("n{id}")),
        )
        .expect("member");
        cfg.bootstrap = synod::Bootstrap::New;
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        cfg.request_timeout = Duration::from_secs(10);
        // The front end enforces the users the store's log commands change,
        // as `synod server` wires them.
        let store = Store::new();
        let acl = store.acl();
        let pubsub = store.pubsub();
        let blocked_clients = store.blocked_clients();
        let peer_listener = listeners.remove(0);
        let node = Arc::new(
            Node::start_with_listener(cfg, wrap(id, store), peer_listener)
                .await
                .expect("starts"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        c.resp.push(listener.local_addr().expect("addr"));
        let tls_listener = match &tls {
            Some(config) => {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                c.tls.push(listener.local_addr().expect("addr"));
                Some((listener, Arc::clone(config)))
            }
            None => None,
        };
        let mut server_cfg = ServerConfig::new(listener.local_addr().expect("addr"));
        server_cfg.acl = acl;
        server_cfg.pubsub = pubsub;
        server_cfg.blocked_clients = blocked_clients;
        configure(&mut server_cfg);
        c.configs.push(server_cfg.clone());
        let (node2, mut stop2) = (Arc::clone(&node), stop_rx.clone());
        tokio::spawn(async move {
            synod_kv::serve_listeners(Some(listener), tls_listener, server_cfg, node2, &mut stop2)
                .await
        });
        c.nodes.push(node);
    }
    // Wait for a leader: a write through node 1 succeeds.
    for _ in 0..20 {
        match c.nodes[0].propose(Bytes::new()).await {
            Err(RequestError::Timeout(_)) => continue,
            _ => break,
        }
    }
    c
}

/// The peer list of nodes 1..=`n` on loopback ports bound now, with their
/// listeners, to hand to the nodes (`Node::start_with_listener`): a port
/// dropped and bound again could be taken meanwhile (a client's
/// connection), and the start failed.
pub fn bound_peers(n: u32) -> (BTreeMap<NodeId, SocketAddr>, Vec<std::net::TcpListener>) {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u32 + 1), l.local_addr().expect("addr")))
        .collect();
    (peers, listeners)
}

/// A raw RESP client over any byte stream.
pub struct Client<S> {
    pub stream: S,
    input: BytesMut,
}

impl Client<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Client<TcpStream> {
        Client::new(TcpStream::connect(addr).await.expect("connect"))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Client<S> {
        Client {
            stream,
            input: BytesMut::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    pub async fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        write_request(&mut out, args);
        self.send_raw(&out).await
    }

    /// The next reply; `None` when the server closed the connection.
    pub async fn reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = parse_reply(&mut self.input).expect("a valid reply") {
                return Some(reply);
            }
            let read = tokio::time::timeout(REPLY_WAIT, self.stream.read_buf(&mut self.input))
                .await
                .expect("a reply or the end in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn call(&mut self, args: &[&[u8]]) -> Option<Reply> {
        self.send(args).await.ok()?;
        self.reply().await
    }

    /// Whether the server closes the connection with no further reply.
    pub async fn closed(&mut self) -> bool {
        self.reply().await.is_none()
    }
}

pub fn error(text: &str) -> Reply {
    Reply::Error(text.to_string())
}

pub fn ok() -> Reply {
    Reply::Simple("OK".into())
}

/// The value of `field` in the INFO text of the node at `addr`; `None` if
/// the connection is refused (e.g. at the client limit).
pub async fn try_info_field(addr: SocketAddr, password: Option<&str>, field: &str) -> Option<u64> {
    let mut client = Client::connect(addr).await;
    if let Some(password) = password {
        if client.call(&[b"AUTH", password.as_bytes()]).await != Some(ok()) {
            return None;
        }
    }
    let Some(Reply::Bulk(text) | Reply::Verbatim(text)) = client.call(&[b"INFO", b"stats"]).await
    else {
        return None;
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO: {text}"));
    Some(value.trim().parse().expect("a number"))
}

/// The value of `field` in the INFO text of the node at `addr`.
pub async fn info_field(addr: SocketAddr, password: Option<&str>, field: &str) -> u64 {
    try_info_field(addr, password, field)
        .await
        .expect("INFO answers")
}

/// Waits until `field` of INFO reaches `at_least` (the server counts a
/// closed client after closing it).
pub async fn wait_for_count(addr: SocketAddr, password: Option<&str>, field: &str, at_least: u64) {
    let mut last = None;
    for _ in 0..200 {
        last = try_info_field(addr, password, field).await;
        if last.is_some_and(|count| count >= at_least) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{field} stayed at {last:?}, below {at_least}");
}
