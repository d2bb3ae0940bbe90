//! Unit tests of scripting: reply conversions, sandbox, determinism,
//! budgets.

use bytes::Bytes;
use synod::ApplyContext;
use synod_resp::Reply;

use super::{run, run_limited, EvalCommand, Limits, ScriptCache};
use crate::keyspace::Keyspace;

pub(super) fn ctx(instance: u64) -> ApplyContext {
    ApplyContext {
        instance: synod_core::InstanceId(instance),
        time_ms: 1_700_000_000_000,
        index: 0,
    }
}

pub(super) fn eval(script: &str, keys: &[&str], args: &[&str]) -> EvalCommand {
    EvalCommand {
        instructions_max: crate::scripting::APPLY_LIMITS.instructions_max,
        script: Bytes::copy_from_slice(script.as_bytes()),
        keys: keys
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect(),
        args: args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect(),
        read_only: false,
        function: None,
        user: None,
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn run_script(keyspace: &mut Keyspace, script: &str) -> Reply {
    run(keyspace, &eval(script, &[], &[]), &ctx(1), 0)
}

pub(super) fn error_text(reply: &Reply) -> &str {
    match reply {
        Reply::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn lua_values_become_redis_replies() {
    let mut keyspace = Keyspace::default();
    let cases: &[(&str, Reply)] = &[
        ("return 'hello'", bulk("hello")),
        ("return 100.5", Reply::Integer(100)),
        ("return -3.9", Reply::Integer(-3)),
        ("return true", Reply::Integer(1)),
        ("return false", Reply::Null),
        ("return nil", Reply::Null),
        ("return {ok='fine'}", Reply::Simple("fine".into())),
        (
            "return {err='ERR this is an error'}",
            Reply::error("ERR this is an error"),
        ),
        ("return {err='a\\r\\nb'}", Reply::error("a  b")),
        ("return redis.error_reply('bar')", Reply::error("bar")),
        ("return redis.error_reply('-bar')", Reply::error("ERR bar")),
        (
            "return redis.status_reply('FINE')",
            Reply::Simple("FINE".into()),
        ),
        (
            "return {1,2,'ciao',{1,2}}",
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(2),
                bulk("ciao"),
                Reply::Array(vec![Reply::Integer(1), Reply::Integer(2)]),
            ]),
        ),
        // An array stops at its first nil.
        ("return {1,nil,3}", Reply::Array(vec![Reply::Integer(1)])),
        ("return _G", Reply::Array(vec![])),
        // Metamethods are not run when converting.
        (
            "local a = {}; setmetatable(a,{__index=function() foo() end}) return a",
            Reply::Array(vec![]),
        ),
    ];
    for (script, expected) in cases {
        assert_eq!(&run_script(&mut keyspace, script), expected, "{script}");
    }
}

#[test]
fn redis_replies_become_lua_values() {
    let mut keyspace = Keyspace::default();
    run_script(&mut keyspace, "redis.call('set','x','0')");
    let cases: &[(&str, Reply)] = &[
        (
            "local v = redis.call('incr','x') return {type(v), v}",
            Reply::Array(vec![bulk("number"), Reply::Integer(1)]),
        ),
        (
            "local v = redis.call('get','x') return {type(v), v}",
            Reply::Array(vec![bulk("string"), bulk("1")]),
        ),
        (
            "local v = redis.call('get','nokey') return {type(v), v == false}",
            Reply::Array(vec![bulk("boolean"), Reply::Integer(1)]),
        ),
        (
            "local v = redis.pcall('set','x','y') return {type(v), v.ok}",
            Reply::Array(vec![bulk("table"), bulk("OK")]),
        ),
        (
            "local v = redis.pcall('incr','x') return {type(v), v.err}",
            Reply::Array(vec![
                bulk("table"),
                bulk("ERR value is not an integer or out of range"),
            ]),
        ),
        (
            "redis.call('rpush','l','a','b') local v = redis.call('lrange','l',0,-1) return {#v, v[1], v[2]}",
            Reply::Array(vec![Reply::Integer(2), bulk("a"), bulk("b")]),
        ),
        // Numbers are passed as their exact integer text.
        (
            "redis.call('set','n',9007199254740991) return redis.call('get','n')",
            bulk("9007199254740991"),
        ),
    ];
    for (script, expected) in cases {
        assert_eq!(&run_script(&mut keyspace, script), expected, "{script}");
    }
}

#[test]
fn keys_and_argv_are_populated() {
    let mut keyspace = Keyspace::default();
    let reply = run(
        &mut keyspace,
        &eval(
            "return {KEYS[1],KEYS[2],ARGV[1],ARGV[2]}",
            &["a", "b"],
            &["c", "d"],
        ),
        &ctx(1),
        0,
    );
    assert_eq!(
        reply,
        Reply::Array(vec![bulk("a"), bulk("b"), bulk("c"), bulk("d")])
    );
}

#[test]
fn errors_are_worded_as_redis_words_them() {
    let mut keyspace = Keyspace::default();
    run_script(&mut keyspace, "redis.call('set','foo','bar')");
    let cases: &[(&str, &str)] = &[
        ("redis.call('lpush','foo','val')", "WRONGTYPE Operation against a key holding the wrong kind of value script: "),
        ("return a", "ERR user_script:1: Script attempted to access nonexistent global variable 'a' script: "),
        ("a=10", "ERR user_script:1: Attempt to modify a readonly table script: "),
        ("redis.call('nosuchcommand')", "ERR Unknown Redis command called from script script: "),
        ("redis.call('get','a','b')", "ERR Wrong number of args calling Redis command from script script: "),
        ("return redis.call()", "ERR Please specify at least one argument for this redis lib call script: "),
        ("return redis.pcall('blpop','x',0)", "ERR This Redis command is not allowed from script"),
        ("redis.sha1hex()", "ERR wrong number of arguments script: "),
        ("error({err='MY boom'})", "MY boom script: "),
        ("setmetatable(_G, {})", "ERR user_script:1: Attempt to modify a readonly table"),
        ("redis.call = function() return 1 end", "ERR user_script:1: Attempt to modify a readonly table"),
        ("bit.lshift = function() return 1 end", "ERR user_script:1: Attempt to modify a readonly table"),
        ("print('x')", "ERR user_script:1: Script attempted to access nonexistent global variable 'print'"),
        ("loadfile('f')", "ERR user_script:1: Script attempted to access nonexistent global variable 'loadfile'"),
        ("return loadstring(string.dump(function() return 1 end))()", "ERR user_script:1: attempt to call a nil value"),
        ("return 'x", "ERR Error compiling script (new function): user_script:1:"),
    ];
    for (script, prefix) in cases {
        let reply = run_script(&mut keyspace, script);
        assert!(
            error_text(&reply).starts_with(prefix),
            "{script}: {reply:?}"
        );
    }
    // The line where the error was raised.
    let reply = run_script(
        &mut keyspace,
        "local x = 1\n\nredis.call('lpush','foo','v')",
    );
    assert!(
        error_text(&reply).ends_with(", on @user_script:3."),
        "{reply:?}"
    );
}

#[test]
fn read_only_scripts_refuse_writes() {
    let mut keyspace = Keyspace::default();
    run_script(&mut keyspace, "redis.call('set','foo','bar')");
    let mut command = eval("return redis.call('get', KEYS[1])", &["foo"], &[]);
    command.read_only = true;
    assert_eq!(run(&mut keyspace, &command, &ctx(2), 0), bulk("bar"));
    command.script = Bytes::from_static(b"redis.call('del', KEYS[1])");
    let reply = run(&mut keyspace, &command, &ctx(3), 0);
    assert!(error_text(&reply)
        .starts_with("ERR Write commands are not allowed from read-only scripts."));
    assert_eq!(
        run_script(&mut keyspace, "return redis.call('get','foo')"),
        bulk("bar")
    );
}

#[test]
fn writes_before_an_error_stay() {
    let mut keyspace = Keyspace::default();
    let reply = run_script(&mut keyspace, "redis.call('set','a','1') error('boom')");
    assert!(error_text(&reply).starts_with("ERR user_script:1: boom"));
    assert_eq!(
        run_script(&mut keyspace, "return redis.call('get','a')"),
        bulk("1")
    );
}

#[test]
fn randomness_is_seeded_by_the_log_position() {
    let script = eval("return tostring(math.random())", &[], &[]);
    let draw = |instance: u64, position: u32| {
        let mut keyspace = Keyspace::default();
        run(&mut keyspace, &script, &ctx(instance), position)
    };
    // Same place in the log, same draw (every replica); elsewhere, another.
    assert_eq!(draw(5, 0), draw(5, 0));
    assert_ne!(draw(5, 0), draw(6, 0));
    assert_ne!(draw(5, 0), draw(5, 1));
    // Another command of the same instance value (another client's script
    // in the leader's batch: same instance, same log clock) draws another.
    let at_index = |index: u32| {
        let mut keyspace = Keyspace::default();
        let ctx = ApplyContext { index, ..ctx(5) };
        run(&mut keyspace, &script, &ctx, 0)
    };
    assert_eq!(at_index(0), draw(5, 0));
    assert_ne!(at_index(0), at_index(1));
    assert_eq!(at_index(1), at_index(1));
    // Two draws of one script differ.
    let mut keyspace = Keyspace::default();
    let twice = eval(
        "return {tostring(math.random()), tostring(math.random())}",
        &[],
        &[],
    );
    let Reply::Array(draws) = run(&mut keyspace, &twice, &ctx(5), 0) else {
        panic!("an array");
    };
    assert_ne!(draws[0], draws[1]);
    // math.randomseed makes it reproducible, as in Redis.
    let seeded = |seed: &str, instance: u64| {
        let mut keyspace = Keyspace::default();
        run(
            &mut keyspace,
            &eval(
                "math.randomseed(ARGV[1]); return tostring(math.random())",
                &[],
                &[seed],
            ),
            &ctx(instance),
            0,
        )
    };
    assert_eq!(seeded("10", 1), seeded("10", 2));
    assert_ne!(seeded("10", 1), seeded("20", 1));
    let mut keyspace = Keyspace::default();
    let reply = run_script(
        &mut keyspace,
        "for i=1,1000 do local r = math.random(3, 5) if r < 3 or r > 5 then return r end end return 'ok'",
    );
    assert_eq!(reply, bulk("ok"));
}

#[test]
fn same_script_and_state_give_the_same_bytes_and_state() {
    let script = eval(
        "for i=1,50 do redis.call('sadd', KEYS[1], tostring(math.random(1000))) end
         redis.call('set', KEYS[2], tostring({}) .. tostring(math.random()))
         local popped = redis.call('spop', KEYS[1], 5)
         return {popped, redis.call('randomkey'), redis.call('time')}",
        &["s", "t"],
        &[],
    );
    let replica = || {
        let mut keyspace = Keyspace::default();
        let reply = run(&mut keyspace, &script, &ctx(42), 3);
        let snapshot = crate::snapshot::write(&keyspace.view());
        (crate::reply_codec::encode_reply(&reply), snapshot)
    };
    let (reply_a, state_a) = replica();
    let (reply_b, state_b) = replica();
    assert_eq!(reply_a, reply_b);
    assert_eq!(state_a, state_b);
}

#[test]
fn an_endless_script_is_stopped_by_its_budget() {
    let limits = Limits {
        instructions_max: 1_000_000,
        memory_bytes_max: 8 << 20,
        costs_charged: true,
    };
    let mut keyspace = Keyspace::default();
    for script in [
        "while true do end",
        // Catching the stop does not help.
        "while true do pcall(function() while true do end end) end",
        "local f; f = function() return pcall(f) end; while true do f() end",
    ] {
        let reply = run_limited(&mut keyspace, &eval(script, &[], &[]), &ctx(1), &limits);
        assert!(
            error_text(&reply)
                .starts_with("ERR Script exceeded the budget of 1000000 Lua instructions"),
            "{script}: {reply:?}"
        );
    }
    // Writes before the stop stay (no rollback), the same on every replica.
    let reply = run_limited(
        &mut keyspace,
        &eval("redis.call('set','before','1') while true do end", &[], &[]),
        &ctx(2),
        &limits,
    );
    assert!(matches!(reply, Reply::Error(_)));
    assert_eq!(
        run_script(&mut keyspace, "return redis.call('get','before')"),
        bulk("1")
    );
}

#[test]
fn a_greedy_script_is_stopped_by_its_memory_limit() {
    let limits = Limits {
        instructions_max: 100_000_000,
        memory_bytes_max: 4 << 20,
        costs_charged: true,
    };
    let mut keyspace = Keyspace::default();
    for script in [
        // Distinct strings: the same one over and over grows the table
        // only, and the budget (charging string.rep's work) comes first.
        "local t = {} while true do t[#t+1] = string.rep('x', 1000) .. #t end",
        "return string.rep('x', 100000000)",
        "local a = {} for i=1,10000000 do a[i] = i end return #a",
    ] {
        let reply = run_limited(&mut keyspace, &eval(script, &[], &[]), &ctx(1), &limits);
        assert!(error_text(&reply).contains("memory"), "{script}: {reply:?}");
    }
}

#[test]
fn recursive_tables_and_deep_recursion_do_not_crash() {
    let mut keyspace = Keyspace::default();
    let reply = run_script(
        &mut keyspace,
        "local a = {}; local b = {a}; a[1] = b; return a",
    );
    let mut depth = 0;
    let mut current = &reply;
    while let Reply::Array(items) = current {
        depth += 1;
        current = &items[0];
    }
    assert_eq!(current, &Reply::error("ERR reached lua stack limit"));
    assert!(depth > 10);
    let reply = run_script(
        &mut keyspace,
        "local function f(n) return f(n + 1) + 1 end return f(1)",
    );
    assert!(error_text(&reply).contains("stack overflow"), "{reply:?}");
}

#[test]
fn hostile_arguments_are_refused() {
    let mut keyspace = Keyspace::default();
    let reply = run_script(
        &mut keyspace,
        "return redis.call('setrange','k',536870000,'x')",
    );
    assert!(error_text(&reply).starts_with("ERR string exceeds maximum allowed size"));
    let reply = run_script(
        &mut keyspace,
        "return redis.call('setbit','k',4294967295,1)",
    );
    assert!(matches!(reply, Reply::Error(_)));
    let reply = run_script(&mut keyspace, "return redis.call('set', {}, 1)");
    assert!(error_text(&reply)
        .starts_with("ERR Lua redis lib command arguments must be strings or integers"));
    assert_eq!(
        run_script(&mut keyspace, "return redis.call('exists','k')"),
        Reply::Integer(0)
    );
}

#[test]
fn the_script_cache_is_bounded_and_case_insensitive() {
    let cache = ScriptCache::default();
    let script = Bytes::from_static(b"return redis.call('get',KEYS[1])");
    let sha = cache.insert(&script).unwrap();
    assert_eq!(sha, "fd758d1589d044dd850a6f05d52f2eefd27f033f");
    assert_eq!(cache.get(sha.to_uppercase().as_bytes()), Some(script));
    assert_eq!(cache.get(b"NotValidShaSUM"), None);
    cache.flush();
    assert!(cache.is_empty());
}

#[test]
fn eval_arguments_are_checked_before_proposing() {
    use super::{request, ScriptRequest};
    let cache = ScriptCache::default();
    let args = |line: &[&str]| -> Vec<Bytes> {
        line.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    };
    let refused = |line: &[&str]| match request(&cache, &args(line)) {
        ScriptRequest::Reply(reply) => reply,
        ScriptRequest::Log(command) => panic!("{line:?} was accepted as {command:?}"),
    };
    assert_eq!(
        refused(&["eval", "return 1"]),
        Reply::error("ERR wrong number of arguments for 'eval' command")
    );
    assert_eq!(
        refused(&["eval", "return 1", "-12"]),
        Reply::error("ERR Number of keys can't be negative")
    );
    assert_eq!(
        refused(&["eval", "return 1", "3", "a"]),
        Reply::error("ERR Number of keys can't be greater than number of args")
    );
    assert_eq!(
        refused(&["eval", "return 1", "x"]),
        Reply::error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        refused(&["evalsha", "ffd632c7d33e571e9f24556ebed26c3479a87130", "0"]),
        Reply::error("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(
        refused(&["script", "kill"]),
        Reply::error("NOTBUSY No scripts in execution right now.")
    );
    assert_eq!(
        refused(&["script", "load", "return 'loaded'"]),
        bulk("b534286061d4b9e4026607613b95c06c06015ae8")
    );
    assert_eq!(
        refused(&[
            "script",
            "exists",
            "b534286061d4b9e4026607613b95c06c06015ae8",
            "a27e7e8a43702b7046d4f6a7ccf5b60cef6b9bda"
        ]),
        Reply::Array(vec![Reply::Integer(1), Reply::Integer(0)])
    );
    assert!(matches!(
        refused(&["script", "load", "return 'x"]),
        Reply::Error(_)
    ));
    match request(
        &cache,
        &args(&[
            "evalsha_ro",
            "B534286061D4B9E4026607613B95C06C06015AE8",
            "1",
            "k",
            "v",
        ]),
    ) {
        ScriptRequest::Log(crate::command::KvCommand::Eval(eval)) => {
            assert_eq!(eval.script.as_ref(), b"return 'loaded'");
            assert!(eval.read_only);
            assert_eq!(eval.keys, vec![Bytes::from_static(b"k")]);
            assert_eq!(eval.args, vec![Bytes::from_static(b"v")]);
        }
        _ => panic!("EVALSHA_RO of a loaded script is a log command"),
    }
}

#[test]
fn a_command_may_take_thousands_of_arguments() {
    let mut keyspace = Keyspace::default();
    let reply = run_script(
        &mut keyspace,
        "local a = {} for i=1,7999 do a[i] = 1 end return redis.call('lpush', 'l', unpack(a))",
    );
    assert_eq!(reply, Reply::Integer(7999));
}

#[test]
fn an_undeclared_global_s_error_shows_no_address() {
    // A table used as a global's name: its address differs per replica,
    // and a script can store the error text (pcall, then SET).
    let mut keyspace = Keyspace::default();
    let reply = run_script(
        &mut keyspace,
        "local ok, e = pcall(function() return _G[{}] end) return e",
    );
    assert_eq!(
        reply,
        bulk("user_script:1: Script attempted to access nonexistent global variable 'table'")
    );
}
