//! Tests of the blocked-client registry and of the blocking commands'
//! parsing and replies.

use super::*;
use crate::command::ListEnd;
use std::sync::atomic::AtomicU32;

fn args(text: &[&str]) -> Vec<Bytes> {
    text.iter()
        .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
        .collect()
}

fn key(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn error_of(result: Result<(KvCommand, Timeout), Reply>) -> String {
    match result {
        Err(Reply::Error(text)) => text.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn timeouts_parse_as_redis_7_0() {
    let ms = |text: &str| parse_timeout(text.as_bytes());
    assert_eq!(ms("0"), Ok(None));
    assert_eq!(ms("1"), Ok(Some(Duration::from_secs(1))));
    assert_eq!(ms("0.001"), Ok(Some(Duration::from_millis(1))));
    // Rounded up: a tiny timeout is 1 ms, not "for ever".
    assert_eq!(ms("0.0001"), Ok(Some(Duration::from_millis(1))));
    // ceil(-0.1) is -0: for ever, as in Redis.
    assert_eq!(ms("-0.0001"), Ok(None));
    for negative in ["-1", "inf", "-inf", "1e20", "9223372036854775.808"] {
        assert_eq!(
            ms(negative),
            Err(Reply::error("ERR timeout is negative")),
            "{negative}"
        );
    }
    for bad in ["", "abc", " 1", "1 ", "nan", "1.5e3x"] {
        assert_eq!(
            ms(bad),
            Err(Reply::error("ERR timeout is not a float or out of range")),
            "{bad:?}"
        );
    }
}

#[test]
fn blocking_commands_wrap_their_non_blocking_pops() {
    let (command, timeout) = parse("blpop", &args(&["blpop", "a", "b", "a", "1.5"])).unwrap();
    assert_eq!(timeout, Some(Duration::from_millis(1500)));
    assert_eq!(
        command,
        KvCommand::Blocking {
            kind: BlockingKind::BLPop,
            pop: Box::new(KvCommand::LMPop {
                keys: vec![key("a"), key("b"), key("a")],
                end: ListEnd::Left,
                count: 1,
            }),
            blocked: false,
        }
    );
    let (command, timeout) = parse("brpoplpush", &args(&["brpoplpush", "s", "d", "0"])).unwrap();
    assert_eq!(timeout, None);
    assert_eq!(
        command,
        KvCommand::Blocking {
            kind: BlockingKind::BRPopLPush,
            pop: Box::new(KvCommand::LMove {
                source: key("s"),
                destination: key("d"),
                from: ListEnd::Right,
                to: ListEnd::Left,
            }),
            blocked: false,
        }
    );
    // BLMPOP reads its pop's arguments before the timeout, BLPOP the
    // timeout first (Redis 7.0's order).
    assert_eq!(
        error_of(parse("blmpop", &args(&["blmpop", "x", "0", "a", "left"]))),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        error_of(parse("blmpop", &args(&["blmpop", "x", "1", "a", "up"]))),
        "ERR syntax error"
    );
    assert_eq!(
        error_of(parse("blmpop", &args(&["blmpop", "x", "1", "a", "left"]))),
        "ERR timeout is not a float or out of range"
    );
    assert_eq!(
        error_of(parse(
            "blmove",
            &args(&["blmove", "a", "b", "up", "left", "x"])
        )),
        "ERR syntax error"
    );
    assert_eq!(
        error_of(parse(
            "bzmpop",
            &args(&["bzmpop", "1", "1", "a", "min", "count", "0"])
        )),
        "ERR count should be greater than 0"
    );
    assert_eq!(
        error_of(parse("bzpopmin", &args(&["bzpopmin", "a", "-1"]))),
        "ERR timeout is negative"
    );
    // Hostile numkeys: refused, never allocated.
    assert_eq!(
        error_of(parse(
            "blmpop",
            &args(&["blmpop", "0", "9223372036854775807", "a", "left"])
        )),
        "ERR syntax error"
    );
}

#[test]
fn replies_take_the_blocking_commands_shapes() {
    let lmpop = Reply::Array(vec![
        Reply::Bulk(key("k")),
        Reply::Array(vec![Reply::Bulk(key("v"))]),
    ]);
    assert_eq!(
        reshape(BlockingKind::BLPop, lmpop.clone()),
        Reply::Array(vec![Reply::Bulk(key("k")), Reply::Bulk(key("v"))])
    );
    assert_eq!(reshape(BlockingKind::BLMPop, lmpop.clone()), lmpop);
    let zmpop = Reply::Array(vec![
        Reply::Bulk(key("z")),
        Reply::Array(vec![Reply::Array(vec![
            Reply::Bulk(key("m")),
            Reply::Double(1.5),
        ])]),
    ]);
    assert_eq!(
        reshape(BlockingKind::BZPopMax, zmpop),
        Reply::Array(vec![
            Reply::Bulk(key("z")),
            Reply::Bulk(key("m")),
            Reply::Double(1.5)
        ])
    );
    for kind in BlockingKind::ALL {
        assert_eq!(reshape(kind, Reply::NullArray), Reply::NullArray);
        assert_eq!(
            reshape(kind, Reply::error(crate::ops::WRONG_TYPE)),
            Reply::error(crate::ops::WRONG_TYPE)
        );
    }
}

/// Whether the waiter has a wake pending (takes it).
fn has_wake(waiter: &Waiter) -> bool {
    waiter.try_woken().is_some()
}

#[test]
fn a_wake_during_a_try_in_flight_makes_another_try() {
    let clients = BlockedClients::default();
    let k = key("k");
    let waiter = clients.register(1, &[&k]);
    waiter.begin_try();
    // The push is applied after the try was (the try saw nothing), while
    // its reply is still on the way.
    clients.touched(b"k");
    assert_eq!(waiter.end_try(true), AfterTry::Again);
    waiter.begin_try();
    assert_eq!(waiter.end_try(true), AfterTry::Wait);
    assert_eq!(clients.blocked(), 1);
    // A push while it waits wakes it.
    clients.touched(b"k");
    assert!(has_wake(&waiter));
    // Another key's push does not.
    clients.touched(b"other");
    assert!(!has_wake(&waiter));
    drop(waiter);
    assert_eq!((clients.waiters(), clients.blocked()), (0, 0));
}

#[test]
fn waiters_are_woken_first_come_first_served() {
    let clients = BlockedClients::default();
    let k = key("k");
    let first = clients.register(1, &[&k]);
    let second = clients.register(2, &[&k]);
    for waiter in [&first, &second] {
        waiter.begin_try();
        assert_eq!(waiter.end_try(true), AfterTry::Wait);
    }
    assert_eq!(clients.blocked(), 2);
    clients.touched(b"k");
    assert!(has_wake(&first));
    assert!(!has_wake(&second), "only the first is woken");
    first.begin_try();
    assert_eq!(first.end_try(false), AfterTry::Served);
    drop(first);
    // Handed on: the key was touched since the second's last try.
    assert!(has_wake(&second));
    second.begin_try();
    assert_eq!(second.end_try(true), AfterTry::Wait);
    drop(second);
    assert_eq!((clients.waiters(), clients.blocked()), (0, 0));
}

#[test]
fn a_waiter_that_saw_the_last_touch_is_not_handed_a_wake() {
    let clients = BlockedClients::default();
    let k = key("k");
    let first = clients.register(1, &[&k]);
    let second = clients.register(2, &[&k]);
    clients.touched(b"k");
    // The second's try began after the touch: it saw it.
    second.begin_try();
    assert_eq!(second.end_try(true), AfterTry::Wait);
    drop(first);
    assert!(!has_wake(&second));
}

#[test]
fn closing_leaves_nothing_behind() {
    let clients = BlockedClients::default();
    let (a, b) = (key("a"), key("b"));
    for round in 0..3u64 {
        let waiters: Vec<Waiter> = (0..10)
            .map(|client| clients.register(client, &[&a, &b, &a]))
            .collect();
        for waiter in &waiters {
            waiter.begin_try();
            assert_eq!(waiter.end_try(true), AfterTry::Wait);
        }
        clients.touched(b"a");
        assert_eq!(clients.blocked(), 10, "round {round}");
        drop(waiters);
        assert_eq!((clients.waiters(), clients.blocked()), (0, 0));
        let state = clients.lock();
        assert!(state.by_key.is_empty() && state.waiters.is_empty() && state.units.is_empty());
    }
}

#[test]
fn client_unblock_ends_only_a_blocked_wait() {
    let clients = BlockedClients::default();
    let k = key("k");
    assert_eq!(client_unblock(&clients, &args(&["7"])), Reply::Integer(0));
    let waiter = clients.register(7, &[&k]);
    // On its first try: not blocked yet.
    assert!(!clients.unblock(7, Unblock::Error));
    waiter.begin_try();
    assert_eq!(waiter.end_try(true), AfterTry::Wait);
    assert_eq!(
        client_unblock(&clients, &args(&["7", "error"])),
        Reply::Integer(1)
    );
    // A try in flight still wins: popped means served.
    waiter.begin_try();
    assert_eq!(waiter.end_try(false), AfterTry::Served);
    assert_eq!(
        client_unblock(&clients, &args(&["x"])),
        Reply::error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        client_unblock(&clients, &args(&["7", "maybe"])),
        Reply::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    );
}

fn blpop(keys: &[&str]) -> KvCommand {
    KvCommand::Blocking {
        kind: BlockingKind::BLPop,
        pop: Box::new(KvCommand::LMPop {
            keys: keys.iter().map(|k| key(k)).collect(),
            end: ListEnd::Left,
            count: 1,
        }),
        blocked: false,
    }
}

#[tokio::test]
async fn a_timeout_during_a_try_in_flight_keeps_the_element() {
    let clients = BlockedClients::default();
    let element = Reply::Array(vec![Reply::Bulk(key("k")), Reply::Bulk(key("v"))]);
    let tries = AtomicU32::new(0);
    let reply = block(
        &clients,
        1,
        blpop(&["k"]),
        // Long past by the time the try answers.
        Some(Duration::from_nanos(1)),
        |_| {
            tries.fetch_add(1, Ordering::Relaxed);
            let element = element.clone();
            async move {
                tokio::task::yield_now().await;
                element
            }
        },
    )
    .await;
    assert_eq!(reply, element);
    assert_eq!(tries.load(Ordering::Relaxed), 1);
    assert_eq!(clients.waiters(), 0);
}

#[tokio::test]
async fn a_blocked_pop_is_served_by_the_push_that_wakes_it() {
    let clients = BlockedClients::default();
    let element = Reply::Array(vec![Reply::Bulk(key("k")), Reply::Bulk(key("v"))]);
    // The "log": the try pops once the push happened.
    let pushed = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicU32::new(0));
    let task = {
        let (clients, pushed, tries, element) = (
            clients.clone(),
            Arc::clone(&pushed),
            Arc::clone(&tries),
            element.clone(),
        );
        tokio::spawn(async move {
            block(&clients, 1, blpop(&["k"]), None, |_| {
                tries.fetch_add(1, Ordering::Relaxed);
                let reply = if pushed.load(Ordering::Relaxed) {
                    element.clone()
                } else {
                    Reply::NullArray
                };
                async move { reply }
            })
            .await
        })
    };
    while clients.blocked() == 0 {
        tokio::task::yield_now().await;
    }
    // The apply of the push: the state changes, then the key is touched.
    pushed.store(true, Ordering::Relaxed);
    clients.touched(b"k");
    assert_eq!(task.await.unwrap(), element);
    assert_eq!(tries.load(Ordering::Relaxed), 2);
    assert_eq!((clients.waiters(), clients.blocked()), (0, 0));
}

#[tokio::test]
async fn a_writer_waits_for_the_wakes_it_caused() {
    let clients = BlockedClients::default();
    let k = key("k");
    let waiter = clients.register(1, &[&k]);
    waiter.begin_try();
    assert_eq!(waiter.end_try(true), AfterTry::Wait);
    // Nothing outstanding: no wait.
    clients.settle().await;
    clients.touched(b"k");
    let settled = Arc::new(AtomicBool::new(false));
    let writer = {
        let (clients, settled) = (clients.clone(), Arc::clone(&settled));
        tokio::spawn(async move {
            clients.settle().await;
            settled.store(true, Ordering::Relaxed);
        })
    };
    tokio::task::yield_now().await;
    assert!(!settled.load(Ordering::Relaxed));
    waiter.begin_try();
    assert_eq!(waiter.end_try(false), AfterTry::Served);
    drop(waiter);
    writer.await.unwrap();
    assert!(settled.load(Ordering::Relaxed));
}

#[tokio::test]
async fn the_largest_timeouts_wait_without_overflow() {
    let clients = BlockedClients::default();
    let element = Reply::Bulk(key("v"));
    // ~292 million years: the largest Redis takes.
    let timeout = parse_timeout(b"9223372036854000").unwrap();
    assert!(timeout.is_some());
    let tries = Arc::new(AtomicU32::new(0));
    let task = {
        let (clients, tries, element) = (clients.clone(), Arc::clone(&tries), element.clone());
        tokio::spawn(async move {
            block(&clients, 1, blpop(&["k"]), timeout, |_| {
                let first = tries.fetch_add(1, Ordering::Relaxed) == 0;
                let reply = if first {
                    Reply::NullArray
                } else {
                    element.clone()
                };
                async move { reply }
            })
            .await
        })
    };
    while clients.blocked() == 0 {
        tokio::task::yield_now().await;
    }
    clients.touched(b"k");
    assert_eq!(task.await.unwrap(), element);
}

/// A woken head whose try finds nothing (the value is of a type it does
/// not pop) hands the wake to the next waiter, which may use it (review:
/// a BZPOPMIN ahead of a BLPOP starved it).
#[test]
fn a_head_that_finds_nothing_hands_the_wake_on() {
    let clients = BlockedClients::default();
    let k = key("k");
    let first = clients.register(1, &[&k]);
    let second = clients.register(2, &[&k]);
    for waiter in [&first, &second] {
        waiter.begin_try();
        assert_eq!(waiter.end_try(true), AfterTry::Wait);
    }
    clients.touched(b"k");
    assert!(has_wake(&first));
    assert!(!has_wake(&second));
    first.begin_try();
    assert_eq!(first.end_try(true), AfterTry::Wait);
    assert!(has_wake(&second), "handed on");
    second.begin_try();
    assert_eq!(second.end_try(false), AfterTry::Served);
}

/// BLMOVE waits on its source only: a push to its destination wakes the
/// BLPOP waiting there instead.
#[test]
fn blmove_waits_on_its_source_only() {
    let blmove = KvCommand::Blocking {
        kind: BlockingKind::BLMove,
        pop: Box::new(KvCommand::LMove {
            source: key("src"),
            destination: key("dst"),
            from: crate::command::ListEnd::Left,
            to: crate::command::ListEnd::Right,
        }),
        blocked: false,
    };
    assert_eq!(source_keys(&blmove), vec![&key("src")]);
}

#[test]
fn the_sans_io_pop_drives_the_same_steps_as_the_server() {
    let clients = BlockedClients::default();
    let (mut pop, first) = BlockingPop::start(&clients, 7, blpop(&["q"]));
    assert_eq!(first, blpop(&["q"]));
    // The first try found nothing: wait, blocked, nothing to do yet.
    assert!(matches!(
        pop.answered(Reply::NullArray, false),
        PopStep::Wait
    ));
    assert_eq!(clients.blocked(), 1);
    assert!(pop.poll_wake().is_none());
    // A push wakes it: the next try passes over keys of another type.
    clients.touched(b"q");
    let Some(PopStep::Try(again)) = pop.poll_wake() else {
        panic!("a push must wake the waiter");
    };
    assert!(matches!(again, KvCommand::Blocking { blocked: true, .. }));
    // Woken again while that try was in flight: another try at once,
    // unless the deadline passed meanwhile.
    clients.touched(b"q");
    assert!(matches!(
        pop.answered(Reply::NullArray, false),
        PopStep::Try(_)
    ));
    clients.touched(b"q");
    assert!(matches!(
        pop.answered(Reply::NullArray, true),
        PopStep::Reply(Reply::NullArray)
    ));
    drop(pop);
    assert_eq!((clients.waiters(), clients.blocked()), (0, 0));
    // A try that popped is the reply; the waiter leaves with the pop.
    let (mut pop, _) = BlockingPop::start(&clients, 8, blpop(&["q"]));
    let popped = Reply::Array(vec![Reply::Bulk(key("q")), Reply::Bulk(key("x"))]);
    assert!(
        matches!(pop.answered(popped.clone(), false), PopStep::Reply(reply) if reply == popped)
    );
    // A timeout answers the nil of the last try.
    let (mut pop, _) = BlockingPop::start(&clients, 9, blpop(&["q"]));
    assert!(matches!(
        pop.answered(Reply::NullArray, false),
        PopStep::Wait
    ));
    assert_eq!(pop.timed_out(), Reply::NullArray);
}
