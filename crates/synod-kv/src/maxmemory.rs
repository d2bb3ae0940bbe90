//! Setting the replicated `maxmemory` limit from a node's `--maxmemory`
//! flag. The limit is in the log (so every replica enforces the same value
//! from the same point on), which makes the flag of any one node a change
//! for the whole cluster: [`set_maxmemory`] reads the value the log holds
//! first, and proposes only a different one, with a warning naming both.
//! A restart with the same flag proposes nothing. Not atomic: another node
//! may change the value between the read and the proposal; the last
//! proposal chosen wins, as with any two writes.

use crate::{decode_reply, KvCommand};
use synod::{Node, RequestError};
use synod_resp::Reply;
use tracing::{info, warn};

/// What [`set_maxmemory`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxMemoryChange {
    /// The log already held this value: nothing was proposed.
    Unchanged,
    /// The log held `old` and now holds the new value.
    Changed { old: u64 },
}

/// Why [`set_maxmemory`] did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MaxMemoryError {
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("unexpected reply to the memory read: {0:?}")]
    Reply(Reply),
}

/// The `maxmemory` value in the log, as this node reads it (through the
/// log, so it sees every value chosen before the read).
pub async fn read_maxmemory(node: &Node) -> Result<u64, MaxMemoryError> {
    let output = node.read(KvCommand::MemoryInfo.encode()).await?;
    let reply =
        decode_reply(&output).map_err(|e| MaxMemoryError::Reply(Reply::error(e.to_string())))?;
    match &reply {
        Reply::Array(figures) => match figures.as_slice() {
            [_, Reply::Integer(max), ..] => {
                u64::try_from(*max).map_err(|_| MaxMemoryError::Reply(reply.clone()))
            }
            _ => Err(MaxMemoryError::Reply(reply)),
        },
        _ => Err(MaxMemoryError::Reply(reply)),
    }
}

/// Makes the log's `maxmemory` `bytes`: proposes it only when the log
/// holds another value, and then warns with the old and the new one.
pub async fn set_maxmemory(node: &Node, bytes: u64) -> Result<MaxMemoryChange, MaxMemoryError> {
    let old = read_maxmemory(node).await?;
    if old == bytes {
        info!(
            maxmemory = bytes,
            "--maxmemory is the value the log holds already: nothing proposed"
        );
        return Ok(MaxMemoryChange::Unchanged);
    }
    warn!(
        old,
        new = bytes,
        "--maxmemory differs from the cluster's limit in the log: proposing the new value, which every node will enforce"
    );
    node.propose(KvCommand::SetMaxMemory { bytes }.encode())
        .await?;
    info!(maxmemory = bytes, "maxmemory set through the log");
    Ok(MaxMemoryChange::Changed { old })
}
