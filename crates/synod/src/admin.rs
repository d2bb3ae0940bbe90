//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/status` (JSON)
//! and `/` (a small HTML page). Three read-only GET routes do not need an
//! HTTP framework: this is a minimal HTTP/1.1 responder with bounded request
//! heads, one request per connection.

use crate::node::{Node, NodeStatus};
use crate::RoleKind;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

/// A request head larger than this is refused.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A client that does not send its request head within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoint on `listener` until `stop` turns true.
pub async fn serve_admin(
    listener: TcpListener,
    node: Arc<Node>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    info!(addr = %listener.local_addr()?, "serving admin HTTP (/metrics, /status, /)");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let node = Arc::clone(&node);
                tokio::spawn(async move {
                    if let Err(err) = respond(stream, &node).await {
                        debug!("admin request failed: {err}");
                    }
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

async fn respond(mut stream: TcpStream, node: &Node) -> std::io::Result<()> {
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
    if !complete {
        return write(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
        )
        .await;
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return write(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = node.metrics().render();
            write(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        "/status" => {
            let body = status_json(node);
            write(&mut stream, "200 OK", "application/json", &body).await
        }
        "/" | "/index.html" => {
            let body = status_html(node);
            write(&mut stream, "200 OK", "text/html; charset=utf-8", &body).await
        }
        _ => write(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
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
    let stopped = s.stopped.as_deref().map_or("null".to_string(), |r| {
        format!("\"{}\"", r.replace('\\', "\\\\").replace('"', "\\\""))
    });
    let (election_min, election_max) = node.config().election_timeout();
    format!(
        "{{\"id\":{},\"role\":\"{}\",\"leader\":{},\"members\":[{}],\"peers\":[{}],\"promised\":{{\"round\":{},\"node\":{}}},\"chosen_instance\":{},\"applied_instance\":{},\"lag\":{},\"snapshot_instance\":{},\"checksum\":\"{:016x}\",\"requests_waiting\":{},\"diverged\":{},\"rebuilding\":{},\"stopped\":{},\"election_timeout_ms\":[{},{}]}}\n",
        s.id.0,
        role_name(s.role),
        s.leader.map_or("null".to_string(), |l| l.0.to_string()),
        members.join(","),
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
        stopped,
        election_min.as_millis(),
        election_max.as_millis(),
    )
}

fn status_html(node: &Node) -> String {
    let s = node.status();
    let connected = node.peers_connected();
    let mut rows = String::new();
    for member in &s.members {
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
            "<tr><td>{}</td><td>{role}</td><td>{link}</td></tr>",
            member.0
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>synod node {id}</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 12px;text-align:left}}</style></head><body>\
<h1>synod node {id}</h1><p>role: <b>{role}</b> &middot; leader: <b>{leader}</b>{diverged}</p>\
<h2>members</h2><table><tr><th>node</th><th>role</th><th>link</th></tr>{rows}</table>\
<h2>log</h2><table><tr><td>chosen through instance</td><td>{chosen}</td></tr><tr><td>applied through instance</td><td>{applied}</td></tr>\
<tr><td>lag (chosen &minus; applied)</td><td>{lag}</td></tr><tr><td>latest snapshot at</td><td>{snap}</td></tr><tr><td>requests waiting</td><td>{waiting}</td></tr></table>\
<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/status\">/status</a></p></body></html>\n",
        id = s.id.0,
        role = role_name(s.role),
        leader = s.leader.map_or("none".to_string(), |l| l.0.to_string()),
        diverged = if s.diverged { " &middot; <b style=\"color:red\">DIVERGED</b>" } else { "" },
        chosen = s.chosen_end.0,
        applied = s.applied_end.0,
        lag = s.chosen_end.0.saturating_sub(s.applied_end.0),
        snap = s.snapshot_end.0,
        waiting = s.requests_waiting,
    )
}
