//! ACL users on a real 3-node cluster: key patterns and categories enforced
//! on every node, across a leader change and a full restart; the password
//! given by --password-file and by the environment (never on a node's
//! command line); failed AUTHs slowed down and counted.

use crate::common;

use common::Cluster;
use std::time::{Duration, Instant};

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(10))?;
    con.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(con)
}

fn user_url(cluster: &Cluster, i: usize, user: &str, pass: &str) -> String {
    format!("redis://{user}:{pass}@{}/", cluster.resp[i])
}

fn acl(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd("ACL");
    for arg in args {
        cmd.arg(*arg);
    }
    cmd.query(con)
}

fn err_text(result: redis::RedisResult<redis::Value>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Retries `f` until it succeeds (a node applies an ACL change a moment
/// after the node that proposed it), for at most 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `app` (~app:* +@read +@write -@dangerous) and `reader` (~* +@read)
/// may do, checked through node `i`.
fn check_rules(cluster: &Cluster, i: usize) {
    let mut app = connect(&user_url(cluster, i, "app", "app-pw")).expect("app connects");
    let ok: String = redis::cmd("SET")
        .arg("app:1")
        .arg("v")
        .query(&mut app)
        .expect("app writes app:*");
    assert_eq!(ok, "OK");
    let e = err_text(redis::cmd("SET").arg("other").arg("v").query(&mut app));
    assert!(e.contains("NOPERM") && e.contains("keys"), "{e}");
    let e = err_text(redis::cmd("FLUSHALL").query(&mut app));
    assert!(e.contains("NOPERM") && e.contains("'flushall'"), "{e}");
    let mut reader =
        connect(&user_url(cluster, i, "reader", "reader-pw")).expect("reader connects");
    let v: String = redis::cmd("GET")
        .arg("app:1")
        .query(&mut reader)
        .expect("reader reads");
    assert_eq!(v, "v");
    let e = err_text(redis::cmd("SET").arg("app:1").arg("x").query(&mut reader));
    assert!(
        e.contains("NOPERM") && e.contains("this user has no permissions to run the 'set' command"),
        "{e}"
    );
    let who: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query(&mut reader)
        .expect("whoami");
    assert_eq!(who, "reader");
}

#[test]
fn acl_users_hold_across_a_leader_change_and_a_full_restart() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = secrets.path().join("password");
    std::fs::write(&file, "admin-secret\n").expect("write password file");
    let mut cluster = Cluster::start(
        3,
        &[
            "--password-file",
            file.to_str().expect("utf-8 path"),
            // Snapshots every few commands: the users travel in them.
            "--snapshot-instances",
            "5",
        ],
    );
    // The password file's secret is the default user's password.
    assert!(connect(&format!("redis://{}/", cluster.resp[1]))
        .and_then(|mut c| redis::cmd("GET").arg("k").query::<Option<String>>(&mut c))
        .is_err());
    let mut admin = cluster.client(0);
    let ok: String = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "app",
                "on",
                ">app-pw",
                "~app:*",
                "+@read",
                "+@write",
                "-@dangerous",
            ][..],
        )
        .query(&mut admin)
        .expect("setuser app");
    assert_eq!(ok, "OK");
    let _: String = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "reader",
                "on",
                ">reader-pw",
                "~*",
                "+@read",
                "+acl|whoami",
            ][..],
        )
        .query(&mut admin)
        .expect("setuser reader");
    // Every node enforces the same rules.
    for i in 0..3 {
        eventually("node applies the users", || {
            connect(&user_url(&cluster, i, "app", "app-pw")).is_ok()
        });
        check_rules(&cluster, i);
    }
    // The log holds the hash, never the password.
    let user: redis::Value = acl(&mut admin, &["GETUSER", "app"]).expect("getuser");
    let text = format!("{user:?}");
    assert!(!text.contains("app-pw"), "{text}");
    assert!(
        text.contains("~app:*") && text.contains("-@dangerous"),
        "{text}"
    );

    // A connection whose user is deleted on another node is closed.
    let _: String = redis::cmd("ACL")
        .arg(&["SETUSER", "temp", "on", ">t", "~*", "+@all"][..])
        .query(&mut admin)
        .expect("setuser temp");
    eventually("temp reaches node 3", || {
        connect(&user_url(&cluster, 2, "temp", "t")).is_ok()
    });
    let mut doomed = connect(&user_url(&cluster, 2, "temp", "t")).expect("temp");
    let _: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut doomed)
        .expect("temp reads");
    let deleted: i64 = redis::cmd("ACL")
        .arg(&["DELUSER", "temp"][..])
        .query(&mut admin)
        .expect("deluser");
    assert_eq!(deleted, 1);
    eventually("the deleted user's connection is refused", || {
        redis::cmd("GET")
            .arg("k")
            .query::<Option<String>>(&mut doomed)
            .is_err()
    });

    // Leader change: kill the leader, rules still hold on the survivors.
    let leader = cluster.leader().expect("a leader");
    cluster.kill9(leader);
    let survivor = (leader + 1) % 3;
    cluster.wait_writable(survivor);
    check_rules(&cluster, survivor);
    let mut admin = cluster.client(survivor);
    let _: String = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "-set"][..])
        .query(&mut admin)
        .expect("revoke set");
    let other = (leader + 2) % 3;
    eventually("revocation reaches the other survivor", || {
        let mut app = connect(&user_url(&cluster, other, "app", "app-pw")).expect("app");
        let r: redis::RedisResult<String> = redis::cmd("SET").arg("app:2").arg("v").query(&mut app);
        r.is_err_and(|e| e.to_string().contains("'set'"))
    });
    let _: String = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "+set"][..])
        .query(&mut admin)
        .expect("grant set");

    // Full restart: the users come back from the log and snapshots. Some
    // node has written a snapshot holding the users' section by now.
    eventually("a snapshot with the users", || {
        (0..3).any(|i| {
            std::fs::read_dir(cluster.data_dir(i).join("snap"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| {
                    std::fs::read(f.path()).is_ok_and(|b| b.windows(8).any(|w| w == b"SYNODACL"))
                })
        })
    });
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_node(i);
    }
    for i in 0..3 {
        cluster.wait_ping(i);
    }
    cluster.wait_writable(0);
    for i in 0..3 {
        // A node checks ACLs against the state it has applied. Right after a
        // restart that can be a prefix that ends between the revocation and
        // the grant above (the grant was accepted but the node learns it was
        // chosen only from the new leader), so wait for the grant itself,
        // not merely for the user to exist.
        eventually("users and the grant after restart", || {
            connect(&user_url(&cluster, i, "app", "app-pw")).is_ok_and(|mut app| {
                redis::cmd("SET")
                    .arg("app:1")
                    .arg("v")
                    .query::<String>(&mut app)
                    .is_ok()
            })
        });
        check_rules(&cluster, i);
    }

    // Failed AUTHs are slowed down and counted: 20 wrong passwords on one
    // connection wait 10+20+40+80+160 ms, then 200 ms each.
    let mut probe = connect(&format!("redis://{}/", cluster.resp[1])).expect("connect");
    let start = Instant::now();
    for _ in 0..20 {
        let r: redis::RedisResult<String> =
            redis::cmd("AUTH").arg("app").arg("wrong").query(&mut probe);
        assert!(r.is_err_and(|e| e.to_string().contains("WRONGPASS")));
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3_300),
        "20 failed AUTHs took only {elapsed:?}"
    );
    let ok: String = redis::cmd("AUTH")
        .arg("app")
        .arg("app-pw")
        .query(&mut probe)
        .expect("right password");
    assert_eq!(ok, "OK");
    let mut admin = cluster.client(1);
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut admin)
        .expect("info");
    let failures: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("acl_access_denied_auth:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("acl_access_denied_auth in INFO stats");
    assert!(failures >= 20, "{info}");
    eprintln!("20 failed AUTHs on one connection took {elapsed:?}; INFO: {failures} failures");
}

/// Child processes of `pid` (Linux).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn synod_cluster_passes_the_password_outside_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A base port with its RESP, Paxos and HTTP ports (base + 1, + 101,
    // + 201) free and handed out to no other test.
    let base = common::free_port_block(202);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_synod"))
        .args([
            "cluster",
            "--nodes",
            "1",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--", "--password=cluster-secret"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("synod cluster");
    let url = format!("redis://:cluster-secret@127.0.0.1:{}/", base + 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ok = false;
    while Instant::now() < deadline {
        if let Ok(mut con) = connect(&url) {
            if redis::cmd("SET")
                .arg("k")
                .arg("v")
                .query::<String>(&mut con)
                .is_ok()
            {
                ok = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let nodes = children(child.id());
    let cmdlines: Vec<String> = nodes
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    let unauthenticated = connect(&format!("redis://127.0.0.1:{}/", base + 1))
        .and_then(|mut c| redis::cmd("GET").arg("k").query::<Option<String>>(&mut c));
    unsafe_kill(child.id());
    let _ = child.wait();
    assert!(ok, "the node took the password from the environment");
    assert!(
        unauthenticated.is_err(),
        "without the password: {unauthenticated:?}"
    );
    assert_eq!(nodes.len(), 1, "one node process");
    for line in &cmdlines {
        assert!(line.contains("server"), "{line}");
        assert!(
            !line.contains("cluster-secret"),
            "password on a node's command line: {line}"
        );
    }
}

/// SIGINT to `synod cluster` (it stops its nodes).
fn unsafe_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(1));
}
