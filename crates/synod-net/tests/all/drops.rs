//! What `send` drops, and what it keeps: unroutable messages and full queues
//! are dropped and counted; oversized messages are refused with an error, an
//! error-level log line and a count; queued messages wait for the peer.

use crate::common;

use common::*;
use synod_core::NodeId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_are_dropped_and_counted() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let two = NodeId(2);
    // Member 1 never starts; node 2 only waits for it to dial.
    let node = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    node.net.send(message(two, NodeId(9), 0)).unwrap(); // unknown member
    node.net.send(message(two, two, 0)).unwrap(); // this node
    node.net.send(message(NodeId(1), NodeId(1), 0)).unwrap(); // not from this node
    let stats = node.net.stats();
    assert_eq!(stats.dropped_unroutable, 3, "{stats:?}");
    assert_eq!(stats.queued[&NodeId(1)], 0);
    node.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_excess_and_counts_it() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let mut cfg = config(two, &addrs);
    cfg.send_queue_max = 4;
    // Member 1 is down, so nothing drains node 2's queue for it.
    let node = start(cfg, listeners.remove(&two).unwrap()).await;
    for instance in 0..10 {
        node.net.send(message(two, one, instance)).unwrap();
    }
    let stats = node.net.stats();
    assert_eq!(stats.queued[&one], 4, "{stats:?}");
    assert_eq!(stats.dropped_queue_full, 6, "{stats:?}");
    assert_eq!(stats.dropped_unroutable, 0);
    node.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_are_sent_once_the_peer_comes_up() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let node_two = start(config(two, &addrs), listeners.remove(&two).unwrap()).await;
    for instance in 0..5 {
        node_two.net.send(message(two, one, instance)).unwrap();
    }
    assert_eq!(node_two.net.stats().queued[&one], 5);
    let mut node_one = start(config(one, &addrs), listeners.remove(&one).unwrap()).await;
    for instance in 0..5 {
        assert_eq!(instance_of(&recv(&mut node_one).await), instance);
    }
    wait_stats(&node_two.net, "the queue drained", |s| s.queued[&one] == 0).await;
    node_one.net.shutdown().await;
    node_two.net.shutdown().await;
}

/// Regression (issue 12): the writer used to drop an oversized message with a
/// warning, in its own task, and `send` said nothing: a value that could
/// never reach a peer stalled the log silently. Now `send` refuses it: an
/// error for the caller, a count, and an error-level log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_counted_and_logged_and_the_connection_stays_up() {
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let (one, two) = (NodeId(1), NodeId(2));
    let mut nodes = Vec::new();
    for id in [one, two] {
        let mut cfg = config(id, &addrs);
        cfg.frame_bytes_max = 1024;
        nodes.push(start(cfg, listeners.remove(&id).unwrap()).await);
    }
    let [mut node_one, node_two] = <[Node; 2]>::try_from(nodes).ok().unwrap();
    wait_until("connected", || connected_to(&node_two.net, &[one])).await;
    node_two.net.send(message(two, one, 1)).unwrap();
    let errors = ErrorLog::default();
    let refused = tracing::subscriber::with_default(errors.subscriber(), || {
        node_two.net.send(big_message(two, one, 2, 2048))
    });
    let err = refused.expect_err("an oversized message is refused");
    assert_eq!((err.kind, err.to, err.max), ("accept", one, 1024));
    assert!(err.bytes > 2048, "{err}");
    let logged = errors.lines();
    assert!(
        logged.len() == 1 && logged[0].contains("frame limit"),
        "one error-level line: {logged:?}"
    );
    node_two.net.send(message(two, one, 3)).unwrap();
    assert_eq!(instance_of(&recv(&mut node_one).await), 1);
    assert_eq!(instance_of(&recv(&mut node_one).await), 3);
    let stats = node_two.net.stats();
    assert_eq!(stats.dropped_too_large, 1, "{stats:?}");
    assert_eq!(
        stats.connects, 1,
        "the connection was not closed: {stats:?}"
    );
    assert_eq!(node_one.net.stats().bad_frames, 0);
    node_one.net.shutdown().await;
    node_two.net.shutdown().await;
}

/// Collects the error-level events logged while it is the default subscriber.
#[derive(Clone, Default)]
struct ErrorLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl ErrorLog {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(self.clone())
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        if let Ok(mut lines) = self.0.lock() {
            lines.push(text.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_a_taken_address_and_a_broken_config() {
    let (listeners, addrs) = bind(&[1]).await;
    let cfg = config(NodeId(1), &addrs);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    // The listener in `listeners` still holds the port.
    let taken = synod_net::Net::start(cfg.clone(), tx.clone()).await;
    assert!(
        matches!(taken, Err(synod_net::NetError::Bind { .. })),
        "{taken:?}"
    );
    drop(listeners);
    let mut broken = cfg;
    broken.send_queue_max = 0;
    let refused = synod_net::Net::start(broken, tx).await;
    assert!(
        matches!(refused, Err(synod_net::NetError::InvalidConfig(_))),
        "{refused:?}"
    );
}

/// A listener handed in replaces `cfg.listen`, which `validate` checked: one
/// on another interface is refused for insecure links as an address outside
/// loopback in the config is (it would serve unauthenticated links there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_outside_loopback_is_refused_for_insecure_links() {
    let (_listeners, addrs) = bind(&[1, 2]).await;
    let cfg = config(NodeId(1), &addrs);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let outside = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let refused = synod_net::Net::start_with_listener(cfg, outside, tx).await;
    match refused {
        Err(synod_net::NetError::InvalidConfig(text)) => {
            assert!(text.contains("loopback only"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}
