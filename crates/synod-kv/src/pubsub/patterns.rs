//! The pattern index: patterns grouped by their literal prefix, so that a
//! message is matched only against the patterns that can match it.
//!
//! A glob can only match a channel that starts with its literal prefix
//! (the bytes before its first special character), so the registry keeps
//! each pattern under that prefix, and a message tries only the groups
//! whose prefix starts its channel. Patterns such as `news.*` under other
//! prefixes then cost a message nothing; patterns that start with a glob
//! character (prefix empty) are tried by every message, within the apply's
//! budget (see `Registry::publish`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;

/// The literal start of glob `pattern`: the bytes before its first `*`,
/// `?`, `[` or `\\`. Only a channel that starts with it can match.
pub(super) fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|byte| matches!(byte, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The groups of `prefixes` whose prefix starts `channel`, longest prefix
/// first, within `*steps` (one per lookup and per byte compared, taken off
/// `*steps`); `None` once they run out.
///
/// Each lookup takes the greatest prefix at or below the current bound
/// (the channel itself at first). If it starts the channel, it is a group
/// to try, and the next bound is just below it; if not, the next bound is
/// the part it shares with the channel, which it is above. Either way the
/// bound's length shrinks (or the walk ends), so there are at most two
/// lookups per byte of the channel, and in practice one per group found
/// plus one.
pub(super) fn prefix_groups<'a>(
    prefixes: &'a BTreeMap<Bytes, BTreeSet<Bytes>>,
    channel: &[u8],
    steps: &mut u64,
) -> Option<Vec<&'a BTreeSet<Bytes>>> {
    let mut groups = Vec::new();
    let mut upper: Bound<&[u8]> = Bound::Included(channel);
    loop {
        *steps = steps.checked_sub(1)?;
        let Some((prefix, patterns)) = prefixes
            .range::<[u8], _>((Bound::Unbounded, upper))
            .next_back()
        else {
            return Some(groups);
        };
        let common = common_prefix_len(prefix, channel);
        *steps = steps.checked_sub(common as u64)?;
        if common == prefix.len() {
            groups.push(patterns);
            if common == 0 {
                return Some(groups);
            }
            upper = Bound::Excluded(&channel[..common]);
        } else {
            debug_assert!(prefix[..] > channel[..common]);
            upper = Bound::Included(&channel[..common]);
        }
    }
}
