//! The job scheduler example as its README runs it: three processes of the
//! example's binary, one per node. The master's process is killed with
//! SIGKILL; another process must become master and run jobs, and the killed
//! one, restarted on its data directory, must recover and rejoin.
//!
//! The binary is the one `cargo test` builds with the examples
//! (`target/<profile>/examples/job_scheduler`); `cargo test --test all`
//! alone does not build it, and this test then fails saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The example's binary beside this test's (`.../deps/all-HASH` →
/// `.../examples/job_scheduler`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile_dir.join("examples").join("job_scheduler")
}

/// Three consecutive free loopback ports (the example takes a base port).
fn free_base_port() -> u16 {
    crate::common::free_port_block(3)
}

/// One node's process, its output lines arriving on `lines`.
struct Proc {
    id: u32,
    child: Child,
}

/// A line of some node's output.
struct Line {
    id: u32,
    text: String,
}

fn spawn(id: u32, base: u16, dir: &Path, lines: &mpsc::Sender<Line>) -> Proc {
    let mut child = Command::new(example_binary())
        .args(["--id", &id.to_string()])
        .args(["--base-port", &base.to_string()])
        .arg("--dir")
        .arg(dir)
        .args(["--submit-every-ms", "100", "--job-ms", "20"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("stdout");
    let lines = lines.clone();
    std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(Line { id, text }).is_err() {
                return;
            }
        }
    });
    Proc { id, child }
}

/// Waits for a line for which `found` returns something.
fn wait_for<T>(
    lines: &mpsc::Receiver<Line>,
    within: Duration,
    what: &str,
    mut found: impl FnMut(&Line) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(t) = found(&line) {
                    return t;
                }
            }
            Err(_) => panic!("no line saying {what} within {within:?}"),
        }
    }
}

/// The node of a "node N: ran job ..." line that recorded its run.
fn ran_by(line: &Line) -> Option<u32> {
    (line.text.starts_with(&format!("node {}: ran job", line.id)) && line.text.ends_with(": ok"))
        .then_some(line.id)
}

#[test]
fn the_example_survives_kill_9_of_its_master_process_and_a_restart() {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or \
         `cargo build -p synod --example job_scheduler` first",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port();
    let (tx, lines) = mpsc::channel();
    let mut procs: Vec<Proc> = (1..=3).map(|id| spawn(id, base, dir.path(), &tx)).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A master runs and records jobs.
        let master = wait_for(&lines, Duration::from_secs(60), "a recorded run", ran_by);
        let k = procs.iter().position(|p| p.id == master).expect("a node");
        procs[k].child.kill().expect("SIGKILL");
        procs[k].child.wait().expect("reaped");
        let killed_at = Instant::now();
        // Another process takes over and records runs of its own.
        let mut runs = 0;
        let successor = wait_for(
            &lines,
            Duration::from_secs(30),
            "three runs by another master",
            |line| {
                let by = ran_by(line).filter(|id| *id != master)?;
                runs += 1;
                (runs >= 3).then_some(by)
            },
        );
        let failover = killed_at.elapsed();
        assert!(
            failover < Duration::from_secs(20),
            "took {failover:?} to run jobs again"
        );
        // The killed node restarts on its data directory and rejoins.
        procs[k] = spawn(master, base, dir.path(), &tx);
        wait_for(
            &lines,
            Duration::from_secs(30),
            "the restarted node ready",
            |line| (line.id == master && line.text.contains("ready")).then_some(()),
        );
        // It takes part: its own submissions are accepted through the log.
        wait_for(
            &lines,
            Duration::from_secs(30),
            "a job submitted by the restarted node",
            |line| {
                (line.id == master
                    && line.text.starts_with(&format!("node {master}: submitted"))
                    && line.text.contains(": job "))
                .then_some(())
            },
        );
        successor
    }));
    for proc in &mut procs {
        let _ = proc.child.kill();
        let _ = proc.child.wait();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
