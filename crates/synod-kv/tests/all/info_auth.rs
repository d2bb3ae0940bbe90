//! INFO's sections as Redis 7.0 selects them (default, all, everything,
//! any case, each once), commandstats counting calls, rejections and
//! failures, the keyspace's `expires=`, and AUTH's edge cases (issue 16).

use crate::resp_cluster;

use resp_cluster::{cluster, error, ok, Client};
use synod_resp::Reply;

/// INFO's text, whatever the protocol wrote it as.
async fn info(client: &mut Client<tokio::net::TcpStream>, sections: &[&[u8]]) -> String {
    let mut args: Vec<&[u8]> = vec![b"INFO"];
    args.extend_from_slice(sections);
    match client.call(&args).await {
        Some(Reply::Bulk(text)) => String::from_utf8_lossy(&text).into_owned(),
        Some(Reply::Verbatim(text)) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("INFO answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_sections_commandstats_and_keyspace() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(client.call(&[b"SET", b"a", b"1"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"SET", b"b", b"x", b"PX", b"100000"]).await,
        Some(ok())
    );
    assert_eq!(
        client.call(&[b"INCR", b"b"]).await,
        Some(error("ERR value is not an integer or out of range"))
    );
    assert_eq!(
        client.call(&[b"GET"]).await,
        Some(error("ERR wrong number of arguments for 'get' command"))
    );

    let default = info(&mut client, &[]).await;
    for field in [
        "redis_version",
        "used_cpu_user",
        "used_memory",
        "aof_enabled:1",
    ] {
        assert!(default.contains(field), "{field} missing: {default}");
    }
    assert!(!default.contains("rejected_calls"), "{default}");
    assert!(default.contains("db0:keys=2,expires=1,"), "{default}");

    let stats = info(&mut client, &[b"commandSTATS"]).await;
    assert!(!stats.contains("used_memory"), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    assert!(
        stats.contains("cmdstat_incr:calls=1,")
            && stats.contains("rejected_calls=0,failed_calls=1"),
        "{stats}"
    );
    assert!(
        stats.contains("cmdstat_get:calls=0,") && stats.contains("rejected_calls=1,failed_calls=0"),
        "{stats}"
    );
    assert!(!stats.contains("cmdstat_nosuchcommand"), "{stats}");

    for every in [&b"all"[..], b"everything"] {
        let text = info(&mut client, &[every]).await;
        assert!(
            text.contains("rejected_calls") && text.contains("used_memory"),
            "{text}"
        );
    }
    let cpu = info(&mut client, &[b"cpu"]).await;
    assert!(
        cpu.contains("used_cpu_sys:") && !cpu.contains("used_memory"),
        "{cpu}"
    );
    let twice = info(&mut client, &[b"cpu", b"all"]).await;
    assert_eq!(
        twice.matches("used_cpu_user_children").count(),
        1,
        "{twice}"
    );
    let default_and_cpu = info(&mut client, &[b"cpu", b"default"]).await;
    assert!(
        !default_and_cpu.contains("rejected_calls"),
        "{default_and_cpu}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_edge_cases_answer_as_redis() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(
        client.call(&[b"AUTH", b"a", b"b", b"c"]).await,
        Some(error("ERR syntax error"))
    );
    assert_eq!(
        client.call(&[b"AUTH"]).await,
        Some(error("ERR wrong number of arguments for 'auth' command"))
    );
    // No password set: the default user takes any password.
    assert_eq!(client.call(&[b"AUTH", b"default", b"x"]).await, Some(ok()));
    assert!(matches!(
        client.call(&[b"AUTH", b"x"]).await,
        Some(Reply::Error(text)) if text.contains("without any password configured")
    ));
}

/// In a pipeline, SUBSCRIBE runs after the PUBLISH before it, as in Redis:
/// the publish reaches nobody and no message follows the confirmation
/// (pub/sub review: the subscription used to take effect first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_subscribe_does_not_overtake_a_publish() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    // One write, so that the server reads both at once.
    let pipeline =
        b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$1\r\nm\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n";
    client.send_raw(pipeline).await.expect("send");
    assert_eq!(client.reply().await, Some(Reply::Integer(0)));
    let confirmation = Reply::Array(vec![
        Reply::Bulk("subscribe".into()),
        Reply::Bulk("ch".into()),
        Reply::Integer(1),
    ]);
    assert_eq!(client.reply().await, Some(confirmation));
    // Nothing else: a later PUBLISH from elsewhere is the next message.
    let mut other = Client::connect(c.resp[0]).await;
    assert_eq!(
        other.call(&[b"PUBLISH", b"ch", b"n"]).await,
        Some(Reply::Integer(1))
    );
    let message = Reply::Array(vec![
        Reply::Bulk("message".into()),
        Reply::Bulk("ch".into()),
        Reply::Bulk("n".into()),
    ]);
    assert_eq!(client.reply().await, Some(message));
}

/// Commandstats by table index lists exactly the called listed commands, in
/// name order, whatever the case; unknown, over-long and non-UTF-8 names are
/// not counted; RESETSTAT forgets all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commandstats_names_and_reset() {
    let c = cluster(1, |_| {}, None).await;
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(client.call(&[b"sEt", b"a", b"1"]).await, Some(ok()));
    assert_eq!(client.call(&[b"SET", b"a", b"1"]).await, Some(ok()));
    assert!(matches!(
        client.call(&[b"set\xff", b"a"]).await,
        Some(Reply::Error(_))
    ));
    assert!(matches!(
        client.call(&[&[b'x'; 40][..]]).await,
        Some(Reply::Error(_))
    ));
    assert!(matches!(
        client.call(&[b"SETX"]).await,
        Some(Reply::Error(_))
    ));
    assert!(matches!(
        client.call(&[b"zAdD", b"z", b"x", b"m"]).await,
        Some(Reply::Error(_))
    ));
    assert!(matches!(
        client.call(&[b"Get"]).await,
        Some(Reply::Error(_))
    ));
    assert_eq!(client.call(&[b"MULTI"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"incr", b"n"]).await,
        Some(Reply::simple("QUEUED"))
    );
    assert!(matches!(
        client.call(&[b"EXEC"]).await,
        Some(Reply::Array(_))
    ));
    let stats = info(&mut client, &[b"commandstats"]).await;
    let names: Vec<&str> = stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["exec", "get", "incr", "multi", "set", "zadd"],
        "{stats}"
    );
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    assert!(
        stats.contains(
            "cmdstat_get:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
        ),
        "{stats}"
    );
    assert!(
        stats.contains("cmdstat_zadd:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,"),
        "{stats}"
    );
    assert_eq!(client.call(&[b"CONFIG", b"RESETSTAT"]).await, Some(ok()));
    let stats = info(&mut client, &[b"commandstats"]).await;
    assert!(
        !stats.contains("cmdstat_set") && !stats.contains("cmdstat_get"),
        "{stats}"
    );
    // INFO itself, after the reset, is counted once it answered.
    let stats = info(&mut client, &[b"commandstats"]).await;
    assert!(stats.contains("cmdstat_info:calls=1,"), "{stats}");
}

/// HELLO on every node of a cluster, leader or follower, says `master`
/// (each takes writes; before stop 62 a follower said `replica`, and a
/// client that routes writes by role would not write to it) and the
/// Redis version whose commands are built (it said 7.2.0), as INFO does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_says_master_and_the_built_version_on_every_node() {
    let c = cluster(3, |_| {}, None).await;
    for addr in &c.resp {
        let mut client = Client::connect(*addr).await;
        let Some(Reply::Map(fields)) = client.call(&[b"HELLO", b"3"]).await else {
            panic!("HELLO 3 on {addr} is not a map");
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == Reply::Bulk(name.as_bytes().to_vec().into()))
                .map(|(_, value)| value.clone())
        };
        assert_eq!(field("role"), Some(Reply::Bulk("master".into())), "{addr}");
        assert_eq!(
            field("version"),
            Some(Reply::Bulk("7.0.15".into())),
            "{addr}"
        );
        let text = info(&mut client, &[b"server"]).await;
        assert!(text.contains("redis_version:7.0.15\r\n"), "{text}");
    }
}
