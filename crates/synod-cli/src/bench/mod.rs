//! `synod bench`: a closed-loop load generator for Synod, Redis (RESP) and
//! etcd (v3 gRPC API), reporting throughput and latency percentiles;
//! `synod bench-plot` draws the results ([`plot`]).
//!
//! Each client holds one connection (clients are spread over the given
//! addresses) and keeps `--pipeline` requests in flight: it sends a batch,
//! waits for every reply, and sends the next. Every request's latency is the
//! time from its batch being sent to its reply arriving, recorded in an
//! HdrHistogram (µs, 3 significant digits). A warm-up period runs first and
//! is not recorded. Both protocols draw the same keys and operations from
//! the same seeds, so a run against Synod and one against etcd make the same
//! requests in the same order per client.

#[cfg(feature = "etcd")]
mod etcd;
pub mod plot;
mod resp;

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client waits before retrying after a failed connect (and, for
/// etcd, after a batch with an error).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The wire protocol of the servers under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Redis protocol: SET key value / GET key (Synod, Redis).
    Resp,
    /// etcd v3 gRPC API: Put / linearizable Range of one key.
    Etcd,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Resp => "resp",
            Protocol::Etcd => "etcd",
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Servers to load, comma-separated HOST:PORT; clients are spread over them.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: String,
    /// Protocol the servers speak: `resp` (Synod, Redis) or `etcd` (etcd v3
    /// gRPC; SET is a Put, GET a linearizable Range; pipelined requests are
    /// concurrent streams on the client's one connection).
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    protocol: Protocol,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Distinct keys (chosen uniformly).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Fraction of requests that are GET (the rest are SET), 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Requests each client keeps in flight.
    #[arg(long, default_value_t = 1)]
    pipeline: u32,
    /// Seed for the key and operation choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also append the result as one CSV row to this file (header if new).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// A label for this run in JSON and CSV (e.g. "synod-set-50").
    #[arg(long, default_value = "")]
    label: String,
}

/// What one client saw.
struct ClientResult {
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl ClientResult {
    fn new() -> ClientResult {
        ClientResult {
            latency: new_histogram(),
            errors: 0,
            first_error: None,
        }
    }

    /// A request failed (error reply, lost connection, timeout). Errors
    /// count in the warm-up too: a run that needed retries should say so.
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// A request was answered after `latency`; it counts only inside the
    /// measured window.
    fn succeed(&mut self, window: &Window, latency: Duration) {
        if window.measuring() {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency.saturating_record(micros.max(1));
        }
    }
}

/// The measured window, shared by the runner and every client.
#[derive(Clone)]
struct Window {
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Window {
    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed) && !self.stopped()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A run's result.
pub struct BenchResult {
    pub label: String,
    pub protocol: Protocol,
    pub clients: u32,
    pub pipeline: u32,
    pub read_ratio: f64,
    pub value_size: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Histogram<u64>,
}

impl BenchResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// A table row set, for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>8} {:>8} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "label",
            "clients",
            "pipeline",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors"
        );
        let _ = write!(
            s,
            "{:<12} {:>8} {:>8} {:>12.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8}",
            if self.label.is_empty() {
                "-"
            } else {
                &self.label
            },
            self.clients,
            self.pipeline,
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0,
            self.errors
        );
        if let Some(e) = &self.first_error {
            let _ = write!(s, "\nfirst error: {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let value = serde_json::json!({
            "label": self.label,
            "protocol": self.protocol.name(),
            "clients": self.clients,
            "pipeline": self.pipeline,
            "read_ratio": self.read_ratio,
            "value_size": self.value_size,
            "seconds": self.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "throughput": self.throughput(),
            "latency_ms": {
                "p50": self.ms(0.5),
                "p90": self.ms(0.9),
                "p99": self.ms(0.99),
                "p999": self.ms(0.999),
                "max": self.latency.max() as f64 / 1000.0,
                "mean": self.latency.mean() / 1000.0,
            },
            // The latency CDF, for plots: (ms, fraction of requests at or
            // below), 4 points per halving of the distance to 100%.
            "cdf": self
                .latency
                .iter_quantiles(4)
                .map(|v| [v.value_iterated_to() as f64 / 1000.0, v.quantile_iterated_to()])
                .collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    pub const CSV_HEADER: &'static str =
        "label,clients,pipeline,read_ratio,value_size,seconds,requests,errors,ops_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms";

    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{:.3},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3}",
            self.label,
            self.clients,
            self.pipeline,
            self.read_ratio,
            self.value_size,
            self.seconds,
            self.requests,
            self.errors,
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0
        )
    }
}

pub fn main(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(result) => {
            println!("{}", result.table());
            if let Err(e) = write_outputs(&args, &result) {
                eprintln!("synod bench: {e}");
                return ExitCode::FAILURE;
            }
            if result.requests == 0 {
                eprintln!("synod bench: no request succeeded");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synod bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn write_outputs(args: &BenchArgs, result: &BenchResult) -> Result<(), String> {
    if let Some(path) = &args.json {
        std::fs::write(path, result.json())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        let new = !path.exists();
        let mut text = String::new();
        if new {
            text.push_str(BenchResult::CSV_HEADER);
            text.push('\n');
        }
        text.push_str(&result.csv_row());
        text.push('\n');
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn run(args: &BenchArgs) -> Result<BenchResult, String> {
    let addrs: Vec<SocketAddr> = args
        .addr
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("'{s}' is not HOST:PORT (an IP address and a port)"))
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("--addr names no server".into());
    }
    if args.clients == 0 || args.pipeline == 0 || args.keys == 0 || args.duration == 0 {
        return Err("--clients, --pipeline, --keys and --duration must be positive".into());
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err("--read-ratio must be between 0 and 1".into());
    }
    if args.protocol == Protocol::Etcd && !cfg!(feature = "etcd") {
        return Err("this synod was built without etcd support: \
             cargo build --release --features etcd (needs protoc: apt-get install protobuf-compiler)"
            .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let window = Window {
            measuring: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let value = vec![b'x'; args.value_size];
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let spec = ClientSpec {
                addr: addrs[c as usize % addrs.len()],
                pipeline: args.pipeline,
                keys: args.keys,
                read_ratio: args.read_ratio,
                value: value.clone(),
                seed: args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(c)),
            };
            tasks.push(match args.protocol {
                Protocol::Resp => tokio::spawn(resp::client(spec, window.clone())),
                #[cfg(feature = "etcd")]
                Protocol::Etcd => tokio::spawn(etcd::client(spec, window.clone())),
                #[cfg(not(feature = "etcd"))]
                Protocol::Etcd => unreachable!("refused above without the etcd feature"),
            });
        }
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        window.measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
        window.stop.store(true, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let mut latency = new_histogram();
        let mut errors = 0;
        let mut first_error = None;
        for task in tasks {
            let result = task.await.map_err(|e| format!("a client failed: {e}"))?;
            latency
                .add(&result.latency)
                .map_err(|e| format!("cannot merge histograms: {e}"))?;
            errors += result.errors;
            if first_error.is_none() {
                first_error = result.first_error;
            }
        }
        Ok(BenchResult {
            label: args.label.clone(),
            protocol: args.protocol,
            clients: args.clients,
            pipeline: args.pipeline,
            read_ratio: args.read_ratio,
            value_size: args.value_size,
            seconds,
            requests: latency.len(),
            errors,
            first_error,
            latency,
        })
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; larger values saturate.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one client sends, and to whom.
struct ClientSpec {
    addr: SocketAddr,
    pipeline: u32,
    keys: u64,
    read_ratio: f64,
    value: Vec<u8>,
    seed: u64,
}

/// One request of the workload; the key is written next to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Get,
    Set,
}

impl ClientSpec {
    /// Draws the next request: a key (`key:` and 12 digits, uniform over
    /// `keys`) into `key`, then GET with probability `read_ratio`. Both
    /// protocols call this, in this order, so they see the same requests.
    fn next_operation(&self, rng: &mut ChaCha8Rng, key: &mut String) -> Operation {
        key.clear();
        let _ = write!(key, "key:{:012}", rng.gen_range(0..self.keys));
        if rng.gen_bool(self.read_ratio) {
            Operation::Get
        } else {
            Operation::Set
        }
    }
}
