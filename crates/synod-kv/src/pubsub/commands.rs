//! The pub/sub commands as the front end sees them: parsing PUBLISH, the
//! channels the ACL checks, and the rows of `COMMAND`.

use bytes::Bytes;
use synod_resp::Reply;

use super::wrong_args;
use crate::command::KvCommand;

/// The channels (and, `true`, the patterns taken literally) that the ACL
/// checks for pub/sub command `name` (lowercase): every channel of
/// (S)SUBSCRIBE, every pattern of PSUBSCRIBE, (S)PUBLISH's channel. The
/// UNSUBSCRIBEs are never refused, as in Redis.
pub(crate) fn channels_checked<'a>(name: &str, args: &'a [Bytes]) -> Vec<(&'a Bytes, bool)> {
    let rest = args.get(1..).unwrap_or_default();
    match name {
        "subscribe" | "ssubscribe" => rest.iter().map(|channel| (channel, false)).collect(),
        "psubscribe" => rest.iter().map(|pattern| (pattern, true)).collect(),
        "publish" | "spublish" => rest
            .iter()
            .take(1)
            .map(|channel| (channel, false))
            .collect(),
        _ => Vec::new(),
    }
}

/// `PUBLISH channel message` / `SPUBLISH shardchannel message`, unstamped.
pub(crate) fn parse_publish(args: &[Bytes]) -> Result<KvCommand, Reply> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let [_, channel, message] = args else {
        return Err(wrong_args(&name));
    };
    Ok(KvCommand::Publish {
        channel: channel.clone(),
        message: message.clone(),
        shard: name == "spublish",
        origin: 0,
        ticket: 0,
    })
}

/// The rows `COMMAND` lists for the pub/sub commands: (name, arity, flags,
/// summary).
pub(crate) const COMMAND_ROWS: &[(&str, i64, &[&str], &str)] = &[
    (
        "publish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        "Posts a message to a channel: through the log, delivered by every node in log order.",
    ),
    (
        "spublish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        "Posts a message to a shard channel (one shard: its own namespace).",
    ),
    (
        "subscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        "Listens for messages published to channels.",
    ),
    (
        "psubscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        "Listens for messages published to channels that match one or more patterns.",
    ),
    (
        "ssubscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        "Listens for messages published to shard channels.",
    ),
    (
        "unsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        "Stops listening to messages posted to channels.",
    ),
    (
        "punsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        "Stops listening to messages published to channels that match one or more patterns.",
    ),
    (
        "sunsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        "Stops listening to messages posted to shard channels.",
    ),
    (
        "pubsub",
        -2,
        &["pubsub", "loading", "stale"],
        "PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB: this node's subscriptions.",
    ),
];
