//! `StateMachine::prefetch_queries` and `serve_query` as the runtime calls
//! them: reads released together are hinted in groups of 2 to
//! `QUERY_PREFETCH_GROUP`, every hinted query is one a client submitted, and
//! each read still gets its own answer.

use crate::common;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod::engine::QUERY_PREFETCH_GROUP;
use synod::{ApplyContext, Node, StateMachine};

/// Counts applied commands; a query's answer is the count and the query.
/// Records every group of queries it is hinted.
struct Hinted {
    applied: u64,
    hints: Arc<Mutex<Vec<Vec<Bytes>>>>,
}

impl StateMachine for Hinted {
    fn apply(&mut self, _command: &[u8], _ctx: &ApplyContext) -> Bytes {
        self.applied += 1;
        Bytes::from(self.applied.to_string())
    }

    fn query(&self, query: &[u8], _ctx: &ApplyContext) -> Bytes {
        Bytes::from(format!(
            "{}:{}",
            self.applied,
            String::from_utf8_lossy(query)
        ))
    }

    fn prefetch_queries(&self, queries: &[&[u8]]) {
        let group = queries.iter().map(|q| Bytes::copy_from_slice(q)).collect();
        self.hints.lock().expect("not poisoned").push(group);
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.applied.to_string())
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), String> {
        Err("not used".into())
    }
}

/// On one thread, as `synod server` runs a node: the 64 reads of a round
/// are all submitted before the driver's next turn, so they are released
/// together.
#[tokio::test(flavor = "current_thread")]
async fn reads_released_together_are_hinted_in_groups_and_answered_rightly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hints = Arc::new(Mutex::new(Vec::new()));
    let machine = Hinted {
        applied: 0,
        hints: Arc::clone(&hints),
    };
    let cfg = common::config(
        1,
        &common::free_peers(1),
        dir.path(),
        Duration::from_secs(10),
    );
    let node = Arc::new(Node::start(cfg, machine).await.expect("starts"));
    common::propose_retrying(&node, Bytes::from_static(b"one")).await;
    let mut submitted = BTreeSet::new();
    for round in 0..4 {
        let tasks: Vec<_> = (0..64)
            .map(|k| {
                let node = Arc::clone(&node);
                let query = Bytes::from(format!("q{round}.{k}"));
                tokio::spawn(async move { (query.clone(), node.read(query).await) })
            })
            .collect();
        for task in tasks {
            let (query, answer) = task.await.expect("joins");
            let expected = format!("1:{}", String::from_utf8_lossy(&query));
            assert_eq!(answer.expect("answered"), expected);
            submitted.insert(query);
        }
    }
    let hints = std::mem::take(&mut *hints.lock().expect("not poisoned"));
    let mut hinted = 0usize;
    for group in hints.iter() {
        assert!(
            (2..=QUERY_PREFETCH_GROUP).contains(&group.len()),
            "a group of {} queries",
            group.len()
        );
        for query in group {
            assert!(submitted.contains(query), "{query:?} was never submitted");
        }
        hinted += group.len();
    }
    // Each round's 64 reads were all waiting when the driver took them
    // (here: all 256 hinted, in 16 groups of 16); a margin for scheduling.
    assert!(
        hinted * 2 >= submitted.len(),
        "only {hinted} of {} reads were hinted",
        submitted.len()
    );
    node.shutdown().await;
}
