//! Outside review of 6573779 (EXEC runs a transaction's connection commands
//! once its data commands ran). E1 and E3 failed at 6573779 and are fixed
//! (an EXEC with connection commands ends its batch; they are checked with
//! the data commands, at EXEC); E2 is a documented difference (ignored).

use crate::acl_in_flight::{bulk, call_within, pipeline, queued};
use crate::keyspace_events::pmessage;
use crate::resp_cluster::{self, Client};

use std::time::Duration;
use synod_resp::Reply;

/// E1. A connection command queued in a transaction now runs when the batch
/// runs (`server::exec`), but the requests pipelined after EXEC were
/// already handled when the batch was parsed (`Conn::handle`): a CLIENT
/// GETNAME right after EXEC does not see the transaction's CLIENT SETNAME,
/// and a CLIENT SETNAME right after EXEC is overwritten by it. Redis (and
/// this server before 6573779) answers `x`, then leaves the name `y`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_requests_pipelined_after_exec_see_its_connection_commands() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    // The implicit login confirmed first (its barrier would split the
    // pipeline).
    assert_eq!(
        call_within(&mut cl, &[b"SET", b"a", b"b"]).await,
        Some(resp_cluster::ok())
    );
    let replies = pipeline(
        &mut cl,
        &[
            &[b"MULTI"],
            &[b"CLIENT", b"SETNAME", b"x"],
            &[b"EXEC"],
            &[b"CLIENT", b"GETNAME"],
            &[b"CLIENT", b"SETNAME", b"y"],
        ],
    )
    .await;
    assert_eq!(replies[1], queued(), "{replies:?}");
    assert_eq!(
        replies[2],
        Reply::Array(vec![resp_cluster::ok()]),
        "{replies:?}"
    );
    assert_eq!(replies[4], resp_cluster::ok(), "{replies:?}");
    let last = call_within(&mut cl, &[b"CLIENT", b"GETNAME"]).await;
    assert_eq!(
        (&replies[3], last),
        (&bulk("x"), Some(bulk("y"))),
        "GETNAME after EXEC, then the name the client set last"
    );
}

/// E1b. The same from the other side: a transaction's CLIENT GETNAME sees a
/// CLIENT SETNAME sent after EXEC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1b_a_transactions_getname_does_not_see_a_later_setname() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(
        call_within(&mut cl, &[b"SET", b"a", b"b"]).await,
        Some(resp_cluster::ok())
    );
    let replies = pipeline(
        &mut cl,
        &[
            &[b"MULTI"],
            &[b"CLIENT", b"GETNAME"],
            &[b"EXEC"],
            &[b"CLIENT", b"SETNAME", b"later"],
        ],
    )
    .await;
    assert_eq!(replies[2], Reply::Array(vec![Reply::Null]), "{replies:?}");
}

/// E2. Commands in a transaction run in their order (Redis): a CONFIG SET
/// notify-keyspace-events queued before a SET turns on the SET's event.
/// Now every connection command runs after every data command, so the
/// event is lost (before 6573779 it was emitted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "documented difference from Redis (README, MULTI): connection commands take effect after the data commands"]
async fn e2_a_queued_config_set_applies_to_the_data_commands_after_it() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut sub = Client::connect(c.resp[0]).await;
    assert_eq!(
        sub.call(&[b"PSUBSCRIBE", b"*"]).await,
        Some(Reply::Array(vec![
            bulk("psubscribe"),
            bulk("*"),
            Reply::Integer(1)
        ]))
    );
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"KA"])
            .await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"SET", b"foo", b"bar"]).await, Some(queued()));
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    assert_eq!(
        exec,
        Some(Reply::Array(vec![resp_cluster::ok(), resp_cluster::ok()]))
    );
    assert_eq!(
        cl.call(&[b"PUBLISH", b"marker", b"end"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(sub.reply().await, pmessage("__keyspace@0__:foo", "set"));
}

/// Held: a WATCH with only connection commands queued runs them when the
/// key is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_watch_with_only_connection_commands() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"WATCH", b"k"]).await, Some(resp_cluster::ok()));
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CLIENT", b"SETNAME", b"n"]).await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"PING"]).await, Some(queued()));
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    assert_eq!(
        exec,
        Some(Reply::Array(vec![
            resp_cluster::ok(),
            Reply::Simple("PONG".into())
        ]))
    );
    // Changed: nil, the name not set.
    let mut other = Client::connect(c.resp[1]).await;
    assert_eq!(cl.call(&[b"WATCH", b"k"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        other.call(&[b"SET", b"k", b"1"]).await,
        Some(resp_cluster::ok())
    );
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CLIENT", b"SETNAME", b"m"]).await,
        Some(queued())
    );
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    assert!(
        matches!(exec, Some(Reply::Null | Reply::NullArray)),
        "{exec:?}"
    );
    assert_eq!(cl.call(&[b"CLIENT", b"GETNAME"]).await, Some(bulk("n")));
}

/// Held: odd and doubled maxmemory CONFIG SETs, a bad value, mixed with
/// data commands: each answered in its place (the doubled one refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_maxmemory_shapes_stay_aligned() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(cl.call(&[b"SET", b"k", b"1"]).await, Some(queued()));
    assert_eq!(
        cl.call(&[
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"nope",
            b"lua-time-limit",
            b"77"
        ])
        .await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"INCR", b"k"]).await, Some(queued()));
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"lua-time-limit", b"88", b"maxmemory"])
            .await,
        Some(queued())
    );
    assert_eq!(
        cl.call(&[
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"1gb",
            b"maxmemory",
            b"2gb",
            b"lua-time-limit",
            b"99"
        ])
        .await,
        Some(queued())
    );
    assert_eq!(
        cl.call(&[
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"2gb",
            b"lua-time-limit",
            b"99"
        ])
        .await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"INCR", b"k"]).await, Some(queued()));
    assert_eq!(
        cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        Some(queued())
    );
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    let Some(Reply::Array(parts)) = exec else {
        panic!("{exec:?}")
    };
    eprintln!("{parts:?}");
    assert_eq!(parts.len(), 8);
    assert_eq!(parts[0], resp_cluster::ok());
    assert!(matches!(&parts[1], Reply::Error(_)));
    assert_eq!(parts[2], Reply::Integer(2));
    assert!(matches!(&parts[3], Reply::Error(_)));
    // maxmemory named twice: refused, as in Redis 7 (stop 70).
    assert!(
        matches!(&parts[4], Reply::Error(e) if e.ends_with("duplicate parameter")),
        "{parts:?}"
    );
    assert_eq!(parts[5], resp_cluster::ok());
    assert_eq!(parts[6], Reply::Integer(3));
    assert!(
        matches!(&parts[7], Reply::Array(v) if v.contains(&bulk("99"))),
        "{parts:?}"
    );
    // Not held over to a CONFIG SET of its own.
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"lua-time-limit", b"5"]).await,
        Some(resp_cluster::ok())
    );
    assert_eq!(
        cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        Some(Reply::Array(vec![bulk("lua-time-limit"), bulk("5")]))
    );
}

const E3_DELAY_MS: u64 = 2;

/// E3 (timing-dependent: the SETUSER must land while the 300 INFO memory
/// round trips run; it failed 3 of 3 runs here, passes at 5d8a135).
/// A transaction is atomic (Redis): no ACL change lands between its
/// commands. Its connection commands now run after its data commands ran,
/// each checked then, with log round trips in between (INFO memory reads
/// the log): an `ACL SETUSER` acknowledged after the transaction's data
/// ran refuses the connection commands queued after them, in the same
/// EXEC reply whose data commands ran under the old rules. A user turned
/// off meanwhile gets `ERR internal error: not a local command` in its
/// places (the `Item::Quit` of `handle_named` is not a local reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e3_an_acl_change_lands_inside_a_transaction() {
    use crate::acl_in_flight::{authed, send_pipeline, set_user};
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(
        &mut admin,
        &[b"alice", b"on", b">pw", b"~*", b"&*", b"+@all"],
    )
    .await;
    let mut alice = authed(c.resp[0], "alice", "pw").await;
    let mut request: Vec<&[&[u8]]> = vec![&[b"MULTI"], &[b"SET", b"k", b"v"]];
    for _ in 0..300 {
        request.push(&[b"INFO", b"memory"]);
    }
    request.push(&[b"PING"]);
    request.push(&[b"EXEC"]);
    send_pipeline(&mut alice, &request).await;
    tokio::time::sleep(Duration::from_millis(E3_DELAY_MS)).await;
    set_user(&mut admin, &[b"alice", b"off"]).await;
    for _ in 0..request.len() - 1 {
        alice.reply().await.expect("queued");
    }
    let exec = alice.reply().await;
    if let Some(Reply::Array(parts)) = &exec {
        let errors: Vec<_> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Reply::Error(_)))
            .collect();
        eprintln!(
            "E3 EXEC: {} parts, last {:?}, errors {:?}",
            parts.len(),
            parts.last(),
            errors.first()
        );
    } else {
        eprintln!("E3 EXEC: {exec:?}");
    }
    let Some(Reply::Array(parts)) = &exec else {
        // Refused whole: atomic, as it should be.
        return;
    };
    assert_eq!(parts[0], resp_cluster::ok());
    for part in &parts[1..] {
        assert!(
            !matches!(part, Reply::Error(_)),
            "a refusal inside a transaction whose data ran: {part:?}"
        );
    }
}

/// Held: CONFIG SET maxmemory (with lua-time-limit) refused by the ACL at
/// EXEC (taken away after it was queued): NOPERM in its place, the data
/// commands around it aligned, nothing of it set, counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_maxmemory_refused_at_exec_stays_aligned() {
    use crate::acl_in_flight::{authed, set_user, stat};
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(
        &mut admin,
        &[b"alice", b"on", b">pw", b"~*", b"&*", b"+@all"],
    )
    .await;
    let mut alice = authed(c.resp[0], "alice", "pw").await;
    let before = admin.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await;
    let denied = stat(&mut admin, "acl_access_denied_cmd").await;
    assert_eq!(alice.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(alice.call(&[b"SET", b"k", b"1"]).await, Some(queued()));
    assert_eq!(
        alice
            .call(&[
                b"CONFIG",
                b"SET",
                b"maxmemory",
                b"100mb",
                b"lua-time-limit",
                b"4444"
            ])
            .await,
        Some(queued())
    );
    assert_eq!(
        alice.call(&[b"CLIENT", b"SETNAME", b"z"]).await,
        Some(queued())
    );
    assert_eq!(alice.call(&[b"INCR", b"k"]).await, Some(queued()));
    set_user(&mut admin, &[b"alice", b"-config|set"]).await;
    let exec = call_within(&mut alice, &[b"EXEC"]).await;
    let Some(Reply::Array(parts)) = exec else {
        panic!("{exec:?}")
    };
    eprintln!("{parts:?}");
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], resp_cluster::ok());
    assert!(crate::acl_in_flight::is_noperm(&parts[1]), "{parts:?}");
    assert_eq!(parts[2], resp_cluster::ok());
    assert_eq!(parts[3], Reply::Integer(2));
    assert_eq!(
        admin.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        before
    );
    assert_eq!(stat(&mut admin, "acl_access_denied_cmd").await, denied + 1);
}
