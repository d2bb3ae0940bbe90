//! The events applies emit, seen by a subscriber of the store's registry:
//! names, order and classes, as Redis emits them.

use bytes::Bytes;
use synod::{ApplyContext, InstanceId};
use synod_resp::Reply;

use super::flags_from_string;
use crate::pubsub::Subscriber;
use crate::{parse, Store};

/// A store whose node has `flags` on, and a subscriber to every channel.
struct Node {
    store: Store,
    instance: u64,
    watcher: Subscriber,
}

impl Node {
    fn new(flags: &str) -> Node {
        let store = Store::new();
        let flags = flags_from_string(flags.as_bytes()).expect("flags");
        store.pubsub().set_keyspace_events(flags);
        let mut watcher = Subscriber::new(store.pubsub(), 1);
        let confirmed = watcher.command("psubscribe", &[b("psubscribe"), b("*")]);
        assert_eq!(confirmed.len(), 1);
        Node {
            store,
            instance: 0,
            watcher,
        }
    }

    fn run(&mut self, now_ms: u64, line: &str) -> Reply {
        let words: Vec<Bytes> = line.split_whitespace().map(b).collect();
        let command = parse(&words).expect("parses");
        self.instance += 1;
        let ctx = ApplyContext {
            instance: InstanceId(self.instance),
            time_ms: now_ms,
            index: 0,
        };
        self.store.apply_command(&command, &ctx)
    }

    /// The messages delivered since the last call, as `channel payload`.
    fn events(&self) -> Vec<String> {
        self.watcher
            .take_for_tests()
            .into_iter()
            .map(|message| match message {
                Reply::Push(items) => match items.as_slice() {
                    [_, _, Reply::Bulk(channel), Reply::Bulk(payload)] => format!(
                        "{} {}",
                        String::from_utf8_lossy(channel),
                        String::from_utf8_lossy(payload)
                    ),
                    other => panic!("not a pmessage: {other:?}"),
                },
                other => panic!("not a push: {other:?}"),
            })
            .collect()
    }
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn keyevents(events: &[&str]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            let (name, key) = event.split_once(' ').expect("name key");
            format!("__keyevent@0__:{name} {key}")
        })
        .collect()
}

#[test]
fn off_by_default_and_nothing_is_emitted() {
    let mut node = Node::new("");
    node.run(1, "SET foo bar");
    node.run(1, "DEL foo");
    assert!(node.events().is_empty());
}

#[test]
fn keyspace_and_keyevent_channels() {
    let mut node = Node::new("KEA");
    node.run(1, "SET foo bar");
    assert_eq!(
        node.events(),
        vec!["__keyspace@0__:foo set", "__keyevent@0__:set foo"]
    );
}

#[test]
fn classes_mask_events() {
    let mut node = Node::new("El");
    node.run(1, "SET foo bar");
    node.run(1, "LPUSH mylist a");
    assert_eq!(node.events(), keyevents(&["lpush mylist"]));
}

#[test]
fn generic_string_list_set_hash_zset_events() {
    let mut node = Node::new("EA");
    for line in [
        "SET foo bar EX 10",
        "EXPIRE foo 100",
        "PERSIST foo",
        "RENAME foo foo2",
        "DEL foo2 foo2 missing",
        "INCR n",
        "APPEND s x",
        "RPUSH l a b",
        "RPOPLPUSH l l2",
        "LPOP l",
        "SADD s1 a b",
        "SREM s1 x",
        "SREM s1 a",
        "HSET h f 1",
        "HINCRBY h f 2",
        "HDEL h f",
        "ZADD z 1 a",
        "ZINCRBY z 1 a",
        "ZREM z a",
    ] {
        assert!(!matches!(node.run(1000, line), Reply::Error(_)), "{line}");
    }
    assert_eq!(
        node.events(),
        keyevents(&[
            "set foo",
            "expire foo",
            "expire foo",
            "persist foo",
            "rename_from foo",
            "rename_to foo2",
            "del foo2",
            "incrby n",
            "append s",
            "rpush l",
            // As Redis 7.0 orders RPOPLPUSH: the push, then the pop.
            "lpush l2",
            "rpop l",
            "lpop l",
            // The list is empty now: deleted, after the command's event.
            "del l",
            "sadd s1",
            "srem s1",
            "hset h",
            "hincrby h",
            "hdel h",
            "del h",
            "zadd z",
            "zincr z",
            "zrem z",
            "del z",
        ])
    );
}

#[test]
fn new_only_when_a_key_is_created() {
    let mut node = Node::new("En");
    node.run(1, "SET foo bar");
    node.run(1, "SET foo baz");
    node.run(1, "SET bar bar");
    node.run(1, "SADD s a");
    node.run(1, "SADD s b");
    assert_eq!(node.events(), keyevents(&["new foo", "new bar", "new s"]));
}

#[test]
fn expired_when_an_apply_removes_a_key_past_its_expiry() {
    let mut node = Node::new("Ex");
    node.run(1000, "SET a 1 PX 100");
    node.run(1000, "SET b 1 PX 200");
    assert!(node.events().is_empty());
    // Any apply at or after the expiry purges it, a sweep included.
    node.run(1100, "SET other 1");
    assert_eq!(node.events(), keyevents(&["expired a"]));
    let sweep = crate::KvCommand::ExpireSweep;
    node.instance += 1;
    let ctx = ApplyContext {
        instance: InstanceId(node.instance),
        time_ms: 1200,
        index: 0,
    };
    assert_eq!(node.store.apply_command(&sweep, &ctx), Reply::ok());
    assert_eq!(node.events(), keyevents(&["expired b"]));
}

#[test]
fn conditional_and_failed_writes_emit_nothing() {
    let mut node = Node::new("EA");
    node.run(1, "SET foo bar");
    node.events();
    node.run(1, "SET foo x NX");
    node.run(1, "SET missing x XX");
    node.run(1, "LPUSH foo a");
    node.run(1, "SREM nothing a");
    node.run(1, "EXPIRE missing 10");
    node.run(1, "DEL missing");
    assert!(node.events().is_empty());
    node.run(1, "SET foo y XX");
    assert_eq!(node.events(), keyevents(&["set foo"]));
}

#[test]
fn transactions_emit_each_commands_events_in_order() {
    let mut node = Node::new("E$g");
    let words = |line: &str| -> Vec<Bytes> { line.split_whitespace().map(b).collect() };
    let commands = vec![
        parse(&words("SET a 1")).unwrap(),
        parse(&words("DEL a")).unwrap(),
        parse(&words("SET b 2")).unwrap(),
    ];
    node.instance += 1;
    let ctx = ApplyContext {
        instance: InstanceId(node.instance),
        time_ms: 1,
        index: 0,
    };
    node.store
        .apply_command(&crate::KvCommand::Exec(commands), &ctx);
    assert_eq!(node.events(), keyevents(&["set a", "del a", "set b"]));
}

/// LMOVE/RPOPLPUSH and SMOVE as Redis 7.0.15 emits them (transcript taken
/// from a real redis-server with `notify-keyspace-events EAn`): the push
/// before the pop, no event for an SMOVE within one set, and no `sadd` when
/// the destination already held the member.
#[test]
fn moves_emit_what_redis_emits() {
    let mut node = Node::new("EAn");
    for line in [
        "RPUSH l a",
        "RPOPLPUSH l l2",
        "SADD s1 a",
        "SADD s2 a",
        "SMOVE s1 s2 a",
        "SADD s3 b",
        "SMOVE s3 s3 b",
        "LPUSH r x y",
        "LMOVE r r LEFT RIGHT",
    ] {
        assert!(!matches!(node.run(1, line), Reply::Error(_)), "{line}");
    }
    assert_eq!(
        node.events(),
        keyevents(&[
            "new l", "rpush l", "new l2", "lpush l2", "rpop l", "del l", "new s1", "sadd s1",
            "new s2", "sadd s2", "srem s1", "del s1", "new s3", "sadd s3", "new r", "lpush r",
            "rpush r", "lpop r",
        ])
    );
}

/// SMOVE to a new destination: Redis emits `srem` and the source's `del`
/// before it creates the destination (`new`, `sadd`). Here `new` comes
/// from the keyspace while the command runs and `del` after the command's
/// events, so the order differs.
#[test]
#[ignore = "review1: SMOVE event order differs from Redis (new/del emitted by the keyspace, not in command order)"]
fn smove_to_a_new_set_orders_events_as_redis() {
    let mut node = Node::new("EAn");
    node.run(1, "SADD s4 c");
    node.events();
    node.run(1, "SMOVE s4 s5 c");
    assert_eq!(
        node.events(),
        keyevents(&["srem s4", "del s4", "new s5", "sadd s5"])
    );
}
