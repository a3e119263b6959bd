//! The event log contract on Kafka: always on rdkafka's in-process MockCluster, and on a real broker (tansu, started
//! by `scripts/servers/tansu.sh`) when `CHAT4ALL_TEST_KAFKA_URL` is set. Plus what a distributed log must show
//! beyond the suite: an acknowledged append is on the broker, and per-key order holds across partitions.

use async_trait::async_trait;
use chat4all_core::contract;
use chat4all_core::ports::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, Rebalance, RecordPosition,
    Tail, partition_for,
};
use chat4all_kafka::{KafkaLog, KafkaOptions};
use rdkafka::mocking::MockCluster;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// MockCluster creates topics on first use with 4 partitions (it has no CreateTopics).
const MOCK_PARTITIONS: u32 = 4;

fn mock_url(cluster: &MockCluster<'_, impl rdkafka::ClientContext>) -> String {
    format!(
        "kafka://{}?partitions={MOCK_PARTITIONS}",
        cluster.bootstrap_servers()
    )
}

fn real_url() -> Option<String> {
    contract::servers::url("CHAT4ALL_TEST_KAFKA_URL")
}

/// A unique name suffix, so runs against a long-lived broker never meet an earlier run's topics or groups.
fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// The log with every topic and group name prefixed: the contract suite's fixed names become fresh ones on a
/// broker that keeps topics and groups between runs (on tansu a group whose members all left may never
/// reassign, so a group is never reused).
struct Prefixed {
    inner: Arc<KafkaLog>,
    prefix: String,
}

impl Prefixed {
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

#[async_trait]
impl EventLog for Prefixed {
    fn partition_count(&self) -> u32 {
        self.inner.partition_count()
    }

    async fn append_batch(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        self.inner.append_batch(&self.name(topic), records).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<Box<dyn GroupMember>, LogError> {
        self.inner
            .subscribe(&self.name(group), &self.name(topic), member)
            .await
    }

    async fn consumer(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Box<dyn PartitionConsumer>, LogError> {
        self.inner
            .consumer(&self.name(group), &self.name(topic), partition)
            .await
    }

    async fn tail(&self, topic: &str) -> Result<Box<dyn Tail>, LogError> {
        self.inner.tail(&self.name(topic)).await
    }

    async fn lag(&self, group: &str, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.lag(&self.name(group), &self.name(topic)).await
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.inner.ping().await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

fn prefixed(log: Arc<KafkaLog>) -> Arc<dyn EventLog> {
    Arc::new(Prefixed {
        inner: log,
        prefix: format!("t{}.", fresh()),
    })
}

#[tokio::test]
async fn mock_cluster_meets_the_event_log_contract() {
    let cluster = MockCluster::new(1).unwrap();
    let log = Arc::new(KafkaLog::connect(&mock_url(&cluster), KafkaOptions::default()).unwrap());
    log.ping().await.expect("the mock cluster answers");
    let shared: Arc<dyn EventLog> = log.clone();
    contract::log::run_all_but_sharing(&shared).await;
    members_share_partitions_despite_the_mock_sync_race(&shared).await;
    log.close().await;
    assert!(
        matches!(log.ping().await, Err(LogError::Closed)),
        "a closed log refuses work"
    );
}

/// The suite's group check on MockCluster, tried again on a fresh topic and group (three tries at most) when it
/// meets a race of the mock's coordinator, not of the adapter. librdkafka 2.12.1's mock completes a sync once the
/// assignments it holds cover every member (`rd_kafka_mock_cgrp_classic_sync_check`), and the leader's SyncGroup
/// carries them all: when it arrives before the other member's, that member's SyncGroup meets a group already up
/// and is refused (INVALID_REQUEST); the member rejoins, and the rebalance it starts goes on without the first
/// member, which is still inside its revoke, so the first member's commit of a revoked partition fails with
/// IllegalGeneration (seen in its `cgrp` debug trace, 1 run in 8 under load). A real broker answers each
/// member's SyncGroup. Any other failure, or this one three times, fails the test.
async fn members_share_partitions_despite_the_mock_sync_race(log: &Arc<dyn EventLog>) {
    const TRIES: usize = 3;
    for attempt in 1..=TRIES {
        let (log, topic) = (log.clone(), format!("contract.groups.{attempt}"));
        let check =
            tokio::spawn(
                async move { contract::log::members_share_partitions(&log, &topic).await },
            );
        let Err(failure) = check.await else { return };
        let payload = failure.into_panic();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        if attempt == TRIES || !message.contains("IllegalGeneration") {
            std::panic::resume_unwind(payload);
        }
        eprintln!("try {attempt} met the mock's sync race ({message}); again on a fresh topic");
    }
}

/// Every check of the suite but one on tansu. Left out: `members_share_partitions`, run apart below and ignored by
/// default, because tansu 0.6.0's group coordinator breaks the cooperative protocol's second round now and then
/// (see that test).
#[tokio::test]
async fn tansu_meets_the_event_log_contract() {
    let Some(url) = real_url() else { return };
    let log = Arc::new(KafkaLog::connect(&url, KafkaOptions::default()).unwrap());
    log.ping().await.expect("the broker answers");
    let log = prefixed(log);
    contract::log::run_all_but_sharing(&log).await;
    log.close().await;
}

/// The suite's group check on tansu. Ignored by default: it passes on most quiet runs but fails now and then
/// (2 of 23 single runs, about half when another client loads the broker) with "the new member got no rebalance
/// event in time", and librdkafka's `cgrp` debug trace shows why: after the first member revokes and rejoins
/// (the cooperative protocol's second round), tansu completes that generation with the first member alone while
/// the second is still syncing the previous one, then holds each later JoinGroup ~3 s while the other member's
/// SyncGroup gets REBALANCE_IN_PROGRESS, so the new member's partitions arrive well after the suite's 10 s (Apache
/// Kafka fails a stale SyncGroup so the member rejoins at once). MockCluster runs it, with a race of its own.
/// Run it with `cargo test -p chat4all-kafka --test contract -- --ignored tansu_group`.
#[tokio::test]
#[ignore = "tansu 0.6.0's coordinator races the cooperative second round; see the doc comment"]
async fn tansu_group_members_share_partitions() {
    let Some(url) = real_url() else { return };
    let log = prefixed(Arc::new(
        KafkaLog::connect(&url, KafkaOptions::default()).unwrap(),
    ));
    contract::log::members_share_partitions(&log, "contract.groups").await;
    log.close().await;
}

fn record(key: &str, payload: String) -> OutgoingRecord {
    OutgoingRecord {
        key: key.to_owned(),
        headers: vec![("event-type".into(), "test".into())],
        payload: payload.into_bytes(),
    }
}

/// Every record of `topic`, per partition, read by a brand-new consumer (a group nobody used) of `log`.
async fn read_everything(
    log: &Arc<dyn EventLog>,
    topic: &str,
    expected: usize,
) -> BTreeMap<u32, Vec<(u64, String, String)>> {
    let mut read = BTreeMap::new();
    let mut total = 0;
    for partition in 0..log.partition_count() {
        let mut consumer = log
            .consumer(&format!("reader-{}", fresh()), topic, partition)
            .await
            .expect("consumer");
        let mut records: Vec<(u64, String, String)> = Vec::new();
        loop {
            let batch = consumer
                .poll(500, Duration::from_millis(500))
                .await
                .expect("poll");
            if batch.is_empty() && (total + records.len() >= expected || !records.is_empty()) {
                break;
            }
            if batch.is_empty() {
                // Nothing in this partition (or not yet fetched): one longer look before moving on.
                let late = consumer
                    .poll(500, Duration::from_secs(2))
                    .await
                    .expect("poll");
                if late.is_empty() {
                    break;
                }
                records.extend(
                    late.into_iter()
                        .map(|r| (r.offset, r.key, String::from_utf8(r.payload).unwrap())),
                );
                continue;
            }
            records.extend(
                batch
                    .into_iter()
                    .map(|r| (r.offset, r.key, String::from_utf8(r.payload).unwrap())),
            );
        }
        total += records.len();
        read.insert(partition, records);
    }
    read
}

/// An acknowledged append is on the broker: a second connection's fresh consumers read every record at the
/// position the append returned.
async fn acknowledged_appends_are_on_the_broker(
    writer: Arc<dyn EventLog>,
    reader: Arc<dyn EventLog>,
) {
    let topic = "acked";
    let records: Vec<OutgoingRecord> = (0..200)
        .map(|i| record(&format!("conv-{}", i % 17), format!("payload-{i}")))
        .collect();
    let positions = writer
        .append_batch(topic, records.clone())
        .await
        .expect("append");
    assert_eq!(positions.len(), records.len(), "one position per record");
    let read = read_everything(&reader, topic, records.len()).await;
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        records.len(),
        "every acknowledged record is readable by a fresh consumer"
    );
    for (record, position) in records.iter().zip(&positions) {
        assert_eq!(
            position.partition,
            partition_for(&record.key, writer.partition_count()),
            "a key lands in the partition partition_for names"
        );
        let stored = read[&position.partition]
            .iter()
            .find(|(offset, _, _)| *offset == position.offset)
            .expect("the record is at the position its append returned");
        assert_eq!(stored.1, record.key);
        assert_eq!(stored.2.as_bytes(), record.payload.as_slice());
    }
}

/// Concurrent appenders, each with its own keys, interleaved across batches: every key's records come back in
/// append order, all in one partition, and the keys spread over every partition.
async fn per_key_order_holds_across_partitions(log: Arc<dyn EventLog>) {
    let topic = "ordered";
    let (writers, keys_per_writer, rounds) = (4, 8, 12);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for round in 0..rounds {
                    let batch = (0..keys_per_writer)
                        .flat_map(|k| {
                            (0..3).map(move |j| {
                                record(
                                    &format!("w{w}-k{k}"),
                                    format!("w{w}-k{k}/{}", round * 3 + j),
                                )
                            })
                        })
                        .collect();
                    log.append_batch(topic, batch).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let expected = writers * keys_per_writer * rounds * 3;
    let read = read_everything(&log, topic, expected).await;
    let mut per_key: BTreeMap<String, (u32, Vec<usize>)> = BTreeMap::new();
    for (partition, records) in &read {
        let offsets: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "partition {partition} reads gap-free and in order"
        );
        for (_, key, payload) in records {
            let entry = per_key
                .entry(key.clone())
                .or_insert_with(|| (*partition, Vec::new()));
            assert_eq!(entry.0, *partition, "key {key} stays in one partition");
            let (_, n) = payload.rsplit_once('/').unwrap();
            entry.1.push(n.parse().unwrap());
        }
    }
    assert_eq!(
        per_key.len(),
        writers * keys_per_writer,
        "every key is read"
    );
    for (key, (_, sequence)) in &per_key {
        assert_eq!(
            sequence,
            &(0..rounds * 3).collect::<Vec<_>>(),
            "key {key} reads back complete and in append order"
        );
    }
    assert!(
        read.values().filter(|r| !r.is_empty()).count() > 1,
        "keys spread over several partitions"
    );
}

#[tokio::test]
async fn mock_cluster_acknowledges_only_what_it_has_and_keeps_per_key_order() {
    let cluster = MockCluster::new(1).unwrap();
    let url = mock_url(&cluster);
    let writer = Arc::new(KafkaLog::connect(&url, KafkaOptions::default()).unwrap());
    let reader = Arc::new(KafkaLog::connect(&url, KafkaOptions::default()).unwrap());
    acknowledged_appends_are_on_the_broker(writer.clone(), reader).await;
    per_key_order_holds_across_partitions(writer).await;
}

#[tokio::test]
async fn tansu_acknowledges_only_what_it_has_and_keeps_per_key_order() {
    let Some(url) = real_url() else { return };
    let prefix = format!("t{}.", fresh());
    let open = || {
        Arc::new(Prefixed {
            inner: Arc::new(KafkaLog::connect(&url, KafkaOptions::default()).unwrap()),
            prefix: prefix.clone(),
        }) as Arc<dyn EventLog>
    };
    acknowledged_appends_are_on_the_broker(open(), open()).await;
    per_key_order_holds_across_partitions(open()).await;
}

#[tokio::test]
async fn an_existing_topic_with_another_partition_count_is_refused() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("narrow", 2, 1).unwrap();
    let log = KafkaLog::connect(&mock_url(&cluster), KafkaOptions::default()).unwrap();
    let error = log
        .append("narrow", record("k", "x".into()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("has 2 partitions"),
        "got {error}"
    );
}

/// Appends of ~300 B records, one batch at a time, for about `for_how_long`; records per second.
async fn throughput(log: &KafkaLog, topic: &str, batch: usize, for_how_long: Duration) -> f64 {
    let payload = "x".repeat(300);
    let started = Instant::now();
    let mut appended = 0usize;
    let mut round = 0usize;
    while started.elapsed() < for_how_long {
        let records = (0..batch)
            .map(|i| {
                record(
                    &format!("conv-{}", (round * batch + i) % 1000),
                    payload.clone(),
                )
            })
            .collect();
        log.append_batch(topic, records).await.expect("append");
        appended += batch;
        round += 1;
    }
    appended as f64 / started.elapsed().as_secs_f64()
}

/// `cargo test -p chat4all-kafka --release --test contract -- --ignored --nocapture append_throughput`
/// (with `CHAT4ALL_TEST_KAFKA_URL` set for the tansu figures).
#[tokio::test]
#[ignore = "a measurement, not a check: run it with --ignored --nocapture"]
async fn append_throughput() {
    let cluster = MockCluster::new(1).unwrap();
    let mut targets = vec![("MockCluster".to_owned(), mock_url(&cluster))];
    if let Some(url) = real_url() {
        targets.push(("tansu".to_owned(), url));
    }
    for (name, url) in targets {
        let log = KafkaLog::connect(&url, KafkaOptions::default()).unwrap();
        let topic = format!("throughput-{}", fresh());
        log.append(&topic, record("k", "x".into()))
            .await
            .expect("warm-up");
        for batch in [1, 256] {
            let rate = throughput(&log, &topic, batch, Duration::from_secs(5)).await;
            println!(
                "append_batch throughput on {name}: batches of {batch:>3} x 300 B: {rate:>9.0} records/s"
            );
        }
        log.close().await;
    }
}

/// The partitions a member is assigned by events within `within`, until it holds `expected`; panics otherwise.
async fn assigned_within(
    member: &mut Box<dyn GroupMember>,
    expected: &BTreeSet<u32>,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    let mut held = BTreeSet::new();
    while &held != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, member.next_event()).await {
            Ok(Ok(Rebalance::Assigned(consumers))) => {
                held.extend(consumers.iter().map(|c| c.partition()))
            }
            Ok(Ok(Rebalance::Revoked(partitions))) => partitions.iter().for_each(|p| {
                held.remove(p);
            }),
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: holds {held:?} after {within:?}, expected {expected:?}"),
        }
    }
}

/// A stopping process closes its log: its members must leave their groups then, so that another member takes
/// their partitions over at once rather than after the session timeout (60 s here, far beyond the 15 s allowed).
/// On tansu: rdkafka's MockCluster does not reassign a group's partitions after its last member left.
#[tokio::test]
async fn closing_the_log_makes_its_members_leave_their_groups_at_once() {
    let Some(url) = real_url() else { return };
    let options = || KafkaOptions {
        session_timeout: Duration::from_secs(60),
        heartbeat: Some(Duration::from_millis(500)),
        ..KafkaOptions::default()
    };
    let leaving = KafkaLog::connect(&url, options()).unwrap();
    let staying = KafkaLog::connect(&url, options()).unwrap();
    let (topic, group) = (format!("leave.{}", fresh()), format!("leavers.{}", fresh()));
    let all: BTreeSet<u32> = (0..leaving.partition_count()).collect();
    let mut a = leaving.subscribe(&group, &topic, "a").await.unwrap();
    assigned_within(&mut a, &all, Duration::from_secs(15), "a lone member").await;
    // The process stops: its consumers end, then the log closes. A member that did not leave would keep every
    // partition until its session expired.
    leaving.close().await;
    let mut b = staying.subscribe(&group, &topic, "b").await.unwrap();
    assigned_within(&mut b, &all, Duration::from_secs(15), "the next member").await;
    drop(a);
    staying.close().await;
}
