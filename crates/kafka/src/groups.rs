//! Group subscriptions: librdkafka's rebalance callbacks turned into the port's `Rebalance` events.
//!
//! Each member is a `BaseConsumer` subscribed with `cooperative-sticky` assignment, polled by a thread of its own
//! (the rebalance callbacks run there, so they may block without stalling the async runtime):
//! - assign: every new partition is split into its own queue *before* `incremental_assign`, so no record of it
//!   reaches the main queue, and handed to the member as a [`GroupPartition`] in `Rebalance::Assigned`;
//! - revoke: the member gets `Rebalance::Revoked`, and the callback waits (at most the session timeout) until the
//!   revoked partitions' consumers are dropped before `incremental_unassign` lets the partitions go, so the
//!   owner's last commit lands before the next owner reads the committed offset (meanwhile librdkafka has
//!   paused the member's partitions, so a revoked one is read through a side reader, see [`GroupPartition`]);
//! - dropping the member stops the thread, which closes the consumer: a last revoke, then LeaveGroup.

use crate::read::{ManualConsumer, PartitionReader, SplitQueue, open_manual};
use crate::{REQUEST_TIMEOUT, Shared, backend};
use async_trait::async_trait;
use chat4all_core::ports::{GroupMember, LogError, PartitionConsumer, Rebalance, Record};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance as KafkaRebalance};
use rdkafka::{ClientConfig, ClientContext, Message};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// The partition consumers the member still holds, each with its "being revoked" flag.
#[derive(Default)]
struct Held {
    partitions: Mutex<HashMap<u32, Vec<Arc<AtomicBool>>>>,
    released: Condvar,
}

impl Held {
    fn hold(&self, partition: u32) -> Arc<AtomicBool> {
        let revoking = Arc::new(AtomicBool::new(false));
        self.lock()
            .entry(partition)
            .or_default()
            .push(revoking.clone());
        revoking
    }

    fn release(&self, partition: u32, revoking: &Arc<AtomicBool>) {
        let mut held = self.lock();
        if let Some(flags) = held.get_mut(&partition) {
            flags.retain(|f| !Arc::ptr_eq(f, revoking));
            if flags.is_empty() {
                held.remove(&partition);
            }
        }
        self.released.notify_all();
    }

    /// Flags the consumers of `partitions` as being revoked.
    fn revoking(&self, partitions: &[u32]) {
        let held = self.lock();
        for flag in partitions.iter().filter_map(|p| held.get(p)).flatten() {
            flag.store(true, Ordering::Release);
        }
    }

    /// Waits until none of `partitions` is held, at most `timeout`; false when it timed out.
    fn wait_released(&self, partitions: &[u32], timeout: Duration) -> bool {
        let held = self.lock();
        let (_held, result) = self
            .released
            .wait_timeout_while(held, timeout, |held| {
                partitions.iter().any(|p| held.contains_key(p))
            })
            .unwrap_or_else(|e| e.into_inner());
        !result.timed_out()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Vec<Arc<AtomicBool>>>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The consumer context of a group member: it owns the rebalance callbacks.
pub(crate) struct GroupContext {
    shared: Arc<Shared>,
    topic: String,
    member: String,
    events: mpsc::UnboundedSender<Rebalance>,
    held: Arc<Held>,
    /// The consumer itself, to split partition queues from the assign callback.
    me: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    revoke_timeout: Duration,
    /// Settings of the side readers of revoked partitions (the group's, never subscribed).
    side_config: ClientConfig,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &KafkaRebalance<'_>) {
        match rebalance {
            KafkaRebalance::Assign(list) => {
                let Some(consumer) = self.me.get().and_then(Weak::upgrade) else {
                    return;
                };
                let mut consumers: Vec<Box<dyn PartitionConsumer>> = Vec::new();
                for element in list.elements_for_topic(&self.topic) {
                    let partition = element.partition() as u32;
                    match SplitQueue::split(
                        &consumer,
                        &self.topic,
                        partition,
                        Arc::new(Notify::new()),
                    ) {
                        Ok(queue) => {
                            let revoking = self.held.hold(partition);
                            consumers.push(Box::new(GroupPartition {
                                reader: PartitionReader {
                                    shared: self.shared.clone(),
                                    consumer: consumer.clone(),
                                    topic: self.topic.clone(),
                                    partition,
                                    queue,
                                    serve_main: false,
                                    position: None,
                                    known_end: 0,
                                },
                                held: self.held.clone(),
                                revoking,
                                side: None,
                                side_config: self.side_config.clone(),
                            }));
                        }
                        Err(error) => {
                            tracing::error!(%error, "kafka: cannot split an assigned partition")
                        }
                    }
                }
                tracing::debug!(member = %self.member, partitions = consumers.len(), "kafka: assigned");
                if !consumers.is_empty() {
                    // A member already gone drops them, which releases them.
                    let _ = self.events.send(Rebalance::Assigned(consumers));
                }
            }
            KafkaRebalance::Revoke(list) => {
                let partitions: Vec<u32> = list
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition() as u32)
                    .collect();
                if partitions.is_empty() {
                    return;
                }
                tracing::debug!(member = %self.member, ?partitions, "kafka: revoking");
                self.held.revoking(&partitions);
                let _ = self.events.send(Rebalance::Revoked(partitions.clone()));
                if !self.held.wait_released(&partitions, self.revoke_timeout) {
                    tracing::warn!(
                        member = %self.member,
                        ?partitions,
                        "kafka: revoked partitions were not released in time; letting them go anyway"
                    );
                }
            }
            KafkaRebalance::Error(error) => {
                tracing::warn!(member = %self.member, %error, "kafka: rebalance error");
            }
        }
    }
}

/// A partition owned by a group member; dropping it releases the partition.
///
/// librdkafka pauses every assigned partition (and drops what it prefetched) while a rebalance callback runs, so
/// once its partition is being revoked the consumer reads through a side reader: a consumer of the same group that
/// never joins it, manually assigned where this one stopped. Commits still go through the member.
struct GroupPartition {
    reader: PartitionReader<GroupContext>,
    held: Arc<Held>,
    revoking: Arc<AtomicBool>,
    side: Option<ManualConsumer>,
    side_config: ClientConfig,
}

impl Drop for GroupPartition {
    fn drop(&mut self) {
        self.held.release(self.reader.partition, &self.revoking);
    }
}

#[async_trait]
impl PartitionConsumer for GroupPartition {
    fn partition(&self) -> u32 {
        self.reader.partition
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        if !self.revoking.load(Ordering::Acquire) {
            return self.reader.poll(max, wait).await;
        }
        if self.side.is_none() {
            let (shared, config, topic, partition, start) = (
                self.reader.shared.clone(),
                self.side_config.clone(),
                self.reader.topic.clone(),
                self.reader.partition,
                self.reader.position,
            );
            let side = tokio::task::spawn_blocking(move || {
                open_manual(shared, config, &topic, partition, start, REQUEST_TIMEOUT)
            })
            .await
            .map_err(backend)??;
            self.side = Some(side);
        }
        let side = self.side.as_mut().expect("opened above");
        let records = side.poll(max, wait).await?;
        if let Some(last) = records.last() {
            self.reader.position = Some(last.offset + 1);
        }
        Ok(records)
    }

    async fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        self.reader.commit(next_offset).await
    }

    fn commit_in_background(&mut self, next_offset: u64) -> Result<(), LogError> {
        self.reader.commit_in_background(next_offset)
    }
}

/// A member of a group's subscription; dropping it leaves the group.
pub(crate) struct KafkaMember {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Rebalance>,
    stop: Arc<AtomicBool>,
}

/// Joins `group` on `topic`: creates the consumer, subscribes, starts its polling thread.
pub(crate) fn join(
    shared: Arc<Shared>,
    config: ClientConfig,
    side_config: ClientConfig,
    topic: &str,
    member: &str,
    revoke_timeout: Duration,
) -> Result<KafkaMember, LogError> {
    let (sender, events) = mpsc::unbounded_channel();
    let context = GroupContext {
        shared: shared.clone(),
        topic: topic.to_owned(),
        member: member.to_owned(),
        events: sender,
        held: Arc::default(),
        me: OnceLock::new(),
        revoke_timeout,
        side_config,
    };
    let consumer: Arc<BaseConsumer<GroupContext>> =
        Arc::new(config.create_with_context(context).map_err(backend)?);
    let _ = consumer.context().me.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[topic]).map_err(backend)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let name = member.to_owned();
    let thread = std::thread::Builder::new()
        .name(format!("kafka-member-{member}"))
        .spawn(move || drive(consumer, &stopped, &name))
        .map_err(backend)?;
    let mut members = crate::lock(&shared.members);
    members.retain(|(_, thread)| !thread.is_finished());
    members.push((stop.clone(), thread));
    drop(members);
    Ok(KafkaMember {
        shared,
        events,
        stop,
    })
}

/// Polls the member's main queue (serving rebalances) until stopped, then leaves the group.
fn drive(consumer: Arc<BaseConsumer<GroupContext>>, stop: &AtomicBool, member: &str) {
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => tracing::warn!(
                member,
                partition = message.partition(),
                offset = message.offset(),
                "kafka: a message reached a member's main queue; it is not delivered"
            ),
            Some(Err(error)) => tracing::debug!(member, %error, "kafka: member event"),
        }
    }
    // Dropping the last handle closes the consumer (rdkafka's Drop): it revokes what is left, the callback waiting
    // for its consumers, and leaves the group. Closing it here as well would make that Drop fail and log an error.
    let holders = Arc::strong_count(&consumer);
    if holders > 1 {
        tracing::warn!(
            member,
            holders,
            "kafka: a member's consumer is still held; it leaves when released"
        );
    }
    drop(consumer);
    tracing::debug!(member, "kafka: member left");
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[async_trait]
impl GroupMember for KafkaMember {
    async fn next_event(&mut self) -> Result<Rebalance, LogError> {
        let mut closed = self.shared.closed.subscribe();
        if *closed.borrow() {
            return Err(LogError::Closed);
        }
        tokio::select! {
            event = self.events.recv() => event.ok_or(LogError::Closed),
            _ = closed.wait_for(|closed| *closed) => Err(LogError::Closed),
        }
    }
}
