use super::patterns::literal_prefix;
use super::*;
use crate::watch::{Stamp, WatchedKey};

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|word| b(word)).collect()
}

fn push(words: &[&str], count: Option<i64>) -> Reply {
    let mut items: Vec<Reply> = words.iter().map(|word| Reply::Bulk(b(word))).collect();
    if let Some(count) = count {
        items.push(Reply::Integer(count));
    }
    Reply::Push(items)
}

fn publish(channel: &str, message: &str) -> KvCommand {
    KvCommand::Publish {
        channel: b(channel),
        message: b(message),
        shard: false,
        origin: 0,
        ticket: 0,
    }
}

/// Applies `command` as a store would (the output `ops::write` gives a
/// PUBLISH is 0) and returns how many it reached.
fn apply(pubsub: &PubSub, command: &KvCommand) -> i64 {
    let mut command = command.clone();
    let tickets = pubsub.stamp(&mut command);
    let mut reply = Reply::Integer(0);
    pubsub.deliver_applied(&command, &reply);
    tickets.settle(&command, &mut reply);
    match reply {
        Reply::Integer(receivers) => receivers,
        other => panic!("not a count: {other:?}"),
    }
}

/// The messages waiting for `subscriber`, as replies (taken and counted
/// as written).
fn inbox(subscriber: &Subscriber) -> Vec<Reply> {
    subscriber.take_for_tests()
}

#[test]
fn subscribe_confirms_each_channel_with_the_running_count() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    assert_eq!(
        one.command("subscribe", &args(&["subscribe", "a", "b", "a"])),
        vec![
            push(&["subscribe", "a"], Some(1)),
            push(&["subscribe", "b"], Some(2)),
            push(&["subscribe", "a"], Some(2)),
        ]
    );
    // Patterns count with channels; shard channels on their own.
    assert_eq!(
        one.command("psubscribe", &args(&["psubscribe", "x.*"])),
        vec![push(&["psubscribe", "x.*"], Some(3))]
    );
    assert_eq!(
        one.command("ssubscribe", &args(&["ssubscribe", "s"])),
        vec![push(&["ssubscribe", "s"], Some(1))]
    );
    assert!(one.active());
    assert_eq!(
        one.command("subscribe", &args(&["subscribe"])),
        vec![Reply::error(
            "ERR wrong number of arguments for 'subscribe' command"
        )]
    );
}

#[test]
fn unsubscribe_without_arguments_leaves_everything_and_always_replies() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "b", "a"]));
    one.command("psubscribe", &args(&["psubscribe", "p*"]));
    // Sorted, each with what is left (channels plus patterns).
    assert_eq!(
        one.command("unsubscribe", &args(&["unsubscribe"])),
        vec![
            push(&["unsubscribe", "a"], Some(2)),
            push(&["unsubscribe", "b"], Some(1)),
        ]
    );
    assert_eq!(
        one.command("punsubscribe", &args(&["punsubscribe"])),
        vec![push(&["punsubscribe", "p*"], Some(0))]
    );
    assert!(!one.active());
    // Nothing left: one reply with a nil name.
    let nil = |what: &str| Reply::Push(vec![Reply::Bulk(b(what)), Reply::Null, Reply::Integer(0)]);
    assert_eq!(
        one.command("unsubscribe", &args(&["unsubscribe"])),
        vec![nil("unsubscribe")]
    );
    assert_eq!(
        one.command("sunsubscribe", &args(&["sunsubscribe"])),
        vec![nil("sunsubscribe")]
    );
    // Leaving channels never joined still confirms each.
    assert_eq!(
        one.command("unsubscribe", &args(&["unsubscribe", "x", "y"])),
        vec![
            push(&["unsubscribe", "x"], Some(0)),
            push(&["unsubscribe", "y"], Some(0)),
        ]
    );
    assert_eq!(pubsub.counts(), (0, 0, 0));
}

#[test]
fn publish_reaches_channels_then_matching_patterns() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let mut two = Subscriber::new(pubsub.clone(), 2);
    one.command("subscribe", &args(&["subscribe", "foo.bar"]));
    one.command("psubscribe", &args(&["psubscribe", "foo.*", "nomatch"]));
    two.command("psubscribe", &args(&["psubscribe", "f?o.[a-c]ar"]));
    assert_eq!(apply(&pubsub, &publish("foo.bar", "hello")), 3);
    assert_eq!(
        inbox(&one),
        vec![
            push(&["message", "foo.bar", "hello"], None),
            push(&["pmessage", "foo.*", "foo.bar", "hello"], None),
        ]
    );
    assert_eq!(
        inbox(&two),
        vec![push(&["pmessage", "f?o.[a-c]ar", "foo.bar", "hello"], None)]
    );
    assert_eq!(apply(&pubsub, &publish("foo", "x")), 0);
    assert_eq!(apply(&pubsub, &publish("barfoo.1", "x")), 0);
    // Shard channels are their own namespace.
    assert_eq!(
        apply(
            &pubsub,
            &KvCommand::Publish {
                channel: b("foo.bar"),
                message: b("s"),
                shard: true,
                origin: 0,
                ticket: 0,
            }
        ),
        0
    );
    two.command("ssubscribe", &args(&["ssubscribe", "foo.bar"]));
    assert_eq!(
        apply(
            &pubsub,
            &KvCommand::Publish {
                channel: b("foo.bar"),
                message: b("s"),
                shard: true,
                origin: 0,
                ticket: 0,
            }
        ),
        1
    );
    assert_eq!(inbox(&two), vec![push(&["smessage", "foo.bar", "s"], None)]);
    assert!(inbox(&one).is_empty());
}

#[test]
fn messages_delivered_before_an_unsubscribe_come_before_its_confirmation() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "a"]));
    apply(&pubsub, &publish("a", "first"));
    assert_eq!(
        one.command("unsubscribe", &args(&["unsubscribe", "a"])),
        vec![
            push(&["message", "a", "first"], None),
            push(&["unsubscribe", "a"], Some(0)),
        ]
    );
    assert_eq!(apply(&pubsub, &publish("a", "second")), 0);
    assert!(inbox(&one).is_empty());
}

#[test]
fn a_dropped_connection_leaves_the_registry() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "a"]));
    one.command("psubscribe", &args(&["psubscribe", "*"]));
    one.command("ssubscribe", &args(&["ssubscribe", "s"]));
    assert_eq!(pubsub.counts(), (1, 1, 1));
    drop(one);
    assert_eq!(pubsub.counts(), (0, 0, 0));
    assert_eq!(apply(&pubsub, &publish("a", "x")), 0);
    assert!(pubsub.registry().mailboxes.is_empty());
}

#[test]
fn reset_clears_without_confirmations() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "a", "b"]));
    one.clear();
    assert!(!one.active());
    assert_eq!(pubsub.counts(), (0, 0, 0));
}

#[test]
fn the_subscriptions_of_a_connection_are_bounded() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let names: Vec<String> = (0..SUBSCRIPTIONS_PER_CLIENT_MAX)
        .map(|i| i.to_string())
        .collect();
    let mut request = vec!["subscribe"];
    request.extend(names.iter().map(String::as_str));
    assert_eq!(
        one.command("subscribe", &args(&request)).len(),
        SUBSCRIPTIONS_PER_CLIENT_MAX
    );
    // Again: nothing new, so allowed.
    assert!(one
        .command("subscribe", &args(&["subscribe", "0"]))
        .iter()
        .all(|reply| !matches!(reply, Reply::Error(_))));
    // One more is refused, all or nothing.
    let refused = one.command("psubscribe", &args(&["psubscribe", "p"]));
    assert!(
        matches!(refused.as_slice(), [Reply::Error(e)] if e.starts_with("ERR a connection may hold at most")),
        "{refused:?}"
    );
    assert_eq!(pubsub.counts(), (SUBSCRIPTIONS_PER_CLIENT_MAX, 0, 0));
    // Bytes of names too.
    let mut two = Subscriber::new(pubsub.clone(), 2);
    let long = "x".repeat(SUBSCRIPTION_BYTES_PER_CLIENT_MAX + 1);
    assert!(matches!(
        two.command("subscribe", &args(&["subscribe", &long]))
            .as_slice(),
        [Reply::Error(_)]
    ));
    assert!(!two.active());
}

#[test]
fn a_slow_subscriber_is_cut_off_at_the_hard_limit() {
    let pubsub = PubSub::new();
    pubsub.set_limits(OutputLimits {
        hard_bytes: 1000,
        soft_bytes: 1000,
        soft_duration: Duration::from_secs(60),
    });
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let mut two = Subscriber::new(pubsub.clone(), 2);
    one.command("subscribe", &args(&["subscribe", "c"]));
    two.command("subscribe", &args(&["subscribe", "c"]));
    let payload = "p".repeat(200);
    // 64 + 1 + 200 bytes a message: three fit, the fourth breaks the limit.
    for _ in 0..3 {
        apply(&pubsub, &publish("c", &payload));
        assert!(one.overflow_for_tests().is_none());
        // Two reads as it goes.
        assert_eq!(inbox(&two).len(), 1);
    }
    apply(&pubsub, &publish("c", &payload));
    let why = one.overflow_for_tests().expect("over the hard limit");
    assert!(why.contains("hard limit"), "{why}");
    // Its queue is dropped and nothing more is queued.
    apply(&pubsub, &publish("c", &payload));
    assert!(inbox(&one).is_empty());
    assert!(two.overflow_for_tests().is_none());
    assert_eq!(inbox(&two).len(), 2);
}

#[test]
fn over_the_soft_limit_for_too_long_disconnects() {
    let limits = OutputLimits {
        hard_bytes: 10_000,
        soft_bytes: 100,
        soft_duration: Duration::from_secs(60),
    };
    let mailbox = Mailbox::default();
    // 64 + 1 + 10 = 75 bytes: one is under the soft limit, two over.
    let message = || mailbox::Message::Channel {
        channel: b("c"),
        payload: Bytes::from(vec![b'x'; 10]),
    };
    let at = |seconds| Instant::now() + Duration::from_secs(seconds);
    let start = 0;
    mailbox.push(message(), limits, at(start));
    mailbox.push(message(), limits, at(start));
    mailbox.push(message(), limits, at(start + 59));
    assert!(mailbox.overflow().is_none());
    // Read: back under the soft limit, so the clock starts again.
    let (taken, bytes) = mailbox.take();
    assert_eq!((taken.len(), bytes), (3, 225));
    mailbox.written(bytes);
    mailbox.push(message(), limits, at(start + 61));
    mailbox.push(message(), limits, at(start + 62));
    mailbox.push(message(), limits, at(start + 121));
    assert!(mailbox.overflow().is_none());
    mailbox.push(message(), limits, at(start + 122));
    let why = mailbox.overflow().expect("over the soft limit for 60 s");
    assert!(why.contains("soft limit"), "{why}");
    assert!(mailbox.ready());
    assert!(mailbox.take().0.is_empty(), "the queue is dropped");
    assert!(mailbox.pending(), "an overflow stays pending once taken");
}

/// `Mailbox::pending` (what the connection loop checks on every request
/// instead of taking the lock) follows the queue and the overflow, and a
/// connection that left every subscription, with nothing queued, waits on
/// its socket alone (`Subscriber::may_receive`).
#[test]
fn pending_follows_the_queue() {
    let mailbox = Mailbox::default();
    assert!(!mailbox.pending());
    let message = || mailbox::Message::Channel {
        channel: b("c"),
        payload: b("p"),
    };
    mailbox.push(message(), OutputLimits::default(), Instant::now());
    mailbox.push(message(), OutputLimits::default(), Instant::now());
    assert!(mailbox.pending());
    let (taken, bytes) = mailbox.take();
    assert_eq!(taken.len(), 2);
    assert!(!mailbox.pending(), "taken, though not yet written");
    mailbox.written(bytes);
    assert!(!mailbox.pending());

    let pubsub = PubSub::new();
    let mut subscriber = Subscriber::new(pubsub.clone(), 1);
    assert!(!subscriber.may_receive());
    subscriber.command("subscribe", &args(&["subscribe", "c"]));
    assert!(subscriber.may_receive());
    apply(&pubsub, &publish("c", "1"));
    assert_eq!(inbox(&subscriber).len(), 1);
    apply(&pubsub, &publish("c", "2"));
    // The confirmation comes after the message queued before it.
    let pushes = subscriber.command("unsubscribe", &args(&["unsubscribe"]));
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert!(!subscriber.may_receive());
    apply(&pubsub, &publish("c", "3"));
    assert!(!subscriber.may_receive(), "nothing reaches it any more");
}

/// RESET (`Subscriber::clear`) hands back what was delivered before it, to
/// be written ahead of its reply: nothing is left queued to reach the
/// client after `+RESET`, and nothing is queued after it.
#[test]
fn clear_hands_back_what_was_delivered() {
    let pubsub = PubSub::new();
    let mut subscriber = Subscriber::new(pubsub.clone(), 1);
    subscriber.command("subscribe", &args(&["subscribe", "c"]));
    subscriber.command("psubscribe", &args(&["psubscribe", "c*"]));
    assert_eq!(apply(&pubsub, &publish("c", "1")), 2);
    let delivered = subscriber.clear();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(!subscriber.may_receive());
    assert!(!subscriber.active());
    assert_eq!(apply(&pubsub, &publish("c", "2")), 0);
    assert!(!subscriber.may_receive());
    assert!(subscriber.clear().is_empty());
}

/// A connection that closes with messages still queued leaves the registry
/// (its queue goes with it, unconverted); a later publish reaches no one.
#[test]
fn a_subscriber_dropped_with_a_backlog_leaves_the_registry() {
    let pubsub = PubSub::new();
    let mut subscriber = Subscriber::new(pubsub.clone(), 1);
    subscriber.command("subscribe", &args(&["subscribe", "c"]));
    for n in 0..3 {
        assert_eq!(apply(&pubsub, &publish("c", &n.to_string())), 1);
    }
    drop(subscriber);
    assert_eq!(apply(&pubsub, &publish("c", "after")), 0);
}

#[test]
fn only_the_stamping_node_counts_its_receivers() {
    // Two nodes' registries; node A proposes, both apply.
    let a = PubSub::new();
    let b_node = PubSub::new();
    let mut on_a = Subscriber::new(a.clone(), 1);
    let mut on_b = Subscriber::new(b_node.clone(), 1);
    let mut on_b_too = Subscriber::new(b_node.clone(), 2);
    on_a.command("subscribe", &args(&["subscribe", "c"]));
    on_b.command("subscribe", &args(&["subscribe", "c"]));
    on_b_too.command("psubscribe", &args(&["psubscribe", "*"]));
    let mut command = KvCommand::Exec(vec![publish("c", "1"), publish("c", "2")]);
    let tickets = a.stamp(&mut command);
    // B holds no ticket of A's, however the numbers fall.
    let b_tickets = b_node.stamp(&mut publish("c", "unrelated"));
    let output = Reply::Array(vec![Reply::Integer(0), Reply::Integer(0)]);
    b_node.deliver_applied(&command, &output);
    a.deliver_applied(&command, &output);
    let mut reply = output.clone();
    tickets.settle(&command, &mut reply);
    assert_eq!(
        reply,
        Reply::Array(vec![Reply::Integer(1), Reply::Integer(1)])
    );
    assert_eq!(inbox(&on_b).len(), 2);
    assert_eq!(inbox(&on_b_too).len(), 2);
    assert!(a.registry().tickets.is_empty());
    drop(b_tickets);
    assert!(b_node.registry().tickets.is_empty());
}

#[test]
fn a_ticket_never_applied_here_answers_zero_and_is_forgotten() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "c"]));
    let mut command = publish("c", "x");
    let tickets = pubsub.stamp(&mut command);
    // The outcome came from a snapshot's session table: no local apply.
    let mut reply = Reply::Integer(0);
    tickets.settle(&command, &mut reply);
    assert_eq!(reply, Reply::Integer(0));
    assert!(pubsub.registry().tickets.is_empty());
    // Dropped unsettled (the client left): forgotten too.
    let mut command = publish("c", "y");
    drop(pubsub.stamp(&mut command));
    assert!(pubsub.registry().tickets.is_empty());
}

#[test]
fn a_transaction_that_did_not_run_publishes_nothing() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("subscribe", &args(&["subscribe", "c"]));
    let watched = KvCommand::WatchCheck {
        watched: vec![WatchedKey {
            key: b("k"),
            live: false,
            stamp: Stamp {
                instance: 0,
                sequence: 0,
            },
        }],
    };
    let transaction = KvCommand::Exec(vec![watched, publish("c", "x")]);
    // Aborted by WATCH (nil), refused whole (an error).
    pubsub.deliver_applied(&transaction, &Reply::NullArray);
    pubsub.deliver_applied(&transaction, &Reply::error("OOM"));
    assert!(inbox(&one).is_empty());
    // Ran: the reply lines up past the WATCH check's (dropped).
    pubsub.deliver_applied(&transaction, &Reply::Array(vec![Reply::Integer(0)]));
    assert_eq!(inbox(&one), vec![push(&["message", "c", "x"], None)]);
}

#[test]
fn pubsub_introspection() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let mut two = Subscriber::new(pubsub.clone(), 2);
    one.command("subscribe", &args(&["subscribe", "news.1", "sport"]));
    two.command("subscribe", &args(&["subscribe", "news.1"]));
    one.command("psubscribe", &args(&["psubscribe", "foo*", "bar*"]));
    two.command("psubscribe", &args(&["psubscribe", "foo*"]));
    two.command("ssubscribe", &args(&["ssubscribe", "shard"]));
    let run = |words: &[&str]| pubsub.pubsub_command(&args(words));
    let bulks = |words: &[&str]| Reply::Array(words.iter().map(|w| Reply::Bulk(b(w))).collect());
    assert_eq!(run(&["pubsub", "channels"]), bulks(&["news.1", "sport"]));
    assert_eq!(run(&["PUBSUB", "CHANNELS", "news.*"]), bulks(&["news.1"]));
    assert_eq!(run(&["pubsub", "shardchannels"]), bulks(&["shard"]));
    assert_eq!(
        run(&["pubsub", "numsub", "news.1", "none"]),
        Reply::Array(vec![
            Reply::Bulk(b("news.1")),
            Reply::Integer(2),
            Reply::Bulk(b("none")),
            Reply::Integer(0),
        ])
    );
    assert_eq!(run(&["pubsub", "numsub"]), Reply::Array(vec![]));
    assert_eq!(
        run(&["pubsub", "shardnumsub", "shard"]),
        Reply::Array(vec![Reply::Bulk(b("shard")), Reply::Integer(1)])
    );
    assert_eq!(run(&["pubsub", "numpat"]), Reply::Integer(2));
    assert_eq!(
        run(&["pubsub", "numpat", "x"]),
        Reply::error("ERR wrong number of arguments for 'pubsub|numpat' command")
    );
    assert_eq!(
        run(&["pubsub", "channels", "a", "b"]),
        Reply::error("ERR wrong number of arguments for 'pubsub|channels' command")
    );
    assert_eq!(
        run(&["pubsub", "nope"]),
        Reply::error("ERR unknown subcommand 'nope'. Try PUBSUB HELP.")
    );
    assert!(matches!(run(&["pubsub", "help"]), Reply::Array(lines) if lines.len() > 4));
}

#[test]
fn subscribed_resp2_connections_only_subscribe() {
    for allowed in ["ping", "subscribe", "punsubscribe", "quit", "reset"] {
        assert!(refused_while_subscribed(allowed, allowed).is_none());
    }
    assert_eq!(
        refused_while_subscribed("client", "client|id"),
        Some(Reply::error(
            "ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))
    );
}

#[test]
fn publish_parses_and_survives_the_log() {
    assert_eq!(
        parse_publish(&args(&["PUBLISH", "c", "m"])),
        Ok(publish("c", "m"))
    );
    assert_eq!(
        parse_publish(&args(&["spublish", "c"])),
        Err(Reply::error(
            "ERR wrong number of arguments for 'spublish' command"
        ))
    );
    let stamped = KvCommand::Publish {
        channel: Bytes::from_static(b"\xff\x00"),
        message: Bytes::new(),
        shard: true,
        origin: u64::MAX,
        ticket: 7,
    };
    assert_eq!(KvCommand::decode(&stamped.encode()), Ok(stamped.clone()));
    assert!(!stamped.is_read());
    assert_eq!(stamped.name(), "spublish");
    assert!(stamped.keys().is_empty());
}

#[test]
fn registries_have_distinct_origins() {
    let a = PubSub::new();
    let b_node = PubSub::new();
    assert_ne!(a.origin.0, b_node.origin.0);
    assert_ne!(a.origin.0, 0);
}

#[test]
fn acl_channel_patterns_guard_publish_and_subscribe() {
    let mut user = crate::acl::User::new(b("u"), 1);
    user.channel_patterns = vec![b("news.*"), b("lit[")];
    let allowed_for = |user: &crate::acl::User, name: &str, words: &[&str]| {
        channels_checked(name, &args(words))
            .iter()
            .all(|(channel, literal)| user.channel_allowed(channel, *literal))
    };
    let allowed = |name: &str, words: &[&str]| allowed_for(&user, name, words);
    assert!(allowed("subscribe", &["subscribe", "news.1", "news.2"]));
    assert!(!allowed("subscribe", &["subscribe", "news.1", "sport"]));
    assert!(allowed("publish", &["publish", "news.x", "sport"]));
    assert!(!allowed("spublish", &["spublish", "sport", "news.x"]));
    // A subscription pattern must be one of the user's, literally.
    assert!(allowed("psubscribe", &["psubscribe", "news.*"]));
    assert!(!allowed("psubscribe", &["psubscribe", "news.1*"]));
    assert!(!allowed("psubscribe", &["psubscribe", "*"]));
    // Leaving is never refused.
    assert!(allowed("unsubscribe", &["unsubscribe", "sport"]));
    user.all_channels = true;
    assert!(allowed_for(&user, "psubscribe", &["psubscribe", "*"]));
}

/// A hostile pattern (long, quadratic to match) costs a bounded number of
/// steps on the apply path: it is given up, counted, and a cheap pattern
/// after it still gets the message.
#[test]
fn a_costly_pattern_is_given_up_within_the_budget() {
    let pubsub = PubSub::new();
    let hostile = format!("*{}b", "a".repeat(50_000));
    let mut attacker = Subscriber::new(pubsub.clone(), 1);
    let mut reader = Subscriber::new(pubsub.clone(), 2);
    attacker.command("psubscribe", &args(&["psubscribe", &hostile]));
    // Sorted after the hostile pattern ('*' < 'c'), so tried after it.
    reader.command("psubscribe", &args(&["psubscribe", "c*"]));
    let channel = format!("c{}", "a".repeat(100_000));
    let started = std::time::Instant::now();
    assert_eq!(apply(&pubsub, &publish(&channel, "m")), 1);
    // The whole quadratic match is 5e9 steps (tens of seconds); the budget
    // is a few million.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pubsub.matches_abandoned(), 1);
    assert_eq!(inbox(&reader).len(), 1);
    assert!(inbox(&attacker).is_empty());
}

/// The node-wide bound counts every connection's subscriptions (a channel
/// two connections hold counts twice) and frees them as they go.
#[test]
fn the_subscriptions_of_a_node_are_bounded() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let mut two = Subscriber::new(pubsub.clone(), 2);
    one.command("subscribe", &args(&["subscribe", "a", "b"]));
    two.command("psubscribe", &args(&["psubscribe", "a"]));
    {
        let registry = pubsub.registry();
        assert_eq!(
            (registry.subscriptions, registry.subscription_bytes),
            (3, 3)
        );
    }
    // As if the other connections of the node held all but two.
    pubsub.registry().subscriptions = SUBSCRIPTIONS_PER_NODE_MAX - 2;
    let refused = two.command("subscribe", &args(&["subscribe", "x", "y", "z"]));
    assert!(
        matches!(refused.as_slice(), [Reply::Error(e)] if e.starts_with("ERR this node holds at most")),
        "{refused:?}"
    );
    assert_eq!(pubsub.registry().subscriptions_refused, 1);
    // Nothing new: allowed; two new: they fit.
    let fits = two.command("subscribe", &args(&["subscribe", "x", "y", "x"]));
    assert!(fits.iter().all(|reply| !matches!(reply, Reply::Error(_))));
    assert_eq!(pubsub.registry().subscriptions, SUBSCRIPTIONS_PER_NODE_MAX);
    assert!(matches!(
        one.command("psubscribe", &args(&["psubscribe", "p"]))
            .as_slice(),
        [Reply::Error(_)]
    ));
    // Leaving frees room, for every connection.
    two.clear();
    assert_eq!(
        pubsub.registry().subscriptions,
        SUBSCRIPTIONS_PER_NODE_MAX - 3
    );
    assert!(one
        .command("psubscribe", &args(&["psubscribe", "p"]))
        .iter()
        .all(|reply| !matches!(reply, Reply::Error(_))));
    // Bytes of names too.
    pubsub.registry().subscription_bytes = SUBSCRIPTION_BYTES_PER_NODE_MAX;
    assert!(matches!(
        one.command("subscribe", &args(&["subscribe", "c"]))
            .as_slice(),
        [Reply::Error(_)]
    ));
}

/// The walk over literal prefixes finds exactly the groups whose prefix
/// starts the channel, longest first, whatever lies between them.
#[test]
fn prefix_groups_are_the_prefixes_of_the_channel() {
    let mut prefixes: BTreeMap<Bytes, BTreeSet<Bytes>> = BTreeMap::new();
    for (prefix, pattern) in [
        ("", "*x"),
        ("a", "a*"),
        ("ab", "ab?"),
        ("abc", "abc*"),
        ("abd", "abd*"),
        ("abcxyz", "abcxyz*"),
        ("b", "b*"),
        ("aa", "aa*"),
    ] {
        assert_eq!(literal_prefix(pattern.as_bytes()), prefix.as_bytes());
        prefixes.entry(b(prefix)).or_default().insert(b(pattern));
    }
    let found = |channel: &str| -> Vec<String> {
        let mut steps = 1_000;
        prefix_groups(&prefixes, channel.as_bytes(), &mut steps)
            .expect("within the steps")
            .into_iter()
            .flatten()
            .map(|pattern| String::from_utf8_lossy(pattern).into_owned())
            .collect()
    };
    assert_eq!(found("abcx"), ["abc*", "ab?", "a*", "*x"]);
    assert_eq!(found("abd"), ["abd*", "ab?", "a*", "*x"]);
    assert_eq!(found("ac"), ["a*", "*x"]);
    assert_eq!(found("zzz"), ["*x"]);
    assert_eq!(found(""), ["*x"]);
    assert_eq!(literal_prefix(b"a\\*b"), b"a");
    assert_eq!(literal_prefix(b"x[yz]"), b"x");
    // Out of steps: undecided.
    let mut steps = 2;
    assert_eq!(prefix_groups(&prefixes, b"abcx", &mut steps), None);
}

/// Patterns whose literal prefix the channel does not start with cost
/// nothing: 20,000 of them leave the apply's budget almost whole.
#[test]
fn patterns_of_other_prefixes_are_not_tried() {
    let pubsub = PubSub::new();
    let mut attacker = Subscriber::new(pubsub.clone(), 1);
    let mut reader = Subscriber::new(pubsub.clone(), 2);
    let mut attackers = Vec::new();
    for start in (0..20_000).step_by(5_000) {
        let mut words = vec!["psubscribe".to_string()];
        words.extend((start..start + 5_000).map(|i| format!("zz{i}*")));
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut attacker_two = Subscriber::new(pubsub.clone(), 100 + start as u64);
        attacker_two.command("psubscribe", &args(&words));
        attackers.push(attacker_two);
    }
    attacker.command("psubscribe", &args(&["psubscribe", "*"]));
    reader.command("psubscribe", &args(&["psubscribe", "__keyspace@0__:k*"]));
    pubsub.begin_apply();
    assert_eq!(apply(&pubsub, &publish("__keyspace@0__:key", "set")), 2);
    let left = pubsub.registry().apply_steps_left;
    assert!(
        APPLY_PATTERN_STEPS_MAX - left < 200,
        "{}",
        APPLY_PATTERN_STEPS_MAX - left
    );
    assert_eq!(inbox(&reader).len(), 1);
    assert_eq!(inbox(&attacker).len(), 1);
}

/// One budget per apply: the messages of an apply spend it together, one
/// that finds it spent tries no pattern (counted), and the next apply has
/// a fresh one.
#[test]
fn the_pattern_budget_is_shared_by_an_apply() {
    let pubsub = PubSub::new();
    let mut reader = Subscriber::new(pubsub.clone(), 1);
    reader.command("psubscribe", &args(&["psubscribe", "c*"]));
    pubsub.begin_apply();
    assert_eq!(apply(&pubsub, &publish("c1", "m")), 1);
    let after_one = pubsub.registry().apply_steps_left;
    assert!(after_one < APPLY_PATTERN_STEPS_MAX);
    assert_eq!(apply(&pubsub, &publish("c2", "m")), 1);
    let after_two = pubsub.registry().apply_steps_left;
    assert_eq!(
        APPLY_PATTERN_STEPS_MAX - after_two,
        2 * (APPLY_PATTERN_STEPS_MAX - after_one)
    );
    // As if the apply's earlier messages had spent it all.
    pubsub.registry().apply_steps_left = 0;
    assert_eq!(apply(&pubsub, &publish("c3", "m")), 0);
    assert_eq!(pubsub.scans_cut_short(), 1);
    assert_eq!(inbox(&reader).len(), 2);
    pubsub.begin_apply();
    assert_eq!(apply(&pubsub, &publish("c4", "m")), 1);
    assert_eq!(pubsub.scans_cut_short(), 1);
}

/// Pattern subscriptions have their own, lower node-wide bound; channels
/// are not held to it.
#[test]
fn the_pattern_subscriptions_of_a_node_are_bounded() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    one.command("psubscribe", &args(&["psubscribe", "a*"]));
    pubsub.registry().pattern_subscriptions = PATTERN_SUBSCRIPTIONS_PER_NODE_MAX - 1;
    let refused = one.command("psubscribe", &args(&["psubscribe", "b*", "c*"]));
    assert!(
        matches!(refused.as_slice(), [Reply::Error(e)] if e.contains("65536 patterns")),
        "{refused:?}"
    );
    let fits = one.command("psubscribe", &args(&["psubscribe", "b*", "a*"]));
    assert!(fits.iter().all(|reply| !matches!(reply, Reply::Error(_))));
    assert!(matches!(
        one.command("psubscribe", &args(&["psubscribe", "c*"]))
            .as_slice(),
        [Reply::Error(_)]
    ));
    let channels = one.command("subscribe", &args(&["subscribe", "c"]));
    assert!(channels
        .iter()
        .all(|reply| !matches!(reply, Reply::Error(_))));
    one.clear();
    let registry = pubsub.registry();
    assert_eq!(
        registry.pattern_subscriptions,
        PATTERN_SUBSCRIPTIONS_PER_NODE_MAX - 2
    );
    assert!(registry.pattern_prefixes.is_empty() && registry.patterns.is_empty());
}

/// A (un)subscribe hands the messages delivered before it apart from its
/// own replies: INFO commandstats judges the command by the first of its
/// own (a refused SUBSCRIBE with a message ahead was counted a success).
#[test]
fn a_command_hands_its_messages_apart_from_its_replies() {
    let pubsub = PubSub::new();
    let mut one = Subscriber::new(pubsub.clone(), 1);
    let names: Vec<String> = (0..SUBSCRIPTIONS_PER_CLIENT_MAX)
        .map(|i| i.to_string())
        .collect();
    let mut request = vec!["subscribe"];
    request.extend(names.iter().map(String::as_str));
    let (delivered, replies) = one.run("subscribe", &args(&request));
    assert!(delivered.is_empty());
    assert_eq!(replies.len(), SUBSCRIPTIONS_PER_CLIENT_MAX);
    apply(&pubsub, &publish("0", "m1"));
    let (delivered, replies) = one.run("psubscribe", &args(&["psubscribe", "p"]));
    assert_eq!(delivered, vec![push(&["message", "0", "m1"], None)]);
    assert!(
        matches!(replies.as_slice(), [Reply::Error(e)] if e.starts_with("ERR a connection may hold at most")),
        "{replies:?}"
    );
    apply(&pubsub, &publish("1", "m2"));
    let (delivered, replies) = one.run("unsubscribe", &args(&["unsubscribe", "1"]));
    assert_eq!(delivered, vec![push(&["message", "1", "m2"], None)]);
    assert_eq!(
        replies,
        vec![push(
            &["unsubscribe", "1"],
            Some(SUBSCRIPTIONS_PER_CLIENT_MAX as i64 - 1)
        )]
    );
}
