//! Growing a running cluster from 3 to 5 voters and shrinking it back to 3,
//! with writes going on, all in one process on loopback.
//!
//! ```sh
//! cargo run --release -p synod --example membership
//! ```
//!
//! A new node joins as a learner (`Node::add_member`), fetches the
//! memberships it starts from (`Node::join_info`, kept in its data directory
//! with `synod::write_join_schedule`), catches up, and is promoted to voter
//! by the leader once it is close behind. Removing a member is one call; a
//! removed node stops by itself and never votes again.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use synod::{ApplyContext, MemberAddr, Node, NodeConfig, NodeId, StateMachine};

/// The user's state machine: a counter. Commands are "add N" as 8 LE bytes.
#[derive(Default)]
struct Counter {
    value: i64,
}

impl StateMachine for Counter {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let delta = command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        self.value = self.value.wrapping_add(delta);
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.value.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| format!("a counter snapshot is 8 bytes, got {}", snapshot.len()))?;
        self.value = i64::from_le_bytes(bytes);
        Ok(())
    }
}

fn decode(output: &[u8]) -> i64 {
    output
        .try_into()
        .map(i64::from_le_bytes)
        .unwrap_or_default()
}

/// A loopback socket on a port the system picks, with its address. The
/// node starts on this very socket (`Node::start_with_listener`): no other
/// socket can take the port between naming it in the peer lists and the
/// node's start.
fn bound() -> Result<(std::net::TcpListener, SocketAddr), std::io::Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn config(
    id: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &std::path::Path,
) -> Result<NodeConfig, Box<dyn std::error::Error>> {
    let mut cfg = NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("node-{id}")))
        .ok_or("node not in its peer list")?;
    // Brand-new data directories are initialised (see the counter example).
    cfg.bootstrap = synod::Bootstrap::New;
    // Loopback only: plain peer links are allowed; use TLS in production.
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    Ok(cfg)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("synod-membership-{}", std::process::id()));
    let mut peers = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3u32 {
        let (listener, addr) = bound()?;
        peers.insert(NodeId(id), addr);
        listeners.insert(id, listener);
    }
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let cfg = config(id, &peers, &dir)?;
        nodes.insert(
            id,
            Node::start_with_listener(cfg, Counter::default(), listener).await?,
        );
    }
    let add = |n: i64| Bytes::copy_from_slice(&n.to_le_bytes());
    println!(
        "3 voters; counter = {}",
        decode(&nodes[&1].propose(add(1)).await?)
    );

    // Grow to 5: each new node is added (any member can be asked), then
    // started from the memberships a member hands out.
    for id in 4..=5u32 {
        let (listener, addr) = bound()?;
        let via = &nodes[&1];
        via.add_member(
            NodeId(id),
            MemberAddr {
                paxos: Some(addr),
                resp: None,
            },
            false, // not a permanent learner: promoted once caught up
        )
        .await?;
        let info = via.join_info().await?;
        let data_dir = dir.join(format!("node-{id}"));
        synod::write_join_schedule(&data_dir, info.point, &info.schedule)?;
        let mut joined_peers = peers.clone();
        joined_peers.insert(NodeId(id), addr);
        let mut cfg = config(id, &joined_peers, &dir)?;
        cfg.cluster_id = info.cluster_id;
        nodes.insert(
            id,
            Node::start_with_listener(cfg, Counter::default(), listener).await?,
        );
        // Wait for the leader to promote it.
        let mut status = nodes[&id].watch_status();
        status.wait_for(|s| s.members.contains(&NodeId(id))).await?;
        println!(
            "node {id} joined and votes; counter = {}",
            decode(&nodes[&id].propose(add(1)).await?)
        );
    }
    println!("voters now: {:?}", nodes[&1].status().members);

    // Shrink back to 3: remove two of the founding members (the leader
    // among them is fine: it hands leadership over first).
    for id in [1u32, 2] {
        let asker = &nodes[&5];
        asker.remove_member(NodeId(id), false).await?;
        // The removed node stops by itself.
        let stopped = nodes[&id].wait().await;
        println!("node {id} removed: {stopped:?}");
        nodes.remove(&id);
    }
    println!(
        "voters now: {:?}; counter = {}",
        nodes[&3].status().members,
        decode(&nodes[&4].propose(add(1)).await?)
    );
    for node in nodes.values() {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
