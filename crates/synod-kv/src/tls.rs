//! Client TLS on the RESP port, with Redis' settings and their meaning:
//! `tls-cert-file` / `tls-key-file` (the server's certificate chain and
//! key, PEM), `tls-ca-cert-file` (the CA that client certificates must chain
//! to) and `tls-auth-clients` (`yes`: a client must present a certificate
//! the CA signed, the default as in Redis; `optional`: one it presents is
//! verified, none is accepted; `no`: none is asked for).
//!
//! TLS 1.2 and 1.3 through rustls with the ring provider (no OpenSSL), as
//! Redis accepts both by default. A client certificate authenticates the
//! transport only: a password or ACL user still applies on top, as in Redis.

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Whether clients must present a certificate (`--tls-auth-clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `yes`: a certificate signed by the CA is required (Redis' default).
    Required,
    /// `optional`: verified when presented, not required.
    Optional,
    /// `no`: not asked for.
    Off,
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientAuth, String> {
        match text.to_ascii_lowercase().as_str() {
            "yes" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            "no" => Ok(ClientAuth::Off),
            other => Err(format!("'{other}' is not yes, no or optional")),
        }
    }
}

/// Where the TLS credentials are and what is asked of clients.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA certificates client certificates must chain to, PEM. Needed
    /// unless `auth_clients` is [`ClientAuth::Off`].
    pub ca_cert_file: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub auth_clients: ClientAuth,
}

/// Why the TLS settings cannot be used; each says which file and what.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Client certificates are to be verified but no CA was given.
    #[error("--tls-auth-clients yes/optional needs --tls-ca-cert-file (the CA that signs client certificates)")]
    NoCa,
    /// rustls refused the combination (a key that does not match the
    /// certificate, an empty CA store, ...).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

fn pem_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("the private key", path, e))
}

/// Builds the rustls server configuration for the TLS port.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs("the certificate chain", &settings.cert_file)?;
    let key = load_key(&settings.key_file)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match settings.auth_clients {
        ClientAuth::Off => builder.with_no_client_auth(),
        auth => {
            let ca_path = settings.ca_cert_file.as_deref().ok_or(TlsError::NoCa)?;
            let mut roots = RootCertStore::empty();
            for cert in load_certs("the CA certificates", ca_path)? {
                roots
                    .add(cert)
                    .map_err(|e| pem_error("the CA certificates", ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}
