//! The job scheduler example (`examples/job_scheduler`) under failover:
//! three in-process nodes (real WAL, TCP on loopback), each on a tokio
//! runtime of its own that runs its node and its master loop. The master is
//! killed by shutting its runtime down in the background without a word to
//! its peers (no leadership hand-over, no shutdown: as `kill -9` leaves
//! them); later the new master drops leadership. Jobs must go on under each
//! new master, and no two runs by different nodes may overlap in time (the
//! nodes share this machine's clock, so their `unix_ms` times compare).
//!
//! In-process rather than three processes: the example binary is not built
//! by `cargo test --test all`, and a killed runtime is what a killed process
//! is to its peers (its sockets close, its unsynced state is gone).

#[path = "../../examples/job_scheduler/scheduler.rs"]
#[allow(dead_code)]
mod scheduler;

use crate::common::free_peers;
use bytes::Bytes;
use scheduler::{master_step, parse_run, Run, Scheduler, Step};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synod::{Bootstrap, Node, NodeConfig, NodeId, PeerSecurity};
use tokio::runtime::Runtime;

const JOB: Duration = Duration::from_millis(20);
const MARGIN: Duration = Duration::from_millis(50);

/// A node and its master loop on a runtime of their own.
struct Proc {
    id: u32,
    runtime: Option<Runtime>,
    node: Arc<Node>,
    stop: Arc<AtomicBool>,
}

/// Every run any master loop finished, as it saw it (recorded or not).
type Seen = Arc<Mutex<Vec<Run>>>;

fn start(id: u32, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path, seen: &Seen) -> Proc {
    let mut cfg =
        NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("n{id}"))).expect("member");
    cfg.bootstrap = Bootstrap::New;
    cfg.peer_security = Some(PeerSecurity::InsecureLoopback);
    cfg.read_lease = Some(cfg.default_read_lease());
    // Requests made while no master is elected wait for one (a loaded CI
    // machine may take seconds), rather than fail with an unknown outcome.
    cfg.request_timeout = Duration::from_secs(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let node = Arc::new(
        runtime
            .block_on(Node::start(cfg, Scheduler::default()))
            .expect("start"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (loop_node, loop_stop, loop_seen) = (Arc::clone(&node), Arc::clone(&stop), seen.clone());
    runtime.spawn(async move {
        while !loop_stop.load(Ordering::Relaxed) {
            match master_step(&loop_node, id, JOB, MARGIN).await {
                Step::Ran {
                    job,
                    ballot,
                    started_ms,
                    ended_ms,
                    ..
                } => loop_seen.lock().expect("lock").push(Run {
                    job,
                    node: id,
                    ballot: (ballot.round, ballot.node.0),
                    started_ms,
                    ended_ms,
                }),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    Proc {
        id,
        runtime: Some(runtime),
        node,
        stop,
    }
}

impl Proc {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    fn submit(&self, name: &str) -> String {
        let out = self
            .block_on(self.node.propose(Bytes::from(format!("submit {name}"))))
            .expect("submit");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn query(&self, query: &'static [u8]) -> String {
        let out = self
            .block_on(self.node.read(Bytes::from_static(query)))
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Waits until no job is pending.
    fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.query(b"pending") != "0" {
            assert!(
                Instant::now() < deadline,
                "jobs still pending after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_master(&self) -> bool {
        self.block_on(self.node.master_lease()).is_some()
    }

    /// As `kill -9` to its peers: the runtime stops at once, dropping the
    /// node's tasks mid-step; nothing is handed over or closed politely.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whose turn: the node that is master now (waits for one).
fn master_of(procs: &[Proc], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        if let Some(k) = procs
            .iter()
            .position(|p| p.runtime.is_some() && p.is_master())
        {
            return k;
        }
        assert!(Instant::now() < deadline, "no master within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runs_in_log(proc: &Proc) -> Vec<Run> {
    proc.query(b"runs")
        .lines()
        .map(|line| parse_run(line).expect("a run"))
        .collect()
}

/// No two runs by different nodes overlap in time.
fn assert_no_overlap(runs: &[Run]) {
    for (k, a) in runs.iter().enumerate() {
        for b in &runs[k + 1..] {
            let overlap = a.started_ms < b.ended_ms && b.started_ms < a.ended_ms;
            assert!(
                a.node == b.node || !overlap,
                "two masters ran jobs at once: {a:?} and {b:?}"
            );
        }
    }
}

#[test]
fn jobs_go_on_after_the_master_is_killed_and_never_run_on_two_masters_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = free_peers(3);
    let seen: Seen = Arc::default();
    let mut procs: Vec<Proc> = (1..=3)
        .map(|id| start(id, &peers, dir.path(), &seen))
        .collect();
    for p in &procs {
        p.block_on(p.node.ready()).expect("ready");
    }
    let first = master_of(&procs, Duration::from_secs(10));
    for k in 0..10 {
        procs[k % 3].submit(&format!("a{k}"));
    }
    procs[first].drain(Duration::from_secs(20));
    let first_ballot = runs_in_log(&procs[first]).last().expect("a run").ballot;
    assert!(runs_in_log(&procs[first])
        .iter()
        .all(|r| r.node == procs[first].id));

    // Kill the master; the others elect a new one, which runs new jobs.
    procs[first].kill();
    let alive: Vec<usize> = (0..3).filter(|k| *k != first).collect();
    for k in 0..10 {
        procs[alive[k % 2]].submit(&format!("b{k}"));
    }
    procs[alive[0]].drain(Duration::from_secs(30));
    let second = master_of(&procs, Duration::from_secs(10));
    assert_ne!(second, first);
    let runs = runs_in_log(&procs[alive[0]]);
    let after_kill: Vec<&Run> = runs.iter().filter(|r| r.ballot > first_ballot).collect();
    assert!(
        after_kill.len() >= 10 && after_kill.iter().all(|r| r.node == procs[second].id),
        "the new master did not run the new jobs: {runs:?}"
    );

    // The new master drops leadership: the last node takes over (the
    // dropped one does not campaign meanwhile) and runs the next jobs.
    assert!(procs[second].block_on(procs[second].node.drop_leadership()));
    let third = alive
        .iter()
        .copied()
        .find(|k| *k != second)
        .expect("one more");
    for k in 0..5 {
        procs[third].submit(&format!("c{k}"));
    }
    procs[third].drain(Duration::from_secs(30));
    assert_eq!(master_of(&procs, Duration::from_secs(10)), third);
    let runs = runs_in_log(&procs[third]);
    let last: Vec<&Run> = runs.iter().rev().take(5).collect();
    assert!(
        last.iter().all(|r| r.node == procs[third].id),
        "jobs after the drop ran elsewhere: {runs:?}"
    );

    // Every job ran; no two masters at once, in the log or as the master
    // loops saw it (a run whose record was lost included).
    let jobs: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.job).collect();
    assert_eq!(jobs, (1..=25).collect());
    assert_no_overlap(&runs);
    assert_no_overlap(&seen.lock().expect("lock"));
    for mut p in procs {
        p.stop.store(true, Ordering::Relaxed);
        if p.runtime.is_some() {
            p.block_on(p.node.shutdown());
        }
        p.kill();
    }
}
