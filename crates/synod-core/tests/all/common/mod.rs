//! A small cluster of replicas on a perfect network, driven through the
//! public API, for the membership scenario tests.

#![allow(dead_code)]

use bytes::Bytes;
use std::collections::BTreeMap;
use synod_core::*;

/// Replicas on a perfect network (every message delivered unless a link is
/// cut), every record durable at once.
pub struct Cluster {
    pub r: BTreeMap<u32, Replica>,
    pub pool: Vec<Message>,
    pub cut: Vec<(u32, u32)>,
    /// Per node, the commands it applied, in order.
    pub applied: BTreeMap<u32, Vec<Bytes>>,
}

impl Cluster {
    pub fn new(n: u32) -> Cluster {
        Cluster::with_config(n, |_| {})
    }

    /// `n` nodes, each node's configuration edited by `edit` first.
    pub fn with_config(n: u32, edit: impl Fn(&mut Config)) -> Cluster {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let r = members
            .iter()
            .map(|id| {
                let mut cfg = Config::new(*id, members.clone());
                edit(&mut cfg);
                (id.0, Replica::new(cfg).unwrap())
            })
            .collect();
        Cluster {
            r,
            pool: vec![],
            cut: vec![],
            applied: BTreeMap::new(),
        }
    }

    /// Starts node `id` as a brand-new member, from `via`'s schedule.
    pub fn join(&mut self, id: u32, via: u32) {
        let mut cfg = Config::new(NodeId(id), vec![]);
        cfg.schedule = Some(self.r[&via].join_schedule());
        cfg.seed = 1000 + u64::from(id);
        self.r
            .insert(id, Replica::new(cfg).expect("a member of the schedule"));
    }

    pub fn pump(&mut self, id: u32) {
        let Some(replica) = self.r.get_mut(&id) else {
            return;
        };
        loop {
            let ready = replica.take_ready();
            if ready.is_empty() {
                break;
            }
            self.pool.extend(ready.messages);
            let applied = self.applied.entry(id).or_default();
            for apply in ready.apply {
                applied.extend(apply.value.commands().iter().cloned());
            }
            if !ready.persist.is_empty() {
                replica.persisted(ready.persist_through);
            }
        }
    }

    /// How many commands node `id` applied.
    pub fn applied(&self, id: u32) -> usize {
        self.applied.get(&id).map_or(0, Vec::len)
    }

    /// Delivers every message (over links not cut) until quiet.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let ids: Vec<u32> = self.r.keys().copied().collect();
            for id in &ids {
                self.pump(*id);
            }
            let msgs = std::mem::take(&mut self.pool);
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                let (from, to) = (m.from.0, m.to.0);
                if self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                    continue;
                }
                if let Some(replica) = self.r.get_mut(&to) {
                    replica.step(m);
                }
            }
        }
        panic!("the network never went quiet");
    }

    /// Delivers the messages in the pool once (no pumping before).
    pub fn settle_one_step(&mut self, skip: Option<u32>) {
        let msgs = std::mem::take(&mut self.pool);
        for m in msgs {
            let (from, to) = (m.from.0, m.to.0);
            if self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                continue;
            }
            if let Some(replica) = self.r.get_mut(&to) {
                replica.step(m);
            }
        }
        let ids: Vec<u32> = self.r.keys().copied().collect();
        for id in ids {
            if Some(id) != skip {
                self.pump(id);
            }
        }
    }

    pub fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            let ids: Vec<u32> = self.r.keys().copied().collect();
            for id in ids {
                if let Some(replica) = self.r.get_mut(&id) {
                    replica.tick();
                }
            }
            self.settle();
        }
    }

    /// Ticks every node once, delivering nothing (see `tick_all`).
    pub fn tick_each(&mut self) {
        for replica in self.r.values_mut() {
            replica.tick();
        }
    }

    pub fn leader(&self) -> Option<u32> {
        self.r
            .iter()
            .filter(|(_, r)| r.status().role == RoleKind::Leader)
            .max_by_key(|(_, r)| r.status().promised)
            .map(|(id, _)| *id)
    }

    pub fn elect(&mut self) -> u32 {
        for _ in 0..500 {
            if let Some(id) = self.leader() {
                return id;
            }
            self.tick_all(1);
        }
        panic!("no leader");
    }

    pub fn write(&mut self, leader: u32, what: &str) {
        self.r
            .get_mut(&leader)
            .unwrap()
            .propose(Bytes::from(what.to_string()))
            .expect("leader takes it");
        self.settle();
    }

    pub fn chosen_end(&self, id: u32) -> u64 {
        self.r[&id].status().chosen_end.0
    }
}

pub fn add(id: u32, promote: bool) -> MembershipChange {
    MembershipChange::Add {
        id: NodeId(id),
        addr: Bytes::new(),
        promote,
    }
}
