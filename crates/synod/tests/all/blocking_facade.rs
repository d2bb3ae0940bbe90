//! `synod::blocking::Node` (issue 17): a three-node cluster driven from
//! plain threads, no async runtime in the test, through a leader's stop.

use bytes::Bytes;
use std::collections::BTreeMap;
use synod::{blocking, ApplyContext, NodeConfig, NodeId, StateMachine};

#[derive(Default)]
struct Sum(u64);

impl StateMachine for Sum {
    fn apply(&mut self, command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.0 += command.len() as u64;
        Bytes::from(self.0.to_string())
    }
    fn query(&self, _query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::from(self.0.to_string())
    }
    fn snapshot(&self) -> Bytes {
        Bytes::from(self.0.to_string())
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = String::from_utf8_lossy(snapshot)
            .parse()
            .map_err(|e| format!("{e}"))?;
        Ok(())
    }
}

#[test]
fn a_blocking_cluster_proposes_reads_and_survives_its_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut peers = BTreeMap::new();
    for (id, addr) in (1..=3u32).zip(crate::common::free_addrs(3)) {
        peers.insert(NodeId(id), addr);
    }
    let nodes: Vec<blocking::Node> = peers
        .keys()
        .map(|id| {
            let mut cfg = NodeConfig::new(*id, peers.clone(), dir.path().join(id.0.to_string()))
                .expect("member");
            cfg.bootstrap = synod::Bootstrap::New;
            cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
            blocking::Node::start_with_threads(cfg, Sum::default(), 1).expect("starts")
        })
        .collect();
    for node in &nodes {
        node.ready().expect("ready");
    }
    assert_eq!(nodes.iter().filter(|n| n.is_leader()).count(), 1);
    // Proposals from several threads at once, through every node.
    std::thread::scope(|scope| {
        for node in &nodes {
            scope.spawn(move || {
                for _ in 0..10 {
                    node.propose(Bytes::from_static(b"xx")).expect("chosen");
                }
            });
        }
    });
    for node in &nodes {
        assert_eq!(node.read(Bytes::new()).expect("read"), Bytes::from("60"));
    }
    // The leader stops; the others elect one and go on.
    let mut nodes = nodes;
    let at = nodes.iter().position(|n| n.is_leader()).expect("a leader");
    let old = nodes.remove(at);
    old.shutdown();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let leader = loop {
        if let Some(at) = nodes.iter().position(|n| n.is_leader()) {
            break at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader among the two left within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(nodes[leader].wait_for_leadership(std::time::Duration::from_secs(1)));
    // The other one does not lead: its wait ends at the timeout.
    assert!(!nodes[1 - leader].wait_for_leadership(std::time::Duration::from_millis(200)));
    assert_eq!(
        nodes[0].propose(Bytes::from_static(b"x")).expect("chosen"),
        Bytes::from("61")
    );
    // A client session, retried through the other node: applied once.
    let mut session = nodes[0].session().expect("a session");
    let (id, seq) = (session.id(), session.next_seq());
    assert_eq!(
        nodes[0].propose_in(&mut session, Bytes::from_static(b"y")),
        Ok(Bytes::from("62"))
    );
    let mut resumed = nodes[1].resume_session(id, seq);
    assert_eq!(
        nodes[1].propose_in(&mut resumed, Bytes::from_static(b"y")),
        Ok(Bytes::from("62"))
    );
    // A stale read needs no other node: with the last peer gone (no
    // majority, so `read` could not be answered), it still answers at once
    // from what this node applied.
    let mut nodes = nodes;
    let alone = nodes.remove(0);
    for node in nodes {
        node.shutdown();
    }
    assert_eq!(
        alone.read_stale(Bytes::new()).expect("stale read"),
        Bytes::from("62")
    );
    alone.shutdown();
}

/// The master API through the blocking facade: one master at a time; after
/// it drops leadership another node becomes master, never before the old
/// master's lease ran out (the nodes share this process's clock, so their
/// `Instant`s compare), and the dropped node does not take it back.
#[test]
fn a_blocking_cluster_has_one_master_and_hands_it_on_after_a_drop() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    // Peer ports bound here and handed to the nodes.
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut peers = BTreeMap::new();
    for (id, listener) in (1..=3u32).zip(&listeners) {
        peers.insert(NodeId(id), listener.local_addr().expect("addr"));
    }
    let nodes: Vec<blocking::Node> = peers
        .keys()
        .zip(listeners)
        .map(|(id, listener)| {
            let mut cfg = NodeConfig::new(*id, peers.clone(), dir.path().join(id.0.to_string()))
                .expect("member");
            cfg.bootstrap = synod::Bootstrap::New;
            cfg.peer_security = Some(synod::PeerSecurity::InsecureLoopback);
            cfg.read_lease = Some(cfg.default_read_lease());
            blocking::Node::start_with_listener(cfg, Sum::default(), listener).expect("starts")
        })
        .collect();
    for node in &nodes {
        node.ready().expect("ready");
    }
    let master_now = |nodes: &[blocking::Node], within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let leases: Vec<(usize, synod::MasterLease, Instant)> = nodes
                .iter()
                .enumerate()
                .filter_map(|(k, n)| n.master_lease().map(|l| (k, l, Instant::now())))
                .collect();
            assert!(leases.len() <= 1, "two masters: {leases:?}");
            if let Some(&found) = leases.first() {
                return found;
            }
            assert!(Instant::now() < deadline, "no master within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let (old, old_lease, _) = master_now(&nodes, Duration::from_secs(10));
    // At most D = 391 ms with the default timing.
    assert!(old_lease.remaining() <= Duration::from_millis(391));
    let last_lease = nodes[old].master_lease().expect("still master");
    assert!(nodes[old].drop_leadership());
    assert!(nodes[old].master_lease().is_none(), "master after the drop");
    let (new, new_lease, answered) = master_now(&nodes, Duration::from_secs(10));
    assert_ne!(new, old, "the dropped node took the master back");
    assert!(new_lease.ballot > last_lease.ballot);
    assert!(
        answered >= last_lease.valid_until,
        "a new master before the old master's lease ran out"
    );
    // Not campaigning: it has not led again since (a leader change would
    // go through it only after its hold).
    assert!(!nodes[old].is_leader());
    for node in nodes {
        node.shutdown();
    }
}
