//! WATCH/UNWATCH and MULTI through the RESP front end (issue 16): the
//! connection keeps what WATCH read, in the order the client sent its
//! commands (pipelines included), and EXEC sends the check with the
//! transaction.

use crate::resp_cluster;

use resp_cluster::{cluster, error, ok, Client};
use synod_resp::Reply;

fn queued() -> Option<Reply> {
    Some(Reply::Simple("QUEUED".into()))
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_multi_exec_through_the_front_end() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let mut other = Client::connect(c.resp[0]).await;

    // Unchanged: runs, with connection commands answered in their places.
    assert_eq!(client.call(&[b"SET", b"x", b"1"]).await, Some(ok()));
    assert_eq!(client.call(&[b"WATCH", b"x", b"y"]).await, Some(ok()));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"PING"]).await, queued());
    assert_eq!(client.call(&[b"INCR", b"x"]).await, queued());
    assert_eq!(client.call(&[b"ECHO", b"e"]).await, queued());
    assert_eq!(client.call(&[b"SELECT", b"0"]).await, queued());
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(vec![
            Reply::Simple("PONG".into()),
            Reply::Integer(2),
            bulk("e"),
            ok(),
        ]))
    );

    // Changed by another client: nil, nothing ran, and the key is no
    // longer watched afterwards.
    assert_eq!(client.call(&[b"WATCH", b"x"]).await, Some(ok()));
    assert_eq!(other.call(&[b"SET", b"x", b"9"]).await, Some(ok()));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"INCR", b"x"]).await, queued());
    assert_eq!(client.call(&[b"EXEC"]).await, Some(Reply::NullArray));
    assert_eq!(client.call(&[b"GET", b"x"]).await, Some(bulk("9")));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"PING"]).await, queued());
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(vec![Reply::Simple("PONG".into())]))
    );

    // Only PING queued, no data command: the check still runs.
    assert_eq!(client.call(&[b"WATCH", b"x"]).await, Some(ok()));
    assert_eq!(other.call(&[b"DEL", b"x"]).await, Some(Reply::Integer(1)));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"PING"]).await, queued());
    assert_eq!(client.call(&[b"EXEC"]).await, Some(Reply::NullArray));

    // UNWATCH and DISCARD forget.
    assert_eq!(client.call(&[b"WATCH", b"x"]).await, Some(ok()));
    assert_eq!(other.call(&[b"SET", b"x", b"1"]).await, Some(ok()));
    assert_eq!(client.call(&[b"UNWATCH"]).await, Some(ok()));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"INCR", b"x"]).await, queued());
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(vec![Reply::Integer(2)]))
    );

    // Errors: WATCH inside MULTI, arity, SAVE inside MULTI aborts EXEC.
    assert_eq!(
        client.call(&[b"WATCH"]).await,
        Some(error("ERR wrong number of arguments for 'watch' command"))
    );
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"WATCH", b"x"]).await,
        Some(error("ERR WATCH inside MULTI is not allowed"))
    );
    // Arity is checked at queue time (ECHO takes exactly one argument);
    // PING's is "at least none", so `PING a b` is queued and fails at EXEC,
    // as in Redis 7.0.
    assert_eq!(
        client.call(&[b"ECHO"]).await,
        Some(error("ERR wrong number of arguments for 'echo' command"))
    );
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(error(
            "EXECABORT Transaction discarded because of previous errors."
        ))
    );
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"SAVE"]).await,
        Some(error("ERR Command not allowed inside a transaction"))
    );
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(error(
            "EXECABORT Transaction discarded because of previous errors."
        ))
    );
}

/// A pipeline `WATCH; UNWATCH; MULTI; INCR; EXEC` handles its commands in
/// order: the UNWATCH forgets what the WATCH before it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_watch_is_kept_in_order() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let mut other = Client::connect(c.resp[0]).await;
    assert_eq!(client.call(&[b"SET", b"k", b"1"]).await, Some(ok()));
    let mut pipeline = bytes::BytesMut::new();
    for request in [
        &[&b"WATCH"[..], b"k"][..],
        &[b"SET", b"k", b"2"],
        &[b"MULTI"],
        &[b"INCR", b"k"],
        &[b"EXEC"],
        &[b"WATCH", b"k"],
        &[b"UNWATCH"],
        &[b"SET", b"k", b"5"],
        &[b"MULTI"],
        &[b"INCR", b"k"],
        &[b"EXEC"],
    ] {
        synod_resp::write_request(&mut pipeline, request);
    }
    client.send_raw(&pipeline).await.expect("send");
    let expected = [
        Some(ok()),
        Some(ok()),
        Some(ok()),
        queued(),
        // Its own SET after the WATCH changed k.
        Some(Reply::NullArray),
        Some(ok()),
        Some(ok()),
        Some(ok()),
        Some(ok()),
        queued(),
        Some(Reply::Array(vec![Reply::Integer(6)])),
    ];
    for (index, expected) in expected.into_iter().enumerate() {
        assert_eq!(client.reply().await, expected, "reply {index}");
    }
    assert_eq!(other.call(&[b"GET", b"k"]).await, Some(bulk("6")));
}

/// `blocked_clients` from INFO clients of the node behind `client`.
async fn blocked_clients(client: &mut Client<tokio::net::TcpStream>) -> i64 {
    let Some(Reply::Verbatim(text) | Reply::Bulk(text)) = client.call(&[b"INFO", b"clients"]).await
    else {
        panic!("INFO answered something else");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("blocked_clients:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("INFO clients has blocked_clients")
}

/// Waits (bounded) until the node behind `client` counts `count` blocked
/// clients.
async fn until_blocked(client: &mut Client<tokio::net::TcpStream>, count: i64) {
    for _ in 0..500 {
        if blocked_clients(client).await == count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never {count} blocked clients");
}

/// Blocking pops across nodes (issue 16): a client blocked on one node is
/// served by a push sent to another, in the order the clients blocked; a
/// client that closes while blocked leaves nothing behind; a write's
/// reply comes after the blocked clients it woke were served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pops_through_the_front_end() {
    let c = cluster(3, |_| {}, None).await;
    let mut first = Client::connect(c.resp[1]).await;
    let mut second = Client::connect(c.resp[1]).await;
    let mut observer = Client::connect(c.resp[1]).await;
    let mut pusher = Client::connect(c.resp[2]).await;

    first.send(&[b"BLPOP", b"q", b"0"]).await.unwrap();
    until_blocked(&mut observer, 1).await;
    second.send(&[b"BLPOP", b"q", b"0"]).await.unwrap();
    until_blocked(&mut observer, 2).await;
    assert_eq!(
        pusher.call(&[b"RPUSH", b"q", b"a", b"b"]).await,
        Some(Reply::Integer(2))
    );
    assert_eq!(
        first.reply().await,
        Some(Reply::Array(vec![bulk("q"), bulk("a")]))
    );
    assert_eq!(
        second.reply().await,
        Some(Reply::Array(vec![bulk("q"), bulk("b")]))
    );
    until_blocked(&mut observer, 0).await;

    // A timeout answers nil; the connection goes on.
    assert_eq!(
        first.call(&[b"BRPOPLPUSH", b"q", b"d", b"0.05"]).await,
        Some(Reply::Null)
    );
    // A client that closes while blocked leaves nothing behind.
    second.send(&[b"BLPOP", b"gone", b"0"]).await.unwrap();
    until_blocked(&mut observer, 1).await;
    drop(second);
    until_blocked(&mut observer, 0).await;
    assert_eq!(
        pusher.call(&[b"RPUSH", b"gone", b"x"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        observer.call(&[b"LRANGE", b"gone", b"0", b"-1"]).await,
        Some(Reply::Array(vec![bulk("x")]))
    );

    // A chain of moves is done by the time the push that started it is
    // answered on the blocked clients' node.
    first
        .send(&[b"BLMOVE", b"l1", b"l2", b"RIGHT", b"LEFT", b"0"])
        .await
        .unwrap();
    until_blocked(&mut observer, 1).await;
    let mut third = Client::connect(c.resp[1]).await;
    third
        .send(&[b"BLMOVE", b"l2", b"l3", b"LEFT", b"RIGHT", b"0"])
        .await
        .unwrap();
    until_blocked(&mut observer, 2).await;
    assert_eq!(
        observer.call(&[b"RPUSH", b"l1", b"foo"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        observer.call(&[b"LRANGE", b"l3", b"0", b"-1"]).await,
        Some(Reply::Array(vec![bulk("foo")]))
    );
    assert_eq!(first.reply().await, Some(bulk("foo")));
    assert_eq!(third.reply().await, Some(bulk("foo")));

    // CLIENT UNBLOCK.
    let Some(Reply::Integer(id)) = first.call(&[b"CLIENT", b"ID"]).await else {
        panic!("CLIENT ID");
    };
    first.send(&[b"BZPOPMIN", b"z", b"0"]).await.unwrap();
    until_blocked(&mut observer, 1).await;
    let id = id.to_string();
    assert_eq!(
        observer
            .call(&[b"CLIENT", b"UNBLOCK", id.as_bytes(), b"ERROR"])
            .await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        first.reply().await,
        Some(error("UNBLOCKED client unblocked via CLIENT UNBLOCK"))
    );
    assert_eq!(
        observer.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes()]).await,
        Some(Reply::Integer(0))
    );
}

/// Redis' "SMOVE only notify dstset when the addition is successful": an
/// SMOVE whose destination already holds the member leaves the destination
/// unwritten, so a WATCH of it does not abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smove_that_adds_nothing_does_not_touch_a_watched_destination() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let mut other = Client::connect(c.resp[0]).await;
    assert_eq!(
        client.call(&[b"SADD", b"src", b"a", b"b"]).await,
        Some(Reply::Integer(2))
    );
    assert_eq!(
        client.call(&[b"SADD", b"dst", b"a"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(client.call(&[b"WATCH", b"dst"]).await, Some(ok()));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"SADD", b"dst", b"c"]).await, queued());
    assert_eq!(
        other.call(&[b"SMOVE", b"src", b"dst", b"a"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(vec![Reply::Integer(1)]))
    );
    assert_eq!(
        client.call(&[b"SCARD", b"dst"]).await,
        Some(Reply::Integer(2))
    );
    assert_eq!(
        client.call(&[b"SCARD", b"src"]).await,
        Some(Reply::Integer(1))
    );
}
