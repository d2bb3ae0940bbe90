//! Redis behaviours checked over the wire (stop 70): what a blocked
//! connection writes while it waits, CLIENT REPLY's interplay with RESET
//! and INFO commandstats (subcommands counted as `container|sub`), CONFIG
//! GET and SET with several parameters.

use crate::resp_cluster;

use resp_cluster::{cluster, info_field, ok, Client};
use std::time::Duration;
use synod_resp::Reply;
use tokio::net::TcpStream;

fn bulk(text: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

/// A connection past its first request (which waits for a read round of
/// its own, the implicit login's barrier) on node `node`.
async fn ready_client(c: &resp_cluster::Cluster, node: usize) -> Client<TcpStream> {
    let mut client = Client::connect(c.resp[node]).await;
    assert_eq!(client.call(&[b"GET", b"warm"]).await, Some(Reply::Null));
    client
}

/// Turns `client` into a RESP3 connection subscribed to `channel`.
async fn subscribe_resp3(client: &mut Client<TcpStream>, channel: &[u8]) {
    assert!(matches!(
        client.call(&[b"HELLO", b"3"]).await,
        Some(Reply::Map(_))
    ));
    assert!(matches!(
        client.call(&[&b"SUBSCRIBE"[..], channel]).await,
        Some(Reply::Push(_))
    ));
}

/// The text of INFO `section`.
async fn info_text(client: &mut Client<TcpStream>, section: &[u8]) -> String {
    match client.call(&[b"INFO", section]).await {
        Some(Reply::Bulk(text)) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("INFO answered {other:?}"),
    }
}

/// The replies to the requests pipelined before a blocking command go out
/// while it waits, as Redis writes them before it blocks; before, they sat
/// in the batch's output until the block ended (for ever with timeout 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_before_a_blocking_command_go_out_while_it_waits() {
    let c = cluster(3, |_| {}, None).await;
    for node in [0, 2] {
        let mut blocked = ready_client(&c, node).await;
        blocked
            .send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$5\r\nBLPOP\r\n$4\r\nlist\r\n$1\r\n0\r\n")
            .await
            .expect("sent");
        assert_eq!(blocked.reply().await, Some(ok()));
        assert_eq!(blocked.reply().await, Some(bulk("v")));
        let mut pusher = ready_client(&c, 1).await;
        assert_eq!(
            pusher.call(&[b"RPUSH", b"list", b"x"]).await,
            Some(Reply::Integer(1))
        );
        assert_eq!(
            blocked.reply().await,
            Some(Reply::Array(vec![bulk("list"), bulk("x")]))
        );
    }
}

/// A subscribed RESP3 connection blocked in BLPOP gets the messages
/// published meanwhile at once, as Redis writes them; before, they waited
/// for the block to end. The pop's reply still comes, after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_resp3_subscriber_gets_messages_while_it_waits() {
    let c = cluster(3, |_| {}, None).await;
    let mut sub = ready_client(&c, 0).await;
    subscribe_resp3(&mut sub, b"ch").await;
    sub.send(&[b"BLPOP", b"list", b"0"]).await.expect("sent");
    let mut publisher = ready_client(&c, 1).await;
    for message in ["m1", "m2"] {
        // Published through another node: the count is that node's.
        assert!(matches!(
            publisher
                .call(&[b"PUBLISH", b"ch", message.as_bytes()])
                .await,
            Some(Reply::Integer(_))
        ));
        assert_eq!(
            sub.reply().await,
            Some(Reply::Push(vec![
                bulk("message"),
                bulk("ch"),
                bulk(message)
            ]))
        );
    }
    assert_eq!(
        publisher.call(&[b"RPUSH", b"list", b"x"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        sub.reply().await,
        Some(Reply::Array(vec![bulk("list"), bulk("x")]))
    );
    assert_eq!(
        sub.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}

/// A blocked RESP3 subscriber that reads nothing is closed at the pub/sub
/// hard limit while it waits, not left open (with its messages dropped)
/// for as long as it blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_subscriber_that_reads_nothing_is_closed_at_the_limit() {
    let c = cluster(
        1,
        |cfg| {
            cfg.pubsub
                .set_output_limits(256 << 10, 256 << 10, Duration::from_secs(60))
        },
        None,
    )
    .await;
    let mut slow = ready_client(&c, 0).await;
    subscribe_resp3(&mut slow, b"c").await;
    slow.send(&[b"BLPOP", b"list", b"0"]).await.expect("sent");
    let mut publisher = ready_client(&c, 0).await;
    let payload = vec![b'x'; 64 << 10];
    let mut published = 0;
    while info_field(c.resp[0], None, "client_output_buffer_limit_disconnections").await == 0 {
        assert_eq!(
            publisher.call(&[b"PUBLISH", b"c", &payload]).await,
            Some(Reply::Integer(1))
        );
        published += 1;
        assert!(published < 2_000, "never disconnected");
    }
    // Whole messages, then the end (the block never answered).
    loop {
        match slow.reply().await {
            Some(Reply::Push(items)) => assert_eq!(items.len(), 3),
            None => break,
            Some(other) => panic!("not a message: {other:?}"),
        }
    }
    // Its wait ended with it.
    let clients = info_text(&mut publisher, b"clients").await;
    assert!(clients.contains("blocked_clients:0"), "{clients}");
}

/// A blocked RESP3 subscriber that stops reading its messages (below the
/// pub/sub limits) still has its pop served: the messages' write does not
/// hold the blocked command still (review of 372e9ec, high: its wake was
/// never tried, the push stayed in the list, and every write of the node
/// waited a second for that wake to be served). As in Redis, the push is
/// popped for it before the pusher's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_hold_its_blocked_pop() {
    let c = cluster(1, |_| {}, None).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let mut slow = Client::new(socket.connect(c.resp[0]).await.expect("connect"));
    assert_eq!(slow.call(&[b"GET", b"warm"]).await, Some(Reply::Null));
    subscribe_resp3(&mut slow, b"ch").await;
    slow.send(&[b"BLPOP", b"fk", b"0"]).await.expect("sent");
    let mut publisher = ready_client(&c, 0).await;
    // 6 MiB: more than the sockets hold, below the soft (8 MiB) and hard
    // (32 MiB) limits.
    let payload = vec![b'x'; 256 << 10];
    for _ in 0..24 {
        assert_eq!(
            publisher.call(&[b"PUBLISH", b"ch", &payload]).await,
            Some(Reply::Integer(1))
        );
    }
    assert_eq!(
        publisher.call(&[b"LPUSH", b"fk", b"v1"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        publisher.call(&[b"LLEN", b"fk"]).await,
        Some(Reply::Integer(0))
    );
}

/// A slow RESP3 subscriber blocked in BLPOP, `count` messages of 256 KiB
/// published to it (more than the sockets hold, below the limits), its
/// writes then stuck; and a publisher on the same node.
async fn stuck_subscriber(
    c: &resp_cluster::Cluster,
    key: &[u8],
    count: usize,
) -> (Client<TcpStream>, Client<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let mut slow = Client::new(socket.connect(c.resp[0]).await.expect("connect"));
    assert_eq!(slow.call(&[b"GET", b"warm"]).await, Some(Reply::Null));
    subscribe_resp3(&mut slow, b"ch").await;
    slow.send(&[b"BLPOP", key, b"0"]).await.expect("sent");
    let mut publisher = ready_client(c, 0).await;
    let payload = vec![b'x'; 256 << 10];
    for _ in 0..count {
        assert_eq!(
            publisher.call(&[b"PUBLISH", b"ch", &payload]).await,
            Some(Reply::Integer(1))
        );
    }
    (slow, publisher)
}

/// `blocked_clients` of INFO clients.
async fn blocked_clients(client: &mut Client<TcpStream>) -> u64 {
    let text = info_text(client, b"clients").await;
    text.lines()
        .find_map(|line| line.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no blocked_clients in {text}"))
}

/// A blocked RESP3 subscriber whose messages' write is stuck, and which
/// then closes its side (FIN), is gone at once, as in Redis: its BLPOP no
/// longer pops, and the next push stays in the list (review of caf46e9: the
/// close went unseen while the write was stuck, and the push was popped
/// for nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_that_closes_pops_nothing() {
    use tokio::io::AsyncWriteExt;
    let c = cluster(1, |_| {}, None).await;
    let (mut slow, mut publisher) = stuck_subscriber(&c, b"ck", 24).await;
    assert_eq!(blocked_clients(&mut publisher).await, 1);
    slow.stream.shutdown().await.expect("FIN sent");
    let mut waited = 0;
    while blocked_clients(&mut publisher).await != 0 {
        waited += 1;
        assert!(waited < 200, "the close was not seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        publisher.call(&[b"LPUSH", b"ck", b"v"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        publisher.call(&[b"LLEN", b"ck"]).await,
        Some(Reply::Integer(1))
    );
}

/// The messages published before the push that serves a stuck subscriber's
/// BLPOP reach it before the pop's reply, those after it after, as in Redis
/// (review of caf46e9: the queue behind the write in progress went out
/// after the reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_the_serving_push_go_before_the_reply() {
    let c = cluster(1, |_| {}, None).await;
    let (mut slow, mut publisher) = stuck_subscriber(&c, b"ok", 24).await;
    for (args, reply) in [
        (
            &[&b"PUBLISH"[..], b"ch", b"marker-before"][..],
            Reply::Integer(1),
        ),
        (&[&b"LPUSH"[..], b"ok", b"v"][..], Reply::Integer(1)),
        (
            &[&b"PUBLISH"[..], b"ch", b"marker-after"][..],
            Reply::Integer(1),
        ),
    ] {
        assert_eq!(publisher.call(args).await, Some(reply));
    }
    let mut seen = Vec::new();
    loop {
        match slow.reply().await {
            Some(Reply::Push(items)) => match items.last() {
                Some(Reply::Bulk(payload)) if payload.len() == 256 << 10 => {
                    seen.push("big".to_string())
                }
                Some(Reply::Bulk(payload)) => {
                    let marker = String::from_utf8_lossy(payload).into_owned();
                    let last = marker == "marker-after";
                    seen.push(marker);
                    if last {
                        break;
                    }
                }
                other => panic!("not a message: {other:?}"),
            },
            Some(Reply::Array(popped)) => {
                assert_eq!(popped, vec![bulk("ok"), bulk("v")]);
                seen.push("reply".to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut expected = vec!["big".to_string(); 24];
    expected.extend(["marker-before", "reply", "marker-after"].map(String::from));
    assert_eq!(seen, expected);
}

/// RESET right after CLIENT REPLY SKIP is the request skipped: nothing is
/// written for it, as in Redis (its skip is not undone; OFF is), and the
/// connection answers again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_client_reply_skip_is_skipped() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = ready_client(&c, 0).await;
    client
        .send_raw(b"CLIENT REPLY SKIP\r\nRESET\r\nPING\r\nCLIENT REPLY OFF\r\nRESET\r\nECHO e\r\n")
        .await
        .expect("sent");
    assert_eq!(client.reply().await, Some(Reply::Simple("PONG".into())));
    assert_eq!(client.reply().await, Some(Reply::Simple("RESET".into())));
    assert_eq!(client.reply().await, Some(bulk("e")));
    // A subcommand Redis does not have is counted nowhere, as in Redis.
    assert!(matches!(
        client.call(&[b"CONFIG", b"FOO"]).await,
        Some(Reply::Error(_))
    ));
    let stats = info_text(&mut client, b"commandstats").await;
    // Both RESETs ran; so did the CLIENT REPLYs, which answer nothing.
    assert!(stats.contains("cmdstat_reset:calls=2,"), "{stats}");
    // Under the subcommand, as Redis 7 counts container commands.
    assert!(stats.contains("cmdstat_client|reply:calls=2,"), "{stats}");
    assert!(!stats.contains("cmdstat_client:"), "{stats}");
    assert!(!stats.contains("cmdstat_config"), "{stats}");
}

/// CONFIG GET answers each parameter once, however many of its patterns
/// match it; CONFIG SET refuses a parameter named twice (an alias counts
/// as its parameter), setting none, with Redis 7's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_names_each_parameter_once() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = ready_client(&c, 0).await;
    let Some(Reply::Array(flat)) = client
        .call(&[b"CONFIG", b"GET", b"maxmemory", b"max*", b"MAXMEMORY"])
        .await
    else {
        panic!("CONFIG GET did not answer an array");
    };
    let names: Vec<&Reply> = flat.iter().step_by(2).collect();
    assert_eq!(names, vec![&bulk("maxmemory"), &bulk("maxclients")]);
    for (pairs, named) in [
        (
            &[&b"lua-time-limit"[..], b"10", b"Lua-Time-Limit", b"20"][..],
            "Lua-Time-Limit",
        ),
        (
            &[
                &b"busy-reply-threshold"[..],
                b"10",
                b"lua-time-limit",
                b"20",
            ][..],
            "lua-time-limit",
        ),
        (
            &[
                &b"hash-max-ziplist-entries"[..],
                b"10",
                b"hash-max-listpack-entries",
                b"20",
            ][..],
            "hash-max-listpack-entries",
        ),
    ] {
        let mut request: Vec<&[u8]> = vec![b"CONFIG", b"SET"];
        request.extend_from_slice(pairs);
        assert_eq!(
            client.call(&request).await,
            Some(Reply::Error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{named}') - duplicate parameter"
            )))
        );
    }
    // Nothing was set.
    assert_eq!(
        client.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        Some(Reply::Array(vec![bulk("lua-time-limit"), bulk("5000")]))
    );
}

/// A SUBSCRIBE without a channel is refused before it runs, as Redis does:
/// INFO commandstats counts it in `rejected_calls`, not as a failed call
/// (review of 372e9ec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_without_channels_is_a_rejected_call() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = ready_client(&c, 0).await;
    assert!(matches!(
        client.call(&[b"SUBSCRIBE"]).await,
        Some(Reply::Error(e)) if e.contains("wrong number of arguments")
    ));
    assert!(matches!(
        client.call(&[b"PSUBSCRIBE"]).await,
        Some(Reply::Error(_))
    ));
    let mut info = ready_client(&c, 0).await;
    let stats = info_text(&mut info, b"commandstats").await;
    assert!(
        stats.contains(
            "cmdstat_subscribe:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
        ),
        "{stats}"
    );
    assert!(
        stats.contains(
            "cmdstat_psubscribe:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
        ),
        "{stats}"
    );
}
