//! Client sessions: a deposit retried through another node, and by a
//! "restarted" client, is applied exactly once.
//!
//! ```sh
//! cargo run --release -p synod --example sessions
//! ```
//!
//! A ledger of deposits runs on three nodes in one process. The client
//! opens a session on node 1, persists its id and the sequence number of
//! the deposit before proposing it, and "loses" the answer. It then retries
//! the same sequence number through node 2, and again as a fresh process
//! would (a new handle from the persisted id) through node 3: each retry is
//! answered with the first one's output, and the balance shows one deposit.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use synod::{ApplyContext, Node, NodeConfig, NodeId, SessionId, StateMachine};

/// A balance: commands are deposits (8 LE bytes); the output is the new
/// balance and how many deposits were applied.
#[derive(Default)]
struct Ledger {
    balance: i64,
    deposits: u64,
}

impl Ledger {
    fn encode(&self) -> Bytes {
        let mut out = self.balance.to_le_bytes().to_vec();
        out.extend_from_slice(&self.deposits.to_le_bytes());
        Bytes::from(out)
    }
}

impl StateMachine for Ledger {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        let amount = command
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or_default();
        self.balance = self.balance.wrapping_add(amount);
        self.deposits += 1;
        self.encode()
    }

    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.encode()
    }

    fn snapshot(&self) -> Bytes {
        self.encode()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let (balance, deposits) = decode(snapshot).ok_or("a ledger snapshot is 16 bytes")?;
        self.balance = balance;
        self.deposits = deposits;
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Option<(i64, u64)> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let (balance, deposits) = bytes.split_at(8);
    Some((
        i64::from_le_bytes(balance.try_into().ok()?),
        u64::from_le_bytes(deposits.try_into().ok()?),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("synod-sessions-{}", std::process::id()));
    // Peer ports bound first and handed to the nodes (see the counter
    // example).
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
        cfg.bootstrap = synod::Bootstrap::New;
        cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
        nodes.push(Node::start_with_listener(cfg, Ledger::default(), listener).await?);
    }
    for node in &nodes {
        node.ready().await?;
    }

    let mut session = nodes[0].session().await?;
    // What a client persists before proposing (a file, a database row).
    let persisted: ([u8; 16], u64) = (session.id().to_bytes(), session.next_seq());
    let deposit = Bytes::copy_from_slice(&100i64.to_le_bytes());
    let first = session.propose(deposit.clone()).await?;
    println!(
        "deposit through node 1: {:?} (the client never sees this answer)",
        decode(&first)
    );

    let id = SessionId::from_bytes(&persisted.0).ok_or("a session id is 16 bytes")?;
    let via_2 = nodes[1]
        .resume_session(id, persisted.1)
        .propose(deposit.clone())
        .await?;
    println!("same deposit retried through node 2: {:?}", decode(&via_2));
    // A new process: nothing but the persisted id and sequence number.
    drop(session);
    let via_3 = nodes[2]
        .resume_session(id, persisted.1)
        .propose(deposit)
        .await?;
    println!(
        "same deposit after a restart, through node 3: {:?}",
        decode(&via_3)
    );
    let (balance, deposits) = decode(&nodes[2].read(Bytes::new()).await?).ok_or("16 bytes")?;
    println!("balance {balance} after {deposits} deposit(s) applied");
    assert_eq!((balance, deposits), (100, 1), "applied exactly once");
    for node in &nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
