//! Every record reported durable survives `kill -9` at any moment: a process
//! writes and checkpoints as fast as it can and is killed at random points,
//! twenty times; each restart must recover at least everything it reported
//! durable, as a snapshot plus consecutive ids (checked by the process).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn records_reported_durable_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_wal-torture");
    let mut reported = 0u64;
    for round in 0..20u64 {
        let mut child = Command::new(exe)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let recovered: u64 = first
            .strip_prefix("recovered ")
            .unwrap_or_else(|| panic!("round {round}: {first}"))
            .parse()
            .unwrap();
        assert!(
            recovered >= reported,
            "round {round}: recovered {recovered} < reported durable {reported}"
        );
        // Let it run a varying while, then kill it mid-flight.
        let run_for = Duration::from_millis(20 + (round * 37) % 150);
        let start = Instant::now();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                reported = n.parse().unwrap();
            }
            if start.elapsed() >= run_for {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: exited by itself");
        // Anything printed before the kill landed is also durable.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("durable ") {
                reported = n.parse().unwrap();
            }
        }
    }
    assert!(reported > 100, "the process made progress ({reported})");
    let mut last = Command::new(exe)
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(last.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    last.kill().unwrap();
    last.wait().unwrap();
    let recovered: u64 = first.strip_prefix("recovered ").unwrap().parse().unwrap();
    assert!(recovered >= reported);
}
