//! The work done inside one Lua instruction or one C call is charged to
//! the budget (`cost`): each script below does a bounded number of cheap
//! instructions (it finishes well within its budget when only instructions
//! count, as for log entries written before costs were charged) whose
//! work inside is far over the budget.

use synod_resp::Reply;

use super::tests::{ctx, error_text, eval};
use super::{run_limited, Limits};
use crate::keyspace::Keyspace;

const BUDGET: u64 = 10_000_000;

fn limits(instructions_max: u64, costs_charged: bool) -> Limits {
    Limits {
        instructions_max,
        memory_bytes_max: 64 << 20,
        costs_charged,
    }
}

fn run_with(script: &str, args: &[&str], limits: &Limits) -> Reply {
    let mut keyspace = Keyspace::default();
    run_limited(&mut keyspace, &eval(script, &[], args), &ctx(1), limits)
}

/// `body` repeated `times` in a loop, then `done`: over the budget with
/// costs charged, `done` without (what the test would see if the work were
/// not charged).
fn assert_charged(name: &str, setup: &str, body: &str, times: u32) {
    let script = format!("{setup}\nfor i = 1, {times} do {body} end return 'done'");
    let free = run_with(&script, &[], &limits(BUDGET, false));
    assert_eq!(
        free,
        Reply::Bulk("done".into()),
        "{name}: the script must fit when only instructions count"
    );
    let charged = run_with(&script, &[], &limits(BUDGET, true));
    assert!(
        matches!(&charged, Reply::Error(text) if text.starts_with("ERR Script exceeded the budget of 10000000")),
        "{name}: {charged:?}"
    );
    // pcall does not catch the stop, even when a C loop raised it.
    let caught = format!(
        "{setup}\nlocal ok = pcall(function() for i = 1, {times} do {body} end end) return 'caught'"
    );
    let charged = run_with(&caught, &[], &limits(BUDGET, true));
    assert!(
        error_text(&charged).starts_with("ERR Script exceeded the budget"),
        "{name} in pcall: {charged:?}"
    );
}

const MEGABYTE: &str = "local s = string.rep('x', 1048576) local s2 = s .. 'y'";

#[test]
fn concatenation_is_charged_per_byte() {
    // The result exists already after the first round: no allocation,
    // only the copy and Lua's comparison with the existing string.
    assert_charged("concat", MEGABYTE, "local t = s .. 'y'", 400);
    assert_charged(
        "concat of many",
        MEGABYTE,
        "local t = 'a' .. s .. 'b' .. s",
        200,
    );
}

#[test]
fn string_comparison_is_charged_per_byte() {
    assert_charged("lt", MEGABYTE, "local b = s < s2", 400);
    assert_charged("le", MEGABYTE, "local b = s2 <= s", 400);
}

#[test]
fn the_string_library_is_charged_per_byte() {
    for (name, body) in [
        ("upper", "local t = s:upper()"),
        ("lower", "local t = s:lower()"),
        ("reverse", "local t = s:reverse()"),
        ("sub", "local t = s:sub(2)"),
        ("format %s", "local t = string.format('%s.', s)"),
        ("format %q", "local t = string.format('%q', s)"),
        ("rep", "local t = string.rep(s, 1)"),
        ("concat", "local t = table.concat({s, s})"),
    ] {
        assert_charged(name, MEGABYTE, body, 400);
    }
    // string.rep of '' no longer loops n times for nothing.
    assert_eq!(
        run_with(
            "return string.rep('', 2000000000)",
            &[],
            &limits(BUDGET, true)
        ),
        Reply::Bulk("".into())
    );
}

#[test]
fn the_table_library_is_charged_per_element() {
    let filled = "local t = {} for i = 1, 10000 do t[i] = i end";
    assert_charged("insert at 1", filled, "table.insert(t, 1, i)", 1000);
    assert_charged(
        "remove at 1",
        "local t = {} for i = 1, 20000 do t[i] = i end",
        "table.remove(t, 1)",
        1000,
    );
    assert_charged("sort", filled, "table.sort(t)", 200);
    assert_charged(
        "concat of elements",
        "local t = {} for i = 1, 10000 do t[i] = '' end",
        "local u = table.concat(t)",
        1000,
    );
    // Far below 1: a long loop that uses no memory, stopped at once.
    assert_charged(
        "insert far below 1",
        "local t = {1}",
        "table.insert(t, -20000000, 1)",
        2,
    );
}

#[test]
fn scanning_a_sparse_table_is_charged_per_slot() {
    let sparse = "local t = {} for i = 1, 131072 do t[i] = i end \
                  for i = 1, 131071 do t[i] = nil end";
    assert_charged("next", sparse, "local k = next(t)", 400);
    assert_charged("maxn", sparse, "local n = table.maxn(t)", 400);
    assert_charged("pairs", sparse, "for k in pairs(t) do end", 400);
}

#[test]
fn parsing_and_number_conversion_are_charged_per_byte() {
    let spaces = "local s = string.rep(' ', 1048576) .. 'return 1'";
    assert_charged("loadstring", spaces, "local f = loadstring(s)", 40);
    let number = "local s = string.rep(' ', 1048576) .. '1'";
    assert_charged("tonumber", number, "local n = tonumber(s)", 200);
    assert_charged("arithmetic", number, "local n = s + 0", 200);
    assert_charged("tonumber base 16", number, "local n = tonumber(s, 16)", 200);
}

#[test]
fn garbage_collection_is_charged_per_unit_of_its_work() {
    let heap = "local keep = {} for i = 1, 100000 do keep[i] = {i} end";
    assert_charged("collect", heap, "collectgarbage('collect')", 100);
    assert_charged("step", heap, "collectgarbage('step', 100000)", 100);
}

#[test]
fn synod_s_libraries_are_charged_per_byte() {
    let json = "local s = '\"' .. string.rep('a', 1048576) .. '\"'";
    assert_charged("cjson.decode", json, "local v = cjson.decode(s)", 100);
    assert_charged("cjson.encode", MEGABYTE, "local v = cjson.encode(s)", 100);
    assert_charged("cmsgpack.pack", MEGABYTE, "local v = cmsgpack.pack(s)", 200);
    assert_charged(
        "cmsgpack.unpack",
        "local s = cmsgpack.pack(string.rep('a', 1048576))",
        "local v = cmsgpack.unpack(s)",
        200,
    );
    assert_charged(
        "struct.unpack",
        MEGABYTE,
        "local v = struct.unpack('b', s)",
        400,
    );
    assert_charged("sha1hex", MEGABYTE, "local v = redis.sha1hex(s)", 100);
    assert_charged(
        "redis.call",
        MEGABYTE,
        "local v = redis.call('ECHO', s)",
        200,
    );
}

/// How many rounds of `round` (which concatenates `ARGV[1]`) a script ran
/// before its budget stopped it.
fn rounds_before_the_stop(piece: &str, limits: &Limits) -> i64 {
    rounds_every(piece, limits, 100)
}

fn rounds_every(piece: &str, limits: &Limits, every: u32) -> i64 {
    let script = "local s = ARGV[1] local n = 0 \
                  while true do \
                    local t = s .. 'y' n = n + 1 \
                    if n % NN == 0 then redis.call('SET', 'n', n) end \
                  end"
    .replace("NN", &every.to_string());
    let mut keyspace = Keyspace::default();
    let reply = run_limited(
        &mut keyspace,
        &eval(&script, &[], &[piece]),
        &ctx(1),
        limits,
    );
    assert!(
        error_text(&reply).starts_with("ERR Script exceeded the budget"),
        "{reply:?}"
    );
    let count = run_limited(
        &mut keyspace,
        &eval("return tonumber(redis.call('GET', 'n'))", &[], &[]),
        &ctx(1),
        &super::APPLY_LIMITS,
    );
    match count {
        Reply::Integer(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_charging_the_stop_comes_where_it_came_before() {
    // Log entries written before costs were charged: the string's size
    // does not move the stop, instructions alone count.
    let legacy = limits(1_000_000, false);
    let short = rounds_before_the_stop("x", &legacy);
    let long = rounds_before_the_stop(&"x".repeat(10_000), &legacy);
    assert_eq!(short, long);
    // The stop as counted before costs were charged (about 6 instructions
    // a round, and a SET, charged 500, every 100 rounds).
    assert_eq!(short, 89_000);
    // Charged, the long string stops it far earlier.
    let charged = limits(1_000_000, true);
    let charged = rounds_before_the_stop(&"x".repeat(10_000), &charged);
    assert!(charged < short / 10, "{charged} {short}");
}

#[test]
fn a_window_cut_short_charges_the_instructions_it_ran() {
    // Every round charges a few units (a 21-byte string made and hashed,
    // the collector's work for it) on top of its 6 instructions. Charges
    // that small wait for the window's natural end (SYNOD_CUT_UNITS), and
    // a window cut short must count the instructions it ran (had it
    // counted whole windows, or had every small charge cut one, a round
    // would cost far more): the stop comes near where it comes when only
    // instructions count.
    let legacy = rounds_before_the_stop(&"x".repeat(20), &limits(1_000_000, false));
    let charged = rounds_before_the_stop(&"x".repeat(20), &limits(1_000_000, true));
    assert!(charged < legacy, "{charged} {legacy}");
    assert!(charged > legacy * 2 / 3, "{charged} {legacy}");
}

#[test]
fn values_passed_to_and_returned_from_calls_are_charged() {
    // Up to 8000 values (the C stack's limit) made by one C call
    // (unpack, select) or walked by one (math.max, string.char): a loop of
    // them ran for about 20 minutes on the 500M budget.
    let filled = "local t = {} for i = 1, 7000 do t[i] = 65 end";
    assert_charged("unpack", filled, "local n = select('#', unpack(t))", 4000);
    assert_charged("math.max", filled, "local m = math.max(unpack(t))", 4000);
    assert_charged(
        "string.char",
        filled,
        "local s = string.char(unpack(t))",
        4000,
    );
    let varargs = "local t = {} for i = 1, 7000 do t[i] = i end \
                   local function f(...) return select('#', ...) end";
    assert_charged("varargs", varargs, "local n = f(unpack(t))", 4000);
    // The charge for a call's values leaves the hook's window as it is:
    // a hook run right after a call that returns 7995 values could not
    // get its stack (mlua's hook raised "stack overflow").
    assert_eq!(
        run_with(
            "local t = {} for i = 1, 7995 do t[i] = i end \
             return select('#', unpack(t))",
            &[],
            &limits(BUDGET, true)
        ),
        Reply::Integer(7995)
    );
}

#[test]
fn metatable_chains_are_charged_per_table() {
    // 99 tables chained by __index or __newindex: one instruction walked
    // all of them (about 3 minutes on the 500M budget).
    let index = "local t = {} for i = 1, 98 do t = setmetatable({}, {__index = t}) end";
    assert_charged("__index", index, "local x = t.z", 200_000);
    let newindex = "local t = {} for i = 1, 98 do t = setmetatable({}, {__newindex = t}) end";
    assert_charged("__newindex", newindex, "t.z = nil", 200_000);
}

#[test]
fn formatting_numbers_is_charged() {
    // sprintf of a large number: a few hundred nanoseconds, in one
    // instruction (about 2 minutes on the 500M budget).
    assert_charged("concat", "", "local s = 1e308 .. ''", 400_000);
    assert_charged("tostring", "", "local s = tostring(1e308)", 400_000);
    assert_charged(
        "format",
        "",
        "local s = string.format('%99.99f', 1e308)",
        40_000,
    );
}

#[test]
fn calls_of_c_functions_are_charged_a_flat_cost() {
    // A Rust callback (through mlua, ~200 ns) and a cheap Lua C function:
    // a few instructions per round, 16 units per call on top.
    assert_charged("bit.tobit", "local f = bit.tobit", "f(1)", 600_000);
    assert_charged("rawequal", "local f = rawequal", "f(1, 1)", 600_000);
}

/// Keys that are tables or functions land where their creation number
/// (not their address) puts them: `pairs` visits them in the same order in
/// every process, so a script writing in that order writes the same on
/// every replica, charged or not.
#[test]
fn pairs_over_table_keys_visits_them_in_the_same_order_everywhere() {
    let script = "local t, order = {}, {}
        for i = 1, 200 do
          local key = (i % 2 == 0) and {} or function() return i end
          t[key] = i
        end
        for k, v in pairs(t) do order[#order + 1] = v end
        local weak = setmetatable({}, {__mode = 'k'})
        return table.concat(order, ',')";
    for charged in [true, false] {
        let first = run_with(script, &[], &limits(BUDGET, charged));
        assert!(matches!(first, Reply::Bulk(_)), "{first:?}");
        for _ in 0..4 {
            // Other allocations in between move the next run's objects.
            let _noise: Vec<Vec<u8>> = (0..64).map(|n| vec![0u8; 1000 + n * 37]).collect();
            assert_eq!(run_with(script, &[], &limits(BUDGET, charged)), first);
        }
    }
}

/// `tostring` of a table without a metatable answers its kind without
/// making the address text (whose slot in the string table would differ
/// between replicas and so the cost of later strings).
#[test]
fn tostring_of_a_plain_table_makes_no_address_string() {
    let reply = run_with(
        "return {tostring({}), tostring(tostring), tostring(setmetatable({}, {__tostring = function() return 'mine' end}))}",
        &[],
        &limits(BUDGET, true),
    );
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Bulk("table".into()),
            Reply::Bulk("function".into()),
            Reply::Bulk("mine".into()),
        ])
    );
}
