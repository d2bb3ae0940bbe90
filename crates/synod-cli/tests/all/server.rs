//! Real `synod server` processes on loopback, driven with a Redis client
//! crate: commands, pipelines, transactions, cross-node reads, kill -9 of
//! the leader, restart and catch-up, malformed RESP.

use crate::common;

use common::Cluster;
use redis::{cmd, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

#[test]
fn commands_pipelines_transactions_and_failover() {
    let mut cluster = Cluster::start(3, &[]);
    let mut a = cluster.client(0);
    let mut c = cluster.client(2);

    // Basic strings, written on one node and read on another.
    let _: () = cmd("SET").arg("a").arg("b").query(&mut a).expect("set");
    let got: String = cmd("GET").arg("a").query(&mut c).expect("get");
    assert_eq!(got, "b");
    let missing: Option<String> = cmd("GET").arg("nope").query(&mut c).expect("get");
    assert_eq!(missing, None);
    let nx: Option<String> = cmd("SET")
        .arg("a")
        .arg("x")
        .arg("NX")
        .query(&mut a)
        .expect("nx");
    assert_eq!(nx, None);
    let old: Option<String> = cmd("SET")
        .arg("a")
        .arg("c")
        .arg("GET")
        .query(&mut a)
        .expect("get");
    assert_eq!(old.as_deref(), Some("b"));
    let n: i64 = cmd("INCR").arg("n").query(&mut a).expect("incr");
    assert_eq!(n, 1);
    let n: i64 = cmd("INCRBY")
        .arg("n")
        .arg(41)
        .query(&mut c)
        .expect("incrby");
    assert_eq!(n, 42);
    let n: i64 = cmd("DECRBY").arg("n").arg(2).query(&mut a).expect("decrby");
    assert_eq!(n, 40);
    let err = cmd("INCR")
        .arg("a")
        .query::<i64>(&mut a)
        .expect_err("not an integer");
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
    let len: i64 = cmd("APPEND")
        .arg("a")
        .arg("def")
        .query(&mut a)
        .expect("append");
    assert_eq!(len, 4);
    let len: i64 = cmd("STRLEN").arg("a").query(&mut c).expect("strlen");
    assert_eq!(len, 4);
    let _: () = cmd("MSET")
        .arg("m1")
        .arg("1")
        .arg("m2")
        .arg("2")
        .query(&mut a)
        .expect("mset");
    let got: Vec<Option<String>> = cmd("MGET")
        .arg("m1")
        .arg("m2")
        .arg("m3")
        .query(&mut c)
        .expect("mget");
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    let exists: i64 = cmd("EXISTS")
        .arg("m1")
        .arg("m2")
        .arg("m3")
        .query(&mut a)
        .expect("exists");
    assert_eq!(exists, 2);
    let deleted: i64 = cmd("DEL").arg("m1").arg("m3").query(&mut a).expect("del");
    assert_eq!(deleted, 1);
    let kind: String = cmd("TYPE").arg("m2").query(&mut a).expect("type");
    assert_eq!(kind, "string");
    let old: Option<String> = cmd("GETSET")
        .arg("m2")
        .arg("3")
        .query(&mut a)
        .expect("getset");
    assert_eq!(old.as_deref(), Some("2"));
    let old: Option<String> = cmd("GETDEL").arg("m2").query(&mut a).expect("getdel");
    assert_eq!(old.as_deref(), Some("3"));
    let set: i64 = cmd("SETNX")
        .arg("m2")
        .arg("9")
        .query(&mut a)
        .expect("setnx");
    assert_eq!(set, 1);

    // Expiry: stamped by the proposer, applied from stamped times.
    let _: () = cmd("SET")
        .arg("t")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut a)
        .expect("ex");
    let ttl: i64 = cmd("TTL").arg("t").query(&mut c).expect("ttl");
    assert!((98..=100).contains(&ttl), "ttl {ttl}");
    let _: i64 = cmd("PERSIST").arg("t").query(&mut a).expect("persist");
    let ttl: i64 = cmd("TTL").arg("t").query(&mut a).expect("ttl");
    assert_eq!(ttl, -1);
    let _: () = cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(300)
        .query(&mut a)
        .expect("px");
    std::thread::sleep(Duration::from_millis(600));
    // The key expires in the replicated state once a later command's stamp
    // passes its deadline; this write carries such a stamp.
    let _: () = cmd("SET").arg("tick").arg("1").query(&mut a).expect("set");
    let gone: Option<String> = cmd("GET").arg("short").query(&mut c).expect("get");
    assert_eq!(gone, None);
    let ttl: i64 = cmd("PTTL").arg("short").query(&mut a).expect("pttl");
    assert_eq!(ttl, -2);
    let set: i64 = cmd("EXPIRE")
        .arg("n")
        .arg(50)
        .query(&mut a)
        .expect("expire");
    assert_eq!(set, 1);
    let pttl: i64 = cmd("PTTL").arg("n").query(&mut a).expect("pttl");
    assert!(pttl > 40_000 && pttl <= 50_000, "pttl {pttl}");

    // Keyspace commands.
    let mut keys: Vec<String> = cmd("KEYS").arg("m*").query(&mut c).expect("keys");
    keys.sort();
    assert_eq!(keys, vec!["m2".to_string()]);
    let size: i64 = cmd("DBSIZE").query(&mut c).expect("dbsize");
    assert!(size >= 5, "dbsize {size}");
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(2)
            .query(&mut c)
            .expect("scan");
        seen.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as i64, size);
    let wrong = cmd("LPUSH")
        .arg("a")
        .arg("x")
        .query::<i64>(&mut a)
        .expect_err("wrongtype");
    assert!(wrong.to_string().contains("WRONGTYPE"), "{wrong}");
    let unknown = cmd("NOSUCHCMD")
        .arg("x")
        .query::<String>(&mut a)
        .expect_err("unknown");
    assert!(unknown.to_string().contains("unknown command"), "{unknown}");

    // Pipelines: many commands in one round, replies in order.
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
    }
    pipe.cmd("GET").arg("p99").cmd("INCR").arg("p5");
    let (p99, p5): (String, i64) = pipe.query(&mut a).expect("pipeline");
    assert_eq!((p99.as_str(), p5), ("99", 6));

    // Transactions are one replicated command, applied atomically.
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("tx1")
        .arg(5)
        .cmd("INCRBY")
        .arg("tx2")
        .arg(7)
        .query(&mut c)
        .expect("multi/exec");
    assert_eq!((x, y), (5, 7));
    let exec_without_multi = cmd("EXEC").query::<Value>(&mut a).expect_err("no multi");
    assert!(exec_without_multi
        .to_string()
        .contains("EXEC without MULTI"));

    // INFO names the roles.
    let info: String = cmd("INFO").query(&mut a).expect("info");
    assert!(
        info.contains("# Server") && info.contains("process_id:"),
        "{info}"
    );
    assert!(
        info.contains("# Replication") && info.contains("leader_id:"),
        "{info}"
    );
    assert!(
        info.contains("role:leader") || info.contains("role:follower"),
        "{info}"
    );

    // Malformed RESP gets an error, and the node keeps serving.
    for garbage in [
        &b"*3\r\n$3\r\nSET\r\n$99999999999\r\n"[..],
        b"*-7x\r\n",
        b"$5\r\nhello\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nab\r\n",
        b"*1\r\n$4\r\nPI",
        b"\x00\x01\x02\xff\r\n",
    ] {
        let reply = raw(cluster.resp[0], garbage);
        let text = String::from_utf8_lossy(&reply);
        assert!(
            reply.is_empty() || text.starts_with('-'),
            "garbage {garbage:?} got {text:?}"
        );
    }
    let reply = raw(cluster.resp[0], b"PING\r\n");
    assert_eq!(reply, b"+PONG\r\n");

    // kill -9 the leader: the others keep taking writes within seconds.
    let leader = cluster.leader().expect("a leader");
    cluster.kill9(leader);
    let other = (leader + 1) % 3;
    let started = Instant::now();
    cluster.wait_writable(other);
    let failover = started.elapsed();
    eprintln!("writes resumed {failover:?} after kill -9 of the leader");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let mut o = cluster.client(other);
    let _: () = cmd("SET")
        .arg("after")
        .arg("kill")
        .query(&mut o)
        .expect("set after kill");
    for i in 0..20 {
        let _: () = cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut o)
            .expect("set");
    }

    // The killed node restarts from its WAL and catches up.
    cluster.start_node(leader);
    cluster.wait_ping(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut r = cluster.client(leader);
        let got: redis::RedisResult<Option<String>> = cmd("GET").arg("after").query(&mut r);
        if let Ok(Some(v)) = got {
            assert_eq!(v, "kill");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node never caught up: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut r = cluster.client(leader);
    let p5: i64 = cmd("GET").arg("p5").query(&mut r).expect("get");
    assert_eq!(p5, 6);
}

#[test]
fn resp3_auth_and_limits() {
    let cluster = Cluster::start(1, &["--password", "sekret", "--max-value-bytes", "1024"]);
    let no_auth = raw(cluster.resp[0], b"GET a\r\n");
    assert!(String::from_utf8_lossy(&no_auth).starts_with("-NOAUTH"));
    let wrong = raw(cluster.resp[0], b"AUTH nope\r\n");
    assert!(String::from_utf8_lossy(&wrong).starts_with("-WRONGPASS"));
    let ok = raw(cluster.resp[0], b"AUTH sekret\r\nSET a b\r\nGET a\r\n");
    assert_eq!(String::from_utf8_lossy(&ok), "+OK\r\n+OK\r\n$1\r\nb\r\n");
    let hello = raw(
        cluster.resp[0],
        b"HELLO 3 AUTH default sekret\r\nGET nope\r\n",
    );
    let text = String::from_utf8_lossy(&hello);
    assert!(text.starts_with('%'), "{text}");
    assert!(text.ends_with("_\r\n"), "RESP3 null: {text}");
    let mut big = b"AUTH sekret\r\nSET big ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000));
    big.extend_from_slice(b"\r\n");
    let text = String::from_utf8_lossy(&raw(cluster.resp[0], &big)).into_owned();
    assert!(text.starts_with("+OK\r\n-ERR"), "{text}");
}
