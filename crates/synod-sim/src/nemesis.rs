//! The nemesis: crashes, power loss and network partitions at random times
//! during the safety phase.

use crate::world::{Event, Phase, World};
use rand::seq::SliceRandom;
use rand::Rng;
use synod_core::RoleKind;

impl World {
    pub(crate) fn nemesis_delay(&mut self) -> u64 {
        self.now_us
            + self.params.nemesis_us_min
            + self.rng.gen_range(0..=self.params.nemesis_us_jitter)
    }

    /// One nemesis action, then the next one is scheduled.
    pub(crate) fn nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let w = self.params.weights.clone();
        let choices = [
            (w.crash, 0),
            (w.power_loss, 1),
            (w.isolate, 2),
            (w.split, 3),
            (w.bridge, 4),
            (w.one_way, 5),
            (w.flaky, 7),
            (w.pause, 8),
            (w.disk_fault, 10),
            (w.clock_jump, 9),
            (w.wipe, 11),
            (w.forge, 12),
            (w.heal, 6),
        ];
        let total: u32 = choices.iter().map(|(weight, _)| weight).sum();
        let mut pick = self.rng.gen_range(0..total);
        let mut action = 6;
        for (weight, a) in choices {
            if pick < weight {
                action = a;
                break;
            }
            pick -= weight;
        }
        if self.now_us < self.cut_until_us && (2..=7).contains(&action) {
            // A leader cut off on apply stays cut off (`isolate_on_apply`):
            // the network's nemeses (isolate, split, bridge, one-way, heal,
            // flaky) wait until it heals.
            let next = self.nemesis_delay();
            self.schedule(next, Event::Nemesis);
            return;
        }
        let n = self.nodes.len();
        match action {
            0 => {
                let node = self.leader_or_random();
                self.crash(node);
                let downtime = self.rng.gen_range(10_000..3_000_000);
                self.schedule(self.now_us + downtime, Event::Restart { node });
                self.stats.nemesis.push("crash");
            }
            1 => {
                for node in 0..n {
                    self.crash(node);
                    let downtime = self.rng.gen_range(10_000..1_500_000);
                    self.schedule(self.now_us + downtime, Event::Restart { node });
                }
                self.stats.nemesis.push("power-loss");
            }
            2 => {
                let node = self.leader_or_random();
                let links = (0..n)
                    .filter(|other| *other != node)
                    .flat_map(|other| [(node, other), (other, node)])
                    .collect();
                self.partition(links);
                self.stats.nemesis.push("isolate");
            }
            3 => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                let cut = self.rng.gen_range(1..n.max(2));
                let (a, b) = order.split_at(cut.min(n));
                let links = cut_between(a, b);
                self.partition(links);
                self.stats.nemesis.push("split");
            }
            4 => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                // order[0] is the bridge; the rest split in two sides that each
                // see the bridge but not each other.
                let rest = &order[1..];
                let cut = rest.len() / 2;
                let links = cut_between(&rest[..cut], &rest[cut..]);
                self.partition(links);
                self.stats.nemesis.push("bridge");
            }
            5 => {
                let mut links = Vec::new();
                for from in 0..n {
                    for to in 0..n {
                        if from != to && self.rng.gen_bool(0.3) {
                            links.push((from, to));
                        }
                    }
                }
                self.partition(links);
                self.stats.nemesis.push("one-way");
            }
            7 => {
                let mut links = Vec::new();
                for from in 0..n {
                    for to in 0..n {
                        if from != to {
                            links.push(((from, to), self.rng.gen_range(0.0..0.7)));
                        }
                    }
                }
                self.partition(Vec::new());
                self.link_loss = links.into_iter().collect();
                self.stats.nemesis.push("flaky");
            }
            8 => {
                let node = self.leader_or_random();
                if self.nodes[node].replica().is_some() && !self.nodes[node].paused {
                    self.nodes[node].paused = true;
                    let epoch = self.nodes[node].epoch;
                    let duration = self.rng.gen_range(100_000..3_000_000);
                    self.schedule(self.now_us + duration, Event::Resume { node, epoch });
                    self.stats.nemesis.push("pause");
                }
            }
            9 => {
                let node = self.leader_or_random();
                let step_ms = self.rng.gen_range(1_000..2 * 24 * 3600 * 1000);
                let ahead = self.rng.gen_bool(0.5);
                let offset = &mut self.params.clock_offset_ms[node];
                *offset += if ahead { step_ms } else { -step_ms };
                self.stats.nemesis.push("clock-jump");
            }
            11 if n >= 3 && self.nodes.iter().all(|n| !n.rebuilding) => {
                let node = self.leader_or_random();
                // A spare that never ran or a node removed for good has no
                // process to come back rebuilding.
                if !self.nodes[node].absent && !self.nodes[node].retired {
                    self.wipe(node);
                    let downtime = self.disk_rng.gen_range(10_000..2_000_000);
                    self.schedule(self.now_us + downtime, Event::Restart { node });
                    self.stats.nemesis.push("wipe");
                }
            }
            12 => self.forge_huge_ballot(),
            10 if self.nodes.iter().any(|n| n.replica().is_some()) => {
                let mut node = self.leader_or_random();
                while self.nodes[node].replica().is_none() {
                    node = (node + 1) % n;
                }
                let disk = self.nodes[node].disk.clone();
                match self.disk_rng.gen_range(0..3) {
                    0 => {
                        disk.power_off_after(Some(self.disk_rng.gen_range(0..40)));
                        self.stats.nemesis.push("power-cut-mid-io");
                    }
                    1 => {
                        disk.fail_fsync_after(self.disk_rng.gen_range(0..4));
                        self.stats.nemesis.push("fsync-eio");
                    }
                    _ => {
                        let spare = self.disk_rng.gen_range(0..64 << 10);
                        disk.set_space_bytes_max(Some(disk.used_bytes() + spare));
                        self.stats.nemesis.push("disk-full");
                    }
                }
                self.nodes[node].disk_faults = true;
            }
            _ => {
                self.blocked.clear();
                self.link_loss.clear();
                self.network_token += 1;
            }
        }
        let next = self.nemesis_delay();
        self.schedule(next, Event::Nemesis);
    }

    /// Replaces the blocked links and schedules their healing.
    pub(crate) fn partition(&mut self, links: Vec<(usize, usize)>) {
        if self.now_us < self.cut_until_us {
            // A leader cut off on apply stays cut off (`isolate_on_apply`;
            // the membership nemesis' partition comes here).
            return;
        }
        let duration = self.rng.gen_range(100_000..4_000_000);
        self.block_for(links, duration);
    }

    /// Blocks exactly `links` (flaky links' loss cleared) until a heal
    /// `duration_us` from now; a later change of the network supersedes
    /// that heal (`network_token`).
    fn block_for(&mut self, links: Vec<(usize, usize)>, duration_us: u64) {
        self.blocked = links.into_iter().collect();
        self.link_loss.clear();
        self.network_token += 1;
        let token = self.network_token;
        self.schedule(self.now_us + duration_us, Event::HealNetwork { token });
    }

    /// The targeted nemesis `Faults::isolate_leader_on_apply`: a leader
    /// that just applied (and answered) new instances is cut off from every
    /// peer it has then (a spare slot added during the cut is not) before
    /// anything it sent since learning them chosen arrives (a
    /// message is checked against the cut when delivered), for 1.5 to 3 s,
    /// and again at the first apply of a leader half a second after that,
    /// through the safety phase.
    pub(crate) fn isolate_on_apply(&mut self, node: usize) {
        if !self.faults.isolate_leader_on_apply
            || self.phase != Phase::Safety
            || self.now_us < self.next_isolate_us
            || self.nodes[node].replica().map(|r| r.status().role) != Some(RoleKind::Leader)
        {
            return;
        }
        // Long enough for the others to elect a successor.
        let duration = self.rng.gen_range(1_500_000..3_000_000);
        self.next_isolate_us = self.now_us + duration + 500_000;
        self.cut_until_us = self.now_us + duration;
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&k| k != node).collect();
        self.block_for(cut_between(&[node], &others), duration);
        tracing::info!("leader {} is cut off as it applies", node + 1);
        self.stats.nemesis.push("isolate-leader-on-apply");
    }

    /// The leader two times in three (the most interesting victim), else anyone.
    fn leader_or_random(&mut self) -> usize {
        match self.leader() {
            Some(leader) if self.rng.gen_bool(0.66) => leader,
            _ => self.rng.gen_range(0..self.nodes.len()),
        }
    }
}

/// Both directions of every link between sides `a` and `b`.
fn cut_between(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    a.iter()
        .flat_map(|x| b.iter().flat_map(move |y| [(*x, *y), (*y, *x)]))
        .collect()
}
