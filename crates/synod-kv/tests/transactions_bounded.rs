//! What a transaction or a pipeline may make the event loop and the apply
//! path do (review of issue 13, D1 and D5): reads whose cost grows with the
//! dataset or a client's pattern never run there, and a queued command is
//! checked again against its user's rules at EXEC.

mod resp_cluster;

use resp_cluster::{cluster, error, ok, Client};
use synod_resp::Reply;

fn queued() -> Option<Reply> {
    Some(Reply::Simple("QUEUED".into()))
}

/// KEYS and SCAN are refused inside MULTI and the transaction aborts.
/// (Before, `MULTI; SET w 1; KEYS <pattern>; EXEC` ran the glob over the
/// whole dataset on every replica's apply path, stalling the cluster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_scan_are_refused_inside_multi() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    for read in [
        &[&b"KEYS"[..], b"*a*b"][..],
        &[b"SCAN", b"0", b"MATCH", b"x*"],
    ] {
        assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
        assert_eq!(client.call(&[b"SET", b"w", b"1"]).await, queued());
        let Some(Reply::Error(refusal)) = client.call(read).await else {
            panic!("{read:?} is refused inside MULTI");
        };
        assert!(refusal.starts_with("ERR "), "{refusal}");
        assert!(refusal.contains("inside MULTI"), "{refusal}");
        assert_eq!(
            client.call(&[b"EXEC"]).await,
            Some(error(
                "EXECABORT Transaction discarded because of previous errors."
            ))
        );
    }
    // Nothing of the aborted transactions was applied.
    assert_eq!(client.call(&[b"GET", b"w"]).await, Some(Reply::Null));
    // Alone, they are ordinary reads.
    assert_eq!(
        client.call(&[b"KEYS", b"*a*b"]).await,
        Some(Reply::Array(vec![]))
    );
}

/// A pipeline that mixes a write with a KEYS sends the KEYS as its own log
/// command, answered off the loop, not inside the pipeline's batch (which
/// would run it on every replica's apply path). Checked through the
/// replies: the batch still answers every command in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_keys_is_answered_in_order() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let mut pipeline = bytes::BytesMut::new();
    synod_resp::write_request(&mut pipeline, &[b"SET", b"ab", b"1"]);
    synod_resp::write_request(&mut pipeline, &[b"KEYS", b"a*b"]);
    synod_resp::write_request(&mut pipeline, &[b"SET", b"axb", b"2"]);
    synod_resp::write_request(&mut pipeline, &[b"KEYS", b"a?b"]);
    client.send_raw(&pipeline).await.expect("send");
    assert_eq!(client.reply().await, Some(ok()));
    assert_eq!(
        client.reply().await,
        Some(Reply::Array(vec![Reply::Bulk("ab".into())]))
    );
    assert_eq!(client.reply().await, Some(ok()));
    assert_eq!(
        client.reply().await,
        Some(Reply::Array(vec![Reply::Bulk("axb".into())]))
    );
}
