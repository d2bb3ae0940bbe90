//! A right given is as linearizable as a right taken away: a request the
//! node's users refuse is answered only once the node has applied every
//! change acknowledged before it arrived (`Conn::handle_confirmed`). Before,
//! a lagging node refused a log command (or a queued one) by the rules it
//! still held, after another node had acknowledged the grant.

use crate::acl_in_flight::{
    authed, is_noperm, lagging_follower_cluster, pipeline, send_pipeline, set_user, stat,
};
use crate::resp_cluster::{self, Client};

use bytes::Bytes;
use synod_resp::Reply;

/// A command, a key and a channel given to `ops` at node 1 (one change,
/// acknowledged) are usable at once through node 3, which applies the
/// change 1.5 s later: a write, a read by read index, a PUBLISH. Before
/// the change each was refused with NOPERM by node 3's old rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_holds_at_once_for_log_commands_too() {
    let c = lagging_follower_cluster().await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(
        &mut admin,
        &[
            b"ops",
            b"on",
            b">pw",
            b"resetkeys",
            b"~pub:*",
            b"resetchannels",
            b"&pub:*",
            b"+@all",
            b"-set",
        ],
    )
    .await;
    let mut ops = authed(c.resp[2], "ops", "pw").await;
    set_user(&mut admin, &[b"ops", b"+set", b"allkeys", b"allchannels"]).await;
    let replies = pipeline(
        &mut ops,
        &[
            &[b"SET", b"pub:k", b"v"],
            &[b"GET", b"secret:k"],
            &[b"PUBLISH", b"secret", b"hello"],
            &[b"GET", b"pub:k"],
        ],
    )
    .await;
    assert_eq!(
        replies,
        vec![
            resp_cluster::ok(),
            Reply::Null,
            Reply::Integer(0),
            Reply::Bulk(Bytes::from_static(b"v")),
        ]
    );
}

/// Refusals are still answered as Redis answers them, in order within a
/// pipeline, counted once each, and flag a transaction; a refusal under
/// CLIENT REPLY SKIP stays silent. (On a node that is not behind, so every
/// barrier confirms the refusal.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_in_order_and_counted_once() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[1]).await;
    set_user(
        &mut admin,
        &[b"lim", b"on", b">pw", b"~pub:*", b"+@all", b"-set"],
    )
    .await;
    let mut lim = authed(c.resp[1], "lim", "pw").await;
    let commands = stat(&mut admin, "acl_access_denied_cmd").await;
    let keys = stat(&mut admin, "acl_access_denied_key").await;
    let replies = pipeline(
        &mut lim,
        &[
            &[b"INCR", b"pub:n"],
            &[b"SET", b"pub:a", b"1"],
            &[b"INCR", b"pub:n"],
            &[b"GET", b"secret:a"],
            &[b"MULTI"],
            &[b"INCR", b"pub:n"],
            &[b"SET", b"pub:a", b"2"],
            &[b"EXEC"],
            &[b"GET", b"pub:n"],
        ],
    )
    .await;
    assert_eq!(replies[0], Reply::Integer(1), "{replies:?}");
    assert!(is_noperm(&replies[1]), "{replies:?}");
    assert_eq!(replies[2], Reply::Integer(2), "{replies:?}");
    assert!(is_noperm(&replies[3]), "{replies:?}");
    assert_eq!(replies[4], resp_cluster::ok());
    assert_eq!(replies[5], Reply::Simple("QUEUED".into()));
    assert!(is_noperm(&replies[6]), "{replies:?}");
    assert!(
        matches!(&replies[7], Reply::Error(text) if text.starts_with("EXECABORT")),
        "{replies:?}"
    );
    assert_eq!(replies[8], Reply::Bulk(Bytes::from_static(b"2")));
    assert_eq!(
        stat(&mut admin, "acl_access_denied_cmd").await,
        commands + 2
    );
    assert_eq!(stat(&mut admin, "acl_access_denied_key").await, keys + 1);
    // Silenced: only PING answers.
    send_pipeline(
        &mut lim,
        &[
            &[b"CLIENT", b"REPLY", b"SKIP"],
            &[b"SET", b"pub:a", b"3"],
            &[b"PING"],
        ],
    )
    .await;
    assert_eq!(lim.reply().await, Some(Reply::Simple("PONG".into())));
    assert_eq!(
        stat(&mut admin, "acl_access_denied_cmd").await,
        commands + 3
    );
}

/// A connection opened while `default` had a password stays
/// unauthenticated when the password is taken off (the README says so;
/// Redis would let it run as `default`): NOAUTH until RESET or AUTH, then
/// it runs as `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_before_default_lost_its_password_stays_unauthenticated() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"default", b"resetpass", b">s3cret"]).await;
    let mut anon = Client::connect(c.resp[0]).await;
    let before = anon.call(&[b"GET", b"k"]).await;
    assert!(crate::acl_in_flight::is_noauth(&before), "{before:?}");
    let mut admin = authed(c.resp[0], "default", "s3cret").await;
    set_user(&mut admin, &[b"default", b"nopass"]).await;
    let after = anon.call(&[b"GET", b"k"]).await;
    assert!(crate::acl_in_flight::is_noauth(&after), "{after:?}");
    assert_eq!(
        anon.call(&[b"RESET"]).await,
        Some(Reply::Simple("RESET".into()))
    );
    assert_eq!(anon.call(&[b"GET", b"k"]).await, Some(Reply::Null));
    assert_eq!(
        anon.call(&[b"ACL", b"WHOAMI"]).await,
        Some(Reply::Bulk(Bytes::from_static(b"default")))
    );
}

/// A pipeline of refusals costs one read round, not one each: the barrier
/// read that confirms the first was asked after the others arrived, so it
/// confirms them too (`Conn::arrivals_confirmed`). Each is still answered
/// NOPERM and counted once; an allowed request after them runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_refusals_shares_one_read_round() {
    use std::sync::atomic::Ordering::Relaxed;
    const N: usize = 50;
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    // Its first request confirms nothing of the pipeline below.
    assert_eq!(lim.call(&[b"GET", b"pub:k"]).await, Some(Reply::Null));
    let denied = stat(&mut admin, "acl_access_denied_key").await;
    let mut requests: Vec<&[&[u8]]> = vec![&[b"GET", b"secret:k"]; N];
    requests.push(&[b"GET", b"pub:k"]);
    let reads = c.nodes[0].metrics().reads.load(Relaxed);
    let replies = pipeline(&mut lim, &requests).await;
    let reads = c.nodes[0].metrics().reads.load(Relaxed) - reads;
    assert!(replies[..N].iter().all(is_noperm), "{:?}", &replies[..3]);
    assert_eq!(replies[N], Reply::Null);
    assert_eq!(
        stat(&mut admin, "acl_access_denied_key").await,
        denied + N as u64
    );
    // One for the first refusal; a few more only if the pipeline reached
    // the node in pieces, the later after that read was asked. The GET of
    // pub:k is one more read (by read index). Before: N + 1.
    assert!(reads <= 6, "{reads} reads for {N} refusals and a GET");
}

/// A refusal confirmed by a read asked before a grant was acknowledged
/// does not confirm a request sent after the grant: at node 3 (lagging
/// 1.5 s at ACL changes) a refused GET, then the key given at node 1, then
/// the same GET at node 3 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_refusal_does_not_confirm_a_request_sent_after_a_grant() {
    let c = lagging_follower_cluster().await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~pub:*", b"+@all"]).await;
    let mut lim = authed(c.resp[2], "lim", "pw").await;
    let refused = lim.call(&[b"GET", b"secret:k"]).await;
    assert!(
        matches!(&refused, Some(reply) if is_noperm(reply)),
        "{refused:?}"
    );
    set_user(&mut admin, &[b"lim", b"~secret:*"]).await;
    assert_eq!(lim.call(&[b"GET", b"secret:k"]).await, Some(Reply::Null));
}
