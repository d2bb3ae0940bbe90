//! Redis glob patterns for `KEYS` and `SCAN MATCH`.
//!
//! `*` matches any run of bytes, `?` one byte, `[abc]` one of a set, `[^a]`
//! anything but, `[a-z]` a range (either order), `\x` the byte `x` literally
//! (also inside brackets). An unclosed `[` takes the rest of the pattern as
//! its set, as Redis' `stringmatchlen` does.
//!
//! Every token other than `*` consumes exactly one byte, so backtracking to
//! the most recent `*` is enough: the match runs in O(pattern × text) time
//! and constant space, with no recursion a hostile pattern could exploit.

/// Whether `text` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let mut unlimited = u64::MAX;
    glob_match_within(pattern, text, &mut unlimited).unwrap_or(false)
}

/// [`glob_match`] in at most `*steps` steps (one per byte compared or
/// skipped), taken off `*steps`; `None` once they run out, undecided. For
/// matching on a path that must not stall (pub/sub delivery on the apply
/// path): `(pattern.len() + text.len()) * 64` steps always suffice for a
/// pattern of at most 64 bytes.
pub fn glob_match_within(pattern: &[u8], text: &[u8], steps: &mut u64) -> Option<bool> {
    let mut pattern_at = 0;
    let mut text_at = 0;
    // Where to resume after the latest `*`: (pattern index after the star
    // run, text index the star's match currently ends at).
    let mut resume: Option<(usize, usize)> = None;
    loop {
        *steps = steps.checked_sub(1)?;
        if pattern.get(pattern_at) == Some(&b'*') {
            while pattern.get(pattern_at) == Some(&b'*') {
                pattern_at += 1;
            }
            if pattern_at == pattern.len() {
                return Some(true);
            }
            resume = Some((pattern_at, text_at));
            continue;
        }
        if text_at == text.len() {
            return Some(pattern[pattern_at..].iter().all(|&byte| byte == b'*'));
        }
        if pattern_at < pattern.len() {
            let (matched, next) = match_token(pattern, pattern_at, text[text_at]);
            if matched {
                pattern_at = next;
                text_at += 1;
                continue;
            }
        }
        match resume {
            Some((star_pattern_at, star_text_at)) => {
                debug_assert!(star_text_at < text.len());
                resume = Some((star_pattern_at, star_text_at + 1));
                pattern_at = star_pattern_at;
                text_at = star_text_at + 1;
            }
            None => return Some(false),
        }
    }
}

/// Matches the single-byte token starting at `pattern[at]` (not `*`)
/// against `byte`; returns whether it matched and where the next token starts.
fn match_token(pattern: &[u8], at: usize, byte: u8) -> (bool, usize) {
    debug_assert!(at < pattern.len() && pattern[at] != b'*');
    match pattern[at] {
        b'?' => (true, at + 1),
        b'[' => match_class(pattern, at + 1, byte),
        b'\\' if at + 1 < pattern.len() => (pattern[at + 1] == byte, at + 2),
        literal => (literal == byte, at + 1),
    }
}

/// Matches a bracket class whose body starts at `pattern[at]` (just after
/// the `[`).
fn match_class(pattern: &[u8], mut at: usize, byte: u8) -> (bool, usize) {
    let negate = pattern.get(at) == Some(&b'^');
    if negate {
        at += 1;
    }
    let mut matched = false;
    loop {
        let remaining = pattern.len() - at.min(pattern.len());
        if remaining == 0 {
            break; // unclosed: the class ran to the end of the pattern
        }
        let current = pattern[at];
        if current == b'\\' && remaining >= 2 {
            matched |= pattern[at + 1] == byte;
            at += 2;
        } else if current == b']' {
            at += 1;
            break;
        } else if remaining >= 3 && pattern[at + 1] == b'-' {
            let (low, high) = if current <= pattern[at + 2] {
                (current, pattern[at + 2])
            } else {
                (pattern[at + 2], current)
            };
            matched |= (low..=high).contains(&byte);
            at += 3;
        } else {
            matched |= current == byte;
            at += 1;
        }
    }
    (matched != negate, at)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn matches(pattern: &str, text: &str) -> bool {
        glob_match(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("h?llo", "hello"));
        assert!(!matches("h?llo", "hllo"));
        assert!(matches("h*llo", "hllo"));
        assert!(matches("h*llo", "heeeello"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("user:*", "user:1"));
        assert!(!matches("user:*", "user"));
        assert!(matches("*:*", "a:b"));
        assert!(matches("a**", "a"));
        assert!(!matches("", "a"));
        assert!(matches("", ""));
    }

    #[test]
    fn classes() {
        assert!(matches("h[ae]llo", "hello"));
        assert!(matches("h[ae]llo", "hallo"));
        assert!(!matches("h[ae]llo", "hillo"));
        assert!(matches("h[^e]llo", "hallo"));
        assert!(!matches("h[^e]llo", "hello"));
        assert!(matches("h[a-b]llo", "hbllo"));
        assert!(matches("h[b-a]llo", "hallo"));
        assert!(!matches("h[a-b]llo", "hcllo"));
        // As in Redis, `[a-]` is the range from `]` to `a`, left unclosed.
        assert!(!matches("[a-]", "-"));
        assert!(matches("[a-]", "_"));
        assert!(matches("[-a]", "-"));
        assert!(matches("[\\]]", "]"));
        assert!(!matches("[]", "a"));
        assert!(matches("[^]", "a"));
        assert!(matches("[abc", "b"));
        assert!(!matches("[abc", "bx"));
    }

    #[test]
    fn escapes() {
        assert!(matches("h\\*llo", "h*llo"));
        assert!(!matches("h\\*llo", "hello"));
        assert!(matches("a\\?", "a?"));
        assert!(!matches("a\\?", "ab"));
        assert!(matches("a\\", "a\\"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "a*".repeat(100));
        assert!(!matches(&pattern, &text));
    }
}

#[cfg(test)]
mod budget_tests {
    use super::{glob_match, glob_match_within};

    /// A quadratic match runs out of steps instead of running on; a short
    /// pattern always fits in its 64 steps per byte.
    #[test]
    fn a_costly_match_runs_out_of_steps() {
        let pattern = [b"*".to_vec(), b"a".repeat(5000), b"b".to_vec()].concat();
        let text = b"a".repeat(20_000);
        let mut steps = ((pattern.len() + text.len()) * 64) as u64;
        assert_eq!(glob_match_within(&pattern, &text, &mut steps), None);
        assert_eq!(steps, 0);
        for (pattern, text) in [
            (&b"h*l?o*[a-z]x"[..], &b"hello world, x"[..]),
            (b"*a*b*c*d*", b"abcd"),
        ] {
            let mut steps = ((pattern.len() + text.len() + 64) * 64) as u64;
            assert_eq!(
                glob_match_within(pattern, text, &mut steps),
                Some(glob_match(pattern, text))
            );
        }
    }
}
