//! A replicated job scheduler: three processes, one per node, on loopback.
//! Jobs are submitted through the log; only the master runs them, checking
//! its master lease before each one, and records every run through the log.
//! Kill the master (Ctrl-C, `kill -9`): within about a second another node
//! is master and the jobs go on.
//!
//! ```sh
//! cargo run -p synod --example job_scheduler -- --id 1
//! cargo run -p synod --example job_scheduler -- --id 2
//! cargo run -p synod --example job_scheduler -- --id 3
//! ```
//!
//! Options: `--base-port P` (peers listen on P, P+1, P+2; default 7101),
//! `--dir D` (data directories D/node-N; default the system's temp folder
//! /synod-jobs), `--submit-every-ms M` (each node submits a job every M ms;
//! default 700, 0 for none), `--job-ms J` (how long a job runs; default 50).
//! A node restarted on its directory recovers and rejoins.

mod scheduler;

use bytes::Bytes;
use scheduler::{master_step, Scheduler, Step};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use synod::{Bootstrap, Node, NodeConfig, NodeId};

/// Time the lease must still hold after a job ends (a stall of the process
/// between the check and the end of the job must fit in it).
const MARGIN: Duration = Duration::from_millis(100);

struct Args {
    id: u32,
    base_port: u16,
    dir: PathBuf,
    submit_every_ms: u64,
    job_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        id: 0,
        base_port: 7101,
        dir: std::env::temp_dir().join("synod-jobs"),
        submit_every_ms: 700,
        job_ms: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--id" => args.id = u32::try_from(number()?).map_err(|_| "--id too large")?,
            "--base-port" => {
                args.base_port = u16::try_from(number()?).map_err(|_| "--base-port too large")?
            }
            "--dir" => args.dir = PathBuf::from(&value),
            "--submit-every-ms" => args.submit_every_ms = number()?,
            "--job-ms" => args.job_ms = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !(1..=3).contains(&args.id) {
        return Err("--id 1, 2 or 3 is required".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\nusage: job_scheduler --id N [options]"))?;
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3u16)
        .map(|k| {
            let port = args.base_port.saturating_add(k - 1);
            (
                NodeId(u32::from(k)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            )
        })
        .collect();
    let data_dir = args.dir.join(format!("node-{}", args.id));
    let first_start = !data_dir.exists();
    let mut cfg = NodeConfig::new(NodeId(args.id), peers, data_dir).ok_or("not a member")?;
    // An empty directory is a new cluster only at the very first start; a
    // node that lost its directory later must rebuild, never vote afresh.
    cfg.bootstrap = if first_start {
        Bootstrap::New
    } else {
        Bootstrap::Existing
    };
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    // The master lease is the leader read lease: it assumes every node's
    // monotonic clock runs within 1% of real time (see `synod::master`).
    cfg.read_lease = Some(cfg.default_read_lease());
    let node = Arc::new(Node::start(cfg, Scheduler::default()).await?);
    let status = node.ready().await?;
    println!(
        "node {} ready, leader {:?}",
        args.id,
        status.leader.map(|l| l.0)
    );
    if args.submit_every_ms > 0 {
        tokio::spawn(submit_jobs(
            Arc::clone(&node),
            args.id,
            Duration::from_millis(args.submit_every_ms),
        ));
    }
    let job_time = Duration::from_millis(args.job_ms);
    let mut was_master = false;
    loop {
        let step = master_step(&node, args.id, job_time, MARGIN).await;
        let master = !matches!(step, Step::NotMaster);
        if master != was_master {
            println!(
                "node {}: {}",
                args.id,
                if master {
                    "I am the master"
                } else {
                    "I am not the master"
                }
            );
            was_master = master;
        }
        match step {
            Step::Ran {
                job,
                name,
                ballot,
                started_ms,
                ended_ms,
                recorded,
            } => match recorded {
                Ok(out) => println!(
                    "node {}: ran job {job} ({name}) in {} ms as master of ballot {ballot}: {out}",
                    args.id,
                    ended_ms.saturating_sub(started_ms)
                ),
                Err(err) => println!(
                    "node {}: ran job {job}, but its record failed ({err}); the next master runs it again",
                    args.id
                ),
            },
            Step::Failed(err) => {
                println!("node {}: {err}", args.id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Step::NotMaster | Step::Idle | Step::LeaseTooShort => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Submits a job every `every`, through the log (any node may).
async fn submit_jobs(node: Arc<Node>, id: u32, every: Duration) {
    let mut count = 0u64;
    loop {
        tokio::time::sleep(every).await;
        count += 1;
        let command = format!("submit job-{count}-from-node-{id}");
        match node.propose(Bytes::from(command)).await {
            Ok(out) => println!(
                "node {id}: submitted job-{count}: {}",
                String::from_utf8_lossy(&out)
            ),
            Err(err) => println!("node {id}: submit failed: {err}"),
        }
    }
}
