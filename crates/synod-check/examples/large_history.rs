//! Times the checker on a large simulated history:
//! `cargo run --release -p synod-check --example large_history [CLIENTS OPS_PER_CLIENT KEYS UNKNOWN_PER_MILLE]`
//! (default: 10 clients x 2000 operations on 5 keys, 2% unknown outcomes).

#[path = "../tests/all/support/mod.rs"]
mod support;

use std::time::Instant;
use support::{simulate, Workload};
use synod_check::{check, CheckOptions};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().unwrap_or(default);
    let workload = Workload {
        seed: 7,
        clients: arg(0, 10),
        ops_per_client: arg(1, 2000),
        keys: arg(2, 5),
        unknown_per_mille: arg(3, 20),
        latency_max: 100,
    };
    let history = simulate(&workload);
    let started = Instant::now();
    let verdict = check(&history, &CheckOptions::default());
    let elapsed = started.elapsed();
    println!(
        "{} clients x {} ops on {} keys ({} operations, {} unknown): {} in {:.1} ms",
        workload.clients,
        workload.ops_per_client,
        workload.keys,
        history.len(),
        history
            .iter()
            .filter(|op| op.outcome == synod_check::Outcome::Unknown)
            .count(),
        if verdict.is_linearizable() {
            "linearizable".to_string()
        } else {
            verdict.to_string()
        },
        elapsed.as_secs_f64() * 1e3
    );
}
