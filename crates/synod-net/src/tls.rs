//! Mutually authenticated TLS 1.3 for peer links, and the PEM loading that
//! goes with it (public, so that other Synod ports can reuse it).
//!
//! # Who a certificate names
//!
//! A node's certificate is issued by the cluster's CA and carries the DNS
//! subject alternative name **`node-<id>.<cluster>.synod`**, where `<id>` is
//! the node id in decimal and `<cluster>` is one DNS label naming the cluster
//! (`synod certs --cluster`). Node certificates carry both the `serverAuth`
//! and `clientAuth` extended key usages, because every node both dials and
//! accepts.
//!
//! - This node learns `<cluster>` from its own certificate at start-up: the
//!   certificate must name this node's id, or loading fails.
//! - **The dialer** verifies the acceptor's chain against the CA and checks
//!   that it names `node-<dialed>.<cluster>.synod`: it reached the node it
//!   meant to reach, in its own cluster.
//! - **The acceptor** requires a client certificate chaining to the CA; after
//!   the inner Synod handshake (which runs inside TLS) tells it which id the
//!   dialer claims, it checks that the certificate names
//!   `node-<claimed>.<cluster>.synod`. A node holding node 2's key can only
//!   ever speak as node 2.
//! - **Both** also require that the certificate names its node exactly, not
//!   through a wildcard: no DNS name with `*` ending in `.synod`, and no name
//!   in `.<cluster>.synod` other than its own (webpki alone would take
//!   `*.<cluster>.synod` for any node, and a certificate naming two nodes
//!   for either). This node's own certificate is held to the same rules at
//!   start-up.
//!
//! Only TLS 1.3 is offered or accepted, with the `ring` provider.

use crate::der;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synod_core::NodeId;
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The DNS name a certificate for node `id` of `cluster` carries.
pub fn node_name(id: NodeId, cluster: &str) -> String {
    format!("node-{}.{cluster}.synod", id.0)
}

/// Whether `label` may name a cluster: one DNS label of lowercase letters,
/// digits and inner hyphens, 1 to 63 bytes.
pub fn is_cluster_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The crypto provider every Synod TLS config uses (`ring`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS credentials could not be loaded. Each message names the file.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        /// Which credential (CA, certificate, key).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not PEM, or holds nothing of the expected kind.
    #[error("the {what} file {path} holds no usable PEM {what}: {detail}")]
    Pem {
        /// Which credential.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The certificate does not name this node.
    #[error("the certificate {path} does not name node {node}: it needs the DNS name node-{node}.<cluster>.synod, and names {names:?}")]
    NotThisNode {
        /// The certificate file.
        path: PathBuf,
        /// This node's id.
        node: u32,
        /// The DNS names it does carry.
        names: Vec<String>,
    },
    /// The credentials do not fit together (wrong key, not issued by the CA,
    /// expired, an unusable CA).
    #[error("TLS credentials ({path}) are not usable: {detail}")]
    Unusable {
        /// The file the problem is most likely in.
        path: PathBuf,
        /// What rustls or webpki said.
        detail: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, detail: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        path: path.into(),
        detail: detail.to_string(),
    }
}

/// Every certificate in a PEM file (at least one), in file order.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_from_pem(&read("certificate", path)?, path)
}

fn certificates_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error("certificate", path, err))?;
    if certs.is_empty() {
        return Err(pem_error("certificate", path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from_pem(&read("key", path)?, path)
}

fn key_from_pem(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| pem_error("key", path, err))
}

/// The trust anchors in a PEM file of CA certificates (at least one).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_from_pem(&read("CA", path)?, path)
}

fn roots_from_pem(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certificates_from_pem(pem, path).map_err(|err| match err {
        TlsError::Pem { path, detail, .. } => TlsError::Pem {
            what: "CA",
            path,
            detail,
        },
        other => other,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|err| TlsError::Unusable {
            path: path.into(),
            detail: format!("CA certificate: {err}"),
        })?;
    }
    Ok(roots)
}

/// This node's TLS identity for peer links: built once at start-up from the
/// cluster CA, its certificate chain and its key, then shared by every
/// connection. See the module docs for what is checked.
pub struct PeerTls {
    node_id: NodeId,
    cluster: String,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// Checks that an accepted dialer's certificate names the id it claims
    /// (the chain was already verified by the client-certificate verifier).
    name_verifier: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls")
            .field("node_id", &self.node_id)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Where each credential came from, for error messages.
struct Sources<'a> {
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
}

impl PeerTls {
    /// Loads the CA, the certificate chain (this node's first) and the key of
    /// node `node_id` from PEM files, and checks that they fit together: the
    /// key matches the certificate, the certificate is issued by the CA, is
    /// valid now, and names this node.
    pub fn from_pem_files(
        node_id: NodeId,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<PeerTls, TlsError> {
        let (ca_pem, cert_pem, key_pem) = (
            read("CA", ca)?,
            read("certificate", cert)?,
            read("key", key)?,
        );
        PeerTls::build(
            node_id,
            &ca_pem,
            &cert_pem,
            &key_pem,
            Sources { ca, cert, key },
        )
    }

    /// Like [`PeerTls::from_pem_files`], from PEM text held in memory.
    pub fn from_pem(
        node_id: NodeId,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<PeerTls, TlsError> {
        let memory = Path::new("<memory>");
        let sources = Sources {
            ca: memory,
            cert: memory,
            key: memory,
        };
        PeerTls::build(node_id, ca_pem, cert_pem, key_pem, sources)
    }

    fn build(
        node_id: NodeId,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        sources: Sources<'_>,
    ) -> Result<PeerTls, TlsError> {
        let roots = Arc::new(roots_from_pem(ca_pem, sources.ca)?);
        let chain = certificates_from_pem(cert_pem, sources.cert)?;
        let key = key_from_pem(key_pem, sources.key)?;
        let unusable = |path: &Path, err: &dyn fmt::Display| TlsError::Unusable {
            path: path.into(),
            detail: err.to_string(),
        };

        // Which cluster: the label in this node's own name.
        let names = der::dns_names(&chain[0]).ok_or_else(|| {
            pem_error(
                "certificate",
                sources.cert,
                "the certificate does not parse",
            )
        })?;
        let prefix = format!("node-{}.", node_id.0);
        let cluster = names
            .iter()
            .filter_map(|name| name.strip_prefix(&prefix)?.strip_suffix(".synod"))
            .find(|label| is_cluster_label(label))
            .map(str::to_owned)
            .ok_or_else(|| TlsError::NotThisNode {
                path: sources.cert.into(),
                node: node_id.0,
                names: names.clone(),
            })?;

        let provider = provider();
        let name_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|err| unusable(sources.ca, &err))?;
        // Our own certificate must pass the check our peers will make.
        let own_name = server_name(node_id, &cluster);
        name_verifier
            .verify_server_cert(&chain[0], &chain[1..], &own_name, &[], UnixTime::now())
            .map_err(|err| TlsError::Unusable {
                path: sources.cert.into(),
                detail: format!(
                    "the certificate is not valid for {} under the CA {}: {err}",
                    node_name(node_id, &cluster),
                    sources.ca.display()
                ),
            })?;

        // And the checks on names peers make beyond webpki's.
        check_names(&chain[0], node_id, &cluster).map_err(|why| TlsError::Unusable {
            path: sources.cert.into(),
            detail: format!("this node's certificate {why}; peers would refuse it"),
        })?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|err| unusable(sources.ca, &err))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| unusable(sources.ca, &err))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|err| unusable(sources.key, &err))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| unusable(sources.ca, &err))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|err| unusable(sources.key, &err))?;
        Ok(PeerTls {
            node_id,
            cluster,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            name_verifier,
        })
    }

    /// The node this identity belongs to.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The cluster label this node's certificate names.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name the dialer asks for when it dials `peer`.
    pub(crate) fn server_name(&self, peer: NodeId) -> ServerName<'static> {
        server_name(peer, &self.cluster)
    }

    /// The acceptor's check, after the inner handshake: does the dialer's
    /// certificate (already verified against the CA) name the id it claims,
    /// in our cluster? Returns why not.
    pub(crate) fn check_dialer(
        &self,
        certificates: Option<&[CertificateDer<'static>]>,
        claimed: NodeId,
    ) -> Result<(), String> {
        let Some((end_entity, intermediates)) = certificates.and_then(|c| c.split_first()) else {
            return Err("presented no certificate".into());
        };
        self.name_verifier
            .verify_server_cert(
                end_entity,
                intermediates,
                &self.server_name(claimed),
                &[],
                UnixTime::now(),
            )
            .map_err(|err| {
                format!(
                    "holds a certificate that does not name {} ({err})",
                    node_name(claimed, &self.cluster)
                )
            })?;
        check_names(end_entity, claimed, &self.cluster)
    }

    /// The dialer's check after TLS (which verified the chain and that the
    /// certificate is valid for the name we dialed): does it name exactly
    /// `dialed`, and no other node? Returns why not.
    pub(crate) fn check_acceptor(
        &self,
        certificates: Option<&[CertificateDer<'static>]>,
        dialed: NodeId,
    ) -> Result<(), String> {
        let Some(end_entity) = certificates.and_then(<[_]>::first) else {
            return Err("presented no certificate".into());
        };
        check_names(end_entity, dialed, &self.cluster)
    }
}

/// The names a node certificate must (and must not) carry, beyond what
/// webpki checks. Webpki accepts a certificate for `node-3.c.synod` if it
/// names `*.c.synod`, and one naming two nodes works as either; a CA that
/// signed such a certificate (by mistake: `synod certs --hosts` once allowed
/// it) would let one key speak for several members. So a certificate must
/// name `node-<id>.<cluster>.synod` exactly, and carry no wildcard name under
/// `.synod` and no other name in the cluster's domain `.<cluster>.synod`.
/// Returns why not.
fn check_names(end_entity: &[u8], id: NodeId, cluster: &str) -> Result<(), String> {
    let ours = node_name(id, cluster);
    let Some(names) = der::dns_names(end_entity) else {
        return Err("holds a certificate whose names cannot be read".into());
    };
    let domain = format!(".{cluster}.synod");
    let lowercase = |name: &str| name.to_ascii_lowercase();
    let wildcard = names.iter().find(|name| {
        name.contains('*') && lowercase(name).trim_end_matches('.').ends_with(".synod")
    });
    if let Some(name) = wildcard {
        return Err(format!(
            "holds a certificate with the wildcard name {name:?}, which would name every node"
        ));
    }
    let other = names.iter().find(|name| {
        !name.eq_ignore_ascii_case(&ours)
            && lowercase(name).trim_end_matches('.').ends_with(&domain)
    });
    if let Some(name) = other {
        return Err(format!(
            "holds a certificate that also names {name:?}: a certificate may speak for one node only"
        ));
    }
    if !names.iter().any(|name| name.eq_ignore_ascii_case(&ours)) {
        return Err(format!(
            "holds a certificate that does not name {ours} exactly (it names {names:?})"
        ));
    }
    Ok(())
}

fn server_name(id: NodeId, cluster: &str) -> ServerName<'static> {
    // node_name is a valid DNS name whenever the label is (checked at load).
    ServerName::try_from(node_name(id, cluster))
        .unwrap_or_else(|_| ServerName::try_from("invalid.synod").expect("literal"))
        .to_owned()
}

/// How peer links are secured. There is no default: a node must choose.
#[derive(Clone, Debug)]
pub enum PeerSecurity {
    /// Mutually authenticated TLS 1.3 with the cluster CA (see [`PeerTls`]).
    Tls(Arc<PeerTls>),
    /// Plain TCP, with nothing authenticated: anyone who can reach the peer
    /// port can act as any member. Allowed only when the listen address and
    /// every peer address are loopback addresses, and logged as a warning.
    InsecureLoopback,
}

impl PartialEq for PeerSecurity {
    fn eq(&self, other: &PeerSecurity) -> bool {
        match (self, other) {
            (PeerSecurity::Tls(a), PeerSecurity::Tls(b)) => Arc::ptr_eq(a, b),
            (PeerSecurity::InsecureLoopback, PeerSecurity::InsecureLoopback) => true,
            _ => false,
        }
    }
}

impl Eq for PeerSecurity {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_labels() {
        assert!(is_cluster_label("a"));
        assert!(is_cluster_label("prod-eu-1"));
        assert!(!is_cluster_label(""));
        assert!(!is_cluster_label("-a"));
        assert!(!is_cluster_label("a-"));
        assert!(!is_cluster_label("A"));
        assert!(!is_cluster_label("a.b"));
        assert!(!is_cluster_label(&"a".repeat(64)));
        assert_eq!(node_name(NodeId(3), "prod"), "node-3.prod.synod");
    }

    #[test]
    fn garbage_pem_is_an_error_naming_the_file() {
        let err = PeerTls::from_pem(NodeId(1), b"junk", b"junk", b"junk").unwrap_err();
        assert!(err.to_string().contains("CA"), "{err}");
        let missing = PeerTls::from_pem_files(
            NodeId(1),
            Path::new("/nonexistent/ca.pem"),
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
    }
}
