//! `wal-bench`: throughput of the WAL with group commit, next to a raw
//! `fdatasync` loop on the same disk in the same run, and the disk footprint
//! of a long write load with snapshots and compaction.
//!
//! ```text
//! cargo run --release -p synod-storage --bin wal-bench -- [--dir DIR] [--seconds S] [--writes N]
//! ```

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_core::{
    Ballot, Config, GroupId, InstanceId, NodeId, Record, Replica, Snapshot, SnapshotMeta, Value,
};
use synod_storage::{GroupCommit, SnapshotPolicy, Storage, Wal, WalOptions};

struct Args {
    dir: PathBuf,
    seconds: f64,
    writes: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: std::env::temp_dir().join("synod-wal-bench"),
        seconds: 2.0,
        writes: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value()?),
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--writes" => args.writes = value()?.parse().map_err(|e| format!("--writes: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: wal-bench [--dir DIR] [--seconds S] [--writes N]".into())
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create bench directory");
    dir.to_path_buf()
}

/// Raw baseline: write `size` bytes then fdatasync, in a loop.
fn raw_fsync_loop(dir: &Path, size: usize, seconds: f64) -> (f64, f64) {
    let path = fresh(dir).join("raw");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open raw file");
    let block = vec![0xA5u8; size];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&block).expect("raw write");
        file.sync_data().expect("raw fdatasync");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, n as f64 * size as f64 / secs / 1e6)
}

/// `appenders` threads each appending one record of `size` payload bytes and
/// waiting for it to be durable, in a loop.
fn group_commit(dir: &Path, size: usize, appenders: usize, seconds: f64) -> (f64, f64, f64) {
    let (wal, _) = Wal::open(&fresh(dir), WalOptions::default()).expect("open wal");
    let shared = GroupCommit::new(wal);
    let stop = AtomicBool::new(false);
    let records = AtomicU64::new(0);
    let value = Value::batch(vec![Bytes::from(vec![7u8; size])]);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..appenders {
            let (shared, stop, records, value) = (&shared, &stop, &records, value.clone());
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let record = Record::Accept {
                        group: GroupId(t as u32),
                        instance: InstanceId(i),
                        ballot: Ballot::ZERO,
                        value: value.clone(),
                    };
                    shared.append_durable(&[record]).expect("append");
                    records.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let n = records.load(Ordering::Relaxed) as f64;
    let syncs = shared.syncs().max(1) as f64;
    (n / secs, n * size as f64 / secs / 1e6, n / syncs)
}

/// One appender writing `batch` records of `size` bytes per sync: the
/// large-batch case, compared with the raw sequential write rate.
fn bulk(dir: &Path, size: usize, batch: usize, seconds: f64) -> (f64, f64) {
    let (mut wal, _) = Wal::open(&fresh(dir), WalOptions::default()).expect("open wal");
    let value = Value::batch(vec![Bytes::from(vec![7u8; size])]);
    let records: Vec<Record> = (0..batch as u64)
        .map(|i| Record::Accept {
            group: GroupId(0),
            instance: InstanceId(i),
            ballot: Ballot::ZERO,
            value: value.clone(),
        })
        .collect();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        wal.append(&records).expect("append");
        wal.sync().expect("sync");
        n += batch as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, n as f64 * size as f64 / secs / 1e6)
}

/// One node, the real WAL, a small key-value state machine: `writes` SETs to
/// 1,000 keys in batches, a snapshot and checkpoint every 100 instances.
/// Returns (largest, final) bytes on disk.
fn compaction(dir: &Path, writes: u64) -> (u64, u64, f64) {
    let dir = fresh(dir);
    let (mut wal, _) = Wal::open(&dir, WalOptions::default()).expect("open wal");
    let mut cfg = Config::new(NodeId(1), vec![NodeId(1)]);
    cfg.batch_commands_max = 1000;
    let mut replica = Replica::new(cfg).expect("config");
    let mut state: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut high, mut written, mut last_snapshot) = (0u64, 0u64, 0u64);
    let policy = SnapshotPolicy {
        instances: 100,
        log_bytes: 8 << 20,
        ..Default::default()
    };
    let start = Instant::now();
    let mut ticks = 0;
    while replica.status().role != synod_core::RoleKind::Leader && ticks < 100 {
        replica.tick();
        ticks += 1;
        drive(&mut replica, &mut wal, &mut state);
    }
    while written < writes {
        for _ in 0..1000.min(writes - written) {
            let key = written % 1000;
            let mut command = key.to_le_bytes().to_vec();
            command.extend_from_slice(&written.to_le_bytes());
            command.extend_from_slice(&[0u8; 84]); // 100-byte commands
            replica.propose(Bytes::from(command)).expect("propose");
            written += 1;
        }
        drive(&mut replica, &mut wal, &mut state);
        let status = replica.status();
        if policy.due(
            status.applied_end.0 - last_snapshot,
            wal.bytes_since_checkpoint(),
        ) {
            let mut data = Vec::with_capacity(state.len() * 16);
            for (k, v) in &state {
                data.extend_from_slice(&k.to_le_bytes());
                data.extend_from_slice(&v.to_le_bytes());
            }
            let snapshot = Snapshot {
                memberships: None,
                meta: SnapshotMeta {
                    applied_end: status.applied_end,
                    checksum: status.checksum,
                },
                data: Bytes::from(data),
            };
            replica.compact(snapshot.clone()).expect("compact");
            wal.checkpoint(GroupId(0), &snapshot, &replica.checkpoint_records())
                .expect("checkpoint");
            last_snapshot = status.applied_end.0;
        }
        high = high.max(wal.disk_bytes());
    }
    (
        high,
        wal.disk_bytes(),
        written as f64 / start.elapsed().as_secs_f64(),
    )
}

fn drive(replica: &mut Replica, wal: &mut Wal, state: &mut BTreeMap<u64, u64>) {
    loop {
        let ready = replica.take_ready();
        if ready.is_empty() {
            return;
        }
        wal.append(&ready.persist).expect("append");
        wal.sync().expect("sync");
        for apply in &ready.apply {
            for command in apply.value.commands() {
                let key = u64::from_le_bytes(command[..8].try_into().unwrap_or([0; 8]));
                let value = u64::from_le_bytes(command[8..16].try_into().unwrap_or([0; 8]));
                state.insert(key, value);
            }
        }
        replica.persisted(ready.persist_through);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    println!(
        "# WAL benchmark in {} ({} s per cell)",
        args.dir.display(),
        args.seconds
    );
    println!();
    let (raw_small, _) = raw_fsync_loop(&args.dir, 100, args.seconds);
    let (_, raw_mb) = raw_fsync_loop(&args.dir, 4 << 20, args.seconds);
    println!("raw: write 100 B + fdatasync: {raw_small:.0} fsyncs/s");
    println!("raw: write 4 MiB + fdatasync: {raw_mb:.0} MB/s (sequential write rate)");
    println!();
    println!("| record | appenders | records/s | MB/s | records per fsync | vs raw |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in [100usize, 4096] {
        for appenders in [1usize, 8, 64] {
            let (rate, mb, batch) = group_commit(&args.dir, size, appenders, args.seconds);
            let versus = if size == 100 {
                format!("{:.2}x raw fsyncs/s x batch", rate / (raw_small * batch))
            } else {
                format!("{:.0}% of raw MB/s", 100.0 * mb / raw_mb)
            };
            println!("| {size} B | {appenders} | {rate:.0} | {mb:.1} | {batch:.1} | {versus} |");
        }
    }
    let (rate, mb) = bulk(&args.dir, 4096, 1024, args.seconds);
    println!(
        "| 4096 B | 1, 1024 records per sync | {rate:.0} | {mb:.1} | 1024 | {:.0}% of raw MB/s |",
        100.0 * mb / raw_mb
    );
    println!();
    let (high, end, rate) = compaction(&args.dir, args.writes);
    println!(
        "compaction: {} writes of 100 B to 1,000 keys, snapshot every 100 instances or 8 MiB of log: \
         largest data dir {:.1} KiB, at the end {:.1} KiB ({rate:.0} writes/s)",
        args.writes,
        high as f64 / 1024.0,
        end as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&args.dir);
}
