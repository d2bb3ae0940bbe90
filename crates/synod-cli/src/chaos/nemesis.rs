//! The nemesis: one fault at a time, at random intervals, each healed before
//! the next (so a majority is always whole once a fault ends).
//!
//! When a fault hits the leader (kill, pause, isolation), a probe writes to
//! the other nodes until one write succeeds: that delay is the failover time.

use super::net::Network;
use super::procs::{call_until, find_leader, Procs};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synod_resp::Reply;

/// The longest a membership fault (remove, stop, join, catch up, promotion)
/// may take before the nemesis moves on.
const REPLACE_TIME_MAX: Duration = Duration::from_secs(20);

/// A kind of fault, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    /// A partition that always cuts one node off from all the others (the
    /// leader 60% of the time): the kind of `partition` a negative control
    /// of reads needs every time. Not part of `all` (`partition` draws it).
    Isolate,
    Loss,
    Delay,
    /// Replace a node by a fresh one under a new id (`membership.rs`).
    Membership,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::Loss,
        Kind::Delay,
        Kind::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Isolate => "isolate",
            Kind::Loss => "loss",
            Kind::Delay => "delay",
            Kind::Membership => "membership",
        }
    }

    pub fn parse_list(text: &str) -> Result<Vec<Kind>, String> {
        let mut kinds = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "all" {
                kinds.extend(Kind::ALL);
                continue;
            }
            let kind = Kind::ALL
                .into_iter()
                .chain([Kind::Isolate])
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown nemesis '{name}' (kill, pause, partition, isolate, loss, delay, membership, all)"
                    )
                })?;
            kinds.push(kind);
        }
        kinds.dedup();
        Ok(kinds)
    }

    fn needs_namespaces(self) -> bool {
        matches!(
            self,
            Kind::Partition | Kind::Isolate | Kind::Loss | Kind::Delay
        )
    }
}

/// Ends every fault: network healed, paused nodes resumed, killed nodes
/// restarted. Both halves are attempted; the first error is returned.
pub fn heal_all(net: &Network, procs: &mut Procs) -> Result<(), String> {
    let network = match net {
        Network::Namespaces(ns) => ns.heal(),
        Network::Loopback { .. } => Ok(()),
    };
    procs.heal(net).and(network)
}

/// Which kinds can run on this network; the rest are reported as skipped.
pub fn usable(kinds: &[Kind], net: &Network, nodes: u32) -> (Vec<Kind>, Vec<Kind>) {
    kinds.iter().partition(|k| match k {
        Kind::Delay => net.can_delay(),
        // A partition needs two sides and a majority to keep serving.
        Kind::Partition | Kind::Isolate => net.can_partition() && nodes >= 3,
        // A replacement goes through another serving node.
        Kind::Membership => nodes >= 2,
        k if k.needs_namespaces() => net.can_partition(),
        _ => true,
    })
}

/// One fault, for the report.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: Kind,
    pub what: String,
    /// µs since the run began.
    pub start: u64,
    pub end: u64,
    /// Set when the fault removed the leader from the majority.
    pub leader_hit: bool,
    /// Time from the fault to the first write acknowledged by the rest, if
    /// one was before the fault ended.
    pub failover: Option<Duration>,
    /// For a membership fault: the replacement made.
    pub replace: Option<super::membership::Replace>,
}

/// Everything the nemesis thread needs.
pub struct Nemesis<'a> {
    pub net: &'a Network,
    pub procs: &'a Mutex<Procs>,
    pub kinds: Vec<Kind>,
    pub rng: ChaCha8Rng,
    pub start: Instant,
}

impl Nemesis<'_> {
    pub(super) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Sleeps, returning false if the run was aborted meanwhile.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if crate::signals::requested() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        true
    }

    pub(super) fn procs(&self) -> std::sync::MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Injects faults until `until` (measured from the run's start).
    pub fn run(mut self, until: Duration) -> Vec<Fault> {
        let mut faults = Vec::new();
        if self.kinds.is_empty() {
            self.sleep(until.saturating_sub(self.start.elapsed()));
            return faults;
        }
        let n = self.procs().len();
        loop {
            let quiet = Duration::from_millis(self.rng.gen_range(1000..3000));
            if !self.sleep(quiet) || self.start.elapsed() + Duration::from_secs(2) >= until {
                break;
            }
            self.procs().reap();
            let leader = find_leader(self.net, &self.procs());
            let kind = *self.kinds.choose(&mut self.rng).unwrap_or(&Kind::Kill);
            let hold = Duration::from_millis(self.rng.gen_range(2000..6000))
                .min(until.saturating_sub(self.start.elapsed()))
                .max(Duration::from_millis(1000));
            let random = self.rng.gen_range(1..=n);
            let target = match leader {
                Some(l) if self.rng.gen_bool(0.6) => l,
                _ => random,
            };
            if kind == Kind::Membership {
                // A replacement is not held and healed: it ends when the new
                // node votes, or at its own bound.
                let left = until.saturating_sub(self.start.elapsed());
                let bound = REPLACE_TIME_MAX.min(left).max(Duration::from_secs(1));
                match self.replace(target, leader, bound) {
                    Ok(fault) => faults.push(fault),
                    Err(why) => eprintln!("chaos: membership: skipped: {why}"),
                }
                if let Err(err) = self.heal() {
                    eprintln!("chaos: cannot heal after membership: {err}");
                }
                continue;
            }
            let start = self.now_us();
            let (what, leader_hit) = match self.inject(kind, target, leader, n) {
                Ok(x) => x,
                Err(err) => {
                    eprintln!("chaos: cannot inject {}: {err}", kind.name());
                    continue;
                }
            };
            let probe = leader_hit.then(|| self.probe(target, n));
            let completed = self.sleep(hold);
            let failover = probe.and_then(|(stop, handle)| {
                stop.store(true, Ordering::Relaxed);
                handle.join().ok().flatten()
            });
            if let Err(err) = self.heal() {
                eprintln!("chaos: cannot heal {}: {err}", kind.name());
            }
            faults.push(Fault {
                kind,
                what,
                start,
                end: self.now_us(),
                leader_hit,
                failover,
                replace: None,
            });
            if !completed {
                break;
            }
        }
        faults
    }

    /// Applies one fault; returns its description and whether it took the
    /// leader out of the majority.
    fn inject(
        &mut self,
        kind: Kind,
        target: u32,
        leader: Option<u32>,
        n: u32,
    ) -> Result<(String, bool), String> {
        let is_leader = leader == Some(target);
        let role = if is_leader { "leader" } else { "follower" };
        let node = self.procs().label(target);
        match kind {
            Kind::Membership => Err("membership faults are made by `replace`".into()),
            Kind::Kill => {
                self.procs().kill9(target);
                Ok((format!("kill -9 {node} ({role})"), is_leader))
            }
            Kind::Pause => {
                self.procs().pause(target);
                Ok((format!("SIGSTOP {node} ({role})"), is_leader))
            }
            Kind::Partition | Kind::Isolate => {
                let Network::Namespaces(ns) = self.net else {
                    return Err("partitions need network namespaces".into());
                };
                let mut others: Vec<u32> = (1..=n).filter(|i| *i != target).collect();
                others.shuffle(&mut self.rng);
                let shape = match kind {
                    Kind::Isolate => 0,
                    _ => self.rng.gen_range(0..4),
                };
                match shape {
                    // Isolate one node (the leader 60% of the time).
                    0 => {
                        for o in &others {
                            ns.cut(target, *o)?;
                            ns.cut(*o, target)?;
                        }
                        Ok((format!("isolate {node} ({role})"), is_leader))
                    }
                    // Majority/minority: the target plus F-1 others.
                    1 => {
                        let f = (n - 1) / 2;
                        let mut minority = vec![target];
                        minority.extend(others.iter().take(f as usize - 1));
                        let majority: Vec<u32> =
                            (1..=n).filter(|i| !minority.contains(i)).collect();
                        for a in &minority {
                            for b in &majority {
                                ns.cut(*a, *b)?;
                                ns.cut(*b, *a)?;
                            }
                        }
                        let hit = leader.is_some_and(|l| minority.contains(&l));
                        Ok((format!("split slots {minority:?} | {majority:?}"), hit))
                    }
                    // A bridge: the target sees both halves, which do not
                    // see each other.
                    2 => {
                        let half = others.len() / 2;
                        let (a, b) = others.split_at(half.max(1));
                        for x in a {
                            for y in b {
                                ns.cut(*x, *y)?;
                                ns.cut(*y, *x)?;
                            }
                        }
                        Ok((
                            format!("bridge {node} between slots {a:?} and {b:?}"),
                            false,
                        ))
                    }
                    // One way at the IP level: nobody receives the
                    // target's packets, or the target receives nobody's.
                    // Over TCP this stalls both directions of the target's
                    // connections (ACKs are lost too), but the target's
                    // listen socket still takes SYNs one way.
                    _ => {
                        let deaf = self.rng.gen_bool(0.5);
                        for o in &others {
                            if deaf {
                                ns.cut(*o, target)?;
                            } else {
                                ns.cut(target, *o)?;
                            }
                        }
                        let what = if deaf {
                            format!("{node} ({role}) receives from nobody")
                        } else {
                            format!("nobody receives from {node} ({role})")
                        };
                        Ok((what, is_leader))
                    }
                }
            }
            Kind::Loss => {
                let Network::Namespaces(ns) = self.net else {
                    return Err("packet loss needs network namespaces".into());
                };
                let percent = self.rng.gen_range(5..40);
                ns.lose(percent)?;
                Ok((format!("{percent}% packet loss between nodes"), false))
            }
            Kind::Delay => {
                let Network::Namespaces(ns) = self.net else {
                    return Err("delay needs network namespaces".into());
                };
                let ms = self.rng.gen_range(5..100);
                let jitter = ms / 2;
                ns.delay(ms, jitter)?;
                Ok((format!("delay {ms}±{jitter} ms"), false))
            }
        }
    }

    fn heal(&self) -> Result<(), String> {
        heal_all(self.net, &mut self.procs())
    }

    /// Writes to every node but `down`, round robin, until one write is
    /// acknowledged; the thread returns the time that took.
    pub(super) fn probe(
        &self,
        down: u32,
        n: u32,
    ) -> (Arc<AtomicBool>, std::thread::JoinHandle<Option<Duration>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let addrs: Vec<_> = (1..=n)
            .filter(|i| *i != down)
            .map(|i| self.net.resp_addr(i))
            .collect();
        let began = Instant::now();
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut k = 0usize;
            while !stop2.load(Ordering::Relaxed) && !addrs.is_empty() {
                let addr = addrs[k % addrs.len()];
                k += 1;
                let reply = call_until(
                    addr,
                    &[b"SET", b"chaos-probe", k.to_string().as_bytes()],
                    // Longer than any failover, so the time measured is the
                    // failover's, not this timeout's: the node retries a
                    // forwarded write itself when a new leader appears.
                    Duration::from_secs(10),
                    &|| stop2.load(Ordering::Relaxed),
                );
                if matches!(reply, Ok(Reply::Simple(ref s)) if s == "OK") {
                    return Some(began.elapsed());
                }
                if reply.is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            None
        });
        (stop, handle)
    }
}
