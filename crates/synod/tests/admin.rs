//! The admin HTTP endpoint under abuse (issue 13, item 5): credentials when
//! configured, HEAD without a body, a cap on connections that a flood of
//! 2,000 sockets cannot get past, bounded request heads.
//!
//! A binary of its own, not a module of `tests/all`: the flood test measures
//! the process's RSS, which other tests running beside it would grow.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod::{AdminConfig, ApplyContext, Node, NodeConfig, NodeId, StateMachine};
use tokio::sync::watch;

#[derive(Default)]
struct Count(u64);

impl StateMachine for Count {
    fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.0 += 1;
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "bad snapshot")?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A one-node cluster serving admin HTTP with `admin` on a loopback port.
async fn start(
    dir: &std::path::Path,
    admin: AdminConfig,
) -> (Arc<Node>, SocketAddr, watch::Sender<bool>) {
    // Kept and handed to the node: a port dropped and bound again could be
    // taken meanwhile.
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = peer.local_addr().expect("addr");
    let peers = BTreeMap::from([(NodeId(1), addr)]);
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.join("n1")).expect("member");
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    let node = Arc::new(
        Node::start_with_listener(cfg, Count::default(), peer)
            .await
            .expect("starts"),
    );
    node.propose(Bytes::from_static(b"x"))
        .await
        .expect("chooses");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = listener.local_addr().expect("addr");
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(synod::serve_admin_with(
        listener,
        Arc::clone(&node),
        stop,
        admin,
    ));
    (node, http, stop_tx)
}

/// One request, the whole answer (blocking; run off the runtime).
fn request(addr: SocketAddr, text: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(text.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, text: &str) -> String {
    let text = text.to_string();
    tokio::task::spawn_blocking(move || request(addr, &text))
        .await
        .expect("request")
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_password_every_route_needs_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = AdminConfig {
        auth: Some(AdminConfig::password_auth("s3cret")),
        ..AdminConfig::default()
    };
    let (node, http, _stop) = start(dir.path(), admin).await;
    for path in ["/status", "/metrics", "/"] {
        let answer = get(http, &format!("GET {path} HTTP/1.1\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains("WWW-Authenticate: Basic"), "{answer}");
        assert!(!answer.contains("\"role\""), "no status leaks: {answer}");
    }
    // Basic default:s3cret, then a wrong password, then Bearer.
    let ok = get(
        http,
        "GET /status HTTP/1.1\r\nAuthorization: Basic ZGVmYXVsdDpzM2NyZXQ=\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(body(&ok).contains("\"role\":\"leader\""), "{ok}");
    let wrong = get(
        http,
        "GET /status HTTP/1.1\r\nAuthorization: Basic ZGVmYXVsdDp3cm9uZw==\r\n\r\n",
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let bearer = get(
        http,
        "GET /metrics HTTP/1.1\r\nauthorization: Bearer s3cret\r\n\r\n",
    )
    .await;
    assert!(bearer.starts_with("HTTP/1.1 200"), "{bearer}");
    assert!(
        body(&bearer).contains("synod_admin_auth_failures_total 4"),
        "{bearer}"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_without_a_body_and_big_heads_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, http, _stop) = start(dir.path(), AdminConfig::default()).await;
    let got = get(http, "GET /status HTTP/1.1\r\n\r\n").await;
    let head = get(http, "HEAD /status HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body after the head: {head:?}"
    );
    let length = |answer: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(length(&head), Some(body(&got).len().to_string()));
    let post = get(http, "POST /status HTTP/1.1\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let huge = format!(
        "GET /status HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(synod::ADMIN_HEAD_BYTES_MAX)
    );
    let refused = get(http, &huge).await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 2,000 connections that send nothing: at most the cap (64) are held, the
/// rest are closed at once and counted; the node keeps choosing, memory
/// stays bounded, and once the flood ends the endpoint answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_capped_and_the_node_keeps_serving() {
    const FLOOD: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, http, _stop) = start(dir.path(), AdminConfig::default()).await;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let flood = tokio::task::spawn_blocking(move || {
        (0..FLOOD)
            .filter_map(|_| TcpStream::connect(http).ok())
            .collect::<Vec<_>>()
    })
    .await
    .expect("flood");
    assert_eq!(flood.len(), FLOOD);
    // Connections past the kernel's accept backlog reach the server later
    // (the client retransmits), so some get a slot freed by the head
    // timeout (5 s): allow a few rounds of the cap to be served.
    let cap = synod::ADMIN_CONNECTIONS_MAX_DEFAULT;
    let refused_at_least = (FLOOD - 8 * cap) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    loop {
        let refused = node.metrics().admin_connections_refused.load(relaxed);
        let open = node.metrics().admin_connections_open.load(relaxed);
        assert!(open <= cap as u64, "{open} connections served at once");
        if refused >= refused_at_least {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {refused} of {FLOOD} connections refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The node serves during the flood.
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        node.propose(Bytes::from_static(b"during the flood")),
    )
    .await
    .expect("the node answers during the flood");
    assert!(answer.is_ok(), "{answer:?}");
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "flood of {FLOOD}: refused in {:?}, RSS growth {} KiB",
        started.elapsed(),
        rss_growth / 1024
    );
    assert!(rss_growth < 64 << 20, "RSS grew by {rss_growth} bytes");
    // The flood ends: the endpoint answers again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(http, "GET /status HTTP/1.1\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no answer after the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
