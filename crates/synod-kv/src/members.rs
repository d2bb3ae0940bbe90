//! `SYNOD.MEMBER` and `SYNOD.LEADER`: membership administration over RESP
//! (the node's API, `synod::Node::add_member` and friends, for `synod member`
//! and redis-cli).
//!
//! These are node-level commands, not replicated ones: nothing here goes in
//! the KV log as a KV command; the membership change itself is chosen by the
//! Paxos core. Like Redis' `CLUSTER` commands that change the topology, every
//! subcommand is `@admin @slow @dangerous` for the ACL (`acl_categories`),
//! and needs AUTH when a password is set.
//!
//! Replies, chosen so that redis-cli shows them readably and `synod member`
//! parses them without guessing:
//! - `SYNOD.MEMBER LIST`: an array with one array per member of six bulk
//!   strings: id, paxos address, resp address (`-` if unknown), role
//!   (`voter`, `learner` or `leader`), applied index (the member's chosen
//!   prefix as the leader last heard it, `-` if unknown), lag behind the
//!   leader in instances (`-` unless this node leads).
//! - `SYNOD.MEMBER JOININFO`: a map (a flat array of pairs in RESP2):
//!   `cluster_id` (16 hex digits), `point` (integer), `schedule` (the encoded
//!   `Schedule` in hex), `members` (an array of `[id, paxos address]`).
//! - `ADD`, `REMOVE`, `PROMOTE`, `SYNOD.LEADER TRANSFER`: `+OK` once done
//!   (chosen and applied on this node; a transfer once the target leads),
//!   else `-ERR <why>`.

use bytes::Bytes;
use std::fmt::Write as _;
use std::net::SocketAddr;
use synod::{MemberAddr, MemberError, MemberRole, MembersView, Node, NodeId};
use synod_resp::Reply;

/// The longest RESP address accepted for a member (it travels in every
/// membership; the core bounds a member's whole address record).
const RESP_ADDR_BYTES_MAX: usize = 255;

/// A parsed `SYNOD.MEMBER` / `SYNOD.LEADER` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemberCommand {
    List,
    JoinInfo,
    Help(&'static str),
    Add {
        id: NodeId,
        paxos: SocketAddr,
        learner: bool,
        resp: Option<String>,
    },
    Remove {
        id: NodeId,
        force: bool,
    },
    Promote {
        id: NodeId,
        force: bool,
    },
    Transfer {
        to: NodeId,
    },
}

/// Whether `name` (lowercase) is one of the commands handled here.
pub(crate) fn is_member_command(name: &str) -> bool {
    name == "synod.member" || name == "synod.leader"
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn node_id(arg: &[u8]) -> Result<NodeId, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .map(NodeId)
        .ok_or_else(|| {
            Reply::error(format!(
                "ERR invalid node id '{}' (a number from 0 to 4294967295)",
                String::from_utf8_lossy(arg)
            ))
        })
}

fn force_flag(args: &[Bytes], name: &str) -> Result<bool, Reply> {
    match args {
        [] => Ok(false),
        [flag] if lower(flag) == "force" => Ok(true),
        [_] => Err(Reply::error("ERR syntax error (expected FORCE)")),
        _ => Err(wrong_args(name)),
    }
}

const MEMBER_HELP: &str = "SYNOD.MEMBER <subcommand> [<arg> ...]. Subcommands are:
LIST
    One entry per member: id, paxos address, resp address, role (voter, learner, leader), applied index, lag behind the leader.
ADD <id> <paxos-ip:port> [LEARNER] [RESP <host:port>]
    Adds a member (a learner; promoted to voter once caught up unless LEARNER).
REMOVE <id> [FORCE]
    Removes a member for good (its id is never admitted again).
PROMOTE <id> [FORCE]
    Makes a learner a voter (refused while it lags, unless FORCE).
JOININFO
    What a joining node needs: cluster id, point, schedule, members.
HELP
    Prints this help.";

const LEADER_HELP: &str = "SYNOD.LEADER <subcommand> [<arg> ...]. Subcommands are:
TRANSFER <id>
    Hands leadership to voter <id>; answers once it leads.
HELP
    Prints this help.";

/// Parses a request whose name `is_member_command`.
pub(crate) fn parse_member(args: &[Bytes]) -> Result<MemberCommand, Reply> {
    let name = args.first().map(|a| lower(a)).unwrap_or_default();
    let Some(sub) = args.get(1).map(|a| lower(a)) else {
        return Err(wrong_args(&name));
    };
    let full = format!("{name}|{sub}");
    let rest = &args[2..];
    match (name.as_str(), sub.as_str()) {
        ("synod.member", "list") if rest.is_empty() => Ok(MemberCommand::List),
        ("synod.member", "joininfo") if rest.is_empty() => Ok(MemberCommand::JoinInfo),
        ("synod.member", "help") if rest.is_empty() => Ok(MemberCommand::Help(MEMBER_HELP)),
        ("synod.member", "add") if rest.len() >= 2 => {
            let id = node_id(&rest[0])?;
            let text = String::from_utf8_lossy(&rest[1]);
            let paxos: SocketAddr = text.parse().map_err(|_| {
                Reply::error(format!(
                    "ERR invalid paxos address '{text}' (an IP address and a port)"
                ))
            })?;
            let mut learner = false;
            let mut resp = None;
            let mut i = 2;
            while i < rest.len() {
                match lower(&rest[i]).as_str() {
                    "learner" => {
                        learner = true;
                        i += 1;
                    }
                    "resp" if i + 1 < rest.len() => {
                        resp = Some(resp_addr(&rest[i + 1])?);
                        i += 2;
                    }
                    _ => {
                        return Err(Reply::error(
                            "ERR syntax error (expected LEARNER or RESP <host:port>)",
                        ))
                    }
                }
            }
            Ok(MemberCommand::Add {
                id,
                paxos,
                learner,
                resp,
            })
        }
        ("synod.member", "remove") if !rest.is_empty() => Ok(MemberCommand::Remove {
            id: node_id(&rest[0])?,
            force: force_flag(&rest[1..], &full)?,
        }),
        ("synod.member", "promote") if !rest.is_empty() => Ok(MemberCommand::Promote {
            id: node_id(&rest[0])?,
            force: force_flag(&rest[1..], &full)?,
        }),
        ("synod.leader", "transfer") if rest.len() == 1 => Ok(MemberCommand::Transfer {
            to: node_id(&rest[0])?,
        }),
        ("synod.leader", "help") if rest.is_empty() => Ok(MemberCommand::Help(LEADER_HELP)),
        ("synod.member", "list" | "joininfo" | "help" | "add" | "remove" | "promote")
        | ("synod.leader", "transfer" | "help") => Err(wrong_args(&full)),
        _ => Err(Reply::error(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            String::from_utf8_lossy(&args[1]),
            name.to_ascii_uppercase()
        ))),
    }
}

/// A member's RESP address: free text (a host name is fine), but one token
/// of printable characters, since the membership stores addresses as
/// `paxos=H:P resp=H:P`.
fn resp_addr(arg: &[u8]) -> Result<String, Reply> {
    let text = String::from_utf8_lossy(arg);
    let printable = arg.iter().all(|b| b.is_ascii_graphic());
    if arg.is_empty() || arg.len() > RESP_ADDR_BYTES_MAX || !printable || !text.contains(':') {
        return Err(Reply::error(format!(
            "ERR invalid resp address '{text}' (HOST:PORT, printable, at most {RESP_ADDR_BYTES_MAX} bytes)"
        )));
    }
    Ok(text.into_owned())
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(text.into()))
}

fn failed(err: &MemberError) -> Reply {
    // One line: the error reply cannot carry a line end.
    Reply::error(format!(
        "ERR {}",
        err.to_string().replace(['\r', '\n'], " ")
    ))
}

fn done(result: Result<(), MemberError>) -> Reply {
    match result {
        Ok(()) => Reply::ok(),
        Err(err) => failed(&err),
    }
}

/// The role word shown for a member.
pub(crate) fn role_word(role: MemberRole, leader: bool) -> &'static str {
    match role {
        MemberRole::Voter if leader => "leader",
        MemberRole::Voter => "voter",
        // A joining member is a learner the leader promotes once caught up.
        _ => "learner",
    }
}

/// Runs a parsed request against the node.
pub(crate) async fn run(node: &Node, command: MemberCommand) -> Reply {
    match command {
        MemberCommand::Help(text) => Reply::Array(text.lines().map(Reply::simple).collect()),
        MemberCommand::List => match node.members().await {
            Ok(view) => list_reply(&view),
            Err(err) => failed(&err),
        },
        MemberCommand::JoinInfo => match node.join_info().await {
            Ok(info) => {
                use synod_core::codec::Encode;
                let members = info
                    .schedule
                    .latest()
                    .members
                    .iter()
                    .map(|m| {
                        let addr = MemberAddr::parse(&m.addr).paxos.or_else(|| {
                            // A founding member of a cluster started before
                            // addresses travelled in memberships.
                            node.config().peers.get(&m.id).copied()
                        });
                        Reply::Array(vec![
                            bulk(m.id.0.to_string()),
                            bulk(addr.map_or_else(|| "-".to_string(), |a| a.to_string())),
                        ])
                    })
                    .collect();
                Reply::Map(vec![
                    (
                        bulk("cluster_id"),
                        bulk(format!("{:016x}", info.cluster_id)),
                    ),
                    (bulk("point"), Reply::Integer(info.point.0 as i64)),
                    (bulk("schedule"), bulk(hex(&info.schedule.to_bytes()))),
                    (bulk("members"), Reply::Array(members)),
                ])
            }
            Err(err) => failed(&err),
        },
        MemberCommand::Add {
            id,
            paxos,
            learner,
            resp,
        } => {
            let addr = MemberAddr {
                paxos: Some(paxos),
                resp,
            };
            done(node.add_member(id, addr, learner).await)
        }
        MemberCommand::Remove { id, force } => done(node.remove_member(id, force).await),
        MemberCommand::Promote { id, force } => done(node.promote(id, force).await),
        MemberCommand::Transfer { to } => done(node.transfer_leader(to).await),
    }
}

fn list_reply(view: &MembersView) -> Reply {
    let rows = view
        .members
        .iter()
        .map(|m| {
            let dash = || "-".to_string();
            Reply::Array(vec![
                bulk(m.id.0.to_string()),
                bulk(m.addr.paxos.map_or_else(dash, |a| a.to_string())),
                bulk(m.addr.resp.clone().unwrap_or_else(dash)),
                bulk(role_word(m.role, m.leader)),
                bulk(m.chosen_end.map_or_else(dash, |e| e.0.to_string())),
                bulk(m.lag.map_or_else(dash, |l| l.to_string())),
            ])
        })
        .collect();
    Reply::Array(rows)
}

/// The membership part of `INFO replication`: the epoch, voters, learners,
/// one line per member, and the pending change if any.
pub(crate) async fn write_info(node: &Node, text: &mut String) {
    let Ok(view) = node.members().await else {
        return;
    };
    let ids = |voter: bool| {
        view.members
            .iter()
            .filter(|m| (m.role == MemberRole::Voter) == voter)
            .map(|m| m.id.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = write!(
        text,
        "membership_epoch:{}\r\nvoters:{}\r\nlearners:{}\r\n",
        view.epoch,
        ids(true),
        ids(false)
    );
    for (i, m) in view.members.iter().enumerate() {
        let _ = write!(
            text,
            "member{i}:id={},role={},paxos={},resp={}\r\n",
            m.id.0,
            role_word(m.role, m.leader),
            m.addr
                .paxos
                .map_or_else(|| "-".to_string(), |a| a.to_string()),
            m.addr.resp.as_deref().unwrap_or("-"),
        );
    }
    match view.pending_from {
        Some(from) => {
            let _ = write!(
                text,
                "membership_pending:epoch {} takes effect at instance {}\r\n",
                view.epoch, from.0
            );
        }
        None => text.push_str("membership_pending:none\r\n"),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split_whitespace()
            .map(|a| Bytes::from(a.to_string()))
            .collect()
    }

    fn error(line: &str) -> String {
        match parse_member(&args(line)) {
            Err(Reply::Error(e)) => e,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_member(&args("SYNOD.MEMBER list")),
            Ok(MemberCommand::List)
        );
        assert_eq!(
            parse_member(&args(
                "synod.member ADD 4 127.0.0.1:7104 learner RESP localhost:7004"
            )),
            Ok(MemberCommand::Add {
                id: NodeId(4),
                paxos: "127.0.0.1:7104".parse().unwrap(),
                learner: true,
                resp: Some("localhost:7004".into()),
            })
        );
        assert_eq!(
            parse_member(&args("synod.member remove 2 FORCE")),
            Ok(MemberCommand::Remove {
                id: NodeId(2),
                force: true
            })
        );
        assert_eq!(
            parse_member(&args("synod.leader transfer 3")),
            Ok(MemberCommand::Transfer { to: NodeId(3) })
        );
    }

    #[test]
    fn refusals_are_redis_style() {
        assert_eq!(
            error("synod.member"),
            "ERR wrong number of arguments for 'synod.member' command"
        );
        assert_eq!(
            error("synod.member bogus"),
            "ERR unknown subcommand 'bogus'. Try SYNOD.MEMBER HELP."
        );
        assert_eq!(
            error("synod.member add 4"),
            "ERR wrong number of arguments for 'synod.member|add' command"
        );
        assert_eq!(
            error("synod.leader transfer"),
            "ERR wrong number of arguments for 'synod.leader|transfer' command"
        );
        assert!(error("synod.member add x 127.0.0.1:1").contains("invalid node id"));
        assert!(error("synod.member add 4 host:1").contains("invalid paxos address"));
        assert!(error("synod.member add 4 127.0.0.1:1 resp").contains("syntax error"));
        assert!(error("synod.member remove 4 gently").contains("syntax error"));
        assert!(error("synod.member add 4 127.0.0.1:1 resp nocolon").contains("resp address"));
    }
}
