//! The connector's use case: hand outbound messages to a channel and report the outcome as status updates.

use super::dead_letters::DeadLetters;
use crate::error::ServiceError;
use crate::events::{OutboundMessage, StatusUpdate, Topics, correlation_of, decode, encode};
use crate::ids::CorrelationId;
use crate::ports::{Channel, EventLog, Record};
use crate::status::MessageStatus;
use crate::time::now_millis;
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// How a batch went, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// Accepted by the channel.
    pub delivered: usize,
    /// Refused or failed.
    pub failed: usize,
    /// Undecodable records sent to dead letters.
    pub dead_lettered: usize,
}

/// Delivers outbound messages through one channel.
#[derive(Clone)]
pub struct Delivery {
    channel: Arc<dyn Channel>,
    log: Arc<dyn EventLog>,
    topics: Topics,
    dead_letters: DeadLetters,
}

impl Delivery {
    /// Delivery through `channel`, reporting on `log`.
    pub fn new(channel: Arc<dyn Channel>, log: Arc<dyn EventLog>, topics: Topics) -> Self {
        let dead_letters = DeadLetters::new(log.clone(), topics.dead_letters.clone());
        Self {
            channel,
            log,
            topics,
            dead_letters,
        }
    }

    /// The channel served.
    pub fn channel_name(&self) -> &str {
        self.channel.name()
    }

    /// Delivers a batch: conversations in parallel, each conversation's messages one after another in `seq`
    /// order. Returns once every outcome is durably on `status-updates`, so the caller may commit the batch.
    pub async fn deliver(&self, records: &[Record]) -> Result<DeliveryOutcome, ServiceError> {
        let topic = self.topics.outbound(self.channel.name());
        let mut outcome = DeliveryOutcome::default();
        let mut by_conversation: HashMap<&str, Vec<(OutboundMessage, CorrelationId)>> =
            HashMap::new();
        for record in records {
            match decode::<OutboundMessage>(record) {
                Ok(message) => by_conversation
                    .entry(record.key.as_str())
                    .or_default()
                    .push((message, correlation_of(record))),
                Err(e) => {
                    self.dead_letters
                        .park(&topic, record, &e.to_string())
                        .await?;
                    outcome.dead_lettered += 1;
                }
            }
        }
        let conversations = by_conversation.into_values().map(|messages| async move {
            let mut reports = Vec::with_capacity(messages.len());
            for (message, correlation_id) in messages {
                let update = self.deliver_one(&message, &correlation_id).await;
                reports.push((update, correlation_id));
            }
            reports
        });
        let mut reports = Vec::with_capacity(records.len());
        for (update, correlation_id) in join_all(conversations).await.into_iter().flatten() {
            match update.status {
                MessageStatus::Delivered => outcome.delivered += 1,
                _ => outcome.failed += 1,
            }
            reports.push(encode(&update, &correlation_id));
        }
        if !reports.is_empty() {
            self.log
                .append_batch(&self.topics.status_updates, reports)
                .await?;
        }
        Ok(outcome)
    }

    /// One attempt at one message, turned into the status update to report.
    async fn deliver_one(
        &self,
        message: &OutboundMessage,
        correlation_id: &CorrelationId,
    ) -> StatusUpdate {
        let started = Instant::now();
        let result = self.channel.send(message).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, detail) = match result {
            Ok(receipt) => (
                MessageStatus::Delivered,
                format!(
                    "{} accepted it as {}",
                    self.channel.name(),
                    receipt.channel_message_id
                ),
            ),
            // The reliability layer (retries, circuit breaker, PENDING) will sit here; for now a failed call fails.
            Err(error) => (MessageStatus::Failed, error.to_string()),
        };
        tracing::info!(
            correlation_id = %correlation_id,
            message_id = %message.message_id,
            conversation_id = %message.conversation_id,
            channel = self.channel.name(),
            status = %status,
            duration_ms = elapsed_ms,
            "channel call"
        );
        StatusUpdate {
            message_id: message.message_id.clone(),
            status,
            at: now_millis(),
            detail: Some(detail),
        }
    }
}
