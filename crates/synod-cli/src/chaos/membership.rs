//! The membership nemesis: one slot's node is replaced by a fresh node under
//! a new id, as an operator replaces a machine that lost its disk.
//!
//! 1. Only when every slot serves and every slot's node votes: removing one
//!    voter then leaves n-1 live voters, a majority of the n-1 that remain,
//!    and the joining node is a learner (no vote) until it has caught up.
//!    Like the other faults it runs healed, between faults.
//! 2. `SYNOD.MEMBER REMOVE <old id>` through another slot, retried while
//!    another membership change is in progress (the previous replacement's
//!    promotion may not have taken effect yet). Any other refusal skips the
//!    fault.
//! 3. The old process stops by itself once it learns of its removal
//!    (SIGKILL after [`STOP_WAIT`]); its data directory is deleted.
//! 4. The slot starts `synod server --id <new> --join <other slot's RESP>`
//!    on an empty directory; every later start of the slot (after a kill)
//!    passes the same arguments and starts from the join schedule.
//! 5. The nemesis waits, within the fault's bound, until the new node votes
//!    (the leader promotes it once it has caught up).
//!
//! When the removed node led, a probe measures the time from the removal's
//! acknowledgement to the first write the other slots acknowledge.

use super::nemesis::{Fault, Kind, Nemesis};
use super::procs::call;
use rand::seq::SliceRandom;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use synod_resp::Reply;

/// A membership change answers once chosen and applied on the node asked.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the removed node has to notice and stop by itself.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// A joining process that exits is started again at most this many times.
const JOIN_RESTARTS_MAX: u32 = 2;
/// Between polls of the membership.
const POLL: Duration = Duration::from_millis(200);

/// One replacement, for the report.
#[derive(Clone, Debug)]
pub struct Replace {
    /// The removed node's id.
    pub old: u32,
    /// The new node's id.
    pub new: u32,
    /// From the new process's start to it being a voter, if it got there
    /// within the fault's bound.
    pub voter_after: Option<Duration>,
}

impl Nemesis<'_> {
    /// Replaces slot `target`'s node (see the module's doc), taking at most
    /// about `bound`. `Err` when nothing was changed (the fault is skipped);
    /// once the removal is done a fault is always returned, its description
    /// saying what did not work.
    pub(super) fn replace(
        &mut self,
        target: u32,
        leader: Option<u32>,
        bound: Duration,
    ) -> Result<Fault, String> {
        let deadline = Instant::now() + bound;
        let n = self.procs().len();
        if let Some(down) = (1..=n).find(|i| !self.procs().serving(*i)) {
            return Err(format!("{} is not serving", self.procs().label(down)));
        }
        let others: Vec<u32> = (1..=n).filter(|i| *i != target).collect();
        let via = *others.choose(&mut self.rng).ok_or("no other slot to ask")?;
        let ids = self.procs().ids();
        self.wait_voters(via, &ids, deadline)?;
        let old = ids[target as usize - 1];
        let is_leader = leader == Some(target);
        let role = if is_leader { "leader" } else { "follower" };
        let start = self.now_us();
        self.remove(via, old, deadline)?;
        let probe = is_leader.then(|| self.probe(target, n));
        let mut notes = vec![self.wait_stopped(target)];
        // The removal may have taken the leader: join once the rest commit
        // writes again, or the new node's ADD may time out.
        if let Err(why) = self.wait_writable(via, deadline) {
            notes.push(why);
        }
        let member = self.net.resp_addr(via);
        let replaced = self.procs().replace(target, member);
        let (new, voter_after) = match replaced {
            Ok(new) => {
                let joined = self.join(target, new, via, deadline, &mut notes);
                (new, joined)
            }
            Err(why) => {
                notes.push(why);
                (old, None)
            }
        };
        let failover = probe.and_then(|(stop, handle)| {
            stop.store(true, Ordering::Relaxed);
            handle.join().ok().flatten()
        });
        let what = format!(
            "replace node {old} ({role}) by node {new} in slot {target} via slot {via}; {}",
            notes.join("; ")
        );
        Ok(Fault {
            kind: Kind::Membership,
            what,
            start,
            end: self.now_us(),
            leader_hit: is_leader,
            failover,
            replace: Some(Replace {
                old,
                new,
                voter_after,
            }),
        })
    }

    /// Waits until every node in `ids` votes, as slot `via` sees the
    /// membership: removing one of them then leaves a live majority.
    fn wait_voters(&self, via: u32, ids: &[u32], deadline: Instant) -> Result<(), String> {
        loop {
            let last = match self.members(via) {
                Ok(rows) => {
                    let learner = ids.iter().find(|id| {
                        !rows
                            .iter()
                            .any(|r| r.id == id.to_string() && is_voter(&r.role))
                    });
                    match learner {
                        None => return Ok(()),
                        Some(id) => format!("node {id} does not vote yet"),
                    }
                }
                Err(why) => why,
            };
            if Instant::now() >= deadline || !self.sleep(POLL) {
                return Err(format!("not every node votes: {last}"));
            }
        }
    }

    /// `SYNOD.MEMBER REMOVE old` through slot `via`, retried while another
    /// change is in progress. An answer that is neither OK nor that (a
    /// refusal, a timeout) counts as done only if the membership no longer
    /// holds `old`.
    fn remove(&self, via: u32, old: u32, deadline: Instant) -> Result<(), String> {
        let id = old.to_string();
        let request: [&[u8]; 3] = [b"SYNOD.MEMBER", b"REMOVE", id.as_bytes()];
        loop {
            let why = match call(self.net.resp_addr(via), &request, CHANGE_TIMEOUT) {
                Ok(Reply::Simple(s)) if s == "OK" => return Ok(()),
                Ok(Reply::Error(e)) if e.contains("another membership change is in progress") => {
                    if Instant::now() < deadline && self.sleep(POLL) {
                        continue;
                    }
                    e
                }
                Ok(Reply::Error(e)) => e,
                Ok(other) => format!("unexpected reply {other:?}"),
                Err(e) => e,
            };
            return match self.members(via) {
                Ok(rows) if !rows.iter().any(|r| r.id == id) => Ok(()),
                _ => Err(format!("REMOVE {old} through slot {via}: {why}")),
            };
        }
    }

    /// Waits for slot `target`'s removed process to stop by itself, SIGKILL
    /// after [`STOP_WAIT`]; says which.
    fn wait_stopped(&self, target: u32) -> String {
        let began = Instant::now();
        while began.elapsed() < STOP_WAIT {
            let exited = self.procs().take_exit(target);
            if let Some(status) = exited {
                return format!(
                    "the old node stopped by itself after {} ms ({status})",
                    began.elapsed().as_millis()
                );
            }
            if !self.sleep(Duration::from_millis(20)) {
                break;
            }
        }
        self.procs().kill9(target);
        format!(
            "the old node did not stop within {} s: SIGKILL",
            STOP_WAIT.as_secs()
        )
    }

    /// Starts the new node `new` in slot `target` and waits until it votes
    /// (as slot `via` sees it); returns the time that took.
    fn join(
        &self,
        target: u32,
        new: u32,
        via: u32,
        deadline: Instant,
        notes: &mut Vec<String>,
    ) -> Option<Duration> {
        let began = Instant::now();
        let mut restarts = 0;
        if let Err(why) = self.procs().start(self.net, target) {
            notes.push(why);
            return None;
        }
        loop {
            if let Ok(rows) = self.members(via) {
                if rows
                    .iter()
                    .any(|r| r.id == new.to_string() && is_voter(&r.role))
                {
                    let took = began.elapsed();
                    notes.push(format!("voter after {} ms", took.as_millis()));
                    return Some(took);
                }
            }
            // A join that failed (its ADD unanswered in time, say) exits;
            // the next start tries again, or starts from the join schedule
            // if the first got that far. An ADD that took effect after all
            // would be refused as a duplicate: the node never ran, so the
            // next start says `--already-added`.
            let exited = self.procs().take_exit(target);
            if let Some(status) = exited {
                notes.push(format!("the joining process exited ({status})"));
                eprintln!(
                    "chaos: membership: node {new} exited while joining ({status}); see node-{new}.log"
                );
                restarts += 1;
                if restarts > JOIN_RESTARTS_MAX {
                    return None;
                }
                let added = self
                    .members(via)
                    .is_ok_and(|rows| rows.iter().any(|r| r.id == new.to_string()));
                if added {
                    self.procs().set_already_added(target);
                }
                let started = self.procs().start(self.net, target);
                if let Err(why) = started {
                    notes.push(why);
                    return None;
                }
            }
            if Instant::now() >= deadline || !self.sleep(POLL) {
                notes.push(format!(
                    "not a voter within {} ms",
                    began.elapsed().as_millis()
                ));
                return None;
            }
        }
    }

    /// Waits until a write through slot `via` is acknowledged and no
    /// membership change is pending there.
    fn wait_writable(&self, via: u32, deadline: Instant) -> Result<(), String> {
        let addr = self.net.resp_addr(via);
        loop {
            let written = call(
                addr,
                &[b"SET", b"chaos-ready", b"1"],
                Duration::from_secs(2),
            );
            let last = match written {
                Ok(Reply::Simple(s)) if s == "OK" => {
                    let info = call(addr, &[b"INFO", b"replication"], Duration::from_secs(2));
                    match info {
                        Ok(Reply::Bulk(text)) | Ok(Reply::Verbatim(text))
                            if String::from_utf8_lossy(&text)
                                .lines()
                                .any(|l| l.trim() == "membership_pending:none") =>
                        {
                            return Ok(());
                        }
                        _ => "a membership change is pending".to_string(),
                    }
                }
                Ok(other) => format!("{other:?}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline || !self.sleep(POLL) {
                return Err(format!("slot {via} not writable before the join: {last}"));
            }
        }
    }

    /// `SYNOD.MEMBER LIST` asked at slot `via`.
    fn members(&self, via: u32) -> Result<Vec<crate::member::Row>, String> {
        let reply = call(
            self.net.resp_addr(via),
            &[b"SYNOD.MEMBER", b"LIST"],
            Duration::from_secs(2),
        )?;
        crate::member::parse_list(&reply)
    }
}

/// Whether a `SYNOD.MEMBER LIST` role word is a voting one.
fn is_voter(role: &str) -> bool {
    role == "voter" || role == "leader"
}
