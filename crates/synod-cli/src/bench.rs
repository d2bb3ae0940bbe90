//! `synod bench`: a closed-loop load generator for anything that speaks RESP
//! (Synod, Redis), reporting throughput and latency percentiles.
//!
//! Each client holds one connection (clients are spread over the given
//! addresses) and keeps `--pipeline` requests in flight: it sends a batch,
//! waits for every reply, and sends the next. Every request's latency is the
//! time from its batch being written to its reply arriving, recorded in an
//! HdrHistogram (µs, 3 significant digits). A warm-up period runs first and
//! is not recorded.

use bytes::BytesMut;
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_resp::{parse_reply, write_request, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Servers to load, comma-separated HOST:PORT; clients are spread over them.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: String,
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

/// A run's result.
pub struct BenchResult {
    pub label: String,
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
            // The latency CDF, for plots: (ms, fraction of requests at or below).
            "cdf": self
                .latency
                .iter_quantiles(1)
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let value = vec![b'x'; args.value_size];
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let addr = addrs[c as usize % addrs.len()];
            let spec = ClientSpec {
                addr,
                pipeline: args.pipeline,
                keys: args.keys,
                read_ratio: args.read_ratio,
                value: value.clone(),
                seed: args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(c)),
            };
            tasks.push(tokio::spawn(client(spec, measuring.clone(), stop.clone())));
        }
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
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

struct ClientSpec {
    addr: SocketAddr,
    pipeline: u32,
    keys: u64,
    read_ratio: f64,
    value: Vec<u8>,
    seed: u64,
}

async fn client(
    spec: ClientSpec,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> ClientResult {
    let mut result = ClientResult {
        latency: new_histogram(),
        errors: 0,
        first_error: None,
    };
    let fail = |result: &mut ClientResult, why: String| {
        result.errors += 1;
        result.first_error.get_or_insert(why);
    };
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = BytesMut::with_capacity(4096);
    let mut input = BytesMut::with_capacity(64 << 10);
    let mut key = String::new();
    while !stop.load(Ordering::Relaxed) {
        let mut stream = match TcpStream::connect(spec.addr).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut result, format!("connect {}: {e}", spec.addr));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        input.clear();
        'connection: while !stop.load(Ordering::Relaxed) {
            out.clear();
            for _ in 0..spec.pipeline {
                key.clear();
                let _ = write!(key, "key:{:012}", rng.gen_range(0..spec.keys));
                if rng.gen_bool(spec.read_ratio) {
                    write_request(&mut out, &[b"GET", key.as_bytes()]);
                } else {
                    write_request(&mut out, &[b"SET", key.as_bytes(), &spec.value]);
                }
            }
            let sent = Instant::now();
            if let Err(e) = stream.write_all(&out).await {
                fail(&mut result, format!("write: {e}"));
                break;
            }
            let mut answered = 0;
            while answered < spec.pipeline {
                match parse_reply(&mut input) {
                    Ok(Some(reply)) => {
                        answered += 1;
                        let micros = sent.elapsed().as_micros() as u64;
                        match reply {
                            Reply::Error(e) => fail(&mut result, e),
                            // Only replies inside the measured window count.
                            _ if measuring.load(Ordering::Relaxed)
                                && !stop.load(Ordering::Relaxed) =>
                            {
                                result.latency.saturating_record(micros.max(1));
                            }
                            _ => {}
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        fail(&mut result, format!("bad reply: {e}"));
                        break 'connection;
                    }
                }
                match stream.read_buf(&mut input).await {
                    Ok(0) => {
                        fail(&mut result, "server closed the connection".into());
                        break 'connection;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        fail(&mut result, format!("read: {e}"));
                        break 'connection;
                    }
                }
            }
        }
    }
    result
}
