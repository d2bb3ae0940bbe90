//! Shared generators for the storage tests.
#![allow(dead_code)]

use bytes::Bytes;
use proptest::prelude::*;
use synod_core::*;

pub fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4)
            .prop_map(|cs| Value::batch(cs.into_iter().map(Bytes::from).collect())),
    ]
}

pub fn record(groups: u32) -> impl Strategy<Value = Record> {
    let group = (0..groups).prop_map(GroupId);
    let ballot = (0..100u64, 0..5u32).prop_map(|(round, node)| Ballot {
        round,
        node: NodeId(node),
    });
    prop_oneof![
        (group.clone(), ballot.clone())
            .prop_map(|(group, ballot)| Record::Promise { group, ballot }),
        (group.clone(), 0..1000u64, ballot, value()).prop_map(|(group, i, ballot, value)| {
            Record::Accept {
                group,
                instance: InstanceId(i),
                ballot,
                value,
            }
        }),
        (group, 0..1000u64, value()).prop_map(|(group, i, value)| Record::Chosen {
            group,
            instance: InstanceId(i),
            value: ChosenValue::Learned(value),
        }),
    ]
}

pub fn snapshot(applied_end: u64, data: &[u8]) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            applied_end: InstanceId(applied_end),
            checksum: Checksum(applied_end * 31 + 7),
        },
        data: Bytes::copy_from_slice(data),
    }
}

/// A record that depends only on `i` (an Accept at instance `i`).
pub fn fixed_record(i: u64) -> Record {
    Record::Accept {
        group: synod_core::GroupId(0),
        instance: synod_core::InstanceId(i),
        ballot: synod_core::Ballot {
            round: 1,
            node: synod_core::NodeId(1),
        },
        value: Value::batch(vec![bytes::Bytes::from(format!("command {i}"))]),
    }
}
