//! What the runtime puts in the log around a user's command, and the
//! replicated session table that makes retried commands take effect once.
//!
//! Every proposal travels in an [`Envelope`]: the proposing node's session id
//! and a sequence number within it, the proposer's clock, and the user's
//! bytes. A proposal may reach the log more than once (a forwarded command
//! retried after a leader change, a retransmission) and commands of one
//! session may be chosen out of proposal order, so the table remembers, per
//! session, which sequence numbers took effect. Each envelope also carries
//! the session's `low_mark`: every sequence number below it is finished at
//! the proposer (answered or given up), so the table forgets them and ignores
//! them should they arrive late. The table is part of the replicated state
//! (it is in every snapshot), so every replica makes the same decisions.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};

const ENVELOPE_VERSION: u8 = 1;
const SNAPSHOT_VERSION: u8 = 1;

/// A user command (applied once, on every replica) or a read (answered only
/// by the node that asked, at its place in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Command = 1,
    Read = 2,
}

/// One proposal as it sits in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub kind: Kind,
    pub session: u64,
    pub seq: u64,
    /// Every sequence number of `session` below this is finished at the proposer.
    pub low_mark: u64,
    /// The proposer's clock, ms since the Unix epoch, capped by its
    /// `StampClock` so that it advances no faster than monotonic time.
    pub time_ms: u64,
    pub payload: Bytes,
}

const HEADER_BYTES: usize = 2 + 4 * 8;

impl Envelope {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_BYTES + self.payload.len());
        buf.put_u8(ENVELOPE_VERSION);
        buf.put_u8(self.kind as u8);
        buf.put_u64_le(self.session);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.low_mark);
        buf.put_u64_le(self.time_ms);
        buf.put_slice(&self.payload);
        buf.freeze()
    }

    /// Decodes an envelope; the payload is a zero-copy slice of `bytes`.
    pub(crate) fn decode(bytes: &Bytes) -> Option<Envelope> {
        if bytes.len() < HEADER_BYTES || bytes[0] != ENVELOPE_VERSION {
            return None;
        }
        let kind = match bytes[1] {
            1 => Kind::Command,
            2 => Kind::Read,
            _ => return None,
        };
        let mut header = &bytes[2..HEADER_BYTES];
        Some(Envelope {
            kind,
            session: header.get_u64_le(),
            seq: header.get_u64_le(),
            low_mark: header.get_u64_le(),
            time_ms: header.get_u64_le(),
            payload: bytes.slice(HEADER_BYTES..),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    low_mark: u64,
    /// Sequence numbers at or above `low_mark` that took effect.
    applied: BTreeSet<u64>,
    /// The log time of the session's latest command, for eviction.
    touched_ms: u64,
}

/// The replicated part of the runtime's state: sessions and the log clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    sessions: BTreeMap<u64, Session>,
    /// The largest `time_ms` of any envelope applied so far.
    pub time_ms: u64,
    sessions_max: usize,
}

/// Applied sequence numbers one session may hold above its low mark: a bound
/// on memory that a well-behaved proposer (bounded in-flight proposals) never
/// reaches. Past it the oldest are forgotten, which can only make a very late
/// duplicate take effect again; the runtime bounds in-flight proposals far
/// below this.
const APPLIED_PER_SESSION_MAX: usize = 1 << 20;

impl Sessions {
    pub(crate) fn new(sessions_max: usize) -> Sessions {
        Sessions {
            sessions_max: sessions_max.max(1),
            ..Sessions::default()
        }
    }

    /// Advances the log clock with an envelope's stamp and returns the time
    /// the command (or a read through the log) takes effect at: the largest
    /// stamp so far, so monotonic along the log and the same on every replica.
    pub(crate) fn clock(&mut self, envelope: &Envelope) -> u64 {
        self.time_ms = self.time_ms.max(envelope.time_ms);
        self.time_ms
    }

    /// Decides whether a command envelope takes effect now (true) or is a
    /// duplicate or a late arrival its proposer gave up on (false). Pure
    /// function of the table and the envelope, so every replica agrees.
    pub(crate) fn admit(&mut self, envelope: &Envelope) -> bool {
        if !self.sessions.contains_key(&envelope.session)
            && self.sessions.len() >= self.sessions_max
        {
            self.evict_oldest();
        }
        let session = self.sessions.entry(envelope.session).or_default();
        session.touched_ms = self.time_ms;
        if envelope.low_mark > session.low_mark {
            session.low_mark = envelope.low_mark;
            session.applied = session.applied.split_off(&envelope.low_mark);
        }
        if envelope.seq < session.low_mark || !session.applied.insert(envelope.seq) {
            return false;
        }
        if session.applied.len() > APPLIED_PER_SESSION_MAX {
            if let Some(&first) = session.applied.iter().next() {
                session.applied.remove(&first);
                session.low_mark = first + 1;
            }
        }
        true
    }

    /// Forgets the session touched longest ago (ties: the smallest id), so the
    /// table stays bounded. A command of an evicted session that is still
    /// retried could take effect twice; sessions live per node process, so
    /// only a cluster that saw `sessions_max` node restarts within one
    /// request timeout could see that.
    fn evict_oldest(&mut self) {
        let oldest = self
            .sessions
            .iter()
            .min_by_key(|(id, s)| (s.touched_ms, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.sessions.remove(&id);
        }
    }

    /// The runtime's part of a snapshot, followed by the state machine's.
    pub(crate) fn encode_snapshot(&self, user: &[u8]) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(SNAPSHOT_VERSION);
        buf.put_u64_le(self.time_ms);
        buf.put_u64_le(self.sessions.len() as u64);
        for (id, session) in &self.sessions {
            buf.put_u64_le(*id);
            buf.put_u64_le(session.low_mark);
            buf.put_u64_le(session.touched_ms);
            buf.put_u64_le(session.applied.len() as u64);
            for seq in &session.applied {
                buf.put_u64_le(*seq);
            }
        }
        buf.put_slice(user);
        buf.freeze()
    }

    /// Splits a snapshot into the session table and the state machine's part.
    pub(crate) fn decode_snapshot(
        data: &Bytes,
        sessions_max: usize,
    ) -> Result<(Sessions, Bytes), String> {
        let mut buf = data.clone();
        let truncated = || "snapshot truncated in the session table".to_string();
        if buf.remaining() < 17 {
            return Err(truncated());
        }
        let version = buf.get_u8();
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown runtime snapshot version {version}"));
        }
        let mut table = Sessions::new(sessions_max);
        table.time_ms = buf.get_u64_le();
        let count = buf.get_u64_le();
        for _ in 0..count {
            if buf.remaining() < 32 {
                return Err(truncated());
            }
            let id = buf.get_u64_le();
            let low_mark = buf.get_u64_le();
            let touched_ms = buf.get_u64_le();
            let applied_len = buf.get_u64_le();
            if applied_len > (buf.remaining() / 8) as u64 {
                return Err(truncated());
            }
            let mut applied = BTreeSet::new();
            for _ in 0..applied_len {
                applied.insert(buf.get_u64_le());
            }
            table.sessions.insert(
                id,
                Session {
                    low_mark,
                    applied,
                    touched_ms,
                },
            );
        }
        Ok((table, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(session: u64, seq: u64, low_mark: u64) -> Envelope {
        Envelope {
            kind: Kind::Command,
            session,
            seq,
            low_mark,
            time_ms: 5,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn envelope_round_trip_and_garbage() {
        let env = command(7, 9, 3);
        assert_eq!(Envelope::decode(&env.encode()), Some(env));
        assert_eq!(
            Envelope::decode(&Bytes::from_static(b"\x01\x01short")),
            None
        );
        let mut bad = env_bytes();
        bad[1] = 9;
        assert_eq!(Envelope::decode(&Bytes::from(bad)), None);
    }

    fn env_bytes() -> Vec<u8> {
        command(1, 1, 0).encode().to_vec()
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut table = Sessions::new(10);
        assert!(table.admit(&command(1, 2, 1)));
        assert!(table.admit(&command(1, 1, 1)), "out of order still applies");
        assert!(!table.admit(&command(1, 2, 1)), "duplicate");
        assert!(!table.admit(&command(1, 1, 1)), "duplicate");
        // The proposer is done with everything below 3: a late copy of 2 is
        // ignored and the table forgets 1 and 2.
        assert!(table.admit(&command(1, 3, 3)));
        assert!(!table.admit(&command(1, 2, 1)));
        assert_eq!(table.sessions[&1].applied.len(), 1);
        assert!(table.admit(&command(2, 1, 1)), "sessions are independent");
    }

    #[test]
    fn eviction_keeps_the_table_bounded() {
        let mut table = Sessions::new(2);
        for session in 0..5 {
            let mut env = command(session, 1, 1);
            env.time_ms = session;
            table.clock(&env);
            assert!(table.admit(&env));
        }
        assert_eq!(table.sessions.len(), 2);
        assert!(table.sessions.contains_key(&4));
    }

    #[test]
    fn snapshot_round_trip_and_truncation() {
        let mut table = Sessions::new(10);
        table.admit(&command(1, 4, 2));
        table.admit(&command(3, 1, 0));
        table.time_ms = 99;
        let data = table.encode_snapshot(b"user");
        let (back, user) = Sessions::decode_snapshot(&data, 10).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(&user[..], b"user");
        for cut in 0..data.len() - 4 {
            let short = data.slice(..cut);
            assert!(Sessions::decode_snapshot(&short, 10).is_err(), "cut {cut}");
        }
    }
}
