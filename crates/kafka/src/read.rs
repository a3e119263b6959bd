//! Reading: partition queues polled without blocking a runtime thread, the manual-assign consumer and the tail.

use crate::{Shared, backend};
use async_trait::async_trait;
use chat4all_core::ports::{LogError, PartitionConsumer, Record, Tail};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a commit refused during a rebalance is retried.
const COMMIT_RETRY: Duration = Duration::from_secs(10);

/// The longest a poll waits for records known to exist but not fetched yet.
const CATCH_UP: Duration = Duration::from_secs(10);

/// A record read from Kafka, in the port's shape.
pub(crate) fn to_record(message: &BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        partition: u32::try_from(message.partition()).unwrap_or_default(),
        offset: u64::try_from(message.offset()).unwrap_or_default(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        headers,
        payload: message.payload().unwrap_or_default().to_vec(),
        timestamp: message.timestamp().to_millis().unwrap_or_default(),
    }
}

/// Serves the events waiting on a consumer's main queue (commit results, errors) without blocking. Messages never
/// arrive there: every partition read is split into its own queue before it is assigned.
pub(crate) fn serve_main_queue<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    for _ in 0..16 {
        match consumer.poll(Duration::ZERO) {
            None => break,
            Some(Ok(message)) => tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                "kafka: a message reached the main queue of a split consumer; it is not delivered"
            ),
            Some(Err(error)) => tracing::debug!(%error, "kafka: consumer event"),
        }
    }
}

/// One partition's own queue, woken by librdkafka's non-empty callback instead of a blocking poll.
pub(crate) struct SplitQueue<C: ConsumerContext + 'static> {
    queue: PartitionQueue<C>,
    notify: Arc<Notify>,
}

impl<C: ConsumerContext + 'static> SplitQueue<C> {
    /// Splits `topic`/`partition` off `consumer`; call it before the partition is assigned.
    pub(crate) fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: u32,
        notify: Arc<Notify>,
    ) -> Result<Self, LogError> {
        let mut queue = consumer
            .split_partition_queue(topic, partition as i32)
            .ok_or_else(|| LogError::Invalid(format!("no partition {partition} of {topic:?}")))?;
        let waker = notify.clone();
        queue.set_nonempty_callback(move || waker.notify_one());
        Ok(Self { queue, notify })
    }

    /// Takes up to `max` records that are already there, without waiting.
    fn take(&self, max: usize, into: &mut Vec<Record>) -> Result<(), LogError> {
        while into.len() < max {
            match self.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => into.push(to_record(&message)),
                Some(Err(error)) if into.is_empty() => return Err(backend(error)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "kafka: partition read");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Up to `max` records from `queues` (round robin from `start`), waiting up to `wait` for the first.
async fn poll_queues<C: ConsumerContext + 'static>(
    queues: &[SplitQueue<C>],
    notify: &Notify,
    start: usize,
    max: usize,
    wait: Duration,
    before_each_try: impl Fn() -> Result<(), LogError>,
) -> Result<Vec<Record>, LogError> {
    let deadline = Instant::now() + wait;
    let mut records = Vec::new();
    loop {
        before_each_try()?;
        for i in 0..queues.len() {
            queues[(start + i) % queues.len()].take(max, &mut records)?;
        }
        if !records.is_empty() || max == 0 {
            return Ok(records);
        }
        // The callback fires when a drained queue gets a record; a permit left by an earlier one only loops again.
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            for queue in queues {
                queue.take(max, &mut records)?;
            }
            return Ok(records);
        }
    }
}

/// The part of a partition consumer shared by the manual consumer and a group member's partitions.
pub(crate) struct PartitionReader<C: ConsumerContext + 'static> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) consumer: Arc<BaseConsumer<C>>,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) queue: SplitQueue<C>,
    /// Serve the main queue on each poll (no thread of its own polls it).
    pub(crate) serve_main: bool,
    /// The next offset this reader returns, when known.
    pub(crate) position: Option<u64>,
    /// The partition's end when the reader opened: records before it exist, so a poll short of it waits for
    /// them (a new client needs a few round trips before its first fetch) rather than report "none yet".
    pub(crate) known_end: u64,
}

impl<C: ConsumerContext + 'static> PartitionReader<C> {
    pub(crate) async fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        let notify = self.queue.notify.clone();
        let wait = if self.position.is_some_and(|p| p < self.known_end) {
            wait.max(CATCH_UP)
        } else {
            wait
        };
        let records = poll_queues(
            std::slice::from_ref(&self.queue),
            &notify,
            0,
            max,
            wait,
            || {
                self.shared.check_open()?;
                if self.serve_main {
                    serve_main_queue(&self.consumer);
                }
                Ok(())
            },
        )
        .await?;
        if let Some(last) = records.last() {
            self.position = Some(last.offset + 1);
        }
        Ok(records)
    }

    /// The group's position `next_offset` for this partition, as librdkafka commits it.
    fn offsets(&self, next_offset: u64) -> Result<TopicPartitionList, LogError> {
        self.shared.check_open()?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &self.topic,
                self.partition as i32,
                Offset::Offset(next_offset as i64),
            )
            .map_err(backend)?;
        Ok(offsets)
    }

    /// Hands the commit to librdkafka, which sends it without blocking; its outcome comes back as an event on the
    /// main queue (a refusal during a rebalance only leaves it to the next commit).
    pub(crate) fn commit_in_background(&mut self, next_offset: u64) -> Result<(), LogError> {
        let offsets = self.offsets(next_offset)?;
        self.consumer
            .commit(&offsets, CommitMode::Async)
            .map_err(backend)?;
        if self.serve_main {
            serve_main_queue(&self.consumer);
        }
        Ok(())
    }

    pub(crate) async fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        let offsets = self.offsets(next_offset)?;
        // A broker refuses commits while a group completes a rebalance (librdkafka does not retry them): retry
        // for a while, the member still owns the partition until its consumer is dropped.
        let deadline = Instant::now() + COMMIT_RETRY;
        loop {
            let (consumer, list) = (self.consumer.clone(), offsets.clone());
            let result =
                tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
                    .await
                    .map_err(backend)?;
            match result {
                Ok(()) => break,
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(backend(error)),
            }
        }
        if self.serve_main {
            serve_main_queue(&self.consumer);
        }
        Ok(())
    }
}

/// `EventLog::consumer`: a group's view of one partition through a manual assignment.
pub(crate) struct ManualConsumer(pub(crate) PartitionReader<DefaultConsumerContext>);

impl ManualConsumer {
    /// Up to `max` records (see [`PartitionConsumer::poll`]).
    pub(crate) async fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        self.0.poll(max, wait).await
    }
}

#[async_trait]
impl PartitionConsumer for ManualConsumer {
    fn partition(&self) -> u32 {
        self.0.partition
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        self.0.poll(max, wait).await
    }

    async fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        self.0.commit(next_offset).await
    }

    fn commit_in_background(&mut self, next_offset: u64) -> Result<(), LogError> {
        self.0.commit_in_background(next_offset)
    }
}

/// Opens a manual consumer of `topic`/`partition` for the group of `config`, from `start`, or else the group's
/// committed offset (the earliest retained record without one). Blocking: it reads the offsets first.
pub(crate) fn open_manual(
    shared: Arc<Shared>,
    config: rdkafka::ClientConfig,
    topic: &str,
    partition: u32,
    start: Option<u64>,
    timeout: Duration,
) -> Result<ManualConsumer, LogError> {
    let consumer: Arc<BaseConsumer> = Arc::new(config.create().map_err(backend)?);
    let (low, high) = consumer
        .fetch_watermarks(topic, partition as i32, timeout)
        .map_err(backend)?;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition as i32);
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(backend)?
        .find_partition(topic, partition as i32)
        .map(|e| e.offset());
    let start = match (start.and_then(|s| i64::try_from(s).ok()), committed) {
        (Some(start), _) => start,
        (None, Some(Offset::Offset(offset))) if offset >= low => offset,
        _ => low,
    };
    let queue = SplitQueue::split(&consumer, topic, partition, Arc::new(Notify::new()))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition as i32, Offset::Offset(start))
        .map_err(backend)?;
    consumer.assign(&assignment).map_err(backend)?;
    Ok(ManualConsumer(PartitionReader {
        shared,
        consumer,
        topic: topic.to_owned(),
        partition,
        queue,
        serve_main: true,
        position: u64::try_from(start).ok(),
        known_end: u64::try_from(high).unwrap_or_default(),
    }))
}

/// `EventLog::tail`: every partition assigned at the high watermark read when the tail opened, no group.
pub(crate) struct KafkaTail {
    shared: Arc<Shared>,
    consumer: Arc<BaseConsumer>,
    queues: Vec<SplitQueue<DefaultConsumerContext>>,
    notify: Arc<Notify>,
    next: usize,
}

/// Opens a tail of `topic`'s `partitions` (blocking: it reads the high watermarks first, so "from now" means
/// from the moment of the call, not from whenever librdkafka resolves the end).
pub(crate) fn open_tail(
    shared: Arc<Shared>,
    config: rdkafka::ClientConfig,
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> Result<KafkaTail, LogError> {
    let consumer: Arc<BaseConsumer> = Arc::new(config.create().map_err(backend)?);
    let notify = Arc::new(Notify::new());
    let mut assignment = TopicPartitionList::new();
    let mut queues = Vec::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition as i32, timeout)
            .map_err(backend)?;
        queues.push(SplitQueue::split(
            &consumer,
            topic,
            partition,
            notify.clone(),
        )?);
        assignment
            .add_partition_offset(topic, partition as i32, Offset::Offset(high))
            .map_err(backend)?;
    }
    consumer.assign(&assignment).map_err(backend)?;
    Ok(KafkaTail {
        shared,
        consumer,
        queues,
        notify,
        next: 0,
    })
}

#[async_trait]
impl Tail for KafkaTail {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        let (shared, consumer) = (&self.shared, &self.consumer);
        poll_queues(&self.queues, &self.notify, start, max, wait, || {
            shared.check_open()?;
            serve_main_queue(consumer);
            Ok(())
        })
        .await
    }
}
