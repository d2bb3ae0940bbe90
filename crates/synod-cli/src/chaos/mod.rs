//! `synod chaos`: Jepsen-style runs of a real cluster.
//!
//! Each run starts `--nodes` `synod server` processes (each in its own
//! network namespace when it can, else on loopback), runs `--clients`
//! concurrent RESP clients on a few keys (GET, SET, SET…GET, INCR, DEL,
//! MULTI/EXEC of two keys) while the nemesis kills, pauses and partitions
//! nodes or replaces one by a new node under a new id (membership), then
//! heals everything, reads every key from every node, and checks
//! the whole history for linearizability with `synod-check` (the checker the
//! simulator uses). A failing run keeps its directory (history, node logs,
//! report) and says where it is.

mod client;
mod membership;
mod nemesis;
mod net;
mod procs;
mod report;

use clap::Args;
use client::{final_reads, run_client, ClientLog, Record, Shared};
use nemesis::{Kind, Nemesis};
use net::{Namespaces, Network};
use procs::{call, find_leader, Procs};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use report::RunReport;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// How many runs, one after another (seeds --seed, --seed+1, ...).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Seconds of faults and client load per run.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: u32,
    /// Faults to mix: kill, pause, partition, loss, delay, membership, all
    /// (comma-separated).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Keys in use at a time (even; transactions use pairs). Every
    /// --generation-secs clients move to fresh keys, bounding each key's history.
    #[arg(long, default_value_t = 6)]
    keys: u32,
    /// Seconds before clients move to a new set of keys.
    #[arg(long, default_value_t = 10)]
    generation_secs: u64,
    /// Seed of the first run (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where runs are made: `auto` (namespaces if possible), `netns` or `loopback`.
    #[arg(long, default_value = "auto")]
    network: String,
    /// Namespace/bridge/subnet index (10.77.INDEX.0/24), so that runs in
    /// parallel do not collide.
    #[arg(long, default_value_t = 0)]
    net_index: u8,
    /// Loopback mode: node i serves RESP on base+i and Paxos on base+100+i.
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// Each run's directory (data, logs, history) goes under here.
    #[arg(long, default_value = "./synod-chaos")]
    dir: PathBuf,
    /// Keep the directory of passing runs too (failing runs are always kept).
    #[arg(long)]
    keep: bool,
    /// A client gives up on an operation after this many ms (outcome unknown).
    #[arg(long, default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Negative control: start the servers with --unsafe-local-reads (reads
    /// skip the log); the checker must then report the run not linearizable.
    #[arg(long)]
    unsafe_local_reads: bool,
    /// Stop after the first run that is not linearizable (the later runs
    /// can only add violations; a negative control needs one).
    #[arg(long)]
    stop_at_violation: bool,
    /// Extra arguments for every `synod server` (after --).
    #[arg(last = true)]
    server_args: Vec<String>,
}

pub fn main(args: ChaosArgs) -> ExitCode {
    match run_all(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("synod chaos: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_all(args: ChaosArgs) -> Result<ExitCode, String> {
    if !(1..=9).contains(&args.nodes) {
        return Err("--nodes must be between 1 and 9".into());
    }
    if args.keys < 2 || !args.keys.is_multiple_of(2) {
        return Err("--keys must be even and at least 2".into());
    }
    if args.clients == 0 || args.duration == 0 || args.generation_secs == 0 {
        return Err("--clients, --duration and --generation-secs must be positive".into());
    }
    let kinds = Kind::parse_list(&args.nemesis)?;
    crate::signals::install();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let first_seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut reports = Vec::new();
    for r in 0..args.runs {
        if crate::signals::requested() {
            break;
        }
        let seed = first_seed + u64::from(r);
        let report = run_one(&args, &kinds, &exe, seed, &runtime)?;
        println!("{}", report.summary());
        // A violation, not any failed run: an undetermined verdict (the
        // checker's budget ran out) or a problem beside a linearizable
        // history leaves the later runs their chance to catch one.
        let violated = matches!(report.verdict, synod_check::Verdict::NotLinearizable { .. });
        reports.push(report);
        if violated && args.stop_at_violation && r + 1 < args.runs {
            println!("stopping at the first violation (--stop-at-violation)");
            break;
        }
    }
    let violations = reports.iter().filter(|r| !r.passed()).count();
    if reports.len() > 1 {
        println!("{}", report::totals(&reports));
    }
    println!("runs: {}, violations: {violations}", reports.len());
    if crate::signals::requested() {
        return Ok(ExitCode::from(130));
    }
    Ok(if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Set once namespaces worked in this process: a later run that cannot set
/// them up fails rather than quietly losing its partition nemeses.
static NAMESPACES_WORKED: AtomicBool = AtomicBool::new(false);

/// Picks the network for a run.
fn network(args: &ChaosArgs) -> Result<(Network, Option<String>), String> {
    let loopback = Network::Loopback {
        base_port: args.base_port,
    };
    let namespaces = || {
        let ns = Namespaces::setup(args.net_index, args.nodes)?;
        NAMESPACES_WORKED.store(true, Ordering::Relaxed);
        Ok::<_, String>((Network::Namespaces(ns), None))
    };
    match args.network.as_str() {
        "loopback" => Ok((loopback, None)),
        "netns" => namespaces(),
        "auto" => match namespaces() {
            Ok(x) => Ok(x),
            Err(why) if NAMESPACES_WORKED.load(Ordering::Relaxed) => Err(format!(
                "network namespaces worked for an earlier run but not now: {why}"
            )),
            Err(why) => Ok((loopback, Some(why))),
        },
        other => Err(format!(
            "--network {other}: expected auto, netns or loopback"
        )),
    }
}

fn run_one(
    args: &ChaosArgs,
    kinds: &[Kind],
    exe: &std::path::Path,
    seed: u64,
    runtime: &tokio::runtime::Runtime,
) -> Result<RunReport, String> {
    let dir = args.dir.join(format!("run-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let (net, fallback) = network(args)?;
    if let Some(why) = &fallback {
        println!("chaos: no network namespaces ({why}); running on loopback: kill and pause only");
    }
    let (kinds, skipped) = nemesis::usable(kinds, &net, args.nodes);
    let mut server_args = args.server_args.clone();
    if !server_args
        .iter()
        .any(|a| a.starts_with("--snapshot-instances"))
    {
        // Snapshots, compaction and snapshot transfer are part of what is
        // tested: take them far more often than the server's default.
        server_args.extend(["--snapshot-instances".into(), "2000".into()]);
    }
    if args.unsafe_local_reads {
        server_args.push("--unsafe-local-reads".into());
    }
    let procs = Mutex::new(Procs::new(
        exe.to_path_buf(),
        dir.clone(),
        args.nodes,
        server_args,
    ));
    let lock = || procs.lock().unwrap_or_else(|e| e.into_inner());
    for i in 1..=args.nodes {
        lock().start(&net, i)?;
    }
    let start = Instant::now();
    // Wait for a leader that commits a write.
    let settled = wait_writable(&net, &lock(), Duration::from_secs(30));
    if !settled {
        return Err(format!(
            "the cluster did not elect a leader within 30 s; see {}",
            dir.display()
        ));
    }
    let shared = Arc::new(Shared {
        start,
        stop: AtomicBool::new(false),
        addrs: (1..=args.nodes).map(|i| net.resp_addr(i)).collect(),
        op_timeout: Duration::from_millis(args.op_timeout_ms),
        seed,
        keys: args.keys,
        generation: Duration::from_secs(args.generation_secs),
    });
    let load_start = shared.now_us();
    let clients: Vec<_> = (0..u64::from(args.clients))
        .map(|c| runtime.spawn(run_client(c, Arc::clone(&shared))))
        .collect();
    let nemesis = Nemesis {
        net: &net,
        procs: &procs,
        kinds: kinds.clone(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        start,
    };
    let until = start.elapsed() + Duration::from_secs(args.duration);
    let faults = nemesis.run(until);
    // Heal, let clients run on a whole cluster for a moment, then stop them.
    let heal_result = nemesis::heal_all(&net, &mut lock());
    let healed_at = shared.now_us();
    std::thread::sleep(Duration::from_secs(2));
    shared.stop.store(true, Ordering::Relaxed);
    let mut logs: Vec<ClientLog> = Vec::new();
    let mut client_failures = Vec::new();
    for (c, handle) in clients.into_iter().enumerate() {
        match runtime.block_on(handle) {
            Ok(log) => logs.push(log),
            // Its history is lost, so the check below would be incomplete.
            Err(err) => client_failures.push(format!("client {c} failed: {err}")),
        }
    }
    let load_end = shared.now_us();
    // Settle: a write must go through, then every node reads every key.
    let writable = wait_writable(&net, &lock(), Duration::from_secs(30));
    let keys = shared.all_keys();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut finals = Vec::new();
    let mut unread = Vec::new();
    let readers: Vec<_> = (1..=args.nodes)
        .map(|i| {
            let shared = Arc::clone(&shared);
            let keys = keys.clone();
            runtime.spawn(async move { final_reads(&shared, i, &keys, deadline).await })
        })
        .collect();
    for (i, reader) in (1..=args.nodes).zip(readers) {
        let (records, missing) = runtime
            .block_on(reader)
            .unwrap_or_else(|_| (Vec::new(), keys.clone()));
        finals.extend(records);
        if !missing.is_empty() {
            let node = lock().label(i);
            unread.push(format!("{node} could not read {} keys", missing.len()));
        }
    }
    lock().reap();
    let crashes = lock().crashes();
    lock().stop_all();
    let mut records: Vec<Record> = logs
        .iter()
        .flat_map(|l| l.records.iter().cloned())
        .collect();
    records.extend(finals);
    let malformed: Vec<String> = logs
        .iter()
        .flat_map(|l| l.malformed.iter().cloned())
        .collect();
    let connect_failures = logs.iter().map(|l| l.connect_failures).sum();
    let history: Vec<synod_check::Operation> = records
        .iter()
        .map(|r| synod_check::Operation {
            client: r.client,
            op: r.op.clone(),
            outcome: r.outcome.clone(),
            invoke: r.invoke,
            complete: r.complete.max(r.invoke),
        })
        .collect();
    let check_started = Instant::now();
    let verdict = synod_check::check(&history, &synod_check::CheckOptions::default());
    let check_time = check_started.elapsed();
    let mut problems = Vec::new();
    if let Err(e) = heal_result {
        problems.push(format!("healing failed: {e}"));
    }
    if !writable {
        problems.push("no write succeeded within 30 s after healing".into());
    }
    problems.extend(client_failures);
    problems.extend(unread);
    problems.extend(crashes);
    problems.extend(malformed.iter().take(5).cloned());
    if malformed.len() > 5 {
        problems.push(format!(
            "... and {} more malformed replies",
            malformed.len() - 5
        ));
    }
    let counters = report::count_counters(&records);
    if counters.lost > 0 || counters.phantom > 0 {
        problems.push(format!(
            "counters: {} acknowledged increments lost, {} unexplained",
            counters.lost, counters.phantom
        ));
    }
    let report = RunReport {
        seed,
        dir: dir.clone(),
        network: net.describe(),
        fallback,
        kinds: kinds.iter().map(|k| k.name()).collect(),
        skipped: skipped.iter().map(|k| k.name()).collect(),
        nodes: args.nodes,
        clients: args.clients,
        load: (load_start, load_end),
        healed_at,
        records,
        faults,
        connect_failures,
        verdict,
        check_time,
        counters,
        problems,
    };
    report.write_files()?;
    drop(net);
    if report.passed() && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

/// Waits until a write is acknowledged by some node.
fn wait_writable(net: &Network, procs: &Procs, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if crate::signals::requested() {
            return false;
        }
        if let Some(leader) = find_leader(net, procs) {
            let reply = call(
                net.resp_addr(leader),
                &[b"SET", b"chaos-ready", b"1"],
                Duration::from_secs(2),
            );
            if matches!(reply, Ok(synod_resp::Reply::Simple(ref s)) if s == "OK") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
