//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/status` (JSON)
//! and `/` (a small HTML page). Three read-only GET routes do not need an
//! HTTP framework: this is a minimal HTTP/1.1 responder with bounded request
//! heads, one request per connection.
//!
//! Hardening (issue 13): at most [`AdminConfig::connections_max`]
//! connections are served at once (more are closed at once and counted in
//! `synod_admin_connections_refused_total`); a request head must arrive
//! within [`HEAD_TIMEOUT`] and fit in [`HEAD_BYTES_MAX`]; the answer must be
//! taken within [`WRITE_TIMEOUT`]. With [`AdminConfig::auth`] set, every
//! route needs credentials: HTTP Basic (`default` and the password, or any
//! user the callback accepts) or `Authorization: Bearer <password>` (the
//! user `default`). `HEAD` is answered with the headers of `GET` and no body.
//! The callback may ask to hold the answer back (a slow-down) or to be asked
//! again later (its check is throttled, e.g. during an AUTH flood): the
//! request waits, up to [`AUTH_WAIT_MAX`] in all, instead of failing with
//! right credentials; past it the answer is `503` with `Retry-After`.

use crate::node::{Node, NodeStatus};
use crate::RoleKind;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// A request head larger than this is refused.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A client that does not send its request head within this is dropped.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not take its answer within this is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on admin connections served at once.
pub const ADMIN_CONNECTIONS_MAX_DEFAULT: usize = 64;

/// Longest a request waits for its credentials' check (slow-downs and
/// throttled retries together); past it the answer is `503`.
pub const AUTH_WAIT_MAX: Duration = Duration::from_secs(5);

/// What an [`AdminAuth`] callback decides about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminVerdict {
    /// Serve it, after holding the answer back this long.
    Allowed(Duration),
    /// Answer `401`, after this long.
    Denied(Duration),
    /// The check could not be made now (it is throttled): ask again after
    /// this long.
    Busy(Duration),
}

/// Checks a request's credentials: `Some((user, password))`, or `None`
/// when it carried none (the callback decides whether it needs any).
pub type AdminAuth = Arc<dyn Fn(Option<(&str, &str)>) -> AdminVerdict + Send + Sync>;

/// How the admin endpoint serves.
#[derive(Clone)]
pub struct AdminConfig {
    /// At most this many connections are served at once; more are closed at
    /// once (and counted).
    pub connections_max: usize,
    /// When set, every route needs credentials this callback accepts.
    pub auth: Option<AdminAuth>,
    /// More Prometheus series appended to `/metrics` (e.g. the RESP front
    /// end's refused clients and failed AUTHs, which this crate cannot see).
    pub extra_metrics: Option<ExtraMetrics>,
}

/// Appends Prometheus text (complete `# HELP`/`# TYPE`/sample lines) to the
/// `/metrics` body.
pub type ExtraMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig {
            connections_max: ADMIN_CONNECTIONS_MAX_DEFAULT,
            auth: None,
            extra_metrics: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("connections_max", &self.connections_max)
            .field("auth", &self.auth.as_ref().map(|_| "callback"))
            .field(
                "extra_metrics",
                &self.extra_metrics.as_ref().map(|_| "callback"),
            )
            .finish()
    }
}

impl AdminConfig {
    /// An authentication callback that accepts the user `default` with
    /// `password`, compared in constant time (the length of the password
    /// may leak through timing, its bytes do not).
    pub fn password_auth(password: impl Into<String>) -> AdminAuth {
        let password: String = password.into();
        Arc::new(move |credentials: Option<(&str, &str)>| {
            let Some((user, given)) = credentials else {
                return AdminVerdict::Denied(Duration::ZERO);
            };
            let same: bool = given.as_bytes().ct_eq(password.as_bytes()).into();
            if same && user == "default" {
                AdminVerdict::Allowed(Duration::ZERO)
            } else {
                AdminVerdict::Denied(Duration::ZERO)
            }
        })
    }
}

/// Serves the admin endpoint on `listener` until `stop` turns true, with
/// the default [`AdminConfig`] (no credentials needed).
pub async fn serve_admin(
    listener: TcpListener,
    node: Arc<Node>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_admin_with(listener, node, stop, AdminConfig::default()).await
}

/// Serves the admin endpoint on `listener` with `config` until `stop`
/// turns true.
pub async fn serve_admin_with(
    listener: TcpListener,
    node: Arc<Node>,
    mut stop: watch::Receiver<bool>,
    config: AdminConfig,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    info!(
        %addr,
        connections_max = config.connections_max,
        auth = config.auth.is_some(),
        "serving admin HTTP (/metrics, /status, /)"
    );
    if !addr.ip().is_loopback() && config.auth.is_none() {
        warn!(%addr, "admin HTTP listens beyond loopback without credentials: anyone who reaches it reads /status and /metrics");
    }
    let slots = Arc::new(Semaphore::new(config.connections_max.max(1)));
    let config = Arc::new(config);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of descriptors, usually: back off instead of
                        // spinning on an accept that keeps failing.
                        debug!("admin accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    // Over the cap: close at once (dropping the stream), so
                    // a flood holds no memory or descriptor here.
                    node.metrics().admin_connections_refused.fetch_add(1, Relaxed);
                    continue;
                };
                let node = Arc::clone(&node);
                let config = Arc::clone(&config);
                node.metrics().admin_connections_open.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    if let Err(err) = respond(stream, &node, &config).await {
                        debug!("admin request failed: {err}");
                    }
                    node.metrics().admin_connections_open.fetch_sub(1, Relaxed);
                    drop(slot);
                });
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// A parsed request head: method, path and the `Authorization` value.
struct Head {
    method: String,
    path: String,
    authorization: Option<String>,
}

fn parse_head(head: &[u8]) -> Head {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    Head {
        method,
        path,
        authorization,
    }
}

/// The callback's verdict on `authorization` (the header's value); a
/// header it cannot read is denied without asking.
fn verdict(authorization: Option<&str>, auth: &AdminAuth) -> AdminVerdict {
    let denied = AdminVerdict::Denied(Duration::ZERO);
    let Some(value) = authorization else {
        // No credentials: the callback decides whether this request needs
        // any (replicated ACL users whose `default` may be `nopass`).
        return auth(None);
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return auth(Some(("default", credentials)));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some(decoded) = base64_decode(credentials) else {
            return denied;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return denied;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return denied;
        };
        return auth(Some((user, password)));
    }
    denied
}

/// Whether the request may be served: `Ok`, or `Err` with the refusal
/// (`401`, or `503` when the check stayed throttled for `wait_max`,
/// [`AUTH_WAIT_MAX`] when serving). Waits out the callback's slow-downs and
/// retries.
async fn authorize(
    authorization: Option<&str>,
    auth: &AdminAuth,
    wait_max: Duration,
) -> Result<(), Answer> {
    let mut waited = Duration::ZERO;
    // Bounded: each round either returns or adds at least 1 ms to `waited`,
    // which may not pass `wait_max`.
    loop {
        match verdict(authorization, auth) {
            AdminVerdict::Allowed(wait) => {
                tokio::time::sleep(wait.min(wait_max)).await;
                return Ok(());
            }
            AdminVerdict::Denied(wait) => {
                tokio::time::sleep(wait.min(wait_max)).await;
                return Err(Answer {
                    extra: "WWW-Authenticate: Basic realm=\"synod\", charset=\"UTF-8\"\r\n",
                    ..Answer::text(
                        "401 Unauthorized",
                        "credentials needed: HTTP Basic (a user allowed to run INFO and its password) or Authorization: Bearer <password>\n",
                    )
                });
            }
            AdminVerdict::Busy(wait) => {
                let wait = wait.max(Duration::from_millis(1));
                if waited + wait > wait_max {
                    return Err(Answer {
                        extra: "Retry-After: 1\r\n",
                        ..Answer::text(
                            "503 Service Unavailable",
                            "too many authentication attempts on this node; try again\n",
                        )
                    });
                }
                tokio::time::sleep(wait).await;
                waited += wait;
            }
        }
    }
}

/// Standard base64 (RFC 4648, with or without padding); `None` if invalid.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

async fn respond(mut stream: TcpStream, node: &Node, config: &AdminConfig) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 || head.len() + n > HEAD_BYTES_MAX {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok(true)
    };
    let complete = tokio::time::timeout(HEAD_TIMEOUT, read_head)
        .await
        .unwrap_or(Ok(false))?;
    let answer = if complete {
        let head = parse_head(&head);
        let refused = match &config.auth {
            Some(auth) if head.method == "GET" || head.method == "HEAD" => {
                authorize(head.authorization.as_deref(), auth, AUTH_WAIT_MAX)
                    .await
                    .err()
            }
            _ => None,
        };
        match refused {
            Some(refusal) => {
                node.metrics().admin_auth_failures.fetch_add(1, Relaxed);
                refusal
            }
            None => answer(&head, node, config),
        }
    } else {
        Answer::text("400 Bad Request", "bad request\n")
    };
    let with_body = !(complete && parse_head(&head).method == "HEAD");
    match tokio::time::timeout(WRITE_TIMEOUT, write(&mut stream, &answer, with_body)).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A response: status line, content type, body, extra header lines.
struct Answer {
    status: &'static str,
    kind: &'static str,
    body: String,
    extra: &'static str,
}

impl Answer {
    fn text(status: &'static str, body: &str) -> Answer {
        Answer {
            status,
            kind: "text/plain",
            body: body.to_string(),
            extra: "",
        }
    }
}

fn answer(head: &Head, node: &Node, config: &AdminConfig) -> Answer {
    if head.method != "GET" && head.method != "HEAD" {
        return Answer {
            extra: "Allow: GET, HEAD\r\n",
            ..Answer::text("405 Method Not Allowed", "GET or HEAD only\n")
        };
    }
    // Credentials were checked before (`authorize`, in `respond`).
    match head.path.as_str() {
        "/metrics" => Answer {
            status: "200 OK",
            kind: "text/plain; version=0.0.4",
            body: {
                let mut body = node.metrics().render();
                if let Some(extra) = &config.extra_metrics {
                    extra(&mut body);
                }
                body
            },
            extra: "",
        },
        "/status" => Answer {
            status: "200 OK",
            kind: "application/json",
            body: status_json(node),
            extra: "",
        },
        "/" | "/index.html" => Answer {
            status: "200 OK",
            kind: "text/html; charset=utf-8",
            body: status_html(node),
            extra: "",
        },
        _ => Answer::text("404 Not Found", "not found\n"),
    }
}

async fn write(stream: &mut TcpStream, answer: &Answer, with_body: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\nCache-Control: no-store\r\n\r\n",
        answer.status,
        answer.kind,
        answer.body.len(),
        answer.extra,
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(answer.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn role_name(role: RoleKind) -> &'static str {
    match role {
        RoleKind::Leader => "leader",
        RoleKind::Candidate => "candidate",
        RoleKind::Follower => "follower",
    }
}

/// The status as JSON (hand-written: every field is a number, a boolean or
/// a fixed word, so nothing needs escaping except the stop reason).
pub fn status_json(node: &Node) -> String {
    let s: NodeStatus = node.status();
    let peers: Vec<String> = node
        .peers_connected()
        .iter()
        .map(|(id, up)| format!("{{\"id\":{},\"connected\":{up}}}", id.0))
        .collect();
    let members: Vec<String> = s.members.iter().map(|m| m.0.to_string()).collect();
    let learners: Vec<String> = s.learners.iter().map(|m| m.0.to_string()).collect();
    let stopped = s.stopped.as_deref().map_or("null".to_string(), |r| {
        format!("\"{}\"", r.replace('\\', "\\\\").replace('"', "\\\""))
    });
    let (election_min, election_max) = node.config().election_timeout();
    format!(
        "{{\"id\":{},\"role\":\"{}\",\"leader\":{},\"members\":[{}],\"learners\":[{}],\"membership_epoch\":{},\"peers\":[{}],\"promised\":{{\"round\":{},\"node\":{}}},\"chosen_instance\":{},\"applied_instance\":{},\"lag\":{},\"snapshot_instance\":{},\"checksum\":\"{:016x}\",\"requests_waiting\":{},\"diverged\":{},\"rebuilding\":{},\"restoring\":{},\"loading\":{},\"stopped\":{},\"fatal\":{},\"election_timeout_ms\":[{},{}]}}\n",
        s.id.0,
        role_name(s.role),
        s.leader.map_or("null".to_string(), |l| l.0.to_string()),
        members.join(","),
        learners.join(","),
        s.membership_epoch,
        peers.join(","),
        s.promised.round,
        s.promised.node.0,
        s.chosen_end.0,
        s.applied_end.0,
        s.chosen_end.0.saturating_sub(s.applied_end.0),
        s.snapshot_end.0,
        s.checksum.0,
        s.requests_waiting,
        s.diverged,
        s.rebuilding,
        s.restoring,
        s.loading,
        stopped,
        s.fatal,
        election_min.as_millis(),
        election_max.as_millis(),
    )
}

fn status_html(node: &Node) -> String {
    let s = node.status();
    let connected = node.peers_connected();
    let mut rows = String::new();
    let everyone = s
        .members
        .iter()
        .map(|m| (m, "voter"))
        .chain(s.learners.iter().map(|m| (m, "learner")));
    for (member, kind) in everyone {
        let (role, link) = if *member == s.id {
            (role_name(s.role), "this node")
        } else if connected.get(member).copied().unwrap_or(false) {
            (
                if s.leader == Some(*member) {
                    "leader"
                } else {
                    ""
                },
                "connected",
            )
        } else {
            (
                if s.leader == Some(*member) {
                    "leader"
                } else {
                    ""
                },
                "down",
            )
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{kind}</td><td>{role}</td><td>{link}</td></tr>",
            member.0
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>synod node {id}</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 12px;text-align:left}}</style></head><body>\
<h1>synod node {id}</h1><p>role: <b>{role}</b> &middot; leader: <b>{leader}</b>{diverged}</p>\
<h2>members</h2><p>membership epoch {epoch} &middot; {voters} voters, {learners} learners</p>\
<table><tr><th>node</th><th>member</th><th>role</th><th>link</th></tr>{rows}</table>\
<h2>log</h2><table><tr><td>instances chosen</td><td>{chosen}</td></tr><tr><td>instances applied</td><td>{applied}</td></tr>\
<tr><td>lag (chosen &minus; applied)</td><td>{lag}</td></tr><tr><td>latest snapshot at</td><td>{snap}</td></tr><tr><td>requests waiting</td><td>{waiting}</td></tr></table>\
<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/status\">/status</a></p></body></html>\n",
        id = s.id.0,
        role = role_name(s.role),
        leader = s.leader.map_or("none".to_string(), |l| l.0.to_string()),
        epoch = s.membership_epoch,
        voters = s.members.len(),
        learners = s.learners.len(),
        diverged = if s.diverged { " &middot; <b style=\"color:red\">DIVERGED</b>" } else { "" },
        chosen = s.chosen_end.0,
        applied = s.applied_end.0,
        lag = s.chosen_end.0.saturating_sub(s.applied_end.0),
        snap = s.snapshot_end.0,
        waiting = s.requests_waiting,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("ZGVmYXVsdDpwdw==").unwrap(), b"default:pw");
        assert_eq!(base64_decode("ZGVmYXVsdDpwdw").unwrap(), b"default:pw");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a b").is_none());
    }

    #[test]
    fn credentials_are_checked_by_scheme() {
        const ALLOWED: AdminVerdict = AdminVerdict::Allowed(Duration::ZERO);
        const DENIED: AdminVerdict = AdminVerdict::Denied(Duration::ZERO);
        let auth = AdminConfig::password_auth("s3cret");
        // "default:s3cret", "other:s3cret", "default:wrong"
        assert_eq!(verdict(Some("Basic ZGVmYXVsdDpzM2NyZXQ="), &auth), ALLOWED);
        assert_eq!(verdict(Some("Basic b3RoZXI6czNjcmV0"), &auth), DENIED);
        assert_eq!(verdict(Some("Basic ZGVmYXVsdDp3cm9uZw=="), &auth), DENIED);
        assert_eq!(verdict(Some("Bearer s3cret"), &auth), ALLOWED);
        assert_eq!(verdict(Some("bearer  s3cret"), &auth), ALLOWED);
        assert_eq!(verdict(Some("Bearer s3cre"), &auth), DENIED);
        assert_eq!(verdict(Some("Bearer "), &auth), DENIED);
        assert_eq!(verdict(Some("Digest x"), &auth), DENIED);
        assert_eq!(verdict(None, &auth), DENIED);
    }

    #[test]
    fn the_authorization_header_is_found_in_any_case() {
        let head = parse_head(
            b"HEAD /status?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Bearer t \r\n\r\n",
        );
        assert_eq!(head.method, "HEAD");
        assert_eq!(head.path, "/status");
        assert_eq!(head.authorization.as_deref(), Some("Bearer t"));
    }

    /// A throttled check is asked again until it answers, within
    /// AUTH_WAIT_MAX; a check that stays throttled answers 503, never 401.
    /// (Before, a throttled or slowed-down check failed at once: right
    /// credentials got 401 during an AUTH flood.)
    #[tokio::test]
    async fn throttled_checks_are_waited_out() {
        use std::sync::atomic::AtomicU32;
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let auth: AdminAuth = Arc::new(move |credentials: Option<(&str, &str)>| {
            assert_eq!(credentials, Some(("default", "pw")));
            match counted.fetch_add(1, Relaxed) {
                0..=2 => AdminVerdict::Busy(Duration::from_millis(10)),
                _ => AdminVerdict::Allowed(Duration::from_millis(5)),
            }
        });
        let wait_max = Duration::from_millis(100);
        let started = std::time::Instant::now();
        assert!(authorize(Some("Bearer pw"), &auth, wait_max).await.is_ok());
        assert_eq!(calls.load(Relaxed), 4);
        assert!(started.elapsed() >= Duration::from_millis(35));

        let busy: AdminAuth = Arc::new(|_| AdminVerdict::Busy(Duration::from_millis(30)));
        let refusal = authorize(Some("Bearer pw"), &busy, wait_max)
            .await
            .unwrap_err();
        assert_eq!(refusal.status, "503 Service Unavailable");

        let denied: AdminAuth = Arc::new(|_| AdminVerdict::Denied(Duration::from_millis(2)));
        let refusal = authorize(None, &denied, wait_max).await.unwrap_err();
        assert_eq!(refusal.status, "401 Unauthorized");
    }
}
