//! `--maxmemory` end to end (issue 13): the limit travels through the log,
//! so every replica enforces the same one, whatever each node's flag, and
//! keeps it across a full restart.

use crate::common;

use common::Cluster;
use redis::cmd;
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;

/// `INFO memory` field of node `i`.
fn memory_field(cluster: &Cluster, i: usize, field: &str) -> Option<u64> {
    let mut con = cluster.client(i);
    let info: String = cmd("INFO").arg("memory").query(&mut con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until every running node reports `maxmemory` = `bytes`.
fn wait_limit(cluster: &Cluster, nodes: &[usize], bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for &i in nodes {
        while memory_field(cluster, i, "maxmemory") != Some(bytes) {
            assert!(
                Instant::now() < deadline,
                "node {} never reported maxmemory {bytes}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn write_error(cluster: &Cluster, i: usize, command: &mut redis::Cmd) -> String {
    let mut con = cluster.client(i);
    match command.query::<redis::Value>(&mut con) {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_limit_is_replicated_enforced_alike_and_survives_a_restart() {
    // Started without the flag: no limit.
    let mut cluster = Cluster::start(3, &[]);
    wait_limit(&cluster, &[0, 1, 2], 0);
    // One node restarts with --maxmemory: it proposes the limit through
    // the log, and every replica takes it from there.
    cluster.kill9(0);
    cluster.restart_node_with(0, &["--maxmemory", "1mb"]);
    cluster.wait_ping(0);
    wait_limit(&cluster, &[0, 1, 2], MB);

    let leader = cluster.leader().expect("a leader");
    // A small command that would make every replica allocate 2 MB, past
    // the limit (within --max-value-bytes, which the front end checks
    // first: a 512 MB SETRANGE is refused there, see synod-kv's
    // client_limits tests).
    let refused = write_error(
        &cluster,
        leader,
        cmd("SETRANGE").arg("k").arg(2_000_000).arg("x"),
    );
    assert!(
        refused.contains("command not allowed when used memory > 'maxmemory'"),
        "{refused}"
    );
    let refused = write_error(
        &cluster,
        leader,
        cmd("SETRANGE").arg("k").arg(536_870_911).arg("x"),
    );
    assert!(
        refused.contains("string exceeds maximum allowed size (proto-max-bulk-len)"),
        "{refused}"
    );
    // Fill up to the limit: the write that would cross it is refused.
    let value = vec![b'v'; 300_000];
    let mut con = cluster.client(leader);
    for i in 0..3 {
        let _: () = cmd("SET")
            .arg(format!("big{i}"))
            .arg(value.as_slice())
            .query(&mut con)
            .expect("fits");
    }
    let refused = write_error(
        &cluster,
        leader,
        cmd("SET").arg("big3").arg(value.as_slice()),
    );
    assert!(refused.contains("maxmemory"), "{refused}");
    let _: i64 = cmd("DEL")
        .arg("big0")
        .query(&mut con)
        .expect("DEL always runs");

    // Every replica accounts the same dataset size.
    let used = memory_field(&cluster, leader, "used_memory_dataset").expect("used");
    assert!(used > 600_000 && used < MB, "{used}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        while memory_field(&cluster, i, "used_memory_dataset") != Some(used) {
            assert!(Instant::now() < deadline, "node {} disagrees", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A full restart without the flag keeps the limit (it is in the log).
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart_node_with(i, &[]);
    }
    for i in 0..3 {
        cluster.wait_ping(i);
    }
    cluster.wait_writable(0);
    wait_limit(&cluster, &[0, 1, 2], MB);
    let leader = cluster.leader().expect("a leader");
    let refused = write_error(
        &cluster,
        leader,
        cmd("SETRANGE").arg("k").arg(2_000_000).arg("x"),
    );
    assert!(refused.contains("maxmemory"), "{refused}");
}
