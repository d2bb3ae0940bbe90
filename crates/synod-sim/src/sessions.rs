//! Clients that use the library's client sessions (`synod::Session`, issue
//! 17) instead of the simulator's own exactly-once table: every command goes
//! through the runtime's `Engine::request_in_session` with the session's
//! `(id, seq)`, a timed-out attempt is retried with the same `seq` through a
//! *different* node, and now and then the client "restarts": it drops the
//! attempt in flight without waiting for its answer (as a process that
//! died would) and resumes from its persisted `(id, seq)` through another
//! node. The state machine does not deduplicate these clients' commands
//! (`Kv::library_clients`), so each `(client, seq)` applied more than once
//! is seen by the exactly-once and durability checks; `--inject
//! session-reapply` switches the runtime's check off to show that they do.

use crate::client::InFlight;
use crate::kv::{KvCommand, LONG_TTL_MS};
use crate::world::{Event, Token, World};
use rand::Rng;
use synod::engine::ClientSeq;
use synod::{RequestError, SessionId};
use synod_check::{Op, Outcome};

/// The TTL sessions are registered with (log time): an hour, the library's
/// default. A clock jump of the nemesis (up to two days) moves the log
/// clock past it: then the session expires, and the client opens another.
const SESSION_TTL_MS: u64 = 3_600_000;

/// Delay before a registration is tried again.
const REGISTER_RETRY_US: u64 = 20_000;

/// A client's library session, as its process persists it.
#[derive(Debug, Default)]
pub(crate) struct LibrarySession {
    /// The id its registration was answered with (`None`: none yet, or the
    /// session expired).
    pub(crate) id: Option<SessionId>,
    /// A registration in flight: its number (the answer's token `attempt`).
    pub(crate) registering: Option<u32>,
    registrations: u32,
}

impl World {
    /// Whether `client` uses a library session.
    pub(crate) fn session_client(&self, client: usize) -> bool {
        self.clients[client].library.is_some()
    }

    /// A session client's next step: register a session if it has none,
    /// else start its next command.
    pub(crate) fn start_session_operation(&mut self, client: usize) {
        let has_id = self.clients[client]
            .library
            .as_ref()
            .is_some_and(|s| s.id.is_some());
        if !has_id {
            self.register_session(client);
            return;
        }
        let rng = &mut self.session_rng;
        let key = vec![b'k', b'0' + rng.gen_range(0..self.params.keys) as u8];
        let c = &mut self.clients[client];
        c.seq += 1;
        let (id, seq) = (c.id, c.seq);
        let value = format!("{id}.{seq};").into_bytes();
        let (op, ttl_ms) = match rng.gen_range(0..10) {
            0..=2 => (Op::Get { key }, 0),
            3..=5 => (Op::Put { key, value }, 0),
            // A TTL longer than the run, which a clock jump can still run
            // out: checked as a key that may expire (as the other clients').
            6 => (Op::PutTtl { key, value }, LONG_TTL_MS),
            _ => (Op::Append { key, value }, 0),
        };
        let command = KvCommand {
            client: id,
            seq,
            op,
            ttl_ms,
            attempt: 0,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        };
        self.begin(client, command, false);
    }

    /// Proposes a registration through a random running node (one that is
    /// neither down nor paused); tried again later if there is none or it
    /// goes unanswered.
    fn register_session(&mut self, client: usize) {
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        // After the heal, at the members the cluster ends with, as commands
        // (`client_targets`): a removed node that never learned it and
        // still runs cannot register anyone, and the liveness check expects
        // progress within its window (seed 140259 with 5 nodes: five of
        // nine nodes removed, cut off and running; three registrations in a
        // row went to them).
        let targets = self.client_targets();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&k| self.nodes[k].engine.is_some() && !self.nodes[k].paused)
            .filter(|k| targets.as_ref().is_none_or(|t| t.contains(k)))
            .collect();
        let Some(library) = self.clients[client].library.as_mut() else {
            return;
        };
        if up.is_empty() {
            library.registering = None;
            self.schedule(
                self.now_us + REGISTER_RETRY_US,
                Event::ClientWake { client, token },
            );
            return;
        }
        library.registrations += 1;
        let number = library.registrations;
        library.registering = Some(number);
        let node = up[self.session_rng.gen_range(0..up.len())];
        let nonce: u64 = self.session_rng.gen();
        // The registration's payload, as the runtime builds it (validity:
        // every applied payload was proposed by someone).
        let mut payload = nonce.to_le_bytes().to_vec();
        payload.extend_from_slice(&SESSION_TTL_MS.to_le_bytes());
        self.proposed.insert(bytes::Bytes::from(payload));
        self.stats.sessions_registered += 1;
        let reply = Token {
            client,
            seq: 0,
            attempt: number,
        };
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            engine.register_session(nonce, SESSION_TTL_MS, reply);
        }
        self.schedule(
            self.now_us + self.params.attempt_timeout_us,
            Event::ClientWake { client, token },
        );
        self.pump(node);
    }

    /// A registration's answer. True when `token` was one.
    pub(crate) fn session_registered(
        &mut self,
        token: Token,
        result: &Result<bytes::Bytes, RequestError>,
    ) -> bool {
        if token.seq != 0 || !self.session_client(token.client) {
            return false;
        }
        let client = token.client;
        let Some(library) = self.clients[client].library.as_mut() else {
            return true;
        };
        if library.registering != Some(token.attempt) {
            // An earlier registration, given up on: its session stays
            // unused until it expires.
            return true;
        }
        let Ok(output) = result else {
            // Outcome unknown: register again at the next wake-up.
            return true;
        };
        let Some(id) = SessionId::from_bytes(output) else {
            self.violation(format!(
                "a session registration was answered with {} bytes, not an id",
                output.len()
            ));
            return true;
        };
        library.id = Some(id);
        library.registering = None;
        self.clients[client].token += 1;
        let token = self.clients[client].token;
        self.schedule(self.now_us, Event::ClientWake { client, token });
        true
    }

    /// The session and sequence number a session client's attempt carries.
    pub(crate) fn session_of(&self, client: usize, in_flight: &InFlight) -> Option<ClientSeq> {
        let id = self.clients[client].library.as_ref()?.id?;
        Some(ClientSeq {
            session: id,
            seq: in_flight.seq,
        })
    }

    /// A session client's answer that is an error only sessions give.
    /// True when handled.
    pub(crate) fn session_error(&mut self, client: usize, error: &RequestError) -> bool {
        if !self.session_client(client) {
            return false;
        }
        match error {
            RequestError::SessionExpired(_) => {
                // Not applied now; an earlier attempt may have been, before
                // the session expired: the outcome is unknown. A new
                // session for the next command.
                self.stats.sessions_expired += 1;
                if let Some(library) = self.clients[client].library.as_mut() {
                    library.id = None;
                }
                self.finish(client, Outcome::Unknown);
                true
            }
            RequestError::OutputNotKept => {
                // It took effect, once, and its output is lost for good: a
                // node whose state machine keeps its state on its own disk
                // restarted past it (`StateMachine::durable_end`) and its
                // session table went to the others in a snapshot. The
                // session's table has nothing more to say: the outcome is
                // unknown (seed 88 retried it 1,700 times).
                self.finish(client, Outcome::Unknown);
                true
            }
            _ => false,
        }
    }

    /// Picks the node for a session client's next attempt: a random one of
    /// the targets other than `avoid` (the node its last attempt went to),
    /// when there is another.
    pub(crate) fn session_target(&mut self, avoid: Option<usize>) -> usize {
        let targets: Vec<usize> = match self.client_targets() {
            None => (0..self.nodes.len()).collect(),
            Some(targets) => targets,
        };
        let others: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|k| Some(*k) != avoid)
            .collect();
        let pool = if others.is_empty() { &targets } else { &others };
        pool[self.session_rng.gen_range(0..pool.len())]
    }

    /// When a session client's attempt just sent should be abandoned as by
    /// a client process that died (`Some(delay)`): in one attempt of four,
    /// a few ms to a few tens of ms after sending.
    pub(crate) fn session_restart_delay(&mut self) -> Option<u64> {
        self.session_rng
            .gen_bool(0.25)
            .then(|| self.session_rng.gen_range(0..40_000))
    }
}
