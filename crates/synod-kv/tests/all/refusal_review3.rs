//! Third outside review of 8fc9577 (ACL at EXEC). Each test asserts what a
//! client should see. A (a script's SORT BY/GET read keys outside the
//! user's patterns) failed at dd724b6 too and is fixed; B (a transaction
//! whose WATCH failed still ran its connection commands) was pre-existing,
//! left as a known gap at stop 65 and is fixed: a transaction's connection
//! commands run once its data commands ran.

use crate::acl_in_flight::{authed, bulk, call_within, is_noperm, queued, set_user, stat};
use crate::resp_cluster::{self, Client};

use std::time::Duration;
use synod_resp::Reply;

/// A script's SORT ... GET pattern reads keys named by the list's elements:
/// the front end refuses SORT GET to a user without every key (Redis'
/// "GET option of SORT denied"), and so does Redis inside a script (the
/// check is in `sortCommand`, run as the script's user). Synod's
/// `scripting::call::acl_verdict` checks only `parsed.keys()` (the list),
/// so a user limited to `~l` reads `secret:a` through EVAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_sort_get_pattern_does_not_read_keys_outside_the_users_patterns() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    assert_eq!(
        admin.call(&[b"SET", b"secret:a", b"topsecret"]).await,
        Some(resp_cluster::ok())
    );
    assert_eq!(
        admin.call(&[b"RPUSH", b"l", b"a"]).await,
        Some(Reply::Integer(1))
    );
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~l", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    // The front end refuses it.
    let direct = lim
        .call(&[b"SORT", b"l", b"ALPHA", b"GET", b"secret:*"])
        .await;
    assert!(
        matches!(&direct, Some(Reply::Error(text)) if text.contains("denied")),
        "{direct:?}"
    );
    assert!(
        lim.call(&[b"GET", b"secret:a"])
            .await
            .as_ref()
            .is_some_and(is_noperm),
        "lim may read secret:a"
    );
    // Through a script: the same read.
    let script: &[u8] = b"return redis.call('sort', KEYS[1], 'alpha', 'get', 'secret:*')";
    let eval = lim.call(&[b"EVAL", script, b"1", b"l"]).await;
    assert!(
        matches!(&eval, Some(Reply::Error(_))),
        "a script's SORT GET read a key outside ~l: {eval:?}"
    );
    // And in a transaction.
    assert_eq!(lim.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        lim.call(&[b"EVAL", script, b"1", b"l"]).await,
        Some(queued())
    );
    let exec = lim.call(&[b"EXEC"]).await;
    assert!(
        !matches!(&exec, Some(Reply::Array(parts)) if parts.iter().any(|p| matches!(p, Reply::Array(v) if v.contains(&bulk("topsecret"))))),
        "a queued script's SORT GET read a key outside ~l: {exec:?}"
    );
}

/// SORT BY pattern in a script, same check (BY with `*` reads weight keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_sort_by_pattern_is_refused_to_a_user_without_every_key() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~l", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    let direct = lim.call(&[b"SORT", b"l", b"BY", b"w_*"]).await;
    assert!(
        matches!(&direct, Some(Reply::Error(text)) if text.contains("denied")),
        "{direct:?}"
    );
    let script: &[u8] = b"return redis.call('sort', KEYS[1], 'by', 'w_*')";
    let eval = lim.call(&[b"EVAL", script, b"1", b"l"]).await;
    assert!(
        matches!(&eval, Some(Reply::Error(_))),
        "a script's SORT BY pattern ran for a user limited to ~l: {eval:?}"
    );
}

/// A transaction whose WATCH failed runs nothing (Redis): EXEC answers nil.
/// `Conn::exec` ran the queued connection commands (CONFIG SET of node
/// parameters, CLIENT SETNAME) while it built the EXEC item, before the
/// log's WATCH check: their effects stayed though EXEC answered nil, and a
/// CONFIG SET of maxmemory and lua-time-limit was half applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_watch_failed_runs_none_of_its_connection_commands() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    let mut other = Client::connect(c.resp[0]).await;
    let before = cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await;
    assert_eq!(cl.call(&[b"WATCH", b"k"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        other.call(&[b"SET", b"k", b"changed"]).await,
        Some(resp_cluster::ok())
    );
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CLIENT", b"SETNAME", b"leaked"]).await,
        Some(queued())
    );
    assert_eq!(
        cl.call(&[
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"100mb",
            b"lua-time-limit",
            b"4321"
        ])
        .await,
        Some(queued())
    );
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    assert!(
        matches!(exec, Some(Reply::Null | Reply::NullArray)),
        "{exec:?}"
    );
    let name = cl.call(&[b"CLIENT", b"GETNAME"]).await;
    let limit = cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await;
    let Some(Reply::Bulk(info)) = cl.call(&[b"INFO", b"memory"]).await else {
        panic!("no INFO memory");
    };
    let maxmemory_set = String::from_utf8_lossy(&info).contains("maxmemory:104857600");
    assert!(
        name == Some(Reply::Null) && limit == before && !maxmemory_set,
        "a transaction answered nil ran: CLIENT GETNAME {name:?}, lua-time-limit {limit:?} \
         (was {before:?}), maxmemory set: {maxmemory_set}"
    );
}

/// A transaction refused as a whole (OOM, decided when the log applies
/// it) runs none of its connection commands either: Redis refuses it at
/// EXEC with nothing run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_refused_for_memory_runs_none_of_its_connection_commands() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(
        cl.call(&[b"SET", b"filler", b"0123456789"]).await,
        Some(resp_cluster::ok())
    );
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"maxmemory", b"1"]).await,
        Some(resp_cluster::ok())
    );
    let before = cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CLIENT", b"SETNAME", b"leaked"]).await,
        Some(queued())
    );
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"lua-time-limit", b"4321"])
            .await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"SET", b"k", b"v"]).await, Some(queued()));
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    assert!(
        matches!(&exec, Some(Reply::Error(text)) if text.starts_with("OOM")),
        "{exec:?}"
    );
    assert_eq!(cl.call(&[b"CLIENT", b"GETNAME"]).await, Some(Reply::Null));
    assert_eq!(
        cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        before
    );
}

/// A transaction that runs runs its connection commands in their order,
/// each answered in its place: CLIENT GETNAME after CLIENT SETNAME sees
/// the name; CONFIG SET of maxmemory and lua-time-limit sets both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_ran_ran_its_connection_commands_in_order() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"WATCH", b"k"]).await, Some(resp_cluster::ok()));
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        cl.call(&[b"CLIENT", b"SETNAME", b"named"]).await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"SET", b"k", b"v"]).await, Some(queued()));
    assert_eq!(cl.call(&[b"CLIENT", b"GETNAME"]).await, Some(queued()));
    assert_eq!(
        cl.call(&[
            b"CONFIG",
            b"SET",
            b"lua-time-limit",
            b"4321",
            b"maxmemory",
            b"100mb"
        ])
        .await,
        Some(queued())
    );
    assert_eq!(
        cl.call(&[b"CONFIG", b"GET", b"lua-time-limit"]).await,
        Some(queued())
    );
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    let Some(Reply::Array(parts)) = exec else {
        panic!("{exec:?}");
    };
    assert_eq!(parts.len(), 5, "{parts:?}");
    assert_eq!(parts[0], resp_cluster::ok(), "{parts:?}");
    assert_eq!(parts[1], resp_cluster::ok(), "{parts:?}");
    assert_eq!(parts[2], bulk("named"), "{parts:?}");
    assert_eq!(parts[3], resp_cluster::ok(), "{parts:?}");
    assert!(
        matches!(&parts[4], Reply::Array(v) if v.contains(&bulk("4321"))),
        "{parts:?}"
    );
    let Some(Reply::Bulk(info)) = cl.call(&[b"INFO", b"memory"]).await else {
        panic!("no INFO memory");
    };
    assert!(
        String::from_utf8_lossy(&info).contains("maxmemory:104857600"),
        "maxmemory not set"
    );
}

/// F4 held?: INFO, CONFIG SET maxmemory and a data command in one
/// transaction: each answered in its place, maxmemory set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_maxmemory_between_info_and_a_write_answers_in_place() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(cl.call(&[b"INFO", b"server"]).await, Some(queued()));
    assert_eq!(
        cl.call(&[b"CONFIG", b"SET", b"maxmemory", b"100mb"]).await,
        Some(queued())
    );
    assert_eq!(cl.call(&[b"SET", b"k", b"v"]).await, Some(queued()));
    assert_eq!(cl.call(&[b"PING"]).await, Some(queued()));
    let exec = call_within(&mut cl, &[b"EXEC"]).await;
    let Some(Reply::Array(parts)) = exec else {
        panic!("{exec:?}");
    };
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert!(
        matches!(&parts[0], Reply::Bulk(_) | Reply::Verbatim(_)),
        "{parts:?}"
    );
    assert_eq!(parts[1], resp_cluster::ok(), "{parts:?}");
    assert_eq!(parts[2], resp_cluster::ok(), "{parts:?}");
    assert_eq!(parts[3], Reply::Simple("PONG".into()), "{parts:?}");
    let Some(Reply::Bulk(info)) = cl.call(&[b"INFO", b"memory"]).await else {
        panic!("no INFO memory");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("maxmemory:104857600"), "{info}");
}

/// F2 held?: a queued connection command refused for good (the right taken
/// away, applied at this node): EXEC waits once, answers the refusal in
/// its place, runs the rest, and counts one refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_connection_command_refused_for_good_is_answered_and_counted_once() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~*", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    assert_eq!(lim.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    assert_eq!(
        lim.call(&[b"CONFIG", b"GET", b"maxmemory"]).await,
        Some(queued())
    );
    assert_eq!(lim.call(&[b"SET", b"k", b"v"]).await, Some(queued()));
    set_user(&mut admin, &[b"lim", b"-config"]).await;
    let denied = stat(&mut admin, "acl_access_denied_cmd").await;
    let exec = call_within(&mut lim, &[b"EXEC"]).await;
    let Some(Reply::Array(parts)) = &exec else {
        panic!("{exec:?}");
    };
    assert_eq!(parts.len(), 2, "{exec:?}");
    assert!(is_noperm(&parts[0]), "{exec:?}");
    assert_eq!(parts[1], resp_cluster::ok(), "{exec:?}");
    assert_eq!(
        stat(&mut admin, "acl_access_denied_cmd").await,
        denied + 1,
        "refusal counted other than once"
    );
    assert_eq!(
        lim.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}

/// F5 held?: CLIENT REPLY OFF, a transaction whose EXEC is refused (the
/// right taken away at this node): silent, and the transaction is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_refused_exec_ends_its_transaction() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    set_user(&mut admin, &[b"lim", b"on", b">pw", b"~*", b"+@all"]).await;
    let mut lim = authed(c.resp[0], "lim", "pw").await;
    lim.send(&[b"CLIENT", b"REPLY", b"OFF"]).await.unwrap();
    lim.send(&[b"MULTI"]).await.unwrap();
    lim.send(&[b"SET", b"k", b"v"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    set_user(&mut admin, &[b"lim", b"-exec"]).await;
    let denied = stat(&mut admin, "acl_access_denied_cmd").await;
    lim.send(&[b"EXEC"]).await.unwrap();
    // Still silent: the next reply is CLIENT REPLY ON's.
    assert_eq!(
        call_within(&mut lim, &[b"CLIENT", b"REPLY", b"ON"]).await,
        Some(resp_cluster::ok())
    );
    set_user(&mut admin, &[b"lim", b"+exec"]).await;
    let exec = call_within(&mut lim, &[b"EXEC"]).await;
    assert_eq!(
        exec,
        Some(resp_cluster::error("ERR EXEC without MULTI")),
        "the refused EXEC left its transaction open"
    );
    assert_eq!(admin.call(&[b"GET", b"k"]).await, Some(Reply::Null));
    assert_eq!(stat(&mut admin, "acl_access_denied_cmd").await, denied + 1);
}

/// CLIENT REPLY inside MULTI is refused when queued (run at EXEC it
/// answered "internal error" and its OFF silenced EXEC's own reply), and
/// flags the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_is_refused_inside_multi() {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut cl = Client::connect(c.resp[0]).await;
    assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    let refused = cl.call(&[b"CLIENT", b"REPLY", b"OFF"]).await;
    assert!(
        matches!(&refused, Some(Reply::Error(text)) if text.contains("inside MULTI")),
        "{refused:?}"
    );
    let exec = cl.call(&[b"EXEC"]).await;
    assert!(
        matches!(&exec, Some(Reply::Error(text)) if text.starts_with("EXECABORT")),
        "{exec:?}"
    );
    assert_eq!(
        cl.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}
