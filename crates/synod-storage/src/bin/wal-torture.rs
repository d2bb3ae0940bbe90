//! `wal-torture DIR`: a process to be killed with SIGKILL at random moments by
//! `tests/kill9.rs`. It appends records with consecutive ids to the WAL in
//! batches, syncs, and prints `durable N` once id N is durable. Every 300 ids
//! it checkpoints (state = highest id). On start it checks that what it
//! recovers is exactly a snapshot plus consecutive ids, prints
//! `recovered N`, and continues from there.

use bytes::Bytes;
use std::io::Write;
use std::path::PathBuf;
use synod_core::{Ballot, Checksum, GroupId, InstanceId, Record, Snapshot, SnapshotMeta, Value};
use synod_storage::{Storage, Wal, WalOptions};

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: wal-torture DIR");
        std::process::exit(2);
    };
    let opts = WalOptions {
        segment_bytes_max: 64 << 10,
        ..WalOptions::default()
    };
    let (mut wal, recovered) = match Wal::open(&dir, opts) {
        Ok(opened) => opened,
        Err(err) => {
            eprintln!("open failed: {err}");
            std::process::exit(3);
        }
    };
    let group = GroupId(0);
    let mut last = recovered
        .snapshots
        .get(&group)
        .map_or(0, |s| s.meta.applied_end.0);
    for record in recovered.records_of(group) {
        let Record::Accept { instance, .. } = record else {
            eprintln!("unexpected record {record:?}");
            std::process::exit(4);
        };
        if instance.0 != last + 1 {
            eprintln!("gap: id {} after {last}", instance.0);
            std::process::exit(5);
        }
        last = instance.0;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "recovered {last}");
    let value = Value::batch(vec![Bytes::from(vec![0x5Au8; 200])]);
    loop {
        let batch: Vec<Record> = (1..=7)
            .map(|k| Record::Accept {
                group,
                instance: InstanceId(last + k),
                ballot: Ballot::ZERO,
                value: value.clone(),
            })
            .collect();
        if let Err(err) = wal.append(&batch).and_then(|_| wal.sync()) {
            eprintln!("write failed: {err}");
            std::process::exit(6);
        }
        last += 7;
        let _ = writeln!(out, "durable {last}");
        let _ = out.flush();
        if last % 300 < 7 {
            let snapshot = Snapshot {
                memberships: None,
                meta: SnapshotMeta {
                    applied_end: InstanceId(last),
                    checksum: Checksum(last),
                },
                data: Bytes::from(last.to_le_bytes().to_vec()),
            };
            if let Err(err) = wal.checkpoint(group, &snapshot, &[]) {
                eprintln!("checkpoint failed: {err}");
                std::process::exit(7);
            }
        }
    }
}
