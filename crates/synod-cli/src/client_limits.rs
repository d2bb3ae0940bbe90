//! Start-up decisions about client limits for `synod server`: how many
//! clients the descriptor limit allows, and Redis-style memory sizes.

use clap::Args;
use std::path::PathBuf;
use tracing::{info, warn};

/// `synod server`'s flags for client limits and client TLS, with Redis'
/// names and meanings.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Bytes one client's query buffer (a request not yet complete) may
    /// hold before the client is closed (Redis' client-query-buffer-limit,
    /// whose 1gb default we lower: it also bounds the request size). At
    /// least 1mb, as in Redis. Sizes as Redis writes them: 65536, 64mb, 1gb.
    #[arg(long, default_value = "64mb", value_parser = parse_query_buffer_limit)]
    pub client_query_buffer_limit: usize,
    /// Bytes all clients' query buffers may hold together; past it, a
    /// client growing its buffer beyond 64 KiB is closed (smaller requests
    /// always go through). 0: no limit.
    #[arg(long, default_value = "512mb", value_parser = parse_size_or_unlimited)]
    pub client_query_buffer_total_limit: usize,
    /// Bytes of replies one batch of a client's pipelined requests may
    /// produce before the client is closed (Redis' client-output-buffer-limit
    /// for normal clients, unlimited in Redis). 0: no limit, as in Redis.
    #[arg(long, default_value = "256mb", value_parser = parse_size_or_unlimited)]
    pub client_output_buffer_limit: usize,
    /// Bytes of replies all clients together may leave unread (not yet
    /// taken from their sockets); past it, a client leaving more than 64
    /// KiB of its own unread is closed. 0: no limit.
    #[arg(long, default_value = "1gb", value_parser = parse_size_or_unlimited)]
    pub client_output_buffer_total_limit: usize,
    /// Close a client after this many seconds without a request, or without
    /// taking a reply (Redis' timeout; 0: never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Also serve Redis clients over TLS on this port, on the host of
    /// --resp (Redis' tls-port). Give --resp HOST:0 to serve TLS only (as
    /// Redis' port 0).
    #[arg(long, requires_all = ["tls_cert_file", "tls_key_file"])]
    pub tls_port: Option<u16>,
    /// The TLS port's certificate chain, PEM (Redis' tls-cert-file).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The TLS port's private key, PEM (Redis' tls-key-file).
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates that client certificates must chain to, PEM (Redis'
    /// tls-ca-cert-file). Needed unless --tls-auth-clients no.
    #[arg(long)]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate signed by the CA:
    /// yes (required), optional (verified if presented) or no (Redis'
    /// tls-auth-clients, default yes).
    #[arg(long, default_value = "yes")]
    pub tls_auth_clients: synod_kv::tls::ClientAuth,
}

/// Descriptors kept for everything but clients, whatever the cluster size:
/// stdin/out/err, the RESP, TLS and admin listeners, tokio's epoll and
/// wake-up descriptors, the data directory and its lock, the WAL segment
/// being written and the next one being opened, a snapshot being written
/// and one being read (catch-up), their directory syncs, with room to spare
/// (Redis keeps 32 for fewer of these). Running out of them is not a
/// refused client but a failed WAL or snapshot open, which stops the node.
pub const FDS_RESERVED_BASE: u64 = 64;
/// Descriptors kept per peer: the outbound link, the inbound one, and a
/// reconnect or catch-up connection of each in flight.
pub const FDS_RESERVED_PER_PEER: u64 = 4;
/// Descriptors kept for the admin HTTP port's connections (its own
/// connection cap should not exceed it).
pub const FDS_RESERVED_ADMIN: u64 = 64;

/// The descriptors reserved for a node with `peers` other members.
pub fn fds_reserved(peers: usize) -> u64 {
    FDS_RESERVED_BASE + FDS_RESERVED_ADMIN + FDS_RESERVED_PER_PEER * peers as u64
}

/// The most clients `fd_limit` descriptors allow with `reserved` kept aside
/// (each client holds one), never more than `requested`.
pub fn clients_max_for(requested: usize, fd_limit: u64, reserved: u64) -> usize {
    let allowed = usize::try_from(fd_limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    requested.min(allowed)
}

/// Raises the soft `RLIMIT_NOFILE` to what `requested` clients and the
/// reserve need, at most to the hard limit (Redis does the same at start;
/// it cannot go past the hard limit without privileges), lowers
/// `requested` to what the resulting limit allows, and logs the choice.
/// Returns `None` when not even one client fits.
pub fn clients_max_from_fd_limit(requested: usize, peers: usize) -> Option<usize> {
    let reserved = fds_reserved(peers);
    let wanted = (requested as u64).saturating_add(reserved);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(
            "cannot read the open file limit ({}); keeping --max-clients {requested}",
            std::io::Error::last_os_error()
        );
        return Some(requested);
    }
    // rlim_t is u64 on Linux, not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let (soft, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    let mut effective = soft;
    if soft < wanted {
        let target = wanted.min(hard);
        let raised = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads only the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            effective = target;
        } else {
            warn!(
                "cannot raise the open file limit from {soft} to {target}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    let clients_max = clients_max_for(requested, effective, reserved);
    if clients_max == 0 {
        return None;
    }
    if clients_max < requested {
        warn!(
            "open file limit is {effective} (hard {hard}); {reserved} descriptors are reserved \
             for the WAL, snapshots, peers and the admin port, so --max-clients is reduced from \
             {requested} to {clients_max} (raise `ulimit -n` to {wanted} to allow {requested})"
        );
    } else {
        info!(
            "open file limit {effective} (hard {hard}): {clients_max} clients, {reserved} \
             descriptors reserved for the WAL, snapshots, peers and the admin port"
        );
    }
    Some(clients_max)
}

/// Parses a memory size as Redis' configuration does: a number of bytes,
/// or with a unit: `k`/`m`/`g` (powers of 1000) or `kb`/`mb`/`gb` (powers of
/// 1024), case-insensitive. `64mb` is 67108864.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (b, k, kb, m, mb, g, gb)"
            ))
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 65536, 64mb or 1gb"))?;
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `--client-query-buffer-limit`: at least 1 MiB, as Redis requires (a
/// smaller one would refuse ordinary values).
fn parse_query_buffer_limit(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    if bytes < 1 << 20 {
        return Err(format!("'{text}' is below the minimum of 1mb"));
    }
    Ok(bytes)
}

/// A size where 0 means no limit (Redis' convention for buffer limits).
fn parse_size_or_unlimited(text: &str) -> Result<usize, String> {
    parse_size(text).map(|bytes| if bytes == 0 { usize::MAX } else { bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_redis_reads_them() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("2k"), Ok(2000));
        assert!(parse_size("mb").is_err());
        assert!(parse_size("5 tb").is_err());
        assert!(parse_size("99999999999999999999gb").is_err());
        assert_eq!(parse_size_or_unlimited("0"), Ok(usize::MAX));
        assert!(parse_query_buffer_limit("64kb").is_err());
        assert_eq!(parse_query_buffer_limit("1mb"), Ok(1 << 20));
    }

    #[test]
    fn clients_are_what_the_descriptors_allow_after_the_reserve() {
        // The measured failure: 1,024 descriptors and 10,000 clients
        // allowed; 1,100 idle sockets took the WAL's descriptor.
        let reserved = fds_reserved(2);
        assert_eq!(reserved, 136);
        assert_eq!(clients_max_for(10_000, 1024, reserved), 888);
        assert_eq!(clients_max_for(100, 1024, reserved), 100);
        assert_eq!(clients_max_for(10_000, 100, reserved), 0);
    }
}
