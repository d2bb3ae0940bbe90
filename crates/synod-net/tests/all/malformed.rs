//! Hostile or broken input: every case closes only the offending connection
//! with a warning and a count, the node keeps serving its real peers, and
//! nothing panics.
//!
//! Membership: 1 and 5 are played by raw sockets, 2, 3 and 4 are real nodes.
//! Node 4 accepts from 1, 2 and 3, and dials 5.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use synod_core::codec::Encode;
use synod_core::{Message, NodeId};
use synod_net::{NetStats, HANDSHAKE_PAYLOAD_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn handshake(cluster: u64, from: u32, to: u32) -> Vec<u8> {
    hello_frame(cluster, from, to)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

fn message_frame(msg: &Message) -> Vec<u8> {
    frame(&msg.to_bytes())
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    addrs: BTreeMap<NodeId, std::net::SocketAddr>,
    /// Member 5's address, where the real nodes dial a raw listener.
    impostor: Option<TcpListener>,
}

/// Starts nodes 2, 3 and 4. Without an impostor, nothing listens at member 5's
/// address, so dialing it is refused and counts no handshake failure.
async fn cluster(with_impostor: bool) -> Cluster {
    capture_warnings();
    let (mut listeners, addrs) = bind(&[1, 2, 3, 4, 5]).await;
    drop(listeners.remove(&NodeId(1)));
    let impostor = listeners.remove(&NodeId(5)).filter(|_| with_impostor);
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let mut cfg = config(id, &addrs);
        // Short, so the silent-socket case is quick; still generous for loopback.
        cfg.handshake_timeout = Duration::from_millis(500);
        cfg.frame_bytes_max = 1 << 20;
        // Every refusal logged: the cases below check each line's text, and
        // two share a reason (tests/refusals.rs tests the rate limit).
        cfg.rejected_log_interval = Duration::ZERO;
        nodes.insert(id, start(cfg, listener).await);
    }
    let (two, three, four) = (NodeId(2), NodeId(3), NodeId(4));
    wait_until("the real mesh is up", || {
        connected_to(&nodes[&four].net, &[two, three]) && connected_to(&nodes[&two].net, &[three])
    })
    .await;
    Cluster {
        nodes,
        addrs,
        impostor,
    }
}

impl Cluster {
    fn stats(&self) -> NetStats {
        self.nodes[&NodeId(4)].net.stats()
    }

    /// Real traffic still flows both ways through node 4.
    async fn still_serves_real_peers(&mut self, instance: u64) {
        let (two, four) = (NodeId(2), NodeId(4));
        self.nodes[&two]
            .net
            .send(message(two, four, instance))
            .unwrap();
        self.nodes[&four]
            .net
            .send(message(four, two, instance))
            .unwrap();
        let node_four = self.nodes.get_mut(&four).unwrap();
        assert_eq!(instance_of(&recv(node_four).await), instance);
        let node_two = self.nodes.get_mut(&two).unwrap();
        assert_eq!(instance_of(&recv(node_two).await), instance);
    }

    /// Connects to node 4 as a raw socket and sends `bytes`.
    async fn raw(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(self.addrs[&NodeId(4)]).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream
    }

    /// Connects as member 1 and completes a valid handshake.
    async fn handshaked(&self) -> TcpStream {
        let mut stream = self.raw(&handshake(CLUSTER, 1, 4)).await;
        let mut reply = [0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[..], &handshake(CLUSTER, 4, 1)[..]);
        stream
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.net.shutdown().await;
        }
        assert_eq!(panics(), 0, "something panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_refused() {
    let mut cluster = cluster(false).await;
    let mut rejected = cluster.stats().handshakes_rejected;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "is not a handshake",
        ),
        (
            "huge length",
            vec![0xff; 8],
            "first frame of 4294967295 bytes",
        ),
        (
            "wrong magic",
            frame(b"SYNX\x01\x00 and some more bytes.."),
            "not \"SYND\"",
        ),
        (
            "wrong version",
            frame(b"SYND\x0a\x00 a future layout"),
            "protocol version 10, we speak 9",
        ),
        (
            "wrong cluster",
            handshake(777, 1, 4),
            "sent cluster id 777, we are 42",
        ),
        (
            "higher id dials",
            handshake(CLUSTER, 5, 4),
            "only lower ids than ours (n4) dial us",
        ),
        (
            "wrong target",
            handshake(CLUSTER, 1, 3),
            "expected to reach n3, but we are n4",
        ),
        (
            "silence",
            Vec::new(),
            "sent nothing within 500ms of connecting",
        ),
        (
            "one byte, then silence",
            vec![22],
            "did not finish the handshake within",
        ),
    ];
    for (name, bytes, warning) in cases {
        let mut stream = cluster.raw(&bytes).await;
        expect_closed(&mut stream).await;
        rejected += 1;
        wait_stats(&cluster.nodes[&NodeId(4)].net, name, |s| {
            s.handshakes_rejected == rejected
        })
        .await;
        wait_until(warning, || warned(warning)).await;
        cluster.still_serves_real_peers(rejected).await;
    }
    let stats = cluster.stats();
    assert_eq!(
        stats.connects, 2,
        "real connections were never disturbed: {stats:?}"
    );
    assert_eq!(stats.bad_frames, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_after_the_handshake_close_the_connection() {
    let mut cluster = cluster(false).await;
    let (one, two, four) = (NodeId(1), NodeId(2), NodeId(4));
    let undecodable = frame(&[1, 2, 3]);
    let trailing = {
        let mut payload = message(one, four, 0).to_bytes().to_vec();
        payload.push(0);
        frame(&payload)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "huge length",
            u32::MAX.to_le_bytes().to_vec(),
            "frame of 4294967295 bytes exceeds the limit of 1048576",
        ),
        (
            "over the limit",
            ((1u32 << 20) + 1).to_le_bytes().to_vec(),
            "exceeds the limit",
        ),
        ("undecodable", undecodable, "does not decode"),
        ("trailing bytes", trailing, "trailing bytes"),
        (
            "forged sender",
            message_frame(&message(two, four, 0)),
            "sent a message from n2 on its own connection",
        ),
        (
            "wrong receiver",
            message_frame(&message(one, two, 0)),
            "sent a message for n2, but we are n4",
        ),
    ];
    let mut bad_frames = 0;
    for (name, bytes, warning) in cases {
        let mut stream = cluster.handshaked().await;
        // A valid message first: it is delivered, the bad one after it is not.
        stream
            .write_all(&message_frame(&message(one, four, 1000 + bad_frames)))
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        let node_four = cluster.nodes.get_mut(&four).unwrap();
        assert_eq!(instance_of(&recv(node_four).await), 1000 + bad_frames);
        expect_closed(&mut stream).await;
        bad_frames += 1;
        wait_stats(&cluster.nodes[&four].net, name, |s| {
            s.bad_frames == bad_frames
        })
        .await;
        wait_until(warning, || warned(warning)).await;
        cluster.still_serves_real_peers(bad_frames).await;
    }
    let stats = cluster.stats();
    assert!(
        cluster
            .nodes
            .get_mut(&four)
            .unwrap()
            .inbound
            .try_recv()
            .is_err(),
        "nothing bad was delivered"
    );
    assert_eq!(stats.frames_received, 2 * bad_frames, "{stats:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialer_refuses_a_peer_that_answers_wrongly() {
    let mut cluster = cluster(true).await;
    let impostor = cluster.impostor.take().unwrap();
    // Every real node dials member 5. The impostor answers the first dialer as
    // someone else and the second with the wrong cluster; each dialer warns,
    // counts and redials later.
    let answers = [
        (6, CLUSTER, "answered as n6, but we dialed n5"),
        (5, 1, "sent cluster id 1, we are 42"),
    ];
    for (answer_as, answer_cluster, warning) in answers {
        let (mut stream, _) = tokio::time::timeout(DEADLINE, impostor.accept())
            .await
            .unwrap()
            .unwrap();
        let mut hello = [0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
        stream.read_exact(&mut hello).await.unwrap();
        let dialer = u32::from_le_bytes([hello[18], hello[19], hello[20], hello[21]]);
        assert!((2..=4).contains(&dialer), "dialed by n{dialer}");
        assert_eq!(
            &hello[..],
            &handshake(CLUSTER, dialer, 5)[..],
            "the dialer says whom it expects"
        );
        stream
            .write_all(&handshake(answer_cluster, answer_as, dialer))
            .await
            .unwrap();
        expect_closed(&mut stream).await;
        let dialer_net = &cluster.nodes[&NodeId(dialer)].net;
        wait_stats(dialer_net, warning, |s| s.handshakes_rejected >= 1).await;
        wait_until(warning, || warned(warning)).await;
    }
    for node in cluster.nodes.values() {
        assert!(!node.net.stats().connected[&NodeId(5)]);
    }
    cluster.still_serves_real_peers(1).await;
    cluster.shutdown().await;
}
