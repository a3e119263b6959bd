//! Dead letters: records that cannot be processed (undecodable events) and messages that failed for good
//! (rejected, retries exhausted, expired) are parked on the dead-letter topic with the reason and their original
//! headers, so that one poison event never stops a consumer and an operator can list and replay them.

use crate::envelope::encode;
use crate::events::{OutboundMessage, StatusUpdate, Topics};
use crate::ids::CorrelationId;
use crate::ports::{EventLog, LogError, OutgoingRecord, Record};
use crate::status::MessageStatus;
use crate::time::now_millis;
use std::sync::Arc;
use std::time::Duration;

/// Header giving why a record was dead-lettered.
pub const HEADER_REASON: &str = "dead-letter-reason";
/// Header giving where it came from: `topic/partition/offset`.
pub const HEADER_SOURCE: &str = "dead-letter-source";
/// Reader group used to list dead letters; it never commits, so every retained dead letter is listed.
const LISTING_GROUP: &str = "dead-letter-admin";

/// A parked record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic it came from.
    pub source_topic: String,
    /// `topic/partition/offset` it came from.
    pub source: String,
    /// Why it was parked.
    pub reason: String,
    /// Its partition key.
    pub key: String,
    /// Its original headers.
    pub headers: Vec<(String, String)>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it was parked (ms).
    pub parked_at: i64,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only messages of this channel.
    pub channel: Option<String>,
    /// Only dead letters parked at or after this time (ms).
    pub since: Option<i64>,
}

/// Writes, lists and replays dead letters.
#[derive(Clone)]
pub struct DeadLetters {
    log: Arc<dyn EventLog>,
    topics: Topics,
}

impl DeadLetters {
    /// Dead letters on `log`, in `topics.dead_letters`.
    pub fn new(log: Arc<dyn EventLog>, topics: Topics) -> Self {
        Self { log, topics }
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
        self.log
            .append(&self.topics.dead_letters, parked)
            .await
            .map(drop)
    }

    /// Every retained dead letter, oldest first per partition, at most `limit`.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, LogError> {
        let mut letters = Vec::new();
        for partition in 0..self.log.partition_count() {
            let mut consumer = self
                .log
                .consumer(LISTING_GROUP, &self.topics.dead_letters, partition)
                .await?;
            while letters.len() < limit {
                let records = consumer.poll(limit - letters.len(), Duration::ZERO).await?;
                if records.is_empty() {
                    break;
                }
                letters.extend(records.into_iter().map(parse));
            }
        }
        letters.sort_by_key(|l| l.parked_at);
        Ok(letters)
    }

    /// Sends matching dead letters back where they came from; a failed channel message becomes PENDING again
    /// (an operator replay is the one way back from FAILED) with a fresh validity period. Returns how many.
    /// Replaying the same dead letter twice delivers it twice.
    pub async fn replay(
        &self,
        filter: &ReplayFilter,
        validity: Duration,
    ) -> Result<usize, LogError> {
        let outbound_of = |channel: &str| self.topics.outbound(channel);
        let mut replayed = 0;
        for letter in self.list(usize::MAX).await? {
            if filter.since.is_some_and(|since| letter.parked_at < since)
                || filter
                    .channel
                    .as_deref()
                    .is_some_and(|c| letter.source_topic != outbound_of(c))
            {
                continue;
            }
            let mut record = OutgoingRecord {
                key: letter.key.clone(),
                headers: letter.headers.clone(),
                payload: letter.payload.clone(),
            };
            if letter
                .source_topic
                .starts_with(&self.topics.outbound_prefix)
                && let Ok(mut message) = serde_json::from_slice::<OutboundMessage>(&letter.payload)
            {
                let correlation_id = CorrelationId::from_header_or_new(
                    letter
                        .headers
                        .iter()
                        .find(|(n, _)| n == crate::envelope::HEADER_CORRELATION_ID)
                        .map(|(_, v)| v.as_str()),
                );
                let mut back = StatusUpdate::now(
                    message.message_id.clone(),
                    MessageStatus::Pending,
                    Some("replayed from dead letters".into()),
                );
                back.replay = true;
                self.log
                    .append(&self.topics.status_updates, encode(&back, &correlation_id))
                    .await?;
                message.expires_at = Some(now_millis() + validity.as_millis() as i64);
                record = encode(&message, &correlation_id);
            }
            self.log.append(&letter.source_topic, record).await?;
            replayed += 1;
        }
        tracing::info!(
            replayed,
            channel = filter.channel.as_deref(),
            since = filter.since,
            "dead letters replayed"
        );
        Ok(replayed)
    }
}

/// A dead-letter record split into its parts (the dead-letter headers removed from the original ones).
fn parse(record: Record) -> DeadLetter {
    let header = |name: &str| record.header(name).unwrap_or_default().to_owned();
    let source = header(HEADER_SOURCE);
    let source_topic = source.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned();
    let reason = header(HEADER_REASON);
    DeadLetter {
        source_topic,
        source,
        reason,
        key: record.key,
        headers: record
            .headers
            .into_iter()
            .filter(|(n, _)| n != HEADER_REASON && n != HEADER_SOURCE)
            .collect(),
        payload: record.payload,
        parked_at: record.timestamp,
    }
}
