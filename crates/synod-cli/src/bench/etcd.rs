//! The etcd v3 client of `synod bench`: one gRPC channel (one HTTP/2
//! connection) to one endpoint, `pipeline` requests sent concurrently as
//! streams on it, every reply awaited before the next batch, as the RESP
//! client does with a pipelined batch.
//!
//! SET is a Put; GET is a Range of one key with etcd's default consistency,
//! linearizable (the member confirms with the leader before answering), not
//! serializable.

use super::{ClientResult, ClientSpec, Operation, Window, RETRY_PAUSE};
use etcd_client::{Client, ConnectOptions, KvClient};
use futures_util::future::join_all;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// A request with no answer by then is an error (a member without a leader
/// can hold a request indefinitely; the run must end on time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one client until the window closes. Every failed request (gRPC
/// status, lost connection, timeout) is an error; the channel reconnects by
/// itself, and the client pauses after a batch with an error so that a
/// member that is down is not spun on.
pub(super) async fn client(spec: ClientSpec, window: Window) -> ClientResult {
    let mut result = ClientResult::new();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let endpoint = format!("http://{}", spec.addr);
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    let kv = loop {
        if window.stopped() {
            return result;
        }
        match Client::connect([endpoint.as_str()], Some(options.clone())).await {
            Ok(client) => break client.kv_client(),
            Err(e) => {
                result.fail(format!("connect {endpoint}: {e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    };
    let mut key = String::new();
    let mut batch = Vec::with_capacity(spec.pipeline as usize);
    while !window.stopped() {
        batch.clear();
        for _ in 0..spec.pipeline {
            let operation = spec.next_operation(&mut rng, &mut key);
            batch.push((operation, key.clone().into_bytes()));
        }
        let sent = Instant::now();
        let replies = join_all(batch.drain(..).map(|(operation, key)| {
            let kv = kv.clone();
            let value = spec.value.clone();
            async move { (request(kv, operation, key, value).await, sent.elapsed()) }
        }))
        .await;
        let mut failed = false;
        for (reply, latency) in replies {
            match reply {
                Ok(()) => result.succeed(&window, latency),
                Err(e) => {
                    failed = true;
                    result.fail(e.to_string());
                }
            }
        }
        if failed && !window.stopped() {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    result
}

async fn request(
    mut kv: KvClient,
    operation: Operation,
    key: Vec<u8>,
    value: Vec<u8>,
) -> Result<(), etcd_client::Error> {
    match operation {
        // No options: a linearizable read of exactly this key.
        Operation::Get => kv.get(key, None).await.map(drop),
        Operation::Set => kv.put(key, value, None).await.map(drop),
    }
}
