//! A blocking facade over [`crate::Node`], for code without an async
//! runtime (as PhxPaxos users write it): each call waits on the calling
//! thread until the node answers.
//!
//! [`Node::start`] builds a tokio runtime of its own (two worker threads by
//! default, [`Node::start_with_threads`] to choose), which runs the node's
//! event loop, its storage and its peer links; the facade's calls block on
//! it. Many threads may call one `Node` at once (it is `Sync`): their
//! proposals are batched into instances like concurrent async proposals.
//!
//! Do not call it from inside an async runtime: blocking a runtime's worker
//! on another runtime panics ("cannot block the current thread from within
//! a runtime"); async code uses [`crate::Node`] directly, which
//! [`Node::inner`] also gives.
//!
//! ```no_run
//! use bytes::Bytes;
//! use synod::{blocking, ApplyContext, NodeConfig, NodeId, StateMachine};
//! # struct Counter(u64);
//! # impl StateMachine for Counter {
//! #     fn apply(&mut self, _: &[u8], _: &ApplyContext) -> Bytes { self.0 += 1; Bytes::new() }
//! #     fn query(&self, _: &[u8], _: &ApplyContext) -> Bytes { Bytes::new() }
//! #     fn snapshot(&self) -> Bytes { Bytes::new() }
//! #     fn restore(&mut self, _: &[u8]) -> Result<(), String> { Ok(()) }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config: NodeConfig = unimplemented!();
//! let node = blocking::Node::start(config, Counter(0))?;
//! node.ready()?; // the log is replayed and a leader is known
//! let output = node.propose(Bytes::from_static(b"add 1"))?;
//! if let Some(lease) = node.master_lease() {
//!     if lease.covers(std::time::Duration::from_millis(50)) {
//!         // only one node at a time runs this (needs `config.read_lease`)
//!     }
//! }
//! node.shutdown();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::{
    Leadership, MasterLease, MemberAddr, MemberError, MembersView, Metrics, NodeConfig, NodeError,
    NodeId, NodeStatus, RequestError, Session, SessionId, StateMachine,
};

/// Worker threads of the runtime [`Node::start`] builds.
pub const WORKER_THREADS_DEFAULT: usize = 2;

/// A [`crate::Node`] whose calls block (see the module docs).
pub struct Node {
    /// Dropped after `node`: the node's tasks run on it.
    runtime: Runtime,
    node: crate::Node,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Node")
            .field("node", &self.node)
            .finish()
    }
}

impl Node {
    /// [`crate::Node::start`] on a runtime of its own with
    /// [`WORKER_THREADS_DEFAULT`] worker threads.
    pub fn start<S: StateMachine>(config: NodeConfig, machine: S) -> Result<Node, NodeError> {
        Node::start_with_threads(config, machine, WORKER_THREADS_DEFAULT)
    }

    /// [`crate::Node::start`] on a runtime of its own with `worker_threads`
    /// worker threads (at least 1).
    pub fn start_with_threads<S: StateMachine>(
        config: NodeConfig,
        machine: S,
        worker_threads: usize,
    ) -> Result<Node, NodeError> {
        Node::start_on(config, machine, worker_threads, None)
    }

    /// [`crate::Node::start_with_listener`] (the peer port is `listener`,
    /// bound by the caller) on a runtime of its own with
    /// [`WORKER_THREADS_DEFAULT`] worker threads.
    pub fn start_with_listener<S: StateMachine>(
        config: NodeConfig,
        machine: S,
        listener: std::net::TcpListener,
    ) -> Result<Node, NodeError> {
        Node::start_on(config, machine, WORKER_THREADS_DEFAULT, Some(listener))
    }

    fn start_on<S: StateMachine>(
        config: NodeConfig,
        machine: S,
        worker_threads: usize,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Node, NodeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("synod")
            .enable_all()
            .build()
            .map_err(|error| {
                NodeError::Recover(format!("cannot build a tokio runtime: {error}"))
            })?;
        let node = runtime.block_on(async {
            match listener {
                Some(listener) => crate::Node::start_with_listener(config, machine, listener).await,
                None => crate::Node::start(config, machine).await,
            }
        })?;
        Ok(Node { runtime, node })
    }

    /// [`crate::Node::propose`], blocking.
    pub fn propose(&self, command: Bytes) -> Result<Bytes, RequestError> {
        self.runtime.block_on(self.node.propose(command))
    }

    /// [`crate::Node::session`], blocking: a client session to propose on
    /// with [`Node::propose_in`].
    pub fn session(&self) -> Result<Session, RequestError> {
        self.runtime.block_on(self.node.session())
    }

    /// [`crate::Node::resume_session`].
    pub fn resume_session(&self, id: SessionId, next_seq: u64) -> Session {
        self.node.resume_session(id, next_seq)
    }

    /// [`Session::propose`], blocking.
    pub fn propose_in(&self, session: &mut Session, command: Bytes) -> Result<Bytes, RequestError> {
        self.runtime.block_on(session.propose(command))
    }

    /// [`Session::retry`], blocking.
    pub fn retry_in(
        &self,
        session: &mut Session,
        seq: u64,
        command: Bytes,
    ) -> Result<Bytes, RequestError> {
        self.runtime.block_on(session.retry(seq, command))
    }

    /// [`crate::Node::read`], blocking.
    pub fn read(&self, query: Bytes) -> Result<Bytes, RequestError> {
        self.runtime.block_on(self.node.read(query))
    }

    /// [`crate::Node::read_stale`], blocking (not linearizable).
    pub fn read_stale(&self, query: Bytes) -> Result<Bytes, RequestError> {
        self.runtime.block_on(self.node.read_stale(query))
    }

    /// [`crate::Node::ready`], blocking.
    pub fn ready(&self) -> Result<NodeStatus, NodeError> {
        self.runtime.block_on(self.node.ready())
    }

    /// [`crate::Node::status`].
    pub fn status(&self) -> NodeStatus {
        self.node.status()
    }

    /// [`crate::Node::is_leader`].
    pub fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    /// [`crate::Node::leadership`]: give it to [`Node::next_leadership`].
    pub fn leadership(&self) -> Leadership {
        self.node.leadership()
    }

    /// [`Leadership::next`], blocking: waits until this node becomes
    /// leader (`Some(true)`) or stops being one (`Some(false)`); `None` once
    /// the node has stopped.
    pub fn next_leadership(&self, leadership: &mut Leadership) -> Option<bool> {
        self.runtime.block_on(leadership.next())
    }

    /// Waits until this node leads (`true`), or until `timeout` passed or
    /// the node stopped (`false`).
    pub fn wait_for_leadership(&self, timeout: Duration) -> bool {
        let mut leadership = self.node.leadership();
        if self.node.is_leader() {
            return true;
        }
        self.runtime.block_on(async move {
            tokio::time::timeout(timeout, leadership.next())
                .await
                .ok()
                .flatten()
                .unwrap_or(false)
        })
    }

    /// [`crate::Node::master_lease`], blocking: this node's master lease, if
    /// it is the master now (see [`crate::master`]).
    pub fn master_lease(&self) -> Option<MasterLease> {
        self.runtime.block_on(self.node.master_lease())
    }

    /// [`crate::Node::drop_leadership`], blocking.
    pub fn drop_leadership(&self) -> bool {
        self.runtime.block_on(self.node.drop_leadership())
    }

    /// [`crate::Node::peers_connected`].
    pub fn peers_connected(&self) -> BTreeMap<NodeId, bool> {
        self.node.peers_connected()
    }

    /// [`crate::Node::metrics`].
    pub fn metrics(&self) -> &Metrics {
        self.node.metrics()
    }

    /// [`crate::Node::config`].
    pub fn config(&self) -> &NodeConfig {
        self.node.config()
    }

    /// [`crate::Node::add_member`], blocking.
    pub fn add_member(
        &self,
        id: NodeId,
        addr: MemberAddr,
        learner: bool,
    ) -> Result<(), MemberError> {
        self.runtime
            .block_on(self.node.add_member(id, addr, learner))
    }

    /// [`crate::Node::remove_member`], blocking.
    pub fn remove_member(&self, id: NodeId, force: bool) -> Result<(), MemberError> {
        self.runtime.block_on(self.node.remove_member(id, force))
    }

    /// [`crate::Node::promote`], blocking.
    pub fn promote(&self, id: NodeId, force: bool) -> Result<(), MemberError> {
        self.runtime.block_on(self.node.promote(id, force))
    }

    /// [`crate::Node::transfer_leader`], blocking.
    pub fn transfer_leader(&self, to: NodeId) -> Result<(), MemberError> {
        self.runtime.block_on(self.node.transfer_leader(to))
    }

    /// [`crate::Node::members`], blocking.
    pub fn members(&self) -> Result<MembersView, MemberError> {
        self.runtime.block_on(self.node.members())
    }

    /// [`crate::Node::snapshot_now`], blocking.
    pub fn snapshot_now(&self) -> Result<crate::InstanceId, NodeError> {
        self.runtime.block_on(self.node.snapshot_now())
    }

    /// [`crate::Node::wait`], blocking: returns when the node stops.
    pub fn wait(&self) -> Result<(), NodeError> {
        self.runtime.block_on(self.node.wait())
    }

    /// The async node, for code that has a runtime after all (its futures
    /// must run on [`Node::runtime`]).
    pub fn inner(&self) -> &crate::Node {
        &self.node
    }

    /// The runtime the node runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// [`crate::Node::shutdown`], blocking; the runtime stops with it.
    pub fn shutdown(self) {
        self.runtime.block_on(self.node.shutdown());
    }
}
