//! The job scheduler's replicated state and its master loop, shared by the
//! example's binary (`main.rs`) and its integration test
//! (`crates/synod/tests/all/job_scheduler.rs`).
//!
//! Jobs are submitted through the log (`submit NAME`). Only the master runs
//! them: before each job it asks for its master lease and starts the job
//! only when the lease outlasts it, then records `ran JOB NODE BALLOT ...`
//! through the log. A master that dies after running a job and before its
//! record is chosen leaves the job pending, and the next master runs it
//! again: jobs run at least once, never on two masters at the same time.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use synod::{ApplyContext, Ballot, Node, SnapshotStream, StateMachine};

/// The longest job name accepted (longer ones are refused).
pub const NAME_BYTES_MAX: usize = 200;
/// Pending jobs the queue holds at most (more are refused).
pub const PENDING_MAX: usize = 100_000;
/// Runs the state keeps (the oldest are dropped, counted in `runs_dropped`).
pub const RUNS_KEPT_MAX: usize = 10_000;

/// One run of a job, as recorded in the log by the master that ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub job: u64,
    pub node: u32,
    /// The master's ballot (round, node): it orders masters.
    pub ballot: (u64, u32),
    /// When the job started and ended, in ms since the Unix epoch on the
    /// master's clock (for people reading the log, and for the test, whose
    /// nodes share one machine's clock).
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// The replicated state: jobs waiting, runs recorded.
#[derive(Debug, Default)]
pub struct Scheduler {
    next_job: u64,
    pending: BTreeMap<u64, String>,
    runs: Vec<Run>,
    runs_dropped: u64,
}

impl Scheduler {
    fn submit(&mut self, name: &str) -> String {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return format!("error: a job name has 1 to {NAME_BYTES_MAX} bytes");
        }
        if self.pending.len() >= PENDING_MAX {
            return "error: the queue is full".to_string();
        }
        self.next_job += 1;
        self.pending.insert(self.next_job, name.to_string());
        format!("job {}", self.next_job)
    }

    fn ran(&mut self, run: Run) -> String {
        let first = self.pending.remove(&run.job).is_some();
        if self.runs.len() >= RUNS_KEPT_MAX {
            self.runs.remove(0);
            self.runs_dropped += 1;
        }
        self.runs.push(run);
        if first {
            "ok".to_string()
        } else {
            "ok (ran again)".to_string()
        }
    }

    /// The snapshot's text: a header, the pending jobs, then the runs.
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(out);
        writeln!(out, "{} {}", self.next_job, self.runs_dropped)?;
        writeln!(out, "{}", self.pending.len())?;
        for (id, name) in &self.pending {
            writeln!(out, "{id} {name}")?;
        }
        for run in &self.runs {
            writeln!(out, "{}", Scheduler::encode_run(run))?;
        }
        out.flush()
    }

    fn encode_run(run: &Run) -> String {
        format!(
            "{} {} {} {} {} {}",
            run.job, run.node, run.ballot.0, run.ballot.1, run.started_ms, run.ended_ms
        )
    }
}

/// Parses the fields of a run (`encode_run`'s text).
pub fn parse_run(text: &str) -> Option<Run> {
    let mut fields = text.split(' ').map(|f| f.parse::<u64>().ok());
    let mut next = || fields.next().flatten();
    let run = Run {
        job: next()?,
        node: u32::try_from(next()?).ok()?,
        ballot: (next()?, u32::try_from(next()?).ok()?),
        started_ms: next()?,
        ended_ms: next()?,
    };
    next().is_none().then_some(run)
}

impl StateMachine for Scheduler {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let Ok(text) = std::str::from_utf8(command) else {
            return Bytes::from_static(b"error: not UTF-8");
        };
        let reply = match text.split_once(' ') {
            Some(("submit", name)) => self.submit(name),
            Some(("ran", fields)) => match parse_run(fields) {
                Some(run) => self.ran(run),
                None => "error: ran JOB NODE ROUND BALLOT_NODE STARTED_MS ENDED_MS".to_string(),
            },
            _ => "error: unknown command".to_string(),
        };
        Bytes::from(reply)
    }

    fn query(&self, query: &[u8], _ctx: &ApplyContext) -> Bytes {
        let text = match query {
            b"next" => self
                .pending
                .first_key_value()
                .map(|(id, name)| format!("{id} {name}"))
                .unwrap_or_default(),
            b"pending" => self.pending.len().to_string(),
            b"runs" => {
                let mut out = String::new();
                for run in &self.runs {
                    let _ = writeln!(out, "{}", Scheduler::encode_run(run));
                }
                out
            }
            _ => "error: queries are next, pending, runs".to_string(),
        };
        Bytes::from(text)
    }

    fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        self.write_snapshot(&mut out)
            .expect("a Vec takes every write");
        Bytes::from(out)
    }

    /// The snapshot is written straight into its file, off the event loop,
    /// from a copy of the state taken now (bounded: at most `PENDING_MAX`
    /// jobs and `RUNS_KEPT_MAX` runs); `restore` reads it from a mapping of
    /// the file.
    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        let view = Scheduler {
            next_job: self.next_job,
            pending: self.pending.clone(),
            runs: self.runs.clone(),
            runs_dropped: self.runs_dropped,
        };
        Some(Box::new(move |out: &mut dyn std::io::Write| {
            view.write_snapshot(out)
        }))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(snapshot).map_err(|_| "snapshot is not UTF-8")?;
        let mut lines = text.lines();
        let bad = |what: &str| format!("bad scheduler snapshot: {what}");
        let head: Vec<u64> = lines
            .next()
            .ok_or_else(|| bad("no header"))?
            .split(' ')
            .map(|f| f.parse().map_err(|_| bad("header")))
            .collect::<Result<_, _>>()?;
        let [next_job, runs_dropped] = head[..] else {
            return Err(bad("header fields"));
        };
        let pending_len: usize = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| bad("pending count"))?;
        let mut restored = Scheduler {
            next_job,
            runs_dropped,
            ..Scheduler::default()
        };
        for _ in 0..pending_len.min(PENDING_MAX) {
            let line = lines.next().ok_or_else(|| bad("pending job"))?;
            let (id, name) = line.split_once(' ').ok_or_else(|| bad("pending job"))?;
            let id = id.parse().map_err(|_| bad("job id"))?;
            restored.pending.insert(id, name.to_string());
        }
        for line in lines.take(RUNS_KEPT_MAX) {
            restored
                .runs
                .push(parse_run(line).ok_or_else(|| bad("run"))?);
        }
        *self = restored;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch on this machine's clock (for the
/// record only: the lease never depends on it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one master's step did, for the caller to print.
#[derive(Debug)]
pub enum Step {
    /// Not master now (or not yet confirmed by a majority).
    NotMaster,
    /// Master, and no job waits.
    Idle,
    /// Master, but the lease left is shorter than a job: wait for the next
    /// heartbeat round to renew it.
    LeaseTooShort,
    /// Ran `job`; `recorded` is the log's answer to the record (or why it
    /// failed: the job then stays pending and the next master runs it).
    Ran {
        job: u64,
        name: String,
        ballot: Ballot,
        /// When it started and ended (`unix_ms`).
        started_ms: u64,
        ended_ms: u64,
        recorded: Result<String, String>,
    },
    /// A read or proposal failed (leadership lost, no quorum).
    Failed(String),
}

/// One step of the master loop on `node` (this process is node `id`): if
/// this node is master, run the next pending job (taking `job_time`)
/// provided the lease outlasts it by `margin`, and record it in the log.
pub async fn master_step(node: &Node, id: u32, job_time: Duration, margin: Duration) -> Step {
    if node.master_lease().await.is_none() {
        return Step::NotMaster;
    }
    // A linearizable read: every job submitted before it, every run
    // recorded before it.
    let next = match node.read(Bytes::from_static(b"next")).await {
        Ok(next) => next,
        Err(err) => return Step::Failed(err.to_string()),
    };
    let next = String::from_utf8_lossy(&next).into_owned();
    let Some((job, name)) = next.split_once(' ') else {
        return Step::Idle;
    };
    let Ok(job) = job.parse::<u64>() else {
        return Step::Failed(format!("bad answer to next: {next}"));
    };
    // Check the lease again right before acting: the read took time, and
    // the process may have stalled.
    let Some(lease) = node.master_lease().await else {
        return Step::NotMaster;
    };
    if !lease.covers(job_time + margin) {
        return Step::LeaseTooShort;
    }
    let started_ms = unix_ms();
    // The job itself: here, a sleep. It must end within the lease.
    tokio::time::sleep(job_time).await;
    let ended_ms = unix_ms();
    if !lease.is_valid() {
        // The margin did not cover a stall: say so loudly; the record's
        // ballot still tells masters apart.
        eprintln!("node {id}: job {job} overran the master lease (a stall longer than the margin)");
    }
    let record = format!(
        "ran {job} {id} {} {} {started_ms} {ended_ms}",
        lease.ballot.round, lease.ballot.node.0
    );
    let recorded = node
        .propose(Bytes::from(record))
        .await
        .map(|out| String::from_utf8_lossy(&out).into_owned())
        .map_err(|err| err.to_string());
    Step::Ran {
        job,
        name: name.to_string(),
        ballot: lease.ballot,
        started_ms,
        ended_ms,
        recorded,
    }
}
