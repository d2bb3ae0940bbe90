//! # synod: replicate a deterministic state machine with Multi-Paxos
//!
//! Implement [`StateMachine`] for your service, give every replica a
//! [`NodeConfig`] (its id, the members' peer addresses, a data directory) and
//! call [`Node::start`]. Then [`Node::propose`] replicates a command and
//! returns its output once a majority has it durably and it is applied;
//! [`Node::read`] answers a linearizable read. Any node accepts requests: a
//! follower forwards them to the leader. Leader failover, catch-up of lagging
//! replicas, snapshots and log compaction happen underneath.
//!
//! The protocol is `synod-core` (pure, checked by the deterministic
//! simulator), the log is `synod-storage`, the peer links are `synod-net`.
//! See `examples/counter.rs` for a complete program.

#![deny(missing_docs)]

mod admin;
pub mod blocking;
mod client_sessions;
mod clock;
mod config;
mod driver;
pub mod engine;
mod envelope;
mod identity;
pub mod local_reads;
pub mod master;
mod membership;
mod metrics;
mod node;
pub mod persist;
mod session;
mod state_machine;

pub use admin::{
    serve_admin, serve_admin_with, status_json, AdminAuth, AdminConfig, AdminVerdict, ExtraMetrics,
    ADMIN_CONNECTIONS_MAX_DEFAULT, HEAD_BYTES_MAX as ADMIN_HEAD_BYTES_MAX,
    HEAD_TIMEOUT as ADMIN_HEAD_TIMEOUT,
};
pub use client_sessions::{SessionId, CLIENT_SESSIONS_MAX};
pub use clock::{StampClock, WallClock};
pub use config::{Bootstrap, NodeConfig};
pub use local_reads::{LocalPermit, LocalReads};
pub use master::MasterLease;
pub use membership::{
    read_join_schedule, write_join_schedule, JoinInfo, MemberAddr, MemberError, MemberInfo,
    MembersView,
};
pub use metrics::{Histogram, Metrics, PEER_REFUSAL_REASONS};
pub use node::{Leadership, Node, NodeError, NodeStatus, RequestError};
pub use session::Session;
pub use state_machine::{
    ApplyContext, BatchCommand, QueryJob, Served, SnapshotJob, SnapshotStream, StateMachine,
    StateSyncJob,
};
pub use synod_core::{
    Ballot, Checksum, InstanceId, MemberRole, Membership, NodeId, RoleKind, Schedule,
    DROP_HOLD_ELECTION_TIMEOUTS, RECONFIG_DELAY_INSTANCES, VALUE_BYTES_MAX_DEFAULT,
};
/// How peer links are secured ([`NodeConfig::peer_security`]).
pub use synod_net::{PeerSecurity, PeerTls};
pub use synod_storage::SnapshotPolicy;
