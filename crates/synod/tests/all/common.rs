//! What the cluster tests share: free loopback addresses for a new cluster
//! and a member's configuration on them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use synod::{NodeConfig, NodeId};

/// `n` loopback addresses free at the time of the call, as node ids 1..=n.
pub fn free_peers(n: u32) -> BTreeMap<NodeId, SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u32 + 1), l.local_addr().expect("addr")))
        .collect()
}

/// Node `id` of a brand-new cluster of `peers` on insecure loopback links,
/// its data in `dir/n{id}`. `Bootstrap::New` is ignored on restarts (these
/// directories are never wiped, so the flag cannot make a node vote with
/// amnesia).
pub fn config(
    id: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
    request_timeout: Duration,
) -> NodeConfig {
    let mut cfg =
        NodeConfig::new(NodeId(id), peers.clone(), dir.join(format!("n{id}"))).expect("member");
    cfg.request_timeout = request_timeout;
    cfg.bootstrap = synod::Bootstrap::New;
    cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
    cfg
}
