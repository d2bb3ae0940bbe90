//! `synod bench` against a real cluster: it reports throughput and
//! percentiles, writes its JSON and CSV, and every write it made is there.

use crate::common;

use common::{run_bench, Cluster};
use std::process::Command;

#[test]
fn bench_loads_a_cluster_and_reports() {
    let cluster = Cluster::start(3, &[]);
    let addrs: Vec<String> = cluster.resp.iter().map(|a| a.to_string()).collect();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let json = out_dir.path().join("r.json");
    let csv = out_dir.path().join("r.csv");
    let (stdout, report) = run_bench(
        Command::new(env!("CARGO_BIN_EXE_synod"))
            .args(["bench", "--addr", &addrs.join(",")])
            .args([
                "--clients",
                "8",
                "--pipeline",
                "4",
                "--duration",
                "2",
                "--warmup",
                "1",
            ])
            .args(["--keys", "50", "--read-ratio", "0.3", "--label", "t"])
            .arg("--csv")
            .arg(&csv),
        &json,
    );
    assert!(
        stdout.contains("ops/s") && stdout.contains("p99.9"),
        "{stdout}"
    );

    assert!(report["requests"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    let p50 = report["latency_ms"]["p50"].as_f64().unwrap_or(0.0);
    let p99 = report["latency_ms"]["p99"].as_f64().unwrap_or(0.0);
    assert!(p50 > 0.0 && p50 <= p99, "{report}");
    let rows = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(
        rows.lines()
            .nth(1)
            .is_some_and(|r| r.starts_with("t,8,4,0.3,100,")),
        "{rows}"
    );

    // The writes went through the log: the keys exist on every node.
    for i in 0..3 {
        let mut conn = cluster.client(i);
        let keys: usize = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
        assert!(keys > 0 && keys <= 51, "node {i} has {keys} keys");
    }
}
