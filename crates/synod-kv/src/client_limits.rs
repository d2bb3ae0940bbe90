//! What one client may cost the server, and the count of clients refused or
//! closed for exceeding it.
//!
//! The front end holds three kinds of client memory: the query buffer (bytes
//! read but not yet parsed into a request), the requests being executed (cut
//! from that buffer, bounded by `pipeline_max` and the buffer), and the
//! replies of one batch (the output buffer). Each is bounded here:
//!
//! - per client, the query buffer by `query_buffer_bytes_max` (reads are
//!   sized so it never holds more), the output by `output_buffer_bytes_max`;
//! - across all clients, the query buffers by `query_buffer_total_bytes_max`
//!   ([`QueryBudget`]): a client whose buffer grows past
//!   [`QUERY_BUFFER_FREE_BYTES`] while the total is over the cap is closed.
//!   Clients holding less are never closed by it, so small requests always
//!   go through; the total can therefore exceed the cap by at most
//!   `clients_max * QUERY_BUFFER_FREE_BYTES` (640 MiB at 10,000 clients,
//!   which only an attacker holding that many idle sockets reaches).
//!
//! Every refused or closed client is counted by reason ([`ClientCounters`],
//! shown by INFO under `# Stats`) and logged at most once a second per
//! reason ([`RateLimitedLog`]), with how many were not logged.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// A client whose query buffer holds at most this many bytes (allocated) is
/// never closed by the global cap: every command that is not a large write
/// fits, so ordinary clients keep working while big partial requests are
/// shed.
pub const QUERY_BUFFER_FREE_BYTES: usize = 64 * 1024;

/// Counts of clients refused or closed, by reason. Shared by every listener
/// of one server (plain and TLS); clone the `Arc` from [`crate::ServerConfig`]
/// (crate::ServerConfig) to export them elsewhere (e.g. `/metrics`).
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Connections accepted (both ports), refused ones included
    /// (Redis `total_connections_received`).
    pub connections_received: AtomicU64,
    /// Refused because `clients_max` clients were connected
    /// (Redis `rejected_connections`).
    pub rejected_connections: AtomicU64,
    /// Closed because their query buffer reached `query_buffer_bytes_max`
    /// (Redis `client_query_buffer_limit_disconnections`).
    pub query_buffer_limit: AtomicU64,
    /// Closed because all clients' query buffers together exceeded
    /// `query_buffer_total_bytes_max`.
    pub query_buffer_total_limit: AtomicU64,
    /// Closed because one batch of replies exceeded `output_buffer_bytes_max`
    /// (Redis `client_output_buffer_limit_disconnections`).
    pub output_buffer_limit: AtomicU64,
    /// Closed because all clients' unread replies together exceeded
    /// `output_buffer_total_bytes_max`.
    pub output_buffer_total_limit: AtomicU64,
    /// Closed after `idle_timeout` without a byte from them, or without
    /// taking a reply (Redis `timeout`).
    pub idle_timeout: AtomicU64,
    /// Closed for not authenticating within `auth_timeout` of connecting.
    pub auth_timeout: AtomicU64,
    /// Closed on a protocol error other than the pre-AUTH caps.
    pub protocol_errors: AtomicU64,
    /// Closed for a request over the pre-AUTH caps (`unauthenticated
    /// multibulk length` / `bulk length`).
    pub unauthenticated_limit: AtomicU64,
    /// Failed `accept` calls (out of descriptors, or memory): the pending
    /// connection waits in the backlog and the listener retries after 50 ms.
    pub accept_failures: AtomicU64,
    /// TLS connections whose handshake failed or timed out (no client
    /// certificate when one is required, an untrusted one, not TLS at all).
    pub tls_handshake_failures: AtomicU64,
}

/// One client counter as INFO and `/metrics` show it.
#[derive(Clone, Copy, Debug)]
pub struct ClientCounter {
    /// Its `INFO stats` field (Redis' name where Redis has the counter).
    pub info_name: &'static str,
    /// Its Prometheus counter name.
    pub metric_name: &'static str,
    /// Its Prometheus help text.
    pub help: &'static str,
    pub value: u64,
}

impl ClientCounters {
    /// Every counter, in INFO order: the one list INFO and `/metrics` read.
    pub fn counters(&self) -> [ClientCounter; 12] {
        let counter = |info_name, metric_name, help, value: &AtomicU64| ClientCounter {
            info_name,
            metric_name,
            help,
            value: value.load(Relaxed),
        };
        [
            counter("total_connections_received", "synod_resp_connections_received_total", "Client connections accepted, refused ones included.", &self.connections_received),
            counter("rejected_connections", "synod_resp_rejected_connections_total", "Client connections refused: --max-clients reached.", &self.rejected_connections),
            counter("client_query_buffer_limit_disconnections", "synod_resp_query_buffer_limit_total", "Clients closed: their query buffer reached --client-query-buffer-limit.", &self.query_buffer_limit),
            counter("client_query_buffer_total_limit_disconnections", "synod_resp_query_buffer_total_limit_total", "Clients closed: all query buffers together passed --client-query-buffer-total-limit.", &self.query_buffer_total_limit),
            counter("client_output_buffer_limit_disconnections", "synod_resp_output_buffer_limit_total", "Clients closed: their replies passed --client-output-buffer-limit.", &self.output_buffer_limit),
            counter("client_output_buffer_total_limit_disconnections", "synod_resp_output_buffer_total_limit_total", "Clients closed: all clients' unread replies together passed --client-output-buffer-total-limit.", &self.output_buffer_total_limit),
            counter("client_idle_timeout_disconnections", "synod_resp_idle_timeout_total", "Clients closed after --timeout idle.", &self.idle_timeout),
            counter("client_auth_timeout_disconnections", "synod_resp_auth_timeout_total", "Clients closed for not authenticating within 10 s of connecting (a password is set).", &self.auth_timeout),
            counter("client_protocol_error_disconnections", "synod_resp_protocol_errors_total", "Clients closed on a protocol error.", &self.protocol_errors),
            counter("client_unauthenticated_limit_disconnections", "synod_resp_unauthenticated_limit_total", "Clients closed: a request over the pre-AUTH caps.", &self.unauthenticated_limit),
            counter("tls_handshake_failures", "synod_resp_tls_handshake_failures_total", "Client TLS handshakes that failed or timed out.", &self.tls_handshake_failures),
            counter("client_accept_failures", "synod_resp_accept_failures_total", "Client accept() calls that failed (out of descriptors, usually).", &self.accept_failures),
        ]
    }

    /// Appends the `# Stats` lines of INFO (Redis' names where Redis has the
    /// counter, `synod_`-free descriptive names otherwise).
    pub fn write_info(&self, text: &mut String) {
        text.push_str("# Stats\r\n");
        for counter in self.counters() {
            let _ = write!(text, "{}:{}\r\n", counter.info_name, counter.value);
        }
        text.push_str("\r\n");
    }
}

/// A warning logged at most once per second; the ones in between are
/// counted and reported with the next one logged.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    started: Instant,
    /// Milliseconds since `started` of the last line logged (+1; 0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub(crate) fn new() -> RateLimitedLog {
        RateLimitedLog {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs `message` unless a line was logged less than a second ago.
    pub(crate) fn warn(&self, message: std::fmt::Arguments<'_>) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now_ms < last.saturating_add(1000) {
            self.suppressed.fetch_add(1, Relaxed);
            return;
        }
        if self
            .last_ms
            .compare_exchange(last, now_ms, Relaxed, Relaxed)
            .is_err()
        {
            // Another thread logs this second.
            self.suppressed.fetch_add(1, Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Relaxed);
        if suppressed > 0 {
            warn!("{message} ({suppressed} more like it in the last second not logged)");
        } else {
            warn!("{message}");
        }
    }
}

/// One rate-limited log per reason a client is refused or closed.
#[derive(Debug)]
pub(crate) struct ClientLogs {
    pub rejected: RateLimitedLog,
    pub query_buffer: RateLimitedLog,
    pub output_buffer: RateLimitedLog,
    pub idle: RateLimitedLog,
    pub auth_timeout: RateLimitedLog,
    pub protocol: RateLimitedLog,
    pub tls: RateLimitedLog,
    pub accept: RateLimitedLog,
}

impl ClientLogs {
    pub(crate) fn new() -> ClientLogs {
        ClientLogs {
            rejected: RateLimitedLog::new(),
            query_buffer: RateLimitedLog::new(),
            output_buffer: RateLimitedLog::new(),
            idle: RateLimitedLog::new(),
            auth_timeout: RateLimitedLog::new(),
            protocol: RateLimitedLog::new(),
            tls: RateLimitedLog::new(),
            accept: RateLimitedLog::new(),
        }
    }
}

/// The query-buffer bytes (allocated) of all clients together.
#[derive(Debug, Default)]
pub(crate) struct QueryBudget {
    total: AtomicUsize,
}

impl QueryBudget {
    /// All clients' query buffers together, in bytes.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total.load(Relaxed)
    }
}

/// One client's share of the [`QueryBudget`]; gives it back when dropped,
/// however the connection ends.
pub(crate) struct QueryShare {
    budget: Arc<QueryBudget>,
    bytes: usize,
}

impl QueryShare {
    pub(crate) fn new(budget: Arc<QueryBudget>) -> QueryShare {
        QueryShare { budget, bytes: 0 }
    }

    /// Records that this client's buffer now holds `bytes`, and returns all
    /// clients' total.
    pub(crate) fn set(&mut self, bytes: usize) -> usize {
        if bytes >= self.bytes {
            let grown = bytes - self.bytes;
            self.bytes = bytes;
            self.budget.total.fetch_add(grown, Relaxed) + grown
        } else {
            let shrunk = self.bytes - bytes;
            self.bytes = bytes;
            self.budget.total.fetch_sub(shrunk, Relaxed) - shrunk
        }
    }
}

impl Drop for QueryShare {
    fn drop(&mut self) {
        self.budget.total.fetch_sub(self.bytes, Relaxed);
    }
}

/// How long a TLS handshake may take before the connection is closed: a
/// client that opens a socket and sends nothing must not hold a slot.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once. A node runs on one thread (client
/// connections, the Paxos driver and the peer links share it), and each
/// handshake costs a signature: thousands of ClientHellos at once, from
/// anyone who can reach the port, would otherwise delay the driver's
/// heartbeats past an election timeout. More wait for a turn, within the
/// handshake deadline.
pub(crate) const TLS_HANDSHAKES_MAX: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_warnings_logs_one_and_counts_the_rest() {
        let log = RateLimitedLog::new();
        for i in 0..100 {
            log.warn(format_args!("client {i} refused"));
        }
        // Within one second: the first logged, 99 counted for the next line.
        assert_ne!(log.last_ms.load(Relaxed), 0);
        assert_eq!(log.suppressed.load(Relaxed), 99);
    }

    #[test]
    fn shares_add_up_and_are_returned_on_drop() {
        let budget = Arc::new(QueryBudget::default());
        let mut a = QueryShare::new(Arc::clone(&budget));
        let mut b = QueryShare::new(Arc::clone(&budget));
        assert_eq!(a.set(100), 100);
        assert_eq!(b.set(50), 150);
        assert_eq!(a.set(10), 60);
        drop(b);
        assert_eq!(budget.total(), 10);
        drop(a);
        assert_eq!(budget.total(), 0);
    }
}
