//! The largest replicated command at the client edge (issue 12, item 2): a
//! three-node cluster in one process (WAL on disk, TCP on loopback) with a
//! small log value limit, driven over RESP.
//!
//! Before, pipelined commands were merged into one log command with no byte
//! bound (five pipelined 15 MiB SETs made one ~75 MiB value that could never
//! cross a 64 MiB frame, and every later write stalled), and a MULTI of any
//! size was one log command.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use synod::{Node, NodeConfig, NodeId, RequestError};
use synod_kv::{ServerConfig, Store};
use synod_resp::{parse_reply, write_request, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The log value limit of the test cluster.
const VALUE_BYTES_MAX: usize = 256 << 10;

struct Cluster {
    nodes: Vec<Arc<Node>>,
    resp: Vec<SocketAddr>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let (peers, mut listeners) = crate::resp_cluster::bound_peers(3);
    let (stop, stop_rx) = watch::channel(false);
    let mut nodes = Vec::new();
    let mut resp = Vec::new();
    for id in 1..=3 {
        let mut cfg = NodeConfig::new(NodeId(id), peers.clone(), dir.path().join(format!("n{id}")))
            .expect("member");
        cfg.bootstrap = synod::Bootstrap::New;
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        cfg.value_bytes_max = VALUE_BYTES_MAX;
        cfg.request_timeout = Duration::from_secs(10);
        let node = Arc::new(
            Node::start_with_listener(cfg, Store::new(), listeners.remove(0))
                .await
                .expect("starts"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        resp.push(listener.local_addr().expect("addr"));
        let server_cfg = ServerConfig::new(listener.local_addr().expect("addr"));
        let (node2, mut stop2) = (Arc::clone(&node), stop_rx.clone());
        tokio::spawn(
            async move { synod_kv::serve_on(listener, server_cfg, node2, &mut stop2).await },
        );
        nodes.push(node);
    }
    // Wait for a leader: a write through node 1 succeeds.
    for _ in 0..20 {
        match nodes[0].propose(Bytes::new()).await {
            Err(RequestError::Timeout(_)) => continue,
            _ => break,
        }
    }
    Cluster {
        nodes,
        resp,
        _stop: stop,
        _dir: dir,
    }
}

/// Sends every request at once (one pipeline) and reads one reply each.
async fn pipeline(addr: SocketAddr, requests: &[Vec<&[u8]>]) -> Vec<Reply> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut out = BytesMut::new();
    for request in requests {
        write_request(&mut out, request);
    }
    stream.write_all(&out).await.expect("write");
    let mut input = BytesMut::new();
    let mut replies = Vec::new();
    while replies.len() < requests.len() {
        if let Some(reply) = parse_reply(&mut input).expect("a valid reply") {
            replies.push(reply);
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut input))
            .await
            .expect("replies within 30 s")
            .expect("read");
        assert!(
            read > 0,
            "connection closed after {} replies",
            replies.len()
        );
    }
    replies
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn value(tag: u8, len: usize) -> Vec<u8> {
    vec![tag; len]
}

/// (c) Pipelined SETs that each fit but together exceed the limit all
/// succeed: the front end splits them into several log commands, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sets_larger_than_a_log_value_are_split_and_all_succeed() {
    let c = cluster().await;
    let max = c.nodes[0].command_bytes_max();
    assert!(max < VALUE_BYTES_MAX);
    let values: Vec<Vec<u8>> = (0..5).map(|i| value(b'a' + i, 100 << 10)).collect();
    let keys: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i}").into_bytes()).collect();
    let mut requests: Vec<Vec<&[u8]>> = Vec::new();
    for (key, value) in keys.iter().zip(&values) {
        requests.push(vec![b"SET", key, value]);
    }
    // The same key written twice in one pipeline: the order holds across
    // the split.
    requests.push(vec![b"SET", b"order", &values[0]]);
    requests.push(vec![b"SET", b"order", b"last"]);
    requests.push(vec![b"GET", b"order"]);
    let before = c.nodes[0].status().applied_end;
    let replies = pipeline(c.resp[0], &requests).await;
    let mut expected = vec![ok(); 7];
    expected.push(Reply::Bulk(Bytes::from_static(b"last")));
    assert_eq!(replies, expected);
    // 700 KiB of writes in 256 KiB log values: at least three instances.
    let after = c.nodes[0].status().applied_end;
    assert!(after.0 >= before.0 + 3, "{before:?} -> {after:?}");
    // Every value is there, read on another node.
    let gets: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"GET"[..], k]).collect();
    let replies = pipeline(c.resp[1], &gets).await;
    let expected: Vec<Reply> = values
        .iter()
        .map(|v| Reply::Bulk(Bytes::from(v.clone())))
        .collect();
    assert_eq!(replies, expected);
}

/// (c) A MULTI/EXEC larger than one log value is refused with EXECABORT and
/// nothing of it is applied; a single command too large is refused with a
/// Redis-style error; the connection goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_or_command_too_large_is_refused_and_nothing_is_applied() {
    let c = cluster().await;
    // What a client may send: the log's bound less what its commands carry
    // with them there, the user and the stamp of its rules (`AsUser`: an
    // opcode, the name "default" with its length, 8 bytes).
    let max = c.nodes[0].command_bytes_max() - (1 + 4 + "default".len() + 8);
    let part = value(b'x', 100 << 10);
    let huge = value(b'y', VALUE_BYTES_MAX);
    let requests: Vec<Vec<&[u8]>> = vec![
        vec![b"MULTI"],
        vec![b"SET", b"t1", &part],
        vec![b"SET", b"t2", &part],
        vec![b"SET", b"t3", &part],
        vec![b"EXEC"],
        vec![b"SET", b"big", &huge],
        vec![b"MULTI"],
        vec![b"SET", b"t1", b"small"],
        vec![b"SET", b"big", &huge],
        vec![b"EXEC"],
        vec![b"EXISTS", b"t1", b"t2", b"t3", b"big"],
        vec![b"SET", b"after", b"ok"],
    ];
    let replies = pipeline(c.resp[0], &requests).await;
    let queued = Reply::Simple("QUEUED".into());
    // The exact encoded size of a SET is the codec's business: only the
    // start of this error is compared (see below).
    let too_large = "ERR command of".to_string();
    let expected = vec![
        ok(),
        queued.clone(),
        queued.clone(),
        queued.clone(),
        Reply::Error(format!(
            "EXECABORT Transaction discarded because it exceeds the maximum replicated size of {max} bytes."
        )),
        Reply::Error(too_large.clone()),
        ok(),
        queued,
        Reply::Error(too_large.clone()),
        Reply::Error("EXECABORT Transaction discarded because of previous errors.".into()),
        Reply::Integer(0),
        ok(),
    ];
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        match (got, want) {
            (Reply::Error(g), Reply::Error(w)) if *w == too_large => {
                assert!(
                    g.starts_with("ERR command of ")
                        && g.ends_with(&format!(
                            "bytes exceeds the maximum replicated size of {max} bytes"
                        )),
                    "reply {i}: {g}"
                );
            }
            _ => assert_eq!(got, want, "reply {i}"),
        }
    }
    assert_eq!(replies.len(), expected.len());
}
