//! The proposer's dry run of scripts (issue 16): a script over its budget
//! is refused on the node it was sent to before it enters the log (its
//! writes reach no replica), a dry run that lasts past `lua-time-limit`
//! makes the node answer BUSY, and SCRIPT KILL stops it.

use crate::resp_cluster;

use resp_cluster::{cluster, info_field, ok, Client};
use synod_resp::Reply;

fn is_error_starting(reply: &Option<Reply>, prefix: &str) -> bool {
    matches!(reply, Some(Reply::Error(text)) if text.starts_with(prefix))
}

/// A script that writes, then loops for ever: killed during its dry run, so
/// its write is on no node, and the node serves again at once. Before the
/// dry run the write was applied everywhere (no rollback) and every
/// replica spent the whole budget on the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_script_leaves_nothing_in_the_log() {
    let c = cluster(3, |_| {}, None).await;
    let node = c.resp[1];
    let mut admin = Client::connect(node).await;
    assert_eq!(
        admin
            .call(&[b"CONFIG", b"SET", b"lua-time-limit", b"10"])
            .await,
        Some(ok())
    );
    // In Redis SCRIPT KILL with nothing running answers NOTBUSY.
    assert!(is_error_starting(
        &admin.call(&[b"SCRIPT", b"KILL"]).await,
        "NOTBUSY"
    ));
    let mut runner = Client::connect(node).await;
    // Pipelined: the PING behind the script waits for it, then answers.
    runner
        .send(&[
            b"EVAL",
            b"redis.call('set', KEYS[1], 'written'); while true do end",
            b"1",
            b"k",
        ])
        .await
        .unwrap();
    runner.send(&[b"PING"]).await.unwrap();
    // Busy once the dry run lasted past the limit.
    let mut busy = false;
    for _ in 0..200 {
        let reply = admin.call(&[b"GET", b"k"]).await;
        if is_error_starting(&reply, "BUSY") {
            busy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(busy, "the node never answered BUSY");
    // MULTI is let through; a command queued while busy flags the
    // transaction, as in Redis.
    assert_eq!(admin.call(&[b"MULTI"]).await, Some(ok()));
    assert!(is_error_starting(
        &admin.call(&[b"INCR", b"x"]).await,
        "BUSY"
    ));
    let mut killer = Client::connect(node).await;
    assert_eq!(killer.call(&[b"SCRIPT", b"KILL"]).await, Some(ok()));
    match runner.reply().await {
        Some(Reply::Error(text)) => assert!(text.contains("killed by user"), "{text}"),
        other => panic!("the script answered {other:?}"),
    }
    assert_eq!(runner.reply().await, Some(Reply::Simple("PONG".into())));
    assert!(is_error_starting(
        &admin.call(&[b"EXEC"]).await,
        "EXECABORT"
    ));
    // Nothing of the script reached the log: after a write through the
    // log, no node has its key.
    let mut other = Client::connect(c.resp[0]).await;
    assert_eq!(other.call(&[b"SET", b"after", b"1"]).await, Some(ok()));
    for addr in &c.resp {
        let mut client = Client::connect(*addr).await;
        assert!(client.call(&[b"GET", b"after"]).await.is_some());
        assert_eq!(client.call(&[b"GET", b"k"]).await, Some(Reply::Null));
    }
    assert_eq!(
        info_field(node, None, "synod_script_dry_runs_killed").await,
        1
    );
}

/// Whether `text` is the dry run's refusal of an endless script: its
/// instruction budget ran out (about 1 s here), or, on a machine so loaded
/// that the budget took longer than the dry run's wall bound (5 s, CI with
/// other builds on two cores), that bound. Either way the script was refused
/// before the log, which is what these tests check.
fn refused_by_dry_run(text: &str) -> bool {
    text.contains("budget") || text.contains("its dry run lasted too long")
}

/// A script over its instruction budget is refused by its dry run with the
/// budget error, and its write reaches no node; a script within it runs
/// as before, against the replicated state (the dry run read the key's
/// value from this node's state, the apply changed it on every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_budget_script_is_refused_before_the_log() {
    let c = cluster(3, |_| {}, None).await;
    let node = c.resp[2];
    let mut client = Client::connect(node).await;
    assert_eq!(client.call(&[b"SET", b"n", b"41"]).await, Some(ok()));
    assert_eq!(
        client
            .call(&[b"EVAL", b"return redis.call('incr', KEYS[1])", b"1", b"n"])
            .await,
        Some(Reply::Integer(42))
    );
    let reply = client
        .call(&[
            b"EVAL",
            b"redis.call('set', KEYS[1], 'written'); while true do end",
            b"1",
            b"k",
        ])
        .await;
    assert!(
        matches!(&reply, Some(Reply::Error(text)) if refused_by_dry_run(text)),
        "{reply:?}"
    );
    assert_eq!(client.call(&[b"SET", b"after", b"1"]).await, Some(ok()));
    for addr in &c.resp {
        let mut client = Client::connect(*addr).await;
        assert!(client.call(&[b"GET", b"after"]).await.is_some());
        assert_eq!(client.call(&[b"GET", b"k"]).await, Some(Reply::Null));
        assert_eq!(
            client.call(&[b"GET", b"n"]).await,
            Some(Reply::Bulk(bytes::Bytes::from_static(b"42")))
        );
    }
    // Refused on its budget, or (loaded machine) timed out: one of the two.
    assert_eq!(
        info_field(node, None, "synod_script_dry_runs_refused").await
            + info_field(node, None, "synod_script_dry_runs_timed_out").await,
        1
    );
    assert_eq!(info_field(node, None, "synod_script_dry_runs").await, 2);
}

/// A script inside MULTI is dry-run too: one over its budget discards the
/// transaction (nothing of it is applied), and SCRIPT KILL does not stop a
/// script that has not yet lasted past `lua-time-limit` (as Redis, which
/// can kill only a script that made it busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_script_in_a_transaction_discards_it() {
    let c = cluster(3, |_| {}, None).await;
    let node = c.resp[1];
    let mut client = Client::connect(node).await;
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"SET", b"t", b"1"]).await,
        Some(Reply::Simple("QUEUED".into()))
    );
    assert_eq!(
        client.call(&[b"EVAL", b"while true do end", b"0"]).await,
        Some(Reply::Simple("QUEUED".into()))
    );
    // The default lua-time-limit is 5 s: nothing is busy yet, so nothing to
    // kill while the transaction's script is dry-run.
    client.send(&[b"EXEC"]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut killer = Client::connect(node).await;
    assert!(is_error_starting(
        &killer.call(&[b"SCRIPT", b"KILL"]).await,
        "NOTBUSY"
    ));
    let reply = client.reply().await;
    assert!(
        matches!(&reply, Some(Reply::Error(text)) if text.starts_with("EXECABORT") && refused_by_dry_run(text)),
        "{reply:?}"
    );
    assert_eq!(client.call(&[b"SET", b"after", b"1"]).await, Some(ok()));
    assert_eq!(client.call(&[b"GET", b"t"]).await, Some(Reply::Null));
}

/// A script whose backtracking pattern runs only at apply (it branches on
/// DBSIZE, which the dry run answers from its own copy of the keys it
/// read, none here) passes the dry run; at apply every replica stops it at
/// the same step of its budget (Lua's own matcher would run for longer
/// than the universe's age there), answers the budget's error and keeps
/// its earlier write, and the cluster serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_that_backtracks_only_at_apply_is_stopped_by_the_budget() {
    let c = cluster(3, |_| {}, None).await;
    let node = c.resp[0];
    let mut client = Client::connect(node).await;
    assert_eq!(client.call(&[b"SET", b"present", b"1"]).await, Some(ok()));
    let script = b"redis.call('set', KEYS[1], 'before')
        if redis.call('dbsize') > 1 then
          return string.find(string.rep('a', 100000), string.rep('a*', 10) .. 'b')
        end
        return 'fast'";
    let started = std::time::Instant::now();
    let reply = client.call(&[b"EVAL", script, b"1", b"k"]).await;
    assert!(
        matches!(&reply, Some(Reply::Error(text)) if text.contains("budget")),
        "{reply:?}"
    );
    let took = started.elapsed();
    assert_eq!(info_field(node, None, "synod_script_dry_runs").await, 1);
    assert_eq!(
        info_field(node, None, "synod_script_dry_runs_refused").await,
        0
    );
    assert_eq!(client.call(&[b"SET", b"after", b"1"]).await, Some(ok()));
    for addr in &c.resp {
        let mut client = Client::connect(*addr).await;
        let mut applied = false;
        for _ in 0..200 {
            if client.call(&[b"GET", b"after"]).await
                == Some(Reply::Bulk(bytes::Bytes::from_static(b"1")))
            {
                applied = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(applied, "{addr} never applied the write after the script");
        assert_eq!(
            client.call(&[b"GET", b"k"]).await,
            Some(Reply::Bulk(bytes::Bytes::from_static(b"before")))
        );
    }
    eprintln!("the stopped script answered after {took:?}");
}
