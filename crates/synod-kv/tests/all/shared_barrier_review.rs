//! Review of 90de930 ("Refusals share a barrier read"): a refusal parsed
//! behind other requests of its batch was final at parse time, before the
//! requests before it in the pipeline ran. Both tests failed at 90de930;
//! fixed: only refusals may follow the read that confirms one
//! (`Conn::arrivals_confirmed`).

use crate::acl_in_flight::{
    authed, is_noperm, lead_elsewhere_than_node_3, pipeline, send_pipeline, set_user, stat, SlowAt,
};
use crate::resp_cluster::{self, Client};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synod_kv::KvCommand;
use synod_resp::Reply;

/// A SET of `pub:slow`, which node 3 applies late: a node that is
/// busy, or behind, when a client's write is chosen.
fn sets_pub_slow(command: &KvCommand) -> bool {
    matches!(command, KvCommand::Set { key, .. } if key.as_ref() == b"pub:slow")
}

/// D1. A pipeline at node 3: GET secret:k (refused; its barrier read
/// confirms the rest), SET pub:slow, INFO keyspace, GET secret:k. While
/// node 3 applies the SET (slow), node 1 grants ~secret:* (acknowledged),
/// then creates pub:flag. INFO runs after the SET answered (it flushes
/// what came before) and its linearizable read counts pub:flag (2 keys), a
/// write made after the grant was acknowledged; then the last GET, which
/// Redis runs after INFO, is answered NOPERM: it was refused at parse
/// time, before the requests before it ran. No order of the client's
/// pipeline explains that (grant, then pub:flag, then INFO, then GET).
/// Before 90de930 the refusal went first in the next batch, and its own
/// read, asked after INFO answered, saw the grant: Null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_behind_an_info_that_saw_a_grant_is_not_final_before_it_ran() {
    // Node 3 holds the SET until pub:flag is acknowledged (a lag of 1.5 s
    // alone was too short once on a loaded machine).
    let flag_set = Arc::new(AtomicBool::new(false));
    let until = Arc::clone(&flag_set);
    let c = resp_cluster::cluster_wrapped(
        3,
        |_| {},
        None,
        move |id, store| SlowAt {
            store,
            lag: (id == 3).then_some(Duration::from_millis(1500)),
            slow: sets_pub_slow,
            until: (id == 3).then(|| Arc::clone(&until)),
        },
    )
    .await;
    lead_elsewhere_than_node_3(&c).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[2], "lim", "pw").await;
    assert_eq!(lim.call(&[b"GET", b"pub:k"]).await, Some(Reply::Null));
    let requests: &[&[&[u8]]] = &[
        &[b"GET", b"secret:k"],
        &[b"SET", b"pub:slow", b"1"],
        &[b"INFO", b"keyspace"],
        &[b"GET", b"secret:k"],
    ];
    send_pipeline(&mut lim, requests).await;
    // The first refusal answered: the rest of the pipeline (one socket
    // read) is parsed right after, and node 3 holds the SET.
    let first = lim.reply().await.expect("a reply");
    assert!(is_noperm(&first), "{first:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_user(&mut admin, &[b"lim", b"~secret:*"]).await;
    assert_eq!(
        admin.call(&[b"SET", b"pub:flag", b"1"]).await,
        Some(resp_cluster::ok())
    );
    flag_set.store(true, Ordering::SeqCst);
    let mut replies = Vec::new();
    for _ in 1..requests.len() {
        replies.push(lim.reply().await.expect("a reply"));
    }
    assert_eq!(replies[0], resp_cluster::ok(), "{replies:?}");
    let Reply::Bulk(info) = &replies[1] else {
        panic!("INFO: {replies:?}");
    };
    assert!(
        String::from_utf8_lossy(info).contains("db0:keys=2,"),
        "INFO saw no pub:flag: {replies:?}"
    );
    // pub:flag was set after the grant was acknowledged, and this client's
    // INFO saw it before this GET ran: the grant is in force for it.
    assert_eq!(
        replies[2],
        Reply::Null,
        "refused after its INFO saw a write made after the grant"
    );
}

/// D2. INFO pipelined between two refusals counts the refusal after it:
/// the later one is counted at parse time, before INFO ran. Before
/// 90de930 INFO said 1 (as Redis, which runs them in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_does_not_count_a_refusal_pipelined_after_it() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    assert_eq!(lim.call(&[b"GET", b"pub:k"]).await, Some(Reply::Null));
    let before = stat(&mut admin, "acl_access_denied_key").await;
    let replies = pipeline(
        &mut lim,
        &[
            &[b"GET", b"secret:k"],
            &[b"INFO", b"stats"],
            &[b"GET", b"secret:k"],
        ],
    )
    .await;
    assert!(
        is_noperm(&replies[0]) && is_noperm(&replies[2]),
        "{replies:?}"
    );
    let Reply::Bulk(text) = &replies[1] else {
        panic!("INFO: {:?}", replies[1]);
    };
    let text = String::from_utf8_lossy(text);
    let seen: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("acl_access_denied_key:"))
        .expect("the field")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(seen, before + 1, "INFO counted the refusal after it");
}
