//! Connections that end: restarts, replacement by a newer connection, shutdown
//! and dropping the handle.

use crate::common;

use common::*;
use std::time::Duration;
use synod_core::NodeId;
use synod_net::{HANDSHAKE_PAYLOAD_BYTES, MAGIC, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reconnects_and_gets_what_was_queued_for_it() {
    let (mut listeners, addrs) = bind(&[1, 2, 3]).await;
    let (one, two, three) = (NodeId(1), NodeId(2), NodeId(3));
    let node_one = start(config(one, &addrs), listeners.remove(&one).unwrap()).await;
    let node_three = start(config(three, &addrs), listeners.remove(&three).unwrap()).await;
    let node_two = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    wait_until("the mesh is up", || {
        connected_to(&node_one.net, &[two, three]) && connected_to(&node_three.net, &[one, two])
    })
    .await;

    // Node 2 dials 3 and accepts from 1, so both directions of reconnecting run.
    node_two.net.shutdown().await;
    drop(node_two);
    wait_until("both peers notice", || {
        !connected_to(&node_one.net, &[two]) && !connected_to(&node_three.net, &[two])
    })
    .await;

    // While 2 is down, messages for it wait in the senders' queues.
    for instance in 0..10 {
        node_one.net.send(message(one, two, instance)).unwrap();
        node_three
            .net
            .send(message(three, two, 100 + instance))
            .unwrap();
    }
    assert_eq!(node_one.net.stats().queued[&two], 10);

    let listener = TcpListener::bind(addrs[&two])
        .await
        .expect("the old address is free again");
    let mut node_two = start(config(two, &addrs), listener).await;
    let mut got: Vec<u64> = Vec::new();
    for _ in 0..20 {
        got.push(instance_of(&recv(&mut node_two).await));
    }
    got.sort();
    let expected: Vec<u64> = (0..10).chain(100..110).collect();
    assert_eq!(got, expected);

    // And the restarted node's messages reach both peers.
    let (mut node_one, mut node_three) = (node_one, node_three);
    node_two.net.send(message(two, one, 7)).unwrap();
    node_two.net.send(message(two, three, 8)).unwrap();
    assert_eq!(instance_of(&recv(&mut node_one).await), 7);
    assert_eq!(instance_of(&recv(&mut node_three).await), 8);
    for node in [&node_one, &node_two, &node_three] {
        wait_stats(&node.net, "one connection per pair again", |s| {
            s.connections_open == 2
        })
        .await;
    }
    for node in [node_one, node_two, node_three] {
        node.net.shutdown().await;
    }
}

/// The handshake a member sends when it dials `to`.
fn hello(from: u32, to: u32) -> Vec<u8> {
    let mut frame = (HANDSHAKE_PAYLOAD_BYTES as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&CLUSTER.to_le_bytes());
    frame.extend_from_slice(&from.to_le_bytes());
    frame.extend_from_slice(&to.to_le_bytes());
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_from_a_peer_replaces_the_old_one() {
    // Member 1 is played by raw sockets; node 2 accepts from it.
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let mut cfg = config(two, &addrs);
    // This test is about replacement; the rate limit has its own test below.
    cfg.peer_accept_interval_min = Duration::ZERO;
    let mut node = start(cfg, listeners.remove(&two).unwrap()).await;

    let mut first = TcpStream::connect(addrs[&two]).await.unwrap();
    first.write_all(&hello(1, 2)).await.unwrap();
    let mut reply = [0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
    first.read_exact(&mut reply).await.unwrap();
    assert_eq!(
        &reply[..],
        &hello(2, 1)[..],
        "the acceptor answers with its own handshake"
    );
    wait_until("the first connection is up", || {
        connected_to(&node.net, &[one])
    })
    .await;

    // Member 1 "restarts" without its old socket closing (a half-open connection).
    let mut second = TcpStream::connect(addrs[&two]).await.unwrap();
    second.write_all(&hello(1, 2)).await.unwrap();
    second.read_exact(&mut reply).await.unwrap();
    expect_closed(&mut first).await;
    wait_stats(&node.net, "the old connection is gone", |s| {
        s.connects == 2 && s.connections_open == 1
    })
    .await;

    // The new connection carries traffic both ways.
    let frame = {
        let payload = synod_core::codec::Encode::to_bytes(&message(one, two, 5));
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    };
    second.write_all(&frame).await.unwrap();
    assert_eq!(instance_of(&recv(&mut node).await), 5);
    node.net.send(message(two, one, 6)).unwrap();
    let mut prefix = [0u8; 4];
    second.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
    second.read_exact(&mut payload).await.unwrap();
    let decoded =
        <synod_core::Message as synod_core::codec::Decode>::from_bytes(payload.into()).unwrap();
    assert_eq!(decoded, message(two, one, 6));
    node.net.shutdown().await;
    expect_closed(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_listener_and_every_connection() {
    let (listeners, addrs) = bind(&[1, 2]).await;
    let nodes = start_all(listeners, &addrs).await;
    let (one, two) = (NodeId(1), NodeId(2));
    wait_until("connected", || connected_to(&nodes[&one].net, &[two])).await;
    nodes[&two].net.shutdown().await;
    let stats = nodes[&two].net.stats();
    assert_eq!(stats.connections_open, 0);
    assert!(!stats.connected[&one]);
    assert!(
        TcpStream::connect(addrs[&two]).await.is_err(),
        "the listener is closed"
    );
    wait_until("the peer notices", || {
        !connected_to(&nodes[&one].net, &[two])
    })
    .await;
    // A second shutdown is harmless.
    nodes[&two].net.shutdown().await;
    nodes[&one].net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_transport() {
    let (listeners, addrs) = bind(&[1, 2]).await;
    let mut nodes = start_all(listeners, &addrs).await;
    let (one, two) = (NodeId(1), NodeId(2));
    wait_until("connected", || connected_to(&nodes[&one].net, &[two])).await;
    let clone = nodes[&two].net.clone();
    drop(nodes.remove(&two));
    // A clone keeps it running...
    clone.send(message(two, one, 1)).unwrap();
    assert_eq!(instance_of(&recv(nodes.get_mut(&one).unwrap()).await), 1);
    drop(clone);
    // ...and dropping the last one stops it.
    wait_until("the peer notices", || {
        !connected_to(&nodes[&one].net, &[two])
    })
    .await;
    nodes[&one].net.shutdown().await;
}

#[tokio::test]
async fn a_reconnect_storm_does_not_cut_the_live_link() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let mut cfg = config(two, &addrs);
    cfg.peer_accept_interval_min = Duration::from_secs(60);
    let node = start(cfg, listeners.remove(&two).unwrap()).await;

    let mut first = TcpStream::connect(addrs[&two]).await.unwrap();
    first.write_all(&hello(1, 2)).await.unwrap();
    let mut reply = [0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
    first.read_exact(&mut reply).await.unwrap();
    wait_until("the first connection is up", || {
        connected_to(&node.net, &[one])
    })
    .await;
    // Fifty more connections as the same member, at once: each is refused
    // without an answer, and the first link stays.
    for _ in 0..50 {
        let mut again = TcpStream::connect(addrs[&two]).await.unwrap();
        again.write_all(&hello(1, 2)).await.unwrap();
        expect_closed(&mut again).await;
    }
    wait_stats(&node.net, "every reconnect refused", |s| {
        s.handshakes_rate_limited == 50
    })
    .await;
    let stats = node.net.stats();
    assert_eq!((stats.connects, stats.connections_open), (1, 1));
    // The first link still carries traffic.
    node.net.send(message(two, one, 7)).unwrap();
    let mut prefix = [0u8; 4];
    // Skip keepalives (empty frames) until the message's frame.
    while u32::from_le_bytes(prefix) == 0 {
        first.read_exact(&mut prefix).await.unwrap();
    }
    node.net.shutdown().await;
}
