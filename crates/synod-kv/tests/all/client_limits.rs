//! The RESP port under abuse (issue 13): each limit on what one client, or
//! all of them, may make the server hold, driven over raw sockets against a
//! node in this process. Each test says what the old code did.

use crate::resp_cluster;

use resp_cluster::{cluster, error, info_field, ok, wait_for_count, Client};
use std::time::Duration;
use synod_resp::Reply;

const PASSWORD: &str = "s3cret";

/// Before AUTH, a 60 MB argument is refused on its `$` header with Redis'
/// words and the connection closed: nothing of it is buffered. (Before, it
/// was buffered whole, then answered NOAUTH: ten such clients held 620 MB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_big_bulk_is_refused_on_its_header() {
    let c = cluster(1, |cfg| cfg.password = Some(PASSWORD.into()), None).await;
    let mut client = Client::connect(c.resp[0]).await;
    // Only the header and a few bytes of the payload: the reply must come
    // without the rest (the old code waited for all 60 MB).
    client
        .send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$60000000\r\nxxxx")
        .await
        .expect("send");
    assert_eq!(
        client.reply().await,
        Some(error("ERR Protocol error: unauthenticated bulk length"))
    );
    assert!(client.closed().await);
    let mut client = Client::connect(c.resp[0]).await;
    client.send_raw(b"*11\r\n").await.expect("send");
    assert_eq!(
        client.reply().await,
        Some(error(
            "ERR Protocol error: unauthenticated multibulk length"
        ))
    );
    assert!(client.closed().await);
    wait_for_count(
        c.resp[0],
        Some(PASSWORD),
        "client_unauthenticated_limit_disconnections",
        2,
    )
    .await;
    // Once authenticated, the same shapes are ordinary requests.
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(
        client.call(&[b"AUTH", PASSWORD.as_bytes()]).await,
        Some(ok())
    );
    let big = vec![b'v'; 20_000];
    assert_eq!(client.call(&[b"SET", b"k", &big]).await, Some(ok()));
    let many: Vec<&[u8]> = [&b"MSET"[..]]
        .into_iter()
        .chain(std::iter::repeat_n(&b"a"[..], 12))
        .collect();
    assert_eq!(client.call(&many).await, Some(ok()));
}

/// An argument longer than the value limit is refused from its declared
/// length, before its payload arrives, with Redis' proto-max-bulk-len
/// error. (Before, it was buffered whole and then refused.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_limit_is_refused_from_its_declared_length() {
    let c = cluster(1, |cfg| cfg.value_bytes_max = 1 << 20, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    client
        .send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n")
        .await
        .expect("send");
    assert_eq!(
        client.reply().await,
        Some(error("ERR Protocol error: invalid bulk length"))
    );
    assert!(client.closed().await);
    // At the limit, it is a value like any other.
    let mut client = Client::connect(c.resp[0]).await;
    let value = vec![b'v'; 1 << 20];
    assert_eq!(client.call(&[b"SET", b"k", &value]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"STRLEN", b"k"]).await,
        Some(Reply::Integer(1 << 20))
    );
}

/// A request larger than the client's query-buffer limit is refused on the
/// header that makes it so, and counted as a query-buffer disconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_query_buffer_limit_closes_the_client() {
    let c = cluster(1, |cfg| cfg.query_buffer_bytes_max = 256 << 10, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    // Two 200 KiB values: each fits the value limit, not both the buffer.
    let value = vec![b'v'; 200 << 10];
    let mut request = b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n".to_vec();
    request.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n$1\r\nb\r\n");
    request.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    client.send_raw(&request).await.expect("send");
    let Some(Reply::Error(text)) = client.reply().await else {
        panic!("an error reply");
    };
    assert!(
        text.starts_with("ERR Protocol error: too big request"),
        "{text}"
    );
    assert!(client.closed().await);
    wait_for_count(
        c.resp[0],
        None,
        "client_query_buffer_limit_disconnections",
        1,
    )
    .await;
}

/// Many clients each holding a large partial request: past the global cap
/// the ones growing their buffers are closed, and a small client is still
/// served. (Before, there was no global cap: 40 clients held 2.4 GB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_query_buffer_cap_closes_big_clients_and_serves_small_ones() {
    let c = cluster(1, |cfg| cfg.query_buffer_total_bytes_max = 4 << 20, None).await;
    let chunk = vec![b'v'; 1 << 20];
    let mut big = Vec::new();
    for _ in 0..8 {
        let mut client = Client::connect(c.resp[0]).await;
        // A 10 MB value of which 2 MiB are sent.
        client
            .send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n")
            .await
            .expect("send");
        for _ in 0..2 {
            // The server may already have closed this client.
            let _ = client.send_raw(&chunk).await;
        }
        big.push(client);
    }
    wait_for_count(
        c.resp[0],
        None,
        "client_query_buffer_total_limit_disconnections",
        4,
    )
    .await;
    a_small_client_is_served(c.resp[0]).await;
    drop(big);
}

/// Clients that pipeline big reads and never read the replies: past the
/// global cap on unread replies the next such client is closed, and a
/// small client is still served. (Before, each kept up to its own 256 MiB
/// limit for as long as it stayed connected: six held 1.5 GB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_on_unread_replies_closes_big_readers_and_serves_small_ones() {
    let c = cluster(1, |cfg| cfg.output_buffer_total_bytes_max = 30 << 20, None).await;
    let mut setter = Client::connect(c.resp[0]).await;
    let value = vec![b'v'; 1 << 20];
    assert_eq!(setter.call(&[b"SET", b"big", &value]).await, Some(ok()));
    let mut pipeline = Vec::new();
    for _ in 0..20 {
        pipeline.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(c.resp[0]).await;
        // 20 MiB of replies, never read.
        let _ = client.send_raw(&pipeline).await;
        readers.push(client);
    }
    wait_for_count(
        c.resp[0],
        None,
        "client_output_buffer_total_limit_disconnections",
        1,
    )
    .await;
    a_small_client_is_served(c.resp[0]).await;
    drop(readers);
}

/// Past --max-clients, a connection gets Redis' error and is closed, and
/// INFO counts it as `rejected_connections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_clients_are_refused_and_counted() {
    let c = cluster(1, |cfg| cfg.clients_max = 3, None).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(c.resp[0]).await;
        assert_eq!(
            client.call(&[b"PING"]).await,
            Some(Reply::Simple("PONG".into()))
        );
        held.push(client);
    }
    let mut excess = Client::connect(c.resp[0]).await;
    assert_eq!(
        excess.reply().await,
        Some(error("ERR max number of clients reached"))
    );
    assert!(excess.closed().await);
    // INFO through a held connection (a new one would be refused too).
    let Some(Reply::Bulk(text) | Reply::Verbatim(text)) = held[0].call(&[b"INFO", b"stats"]).await
    else {
        panic!("INFO answers text");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(text.contains("rejected_connections:1\r\n"), "{text}");
    // CONFIG GET reports the limit in force (it said 10000 whatever it was).
    assert_eq!(
        held[0].call(&[b"CONFIG", b"GET", b"maxclients"]).await,
        Some(Reply::Array(vec![
            Reply::Bulk("maxclients".into()),
            Reply::Bulk("3".into())
        ]))
    );
    drop(held);
    // The slots come back.
    wait_for_count(c.resp[0], None, "total_connections_received", 5).await;
}

/// With an idle timeout, a client that sends nothing is closed and counted;
/// one that keeps talking is not. (Before, there was no timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_after_the_timeout() {
    let c = cluster(
        1,
        |cfg| cfg.idle_timeout = Some(Duration::from_millis(300)),
        None,
    )
    .await;
    let mut idle = Client::connect(c.resp[0]).await;
    let mut busy = Client::connect(c.resp[0]).await;
    for _ in 0..8 {
        assert_eq!(
            busy.call(&[b"PING"]).await,
            Some(Reply::Simple("PONG".into()))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(idle.closed().await);
    assert_eq!(
        busy.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
    let closed = info_field(c.resp[0], None, "client_idle_timeout_disconnections").await;
    assert!(closed >= 1, "{closed}");
}

/// Replies past the output limit close the client rather than pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_over_the_output_limit_close_the_client() {
    let c = cluster(1, |cfg| cfg.output_buffer_bytes_max = 256 << 10, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let value = vec![b'v'; 100 << 10];
    assert_eq!(client.call(&[b"SET", b"k", &value]).await, Some(ok()));
    // One GET fits; five pipelined (500 KiB of replies) do not.
    assert_eq!(
        client.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk(value.clone().into()))
    );
    let mut pipeline = Vec::new();
    for _ in 0..5 {
        pipeline.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
    client.send_raw(&pipeline).await.expect("send");
    assert!(client.closed().await);
    wait_for_count(
        c.resp[0],
        None,
        "client_output_buffer_limit_disconnections",
        1,
    )
    .await;
}

/// SETRANGE past --max-value-bytes is refused before proposing, with
/// Redis' proto-max-bulk-len words; within it, and with an empty patch, it
/// runs. (Before, `SETRANGE big 536870900 x` made every replica allocate
/// 512 MB, whatever the value limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setrange_past_the_value_limit_is_refused() {
    let c = cluster(1, |cfg| cfg.value_bytes_max = 1 << 20, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let too_long = Some(error(
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
    ));
    assert_eq!(
        client
            .call(&[b"SETRANGE", b"big", b"536870900", b"x"])
            .await,
        too_long
    );
    assert_eq!(
        client.call(&[b"SETRANGE", b"big", b"1048575", b"xy"]).await,
        too_long
    );
    assert_eq!(
        client.call(&[b"EXISTS", b"big"]).await,
        Some(Reply::Integer(0))
    );
    // In a transaction, refused when queued: EXEC aborts.
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"SETRANGE", b"big", b"2000000", b"x"]).await,
        too_long
    );
    assert!(matches!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Error(e)) if e.starts_with("EXECABORT")
    ));
    assert_eq!(
        client.call(&[b"SETRANGE", b"big", b"1048575", b"x"]).await,
        Some(Reply::Integer(1 << 20))
    );
    assert_eq!(
        client.call(&[b"SETRANGE", b"big", b"536870900", b""]).await,
        Some(Reply::Integer(1 << 20))
    );
}

/// With a password set, a client that has not authenticated within
/// `auth_timeout` is closed and counted, even with no idle timeout and
/// while it keeps sending pre-AUTH commands; one that authenticated in time
/// stays. (Before, unauthenticated idle sockets held client slots forever:
/// 10,000 from one process locked every client out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_authenticate_in_time_are_closed() {
    let c = cluster(
        1,
        |cfg| {
            cfg.password = Some(PASSWORD.into());
            cfg.auth_timeout = Duration::from_millis(1000);
        },
        None,
    )
    .await;
    let mut silent = Client::connect(c.resp[0]).await;
    let mut chatty = Client::connect(c.resp[0]).await;
    let mut authed = Client::connect(c.resp[0]).await;
    assert_eq!(
        authed.call(&[b"AUTH", PASSWORD.as_bytes()]).await,
        Some(ok())
    );
    // PINGs before AUTH do not extend the deadline.
    for _ in 0..3 {
        assert_eq!(
            chatty.call(&[b"PING"]).await,
            Some(Reply::Simple("PONG".into()))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(silent.closed().await);
    assert!(chatty.closed().await);
    wait_for_count(
        c.resp[0],
        Some(PASSWORD),
        "client_auth_timeout_disconnections",
        2,
    )
    .await;
    assert_eq!(
        authed.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}

/// Pub/sub (issue 16): PUBLISH goes through the log, so subscribers on two
/// nodes get every message in the same order — the log's — however the
/// publishers on two other connections race. PUBLISH answers with the
/// receivers on its own node, as Redis Cluster does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_nodes_get_the_same_messages_in_the_same_order() {
    let c = cluster(3, |_| {}, None).await;
    let bulk = |text: &str| Reply::Bulk(bytes::Bytes::copy_from_slice(text.as_bytes()));
    // Node 1: RESP2, a channel.
    let mut one = Client::connect(c.resp[0]).await;
    assert_eq!(
        one.call(&[b"SUBSCRIBE", b"news"]).await,
        Some(Reply::Array(vec![
            bulk("subscribe"),
            bulk("news"),
            Reply::Integer(1)
        ]))
    );
    // Subscribed in RESP2: only (un)subscribe, PING (in its pub/sub form)...
    assert_eq!(
        one.call(&[b"GET", b"k"]).await,
        Some(error(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))
    );
    assert_eq!(
        one.call(&[b"PING"]).await,
        Some(Reply::Array(vec![bulk("pong"), bulk("")]))
    );
    // Node 2: RESP3, a pattern: pushes.
    let mut two = Client::connect(c.resp[1]).await;
    assert!(matches!(
        two.call(&[b"HELLO", b"3"]).await,
        Some(Reply::Map(_))
    ));
    assert_eq!(
        two.call(&[b"PSUBSCRIBE", b"n*"]).await,
        Some(Reply::Push(vec![
            bulk("psubscribe"),
            bulk("n*"),
            Reply::Integer(1)
        ]))
    );
    // Two publishers, on nodes 2 and 3, at once.
    const EACH: usize = 20;
    let publisher = |node: usize, tag: &'static str| {
        let addr = c.resp[node];
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut receivers = Vec::new();
            for i in 0..EACH {
                let message = format!("{tag}{i}");
                match client
                    .call(&[b"PUBLISH", b"news", message.as_bytes()])
                    .await
                {
                    Some(Reply::Integer(n)) => receivers.push(n),
                    other => panic!("PUBLISH answered {other:?}"),
                }
            }
            receivers
        })
    };
    let (on_two, on_three) = (publisher(1, "b"), publisher(2, "c"));
    // Each counts the subscribers of its own node: one on node 2, none on 3.
    assert_eq!(on_two.await.expect("publisher"), vec![1; EACH]);
    assert_eq!(on_three.await.expect("publisher"), vec![0; EACH]);
    let mut seen_one = Vec::new();
    let mut seen_two = Vec::new();
    for _ in 0..2 * EACH {
        match one.reply().await {
            Some(Reply::Array(items)) => match items.as_slice() {
                [kind, channel, Reply::Bulk(payload)] => {
                    assert_eq!((kind, channel), (&bulk("message"), &bulk("news")));
                    seen_one.push(payload.clone());
                }
                other => panic!("not a message: {other:?}"),
            },
            other => panic!("not a message: {other:?}"),
        }
        match two.reply().await {
            Some(Reply::Push(items)) => match items.as_slice() {
                [kind, pattern, channel, Reply::Bulk(payload)] => {
                    assert_eq!(
                        (kind, pattern, channel),
                        (&bulk("pmessage"), &bulk("n*"), &bulk("news"))
                    );
                    seen_two.push(payload.clone());
                }
                other => panic!("not a pmessage: {other:?}"),
            },
            other => panic!("not a pmessage: {other:?}"),
        }
    }
    assert_eq!(seen_one, seen_two, "both nodes deliver in the log's order");
    // Each publisher's messages in the order it sent them.
    for tag in ["b", "c"] {
        let mine: Vec<String> = seen_one
            .iter()
            .map(|payload| String::from_utf8_lossy(payload).into_owned())
            .filter(|payload| payload.starts_with(tag))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(mine, sent);
    }
    // PUBSUB is node-local; leaving answers with what is left.
    let mut three = Client::connect(c.resp[2]).await;
    assert_eq!(
        three.call(&[b"PUBSUB", b"NUMSUB", b"news"]).await,
        Some(Reply::Array(vec![bulk("news"), Reply::Integer(0)]))
    );
    let mut local = Client::connect(c.resp[0]).await;
    assert_eq!(
        local.call(&[b"PUBSUB", b"NUMSUB", b"news"]).await,
        Some(Reply::Array(vec![bulk("news"), Reply::Integer(1)]))
    );
    assert_eq!(
        one.call(&[b"UNSUBSCRIBE"]).await,
        Some(Reply::Array(vec![
            bulk("unsubscribe"),
            bulk("news"),
            Reply::Integer(0)
        ]))
    );
    assert_eq!(
        one.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}

/// A subscriber that stops reading is disconnected once the messages it has
/// not taken pass the pub/sub hard limit (Redis' `client-output-buffer-limit
/// pubsub`), and counted: the node never holds more for it. The publisher
/// and other subscribers carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_disconnected_at_the_limit() {
    let c = cluster(
        1,
        |cfg| {
            cfg.pubsub
                .set_output_limits(256 << 10, 256 << 10, Duration::from_secs(60))
        },
        None,
    )
    .await;
    let mut slow = Client::connect(c.resp[0]).await;
    assert!(matches!(
        slow.call(&[b"SUBSCRIBE", b"c"]).await,
        Some(Reply::Array(_))
    ));
    let mut publisher = Client::connect(c.resp[0]).await;
    let payload = vec![b'x'; 64 << 10];
    // Loopback socket buffers take some MiB before the server's writes
    // block; from then on the queue grows to the limit.
    let mut published = 0;
    while info_field(c.resp[0], None, "client_output_buffer_limit_disconnections").await == 0 {
        assert_eq!(
            publisher.call(&[b"PUBLISH", b"c", &payload]).await,
            Some(Reply::Integer(1))
        );
        published += 1;
        assert!(published < 2_000, "never disconnected");
    }
    // Gone from the registry: the next message reaches nobody.
    assert_eq!(
        publisher.call(&[b"PUBLISH", b"c", b"after"]).await,
        Some(Reply::Integer(0))
    );
    // What it gets is whole messages, then the end.
    let mut read = 0;
    loop {
        match slow.reply().await {
            Some(Reply::Array(items)) => {
                assert_eq!(items.len(), 3);
                read += 1;
            }
            None => break,
            Some(other) => panic!("not a message: {other:?}"),
        }
    }
    assert!(read < published, "read {read} of {published}");
}

/// A new client that writes and reads a small key is served.
async fn a_small_client_is_served(addr: std::net::SocketAddr) {
    let mut small = Client::connect(addr).await;
    assert_eq!(small.call(&[b"SET", b"small", b"1"]).await, Some(ok()));
    assert_eq!(
        small.call(&[b"GET", b"small"]).await,
        Some(Reply::Bulk("1".into()))
    );
}
