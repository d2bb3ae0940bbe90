//! Round trips and hostile input for the binary codec.

use bytes::Bytes;
use proptest::prelude::*;
use synod_core::codec::{Decode, DecodeError, Encode};
use synod_core::*;

fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u32>()).prop_map(|(round, node)| Ballot {
        round,
        node: NodeId(node),
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6)
            .prop_map(|cs| { Value::batch(cs.into_iter().map(Bytes::from).collect()) }),
        (1u32..6, any::<bool>()).prop_map(|(n, learner)| {
            let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
            let m = Membership::bootstrap(&ids)
                .change(&MembershipChange::Add {
                    id: NodeId(n + 1),
                    addr: Bytes::from_static(b"10.0.0.9:7001 10.0.0.9:6379"),
                    promote: !learner,
                })
                .expect("a valid change");
            Value::Reconfig(std::sync::Arc::new(m))
        }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    let group = any::<u32>().prop_map(GroupId);
    let instance = any::<u64>().prop_map(InstanceId);
    prop_oneof![
        (group.clone(), ballot()).prop_map(|(group, ballot)| Record::Promise { group, ballot }),
        (group.clone(), instance.clone(), ballot(), value()).prop_map(
            |(group, instance, ballot, value)| Record::Accept {
                group,
                instance,
                ballot,
                value
            }
        ),
        (group.clone(), instance.clone(), ballot()).prop_map(|(group, instance, ballot)| {
            Record::Chosen {
                group,
                instance,
                value: ChosenValue::Accepted(ballot),
            }
        }),
        (group, instance, value()).prop_map(|(group, instance, value)| Record::Chosen {
            group,
            instance,
            value: ChosenValue::Learned(value),
        }),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let instance = any::<u64>().prop_map(InstanceId);
    let mark = (any::<u64>(), any::<u64>()).prop_map(|(i, c)| AppliedMark {
        applied_end: InstanceId(i),
        checksum: Checksum(c),
    });
    prop_oneof![
        (ballot(), instance.clone()).prop_map(|(ballot, first_instance)| Body::Prepare {
            ballot,
            first_instance
        }),
        (
            ballot(),
            (instance.clone(), instance.clone()),
            prop::collection::vec((instance.clone(), ballot(), value(), any::<bool>()), 0..4),
            prop::option::of(instance.clone()),
        )
            .prop_map(
                |(ballot, (compacted_end, first_instance), entries, more_from)| Body::Promise {
                    ballot,
                    compacted_end,
                    first_instance,
                    more_from,
                    entries: entries
                        .into_iter()
                        .map(|(instance, ballot, value, chosen)| PromiseEntry {
                            instance,
                            ballot,
                            value,
                            chosen
                        })
                        .collect(),
                }
            ),
        (ballot(), instance.clone(), value(), instance.clone()).prop_map(
            |(ballot, instance, value, chosen_end)| Body::Accept {
                ballot,
                instance,
                value,
                chosen_end
            }
        ),
        (ballot(), instance.clone())
            .prop_map(|(ballot, instance)| Body::Accepted { ballot, instance }),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Body::Reject { ballot, promised }),
        (ballot(), instance.clone(), mark.clone(), any::<u64>()).prop_map(
            |(ballot, chosen_end, applied, probe)| Body::Heartbeat {
                ballot,
                chosen_end,
                applied,
                probe,
            }
        ),
        (
            ballot(),
            instance.clone(),
            mark,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            prop_oneof![
                Just(Restoring::No),
                Just(Restoring::Yes),
                Just(Restoring::Declining),
                Just(Restoring::Rebuilding)
            ]
        )
            .prop_map(
                |(ballot, chosen_end, applied, probe, granted_ms, granted_drift_ppm, restoring)| {
                    Body::HeartbeatAck {
                        ballot,
                        chosen_end,
                        applied,
                        probe,
                        granted_ms,
                        granted_drift_ppm,
                        restoring,
                    }
                }
            ),
        (any::<u64>(), proptest::option::of(ballot()))
            .prop_map(|(id, vouch)| Body::ReadIndexRequest { id, vouch }),
        (any::<u64>(), instance.clone(), instance.clone()).prop_map(|(id, index, chosen_end)| {
            Body::ReadIndexReply {
                id,
                index,
                chosen_end,
            }
        }),
        (instance.clone(), any::<u64>()).prop_map(|(applied_end, digest)| Body::StateDigest {
            mark: StateMark {
                applied_end,
                digest
            }
        }),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..4).prop_map(|cs| {
            Body::Forward {
                commands: cs.into_iter().map(Bytes::from).collect(),
            }
        }),
        (instance.clone(), instance.clone())
            .prop_map(|(from, to)| Body::CatchupRequest { from, to }),
        prop::collection::vec((instance.clone(), value()), 0..4)
            .prop_map(|entries| Body::CatchupReply { entries }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u128>(),
            prop::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(
                |(i, c, total_len, offset, digest, data)| Body::SnapshotChunk {
                    meta: SnapshotMeta {
                        applied_end: InstanceId(i),
                        checksum: Checksum(c)
                    },
                    total_len,
                    digest: SnapshotDigest(digest),
                    offset,
                    data: Bytes::from(data),
                    memberships: (offset % 2 == 0).then(|| {
                        let m = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]);
                        let next = m
                            .change(&MembershipChange::Add {
                                id: NodeId(4),
                                addr: Bytes::from_static(b"127.0.0.1:7104"),
                                promote: true,
                            })
                            .expect("a valid change");
                        Schedule::from_entries(vec![
                            Scheduled {
                                from: InstanceId(0),
                                membership: std::sync::Arc::new(m),
                            },
                            Scheduled {
                                from: InstanceId(i % 1000 + 1),
                                membership: std::sync::Arc::new(next),
                            },
                        ])
                        .expect("a valid schedule")
                    }),
                }
            ),
        (any::<u64>(), any::<u32>(), 0u8..5, any::<bool>()).prop_map(|(token, id, kind, force)| {
            let id = NodeId(id);
            let op = match kind {
                0 => MemberOp::Transfer { to: id },
                1 => MemberOp::Change {
                    change: MembershipChange::Promote { id },
                    force,
                },
                2 => MemberOp::Change {
                    change: MembershipChange::Remove { id },
                    force,
                },
                _ => MemberOp::Change {
                    change: MembershipChange::Add {
                        id,
                        addr: Bytes::from_static(b"paxos=127.0.0.1:7104 resp=127.0.0.1:7004"),
                        promote: kind == 3,
                    },
                    force,
                },
            };
            Body::MemberRequest { token, op }
        }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(token, epoch, ok)| {
            Body::MemberReply {
                token,
                outcome: if ok {
                    Ok(epoch)
                } else {
                    Err("not the leader".to_string())
                },
            }
        }),
        (ballot(), any::<u32>()).prop_map(|(ballot, to)| Body::TakeOver {
            ballot,
            to: NodeId(to)
        }),
        (instance.clone(), any::<u64>()).prop_map(|(applied_end, offset)| Body::SnapshotRequest {
            applied_end,
            offset
        }),
        Just(Body::StateQuery),
        (any::<bool>(), ballot(), instance).prop_map(|(rebuilding, promised, log_end)| {
            Body::StateReport {
                rebuilding,
                promised,
                log_end,
            }
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u32>(), any::<u32>(), any::<u32>(), body()).prop_map(|(g, f, t, body)| Message {
        group: GroupId(g),
        from: NodeId(f),
        to: NodeId(t),
        body,
    })
}

proptest! {
    #[test]
    fn records_round_trip(record in record()) {
        let bytes = record.to_bytes();
        prop_assert_eq!(Record::from_bytes(bytes.clone()), Ok(record));
        // Every strict prefix is refused, never misread.
        for cut in 0..bytes.len() {
            prop_assert!(Record::from_bytes(bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(synod_core::codec::encoded_len(&msg), bytes.len());
        if let Body::Accept { value, .. } = &msg.body {
            prop_assert_eq!(value.encoded_len(), value.to_bytes().len());
        }
        prop_assert_eq!(Message::from_bytes(bytes.clone()), Ok(msg));
        for cut in 0..bytes.len() {
            prop_assert!(Message::from_bytes(bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::from_bytes(Bytes::from(bytes.clone()));
        let _ = Record::from_bytes(Bytes::from(bytes));
    }
}

#[test]
fn a_huge_count_is_refused_before_allocating() {
    // A Forward claiming 4 billion commands in a 20-byte frame.
    let mut bytes = vec![0u8; 12];
    bytes.push(8);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = Message::from_bytes(Bytes::from(bytes)).unwrap_err();
    assert!(matches!(err, DecodeError::CountTooLarge { .. }), "{err}");
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = Value::Noop.to_bytes().to_vec();
    bytes.push(0);
    assert_eq!(
        Value::from_bytes(Bytes::from(bytes)),
        Err(DecodeError::Trailing(1))
    );
}

#[test]
fn a_read_request_with_a_bad_vouch_tag_is_refused() {
    let msg = Message {
        group: GroupId(0),
        from: NodeId(2),
        to: NodeId(1),
        body: Body::ReadIndexRequest { id: 5, vouch: None },
    };
    let mut bytes = msg.to_bytes().to_vec();
    let tag = bytes.len() - 1;
    assert_eq!(
        bytes[tag], 0,
        "the option tag ends a request without a vouch"
    );
    bytes[tag] = 2;
    let err = Message::from_bytes(Bytes::from(bytes.clone())).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnknownTag {
                what: "option",
                tag: 2
            }
        ),
        "{err}"
    );
    // A vouch announced but cut short.
    bytes[tag] = 1;
    let err = Message::from_bytes(Bytes::from(bytes)).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
}
