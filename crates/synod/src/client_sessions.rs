//! The replicated table of client sessions: what makes a library user's
//! proposal take effect once even when it is retried through another node or
//! after the proposing process restarted.
//!
//! The rules this file enforces, on every replica alike (the table is a
//! function of the log, and part of every snapshot):
//! 1. **A sequence number takes effect at most once per session.** A
//!    proposal `(session, seq)` is applied only when `seq` is above the
//!    largest sequence number applied in the session so far. The same `seq`
//!    again is answered with the output it had (kept up to a size limit);
//!    a smaller one is refused ([`Check::TooOld`]), never applied.
//! 2. **A session the table dropped is never revived.** Session indexes are
//!    handed out in log order and never reused, so an index below the next
//!    one that the table does not hold was registered and dropped (expired,
//!    or evicted at the bound): every proposal on it is refused
//!    ([`Check::Expired`]). Dropping forgets which sequence numbers took
//!    effect, so reviving would break rule 1.
//!
//! Time is the log clock (the largest proposer stamp applied), never a
//! replica's own clock: every replica expires the same sessions at the same
//! point of the log.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};

/// Client sessions the replicated table holds at most. A registration that
/// finds it full first evicts the session closest to its expiry (the least
/// recently used one when all share a TTL; ties: the oldest), whose later
/// proposals then fail with [`crate::RequestError::SessionExpired`]. A
/// constant, not a setting: every replica must drop the same sessions.
pub const CLIENT_SESSIONS_MAX: usize = 16_384;

/// Output bytes kept per session (its latest output) and for all sessions
/// together. A larger output is not kept: its command still took effect
/// once, and a retry of it is answered with [`crate::RequestError::OutputNotKept`].
pub(crate) const CLIENT_OUTPUT_BYTES_PER_SESSION_MAX: usize = 1 << 20;
pub(crate) const CLIENT_OUTPUT_BYTES_MAX: usize = 64 << 20;

/// The identity of a client session: the index the log gave it at
/// registration and a random nonce its registrar chose. Persist it (with
/// [`SessionId::to_bytes`]) to resume the session after a restart or on
/// another node ([`crate::Node::resume_session`]).
///
/// The nonce makes an id from another cluster, or from before this
/// cluster's data was reset, be refused as unknown instead of landing in
/// someone else's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    index: u64,
    nonce: u64,
}

impl SessionId {
    /// Bytes of [`SessionId::to_bytes`].
    pub const BYTES: usize = 16;

    pub(crate) fn new(index: u64, nonce: u64) -> SessionId {
        SessionId { index, nonce }
    }

    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    pub(crate) fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The id as 16 bytes, to persist.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.index.to_le_bytes());
        out[8..].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// The id [`SessionId::to_bytes`] wrote; `None` unless `bytes` is 16
    /// bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<SessionId> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let mut index = [0u8; 8];
        let mut nonce = [0u8; 8];
        index.copy_from_slice(&bytes[..8]);
        nonce.copy_from_slice(&bytes[8..]);
        Some(SessionId {
            index: u64::from_le_bytes(index),
            nonce: u64::from_le_bytes(nonce),
        })
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:016x}", self.index, self.nonce)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ClientSession {
    nonce: u64,
    /// Unused for this long (log time), the session is dropped.
    ttl_ms: u64,
    /// Log time of its registration or latest proposal.
    touched_ms: u64,
    /// The largest sequence number applied (0: none yet).
    last_seq: u64,
    /// The output of `last_seq`, when kept.
    last_output: Option<Bytes>,
}

impl ClientSession {
    fn expires_ms(&self) -> u64 {
        self.touched_ms.saturating_add(self.ttl_ms)
    }
}

/// What the table says about a proposal `(session, seq)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Apply it now; then [`ClientSessions::record_output`].
    Apply,
    /// Already applied: its output, if kept.
    Duplicate(Option<Bytes>),
    /// Below the largest sequence number applied: refused.
    TooOld { last: u64 },
    /// The session was dropped (expired or evicted): refused.
    Expired,
    /// No such session was ever registered (or the nonce differs): refused.
    Unknown,
    /// Only from [`ClientSessions::outcome`]: not applied yet.
    Pending,
}

/// The replicated client session table (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientSessions {
    sessions: BTreeMap<u64, ClientSession>,
    /// `(expires_ms, index)` of every session: expiry and eviction order.
    by_expiry: BTreeSet<(u64, u64)>,
    /// The index the next registration gets (indexes start at 1).
    next_index: u64,
    /// Bytes of every kept output together.
    output_bytes: usize,
    /// Sessions dropped at the bound (not expired), for the metrics.
    pub(crate) evicted_total: u64,
}

impl Default for ClientSessions {
    fn default() -> Self {
        ClientSessions {
            sessions: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            next_index: 1,
            output_bytes: 0,
            evicted_total: 0,
        }
    }
}

impl ClientSessions {
    /// Sessions held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Drops every session unused for its TTL as of log time `now_ms`.
    /// Returns how many were dropped.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(expires_ms, index)) = self.by_expiry.first() {
            if expires_ms > now_ms {
                break;
            }
            self.remove(index);
            dropped += 1;
        }
        dropped
    }

    fn remove(&mut self, index: u64) {
        if let Some(session) = self.sessions.remove(&index) {
            self.by_expiry.remove(&(session.expires_ms(), index));
            self.output_bytes -= session.last_output.map_or(0, |o| o.len());
        }
        debug_assert_eq!(self.sessions.len(), self.by_expiry.len());
    }

    /// Registers a session at log time `now_ms`. At the bound
    /// ([`CLIENT_SESSIONS_MAX`]) the session closest to its expiry (ties: the
    /// oldest index) is evicted first: its later proposals are refused as
    /// expired, never applied again.
    pub(crate) fn register(&mut self, nonce: u64, ttl_ms: u64, now_ms: u64) -> SessionId {
        self.expire(now_ms);
        if self.sessions.len() >= CLIENT_SESSIONS_MAX {
            if let Some(&(_, index)) = self.by_expiry.first() {
                self.remove(index);
                self.evicted_total += 1;
            }
        }
        let index = self.next_index;
        self.next_index += 1;
        let session = ClientSession {
            nonce,
            ttl_ms: ttl_ms.max(1),
            touched_ms: now_ms,
            last_seq: 0,
            last_output: None,
        };
        self.by_expiry.insert((session.expires_ms(), index));
        self.sessions.insert(index, session);
        debug_assert!(self.sessions.len() <= CLIENT_SESSIONS_MAX);
        SessionId { index, nonce }
    }

    fn refusal(&self, id: SessionId) -> Check {
        if id.index == 0 || id.index >= self.next_index {
            return Check::Unknown;
        }
        match self.sessions.get(&id.index) {
            // Held with another nonce: not this session.
            Some(_) => Check::Unknown,
            None => Check::Expired,
        }
    }

    /// Decides what a proposal `(id, seq)` applied at log time `now_ms`
    /// does, and records it: an applied one becomes the session's latest,
    /// and any proposal on a live session (a duplicate or a refused old one
    /// included) counts as use (its expiry moves on).
    pub(crate) fn check(&mut self, id: SessionId, seq: u64, now_ms: u64) -> Check {
        self.expire(now_ms);
        let Some(session) = self.sessions.get_mut(&id.index) else {
            return self.refusal(id);
        };
        if session.nonce != id.nonce {
            return Check::Unknown;
        }
        let expires_before = session.expires_ms();
        session.touched_ms = session.touched_ms.max(now_ms);
        let expires_now = session.expires_ms();
        let verdict = if seq == 0 || seq < session.last_seq {
            Check::TooOld {
                last: session.last_seq,
            }
        } else if seq == session.last_seq {
            Check::Duplicate(session.last_output.clone())
        } else {
            session.last_seq = seq;
            let freed = session.last_output.take().map_or(0, |o| o.len());
            self.output_bytes -= freed;
            Check::Apply
        };
        if expires_now != expires_before {
            self.by_expiry.remove(&(expires_before, id.index));
            self.by_expiry.insert((expires_now, id.index));
        }
        verdict
    }

    /// Keeps the output of `(id, seq)` that [`ClientSessions::check`] just
    /// let through, within the byte limits (a pure function of the table and
    /// the output, so every replica keeps the same).
    pub(crate) fn record_output(&mut self, id: SessionId, seq: u64, output: &Bytes) {
        let Some(session) = self.sessions.get_mut(&id.index) else {
            return;
        };
        if session.nonce != id.nonce || session.last_seq != seq || session.last_output.is_some() {
            return;
        }
        if output.len() > CLIENT_OUTPUT_BYTES_PER_SESSION_MAX
            || self.output_bytes + output.len() > CLIENT_OUTPUT_BYTES_MAX
        {
            return;
        }
        session.last_output = Some(output.clone());
        self.output_bytes += output.len();
        debug_assert!(self.output_bytes <= CLIENT_OUTPUT_BYTES_MAX);
    }

    /// What the table says about `(id, seq)` without changing anything (for
    /// a node that learned of it from a snapshot): [`Check::Pending`] when
    /// it has not taken effect yet.
    pub(crate) fn outcome(&self, id: SessionId, seq: u64) -> Check {
        let Some(session) = self.sessions.get(&id.index) else {
            return self.refusal(id);
        };
        if session.nonce != id.nonce {
            return Check::Unknown;
        }
        if seq == 0 || seq < session.last_seq {
            Check::TooOld {
                last: session.last_seq,
            }
        } else if seq == session.last_seq {
            Check::Duplicate(session.last_output.clone())
        } else {
            Check::Pending
        }
    }

    /// Appends the table to a snapshot.
    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.next_index);
        buf.put_u64_le(self.evicted_total);
        buf.put_u64_le(self.sessions.len() as u64);
        for (index, session) in &self.sessions {
            buf.put_u64_le(*index);
            buf.put_u64_le(session.nonce);
            buf.put_u64_le(session.ttl_ms);
            buf.put_u64_le(session.touched_ms);
            buf.put_u64_le(session.last_seq);
            match &session.last_output {
                None => buf.put_u8(0),
                Some(output) => {
                    buf.put_u8(1);
                    // At most CLIENT_OUTPUT_BYTES_PER_SESSION_MAX: fits.
                    buf.put_u32_le(output.len() as u32);
                    buf.put_slice(output);
                }
            }
        }
    }

    /// Reads what [`ClientSessions::encode`] wrote, checking every length
    /// and limit before it allocates.
    pub(crate) fn decode(buf: &mut Bytes) -> Result<ClientSessions, String> {
        let truncated = || "snapshot truncated in the client session table".to_string();
        if buf.remaining() < 24 {
            return Err(truncated());
        }
        let mut table = ClientSessions {
            next_index: buf.get_u64_le(),
            evicted_total: buf.get_u64_le(),
            ..ClientSessions::default()
        };
        let count = buf.get_u64_le();
        const ENTRY_BYTES_MIN: usize = 41;
        if count > (buf.remaining() / ENTRY_BYTES_MIN) as u64 {
            return Err(truncated());
        }
        if count > CLIENT_SESSIONS_MAX as u64 {
            return Err(format!(
                "{count} client sessions, more than the {CLIENT_SESSIONS_MAX} a table holds"
            ));
        }
        for _ in 0..count {
            if buf.remaining() < ENTRY_BYTES_MIN {
                return Err(truncated());
            }
            let index = buf.get_u64_le();
            let mut session = ClientSession {
                nonce: buf.get_u64_le(),
                ttl_ms: buf.get_u64_le(),
                touched_ms: buf.get_u64_le(),
                last_seq: buf.get_u64_le(),
                last_output: None,
            };
            match buf.get_u8() {
                0 => {}
                1 => {
                    if buf.remaining() < 4 {
                        return Err(truncated());
                    }
                    let len = buf.get_u32_le() as usize;
                    if len > CLIENT_OUTPUT_BYTES_PER_SESSION_MAX
                        || table.output_bytes + len > CLIENT_OUTPUT_BYTES_MAX
                    {
                        return Err(format!(
                            "a client session output of {len} bytes is over the limits"
                        ));
                    }
                    if buf.remaining() < len {
                        return Err(truncated());
                    }
                    // A copy: a slice would keep the whole snapshot alive.
                    session.last_output = Some(Bytes::copy_from_slice(&buf[..len]));
                    buf.advance(len);
                    table.output_bytes += len;
                }
                other => return Err(format!("bad client session output flag {other}")),
            }
            if index == 0 || index >= table.next_index || session.ttl_ms == 0 {
                return Err(format!("bad client session index {index}"));
            }
            if !table.by_expiry.insert((session.expires_ms(), index))
                || table.sessions.insert(index, session).is_some()
            {
                return Err(format!("client session {index} listed twice"));
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn a_sequence_number_applies_once_and_its_output_is_kept() {
        let mut table = ClientSessions::default();
        let id = table.register(77, 1_000, 10);
        assert_eq!(id, SessionId::new(1, 77));
        assert_eq!(table.check(id, 1, 11), Check::Apply);
        table.record_output(id, 1, &out("one"));
        assert_eq!(table.check(id, 1, 12), Check::Duplicate(Some(out("one"))));
        assert_eq!(table.outcome(id, 1), Check::Duplicate(Some(out("one"))));
        assert_eq!(table.outcome(id, 2), Check::Pending);
        assert_eq!(table.check(id, 3, 13), Check::Apply, "gaps are allowed");
        table.record_output(id, 3, &out("three"));
        assert_eq!(table.output_bytes, 5, "only the latest output is kept");
        assert_eq!(table.check(id, 2, 14), Check::TooOld { last: 3 });
        assert_eq!(table.check(id, 1, 14), Check::TooOld { last: 3 });
        assert_eq!(table.check(id, 0, 14), Check::TooOld { last: 3 });
        assert_eq!(table.check(id, 3, 15), Check::Duplicate(Some(out("three"))));
    }

    #[test]
    fn unknown_ids_and_wrong_nonces_are_refused() {
        let mut table = ClientSessions::default();
        let id = table.register(5, 1_000, 0);
        assert_eq!(table.check(SessionId::new(2, 5), 1, 1), Check::Unknown);
        assert_eq!(table.check(SessionId::new(0, 5), 1, 1), Check::Unknown);
        assert_eq!(table.check(SessionId::new(1, 6), 1, 1), Check::Unknown);
        assert_eq!(table.check(id, 1, 1), Check::Apply);
    }

    #[test]
    fn an_unused_session_expires_by_log_time_and_stays_dropped() {
        let mut table = ClientSessions::default();
        let idle = table.register(1, 100, 0);
        let busy = table.register(2, 100, 0);
        assert_eq!(
            table.check(busy, 1, 60),
            Check::Apply,
            "use moves expiry on"
        );
        assert_eq!(table.expire(99), 0);
        assert_eq!(table.expire(100), 1, "idle: touched at 0, ttl 100");
        assert_eq!(table.check(idle, 1, 100), Check::Expired);
        assert_eq!(table.check(busy, 2, 159), Check::Apply);
        assert_eq!(table.check(busy, 3, 259), Check::Expired, "unused 159..259");
        assert_eq!(table.check(busy, 2, 300), Check::Expired, "never revived");
        assert_eq!(table.len(), 0);
        assert_eq!(table.output_bytes, 0);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_session_closest_to_expiry() {
        let mut table = ClientSessions::default();
        let first = table.register(1, 1_000_000, 0);
        let ids: Vec<SessionId> = (1..CLIENT_SESSIONS_MAX as u64)
            .map(|k| table.register(k, 1_000_000, k))
            .collect();
        assert_eq!(table.len(), CLIENT_SESSIONS_MAX);
        // `first` is the closest to expiry; using it moves it to the back.
        assert_eq!(
            table.check(first, 1, CLIENT_SESSIONS_MAX as u64),
            Check::Apply
        );
        let newest = table.register(9, 1_000_000, CLIENT_SESSIONS_MAX as u64 + 1);
        assert_eq!(table.len(), CLIENT_SESSIONS_MAX);
        assert_eq!(table.evicted_total, 1);
        assert_eq!(table.check(ids[0], 1, 0), Check::Expired, "evicted");
        assert_eq!(table.check(first, 1, 0), Check::Duplicate(None));
        assert_eq!(table.check(newest, 1, 0), Check::Apply);
    }

    #[test]
    fn outputs_over_the_limit_are_not_kept_but_still_deduplicated() {
        let mut table = ClientSessions::default();
        let id = table.register(1, 1_000, 0);
        assert_eq!(table.check(id, 1, 0), Check::Apply);
        table.record_output(
            id,
            1,
            &Bytes::from(vec![0u8; CLIENT_OUTPUT_BYTES_PER_SESSION_MAX + 1]),
        );
        assert_eq!(table.check(id, 1, 0), Check::Duplicate(None));
        assert_eq!(table.output_bytes, 0);
    }

    #[test]
    fn the_table_round_trips_and_garbage_is_refused() {
        let mut table = ClientSessions::default();
        let a = table.register(1, 500, 3);
        table.register(2, 900, 4);
        assert_eq!(table.check(a, 4, 5), Check::Apply);
        table.record_output(a, 4, &out("four"));
        let mut buf = BytesMut::new();
        table.encode(&mut buf);
        buf.put_slice(b"rest");
        let mut bytes = buf.freeze();
        let full = bytes.clone();
        let back = ClientSessions::decode(&mut bytes).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(&bytes[..], b"rest");
        for cut in 0..full.len() - 4 {
            let mut short = full.slice(..cut);
            assert!(ClientSessions::decode(&mut short).is_err(), "cut {cut}");
        }
        let mut bad = full.to_vec();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ClientSessions::decode(&mut Bytes::from(bad)).is_err());
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        let id = SessionId::new(42, 0xdead_beef);
        assert_eq!(SessionId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(SessionId::from_bytes(&[0u8; 15]), None);
        assert_eq!(id.to_string(), "42-00000000deadbeef");
    }
}
