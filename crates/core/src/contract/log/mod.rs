//! The event log contract: durable ordered appends per key, consumer groups with committed offsets, group
//! subscriptions and tails.

mod groups;

pub use groups::{members_share_partitions, tail_follows_from_now};

use crate::ports::{EventLog, OutgoingRecord, PartitionConsumer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn record(key: &str, payload: String) -> OutgoingRecord {
    OutgoingRecord {
        key: key.to_owned(),
        headers: vec![("event-type".into(), "test".into())],
        payload: payload.into_bytes(),
    }
}

/// Runs every check against a fresh, empty log with at least 2 partitions (each check is public too, for an adapter
/// that must run them apart, e.g. in separate tests).
pub async fn run_all(log: Arc<dyn EventLog>) {
    run_all_but_sharing(&log).await;
    groups::members_share_partitions(&log, "contract.groups").await;
}

/// Every check of [`run_all`] but [`members_share_partitions`], for a backend whose group coordinator is tested
/// apart.
pub async fn run_all_but_sharing(log: &Arc<dyn EventLog>) {
    appends_keep_per_key_order(log, "contract.order").await;
    consumers_resume_after_commit(log, "contract.commit").await;
    background_commits_land(log, "contract.background-commit").await;
    poll_wakes_on_append(log, "contract.wake").await;
    concurrent_appends_are_all_kept(log, "contract.concurrent").await;
    refuses_unknown_partition(log).await;
    groups::tail_follows_from_now(log, "contract.tail").await;
}

/// Appends keep per-key order at gap-free offsets from 0, batches included, and headers survive.
pub async fn appends_keep_per_key_order(log: &Arc<dyn EventLog>, topic: &str) {
    let mut expected: HashMap<u32, Vec<String>> = HashMap::new();
    for i in 0..30 {
        let key = format!("key-{}", i % 3);
        let position = log
            .append(topic, record(&key, format!("{key}/{i}")))
            .await
            .expect("append");
        let partition_records = expected.entry(position.partition).or_default();
        assert_eq!(
            position.offset,
            partition_records.len() as u64,
            "offsets are gap-free from 0 per partition"
        );
        partition_records.push(format!("{key}/{i}"));
    }
    let batch = log
        .append_batch(
            topic,
            vec![record("key-0", "b1".into()), record("key-0", "b2".into())],
        )
        .await
        .expect("batch");
    assert_eq!(
        batch[1].offset,
        batch[0].offset + 1,
        "a batch keeps its order"
    );
    expected
        .entry(batch[0].partition)
        .or_default()
        .extend(["b1".to_owned(), "b2".to_owned()]);

    for (partition, payloads) in expected {
        let mut consumer = log
            .consumer("contract", topic, partition)
            .await
            .expect("consumer");
        let mut read = Vec::new();
        while read.len() < payloads.len() {
            let records = consumer
                .poll(7, Duration::from_secs(5))
                .await
                .expect("poll");
            assert!(!records.is_empty(), "records appended before are readable");
            for r in records {
                assert_eq!(r.partition, partition);
                assert_eq!(r.header("event-type"), Some("test"), "headers survive");
                read.push(String::from_utf8(r.payload).unwrap());
            }
        }
        assert_eq!(
            read, payloads,
            "a partition returns records in append order"
        );
    }
}

/// Appends ten records with one key to `topic`; returns their partition and `group`'s consumer of it.
async fn ten_records_and_a_consumer(
    log: &Arc<dyn EventLog>,
    topic: &str,
    group: &str,
) -> (u32, Box<dyn PartitionConsumer>) {
    let positions = log
        .append_batch(
            topic,
            (0..10).map(|i| record("same-key", i.to_string())).collect(),
        )
        .await
        .expect("append");
    let partition = positions[0].partition;
    let consumer = log
        .consumer(group, topic, partition)
        .await
        .expect("consumer");
    (partition, consumer)
}

/// A group resumes after its committed offset, lag counts the rest, other groups keep their own offsets.
pub async fn consumers_resume_after_commit(log: &Arc<dyn EventLog>, topic: &str) {
    let (partition, mut consumer) = ten_records_and_a_consumer(log, topic, "group-a").await;
    let first = consumer
        .poll(4, Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(first.len(), 4, "poll returns at most max records");
    consumer.commit(first[3].offset + 1).await.expect("commit");
    assert_eq!(
        log.lag("group-a", topic).await.expect("lag")[partition as usize],
        6,
        "lag counts uncommitted records"
    );
    drop(consumer);

    let mut resumed = log
        .consumer("group-a", topic, partition)
        .await
        .expect("consumer");
    let next = resumed
        .poll(100, Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(
        next.first().map(|r| r.offset),
        Some(first[3].offset + 1),
        "a new consumer resumes after the committed offset"
    );
    let mut other_group = log
        .consumer("group-b", topic, partition)
        .await
        .expect("consumer");
    let everything = other_group
        .poll(100, Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(everything.len(), 10, "each group has its own offsets");
}

/// A commit in the background lands without anyone waiting for it, and a waited commit after others in the
/// background leaves its own offset.
pub async fn background_commits_land(log: &Arc<dyn EventLog>, topic: &str) {
    let (partition, mut consumer) = ten_records_and_a_consumer(log, topic, "background").await;
    let partition = partition as usize;
    let all = consumer
        .poll(10, Duration::from_secs(5))
        .await
        .expect("poll");
    assert_eq!(all.len(), 10, "the ten records appended");
    consumer
        .commit_in_background(all[4].offset + 1)
        .expect("commit in the background");
    // Nothing tells when a commit in the background lands: the lag is read until it shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag = log.lag("background", topic).await.expect("lag")[partition];
        if lag == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a commit in the background lands (lag still {lag})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer
        .commit_in_background(all[7].offset + 1)
        .expect("commit in the background");
    consumer.commit(all[9].offset + 1).await.expect("commit");
    assert_eq!(
        log.lag("background", topic).await.expect("lag")[partition],
        0,
        "a waited commit leaves its own offset, whatever was committed in the background before it"
    );
}

/// A waiting poll wakes on an append, not on its timeout; an idle one times out empty.
pub async fn poll_wakes_on_append(log: &Arc<dyn EventLog>, topic: &str) {
    let partition = log
        .append(topic, record("k", "first".into()))
        .await
        .expect("append")
        .partition;
    let mut consumer = log
        .consumer("waker", topic, partition)
        .await
        .expect("consumer");
    assert_eq!(
        consumer
            .poll(10, Duration::from_secs(5))
            .await
            .expect("poll")
            .len(),
        1
    );
    let appender = log.clone();
    let topic_name = topic.to_owned();
    let started = Instant::now();
    let late = tokio::spawn(async move {
        appender
            .append(&topic_name, record("k", "second".into()))
            .await
    });
    let records = consumer
        .poll(10, Duration::from_secs(10))
        .await
        .expect("poll");
    late.await.unwrap().expect("append");
    assert_eq!(records.len(), 1, "a waiting poll returns the new record");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a waiting poll wakes on append, not on its timeout"
    );
    assert!(
        consumer
            .poll(10, Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty(),
        "an idle poll times out empty"
    );
}

/// Concurrent appends each get their own position and are all readable.
pub async fn concurrent_appends_are_all_kept(log: &Arc<dyn EventLog>, topic: &str) {
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let log = log.clone();
            let topic = topic.to_owned();
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..20 {
                    positions.push(
                        log.append(&topic, record(&format!("k{task}"), format!("{task}/{i}")))
                            .await
                            .expect("append"),
                    );
                }
                positions
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for task in tasks {
        for position in task.await.unwrap() {
            assert!(
                seen.insert((position.partition, position.offset)),
                "two appends got the same position"
            );
        }
    }
    let mut total = 0;
    for partition in 0..log.partition_count() {
        let mut consumer = log
            .consumer("counter", topic, partition)
            .await
            .expect("consumer");
        loop {
            let records = consumer
                .poll(1000, Duration::from_millis(20))
                .await
                .expect("poll");
            if records.is_empty() {
                break;
            }
            total += records.len();
        }
    }
    assert_eq!(total, 32 * 20, "every acknowledged append is readable");
}

/// A partition past the count is refused.
pub async fn refuses_unknown_partition(log: &Arc<dyn EventLog>) {
    assert!(
        log.consumer("g", "t", log.partition_count()).await.is_err(),
        "a partition past the count is refused"
    );
}
