//! Outside review of 2f4a41c..0e7a7e0: a script's SORT BY/GET patterns,
//! `redis.acl_check_cmd`, CLIENT REPLY inside MULTI.
//! acl_check_cmd_of_a_sort_with_a_pattern_still_checks_its_keys and
//! a_scripts_sort_of_a_denied_key_gets_the_key_error_first failed at
//! 0e7a7e0 (the pattern was checked before the keys);
//! sort_of_a_denied_key_with_get_is_noperm and
//! a_script_may_not_run_a_command_its_user_lacks_even_ping failed at
//! dd724b6 too. All fixed since.

use crate::acl_in_flight::{authed, bulk, is_noperm, queued, set_user};
use crate::resp_cluster::{self, Client};

use synod_resp::Reply;

type Conn = Client<tokio::net::TcpStream>;

async fn setup() -> (resp_cluster::Cluster, Conn, Conn) {
    let c = resp_cluster::cluster(3, |_| {}, None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    for (k, v) in [(&b"secret:a"[..], &b"topsecret"[..]), (b"secret:l", b"x")] {
        assert_eq!(admin.call(&[b"SET", k, v]).await, Some(resp_cluster::ok()));
    }
    admin.call(&[b"DEL", b"secret:l"]).await;
    assert_eq!(
        admin.call(&[b"RPUSH", b"secret:l", b"a"]).await,
        Some(Reply::Integer(1))
    );
    assert_eq!(
        admin.call(&[b"RPUSH", b"l", b"a"]).await,
        Some(Reply::Integer(1))
    );
    set_user(
        &mut admin,
        &[b"lim", b"on", b">pw", b"~l", b"~l:*", b"+@all"],
    )
    .await;
    let lim = authed(c.resp[0], "lim", "pw").await;
    (c, admin, lim)
}

fn leaks(reply: &Option<Reply>) -> bool {
    fn walk(r: &Reply) -> bool {
        match r {
            Reply::Bulk(b) => b.as_ref() == b"topsecret",
            Reply::Array(v) => v.iter().any(walk),
            _ => false,
        }
    }
    reply.as_ref().is_some_and(walk)
}

/// Variants of the script SORT: case, order, BY nosort, GET #, STORE,
/// SORT_RO, pcall, BY twice. None may read secret:a (expected to hold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_sort_variants_never_read_outside_patterns() {
    let (_c, _admin, mut lim) = setup().await;
    let scripts: &[&[u8]] = &[
        b"return redis.call('SORT', KEYS[1], 'ALPHA', 'GET', 'secret:*')",
        b"return redis.call('sOrT_rO', KEYS[1], 'gEt', 'secret:*', 'alpha')",
        b"return redis.call('sort', KEYS[1], 'by', 'nosort', 'get', '#', 'get', 'secret:*')",
        b"return redis.call('sort', KEYS[1], 'by', 'secret:*', 'by', 'nosort', 'get', 'secret:*')",
        b"return redis.call('sort', KEYS[1], 'by', 'nosort', 'by', 'secret:*')",
        b"return redis.pcall('sort', KEYS[1], 'alpha', 'get', 'secret:*')",
        b"redis.call('sort', KEYS[1], 'alpha', 'get', 'secret:*', 'store', 'l:out'); return redis.call('lrange', 'l:out', 0, -1)",
        b"redis.pcall('sort', KEYS[1], 'alpha', 'get', 'secret:*', 'store', 'l:out'); return redis.call('lrange', 'l:out', 0, -1)",
    ];
    for script in scripts {
        let r = lim.call(&[b"EVAL", script, b"1", b"l"]).await;
        assert!(
            !leaks(&r),
            "{} leaked: {r:?}",
            String::from_utf8_lossy(script)
        );
    }
    // FCALL of a function the admin loaded, run as lim.
    let mut admin = Client::connect(_c.resp[0]).await;
    let code: &[u8] = b"#!lua name=rv\nredis.register_function('f', function(keys) return redis.pcall('sort', keys[1], 'alpha', 'get', 'secret:*') end)";
    let load = admin.call(&[b"FUNCTION", b"LOAD", b"REPLACE", code]).await;
    assert_eq!(load, Some(bulk("rv")));
    let r = lim.call(&[b"FCALL", b"f", b"1", b"l"]).await;
    assert!(!leaks(&r), "FCALL leaked: {r:?}");
    // A transaction of scripts.
    assert_eq!(lim.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    let s: &[u8] = b"return redis.pcall('sort', KEYS[1], 'alpha', 'get', 'secret:*')";
    assert_eq!(lim.call(&[b"EVAL", s, b"1", b"l"]).await, Some(queued()));
    assert_eq!(
        lim.call(&[b"FCALL", b"f", b"1", b"l"]).await,
        Some(queued())
    );
    let r = lim.call(&[b"EXEC"]).await;
    assert!(!leaks(&r), "EXEC leaked: {r:?}");
}

/// Rights taken between queueing and EXEC: lim had allkeys when it
/// queued the script, loses it before EXEC (expected to hold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allkeys_taken_between_queue_and_exec_is_enforced() {
    let (c, mut admin, _lim) = setup().await;
    set_user(&mut admin, &[b"big", b"on", b">pw", b"allkeys", b"+@all"]).await;
    let mut big = authed(c.resp[0], "big", "pw").await;
    assert_eq!(big.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
    let s: &[u8] = b"return redis.pcall('sort', KEYS[1], 'alpha', 'get', 'secret:*')";
    assert_eq!(big.call(&[b"EVAL", s, b"1", b"l"]).await, Some(queued()));
    set_user(&mut admin, &[b"big", b"resetkeys", b"~l"]).await;
    let r = big.call(&[b"EXEC"]).await;
    assert!(!leaks(&r), "EXEC after resetkeys leaked: {r:?}");
}

/// Redis 7.0's `redis.acl_check_cmd` is `ACLCheckAllUserCommandPerm`: the
/// command and its keys. `SORT secret:l GET x` names a key outside ~l, so
/// it must answer false. 0e7a7e0 maps `SortPatternDenied` to true, and
/// `acl_verdict` returns it before checking the keys: true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_check_cmd_of_a_sort_with_a_pattern_still_checks_its_keys() {
    let (_c, _admin, mut lim) = setup().await;
    let probe = |args: &str| format!("return redis.acl_check_cmd({args}) and 1 or 0").into_bytes();
    // Baselines: denied key alone answers 0, allowed key with GET answers 1.
    let plain = lim
        .call(&[b"EVAL", &probe("'sort', 'secret:l'"), b"0"])
        .await;
    assert_eq!(plain, Some(Reply::Integer(0)));
    let own = lim
        .call(&[b"EVAL", &probe("'sort', 'l', 'get', '#'"), b"0"])
        .await;
    assert_eq!(own, Some(Reply::Integer(1)));
    // A denied key plus a pattern.
    let r = lim
        .call(&[b"EVAL", &probe("'sort', 'secret:l', 'get', '#'"), b"0"])
        .await;
    assert_eq!(
        r,
        Some(Reply::Integer(0)),
        "acl_check_cmd allowed SORT of a denied key"
    );
    let r = lim
        .call(&[
            b"EVAL",
            &probe("'sort', 'l', 'by', 'x*', 'store', 'secret:out'"),
            b"0",
        ])
        .await;
    assert_eq!(
        r,
        Some(Reply::Integer(0)),
        "acl_check_cmd allowed STORE to a denied key"
    );
}

/// Redis checks the keys (scriptCall's ACL check) before `sortCommand`
/// sees the pattern: a script's SORT of a key outside the patterns gets
/// the key error, as it did before 2f4a41c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_sort_of_a_denied_key_gets_the_key_error_first() {
    let (_c, _admin, mut lim) = setup().await;
    let s: &[u8] = b"return redis.pcall('sort', 'secret:l', 'get', '#')";
    let r = lim.call(&[b"EVAL", s, b"0"]).await;
    assert!(
        matches!(&r, Some(Reply::Error(t)) if t.contains("can't access at least one of the keys")),
        "{r:?}"
    );
}

/// Same at the front end (pre-existing: check_keys tests the pattern
/// first): Redis answers NOPERM for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_of_a_denied_key_with_get_is_noperm() {
    let (_c, _admin, mut lim) = setup().await;
    let r = lim.call(&[b"SORT", b"secret:l", b"GET", b"#"]).await;
    assert!(r.as_ref().is_some_and(is_noperm), "{r:?}");
}

/// Redis checks every command a script runs against its user's commands
/// (`scriptCall`): PING, ECHO, TIME and SELECT are answered in
/// `call::run_command` before `acl_verdict` (pre-existing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_may_not_run_a_command_its_user_lacks_even_ping() {
    let (c, mut admin, _lim) = setup().await;
    set_user(
        &mut admin,
        &[
            b"np", b"on", b">pw", b"allkeys", b"+@all", b"-ping", b"-select",
        ],
    )
    .await;
    let mut np = authed(c.resp[0], "np", "pw").await;
    for s in [
        &b"return redis.pcall('ping')"[..],
        b"return redis.pcall('select', '0')",
    ] {
        let r = np.call(&[b"EVAL", s, b"0"]).await;
        assert!(
            matches!(&r, Some(Reply::Error(t)) if t.contains("can't run this command")),
            "{}: {r:?}",
            String::from_utf8_lossy(s)
        );
    }
}

/// CLIENT REPLY inside MULTI: refused, flags the transaction; EXEC answers
/// EXECABORT and nothing runs (expected to hold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_in_multi_aborts_the_transaction() {
    let (c, _admin, _lim) = setup().await;
    let mut cl = Client::connect(c.resp[0]).await;
    for sub in [&b"off"[..], b"SKIP", b"On"] {
        assert_eq!(cl.call(&[b"MULTI"]).await, Some(resp_cluster::ok()));
        assert_eq!(cl.call(&[b"SET", b"l:k", sub]).await, Some(queued()));
        let r = cl.call(&[b"cLiEnT", b"rEpLy", sub]).await;
        assert!(matches!(&r, Some(Reply::Error(_))), "{r:?}");
        let r = cl.call(&[b"EXEC"]).await;
        assert!(
            matches!(&r, Some(Reply::Error(t)) if t.starts_with("EXECABORT")),
            "{r:?}"
        );
        assert_eq!(cl.call(&[b"GET", b"l:k"]).await, Some(Reply::Null));
    }
    assert_eq!(
        cl.call(&[b"PING"]).await,
        Some(Reply::Simple("PONG".into()))
    );
}
