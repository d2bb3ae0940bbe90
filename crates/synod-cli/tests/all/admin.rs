//! The admin HTTP endpoint of a real `synod server` (issue 13, item 5):
//! with `--password`, `/status` and `/metrics` need credentials.

use crate::common;

use common::Cluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn http(cluster: &Cluster, request: &str) -> String {
    let mut stream =
        TcpStream::connect_timeout(&cluster.http[0], Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

#[test]
fn with_a_password_the_admin_endpoint_needs_credentials() {
    let cluster = Cluster::start(1, &["--password", "sekret"]);
    for path in ["/status", "/metrics"] {
        let refused = http(&cluster, &format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    }
    // "default:sekret"
    let basic = http(
        &cluster,
        "GET /status HTTP/1.0\r\nAuthorization: Basic ZGVmYXVsdDpzZWtyZXQ=\r\n\r\n",
    );
    assert!(basic.starts_with("HTTP/1.1 200"), "{basic}");
    assert!(basic.contains("\"fatal\":false"), "{basic}");
    let bearer = http(
        &cluster,
        "GET /metrics HTTP/1.0\r\nAuthorization: Bearer sekret\r\n\r\n",
    );
    assert!(bearer.starts_with("HTTP/1.1 200"), "{bearer}");
    assert!(
        bearer.contains("synod_peer_messages_refused_total{reason=\"ballot_jump\"} 0"),
        "{bearer}"
    );
    assert!(
        bearer.contains("synod_admin_auth_failures_total 2"),
        "{bearer}"
    );
    // The RESP front end's and the ACL's counters ride along (the same
    // table INFO stats reads).
    for series in [
        "synod_resp_rejected_connections_total ",
        "synod_resp_auth_timeout_total ",
        "synod_resp_accept_failures_total ",
        "synod_acl_auth_failures_total ",
        "synod_acl_denied_keys_total ",
    ] {
        assert!(bearer.contains(series), "{series} missing: {bearer}");
    }
    let head = http(
        &cluster,
        "HEAD /metrics HTTP/1.0\r\nAuthorization: Bearer sekret\r\n\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head:?}"
    );
}
