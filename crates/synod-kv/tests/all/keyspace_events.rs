//! Keyspace notifications over the wire (issue 16): the setting is
//! node-local, events come from the apply on every node, and `expired`
//! fires without any write, from the leader's expiry sweep.

use crate::resp_cluster;

use resp_cluster::{cluster, error, ok, Client};
use synod_resp::Reply;

fn bulk(text: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

pub(crate) fn pmessage(channel: &str, payload: &str) -> Option<Reply> {
    Some(Reply::Array(vec![
        bulk("pmessage"),
        bulk("*"),
        bulk(channel),
        bulk(payload),
    ]))
}

async fn psubscribe_all(client: &mut Client<tokio::net::TcpStream>) {
    assert_eq!(
        client.call(&[b"PSUBSCRIBE", b"*"]).await,
        Some(Reply::Array(vec![
            bulk("psubscribe"),
            bulk("*"),
            Reply::Integer(1)
        ]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_is_per_node_and_events_follow_the_log() {
    let c = cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    assert_eq!(
        admin
            .call(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"])
            .await,
        Some(ok())
    );
    assert_eq!(
        admin
            .call(&[b"CONFIG", b"GET", b"notify-keyspace-events"])
            .await,
        Some(Reply::Array(vec![
            bulk("notify-keyspace-events"),
            bulk("AKE")
        ]))
    );
    assert_eq!(
        admin
            .call(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Kq"])
            .await,
        Some(error(
            "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'. (got 'Kq')"
        ))
    );
    // Node 1 has events on; node 2 keeps the default (off).
    let mut one = Client::connect(c.resp[0]).await;
    let mut two = Client::connect(c.resp[1]).await;
    psubscribe_all(&mut one).await;
    psubscribe_all(&mut two).await;
    // The writes go through node 3: node 1's apply emits the events.
    let mut writer = Client::connect(c.resp[2]).await;
    assert_eq!(writer.call(&[b"SET", b"foo", b"bar"]).await, Some(ok()));
    assert_eq!(
        writer.call(&[b"RPUSH", b"list", b"a"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(writer.call(&[b"RPOP", b"list"]).await, Some(bulk("a")));
    assert_eq!(
        writer.call(&[b"PUBLISH", b"marker", b"end"]).await,
        Some(Reply::Integer(0))
    );
    for (channel, payload) in [
        ("__keyspace@0__:foo", "set"),
        ("__keyevent@0__:set", "foo"),
        ("__keyspace@0__:list", "rpush"),
        ("__keyevent@0__:rpush", "list"),
        ("__keyspace@0__:list", "rpop"),
        ("__keyevent@0__:rpop", "list"),
        ("__keyspace@0__:list", "del"),
        ("__keyevent@0__:del", "list"),
        ("marker", "end"),
    ] {
        assert_eq!(one.reply().await, pmessage(channel, payload));
    }
    // Node 2 got the PUBLISH only: its setting is off.
    assert_eq!(two.reply().await, pmessage("marker", "end"));
}

/// A key past its expiry is removed by the leader's sweep, a point of the
/// log, with no other command: its `expired` event fires on every node
/// that has the class on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_fires_without_a_write() {
    let c = cluster(3, |_| {}, None).await;
    let mut subscribers = Vec::new();
    for addr in &c.resp {
        let mut admin = Client::connect(*addr).await;
        assert_eq!(
            admin
                .call(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Ex"])
                .await,
            Some(ok())
        );
        let mut subscriber = Client::connect(*addr).await;
        psubscribe_all(&mut subscriber).await;
        subscribers.push(subscriber);
    }
    let mut writer = Client::connect(c.resp[1]).await;
    assert_eq!(
        writer.call(&[b"PSETEX", b"foo", b"100", b"1"]).await,
        Some(ok())
    );
    // `reply` waits up to `REPLY_WAIT` for it.
    for subscriber in &mut subscribers {
        assert_eq!(
            subscriber.reply().await,
            pmessage("__keyevent@0__:expired", "foo")
        );
    }
    assert_eq!(
        writer.call(&[b"EXISTS", b"foo"]).await,
        Some(Reply::Integer(0))
    );
}

/// The expiry sweep must not propose in a loop when its clock runs ahead of
/// the time its sweeps are stamped with. Here the node stamps with a clock
/// an hour behind the system clock the server's sweep task reads (in
/// production: a wall clock stepped ahead after the node started, which
/// the stamp bound ignores, or a node started with its clock behind and
/// corrected later): a key with a 10-minute TTL is "due" by the system
/// clock, but every sweep applies at a log time before its expiry and
/// removes nothing, so the leader proposes an empty sweep every 100 ms for
/// the next 10 minutes (and forever while such keys keep coming).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_does_not_loop_when_the_log_clock_lags_its_clock() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use synod::{Node, NodeConfig, NodeId, WallClock};
    use synod_kv::{ServerConfig, Store};

    let dir = tempfile::tempdir().expect("tempdir");
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peers = BTreeMap::from([(NodeId(1), peer.local_addr().expect("addr"))]);
    let mut cfg = NodeConfig::new(NodeId(1), peers, dir.path().join("n1")).expect("member");
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg.request_timeout = Duration::from_secs(10);
    cfg.wall_clock = WallClock::from_fn(|| {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        system - 3_600_000
    });
    let store = Store::new();
    let pubsub = store.pubsub();
    let blocked_clients = store.blocked_clients();
    let acl = store.acl();
    let node = Arc::new(
        Node::start_with_listener(cfg, store, peer)
            .await
            .expect("starts"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server_cfg = ServerConfig::new(addr);
    server_cfg.acl = acl;
    server_cfg.pubsub = pubsub;
    server_cfg.blocked_clients = blocked_clients;
    let (_stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = Arc::clone(&node);
    tokio::spawn(async move {
        synod_kv::serve_listeners(Some(listener), None, server_cfg, serving, &mut stop_rx).await
    });
    let mut writer = Client::connect(addr).await;
    let mut set = None;
    for _ in 0..50 {
        set = writer.call(&[b"SET", b"k", b"v", b"PX", b"600000"]).await;
        if set == Some(ok()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(set, Some(ok()));
    let before = node.status().applied_end.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = node.status().applied_end.0;
    assert!(
        after - before <= 3,
        "{} instances applied in 2 s with no client command: the sweep proposes in a loop",
        after - before
    );
    assert_eq!(
        writer.call(&[b"EXISTS", b"k"]).await,
        Some(Reply::Integer(1))
    );
}
