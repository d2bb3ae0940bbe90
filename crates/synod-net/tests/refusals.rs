//! Refused handshakes are counted exactly but logged rate limited: a flood of
//! refusals from an outsider cannot fill the disk with log lines.
//!
//! Its own test binary, so that the captured warnings are this test's only.

#[path = "all/common/mod.rs"]
mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synod_core::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A first frame with the wrong magic: refused, always for the same reason.
async fn refused_once(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(b"\x10\0\0\0GET / HTTP/1.1\r\n").await;
    expect_closed(&mut stream).await;
}

/// How many refusals a line stands for: itself and those it says it left out.
fn refusals_in(line: &str) -> u64 {
    let left_out = line
        .split_once(": closing (")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map_or(0, |n| n.parse::<u64>().unwrap());
    1 + left_out
}

#[tokio::test]
async fn a_flood_of_refused_handshakes_is_counted_exactly_and_logged_once_an_interval() {
    capture_warnings();
    let (mut listeners, addrs) = bind(&[1, 2]).await;
    let _absent = listeners.remove(&NodeId(1)).unwrap();
    let two = NodeId(2);
    let mut cfg = config(two, &addrs);
    let interval = Duration::from_millis(200);
    cfg.rejected_log_interval = interval;
    let node = start(cfg, listeners.remove(&two).unwrap()).await;
    let attempts: u64 = 2000;
    let started = Instant::now();
    // Waves of 8 (the per-source limit), so each is judged, not refused as busy.
    for _ in 0..attempts / 8 {
        let mut wave = tokio::task::JoinSet::new();
        for _ in 0..8 {
            wave.spawn(refused_once(addrs[&two]));
        }
        while let Some(done) = wave.join_next().await {
            done.unwrap();
        }
    }
    wait_stats(&node.net, "every refusal counted", |s| {
        s.handshakes_rejected == attempts
    })
    .await;
    let flood = started.elapsed();
    let lines = warnings_containing("not \"SYND\"");
    // One line per interval of the flood, and one at its start.
    let lines_max = (flood.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        !lines.is_empty() && lines.len() <= lines_max,
        "{} lines for {attempts} refusals in {flood:?}",
        lines.len()
    );
    // After a quiet interval, the next line accounts for every refusal
    // left out: the lines add up to the exact count.
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    refused_once(addrs[&two]).await;
    wait_stats(&node.net, "the last refusal counted", |s| {
        s.handshakes_rejected == attempts + 1
    })
    .await;
    let lines = warnings_containing("not \"SYND\"");
    let last = lines.last().unwrap();
    assert!(last.contains("more like it not logged"), "{last}");
    let accounted: u64 = lines.iter().map(|line| refusals_in(line)).sum();
    assert_eq!(accounted, attempts + 1, "{lines:#?}");
    assert_eq!(panics(), 0);
    node.net.shutdown().await;
}
