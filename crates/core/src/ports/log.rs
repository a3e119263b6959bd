//! The event log port: durable, partitioned topics with per-group committed offsets, group subscriptions with
//! assignment and revocation, and a tail mode for fan-out readers (Kafka's model, so a Kafka adapter maps onto it
//! one to one).

use async_trait::async_trait;
use std::time::Duration;

/// A record to append: partition key, headers and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// Records with the same key land in the same partition, in append order.
    pub key: String,
    /// Ordered header pairs (`correlation-id`, `event-type`, …).
    pub headers: Vec<(String, String)>,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition it lives in.
    pub partition: u32,
    /// Position in the partition, from 0, gap-free.
    pub offset: u64,
    /// Partition key.
    pub key: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// Append time (ms).
    pub timestamp: i64,
}

impl Record {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Partition.
    pub partition: u32,
    /// Offset within it.
    pub offset: u64,
}

/// Event log failures.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log is shutting down and takes no more work.
    #[error("the event log is closed")]
    Closed,
    /// The backend failed (disk, broker).
    #[error("event log backend: {0}")]
    Backend(String),
    /// A caller error, such as a partition that does not exist.
    #[error("{0}")]
    Invalid(String),
}

/// A durable, partitioned, replayable log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Number of partitions of every topic.
    fn partition_count(&self) -> u32;

    /// Appends records to `topic`, each to the partition of its key, keeping their order; returns only once all
    /// are durable (that is what makes a 202 safe).
    async fn append_batch(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError>;

    /// Appends one record durably.
    async fn append(
        &self,
        topic: &str,
        record: OutgoingRecord,
    ) -> Result<RecordPosition, LogError> {
        let positions = self.append_batch(topic, vec![record]).await?;
        positions
            .into_iter()
            .next()
            .ok_or_else(|| LogError::Backend("append returned no position".into()))
    }

    /// Joins `group`'s subscription to `topic` as `member` (a name for logs). The group's members share the
    /// topic's partitions, each owned by one member at a time; joining and leaving (dropping the member)
    /// rebalance them, and the member learns of its share through [`GroupMember::next_event`].
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<Box<dyn GroupMember>, LogError>;

    /// A consumer of one partition of `topic` for `group`, starting after the group's committed offset, outside
    /// any subscription (Kafka's manual `assign`): for readers that never commit, such as listings. Committing
    /// through it while a member of `group` owns the partition races with that member.
    async fn consumer(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Box<dyn PartitionConsumer>, LogError>;

    /// Follows every partition of `topic` from its current end, without a group or commits: every tail sees
    /// every later record (fan-out readers such as the WebSocket gateway). It reads what retention keeps.
    async fn tail(&self, topic: &str) -> Result<Box<dyn Tail>, LogError>;

    /// Records not yet committed by `group`, per partition: the consumer lag.
    async fn lag(&self, group: &str, topic: &str) -> Result<Vec<u64>, LogError>;

    /// Cheap liveness check of the backend.
    async fn ping(&self) -> Result<(), LogError>;

    /// Finishes every request already made, then releases the backend; later calls fail with `Closed`.
    async fn close(&self) {}
}

/// Reads one partition in order on behalf of a consumer group.
#[async_trait]
pub trait PartitionConsumer: Send {
    /// The partition it reads.
    fn partition(&self) -> u32;

    /// Up to `max` records after the last one returned, waiting up to `wait` when there are none yet.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError>;

    /// Marks every record before `next_offset` as processed for the group; call it only once that work is
    /// durable, so a crash replays rather than loses (at-least-once).
    async fn commit(&mut self, next_offset: u64) -> Result<(), LogError>;

    /// [`commit`](Self::commit) without waiting until the mark is durable (Kafka's `commitAsync`): a crash may
    /// lose it and replay those records, which at-least-once allows. A batch loop marks each batch so and waits
    /// only for its last `commit`, when it stops, so that no batch waits for the one before to be marked.
    fn commit_in_background(&mut self, next_offset: u64) -> Result<(), LogError>;
}

/// A change to a group member's partitions (Kafka's rebalance listener: `on_partitions_assigned`,
/// `on_partitions_revoked`). Rebalancing is incremental: only partitions that move are revoked.
pub enum Rebalance {
    /// Partitions now owned by the member, each read from the group's committed offset.
    Assigned(Vec<Box<dyn PartitionConsumer>>),
    /// Partitions the member must give back: finish the batch in hand, commit it, then drop the partition's
    /// consumer. Dropping the consumer is what releases the partition, so its next owner starts after that
    /// commit.
    Revoked(Vec<u32>),
}

impl std::fmt::Debug for Rebalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Assigned(consumers) => f
                .debug_tuple("Assigned")
                .field(&consumers.iter().map(|c| c.partition()).collect::<Vec<_>>())
                .finish(),
            Self::Revoked(partitions) => f.debug_tuple("Revoked").field(partitions).finish(),
        }
    }
}

/// One member of a group's subscription; dropping it leaves the group, and its partitions move on once their
/// consumers are dropped too.
#[async_trait]
pub trait GroupMember: Send {
    /// The next change to the member's partitions; waits while there is none. Cancel-safe. `Closed` once the log
    /// is closed.
    async fn next_event(&mut self) -> Result<Rebalance, LogError>;
}

/// Reads every partition of a topic from where it started, keeping per-partition order, without a group.
#[async_trait]
pub trait Tail: Send {
    /// Up to `max` records after the last ones returned, from any partitions, waiting up to `wait` when there are
    /// none yet.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError>;
}

/// The partition of `key`: FNV-1a, stable across processes and versions, so a key always maps the same way.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitioning_is_stable_and_spreads() {
        assert_eq!(partition_for("c1", 8), partition_for("c1", 8));
        assert_eq!(partition_for("anything", 1), 0);
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_for(&format!("conv-{i}"), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }
}
