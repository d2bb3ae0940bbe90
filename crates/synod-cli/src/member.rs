//! `synod member list|add|remove|promote` and `synod leader transfer`: the
//! operator's side of `SYNOD.MEMBER` / `SYNOD.LEADER` (see
//! `synod_kv::members` for the replies).

use crate::admin_client::{block_on, text, AdminConn, ClientAuthArgs};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use synod_resp::Reply;

/// How long a change refused for a passing reason is retried:
/// - "another membership change is in progress": a change takes effect α
///   instances after it is chosen, and the leader fills those with no-ops at
///   once;
/// - "not the leader": the node asked knows no leader (an election is under
///   way), or the node it forwarded to has just stepped down, or leadership
///   is being handed over. An election takes one or two election timeouts.
///
/// Both refusals mean that nothing was proposed (`MemberError::Refused`), so
/// asking again cannot make the change twice. The wait is short unless the
/// cluster is stuck.
const REFUSED_FOR_NOW_RETRY: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// One line per member: id, paxos address, resp address, role (voter,
    /// learner, leader), applied index, lag behind the leader.
    ///
    /// Lags are known only to the leader: when the node asked does not lead,
    /// the leader is asked too (at its RESP address if the membership knows
    /// it, else at the other --cluster addresses).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Adds a member as a learner; the leader promotes it to voter once it
    /// has caught up, unless --learner. Then start it with `synod server
    /// --join` (which does this step itself when the id is not a member yet).
    Add {
        #[command(flatten)]
        target: Target,
        /// The new member's id (never used in this cluster before).
        #[arg(long)]
        id: u32,
        /// Its Paxos (peer) address: IP:PORT.
        #[arg(long)]
        paxos: String,
        /// Its RESP address, shown in `member list` (HOST:PORT).
        #[arg(long)]
        resp: Option<String>,
        /// Keep it a non-voting learner (promote it later with `member
        /// promote`).
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member for good: its id is never admitted again, and the
    /// node stops when it learns it was removed. Removing the leader hands
    /// leadership over first.
    Remove {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: u32,
        /// Remove a voter even when the voters left that the leader hears
        /// would be fewer than a quorum.
        #[arg(long)]
        force: bool,
    },
    /// Makes a learner a voter.
    Promote {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: u32,
        /// Promote it even though it is far behind the leader.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct LeaderArgs {
    #[command(subcommand)]
    command: LeaderCommand,
}

#[derive(Subcommand, Debug)]
enum LeaderCommand {
    /// Hands leadership to voter --to: the leader waits until it has the
    /// whole log, then tells it to campaign. Returns once it leads.
    Transfer {
        #[command(flatten)]
        target: Target,
        /// The voter to hand leadership to.
        #[arg(long)]
        to: u32,
    },
}

/// Which node to ask, and how to authenticate.
#[derive(Args, Debug)]
struct Target {
    /// Any member's RESP address, HOST:PORT (several, comma-separated: the
    /// first reachable one is asked). Any member accepts changes: a
    /// follower forwards them to the leader.
    #[arg(long, value_delimiter = ',', required = true)]
    cluster: Vec<String>,
    #[command(flatten)]
    auth: ClientAuthArgs,
}

impl Target {
    /// A connection to the first reachable --cluster address.
    async fn connect(&self) -> Result<AdminConn, String> {
        let password = self.auth.password()?;
        let mut errors = Vec::new();
        for addr in &self.cluster {
            match AdminConn::connect(addr, &self.auth.user, password.as_deref()).await {
                Ok(conn) => return Ok(conn),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }
}

fn finish(outcome: Result<Result<(), String>, String>) -> ExitCode {
    match outcome.and_then(|r| r) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!(
                "synod: {}",
                message.strip_prefix("ERR ").unwrap_or(&message)
            );
            ExitCode::FAILURE
        }
    }
}

pub fn main(args: MemberArgs) -> ExitCode {
    finish(block_on(async move {
        match args.command {
            MemberCommand::List { target } => list(&target).await,
            MemberCommand::Add {
                target,
                id,
                paxos,
                resp,
                learner,
            } => {
                let id = id.to_string();
                let mut request = vec!["SYNOD.MEMBER", "ADD", &id, &paxos];
                if learner {
                    request.push("LEARNER");
                }
                if let Some(resp) = &resp {
                    request.extend(["RESP", resp]);
                }
                change(&target, &request).await?;
                println!(
                    "node {id} added as a learner{}",
                    if learner {
                        ""
                    } else {
                        " (promoted to voter once caught up)"
                    }
                );
                Ok(())
            }
            MemberCommand::Remove { target, id, force } => {
                let id = id.to_string();
                let mut request = vec!["SYNOD.MEMBER", "REMOVE", &id];
                if force {
                    request.push("FORCE");
                }
                change(&target, &request).await?;
                println!("node {id} removed");
                Ok(())
            }
            MemberCommand::Promote { target, id, force } => {
                let id = id.to_string();
                let mut request = vec!["SYNOD.MEMBER", "PROMOTE", &id];
                if force {
                    request.push("FORCE");
                }
                change(&target, &request).await?;
                println!("node {id} is a voter");
                Ok(())
            }
        }
    }))
}

pub fn leader_main(args: LeaderArgs) -> ExitCode {
    finish(block_on(async move {
        match args.command {
            LeaderCommand::Transfer { target, to } => {
                let to = to.to_string();
                change(&target, &["SYNOD.LEADER", "TRANSFER", &to]).await?;
                println!("node {to} leads");
                Ok(())
            }
        }
    }))
}

/// Sends a change, retrying (bounded) while it is refused for now.
async fn change(target: &Target, request: &[&str]) -> Result<(), String> {
    let mut conn = target.connect().await?;
    retry_refused_for_now(&mut conn, request).await
}

/// Whether a refusal passes by itself: another membership change has not
/// taken effect yet, or no leader could take the request.
fn refused_for_now(error: &str) -> bool {
    error.contains("another membership change is in progress") || error.contains("not the leader")
}

/// Sends `request` and retries it while it is refused for now
/// ([`refused_for_now`]), for at most [`REFUSED_FOR_NOW_RETRY`].
pub async fn retry_refused_for_now(conn: &mut AdminConn, request: &[&str]) -> Result<(), String> {
    let deadline = Instant::now() + REFUSED_FOR_NOW_RETRY;
    loop {
        match conn.call_ok(request).await {
            Err(e) if refused_for_now(&e) => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// One row of `SYNOD.MEMBER LIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub paxos: String,
    pub resp: String,
    pub role: String,
    pub applied: String,
    pub lag: String,
}

/// Parses `SYNOD.MEMBER LIST`'s reply.
pub fn parse_list(reply: &Reply) -> Result<Vec<Row>, String> {
    let rows = match reply {
        Reply::Array(rows) => rows,
        Reply::Error(e) => return Err(e.clone()),
        other => return Err(format!("unexpected reply to SYNOD.MEMBER LIST: {other:?}")),
    };
    rows.iter()
        .map(|row| {
            let fields: Vec<String> = match row {
                Reply::Array(fields) => fields.iter().filter_map(text).collect(),
                _ => Vec::new(),
            };
            match fields.as_slice() {
                [id, paxos, resp, role, applied, lag] => Ok(Row {
                    id: id.clone(),
                    paxos: paxos.clone(),
                    resp: resp.clone(),
                    role: role.clone(),
                    applied: applied.clone(),
                    lag: lag.clone(),
                }),
                _ => Err(format!("unexpected member entry: {row:?}")),
            }
        })
        .collect()
}

/// Whether a list came from the leader: only the leader knows its own lag
/// (0); a follower's answer has none.
fn from_leader(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.role == "leader" && r.lag != "-")
}

async fn list(target: &Target) -> Result<(), String> {
    let mut conn = target.connect().await?;
    let mut rows = parse_list(&conn.call(&["SYNOD.MEMBER", "LIST"]).await?)?;
    if !from_leader(&rows) {
        // Ask the leader for complete lags: at its advertised RESP address,
        // else at the other addresses given.
        let leader_resp = rows
            .iter()
            .find(|r| r.role == "leader" && r.resp != "-")
            .map(|r| r.resp.clone());
        let others = target.cluster.iter().filter(|a| *a != conn.addr()).cloned();
        let password = target.auth.password()?;
        for addr in leader_resp.into_iter().chain(others) {
            let Ok(mut leader) =
                AdminConn::connect(&addr, &target.auth.user, password.as_deref()).await
            else {
                continue;
            };
            let Ok(Ok(better)) = leader
                .call(&["SYNOD.MEMBER", "LIST"])
                .await
                .map(|r| parse_list(&r))
            else {
                continue;
            };
            if from_leader(&better) {
                rows = better;
                break;
            }
        }
    }
    print!("{}", format_rows(&rows));
    Ok(())
}

/// What `member list` prints: exactly one line per member, its six fields
/// separated by spaces and aligned in columns (no header, so scripts can
/// read it with `while read id paxos resp role applied lag`).
pub fn format_rows(rows: &[Row]) -> String {
    let all: Vec<&Row> = rows.iter().collect();
    let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).len()).max().unwrap_or(0);
    let widths = [
        width(|r| &r.id),
        width(|r| &r.paxos),
        width(|r| &r.resp),
        width(|r| &r.role),
        width(|r| &r.applied),
    ];
    let mut out = String::new();
    for r in all {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}\n",
            r.id,
            r.paxos,
            r.resp,
            r.role,
            r.applied,
            r.lag,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(bytes::Bytes::from(s.to_string()))
    }

    #[test]
    fn a_list_parses_and_prints_aligned() {
        let reply = Reply::Array(vec![
            Reply::Array(
                [
                    "1",
                    "127.0.0.1:7101",
                    "127.0.0.1:7001",
                    "leader",
                    "120",
                    "0",
                ]
                .map(bulk)
                .to_vec(),
            ),
            Reply::Array(
                ["4", "127.0.0.1:7104", "-", "learner", "7", "113"]
                    .map(bulk)
                    .to_vec(),
            ),
        ]);
        let rows = parse_list(&reply).unwrap();
        assert!(from_leader(&rows));
        assert_eq!(
            format_rows(&rows),
            "1  127.0.0.1:7101  127.0.0.1:7001  leader   120  0\n\
             4  127.0.0.1:7104  -               learner  7    113\n"
        );
        assert!(parse_list(&Reply::Error("ERR nope".into())).is_err());
        assert!(parse_list(&Reply::Array(vec![bulk("x")])).is_err());
    }

    #[test]
    fn refusals_that_pass_are_retried_and_the_others_are_not() {
        use synod_core::{ChangeError, NodeId};
        // The texts the server sends (`ERR ` and the core's refusal).
        let text = |e: ChangeError| format!("ERR {e}");
        assert!(refused_for_now(&text(ChangeError::NotLeader(None))));
        assert!(refused_for_now(&text(ChangeError::NotLeader(Some(
            NodeId(2)
        )))));
        assert!(refused_for_now(&text(ChangeError::InProgress(3, 0))));
        assert!(refused_for_now(&text(ChangeError::InProgress(3, 70))));
        assert!(!refused_for_now(&text(ChangeError::BadTarget(
            NodeId(4),
            "it is not a voter"
        ))));
        assert!(!refused_for_now(&text(ChangeError::NoQuorum {
            id: NodeId(2),
            reachable: 1,
            quorum: 2
        })));
        assert!(!refused_for_now(
            "no answer within 5s: the change may or may not take effect; check with member list"
        ));
    }
}
