//! A healthy mesh: messages flow both ways over exactly one connection per pair,
//! in order, with batching, big frames and inbound backpressure.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use synod_core::NodeId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_messages_over_one_connection_per_pair() {
    let (listeners, addrs) = bind(&[1, 2, 3]).await;
    let mut nodes = start_all(listeners, &addrs).await;
    let ids: Vec<NodeId> = addrs.keys().copied().collect();
    const PER_PAIR: u64 = 200;

    for from in &ids {
        for to in ids.iter().filter(|to| *to != from) {
            for instance in 0..PER_PAIR {
                nodes[from].net.send(message(*from, *to, instance)).unwrap();
            }
        }
    }

    for node in nodes.values_mut() {
        // Per sender, messages arrive in the order they were sent: one
        // connection, one queue.
        let mut next: BTreeMap<NodeId, u64> = BTreeMap::new();
        for _ in 0..PER_PAIR * 2 {
            let msg = recv(node).await;
            assert_eq!(msg.to, node.id);
            let expected = next.entry(msg.from).or_insert(0);
            assert_eq!(instance_of(&msg), *expected, "order from {}", msg.from);
            *expected += 1;
        }
        assert!(next.values().all(|n| *n == PER_PAIR), "{next:?}");
        assert!(node.inbound.try_recv().is_err(), "no duplicates");
    }

    for node in nodes.values() {
        let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != node.id).collect();
        wait_stats(&node.net, "every frame is counted", |s| {
            s.frames_sent == PER_PAIR * 2
        })
        .await;
        let stats = node.net.stats();
        assert!(connected_to(&node.net, &others), "{stats:?}");
        // One connection per pair: each node takes part in two pairs, and
        // neither side opened a second one.
        assert_eq!(stats.connections_open, 2, "{stats:?}");
        assert_eq!(stats.connects, 2, "{stats:?}");
        assert_eq!(stats.frames_received, PER_PAIR * 2, "{stats:?}");
        assert_eq!(stats.bytes_received, stats.bytes_sent, "symmetric traffic");
        assert_eq!(stats.dropped_queue_full + stats.dropped_unroutable, 0);
        assert_eq!(stats.bad_frames + stats.handshakes_rejected, 0);
        assert!(stats.queued.values().all(|q| *q == 0), "{stats:?}");
    }

    for node in nodes.values() {
        node.net.shutdown().await;
        assert_eq!(node.net.stats().connections_open, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_and_small_messages_arrive_intact() {
    let (listeners, addrs) = bind(&[1, 2]).await;
    let mut nodes = start_all(listeners, &addrs).await;
    let (one, two) = (NodeId(1), NodeId(2));
    // Several MiB-sized frames among small ones: exercises batching, reads
    // that end mid-frame, and buffers that grow and are released.
    let mut sent = Vec::new();
    for instance in 0..40 {
        let msg = if instance % 10 == 3 {
            big_message(two, one, instance, 3 << 20)
        } else {
            big_message(two, one, instance, instance as usize * 7)
        };
        sent.push(msg.clone());
        nodes[&two].net.send(msg).unwrap();
    }
    let receiver = nodes.get_mut(&one).unwrap();
    for expected in &sent {
        assert_eq!(&recv(receiver).await, expected);
    }
    for node in nodes.values() {
        node.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_channel_slows_the_reader_without_losing_messages() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let mut receiver =
        start_with_inbound(config(one, &addrs), listeners.remove(&one).unwrap(), 1).await;
    let sender = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    const COUNT: u64 = 500;
    for instance in 0..COUNT {
        sender.net.send(message(two, one, instance)).unwrap();
    }
    // Nobody reads yet: the reader waits on the full channel instead of dropping.
    wait_stats(&sender.net, "the sender wrote everything", |s| {
        s.frames_sent == COUNT
    })
    .await;
    assert!(receiver.net.stats().frames_received < COUNT);
    for instance in 0..COUNT {
        assert_eq!(instance_of(&recv(&mut receiver).await), instance);
    }
    assert_eq!(receiver.net.stats().frames_received, COUNT);
    receiver.net.shutdown().await;
    sender.net.shutdown().await;
}
