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

use crate::client_sessions::{ClientSessions, SessionId};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};

/// The envelope of commands and reads: unchanged since the first release.
const ENVELOPE_VERSION: u8 = 1;
/// The envelope of client session registrations and session commands: the
/// version 1 header, then the client session's index and nonce and the
/// command's sequence number in it. Only these two kinds use it, so a log
/// without client sessions is byte for byte what it was; a node of an older
/// release refuses these envelopes (it skips them as undecodable), so every
/// node of a cluster must run this release before a client session is opened.
const ENVELOPE_VERSION_SESSIONS: u8 = 2;
/// Version 3 adds the client session table; versions 2 (outputs and
/// evicted sessions) and 1 are still read.
const SNAPSHOT_VERSION: u8 = 3;
/// What a table without client sessions is written as (see `encode_snapshot`).
const SNAPSHOT_VERSION_NO_CLIENTS: u8 = 2;
/// Set in a snapshot's version byte when the snapshot holds the session
/// table only: the state machine keeps its state on its own disk
/// (`StateMachine::durable_end`), and this checkpoint is good for this
/// node's restart, never for a peer's install.
const STATE_ON_DISK: u8 = 0x80;

/// A user command (applied once, on every replica) or a read (answered only
/// by the node that asked, at its place in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Applied on every replica, once.
    Command = 1,
    /// A read that goes through the log: answered by the node that proposed
    /// it when it applies its instance; never applied.
    Read = 2,
    /// Registers a client session (payload: the nonce and the TTL in ms,
    /// 8 bytes LE each); its output is the new [`SessionId`]'s bytes.
    Register = 3,
    /// A command of a client session ([`Envelope::client`]): applied on every
    /// replica at most once per `(session, seq)`.
    SessionCommand = 4,
}

/// Which client session a [`Kind::SessionCommand`] belongs to, and its
/// sequence number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSeq {
    /// The client session.
    pub session: SessionId,
    /// The command's number in it (from 1).
    pub seq: u64,
}

/// One proposal as it sits in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// A command or a read through the log.
    pub kind: Kind,
    /// The proposing process's session.
    pub session: u64,
    /// The request's number within its session.
    pub seq: u64,
    /// Every sequence number of `session` below this is finished at the proposer.
    pub low_mark: u64,
    /// The proposer's clock, ms since the Unix epoch, capped by its
    /// `StampClock` so that it advances no faster than monotonic time.
    pub time_ms: u64,
    /// For a [`Kind::SessionCommand`]: its client session and sequence
    /// number (`None` for every other kind).
    pub client: Option<ClientSeq>,
    /// The user's bytes.
    pub payload: Bytes,
}

/// Bytes the envelope adds in front of the user's command.
pub(crate) const HEADER_BYTES: usize = 2 + 4 * 8;
/// Bytes a session envelope adds on top of [`HEADER_BYTES`].
pub(crate) const SESSION_HEADER_EXTRA_BYTES: usize = 3 * 8;

impl Envelope {
    /// The bytes proposed to the log.
    pub fn encode(&self) -> Bytes {
        let sessions = matches!(self.kind, Kind::Register | Kind::SessionCommand);
        let extra = if sessions {
            SESSION_HEADER_EXTRA_BYTES
        } else {
            0
        };
        let mut buf = BytesMut::with_capacity(HEADER_BYTES + extra + self.payload.len());
        buf.put_u8(if sessions {
            ENVELOPE_VERSION_SESSIONS
        } else {
            ENVELOPE_VERSION
        });
        buf.put_u8(self.kind as u8);
        buf.put_u64_le(self.session);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.low_mark);
        buf.put_u64_le(self.time_ms);
        if sessions {
            let client = self.client.unwrap_or(ClientSeq {
                session: SessionId::new(0, 0),
                seq: 0,
            });
            buf.put_u64_le(client.session.index());
            buf.put_u64_le(client.session.nonce());
            buf.put_u64_le(client.seq);
        }
        buf.put_slice(&self.payload);
        buf.freeze()
    }

    /// Decodes an envelope; the payload is a zero-copy slice of `bytes`.
    pub fn decode(bytes: &Bytes) -> Option<Envelope> {
        if bytes.len() < HEADER_BYTES {
            return None;
        }
        let kind = match (bytes[0], bytes[1]) {
            (ENVELOPE_VERSION, 1) => Kind::Command,
            (ENVELOPE_VERSION, 2) => Kind::Read,
            (ENVELOPE_VERSION_SESSIONS, 3) => Kind::Register,
            (ENVELOPE_VERSION_SESSIONS, 4) => Kind::SessionCommand,
            _ => return None,
        };
        let header_bytes = match kind {
            Kind::Command | Kind::Read => HEADER_BYTES,
            Kind::Register | Kind::SessionCommand => HEADER_BYTES + SESSION_HEADER_EXTRA_BYTES,
        };
        if bytes.len() < header_bytes {
            return None;
        }
        let mut header = &bytes[2..header_bytes];
        let session = header.get_u64_le();
        let seq = header.get_u64_le();
        let low_mark = header.get_u64_le();
        let time_ms = header.get_u64_le();
        let client = match kind {
            Kind::SessionCommand => Some(ClientSeq {
                session: SessionId::new(header.get_u64_le(), header.get_u64_le()),
                seq: header.get_u64_le(),
            }),
            _ => None,
        };
        Some(Envelope {
            kind,
            session,
            seq,
            low_mark,
            time_ms,
            client,
            payload: bytes.slice(header_bytes..),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    low_mark: u64,
    /// Sequence numbers at or above `low_mark` that took effect, each with
    /// its output when the table kept it (see [`Sessions::record_output`]).
    applied: BTreeMap<u64, Option<Bytes>>,
    /// Bytes of the outputs kept in `applied`.
    output_bytes: usize,
    /// The log time of the session's latest command, for eviction.
    touched_ms: u64,
    /// The session was evicted and started again: a sequence number it does
    /// not list may have taken effect before the eviction.
    restarted: bool,
}

/// The replicated part of the runtime's state: sessions and the log clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    sessions: BTreeMap<u64, Session>,
    /// The largest `time_ms` of any envelope applied so far.
    pub time_ms: u64,
    sessions_max: usize,
    /// The sessions evicted most recently, oldest first (at most
    /// `EVICTED_REMEMBERED_MAX`), so a proposer can be told that the table
    /// forgot its session rather than that nothing happened.
    evicted: VecDeque<u64>,
    /// Bytes of every output kept, all sessions together.
    output_bytes: usize,
    /// The library users' client sessions (`client_sessions.rs`).
    pub(crate) clients: ClientSessions,
}

/// Applied sequence numbers one session may hold above its low mark: a bound
/// on memory that a well-behaved proposer (bounded in-flight proposals) never
/// reaches. Past it the oldest are forgotten, which can only make a very late
/// duplicate take effect again; the runtime bounds in-flight proposals far
/// below this.
const APPLIED_PER_SESSION_MAX: usize = 1 << 20;

/// Output bytes the table keeps per session, and in all. An output is kept
/// (for a proposer that learns of its command only from a snapshot) while
/// both totals stay within these; past them the table still records that the
/// command took effect. Outputs are dropped as the proposer's low mark passes
/// them, so in steady state a session keeps the outputs of its requests in
/// flight only.
const OUTPUT_BYTES_PER_SESSION_MAX: usize = 1 << 20;
const OUTPUT_BYTES_MAX: usize = 64 << 20;

/// Evicted session ids remembered (8 bytes each in every snapshot).
const EVICTED_REMEMBERED_MAX: usize = 1024;

/// What the session table says about one proposal of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not taken effect as far as the table knows: it may still.
    Pending,
    /// Took effect, with the output it had (`None`: too large to keep).
    Applied(Option<Bytes>),
    /// The table cannot tell any more, for this reason.
    Unknown(&'static str),
}

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
    /// After applying an admitted command, pass its output to
    /// [`Sessions::record_output`].
    pub(crate) fn admit(&mut self, envelope: &Envelope) -> bool {
        if !self.sessions.contains_key(&envelope.session) {
            if self.sessions.len() >= self.sessions_max {
                self.evict_oldest();
            }
            let restarted = self.evicted.contains(&envelope.session);
            self.sessions.insert(
                envelope.session,
                Session {
                    restarted,
                    ..Session::default()
                },
            );
        }
        let Some(session) = self.sessions.get_mut(&envelope.session) else {
            return false;
        };
        session.touched_ms = self.time_ms;
        if envelope.low_mark > session.low_mark {
            session.low_mark = envelope.low_mark;
            let kept = session.applied.split_off(&envelope.low_mark);
            let forgotten = std::mem::replace(&mut session.applied, kept);
            let freed: usize = forgotten.values().flatten().map(Bytes::len).sum();
            session.output_bytes -= freed;
            self.output_bytes -= freed;
        }
        if envelope.seq < session.low_mark || session.applied.contains_key(&envelope.seq) {
            return false;
        }
        session.applied.insert(envelope.seq, None);
        if session.applied.len() > APPLIED_PER_SESSION_MAX {
            if let Some((first, output)) = session.applied.pop_first() {
                let freed = output.map_or(0, |o| o.len());
                session.output_bytes -= freed;
                self.output_bytes -= freed;
                session.low_mark = first + 1;
            }
        }
        debug_assert!(session.output_bytes <= OUTPUT_BYTES_PER_SESSION_MAX);
        debug_assert!(self.output_bytes <= OUTPUT_BYTES_MAX);
        true
    }

    /// Keeps the output of a command `admit` just let through, for a
    /// proposer that learns of the command only from a snapshot (it lagged
    /// while the command was chosen). Within the byte limits only; a pure
    /// function of the table and the output, so every replica keeps the same.
    pub(crate) fn record_output(&mut self, envelope: &Envelope, output: &Bytes) {
        let Some(session) = self.sessions.get_mut(&envelope.session) else {
            return;
        };
        let Some(slot) = session.applied.get_mut(&envelope.seq) else {
            return;
        };
        debug_assert!(slot.is_none(), "an output is recorded once");
        if slot.is_some()
            || session.output_bytes + output.len() > OUTPUT_BYTES_PER_SESSION_MAX
            || self.output_bytes + output.len() > OUTPUT_BYTES_MAX
        {
            return;
        }
        *slot = Some(output.clone());
        session.output_bytes += output.len();
        self.output_bytes += output.len();
    }

    /// What the table says about proposal `seq` of `session`.
    pub(crate) fn outcome(&self, session: u64, seq: u64) -> Outcome {
        let Some(entry) = self.sessions.get(&session) else {
            if self.evicted.contains(&session) {
                return Outcome::Unknown(
                    "the session table evicted this node's session (more sessions than \
                     sessions_max were active)",
                );
            }
            // Nothing of the session took effect yet.
            return Outcome::Pending;
        };
        match entry.applied.get(&seq) {
            Some(output) => Outcome::Applied(output.clone()),
            None if seq < entry.low_mark => Outcome::Unknown(
                "the session table forgot the request (superseded by later requests of this node)",
            ),
            None if entry.restarted => Outcome::Unknown(
                "the session table evicted this node's session, and what took effect before is forgotten",
            ),
            None => Outcome::Pending,
        }
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
            if let Some(session) = self.sessions.remove(&id) {
                self.output_bytes -= session.output_bytes;
            }
            self.evicted.retain(|e| *e != id);
            self.evicted.push_back(id);
            if self.evicted.len() > EVICTED_REMEMBERED_MAX {
                self.evicted.pop_front();
            }
        }
    }

    /// The runtime's part of a snapshot, followed by the state machine's.
    pub(crate) fn encode_snapshot(&self, user: &[u8]) -> Bytes {
        self.encode(Some(user))
    }

    /// The runtime's part of a checkpoint of a state machine that keeps its
    /// state on its own disk: the session table alone, marked so that no
    /// one takes it for a whole snapshot.
    pub(crate) fn encode_checkpoint_state_on_disk(&self) -> Bytes {
        self.encode(None)
    }

    fn encode(&self, user: Option<&[u8]>) -> Bytes {
        let mut buf = BytesMut::new();
        // A cluster that never opened a client session writes version 2,
        // byte for byte what the previous release wrote and can install
        // (a rolling upgrade keeps working until the first session).
        let with_clients = self.clients != ClientSessions::default();
        let version = if with_clients {
            SNAPSHOT_VERSION
        } else {
            SNAPSHOT_VERSION_NO_CLIENTS
        };
        buf.put_u8(if user.is_some() {
            version
        } else {
            version | STATE_ON_DISK
        });
        buf.put_u64_le(self.time_ms);
        buf.put_u64_le(self.sessions.len() as u64);
        for (id, session) in &self.sessions {
            buf.put_u64_le(*id);
            buf.put_u64_le(session.low_mark);
            buf.put_u64_le(session.touched_ms);
            buf.put_u8(u8::from(session.restarted));
            buf.put_u64_le(session.applied.len() as u64);
            for (seq, output) in &session.applied {
                buf.put_u64_le(*seq);
                match output {
                    None => buf.put_u8(0),
                    Some(output) => {
                        buf.put_u8(1);
                        // At most OUTPUT_BYTES_PER_SESSION_MAX: fits.
                        buf.put_u32_le(output.len() as u32);
                        buf.put_slice(output);
                    }
                }
            }
        }
        buf.put_u64_le(self.evicted.len() as u64);
        for id in &self.evicted {
            buf.put_u64_le(*id);
        }
        if with_clients {
            self.clients.encode(&mut buf);
        }
        if let Some(user) = user {
            buf.put_slice(user);
        }
        buf.freeze()
    }

    /// Whether a snapshot holds the state machine's state (else it is a
    /// checkpoint of a state machine that keeps its state on its own disk,
    /// which a peer cannot install).
    pub(crate) fn snapshot_holds_state(data: &[u8]) -> bool {
        data.first()
            .is_none_or(|version| version & STATE_ON_DISK == 0)
    }

    /// Splits a snapshot into the session table and the state machine's part
    /// (`None` for a checkpoint whose state is on the state machine's own
    /// disk). Reads this version, version 2 (no client sessions) and version
    /// 1 (no outputs, no evicted sessions either).
    pub(crate) fn decode_snapshot(
        data: &Bytes,
        sessions_max: usize,
    ) -> Result<(Sessions, Option<Bytes>), String> {
        let mut buf = data.clone();
        let truncated = || "snapshot truncated in the session table".to_string();
        if buf.remaining() < 17 {
            return Err(truncated());
        }
        let mut version = buf.get_u8();
        let state_on_disk = version & STATE_ON_DISK != 0;
        version &= !STATE_ON_DISK;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(format!("unknown runtime snapshot version {version}"));
        }
        let mut table = Sessions::new(sessions_max);
        table.time_ms = buf.get_u64_le();
        let count = buf.get_u64_le();
        for _ in 0..count {
            if buf.remaining() < 32 + usize::from(version >= 2) {
                return Err(truncated());
            }
            let id = buf.get_u64_le();
            let mut session = Session {
                low_mark: buf.get_u64_le(),
                touched_ms: buf.get_u64_le(),
                ..Session::default()
            };
            if version >= 2 {
                session.restarted = match buf.get_u8() {
                    0 => false,
                    1 => true,
                    other => return Err(format!("bad session flag {other}")),
                };
            }
            let applied_len = buf.get_u64_le();
            let entry_bytes_min = if version >= 2 { 9 } else { 8 };
            if applied_len > (buf.remaining() / entry_bytes_min) as u64 {
                return Err(truncated());
            }
            for _ in 0..applied_len {
                if buf.remaining() < entry_bytes_min {
                    return Err(truncated());
                }
                let seq = buf.get_u64_le();
                let kept = version >= 2
                    && match buf.get_u8() {
                        0 => false,
                        1 => true,
                        other => return Err(format!("bad output flag {other}")),
                    };
                let output = if kept {
                    if buf.remaining() < 4 {
                        return Err(truncated());
                    }
                    let len = buf.get_u32_le() as usize;
                    if buf.remaining() < len {
                        return Err(truncated());
                    }
                    // A copy: a slice would keep the whole snapshot alive.
                    let output = Bytes::copy_from_slice(&buf[..len]);
                    buf.advance(len);
                    session.output_bytes += len;
                    Some(output)
                } else {
                    None
                };
                session.applied.insert(seq, output);
            }
            table.output_bytes += session.output_bytes;
            table.sessions.insert(id, session);
        }
        if version >= 2 {
            if buf.remaining() < 8 {
                return Err(truncated());
            }
            let evicted = buf.get_u64_le();
            if evicted > (buf.remaining() / 8) as u64 {
                return Err(truncated());
            }
            for _ in 0..evicted {
                table.evicted.push_back(buf.get_u64_le());
            }
            while table.evicted.len() > EVICTED_REMEMBERED_MAX {
                table.evicted.pop_front();
            }
        }
        if version >= 3 {
            table.clients = ClientSessions::decode(&mut buf)?;
        }
        if state_on_disk {
            if buf.has_remaining() {
                return Err(format!(
                    "{} bytes after the session table of a checkpoint that holds none",
                    buf.remaining()
                ));
            }
            return Ok((table, None));
        }
        Ok((table, Some(buf)))
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
            client: None,
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

    /// Session envelopes use version 2; the others stay byte for byte as
    /// the first release wrote them (version 1), and a version 1 envelope
    /// never decodes as a session kind.
    #[test]
    fn session_envelopes_round_trip_and_old_ones_are_unchanged() {
        let mut env = command(7, 9, 3);
        env.kind = Kind::SessionCommand;
        env.client = Some(ClientSeq {
            session: SessionId::new(4, 0xabc),
            seq: 12,
        });
        let bytes = env.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes.len(), HEADER_BYTES + SESSION_HEADER_EXTRA_BYTES + 1);
        assert_eq!(Envelope::decode(&bytes), Some(env.clone()));
        for cut in 0..bytes.len() - 1 {
            assert_eq!(Envelope::decode(&bytes.slice(..cut)), None, "cut {cut}");
        }
        let mut v1_kind_4 = command(7, 9, 3).encode().to_vec();
        v1_kind_4[1] = 4;
        assert_eq!(Envelope::decode(&Bytes::from(v1_kind_4)), None);
        let plain = command(7, 9, 3).encode();
        assert_eq!(plain[0], 1);
        assert_eq!(plain.len(), HEADER_BYTES + 1);
        let mut register = command(1, 2, 1);
        register.kind = Kind::Register;
        assert_eq!(Envelope::decode(&register.encode()), Some(register));
    }

    /// Snapshots written before client sessions (version 2) still restore,
    /// with an empty client table, and a table that never held a client
    /// session is still written as version 2 (a node of the previous release
    /// can install it); the client table round-trips in version 3.
    #[test]
    fn version_2_snapshots_still_decode_and_clients_round_trip() {
        let mut table = Sessions::new(10);
        table.admit(&command(1, 4, 2));
        let v2 = table.encode_snapshot(b"user");
        assert_eq!(v2[0], 2);
        let (back, user) = Sessions::decode_snapshot(&v2, 10).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(&user.expect("holds state")[..], b"user");
        let id = table.clients.register(9, 100, 0);
        table.clients.check(id, 1, 0);
        table
            .clients
            .record_output(id, 1, &Bytes::from_static(b"out"));
        let data = table.encode_snapshot(b"user");
        assert_eq!(data[0], 3);
        let (back, user) = Sessions::decode_snapshot(&data, 10).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(&user.expect("holds state")[..], b"user");
        for cut in 0..data.len() - 4 {
            assert!(
                Sessions::decode_snapshot(&data.slice(..cut), 10).is_err(),
                "cut {cut}"
            );
        }
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
        assert_eq!(&user.expect("holds state")[..], b"user");
        for cut in 0..data.len() - 4 {
            let short = data.slice(..cut);
            assert!(Sessions::decode_snapshot(&short, 10).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn a_checkpoint_with_the_state_on_disk_holds_the_table_alone() {
        let mut table = Sessions::new(10);
        table.admit(&command(1, 4, 2));
        table.time_ms = 99;
        let data = table.encode_checkpoint_state_on_disk();
        assert!(!Sessions::snapshot_holds_state(&data));
        assert!(Sessions::snapshot_holds_state(&table.encode_snapshot(b"")));
        let (back, user) = Sessions::decode_snapshot(&data, 10).expect("decodes");
        assert_eq!(back, table);
        assert!(user.is_none());
        // Bytes after the table of such a checkpoint are corruption.
        let mut longer = BytesMut::from(&data[..]);
        longer.put_slice(b"x");
        assert!(Sessions::decode_snapshot(&longer.freeze(), 10).is_err());
    }

    fn apply(table: &mut Sessions, env: &Envelope, output: &'static [u8]) -> bool {
        table.clock(env);
        let admitted = table.admit(env);
        if admitted {
            table.record_output(env, &Bytes::from_static(output));
        }
        admitted
    }

    #[test]
    fn outputs_are_kept_until_the_low_mark_passes_them() {
        let mut table = Sessions::new(10);
        assert_eq!(table.outcome(1, 1), Outcome::Pending, "nothing applied yet");
        assert!(apply(&mut table, &command(1, 1, 1), b"one"));
        assert!(apply(&mut table, &command(1, 2, 1), b"two"));
        assert_eq!(
            table.outcome(1, 1),
            Outcome::Applied(Some(Bytes::from_static(b"one")))
        );
        assert_eq!(table.outcome(1, 3), Outcome::Pending);
        assert_eq!(table.output_bytes, 6);
        // The proposer finished 1 and 2.
        assert!(apply(&mut table, &command(1, 3, 3), b"three"));
        assert!(matches!(table.outcome(1, 2), Outcome::Unknown(_)));
        assert_eq!(table.output_bytes, 5);
        assert_eq!(table.sessions[&1].output_bytes, 5);
    }

    #[test]
    fn outputs_past_the_limit_are_not_kept_but_still_applied() {
        let mut table = Sessions::new(10);
        let big = Bytes::from(vec![7u8; OUTPUT_BYTES_PER_SESSION_MAX]);
        let first = command(1, 1, 1);
        table.clock(&first);
        assert!(table.admit(&first));
        table.record_output(&first, &big);
        let second = command(1, 2, 1);
        assert!(table.admit(&second));
        table.record_output(&second, &Bytes::from_static(b"x"));
        assert_eq!(table.outcome(1, 1), Outcome::Applied(Some(big)));
        assert_eq!(table.outcome(1, 2), Outcome::Applied(None));
        assert!(!table.admit(&second), "still a duplicate");
    }

    #[test]
    fn an_evicted_session_is_reported_as_unknown() {
        let mut table = Sessions::new(1);
        assert!(apply(&mut table, &command(1, 1, 1), b"a"));
        let mut other = command(2, 1, 1);
        other.time_ms = 10;
        assert!(apply(&mut table, &other, b"b"));
        assert!(!table.sessions.contains_key(&1));
        assert!(matches!(table.outcome(1, 1), Outcome::Unknown(_)));
        assert!(matches!(table.outcome(1, 2), Outcome::Unknown(_)));
        assert_eq!(table.output_bytes, 1);
        // Session 1 comes back: what it lists is known, the rest is not.
        let mut back = command(1, 5, 1);
        back.time_ms = 20;
        assert!(apply(&mut table, &back, b"c"));
        assert_eq!(
            table.outcome(1, 5),
            Outcome::Applied(Some(Bytes::from_static(b"c")))
        );
        assert!(matches!(table.outcome(1, 1), Outcome::Unknown(_)));
        assert_eq!(table.outcome(3, 1), Outcome::Pending, "never seen");
    }

    #[test]
    fn snapshot_keeps_outputs_and_evictions() {
        let mut table = Sessions::new(1);
        assert!(apply(&mut table, &command(1, 1, 1), b"a"));
        let mut other = command(2, 1, 1);
        other.time_ms = 10;
        assert!(apply(&mut table, &other, b"out"));
        let data = table.encode_snapshot(b"user");
        let (back, user) = Sessions::decode_snapshot(&data, 1).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(&user.expect("holds state")[..], b"user");
        assert!(matches!(back.outcome(1, 1), Outcome::Unknown(_)));
    }

    /// Snapshots written before outputs were kept still restore: their
    /// commands are known applied, without outputs.
    #[test]
    fn version_1_snapshots_still_decode() {
        let mut buf = BytesMut::new();
        buf.put_u8(1);
        buf.put_u64_le(99); // time
        buf.put_u64_le(1); // sessions
        buf.put_u64_le(7); // id
        buf.put_u64_le(2); // low mark
        buf.put_u64_le(98); // touched
        buf.put_u64_le(1); // applied
        buf.put_u64_le(3);
        buf.put_slice(b"user");
        let (table, user) = Sessions::decode_snapshot(&buf.freeze(), 10).expect("decodes");
        assert_eq!(&user.expect("holds state")[..], b"user");
        assert_eq!(table.time_ms, 99);
        assert_eq!(table.outcome(7, 3), Outcome::Applied(None));
        assert_eq!(table.outcome(7, 4), Outcome::Pending);
    }
}
