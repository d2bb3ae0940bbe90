//! Random draws of concurrent clients (review of the seeds): the leader puts
//! many clients' commands into one instance value, where they share the
//! instance and the log clock. Each command's draw must still be its own,
//! as `math.random` and SRANDMEMBER are in Redis, and the same on every
//! replica and replay. Before the command's index in its instance value
//! (`ApplyContext::index`) went into the seeds, 9 clients'
//! `math.random`s repeated by the batch (572 distinct values in 900), and
//! 900 SRANDMEMBERs of a 10,000-member set gave 257 distinct members
//! instead of ~860.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use synod::{ApplyContext, BatchCommand, StateMachine};
use synod_kv::{decode_reply, parse, KvCommand, Store};
use synod_resp::Reply;

use crate::common::{args, ctx};
use crate::resp_cluster;

use resp_cluster::{cluster, Client};

/// The commands of one instance value: pairs of draws that differ only in
/// their index in the value, then a write that draws (SPOP).
const VALUE: [&str; 5] = [
    "SRANDMEMBER s 10",
    "SRANDMEMBER s 10",
    "EVAL return {math.random(1000000000), math.random(1000000000)}",
    "EVAL return {math.random(1000000000), math.random(1000000000)}",
    "SPOP s 10",
];

/// `line` as a command: `EVAL <script>` is a script without keys or
/// arguments (the server, not `parse`, makes EVALs), anything else is
/// parsed.
fn command(line: &str) -> KvCommand {
    let Some(script) = line.strip_prefix("EVAL ") else {
        return parse(&args(line)).unwrap();
    };
    KvCommand::Eval(Box::new(synod_kv::scripting::EvalCommand {
        instructions_max: synod_kv::scripting::APPLY_LIMITS.instructions_max,
        script: Bytes::copy_from_slice(script.as_bytes()),
        keys: Vec::new(),
        args: Vec::new(),
        read_only: false,
        function: None,
        user: None,
    }))
}

/// A store holding the set `s` of 1,000 members, written at instance 1.
fn replica() -> Store {
    let mut store = Store::new();
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let sadd = parse(&args(&format!("SADD s {}", members.join(" ")))).unwrap();
    assert_eq!(
        decode_reply(&store.apply(&sadd.encode(), &ctx(1, 5))).unwrap(),
        Reply::Integer(1000)
    );
    store
}

/// [`VALUE`] as the runtime hands it over at instance 2: one log clock,
/// the index counting up.
fn value() -> Vec<(Bytes, ApplyContext)> {
    VALUE
        .iter()
        .zip(0u32..)
        .map(|(line, index)| {
            let command = command(line).encode();
            let ctx = ApplyContext { index, ..ctx(2, 5) };
            (command, ctx)
        })
        .collect()
}

/// The replies to [`VALUE`], applied in `apply_batch` calls of `cut`
/// commands each (the runtime cuts a value at its reads, so replicas and
/// replays may cut it differently).
fn apply_cut(cut: usize) -> Vec<Reply> {
    let mut store = replica();
    let value = value();
    let mut replies = Vec::new();
    for piece in value.chunks(cut) {
        let batch: Vec<BatchCommand<'_>> = piece
            .iter()
            .map(|(command, ctx)| BatchCommand { command, ctx: *ctx })
            .collect();
        for output in store.apply_batch(&batch) {
            replies.push(decode_reply(&output).unwrap());
        }
    }
    replies
}

/// Two commands of one instance value that differ only in their index draw
/// apart; two draws of one script differ; and the same value gives the
/// same draws however it is cut into batches (every replica, every
/// replay). Before the index was in the seeds, each pair drew alike.
#[test]
fn commands_of_one_value_draw_apart_and_alike_on_every_replica() {
    let replies = apply_cut(VALUE.len());
    for pair in replies[..4].chunks(2) {
        assert!(matches!(&pair[0], Reply::Array(_)), "{pair:?}");
        assert_ne!(pair[0], pair[1], "two commands of one value drew alike");
    }
    let Reply::Array(script_draws) = &replies[2] else {
        panic!("EVAL answered {:?}", replies[2]);
    };
    assert_ne!(script_draws[0], script_draws[1]);
    for cut in [1, 2, 4] {
        assert_eq!(apply_cut(cut), replies, "cut in batches of {cut}");
    }
}

/// Inside one MULTI/EXEC (one command of the value), each command draws
/// apart too: its position in the transaction is in the seed.
#[test]
fn commands_of_one_transaction_draw_apart() {
    let mut store = replica();
    let commands = [
        "SRANDMEMBER s 10",
        "SRANDMEMBER s 10",
        "EVAL return math.random(1000000000)",
        "EVAL return math.random(1000000000)",
    ]
    .into_iter()
    .map(command)
    .collect();
    let exec = KvCommand::Exec(commands).encode();
    let reply = decode_reply(&store.apply(&exec, &ctx(2, 5))).unwrap();
    let Reply::Array(replies) = reply else {
        panic!("EXEC answered {reply:?}");
    };
    assert_eq!(replies.len(), 4);
    assert_ne!(replies[0], replies[1]);
    assert_ne!(replies[2], replies[3]);
}

/// Concurrent clients, each on its own connection.
const CLIENTS: usize = 9;
/// Commands each client sends, one at a time (the next after the reply).
const ROUNDS: usize = 100;

/// Every reply of `CLIENTS` clients sending `command` `ROUNDS` times each,
/// all at once, to the node at `addr`.
async fn concurrent_replies(addr: SocketAddr, command: &'static [&'static [u8]]) -> Vec<Reply> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut replies = Vec::with_capacity(ROUNDS);
                for _ in 0..ROUNDS {
                    replies.push(client.call(command).await.expect("a reply"));
                }
                replies
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(CLIENTS * ROUNDS);
    for task in tasks {
        replies.extend(task.await.expect("the client task ends"));
    }
    replies
}

/// 900 draws of `math.random(1000000000)` from 9 concurrent clients are
/// all distinct (a repeat by chance has odds of about 1 in 2,500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scripts_draw_apart() {
    let c = cluster(3, |_| {}, None).await;
    let replies = concurrent_replies(
        c.resp[0],
        &[b"EVAL", b"return math.random(1000000000)", b"0"],
    )
    .await;
    let mut distinct = BTreeSet::new();
    for reply in replies {
        let Reply::Integer(draw) = reply else {
            panic!("EVAL answered {reply:?}");
        };
        distinct.insert(draw);
    }
    assert!(
        distinct.len() >= CLIENTS * ROUNDS - 1,
        "{} distinct draws in {}",
        distinct.len(),
        CLIENTS * ROUNDS
    );
}

/// 900 SRANDMEMBERs of a 10,000-member set from 9 concurrent clients give
/// about 860 distinct members (900 independent uniform draws); a batch
/// sharing one draw gives far fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_srandmembers_draw_apart() {
    let c = cluster(3, |_| {}, None).await;
    let members: Vec<Vec<u8>> = (0..10_000).map(|i| format!("m{i}").into_bytes()).collect();
    let mut sadd: Vec<&[u8]> = vec![b"SADD", b"rs"];
    sadd.extend(members.iter().map(Vec::as_slice));
    let mut client = Client::connect(c.resp[0]).await;
    assert_eq!(client.call(&sadd).await, Some(Reply::Integer(10_000)));
    let replies = concurrent_replies(c.resp[0], &[b"SRANDMEMBER", b"rs"]).await;
    let mut distinct = BTreeSet::new();
    for reply in replies {
        let Reply::Bulk(member) = reply else {
            panic!("SRANDMEMBER answered {reply:?}");
        };
        distinct.insert(member);
    }
    // Expected 10,000 * (1 - (1 - 1/10,000)^900) ≈ 861, standard deviation
    // about 6: 800 is ten deviations below.
    assert!(
        distinct.len() >= 800,
        "{} distinct members in {}",
        distinct.len(),
        CLIENTS * ROUNDS
    );
}
