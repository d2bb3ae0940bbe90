//! SAVE, BGSAVE, LASTSAVE, INFO persistence and SHUTDOWN against real
//! `synod server` processes: SHUTDOWN of the leader hands leadership over,
//! stops the node and ends the process with status 0, and the rest of the
//! cluster goes on; a user without @admin may not.

use crate::common;

use common::Cluster;
use redis::cmd;
use std::time::{Duration, Instant};

fn info_persistence(con: &mut redis::Connection) -> String {
    cmd("INFO").arg("persistence").query(con).expect("info")
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

#[test]
fn save_lastsave_and_shutdown_of_the_leader() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().expect("a leader");
    let mut con = cluster.client(leader);
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).expect("set");

    // SAVE: on disk when answered; INFO and LASTSAVE say so.
    let before: i64 = cmd("LASTSAVE").query(&mut con).expect("lastsave");
    let ok: String = cmd("SAVE").query(&mut con).expect("save");
    assert_eq!(ok, "OK");
    let after: i64 = cmd("LASTSAVE").query(&mut con).expect("lastsave");
    assert!(after >= before && after > 0, "{before} {after}");
    let info = info_persistence(&mut con);
    let snapshot: u64 = field(&info, "synod_snapshot_instance")
        .unwrap()
        .parse()
        .unwrap();
    assert!(snapshot > 0, "{info}");
    assert_eq!(
        field(&info, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    assert_eq!(field(&info, "rdb_last_save_time"), Some(after.to_string()));
    assert!(field(&info, "rdb_bgsave_in_progress").is_some());
    assert!(field(&info, "rdb_changes_since_last_save").is_some());
    let started: String = cmd("BGSAVE").query(&mut con).expect("bgsave");
    assert!(
        started == "Background saving started" || started == "Background saving scheduled",
        "{started}"
    );
    let err = cmd("SHUTDOWN")
        .arg("ABORT")
        .query::<String>(&mut con)
        .expect_err("nothing to abort");
    assert!(err.to_string().contains("No shutdown in progress"), "{err}");
    let err = cmd("SHUTDOWN")
        .arg("SAVE")
        .arg("NOSAVE")
        .query::<String>(&mut con)
        .expect_err("syntax");
    assert!(err.to_string().contains("syntax error"), "{err}");

    // SHUTDOWN is @admin: a user without it is refused.
    let _: String = cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">secret")
        .arg("+@all")
        .arg("-@admin")
        .arg("~*")
        .query(&mut con)
        .expect("setuser");
    let mut app = cluster.client(leader);
    let _: String = cmd("AUTH")
        .arg("app")
        .arg("secret")
        .query(&mut app)
        .expect("auth");
    let err = cmd("SHUTDOWN")
        .query::<String>(&mut app)
        .expect_err("no permission");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    assert!(cluster.children[leader]
        .as_mut()
        .unwrap()
        .try_wait()
        .unwrap()
        .is_none());

    // SHUTDOWN of the leader: no reply, the process exits 0.
    let shut = cmd("SHUTDOWN").query::<String>(&mut con);
    assert!(shut.is_err(), "no reply to a SHUTDOWN: {shut:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = cluster.children[leader]
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    cluster.children[leader] = None;
    let log = std::fs::read_to_string(cluster.log_path(leader)).expect("log");
    assert!(log.contains("SHUTDOWN from client"), "{log}");

    // The others elect a leader and serve; the data is there.
    let other = (leader + 1) % 3;
    cluster.wait_writable(other);
    let mut con = cluster.client(other);
    let got: String = cmd("GET").arg("k").query(&mut con).expect("get");
    assert_eq!(got, "v");
}
