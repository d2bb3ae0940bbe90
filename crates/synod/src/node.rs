//! The public handle of a running node.

use crate::client_sessions::SessionId;
use crate::config::NodeConfig;
use crate::driver::{Driver, Submit};
use crate::envelope::Kind;
use crate::master::{MasterLease, MasterSubmit};
use crate::membership::{JoinInfo, MemberAddr, MemberError, MemberSubmit, MembersView};
use crate::metrics::Metrics;
use crate::session::Session;
use crate::state_machine::StateMachine;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use synod_core::{Ballot, Checksum, InstanceId, MemberOp, MembershipChange, NodeId, RoleKind};
use synod_net::Net;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A node could not start, or stopped on a fatal error.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory failed (corruption, I/O or fsync error). Fatal:
    /// the node stops rather than risk forgetting a promise.
    #[error("storage: {0}")]
    Storage(#[from] synod_storage::StorageError),
    /// The data directory is not this node's (foreign identity), or it lost
    /// its data while the node is a member of a running cluster. The message
    /// says what to do (`--rebuild`, `--init`, the right directory).
    #[error("{0}")]
    DataDir(String),
    /// The durable records or snapshot cannot be replayed.
    #[error("recovery from the data directory failed: {0}")]
    Recover(String),
    /// The peer listener could not start.
    #[error("network: {0}")]
    Net(String),
    /// The node stopped on a fatal error, described here.
    #[error("{0}")]
    Stopped(String),
    /// This node was removed from the cluster: it stops for good.
    #[error("{0}")]
    Removed(String),
}

/// Why a request got no answer. `TooLarge` and `SessionUnknown`: the
/// command was never applied and never will be. `Loading`: this submission
/// did nothing (an earlier one of the same command keeps its outcome). `OutputNotKept`: it took
/// effect, but its output is lost. `SessionExpired` and `SessionSeqTooOld`:
/// not applied now and never will be under this sequence number, but an
/// earlier attempt's outcome is unknown. Every other variant except
/// `Diverged` leaves the outcome unknown: the command may or may not take
/// effect.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// No majority answered in time (no quorum, or a leader change took
    /// too long).
    #[error(
        "no answer within {0:?} (no quorum reachable?): the outcome is unknown, the command may or may not have taken effect"
    )]
    Timeout(Duration),
    /// The node stopped before the request finished.
    #[error("the node stopped ({0}): the outcome is unknown")]
    Stopped(String),
    /// This replica's state diverged from its peers; it refuses to serve.
    #[error("this replica diverged from its peers and refuses to serve")]
    Diverged,
    /// The command is longer than the largest the log carries
    /// ([`NodeConfig::command_bytes_max`]); it was not proposed and never
    /// will be (the outcome is known: no effect).
    #[error("the command of {bytes} bytes exceeds the maximum replicated size of {max} bytes")]
    TooLarge {
        /// The command's length.
        bytes: usize,
        /// The largest command accepted.
        max: usize,
    },
    /// The command took effect, but its output is lost: this node learned
    /// of it from a snapshot (it lagged while the command was chosen) whose
    /// session table did not keep it (outputs are kept up to a byte limit
    /// per session), or an on-disk state machine's restart skipped it (its
    /// state had it already; see `StateMachine::durable_end`), here or on
    /// the node whose snapshot this one installed. Final: a retry gets the
    /// same answer, and the command is never applied again.
    #[error(
        "the command took effect, but its output was not kept: this node caught up from a snapshot whose session table lacks it (outputs are kept up to a size limit), or a restart of a state machine that keeps its state on its own disk did not apply it again"
    )]
    OutputNotKept,
    /// This node caught up from a snapshot, and the session table in it can
    /// no longer tell whether the command took effect (the reason says why).
    /// The outcome is unknown.
    #[error("the outcome is unknown: {0}; the command may or may not have taken effect")]
    SessionLost(String),
    /// This node is catching up from a peer's snapshot (it lagged past
    /// what its peers keep in their logs): it is receiving, installing or
    /// restoring one, and would answer nothing until done; the load has
    /// lasted [`crate::NodeConfig::loading_grace`]. This submission was
    /// refused before it was proposed or read: it did nothing. (An earlier
    /// submission of the same command, or of the same session sequence
    /// number, keeps whatever outcome it had: retry that with the same
    /// sequence number to learn it.) Retry later, or through another node
    /// (Redis clients see `-LOADING`).
    #[error("this node is loading a snapshot from a peer (it lagged behind): this request was not run; retry, or use another node")]
    Loading,
    /// A read answered off the event loop failed on this node (the state
    /// machine's read panicked: a bug). Nothing changed; the node goes on.
    #[error("the read failed on this node: {0}")]
    ReadFailed(String),
    /// The client session was dropped from the replicated table: unused for
    /// its TTL of log time, or evicted when the table was full
    /// ([`crate::CLIENT_SESSIONS_MAX`]). The command was not applied (and no
    /// command of the session ever will be): open a new session. What the
    /// session's earlier unanswered commands did is unknown.
    #[error("client session {0} expired (unused for its TTL, or evicted from a full table): the command was not applied; open a new session")]
    SessionExpired(crate::SessionId),
    /// No such client session was ever registered in this cluster (an id
    /// from another cluster, or one whose data was reset). Not applied.
    #[error("client session {0} is unknown to this cluster: the command was not applied")]
    SessionUnknown(crate::SessionId),
    /// The session already applied a larger sequence number (`last`):
    /// `seq` was applied before or skipped, and the table keeps only the
    /// latest. It was not applied now; its own outcome is unknown.
    #[error("sequence number {seq} is older than the session's latest applied ({last}): not applied now; whether it took effect earlier is unknown")]
    SessionSeqTooOld {
        /// The sequence number proposed.
        seq: u64,
        /// The largest the session applied.
        last: u64,
    },
}

/// A node's view of the cluster, refreshed as the node works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Every voting member of the newest membership.
    pub members: Vec<NodeId>,
    /// Every learner of the newest membership (non-voting; joining ones are
    /// promoted once caught up).
    pub learners: Vec<NodeId>,
    /// The newest membership's epoch (0 at bootstrap; +1 per change).
    pub membership_epoch: u64,
    /// Follower, candidate or leader.
    pub role: RoleKind,
    /// The leader this node follows (itself when leading).
    pub leader: Option<NodeId>,
    /// The ballot this node promised.
    pub promised: Ballot,
    /// End of the prefix of instances known chosen here.
    pub chosen_end: InstanceId,
    /// End of the prefix applied to the state machine.
    pub applied_end: InstanceId,
    /// Running checksum of the applied values.
    pub checksum: Checksum,
    /// Applied point of the latest snapshot.
    pub snapshot_end: InstanceId,
    /// A snapshot is asked for, being taken, written or checkpointed.
    pub snapshot_in_progress: bool,
    /// The state machine is being restored from a peer's snapshot (off the
    /// event loop): `applied_end` is the snapshot's point already, but
    /// nothing is applied until this clears.
    pub restoring: bool,
    /// The node is loading a peer's snapshot: receiving it, or restoring
    /// it (`restoring`). New requests are refused
    /// ([`RequestError::Loading`]) once this has lasted
    /// [`crate::NodeConfig::loading_grace`]; those from before wait.
    pub loading: bool,
    /// Unix time in ms (this machine's clock) of this node's latest
    /// checkpoint, or of the node's start before its first (Redis'
    /// `LASTSAVE` semantics).
    pub snapshot_unix_ms: u64,
    /// Requests waiting: for the log, for a read's confirmation, or (a read
    /// answered off the event loop) for its turn and its job; counted
    /// against [`NodeConfig::requests_in_flight_max`].
    pub requests_waiting: usize,
    /// Divergence was detected: this node refuses to serve.
    pub diverged: bool,
    /// The node lost its data and rebuilds: it learns and catches up but
    /// does not vote yet.
    pub rebuilding: bool,
    /// Set when the node stopped, with the reason.
    pub stopped: Option<String>,
    /// The node stopped on a fatal error (storage failure, corrupt snapshot).
    pub fatal: bool,
}

/// This node's leadership as it changes (from [`Node::leadership`]): `next`
/// answers `true` when the node becomes leader, `false` when it stops being
/// one, and `None` once the node has stopped. Changes that come and go
/// between two calls may be seen as one or not at all; each answer is the
/// state at that moment, never a stale one.
#[derive(Debug)]
pub struct Leadership {
    status: watch::Receiver<NodeStatus>,
    leading: bool,
}

impl Leadership {
    /// Whether the node led at the last answer (or when this was made).
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Waits for the node to become leader or to stop being one; `None`
    /// once the node stopped (a node that stops while leading answers
    /// `false` first).
    pub async fn next(&mut self) -> Option<bool> {
        loop {
            let (leading, stopped) = {
                let status = self.status.borrow_and_update();
                let leading = status.stopped.is_none()
                    && status.role == RoleKind::Leader
                    && status.leader == Some(status.id);
                (leading, status.stopped.is_some())
            };
            if leading != self.leading {
                self.leading = leading;
                return Some(leading);
            }
            if stopped || self.status.changed().await.is_err() {
                if self.leading {
                    self.leading = false;
                    return Some(false);
                }
                return None;
            }
        }
    }
}

/// A running replica: a Paxos core, its write-ahead log, its peer
/// connections and the user's state machine, driven by one tokio task.
///
/// A one-node cluster (three or five in production: see [`NodeConfig`])
/// with a counter as its state machine:
///
/// ```
/// use bytes::Bytes;
/// use synod::{ApplyContext, Bootstrap, Node, NodeConfig, NodeId, PeerSecurity, StateMachine};
///
/// #[derive(Default)]
/// struct Counter(u64);
///
/// impl StateMachine for Counter {
///     fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
///         self.0 += 1;
///         Bytes::from(self.0.to_string())
///     }
///     fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
///         Bytes::from(self.0.to_string())
///     }
///     fn snapshot(&self) -> Bytes {
///         Bytes::from(self.0.to_string())
///     }
///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
///         let text = std::str::from_utf8(snapshot).map_err(|e| e.to_string())?;
///         self.0 = text.parse().map_err(|e| format!("{e}"))?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// # runtime.block_on(async {
/// let dir = tempfile::tempdir()?;
/// // Any free port: bound first, then handed to the node.
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let peers = [(NodeId(1), listener.local_addr()?)].into_iter().collect();
/// let mut config = NodeConfig::new(NodeId(1), peers, dir.path().to_path_buf())
///     .ok_or("node 1 is not among the peers")?;
/// config.bootstrap = Bootstrap::New;
/// config.peer_security = Some(PeerSecurity::InsecureLoopback);
/// let node = Node::start_with_listener(config, Counter::default(), listener).await?;
/// node.ready().await?;
/// assert_eq!(node.propose(Bytes::from_static(b"increment")).await?, "1");
/// assert_eq!(node.read(Bytes::new()).await?, "1");
/// node.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
pub struct Node {
    submit: mpsc::Sender<Submit>,
    /// Stop requests ([`Node::shutdown`]), beside `submit` so that a full
    /// node takes them too.
    stop: mpsc::Sender<()>,
    status: watch::Receiver<NodeStatus>,
    /// The end of the chosen prefix this node recovered from its data
    /// directory: [`Node::ready`] waits for it to be applied.
    recovered_chosen_end: InstanceId,
    metrics: Arc<Metrics>,
    net: Net,
    config: NodeConfig,
    /// The engine's stamp clock (see [`Node::stamp_ms`]).
    stamps: Arc<crate::clock::StampSource>,
    local_reads: crate::LocalReads,
    _task: JoinHandle<Result<(), NodeError>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.borrow();
        f.debug_struct("Node")
            .field("id", &status.id)
            .field("role", &status.role)
            .field("leader", &status.leader)
            .field("applied_end", &status.applied_end)
            .field("stopped", &status.stopped)
            .finish_non_exhaustive()
    }
}

/// Refuses a peer listener handed to [`Node::start_with_listener`] that
/// peers could not reach or that breaks the links' rules: its port must be
/// the node's in `peers` (its address too, unless it listens on every
/// interface), and insecure links stay on loopback. Without this, a node
/// on another port started, dialed its peers and never heard from them:
/// no leader, no error (review of stop 67).
fn check_listener(config: &NodeConfig, listener: &std::net::TcpListener) -> Result<(), String> {
    let local = listener
        .local_addr()
        .map_err(|e| format!("the peer listener handed in has no local address: {e}"))?;
    let Some(own) = config.peers.get(&config.id) else {
        // (`validate` refuses a node that is not among its peers.)
        return Err(format!("node {} is not among its peers", config.id.0));
    };
    let same_ip = local.ip() == own.ip() || local.ip().is_unspecified();
    if local.port() != own.port() || !same_ip {
        return Err(format!(
            "the peer listener handed in is on {local}, but node {}'s peer address is {own}: its peers could not reach it",
            config.id.0
        ));
    }
    if !is_listening(listener) {
        return Err(format!(
            "the peer listener handed in ({local}) is bound but not listening (listen() was never called on it): its peers' connections would be refused"
        ));
    }
    // The transport's own rule (it checks again when it starts).
    config
        .net_config()
        .validate_listener(local)
        .map_err(|e| e.to_string())
}

/// Whether `listener` takes connections (`SO_ACCEPTCONN`): a socket that was
/// bound but never put in the listening state (from a file descriptor handed
/// over as a listener) refuses its peers' connections, and each `accept`
/// fails; the node would start and never hear from its peers. `true` where
/// the system cannot say.
#[cfg(target_os = "linux")]
fn is_listening(listener: &std::net::TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is the listener's own, open while it is
    // borrowed; the option is written into `accepting`, whose size `len`
    // gives.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc != 0 || accepting != 0
}

#[cfg(not(target_os = "linux"))]
fn is_listening(_: &std::net::TcpListener) -> bool {
    true
}

impl Node {
    /// Recovers the node from its data directory, connects to its peers and
    /// starts serving. Must run inside a multi-threaded tokio runtime.
    pub async fn start<S: StateMachine>(config: NodeConfig, machine: S) -> Result<Node, NodeError> {
        // Boxed: the runtime is compiled once, here, for every state
        // machine type (see `impl StateMachine for Box<dyn StateMachine>`).
        Node::start_boxed(config, Box::new(machine), None).await
    }

    /// Like [`Node::start`], but the peer port is `listener`, bound by the
    /// caller (`NodeConfig::listen` is then not bound). It must be
    /// listening, on the node's address in `peers` (or on every interface,
    /// on that port), and on loopback for insecure links: else the start is
    /// refused before the data directory is touched. A listener handed over by a
    /// service manager, or bound to port 0 first so that every member's
    /// peer list names the real port: no other socket can take the port
    /// between choosing it and the node's start (tests that bound port 0,
    /// dropped it and let the node bind it again failed now and then with
    /// "Address already in use").
    pub async fn start_with_listener<S: StateMachine>(
        config: NodeConfig,
        machine: S,
        listener: std::net::TcpListener,
    ) -> Result<Node, NodeError> {
        Node::start_boxed(config, Box::new(machine), Some(listener)).await
    }

    /// The runtime behind a boxed future, and never inlined: a caller's
    /// crate then compiles nothing of it (an `async fn` called directly is
    /// compiled again in every crate that awaits it, the whole event loop
    /// with it, about 30 CPU-seconds per example or test binary).
    #[inline(never)]
    fn start_boxed(
        config: NodeConfig,
        machine: Box<dyn StateMachine>,
        listener: Option<std::net::TcpListener>,
    ) -> Pin<Box<dyn Future<Output = Result<Node, NodeError>> + Send>> {
        Box::pin(Node::start_dyn(config, machine, listener))
    }

    async fn start_dyn(
        config: NodeConfig,
        machine: Box<dyn StateMachine>,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Node, NodeError> {
        config.validate().map_err(NodeError::Config)?;
        if let Some(listener) = &listener {
            // Before the data directory is touched, as `validate` is.
            check_listener(&config, listener).map_err(NodeError::Config)?;
        }
        let (submit_tx, submit_rx) = mpsc::channel(config.requests_in_flight_max.min(65_536));
        // Room for a second call before the first is taken (a second
        // stops at once: see `Driver::begin_stop`).
        let (stop_tx, stop_rx) = mpsc::channel(2);
        let metrics = Arc::new(Metrics::default());
        let (driver, status_rx, net) = Driver::open(
            config.clone(),
            machine,
            submit_rx,
            stop_rx,
            Arc::clone(&metrics),
            listener,
        )
        .await?;
        let status_tx = driver.status_sender();
        let stamps = driver.stamp_source();
        let local_reads = driver.local_reads();
        let recovered_chosen_end = status_rx.borrow().chosen_end;
        let driver_task = tokio::spawn(driver.run());
        // A panic of the driver (a bug, or the user's state machine
        // panicking in `apply`) must not leave a half-alive node whose
        // status still says it runs: report it as a fatal stop. Requests
        // fail at once already (the driver's channels close with it).
        let task = tokio::spawn(async move {
            match driver_task.await {
                Ok(result) => result,
                Err(join) => {
                    let what = match join.try_into_panic() {
                        Ok(payload) => panic_message(payload.as_ref()),
                        Err(_) => "the node task was cancelled".to_string(),
                    };
                    let reason = format!(
                        "the node task panicked ({what}): a bug, or the state machine panicked. \
                         Restart the node; it recovers from its log"
                    );
                    tracing::error!("node stopped on a fatal error: {reason}");
                    status_tx.send_modify(|s| {
                        s.stopped = Some(reason.clone());
                        s.fatal = true;
                    });
                    Err(NodeError::Stopped(reason))
                }
            }
        });
        Ok(Node {
            submit: submit_tx,
            stop: stop_tx,
            status: status_rx,
            recovered_chosen_end,
            metrics,
            net,
            config,
            stamps,
            local_reads,
            _task: task,
        })
    }

    /// Replicates `command`: returns the state machine's output once the
    /// command is chosen (durable on a majority) and applied here. Retries
    /// (after a leader change, a lost forward) take effect at most once.
    /// A caller that retries itself, through another node or from another
    /// process, needs a client session ([`Node::session`]) for that.
    ///
    /// A command longer than [`Node::command_bytes_max`] is refused at once
    /// with [`RequestError::TooLarge`]: no instance value could hold it.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, RequestError> {
        let max = self.config.command_bytes_max();
        if command.len() > max {
            return Err(RequestError::TooLarge {
                bytes: command.len(),
                max,
            });
        }
        self.submit(Kind::Command, command).await
    }

    /// The largest command [`Node::propose`] accepts, in bytes.
    pub fn command_bytes_max(&self) -> usize {
        self.config.command_bytes_max()
    }

    /// A linearizable read: `StateMachine::query` runs here at a point of the
    /// log after every command that finished before the read began.
    pub async fn read(&self, query: Bytes) -> Result<Bytes, RequestError> {
        self.submit(Kind::Read, query).await
    }

    /// A stale read: `StateMachine::query` runs on whatever this node has
    /// applied when the request reaches the event loop, with no round to
    /// any other node (it queues behind the requests before it; a query the
    /// state machine offers a `query_view` for runs off the loop, others on
    /// it, as linearizable reads do). It is
    /// **not** linearizable: a follower may be behind the leader by any
    /// amount (a partitioned one, for ever), and two stale reads on two
    /// nodes may see the state in orders no single history explains. Use
    /// it where an old answer does no harm (a cache warm-up, a dashboard,
    /// an estimate of the work a command will do); use [`Node::read`]
    /// everywhere else. The query's clock (`ApplyContext::time_ms`) is this
    /// node's wall clock. While the state machine is away (restored from a
    /// peer's snapshot off the loop) it waits, as other requests do, until
    /// the load has lasted [`NodeConfig::loading_grace`], and is refused
    /// ([`RequestError::Loading`]) from then on; while the snapshot is still
    /// arriving it is answered from the old state. Ahead of the applied
    /// point (an on-disk state machine replaying after a restart), it
    /// waits, up to `NodeConfig::request_timeout`, for a state that is the
    /// state at a point.
    pub async fn read_stale(&self, query: Bytes) -> Result<Bytes, RequestError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || RequestError::Stopped("node task ended".into());
        self.submit
            .send(Submit::StaleRead {
                payload: query,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn submit(&self, kind: Kind, payload: Bytes) -> Result<Bytes, RequestError> {
        crate::session::submit(&self.submit, kind, None, payload).await
    }

    /// Opens a client session: registers it in the log (so every replica
    /// knows it) and returns its handle, whose proposals take effect exactly
    /// once even when retried through another node or by another process
    /// (see [`Session`] for the guarantees). The session expires once unused
    /// for [`NodeConfig::session_ttl`] of log time.
    ///
    /// An error other than [`RequestError::Loading`] (nothing registered)
    /// leaves the outcome unknown as for [`Node::propose`]: a
    /// session may have been registered and is then unused until it
    /// expires (it counts toward [`crate::CLIENT_SESSIONS_MAX`]).
    ///
    /// Every node of the cluster must run a release with client sessions
    /// (older ones skip the session envelopes).
    pub async fn session(&self) -> Result<Session, RequestError> {
        let ttl_ms = u64::try_from(self.config.session_ttl.as_millis()).unwrap_or(u64::MAX);
        let nonce = crate::driver::random_u64();
        let payload = crate::engine::register_payload(nonce, ttl_ms);
        let output = crate::session::submit(&self.submit, Kind::Register, None, payload).await?;
        let id = SessionId::from_bytes(&output).ok_or_else(|| {
            RequestError::SessionLost("the session registration answered no session id".into())
        })?;
        Ok(Session::new(
            id,
            1,
            self.submit.clone(),
            self.command_bytes_max(),
        ))
    }

    /// A handle on an existing client session `id` (opened by
    /// [`Node::session`] on any node, in any process) whose next proposal
    /// uses sequence number `next_seq`: to retry a proposal whose outcome
    /// is unknown, pass its sequence number and propose the same command.
    /// Nothing is checked here: a session that expired or never existed
    /// fails its first proposal ([`RequestError::SessionExpired`],
    /// [`RequestError::SessionUnknown`]).
    pub fn resume_session(&self, id: SessionId, next_seq: u64) -> Session {
        Session::new(id, next_seq, self.submit.clone(), self.command_bytes_max())
    }

    /// The node's latest status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (for waiting on a leader).
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Waits until the node is ready to serve: it has applied everything
    /// its data directory said was chosen (the replay after a restart; a
    /// rebuilding node, until it caught up that far from its peers) and it
    /// knows a leader, and it is not loading a peer's snapshot (receiving
    /// one, or restoring its state machine from one: `NodeStatus::loading`).
    /// Returns the status then, or the reason the node stopped first.
    /// `Node::start` returns before the replay ends; requests made before
    /// `ready` wait in the node, they are not refused (except with
    /// [`RequestError::Loading`] once a load has lasted
    /// [`NodeConfig::loading_grace`]).
    ///
    /// ```no_run
    /// # async fn demo(cfg: synod::NodeConfig, machine: impl synod::StateMachine) -> Result<(), Box<dyn std::error::Error>> {
    /// let node = synod::Node::start(cfg, machine).await?;
    /// let status = node.ready().await?;
    /// println!("node {} ready, leader {:?}", status.id.0, status.leader);
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<NodeStatus, NodeError> {
        let replayed = self.recovered_chosen_end;
        let mut status = self.status.clone();
        let seen = status
            .wait_for(|s| {
                s.stopped.is_some()
                    || (s.leader.is_some()
                        && s.applied_end >= replayed
                        && !s.restoring
                        && !s.loading)
            })
            .await
            .map(|s| s.clone());
        match seen {
            Ok(s) if s.stopped.is_none() => Ok(s),
            Ok(s) => Err(NodeError::Stopped(s.stopped.unwrap_or_default())),
            Err(_) => Err(NodeError::Stopped(
                "the node task ended unexpectedly".into(),
            )),
        }
    }

    /// Whether this node leads now, as far as it knows (another node may
    /// have been elected since without its knowledge: use
    /// [`Node::master_lease`] before actions that must never run on two
    /// nodes at once, and reads and proposals, which are linearizable, for
    /// decisions kept in the state machine).
    pub fn is_leader(&self) -> bool {
        let status = self.status.borrow();
        status.stopped.is_none()
            && status.role == RoleKind::Leader
            && status.leader == Some(status.id)
    }

    /// This node's master lease, if it is the master now: no other node is
    /// master before [`MasterLease::valid_until`], under the clock-drift
    /// bound of [`NodeConfig::read_lease`] (see [`crate::master`] for the
    /// guarantee, its assumption and how to use it). Ask before each
    /// action and act only while [`MasterLease::remaining`] covers it.
    ///
    /// `None` when this node does not lead, has not confirmed its
    /// leadership with a majority in the last `D` ms, is handing leadership
    /// over, has stopped, or runs without a read lease
    /// ([`NodeConfig::read_lease`] `None`, the default).
    ///
    /// ```no_run
    /// # async fn demo(node: synod::Node) {
    /// use std::time::Duration;
    /// if let Some(lease) = node.master_lease().await {
    ///     if lease.covers(Duration::from_millis(50)) {
    ///         // Only this node runs this, until `lease.valid_until`.
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn master_lease(&self) -> Option<MasterLease> {
        let (reply, answer) = oneshot::channel();
        self.submit
            .send(Submit::Master(MasterSubmit::Lease(reply)))
            .await
            .ok()?;
        answer.await.ok().flatten()
    }

    /// Steps down if this node leads, and does not campaign for
    /// [`crate::DROP_HOLD_ELECTION_TIMEOUTS`] × `election_ticks` ticks (2 s
    /// with the default timing), so that another voter is elected meanwhile
    /// (see [`crate::master`]). Requests waiting for an instance here fail
    /// and are retried by their callers. A master lease given out before
    /// stays valid until it ends. Answers whether this node was leading
    /// (false also once the node stopped).
    pub async fn drop_leadership(&self) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .submit
            .send(Submit::Master(MasterSubmit::Drop(reply)))
            .await
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// The time, in ms since the Unix epoch, that a command proposed now
    /// through this node would be stamped with: the node's wall clock
    /// capped by its stamp bound (see [`crate::StampClock`]). It can be
    /// behind the system clock (a clock stepped ahead since the start), so
    /// decide whether something time-dependent is due (an expiry sweep) by
    /// this, never by the system clock: the command applies at its stamp.
    pub fn stamp_ms(&self) -> u64 {
        self.stamps.now_ms()
    }

    /// The handle that serves lease reads on the caller's task, without the
    /// event loop, from a state machine the caller shares with this node
    /// (see [`crate::local_reads`] for the contract and the argument): it
    /// answers only while this node leads under a read lease
    /// ([`NodeConfig::read_lease`]) and has applied every chosen command;
    /// otherwise use [`Node::read`].
    pub fn local_reads(&self) -> crate::LocalReads {
        self.local_reads.clone()
    }

    /// Leadership changes of this node, as they happen: see [`Leadership`].
    pub fn leadership(&self) -> Leadership {
        Leadership {
            leading: self.is_leader(),
            status: self.status.clone(),
        }
    }

    /// Which peers have a live connection.
    pub fn peers_connected(&self) -> BTreeMap<NodeId, bool> {
        self.net.stats().connected
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Waits until the node stops, on its own (a fatal error: `Err`) or
    /// after `shutdown` (`Ok`).
    pub async fn wait(&self) -> Result<(), NodeError> {
        let mut status = self.status.clone();
        let stopped = status
            .wait_for(|s| s.stopped.is_some())
            .await
            .map(|s| (s.fatal, s.stopped.clone().unwrap_or_default()));
        match stopped {
            Ok((false, _)) => Ok(()),
            Ok((true, reason)) => Err(NodeError::Stopped(reason)),
            // The task is gone without a word: it panicked.
            Err(_) => Err(NodeError::Stopped(
                "the node task ended unexpectedly".into(),
            )),
        }
    }

    /// Adds node `id` as a learner reached at `addr`. Unless `learner`, the
    /// leader promotes it to voter by itself once it has caught up (within
    /// `promote_lag_max` instances). Answers once the change is chosen and
    /// applied here. Refused when the id exists or was ever removed, or
    /// while another change is in progress.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: MemberAddr,
        learner: bool,
    ) -> Result<(), MemberError> {
        self.member_op(MemberOp::Change {
            change: MembershipChange::Add {
                id,
                addr: addr.encode(),
                promote: !learner,
            },
            force: false,
        })
        .await
    }

    /// Removes node `id` for good (its id is never admitted again). A
    /// voter's removal is refused when the voters left that the leader hears
    /// would be fewer than a quorum, unless `force`. Removing the leader
    /// hands leadership to another voter first.
    pub async fn remove_member(&self, id: NodeId, force: bool) -> Result<(), MemberError> {
        self.member_op(MemberOp::Change {
            change: MembershipChange::Remove { id },
            force,
        })
        .await
    }

    /// Makes learner `id` a voter; refused while it is far behind, unless
    /// `force`.
    pub async fn promote(&self, id: NodeId, force: bool) -> Result<(), MemberError> {
        self.member_op(MemberOp::Change {
            change: MembershipChange::Promote { id },
            force,
        })
        .await
    }

    /// Hands leadership to voter `to`: the leader waits until `to` has the
    /// whole log, then tells it to campaign at once. Answers once `to` leads
    /// (as this node sees it). A master lease this node lent
    /// ([`Node::master_lease`]) is waited out first (at most `D`, about
    /// 390 ms with the default timing), and none is lent meanwhile.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), MemberError> {
        self.member_op(MemberOp::Transfer { to }).await
    }

    /// The membership as this node sees it (lags are complete at the leader).
    pub async fn members(&self) -> Result<MembersView, MemberError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || MemberError::Stopped("node task ended".into());
        self.submit
            .send(Submit::Member(MemberSubmit::View { reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// What a node joining the cluster needs to start
    /// ([`crate::write_join_schedule`], [`NodeConfig::cluster_id`]): this
    /// node's applied point and the memberships from there on. Ask after
    /// [`Node::add_member`] answered, so the schedule includes the new member.
    pub async fn join_info(&self) -> Result<JoinInfo, MemberError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || MemberError::Stopped("node task ended".into());
        self.submit
            .send(Submit::Member(MemberSubmit::JoinInfo { reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    async fn member_op(&self, op: MemberOp) -> Result<(), MemberError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || MemberError::Stopped("node task ended".into());
        self.submit
            .send(Submit::Member(MemberSubmit::Op { op, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Takes a snapshot of everything this node has applied, now, whatever
    /// the snapshot policy says, and answers once it is durable: the
    /// snapshot file written and synced and the log checkpointed to it (the
    /// log below it may then be compacted). Answers the applied point the
    /// snapshot covers (at least the node's applied point when asked). A
    /// checkpoint already running finishes first; when the latest one
    /// already covers everything applied, answers at once. Snapshots are
    /// node-local: other replicas snapshot by their own policy.
    ///
    /// A failed snapshot write is fatal to the node (see
    /// [`NodeError::Storage`]); this then answers `Err`.
    pub async fn snapshot_now(&self) -> Result<InstanceId, NodeError> {
        let (reply, answer) = oneshot::channel();
        let stopped =
            || NodeError::Stopped("the node stopped before the snapshot was durable".into());
        self.submit
            .send(Submit::Snapshot(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// Stops the node: a leader first hands leadership to the most
    /// up-to-date voter (so clients wait one round trip, not an election
    /// timeout), then it waits for the log write in progress, fails waiting
    /// requests (outcome unknown), closes the peer connections.
    pub async fn shutdown(&self) {
        // Not through `submit`: a node holding its bound of requests (no
        // quorum) takes nothing from it until some time out.
        // Full: two calls wait already, which is all a stop needs.
        let _ = self.stop.try_send(());
        let _ = self.wait().await;
    }
}

/// The text of a panic payload (a `&str` or `String` for `panic!` with a
/// message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_string()
    }
}
