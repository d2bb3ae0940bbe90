//! Settings of a node, validated before it starts.

use crate::clock::WallClock;
use crate::envelope::HEADER_BYTES as ENVELOPE_HEADER_BYTES;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use synod_core::{Config, GroupId, NodeId, VALUE_OVERHEAD_BYTES};
use synod_net::{NetConfig, PeerSecurity};
use synod_storage::SnapshotPolicy;

/// The group every node hosts today (one Paxos group per node).
pub(crate) const GROUP: GroupId = GroupId(0);

/// Everything a [`crate::Node`] needs. Build it with [`NodeConfig::new`] and
/// adjust fields; [`crate::Node::start`] validates it.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Every voting member, this node included: id -> peer (Paxos) address.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Where to accept peer connections (default: this node's entry in
    /// `peers`). Not bound by [`crate::Node::start_with_listener`], which
    /// accepts on the listener it is given (still validated).
    pub listen: SocketAddr,
    /// How peer links are secured: mutually authenticated TLS with the
    /// cluster's CA, or plain TCP on loopback only. **Required**: there is no
    /// default, and [`crate::Node::start`] refuses a config without one, so
    /// that nothing ends up on plain links by omission.
    pub peer_security: Option<PeerSecurity>,
    /// Identifies the cluster in the peer handshake; nodes of different
    /// clusters refuse each other. Default: a hash of the membership.
    pub cluster_id: u64,
    /// Write-ahead log and snapshots live here.
    pub data_dir: PathBuf,
    /// Length of one core tick. Election and heartbeat times are in ticks.
    /// Default 10 ms.
    pub tick: Duration,
    /// Leader heartbeat interval, in ticks. Default 5 (50 ms).
    pub heartbeat_ticks: u64,
    /// A follower that hears no leader for a random time in
    /// `[election_ticks, 2 * election_ticks)` starts an election. Default 50
    /// (an election after 0.5 to 1 s of silence).
    pub election_ticks: u64,
    /// A request that has not taken effect after this long fails with an
    /// "outcome unknown" error (it may still take effect later). Default 5 s.
    pub request_timeout: Duration,
    /// A node loading a peer's snapshot (it lagged past what its peers keep
    /// in their logs: receiving one, or restoring its state machine from
    /// one) refuses new requests with [`crate::RequestError::Loading`] once
    /// the load has lasted this long; those that arrive before wait for it
    /// (a short load costs its clients a delay, not an error). Default 1 s;
    /// zero refuses from the start, as Redis does while it loads.
    pub loading_grace: Duration,
    /// An unanswered proposal is proposed again after this long (or at once
    /// when the leader changes). Retries take effect at most once. Default
    /// 1 s.
    pub retry_interval: Duration,
    /// At most this many requests wait for the log at once; more wait to be
    /// admitted (back-pressure). Default 65,536.
    pub requests_in_flight_max: usize,
    /// When to snapshot the state machine and compact the log. After each
    /// checkpoint ends (snapshot written, log compacted, superseded files
    /// removed), a node on glibc hands the heap's free pages back to the
    /// system (`malloc_trim`) on a blocking thread: the copies a write
    /// makes while a snapshot is taken and the compacted log tail are freed
    /// all at once, and glibc keeps such holes in the middle of its heap
    /// resident otherwise (a third of a loaded KV node's RSS; the `synod`
    /// binary's jemalloc returns freed pages by itself). Default: every
    /// 10,000 instances or 64 MiB of log, whichever comes first, and the
    /// snapshot file written at no more than 128 MB/s
    /// ([`SnapshotPolicy::write_bytes_per_sec`]; a stop lifts the cap on a
    /// file being written, as does its falling a whole interval behind).
    pub snapshot_policy: SnapshotPolicy,
    /// Client sessions remembered for exactly-once (one per node process).
    /// Default 4,096. **Give every node the same value**: it decides, as
    /// commands are applied, which sessions the replicated table keeps (the
    /// oldest is evicted past it), so replicas with different values keep
    /// different tables, and a retried command could be applied again on
    /// one of them only. It is not carried in the log or the snapshot (the
    /// `synod` server always uses the default).
    pub sessions_max: usize,
    /// How long a library client session ([`crate::Node::session`]) opened
    /// through this node may go unused, in log time (the largest proposer
    /// stamp applied, not any replica's own clock), before every replica
    /// drops it; its later proposals then fail with
    /// [`crate::RequestError::SessionExpired`]. Carried in the session's
    /// registration, so replicas agree whatever their own setting. Log time
    /// advances only as commands are applied: an idle cluster expires
    /// nothing. Default 1 hour.
    pub session_ttl: Duration,
    /// At most this many commands in one instance value. Default 4,096.
    pub batch_commands_max: usize,
    /// The largest instance value in bytes (`synod_core::Config::value_bytes_max`):
    /// bounds every command, batch, peer message and log record, so that
    /// whatever is proposed can be chosen. [`crate::Node::propose`] refuses a
    /// command larger than [`NodeConfig::command_bytes_max`] with
    /// [`crate::RequestError::TooLarge`]. Checked at start-up against the peer
    /// frame limit and the log's record limit. Default
    /// [`synod_core::VALUE_BYTES_MAX_DEFAULT`] (32 MiB).
    pub value_bytes_max: usize,
    /// At most this many instances in flight in phase 2. Default 64.
    pub window_instances_max: usize,
    /// Where a follower's log `fdatasync` runs. `true` (the default): on
    /// the node's event loop, after the other tasks of its thread have sent
    /// what the step before produced, as Redis's `appendfsync always` does:
    /// no thread hand-off and no wake-up per sync (about 40% fewer context
    /// switches and 15% less CPU per write on a follower, measured on two
    /// cores); the loop serves nothing else during a sync, so a disk whose
    /// syncs take longer than the election timeout makes that follower miss
    /// heartbeats and campaign. A sync that starts while requests of the
    /// follower's own clients wait runs on a blocking thread instead, so
    /// that their forwards, notices and replies do not wait behind it. A
    /// leader always syncs on a blocking thread:
    /// its loop keeps taking requests and acks meanwhile (two followers'
    /// acks can choose a value before the leader's own sync ends). `false`:
    /// every sync on a blocking thread. [`crate::Metrics`] counts where each
    /// ran (`log_syncs_on_loop`, `log_syncs_on_thread`).
    pub sync_on_event_loop: bool,
    /// Whether the leader syncs its log for every batch it proposes, to
    /// count its own vote at once. `false` (the default): while the
    /// followers that answered in the last tick are a majority without it,
    /// the leader lets its own vote wait for the next sync, about one a tick
    /// ([`synod_core::Config::lazy_self_sync`]); a write is usually chosen
    /// by a majority of followers alone (every vote counted is durable, the
    /// leader's included), and the leader's disk does a tenth or less of
    /// the syncs. A commit waits for a majority of the followers instead of
    /// the fastest one plus the leader: with a follower much slower than the
    /// others, `true` gives a lower latency.
    pub eager_leader_sync: bool,
    /// How long a busy leader whose pipeline drained waits before it tells
    /// the followers how far the chosen prefix grew, unless a new Accept
    /// carries it meanwhile ([`synod_core::Config::announce_delay_ms`];
    /// busy: it proposed within this time after its last drain). Default
    /// 1 ms (whole ms only): under load the next batch's Accepts carry the
    /// prefix and the heartbeat round each drain cost is saved (at one
    /// client, one round per write: about a quarter of the CPU per write).
    /// When cohort batching ([`NodeConfig::batch_hold`]) is likely to hold
    /// the next batch back, the announcement waits instead until a hold
    /// starting at the drain would end, if later (busy then also means: the
    /// last batch came by then). Followers then apply a write (deliver its
    /// pub/sub messages, wake blocked pops) at most the longer of this and
    /// the hold (plus under 1 ms) plus the timer's lateness (about 1 ms)
    /// later, and no later than the next write; an idle cluster announces
    /// at once. Followers that wait on the prefix (a command they
    /// forwarded, a read) are told at once regardless. `Duration::ZERO`:
    /// always at once.
    pub chosen_announce_delay: Duration,
    /// Cohort batching ([`synod_core::Config::batch_hold_ms`]): clients
    /// that wait for their answers come back together, and a leader that
    /// proposed whatever waited split them into cohorts of part batches,
    /// each costing every voter a message, a write and an fsync. So while
    /// fewer than 4/5 of the most commands lately outstanding at once wait,
    /// the leader holds them back: until the batches in flight are chosen,
    /// then this long (whole ms; less than 1 ms more, as the clock is whole
    /// ms, plus the timer's lateness, about 1 ms). Default 1 ms. The
    /// trade-off: the batch goes once 4/5 are back, and the stragglers wait
    /// for its commit, a round more (with CPU to spare, a fifth of a busy
    /// client's requests take two rounds). When clients do not come back
    /// together (they pause between commands), a hold that ran out stops
    /// holding for a while (4 ms, doubling up to about a second). A cohort
    /// of one or two commands (one client, unpipelined), or a leader that
    /// proposed nothing for 20 ms, never waits. When
    /// [`NodeConfig::chosen_announce_delay`] is above zero, a busy leader
    /// whose pipeline drained lets the held batch's Accepts carry the chosen
    /// prefix to the followers, rather than a round of its own, if the batch
    /// comes by the end of a hold starting at the drain (they apply a write
    /// up to the hold later): at 50 clients a quarter less CPU per write
    /// summed over three nodes, measured side by side. `Duration::ZERO`:
    /// off.
    pub batch_hold: Duration,
    /// Applied log values kept in memory after the latest checkpoint, in
    /// encoded bytes, for peers that fall behind: catch-up sends them from
    /// memory. Older applied values are dropped from memory (they stay in
    /// the log on disk until the next checkpoint compacts it); a peer that
    /// needs one gets them read back from the log, or where the log no
    /// longer has them all, a snapshot written for it
    /// ([`synod_core::Config::applied_tail_bytes`]). Without a bound every
    /// value since the last checkpoint stays in memory, up to
    /// `snapshot_policy.log_bytes` (64 MiB by default) on top of the state.
    /// The bound is soft: values after a checkpoint being taken, after a
    /// snapshot a peer is fetching (for a minute after its last request),
    /// or that a peer is catching up through (for 2 s after its last
    /// catch-up request) are kept whatever the bound,
    /// up to what the snapshot policy lets the log grow to; values read back
    /// for a peer stay as long. Where a read back fails, a state machine on
    /// its own disk (`StateMachine::durable_end`) answers such a peer with a
    /// whole copy of its state. `u64::MAX`: no bound. Default 16 MiB.
    pub log_memory_bytes: u64,
    /// Chosen log values held in memory while the state machine is
    /// restored from a peer's snapshot, in encoded bytes (they are applied
    /// once it is back). At this bound the node stops voting for new
    /// instances and stops fetching chosen values from peers until the
    /// restore ends: the other voters carry on without it, as they did
    /// while it lagged, and it catches up afterwards. The cost: a cluster
    /// that has lost its other spare voters meanwhile (one of three down)
    /// has no quorum until the restore ends. Counted in
    /// `synod_accepts_deferred_total`
    /// ([`synod_core::Config::restore_backlog_bytes_max`]). 0: no values
    /// held (no vote while any restore runs); `u64::MAX`: no bound.
    /// Default 1 GiB: reached only by restores that last minutes under a
    /// heavy write load (4 minutes at 30,000 writes of 100 bytes a second),
    /// the restores of a state of tens of GB, for which a few percent more
    /// memory is held.
    pub restore_backlog_bytes: u64,
    /// Messages queued per peer (kept while it is unreachable); more are
    /// dropped, which Paxos tolerates (retransmission and catch-up). Default
    /// 4,096.
    pub peer_send_queue_max: usize,
    /// What an empty data directory means (see [`Bootstrap`]). Default
    /// [`Bootstrap::Existing`]: refuse it.
    pub bootstrap: Bootstrap,
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
    /// The file system the write-ahead log and snapshots live on (default
    /// `None`: the real one, under `data_dir`). Tests put a
    /// `synod_storage::SimFs` here to inject full disks and failing fsyncs;
    /// the identity file stays on the real file system.
    pub storage_fs: Option<std::sync::Arc<dyn synod_storage::Fs>>,
    /// This node's client address, shown to others in `member list` (the
    /// RESP server sets it; `None` for library users without one).
    pub advertise_resp: Option<String>,
    /// Leader read leases (default `None`: every read is confirmed by a
    /// heartbeat round). With a lease the leader serves linearizable reads
    /// from its own state with no network round. **Assumes** every node's
    /// monotonic clock runs within `drift_ppm` of real time (a bound on drift
    /// *rate*; offsets do not matter); see `synod_core::Lease`. The lease must
    /// be shorter than the minimum election timeout; see
    /// [`NodeConfig::default_read_lease`]. Every node of a cluster should use
    /// the same setting (a node's grants follow its own setting).
    pub read_lease: Option<synod_core::Lease>,
}

/// How a node treats a data directory without a Synod identity (an empty or
/// missing one). A directory with an identity is resumed whatever this says,
/// and a directory of another cluster or node is always refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bootstrap {
    /// This node is a member of a cluster that already runs: an empty
    /// directory means lost data, and the node refuses to start.
    #[default]
    Existing,
    /// The first start of a brand-new cluster (`synod server --init`): an
    /// empty directory gets a fresh identity. Never use it to restart a node
    /// that lost its data: it would vote with amnesia.
    New,
    /// This node lost its data (`synod server --rebuild`): it takes a new
    /// incarnation and rejoins as a non-voting member, learning and catching
    /// up, until voting is safe again (Paxos Made Live, §5.1).
    Rebuild,
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
            peer_security: None,
            cluster_id,
            data_dir: data_dir.into(),
            tick: Duration::from_millis(10),
            heartbeat_ticks: 5,
            election_ticks: 50,
            request_timeout: Duration::from_secs(5),
            loading_grace: Duration::from_secs(1),
            retry_interval: Duration::from_millis(1000),
            requests_in_flight_max: 65_536,
            snapshot_policy: SnapshotPolicy::default(),
            sessions_max: 4096,
            session_ttl: Duration::from_secs(3600),
            batch_commands_max: 4096,
            value_bytes_max: synod_core::VALUE_BYTES_MAX_DEFAULT,
            window_instances_max: 64,
            sync_on_event_loop: true,
            eager_leader_sync: false,
            chosen_announce_delay: Duration::from_millis(1),
            batch_hold: Duration::from_millis(1),
            log_memory_bytes: 16 << 20,
            restore_backlog_bytes: 1 << 30,
            peer_send_queue_max: 4096,
            bootstrap: Bootstrap::Existing,
            unsafe_local_reads: false,
            local_clock_reads: false,
            wall_clock: WallClock::system(),
            storage_fs: None,
            advertise_resp: None,
            read_lease: None,
        })
    }

    /// The election timeout range, for humans.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        let base = self.tick * u32::try_from(self.election_ticks).unwrap_or(u32::MAX);
        (base, base * 2)
    }

    /// A read lease suited to this config's timing: 4/5 of the minimum
    /// election timeout (so a failed leader's successor is not kept waiting
    /// by the grants), assuming a drift rate of at most 1% (10,000 ppm,
    /// far above what quartz clocks and NTP slewing do, at a cost of about
    /// 2% of the lease).
    pub fn default_read_lease(&self) -> synod_core::Lease {
        let election_min_ms = u64::try_from(self.election_timeout().0.as_millis()).unwrap_or(0);
        synod_core::Lease {
            duration_ms: election_min_ms * 4 / 5,
            drift_ppm: 10_000,
        }
    }

    /// The largest command [`crate::Node::propose`] accepts: what fits in a
    /// value of `value_bytes_max` bytes with the runtime's envelope around it.
    pub fn command_bytes_max(&self) -> usize {
        let max = self
            .value_bytes_max
            .saturating_sub(VALUE_OVERHEAD_BYTES + ENVELOPE_HEADER_BYTES);
        debug_assert_eq!(
            max,
            self.core_config(0)
                .command_bytes_max()
                .saturating_sub(ENVELOPE_HEADER_BYTES)
        );
        max
    }

    /// The core's configuration for this node (with `seed` for its elections).
    pub(crate) fn core_config(&self, seed: u64) -> Config {
        let mut core = Config::new(self.id, self.peers.keys().copied().collect());
        core.group = GROUP;
        core.seed = seed;
        core.heartbeat_ticks = self.heartbeat_ticks;
        core.election_ticks = self.election_ticks;
        core.batch_commands_max = self.batch_commands_max;
        core.window_instances_max = self.window_instances_max;
        core.value_bytes_max = self.value_bytes_max;
        core.read_lease = self.read_lease;
        core.lazy_self_sync = !self.eager_leader_sync;
        core.announce_delay_ms =
            u64::try_from(self.chosen_announce_delay.as_millis()).unwrap_or(u64::MAX);
        core.batch_hold_ms = u64::try_from(self.batch_hold.as_millis()).unwrap_or(u64::MAX);
        core.applied_tail_bytes = self.log_memory_bytes;
        core.restore_backlog_bytes_max = self.restore_backlog_bytes;
        // A minute of ticks: a peer fetching our snapshot asks for the
        // values after it once it installed it.
        core.applied_tail_hold_ticks =
            u64::try_from(60_000 / self.tick.as_millis().max(1)).unwrap_or(u64::MAX);
        core
    }

    /// The membership a new cluster starts with: every peer a voter, with its
    /// peer address (identical on every founding member).
    pub(crate) fn bootstrap_membership(&self) -> synod_core::Membership {
        let mut membership =
            synod_core::Membership::bootstrap(&self.peers.keys().copied().collect::<Vec<_>>());
        for member in &mut membership.members {
            member.addr = crate::membership::MemberAddr {
                paxos: self.peers.get(&member.id).copied(),
                resp: None,
            }
            .encode();
        }
        membership
    }

    /// The peer transport's configuration for this node.
    pub(crate) fn net_config(&self) -> NetConfig {
        // `validate` (run by Node::start before the transport starts) refuses
        // a config without a choice; this fallback is only reached by code
        // that skips validation, and still refuses non-loopback addresses.
        let security = self
            .peer_security
            .clone()
            .unwrap_or(PeerSecurity::InsecureLoopback);
        let mut net = NetConfig::new(
            self.cluster_id,
            self.id,
            self.listen,
            self.peers.clone(),
            security,
        );
        net.send_queue_max = self.peer_send_queue_max;
        net
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.peer_security.is_none() {
            return Err("peer_security is not set: choose PeerSecurity::Tls (credentials from the cluster CA) or PeerSecurity::InsecureLoopback (plain TCP, loopback addresses only)".into());
        }
        self.net_config().validate().map_err(|e| e.to_string())?;
        let core = self.core_config(0);
        core.validate().map_err(|e| e.to_string())?;
        // Bounded by construction: every message the core emits fits in one
        // peer frame, and every record it persists in one log frame. A value
        // that cannot cross the network is never chosen and stalls every
        // later instance; a record over the log's limit would stop the node.
        let frame_bytes_max = self.net_config().frame_bytes_max;
        if core.message_bytes_max() > frame_bytes_max {
            return Err(format!(
                "value_bytes_max {} is too large: the largest peer message would be {} bytes, over the frame limit of {frame_bytes_max}",
                self.value_bytes_max,
                core.message_bytes_max()
            ));
        }
        if core.record_bytes_max() >= synod_storage::frame::FRAME_BYTES_MAX {
            return Err(format!(
                "value_bytes_max {} is too large: the largest log record would be {} bytes, over the limit of {}",
                self.value_bytes_max,
                core.record_bytes_max(),
                synod_storage::frame::FRAME_BYTES_MAX
            ));
        }
        if self.command_bytes_max() == 0 {
            return Err(format!(
                "value_bytes_max {} leaves no room for a command",
                self.value_bytes_max
            ));
        }
        if !self.peers.contains_key(&self.id) {
            return Err(format!("node {} is not in the peer list", self.id.0));
        }
        if self.tick.is_zero() || self.request_timeout.is_zero() || self.retry_interval.is_zero() {
            return Err("tick, request timeout and retry interval must be positive".into());
        }
        if let Some(lease) = self.read_lease {
            let (election_min, _) = self.election_timeout();
            let election_min_ms = u64::try_from(election_min.as_millis()).unwrap_or(u64::MAX);
            if lease.duration_ms >= election_min_ms {
                return Err(format!(
                    "read lease of {} ms must be shorter than the minimum election timeout ({election_min_ms} ms = tick x election_ticks): a leader's failure would otherwise leave the group without a leader for the whole lease",
                    lease.duration_ms
                ));
            }
            let heartbeat_ms = u64::try_from(self.tick.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(self.heartbeat_ticks);
            if lease.leader_hold_ms() <= heartbeat_ms {
                return Err(format!(
                    "read lease of {} ms (the leader holds it {} ms after each heartbeat round) must outlast the heartbeat interval ({heartbeat_ms} ms), or it lapses between rounds",
                    lease.duration_ms,
                    lease.leader_hold_ms()
                ));
            }
        }
        if self.session_ttl.is_zero() {
            return Err("session_ttl must be positive".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults the field docs state: change both together.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let peers = BTreeMap::from([(NodeId(1), "127.0.0.1:1".parse().expect("addr"))]);
        let cfg = NodeConfig::new(NodeId(1), peers, "/tmp/x").expect("a member");
        assert_eq!(cfg.tick, Duration::from_millis(10));
        assert_eq!(cfg.heartbeat_ticks, 5);
        assert_eq!(cfg.election_ticks, 50);
        assert_eq!(cfg.request_timeout, Duration::from_secs(5));
        assert_eq!(cfg.retry_interval, Duration::from_secs(1));
        assert_eq!(cfg.requests_in_flight_max, 65_536);
        assert_eq!(cfg.snapshot_policy.instances, 10_000);
        assert_eq!(cfg.snapshot_policy.log_bytes, 64 << 20);
        assert_eq!(cfg.sessions_max, 4096);
        assert_eq!(cfg.batch_commands_max, 4096);
        assert_eq!(cfg.value_bytes_max, 32 << 20);
        assert_eq!(cfg.window_instances_max, 64);
        assert_eq!(cfg.peer_send_queue_max, 4096);
        assert_eq!(cfg.bootstrap, Bootstrap::Existing);
        assert!(cfg.peer_security.is_none() && cfg.read_lease.is_none());
    }
}
