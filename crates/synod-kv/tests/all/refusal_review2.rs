//! Second outside review of c49b1fc + bfe3c81 (ACL refusals at a
//! linearizable point). Each test asserts what a client should see. F1 (a
//! queued PUBLISH went out after its channel was taken away), F2 (a queued
//! connection command missed a right given back), F4 (CONFIG SET maxmemory
//! in MULTI) and F5 (a refused EXEC left the transaction open) failed at
//! dd724b6 too; F3 (a deleted user's connection stayed open at a node
//! without a majority) was a regression of c49b1fc. All fixed since.

use crate::acl_in_flight::{
    authed, bulk, info_line, is_noperm, lagging_follower_cluster, queued, send_pipeline, set_user,
    stat, until_refused,
};
use crate::resp_cluster::{self, Client};

use std::time::Duration;
use synod_resp::Reply;

/// F1: a PUBLISH queued while its channel was allowed, the channel taken
/// away (applied at this node) before EXEC. `recheck_queued` checks the
/// command and its keys but not its channels, and the log only compares
/// the stamp, which EXEC took from the current (revoked) rules: the
/// message is published. Redis checks each queued command's channels at
/// EXEC and refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_publish_to_a_channel_revoked_before_exec_is_not_published() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(
        &mut admin,
        &[
            b"pub",
            b"on",
            b">pw",
            b"~*",
            b"resetchannels",
            b"&secret",
            b"+@all",
        ],
    )
    .await;
    let mut sub = Client::connect(c.resp[0]).await;
    sub.send(&[b"SUBSCRIBE", b"secret"]).await.unwrap();
    assert!(matches!(sub.reply().await, Some(Reply::Array(_))));
    let mut publ = authed(c.resp[0], "pub", "pw").await;
    assert_eq!(publ.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        publ.call(&[b"PUBLISH", b"secret", b"leak"]).await,
        Some(queued())
    );
    // Through the same node: applied there once answered.
    set_user(&mut admin, &[b"pub", b"resetchannels", b"&other"]).await;
    // The revocation holds for a PUBLISH sent now.
    let mut probe = authed(c.resp[0], "pub", "pw").await;
    assert!(probe
        .call(&[b"PUBLISH", b"secret", b"x"])
        .await
        .as_ref()
        .is_some_and(is_noperm));
    let exec = publ.call(&[b"EXEC"]).await;
    let got = tokio::time::timeout(Duration::from_millis(700), sub.reply()).await;
    assert!(
        got.is_err(),
        "a message published to a revoked channel reached a subscriber: {got:?} (EXEC answered {exec:?})"
    );
    assert!(
        matches!(&exec, Some(Reply::Error(_)))
            || matches!(&exec, Some(Reply::Array(parts)) if parts.iter().all(is_noperm)),
        "{exec:?}"
    );
}

/// F2: a connection command queued in MULTI at lagging node 3 while
/// allowed; node 1 takes the right away and gives it back (both
/// acknowledged); node 3 has applied only the first when EXEC arrives.
/// `recheck_queued` sees only the data commands, so EXEC is not made a
/// barrier, and `Conn::exec` refuses the queued command for good (final,
/// past_barrier set): a right given and acknowledged is refused, which
/// README says no longer happens for "a queued command".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_connection_command_given_back_before_exec_runs() {
    let c = lagging_follower_cluster().await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~*", b"+@all"]).await;
    let mut lim = authed(c.resp[2], "lim", "pw").await;
    assert_eq!(lim.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        lim.call(&[b"CLIENT", b"SETNAME", b"x"]).await,
        Some(queued())
    );
    set_user(&mut admin, &[b"lim", b"-client"]).await;
    // Node 3 applied the removal once another connection of lim is refused.
    until_refused(c.resp[2], "lim", "pw", &[b"CLIENT", b"ID"]).await;
    set_user(&mut admin, &[b"lim", b"+client"]).await;
    let exec = lim.call(&[b"EXEC"]).await;
    assert_eq!(
        exec,
        Some(Reply::Array(vec![resp_cluster::ok()])),
        "a right given back at node 1 (acknowledged) refused at node 3's EXEC"
    );
}

/// F3: a user deleted (applied at this node), at a node that lost its
/// majority: at dd724b6 its next request answered NOAUTH and closed the
/// connection at once; now the refusal waits for a read that fails, so the
/// connection of a deleted user stays open (answering "not run" errors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_connection_is_closed_at_a_node_without_majority() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[2]).await;
    set_user(&mut admin, &[b"gone", b"on", b">pw", b"~*", b"+@all"]).await;
    let mut gone = authed(c.resp[2], "gone", "pw").await;
    assert_eq!(
        admin.call(&[b"ACL", b"DELUSER", b"gone"]).await,
        Some(Reply::Integer(1))
    );
    c.nodes[0].shutdown().await;
    c.nodes[1].shutdown().await;
    let reply = gone.call(&[b"GET", b"k"]).await;
    assert!(
        matches!(&reply, Some(Reply::Error(text)) if text.starts_with("NOAUTH")),
        "{reply:?}"
    );
    assert!(
        gone.closed().await,
        "a deleted user's connection stays open"
    );
}

/// F4 (pre-existing): CONFIG SET maxmemory queued in MULTI. EXEC runs
/// queued connection commands through `handle_request`, but CONFIG SET
/// maxmemory is a log command (`Item::Data`): `Conn::exec` answers "ERR
/// internal error: not a local command" in its place and sets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_maxmemory_queued_in_multi_runs_at_exec() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"maxmemory", b"100mb"]).await,
        Some(queued())
    );
    let exec = cl.call(&[b"EXEC"]).await;
    assert_eq!(exec, Some(Reply::Array(vec![resp_cluster::ok()])));
}

/// Held?: CLIENT REPLY SKIP, then a refusal deferred to a batch of its own
/// (not first), then allowed requests: the refusal is the reply skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_then_a_deferred_refusal_skips_the_refusal() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[1]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[1], "lim", "pw").await;
    send_pipeline(
        &mut lim,
        &[
            &[b"CLIENT", b"REPLY", b"SKIP"],
            &[b"GET", b"secret:k"],
            &[b"ECHO", b"a"],
            &[b"CLIENT", b"REPLY", b"OFF"],
            &[b"GET", b"secret:k"],
            &[b"ECHO", b"b"],
            &[b"CLIENT", b"REPLY", b"ON"],
            &[b"ECHO", b"c"],
        ],
    )
    .await;
    assert_eq!(lim.reply().await, Some(bulk("a")));
    assert_eq!(lim.reply().await, Some(resp_cluster::ok()));
    assert_eq!(lim.reply().await, Some(bulk("c")));
}

/// Held?: under CLIENT REPLY OFF, a refusal whose read fails is silent
/// and counted as rejected once, not as an ACL denial; ON answers after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refusal_under_reply_off_is_silent_and_counted_once() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[2]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[2], "lim", "pw").await;
    let denied = stat(&mut admin, "acl_access_denied_key").await;
    c.nodes[0].shutdown().await;
    c.nodes[1].shutdown().await;
    send_pipeline(
        &mut lim,
        &[
            &[b"CLIENT", b"REPLY", b"OFF"],
            &[b"GET", b"secret:k"],
            &[b"CLIENT", b"REPLY", b"ON"],
            &[b"PING"],
        ],
    )
    .await;
    assert_eq!(lim.reply().await, Some(resp_cluster::ok()));
    assert_eq!(lim.reply().await, Some(Reply::Simple("PONG".into())));
    assert_eq!(stat(&mut admin, "acl_access_denied_key").await, denied);
    let line = info_line(&mut admin, b"commandstats", "cmdstat_get").await;
    assert!(line.contains("rejected_calls=1"), "{line}");
}

/// F5: an EXEC the user may not run (`-exec`), inside MULTI. Redis'
/// `rejectCommand` ends the transaction for a refused EXEC (EXECABORT
/// ... NOPERM); synod answers NOPERM and keeps the transaction open, so
/// the client's next commands are QUEUED instead of run. The same EXEC
/// whose barrier read fails is ended (`Conn::barrier_failed`, R4), and a
/// BUSY EXEC is too: only the confirmed ACL refusal leaves it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_refused_by_acl_ends_the_transaction() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(
        &mut admin,
        &[b"nx", b"on", b">pw", b"~*", b"+@all", b"-exec"],
    )
    .await;
    let mut nx = authed(c.resp[0], "nx", "pw").await;
    assert_eq!(nx.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(nx.call(&[b"SET", b"k", b"v"]).await, Some(queued()));
    let exec = nx.call(&[b"EXEC"]).await;
    assert!(
        matches!(&exec, Some(Reply::Error(text)) if text.starts_with("EXECABORT") && text.contains("NOPERM")),
        "{exec:?}"
    );
    assert_eq!(
        nx.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into())),
        "still in MULTI after a refused EXEC"
    );
}
