//! A replicated counter: three nodes in one process, on loopback.
//!
//! ```sh
//! cargo run --release -p synod --example counter
//! ```
//!
//! Each node runs the same deterministic state machine; commands go to any
//! node and come back with the counter's value once a majority has them.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use synod::{ApplyContext, Node, NodeConfig, NodeId, StateMachine};

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("synod-counter-{}", std::process::id()));
    // Bind every node's peer port first (port 0: any free one) so that each
    // node's peer list names the real ports, and hand each listener to its
    // node: no other socket can take the port in between.
    let mut peers = BTreeMap::new();
    let mut listeners = Vec::new();
    for id in 1..=3u32 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr: SocketAddr = listener.local_addr()?;
        peers.insert(NodeId(id), addr);
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (id, listener) in peers.keys().zip(listeners) {
        let mut cfg = NodeConfig::new(*id, peers.clone(), dir.join(format!("node-{}", id.0)))
            .ok_or("node not in its peer list")?;
        // The first start of a brand-new cluster: empty directories are
        // initialised (without this a node refuses an empty directory, which
        // is what a node that lost its disk finds).
        cfg.bootstrap = synod::Bootstrap::New;
        // Every node is on loopback in this example, so plain peer links are
        // allowed; a real cluster uses PeerSecurity::Tls (see `synod certs`).
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        nodes.push(Node::start_with_listener(cfg, Counter::default(), listener).await?);
    }
    for (i, node) in nodes.iter().enumerate() {
        let value = decode(
            &node
                .propose(Bytes::copy_from_slice(&10i64.to_le_bytes()))
                .await?,
        );
        println!("node {} added 10: counter = {value}", i + 1);
    }
    let value = decode(&nodes[2].read(Bytes::new()).await?);
    println!("linearizable read on node 3: counter = {value}");
    let status = nodes[0].status();
    println!(
        "leader: {:?}, instances applied: {}",
        status.leader.map(|l| l.0),
        status.applied_end.0
    );
    for node in &nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
