//! An event log that times its durable appends (`event_log_append_duration_seconds{backend}`), whatever the
//! backend.

use async_trait::async_trait;
use chat4all_core::ports::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, RecordPosition, Tail,
};
use std::sync::Arc;
use std::time::Instant;

/// Wraps a log and records how long each append took to become durable.
pub struct MeteredLog {
    inner: Arc<dyn EventLog>,
    appends: metrics::Histogram,
}

impl MeteredLog {
    /// Times appends to `inner`, labelled with `backend` (embedded, kafka).
    pub fn new(inner: Arc<dyn EventLog>, backend: &'static str) -> Self {
        Self {
            inner,
            // Every role of the process appends through it, hence the process's service label.
            appends: metrics::histogram!("event_log_append_duration_seconds", "service" => "chat4all", "backend" => backend),
        }
    }
}

#[async_trait]
impl EventLog for MeteredLog {
    fn partition_count(&self) -> u32 {
        self.inner.partition_count()
    }

    async fn append_batch(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        let started = Instant::now();
        let result = self.inner.append_batch(topic, records).await;
        self.appends.record(started.elapsed().as_secs_f64());
        result
    }

    async fn consumer(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Box<dyn PartitionConsumer>, LogError> {
        self.inner.consumer(group, topic, partition).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<Box<dyn GroupMember>, LogError> {
        self.inner.subscribe(group, topic, member).await
    }

    async fn tail(&self, topic: &str) -> Result<Box<dyn Tail>, LogError> {
        self.inner.tail(topic).await
    }

    async fn lag(&self, group: &str, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.lag(group, topic).await
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.inner.ping().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
