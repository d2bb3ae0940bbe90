//! Issue 13's "done when": client TLS (`--tls-port`, client certificates
//! required), ACL users with key patterns and categories, and
//! `--password-file` together, on a 3-node cluster with TLS peer links,
//! across a leader change and a full restart. The client speaks RESP over
//! rustls as `redis-cli --tls --cacert --cert --key` does
//! (`scripts/resp-tls-check.sh` runs redis-cli and redis-py themselves).

use crate::common;

use common::Cluster;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// `node-N.pem` from `synod certs` names `node-N.test.synod` and carries
/// both the server and the client key usage, so the test uses the peer
/// credentials for the client port too.
fn tls_args(dir: &Path, i: usize, port: u16) -> Vec<String> {
    let file = |name: String| dir.join(name).display().to_string();
    vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        file(format!("node-{}.pem", i + 1)),
        "--tls-key-file".into(),
        file(format!("node-{}-key.pem", i + 1)),
        "--tls-ca-cert-file".into(),
        file("ca.pem".into()),
    ]
}

fn client_config(dir: &Path, with_certificate: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_certificate {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("node-3.pem"))
                .expect("node-3.pem")
                .map(|c| c.expect("cert"))
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("node-3-key.pem")).expect("key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

fn connect(config: &Arc<rustls::ClientConfig>, i: usize, port: u16) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name = ServerName::try_from(format!("node-{}.test.synod", i + 1)).expect("name");
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Sends one command and reads one reply: simple string, error, integer or
/// bulk string (all this test needs), as text (`nil` for a null bulk).
fn call(stream: &mut BufReader<Tls>, args: &[&str]) -> std::io::Result<String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.get_mut().write_all(request.as_bytes())?;
    stream.get_mut().flush()?;
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'$') => {
            let len: i64 = line[1..].parse().map_err(std::io::Error::other)?;
            if len < 0 {
                return Ok("nil".into());
            }
            let mut body = vec![0u8; len as usize + 2];
            stream.read_exact(&mut body)?;
            body.truncate(len as usize);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        _ => Ok(line),
    }
}

fn session(
    config: &Arc<rustls::ClientConfig>,
    i: usize,
    port: u16,
) -> std::io::Result<BufReader<Tls>> {
    Ok(BufReader::new(connect(config, i, port)?))
}

/// Retries `f` on node `i` over TLS as `user` until it returns true.
fn eventually(
    what: &str,
    config: &Arc<rustls::ClientConfig>,
    i: usize,
    port: u16,
    user: (&str, &str),
    mut f: impl FnMut(&mut BufReader<Tls>) -> std::io::Result<bool>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = session(config, i, port).and_then(|mut s| {
            let auth = call(&mut s, &["AUTH", user.0, user.1])?;
            if auth != "+OK" {
                return Err(std::io::Error::other(format!("AUTH: {auth}")));
            }
            f(&mut s)
        });
        match attempt {
            Ok(true) => return,
            Ok(false) => last = "not yet".into(),
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} on node {}: {last}", i + 1);
}

#[test]
fn tls_clients_acl_users_and_a_password_file_across_a_leader_change_and_a_full_restart() {
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let password_file = secret_dir.path().join("password");
    std::fs::write(&password_file, "s3cret-from-a-file\n").expect("write password");
    let password_path = password_file.display().to_string();
    let mut cluster = Cluster::start_tls(
        3,
        &[
            "--password-file",
            &password_path,
            "--snapshot-instances",
            "5",
        ],
    );
    let tls_dir = cluster.tls.clone().expect("TLS credentials");
    let ports: Vec<u16> = common::free_addrs(3).iter().map(|a| a.port()).collect();
    let start_all_with_tls = |cluster: &mut Cluster| {
        for (i, port) in ports.iter().enumerate() {
            let args = tls_args(&tls_dir, i, *port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.restart_node_with(i, &args);
        }
    };
    // The nodes were created by start_tls; restart them with a TLS port.
    for i in 0..3 {
        cluster.kill9(i);
    }
    start_all_with_tls(&mut cluster);
    let config = client_config(&tls_dir, true);
    let default = ("default", "s3cret-from-a-file");

    // A client without a certificate gets no further than the handshake.
    let bare = client_config(&tls_dir, false);
    let refused = session(&bare, 0, ports[0]).and_then(|mut s| call(&mut s, &["PING"]));
    assert!(
        refused.is_err(),
        "a client without a certificate: {refused:?}"
    );

    // Users with key patterns and categories, set over TLS.
    eventually("ACL SETUSER", &config, 0, ports[0], default, |s| {
        Ok(call(
            s,
            &[
                "ACL",
                "SETUSER",
                "app",
                "on",
                ">app-pw",
                "~app:*",
                "+@read",
                "+@write",
                "-@dangerous",
            ],
        )? == "+OK")
    });
    let app = ("app", "app-pw");
    eventually("the rules on node 2", &config, 1, ports[1], app, |s| {
        let set = call(s, &["SET", "app:1", "one"])?;
        let other = call(s, &["SET", "other", "x"])?;
        let flush = call(s, &["FLUSHALL"])?;
        Ok(set == "+OK" && other.starts_with("-NOPERM") && flush.starts_with("-NOPERM"))
    });

    // Leader change: kill the leader; the survivors serve TLS clients with
    // the same rules and the same data.
    let leader = cluster.leader().expect("a leader");
    cluster.kill9(leader);
    let survivor = (leader + 1) % 3;
    eventually(
        "a write after the leader died",
        &config,
        survivor,
        ports[survivor],
        app,
        |s| {
            Ok(call(s, &["SET", "app:2", "two"])? == "+OK"
                && call(s, &["GET", "app:1"])? == "one"
                && call(s, &["GET", "other"])?.starts_with("-NOPERM"))
        },
    );

    // Full restart: every node down, then up again with its TLS port.
    for i in 0..3 {
        cluster.kill9(i);
    }
    start_all_with_tls(&mut cluster);
    for (i, port) in ports.iter().enumerate() {
        eventually("after the full restart", &config, i, *port, app, |s| {
            Ok(call(s, &["GET", "app:1"])? == "one"
                && call(s, &["GET", "app:2"])? == "two"
                && call(s, &["SET", "other", "x"])?.starts_with("-NOPERM"))
        });
    }
    // The password still comes from the file: a wrong one is refused.
    let mut s = session(&config, 2, ports[2]).expect("TLS session");
    let wrong = call(&mut s, &["AUTH", "default", "not-the-password"]).expect("reply");
    assert!(wrong.starts_with("-WRONGPASS"), "{wrong}");
}
