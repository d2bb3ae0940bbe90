//! The checks run at the end of every seed (agreement, order, validity and
//! divergence are checked as the run goes, in `world.rs`).

use crate::kv::decode;
use crate::world::World;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use synod::engine::{Envelope, Kind};
use synod_check::{check, verify_witness_with_expiry, CheckOptions, Key, Outcome, Verdict};

impl World {
    /// Durability, exactly-once, convergence, linearizability and liveness.
    pub(crate) fn final_checks(&mut self) {
        self.check_durability();
        self.check_convergence();
        self.check_linearizability();
        self.check_liveness();
    }

    /// Every acknowledged command took effect exactly once on every replica, and
    /// no command ever took effect twice.
    /// Only the members of the newest membership are held to it: a removed
    /// node that keeps running stops learning when the members refuse it.
    fn check_durability(&mut self) {
        let mut found = Vec::new();
        for node in self.final_members().into_iter().map(|k| &self.nodes[k]) {
            let Some(kv) = node.kv() else {
                continue;
            };
            for (client, seq) in &self.acknowledged {
                let effects = kv.effects(*client, *seq);
                if effects != 1 {
                    found.push(format!(
                        "durability: acknowledged command c{client}s{seq} took effect {effects} times at node {}",
                        node.id
                    ));
                }
            }
            for (client, seq) in kv.duplicated() {
                found.push(format!(
                    "exactly-once: command c{client}s{seq} took effect twice at node {}",
                    node.id
                ));
            }
        }
        for text in found {
            self.violation(text);
        }
    }

    /// After settling, every replica has the same applied point, checksum and
    /// state.
    fn check_convergence(&mut self) {
        let mut found = Vec::new();
        let mut reference = None;
        for node in &self.nodes {
            let (Some(replica), Some(kv)) = (node.replica(), node.kv()) else {
                continue;
            };
            let status = replica.status();
            match &reference {
                None => reference = Some((node.id, status, kv.digest())),
                Some((id, first, data)) => {
                    if status.applied_end == first.applied_end && status.checksum != first.checksum
                    {
                        found.push(format!(
                            "convergence: checksums differ at {} between {} and {}",
                            status.applied_end, id, node.id
                        ));
                    } else if status.applied_end == first.applied_end && kv.digest() != *data {
                        found.push(format!(
                            "convergence: state differs between {} and {} at {}",
                            id, node.id, status.applied_end
                        ));
                    }
                }
            }
        }
        for text in found {
            self.violation(text);
        }
        self.stats.instances = self.chosen.len() as u64;
    }

    /// The history is linearizable, and the order in which the log applied
    /// the operations is a linearization of it.
    ///
    /// The log order is tried first, as a witness: verifying it is one pass
    /// (the search can take exponential time on histories with many
    /// concurrent or unknown-outcome operations). If it does not verify, the
    /// search decides; a history that is linearizable though the log order is
    /// not a linearization still means the replies do not come from the log
    /// the way they should, so that is reported too.
    fn check_linearizability(&mut self) {
        let (witness, expired) = self.log_order();
        let Err(witness_error) = verify_witness_with_expiry(&self.history, &witness, &expired)
        else {
            return;
        };
        let opts = CheckOptions {
            max_states: std::env::var("SIM_MAX_STATES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CheckOptions::MAX_STATES_DEFAULT),
        };
        match check(&self.history, &opts) {
            Verdict::Linearizable => self.violation(format!(
                "linearizability: the history is linearizable but the log order is not a \
                 linearization of it: {witness_error}"
            )),
            verdict @ Verdict::NotLinearizable { .. } => {
                self.violation(format!("linearizability: {verdict}"));
            }
            Verdict::Undetermined { reason } => {
                // Not proven a violation, but never silent.
                self.violation(format!(
                    "linearizability: checker undetermined: {reason} (the log order is not \
                     a linearization: {witness_error})"
                ));
            }
        }
    }

    /// The history's operations in the order the log gave them effect, with
    /// each GET served by read index placed where the serving node's applied
    /// prefix ended (reads at one point in the order they were served).
    ///
    /// Why that order must respect real time: every instance applied
    /// anywhere before a read reached the leader lies below its read index
    /// (see `synod-core/src/replica/reads.rs`), so a read that begins after
    /// another ended is served at the same prefix or a longer one.
    ///
    /// A command is placed where it took effect, as the replicas reported
    /// it (`World::effective`): not always its first copy in the log, since
    /// the runtime's session table skips a late copy its proposer gave up
    /// on, and the clients' exactly-once table answers later retries
    /// without an effect.
    ///
    /// With each position, the keys whose TTL had run out when that
    /// operation took effect (the state machine decided it from the log
    /// clock, or the serving node from its clock for a read by index).
    fn log_order(&self) -> (Vec<usize>, Vec<BTreeSet<Key>>) {
        let mut order = Vec::new();
        let mut expired = Vec::new();
        let key_of = |index: usize| -> BTreeSet<Key> {
            self.history[index].op.key().cloned().into_iter().collect()
        };
        let mut place = |index: usize, absent: bool| {
            order.push(index);
            expired.push(if absent {
                key_of(index)
            } else {
                BTreeSet::new()
            });
        };
        // A read answered through the log took effect at its own envelope
        // (its attempt's, in the instance it was answered at), between the
        // commands around it in that value; every other read at the end of
        // the prefix it was served at.
        let mut through_log: BTreeMap<(u64, u64, u32, u64), usize> = BTreeMap::new();
        for (&index, &(point, attempt, seq)) in &self.read_points {
            through_log.insert((self.history[index].client, seq, attempt, point), index);
        }
        let mut log_reads = BTreeSet::new();
        let read_envelopes = |instance: u64, value: &synod_core::Value| {
            value
                .commands()
                .iter()
                .filter_map(Envelope::decode)
                .filter(|e| e.kind == Kind::Read)
                .filter_map(move |e| {
                    decode(&e.payload).map(|c| (c.client, c.seq, c.attempt, instance))
                })
                .collect::<Vec<_>>()
        };
        for (instance, value) in &self.chosen {
            for key in read_envelopes(*instance, value) {
                if let Some(&index) = through_log.get(&key) {
                    log_reads.insert(index);
                }
            }
        }
        let mut effects_placed = BTreeSet::new();
        let mut reads: Vec<_> = self
            .index_reads
            .iter()
            .filter(|(_, _, index)| !log_reads.contains(index))
            .copied()
            .collect();
        reads.sort_unstable();
        let mut reads = reads.into_iter().peekable();
        let mut placed = BTreeSet::new();
        for (instance, value) in &self.chosen {
            while let Some((_, _, index)) = reads.next_if(|(prefix, _, _)| prefix <= instance) {
                place(index, self.read_found_absent.contains(&index));
            }
            for command in value.commands() {
                let Some(envelope) = Envelope::decode(command) else {
                    continue;
                };
                let Some(command) = decode(&envelope.payload) else {
                    continue;
                };
                if envelope.kind == Kind::Read {
                    let key = (command.client, command.seq, command.attempt, *instance);
                    if let Some(&index) = through_log.get(&key) {
                        if placed.insert(index) {
                            place(index, self.read_found_absent.contains(&index));
                        }
                    }
                    continue;
                }
                let id = (command.client, command.seq);
                if self.effective.get(&id) != Some(&(command.attempt, *instance))
                    || !effects_placed.insert(id)
                {
                    continue;
                }
                if let Some(&index) = self.history_index.get(&id) {
                    let absent = self.found_absent.contains(&(command.client, command.seq));
                    place(index, absent);
                }
            }
        }
        for (_, _, index) in reads {
            place(index, self.read_found_absent.contains(&index));
        }
        (order, expired)
    }

    /// After healing, clients made progress: every client completed an operation
    /// invoked after the heal, and none of those took too long.
    fn check_liveness(&mut self) {
        const LATENCY_US_MAX: u64 = 5_000_000;
        let mut found = Vec::new();
        for client in 1..=self.clients.len() as u64 {
            let after_heal: Vec<_> = self
                .history
                .iter()
                .filter(|op| op.client == client && op.invoke >= self.heal_us)
                .collect();
            if !after_heal.iter().any(|op| op.outcome != Outcome::Unknown) {
                found.push(format!(
                    "liveness: client {client} completed no operation after the heal"
                ));
            }
            if let Some(slow) = after_heal
                .iter()
                .find(|op| op.complete - op.invoke > LATENCY_US_MAX)
            {
                found.push(format!(
                    "liveness: an operation of client {client} invoked after the heal took {:.1} s",
                    (slow.complete - slow.invoke) as f64 / 1e6
                ));
            }
        }
        for text in found {
            self.violation(text);
        }
    }
}
