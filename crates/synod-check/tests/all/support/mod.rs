//! Helpers shared by the tests and the `large_history` example: terse
//! constructors and a generator of histories from simulated clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use synod_check::{model, Op, Operation, Outcome};

pub fn key(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

pub fn get(k: &str) -> Op {
    Op::Get { key: key(k) }
}

pub fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: key(k),
        value: key(v),
    }
}

pub fn append(k: &str, v: &str) -> Op {
    Op::Append {
        key: key(k),
        value: key(v),
    }
}

pub fn incr(k: &str, by: i64) -> Op {
    Op::Incr { key: key(k), by }
}

pub fn value(v: &str) -> Outcome {
    Outcome::Value(Some(key(v)))
}

/// One operation of `client` over `[invoke, complete]`.
pub fn at(client: u64, op: Op, outcome: Outcome, invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        op,
        outcome,
        invoke,
        complete,
    }
}

/// SplitMix64: a tiny deterministic generator, so the tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The shape of a simulated workload.
pub struct Workload {
    pub seed: u64,
    pub clients: u64,
    pub ops_per_client: u64,
    pub keys: u64,
    /// Out of 1000: how often an operation's outcome is unknown to its client.
    pub unknown_per_mille: u64,
    /// Most time units between invocation and linearization point, and
    /// between the point and completion.
    pub latency_max: u64,
}

/// Closed-loop clients against a correct store: each operation takes effect
/// at a linearization point inside its interval, points are applied in order
/// to the reference model, and each client sees the model's answer. Some
/// outcomes are then hidden (unknown); half of those operations never take
/// effect at all, the other half may take effect after the client gave up.
/// The result is linearizable by construction.
pub fn simulate(workload: &Workload) -> Vec<Operation> {
    let mut rng = Rng::new(workload.seed);
    struct Planned {
        client: u64,
        op: Op,
        invoke: u64,
        point: u64,
        complete: u64,
        unknown: bool,
        happens: bool,
    }
    let mut planned = Vec::new();
    for client in 1..=workload.clients {
        let mut now = rng.below(10);
        for seq in 0..workload.ops_per_client {
            let k = format!("k{}", rng.below(workload.keys));
            let v = format!("{client}.{seq};");
            let op = match rng.below(20) {
                0..=7 => get(&k),
                8..=12 => put(&k, &v),
                13..=16 => append(&k, &v),
                17 => incr(&k, 1 + rng.below(5) as i64),
                18 => Op::Delete { key: key(&k) },
                _ => Op::PutGet {
                    key: key(&k),
                    value: key(&v),
                },
            };
            let invoke = now;
            let unknown = rng.below(1000) < workload.unknown_per_mille;
            let happens = !unknown || rng.below(2) == 0;
            let point = invoke + 1 + rng.below(workload.latency_max);
            let complete = point + rng.below(workload.latency_max + 1);
            // An unknown operation may take effect long after the client gave up.
            let point = if unknown {
                point + rng.below(4 * workload.latency_max)
            } else {
                point
            };
            planned.push(Planned {
                client,
                op,
                invoke,
                point,
                complete,
                unknown,
                happens,
            });
            now = complete + rng.below(workload.latency_max / 2 + 1);
        }
    }
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].point, i));
    let mut store = BTreeMap::new();
    let mut outcomes = vec![Outcome::Unknown; planned.len()];
    for i in order {
        if planned[i].happens {
            outcomes[i] = model::apply(&mut store, &planned[i].op);
        }
    }
    planned
        .into_iter()
        .zip(outcomes)
        .map(|(p, outcome)| Operation {
            client: p.client,
            op: p.op,
            outcome: if p.unknown { Outcome::Unknown } else { outcome },
            invoke: p.invoke,
            complete: p.complete,
        })
        .collect()
}

pub fn put_ttl(k: &str, v: &str) -> Op {
    Op::PutTtl {
        key: key(k),
        value: key(v),
    }
}
