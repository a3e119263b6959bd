//! Group subscriptions and tails: partitions shared without overlap, handed over only after the owner's commit,
//! and tails that follow every partition from the moment they start.

use super::record;
use crate::ports::{EventLog, GroupMember, PartitionConsumer, Rebalance, Record, partition_for};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a rebalance or a poll may take before the check fails (a deadline, not a synchronisation).
const DEADLINE: Duration = Duration::from_secs(10);

type Owned = BTreeMap<u32, Box<dyn PartitionConsumer>>;

async fn next_event(member: &mut Box<dyn GroupMember>, who: &str) -> Rebalance {
    tokio::time::timeout(DEADLINE, member.next_event())
        .await
        .unwrap_or_else(|_| panic!("{who} got no rebalance event in time"))
        .expect("next_event")
}

/// Assignments until `member` owns `expected` (an adapter may hand partitions over one by one).
async fn assigned(member: &mut Box<dyn GroupMember>, who: &str, expected: &BTreeSet<u32>) -> Owned {
    let mut owned = Owned::new();
    while owned.len() < expected.len() {
        match next_event(member, who).await {
            Rebalance::Assigned(consumers) => {
                for consumer in consumers {
                    let partition = consumer.partition();
                    assert!(
                        expected.contains(&partition),
                        "{who} got partition {partition}, not expected"
                    );
                    assert!(
                        owned.insert(partition, consumer).is_none(),
                        "{who} got partition {partition} twice"
                    );
                }
            }
            other => panic!("{who} expected an assignment, got {other:?}"),
        }
    }
    owned
}

/// One key per partition, so a test can write to each.
fn keys(partitions: u32) -> Vec<String> {
    let mut keys = vec![String::new(); partitions as usize];
    let mut found = 0;
    for i in 0.. {
        let key = format!("key-{i}");
        let slot = &mut keys[partition_for(&key, partitions) as usize];
        if slot.is_empty() {
            *slot = key;
            found += 1;
            if found == partitions {
                break;
            }
        }
    }
    keys
}

/// Appends `count` records to every partition, payloads `<prefix>/<partition>/<i>`.
async fn fill(log: &Arc<dyn EventLog>, topic: &str, prefix: &str, count: usize) {
    let records = keys(log.partition_count())
        .iter()
        .enumerate()
        .flat_map(|(p, key)| (0..count).map(move |i| record(key, format!("{prefix}/{p}/{i}"))))
        .collect();
    log.append_batch(topic, records).await.expect("append");
}

async fn poll_exactly(consumer: &mut Box<dyn PartitionConsumer>, count: usize) -> Vec<Record> {
    let records = consumer.poll(count, DEADLINE).await.expect("poll");
    assert_eq!(
        records.len(),
        count,
        "the records appended are there to read"
    );
    records
}

/// Two members split the partitions; a revoked partition moves only once its owner committed and let go; a
/// member that leaves hands its partitions over, resumed from its last commit. The group is named after `topic`.
pub async fn members_share_partitions(log: &Arc<dyn EventLog>, topic: &str) {
    let all: BTreeSet<u32> = (0..log.partition_count()).collect();
    let group = format!("{topic}.sharing");
    let mut a = log
        .subscribe(&group, topic, "member-a")
        .await
        .expect("subscribe");
    let mut a_owned = assigned(&mut a, "a lone member, owning every partition,", &all).await;
    fill(log, topic, "r", 5).await;

    let mut b = log
        .subscribe(&group, topic, "member-b")
        .await
        .expect("subscribe");
    let Rebalance::Revoked(revoked) = next_event(&mut a, "the first member").await else {
        panic!(
            "a member joining revokes some of the first member's partitions before assigning them"
        );
    };
    let revoked: BTreeSet<u32> = revoked.into_iter().collect();
    assert!(
        !revoked.is_empty() && revoked != all,
        "two members share the partitions"
    );
    for partition in &revoked {
        // The owner finishes its batch and commits while the partition is still its own.
        let consumer = a_owned
            .get_mut(partition)
            .expect("revoked partitions were owned");
        let batch = poll_exactly(consumer, 3).await;
        consumer.commit(batch[2].offset + 1).await.expect("commit");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b.next_event())
            .await
            .is_err(),
        "a revoked partition is not handed over while its owner still holds it"
    );
    a_owned.retain(|p, _| !revoked.contains(p));
    // Exactly what was revoked: no partition has two owners, every one has an owner.
    let mut b_owned = assigned(&mut b, "the new member", &revoked).await;
    for consumer in b_owned.values_mut() {
        let batch = poll_exactly(consumer, 2).await;
        assert_eq!(
            batch[0].offset, 3,
            "the new owner starts right after the old owner's commit"
        );
        consumer.commit(batch[0].offset + 1).await.expect("commit");
    }

    // b leaves with offset 4 of its partitions read but not committed.
    drop(b_owned);
    drop(b);
    let back = assigned(
        &mut a,
        "the remaining member, taking the leaver's partitions,",
        &revoked,
    )
    .await;
    for (_, mut consumer) in back {
        let replayed = poll_exactly(&mut consumer, 1).await;
        assert_eq!(
            replayed[0].offset, 4,
            "only the uncommitted tail is replayed, nothing is skipped"
        );
    }
}

/// A tail reads nothing from before it started, then every later record of every partition, in order.
pub async fn tail_follows_from_now(log: &Arc<dyn EventLog>, topic: &str) {
    fill(log, topic, "before", 3).await;
    let mut tail = log.tail(topic).await.expect("tail");
    assert!(
        tail.poll(100, Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty(),
        "a tail skips what was appended before it started"
    );
    let appender = log.clone();
    let topic_name = topic.to_owned();
    let late = tokio::spawn(async move { fill(&appender, &topic_name, "after", 4).await });
    let expected = log.partition_count() as usize * 4;
    let mut read: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    while total < expected {
        let records = tail.poll(3, DEADLINE).await.expect("poll");
        assert!(!records.is_empty(), "a waiting tail wakes on append");
        total += records.len();
        for r in records {
            read.entry(r.partition)
                .or_default()
                .push(String::from_utf8(r.payload).unwrap());
        }
    }
    late.await.unwrap();
    assert_eq!(
        read.len(),
        log.partition_count() as usize,
        "a tail reads every partition"
    );
    for (partition, payloads) in read {
        let in_order: Vec<String> = (0..4).map(|i| format!("after/{partition}/{i}")).collect();
        assert_eq!(
            payloads, in_order,
            "a tail keeps per-partition order and reads only later records"
        );
    }
}
