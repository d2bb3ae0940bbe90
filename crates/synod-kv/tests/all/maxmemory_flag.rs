//! A node's `--maxmemory` flag and the replicated limit (review of issue
//! 13, D7): the flag is proposed only when the log holds another value.
//! (Before, every start proposed it: one node restarted with a stale flag
//! silently changed the limit of the whole cluster.)

use crate::resp_cluster;

use resp_cluster::cluster;
use synod_kv::{read_maxmemory, set_maxmemory, MaxMemoryChange};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_is_proposed_only_when_it_differs_from_the_log() {
    let c = cluster(3, |_| {}, None).await;
    let node = &c.nodes[0];
    assert_eq!(read_maxmemory(node).await.unwrap(), 0);
    assert_eq!(
        set_maxmemory(node, 1 << 20).await.unwrap(),
        MaxMemoryChange::Changed { old: 0 }
    );
    // Every node reads the new limit through the log.
    for other in &c.nodes {
        assert_eq!(read_maxmemory(other).await.unwrap(), 1 << 20);
    }
    // The same flag again (a restart) proposes nothing: the log does not grow.
    let chosen = node.status().chosen_end;
    assert_eq!(
        set_maxmemory(&c.nodes[1], 1 << 20).await.unwrap(),
        MaxMemoryChange::Unchanged
    );
    assert_eq!(node.status().chosen_end, chosen);
    // Another value changes it, and says from what.
    assert_eq!(
        set_maxmemory(&c.nodes[2], 2 << 20).await.unwrap(),
        MaxMemoryChange::Changed { old: 1 << 20 }
    );
    assert_eq!(read_maxmemory(node).await.unwrap(), 2 << 20);
}
