//! Parking records that cannot be processed, so that one poison event never stops a consumer.

use crate::ports::{EventLog, LogError, OutgoingRecord, Record};
use std::sync::Arc;

/// Header giving why a record was dead-lettered.
pub const HEADER_REASON: &str = "dead-letter-reason";
/// Header giving where it came from: `topic/partition/offset`.
pub const HEADER_SOURCE: &str = "dead-letter-source";

/// Writes unprocessable records to the dead-letter topic, with their original key, headers and payload.
#[derive(Clone)]
pub struct DeadLetters {
    log: Arc<dyn EventLog>,
    topic: String,
}

impl DeadLetters {
    /// Dead letters go to `topic` on `log`.
    pub fn new(log: Arc<dyn EventLog>, topic: String) -> Self {
        Self { log, topic }
    }

    /// Durably parks `record`, read from `source_topic`, with `reason`.
    pub async fn park(
        &self,
        source_topic: &str,
        record: &Record,
        reason: &str,
    ) -> Result<(), LogError> {
        tracing::warn!(
            topic = source_topic,
            partition = record.partition,
            offset = record.offset,
            reason,
            "event dead-lettered"
        );
        let mut headers = record.headers.clone();
        headers.push((HEADER_REASON.into(), reason.into()));
        headers.push((
            HEADER_SOURCE.into(),
            format!("{source_topic}/{}/{}", record.partition, record.offset),
        ));
        let parked = OutgoingRecord {
            key: record.key.clone(),
            headers,
            payload: record.payload.clone(),
        };
        self.log.append(&self.topic, parked).await.map(drop)
    }
}
