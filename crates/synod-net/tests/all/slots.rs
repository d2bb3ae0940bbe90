//! Outsiders cannot keep the members out by holding handshake slots: a silent
//! socket is dropped after the first-byte timeout, and the addresses of the
//! members that dial a node have pending-handshake slots of their own.
//!
//! On loopback every member dials from 127.0.0.1; the outsiders here come
//! from 127.0.0.2 to 127.0.0.17 (all loopback on Linux), sixteen addresses of
//! eight sockets each: twice the outsiders' table of 64.

use crate::common;

use common::pki::TestCa;
use common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use synod_core::NodeId;
use synod_net::HANDSHAKE_TIMEOUT_DEFAULT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Outsider addresses: 127.0.0.2 ..= 127.0.0.17.
const OUTSIDER_ADDRESSES: u8 = 16;
/// Sockets per outsider address (the per-source limit).
const SOCKETS_PER_ADDRESS: usize = 8;

/// From `source`, keeps one socket to `target` open: it sends one byte (the
/// start of a TLS record, so it is not silent) and then nothing, and is
/// reopened as soon as the node closes it.
async fn hold_a_slot(source: Ipv4Addr, target: SocketAddr) {
    loop {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        let Ok(mut stream) = socket.connect(target).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.write_all(&[0x16]).await;
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_holding_every_slot_do_not_keep_a_member_out() {
    capture_warnings();
    let ca = TestCa::new("test");
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let one_listener = listeners.remove(&one).unwrap();
    let node_two = start(
        config_with(two, &addrs, ca.security(two)),
        listeners.remove(&two).unwrap(),
    )
    .await;
    // The outsiders take every outsider slot (and are refused for more).
    let mut attack = JoinSet::new();
    for last in 2..2 + OUTSIDER_ADDRESSES {
        for _ in 0..SOCKETS_PER_ADDRESS {
            attack.spawn(hold_a_slot(Ipv4Addr::new(127, 0, 0, last), addrs[&two]));
        }
    }
    wait_stats(&node_two.net, "the outsider slots are full", |s| {
        s.handshakes_rate_limited >= 64
    })
    .await;
    // Node 1 (re)starts and dials node 2 from 127.0.0.1 while they hold them.
    let started = Instant::now();
    let mut node_one = start(config_with(one, &addrs, ca.security(one)), one_listener).await;
    wait_until("node 1 is linked to node 2", || {
        connected_to(&node_two.net, &[one]) && connected_to(&node_one.net, &[two])
    })
    .await;
    let took = started.elapsed();
    // Well within the handshake timeout the outsiders' slots are held for.
    assert!(
        took < HANDSHAKE_TIMEOUT_DEFAULT / 2,
        "the member got in only after {took:?}"
    );
    node_two.net.send(message(two, one, 7)).unwrap();
    assert_eq!(instance_of(&recv(&mut node_one).await), 7);
    attack.abort_all();
    node_one.net.shutdown().await;
    node_two.net.shutdown().await;
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn a_silent_socket_is_dropped_long_before_the_handshake_timeout() {
    capture_warnings();
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let _absent = listeners.remove(&NodeId(1)).unwrap();
    let two = NodeId(2);
    let node = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addrs[&two]).await.unwrap();
    expect_closed(&mut silent).await;
    let took = started.elapsed();
    assert!(
        took < HANDSHAKE_TIMEOUT_DEFAULT / 2,
        "a silent socket held its slot for {took:?}"
    );
    wait_stats(&node.net, "the silent socket counted", |s| {
        s.handshakes_rejected == 1
    })
    .await;
    assert!(warned("sent nothing within 500ms of connecting"));
    node.net.shutdown().await;
}
