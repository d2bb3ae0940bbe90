//! Membership changes at run time: the node's side of `synod-core`'s
//! reconfiguration (the safety rule is in `synod-core/src/membership.rs`).
//!
//! - Each member's address travels in the membership itself
//!   ([`MemberAddr`], opaque to the core), so every node knows whom to dial
//!   as soon as it applies a change; the peer transport follows the
//!   memberships in force and pending ([`Driver::follow_membership`]).
//! - Operations ([`Node::add_member`] and friends) run at the leader; a
//!   follower forwards them (a core message). The caller is answered once
//!   the change is chosen *and applied here*, so what it reads next already
//!   shows the change (it takes effect `RECONFIG_DELAY_INSTANCES` later; the
//!   leader fills that gap with no-ops).
//! - A node that learns it was removed stops, and refuses to start again on
//!   that data directory: a removed id never votes again.
//!
//! [`Node::add_member`]: crate::Node::add_member

use crate::driver::Driver;
use crate::state_machine::StateMachine;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synod_core::{InstanceId, MemberOp, MemberRole, Membership, MembershipChange, NodeId};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Where a member is reached: its peer (Paxos) address and, when known, its
/// client (RESP) address. Stored in the membership as `paxos=H:P resp=H:P`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAddr {
    /// The peer transport's address.
    pub paxos: Option<SocketAddr>,
    /// The client address (for `member list` and redirects), free text.
    pub resp: Option<String>,
}

impl MemberAddr {
    /// The encoding kept in the membership.
    pub fn encode(&self) -> Bytes {
        let mut parts = Vec::new();
        if let Some(paxos) = self.paxos {
            parts.push(format!("paxos={paxos}"));
        }
        if let Some(resp) = &self.resp {
            parts.push(format!("resp={resp}"));
        }
        Bytes::from(parts.join(" "))
    }

    /// Reads [`MemberAddr::encode`]'s text; unknown or malformed parts are
    /// left out (never an error: it came from the replicated log).
    pub fn parse(bytes: &[u8]) -> MemberAddr {
        let text = String::from_utf8_lossy(bytes);
        let mut addr = MemberAddr::default();
        for part in text.split_whitespace() {
            if let Some(paxos) = part.strip_prefix("paxos=") {
                addr.paxos = paxos.parse().ok();
            } else if let Some(resp) = part.strip_prefix("resp=") {
                if !resp.is_empty() {
                    addr.resp = Some(resp.to_string());
                }
            }
        }
        addr
    }
}

/// One member as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member.
    pub id: NodeId,
    /// Voter, learner, or a learner to promote once caught up.
    pub role: MemberRole,
    /// Whether it leads (as far as this node knows).
    pub leader: bool,
    /// Its addresses.
    pub addr: MemberAddr,
    /// Its chosen prefix as the leader last heard it (this node's own for
    /// itself); `None` when this node does not lead and it is another member.
    pub chosen_end: Option<InstanceId>,
    /// How many instances it is behind the leader, when known.
    pub lag: Option<u64>,
}

/// The cluster's membership as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersView {
    /// This node.
    pub node: NodeId,
    /// The leader this node knows.
    pub leader: Option<NodeId>,
    /// The newest membership's epoch.
    pub epoch: u64,
    /// Its members.
    pub members: Vec<MemberInfo>,
    /// When the newest membership is not in force yet: the instance from
    /// which it is.
    pub pending_from: Option<InstanceId>,
    /// This node's applied point.
    pub applied_end: InstanceId,
    /// Whether this view comes from the leader (lags are complete only then).
    pub from_leader: bool,
}

/// Why a membership operation failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MemberError {
    /// Refused by the leader (or no leader known): nothing was proposed.
    #[error("{0}")]
    Refused(String),
    /// No answer in time: the change may or may not take effect.
    #[error(
        "no answer within {0:?}: the change may or may not take effect; check with member list"
    )]
    Timeout(Duration),
    /// Proposed, but another change was chosen in its place: retry.
    #[error("the change was not chosen (another one was): {0}")]
    Lost(String),
    /// The node stopped.
    #[error("the node stopped: {0}")]
    Stopped(String),
}

/// A membership operation waiting for its outcome.
pub(crate) struct MemberWaiter {
    op: MemberOp,
    reply: oneshot::Sender<Result<(), MemberError>>,
    deadline: Instant,
    /// Once the leader accepted it: the epoch it makes (changes) or the
    /// target to see leading (transfers).
    accepted: Option<u64>,
}

/// What the driver keeps for membership.
#[derive(Default)]
pub(crate) struct MemberState {
    waiters: BTreeMap<u64, MemberWaiter>,
    next_token: u64,
    /// The peer set last given to the transport.
    peers: BTreeMap<NodeId, SocketAddr>,
    /// What the schedule looked like when `peers` was computed (its length,
    /// first instance and newest epoch): recomputed only when it changes,
    /// not on every batch.
    schedule_seen: Option<(usize, InstanceId, u64)>,
    /// When this removed node last said it runs on (`follow_membership`).
    removed_warned: Option<Instant>,
}

/// The membership operations a `Node` handle submits.
pub(crate) enum MemberSubmit {
    Op {
        op: MemberOp,
        reply: oneshot::Sender<Result<(), MemberError>>,
    },
    View {
        reply: oneshot::Sender<MembersView>,
    },
    JoinInfo {
        reply: oneshot::Sender<JoinInfo>,
    },
}

/// What a node joining the cluster needs from a member
/// ([`crate::Node::join_info`]): it starts from `point` with `schedule`
/// (see [`write_join_schedule`]) and must carry `cluster_id` in its peer
/// handshakes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinInfo {
    /// The cluster's id (the founding members' hash of their peer list).
    pub cluster_id: u64,
    /// The member's applied point (or, while it has not applied up to the
    /// point it joined at itself, that point): the joining node learns
    /// everything from here on (and what lies before it from a snapshot or
    /// the log).
    pub point: InstanceId,
    /// The memberships of every instance from `point` on; it includes every
    /// change chosen before `point` (`Replica::join_schedule`).
    pub schedule: synod_core::Schedule,
}

/// Whether `membership` shows `op` done.
fn done(membership: &Membership, op: &MemberOp) -> bool {
    match op {
        MemberOp::Change { change, .. } => match change {
            MembershipChange::Add { id, .. } => membership.contains(*id),
            MembershipChange::Promote { id } => membership.is_voter(*id),
            MembershipChange::Remove { id } => membership.was_removed(*id),
        },
        MemberOp::Transfer { .. } => false,
    }
}

impl<S: StateMachine> Driver<S> {
    /// A membership request from the handle.
    pub(crate) fn member_submit(&mut self, submit: MemberSubmit) {
        match submit {
            MemberSubmit::View { reply } => {
                let _ = reply.send(self.members_view());
            }
            MemberSubmit::JoinInfo { reply } => {
                // The applied point (or the base of the schedule this node
                // started from, if it has not applied that far): every
                // change chosen below it is in the schedule, so the joiner's
                // view of the memberships from there on is the member's (the
                // α rule needs both to agree on which membership governs
                // each instance; see `Replica::join_schedule`).
                let (point, schedule) = self.engine.replica.join_schedule();
                let _ = reply.send(JoinInfo {
                    cluster_id: self.cfg.cluster_id,
                    point,
                    schedule,
                });
            }
            MemberSubmit::Op { op, reply } => {
                self.members.next_token += 1;
                let token = self.members.next_token;
                let deadline = Instant::now() + self.cfg.request_timeout;
                match self.engine.replica.member_op(token, op.clone()) {
                    Ok(()) => {
                        self.members.waiters.insert(
                            token,
                            MemberWaiter {
                                op,
                                reply,
                                deadline,
                                accepted: None,
                            },
                        );
                    }
                    Err(err) => {
                        let _ = reply.send(Err(MemberError::Refused(err.to_string())));
                    }
                }
            }
        }
    }

    /// The leader's answers (`Ready::member_outcomes`).
    pub(crate) fn member_outcomes(&mut self, outcomes: Vec<(u64, Result<u64, String>)>) {
        for (token, outcome) in outcomes {
            let Some(waiter) = self.members.waiters.get_mut(&token) else {
                continue;
            };
            match outcome {
                Ok(epoch) => waiter.accepted = Some(epoch),
                Err(why) => {
                    if let Some(waiter) = self.members.waiters.remove(&token) {
                        let _ = waiter.reply.send(Err(MemberError::Refused(why)));
                    }
                }
            }
        }
        self.check_member_waiters();
    }

    /// Answers the operations that finished, failed or timed out.
    pub(crate) fn check_member_waiters(&mut self) {
        if self.members.waiters.is_empty() {
            return;
        }
        let now = Instant::now();
        let latest = self.engine.replica.schedule().latest().clone();
        let status = self.engine.replica.status();
        // A transfer is done once `to` leads by a ballot this node promised
        // (the old leader and the followers set `to` as leader when told to
        // hand over, before `to` has won).
        let led_by = |to: NodeId| {
            status.leader == Some(to)
                && status.promised.node == to
                && (to != status.id || status.role == synod_core::RoleKind::Leader)
        };
        let timeout = self.cfg.request_timeout;
        let tokens: Vec<u64> = self.members.waiters.keys().copied().collect();
        for token in tokens {
            let Some(waiter) = self.members.waiters.get(&token) else {
                continue;
            };
            let outcome = match (&waiter.op, waiter.accepted) {
                (MemberOp::Transfer { to }, Some(_)) if led_by(*to) => Some(Ok(())),
                (MemberOp::Change { .. }, Some(epoch)) if latest.epoch >= epoch => {
                    if done(&latest, &waiter.op) {
                        Some(Ok(()))
                    } else {
                        Some(Err(MemberError::Lost(format!(
                            "membership epoch {} does not include it",
                            latest.epoch
                        ))))
                    }
                }
                _ if now >= waiter.deadline => Some(Err(MemberError::Timeout(timeout))),
                _ => None,
            };
            if let Some(outcome) = outcome {
                if let Some(waiter) = self.members.waiters.remove(&token) {
                    let _ = waiter.reply.send(outcome);
                }
            }
        }
    }

    /// Fails every waiting operation (the node stops).
    pub(crate) fn fail_member_waiters(&mut self, reason: &str) {
        for (_, waiter) in std::mem::take(&mut self.members.waiters) {
            let _ = waiter
                .reply
                .send(Err(MemberError::Stopped(reason.to_string())));
        }
    }

    /// Points the peer transport at every member of every membership in
    /// force or pending (learners included), with the addresses the
    /// memberships carry (the start-up peer list for bootstrap members that
    /// carry none). Returns an error message when this node was removed.
    pub(crate) fn follow_membership(&mut self) -> Result<(), String> {
        let me = self.cfg.id;
        if self.engine.replica.schedule().latest().was_removed(me) {
            // Not at once: members left below the point where the change
            // takes effect may still need this node's vote to finish the
            // instances before it (see `Replica::may_retire`). Until then it
            // runs on and says so; one that no leader reaches any more runs
            // on until it is stopped by hand (silence proves nothing).
            if self.engine.replica.may_retire() {
                let epoch = self.engine.replica.schedule().latest().epoch;
                return Err(format!(
                    "node {} was removed from the cluster (membership epoch {}); it stops and never votes again. Add it back under a new id with a fresh data directory",
                    me.0, epoch
                ));
            }
            let now = Instant::now();
            let every = self.cfg.election_timeout().0.saturating_mul(10);
            if self
                .members
                .removed_warned
                .is_none_or(|at| now.duration_since(at) >= every)
            {
                self.members.removed_warned = Some(now);
                warn!(
                    node = me.0,
                    "this node was removed from the cluster; it runs on (and votes on the instances before the change takes effect) until the members left show they go on without it"
                );
            }
        }
        let seen = {
            let schedule = self.engine.replica.schedule();
            let first = schedule.entries().first().map_or(InstanceId(0), |e| e.from);
            (schedule.entries().len(), first, schedule.latest().epoch)
        };
        if self.members.schedule_seen == Some(seen) {
            return Ok(());
        }
        self.members.schedule_seen = Some(seen);
        let schedule = self.engine.replica.schedule().clone();
        let latest = schedule.latest().clone();
        // Removed ids are refused at the peer port too, also after a
        // restart (the transport alone would take one it never had in its
        // peer set for a stranger, see synod-net's "Strangers").
        self.net.set_departed(latest.removed.iter().copied());
        let mut peers = BTreeMap::new();
        for entry in schedule.entries() {
            for member in &entry.membership.members {
                let addr = MemberAddr::parse(&member.addr)
                    .paxos
                    .or_else(|| self.cfg.peers.get(&member.id).copied());
                if let Some(addr) = addr {
                    peers.insert(member.id, addr);
                }
            }
        }
        if peers != self.members.peers {
            info!(
                node = me.0,
                epoch = latest.epoch,
                peers = ?peers,
                "membership changed: peer links follow it"
            );
            self.net.set_peers(peers.clone());
            self.members.peers = peers;
        }
        Ok(())
    }

    /// This node's view of the membership.
    pub(crate) fn members_view(&self) -> MembersView {
        let status = self.engine.replica.status();
        let leading = status.role == synod_core::RoleKind::Leader;
        let leader_end = status.chosen_end;
        let schedule = self.engine.replica.schedule();
        let latest = schedule.latest();
        let pending_from = schedule
            .entries()
            .last()
            .filter(|e| schedule.entries().len() > 1 && e.from > status.chosen_end)
            .map(|e| e.from);
        let members = self
            .engine
            .replica
            .member_progress()
            .into_iter()
            .map(|p| {
                let mut addr = MemberAddr::parse(&p.addr);
                if addr.paxos.is_none() {
                    addr.paxos = self.cfg.peers.get(&p.id).copied();
                }
                if p.id == self.cfg.id && addr.resp.is_none() {
                    addr.resp = self.cfg.advertise_resp.clone();
                }
                MemberInfo {
                    id: p.id,
                    role: p.role,
                    leader: status.leader == Some(p.id),
                    addr,
                    chosen_end: p.chosen_end,
                    lag: if leading {
                        p.chosen_end.map(|e| leader_end.0.saturating_sub(e.0))
                    } else {
                        None
                    },
                }
            })
            .collect();
        MembersView {
            node: self.cfg.id,
            leader: status.leader,
            epoch: latest.epoch,
            members,
            pending_from,
            applied_end: status.applied_end,
            from_leader: leading,
        }
    }

    /// At a clean stop of the leader: starts handing leadership to the most
    /// up-to-date voter, so that clients do not wait out an election
    /// timeout. Returns the successor when a hand-over started (the loop
    /// then runs on until [`Driver::handed_over`] or a deadline).
    pub(crate) fn start_hand_over(&mut self) -> Option<NodeId> {
        if self.engine.replica.status().role != synod_core::RoleKind::Leader {
            return None;
        }
        let to = self.engine.replica.best_successor()?;
        match self.engine.replica.transfer_leadership(to) {
            Ok(()) => {
                info!(to = to.0, "stopping: handing leadership over first");
                Some(to)
            }
            Err(err) => {
                warn!("no leadership transfer at stop: {err}");
                None
            }
        }
    }

    /// The hand-over to `to` is done: `to` campaigns (this node promised
    /// its ballot, so it got the word: stopping earlier could lose the
    /// message in a send queue) and nothing waits to be durable.
    pub(crate) fn handed_over(&self, to: NodeId) -> bool {
        let status = self.engine.replica.status();
        status.role != synod_core::RoleKind::Leader
            && status.promised.node == to
            && !self.engine.replica.awaits_durability()
    }
}

/// The start-up schedule of a joining node, kept in its data directory so a
/// restart starts from the same point.
pub(crate) const JOIN_FILE: &str = "join-schedule";

/// Writes the point and schedule a joining node starts from (fsynced).
pub fn write_join_schedule(
    dir: &std::path::Path,
    point: InstanceId,
    schedule: &synod_core::Schedule,
) -> std::io::Result<()> {
    use synod_core::codec::Encode;
    let mut bytes = point.0.to_le_bytes().to_vec();
    bytes.extend_from_slice(&schedule.to_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{JOIN_FILE}.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(JOIN_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads what [`write_join_schedule`] wrote, if the file exists.
pub fn read_join_schedule(
    dir: &std::path::Path,
) -> Result<Option<(InstanceId, synod_core::Schedule)>, String> {
    use synod_core::codec::Decode;
    let path = dir.join(JOIN_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = |why: &str| format!("{} is damaged: {why}", path.display());
    if bytes.len() < 12 {
        return Err(bad("too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| bad("no checksum"))?);
    if crc32c::crc32c(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    let point = InstanceId(u64::from_le_bytes(
        body[..8].try_into().map_err(|_| bad("no point"))?,
    ));
    let schedule = synod_core::Schedule::from_bytes(Bytes::copy_from_slice(&body[8..]))
        .map_err(|e| bad(&e.to_string()))?;
    Ok(Some((point, schedule)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_tolerate_garbage() {
        let addr = MemberAddr {
            paxos: Some("127.0.0.1:7104".parse().unwrap()),
            resp: Some("127.0.0.1:7004".into()),
        };
        assert_eq!(MemberAddr::parse(&addr.encode()), addr);
        assert_eq!(MemberAddr::parse(b""), MemberAddr::default());
        let odd = MemberAddr::parse(b"paxos=nonsense resp= x=y \xff");
        assert_eq!(odd, MemberAddr::default());
    }

    #[test]
    fn the_join_schedule_survives_a_restart_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_join_schedule(dir.path()), Ok(None));
        let schedule = synod_core::Schedule::new(
            InstanceId(0),
            Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]),
        );
        write_join_schedule(dir.path(), InstanceId(42), &schedule).unwrap();
        assert_eq!(
            read_join_schedule(dir.path()),
            Ok(Some((InstanceId(42), schedule)))
        );
        let path = dir.path().join(JOIN_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_join_schedule(dir.path()).is_err());
    }
}
