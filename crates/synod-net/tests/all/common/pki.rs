//! Test credentials made with rcgen: a cluster CA and node certificates
//! naming `node-<id>.<cluster>.synod`, as `synod certs` makes them.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::sync::Arc;
use synod_core::NodeId;
use synod_net::tls::node_name;
use synod_net::{PeerSecurity, PeerTls};

/// A CA able to issue node certificates.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub cluster: String,
}

/// One node's credentials as PEM.
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(cluster: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {cluster}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            cluster: cluster.into(),
        }
    }

    /// A certificate with exactly these DNS names.
    pub fn issue_names(&self, names: Vec<String>) -> Credentials {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test node");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Node `id`'s certificate in this CA's cluster.
    pub fn issue(&self, id: NodeId) -> Credentials {
        self.issue_names(vec![node_name(id, &self.cluster)])
    }

    /// Node `id`'s loaded TLS identity.
    pub fn security(&self, id: NodeId) -> PeerSecurity {
        let creds = self.issue(id);
        PeerSecurity::Tls(Arc::new(
            PeerTls::from_pem(
                id,
                self.pem.as_bytes(),
                creds.cert_pem.as_bytes(),
                creds.key_pem.as_bytes(),
            )
            .unwrap(),
        ))
    }
}

/// A rustls client config presenting `creds` (or nothing) and trusting `ca_pem`
/// (or anything: an attacker does not care who answers).
pub fn client_config(creds: Option<&Credentials>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let builder = rustls::ClientConfig::builder_with_provider(synod_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let config = match creds {
        None => builder.with_no_client_auth(),
        Some(creds) => {
            let chain = vec![CertificateDer::from_pem_slice(creds.cert_pem.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// The attacker's verifier: trusts whatever the server presents.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        synod_net::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
