//! Expiry sweeps (Redis' active expiry as points of the log), proposed as
//! the server's leader proposes them (`synod_kv::server`'s
//! `expire_sweeps`): while a node leads and synod-kv's store holds a key
//! whose expiry passed by the node's own clock, one sweep at a time, at
//! most every 100 ms. The clock only decides when to propose; what a sweep
//! removes depends on the log clock, on every replica alike, which the
//! checkers verify like any other apply (state digest, linearizability: a
//! key set with a TTL may vanish at any moment).

use crate::kv::SWEEP;
use crate::world::{Token, World};
use bytes::Bytes;
use synod::engine::Kind;
use synod_core::RoleKind;

/// The server's `EXPIRE_SWEEP_INTERVAL`.
const SWEEP_EVERY_US: u64 = 100_000;

/// The client index of a sweep's answer: no client's.
pub(crate) const SWEEP_CLIENT: usize = usize::MAX;

impl World {
    /// On a node's tick: propose a sweep if one is due (see the module docs).
    pub(crate) fn maybe_sweep(&mut self, node: usize) {
        if self.faults.sweep_off
            || self.nodes[node].sweep_in_flight
            || self.now_us < self.nodes[node].next_sweep_us
        {
            return;
        }
        let wall_ms = self.wall_ms(node);
        let Some(engine) = self.nodes[node].engine.as_ref() else {
            return;
        };
        let leads = engine.replica.status().role == RoleKind::Leader;
        let due = engine
            .machine()
            .kv
            .next_expiry_ms()
            .is_some_and(|at_ms| at_ms <= wall_ms);
        if !leads || !due {
            return;
        }
        self.nodes[node].next_sweep_us = self.now_us + SWEEP_EVERY_US;
        self.nodes[node].sweep_in_flight = true;
        self.proposed.insert(Bytes::from_static(SWEEP));
        self.stats.sweeps += 1;
        let token = Token {
            client: SWEEP_CLIENT,
            seq: self.stats.sweeps,
            attempt: 1,
        };
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            engine.request(Kind::Command, Bytes::from_static(SWEEP), token);
        }
    }
}
