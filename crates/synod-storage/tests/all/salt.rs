//! The segments' salt (format version 3, `segment::Format::salt`): client
//! data that holds a well-formed frame cannot make a torn tail read as
//! corruption, and logs of version 2 still open and go on.

use crate::common;

use bytes::{Bytes, BytesMut};
use std::fs::{self, OpenOptions};
use std::path::Path;
use synod_core::codec::Encode;
use synod_core::{Ballot, GroupId, InstanceId, NodeId, Record, Value};
use synod_storage::frame::{put_frame, FrameKind, Seal};
use synod_storage::{segment, Storage, Wal, WalOptions};

fn accept(instance: u64, value: &[u8]) -> Record {
    Record::Accept {
        group: GroupId(0),
        instance: InstanceId(instance),
        ballot: Ballot {
            round: 3,
            node: NodeId(1),
        },
        value: Value::batch(vec![Bytes::copy_from_slice(value)]),
    }
}

/// A client's value crafted to hold a frame that reads as a batch of its
/// own, sealed with `seal` (a client can only guess the salt).
fn crafted_value(seal: Seal) -> Vec<u8> {
    let mut fake = BytesMut::new();
    put_frame(&mut fake, seal, FrameKind::Record, b"looks like a record");
    let mut value = b"prefix ".to_vec();
    value.extend_from_slice(&fake);
    value.extend_from_slice(&[b'x'; 64]);
    value
}

/// Writes one durable record, then one holding `value`, synced, and tears
/// that second write 32 bytes before its end (after the hidden frame): what
/// a power cut may leave of an unsynced batch. Returns whether the log
/// opens again and what it recovers.
fn torn_after(value: &[u8], opts: &WalOptions) -> Result<Vec<Record>, String> {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    wal.append(&[accept(1, b"durable")]).unwrap();
    wal.sync().unwrap();
    wal.append(&[accept(2, value)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // Where the data ends: the same writes without preallocated zeros.
    let exact = tempfile::tempdir().unwrap();
    let (mut reference, _) = Wal::open(
        exact.path(),
        WalOptions {
            preallocate_bytes: 0,
            ..opts.clone()
        },
    )
    .unwrap();
    reference.append(&[accept(1, b"durable")]).unwrap();
    reference.sync().unwrap();
    reference.append(&[accept(2, value)]).unwrap();
    reference.sync().unwrap();
    drop(reference);
    let end = fs::metadata(common::segment_files(exact.path()).pop().unwrap())
        .unwrap()
        .len();
    let newest = common::segment_files(dir.path()).pop().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(end - 32)
        .unwrap();
    Wal::open(dir.path(), opts.clone())
        .map(|(_, recovered)| recovered.records)
        .map_err(|e| e.to_string())
}

#[test]
fn a_value_that_hides_a_frame_cannot_make_a_torn_tail_read_as_corruption() {
    // A guess of the salt: none (as before version 3), or any other.
    for (k, guess) in [Seal::UNSALTED, Seal::salted(1), Seal::salted(0xDEAD_BEEF)]
        .into_iter()
        .enumerate()
    {
        let recovered = torn_after(&crafted_value(guess), &WalOptions::default());
        assert_eq!(
            recovered,
            Ok(vec![accept(1, b"durable")]),
            "a frame crafted with guess {k}"
        );
    }
    // The control: with the right seed (a salt that leaked), the same
    // bytes read as corruption, so the test above can fail.
    let salt = 0x1234_5678_9ABC_DEF0;
    let opts = WalOptions {
        salt: Some(salt),
        ..WalOptions::default()
    };
    let refused = torn_after(&crafted_value(Seal::salted(salt)), &opts);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("corrupt")),
        "{refused:?}"
    );
}

/// A segment as a build of format version 2 wrote it: the shorter header,
/// frames with no salt.
fn version_2_segment(index: u64, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"SYNODWAL");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for record in records {
        let mut batch = BytesMut::new();
        put_frame(
            &mut batch,
            Seal::UNSALTED,
            FrameKind::Record,
            &record.to_bytes(),
        );
        out.extend_from_slice(&batch);
    }
    out
}

#[test]
fn a_version_2_log_opens_and_goes_on_in_a_salted_segment() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("wal")).unwrap();
    let old = [accept(1, b"one"), accept(2, b"two")];
    let mut bytes = version_2_segment(1, &old);
    // A version 2 log preallocated zeros after its data too.
    bytes.resize(bytes.len() + 4096, 0);
    fs::write(dir.path().join("wal").join(segment::file_name(1)), &bytes).unwrap();
    let (mut wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.records, old);
    // The old segment was closed (cut to its data); appends go to a new one.
    let files = common::segment_files(dir.path());
    assert_eq!(files.len(), 2);
    assert_eq!(
        fs::metadata(&files[0]).unwrap().len(),
        (bytes.len() - 4096) as u64
    );
    wal.append(&[accept(3, b"three")]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let header = fs::read(&files[1]).unwrap();
    assert_eq!(&header[8..12], &segment::VERSION.to_le_bytes());
    let (mut wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut all = old.to_vec();
    all.push(accept(3, b"three"));
    assert_eq!(recovered.records, all);
    // Reopened on a salted segment, it goes on in it.
    wal.append(&[accept(4, b"four")]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(common::segment_files(dir.path()).len(), 2);
    let (_, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    all.push(accept(4, b"four"));
    assert_eq!(recovered.records, all);
}

/// A version 2 log opened by this build with the power cut at any step of
/// the open (its torn tail cut, its roll to a salted segment) or of the
/// appends after it, each open drawing a salt of its own: no acknowledged
/// record is lost, every open succeeds, and no version 2 segment follows a
/// version 3 one.
#[test]
fn a_version_2_log_survives_power_cuts_while_it_opens_and_goes_on() {
    for seed in 0..300 {
        if let Err(e) = upgrade_with_power_cuts(seed) {
            panic!("seed {seed}: {e}");
        }
    }
}

fn upgrade_with_power_cuts(seed: u64) -> Result<(), String> {
    use rand::{Rng, SeedableRng};
    use synod_storage::{Fs, OpenMode, SimFs};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sim = SimFs::new();
    let dir = Path::new("/node");
    let wal_dir = dir.join("wal");
    sim.create_dir_all(&wal_dir).unwrap();
    sim.create_dir_all(&dir.join("snap")).unwrap();
    // One to three version 2 segments; the newest may end in zeros or in a
    // torn frame.
    let mut next = 0;
    let mut acked = Vec::new();
    let old_segments = rng.gen_range(1..4u64);
    for index in 1..=old_segments {
        let records: Vec<Record> = (0..rng.gen_range(0..4))
            .map(|_| {
                next += 1;
                accept(next, &vec![b'v'; rng.gen_range(0..200)])
            })
            .collect();
        let mut bytes = version_2_segment(index, &records);
        acked.extend(records);
        if index == old_segments {
            match rng.gen_range(0..3) {
                0 => bytes.resize(bytes.len() + rng.gen_range(1..3000), 0),
                1 => {
                    let mut torn = BytesMut::new();
                    let record = accept(next + 1, b"torn").to_bytes();
                    put_frame(&mut torn, Seal::UNSALTED, FrameKind::Record, &record);
                    bytes.extend_from_slice(&torn[..rng.gen_range(1..torn.len())]);
                }
                _ => {}
            }
        }
        let path = wal_dir.join(segment::file_name(index));
        let file = sim.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        file.sync_data().unwrap();
    }
    sim.sync_dir(&wal_dir).unwrap();
    let prefix_of = |found: &[Record], acked: &[Record]| {
        found.len() >= acked.len() && found[..acked.len()] == *acked
    };
    for round in 0..12 {
        let opts = WalOptions {
            segment_bytes_max: rng.gen_range(300..3000),
            preallocate_bytes: [0, 512, 4096][rng.gen_range(0..3)],
            salt: Some(rng.gen()),
            ..WalOptions::default()
        };
        if rng.gen_bool(0.6) {
            sim.power_off_after(Some(rng.gen_range(0..10)));
        } else {
            sim.disarm_faults();
        }
        let opened = Wal::open_on(std::sync::Arc::new(sim.clone()), dir, opts);
        let (mut wal, recovered) = match opened {
            Ok(opened) if !sim.is_powered_off() => opened,
            Ok(_) => {
                sim.crash(&mut rng);
                continue;
            }
            Err(e) if sim.is_powered_off() => {
                let _ = e;
                sim.crash(&mut rng);
                continue;
            }
            Err(e) => return Err(format!("round {round}: open failed with no fault: {e}")),
        };
        if !prefix_of(&recovered.records, &acked) {
            return Err(format!("round {round}: acknowledged records lost"));
        }
        // What an open recovered stays (a later crash cannot lose it).
        acked = recovered.records.clone();
        let mut seen_v3 = false;
        for path in sim.files() {
            if path.parent() != Some(&wal_dir) || path.extension().is_none_or(|e| e != "wal") {
                continue;
            }
            let bytes = sim.file_bytes(&path).unwrap_or_default();
            if bytes.len() < 12 {
                continue;
            }
            let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            if version == segment::VERSION {
                seen_v3 = true;
            } else if seen_v3 {
                return Err(format!(
                    "{} is version {version}, after a version 3 one",
                    path.display()
                ));
            }
        }
        if rng.gen_bool(0.7) {
            sim.power_off_after(Some(rng.gen_range(0..30)));
        }
        for _ in 0..rng.gen_range(1..10) {
            let records: Vec<Record> = (0..rng.gen_range(1..4))
                .map(|_| {
                    next += 1;
                    accept(next, &vec![b'w'; rng.gen_range(0..300)])
                })
                .collect();
            if wal.append(&records).is_err() || wal.sync().is_err() {
                break;
            }
            acked.extend(records);
        }
        drop(wal);
        sim.crash(&mut rng);
    }
    sim.disarm_faults();
    let opts = WalOptions {
        salt: Some(rng.gen()),
        ..WalOptions::default()
    };
    let (_, recovered) = Wal::open_on(std::sync::Arc::new(sim.clone()), dir, opts)
        .map_err(|e| format!("last open: {e}"))?;
    if !prefix_of(&recovered.records, &acked) {
        return Err("the last open lost acknowledged records".into());
    }
    Ok(())
}
