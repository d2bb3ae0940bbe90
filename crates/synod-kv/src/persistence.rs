//! `SAVE`, `BGSAVE`, `LASTSAVE` and `SHUTDOWN`: this node's snapshots and
//! its process, over RESP.
//!
//! Node-level commands, not replicated ones: a snapshot is node-local (each
//! replica checkpoints its own state; the state is the same at the same
//! point of the log), so `SAVE` snapshots the node the client reached,
//! through [`synod::Node::snapshot_now`]. Every acknowledged write is
//! already durable in a majority's log before its reply; a snapshot only
//! shortens this node's log and its restart.
//!
//! - `SAVE`: `+OK` once the snapshot of everything this node applied is on
//!   disk (written, synced, and the log checkpointed to it).
//! - `BGSAVE [SCHEDULE]`: `+Background saving started`, the snapshot taken
//!   asynchronously; while one is in progress, `-ERR Background save
//!   already in progress`, or with `SCHEDULE` `+Background saving
//!   scheduled` (the request joins the one in progress, as the next
//!   snapshot covers it).
//! - `LASTSAVE`: the Unix time (seconds) of the last snapshot this node
//!   completed (its start time before the first, as in Redis).
//! - `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: with `SAVE`, a
//!   snapshot first (a failure refuses the shutdown unless `FORCE`); then the
//!   process that owns the server ([`ShutdownSignal`], the `synod server`
//!   command) stops the node cleanly, a leader handing leadership over
//!   first, and exits with status 0. Like Redis, no reply on success: the
//!   connection closes. `NOW` and `FORCE` are accepted (there is no replica
//!   lag to wait for: the log is already on a majority). `ABORT` answers
//!   `-ERR No shutdown in progress.`: a shutdown here starts at once.
//!
//! All four are `@admin @dangerous` for the ACL (`acl_categories`), like
//! Redis.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use synod_resp::Reply;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::server::Shared;

/// A parsed persistence request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PersistCommand {
    Save,
    BgSave { schedule: bool },
    LastSave,
    Shutdown { save: bool, force: bool },
    ShutdownAbort,
}

/// Rows of the `COMMAND` table: (name, arity, flags, summary).
pub(crate) const COMMAND_ROWS: &[(&str, i64, &[&str], &str)] = &[
    (
        "save",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        "Snapshots this node's state now; answers once it is on disk.",
    ),
    (
        "bgsave",
        -1,
        &["admin", "noscript", "no_async_loading"],
        "Snapshots this node's state in the background.",
    ),
    (
        "lastsave",
        1,
        &["loading", "stale", "fast"],
        "Unix time of this node's last completed snapshot.",
    ),
    (
        "shutdown",
        -1,
        &[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "allow_busy",
        ],
        "Stops this node cleanly (a leader hands over first) and exits.",
    ),
];

/// Whether `name` (lowercase) is one of the commands handled here.
pub(crate) fn is_persist_command(name: &str) -> bool {
    COMMAND_ROWS.iter().any(|(n, ..)| *n == name)
}

fn wrong_args(name: &str) -> Reply {
    crate::parse::wrong_arity(name)
}

/// Parses a request whose name `is_persist_command`.
pub(crate) fn parse(name: &str, args: &[Bytes]) -> Result<PersistCommand, Reply> {
    let options: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    match name {
        "save" if options.is_empty() => Ok(PersistCommand::Save),
        "lastsave" if options.is_empty() => Ok(PersistCommand::LastSave),
        "save" | "lastsave" => Err(wrong_args(name)),
        "bgsave" => match options.as_slice() {
            [] => Ok(PersistCommand::BgSave { schedule: false }),
            [option] if option == "schedule" => Ok(PersistCommand::BgSave { schedule: true }),
            [_] => Err(Reply::error(crate::parse::SYNTAX_ERROR)),
            _ => Err(wrong_args(name)),
        },
        _ => {
            let (mut save, mut no_save, mut force, mut abort, mut now) =
                (false, false, false, false, false);
            for option in &options {
                match option.as_str() {
                    "save" => save = true,
                    "nosave" => no_save = true,
                    "force" => force = true,
                    "abort" => abort = true,
                    "now" => now = true,
                    _ => return Err(Reply::error(crate::parse::SYNTAX_ERROR)),
                }
            }
            if (save && no_save) || (abort && (save || no_save || force || now)) {
                return Err(Reply::error(crate::parse::SYNTAX_ERROR));
            }
            if abort {
                Ok(PersistCommand::ShutdownAbort)
            } else {
                Ok(PersistCommand::Shutdown { save, force })
            }
        }
    }
}

/// Runs a persistence request on this node. A SHUTDOWN that was accepted
/// never answers: the process ends (and with it the connection) first.
pub(crate) async fn run(shared: &Shared, command: PersistCommand, client: &str) -> Reply {
    let node = &shared.node;
    match command {
        PersistCommand::Save => match node.snapshot_now().await {
            Ok(point) => {
                info!(applied_end = point.0, %client, "SAVE: snapshot on disk");
                Reply::ok()
            }
            Err(err) => Reply::error(format!("ERR snapshot failed: {err}")),
        },
        PersistCommand::BgSave { schedule } => {
            if node.status().snapshot_in_progress {
                if !schedule {
                    return Reply::error("ERR Background save already in progress");
                }
                background_snapshot(shared, client);
                Reply::Simple("Background saving scheduled".into())
            } else {
                background_snapshot(shared, client);
                Reply::Simple("Background saving started".into())
            }
        }
        PersistCommand::LastSave => {
            Reply::Integer(i64::try_from(node.status().snapshot_unix_ms / 1000).unwrap_or(i64::MAX))
        }
        PersistCommand::ShutdownAbort => Reply::error("ERR No shutdown in progress."),
        PersistCommand::Shutdown { save, force } => {
            if save {
                if let Err(err) = node.snapshot_now().await {
                    warn!(%client, "SHUTDOWN SAVE: the snapshot failed: {err}");
                    if !force {
                        return Reply::error("ERR Errors trying to SHUTDOWN. Check logs.");
                    }
                }
            }
            if !shared
                .cfg
                .shutdown
                .request(format!("SHUTDOWN from client {client}"))
            {
                return Reply::error(
                    "ERR SHUTDOWN is not available: no process owner listens on this server",
                );
            }
            // The owner stops the node and ends the process; this reply is
            // only ever written if it did not within a minute.
            tokio::time::sleep(SHUTDOWN_REPLY_AFTER).await;
            warn!(%client, "SHUTDOWN asked, but the process is still running");
            Reply::error("ERR Errors trying to SHUTDOWN. Check logs.")
        }
    }
}

/// How long a SHUTDOWN waits for the process to end before it answers that
/// the shutdown failed.
const SHUTDOWN_REPLY_AFTER: Duration = Duration::from_secs(60);

fn background_snapshot(shared: &Shared, client: &str) {
    let node = Arc::clone(&shared.node);
    let client = client.to_string();
    tokio::spawn(async move {
        match node.snapshot_now().await {
            Ok(point) => info!(applied_end = point.0, %client, "BGSAVE: snapshot on disk"),
            Err(err) => warn!(%client, "BGSAVE: the snapshot failed: {err}"),
        }
    });
}

/// How a client's `SHUTDOWN` reaches the process that owns the server:
/// give [`crate::ServerConfig::shutdown`] a clone and wait on
/// `ShutdownSignal::requested`; then stop the node and exit. A server
/// whose owner does not wait refuses SHUTDOWN.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    sender: Arc<watch::Sender<Option<String>>>,
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal {
            sender: Arc::new(watch::channel(None).0),
        }
    }
}

impl ShutdownSignal {
    /// A signal nobody waits on yet.
    pub fn new() -> ShutdownSignal {
        ShutdownSignal::default()
    }

    /// A listener: [`ShutdownListener::requested`] resolves once a client
    /// asked. While one exists, SHUTDOWN is accepted.
    pub fn listen(&self) -> ShutdownListener {
        ShutdownListener {
            receiver: self.sender.subscribe(),
        }
    }

    /// Asks the owner to shut down; `false` when nobody listens.
    pub(crate) fn request(&self, why: String) -> bool {
        if self.sender.receiver_count() == 0 {
            return false;
        }
        self.sender.send_replace(Some(why));
        true
    }
}

/// Waits for a client's SHUTDOWN (see [`ShutdownSignal::listen`]).
#[derive(Debug)]
pub struct ShutdownListener {
    receiver: watch::Receiver<Option<String>>,
}

impl ShutdownListener {
    /// Resolves with a description of who asked (for the log line) once a
    /// client's SHUTDOWN was accepted; never when the signal is dropped.
    pub async fn requested(&mut self) -> String {
        match self.receiver.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split_whitespace()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn parsed(line: &str) -> Result<PersistCommand, Reply> {
        let args = args(line);
        parse(
            &String::from_utf8_lossy(&args[0]).to_ascii_lowercase(),
            &args,
        )
    }

    #[test]
    fn options_parse_as_redis_7() {
        assert_eq!(parsed("SAVE"), Ok(PersistCommand::Save));
        assert!(parsed("SAVE x").is_err());
        assert_eq!(
            parsed("BGSAVE schedule"),
            Ok(PersistCommand::BgSave { schedule: true })
        );
        assert!(parsed("BGSAVE now").is_err());
        assert_eq!(
            parsed("SHUTDOWN"),
            Ok(PersistCommand::Shutdown {
                save: false,
                force: false
            })
        );
        assert_eq!(
            parsed("SHUTDOWN save NOW force"),
            Ok(PersistCommand::Shutdown {
                save: true,
                force: true
            })
        );
        assert!(parsed("SHUTDOWN save nosave").is_err());
        assert!(parsed("SHUTDOWN abort now").is_err());
        assert_eq!(parsed("SHUTDOWN ABORT"), Ok(PersistCommand::ShutdownAbort));
        assert!(parsed("SHUTDOWN later").is_err());
    }

    #[tokio::test]
    async fn a_request_reaches_a_listener_only() {
        let signal = ShutdownSignal::new();
        assert!(!signal.request("nobody".into()));
        let mut listener = signal.listen();
        assert!(signal.request("client 1".into()));
        assert_eq!(listener.requested().await, "client 1");
    }
}
