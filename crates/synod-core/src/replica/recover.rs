//! Rebuilding a replica from its durable records after a restart.

use super::Replica;
use crate::config::{Config, ConfigError};
use crate::ids::InstanceId;
use crate::message::AppliedMark;
use crate::record::{ChosenValue, Record};
use crate::value::Snapshot;
use thiserror::Error;

/// The durable records cannot be replayed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecoverError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A chosen mark points at an accepted value that no earlier record holds.
    /// Durability is a prefix, so this means the records are corrupt.
    #[error("chosen mark for {instance} refers to an accepted value no earlier record holds")]
    DanglingChosen {
        /// The instance of the mark.
        instance: InstanceId,
    },
}

impl Replica {
    /// Rebuilds a replica from its latest durable snapshot (if any) and the
    /// records it persisted (records of other groups are skipped). The caller
    /// restores its state machine from the snapshot; the next `take_ready` then
    /// hands out every value known chosen after the snapshot's point (from
    /// instance 0 without a snapshot).
    pub fn recover<'a>(
        cfg: Config,
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = &'a Record>,
    ) -> Result<Replica, RecoverError> {
        let mut replica = Replica::new(cfg)?;
        let group = replica.cfg.group;
        let snapshot_point = snapshot
            .as_ref()
            .map_or(InstanceId(0), |s| s.meta.applied_end);
        for record in records {
            if record.group() != group {
                continue;
            }
            match record {
                Record::Promise { ballot, .. } => {
                    replica.acceptor.promised = replica.acceptor.promised.max(*ballot);
                }
                Record::Accept {
                    instance,
                    ballot,
                    value,
                    ..
                } => {
                    replica.acceptor.promised = replica.acceptor.promised.max(*ballot);
                    replica
                        .acceptor
                        .accepted
                        .insert(*instance, (*ballot, value.clone()));
                }
                Record::Chosen {
                    instance, value, ..
                } => {
                    let value = match value {
                        ChosenValue::Learned(value) => value.clone(),
                        ChosenValue::Accepted(ballot) => {
                            match replica.acceptor.accepted.get(instance) {
                                Some((accepted_ballot, value)) if accepted_ballot == ballot => {
                                    value.clone()
                                }
                                // A mark handed out before a checkpoint but
                                // appended after it: the checkpoint already
                                // holds the chosen value (or the snapshot
                                // covers the instance) and dropped the
                                // accepted one. Only one value can be chosen
                                // per instance, so the mark adds nothing.
                                _ if replica.learner.chosen.contains_key(instance)
                                    || *instance < snapshot_point =>
                                {
                                    continue;
                                }
                                _ => {
                                    return Err(RecoverError::DanglingChosen {
                                        instance: *instance,
                                    })
                                }
                            }
                        }
                    };
                    replica.learner.chosen.insert(*instance, value);
                }
            }
        }
        replica.round_seen = replica.acceptor.promised.round;
        if let Some(mut snapshot) = snapshot {
            let point = snapshot.meta.applied_end;
            match &snapshot.memberships {
                // One older than the schedule the node joined with knows
                // less (see `install`): the join schedule stays.
                Some(_) if point < replica.schedule_base => {}
                Some(memberships) => {
                    replica.schedule = memberships.clone();
                    replica.schedule_base = point;
                }
                // Written before memberships could change: the group still
                // has the membership it started with.
                None => snapshot.memberships = Some(replica.schedule.since(point)),
            }
            let learner = &mut replica.learner;
            learner.chosen = learner.chosen.split_off(&point);
            replica.acceptor.accepted = replica.acceptor.accepted.split_off(&point);
            learner.chosen_end = point;
            learner.applied_end = point;
            learner.commit_seen = point;
            learner.checksum = snapshot.meta.checksum;
            learner.history.clear();
            learner.history.push_back(AppliedMark {
                applied_end: point,
                checksum: snapshot.meta.checksum,
            });
            learner.compacted_end = point;
            learner.values_from = point;
            learner.tail_bytes = 0;
            learner.snapshot = Some(snapshot);
        }
        replica.advance_chosen_end();
        Ok(replica)
    }
}
