//! `synod`: a replicated key-value server that speaks the Redis protocol.
//!
//! - `synod server --id N --peers 1=H:P,2=H:P,3=H:P --resp H:P --data-dir DIR [--http H:P]`
//!   and `--tls-cert F --tls-key F --tls-ca F` (or `--insecure-peer-links` on loopback)
//! - `synod server --id 4 --join MEMBER-RESP-H:P --paxos H:P --resp H:P --data-dir DIR ...`
//! - `synod member list|add|remove|promote --cluster H:P ...`, `synod leader transfer --cluster H:P --to N`
//! - `synod certs --out DIR --nodes 1,2,3 [--hosts H,...] [--cluster NAME] [--force]`
//! - `synod cluster [--nodes 3] [--base-port 7000] [--data-dir ./synod-data]`
//! - `synod chaos [--runs N] [--duration S] [--nemesis kill,pause,partition,...]`
//! - `synod bench [--protocol resp|etcd] [--addr H:P,...] [--clients N] [--json F] [--csv F]`
//! - `synod bench-plot [--csv results.csv] [--json-dir DIR] [--out DIR]`

#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!(
    "choose one allocator feature: mimalloc needs --no-default-features (jemalloc is the default)"
);

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (before `main`); the
/// `_RJEM_MALLOC_CONF` environment variable still overrides them. Freed
/// pages go back to the system after about a second rather than ten:
/// `muzzy_decay_ms:0` hands them back outright (`MADV_DONTNEED`), not
/// lazily, so RSS shows what is in use. A server also starts jemalloc's
/// background thread ([`prepare_allocator`]), which does that
/// purging on time even when the node goes quiet: without it a node that
/// loaded a million keys (or compacted its log) and then went quiet kept
/// ~100 MiB of free pages resident until some later allocation got round to
/// it. Measured: the same CPU per pipelined SET either way.
///
/// The background thread is not asked for here: jemalloc would create it
/// while it initialises, at the first allocation, and a process that
/// cannot create a thread then dies with a misleading "memory allocation
/// failed"; and `synod member`, `synod certs` and the other short-lived
/// commands have no use for it.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Why the background purging thread is not running.
#[cfg(feature = "jemalloc")]
#[derive(Debug, PartialEq, Eq)]
enum PurgingError {
    /// jemalloc could not create the thread (it printed why, with the
    /// errno, on stderr); purging was switched back off, so that threads
    /// purge as they allocate again.
    NotStarted,
    /// Creating it failed and switching it back off failed too: freed
    /// memory may stay resident.
    Stuck,
}

/// Writes jemalloc's `background_thread` setting.
#[cfg(feature = "jemalloc")]
fn set_background_thread(on: bool) -> std::ffi::c_int {
    let mut on = on;
    // SAFETY: the name is NUL-terminated; `background_thread` is a bool
    // setting, written from `on`, a live bool of the length given; nothing
    // is read back (no old value pointer).
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"background_thread".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&mut on as *mut bool).cast::<std::ffi::c_void>(),
            std::mem::size_of::<bool>(),
        )
    }
}

/// Starts jemalloc's background purging thread (see [`MALLOC_CONF`]),
/// unless `_RJEM_MALLOC_CONF` sets `background_thread` itself.
///
/// jemalloc marks background threads enabled before it creates the first
/// one and leaves the mark when creation fails (`ctl.c`,
/// `background_thread_ctl`): every thread would then leave purging to a
/// thread that does not exist, and freed memory would never go back to
/// the system. So a failure is followed by switching the setting off
/// (`set` is [`set_background_thread`]; a parameter for the tests).
#[cfg(feature = "jemalloc")]
fn start_background_purging(
    conf: Option<&str>,
    mut set: impl FnMut(bool) -> std::ffi::c_int,
) -> Result<(), PurgingError> {
    let set_in_conf = conf.is_some_and(|conf| {
        conf.split(',')
            .any(|option| option.split(':').next() == Some("background_thread"))
    });
    if set_in_conf {
        return Ok(());
    }
    if set(true) == 0 {
        return Ok(());
    }
    if set(false) == 0 {
        Err(PurgingError::NotStarted)
    } else {
        Err(PurgingError::Stuck)
    }
}

/// What a server does about the allocator before it starts: with jemalloc,
/// its background purging thread; a failure is logged, not fatal.
pub(crate) fn prepare_allocator() {
    #[cfg(feature = "jemalloc")]
    match start_background_purging(
        std::env::var("_RJEM_MALLOC_CONF").ok().as_deref(),
        set_background_thread,
    ) {
        Ok(()) => {}
        Err(PurgingError::NotStarted) => tracing::warn!(
            "jemalloc could not start its background purging thread (its own message above \
             says why): freed memory goes back to the system as later allocations happen"
        ),
        Err(PurgingError::Stuck) => tracing::error!(
            "jemalloc could not start its background purging thread (its own message above \
             says why), nor switch it back off: freed memory may stay resident"
        ),
    }
}

mod admin_client;
mod bench;
mod certs;
mod chaos;
mod client_limits;
mod cluster;
mod join;
mod member;
mod server;
mod signals;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "synod",
    version,
    about = "A replicated key-value store (Multi-Paxos) that speaks the Redis protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one replica.
    Server(Box<server::ServerArgs>),
    /// Shows or changes the cluster's membership (through any member's RESP
    /// port; followers forward changes to the leader).
    Member(member::MemberArgs),
    /// Leadership: `synod leader transfer --cluster H:P --to N`.
    Leader(member::LeaderArgs),
    /// Starts a local cluster of `synod server` processes on 127.0.0.1.
    Cluster(cluster::ClusterArgs),
    /// Creates a cluster CA and node credentials for TLS peer links.
    ///
    /// Writes DIR/ca.pem, DIR/ca-key.pem, and DIR/node-ID.pem and
    /// DIR/node-ID-key.pem per node (keys mode 0600). Each node certificate
    /// names node-ID.CLUSTER.synod, which peers check. Refuses to replace an
    /// existing CA without --force.
    Certs(certs::CertsArgs),
    /// Closed-loop load against RESP servers (Synod or Redis) or etcd (v3
    /// API): throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Draws PNG plots from `synod bench` results: throughput against
    /// clients, and latency CDFs.
    ///
    /// Writes OUT/throughput.png (ops/s against clients, log-log, SET and
    /// GET side by side, from the CSV's pipeline-1 rows with read ratio 0
    /// or 1) and OUT/latency-cdf.png (the CDFs of those runs with
    /// --cdf-clients clients, from the JSON files). A run's system, one line
    /// each, is its label up to the first '/' (e.g. synod/set-c50), as
    /// bench/side-by-side.sh labels runs.
    BenchPlot(bench::plot::PlotArgs),
    /// Runs a real cluster under faults (kill, pause, partitions) with
    /// concurrent clients and checks the history for linearizability.
    Chaos(chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::main(*args),
        Command::Member(args) => member::main(args),
        Command::Leader(args) => member::leader_main(args),
        Command::Cluster(args) => cluster::main(args),
        Command::Certs(args) => certs::main(args),
        Command::Chaos(args) => chaos::main(args),
        Command::Bench(args) => bench::main(args),
        Command::BenchPlot(args) => bench::plot::main(args),
    }
}

#[cfg(all(test, feature = "jemalloc"))]
mod allocator_tests {
    use std::ffi::{c_void, CStr};

    /// Reads one of jemalloc's `opt.*` values through `mallctl`.
    fn opt<T: Default>(name: &CStr) -> T {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `name` is NUL-terminated; `value` is a live T of `len`
        // bytes, the size jemalloc's documentation gives for these options
        // (bool, ssize_t), and jemalloc writes at most `len` bytes to it.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut value as *mut T).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "mallctl {name:?}");
        assert_eq!(len, std::mem::size_of::<T>());
        value
    }

    #[test]
    fn jemalloc_starts_with_our_options() {
        // The test binary has main.rs's global allocator and its
        // `_rjem_malloc_conf`: a wrong symbol name or a malformed string
        // leaves jemalloc's defaults (10 s decay).
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            return; // overridden on purpose
        }
        assert_eq!(opt::<isize>(c"opt.dirty_decay_ms"), 1000);
        assert_eq!(opt::<isize>(c"opt.muzzy_decay_ms"), 0);
        // Not at start (see MALLOC_CONF): a server asks for it.
        assert!(!opt::<bool>(c"opt.background_thread"));
        super::start_background_purging(None, super::set_background_thread)
            .expect("background thread");
        assert!(opt::<bool>(c"background_thread"));
    }

    /// The calls `start_background_purging` makes, with the answers given.
    fn purging_calls(
        conf: Option<&str>,
        answers: &[i32],
    ) -> (Result<(), super::PurgingError>, Vec<bool>) {
        let mut calls = Vec::new();
        let result = super::start_background_purging(conf, |on| {
            let answer = answers.get(calls.len()).copied().unwrap_or(0);
            calls.push(on);
            answer
        });
        (result, calls)
    }

    #[test]
    fn a_thread_that_does_not_start_is_switched_back_off() {
        use super::PurgingError::*;
        // EFAULT: what jemalloc answers when it cannot create the thread.
        assert_eq!(purging_calls(None, &[0]), (Ok(()), vec![true]));
        assert_eq!(
            purging_calls(None, &[14, 0]),
            (Err(NotStarted), vec![true, false])
        );
        assert_eq!(
            purging_calls(None, &[14, 14]),
            (Err(Stuck), vec![true, false])
        );
    }

    #[test]
    fn only_a_background_thread_setting_in_the_environment_is_left_alone() {
        for conf in [
            "background_thread:false",
            "narenas:2,background_thread:true",
        ] {
            assert_eq!(purging_calls(Some(conf), &[]), (Ok(()), vec![]), "{conf}");
        }
        for conf in ["max_background_threads:1", "dirty_decay_ms:0", ""] {
            assert_eq!(
                purging_calls(Some(conf), &[]),
                (Ok(()), vec![true]),
                "{conf}"
            );
        }
    }
}
