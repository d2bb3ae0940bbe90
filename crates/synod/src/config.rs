//! Settings of a node, validated before it starts.

use crate::clock::WallClock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use synod_core::NodeId;
use synod_storage::SnapshotPolicy;

/// Everything a [`crate::Node`] needs. Build it with [`NodeConfig::new`] and
/// adjust fields; [`crate::Node::start`] validates it.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Every voting member, this node included: id -> peer (Paxos) address.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Where to accept peer connections (default: this node's entry in `peers`).
    pub listen: SocketAddr,
    /// Identifies the cluster in the peer handshake; nodes of different
    /// clusters refuse each other. Default: a hash of the membership.
    pub cluster_id: u64,
    /// Write-ahead log and snapshots live here.
    pub data_dir: PathBuf,
    /// Length of one core tick. Election and heartbeat times are in ticks.
    pub tick: Duration,
    /// Leader heartbeat interval, in ticks.
    pub heartbeat_ticks: u64,
    /// A follower that hears no leader for a random time in
    /// `[election_ticks, 2 * election_ticks)` starts an election.
    pub election_ticks: u64,
    /// A request that has not taken effect after this long fails with an
    /// "outcome unknown" error (it may still take effect later).
    pub request_timeout: Duration,
    /// An unanswered proposal is proposed again after this long (or at once
    /// when the leader changes). Retries take effect at most once.
    pub retry_interval: Duration,
    /// At most this many requests wait for the log at once; more wait to be
    /// admitted (back-pressure).
    pub requests_in_flight_max: usize,
    /// When to snapshot the state machine and compact the log.
    pub snapshot_policy: SnapshotPolicy,
    /// Client sessions remembered for exactly-once (one per node process).
    pub sessions_max: usize,
    /// At most this many commands in one instance value.
    pub batch_commands_max: usize,
    /// At most this many instances in flight in phase 2.
    pub window_instances_max: usize,
    /// Messages queued per peer (kept while it is unreachable); more are
    /// dropped, which Paxos tolerates (retransmission and catch-up).
    pub peer_send_queue_max: usize,
    /// **Breaks linearizability; for testing the testers only.** Answers
    /// reads from this replica's state at once, without going through the
    /// log, so a follower (or a deposed leader) can return stale values. The
    /// chaos tester's negative control turns this on to show its checker
    /// catches stale reads. Never set it in production.
    pub unsafe_local_reads: bool,
    /// **Negative control only; breaks linearizability.** Answers every read
    /// by read index with this node's own wall clock as the time, as the first
    /// release did, instead of sending reads whose answer depends on the time
    /// through the log (see `StateMachine::query_depends_on_time`). Under clock
    /// skew a GET of a key with a TTL can then answer nil on one node and the
    /// value on a later GET elsewhere. It exists so that testers can show
    /// their checkers catch that. Never set it in production.
    pub local_clock_reads: bool,
    /// Where this node reads the wall-clock time it stamps into the commands
    /// it proposes (default: the system clock). Tests and the simulator put a
    /// skewed or jumping clock here.
    pub wall_clock: WallClock,
}

impl NodeConfig {
    /// Defaults for node `id` of the membership `peers`, storing in `data_dir`.
    /// Returns `None` if `id` is not in `peers`.
    pub fn new(
        id: NodeId,
        peers: BTreeMap<NodeId, SocketAddr>,
        data_dir: impl Into<PathBuf>,
    ) -> Option<NodeConfig> {
        let listen = *peers.get(&id)?;
        let cluster_id = membership_hash(&peers);
        Some(NodeConfig {
            id,
            peers,
            listen,
            cluster_id,
            data_dir: data_dir.into(),
            tick: Duration::from_millis(10),
            heartbeat_ticks: 5,
            election_ticks: 50,
            request_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(1000),
            requests_in_flight_max: 65_536,
            snapshot_policy: SnapshotPolicy::default(),
            sessions_max: 4096,
            batch_commands_max: 4096,
            window_instances_max: 64,
            peer_send_queue_max: 4096,
            unsafe_local_reads: false,
            local_clock_reads: false,
            wall_clock: WallClock::system(),
        })
    }

    /// The election timeout range, for humans.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        let base = self.tick * u32::try_from(self.election_ticks).unwrap_or(u32::MAX);
        (base, base * 2)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.peers.contains_key(&self.id) {
            return Err(format!("node {} is not in the peer list", self.id.0));
        }
        if self.tick.is_zero() || self.request_timeout.is_zero() || self.retry_interval.is_zero() {
            return Err("tick, request timeout and retry interval must be positive".into());
        }
        if self.requests_in_flight_max == 0
            || self.sessions_max == 0
            || self.peer_send_queue_max == 0
        {
            return Err(
                "requests_in_flight_max, sessions_max and peer_send_queue_max must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A stable hash of the membership (FNV-1a over "id=addr," in id order), so
/// that nodes started with different peer lists refuse each other.
fn membership_hash(peers: &BTreeMap<NodeId, SocketAddr>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in peers {
        for byte in format!("{}={addr},", id.0).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
