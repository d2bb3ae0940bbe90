//! Credentials for the peer (Paxos) links: `synod certs` makes a cluster CA
//! and one certificate per node, and `synod server`'s peer-TLS flags load them.
//!
//! Files written to `--out DIR`:
//!
//! | file                  | what                                   | mode |
//! |-----------------------|----------------------------------------|------|
//! | `ca.pem`              | the cluster CA certificate (`--tls-ca`)| 0644 |
//! | `ca-key.pem`          | the CA's private key (keep it offline) | 0600 |
//! | `node-<id>.pem`       | node `<id>`'s certificate (`--tls-cert`)| 0644 |
//! | `node-<id>-key.pem`   | node `<id>`'s private key (`--tls-key`)| 0600 |
//!
//! Each node certificate carries the DNS name `node-<id>.<cluster>.synod`
//! (what peers check, see `synod_net::tls`), any `--hosts` names, and both
//! the server and client extended key usages. Keys are ECDSA P-256.
//!
//! When `--out` already holds a CA (`ca.pem` and `ca-key.pem`), `synod
//! certs` issues the new node certificates from it instead of refusing
//! (`synod certs --out DIR --nodes 4` for a node about to join): the cluster
//! name is the CA's, and existing node files are never replaced. `--force`
//! still makes a new CA (and new credentials for the nodes named).

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use synod::{NodeId, PeerSecurity, PeerTls};
use synod_net::tls::{is_cluster_label, node_name};

/// How the peer links of `synod server` are secured. Exactly one of: the
/// three TLS files, or `--insecure-peer-links`.
#[derive(Args, Debug, Clone)]
pub struct PeerLinkArgs {
    /// This node's certificate (PEM, from `synod certs`: node-ID.pem) for
    /// mutually authenticated TLS 1.3 on peer links. Needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM: node-ID-key.pem) for peer links.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA certificate (PEM: ca.pem); peers must present a
    /// certificate from it naming their node id.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Plain, unauthenticated peer links: anyone who can reach the peer port
    /// can act as any member. Only for test clusters on loopback: refused
    /// when any --peers address is outside loopback.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    pub insecure_peer_links: bool,
}

impl PeerLinkArgs {
    /// The security node `id` runs its peer links with, loaded and checked.
    pub fn security(
        &self,
        id: NodeId,
        peers: &BTreeMap<NodeId, SocketAddr>,
    ) -> Result<PeerSecurity, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let tls = PeerTls::from_pem_files(id, ca, cert, key).map_err(|e| e.to_string())?;
                Ok(PeerSecurity::Tls(Arc::new(tls)))
            }
            _ if self.insecure_peer_links => {
                if let Some((other, addr)) = peers.iter().find(|(_, a)| !a.ip().is_loopback()) {
                    return Err(format!(
                        "--insecure-peer-links is for loopback only, but --peers gives node {} the address {addr}; use --tls-cert, --tls-key and --tls-ca (see `synod certs`)",
                        other.0
                    ));
                }
                Ok(PeerSecurity::InsecureLoopback)
            }
            _ => Err("peer links need credentials: give --tls-cert, --tls-key and --tls-ca (make them with `synod certs --out DIR --nodes 1,2,3`), or --insecure-peer-links for a test cluster on loopback".into()),
        }
    }
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write the CA and node credentials to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Node ids to make certificates for: 1,2,3.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<u32>,
    /// Extra names for node certificates (for other tools; Synod itself
    /// checks node-ID.CLUSTER.synod): HOST for every node, or ID=HOST for one.
    /// A HOST that parses as an IP address becomes an IP name. Wildcards and
    /// names ending in .synod are refused.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// The cluster's name in every certificate (one DNS label: a-z, 0-9, -).
    /// Default: a random one, so two clusters never accept each other.
    #[arg(long)]
    cluster: Option<String>,
    /// Replace an existing CA and its node credentials in --out. Without
    /// it, an existing CA issues the certificates of the nodes named (for
    /// nodes joining the cluster later).
    #[arg(long)]
    force: bool,
}

pub fn main(args: CertsArgs) -> ExitCode {
    let hosts = match parse_hosts(&args.hosts) {
        Ok(hosts) => hosts,
        Err(message) => {
            eprintln!("synod certs: {message}");
            return ExitCode::FAILURE;
        }
    };
    let nodes: Vec<NodeId> = args.nodes.iter().map(|id| NodeId(*id)).collect();
    let reuse = !args.force && ca_cert_path(&args.out).exists() && ca_key_path(&args.out).exists();
    let outcome = if reuse {
        issue_from_existing_ca(&args.out, args.cluster.as_deref(), &nodes, &hosts)
            .map(|c| (c, false))
    } else {
        let cluster = args.cluster.clone().unwrap_or_else(random_label);
        write_credentials(&args.out, &cluster, &nodes, &hosts, args.force).map(|()| (cluster, true))
    };
    match outcome {
        Ok((cluster, new_ca)) => {
            println!(
                "synod certs: cluster {cluster}: {} and {} node credentials in {}",
                if new_ca { "CA" } else { "the existing CA" },
                nodes.len(),
                args.out.display()
            );
            println!("  start node ID with: --tls-ca {0}/ca.pem --tls-cert {0}/node-ID.pem --tls-key {0}/node-ID-key.pem", args.out.display());
            println!("  keep {}/ca-key.pem off the servers", args.out.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("synod certs: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Extra subject names: per node id, `None` for every node.
type Hosts = Vec<(Option<NodeId>, String)>;

fn parse_hosts(hosts: &[String]) -> Result<Hosts, String> {
    hosts
        .iter()
        .filter(|h| !h.is_empty())
        .map(|host| {
            let (id, name) = match host.split_once('=') {
                Some((id, name)) => {
                    let id: u32 = id
                        .parse()
                        .map_err(|_| format!("--hosts: '{id}' in '{host}' is not a node id"))?;
                    (Some(NodeId(id)), name)
                }
                None => (None, host.as_str()),
            };
            check_host(name)?;
            Ok((id, name.to_string()))
        })
        .collect()
}

/// Refuses extra names that could make a certificate speak for other nodes:
/// a wildcard (webpki would match `*.c.synod` to every node of cluster c)
/// or any name in `.synod`, where only the `node-<id>.<cluster>.synod` name
/// `synod certs` adds itself belongs (`1=node-2.c.synod` would let node 1's
/// key pass as node 2). Peers refuse such certificates too (synod_net::tls).
fn check_host(name: &str) -> Result<(), String> {
    if name.contains('*') {
        return Err(format!(
            "--hosts '{name}': wildcard names are refused (a wildcard certificate would speak for every node it matches)"
        ));
    }
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    if bare == "synod" || bare.ends_with(".synod") {
        return Err(format!(
            "--hosts '{name}': names in .synod are refused (each certificate already names its node as node-<id>.<cluster>.synod, and an extra one could name another node)"
        ));
    }
    Ok(())
}

/// "c" and eight random hex digits. The randomness is the operating
/// system's, drawn through a fresh key (the public point of an ECDSA key is
/// uniformly random; its first byte is the fixed format tag).
fn random_label() -> String {
    let digits: String = KeyPair::generate()
        .map(|key| {
            key.public_key_raw()
                .iter()
                .skip(1)
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_else(|_| "00000000".into());
    format!("c{digits}")
}

/// File names in a credentials directory.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca-key.pem")
}
pub fn node_cert_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{}.pem", id.0))
}
pub fn node_key_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{}-key.pem", id.0))
}

/// Creates a CA and credentials for `nodes` in `dir`. Refuses to replace an
/// existing CA (or its key) unless `force`.
pub fn write_credentials(
    dir: &Path,
    cluster: &str,
    nodes: &[NodeId],
    hosts: &Hosts,
    force: bool,
) -> Result<(), String> {
    if !is_cluster_label(cluster) {
        return Err(format!(
            "--cluster '{cluster}' must be one DNS label: 1 to 63 of a-z, 0-9 and inner '-'"
        ));
    }
    if nodes.is_empty() {
        return Err("--nodes names no node".into());
    }
    let existing: Vec<PathBuf> = [ca_cert_path(dir), ca_key_path(dir)]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !force {
        return Err(format!(
            "{} already exists: refusing to replace a CA (every node's certificate depends on it); give --force to make a new one",
            existing[0].display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let fail = |what: &str, e: rcgen::Error| format!("cannot make the {what}: {e}");
    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
    let ca = ca_params(cluster)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| fail("CA", e))?;
    write_file(&ca_key_path(dir), ca_key.serialize_pem().as_bytes(), true)?;
    write_file(&ca_cert_path(dir), ca_cert.pem().as_bytes(), false)?;
    let issuer = Issuer::new(ca, ca_key);
    issue_nodes(dir, cluster, nodes, hosts, &issuer)
}

/// The CA's parameters as `write_credentials` makes them: an issuer built
/// from them and the CA's key signs certificates that chain to the CA
/// certificate (same subject, same key identifier).
fn ca_params(cluster: &str) -> Result<CertificateParams, String> {
    let (first_year, last_year) = validity_years();
    let mut ca = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| format!("cannot make the CA: {e}"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, format!("Synod cluster {cluster} CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(first_year, 1, 1);
    ca.not_after = rcgen::date_time_ymd(last_year, 1, 1);
    Ok(ca)
}

/// Issues credentials for `nodes` from the CA already in `dir` (its
/// `ca.pem` and `ca-key.pem`), for nodes that join a running cluster.
/// Returns the cluster name (the CA's; `cluster`, when given, must match
/// it). Refuses to replace a node's existing files. Every certificate is
/// checked to load and chain to the CA, as a node would at start-up.
pub fn issue_from_existing_ca(
    dir: &Path,
    cluster: Option<&str>,
    nodes: &[NodeId],
    hosts: &Hosts,
) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("--nodes names no node".into());
    }
    let read = |path: PathBuf| {
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let ca_pem = read(ca_cert_path(dir))?;
    let ca_key_pem = String::from_utf8(read(ca_key_path(dir))?)
        .map_err(|_| format!("{} is not PEM", ca_key_path(dir).display()))?;
    let found = ca_cluster(&ca_pem).ok_or_else(|| {
        format!(
            "{} was not made by `synod certs` (no 'Synod cluster <name> CA' subject): cannot issue from it; give --force to make a new CA",
            ca_cert_path(dir).display()
        )
    })?;
    if let Some(wanted) = cluster {
        if wanted != found {
            return Err(format!(
                "--cluster {wanted} differs from the CA's cluster {found} in {}: leave --cluster out to issue for cluster {found}",
                ca_cert_path(dir).display()
            ));
        }
    }
    for id in nodes {
        for path in [node_cert_path(dir, *id), node_key_path(dir, *id)] {
            if path.exists() {
                return Err(format!(
                    "{} already exists: refusing to replace node {}'s credentials (remove its files to issue new ones)",
                    path.display(),
                    id.0
                ));
            }
        }
    }
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| format!("{} is not a usable key: {e}", ca_key_path(dir).display()))?;
    let issuer = Issuer::new(ca_params(&found)?, ca_key);
    issue_nodes(dir, &found, nodes, hosts, &issuer)?;
    for id in nodes {
        // Chains to ca.pem and names the node, as peers will check (a CA key
        // that does not match ca.pem is caught here).
        if let Err(err) = PeerTls::from_pem_files(
            *id,
            &ca_cert_path(dir),
            &node_cert_path(dir, *id),
            &node_key_path(dir, *id),
        ) {
            let _ = std::fs::remove_file(node_cert_path(dir, *id));
            let _ = std::fs::remove_file(node_key_path(dir, *id));
            return Err(format!(
                "the certificate issued for node {} does not verify under {} ({err}); is {} the key of that CA?",
                id.0,
                ca_cert_path(dir).display(),
                ca_key_path(dir).display()
            ));
        }
    }
    Ok(found)
}

/// The cluster name in a CA certificate `write_credentials` made: its
/// subject is `CN=Synod cluster <name> CA`, a UTF-8 string in the DER.
fn ca_cluster(ca_pem: &[u8]) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem).ok()?;
    let prefix = b"Synod cluster ";
    let start = der.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let rest = &der[start..];
    let end = rest.windows(3).position(|w| w == b" CA")?;
    let label = std::str::from_utf8(&rest[..end]).ok()?;
    is_cluster_label(label).then(|| label.to_string())
}

/// Writes a key and a certificate signed by `issuer` for each of `nodes`.
fn issue_nodes(
    dir: &Path,
    cluster: &str,
    nodes: &[NodeId],
    hosts: &Hosts,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(), String> {
    let fail = |what: &str, e: rcgen::Error| format!("cannot make the {what}: {e}");
    let (first_year, last_year) = validity_years();
    let (not_before, not_after) = (
        rcgen::date_time_ymd(first_year, 1, 1),
        rcgen::date_time_ymd(last_year, 1, 1),
    );
    for id in nodes {
        let mut names = vec![SanType::DnsName(
            node_name(*id, cluster)
                .try_into()
                .map_err(|e| fail("node name", e))?,
        )];
        for (_, host) in hosts
            .iter()
            .filter(|(only, _)| only.is_none_or(|o| o == *id))
        {
            // parse_hosts checked already; checked again where it matters.
            check_host(host)?;
            names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.clone()
                        .try_into()
                        .map_err(|e| format!("--hosts '{host}' is not a DNS name: {e}"))?,
                ),
            });
        }
        let key = KeyPair::generate().map_err(|e| fail("node key", e))?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        params
            .distinguished_name
            .push(DnType::CommonName, node_name(*id, cluster));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, issuer)
            .map_err(|e| fail("node certificate", e))?;
        write_file(
            &node_key_path(dir, *id),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&node_cert_path(dir, *id), cert.pem().as_bytes(), false)?;
    }
    Ok(())
}

/// From the start of last year to ten years on: a clock a little behind
/// does not reject fresh certificates.
fn validity_years() -> (i32, i32) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Average Gregorian year; off by a day at most, which the margin covers.
    let year = 1970 + i32::try_from(now_s / 31_556_952).unwrap_or(0);
    (year - 1, year + 10)
}

/// Writes a file (replacing it); private ones are created 0600 so that the
/// key is never readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// For `synod cluster`: the credentials in `dir`, made on first use. Reused
/// when the CA and every node's files are there; made afresh when none are;
/// an error (naming what is missing) when only some are.
pub fn ensure_cluster_credentials(dir: &Path, nodes: &[NodeId]) -> Result<bool, String> {
    let mut wanted = vec![ca_cert_path(dir)];
    for id in nodes {
        wanted.push(node_cert_path(dir, *id));
        wanted.push(node_key_path(dir, *id));
    }
    let missing: Vec<&PathBuf> = wanted.iter().filter(|p| !p.exists()).collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if ca_cert_path(dir).exists() || ca_key_path(dir).exists() {
        return Err(format!(
            "{} holds a CA but not {}: remove {} to make new credentials for every node",
            dir.display(),
            missing[0].display(),
            dir.display()
        ));
    }
    write_credentials(dir, &random_label(), nodes, &Vec::new(), false)?;
    Ok(true)
}

/// Makes credentials for node `id` from the CA already in `dir` if it has
/// none (a node that joins a running cluster under a new id). Returns
/// whether it made them. A node with only one of its two files is refused
/// by [`issue_from_existing_ca`] rather than half-replaced.
pub fn ensure_node_credentials(dir: &Path, id: NodeId) -> Result<bool, String> {
    if node_cert_path(dir, id).exists() && node_key_path(dir, id).exists() {
        return Ok(false);
    }
    issue_from_existing_ca(dir, None, &[id], &Vec::new())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_node_gets_credentials_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let founders = [NodeId(1), NodeId(2), NodeId(3)];
        assert!(ensure_cluster_credentials(dir.path(), &founders).unwrap());
        let ca = std::fs::read(ca_cert_path(dir.path())).unwrap();
        assert!(ensure_node_credentials(dir.path(), NodeId(4)).unwrap());
        // Made once; the CA is unchanged.
        assert!(!ensure_node_credentials(dir.path(), NodeId(4)).unwrap());
        assert!(!ensure_node_credentials(dir.path(), NodeId(2)).unwrap());
        assert_eq!(std::fs::read(ca_cert_path(dir.path())).unwrap(), ca);
        PeerTls::from_pem_files(
            NodeId(4),
            &ca_cert_path(dir.path()),
            &node_cert_path(dir.path(), NodeId(4)),
            &node_key_path(dir.path(), NodeId(4)),
        )
        .unwrap();
        // Half a node's files: refused, not replaced.
        std::fs::remove_file(node_key_path(dir.path(), NodeId(4))).unwrap();
        assert!(ensure_node_credentials(dir.path(), NodeId(4)).is_err());
    }

    #[test]
    fn credentials_load_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nodes = [NodeId(1), NodeId(2)];
        let hosts = parse_hosts(&["1=db1.example".into(), "10.0.0.9".into()]).unwrap();
        write_credentials(dir.path(), "prod", &nodes, &hosts, false).unwrap();
        for id in nodes {
            let tls = PeerTls::from_pem_files(
                id,
                &ca_cert_path(dir.path()),
                &node_cert_path(dir.path(), id),
                &node_key_path(dir.path(), id),
            )
            .unwrap();
            assert_eq!(tls.cluster(), "prod");
            let mode = std::fs::metadata(node_key_path(dir.path(), id))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mode = std::fs::metadata(ca_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Node 1's files do not work as node 2's.
        assert!(PeerTls::from_pem_files(
            NodeId(2),
            &ca_cert_path(dir.path()),
            &node_cert_path(dir.path(), NodeId(1)),
            &node_key_path(dir.path(), NodeId(1)),
        )
        .is_err());
        // An existing CA is kept unless forced.
        let again = write_credentials(dir.path(), "prod", &nodes, &hosts, false).unwrap_err();
        assert!(again.contains("refusing to replace a CA"), "{again}");
        // It issues certificates for nodes that join later, under its own
        // cluster name, and never replaces a node's files.
        let ca = std::fs::read(ca_cert_path(dir.path())).unwrap();
        assert_eq!(
            issue_from_existing_ca(dir.path(), None, &[NodeId(4)], &Vec::new()),
            Ok("prod".to_string())
        );
        assert_eq!(std::fs::read(ca_cert_path(dir.path())).unwrap(), ca);
        let four = PeerTls::from_pem_files(
            NodeId(4),
            &ca_cert_path(dir.path()),
            &node_cert_path(dir.path(), NodeId(4)),
            &node_key_path(dir.path(), NodeId(4)),
        )
        .unwrap();
        assert_eq!(four.cluster(), "prod");
        let twice = issue_from_existing_ca(dir.path(), None, &[NodeId(4)], &Vec::new());
        assert!(twice.unwrap_err().contains("already exists"));
        let other = issue_from_existing_ca(dir.path(), Some("dev"), &[NodeId(5)], &Vec::new());
        assert!(other
            .unwrap_err()
            .contains("differs from the CA's cluster prod"));
        write_credentials(dir.path(), "prod", &nodes, &hosts, true).unwrap();
    }

    #[test]
    fn hosts_that_could_name_other_nodes_are_refused() {
        for bad in [
            "*.prod.synod",
            "1=*.prod.synod",
            "*.example.com",
            "1=node-2.prod.synod",
            "NODE-2.Prod.Synod",
            "node-2.prod.synod.",
            "anything.synod",
            "synod",
        ] {
            let err = parse_hosts(&[bad.to_string()]).unwrap_err();
            assert!(
                err.contains("wildcard") || err.contains("names in .synod are refused"),
                "{bad}: {err}"
            );
        }
        // Names of other domains, and IP addresses, are still fine.
        let hosts = parse_hosts(&[
            "db1.example".into(),
            "2=synod.example".into(),
            "10.0.0.9".into(),
        ])
        .unwrap();
        assert_eq!(hosts.len(), 3);
    }

    #[test]
    fn cluster_credentials_are_made_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [NodeId(1), NodeId(2), NodeId(3)];
        assert!(ensure_cluster_credentials(dir.path(), &nodes).unwrap());
        let ca = std::fs::read(ca_cert_path(dir.path())).unwrap();
        assert!(!ensure_cluster_credentials(dir.path(), &nodes).unwrap());
        assert_eq!(std::fs::read(ca_cert_path(dir.path())).unwrap(), ca);
        // A fourth node cannot be added silently with a new CA.
        let more = [NodeId(1), NodeId(2), NodeId(3), NodeId(4)];
        assert!(ensure_cluster_credentials(dir.path(), &more).is_err());
    }

    #[test]
    fn peer_link_flags_must_choose() {
        let peers: BTreeMap<NodeId, SocketAddr> =
            [(NodeId(1), "127.0.0.1:7101".parse().unwrap())].into();
        let none = PeerLinkArgs {
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            insecure_peer_links: false,
        };
        let err = none.security(NodeId(1), &peers).unwrap_err();
        assert!(
            err.contains("--tls-cert") && err.contains("--insecure-peer-links"),
            "{err}"
        );
        let insecure = PeerLinkArgs {
            insecure_peer_links: true,
            ..none.clone()
        };
        assert_eq!(
            insecure.security(NodeId(1), &peers).unwrap(),
            PeerSecurity::InsecureLoopback
        );
        let outside: BTreeMap<NodeId, SocketAddr> =
            [(NodeId(1), "10.1.2.3:7101".parse().unwrap())].into();
        let err = insecure.security(NodeId(1), &outside).unwrap_err();
        assert!(err.contains("loopback only"), "{err}");
    }
}
