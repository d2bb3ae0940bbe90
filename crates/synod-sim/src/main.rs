//! `synod-sim`: runs many seeds of the deterministic simulator.
//!
//! ```text
//! cargo run --release -p synod-sim -- --seeds N [--first-seed S] [--nodes 3|5|7] [--inject NAME]
//! ```

/// jemalloc, as in the shipping `synod` binary: a seed's run allocates and
/// frees at every message, batch and snapshot, and glibc's malloc and free
/// were a tenth of the simulator's time. Nothing the simulator decides
/// depends on the allocator (Lua's memory limit counts the bytes it asks
/// for, not what an allocator rounds them to): the same seeds give the same
/// histories. Declared by the binary and the tests, not the library, so a
/// crate that links the library keeps its own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::builder::TypedValueParser;
use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use synod_sim::{parse_inject, run_seed, with_scenario, INJECTIONS, SCENARIOS};

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of Synod's Multi-Paxos core")]
struct Args {
    /// How many seeds to run.
    #[arg(long)]
    seeds: u64,
    /// The first seed; seeds run are first-seed .. first-seed + seeds.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::PossibleValuesParser::new(["1", "3", "5", "7"]).map(|s| s.parse::<usize>().unwrap_or(3)))]
    nodes: usize,
    /// Switch on a deliberate bug (negative control): ack-before-fsync,
    /// self-vote-before-fsync, skip-adopt,
    /// stale-read, leader-local-reads, nondeterministic-sm, torn-checkpoint,
    /// local-clock-ttl, wipe-votes, config-immediate, learner-votes,
    /// lease-drift-beyond-bound, admit-duplicates, watch-ignored, wake-lost,
    /// session-reapply, on-disk-reapply, release-past-checkpoint,
    /// log-read-shift, local-random-draws, acl-checked-by-node,
    /// local-permit-without-lease or read-index-chosen-only.
    #[arg(long)]
    inject: Option<String>,
    /// Add a targeted nemesis, which the code must pass (with --inject, a
    /// control it should catch): isolate-leader-on-apply (a leader that
    /// just applied is cut off before its commits arrive anywhere).
    #[arg(long)]
    scenario: Option<String>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print a line for every seed, not only failing ones (and a failing
    /// seed's nemesis actions).
    #[arg(long)]
    verbose: bool,
}

fn main() {
    let args = Args::parse();
    // `SIM_LOG` (an env-filter, e.g. `info` or `info,synod=debug`) prints
    // the runtime's log and the nemesis' actions, each line with the
    // simulated time and node; `debug` adds where every node stands at each
    // change of role or leader. For one seed with `--threads 1`.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .without_time()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    // A panic inside a seed is a broken invariant: run_seed reports it as a
    // violation with its message; the default hook's backtrace is noise.
    std::panic::set_hook(Box::new(|_| {}));
    let inject = match &args.inject {
        None => Default::default(),
        Some(name) => match parse_inject(name) {
            Some(inject) => inject,
            None => {
                eprintln!(
                    "error: unknown --inject {name:?}; known: {}",
                    INJECTIONS.join(", ")
                );
                std::process::exit(2);
            }
        },
    };
    let inject = match &args.scenario {
        None => inject,
        Some(name) => match with_scenario(inject, name) {
            Some(faults) => faults,
            None => {
                eprintln!(
                    "error: unknown --scenario {name:?}; known: {}",
                    SCENARIOS.join(", ")
                );
                std::process::exit(2);
            }
        },
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let out = Mutex::new(());
    let inject_flag = args
        .inject
        .as_ref()
        .map(|name| format!(" --inject {name}"))
        .unwrap_or_default()
        + &args
            .scenario
            .as_ref()
            .map(|name| format!(" --scenario {name}"))
            .unwrap_or_default();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= args.seeds {
                    return;
                }
                let seed = args.first_seed + k;
                let report = run_seed(seed, args.nodes, inject);
                let _guard = out.lock().unwrap_or_else(|e| e.into_inner());
                if !report.passed() {
                    violations.fetch_add(1, Ordering::Relaxed);
                    println!(
                        "seed {seed}: FAILED ({} violations): {} | replay: cargo run --release -p synod-sim -- --seeds 1 --first-seed {seed} --nodes {}{inject_flag}",
                        report.violation_count,
                        report.violations.join("; "),
                        args.nodes,
                    );
                    if args.verbose {
                        println!("  {}; nemesis: {}", report.stats, report.stats.nemesis.join(" "));
                    }
                } else if args.verbose {
                    println!("seed {seed}: ok: {}", report.stats);
                }
            });
        }
    });
    let v = violations.load(Ordering::Relaxed);
    eprintln!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
    println!("seeds: {}, violations: {v}", args.seeds);
    std::process::exit(if v == 0 { 0 } else { 1 });
}
