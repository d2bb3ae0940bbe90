//! Queue clients: pushes to the list `q0` and blocking pops from it
//! (issue 16), through the code the server runs.
//!
//! A popper's `BLPOP q0` is driven by synod-kv's own sans-I/O
//! [`BlockingPop`] against the blocked-client registry of the node it talks
//! to (the registry that node's store wakes on apply): it registers before
//! its first try, each try is a command of its own (a new sequence number,
//! proposed with exactly-once like any other), and a nil try leaves it
//! waiting until a wake (polled after every batch the node applies) or its
//! timeout in simulated time. The history records the whole blocking pop as
//! one `Op::Pop` (see "Lists" in synod-check): the element, or `None` when
//! it timed out.
//!
//! Besides linearizability, every timeout is checked for a lost wake-up: a
//! waiter that times out while its node's list holds an element and no
//! waiter of that node has a try in flight was not woken by the push that
//! put the element there (see "no lost wake-up" in synod-kv's
//! `blocking.rs`). The `wake-lost` negative control drops every wake.

use crate::kv::KvCommand;
use crate::world::World;
use bytes::Bytes;
use rand::Rng;
use synod_check::{Op, Outcome};
use synod_kv::{BlockingPop, PopStep};
use synod_resp::Reply;

/// The list the queue clients share.
const QUEUE_KEY: &[u8] = b"q0";
/// A blocking pop's timeout, in simulated µs.
const POP_TIMEOUT_US: std::ops::RangeInclusive<u64> = 20_000..=400_000;

/// What a queue client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueRole {
    /// `RPUSH q0 id.seq;`
    Pusher,
    /// `BLPOP q0 timeout`
    Popper,
}

/// A popper's blocking pop: where it is registered, and its state there.
pub(crate) struct PopWait {
    /// The node whose registry holds it, and that node's incarnation.
    node: usize,
    epoch: u64,
    pop: BlockingPop,
    deadline_us: u64,
    /// No try in flight: waiting for a wake or the deadline.
    waiting: bool,
    /// Registered after its current try was first sent elsewhere (a retry
    /// moved nodes): that try may have been applied before the
    /// registration, so a nil from it proves nothing about wakes since;
    /// the pop starts over at this node before it waits.
    late: bool,
}

/// `BLPOP key 0` as the server parses it: a `KvCommand::Blocking` try.
fn blpop(key: &[u8]) -> synod_kv::KvCommand {
    let args = [
        Bytes::from_static(b"BLPOP"),
        Bytes::copy_from_slice(key),
        Bytes::from_static(b"0"),
    ];
    synod_kv::parse(&args).unwrap_or_else(|reply| panic!("BLPOP does not parse: {reply:?}"))
}

impl World {
    /// A queue client's next operation.
    pub(crate) fn start_queue_operation(&mut self, client: usize, role: QueueRole) {
        let c = &mut self.clients[client];
        c.seq += 1;
        let (id, seq) = (c.id, c.seq);
        let key = QUEUE_KEY.to_vec();
        let op = match role {
            QueueRole::Pusher => Op::Push {
                key,
                value: format!("{id}.{seq};").into_bytes(),
            },
            QueueRole::Popper => Op::Pop { key },
        };
        let command = KvCommand {
            client: id,
            seq,
            op,
            ttl_ms: 0,
            attempt: 0,
            watch_read: false,
            tokens: Vec::new(),
            blocking: None,
        };
        if role == QueueRole::Popper {
            // Registered with the node its first attempt goes to.
            self.clients[client].pop = None;
        }
        self.begin(client, command, false);
    }

    /// Before an attempt of a pop goes to `node`: register there unless
    /// already registered with this incarnation of it.
    pub(crate) fn register_pop(&mut self, client: usize, node: usize) {
        let epoch = self.nodes[node].epoch;
        let registered = self.clients[client]
            .pop
            .as_ref()
            .is_some_and(|p| p.node == node && p.epoch == epoch);
        if registered {
            return;
        }
        let Some(clients) = self.nodes[node].blocked_clients.clone() else {
            return;
        };
        // Dropping an older registration first hands its wakes on; a move
        // to another node keeps the pop's deadline.
        let deadline_us = match self.clients[client].pop.take() {
            Some(old) => old.deadline_us,
            None => self.now_us + self.queue_rng.gen_range(POP_TIMEOUT_US),
        };
        let c = &mut self.clients[client];
        let Some(in_flight) = c.current.as_mut() else {
            return;
        };
        let (pop, first) = BlockingPop::start(&clients, c.id, blpop(QUEUE_KEY));
        // A first attempt carries this registration's first try; a retry
        // of a try sent before keeps its command (exactly-once answers it).
        let late = in_flight.attempt > 0;
        if !late {
            in_flight.command.blocking = Some(first);
        }
        c.pop = Some(PopWait {
            node,
            epoch,
            pop,
            deadline_us,
            waiting: false,
            late,
        });
    }

    /// Whether the client's blocking pop waits (no try in flight).
    pub(crate) fn pop_waiting(&self, client: usize) -> bool {
        self.clients[client].pop.as_ref().is_some_and(|p| p.waiting)
    }

    /// A try of the client's pop, sent through `node`, answered nil.
    pub(crate) fn pop_answered_nil(&mut self, client: usize, node: usize) {
        let epoch = self.nodes[node].epoch;
        let now_us = self.now_us;
        let Some(wait) = self.clients[client]
            .pop
            .as_mut()
            .filter(|p| p.node == node && p.epoch == epoch)
        else {
            // Not registered where it was answered (cannot happen: each
            // attempt registers first); the nil stands.
            self.finish(client, Outcome::Value(None));
            return;
        };
        if wait.late {
            let Some(clients) = self.nodes[node].blocked_clients.clone() else {
                self.finish(client, Outcome::Value(None));
                return;
            };
            let id = self.clients[client].id;
            let Some(wait) = self.clients[client].pop.as_mut() else {
                return;
            };
            let (pop, first) = BlockingPop::start(&clients, id, blpop(QUEUE_KEY));
            wait.pop = pop;
            wait.late = false;
            self.pop_try(client, first);
            return;
        }
        match wait
            .pop
            .answered(Reply::NullArray, now_us >= wait.deadline_us)
        {
            PopStep::Reply(_) => self.finish_pop(client, Outcome::Value(None)),
            PopStep::Try(next) => self.pop_try(client, next),
            PopStep::Wait => {
                wait.waiting = true;
                let at = wait.deadline_us.max(now_us);
                let c = &mut self.clients[client];
                if let Some(in_flight) = c.current.as_mut() {
                    in_flight.node = None;
                }
                c.token += 1;
                let token = c.token;
                self.schedule(at, crate::world::Event::ClientWake { client, token });
            }
        }
    }

    /// Sends the next try of the client's pop (a command of its own) to the
    /// node it is registered with.
    fn pop_try(&mut self, client: usize, next: synod_kv::KvCommand) {
        let c = &mut self.clients[client];
        let Some(wait) = c.pop.as_mut() else {
            return;
        };
        wait.waiting = false;
        let node = wait.node;
        c.seq += 1;
        let seq = c.seq;
        let Some(in_flight) = c.current.as_mut() else {
            return;
        };
        in_flight.seq = seq;
        in_flight.command.seq = seq;
        in_flight.command.blocking = Some(next);
        in_flight.attempt = 0;
        in_flight.failed_attempts = 0;
        self.attempt_at(client, node);
    }

    /// After `node` applied a batch: every pop blocked there that was woken
    /// tries again (a lost wake would leave it to time out).
    pub(crate) fn poll_pops(&mut self, node: usize) {
        if self.faults.wake_lost {
            return;
        }
        let epoch = self.nodes[node].epoch;
        for client in 0..self.clients.len() {
            let Some(wait) = self.clients[client]
                .pop
                .as_mut()
                .filter(|p| p.waiting && p.node == node && p.epoch == epoch)
            else {
                continue;
            };
            match wait.pop.poll_wake() {
                None | Some(PopStep::Wait) => {}
                Some(PopStep::Try(next)) => {
                    self.stats.pop_tries_after_wake += 1;
                    self.pop_try(client, next);
                }
                Some(PopStep::Reply(_)) => self.finish_pop(client, Outcome::Value(None)),
            }
        }
    }

    /// The client's blocking pop reached its deadline while waiting.
    pub(crate) fn pop_deadline(&mut self, client: usize) {
        let Some((node, epoch)) = self.clients[client].pop.as_ref().map(|p| (p.node, p.epoch))
        else {
            return;
        };
        let live = self.nodes[node].epoch == epoch && self.nodes[node].engine.is_some();
        if live {
            // A wake that came before the deadline goes first, as the
            // server's wait sees it.
            self.poll_pops(node);
            if !self.pop_waiting(client) {
                return;
            }
            let len = self.nodes[node].kv().map_or(0, |kv| kv.list_len(QUEUE_KEY));
            let trying = self.clients.iter().any(|c| {
                c.pop
                    .as_ref()
                    .is_some_and(|p| p.node == node && p.epoch == epoch && !p.waiting)
            });
            if len > 0 && !trying {
                let (id, node_id) = (self.clients[client].id, self.nodes[node].id);
                self.violation(format!(
                    "blocking pop: client {id} timed out waiting at node {node_id} while \
                     {} held {len} element(s) there and no waiter of that node had \
                     a try in flight: a lost wake-up",
                    String::from_utf8_lossy(QUEUE_KEY)
                ));
            }
        }
        self.finish_pop(client, Outcome::Value(None));
    }

    /// Waiters at a crashed node lose their connection: their last try
    /// found the list empty, which stands as the outcome.
    pub(crate) fn pops_lost_node(&mut self, node: usize) {
        for client in 0..self.clients.len() {
            let lost = self.clients[client]
                .pop
                .as_ref()
                .is_some_and(|p| p.node == node && p.waiting);
            if lost {
                self.finish_pop(client, Outcome::Value(None));
            }
        }
    }

    pub(crate) fn finish_pop(&mut self, client: usize, outcome: Outcome) {
        match outcome {
            Outcome::Value(None) => self.stats.pops_timed_out += 1,
            _ => self.stats.pops_served += 1,
        }
        self.finish(client, outcome);
    }
}
