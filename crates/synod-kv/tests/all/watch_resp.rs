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
