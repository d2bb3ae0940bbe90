//! The outside review's attacks on stop 63's linearizable ACL changes
//! (`KvCommand::AsUser`), kept as regression tests: each asserts what a
//! client should see (F3 and F4 were known gaps until requests that act
//! outside the log waited for a linearizable point: `Conn::after_barrier`).

use crate::resp_cluster;

use bytes::Bytes;
use resp_cluster::Client;
use std::time::Duration;
use synod::StateMachine;
use synod_kv::{KvCommand, Store};
use synod_resp::Reply;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn lagging_cluster(lag_ms: u64) -> resp_cluster::Cluster {
    crate::acl_in_flight::lagging_cluster(Duration::from_millis(lag_ms)).await
}

/// F1: AUTH in the middle of a pipeline (no ACL change anywhere): Redis
/// runs every command as the user current at that point. Here the batch is
/// sent as the last user with the stamp of the first: every data command of
/// the pipeline is refused with "rules changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_in_the_middle_of_a_pipeline_refuses_nothing() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    crate::acl_in_flight::set_user(&mut admin, &[b"alice", b"on", b">pw", b"~*", b"+@all"]).await;
    let mut client = Client::connect(c.resp[0]).await;
    let replies: Vec<Option<Reply>> = crate::acl_in_flight::pipeline(
        &mut client,
        &[
            &[b"SET", b"a", b"1"],
            &[b"AUTH", b"alice", b"pw"],
            &[b"GET", b"a"],
        ],
    )
    .await
    .into_iter()
    .map(Some)
    .collect();
    assert_eq!(
        replies,
        [
            Some(resp_cluster::ok()),
            Some(resp_cluster::ok()),
            Some(Reply::Bulk(b("1")))
        ],
        "nothing changed any ACL rule"
    );
}

/// F3: a user turned off (acknowledged by node 1) must not change the
/// cluster's membership through lagging node 3 (it did: SYNOD.MEMBER is no
/// log command, and node 3 checked it against the users it had applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admin_cannot_change_membership_through_a_lagging_node() {
    let c = lagging_cluster(1500).await;
    let mut admin = Client::connect(c.resp[0]).await;
    admin
        .call(&[b"ACL", b"SETUSER", b"ops", b"on", b">pw", b"~*", b"+@all"])
        .await;
    let mut ops = crate::acl_in_flight::authed(c.resp[2], "ops", "pw").await;
    crate::acl_in_flight::set_user(&mut admin, &[b"ops", b"off"]).await;
    // Acknowledged. Through node 3, still lagging:
    let add = ops
        .call(&[b"SYNOD.MEMBER", b"ADD", b"9", b"127.0.0.1:9", b"LEARNER"])
        .await;
    eprintln!("SYNOD.MEMBER ADD after revocation: {add:?}");
    let set = ops.call(&[b"SET", b"k", b"v"]).await;
    eprintln!("SET after revocation: {set:?}");
    let mut check = Client::connect(c.resp[0]).await;
    let list = check.call(&[b"SYNOD.MEMBER", b"LIST"]).await;
    eprintln!("members: {list:?}");
    assert!(
        !format!("{list:?}").contains("\"9\""),
        "a member was added by a user turned off before: {add:?}"
    );
}

/// F4: a password rotated (acknowledged by node 1): the old password must
/// not log in at lagging node 3 (it did before AUTH waited for a
/// linearizable point, and that login's writes were then applied as erin).
/// The connection stays `default` (no password here), so it is asked who it
/// is rather than whether a write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_password_cannot_log_in_after_rotation_was_acknowledged() {
    let c = lagging_cluster(1500).await;
    let mut admin = Client::connect(c.resp[0]).await;
    admin
        .call(&[b"ACL", b"SETUSER", b"erin", b"on", b">old", b"~*", b"+@all"])
        .await;
    drop(crate::acl_in_flight::authed(c.resp[2], "erin", "old").await);
    crate::acl_in_flight::set_user(&mut admin, &[b"erin", b"resetpass", b">new"]).await;
    // Acknowledged: a fresh login with the old password, at node 3, and
    // one with the new password, which must work at once.
    let mut thief = Client::connect(c.resp[2]).await;
    let auth = thief.call(&[b"AUTH", b"erin", b"old"]).await;
    assert_eq!(
        auth,
        Some(Reply::error(
            "WRONGPASS invalid username-password pair or user is disabled."
        )),
        "the rotated-out password logged in"
    );
    assert_eq!(
        thief.call(&[b"ACL", b"WHOAMI"]).await,
        Some(Reply::Bulk(b("default")))
    );
    let mut owner = Client::connect(c.resp[2]).await;
    let hello = owner
        .call(&[b"HELLO", b"3", b"AUTH", b"erin", b"new"])
        .await;
    assert!(
        matches!(hello, Some(Reply::Map(_))),
        "the new password at the lagging node: {hello:?}"
    );
    assert_eq!(
        owner.call(&[b"ACL", b"WHOAMI"]).await,
        Some(Reply::Bulk(b("erin")))
    );
}

/// Hostile bytes with opcode 249: every truncation and byte flip of wrapped
/// commands (single, batch, blocking, nested attempts) decodes to an error
/// or a command, and applying/querying what decodes never panics.
#[test]
fn hostile_as_user_bytes_never_panic() {
    use synod_kv::{AclCommand, AsUser};
    let set = synod_kv::parse(&[b("SET"), b("k"), b("v")]).unwrap();
    let blpop = synod_kv::parse(&[b("BLPOP"), b("q"), b("0")]).unwrap();
    let wrap = |user: &str, command: KvCommand| {
        KvCommand::AsUser(Box::new(AsUser {
            user: b(user),
            stamp: 0x1234_5678,
            command,
        }))
    };
    let samples = vec![
        wrap("default", set.clone()),
        wrap(
            "default",
            KvCommand::Exec(vec![set.clone(), KvCommand::Get { key: b("k") }]),
        ),
        wrap("erin", blpop.clone()),
        wrap(
            "default",
            KvCommand::Acl(AclCommand::SetUser {
                name: b("x"),
                rules: vec![b("on")],
            }),
        ),
    ];
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for sample in &samples {
        let bytes = sample.encode().to_vec();
        for cut in 0..bytes.len() {
            corpus.push(bytes[..cut].to_vec());
        }
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= flip;
                corpus.push(bad);
            }
        }
        // A wrapper inside a wrapper, by hand; and a chain of 100k wrappers.
        let mut nested = vec![1u8, 249, 0, 0, 0, 1, b'u'];
        nested.extend_from_slice(&[0; 8]);
        nested.extend_from_slice(&bytes[1..]);
        corpus.push(nested);
    }
    let mut store = Store::new();
    for (instance, bytes) in (1..).zip(&corpus) {
        let decoded = KvCommand::decode(bytes);
        if let Ok(KvCommand::AsUser(run)) = &decoded {
            assert!(
                !matches!(run.command, KvCommand::AsUser(_)),
                "nested wrapper decoded"
            );
        }
        let _ = store.apply(bytes, &crate::common::ctx(instance, 1_000));
        let _ = store.query(bytes, &crate::common::ctx(instance, 1_000));
        let _ = store.serve_query(bytes, &crate::common::ctx(instance, 1_000));
    }
}

/// F1c: a PING (checked against `default`, nopass) before AUTH in the same
/// pipeline makes the batch "mixed": the SET after AUTH is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_before_auth_in_one_pipeline_refuses_nothing() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    admin
        .call(&[b"ACL", b"SETUSER", b"alice", b"on", b">pw", b"~*", b"+@all"])
        .await;
    let mut client = Client::connect(c.resp[0]).await;
    let replies: Vec<Option<Reply>> = crate::acl_in_flight::pipeline(
        &mut client,
        &[
            &[b"PING"],
            &[b"AUTH", b"alice", b"pw"],
            &[b"SET", b"k", b"v"],
        ],
    )
    .await
    .into_iter()
    .map(Some)
    .collect();
    assert_eq!(
        replies,
        [
            Some(Reply::Simple("PONG".into())),
            Some(resp_cluster::ok()),
            Some(resp_cluster::ok())
        ]
    );
}

/// Requests that act outside the log wait for a linearizable point
/// (`Conn::after_barrier`): a right granted and acknowledged at node 1
/// holds at once at lagging node 3 (before, node 3 refused CONFIG SET for
/// as long as it lagged); in a pipeline such requests keep their order, and
/// CLIENT REPLY SKIP still silences the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_holds_at_once_for_requests_outside_the_log() {
    let c = lagging_cluster(1500).await;
    let mut admin = Client::connect(c.resp[0]).await;
    crate::acl_in_flight::set_user(
        &mut admin,
        &[b"ops", b"on", b">pw", b"~*", b"+@all", b"-config"],
    )
    .await;
    let mut ops = crate::acl_in_flight::authed(c.resp[2], "ops", "pw").await;
    crate::acl_in_flight::set_user(&mut admin, &[b"ops", b"+config"]).await;
    // Acknowledged; node 3 applies it 1.5 s later.
    let requests: [&[&[u8]]; 4] = [
        &[b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"CONFIG", b"SET", b"notify-keyspace-events", b""],
        &[b"PING"],
    ];
    crate::acl_in_flight::send_pipeline(&mut ops, &requests).await;
    assert_eq!(ops.reply().await, Some(resp_cluster::ok()));
    assert_eq!(ops.reply().await, Some(Reply::Simple("PONG".into())));
    assert_eq!(
        ops.call(&[b"CONFIG", b"GET", b"notify-keyspace-events"])
            .await,
        Some(Reply::Array(vec![
            Reply::Bulk(b("notify-keyspace-events")),
            Reply::Bulk(b(""))
        ])),
        "the silenced CONFIG SET ran after the first"
    );
}
