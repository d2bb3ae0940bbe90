//! Crash recovery of the real WAL, on the real file system and on the
//! simulated one: a crash at any byte offset recovers exactly the records
//! wholly on disk; a flipped bit anywhere but the tail is refused.

use crate::common;

use common::TestDisk;
use proptest::prelude::*;
use synod_storage::{segment, Storage, StorageError, Wal, WalOptions};

/// Segments sized exactly by their data, so that cutting the file at a byte
/// is a crash at that byte (preallocation has its own tests below).
fn exact() -> WalOptions {
    WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    }
}

/// Writes batches with a sync after each; returns the file length after each
/// record (records are framed one by one, so each ends at a known offset).
fn write_batches(
    disk: &TestDisk,
    batches: &[Vec<synod_core::Record>],
) -> Vec<(u64, synod_core::Record)> {
    let (mut wal, recovered) = disk.open(exact()).unwrap();
    assert!(recovered.records.is_empty());
    let path = disk.newest_segment();
    let mut ends = Vec::new();
    for batch in batches {
        for record in batch {
            wal.append(std::slice::from_ref(record)).unwrap();
            wal.sync().unwrap();
            ends.push((disk.len(&path), record.clone()));
        }
    }
    ends
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_crash_at_any_byte_recovers_exactly_the_whole_records(
        batches in prop::collection::vec(prop::collection::vec(common::record(3), 1..5), 1..6),
        cut_seed in any::<u64>(),
    ) {
        for disk in TestDisk::both() {
            let ends = write_batches(&disk, &batches);
            let path = disk.newest_segment();
            let len = disk.len(&path);
            let cut = segment::HEADER_BYTES as u64 + cut_seed % (len - segment::HEADER_BYTES as u64 + 1);
            disk.set_len(&path, cut);
            let (_, recovered) = disk.open(exact()).unwrap();
            let expected: Vec<_> = ends.iter().filter(|(end, _)| *end <= cut).map(|(_, r)| r.clone()).collect();
            prop_assert_eq!(&recovered.records, &expected);
            let whole = ends.iter().rfind(|(end, _)| *end <= cut).map_or(segment::HEADER_BYTES as u64, |(end, _)| *end);
            prop_assert_eq!(recovered.torn_bytes_cut, cut - whole);
            // The cut tail is gone for good: a second open finds nothing to cut.
            let (_, again) = disk.open(exact()).unwrap();
            prop_assert_eq!(again.records, expected);
            prop_assert_eq!(again.torn_bytes_cut, 0);
        }
    }

    #[test]
    fn a_flipped_bit_before_the_last_record_is_refused(
        batch in prop::collection::vec(common::record(2), 2..8),
        flip_seed in any::<u64>(),
        bit in 0..8u8,
    ) {
        for disk in TestDisk::both() {
            let ends = write_batches(&disk, std::slice::from_ref(&batch));
            let path = disk.newest_segment();
            let last_start = ends[ends.len() - 2].0;
            let at = segment::HEADER_BYTES as u64 + flip_seed % (last_start - segment::HEADER_BYTES as u64);
            let mut bytes = disk.read(&path);
            bytes[at as usize] ^= 1 << bit;
            disk.write(&path, &bytes);
            match disk.open(exact()) {
                Err(StorageError::Corrupt { path: p, offset, .. }) => {
                    prop_assert_eq!(&p, &path);
                    prop_assert!(offset <= at);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
                Ok((_, recovered)) => prop_assert!(false, "flip at {at} accepted: {} records", recovered.records.len()),
            }
            // Refusing changed nothing on disk.
            prop_assert_eq!(disk.read(&path), bytes);
        }
    }
}

#[test]
fn a_flipped_bit_in_a_segment_header_or_a_missing_segment_is_refused() {
    for disk in TestDisk::both() {
        let opts = WalOptions {
            segment_bytes_max: 200,
            ..WalOptions::default()
        };
        let (mut wal, _) = disk.open(opts.clone()).unwrap();
        let record = synod_core::Record::Promise {
            group: synod_core::GroupId(0),
            ballot: synod_core::Ballot::ZERO,
        };
        for _ in 0..40 {
            wal.append(std::slice::from_ref(&record)).unwrap();
            wal.sync().unwrap();
        }
        assert!(wal.segment_count() >= 3);
        drop(wal);
        let segments = disk.segments();
        let original = disk.read(&segments[0]);
        let mut header = original.clone();
        header[3] ^= 4;
        disk.write(&segments[0], &header);
        let err = disk.open(opts.clone()).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("refuses to start"), "{err}");
        disk.write(&segments[0], &original);
        disk.remove(&segments[1]);
        let err = disk.open(opts).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

#[test]
fn a_segment_of_the_old_format_is_refused_with_a_clear_message() {
    for disk in TestDisk::both() {
        let (mut wal, _) = disk.open(exact()).unwrap();
        wal.append(&[common::fixed_record(1)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let path = disk.newest_segment();
        let mut bytes = disk.read(&path);
        // A version 1 header (with its CRC), as the first release wrote.
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..20]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        disk.write(&path, &bytes);
        let err = disk.open(exact()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("version 1"), "{message}");
        assert!(message.contains("older Synod"), "{message}");
    }
}

/// Appends `records` with a sync after each.
fn append_each_synced(wal: &mut Wal, records: &[synod_core::Record]) {
    for record in records {
        wal.append(std::slice::from_ref(record)).unwrap();
        wal.sync().unwrap();
    }
}

/// Writes `records` one sync each with preallocation on; returns where the
/// data ends (the length the same log has without preallocation).
fn write_preallocated(disk: &TestDisk, records: &[synod_core::Record]) -> u64 {
    let (mut wal, _) = disk.open(WalOptions::default()).unwrap();
    append_each_synced(&mut wal, records);
    let reference = TestDisk::sim();
    let ends = write_batches(&reference, &[records.to_vec()]);
    ends.last().unwrap().0
}

#[test]
fn allocated_zeros_after_the_data_are_not_a_torn_tail() {
    for disk in TestDisk::both() {
        let first: Vec<_> = (0..20).map(common::fixed_record).collect();
        let data_end = write_preallocated(&disk, &first);
        let path = disk.newest_segment();
        assert!(
            disk.len(&path) > data_end,
            "the segment was allocated ahead"
        );
        let (mut wal, recovered) = disk.open(WalOptions::default()).unwrap();
        assert_eq!(recovered.records, first);
        assert_eq!(recovered.torn_bytes_cut, 0);
        // Writing resumes where the data ended, not after the zeros.
        let second: Vec<_> = (20..30).map(common::fixed_record).collect();
        append_each_synced(&mut wal, &second);
        drop(wal);
        let (_, recovered) = disk.open(WalOptions::default()).unwrap();
        assert_eq!(recovered.records, [first, second].concat());
    }
}

#[test]
fn a_torn_write_into_allocated_space_is_cut() {
    for disk in TestDisk::both() {
        let records: Vec<_> = (0..10).map(common::fixed_record).collect();
        let data_end = write_preallocated(&disk, &records);
        let path = disk.newest_segment();
        // Half of a frame reached the disk, zeros after it.
        let mut bytes = disk.read(&path);
        bytes[data_end as usize..data_end as usize + 7].copy_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        disk.write(&path, &bytes);
        let (mut wal, recovered) = disk.open(WalOptions::default()).unwrap();
        assert_eq!(recovered.records, records);
        assert!(recovered.torn_bytes_cut > 0);
        let more = common::fixed_record(99);
        wal.append(std::slice::from_ref(&more)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, recovered) = disk.open(WalOptions::default()).unwrap();
        assert_eq!(recovered.records, [records, vec![more]].concat());
        assert_eq!(recovered.torn_bytes_cut, 0);
    }
}

#[test]
fn closed_segments_end_on_their_last_frame() {
    for disk in TestDisk::both() {
        let opts = WalOptions {
            segment_bytes_max: 300,
            ..WalOptions::default()
        };
        let records: Vec<_> = (0..40).map(common::fixed_record).collect();
        let (mut wal, _) = disk.open(opts.clone()).unwrap();
        append_each_synced(&mut wal, &records);
        drop(wal);
        let segments = disk.segments();
        assert!(segments.len() > 2);
        for path in &segments[..segments.len() - 1] {
            // Cut to its data: recovery refuses a closed segment that does not
            // end on a frame, so the open below also checks this.
            let len = disk.len(path);
            assert!(len < 4096, "{} still allocated ahead", path.display());
        }
        let (_, recovered) = disk.open(opts).unwrap();
        assert_eq!(recovered.records, records);
    }
}

/// The chunk ahead of the writes holds zeros that were written (so that
/// later writes land on initialized blocks and their `fdatasync` flushes
/// data only), up to the chunk's end but never past the size at which the
/// segment rolls.
#[test]
fn the_chunk_ahead_is_written_with_zeros_up_to_the_roll_size() {
    let sim = synod_storage::SimFs::new();
    let disk = TestDisk::Sim(sim.clone());
    let opts = WalOptions {
        segment_bytes_max: 6000,
        preallocate_bytes: 4096,
        ..WalOptions::default()
    };
    let (mut wal, _) = disk.open(opts.clone()).unwrap();
    let before = sim.stats().bytes_written;
    append_each_synced(&mut wal, &[common::fixed_record(0)]);
    let path = disk.newest_segment();
    assert_eq!(disk.len(&path), 4096, "filled to the end of the chunk");
    assert!(
        sim.stats().bytes_written - before >= 4096 - segment::HEADER_BYTES as u64,
        "the zeros were written, not merely reserved"
    );
    let data_end = write_batches(&TestDisk::sim(), &[vec![common::fixed_record(0)]])[0].0;
    assert!(disk.read(&path)[data_end as usize..]
        .iter()
        .all(|b| *b == 0));
    // Past the first chunk, the fill stops at the roll size (6000), not at
    // the next chunk boundary (8192).
    let mut i = 1;
    while disk.segments().len() == 1 && disk.len(&path) <= 4096 {
        append_each_synced(&mut wal, &[common::fixed_record(i)]);
        i += 1;
    }
    if disk.segments().len() == 1 {
        assert_eq!(disk.len(&path), 6000);
    }
    let written: Vec<_> = (0..i).map(common::fixed_record).collect();
    drop(wal);
    let (_, recovered) = disk.open(opts).unwrap();
    assert_eq!(recovered.records, written);
}

/// A fill that the disk has no room for costs only speed: the records that
/// fit are written and recovered, and the log is not poisoned.
#[test]
fn a_fill_without_room_is_not_an_error() {
    let sim = synod_storage::SimFs::new();
    let disk = TestDisk::Sim(sim.clone());
    let opts = WalOptions {
        preallocate_bytes: 1 << 20,
        ..WalOptions::default()
    };
    let (mut wal, _) = disk.open(opts.clone()).unwrap();
    sim.set_space_bytes_max(Some(sim.used_bytes() + (64 << 10)));
    let records: Vec<_> = (0..50).map(common::fixed_record).collect();
    append_each_synced(&mut wal, &records);
    assert!(
        disk.len(&disk.newest_segment()) < 1 << 20,
        "the fill did not fit"
    );
    let data_end = write_batches(&TestDisk::sim(), std::slice::from_ref(&records))
        .last()
        .unwrap()
        .0;
    // Besides the segment, the log holds the record of its newest one.
    let record = disk.len(&disk.dir().join("wal").join("NEWEST"));
    assert_eq!(
        wal.disk_bytes(),
        data_end + record,
        "a failed fill hides no data"
    );
    drop(wal);
    let (_, recovered) = disk.open(opts).unwrap();
    assert_eq!(recovered.records, records);
}

/// A fill that failed is retried by the next write (from that write's own
/// data: no later write extends the file past space never reserved), so
/// once the disk has room again the chunk is prepared.
#[test]
fn a_failed_fill_is_retried_by_the_next_write() {
    let sim = synod_storage::SimFs::new();
    let disk = TestDisk::Sim(sim.clone());
    let chunk = 1 << 20;
    let opts = WalOptions {
        preallocate_bytes: chunk,
        ..WalOptions::default()
    };
    let (mut wal, _) = disk.open(opts.clone()).unwrap();
    sim.set_space_bytes_max(Some(sim.used_bytes() + (64 << 10)));
    let first: Vec<_> = (0..10).map(common::fixed_record).collect();
    append_each_synced(&mut wal, &first);
    let path = disk.newest_segment();
    assert!(disk.len(&path) < chunk, "the fill did not fit");
    sim.set_space_bytes_max(None);
    append_each_synced(&mut wal, &[common::fixed_record(10)]);
    assert_eq!(disk.len(&path), chunk, "the next write prepared the chunk");
    drop(wal);
    let (_, recovered) = disk.open(opts).unwrap();
    assert_eq!(recovered.records.len(), 11);
}
