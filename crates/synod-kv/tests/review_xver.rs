//! Snapshot bytes of one deterministic workload (plain keys, keys whose
//! order hashes collide, expiries, hashes, lists, deletes, the empty key)
//! are pinned by their SHA-256: the keyspace's index may change (it went
//! from a B+ tree to a hash trie), its order and the snapshot format may
//! not, or a node of one version could not install another's snapshot.
//! `REVIEW_XVER_OUT=FILE` also writes the bytes, to compare two versions.
use bytes::Bytes;
use sha2::{Digest, Sha256};
use synod::{ApplyContext, InstanceId, StateMachine};
use synod_kv::{parse, Store};

const S0: [u8; 8] = [0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe];
const S16: [u8; 8] = [0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb];

fn colliding(i: u64) -> Vec<u8> {
    let mut k = S0.to_vec();
    k.extend_from_slice(&i.to_le_bytes());
    k.extend_from_slice(&S16);
    k.extend_from_slice(&(i.rotate_left(17) ^ 0x5555).to_le_bytes());
    k
}

/// SHA-256 of the snapshot below, as the B+ tree keyspace (before the trie)
/// wrote it.
const SNAPSHOT_SHA256: &str = "975b67d68b27a2730dc848c78f9e22f7b5c9df3e0ae5c67c621144191142025c";

#[test]
fn review_xver_snapshot_bytes() {
    let mut store = Store::new();
    let mut instance = 0u64;
    let mut run = |args: Vec<Vec<u8>>| {
        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        let command = parse(&args).unwrap_or_else(|_| panic!("parse"));
        instance += 1;
        let ctx = ApplyContext {
            instance: InstanceId(instance),
            time_ms: 1_000 + instance,
            index: 0,
        };
        store.apply(&command.encode(), &ctx);
    };
    let v = |s: &str| s.as_bytes().to_vec();
    for i in 0..3000u64 {
        run(vec![
            v("SET"),
            format!("key:{i}").into_bytes(),
            format!("value {i}").into_bytes(),
        ]);
        if i % 5 == 0 {
            run(vec![
                v("SET"),
                colliding(i),
                v("c"),
                v("PX"),
                v("100000000"),
            ]);
        }
        if i % 7 == 0 {
            run(vec![
                v("HSET"),
                format!("h:{i}").into_bytes(),
                v("f"),
                v("x"),
                v("g"),
                v("y"),
            ]);
        }
        if i % 11 == 0 {
            run(vec![v("RPUSH"), colliding(i + 1_000_000), v("a"), v("b")]);
        }
        if i % 13 == 0 {
            run(vec![
                v("DEL"),
                format!("key:{}", i / 2).into_bytes(),
                colliding(i / 2),
            ]);
        }
    }
    run(vec![v("SET"), Vec::new(), v("empty key")]);
    let bytes = store.snapshot();
    if let Ok(out) = std::env::var("REVIEW_XVER_OUT") {
        std::fs::write(&out, &bytes).unwrap();
        eprintln!("wrote {} bytes to {out}", bytes.len());
    }
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(digest, SNAPSHOT_SHA256, "the snapshot bytes changed");
}

/// Review: apply cost of colliding SETs through the whole state machine
/// (parse, encode, decode, apply), in whichever version this is built in.
#[test]
#[ignore]
fn review_xver_colliding_apply_cost() {
    for k in [10_000u64, 40_000] {
        let mut store = Store::new();
        let commands: Vec<Vec<u8>> = (0..k)
            .map(|i| {
                let args = vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(colliding(i)),
                    Bytes::from_static(b"v"),
                ];
                parse(&args)
                    .unwrap_or_else(|_| panic!("parse"))
                    .encode()
                    .to_vec()
            })
            .collect();
        let start = std::time::Instant::now();
        for (i, encoded) in commands.iter().enumerate() {
            let ctx = ApplyContext {
                instance: InstanceId(i as u64 + 1),
                time_ms: 1_000,
                index: 0,
            };
            store.apply(encoded, &ctx);
        }
        eprintln!(
            "{k} colliding SETs applied in {:.3} s",
            start.elapsed().as_secs_f64()
        );
    }
}
