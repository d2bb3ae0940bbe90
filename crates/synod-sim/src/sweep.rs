//! Expiry sweeps (Redis' active expiry as points of the log), proposed as
//! the server's leader proposes them (`synod_kv::server`'s
//! `expire_sweeps`, by the same rule, `synod_kv::expiry_sweep`): while a
//! node leads and synod-kv's store holds a key whose expiry is at or before
//! the time a sweep would apply at (the engine's stamp, or the log clock if
//! ahead), one sweep at a time, every 100 ms, backing off while sweeps
//! change nothing. The clocks only decide when to propose; what a sweep
//! removes depends on the log clock, on every replica alike, which the
//! checkers verify like any other apply (state digest, linearizability: a
//! key set with a TTL may vanish at any moment).

use crate::kv::SWEEP;
use crate::world::{Token, World};
use bytes::Bytes;
use synod::engine::Kind;
use synod_core::RoleKind;
use synod_kv::expiry_sweep::SweepPacer;

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
        let Some(engine) = self.nodes[node].engine.as_ref() else {
            return;
        };
        let leads = engine.replica.status().role == RoleKind::Leader;
        let Some(machine) = engine.machine() else {
            // Being restored (a follower's install): nothing to sweep here.
            return;
        };
        let before = machine.kv.next_expiry_ms();
        let due = SweepPacer::due(before, engine.stamp_ms(), engine.log_time_ms());
        let sim_node = &mut self.nodes[node];
        if !leads || !due {
            sim_node.sweep_pacer.idle();
            return;
        }
        sim_node.next_sweep_us = self.now_us + sim_node.sweep_pacer.interval_ms() * 1000;
        sim_node.sweep_in_flight = true;
        sim_node.sweep_expiry_before = before;
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

    /// A node's sweep was answered (applied there, or failed): pace the
    /// next by what it changed, as the server does.
    pub(crate) fn sweep_answered(&mut self, node: usize) {
        let after = self.nodes[node]
            .engine
            .as_ref()
            .and_then(|engine| engine.machine())
            .and_then(|machine| machine.kv.next_expiry_ms());
        let sim_node = &mut self.nodes[node];
        sim_node.sweep_in_flight = false;
        let before = sim_node.sweep_expiry_before;
        let now_us = self.now_us;
        sim_node.sweep_pacer.swept(before, after);
        // The interval counts from the answer, as the server's sleep does.
        sim_node.next_sweep_us = now_us + sim_node.sweep_pacer.interval_ms() * 1000;
    }
}
