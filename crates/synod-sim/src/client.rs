//! Simulated clients: closed loop, one operation at a time, retrying on
//! timeouts with the same sequence number (so a retry is applied at most once),
//! and recording every operation for the linearizability checker.

use crate::kv::{encode, KvCommand, SimAnswer, LONG_TTL_MS};
use synod_kv::watch::WatchedKey;

/// Longest short TTL a `SET .. PX` sets (ms of log time).
const SHORT_TTL_MS_MAX: u32 = 400;
use crate::world::{Backlog, Event, Phase, Token, World};
use bytes::Bytes;
use rand::Rng;
use synod::engine::Kind;
use synod::RequestError;
use synod_check::{Op, Operation, Outcome};

/// Delay before retrying when a node refused a command or is down.
const RETRY_SOON_US: u64 = 20_000;

/// One client.
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) seq: u64,
    /// Invalidates wake-ups scheduled for an earlier attempt.
    pub(crate) token: u64,
    pub(crate) current: Option<InFlight>,
    /// A watch client (see `Params::watch_clients`): its operations are on
    /// keys of its own and drawn from a stream of their own.
    pub(crate) watch: bool,
    /// What its last WATCH read returned (key, value, synod-kv's token): its
    /// next operation is the transaction that WATCH guards.
    pub(crate) watched: Option<(Vec<u8>, Option<Vec<u8>>, WatchedKey)>,
    /// A queue client (see `Params::push_clients`): what it does.
    pub(crate) queue: Option<crate::queue::QueueRole>,
    /// A popper's blocking pop in progress: its registration at a node.
    pub(crate) pop: Option<crate::queue::PopWait>,
    /// A client of the library's sessions (see `sessions.rs`).
    pub(crate) library: Option<crate::sessions::LibrarySession>,
}

/// The operation a client waits for.
pub(crate) struct InFlight {
    pub(crate) op: Op,
    /// The command; each attempt sends it with its own attempt number.
    pub(crate) command: KvCommand,
    pub(crate) seq: u64,
    /// The current attempt (1 for the first).
    pub(crate) attempt: u32,
    pub(crate) invoke_us: u64,
    /// The node the current attempt went to, and its incarnation.
    pub(crate) node: Option<(usize, u64)>,
    /// Attempts that timed out or lost their node.
    pub(crate) failed_attempts: u32,
    /// A GET asked as a read (`Node::read`: read index, or through the log
    /// when its answer depends on the time), not as a command.
    pub(crate) by_index: bool,
    /// The node the latest attempt went to (a session client retries
    /// through another).
    pub(crate) last_node: Option<usize>,
    /// A session client abandons this attempt at its next wake-up, as a
    /// client process that died would (see `sessions.rs`).
    pub(crate) restart_pending: bool,
}

impl Client {
    pub(crate) fn busy(&self) -> bool {
        self.current.is_some()
    }
}

impl World {
    pub(crate) fn init_clients(&mut self) {
        let watch_end = self.params.clients + self.params.watch_clients;
        let push_end = watch_end + self.params.push_clients;
        let pop_end = push_end + self.params.pop_clients;
        for i in 0..pop_end + self.params.session_clients {
            let watch = (self.params.clients..watch_end).contains(&i);
            let queue = match i {
                _ if i < watch_end => None,
                _ if i < push_end => Some(crate::queue::QueueRole::Pusher),
                _ if i < pop_end => Some(crate::queue::QueueRole::Popper),
                _ => None,
            };
            let library = (i >= pop_end).then(crate::sessions::LibrarySession::default);
            self.clients.push(Client {
                id: i as u64 + 1,
                seq: 0,
                token: 0,
                current: None,
                watch,
                watched: None,
                queue,
                pop: None,
                library,
            });
            // Watch and queue clients draw from streams of their own, so
            // that the others run as they did before they existed.
            let at = if i >= pop_end {
                self.session_rng.gen_range(0..50_000)
            } else if watch {
                self.watch_rng.gen_range(0..50_000)
            } else if queue.is_some() {
                self.queue_rng.gen_range(0..50_000)
            } else {
                self.rng.gen_range(0..50_000)
            };
            self.schedule(
                at,
                Event::ClientWake {
                    client: i,
                    token: 0,
                },
            );
        }
    }

    /// A client's timer: start a new operation, or give up on / retry the
    /// current attempt.
    pub(crate) fn client_wake(&mut self, client: usize, token: u64) {
        if self.clients[client].token != token {
            return;
        }
        match self.clients[client].current.as_ref() {
            None => {
                if self.phase != Phase::Settle {
                    self.start_operation(client);
                }
            }
            Some(_) if self.pop_waiting(client) => self.pop_deadline(client),
            Some(in_flight) if in_flight.node.is_some() && in_flight.restart_pending => {
                self.session_restart(client);
            }
            Some(in_flight) => {
                if in_flight.node.is_some() {
                    // The attempt timed out.
                    self.attempt_failed(client);
                } else {
                    self.attempt(client);
                }
            }
        }
    }

    fn start_operation(&mut self, client: usize) {
        if self.session_client(client) {
            self.start_session_operation(client);
            return;
        }
        if let Some(role) = self.clients[client].queue {
            self.start_queue_operation(client, role);
            return;
        }
        if self.clients[client].watch {
            self.start_watch_operation(client);
            return;
        }
        let key = vec![b'k', b'0' + self.rng.gen_range(0..self.params.keys) as u8];
        let c = &mut self.clients[client];
        c.seq += 1;
        let (id, seq) = (c.id, c.seq);
        let value = format!("{id}.{seq};").into_bytes();
        let op = match self.rng.gen_range(0..10) {
            0..=3 => Op::Get { key },
            4..=6 => Op::Put { key, value },
            _ => Op::Append { key, value },
        };
        // From a stream of its own, so that seeds pinned before keep their
        // other choices.
        // A third of the PUTs set a TTL: half of those one longer than the
        // run, half one short enough to run out (`SET .. PX`, which the
        // checker models as a key that may vanish once).
        let (op, ttl_ms) = match op {
            Op::Put { key, value } if self.ttl_rng.gen_bool(0.33) => {
                if !self.params.short_ttls || self.ttl_rng.gen_bool(0.5) {
                    // Checked as a key that may expire too: a node whose
                    // clock is wrong when it starts moves the log clock (the
                    // documented assumption), so even a day may pass early;
                    // what must hold is that expiry is linearizable.
                    (Op::PutTtl { key, value }, LONG_TTL_MS)
                } else {
                    let ttl_ms = self.ttl_rng.gen_range(1..=SHORT_TTL_MS_MAX);
                    (Op::PutTtl { key, value }, ttl_ms)
                }
            }
            op => (op, 0),
        };
        let command = KvCommand {
            client: id,
            seq,
            op: op.clone(),
            ttl_ms,
            attempt: 0,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        };
        let by_index =
            matches!(op, Op::Get { .. }) && self.read_rng.gen_bool(self.params.read_index_share);
        self.begin(client, command, by_index);
    }

    /// A watch client's next operation, on the keys `w0` and `w1`: the
    /// transaction its last WATCH guards, or a WATCH read, a GET, a PUT or
    /// an APPEND. Every value written is `id.seq.n;`, so the values of a key
    /// are prefix-free, as the checker's check of WATCH by value needs.
    fn start_watch_operation(&mut self, client: usize) {
        let rng = &mut self.watch_rng;
        let c = &mut self.clients[client];
        c.seq += 1;
        let (id, seq) = (c.id, c.seq);
        let mut command = KvCommand {
            client: id,
            seq,
            op: watch_step(rng, id, seq, 0),
            ttl_ms: 0,
            attempt: 0,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        };
        let mut by_index = matches!(command.op, Op::Get { .. }) && rng.gen_bool(0.5);
        if let Some((key, value, token)) = c.watched.take() {
            let steps = rng.gen_range(1..=2);
            let ops = (0..steps).map(|n| watch_step(rng, id, seq, n)).collect();
            command.op = Op::WatchedTxn {
                watched: vec![(key, value)],
                ops,
            };
            command.tokens = vec![token];
            by_index = false;
        } else if rng.gen_bool(0.4) {
            // A WATCH: the read path, and the transaction next.
            let key = format!("w{}", rng.gen_range(0..2)).into_bytes();
            command.op = Op::Get { key };
            command.watch_read = true;
            by_index = true;
        }
        self.begin(client, command, by_index);
    }

    /// Starts `command` as the client's current operation.
    pub(crate) fn begin(&mut self, client: usize, command: KvCommand, by_index: bool) {
        let seq = command.seq;
        self.clients[client].current = Some(InFlight {
            op: command.op.clone(),
            command,
            seq,
            attempt: 0,
            invoke_us: self.now_us,
            node: None,
            failed_attempts: 0,
            by_index,
            last_node: None,
            restart_pending: false,
        });
        self.attempt(client);
    }

    /// Sends the current operation to a random node.
    fn attempt(&mut self, client: usize) {
        if self.session_client(client) {
            let avoid = self.clients[client]
                .current
                .as_ref()
                .and_then(|f| f.last_node);
            let node = self.session_target(avoid);
            self.attempt_at(client, node);
            return;
        }
        let node = match self.client_targets() {
            None => self.rng.gen_range(0..self.nodes.len()),
            Some(targets) => targets[self.rng.gen_range(0..targets.len())],
        };
        self.attempt_at(client, node);
    }

    /// Sends the current operation to `node`.
    pub(crate) fn attempt_at(&mut self, client: usize, node: usize) {
        let epoch = self.nodes[node].epoch;
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        let Some(in_flight) = self.clients[client].current.as_mut() else {
            return;
        };
        let stale_key = match &in_flight.op {
            Op::Get { key }
                if self.faults.stale_read
                    && !in_flight.command.watch_read
                    && self.nodes[node].replica().is_some() =>
            {
                Some(key.clone())
            }
            _ => None,
        };
        if let Some(key) = stale_key {
            // Negative control: answer from local state, without the log.
            let value = self.local_read(node, &key);
            self.finish(client, Outcome::Value(value));
            return;
        }
        let Some(in_flight) = self.clients[client].current.as_mut() else {
            return;
        };
        if self.nodes[node].replica().is_none() {
            // Connection refused: certainly not proposed; try elsewhere soon.
            in_flight.node = None;
            self.schedule(
                self.now_us + RETRY_SOON_US,
                Event::ClientWake { client, token },
            );
            return;
        }
        if matches!(in_flight.op, Op::Pop { .. }) {
            // A blocking pop registers at the node before its try is sent.
            self.register_pop(client, node);
        }
        let Some(in_flight) = self.clients[client].current.as_mut() else {
            return;
        };
        in_flight.node = Some((node, epoch));
        in_flight.last_node = Some(node);
        in_flight.attempt += 1;
        in_flight.command.attempt = in_flight.attempt;
        let seq = in_flight.seq;
        let attempt = in_flight.attempt;
        let at = self.now_us + self.params.attempt_timeout_us;
        if self.session_client(client) {
            if let Some(delay) = self.session_restart_delay() {
                // The client dies before its answer comes back: the wake
                // below is stale by then.
                if let Some(in_flight) = self.clients[client].current.as_mut() {
                    in_flight.restart_pending = true;
                }
                self.schedule(self.now_us + delay, Event::ClientWake { client, token });
            }
        }
        if self.nodes[node].paused {
            // The request waits in the socket until the node wakes.
            self.schedule(at, Event::ClientWake { client, token });
            self.nodes[node].backlog.push(Backlog::Submit {
                client,
                seq,
                attempt,
            });
        } else {
            self.schedule(at, Event::ClientWake { client, token });
            if self.submit(client, node, seq, attempt) {
                self.pump(node);
            }
        }
    }

    /// Hands a client's current operation to a node's engine (as the server
    /// hands a client's command to `Node::propose` or `Node::read`), if the
    /// client still waits for that attempt there (a request that waited in
    /// a paused node's socket may be one the client gave up on). False if
    /// it no longer waits.
    pub(crate) fn submit(&mut self, client: usize, node: usize, seq: u64, attempt: u32) -> bool {
        let epoch = self.nodes[node].epoch;
        let Some(in_flight) = self.clients[client].current.as_ref() else {
            return false;
        };
        if in_flight.seq != seq
            || in_flight.attempt != attempt
            || in_flight.node != Some((node, epoch))
        {
            return false;
        }
        let token = Token {
            client,
            seq,
            attempt: in_flight.attempt,
        };
        let kind = if in_flight.by_index {
            Kind::Read
        } else {
            Kind::Command
        };
        let command = encode(&in_flight.command);
        let session = self.session_of(client, in_flight);
        self.proposed.insert(command.clone());
        let library = self.session_client(client);
        if kind == Kind::Read && session.is_none() && !library {
            if let Some(output) = self.local_lease_read(node, &command) {
                self.client_answer(node, token, Ok(output));
                return true;
            }
        }
        let Some(engine) = self.nodes[node].engine.as_mut() else {
            return false;
        };
        match session {
            Some(session) => engine.request_in_session(session, command, token),
            // A session client without a session: nothing to send (its
            // wake-up registers one first).
            None if library => return false,
            None => engine.request(kind, command, token),
        }
        true
    }

    /// Serves the read `query` at `node` outside its engine, as a leader's
    /// RESP connection does (`synod::LocalReads::serve`): from the state
    /// machine, under the permit the engine would publish after its last
    /// pass (every event pumps the engine before the next), with the node's
    /// clocks read now. In about half the cases when the seed draws it;
    /// `None`: the read goes to the engine.
    fn local_lease_read(&mut self, node: usize, query: &[u8]) -> Option<Bytes> {
        if !self.params.local_lease_reads && !self.faults.local_permit_without_lease {
            return None;
        }
        let permit = self.nodes[node].engine.as_ref()?.local_read_permit()?;
        if !self.local_read_rng.gen_bool(0.5) {
            return None;
        }
        let mono_ms = self.mono_ms(node);
        let wall_ms = self.wall_ms(node);
        let engine = self.nodes[node].engine.as_ref()?;
        let (output, _) = permit.serve(engine.machine()?, query, mono_ms, wall_ms)?;
        self.stats.local_lease_reads += 1;
        Some(output)
    }

    /// Retry soon, perhaps elsewhere.
    fn retry_soon(&mut self, client: usize) {
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        if let Some(in_flight) = self.clients[client].current.as_mut() {
            in_flight.node = None;
        }
        self.schedule(
            self.now_us + RETRY_SOON_US,
            Event::ClientWake { client, token },
        );
    }

    /// A session client "restarts": it drops its attempt in flight without
    /// its answer and, after a moment, resumes from its persisted session id
    /// and sequence number through another node.
    fn session_restart(&mut self, client: usize) {
        self.stats.session_restarts += 1;
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        if let Some(in_flight) = self.clients[client].current.as_mut() {
            in_flight.node = None;
            in_flight.restart_pending = false;
        }
        self.schedule(
            self.now_us + RETRY_SOON_US,
            Event::ClientWake { client, token },
        );
    }

    /// The current attempt timed out or lost its node: retry, or give up (the
    /// outcome is then unknown: some attempt may still take effect).
    fn attempt_failed(&mut self, client: usize) {
        let attempts_max = self.params.attempts_max;
        let give_up_allowed = self.phase == Phase::Safety;
        let Some(in_flight) = self.clients[client].current.as_mut() else {
            return;
        };
        in_flight.failed_attempts += 1;
        in_flight.node = None;
        if give_up_allowed && in_flight.failed_attempts >= attempts_max {
            self.finish(client, Outcome::Unknown);
        } else {
            self.attempt(client);
        }
    }

    /// A node's engine answered a request: finish the operation if its
    /// client still waits for that attempt at that node.
    pub(crate) fn client_answer(
        &mut self,
        node: usize,
        token: Token,
        result: Result<Bytes, RequestError>,
    ) {
        if self.session_registered(token, &result) {
            return;
        }
        let epoch = self.nodes[node].epoch;
        let client = token.client;
        let waiting = self
            .clients
            .get(client)
            .and_then(|c| c.current.as_ref())
            .is_some_and(|f| {
                f.seq == token.seq && f.attempt == token.attempt && f.node == Some((node, epoch))
            });
        if !waiting {
            return;
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            // No answer: the command may or may not take effect (a timeout,
            // a session the table lost). Try again, or give up as unknown.
            Err(RequestError::Timeout(_) | RequestError::SessionLost(_)) => {
                self.attempt_failed(client);
                return;
            }
            // It took effect but its output is lost: the client's retry
            // elsewhere is answered by the exactly-once table (a library
            // session client has no other table: `session_error`).
            Err(RequestError::OutputNotKept) if !self.session_client(client) => {
                self.attempt_failed(client);
                return;
            }
            // Refused before it was proposed or read (the node was loading
            // a snapshot): certainly no effect; try elsewhere soon.
            Err(RequestError::Loading) => {
                let id = self.clients[client].id;
                // Checked both ways: here against what already took effect,
                // and at every later apply (`World::kv_events`).
                if self
                    .effective
                    .get(&(id, token.seq))
                    .is_some_and(|(attempt, _)| *attempt == token.attempt)
                {
                    self.violation(format!(
                        "node {} refused attempt {} of client {id}'s command {} as loading (not run), but it took effect",
                        self.nodes[node].id, token.attempt, token.seq
                    ));
                }
                self.refused_while_loading
                    .insert((id, token.seq, token.attempt));
                self.retry_soon(client);
                return;
            }
            Err(error) if self.session_error(client, &error) => return,
            Err(error) => {
                let id = self.nodes[node].id;
                self.violation(format!("node {id} answered a request with: {error}"));
                self.retry_soon(client);
                return;
            }
        };
        match SimAnswer::decode(&bytes) {
            Some(SimAnswer::Applied(outcome)) => {
                let id = self.clients[client].id;
                self.acknowledged.push((id, token.seq));
                let pop = self.clients[client]
                    .current
                    .as_ref()
                    .is_some_and(|f| matches!(f.op, Op::Pop { .. }));
                if pop && outcome == Outcome::Value(None) {
                    self.pop_answered_nil(client, node);
                } else if pop {
                    self.finish_pop(client, outcome);
                } else {
                    self.finish(client, outcome);
                }
            }
            Some(SimAnswer::Read { point, value }) => {
                self.finish_read(client, token, point, value);
            }
            Some(SimAnswer::Watched {
                point,
                value,
                token: watched,
            }) => {
                let key = watched.key.to_vec();
                self.finish_read(client, token, point, value.clone());
                self.clients[client].watched = Some((key, value, watched));
            }
            // Reported by the state machine already (a violation).
            Some(SimAnswer::Broken) => self.retry_soon(client),
            Some(SimAnswer::Stale) | None => {
                let id = self.nodes[node].id;
                self.violation(format!(
                    "node {id} answered client {} with {:?}",
                    self.clients[client].id,
                    SimAnswer::decode(&bytes)
                ));
                self.retry_soon(client);
            }
        }
    }

    /// A read answered at `point` finishes the client's operation (for the
    /// checks that place reads in the log's order).
    fn finish_read(&mut self, client: usize, token: Token, point: u64, value: Option<Vec<u8>>) {
        let absent = value.is_none();
        self.finish(client, Outcome::Value(value));
        let index = self.history.len() - 1;
        if absent {
            self.read_found_absent.insert(index);
        }
        self.index_reads.push((point, self.now_us, index));
        self.read_points
            .insert(index, (point, token.attempt, token.seq));
    }

    /// A node crashed: its clients lose their connection.
    pub(crate) fn clients_lost_node(&mut self, node: usize) {
        self.pops_lost_node(node);
        for client in 0..self.clients.len() {
            let lost = self.clients[client]
                .current
                .as_ref()
                .is_some_and(|f| matches!(f.node, Some((n, _)) if n == node));
            if lost {
                self.clients[client].token += 1;
                let token = self.clients[client].token;
                // The attempt fails at once; the wake-up retries it.
                if let Some(in_flight) = self.clients[client].current.as_mut() {
                    in_flight.failed_attempts += 1;
                    in_flight.node = None;
                }
                self.schedule(
                    self.now_us + RETRY_SOON_US,
                    Event::ClientWake { client, token },
                );
            }
        }
    }

    /// Reads a key from the node's state as synod-kv serves a read: at the
    /// log clock, or (the `local-clock-ttl` and `stale-read` negative
    /// controls) at the node's own clock.
    fn local_read(&mut self, node: usize, key: &[u8]) -> Option<Vec<u8>> {
        let kv = self.nodes[node].kv()?;
        let now_ms = if self.faults.local_clock_ttl || self.faults.stale_read {
            self.wall_ms(node)
        } else {
            kv.log_time_ms()
        };
        match kv.read(key, now_ms) {
            Ok(value) => value,
            Err(error) => {
                let id = self.nodes[node].id;
                self.violation(format!("synod-kv read at node {id}: {error}"));
                None
            }
        }
    }

    pub(crate) fn finish(&mut self, client: usize, outcome: Outcome) {
        // A blocking pop leaves its node's registry (handing a wake on).
        self.clients[client].pop = None;
        let Some(in_flight) = self.clients[client].current.take() else {
            return;
        };
        if outcome == Outcome::Unknown {
            self.stats.ops_unknown += 1;
        } else {
            self.stats.ops_ok += 1;
        }
        self.history_index
            .insert((self.clients[client].id, in_flight.seq), self.history.len());
        self.history.push(Operation {
            client: self.clients[client].id,
            op: in_flight.op,
            outcome,
            invoke: in_flight.invoke_us,
            complete: self.now_us,
        });
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        let mut think = self.rng.gen_range(0..=self.params.think_us_max);
        if self.clients[client].queue == Some(crate::queue::QueueRole::Pusher) {
            // Pushers slower than poppers, so that pops block and are woken.
            think += self.queue_rng.gen_range(0..200_000);
        }
        self.schedule(self.now_us + think, Event::ClientWake { client, token });
    }
}

/// One GET, PUT or APPEND of a watch client on `w0` or `w1`, writing
/// `id.seq.n;`.
fn watch_step(rng: &mut impl Rng, id: u64, seq: u64, n: usize) -> Op {
    let key = format!("w{}", rng.gen_range(0..2)).into_bytes();
    let value = format!("{id}.{seq}.{n};").into_bytes();
    match rng.gen_range(0..3) {
        0 => Op::Get { key },
        1 => Op::Put { key, value },
        _ => Op::Append { key, value },
    }
}
