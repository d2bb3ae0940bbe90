//! Lua 5.1's pattern matching (`string.find`, `string.match`,
//! `string.gmatch`, `string.gsub`) with every step charged to the script's
//! instruction budget.
//!
//! Why synod has its own: Lua runs the instruction hook only between VM
//! instructions, and Lua 5.1's matcher (`lstrlib.c`) runs a whole match
//! inside one C call. A backtracking pattern costs about
//! `length^(quantifiers + 1)` steps, so
//! `('a'):rep(1e5):find(('a*'):rep(10) .. 'b')` runs for longer than the
//! universe: a script taking that path at apply would stop every replica
//! for good, budget or not. It also recurses once per pattern item on the
//! C stack with no bound, so a long enough pattern overflows it. This port
//! keeps Lua 5.1's semantics (the same matches, captures, positions and
//! error messages, checked against the C functions by the tests), counts
//! one instruction per matcher step (per pattern item tried, per
//! character scanned by a repetition or a set, per 16 bytes copied) and
//! stops with the budget's error at the same step on every replica. The
//! matcher's recursion is bounded (200 levels, as later Lua versions
//! bound it: "pattern too complex") and so is the nesting of `gsub`
//! replacement functions that call `gsub`.
//!
//! Only scripts whose log entry carries its budget run with this matcher
//! (see [`super::LEGACY_INSTRUCTIONS_MAX`]): an entry logged before it
//! replays with the C functions, as it was applied then.
//!
//! The functions return `true, results...` or `false, error`, and the
//! sandbox's Lua wrapper raises the error (`error(e, 0)`): a C function's
//! `luaL_error` adds no position either, and a replacement function's own
//! error value (a `redis.call` error table) passes through unchanged.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, Lua, LuaString, MultiValue, Table, Value};

use super::precompiled::Precompiled;

/// The budget a run's matcher draws on: the instruction count the hook
/// keeps, shared.
#[derive(Clone)]
pub(crate) struct Budget {
    /// Instructions charged so far (the hook adds its steps here too).
    pub executed: Rc<Cell<u64>>,
    /// Set once the budget is spent (or the run killed): the run is over.
    pub stopped: Rc<Cell<bool>>,
    pub instructions_max: u64,
    /// The dry run's SCRIPT KILL flag.
    pub kill: Option<Arc<AtomicBool>>,
    /// The Lua state's memory limit: a `gsub` result is built outside
    /// Lua's allocator and is refused past it.
    pub memory_bytes_max: usize,
}

impl Budget {
    /// Charges `steps`; false once the budget is spent.
    fn charge(&self, steps: u64) -> bool {
        let total = self.executed.get().saturating_add(steps);
        self.executed.set(total);
        let killed = self
            .kill
            .as_ref()
            .is_some_and(|kill| kill.load(Ordering::Relaxed));
        if total > self.instructions_max || killed {
            self.stopped.set(true);
        }
        !self.stopped.get()
    }
}

/// Lua 5.1's `LUA_MAXCAPTURES`.
const CAPTURES_MAX: usize = 32;
/// The matcher's recursion bound (Lua 5.2's `MAXCCALLS`).
const DEPTH_MAX: u32 = 200;
/// Nested `gsub` calls through replacement functions: each level holds
/// mlua's and Lua's frames on the thread's stack (a dry run's thread has
/// 2 MiB).
const GSUB_NESTING_MAX: u32 = 32;
/// Steps gathered before they are charged (and the kill flag read).
const CHARGE_EVERY: u64 = 1024;
/// Bytes copied per step charged.
const BYTES_PER_STEP: u64 = 16;
/// Lua 5.1's `SPECIALS`: a `find` pattern without them is a plain search.
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Why a match stopped early.
enum Fail {
    /// A Lua error, raised as this string.
    Error(String),
    /// A replacement function raised this value: raised again unchanged.
    Raise(Value),
    /// The budget is spent.
    Stopped,
    /// The result would pass the memory limit.
    Memory,
}

fn error(text: &str) -> Fail {
    Fail::Error(text.to_string())
}

impl From<mlua::Error> for Fail {
    fn from(error: mlua::Error) -> Self {
        match error {
            mlua::Error::MemoryError(_) => Fail::Memory,
            other => Fail::Error(other.to_string()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CaptureLen {
    Unfinished,
    Position,
    Len(usize),
}

#[derive(Clone, Copy)]
struct Capture {
    init: usize,
    len: CaptureLen,
}

/// One capture's value.
enum Captured {
    Text(usize, usize),
    Position(usize),
}

/// `MatchState`, with the subject and the pattern as slices: the pattern
/// ends at its first NUL as Lua 5.1's C string does.
struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    capture: [Capture; CAPTURES_MAX],
    depth: u32,
    steps: u64,
    budget: &'a Budget,
}

/// C's `isalpha` ... in the C locale, for the class letter `class`
/// (lowercase); `None` when it names no class.
fn class_holds(class: u8, c: u8) -> Option<bool> {
    Some(match class {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c < 32 || c == 127,
        b'd' => c.is_ascii_digit(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => c == b' ' || (9..=13).contains(&c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return None,
    })
}

/// `match_class`: whether `c` is in the class `%cl`.
fn match_class(c: u8, cl: u8) -> bool {
    match class_holds(cl.to_ascii_lowercase(), c) {
        Some(holds) => holds != cl.is_ascii_uppercase(),
        None => cl == c,
    }
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], budget: &'a Budget) -> Self {
        let end = pat.iter().position(|&b| b == 0).unwrap_or(pat.len());
        Matcher {
            src,
            pat: &pat[..end],
            level: 0,
            capture: [Capture {
                init: 0,
                len: CaptureLen::Unfinished,
            }; CAPTURES_MAX],
            depth: 0,
            // The search for the pattern's end.
            steps: pat.len() as u64 / BYTES_PER_STEP,
            budget,
        }
    }

    /// The pattern byte at `p`, NUL past its end.
    fn pat_at(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    /// The subject byte at `s`, NUL at its end (Lua strings carry one).
    fn src_at(&self, s: usize) -> u8 {
        self.src.get(s).copied().unwrap_or(0)
    }

    /// Counts one step, charging the gathered steps now and then.
    fn step(&mut self) -> Result<(), Fail> {
        self.steps += 1;
        if self.steps >= CHARGE_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Charges the steps gathered so far.
    fn flush(&mut self) -> Result<(), Fail> {
        let steps = std::mem::take(&mut self.steps);
        if self.budget.charge(steps) {
            Ok(())
        } else {
            Err(Fail::Stopped)
        }
    }

    /// Charges what is left and answers `result`, or [`Fail::Stopped`]
    /// when the budget ran out: a failed match is charged too, so a loop
    /// of `pcall`s around an erroring pattern pays for its scans.
    fn finish<T>(&mut self, result: Result<T, Fail>) -> Result<T, Fail> {
        self.flush()?;
        result
    }

    /// `classEnd`: the index just past the single-character class at `p`.
    fn class_end(&mut self, mut p: usize) -> Result<usize, Fail> {
        let c = self.pat_at(p);
        p += 1;
        if c == b'%' {
            if self.pat_at(p) == 0 {
                return Err(error("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if self.pat_at(p) == b'^' {
                p += 1;
            }
            let start = p;
            loop {
                if self.pat_at(p) == 0 {
                    return Err(error("malformed pattern (missing ']')"));
                }
                let c = self.pat_at(p);
                p += 1;
                if c == b'%' && self.pat_at(p) != 0 {
                    p += 1;
                }
                if self.pat_at(p) == b']' {
                    break;
                }
            }
            self.steps += (p - start) as u64;
            return Ok(p + 1);
        }
        Ok(p)
    }

    /// `matchbracketclass`: whether `c` is in the set `[...]` that starts
    /// at `p` and whose `]` is at `ec`.
    fn bracket(&mut self, c: u8, mut p: usize, ec: usize) -> bool {
        let start = p;
        let mut sig = true;
        if self.pat_at(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        let found = loop {
            p += 1;
            if p >= ec {
                break false;
            }
            if self.pat_at(p) == b'%' {
                p += 1;
                if match_class(c, self.pat_at(p)) {
                    break true;
                }
            } else if self.pat_at(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.pat_at(p - 2) <= c && c <= self.pat_at(p) {
                    break true;
                }
            } else if self.pat_at(p) == c {
                break true;
            }
        };
        self.steps += (p - start) as u64;
        if found {
            sig
        } else {
            !sig
        }
    }

    /// `singlematch`: whether `c` matches the class at `p` ending at `ep`.
    fn single_match(&mut self, c: u8, p: usize, ep: usize) -> bool {
        match self.pat_at(p) {
            b'.' => true,
            b'%' => match_class(c, self.pat_at(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            other => other == c,
        }
    }

    /// `match`, with its recursion counted and bounded.
    fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        if self.depth >= DEPTH_MAX {
            return Err(error("pattern too complex"));
        }
        self.depth += 1;
        let result = self.match_here(s, p);
        self.depth -= 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, Fail> {
        loop {
            self.step()?;
            match self.pat_at(p) {
                b'(' => {
                    return if self.pat_at(p + 1) == b')' {
                        self.start_capture(s, p + 2, CaptureLen::Position)
                    } else {
                        self.start_capture(s, p + 1, CaptureLen::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                0 => return Ok(Some(s)),
                b'$' if self.pat_at(p + 1) == 0 => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                b'%' => match self.pat_at(p + 1) {
                    b'b' => match self.match_balance(s, p + 2)? {
                        Some(next) => {
                            s = next;
                            p += 4;
                            continue;
                        }
                        None => return Ok(None),
                    },
                    b'f' => {
                        p += 2;
                        if self.pat_at(p) != b'[' {
                            return Err(error("missing '[' after '%f' in pattern"));
                        }
                        let ep = self.class_end(p)?;
                        let previous = if s == 0 { 0 } else { self.src[s - 1] };
                        let current = self.src_at(s);
                        if self.bracket(previous, p, ep - 1) || !self.bracket(current, p, ep - 1) {
                            return Ok(None);
                        }
                        p = ep;
                        continue;
                    }
                    digit if digit.is_ascii_digit() => match self.match_capture(s, digit)? {
                        Some(next) => {
                            s = next;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    },
                    _ => {}
                },
                _ => {}
            }
            // The default case: a single-character class, maybe repeated.
            let ep = self.class_end(p)?;
            let m = s < self.src.len() && self.single_match(self.src[s], p, ep);
            match self.pat_at(ep) {
                b'?' => {
                    if m {
                        if let Some(end) = self.do_match(s + 1, ep + 1)? {
                            return Ok(Some(end));
                        }
                    }
                    p = ep + 1;
                }
                b'*' => return self.max_expand(s, p, ep),
                b'+' => {
                    return if m {
                        self.max_expand(s + 1, p, ep)
                    } else {
                        Ok(None)
                    };
                }
                b'-' => return self.min_expand(s, p, ep),
                _ => {
                    if !m {
                        return Ok(None);
                    }
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, Fail> {
        let mut i = 0;
        while s + i < self.src.len() && self.single_match(self.src[s + i], p, ep) {
            i += 1;
            self.step()?;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Result<Option<usize>, Fail> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if s < self.src.len() && self.single_match(self.src[s], p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(
        &mut self,
        s: usize,
        p: usize,
        what: CaptureLen,
    ) -> Result<Option<usize>, Fail> {
        if self.level >= CAPTURES_MAX {
            return Err(error("too many captures"));
        }
        self.capture[self.level] = Capture { init: s, len: what };
        self.level += 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        let l = self.capture_to_close()?;
        self.capture[l].len = CaptureLen::Len(s - self.capture[l].init);
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.capture[l].len = CaptureLen::Unfinished;
        }
        Ok(result)
    }

    fn capture_to_close(&self) -> Result<usize, Fail> {
        (0..self.level)
            .rev()
            .find(|&l| self.capture[l].len == CaptureLen::Unfinished)
            .ok_or_else(|| error("invalid pattern capture"))
    }

    /// `%bxy` at `p` (pointing at `x`).
    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        let (open, close) = (self.pat_at(p), self.pat_at(p + 1));
        if open == 0 || close == 0 {
            return Err(error("unbalanced pattern"));
        }
        if s >= self.src.len() || self.src[s] != open {
            return Ok(None);
        }
        let mut depth = 1usize;
        let mut s = s + 1;
        while s < self.src.len() {
            self.step()?;
            let c = self.src[s];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(s + 1));
                }
            } else if c == open {
                depth += 1;
            }
            s += 1;
        }
        Ok(None)
    }

    /// `%1`..`%9` at `s`.
    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>, Fail> {
        let l = self.check_capture(digit)?;
        let capture = self.capture[l];
        // A position capture never matches (Lua compares against its
        // length, -2, as an unsigned size).
        let CaptureLen::Len(len) = capture.len else {
            return Ok(None);
        };
        self.steps += len as u64 / BYTES_PER_STEP;
        let matches = self.src.len() - s >= len
            && self.src[capture.init..capture.init + len] == self.src[s..s + len];
        Ok(matches.then_some(s + len))
    }

    fn check_capture(&self, digit: u8) -> Result<usize, Fail> {
        let l = i32::from(digit) - i32::from(b'1');
        if l < 0
            || l as usize >= self.level
            || self.capture[l as usize].len == CaptureLen::Unfinished
        {
            return Err(error("invalid capture index"));
        }
        Ok(l as usize)
    }

    /// `push_onecapture`'s value for capture `i` of the match `s..e`.
    fn captured(&self, i: usize, s: usize, e: usize) -> Result<Captured, Fail> {
        if i >= self.level {
            return if i == 0 {
                Ok(Captured::Text(s, e))
            } else {
                Err(error("invalid capture index"))
            };
        }
        let capture = self.capture[i];
        match capture.len {
            CaptureLen::Unfinished => Err(error("unfinished capture")),
            CaptureLen::Position => Ok(Captured::Position(capture.init + 1)),
            CaptureLen::Len(len) => Ok(Captured::Text(capture.init, capture.init + len)),
        }
    }

    /// `push_captures`: every capture as Lua values (the whole match when
    /// the pattern has none and `whole` is set).
    fn captures(
        &self,
        lua: &Lua,
        whole: Option<(usize, usize)>,
        out: &mut Vec<Value>,
    ) -> Result<(), Fail> {
        let (s, e, levels) = match whole {
            Some((s, e)) if self.level == 0 => (s, e, 1),
            Some((s, e)) => (s, e, self.level),
            None => (0, 0, self.level),
        };
        for i in 0..levels {
            out.push(self.captured_value(lua, i, s, e)?);
        }
        Ok(())
    }

    fn captured_value(&self, lua: &Lua, i: usize, s: usize, e: usize) -> Result<Value, Fail> {
        Ok(match self.captured(i, s, e)? {
            Captured::Text(from, to) => Value::String(lua.create_string(&self.src[from..to])?),
            Captured::Position(at) => Value::Integer(at as i64),
        })
    }
}

/// Lua's name for a value's type, as `luaL_typename` writes it.
fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None => "no value",
        Some(Value::Integer(_) | Value::Number(_)) => "number",
        Some(Value::LightUserData(_) | Value::UserData(_) | Value::Error(_)) => "userdata",
        Some(other) => other.type_name(),
    }
}

fn bad_argument(n: usize, name: &str, text: &str) -> Fail {
    Fail::Error(format!("bad argument #{n} to '{name}' ({text})"))
}

/// `luaL_checklstring`: argument `n` (from 1) as a string; a number is
/// turned into its text as Lua does.
fn check_string(lua: &Lua, args: &MultiValue, n: usize, name: &str) -> Result<LuaString, Fail> {
    let value = args.get(n - 1);
    let coerced = match value {
        Some(Value::String(text)) => Some(text.clone()),
        Some(number @ (Value::Integer(_) | Value::Number(_))) => {
            lua.coerce_string(number.clone())?
        }
        _ => None,
    };
    coerced.ok_or_else(|| {
        bad_argument(
            n,
            name,
            &format!("string expected, got {}", type_name(value)),
        )
    })
}

/// `luaL_optinteger`: argument `n` as an integer (a number truncated, a
/// numeric string read as one), `default` when absent or nil.
fn opt_integer(
    lua: &Lua,
    args: &MultiValue,
    n: usize,
    name: &str,
    default: i64,
) -> Result<i64, Fail> {
    let value = args.get(n - 1);
    let number = match value {
        None | Some(Value::Nil) => return Ok(default),
        Some(Value::Integer(i)) => return Ok(*i),
        Some(Value::Number(x)) => Some(*x),
        Some(Value::String(_)) => lua.coerce_number(value.cloned().unwrap_or(Value::Nil))?,
        Some(_) => None,
    };
    number.map(lua_integer).ok_or_else(|| {
        bad_argument(
            n,
            name,
            &format!("number expected, got {}", type_name(value)),
        )
    })
}

/// `(lua_Integer)x` as Lua 5.1 built for x86-64 computes it (`cvttsd2si`):
/// truncated, and the smallest integer for NaN and anything out of range
/// (C leaves those undefined; Rust's `as` would saturate instead).
fn lua_integer(x: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if x.is_nan() || !(-LIMIT..LIMIT).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// The `true, results...` or `false, error` the sandbox's wrapper takes.
fn answer(lua: &Lua, result: Result<Vec<Value>, Fail>) -> mlua::Result<MultiValue> {
    match result {
        Ok(values) => {
            let mut out = MultiValue::with_capacity(values.len() + 1);
            out.push_back(Value::Boolean(true));
            out.extend(values);
            Ok(out)
        }
        // `true`: the wrapper adds the caller's position, as `luaL_error`
        // does.
        Err(Fail::Error(text)) => (false, lua.create_string(text)?, true).into_lua_multi(lua),
        Err(Fail::Raise(value)) => (false, value).into_lua_multi(lua),
        // The hook's own wording; the run ends with the budget's error
        // and `pcall` cannot catch it (the sandbox rethrows).
        Err(Fail::Stopped) => (false, "script stopped").into_lua_multi(lua),
        Err(Fail::Memory) => (false, "not enough memory").into_lua_multi(lua),
    }
}

/// `str_find_aux`: `string.find` (`find`) or `string.match`.
fn find_aux(lua: &Lua, budget: &Budget, args: &MultiValue, find: bool) -> Result<Vec<Value>, Fail> {
    let name = if find { "find" } else { "match" };
    let subject = check_string(lua, args, 1, name)?;
    let pattern = check_string(lua, args, 2, name)?;
    let src = subject.as_bytes();
    let pat = pattern.as_bytes();
    let length = src.len() as i64;
    let mut init = opt_integer(lua, args, 3, name, 1)?;
    if init < 0 {
        init = (init + length + 1).max(0);
    }
    let init = (init - 1).clamp(0, length) as usize;
    let plain = args
        .get(3)
        .is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    let pat_c = &pat[..pat.iter().position(|&b| b == 0).unwrap_or(pat.len())];
    if find && (plain || !pat_c.iter().any(|b| SPECIALS.contains(b))) {
        // The subject's scan, and the needle's: the searches above for its
        // NUL and its specials, and the searcher's set-up, are as long as it.
        let charged = (src.len() - init + pat.len()) as u64 / BYTES_PER_STEP + 1;
        if !budget.charge(charged) {
            return Err(Fail::Stopped);
        }
        let found = if pat.is_empty() {
            Some(0)
        } else {
            memchr::memmem::find(&src[init..], &pat)
        };
        return Ok(match found {
            Some(at) => vec![
                Value::Integer((init + at + 1) as i64),
                Value::Integer((init + at + pat.len()) as i64),
            ],
            None => vec![Value::Nil],
        });
    }
    let mut matcher = Matcher::new(&src, &pat, budget);
    let anchor = matcher.pat_at(0) == b'^';
    let p = usize::from(anchor);
    let result = (|| {
        let mut s1 = init;
        loop {
            matcher.level = 0;
            if let Some(end) = matcher.do_match(s1, p)? {
                let mut out = Vec::new();
                if find {
                    out.push(Value::Integer((s1 + 1) as i64));
                    out.push(Value::Integer(end as i64));
                    matcher.captures(lua, None, &mut out)?;
                } else {
                    matcher.captures(lua, Some((s1, end)), &mut out)?;
                }
                return Ok(out);
            }
            s1 += 1;
            if s1 > src.len() || anchor {
                return Ok(vec![Value::Nil]);
            }
        }
    })();
    matcher.finish(result)
}

/// `string.gmatch`'s iterator, one call.
fn gmatch_next(
    lua: &Lua,
    budget: &Budget,
    subject: &LuaString,
    pattern: &LuaString,
    next: &Cell<usize>,
) -> Result<Vec<Value>, Fail> {
    let src = subject.as_bytes();
    let pat = pattern.as_bytes();
    let mut matcher = Matcher::new(&src, &pat, budget);
    let result = (|| {
        let mut out = Vec::new();
        let mut start = next.get();
        while start <= src.len() {
            matcher.level = 0;
            if let Some(end) = matcher.do_match(start, 0)? {
                next.set(if end == start { end + 1 } else { end });
                matcher.captures(lua, Some((start, end)), &mut out)?;
                break;
            }
            start += 1;
        }
        Ok(out)
    })();
    matcher.finish(result)
}

/// What `gsub` replaces a match with.
enum Replacement {
    Text(LuaString),
    Call(Function),
    Lookup(Table),
}

/// `string.gsub`. `pcall` and `index` (`function(t, k) return t[k] end`)
/// are the real ones, taken before the sandbox replaces `pcall`: a
/// replacement function's error comes back as its value, to be raised
/// again unchanged.
#[allow(clippy::too_many_arguments)]
fn gsub(
    lua: &Lua,
    budget: &Budget,
    nesting: &Cell<u32>,
    held: &Cell<usize>,
    pcall: &Function,
    index: &Function,
    args: &MultiValue,
) -> Result<Vec<Value>, Fail> {
    let subject = check_string(lua, args, 1, "gsub")?;
    let pattern = check_string(lua, args, 2, "gsub")?;
    let src = subject.as_bytes();
    let pat = pattern.as_bytes();
    // `luaL_optint`: an `int`, so 2^32 is 0.
    let max_n = i64::from(opt_integer(lua, args, 4, "gsub", src.len() as i64 + 1)? as i32);
    let replacement = match args.get(2) {
        Some(Value::String(text)) => Replacement::Text(text.clone()),
        Some(number @ (Value::Integer(_) | Value::Number(_))) => Replacement::Text(
            lua.coerce_string(number.clone())?
                .ok_or_else(|| error("number has no text"))?,
        ),
        Some(Value::Function(f)) => Replacement::Call(f.clone()),
        Some(Value::Table(t)) => Replacement::Lookup(t.clone()),
        _ => {
            return Err(bad_argument(3, "gsub", "string/function/table expected"));
        }
    };
    let mut matcher = Matcher::new(&src, &pat, budget);
    let anchor = matcher.pat_at(0) == b'^';
    let p = usize::from(anchor);
    // This call's share of `held`: the bytes of `out`, outside Lua's
    // allocator. Nested calls (through replacement functions) each hold
    // one, and together they stay under the memory limit.
    let counted = Cell::new(0usize);
    let count = |out: &Vec<u8>| {
        held.set(held.get() - counted.get() + out.len());
        counted.set(out.len());
        if held.get() > budget.memory_bytes_max {
            Err(Fail::Memory)
        } else {
            Ok(())
        }
    };
    let result = (|| {
        let mut out: Vec<u8> = Vec::new();
        let mut s = 0usize;
        let mut n: i64 = 0;
        while n < max_n {
            matcher.level = 0;
            let end = matcher.do_match(s, p)?;
            if let Some(e) = end {
                n += 1;
                let before = out.len();
                let m = &mut matcher;
                add_value(lua, m, nesting, pcall, index, &replacement, s, e, &mut out)?;
                matcher.steps += (out.len() - before) as u64 / BYTES_PER_STEP;
                count(&out)?;
            }
            match end {
                Some(e) if e > s => s = e,
                _ if s < src.len() => {
                    out.push(src[s]);
                    s += 1;
                }
                _ => break,
            }
            if anchor {
                break;
            }
        }
        out.extend_from_slice(&src[s..]);
        matcher.steps += (src.len() - s) as u64 / BYTES_PER_STEP;
        count(&out)?;
        Ok((out, n))
    })();
    held.set(held.get() - counted.get());
    let (out, n) = matcher.finish(result)?;
    Ok(vec![
        Value::String(lua.create_string(&out)?),
        Value::Integer(n),
    ])
}

/// `add_value`: appends the replacement of the match `s..e`.
#[allow(clippy::too_many_arguments)]
fn add_value(
    lua: &Lua,
    matcher: &mut Matcher<'_>,
    nesting: &Cell<u32>,
    pcall: &Function,
    index: &Function,
    replacement: &Replacement,
    s: usize,
    e: usize,
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    let value = match replacement {
        Replacement::Text(text) => {
            let news = text.as_bytes();
            // Read whole at each match, whatever it adds: `%1`s that stand
            // for empty captures add nothing.
            matcher.steps += news.len() as u64 / BYTES_PER_STEP;
            let mut i = 0;
            while i < news.len() {
                let c = news[i];
                i += 1;
                if c != b'%' {
                    out.push(c);
                    continue;
                }
                // Past the end Lua reads the string's NUL.
                let next = news.get(i).copied().unwrap_or(0);
                i += 1;
                if !next.is_ascii_digit() {
                    out.push(next);
                } else if next == b'0' {
                    out.extend_from_slice(&matcher.src[s..e]);
                } else {
                    match matcher.captured(usize::from(next - b'1'), s, e)? {
                        Captured::Text(from, to) => out.extend_from_slice(&matcher.src[from..to]),
                        Captured::Position(at) => out.extend_from_slice(at.to_string().as_bytes()),
                    }
                }
            }
            return Ok(());
        }
        Replacement::Call(f) => {
            let mut call_args = vec![Value::Function(f.clone())];
            matcher.captures(lua, Some((s, e)), &mut call_args)?;
            call_protected(matcher, nesting, pcall, call_args)?
        }
        Replacement::Lookup(table) => {
            let key = matcher.captured_value(lua, 0, s, e)?;
            let call_args = vec![
                Value::Function(index.clone()),
                Value::Table(table.clone()),
                key,
            ];
            call_protected(matcher, nesting, pcall, call_args)?
        }
    };
    match value {
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(&matcher.src[s..e]),
        Value::String(text) => out.extend_from_slice(&text.as_bytes()),
        number @ (Value::Integer(_) | Value::Number(_)) => {
            if let Some(text) = lua.coerce_string(number)? {
                out.extend_from_slice(&text.as_bytes());
            }
        }
        other => {
            return Err(Fail::Error(format!(
                "invalid replacement value (a {})",
                type_name(Some(&other))
            )))
        }
    }
    Ok(())
}

/// Calls `pcall(args...)`, answering the first result, the callee's error
/// as [`Fail::Raise`], or [`Fail::Stopped`] once the budget is spent.
fn call_protected(
    matcher: &mut Matcher<'_>,
    nesting: &Cell<u32>,
    pcall: &Function,
    args: Vec<Value>,
) -> Result<Value, Fail> {
    if nesting.get() >= GSUB_NESTING_MAX {
        return Err(error("C stack overflow"));
    }
    // The steps so far are charged before Lua code runs on the same budget.
    matcher.flush()?;
    nesting.set(nesting.get() + 1);
    let result = pcall.call::<MultiValue>(MultiValue::from_iter(args));
    nesting.set(nesting.get() - 1);
    let mut results = result?.into_iter();
    if matcher.budget.stopped.get() {
        return Err(Fail::Stopped);
    }
    let ok = matches!(results.next(), Some(Value::Boolean(true)));
    let first = results.next().unwrap_or(Value::Nil);
    if ok {
        Ok(first)
    } else {
        Err(Fail::Raise(first))
    }
}

/// Wraps the Rust functions, which answer `true, results...` or `false,
/// error, own`, into functions that raise the error. The matcher's own
/// errors (`own`) get the position of the code that called the function,
/// as `luaL_error` adds it (`luaL_where(L, 1)`: "user_script:3: "): level
/// 3 is that code, past `error`, `checked` and the wrapper (which
/// `checked` replaces when tail-called: Lua 5.1 counts the lost call as a
/// level). A tail call by the user's code loses its frame, and the
/// position, as C functions' callers never do. Other errors (a
/// replacement function's, the budget's stop) are raised unchanged.
const WRAPPERS: &str = r#"
local raw = ...
local error = error
local function checked(ok, ...)
  if not ok then
    local e, own = ...
    error(e, own and 3 or 0)
  end
  return ...
end
local find, match, gmatch, gsub = raw.find, raw.match, raw.gmatch, raw.gsub
return {
  find = function(...) return checked(find(...)) end,
  match = function(...) return checked(match(...)) end,
  gmatch = function(...)
    local step = checked(gmatch(...))
    return function() return checked(step()) end
  end,
  gsub = function(...) return checked(gsub(...)) end,
}
"#;

/// The four functions, as a table `{find, match, gmatch, gsub}` for the
/// sandbox to put in `string`. Must be built before the sandbox replaces
/// `pcall`.
pub(crate) fn library(lua: &Lua, budget: &Budget) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for (name, find) in [("find", true), ("match", false)] {
        let budget = budget.clone();
        table.set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                answer(lua, find_aux(lua, &budget, &args, find))
            })?,
        )?;
    }
    {
        let budget = budget.clone();
        table.set(
            "gmatch",
            lua.create_function(move |lua, args: MultiValue| {
                let checked = check_string(lua, &args, 1, "gmatch")
                    .and_then(|subject| Ok((subject, check_string(lua, &args, 2, "gmatch")?)));
                let (subject, pattern) = match checked {
                    Ok(both) => both,
                    Err(fail) => return answer(lua, Err(fail)),
                };
                let budget = budget.clone();
                let next = Cell::new(0usize);
                let iterator = lua.create_function(move |lua, ()| {
                    answer(lua, gmatch_next(lua, &budget, &subject, &pattern, &next))
                })?;
                answer(lua, Ok(vec![Value::Function(iterator)]))
            })?,
        )?;
    }
    {
        let budget = budget.clone();
        let pcall: Function = lua.globals().get("pcall")?;
        let index: Function = lua
            .load("local t, k = ... return t[k]")
            .set_name("=synod")
            .into_function()?;
        let nesting = Cell::new(0u32);
        let held = Cell::new(0usize);
        table.set(
            "gsub",
            lua.create_function(move |lua, args: MultiValue| {
                answer(
                    lua,
                    gsub(lua, &budget, &nesting, &held, &pcall, &index, &args),
                )
            })?,
        )?;
    }
    // Only runs with costs charged (see `Limits::costs_charged`): bytecode.
    WRAPPERS_CHUNK.load(lua, true).call::<Table>(table)
}

/// [`WRAPPERS`], compiled once (see [`Precompiled`]).
static WRAPPERS_CHUNK: Precompiled = Precompiled::new(WRAPPERS);
