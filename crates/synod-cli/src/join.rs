//! `synod server --join`: how a new node becomes a member of a running
//! cluster, and how it restarts afterwards.
//!
//! First start (no `join-schedule` in the data directory):
//! 1. ask a member (`--join`, its RESP address) to add this node:
//!    `SYNOD.MEMBER ADD <id> <paxos> RESP <resp> [LEARNER]`. It is chosen as
//!    a learner, so the cluster's quorum does not change yet;
//! 2. ask for `SYNOD.MEMBER JOININFO` (after the ADD answered, so the
//!    schedule includes this node): the cluster id, the member's applied
//!    point, the memberships from there on;
//! 3. write them to the data directory (`synod::write_join_schedule`,
//!    fsynced) and start the node on an empty directory (`Bootstrap::New`:
//!    it has never voted, so nothing can be forgotten). It learns the log
//!    from the leader and is promoted to voter once caught up (unless
//!    `--learner`).
//!
//! Later starts (the file is there): the node starts from it and its own
//! log without contacting anyone, with the cluster id its identity file
//! holds. A machine that lost its disk has neither file: it must not join
//! again under the same id (it may have voted), so the ADD is refused as a
//! duplicate and the message says what to do.

use crate::admin_client::{text, AdminConn};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use synod::{Bootstrap, MemberAddr, NodeId, Schedule};
use synod_core::codec::Decode;
use synod_resp::Reply;
use tracing::info;

/// What `synod server` needs to start a joining node.
pub struct JoinStart {
    /// The members' peer addresses and this node's.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The cluster's id (`NodeConfig::cluster_id`).
    pub cluster_id: u64,
    /// `New` on the first start, `Existing` afterwards.
    pub bootstrap: Bootstrap,
}

/// What this node asks for, and of whom.
pub struct JoinRequest<'a> {
    pub id: NodeId,
    /// A member's RESP address.
    pub member: &'a str,
    pub paxos: SocketAddr,
    pub resp: String,
    pub learner: bool,
    /// The id was added already (`synod member add`) and this node never
    /// ran: skip the ADD.
    pub already_added: bool,
    pub data_dir: &'a Path,
    /// This server's own password (AUTH to the member with it).
    pub password: Option<&'a str>,
}

/// The answer to `SYNOD.MEMBER JOININFO`.
struct JoinInfo {
    cluster_id: u64,
    point: u64,
    schedule: Schedule,
    members: BTreeMap<NodeId, SocketAddr>,
}

/// Prepares the start of a joining node (see the module's doc).
pub async fn prepare(req: &JoinRequest<'_>) -> Result<JoinStart, String> {
    let dir = req.data_dir;
    let identity = synod_storage::identity::read_identity(dir)
        .map_err(|e| format!("cannot read the identity in {}: {e}", dir.display()))?;
    if let Some((point, schedule)) = synod::read_join_schedule(dir)? {
        let mut peers = peers_of(&schedule, &BTreeMap::new());
        peers.insert(req.id, req.paxos);
        let (cluster_id, bootstrap) = match identity {
            Some(identity) => (identity.cluster_id, Bootstrap::Existing),
            None => {
                // The first start stopped between writing the schedule and
                // the node's identity: it never ran, so it never voted.
                // Only the cluster id is missing; ask for it again.
                let mut conn = connect(req).await?;
                let info = join_info(&mut conn).await?;
                (info.cluster_id, Bootstrap::New)
            }
        };
        info!(
            point = point.0,
            cluster = format!("{cluster_id:016x}"),
            "starting from the join schedule in the data directory"
        );
        return Ok(JoinStart {
            peers,
            cluster_id,
            bootstrap,
        });
    }
    if let Some(identity) = identity {
        return Err(format!(
            "{} holds the data of node {} of cluster {:016x} but no join schedule: it was started as a founding member. Start it with --peers as before (not --join)",
            dir.display(),
            identity.node_id,
            identity.cluster_id
        ));
    }
    let mut conn = connect(req).await?;
    let id = req.id.0.to_string();
    let paxos = req.paxos.to_string();
    let mut add = vec!["SYNOD.MEMBER", "ADD", &id, &paxos, "RESP", &req.resp];
    if req.learner {
        add.push("LEARNER");
    }
    let added = if req.already_added {
        Ok(())
    } else {
        crate::member::retry_refused_for_now(&mut conn, &add).await
    };
    if let Err(why) = added {
        let why = why.strip_prefix("ERR ").unwrap_or(&why).to_string();
        let hint = if why.contains("already a member") {
            format!(
                ". {} has no join schedule, so this node never started under id {id}, or its disk was lost: a node that may have voted must not come back empty under its old id. If this machine lost its disk, remove the old id (`synod member remove --id {id}`) and join under a new --id with an empty --data-dir (or restart it with --rebuild to keep its id). If it was added with `synod member add` and never ran, give --already-added",
                dir.display()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "{} refused to add node {id}: {why}{hint}",
            req.member
        ));
    }
    info!(node = req.id.0, member = req.member, "added to the cluster");
    let info = join_info(&mut conn).await?;
    if !info.schedule.latest().contains(req.id) {
        return Err(format!(
            "{} answered a membership without node {id} (epoch {}): another change may have removed it; check `synod member list`",
            req.member,
            info.schedule.latest().epoch
        ));
    }
    synod::write_join_schedule(dir, synod::InstanceId(info.point), &info.schedule)
        .map_err(|e| format!("cannot write the join schedule to {}: {e}", dir.display()))?;
    let mut peers = peers_of(&info.schedule, &info.members);
    peers.insert(req.id, req.paxos);
    info!(
        point = info.point,
        cluster = format!("{:016x}", info.cluster_id),
        epoch = info.schedule.latest().epoch,
        "joining: wrote the join schedule"
    );
    Ok(JoinStart {
        peers,
        cluster_id: info.cluster_id,
        bootstrap: Bootstrap::New,
    })
}

async fn connect(req: &JoinRequest<'_>) -> Result<AdminConn, String> {
    AdminConn::connect(req.member, "default", req.password)
        .await
        .map_err(|e| format!("cannot join through {}: {e}", req.member))
}

/// Every member's peer address in `schedule`, with `known` for those whose
/// membership entry carries none.
fn peers_of(
    schedule: &Schedule,
    known: &BTreeMap<NodeId, SocketAddr>,
) -> BTreeMap<NodeId, SocketAddr> {
    let mut peers = BTreeMap::new();
    for entry in schedule.entries() {
        for member in &entry.membership.members {
            let addr = MemberAddr::parse(&member.addr)
                .paxos
                .or_else(|| known.get(&member.id).copied());
            if let Some(addr) = addr {
                peers.insert(member.id, addr);
            }
        }
    }
    peers
}

async fn join_info(conn: &mut AdminConn) -> Result<JoinInfo, String> {
    let reply = conn.call(&["SYNOD.MEMBER", "JOININFO"]).await?;
    parse_join_info(&reply).map_err(|e| format!("{}: SYNOD.MEMBER JOININFO: {e}", conn.addr()))
}

/// Reads `SYNOD.MEMBER JOININFO`'s map (a flat array in RESP2).
fn parse_join_info(reply: &Reply) -> Result<JoinInfo, String> {
    let pairs: Vec<(&Reply, &Reply)> = match reply {
        Reply::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Reply::Array(flat) if flat.len().is_multiple_of(2) => {
            flat.chunks(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        Reply::Error(e) => return Err(e.clone()),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("no '{name}' in the answer"))
    };
    let cluster_id = text(field("cluster_id")?)
        .and_then(|t| u64::from_str_radix(&t, 16).ok())
        .ok_or("cluster_id is not hexadecimal")?;
    let point = text(field("point")?)
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or("point is not a number")?;
    let bytes = text(field("schedule")?)
        .and_then(|t| unhex(&t))
        .ok_or("schedule is not hexadecimal")?;
    let schedule = Schedule::from_bytes(Bytes::from(bytes))
        .map_err(|e| format!("the schedule does not decode: {e}"))?;
    let mut members = BTreeMap::new();
    if let Reply::Array(rows) = field("members")? {
        for row in rows {
            if let Reply::Array(fields) = row {
                let id = fields.first().and_then(text).and_then(|t| t.parse().ok());
                let addr = fields.get(1).and_then(text).and_then(|t| t.parse().ok());
                if let (Some(id), Some(addr)) = (id, addr) {
                    members.insert(NodeId(id), addr);
                }
            }
        }
    }
    Ok(JoinInfo {
        cluster_id,
        point,
        schedule,
        members,
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::codec::Encode;

    #[test]
    fn join_info_parses_from_a_flat_array() {
        let schedule = Schedule::new(
            synod::InstanceId(0),
            synod::Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]),
        );
        let hex: String = schedule
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let bulk = |s: &str| Reply::Bulk(Bytes::from(s.to_string()));
        let reply = Reply::Array(vec![
            bulk("cluster_id"),
            bulk("00000000000000ff"),
            bulk("point"),
            Reply::Integer(42),
            bulk("schedule"),
            bulk(&hex),
            bulk("members"),
            Reply::Array(vec![Reply::Array(vec![bulk("1"), bulk("127.0.0.1:7101")])]),
        ]);
        let info = parse_join_info(&reply).unwrap();
        assert_eq!(info.cluster_id, 255);
        assert_eq!(info.point, 42);
        assert_eq!(info.schedule, schedule);
        assert_eq!(
            info.members.get(&NodeId(1)),
            Some(&"127.0.0.1:7101".parse().unwrap())
        );
        assert!(parse_join_info(&Reply::Error("ERR no".into())).is_err());
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0"), None);
    }
}
