//! The real WAL on the simulated file system, crashed at random points: many
//! seeds of random appends, syncs and checkpoints, with the power cut between
//! any two file operations (inside checkpoints too) and now and then an
//! fsync that fails. After every crash, recovery must succeed and return the
//! state after some prefix of the history that includes every acknowledged
//! operation: every record whose sync returned Ok is recovered, or superseded
//! by a checkpoint that was itself part of that prefix.
//!
//! The same run with `legacy_checkpoint_recovery` (the first release's rule)
//! must fail: that is the negative control the simulator's
//! `--inject torn-checkpoint` relies on.

use crate::common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use synod_core::{Ballot, GroupId, InstanceId, NodeId, Record, Snapshot, Value};
use synod_storage::{Recovered, SimFs, Storage, Wal, WalOptions};

/// The durable state the log should hold, as `MemStorage` keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    snapshots: BTreeMap<GroupId, Snapshot>,
    records: Vec<Record>,
}

#[derive(Clone, Debug)]
enum Event {
    Record(Record),
    Checkpoint {
        group: GroupId,
        snapshot: Snapshot,
        records: Vec<Record>,
    },
}

impl Model {
    fn of(recovered: &Recovered) -> Model {
        Model {
            snapshots: recovered.snapshots.clone(),
            records: recovered.records.clone(),
        }
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Record(record) => self.records.push(record.clone()),
            Event::Checkpoint {
                group,
                snapshot,
                records,
            } => {
                self.records.retain(|r| r.group() != *group);
                self.records.extend_from_slice(records);
                self.snapshots.insert(*group, snapshot.clone());
            }
        }
    }
}

fn random_record(rng: &mut ChaCha8Rng, group: GroupId) -> Record {
    let ballot = Ballot {
        round: rng.gen_range(0..50),
        node: NodeId(rng.gen_range(0..3)),
    };
    let instance = InstanceId(rng.gen_range(0..100));
    match rng.gen_range(0..3) {
        0 => Record::Promise { group, ballot },
        1 => {
            let len = rng.gen_range(0..300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            Record::Accept {
                group,
                instance,
                ballot,
                value: Value::batch(vec![bytes::Bytes::from(bytes)]),
            }
        }
        _ => Record::Chosen {
            group,
            instance,
            value: synod_core::ChosenValue::Learned(Value::Noop),
        },
    }
}

/// Runs one seed; `Err` describes the first recovery that is not a state
/// the acknowledged history allows.
fn run_seed(seed: u64, legacy: bool) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sim = SimFs::new();
    let dir = Path::new("/node");
    let opts = WalOptions {
        segment_bytes_max: rng.gen_range(300..3000),
        preallocate_bytes: [0, 512, 4096][rng.gen_range(0..3)],
        legacy_checkpoint_recovery: legacy,
        salt: None,
    };
    // Each open draws another salt (as a node does from the OS), from the
    // seed so that runs repeat: a segment restarted or started at one open
    // must not be read or appended to with another open's salt.
    let open = |sim: &SimFs, salt: u64| {
        let opts = WalOptions {
            salt: Some(salt),
            ..opts.clone()
        };
        Wal::open_on(Arc::new(sim.clone()), dir, opts)
    };
    let (mut wal, recovered) = open(&sim, rng.gen()).map_err(|e| format!("first open: {e}"))?;
    let mut base = Model::of(&recovered);
    let mut events: Vec<Event> = Vec::new();
    let mut acked = 0;
    let mut point = 0u64;
    let mut faulted = false;
    let steps = rng.gen_range(20..80);
    for step in 0..=steps {
        let action = if step == steps {
            9
        } else {
            rng.gen_range(0..10)
        };
        let outcome = match action {
            0..=3 => {
                let group = GroupId(rng.gen_range(0..3));
                let records: Vec<Record> = (0..rng.gen_range(1..4))
                    .map(|_| random_record(&mut rng, group))
                    .collect();
                let result = wal.append(&records);
                if result.is_ok() {
                    events.extend(records.into_iter().map(Event::Record));
                }
                result
            }
            4..=6 => {
                if rng.gen_bool(0.15) {
                    sim.power_off_after(Some(rng.gen_range(0..4)));
                } else if rng.gen_bool(0.05) {
                    sim.fail_fsync_after(0);
                    faulted = true;
                }
                let result = wal.sync();
                if result.is_ok() {
                    acked = events.len();
                }
                result
            }
            7..=8 => {
                let group = GroupId(rng.gen_range(0..3));
                point += 1;
                let snapshot = common::snapshot(point, format!("state {point}").as_bytes());
                let records: Vec<Record> = (0..rng.gen_range(0..4))
                    .map(|_| random_record(&mut rng, group))
                    .collect();
                if rng.gen_bool(0.5) {
                    // Somewhere inside the checkpoint's two dozen steps.
                    sim.power_off_after(Some(rng.gen_range(0..24)));
                }
                events.push(Event::Checkpoint {
                    group,
                    snapshot: snapshot.clone(),
                    records: records.clone(),
                });
                let result = wal.checkpoint(group, &snapshot, &records);
                if result.is_ok() {
                    acked = events.len();
                }
                result
            }
            _ => Err(synod_storage::StorageError::Poisoned),
        };
        let crash = match outcome {
            Ok(()) => false,
            Err(_) if action == 9 => true,
            Err(err) => {
                if !(sim.is_powered_off() || faulted) {
                    return Err(format!("step {step}: an error without a fault: {err}"));
                }
                assert!(wal.is_poisoned(), "an error poisons the log");
                true
            }
        };
        if !crash {
            continue;
        }
        drop(wal);
        sim.crash(&mut rng);
        faulted = false;
        let (reopened, recovered) = open(&sim, rng.gen())
            .map_err(|e| format!("step {step}: recovery failed after a crash: {e}"))?;
        wal = reopened;
        let found = Model::of(&recovered);
        let mut candidate = base.clone();
        for event in &events[..acked] {
            candidate.apply(event);
        }
        let mut allowed = candidate == found;
        for event in &events[acked..] {
            if allowed {
                break;
            }
            candidate.apply(event);
            allowed = candidate == found;
        }
        if !allowed {
            return Err(format!(
                "step {step}: recovered a state no prefix of the history with all {acked} \
                 acknowledged of {} events gives:\n found {found:?}\n acked {:?}",
                events.len(),
                {
                    let mut m = base.clone();
                    events[..acked].iter().for_each(|e| m.apply(e));
                    m
                }
            ));
        }
        base = found;
        events.clear();
        acked = 0;
    }
    Ok(())
}

#[test]
fn every_acknowledged_record_survives_random_crashes() {
    for seed in 0..1000 {
        if let Err(err) = run_seed(seed, false) {
            panic!("seed {seed}: {err}");
        }
    }
}

/// The negative control: the first release's checkpoint rule loses
/// acknowledged records under the same crashes.
#[test]
fn the_legacy_checkpoint_rule_is_caught() {
    let caught = (0..300).find(|seed| run_seed(*seed, true).is_err());
    assert!(
        caught.is_some(),
        "300 seeds did not catch the legacy checkpoint rule"
    );
}
