//! ACL log commands through the state machine: they change the users the
//! store shares with the server, encode and decode, mix with data commands
//! in a transaction, and survive a snapshot and restore.

use crate::common;

use bytes::Bytes;
use common::ctx;
use synod::StateMachine;
use synod_kv::{decode_reply, AclCommand, KvCommand, Store};
use synod_resp::Reply;

pub(crate) fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub(crate) fn setuser(name: &str, rules: &str) -> KvCommand {
    KvCommand::Acl(AclCommand::SetUser {
        name: b(name),
        rules: rules.split_whitespace().map(b).collect(),
    })
}

pub(crate) fn apply(store: &mut Store, instance: u64, command: &KvCommand) -> Reply {
    decode_reply(&store.apply(&command.encode(), &ctx(instance, 1_000))).expect("reply decodes")
}

#[test]
fn acl_commands_round_trip_through_the_codec() {
    for command in [
        setuser(
            "alice",
            "on #0000000000000000000000000000000000000000000000000000000000000000 ~a:*",
        ),
        KvCommand::Acl(AclCommand::DelUser {
            names: vec![b("a"), b("b")],
        }),
        KvCommand::Acl(AclCommand::GetUser { name: b("a") }),
        KvCommand::Acl(AclCommand::List),
        KvCommand::Acl(AclCommand::Users),
        KvCommand::Exec(vec![setuser("x", "on"), KvCommand::Get { key: b("k") }]),
    ] {
        let bytes = command.encode();
        assert_eq!(bytes.len(), command.encoded_len());
        assert_eq!(KvCommand::decode(&bytes), Ok(command));
    }
    assert!(KvCommand::decode(&[1, 40, 9]).is_err(), "unknown ACL tag");
    assert!(KvCommand::decode(&[1, 40]).is_err(), "truncated");
}

#[test]
fn setuser_changes_the_shared_users_and_bad_rules_change_nothing() {
    let mut store = Store::new();
    let acl = store.acl();
    assert_eq!(
        apply(&mut store, 1, &setuser("alice", "on >pw ~a:* +get")),
        Reply::ok()
    );
    assert!(acl.check("alice", "pw"));
    let reply = apply(&mut store, 2, &setuser("alice", "off +nosuch"));
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("Unknown command")),
        "{reply:?}"
    );
    assert!(acl.check("alice", "pw"), "the failed SETUSER left alice on");
    let users = apply(&mut store, 3, &KvCommand::Acl(AclCommand::Users));
    assert_eq!(
        users,
        Reply::Array(vec![Reply::Bulk(b("alice")), Reply::Bulk(b("default"))])
    );
    let deleted = apply(
        &mut store,
        4,
        &KvCommand::Acl(AclCommand::DelUser {
            names: vec![b("alice")],
        }),
    );
    assert_eq!(deleted, Reply::Integer(1));
    assert!(!acl.check("alice", "pw"));
}

#[test]
fn a_transaction_mixes_acl_and_data_commands() {
    let mut store = Store::new();
    let exec = KvCommand::Exec(vec![
        KvCommand::Set {
            key: b("k"),
            value: b("v"),
            condition: synod_kv::SetCondition::Always,
            get: false,
            expiry: synod_kv::SetExpiry::Clear,
        },
        setuser("bob", "on nopass"),
        KvCommand::Get { key: b("k") },
        KvCommand::Acl(AclCommand::GetUser { name: b("nosuch") }),
    ]);
    let reply = apply(&mut store, 1, &exec);
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::ok(),
            Reply::ok(),
            Reply::Bulk(b("v")),
            Reply::Null
        ])
    );
    assert!(store.acl().check("bob", "anything"));
    // A read-only batch of ACL reads is answered by query.
    let query = KvCommand::Exec(vec![
        KvCommand::Acl(AclCommand::List),
        KvCommand::Get { key: b("k") },
    ]);
    assert!(query.is_read());
    assert!(!store.query_depends_on_time(&query.encode()));
    let reply = decode_reply(&store.query(&query.encode(), &ctx(2, 1_000))).unwrap();
    let Reply::Array(parts) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(parts[1], Reply::Bulk(b("v")));
}

#[test]
fn users_survive_snapshot_and_restore() {
    let mut store = Store::new();
    apply(&mut store, 1, &setuser("carol", "on >pw ~c:* +@read"));
    apply(&mut store, 2, &setuser("default", "-@dangerous"));
    let snapshot = store.snapshot();
    let mut restored = Store::new();
    restored.restore(&snapshot).expect("restores");
    let acl = restored.acl();
    assert!(acl.check("carol", "pw"));
    let users = acl.users();
    let carol = users.get(b"carol").expect("carol");
    assert_eq!(carol.describe_keys(), "~c:*");
    assert!(carol.command_allowed("get", None));
    assert!(!carol.command_allowed("set", None));
    assert!(!users
        .get(b"default")
        .unwrap()
        .command_allowed("flushall", None));
    drop(users);
    assert_eq!(restored.snapshot(), snapshot, "byte-identical again");
    // A store with only the initial users writes the old format.
    let plain = Store::new().snapshot();
    assert!(!plain.ends_with(b"SYNODACL"));
    // Restoring a snapshot without users resets them.
    restored.restore(&plain).expect("restores");
    assert!(restored.acl().users().get(b"carol").is_none());
}

fn script_as(user: Option<&str>, function: Option<&str>, script: &str) -> KvCommand {
    KvCommand::Eval(Box::new(synod_kv::scripting::EvalCommand {
        instructions_max: synod_kv::scripting::APPLY_LIMITS.instructions_max,
        script: b(script),
        keys: vec![b("xa")],
        args: vec![b("1")],
        read_only: false,
        function: function.map(b),
        user: user.map(b),
    }))
}

/// A script carries its client's user through the log (its own codec tags,
/// EVAL's and FCALL's unchanged), and every replica checks the script's
/// commands against that user's rules as the replicated users hold them.
#[test]
fn a_script_runs_with_its_users_rules_on_every_replica() {
    for command in [
        script_as(None, None, "return 1"),
        script_as(Some("bob"), None, "return 1"),
        script_as(None, Some("f"), "return 1"),
        script_as(Some("bob"), Some("f"), "return 1"),
    ] {
        let bytes = command.encode();
        assert_eq!(bytes.len(), command.encoded_len());
        assert_eq!(KvCommand::decode(&bytes), Ok(command));
    }
    let mut store = Store::new();
    apply(&mut store, 1, &setuser("bob", "on +@scripting +set ~x*"));
    let set_key = "return redis.call('set', KEYS[1], ARGV[1])";
    assert_eq!(
        apply(&mut store, 2, &script_as(Some("bob"), None, set_key)),
        Reply::Simple("OK".into())
    );
    let reply = apply(
        &mut store,
        3,
        &script_as(Some("bob"), None, "return redis.call('get', KEYS[1])"),
    );
    assert!(
        matches!(&reply, Reply::Error(text) if text.contains("can't run this command")),
        "{reply:?}"
    );
    assert_eq!(
        apply(
            &mut store,
            4,
            &script_as(
                Some("bob"),
                None,
                "return redis.acl_check_cmd('set', 'yy', 1)"
            )
        ),
        Reply::Null
    );
    // Taking the right away takes effect from that point of the log on.
    apply(&mut store, 5, &setuser("bob", "-set"));
    let reply = apply(&mut store, 6, &script_as(Some("bob"), None, set_key));
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
    // A script without a user (an older log entry) is not checked.
    assert_eq!(
        apply(&mut store, 7, &script_as(None, None, set_key)),
        Reply::Simple("OK".into())
    );
}
