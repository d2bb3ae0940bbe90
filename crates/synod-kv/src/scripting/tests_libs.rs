//! Unit tests of the libraries scripts get (`cjson`, `cmsgpack`, `struct`):
//! Redis' own expectations, and hostile inputs answered with a clear error
//! (never a panic, never an unbounded allocation).

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::{run, EvalCommand};
use crate::keyspace::Keyspace;

fn ctx() -> ApplyContext {
    ApplyContext {
        instance: synod_core::InstanceId(1),
        time_ms: 1_700_000_000_000,
        index: 0,
    }
}

fn run_script(script: &str) -> Reply {
    let mut keyspace = Keyspace::default();
    let eval = EvalCommand {
        instructions_max: crate::scripting::APPLY_LIMITS.instructions_max,
        script: Bytes::copy_from_slice(script.as_bytes()),
        keys: Vec::new(),
        args: Vec::new(),
        read_only: false,
        function: None,
        user: None,
    };
    run(&mut keyspace, &eval, &ctx(), 0)
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn assert_error_contains(script: &str, needle: &str) {
    match run_script(script) {
        Reply::Error(text) => assert!(text.contains(needle), "{script}: {text}"),
        other => panic!("{script}: expected an error containing {needle:?}, got {other:?}"),
    }
}

/// Hex of a Lua string, as Redis' tests print packed bytes.
const HEX: &str = "local function hex(s) local h = '' for i = 1, #s do h = h .. string.format('%02x', string.byte(s, i)) end return h end ";

#[test]
fn cjson_decodes_numbers_and_strings_as_redis() {
    assert_eq!(
        run_script(
            "return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')"
        ),
        bulk("0 -5000 -1 0.0003 1023.2 0")
    );
    assert_eq!(
        run_script(
            "local d = cjson.decode('{\"keya\": \"a\", \"keyb\": \"b\"}') return {d.keya, d.keyb}"
        ),
        Reply::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(
        run_script("return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\\\\n\"')"),
        bulk("\u{e9}\u{1F600}\n")
    );
    assert_eq!(
        run_script("return cjson.decode('[null]')[1] == cjson.null"),
        Reply::Integer(1)
    );
    // lua-cjson's defaults accept what strtod accepts.
    assert_eq!(
        run_script("return cjson.decode('0x10') + cjson.decode('+2')"),
        Reply::Integer(18)
    );
}

#[test]
fn cjson_encodes_as_lua_cjson() {
    let cases: &[(&str, &str)] = &[
        ("return cjson.encode({1,2,'x'})", "[1,2,\"x\"]"),
        ("return cjson.encode({})", "{}"),
        ("return cjson.encode({a={}})", "{\"a\":{}}"),
        (
            "return cjson.encode('a/b\"\\n\\1')",
            "\"a\\/b\\\"\\n\\u0001\"",
        ),
        ("return cjson.encode(0.1)", "0.1"),
        ("return cjson.encode(1e20)", "1e+20"),
        (
            "return cjson.encode({[1]='a',[3]='c'})",
            "[\"a\",null,\"c\"]",
        ),
        ("return cjson.encode({[2.5]='x'})", "{\"2.5\":\"x\"}"),
        ("return cjson.encode(cjson.null)", "null"),
        ("return cjson.encode(true)", "true"),
    ];
    for (script, expected) in cases {
        assert_eq!(run_script(script), bulk(expected), "{script}");
    }
}

#[test]
fn cjson_smoke_test_from_redis_passes() {
    let script = r#"
        local some_map = {s1="Some string", n1=100, a1={"Some","String","Array"}, nil1=nil, b1=true, b2=false}
        local encoded = cjson.encode(some_map)
        local decoded = cjson.decode(encoded)
        assert(table.concat(some_map) == table.concat(decoded))
        cjson.encode_keep_buffer(false)
        local table1 = {one="one", [1]="one"}
        decoded = cjson.decode(cjson.encode(table1))
        assert(decoded["one"] == table1["one"])
        assert(decoded["1"] == table1[1])
        local invalid_map = {}
        invalid_map[false] = "false"
        assert(pcall(cjson.encode, invalid_map) == false)
        cjson.encode_max_depth(1)
        assert(pcall(cjson.encode, some_map) == false)
        cjson.decode_max_depth(1)
        assert(pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}') == false)
        assert(pcall(cjson.encode, {num1=0/0}) == false)
        cjson.encode_invalid_numbers(true)
        assert(pcall(cjson.encode, {num1=0/0}) == true)
        return 'ok'
    "#;
    assert_eq!(run_script(script), bulk("ok"));
}

#[test]
fn cjson_refuses_hostile_input_with_clear_errors() {
    // Deeper than the default 1000 levels.
    let deep = "return cjson.decode(string.rep('[', 100000))";
    assert_error_contains(deep, "Found too many nested data structures (1001)");
    // Whatever the script configures, the hard bound holds.
    let deep = "cjson.decode_max_depth(2000000000) return cjson.decode(string.rep('[', 100000) .. string.rep(']', 100000))";
    assert_error_contains(deep, "Found too many nested data structures (1001)");
    // A table holding itself.
    assert_error_contains(
        "cjson.encode_max_depth(2000000000) local t = {} t[1] = t return cjson.encode(t)",
        "Cannot serialise, excessive nesting (1001)",
    );
    assert_error_contains(
        "return cjson.decode('[1,2')",
        "Expected comma or array end but found T_END",
    );
    assert_error_contains("return cjson.decode('{1:2}')", "Expected object key string");
    assert_error_contains("return cjson.decode('[1] x')", "Expected the end");
    assert_error_contains(
        "return cjson.decode('\"\\\\ud800\"')",
        "invalid unicode escape code",
    );
    assert_error_contains("return cjson.decode('\"abc')", "unexpected end of string");
    assert_error_contains("return cjson.decode({})", "string expected");
    assert_error_contains(
        "return cjson.encode({[1]=1, [1000]=2})",
        "excessively sparse array",
    );
    assert_error_contains(
        "return cjson.encode(function() end)",
        "Cannot serialise function",
    );
    // A wide self-referencing table would take 2^40 bytes: stopped at the
    // memory bound instead.
    assert_error_contains(
        "local t = {} for i = 1, 40 do t = {t, t} end return cjson.encode(t)",
        "exceeds",
    );
    assert_error_contains(
        "cjson.encode = function() return 1 end",
        "Attempt to modify a readonly table",
    );
}

#[test]
fn cmsgpack_packs_byte_for_byte_as_redis() {
    let cases: &[(&str, &str)] = &[
        ("return hex(cmsgpack.pack(0.1))", "cb3fb999999999999a"),
        (
            "return hex(cmsgpack.pack(-1099511627776))",
            "d3ffffff0000000000",
        ),
        ("return hex(cmsgpack.pack(1.5))", "ca3fc00000"),
        (
            "return hex(cmsgpack.pack(1, 200, 70000, -5, -100))",
            "01ccc8ce00011170fbd09c",
        ),
        ("return hex(cmsgpack.pack({}))", "90"),
        ("return hex(cmsgpack.pack({1, true, false}))", "9301c3c2"),
        ("return hex(cmsgpack.pack({a=1}))", "81a16101"),
        (
            "return hex(cmsgpack.pack(string.rep('x', 40)):sub(1, 2))",
            "d928",
        ),
    ];
    for (script, expected) in cases {
        let expected = expected.replace(' ', "");
        assert_eq!(
            run_script(&format!("{HEX}{script}")),
            bulk(&expected),
            "{script}"
        );
    }
}

#[test]
fn cmsgpack_circular_references_pack_to_depth_16() {
    let script = format!(
        "{HEX} local a = {{x=nil,y=5}} local b = {{x=a}} a['x'] = b
        local encoded = cmsgpack.pack(a)
        local re = cmsgpack.unpack(encoded)
        assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.y == re.y)
        assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x)
        assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x == nil)
        return hex(encoded)"
    );
    let expected = "82a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a178c0";
    assert_eq!(run_script(&script), bulk(expected));
}

#[test]
fn cmsgpack_unpack_variants_return_offsets() {
    let script = r#"
        local s1, s2 = string.rep("x", 30), string.rep("x", 65530)
        local packed = cmsgpack.pack(s1, s2, 7)
        local offset, obj = cmsgpack.unpack_limit(packed, 1, 0)
        assert(obj == s1)
        offset, obj = cmsgpack.unpack_limit(packed, 1, offset)
        assert(obj == s2)
        local last_offset, last = cmsgpack.unpack_one(packed, offset)
        assert(last == 7 and last_offset == -1)
        local a, b, c = cmsgpack.unpack(packed)
        assert(a == s1 and b == s2 and c == 7)
        local big = {}
        for i = 1, 100000 do big[i] = i end
        local back = cmsgpack.unpack(cmsgpack.pack(big))
        assert(#back == 100000 and back[100000] == 100000)
        return 'ok'
    "#;
    assert_eq!(run_script(script), bulk("ok"));
}

#[test]
fn cmsgpack_refuses_hostile_input_with_clear_errors() {
    // Headers claiming 4 GiB of items or bytes over a few bytes of input.
    assert_error_contains(
        "return cmsgpack.unpack('\\221\\255\\255\\255\\255')",
        "Missing bytes in input.",
    );
    assert_error_contains(
        "return cmsgpack.unpack('\\223\\255\\255\\255\\255\\1')",
        "Missing bytes in input.",
    );
    assert_error_contains(
        "return cmsgpack.unpack('\\219\\255\\255\\255\\255ab')",
        "Missing bytes in input.",
    );
    // Nested arrays 100000 deep.
    assert_error_contains(
        "return cmsgpack.unpack(string.rep('\\145', 100000))",
        "nesting deeper than 1000",
    );
    assert_error_contains(
        "return cmsgpack.unpack('\\193')",
        "Bad data format in input.",
    );
    assert_error_contains(
        "return cmsgpack.unpack_one('\\1', 5)",
        "Start offset 5 greater than input length 1.",
    );
    assert_error_contains(
        "return cmsgpack.unpack_limit('\\1', -1)",
        "Invalid request to unpack",
    );
    assert_error_contains("return cmsgpack.pack()", "MessagePack pack needs input.");
    assert_error_contains(
        "return cmsgpack.unpack('\\129\\192\\1')",
        "table index is nil",
    );
    // More results than Lua's stack can return.
    assert_error_contains(
        "return cmsgpack.unpack(string.rep('\\1', 10000))",
        "more than 7000 values",
    );
    // 2^16 leaves at depth 16, then wider: bounded by the memory limit.
    assert_error_contains(
        "local t = {} for i = 1, 16 do local n = {} for j = 1, 64 do n[j] = t end t = n end return #cmsgpack.pack(t)",
        "exceeds",
    );
    assert_error_contains(
        "cmsgpack.pack = function() return 1 end",
        "Attempt to modify a readonly table",
    );
}

#[test]
fn struct_packs_and_unpacks_as_lua_struct() {
    let cases: &[(&str, Reply)] = &[
        ("return hex(struct.pack('>I2', 258))", bulk("0102")),
        ("return hex(struct.pack('<i4', -2))", bulk("feffffff")),
        (
            "return hex(struct.pack('!4 b i4', 1, 2))",
            bulk("0100000002000000"),
        ),
        ("return hex(struct.pack('s', 'ab'))", bulk("616200")),
        ("return hex(struct.pack('c3', 'abcdef'))", bulk("616263")),
        ("return struct.size('>i4hc3')", Reply::Integer(9)),
        (
            "return {struct.unpack('>I2i1', '\\1\\2\\255')}",
            Reply::Array(vec![
                Reply::Integer(258),
                Reply::Integer(-1),
                Reply::Integer(4),
            ]),
        ),
        (
            "return {struct.unpack('b c0 s', '\\3abcxy\\0')}",
            Reply::Array(vec![bulk("abc"), bulk("xy"), Reply::Integer(8)]),
        ),
        (
            "return struct.unpack('d', struct.pack('d', 0.5)) == 0.5",
            Reply::Integer(1),
        ),
        (
            "return struct.unpack('>f', struct.pack('>f', 0.25)) == 0.25",
            Reply::Integer(1),
        ),
        (
            "return select(2, struct.unpack('i', struct.pack('ii', 1, 2), 5))",
            Reply::Integer(9),
        ),
    ];
    for (script, expected) in cases {
        assert_eq!(&run_script(&format!("{HEX}{script}")), expected, "{script}");
    }
}

#[test]
fn struct_refuses_hostile_formats_with_clear_errors() {
    assert_error_contains(
        "return struct.pack('c99999999999', 'x')",
        "integral size overflow",
    );
    assert_error_contains("return struct.pack('c2000000000', 'x')", "string too short");
    assert_error_contains(
        "return struct.unpack('c2000000000', 'x')",
        "data string too short",
    );
    assert_error_contains(
        "return struct.unpack('i40', 'x')",
        "integral size 40 is larger than limit of 32",
    );
    assert_error_contains(
        "return struct.unpack('b c0', '\\255abc')",
        "format 'c0' needs a previous size",
    );
    assert_error_contains(
        "return struct.unpack('b c0', '\\100abc')",
        "data string too short",
    );
    assert_error_contains(
        "return struct.unpack('s', 'abc')",
        "unfinished string in data",
    );
    assert_error_contains(
        "return struct.unpack('i', 'abcd', 0)",
        "offset must be 1 or greater",
    );
    assert_error_contains(
        "return struct.pack('!3i', 1)",
        "alignment 3 is not a power of 2",
    );
    assert_error_contains("return struct.pack('z', 1)", "invalid format option 'z'");
    assert_error_contains("return struct.size('s')", "undefined sizes");
    assert_error_contains("return struct.pack('i')", "number expected");
    assert_error_contains(
        "return struct.unpack(string.rep('b', 10000), string.rep('a', 10000))",
        "too many results",
    );
    assert_eq!(
        run_script("return struct.size(string.rep('c2000000000', 100))"),
        Reply::Integer(200_000_000_000)
    );
}

fn run_as(keyspace: &mut Keyspace, user: &str, script: &str, keys: &[&str]) -> Reply {
    let eval = EvalCommand {
        instructions_max: crate::scripting::APPLY_LIMITS.instructions_max,
        script: Bytes::copy_from_slice(script.as_bytes()),
        keys: keys
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect(),
        args: Vec::new(),
        read_only: false,
        function: None,
        user: Some(Bytes::copy_from_slice(user.as_bytes())),
    };
    run(keyspace, &eval, &ctx(), 0)
}

#[test]
fn scripts_run_with_their_users_rules() {
    let mut keyspace = Keyspace::default();
    let rules: Vec<Bytes> = ["on", ">123", "+@scripting", "+set", "~x*"]
        .iter()
        .map(|r| Bytes::copy_from_slice(r.as_bytes()))
        .collect();
    keyspace.acl().users_mut().set_user(b"bob", &rules).unwrap();
    let bob = |keyspace: &mut Keyspace, script: &str| run_as(keyspace, "bob", script, &[]);
    assert_eq!(
        bob(&mut keyspace, "return redis.acl_check_cmd('set','xx',1)"),
        Reply::Integer(1)
    );
    assert_eq!(
        bob(
            &mut keyspace,
            "return redis.acl_check_cmd('hset','xx','f',1)"
        ),
        Reply::Null
    );
    assert_eq!(
        bob(&mut keyspace, "return redis.acl_check_cmd('set','yy',1)"),
        Reply::Null
    );
    match bob(
        &mut keyspace,
        "return redis.acl_check_cmd('invalid-cmd','arg')",
    ) {
        Reply::Error(text) => assert!(
            text.contains("Invalid command passed to redis.acl_check_cmd()"),
            "{text}"
        ),
        other => panic!("{other:?}"),
    }
    // The script's own commands are checked too.
    assert_eq!(
        bob(&mut keyspace, "return redis.call('set','xa','1')"),
        Reply::Simple("OK".into())
    );
    match bob(&mut keyspace, "return redis.call('set','ya','1')") {
        Reply::Error(text) => assert!(text.contains("can't access at least one of the keys")),
        other => panic!("{other:?}"),
    }
    match bob(&mut keyspace, "return redis.call('get','xa')") {
        Reply::Error(text) => assert!(text.contains("can't run this command")),
        other => panic!("{other:?}"),
    }
    // A user that is gone runs nothing.
    match run_as(
        &mut keyspace,
        "ghost",
        "return redis.call('set','xa','1')",
        &[],
    ) {
        Reply::Error(text) => assert!(text.contains("can't run this command")),
        other => panic!("{other:?}"),
    }
}

/// A loop of commands is stopped by the budget as a loop of instructions
/// is (each call is charged), even when it catches errors with pcall: it
/// once ran for minutes on every replica, charged only its few
/// instructions per call.
#[test]
fn a_loop_of_commands_is_stopped_by_the_budget() {
    for script in [
        "while true do redis.call('ping') end",
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
    ] {
        assert_error_contains(script, "exceeded the budget");
    }
    // 100,000 commands fit (Redis' suite runs that many).
    assert_eq!(
        run_script("for i=1,100000 do redis.call('ping') end return 'ok'"),
        bulk("ok")
    );
}
