//! Counters and histograms of a node, rendered in Prometheus' text format.
//! A handful of atomics: cheap enough for the hot path, and no metrics
//! framework is needed for a dozen series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use synod_core::{Refusal, Refusals};
use synod_net::NetStats;

/// Why peer messages were not accepted: the core's reasons
/// ([`Refusal::name`]), then the network layer's.
pub const PEER_REFUSAL_REASONS: [&str; 13] = [
    "wrong_group",
    "wrong_recipient",
    "from_self",
    "non_member",
    "out_of_range",
    "ballot_jump",
    "foreign_ballot",
    // Network layer (synod-net's counters): a frame too large, undecodable
    // or misaddressed closes its connection; messages this node could not
    // send (too large, unroutable, the peer's queue full).
    "bad_frame",
    "send_too_large",
    "send_unroutable",
    "send_queue_full",
    // Peer handshakes refused: no valid certificate (or, on insecure links,
    // a wrong cluster or member), and handshakes over the pending or
    // link-replacement limits.
    "handshake_unauthenticated",
    "handshake_rate_limited",
];

/// A histogram with fixed upper bounds (Prometheus `le` buckets).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, plus +Inf.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit (integers keep it atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The sum of every observation (to a millionth of the unit).
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Relaxed) as f64 / 1e6
    }

    /// The buckets: each finite upper bound with the number of observations
    /// at or below it (cumulative, as Prometheus' `le` buckets), then
    /// `f64::INFINITY` with the count of all.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let mut cumulative = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                cumulative += bucket.load(Relaxed);
                (
                    self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                    cumulative,
                )
            })
            .collect()
    }

    /// An estimate of the `q` quantile (`0.0..=1.0`; 0.5 the median, 0.99
    /// the 99th percentile) as Prometheus' `histogram_quantile` computes it:
    /// linear within the bucket the quantile falls in (from 0 for the first
    /// bucket), and the largest finite bound when it falls past the last
    /// one. `None` before the first observation or for a `q` outside
    /// `0.0..=1.0`. Its precision is the buckets' width: read it as "about".
    ///
    /// ```
    /// let metrics = synod::Metrics::default();
    /// for ms in [1.0, 2.0, 2.0, 3.0, 40.0] {
    ///     metrics.fsync_seconds.observe(ms / 1000.0);
    /// }
    /// let p50 = metrics.fsync_seconds.quantile(0.5).unwrap();
    /// assert!(p50 > 0.001 && p50 <= 0.0025, "{p50}");
    /// let p99 = metrics.fsync_seconds.quantile(0.99).unwrap();
    /// assert!(p99 > 0.025 && p99 <= 0.05, "{p99}");
    /// assert_eq!(synod::Metrics::default().fsync_seconds.quantile(0.5), None);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let buckets = self.buckets();
        let total = buckets.last().map_or(0, |(_, count)| *count);
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = (0.0, 0u64);
        for (bound, cumulative) in buckets {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
                return Some(lower.0 + (bound - lower.0) * within.clamp(0.0, 1.0));
            }
            if bound.is_finite() {
                lower = (bound, cumulative);
            }
        }
        Some(lower.0)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            match self.bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum(),
            self.count()
        );
    }
}

const FSYNC_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const CHECKPOINT_SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const BATCH_COMMANDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Everything a node counts. Shared with the admin endpoint.
#[derive(Debug)]
pub struct Metrics {
    /// Commands proposed by clients of this node.
    pub proposals: AtomicU64,
    /// Linearizable reads asked on this node.
    pub reads: AtomicU64,
    /// Stale reads ([`crate::Node::read_stale`]) asked on this node: not
    /// counted in `reads`.
    pub stale_reads: AtomicU64,
    /// Reads whose answer depended on the time, sent through the log (a
    /// subset of `reads`).
    pub reads_through_log: AtomicU64,
    /// Reads whose answer depended on the time answered by read index (or a
    /// lease) all the same, their answer at the log clock of the applied
    /// point being the one at this node's clock (a GET of a key whose TTL
    /// has not run out): a subset of `reads`, disjoint from
    /// `reads_through_log`.
    pub reads_settled: AtomicU64,
    /// Reads this node's event loop confirmed as leader under its read
    /// lease, with no network round (its own and its followers' read-index
    /// requests), as published after the loop's latest pass. The series
    /// `synod_lease_reads_total` adds `local_lease_reads` when scraped: the
    /// reads served on connections go on while the loop sleeps, so a sum
    /// stored by the loop lagged them by up to a tick (a test read 32 of
    /// 200 while all 200 had been served).
    pub loop_lease_reads: AtomicU64,
    /// Of those, the reads served by the task that received them, under the
    /// permit the event loop published, without going through the loop
    /// ([`crate::LocalReads`]).
    pub local_lease_reads: AtomicU64,
    /// Followers' read-index requests this node answered as leader with no
    /// heartbeat round, each confirmed by the follower's own vouch (three
    /// voters; see synod-core's `replica/reads.rs`).
    pub vouched_reads: AtomicU64,
    /// Times this node, leading, held a batch back for the clients just
    /// answered to come back (cohort batching, `NodeConfig::batch_hold`).
    pub batch_holds: AtomicU64,
    /// Of `batch_holds`, those that ended on their clock, the cohort not
    /// back.
    pub batch_hold_timeouts: AtomicU64,
    /// Commands proposed while this node was not the leader (the core
    /// forwards them to the leader); each retry counts again.
    pub forwarded: AtomicU64,
    /// Reads handed to the core while this node was not the leader (it asks
    /// the leader for a read index); each retry counts again.
    pub forwarded_reads: AtomicU64,
    /// New requests refused because this node was loading a peer's
    /// snapshot (`RequestError::Loading`): receiving it, or restoring it.
    pub loading_refusals: AtomicU64,
    /// Proposals sent again (no answer in time, or the leader changed).
    pub retries: AtomicU64,
    /// Requests that timed out with an unknown outcome.
    pub timeouts: AtomicU64,
    /// Commands skipped at apply as duplicates.
    pub duplicates: AtomicU64,
    /// Client session commands (`Session::propose`) found already applied
    /// under their sequence number: answered with the kept output, not
    /// applied again (a retry through another node, or after a restart).
    pub session_duplicates: AtomicU64,
    /// Client session commands refused: session expired, unknown, or
    /// sequence number too old.
    pub session_refusals: AtomicU64,
    /// Times this node saw the leader change.
    pub leader_changes: AtomicU64,
    /// Snapshots written (taken here or installed from a peer).
    pub snapshots: AtomicU64,
    /// Snapshots installed from a peer (this node lagged behind a compacted log).
    pub snapshots_installed: AtomicU64,
    /// Checkpoints that hold no copy of the state: the state machine keeps
    /// it on its own disk (`StateMachine::durable_end`).
    pub checkpoints_state_on_disk: AtomicU64,
    /// Snapshots written because a peer needed one to catch up: the latest
    /// checkpoint held no state (on-disk state machines), or the log values
    /// after it were dropped from memory (`NodeConfig::log_memory_bytes`).
    pub snapshots_for_peers: AtomicU64,
    /// Times values a peer needed, dropped from memory, were read back from
    /// the log instead (see `Engine::log_read_done`).
    pub log_reads_for_peers: AtomicU64,
    /// Requests answered from the session table of an installed snapshot
    /// (their commands took effect while this node lagged).
    pub answered_from_sessions: AtomicU64,
    /// Snapshot pieces ignored: they belonged to another transfer than the
    /// one in progress (another peer, or another snapshot).
    pub snapshot_chunks_ignored: AtomicU64,
    /// Snapshot transfers whose bytes did not match their digest (discarded
    /// and started again).
    pub snapshot_digest_mismatches: AtomicU64,
    /// Snapshot transfers dropped because their bytes could not be kept
    /// (writing the incoming file failed: a full disk, say); each is asked
    /// for again, and each failure is logged.
    pub snapshot_spool_errors: AtomicU64,
    /// Accepts not voted for while a restore's backlog was full
    /// (`NodeConfig::restore_backlog_bytes`).
    pub accepts_deferred: AtomicU64,
    /// Encoded bytes of chosen values held back while the state machine is
    /// restored from a peer's snapshot.
    pub restore_backlog_bytes: AtomicU64,
    /// Chosen prefix end, as last seen.
    pub chosen_end: AtomicU64,
    /// Applied prefix end, as last seen.
    pub applied_end: AtomicU64,
    /// Encoded bytes of applied log values held in memory (bounded by
    /// `NodeConfig::log_memory_bytes`, beyond it while a checkpoint or a
    /// snapshot transfer needs them).
    pub log_memory_bytes: AtomicU64,
    /// Encoded bytes of applied log values dropped from memory before a
    /// checkpoint compacted them (they stay in the log on disk).
    pub log_memory_released_bytes: AtomicU64,
    /// Peer messages not accepted, per [`PEER_REFUSAL_REASONS`] entry.
    pub peer_messages_refused: [AtomicU64; PEER_REFUSAL_REASONS.len()],
    /// Admin HTTP connections closed at once because the cap was reached.
    pub admin_connections_refused: AtomicU64,
    /// Admin HTTP requests refused for missing or wrong credentials.
    pub admin_auth_failures: AtomicU64,
    /// Admin HTTP connections being served now (at most the cap).
    pub admin_connections_open: AtomicU64,
    /// Log syncs run on the node's event loop (a follower with no client
    /// request waiting, `NodeConfig::sync_on_event_loop`). Neither this
    /// nor the next counts a checkpoint's log write or the last sync at
    /// stop, which take other paths.
    pub log_syncs_on_loop: AtomicU64,
    /// Log syncs run on a blocking thread (a leader's, a follower's while
    /// its clients' requests wait, or every one without
    /// `sync_on_event_loop`).
    pub log_syncs_on_thread: AtomicU64,
    /// Seconds per write + fdatasync of the log (not a checkpoint's: see
    /// `checkpoint_seconds`).
    pub fsync_seconds: Histogram,
    /// Seconds per checkpoint, from its start to its snapshot file, marker
    /// and records durable.
    pub checkpoint_seconds: Histogram,
    /// Commands per applied instance value.
    pub batch_commands: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            proposals: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            stale_reads: AtomicU64::new(0),
            reads_through_log: AtomicU64::new(0),
            reads_settled: AtomicU64::new(0),
            loop_lease_reads: AtomicU64::new(0),
            local_lease_reads: AtomicU64::new(0),
            vouched_reads: AtomicU64::new(0),
            batch_holds: AtomicU64::new(0),
            batch_hold_timeouts: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            forwarded_reads: AtomicU64::new(0),
            loading_refusals: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            session_duplicates: AtomicU64::new(0),
            session_refusals: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            checkpoints_state_on_disk: AtomicU64::new(0),
            snapshots_for_peers: AtomicU64::new(0),
            log_reads_for_peers: AtomicU64::new(0),
            answered_from_sessions: AtomicU64::new(0),
            snapshot_chunks_ignored: AtomicU64::new(0),
            snapshot_digest_mismatches: AtomicU64::new(0),
            snapshot_spool_errors: AtomicU64::new(0),
            accepts_deferred: AtomicU64::new(0),
            restore_backlog_bytes: AtomicU64::new(0),
            chosen_end: AtomicU64::new(0),
            applied_end: AtomicU64::new(0),
            log_memory_bytes: AtomicU64::new(0),
            log_memory_released_bytes: AtomicU64::new(0),
            peer_messages_refused: std::array::from_fn(|_| AtomicU64::new(0)),
            admin_connections_refused: AtomicU64::new(0),
            admin_auth_failures: AtomicU64::new(0),
            admin_connections_open: AtomicU64::new(0),
            log_syncs_on_loop: AtomicU64::new(0),
            log_syncs_on_thread: AtomicU64::new(0),
            fsync_seconds: Histogram::new(FSYNC_SECONDS),
            checkpoint_seconds: Histogram::new(CHECKPOINT_SECONDS),
            batch_commands: Histogram::new(BATCH_COMMANDS),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, u64); 34] = [
            (
                "synod_admin_connections_refused_total",
                "Admin HTTP connections closed at once: the connection cap was reached.",
                self.admin_connections_refused.load(Relaxed),
            ),
            (
                "synod_admin_auth_failures_total",
                "Admin HTTP requests refused for missing or wrong credentials.",
                self.admin_auth_failures.load(Relaxed),
            ),
            (
                "synod_proposals_total",
                "Commands proposed by clients of this node.",
                self.proposals.load(Relaxed),
            ),
            (
                "synod_reads_total",
                "Linearizable reads asked on this node.",
                self.reads.load(Relaxed),
            ),
            (
                "synod_stale_reads_total",
                "Stale reads (read_stale) asked on this node.",
                self.stale_reads.load(Relaxed),
            ),
            (
                "synod_reads_through_log_total",
                "Reads whose answer depended on the time, answered through the log.",
                self.reads_through_log.load(Relaxed),
            ),
            (
                "synod_reads_settled_total",
                "Reads whose answer depended on the time, answered without the log (the same at this node's clock).",
                self.reads_settled.load(Relaxed),
            ),
            (
                "synod_lease_reads_total",
                "Reads confirmed by this node as leader under its read lease, with no network round.",
                self.loop_lease_reads.load(Relaxed)
                    + self.local_lease_reads.load(Relaxed),
            ),
            (
                "synod_local_lease_reads_total",
                "Of the lease reads, those served by the task that received them, without the event loop.",
                self.local_lease_reads.load(Relaxed),
            ),
            (
                "synod_vouched_reads_total",
                "Followers' read-index requests answered by this node as leader with no heartbeat round (the request vouched).",
                self.vouched_reads.load(Relaxed),
            ),
            (
                "synod_batch_holds_total",
                "Times this node as leader held a batch back for the clients just answered to come back (cohort batching).",
                self.batch_holds.load(Relaxed),
            ),
            (
                "synod_batch_hold_timeouts_total",
                "Cohort batching holds that ended on their clock, the cohort not back.",
                self.batch_hold_timeouts.load(Relaxed),
            ),
            (
                "synod_log_syncs_on_loop_total",
                "Log syncs run on the event loop (a follower with no client request waiting).",
                self.log_syncs_on_loop.load(Relaxed),
            ),
            (
                "synod_log_syncs_on_thread_total",
                "Log syncs run on a blocking thread (a leader, or a follower whose clients wait).",
                self.log_syncs_on_thread.load(Relaxed),
            ),
            (
                "synod_forwarded_total",
                "Commands proposed while not leader (forwarded to the leader).",
                self.forwarded.load(Relaxed),
            ),
            (
                "synod_forwarded_reads_total",
                "Reads asked of the leader for a read index while not leader.",
                self.forwarded_reads.load(Relaxed),
            ),
            (
                "synod_loading_refusals_total",
                "New requests refused (-LOADING) while this node loaded a peer's snapshot.",
                self.loading_refusals.load(Relaxed),
            ),
            (
                "synod_retries_total",
                "Proposals sent again.",
                self.retries.load(Relaxed),
            ),
            (
                "synod_timeouts_total",
                "Requests that timed out with an unknown outcome.",
                self.timeouts.load(Relaxed),
            ),
            (
                "synod_duplicates_total",
                "Commands skipped at apply as duplicates.",
                self.duplicates.load(Relaxed),
            ),
            (
                "synod_session_duplicates_total",
                "Client session commands answered from the session table, not applied again.",
                self.session_duplicates.load(Relaxed),
            ),
            (
                "synod_session_refusals_total",
                "Client session commands refused (session expired or unknown, sequence number too old).",
                self.session_refusals.load(Relaxed),
            ),
            (
                "synod_leader_changes_total",
                "Leader changes seen by this node.",
                self.leader_changes.load(Relaxed),
            ),
            (
                "synod_snapshots_total",
                "Snapshots written or installed.",
                self.snapshots.load(Relaxed),
            ),
            (
                "synod_snapshots_installed_total",
                "Snapshots installed from a peer.",
                self.snapshots_installed.load(Relaxed),
            ),
            (
                "synod_checkpoints_state_on_disk_total",
                "Checkpoints holding no copy of the state (the state machine keeps it on its own disk).",
                self.checkpoints_state_on_disk.load(Relaxed),
            ),
            (
                "synod_log_memory_released_bytes_total",
                "Bytes of applied log values dropped from memory before a checkpoint (they stay in the log on disk).",
                self.log_memory_released_bytes.load(Relaxed),
            ),
            (
                "synod_snapshots_for_peers_total",
                "Snapshots written because a peer needed one: the latest checkpoint held no state, or the log values after it were no longer in memory.",
                self.snapshots_for_peers.load(Relaxed),
            ),
            (
                "synod_log_reads_for_peers_total",
                "Times log values a peer needed, no longer in memory, were read back from the log on disk instead of writing a snapshot.",
                self.log_reads_for_peers.load(Relaxed),
            ),
            (
                "synod_answered_from_sessions_total",
                "Requests answered from the session table of an installed snapshot.",
                self.answered_from_sessions.load(Relaxed),
            ),
            (
                "synod_snapshot_chunks_ignored_total",
                "Snapshot pieces ignored as part of another transfer.",
                self.snapshot_chunks_ignored.load(Relaxed),
            ),
            (
                "synod_snapshot_digest_mismatches_total",
                "Snapshot transfers discarded because their bytes did not match their digest.",
                self.snapshot_digest_mismatches.load(Relaxed),
            ),
            (
                "synod_snapshot_spool_errors_total",
                "Snapshot transfers dropped because the incoming file could not be written.",
                self.snapshot_spool_errors.load(Relaxed),
            ),
            (
                "synod_accepts_deferred_total",
                "Accepts not voted for because the values held for a restore from a peer's snapshot reached --restore-backlog-bytes.",
                self.accepts_deferred.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "synod_peer_messages_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Peer messages this node could not accept or send, by reason.\n# TYPE {name} counter"
        );
        for (reason, value) in PEER_REFUSAL_REASONS.iter().zip(&self.peer_messages_refused) {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", value.load(Relaxed));
        }
        let gauges: [(&str, &str, &AtomicU64); 5] = [
            (
                "synod_admin_connections_open",
                "Admin HTTP connections being served now.",
                &self.admin_connections_open,
            ),
            (
                "synod_chosen_instance",
                "End of the chosen prefix.",
                &self.chosen_end,
            ),
            (
                "synod_applied_instance",
                "End of the applied prefix.",
                &self.applied_end,
            ),
            (
                "synod_log_memory_bytes",
                "Encoded bytes of applied log values held in memory.",
                &self.log_memory_bytes,
            ),
            (
                "synod_restore_backlog_bytes",
                "Encoded bytes of log values held in memory while the state machine is restored from a peer's snapshot.",
                &self.restore_backlog_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Relaxed)
            );
        }
        self.fsync_seconds.render(
            &mut out,
            "synod_fsync_seconds",
            "Write + fdatasync of the log (checkpoints not included).",
        );
        self.checkpoint_seconds.render(
            &mut out,
            "synod_checkpoint_seconds",
            "Checkpoints, from their start to the snapshot file, marker and records durable.",
        );
        self.batch_commands.render(
            &mut out,
            "synod_batch_commands",
            "Commands per applied instance.",
        );
        out
    }
}

/// Logs refused peer messages, rate limited: at most one line per reason
/// per [`RefusalLog::INTERVAL`], with the count since the previous line.
/// Also copies the counters into [`Metrics::peer_messages_refused`].
#[derive(Debug)]
pub(crate) struct RefusalLog {
    logged: [u64; PEER_REFUSAL_REASONS.len()],
    last: Option<Instant>,
}

impl RefusalLog {
    pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> RefusalLog {
        RefusalLog {
            logged: [0; PEER_REFUSAL_REASONS.len()],
            last: None,
        }
    }

    /// Every counter, in [`PEER_REFUSAL_REASONS`] order.
    fn counts(core: Refusals, net: &NetStats) -> [u64; PEER_REFUSAL_REASONS.len()] {
        let mut counts = [0; PEER_REFUSAL_REASONS.len()];
        for (slot, reason) in counts.iter_mut().zip(Refusal::ALL) {
            *slot = core.get(reason);
        }
        let k = Refusal::ALL.len();
        counts[k] = net.bad_frames;
        counts[k + 1] = net.dropped_too_large;
        counts[k + 2] = net.dropped_unroutable;
        counts[k + 3] = net.dropped_queue_full;
        counts[k + 4] = net.handshakes_unauthenticated;
        counts[k + 5] = net.handshakes_rate_limited;
        counts
    }

    /// Called often (every tick); does its work at most once per interval.
    pub(crate) fn maybe_log(
        &mut self,
        now: Instant,
        core: Refusals,
        net: impl FnOnce() -> NetStats,
        metrics: &Metrics,
    ) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Self::INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        let counts = Self::counts(core, &net());
        for (k, count) in counts.iter().enumerate() {
            metrics.peer_messages_refused[k].store(*count, Relaxed);
            let since = count.saturating_sub(self.logged[k]);
            if since > 0 {
                tracing::warn!(
                    reason = PEER_REFUSAL_REASONS[k],
                    since_last = since,
                    total = count,
                    "peer messages refused (a buggy, old or hostile peer; see the synod_peer_messages_refused_total metric)"
                );
                self.logged[k] = *count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.batch_commands.observe(1.0);
        metrics.batch_commands.observe(3.0);
        metrics.batch_commands.observe(5000.0);
        let text = metrics.render();
        assert!(text.contains("synod_batch_commands_bucket{le=\"1\"} 1"));
        assert!(text.contains("synod_batch_commands_bucket{le=\"4\"} 2"));
        assert!(text.contains("synod_batch_commands_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("synod_batch_commands_count 3"));
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        assert_eq!(h.quantile(0.5), None);
        // Ten in (1, 2]: the median halfway through that bucket.
        for _ in 0..10 {
            h.observe(1.5);
        }
        assert_eq!(h.quantile(0.5), Some(1.5));
        assert_eq!(h.quantile(1.0), Some(2.0));
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(h.quantile(-0.1), None);
        // Ten more past the last bound: the top quantiles answer the largest
        // finite bound (a histogram cannot know more).
        for _ in 0..10 {
            h.observe(100.0);
        }
        assert_eq!(h.quantile(0.99), Some(4.0));
        assert_eq!(h.quantile(0.25), Some(1.5));
        assert_eq!(h.count(), 20);
        assert_eq!(h.sum(), 1015.0);
        assert_eq!(
            h.buckets(),
            vec![(1.0, 0), (2.0, 10), (4.0, 10), (f64::INFINITY, 20)]
        );
        // The first bucket starts at 0.
        let low = Histogram::new(&[10.0]);
        low.observe(3.0);
        low.observe(3.0);
        assert_eq!(low.quantile(0.5), Some(5.0));
    }

    #[test]
    fn refusal_names_match_the_core() {
        for (k, reason) in Refusal::ALL.iter().enumerate() {
            assert_eq!(PEER_REFUSAL_REASONS[k], reason.name());
        }
    }

    #[test]
    fn refusals_are_exported_and_logged_at_most_once_per_interval() {
        let metrics = Metrics::default();
        let mut log = RefusalLog::new();
        let start = Instant::now();
        let net = NetStats {
            bad_frames: 2,
            ..NetStats::default()
        };
        log.maybe_log(start, Refusals::default(), || net.clone(), &metrics);
        let text = metrics.render();
        assert!(text.contains("synod_peer_messages_refused_total{reason=\"bad_frame\"} 2"));
        assert!(text.contains("synod_peer_messages_refused_total{reason=\"ballot_jump\"} 0"));
        // Within the interval nothing is read (or logged).
        let later = NetStats {
            bad_frames: 5,
            ..NetStats::default()
        };
        log.maybe_log(
            start + Duration::from_millis(500),
            Refusals::default(),
            || panic!("read within the interval"),
            &metrics,
        );
        log.maybe_log(
            start + RefusalLog::INTERVAL,
            Refusals::default(),
            || later,
            &metrics,
        );
        assert!(metrics
            .render()
            .contains("synod_peer_messages_refused_total{reason=\"bad_frame\"} 5"));
        assert_eq!(log.logged[Refusal::ALL.len()], 5);
    }

    /// The lease-read series counts the reads served on connections as soon
    /// as they are served, not when the event loop next publishes.
    #[test]
    fn lease_reads_include_the_local_ones_when_scraped() {
        let metrics = Metrics::default();
        metrics.loop_lease_reads.store(3, Relaxed);
        metrics.local_lease_reads.store(200, Relaxed);
        let text = metrics.render();
        assert!(text.contains("\nsynod_lease_reads_total 203\n"));
        assert!(text.contains("\nsynod_local_lease_reads_total 200\n"));
    }
}
