//! Client sessions for library users: proposals that take effect exactly
//! once even when retried through another node or after the proposing
//! process restarted.

use crate::client_sessions::SessionId;
use crate::driver::Submit;
use crate::engine::ClientSeq;
use crate::envelope::{Kind, SESSION_HEADER_EXTRA_BYTES};
use crate::node::RequestError;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// A client session: a handle whose proposals each carry
/// `(session id, sequence number)`, checked at apply time against a table
/// that is part of the replicated state (and of every snapshot).
///
/// # Guarantees
/// - **At most once.** Every replica applies a given `(session, seq)` at
///   most once, whichever nodes it was proposed through, however often, and
///   across restarts of the proposer and of the nodes. A proposal whose
///   `seq` is not above the largest the session applied is never applied:
///   the same `seq` again is answered with the output it had (the session
///   keeps its latest output, up to 1 MiB; else
///   [`RequestError::OutputNotKept`]); an older one fails with
///   [`RequestError::SessionSeqTooOld`].
/// - **Exactly once with retries.** A proposal that failed with an unknown
///   outcome ([`RequestError::Timeout`], [`RequestError::Stopped`], ...) may
///   be proposed again with the same `seq` ([`Session::retry`], or
///   [`crate::Node::resume_session`] on any node, in any process) until it
///   is answered: it then took effect exactly once, and the answer is its
///   output. This holds while no later `seq` of the session was applied
///   (propose one command at a time per session) and while the session
///   lives.
/// - **Expiry.** A session unused for its TTL of log time
///   ([`crate::NodeConfig::session_ttl`], default 1 hour) is dropped by
///   every replica at the same point of the log, and so is the session
///   closest to its expiry when a registration finds the table full
///   ([`crate::CLIENT_SESSIONS_MAX`] sessions). Every later proposal on it
///   fails with [`RequestError::SessionExpired`], never applied.
///
/// One proposal at a time per session (`propose` takes `&mut self`): a
/// second handle on the same id that proposes concurrently makes the
/// smaller of two in-flight sequence numbers fail as too old. Use one
/// session per concurrent proposer.
///
/// ```no_run
/// # async fn demo(a: synod::Node, b: synod::Node) -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// let mut session = a.session().await?;
/// // Persist these two before proposing, to retry after a restart.
/// let (id, seq) = (session.id(), session.next_seq());
/// let command = Bytes::from_static(b"deposit 10");
/// match session.propose(command.clone()).await {
///     Ok(output) => println!("applied once: {output:?}"),
///     // Outcome unknown: retry the same seq, here through node `b`.
///     Err(_) => {
///         let mut again = b.resume_session(id, seq);
///         let output = again.propose(command).await?;
///         println!("applied exactly once: {output:?}");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    next_seq: u64,
    submit: mpsc::Sender<Submit>,
    command_bytes_max: usize,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        next_seq: u64,
        submit: mpsc::Sender<Submit>,
        node_command_bytes_max: usize,
    ) -> Session {
        Session {
            id,
            next_seq: next_seq.max(1),
            submit,
            command_bytes_max: node_command_bytes_max.saturating_sub(SESSION_HEADER_EXTRA_BYTES),
        }
    }

    /// The session's id: persist it to resume the session elsewhere.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The sequence number the next [`Session::propose`] uses (from 1).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The largest command a session proposes, in bytes (a node's
    /// [`crate::Node::command_bytes_max`] less the session header).
    pub fn command_bytes_max(&self) -> usize {
        self.command_bytes_max
    }

    /// Proposes `command` under the next sequence number (then advanced,
    /// whatever the outcome) and returns its output once it is chosen and
    /// applied. On an error whose outcome is unknown, retry it with
    /// [`Session::retry`] and the same sequence number (read
    /// [`Session::next_seq`] before proposing).
    pub async fn propose(&mut self, command: Bytes) -> Result<Bytes, RequestError> {
        let seq = self.next_seq;
        self.retry(seq, command).await
    }

    /// Proposes `command` under sequence number `seq`: a retry of a
    /// proposal whose outcome is unknown must pass the same `seq` and the
    /// same command (a `seq` already applied is answered with the output of
    /// the command applied under it, whatever `command` is). Advances
    /// [`Session::next_seq`] past `seq`.
    pub async fn retry(&mut self, seq: u64, command: Bytes) -> Result<Bytes, RequestError> {
        if command.len() > self.command_bytes_max {
            return Err(RequestError::TooLarge {
                bytes: command.len(),
                max: self.command_bytes_max,
            });
        }
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        let client = ClientSeq {
            session: self.id,
            seq,
        };
        submit(&self.submit, Kind::SessionCommand, Some(client), command).await
    }
}

/// Hands a request to the node task and waits for its answer.
pub(crate) async fn submit(
    sender: &mpsc::Sender<Submit>,
    kind: Kind,
    client: Option<ClientSeq>,
    payload: Bytes,
) -> Result<Bytes, RequestError> {
    let (reply, answer) = oneshot::channel();
    let stopped = || RequestError::Stopped("node task ended".into());
    sender
        .send(Submit::Request {
            kind,
            client,
            payload,
            reply,
        })
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}
