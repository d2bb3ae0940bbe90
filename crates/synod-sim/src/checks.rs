//! The checks run at the end of every seed (agreement, order, validity and
//! divergence are checked as the run goes, in `world.rs`).

use crate::world::World;
use synod_check::{check, CheckOptions, Outcome, Verdict};

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
    fn check_durability(&mut self) {
        let mut found = Vec::new();
        for node in &self.nodes {
            if node.replica.is_none() {
                continue;
            }
            for (client, seq) in &self.acknowledged {
                let effects = node.kv.effects(*client, *seq);
                if effects != 1 {
                    found.push(format!(
                        "durability: acknowledged command c{client}s{seq} took effect {effects} times at node {}",
                        node.id
                    ));
                }
            }
            for (client, seq) in node.kv.duplicated() {
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
            let Some(replica) = node.replica.as_ref() else {
                continue;
            };
            let status = replica.status();
            match &reference {
                None => reference = Some((node.id, status, node.kv.data().clone())),
                Some((id, first, data)) => {
                    if status.applied_end == first.applied_end && status.checksum != first.checksum
                    {
                        found.push(format!(
                            "convergence: checksums differ at {} between {} and {}",
                            status.applied_end, id, node.id
                        ));
                    } else if status.applied_end == first.applied_end && node.kv.data() != data {
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

    fn check_linearizability(&mut self) {
        match check(&self.history, &CheckOptions::default()) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { .. } => {
                let verdict = check(&self.history, &CheckOptions::default());
                self.violation(format!("linearizability: {verdict}"));
            }
            Verdict::Undetermined { reason } => {
                // Not a violation, but never silent.
                self.violation(format!("linearizability: checker undetermined: {reason}"));
            }
        }
    }

    /// After healing, clients made progress: every client completed an operation
    /// invoked after the heal, and none of those took too long.
    fn check_liveness(&mut self) {
        const LATENCY_US_MAX: u64 = 5_000_000;
        let mut found = Vec::new();
        for client in 1..=self.params.clients as u64 {
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
