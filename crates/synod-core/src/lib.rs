//! # synod-core: Multi-Paxos as a pure state machine
//!
//! This crate is the protocol of Synod and nothing else: no threads, sockets,
//! files, clocks or global randomness. A [`Replica`] is driven by four inputs:
//!
//! - [`Replica::step`]: a message from a peer;
//! - [`Replica::tick`]: one unit of time passed (the caller picks its length);
//! - [`Replica::propose`]: a client command;
//! - [`Replica::persisted`]: the records handed out so far are durable;
//!
//! and every effect comes out of [`Replica::take_ready`] as one [`Ready`], whose
//! fields document when the caller must act on them. Messages whose safety
//! depends on durable records are held inside the replica until the caller
//! reports them durable, so a runtime cannot send them too early.
//!
//! The same code runs in the node runtime and in the deterministic simulator
//! (`synod-sim`), which checks it against crashes, lossy networks and
//! partitions from one seed.

#![deny(missing_docs)]

pub mod codec;
mod config;
mod ids;
mod membership;
mod message;
mod ready;
mod record;
mod replica;
mod spool;
mod value;

pub use config::{
    Config, ConfigError, Inject, Lease, MEMBERS_MAX, MESSAGE_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES,
    VALUE_BYTES_LIMIT, VALUE_BYTES_MAX_DEFAULT, VALUE_OVERHEAD_BYTES,
};
pub use ids::{Ballot, GroupId, InstanceId, NodeId};
pub use membership::{
    Member, MemberOp, MemberRole, Membership, MembershipChange, MembershipError, Schedule,
    Scheduled, MEMBER_ADDR_BYTES_MAX, RECONFIG_DELAY_INSTANCES, REMOVED_IDS_MAX,
};
pub use message::{AppliedMark, Body, Message, PromiseEntry, Restoring, StateMark};
pub use ready::{
    Apply, Divergence, DivergenceKind, PersistSeq, ReadId, Ready, RejectReason, Rejected,
};
pub use record::{ChosenValue, Record};
pub use replica::{
    ChangeError, CompactError, MasterLease, MemberProgress, QuorumUse, RecoverError, Refusal,
    Refusals, ReleasedDemand, Replica, RoleKind, SnapshotTransferStats, Status,
    DROP_HOLD_ELECTION_TIMEOUTS, ROUND_JUMP_MAX,
};
pub use spool::{MemorySpool, SnapshotSpool};
pub use value::{Checksum, Command, Snapshot, SnapshotDigest, SnapshotHasher, SnapshotMeta, Value};
