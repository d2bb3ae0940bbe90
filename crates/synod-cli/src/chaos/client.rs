//! Chaos clients: closed-loop RESP clients that record every operation with
//! its invocation and completion time and what they saw.
//!
//! An operation whose reply never came (timeout, lost connection) or came as
//! an error that leaves the outcome open is recorded as
//! [`Outcome::Unknown`]: it may or may not have taken effect. Nothing is ever
//! recorded as "failed" in the history; the report counts error replies that
//! do not say the outcome is unknown separately (there should be none).

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_check::{Op, Outcome};
use synod_resp::{parse_reply, write_request, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What every client shares.
pub struct Shared {
    pub start: Instant,
    pub stop: AtomicBool,
    pub addrs: Vec<SocketAddr>,
    pub op_timeout: Duration,
    pub seed: u64,
    /// Keys per generation (even: transactions use pairs).
    pub keys: u32,
    /// A new generation of keys starts this often, so that no key's history
    /// (and the checker's search) grows without bound.
    pub generation: Duration,
}

impl Shared {
    /// Microseconds since the run began: the history's clock.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn key(&self, generation: u64, k: u32) -> Vec<u8> {
        format!("chaos-g{generation}-k{k}").into_bytes()
    }

    /// A key that only ever gets INCR: its final value counts the
    /// increments that took effect, a direct check that no acknowledged
    /// write was lost (and none appeared from nowhere).
    pub fn counter_key(&self, generation: u64) -> Vec<u8> {
        format!("chaos-g{generation}-counter").into_bytes()
    }

    /// Every key clients may have used so far.
    pub fn all_keys(&self) -> Vec<Vec<u8>> {
        let generations =
            self.start.elapsed().as_millis() as u64 / self.generation.as_millis().max(1) as u64;
        (0..=generations)
            .flat_map(|g| {
                (0..self.keys)
                    .map(move |k| self.key(g, k))
                    .chain(std::iter::once(self.counter_key(g)))
            })
            .collect()
    }
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: u64,
    /// The slot the client talked to (its node may have been replaced).
    pub node: u32,
    pub op: Op,
    pub outcome: Outcome,
    pub invoke: u64,
    pub complete: u64,
    /// The server's error text, for an error reply.
    pub error: Option<String>,
}

impl Record {
    /// A short name of the operation type, for the report.
    pub fn kind(&self) -> &'static str {
        match &self.op {
            Op::Get { .. } if self.client >= FINAL_READ_CLIENT => "final-get",
            Op::Get { .. } => "get",
            Op::Put { .. } => "set",
            Op::PutTtl { .. } => "set-px",
            Op::PutGet { .. } => "set-get",
            Op::Delete { .. } => "del",
            Op::Append { .. } => "append",
            Op::Incr { .. } => "incr",
            Op::Push { .. } => "rpush",
            Op::Pop { .. } => "lpop",
            Op::Txn { .. } => "multi-exec",
            Op::WatchedTxn { .. } => "watch-exec",
        }
    }
}

/// Client ids from here on are the final reads (one per node).
pub const FINAL_READ_CLIENT: u64 = 1_000_000;

/// A RESP connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends `commands` pipelined and reads one reply each.
    pub async fn call(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, String> {
        let mut out = BytesMut::new();
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            write_request(&mut out, &args);
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            if let Some(reply) = parse_reply(&mut self.buf).map_err(|e| e.to_string())? {
                replies.push(reply);
                continue;
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
        }
        Ok(replies)
    }
}

/// The RESP form of a single-key operation.
fn resp_of(op: &Op) -> Vec<Vec<u8>> {
    let v = |s: &str| s.as_bytes().to_vec();
    match op {
        Op::Get { key } => vec![v("GET"), key.clone()],
        Op::Put { key, value } => vec![v("SET"), key.clone(), value.clone()],
        // The chaos workload issues no expiring writes; should one appear,
        // a TTL of a minute keeps it within what the checker models.
        Op::PutTtl { key, value } => {
            vec![v("SET"), key.clone(), value.clone(), v("PX"), v("60000")]
        }
        Op::PutGet { key, value } => vec![v("SET"), key.clone(), value.clone(), v("GET")],
        Op::Delete { key } => vec![v("DEL"), key.clone()],
        Op::Append { key, value } => vec![v("APPEND"), key.clone(), value.clone()],
        Op::Incr { key, by } => vec![v("INCRBY"), key.clone(), by.to_string().into_bytes()],
        Op::Push { key, value } => vec![v("RPUSH"), key.clone(), value.clone()],
        Op::Pop { key } => vec![v("LPOP"), key.clone()],
        Op::Txn { .. } | Op::WatchedTxn { .. } => vec![v("PING")],
    }
}

/// What a reply to a single-key operation means, or `None` when it cannot
/// be a reply to it at all.
fn outcome_of(op: &Op, reply: &Reply) -> Option<Outcome> {
    match (op, reply) {
        (Op::Get { .. } | Op::PutGet { .. }, Reply::Bulk(b)) => {
            Some(Outcome::Value(Some(b.to_vec())))
        }
        (Op::Get { .. } | Op::PutGet { .. }, Reply::Null) => Some(Outcome::Value(None)),
        (Op::Put { .. } | Op::PutTtl { .. }, Reply::Simple(s)) if s == "OK" => Some(Outcome::Ok),
        (Op::Delete { .. }, Reply::Integer(n)) => Some(Outcome::Bool(*n > 0)),
        (Op::Append { .. } | Op::Incr { .. } | Op::Push { .. }, Reply::Integer(n)) => {
            Some(Outcome::Int(*n))
        }
        (Op::Pop { .. }, Reply::Bulk(b)) => Some(Outcome::Value(Some(b.to_vec()))),
        (Op::Pop { .. }, Reply::Null) => Some(Outcome::Value(None)),
        (Op::Incr { .. }, Reply::Error(e)) if e.contains("not an integer") => Some(Outcome::Error),
        _ => None,
    }
}

/// Runs the operation; returns its outcome and the error text if the server
/// answered with an error. A reply of the wrong shape is an `Err`.
async fn perform(conn: &mut Conn, op: &Op) -> Result<(Outcome, Option<String>), Transport> {
    let (commands, ops): (Vec<Vec<Vec<u8>>>, &[Op]) = match op {
        Op::Txn { ops } => {
            let mut commands = vec![vec![b"MULTI".to_vec()]];
            commands.extend(ops.iter().map(resp_of));
            commands.push(vec![b"EXEC".to_vec()]);
            (commands, ops.as_slice())
        }
        single => (vec![resp_of(single)], std::slice::from_ref(single)),
    };
    let replies = conn.call(&commands).await.map_err(|_| Transport::Lost)?;
    let last = replies.last().ok_or(Transport::Lost)?;
    if let Reply::Error(e) = last {
        if outcome_of(op, last).is_none() {
            return Ok((Outcome::Unknown, Some(e.clone())));
        }
    }
    if let Op::Txn { .. } = op {
        let Reply::Array(items) = last else {
            return Err(Transport::Malformed(format!("EXEC answered {last:?}")));
        };
        if items.len() != ops.len() {
            return Err(Transport::Malformed(format!("EXEC answered {last:?}")));
        }
        let mut outcomes = Vec::with_capacity(ops.len());
        for (op, item) in ops.iter().zip(items) {
            outcomes.push(outcome_of(op, item).ok_or_else(|| {
                Transport::Malformed(format!("{op:?} in EXEC answered {item:?}"))
            })?);
        }
        return Ok((Outcome::Txn(outcomes), None));
    }
    outcome_of(op, last)
        .map(|o| (o, None))
        .ok_or_else(|| Transport::Malformed(format!("{op:?} answered {last:?}")))
}

enum Transport {
    /// No (complete) reply: the outcome is unknown.
    Lost,
    /// A reply that cannot answer the request: a bug in the server.
    Malformed(String),
}

/// Picks the next operation.
fn next_op(rng: &mut ChaCha8Rng, shared: &Shared, client: u64, counter: &mut u64) -> Op {
    let generation =
        shared.start.elapsed().as_millis() as u64 / shared.generation.as_millis().max(1) as u64;
    let pair = rng.gen_range(0..shared.keys / 2);
    let k = pair * 2 + rng.gen_range(0..2);
    let key = shared.key(generation, k);
    let mut value = || {
        *counter += 1;
        // Unique integers: INCR works on every value, and a read names its writer.
        ((client + 1) * 1_000_000_000 + *counter)
            .to_string()
            .into_bytes()
    };
    let roll = rng.gen_range(0..100);
    match roll {
        0..=29 => Op::Get { key },
        30..=49 => Op::Put {
            key,
            value: value(),
        },
        50..=59 => Op::PutGet {
            key,
            value: value(),
        },
        60..=71 => Op::Incr { key, by: 1 },
        72..=76 => Op::Delete { key },
        77..=79 => Op::Incr {
            key: shared.counter_key(generation),
            by: 1,
        },
        _ => {
            let mut ops = Vec::new();
            for k in [pair * 2, pair * 2 + 1] {
                let key = shared.key(generation, k);
                ops.push(match rng.gen_range(0..3) {
                    0 => Op::Get { key },
                    1 => Op::Put {
                        key,
                        value: value(),
                    },
                    _ => Op::Incr { key, by: 1 },
                });
            }
            Op::Txn { ops }
        }
    }
}

/// What one client did.
#[derive(Default)]
pub struct ClientLog {
    pub records: Vec<Record>,
    /// Replies that cannot answer their request (server bugs).
    pub malformed: Vec<String>,
    /// Attempts to connect that failed (nothing was sent).
    pub connect_failures: u64,
}

/// One client: talks to one node until an operation's outcome is lost, then
/// moves to the next node.
pub async fn run_client(client: u64, shared: Arc<Shared>) -> ClientLog {
    let mut rng =
        ChaCha8Rng::seed_from_u64(shared.seed ^ (client.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let n = shared.addrs.len();
    let mut node = client as usize % n;
    let mut conn: Option<Conn> = None;
    let mut log = ClientLog::default();
    let mut counter = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(shared.addrs[node], Duration::from_millis(500)).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    log.connect_failures += 1;
                    node = (node + 1) % n;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let op = next_op(&mut rng, &shared, client, &mut counter);
        let invoke = shared.now_us();
        let result = tokio::time::timeout(shared.op_timeout, perform(c, &op)).await;
        let complete = shared.now_us();
        let asked = node as u32 + 1;
        let (outcome, error) = match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(Transport::Malformed(why))) => {
                log.malformed
                    .push(format!("client {client} node {}: {why}", node + 1));
                conn = None;
                (Outcome::Unknown, None)
            }
            Ok(Err(Transport::Lost)) | Err(_) => {
                // The connection's state is unknown (a reply may still come):
                // drop it and try another node.
                conn = None;
                node = (node + 1) % n;
                (Outcome::Unknown, None)
            }
        };
        log.records.push(Record {
            client,
            node: asked,
            op,
            outcome,
            invoke,
            complete,
            error,
        });
        let think = rng.gen_range(0..10);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    log
}

/// After healing: reads every key from node `i`, retrying each until it gets
/// an answer or `deadline` passes. Returns the reads and the keys it could
/// not read.
pub async fn final_reads(
    shared: &Shared,
    i: u32,
    keys: &[Vec<u8>],
    deadline: Instant,
) -> (Vec<Record>, Vec<Vec<u8>>) {
    let addr = shared.addrs[i as usize - 1];
    let mut records = Vec::new();
    let mut unread = Vec::new();
    let mut conn: Option<Conn> = None;
    for key in keys {
        let op = Op::Get { key: key.clone() };
        let mut done = false;
        while !done && Instant::now() < deadline && !crate::signals::requested() {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::connect(addr, Duration::from_millis(500)).await {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let invoke = shared.now_us();
            let result = tokio::time::timeout(shared.op_timeout, perform(c, &op)).await;
            let complete = shared.now_us();
            match result {
                Ok(Ok((outcome @ Outcome::Value(_), error))) => {
                    records.push(Record {
                        client: FINAL_READ_CLIENT + u64::from(i),
                        node: i,
                        op: op.clone(),
                        outcome,
                        invoke,
                        complete,
                        error,
                    });
                    done = true;
                }
                Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => conn = None,
            }
        }
        if !done {
            unread.push(key.clone());
        }
    }
    (records, unread)
}
