//! Snapshots: compacting the log below a state machine snapshot, checkpoint
//! records that let the storage drop old log segments, and sending a snapshot
//! to a peer that needs compacted instances, in bounded chunks.

use super::{Gate, Replica};
use crate::ids::{InstanceId, NodeId};
use crate::message::{AppliedMark, Body};
use crate::record::{ChosenValue, Record};
use crate::value::{Snapshot, SnapshotMeta};
use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Snapshot transfer attempts without progress before the source is dropped.
const TRANSFER_RETRIES_MAX: u32 = 5;

/// A snapshot being received in chunks.
#[derive(Debug)]
pub(super) struct Incoming {
    meta: SnapshotMeta,
    total_len: u64,
    source: NodeId,
    data: BytesMut,
    /// Requests since the last chunk arrived.
    retries: u32,
}

/// A snapshot that cannot be used to compact the log.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CompactError {
    /// The snapshot claims instances this replica has not applied.
    #[error("snapshot at {snapshot} is beyond the applied instance {applied}")]
    BeyondApplied {
        /// The snapshot's point.
        snapshot: InstanceId,
        /// This replica's applied point.
        applied: InstanceId,
    },
    /// The snapshot's checksum differs from ours at that instance: it is not
    /// a snapshot of this replica's state.
    #[error("snapshot checksum at {0} differs from the applied checksum there")]
    ChecksumMismatch(InstanceId),
}

impl Replica {
    /// Drops every chosen value below the snapshot's point, which the state
    /// machine has made durable in `snapshot`. Call it only after the snapshot
    /// is durable. The replica keeps the snapshot to send to peers that lag
    /// behind it. A snapshot older than the current one is ignored.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), CompactError> {
        let point = snapshot.meta.applied_end;
        if point > self.learner.applied_end {
            return Err(CompactError::BeyondApplied {
                snapshot: point,
                applied: self.learner.applied_end,
            });
        }
        if let Ok(k) = self
            .learner
            .history
            .binary_search_by_key(&point, |m| m.applied_end)
        {
            if self.learner.history[k].checksum != snapshot.meta.checksum {
                return Err(CompactError::ChecksumMismatch(point));
            }
        }
        if point <= self.learner.compacted_end && self.learner.snapshot.is_some() {
            return Ok(());
        }
        self.learner.chosen = self.learner.chosen.split_off(&point);
        self.learner.compacted_end = point;
        self.learner.snapshot = Some(snapshot);
        Ok(())
    }

    /// Records that, replayed after the latest snapshot, rebuild this
    /// replica's durable state: its promise, its accepted values and the chosen
    /// values it still keeps. Storage writes them into a fresh log segment;
    /// once they and the snapshot are durable, every older segment can go.
    pub fn checkpoint_records(&self) -> Vec<Record> {
        let group = self.cfg.group;
        let mut records = vec![Record::Promise {
            group,
            ballot: self.acceptor.promised,
        }];
        for (instance, (ballot, value)) in &self.acceptor.accepted {
            records.push(Record::Accept {
                group,
                instance: *instance,
                ballot: *ballot,
                value: value.clone(),
            });
        }
        for (instance, value) in &self.learner.chosen {
            records.push(Record::Chosen {
                group,
                instance: *instance,
                value: ChosenValue::Learned(value.clone()),
            });
        }
        records
    }

    /// Sends the piece of our snapshot that starts at `offset`.
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId, offset: u64) {
        let Some(snapshot) = self.learner.snapshot.as_ref() else {
            return;
        };
        let total_len = snapshot.data.len() as u64;
        if offset > total_len {
            return;
        }
        let start = offset as usize;
        let end = (start + self.cfg.snapshot_chunk_bytes_max).min(snapshot.data.len());
        let body = Body::SnapshotChunk {
            meta: snapshot.meta,
            total_len,
            offset,
            data: snapshot.data.slice(start..end),
        };
        self.send(to, body, Gate::Now);
    }

    pub(super) fn handle_snapshot_request(
        &mut self,
        from: NodeId,
        applied_end: InstanceId,
        offset: u64,
    ) {
        let current = self.learner.snapshot.as_ref().map(|s| s.meta.applied_end);
        match current {
            Some(point) if point == applied_end => self.send_snapshot_chunk(from, offset),
            // We compacted again since: start over with the newer snapshot.
            Some(_) => self.send_snapshot_chunk(from, 0),
            None => {}
        }
    }

    pub(super) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        total_len: u64,
        offset: u64,
        data: Bytes,
    ) {
        if meta.applied_end <= self.learner.applied_end || total_len > self.cfg.snapshot_bytes_max {
            return;
        }
        let same = self
            .learner
            .incoming
            .as_ref()
            .is_some_and(|incoming| incoming.meta == meta && incoming.total_len == total_len);
        if !same {
            if offset != 0 {
                return;
            }
            self.learner.incoming = Some(Incoming {
                meta,
                total_len,
                source: from,
                data: BytesMut::new(),
                retries: 0,
            });
        }
        let Some(incoming) = self.learner.incoming.as_mut() else {
            return;
        };
        if offset != incoming.data.len() as u64
            || offset + data.len() as u64 > total_len
            || (data.is_empty() && offset < total_len)
        {
            // Out of order, duplicate or malformed: the tick re-requests.
            return;
        }
        incoming.data.extend_from_slice(&data);
        incoming.source = from;
        incoming.retries = 0;
        if (incoming.data.len() as u64) < total_len {
            let offset = incoming.data.len() as u64;
            let body = Body::SnapshotRequest {
                applied_end: meta.applied_end,
                offset,
            };
            self.learner.catchup_asked_tick = Some(self.now);
            self.send(from, body, Gate::Now);
            return;
        }
        let Some(incoming) = self.learner.incoming.take() else {
            return;
        };
        self.install(Snapshot {
            meta,
            data: incoming.data.freeze(),
        });
    }

    /// Asks the source of a stalled snapshot transfer for the next piece.
    /// Returns false when there is no transfer (or it was given up).
    pub(super) fn resume_snapshot_transfer(&mut self) -> bool {
        let Some(incoming) = self.learner.incoming.as_mut() else {
            return false;
        };
        incoming.retries += 1;
        if incoming.retries > TRANSFER_RETRIES_MAX {
            self.learner.incoming = None;
            return false;
        }
        let (to, body) = (
            incoming.source,
            Body::SnapshotRequest {
                applied_end: incoming.meta.applied_end,
                offset: incoming.data.len() as u64,
            },
        );
        self.send(to, body, Gate::Now);
        true
    }

    /// Replaces everything below the snapshot's point with the snapshot. Every
    /// instance below it is chosen (a snapshot only covers applied, hence
    /// chosen, instances), so nothing an acceptor must remember is lost: a
    /// promise reports our chosen prefix, and a new leader never proposes
    /// below it.
    fn install(&mut self, snapshot: Snapshot) {
        let point = snapshot.meta.applied_end;
        debug_assert!(point > self.learner.applied_end);
        // Values handed out but not yet taken are superseded by the snapshot.
        self.ready.apply.clear();
        self.learner.chosen = self.learner.chosen.split_off(&point);
        self.acceptor.accepted = self.acceptor.accepted.split_off(&point);
        self.learner.chosen_end = self.learner.chosen_end.max(point);
        self.learner.commit_seen = self.learner.commit_seen.max(point);
        self.learner.applied_end = point;
        self.learner.checksum = snapshot.meta.checksum;
        self.learner.history.clear();
        self.learner.history.push_back(AppliedMark {
            applied_end: point,
            checksum: snapshot.meta.checksum,
        });
        self.learner.compacted_end = point;
        self.learner.snapshot = Some(snapshot.clone());
        self.ready.install = Some(snapshot);
        self.advance_chosen_end();
        self.emit_apply();
    }
}
