//! The peer set changes while the transport runs (`Net::set_peers`): added
//! members are linked, removed ones are cut off and refused, a moved one is
//! redialed at its new address, and the links that did not change carry on
//! without reconnecting.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use synod_core::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const ONE: NodeId = NodeId(1);
const TWO: NodeId = NodeId(2);
const THREE: NodeId = NodeId(3);

/// `addrs` without `id`.
fn without(addrs: &BTreeMap<NodeId, SocketAddr>, id: NodeId) -> BTreeMap<NodeId, SocketAddr> {
    let mut rest = addrs.clone();
    rest.remove(&id);
    rest
}

/// Sends `from -> to` with `instance` and waits until `to` receives it.
async fn delivered(nodes: &mut BTreeMap<NodeId, Node>, from: NodeId, to: NodeId, instance: u64) {
    nodes[&from].net.send(message(from, to, instance)).unwrap();
    let got = recv(nodes.get_mut(&to).unwrap()).await;
    assert_eq!((got.from, instance_of(&got)), (from, instance));
}

/// Nodes 1 and 2 start knowing each other and exchange messages; node 3
/// starts knowing only itself; then every node is given the set {1, 2, 3}.
/// Returns once the mesh of three is up, with every address.
async fn grow_two_into_three() -> (BTreeMap<NodeId, Node>, BTreeMap<NodeId, SocketAddr>) {
    let (mut listeners, all) = bind(&[1, 2, 3]).await;
    let first_two = without(&all, THREE);
    let mut nodes = BTreeMap::new();
    for id in [ONE, TWO] {
        let listener = listeners.remove(&id).unwrap();
        nodes.insert(id, start(config(id, &first_two), listener).await);
    }
    let alone = [(THREE, all[&THREE])].into();
    let listener = listeners.remove(&THREE).unwrap();
    nodes.insert(THREE, start(config(THREE, &alone), listener).await);

    delivered(&mut nodes, ONE, TWO, 1).await;
    delivered(&mut nodes, TWO, ONE, 2).await;
    assert_eq!(nodes[&ONE].net.peers(), without(&first_two, ONE));
    assert_eq!(nodes[&ONE].net.stats().connects, 1);
    assert!(nodes[&THREE].net.peers().is_empty());

    // Node 3 first: were 1 or 2 to dial it before it knew them, it would
    // admit them as strangers (see `tests/strangers.rs`) and replace those
    // links once it learned them, which would cost the counts below a
    // connection. From a thread outside the runtime: the dial loops of
    // added peers are spawned on the transport's own runtime.
    let three = nodes[&THREE].net.clone();
    let everyone = all.clone();
    std::thread::spawn(move || three.set_peers(everyone))
        .join()
        .unwrap();
    nodes[&ONE].net.set_peers(all.clone());
    nodes[&TWO].net.set_peers(all.clone());

    for node in nodes.values() {
        let others: Vec<NodeId> = all.keys().copied().filter(|id| *id != node.id).collect();
        assert_eq!(node.net.peers(), without(&all, node.id));
        wait_until(&format!("{} is linked to {others:?}", node.id), || {
            connected_to(&node.net, &others)
        })
        .await;
    }
    (nodes, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_member_is_linked_both_ways_and_the_old_link_stays() {
    let (mut nodes, all) = grow_two_into_three().await;
    let mut instance = 10;
    for (from, to) in [(ONE, THREE), (THREE, ONE), (TWO, THREE), (THREE, TWO)] {
        delivered(&mut nodes, from, to, instance).await;
        instance += 1;
    }
    // The 1-2 link was never cut: node 1 made one connection to 2 and then
    // one to 3, node 2 accepted one from 1 and made one to 3.
    for id in [ONE, TWO] {
        let stats = nodes[&id].net.stats();
        assert_eq!(
            (stats.connects, stats.connections_open),
            (2, 2),
            "{stats:?}"
        );
        assert_eq!(stats.connected.len(), 2, "{stats:?}");
    }
    delivered(&mut nodes, ONE, TWO, instance).await;
    // The same set again changes nothing.
    nodes[&TWO].net.set_peers(all.clone());
    delivered(&mut nodes, TWO, ONE, instance + 1).await;
    assert_eq!(nodes[&TWO].net.stats().connects, 2);
    for node in nodes.values() {
        node.net.shutdown().await;
    }
}

/// The handshake a member sends when it dials `to`.
fn hello(from: NodeId, to: NodeId) -> Vec<u8> {
    hello_frame(CLUSTER, from.0, to.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_cut_off_and_refused_while_others_carry_on() {
    let (mut nodes, all) = grow_two_into_three().await;
    let connects_before = nodes[&ONE].net.stats().connects;
    let rejected_before = nodes[&ONE].net.stats().handshakes_rejected;

    // Node 1 (which dialed 3) drops 3. Its own entry, at another address,
    // is ignored.
    let mut smaller = without(&all, THREE);
    smaller.insert(ONE, "127.0.0.1:1".parse().unwrap());
    nodes[&ONE].net.set_peers(smaller);
    assert_eq!(nodes[&ONE].net.peers(), without(&without(&all, THREE), ONE));
    let stats = nodes[&ONE].net.stats();
    assert!(!stats.connected.contains_key(&THREE), "{stats:?}");
    assert!(!stats.queued.contains_key(&THREE), "{stats:?}");

    // 1 -> 3 is unroutable now, and counted as such.
    let unroutable = stats.dropped_unroutable;
    nodes[&ONE].net.send(message(ONE, THREE, 20)).unwrap();
    assert_eq!(nodes[&ONE].net.stats().dropped_unroutable, unroutable + 1);
    // The link is closed, and node 1 does not dial 3 again.
    wait_until("node 3 sees its link to 1 closed", || {
        !connected_to(&nodes[&THREE].net, &[ONE])
    })
    .await;
    wait_stats(&nodes[&ONE].net, "node 1 keeps only its link to 2", |s| {
        s.connections_open == 1
    })
    .await;

    // 3 -> 1: node 3 still counts 1 as a member, but nothing carries its
    // messages: they wait in its queue.
    for instance in 0..5 {
        nodes[&THREE]
            .net
            .send(message(THREE, ONE, 30 + instance))
            .unwrap();
    }
    assert_eq!(nodes[&THREE].net.stats().queued[&ONE], 5);
    // And a handshake claiming to be 3 is refused by node 1 like any
    // non-member's, before any answer.
    let mut claimed = TcpStream::connect(all[&ONE]).await.unwrap();
    claimed.write_all(&hello(THREE, ONE)).await.unwrap();
    expect_closed(&mut claimed).await;
    wait_stats(&nodes[&ONE].net, "the claim to be 3 is refused", |s| {
        s.handshakes_rejected == rejected_before + 1
    })
    .await;

    // The 1-2 link carries on, never reconnected.
    delivered(&mut nodes, ONE, TWO, 40).await;
    delivered(&mut nodes, TWO, ONE, 41).await;
    let stats = nodes[&ONE].net.stats();
    assert_eq!(stats.connects, connects_before, "{stats:?}");
    assert_eq!(stats.connected.get(&TWO), Some(&true), "{stats:?}");
    // Nothing from 3 reached node 1 meanwhile.
    assert!(nodes.get_mut(&ONE).unwrap().inbound.try_recv().is_err());
    assert_eq!(nodes[&THREE].net.stats().queued[&ONE], 5);
    for node in nodes.values() {
        node.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_dialer_is_disconnected_and_its_redials_are_refused() {
    let (mut nodes, all) = grow_two_into_three().await;
    let rejected_before = nodes[&THREE].net.stats().handshakes_rejected;
    let rate_limited_before = nodes[&THREE].net.stats().handshakes_rate_limited;

    // Node 3 accepted 2's connection; it drops 2, and 2 keeps redialing.
    nodes[&THREE].net.set_peers(without(&all, TWO));
    wait_until("node 2 sees its link to 3 closed", || {
        !connected_to(&nodes[&TWO].net, &[THREE])
    })
    .await;
    wait_stats(&nodes[&THREE].net, "2's redials are refused", |s| {
        s.handshakes_rejected >= rejected_before + 2
    })
    .await;
    let stats = nodes[&THREE].net.stats();
    assert_eq!(
        stats.handshakes_rate_limited, rate_limited_before,
        "refused as a non-member, not as too frequent: {stats:?}"
    );
    assert_eq!(stats.connections_open, 1, "{stats:?}");
    assert!(!connected_to(&nodes[&TWO].net, &[THREE]));

    // 2 -> 3 waits in 2's queue; 3 -> 2 is unroutable.
    nodes[&TWO].net.send(message(TWO, THREE, 50)).unwrap();
    assert_eq!(nodes[&TWO].net.stats().queued[&THREE], 1);
    let unroutable = stats.dropped_unroutable;
    nodes[&THREE].net.send(message(THREE, TWO, 51)).unwrap();
    assert_eq!(nodes[&THREE].net.stats().dropped_unroutable, unroutable + 1);
    // Taken back, 2 is linked again and what waited is delivered.
    nodes[&THREE].net.set_peers(all.clone());
    let got = recv(nodes.get_mut(&THREE).unwrap()).await;
    assert_eq!((got.from, instance_of(&got)), (TWO, 50));
    delivered(&mut nodes, THREE, TWO, 52).await;
    // The 1-3 link was untouched throughout.
    assert_eq!(nodes[&ONE].net.stats().connects, 2);
    for node in nodes.values() {
        node.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readdressed_member_is_dialed_at_its_new_address() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let mut nodes = BTreeMap::new();
    for id in [ONE, TWO] {
        let listener = listeners.remove(&id).unwrap();
        nodes.insert(id, start(config(id, &addrs), listener).await);
    }
    delivered(&mut nodes, ONE, TWO, 1).await;

    // Node 2 restarts on another port; node 1 keeps dialing the old one.
    let old = nodes.remove(&TWO).unwrap();
    old.net.shutdown().await;
    drop(old);
    wait_until("node 1 sees 2 gone", || {
        !connected_to(&nodes[&ONE].net, &[TWO])
    })
    .await;
    nodes[&ONE].net.send(message(ONE, TWO, 2)).unwrap();
    assert_eq!(nodes[&ONE].net.stats().queued[&TWO], 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut moved = addrs.clone();
    moved.insert(TWO, listener.local_addr().unwrap());
    assert_ne!(moved[&TWO], addrs[&TWO]);
    nodes.insert(TWO, start(config(TWO, &moved), listener).await);

    // A new address is a new peer: a fresh (empty) queue and dial loop.
    nodes[&ONE].net.set_peers(moved.clone());
    assert_eq!(nodes[&ONE].net.peers(), without(&moved, ONE));
    assert_eq!(nodes[&ONE].net.stats().queued[&TWO], 0);
    delivered(&mut nodes, ONE, TWO, 3).await;
    delivered(&mut nodes, TWO, ONE, 4).await;
    let stats = nodes[&ONE].net.stats();
    assert_eq!(
        (stats.connections_open, stats.connected.get(&TWO)),
        (1, Some(&true)),
        "{stats:?}"
    );
    // What was queued for the old address went with its queue.
    assert!(nodes.get_mut(&TWO).unwrap().inbound.try_recv().is_err());
    for node in nodes.values() {
        node.net.shutdown().await;
    }
    // A change after shutdown is harmless.
    nodes[&ONE].net.set_peers(addrs);
}

#[tokio::test]
async fn insecure_links_refuse_members_off_loopback() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let node = start(config(ONE, &addrs), listeners.remove(&ONE).unwrap()).await;
    // Refused as `NetConfig::validate` refuses them at start: node 3 is not
    // added, and node 2, moved off loopback, leaves the set rather than
    // keep its old address.
    let mut outside = addrs.clone();
    outside.insert(TWO, "192.0.2.2:7000".parse().unwrap());
    outside.insert(THREE, "192.0.2.3:7000".parse().unwrap());
    node.net.set_peers(outside);
    assert!(node.net.peers().is_empty(), "{:?}", node.net.peers());
    assert!(node.net.stats().connected.is_empty());
    node.net.set_peers(addrs.clone());
    assert_eq!(node.net.peers(), without(&addrs, ONE));
    node.net.shutdown().await;
}
