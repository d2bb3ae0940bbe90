//! `synod`: a replicated key-value server that speaks the Redis protocol.
//!
//! - `synod server --id N --peers 1=H:P,2=H:P,3=H:P --resp H:P --data-dir DIR [--http H:P]`
//! - `synod cluster [--nodes 3] [--base-port 7000] [--data-dir ./synod-data]`
//! - `synod chaos [--runs N] [--duration S] [--nemesis kill,pause,partition,...]`

mod bench;
mod chaos;
mod cluster;
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
    Server(server::ServerArgs),
    /// Starts a local cluster of `synod server` processes on 127.0.0.1.
    Cluster(cluster::ClusterArgs),
    /// Closed-loop load against RESP servers (Synod or Redis): throughput
    /// and latency percentiles.
    Bench(bench::BenchArgs),
    /// Runs a real cluster under faults (kill, pause, partitions) with
    /// concurrent clients and checks the history for linearizability.
    Chaos(chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::main(args),
        Command::Cluster(args) => cluster::main(args),
        Command::Chaos(args) => chaos::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
