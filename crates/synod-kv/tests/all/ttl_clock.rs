//! Expiry on a real cluster whose nodes' wall clocks disagree (issue 12,
//! item 5): three in-process nodes (WAL on disk, TCP on loopback) running
//! the KV store, each with its own injected wall clock.
//!
//! Every scenario writes a key with a 10-minute TTL and then reads it on
//! different nodes with no write of that key in between. A linearizable
//! history can show the value and then nil (the key expired meanwhile), never
//! nil and then the value. The clocks are offsets from the system clock set
//! by the test, so the outcome does not depend on how fast the machine is
//! (each scenario takes well under the 10 minutes of the TTL).

use crate::common;

use bytes::Bytes;
use common::{args, bulk, null, ok};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use synod::{Node, NodeConfig, NodeId, RequestError, WallClock};
use synod_kv::{decode_reply, parse, KvCommand, Store};
use synod_resp::Reply;

const HOUR_MS: i64 = 3_600_000;

/// The system clock plus an offset the test may change at any time (a skew
/// from the start, or an NTP-like step later).
fn offset_clock(offset_ms: Arc<AtomicI64>) -> WallClock {
    WallClock::from_fn(move || {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (system + offset_ms.load(Relaxed)).max(0) as u64
    })
}

struct Cluster {
    nodes: Vec<Node>,
    /// Clock offset of node `i + 1`.
    offsets: Vec<Arc<AtomicI64>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes; node `i + 1`'s clock starts `start_offsets_ms[i]` ahead.
    async fn start(start_offsets_ms: [i64; 3], tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let (peers, mut listeners) = crate::resp_cluster::bound_peers(3);
        let mut nodes = Vec::new();
        let mut offsets = Vec::new();
        for id in 1..=3u32 {
            let offset = Arc::new(AtomicI64::new(start_offsets_ms[id as usize - 1]));
            let mut cfg =
                NodeConfig::new(NodeId(id), peers.clone(), dir.path().join(format!("n{id}")))
                    .expect("member");
            cfg.bootstrap = synod::Bootstrap::New;
            cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
            cfg.request_timeout = Duration::from_secs(10);
            cfg.wall_clock = offset_clock(Arc::clone(&offset));
            tweak(&mut cfg);
            nodes.push(
                Node::start_with_listener(cfg, Store::new(), listeners.remove(0))
                    .await
                    .expect("node starts"),
            );
            offsets.push(offset);
        }
        Cluster {
            nodes,
            offsets,
            _dir: dir,
        }
    }

    /// Runs one command line on node `id` the way the RESP front end does
    /// (reads by `Node::read`, everything else by `Node::propose`), retrying
    /// while a leader is being elected.
    async fn run(&self, id: usize, line: &str) -> Reply {
        self.run_command(id, parse(&args(line)).expect("valid command"))
            .await
    }

    /// `MULTI`, `lines`, `EXEC` on node `id`, as the front end sends a
    /// transaction: one command (read-only ones by `Node::read`).
    async fn run_exec(&self, id: usize, lines: &[&str]) -> Reply {
        let commands = lines
            .iter()
            .map(|line| parse(&args(line)).expect("valid command"))
            .collect();
        self.run_command(id, KvCommand::Exec(commands)).await
    }

    async fn run_command(&self, id: usize, command: KvCommand) -> Reply {
        let line = command.name();
        let node = &self.nodes[id - 1];
        for _ in 0..10 {
            let bytes: Bytes = command.encode();
            let result = if command.is_read() {
                node.read(bytes).await
            } else {
                node.propose(bytes).await
            };
            match result {
                Ok(output) => return decode_reply(&output).expect("reply decodes"),
                Err(RequestError::Timeout(_)) => continue,
                Err(err) => panic!("{line} on node {id}: {err}"),
            }
        }
        panic!("{line} on node {id}: no answer after 10 attempts");
    }

    async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }

    /// Steps node `id`'s wall clock by `delta_ms`.
    fn step_clock(&self, id: usize, delta_ms: i64) {
        self.offsets[id - 1].fetch_add(delta_ms, Relaxed);
    }
}

/// Node 2's clock is an hour ahead from the start. On the old read path node
/// 2 answered GET with its own clock (nil) and node 1 with its own (the
/// value): nil, then the value, with no write in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_ttl_key_on_skewed_nodes_are_linearizable() {
    let cluster = Cluster::start([0, HOUR_MS, 0], |_| {}).await;
    assert_eq!(cluster.run(1, "SET k v PX 600000").await, ok());
    let on_fast_node = cluster.run(2, "GET k").await;
    let then_on_node_1 = cluster.run(1, "GET k").await;
    let then_on_node_3 = cluster.run(3, "GET k").await;
    assert!(
        !(on_fast_node == null() && then_on_node_1 == bulk("v")),
        "GET k answered nil on node 2 and then v on node 1: not linearizable"
    );
    assert!(
        !(then_on_node_1 == null() && then_on_node_3 == bulk("v")),
        "GET k answered nil on node 1 and then v on node 3: not linearizable"
    );
    cluster.shutdown().await;
}

/// Every clock is right at the start; then node 2's steps an hour ahead (a
/// bad NTP step) and node 2 takes a write. Before the fix its stamp moved the
/// log clock an hour ahead, and the next apply purged every key with a TTL
/// under an hour, on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_jumps_ahead_cannot_expire_keys() {
    let cluster = Cluster::start([0, 0, 0], |_| {}).await;
    assert_eq!(cluster.run(1, "SET k v PX 600000").await, ok());
    cluster.step_clock(2, HOUR_MS);
    assert_eq!(cluster.run(2, "SET other x").await, ok());
    assert_eq!(cluster.run(1, "GET k").await, bulk("v"));
    assert_eq!(cluster.run(2, "GET k").await, bulk("v"));
    assert_eq!(cluster.run(3, "GET k").await, bulk("v"));
    match cluster.run(1, "PTTL k").await {
        Reply::Integer(left) => assert!(
            (1..=600_000).contains(&left),
            "PTTL {left} after node 2's clock jumped"
        ),
        other => panic!("PTTL k: {other:?}"),
    }
    cluster.shutdown().await;
}

/// Reads of keys without a TTL keep the read-index path (no log instance),
/// and so do reads of a key whose TTL has not run out by the serving node's
/// clock: their answer at the log clock of the applied point is the one at
/// that node's clock (`StateMachine::query_settles_by_clock`), also on a
/// follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_live_ttl_keys_keep_the_read_index_path() {
    let cluster = Cluster::start([0, 0, 0], |_| {}).await;
    assert_eq!(cluster.run(1, "SET plain p").await, ok());
    for id in 1..=3 {
        assert_eq!(cluster.run(id, "GET plain").await, bulk("p"));
        assert_eq!(cluster.run(id, "TTL plain").await, Reply::Integer(-1));
        assert_eq!(cluster.run(id, "DBSIZE").await, Reply::Integer(1));
    }
    let counts = |id: usize| {
        let metrics = cluster.nodes[id - 1].metrics();
        (
            metrics.reads_through_log.load(Relaxed),
            metrics.reads_settled.load(Relaxed),
        )
    };
    for id in 1..=3 {
        assert_eq!(
            counts(id),
            (0, 0),
            "node {id}: nothing depended on the time"
        );
    }
    assert_eq!(cluster.run(1, "SET k v PX 600000").await, ok());
    for id in 1..=3 {
        assert_eq!(cluster.run(id, "GET plain").await, bulk("p"));
        assert_eq!(cluster.run(id, "GET k").await, bulk("v"));
        assert_eq!(cluster.run(id, "DBSIZE").await, Reply::Integer(2));
        assert_eq!(cluster.run(id, "EXISTS k plain").await, Reply::Integer(2));
        assert_eq!(
            counts(id),
            (0, 3),
            "node {id}: GET k, DBSIZE and EXISTS depended on the time but settled by its clock; GET plain did not depend on it"
        );
    }
    // Random picks never settle: through the log, each draws anew.
    assert_ne!(cluster.run(2, "RANDOMKEY").await, null());
    assert_eq!(counts(2), (1, 3), "RANDOMKEY went through the log");
    assert_eq!(cluster.run(1, "SADD s a b").await, Reply::Integer(2));
    assert_eq!(cluster.run(1, "PEXPIRE s 600000").await, Reply::Integer(1));
    assert_ne!(cluster.run(2, "SRANDMEMBER s").await, null());
    assert_eq!(counts(2), (2, 3), "SRANDMEMBER went through the log");
    // Nor does a read whose answer is built twice at a cost: a value over
    // 64 KiB (`ops::small_to_settle`).
    let big = "x".repeat(100 << 10);
    assert_eq!(
        cluster.run(1, &format!("SET big {big} PX 600000")).await,
        ok()
    );
    assert_eq!(
        cluster.run(2, "STRLEN big").await,
        Reply::Integer(100 << 10)
    );
    assert_eq!(
        counts(2),
        (3, 3),
        "STRLEN of a big value went through the log"
    );
    assert_eq!(cluster.run(2, "SCARD s").await, Reply::Integer(2));
    assert_eq!(counts(2), (3, 4), "SCARD of a small set settled");
    // The other random draws (`ops::read_settles_by_clock`).
    assert_eq!(cluster.run(1, "HSET h f v").await, Reply::Integer(1));
    assert_eq!(cluster.run(1, "PEXPIRE h 600000").await, Reply::Integer(1));
    assert_eq!(cluster.run(2, "HRANDFIELD h").await, bulk("f"));
    assert_eq!(counts(2), (4, 4), "HRANDFIELD went through the log");
    assert_eq!(cluster.run(1, "ZADD z 1 m").await, Reply::Integer(1));
    assert_eq!(cluster.run(1, "PEXPIRE z 600000").await, Reply::Integer(1));
    assert_eq!(cluster.run(2, "ZRANDMEMBER z").await, bulk("m"));
    assert_eq!(counts(2), (5, 4), "ZRANDMEMBER went through the log");
    // A read-only transaction settles when every command in it would, and
    // has at most 16 commands; else it takes the log whole.
    assert_eq!(
        cluster.run_exec(2, &["GET k", "SCARD s"]).await,
        Reply::Array(vec![bulk("v"), Reply::Integer(2)])
    );
    assert_eq!(counts(2), (5, 5), "EXEC of GET and SCARD settled");
    assert_eq!(
        cluster.run_exec(2, &["GET k", "HRANDFIELD h"]).await,
        Reply::Array(vec![bulk("v"), bulk("f")])
    );
    assert_eq!(
        counts(2),
        (6, 5),
        "EXEC with a random draw went through the log"
    );
    assert_eq!(
        cluster.run_exec(2, &["GET k"; 16]).await,
        Reply::Array(vec![bulk("v"); 16])
    );
    assert_eq!(counts(2), (6, 6), "EXEC of 16 GETs settled");
    assert_eq!(
        cluster.run_exec(2, &["GET k"; 17]).await,
        Reply::Array(vec![bulk("v"); 17])
    );
    assert_eq!(counts(2), (7, 6), "EXEC of 17 GETs went through the log");
    cluster.shutdown().await;
}

/// A node whose clock is an hour behind the others' still answers reads of
/// live TTL keys by read index: the answer at its clock is taken at the log
/// clock when that is later (`Engine::settled_answer`), so it is the same
/// answer, with no log instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_behind_settles_reads() {
    let cluster = Cluster::start([0, 0, -HOUR_MS], |_| {}).await;
    assert_eq!(cluster.run(1, "SET k v PX 600000").await, ok());
    for _ in 0..3 {
        assert_eq!(cluster.run(3, "GET k").await, bulk("v"));
    }
    let metrics = cluster.nodes[2].metrics();
    assert_eq!(
        metrics.reads_settled.load(Relaxed),
        3,
        "the GETs on the node an hour behind settled"
    );
    cluster.shutdown().await;
}

/// A key whose TTL ran out by the nodes' clocks, with nothing written since
/// (the log clock still before its expiry), reads as gone on every node:
/// the read that finds the two clocks disagree goes through the log, whose
/// stamp moves the log clock past the expiry, and reads after it settle on
/// nil. Without the clock check (answering at the log clock alone) the key
/// would read as present until the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_key_expires_for_readers_without_a_write() {
    let cluster = Cluster::start([0, 0, 0], |_| {}).await;
    assert_eq!(cluster.run(1, "SET e v PX 300").await, ok());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for id in [3, 2, 1] {
        assert_eq!(cluster.run(id, "GET e").await, null(), "node {id}");
    }
    let through_log: u64 = cluster
        .nodes
        .iter()
        .map(|node| node.metrics().reads_through_log.load(Relaxed))
        .sum();
    assert!(through_log >= 1, "the first GET e went through the log");
    cluster.shutdown().await;
}

/// The negative control (`NodeConfig::local_clock_reads`, the first
/// release's read path) shows the defect the first test guards against: the
/// same history is not linearizable with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_clock_reads_negative_control_is_not_linearizable() {
    let cluster = Cluster::start([0, HOUR_MS, 0], |cfg| cfg.local_clock_reads = true).await;
    assert_eq!(cluster.run(1, "SET k v PX 600000").await, ok());
    assert_eq!(
        cluster.run(2, "GET k").await,
        null(),
        "node 2's clock is ahead"
    );
    assert_eq!(cluster.run(1, "GET k").await, bulk("v"), "node 1's is not");
    cluster.shutdown().await;
}
