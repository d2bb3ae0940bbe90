//! Snapshots: compacting the log below a state machine snapshot, checkpoint
//! records that let the storage drop old log segments, and sending a snapshot
//! to a peer that needs compacted instances, in bounded chunks.
//!
//! Two rules make a received snapshot exactly one that a peer wrote:
//!
//! 1. **One transfer is one snapshot from one source.** The snapshot's meta
//!    (point and log checksum) does not identify its bytes: a state machine
//!    need not encode the same state the same way on every replica (map
//!    order, allocator-dependent layout, a format upgrade), so pieces of two
//!    peers' snapshots of the same point may not fit together. A transfer is
//!    therefore the tuple [`Transfer`] (source, meta, length, digest of the
//!    bytes), fixed by its first piece; a piece of any other transfer is
//!    ignored (and counted) while it lasts.
//! 2. **The bytes are verified before install.** Every piece carries the
//!    xxh3-128 digest of the whole snapshot; the assembled bytes must hash to
//!    it, or the transfer is discarded and started again. Installing
//!    unverified bytes would make this replica's state differ from every
//!    peer's while its log checksum says they agree: a divergence nothing
//!    would detect.

use super::{Gate, Replica};
use crate::ids::{InstanceId, NodeId};
use crate::message::{AppliedMark, Body};
use crate::record::{ChosenValue, Record};
use crate::value::{Snapshot, SnapshotDigest, SnapshotMeta};
use bytes::Bytes;
use thiserror::Error;

/// Snapshot transfer attempts without progress before the source is dropped.
const TRANSFER_RETRIES_MAX: u32 = 5;

/// Pieces of a snapshot a receiver keeps asked for at once, at most (see
/// also `TRANSFER_WINDOW_BYTES`). The source is
/// stateless (each request answers the one piece at its offset), so a
/// receiver that asked for one piece per round trip moved a piece per round
/// trip: 84 KB in pieces of 151 bytes took 4.5 s in the simulator (seed
/// 611213 on 5 nodes), and on a long link a 1 MiB piece per round trip
/// bounds a transfer to 1 MiB/RTT. With a window the pieces stream. What is
/// in flight is bounded by the window (the source sends slices of the
/// snapshot it keeps anyway, the peer queues are bounded in messages); a
/// piece that arrives ahead of one before it waits (at most the window),
/// and the catch-up tick asks again from what was received when a piece is
/// lost (`resume_snapshot_transfer`).
const TRANSFER_WINDOW_CHUNKS: u64 = 8;

/// Bytes of a snapshot a receiver keeps asked for at once, at most (but at
/// least one piece). What is asked waits in the source's one queue to this
/// peer, ahead of its heartbeats and Accepts: with the default 1 MiB pieces
/// two are in flight (about 170 ms on a 100 Mbit/s link, against an election
/// timeout of 500 ms; eight would be 670 ms, and a leader that needs this
/// follower's acks would stand down for as long as the transfer lasts: the
/// review of this window).
const TRANSFER_WINDOW_BYTES: u64 = 2 << 20;

/// How many pieces of `piece` bytes a receiver keeps asked for.
fn window_pieces(piece: u64) -> u64 {
    (TRANSFER_WINDOW_BYTES / piece.max(1)).clamp(1, TRANSFER_WINDOW_CHUNKS)
}

/// What identifies one snapshot transfer: every piece of it has the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    /// The peer sending it; pieces from other peers are not part of it.
    pub(super) source: NodeId,
    /// The snapshot's point and log checksum.
    pub(super) meta: SnapshotMeta,
    /// The snapshot's length in bytes.
    pub(super) total_len: u64,
    /// The digest of the snapshot's bytes.
    pub(super) digest: SnapshotDigest,
}

/// A snapshot being received in chunks. Its bytes are kept by the
/// replica's [`crate::SnapshotSpool`], not here.
#[derive(Debug)]
pub(super) struct Incoming {
    transfer: Transfer,
    /// Bytes received so far (the spool holds them): a prefix of the
    /// source's snapshot, at most `transfer.total_len`, itself at most
    /// `Config::snapshot_bytes_max`.
    received: u64,
    /// The digest of those bytes, updated as they pass (rule 2).
    hasher: crate::value::SnapshotHasher,
    /// Requests since the last chunk arrived.
    retries: u32,
    /// Where the next request of the window starts: every piece below it
    /// was asked for (see `TRANSFER_WINDOW_CHUNKS`).
    asked_end: u64,
    /// The size of the source's pieces (its first piece's).
    piece: u64,
    /// Pieces of the window that arrived before those ahead of them, by
    /// offset: at most `TRANSFER_WINDOW_CHUNKS` of `piece` bytes.
    early: std::collections::BTreeMap<u64, Bytes>,
    /// The memberships the piece at offset 0 carried.
    memberships: crate::membership::Schedule,
}

/// Counters of the snapshot transfers a replica received, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotTransferStats {
    /// Pieces ignored because they belong to another transfer than the one
    /// in progress (another source, or another snapshot), start no
    /// transfer (not at offset 0, or larger than `snapshot_bytes_max`), or
    /// are malformed (past the snapshot's end, or empty before it).
    pub chunks_ignored: u64,
    /// Transfers whose assembled bytes did not match their digest; each was
    /// discarded and started again.
    pub digest_mismatches: u64,
    /// Snapshots installed from peers.
    pub installed: u64,
    /// Transfers dropped because the spool keeping their bytes failed (a
    /// full disk, say); each is asked for again. (The runtime's spool also
    /// stops the node on such a failure, as on a failed log write.)
    pub spool_errors: u64,
    /// Accepts this replica did not vote for because the values held back
    /// while its state machine was restored reached
    /// `Config::restore_backlog_bytes_max`. The leader re-sends those still
    /// unchosen every `retransmit_ticks`, and each declined copy counts.
    pub accepts_deferred: u64,
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
        self.compact_digested(snapshot, None)
    }

    /// [`Replica::compact`] with the digest of the snapshot's bytes, when the
    /// caller computed it while writing them (off the event loop): the
    /// replica then never hashes the whole snapshot itself, which for a
    /// large one would stall its event loop when a peer first asks for it.
    /// A wrong digest makes peers discard every transfer of this snapshot.
    pub fn compact_digested(
        &mut self,
        snapshot: Snapshot,
        digest: Option<SnapshotDigest>,
    ) -> Result<(), CompactError> {
        self.compact_checkpoint(snapshot, digest, true)
    }

    /// [`Replica::compact_digested`] for a checkpoint that may hold no state
    /// a peer could install (`sendable` false: a state machine that keeps
    /// its state on its own disk, see [`Replica::set_snapshot_sendable`]).
    /// Such a checkpoint never replaces one of the same point.
    pub fn compact_checkpoint(
        &mut self,
        snapshot: Snapshot,
        digest: Option<SnapshotDigest>,
        sendable: bool,
    ) -> Result<(), CompactError> {
        debug_assert!(digest.is_none_or(|d| d == SnapshotDigest::of(&snapshot.data)));
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
        // A snapshot at the point of the one we hold replaces it only when
        // ours cannot be sent (a checkpoint of a state machine that keeps its
        // state on its own disk): that is how a peer's need for a whole
        // snapshot is met while nothing is applied.
        if self.learner.snapshot.is_some()
            && (point < self.learner.compacted_end
                || (point == self.learner.compacted_end
                    && (self.learner.snapshot_sendable || !sendable)))
        {
            return Ok(());
        }
        let mut snapshot = snapshot;
        // The memberships are the log's, not the state machine's: this
        // replica knows them at any point it applied.
        snapshot.memberships = Some(self.schedule.since(point));
        self.learner.chosen = self.learner.chosen.split_off(&point);
        self.learner.compacted_end = point;
        self.recount_tail();
        self.learner.snapshot = Some(snapshot);
        self.learner.snapshot_digest = digest;
        self.learner.snapshot_sendable = sendable;
        self.prune_schedule();
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

    /// Sends the piece of our snapshot that starts at `offset`, with the
    /// digest of the whole snapshot (hashed once per snapshot, when first
    /// sent).
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId, offset: u64) {
        let learner = &self.learner;
        if !learner.snapshot_sendable
            || learner
                .snapshot
                .as_ref()
                .is_some_and(|s| offset <= s.data.len() as u64)
        {
            // The peer installs this snapshot (or the whole one written for
            // it below) and then asks for the values after it: keep them.
            self.hold_tail();
        }
        let learner = &mut self.learner;
        learner.snapshot_demand = true;
        if !learner.snapshot_sendable {
            // The runtime writes a whole snapshot on this demand; the peer
            // asks again on its catch-up tick and gets it then.
            return;
        }
        let Some(snapshot) = learner.snapshot.as_ref() else {
            return;
        };
        let digest = *learner
            .snapshot_digest
            .get_or_insert_with(|| SnapshotDigest::of(&snapshot.data));
        let total_len = snapshot.data.len() as u64;
        if offset > total_len {
            return;
        }
        let start = offset as usize;
        let end = (start + self.cfg.snapshot_chunk_bytes_max).min(snapshot.data.len());
        if snapshot.memberships.as_ref().is_some_and(|s| {
            crate::codec::schedule_encoded_len(s)
                > self.cfg.value_bytes_max + crate::config::SCHEDULE_OVERHEAD_BYTES
        }) {
            // Impossible: a schedule holds one or two memberships of at most
            // half a value each. Never send a message over the bound.
            debug_assert!(false, "a snapshot's schedule exceeds its bound");
            return;
        }
        let body = Body::SnapshotChunk {
            meta: snapshot.meta,
            total_len,
            digest,
            offset,
            data: snapshot.data.slice(start..end),
            memberships: if offset == 0 {
                snapshot.memberships.clone()
            } else {
                None
            },
        };
        self.send(to, body, Gate::Now);
    }

    pub(super) fn handle_snapshot_request(
        &mut self,
        from: NodeId,
        applied_end: InstanceId,
        offset: u64,
    ) {
        if self.learner.values_from > self.learner.compacted_end {
            // The values after our snapshot left memory since (its transfer
            // stalled past the hold): the peer would need them once it
            // installed it. A fresh snapshot replaces it; the peer's next
            // request starts that one.
            self.demand_released(self.learner.compacted_end);
            return;
        }
        let current = self.learner.snapshot.as_ref().map(|s| s.meta.applied_end);
        match current {
            Some(point) if point == applied_end => self.send_snapshot_chunk(from, offset),
            // We compacted again since: start over with the newer snapshot.
            Some(_) => self.send_snapshot_chunk(from, 0),
            None => {}
        }
    }

    /// A piece of `transfer` (`transfer.source` is the sender) at `offset`.
    /// Rule 1 decides whether it belongs to the transfer in progress; rule 2
    /// guards the install.
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        transfer: Transfer,
        offset: u64,
        data: Bytes,
        memberships: Option<crate::membership::Schedule>,
    ) {
        debug_assert_eq!(transfer.source, from);
        let meta = transfer.meta;
        if meta.applied_end <= self.learner.applied_end {
            // Nothing we lack: not counted, this is the normal end of the
            // pieces still in flight after an install. A transfer of such a
            // snapshot still open (the log caught this replica up past it)
            // is no longer needed: dropped now, not after its retries.
            if self
                .learner
                .incoming
                .as_ref()
                .is_some_and(|incoming| incoming.transfer == transfer)
            {
                self.drop_incoming();
            }
            return;
        }
        if transfer.total_len > self.cfg.snapshot_bytes_max {
            // Bound on buffered bytes: never start buffering what we refuse.
            self.learner.transfer_stats.chunks_ignored += 1;
            return;
        }
        // Malformed: past the snapshot's end (an offset near u64::MAX must
        // not overflow), or empty before it. Checked before a transfer
        // starts, so a first piece is never empty (its size is the piece
        // size the window asks by).
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= transfer.total_len);
        let Some(end) = end.filter(|_| !data.is_empty() || offset == transfer.total_len) else {
            self.learner.transfer_stats.chunks_ignored += 1;
            return;
        };
        let start = match &self.learner.incoming {
            Some(incoming) if incoming.transfer == transfer => false,
            // The source moved on to another snapshot (it compacted again,
            // or restarts after a digest mismatch): follow it from the start.
            Some(incoming) if incoming.transfer.source == from && offset == 0 => true,
            // Rule 1: another transfer is in progress; its source is asked
            // again on the tick, and given up after `TRANSFER_RETRIES_MAX`
            // requests without an answer, so this cannot block catch-up.
            Some(_) => {
                self.learner.transfer_stats.chunks_ignored += 1;
                return;
            }
            None if offset == 0 => true,
            None => {
                self.learner.transfer_stats.chunks_ignored += 1;
                return;
            }
        };
        if start {
            let Some(memberships) = memberships else {
                // Every snapshot a replica sends has its memberships; one
                // without cannot be installed safely.
                self.learner.transfer_stats.chunks_ignored += 1;
                return;
            };
            if self.learner.spool.begin(meta, transfer.total_len).is_err() {
                self.spool_failed();
                return;
            }
            self.learner.incoming = Some(Incoming {
                transfer,
                received: 0,
                hasher: crate::value::SnapshotHasher::new(),
                retries: 0,
                asked_end: 0,
                // The first piece has the source's size (unless it is the
                // whole snapshot).
                piece: data.len() as u64,
                early: std::collections::BTreeMap::new(),
                memberships,
            });
        }
        let Some(incoming) = self.learner.incoming.as_mut() else {
            return;
        };
        let total_len = transfer.total_len;
        if offset < incoming.received {
            // A duplicate.
            return;
        }
        if offset == incoming.received && end < total_len && data.len() as u64 != incoming.piece {
            // The source's pieces changed size (it restarted with another
            // setting): the offsets asked for no longer fall on its pieces.
            // Ask by the new size from here.
            incoming.piece = data.len() as u64;
            incoming.asked_end = incoming.received;
            incoming.early.clear();
        }
        let piece = incoming.piece.max(1);
        let window = window_pieces(piece);
        if offset > incoming.received {
            // Ahead of what was received (the network reordered the
            // window): kept until the pieces before it come, if it is one of
            // the window's pieces (of the piece size, or the last), so at
            // most the window's bytes wait here. Else the tick re-requests.
            let in_window = (offset - incoming.received).is_multiple_of(piece)
                && offset - incoming.received < window * piece
                && (data.len() as u64 == piece || end == total_len)
                && (incoming.early.len() as u64) < window;
            if in_window {
                incoming.early.insert(offset, data);
            }
            return;
        }
        // This piece, then those kept that follow it.
        let mut next = Some(data);
        while let Some(data) = next {
            if self.learner.spool.append(&data).is_err() {
                self.spool_failed();
                return;
            }
            incoming.hasher.update(&data);
            incoming.received += data.len() as u64;
            incoming.retries = 0;
            next = incoming.early.remove(&incoming.received);
        }
        let received = incoming.received;
        incoming.early.retain(|at, _| *at > received);
        debug_assert!(incoming.received <= total_len);
        debug_assert!(total_len <= self.cfg.snapshot_bytes_max);
        if incoming.received < total_len {
            // Keep the window full: ask for the pieces after those asked.
            let window_end = (incoming.received + window * piece).min(total_len);
            incoming.asked_end = incoming.asked_end.max(incoming.received);
            let mut asks = Vec::new();
            while incoming.asked_end < window_end {
                asks.push(incoming.asked_end);
                incoming.asked_end += piece;
            }
            self.learner.catchup_asked_tick = Some(self.now);
            for offset in asks {
                let body = Body::SnapshotRequest {
                    applied_end: meta.applied_end,
                    offset,
                };
                self.send(from, body, Gate::Now);
            }
            return;
        }
        let Some(incoming) = self.learner.incoming.take() else {
            return;
        };
        if incoming.hasher.digest() != transfer.digest {
            // Rule 2: corrupted in transit, or a source that sent bytes of
            // two snapshots under one digest. Start the transfer again.
            self.learner.spool.abort();
            self.learner.transfer_stats.digest_mismatches += 1;
            let body = Body::SnapshotRequest {
                applied_end: meta.applied_end,
                offset: 0,
            };
            self.learner.catchup_asked_tick = Some(self.now);
            self.send(from, body, Gate::Now);
            return;
        }
        let data = match self.learner.spool.finish() {
            Ok(data) if data.len() as u64 == total_len => data,
            // A spool that lost bytes (or cannot give them back) must not
            // install anything: the digest vouched for what passed, not
            // for what it returns.
            _ => {
                self.spool_failed();
                return;
            }
        };
        let snapshot = Snapshot {
            meta,
            memberships: Some(incoming.memberships),
            data,
        };
        self.install(snapshot, transfer.digest);
    }

    /// Computes the digest of the snapshot this replica holds, if it is not
    /// known yet (a snapshot recovered from disk), so that serving it to a
    /// peer never hashes it whole then. Slow for a large snapshot: call it
    /// before the replica serves.
    pub fn compute_snapshot_digest(&mut self) {
        let learner = &mut self.learner;
        if let (Some(snapshot), None) = (&learner.snapshot, learner.snapshot_digest) {
            learner.snapshot_digest = Some(SnapshotDigest::of(&snapshot.data));
        }
    }

    /// Says whether the snapshot this replica holds (recovered or just
    /// compacted to) can be sent to peers. A runtime whose state machine
    /// keeps its state on its own disk checkpoints without a copy of it;
    /// such a checkpoint is never sent (a peer could not install it): a peer
    /// that needs it raises [`Replica::take_snapshot_demand`] instead, and
    /// the runtime answers with a whole snapshot.
    pub fn set_snapshot_sendable(&mut self, sendable: bool) {
        self.learner.snapshot_sendable = sendable;
    }

    /// Whether the snapshot this replica holds can be sent to peers.
    pub fn snapshot_sendable(&self) -> bool {
        self.learner.snapshot_sendable
    }

    /// Makes every install hold back the chosen values after the snapshot
    /// until [`Replica::release_applies`]: for a runtime that restores its
    /// state machine from the snapshot off its event loop, and cannot apply
    /// anything until then. Reads are still released as the applied point
    /// passes them (the caller defers them too).
    pub fn set_hold_applies_on_install(&mut self, hold: bool) {
        self.learner.hold_applies_on_install = hold;
    }

    /// Hands out the chosen values held back since the last install.
    pub fn release_applies(&mut self) {
        self.learner.apply_held = false;
        self.learner.held_bytes = 0;
        self.learner.apply_draining = true;
        self.emit_apply();
    }

    /// Whether chosen values are held back (an install awaits its restore).
    pub fn applies_held(&self) -> bool {
        self.learner.apply_held
    }

    /// Encoded bytes of the chosen values held back while the state machine
    /// is restored (0 when none are held).
    pub fn restore_backlog_bytes(&self) -> u64 {
        self.learner.held_bytes
    }

    /// `held_bytes` counted afresh: the encoded bytes of the chosen values
    /// at or above the applied point while applies are held, else 0.
    fn count_held_bytes(&self) -> u64 {
        let learner = &self.learner;
        if !learner.apply_held {
            return 0;
        }
        learner
            .chosen
            .range(learner.applied_end..)
            .map(|(_, v)| v.encoded_len() as u64)
            .sum()
    }

    /// Checks the count of held values against a recount (debug builds:
    /// the simulator runs it at every step).
    #[cfg(debug_assertions)]
    pub(super) fn check_held_bytes(&self) {
        assert_eq!(
            self.learner.held_bytes,
            self.count_held_bytes(),
            "the restore backlog's count drifted"
        );
    }

    /// Whether the values held back while the state machine is restored
    /// reached `Config::restore_backlog_bytes_max`. Until the runtime
    /// releases them this replica then votes for no instance it does not
    /// know chosen (`handle_accept`) and asks no peer for chosen values
    /// (`tick_catchup`): both would put more values in memory, where they
    /// wait for the restore.
    ///
    /// Safety: an acceptor may always decline to vote; it neither raises its
    /// promise nor writes anything, so nothing it promised or accepted
    /// changes. Liveness: the restore ends (the runtime runs it off the
    /// loop) and `release_applies` lifts the bound; the leader re-sends its
    /// Accepts for instances still unchosen (`retransmit_ticks`), and
    /// catch-up fetches the rest. Meanwhile the other voters must make a
    /// quorum alone, as they did while this replica lagged: it installs a
    /// snapshot because it fell behind.
    pub fn restore_backlog_full(&self) -> bool {
        self.learner.apply_held && self.learner.held_bytes >= self.cfg.restore_backlog_bytes_max
    }

    /// Whether a peer asked for a piece of this replica's snapshot since
    /// the last call (it lags behind the compacted log).
    pub fn take_snapshot_demand(&mut self) -> bool {
        std::mem::take(&mut self.learner.snapshot_demand)
    }

    /// The spool failed: drop the transfer (the catch-up tick asks for the
    /// snapshot again from the start).
    fn spool_failed(&mut self) {
        self.learner.transfer_stats.spool_errors += 1;
        self.drop_incoming();
    }

    /// Whether a snapshot is being received from a peer: this replica
    /// lagged past what its peers keep in their logs, so it serves nothing
    /// current until the snapshot is installed and restored (the runtime
    /// refuses new client requests meanwhile).
    pub fn receiving_snapshot(&self) -> bool {
        self.learner
            .incoming
            .as_ref()
            .is_some_and(|incoming| incoming.transfer.meta.applied_end > self.learner.applied_end)
    }

    /// Drops the snapshot transfer in progress, if any, and what its spool
    /// kept.
    pub(super) fn drop_incoming(&mut self) {
        if self.learner.incoming.take().is_some() {
            self.learner.spool.abort();
        }
    }

    /// Gives the replica the spool that keeps incoming snapshots (the
    /// default, [`crate::MemorySpool`], buffers them on the heap). A
    /// transfer in progress starts again.
    pub fn set_snapshot_spool(&mut self, spool: Box<dyn crate::SnapshotSpool>) {
        self.drop_incoming();
        self.learner.spool = spool;
    }

    /// Asks the source of a stalled snapshot transfer for the next piece.
    /// Returns false when there is no transfer (or it was given up).
    pub(super) fn resume_snapshot_transfer(&mut self) -> bool {
        let Some(incoming) = self.learner.incoming.as_mut() else {
            return false;
        };
        incoming.retries += 1;
        if incoming.retries > TRANSFER_RETRIES_MAX {
            self.drop_incoming();
            return false;
        }
        // The window starts again after the piece asked for now (those
        // asked before were lost, or arrive out of order and are dropped).
        incoming.asked_end = incoming.received;
        let (to, body) = (
            incoming.transfer.source,
            Body::SnapshotRequest {
                applied_end: incoming.transfer.meta.applied_end,
                offset: incoming.received,
            },
        );
        self.send(to, body, Gate::Now);
        true
    }

    /// Replaces everything below the snapshot's point with the snapshot, whose
    /// bytes hash to `digest`. Every instance below it is chosen (a snapshot
    /// only covers applied, hence chosen, instances), so nothing an acceptor
    /// must remember is lost: a promise reports our chosen prefix, and a new
    /// leader never proposes below it.
    fn install(&mut self, snapshot: Snapshot, digest: SnapshotDigest) {
        let point = snapshot.meta.applied_end;
        debug_assert!(point > self.learner.applied_end);
        // Values handed out but not yet taken are superseded by the snapshot.
        self.ready.apply.clear();
        // The runtime restores its state machine from the snapshot off its
        // event loop: the values after it wait until that is done.
        self.learner.apply_held = self.learner.hold_applies_on_install;
        if self.learner.apply_held {
            // Memberships after the snapshot are noted only as values are
            // applied: a leader (or candidate) catching up by snapshot
            // stands down until they are (see `may_campaign`).
            self.step_down();
        }
        self.learner.chosen = self.learner.chosen.split_off(&point);
        self.acceptor.accepted = self.acceptor.accepted.split_off(&point);
        self.learner.chosen_end = self.learner.chosen_end.max(point);
        self.learner.commit_seen = self.learner.commit_seen.max(point);
        self.learner.applied_end = point;
        self.learner.held_bytes = self.count_held_bytes();
        self.learner.checksum = snapshot.meta.checksum;
        self.learner.history.clear();
        self.learner.history.push_back(AppliedMark {
            applied_end: point,
            checksum: snapshot.meta.checksum,
        });
        self.learner.compacted_end = point;
        self.learner.values_from = point;
        self.recount_tail();
        // A snapshot older than the schedule this replica started from (a
        // node that joined at a later point) knows less: keeping its
        // schedule would make the replica forget that it and the members
        // added since belong, and refuse them at the door, the leader
        // included, so that it could never catch up (simulator seed 1585).
        match &snapshot.memberships {
            Some(memberships) if point >= self.schedule_base => {
                self.schedule = memberships.clone();
                self.schedule_base = point;
            }
            _ => {}
        }
        self.learner.snapshot = Some(snapshot.clone());
        self.learner.snapshot_digest = Some(digest);
        self.learner.snapshot_sendable = true;
        self.learner.transfer_stats.installed += 1;
        self.forget_state_digests();
        self.ready.install = Some(snapshot);
        self.advance_chosen_end();
        self.emit_apply();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::message::Message;
    use crate::value::Checksum;
    use std::collections::VecDeque;

    const POINT: InstanceId = InstanceId(10);
    const META: SnapshotMeta = SnapshotMeta {
        applied_end: POINT,
        checksum: Checksum(77),
    };
    const LAGGING: NodeId = NodeId(3);

    fn config(id: u32) -> Config {
        let mut cfg = Config::new(NodeId(id), vec![NodeId(1), NodeId(2), NodeId(3)]);
        cfg.snapshot_chunk_bytes_max = 4;
        cfg
    }

    /// A peer that holds `data` as its snapshot at `POINT`.
    fn source(id: u32, data: &'static [u8]) -> Replica {
        let snapshot = Snapshot {
            memberships: None,
            meta: META,
            data: Bytes::from_static(data),
        };
        let mut replica =
            Replica::recover(config(id), Some(snapshot), std::iter::empty()).expect("recovers");
        let _ = replica.take_ready();
        replica
    }

    /// Node 3 lags behind a snapshot that nodes 1 and 2 both hold at the same
    /// point. Every request node 3 sends reaches both of them (a catch-up
    /// asked of one peer, then of another after a leader change; a request
    /// re-sent on a timeout), and their answers arrive interleaved: first
    /// node 1's, then node 2's, then node 2's first, and so on. `tamper` may
    /// change each message on the wire. Returns what node 3 installed (if
    /// anything) and node 3.
    fn interleaved_transfer(
        sources: &mut [Replica; 2],
        mut tamper: impl FnMut(&mut Message),
    ) -> (Option<Snapshot>, Replica) {
        let mut lagging = Replica::new(config(3)).expect("config");
        let mut wire: VecDeque<Message> = VecDeque::new();
        let mut installed = None;
        let mut flip = false;
        let ask = |body: Body, flip: bool, wire: &mut VecDeque<Message>| {
            let order = if flip { [2, 1] } else { [1, 2] };
            for to in order {
                wire.push_back(Message {
                    group: crate::ids::GroupId(0),
                    from: LAGGING,
                    to: NodeId(to),
                    body: body.clone(),
                });
            }
        };
        ask(
            Body::CatchupRequest {
                from: InstanceId(0),
                to: POINT,
            },
            flip,
            &mut wire,
        );
        for _ in 0..1000 {
            let Some(mut msg) = wire.pop_front() else {
                break;
            };
            tamper(&mut msg);
            if msg.to == LAGGING {
                lagging.step(msg);
                let ready = lagging.take_ready();
                if let Some(snapshot) = ready.install {
                    installed = Some(snapshot);
                }
                for out in ready.messages {
                    if matches!(out.body, Body::SnapshotRequest { .. }) {
                        flip = !flip;
                        ask(out.body, flip, &mut wire);
                    }
                }
            } else {
                let k = msg.to.0 as usize - 1;
                sources[k].step(msg);
                wire.extend(sources[k].take_ready().messages);
            }
        }
        (installed, lagging)
    }

    /// Node 3's catch-up request to node 1, for everything below `POINT`.
    fn catchup_ask() -> Message {
        Message {
            group: crate::ids::GroupId(0),
            from: LAGGING,
            to: NodeId(1),
            body: Body::CatchupRequest {
                from: InstanceId(0),
                to: POINT,
            },
        }
    }

    /// What `holder` answers node 3's catch-up request with (the first piece
    /// of its snapshot).
    fn first_pieces(holder: &mut Replica) -> Vec<Message> {
        holder.step(catchup_ask());
        holder.take_ready().messages
    }

    /// A transfer of `data` from node 1 to a fresh node 3, one round trip at
    /// a time: every piece in flight delivered (in reverse order with
    /// `reverse`), then every request they raised answered. `before` may
    /// change the source before each round trip. Returns what was installed
    /// and the round trips it took (at most 20).
    fn windowed_transfer(
        data: &'static [u8],
        reverse: bool,
        mut before: impl FnMut(u32, &mut Replica),
    ) -> (Option<Snapshot>, u32) {
        let mut holder = source(1, data);
        let mut lagging = Replica::new(config(3)).expect("config");
        let mut to_lagging = first_pieces(&mut holder);
        let mut installed = None;
        let mut round_trips = 0;
        while installed.is_none() && round_trips < 20 {
            round_trips += 1;
            before(round_trips, &mut holder);
            if reverse {
                to_lagging.reverse();
            }
            let mut asks = Vec::new();
            for msg in to_lagging.drain(..) {
                lagging.step(msg);
                let ready = lagging.take_ready();
                installed = installed.or(ready.install);
                asks.extend(
                    ready
                        .messages
                        .into_iter()
                        .filter(|m| matches!(m.body, Body::SnapshotRequest { .. })),
                );
            }
            assert!(asks.len() <= TRANSFER_WINDOW_CHUNKS as usize);
            for ask in asks {
                holder.step(ask);
                to_lagging.extend(holder.take_ready().messages);
            }
        }
        (installed, round_trips)
    }

    /// A receiver keeps `TRANSFER_WINDOW_CHUNKS` pieces asked for at once
    /// and takes them in any order: 12 pieces (of 4 bytes) delivered in
    /// reverse order each round trip arrive in 3 round trips (one piece per
    /// round trip before the window: 12; and without the pieces kept that
    /// came early, reversed delivery never finishes without the tick).
    #[test]
    fn a_transfer_keeps_a_window_of_pieces_asked_and_takes_them_in_any_order() {
        let data: &'static [u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
        let (installed, round_trips) = windowed_transfer(data, true, |_, _| {});
        assert_eq!(&installed.expect("installed").data[..], data);
        assert_eq!(round_trips, 3);
    }

    /// Pieces a hostile or confused source may send: one at an offset near
    /// `u64::MAX` (its end overflowed, and release builds check overflow:
    /// a panic, found by the review of the window), an empty one before the
    /// end, one past the end. Each is ignored and counted; the transfer
    /// still completes.
    #[test]
    fn malformed_pieces_are_ignored_and_counted() {
        let data: &'static [u8] = b"0123456789ab";
        let first = first_pieces(&mut source(1, data)).remove(0);
        let piece = |offset: u64, bytes: &[u8]| {
            let mut msg = first.clone();
            if let Body::SnapshotChunk {
                offset: at,
                data,
                memberships,
                ..
            } = &mut msg.body
            {
                *at = offset;
                *data = Bytes::copy_from_slice(bytes);
                if offset != 0 {
                    *memberships = None;
                }
            }
            msg
        };
        let mut lagging = Replica::new(config(3)).expect("config");
        for (offset, bytes) in [(0, &b""[..]), (u64::MAX - 1, b"abcd"), (10, b"abcd")] {
            lagging.step(piece(offset, bytes));
        }
        assert_eq!(lagging.snapshot_transfer_stats().chunks_ignored, 3);
        lagging.step(piece(0, &data[..4]));
        lagging.step(piece(u64::MAX - 1, b"abcd"));
        lagging.step(piece(4, &data[4..8]));
        lagging.step(piece(8, &data[8..]));
        assert_eq!(lagging.snapshot_transfer_stats().chunks_ignored, 4);
        assert!(lagging.take_ready().install.is_some());
    }

    /// A source whose pieces change size mid-transfer (restarted with
    /// another setting): the receiver asks by the new size from there.
    #[test]
    fn a_transfer_follows_pieces_that_change_size() {
        let data: &'static [u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
        let (installed, round_trips) = windowed_transfer(data, false, |round_trip, holder| {
            if round_trip == 2 {
                holder.cfg.snapshot_chunk_bytes_max = 3;
            }
        });
        assert_eq!(&installed.expect("installed").data[..], data);
        assert!(round_trips <= 6, "{round_trips} round trips");
    }

    /// A checkpoint that holds no state (an on-disk state machine's) is
    /// never sent: a peer's request raises the demand instead, and a
    /// sendable snapshot of the same point then replaces it and is sent.
    #[test]
    fn an_unsendable_checkpoint_raises_the_demand_and_a_whole_one_replaces_it() {
        let mut holder = source(1, b"table");
        holder.set_snapshot_sendable(false);
        let ask = catchup_ask();
        holder.step(ask.clone());
        assert!(holder.take_ready().messages.is_empty(), "nothing sent");
        assert!(holder.take_snapshot_demand());
        assert!(!holder.take_snapshot_demand(), "taken once");
        // An unsendable checkpoint never replaces one of the same point...
        let whole = Snapshot {
            memberships: None,
            meta: META,
            data: Bytes::from_static(b"table+state"),
        };
        holder
            .compact_checkpoint(whole.clone(), None, true)
            .expect("compacts");
        assert!(holder.snapshot_sendable());
        holder
            .compact_checkpoint(
                source(1, b"x").snapshot().cloned().expect("held"),
                None,
                false,
            )
            .expect("ignored");
        assert!(holder.snapshot_sendable());
        assert_eq!(holder.snapshot().map(|s| &s.data), Some(&whole.data));
        // ...and the whole one is sent.
        holder.step(ask);
        let sent = holder.take_ready().messages;
        assert!(
            matches!(
                &sent[..],
                [Message {
                    body: Body::SnapshotChunk { offset: 0, .. },
                    ..
                }]
            ),
            "{sent:?}"
        );
    }

    /// Regression (issue 12, item 6): chunks of two different encodings of
    /// the same logical snapshot (same point, same log checksum, same length)
    /// were spliced into bytes neither peer wrote.
    #[test]
    fn chunks_of_two_sources_are_never_spliced() {
        const A: &[u8] = b"aaaaAAAAaaaa";
        const B: &[u8] = b"bbbbBBBBbbbb";
        let mut sources = [source(1, A), source(2, B)];
        let (installed, _) = interleaved_transfer(&mut sources, |_| {});
        let installed = installed.expect("a snapshot was installed");
        assert_eq!(installed.meta, META);
        assert!(
            installed.data == A || installed.data == B,
            "installed bytes of no single source: {:?}",
            installed.data
        );
    }

    #[test]
    fn pieces_of_another_transfer_are_ignored_and_counted() {
        const A: &[u8] = b"aaaaAAAAaaaa";
        const B: &[u8] = b"bbbbBBBBbbbb";
        let mut sources = [source(1, A), source(2, B)];
        let (installed, lagging) = interleaved_transfer(&mut sources, |_| {});
        assert_eq!(
            installed.expect("installed").data,
            A,
            "node 1 answered first"
        );
        let stats = lagging.snapshot_transfer_stats();
        // Node 2's answers to the catch-up request and to the request for
        // offset 4 (its answer for offset 8 arrives after the install, when
        // the snapshot is nothing new).
        assert_eq!(stats.chunks_ignored, 2);
        assert_eq!(stats.digest_mismatches, 0);
        assert_eq!(stats.installed, 1);
    }

    /// Rule 2: bytes damaged on the way are never installed; the transfer
    /// starts again and installs exactly what one source holds.
    #[test]
    fn a_digest_mismatch_discards_the_transfer_and_starts_again() {
        const A: &[u8] = b"aaaaAAAAaaaa";
        const B: &[u8] = b"bbbbBBBBbbbb";
        let mut sources = [source(1, A), source(2, B)];
        let mut damaged = false;
        let (installed, lagging) = interleaved_transfer(&mut sources, |msg| {
            if let Body::SnapshotChunk {
                offset: 4, data, ..
            } = &mut msg.body
            {
                if msg.from == NodeId(1) && !damaged {
                    damaged = true;
                    *data = Bytes::from_static(b"AAAa");
                }
            }
        });
        assert!(damaged);
        let installed = installed.expect("installed after a restart");
        assert!(installed.data == A || installed.data == B);
        let stats = lagging.snapshot_transfer_stats();
        assert_eq!(stats.digest_mismatches, 1);
        assert_eq!(stats.installed, 1);
        assert_eq!(lagging.snapshot(), Some(&installed));
    }

    /// A piece that starts no transfer, or one larger than the bound on
    /// buffered bytes, is ignored before anything is buffered.
    #[test]
    fn oversized_or_headless_transfers_buffer_nothing() {
        let mut lagging = Replica::new(config(3)).expect("config");
        lagging.cfg.snapshot_bytes_max = 8;
        let chunk = |total_len, offset| Message {
            group: crate::ids::GroupId(0),
            from: NodeId(1),
            to: LAGGING,
            body: Body::SnapshotChunk {
                meta: META,
                total_len,
                digest: SnapshotDigest::of(b"whatever"),
                offset,
                data: Bytes::from_static(b"abcd"),
                memberships: (offset == 0).then(|| {
                    crate::membership::Schedule::new(
                        InstanceId(0),
                        crate::membership::Membership::bootstrap(&[
                            NodeId(1),
                            NodeId(2),
                            NodeId(3),
                        ]),
                    )
                }),
            },
        };
        lagging.step(chunk(12, 0));
        lagging.step(chunk(8, 4));
        assert!(lagging.learner.incoming.is_none());
        assert_eq!(lagging.snapshot_transfer_stats().chunks_ignored, 2);
        lagging.step(chunk(8, 0));
        let incoming = lagging.learner.incoming.as_ref().expect("started");
        assert_eq!(incoming.received, 4);
    }
}
