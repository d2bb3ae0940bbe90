//! The RESP client of `synod bench`: one TCP connection, `pipeline` requests
//! written in one batch, then every reply read before the next batch.

use super::{ClientResult, ClientSpec, Operation, Window, RETRY_PAUSE};
use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use synod_resp::{parse_reply, write_request, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs one client until the window closes. A lost connection is an error
/// and is reopened; an error reply is an error and the connection goes on.
pub(super) async fn client(spec: ClientSpec, window: Window) -> ClientResult {
    let mut result = ClientResult::new();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = BytesMut::with_capacity(4096);
    let mut input = BytesMut::with_capacity(64 << 10);
    let mut key = String::new();
    while !window.stopped() {
        let mut stream = match TcpStream::connect(spec.addr).await {
            Ok(s) => s,
            Err(e) => {
                result.fail(format!("connect {}: {e}", spec.addr));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        input.clear();
        'connection: while !window.stopped() {
            out.clear();
            for _ in 0..spec.pipeline {
                match spec.next_operation(&mut rng, &mut key) {
                    Operation::Get => write_request(&mut out, &[b"GET", key.as_bytes()]),
                    Operation::Set => {
                        write_request(&mut out, &[b"SET", key.as_bytes(), &spec.value])
                    }
                }
            }
            let sent = Instant::now();
            if let Err(e) = stream.write_all(&out).await {
                result.fail(format!("write: {e}"));
                break;
            }
            let mut answered = 0;
            while answered < spec.pipeline {
                match parse_reply(&mut input) {
                    Ok(Some(reply)) => {
                        answered += 1;
                        match reply {
                            Reply::Error(e) => result.fail(e),
                            _ => result.succeed(&window, sent.elapsed()),
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        result.fail(format!("bad reply: {e}"));
                        break 'connection;
                    }
                }
                match stream.read_buf(&mut input).await {
                    Ok(0) => {
                        result.fail("server closed the connection".into());
                        break 'connection;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        result.fail(format!("read: {e}"));
                        break 'connection;
                    }
                }
            }
        }
    }
    result
}
