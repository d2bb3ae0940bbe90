//! Keyspace notifications over the wire (issue 16): the setting is
//! node-local, events come from the apply on every node, and `expired`
//! fires without any write, from the leader's expiry sweep.

use crate::resp_cluster;

use resp_cluster::{cluster, error, ok, Client};
use synod_resp::Reply;

fn bulk(text: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

fn pmessage(channel: &str, payload: &str) -> Option<Reply> {
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
