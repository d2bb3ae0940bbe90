//! What a transaction or a pipeline may make the event loop and the apply
//! path do (review of issue 13, D1 and D5): reads whose cost grows with the
//! dataset or a client's pattern never run there, and a queued command is
//! checked again against its user's rules at EXEC.

use crate::resp_cluster;

use resp_cluster::{cluster, ok, Client};
use synod_resp::Reply;

fn queued() -> Option<Reply> {
    Some(Reply::Simple("QUEUED".into()))
}

/// KEYS and SCAN are queued inside MULTI, as Redis does, and answered
/// inside the transaction's read budget (their keys times the pattern's
/// length), which stops them from running over a large dataset on the apply
/// path. (Before the budget, `MULTI; SET w 1; KEYS <pattern>; EXEC` ran the
/// glob over the whole dataset on every replica's apply path.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_scan_inside_multi_are_bounded() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"SET", b"w", b"1"]).await, queued());
    assert_eq!(client.call(&[b"KEYS", b"*a*b"]).await, queued());
    assert_eq!(
        client.call(&[b"SCAN", b"0", b"MATCH", b"x*"]).await,
        queued()
    );
    assert_eq!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(vec![
            ok(),
            Reply::Array(vec![]),
            Reply::Array(vec![Reply::Bulk("0".into()), Reply::Array(vec![])]),
        ]))
    );
    // Over a dataset past the budget, the read answers an error in its
    // place; the write next to it runs.
    let mut pipeline = bytes::BytesMut::new();
    for batch in 0..80 {
        let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in 0..1000 {
            mset.push(format!("key{batch}:{i}").into_bytes());
            mset.push(b"v".to_vec());
        }
        let args: Vec<&[u8]> = mset.iter().map(Vec::as_slice).collect();
        synod_resp::write_request(&mut pipeline, &args);
    }
    client.send_raw(&pipeline).await.expect("send");
    for _ in 0..80 {
        assert_eq!(client.reply().await, Some(ok()));
    }
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(client.call(&[b"SET", b"w", b"2"]).await, queued());
    assert_eq!(client.call(&[b"KEYS", b"*a*b"]).await, queued());
    let Some(Reply::Array(replies)) = client.call(&[b"EXEC"]).await else {
        panic!("EXEC answers an array");
    };
    assert_eq!(replies[0], ok());
    let Reply::Error(refusal) = &replies[1] else {
        panic!("KEYS over 80000 keys is refused inside a transaction: {replies:?}");
    };
    assert!(refusal.contains("inside a transaction"), "{refusal}");
    assert_eq!(
        client.call(&[b"GET", b"w"]).await,
        Some(Reply::Bulk("2".into()))
    );
}

/// A pipeline that mixes a write with a KEYS sends the KEYS as its own log
/// command, answered off the loop, not inside the pipeline's batch (which
/// would run it on every replica's apply path). Checked through the
/// replies: the batch still answers every command in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_keys_is_answered_in_order() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    let mut pipeline = bytes::BytesMut::new();
    synod_resp::write_request(&mut pipeline, &[b"SET", b"ab", b"1"]);
    synod_resp::write_request(&mut pipeline, &[b"KEYS", b"a*b"]);
    synod_resp::write_request(&mut pipeline, &[b"SET", b"axb", b"2"]);
    synod_resp::write_request(&mut pipeline, &[b"KEYS", b"a?b"]);
    client.send_raw(&pipeline).await.expect("send");
    assert_eq!(client.reply().await, Some(ok()));
    assert_eq!(
        client.reply().await,
        Some(Reply::Array(vec![Reply::Bulk("ab".into())]))
    );
    assert_eq!(client.reply().await, Some(ok()));
    assert_eq!(
        client.reply().await,
        Some(Reply::Array(vec![Reply::Bulk("axb".into())]))
    );
}

/// A pipelined command is never refused for the transaction read budget
/// because of the commands the node grouped it with (which TCP segments and
/// `--max-pipeline` decide): one that the budget may charge goes to the log
/// alone. (Before, `SET pa 1` pipelined with `SORT biglist LIMIT 0 1 STORE
/// sdst` over a 70,000-item list answered `ERR 'sort' ... cannot run
/// inside a transaction` for the SORT, which alone answered 1; ZUNIONSTORE
/// and ZRANGESTORE likewise.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_command_is_not_refused_for_its_neighbours() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    const ITEMS: usize = 70_000;
    let numbers: Vec<Vec<u8>> = (0..ITEMS).map(|i| i.to_string().into_bytes()).collect();
    let mut rpush: Vec<&[u8]> = vec![b"RPUSH", b"biglist"];
    rpush.extend(numbers.iter().map(Vec::as_slice));
    assert_eq!(
        client.call(&rpush).await,
        Some(Reply::Integer(ITEMS as i64))
    );
    let mut zadd: Vec<&[u8]> = vec![b"ZADD", b"bigz"];
    for number in &numbers {
        zadd.push(number);
        zadd.push(number);
    }
    assert_eq!(client.call(&zadd).await, Some(Reply::Integer(ITEMS as i64)));
    let mut pipeline = bytes::BytesMut::new();
    let requests: [&[&[u8]]; 8] = [
        &[b"SET", b"pa", b"1"],
        &[b"SORT", b"biglist", b"LIMIT", b"0", b"1", b"STORE", b"sdst"],
        &[b"SET", b"pb", b"1"],
        &[b"ZUNIONSTORE", b"zu", b"1", b"bigz"],
        &[b"SET", b"pc", b"1"],
        &[b"ZRANGESTORE", b"zr", b"bigz", b"0", b"-1"],
        &[b"SORT", b"biglist", b"LIMIT", b"0", b"1"],
        &[b"SET", b"pd", b"1"],
    ];
    for request in requests {
        synod_resp::write_request(&mut pipeline, request);
    }
    client.send_raw(&pipeline).await.expect("send");
    let mut replies = Vec::new();
    for _ in requests {
        replies.push(client.reply().await.expect("a reply"));
    }
    assert_eq!(
        replies,
        [
            ok(),
            Reply::Integer(1),
            ok(),
            Reply::Integer(ITEMS as i64),
            ok(),
            Reply::Integer(ITEMS as i64),
            Reply::Array(vec![Reply::Bulk("0".into())]),
            ok(),
        ]
    );
}

/// A command queued in MULTI is checked again at EXEC against its user's
/// rules as they are then: a permission or key pattern taken away in
/// between discards the transaction. (Before, `AUTH dave; MULTI; SET k v2`,
/// then `ACL SETUSER dave -set` from an admin, then EXEC answered `*1 +OK`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_checks_queued_commands_against_the_current_rules() {
    let c = cluster(1, |cfg| cfg.password = Some("s3cret".into()), None).await;
    let mut admin = Client::connect(c.resp[0]).await;
    assert_eq!(admin.call(&[b"AUTH", b"s3cret"]).await, Some(ok()));
    let setuser = |rules: &'static [&'static [u8]]| {
        let mut args: Vec<&[u8]> = vec![b"ACL", b"SETUSER", b"dave"];
        args.extend_from_slice(rules);
        args
    };
    const NO_SET: &[&[u8]] = &[b"-set"];
    const OTHER_KEYS: &[&[u8]] = &[b"resetkeys", b"~other:*"];
    for (narrowing, reason) in [
        (NO_SET, "no permissions to run the 'set' command"),
        (OTHER_KEYS, "no permissions to access one of the keys"),
    ] {
        assert_eq!(
            admin
                .call(&setuser(&[b"reset", b"on", b">pw", b"+@all", b"~*"]))
                .await,
            Some(ok())
        );
        let mut dave = Client::connect(c.resp[0]).await;
        assert_eq!(dave.call(&[b"AUTH", b"dave", b"pw"]).await, Some(ok()));
        assert_eq!(dave.call(&[b"MULTI"]).await, Some(ok()));
        assert_eq!(dave.call(&[b"SET", b"k", b"v2"]).await, queued());
        assert_eq!(admin.call(&setuser(narrowing)).await, Some(ok()));
        let Some(Reply::Error(refusal)) = dave.call(&[b"EXEC"]).await else {
            panic!("EXEC is refused after {narrowing:?}");
        };
        assert!(refusal.starts_with("EXECABORT "), "{refusal}");
        assert!(refusal.contains(reason), "{refusal}");
        assert_eq!(admin.call(&[b"GET", b"k"]).await, Some(Reply::Null));
    }
    // Rules that still allow the queued commands let EXEC run them.
    assert_eq!(
        admin
            .call(&setuser(&[b"reset", b"on", b">pw", b"+@all", b"~*"]))
            .await,
        Some(ok())
    );
    let mut dave = Client::connect(c.resp[0]).await;
    assert_eq!(dave.call(&[b"AUTH", b"dave", b"pw"]).await, Some(ok()));
    assert_eq!(dave.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(dave.call(&[b"SET", b"k", b"v2"]).await, queued());
    assert_eq!(admin.call(&setuser(&[b"-get"])).await, Some(ok()));
    assert_eq!(dave.call(&[b"EXEC"]).await, Some(Reply::Array(vec![ok()])));
}
