//! Mutually authenticated TLS peer links: the mesh works, and every way of
//! getting in without the right certificate is refused at the handshake,
//! counted, and leaves the real links alone.
//!
//! Membership 1..=4; nodes 2, 3 and 4 are real (node 4 accepts from 2 and 3),
//! the attacker plays 1 or impersonates others.

use crate::common;

use common::pki::{client_config, Credentials, TestCa};
use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use synod_core::codec::Encode;
use synod_core::{Message, NodeId};
use synod_net::{
    NetStats, PeerSecurity, PeerTls, HANDSHAKE_PAYLOAD_BYTES, MAGIC, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forged traffic carries this instance, so it can be told from real messages.
const FORGED: u64 = 999_999;

fn handshake(from: u32, to: u32) -> Vec<u8> {
    let mut frame = (HANDSHAKE_PAYLOAD_BYTES as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&CLUSTER.to_le_bytes());
    frame.extend_from_slice(&from.to_le_bytes());
    frame.extend_from_slice(&to.to_le_bytes());
    frame
}

/// A handshake claiming `from`, then a forged message from `from` to `to`.
fn forged_bytes(from: u32, to: u32) -> Vec<u8> {
    let mut bytes = handshake(from, to);
    let msg: Message = message(NodeId(from), NodeId(to), FORGED);
    let payload = msg.to_bytes();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

struct Cluster {
    ca: TestCa,
    nodes: BTreeMap<NodeId, Node>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    /// Member 1's address, bound but never served.
    _absent: TcpListener,
}

async fn tls_cluster() -> Cluster {
    capture_warnings();
    let ca = TestCa::new("test");
    let (mut listeners, addrs) = bind(&[1, 2, 3, 4]).await;
    let absent = listeners.remove(&NodeId(1)).unwrap();
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let mut cfg = config_with(id, &addrs, ca.security(id));
        cfg.handshake_timeout = Duration::from_secs(2);
        nodes.insert(id, start(cfg, listener).await);
    }
    let cluster = Cluster {
        ca,
        nodes,
        addrs,
        _absent: absent,
    };
    let [two, three] = [NodeId(2), NodeId(3)];
    wait_until("4 is linked to 2 and 3", || {
        connected_to(&cluster.nodes[&NodeId(4)].net, &[two, three])
    })
    .await;
    cluster
}

impl Cluster {
    fn stats(&self, id: u32) -> NetStats {
        self.nodes[&NodeId(id)].net.stats()
    }

    /// A real message 2 -> 4 still arrives, and nothing forged arrived before it.
    async fn still_serves(&mut self, instance: u64) {
        self.nodes[&NodeId(2)]
            .net
            .send(message(NodeId(2), NodeId(4), instance))
            .unwrap();
        let four = self.nodes.get_mut(&NodeId(4)).unwrap();
        loop {
            let got = recv(four).await;
            assert_ne!(
                instance_of(&got),
                FORGED,
                "a forged message got in: {got:?}"
            );
            if instance_of(&got) == instance {
                return;
            }
        }
    }
}

/// Reads until the node closes and returns what it sent. Over plain TCP that
/// may be a TLS alert, never a Synod handshake reply; over TLS it must be
/// nothing at all (callers check).
async fn read_until_refused<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the node kept the connection open");
    received
}

/// A plain-TCP outsider is closed without a Synod handshake reply.
async fn expect_refused(stream: &mut TcpStream) {
    let received = read_until_refused(stream).await;
    assert!(
        !received.windows(MAGIC.len()).any(|w| w == MAGIC),
        "the node answered the outsider's handshake: {received:?}"
    );
}

/// Connects with TLS presenting `creds` (or no certificate), then sends `bytes`.
async fn tls_attack(addr: SocketAddr, creds: Option<&Credentials>, bytes: &[u8]) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(creds));
    let name = rustls_pki_types::ServerName::try_from("node-4.test.synod").unwrap();
    // In TLS 1.3 the client may finish before the server judges its
    // certificate, so the refusal can come at connect or at the next read.
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        let _ = tls.write_all(bytes).await;
        let _ = tls.flush().await;
        let answer = read_until_refused(&mut tls).await;
        assert!(
            answer.is_empty(),
            "the node answered inside TLS: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_tls_mesh_carries_messages_both_ways() {
    let mut cluster = tls_cluster().await;
    cluster.still_serves(1).await;
    cluster.nodes[&NodeId(4)]
        .net
        .send(message(NodeId(4), NodeId(3), 2))
        .unwrap();
    let three = cluster.nodes.get_mut(&NodeId(3)).unwrap();
    assert_eq!(instance_of(&recv(three).await), 2);
    assert_eq!(cluster.stats(4).handshakes_rejected, 0);
}

#[tokio::test]
async fn a_plain_tcp_outsider_is_refused_at_the_handshake() {
    let mut cluster = tls_cluster().await;
    let four = cluster.addrs[&NodeId(4)];
    let mut stream = TcpStream::connect(four).await.unwrap();
    stream.write_all(&forged_bytes(1, 4)).await.unwrap();
    expect_refused(&mut stream).await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "refusal counted", |s| {
        s.handshakes_unauthenticated == 1
    })
    .await;
    cluster.still_serves(10).await;
    assert!(warned("failed the TLS handshake"));
}

#[tokio::test]
async fn a_tls_client_without_a_certificate_is_refused() {
    let mut cluster = tls_cluster().await;
    tls_attack(cluster.addrs[&NodeId(4)], None, &forged_bytes(1, 4)).await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "refusal counted", |s| {
        s.handshakes_unauthenticated == 1
    })
    .await;
    cluster.still_serves(11).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let mut cluster = tls_cluster().await;
    // Names the right node and cluster, but is signed by a stranger.
    let stranger = TestCa::new("test").issue(NodeId(1));
    tls_attack(
        cluster.addrs[&NodeId(4)],
        Some(&stranger),
        &forged_bytes(1, 4),
    )
    .await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "refusal counted", |s| {
        s.handshakes_unauthenticated == 1
    })
    .await;
    cluster.still_serves(12).await;
}

#[tokio::test]
async fn a_node_cannot_claim_an_id_its_certificate_does_not_name() {
    let mut cluster = tls_cluster().await;
    // A genuine certificate of node 2, used to claim to be node 3.
    let node2 = cluster.ca.issue(NodeId(2));
    let connects_before = cluster.stats(4).connects;
    tls_attack(cluster.addrs[&NodeId(4)], Some(&node2), &forged_bytes(3, 4)).await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "refusal counted", |s| {
        s.handshakes_unauthenticated == 1
    })
    .await;
    assert!(warned(
        "claims to be n3, but holds a certificate that does not name node-3.test.synod"
    ));
    // Refused before it could replace node 3's link.
    assert_eq!(cluster.stats(4).connects, connects_before);
    cluster.still_serves(13).await;
    // Another cluster's certificate for the right id, same CA: refused too.
    let other_cluster = cluster.ca.issue_names(vec!["node-1.other.synod".into()]);
    tls_attack(
        cluster.addrs[&NodeId(4)],
        Some(&other_cluster),
        &forged_bytes(1, 4),
    )
    .await;
    wait_stats(
        &cluster.nodes[&NodeId(4)].net,
        "second refusal counted",
        |s| s.handshakes_unauthenticated == 2,
    )
    .await;
}

/// Serves `listener` with TLS presenting `creds` (no client certificate
/// asked) for `attempts` connections, then ends; answers nothing inside TLS.
fn impostor(
    listener: TcpListener,
    creds: Credentials,
    attempts: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use rustls_pki_types::pem::PemObject;
        let chain =
            vec![
                rustls_pki_types::CertificateDer::from_pem_slice(creds.cert_pem.as_bytes())
                    .unwrap(),
            ];
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(synod_net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        for _ in 0..attempts {
            let (tcp, _) = listener.accept().await.unwrap();
            // Whatever happens, the impostor gets nothing: count attempts.
            let _ = acceptor.accept(tcp).await;
        }
    })
}

/// Node 1 dials node 2's address, served by an impostor holding `creds`
/// from the cluster's own CA: node 1 must not take it for node 2.
async fn dialer_refuses(ca: &TestCa, creds: Credentials, warning: &str) {
    capture_warnings();
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let impostor = impostor(listeners.remove(&NodeId(2)).unwrap(), creds, 2);
    let listener = listeners.remove(&NodeId(1)).unwrap();
    let mut cfg = config_with(NodeId(1), &addrs, ca.security(NodeId(1)));
    // Every refusal logged, so this test's line is there whatever ran before.
    cfg.rejected_log_interval = Duration::ZERO;
    let one = start(cfg, listener).await;
    wait_stats(&one.net, "two dials refused", |s| {
        s.handshakes_unauthenticated >= 2
    })
    .await;
    assert!(!connected_to(&one.net, &[NodeId(2)]));
    assert!(warned(warning), "no warning {warning:?}");
    impostor.await.unwrap();
    one.net.shutdown().await;
}

#[tokio::test]
async fn the_dialer_refuses_an_acceptor_with_the_wrong_certificate() {
    let ca = TestCa::new("test");
    // A valid certificate of node 3 (same CA, same cluster).
    let node3 = ca.issue(NodeId(3));
    dialer_refuses(&ca, node3, "failed the TLS handshake").await;
}

#[tokio::test]
async fn the_dialer_refuses_a_wildcard_or_two_node_certificate() {
    let ca = TestCa::new("test");
    let wildcard = ca.issue_names(vec!["*.test.synod".into()]);
    dialer_refuses(&ca, wildcard, "with the wildcard name \"*.test.synod\"").await;
    let both = ca.issue_names(vec!["node-2.test.synod".into(), "node-3.test.synod".into()]);
    dialer_refuses(&ca, both, "also names \"node-3.test.synod\"").await;
}

#[tokio::test]
async fn the_acceptor_refuses_a_wildcard_or_two_node_certificate() {
    let mut cluster = tls_cluster().await;
    let connects_before = cluster.stats(4).connects;
    // Both from the cluster's own CA, as a careless `--hosts` once made them.
    let wildcard = cluster.ca.issue_names(vec!["*.test.synod".into()]);
    let both = cluster
        .ca
        .issue_names(vec!["node-1.test.synod".into(), "node-3.test.synod".into()]);
    tls_attack(
        cluster.addrs[&NodeId(4)],
        Some(&wildcard),
        &forged_bytes(1, 4),
    )
    .await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "wildcard refused", |s| {
        s.handshakes_unauthenticated == 1
    })
    .await;
    assert!(warned(
        "claims to be n1, but holds a certificate with the wildcard name"
    ));
    tls_attack(cluster.addrs[&NodeId(4)], Some(&both), &forged_bytes(1, 4)).await;
    wait_stats(&cluster.nodes[&NodeId(4)].net, "two names refused", |s| {
        s.handshakes_unauthenticated == 2
    })
    .await;
    assert_eq!(cluster.stats(4).connects, connects_before);
    cluster.still_serves(15).await;
    // Neither loads as a node's own credentials either (the wildcard does
    // not name node 1 at all, so that is the message it gets).
    let load = |creds: &Credentials| {
        PeerTls::from_pem(
            NodeId(1),
            cluster.ca.pem.as_bytes(),
            creds.cert_pem.as_bytes(),
            creds.key_pem.as_bytes(),
        )
        .unwrap_err()
        .to_string()
    };
    let err = load(&wildcard);
    assert!(err.contains("does not name node 1"), "{err}");
    let err = load(&both);
    assert!(
        err.contains("also names \"node-3.test.synod\"") && err.contains("peers would refuse it"),
        "{err}"
    );
}

#[tokio::test]
async fn a_thousand_forged_handshakes_neither_get_in_nor_cut_the_real_links() {
    let mut cluster = tls_cluster().await;
    let four = cluster.addrs[&NodeId(4)];
    let connects_before = cluster.stats(4).connects;
    let attempts = 1000;
    // In waves of 8 (the per-source limit), so each is judged by TLS rather
    // than refused for being too many at once; both count as refused.
    for wave in 0..attempts / 8 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let claim = if (wave + i) % 2 == 0 { 2 } else { 3 };
            tasks.spawn(async move {
                let mut stream = TcpStream::connect(four).await.unwrap();
                let _ = stream.write_all(&forged_bytes(claim, 4)).await;
                expect_refused(&mut stream).await;
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    wait_stats(
        &cluster.nodes[&NodeId(4)].net,
        "every attempt refused",
        |s| s.handshakes_rejected == attempts as u64,
    )
    .await;
    let stats = cluster.stats(4);
    assert_eq!(
        stats.handshakes_unauthenticated + stats.handshakes_rate_limited,
        attempts as u64
    );
    assert_eq!(stats.connects, connects_before, "a real link was replaced");
    assert!(connected_to(
        &cluster.nodes[&NodeId(4)].net,
        &[NodeId(2), NodeId(3)]
    ));
    cluster.still_serves(14).await;
}

#[tokio::test]
async fn credentials_of_another_node_are_refused_at_start() {
    let ca = TestCa::new("test");
    let creds = ca.issue(NodeId(2));
    let err = PeerTls::from_pem(
        NodeId(1),
        ca.pem.as_bytes(),
        creds.cert_pem.as_bytes(),
        creds.key_pem.as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not name node 1"), "{err}");
    // A key that is not the certificate's.
    let other = ca.issue(NodeId(1));
    let mismatched = PeerTls::from_pem(
        NodeId(1),
        ca.pem.as_bytes(),
        other.cert_pem.as_bytes(),
        creds.key_pem.as_bytes(),
    );
    assert!(mismatched.is_err());
    // A certificate from another CA than the one given.
    let stranger = TestCa::new("test").issue(NodeId(1));
    let foreign = PeerTls::from_pem(
        NodeId(1),
        ca.pem.as_bytes(),
        stranger.cert_pem.as_bytes(),
        stranger.key_pem.as_bytes(),
    )
    .unwrap_err();
    assert!(
        foreign
            .to_string()
            .contains("not valid for node-1.test.synod"),
        "{foreign}"
    );
    // And a TLS identity given to the wrong node's config.
    let (_listeners, addrs) = bind(&[1, 2]).await;
    let cfg = config_with(NodeId(2), &addrs, ca.security(NodeId(1)));
    assert!(cfg.validate().is_err());
    let insecure_outside = {
        let mut cfg = config_with(NodeId(1), &addrs, PeerSecurity::InsecureLoopback);
        cfg.peers
            .insert(NodeId(2), "10.0.0.2:7000".parse().unwrap());
        cfg
    };
    let err = insecure_outside.validate().unwrap_err();
    assert!(err.to_string().contains("loopback only"), "{err}");
}

/// What insecure links give up: the same forged handshake and Accept that a
/// TLS node refuses is delivered, as node 1's message, to the replica.
#[tokio::test]
async fn insecure_links_deliver_a_forged_message_to_the_replica() {
    capture_warnings();
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let _absent = listeners.remove(&NodeId(1)).unwrap();
    let two = NodeId(2);
    let mut node = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    let mut stream = TcpStream::connect(addrs[&two]).await.unwrap();
    stream.write_all(&forged_bytes(1, 2)).await.unwrap();
    let got = recv(&mut node).await;
    assert_eq!((got.from, instance_of(&got)), (NodeId(1), FORGED));
    assert_eq!(node.net.stats().handshakes_rejected, 0);
    node.net.shutdown().await;
}
