//! Client TLS on the RESP port (issue 13, item 3) with Redis' semantics:
//! a three-node cluster serving TLS on a second port, driven by a rustls
//! client; certificates made with rcgen and loaded from PEM files, as
//! `synod server --tls-cert-file ...` loads them.

use crate::resp_cluster;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use resp_cluster::{cluster, ok, wait_for_count, Client};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synod_kv::tls::{server_config, ClientAuth, TlsSettings};
use synod_resp::Reply;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A CA with a server and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

fn new_ca() -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (cert, Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert, key)
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, issuer) = new_ca();
    let (server, server_key) = leaf(
        &issuer,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(&issuer, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write");
    std::fs::write(dir.path().join("server.crt"), server.pem()).expect("write");
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
    Pki {
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: PrivateKeyDer::try_from(client_key.serialize_der()).expect("key"),
        dir,
    }
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, auth: ClientAuth) -> Arc<rustls::ServerConfig> {
        server_config(&TlsSettings {
            cert_file: self.path("server.crt"),
            key_file: self.path("server.key"),
            ca_cert_file: Some(self.path("ca.crt")),
            auth_clients: auth,
        })
        .expect("server TLS config")
    }

    /// A client trusting this CA, presenting `cert` if given.
    fn connector(
        &self,
        cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("root");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    }

    fn client_cert(&self) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        Some((self.client_chain.clone(), self.client_key.clone_key()))
    }
}

/// Connects over TLS; `None` if the handshake fails.
async fn tls_client(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Option<Client<TlsStream<TcpStream>>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.ok().map(Client::new)
}

/// Whether a PING over TLS gets PONG (TLS 1.3 reports a refused client
/// certificate on the first read, not in the client's handshake).
async fn pings(connector: &TlsConnector, addr: SocketAddr) -> bool {
    match tls_client(connector, addr).await {
        Some(mut client) => client.call(&[b"PING"]).await == Some(Reply::Simple("PONG".into())),
        None => false,
    }
}

/// `--tls-auth-clients yes` (the default): SET on one node and GET on
/// another over TLS with a client certificate; a client without one, or
/// with one from another CA, is refused and counted; the plain port still
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_required_client_certificates_on_a_three_node_cluster() {
    let pki = pki();
    let c = cluster(3, |_| {}, Some(pki.server(ClientAuth::Required))).await;
    let with_cert = pki.connector(pki.client_cert());
    let mut a = tls_client(&with_cert, c.tls[0]).await.expect("handshake");
    assert_eq!(a.call(&[b"SET", b"k", b"over tls"]).await, Some(ok()));
    let mut b = tls_client(&with_cert, c.tls[1]).await.expect("handshake");
    assert_eq!(
        b.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk("over tls".into()))
    );
    // No certificate.
    assert!(!pings(&pki.connector(None), c.tls[2]).await);
    // A certificate from a CA the server does not trust.
    let (_, other_issuer) = new_ca();
    let (stranger, stranger_key) = leaf(
        &other_issuer,
        &["client"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = pki.connector(Some((
        vec![stranger.der().clone()],
        PrivateKeyDer::try_from(stranger_key.serialize_der()).expect("key"),
    )));
    assert!(!pings(&stranger, c.tls[2]).await);
    wait_for_count(c.resp[2], None, "tls_handshake_failures", 2).await;
    // Plain RESP is unaffected.
    let mut plain = Client::connect(c.resp[2]).await;
    assert_eq!(
        plain.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk("over tls".into()))
    );
}

/// `--tls-auth-clients no`: a client without a certificate is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_authentication_serves_clients_without_certificates() {
    let pki = pki();
    let c = cluster(1, |_| {}, Some(pki.server(ClientAuth::Off))).await;
    let mut client = tls_client(&pki.connector(None), c.tls[0])
        .await
        .expect("handshake");
    assert_eq!(client.call(&[b"SET", b"k", b"v"]).await, Some(ok()));
    assert_eq!(
        client.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk("v".into()))
    );
}

/// `--tls-auth-clients optional`: both with and without a certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_optional_client_authentication_serves_both() {
    let pki = pki();
    let c = cluster(1, |_| {}, Some(pki.server(ClientAuth::Optional))).await;
    assert!(pings(&pki.connector(None), c.tls[0]).await);
    assert!(pings(&pki.connector(pki.client_cert()), c.tls[0]).await);
}

/// Bad settings are refused at start with the file named.
#[test]
fn bad_tls_settings_name_the_problem() {
    let pki = pki();
    let missing = |path: &Path| TlsSettings {
        cert_file: path.to_path_buf(),
        key_file: pki.path("server.key"),
        ca_cert_file: Some(pki.path("ca.crt")),
        auth_clients: ClientAuth::Required,
    };
    let err = server_config(&missing(&pki.path("nope.crt"))).expect_err("no such file");
    assert!(err.to_string().contains("nope.crt"), "{err}");
    let no_ca = TlsSettings {
        cert_file: pki.path("server.crt"),
        key_file: pki.path("server.key"),
        ca_cert_file: None,
        auth_clients: ClientAuth::Required,
    };
    let err = server_config(&no_ca).expect_err("no CA");
    assert!(err.to_string().contains("--tls-ca-cert-file"), "{err}");
}
