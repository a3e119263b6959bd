//! Chat4All's distributed event log: the [`EventLog`] port on Apache Kafka (or any broker speaking its protocol,
//! such as tansu), through `rdkafka` and its bundled librdkafka.
//!
//! # URL
//! `kafka://host:port[,host:port…][?key=value&…]`, the keys overriding the [`KafkaOptions`] given to
//! [`KafkaLog::connect`] (default after the name):
//! - `partitions` = `8`: partitions of every topic; topics are created with it on first use (an existing topic
//!   with another count is refused, so [`EventLog::partition_count`] is always true);
//! - `replication` = `1`: replication factor of created topics;
//! - `session_timeout_ms` = `6000`: group session timeout, hence crash failover time (4500–6000 held steady on
//!   tansu; 3000 or less made groups rebalance in a loop under load);
//! - `heartbeat_ms` = `session timeout / 3`: group heartbeat interval;
//! - `fetch_wait_ms` = `100`: `fetch.wait.max.ms`, the longest a broker holds an empty fetch (latency floor);
//! - `linger_ms` = `1`: `linger.ms`, how long the producer waits to fill a batch;
//! - `delivery_timeout_ms` = `30000`: `message.timeout.ms`, after which an unacknowledged append fails and the api
//!   answers 503. On Apache Kafka 5000 is better (deploy/ sets it): a client retries with its Idempotency-Key
//!   rather than waiting on a broker that is down. Not on tansu 0.6: its storage panics when an idempotent producer
//!   resends after a timeout ("more or less than one row"), and the broker stops answering;
//! - `partitioner` = `fnv1a`: `fnv1a` places a key where [`partition_for`] says (as the embedded log does);
//!   `murmur2_random` uses librdkafka's Java-compatible hashing instead.
//!
//! # Mapping
//! - appends: an idempotent producer (`enable.idempotence=true`, `acks=all`); [`EventLog::append_batch`]
//!   returns once every record's delivery report arrived, with the positions from those reports (served by a
//!   thread of the producer's own, see `produce.rs`);
//! - subscriptions: a consumer per member in the group, `cooperative-sticky`, no auto-commit, `earliest` reset;
//!   rebalance callbacks become [`Rebalance`](chat4all_core::ports::Rebalance) events: an assignment splits each
//!   new partition into its own queue before `incremental_assign`; a revocation is announced, then the callback
//!   waits (at most the session timeout) until the member dropped the revoked partitions' consumers, so their
//!   last commit lands before `incremental_unassign` hands them over. librdkafka pauses every assigned partition
//!   while a callback runs, so a partition being revoked is read meanwhile by a side reader (the same group,
//!   never joined, assigned where the member stopped); commits are synchronous and go through the member,
//!   retried while the broker answers `REBALANCE_IN_PROGRESS`;
//! - [`EventLog::consumer`]: manual `assign` from the group's committed offset;
//! - [`EventLog::tail`]: manual `assign` of every partition at its high watermark, no group, no commits;
//! - [`EventLog::lag`]: the group's committed offsets against the high watermarks, read by one consumer per group
//!   kept for it.

mod groups;
mod options;
mod produce;
mod read;

pub use options::{KafkaOptions, Partitioner, parse_url};

use async_trait::async_trait;
use chat4all_core::ports::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, RecordPosition, Tail,
    partition_for,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

use produce::Producer;

/// How long metadata, watermark and offset requests may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn backend(error: impl std::fmt::Display) -> LogError {
    LogError::Backend(error.to_string())
}

/// State shared by the log and everything it hands out.
pub(crate) struct Shared {
    /// Becomes true once the log is closed.
    pub(crate) closed: watch::Sender<bool>,
    /// The polling thread of every group member with its stop flag. Closing the log stops them and waits until
    /// each has left its group: a process that exits before its members leave keeps their partitions unread until
    /// the broker ends their sessions.
    pub(crate) members: Mutex<Vec<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>>,
}

/// Locks `mutex`, also after a panic elsewhere (the data it guards stays consistent across one).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn check_open(&self) -> Result<(), LogError> {
        if *self.closed.borrow() {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The [`EventLog`] on a Kafka cluster.
pub struct KafkaLog {
    brokers: String,
    options: KafkaOptions,
    producer: Producer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist with the configured partition count.
    topics: Mutex<HashSet<String>>,
    /// Serialises topic creation, so concurrent first appends create a topic once.
    creating: tokio::sync::Mutex<()>,
    /// A consumer per group whose lag is measured, kept: a client made for each measurement (every few seconds)
    /// cost its threads, connections and metadata each time.
    lag_readers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.brokers)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects to the brokers of `url` (see the crate docs for its keys, which override `options`). Clients
    /// connect lazily: call [`EventLog::ping`] to check the cluster is there.
    pub fn connect(url: &str, options: KafkaOptions) -> Result<Self, LogError> {
        let (brokers, options) = parse_url(url, options)?;
        let producer = Producer::create(
            ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("client.id", "chat4all")
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("partitioner", "murmur2_random")
                .set("linger.ms", options.linger.as_millis().to_string())
                .set(
                    "message.timeout.ms",
                    options.delivery_timeout.as_millis().to_string(),
                ),
        )
        .map_err(backend)?;
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("client.id", "chat4all-admin")
            .create()
            .map_err(backend)?;
        let (closed, _) = watch::channel(false);
        Ok(Self {
            brokers,
            options,
            producer,
            admin,
            topics: Mutex::default(),
            creating: tokio::sync::Mutex::default(),
            lag_readers: Mutex::default(),
            shared: Arc::new(Shared {
                closed,
                members: Mutex::default(),
            }),
        })
    }

    /// The settings in effect (the URL's keys applied).
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// Consumer settings common to every reader of `group`.
    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "chat4all")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                self.options.fetch_wait.as_millis().to_string(),
            );
        config.set("group.id", group);
        config
    }

    fn check_partition(&self, partition: u32) -> Result<(), LogError> {
        if partition < self.options.partitions {
            Ok(())
        } else {
            Err(LogError::Invalid(format!(
                "partition {partition} does not exist: topics have {} partitions",
                self.options.partitions
            )))
        }
    }

    /// Makes sure `topic` exists with the configured partition count: created when missing (a topic that
    /// exists already is fine), then checked in the metadata.
    async fn ensure_topic(&self, topic: &str) -> Result<(), LogError> {
        self.shared.check_open()?;
        if self.known(topic) {
            return Ok(());
        }
        if topic.is_empty() {
            return Err(LogError::Invalid("a topic needs a name".into()));
        }
        let _creating = self.creating.lock().await;
        if self.known(topic) {
            return Ok(());
        }
        let partitions = i32::try_from(self.options.partitions).map_err(backend)?;
        let new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.options.replication),
        );
        let admin_options = AdminOptions::new()
            .operation_timeout(Some(REQUEST_TIMEOUT))
            .request_timeout(Some(REQUEST_TIMEOUT));
        let mut create_error = None;
        match self.admin.create_topics([&new_topic], &admin_options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) => create_error = Some(code.to_string()),
                    }
                }
            }
            // Brokers without CreateTopics (rdkafka's MockCluster) create topics on first use.
            Err(error) => create_error = Some(error.to_string()),
        }
        let found = self.partitions_of(topic).await?;
        match found {
            Some(found) if found == self.options.partitions => {
                self.lock_topics().insert(topic.to_owned());
                Ok(())
            }
            Some(found) => Err(LogError::Invalid(format!(
                "topic {topic:?} has {found} partitions, the log is configured with {}",
                self.options.partitions
            ))),
            None => Err(LogError::Backend(format!(
                "topic {topic:?} could not be created: {}",
                create_error.unwrap_or_else(|| "it never appeared in the metadata".into())
            ))),
        }
    }

    fn known(&self, topic: &str) -> bool {
        self.lock_topics().contains(topic)
    }

    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        lock(&self.topics)
    }

    /// The partition count of `topic` in the metadata, waiting a little for a new topic to show up.
    async fn partitions_of(&self, topic: &str) -> Result<Option<u32>, LogError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let producer = self.producer.clone();
            let name = topic.to_owned();
            let count = tokio::task::spawn_blocking(move || {
                let metadata = producer
                    .client()
                    .fetch_metadata(Some(&name), REQUEST_TIMEOUT)?;
                Ok::<_, KafkaError>(
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .map(|t| t.partitions().len() as u32)
                        .filter(|count| *count > 0),
                )
            })
            .await
            .map_err(backend)?
            .map_err(backend)?;
            if count.is_some() || tokio::time::Instant::now() >= deadline {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The consumer that reads `group`'s committed offsets, made on first use.
    fn lag_reader(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut readers = lock(&self.lag_readers);
        if let Some(reader) = readers.get(group) {
            return Ok(reader.clone());
        }
        let reader: Arc<BaseConsumer> =
            Arc::new(self.consumer_config(group).create().map_err(backend)?);
        readers.insert(group.to_owned(), reader.clone());
        Ok(reader)
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn partition_count(&self) -> u32 {
        self.options.partitions
    }

    async fn append_batch(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        self.ensure_topic(topic).await?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    })
                },
            );
            let (delivered, delivery) = oneshot::channel();
            let mut outgoing = BaseRecord::with_opaque_to(topic, Box::new(delivered))
                .key(record.key.as_bytes())
                .payload(record.payload.as_slice())
                .headers(headers);
            if self.options.partitioner == Partitioner::Fnv1a {
                outgoing =
                    outgoing.partition(partition_for(&record.key, self.options.partitions) as i32);
            }
            // Records go to the producer's queue in order; with idempotence, a partition keeps that order.
            loop {
                match self.producer.send(outgoing) {
                    Ok(()) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        outgoing = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(backend(error)),
                }
            }
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok((partition, offset))) => positions.push(RecordPosition {
                    partition: u32::try_from(partition).map_err(backend)?,
                    offset: u64::try_from(offset).map_err(backend)?,
                }),
                Ok(Err(error)) => return Err(backend(error)),
                Err(_) => return Err(LogError::Closed),
            }
        }
        Ok(positions)
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<Box<dyn GroupMember>, LogError> {
        self.ensure_topic(topic).await?;
        let mut config = self.consumer_config(group);
        config
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                self.options.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                self.options.heartbeat_interval().as_millis().to_string(),
            )
            .set("client.id", format!("chat4all-{member}"));
        let member = groups::join(
            self.shared.clone(),
            config,
            self.consumer_config(group),
            topic,
            member,
            self.options.session_timeout,
        )?;
        Ok(Box::new(member))
    }

    async fn consumer(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Box<dyn PartitionConsumer>, LogError> {
        self.check_partition(partition)?;
        self.ensure_topic(topic).await?;
        let (shared, config, name) = (
            self.shared.clone(),
            self.consumer_config(group),
            topic.to_owned(),
        );
        let consumer = tokio::task::spawn_blocking(move || {
            read::open_manual(shared, config, &name, partition, None, REQUEST_TIMEOUT)
        })
        .await
        .map_err(backend)??;
        Ok(Box::new(consumer))
    }

    async fn tail(&self, topic: &str) -> Result<Box<dyn Tail>, LogError> {
        self.ensure_topic(topic).await?;
        let (shared, config, name, partitions) = (
            self.shared.clone(),
            // librdkafka assigns only with a group id; this one is never joined nor committed to.
            self.consumer_config(&format!("chat4all-tail-{}", uuid::Uuid::new_v4().simple())),
            topic.to_owned(),
            self.options.partitions,
        );
        let tail = tokio::task::spawn_blocking(move || {
            read::open_tail(shared, config, &name, partitions, REQUEST_TIMEOUT)
        })
        .await
        .map_err(backend)??;
        Ok(Box::new(tail))
    }

    async fn lag(&self, group: &str, topic: &str) -> Result<Vec<u64>, LogError> {
        self.ensure_topic(topic).await?;
        let (name, partitions) = (topic.to_owned(), self.options.partitions);
        let consumer = self.lag_reader(group)?;
        tokio::task::spawn_blocking(move || {
            read::serve_main_queue(&consumer);
            let mut list = TopicPartitionList::new();
            for partition in 0..partitions {
                list.add_partition(&name, partition as i32);
            }
            let committed = consumer
                .committed_offsets(list, REQUEST_TIMEOUT)
                .map_err(backend)?;
            (0..partitions)
                .map(|partition| {
                    let (low, high) = consumer
                        .fetch_watermarks(&name, partition as i32, REQUEST_TIMEOUT)
                        .map_err(backend)?;
                    let from = match committed
                        .find_partition(&name, partition as i32)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(offset)) => offset.max(low),
                        _ => low,
                    };
                    Ok(u64::try_from(high - from).unwrap_or_default())
                })
                .collect()
        })
        .await
        .map_err(backend)?
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.shared.check_open()?;
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|_| ())
        })
        .await
        .map_err(backend)?
        .map_err(backend)
    }

    async fn close(&self) {
        self.shared.closed.send_replace(true);
        let members = std::mem::take(&mut *lock(&self.shared.members));
        for (stop, _) in &members {
            stop.store(true, Ordering::Release);
        }
        let left = tokio::task::spawn_blocking(move || {
            for (_, thread) in members {
                let _ = thread.join();
            }
        });
        if tokio::time::timeout(REQUEST_TIMEOUT, left).await.is_err() {
            tracing::warn!("kafka: group members did not leave their groups in time");
        }
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(REQUEST_TIMEOUT)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "kafka: flushing the producer on close");
        }
    }
}
