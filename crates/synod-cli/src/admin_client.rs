//! A small RESP client for the administration commands (`synod member`,
//! `synod leader`, `synod server --join`): one connection, one request at a
//! time, every wait bounded.
//!
//! Hand-written on `synod_resp`'s request writer and reply parser (which the
//! bench and chaos clients use too) rather than the `redis` crate: it needs
//! a dozen lines of I/O, and the replies (`SYNOD.MEMBER`'s arrays) are ours.

use bytes::BytesMut;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use synod_resp::client::{parse_reply, write_request};
use synod_resp::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long connecting and each request may take. A membership change
/// answers within the server's request timeout (5 s by default); a
/// leadership transfer waits for the target to catch up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply read (a member list is a few hundred bytes per member).
const REPLY_BYTES_MAX: usize = 16 << 20;

/// How a client subcommand authenticates: the options `synod server` takes
/// for its own password, plus the ACL user.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientAuthArgs {
    /// ACL user to AUTH as (with the password below).
    #[arg(long, default_value = "default")]
    pub user: String,
    /// The password to AUTH with. Visible in `ps`: prefer --password-file or
    /// the SYNOD_PASSWORD environment variable (used when neither flag is
    /// given). No AUTH when none is set.
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the password from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl ClientAuthArgs {
    /// The password to AUTH with, if any (flag, file, then $SYNOD_PASSWORD).
    pub fn password(&self) -> Result<Option<String>, String> {
        crate::server::resolve_password(self.password.clone(), self.password_file.as_deref())
    }
}

/// One connection to a node's RESP port.
pub struct AdminConn {
    stream: TcpStream,
    buf: BytesMut,
    addr: String,
}

impl AdminConn {
    /// Connects to `addr` (HOST:PORT; a host name is resolved) and, with a
    /// password, authenticates as `user`.
    pub async fn connect(
        addr: &str,
        user: &str,
        password: Option<&str>,
    ) -> Result<AdminConn, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("cannot reach {addr}: no connection within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot reach {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = AdminConn {
            stream,
            buf: BytesMut::with_capacity(4096),
            addr: addr.to_string(),
        };
        if let Some(password) = password {
            match conn.call(&["AUTH", user, password]).await? {
                Reply::Simple(_) => {}
                Reply::Error(e) => return Err(format!("{addr} refused AUTH: {e}")),
                other => return Err(format!("{addr}: unexpected AUTH reply {other:?}")),
            }
        }
        Ok(conn)
    }

    /// The address this connection was made to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and reads its reply (an error reply is `Ok`).
    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut out = BytesMut::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        write_request(&mut out, &args);
        let addr = self.addr.clone();
        let io = async {
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            loop {
                if let Some(reply) =
                    parse_reply(&mut self.buf).map_err(|e| format!("{addr}: bad reply: {e}"))?
                {
                    return Ok(reply);
                }
                if self.buf.len() > REPLY_BYTES_MAX {
                    return Err(format!("{addr}: reply larger than {REPLY_BYTES_MAX} bytes"));
                }
                let n = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
                if n == 0 {
                    return Err(format!("{addr} closed the connection"));
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, io)
            .await
            .map_err(|_| format!("{addr}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    /// Sends a request that answers `+OK`; an error reply becomes `Err`
    /// with the server's message.
    pub async fn call_ok(&mut self, args: &[&str]) -> Result<(), String> {
        match self.call(args).await? {
            Reply::Simple(s) if s == "OK" => Ok(()),
            Reply::Error(e) => Err(e),
            other => Err(format!("{}: unexpected reply {other:?}", self.addr)),
        }
    }
}

/// A bulk or simple string reply as text.
pub fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(b) | Reply::Verbatim(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) => Some(s.to_string()),
        Reply::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Runs `future` on a fresh single-threaded runtime (client subcommands
/// run one request at a time).
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}
