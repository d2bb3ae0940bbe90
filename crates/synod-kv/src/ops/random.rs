//! The seeded randomness behind RANDOMKEY, HRANDFIELD, SRANDMEMBER, SPOP
//! and ZRANDMEMBER: one generator, seeded by the command's place in the log, never by
//! a clock or the process, so every replica that runs the command draws
//! the same; ChaCha8 passes the statistical batteries, so draws are
//! uniform.
//!
//! The place is the instance *and* the command's index in the instance's
//! value (`ApplyContext::index`): the leader puts many clients' commands
//! into one value, where they share the instance and often the log clock,
//! so without the index concurrent commands drew alike.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use synod::ApplyContext;
use xxhash_rust::xxh3::xxh3_64;

/// Most bytes (members or fields, values and [`RANDOM_REPLY_ENTRY_BYTES`]
/// per entry) a random reply with a negative count (drawn with repetition)
/// may hold: the count repeats entries, so without a bound a 20-byte
/// command could make a node build a reply of any size.
pub(crate) const RANDOM_REPLY_BYTES_MAX: u64 = 64 << 20;
/// Accounted per drawn entry in [`RANDOM_REPLY_BYTES_MAX`].
pub(crate) const RANDOM_REPLY_ENTRY_BYTES: u64 = 16;

/// The seed layout: instance, log time, a salt (a position or a nonce),
/// a hash of the key (0 when there is none). The 32 bytes are full, so the
/// command's index in its instance's value picks the ChaCha stream (64 bits
/// of its own, each stream an independent sequence of the same key).
fn seeded(ctx: &ApplyContext, salt: u64, key_hash: u64) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&ctx.instance.0.to_le_bytes());
    seed[8..16].copy_from_slice(&ctx.time_ms.to_le_bytes());
    seed[16..24].copy_from_slice(&salt.to_le_bytes());
    seed[24..].copy_from_slice(&key_hash.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from(ctx.index));
    rng
}

/// The generator behind a random reply or pop: seeded by the command's
/// place in the log — its instance, its index in the instance's value, the
/// log clock, and its position inside the log command (a transaction, a
/// pipelined batch or a script's calls put several in one) — and by the
/// key, so two commands never share a draw unless they share all of these.
pub(crate) fn generator(ctx: &ApplyContext, position: u32, key: &[u8]) -> ChaCha8Rng {
    seeded(ctx, u64::from(position), xxh3_64(key))
}

/// The generator of a keyspace-wide pick (RANDOMKEY): seeded by the
/// command's place in the log and the nonce the serving node put in the
/// command (reads at one point of the log still differ).
pub(crate) fn pick_rng(ctx: &ApplyContext, nonce: u64) -> ChaCha8Rng {
    seeded(ctx, nonce, 0)
}

/// A uniform draw in `0..n` (`n > 0`), without modulo bias: values below
/// `2^64 mod n` are redrawn, leaving a multiple of `n` equally likely ones.
pub(crate) fn uniform_below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    debug_assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let draw = rng.next_u64();
        if draw >= threshold {
            return draw % n;
        }
    }
}

/// `count` distinct positions below `len` (`count <= len`), every subset
/// equally likely, ascending. Floyd's algorithm: O(count log count) time
/// and memory, whatever `len`; for more than half of `len` it draws the
/// positions left out instead, so never more than O(len / 2) draws.
pub(crate) fn distinct_positions(rng: &mut ChaCha8Rng, len: usize, count: usize) -> Vec<usize> {
    debug_assert!(count <= len);
    let count = count.min(len);
    let left_out = len - count;
    let draw = |rng: &mut ChaCha8Rng, wanted: usize| {
        let mut chosen = std::collections::BTreeSet::new();
        for upper in len - wanted..len {
            let pick = uniform_below(rng, upper as u64 + 1) as usize;
            if !chosen.insert(pick) {
                chosen.insert(upper);
            }
        }
        chosen
    };
    if count <= left_out {
        draw(rng, count).into_iter().collect()
    } else {
        let skipped = draw(rng, left_out);
        (0..len).filter(|at| !skipped.contains(at)).collect()
    }
}

/// Shuffles `items` in place (Fisher-Yates), every order equally likely.
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for slot in (1..items.len()).rev() {
        let pick = uniform_below(rng, slot as u64 + 1) as usize;
        items.swap(slot, pick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ApplyContext {
        ApplyContext {
            instance: synod_core::InstanceId(7),
            time_ms: 1,
            index: 0,
        }
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = generator(&ctx(), 0, b"k");
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[uniform_below(&mut rng, 3) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
        assert_eq!(uniform_below(&mut rng, 1), 0);
    }

    #[test]
    fn the_same_place_draws_the_same() {
        let draws = |position, key: &[u8]| {
            let mut rng = generator(&ctx(), position, key);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(0, b"k"), draws(0, b"k"));
        assert_ne!(draws(0, b"k"), draws(1, b"k"));
        assert_ne!(draws(0, b"k"), draws(0, b"j"));
    }

    /// Commands of one instance value share the instance and often the log
    /// clock; their index in the value still draws them apart (before it
    /// was in the seed, concurrent clients' draws repeated).
    #[test]
    fn another_index_in_the_value_draws_another() {
        let at = |index| ApplyContext { index, ..ctx() };
        let draws = |mut rng: ChaCha8Rng| (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>();
        assert_eq!(
            draws(generator(&at(1), 0, b"k")),
            draws(generator(&at(1), 0, b"k"))
        );
        assert_ne!(
            draws(generator(&at(0), 0, b"k")),
            draws(generator(&at(1), 0, b"k"))
        );
        assert_ne!(draws(pick_rng(&at(0), 5)), draws(pick_rng(&at(1), 5)));
    }

    #[test]
    fn distinct_positions_are_distinct_sorted_and_uniform() {
        let mut rng = generator(&ctx(), 0, b"k");
        for (len, count) in [(10, 0), (10, 3), (10, 7), (10, 10), (1, 1), (0, 0)] {
            let picked = distinct_positions(&mut rng, len, count);
            assert_eq!(picked.len(), count);
            assert!(picked.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(picked.iter().all(|&at| at < len));
        }
        // Each position of 10 is picked 3 times in 10 draws on average.
        for count in [3, 7] {
            let mut seen = [0u32; 10];
            for _ in 0..10_000 {
                for at in distinct_positions(&mut rng, 10, count) {
                    seen[at] += 1;
                }
            }
            let expected = 1000 * count as u32;
            assert!(
                seen.iter().all(|&n| n.abs_diff(expected) < expected / 10),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn shuffle_keeps_the_items() {
        let mut rng = generator(&ctx(), 0, b"k");
        let mut items: Vec<u32> = (0..50).collect();
        shuffle(&mut rng, &mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
