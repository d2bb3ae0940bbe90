//! Keepalives and stalled links: a quiet but live connection stays up (both
//! sides send empty frames), a connection on which nothing arrives for
//! `idle_timeout` is closed so that a fresh one replaces it. (Found by
//! `synod chaos`: after a partition healed, a stalled TCP connection waited
//! out its retransmission backoff for seconds, and an election with it.)
//!
//! Node 2 is real; node 1 is played by a raw socket.

use crate::common;

use common::*;
use std::time::{Duration, Instant};
use synod_core::NodeId;
use synod_net::{HANDSHAKE_PAYLOAD_BYTES, MAGIC, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_millis(600);

async fn connect_raw() -> (Node, TcpStream) {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    drop(listeners.remove(&NodeId(1)));
    let listener = listeners.remove(&NodeId(2)).expect("listener");
    let mut cfg = config(NodeId(2), &addrs);
    cfg.keepalive_interval = Duration::from_millis(100);
    cfg.idle_timeout = IDLE;
    let node = start(cfg, listener).await;
    let mut raw = TcpStream::connect(addrs[&NodeId(2)])
        .await
        .expect("connect");
    let mut hello = (HANDSHAKE_PAYLOAD_BYTES as u32).to_le_bytes().to_vec();
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello.extend_from_slice(&CLUSTER.to_le_bytes());
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&2u32.to_le_bytes());
    raw.write_all(&hello).await.expect("send handshake");
    let mut reply = vec![0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
    raw.read_exact(&mut reply).await.expect("handshake reply");
    wait_stats(&node.net, "raw peer connected", |s| s.connected[&NodeId(1)]).await;
    (node, raw)
}

#[tokio::test]
async fn a_quiet_link_that_sends_keepalives_stays_up() {
    let (node, mut raw) = connect_raw().await;
    let until = Instant::now() + 3 * IDLE;
    let mut received = Vec::new();
    let mut buf = [0u8; 64];
    while Instant::now() < until {
        raw.write_all(&[0, 0, 0, 0]).await.expect("send keepalive");
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), raw.read(&mut buf)).await
        {
            assert!(n > 0, "the node closed a live connection");
            received.extend_from_slice(&buf[..n]);
        }
        assert!(node.net.stats().connected[&NodeId(1)]);
    }
    // The node's side sent keepalives too: empty frames only.
    assert!(received.len() >= 8, "no keepalives from the node");
    assert!(received.iter().all(|b| *b == 0), "{received:?}");
}

#[tokio::test]
async fn a_link_on_which_nothing_arrives_is_closed() {
    let (node, mut raw) = connect_raw().await;
    let started = Instant::now();
    // Read (keepalives) but send nothing, like a peer behind a stalled link.
    expect_closed(&mut raw).await;
    let took = started.elapsed();
    assert!(
        took >= IDLE / 2,
        "closed after {took:?}, before the idle timeout"
    );
    wait_stats(&node.net, "raw peer disconnected", |s| {
        !s.connected[&NodeId(1)]
    })
    .await;
}
