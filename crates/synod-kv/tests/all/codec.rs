//! The command and reply codecs: round trips, and hostile bytes never panic.

use crate::common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use synod::StateMachine;
use synod_kv::{
    decode_reply, encode_reply, parse, BitOperation, BitUnit, DecodeError, ExpireCondition,
    ExpireForm, GetExExpiry, KvCommand, LcsOutput, ListEnd, ObjectField, SetCondition, SetExpiry,
    SetOperation, SortCommand, Store, TimeUnit, COMMAND_FORMAT_VERSION, REPLY_FORMAT_VERSION,
};
use synod_resp::Reply;

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn keys() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(bytes(), 0..4)
}

fn pairs() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    prop::collection::vec((bytes(), bytes()), 0..4)
}

fn unit() -> impl Strategy<Value = TimeUnit> {
    prop_oneof![Just(TimeUnit::Seconds), Just(TimeUnit::Milliseconds)]
}

fn end() -> impl Strategy<Value = ListEnd> {
    prop_oneof![Just(ListEnd::Left), Just(ListEnd::Right)]
}

fn simple_command() -> BoxedStrategy<KvCommand> {
    let set_condition = prop_oneof![
        Just(SetCondition::Always),
        Just(SetCondition::IfAbsent),
        Just(SetCondition::IfPresent)
    ];
    let set_expiry = prop_oneof![
        Just(SetExpiry::Clear),
        Just(SetExpiry::Keep),
        any::<i64>().prop_map(|ttl_ms| SetExpiry::After { ttl_ms }),
        any::<i64>().prop_map(|unix_ms| SetExpiry::At { unix_ms }),
    ];
    let getex_expiry = prop_oneof![
        Just(GetExExpiry::Unchanged),
        Just(GetExExpiry::Persist),
        any::<i64>().prop_map(|ttl_ms| GetExExpiry::After { ttl_ms }),
        any::<i64>().prop_map(|unix_ms| GetExExpiry::At { unix_ms }),
    ];
    let form = prop_oneof![
        Just(ExpireForm::Expire),
        Just(ExpireForm::PExpire),
        Just(ExpireForm::ExpireAt),
        Just(ExpireForm::PExpireAt)
    ];
    let condition = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(if_no_expiry, if_has_expiry, if_greater, if_less)| ExpireCondition {
            if_no_expiry,
            if_has_expiry,
            if_greater,
            if_less,
        },
    );
    let finite = any::<f64>().prop_filter("NaN never equals itself", |value| !value.is_nan());
    let mut options: Vec<BoxedStrategy<KvCommand>> = vec![
        bytes().prop_map(|key| KvCommand::Get { key }).boxed(),
        (bytes(), bytes(), set_condition, any::<bool>(), set_expiry)
            .prop_map(|(key, value, condition, get, expiry)| KvCommand::Set {
                key,
                value,
                condition,
                get,
                expiry,
            })
            .boxed(),
        (bytes(), bytes())
            .prop_map(|(key, value)| KvCommand::SetNx { key, value })
            .boxed(),
        (bytes(), bytes(), unit(), any::<i64>())
            .prop_map(|(key, value, unit, ttl_ms)| KvCommand::SetEx {
                key,
                value,
                unit,
                ttl_ms,
            })
            .boxed(),
        (bytes(), bytes())
            .prop_map(|(key, value)| KvCommand::GetSet { key, value })
            .boxed(),
        bytes().prop_map(|key| KvCommand::GetDel { key }).boxed(),
        (bytes(), getex_expiry)
            .prop_map(|(key, expiry)| KvCommand::GetEx { key, expiry })
            .boxed(),
        keys().prop_map(|keys| KvCommand::MGet { keys }).boxed(),
        pairs().prop_map(|pairs| KvCommand::MSet { pairs }).boxed(),
        pairs()
            .prop_map(|pairs| KvCommand::MSetNx { pairs })
            .boxed(),
        keys().prop_map(|keys| KvCommand::Del { keys }).boxed(),
        keys().prop_map(|keys| KvCommand::Exists { keys }).boxed(),
        (bytes(), any::<i64>())
            .prop_map(|(key, delta)| KvCommand::IncrBy { key, delta })
            .boxed(),
        (bytes(), finite)
            .prop_map(|(key, delta)| KvCommand::IncrByFloat { key, delta })
            .boxed(),
        (bytes(), bytes())
            .prop_map(|(key, value)| KvCommand::Append { key, value })
            .boxed(),
        bytes().prop_map(|key| KvCommand::StrLen { key }).boxed(),
        (bytes(), any::<i64>(), any::<i64>())
            .prop_map(|(key, start, end)| KvCommand::GetRange { key, start, end })
            .boxed(),
        (bytes(), any::<u64>(), bytes())
            .prop_map(|(key, offset, value)| KvCommand::SetRange { key, offset, value })
            .boxed(),
        (bytes(), form, any::<i64>(), condition)
            .prop_map(|(key, form, when_ms, condition)| KvCommand::Expire {
                key,
                form,
                when_ms,
                condition,
            })
            .boxed(),
        (bytes(), unit())
            .prop_map(|(key, unit)| KvCommand::Ttl { key, unit })
            .boxed(),
        bytes().prop_map(|key| KvCommand::Persist { key }).boxed(),
        bytes().prop_map(|key| KvCommand::Type { key }).boxed(),
        bytes()
            .prop_map(|pattern| KvCommand::Keys { pattern })
            .boxed(),
        (
            any::<u64>(),
            prop::option::of(bytes()),
            any::<u64>(),
            prop::option::of(bytes()),
        )
            .prop_map(|(cursor, pattern, count, type_name)| KvCommand::Scan {
                cursor,
                pattern,
                count,
                type_name,
            })
            .boxed(),
        Just(KvCommand::DbSize).boxed(),
        Just(KvCommand::FlushAll).boxed(),
        any::<u64>()
            .prop_map(|nonce| KvCommand::RandomKey { nonce })
            .boxed(),
        (bytes(), pairs())
            .prop_map(|(key, pairs)| KvCommand::HSet { key, pairs })
            .boxed(),
        (bytes(), bytes())
            .prop_map(|(key, field)| KvCommand::HGet { key, field })
            .boxed(),
        (bytes(), keys())
            .prop_map(|(key, fields)| KvCommand::HDel { key, fields })
            .boxed(),
        bytes().prop_map(|key| KvCommand::HGetAll { key }).boxed(),
        bytes().prop_map(|key| KvCommand::HLen { key }).boxed(),
        (bytes(), bytes())
            .prop_map(|(key, field)| KvCommand::HExists { key, field })
            .boxed(),
        (bytes(), bytes(), any::<i64>())
            .prop_map(|(key, field, delta)| KvCommand::HIncrBy { key, field, delta })
            .boxed(),
        (bytes(), end(), keys())
            .prop_map(|(key, end, values)| KvCommand::Push { key, end, values })
            .boxed(),
        (bytes(), end(), prop::option::of(any::<u64>()))
            .prop_map(|(key, end, count)| KvCommand::Pop { key, end, count })
            .boxed(),
        (bytes(), any::<i64>(), any::<i64>())
            .prop_map(|(key, start, stop)| KvCommand::LRange { key, start, stop })
            .boxed(),
        bytes().prop_map(|key| KvCommand::LLen { key }).boxed(),
        list_or_hash_command(),
    ];
    options.extend(keys_and_bits_commands());
    options.extend(set_commands());
    Union::new(options).boxed()
}

/// The list and hash commands of issue 16.
fn list_or_hash_command() -> BoxedStrategy<KvCommand> {
    let rank = any::<i64>().prop_filter("rank is never 0 or i64::MIN", |rank| {
        *rank != 0 && *rank != i64::MIN
    });
    let options: Vec<BoxedStrategy<KvCommand>> = vec![
        (bytes(), any::<i64>())
            .prop_map(|(key, index)| KvCommand::LIndex { key, index })
            .boxed(),
        (bytes(), any::<i64>(), bytes())
            .prop_map(|(key, index, value)| KvCommand::LSet { key, index, value })
            .boxed(),
        (bytes(), any::<bool>(), bytes(), bytes())
            .prop_map(|(key, before, pivot, value)| KvCommand::LInsert {
                key,
                before,
                pivot,
                value,
            })
            .boxed(),
        (bytes(), any::<i64>(), bytes())
            .prop_map(|(key, count, value)| KvCommand::LRem { key, count, value })
            .boxed(),
        (bytes(), any::<i64>(), any::<i64>())
            .prop_map(|(key, start, stop)| KvCommand::LTrim { key, start, stop })
            .boxed(),
        (
            bytes(),
            bytes(),
            rank,
            prop::option::of(any::<u64>()),
            any::<u64>(),
        )
            .prop_map(|(key, value, rank, count, maxlen)| KvCommand::LPos {
                key,
                value,
                rank,
                count,
                maxlen,
            })
            .boxed(),
        (bytes(), end(), keys())
            .prop_map(|(key, end, values)| KvCommand::PushX { key, end, values })
            .boxed(),
        (bytes(), bytes(), end(), end())
            .prop_map(|(source, destination, from, to)| KvCommand::LMove {
                source,
                destination,
                from,
                to,
            })
            .boxed(),
        (keys(), end(), any::<u64>())
            .prop_map(|(keys, end, count)| KvCommand::LMPop { keys, end, count })
            .boxed(),
        (bytes(), pairs())
            .prop_map(|(key, pairs)| KvCommand::HMSet { key, pairs })
            .boxed(),
        (bytes(), keys())
            .prop_map(|(key, fields)| KvCommand::HMGet { key, fields })
            .boxed(),
        (bytes(), bytes(), bytes())
            .prop_map(|(key, field, value)| KvCommand::HSetNx { key, field, value })
            .boxed(),
        (bytes(), bytes(), bytes())
            .prop_map(|(key, field, increment)| KvCommand::HIncrByFloat {
                key,
                field,
                increment,
            })
            .boxed(),
        (bytes(), bytes())
            .prop_map(|(key, field)| KvCommand::HStrLen { key, field })
            .boxed(),
        bytes().prop_map(|key| KvCommand::HKeys { key }).boxed(),
        bytes().prop_map(|key| KvCommand::HVals { key }).boxed(),
        // Counts stay small: a huge negative count is a huge reply.
        (bytes(), prop::option::of(-100i64..100), any::<bool>())
            .prop_map(|(key, count, with_values)| KvCommand::HRandField {
                key,
                count,
                with_values,
            })
            .boxed(),
        (bytes(), any::<u64>(), prop::option::of(bytes()), 1u64..1000)
            .prop_map(|(key, cursor, pattern, count)| KvCommand::HScan {
                key,
                cursor,
                pattern,
                count,
            })
            .boxed(),
    ];
    Union::new(options).boxed()
}

/// The set commands (tags 220 to 239).
fn set_commands() -> Vec<BoxedStrategy<KvCommand>> {
    let operation = || {
        prop_oneof![
            Just(SetOperation::Inter),
            Just(SetOperation::Union),
            Just(SetOperation::Diff),
        ]
    };
    vec![
        (bytes(), keys())
            .prop_map(|(key, members)| KvCommand::SAdd { key, members })
            .boxed(),
        (bytes(), keys())
            .prop_map(|(key, members)| KvCommand::SRem { key, members })
            .boxed(),
        bytes().prop_map(|key| KvCommand::SMembers { key }).boxed(),
        (bytes(), bytes())
            .prop_map(|(key, member)| KvCommand::SIsMember { key, member })
            .boxed(),
        (bytes(), keys())
            .prop_map(|(key, members)| KvCommand::SMIsMember { key, members })
            .boxed(),
        bytes().prop_map(|key| KvCommand::SCard { key }).boxed(),
        (bytes(), prop::option::of(0u64..100))
            .prop_map(|(key, count)| KvCommand::SPop { key, count })
            .boxed(),
        // Counts stay small: a huge negative count is a huge reply.
        (bytes(), prop::option::of(-100i64..100))
            .prop_map(|(key, count)| KvCommand::SRandMember { key, count })
            .boxed(),
        (bytes(), bytes(), bytes())
            .prop_map(|(source, destination, member)| KvCommand::SMove {
                source,
                destination,
                member,
            })
            .boxed(),
        (operation(), keys(), prop::option::of(bytes()))
            .prop_map(|(operation, keys, store)| KvCommand::SetCombine {
                operation,
                keys,
                store,
            })
            .boxed(),
        (keys(), any::<u64>())
            .prop_map(|(keys, limit)| KvCommand::SInterCard { keys, limit })
            .boxed(),
        (bytes(), any::<u64>(), prop::option::of(bytes()), 1u64..1000)
            .prop_map(|(key, cursor, pattern, count)| KvCommand::SScan {
                key,
                cursor,
                pattern,
                count,
            })
            .boxed(),
    ]
}

/// The commands of tags 150 to 199 (issue 16's keys and strings).
fn keys_and_bits_commands() -> Vec<BoxedStrategy<KvCommand>> {
    let bit_unit = || prop_oneof![Just(BitUnit::Byte), Just(BitUnit::Bit)];
    vec![
        (bytes(), bytes(), any::<bool>())
            .prop_map(|(key, new_key, only_if_absent)| KvCommand::Rename {
                key,
                new_key,
                only_if_absent,
            })
            .boxed(),
        (bytes(), bytes(), any::<bool>())
            .prop_map(|(source, destination, replace)| KvCommand::Copy {
                source,
                destination,
                replace,
            })
            .boxed(),
        keys().prop_map(|keys| KvCommand::Touch { keys }).boxed(),
        (bytes(), unit())
            .prop_map(|(key, unit)| KvCommand::ExpireTime { key, unit })
            .boxed(),
        (
            bytes(),
            prop_oneof![
                Just(ObjectField::Encoding),
                Just(ObjectField::RefCount),
                Just(ObjectField::IdleTime),
                Just(ObjectField::Freq)
            ],
        )
            .prop_map(|(key, field)| KvCommand::Object { key, field })
            .boxed(),
        (
            bytes(),
            prop::option::of(bytes()),
            prop::option::of((any::<i64>(), any::<i64>())),
            keys(),
            any::<(bool, bool)>(),
            prop::option::of(bytes()),
        )
            .prop_map(|(key, by, limit, gets, (descending, alpha), store)| {
                KvCommand::Sort(Box::new(SortCommand {
                    key,
                    by,
                    limit,
                    gets,
                    descending,
                    alpha,
                    store,
                }))
            })
            .boxed(),
        (bytes(), any::<u64>(), any::<bool>())
            .prop_map(|(key, offset, bit)| KvCommand::SetBit { key, offset, bit })
            .boxed(),
        (bytes(), any::<u64>())
            .prop_map(|(key, offset)| KvCommand::GetBit { key, offset })
            .boxed(),
        (
            bytes(),
            prop::option::of((any::<i64>(), any::<i64>(), bit_unit())),
        )
            .prop_map(|(key, range)| KvCommand::BitCount { key, range })
            .boxed(),
        (
            bytes(),
            any::<bool>(),
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
            bit_unit(),
        )
            .prop_map(|(key, bit, start, end, unit)| KvCommand::BitPos {
                key,
                bit,
                start,
                end,
                unit,
            })
            .boxed(),
        (
            prop_oneof![
                Just(BitOperation::And),
                Just(BitOperation::Or),
                Just(BitOperation::Xor),
                Just(BitOperation::Not)
            ],
            bytes(),
            keys(),
        )
            .prop_map(|(operation, destination, keys)| KvCommand::BitOp {
                operation,
                destination,
                keys,
            })
            .boxed(),
        (
            bytes(),
            bytes(),
            prop_oneof![
                Just(LcsOutput::String),
                Just(LcsOutput::Len),
                (any::<u64>(), any::<bool>()).prop_map(|(min_match_len, with_match_len)| {
                    LcsOutput::Ranges {
                        min_match_len,
                        with_match_len,
                    }
                }),
            ],
        )
            .prop_map(|(key1, key2, output)| KvCommand::Lcs { key1, key2, output })
            .boxed(),
        (bytes(), bytes(), any::<bool>(), any::<u64>(), any::<u64>())
            .prop_map(
                |(channel, message, shard, origin, ticket)| KvCommand::Publish {
                    channel,
                    message,
                    shard,
                    origin,
                    ticket,
                },
            )
            .boxed(),
    ]
}

fn command() -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        4 => simple_command(),
        1 => prop::collection::vec(simple_command(), 0..5).prop_map(KvCommand::Exec),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let line = "[ -~]{0,12}";
    let leaf = prop_oneof![
        line.prop_map(Reply::simple),
        line.prop_map(|text| Reply::Error(format!("ERR {text}"))),
        any::<i64>().prop_map(Reply::Integer),
        bytes().prop_map(Reply::Bulk),
        Just(Reply::Null),
        Just(Reply::NullArray),
        any::<f64>()
            .prop_filter("NaN never equals itself", |value| !value.is_nan())
            .prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Bool),
        bytes().prop_map(Reply::Verbatim),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Reply::Map),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Reply::Pairs),
            prop::collection::vec(inner, 0..6).prop_map(Reply::Push),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn command_round_trip(command in command()) {
        let encoded = command.encode();
        prop_assert_eq!(command.encoded_len(), encoded.len());
        if let KvCommand::Exec(inner) = &command {
            let lens = inner.iter().map(KvCommand::encoded_len);
            prop_assert_eq!(KvCommand::exec_encoded_len(lens), encoded.len());
        }
        prop_assert_eq!(encoded[0], COMMAND_FORMAT_VERSION);
        prop_assert_eq!(KvCommand::decode_shared(&encoded), Ok(command.clone()));
        prop_assert_eq!(KvCommand::decode(&encoded), Ok(command));
    }

    /// A batch apply (zero-copy decoding) answers and leaves the state as
    /// `apply` (copying decoding) does.
    #[test]
    fn batch_apply_equals_apply(command in command()) {
        let encoded = command.encode();
        let mut one = Store::new();
        let mut batched = Store::new();
        let batch = [synod::BatchCommand { command: &encoded, ctx: ctx(1, 0) }];
        prop_assert_eq!(vec![one.apply(&encoded, &ctx(1, 0))], batched.apply_batch(&batch));
        prop_assert_eq!(one.snapshot(), batched.snapshot());
    }

    #[test]
    fn reply_round_trip(reply in reply()) {
        let encoded = encode_reply(&reply);
        prop_assert_eq!(encoded[0], REPLY_FORMAT_VERSION);
        prop_assert_eq!(decode_reply(&encoded), Ok(reply));
    }

    /// Every proper prefix of an encoding is rejected, never misread.
    #[test]
    fn truncated_commands_are_rejected(command in command()) {
        let encoded = command.encode();
        for len in 0..encoded.len() {
            prop_assert!(KvCommand::decode(&encoded[..len]).is_err());
            prop_assert!(KvCommand::decode_shared(&encoded.slice(..len)).is_err());
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = KvCommand::decode(&bytes);
        let _ = decode_reply(&bytes);
        // With the right version byte the decoders get past the header.
        let mut versioned = vec![COMMAND_FORMAT_VERSION];
        versioned.extend_from_slice(&bytes);
        let _ = KvCommand::decode(&versioned);
        let _ = decode_reply(&versioned);
    }

    /// Applying garbage gives an ERR reply (deterministically) and changes
    /// nothing visible.
    #[test]
    fn applying_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut versioned = vec![COMMAND_FORMAT_VERSION];
        versioned.extend_from_slice(&bytes);
        for input in [&bytes[..], &versioned[..]] {
            let mut store = Store::new();
            let reply = decode_reply(&store.apply(input, &ctx(1, 0))).unwrap();
            let again = decode_reply(&Store::new().apply(input, &ctx(1, 0))).unwrap();
            prop_assert_eq!(&reply, &again);
            let queried = decode_reply(&store.query(input, &ctx(1, 0))).unwrap();
            if KvCommand::decode(input).is_err() {
                prop_assert!(matches!(&reply, Reply::Error(line) if line.starts_with("ERR ")));
                prop_assert!(matches!(&queried, Reply::Error(line) if line.starts_with("ERR ")));
            }
            store.check_invariants().unwrap();
        }
    }

    /// Any decodable command applies without panicking on a populated store.
    #[test]
    fn applying_any_command_never_panics(commands in prop::collection::vec(command(), 1..20)) {
        let mut h = Harness::new();
        h.run(0, "MSET a 1 b 2");
        h.run(0, "HSET h f 1");
        h.run(0, "RPUSH l x y");
        for command in &commands {
            h.apply(1, command);
        }
    }

    /// The parser never panics, whatever the arguments.
    #[test]
    fn parse_never_panics(
        name in prop::sample::select(synod_kv::command_table().iter().map(|spec| spec.name).collect::<Vec<_>>()),
        rest in prop::collection::vec(
            prop_oneof![
                bytes(),
                Just(Bytes::from_static(b"EX")),
                Just(Bytes::from_static(b"PX")),
                Just(Bytes::from_static(b"NX")),
                Just(Bytes::from_static(b"XX")),
                Just(Bytes::from_static(b"GET")),
                Just(Bytes::from_static(b"COUNT")),
                Just(Bytes::from_static(b"MATCH")),
                Just(Bytes::from_static(b"-1")),
                Just(Bytes::from_static(b"10")),
            ],
            0..6,
        ),
    ) {
        let mut args = vec![Bytes::from(name)];
        args.extend(rest);
        if let Ok(command) = parse(&args) {
            prop_assert_eq!(KvCommand::decode(&command.encode()), Ok(command));
        }
    }
}

/// `decode_shared` slices only the short key and value of a plain string
/// write out of the log value; everything else (a long value, any other
/// command's fields, which a collection may keep) is copied, so no kept
/// field holds a whole batch in memory.
#[test]
fn shared_decoding_slices_only_short_string_writes() {
    let within = |part: &Bytes, whole: &Bytes| {
        let range = whole.as_ptr_range();
        range.contains(&part.as_ptr()) && !part.is_empty()
    };
    let short = Bytes::from(vec![b'v'; 1024]);
    let long = Bytes::from(vec![b'w'; 1025]);
    let set = |value: &Bytes| KvCommand::Set {
        key: Bytes::from_static(b"key"),
        value: value.clone(),
        condition: SetCondition::Always,
        get: false,
        expiry: SetExpiry::Clear,
    };
    let encoded = set(&short).encode();
    let Ok(KvCommand::Set { key, value, .. }) = KvCommand::decode_shared(&encoded) else {
        panic!("a SET");
    };
    assert!(within(&key, &encoded) && within(&value, &encoded));
    let Ok(KvCommand::Set { key, value, .. }) = KvCommand::decode(&encoded) else {
        panic!("a SET");
    };
    assert!(!within(&key, &encoded) && !within(&value, &encoded));
    let encoded = set(&long).encode();
    let Ok(KvCommand::Set { key, value, .. }) = KvCommand::decode_shared(&encoded) else {
        panic!("a SET");
    };
    assert!(within(&key, &encoded) && !within(&value, &encoded));
    let rpush = KvCommand::Push {
        key: Bytes::from_static(b"list"),
        end: ListEnd::Right,
        values: vec![Bytes::from_static(b"element")],
    };
    let encoded = rpush.encode();
    let Ok(KvCommand::Push { key, values, .. }) = KvCommand::decode_shared(&encoded) else {
        panic!("a push");
    };
    assert!(!within(&key, &encoded) && !within(&values[0], &encoded));
}

#[test]
fn decode_errors_are_specific() {
    assert_eq!(KvCommand::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(
        KvCommand::decode(&[99, 1]),
        Err(DecodeError::UnsupportedVersion(99))
    );
    assert!(matches!(
        KvCommand::decode(&[COMMAND_FORMAT_VERSION, 250]),
        Err(DecodeError::UnknownTag { tag: 250, .. })
    ));
    let mut trailing = KvCommand::DbSize.encode().to_vec();
    trailing.push(0);
    assert_eq!(
        KvCommand::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
    // A huge element count with no elements behind it fails before any
    // allocation of that size.
    let mut huge = vec![COMMAND_FORMAT_VERSION, 8];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(KvCommand::decode(&huge), Err(DecodeError::Truncated));
}

#[test]
fn undecodable_command_reply_text() {
    let mut store = Store::new();
    let reply = decode_reply(&store.apply(&[7, 7, 7], &ctx(1, 0))).unwrap();
    assert_eq!(
        reply,
        err("ERR undecodable command: unsupported format version 7")
    );
}

/// A script's instruction budget travels in its log entry (issue 16's dry
/// run raised it): a new entry decodes with its own budget, and an entry of
/// the releases before it (no budget) with theirs, so a replay stops a
/// script where the release that applied it did.
#[test]
fn a_scripts_budget_travels_in_the_log() {
    use synod_kv::scripting::{EvalCommand, APPLY_LIMITS, LEGACY_INSTRUCTIONS_MAX};
    let eval = |instructions_max| {
        KvCommand::Eval(Box::new(EvalCommand {
            instructions_max,
            script: Bytes::from_static(b"return 1"),
            keys: vec![Bytes::from_static(b"k")],
            args: vec![],
            read_only: false,
            function: Some(Bytes::from_static(b"f")),
            user: Some(Bytes::from_static(b"alice")),
        }))
    };
    for budget in [APPLY_LIMITS.instructions_max, LEGACY_INSTRUCTIONS_MAX, 7] {
        let command = eval(budget);
        assert_eq!(KvCommand::decode(&command.encode()), Ok(command));
    }
    // The legacy form is the form of the releases before: no budget tag.
    let legacy = eval(LEGACY_INSTRUCTIONS_MAX).encode();
    let new = eval(APPLY_LIMITS.instructions_max).encode();
    assert_eq!(new.len(), legacy.len() + 9);
    assert_eq!(&new[new.len() - legacy.len() + 1..], &legacy[1..]);
    // A budget with no script after it is refused, not applied.
    let mut bad = new[..new.len() - legacy.len() + 1].to_vec();
    bad.extend_from_slice(
        &KvCommand::Get {
            key: Bytes::from_static(b"k"),
        }
        .encode()[1..],
    );
    assert!(KvCommand::decode(&bad).is_err());
    // Nor is a chain of budgets (one per entry, never nested).
    let mut chained = new[..1].to_vec();
    for _ in 0..200_000 {
        chained.extend_from_slice(&eval(LEGACY_INSTRUCTIONS_MAX + 1).encode()[1..10]);
    }
    chained.extend_from_slice(&legacy[1..]);
    assert!(KvCommand::decode(&chained).is_err());
    // Nor a budget past the largest a log entry may carry.
    let huge = eval(synod_kv::scripting::INSTRUCTIONS_MAX_LOGGED + 1).encode();
    assert!(KvCommand::decode(&huge).is_err());
}

/// A blocking pop wraps one pop: a chain of blocking-pop tags is refused
/// before it is decoded recursively (a long one would overflow the stack of
/// every replica applying the entry).
#[test]
fn a_chain_of_blocking_pops_is_refused() {
    let args: Vec<Bytes> = ["BLPOP", "k", "0"]
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    let command = parse(&args).expect("parses");
    assert!(matches!(command, KvCommand::Blocking { .. }), "{command:?}");
    let one = command.encode();
    assert_eq!(KvCommand::decode(&one), Ok(command));
    // Deep enough to overflow a thread's stack if decoded recursively.
    let mut chained = one[..1].to_vec();
    for _ in 0..200_000 {
        chained.extend_from_slice(&one[1..3]);
    }
    chained.extend_from_slice(&one[1..]);
    assert!(KvCommand::decode(&chained).is_err());
}

/// Batches of random commands (string writes on a few keys with values
/// around the inline limit, and any generated command) answer as `apply`
/// does and keep nothing of the log value after `apply_batch`: the guard on
/// `decode_shared`'s zero-copy slices (nothing in the types stops a change
/// from keeping one). From the review of that change.
mod batch_retention {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Tracked(Vec<u8>, Arc<AtomicBool>);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    fn key() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            Just(Bytes::from_static(b"a")),
            Just(Bytes::from_static(b"b")),
            Just(Bytes::new()),
            Just(Bytes::from(vec![b'k'; 1024])),
            Just(Bytes::from(vec![b'k'; 1025])),
        ]
    }

    fn value() -> impl Strategy<Value = Bytes> {
        prop_oneof![0usize..3, 1022usize..1027].prop_map(|len| Bytes::from(vec![b'v'; len]))
    }

    fn string_write() -> BoxedStrategy<KvCommand> {
        let condition = prop_oneof![
            Just(SetCondition::Always),
            Just(SetCondition::IfAbsent),
            Just(SetCondition::IfPresent)
        ];
        let expiry = prop_oneof![
            Just(SetExpiry::Clear),
            Just(SetExpiry::Keep),
            (-1i64..3_000).prop_map(|ttl_ms| SetExpiry::After { ttl_ms }),
            (-1i64..3_000).prop_map(|unix_ms| SetExpiry::At { unix_ms }),
        ];
        prop_oneof![
            (key(), value(), condition, any::<bool>(), expiry).prop_map(
                |(key, value, condition, get, expiry)| KvCommand::Set {
                    key,
                    value,
                    condition,
                    get,
                    expiry
                }
            ),
            (key(), value()).prop_map(|(key, value)| KvCommand::SetNx { key, value }),
            (key(), value(), unit(), -1i64..3).prop_map(|(key, value, unit, ttl_ms)| {
                KvCommand::SetEx {
                    key,
                    value,
                    unit,
                    ttl_ms,
                }
            }),
            (key(), value()).prop_map(|(key, value)| KvCommand::GetSet { key, value }),
            key().prop_map(|key| KvCommand::Get { key }),
            key().prop_map(|key| KvCommand::Push {
                key,
                end: ListEnd::Left,
                values: vec![Bytes::from_static(b"x")]
            }),
        ]
        .boxed()
    }

    fn any_command() -> impl Strategy<Value = KvCommand> {
        prop_oneof![
            4 => string_write(),
            1 => prop::collection::vec(string_write(), 0..4).prop_map(KvCommand::Exec),
            2 => command(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// Arbitrary bytes, and bytes behind a string write's header (with
        /// length fields that point at, inside and past the end), decode
        /// alike both ways and never panic.
        #[test]
        fn shared_decoding_agrees_on_arbitrary_bytes(
            opcode in prop_oneof![Just(2u8), Just(3), Just(4), Just(5), any::<u8>()],
            key_len in prop_oneof![0u32..4, Just(u32::MAX), any::<u32>()],
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![COMMAND_FORMAT_VERSION, opcode];
            bytes.extend_from_slice(&key_len.to_le_bytes());
            bytes.extend_from_slice(&tail);
            for len in 0..=bytes.len() {
                let part = Bytes::copy_from_slice(&bytes[..len]);
                prop_assert_eq!(KvCommand::decode_shared(&part), KvCommand::decode(&part));
                // And as a slice in the middle of a larger value.
                let mut framed = vec![0xAA; 3];
                framed.extend_from_slice(&part);
                framed.extend_from_slice(&[0xBB; 3]);
                let framed = Bytes::from(framed);
                let inner = framed.slice(3..3 + len);
                prop_assert_eq!(KvCommand::decode_shared(&inner), KvCommand::decode(&part));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn batches_keep_nothing_and_answer_as_apply(
            batches in prop::collection::vec((prop::collection::vec(any_command(), 1..40), 0u64..4_000), 1..5)
        ) {
            let mut one = Store::new();
            let mut batched = Store::new();
            for (instance, (commands, time)) in batches.iter().enumerate() {
                let mut whole = Vec::new();
                let mut ranges = Vec::new();
                for command in commands {
                    let encoded = command.encode();
                    ranges.push(whole.len()..whole.len() + encoded.len());
                    whole.extend_from_slice(&encoded);
                }
                let c = ctx(instance as u64 + 1, *time);
                let expected: Vec<Bytes> = ranges.iter().map(|r| one.apply(&whole[r.clone()], &c)).collect();
                let dropped = Arc::new(AtomicBool::new(false));
                let value = Bytes::from_owner(Tracked(whole, dropped.clone()));
                let slices: Vec<Bytes> = ranges.into_iter().map(|r| value.slice(r)).collect();
                let batch: Vec<synod::BatchCommand<'_>> = slices
                    .iter()
                    .map(|command| synod::BatchCommand { command, ctx: c })
                    .collect();
                let got = batched.apply_batch(&batch);
                drop(batch);
                drop(slices);
                drop(value);
                prop_assert!(dropped.load(Ordering::SeqCst), "kept a slice of the log value");
                prop_assert_eq!(got, expected);
            }
            prop_assert_eq!(one.snapshot(), batched.snapshot());
            prop_assert!(batched.check_invariants().is_ok());
        }
    }
}
