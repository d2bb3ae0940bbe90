//! Bounded `synod chaos` runs: real `synod server` processes under kill -9,
//! SIGSTOP and partitions (network namespaces when this runs as root with
//! `ip` and `iptables`; loopback with kill and pause otherwise), their
//! history checked for linearizability. And the negative control: a cluster
//! that answers reads from local state must be reported not linearizable.
//!
//! The runs take about two minutes in all but little CPU (a quarter of two
//! cores for one run: the nodes wait on fsync and the nemesis on its
//! timers), so they run alongside each other and the other tests, each on
//! its own ports and namespace index.

use std::process::{Command, Stdio};

/// `--network` for the runs with partitions: `netns` where namespaces
/// should work (root, `ip` and `iptables` present, and `unshare -n` may
/// make a network namespace: a container without the right fails there),
/// so that a setup failure fails the test instead of quietly running on
/// loopback without partitions; `auto` elsewhere (loopback, kill and pause
/// only).
fn network() -> &'static str {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root
        && works("ip", &["-V"])
        && works("iptables", &["-V"])
        && works("unshare", &["-n", "true"])
    {
        "netns"
    } else {
        "auto"
    }
}

/// Runs `synod chaos` with `args`; returns its exit code and stdout.
fn chaos(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("chaos")
        .arg("--dir")
        .arg(dir.path())
        .args(args)
        .output()
        .expect("run synod chaos");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        // Keep a failing run's history and logs for whoever reads the CI log.
        let kept = dir.keep();
        eprintln!("chaos run directory kept at {}", kept.display());
    }
    (out.status.code(), stdout)
}

#[test]
fn two_runs_under_kill_pause_and_partitions_are_linearizable() {
    let (code, stdout) = chaos(&[
        "--runs",
        "2",
        "--duration",
        "30",
        "--nemesis",
        "kill,pause,partition",
        "--network",
        network(),
        "--seed",
        "1000",
        "--net-index",
        "201",
        "--base-port",
        "7600",
    ]);
    assert_eq!(code, Some(0), "chaos runs failed:\n{stdout}");
    assert!(stdout.contains("runs: 2, violations: 0"), "{stdout}");
    assert_eq!(
        stdout.matches("verdict:  linearizable").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn local_reads_without_the_log_are_caught() {
    // Isolations only (a partition that cuts one node off from the others;
    // `partition` also draws bridges and one-way cuts, which expose no stale
    // read), and many clients: a node runs on one thread, so a
    // node resumed from a pause (or restarted) takes in its peers' backlog
    // before the requests that arrived with it, and its stale window is
    // rarely seen; an isolated follower answering 30 clients from its own
    // state is (with kill,pause,partition and 10 clients, 1 run in 4 was
    // caught after the switch to one thread, 4 in 4 before). Three runs
    // (seeds 2000 to 2002), any of which must catch it: one run of 20 s
    // with three partitions missed it once in CI (2026-12-01) while passing
    // alone 4 times in 4, and two such runs both missed once (2026-12-02:
    // a client of the isolated node blocks on its first write, so it reads
    // stale data only until then); a miss is a matter of timing, not of
    // the seed, so each run is an independent chance. The first run that
    // catches it ends the test (usually the first: 20 s instead of 60).
    // Isolations need namespaces: on loopback the run would have no fault
    // at all and nothing to catch.
    if network() != "netns" {
        eprintln!("skipped: no network namespaces here (needs root, ip, iptables, unshare -n)");
        return;
    }
    let (code, stdout) = chaos(&[
        "--unsafe-local-reads",
        "--stop-at-violation",
        "--runs",
        "3",
        "--duration",
        "20",
        "--clients",
        "30",
        "--nemesis",
        "isolate",
        "--network",
        "netns",
        "--seed",
        "2000",
        "--net-index",
        "202",
        "--base-port",
        "7800",
    ]);
    assert_eq!(code, Some(1), "expected a violation:\n{stdout}");
    assert!(stdout.contains("NOT LINEARIZABLE"), "{stdout}");
}

/// Nodes replaced by new nodes under new ids (removed, then joined through
/// another node) while others are killed: the history stays linearizable,
/// the replaced slots serve the final reads, and a replacement happened.
#[test]
fn replacing_nodes_under_kills_is_linearizable() {
    let (code, stdout) = chaos(&[
        "--duration",
        "20",
        "--nemesis",
        "membership,kill",
        "--network",
        "loopback",
        "--seed",
        "3000",
        "--base-port",
        "8000",
    ]);
    assert_eq!(code, Some(0), "chaos run failed:\n{stdout}");
    assert!(stdout.contains("verdict:  linearizable"), "{stdout}");
    let replaces: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("membership: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(replaces >= 1, "no node was replaced:\n{stdout}");
}
